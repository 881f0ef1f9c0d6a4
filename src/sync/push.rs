//! The push service: applies a device's batch exactly once, in the device's order, through
//! the pure merge engine, in as few statements as the batch allows.
//!
//! A batch is processed in chunks, each one transaction: the ledger rows (`device_ops`), the
//! records, their versions, conflicts and flags are written together, so an op is either
//! wholly applied and recorded, or not at all. The answer is sent only after the commit.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::Value;

use crate::auth::scope::Scope;
use crate::db::records::{self, RecordRow, VersionRow};
use crate::db::{now_micros, Db, DbConn};
use crate::domain::entities::{Entity, FieldPolicy};
use crate::error::{AppError, AppResult};
use crate::sync::merge::{self, ConflictDraft, Current, Disposition, Fields, Outcome, Policy};
use crate::sync::protocol::{ConflictOut, OpResult, PushResponse};
use crate::sync::store::{self, Departure, LedgerEntry, NewConflict, SeqAlloc};
use crate::sync::validate::{self, OpHeader, ParsedOp, Refusal};
use crate::sync::{checks, duplicates, plan};

/// Ops per transaction: big enough to amortise the commit, small enough that a transient failure
/// late in a large batch keeps the chunks already committed.
const CHUNK: usize = 500;

/// Who is pushing.
pub struct Caller {
    pub user_id: String,
    pub device_id: String,
    pub scope: Scope,
    /// The device clock minus the server's at receipt, when the batch carried `sent_at`.
    pub clock_offset_ms: Option<i64>,
}

/// Who made an op, as the merge path needs it: a device's worker, or a supervisor editing
/// directly (no device, no device ledger).
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub device_id: Option<&'a str>,
    pub scope: &'a Scope,
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

/// The policy table of `domain::entities`, in the merge engine's terms.
pub fn policy_of(entity: Entity) -> impl Fn(&str) -> Policy {
    move |field: &str| match entity.def().field(field).map(|f| f.policy) {
        Some(FieldPolicy::Latest) => Policy::Latest,
        _ => Policy::Review,
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
    let mut stop: Option<(i64, &'static str)> = None;
    for chunk in items.chunks(CHUNK) {
        match db.write(|conn| apply_chunk(conn, caller, chunk)) {
            Ok(out) => {
                results.extend(out.results);
                last_seq = out.last_seq;
                if let Some(s) = out.stopped_at {
                    stop = Some((s, "gap"));
                    break;
                }
            }
            Err(e @ (AppError::Unavailable | AppError::StorageFull)) => {
                if results.is_empty() {
                    return Err(e);
                }
                stop = Some((chunk[0].0.seq, "transient"));
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
                    stop = Some((s, "gap"));
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
        device_id: caller.device_id.clone(),
        last_seq,
        results,
        stopped_at: stop.map(|s| s.0),
        stop_reason: stop.map(|s| s.1.to_string()),
        retry_after: stop.filter(|s| s.1 == "transient").map(|_| 5),
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
            answer = Some(apply_chunk(conn, caller, &items)?);
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
            let _ = db.write(|conn| apply_chunk(conn, &later, &items));
        });
        Ok(PushResponse {
            device_id: caller.device_id.clone(),
            last_seq: out.last_seq,
            results: out.results,
            stopped_at: out.stopped_at,
            stop_reason: out.stopped_at.map(|_| "gap".to_string()),
            retry_after: None,
        })
    }
}

fn apply_one_by_one(db: &Db, caller: &Caller, chunk: &[(OpHeader, Value)]) -> AppResult<ChunkOut> {
    let mut out = ChunkOut::default();
    for item in chunk {
        let one = std::slice::from_ref(item);
        let res = match db.write(|conn| apply_chunk(conn, caller, one)) {
            Err(AppError::Internal(_)) => db.write(|conn| reject_alone(conn, caller, item))?,
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
    let dev = store::device(conn, &caller.device_id)?;
    if h.seq != dev.last_seq + 1 {
        return apply_chunk(conn, caller, &[(h.clone(), raw.clone())]);
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

#[derive(Default)]
struct ChunkOut {
    results: Vec<OpResult>,
    last_seq: i64,
    stopped_at: Option<i64>,
}

fn rejected(h: &OpHeader, r: &Refusal) -> OpResult {
    OpResult {
        seq: h.seq,
        op_id: h.op_id.clone(),
        status: "rejected".into(),
        entity: h.entity.clone(),
        id: h.id.clone(),
        version: None,
        canonical_id: None,
        merged_into: None,
        conflicts: Vec::new(),
        flags: Vec::new(),
        code: Some(r.code.to_string()),
        message: Some(r.message.clone()),
        retryable: Some(false),
        first: None,
    }
}

type Key = (Entity, String);

/// The working set of one chunk: records as loaded, then as changed by each op in turn.
struct Work {
    state: HashMap<Key, RecordRow>,
    /// Every new version made in this chunk, in order.
    versions: Vec<(RecordRow, Option<String>)>,
    conflicts: Vec<NewConflict>,
    /// Records whose org unit changed in this chunk, for the devices of the unit they left.
    departures: Vec<Departure>,
    /// Records, out of the caller's scope now, that left it by a move: an op on one is answered
    /// `moved_out` rather than `out_of_scope`.
    left: HashSet<Key>,
    /// Snapshots of the versions the ops name as their bases, from the history.
    bases: Bases,
    alloc: SeqAlloc,
    now: i64,
}

impl plan::Held for RecordRow {
    fn org_unit(&self) -> &str {
        &self.org_unit
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn merged_into(&self) -> Option<&str> {
        self.merged_into.as_deref()
    }
    fn fields(&self) -> &Fields {
        &self.fields
    }
}

impl plan::State for Work {
    type Rec = RecordRow;
    fn record(&self, key: &Key) -> Option<&RecordRow> {
        self.state.get(key)
    }
    /// Made earlier in this chunk (so that an op sees the ops before it in the same batch, as
    /// it would in a later batch), else from the history.
    fn snapshot(&self, key: &Key, version: i64) -> Option<&Fields> {
        self.versions
            .iter()
            .rev()
            .find(|(r, _)| r.entity == key.0 && r.version == version && r.id == key.1)
            .map(|(r, _)| &r.fields)
            .or_else(|| self.bases.get(&(key.0, key.1.clone(), version)))
    }
    fn left_scope(&self, key: &Key) -> bool {
        self.left.contains(key)
    }
}

impl Work {
    fn new(alloc: SeqAlloc, now: i64) -> Work {
        Work {
            state: HashMap::new(),
            versions: Vec::new(),
            conflicts: Vec::new(),
            departures: Vec::new(),
            left: HashSet::new(),
            bases: Bases::new(),
            alloc,
            now,
        }
    }

    fn push_version(&mut self, row: RecordRow, op_id: Option<String>) {
        self.state.insert((row.entity, row.id.clone()), row.clone());
        self.versions.push((row, op_id));
    }
}

fn apply_chunk(
    conn: &mut DbConn,
    caller: &Caller,
    items: &[(OpHeader, Value)],
) -> AppResult<ChunkOut> {
    let alloc = SeqAlloc::lock(conn)?;
    let now = now_micros();
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
    let known_units = existing_units(conn, &named_units)?;
    for (_, p) in parsed.iter_mut() {
        if let Ok(op) = p {
            if let Some(u) = &op.org_unit {
                if !caller.scope.contains(u) {
                    *p = Err(Refusal {
                        code: "out_of_scope",
                        message: "org_unit is outside your villages".into(),
                    });
                } else if !known_units.contains(u) {
                    *p = Err(Refusal {
                        code: "unknown_org_unit",
                        message: "org_unit does not exist".into(),
                    });
                }
            }
        }
    }

    let mut work = Work::new(alloc, now);
    load_state(
        conn,
        &mut work,
        &caller.scope,
        parsed.iter().filter_map(|(_, p)| p.as_ref().ok()),
    )?;
    work.bases = load_bases(
        conn,
        &work,
        parsed.iter().filter_map(|(_, p)| p.as_ref().ok()),
    )?;

    let mut results: Vec<Option<OpResult>> = vec![None; items.len()];
    let mut ledger_payload: Vec<Option<&Value>> = vec![None; items.len()];
    let mut recorded: Vec<Option<i64>> = vec![None; items.len()];
    for (i, p) in &parsed {
        let (h, raw) = &items[*i];
        let r = match p {
            Err(refusal) => {
                ledger_payload[*i] = Some(raw);
                rejected(h, refusal)
            }
            Ok(op) => {
                recorded[*i] = Some(op.recorded_at);
                let r = apply_op(&mut work, &caller.actor(), op, h);
                if r.status == "rejected" {
                    ledger_payload[*i] = Some(raw);
                }
                r
            }
        };
        results[*i] = Some(r);
    }

    // Duplicate persons, then logic checks on the final state of every changed record.
    let merges = duplicates::detect_and_merge(
        conn,
        &mut work_view(&mut work),
        &caller.user_id,
        &caller.scope,
    )?;
    let flags = checks::evaluate(conn, &work.state, &changed_keys(&work))?;
    for r in results.iter_mut().flatten() {
        complete_result(&work, &flags, r);
    }
    if merges > 0 {
        tracing::info!(merges, "duplicate persons merged automatically");
    }

    // Write everything.
    let mut last_seq = dev.last_seq;
    let mut stopped_at = None;
    let mut out_results = Vec::with_capacity(items.len());
    let mut ledger = Vec::new();
    for (i, ((h, _), d)) in items.iter().zip(&dispositions).enumerate() {
        match d {
            Disposition::Duplicate => {
                let first = stored.get(&h.seq).cloned();
                out_results.push(OpResult {
                    seq: h.seq,
                    op_id: h.op_id.clone(),
                    status: "duplicate".into(),
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
                out_results.push(r);
            }
            Disposition::Gap => {
                stopped_at = Some(h.seq);
                break;
            }
        }
    }
    for (i, ((h, _), d)) in items.iter().zip(&dispositions).enumerate() {
        if *d == Disposition::Apply {
            let r = out_results
                .iter()
                .find(|r| r.seq == h.seq && r.status != "duplicate")
                .expect("applied result present");
            ledger.push(LedgerEntry {
                result: r,
                kind: &h.kind,
                payload: ledger_payload[i],
                recorded_at: recorded[i],
            });
        }
    }

    write_work(conn, &work, &flags)?;
    checks::recheck_related(conn, &work.state, &changed_keys(&work), now)?;
    store::write_ledger(conn, &caller.device_id, &ledger, now)?;
    if last_seq != dev.last_seq {
        store::advance_device(conn, &caller.device_id, last_seq, now)?;
    }
    if let Some(ms) = caller.clock_offset_ms {
        store::record_clock_offset(conn, &caller.device_id, ms)?;
    }
    work.alloc.finish(conn)?;
    Ok(ChunkOut {
        results: out_results,
        last_seq,
        stopped_at,
    })
}

/// Writes the records, versions, conflicts and flags a working set holds.
fn write_work(
    conn: &mut DbConn,
    work: &Work,
    flags: &HashMap<Key, Vec<&'static str>>,
) -> AppResult<()> {
    let finals = final_rows(work);
    records::upsert(conn, &finals)?;
    let versions: Vec<VersionRow> = work
        .versions
        .iter()
        .map(|(row, op_id)| VersionRow {
            row,
            op_id: op_id.as_deref(),
        })
        .collect();
    records::insert_versions(conn, &versions)?;
    store::insert_conflicts(conn, &work.conflicts, work.now)?;
    store::insert_departures(conn, &work.departures)?;
    let flag_rows: Vec<(&str, &str, &str, i64, Vec<&'static str>)> = flags
        .iter()
        .filter_map(|(k, codes)| {
            let row = work.state.get(k)?;
            Some((
                row.entity.name(),
                row.id.as_str(),
                row.org_unit.as_str(),
                row.version,
                codes.clone(),
            ))
        })
        .collect();
    store::set_flags(conn, &flag_rows, work.now)
}

/// Applies one op made by someone without a device (a supervisor's direct edit) inside the
/// caller's write transaction, through the same merge, duplicate and check path as a device's
/// op. No device ledger row is written. A refusal comes back as a `rejected` result.
pub fn apply_direct(conn: &mut DbConn, actor: &Actor, op: &ParsedOp) -> AppResult<OpResult> {
    let alloc = SeqAlloc::lock(conn)?;
    let now = now_micros();
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
    if let Some(u) = &op.org_unit {
        let refusal = if !actor.scope.contains(u) {
            Some(("out_of_scope", "org_unit is outside your subtree"))
        } else if !existing_units(conn, &BTreeSet::from([u.clone()]))?.contains(u) {
            Some(("unknown_org_unit", "org_unit does not exist"))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            return Ok(rejected(
                &h,
                &Refusal {
                    code,
                    message: message.into(),
                },
            ));
        }
    }
    let mut work = Work::new(alloc, now);
    load_state(conn, &mut work, actor.scope, std::iter::once(op))?;
    work.bases = load_bases(conn, &work, std::iter::once(op))?;
    let mut result = apply_op(&mut work, actor, op, &h);
    duplicates::detect_and_merge(conn, &mut work_view(&mut work), actor.user_id, actor.scope)?;
    let flags = checks::evaluate(conn, &work.state, &changed_keys(&work))?;
    complete_result(&work, &flags, &mut result);
    write_work(conn, &work, &flags)?;
    checks::recheck_related(conn, &work.state, &changed_keys(&work), now)?;
    work.alloc.finish(conn)?;
    Ok(result)
}

/// Adds to an op's result what the rest of the chunk did to its record: the logic checks it
/// fails, and `merged_into` when a duplicate merge took it away (the device learns it at once).
fn complete_result(work: &Work, flags: &HashMap<Key, Vec<&'static str>>, r: &mut OpResult) {
    if !matches!(r.status.as_str(), "applied" | "redirected") {
        return;
    }
    let Some(e) = Entity::parse(&r.entity) else {
        return;
    };
    let key = (e, r.canonical_id.clone().unwrap_or_else(|| r.id.clone()));
    if let Some(codes) = flags.get(&key) {
        r.flags = codes.iter().map(|c| c.to_string()).collect();
    }
    r.merged_into = work.state.get(&key).and_then(|row| row.merged_into.clone());
}

fn work_view(work: &mut Work) -> duplicates::WorkSet<'_> {
    duplicates::WorkSet {
        state: &mut work.state,
        versions: &mut work.versions,
        alloc: &mut work.alloc,
        now: work.now,
    }
}

fn changed_keys(work: &Work) -> Vec<Key> {
    let mut seen = BTreeSet::new();
    work.versions
        .iter()
        .map(|(r, _)| (r.entity, r.id.clone()))
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// The last state of each record changed in the chunk, once per record.
fn final_rows(work: &Work) -> Vec<RecordRow> {
    changed_keys(work)
        .into_iter()
        .filter_map(|k| work.state.get(&k).cloned())
        .collect()
}

fn existing_units(conn: &mut DbConn, units: &BTreeSet<String>) -> AppResult<BTreeSet<String>> {
    use crate::db::schema::org_units;
    use diesel::prelude::*;
    if units.is_empty() {
        return Ok(BTreeSet::new());
    }
    let list: Vec<&String> = units.iter().collect();
    let found: Vec<String> = org_units::table
        .filter(org_units::code.eq_any(list))
        .filter(org_units::level.eq_any(["village", "group"]))
        .select(org_units::code)
        .load(conn)?;
    Ok(found.into_iter().collect())
}

/// Loads every record the ops name or refer to, the targets of merge redirects among them,
/// and which of those out of `scope` left it by a move.
fn load_state<'a>(
    conn: &mut DbConn,
    work: &mut Work,
    scope: &Scope,
    ops: impl Iterator<Item = &'a ParsedOp>,
) -> AppResult<()> {
    let mut wanted: HashMap<Entity, BTreeSet<String>> = HashMap::new();
    for op in ops {
        wanted.entry(op.entity).or_default().insert(op.id.clone());
        for (_, target, id) in plan::references(op) {
            wanted.entry(target).or_default().insert(id.to_string());
        }
    }
    for _ in 0..4 {
        if wanted.is_empty() {
            break;
        }
        let mut next: HashMap<Entity, BTreeSet<String>> = HashMap::new();
        for (entity, ids) in wanted {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            for row in records::load(conn, entity, &ids)? {
                if let Some(t) = &row.merged_into {
                    if !work.state.contains_key(&(entity, t.clone())) {
                        next.entry(entity).or_default().insert(t.clone());
                    }
                }
                work.state.insert((entity, row.id.clone()), row);
            }
        }
        wanted = next;
    }
    let outside: Vec<(Entity, &str)> = work
        .state
        .values()
        .filter(|r| !scope.contains(&r.org_unit))
        .map(|r| (r.entity, r.id.as_str()))
        .collect();
    if !outside.is_empty() {
        let left = store::left_scope(conn, &outside, scope)?;
        work.left.extend(left);
    }
    Ok(())
}

type Bases = HashMap<(Entity, String, i64), Fields>;

/// The version-history snapshots the ops' base versions name, where they differ from the
/// record's current version.
fn load_bases<'a>(
    conn: &mut DbConn,
    work: &Work,
    ops: impl Iterator<Item = &'a ParsedOp>,
) -> AppResult<Bases> {
    let mut wanted: HashMap<Entity, BTreeSet<(String, i64)>> = HashMap::new();
    for op in ops {
        if let (Some(b), Some(cur)) = (op.base_version, work.state.get(&(op.entity, op.id.clone())))
        {
            if b > 0 && b <= cur.version {
                wanted
                    .entry(op.entity)
                    .or_default()
                    .insert((op.id.clone(), b));
            }
        }
    }
    let mut out = Bases::new();
    for (entity, keys) in wanted {
        let keys: Vec<(&str, i64)> = keys.iter().map(|(id, v)| (id.as_str(), *v)).collect();
        for ((id, v), fields) in records::load_bases(conn, entity, &keys)? {
            out.insert((entity, id, v), fields);
        }
    }
    Ok(out)
}

fn conflict_out(entity: Entity, record_id: &str, c: &ConflictDraft) -> ConflictOut {
    ConflictOut {
        id: uuid::Uuid::now_v7().to_string(),
        entity: entity.name().to_string(),
        record_id: record_id.to_string(),
        field: c.field.clone(),
        kind: wire_name(&c.kind),
        policy: wire_name(&c.policy),
        status: wire_name(&c.status),
        winner: wire_name(&c.winner),
        base_value: c.base.clone(),
        server_value: c.server.clone(),
        device_value: c.device.clone(),
    }
}

/// The wire name of one of the merge engine's enums: its serde (snake_case) name.
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => unreachable!("the merge engine's enums serialise as strings"),
    }
}

/// Applies one parsed op to the working set and says what happened: where it lands and
/// against which base is planned by `plan::target`, the merge is `merge::merge_from`.
fn apply_op(work: &mut Work, caller: &Actor, op: &ParsedOp, h: &OpHeader) -> OpResult {
    let plan::Target {
        key,
        redirected,
        base,
    } = match plan::target(&*work, caller.scope, op) {
        Ok(t) => t,
        Err(refusal) => return rejected(h, &refusal),
    };
    let current_row = work.state.get(&key).cloned();
    let current = current_row.as_ref().map(|r| Current {
        version: r.version,
        deleted: r.deleted,
        fields: r.fields.clone(),
        stamps: r.stamps.clone(),
    });
    let merge_op = merge::Op {
        kind: op.kind,
        base_version: op.base_version,
        set: &op.set,
        recorded_at: op.recorded_at,
    };
    let policy = policy_of(op.entity);
    let outcome = merge::merge_from(current.as_ref(), base, &merge_op, &policy);
    let (next, drafts) = match outcome {
        Outcome::Rejected { code, message } => return rejected(h, &Refusal { code, message }),
        Outcome::Applied { next, conflicts } => (next, conflicts),
    };
    let moved = op
        .org_unit
        .as_ref()
        .filter(|u| current_row.as_ref().is_some_and(|c| &c.org_unit != *u));
    let mut version = current_row.as_ref().map_or(0, |c| c.version);
    let record_id = key.1.clone();
    let org_unit = op
        .org_unit
        .clone()
        .or_else(|| current_row.as_ref().map(|c| c.org_unit.clone()))
        .unwrap_or_default();
    let moved_from = moved.and(current_row.as_ref()).map(|c| c.org_unit.clone());
    if next.is_some() || moved.is_some() {
        let change_seq = work.alloc.alloc();
        let (fields, stamps, deleted, new_version) = match next {
            Some(n) => (n.fields, n.stamps, n.deleted, n.version),
            None => {
                let c = current_row.as_ref().expect("a move needs a record");
                (c.fields.clone(), c.stamps.clone(), c.deleted, c.version + 1)
            }
        };
        let row = RecordRow {
            entity: op.entity,
            id: record_id.clone(),
            org_unit: org_unit.clone(),
            version: new_version,
            change_seq,
            deleted,
            merged_into: current_row.as_ref().and_then(|c| c.merged_into.clone()),
            fields,
            stamps,
            created_at: current_row.as_ref().map_or(work.now, |c| c.created_at),
            updated_at: work.now,
            recorded_at: op.recorded_at,
            created_by: current_row
                .as_ref()
                .map_or_else(|| caller.user_id.to_string(), |c| c.created_by.clone()),
            updated_by: caller.user_id.to_string(),
            updated_device: caller.device_id.map(str::to_string),
        };
        version = row.version;
        if let Some(from) = moved_from {
            work.departures.push(Departure {
                entity: row.entity,
                record_id: row.id.clone(),
                version: row.version,
                from_org_unit: from,
                to_org_unit: row.org_unit.clone(),
                change_seq: row.change_seq,
            });
        }
        work.push_version(row, Some(op.op_id.clone()));
    }
    let conflicts: Vec<ConflictOut> = drafts
        .iter()
        .map(|d| conflict_out(op.entity, &record_id, d))
        .collect();
    for c in &conflicts {
        let seq = work.alloc.alloc();
        work.conflicts.push(NewConflict {
            out: c.clone(),
            org_unit: org_unit.clone(),
            base_version: op.base_version,
            server_version: version,
            device_id: caller.device_id.map(str::to_string),
            user_id: caller.user_id.to_string(),
            op_id: Some(op.op_id.clone()),
            recorded_at: op.recorded_at,
            change_seq: seq,
        });
    }
    OpResult {
        seq: op.seq,
        op_id: op.op_id.clone(),
        status: if redirected { "redirected" } else { "applied" }.into(),
        entity: op.entity.name().to_string(),
        id: op.id.clone(),
        version: Some(version),
        canonical_id: redirected.then(|| record_id.clone()),
        merged_into: None,
        conflicts,
        flags: Vec::new(),
        code: None,
        message: None,
        retryable: None,
        first: None,
    }
}

/// The server's date, for checks such as an overdue pregnancy outcome.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
