//! Supervisors' ledgers: lists, one record, history, direct edits. Thin: parse, call
//! `supervise::ledgers`, map.

use actix_web::{web, HttpResponse};

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::labels::parse_entity;
use crate::supervise::ledgers::{
    self, DirectEdit, History, LedgerFilter, LedgerPage, RecordDetail,
};
use crate::sync::protocol::OpResult;
use crate::AppState;

/// List a ledger (household, person, pregnancy, birth, death, measure, visit, migration,
/// supply, benefit) in your subtree.
///
/// Ordered by id, or by `sort` (a whitelisted key of the record type, `-key` descending; an
/// unknown key answers 400 `unknown_sort_key`), with keyset pages (`after` = the previous
/// page's `next_after`, with the same `sort`); `total` counts all matches. Deleted records are left out unless `include_deleted`. ID numbers are masked.
/// Reading persons writes an audit row.
#[utoipa::path(get, path = "/api/v1/supervise/{entity}", tag = "supervise",
    params(("entity" = String, Path, description = "Record type, e.g. `person`"), LedgerFilter),
    responses((status = 200, body = LedgerPage), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    filter: web::Query<LedgerFilter>,
) -> AppResult<HttpResponse> {
    let entity = parse_entity(&path.into_inner())?;
    let db = state.db.clone();
    let page = web::block(move || ledgers::list(&db, &principal, entity, &filter)).await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One record in full with its linked records (a person with household, births, pregnancies,
/// measures, visits...), active flags and open conflicts. Person reads are audited. ID numbers
/// are shown in full to township supervisors and masked for county supervisors
/// (`roles::id_number_view`).
#[utoipa::path(get, path = "/api/v1/supervise/{entity}/{id}", tag = "supervise",
    params(("entity" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = RecordDetail), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn one(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (entity, id) = path.into_inner();
    let entity = parse_entity(&entity)?;
    let db = state.db.clone();
    let d = web::block(move || ledgers::one(&db, &principal, entity, &id)).await??;
    Ok(HttpResponse::Ok().json(d))
}

/// Every version of a record with who, which device, when and what changed; the device ops
/// and the conflicts about it. ID numbers as in one record (full for township supervisors,
/// masked for county supervisors).
#[utoipa::path(get, path = "/api/v1/supervise/{entity}/{id}/history", tag = "supervise",
    params(("entity" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = History), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn history(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (entity, id) = path.into_inner();
    let entity = parse_entity(&entity)?;
    let db = state.db.clone();
    let h = web::block(move || ledgers::history(&db, &principal, entity, &id)).await??;
    Ok(HttpResponse::Ok().json(h))
}

/// Edit a record directly. The edit merges like a device's op against `base_version`: fields
/// changed since then by others become conflicts (by the field's policy), logic checks flag
/// the record, and the edit is audited. Answers the op result with the new version.
#[utoipa::path(post, path = "/api/v1/supervise/records/{entity}/{id}", tag = "supervise",
    params(("entity" = String, Path), ("id" = String, Path)),
    request_body(content = DirectEdit, example = json!({"base_version": 3, "set": {"marital_status": "divorced"}, "reason": "户籍核实"})),
    responses((status = 200, body = OpResult), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn edit(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<DirectEdit>,
) -> AppResult<HttpResponse> {
    let (entity, id) = path.into_inner();
    let entity = parse_entity(&entity)?;
    let db = state.db.clone();
    let r = web::block(move || ledgers::edit(&db, &principal, entity, &id, &body)).await??;
    Ok(HttpResponse::Ok().json(r))
}
