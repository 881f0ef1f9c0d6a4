//! Browser sessions for the supervisor console: the refresh token lives only in an HttpOnly,
//! SameSite=Strict cookie scoped to `/api/v1/auth/web` (Secure when the request came over
//! TLS), never in a body the page's script can read; the access token is returned in the body
//! and kept in memory by the page. Token issue, rotation and revocation are those of
//! `POST /api/v1/auth/{login,refresh,logout}`.
//!
//! CSRF: a cookie is sent with any request to its path, so each of these routes also demands
//! the header `X-Fieldsync-Csrf: 1` (a cross-site form cannot set a header, and a cross-site
//! script that tries needs a CORS preflight this server never grants) and, when the browser
//! sends `Origin`, that it names this server.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{self, LoginRequest, TokenResponse, UserSummary};
use crate::auth::tokens;
use crate::error::{AppError, AppResult, Problem};
use crate::AppState;

/// The cookie holding the refresh token.
pub const REFRESH_COOKIE: &str = "fieldsync_refresh";
/// The only path the browser sends that cookie to.
pub const COOKIE_PATH: &str = "/api/v1/auth/web";
/// The header every call of these routes must carry, with the value `1`.
pub const CSRF_HEADER: &str = "x-fieldsync-csrf";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebLoginRequest {
    pub username: String,
    pub password: String,
}

/// Like `TokenResponse` without the refresh token, which travels only in the cookie.
#[derive(Serialize, ToSchema)]
pub struct WebTokenResponse {
    /// JWT (EdDSA), valid `expires_in` seconds; keep it in memory only.
    pub access_token: String,
    pub expires_in: i64,
    /// Always `Bearer`.
    pub token_type: String,
    pub user: UserSummary,
}

/// Refuses a request without the CSRF header, or whose `Origin` is another site.
fn check_csrf(req: &HttpRequest) -> AppResult<()> {
    let marked = req
        .headers()
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    if !marked {
        return Err(AppError::Forbidden("csrf_check_failed"));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let info = req.connection_info();
        let own = format!("{}://{}", info.scheme(), info.host());
        if origin.as_bytes() != own.as_bytes() {
            return Err(AppError::Forbidden("csrf_check_failed"));
        }
    }
    Ok(())
}

fn secure(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn cookie(req: &HttpRequest, value: &str, max_age_secs: i64) -> String {
    format!(
        "{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{}",
        if secure(req) { "; Secure" } else { "" }
    )
}

fn refresh_from_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == REFRESH_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn answer(state: &AppState, req: &HttpRequest, t: TokenResponse) -> HttpResponse {
    let max_age = state.settings.auth.refresh_ttl_days * 86_400;
    HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, cookie(req, &t.refresh_token, max_age)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebTokenResponse {
            access_token: t.access_token,
            expires_in: t.expires_in,
            token_type: t.token_type,
            user: t.user,
        })
}

/// Browser sign-in: the refresh token is set as an HttpOnly cookie, the access token returned.
#[utoipa::path(post, path = "/api/v1/auth/web/login", tag = "auth", request_body = WebLoginRequest,
    params(("X-Fieldsync-Csrf" = String, Header, description = "must be `1`")),
    responses(
        (status = 200, body = WebTokenResponse, headers(("set-cookie" = String, description = "the refresh token: HttpOnly, SameSite=Strict, Path=/api/v1/auth/web"))),
        (status = 401, description = "wrong username or password", body = Problem),
        (status = 403, description = "`csrf_check_failed`: no `X-Fieldsync-Csrf: 1` header, or another site's Origin", body = Problem),
        (status = 429, description = "too many failures; wait Retry-After seconds", body = Problem)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<WebLoginRequest>,
) -> AppResult<HttpResponse> {
    check_csrf(&req)?;
    let body = body.into_inner();
    let t = auth::sign_in(
        &state,
        &req,
        LoginRequest {
            username: body.username,
            password: body.password,
            device_id: None,
        },
    )
    .await?;
    Ok(answer(&state, &req, t))
}

/// Browser refresh: rotates the refresh token of the cookie (the cookie is replaced) and
/// returns a new access token.
#[utoipa::path(post, path = "/api/v1/auth/web/refresh", tag = "auth",
    params(("X-Fieldsync-Csrf" = String, Header, description = "must be `1`")),
    responses(
        (status = 200, body = WebTokenResponse),
        (status = 401, description = "no cookie, or an unknown, expired, revoked or replayed refresh token", body = Problem),
        (status = 403, description = "`csrf_check_failed`", body = Problem)))]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> AppResult<HttpResponse> {
    check_csrf(&req)?;
    let token = refresh_from_cookie(&req).ok_or(AppError::Unauthorized("invalid_token"))?;
    let t = auth::rotate_refresh(&state, token).await?;
    Ok(answer(&state, &req, t))
}

/// Browser sign-out: revokes the cookie's token family and clears the cookie. Always 204.
#[utoipa::path(post, path = "/api/v1/auth/web/logout", tag = "auth",
    params(("X-Fieldsync-Csrf" = String, Header, description = "must be `1`")),
    responses(
        (status = 204, description = "signed out; the cookie is cleared"),
        (status = 403, description = "`csrf_check_failed`", body = Problem)))]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> AppResult<HttpResponse> {
    check_csrf(&req)?;
    if let Some(token) = refresh_from_cookie(&req) {
        let db = state.db.clone();
        web::block(move || db.write(|c| tokens::logout(c, &token))).await??;
    }
    Ok(HttpResponse::NoContent()
        .insert_header((header::SET_COOKIE, cookie(&req, "", 0)))
        .finish())
}
