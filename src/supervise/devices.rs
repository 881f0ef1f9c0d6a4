//! Device and worker status for supervisors: last push and pull, recent ops, rejections, app
//! version, clock offset; and a device's rejected ops with their stored payloads.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Principal, Scope};
use crate::db::schema::{device_ops, devices, user_villages, users};
use crate::db::{now_micros, Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::supervise::common::*;

const DAY: i64 = 86_400_000_000;

/// A device clock further than this from the server's (either way) is flagged: its workers'
/// `recorded_at` times, and so `latest` conflicts, are not to be trusted.
pub const CLOCK_SKEW_LIMIT_MS: i64 = 5 * 60 * 1000;

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only active devices that have neither pushed nor pulled for this many days.
    pub inactive_days: Option<i64>,
    /// The `next_after` of the previous page (a device id).
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
    /// `active` or `revoked`.
    pub status: String,
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

pub fn status(db: &Db, principal: &Principal, f: &StatusFilter) -> AppResult<DeviceStatusPage> {
    let limit = page_limit(f.limit)? as usize;
    if f.after.as_deref().is_some_and(|a| !plain(a)) {
        return Err(AppError::BadRequest("bad cursor".into()));
    }
    if f.inactive_days.is_some_and(|d| !(0..=3650).contains(&d)) {
        return Err(AppError::BadRequest("inactive_days must be 0-3650".into()));
    }
    let now = now_micros();
    db.read(|conn| {
        let scope = principal.scope(conn)?;
        let workers = workers_in_scope(conn, &scope)?;
        let (day, week) = (now - DAY, now - 7 * DAY);
        let sql = format!(
            "SELECT d.id, d.name, d.user_id, u.username, u.display_name, d.status, d.app_version, d.last_seq, \
             d.last_push_at, d.last_pull_at, d.clock_offset_ms, d.created_at, \
             (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.received_at >= {day}) AS ops_day, \
             (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.received_at >= {week}) AS ops_week, \
             (SELECT COUNT(*) FROM device_ops o WHERE o.device_id = d.id AND o.status = 'rejected') AS rejected \
             FROM devices d JOIN users u ON u.id = d.user_id WHERE u.role = 'worker' ORDER BY d.id"
        );
        let rows: Vec<Row> = diesel::sql_query(sql).load(conn)?;
        let mut items: Vec<DeviceStatus> = rows
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
            .collect();
        if let Some(d) = f.inactive_days {
            items.retain(|i| i.status == "active" && i.days_since_sync >= d);
        }
        let total = items.len() as i64;
        let after = f.after.clone().unwrap_or_default();
        items.retain(|i| i.device_id > after);
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(DeviceStatusPage {
            total,
            next_after: if more { items.last().map(|i| i.device_id.clone()) } else { None },
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
    #[schema(value_type = Object)]
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
                        .map(|p| id_payload(&o.2, p, ids)),
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
                next_after: if more {
                    items.last().map(|i| i.seq)
                } else {
                    None
                },
                items,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}
