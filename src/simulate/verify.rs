//! The end-of-run checks, read straight from the store: every acknowledged op is in a record
//! version, a conflict or a rejected op's stored payload; conflicts found equal conflicts made;
//! no record lost or resurrected; every device holds what the server holds for its scope.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use diesel::sql_types::{BigInt, Nullable, Text};
use serde_json::Value;

use crate::db::records::{self, backend_of, JsonRow, RecordRow};
use crate::db::stmt::{self, Stmt};
use crate::db::{Db, DbConn};
use crate::domain::entities::{Entity, ENTITIES};
use crate::error::AppResult;
use crate::simulate::client::Held;
use crate::simulate::work::Collision;
use crate::sync::protocol::{OpResult, OpStatus};

/// An op and the answer the server gave it the first time.
#[derive(Clone, Debug)]
pub struct Ack {
    pub device_id: String,
    pub op: Value,
    pub result: OpResult,
}

/// One verification, with what it found.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// How many things were found wrong (0 when passed).
    pub problems: usize,
    pub detail: String,
}

fn check(name: &'static str, problems: Vec<String>, ok: String) -> Check {
    let passed = problems.is_empty();
    let detail = if passed {
        ok
    } else {
        let mut d = format!("{} problem(s): ", problems.len());
        d.push_str(
            &problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
        d
    };
    Check {
        name,
        passed,
        problems: problems.len(),
        detail,
    }
}

#[derive(diesel::QueryableByName)]
struct ConflictLine {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    record_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    device_value: String,
}

const CONFLICT_LINE: &str = "SELECT id, record_id, kind, status, device_value FROM conflicts";

/// The conflicts whose `column` is one of `values`.
fn conflicts_where<S: AsRef<str>>(
    conn: &mut DbConn,
    column: &str,
    values: &[S],
) -> AppResult<Vec<ConflictLine>> {
    let sql = format!(
        "{CONFLICT_LINE} WHERE {}",
        stmt::in_json_list(backend_of(conn), column)
    );
    Ok(Stmt::new(sql).bind(stmt::list(values)).load_on(conn)?)
}

#[derive(diesel::QueryableByName)]
struct LedgerLine {
    #[diesel(sql_type = Text)]
    device_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    payload: Option<String>,
}

fn applied(a: &Ack) -> bool {
    a.result.status.landed()
}

fn record_key(a: &Ack) -> Option<(Entity, String)> {
    let e = Entity::parse(&a.result.entity)?;
    Some((
        e,
        a.result
            .canonical_id
            .clone()
            .unwrap_or_else(|| a.result.id.clone()),
    ))
}

/// Every acknowledged op is in the ledger, and each of its values is in the record version it
/// made, in a conflict it opened, or (rejected) in its stored payload.
pub fn acknowledged(db: &Db, acks: &[Ack], devices: &[String]) -> AppResult<Check> {
    db.read(|conn| {
        let mut problems = Vec::new();
        let ledger: Vec<LedgerLine> = Stmt::new(format!(
            "SELECT device_id, seq, status, payload FROM device_ops WHERE {}",
            stmt::in_json_list(backend_of(conn), "device_id")
        ))
        .bind(stmt::list(devices))
        .load_on(conn)?;
        let ledger: HashMap<(String, i64), LedgerLine> = ledger
            .into_iter()
            .map(|l| ((l.device_id.clone(), l.seq), l))
            .collect();

        let conflict_ids: Vec<&str> = acks
            .iter()
            .flat_map(|a| a.result.conflicts.iter().map(|c| c.id.as_str()))
            .collect();
        let mut stored_conflicts = HashMap::new();
        for chunk in conflict_ids.chunks(500) {
            for c in conflicts_where(conn, "id", chunk)? {
                stored_conflicts.insert(c.id.clone(), c);
            }
        }

        // The version each applied create or update made, by record type.
        let mut wanted: BTreeMap<Entity, BTreeSet<(String, i64)>> = BTreeMap::new();
        let mut deleted_ids: BTreeMap<Entity, BTreeSet<String>> = BTreeMap::new();
        for a in acks.iter().filter(|a| applied(a)) {
            let (Some((e, id)), Some(v)) = (record_key(a), a.result.version) else {
                continue;
            };
            if a.op["kind"] == "delete" {
                if a.result.conflicts.is_empty() {
                    deleted_ids.entry(e).or_default().insert(id);
                }
            } else {
                wanted.entry(e).or_default().insert((id, v));
            }
        }
        let mut snapshots = HashMap::new();
        for (e, keys) in &wanted {
            let keys: Vec<(&str, i64)> = keys.iter().map(|(i, v)| (i.as_str(), *v)).collect();
            for (k, fields) in records::load_bases(conn, *e, &keys)? {
                snapshots.insert((*e, k.0, k.1), fields);
            }
        }
        let mut deleted_now = HashSet::new();
        for (e, ids) in &deleted_ids {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            for r in records::load(conn, *e, &ids)? {
                if r.deleted {
                    deleted_now.insert((*e, r.id));
                }
            }
        }

        let (mut values, mut in_conflicts) = (0usize, 0usize);
        for a in acks {
            let seq = a.result.seq;
            let Some(line) = ledger.get(&(a.device_id.clone(), seq)) else {
                problems.push(format!("device {} seq {seq} missing from the ledger", a.device_id));
                continue;
            };
            if a.result.status == OpStatus::Rejected {
                if line.status != "rejected" || line.payload.is_none() {
                    problems.push(format!("rejected seq {seq}: payload not kept"));
                }
                continue;
            }
            for c in &a.result.conflicts {
                if !stored_conflicts.contains_key(&c.id) {
                    problems.push(format!("conflict {} of seq {seq} not stored", c.id));
                }
            }
            let Some((e, id)) = record_key(a) else {
                continue;
            };
            let kind = a.op["kind"].as_str().unwrap_or_default();
            let whole = a.result.conflicts.iter().any(|c| c.field.is_none());
            if kind == "delete" {
                if !whole && !deleted_now.contains(&(e, id.clone())) {
                    problems.push(format!("acknowledged delete of {id} is not a tombstone"));
                }
                continue;
            }
            let version = a.result.version.unwrap_or_default();
            let snapshot = snapshots.get(&(e, id.clone(), version));
            let set = a.op["set"].as_object().cloned().unwrap_or_default();
            for (name, value) in set.iter().filter(|(n, _)| *n != "org_unit") {
                values += 1;
                let conflict = a
                    .result
                    .conflicts
                    .iter()
                    .find(|c| c.field.as_deref() == Some(name.as_str()) || c.field.is_none());
                if let Some(c) = conflict {
                    let kept = match stored_conflicts.get(&c.id) {
                        Some(s) if c.field.is_some() => {
                            serde_json::from_str::<Value>(&s.device_value).ok().as_ref() == Some(value)
                        }
                        Some(s) => serde_json::from_str::<Value>(&s.device_value)
                            .ok()
                            .is_some_and(|d| d.get(name) == Some(value)),
                        None => false,
                    };
                    in_conflicts += 1;
                    if !kept {
                        problems.push(format!("{id}.{name} of seq {seq}: value not in its conflict"));
                    }
                    continue;
                }
                let found = snapshot.and_then(|s| s.get(name)).unwrap_or(&Value::Null);
                if found != value {
                    problems.push(format!(
                        "{id}.{name} of seq {seq}: version {version} holds {found}, the op set {value}"
                    ));
                }
            }
        }
        Ok(check(
            "every acknowledged op is in the store",
            problems,
            format!(
                "{} ops in the ledger; {values} values found ({in_conflicts} of them in conflicts)",
                acks.len()
            ),
        ))
    })
}

/// Each planned collision gave exactly one conflict, of the expected status, and nothing else
/// the simulated devices did gave one.
pub fn conflicts(
    db: &Db,
    devices: &[String],
    made: &[Collision],
) -> AppResult<(Check, [usize; 4])> {
    db.read(|conn| {
        let found = conflicts_where(conn, "device_id", devices)?;
        let mut by_record: HashMap<&str, Vec<&ConflictLine>> = HashMap::new();
        for c in &found {
            by_record.entry(c.record_id.as_str()).or_default().push(c);
        }
        let mut problems = Vec::new();
        for m in made {
            match by_record.remove(m.record_id.as_str()) {
                None => problems.push(format!(
                    "collision on {} {}: no conflict",
                    m.entity, m.record_id
                )),
                Some(cs) if cs.len() != 1 => problems.push(format!(
                    "collision on {} {}: {} conflicts",
                    m.entity,
                    m.record_id,
                    cs.len()
                )),
                Some(cs) if cs[0].status != m.expect_status => problems.push(format!(
                    "collision on {} {}: conflict {} ({}) is {}, expected {}",
                    m.entity, m.record_id, cs[0].id, cs[0].kind, cs[0].status, m.expect_status
                )),
                Some(_) => {}
            }
        }
        for (record, cs) in by_record {
            problems.push(format!("unplanned conflict on {record} ({})", cs[0].kind));
        }
        let open_made = made.iter().filter(|m| m.expect_status == "open").count();
        let open_found = found.iter().filter(|c| c.status == "open").count();
        let counts = [
            open_made,
            made.len() - open_made,
            open_found,
            found.len() - open_found,
        ];
        Ok((
            check(
                "conflicts found == conflicts made",
                problems,
                format!(
                    "made {} ({} open, {} closed), found {} ({} open, {} closed)",
                    made.len(),
                    counts[0],
                    counts[1],
                    found.len(),
                    counts[2],
                    counts[3]
                ),
            ),
            counts,
        ))
    })
}

/// Live records of every type, in the whole store.
pub fn live_count(db: &Db) -> AppResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    db.read(|conn| {
        let mut total = 0;
        for d in ENTITIES {
            // `table` comes from the record-type table.
            let rows: Vec<N> = Stmt::new(format!(
                "SELECT COUNT(*) AS n FROM {} WHERE NOT deleted",
                d.table
            ))
            .load_on(conn)?;
            total += rows.first().map_or(0, |r| r.n);
        }
        Ok(total)
    })
}

/// Every record the devices created or edited exists, deleted exactly when an acknowledged
/// delete took effect; the store holds as many live records as before plus creates minus deletes.
pub fn records(db: &Db, acks: &[Ack], live_before: i64) -> AppResult<Check> {
    let mut expect: BTreeMap<(Entity, String), bool> = BTreeMap::new();
    let (mut creates, mut deletes) = (0i64, 0i64);
    for a in acks.iter().filter(|a| applied(a)) {
        let Some(key) = record_key(a) else { continue };
        let gone = a.op["kind"] == "delete" && a.result.conflicts.is_empty();
        if a.op["kind"] == "create" && a.result.version == Some(1) {
            creates += 1;
        }
        if gone {
            deletes += 1;
        }
        let e = expect.entry(key).or_insert(false);
        *e = *e || gone;
    }
    let mut problems = Vec::new();
    db.read(|conn| {
        let mut by_entity: BTreeMap<Entity, Vec<&str>> = BTreeMap::new();
        for (e, id) in expect.keys() {
            by_entity.entry(*e).or_default().push(id);
        }
        let mut found: HashMap<(Entity, String), RecordRow> = HashMap::new();
        for (e, ids) in by_entity {
            for r in records::load(conn, e, &ids)? {
                found.insert((e, r.id.clone()), r);
            }
        }
        for ((e, id), gone) in &expect {
            match found.get(&(*e, id.clone())) {
                None => problems.push(format!("{} {id} lost", e.name())),
                Some(r) if r.deleted && !gone => problems.push(format!(
                    "{} {id} deleted without an acknowledged delete",
                    e.name()
                )),
                Some(r) if !r.deleted && *gone => {
                    problems.push(format!("{} {id} resurrected", e.name()))
                }
                Some(_) => {}
            }
        }
        Ok(())
    })?;
    let live_after = live_count(db)?;
    if live_after != live_before + creates - deletes {
        problems.push(format!(
            "live records {live_after}, expected {live_before} + {creates} created - {deletes} deleted"
        ));
    }
    Ok(check(
        "no record lost or resurrected",
        problems,
        format!(
            "{} records touched; live {live_before} + {creates} created - {deletes} deleted = {live_after}",
            expect.len()
        ),
    ))
}

/// The live records of one village (and its groups), read from the tables themselves.
pub fn scope_snapshot(conn: &mut DbConn, village: &str) -> AppResult<BTreeMap<String, Held>> {
    let backend = backend_of(conn);
    let mut out = BTreeMap::new();
    for d in ENTITIES {
        let sql = format!(
            "{} WHERE org_unit >= ? AND org_unit < ? AND NOT deleted",
            records::select_json_sql(backend, d.entity)
        );
        let upper = format!("{village}~");
        let rows: Vec<JsonRow> = Stmt::new(sql).text(village).text(&upper).load_on(conn)?;
        for j in rows {
            let r = RecordRow::from_json(&j.j)?;
            out.insert(
                r.id.clone(),
                Held {
                    entity: r.entity.name().to_string(),
                    org_unit: r.org_unit.clone(),
                    version: r.version,
                    fields: serde_json::to_value(&r.fields).expect("fields serialise"),
                },
            );
        }
    }
    Ok(out)
}

/// Every device holds exactly the server's live records of its village, at the same versions.
pub fn convergence<'a>(
    db: &Db,
    devices: impl Iterator<Item = (&'a str, &'a BTreeMap<String, Held>)>,
) -> AppResult<Check> {
    let mut problems = Vec::new();
    let mut cache: HashMap<String, BTreeMap<String, Held>> = HashMap::new();
    let mut n = 0;
    for (village, replica) in devices {
        n += 1;
        if !cache.contains_key(village) {
            let snap = db.read(|c| scope_snapshot(c, village))?;
            cache.insert(village.to_string(), snap);
        }
        let server = &cache[village];
        if server == replica {
            continue;
        }
        let missing = server.keys().filter(|k| !replica.contains_key(*k)).count();
        let extra = replica.keys().filter(|k| !server.contains_key(*k)).count();
        let differ = server
            .iter()
            .filter(|(k, v)| replica.get(*k).is_some_and(|r| r != *v))
            .count();
        problems.push(format!(
            "a device of {village}: {missing} missing, {extra} extra, {differ} different"
        ));
    }
    let records: usize = cache.values().map(BTreeMap::len).sum();
    Ok(check(
        "every device converged with the server",
        problems,
        format!(
            "{n} devices, {} villages, {records} live records compared",
            cache.len()
        ),
    ))
}
