//! The monthly report's way up: a village's month report is **submitted** by its township
//! supervisor on the village worker's behalf (workers hand in their month on the phone through
//! sync; the township office declares the village's month complete once it has gone through the
//! village's conflicts and flags), then **approved** or **returned** with a comment by the
//! township, and the county **locks** the month.
//!
//! Approval freezes the village's counts (`figures`) together with the change sequence they
//! were read at (`approved_seq`). A locked month's report shows those frozen figures; records
//! synced later that touch the month are listed as changes after approval, and never alter the
//! locked figures. Returning an approved (not yet locked) report unfreezes it.
//!
//! Timeliness: a village's report is on time when first submitted by the end of the
//! [`DEADLINE_DAY`]th of the next month, China Standard Time.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::roles::Role;
use crate::db::schema::users;
use crate::db::stmt::Stmt;
use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};
use crate::orgunit::{self, OrgUnit};
use crate::orgunit::{subtree_range, Level};
use crate::report::counts::{self, Counts, KeyBy, Window};
use crate::report::indicators::{self, Rate};
use crate::report::lang::{self, Lang};
use crate::report::report::{Period, UnitRef};

/// Day of the next month by whose end a village's month report is due.
pub const DEADLINE_DAY: u32 = 5;
/// Hours east of UTC of the deadline's clock (China Standard Time).
pub const DEADLINE_UTC_OFFSET_HOURS: i64 = 8;

diesel::table! {
    report_submissions (id) {
        id -> Text,
        org_unit -> Text,
        period -> Text,
        status -> Text,
        comment -> Nullable<Text>,
        first_submitted_at -> BigInt,
        submitted_at -> BigInt,
        submitted_by -> Text,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
        locked_at -> Nullable<BigInt>,
        locked_by -> Nullable<Text>,
        approved_seq -> Nullable<BigInt>,
        figures -> Nullable<Text>,
    }
}

diesel::table! {
    report_events (id) {
        id -> Text,
        submission_id -> Text,
        org_unit -> Text,
        period -> Text,
        action -> Text,
        status -> Text,
        user_id -> Text,
        role -> Text,
        reason -> Nullable<Text>,
        at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(report_events, users);

/// Who acts on a report: the user and the role they act in (recorded in the history).
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub role: Role,
}

/// Records one approval action in the history, in the caller's transaction.
fn record_event(
    conn: &mut DbConn,
    sub: &Submission,
    action: &str,
    by: Actor,
    reason: Option<&str>,
    at: i64,
) -> AppResult<()> {
    diesel::insert_into(report_events::table)
        .values((
            report_events::id.eq(uuid::Uuid::now_v7().to_string()),
            report_events::submission_id.eq(&sub.id),
            report_events::org_unit.eq(&sub.org_unit),
            report_events::period.eq(&sub.period),
            report_events::action.eq(action),
            report_events::status.eq(&sub.status),
            report_events::user_id.eq(by.user_id),
            report_events::role.eq(by.role.as_str()),
            report_events::reason.eq(reason),
            report_events::at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// One action in a month report's approval history.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportEvent {
    /// `submit`, `resubmit`, `approve`, `return` or `lock`.
    pub action: String,
    /// The report's status after the action.
    pub status: String,
    pub user_id: String,
    /// The actor's username (absent if the user no longer exists).
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// The role the actor acted in (empty for actions recorded before the history existed).
    pub role: String,
    /// The township's reason, for `return`.
    pub reason: Option<String>,
    /// Unix microseconds.
    pub at: i64,
}

/// A month report's approval history, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportHistory {
    pub submission: Submission,
    pub events: Vec<ReportEvent>,
}

/// The approval history of `sub`, oldest first.
pub fn history(conn: &mut DbConn, sub: Submission) -> AppResult<ReportHistory> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = report_events::table
        .left_join(users::table.on(users::id.eq(report_events::user_id)))
        .filter(report_events::submission_id.eq(&sub.id))
        .order((report_events::at, report_events::id))
        .select((
            report_events::action,
            report_events::status,
            report_events::user_id,
            users::username.nullable(),
            users::display_name.nullable(),
            report_events::role,
            report_events::reason,
            report_events::at,
        ))
        .load(conn)?;
    let events = rows
        .into_iter()
        .map(
            |(action, status, user_id, username, display_name, role, reason, at)| ReportEvent {
                action,
                status,
                user_id,
                username,
                display_name,
                role,
                reason,
                at,
            },
        )
        .collect();
    Ok(ReportHistory {
        submission: sub,
        events,
    })
}

/// A village's month report in the approval flow. Times are unix microseconds.
#[derive(Clone, Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = report_submissions)]
pub struct Submission {
    pub id: String,
    pub org_unit: String,
    /// `YYYY-MM`.
    pub period: String,
    /// `submitted`, `returned`, `approved` or `locked`.
    pub status: String,
    /// The township's reason when returned.
    pub comment: Option<String>,
    pub first_submitted_at: i64,
    pub submitted_at: i64,
    pub submitted_by: String,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub locked_at: Option<i64>,
    pub locked_by: Option<String>,
    /// The change sequence the frozen figures were read at.
    pub approved_seq: Option<i64>,
    #[serde(skip)]
    pub figures: Option<String>,
}

impl Submission {
    /// The counts frozen at approval (zeros when none).
    pub fn frozen_counts(&self) -> Counts {
        self.figures
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_else(counts::zero)
    }
}

/// Submissions of the villages under `code` for the month `YYYY-MM`.
pub fn in_subtree(conn: &mut DbConn, code: &str, month: &str) -> AppResult<Vec<Submission>> {
    let (lo, hi) = subtree_range(code);
    Ok(report_submissions::table
        .filter(report_submissions::org_unit.ge(lo))
        .filter(report_submissions::org_unit.lt(hi))
        .filter(report_submissions::period.eq(month))
        .order(report_submissions::org_unit)
        .select(Submission::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut DbConn, id: &str) -> AppResult<Option<Submission>> {
    Ok(report_submissions::table
        .filter(report_submissions::id.eq(id))
        .select(Submission::as_select())
        .first(conn)
        .optional()?)
}

/// The first instant after the deadline of `period`'s report, unix microseconds.
pub fn deadline(period: &Period) -> i64 {
    let next = period.end.succ_opt().expect("a month has a next day");
    let day = NaiveDate::from_ymd_opt(next.year(), next.month(), DEADLINE_DAY)
        .and_then(|d| d.succ_opt())
        .expect("valid deadline");
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
    (midnight - chrono::Duration::hours(DEADLINE_UTC_OFFSET_HOURS))
        .and_utc()
        .timestamp_micros()
}

/// Submits (or resubmits a returned) village month report.
pub fn submit(
    conn: &mut DbConn,
    village: &OrgUnit,
    period: &Period,
    by: Actor,
) -> AppResult<Submission> {
    let user_id = by.user_id;
    if orgunit::level(village) != Level::Village {
        return Err(AppError::validation(
            "not_a_village",
            "month reports are submitted per village",
        ));
    }
    let month = period.month_code().ok_or_else(|| {
        AppError::validation("not_a_month", "month reports are submitted per month")
    })?;
    let today = chrono::Utc::now().date_naive();
    if period.end >= today {
        return Err(AppError::validation(
            "period_not_ended",
            "a month's report is submitted after the month has ended",
        ));
    }
    let now = now_micros();
    let existing: Option<Submission> = report_submissions::table
        .filter(report_submissions::org_unit.eq(&village.code))
        .filter(report_submissions::period.eq(&month))
        .select(Submission::as_select())
        .first(conn)
        .optional()?;
    match existing {
        Some(s) if s.status == "returned" => {
            diesel::update(report_submissions::table.filter(report_submissions::id.eq(&s.id)))
                .set((
                    report_submissions::status.eq("submitted"),
                    report_submissions::submitted_at.eq(now),
                    report_submissions::submitted_by.eq(user_id),
                ))
                .execute(conn)?;
            let sub = get(conn, &s.id)?.ok_or(AppError::NotFound)?;
            record_event(conn, &sub, "resubmit", by, None, now)?;
            Ok(sub)
        }
        Some(s) => Err(AppError::Conflict(format!(
            "the report of {} for {month} is already {}",
            village.code, s.status
        ))),
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            diesel::insert_into(report_submissions::table)
                .values((
                    report_submissions::id.eq(&id),
                    report_submissions::org_unit.eq(&village.code),
                    report_submissions::period.eq(&month),
                    report_submissions::status.eq("submitted"),
                    report_submissions::first_submitted_at.eq(now),
                    report_submissions::submitted_at.eq(now),
                    report_submissions::submitted_by.eq(user_id),
                ))
                .execute(conn)?;
            let sub = get(conn, &id)?.ok_or(AppError::NotFound)?;
            record_event(conn, &sub, "submit", by, None, now)?;
            Ok(sub)
        }
    }
}

/// The newest change number: the approval runs alone (no push in flight), so every change at
/// or below it is committed and counted, and every later one is numbered above it.
fn last_change_seq(conn: &mut DbConn) -> AppResult<i64> {
    crate::sync::sequence::enter(conn, crate::sync::sequence::Writers::Alone)?;
    crate::sync::sequence::horizon_alone(conn)
}

/// Approves a submitted report, freezing the village's counts for the month.
pub fn approve(
    conn: &mut DbConn,
    sub: &Submission,
    by: Actor,
    rules: crate::report::indicators::Rules,
) -> AppResult<Submission> {
    if sub.status != "submitted" {
        return Err(AppError::Conflict(format!(
            "only a submitted report can be approved; this one is {}",
            sub.status
        )));
    }
    let period = Period::parse_month(&sub.period).map_err(AppError::Internal)?;
    let seq = last_change_seq(conn)?;
    let window = Window {
        org_unit: sub.org_unit.clone(),
        start: period.start,
        end: period.end,
        rules,
    };
    let mut figures = counts::zero();
    if let Some(c) = counts::count(conn, None, &window, KeyBy::Total)?.remove("") {
        figures.extend(c);
    }
    let now = now_micros();
    diesel::update(report_submissions::table.filter(report_submissions::id.eq(&sub.id)))
        .set((
            report_submissions::status.eq("approved"),
            report_submissions::decided_at.eq(now),
            report_submissions::decided_by.eq(by.user_id),
            report_submissions::comment.eq(None::<String>),
            report_submissions::approved_seq.eq(seq),
            report_submissions::figures
                .eq(serde_json::to_string(&figures).expect("counts serialise")),
        ))
        .execute(conn)?;
    let sub = get(conn, &sub.id)?.ok_or(AppError::NotFound)?;
    record_event(conn, &sub, "approve", by, None, now)?;
    Ok(sub)
}

/// Returns a submitted or approved (not locked) report to the village with a comment.
pub fn return_report(
    conn: &mut DbConn,
    sub: &Submission,
    by: Actor,
    comment: &str,
) -> AppResult<Submission> {
    let comment = comment.trim();
    if comment.is_empty() || comment.chars().count() > 2000 {
        return Err(AppError::validation(
            "comment_required",
            "say why the report goes back (1 to 2000 characters)",
        ));
    }
    if sub.status != "submitted" && sub.status != "approved" {
        return Err(AppError::Conflict(format!(
            "a {} report cannot be returned",
            sub.status
        )));
    }
    let now = now_micros();
    diesel::update(report_submissions::table.filter(report_submissions::id.eq(&sub.id)))
        .set((
            report_submissions::status.eq("returned"),
            report_submissions::decided_at.eq(now),
            report_submissions::decided_by.eq(by.user_id),
            report_submissions::comment.eq(comment),
            report_submissions::approved_seq.eq(None::<i64>),
            report_submissions::figures.eq(None::<String>),
        ))
        .execute(conn)?;
    let sub = get(conn, &sub.id)?.ok_or(AppError::NotFound)?;
    record_event(conn, &sub, "return", by, Some(comment), now)?;
    Ok(sub)
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LockResult {
    pub org_unit: String,
    pub period: String,
    /// Villages locked now.
    pub locked: Vec<String>,
    /// Villages that were locked before.
    pub already_locked: Vec<String>,
}

/// Locks the month for every village under `unit`. Every village's report must be approved
/// (or already locked); otherwise nothing is locked and the answer names the villages missing.
pub fn lock(
    conn: &mut DbConn,
    unit: &OrgUnit,
    period: &Period,
    by: Actor,
) -> AppResult<LockResult> {
    let month = period.month_code().ok_or_else(|| {
        AppError::validation("not_a_month", "a month is locked, not another period")
    })?;
    let subs: BTreeMap<String, Submission> = in_subtree(conn, &unit.code, &month)?
        .into_iter()
        .map(|s| (s.org_unit.clone(), s))
        .collect();
    let villages: Vec<OrgUnit> = orgunit::subtree(conn, &unit.code)?
        .into_iter()
        .filter(|u| orgunit::level(u) == Level::Village)
        .collect();
    let missing: Vec<&str> = villages
        .iter()
        .filter(|v| {
            !subs
                .get(&v.code)
                .is_some_and(|s| s.status == "approved" || s.status == "locked")
        })
        .map(|v| v.code.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(AppError::Conflict(format!(
            "not every village's report for {month} is approved: {}",
            missing.join(", ")
        )));
    }
    let now = now_micros();
    let mut result = LockResult {
        org_unit: unit.code.clone(),
        period: month,
        locked: Vec::new(),
        already_locked: Vec::new(),
    };
    for s in subs.values() {
        if s.status == "locked" {
            result.already_locked.push(s.org_unit.clone());
            continue;
        }
        if s.status != "approved" {
            continue;
        }
        diesel::update(report_submissions::table.filter(report_submissions::id.eq(&s.id)))
            .set((
                report_submissions::status.eq("locked"),
                report_submissions::locked_at.eq(now),
                report_submissions::locked_by.eq(by.user_id),
            ))
            .execute(conn)?;
        let locked = Submission {
            status: "locked".into(),
            ..s.clone()
        };
        record_event(conn, &locked, "lock", by, None, now)?;
        result.locked.push(s.org_unit.clone());
    }
    Ok(result)
}

/// A record synced after a village's month was approved, touching that month.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Change {
    pub entity: String,
    pub record_id: String,
    pub org_unit: String,
    pub version: i64,
    pub change_seq: i64,
    pub deleted: bool,
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    entity: String,
    #[diesel(sql_type = Text)]
    record_id: String,
    #[diesel(sql_type = Text)]
    org_unit: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    change_seq: i64,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    data: String,
}

/// Whether a version of a record (its fields) bears on the figures of `period`.
fn affects(entity: &str, data: &serde_json::Value, period: &Period) -> bool {
    let s = period.start.format("%Y-%m-%d").to_string();
    let e = period.end.format("%Y-%m-%d").to_string();
    let within = |f: &str| {
        data[f]
            .as_str()
            .is_some_and(|d| d >= s.as_str() && d <= e.as_str())
    };
    let by_end = |f: &str| data[f].as_str().is_some_and(|d| d <= e.as_str());
    match entity {
        "person" => by_end("birth_date"),
        "birth" => within("birth_date"),
        "death" => within("death_date"),
        "pregnancy" => within("outcome_date") || within("detected_on"),
        "measure" => by_end("started_on"),
        "visit" => within("due_date") || within("visit_date"),
        "migration" => within("moved_on"),
        "supply" => within("handed_on"),
        "benefit" => data["year"].as_i64().is_some_and(|y| {
            (i64::from(period.start.year())..=i64::from(period.end.year())).contains(&y)
        }),
        _ => false,
    }
}

/// Records of the approved villages changed after their approval that touch `period` (any of
/// their versions, before or after the change, falls in it), including records that moved into
/// or out of such a village.
pub fn changes_after_approval(
    conn: &mut DbConn,
    code: &str,
    period: &Period,
    approved: &[&Submission],
) -> AppResult<Vec<Change>> {
    let seqs: BTreeMap<&str, i64> = approved
        .iter()
        .filter_map(|s| Some((s.org_unit.as_str(), s.approved_seq?)))
        .collect();
    let Some(min_seq) = seqs.values().min().copied() else {
        return Ok(Vec::new());
    };
    let (lo, hi) = subtree_range(code);
    let sql =
        "SELECT v.entity, v.record_id, v.org_unit, v.version, v.change_seq, v.deleted, v.data \
         FROM record_versions v WHERE (v.entity, v.record_id) IN \
           (SELECT a.entity, a.record_id FROM record_versions a WHERE a.change_seq > ? \
            AND EXISTS (SELECT 1 FROM record_versions r WHERE r.entity = a.entity \
              AND r.record_id = a.record_id AND r.org_unit >= ? AND r.org_unit < ?)) \
         ORDER BY v.entity, v.record_id, v.version";
    let rows: Vec<VersionRow> = Stmt::new(sql)
        .int(min_seq)
        .text(&lo)
        .text(&hi)
        .load_on(conn)?;
    let mut by_record: BTreeMap<(String, String), Vec<VersionRow>> = BTreeMap::new();
    for r in rows {
        by_record
            .entry((r.entity.clone(), r.record_id.clone()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((entity, record_id), versions) in by_record {
        let village_seq = |org: &str| {
            let v: String = org.chars().take(12).collect();
            seqs.get(v.as_str()).copied()
        };
        // A record that was, or now is, in an approved village (it may have moved between
        // villages): changed after the earliest of those approvals.
        let Some(seq) = versions
            .iter()
            .filter_map(|v| village_seq(&v.org_unit))
            .min()
        else {
            continue;
        };
        let Some(last_after) = versions
            .iter()
            .filter(|v| v.change_seq > seq)
            .max_by_key(|v| v.change_seq)
        else {
            continue;
        };
        let touches = versions.iter().any(|v| {
            serde_json::from_str::<serde_json::Value>(&v.data)
                .is_ok_and(|d| affects(&entity, &d, period))
        });
        if touches {
            out.push(Change {
                entity: entity.clone(),
                record_id: record_id.clone(),
                org_unit: last_after.org_unit.clone(),
                version: last_after.version,
                change_seq: last_after.change_seq,
                deleted: last_after.deleted,
            });
        }
    }
    out.sort_by_key(|c| c.change_seq);
    Ok(out)
}

/// One village in the completeness table.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VillageSubmission {
    pub org_unit: UnitRef,
    /// `null` when nothing was submitted.
    pub status: Option<String>,
    pub first_submitted_at: Option<i64>,
    /// First submitted by the deadline.
    pub on_time: bool,
}

/// Completeness (上报率) and timeliness (及时率) of the villages' month reports.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Completeness {
    pub org_unit: UnitRef,
    pub period: String,
    /// Reports first submitted before this instant (unix microseconds) are on time.
    pub deadline: i64,
    pub villages: i64,
    pub submitted: i64,
    pub on_time: i64,
    pub late: i64,
    pub missing: i64,
    pub approved: i64,
    pub locked: i64,
    /// Villages that submitted / villages.
    pub completeness: Rate,
    /// Villages that submitted on time / villages.
    pub timeliness: Rate,
    pub rows: Vec<VillageSubmission>,
    /// The language of `labels`.
    pub lang: Lang,
    /// Labels of the figures above and of the submission statuses, by name.
    pub labels: BTreeMap<&'static str, &'static str>,
}

pub fn completeness(
    conn: &mut DbConn,
    unit: &OrgUnit,
    period: &Period,
    lang: Lang,
) -> AppResult<Completeness> {
    let month = period
        .month_code()
        .ok_or_else(|| AppError::validation("not_a_month", "completeness is per month"))?;
    let deadline = deadline(period);
    let subs: BTreeMap<String, Submission> = in_subtree(conn, &unit.code, &month)?
        .into_iter()
        .map(|s| (s.org_unit.clone(), s))
        .collect();
    let mut rows = Vec::new();
    for v in orgunit::subtree(conn, &unit.code)?
        .iter()
        .filter(|u| orgunit::level(u) == Level::Village)
    {
        let s = subs.get(&v.code);
        rows.push(VillageSubmission {
            org_unit: v.into(),
            status: s.map(|s| s.status.clone()),
            first_submitted_at: s.map(|s| s.first_submitted_at),
            on_time: s.is_some_and(|s| s.first_submitted_at < deadline),
        });
    }
    let n = rows.len() as i64;
    let submitted = rows.iter().filter(|r| r.status.is_some()).count() as i64;
    let on_time = rows.iter().filter(|r| r.on_time).count() as i64;
    let with = |st: &str| {
        rows.iter()
            .filter(|r| r.status.as_deref() == Some(st))
            .count() as i64
    };
    Ok(Completeness {
        org_unit: unit.into(),
        period: month,
        deadline,
        villages: n,
        submitted,
        on_time,
        late: submitted - on_time,
        missing: n - submitted,
        approved: with("approved"),
        locked: with("locked"),
        completeness: indicators::percent(submitted, n),
        timeliness: indicators::percent(on_time, n),
        rows,
        lang,
        labels: lang::completeness_labels(lang),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_end_of_the_fifth_in_china() {
        let p = Period::parse_month("2026-10").unwrap();
        // 2026-11-06T00:00+08:00 = 2026-11-05T16:00Z
        let expected = chrono::NaiveDate::from_ymd_opt(2026, 11, 5)
            .unwrap()
            .and_hms_opt(16, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert_eq!(deadline(&p), expected);
        let dec = Period::parse_month("2026-12").unwrap();
        assert!(deadline(&dec) > deadline(&p));
    }

    #[test]
    fn what_touches_a_month() {
        let p = Period::parse_month("2026-10").unwrap();
        assert!(affects(
            "birth",
            &serde_json::json!({"birth_date": "2026-10-31"}),
            &p
        ));
        assert!(!affects(
            "birth",
            &serde_json::json!({"birth_date": "2026-11-01"}),
            &p
        ));
        assert!(affects(
            "person",
            &serde_json::json!({"birth_date": "1990-01-01"}),
            &p
        ));
        assert!(!affects(
            "person",
            &serde_json::json!({"birth_date": "2026-11-02"}),
            &p
        ));
        assert!(affects(
            "measure",
            &serde_json::json!({"started_on": "2020-01-01"}),
            &p
        ));
        assert!(affects("benefit", &serde_json::json!({"year": 2026}), &p));
        assert!(!affects("household", &serde_json::json!({}), &p));
    }
}
