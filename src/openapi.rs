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
        crate::api::auth::login,
        crate::api::auth::refresh,
        crate::api::auth::logout,
        crate::api::auth::me,
        crate::api::devices::register,
        crate::api::devices::list,
        crate::api::devices::revoke,
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
        crate::api::duplicates::undismiss,
        crate::api::duplicates::undo,
        crate::api::quality::list,
        crate::api::quality::summary,
        crate::api::device_status::status,
        crate::api::device_status::rejected,
        crate::api::ledgers::edit,
        crate::api::ledgers::list,
        crate::api::ledgers::one,
        crate::api::ledgers::history,
        crate::api::reports::get_report,
        crate::api::reports::get_breakdown,
        crate::api::reports::completeness,
        crate::api::reports::submit,
        crate::api::reports::approve,
        crate::api::reports::return_report,
        crate::api::reports::lock,
        crate::api::reports::set_targets,
        crate::api::reports::list_targets,
        crate::api::reports::export_report,
        crate::api::reports::export_ledger,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
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

/// The document as committed to api-spec/openapi.json.
pub fn pretty_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}
