//! Sign-in, token refresh, sign-out and "who am I".

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::audit::{self, AuditEntry};
use crate::auth::passwords::MAX_PASSWORD_BYTES;
use crate::auth::roles::Role;
use crate::auth::tokens::{self, Refreshed};
use crate::auth::users::{self, UserView};
use crate::auth::Principal;
use crate::db::schema::devices;
use crate::db::DbConn;
use crate::error::{current_request_id, AppError, AppResult, Problem};
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// A registered device of a field worker. A worker without one gets a token that can only
    /// register a device (`POST /api/v1/devices`) and read `/api/v1/me`.
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub org_unit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT (EdDSA), valid `expires_in` seconds.
    pub access_token: String,
    /// Opaque; rotated at each use of `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
    pub expires_in: i64,
    /// Always `Bearer`.
    pub token_type: String,
    pub user: UserSummary,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserView,
    pub role: Role,
    /// The device the token is bound to, if any.
    pub device_id: Option<String>,
    /// The roots of the org-unit subtrees the caller may read.
    pub scope: Vec<String>,
}

pub fn summary(u: &UserView) -> UserSummary {
    UserSummary {
        id: u.id.clone(),
        username: u.username.clone(),
        role: u.role,
        org_unit: u.org_unit.clone(),
    }
}

/// Signs the access token and packs the answer.
pub fn token_response(
    state: &AppState,
    user: &UserView,
    device_id: Option<&str>,
    session_id: &str,
    refresh_token: String,
) -> AppResult<TokenResponse> {
    let access = tokens::issue_access(
        &state.auth.keys,
        &state.settings.auth,
        &user.id,
        user.role,
        device_id,
        session_id,
    )?;
    Ok(TokenResponse {
        access_token: access,
        refresh_token,
        expires_in: state.settings.auth.access_ttl_secs,
        token_type: "Bearer".into(),
        user: summary(user),
    })
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not one (see `Settings::trusted_proxies`).
fn client_addr(req: &HttpRequest, trusted: &[std::net::IpAddr]) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return String::new();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return ip.to_string(),
            // A hop that is no address: trust nothing beyond it.
            Err(_) => break,
        }
    }
    client.to_string()
}

fn check_device(conn: &mut DbConn, user_id: &str, device_id: &str) -> AppResult<()> {
    use diesel::prelude::*;
    let dev: Option<(String, String)> = devices::table
        .filter(devices::id.eq(device_id))
        .select((devices::user_id, devices::status))
        .first(conn)
        .optional()?;
    match dev {
        Some((owner, status)) if owner == user_id => {
            if status == "active" {
                Ok(())
            } else {
                Err(AppError::Forbidden("device_revoked"))
            }
        }
        _ => Err(AppError::Forbidden("device_unknown")),
    }
}

/// Sign in with a username and password (and, for a field worker, a registered device).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "wrong username or password", body = Problem),
        (status = 403, description = "the device is revoked or not the user's", body = Problem),
        (status = 429, description = "too many failures; wait Retry-After seconds", body = Problem)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> AppResult<HttpResponse> {
    let resp = sign_in(&state, &req, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(resp))
}

/// Checks the password (throttled, audited) and starts a token family: the work of
/// `POST /api/v1/auth/login`, shared with the browser's sign-in (`web_session`).
pub async fn sign_in(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    body: LoginRequest,
) -> AppResult<TokenResponse> {
    let addr = client_addr(req, &state.settings.trusted_proxies);
    let request_id = current_request_id();
    let username = body.username.trim().to_string();
    // Counts against the account until this request ends, so parallel attempts wait too.
    let _attempt = state
        .auth
        .throttle
        .check(&username, &addr)
        .map_err(|secs| AppError::TooManyRequests {
            retry_after_secs: secs,
        })?;
    if username.is_empty() || username.len() > 64 || body.password.len() > MAX_PASSWORD_BYTES {
        state.auth.throttle.failure(&username, &addr);
        return Err(AppError::Unauthorized("invalid_credentials"));
    }
    let db = state.db.clone();
    let name = username.clone();
    let user = web::block(move || db.read(|c| users::find_by_username(c, &name))).await??;
    let ok = state
        .auth
        .hasher
        .verify(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    let user = match user {
        Some(u) if ok && u.active => u,
        other => {
            state.auth.throttle.failure(&username, &addr);
            let db = state.db.clone();
            let rid = request_id.clone();
            web::block(move || {
                db.write(|c| {
                    audit::record(
                        c,
                        AuditEntry {
                            actor_user: other.as_ref().map(|u| u.id.clone()),
                            actor_role: other.as_ref().map(|u| u.role.clone()),
                            action: "login_failed",
                            target_kind: None,
                            target_ids: vec![],
                            request_id: rid,
                            detail: Some(serde_json::json!({
                                "reason": if other.is_some() { "bad_password_or_inactive" } else { "unknown_user" }
                            })),
                        },
                    )
                })
            })
            .await??;
            return Err(AppError::Unauthorized("invalid_credentials"));
        }
    };
    state.auth.throttle.success(&username);
    let device_id = body.device_id.filter(|d| !d.is_empty());
    let st = state.clone();
    web::block(move || {
        st.db.write(|c| {
            if let Some(d) = &device_id {
                check_device(c, &user.id, d)?;
            }
            let family =
                tokens::start_family(c, &st.settings.auth, &user.id, device_id.as_deref())?;
            audit::record(
                c,
                AuditEntry {
                    actor_user: Some(user.id.clone()),
                    actor_role: Some(user.role.clone()),
                    action: "login_ok",
                    target_kind: device_id.as_ref().map(|_| "device".to_string()),
                    target_ids: device_id.iter().cloned().collect(),
                    request_id: request_id.clone(),
                    detail: None,
                },
            )?;
            let view =
                users::get(c, &user.id)?.ok_or(AppError::Unauthorized("invalid_credentials"))?;
            token_response(&st, &view, device_id.as_deref(), &family.id, family.token)
        })
    })
    .await?
}

/// Exchange a refresh token for new tokens. The token is rotated: keep the new one. A retry
/// within the grace window gets the same new token; a replay later ends the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "unknown, expired, revoked or replayed refresh token", body = Problem),
        (status = 403, description = "`device_revoked`: the token's device is revoked", body = Problem)))]
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> AppResult<HttpResponse> {
    let resp = rotate_refresh(&state, body.into_inner().refresh_token).await?;
    Ok(HttpResponse::Ok().json(resp))
}

/// Rotates a refresh token into new tokens (401 `invalid_token` when it is unknown, expired,
/// revoked or replayed): shared with the browser's refresh (`web_session`).
pub async fn rotate_refresh(
    state: &web::Data<AppState>,
    token: String,
) -> AppResult<TokenResponse> {
    let request_id = current_request_id();
    let st = state.clone();
    let resp = web::block(move || {
        st.db.write(|c| {
            match tokens::rotate(c, &st.auth.keys, &st.settings.auth, &token, &request_id)? {
                Refreshed::Issued {
                    token,
                    family_id,
                    user_id,
                    device_id,
                    ..
                } => {
                    let view =
                        users::get(c, &user_id)?.ok_or(AppError::Unauthorized("invalid_token"))?;
                    Ok(Ok(token_response(
                        &st,
                        &view,
                        device_id.as_deref(),
                        &family_id,
                        token,
                    )?))
                }
                // Committed (the family revocation and its audit row), then refused.
                Refreshed::DeviceRevoked => Ok(Err(AppError::Forbidden("device_revoked"))),
                Refreshed::Reused | Refreshed::Invalid => {
                    Ok(Err(AppError::Unauthorized("invalid_token")))
                }
            }
        })
    })
    .await??;
    resp
}

/// Sign out: revokes the refresh token's whole family. Always 204.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "signed out")))]
pub async fn logout(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> AppResult<HttpResponse> {
    let token = body.into_inner().refresh_token;
    let db = state.db.clone();
    web::block(move || db.write(|c| tokens::logout(c, &token))).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller: account, role, device and scope roots.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
pub async fn me(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let resp = web::block(move || {
        db.read(|c| {
            let user = users::get(c, &principal.user_id)?
                .ok_or(AppError::Unauthorized("invalid_token"))?;
            let scope = principal.scope(c)?;
            Ok(MeResponse {
                user,
                role: principal.role,
                device_id: principal.device_id.clone(),
                scope: scope.roots().to_vec(),
            })
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(resp))
}
