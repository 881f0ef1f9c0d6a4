//! HTTP handlers, one file per resource, and the route table. Every route is declared here
//! with the roles that may call it; `auth` looks the matched route up in `ROUTES`, so a route
//! registered any other way is refused for everyone (fail closed).

pub mod audit;
pub mod auth;
pub mod conflicts;
pub mod device_status;
pub mod devices;
pub mod duplicates;
pub mod health;
pub mod ledgers;
pub mod principal;
pub mod quality;
pub mod reports;
pub mod sync;
pub mod users;
pub mod web_session;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::roles::{
    Role, ADMINS, COUNTY_SUPERVISORS, MANAGERS, REPORT_SUBMITTERS, SUPERVISORS,
    TOWNSHIP_SUPERVISORS, WORKERS,
};
use crate::error::AppError;

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// No token (health, login, token refresh, the spec).
    Public,
    /// A valid access token whose user has one of these roles.
    Roles(&'static [Role]),
}

#[derive(Clone, Copy, Debug)]
pub struct RouteDef {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $access:expr; )*) => {
        /// Every route of the service with the roles that may call it.
        pub const ROUTES: &[RouteDef] = &[
            $( RouteDef { method: stringify!($method), path: $path, access: $access }, )*
        ];

        /// Registers exactly the routes of `ROUTES`, then, for each of their paths, an answer
        /// of 405 (with `Allow`) to the methods no route declares.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
            let mut seen: Vec<&str> = Vec::new();
            for r in ROUTES {
                if !seen.contains(&r.path) {
                    seen.push(r.path);
                    cfg.route(r.path, web::route().to(method_not_allowed));
                }
            }
        }
    };
}

routes! {
    get "/health" => health::health, Access::Public;
    get "/ready" => health::ready, Access::Public;
    get "/api/openapi.json" => health::openapi_spec, Access::Public;
    get "/metrics" => health::metrics, Access::Public;
    // The browser side (web/, embedded): the console, the field app, the client, libraries.
    get "/" => crate::webapp::serve, Access::Public;
    get "/console/{file:.*}" => crate::webapp::serve, Access::Public;
    get "/field" => crate::webapp::field_redirect, Access::Public;
    get "/field/{file:.*}" => crate::webapp::serve, Access::Public;
    get "/client/{file:.*}" => crate::webapp::serve, Access::Public;
    get "/vendor/{file:.*}" => crate::webapp::serve, Access::Public;
    post "/api/v1/auth/login" => auth::login, Access::Public;
    post "/api/v1/auth/refresh" => auth::refresh, Access::Public;
    post "/api/v1/auth/logout" => auth::logout, Access::Public;
    post "/api/v1/auth/web/login" => web_session::login, Access::Public;
    post "/api/v1/auth/web/refresh" => web_session::refresh, Access::Public;
    post "/api/v1/auth/web/logout" => web_session::logout, Access::Public;
    get "/api/v1/me" => auth::me, Access::Roles(&Role::ALL);
    post "/api/v1/devices" => devices::register, Access::Roles(WORKERS);
    post "/api/v1/devices/enrol" => devices::enrol, Access::Public;
    get "/api/v1/devices" => devices::list, Access::Roles(MANAGERS);
    post "/api/v1/devices/{id}/revoke" => devices::revoke, Access::Roles(MANAGERS);
    post "/api/v1/users" => users::create, Access::Roles(ADMINS);
    get "/api/v1/users" => users::list, Access::Roles(ADMINS);
    put "/api/v1/users/{id}/villages" => users::set_villages, Access::Roles(MANAGERS);
    post "/api/v1/users/{id}/devices" => devices::register_for_worker, Access::Roles(ADMINS);
    get "/api/v1/audit" => audit::query, Access::Roles(ADMINS);
    post "/api/v1/sync/push" => sync::push_batch, Access::Roles(WORKERS);
    post "/api/v1/sync/pull" => sync::pull_changes, Access::Roles(WORKERS);
    // Supervisors (issue 5). Literal paths first: `{entity}` would match them too.
    get "/api/v1/supervise/conflicts" => conflicts::list, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/conflicts/resolve-bulk" => conflicts::resolve_bulk, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/conflicts/{id}" => conflicts::one, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/conflicts/{id}/resolve" => conflicts::resolve, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/conflicts/{id}/reopen" => conflicts::reopen, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/duplicates" => duplicates::list, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/duplicates/merge" => duplicates::merge, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/duplicates/dismissed" => duplicates::dismissed, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/duplicates/dismiss" => duplicates::dismiss, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/duplicates/undismiss" => duplicates::undismiss, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/merges" => duplicates::merges, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/merges/{id}/undo" => duplicates::undo, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/flags" => quality::list, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/flags/summary" => quality::summary, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/devices/status" => device_status::status, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/devices/{id}/rejected" => device_status::rejected, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/workers/status" => device_status::workers, Access::Roles(SUPERVISORS);
    post "/api/v1/supervise/records/{entity}/{id}" => ledgers::edit, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/{entity}" => ledgers::list, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/{entity}/{id}" => ledgers::one, Access::Roles(SUPERVISORS);
    get "/api/v1/supervise/{entity}/{id}/history" => ledgers::history, Access::Roles(SUPERVISORS);
    get "/api/v1/reports" => reports::get_report, Access::Roles(SUPERVISORS);
    get "/api/v1/reports/breakdown" => reports::get_breakdown, Access::Roles(SUPERVISORS);
    get "/api/v1/reports/with-breakdown" => reports::get_report_with_breakdown, Access::Roles(SUPERVISORS);
    get "/api/v1/reports/units" => reports::units, Access::Roles(SUPERVISORS);
    get "/api/v1/reports/trend" => reports::get_trend, Access::Roles(SUPERVISORS);
    get "/api/v1/reports/completeness" => reports::completeness, Access::Roles(SUPERVISORS);
    post "/api/v1/reports/submissions" => reports::submit, Access::Roles(REPORT_SUBMITTERS);
    get "/api/v1/reports/submissions/{id}/history" => reports::submission_history, Access::Roles(SUPERVISORS);
    post "/api/v1/reports/submissions/{id}/approve" => reports::approve, Access::Roles(TOWNSHIP_SUPERVISORS);
    post "/api/v1/reports/submissions/{id}/return" => reports::return_report, Access::Roles(TOWNSHIP_SUPERVISORS);
    post "/api/v1/reports/lock" => reports::lock, Access::Roles(COUNTY_SUPERVISORS);
    put "/api/v1/targets" => reports::set_targets, Access::Roles(SUPERVISORS);
    get "/api/v1/targets" => reports::list_targets, Access::Roles(SUPERVISORS);
    get "/api/v1/exports/report.{format}" => reports::export_report, Access::Roles(SUPERVISORS);
    get "/api/v1/exports/ledger/{entity}.{format}" => reports::export_ledger, Access::Roles(SUPERVISORS);
}

/// The declared access of the route `req` matched, if it was declared.
pub fn access_of(req: &HttpRequest) -> Option<Access> {
    let pattern = req.match_pattern()?;
    let method = req.method().as_str().to_ascii_lowercase();
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method == method)
        .map(|r| r.access)
}

/// Answers for paths and methods no route matches, as problem+json like every other error.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// Refuses a NUL character (`%00`) in the path or the query with 400 `bad_text`, before any
/// handler: PostgreSQL cannot store one, and no code, id or search term has one. (NULs inside
/// JSON bodies are refused where they reach the store: see `error::classify_db_error`.)
pub async fn refuse_nul(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let uri = req.uri();
    let has_nul = |s: &str| s.to_ascii_lowercase().contains("%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        // Rendered here, inside the request-id scope, so the answer carries the request's id
        // (in the body and the `x-request-id` header) like every other error.
        let err = AppError::bad_param("bad_text", "text may not contain NUL characters");
        return Ok(req.error_response(err).map_into_boxed_body());
    }
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

/// Refuses a JSON body nested deeper than `limits.max_json_depth` with 400 `json_too_deep`,
/// before any handler parses it (serde's own limit is 128, far beyond any real body, and the
/// stored records keep what a device sends). The push reads its body itself (gzip, slow-body
/// deadline) and checks the inflated body with [`check_json_depth`].
pub async fn limit_json_depth(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage as _;
    use futures_util::StreamExt as _;
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let is_push = req.match_pattern().as_deref() == Some("/api/v1/sync/push");
    let limits = req.app_data::<web::Data<crate::AppState>>().map(|s| {
        (
            s.settings.limits.max_body_bytes,
            s.settings.limits.max_json_depth,
        )
    });
    let (Some((max_bytes, max_depth)), true, false) = (limits, is_json, is_push) else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            let err = AppError::BadRequest("unreadable request body".into());
            return Ok(req.error_response(err).map_into_boxed_body());
        };
        if body.len() + chunk.len() > max_bytes {
            let err = AppError::TooLarge(serde_json::json!({ "max_body_bytes": max_bytes }));
            return Ok(req.error_response(err).map_into_boxed_body());
        }
        body.extend_from_slice(&chunk);
    }
    if let Err(err) = check_json_depth(&body, max_depth) {
        return Ok(req.error_response(err).map_into_boxed_body());
    }
    req.set_payload(actix_web::dev::Payload::from(body.freeze()));
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

/// 400 `json_too_deep` when arrays and objects in `body` nest deeper than `max` (the
/// outermost value is level 1). Counts brackets outside strings; the text need not be valid
/// JSON (the parser says what else is wrong).
pub fn check_json_depth(body: &[u8], max: usize) -> Result<(), AppError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(AppError::bad_param(
                        "json_too_deep",
                        format!("the JSON body nests deeper than {max} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Answers a method that no route of a known path declares: 405 with the methods it has.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let pattern = req.match_pattern().unwrap_or_default();
    let allow: Vec<String> = ROUTES
        .iter()
        .filter(|r| r.path == pattern)
        .map(|r| r.method.to_ascii_uppercase())
        .collect();
    Err(AppError::MethodNotAllowed {
        allow: allow.join(", "),
    })
}

/// Maps actix's extractor errors (bad JSON, bad query, bad path) onto the one error type.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as E;
            let app = match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => {
                    AppError::TooLarge(serde_json::json!({ "max_body_bytes": limit }))
                }
                E::ContentType => AppError::UnsupportedMediaType,
                E::Deserialize(e) => {
                    AppError::BadRequest(format!("malformed JSON body: {}", safe_serde_message(e)))
                }
                _ => AppError::BadRequest("unreadable request body".into()),
            };
            app.into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| AppError::BadRequest(format!("bad query: {err}")).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err, _req| AppError::NotFound.into())
}

/// serde's messages name the field and the expected type; they can quote the offending value,
/// which may be personal data, so only the category and position are kept.
pub fn safe_serde_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "syntax error",
        Category::Data => "wrong type or missing field",
        Category::Eof => "unexpected end of input",
        Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}
