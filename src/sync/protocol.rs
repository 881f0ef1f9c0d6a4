//! The wire format of push and pull (PROTOCOL.md). api-spec/ is generated from these types.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::entities::Entity;
use crate::sync::merge::ConflictDraft;

/// The outcome of one op of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// Merged into the record it names.
    Applied,
    /// Already processed: the answer of its first processing is in `first`.
    Duplicate,
    /// Merged into the record the named one was merged into (`canonical_id`).
    Redirected,
    /// Not applied, for good (`code`).
    Rejected,
}

impl OpStatus {
    pub const ALL: [OpStatus; 4] = [
        OpStatus::Applied,
        OpStatus::Duplicate,
        OpStatus::Redirected,
        OpStatus::Rejected,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Applied => "applied",
            OpStatus::Duplicate => "duplicate",
            OpStatus::Redirected => "redirected",
            OpStatus::Rejected => "rejected",
        }
    }

    /// Whether the op changed (or may have changed) a record: applied or redirected.
    pub fn landed(self) -> bool {
        matches!(self, OpStatus::Applied | OpStatus::Redirected)
    }
}

impl fmt::Display for OpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a push stopped before the end of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An earlier seq is missing: resend from `last_seq + 1`.
    Gap,
    /// The store was unavailable for a while: resend after `retry_after` seconds.
    Transient,
}

/// How a same-field conflict is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Keep the server's value and open a conflict for a supervisor (health and status fields,
    /// where a wrong automatic choice is worse than a wait).
    Review,
    /// The later `recorded_at` wins; the loser is kept in a closed conflict a supervisor can
    /// reopen (contact details, notes).
    Latest,
}

/// What a conflict is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides changed one field to different values.
    Field,
    /// The device deleted a record the server changed since the device's base.
    DeleteVsEdit,
    /// The device edited a record the server holds as deleted.
    EditVsDelete,
}

/// Whether a conflict waits for a supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    /// Waits for a supervisor.
    Open,
    /// Settled by policy (`latest`); a supervisor may reopen it.
    Closed,
    /// Settled by a supervisor.
    Resolved,
}

/// Whose value is in the record after the conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    Server,
    Device,
}

macro_rules! wire_names {
    ($($t:ident { $($v:ident => $name:literal),* })*) => {$(
        impl $t {
            /// The wire name (also the stored text).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $name),*
                }
            }
        }
    )*};
}
wire_names! {
    StopReason { Gap => "gap", Transient => "transient" }
    Policy { Review => "review", Latest => "latest" }
    ConflictKind { Field => "field", DeleteVsEdit => "delete_vs_edit", EditVsDelete => "edit_vs_delete" }
    ConflictStatus { Open => "open", Closed => "closed", Resolved => "resolved" }
    Winner { Server => "server", Device => "device" }
}

/// Reads one of the enums above from its stored wire name (a conflicts row's text column).
pub fn from_wire<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(Value::String(name.to_string())).ok()
}

/// A record's client-generated id (a UUID), where it crosses module boundaries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub String);

/// A registered device's id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

/// An org unit code (county 6 digits, township 9, village 12, a group the village and a suffix).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgUnit(pub String);

macro_rules! id_newtype {
    ($($t:ident),*) => {$(
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> $t {
                $t(s)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> $t {
                $t(s.to_string())
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
id_newtype!(RecordId, DeviceId, OrgUnit);

/// A device's batch of operations, oldest first.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The operations. Each is checked on its own: a malformed op is rejected alone.
    #[schema(value_type = Vec<OpIn>)]
    pub ops: Vec<Value>,
    /// When the device sent this batch, RFC 3339 with offset, by the device's clock (the same
    /// format as an op's `recorded_at`). Optional: the server records the device clock's offset
    /// from its own (shown to supervisors) and never orders or merges by it.
    #[serde(default)]
    pub sent_at: Option<String>,
}

/// One operation as a device sends it.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct OpIn {
    /// The device's own counter: 1, 2, 3..., never reused.
    pub seq: i64,
    /// A UUID for logs and cross-checks.
    pub op_id: String,
    /// Record type: household, person, pregnancy, birth, death, measure, visit, migration, supply, benefit.
    pub entity: String,
    /// The record's client-generated UUID (v7 recommended).
    pub id: String,
    /// `create`, `update` or `delete`.
    pub kind: String,
    /// The server version the device last saw; absent for a create.
    #[serde(default)]
    pub base_version: Option<i64>,
    /// Only the changed fields with their new values; null clears a field. `org_unit` (the
    /// record's village or group code) is required on create.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: Option<Value>,
    /// When the worker did it, RFC 3339, by the device's clock (clamped when in the future).
    #[serde(default)]
    pub recorded_at: Option<String>,
}

/// A conflict as the device and the supervisor see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConflictOut {
    pub id: String,
    pub entity: String,
    pub record_id: String,
    /// The field, or null for a delete-vs-edit / edit-vs-delete conflict.
    pub field: Option<String>,
    pub kind: ConflictKind,
    pub policy: Policy,
    pub status: ConflictStatus,
    /// Whose value the record holds now.
    pub winner: Winner,
    /// The field's value at the device's base, on the server, and as the device sent it: any
    /// JSON value (text, number, boolean, object), or null for "no value".
    pub base_value: Value,
    pub server_value: Value,
    pub device_value: Value,
}

impl ConflictOut {
    /// A conflict the merge engine found on `record_id`, with a fresh id.
    pub fn from_draft(entity: Entity, record_id: &str, d: ConflictDraft) -> ConflictOut {
        ConflictOut {
            id: uuid::Uuid::now_v7().to_string(),
            entity: entity.name().to_string(),
            record_id: record_id.to_string(),
            field: d.field,
            kind: d.kind,
            policy: d.policy,
            status: d.status,
            winner: d.winner,
            base_value: d.base,
            server_value: d.server,
            device_value: d.device,
        }
    }
}

/// The outcome of one op.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OpResult {
    pub seq: i64,
    pub op_id: String,
    pub status: OpStatus,
    pub entity: String,
    pub id: String,
    /// The record's version after the op (applied, redirected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// For `redirected`: the surviving record the op was applied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_id: Option<String>,
    /// For `applied` (or `redirected`): the record was merged, as a duplicate person, into this
    /// record in the same transaction. Replace the local id by it everywhere, as for a pulled
    /// tombstone with `merged_into`. Only ever a record in the device's own scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Conflicts this op opened or that were settled by policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictOut>,
    /// Logic checks the record now fails (flagged for the supervisor; never a rejection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// For `rejected`: a stable code, e.g. `out_of_scope`, `unknown_entity`, `bad_field_value`,
    /// `bad_reference` (a reference to a record not in the caller's scope, existing or not),
    /// `moved_out` (the record was moved out of the device's villages; the op is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Always false for a rejection: resending the same op cannot succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// For `duplicate`: the answer of the first application, as it was given then.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub first: Option<Box<OpResult>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PushResponse {
    pub device_id: String,
    /// The highest seq the server holds for this device (read in the same transaction).
    pub last_seq: i64,
    pub results: Vec<OpResult>,
    /// The seq at which processing stopped (a gap, or a transient failure); later ops were not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<i64>,
    /// Why processing stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// Seconds to wait before resending after a transient stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// The `next_cursor` of the previous pull; 0 (or absent) for a fresh snapshot of the scope.
    #[serde(default)]
    pub cursor: i64,
    /// Page size (at most the server's limit).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One record at its latest version, or a tombstone.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    pub entity: String,
    pub id: String,
    pub org_unit: String,
    pub version: i64,
    pub deleted: bool,
    /// Set on a tombstone left by a merge: ops to this id now go to this record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Set on a tombstone that only says the record left the device's scope: `moved` (moved to
    /// a village or group the device does not hold). Drop the local copy; where it went is not
    /// said. Such a tombstone has empty `fields`, and its `org_unit` is the unit it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub fields: Value,
    pub change_seq: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PullResponse {
    pub records: Vec<RecordOut>,
    pub conflicts: Vec<ConflictOut>,
    /// The device's last_seq as the server holds it, from the same snapshot.
    pub last_seq: i64,
    pub next_cursor: i64,
    pub has_more: bool,
    /// Fetch a fresh snapshot (cursor 0): the scope changed or the cursor is older than kept.
    pub reset_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_reason: Option<String>,
}
