//! One unit of work over records, for a device's push chunk and for a supervisor's change
//! alike: load everything the work needs (batched reads, one query per kind), plan it in
//! memory (`sync::plan`, pure), then write it all (no read between two writes).
//!
//! `begin` takes the change-number lock (`sync::sequence`); the plan numbers new versions and
//! conflicts from there, so that no pull skips them. `write` stores the
//! records, versions, conflicts, departures, merges, queued duplicates and flags, and gives
//! the sequence back.

use std::collections::{BTreeSet, HashMap};

use crate::auth::scope::Scope;
use crate::db::records::{self, RecordRow, VersionRow};
use crate::db::{now_micros, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::sync::checks::{self, FlagUpdate};
use crate::sync::duplicates;
use crate::sync::plan::{self, Key, MergeRefusal, Plan};
use crate::sync::sequence::{SeqAlloc, Writers};
use crate::sync::store;
use crate::sync::validate::ParsedOp;

/// The logic checks of a unit of work, read before it is written.
#[derive(Default)]
pub struct Checks {
    /// The checks each changed record fails (an empty list clears its flags).
    pub flags: HashMap<Key, Vec<&'static str>>,
    /// Stored records whose checks depend on the changed ones and whose result changed.
    pub related: Vec<FlagUpdate>,
}

/// A unit of work: the plan, and the change-sequence lock it numbers from.
pub struct Changeset {
    pub plan: Plan,
    alloc: SeqAlloc,
}

impl Changeset {
    /// Starts a unit of work that runs alone: it waits for the pushes in flight and keeps new
    /// ones waiting until it commits (a supervisor's decision or edit; `sync::sequence`).
    pub fn begin(conn: &mut DbConn) -> AppResult<Changeset> {
        Self::begin_as(conn, Writers::Alone)
    }

    /// Starts a unit of work numbering its changes as `writers` says (`sync::sequence`).
    pub fn begin_as(conn: &mut DbConn, writers: Writers) -> AppResult<Changeset> {
        let alloc = SeqAlloc::lock_as(conn, writers)?;
        Ok(Changeset {
            plan: Plan::new(alloc.last(), now_micros()),
            alloc,
        })
    }

    /// Loads every record the ops name or refer to, the targets of merge redirects among them,
    /// which of those out of `scope` left it by a move, and the base snapshots the ops name.
    pub fn load_ops<'a>(
        &mut self,
        conn: &mut DbConn,
        scope: &Scope,
        ops: impl Iterator<Item = &'a ParsedOp> + Clone,
    ) -> AppResult<()> {
        let mut wanted: HashMap<Entity, BTreeSet<String>> = HashMap::new();
        for op in ops.clone() {
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
                let ids: Vec<&str> = ids
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !self.plan.records.contains_key(&(entity, id.to_string())))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                for row in records::load(conn, entity, &ids)? {
                    if let Some(t) = &row.merged_into {
                        if !self.plan.records.contains_key(&(entity, t.clone())) {
                            next.entry(entity).or_default().insert(t.clone());
                        }
                    }
                    self.plan.load(row);
                }
            }
            wanted = next;
        }
        let outside: Vec<(Entity, &str)> = self
            .plan
            .records
            .values()
            .filter(|r| !scope.contains(&r.org_unit))
            .map(|r| (r.entity, r.id.as_str()))
            .collect();
        if !outside.is_empty() {
            let left = store::left_scope(conn, &outside, scope)?;
            self.plan.left.extend(left);
        }

        let mut bases: HashMap<Entity, BTreeSet<(String, i64)>> = HashMap::new();
        for op in ops {
            let key = (op.entity, op.id.clone());
            if let (Some(b), Some(cur)) = (op.base_version, self.plan.records.get(&key)) {
                if b > 0 && b <= cur.version {
                    bases
                        .entry(op.entity)
                        .or_default()
                        .insert((op.id.clone(), b));
                }
            }
        }
        for (entity, keys) in bases {
            let keys: Vec<(&str, i64)> = keys.iter().map(|(id, v)| (id.as_str(), *v)).collect();
            for ((id, v), fields) in records::load_bases(conn, entity, &keys)? {
                self.plan.bases.insert((entity, id, v), fields);
            }
        }
        Ok(())
    }

    /// The newest state of a record: as planned, else as stored (then kept in the plan).
    pub fn get(
        &mut self,
        conn: &mut DbConn,
        entity: Entity,
        id: &str,
    ) -> AppResult<Option<RecordRow>> {
        let key = (entity, id.to_string());
        if let Some(r) = self.plan.records.get(&key) {
            return Ok(Some(r.clone()));
        }
        let r = records::load_one(conn, entity, id)?;
        if let Some(r) = &r {
            self.plan.load(r.clone());
        }
        Ok(r)
    }

    /// Loads the stored records that refer to `person_ids`, for merges of those persons.
    pub fn load_children(
        &mut self,
        conn: &mut DbConn,
        person_ids: &BTreeSet<String>,
    ) -> AppResult<()> {
        let wanted: BTreeSet<String> = person_ids
            .iter()
            .filter(|p| !self.plan.children.contains_key(*p))
            .cloned()
            .collect();
        for p in &wanted {
            self.plan.children.insert(p.clone(), Vec::new());
        }
        for (row, field, person) in duplicates::children_of(conn, &wanted)? {
            let key = (row.entity, row.id.clone());
            self.plan.load(row);
            self.plan
                .children
                .entry(person)
                .or_default()
                .push((key, field));
        }
        Ok(())
    }

    /// Merges two persons (a supervisor's merge): loads what the merge needs, then plans it.
    pub fn merge_persons(
        &mut self,
        conn: &mut DbConn,
        survivor_id: &str,
        merged_id: &str,
        by: &str,
        choices: &std::collections::BTreeMap<String, String>,
    ) -> AppResult<String> {
        for id in [survivor_id, merged_id] {
            self.get(conn, Entity::Person, id)?;
        }
        self.load_children(conn, &BTreeSet::from([merged_id.to_string()]))?;
        self.plan
            .merge_persons(survivor_id, merged_id, by, false, choices)
            .map_err(|e| match e {
                MergeRefusal::NotFound => AppError::NotFound,
                MergeRefusal::NotLive => {
                    AppError::Conflict("both persons must be live and distinct".into())
                }
            })
    }

    /// Duplicate persons among the records changed so far: loads the live persons sharing
    /// their ID numbers, the dismissed pairs among them and the records referring to them, then
    /// plans merges (inside `scope` only) and queued pairs. Returns the merges planned.
    pub fn plan_duplicates(
        &mut self,
        conn: &mut DbConn,
        by: &str,
        scope: &Scope,
    ) -> AppResult<usize> {
        let numbers = self.plan.changed_person_numbers();
        if numbers.is_empty() {
            return Ok(0);
        }
        for row in duplicates::persons_with_numbers(conn, &numbers)? {
            self.plan.load(row);
        }
        let mut pairs = BTreeSet::new();
        let mut members = BTreeSet::new();
        for n in &numbers {
            let group = self.plan.group(n);
            if let Some((first, rest)) = group.split_first() {
                for other in rest {
                    let (a, b) = plan::ordered(&first.id, &other.id);
                    pairs.insert((a.to_string(), b.to_string()));
                    members.insert(other.id.clone());
                }
            }
        }
        if pairs.is_empty() {
            return Ok(0);
        }
        let dismissed = duplicates::dismissed_pairs(conn, &pairs)?;
        self.plan.dismissed.extend(dismissed);
        self.load_children(conn, &members)?;
        Ok(self.plan.plan_duplicates(by, scope))
    }

    /// The logic checks of the changed records, and of the stored records depending on them.
    pub fn evaluate(&self, conn: &mut DbConn) -> AppResult<Checks> {
        let changed = self.plan.changed_keys();
        Ok(Checks {
            flags: checks::evaluate(conn, &self.plan.records, &changed)?,
            related: checks::recheck_related(conn, &self.plan.records, &changed)?,
        })
    }

    /// Writes everything the plan holds, and the change sequence.
    pub fn write(mut self, conn: &mut DbConn, checks: &Checks) -> AppResult<()> {
        let plan = &self.plan;
        let now = plan.now;
        records::upsert(conn, &plan.final_rows())?;
        let versions: Vec<VersionRow> = plan
            .versions
            .iter()
            .map(|(row, op_id)| VersionRow {
                row,
                op_id: op_id.as_deref(),
            })
            .collect();
        records::insert_versions(conn, &versions)?;
        store::insert_conflicts(conn, &plan.conflicts, now)?;
        store::insert_departures(conn, &plan.departures)?;
        if !plan.merges.is_empty() {
            duplicates::insert_merges(conn, &plan.merges)?;
        }
        if !plan.candidates.is_empty() {
            duplicates::insert_candidates(conn, &plan.candidates, now)?;
        }
        let mut flag_rows: Vec<(&str, &str, &str, i64, Vec<&'static str>)> = checks
            .flags
            .iter()
            .filter_map(|(k, codes)| {
                let row = plan.records.get(k)?;
                Some((
                    row.entity.name(),
                    row.id.as_str(),
                    row.org_unit.as_str(),
                    row.version,
                    codes.clone(),
                ))
            })
            .collect();
        flag_rows.extend(checks.related.iter().map(|((e, id), unit, v, codes)| {
            (e.name(), id.as_str(), unit.as_str(), *v, codes.clone())
        }));
        store::set_flags(conn, &flag_rows, now)?;
        let last = self.plan.last_seq();
        self.alloc.advance_to(last);
        self.alloc.finish(conn)
    }

    /// A supervisor's change: with `duplicates` (who made it and their scope), changed persons
    /// sharing an ID number are merged or queued as in push; then checks, then the writes.
    pub fn finish(
        mut self,
        conn: &mut DbConn,
        duplicates: Option<(&str, &Scope)>,
    ) -> AppResult<Checks> {
        if let Some((by, scope)) = duplicates {
            self.plan_duplicates(conn, by, scope)?;
        }
        let checks = self.evaluate(conn)?;
        self.write(conn, &checks)?;
        Ok(checks)
    }
}
