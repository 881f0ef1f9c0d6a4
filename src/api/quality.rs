//! Data quality (logic-check flags) for supervisors. Thin: parse, call `supervise::quality`, map.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::supervise::quality::{self, FlagFilter, FlagPage, FlagSummary};
use crate::AppState;

/// Active logic-check flags (逻辑错误) in your subtree, with their messages in Chinese and
/// English and a link to the record.
#[utoipa::path(get, path = "/api/v1/supervise/flags", tag = "supervise",
    params(FlagFilter),
    responses((status = 200, body = FlagPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<FlagFilter>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let p = web::block(move || quality::list(&db, &principal, &filter)).await??;
    Ok(HttpResponse::Ok().json(p))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// Only this org unit's subtree.
    pub village: Option<String>,
}

/// Counts of active flags per village and check, for the township view.
#[utoipa::path(get, path = "/api/v1/supervise/flags/summary", tag = "supervise",
    params(SummaryParams),
    responses((status = 200, body = FlagSummary), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn summary(
    principal: Principal,
    state: web::Data<AppState>,
    params: web::Query<SummaryParams>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let village = params.into_inner().village;
    let s = web::block(move || quality::summary(&db, &principal, village.as_deref())).await??;
    Ok(HttpResponse::Ok().json(s))
}
