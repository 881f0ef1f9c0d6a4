//! The test kit every test crate includes (`#[path = "../common/mod.rs"] mod common;`): the
//! backends and the `both!` macro, fresh PostgreSQL databases, the one rule for tests whose
//! tools are missing, the in-process app spawner (`app`), the fixtures (`fixtures`: org unit
//! trees, users, sessions), the device op builders (`device`) and the spec check of recorded
//! answers (`spec_check`). A crate uses what it needs; the rest is allowed to be dead.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod device;
pub mod fixtures;
pub mod spec_check;

pub use app::*;
pub use device::*;
pub use fixtures::*;

use diesel::connection::SimpleConnection;
use diesel::Connection;

/// The database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both!(name, |backend| { ... })` makes `name::sqlite`
/// and `name::postgres`; the latter is ignored (with the reason shown) without
/// FIELDSYNC_TEST_PG_URL.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                let f: fn($crate::common::Backend) = $body;
                f($crate::common::Backend::Sqlite);
            }

            #[test]
            #[cfg_attr(
                not(pg_tests),
                ignore = "PostgreSQL tests skipped: set FIELDSYNC_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
            )]
            fn postgres() {
                let f: fn($crate::common::Backend) = $body;
                f($crate::common::Backend::Postgres);
            }
        }
    };
}

/// The maintenance database URL of the test PostgreSQL server (FIELDSYNC_TEST_PG_URL), if set.
pub fn pg_admin_url() -> Option<String> {
    std::env::var("FIELDSYNC_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// `admin` with its database name replaced by `name`.
pub fn pg_url_for(admin: &str, name: &str) -> String {
    let scheme_end = admin.find("://").expect("a URL") + 3;
    let i = admin[scheme_end..]
        .rfind('/')
        .map(|i| i + scheme_end)
        .expect(
            "FIELDSYNC_TEST_PG_URL must name a database, e.g. postgres://postgres@127.0.0.1:5432/postgres",
        );
    let rest = &admin[i + 1..];
    let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
    format!("{}/{name}{query}", &admin[..i])
}

/// Runs `sql` on the server of `admin` (a URL of its maintenance database).
pub fn pg_exec_at(admin: &str, sql: &str) -> Result<(), String> {
    let mut c = diesel::PgConnection::establish(admin).map_err(|e| e.to_string())?;
    c.batch_execute(sql).map_err(|e| e.to_string())
}

/// A new, empty PostgreSQL database on the test server: (its URL, admin URL, its name).
/// `prefix` names what made it (`fs_test`, `fs_faults`), for whoever looks at the server.
pub fn fresh_pg_database_named(prefix: &str) -> (String, String, String) {
    let admin = pg_admin_url().expect("FIELDSYNC_TEST_PG_URL is set for PostgreSQL tests");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    pg_exec_at(&admin, &format!("CREATE DATABASE {name}")).expect("create test database");
    (pg_url_for(&admin, &name), admin, name)
}

/// [`fresh_pg_database_named`] for the API tests.
pub fn fresh_pg_database() -> (String, String, String) {
    fresh_pg_database_named("fs_test")
}

pub fn drop_pg_database(admin: &str, name: &str) {
    let _ = pg_exec_at(
        admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
}

/// Whether the tests run under CI (`CI` set, and not empty or `false`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// The one rule for a test that cannot run on this machine (no Chromium or Playwright, no node,
/// no root for a tmpfs, no libfaketime, no private PostgreSQL cluster, no schemathesis, no
/// unsafe binary): under CI ([`under_ci`]) it fails with the reason, since CI must run every
/// test; elsewhere it prints a loud SKIPPED line and the test passes without having run (the
/// caller returns after it).
pub fn skip_or_fail(what: &str, why: &str) {
    if under_ci() {
        panic!("{what} cannot run, and CI must run it: {why}");
    }
    eprintln!("SKIPPED {what}: {why} (under CI this is a failure)");
}
