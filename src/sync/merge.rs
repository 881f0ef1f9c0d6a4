//! Three-way merge of one device operation into the server's state of a record, and the
//! per-device sequencing of a pushed batch (PROTOCOL.md: "Merge", promises 1, 2, 8 and 9).
//!
//! Everything here is pure: no I/O, no database, no clock, no randomness. The push service loads
//! the record and the base snapshot, calls [`sequence`] and [`merge`] inside its transaction and
//! writes back what they return. Because the same inputs always give the same answer, a replayed
//! or retried batch can never land differently from the first delivery.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::sync::protocol::{ConflictKind, ConflictStatus, Policy, Winner};

/// A record's domain fields. JSON null means absent: a device clears a field by sending null and
/// the server never stores a null, so "cleared" and "never set" compare equal everywhere.
pub type Fields = BTreeMap<String, Value>;

/// Per field, the `recorded_at` (unix microseconds, device clock) of the op that last set it. The
/// `latest` policy compares against it; it is kept for cleared fields too, since clearing is an
/// edit that a later-recorded value should beat and an earlier one should not.
pub type Stamps = BTreeMap<String, i64>;

/// What a device did to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Create,
    Update,
    Delete,
}

/// The server's latest state of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// 1 at creation, one more for every change, so a device can name the state it edited.
    pub version: i64,
    /// A tombstone: a delete keeps the record (and its fields) so that the delete itself reaches
    /// every device and a late edit can be held against it.
    pub deleted: bool,
    /// Never holds a null (see [`Fields`]).
    pub fields: Fields,
    pub stamps: Stamps,
}

/// One operation of a device, as far as merging is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Op<'a> {
    pub kind: OpKind,
    /// The server version of the record the device last saw; None for a create.
    pub base_version: Option<i64>,
    /// Only the fields the device changed, with their new values (null clears the field).
    pub set: &'a Fields,
    /// When the worker did it, by the device's clock (already clamped by the caller).
    pub recorded_at: i64,
}

/// A conflict as the merge sees it. The caller completes it with who, which device, when and ids
/// before storing it. It keeps all three values, so that nothing is lost whoever won.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictDraft {
    pub kind: ConflictKind,
    /// The field for [`ConflictKind::Field`]; None for record-level conflicts.
    pub field: Option<String>,
    /// The field's policy; [`Policy::Review`] for record-level conflicts, which always wait.
    pub policy: Policy,
    pub status: ConflictStatus,
    pub winner: Winner,
    /// The value (or, record-level, the fields object) at the device's base; null when unknown.
    pub base: Value,
    /// The server's value (or fields object) when the op arrived.
    pub server: Value,
    /// The device's value (or its `set` object).
    pub device: Value,
}

/// The answer of [`merge`] for one op.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The op is accepted. `next` is the new state, None when nothing changed (no new version).
    /// `conflicts` may be non-empty either way.
    Applied {
        next: Option<Current>,
        conflicts: Vec<ConflictDraft>,
    },
    /// The op cannot be merged at all; `code` is stable for devices to act on.
    Rejected { code: &'static str, message: String },
}

/// Merges one op into the server's `current` state of a record.
///
/// `base` is the server's snapshot of the record's fields at `op.base_version`, loaded by the
/// caller from the version history; None when the op has no base_version, when it is 0, or when
/// that history is missing. `policy` gives each field's [`Policy`].
///
/// The rules, each documented (with why) on the private function that carries it out:
/// 1. a record the server does not have: `first_sight`;
/// 2. a new version exactly when something changed: `bump`;
/// 3. which base the op is merged against, or `bad_base_version`: [`base_of`];
/// 4. a create of an existing record: `create_existing`;
/// 5. and 6. updates, field by field: `edit` and `settle_field`;
/// 7. an update of a deleted record: `edit`;
/// 8. and 9. deletes: `delete`.
pub fn merge(
    current: Option<&Current>,
    base: Option<&Fields>,
    op: &Op,
    policy: &dyn Fn(&str) -> Policy,
) -> Outcome {
    let Some(current) = current else {
        return first_sight(op);
    };
    match op.kind {
        OpKind::Create => create_existing(current, op, policy),
        OpKind::Update | OpKind::Delete => match base_of(current.version, op.base_version, base) {
            Ok(base) => merge_from(Some(current), base, op, policy),
            Err(rejected) => rejected,
        },
    }
}

/// The state a device edited from, named by the caller rather than worked out from version
/// numbers: a redirected op, for one, was made on another record than the one it is merged into,
/// so no version of the survivor can name what the device saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Base<'a> {
    /// The record's current state: the device saw everything the server holds.
    Current,
    /// The fields the device saw (an older version, or the merged-away record's version).
    Snapshot(&'a Fields),
    /// Before the record existed (version 0).
    Empty,
    /// Not known (no base_version, or its history is gone): every field where device and
    /// server differ counts as changed by both.
    Unknown,
}

/// Rule 3 as a value: the base an op's `base_version` names on a record at `latest`, given the
/// history's snapshot of that version (None when missing). `bad_base_version` for a version the
/// record never had.
pub fn base_of(
    latest: i64,
    base_version: Option<i64>,
    snapshot: Option<&Fields>,
) -> Result<Base<'_>, Outcome> {
    match base_version {
        Some(version) if version < 0 || version > latest => Err(Outcome::Rejected {
            code: "bad_base_version",
            message: format!(
                "base_version {version} is not a version of this record (latest is {latest})"
            ),
        }),
        Some(version) if version == latest => Ok(Base::Current),
        Some(0) => Ok(Base::Empty),
        Some(_) => Ok(snapshot.map_or(Base::Unknown, Base::Snapshot)),
        None => Ok(Base::Unknown),
    }
}

/// [`merge`] with the base given explicitly. A create of an existing record is always merged
/// from [`Base::Empty`] (rule 4), whatever `base` says.
pub fn merge_from(
    current: Option<&Current>,
    base: Base,
    op: &Op,
    policy: &dyn Fn(&str) -> Policy,
) -> Outcome {
    let Some(current) = current else {
        return first_sight(op);
    };
    let fields = match base {
        Base::Current => Some(&current.fields),
        Base::Snapshot(f) => Some(f),
        Base::Empty => Some(&NO_FIELDS),
        Base::Unknown => None,
    };
    match op.kind {
        OpKind::Create => create_existing(current, op, policy),
        OpKind::Update => edit(current, fields, op, policy),
        OpKind::Delete => delete(current, fields),
    }
}

/// The fields of every record at version 0, before its creation.
static NO_FIELDS: Fields = Fields::new();

/// A field's value with absent read as null, so that the two compare equal (see [`Fields`]).
fn value_of<'f>(fields: &'f Fields, name: &str) -> &'f Value {
    static ABSENT: Value = Value::Null;
    fields.get(name).unwrap_or(&ABSENT)
}

/// A fields map as one JSON object, for record-level conflicts.
fn to_object(fields: &Fields) -> Value {
    Value::Object(fields.clone().into_iter().collect())
}

/// Rule 1: the server has no record with this id.
///
/// A create makes version 1 from the non-null values (null means absent, so storing it would only
/// make two equal records look different), stamping every field in `set`, the cleared ones too,
/// because the device did set them at that time. An update or delete of an unknown id cannot be
/// merged with anything: it is rejected, not turned into a create, so that a record whose create
/// never reached the server (or was rejected) is not brought into being by a partial edit.
fn first_sight(op: &Op) -> Outcome {
    match op.kind {
        OpKind::Create => Outcome::Applied {
            next: Some(Current {
                version: 1,
                deleted: false,
                fields: op
                    .set
                    .iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
                stamps: op
                    .set
                    .keys()
                    .map(|name| (name.clone(), op.recorded_at))
                    .collect(),
            }),
            conflicts: Vec::new(),
        },
        OpKind::Update | OpKind::Delete => Outcome::Rejected {
            code: "unknown_record",
            message: "the record does not exist on the server".to_owned(),
        },
    }
}

/// Rule 4: a create of an id the server already has.
///
/// Ids are generated by the devices, so a taken id means the record was created before, by
/// another device or by an earlier create of this one that it lost track of. The creating device
/// saw nothing of the record, which is exactly version 0 with no fields, so the ordinary
/// three-way merge applies from there: values the server lacks are added, equal ones change
/// nothing, and differing ones are conflicts, so neither creator's values are lost. A create has
/// no base_version; one sent anyway is ignored.
fn create_existing(current: &Current, op: &Op, policy: &dyn Fn(&str) -> Policy) -> Outcome {
    edit(current, Some(&NO_FIELDS), op, policy)
}

/// Rule 2: `next` as the new version of the record.
///
/// A version is what devices hold as their base and what pull cursors deliver, so it must move
/// exactly when the stored state moved: one more for any change, and none (the caller gets None)
/// for an op that changed nothing, so a no-op never makes every device download the record again.
fn bump(mut next: Current) -> Current {
    next.version += 1;
    next
}

/// Rules 5, 6 and 7: an update (or a create of an existing record) against `base` (None: unknown).
///
/// Rule 7: on a deleted record nothing is applied and one open edit-vs-delete conflict keeps the
/// whole edit. Applying it would resurrect the record silently; dropping it would lose the
/// worker's data silently; a supervisor decides (promise 9).
///
/// Rules 5 and 6: otherwise each field in `set` is settled on its own by [`settle_field`]; fields
/// not in `set` are never touched, so edits of disjoint fields from different devices all survive
/// (promise 8). With the base at the server's version every changed field is applied (rule 5),
/// since then the server cannot have changed any field behind the device's back.
fn edit(
    current: &Current,
    base: Option<&Fields>,
    op: &Op,
    policy: &dyn Fn(&str) -> Policy,
) -> Outcome {
    if current.deleted {
        return Outcome::Applied {
            next: None,
            conflicts: vec![ConflictDraft {
                kind: ConflictKind::EditVsDelete,
                field: None,
                policy: Policy::Review,
                status: ConflictStatus::Open,
                winner: Winner::Server,
                base: base.map_or(Value::Null, to_object),
                server: Value::Null,
                device: to_object(op.set),
            }],
        };
    }
    let mut next = current.clone();
    let mut changed = false;
    let mut conflicts = Vec::new();
    for (name, device) in op.set {
        let base_value = base.map(|base| value_of(base, name));
        let (device_wins, conflict) =
            settle_field(current, name, base_value, device, op.recorded_at, policy);
        if device_wins {
            if device.is_null() {
                next.fields.remove(name);
            } else {
                next.fields.insert(name.clone(), device.clone());
            }
            next.stamps.insert(name.clone(), op.recorded_at);
            changed = true;
        }
        conflicts.extend(conflict);
    }
    Outcome::Applied {
        next: changed.then(|| bump(next)),
        conflicts,
    }
}

/// Rule 6: one field `name` set to `device` by an op, against its value at the base (None:
/// unknown) and on the server. Returns whether the device's value goes into the record, and the
/// conflict to keep, if any.
///
/// - Equal to the server's value: nothing to do, and no new version for it.
/// - The server still has the base value: only the device changed it, so it applies.
/// - The device sends the base value: only the server changed it; the device "changed" nothing,
///   it merely sent a field it had not really edited, so the server's newer value stays.
/// - Both changed it to different values: a conflict, settled by the field's policy. `review`
///   keeps the server's value and opens it for a supervisor. `latest` lets the later
///   `recorded_at` win (a missing stamp is older than anything; a tie keeps the server's value,
///   which is already known to every device that pulled) and closes it, keeping the loser in it.
fn settle_field(
    current: &Current,
    name: &str,
    base: Option<&Value>,
    device: &Value,
    recorded_at: i64,
    policy: &dyn Fn(&str) -> Policy,
) -> (bool, Option<ConflictDraft>) {
    let server = value_of(&current.fields, name);
    if device == server {
        return (false, None);
    }
    if base == Some(server) {
        return (true, None);
    }
    if base == Some(device) {
        return (false, None);
    }
    let policy = policy(name);
    let (device_wins, status) = match policy {
        Policy::Review => (false, ConflictStatus::Open),
        Policy::Latest => {
            let server_stamp = current.stamps.get(name).copied().unwrap_or(i64::MIN);
            (recorded_at > server_stamp, ConflictStatus::Closed)
        }
    };
    let conflict = ConflictDraft {
        kind: ConflictKind::Field,
        field: Some(name.to_owned()),
        policy,
        status,
        winner: if device_wins {
            Winner::Device
        } else {
            Winner::Server
        },
        base: base.cloned().unwrap_or(Value::Null),
        server: server.clone(),
        device: device.clone(),
    };
    (device_wins, Some(conflict))
}

/// Rules 8 and 9: a delete against `base` (None: unknown).
///
/// Rule 9: deleting a deleted record changes nothing and is no conflict; both sides wanted it gone.
///
/// Rule 8: a delete is a tombstone (fields kept, so a supervisor can still see and restore them)
/// when the device deleted what the server holds: its base is the server's version, or no field
/// differs between the base and the server. Otherwise someone changed the record after the device
/// last saw it, and deleting would silently throw that change away: nothing is applied and one
/// open delete-vs-edit conflict keeps the delete. An unknown base counts as "changed" unless the
/// record has no fields at all, for the same reason.
fn delete(current: &Current, base: Option<&Fields>) -> Outcome {
    if current.deleted {
        return Outcome::Applied {
            next: None,
            conflicts: Vec::new(),
        };
    }
    let unchanged = base.map_or(current.fields.is_empty(), |base| {
        same_fields(base, &current.fields)
    });
    if unchanged {
        let mut next = current.clone();
        next.deleted = true;
        return Outcome::Applied {
            next: Some(bump(next)),
            conflicts: Vec::new(),
        };
    }
    Outcome::Applied {
        next: None,
        conflicts: vec![ConflictDraft {
            kind: ConflictKind::DeleteVsEdit,
            field: None,
            policy: Policy::Review,
            status: ConflictStatus::Open,
            winner: Winner::Server,
            base: base.map_or(Value::Null, to_object),
            server: to_object(&current.fields),
            device: Value::Null,
        }],
    }
}

/// Whether two fields maps hold the same values, absent and null being equal.
fn same_fields(a: &Fields, b: &Fields) -> bool {
    a.iter().all(|(name, value)| value == value_of(b, name))
        && b.iter().all(|(name, value)| value == value_of(a, name))
}

/// What the push service does with one op of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Already processed: answer with the stored result of its first processing.
    Duplicate,
    /// The device's next op: process it now.
    Apply,
    /// An earlier op is missing: neither this op nor any later op of the batch is processed.
    Gap,
}

/// Sequences a batch (oldest first) of one device whose last processed seq is `last_seq`.
///
/// Exactly once (promise 1): a seq at or below the last processed one, as advanced while walking
/// the batch, was processed already, so it is a duplicate, however it got there (a retried
/// batch, a repeat inside the batch, or a seq that went backwards). Per-device order (promise 2):
/// only `last + 1` applies; anything beyond it means an op is missing, and processing stops there
/// for the rest of the batch, so no op ever applies before an earlier op of its device.
pub fn sequence(last_seq: i64, seqs: &[i64]) -> Vec<Disposition> {
    let mut last = last_seq;
    let mut dispositions = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        // Compared as `seq <= last` first so that `last + 1` cannot overflow.
        if seq <= last {
            dispositions.push(Disposition::Duplicate);
        } else if seq == last + 1 {
            last = seq;
            dispositions.push(Disposition::Apply);
        } else {
            break;
        }
    }
    dispositions.resize(seqs.len(), Disposition::Gap);
    dispositions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Health fields wait for a supervisor; notes and contact details go to the latest edit.
    fn policy(name: &str) -> Policy {
        if name.starts_with("note") || name == "phone" {
            Policy::Latest
        } else {
            Policy::Review
        }
    }

    fn fields(value: Value) -> Fields {
        serde_json::from_value(value).expect("a JSON object")
    }

    /// A live record at `version` whose every field was last set at `stamp`.
    fn record(version: i64, value: Value, stamp: i64) -> Current {
        let fields = fields(value);
        let stamps = fields.keys().map(|name| (name.clone(), stamp)).collect();
        Current {
            version,
            deleted: false,
            fields,
            stamps,
        }
    }

    fn op(kind: OpKind, base_version: Option<i64>, set: &Fields, recorded_at: i64) -> Op<'_> {
        Op {
            kind,
            base_version,
            set,
            recorded_at,
        }
    }

    fn run(current: Option<&Current>, base: Option<&Fields>, op: &Op) -> Outcome {
        merge(current, base, op, &policy)
    }

    fn applied(outcome: Outcome) -> (Option<Current>, Vec<ConflictDraft>) {
        match outcome {
            Outcome::Applied { next, conflicts } => (next, conflicts),
            Outcome::Rejected { code, message } => panic!("rejected {code}: {message}"),
        }
    }

    fn rejected(outcome: Outcome) -> &'static str {
        match outcome {
            Outcome::Rejected { code, .. } => code,
            Outcome::Applied { .. } => panic!("applied: {outcome:?}"),
        }
    }

    fn field_conflict(
        field: &str,
        policy: Policy,
        status: ConflictStatus,
        winner: Winner,
        values: [Value; 3],
    ) -> ConflictDraft {
        let [base, server, device] = values;
        ConflictDraft {
            kind: ConflictKind::Field,
            field: Some(field.to_owned()),
            policy,
            status,
            winner,
            base,
            server,
            device,
        }
    }

    // Rule 1.

    #[test]
    fn create_of_unknown_record_is_version_1_without_nulls_and_stamps_every_set_field() {
        let set = fields(json!({"name": "Aye", "phone": null}));
        let (next, conflicts) = applied(run(None, None, &op(OpKind::Create, None, &set, 7)));
        assert_eq!(
            next,
            Some(Current {
                version: 1,
                deleted: false,
                fields: fields(json!({"name": "Aye"})),
                stamps: [("name".to_owned(), 7), ("phone".to_owned(), 7)].into(),
            })
        );
        assert!(conflicts.is_empty());
    }

    #[test]
    fn update_or_delete_of_unknown_record_is_rejected() {
        let set = fields(json!({"name": "Aye"}));
        for kind in [OpKind::Update, OpKind::Delete] {
            let outcome = run(None, None, &op(kind, Some(1), &set, 7));
            assert_eq!(rejected(outcome), "unknown_record");
        }
    }

    // Rule 2.

    #[test]
    fn a_change_makes_exactly_one_new_version() {
        let current = record(4, json!({"name": "Aye"}), 1);
        let set = fields(json!({"name": "Mya"}));
        let (next, _) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Update, Some(4), &set, 2),
        ));
        assert_eq!(next.map(|next| next.version), Some(5));
    }

    #[test]
    fn an_op_that_changes_nothing_makes_no_version() {
        let current = record(4, json!({"name": "Aye"}), 1);
        // Same value, and null for a field that is absent: both equal to what the server has.
        let set = fields(json!({"name": "Aye", "village": null}));
        let outcome = run(Some(&current), None, &op(OpKind::Update, Some(4), &set, 2));
        assert_eq!(
            outcome,
            Outcome::Applied {
                next: None,
                conflicts: vec![]
            }
        );
    }

    #[test]
    fn null_clears_a_field_and_stamps_the_clearing() {
        let current = record(4, json!({"name": "Aye", "phone": "09"}), 1);
        let set = fields(json!({"phone": null}));
        let (next, _) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Update, Some(4), &set, 2),
        ));
        let next = next.expect("a new version");
        assert_eq!(next.fields, fields(json!({"name": "Aye"})));
        assert_eq!(next.stamps["phone"], 2);
        assert_eq!(next.stamps["name"], 1);
    }

    // Rule 3.

    #[test]
    fn a_base_version_the_record_never_had_is_rejected() {
        let current = record(4, json!({"name": "Aye"}), 1);
        let set = fields(json!({"name": "Mya"}));
        for kind in [OpKind::Update, OpKind::Delete] {
            for base_version in [5, -1] {
                let outcome = run(Some(&current), None, &op(kind, Some(base_version), &set, 2));
                assert_eq!(rejected(outcome), "bad_base_version");
            }
        }
    }

    #[test]
    fn missing_history_counts_every_differing_field_as_changed_by_both() {
        let current = record(4, json!({"name": "Aye", "phone": "09", "height": 150}), 5);
        let set = fields(json!({"name": "Mya", "phone": "08", "height": 150}));
        for base_version in [Some(2), None] {
            let (next, conflicts) = applied(run(
                Some(&current),
                None,
                &op(OpKind::Update, base_version, &set, 9),
            ));
            let next = next.expect("the later phone wins");
            assert_eq!(
                next.fields,
                fields(json!({"name": "Aye", "phone": "08", "height": 150}))
            );
            assert_eq!(
                conflicts,
                vec![
                    field_conflict(
                        "name",
                        Policy::Review,
                        ConflictStatus::Open,
                        Winner::Server,
                        [Value::Null, json!("Aye"), json!("Mya")],
                    ),
                    field_conflict(
                        "phone",
                        Policy::Latest,
                        ConflictStatus::Closed,
                        Winner::Device,
                        [Value::Null, json!("09"), json!("08")],
                    ),
                ]
            );
        }
    }

    // Rule 4.

    #[test]
    fn create_of_existing_record_merges_from_an_empty_base() {
        let current = record(3, json!({"name": "Aye", "phone": "09", "height": 150}), 5);
        let set = fields(json!({"name": "Mya", "phone": "08", "height": 150, "village": "K"}));
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Create, None, &set, 4),
        ));
        // village was absent: applied. height equal: nothing. name, phone: conflicts, and the
        // phone recorded earlier than the server's loses.
        let next = next.expect("village applied");
        assert_eq!(next.version, 4);
        assert_eq!(
            next.fields,
            fields(json!({"name": "Aye", "phone": "09", "height": 150, "village": "K"}))
        );
        assert_eq!(
            conflicts,
            vec![
                field_conflict(
                    "name",
                    Policy::Review,
                    ConflictStatus::Open,
                    Winner::Server,
                    [Value::Null, json!("Aye"), json!("Mya")],
                ),
                field_conflict(
                    "phone",
                    Policy::Latest,
                    ConflictStatus::Closed,
                    Winner::Server,
                    [Value::Null, json!("09"), json!("08")],
                ),
            ]
        );
    }

    #[test]
    fn create_of_existing_identical_record_changes_nothing() {
        let current = record(1, json!({"name": "Aye"}), 5);
        let set = fields(json!({"name": "Aye"}));
        let outcome = run(Some(&current), None, &op(OpKind::Create, None, &set, 5));
        assert_eq!(
            outcome,
            Outcome::Applied {
                next: None,
                conflicts: vec![]
            }
        );
    }

    #[test]
    fn create_of_deleted_record_is_an_edit_against_a_delete() {
        let mut current = record(2, json!({"name": "Aye"}), 5);
        current.deleted = true;
        let set = fields(json!({"name": "Mya"}));
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Create, None, &set, 6),
        ));
        assert_eq!(next, None);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].kind, ConflictKind::EditVsDelete);
        assert_eq!(conflicts[0].base, json!({}));
    }

    // Rule 5.

    #[test]
    fn same_base_applies_every_changed_field_and_stamps_only_those() {
        let current = record(3, json!({"name": "Aye", "height": 150, "note": "x"}), 1);
        let set = fields(json!({"name": "Mya", "height": 150, "note": null, "village": "K"}));
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Update, Some(3), &set, 2),
        ));
        let next = next.expect("a new version");
        assert_eq!(next.version, 4);
        assert!(!next.deleted);
        assert_eq!(
            next.fields,
            fields(json!({"name": "Mya", "height": 150, "village": "K"}))
        );
        let stamps: Stamps = [
            ("height".to_owned(), 1),
            ("name".to_owned(), 2),
            ("note".to_owned(), 2),
            ("village".to_owned(), 2),
        ]
        .into();
        assert_eq!(next.stamps, stamps);
        assert!(conflicts.is_empty());
    }

    // Rule 6.

    #[test]
    fn older_base_applies_what_only_the_device_changed_and_keeps_what_only_the_server_changed() {
        let base = fields(json!({"name": "Aye", "height": 150, "weight": 50}));
        let current = record(5, json!({"name": "Aye", "height": 152, "weight": 50}), 1);
        // name: only the device changed it. height: only the server. weight: untouched (not in
        // set), so it stays whatever the server has.
        let set = fields(json!({"name": "Mya", "height": 150}));
        let (next, conflicts) = applied(run(
            Some(&current),
            Some(&base),
            &op(OpKind::Update, Some(2), &set, 2),
        ));
        let next = next.expect("name applied");
        assert_eq!(
            next.fields,
            fields(json!({"name": "Mya", "height": 152, "weight": 50}))
        );
        assert_eq!(next.stamps["height"], 1);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn both_changed_a_review_field_keeps_the_server_value_and_opens_a_conflict() {
        let base = fields(json!({"height": 150}));
        let current = record(5, json!({"height": 152}), 1);
        let set = fields(json!({"height": 149}));
        let (next, conflicts) = applied(run(
            Some(&current),
            Some(&base),
            &op(OpKind::Update, Some(2), &set, 9),
        ));
        assert_eq!(next, None);
        assert_eq!(
            conflicts,
            vec![field_conflict(
                "height",
                Policy::Review,
                ConflictStatus::Open,
                Winner::Server,
                [json!(150), json!(152), json!(149)],
            )]
        );
    }

    #[test]
    fn both_changed_a_latest_field_goes_to_the_later_recorded_at_server_on_ties() {
        let base = fields(json!({"phone": "07"}));
        let current = record(5, json!({"phone": "09"}), 10);
        let set = fields(json!({"phone": "08"}));
        for (recorded_at, winner) in [
            (11, Winner::Device),
            (10, Winner::Server),
            (9, Winner::Server),
        ] {
            let (next, conflicts) = applied(run(
                Some(&current),
                Some(&base),
                &op(OpKind::Update, Some(2), &set, recorded_at),
            ));
            match winner {
                Winner::Device => {
                    let next = next.expect("the device wins");
                    assert_eq!(next.fields, set);
                    assert_eq!(next.stamps["phone"], recorded_at);
                    assert_eq!(next.version, 6);
                }
                Winner::Server => assert_eq!(next, None),
            }
            assert_eq!(
                conflicts,
                vec![field_conflict(
                    "phone",
                    Policy::Latest,
                    ConflictStatus::Closed,
                    winner,
                    [json!("07"), json!("09"), json!("08")],
                )]
            );
        }
    }

    #[test]
    fn a_missing_stamp_loses_to_any_device_time() {
        let base = fields(json!({}));
        let mut current = record(5, json!({"note": "server"}), 10);
        current.stamps.clear();
        let set = fields(json!({"note": "device"}));
        let (next, conflicts) = applied(run(
            Some(&current),
            Some(&base),
            &op(OpKind::Update, Some(2), &set, i64::MIN + 1),
        ));
        assert_eq!(next.expect("device wins").fields, set);
        assert_eq!(conflicts[0].winner, Winner::Device);
    }

    #[test]
    fn base_version_0_is_the_empty_record() {
        let current = record(5, json!({"name": "Aye", "phone": "09"}), 10);
        // Clearing name: the device sends the base value (absent), so the server's name stays;
        // village is new on both sides' view: applied.
        let set = fields(json!({"name": null, "village": "K"}));
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Update, Some(0), &set, 11),
        ));
        assert_eq!(
            next.expect("village applied").fields,
            fields(json!({"name": "Aye", "phone": "09", "village": "K"}))
        );
        assert!(conflicts.is_empty());
    }

    // Rule 7.

    #[test]
    fn update_of_deleted_record_opens_an_edit_vs_delete_conflict_and_does_not_resurrect() {
        let mut current = record(4, json!({"name": "Aye"}), 1);
        current.deleted = true;
        let base = fields(json!({"name": "Aye"}));
        let set = fields(json!({"name": "Mya", "phone": null}));
        let expected = |base: Value| ConflictDraft {
            kind: ConflictKind::EditVsDelete,
            field: None,
            policy: Policy::Review,
            status: ConflictStatus::Open,
            winner: Winner::Server,
            base,
            server: Value::Null,
            device: json!({"name": "Mya", "phone": null}),
        };
        for (base_version, base, want) in [
            (Some(2), Some(&base), json!({"name": "Aye"})),
            (Some(4), None, json!({"name": "Aye"})),
            (Some(2), None, Value::Null),
            (None, None, Value::Null),
        ] {
            let outcome = run(
                Some(&current),
                base,
                &op(OpKind::Update, base_version, &set, 2),
            );
            assert_eq!(
                outcome,
                Outcome::Applied {
                    next: None,
                    conflicts: vec![expected(want)]
                }
            );
        }
    }

    // Rule 8.

    #[test]
    fn delete_from_the_current_version_is_a_tombstone_keeping_the_fields() {
        let current = record(4, json!({"name": "Aye"}), 1);
        let set = Fields::new();
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Delete, Some(4), &set, 2),
        ));
        let want = Current {
            version: 5,
            deleted: true,
            ..current
        };
        assert_eq!(next, Some(want));
        assert!(conflicts.is_empty());
    }

    #[test]
    fn delete_from_an_older_base_with_the_same_fields_is_a_tombstone() {
        let current = record(4, json!({"name": "Aye"}), 1);
        // An explicit null in the snapshot is the same as absent.
        let base = fields(json!({"name": "Aye", "phone": null}));
        let set = Fields::new();
        let (next, conflicts) = applied(run(
            Some(&current),
            Some(&base),
            &op(OpKind::Delete, Some(2), &set, 2),
        ));
        let next = next.expect("a tombstone");
        assert!(next.deleted);
        assert_eq!(next.version, 5);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn delete_of_a_record_changed_since_its_base_opens_a_delete_vs_edit_conflict() {
        let current = record(4, json!({"name": "Mya"}), 1);
        let base = fields(json!({"name": "Aye"}));
        let set = Fields::new();
        let expected = |base: Value| Outcome::Applied {
            next: None,
            conflicts: vec![ConflictDraft {
                kind: ConflictKind::DeleteVsEdit,
                field: None,
                policy: Policy::Review,
                status: ConflictStatus::Open,
                winner: Winner::Server,
                base,
                server: json!({"name": "Mya"}),
                device: Value::Null,
            }],
        };
        let older = op(OpKind::Delete, Some(2), &set, 2);
        assert_eq!(
            run(Some(&current), Some(&base), &older),
            expected(json!({"name": "Aye"}))
        );
        // History missing, or no base_version at all: the base is unknown, so it may have changed.
        assert_eq!(run(Some(&current), None, &older), expected(Value::Null));
        let blind = op(OpKind::Delete, None, &set, 2);
        assert_eq!(run(Some(&current), None, &blind), expected(Value::Null));
        // From version 0 the base is the empty record.
        let from_zero = op(OpKind::Delete, Some(0), &set, 2);
        assert_eq!(run(Some(&current), None, &from_zero), expected(json!({})));
    }

    #[test]
    fn delete_without_base_of_a_record_without_fields_is_a_tombstone() {
        let current = record(4, json!({}), 1);
        let set = Fields::new();
        let (next, conflicts) = applied(run(
            Some(&current),
            None,
            &op(OpKind::Delete, None, &set, 2),
        ));
        assert!(next.expect("a tombstone").deleted);
        assert!(conflicts.is_empty());
    }

    // Rule 9.

    #[test]
    fn delete_of_a_deleted_record_changes_nothing() {
        let mut current = record(4, json!({"name": "Aye"}), 1);
        current.deleted = true;
        let set = Fields::new();
        for base_version in [Some(4), Some(2), None] {
            let outcome = run(
                Some(&current),
                None,
                &op(OpKind::Delete, base_version, &set, 2),
            );
            assert_eq!(
                outcome,
                Outcome::Applied {
                    next: None,
                    conflicts: vec![]
                }
            );
        }
    }

    // Sequencing.

    use Disposition::{Apply, Duplicate, Gap};

    #[test]
    fn sequence_applies_the_next_seqs_in_order() {
        assert_eq!(sequence(0, &[1, 2, 3]), vec![Apply, Apply, Apply]);
        assert_eq!(sequence(0, &[]), vec![]);
    }

    #[test]
    fn sequence_answers_replays_as_duplicates() {
        assert_eq!(
            sequence(3, &[2, 3, 4, 5]),
            vec![Duplicate, Duplicate, Apply, Apply]
        );
        // Repeated after being applied in the same batch, and going backwards.
        assert_eq!(
            sequence(3, &[4, 4, 5, 3]),
            vec![Apply, Duplicate, Apply, Duplicate]
        );
    }

    #[test]
    fn sequence_stops_at_a_gap_for_the_rest_of_the_batch() {
        assert_eq!(sequence(3, &[4, 6, 5, 2]), vec![Apply, Gap, Gap, Gap]);
        assert_eq!(sequence(0, &[2, 1]), vec![Gap, Gap]);
    }

    #[test]
    fn sequence_does_not_overflow_at_the_last_seq() {
        assert_eq!(
            sequence(i64::MAX, &[i64::MAX, 1]),
            vec![Duplicate, Duplicate]
        );
        assert_eq!(sequence(i64::MAX - 1, &[i64::MAX]), vec![Apply]);
    }

    // Wire names.

    #[test]
    fn enums_serialize_in_snake_case() {
        assert_eq!(json!(ConflictKind::DeleteVsEdit), json!("delete_vs_edit"));
        assert_eq!(json!(ConflictKind::EditVsDelete), json!("edit_vs_delete"));
        assert_eq!(json!(Policy::Latest), json!("latest"));
        assert_eq!(json!(ConflictStatus::Open), json!("open"));
        assert_eq!(json!(Winner::Device), json!("device"));
        assert_eq!(json!(OpKind::Create), json!("create"));
        assert_eq!(json!(Disposition::Duplicate), json!("duplicate"));
        let rejected = Outcome::Rejected {
            code: "unknown_record",
            message: "m".to_owned(),
        };
        assert_eq!(
            json!(rejected),
            json!({"outcome": "rejected", "code": "unknown_record", "message": "m"})
        );
    }

    #[test]
    fn conflict_drafts_round_trip_through_json() {
        let draft = field_conflict(
            "phone",
            Policy::Latest,
            ConflictStatus::Closed,
            Winner::Device,
            [Value::Null, json!("09"), json!("08")],
        );
        let back: ConflictDraft = serde_json::from_value(json!(draft)).expect("a conflict draft");
        assert_eq!(back, draft);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::TestCaseError;

    type Device = usize;
    type RecordId = usize;

    /// "status" waits for a supervisor; the others go to the latest edit.
    const FIELD_NAMES: [&str; 3] = ["status", "phone", "note"];

    fn policy(name: &str) -> Policy {
        if name == "status" {
            Policy::Review
        } else {
            Policy::Latest
        }
    }

    /// One op as a device sends it.
    #[derive(Clone, Debug)]
    struct Msg {
        seq: i64,
        record: RecordId,
        kind: OpKind,
        base_version: Option<i64>,
        set: Fields,
        recorded_at: i64,
    }

    /// The ops one device sends in one request, oldest first.
    type Batch = (Device, Vec<Msg>);

    /// A tiny push service keeping what the real one keeps in its database: records, their
    /// version history (for bases), conflicts, each device's last seq, and the first answer to
    /// every processed op (the ledger that replays are answered from).
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Server {
        records: BTreeMap<RecordId, Current>,
        history: BTreeMap<(RecordId, i64), Fields>,
        conflicts: Vec<(RecordId, ConflictDraft)>,
        last_seq: BTreeMap<Device, i64>,
        answers: BTreeMap<(Device, i64), Outcome>,
    }

    impl Server {
        /// Processes one batch of `device`; one answer per op up to the first gap.
        fn push(&mut self, device: Device, batch: &[Msg]) -> Vec<(i64, Disposition, Outcome)> {
            let last = self.last_seq.get(&device).copied().unwrap_or(0);
            let seqs: Vec<i64> = batch.iter().map(|msg| msg.seq).collect();
            let mut answers = Vec::new();
            for (msg, disposition) in batch.iter().zip(sequence(last, &seqs)) {
                let answer = match disposition {
                    Disposition::Duplicate => self.answers[&(device, msg.seq)].clone(),
                    Disposition::Apply => {
                        let answer = self.apply(msg);
                        self.answers.insert((device, msg.seq), answer.clone());
                        self.last_seq.insert(device, msg.seq);
                        answer
                    }
                    Disposition::Gap => break,
                };
                answers.push((msg.seq, disposition, answer));
            }
            answers
        }

        fn apply(&mut self, msg: &Msg) -> Outcome {
            let base = msg
                .base_version
                .and_then(|version| self.history.get(&(msg.record, version)));
            let op = Op {
                kind: msg.kind,
                base_version: msg.base_version,
                set: &msg.set,
                recorded_at: msg.recorded_at,
            };
            let outcome = merge(self.records.get(&msg.record), base, &op, &policy);
            if let Outcome::Applied { next, conflicts } = &outcome {
                if let Some(next) = next {
                    self.history
                        .insert((msg.record, next.version), next.fields.clone());
                    self.records.insert(msg.record, next.clone());
                }
                self.conflicts.extend(
                    conflicts
                        .iter()
                        .map(|conflict| (msg.record, conflict.clone())),
                );
            }
            outcome
        }

        fn version(&self, record: RecordId) -> i64 {
            self.records
                .get(&record)
                .map_or(0, |current| current.version)
        }
    }

    /// Which version a device names as its base, relative to the server's when it wrote the op.
    #[derive(Clone, Copy, Debug)]
    enum BaseChoice {
        Behind(i64),
        Missing,
        Ahead,
    }

    /// An op before it is numbered and given its base.
    #[derive(Clone, Debug)]
    struct Draft {
        record: RecordId,
        kind: OpKind,
        base: BaseChoice,
        set: Fields,
        recorded_at: i64,
    }

    /// One batch of the in-order run, and the noise delivered before it in the faulty run: each
    /// entry a device and raw numbers that become seqs of that device (see [`noise_batch`]).
    #[derive(Clone, Debug)]
    struct Step {
        device: Device,
        len: usize,
        noise: Vec<(Device, Vec<u16>)>,
    }

    /// Small values so that devices often agree, clear fields and collide.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), (0..3i64).prop_map(Value::from)]
    }

    fn set() -> impl Strategy<Value = Fields> {
        btree_map(
            select(&FIELD_NAMES[..]).prop_map(str::to_owned),
            value(),
            0..=3,
        )
    }

    fn draft() -> impl Strategy<Value = Draft> {
        let kind = prop_oneof![
            2 => Just(OpKind::Create),
            5 => Just(OpKind::Update),
            1 => Just(OpKind::Delete),
        ];
        let base = prop_oneof![
            6 => Just(BaseChoice::Behind(0)),
            3 => (1..3i64).prop_map(BaseChoice::Behind),
            1 => Just(BaseChoice::Missing),
            1 => Just(BaseChoice::Ahead),
        ];
        (0..3usize, kind, base, set(), 0..6i64).prop_map(
            |(record, kind, base, set, recorded_at)| Draft {
                record,
                kind,
                base,
                set,
                recorded_at,
            },
        )
    }

    fn step() -> impl Strategy<Value = Step> {
        let noise = vec((0..3usize, vec(0..16u16, 0..6)), 0..3);
        (0..3usize, 1..=3usize, noise).prop_map(|(device, len, noise)| Step { device, len, noise })
    }

    /// Devices (1 to 3), the steps, and enough drafts for every op of the steps.
    fn scenario() -> impl Strategy<Value = (usize, Vec<Step>, Vec<Draft>)> {
        (1..=3usize, vec(step(), 1..8), vec(draft(), 21))
    }

    /// Numbers and bases a draft: the device wrote it offline from the server state it last saw.
    /// Devices update only records they have, so an update drafted for a record the server does
    /// not have yet becomes its create (deletes of unknown records stay, to be rejected).
    fn msg(server: &Server, seq: i64, draft: &Draft) -> Msg {
        let version = server.version(draft.record);
        let kind = match draft.kind {
            OpKind::Update if version == 0 => OpKind::Create,
            kind => kind,
        };
        let base_version = match (kind, draft.base) {
            (OpKind::Create, _) | (_, BaseChoice::Missing) => None,
            (_, BaseChoice::Behind(lag)) => Some((version - lag).max(0)),
            (_, BaseChoice::Ahead) => Some(version + 1),
        };
        Msg {
            seq,
            record: draft.record,
            kind,
            base_version,
            set: draft.set.clone(),
            recorded_at: draft.recorded_at,
        }
    }

    /// The in-order run: each step's batch delivered once, in the global order of the steps.
    /// Every batch is written from the state before it. Returns the final state and the batches.
    fn in_order(
        devices: usize,
        steps: &[Step],
        drafts: &[Draft],
    ) -> Result<(Server, Vec<Batch>), TestCaseError> {
        let mut server = Server::default();
        let mut drafts = drafts.iter();
        let mut batches = Vec::new();
        for step in steps {
            let device = step.device % devices;
            let first = server.last_seq.get(&device).copied().unwrap_or(0) + 1;
            let batch: Vec<Msg> = (first..)
                .zip(drafts.by_ref().take(step.len))
                .map(|(seq, draft)| msg(&server, seq, draft))
                .collect();
            for (_, disposition, _) in server.push(device, &batch) {
                prop_assert_eq!(disposition, Disposition::Apply);
            }
            batches.push((device, batch));
        }
        Ok((server, batches))
    }

    /// A noise batch of `device`: seqs from its stream, in any order and repeated, drawn from
    /// 1..=done+3 where `done` is how many of its ops the in-order run has applied by the end of
    /// the current step. `done + 1` is moved to `done + 2`, so noise holds replays, ops the
    /// in-order run has reached, and ops beyond a gap, but never the device's op right after
    /// the current step: that would legitimately apply it early and change the interleaving.
    fn noise_batch(stream: &[Msg], done: i64, numbers: &[u16]) -> Vec<Msg> {
        numbers
            .iter()
            .map(|&number| match 1 + i64::from(number) % (done + 3) {
                seq if seq == done + 1 => done + 2,
                seq => seq,
            })
            .filter_map(|seq| stream.get(usize::try_from(seq - 1).ok()?).cloned())
            .collect()
    }

    /// Delivers a batch to the faulty server and checks promises 1 and 2 on the answers.
    fn deliver(
        server: &mut Server,
        reference: &Server,
        device: Device,
        batch: &[Msg],
        done: &BTreeMap<Device, i64>,
    ) -> Result<(), TestCaseError> {
        for (seq, _, answer) in server.push(device, batch) {
            // Exactly once: first answer or replay, it is the answer of the in-order run.
            prop_assert_eq!(&answer, &reference.answers[&(device, seq)]);
        }
        // Per-device order: no device ever got ahead of the in-order run.
        let last = server.last_seq.get(&device).copied().unwrap_or(0);
        prop_assert!(last <= done.get(&device).copied().unwrap_or(0));
        Ok(())
    }

    /// Sends `edits` (fields set and recorded_at) as updates of devices 1 and 2, in this order,
    /// both from version 1 of a record that device 0 created with `base`.
    fn two_devices(base: &Fields, edits: [(&Fields, i64); 2]) -> Server {
        let mut server = Server::default();
        let create = Msg {
            seq: 1,
            record: 0,
            kind: OpKind::Create,
            base_version: None,
            set: base.clone(),
            recorded_at: 0,
        };
        server.push(0, &[create]);
        for (device, (set, recorded_at)) in (1..).zip(edits) {
            let update = Msg {
                seq: 1,
                record: 0,
                kind: OpKind::Update,
                base_version: Some(1),
                set: set.clone(),
                recorded_at,
            };
            server.push(device, &[update]);
        }
        server
    }

    const DISJOINT_NAMES: [&str; 5] = ["f0", "f1", "f2", "f3", "f4"];

    fn int_fields(names: &'static [&'static str]) -> impl Strategy<Value = Fields> {
        btree_map(
            select(names).prop_map(str::to_owned),
            (0..3i64).prop_map(Value::from),
            0..=names.len(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Promise 8: two devices editing disjoint fields from the same base both survive, with
        /// no conflict, whichever arrives first.
        #[test]
        fn disjoint_field_edits_both_survive(
            base in int_fields(&DISJOINT_NAMES),
            edits in btree_map(
                select(&DISJOINT_NAMES[..]).prop_map(str::to_owned),
                (any::<bool>(), value()),
                1..=5,
            ),
            times in (0..4i64, 0..4i64),
        ) {
            let split = |first: bool| -> Fields {
                edits
                    .iter()
                    .filter(|(_, (one, _))| *one == first)
                    .map(|(name, (_, value))| (name.clone(), value.clone()))
                    .collect()
            };
            let (one, two) = (split(true), split(false));
            let mut want = base.clone();
            for (name, value) in one.iter().chain(&two) {
                if value.is_null() {
                    want.remove(name);
                } else {
                    want.insert(name.clone(), value.clone());
                }
            }
            for edits in [[(&one, times.0), (&two, times.1)], [(&two, times.1), (&one, times.0)]] {
                let server = two_devices(&base, edits);
                prop_assert_eq!(&server.records[&0].fields, &want);
                prop_assert!(server.conflicts.is_empty());
            }
        }

        /// Promise 8: two devices changing one field from the same base to different values give
        /// exactly one conflict holding both values, settled by the field's policy.
        #[test]
        fn same_field_edits_give_exactly_one_conflict_with_both_values(
            field in select(&["status", "note"][..]),
            base_value in prop::option::of(0..100i64),
            offsets in (0..50i64, 0..50i64),
            second_clears in any::<bool>(),
            times in (0..4i64, 0..4i64),
            others in int_fields(&["o0", "o1"]),
        ) {
            // Three distinct values: the base, the first device's and the second device's.
            let start = base_value.unwrap_or(-1);
            let first = Value::from(start + 1 + offsets.0);
            let second = if second_clears && base_value.is_some() {
                Value::Null
            } else {
                Value::from(start + 2 + offsets.0 + offsets.1)
            };
            let mut base = others.clone();
            if let Some(value) = base_value {
                base.insert(field.to_owned(), Value::from(value));
            }
            let one: Fields = [(field.to_owned(), first.clone())].into();
            let two: Fields = [(field.to_owned(), second.clone())].into();

            let server = two_devices(&base, [(&one, times.0), (&two, times.1)]);

            let (status, winner) = match policy(field) {
                Policy::Review => (ConflictStatus::Open, Winner::Server),
                Policy::Latest if times.1 > times.0 => (ConflictStatus::Closed, Winner::Device),
                Policy::Latest => (ConflictStatus::Closed, Winner::Server),
            };
            let conflict = ConflictDraft {
                kind: ConflictKind::Field,
                field: Some(field.to_owned()),
                policy: policy(field),
                status,
                winner,
                base: base_value.map_or(Value::Null, Value::from),
                server: first.clone(),
                device: second.clone(),
            };
            prop_assert_eq!(&server.conflicts, &vec![(0, conflict)]);
            let kept = match winner {
                Winner::Server => first,
                Winner::Device => second,
            };
            let fields = &server.records[&0].fields;
            prop_assert_eq!(value_of(fields, field), &kept);
            for (name, value) in &others {
                prop_assert_eq!(&fields[name], value);
            }
        }

        /// Promises 1 and 2: batches retried, repeated, reordered, sent with gaps and mixed with
        /// replays of other devices end in the state of the in-order run, answer every op with
        /// its in-order answer, and never let an op apply before an earlier op of its device.
        #[test]
        fn replays_duplicates_and_gaps_never_change_the_result(
            (devices, steps, drafts) in scenario(),
        ) {
            let (reference, batches) = in_order(devices, &steps, &drafts)?;
            let mut streams: BTreeMap<Device, Vec<Msg>> = BTreeMap::new();
            for (device, batch) in &batches {
                streams.entry(*device).or_default().extend(batch.iter().cloned());
            }

            let mut server = Server::default();
            let mut done: BTreeMap<Device, i64> = BTreeMap::new();
            for (step, (device, batch)) in steps.iter().zip(&batches) {
                *done.entry(*device).or_default() += i64::try_from(batch.len())?;
                for (noise_device, numbers) in &step.noise {
                    let noise_device = noise_device % devices;
                    let stream = streams.get(&noise_device).map_or(&[][..], Vec::as_slice);
                    let end = done.get(&noise_device).copied().unwrap_or(0);
                    let noise = noise_batch(stream, end, numbers);
                    deliver(&mut server, &reference, noise_device, &noise, &done)?;
                }
                deliver(&mut server, &reference, *device, batch, &done)?;
                // The step's own batch, delivered whole and in order, leaves nothing behind.
                prop_assert_eq!(server.last_seq.get(device), done.get(device));
            }
            prop_assert_eq!(server, reference);
        }

        /// Promise 1: replaying any prefix of an applied batch answers Duplicate with the first
        /// answers and leaves the state unchanged.
        #[test]
        fn replaying_an_applied_op_is_a_duplicate_and_changes_nothing(
            (devices, steps, drafts) in scenario(),
            pick in any::<prop::sample::Index>(),
            prefix in any::<prop::sample::Index>(),
        ) {
            let (mut server, batches) = in_order(devices, &steps, &drafts)?;
            let before = server.clone();
            let (device, batch) = &batches[pick.index(batches.len())];
            let replay = &batch[..=prefix.index(batch.len())];
            let answers = server.push(*device, replay);
            prop_assert_eq!(answers.len(), replay.len());
            for (seq, disposition, answer) in answers {
                prop_assert_eq!(disposition, Disposition::Duplicate);
                prop_assert_eq!(&answer, &before.answers[&(*device, seq)]);
            }
            prop_assert_eq!(server, before);
        }

        /// Sequencing alone: applied seqs continue `last_seq` one by one, duplicates are exactly
        /// the seqs already reached, and a gap ends the batch.
        #[test]
        fn sequence_applies_contiguously_and_stops_at_the_first_gap(
            last_seq in 0..5i64,
            seqs in vec(0..10i64, 0..10),
        ) {
            let dispositions = sequence(last_seq, &seqs);
            prop_assert_eq!(dispositions.len(), seqs.len());
            let mut last = last_seq;
            let mut stopped = false;
            for (&seq, disposition) in seqs.iter().zip(dispositions) {
                if stopped {
                    prop_assert_eq!(disposition, Disposition::Gap);
                    continue;
                }
                match disposition {
                    Disposition::Apply => {
                        prop_assert_eq!(seq, last + 1);
                        last = seq;
                    }
                    Disposition::Duplicate => prop_assert!(seq <= last),
                    Disposition::Gap => {
                        prop_assert!(seq > last + 1);
                        stopped = true;
                    }
                }
            }
        }
    }
}
