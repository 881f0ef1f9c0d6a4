//! Reads of ledger records: the SQL of each record type (built once per backend), records by id
//! or by a list of column values, and the bases of three-way merges from the version history.
//! Keys travel as one list bind each (`db::stmt::list`, `db::stmt::pairs`).

use std::collections::HashMap;
use std::sync::OnceLock;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::rows::{columns, JsonRow};
use super::{backend_of, Fields, RecordRow};
use crate::db::stmt::{self, Bind, Stmt};
use crate::db::{Backend, DbConn};
use crate::domain::entities::{Entity, FieldType, ENTITIES};
use crate::error::{AppError, AppResult};

struct EntitySql {
    select_by_ids: String,
    /// Selects one JSON object per row (all columns plus `entity`) as `j`, with `change_seq`.
    select_json: String,
    /// The select list of `select_json`, over a row source aliased `t`.
    json_list: String,
    /// Like `json_list`, but `j` is the record as a pull sends it (`sync::protocol::RecordOut`:
    /// entity, id, org_unit, version, deleted, merged_into when set, change_seq, and `fields`
    /// without the null ones), built by the database so the server passes it through.
    wire_list: String,
}

fn entity_sql(backend: Backend, entity: Entity) -> &'static EntitySql {
    static CACHE: OnceLock<HashMap<(u8, Entity), EntitySql>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let mut m = HashMap::new();
        for b in [Backend::Sqlite, Backend::Postgres] {
            for d in ENTITIES {
                m.insert((b as u8, d.entity), build_entity_sql(b, d.entity));
            }
        }
        m
    });
    &cache[&(backend as u8, entity)]
}

fn build_entity_sql(backend: Backend, entity: Entity) -> EntitySql {
    let def = entity.def();
    let cols = columns(entity);
    // One object per row, built as `json` (text), not `jsonb` (a binary value, printed
    // afterwards): the loads of a push chunk's records were a third of its statement time on
    // PostgreSQL with `to_jsonb(t) || jsonb_build_object(..)`.
    let pairs: Vec<String> = cols.iter().map(|(n, _)| format!("'{n}', t.{n}")).collect();
    let (object, as_text) = match backend {
        Backend::Sqlite => ("json_object", ""),
        Backend::Postgres => ("json_build_object", "::text"),
    };
    let json_list = format!(
        "t.change_seq, {object}('entity', '{}', {}){as_text} AS j",
        def.name,
        pairs.join(", ")
    );
    let select_json = format!("SELECT {json_list} FROM {} t", def.table);
    let select_by_ids = format!("{select_json} WHERE {}", stmt::in_json_list(backend, "id"));
    EntitySql {
        select_by_ids,
        select_json,
        json_list,
        wire_list: wire_list(backend, entity),
    }
}

/// See `EntitySql::wire_list`. Null members are left out. The object is written as text on
/// both backends: each member is `"name":` and the value as JSON text (`json_quote` on SQLite,
/// `to_json(..)::text` on PostgreSQL: strings escaped, numbers as they are), booleans spelt
/// out, a null member is NULL, and `concat_ws` drops those. Every field is a scalar
/// (`FieldType`), so no nested object can hold a null. It replaced, on SQLite,
/// `json_patch('{}', json_object(...))`, which parsed every object it had just built again to
/// drop its nulls (two thirds of a village pull's statement time), and on PostgreSQL
/// `jsonb_strip_nulls(jsonb_build_object(...))::text`, which built a `jsonb` value, stripped it
/// and printed it (a village pull 12.5-15.6 -> 6.4-7.4 ms idle, bench/analysis.md).
fn wire_list(backend: Backend, entity: Entity) -> String {
    let def = entity.def();
    // A value as JSON text: strings escaped, numbers as they are (NULL stays NULL on
    // PostgreSQL; on SQLite json_quote(NULL) is the text `null`, so members test first).
    let quote = |col: &str| match backend {
        Backend::Sqlite => format!("json_quote({col})"),
        Backend::Postgres => format!("to_json({col})::text"),
    };
    let member = |name: &str, ty: FieldType| {
        let col = format!("t.{name}");
        match ty {
            FieldType::Bool => format!(
                "CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN '\"{name}\":true' \
                 ELSE '\"{name}\":false' END"
            ),
            _ => format!(
                "CASE WHEN {col} IS NULL THEN NULL ELSE '\"{name}\":' || {} END",
                quote(&col)
            ),
        }
    };
    let fields: Vec<String> = def.fields.iter().map(|f| member(f.name, f.ty)).collect();
    format!(
        "t.change_seq, '{{\"entity\":\"{}\",\"id\":' || {} || \
         ',\"org_unit\":' || {} || ',\"version\":' || t.version || \
         ',\"deleted\":' || CASE WHEN t.deleted THEN 'true' ELSE 'false' END || \
         CASE WHEN t.merged_into IS NULL THEN '' \
         ELSE ',\"merged_into\":' || {} END || \
         ',\"fields\":{{' || concat_ws(',', {}) || '}},\"change_seq\":' || t.change_seq || '}}' AS j",
        def.name,
        quote("t.id"),
        quote("t.org_unit"),
        quote("t.merged_into"),
        fields.join(", ")
    )
}

/// Loads the records of one type with the given ids (missing ids are simply absent).
pub fn load(conn: &mut DbConn, entity: Entity, ids: &[&str]) -> AppResult<Vec<RecordRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = &entity_sql(backend_of(conn), entity).select_by_ids;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(2000) {
        let rows: Vec<JsonRow> = Stmt::new(sql.as_str())
            .bind(stmt::list(chunk))
            .load_on(conn)?;
        for r in rows {
            out.push(RecordRow::from_json(&r.j)?);
        }
    }
    Ok(out)
}

/// SQL reading the records of `entity` whose `column` is one of the texts of the JSON array
/// bound as the one parameter (`?`, run as a [`Stmt`]), and that meet `also` when given.
/// `column` and `also` come from the record-type table or the code, never from input.
pub fn select_where_in_sql(
    backend: Backend,
    entity: Entity,
    column: &str,
    also: Option<&str>,
) -> String {
    let list = stmt::in_json_list(backend, column);
    let base = select_json_sql(backend, entity);
    match also {
        Some(cond) => format!("{base} WHERE {cond} AND {list}"),
        None => format!("{base} WHERE {list}"),
    }
}

/// The records of `entity` whose `column` is one of `values` (a [`stmt::list`]), and
/// that meet `also` when given (see [`select_where_in_sql`]).
pub fn load_where_in(
    conn: &mut DbConn,
    entity: Entity,
    column: &str,
    also: Option<&str>,
    values: &Bind<'_>,
) -> AppResult<Vec<RecordRow>> {
    let sql = select_where_in_sql(backend_of(conn), entity, column, also);
    let rows: Vec<JsonRow> = Stmt::new(sql).bind(values.clone()).load_on(conn)?;
    rows.iter().map(|r| RecordRow::from_json(&r.j)).collect()
}

pub fn load_one(conn: &mut DbConn, entity: Entity, id: &str) -> AppResult<Option<RecordRow>> {
    Ok(load(conn, entity, &[id])?.into_iter().next())
}

/// The SELECT of one record type as JSON rows, to which callers add a WHERE clause.
pub fn select_json_sql(backend: Backend, entity: Entity) -> &'static str {
    &entity_sql(backend, entity).select_json
}

/// Like [`select_json_sql`], over the rows that `tail` (`WHERE ... ORDER BY ... LIMIT n`, with
/// unqualified column names) picks from the entity's table, then ordered by `order`. Both
/// backends evaluate a select list before the sort under a LIMIT, so building the JSON in the
/// same query as `ORDER BY ... LIMIT` builds it for every row in scope (a county's 300,000
/// persons for one page); here it is built only for the rows returned.
pub fn select_json_limited_sql(
    backend: Backend,
    entity: Entity,
    tail: &str,
    order: &str,
) -> String {
    let e = entity_sql(backend, entity);
    format!(
        "SELECT {} FROM (SELECT * FROM {}{tail}) t{order}",
        e.json_list,
        entity.def().table
    )
}

/// Like [`select_json_limited_sql`], with each row as a pull sends it (`EntitySql::wire_list`).
pub fn select_wire_limited_sql(backend: Backend, entity: Entity, tail: &str) -> String {
    format!(
        "SELECT {} FROM (SELECT * FROM {}{tail}) t",
        entity_sql(backend, entity).wire_list,
        entity.def().table
    )
}

#[derive(QueryableByName)]
struct DataRow {
    #[diesel(sql_type = Text)]
    record_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    data: String,
}

/// The fields of the given (record id, version) pairs of one type, from the version history:
/// the bases of three-way merges.
pub fn load_bases(
    conn: &mut DbConn,
    entity: Entity,
    keys: &[(&str, i64)],
) -> AppResult<HashMap<(String, i64), Fields>> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let backend = backend_of(conn);
    let sql = match backend {
        // CROSS JOIN makes SQLite walk the keys and look each up by primary key; left to
        // itself it scans every version of the entity and re-reads the JSON for each one.
        Backend::Sqlite => format!(
            "SELECT v.record_id, v.version, v.data FROM {} \
             CROSS JOIN record_versions v ON v.entity = ? AND v.record_id = k.a AND v.version = k.b",
            stmt::json_pairs(backend, "k")
        ),
        Backend::Postgres => format!(
            "SELECT v.record_id, v.version, v.data FROM record_versions v \
             JOIN {} ON v.record_id = k.a AND v.version = k.b::bigint WHERE v.entity = ?",
            stmt::json_pairs(backend, "k")
        ),
    };
    for chunk in keys.chunks(2000) {
        let rows: Vec<DataRow> = Stmt::new(sql.as_str())
            .bind(stmt::pairs(chunk))
            .text(entity.name())
            .load_on(conn)?;
        for r in rows {
            let fields: Fields = serde_json::from_str(&r.data)
                .map_err(|e| AppError::Internal(format!("version data: {e}")))?;
            out.insert((r.record_id, r.version), fields);
        }
    }
    Ok(out)
}
