//! Row mapping: the columns of a record type's table, a record as the cells the writers bind,
//! and a record parsed back from the JSON row the readers select.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;

use super::{Fields, RecordRow, Stamps};
use crate::db::stmt::Bind;
use crate::domain::entities::{Entity, FieldType};
use crate::error::{AppError, AppResult};

/// The kind of a column: the type each of its cells is bound with (a NULL too).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    BigInt,
    Int,
    Bool,
}

impl ColType {
    pub(super) fn pg(self) -> &'static str {
        match self {
            ColType::Text => "text",
            ColType::BigInt => "bigint",
            ColType::Int => "integer",
            ColType::Bool => "boolean",
        }
    }
}

pub(super) const META: &[(&str, ColType)] = &[
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

/// One cell of a row to bind, borrowed from the row where it can be.
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
    pub(super) fn bind(&self, ty: ColType) -> Bind<'_> {
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

    /// The cell in `COPY`'s text format: `\N` for NULL, `t` / `f`, digits, or the text with
    /// backslash, tab, newline and carriage return escaped.
    pub(super) fn copy_text(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        match self {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Text(s) => copy_escape(s, out),
            Cell::OwnedText(s) => copy_escape(s, out),
        }
    }

    pub(super) fn text(s: Option<&'a str>) -> Cell<'a> {
        s.map_or(Cell::Null, Cell::Text)
    }

    /// A JSON value as the cell of a column of type `ty`.
    pub(super) fn of_value(ty: ColType, v: &'a Value) -> AppResult<Cell<'a>> {
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

/// `rows` in `COPY`'s text format: each row's cells ([`Cell::copy_text`]) separated by tabs,
/// each row ended by a newline.
pub(super) fn copy_rows_text(rows: &[Vec<Cell>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() * 24).sum());
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            cell.copy_text(&mut out);
        }
        out.push(b'\n');
    }
    out
}

/// `s` escaped for `COPY`'s text format.
fn copy_escape(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
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
    /// The row's cells in the order of [`columns`], for the row writer.
    pub(super) fn cells(&self) -> AppResult<Vec<Cell<'_>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character COPY's text format reads specially is escaped, so that a value can hold
    /// tabs, line breaks and backslashes (a JSON string's `\n` is two characters, a backslash
    /// and an n, and must arrive as those two).
    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let text = copy_rows_text(&[
            vec![
                Cell::Text("a\tb\nc\rd\\e"),
                Cell::Null,
                Cell::Int(-42),
                Cell::Bool(true),
                Cell::Bool(false),
                Cell::OwnedText(r#"{"notes":"line\nnext \\. 环位"}"#.into()),
            ],
            vec![Cell::Int(7)],
        ]);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a\\tb\\nc\\rd\\\\e\t\\N\t-42\tt\tf\t{\"notes\":\"line\\\\nnext \\\\\\\\. 环位\"}\n7\n"
        );
    }
}
