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
