//! The push service: applies a device's batch exactly once, in the device's order, through
//! the pure merge engine, in as few statements as the batch allows.
//!
//! A batch is processed in chunks, each one transaction: the ledger rows (`device_ops`), the
//! records, their versions, conflicts and flags are written together, so an op is either
//! wholly applied and recorded, or not at all. The answer is sent only after the commit.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use serde_json::Value;

use crate::auth::scope::Scope;
use crate::db::{now_micros, Db, DbConn};
use crate::domain::entities::{Entity, FieldType};
use crate::error::{AppError, AppResult};
use crate::sync::changeset::Changeset;
use crate::sync::merge::{self, Disposition};
pub use crate::sync::plan::{policy_of, Actor};
use crate::sync::plan::{rejected, unit_refusal};
use crate::sync::protocol::{DeviceId, OpResult, OpStatus, PushResponse, StopReason};
use crate::sync::sequence::{self, Writers};
use crate::sync::store::{self, LedgerEntry};
use crate::sync::validate::{self, OpHeader, ParsedOp, Refusal};

/// Ops per transaction: big enough to amortise the commit, small enough that a transient failure
/// late in a large batch keeps the chunks already committed.
const CHUNK: usize = 500;

/// Who is pushing.
#[derive(Clone)]
pub struct Caller {
    pub user_id: String,
    pub device_id: DeviceId,
    pub scope: Scope,
    /// The device clock minus the server's at receipt, when the batch carried `sent_at`.
    pub clock_offset_ms: Option<i64>,
}

impl Caller {
    fn actor(&self) -> Actor<'_> {
        Actor {
            user_id: &self.user_id,
            device_id: Some(&self.device_id),
            scope: &self.scope,
        }
    }
}

/// The device clock's offset from the server's in milliseconds: the batch's `sent_at` (device
/// clock, RFC 3339 like `recorded_at`) minus `received_at` (server clock, unix microseconds).
/// Positive when the device is ahead. The transfer time makes it read slightly low.
pub fn clock_offset_ms(sent_at: &str, received_at: i64) -> AppResult<i64> {
    let sent = chrono::DateTime::parse_from_rfc3339(sent_at)
        .map_err(|_| AppError::bad_param("bad_sent_at", "sent_at must be RFC 3339"))?
        .timestamp_micros();
    Ok((sent - received_at) / 1000)
}

/// Groups of chunks committed at once ([`group`], [`Db::push_groups`]).
pub fn group_leaders(db: &Db) -> usize {
    group::leaders(db)
}

#[cfg_attr(feature = "unsafe-ack-before-commit", allow(unreachable_code))]
pub fn push(db: &Db, caller: &Caller, ops: Vec<Value>) -> AppResult<PushResponse> {
    let headers: Vec<OpHeader> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| validate::header(op, i))
        .collect::<Result<_, _>>()?;
    let items: Vec<(OpHeader, Value)> = headers.into_iter().zip(ops).collect();
    #[cfg(feature = "unsafe-ack-before-commit")]
    return unsafe_ack::push(db, caller, items);

    let mut results = Vec::with_capacity(items.len());
    let mut last_seq = 0;
    let mut stop: Option<(i64, StopReason)> = None;
    let shared = std::sync::Arc::new(caller.clone());
    for chunk in items.chunks(CHUNK) {
        let applied = group::apply(db, &shared, chunk);
        match applied {
            Ok(out) => {
                results.extend(out.results);
                last_seq = out.last_seq;
                if let Some(s) = out.stopped_at {
                    stop = Some((s, StopReason::Gap));
                    break;
                }
            }
            Err(e @ (AppError::Unavailable | AppError::StorageFull | AppError::Contended)) => {
                if results.is_empty() {
                    return Err(e);
                }
                stop = Some((chunk[0].0.seq, StopReason::Transient));
                break;
            }
            Err(AppError::Internal(cause)) => {
                // Something the validation did not foresee made the store refuse the chunk.
                // Apply its ops one by one so that only the op at fault is rejected.
                tracing::warn!(cause = %cause, "chunk refused by the store; applying op by op");
                let out = apply_one_by_one(db, caller, chunk)?;
                results.extend(out.results);
                last_seq = out.last_seq;
                if let Some(s) = out.stopped_at {
                    stop = Some((s, StopReason::Gap));
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    if results.is_empty() && stop.is_none() {
        last_seq = match caller.clock_offset_ms {
            Some(ms) => db.write(|c| {
                store::record_clock_offset(c, &caller.device_id, ms)?;
                Ok(store::device(c, &caller.device_id)?.last_seq)
            })?,
            None => db.read(|c| Ok(store::device(c, &caller.device_id)?.last_seq))?,
        };
    }
    Ok(PushResponse {
        device_id: caller.device_id.to_string(),
        last_seq,
        results,
        stopped_at: stop.map(|s| s.0),
        stop_reason: stop.map(|s| s.1),
        retry_after: stop.filter(|s| s.1 == StopReason::Transient).map(|_| 5),
    })
}

/// Test-only, behind the cargo feature `unsafe-ack-before-commit`: the answer is computed in a
/// transaction that is rolled back, and the batch is committed for real only 400 ms later on
/// another thread. A SIGKILL in between loses acknowledged ops; the crash harness must report
/// it (tests/faults, negative control). Never build a release with this feature.
#[cfg(feature = "unsafe-ack-before-commit")]
mod unsafe_ack {
    use super::*;

    pub fn push(
        db: &Db,
        caller: &Caller,
        items: Vec<(OpHeader, Value)>,
    ) -> AppResult<PushResponse> {
        let mut answer = None;
        let dry = db.write(|conn| {
            answer = Some(apply_chunk_locked(conn, caller, &items)?);
            Err::<(), _>(AppError::Conflict("dry run".into()))
        });
        let out = match (answer, dry) {
            (Some(out), _) => out,
            (None, Err(e)) => return Err(e),
            (None, Ok(())) => unreachable!("the dry run always rolls back"),
        };
        let later = Caller {
            user_id: caller.user_id.clone(),
            device_id: caller.device_id.clone(),
            scope: caller.scope.clone(),
            clock_offset_ms: caller.clock_offset_ms,
        };
        let db = db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(400));
            let _ = db.write(|conn| apply_chunk_locked(conn, &later, &items));
        });
        Ok(PushResponse {
            device_id: caller.device_id.to_string(),
            last_seq: out.last_seq,
            results: out.results,
            stopped_at: out.stopped_at,
            stop_reason: out.stopped_at.map(|_| StopReason::Gap),
            retry_after: None,
        })
    }
}

/// Group commit: the chunks of several devices queued behind the writers are applied in one
/// transaction, and every device is answered only after that one commit. SQLite has one writer;
/// PostgreSQL has [`Db::push_groups`] committing groups at once, each group locking what its
/// chunks touch first, in one sorted order (`sync::sequence`). When a chunk fails the whole
/// group rolls back and its chunks are applied again one transaction each, so only the chunk
/// at fault is answered with its error; when the store is away or full, every chunk of the
/// group is answered so at once.
/// (A savepoint per chunk did the same with less work on a failure, but SQLite copied every
/// page a chunk touched into the savepoint's journal and kept it until the commit: with the
/// journal on disk a fifth of a push's time, in memory the storm's peak server memory.) A pusher
/// that finds fewer groups being committed than there may be commits groups until the queue is
/// empty; the others wait for their answer.
mod group {
    use std::collections::HashMap;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex, OnceLock};

    use super::*;

    /// Most chunks committed together: bounds a transaction and the wait of its first chunk.
    const MAX_GROUP: usize = 32;

    struct Job {
        caller: Arc<Caller>,
        items: Vec<(OpHeader, Value)>,
        reply: mpsc::Sender<AppResult<ChunkOut>>,
    }

    #[derive(Default)]
    struct Queue {
        jobs: Vec<Job>,
        /// Threads committing this database's groups.
        leaders: usize,
    }

    /// Groups committed at once ([`Db::push_groups`]).
    pub fn leaders(db: &Db) -> usize {
        db.push_groups()
    }

    type Queues = Mutex<HashMap<usize, Queue>>;

    /// The queues, one per database (a process may open several, as the tests do).
    fn queues() -> &'static Queues {
        static Q: OnceLock<Queues> = OnceLock::new();
        Q.get_or_init(Default::default)
    }

    fn lock() -> std::sync::MutexGuard<'static, HashMap<usize, Queue>> {
        queues().lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one chunk, committed together with whatever other chunks are waiting.
    pub fn apply(
        db: &Db,
        caller: &Arc<Caller>,
        items: &[(OpHeader, Value)],
    ) -> AppResult<ChunkOut> {
        let (reply, answer) = mpsc::channel();
        let lead = {
            let mut qs = lock();
            let q = qs.entry(db.id()).or_default();
            q.jobs.push(Job {
                caller: caller.clone(),
                items: items.to_vec(),
                reply,
            });
            let lead = q.leaders < leaders(db);
            if lead {
                q.leaders += 1;
            }
            lead
        };
        if lead {
            let leader = Leader { db };
            leader.run();
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(AppError::Internal("group commit lost a chunk".into())))
    }

    /// The thread committing groups. Dropped (also by a panic), it hands the queue back: jobs
    /// still queued are dropped, so their pushers get an error rather than waiting forever.
    struct Leader<'a> {
        db: &'a Db,
    }

    impl Drop for Leader<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                lock().remove(&self.db.id());
            }
        }
    }

    impl Leader<'_> {
        fn run(&self) {
            loop {
                let jobs: Vec<Job> = {
                    let mut qs = lock();
                    let q = qs.entry(self.db.id()).or_default();
                    if q.jobs.is_empty() {
                        q.leaders = q.leaders.saturating_sub(1);
                        if q.leaders == 0 {
                            qs.remove(&self.db.id());
                        }
                        return;
                    }
                    let n = q.jobs.len().min(MAX_GROUP);
                    q.jobs.drain(..n).collect()
                };
                let mut outs: Vec<ChunkOut> = Vec::with_capacity(jobs.len());
                let committed = self.db.write_retrying(|conn| {
                    outs.clear();
                    // Everything the group touches, locked at once in one order.
                    lock_beside(conn, jobs.iter().map(|j| (&*j.caller, &j.items[..])))?;
                    for job in &jobs {
                        outs.push(apply_chunk(conn, &job.caller, &job.items)?);
                    }
                    Ok(())
                });
                match committed {
                    Ok(()) => {
                        for (job, out) in jobs.into_iter().zip(outs) {
                            let _ = job.reply.send(Ok(out));
                        }
                    }
                    Err(e) if jobs.len() == 1 => {
                        let _ = jobs[0].reply.send(Err(e));
                    }
                    // The store is away or full: no chunk is at fault, and each is told so at
                    // once (503 / 507) rather than tried again on its own.
                    Err(e @ (AppError::Unavailable | AppError::StorageFull)) => {
                        for job in jobs {
                            let _ = job.reply.send(Err(match e {
                                AppError::StorageFull => AppError::StorageFull,
                                _ => AppError::Unavailable,
                            }));
                        }
                    }
                    // A chunk failed and the group rolled back: each chunk again in a
                    // transaction of its own, so that only the one at fault fails.
                    Err(_) => {
                        for job in jobs {
                            let answer = self.db.write_retrying(|conn| {
                                apply_chunk_locked(conn, &job.caller, &job.items)
                            });
                            let _ = job.reply.send(answer);
                        }
                    }
                }
            }
        }
    }
}

fn apply_one_by_one(db: &Db, caller: &Caller, chunk: &[(OpHeader, Value)]) -> AppResult<ChunkOut> {
    let mut out = ChunkOut::default();
    for item in chunk {
        let one = std::slice::from_ref(item);
        let res = match db.write_retrying(|conn| apply_chunk_locked(conn, caller, one)) {
            Err(AppError::Internal(_)) => {
                db.write_retrying(|conn| reject_alone(conn, caller, item))?
            }
            other => other?,
        };
        out.results.extend(res.results);
        out.last_seq = res.last_seq;
        if res.stopped_at.is_some() {
            out.stopped_at = res.stopped_at;
            break;
        }
    }
    Ok(out)
}

/// Records an op the store refused as rejected, so the device is not stuck resending it.
fn reject_alone(
    conn: &mut DbConn,
    caller: &Caller,
    (h, raw): &(OpHeader, Value),
) -> AppResult<ChunkOut> {
    // Beside other pushes (PostgreSQL), the device's ledger is this transaction's alone.
    sequence::lock_keys(conn, [("device", caller.device_id.0.as_str())])?;
    let dev = store::device(conn, &caller.device_id)?;
    if h.seq != dev.last_seq + 1 {
        return apply_chunk_locked(conn, caller, &[(h.clone(), raw.clone())]);
    }
    let now = now_micros();
    let r = rejected(
        h,
        &Refusal {
            code: "storage_rejected",
            message: "the store refused a value of this op".into(),
        },
    );
    store::write_ledger(
        conn,
        &caller.device_id,
        &[LedgerEntry {
            result: &r,
            kind: &h.kind,
            payload: Some(raw),
            recorded_at: None,
        }],
        now,
    )?;
    store::advance_device(conn, &caller.device_id, h.seq, now)?;
    Ok(ChunkOut {
        results: vec![r],
        last_seq: h.seq,
        stopped_at: None,
    })
}

/// Beside other pushes (PostgreSQL): the writers' lock shared, then everything the chunks
/// touch ([`lock_names`]) in one sorted order. Nothing on SQLite, whose writer is alone.
fn lock_beside<'a>(
    conn: &mut DbConn,
    chunks: impl Iterator<Item = (&'a Caller, &'a [(OpHeader, Value)])>,
) -> AppResult<()> {
    if let DbConn::Sqlite(_) = conn {
        return Ok(());
    }
    sequence::enter(conn, Writers::Beside)?;
    sequence::lock_keys(conn, chunks.flat_map(|(c, items)| lock_names(c, items)))
}

/// [`apply_chunk`] in a transaction of its own: its locks first ([`lock_beside`]).
fn apply_chunk_locked(
    conn: &mut DbConn,
    caller: &Caller,
    items: &[(OpHeader, Value)],
) -> AppResult<ChunkOut> {
    lock_beside(conn, std::iter::once((caller, items)))?;
    apply_chunk(conn, caller, items)
}

/// What a push locks on PostgreSQL beside other pushes (`sync::sequence::lock_keys`): the
/// device (its ledger and sequence), each record an op names or refers to (so that merges and
/// logic checks read records no other push is changing), and each ID number an op sets (so
/// that two pushes creating the same person find each other).
fn lock_names<'a>(
    caller: &'a Caller,
    items: &'a [(OpHeader, Value)],
) -> impl Iterator<Item = (&'static str, String)> + 'a {
    let ops = items.iter().flat_map(|(h, raw)| {
        let entity = Entity::parse(&h.entity);
        let own = ("record", record_name(&h.entity, &h.id));
        let set = raw
            .get("set")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        let refs = set.filter_map(move |(name, v)| {
            let field = entity?.def().field(name)?;
            match field.ty {
                FieldType::Ref(target) => Some(("record", record_name(target.name(), v.as_str()?))),
                _ if name == "id_number" => Some(("id_number", v.as_str()?.trim().to_uppercase())),
                _ => None,
            }
        });
        std::iter::once(own).chain(refs)
    });
    std::iter::once(("device", caller.device_id.0.clone())).chain(ops)
}

fn record_name(entity: &str, id: &str) -> String {
    format!("{entity}/{}", id.to_ascii_lowercase())
}

#[derive(Default)]
struct ChunkOut {
    results: Vec<OpResult>,
    last_seq: i64,
    stopped_at: Option<i64>,
}

/// Applies one chunk of a device's batch as one unit of work, its locks taken
/// ([`lock_beside`]): reads (device, stored answers of duplicates, org units, records, bases,
/// duplicate candidates, checks), then the plan, then the writes (records, ledger, device).
fn apply_chunk(
    conn: &mut DbConn,
    caller: &Caller,
    items: &[(OpHeader, Value)],
) -> AppResult<ChunkOut> {
    let mut cs = Changeset::begin_as(conn, Writers::Beside)?;
    let now = cs.plan.now;
    let dev = store::device(conn, &caller.device_id)?;
    if dev.status != "active" {
        return Err(AppError::Forbidden("device_revoked"));
    }
    let seqs: Vec<i64> = items.iter().map(|(h, _)| h.seq).collect();
    let dispositions = merge::sequence(dev.last_seq, &seqs);

    let dup_seqs: Vec<i64> = items
        .iter()
        .zip(&dispositions)
        .filter(|(_, d)| **d == Disposition::Duplicate)
        .map(|((h, _), _)| h.seq)
        .collect();
    let stored: HashMap<i64, OpResult> = store::stored_results(conn, &caller.device_id, &dup_seqs)?
        .into_iter()
        .collect();

    // Parse the ops to apply; refusals are final for their op.
    let mut parsed: Vec<(usize, Result<ParsedOp, Refusal>)> = Vec::new();
    for (i, ((h, raw), d)) in items.iter().zip(&dispositions).enumerate() {
        if *d == Disposition::Apply {
            parsed.push((i, validate::parse(raw, h, now)));
        }
    }
    // Org units named by the ops must exist and be in the caller's scope.
    let named_units: BTreeSet<String> = parsed
        .iter()
        .filter_map(|(_, p)| p.as_ref().ok()?.org_unit.clone())
        .collect();
    let known_units = crate::orgunit::record_holders(conn, &named_units)?;
    for (_, p) in parsed.iter_mut() {
        if let Some(refusal) = p
            .as_ref()
            .ok()
            .and_then(|op| unit_refusal(op, &caller.scope, &known_units))
        {
            *p = Err(refusal);
        }
    }
    cs.load_ops(
        conn,
        &caller.scope,
        parsed.iter().filter_map(|(_, p)| p.as_ref().ok()),
    )?;

    // The plan, op by op.
    let actor = caller.actor();
    let mut results: Vec<Option<OpResult>> = vec![None; items.len()];
    let mut ledger_payload: Vec<Option<&Value>> = vec![None; items.len()];
    let mut recorded: Vec<Option<i64>> = vec![None; items.len()];
    for (i, p) in &parsed {
        let (h, raw) = &items[*i];
        let r = match p {
            Err(refusal) => rejected(h, refusal),
            Ok(op) => {
                recorded[*i] = Some(op.recorded_at);
                cs.plan.apply(&actor, op, h)
            }
        };
        if r.status == OpStatus::Rejected {
            ledger_payload[*i] = Some(raw);
        }
        results[*i] = Some(r);
    }

    // Duplicate persons, then logic checks on the final state of every changed record.
    let merges = cs.plan_duplicates(conn, &caller.user_id, &caller.scope)?;
    let checks = cs.evaluate(conn)?;
    for r in results.iter_mut().flatten() {
        cs.plan.complete(&checks.flags, r);
    }
    if merges > 0 {
        tracing::info!(merges, "duplicate persons merged automatically");
    }

    // The answers, in the batch's order.
    let mut last_seq = dev.last_seq;
    let mut stopped_at = None;
    let mut out_results = Vec::with_capacity(items.len());
    let mut ledger_of: Vec<(usize, usize)> = Vec::new();
    for (i, ((h, _), d)) in items.iter().zip(&dispositions).enumerate() {
        match d {
            Disposition::Duplicate => {
                let first = stored.get(&h.seq).cloned();
                out_results.push(OpResult {
                    seq: h.seq,
                    op_id: h.op_id.clone(),
                    status: OpStatus::Duplicate,
                    entity: h.entity.clone(),
                    id: h.id.clone(),
                    version: first.as_ref().and_then(|f| f.version),
                    canonical_id: first.as_ref().and_then(|f| f.canonical_id.clone()),
                    merged_into: first.as_ref().and_then(|f| f.merged_into.clone()),
                    conflicts: Vec::new(),
                    flags: Vec::new(),
                    code: None,
                    message: None,
                    retryable: None,
                    first: first.map(Box::new),
                });
            }
            Disposition::Apply => {
                let r = results[i].take().expect("every applied op has a result");
                last_seq = h.seq;
                ledger_of.push((i, out_results.len()));
                out_results.push(r);
            }
            Disposition::Gap => {
                stopped_at = Some(h.seq);
                break;
            }
        }
    }
    let ledger: Vec<LedgerEntry> = ledger_of
        .iter()
        .map(|&(i, at)| LedgerEntry {
            result: &out_results[at],
            kind: &items[i].0.kind,
            payload: ledger_payload[i],
            recorded_at: recorded[i],
        })
        .collect();

    // Writes only from here.
    cs.write(conn, &checks)?;
    store::write_ledger(conn, &caller.device_id, &ledger, now)?;
    if last_seq != dev.last_seq {
        store::advance_device(conn, &caller.device_id, last_seq, now)?;
    }
    if let Some(ms) = caller.clock_offset_ms {
        store::record_clock_offset(conn, &caller.device_id, ms)?;
    }
    Ok(ChunkOut {
        results: out_results,
        last_seq,
        stopped_at,
    })
}

/// Applies one op made by someone without a device (a supervisor's direct edit) inside the
/// caller's write transaction, through the same plan, duplicate and check path as a device's
/// op. No device ledger row is written. A refusal comes back as a `rejected` result.
pub fn apply_direct(conn: &mut DbConn, actor: &Actor, op: &ParsedOp) -> AppResult<OpResult> {
    let mut cs = Changeset::begin(conn)?;
    let h = OpHeader {
        seq: op.seq,
        op_id: op.op_id.clone(),
        entity: op.entity.name().to_string(),
        id: op.id.clone(),
        kind: match op.kind {
            merge::OpKind::Create => "create",
            merge::OpKind::Update => "update",
            merge::OpKind::Delete => "delete",
        }
        .to_string(),
    };
    let named: BTreeSet<String> = op.org_unit.iter().cloned().collect();
    let known = crate::orgunit::record_holders(conn, &named)?;
    if let Some(refusal) = unit_refusal(op, actor.scope, &known) {
        return Ok(rejected(&h, &refusal));
    }
    cs.load_ops(conn, actor.scope, std::iter::once(op))?;
    let mut result = cs.plan.apply(actor, op, &h);
    cs.plan_duplicates(conn, actor.user_id, actor.scope)?;
    let checks = cs.evaluate(conn)?;
    cs.plan.complete(&checks.flags, &mut result);
    cs.write(conn, &checks)?;
    Ok(result)
}

/// The server's date, for checks such as an overdue pregnancy outcome.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
