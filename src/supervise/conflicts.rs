//! The conflict queue: list, side-by-side view, resolve (one or many), reopen.

use std::collections::BTreeSet;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Principal, Scope};
use crate::db::schema::conflicts;
use crate::db::{Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::supervise::audit::{audit_change, audit_person_reads};
use crate::supervise::ids::{id_value, ids_for, IdContext, IdNumberView};
use crate::supervise::labels::{entity_label, field_label, parse_entity, Label};
use crate::supervise::paging::{next_after, page_limit};
use crate::supervise::record::{view, RecordView};
use crate::supervise::sql::{count, plain, prefix_cond, scope_cond, Query};
use crate::sync::changeset::Changeset;
use crate::sync::protocol::{from_wire, ConflictKind, ConflictStatus, Policy, Winner};
use crate::sync::store::ConflictRow;
use crate::sync::validate;

/// A conflict as supervisors see it: the three values side by side.
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct ConflictView {
    pub id: String,
    pub entity: String,
    pub entity_label: Label,
    pub record_id: String,
    pub org_unit: String,
    /// The field, or null for a record-level conflict.
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_label: Option<Label>,
    pub kind: ConflictKind,
    pub policy: Policy,
    pub status: ConflictStatus,
    /// Whose value the record held after the op (or, resolved, after the resolution).
    pub winner: Winner,
    /// At the device's base version (ID numbers masked in the queue, and in one conflict unless
    /// the role sees them in full: `roles::id_number_view`).
    /// Any JSON value (text, number, boolean, object), or null for "no value".
    pub base_value: Value,
    pub server_value: Value,
    pub device_value: Value,
    pub base_version: Option<i64>,
    pub server_version: i64,
    pub device_id: Option<String>,
    pub user_id: String,
    /// Unix microseconds.
    pub created_at: i64,
    /// Whole days since the conflict arose.
    pub age_days: i64,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    /// How it was resolved (null while it is not): any JSON value.
    #[schema(required = true)]
    pub resolution: Option<Value>,
    pub reason: Option<String>,
}

pub fn conflict_views(rows: Vec<ConflictRow>, ids: IdNumberView) -> Vec<ConflictView> {
    let now = crate::db::now_micros();
    rows.into_iter()
        .filter_map(|c| {
            let entity = Entity::parse(&c.entity)?;
            let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
            let m = |v: Value| id_value(entity, c.field.as_deref(), v, ids);
            // Written by this server from the same enums; a row it cannot read is left out.
            let (kind, policy, status, winner) = (
                from_wire(&c.kind)?,
                from_wire(&c.policy)?,
                from_wire(&c.status)?,
                from_wire(&c.winner)?,
            );
            Some(ConflictView {
                kind,
                policy,
                status,
                winner,
                entity_label: entity_label(entity),
                field_label: c.field.as_deref().and_then(|f| field_label(entity, f)),
                base_value: m(parse(&c.base_value)),
                server_value: m(parse(&c.server_value)),
                device_value: m(parse(&c.device_value)),
                age_days: (now - c.created_at).max(0) / 86_400_000_000,
                resolution: c.resolution.as_deref().map(parse),
                id: c.id,
                entity: c.entity,
                record_id: c.record_id,
                org_unit: c.org_unit,
                field: c.field,
                base_version: c.base_version,
                server_version: c.server_version,
                device_id: c.device_id,
                user_id: c.user_id,
                created_at: c.created_at,
                resolved_by: c.resolved_by,
                resolved_at: c.resolved_at,
                reason: c.reason,
            })
        })
        .collect()
}

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct ConflictFilter {
    /// `open` (default), `closed`, `resolved` or `all`.
    pub status: Option<String>,
    /// Only this org unit's subtree.
    pub village: Option<String>,
    /// Only this record type.
    pub entity: Option<String>,
    /// Only conflicts at least this many days old.
    pub min_age_days: Option<i64>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct ConflictPage {
    pub total: i64,
    /// Oldest first (ids are UUID v7).
    pub items: Vec<ConflictView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

pub fn list(db: &Db, principal: &Principal, f: &ConflictFilter) -> AppResult<ConflictPage> {
    let limit = page_limit(f.limit)?;
    let status = f.status.as_deref().unwrap_or("open");
    if !matches!(status, "open" | "closed" | "resolved" | "all") {
        return Err(AppError::BadRequest(
            "status must be open, closed, resolved or all".into(),
        ));
    }
    let entity = match &f.entity {
        Some(e) => {
            Some(Entity::parse(e).ok_or_else(|| AppError::BadRequest("unknown entity".into()))?)
        }
        None => None,
    };
    if f.after.as_deref().is_some_and(|a| !plain(a)) {
        return Err(AppError::BadRequest("bad cursor".into()));
    }
    let (page, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "org_unit"));
        if status != "all" {
            let p = q.text(status);
            q.cond(format!("status = {p}"));
        }
        if let Some(v) = &f.village {
            q.cond(prefix_cond(v, "org_unit")?);
        }
        if let Some(e) = entity {
            let p = q.text(e.name());
            q.cond(format!("entity = {p}"));
        }
        if let Some(d) = f.min_age_days {
            let before = crate::db::now_micros() - d.max(0) * 86_400_000_000;
            q.cond(format!("created_at <= {before}"));
        }
        let total = count(&q, conn, "conflicts")?;
        if let Some(a) = &f.after {
            let p = q.text(a);
            q.cond(format!("id > {p}"));
        }
        let ids: Vec<IdRow> = q.load(
            conn,
            &format!(
                "SELECT id FROM conflicts{} ORDER BY id LIMIT {}",
                q.where_sql(),
                limit + 1
            ),
        )?;
        let more = ids.len() as i64 > limit;
        let ids: Vec<String> = ids.into_iter().take(limit as usize).map(|r| r.id).collect();
        let rows = conflicts::table
            .filter(conflicts::id.eq_any(&ids))
            .order(conflicts::id)
            .select(ConflictRow::as_select())
            .load(conn)?;
        let persons: BTreeSet<String> = rows
            .iter()
            .filter(|c| c.entity == "person")
            .map(|c| c.record_id.clone())
            .collect();
        Ok((
            ConflictPage {
                total,
                next_after: next_after(more, &ids, Clone::clone),
                items: conflict_views(rows, ids_for(principal, IdContext::List)),
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}

fn load_conflict(conn: &mut DbConn, scope: &Scope, id: &str) -> AppResult<ConflictRow> {
    if !plain(id) {
        return Err(AppError::NotFound);
    }
    conflicts::table
        .filter(conflicts::id.eq(id))
        .select(ConflictRow::as_select())
        .first(conn)
        .optional()?
        .filter(|c| scope.contains(&c.org_unit))
        .ok_or(AppError::NotFound)
}

#[derive(Serialize, ToSchema, Debug)]
pub struct ConflictDetail {
    pub conflict: ConflictView,
    /// The record as it is now (person reads are audited; ID numbers as the role sees one record).
    pub current: Option<RecordView>,
    /// The field's value in the record now (field conflicts).
    #[schema(required = true)]
    pub current_value: Option<Value>,
}

pub fn one(db: &Db, principal: &Principal, id: &str) -> AppResult<ConflictDetail> {
    let d = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let c = load_conflict(conn, &scope, id)?;
        let entity = parse_entity(&c.entity)?;
        let current = crate::db::records::load_one(conn, entity, &c.record_id)?
            .filter(|r| scope.contains(&r.org_unit));
        let ids = ids_for(principal, IdContext::Record);
        let current_value = match (&current, &c.field) {
            (Some(r), Some(f)) => Some(id_value(
                entity,
                Some(f),
                r.fields.get(f).cloned().unwrap_or(Value::Null),
                ids,
            )),
            _ => None,
        };
        Ok(ConflictDetail {
            conflict: conflict_views(vec![c], ids).remove(0),
            current: current.as_ref().map(|r| view(r, ids)),
            current_value,
        })
    })?;
    if d.conflict.entity == "person" {
        audit_person_reads(
            db,
            principal,
            &BTreeSet::from([d.conflict.record_id.clone()]),
        )?;
    }
    Ok(d)
}

/// How to settle a conflict.
#[derive(Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// `server` (keep the server's value), `device` (take the device's) or `value` (enter one).
    pub take: String,
    /// With `take: value`: the field's new value (null clears it).
    #[serde(default)]
    pub value: Option<Value>,
    /// Why (required; kept with the conflict and in the audit log).
    pub reason: String,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResolveBulk {
    pub ids: Vec<String>,
    /// `server` or `device`.
    pub take: String,
    pub reason: String,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct Resolved {
    pub conflict: ConflictView,
    /// The record's version written by the resolution (devices receive it on their next pull).
    pub version: i64,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct BulkItem {
    pub id: String,
    /// `resolved`, `not_found` or `not_resolvable`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn check_reason(reason: &str) -> AppResult<()> {
    let n = reason.trim().chars().count();
    if n == 0 || n > 500 {
        return Err(AppError::validation(
            "reason_required",
            "a reason (1-500 characters) is required",
        ));
    }
    Ok(())
}

/// Settles one conflict inside `tx`: writes the record's next version and marks the conflict
/// resolved. Errors: 404 foreign or unknown; 409 already resolved; 422 a bad choice.
fn resolve_in(
    conn: &mut DbConn,
    cs: &mut Changeset,
    scope: &Scope,
    principal: &Principal,
    id: &str,
    r: &Resolve,
) -> AppResult<(ConflictRow, i64)> {
    let c = load_conflict(conn, scope, id)?;
    if c.status == ConflictStatus::Resolved.as_str() {
        return Err(AppError::Conflict(
            "the conflict is already resolved".into(),
        ));
    }
    let entity = parse_entity(&c.entity)?;
    let Some(mut row) = cs.get(conn, entity, &c.record_id)? else {
        return Err(AppError::NotFound);
    };
    if !scope.contains(&row.org_unit) {
        return Err(AppError::NotFound);
    }
    if row.merged_into.is_some() {
        return Err(AppError::Conflict(
            "the record was merged into another; resolve on the survivor".into(),
        ));
    }
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let now = cs.plan.now;
    let Some(kind) = from_wire::<ConflictKind>(&c.kind) else {
        return Err(AppError::Internal(format!("conflict kind {}", c.kind)));
    };
    match (kind, r.take.as_str()) {
        (ConflictKind::Field, take) => {
            let field = c.field.clone().unwrap_or_default();
            let chosen = match take {
                "server" => parse(&c.server_value),
                "device" => parse(&c.device_value),
                "value" => r.value.clone().ok_or_else(|| {
                    AppError::validation("value_required", "take: value needs a value")
                })?,
                _ => return Err(bad_take()),
            };
            // The value is checked like a device's: its type, range and whether it may be cleared.
            let op = json!({"seq": 1, "op_id": uuid::Uuid::now_v7().to_string(), "entity": entity.name(),
                            "id": row.id, "kind": "update", "base_version": row.version, "set": {field.clone(): chosen}});
            let h = validate::header(&op, 0)?;
            let parsed = validate::parse(&op, &h, now)
                .map_err(|e| AppError::validation(e.code, e.message))?;
            match parsed.set.get(&field) {
                Some(Value::Null) | None => {
                    row.fields.remove(&field);
                }
                Some(v) => {
                    row.fields.insert(field.clone(), v.clone());
                }
            }
            row.stamps.insert(field, now);
        }
        (ConflictKind::DeleteVsEdit | ConflictKind::EditVsDelete, "server") => {}
        (ConflictKind::DeleteVsEdit, "device") => row.deleted = true,
        (ConflictKind::EditVsDelete, "device") => {
            row.deleted = false;
            if let Value::Object(set) = parse(&c.device_value) {
                for (k, v) in set {
                    if entity.def().field(&k).is_none() {
                        continue;
                    }
                    if v.is_null() {
                        row.fields.remove(&k);
                    } else {
                        row.fields.insert(k.clone(), v);
                    }
                    row.stamps.insert(k, now);
                }
            }
        }
        (_, "value") => {
            return Err(AppError::validation(
                "value_not_allowed",
                "a record-level conflict is settled by taking the server or the device side",
            ))
        }
        _ => return Err(bad_take()),
    }
    let written = cs.plan.supervisor_version(row, &principal.user_id);
    let seq = cs.plan.alloc();
    let winner = if r.take == "device" {
        Winner::Device
    } else {
        Winner::Server
    };
    let resolution = json!({"take": r.take, "value": r.value, "version": written.version});
    diesel::update(conflicts::table.filter(conflicts::id.eq(&c.id)))
        .set((
            conflicts::status.eq(ConflictStatus::Resolved.as_str()),
            conflicts::winner.eq(winner.as_str()),
            conflicts::resolved_by.eq(&principal.user_id),
            conflicts::resolved_at.eq(now),
            conflicts::resolution.eq(resolution.to_string()),
            conflicts::reason.eq(r.reason.trim()),
            conflicts::change_seq.eq(seq),
            conflicts::server_version.eq(written.version),
        ))
        .execute(conn)?;
    let c = load_conflict(conn, scope, id)?;
    Ok((c, written.version))
}

fn bad_take() -> AppError {
    AppError::validation("bad_take", "take must be server, device or value")
}

pub fn resolve(db: &Db, principal: &Principal, id: &str, r: &Resolve) -> AppResult<Resolved> {
    check_reason(&r.reason)?;
    if !matches!(r.take.as_str(), "server" | "device" | "value") {
        return Err(bad_take());
    }
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let mut cs = Changeset::begin(conn)?;
        let (c, version) = resolve_in(conn, &mut cs, &scope, principal, id, r)?;
        cs.finish(conn, Some((&principal.user_id, &scope)))?;
        audit_change(
            conn,
            principal,
            "conflict_resolved",
            "conflict",
            vec![c.id.clone()],
            json!({"entity": c.entity, "record_id": c.record_id, "take": r.take, "version": version}),
        )?;
        Ok(Resolved {
            conflict: conflict_views(vec![c], ids_for(principal, IdContext::Record)).remove(0),
            version,
        })
    })
}

pub fn resolve_bulk(db: &Db, principal: &Principal, b: &ResolveBulk) -> AppResult<Vec<BulkItem>> {
    check_reason(&b.reason)?;
    if !matches!(b.take.as_str(), "server" | "device") {
        return Err(AppError::validation(
            "bad_take",
            "bulk take must be server or device",
        ));
    }
    if b.ids.is_empty() || b.ids.len() > 500 {
        return Err(AppError::validation("bad_ids", "between 1 and 500 ids"));
    }
    let r = Resolve {
        take: b.take.clone(),
        value: None,
        reason: b.reason.clone(),
    };
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let mut cs = Changeset::begin(conn)?;
        let mut out = Vec::new();
        let mut done = Vec::new();
        let mut seen = BTreeSet::new();
        for id in &b.ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match resolve_in(conn, &mut cs, &scope, principal, id, &r) {
                Ok((_, version)) => {
                    done.push(id.clone());
                    out.push(BulkItem {
                        id: id.clone(),
                        status: "resolved".into(),
                        version: Some(version),
                        message: None,
                    });
                }
                Err(AppError::NotFound) => out.push(BulkItem {
                    id: id.clone(),
                    status: "not_found".into(),
                    version: None,
                    message: None,
                }),
                Err(e @ (AppError::Conflict(_) | AppError::Validation { .. })) => {
                    out.push(BulkItem {
                        id: id.clone(),
                        status: "not_resolvable".into(),
                        version: None,
                        message: Some(e.to_string()),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        cs.finish(conn, Some((&principal.user_id, &scope)))?;
        if !done.is_empty() {
            audit_change(
                conn,
                principal,
                "conflict_resolved",
                "conflict",
                done,
                json!({"take": b.take, "bulk": true}),
            )?;
        }
        Ok(out)
    })
}

/// Reopens a closed `latest` conflict for review. Its new change_seq makes devices receive it.
pub fn reopen(db: &Db, principal: &Principal, id: &str) -> AppResult<ConflictView> {
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let c = load_conflict(conn, &scope, id)?;
        if c.status != ConflictStatus::Closed.as_str() || c.policy != Policy::Latest.as_str() {
            return Err(AppError::Conflict(
                "only a closed `latest` conflict can be reopened".into(),
            ));
        }
        let mut alloc = crate::sync::sequence::SeqAlloc::lock(conn)?;
        let seq = alloc.alloc();
        diesel::update(conflicts::table.filter(conflicts::id.eq(&c.id)))
            .set((
                conflicts::status.eq(ConflictStatus::Open.as_str()),
                conflicts::change_seq.eq(seq),
            ))
            .execute(conn)?;
        alloc.finish(conn)?;
        audit_change(
            conn,
            principal,
            "conflict_reopened",
            "conflict",
            vec![c.id.clone()],
            json!({"entity": c.entity, "record_id": c.record_id}),
        )?;
        let c = load_conflict(conn, &scope, id)?;
        Ok(conflict_views(vec![c], ids_for(principal, IdContext::Record)).remove(0))
    })
}
