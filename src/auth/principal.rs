//! `Principal`: the authenticated caller, as an actix extractor. It reads the bearer token,
//! validates it, finds the matched route's declared access in `api::ROUTES` (a route missing
//! there is refused for everyone), checks the role, then loads the user (must be active) and
//! the token's device (must be the user's and not revoked) and its session (the refresh-token
//! family, which logout, device revocation and a password change end) from the database.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use diesel::prelude::*;

use crate::api::{access_of, Access};
use crate::auth::roles::Role;
use crate::auth::scope::{self, Scope};
use crate::auth::tokens::{self, AccessClaims, MAX_TOKEN_BYTES};
use crate::db::schema::{devices, users};
use crate::db::DbConn;
use crate::error::{current_request_id, AppError, AppResult};
use crate::AppState;

/// Routes a field worker's token without a device (issued to register one) may call.
pub const DEVICELESS_WORKER_ROUTES: &[(&str, &str)] =
    &[("post", "/api/v1/devices"), ("get", "/api/v1/me")];

#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    pub device_id: Option<String>,
    /// The request this principal was authenticated for (for audit rows).
    pub request_id: String,
}

impl Principal {
    /// The caller's scope, loaded from the database (never from the token).
    pub fn scope(&self, conn: &mut DbConn) -> AppResult<Scope> {
        scope::for_user(conn, &self.user_id, self.role)
    }
}

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

/// The database half: the user is active with the same role, the device is theirs and active.
pub fn load(
    conn: &mut DbConn,
    claims: &AccessClaims,
    role: Role,
    request_id: String,
) -> AppResult<Principal> {
    let user: Option<(String, String, bool)> = users::table
        .filter(users::id.eq(&claims.sub))
        .select((users::username, users::role, users::active))
        .first(conn)
        .optional()?;
    let Some((username, db_role, active)) = user else {
        return Err(AppError::Unauthorized("invalid_token"));
    };
    if !active || db_role != role.as_str() {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    if let Some(did) = &claims.did {
        let dev: Option<(String, String)> = devices::table
            .filter(devices::id.eq(did))
            .select((devices::user_id, devices::status))
            .first(conn)
            .optional()?;
        match dev {
            Some((owner, _)) if owner != claims.sub => {
                return Err(AppError::Forbidden("forbidden"))
            }
            Some((_, status)) if status == "active" => {}
            Some(_) => return Err(AppError::Forbidden("device_revoked")),
            None => return Err(AppError::Unauthorized("invalid_token")),
        }
    }
    // Checked on every request rather than cached: a lost phone or a signed-out session must
    // stop at once, and it is one indexed lookup beside the two above.
    if !tokens::session_live(conn, &claims.sid, &claims.sub, claims.did.as_deref())? {
        return Err(AppError::Unauthorized("session_ended"));
    }
    Ok(Principal {
        user_id: claims.sub.clone(),
        username,
        role,
        device_id: claims.did.clone(),
        request_id,
    })
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
