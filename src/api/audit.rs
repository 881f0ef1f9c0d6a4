//! The audit log, for admins.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::audit::{self, AuditQuery, AuditRow};
use crate::auth::Principal;
use crate::error::{AppError, AppResult, Problem};
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Rows about this person id.
    pub person: Option<String>,
    /// Rows by this user id.
    pub user: Option<String>,
    /// Rows of this action, e.g. `login_failed`.
    pub action: Option<String>,
    /// From this time (unix microseconds, inclusive).
    pub from: Option<i64>,
    /// Before this time (unix microseconds, exclusive).
    pub to: Option<i64>,
    /// At most this many rows, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

fn plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Query the audit log (admins).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<AuditRow>), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn query(
    principal: Principal,
    state: web::Data<AppState>,
    params: web::Query<AuditParams>,
) -> AppResult<HttpResponse> {
    let _ = principal;
    let p = params.into_inner();
    for v in [&p.person, &p.user, &p.action].into_iter().flatten() {
        if !plain_id(v) {
            return Err(AppError::BadRequest(
                "person, user and action are plain ids".into(),
            ));
        }
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let q = AuditQuery {
        person: p.person,
        user: p.user,
        action: p.action,
        from: p.from,
        to: p.to,
        limit,
    };
    let db = state.db.clone();
    let rows = web::block(move || db.read(|c| audit::query(c, &q))).await??;
    Ok(HttpResponse::Ok().json(rows))
}
