//! Devices: registration by the field worker, listing and revocation by admins and supervisors.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::{token_response, TokenResponse};
use crate::auth::devices::{self, DeviceView};
use crate::auth::users;
use crate::auth::{tokens, Principal};
use crate::error::{AppError, AppResult, Problem};
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    pub name: String,
    #[serde(default)]
    pub app_version: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RegisteredDevice {
    pub device_id: String,
    /// New tokens bound to the device; use them from now on.
    #[serde(flatten)]
    pub tokens: TokenResponse,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Only this user's devices (id or username).
    pub user: Option<String>,
}

/// Register the caller's phone (field workers). Answers the device id and tokens bound to it.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = RegisterDevice,
    security(("bearer" = [])),
    responses((status = 201, body = RegisteredDevice), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn register(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<RegisterDevice>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let st = state.clone();
    let resp = web::block(move || {
        st.db.write(|c| {
            let id = devices::register(
                c,
                &principal.user_id,
                &body.name,
                body.app_version.as_deref(),
            )?;
            let family = tokens::start_family(c, &st.settings.auth, &principal.user_id, Some(&id))?;
            let user = users::get(c, &principal.user_id)?
                .ok_or(AppError::Unauthorized("invalid_token"))?;
            Ok(RegisteredDevice {
                tokens: token_response(&st, &user, Some(&id), &family.id, family.token)?,
                device_id: id,
            })
        })
    })
    .await??;
    Ok(HttpResponse::Created().json(resp))
}

/// Devices the caller may manage: all for an admin, those of accounts in a supervisor's subtree.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceFilter),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceView>), (status = 403, body = Problem)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<DeviceFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let user = filter.into_inner().user;
    let list =
        web::block(move || db.read(|c| devices::list_visible(c, &principal, user.as_deref())))
            .await??;
    Ok(HttpResponse::Ok().json(list))
}

/// Revoke a lost or retired device: its tokens stop working at once; what it synced stays.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "device id")),
    security(("bearer" = [])),
    responses((status = 200, body = DeviceView), (status = 404, description = "no such device in the caller's subtree", body = Problem)))]
pub async fn revoke(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let db = state.db.clone();
    let dev = web::block(move || {
        db.write(|c| {
            let rid = principal.request_id.clone();
            devices::revoke(c, Some(&principal), &id, &rid)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(dev))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterForWorker {
    /// The phone's name as the office knows it (e.g. its asset number).
    pub name: String,
}

/// Register a device for a field worker (admins) and issue its one-time enrolment code. The
/// worker's phone exchanges the code at `POST /api/v1/devices/enrol` for tokens bound to this
/// device; the admin never holds the worker's tokens or password. The code works once, for
/// 72 hours, while the device and the worker are active.
#[utoipa::path(post, path = "/api/v1/users/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "the worker's user id")),
    request_body(content = RegisterForWorker, example = json!({"name": "县配发手机 017"})),
    security(("bearer" = [])),
    responses((status = 201, body = devices::Enrolment), (status = 404, body = Problem),
        (status = 422, description = "Not an active worker, or a bad name", body = Problem)))]
pub async fn register_for_worker(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RegisterForWorker>,
) -> AppResult<HttpResponse> {
    let user_id = path.into_inner();
    let db = state.db.clone();
    let e = web::block(move || {
        db.write(|c| devices::register_for(c, &principal, &user_id, &body.name))
    })
    .await??;
    Ok(HttpResponse::Created().json(e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolDevice {
    /// The code an admin issued for this device.
    pub enrolment_code: String,
    #[serde(default)]
    pub app_version: Option<String>,
}

/// Enrol a phone with the one-time code an admin issued (no sign-in): answers the device id
/// and tokens bound to it, as a worker's own registration does.
#[utoipa::path(post, path = "/api/v1/devices/enrol", tag = "devices", request_body = EnrolDevice,
    responses((status = 201, body = RegisteredDevice),
        (status = 401, description = "Wrong, used or expired code", body = Problem)))]
pub async fn enrol(
    state: web::Data<AppState>,
    body: web::Json<EnrolDevice>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let st = state.clone();
    let resp = web::block(move || {
        st.db.write(|c| {
            let (user, id) = devices::enrol(c, &body.enrolment_code, body.app_version.as_deref())?;
            let family = tokens::start_family(c, &st.settings.auth, &user.id, Some(&id))?;
            Ok(RegisteredDevice {
                tokens: token_response(&st, &user, Some(&id), &family.id, family.token)?,
                device_id: id,
            })
        })
    })
    .await??;
    Ok(HttpResponse::Created().json(resp))
}
