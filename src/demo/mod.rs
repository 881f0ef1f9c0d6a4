//! The demo county: deterministic from a seed, realistic enough to try every screen.
//!
//! `load` fills an empty database with county 130131 平山县: three townships, twelve villages
//! (six of them kept by villager group), about 780 households and 3,000 people, and their
//! ledgers (births, pregnancies, deaths, contraceptive measures, follow-up visits, migrations,
//! supplies, benefits). The content comes from [`generate`], a pure function of the seed; this
//! module only adds the server-owned columns and writes everything in one transaction.

pub mod generate;
pub mod names;

use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::db::records::{self, RecordRow, Stamps, VersionRow};
use crate::db::stmt::Stmt;
use crate::db::{now_micros, Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::AppResult;
use crate::orgunit;
use crate::sync::sequence::SeqAlloc;

pub use generate::{reference_date, COUNTY_CODE, COUNTY_NAME};

/// `created_by` and `updated_by` of every demo record: how a second load recognises them.
pub const DEMO_USER: &str = "demo";

/// Records written per statement pair (rows, versions), and per step of the progress bar.
const CHUNK: usize = 1_000;

/// Why nothing was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// The database already holds org units and the load was not forced.
    NotEmpty,
    /// The demo county is already there (loading it twice would duplicate it).
    AlreadyLoaded,
}

/// What a load did, with the count of each kind of record written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub loaded: bool,
    pub skipped: Option<Skipped>,
    pub seed: u64,
    pub org_units: usize,
    pub villages: usize,
    pub households: usize,
    pub persons: usize,
    pub pregnancies: usize,
    pub births: usize,
    /// Births dated 2025-01-01 or later (the rest are earlier children in the birth ledger).
    pub recent_births: usize,
    pub deaths: usize,
    pub measures: usize,
    pub visits: usize,
    pub migrations: usize,
    pub supplies: usize,
    pub benefits: usize,
    /// Change sequence numbers used: `first_change_seq..=last_change_seq`.
    pub first_change_seq: i64,
    pub last_change_seq: i64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.skipped {
            Some(Skipped::NotEmpty) => {
                return write!(f, "demo not loaded: the database already holds org units")
            }
            Some(Skipped::AlreadyLoaded) => {
                return write!(f, "demo not loaded: the demo county is already loaded")
            }
            None if !self.loaded => return write!(f, "demo not loaded"),
            None => {}
        }
        write!(
            f,
            "demo county {COUNTY_CODE} {COUNTY_NAME} loaded (seed {}, {:.1}s): {} org units \
             ({} villages), {} households, {} persons, {} births ({} in 2025-2026), {} pregnancies, \
             {} deaths, {} measures, {} visits, {} migrations, {} supplies, {} benefits; \
             change_seq {}..={}",
            self.seed,
            self.elapsed.as_secs_f64(),
            self.org_units,
            self.villages,
            self.households,
            self.persons,
            self.births,
            self.recent_births,
            self.pregnancies,
            self.deaths,
            self.measures,
            self.visits,
            self.migrations,
            self.supplies,
            self.benefits,
            self.first_change_seq,
            self.last_change_seq,
        )
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether the database holds any org unit, and whether it holds demo records.
fn existing(conn: &mut DbConn) -> AppResult<Option<Skipped>> {
    let units = orgunit::count(conn)?;
    if units == 0 {
        return Ok(None);
    }
    let rows: Vec<Count> = Stmt::new("SELECT COUNT(*) AS n FROM households WHERE created_by = ?")
        .text(DEMO_USER)
        .load_on(conn)?;
    let demo = rows.first().map_or(0, |r| r.n) > 0;
    Ok(Some(if demo {
        Skipped::AlreadyLoaded
    } else {
        Skipped::NotEmpty
    }))
}

/// Whether to skip: without `force`, any org unit stops the load; with it, only demo data.
fn skip(found: Option<Skipped>, force: bool) -> Option<Skipped> {
    match found {
        Some(Skipped::NotEmpty) if force => None,
        other => other,
    }
}

/// A progress bar that appears only on a terminal and only once the load has taken a second.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} records ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    fn step(&mut self, msg: &'static str, n: usize) {
        if !self.shown
            && self.started.elapsed() >= Duration::from_secs(1)
            && std::io::stderr().is_terminal()
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_message(msg);
        self.bar.inc(n as u64);
    }

    fn finish(self) {
        if self.shown {
            self.bar.finish_and_clear();
        }
    }
}

/// Loads the demo county generated from `seed`, unless the database already holds org units
/// (without `force`) or the demo county itself (in any case: a second load never duplicates it).
pub fn load(db: &Db, seed: u64, force: bool) -> AppResult<Summary> {
    let started = Instant::now();
    let not_loaded = |skipped| Summary {
        loaded: false,
        skipped: Some(skipped),
        seed,
        ..Summary::default()
    };
    if let Some(s) = skip(db.read(existing)?, force) {
        return Ok(not_loaded(s));
    }
    let generated = generate::generate(seed);
    let mut progress = Progress::new(generated.records.len() as u64);
    let result = db.write(|conn| {
        // Checked again under the change-number lock (the loader runs alone): another loader
        // may have won the race.
        let mut alloc = SeqAlloc::lock(conn)?;
        let last = alloc.last();
        if let Some(s) = skip(existing(conn)?, force) {
            return Ok(Err(s));
        }
        progress.step("org units", 0);
        orgunit::upsert(conn, &generated.org_units)?;
        let now = now_micros();
        let mut seq = last;
        let rows: Vec<RecordRow> = generated
            .records
            .iter()
            .map(|d| {
                seq += 1;
                let stamps: Stamps = d.fields.keys().map(|k| (k.clone(), now)).collect();
                RecordRow {
                    entity: d.entity,
                    id: d.id.clone(),
                    org_unit: d.org_unit.clone(),
                    version: 1,
                    change_seq: seq,
                    deleted: false,
                    merged_into: None,
                    fields: d.fields.clone(),
                    stamps,
                    created_at: now,
                    updated_at: now,
                    recorded_at: now,
                    created_by: DEMO_USER.into(),
                    updated_by: DEMO_USER.into(),
                    updated_device: None,
                }
            })
            .collect();
        for chunk in rows.chunks(CHUNK) {
            records::upsert(conn, chunk)?;
            let versions: Vec<VersionRow> = chunk
                .iter()
                .map(|row| VersionRow { row, op_id: None })
                .collect();
            records::insert_versions(conn, &versions)?;
            progress.step(chunk[0].entity.name(), chunk.len());
        }
        alloc.advance_to(seq);
        alloc.finish(conn)?;
        Ok(Ok((last + 1, seq)))
    });
    progress.finish();
    let (first_change_seq, last_change_seq) = match result? {
        Ok(range) => range,
        Err(s) => return Ok(not_loaded(s)),
    };
    if db.backend() == crate::db::Backend::Postgres {
        // A bulk load right before first use: take planner statistics now rather than when
        // autovacuum gets to it. Without them the county's report took about twice as long
        // (bench/analysis.md).
        db.write(|conn| {
            diesel::sql_query("ANALYZE").execute(conn)?;
            Ok(())
        })?;
    }
    let n = |e: Entity| generated.count(e);
    let recent = ymd_string(2025);
    Ok(Summary {
        loaded: true,
        skipped: None,
        seed,
        org_units: generated.org_units.len(),
        villages: generated.villages,
        households: n(Entity::Household),
        persons: n(Entity::Person),
        pregnancies: n(Entity::Pregnancy),
        births: n(Entity::Birth),
        recent_births: generated
            .records
            .iter()
            .filter(|r| r.entity == Entity::Birth)
            .filter(|r| {
                r.fields["birth_date"]
                    .as_str()
                    .is_some_and(|d| d >= recent.as_str())
            })
            .count(),
        deaths: n(Entity::Death),
        measures: n(Entity::Measure),
        visits: n(Entity::Visit),
        migrations: n(Entity::Migration),
        supplies: n(Entity::Supply),
        benefits: n(Entity::Benefit),
        first_change_seq,
        last_change_seq,
        elapsed: started.elapsed(),
    })
}

fn ymd_string(year: i32) -> String {
    format!("{year:04}-01-01")
}
