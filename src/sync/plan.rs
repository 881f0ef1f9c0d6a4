//! The pure decisions of the push path (and of a supervisor's change), between loading and
//! writing (`sync::changeset`). Given the loaded state (records, base snapshots, moves out of
//! scope, duplicate candidates and their dismissals), the caller's scope and the policy table,
//! a [`Plan`] works out, op by op: where the op lands (following merge redirects), whether the
//! caller may write it (scope, a move out of scope, references, org units), the base it is
//! merged against, the merge, the records to write with their versions and change sequence
//! numbers, conflicts, departures from a unit, and then the duplicate persons to merge (only
//! inside the caller's scope) or to queue, and the keys whose logic checks must run.
//! No database, no I/O, no clock (the time is given); new conflict and merge ids are minted
//! here, and nothing depends on them.
//!
//! Bases are values ([`Base`]), never worked out by version arithmetic, and they come from
//! [`State::snapshot`], which sees versions made earlier in the same batch: the result of a batch
//! does not depend on where it was split.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};

use crate::auth::scope::Scope;
use crate::domain::entities::{Entity, FieldPolicy, FieldType, ENTITIES};
use crate::domain::record::RecordRow;
use crate::domain::resident_id::{IdError, ResidentId};
use crate::sync::merge::{self, Base, Current, Fields, Outcome, Policy};
use crate::sync::protocol::{ConflictOut, DeviceId, OpResult, OpStatus, OrgUnit, RecordId};
use crate::sync::validate::{OpHeader, ParsedOp, Refusal};

/// A record by type and id.
pub type Key = (Entity, String);

/// What the planner reads of a record the server holds.
pub trait Held {
    fn org_unit(&self) -> &str;
    fn version(&self) -> i64;
    fn merged_into(&self) -> Option<&str>;
    fn fields(&self) -> &Fields;
}

/// A batch's state as the planner sees it: records as the ops so far left them.
pub trait State {
    type Rec: Held;
    fn record(&self, key: &Key) -> Option<&Self::Rec>;
    /// The fields of `version` of a record: made earlier in this batch, or from the history.
    fn snapshot(&self, key: &Key, version: i64) -> Option<&Fields>;
    /// Whether the record, now outside the caller's scope, left it by a move.
    fn left_scope(&self, key: &Key) -> bool;
}

/// Where an op lands and what it is merged against.
#[derive(Debug, PartialEq)]
pub struct Target<'s> {
    /// The record the op is applied to: the survivor when the named record was merged away.
    pub key: Key,
    pub redirected: bool,
    pub base: Base<'s>,
}

/// Longest chain of merge redirects followed (a survivor merged again, and so on).
const MAX_REDIRECTS: usize = 8;

/// Follows merge redirects from `key` to the record that now holds its data.
pub fn canonical<S: State>(state: &S, key: &Key) -> Key {
    let mut k = key.clone();
    for _ in 0..MAX_REDIRECTS {
        match state.record(&k).and_then(|r| r.merged_into()) {
            Some(t) => k = (k.0, t.to_string()),
            None => break,
        }
    }
    k
}

pub fn refusal(code: &'static str, message: &str) -> Refusal {
    Refusal {
        code,
        message: message.to_string(),
    }
}

/// Decides where `op` lands and against which base, or why it is refused:
/// - a record outside `scope` is `moved_out` when it left the scope by a move (the device held
///   it legitimately), else `out_of_scope`;
/// - a reference to a record outside `scope`, or to none, is `bad_reference` (one answer for
///   both, so it says nothing of whether the record exists);
/// - the base is the one the op names on the record it names: for a redirected op that is the
///   merged-away record, whose state the device saw, never the survivor's current state.
pub fn target<'s, S: State>(
    state: &'s S,
    scope: &Scope,
    op: &ParsedOp,
) -> Result<Target<'s>, Refusal> {
    let asked = (op.entity, op.id.clone());
    let key = canonical(state, &asked);
    let redirected = key != asked;
    let current = state.record(&key);
    if let Some(cur) = current {
        if !scope.contains(cur.org_unit()) {
            return Err(if state.left_scope(&key) || state.left_scope(&asked) {
                refusal(
                    "moved_out",
                    "the record was moved out of your villages; the op is kept for the supervisor",
                )
            } else {
                refusal("out_of_scope", "the record belongs to another village")
            });
        }
    }
    if let Some(field) = bad_reference(state, scope, op, current.map(Held::fields)) {
        return Err(Refusal {
            code: "bad_reference",
            message: format!("{field} does not name a record in your villages"),
        });
    }
    let base = match (state.record(&asked), op.kind) {
        (_, merge::OpKind::Create) | (None, _) => Base::Empty,
        (Some(seen), _) => {
            let snapshot = op
                .base_version
                .filter(|b| *b != seen.version())
                .and_then(|b| state.snapshot(&asked, b));
            match merge::base_of(seen.version(), op.base_version, snapshot) {
                Ok(Base::Current) if redirected => Base::Snapshot(seen.fields()),
                Ok(base) => base,
                Err(Outcome::Rejected { code, message }) => return Err(Refusal { code, message }),
                Err(Outcome::Applied { .. }) => unreachable!("base_of only rejects"),
            }
        }
    };
    Ok(Target {
        key,
        redirected,
        base,
    })
}

/// The records an op's `set` points at: (field, record type, id) of each reference it sets.
pub fn references(op: &ParsedOp) -> impl Iterator<Item = (&str, Entity, &str)> + '_ {
    op.set.iter().filter_map(|(name, value)| {
        let target = match op.entity.def().field(name)?.ty {
            FieldType::Ref(target) => target,
            _ => return None,
        };
        Some((name.as_str(), target, value.as_str()?))
    })
}

/// The first reference field the op sets to a record that is not in `scope` (or not there at
/// all). A reference the record already holds is not the op's doing and passes.
fn bad_reference<'o, S: State>(
    state: &S,
    scope: &Scope,
    op: &'o ParsedOp,
    current: Option<&Fields>,
) -> Option<&'o str> {
    references(op).find_map(|(field, target, id)| {
        let held = current.is_some_and(|c| c.get(field).and_then(Value::as_str) == Some(id));
        let visible = state
            .record(&(target, id.to_string()))
            .is_some_and(|r| scope.contains(r.org_unit()));
        (!held && !visible).then_some(field)
    })
}

/// Who made an op, as the planner needs it: a device's worker, or a supervisor editing
/// directly (no device, no device ledger).
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub device_id: Option<&'a DeviceId>,
    pub scope: &'a Scope,
}

/// The policy table of `domain::entities`, in the merge engine's terms.
pub fn policy_of(entity: Entity) -> impl Fn(&str) -> Policy {
    move |field: &str| match entity.def().field(field).map(|f| f.policy) {
        Some(FieldPolicy::Latest) => Policy::Latest,
        _ => Policy::Review,
    }
}

/// The answer for an op that is refused.
pub fn rejected(h: &OpHeader, r: &Refusal) -> OpResult {
    OpResult {
        seq: h.seq,
        op_id: h.op_id.clone(),
        status: OpStatus::Rejected,
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

/// Scope refusal of the org unit an op names (on create, or to move the record): outside the
/// caller's scope, or not an existing village or group (`known`, loaded for the batch).
pub fn unit_refusal(op: &ParsedOp, scope: &Scope, known: &BTreeSet<String>) -> Option<Refusal> {
    let u = op.org_unit.as_ref()?;
    if !scope.contains(u) {
        Some(refusal("out_of_scope", "org_unit is outside your villages"))
    } else if !known.contains(u) {
        Some(refusal("unknown_org_unit", "org_unit does not exist"))
    } else {
        None
    }
}

/// A conflict row about to be stored.
pub struct NewConflict {
    pub out: ConflictOut,
    pub org_unit: OrgUnit,
    pub base_version: Option<i64>,
    pub server_version: i64,
    pub device_id: Option<DeviceId>,
    pub user_id: String,
    pub op_id: Option<String>,
    pub recorded_at: i64,
    pub change_seq: i64,
}

/// A record's move from one org unit to another, kept for the devices of the unit it left.
pub struct Departure {
    pub entity: Entity,
    pub record_id: RecordId,
    pub version: i64,
    pub from_org_unit: OrgUnit,
    pub to_org_unit: OrgUnit,
    pub change_seq: i64,
}

/// A merge of two persons, for the `person_merges` table (and the candidate it settles).
#[derive(Debug)]
pub struct PersonMerge {
    pub id: String,
    pub survivor: RecordId,
    pub merged: RecordId,
    /// Both persons and the re-pointed references as they were, and the versions the merge left.
    pub snapshot: Value,
    pub by: String,
    pub automatic: bool,
    pub at: i64,
}

/// A pair of persons sharing an ID number that waits for a supervisor of `org_unit`.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub a: RecordId,
    pub b: RecordId,
    /// The lowest unit holding both ([`common_unit`]).
    pub org_unit: OrgUnit,
}

/// Why two persons cannot be merged.
#[derive(Debug, PartialEq)]
pub enum MergeRefusal {
    NotFound,
    NotLive,
}

type Bases = HashMap<(Entity, String, i64), Fields>;

/// One unit of work in memory: the records as loaded, then as each op (or merge, or
/// supervisor's change) left them, and everything to write.
#[derive(Default)]
pub struct Plan {
    pub now: i64,
    /// The last change sequence number handed out.
    last_seq: i64,
    /// Loaded records, and changed records at their newest state.
    pub records: HashMap<Key, RecordRow>,
    /// Every new version made, in order, with the op that made it.
    pub versions: Vec<(RecordRow, Option<String>)>,
    pub conflicts: Vec<NewConflict>,
    /// Records whose org unit changed, for the devices of the unit they left.
    pub departures: Vec<Departure>,
    /// Records, out of the caller's scope now, that left it by a move: an op on one is answered
    /// `moved_out` rather than `out_of_scope`.
    pub left: HashSet<Key>,
    /// Snapshots of the versions the ops name as their bases, from the history.
    pub bases: Bases,
    /// Pairs of persons a supervisor said are different people (ordered ids).
    pub dismissed: HashSet<(String, String)>,
    /// Stored records referring to a person, by person id: (record, reference field).
    pub children: HashMap<String, Vec<(Key, &'static str)>>,
    pub merges: Vec<PersonMerge>,
    pub candidates: Vec<Candidate>,
}

impl State for Plan {
    type Rec = RecordRow;
    fn record(&self, key: &Key) -> Option<&RecordRow> {
        self.records.get(key)
    }
    /// Made earlier in this unit of work (so that an op sees the ops before it in the same
    /// batch, as it would in a later batch), else from the history.
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

impl Held for RecordRow {
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

/// Whether a stored ID number can name a person: a malformed one (flagged `id_format`) is a
/// typo, and two persons sharing the same typo are not the same person. A well-formed number
/// with a wrong check digit still matches: it is usually the same number copied twice.
pub fn matchable(number: &str) -> bool {
    matches!(ResidentId::parse(number), Ok(_) | Err(IdError::CheckDigit))
}

/// Fields both persons hold with different values.
pub fn disagreements(a: &RecordRow, b: &RecordRow) -> Vec<String> {
    a.fields
        .iter()
        .filter(|(k, v)| b.fields.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The lowest org unit whose subtree holds both units: a supervisor whose scope contains it
/// sees both persons. Codes nest by prefix (DOMAIN.md): county 6 digits, township 9, village 12,
/// a group the village code and a suffix.
pub fn common_unit(a: &str, b: &str) -> String {
    if b.starts_with(a) {
        return a.to_string();
    }
    if a.starts_with(b) {
        return b.to_string();
    }
    [12, 9, 6]
        .into_iter()
        .find_map(|n| match (a.get(..n), b.get(..n)) {
            (Some(x), Some(y)) if x == y => Some(x.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A pair of ids in the order the duplicate tables keep them.
pub fn ordered<'s>(a: &'s str, b: &'s str) -> (&'s str, &'s str) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Plan {
    /// An empty plan whose change sequence continues after `last_seq`, made at `now`.
    pub fn new(last_seq: i64, now: i64) -> Plan {
        Plan {
            now,
            last_seq,
            ..Plan::default()
        }
    }

    /// The next change sequence number: every new version and conflict takes one, in order.
    pub fn alloc(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// The last change sequence number handed out.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Adds a loaded record unless this plan holds a newer state of it.
    pub fn load(&mut self, row: RecordRow) {
        self.records
            .entry((row.entity, row.id.clone()))
            .or_insert(row);
    }

    fn push_version(&mut self, row: RecordRow, op_id: Option<String>) -> RecordRow {
        self.records
            .insert((row.entity, row.id.clone()), row.clone());
        self.versions.push((row.clone(), op_id));
        row
    }

    /// Stores `row` as the record's next version, made by `by` (a merge, not a device).
    pub fn merge_version(&mut self, mut row: RecordRow, by: &str) -> RecordRow {
        row.version += 1;
        row.change_seq = self.alloc();
        row.updated_at = self.now;
        row.updated_by = by.to_string();
        row.updated_device = None;
        self.push_version(row, None)
    }

    /// Stores `row` as the record's next version, made and recorded by supervisor `by` now.
    pub fn supervisor_version(&mut self, mut row: RecordRow, by: &str) -> RecordRow {
        row.recorded_at = self.now;
        self.merge_version(row, by)
    }

    /// Records changed in this plan, once each, in the order of their first change: the keys
    /// whose logic checks run, and whose final state is written.
    pub fn changed_keys(&self) -> Vec<Key> {
        let mut seen = BTreeSet::new();
        self.versions
            .iter()
            .map(|(r, _)| (r.entity, r.id.clone()))
            .filter(|k| seen.insert(k.clone()))
            .collect()
    }

    /// The last state of each record changed, once per record.
    pub fn final_rows(&self) -> Vec<RecordRow> {
        self.changed_keys()
            .into_iter()
            .filter_map(|k| self.records.get(&k).cloned())
            .collect()
    }

    /// Applies one parsed op and says what happened: where it lands and against which base
    /// ([`target`]), the merge (`merge::merge_from`), the new version, a departure when the op
    /// moves the record, the conflicts.
    pub fn apply(&mut self, actor: &Actor, op: &ParsedOp, h: &OpHeader) -> OpResult {
        let Target {
            key,
            redirected,
            base,
        } = match target(&*self, actor.scope, op) {
            Ok(t) => t,
            Err(refusal) => return rejected(h, &refusal),
        };
        let current_row = self.records.get(&key).cloned();
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
        let outcome = merge::merge_from(current.as_ref(), base, &merge_op, &policy_of(op.entity));
        let (next, drafts) = match outcome {
            Outcome::Rejected { code, message } => return rejected(h, &Refusal { code, message }),
            Outcome::Applied { next, conflicts } => (next, conflicts),
        };
        let moved_from = current_row
            .as_ref()
            .filter(|c| op.org_unit.as_ref().is_some_and(|u| *u != c.org_unit))
            .map(|c| c.org_unit.clone());
        let mut version = current_row.as_ref().map_or(0, |c| c.version);
        let record_id = key.1.clone();
        let org_unit = op
            .org_unit
            .clone()
            .or_else(|| current_row.as_ref().map(|c| c.org_unit.clone()))
            .unwrap_or_default();
        if next.is_some() || moved_from.is_some() {
            let change_seq = self.alloc();
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
                created_at: current_row.as_ref().map_or(self.now, |c| c.created_at),
                updated_at: self.now,
                recorded_at: op.recorded_at,
                created_by: current_row
                    .as_ref()
                    .map_or_else(|| actor.user_id.to_string(), |c| c.created_by.clone()),
                updated_by: actor.user_id.to_string(),
                updated_device: actor.device_id.map(|d| d.to_string()),
            };
            version = row.version;
            if let Some(from) = moved_from {
                self.departures.push(Departure {
                    entity: row.entity,
                    record_id: row.id.as_str().into(),
                    version: row.version,
                    from_org_unit: from.into(),
                    to_org_unit: row.org_unit.as_str().into(),
                    change_seq: row.change_seq,
                });
            }
            self.push_version(row, Some(op.op_id.clone()));
        }
        let conflicts: Vec<ConflictOut> = drafts
            .into_iter()
            .map(|d| ConflictOut::from_draft(op.entity, &record_id, d))
            .collect();
        for c in &conflicts {
            let change_seq = self.alloc();
            self.conflicts.push(NewConflict {
                out: c.clone(),
                org_unit: org_unit.as_str().into(),
                base_version: op.base_version,
                server_version: version,
                device_id: actor.device_id.cloned(),
                user_id: actor.user_id.to_string(),
                op_id: Some(op.op_id.clone()),
                recorded_at: op.recorded_at,
                change_seq,
            });
        }
        OpResult {
            seq: op.seq,
            op_id: op.op_id.clone(),
            status: if redirected {
                OpStatus::Redirected
            } else {
                OpStatus::Applied
            },
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

    /// Adds to an op's result what the rest of the plan did to its record: the logic checks it
    /// fails, and `merged_into` when a duplicate merge took it away (the device learns it at once).
    pub fn complete(&self, flags: &HashMap<Key, Vec<&'static str>>, r: &mut OpResult) {
        if !r.status.landed() {
            return;
        }
        let Some(e) = Entity::parse(&r.entity) else {
            return;
        };
        let key = (e, r.canonical_id.clone().unwrap_or_else(|| r.id.clone()));
        if let Some(codes) = flags.get(&key) {
            r.flags = codes.iter().map(|c| c.to_string()).collect();
        }
        r.merged_into = self
            .records
            .get(&key)
            .and_then(|row| row.merged_into.clone());
    }

    /// The matchable ID numbers of the live persons changed in this plan: the duplicate
    /// candidates to load are the live persons holding one of them.
    pub fn changed_person_numbers(&self) -> BTreeSet<String> {
        self.changed_keys()
            .iter()
            .filter(|k| k.0 == Entity::Person)
            .filter_map(|k| self.records.get(k))
            .filter(|r| r.live())
            .filter_map(|r| r.fields.get("id_number").and_then(Value::as_str))
            .filter(|n| matchable(n))
            .map(str::to_string)
            .collect()
    }

    /// The live persons of this plan holding `number`, survivor first: the person registered
    /// first.
    pub fn group(&self, number: &str) -> Vec<RecordRow> {
        let mut group: Vec<RecordRow> = self
            .records
            .values()
            .filter(|r| r.entity == Entity::Person && r.live())
            .filter(|r| r.fields.get("id_number").and_then(Value::as_str) == Some(number))
            .cloned()
            .collect();
        group.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        group
    }

    /// Duplicate persons: for every live person changed in this plan, the live persons sharing
    /// its ID number (loaded with [`Plan::load`] beforehand, with the pairs dismissed and the
    /// children of each). A pair wholly inside `scope` (the scope of whoever made the change)
    /// whose fields agree is merged at once; any other pair is queued for the lowest org unit
    /// holding both (the county, for persons of two townships), whose supervisor sees both: a
    /// worker's registration never writes to, or reveals, a person outside the worker's villages.
    /// Returns the merges made.
    pub fn plan_duplicates(&mut self, by: &str, scope: &Scope) -> usize {
        let mut merges = 0;
        for number in self.changed_person_numbers() {
            let group = self.group(&number);
            let Some((first, rest)) = group.split_first() else {
                continue;
            };
            for other in rest {
                let survivor = self.records[&(Entity::Person, first.id.clone())].clone();
                let pair = ordered(&survivor.id, &other.id);
                if self
                    .dismissed
                    .contains(&(pair.0.to_string(), pair.1.to_string()))
                {
                    // A supervisor decided (or undid a merge) that these are two persons.
                    continue;
                }
                let within = scope.contains(&survivor.org_unit) && scope.contains(&other.org_unit);
                if within && disagreements(&survivor, other).is_empty() {
                    if self
                        .merge_persons(&survivor.id, &other.id, by, true, &BTreeMap::new())
                        .is_ok()
                    {
                        merges += 1;
                    }
                } else {
                    let (a, b) = if survivor.id < other.id {
                        (&survivor, other)
                    } else {
                        (other, &survivor)
                    };
                    let candidate = Candidate {
                        a: a.id.as_str().into(),
                        b: b.id.as_str().into(),
                        org_unit: common_unit(&a.org_unit, &b.org_unit).into(),
                    };
                    if !self.candidates.contains(&candidate) {
                        self.candidates.push(candidate);
                    }
                }
            }
        }
        merges
    }

    /// Records of any type whose person reference points at `person_id` now: the stored ones
    /// loaded into [`Plan::children`] at their newest state, and those of this plan.
    fn children_of(&self, person_id: &str) -> Vec<(RecordRow, &'static str)> {
        let loaded = self.children.get(person_id).map_or(&[][..], Vec::as_slice);
        let mut out: Vec<(RecordRow, &'static str)> = Vec::new();
        for def in ENTITIES {
            for field in def.refs_to(Entity::Person) {
                for (key, f) in loaded {
                    if key.0 == def.entity && *f == field.name {
                        if let Some(row) = self.records.get(key) {
                            out.push((row.clone(), field.name));
                        }
                    }
                }
                let mut here: Vec<&RecordRow> = self
                    .records
                    .values()
                    .filter(|row| {
                        row.entity == def.entity
                            && row.fields.get(field.name).and_then(Value::as_str) == Some(person_id)
                    })
                    .collect();
                here.sort_by(|a, b| a.id.cmp(&b.id));
                for row in here {
                    if !out.iter().any(|(o, f)| o.id == row.id && *f == field.name) {
                        out.push((row.clone(), field.name));
                    }
                }
            }
        }
        out.into_iter()
            .filter(|(r, f)| r.fields.get(*f).and_then(Value::as_str) == Some(person_id))
            .collect()
    }

    /// Merges person `merged_id` into `survivor_id`. `choices` names, per field, whose value the
    /// survivor keeps (`merged` takes the merged person's; any other answer, or none, keeps the
    /// survivor's); fields the survivor lacks are filled from the merged person either way. The
    /// merged person becomes a tombstone with `merged_into`, and every record referring to it
    /// is re-pointed (each gets a new version, so devices receive it). Both persons and the
    /// children must be in the plan (loaded). Returns the merge's id. Its snapshot holds both
    /// persons and the re-pointed references as they were, and (`after`) the version of each
    /// record the merge left, so that an undo can merge its changes back three-way.
    pub fn merge_persons(
        &mut self,
        survivor_id: &str,
        merged_id: &str,
        by: &str,
        automatic: bool,
        choices: &BTreeMap<String, String>,
    ) -> Result<String, MergeRefusal> {
        let get = |p: &Plan, id: &str| p.records.get(&(Entity::Person, id.to_string())).cloned();
        let (Some(survivor), Some(merged)) = (get(self, survivor_id), get(self, merged_id)) else {
            return Err(MergeRefusal::NotFound);
        };
        if !survivor.live() || !merged.live() || survivor.id == merged.id {
            return Err(MergeRefusal::NotLive);
        }
        let children = self.children_of(merged_id);
        let mut snapshot = json!({
            "survivor": {"version": survivor.version, "fields": survivor.fields},
            "merged": {"version": merged.version, "fields": merged.fields, "org_unit": merged.org_unit},
            "children": children.iter().map(|(r, f)| json!([r.entity.name(), r.id, f])).collect::<Vec<_>>(),
        });
        let mut filled = survivor.clone();
        for (k, v) in &merged.fields {
            if !filled.fields.contains_key(k) {
                filled.fields.insert(k.clone(), v.clone());
                if let Some(s) = merged.stamps.get(k) {
                    filled.stamps.insert(k.clone(), *s);
                }
            }
        }
        for (field, side) in choices {
            if side == "merged" {
                match merged.fields.get(field) {
                    Some(v) => filled.fields.insert(field.clone(), v.clone()),
                    None => filled.fields.remove(field),
                };
                filled.stamps.insert(field.clone(), self.now);
            }
        }
        if filled.fields != survivor.fields {
            self.merge_version(filled, by);
        }
        let mut gone = merged.clone();
        gone.deleted = true;
        gone.merged_into = Some(survivor_id.to_string());
        self.merge_version(gone, by);
        for (mut child, field) in children.iter().cloned() {
            // The newest state: a record with two references to the merged person changes twice.
            if let Some(newer) = self.records.get(&(child.entity, child.id.clone())) {
                child = newer.clone();
            }
            child
                .fields
                .insert(field.to_string(), Value::String(survivor_id.to_string()));
            self.merge_version(child, by);
        }
        let version_of =
            |e: Entity, id: &str| self.records.get(&(e, id.to_string())).map(|r| r.version);
        snapshot["after"] = json!({
            "survivor": version_of(Entity::Person, survivor_id),
            "merged": version_of(Entity::Person, merged_id),
            "children": children
                .iter()
                .map(|(r, f)| json!([r.entity.name(), r.id, f, version_of(r.entity, &r.id)]))
                .collect::<Vec<_>>(),
        });
        let id = uuid::Uuid::now_v7().to_string();
        self.merges.push(PersonMerge {
            id: id.clone(),
            survivor: survivor_id.into(),
            merged: merged_id.into(),
            snapshot,
            by: by.to_string(),
            automatic,
            at: self.now,
        });
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::sync::merge::{Current, OpKind, Policy};

    const V1: &str = "130131102201";
    const V2: &str = "130131102202";
    const V3: &str = "130131103201";

    #[derive(Clone, Debug)]
    struct Rec {
        org_unit: String,
        current: Current,
        merged_into: Option<String>,
    }

    impl Held for Rec {
        fn org_unit(&self) -> &str {
            &self.org_unit
        }
        fn version(&self) -> i64 {
            self.current.version
        }
        fn merged_into(&self) -> Option<&str> {
            self.merged_into.as_deref()
        }
        fn fields(&self) -> &Fields {
            &self.current.fields
        }
    }

    /// A server in memory: records, every version's fields, moves out of scope.
    #[derive(Default)]
    struct Mem {
        records: HashMap<Key, Rec>,
        history: HashMap<(Key, i64), Fields>,
        left: HashSet<Key>,
    }

    impl State for Mem {
        type Rec = Rec;
        fn record(&self, key: &Key) -> Option<&Rec> {
            self.records.get(key)
        }
        fn snapshot(&self, key: &Key, version: i64) -> Option<&Fields> {
            self.history.get(&(key.clone(), version))
        }
        fn left_scope(&self, key: &Key) -> bool {
            self.left.contains(key)
        }
    }

    impl Mem {
        fn put(&mut self, id: &str, org_unit: &str, fields: Fields, merged_into: Option<&str>) {
            let key = (Entity::Person, id.to_string());
            let version = self.records.get(&key).map_or(1, |r| r.current.version + 1);
            self.history.insert((key.clone(), version), fields.clone());
            self.records.insert(
                key,
                Rec {
                    org_unit: org_unit.into(),
                    current: Current {
                        version,
                        deleted: merged_into.is_some(),
                        fields,
                        stamps: Default::default(),
                    },
                    merged_into: merged_into.map(str::to_string),
                },
            );
        }

        /// Plans and merges one op, then stores the result as the push service does.
        fn apply(&mut self, scope: &Scope, op: &ParsedOp) -> Result<Outcome, Refusal> {
            let t = target(self, scope, op)?;
            let current = self.records.get(&t.key).map(|r| r.current.clone());
            let merge_op = merge::Op {
                kind: op.kind,
                base_version: op.base_version,
                set: &op.set,
                recorded_at: op.recorded_at,
            };
            let outcome =
                merge::merge_from(current.as_ref(), t.base, &merge_op, &|_| Policy::Review);
            let key = t.key;
            if let Outcome::Applied {
                next: Some(next), ..
            } = &outcome
            {
                let org_unit = op
                    .org_unit
                    .clone()
                    .or_else(|| self.records.get(&key).map(|r| r.org_unit.clone()))
                    .unwrap_or_default();
                self.history
                    .insert((key.clone(), next.version), next.fields.clone());
                self.records.insert(
                    key,
                    Rec {
                        org_unit,
                        current: next.clone(),
                        merged_into: None,
                    },
                );
            }
            Ok(outcome)
        }
    }

    fn fields(v: serde_json::Value) -> Fields {
        serde_json::from_value(v).unwrap()
    }

    fn op(id: &str, kind: OpKind, base: Option<i64>, set: Fields) -> ParsedOp {
        ParsedOp {
            seq: 1,
            op_id: "op".into(),
            entity: Entity::Person,
            id: id.into(),
            kind,
            base_version: base,
            set,
            org_unit: matches!(kind, OpKind::Create).then(|| V1.to_string()),
            recorded_at: 1,
        }
    }

    fn visit(person: &str) -> ParsedOp {
        ParsedOp {
            seq: 1,
            op_id: "op".into(),
            entity: Entity::Visit,
            id: "visit".into(),
            kind: OpKind::Create,
            base_version: None,
            set: fields(json!({"person_id": person, "kind": "iud_check"})),
            org_unit: Some(V1.into()),
            recorded_at: 1,
        }
    }

    #[test]
    fn a_redirected_op_is_merged_on_the_merged_away_record_it_was_made_on() {
        let mut m = Mem::default();
        m.put("s", V1, fields(json!({"name": "a", "phone": "1"})), None);
        m.put("g", V1, fields(json!({"name": "a"})), None);
        m.put("g", V1, fields(json!({"name": "a"})), Some("s"));
        let scope = Scope::new(vec![V1.into()]);
        let t = target(
            &m,
            &scope,
            &op("g", OpKind::Update, Some(1), fields(json!({"name": "b"}))),
        )
        .unwrap();
        assert_eq!(t.key, (Entity::Person, "s".into()));
        assert!(t.redirected);
        assert_eq!(t.base, Base::Snapshot(&fields(json!({"name": "a"}))));
    }

    #[test]
    fn a_record_that_left_by_a_move_is_moved_out_and_any_other_foreign_one_out_of_scope() {
        let mut m = Mem::default();
        m.put("moved", V2, Fields::new(), None);
        m.put("foreign", V3, Fields::new(), None);
        m.left.insert((Entity::Person, "moved".into()));
        let scope = Scope::new(vec![V1.into()]);
        let code = |id: &str| {
            target(
                &m,
                &scope,
                &op(id, OpKind::Update, Some(1), fields(json!({"x": 1}))),
            )
            .unwrap_err()
            .code
        };
        assert_eq!(code("moved"), "moved_out");
        assert_eq!(code("foreign"), "out_of_scope");
    }

    fn unit() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(V1), Just(V2), Just(V3)]
    }

    proptest! {
        /// Scope rules: a plan never lands an op on a record outside the scope, a reference is
        /// accepted only to a record inside it, and a foreign reference is answered exactly as
        /// a reference to nothing.
        #[test]
        fn plans_stay_inside_the_scope(
            units in proptest::collection::vec(unit(), 4),
            merges in proptest::collection::vec(proptest::option::of(0usize..4), 4),
            roots in proptest::collection::vec(unit(), 1..3),
            asked in 0usize..4,
            referred in 0usize..5,
        ) {
            let mut m = Mem::default();
            for (i, u) in units.iter().enumerate() {
                m.put(&format!("p{i}"), u, fields(json!({"n": i})), None);
            }
            for (i, into) in merges.iter().enumerate() {
                if let Some(j) = into.filter(|j| *j > i) {
                    let u = units[i];
                    m.put(&format!("p{i}"), u, fields(json!({"n": i})), Some(&format!("p{j}")));
                }
            }
            let scope = Scope::new(roots.iter().map(|r| r.to_string()).collect());
            let id = format!("p{asked}");
            match target(&m, &scope, &op(&id, OpKind::Update, Some(1), fields(json!({"n": 9})))) {
                Ok(t) => {
                    prop_assert!(scope.contains(m.records[&t.key].org_unit()));
                    prop_assert_eq!(t.redirected, t.key.1 != id);
                    if t.redirected {
                        prop_assert_ne!(t.base, Base::Current);
                    }
                }
                Err(r) => prop_assert!(["out_of_scope", "moved_out"].contains(&r.code)),
            }
            // the visit is made in V1, so the caller holds V1
            let scope = if scope.contains(V1) { scope } else { Scope::new(vec![V1.into()]) };
            let person = format!("p{referred}");
            let exists_inside = m
                .records
                .get(&(Entity::Person, person.clone()))
                .is_some_and(|r| scope.contains(r.org_unit()));
            let got = target(&m, &scope, &visit(&person));
            let nothing = target(&m, &scope, &visit("nobody")).unwrap_err();
            match got {
                Ok(_) => prop_assert!(exists_inside),
                Err(r) => {
                    prop_assert!(!exists_inside);
                    prop_assert_eq!(r.code, nothing.code);
                    prop_assert_eq!(r.message, nothing.message);
                }
            }
        }

        /// In-batch chains: a device offline all day edits one record from the version it last
        /// pulled, op after op, each op a field of its own, and pushes them in one batch. Each
        /// op's base is that same old version, and every field it sets is one only this device
        /// changed since: the chain never conflicts, and ends as the same ops applied one batch
        /// each from fresh bases would.
        #[test]
        fn an_offline_chain_never_conflicts_with_itself(
            values in proptest::collection::vec(0i64..4, 1..6),
        ) {
            let scope = Scope::new(vec![V1.into()]);
            let mut chain = Mem::default();
            let mut fresh = Mem::default();
            let start = fields(json!({"f0": 9, "name": "x"}));
            for m in [&mut chain, &mut fresh] {
                m.apply(&scope, &op("r", OpKind::Create, None, start.clone())).unwrap();
            }
            let mut expected = start.clone();
            for (i, v) in values.iter().enumerate() {
                let set = fields(json!({ format!("f{i}"): v }));
                expected.extend(set.clone());
                let out = chain.apply(&scope, &op("r", OpKind::Update, Some(1), set.clone())).unwrap();
                let conflicts = match out {
                    Outcome::Applied { conflicts, .. } => conflicts,
                    Outcome::Rejected { code, .. } => panic!("rejected {code}"),
                };
                prop_assert!(conflicts.is_empty(), "{:?}", conflicts);
                let latest = fresh.records[&(Entity::Person, "r".into())].current.version;
                fresh.apply(&scope, &op("r", OpKind::Update, Some(latest), set)).unwrap();
            }
            let key = (Entity::Person, "r".to_string());
            prop_assert_eq!(&chain.records[&key].current.fields, &expected);
            prop_assert_eq!(&chain.records[&key].current.fields, &fresh.records[&key].current.fields);
        }
    }

    // ---- Whole plans: ops, duplicates, scope, over a store kept in memory between pushes.

    const ID_NUMBER: &str = "130131199001011230";

    /// What the database holds between two units of work: records and every version's fields.
    #[derive(Default, Clone)]
    struct Store {
        records: HashMap<Key, RecordRow>,
        history: HashMap<(Entity, String, i64), Fields>,
        last_seq: i64,
        candidates: Vec<Candidate>,
        merges: usize,
    }

    fn header(op: &ParsedOp) -> OpHeader {
        OpHeader {
            seq: op.seq,
            op_id: op.op_id.clone(),
            entity: op.entity.name().to_string(),
            id: op.id.clone(),
            kind: format!("{:?}", op.kind).to_lowercase(),
        }
    }

    impl Store {
        /// One push as `sync::push` makes it: load (here: everything), plan the ops with their
        /// org-unit refusals, plan duplicates, then "write".
        fn push(&mut self, scope: &Scope, ops: &[ParsedOp]) -> Vec<OpResult> {
            let mut plan = Plan::new(self.last_seq, 1_000);
            for r in self.records.values() {
                plan.load(r.clone());
            }
            plan.bases = self.history.clone();
            let known: BTreeSet<String> = [V1, V2, V3].map(String::from).into();
            let device = DeviceId::from("dev");
            let actor = Actor {
                user_id: "u",
                device_id: Some(&device),
                scope,
            };
            let mut results: Vec<OpResult> = ops
                .iter()
                .map(|op| match unit_refusal(op, scope, &known) {
                    Some(r) => rejected(&header(op), &r),
                    None => plan.apply(&actor, op, &header(op)),
                })
                .collect();
            self.merges += plan.plan_duplicates("u", scope);
            for r in &mut results {
                plan.complete(&HashMap::new(), r);
            }
            for (row, _) in &plan.versions {
                self.history.insert(
                    (row.entity, row.id.clone(), row.version),
                    row.fields.clone(),
                );
            }
            for row in plan.final_rows() {
                self.records.insert((row.entity, row.id.clone()), row);
            }
            self.last_seq = plan.last_seq();
            self.candidates.extend(plan.candidates);
            results
        }

        /// The records as devices would see them: no server clocks or sequence numbers.
        fn view(&self) -> BTreeMap<String, (i64, bool, Option<String>, Fields)> {
            self.records
                .values()
                .map(|r| {
                    (
                        r.id.clone(),
                        (
                            r.version,
                            r.deleted,
                            r.merged_into.clone(),
                            r.fields.clone(),
                        ),
                    )
                })
                .collect()
        }
    }

    fn person(
        seq: i64,
        id: &str,
        kind: OpKind,
        base: Option<i64>,
        set: Fields,
        unit: Option<&str>,
    ) -> ParsedOp {
        ParsedOp {
            seq,
            op_id: format!("op{seq}"),
            entity: Entity::Person,
            id: id.into(),
            kind,
            base_version: base,
            set,
            org_unit: unit.map(str::to_string),
            recorded_at: seq,
        }
    }

    /// Field edits: field f0..f2 set to a small number, or cleared.
    fn edit() -> impl Strategy<Value = Fields> {
        proptest::collection::btree_map(
            prop_oneof![Just("f0"), Just("f1"), Just("f2")].prop_map(str::to_string),
            prop_oneof![Just(Value::Null), (0i64..3).prop_map(Value::from)],
            1..3,
        )
    }

    /// A chain of ops on one record: its create, then updates and deletes, each naming a base
    /// version from 0 to one past the newest it could know.
    fn chain() -> impl Strategy<Value = Vec<ParsedOp>> {
        let step = (0u8..10, 0i64..8, edit());
        (edit(), proptest::collection::vec(step, 1..8)).prop_map(|(first, steps)| {
            let mut ops = vec![person(1, "r", OpKind::Create, None, first, Some(V1))];
            for (i, (k, base, set)) in steps.into_iter().enumerate() {
                let seq = i as i64 + 2;
                let kind = if k == 0 {
                    OpKind::Delete
                } else {
                    OpKind::Update
                };
                let set = if kind == OpKind::Delete {
                    Fields::new()
                } else {
                    set
                };
                ops.push(person(seq, "r", kind, Some(base.min(seq)), set, None));
            }
            ops
        })
    }

    /// Conflicts as their content, without their fresh ids.
    fn conflict_content(results: &[OpResult]) -> Vec<(i64, Option<String>, Value, Value, Value)> {
        results
            .iter()
            .flat_map(|r| {
                r.conflicts.iter().map(move |c| {
                    (
                        r.seq,
                        c.field.clone(),
                        c.base_value.clone(),
                        c.server_value.clone(),
                        c.device_value.clone(),
                    )
                })
            })
            .collect()
    }

    proptest! {
        /// In-batch chains: the ops on one record give the same records, versions, answers and
        /// conflicts in one push as split over several pushes, wherever the splits fall (a
        /// resend after a crash may cut a batch anywhere).
        #[test]
        fn a_batch_gives_the_same_records_however_it_is_split(
            ops in chain(),
            cuts in proptest::collection::btree_set(1usize..8, 0..4),
        ) {
            let scope = Scope::new(vec![V1.into()]);
            let mut whole = Store::default();
            let one = whole.push(&scope, &ops);
            let mut split = Store::default();
            let mut parts = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().filter(|c| *c < ops.len()).chain([ops.len()]) {
                parts.extend(split.push(&scope, &ops[from..cut]));
                from = cut;
            }
            prop_assert_eq!(whole.view(), split.view());
            prop_assert_eq!(whole.last_seq, split.last_seq);
            let answer = |rs: &[OpResult]| rs.iter().map(|r| (r.seq, r.status, r.version, r.code.clone())).collect::<Vec<_>>();
            prop_assert_eq!(answer(&one), answer(&parts));
            prop_assert_eq!(conflict_content(&one), conflict_content(&parts));
        }

        /// Redirects after an automatic merge: a person registered twice in the caller's villages
        /// with agreeing fields is merged at once into the first registration, the create of the
        /// second answers `merged_into`, and a later edit to the second id, made on the version
        /// its device saw, lands on the survivor without a conflict, as the same edit made on the
        /// survivor's current version would.
        #[test]
        fn an_edit_to_a_merged_away_person_lands_on_the_survivor_cleanly(
            shared in edit(),
            own in edit(),
            change in edit(),
        ) {
            let scope = Scope::new(vec![V1.into()]);
            let mut first = shared.clone();
            first.retain(|_, v| !v.is_null());
            first.insert("id_number".into(), ID_NUMBER.into());
            let mut second: Fields = own.into_iter().filter(|(k, v)| !v.is_null() && !first.contains_key(k)).collect();
            second.insert("id_number".into(), ID_NUMBER.into());
            second.insert("name".into(), "x".into());
            first.insert("name".into(), "x".into());

            let mut store = Store::default();
            store.push(&scope, &[person(1, "a", OpKind::Create, None, first.clone(), Some(V1))]);
            let created = store.push(&scope, &[person(2, "b", OpKind::Create, None, second.clone(), Some(V1))]);
            prop_assert_eq!(store.merges, 1);
            prop_assert_eq!(created[0].merged_into.as_deref(), Some("a"));
            let survivor = store.records[&(Entity::Person, "a".to_string())].clone();

            let mut direct = store.clone();
            let redirected = store.push(&scope, &[person(3, "b", OpKind::Update, Some(1), change.clone(), None)]);
            prop_assert_eq!(redirected[0].status, OpStatus::Redirected);
            prop_assert_eq!(redirected[0].canonical_id.as_deref(), Some("a"));
            // Every field the edit sets is one only this device changed since its base (the
            // survivor holds the merged person's value or its own, equal): no conflict.
            let clean = change.keys().all(|k| survivor.fields.get(k) == second.get(k) || !survivor.fields.contains_key(k));
            if clean {
                prop_assert!(redirected[0].conflicts.is_empty(), "{:?}", redirected[0].conflicts);
                let same = direct.push(&scope, &[person(3, "a", OpKind::Update, Some(survivor.version), change, None)]);
                prop_assert!(same[0].conflicts.is_empty());
                let key = (Entity::Person, "a".to_string());
                prop_assert_eq!(&store.records[&key].fields, &direct.records[&key].fields);
            }
        }

        /// Automatic merges stay inside the scope: two persons sharing an ID number are merged
        /// only when both are in the caller's villages (and agree); otherwise the pair is queued
        /// for the lowest unit holding both, and nothing outside the caller's scope is written.
        #[test]
        fn an_automatic_merge_never_reaches_outside_the_scope(
            a_unit in unit(),
            b_unit in unit(),
            roots in proptest::collection::vec(unit(), 1..3),
            disagree in any::<bool>(),
        ) {
            let scope = Scope::new(roots.iter().map(|r| r.to_string()).collect());
            let mut store = Store::default();
            // The other person was registered before, by whoever holds its village.
            store.push(&Scope::new(vec![a_unit.into()]), &[person(1, "a", OpKind::Create, None,
                fields(json!({"id_number": ID_NUMBER, "name": "x"})), Some(a_unit))]);
            let before = store.clone();
            let name = if disagree { "y" } else { "x" };
            let res = store.push(&scope, &[person(2, "b", OpKind::Create, None,
                fields(json!({"id_number": ID_NUMBER, "name": name})), Some(b_unit))]);
            if !scope.contains(b_unit) {
                prop_assert_eq!(res[0].status, OpStatus::Rejected);
                prop_assert_eq!(before.view(), store.view());
                return Ok(());
            }
            let within = scope.contains(a_unit);
            if within && !disagree {
                prop_assert_eq!(store.merges, 1);
                prop_assert_eq!(res[0].merged_into.as_deref(), Some("a"));
                prop_assert!(store.candidates.is_empty());
            } else {
                prop_assert_eq!(store.merges, 0);
                prop_assert_eq!(res[0].merged_into.as_deref(), None::<&str>);
                prop_assert_eq!(&store.candidates, &vec![Candidate {
                    a: "a".into(), b: "b".into(), org_unit: common_unit(a_unit, b_unit).into(),
                }]);
                // The other person is as it was: no version, no field, no tombstone.
                let key = (Entity::Person, "a".to_string());
                prop_assert_eq!(&store.records[&key], &before.records[&key]);
            }
            for (_, id, v) in store.history.keys() {
                if !before.history.contains_key(&(Entity::Person, id.clone(), *v)) {
                    let unit = &store.records[&(Entity::Person, id.clone())].org_unit;
                    prop_assert!(scope.contains(unit), "wrote {id} v{v} in {unit}");
                }
            }
        }

        /// Scope refusals over whole pushes: whatever a device sends (creates in any unit,
        /// edits and moves of any record), every version written is of a record in its scope, a
        /// refused op writes nothing, and an op on a foreign record is refused.
        #[test]
        fn a_push_writes_only_inside_the_scope(
            seeds in proptest::collection::vec(unit(), 1..4),
            ops in proptest::collection::vec((0usize..4, proptest::option::of(unit()), edit()), 1..6),
            roots in proptest::collection::vec(unit(), 1..3),
        ) {
            let mut store = Store::default();
            for (i, u) in seeds.iter().enumerate() {
                store.push(&Scope::new(vec![u.to_string()]), &[person(1, &format!("p{i}"), OpKind::Create, None, fields(json!({"f0": 0})), Some(u))]);
            }
            let scope = Scope::new(roots.iter().map(|r| r.to_string()).collect());
            let batch: Vec<ParsedOp> = ops.into_iter().enumerate().map(|(i, (target, unit, set))| {
                let id = format!("p{target}");
                match store.records.get(&(Entity::Person, id.clone())) {
                    Some(r) => person(i as i64 + 1, &id, OpKind::Update, Some(r.version), set, unit),
                    None => person(i as i64 + 1, &id, OpKind::Create, None, set, Some(unit.unwrap_or(V1))),
                }
            }).collect();
            let before = store.clone();
            let results = store.push(&scope, &batch);
            for (op, r) in batch.iter().zip(&results) {
                let held = before.records.get(&(Entity::Person, op.id.clone()));
                if held.is_some_and(|h| !scope.contains(&h.org_unit)) {
                    prop_assert_eq!(r.status, OpStatus::Rejected);
                    prop_assert!(["out_of_scope", "moved_out"].contains(&r.code.as_deref().unwrap_or("")));
                }
                if op.org_unit.as_deref().is_some_and(|u| !scope.contains(u)) {
                    prop_assert_eq!(r.status, OpStatus::Rejected);
                }
            }
            for (key, row) in &store.records {
                if before.records.get(key) != Some(row) {
                    prop_assert!(scope.contains(&row.org_unit), "wrote {} in {}", key.1, row.org_unit);
                    let was = before.records.get(key).map_or(row.org_unit.as_str(), |r| r.org_unit.as_str());
                    prop_assert!(scope.contains(was), "changed {} that was in {}", key.1, was);
                }
            }
        }
    }
}
