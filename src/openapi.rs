//! The OpenAPI document, generated from the handlers' annotations. api-spec/openapi.json is
//! written from it (`fieldsync openapi`), and a test fails when the committed file differs.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "fieldsync", description = "Sync backend for village population and family-planning field work (人口计生). Errors are application/problem+json with a stable `code`, a `message` and the `request_id`."),
    paths(
        crate::api::health::health,
        crate::api::health::ready,
        crate::api::health::openapi_spec,
        crate::api::health::metrics,
        crate::api::auth::login,
        crate::api::auth::refresh,
        crate::api::auth::logout,
        crate::api::auth::me,
        crate::api::web_session::login,
        crate::api::web_session::refresh,
        crate::api::web_session::logout,
        crate::api::devices::register,
        crate::api::devices::list,
        crate::api::devices::revoke,
        crate::api::devices::register_for_worker,
        crate::api::devices::enrol,
        crate::api::users::create,
        crate::api::users::list,
        crate::api::users::set_villages,
        crate::api::audit::query,
        crate::api::sync::push_batch,
        crate::api::sync::pull_changes,
        crate::api::conflicts::list,
        crate::api::conflicts::resolve_bulk,
        crate::api::conflicts::one,
        crate::api::conflicts::resolve,
        crate::api::conflicts::reopen,
        crate::api::duplicates::list,
        crate::api::duplicates::merge,
        crate::api::duplicates::dismiss,
        crate::api::duplicates::dismissed,
        crate::api::duplicates::merges,
        crate::api::duplicates::undismiss,
        crate::api::duplicates::undo,
        crate::api::quality::list,
        crate::api::quality::summary,
        crate::api::device_status::status,
        crate::api::device_status::rejected,
        crate::api::device_status::workers,
        crate::api::ledgers::edit,
        crate::api::ledgers::list,
        crate::api::ledgers::one,
        crate::api::ledgers::history,
        crate::api::reports::get_report,
        crate::api::reports::get_breakdown,
        crate::api::reports::get_report_with_breakdown,
        crate::api::reports::units,
        crate::api::reports::get_trend,
        crate::api::reports::completeness,
        crate::api::reports::submit,
        crate::api::reports::submission_history,
        crate::api::reports::approve,
        crate::api::reports::return_report,
        crate::api::reports::lock,
        crate::api::reports::set_targets,
        crate::api::reports::list_targets,
        crate::api::reports::export_report,
        crate::api::reports::export_ledger,
    ),
    components(schemas(crate::error::Problem, crate::report::report::Order)),
    modifiers(&BearerAuth, &ProblemResponses),
    tags(
        (name = "health", description = "Liveness, readiness and this document"),
        (name = "auth", description = "Sign-in, token refresh and sign-out"),
        (name = "devices", description = "Field workers' devices"),
        (name = "users", description = "Accounts"),
        (name = "audit", description = "The audit log"),
        (name = "supervise", description = "Supervisors (乡镇/县): merged ledgers, history, conflict queue, duplicates, data quality, device status, direct edits"),
        (name = "reports", description = "Monthly reports, targets, approval and exports"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme (an access token from `/api/v1/auth/login`).
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every error answer is `application/problem+json` with the `Problem` body; this declares
/// the error statuses each operation can give, by one rule, so a client (and a fuzzer checking
/// answers against the spec) knows them all:
/// - every operation: 400 (malformed query, path or body), 404 (unknown or out-of-scope id),
///   422 (a value the rules refuse), 429 (throttled), 503 (database away) and 507 (disk full),
///   the last three with `Retry-After`;
/// - operations that need a token: 401 (missing, bad or expired) and 403 (role, revoked device);
/// - operations with a body: 413 (too large; the answer lists the limits) and 415;
/// - operations that change state: 409 (a state conflict, e.g. a stale base version).
///
/// A status an operation documents itself keeps its description; its body becomes `Problem`.
pub struct ProblemResponses;

impl ProblemResponses {
    const STATUSES: &'static [(&'static str, &'static str)] = &[
        ("400", "Malformed request (query, path or body)"),
        ("401", "Missing, invalid or expired access token"),
        (
            "403",
            "The role may not call this, or the device is revoked",
        ),
        ("404", "Not found, or outside the caller's scope"),
        ("409", "Conflicts with the current state"),
        ("413", "Request too large; `details` lists the limits"),
        ("415", "Unsupported content type or encoding"),
        ("422", "A value the rules refuse; `code` says which rule"),
        (
            "429",
            "Too many requests; retry after `Retry-After` seconds",
        ),
        (
            "503",
            "The database is not available; retry after `Retry-After` seconds",
        ),
        (
            "507",
            "The server's storage is full; retry after `Retry-After` seconds",
        ),
    ];

    fn applies(status: &str, secured: bool, has_body: bool, changes: bool) -> bool {
        match status {
            "401" | "403" => secured,
            "413" | "415" => has_body,
            "409" => changes,
            _ => true,
        }
    }

    fn response(description: &str, status: &str) -> utoipa::openapi::Response {
        use utoipa::openapi::{header::HeaderBuilder, ContentBuilder, Ref, ResponseBuilder};
        let mut r = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if matches!(status, "429" | "503" | "507") {
            r = r.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer),
                    )
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        r.build()
    }
}

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, description) in Self::STATUSES {
            components.responses.insert(
                format!("Problem{status}"),
                RefOr::T(Self::response(description, status)),
            );
        }
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
            ];
            for (op, changes) in ops {
                let Some(op) = op.as_mut() else { continue };
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                // Error statuses the operation documents itself keep their description.
                for (status, r) in responses.iter_mut() {
                    if let (true, RefOr::T(own)) = (status.as_str() >= "400", &*r) {
                        *r = RefOr::T(Self::response(&own.description, status));
                    }
                }
                for (status, _) in Self::STATUSES {
                    if Self::applies(status, secured, has_body, changes) {
                        responses.entry(status.to_string()).or_insert_with(|| {
                            RefOr::Ref(Ref::from_response_name(format!("Problem{status}")))
                        });
                    }
                }
            }
        }
    }
}

/// The document as committed to api-spec/openapi.json.
pub fn pretty_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(&pretty_json()).unwrap()
    }

    #[test]
    fn path_parameters_are_in_the_path_and_the_rest_in_the_query() {
        let d = doc();
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    let templated = path.contains(&format!("{{{name}}}"));
                    assert_eq!(
                        p["in"] == "path",
                        templated,
                        "{method} {path}: parameter {name} is `in: {}`",
                        p["in"]
                    );
                }
            }
        }
    }

    #[test]
    fn every_error_answer_is_problem_json() {
        let d = doc();
        let shared = &d["components"]["responses"];
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                for must in ["400", "404", "503"].iter().chain(if secured {
                    &["401", "403"][..]
                } else {
                    &[]
                }) {
                    assert!(responses.contains_key(*must), "{method} {path}: no {must}");
                }
                for (status, r) in responses {
                    if status.as_str() < "400" {
                        continue;
                    }
                    let r = match r["$ref"].as_str() {
                        Some(name) => &shared[name.rsplit('/').next().unwrap()],
                        None => r,
                    };
                    assert!(
                        r["content"]["application/problem+json"].is_object()
                            && r["content"].as_object().unwrap().len() == 1,
                        "{method} {path} {status}: {r}"
                    );
                }
            }
        }
    }
}
