//! `fieldsync simulate`: N field devices of the demo county over real HTTP. Each logs in,
//! registers and pulls its village; then, day after day, it works offline (new households and
//! persons, births, measures, visits, migrations, edits, a few deletes) and syncs at day's end:
//! one push, sometimes sent twice, then a pull. Some devices stay offline for days; a share of
//! edits collide between two devices of a village. At the end the store is checked (see
//! [`verify`]).
//!
//! The work of a day is generated before any device syncs, one device after another from one
//! seeded RNG; the syncs then run concurrently. What a device knows at the start of a day
//! depends on the order of the previous day's syncs, so two runs of one seed may differ a little.

pub mod client;
pub mod server;
pub mod verify;
pub mod work;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::db::Db;
use crate::sync::protocol::OpStatus;
use client::{ClientError, Device};
use verify::{Ack, Check};
use work::{Collision, DayCtx, Worker};

/// Ops per push: well under the server's batch limit.
const BATCH: usize = 500;

#[derive(Clone, Debug)]
pub struct Options {
    /// A running server; its database must be `database_url` too (accounts, checks).
    pub url: Option<String>,
    /// Start the server in-process on 127.0.0.1:0 instead.
    pub spawn: bool,
    /// Default with `spawn`: a temp SQLite file.
    pub database_url: Option<String>,
    pub devices: usize,
    pub days: usize,
    pub ops_per_day: usize,
    pub concurrency: usize,
    /// Share of edits that collide with an edit of another device of the village.
    pub conflict_rate: f64,
    /// Share of pushes sent a second time (a lost answer).
    pub resend_rate: f64,
    /// Chance per device and day of going offline for 2 to 4 days.
    pub offline_rate: f64,
    pub seed: u64,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            url: None,
            spawn: true,
            database_url: None,
            devices: 30,
            days: 7,
            ops_per_day: 40,
            concurrency: 8,
            conflict_rate: 0.05,
            resend_rate: 0.1,
            offline_rate: 0.1,
            seed: 2026,
            progress: false,
        }
    }
}

/// What a run did and what its checks found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub backend: String,
    pub devices: usize,
    pub days: usize,
    pub ops_sent: usize,
    pub applied: usize,
    pub rejected: usize,
    pub pushes: usize,
    pub resends: usize,
    pub offline_stretches: usize,
    pub collisions: usize,
    /// Open and closed conflicts made, then found.
    pub conflicts: [usize; 4],
    pub push_p50_ms: f64,
    pub push_p99_ms: f64,
    pub sync_elapsed: Duration,
    pub elapsed: Duration,
    pub errors: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.sync_elapsed.as_secs_f64().max(1e-9);
        let rows: Vec<(&str, String)> = vec![
            ("backend", self.backend.clone()),
            (
                "devices x days",
                format!("{} x {}", self.devices, self.days),
            ),
            ("ops sent", self.ops_sent.to_string()),
            (
                "applied / rejected",
                format!("{} / {}", self.applied, self.rejected),
            ),
            (
                "pushes (resent)",
                format!("{} ({})", self.pushes, self.resends),
            ),
            ("offline stretches", self.offline_stretches.to_string()),
            ("collisions made", self.collisions.to_string()),
            (
                "conflicts made open/closed",
                format!("{} / {}", self.conflicts[0], self.conflicts[1]),
            ),
            (
                "conflicts found open/closed",
                format!("{} / {}", self.conflicts[2], self.conflicts[3]),
            ),
            (
                "push p50 / p99",
                format!("{:.1} ms / {:.1} ms", self.push_p50_ms, self.push_p99_ms),
            ),
            (
                "sync throughput",
                format!(
                    "{:.0} ops/s over {:.1} s of syncs",
                    self.ops_sent as f64 / secs,
                    secs
                ),
            ),
            ("elapsed", format!("{:.1} s", self.elapsed.as_secs_f64())),
            ("transport errors", self.errors.len().to_string()),
        ];
        writeln!(f, "simulation")?;
        for (k, v) in rows {
            writeln!(f, "  {k:<28} {v}")?;
        }
        for e in self.errors.iter().take(5) {
            writeln!(f, "  error: {e}")?;
        }
        writeln!(f, "verification")?;
        for c in &self.checks {
            writeln!(
                f,
                "  {:<4} {:<40} {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        write!(
            f,
            "result: {}",
            if self.passed() { "PASSED" } else { "FAILED" }
        )
    }
}

/// One simulated phone and its unsynced work.
struct Sim {
    dev: Device,
    village: String,
    slot: usize,
    peers: usize,
    pending: Vec<Value>,
    touched: HashSet<String>,
    /// First day on which the device syncs again.
    back_on: usize,
    resend: bool,
}

#[derive(Default)]
struct SyncOut {
    acks: Vec<Ack>,
    latencies: Vec<Duration>,
    pushes: usize,
    resends: usize,
    errors: Vec<String>,
}

/// Pushes the device's pending ops (resending a batch when told to, and checking that the
/// second answer is the first one), then pulls to the end.
fn sync(s: &mut Sim, out: &mut SyncOut) {
    let mut queue: Vec<Value> = std::mem::take(&mut s.pending);
    let mut failures = 0;
    while !queue.is_empty() && failures < 6 {
        let batch: Vec<Value> = queue.iter().take(BATCH).cloned().collect();
        let resp = match s.dev.push(&batch) {
            Ok((resp, took)) => {
                out.latencies.push(took);
                out.pushes += 1;
                resp
            }
            Err(ClientError::Status { status, .. }) if status == 503 || status == 429 => {
                failures += 1;
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => {
                failures += 1;
                out.errors.push(e.to_string());
                continue;
            }
        };
        let done = resp.results.len();
        for (r, op) in resp.results.iter().zip(&batch) {
            // A duplicate here means an earlier answer was lost: its first answer is the ack.
            let result = match (&r.first, r.status) {
                (Some(first), OpStatus::Duplicate) => (**first).clone(),
                _ => r.clone(),
            };
            out.acks.push(Ack {
                device_id: s.dev.device_id.clone(),
                op: op.clone(),
                result,
            });
        }
        if s.resend && done > 0 {
            out.resends += 1;
            match s.dev.push(&batch[..done]) {
                Ok((again, took)) => {
                    out.latencies.push(took);
                    for (a, r) in again.results.iter().zip(&resp.results) {
                        let same = a.status == OpStatus::Duplicate
                            && a.first.as_ref().is_some_and(|f| {
                                f.status == r.status && f.version == r.version && f.seq == r.seq
                            });
                        if !same {
                            out.errors.push(format!(
                                "resent seq {} answered {} instead of the first answer",
                                a.seq, a.status
                            ));
                        }
                    }
                }
                Err(e) => out.errors.push(format!("resend: {e}")),
            }
        }
        if done == 0 {
            failures += 1;
            std::thread::sleep(Duration::from_secs(resp.retry_after.unwrap_or(1).min(5)));
        }
        queue.drain(..done);
    }
    if !queue.is_empty() {
        out.errors.push(format!(
            "device {}: {} ops left unsynced",
            s.dev.device_id,
            queue.len()
        ));
        s.pending = queue;
    }
    s.touched.clear();
    if let Err(e) = s.dev.pull_all() {
        out.errors.push(e.to_string());
    }
}

/// Runs `f` on every index in `items` with `concurrency` threads.
fn parallel<T: Send>(
    items: &[Mutex<T>],
    which: &[usize],
    concurrency: usize,
    f: impl Fn(&mut T) + Sync,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1).min(which.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = which.get(i) else { break };
                let mut guard = items[k].lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard);
            });
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs a simulation and its checks. Errors are for setup failures; a failed check is in the
/// report (`passed()` is false).
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    if opts.devices == 0 || opts.days == 0 {
        bail!("--devices and --days must be at least 1");
    }
    let (spawned, base, db): (Option<server::Spawned>, String, Db) = match (&opts.url, opts.spawn) {
        (Some(_), true) => bail!("give either --url or --spawn"),
        (None, false) => bail!("give --url of a running server, or --spawn"),
        (Some(url), false) => {
            let Some(db_url) = &opts.database_url else {
                bail!("with --url, give the server's --database-url too (accounts and checks need the store)");
            };
            let (mut settings, dir) = server::settings_for(Some(db_url))?;
            settings.data_dir = dir.join("data");
            let db = crate::open_database(&settings).map_err(|e| anyhow!("open database: {e}"))?;
            let _ = std::fs::remove_dir_all(dir);
            (None, url.trim_end_matches('/').to_string(), db)
        }
        (None, true) => {
            let (settings, dir) = server::settings_for(opts.database_url.as_deref())?;
            let s = server::Spawned::start(settings, Some(dir))?;
            let (base, db) = (s.base.clone(), s.db.clone());
            (Some(s), base, db)
        }
    };
    let bar = if opts.progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    };
    if let Ok(style) = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }

    bar.set_message("demo county");
    crate::demo::load(&db, 2026, true).map_err(|e| anyhow!("load the demo county: {e}"))?;
    let villages = server::demo_villages(&db)?;
    if villages.is_empty() {
        bail!("the database holds no village of the demo county");
    }
    // Devices come in pairs per village, so that every village with devices has two or more.
    let of_device: Vec<String> = (0..opts.devices)
        .map(|i| villages[(i / 2) % villages.len()].clone())
        .collect();
    let prefix = format!("sim{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let password = server::create_workers(&db, &prefix, &of_device)?;
    let live_before = verify::live_count(&db)?;

    bar.set_message("register");
    bar.set_length((opts.devices * (opts.days + 1)) as u64);
    let registered: Vec<Mutex<Option<Result<Device, ClientError>>>> =
        (0..opts.devices).map(|_| Mutex::new(None)).collect();
    let all: Vec<usize> = (0..opts.devices).collect();
    {
        let slots: Vec<Mutex<usize>> = (0..opts.devices).map(Mutex::new).collect();
        parallel(&slots, &all, opts.concurrency, |i| {
            let r =
                Device::register(&base, &format!("{prefix}{i}"), &password).and_then(|mut d| {
                    d.pull_all()?;
                    Ok(d)
                });
            *registered[*i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            bar.inc(1);
        });
    }
    let mut peers: HashMap<&str, usize> = HashMap::new();
    let mut sims = Vec::with_capacity(opts.devices);
    for (i, slot) in registered.into_iter().enumerate() {
        let dev = slot
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or_else(|| anyhow!("device {i} not registered"))?
            .map_err(|e| anyhow!("device {i}: {e}"))?;
        let village = of_device[i].clone();
        let n = peers.entry(&of_device[i]).or_insert(0);
        sims.push(Sim {
            dev,
            village,
            slot: *n,
            peers: 0,
            pending: Vec::new(),
            touched: HashSet::new(),
            back_on: 0,
            resend: false,
        });
        *n += 1;
    }
    for s in &mut sims {
        s.peers = peers[s.village.as_str()];
    }

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut used_numbers = HashSet::new();
    let mut collided = BTreeSet::new();
    let mut collisions: Vec<Collision> = Vec::new();
    let mut report = Report {
        backend: db.backend().name().to_string(),
        devices: opts.devices,
        days: opts.days,
        ..Report::default()
    };
    let first_day = chrono::Utc::now().date_naive() - chrono::Duration::days(opts.days as i64 + 1);
    let mut sims: Vec<Mutex<Sim>> = sims.into_iter().map(Mutex::new).collect();
    let mut latencies = Vec::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut sync_elapsed = Duration::ZERO;
    for day in 0..opts.days {
        bar.set_message(format!("day {}/{}", day + 1, opts.days));
        let last = day + 1 == opts.days;
        // The day's offline work, device by device, village by village.
        let mut by_village: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, v) in of_device.iter().enumerate() {
            match by_village.iter_mut().find(|(w, _)| w == v) {
                Some((_, list)) => list.push(i),
                None => by_village.push((v.clone(), vec![i])),
            }
        }
        let mut guards: Vec<&mut Sim> = sims
            .iter_mut()
            .map(|m| m.get_mut().unwrap_or_else(|p| p.into_inner()))
            .collect();
        for s in guards.iter_mut() {
            if !last && s.back_on <= day && rng.gen_bool(opts.offline_rate.clamp(0.0, 1.0)) {
                s.back_on = day + rng.gen_range(2..=4);
                report.offline_stretches += 1;
            }
            s.resend = rng.gen_bool(opts.resend_rate.clamp(0.0, 1.0));
        }
        let date = first_day + chrono::Duration::days(day as i64);
        for (_, members) in &by_village {
            let mut workers: Vec<Worker> = guards
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| members.contains(i))
                .map(|(i, s)| {
                    let s: &mut Sim = s;
                    Worker {
                        index: i,
                        slot: s.slot,
                        peers: s.peers,
                        replica: &s.dev.replica,
                        touched: &mut s.touched,
                        pending: &mut s.pending,
                        next_seq: &mut s.dev.next_seq,
                    }
                })
                .collect();
            for k in 0..workers.len() {
                let (left, rest) = workers.split_at_mut(k);
                let (me, right) = rest.split_first_mut().expect("k is in range");
                let mut partners: Vec<&mut Worker> =
                    left.iter_mut().chain(right.iter_mut()).collect();
                let mut ctx = DayCtx {
                    rng: &mut rng,
                    date,
                    used_numbers: &mut used_numbers,
                    collided: &mut collided,
                    collisions: &mut collisions,
                    conflict_rate: opts.conflict_rate,
                };
                me.day(&mut ctx, opts.ops_per_day, &mut partners);
            }
        }
        drop(guards);
        // Day's end: the devices that are online sync, concurrently.
        let online: Vec<usize> = (0..opts.devices)
            .filter(|i| last || sims[*i].get_mut().map_or(true, |s| s.back_on <= day))
            .collect();
        report.ops_sent += online
            .iter()
            .map(|i| sims[*i].get_mut().map_or(0, |s| s.pending.len()))
            .sum::<usize>();
        let outs: Mutex<Vec<SyncOut>> = Mutex::new(Vec::new());
        let t = Instant::now();
        parallel(&sims, &online, opts.concurrency, |s| {
            let mut out = SyncOut::default();
            sync(s, &mut out);
            outs.lock().unwrap_or_else(|p| p.into_inner()).push(out);
            bar.inc(1);
        });
        sync_elapsed += t.elapsed();
        bar.inc((opts.devices - online.len()) as u64);
        for o in outs.into_inner().unwrap_or_else(|p| p.into_inner()) {
            acks.extend(o.acks);
            latencies.extend(o.latencies);
            report.pushes += o.pushes;
            report.resends += o.resends;
            report.errors.extend(o.errors);
        }
    }
    // Everyone pulls to the end before the devices are compared with the server.
    bar.set_message("final pull");
    let everyone: Vec<usize> = (0..opts.devices).collect();
    let pull_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    parallel(&sims, &everyone, opts.concurrency, |s| {
        if let Err(e) = s.dev.pull_all() {
            pull_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }
    });
    report
        .errors
        .extend(pull_errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    bar.set_message("verify");
    let sims: Vec<Sim> = sims
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    latencies.sort();
    report.push_p50_ms = percentile(&latencies, 0.50);
    report.push_p99_ms = percentile(&latencies, 0.99);
    report.sync_elapsed = sync_elapsed;
    report.applied = acks.iter().filter(|a| a.result.status.landed()).count();
    report.rejected = acks
        .iter()
        .filter(|a| a.result.status == OpStatus::Rejected)
        .count();
    report.collisions = collisions.len();

    let device_ids: Vec<String> = sims.iter().map(|s| s.dev.device_id.clone()).collect();
    let e = |e: crate::error::AppError| anyhow!("verification read: {e}");
    let mut checks = vec![verify::acknowledged(&db, &acks, &device_ids).map_err(e)?];
    let unexpected: Vec<String> = acks
        .iter()
        .filter(|a| a.result.status == OpStatus::Rejected)
        .map(|a| {
            format!(
                "seq {} {} {}: {}",
                a.result.seq,
                a.result.entity,
                a.op["kind"],
                a.result.code.clone().unwrap_or_default()
            )
        })
        .collect();
    checks.push(Check {
        name: "no valid op rejected",
        passed: unexpected.is_empty(),
        problems: unexpected.len(),
        detail: if unexpected.is_empty() {
            format!("{} ops applied", report.applied)
        } else {
            format!(
                "{} rejected: {}",
                unexpected.len(),
                unexpected
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    });
    let (c, counts) = verify::conflicts(&db, &device_ids, &collisions).map_err(e)?;
    report.conflicts = counts;
    checks.push(c);
    checks.push(verify::records(&db, &acks, live_before).map_err(e)?);
    checks.push(
        verify::convergence(
            &db,
            sims.iter().map(|s| (s.village.as_str(), &s.dev.replica)),
        )
        .map_err(e)?,
    );
    report.checks = checks;
    bar.finish_and_clear();
    drop(spawned);
    report.elapsed = started.elapsed();
    Ok(report)
}
