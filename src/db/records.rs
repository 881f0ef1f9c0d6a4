//! Loading and storing ledger records, with SQL built from `domain::entities`. A whole batch of
//! rows is written in one statement per table: a multi-row `VALUES` with bound cells on SQLite,
//! one JSON array parameter through `jsonb_to_recordset` on PostgreSQL. Reads take their keys as
//! one JSON array parameter (`json_each` / `jsonb_array_elements`).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{json, Map, Value};

use crate::db::stmt::{chunk_sizes, Bind, Stmt};
use crate::db::{Backend, DbConn};
use crate::domain::entities::{Entity, FieldType, ENTITIES};
use crate::error::{AppError, AppResult};

pub type Fields = BTreeMap<String, Value>;
pub type Stamps = BTreeMap<String, i64>;

pub use crate::domain::record::RecordRow;

/// The column kinds the JSON row statements need to name on PostgreSQL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    BigInt,
    Int,
    Bool,
}

impl ColType {
    fn pg(self) -> &'static str {
        match self {
            ColType::Text => "text",
            ColType::BigInt => "bigint",
            ColType::Int => "integer",
            ColType::Bool => "boolean",
        }
    }
}

const META: &[(&str, ColType)] = &[
    ("id", ColType::Text),
    ("org_unit", ColType::Text),
    ("version", ColType::BigInt),
    ("change_seq", ColType::BigInt),
    ("deleted", ColType::Bool),
    ("merged_into", ColType::Text),
    ("field_stamps", ColType::Text),
    ("created_at", ColType::BigInt),
    ("updated_at", ColType::BigInt),
    ("recorded_at", ColType::BigInt),
    ("created_by", ColType::Text),
    ("updated_by", ColType::Text),
    ("updated_device", ColType::Text),
];

fn field_col_type(ty: FieldType) -> ColType {
    match ty {
        FieldType::Int { .. } => ColType::Int,
        FieldType::Bool => ColType::Bool,
        _ => ColType::Text,
    }
}

/// All columns of an entity's table, server-owned first.
pub fn columns(entity: Entity) -> Vec<(&'static str, ColType)> {
    let mut cols: Vec<(&'static str, ColType)> = META.to_vec();
    cols.extend(
        entity
            .def()
            .fields
            .iter()
            .map(|f| (f.name, field_col_type(f.ty))),
    );
    cols
}

/// PostgreSQL's side of `insert_rows`: `INSERT ... SELECT ... FROM jsonb_to_recordset($1)`, so a
/// whole batch of rows is one parameter and one round trip.
fn pg_json_insert_sql(
    table: &str,
    cols: &[(&str, ColType)],
    on_conflict: Option<(&str, &[&str])>,
) -> String {
    let list = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let typed: Vec<String> = cols
        .iter()
        .map(|(n, t)| format!("{n} {}", t.pg()))
        .collect();
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_to_recordset(?::jsonb) AS x({}){}",
        typed.join(", "),
        conflict_clause(on_conflict)
    )
}

/// ` ON CONFLICT (key) DO NOTHING | DO UPDATE SET c = excluded.c, ...`, or nothing.
fn conflict_clause(on_conflict: Option<(&str, &[&str])>) -> String {
    match on_conflict {
        None => String::new(),
        Some((key, [])) => format!(" ON CONFLICT ({key}) DO NOTHING"),
        Some((key, update)) => {
            let sets: Vec<String> = update
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
        }
    }
}

/// Runs a statement whose only parameter (`?`) is a JSON text, kept prepared (`db::stmt`): the
/// SQL must be one of a bounded set of texts, with every value in the parameter.
pub fn exec_json(conn: &mut DbConn, sql: &str, param: &str) -> AppResult<usize> {
    let q = Stmt::new(sql).text(param);
    let n = match conn {
        DbConn::Sqlite(c) => q.execute(c)?,
        DbConn::Postgres(c) => q.execute(c)?,
    };
    Ok(n)
}

pub fn backend_of(conn: &DbConn) -> Backend {
    match conn {
        DbConn::Sqlite(_) => Backend::Sqlite,
        DbConn::Postgres(_) => Backend::Postgres,
    }
}

/// Inserts `rows` (JSON objects keyed by column) in one statement per chunk.
pub fn insert_rows(
    conn: &mut DbConn,
    table: &str,
    cols: &[(&str, ColType)],
    on_conflict: Option<(&str, &[&str])>,
    rows: &[Value],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if let DbConn::Sqlite(c) = conn {
        let cells = rows
            .iter()
            .map(|row| {
                cols.iter()
                    .map(|(name, ty)| Cell::of_value(*ty, &row[*name]))
                    .collect()
            })
            .collect::<AppResult<Vec<Vec<Cell>>>>()?;
        return insert_cells_sqlite(c, table, cols, on_conflict, &cells);
    }
    let sql = pg_json_insert_sql(table, cols, on_conflict);
    for chunk in rows.chunks(2000) {
        let param = Value::Array(chunk.to_vec()).to_string();
        exec_json(conn, &sql, &param)?;
    }
    Ok(())
}

/// One cell of a row bound on SQLite, borrowed from the row where it can be.
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    OwnedText(String),
    Int(i64),
    Bool(bool),
}

impl<'a> Cell<'a> {
    /// The cell as a bind of the column's type (a NULL keeps the type: it is part of the
    /// prepared statement's cache key).
    fn bind(&self, ty: ColType) -> Bind<'_> {
        match (self, ty) {
            (Cell::Null, ColType::Text) => Bind::Text(None),
            (Cell::Null, ColType::BigInt | ColType::Int) => Bind::Int(None),
            (Cell::Null, ColType::Bool) => Bind::Bool(None),
            (Cell::Text(s), _) => Bind::Text(Some(s)),
            (Cell::OwnedText(s), _) => Bind::Text(Some(s.as_str())),
            (Cell::Int(i), _) => Bind::Int(Some(*i)),
            (Cell::Bool(b), _) => Bind::Bool(Some(*b)),
        }
    }

    fn text(s: Option<&'a str>) -> Cell<'a> {
        s.map_or(Cell::Null, Cell::Text)
    }

    /// A JSON value as the cell of a column of type `ty`.
    fn of_value(ty: ColType, v: &'a Value) -> AppResult<Cell<'a>> {
        let bad = || AppError::Internal(format!("a {} cell holds {v}", ty.pg()));
        Ok(match (ty, v) {
            (_, Value::Null) => Cell::Null,
            (ColType::Text, Value::String(s)) => Cell::Text(s),
            (ColType::Text, other) => Cell::OwnedText(other.to_string()),
            (ColType::BigInt | ColType::Int, v) => Cell::Int(v.as_i64().ok_or_else(bad)?),
            (ColType::Bool, v) => Cell::Bool(v.as_bool().ok_or_else(bad)?),
        })
    }
}

/// SQLite's side of the row writers: a multi-row `VALUES` statement with one bound parameter
/// per cell. The profile showed SQLite spending most of a push in its JSON functions when each
/// cell was pulled out of one JSON array parameter with `->>`; binding the cells avoids that
/// walk, and binding them from the rows themselves (`Cell`) avoids building a JSON object per
/// row first.
fn insert_cells_sqlite(
    c: &mut diesel::SqliteConnection,
    table: &str,
    cols: &[(&str, ColType)],
    on_conflict: Option<(&str, &[&str])>,
    rows: &[Vec<Cell>],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // SQLite allows 32,766 parameters per statement; the row counts come from `chunk_sizes`
    // so that each table has a few statement shapes, kept prepared (`db::stmt`).
    let mut rest = rows;
    for n in chunk_sizes(rows.len(), (30_000 / cols.len()).clamp(1, 256)) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let sql = insert_sql(table, cols, on_conflict, n);
        let mut q = Stmt::with_capacity(&*sql, n * cols.len());
        for row in chunk {
            for (cell, (_, ty)) in row.iter().zip(cols) {
                q.push(cell.bind(*ty));
            }
        }
        q.execute(c)?;
    }
    Ok(())
}

/// `INSERT INTO table (cols) VALUES (?, ...) x rows [ON CONFLICT ...]`, built once per shape.
fn insert_sql(
    table: &str,
    cols: &[(&str, ColType)],
    on_conflict: Option<(&str, &[&str])>,
    rows: usize,
) -> std::sync::Arc<str> {
    type Key = (String, usize, Option<(String, Vec<String>)>, usize);
    static SHAPES: OnceLock<std::sync::Mutex<HashMap<Key, std::sync::Arc<str>>>> = OnceLock::new();
    let key: Key = (
        table.to_string(),
        cols.len(),
        on_conflict.map(|(k, u)| (k.to_string(), u.iter().map(|s| s.to_string()).collect())),
        rows,
    );
    let shapes = SHAPES.get_or_init(Default::default);
    if let Some(sql) = shapes.lock().expect("shapes lock").get(&key) {
        return sql.clone();
    }
    let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let row_sql = format!("({})", vec!["?"; cols.len()].join(", "));
    let sql: std::sync::Arc<str> = format!(
        "INSERT INTO {table} ({}) VALUES {}{}",
        names.join(", "),
        vec![row_sql.as_str(); rows].join(", "),
        conflict_clause(on_conflict)
    )
    .into();
    shapes.lock().expect("shapes lock").insert(key, sql.clone());
    sql
}

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
    let json_list = match backend {
        Backend::Sqlite => {
            let pairs: Vec<String> = cols.iter().map(|(n, _)| format!("'{n}', t.{n}")).collect();
            format!(
                "t.change_seq, json_object('entity', '{}', {}) AS j",
                def.name,
                pairs.join(", ")
            )
        }
        Backend::Postgres => format!(
            "t.change_seq, (to_jsonb(t) || jsonb_build_object('entity', '{}'))::text AS j",
            def.name
        ),
    };
    let select_json = format!("SELECT {json_list} FROM {} t", def.table);
    let select_by_ids = format!(
        "{select_json} WHERE {}",
        crate::db::stmt::in_json_list(backend, "id")
    );
    EntitySql {
        select_by_ids,
        select_json,
        json_list,
        wire_list: wire_list(backend, entity),
    }
}

/// See `EntitySql::wire_list`. Null members are dropped by `json_patch` onto `{}` (SQLite: a
/// merge patch removes the keys it sets to null, nested objects too) or `jsonb_strip_nulls`
/// (PostgreSQL); SQLite keeps booleans as 0 and 1, so they are spelt out as JSON.
fn wire_list(backend: Backend, entity: Entity) -> String {
    let def = entity.def();
    let bool_sql = |col: &str| match backend {
        Backend::Sqlite => {
            format!(
                "json(CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN 'true' ELSE 'false' END)"
            )
        }
        Backend::Postgres => col.to_string(),
    };
    let fields: Vec<String> = def
        .fields
        .iter()
        .map(|f| {
            let col = format!("t.{}", f.name);
            let v = if matches!(f.ty, FieldType::Bool) {
                bool_sql(&col)
            } else {
                col
            };
            format!("'{}', {v}", f.name)
        })
        .collect();
    let object = match backend {
        Backend::Sqlite => "json_object",
        Backend::Postgres => "jsonb_build_object",
    };
    let record = format!(
        "{object}('entity', '{}', 'id', t.id, 'org_unit', t.org_unit, 'version', t.version, \
         'deleted', {}, 'merged_into', t.merged_into, 'fields', {object}({}), \
         'change_seq', t.change_seq)",
        def.name,
        bool_sql("t.deleted"),
        fields.join(", ")
    );
    match backend {
        Backend::Sqlite => format!("t.change_seq, json_patch('{{}}', {record}) AS j"),
        Backend::Postgres => format!("t.change_seq, jsonb_strip_nulls({record})::text AS j"),
    }
}

/// The row of a `select_json` query.
#[derive(QueryableByName)]
pub struct JsonRow {
    #[diesel(sql_type = BigInt)]
    pub change_seq: i64,
    #[diesel(sql_type = Text)]
    pub j: String,
}

impl RecordRow {
    /// The row as a JSON object keyed by column, for the upsert and the version history.
    pub fn to_columns(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("org_unit".into(), json!(self.org_unit));
        m.insert("version".into(), json!(self.version));
        m.insert("change_seq".into(), json!(self.change_seq));
        m.insert("deleted".into(), json!(self.deleted));
        m.insert("merged_into".into(), json!(self.merged_into));
        m.insert(
            "field_stamps".into(),
            json!(serde_json::to_string(&self.stamps).expect("stamps serialise")),
        );
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        m.insert("recorded_at".into(), json!(self.recorded_at));
        m.insert("created_by".into(), json!(self.created_by));
        m.insert("updated_by".into(), json!(self.updated_by));
        m.insert("updated_device".into(), json!(self.updated_device));
        for f in self.entity.def().fields {
            m.insert(
                f.name.to_string(),
                self.fields.get(f.name).cloned().unwrap_or(Value::Null),
            );
        }
        Value::Object(m)
    }

    /// The row's cells in the order of [`columns`], for SQLite's row writer.
    fn cells(&self) -> AppResult<Vec<Cell<'_>>> {
        let def = self.entity.def();
        let mut out = Vec::with_capacity(META.len() + def.fields.len());
        out.extend([
            Cell::Text(&self.id),
            Cell::Text(&self.org_unit),
            Cell::Int(self.version),
            Cell::Int(self.change_seq),
            Cell::Bool(self.deleted),
            Cell::text(self.merged_into.as_deref()),
            Cell::OwnedText(serde_json::to_string(&self.stamps).expect("stamps serialise")),
            Cell::Int(self.created_at),
            Cell::Int(self.updated_at),
            Cell::Int(self.recorded_at),
            Cell::Text(&self.created_by),
            Cell::Text(&self.updated_by),
            Cell::text(self.updated_device.as_deref()),
        ]);
        for f in def.fields {
            out.push(match self.fields.get(f.name) {
                Some(v) => Cell::of_value(field_col_type(f.ty), v)?,
                None => Cell::Null,
            });
        }
        Ok(out)
    }

    /// Parses a row selected by `select_json`; the entity comes from the row itself.
    pub fn from_json(text: &str) -> AppResult<RecordRow> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| AppError::Internal(format!("record row is not JSON: {e}")))?;
        let entity = v["entity"]
            .as_str()
            .and_then(Entity::parse)
            .ok_or_else(|| AppError::Internal("record row without entity".into()))?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let i = |k: &str| v[k].as_i64().unwrap_or(0);
        let mut fields = Fields::new();
        for f in entity.def().fields {
            let val = &v[f.name];
            let val = match (f.ty, val) {
                (_, Value::Null) => continue,
                // SQLite has no boolean type: json_object gives 0 or 1.
                (FieldType::Bool, Value::Number(n)) => Value::Bool(n.as_i64() == Some(1)),
                _ => val.clone(),
            };
            fields.insert(f.name.to_string(), val);
        }
        let stamps: Stamps = s("field_stamps")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(RecordRow {
            entity,
            id: s("id").unwrap_or_default(),
            org_unit: s("org_unit").unwrap_or_default(),
            version: i("version"),
            change_seq: i("change_seq"),
            deleted: matches!(v["deleted"], Value::Bool(true)) || v["deleted"].as_i64() == Some(1),
            merged_into: s("merged_into"),
            fields,
            stamps,
            created_at: i("created_at"),
            updated_at: i("updated_at"),
            recorded_at: i("recorded_at"),
            created_by: s("created_by").unwrap_or_default(),
            updated_by: s("updated_by").unwrap_or_default(),
            updated_device: s("updated_device"),
        })
    }
}

/// Loads the records of one type with the given ids (missing ids are simply absent).
pub fn load(conn: &mut DbConn, entity: Entity, ids: &[&str]) -> AppResult<Vec<RecordRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = &entity_sql(backend_of(conn), entity).select_by_ids;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(2000) {
        let param = serde_json::to_string(chunk).expect("ids serialise");
        let q = Stmt::new(sql.as_str()).text(&param);
        let rows: Vec<JsonRow> = match conn {
            DbConn::Sqlite(c) => q.load(c)?,
            DbConn::Postgres(c) => q.load(c)?,
        };
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
    let list = crate::db::stmt::in_json_list(backend, column);
    let base = select_json_sql(backend, entity);
    match also {
        Some(cond) => format!("{base} WHERE {cond} AND {list}"),
        None => format!("{base} WHERE {list}"),
    }
}

/// The records of `entity` whose `column` is one of `values_json` (a JSON array of texts), and
/// that meet `also` when given (see [`select_where_in_sql`]).
pub fn load_where_in(
    conn: &mut DbConn,
    entity: Entity,
    column: &str,
    also: Option<&str>,
    values_json: &str,
) -> AppResult<Vec<RecordRow>> {
    let sql = select_where_in_sql(backend_of(conn), entity, column, also);
    let q = Stmt::new(sql).text(values_json);
    let rows: Vec<JsonRow> = match conn {
        DbConn::Sqlite(c) => q.load(c)?,
        DbConn::Postgres(c) => q.load(c)?,
    };
    rows.iter().map(|r| RecordRow::from_json(&r.j)).collect()
}

pub fn load_one(conn: &mut DbConn, entity: Entity, id: &str) -> AppResult<Option<RecordRow>> {
    Ok(load(conn, entity, &[id])?.into_iter().next())
}

/// Writes the latest state of each record (insert or replace), one statement per type.
/// Each id must appear once: callers pass the final state of a batch.
pub fn upsert(conn: &mut DbConn, rows: &[RecordRow]) -> AppResult<()> {
    let mut by_entity: BTreeMap<Entity, Vec<&RecordRow>> = BTreeMap::new();
    for r in rows {
        by_entity.entry(r.entity).or_default().push(r);
    }
    for (entity, rows) in by_entity {
        let cols = columns(entity);
        let update: Vec<&str> = cols.iter().map(|c| c.0).filter(|c| *c != "id").collect();
        let on_conflict = Some(("id", update.as_slice()));
        let table = entity.def().table;
        match conn {
            DbConn::Sqlite(c) => {
                let cells = rows
                    .iter()
                    .map(|r| r.cells())
                    .collect::<AppResult<Vec<_>>>()?;
                insert_cells_sqlite(c, table, &cols, on_conflict, &cells)?;
            }
            DbConn::Postgres(_) => {
                let values: Vec<Value> = rows.iter().map(|r| r.to_columns()).collect();
                insert_rows(conn, table, &cols, on_conflict, &values)?;
            }
        }
    }
    Ok(())
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

/// One version of a record, as kept in `record_versions`.
pub struct VersionRow<'a> {
    pub row: &'a RecordRow,
    pub op_id: Option<&'a str>,
}

const VERSION_COLS: &[(&str, ColType)] = &[
    ("entity", ColType::Text),
    ("record_id", ColType::Text),
    ("version", ColType::BigInt),
    ("org_unit", ColType::Text),
    ("deleted", ColType::Bool),
    ("merged_into", ColType::Text),
    ("data", ColType::Text),
    ("change_seq", ColType::BigInt),
    ("op_id", ColType::Text),
    ("device_id", ColType::Text),
    ("user_id", ColType::Text),
    ("recorded_at", ColType::BigInt),
    ("created_at", ColType::BigInt),
];

pub fn insert_versions(conn: &mut DbConn, versions: &[VersionRow]) -> AppResult<()> {
    if let DbConn::Sqlite(c) = conn {
        let cells: Vec<Vec<Cell>> = versions
            .iter()
            .map(|v| {
                let r = v.row;
                vec![
                    Cell::Text(r.entity.name()),
                    Cell::Text(&r.id),
                    Cell::Int(r.version),
                    Cell::Text(&r.org_unit),
                    Cell::Bool(r.deleted),
                    Cell::text(r.merged_into.as_deref()),
                    Cell::OwnedText(serde_json::to_string(&r.fields).expect("fields serialise")),
                    Cell::Int(r.change_seq),
                    Cell::text(v.op_id),
                    Cell::text(r.updated_device.as_deref()),
                    Cell::Text(&r.updated_by),
                    Cell::Int(r.recorded_at),
                    Cell::Int(r.updated_at),
                ]
            })
            .collect();
        return insert_cells_sqlite(c, "record_versions", VERSION_COLS, None, &cells);
    }
    let rows: Vec<Value> = versions
        .iter()
        .map(|v| {
            let r = v.row;
            json!({
                "entity": r.entity.name(),
                "record_id": r.id,
                "version": r.version,
                "org_unit": r.org_unit,
                "deleted": r.deleted,
                "merged_into": r.merged_into,
                "data": serde_json::to_string(&r.fields).expect("fields serialise"),
                "change_seq": r.change_seq,
                "op_id": v.op_id,
                "device_id": r.updated_device,
                "user_id": r.updated_by,
                "recorded_at": r.recorded_at,
                "created_at": r.updated_at,
            })
        })
        .collect();
    insert_rows(conn, "record_versions", VERSION_COLS, None, &rows)
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
    let sql = match backend_of(conn) {
        // CROSS JOIN makes SQLite walk the keys and look each up by primary key; left to
        // itself it scans every version of the entity and re-reads the JSON for each one.
        Backend::Sqlite => "SELECT v.record_id, v.version, v.data FROM json_each(?) k \
             CROSS JOIN record_versions v ON v.entity = ? AND v.record_id = k.value ->> 0 \
             AND v.version = k.value ->> 1",
        Backend::Postgres => "SELECT v.record_id, v.version, v.data FROM record_versions v \
             JOIN jsonb_array_elements(?::jsonb) k ON v.record_id = k ->> 0 AND v.version = (k ->> 1)::bigint \
             WHERE v.entity = ?",
    };
    for chunk in keys.chunks(2000) {
        let param = serde_json::to_string(chunk).expect("keys serialise");
        let q = Stmt::new(sql).text(&param).text(entity.name());
        let rows: Vec<DataRow> = match conn {
            DbConn::Sqlite(c) => q.load(c)?,
            DbConn::Postgres(c) => q.load(c)?,
        };
        for r in rows {
            let fields: Fields = serde_json::from_str(&r.data)
                .map_err(|e| AppError::Internal(format!("version data: {e}")))?;
            out.insert((r.record_id, r.version), fields);
        }
    }
    Ok(out)
}
