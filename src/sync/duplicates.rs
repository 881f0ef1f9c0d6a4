//! Duplicate persons: the same resident ID number on two live persons. Where no field
//! disagrees they are merged at once; otherwise a potential duplicate waits for a supervisor.
//!
//! A merge keeps the survivor, fills its empty fields from the other, marks the other as
//! deleted and merged into it, and re-points every record that referred to the other (each
//! gets a new version, so devices receive it). Ops sent later to the old id are redirected.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::sql_types::Text;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::auth::scope::Scope;
use crate::db::records::{self, backend_of, insert_rows, ColType, JsonRow, RecordRow};
use crate::db::{Backend, DbConn};
use crate::domain::entities::{Entity, ENTITIES};
use crate::domain::resident_id::{IdError, ResidentId};
use crate::error::{AppError, AppResult};
use crate::sync::store::SeqAlloc;

type Key = (Entity, String);

/// The working set of a write transaction that a merge changes.
pub struct WorkSet<'a> {
    pub state: &'a mut HashMap<Key, RecordRow>,
    pub versions: &'a mut Vec<(RecordRow, Option<String>)>,
    pub alloc: &'a mut SeqAlloc,
    pub now: i64,
}

impl WorkSet<'_> {
    fn new_version(&mut self, mut row: RecordRow, by: &str) {
        row.version += 1;
        row.change_seq = self.alloc.alloc();
        row.updated_at = self.now;
        row.updated_by = by.to_string();
        row.updated_device = None;
        self.state.insert((row.entity, row.id.clone()), row.clone());
        self.versions.push((row, None));
    }
}

/// Fields both persons hold with different values.
pub fn disagreements(a: &RecordRow, b: &RecordRow) -> Vec<String> {
    a.fields
        .iter()
        .filter(|(k, v)| b.fields.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Whether a stored ID number can name a person: a malformed one (flagged `id_format`) is a
/// typo, and two persons sharing the same typo are not the same person. A well-formed number
/// with a wrong check digit still matches: it is usually the same number copied twice.
fn matchable(number: &str) -> bool {
    matches!(ResidentId::parse(number), Ok(_) | Err(IdError::CheckDigit))
}

fn live(r: &RecordRow) -> bool {
    !r.deleted && r.merged_into.is_none()
}

/// Looks for persons sharing a resident ID number with any person changed in this
/// transaction; merges the clean pairs and queues the others. Returns the merges made.
///
/// Only a pair wholly inside `scope` (the scope of whoever made the change) is merged at once:
/// a merge writes to both persons and tells the devices of both where the other went, so a
/// worker's registration must never write to, or reveal, a person outside the worker's
/// villages. Any other pair is queued for the lowest org unit holding both (the county, for
/// persons of two townships), whose supervisor sees both.
pub fn detect_and_merge(
    conn: &mut DbConn,
    work: &mut WorkSet,
    by: &str,
    scope: &Scope,
) -> AppResult<usize> {
    let changed: Vec<String> = work
        .versions
        .iter()
        .filter(|(r, _)| r.entity == Entity::Person)
        .map(|(r, _)| r.id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut numbers: BTreeSet<String> = BTreeSet::new();
    for id in &changed {
        if let Some(r) = work
            .state
            .get(&(Entity::Person, id.clone()))
            .filter(|r| live(r))
        {
            if let Some(n) = r.fields.get("id_number").and_then(Value::as_str) {
                if matchable(n) {
                    numbers.insert(n.to_string());
                }
            }
        }
    }
    if numbers.is_empty() {
        return Ok(0);
    }
    for row in persons_with_numbers(conn, &numbers)? {
        work.state
            .entry((Entity::Person, row.id.clone()))
            .or_insert(row);
    }
    let mut merges = 0;
    for number in numbers {
        let mut group: Vec<RecordRow> = work
            .state
            .values()
            .filter(|r| r.entity == Entity::Person && live(r))
            .filter(|r| r.fields.get("id_number").and_then(Value::as_str) == Some(number.as_str()))
            .cloned()
            .collect();
        // The survivor is the record registered first.
        group.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let Some((first, rest)) = group.split_first() else {
            continue;
        };
        for other in rest {
            let survivor = work.state[&(Entity::Person, first.id.clone())].clone();
            if dismissed(conn, &survivor.id, &other.id)? {
                // A supervisor decided (or undid a merge) that these are two persons.
                continue;
            }
            let within = scope.contains(&survivor.org_unit) && scope.contains(&other.org_unit);
            if within && disagreements(&survivor, other).is_empty() {
                merge_persons(
                    conn,
                    work,
                    &survivor.id,
                    &other.id,
                    by,
                    true,
                    &BTreeMap::new(),
                )?;
                merges += 1;
            } else {
                queue_candidate(conn, &survivor, other, work.now)?;
            }
        }
    }
    Ok(merges)
}

/// Whether a supervisor dismissed the pair as two different persons (an undone merge does).
pub fn dismissed(conn: &mut DbConn, a: &str, b: &str) -> AppResult<bool> {
    use crate::db::schema::duplicate_dismissals as dd;
    use diesel::prelude::*;
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    let n: i64 = dd::table
        .filter(dd::person_a.eq(a))
        .filter(dd::person_b.eq(b))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// A dismissal about to be stored.
pub struct Dismissal<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub org_unit: &'a str,
    pub reason: &'a str,
    pub by: &'a str,
    pub merge_id: Option<&'a str>,
}

const DISMISSAL_COLS: &[(&str, ColType)] = &[
    ("person_a", ColType::Text),
    ("person_b", ColType::Text),
    ("org_unit", ColType::Text),
    ("reason", ColType::Text),
    ("dismissed_by", ColType::Text),
    ("dismissed_at", ColType::BigInt),
    ("merge_id", ColType::Text),
];

/// Records that two persons are different people: the pair is no longer listed nor merged
/// automatically, and a queued candidate for it is closed. A pair dismissed before stays as it
/// was dismissed then.
pub fn dismiss_pair(conn: &mut DbConn, d: &Dismissal, now: i64) -> AppResult<()> {
    use crate::db::schema::duplicate_candidates as dc;
    use diesel::prelude::*;
    let (a, b) = if d.a < d.b { (d.a, d.b) } else { (d.b, d.a) };
    insert_rows(
        conn,
        "duplicate_dismissals",
        DISMISSAL_COLS,
        Some(("person_a, person_b", &[])),
        &[
            json!({"person_a": a, "person_b": b, "org_unit": d.org_unit, "reason": d.reason,
                 "dismissed_by": d.by, "dismissed_at": now, "merge_id": d.merge_id}),
        ],
    )?;
    diesel::update(
        dc::table
            .filter(dc::person_a.eq(a))
            .filter(dc::person_b.eq(b))
            .filter(dc::status.eq("open")),
    )
    .set((
        dc::status.eq("dismissed"),
        dc::decided_at.eq(now),
        dc::decided_by.eq(d.by),
    ))
    .execute(conn)?;
    Ok(())
}

/// Withdraws a dismissal: the pair is listed (and its candidate reopened) again. False when the
/// pair was not dismissed.
pub fn undismiss_pair(conn: &mut DbConn, a: &str, b: &str) -> AppResult<bool> {
    use crate::db::schema::{duplicate_candidates as dc, duplicate_dismissals as dd};
    use diesel::prelude::*;
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    let n = diesel::delete(
        dd::table
            .filter(dd::person_a.eq(a))
            .filter(dd::person_b.eq(b)),
    )
    .execute(conn)?;
    if n == 0 {
        return Ok(false);
    }
    diesel::update(
        dc::table
            .filter(dc::person_a.eq(a))
            .filter(dc::person_b.eq(b))
            .filter(dc::status.eq("dismissed")),
    )
    .set((
        dc::status.eq("open"),
        dc::decided_at.eq(None::<i64>),
        dc::decided_by.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(true)
}

fn persons_with_numbers(
    conn: &mut DbConn,
    numbers: &BTreeSet<String>,
) -> AppResult<Vec<RecordRow>> {
    let param = serde_json::to_string(&numbers.iter().collect::<Vec<_>>()).expect("serialise");
    let base = records::select_json_sql(backend_of(conn), Entity::Person);
    let sql = match backend_of(conn) {
        Backend::Sqlite => format!("{base} WHERE NOT deleted AND merged_into IS NULL AND id_number IN (SELECT value FROM json_each(?))"),
        Backend::Postgres => format!("{base} WHERE NOT deleted AND merged_into IS NULL AND id_number IN (SELECT jsonb_array_elements_text($1::jsonb))"),
    };
    let rows: Vec<JsonRow> = match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
        DbConn::Postgres(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
    };
    rows.iter().map(|r| RecordRow::from_json(&r.j)).collect()
}

const CANDIDATE_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Text),
    ("person_a", ColType::Text),
    ("person_b", ColType::Text),
    ("org_unit", ColType::Text),
    ("signal", ColType::Text),
    ("status", ColType::Text),
    ("created_at", ColType::BigInt),
];

fn queue_candidate(conn: &mut DbConn, a: &RecordRow, b: &RecordRow, now: i64) -> AppResult<()> {
    let (a, b) = if a.id < b.id { (a, b) } else { (b, a) };
    insert_rows(
        conn,
        "duplicate_candidates",
        CANDIDATE_COLS,
        Some(("person_a, person_b", &[])),
        &[
            json!({"id": uuid::Uuid::now_v7().to_string(), "person_a": a.id, "person_b": b.id,
                 "org_unit": common_unit(&a.org_unit, &b.org_unit), "signal": "id_number",
                 "status": "open", "created_at": now}),
        ],
    )
}

/// The lowest org unit whose subtree holds both units: a supervisor whose scope contains it
/// sees both persons. Codes nest by prefix (DOMAIN.md): county 6 digits, township 9, village 12,
/// a group the village code and a suffix.
pub fn common_unit(a: &str, b: &str) -> String {
    if b.starts_with(a) {
        return a.to_string();
    }
    if a.starts_with(b) {
        return b.to_string();
    }
    [12, 9, 6]
        .into_iter()
        .find_map(|n| match (a.get(..n), b.get(..n)) {
            (Some(x), Some(y)) if x == y => Some(x.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Records of any type whose person reference points at `person_id`.
fn children_of(
    conn: &mut DbConn,
    work: &WorkSet,
    person_id: &str,
) -> AppResult<Vec<(RecordRow, &'static str)>> {
    let mut out: Vec<(RecordRow, &'static str)> = Vec::new();
    for def in ENTITIES {
        for field in def.refs_to(Entity::Person) {
            let base = records::select_json_sql(backend_of(conn), def.entity);
            let sql = match backend_of(conn) {
                Backend::Sqlite => format!("{base} WHERE {} = ?", field.name),
                Backend::Postgres => format!("{base} WHERE {} = $1", field.name),
            };
            let rows: Vec<JsonRow> = match conn {
                DbConn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(person_id).load(c)?,
                DbConn::Postgres(c) => diesel::sql_query(sql).bind::<Text, _>(person_id).load(c)?,
            };
            for r in rows {
                let row = RecordRow::from_json(&r.j)?;
                // The working set holds the newest state of records changed in this transaction.
                let row = work
                    .state
                    .get(&(row.entity, row.id.clone()))
                    .cloned()
                    .unwrap_or(row);
                out.push((row, field.name));
            }
            for row in work.state.values() {
                if row.entity == def.entity
                    && row.fields.get(field.name).and_then(Value::as_str) == Some(person_id)
                    && !out.iter().any(|(o, f)| o.id == row.id && *f == field.name)
                {
                    out.push((row.clone(), field.name));
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .filter(|(r, f)| r.fields.get(*f).and_then(Value::as_str) == Some(person_id))
        .collect())
}

const MERGE_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Text),
    ("survivor_id", ColType::Text),
    ("merged_id", ColType::Text),
    ("snapshot", ColType::Text),
    ("merged_by", ColType::Text),
    ("automatic", ColType::Bool),
    ("merged_at", ColType::BigInt),
];

/// Merges person `merged_id` into `survivor_id` inside the caller's transaction. `choices`
/// names, per field, whose value the survivor keeps (`merged` takes the merged person's; any
/// other answer, or none, keeps the survivor's); fields the survivor lacks are filled from the
/// merged person either way. Returns the merge's id. Its snapshot holds both persons and the
/// re-pointed references as they were, and (`after`) the version of each record the merge
/// left, so that an undo can merge its changes back three-way without losing later edits.
pub fn merge_persons(
    conn: &mut DbConn,
    work: &mut WorkSet,
    survivor_id: &str,
    merged_id: &str,
    by: &str,
    automatic: bool,
    choices: &BTreeMap<String, String>,
) -> AppResult<String> {
    let get = |work: &WorkSet, id: &str| work.state.get(&(Entity::Person, id.to_string())).cloned();
    for id in [survivor_id, merged_id] {
        if get(work, id).is_none() {
            if let Some(r) = records::load_one(conn, Entity::Person, id)? {
                work.state.insert((Entity::Person, id.to_string()), r);
            }
        }
    }
    let (Some(survivor), Some(merged)) = (get(work, survivor_id), get(work, merged_id)) else {
        return Err(AppError::NotFound);
    };
    if !live(&survivor) || !live(&merged) || survivor.id == merged.id {
        return Err(AppError::Conflict(
            "both persons must be live and distinct".into(),
        ));
    }
    let children = children_of(conn, work, merged_id)?;
    let mut snapshot = json!({
        "survivor": {"version": survivor.version, "fields": survivor.fields},
        "merged": {"version": merged.version, "fields": merged.fields, "org_unit": merged.org_unit},
        "children": children.iter().map(|(r, f)| json!([r.entity.name(), r.id, f])).collect::<Vec<_>>(),
    });

    let mut filled = survivor.clone();
    for (k, v) in &merged.fields {
        if !filled.fields.contains_key(k) {
            filled.fields.insert(k.clone(), v.clone());
            if let Some(s) = merged.stamps.get(k) {
                filled.stamps.insert(k.clone(), *s);
            }
        }
    }
    for (field, side) in choices {
        if side == "merged" {
            match merged.fields.get(field) {
                Some(v) => filled.fields.insert(field.clone(), v.clone()),
                None => filled.fields.remove(field),
            };
            filled.stamps.insert(field.clone(), work.now);
        }
    }
    if filled.fields != survivor.fields {
        work.new_version(filled, by);
    }
    let mut gone = merged.clone();
    gone.deleted = true;
    gone.merged_into = Some(survivor_id.to_string());
    work.new_version(gone, by);
    for (mut child, field) in children.iter().cloned() {
        // The newest state: a record with two references to the merged person changes twice.
        if let Some(newer) = work.state.get(&(child.entity, child.id.clone())) {
            child = newer.clone();
        }
        child
            .fields
            .insert(field.to_string(), Value::String(survivor_id.to_string()));
        work.new_version(child, by);
    }
    let version_of = |e: Entity, id: &str| work.state.get(&(e, id.to_string())).map(|r| r.version);
    snapshot["after"] = json!({
        "survivor": version_of(Entity::Person, survivor_id),
        "merged": version_of(Entity::Person, merged_id),
        "children": children
            .iter()
            .map(|(r, f)| json!([r.entity.name(), r.id, f, version_of(r.entity, &r.id)]))
            .collect::<Vec<_>>(),
    });

    let id = uuid::Uuid::now_v7().to_string();
    insert_rows(
        conn,
        "person_merges",
        MERGE_COLS,
        None,
        &[
            json!({"id": id, "survivor_id": survivor_id, "merged_id": merged_id,
                 "snapshot": snapshot.to_string(), "merged_by": by, "automatic": automatic,
                 "merged_at": work.now}),
        ],
    )?;
    let (a, b) = if survivor_id < merged_id {
        (survivor_id, merged_id)
    } else {
        (merged_id, survivor_id)
    };
    let sql = match backend_of(conn) {
        Backend::Sqlite => "UPDATE duplicate_candidates SET status = 'merged' WHERE person_a = ? AND person_b = ?",
        Backend::Postgres => "UPDATE duplicate_candidates SET status = 'merged' WHERE person_a = $1 AND person_b = $2",
    };
    match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql)
            .bind::<Text, _>(a)
            .bind::<Text, _>(b)
            .execute(c)?,
        DbConn::Postgres(c) => diesel::sql_query(sql)
            .bind::<Text, _>(a)
            .bind::<Text, _>(b)
            .execute(c)?,
    };
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::common_unit;

    #[test]
    fn common_unit_is_the_lowest_unit_holding_both() {
        assert_eq!(common_unit("130131102201", "130131102201"), "130131102201");
        assert_eq!(
            common_unit("130131102201G01", "130131102201"),
            "130131102201"
        );
        assert_eq!(common_unit("130131102201", "130131102204G02"), "130131102");
        assert_eq!(common_unit("130131102201", "130131103201"), "130131");
        assert_eq!(common_unit("130131102201", "130132102201"), "");
    }
}
