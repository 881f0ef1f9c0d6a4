//! Writes of ledger records and their history. A whole batch of rows is written in one
//! statement per table and chunk: a multi-row `VALUES` with one bound cell per column, the
//! same on both backends.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use super::rows::{columns, copy_rows_text, Cell, ColType};
use super::RecordRow;
use crate::db::stmt::{chunk_sizes, Stmt};
use crate::db::DbConn;
use crate::domain::entities::Entity;
use crate::error::AppResult;

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
    let cells = rows
        .iter()
        .map(|row| {
            cols.iter()
                .map(|(name, ty)| Cell::of_value(*ty, &row[*name]))
                .collect()
        })
        .collect::<AppResult<Vec<Vec<Cell>>>>()?;
    insert_cells(conn, table, cols, on_conflict, &cells)
}

/// The row writer of both backends: a multi-row `VALUES` statement with one typed bind per
/// cell, taken from the rows themselves (`Cell`), so that no JSON is built on the way to the
/// store or parsed in it (bench/analysis.md has the profiles that led here).
fn insert_cells(
    conn: &mut DbConn,
    table: &str,
    cols: &[(&str, ColType)],
    on_conflict: Option<(&str, &[&str])>,
    rows: &[Vec<Cell>],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if on_conflict.is_none() && rows.len() >= COPY_MIN_ROWS {
        if let DbConn::Postgres(pg) = conn {
            if copy_rows(pg, table, rows)? {
                return Ok(());
            }
        }
    }
    // SQLite allows 32,766 parameters per statement, PostgreSQL 65,535; the row counts come
    // from `chunk_sizes` so that each table has a few statement shapes, kept prepared
    // (`db::stmt`), the same texts on both backends.
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
        q.execute_on(conn)?;
    }
    Ok(())
}

/// Rows from which a PostgreSQL append goes through `COPY` ([`copy_rows`]).
const COPY_MIN_ROWS: usize = 32;

/// PostgreSQL: appends `rows` to a table the push only ever appends to (the device ledger, the
/// record history) with one `COPY .. FROM STDIN` in text format instead of multi-row
/// `INSERT`s; `false` for any other table. The rows' cells must be the table's columns in its
/// order (`db::schema`), which the `COPY` names. The text is built only for those tables.
fn copy_rows(pg: &mut diesel::PgConnection, table: &str, rows: &[Vec<Cell>]) -> AppResult<bool> {
    use crate::db::schema::{device_ops, record_versions};
    use diesel::ExecuteCopyFromDsl;
    let send = |w: &mut dyn std::io::Write| {
        w.write_all(&copy_rows_text(rows))
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
    };
    match table {
        "device_ops" => {
            diesel::copy_from(device_ops::table)
                .from_raw_data(device_ops::table, send)
                .execute(pg)?;
        }
        "record_versions" => {
            diesel::copy_from(record_versions::table)
                .from_raw_data(record_versions::table, send)
                .execute(pg)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
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
        let cells = rows
            .iter()
            .map(|r| r.cells())
            .collect::<AppResult<Vec<_>>>()?;
        insert_cells(conn, table, &cols, on_conflict, &cells)?;
    }
    Ok(())
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
    insert_cells(conn, "record_versions", VERSION_COLS, None, &cells)
}
