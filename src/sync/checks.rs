//! Runs the logic checks of `domain::checks` on the records a push changed, loading what the
//! checks need to know about related persons (the subject, a death, earlier births), and then
//! on the records whose checks depend on the changed ones ([`recheck_related`]), so that a flag
//! follows the data whichever record arrives first.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;

use crate::db::records::{self, backend_of, RecordRow};
use crate::db::stmt::{self, Stmt};
use crate::db::DbConn;
use crate::domain::checks::{self, CheckInput};
use crate::domain::entities::Entity;
use crate::error::AppResult;
use crate::sync::store;

type Key = (Entity, String);

/// The field naming the person a record's checks look at (see `CheckInput::subject`): a
/// birth's mother, any other record's `person_id`. A person is its own subject.
fn subject_field(entity: Entity) -> Option<&'static str> {
    match entity {
        Entity::Person => None,
        Entity::Birth => Some("mother_id"),
        e => e.def().field("person_id").map(|f| f.name),
    }
}

fn subject_id(row: &RecordRow) -> Option<String> {
    match subject_field(row.entity) {
        None if row.entity == Entity::Person => Some(row.id.clone()),
        None => None,
        Some(f) => row.fields.get(f)?.as_str().map(str::to_string),
    }
}

fn date(v: Option<&Value>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(v?.as_str()?, "%Y-%m-%d").ok()
}

#[derive(QueryableByName)]
struct DeathRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    person_id: String,
    #[diesel(sql_type = Text)]
    death_date: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The failing checks of each live record in `keys` (an empty list clears its flags).
pub fn evaluate(
    conn: &mut DbConn,
    state: &HashMap<Key, RecordRow>,
    keys: &[Key],
) -> AppResult<HashMap<Key, Vec<&'static str>>> {
    let rows: Vec<&RecordRow> = keys.iter().filter_map(|k| state.get(k)).collect();
    evaluate_rows(conn, state, rows)
}

/// The failing checks of each of `rows`; `state` holds the records changed in this
/// transaction, which take precedence over the stored ones.
fn evaluate_rows(
    conn: &mut DbConn,
    state: &HashMap<Key, RecordRow>,
    rows: Vec<&RecordRow>,
) -> AppResult<HashMap<Key, Vec<&'static str>>> {
    let today = chrono::Utc::now().date_naive();
    let subject_ids: BTreeSet<String> = rows.iter().filter_map(|r| subject_id(r)).collect();

    let missing: Vec<&str> = subject_ids
        .iter()
        .filter(|id| !state.contains_key(&(Entity::Person, (*id).clone())))
        .map(String::as_str)
        .collect();
    let loaded: HashMap<String, RecordRow> = records::load(conn, Entity::Person, &missing)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let deaths = death_dates(conn, state, &subject_ids)?;

    let mut out = HashMap::new();
    for row in rows {
        let key = (row.entity, row.id.clone());
        if row.deleted {
            out.insert(key, Vec::new());
            continue;
        }
        let sid = subject_id(row);
        let subject = sid.as_ref().and_then(|id| {
            state
                .get(&(Entity::Person, id.clone()))
                .or_else(|| loaded.get(id))
                .filter(|p| !p.deleted)
        });
        let earlier_births = if row.entity == Entity::Birth {
            earlier_births(conn, state, row)?
        } else {
            None
        };
        let input = CheckInput {
            entity: row.entity,
            fields: &row.fields,
            today,
            subject: if row.entity == Entity::Person {
                None
            } else {
                subject.map(|s| &s.fields)
            },
            subject_death_date: sid.as_ref().and_then(|id| deaths.get(id).copied()),
            earlier_births,
        };
        let codes = checks::run(&input).into_iter().map(|c| c.code).collect();
        out.insert(key, codes);
    }
    Ok(out)
}

fn death_dates(
    conn: &mut DbConn,
    state: &HashMap<Key, RecordRow>,
    persons: &BTreeSet<String>,
) -> AppResult<HashMap<String, NaiveDate>> {
    let mut out = HashMap::new();
    if persons.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT id, person_id, death_date FROM deaths WHERE NOT deleted AND {}",
        stmt::in_json_list(backend_of(conn), "person_id")
    );
    let rows: Vec<DeathRow> = Stmt::new(sql).bind(stmt::list(persons)).load_on(conn)?;
    for r in rows {
        // A death changed in this batch is judged by its new state below.
        if state.contains_key(&(Entity::Death, r.id)) {
            continue;
        }
        if let Ok(d) = NaiveDate::parse_from_str(&r.death_date, "%Y-%m-%d") {
            out.insert(r.person_id, d);
        }
    }
    for ((e, _), row) in state {
        if *e == Entity::Death {
            if let (Some(pid), Some(d)) = (
                row.fields.get("person_id").and_then(Value::as_str),
                date(row.fields.get("death_date")),
            ) {
                if row.deleted {
                    out.remove(pid);
                } else if persons.contains(pid) {
                    out.insert(pid.to_string(), d);
                }
            }
        }
    }
    Ok(out)
}

/// Other live births of the same mother before this one: in the store (outside this batch's
/// working set) and in the working set.
fn earlier_births(
    conn: &mut DbConn,
    state: &HashMap<Key, RecordRow>,
    birth: &RecordRow,
) -> AppResult<Option<i64>> {
    let (Some(mother), Some(on)) = (
        birth.fields.get("mother_id").and_then(Value::as_str),
        birth.fields.get("birth_date").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let in_state: Vec<&RecordRow> = state
        .values()
        .filter(|r| {
            r.entity == Entity::Birth
                && r.fields.get("mother_id").and_then(Value::as_str) == Some(mother)
        })
        .collect();
    let exclude: Vec<&str> = in_state.iter().map(|r| r.id.as_str()).collect();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM births WHERE NOT deleted AND mother_id = ? AND birth_date < ? \
         AND NOT ({})",
        stmt::in_json_list(backend_of(conn), "id")
    );
    let rows: Vec<CountRow> = Stmt::new(sql)
        .text(mother)
        .text(on)
        .bind(stmt::list(&exclude))
        .load_on(conn)?;
    let stored = rows.first().map_or(0, |r| r.n);
    let batch = in_state
        .iter()
        .filter(|r| !r.deleted && r.id != birth.id)
        .filter(|r| {
            r.fields
                .get("birth_date")
                .and_then(Value::as_str)
                .is_some_and(|d| d < on)
        })
        .count() as i64;
    Ok(Some(stored + batch))
}

/// New flags of a record: (record, its org unit, its version, the checks it fails).
pub type FlagUpdate = (Key, String, i64, Vec<&'static str>);

/// Re-runs the checks of the stored records that depend on the records changed in this
/// transaction (`changed`, evaluated by [`evaluate`]), and returns the flags of those whose
/// result changed: new ones to raise and the ones that no longer hold to close.
///
/// What a check reads about other records is the subject person (sex, birth date, alive), the
/// subject's death record, and a mother's earlier births. So a changed person, a changed death
/// (of its person) or a changed birth (of its mother) makes that person and every live record
/// about them (visits, measures, pregnancies, births as the mother ...) be checked again. It
/// reads before anything is written: the records of `changed` are judged by their state in
/// `state`, and are not themselves rechecked.
pub fn recheck_related(
    conn: &mut DbConn,
    state: &HashMap<Key, RecordRow>,
    changed: &[Key],
) -> AppResult<Vec<FlagUpdate>> {
    let persons: BTreeSet<String> = changed
        .iter()
        .filter_map(|k| state.get(k))
        .filter(|r| matches!(r.entity, Entity::Person | Entity::Death | Entity::Birth))
        .filter_map(subject_id)
        .collect();
    if persons.is_empty() {
        return Ok(Vec::new());
    }
    let done: BTreeSet<&Key> = changed.iter().collect();
    let ids: Vec<&str> = persons.iter().map(String::as_str).collect();
    let param = stmt::list(&ids);
    let mut related: Vec<RecordRow> = records::load(conn, Entity::Person, &ids)?;
    for def in crate::domain::entities::ENTITIES {
        let Some(field) = subject_field(def.entity) else {
            continue;
        };
        // `field` comes from the record-type table, never from input.
        related.extend(records::load_where_in(
            conn,
            def.entity,
            field,
            Some("NOT deleted"),
            &param,
        )?);
    }
    related.retain(|r| !r.deleted && !done.contains(&(r.entity, r.id.clone())));
    if related.is_empty() {
        return Ok(Vec::new());
    }
    let fresh = evaluate_rows(conn, state, related.iter().collect())?;
    let open = active_flags(conn, &related)?;
    let mut updates: Vec<FlagUpdate> = Vec::new();
    for row in &related {
        let key = (row.entity, row.id.clone());
        let codes = fresh.get(&key).cloned().unwrap_or_default();
        let now_open: BTreeSet<&str> = codes.iter().copied().collect();
        let was_open: BTreeSet<&str> = open
            .get(&key)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if now_open != was_open {
            updates.push((key, row.org_unit.clone(), row.version, codes));
        }
    }
    Ok(updates)
}

#[derive(QueryableByName)]
struct FlagRow {
    #[diesel(sql_type = Text)]
    entity: String,
    #[diesel(sql_type = Text)]
    record_id: String,
    #[diesel(sql_type = Text)]
    check_code: String,
}

/// The open flags of `rows`, by record.
fn active_flags(
    conn: &mut DbConn,
    rows: &[RecordRow],
) -> AppResult<HashMap<Key, BTreeSet<String>>> {
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.entity.name(), r.id.as_str()))
        .collect();
    // Looked up by primary key, as `store::set_flags` clears them.
    let sql = format!(
        "SELECT entity, record_id, check_code FROM flags WHERE active AND {}",
        store::flag_keys_in(backend_of(conn))
    );
    let found: Vec<FlagRow> = Stmt::new(sql).bind(stmt::pairs(&keys)).load_on(conn)?;
    let mut out: HashMap<Key, BTreeSet<String>> = HashMap::new();
    for f in found {
        if let Some(e) = Entity::parse(&f.entity) {
            out.entry((e, f.record_id))
                .or_default()
                .insert(f.check_code);
        }
    }
    Ok(out)
}
