//! A worker's offline day: the ops a device records between two syncs. Every op is valid, so
//! the server should apply all of them; the only conflicts are the collisions planned here.
//!
//! Who edits what: each live record of a village belongs to one of the village's devices (by a
//! hash of its id), and only that device edits or deletes it, at most once between two syncs of
//! its own, never a record it created since its last sync. A planned collision adds one edit (or
//! delete) of the same record by another device of the village that holds the same version, so
//! each collision makes exactly one conflict, whichever device syncs first.

use std::collections::{BTreeSet, HashSet};

use chrono::{Duration, NaiveDate};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::demo::names::full_name;
use crate::domain::entities::{Entity, FieldPolicy, MARITAL_STATUS, METHOD, RESIDENCE, VISIT_KIND};
use crate::domain::resident_id;
use crate::simulate::client::Held;

/// Region code of the ID numbers the simulator hands out: a neighbouring county the demo
/// generator never uses, so no new person is taken for a duplicate of a demo person.
const REGION: &str = "130126";

/// A collision made on purpose, and the conflict it must give.
#[derive(Clone, Debug)]
pub struct Collision {
    pub entity: String,
    pub record_id: String,
    /// `open` (review field, or a delete against an edit) or `closed` (latest field).
    pub expect_status: &'static str,
    pub devices: (usize, usize),
}

/// A device as the day's work sees it.
pub struct Worker<'a> {
    pub index: usize,
    pub slot: usize,
    pub peers: usize,
    pub replica: &'a std::collections::BTreeMap<String, Held>,
    /// Records this device created or edited since its last sync.
    pub touched: &'a mut HashSet<String>,
    pub pending: &'a mut Vec<Value>,
    pub next_seq: &'a mut i64,
}

/// Shared state of one day's generation across devices.
pub struct DayCtx<'a> {
    pub rng: &'a mut ChaCha8Rng,
    pub date: NaiveDate,
    pub used_numbers: &'a mut HashSet<String>,
    /// Records that took part in a collision: nobody touches them again.
    pub collided: &'a mut BTreeSet<String>,
    pub collisions: &'a mut Vec<Collision>,
    pub conflict_rate: f64,
}

fn owner_slot(id: &str, peers: usize) -> usize {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % peers.max(1) as u64) as usize
}

pub fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn phone(rng: &mut ChaCha8Rng) -> String {
    format!(
        "13{}{:08}",
        rng.gen_range(0..10),
        rng.gen_range(0..100_000_000u32)
    )
}

fn field<'v>(h: &'v Held, name: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    h.fields.get(name).unwrap_or(&NULL)
}

fn other_choice(rng: &mut ChaCha8Rng, values: &[&str], not: &[&Value]) -> Option<String> {
    let left: Vec<&&str> = values
        .iter()
        .filter(|v| !not.iter().any(|n| n.as_str() == Some(**v)))
        .collect();
    left.choose(rng).map(|s| s.to_string())
}

impl Worker<'_> {
    fn op(
        &mut self,
        ctx: &mut DayCtx,
        entity: &str,
        id: &str,
        kind: &str,
        base: Option<i64>,
        set: Value,
    ) {
        let minute = ctx.rng.gen_range(0..600);
        let at = ctx.date.and_hms_opt(8, 0, 0).expect("valid time") + Duration::minutes(minute);
        let mut op = json!({
            "seq": *self.next_seq, "op_id": uuid_from(ctx.rng), "entity": entity, "id": id,
            "kind": kind, "set": set, "recorded_at": format!("{}+08:00", at.format("%Y-%m-%dT%H:%M:%S")),
        });
        if let Some(b) = base {
            op["base_version"] = json!(b);
        }
        *self.next_seq += 1;
        self.touched.insert(id.to_string());
        self.pending.push(op);
    }

    fn persons(&self, pred: impl Fn(&Held) -> bool) -> Vec<(&String, &Held)> {
        self.replica
            .iter()
            .filter(|(_, h)| h.entity == "person" && pred(h))
            .collect()
    }

    /// Records of `entity` this device may edit now.
    fn editable(&self, entity: &str, collided: &BTreeSet<String>) -> Vec<(String, Held)> {
        self.replica
            .iter()
            .filter(|(id, h)| {
                h.entity == entity
                    && owner_slot(id, self.peers) == self.slot
                    && !self.touched.contains(*id)
                    && !collided.contains(*id)
            })
            .map(|(id, h)| (id.clone(), h.clone()))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn new_person(
        &mut self,
        ctx: &mut DayCtx,
        org_unit: &str,
        household: Option<&str>,
        male: bool,
        birth: NaiveDate,
        relation: &str,
        marital: &str,
    ) -> String {
        let id = uuid_from(ctx.rng);
        let number = loop {
            let n = resident_id::generate(REGION, birth, ctx.rng.gen_range(0..=999), male);
            if ctx.used_numbers.insert(n[..17].to_string()) {
                break n;
            }
        };
        let mut set = json!({
            "org_unit": org_unit, "name": full_name(ctx.rng, male), "sex": if male { "male" } else { "female" },
            "birth_date": iso(birth), "id_number": number, "relation": relation,
            "marital_status": marital, "residence": "resident", "alive": true,
        });
        if let Some(h) = household {
            set["household_id"] = json!(h);
        }
        self.op(ctx, "person", &id, "create", None, set);
        id
    }

    fn new_household(&mut self, ctx: &mut DayCtx) -> usize {
        let Some(ou) = self
            .replica
            .values()
            .filter(|h| h.entity == "household")
            .map(|h| h.org_unit.clone())
            .collect::<Vec<_>>()
            .choose(ctx.rng)
            .cloned()
        else {
            return 0;
        };
        let id = uuid_from(ctx.rng);
        let head_birth = ctx.date - Duration::days(ctx.rng.gen_range(22 * 365..40 * 365));
        let head_name = full_name(ctx.rng, true);
        let no = format!("S{:05}", ctx.rng.gen_range(0..100_000));
        let set = json!({"org_unit": ou, "household_no": no, "head_name": head_name,
                         "address": format!("新建{}号", ctx.rng.gen_range(1..300)), "phone": phone(ctx.rng)});
        self.op(ctx, "household", &id, "create", None, set);
        self.new_person(
            ctx,
            &ou,
            Some(&id),
            true,
            head_birth,
            "head",
            "first_marriage",
        );
        let wife_birth = head_birth + Duration::days(ctx.rng.gen_range(0..4 * 365));
        self.new_person(
            ctx,
            &ou,
            Some(&id),
            false,
            wife_birth,
            "spouse",
            "first_marriage",
        );
        3
    }

    fn women(&self, date: NaiveDate) -> Vec<(String, Held)> {
        let lo = iso(date - Duration::days(45 * 365));
        let hi = iso(date - Duration::days(20 * 365));
        self.persons(|h| {
            field(h, "sex") == "female"
                && field(h, "birth_date")
                    .as_str()
                    .is_some_and(|d| d >= lo.as_str() && d <= hi.as_str())
        })
        .into_iter()
        .map(|(id, h)| (id.clone(), h.clone()))
        .collect()
    }

    fn birth(&mut self, ctx: &mut DayCtx) -> usize {
        let women = self.women(ctx.date);
        let Some((mother, m)) = women.choose(ctx.rng).cloned() else {
            return 0;
        };
        let male = ctx.rng.gen_bool(0.52);
        let household = field(&m, "household_id").as_str().map(str::to_string);
        let child = self.new_person(
            ctx,
            &m.org_unit,
            household.as_deref(),
            male,
            ctx.date,
            "child",
            "unmarried",
        );
        let id = uuid_from(ctx.rng);
        let set = json!({"org_unit": m.org_unit, "mother_id": mother, "child_id": child,
                         "birth_date": iso(ctx.date), "sex": if male { "male" } else { "female" },
                         "parity": ctx.rng.gen_range(1..=2), "place": "township_clinic", "within_policy": true});
        self.op(ctx, "birth", &id, "create", None, set);
        2
    }

    fn ledger_entry(&mut self, ctx: &mut DayCtx, entity: &str) -> usize {
        let women = self.women(ctx.date);
        let Some((person, p)) = women.choose(ctx.rng).cloned() else {
            return 0;
        };
        let date = iso(ctx.date);
        let set = match entity {
            "measure" => {
                json!({"org_unit": p.org_unit, "person_id": person, "started_on": date,
                       "method": METHOD.choose(ctx.rng).map(|c| c.value), "provider": "乡镇卫生院"})
            }
            _ => json!({"org_unit": p.org_unit, "person_id": person, "visit_date": date,
                        "kind": VISIT_KIND.choose(ctx.rng).map(|c| c.value), "findings": "情况正常"}),
        };
        let id = uuid_from(ctx.rng);
        self.op(ctx, entity, &id, "create", None, set);
        1
    }

    fn migration(&mut self, ctx: &mut DayCtx) -> usize {
        let candidates: Vec<(String, Held)> = self
            .editable("person", ctx.collided)
            .into_iter()
            .filter(|(_, h)| field(h, "residence") == "resident")
            .collect();
        let Some((person, p)) = candidates.choose(ctx.rng).cloned() else {
            return 0;
        };
        let id = uuid_from(ctx.rng);
        let set = json!({"org_unit": p.org_unit, "person_id": person, "direction": "out",
                         "place": "outside_province", "moved_on": iso(ctx.date)});
        self.op(ctx, "migration", &id, "create", None, set);
        self.op(
            ctx,
            "person",
            &person,
            "update",
            Some(p.version),
            json!({"residence": "moved_out"}),
        );
        2
    }

    /// A new value for one field of `h`, different from `avoid` too; None when there is none.
    fn new_value(
        ctx: &mut DayCtx,
        entity: &str,
        name: &str,
        h: &Held,
        avoid: &Value,
    ) -> Option<Value> {
        let cur = field(h, name);
        let n = ctx.rng.gen_range(0..1_000_000);
        let v = match (entity, name) {
            (_, "phone") => json!(phone(ctx.rng)),
            (_, "notes") => json!(format!("入户核实 {n}")),
            ("household", "address") => json!(format!("{}号院{n}", ctx.rng.gen_range(1..99))),
            ("person", "marital_status") => {
                let values: Vec<&str> = MARITAL_STATUS.iter().map(|c| c.value).collect();
                json!(other_choice(ctx.rng, &values, &[cur, avoid])?)
            }
            ("person", "residence") => {
                let values: Vec<&str> = RESIDENCE.iter().map(|c| c.value).collect();
                json!(other_choice(ctx.rng, &values, &[cur, avoid])?)
            }
            ("visit", "findings") => json!(format!("复查情况 {n}")),
            _ => return None,
        };
        (v != *cur && v != *avoid).then_some(v)
    }

    fn edit(&mut self, ctx: &mut DayCtx, partners: &mut [&mut Worker<'_>]) -> usize {
        let entity = *["person", "person", "household", "visit"]
            .choose(ctx.rng)
            .expect("non-empty");
        let fields: &[&str] = match entity {
            "person" => &["phone", "notes", "marital_status", "residence"],
            "household" => &["address", "phone", "notes"],
            _ => &["findings", "notes"],
        };
        let candidates = self.editable(entity, ctx.collided);
        let Some((id, h)) = candidates.choose(ctx.rng).cloned() else {
            return 0;
        };
        let name = *fields.choose(ctx.rng).expect("non-empty");
        let Some(value) = Self::new_value(ctx, entity, name, &h, &Value::Null) else {
            return 0;
        };
        let mut set = Map::new();
        set.insert(name.to_string(), value.clone());
        self.op(
            ctx,
            entity,
            &id,
            "update",
            Some(h.version),
            Value::Object(set),
        );

        if !ctx.rng.gen_bool(ctx.conflict_rate.clamp(0.0, 1.0)) {
            return 1;
        }
        // The collision: a device of the village that holds the same version edits the same
        // field to a third value, or deletes the visit.
        let Some(partner) = partners.iter_mut().find(|p| {
            p.replica.get(&id).is_some_and(|ph| ph.version == h.version) && !p.touched.contains(&id)
        }) else {
            return 1;
        };
        let policy = Entity::parse(entity)
            .and_then(|e| e.def().field(name))
            .map_or(FieldPolicy::Review, |f| f.policy);
        let delete = entity == "visit" && ctx.rng.gen_bool(0.4);
        if delete {
            partner.op(ctx, entity, &id, "delete", Some(h.version), json!({}));
        } else {
            let Some(theirs) = Self::new_value(ctx, entity, name, &h, &value) else {
                return 1;
            };
            let mut set = Map::new();
            set.insert(name.to_string(), theirs);
            partner.op(
                ctx,
                entity,
                &id,
                "update",
                Some(h.version),
                Value::Object(set),
            );
        }
        ctx.collided.insert(id.clone());
        ctx.collisions.push(Collision {
            entity: entity.to_string(),
            record_id: id,
            expect_status: if delete || policy == FieldPolicy::Review {
                "open"
            } else {
                "closed"
            },
            devices: (self.index, partner.index),
        });
        2
    }

    fn delete(&mut self, ctx: &mut DayCtx) -> usize {
        let entity = *["visit", "measure", "supply"]
            .choose(ctx.rng)
            .expect("non-empty");
        let candidates = self.editable(entity, ctx.collided);
        let Some((id, h)) = candidates.choose(ctx.rng).cloned() else {
            return 0;
        };
        self.op(ctx, entity, &id, "delete", Some(h.version), json!({}));
        1
    }

    /// Records about `ops` ops of one day's work (a household with its couple counts as three).
    /// `partners` are the other devices of the village, for planned collisions.
    pub fn day(&mut self, ctx: &mut DayCtx, ops: usize, partners: &mut [&mut Worker<'_>]) {
        let mut made = 0;
        let mut idle = 0;
        while made < ops && idle < 50 {
            let n = match ctx.rng.gen_range(0..100) {
                0..=5 => self.new_household(ctx),
                6..=15 => self.birth(ctx),
                16..=27 => self.ledger_entry(ctx, "measure"),
                28..=44 => self.ledger_entry(ctx, "visit"),
                45..=49 => self.migration(ctx),
                50..=94 => self.edit(ctx, partners),
                _ => self.delete(ctx),
            };
            if n == 0 {
                idle += 1;
            }
            made += n;
        }
    }
}
