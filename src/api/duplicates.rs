//! Duplicate persons for supervisors. Thin: parse, call `supervise::duplicates`, map.

use actix_web::{web, HttpResponse};

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::duplicates::{
    self, DuplicateFilter, DuplicatePage, MergeRequest, MergeResult, UndoResult,
};
use crate::AppState;

/// Potential duplicate persons in your subtree: queued pairs with the same ID number, and pairs
/// of one village with the same name and birth date. Reading them is audited.
#[utoipa::path(get, path = "/api/v1/supervise/duplicates", tag = "supervise",
    params(DuplicateFilter),
    responses((status = 200, body = DuplicatePage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<DuplicateFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || duplicates::list(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

/// Merge `merged_id` into `survivor_id`, choosing per field whose value the survivor keeps.
/// The merged person becomes a tombstone redirecting to the survivor; its records are
/// re-pointed, each as a new version.
#[utoipa::path(post, path = "/api/v1/supervise/duplicates/merge", tag = "supervise",
    request_body(content = MergeRequest, example = json!({"survivor_id": "0192f0c1-0000-7000-8000-0000000000aa",
        "merged_id": "0192f0c1-0000-7000-8000-0000000000bb", "fields": {"name": "merged"}})),
    responses((status = 200, body = MergeResult), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn merge(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<MergeRequest>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let r = web::block(move || duplicates::merge(&db, &principal, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// Undo a merge from its stored snapshot: both persons restored and the records pointed back,
/// each as a new version.
#[utoipa::path(post, path = "/api/v1/supervise/merges/{id}/undo", tag = "supervise",
    params(("id" = String, Path)),
    responses((status = 200, body = UndoResult), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn undo(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let id = path.into_inner();
    let r = web::block(move || duplicates::undo(&db, &principal, &id)).await??;
    Ok(HttpResponse::Ok().json(r))
}
