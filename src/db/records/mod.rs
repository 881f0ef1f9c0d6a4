//! Loading and storing ledger records, with SQL built from `domain::entities`: the row mapping
//! ([`rows`]), the reads ([`read`]) and the writes ([`write`]), re-exported here as one API.

mod read;
mod rows;
mod write;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::db::{Backend, DbConn};

pub use crate::domain::record::RecordRow;
pub use read::{
    load, load_bases, load_one, load_where_in, select_json_limited_sql, select_json_sql,
    select_where_in_sql, select_wire_limited_sql,
};
pub use rows::{columns, ColType, JsonRow};
pub use write::{insert_rows, insert_versions, upsert, VersionRow};

pub type Fields = BTreeMap<String, Value>;

pub type Stamps = BTreeMap<String, i64>;

pub fn backend_of(conn: &DbConn) -> Backend {
    match conn {
        DbConn::Sqlite(_) => Backend::Sqlite,
        DbConn::Postgres(_) => Backend::Postgres,
    }
}
