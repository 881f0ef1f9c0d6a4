//! Duplicate persons for supervisors. Thin: parse, call `supervise::duplicates`, map.

use actix_web::{web, HttpResponse};

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::duplicates::{
    self, DismissRequest, DismissalView, DismissedPage, DuplicateFilter, DuplicatePage, MergePage,
    MergeRequest, MergeResult, UndismissRequest, UndismissResult, UndoResult,
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

/// Undo a merge through the merge path: the merged person restored; the survivor's fields the
/// merge changed, and the records it re-pointed, merged back three-way against the versions the
/// merge left, so edits made since the merge survive and a field changed both ways becomes a
/// conflict (listed in `conflicts` and the queue). Each change is a new version devices receive.
/// The pair is then dismissed (never merged again automatically).
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

/// Dismiss a potential duplicate: the two persons are different people. The pair is no longer
/// listed, nor merged automatically when they share an ID number, until the dismissal is
/// withdrawn. Both persons must be in your subtree (404 otherwise). Audited.
#[utoipa::path(post, path = "/api/v1/supervise/duplicates/dismiss", tag = "supervise",
    request_body(content = DismissRequest, example = json!({"a_id": "0192f0c1-0000-7000-8000-0000000000aa",
        "b_id": "0192f0c1-0000-7000-8000-0000000000bb", "reason": "同名同生日，入户核实为两人"})),
    responses((status = 200, body = DismissalView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn dismiss(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<DismissRequest>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let r = web::block(move || duplicates::dismiss(&db, &principal, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// Withdraw a dismissal: the pair is listed as a potential duplicate again. 404 when the pair
/// is not dismissed or a person is outside your subtree. Audited.
#[utoipa::path(post, path = "/api/v1/supervise/duplicates/undismiss", tag = "supervise",
    request_body(content = UndismissRequest, example = json!({"a_id": "0192f0c1-0000-7000-8000-0000000000aa",
        "b_id": "0192f0c1-0000-7000-8000-0000000000bb", "reason": "误判"})),
    responses((status = 200, body = UndismissResult), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn undismiss(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<UndismissRequest>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let r = web::block(move || duplicates::undismiss(&db, &principal, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// Dismissed pairs in your subtree (both persons), with who dismissed them and why: what
/// `undismiss` can withdraw. Reading them is audited.
#[utoipa::path(get, path = "/api/v1/supervise/duplicates/dismissed", tag = "supervise",
    params(DuplicateFilter),
    responses((status = 200, body = DismissedPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn dismissed(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<DuplicateFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || duplicates::dismissed_list(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

/// Merges in your subtree (both persons), newest first: automatic ones (a device registered a
/// known ID number) and supervisors', with who merged and when, and `undone_at` once undone;
/// what `POST /api/v1/supervise/merges/{id}/undo` can undo. `village` keeps the merges whose
/// survivor lies in that subtree. Reading them is audited.
#[utoipa::path(get, path = "/api/v1/supervise/merges", tag = "supervise",
    params(DuplicateFilter),
    responses((status = 200, body = MergePage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn merges(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<DuplicateFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || duplicates::merges_list(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}
