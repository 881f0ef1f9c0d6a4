//! The conflict queue for supervisors. Thin: parse, call `supervise::conflicts`, map.

use actix_web::{web, HttpResponse};

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::conflicts::{
    self, BulkItem, ConflictDetail, ConflictFilter, ConflictPage, ConflictView, Resolve,
    ResolveBulk, Resolved,
};
use crate::AppState;

/// Conflicts in your subtree, oldest first, by status (default `open`), village, record type
/// and age. Keyset pages (`after`); values of ID numbers masked.
#[utoipa::path(get, path = "/api/v1/supervise/conflicts", tag = "supervise",
    params(ConflictFilter),
    responses((status = 200, body = ConflictPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<ConflictFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || conflicts::list(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

/// One conflict: base, server and device values side by side, and the record as it is now.
/// ID numbers as in one record (full for township supervisors, masked for county supervisors).
#[utoipa::path(get, path = "/api/v1/supervise/conflicts/{id}", tag = "supervise",
    params(("id" = String, Path)),
    responses((status = 200, body = ConflictDetail), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn one(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let id = path.into_inner();
    let d = web::block(move || conflicts::one(&db, &principal, &id)).await??;
    Ok(HttpResponse::Ok().json(d))
}

/// Resolve a conflict by taking the server's or the device's value, or entering one, with a
/// reason. Writes the record's next version, which devices receive on their next pull.
#[utoipa::path(post, path = "/api/v1/supervise/conflicts/{id}/resolve", tag = "supervise",
    params(("id" = String, Path)),
    request_body(content = Resolve, example = json!({"take": "device", "reason": "入户核实为离婚"})),
    responses((status = 200, body = Resolved), (status = 404, body = Problem),
        (status = 409, description = "Already resolved", body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn resolve(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Resolve>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let id = path.into_inner();
    let r = web::block(move || conflicts::resolve(&db, &principal, &id, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// Reopen a closed `latest` conflict for review.
#[utoipa::path(post, path = "/api/v1/supervise/conflicts/{id}/reopen", tag = "supervise",
    params(("id" = String, Path)),
    responses((status = 200, body = ConflictView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn reopen(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let id = path.into_inner();
    let r = web::block(move || conflicts::reopen(&db, &principal, &id)).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// Resolve many conflicts the same way in one transaction; one result per id (`resolved`,
/// `not_found`, `not_resolvable`).
#[utoipa::path(post, path = "/api/v1/supervise/conflicts/resolve-bulk", tag = "supervise",
    request_body = ResolveBulk,
    responses((status = 200, body = Vec<BulkItem>), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn resolve_bulk(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<ResolveBulk>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let r = web::block(move || conflicts::resolve_bulk(&db, &principal, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}
