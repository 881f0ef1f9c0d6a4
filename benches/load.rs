//! The load harness (issue 7): the sync server in-process on SQLite and PostgreSQL, 20,000
//! preloaded persons, and real HTTP clients. Measures push throughput and latency, pulls idle and
//! under load, an initial pull, a day's-end storm, and the raw ceiling of the store; writes
//! `results/load-<backend>.json`. `bench/run` runs it and renders BENCHMARKS.md.
//!
//! `cargo bench --bench load -- [--backend sqlite|postgres|both] [--only push|pull|report] [--storm N]
//! [--out DIR]`; `--only push` writes `push-<backend>.json`, `--only pull` (the push stage, then the pulls) `pull-<backend>.json`, `--only report` (the preload, then
//! the report stage alone, no devices) `report-<backend>.json`; `--keep` (with `--only report`)
//! keeps the PostgreSQL database and copies the SQLite store to `<out>/report-sqlite.db`, to
//! profile the report's statements on it; `RUST_LOG=fieldsync::report=debug` logs each report
//! statement's time; PostgreSQL from FIELDSYNC_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use fieldsync::db::records::{self, Fields, RecordRow, Stamps, VersionRow};
use fieldsync::db::{now_micros, Backend, Db};
use fieldsync::demo::names::full_name;
use fieldsync::domain::entities::Entity;
use fieldsync::domain::resident_id;
use fieldsync::orgunit::{self, NewOrgUnit};
use fieldsync::report::report::Period;
use fieldsync::simulate::client::{Device, Held};
use fieldsync::simulate::server::{self, Spawned};
use fieldsync::simulate::verify::{self, Ack};
use fieldsync::simulate::work::{uuid_from, Collision};
use fieldsync::sync::protocol::OpStatus;
use fieldsync::sync::sequence::{SeqAlloc, Writers};

const PERSONS: usize = 20_000;
const BIG_VILLAGE: &str = "130131104201";
const BIG_VILLAGE_PERSONS: usize = 5_000;
const PUSH_DEVICES: usize = 40;
const OPS_PER_DEVICE: usize = 250;
const CLIENTS: usize = 8;
const PULL_REPEATS: usize = 40;
const REPORT_PERSONS: usize = 300_000;
/// The day's-end storm: every storm device syncs once within this window.
const STORM_WINDOW: Duration = Duration::from_secs(60);
/// Client threads of the paced storm: enough that a sync never waits for a free one.
const STORM_PACED_CLIENTS: usize = 128;
/// Client threads of the saturation run (the storm figure before the paced one).
const STORM_CLIENTS: usize = 32;

struct Args {
    backends: Vec<&'static str>,
    /// `--only push|pull|report`: that stage alone (pull: after the push stage it needs).
    only: Option<String>,
    keep: bool,
    storm: usize,
    out: String,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let backends = match value("--backend").as_deref() {
        Some("sqlite") => vec!["sqlite"],
        Some("postgres") => vec!["postgres"],
        _ => vec!["sqlite", "postgres"],
    };
    Args {
        backends,
        only: value("--only").filter(|s| ["push", "pull", "report"].contains(&s.as_str())),
        keep: argv.iter().any(|a| a == "--keep"),
        storm: value("--storm")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000),
        out: value("--out").unwrap_or_else(|| "results".into()),
    }
}

impl Args {
    fn only(&self, stage: &str) -> bool {
        self.only.as_deref() == Some(stage)
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// p50, p95, p99 and max in milliseconds.
fn percentiles(mut v: Vec<Duration>) -> Value {
    v.sort();
    let p = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        ms(v[i])
    };
    json!({"n": v.len(), "p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0)})
}

/// A `/proc/<process>/status` field in kB (`process`: `self` or a pid).
fn vm_of(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets a process's peak RSS (VmHWM) so that the next reading covers only what follows.
fn reset_peak_rss_of(process: &str) -> bool {
    std::fs::write(format!("/proc/{process}/clear_refs"), "5").is_ok()
}

fn vm(field: &str) -> Option<u64> {
    vm_of("self", field)
}

fn reset_peak_rss() -> bool {
    reset_peak_rss_of("self")
}

/// Returns freed heap pages to the OS (glibc), so that RSS shows what is in use.
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only releases free memory; it takes no pointers.
    unsafe {
        malloc_trim(0);
    }
}

/// Runs `f(i)` for every i in 0..n on `threads` threads.
fn parallel(n: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i);
            });
        }
    });
}

struct Pg {
    admin: String,
    name: String,
    keep: bool,
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept PostgreSQL database {}", self.name);
            return;
        }
        if let Ok(mut c) = diesel::PgConnection::establish(&self.admin) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn start(backend: &str, keep: bool) -> anyhow::Result<(Spawned, Option<Pg>)> {
    let (url, pg) = if backend == "postgres" {
        let admin = std::env::var("FIELDSYNC_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "fs_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut c = diesel::PgConnection::establish(&admin).context("connect to PostgreSQL")?;
        c.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let i = admin
            .rfind('/')
            .context("the PostgreSQL URL names a database")?;
        (
            Some(format!("{}/{name}", &admin[..i])),
            Some(Pg { admin, name, keep }),
        )
    } else {
        (None, None)
    };
    let (settings, dir) = server::settings_for(url.as_deref())?;
    Ok((Spawned::start(settings, Some(dir))?, pg))
}

/// A person's fields as the preload and the devices write them.
fn person_fields(rng: &mut ChaCha8Rng, used: &mut HashSet<String>, region: &str) -> Fields {
    let male = rng.gen_bool(0.5);
    let birth = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).expect("date")
        + chrono::Duration::days(rng.gen_range(0..25_000));
    let number = loop {
        let n = resident_id::generate(region, birth, rng.gen_range(0..=999), male);
        if used.insert(n[..17].to_string()) {
            break n;
        }
    };
    let mut f = Fields::new();
    f.insert("name".into(), json!(full_name(rng, male)));
    f.insert("sex".into(), json!(if male { "male" } else { "female" }));
    f.insert(
        "birth_date".into(),
        json!(birth.format("%Y-%m-%d").to_string()),
    );
    f.insert("id_number".into(), json!(number));
    f.insert("marital_status".into(), json!("first_marriage"));
    f.insert("residence".into(), json!("resident"));
    f.insert(
        "phone".into(),
        json!(format!("139{:08}", rng.gen_range(0..100_000_000u32))),
    );
    f
}

/// Writes `n` persons into `village` straight into the store, 1,000 per transaction.
fn preload(
    db: &Db,
    village: &str,
    n: usize,
    rng: &mut ChaCha8Rng,
    used: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let now = now_micros();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let drafts: Vec<(String, Fields)> = (0..k)
            .map(|_| (uuid_from(rng), person_fields(rng, used, "130127")))
            .collect();
        db.write(|c| {
            let mut alloc = SeqAlloc::lock(c)?;
            let rows: Vec<RecordRow> = drafts
                .iter()
                .map(|(id, fields)| RecordRow {
                    entity: Entity::Person,
                    id: id.clone(),
                    org_unit: village.to_string(),
                    version: 1,
                    change_seq: alloc.alloc(),
                    deleted: false,
                    merged_into: None,
                    stamps: fields.keys().map(|k| (k.clone(), now)).collect::<Stamps>(),
                    fields: fields.clone(),
                    created_at: now,
                    updated_at: now,
                    recorded_at: now,
                    created_by: "bench".into(),
                    updated_by: "bench".into(),
                    updated_device: None,
                })
                .collect();
            records::upsert(c, &rows)?;
            let versions: Vec<VersionRow> = rows
                .iter()
                .map(|row| VersionRow { row, op_id: None })
                .collect();
            records::insert_versions(c, &versions)?;
            alloc.finish(c)
        })
        .map_err(|e| anyhow!("preload: {e}"))?;
        left -= k;
    }
    Ok(())
}

fn register_all(base: &str, prefix: &str, n: usize, password: &str) -> anyhow::Result<Vec<Device>> {
    let slots: Vec<Mutex<Option<Device>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let errors = Mutex::new(Vec::new());
    parallel(n, 4, |i| {
        match Device::register(base, &format!("{prefix}{i}"), password) {
            Ok(d) => *slots[i].lock().expect("lock") = Some(d),
            Err(e) => errors.lock().expect("lock").push(e.to_string()),
        }
    });
    if let Some(e) = errors.into_inner().expect("lock").first() {
        anyhow::bail!("register: {e}");
    }
    Ok(slots
        .into_iter()
        .map(|s| s.into_inner().expect("lock").expect("registered"))
        .collect())
}

fn op(
    seq: i64,
    rng: &mut ChaCha8Rng,
    entity: &str,
    id: &str,
    kind: &str,
    base: Option<i64>,
    set: Value,
) -> Value {
    let mut o = json!({"seq": seq, "op_id": uuid_from(rng), "entity": entity, "id": id, "kind": kind,
                       "set": set, "recorded_at": chrono::Utc::now().to_rfc3339()});
    if let Some(b) = base {
        o["base_version"] = json!(b);
    }
    o
}

fn slot_of(id: &str, peers: usize) -> usize {
    id.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) as usize
        % peers.max(1)
}

/// One batch per device: 60% creates, 35% updates (5% of them in colliding pairs between two
/// devices of a village), 5% deletes; the colliding pairs, one conflict each.
fn plan_batches(
    devices: &[Device],
    villages: &[String],
    rng: &mut ChaCha8Rng,
    used: &mut HashSet<String>,
) -> (Vec<Vec<Value>>, Vec<Collision>) {
    let n = devices.len();
    let village_of = |i: usize| &villages[i % villages.len()];
    let peers_of = |i: usize| {
        (0..n)
            .filter(|j| village_of(*j) == village_of(i))
            .collect::<Vec<_>>()
    };
    let creates = OPS_PER_DEVICE * 60 / 100;
    let deletes = OPS_PER_DEVICE * 5 / 100;
    let updates = OPS_PER_DEVICE - creates - deletes;
    let mut batches: Vec<Vec<Value>> = vec![Vec::new(); n];
    let mut seqs: Vec<i64> = devices.iter().map(|d| d.next_seq).collect();
    let mut touched: HashSet<String> = HashSet::new();
    let mut collisions = Vec::new();
    let mut extra_updates = vec![0usize; n];
    for i in 0..n {
        let peers = peers_of(i);
        let slot = peers.iter().position(|p| *p == i).expect("in its village");
        let d = &devices[i];
        let persons: Vec<(&String, &Held)> = d
            .replica
            .iter()
            .filter(|(_, h)| h.entity == "person")
            .collect();
        let mut mine: Vec<(&String, &Held)> = persons
            .iter()
            .filter(|(id, _)| slot_of(id, peers.len()) == slot && !touched.contains(*id))
            .cloned()
            .collect();
        mine.shuffle(rng);
        let mut ops = Vec::with_capacity(OPS_PER_DEVICE);
        let next = |seqs: &mut Vec<i64>, k: usize| {
            let s = seqs[k];
            seqs[k] += 1;
            s
        };
        for c in 0..creates {
            let id = uuid_from(rng);
            if c % 2 == 0 {
                let mut set: serde_json::Map<String, Value> =
                    person_fields(rng, used, "130126").into_iter().collect();
                set.insert("org_unit".into(), json!(village_of(i)));
                let s = next(&mut seqs, i);
                ops.push(op(
                    s,
                    rng,
                    "person",
                    &id,
                    "create",
                    None,
                    Value::Object(set),
                ));
            } else {
                let (pid, _) = persons[rng.gen_range(0..persons.len())];
                let s = next(&mut seqs, i);
                ops.push(op(
                    s,
                    rng,
                    "visit",
                    &id,
                    "create",
                    None,
                    json!({"org_unit": village_of(i), "person_id": pid,
                    "kind": "contraceptive", "visit_date": "2026-11-20", "findings": "情况正常"}),
                ));
            }
        }
        let own_updates = updates.saturating_sub(extra_updates[i]);
        // Devices without a later partner in their village initiate none, hence 3 rather than 2.
        let pairs = ((updates as f64) * 0.05 * 0.75).round() as usize;
        let partners: Vec<usize> = peers.iter().copied().filter(|p| *p > i).collect();
        for u in 0..own_updates {
            let Some((id, h)) = mine.pop() else { break };
            touched.insert(id.clone());
            let field = ["phone", "notes", "marital_status"][(u + i) % 3];
            let value = |tag: &str| match field {
                "phone" => json!(format!("13{tag}{:08}", u)),
                "notes" => json!(format!("核实 {tag} {u}")),
                _ => json!(if tag == "7" { "divorced" } else { "widowed" }),
            };
            let s = next(&mut seqs, i);
            ops.push(op(
                s,
                rng,
                "person",
                id,
                "update",
                Some(h.version),
                json!({ field: value("7") }),
            ));
            // The first `pairs` updates collide with a later device of the village.
            if u < pairs {
                if let Some(&b) = partners.get(u % partners.len().max(1)) {
                    if devices[b]
                        .replica
                        .get(id.as_str())
                        .is_some_and(|bh| bh.version == h.version)
                    {
                        let s = next(&mut seqs, b);
                        batches[b].push(op(
                            s,
                            rng,
                            "person",
                            id,
                            "update",
                            Some(h.version),
                            json!({ field: value("8") }),
                        ));
                        extra_updates[b] += 1;
                        collisions.push(Collision {
                            entity: "person".into(),
                            record_id: id.clone(),
                            expect_status: if field == "marital_status" {
                                "open"
                            } else {
                                "closed"
                            },
                            devices: (i, b),
                        });
                    }
                }
            }
        }
        for _ in 0..deletes {
            let Some((id, h)) = mine.pop() else { break };
            touched.insert(id.clone());
            let s = next(&mut seqs, i);
            ops.push(op(
                s,
                rng,
                "person",
                id,
                "delete",
                Some(h.version),
                json!({}),
            ));
        }
        // Partner ops planned by earlier devices come first: their seqs are lower.
        let mut all = std::mem::take(&mut batches[i]);
        all.extend(ops);
        all.sort_by_key(|o| o["seq"].as_i64());
        batches[i] = all;
    }
    (batches, collisions)
}

struct PushRun {
    wall: Duration,
    latencies: Vec<Duration>,
    acks: Vec<Ack>,
    errors: Vec<String>,
}

fn push_all(devices: &[Device], batches: &[Vec<Value>], clients: usize) -> PushRun {
    let latencies = Mutex::new(Vec::new());
    let acks = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let t = Instant::now();
    parallel(devices.len(), clients, |i| {
        match devices[i].push(&batches[i]) {
            Ok((resp, took)) => {
                latencies.lock().expect("lock").push(took);
                if resp.results.len() != batches[i].len() {
                    errors.lock().expect("lock").push(format!(
                        "device {i}: {} of {} ops answered",
                        resp.results.len(),
                        batches[i].len()
                    ));
                }
                let mut a = acks.lock().expect("lock");
                for (r, o) in resp.results.into_iter().zip(&batches[i]) {
                    a.push(Ack {
                        device_id: devices[i].device_id.clone(),
                        op: o.clone(),
                        result: r,
                    });
                }
            }
            Err(e) => errors.lock().expect("lock").push(e.to_string()),
        }
    });
    PushRun {
        wall: t.elapsed(),
        latencies: latencies.into_inner().expect("lock"),
        acks: acks.into_inner().expect("lock"),
        errors: errors.into_inner().expect("lock"),
    }
}

/// Times full pulls (every page) of `d` from `cursor`; returns the latencies and records per pull.
fn time_pulls(d: &Device, cursor: i64, repeats: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut out = Vec::with_capacity(repeats);
    let mut records = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        let mut c = cursor;
        records = 0;
        loop {
            let (r, _) = d.pull_page(c).map_err(|e| anyhow!("{e}"))?;
            records += r.records.len();
            c = r.next_cursor;
            if !r.has_more {
                break;
            }
        }
        out.push(t.elapsed());
    }
    Ok((out, records))
}

/// What one storm round measured.
struct StormRound {
    wall: Duration,
    latencies: Vec<Duration>,
    /// How late each sync started after its scheduled time (paced rounds).
    lags: Vec<Duration>,
    errors: Vec<String>,
}

/// Every storm device pushes `batches[i][round]` and then pulls what changed since it last
/// synced, on `clients` threads: at the scheduled `arrivals` (latency counted from the scheduled
/// time) or, without them, back to back. A synced phone hangs up: its connection is closed, so
/// that the server's peak is the server's work rather than idle connections.
fn storm_round(
    slots: &[Mutex<Device>],
    batches: &[[Vec<Value>; 2]],
    round: usize,
    arrivals: Option<&[Duration]>,
    clients: usize,
) -> StormRound {
    let (lat, lags, errors) = (
        Mutex::new(Vec::new()),
        Mutex::new(Vec::new()),
        Mutex::new(Vec::new()),
    );
    let t0 = Instant::now();
    parallel(slots.len(), clients, |i| {
        let mut d = slots[i].lock().expect("lock");
        let start = match arrivals {
            Some(a) => {
                let due = t0 + a[i];
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                lags.lock()
                    .expect("lock")
                    .push(Instant::now().saturating_duration_since(due));
                due
            }
            None => Instant::now(),
        };
        let r = d
            .push(&batches[i][round])
            .map_err(|e| e.to_string())
            .and_then(|(resp, _)| {
                if resp.results.iter().all(|r| r.status == OpStatus::Applied)
                    && resp.results.len() == 20
                {
                    Ok(())
                } else {
                    Err(format!("push answered {} results", resp.results.len()))
                }
            });
        let r = r.and_then(|_| d.pull_all().map_err(|e| e.to_string()));
        let took = start.elapsed();
        d.hang_up();
        match r {
            Ok(_) => lat.lock().expect("lock").push(took),
            Err(e) => errors.lock().expect("lock").push(e),
        }
    });
    StormRound {
        wall: t0.elapsed(),
        latencies: lat.into_inner().expect("lock"),
        lags: lags.into_inner().expect("lock"),
        errors: errors.into_inner().expect("lock"),
    }
}

/// Where a device that starts pulling now begins: the store's horizon (`sync::sequence`).
fn last_change_seq(db: &Db) -> anyhow::Result<i64> {
    Ok(fieldsync::sync::sequence::current(db)?.upto)
}

/// The raw ceiling: the push benchmark's mix of rows written straight through diesel, one
/// transaction per 250 ops with a version check on every update and delete, 8 threads.
fn raw_ceiling(
    db: &Db,
    village: &str,
    rng: &mut ChaCha8Rng,
    used: &mut HashSet<String>,
) -> anyhow::Result<Value> {
    let targets: Vec<RecordRow> = db
        .read(|c| {
            let snap = verify::scope_snapshot(c, village)?;
            let ids: Vec<&str> = snap
                .iter()
                .filter(|(_, h)| h.entity == "person")
                .map(|(id, _)| id.as_str())
                .collect();
            records::load(c, Entity::Person, &ids)
        })
        .map_err(|e| anyhow!("{e}"))?;
    let per_tx_updates = OPS_PER_DEVICE * 40 / 100;
    let txs = (targets.len() / per_tx_updates).min(PUSH_DEVICES);
    let mut plans = Vec::new();
    for t in 0..txs {
        let creates: Vec<(String, Fields)> = (0..OPS_PER_DEVICE * 60 / 100)
            .map(|_| (uuid_from(rng), person_fields(rng, used, "130128")))
            .collect();
        let changes: Vec<(String, i64)> = targets[t * per_tx_updates..(t + 1) * per_tx_updates]
            .iter()
            .map(|r| (r.id.clone(), r.version))
            .collect();
        plans.push((creates, changes));
    }
    let mismatches = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let village = village.to_string();
    let t0 = Instant::now();
    parallel(plans.len(), CLIENTS, |k| {
        let (creates, changes) = &plans[k];
        let r = db.write(|c| {
            // Beside each other, as pushes are (on PostgreSQL; each transaction touches its own
            // records, so none needs the push's key locks).
            let mut alloc = SeqAlloc::lock_as(c, Writers::Beside)?;
            let now = now_micros();
            let ids: Vec<&str> = changes.iter().map(|(id, _)| id.as_str()).collect();
            let current: BTreeMap<String, RecordRow> = records::load(c, Entity::Person, &ids)?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
            let mut rows = Vec::with_capacity(OPS_PER_DEVICE);
            for (id, fields) in creates {
                rows.push(RecordRow {
                    entity: Entity::Person,
                    id: id.clone(),
                    org_unit: village.clone(),
                    version: 1,
                    change_seq: alloc.alloc(),
                    deleted: false,
                    merged_into: None,
                    stamps: fields.keys().map(|k| (k.clone(), now)).collect(),
                    fields: fields.clone(),
                    created_at: now,
                    updated_at: now,
                    recorded_at: now,
                    created_by: "raw".into(),
                    updated_by: "raw".into(),
                    updated_device: None,
                });
            }
            for (n, (id, version)) in changes.iter().enumerate() {
                let Some(cur) = current.get(id) else { continue };
                if cur.version != *version {
                    mismatches.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut row = cur.clone();
                row.version += 1;
                row.change_seq = alloc.alloc();
                row.updated_at = now;
                if n % 8 == 0 {
                    row.deleted = true;
                } else {
                    row.fields
                        .insert("phone".into(), json!(format!("137{n:08}")));
                    row.stamps.insert("phone".into(), now);
                }
                rows.push(row);
            }
            records::upsert(c, &rows)?;
            let versions: Vec<VersionRow> = rows
                .iter()
                .map(|row| VersionRow { row, op_id: None })
                .collect();
            records::insert_versions(c, &versions)?;
            alloc.finish(c)
        });
        if let Err(e) = r {
            failed.lock().expect("lock").push(e.to_string());
        }
    });
    let wall = t0.elapsed();
    let ops = plans.len() * OPS_PER_DEVICE;
    Ok(json!({
        "transactions": plans.len(), "ops": ops, "threads": CLIENTS, "wall_ms": ms(wall),
        "ops_per_s": (ops as f64 / wall.as_secs_f64()).round(),
        "version_mismatches": mismatches.load(Ordering::Relaxed), "errors": failed.into_inner().expect("lock"),
    }))
}

fn run_backend(backend: &'static str, a: &Args) -> anyhow::Result<Value> {
    let t_all = Instant::now();
    eprintln!("[{backend}] setup");
    let (app, _pg) = start(backend, a.keep)?;
    let db = app.db.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut used = HashSet::new();
    let t = Instant::now();
    fieldsync::demo::load(&db, 2026, true).map_err(|e| anyhow!("demo: {e}"))?;
    db.write(|c| {
        orgunit::upsert(
            c,
            &[
                NewOrgUnit {
                    code: "130131104".into(),
                    name: "岗南镇".into(),
                    parent: Some("130131".into()),
                },
                NewOrgUnit {
                    code: BIG_VILLAGE.into(),
                    name: "大村".into(),
                    parent: Some("130131104".into()),
                },
            ],
        )
    })
    .map_err(|e| anyhow!("{e}"))?;
    let villages: Vec<String> = server::demo_villages(&db)?
        .into_iter()
        .filter(|v| v != BIG_VILLAGE)
        .collect();
    let demo_persons = fieldsync::demo::generate::generate(2026).count(Entity::Person);
    let spread = (PERSONS - BIG_VILLAGE_PERSONS).saturating_sub(demo_persons);
    for (k, v) in villages.iter().enumerate() {
        let n = spread / villages.len() + usize::from(k < spread % villages.len());
        preload(&db, v, n, &mut rng, &mut used)?;
    }
    preload(&db, BIG_VILLAGE, BIG_VILLAGE_PERSONS, &mut rng, &mut used)?;
    let preload_ms = ms(t.elapsed());
    let live = verify::live_count(&db).map_err(|e| anyhow!("{e}"))?;

    if a.only("report") {
        let report = report_stage(&db, &villages, &mut rng, &mut used)?;
        eprintln!("[{backend}] report: {report}");
        if a.keep && backend == "sqlite" {
            let path = std::path::absolute(format!("{}/report-sqlite.db", a.out))?;
            let _ = std::fs::remove_file(&path);
            // Outside a transaction: VACUUM cannot run inside one.
            let mut c = db.conn().map_err(|e| anyhow!("{e}"))?;
            diesel::sql_query(format!("VACUUM INTO '{}'", path.display())).execute(&mut *c)?;
            eprintln!("kept the SQLite store as {}", path.display());
        }
        drop(app);
        return Ok(json!({
            "backend": backend,
            "preload": {"persons": PERSONS, "big_village_persons": BIG_VILLAGE_PERSONS, "live_records": live, "wall_ms": preload_ms},
            "report": report,
            "elapsed_s": t_all.elapsed().as_secs(),
        }));
    }

    // Accounts: the 40 pushing devices, one reader per village, the big village's reader, the storm.
    let storm_n = if a.only.is_some() { 0 } else { a.storm };
    let push_villages: Vec<String> = (0..PUSH_DEVICES)
        .map(|i| villages[i % villages.len()].clone())
        .collect();
    let mut all_villages = push_villages.clone();
    // The big village has no pushing device: the writer of the 500-change pull test, its
    // reader, and the initial pull's reader.
    all_villages.push(BIG_VILLAGE.to_string());
    all_villages.push(BIG_VILLAGE.to_string());
    all_villages.push(BIG_VILLAGE.to_string());
    let storm_villages: Vec<String> = (0..storm_n)
        .map(|i| villages[i % villages.len()].clone())
        .collect();
    all_villages.extend(storm_villages.iter().cloned());
    let password = server::create_workers(&db, "bench", &all_villages)?;
    let t = Instant::now();
    let mut devices = register_all(&app.base, "bench", all_villages.len(), &password)?;
    let register = json!({"devices": devices.len(), "wall_ms": ms(t.elapsed()),
                          "note": "login (argon2id) + device registration per device, 4 at a time"});
    let storm_devices = devices.split_off(PUSH_DEVICES + 3);
    let mut big_reader = devices.pop().expect("big village reader");
    let mut reader = devices.pop().expect("reader");
    let mut writer = devices.pop().expect("writer");
    let mut pushers = devices;
    eprintln!(
        "[{backend}] {live} live records, {} devices registered",
        all_villages.len()
    );

    // Push throughput and latency.
    for d in pushers.iter_mut() {
        d.pull_all().map_err(|e| anyhow!("{e}"))?;
    }
    let (batches, collisions) = plan_batches(&pushers, &villages, &mut rng, &mut used);
    let ops: usize = batches.iter().map(Vec::len).sum();
    eprintln!(
        "[{backend}] push: {ops} ops from {} devices, {CLIENTS} clients",
        pushers.len()
    );
    if backend == "sqlite" {
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = push_all(&pushers, &batches, CLIENTS);
    let ids: Vec<String> = pushers.iter().map(|d| d.device_id.clone()).collect();
    let acked = verify::acknowledged(&db, &run.acks, &ids).map_err(|e| anyhow!("{e}"))?;
    let (conf, counts) = verify::conflicts(&db, &ids, &collisions).map_err(|e| anyhow!("{e}"))?;
    let applied = run
        .acks
        .iter()
        .filter(|a| a.result.status == OpStatus::Applied)
        .count();
    let push = json!({
        "devices": pushers.len(), "ops": ops, "ops_per_device": OPS_PER_DEVICE, "clients": CLIENTS,
        "villages": villages.len(),
        "mix": "60% creates (persons, visits), 35% updates of persons, 5% deletes",
        "wall_ms": ms(run.wall), "ops_per_s": (ops as f64 / run.wall.as_secs_f64()).round(),
        "batch_latency": percentiles(run.latencies.clone()),
        "applied": applied, "errors": run.errors,
        "conflicting_pairs": collisions.len(),
        "conflicts_found": counts[2] + counts[3], "conflicts_check": conf.detail, "conflicts_ok": conf.passed,
        "lost_updates": acked.problems, "acknowledged_check": acked.detail,
    });
    eprintln!("[{backend}] push: {push}");
    if a.only("push") {
        return Ok(json!({"backend": backend, "push": push}));
    }

    // Pull of one village's ~500 changes, idle and under load.
    writer.pull_all().map_err(|e| anyhow!("{e}"))?;
    reader.pull_all().map_err(|e| anyhow!("{e}"))?;
    let from = reader.cursor;
    let mut seq = writer.next_seq;
    let targets: Vec<(String, i64)> = writer
        .replica
        .iter()
        .filter(|(_, h)| h.entity == "person")
        .take(500)
        .map(|(id, h)| (id.clone(), h.version))
        .collect();
    let changes: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(n, (id, v))| {
            seq += 1;
            op(
                seq - 1,
                &mut rng,
                "person",
                id,
                "update",
                Some(*v),
                json!({"notes": format!("季度核查 {n}")}),
            )
        })
        .collect();
    writer.push(&changes).map_err(|e| anyhow!("{e}"))?;
    let (idle, village_records) = time_pulls(&reader, from, PULL_REPEATS)?;
    // Under load: a second round of pushes (fresh ops from the same devices, into the other
    // villages) while pulling.
    for (d, b) in pushers.iter_mut().zip(&batches) {
        d.next_seq += b.len() as i64;
        d.pull_all().map_err(|e| anyhow!("{e}"))?;
    }
    let (batches2, _) = plan_batches(&pushers, &villages, &mut rng, &mut used);
    let done = AtomicBool::new(false);
    let (loaded, load_push) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = push_all(&pushers, &batches2, CLIENTS);
            done.store(true, Ordering::Relaxed);
            r
        });
        let mut lat = Vec::new();
        while !done.load(Ordering::Relaxed) {
            match time_pulls(&reader, from, 1) {
                Ok((l, _)) => lat.extend(l),
                Err(_) => break,
            }
        }
        (lat, h.join().expect("push thread"))
    });
    let pull = json!({
        "village_records": village_records, "page_size": 500,
        "idle": percentiles(idle), "under_load": percentiles(loaded),
        "load": format!("{} ops pushed by {} devices, {CLIENTS} clients, during the pulls ({:.0} ops/s)",
                        batches2.iter().map(Vec::len).sum::<usize>(), pushers.len(),
                        batches2.iter().map(Vec::len).sum::<usize>() as f64 / load_push.wall.as_secs_f64()),
    });
    eprintln!("[{backend}] pull: {pull}");
    let (initial, big_records) = time_pulls(&big_reader, 0, 10)?;
    big_reader.cursor = 0;
    let initial_pull = json!({"records": big_records, "page_size": 500, "pages": big_records.div_ceil(500),
                              "full_pull": percentiles(initial)});
    eprintln!("[{backend}] initial pull: {initial_pull}");
    if a.only("pull") {
        return Ok(
            json!({"backend": backend, "push": push, "pull": pull, "initial_pull": initial_pull}),
        );
    }

    // Raw ceiling.
    let raw = raw_ceiling(&db, &villages[1], &mut rng, &mut used)?;
    eprintln!("[{backend}] raw: {raw}");

    // Day's-end storm: every storm device pushes 20 ops then pulls what changed since it last synced.
    let storm = if storm_devices.is_empty() {
        Value::Null
    } else {
        let mut storm_devices = storm_devices;
        let cursor = last_change_seq(&db)?;
        let persons: BTreeMap<String, Vec<String>> = villages
            .iter()
            .map(|v| {
                let ids = db
                    .read(|c| verify::scope_snapshot(c, v))
                    .map(|s| {
                        s.into_iter()
                            .filter(|(_, h)| h.entity == "person")
                            .map(|(id, _)| id)
                            .take(200)
                            .collect()
                    })
                    .unwrap_or_default();
                (v.clone(), ids)
            })
            .collect();
        // Two rounds of 20 visits per device: the arrival-paced storm, then the saturation run.
        let storm_batches: Vec<[Vec<Value>; 2]> = storm_devices
            .iter_mut()
            .zip(&storm_villages)
            .map(|(d, v)| {
                d.cursor = cursor;
                let mut round = |first: i64| {
                    (0..20)
                        .map(|k| {
                            let pid = &persons[v][rng.gen_range(0..persons[v].len())];
                            let id = uuid_from(&mut rng);
                            op(first + k, &mut rng, "visit", &id, "create", None, json!({"org_unit": v, "person_id": pid,
                               "kind": "iud_check", "visit_date": "2026-11-22", "findings": "环位正常"}))
                        })
                        .collect::<Vec<Value>>()
                };
                [round(1), round(21)]
            })
            .collect();
        // The storm: the devices arrive within `STORM_WINDOW` at random (uniform) times,
        // each sorted arrival time being its scheduled start whether or not the server has
        // answered the ones before (an open loop, as phones are).
        let mut arrivals: Vec<Duration> = (0..storm_devices.len())
            .map(|_| STORM_WINDOW.mul_f64(rng.gen::<f64>()))
            .collect();
        arrivals.sort();
        // Only the server's state should count: drop the other devices' replicas and hand
        // freed heap back to the OS before the peak is reset.
        drop((
            pushers, writer, reader, big_reader, batches, batches2, run, load_push, changes,
        ));
        trim_heap();
        let server = ServerProcess::spawn(&app.settings)?;
        for d in storm_devices.iter_mut() {
            d.base = server.base.clone();
        }
        let server_rss_before = server.vm("VmRSS:");
        let rss_reset = reset_peak_rss();
        let rss_before = vm("VmRSS:");
        let slots: Vec<Mutex<Device>> = storm_devices.into_iter().map(Mutex::new).collect();
        let paced = storm_round(
            &slots,
            &storm_batches,
            0,
            Some(&arrivals),
            STORM_PACED_CLIENTS,
        );
        let paced_peak = server.vm("VmHWM:");
        // What the server holds now, split: its own heap (anonymous) and the pages of files it
        // maps (SQLite's readers map the database: the kernel's file cache, shared).
        let paced_now = (server.vm("RssAnon:"), server.vm("RssFile:"));
        let saturation_reset = server.reset_peak();
        let saturation = storm_round(&slots, &storm_batches, 1, None, STORM_CLIENTS);
        let saturation_peak = server.vm("VmHWM:");
        let saturation_now = (server.vm("RssAnon:"), server.vm("RssFile:"));
        drop(server);
        let (paced_errors, saturation_errors) = (paced.errors.len(), saturation.errors.len());
        json!({
            "devices": slots.len(), "ops_per_device": 20,
            "window_s": STORM_WINDOW.as_secs(), "clients": STORM_PACED_CLIENTS, "wall_ms": ms(paced.wall),
            "arrivals": "uniform random times in the window (seeded), sorted; each sync starts at its time on a free client thread; latency from the scheduled start to the pull's end, so a late start counts",
            "start_lag": percentiles(paced.lags),
            "syncs_per_s": (slots.len() as f64 / paced.wall.as_secs_f64() * 10.0).round() / 10.0,
            "sync_latency": percentiles(paced.latencies),
            "errors": paced_errors, "first_errors": paced.errors.iter().take(3).collect::<Vec<_>>(),
            "peak_rss_mb": paced_peak.map(|k| k / 1024),
            "rss_anon_mb_after": paced_now.0.map(|k| k / 1024), "rss_file_mb_after": paced_now.1.map(|k| k / 1024),
            "server_rss_before_mb": server_rss_before.map(|k| k / 1024),
            "saturation": {
                "note": "the same devices sync again (20 more visits each, then a pull), 32 clients back to back: the server's capacity, not the issue's arrival rate",
                "clients": STORM_CLIENTS, "wall_ms": ms(saturation.wall),
                "syncs_per_s": (slots.len() as f64 / saturation.wall.as_secs_f64() * 10.0).round() / 10.0,
                "sync_latency": percentiles(saturation.latencies),
                "errors": saturation_errors, "first_errors": saturation.errors.iter().take(3).collect::<Vec<_>>(),
                "peak_rss_mb": saturation_peak.map(|k| k / 1024), "peak_reset": saturation_reset,
                "rss_anon_mb_after": saturation_now.0.map(|k| k / 1024), "rss_file_mb_after": saturation_now.1.map(|k| k / 1024),
            },
            "bench_process_peak_rss_mb": vm("VmHWM:").map(|k| k / 1024), "bench_rss_before_mb": rss_before.map(|k| k / 1024),
            "bench_peak_rss_reset": rss_reset,
            "rss_note": "peak RSS (VmHWM) of the server alone: for the storm the server runs as its own process (this harness binary again, serving the same database), started just before it; PostgreSQL's own memory is not included. bench_process_peak_rss_mb: the harness process (clients, the idle in-process server)",
        })
    };
    eprintln!("[{backend}] storm: {storm}");

    let report = if a.only("push") {
        Value::Null
    } else {
        report_stage(&db, &villages, &mut rng, &mut used)?
    };
    eprintln!("[{backend}] report: {report}");
    drop(app);
    Ok(json!({
        "backend": backend,
        "preload": {"persons": PERSONS, "big_village_persons": BIG_VILLAGE_PERSONS, "live_records": live, "wall_ms": preload_ms},
        "register": register, "push": push, "pull": pull, "initial_pull": initial_pull,
        "raw_ceiling": raw, "storm": storm,
        "report": report,
        "elapsed_s": t_all.elapsed().as_secs(),
    }))
}

/// The monthly report of a county of 300,000 persons (the county is first filled up to that
/// many), its breakdown by township and a township's breakdown by village, five times each.
fn report_stage(
    db: &Db,
    villages: &[String],
    rng: &mut ChaCha8Rng,
    used: &mut HashSet<String>,
) -> anyhow::Result<Value> {
    let t = Instant::now();
    let have = verify::live_count(db).map_err(|e| anyhow!("{e}"))?;
    let extra = REPORT_PERSONS.saturating_sub(PERSONS);
    for (k, v) in villages.iter().enumerate() {
        let n = extra / villages.len() + usize::from(k < extra % villages.len());
        preload(db, v, n, rng, used)?;
    }
    let preload_ms = ms(t.elapsed());
    // A county database in service has planner statistics (autovacuum's ANALYZE); this test
    // server runs with autovacuum off, so take them once after the bulk load, as it would.
    let analyzed = db.backend() == Backend::Postgres;
    if analyzed {
        db.write(|c| {
            diesel::sql_query("ANALYZE").execute(c)?;
            Ok(())
        })
        .map_err(|e| anyhow!("{e}"))?;
    }
    let period = Period::parse_month("2026-10").map_err(|e| anyhow!(e))?;
    let county = db
        .read(|c| orgunit::get(c, fieldsync::demo::COUNTY_CODE))
        .map_err(|e| anyhow!("{e}"))?
        .context("the county exists")?;
    let township = db
        .read(|c| orgunit::get(c, "130131102"))
        .map_err(|e| anyhow!("{e}"))?
        .context("the township exists")?;
    let mut county_t = Vec::new();
    let mut breakdown_t = Vec::new();
    let mut township_t = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        db.read_split(|c, s| {
            fieldsync::report::report::report(c, s, &county, &period, Default::default())
        })
        .map_err(|e| anyhow!("{e}"))?;
        county_t.push(t.elapsed());
        let t = Instant::now();
        db.read_split(|c, s| {
            fieldsync::report::report::breakdown(
                c,
                s,
                &county,
                &period,
                None,
                None,
                Default::default(),
            )
        })
        .map_err(|e| anyhow!("{e}"))?;
        breakdown_t.push(t.elapsed());
        let t = Instant::now();
        db.read_split(|c, s| {
            fieldsync::report::report::breakdown(
                c,
                s,
                &township,
                &period,
                None,
                None,
                Default::default(),
            )
        })
        .map_err(|e| anyhow!("{e}"))?;
        township_t.push(t.elapsed());
    }
    Ok(json!({
        "persons": REPORT_PERSONS, "live_records_before": have, "preload_ms": preload_ms, "period": "2026-10",
        "county_report": percentiles(county_t), "county_breakdown_by_township": percentiles(breakdown_t),
        "township_breakdown_by_village": percentiles(township_t),
        "note": "report functions called in-process (no HTTP) through Db::read_split as the API calls them (two connections reading one snapshot, the married-women statement on the second); persons beyond the demo county's carry no ledgers",
        "analyzed_after_load": analyzed,
    }))
}

/// The storm's server as its own process, so that its peak RSS is the server's alone: this
/// harness binary started again with `FIELDSYNC_BENCH_SERVE` (the database URL) and
/// `FIELDSYNC_BENCH_SERVE_DATA` (the data dir with the signing keys the devices' tokens were
/// made with), serving until its stdin closes.
struct ServerProcess {
    child: std::process::Child,
    base: String,
}

impl ServerProcess {
    fn spawn(settings: &fieldsync::settings::Settings) -> anyhow::Result<ServerProcess> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .env("FIELDSYNC_BENCH_SERVE", &settings.database_url)
            .env("FIELDSYNC_BENCH_SERVE_DATA", &settings.data_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("start the server process")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("child stdout")?)
            .read_line(&mut line)?;
        let base = line.trim().to_string();
        anyhow::ensure!(base.starts_with("http://"), "server process said {base:?}");
        Ok(ServerProcess { child, base })
    }

    /// Resets the server's peak RSS, so that the next reading covers only what follows.
    fn reset_peak(&self) -> bool {
        reset_peak_rss_of(&self.child.id().to_string())
    }

    fn vm(&self, field: &str) -> Option<u64> {
        vm_of(&self.child.id().to_string(), field)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child side of [`ServerProcess`].
fn serve_child(url: String, data: String) -> anyhow::Result<()> {
    use std::io::Read;
    let settings = fieldsync::settings::Settings {
        bind: "127.0.0.1:0".into(),
        database_url: url,
        data_dir: data.into(),
        ..fieldsync::settings::Settings::default()
    };
    let app = Spawned::start(settings, None)?;
    println!("{}", app.base);
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(app);
    Ok(())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    json!({
        "cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_mb": mem.map(|k| k / 1024), "os": std::env::consts::OS,
        "date": chrono::Utc::now().to_rfc3339(),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
    })
}

fn main() -> anyhow::Result<()> {
    if let (Ok(url), Ok(data)) = (
        std::env::var("FIELDSYNC_BENCH_SERVE"),
        std::env::var("FIELDSYNC_BENCH_SERVE_DATA"),
    ) {
        return serve_child(url, data);
    }
    let a = args();
    // RUST_LOG=fieldsync::report=debug prints each report statement's time.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.trim().to_string());
    std::fs::create_dir_all(&a.out)?;
    for backend in &a.backends {
        let mut out = run_backend(backend, &a)?;
        out["machine"] = machine();
        out["machine"]["loadavg_at_start"] = json!(load_at_start);
        let only = a
            .only
            .as_deref()
            .map(|s| format!(" --only {s}"))
            .unwrap_or_default();
        out["command"] = json!(format!(
            "cargo bench --bench load -- --backend {backend}{only}"
        ));
        let name = format!(
            "{}/{}-{backend}.json",
            a.out,
            a.only.as_deref().unwrap_or("load")
        );
        std::fs::write(&name, serde_json::to_string_pretty(&out)? + "\n")?;
        eprintln!("wrote {name}");
    }
    Ok(())
}
