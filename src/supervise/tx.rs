//! The write transaction for supervisor-made versions.

use std::collections::{BTreeSet, HashMap};

use crate::auth::Scope;
use crate::db::records::{self, RecordRow, VersionRow};
use crate::db::{now_micros, DbConn};
use crate::domain::entities::Entity;
use crate::error::AppResult;
use crate::sync::checks;
use crate::sync::duplicates::{self, WorkSet};
use crate::sync::store::{self, SeqAlloc};

pub type Key = (Entity, String);

/// A supervisor's write transaction over records: new versions numbered from the change
/// sequence (so devices receive them in commit order), then logic checks and flags, like push.
pub struct Tx {
    pub state: HashMap<Key, RecordRow>,
    pub versions: Vec<(RecordRow, Option<String>)>,
    pub alloc: SeqAlloc,
    pub now: i64,
    pub by: String,
}

impl Tx {
    pub fn begin(conn: &mut DbConn, by: &str) -> AppResult<Tx> {
        Ok(Tx {
            state: HashMap::new(),
            versions: Vec::new(),
            alloc: SeqAlloc::lock(conn)?,
            now: now_micros(),
            by: by.to_string(),
        })
    }

    /// The newest state of a record: as changed in this transaction, else as stored.
    pub fn get(
        &mut self,
        conn: &mut DbConn,
        entity: Entity,
        id: &str,
    ) -> AppResult<Option<RecordRow>> {
        let key = (entity, id.to_string());
        if let Some(r) = self.state.get(&key) {
            return Ok(Some(r.clone()));
        }
        let r = records::load_one(conn, entity, id)?;
        if let Some(r) = &r {
            self.state.insert(key, r.clone());
        }
        Ok(r)
    }

    /// Stores `row` as the record's next version, made by the supervisor now.
    pub fn new_version(&mut self, mut row: RecordRow) -> RecordRow {
        row.version += 1;
        row.change_seq = self.alloc.alloc();
        row.updated_at = self.now;
        row.recorded_at = self.now;
        row.updated_by = self.by.clone();
        row.updated_device = None;
        self.state.insert((row.entity, row.id.clone()), row.clone());
        self.versions.push((row.clone(), None));
        row
    }

    pub fn work(&mut self) -> WorkSet<'_> {
        WorkSet {
            state: &mut self.state,
            versions: &mut self.versions,
            alloc: &mut self.alloc,
            now: self.now,
        }
    }

    /// Writes the changed records, their versions and flags, and the sequence. With
    /// `detect_duplicates` (the scope of whoever made the change), changed persons sharing an ID
    /// number are merged or queued, as in push.
    pub fn finish(mut self, conn: &mut DbConn, detect_duplicates: Option<&Scope>) -> AppResult<()> {
        if let Some(scope) = detect_duplicates {
            let by = self.by.clone();
            duplicates::detect_and_merge(conn, &mut self.work(), &by, scope)?;
        }
        let mut seen = BTreeSet::new();
        let keys: Vec<Key> = self
            .versions
            .iter()
            .map(|(r, _)| (r.entity, r.id.clone()))
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let flags = checks::evaluate(conn, &self.state, &keys)?;
        let finals: Vec<RecordRow> = keys
            .iter()
            .filter_map(|k| self.state.get(k).cloned())
            .collect();
        records::upsert(conn, &finals)?;
        let versions: Vec<VersionRow> = self
            .versions
            .iter()
            .map(|(row, op_id)| VersionRow {
                row,
                op_id: op_id.as_deref(),
            })
            .collect();
        records::insert_versions(conn, &versions)?;
        let flag_rows: Vec<(&str, &str, &str, i64, Vec<&'static str>)> = flags
            .iter()
            .filter_map(|(k, codes)| {
                let row = self.state.get(k)?;
                Some((
                    row.entity.name(),
                    row.id.as_str(),
                    row.org_unit.as_str(),
                    row.version,
                    codes.clone(),
                ))
            })
            .collect();
        store::set_flags(conn, &flag_rows, self.now)?;
        self.alloc.finish(conn)
    }
}
