//! The sync core's own tables: the change-sequence lock, the device ledger, conflicts, flags.
//! Record rows themselves go through `db::records`.

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::auth::scope::Scope;
use crate::db::records::{backend_of, insert_rows, ColType};
use crate::db::schema::{conflicts, departures, device_ops, devices};
use crate::db::stmt::{self, Stmt};
use crate::db::{Backend, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
pub use crate::sync::plan::{Departure, NewConflict};
use crate::sync::protocol::{
    from_wire, ConflictKind, ConflictOut, ConflictStatus, OpResult, Policy, Winner,
};

/// SQL for "the flag's `(entity, record_id)` is one of the pairs bound at the `?`"
/// ([`stmt::pairs`]), looked up by the flags' primary key on both backends. (On SQLite a
/// row-value IN does that; a correlated EXISTS scanned every flag and re-read the JSON for
/// each. On PostgreSQL the EXISTS is planned as a join on the key.)
pub fn flag_keys_in(backend: Backend) -> String {
    let keys = stmt::json_pairs(backend, "k");
    match backend {
        Backend::Sqlite => format!("(entity, record_id) IN (SELECT k.a, k.b FROM {keys})"),
        Backend::Postgres => format!(
            "EXISTS (SELECT 1 FROM {keys} WHERE flags.entity = k.a AND flags.record_id = k.b)"
        ),
    }
}

pub struct DeviceRow {
    pub user_id: String,
    pub status: String,
    pub last_seq: i64,
    pub scope_hash: Option<String>,
}

pub fn device(conn: &mut DbConn, device_id: &str) -> AppResult<DeviceRow> {
    let row: Option<(String, String, i64, Option<String>)> = devices::table
        .filter(devices::id.eq(device_id))
        .select((
            devices::user_id,
            devices::status,
            devices::last_seq,
            devices::scope_hash,
        ))
        .first(conn)
        .optional()?;
    let (user_id, status, last_seq, scope_hash) =
        row.ok_or(AppError::Forbidden("unknown_device"))?;
    Ok(DeviceRow {
        user_id,
        status,
        last_seq,
        scope_hash,
    })
}

/// The stored first answers of already applied seqs.
pub fn stored_results(
    conn: &mut DbConn,
    device_id: &str,
    seqs: &[i64],
) -> AppResult<Vec<(i64, OpResult)>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String)> = device_ops::table
        .filter(device_ops::device_id.eq(device_id))
        .filter(device_ops::seq.eq_any(seqs))
        .select((device_ops::seq, device_ops::result))
        .load(conn)?;
    rows.into_iter()
        .map(|(s, r)| {
            serde_json::from_str(&r)
                .map(|res| (s, res))
                .map_err(|e| AppError::Internal(format!("stored result: {e}")))
        })
        .collect()
}

const OP_COLS: &[(&str, ColType)] = &[
    ("device_id", ColType::Text),
    ("seq", ColType::BigInt),
    ("op_id", ColType::Text),
    ("entity", ColType::Text),
    ("record_id", ColType::Text),
    ("kind", ColType::Text),
    ("status", ColType::Text),
    ("code", ColType::Text),
    ("result", ColType::Text),
    ("payload", ColType::Text),
    ("recorded_at", ColType::BigInt),
    ("received_at", ColType::BigInt),
];

/// One line of the device ledger.
pub struct LedgerEntry<'a> {
    pub result: &'a OpResult,
    pub kind: &'a str,
    pub payload: Option<&'a Value>,
    pub recorded_at: Option<i64>,
}

pub fn write_ledger(
    conn: &mut DbConn,
    device_id: &str,
    entries: &[LedgerEntry],
    now: i64,
) -> AppResult<()> {
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let kind = if matches!(e.kind, "create" | "update" | "delete") {
                e.kind
            } else {
                "update"
            };
            json!({
                "device_id": device_id,
                "seq": e.result.seq,
                "op_id": e.result.op_id,
                "entity": e.result.entity,
                "record_id": e.result.id,
                "kind": kind,
                "status": e.result.status,
                "code": e.result.code,
                "result": serde_json::to_string(e.result).expect("result serialises"),
                "payload": e.payload.map(|p| p.to_string()),
                "recorded_at": e.recorded_at,
                "received_at": now,
            })
        })
        .collect();
    insert_rows(conn, "device_ops", OP_COLS, None, &rows)
}

pub fn advance_device(
    conn: &mut DbConn,
    device_id: &str,
    last_seq: i64,
    now: i64,
) -> AppResult<()> {
    diesel::update(devices::table.filter(devices::id.eq(device_id)))
        .set((
            devices::last_seq.eq(last_seq),
            devices::last_push_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The device clock's offset from the server's, measured at its latest push with `sent_at`.
pub fn record_clock_offset(conn: &mut DbConn, device_id: &str, offset_ms: i64) -> AppResult<()> {
    diesel::update(devices::table.filter(devices::id.eq(device_id)))
        .set(devices::clock_offset_ms.eq(offset_ms))
        .execute(conn)?;
    Ok(())
}

const CONFLICT_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Text),
    ("entity", ColType::Text),
    ("record_id", ColType::Text),
    ("org_unit", ColType::Text),
    ("field", ColType::Text),
    ("kind", ColType::Text),
    ("policy", ColType::Text),
    ("status", ColType::Text),
    ("winner", ColType::Text),
    ("base_value", ColType::Text),
    ("server_value", ColType::Text),
    ("device_value", ColType::Text),
    ("base_version", ColType::BigInt),
    ("server_version", ColType::BigInt),
    ("device_id", ColType::Text),
    ("user_id", ColType::Text),
    ("op_id", ColType::Text),
    ("recorded_at", ColType::BigInt),
    ("created_at", ColType::BigInt),
    ("change_seq", ColType::BigInt),
];

pub fn insert_conflicts(conn: &mut DbConn, conflicts: &[NewConflict], now: i64) -> AppResult<()> {
    let rows: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "id": c.out.id,
                "entity": c.out.entity,
                "record_id": c.out.record_id,
                "org_unit": c.org_unit,
                "field": c.out.field,
                "kind": c.out.kind,
                "policy": c.out.policy,
                "status": c.out.status,
                "winner": c.out.winner,
                "base_value": c.out.base_value.to_string(),
                "server_value": c.out.server_value.to_string(),
                "device_value": c.out.device_value.to_string(),
                "base_version": c.base_version,
                "server_version": c.server_version,
                "device_id": c.device_id,
                "user_id": c.user_id,
                "op_id": c.op_id,
                "recorded_at": c.recorded_at,
                "created_at": now,
                "change_seq": c.change_seq,
            })
        })
        .collect();
    insert_rows(conn, "conflicts", CONFLICT_COLS, None, &rows)
}

/// A row of the `conflicts` table, read by the pull (`QueryableByName`) and the supervisor
/// queue (`Selectable`).
#[derive(Queryable, Selectable, QueryableByName, Debug, Clone)]
#[diesel(table_name = conflicts)]
pub struct ConflictRow {
    pub id: String,
    pub entity: String,
    pub record_id: String,
    pub org_unit: String,
    pub field: Option<String>,
    pub kind: String,
    pub policy: String,
    pub status: String,
    pub winner: String,
    pub base_value: String,
    pub server_value: String,
    pub device_value: String,
    pub base_version: Option<i64>,
    pub server_version: i64,
    pub device_id: Option<String>,
    pub user_id: String,
    pub op_id: Option<String>,
    pub recorded_at: i64,
    pub created_at: i64,
    pub change_seq: i64,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
    pub reason: Option<String>,
}

impl ConflictRow {
    pub fn into_out(self) -> ConflictOut {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
        ConflictOut {
            base_value: parse(&self.base_value),
            server_value: parse(&self.server_value),
            device_value: parse(&self.device_value),
            id: self.id,
            entity: self.entity,
            record_id: self.record_id,
            field: self.field,
            // Written by this server from the same enums; an unknown name cannot occur.
            kind: from_wire(&self.kind).unwrap_or(ConflictKind::Field),
            policy: from_wire(&self.policy).unwrap_or(Policy::Review),
            status: from_wire(&self.status).unwrap_or(ConflictStatus::Open),
            winner: from_wire(&self.winner).unwrap_or(Winner::Server),
        }
    }
}

pub const CONFLICT_SELECT: &str = "SELECT * FROM conflicts";

const DEPARTURE_COLS: &[(&str, ColType)] = &[
    ("entity", ColType::Text),
    ("record_id", ColType::Text),
    ("version", ColType::BigInt),
    ("from_org_unit", ColType::Text),
    ("to_org_unit", ColType::Text),
    ("change_seq", ColType::BigInt),
];

pub fn insert_departures(conn: &mut DbConn, rows: &[Departure]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({"entity": d.entity.name(), "record_id": d.record_id, "version": d.version,
                   "from_org_unit": d.from_org_unit, "to_org_unit": d.to_org_unit,
                   "change_seq": d.change_seq})
        })
        .collect();
    insert_rows(conn, "departures", DEPARTURE_COLS, None, &rows)
}

/// Of the given records, those that were moved out of an org unit in `scope` at some time.
pub fn left_scope(
    conn: &mut DbConn,
    records: &[(Entity, &str)],
    scope: &Scope,
) -> AppResult<Vec<(Entity, String)>> {
    let ids: Vec<&str> = records.iter().map(|(_, id)| *id).collect();
    let rows: Vec<(String, String, String)> = departures::table
        .filter(departures::record_id.eq_any(ids))
        .select((
            departures::entity,
            departures::record_id,
            departures::from_org_unit,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, from)| scope.contains(from))
        .filter_map(|(e, id, _)| Some((Entity::parse(&e)?, id)))
        .filter(|(e, id)| records.iter().any(|(re, rid)| re == e && rid == id))
        .collect())
}

const FLAG_COLS: &[(&str, ColType)] = &[
    ("entity", ColType::Text),
    ("record_id", ColType::Text),
    ("check_code", ColType::Text),
    ("org_unit", ColType::Text),
    ("active", ColType::Bool),
    ("version", ColType::BigInt),
    ("raised_at", ColType::BigInt),
    ("cleared_at", ColType::BigInt),
];

/// Replaces the active flags of the given records: checks a record now passes are cleared,
/// the ones it fails are raised (or kept).
pub fn set_flags(
    conn: &mut DbConn,
    records: &[(&str, &str, &str, i64, Vec<&'static str>)],
    now: i64,
) -> AppResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&str, &str)> = records.iter().map(|r| (r.0, r.1)).collect();
    let clear = format!(
        "UPDATE flags SET active = false, cleared_at = ? WHERE active AND {}",
        flag_keys_in(backend_of(conn))
    );
    Stmt::new(clear)
        .int(now)
        .bind(stmt::pairs(&keys))
        .execute_on(conn)?;
    let rows: Vec<Value> = records
        .iter()
        .flat_map(|(entity, id, org_unit, version, codes)| {
            codes.iter().map(move |code| {
                json!({"entity": entity, "record_id": id, "check_code": code, "org_unit": org_unit,
                       "active": true, "version": version, "raised_at": now, "cleared_at": null})
            })
        })
        .collect();
    insert_rows(
        conn,
        "flags",
        FLAG_COLS,
        Some((
            "entity, record_id, check_code",
            &["org_unit", "active", "version", "raised_at", "cleared_at"],
        )),
        &rows,
    )
}
