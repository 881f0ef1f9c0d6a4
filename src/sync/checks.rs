//! Runs the logic checks of `domain::checks` on the records a push changed, loading what the
//! checks need to know about related persons (the subject, a death, earlier births).

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;

use crate::db::records::{self, backend_of, RecordRow};
use crate::db::{Backend, DbConn};
use crate::domain::checks::{self, CheckInput};
use crate::domain::entities::Entity;
use crate::error::AppResult;

type Key = (Entity, String);

fn subject_id(row: &RecordRow) -> Option<String> {
    match row.entity {
        Entity::Person => Some(row.id.clone()),
        Entity::Birth => row.fields.get("mother_id")?.as_str().map(str::to_string),
        _ => row.fields.get("person_id")?.as_str().map(str::to_string),
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
    let today = chrono::Utc::now().date_naive();
    let rows: Vec<&RecordRow> = keys.iter().filter_map(|k| state.get(k)).collect();
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
    let param = serde_json::to_string(&persons.iter().collect::<Vec<_>>()).expect("ids serialise");
    let sql = match backend_of(conn) {
        Backend::Sqlite => "SELECT id, person_id, death_date FROM deaths WHERE NOT deleted AND person_id IN (SELECT value FROM json_each(?))",
        Backend::Postgres => "SELECT id, person_id, death_date FROM deaths WHERE NOT deleted AND person_id IN (SELECT jsonb_array_elements_text($1::jsonb))",
    };
    let rows: Vec<DeathRow> = match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
        DbConn::Postgres(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
    };
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
    let exclude = serde_json::to_string(&exclude).expect("ids serialise");
    let sql = match backend_of(conn) {
        Backend::Sqlite => "SELECT COUNT(*) AS n FROM births WHERE NOT deleted AND mother_id = ? AND birth_date < ? \
                           AND id NOT IN (SELECT value FROM json_each(?))",
        Backend::Postgres => "SELECT COUNT(*) AS n FROM births WHERE NOT deleted AND mother_id = $1 AND birth_date < $2 \
                           AND id NOT IN (SELECT jsonb_array_elements_text($3::jsonb))",
    };
    let rows: Vec<CountRow> = match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql)
            .bind::<Text, _>(mother)
            .bind::<Text, _>(on)
            .bind::<Text, _>(&exclude)
            .load(c)?,
        DbConn::Postgres(c) => diesel::sql_query(sql)
            .bind::<Text, _>(mother)
            .bind::<Text, _>(on)
            .bind::<Text, _>(&exclude)
            .load(c)?,
    };
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
