//! Duplicate persons in the store: the same resident ID number on two live persons. What to do
//! with a pair (merge at once inside the caller's scope, else queue it) is decided by
//! `sync::plan`; here are the reads it needs (persons sharing numbers, dismissed pairs, the
//! records referring to a person) and the writes of its decisions (merges, candidates,
//! dismissals).
//!
//! A merge keeps the survivor, fills its empty fields from the other, marks the other as
//! deleted and merged into it, and re-points every record that referred to the other (each
//! gets a new version, so devices receive it). Ops sent later to the old id are redirected.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use crate::db::records::{self, insert_rows, ColType, RecordRow};
use crate::db::stmt::{self, Stmt};
use crate::db::{Backend, DbConn};
use crate::domain::entities::{Entity, ENTITIES};
use crate::error::AppResult;
pub use crate::sync::plan::{common_unit, disagreements, ordered, Candidate, PersonMerge};

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

const LIVE: &str = "NOT deleted AND merged_into IS NULL";

/// The look-up of live persons by ID number: one JSON array of numbers bound as the one
/// parameter. Public for the test that checks it is answered from `persons_id_number`.
pub fn persons_with_numbers_sql(backend: Backend) -> String {
    records::select_where_in_sql(backend, Entity::Person, "id_number", Some(LIVE))
}

/// Live persons holding one of `numbers` (the duplicate look-up of a push chunk).
pub fn persons_with_numbers(
    conn: &mut DbConn,
    numbers: &BTreeSet<String>,
) -> AppResult<Vec<RecordRow>> {
    records::load_where_in(
        conn,
        Entity::Person,
        "id_number",
        Some(LIVE),
        &stmt::list(numbers),
    )
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

/// Queues pairs for a supervisor (a pair queued before stays as it is).
pub fn insert_candidates(conn: &mut DbConn, candidates: &[Candidate], now: i64) -> AppResult<()> {
    let rows: Vec<Value> = candidates
        .iter()
        .map(|c| {
            json!({"id": uuid::Uuid::now_v7().to_string(), "person_a": c.a, "person_b": c.b,
                 "org_unit": c.org_unit, "signal": "id_number", "status": "open", "created_at": now})
        })
        .collect();
    insert_rows(
        conn,
        "duplicate_candidates",
        CANDIDATE_COLS,
        Some(("person_a, person_b", &[])),
        &rows,
    )
}

/// Of `pairs` (ordered ids), those a supervisor dismissed as two different persons.
pub fn dismissed_pairs(
    conn: &mut DbConn,
    pairs: &BTreeSet<(String, String)>,
) -> AppResult<HashSet<(String, String)>> {
    use crate::db::schema::duplicate_dismissals as dd;
    use diesel::prelude::*;
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let firsts: Vec<&str> = pairs.iter().map(|(a, _)| a.as_str()).collect();
    let rows: Vec<(String, String)> = dd::table
        .filter(dd::person_a.eq_any(firsts))
        .select((dd::person_a, dd::person_b))
        .load(conn)?;
    Ok(rows.into_iter().filter(|p| pairs.contains(p)).collect())
}

/// Stored records of any type whose person reference points at one of `person_ids`: (record,
/// reference field, person id). One query per reference field.
pub fn children_of(
    conn: &mut DbConn,
    person_ids: &BTreeSet<String>,
) -> AppResult<Vec<(RecordRow, &'static str, String)>> {
    let mut out = Vec::new();
    if person_ids.is_empty() {
        return Ok(out);
    }
    let param = stmt::list(person_ids);
    for def in ENTITIES {
        for field in def.refs_to(Entity::Person) {
            // `field` comes from the record-type table, never from input.
            for row in records::load_where_in(conn, def.entity, field.name, None, &param)? {
                if let Some(p) = row.fields.get(field.name).and_then(Value::as_str) {
                    let p = p.to_string();
                    out.push((row, field.name, p));
                }
            }
        }
    }
    Ok(out)
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

/// Stores merges planned by `Plan::merge_persons`, and marks their candidates merged.
pub fn insert_merges(conn: &mut DbConn, merges: &[PersonMerge]) -> AppResult<()> {
    let rows: Vec<Value> = merges
        .iter()
        .map(|m| {
            json!({"id": m.id, "survivor_id": m.survivor, "merged_id": m.merged,
                 "snapshot": m.snapshot.to_string(), "merged_by": m.by, "automatic": m.automatic,
                 "merged_at": m.at})
        })
        .collect();
    insert_rows(conn, "person_merges", MERGE_COLS, None, &rows)?;
    let sql =
        "UPDATE duplicate_candidates SET status = 'merged' WHERE person_a = ? AND person_b = ?";
    for m in merges {
        let (a, b) = ordered(&m.survivor, &m.merged);
        Stmt::new(sql).text(a).text(b).execute_on(conn)?;
    }
    Ok(())
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
