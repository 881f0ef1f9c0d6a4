//! Crash mid-batch (TESTING.md): virtual devices push while the server is killed with SIGKILL
//! at random moments and restarted; after every kill the store is checked against what the
//! devices were told (I1-I3), and `PRAGMA integrity_check` must say ok on SQLite.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{QueryableByName, RunQueryDsl};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::harness::*;
use fieldsync::db::DbConn;
use fieldsync::domain::entities::Entity;

const NAMES: &[&str] = &["王芳", "李娜", "张秀英", "刘洋", "陈静", "杨丽"];

/// One op the device made, with the version the record must have after it: each device owns
/// its records, so versions are known in advance and a second application would show.
#[derive(Clone, Debug)]
pub struct Op {
    pub seq: i64,
    pub op_id: String,
    pub record: String,
    pub kind: &'static str,
    pub base: Option<i64>,
    pub version: i64,
    pub set: Map<String, Value>,
}

impl Op {
    pub fn wire(&self) -> Value {
        let mut v = json!({"seq": self.seq, "op_id": self.op_id, "entity": "person", "id": self.record,
                           "kind": self.kind, "set": self.set, "recorded_at": "2026-11-20T08:00:00Z"});
        if let Some(b) = self.base {
            v["base_version"] = json!(b);
        }
        v
    }
}

/// A device's durable record of what it was told: one JSON line per acknowledged seq,
/// `{"seq": n, "first": <the first answer>}`, appended and fsynced before the answer counts
/// (as a phone must keep it before it deletes its local copy of an op). The invariant checks
/// read it back from the file.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub path: PathBuf,
}

impl Ledger {
    /// A new, empty ledger at `path` (its directory is made).
    pub fn create(path: PathBuf) -> Ledger {
        let dir = path.parent().expect("a ledger path in a directory");
        std::fs::create_dir_all(dir).expect("ledger directory");
        std::fs::File::create(&path).expect("create the device ledger");
        Ledger { path }
    }

    /// Appends what one answer acknowledged and syncs it to disk.
    fn append(&self, acks: &[(i64, Value)]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .expect("open the device ledger");
        let mut text = String::new();
        for (seq, first) in acks {
            text.push_str(&json!({"seq": seq, "first": first}).to_string());
            text.push('\n');
        }
        f.write_all(text.as_bytes())
            .expect("append to the device ledger");
        f.sync_data().expect("fsync the device ledger");
    }

    /// Every acknowledgement in the file.
    pub fn read(&self) -> BTreeMap<i64, Value> {
        let text = std::fs::read_to_string(&self.path).expect("read the device ledger");
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("device ledger {}: {e}: {l}", self.path.display()));
                (v["seq"].as_i64().expect("seq"), v["first"].clone())
            })
            .collect()
    }
}

/// A virtual field device: its ops, and its own ledger of what the server acknowledged (the
/// first answer for each seq): in memory, and durably in a file of the test's temp dir
/// ([`Ledger`]), which is what the store checks read. A clone shares the file: only one of
/// them may go on absorbing answers.
#[derive(Clone)]
pub struct VirtualDevice {
    pub dev: Device,
    pub ops: Vec<Op>,
    pub acked: BTreeMap<i64, Value>,
    pub ledger: Ledger,
    versions: BTreeMap<String, i64>,
    rng: ChaCha8Rng,
    /// Protocol violations seen in answers (a 500, a wrong version, out-of-order acks).
    pub errors: Vec<String>,
    pub unavailable: usize,
}

pub enum Sent {
    /// 200: this many new acknowledgements.
    Answered(usize),
    /// 429/503/507: nothing acknowledged, try again.
    Refused,
    /// No answer: the server is gone or the connection broke.
    NoAnswer,
}

impl VirtualDevice {
    /// A device whose ledger file lives under `dir` (the test's temp dir).
    pub fn new(dev: Device, seed: u64, dir: &Path) -> VirtualDevice {
        let ledger = Ledger::create(dir.join("ledgers").join(format!("{}.jsonl", dev.device_id)));
        VirtualDevice {
            dev,
            ops: Vec::new(),
            acked: BTreeMap::new(),
            ledger,
            versions: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            errors: Vec::new(),
            unavailable: 0,
        }
    }

    fn make_op(&mut self) {
        let seq = self.ops.len() as i64 + 1;
        let op_id = new_id();
        let create = self.versions.len() < 2 || self.rng.gen_bool(0.25);
        let op = if create {
            let record = new_id();
            let mut set = Map::new();
            set.insert("org_unit".into(), json!(V1));
            set.insert(
                "name".into(),
                json!(NAMES[self.rng.gen_range(0..NAMES.len())]),
            );
            set.insert("sex".into(), json!("female"));
            set.insert("birth_date".into(), json!("1990-02-03"));
            set.insert("marital_status".into(), json!("first_marriage"));
            set.insert("residence".into(), json!("resident"));
            set.insert("phone".into(), json!(format!("138{:08}", seq)));
            Op {
                seq,
                op_id,
                record,
                kind: "create",
                base: None,
                version: 1,
                set,
            }
        } else {
            let keys: Vec<&String> = self.versions.keys().collect();
            let record = keys[self.rng.gen_range(0..keys.len())].clone();
            let base = self.versions[&record];
            let mut set = Map::new();
            set.insert(
                "phone".into(),
                json!(format!("139{:08}", self.rng.gen_range(0..100_000_000u32))),
            );
            set.insert(
                "notes".into(),
                json!(format!("seq {seq} {}", self.rng.gen::<u32>())),
            );
            if self.rng.gen_bool(0.3) {
                set.insert(
                    "name".into(),
                    json!(NAMES[self.rng.gen_range(0..NAMES.len())]),
                );
            }
            Op {
                seq,
                op_id,
                record,
                kind: "update",
                base: Some(base),
                version: base + 1,
                set,
            }
        };
        self.versions.insert(op.record.clone(), op.version);
        self.ops.push(op);
    }

    /// This device as if it had last synced at seq `n` (a server restored from a backup taken
    /// at that point no longer holds the later ones), with its own ledger file under `dir`
    /// holding the acknowledgements up to `n`.
    pub fn as_of(&self, n: usize, dir: &Path) -> VirtualDevice {
        let mut d = self.clone();
        d.acked.retain(|seq, _| *seq <= n as i64);
        d.ledger = Ledger::create(
            dir.join("ledgers")
                .join(format!("{}.jsonl", d.dev.device_id)),
        );
        let kept: Vec<(i64, Value)> = self
            .ledger
            .read()
            .into_iter()
            .filter(|(seq, _)| *seq <= n as i64)
            .collect();
        d.ledger.append(&kept);
        d
    }

    /// Every op made so far is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.acked.len() == self.ops.len()
    }

    /// The next batch: everything not yet acknowledged (resent, oldest first), topped up with new
    /// ops when `grow`, up to `max` ops.
    pub fn next_batch(&mut self, grow: bool, max: usize) -> Vec<Value> {
        let from = self.acked.len();
        if grow {
            let want = self.rng.gen_range(1..=max);
            while self.ops.len() < from + want {
                self.make_op();
            }
        }
        let to = self.ops.len().min(from + max);
        self.ops[from..to].iter().map(Op::wire).collect()
    }

    /// Makes `n` new ops and returns every unacknowledged op (oldest first).
    pub fn batch_of_new(&mut self, n: usize) -> Vec<Value> {
        for _ in 0..n {
            self.make_op();
        }
        self.ops[self.acked.len()..].iter().map(Op::wire).collect()
    }

    /// Ops made but not acknowledged (their fate is open until a resend).
    pub fn unacked(&self) -> usize {
        self.ops.len() - self.acked.len()
    }

    /// Resends everything unacknowledged, up to `max` ops a batch and pausing `pause` after a
    /// refusal or no answer, until all is acknowledged; fails (naming `what`) when `started`
    /// is `within` behind.
    pub fn resend_until_acked(
        &mut self,
        server: &Server,
        max: usize,
        pause: Duration,
        started: Instant,
        within: Duration,
        what: &str,
    ) {
        while !self.all_acked() {
            assert!(
                started.elapsed() < within,
                "{what} within {within:?}: {:?}",
                self.errors
            );
            let batch = self.next_batch(false, max);
            if let Sent::Refused | Sent::NoAnswer = self.send(server, &batch) {
                std::thread::sleep(pause);
            }
        }
    }

    /// Sends one batch and records what it was told.
    pub fn send(&mut self, server: &Server, batch: &[Value]) -> Sent {
        self.absorb(server.push(&self.dev, batch))
    }

    /// Records what an answer to a push told the device.
    pub fn absorb(&mut self, answer: Result<Resp, String>) -> Sent {
        let r = match answer {
            Ok(r) => r,
            Err(_) => return Sent::NoAnswer,
        };
        match r.status {
            200 => {}
            429 | 503 | 507 => {
                if r.header("retry-after").is_none() {
                    self.errors
                        .push(format!("{} without Retry-After: {}", r.status, r.text));
                }
                self.unavailable += 1;
                return Sent::Refused;
            }
            s => {
                self.errors.push(format!("push answered {s}: {}", r.text));
                return Sent::Refused;
            }
        }
        let mut new = Vec::new();
        for res in r.body["results"].as_array().cloned().unwrap_or_default() {
            let seq = res["seq"].as_i64().unwrap_or(0);
            let Some(op) = self.ops.get((seq - 1).max(0) as usize).cloned() else {
                self.errors.push(format!("result for unknown seq {seq}"));
                continue;
            };
            let first = match res["status"].as_str() {
                Some("applied") => res.clone(),
                Some("duplicate") => res["first"].clone(),
                other => {
                    self.errors
                        .push(format!("seq {seq}: unexpected status {other:?}: {res}"));
                    continue;
                }
            };
            if res["op_id"] != json!(op.op_id)
                || first["status"] != "applied"
                || first["version"] != json!(op.version)
            {
                self.errors.push(format!(
                    "seq {seq}: answer {res} does not match the op (version {} expected)",
                    op.version
                ));
            }
            if seq != self.acked.len() as i64 + 1 && !self.acked.contains_key(&seq) {
                self.errors
                    .push(format!("seq {seq} acknowledged out of order"));
            }
            if let Some(prev) = self.acked.get(&seq) {
                if prev["version"] != first["version"] {
                    self.errors.push(format!(
                        "seq {seq}: replay answer {first} differs from the first {prev}"
                    ));
                }
            } else {
                self.acked.insert(seq, first.clone());
                new.push((seq, first));
            }
        }
        if !new.is_empty() {
            self.ledger.append(&new);
        }
        Sent::Answered(new.len())
    }
}

#[derive(QueryableByName)]
struct LedgerRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    op_id: String,
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    op_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data: String,
}

#[derive(QueryableByName)]
struct Integrity {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

/// Checks the store at rest against every device's ledger. Returns the violations, each
/// prefixed with the invariant it breaks.
pub fn check_store(env: &Env, devices: &[VirtualDevice]) -> Vec<String> {
    let db = env.db();
    let mut conn = db.conn().expect("connection");
    let mut out = Vec::new();
    if env.backend == Backend::Sqlite {
        let rows: Vec<Integrity> = diesel::sql_query("PRAGMA integrity_check")
            .load(&mut *conn)
            .expect("integrity_check");
        let text: Vec<&str> = rows.iter().map(|r| r.integrity_check.as_str()).collect();
        if text != ["ok"] {
            out.push(format!("integrity_check: {text:?}"));
        }
    }
    for d in devices {
        out.extend(check_device(&mut conn, d));
    }
    out
}

fn check_device(conn: &mut DbConn, d: &VirtualDevice) -> Vec<String> {
    let mut out = Vec::new();
    let dev = &d.dev.device_id;
    // What the device was told, read back from its durable ledger.
    let acked = d.ledger.read();
    if acked.keys().ne(d.acked.keys()) {
        out.push(format!(
            "device {dev}: its ledger file holds {} acknowledgements, its memory {}",
            acked.len(),
            d.acked.len()
        ));
    }
    let last_seq = db_count(
        conn,
        &format!("SELECT last_seq AS n FROM devices WHERE id = '{dev}'"),
    );
    let ledger: Vec<LedgerRow> = diesel::sql_query(format!(
        "SELECT seq, op_id FROM device_ops WHERE device_id = '{dev}' ORDER BY seq"
    ))
    .load(conn)
    .expect("ledger");
    let versions: Vec<VersionRow> = diesel::sql_query(
        "SELECT op_id, version, data FROM record_versions WHERE op_id IS NOT NULL",
    )
    .load(conn)
    .expect("versions");
    let mut by_op: BTreeMap<&str, Vec<&VersionRow>> = BTreeMap::new();
    for v in &versions {
        by_op.entry(v.op_id.as_str()).or_default().push(v);
    }

    // I1: every acknowledged seq is committed.
    if let Some((&max_acked, _)) = acked.iter().next_back() {
        if max_acked > last_seq {
            out.push(format!(
                "I1 lost: device {dev} was acknowledged up to seq {max_acked}, the store holds up to {last_seq}"
            ));
        }
    }
    // I3/I2 in the ledger: exactly seqs 1..=last_seq, once each, for the ops the device sent.
    let seqs: Vec<i64> = ledger.iter().map(|r| r.seq).collect();
    let expected: Vec<i64> = (1..=last_seq).collect();
    if seqs != expected {
        out.push(format!(
            "I3 ledger of {dev} holds seqs {seqs:?}, expected 1..={last_seq}"
        ));
    }
    for r in &ledger {
        match d.ops.get((r.seq - 1) as usize) {
            Some(op) if op.op_id == r.op_id => {}
            _ => out.push(format!("I2 ledger seq {} has a foreign op_id", r.seq)),
        }
    }
    // Each op's effects: once when committed, absent otherwise; acknowledged values present.
    let mut live: BTreeMap<&str, (i64, Map<String, Value>)> = BTreeMap::new();
    for op in &d.ops {
        let rows = by_op.get(op.op_id.as_str()).cloned().unwrap_or_default();
        let committed = op.seq <= last_seq;
        if committed && rows.len() != 1 {
            out.push(format!(
                "{} seq {} committed in the ledger but has {} versions",
                if rows.is_empty() { "I3" } else { "I2" },
                op.seq,
                rows.len()
            ));
        }
        if !committed && !rows.is_empty() {
            out.push(format!(
                "I3 partial apply: seq {} is not in the ledger but changed the record",
                op.seq
            ));
        }
        if acked.contains_key(&op.seq) {
            match rows.first() {
                None => out.push(format!(
                    "I1 lost: acknowledged seq {} of {dev} has no version",
                    op.seq
                )),
                Some(v) => {
                    let data: Map<String, Value> =
                        serde_json::from_str(&v.data).unwrap_or_default();
                    if v.version != op.version {
                        out.push(format!(
                            "I2 seq {} made version {} (expected {})",
                            op.seq, v.version, op.version
                        ));
                    }
                    for (k, val) in &op.set {
                        if k != "org_unit" && data.get(k) != Some(val) {
                            out.push(format!(
                                "I1 value lost: seq {} field {k} = {val}, stored {:?}",
                                op.seq,
                                data.get(k)
                            ));
                        }
                    }
                }
            }
        }
        if committed {
            let e = live.entry(op.record.as_str()).or_default();
            e.0 = op.version;
            for (k, v) in &op.set {
                e.1.insert(k.clone(), v.clone());
            }
        }
    }
    // The live records equal one in-order application of the committed ops.
    let ids: Vec<&str> = live.keys().copied().collect();
    let rows = fieldsync::db::records::load(conn, Entity::Person, &ids).expect("load records");
    let rows: BTreeMap<String, _> = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
    for (id, (version, fields)) in &live {
        match rows.get(*id) {
            None => out.push(format!("I1 record {id} missing")),
            Some(r) => {
                if r.version != *version {
                    out.push(format!(
                        "I2 record {id} at version {} (expected {version})",
                        r.version
                    ));
                }
                for (k, v) in fields {
                    let stored = if k == "org_unit" {
                        Some(json!(r.org_unit))
                    } else {
                        r.fields.get(k).cloned()
                    };
                    if stored.as_ref() != Some(v) {
                        out.push(format!("I1 record {id} field {k}: {v} vs {stored:?}"));
                    }
                }
            }
        }
    }
    out
}

/// Ops committed in the store but not acknowledged to their device: answers lost to a kill.
pub fn committed_unacked(env: &Env, devices: &[VirtualDevice]) -> usize {
    let db = env.db();
    let mut conn = db.conn().expect("connection");
    devices
        .iter()
        .map(|d| {
            let last = db_count(
                &mut conn,
                &format!(
                    "SELECT last_seq AS n FROM devices WHERE id = '{}'",
                    d.dev.device_id
                ),
            );
            let acked = d.ledger.read();
            (1..=last).filter(|s| !acked.contains_key(s)).count()
        })
        .sum()
}

pub struct CrashReport {
    /// Rounds in which the kill cut off at least one committed answer.
    pub answers_cut: usize,
    pub violations: Vec<String>,
    pub acked: usize,
    pub lost_rounds: usize,
    pub refused: usize,
}

/// Runs `rounds` kill/restart rounds with `n_devices` devices on `env`. Each round: start the
/// server, devices push (resending whatever is not acknowledged), SIGKILL after a random
/// 50-450 ms, check. At the end every device resends until all its ops are acknowledged, and
/// the store is checked once more.
pub fn run_crash(env: &Env, rounds: usize, n_devices: usize, seed: u64) -> CrashReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n_devices {
        env.add_worker(&format!("crash_w{i}"), &[V1]);
    }
    let mut server = env.start();
    let mut devices: Vec<VirtualDevice> = (0..n_devices)
        .map(|i| {
            VirtualDevice::new(
                server.register_device(&format!("crash_w{i}")),
                seed + i as u64,
                env.dir.path(),
            )
        })
        .collect();
    let mut report = CrashReport {
        answers_cut: 0,
        violations: Vec::new(),
        acked: 0,
        lost_rounds: 0,
        refused: 0,
    };
    for round in 0..rounds {
        if round > 0 {
            server = env.start();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(server);
        let handles: Vec<_> = devices
            .drain(..)
            .map(|mut d| {
                let stop = stop.clone();
                let server = shared.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let batch = d.next_batch(true, 16);
                        match d.send(&server, &batch) {
                            Sent::NoAnswer => break,
                            Sent::Refused => std::thread::sleep(Duration::from_millis(20)),
                            Sent::Answered(_) => {}
                        }
                    }
                    d
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..450)));
        // SIGKILL while the devices push; their threads see the connection fail and stop.
        let pid = shared.pid();
        let st = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        stop.store(true, Ordering::Relaxed);
        devices = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut s = Arc::try_unwrap(shared).ok().expect("no other owner");
        s.kill();
        env.wait_quiet();
        let v = check_store(env, &devices);
        if committed_unacked(env, &devices) > 0 {
            report.answers_cut += 1;
        }
        if v.iter().any(|m| m.starts_with("I1")) {
            report.lost_rounds += 1;
        }
        report
            .violations
            .extend(v.into_iter().map(|m| format!("round {round}: {m}")));
        server = s;
    }
    // Final resend: everything made is acknowledged in the end.
    let server_final = env.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    for d in devices.iter_mut() {
        // A store that lost acknowledged ops answers the resend with a gap, forever: give up
        // after 50 answers without progress (the loss is reported by the check below).
        let mut stuck = 0;
        while !d.all_acked() && Instant::now() < deadline && stuck < 50 {
            let batch = d.next_batch(false, 64);
            match d.send(&server_final, &batch) {
                Sent::Answered(n) if n > 0 => stuck = 0,
                Sent::NoAnswer => std::thread::sleep(Duration::from_millis(50)),
                _ => stuck += 1,
            }
        }
        if !d.all_acked() {
            report.violations.push(format!(
                "final: device {} has {} of {} ops acknowledged",
                d.dev.device_id,
                d.acked.len(),
                d.ops.len()
            ));
        }
    }
    drop(server_final);
    drop(server);
    env.wait_quiet();
    report.violations.extend(
        check_store(env, &devices)
            .into_iter()
            .map(|m| format!("final: {m}")),
    );
    for d in &devices {
        report.acked += d.acked.len();
        report.refused += d.unavailable;
        report
            .violations
            .extend(d.errors.iter().map(|e| format!("device: {e}")));
    }
    report
}
