//! Black-box tests over HTTP against the real server and a real database, one file per
//! capability. Every test runs on SQLite and, when FIELDSYNC_TEST_PG_URL is set, PostgreSQL.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod auth;
mod checks;
mod cli;
mod definitions;
mod demo;
mod foundation;
mod report_indicators;
mod reports;
mod simulate;
mod spec;
mod supervise;
mod sync;
mod sync_boundaries;
mod web;
mod web_session;
