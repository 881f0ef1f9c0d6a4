//! Device and worker status for supervisors: last push and pull, recent ops, rejections, app
//! version, clock offset; and a device's rejected ops with their stored payloads.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Principal, Scope};
use crate::db::schema::{device_ops, devices, user_villages, users};
use crate::db::stmt::Stmt;
use crate::db::{now_micros, Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::supervise::audit::audit_person_reads;
use crate::supervise::ids::{id_payload, ids_for, IdContext};
use crate::supervise::paging::{next_after, page_limit};
use crate::supervise::sql::plain;

const DAY: i64 = 86_400_000_000;

/// A device clock further than this from the server's (either way) is flagged: its workers'
/// `recorded_at` times, and so `latest` conflicts, are not to be trusted.
pub const CLOCK_SKEW_LIMIT_MS: i64 = 5 * 60 * 1000;

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only active devices (for workers: active accounts) that have neither pushed nor pulled
    /// for this many days; revoked devices are never listed here.
    pub inactive_days: Option<i64>,
    /// The `next_after` of the previous page (a device id; for workers a user id).
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct DeviceStatus {
    pub device_id: String,
    pub device_name: String,
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub villages: Vec<String>,
    /// `active` or `revoked`. A revoked device (a lost or replaced phone) stays listed with its
    /// last sync and ops, but never counts as "not synced" (`inactive_days`): it cannot sync.
    pub status: String,
    /// Unix microseconds; null for an active device.
    pub revoked_at: Option<i64>,
    pub app_version: Option<String>,
    pub last_seq: i64,
    /// Unix microseconds.
    pub last_push_at: Option<i64>,
    pub last_pull_at: Option<i64>,
    /// Whole days since the last push or pull (since registration when it never synced).
    pub days_since_sync: i64,
    pub ops_last_day: i64,
    pub ops_last_week: i64,
    pub rejected_ops: i64,
    /// The device clock minus the server's, in milliseconds (positive: the device is ahead),
    /// measured at its latest push that carried `sent_at`; null until then.
    pub clock_offset_ms: Option<i64>,
    /// The measured offset is more than 5 minutes either way.
    pub clock_skewed: bool,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct DeviceStatusPage {
    pub total: i64,
    pub items: Vec<DeviceStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    username: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    display_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    revoked_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    app_version: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_seq: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    last_push_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    last_pull_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    clock_offset_ms: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    created_at: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ops_day: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ops_week: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rejected: i64,
}

/// Workers (by id) with at least one village in scope, and their villages.
fn workers_in_scope(conn: &mut DbConn, scope: &Scope) -> AppResult<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = user_villages::table
        .inner_join(users::table.on(users::id.eq(user_villages::user_id)))
        .filter(users::role.eq("worker"))
        .select((user_villages::user_id, user_villages::org_unit))
        .load(conn)?;
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (u, v) in rows {
        all.entry(u).or_default().push(v);
    }
    all.retain(|_, vs| vs.iter().any(|v| scope.contains(v)));
    Ok(all)
}

fn check_status_filter(f: &StatusFilter) -> AppResult<()> {
    if f.after.as_deref().is_some_and(|a| !plain(a)) {
        return Err(AppError::BadRequest("bad cursor".into()));
    }
    if f.inactive_days.is_some_and(|d| !(0..=3650).contains(&d)) {
        return Err(AppError::BadRequest("inactive_days must be 0-3650".into()));
    }
    Ok(())
}

/// Every device of the workers in `workers`, by id, as of `now`.
fn device_statuses(
    conn: &mut DbConn,
    workers: &BTreeMap<String, Vec<String>>,
    now: i64,
) -> AppResult<Vec<DeviceStatus>> {
    let (day, week) = (now - DAY, now - 7 * DAY);
    let sql = "SELECT d.id, d.name, d.user_id, u.username, u.display_name, d.status, d.revoked_at, d.app_version, d.last_seq, \
         d.last_push_at, d.last_pull_at, d.clock_offset_ms, d.created_at, \
         (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.received_at >= ?) AS ops_day, \
         (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.received_at >= ?) AS ops_week, \
         (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.status = 'rejected') AS rejected \
         FROM devices d JOIN users u ON u.id = d.user_id WHERE u.role = 'worker' ORDER BY d.id";
    let rows: Vec<Row> = Stmt::new(sql).int(day).int(week).load_on(conn)?;
    Ok(rows
        .into_iter()
        .filter(|r| workers.contains_key(&r.user_id))
        .map(|r| {
            let last = r.last_push_at.max(r.last_pull_at).unwrap_or(r.created_at);
            DeviceStatus {
                villages: workers[&r.user_id].clone(),
                days_since_sync: (now - last).max(0) / DAY,
                device_id: r.id,
                device_name: r.name,
                user_id: r.user_id,
                username: r.username,
                display_name: r.display_name,
                status: r.status,
                revoked_at: r.revoked_at,
                app_version: r.app_version,
                last_seq: r.last_seq,
                last_push_at: r.last_push_at,
                last_pull_at: r.last_pull_at,
                ops_last_day: r.ops_day,
                ops_last_week: r.ops_week,
                rejected_ops: r.rejected,
                clock_skewed: r
                    .clock_offset_ms
                    .is_some_and(|ms| ms.abs() > CLOCK_SKEW_LIMIT_MS),
                clock_offset_ms: r.clock_offset_ms,
            }
        })
        .collect())
}

/// One keyset page of `items` (ordered by `key`) after `after`, with the total.
fn page_of<T>(
    mut items: Vec<T>,
    after: Option<&str>,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> (i64, Vec<T>, Option<String>) {
    let total = items.len() as i64;
    let after = after.unwrap_or_default();
    items.retain(|i| key(i) > after);
    let more = items.len() > limit;
    items.truncate(limit);
    let next = next_after(more, &items, |i| key(i).to_string());
    (total, items, next)
}

pub fn status(db: &Db, principal: &Principal, f: &StatusFilter) -> AppResult<DeviceStatusPage> {
    let limit = page_limit(f.limit)? as usize;
    check_status_filter(f)?;
    let now = now_micros();
    db.read(|conn| {
        let scope = principal.scope(conn)?;
        let workers = workers_in_scope(conn, &scope)?;
        let mut items = device_statuses(conn, &workers, now)?;
        if let Some(d) = f.inactive_days {
            items.retain(|i| i.status == "active" && i.days_since_sync >= d);
        }
        let (total, items, next_after) =
            page_of(items, f.after.as_deref(), limit, |i| i.device_id.as_str());
        Ok(DeviceStatusPage {
            total,
            next_after,
            items,
        })
    })
}

/// A field worker's sync across all their devices.
#[derive(Serialize, ToSchema, Debug)]
pub struct WorkerStatus {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    /// The worker's account is active.
    pub active: bool,
    pub villages: Vec<String>,
    /// Devices registered by the worker, revoked ones included.
    pub devices: i64,
    pub active_devices: i64,
    pub device_ids: Vec<String>,
    /// The latest push and pull across the worker's devices (revoked ones included: the sync
    /// happened), unix microseconds.
    pub last_push_at: Option<i64>,
    pub last_pull_at: Option<i64>,
    /// Whole days since the latest push or pull on any of the worker's devices (since the
    /// account was created when none ever synced, or the worker registered no device).
    pub days_since_sync: i64,
    /// Ops received from all the worker's devices.
    pub ops_last_day: i64,
    pub ops_last_week: i64,
    pub rejected_ops: i64,
    /// An active device's clock is more than 5 minutes off.
    pub clock_skewed: bool,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct WorkerStatusPage {
    pub total: i64,
    pub items: Vec<WorkerStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The workers with a village in the caller's subtree, by user id, each with the rollup of
/// their devices. `inactive_days` keeps active accounts that have not synced for that many days.
pub fn workers(db: &Db, principal: &Principal, f: &StatusFilter) -> AppResult<WorkerStatusPage> {
    let limit = page_limit(f.limit)? as usize;
    check_status_filter(f)?;
    let now = now_micros();
    db.read(|conn| {
        let scope = principal.scope(conn)?;
        let villages = workers_in_scope(conn, &scope)?;
        let ids: Vec<&String> = villages.keys().collect();
        let accounts: Vec<(String, String, String, bool, i64)> = users::table
            .filter(users::id.eq_any(ids))
            .order(users::id)
            .select((
                users::id,
                users::username,
                users::display_name,
                users::active,
                users::created_at,
            ))
            .load(conn)?;
        let mut by_worker: BTreeMap<String, Vec<DeviceStatus>> = BTreeMap::new();
        for d in device_statuses(conn, &villages, now)? {
            by_worker.entry(d.user_id.clone()).or_default().push(d);
        }
        let mut items: Vec<WorkerStatus> = accounts
            .into_iter()
            .map(|(user_id, username, display_name, active, created_at)| {
                let ds = by_worker.remove(&user_id).unwrap_or_default();
                let last_push_at = ds.iter().filter_map(|d| d.last_push_at).max();
                let last_pull_at = ds.iter().filter_map(|d| d.last_pull_at).max();
                let last = last_push_at.max(last_pull_at).unwrap_or(created_at);
                WorkerStatus {
                    villages: villages[&user_id].clone(),
                    devices: ds.len() as i64,
                    active_devices: ds.iter().filter(|d| d.status == "active").count() as i64,
                    device_ids: ds.iter().map(|d| d.device_id.clone()).collect(),
                    last_push_at,
                    last_pull_at,
                    days_since_sync: (now - last).max(0) / DAY,
                    ops_last_day: ds.iter().map(|d| d.ops_last_day).sum(),
                    ops_last_week: ds.iter().map(|d| d.ops_last_week).sum(),
                    rejected_ops: ds.iter().map(|d| d.rejected_ops).sum(),
                    clock_skewed: ds.iter().any(|d| d.status == "active" && d.clock_skewed),
                    user_id,
                    username,
                    display_name,
                    active,
                }
            })
            .collect();
        if let Some(d) = f.inactive_days {
            items.retain(|i| i.active && i.days_since_sync >= d);
        }
        let (total, items, next_after) =
            page_of(items, f.after.as_deref(), limit, |i| i.user_id.as_str());
        Ok(WorkerStatusPage {
            total,
            next_after,
            items,
        })
    })
}

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct RejectedFilter {
    /// Ops after this seq.
    pub after: Option<i64>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct RejectedOp {
    pub seq: i64,
    pub op_id: String,
    pub entity: String,
    pub record_id: String,
    pub kind: String,
    pub code: Option<String>,
    pub message: Option<String>,
    /// The op as the device sent it (a person's ID number masked, as in every list).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub recorded_at: Option<i64>,
    pub received_at: i64,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct RejectedPage {
    pub device_id: String,
    pub total: i64,
    pub items: Vec<RejectedOp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

type OpTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    i64,
);

pub fn rejected(
    db: &Db,
    principal: &Principal,
    device_id: &str,
    f: &RejectedFilter,
) -> AppResult<RejectedPage> {
    let limit = page_limit(f.limit)?;
    if !plain(device_id) {
        return Err(AppError::NotFound);
    }
    let (page, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let owner: Option<String> = devices::table
            .filter(devices::id.eq(device_id))
            .select(devices::user_id)
            .first(conn)
            .optional()?;
        let owner = owner.ok_or(AppError::NotFound)?;
        if !workers_in_scope(conn, &scope)?.contains_key(&owner) {
            return Err(AppError::NotFound);
        }
        let base = device_ops::table
            .filter(device_ops::device_id.eq(device_id))
            .filter(device_ops::status.eq("rejected"));
        let total: i64 = base.count().get_result(conn)?;
        let rows: Vec<OpTuple> = base
            .filter(device_ops::seq.gt(f.after.unwrap_or(0)))
            .order(device_ops::seq)
            .limit(limit + 1)
            .select((
                device_ops::seq,
                device_ops::op_id,
                device_ops::entity,
                device_ops::record_id,
                device_ops::kind,
                device_ops::code,
                device_ops::result,
                device_ops::payload,
                device_ops::recorded_at,
                device_ops::received_at,
            ))
            .load(conn)?;
        let more = rows.len() as i64 > limit;
        let ids = ids_for(principal, IdContext::List);
        let items: Vec<RejectedOp> = rows
            .into_iter()
            .take(limit as usize)
            .map(|o| {
                let result: Value = serde_json::from_str(&o.6).unwrap_or(Value::Null);
                RejectedOp {
                    payload: o
                        .7
                        .and_then(|p| serde_json::from_str(&p).ok())
                        .map(|p| id_payload(p, ids)),
                    seq: o.0,
                    op_id: o.1,
                    entity: o.2,
                    record_id: o.3,
                    kind: o.4,
                    code: o.5,
                    message: result["message"].as_str().map(str::to_string),
                    recorded_at: o.8,
                    received_at: o.9,
                }
            })
            .collect();
        let persons: BTreeSet<String> = items
            .iter()
            .filter(|i| i.entity == Entity::Person.name())
            .map(|i| i.record_id.clone())
            .filter(|id| plain(id))
            .collect();
        Ok((
            RejectedPage {
                device_id: device_id.to_string(),
                total,
                next_after: next_after(more, &items, |i| i.seq),
                items,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}
