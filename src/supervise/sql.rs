//! SQL written by the supervisor services: scope predicates in the SQL text, and filters whose
//! values are bound as `:name` parameters of a [`Stmt`] (any number of filters).

use diesel::sql_types::BigInt;

use crate::auth::Scope;
use crate::db::records::backend_of;
use crate::db::stmt::{Bind, Stmt};
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

/// A WHERE clause and its values: each value is a `:name` parameter of a [`Stmt::named`]
/// statement, bound typed (a name used twice is bound twice).
pub struct Query {
    backend: Backend,
    conds: Vec<String>,
    params: Vec<(String, String)>,
}

impl Query {
    pub fn new(conn: &DbConn) -> Query {
        Query {
            backend: backend_of(conn),
            conds: Vec::new(),
            params: Vec::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A text parameter; returns the SQL that reads it (its `:name`).
    pub fn text(&mut self, value: &str) -> String {
        let name = format!("p{}", self.params.len());
        let sql = format!(":{name}");
        self.params.push((name, value.to_string()));
        sql
    }

    pub fn cond(&mut self, c: impl Into<String>) -> &mut Self {
        self.conds.push(c.into());
        self
    }

    /// ` WHERE ...` (` WHERE TRUE` without conditions, so callers may add ` AND ...`).
    pub fn where_sql(&self) -> String {
        if self.conds.is_empty() {
            return " WHERE TRUE".into();
        }
        format!(" WHERE {}", self.conds.join(" AND "))
    }

    /// Runs `sql` with this query's parameters bound. Not kept prepared: the texts carry
    /// checked codes and limits, so they take more shapes than a statement cache should hold.
    pub fn load<T>(&self, conn: &mut DbConn, sql: &str) -> AppResult<Vec<T>>
    where
        T: diesel::QueryableByName<diesel::sqlite::Sqlite>
            + diesel::QueryableByName<diesel::pg::Pg>
            + 'static,
    {
        // PostgreSQL refuses NUL characters in text: a client's NUL is its error, not ours.
        if self.params.iter().any(|(_, v)| v.contains('\0')) {
            return Err(AppError::bad_param(
                "bad_text",
                "text parameters may not contain NUL characters",
            ));
        }
        let params: Vec<(&str, Bind<'_>)> = self
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), Bind::Text(Some(v.as_str()))))
            .collect();
        Ok(Stmt::named(sql, &params).uncached().load_on(conn)?)
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
