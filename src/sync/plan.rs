//! The pure decisions of the push path for one op, before the merge engine runs: which record
//! the op lands on (following merge redirects), whether the caller may write it (scope, a move
//! out of scope, references), and the base it is merged against. No database and no I/O: the
//! push service loads the state, implements [`State`] over it, and writes what follows.
//!
//! Bases are values ([`Base`]), never worked out by version arithmetic, and they come from
//! [`State::snapshot`], which sees versions made earlier in the same batch: the result of a batch
//! does not depend on where it was split.

use serde_json::Value;

use crate::auth::scope::Scope;
use crate::domain::entities::{Entity, FieldType};
use crate::sync::merge::{self, Base, Fields, Outcome};
use crate::sync::validate::{ParsedOp, Refusal};

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

fn refusal(code: &'static str, message: &str) -> Refusal {
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

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
}
