//! The `Principal` extractor: reads the bearer token, validates it, finds the matched route's
//! declared access in [`ROUTES`](crate::api::ROUTES) (a route missing there is refused for
//! everyone), checks the role, then loads the principal from the database
//! (`auth::principal::load`).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::api::{access_of, Access};
use crate::auth::principal::{load, Principal};
use crate::auth::roles::Role;
use crate::auth::tokens::{self, AccessClaims, MAX_TOKEN_BYTES};
use crate::error::{current_request_id, AppError, AppResult};
use crate::AppState;

/// Routes a field worker's token without a device (issued to register one) may call.
pub const DEVICELESS_WORKER_ROUTES: &[(&str, &str)] =
    &[("post", "/api/v1/devices"), ("get", "/api/v1/me")];

fn bearer(req: &HttpRequest) -> AppResult<&str> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AppError::Unauthorized("invalid_token"))?;
    // Check the size before looking at the content.
    if value.len() > MAX_TOKEN_BYTES + 16 {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    let s = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("invalid_token"))?;
    let (scheme, token) = s
        .split_once(' ')
        .ok_or(AppError::Unauthorized("invalid_token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    Ok(token.trim())
}

/// Everything that needs no database: route declared, token valid, role allowed by the
/// token's claim. Runs before any other extractor can answer.
fn check_request(req: &HttpRequest, state: &AppState) -> AppResult<(AccessClaims, Role)> {
    let access = access_of(req).ok_or(AppError::Forbidden("route_undeclared"))?;
    let token = bearer(req)?;
    let claims = tokens::validate_access(&state.auth.keys, &state.settings.auth, token)?;
    let role = Role::parse(&claims.role).ok_or(AppError::Unauthorized("invalid_token"))?;
    if let Access::Roles(allowed) = access {
        if !allowed.contains(&role) {
            return Err(AppError::Forbidden("forbidden"));
        }
    }
    if role == Role::Worker && claims.did.is_none() {
        let pattern = req.match_pattern().unwrap_or_default();
        let method = req.method().as_str().to_ascii_lowercase();
        if !DEVICELESS_WORKER_ROUTES
            .iter()
            .any(|(m, p)| *m == method && *p == pattern)
        {
            return Err(AppError::Forbidden("device_required"));
        }
    }
    Ok((claims, role))
}

impl FromRequest for Principal {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, AppError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            return Box::pin(async { Err(AppError::Internal("no app state".into())) });
        };
        let checked = check_request(req, &state);
        let request_id = current_request_id();
        Box::pin(async move {
            let (claims, role) = checked?;
            let db = state.db.clone();
            web::block(move || db.read(|c| load(c, &claims, role, request_id))).await?
        })
    }
}
