//! Statements that diesel keeps prepared: SQL text with `?` placeholders and typed binds.
//!
//! diesel caches a prepared statement per connection for every query that does not call
//! `unsafe_to_cache_prepared`, keyed by its SQL and bind types; `diesel::sql_query` always calls
//! it, so each of its executions parses (SQLite) or parses and plans (PostgreSQL) the SQL again
//! (~7% of a SQLite push in the profile). [`Stmt`] is the same kind of raw statement without
//! that call. The cache is unbounded, so only SQL of a bounded number of shapes may go through
//! it: values are bound, never written into the text, and multi-row inserts use the row counts
//! of [`chunk_sizes`].

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use crate::db::DbConn;

/// One bound value with its SQL type; `None` is NULL of that type (the type is part of the
/// cache key, so a NULL keeps the column's type).
#[derive(Debug, Clone)]
pub enum Bind<'a> {
    Text(Option<&'a str>),
    OwnedText(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

/// A statement kept prepared by diesel's statement cache. The SQL uses `?` for each bind (the
/// backend's own placeholders are written by diesel), so it must not hold a `?` of its own.
#[derive(Debug, Clone)]
pub struct Stmt<'a> {
    sql: std::borrow::Cow<'a, str>,
    binds: Vec<Bind<'a>>,
    /// Kept in diesel's statement cache (all but [`Stmt::unprepared`]).
    cached: bool,
}

impl<'a> Stmt<'a> {
    pub fn new(sql: impl Into<std::borrow::Cow<'a, str>>) -> Stmt<'a> {
        Stmt {
            sql: sql.into(),
            binds: Vec::new(),
            cached: true,
        }
    }

    /// A statement with typed binds that is parsed (and on PostgreSQL planned) afresh at each
    /// execution, like `diesel::sql_query`: for SQL that must be planned for its values.
    pub fn unprepared(sql: impl Into<std::borrow::Cow<'a, str>>, binds: Vec<Bind<'a>>) -> Stmt<'a> {
        Stmt {
            sql: sql.into(),
            binds,
            cached: false,
        }
    }

    pub fn with_capacity(sql: impl Into<std::borrow::Cow<'a, str>>, binds: usize) -> Stmt<'a> {
        Stmt {
            sql: sql.into(),
            binds: Vec::with_capacity(binds),
            cached: true,
        }
    }

    pub fn bind(mut self, b: Bind<'a>) -> Stmt<'a> {
        self.binds.push(b);
        self
    }

    pub fn push(&mut self, b: Bind<'a>) {
        self.binds.push(b);
    }

    pub fn text(self, s: &'a str) -> Stmt<'a> {
        self.bind(Bind::Text(Some(s)))
    }

    pub fn int(self, i: i64) -> Stmt<'a> {
        self.bind(Bind::Int(Some(i)))
    }

    /// Runs the statement on either backend (the text and binds are the same for both: diesel
    /// writes each backend's placeholders for the `?`s).
    pub fn execute_on(self, conn: &mut DbConn) -> QueryResult<usize> {
        match conn {
            DbConn::Sqlite(c) => self.execute(c),
            DbConn::Postgres(c) => self.execute(c),
        }
    }

    /// The rows of the statement, on either backend.
    pub fn load_on<U>(self, conn: &mut DbConn) -> QueryResult<Vec<U>>
    where
        U: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        match conn {
            DbConn::Sqlite(c) => self.load(c),
            DbConn::Postgres(c) => self.load(c),
        }
    }

    /// The first row of the statement, on either backend (`NotFound` without one).
    pub fn first_on<U>(self, conn: &mut DbConn) -> QueryResult<U>
    where
        U: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        self.load_on(conn)?
            .into_iter()
            .next()
            .ok_or(diesel::result::Error::NotFound)
    }
}

impl QueryId for Stmt<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Stmt<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Stmt<'_> {}

impl<DB> QueryFragment<DB> for Stmt<'_>
where
    DB: Backend
        + HasSqlType<Nullable<Text>>
        + HasSqlType<Nullable<BigInt>>
        + HasSqlType<Nullable<Bool>>,
    Option<String>: ToSql<Nullable<Text>, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    Option<bool>: ToSql<Nullable<Bool>, DB>,
    for<'x> Option<&'x str>: ToSql<Nullable<Text>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if !self.cached {
            out.unsafe_to_cache_prepared();
        }
        let mut pieces = self.sql.split('?');
        if let Some(first) = pieces.next() {
            out.push_sql(first);
        }
        let mut binds = self.binds.iter();
        for piece in pieces {
            match binds.next() {
                Some(Bind::Text(v)) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Some(Bind::OwnedText(v)) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Some(Bind::Int(v)) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                Some(Bind::Bool(v)) => out.push_bind_param::<Nullable<Bool>, _>(v)?,
                None => {
                    return Err(diesel::result::Error::QueryBuilderError(
                        "fewer binds than placeholders".into(),
                    ))
                }
            }
            out.push_sql(piece);
        }
        if binds.next().is_some() {
            return Err(diesel::result::Error::QueryBuilderError(
                "more binds than placeholders".into(),
            ));
        }
        Ok(())
    }
}

/// Row counts for multi-row statements over `n` rows, at most `max` rows each: as many full
/// chunks of the largest power of two <= `max` as fit, then the rest by its binary digits. A
/// table thus gets at most about log2(max) + 1 statement shapes in the cache, and a batch of n
/// rows at most n / max + log2(max) statements.
pub fn chunk_sizes(n: usize, max: usize) -> Vec<usize> {
    let top = if max <= 1 {
        1
    } else {
        1usize << (usize::BITS - 1 - max.leading_zeros())
    };
    let mut out = vec![top; n / top];
    let mut rest = n % top;
    let mut bit = top >> 1;
    while rest > 0 {
        if rest >= bit {
            out.push(bit);
            rest -= bit;
        }
        bit >>= 1;
    }
    out
}

/// SQL for "`column` is one of the texts of the JSON array bound at the `?`" (a [`Stmt`]).
///
/// On PostgreSQL the list is made an array first (`= ANY(ARRAY(...))`), so an index on `column`
/// is used however long the list: `IN (SELECT jsonb_array_elements_text(..))` is planned as a
/// set of 100 rows and became a hash join over a scan of the whole table (the duplicate
/// look-up by ID number: ~35 ms a chunk at 20,000 persons).
pub fn in_json_list(backend: crate::db::Backend, column: &str) -> String {
    match backend {
        crate::db::Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each(?))"),
        crate::db::Backend::Postgres => {
            format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text(?::jsonb)))")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_sizes;

    #[test]
    fn chunk_sizes_cover_every_row_with_few_shapes() {
        assert_eq!(chunk_sizes(0, 256), Vec::<usize>::new());
        assert_eq!(chunk_sizes(250, 256), vec![128, 64, 32, 16, 8, 2]);
        assert_eq!(chunk_sizes(600, 256), vec![256, 256, 64, 16, 8]);
        assert_eq!(chunk_sizes(5, 1), vec![1; 5]);
        assert_eq!(chunk_sizes(7, 3), vec![2, 2, 2, 1]);
        for n in 0..1000 {
            let s = chunk_sizes(n, 300);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|k| k.is_power_of_two() && *k <= 256));
        }
    }
}
