//! A record as the server holds it, apart from how it is stored: the sync planner works on
//! these, `db::records` maps them to and from rows.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::entities::Entity;

/// A record as stored: server-owned columns and the domain fields.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordRow {
    pub entity: Entity,
    pub id: String,
    pub org_unit: String,
    pub version: i64,
    pub change_seq: i64,
    pub deleted: bool,
    pub merged_into: Option<String>,
    pub fields: BTreeMap<String, Value>,
    pub stamps: BTreeMap<String, i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub recorded_at: i64,
    pub created_by: String,
    pub updated_by: String,
    pub updated_device: Option<String>,
}

impl RecordRow {
    /// Neither deleted nor merged into another record.
    pub fn live(&self) -> bool {
        !self.deleted && self.merged_into.is_none()
    }
}
