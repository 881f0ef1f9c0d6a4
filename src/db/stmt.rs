//! The one way SQL with values is written: [`Stmt`], SQL text with `?` placeholders (or `:name`
//! parameters, [`Stmt::named`]) and typed binds, run on either backend. Lists of keys are one
//! bind each (a JSON array, [`list`] / [`pairs`]) read by the fragments [`in_json_list`] and
//! [`json_pairs`], so a statement has one text however long its list. (`diesel::sql_query`
//! is left to fixed statements without values: settings, `ANALYZE`, integrity checks; the
//! fixed tables go through diesel's DSL.)
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
    /// Kept in diesel's statement cache (all but [`Stmt::uncached`] ones).
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

    /// A statement written with `:name` parameters (a name is a lowercase letter, then lowercase
    /// letters, digits or `_`), each replaced by a `?` bound to its value; a name used twice is
    /// bound twice. `::type` casts and names not in `params` are left as they are.
    pub fn named(sql: &str, params: &[(&str, Bind<'a>)]) -> Stmt<'a> {
        let (sql, binds) = bind_names(sql, params);
        Stmt {
            sql: sql.into(),
            binds,
            cached: true,
        }
    }

    /// The same statement, parsed (and planned) afresh at each execution: for SQL whose text
    /// holds values (checked codes, limits) and so takes more shapes than a cache should keep.
    pub fn uncached(mut self) -> Stmt<'a> {
        self.cached = false;
        self
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

/// Replaces `:name` parameters with `?`; returns the SQL and the values in order.
fn bind_names<'a>(sql: &str, params: &[(&str, Bind<'a>)]) -> (String, Vec<Bind<'a>>) {
    let mut out = String::with_capacity(sql.len());
    let mut values = Vec::new();
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < sql.len() {
        if bytes[i] == b':' && (i == 0 || bytes[i - 1] != b':') {
            let rest = &sql[i + 1..];
            let len = if rest.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
                rest.bytes()
                    .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                    .count()
            } else {
                0
            };
            if let Some((_, v)) = params.iter().find(|(n, _)| len > 0 && *n == &rest[..len]) {
                values.push(v.clone());
                out.push('?');
                i += 1 + len;
                continue;
            }
        }
        let ch = sql[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    (out, values)
}

/// A list of texts as one bind, for [`in_json_list`].
pub fn list<I>(items: I) -> Bind<'static>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let items: Vec<I::Item> = items.into_iter().collect();
    let texts: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    Bind::OwnedText(Some(
        serde_json::to_string(&texts).expect("texts serialise"),
    ))
}

/// A list of two-part keys (texts or numbers) as one bind, for [`json_pairs`].
pub fn pairs<A: serde::Serialize, B: serde::Serialize>(items: &[(A, B)]) -> Bind<'static> {
    Bind::OwnedText(Some(serde_json::to_string(items).expect("keys serialise")))
}

/// SQL for a row source `alias(a, b)` over the pairs bound at the `?` ([`pairs`]), both
/// columns as text.
pub fn json_pairs(backend: crate::db::Backend, alias: &str) -> String {
    match backend {
        crate::db::Backend::Sqlite => {
            format!("(SELECT k.value ->> 0 AS a, k.value ->> 1 AS b FROM json_each(?) k) {alias}")
        }
        crate::db::Backend::Postgres => format!(
            "(SELECT k ->> 0 AS a, k ->> 1 AS b FROM jsonb_array_elements(?::jsonb) k) {alias}"
        ),
    }
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
    use super::{bind_names, chunk_sizes, Bind};

    #[test]
    fn names_bind_in_order() {
        let p = [
            ("s", Bind::Text(Some("A"))),
            ("e", Bind::Int(Some(7))),
            ("p1", Bind::Int(Some(1))),
        ];
        let (sql, v) = bind_names(
            "x >= :s AND y <= :e AND z <= :e AND 'a:b' = :q AND w = :p1 AND t = '10:30'",
            &p,
        );
        assert_eq!(
            sql,
            "x >= ? AND y <= ? AND z <= ? AND 'a:b' = :q AND w = ? AND t = '10:30'"
        );
        assert_eq!(
            format!("{v:?}"),
            format!(
                "{:?}",
                [
                    Bind::Text(Some("A")),
                    Bind::Int(Some(7)),
                    Bind::Int(Some(7)),
                    Bind::Int(Some(1))
                ]
            )
        );
        let (sql, _) = bind_names("CAST(x AS TEXT)::jsonb >= :s", &p);
        assert_eq!(sql, "CAST(x AS TEXT)::jsonb >= ?");
        // `:p10` is not `:p1` followed by a 0.
        let (sql, v) = bind_names("a = :p10", &p);
        assert_eq!((sql.as_str(), v.len()), ("a = :p10", 0));
    }

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
