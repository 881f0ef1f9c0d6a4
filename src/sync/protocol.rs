//! The wire format of push and pull (PROTOCOL.md). api-spec/ is generated from these types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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
    /// `field`, `delete_vs_edit` or `edit_vs_delete`.
    pub kind: String,
    /// `review` or `latest`.
    pub policy: String,
    /// `open`, `closed` or `resolved`.
    pub status: String,
    /// Whose value the record holds now: `server` or `device`.
    pub winner: String,
    /// The field's value at the device's base, on the server, and as the device sent it: any
    /// JSON value (text, number, boolean, object), or null for "no value".
    pub base_value: Value,
    pub server_value: Value,
    pub device_value: Value,
}

/// The outcome of one op.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OpResult {
    pub seq: i64,
    pub op_id: String,
    /// `applied`, `duplicate`, `redirected` or `rejected`.
    pub status: String,
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
    /// Why processing stopped: `gap` or `transient`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
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
