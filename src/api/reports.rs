//! The monthly report: reports and breakdowns, yearly targets, the approval flow, completeness,
//! and CSV/XLSX exports. Supervisors only; every org unit is checked against the caller's scope
//! (a unit outside it answers 404, like a unit that does not exist).

use std::io::Write;

use chrono::Datelike;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::db::{Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::orgunit::{self, OrgUnit};
use crate::report::approval::{self, Actor, Completeness, LockResult, ReportHistory, Submission};
use crate::report::export::{self, ExportFormat};
use crate::report::indicators::Indicator;
use crate::report::lang::Lang;
use crate::report::report::{self as rep, Breakdown, Order, Period, Report};
use crate::report::targets::{self, SetTargets, TargetRow};
use crate::AppState;

/// The org unit `code` (default: the caller's own) if it lies in the caller's scope.
fn unit_in_scope(conn: &mut DbConn, p: &Principal, code: Option<&str>) -> AppResult<OrgUnit> {
    let scope = p.scope(conn)?;
    let code = match code {
        Some(c) => c.to_string(),
        None => scope.roots().first().cloned().ok_or(AppError::NotFound)?,
    };
    if !scope.contains(&code) {
        return Err(AppError::NotFound);
    }
    orgunit::get(conn, &code)?.ok_or(AppError::NotFound)
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Org unit code (default: the caller's own unit).
    pub org_unit: Option<String>,
    /// `YYYY-MM` (a month, or with `kind=ytd` the year to its end), `YYYY-Qn`, or `YYYY`.
    pub period: Option<String>,
    /// Start of a range, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// End of a range (inclusive), `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `month`, `quarter`, `ytd`, `year` or `range` (inferred when omitted).
    pub kind: Option<String>,
    /// Breakdown only: an indicator code to rank the rows by.
    pub sort: Option<String>,
    /// Breakdown only: `desc` (default), `asc`, or `worst` (worst first against each row's
    /// target, respecting a floor, a ceiling or a band; rows without a target after them, by
    /// the indicator's usual direction).
    pub order: Option<Order>,
    /// Language of the labels (and of an export's headers): `zh-CN` (default) or `en`.
    pub lang: Option<Lang>,
}

impl ReportQuery {
    fn period(&self) -> AppResult<Period> {
        Period::parse(
            self.kind.as_deref(),
            self.period.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )
        .map_err(AppError::BadRequest)
    }
}

/// The report of an org unit for a period.
///
/// Counts (population at period start and end, births by sex, parity and policy, deaths,
/// married women of childbearing age by living children, contraceptive users by method, the
/// four operations, checks and follow-ups due and done, migrants and certificates, supplies,
/// benefits) rolled up from the unit's villages, and every indicator with its numerator and
/// denominator (`value` null: not applicable), target and attainment. For a month, villages
/// whose report is locked count with their frozen approved figures, and `approval` lists
/// records changed after approval.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportQuery),
    responses(
        (status = 200, body = Report),
        (status = 400, description = "Bad period", body = crate::error::Problem),
        (status = 403, description = "Not a supervisor", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn get_report(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> AppResult<HttpResponse> {
    let period = q.period()?;
    let lang = q.lang.unwrap_or_default();
    let db = state.db.clone();
    let rules = state.settings.report;
    let report = web::block(move || {
        db.read_split(|c, second| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            rep::report(c, second, &unit, &period, rules)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(report.in_lang(lang)))
}

/// One row per child org unit (villages of a township, townships of a county, groups of a
/// village) with the report's counts and indicators, plus the total; ranked by `sort`.
#[utoipa::path(get, path = "/api/v1/reports/breakdown", tag = "reports", params(ReportQuery),
    responses(
        (status = 200, body = Breakdown),
        (status = 400, description = "Bad period or indicator", body = crate::error::Problem),
        (status = 403, description = "Not a supervisor", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn get_breakdown(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> AppResult<HttpResponse> {
    let period = q.period()?;
    let sort = q.sort.as_deref().map(rep::parse_indicator).transpose()?;
    let lang = q.lang.unwrap_or_default();
    let db = state.db.clone();
    let rules = state.settings.report;
    let b = web::block(move || {
        db.read_split(|c, second| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            rep::breakdown(c, second, &unit, &period, sort, q.order, rules)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(b.in_lang(lang)))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitsQuery {
    /// Org unit code (default: the caller's own unit).
    pub org_unit: Option<String>,
}

/// An org unit and the child units a breakdown of it has rows for.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UnitChildren {
    pub org_unit: rep::UnitRef,
    pub children: Vec<rep::UnitRef>,
}

/// An org unit in your scope and its child units (townships of a county, villages of a
/// township, groups of a village), by code: what the console lists before it asks for figures.
#[utoipa::path(get, path = "/api/v1/reports/units", tag = "reports", params(UnitsQuery),
    responses(
        (status = 200, body = UnitChildren),
        (status = 403, description = "Not a supervisor", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn units(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<UnitsQuery>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let out = web::block(move || {
        db.read(|c| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            let children = orgunit::children(c, &unit.code)?;
            Ok(UnitChildren {
                org_unit: (&unit).into(),
                children: children.iter().map(Into::into).collect(),
            })
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(out))
}

/// The report and breakdown a query asks for, from one count of the unit (the report page's
/// request and the exports).
async fn report_and_breakdown(
    principal: Principal,
    state: &AppState,
    q: ReportQuery,
) -> AppResult<(Report, Breakdown)> {
    let period = q.period()?;
    let sort = q.sort.as_deref().map(rep::parse_indicator).transpose()?;
    let db = state.db.clone();
    let rules = state.settings.report;
    web::block(move || {
        db.read_split(|c, second| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            rep::report_and_breakdown(c, second, &unit, &period, sort, q.order, rules)
        })
    })
    .await?
}

/// The report of an org unit and its breakdown by child unit, counted once: the same
/// `report` as `GET /api/v1/reports` and the same `breakdown` as
/// `GET /api/v1/reports/breakdown` (whose total row is the report's figure), for a page that
/// shows both. Same parameters as the breakdown.
#[utoipa::path(get, path = "/api/v1/reports/with-breakdown", tag = "reports", params(ReportQuery),
    responses(
        (status = 200, body = rep::ReportWithBreakdown),
        (status = 400, description = "Bad period or indicator", body = crate::error::Problem),
        (status = 403, description = "Not a supervisor", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn get_report_with_breakdown(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> AppResult<HttpResponse> {
    let lang = q.lang.unwrap_or_default();
    let (report, breakdown) = report_and_breakdown(principal, &state, q.into_inner()).await?;
    Ok(HttpResponse::Ok().json(rep::ReportWithBreakdown {
        report: report.in_lang(lang),
        breakdown: breakdown.in_lang(lang),
    }))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// Org unit code (default: the caller's own unit).
    pub org_unit: Option<String>,
    /// The last month, `YYYY-MM` (default: the server's current month).
    pub to: Option<String>,
    /// How many months, 1 to 24 (default 12).
    pub months: Option<u32>,
    /// Indicator codes, comma-separated (default: every indicator).
    pub indicators: Option<String>,
    /// Language of the labels: `zh-CN` (default) or `en`.
    pub lang: Option<Lang>,
}

impl TrendQuery {
    fn months(&self) -> AppResult<Vec<Period>> {
        let last = match self.to.as_deref() {
            Some(m) => Period::parse_month(m).map_err(AppError::BadRequest)?,
            None => {
                let today = crate::sync::push::today();
                Period::month(today.year(), today.month())
                    .ok_or_else(|| AppError::Internal("no current month".into()))?
            }
        };
        rep::months_to(&last, self.months.unwrap_or(12))
    }

    fn indicators(&self) -> AppResult<Vec<Indicator>> {
        let Some(list) = self.indicators.as_deref() else {
            return Ok(Indicator::ALL.to_vec());
        };
        let mut out: Vec<Indicator> = Vec::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let i = rep::parse_indicator(code)?;
            if !out.contains(&i) {
                out.push(i);
            }
        }
        if out.is_empty() {
            return Err(AppError::BadRequest("indicators names no indicator".into()));
        }
        Ok(out)
    }
}

/// Indicators of an org unit month by month (the console's twelve-month trend lines): each
/// month's values are exactly those of `GET /api/v1/reports` for that month, counted in one
/// request rather than one per month.
#[utoipa::path(get, path = "/api/v1/reports/trend", tag = "reports", params(TrendQuery),
    responses(
        (status = 200, body = rep::Trend),
        (status = 400, description = "Bad month, number of months or indicator", body = crate::error::Problem),
        (status = 403, description = "Not a supervisor", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn get_trend(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<TrendQuery>,
) -> AppResult<HttpResponse> {
    let months = q.months()?;
    let indicators = q.indicators()?;
    let lang = q.lang.unwrap_or_default();
    let db = state.db.clone();
    let rules = state.settings.report;
    let trend = web::block(move || {
        db.read_split(|c, second| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            rep::trend(c, second, &unit, &months, &indicators, rules)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(trend.in_lang(lang)))
}

/// Sets yearly targets of one org unit. A county supervisor sets its townships' targets, a
/// township supervisor its villages'; `direction` defaults to the indicator's usual one
/// (at most for the population rates and the sex ratio, at least for the others), or to
/// `between` with an `upper`: a band from `value` to `upper` ("出生人口性别比控制在103-107之间"),
/// whose attainment says which side was missed.
#[utoipa::path(put, path = "/api/v1/targets", tag = "reports",
    request_body(content = SetTargets, example = json!({"org_unit": "130131102", "year": 2026, "targets": [
        {"indicator": "policy_compliant_birth_rate", "value": 94.0},
        {"indicator": "contraceptive_prevalence", "direction": "at_least", "value": 88.0},
        {"indicator": "crude_birth_rate", "direction": "at_most", "value": 10.0},
        {"indicator": "sex_ratio_at_birth", "direction": "between", "value": 103.0, "upper": 107.0}]})),
    responses(
        (status = 200, description = "The unit's targets for the year", body = [TargetRow]),
        (status = 403, description = "The unit is not directly below yours", body = crate::error::Problem),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
        (status = 422, description = "Bad year or value", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn set_targets(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<SetTargets>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let rows = web::block(move || {
        db.write(|c| {
            let unit = unit_in_scope(c, &principal, Some(&body.org_unit))?;
            let scope = principal.scope(c)?;
            let parent_ok = unit
                .parent_code
                .as_ref()
                .is_some_and(|p| scope.roots().contains(p));
            if !parent_ok {
                return Err(AppError::Forbidden("targets_set_by_level_above"));
            }
            let rows = targets::set(c, &body, &principal.user_id)?;
            audit::record(
                c,
                AuditEntry {
                    actor_user: Some(principal.user_id.clone()),
                    actor_role: Some(principal.role.as_str().into()),
                    action: "targets_set",
                    target_kind: Some("org_unit".into()),
                    target_ids: vec![unit.code.clone()],
                    request_id: principal.request_id.clone(),
                    detail: Some(serde_json::json!({"year": body.year})),
                },
            )?;
            Ok(rows)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TargetsQuery {
    /// Org unit (default: your own); the targets of it and every unit below it.
    pub org_unit: Option<String>,
    pub year: i32,
}

/// The yearly targets of an org unit and the units below it.
#[utoipa::path(get, path = "/api/v1/targets", tag = "reports", params(TargetsQuery),
    responses(
        (status = 200, body = [TargetRow]),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn list_targets(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<TargetsQuery>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let rows = web::block(move || {
        db.read(|c| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            targets::list(c, &unit.code, q.year, true)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitReport {
    /// The village.
    pub org_unit: String,
    /// The month, `YYYY-MM` (ended).
    pub period: String,
}

/// Submits a village's month report, or resubmits a returned one: the village's field worker
/// (a village assigned to them), or its township supervisor on the worker's behalf. The
/// township then approves or returns it; the county locks the month.
#[utoipa::path(post, path = "/api/v1/reports/submissions", tag = "reports",
    request_body(content = SubmitReport, example = json!({"org_unit": "130131102201", "period": "2026-10"})),
    responses(
        (status = 201, body = Submission),
        (status = 404, description = "No such village in your scope", body = crate::error::Problem),
        (status = 409, description = "Already submitted, approved or locked", body = crate::error::Problem),
        (status = 422, description = "Not a village, or the month has not ended", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn submit(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<SubmitReport>,
) -> AppResult<HttpResponse> {
    let period = Period::parse_month(&body.period).map_err(AppError::BadRequest)?;
    let db = state.db.clone();
    let sub = web::block(move || {
        db.write(|c| {
            let unit = unit_in_scope(c, &principal, Some(&body.org_unit))?;
            approval::submit(c, &unit, &period, actor(&principal))
        })
    })
    .await??;
    Ok(HttpResponse::Created().json(sub))
}

/// The submission `id` if its village lies in the caller's scope.
fn submission_in_scope(conn: &mut DbConn, p: &Principal, id: &str) -> AppResult<Submission> {
    let sub = approval::get(conn, id)?.ok_or(AppError::NotFound)?;
    unit_in_scope(conn, p, Some(&sub.org_unit))?;
    Ok(sub)
}

fn actor(p: &Principal) -> Actor<'_> {
    Actor {
        user_id: &p.user_id,
        role: p.role,
    }
}

/// The approval history of a village month report, oldest first: each submit, resubmit,
/// approve, return (with its reason) and lock, with who (user and role) and when.
#[utoipa::path(get, path = "/api/v1/reports/submissions/{id}/history", tag = "reports",
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 200, body = ReportHistory),
        (status = 404, description = "No such submission in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn submission_history(
    principal: Principal,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let res = web::block(move || {
        db.read(|c| {
            let sub = submission_in_scope(c, &principal, &id)?;
            approval::history(c, sub)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(res))
}

/// Approves a submitted village month report, freezing its figures.
#[utoipa::path(post, path = "/api/v1/reports/submissions/{id}/approve", tag = "reports",
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 200, body = Submission),
        (status = 404, description = "No such submission in your scope", body = crate::error::Problem),
        (status = 409, description = "Not in the submitted state", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn approve(
    principal: Principal,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let rules = state.settings.report;
    let sub = web::block(move || {
        db.write(|c| {
            let sub = submission_in_scope(c, &principal, &id)?;
            approval::approve(c, &sub, actor(&principal), rules)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(sub))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnReport {
    /// Why the report goes back to the village.
    pub comment: String,
}

/// Returns a submitted (or approved, not locked) village month report with a comment.
#[utoipa::path(post, path = "/api/v1/reports/submissions/{id}/return", tag = "reports",
    params(("id" = String, Path, description = "Submission id")),
    request_body(content = ReturnReport, example = json!({"comment": "出生登记缺两例，请补录"})),
    responses(
        (status = 200, body = Submission),
        (status = 404, description = "No such submission in your scope", body = crate::error::Problem),
        (status = 409, description = "Locked or already returned", body = crate::error::Problem),
        (status = 422, description = "No comment", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn return_report(
    principal: Principal,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ReturnReport>,
) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let sub = web::block(move || {
        db.write(|c| {
            let sub = submission_in_scope(c, &principal, &id)?;
            approval::return_report(c, &sub, actor(&principal), &body.comment)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(sub))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockMonth {
    /// County or township (default: your county).
    pub org_unit: Option<String>,
    /// `YYYY-MM`.
    pub period: String,
}

/// Locks a month (county supervisor): every village's report under the unit must be approved.
#[utoipa::path(post, path = "/api/v1/reports/lock", tag = "reports",
    request_body(content = LockMonth, example = json!({"period": "2026-10"})),
    responses(
        (status = 200, body = LockResult),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
        (status = 409, description = "Some village's report is not approved (named in the message)", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn lock(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<LockMonth>,
) -> AppResult<HttpResponse> {
    let period = Period::parse_month(&body.period).map_err(AppError::BadRequest)?;
    let db = state.db.clone();
    let res = web::block(move || {
        db.write(|c| {
            let unit = unit_in_scope(c, &principal, body.org_unit.as_deref())?;
            approval::lock(c, &unit, &period, actor(&principal))
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(res))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompletenessQuery {
    pub org_unit: Option<String>,
    /// `YYYY-MM`.
    pub period: String,
    /// Language of the labels: `zh-CN` (default) or `en`.
    pub lang: Option<Lang>,
}

/// Which villages submitted their month report, and which by the deadline (the 5th of the
/// next month, China time).
#[utoipa::path(get, path = "/api/v1/reports/completeness", tag = "reports", params(CompletenessQuery),
    responses(
        (status = 200, body = Completeness),
        (status = 404, description = "No such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn completeness(
    principal: Principal,
    state: web::Data<AppState>,
    q: web::Query<CompletenessQuery>,
) -> AppResult<HttpResponse> {
    let period = Period::parse_month(&q.period).map_err(AppError::BadRequest)?;
    let db = state.db.clone();
    let res = web::block(move || {
        db.read(|c| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            approval::completeness(c, &unit, &period, q.lang.unwrap_or_default())
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(res))
}

/// Sends what it is written to the response body in chunks.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

/// A temp file path for an XLSX export.
fn temp_xlsx() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "fieldsync-export-{}.xlsx",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Writes the file with `write`, then streams it (the path is removed once open).
fn stream_file(
    out: &mut ChunkSender,
    write: impl FnOnce(&std::path::Path) -> AppResult<()>,
) -> AppResult<()> {
    let path = temp_xlsx();
    let written = write(&path);
    let file = written.and_then(|_| {
        std::fs::File::open(&path).map_err(|e| AppError::Internal(format!("export file: {e}")))
    });
    let _ = std::fs::remove_file(&path);
    let mut file = file?;
    std::io::copy(&mut file, out).map_err(|e| AppError::Internal(format!("export send: {e}")))?;
    Ok(())
}

/// A streamed download: `produce` runs on a blocking thread and writes the body.
fn download(
    filename: String,
    format: ExportFormat,
    produce: impl FnOnce(&mut ChunkSender) -> AppResult<()> + Send + 'static,
) -> HttpResponse {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    actix_web::rt::task::spawn_blocking(move || {
        let mut out = ChunkSender {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result = produce(&mut out).and_then(|_| {
            out.flush()
                .map_err(|e| AppError::Internal(format!("export send: {e}")))
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "export failed while streaming");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body)
}

fn format_of(ext: &str) -> AppResult<ExportFormat> {
    ExportFormat::parse(ext).ok_or(AppError::NotFound)
}

/// The report and its breakdown as a file: CSV (UTF-8 with BOM; one row per child unit and the
/// total 合计) or XLSX (sheets 分单位报表 and 指标), Chinese headers (English with `lang=en`:
/// sheets `breakdown` and `indicators`). Same parameters as `GET /api/v1/reports/breakdown`.
#[utoipa::path(get, path = "/api/v1/exports/report.{format}", tag = "reports",
    params(("format" = String, Path, description = "`csv` or `xlsx`"), ReportQuery),
    responses(
        (status = 200, description = "The file", content_type = "text/csv"),
        (status = 400, description = "Bad period", body = crate::error::Problem),
        (status = 404, description = "Unknown format, or no such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn export_report(
    principal: Principal,
    state: web::Data<AppState>,
    format: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> AppResult<HttpResponse> {
    let format = format_of(&format)?;
    let lang = q.lang.unwrap_or_default();
    let (report, b) = report_and_breakdown(principal, &state, q.into_inner()).await?;
    let name = format!(
        "report-{}-{}.{}",
        report.org_unit.code,
        report.period.label.replace("..", "_"),
        format.ext()
    );
    Ok(download(name, format, move |out| match format {
        ExportFormat::Csv => export::report_csv(out, &b, lang),
        ExportFormat::Xlsx => stream_file(out, |p| export::report_xlsx(p, &report, &b, lang)),
    }))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Org unit (default: your own); the ledger of its subtree.
    pub org_unit: Option<String>,
    /// Language of the headers and of coded values: `zh-CN` (default) or `en`.
    pub lang: Option<Lang>,
}

/// One ledger (household, person, pregnancy, birth, death, measure, visit, migration, supply,
/// benefit) of the caller's scope as CSV (UTF-8 with BOM) or XLSX, Chinese headers (English
/// with `lang=en`), streamed;
/// ID numbers are masked. Recorded in the audit log.
#[utoipa::path(get, path = "/api/v1/exports/ledger/{entity}.{format}", tag = "reports",
    params(("entity" = String, Path, description = "Record type, e.g. `person`"),
           ("format" = String, Path, description = "`csv` or `xlsx`"), LedgerQuery),
    responses(
        (status = 200, description = "The file", content_type = "text/csv"),
        (status = 404, description = "Unknown record type or format, or no such org unit in your scope", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn export_ledger(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<LedgerQuery>,
) -> AppResult<HttpResponse> {
    let (entity, ext) = path.into_inner();
    let entity = Entity::parse(&entity).ok_or(AppError::NotFound)?;
    let format = format_of(&ext)?;
    let lang = q.lang.unwrap_or_default();
    let db: Db = state.db.clone();
    let code = web::block(move || {
        db.write(|c| {
            let unit = unit_in_scope(c, &principal, q.org_unit.as_deref())?;
            let entry = export::ledger_export_audit(c, entity, &unit.code, format, lang)?;
            audit::record(
                c,
                AuditEntry {
                    actor_user: Some(principal.user_id.clone()),
                    actor_role: Some(principal.role.as_str().into()),
                    request_id: principal.request_id.clone(),
                    ..entry
                },
            )?;
            Ok::<_, AppError>(unit.code)
        })
    })
    .await??;
    let db = state.db.clone();
    let name = format!("{}-{code}.{}", entity.name(), format.ext());
    Ok(download(name, format, move |out| {
        db.read(|c| match format {
            ExportFormat::Csv => export::ledger_csv(c, out, entity, &code, lang).map(|_| ()),
            ExportFormat::Xlsx => stream_file(out, |p| {
                export::ledger_xlsx(c, p, entity, &code, lang).map(|_| ())
            }),
        })
    }))
}
