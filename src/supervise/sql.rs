//! SQL written by the supervisor services: scope predicates in the SQL text, and statements
//! whose parameters travel as one JSON object (any number of filters, one bind on both
//! backends).

use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use serde_json::{Map, Value};

use crate::auth::Scope;
use crate::db::records::backend_of;
use crate::db::{Backend, DbConn};
use crate::error::{AppError, AppResult};
use crate::orgunit::subtree_range;

/// Plain ids and cursors: letters, digits, `-`, `_`, `|`, `.`, at most 200 bytes.
pub fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'|' | b'.'))
}

/// An org unit code given as a filter: ASCII letters and digits only (so it can be written
/// into SQL text as a range bound).
pub fn check_code(code: &str) -> AppResult<()> {
    if code.is_empty() || code.len() > 20 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::BadRequest(
            "village must be an org unit code".into(),
        ));
    }
    Ok(())
}

/// `col` within the scope's subtrees, as SQL text: [`Scope::sql_condition`].
pub fn scope_cond(scope: &Scope, col: &str) -> String {
    scope.sql_condition(col)
}

/// `col` within the subtree of `code` (checked with [`check_code`] first).
pub fn prefix_cond(code: &str, col: &str) -> AppResult<String> {
    check_code(code)?;
    let (lo, hi) = subtree_range(code);
    Ok(format!("({col} >= '{lo}' AND {col} < '{hi}')"))
}

/// A WHERE clause whose values travel in one JSON parameter.
pub struct Query {
    backend: Backend,
    conds: Vec<String>,
    params: Map<String, Value>,
}

impl Query {
    pub fn new(conn: &DbConn) -> Query {
        Query {
            backend: backend_of(conn),
            conds: Vec::new(),
            params: Map::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A text parameter; returns the SQL expression that reads it.
    pub fn text(&mut self, value: &str) -> String {
        let key = format!("p{}", self.params.len());
        self.params.insert(key.clone(), Value::String(value.into()));
        match self.backend {
            Backend::Sqlite => format!("json_extract(?1, '$.{key}')"),
            Backend::Postgres => format!("($1::jsonb ->> '{key}')"),
        }
    }

    pub fn cond(&mut self, c: impl Into<String>) -> &mut Self {
        self.conds.push(c.into());
        self
    }

    /// ` WHERE ...`, always naming the parameter once so that both backends accept the bind.
    pub fn where_sql(&self) -> String {
        let touch = match self.backend {
            Backend::Sqlite => "?1 IS NOT NULL",
            Backend::Postgres => "$1::jsonb IS NOT NULL",
        };
        let mut all: Vec<&str> = self.conds.iter().map(String::as_str).collect();
        all.push(touch);
        format!(" WHERE {}", all.join(" AND "))
    }

    pub fn load<T>(&self, conn: &mut DbConn, sql: &str) -> AppResult<Vec<T>>
    where
        T: diesel::QueryableByName<diesel::sqlite::Sqlite>
            + diesel::QueryableByName<diesel::pg::Pg>
            + 'static,
    {
        // PostgreSQL's jsonb refuses NUL characters: a client's NUL is its error, not ours.
        if self
            .params
            .values()
            .any(|v| v.as_str().is_some_and(|t| t.contains('\0')))
        {
            return Err(AppError::bad_param(
                "bad_text",
                "text parameters may not contain NUL characters",
            ));
        }
        let param = Value::Object(self.params.clone()).to_string();
        let rows = match conn {
            DbConn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
            DbConn::Postgres(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
        };
        Ok(rows)
    }
}

#[derive(diesel::QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

pub fn count(q: &Query, conn: &mut DbConn, from: &str) -> AppResult<i64> {
    let rows: Vec<CountRow> = q.load(
        conn,
        &format!("SELECT COUNT(*) AS n FROM {from}{}", q.where_sql()),
    )?;
    Ok(rows.first().map_or(0, |r| r.n))
}
