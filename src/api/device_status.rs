//! Device and worker status for supervisors. Thin: parse, call `supervise::devices`, map.

use actix_web::{web, HttpResponse};

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::devices::{
    self, DeviceStatusPage, RejectedFilter, RejectedPage, StatusFilter, WorkerStatusPage,
};
use crate::AppState;

/// The devices of workers in your subtree: last push and pull, ops in the last day and week,
/// rejected ops, app version, clock offset. `inactive_days=N` lists the active devices that have
/// not synced for N days; revoked devices are listed (with `revoked_at`) but never as not synced.
#[utoipa::path(get, path = "/api/v1/supervise/devices/status", tag = "supervise",
    params(StatusFilter),
    responses((status = 200, body = DeviceStatusPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn status(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<StatusFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || devices::status(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

/// The field workers of your subtree, each with the rollup of their devices: devices (active
/// and revoked), the latest push and pull across them, ops in the last day and week, rejected
/// ops. `inactive_days=N` lists the active accounts that have not synced for N days (a worker
/// who never registered a device counts from the account's creation).
#[utoipa::path(get, path = "/api/v1/supervise/workers/status", tag = "supervise",
    params(StatusFilter),
    responses((status = 200, body = WorkerStatusPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn workers(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<StatusFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || devices::workers(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

/// A device's rejected ops with their stored payloads and codes (the device's worker must work
/// in your subtree).
#[utoipa::path(get, path = "/api/v1/supervise/devices/{id}/rejected", tag = "supervise",
    params(("id" = String, Path), RejectedFilter),
    responses((status = 200, body = RejectedPage), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn rejected(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    filter: web::Query<RejectedFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let id = path.into_inner();
    let p = web::block(move || devices::rejected(&db, &principal, &id, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}
