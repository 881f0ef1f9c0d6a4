//! Turns on the PostgreSQL integration tests when a test database URL is given, so that
//! `cargo test` without one lists them as ignored with the reason instead of passing silently.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(pg_tests)");
    println!("cargo::rerun-if-env-changed=FIELDSYNC_TEST_PG_URL");
    if std::env::var("FIELDSYNC_TEST_PG_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=pg_tests");
    }
}
