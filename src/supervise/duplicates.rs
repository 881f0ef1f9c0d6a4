//! Potential duplicate persons, supervisor merges with per-field choices, and undo.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Principal, Scope};
use crate::db::records::{self, RecordRow};
use crate::db::schema::person_merges;
use crate::db::{Db, DbConn};
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::supervise::audit::{audit_change, audit_person_reads};
use crate::supervise::ids::{id_value, ids_for, IdContext};
use crate::supervise::paging::{next_after, page_limit};
use crate::supervise::record::{load_in_scope, supervisor_op, view, RecordView};
use crate::supervise::sql::{count, plain, prefix_cond, scope_cond, CountRow, Query};
use crate::sync::changeset::Changeset;
use crate::sync::duplicates::{disagreements, dismiss_pair, undismiss_pair, Dismissal};
use crate::sync::protocol::{ConflictOut, OpResult, OpStatus};
use crate::sync::push::{self, Actor};

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct DuplicateFilter {
    /// Only this org unit's subtree.
    pub village: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct DuplicatePair {
    /// `a_id|b_id`, the pair's key (and cursor).
    pub key: String,
    /// The queued candidate's id (same ID number); absent for the weaker signal.
    pub candidate_id: Option<String>,
    /// `id_number` (same resident ID number) or `name_birth_date` (same name, birth date and village).
    pub signal: String,
    pub signal_zh: String,
    pub org_unit: String,
    /// Both persons (ID numbers masked).
    pub a: RecordView,
    pub b: RecordView,
    /// Fields both hold with different values.
    pub disagreements: Vec<String>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct DuplicatePage {
    /// Pairs in the queue; when `total_capped`, at least this many (computed pairs are
    /// counted up to a cap, see `COMPUTED_PAIRS_COUNT_CAP`).
    pub total: i64,
    /// Whether `total` stopped counting at the cap.
    pub total_capped: bool,
    pub items: Vec<DuplicatePair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Computed pairs (same name, birth date and village) are counted up to this many.
pub const COMPUTED_PAIRS_COUNT_CAP: i64 = 1000;

/// More persons than this sharing name, birth date and village are not paired: they are no
/// plausible duplicates, and pairing them would cost the square of their number.
pub const MAX_NAMESAKES: i64 = 50;

#[derive(diesel::QueryableByName)]
struct PairRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    a: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    b: String,
}

/// Open candidates (same ID number) and, computed, live persons of one village sharing name
/// and birth date; both persons must lie in the caller's subtree.
pub fn list(db: &Db, principal: &Principal, f: &DuplicateFilter) -> AppResult<DuplicatePage> {
    let limit = page_limit(f.limit)? as usize;
    if f.after.as_deref().is_some_and(|a| !plain(a)) {
        return Err(AppError::BadRequest("bad cursor".into()));
    }
    let (page, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "org_unit"));
        q.cond("status = 'open'");
        q.cond(
            "NOT EXISTS (SELECT 1 FROM duplicate_dismissals x WHERE x.person_a = \
             duplicate_candidates.person_a AND x.person_b = duplicate_candidates.person_b)",
        );
        if let Some(v) = &f.village {
            q.cond(prefix_cond(v, "org_unit")?);
        }
        let queued: Vec<(String, String, String, String)> = {
            #[derive(diesel::QueryableByName)]
            struct C {
                #[diesel(sql_type = diesel::sql_types::Text)]
                id: String,
                #[diesel(sql_type = diesel::sql_types::Text)]
                person_a: String,
                #[diesel(sql_type = diesel::sql_types::Text)]
                person_b: String,
                #[diesel(sql_type = diesel::sql_types::Text)]
                org_unit: String,
            }
            let rows: Vec<C> = q.load(
                conn,
                &format!(
                    "SELECT id, person_a, person_b, org_unit FROM duplicate_candidates{}",
                    q.where_sql()
                ),
            )?;
            rows.into_iter()
                .map(|c| (c.id, c.person_a, c.person_b, c.org_unit))
                .collect()
        };
        // Computed pairs: bounded by the index on (org_unit, birth_date, name), read a page at
        // a time after the cursor, and counted only up to a cap, so a village where thousands
        // of persons share a birth date (or a name too) cannot stall the queue. Pairs with a
        // candidate row come from the queue above (open) or are settled (not listed).
        let after = f.after.clone().unwrap_or_default();
        let mut w = Query::new(conn);
        w.cond(scope_cond(&scope, "a.org_unit"));
        if let Some(v) = &f.village {
            w.cond(prefix_cond(v, "a.org_unit")?);
        }
        w.cond("a.id < b.id AND a.name = b.name AND a.birth_date = b.birth_date")
            .cond("a.org_unit = b.org_unit AND NOT a.deleted AND NOT b.deleted")
            .cond("a.merged_into IS NULL AND b.merged_into IS NULL")
            .cond(
                "NOT EXISTS (SELECT 1 FROM duplicate_candidates d WHERE d.person_a = a.id \
                 AND d.person_b = b.id)",
            )
            .cond(
                "NOT EXISTS (SELECT 1 FROM duplicate_dismissals x WHERE x.person_a = a.id \
                 AND x.person_b = b.id)",
            );
        // Groups first (one pass over the index), pairs only within groups of at most
        // `MAX_NAMESAKES`: the pairs a request can build stay bounded whatever a village holds.
        let mut groups = vec![
            scope_cond(&scope, "org_unit"),
            "NOT deleted AND merged_into IS NULL".to_string(),
        ];
        if let Some(v) = &f.village {
            groups.push(prefix_cond(v, "org_unit")?);
        }
        // The groups are read once (materialised) from the partial index of live persons, and
        // each group's members are looked up in it: on PostgreSQL through LATERAL, since the
        // planner, expecting thousands of groups where there are a handful, otherwise hashes
        // the whole county (2 s over 300,000 persons; 0.13 s this way). `OFFSET 0` keeps each
        // look-up a subquery: without it the planner may pull it up into the same hash join
        // (seen for a township of 98,000 persons: 212 ms, against 36 ms with it).
        let with = format!(
            "WITH g AS MATERIALIZED (SELECT org_unit, birth_date, name FROM persons WHERE {} \
             GROUP BY org_unit, birth_date, name HAVING COUNT(*) BETWEEN 2 AND {MAX_NAMESAKES})",
            groups.join(" AND ")
        );
        let member = |alias: &str| {
            format!(
                "SELECT * FROM persons {alias}0 WHERE {alias}0.org_unit = g.org_unit \
                 AND {alias}0.birth_date = g.birth_date AND {alias}0.name = g.name \
                 AND NOT {alias}0.deleted AND {alias}0.merged_into IS NULL OFFSET 0"
            )
        };
        let from = match w.backend() {
            crate::db::Backend::Postgres => format!(
                "FROM g JOIN LATERAL ({}) a ON true JOIN LATERAL ({}) b ON true",
                member("a"),
                member("b")
            ),
            crate::db::Backend::Sqlite => "FROM g \
                 JOIN persons a ON a.org_unit = g.org_unit AND a.birth_date = g.birth_date AND a.name = g.name \
                 JOIN persons b ON b.org_unit = g.org_unit AND b.birth_date = g.birth_date AND b.name = g.name"
                .to_string(),
        };
        let weak_total: Vec<CountRow> = w.load(
            conn,
            &format!(
                "{with} SELECT COUNT(*) AS n FROM (SELECT 1 {from}{} LIMIT {}) capped",
                w.where_sql(),
                COMPUTED_PAIRS_COUNT_CAP + 1
            ),
        )?;
        let weak_total = weak_total.first().map_or(0, |r| r.n);
        // Keys compare as byte strings (ids are all 36 characters), as in the BTreeMap below.
        let bytes = match w.backend() {
            crate::db::Backend::Sqlite => "",
            crate::db::Backend::Postgres => " COLLATE \"C\"",
        };
        if !after.is_empty() {
            let (after_a, after_b) = after.split_once('|').unwrap_or((after.as_str(), ""));
            let (pa, pb) = (w.text(after_a), w.text(after_b));
            w.cond(format!(
                "(a.id{bytes} > {pa} OR (a.id = {pa} AND b.id{bytes} > {pb}))"
            ));
        }
        let weak: Vec<PairRow> = w.load(
            conn,
            &format!(
                "{with} SELECT a.id AS a, b.id AS b {from}{} ORDER BY a.id{bytes}, b.id{bytes} LIMIT {}",
                w.where_sql(),
                limit + 1
            ),
        )?;
        let mut pairs: BTreeMap<String, (Option<String>, &'static str, String, String)> =
            BTreeMap::new();
        for (id, a, b, _) in queued {
            pairs.insert(format!("{a}|{b}"), (Some(id), "id_number", a, b));
        }
        let queued_total = pairs.len() as i64;
        for p in weak {
            pairs
                .entry(format!("{}|{}", p.a, p.b))
                .or_insert((None, "name_birth_date", p.a, p.b));
        }
        // Both persons must be live and in scope.
        let ids: BTreeSet<&str> = pairs
            .values()
            .flat_map(|p| [p.2.as_str(), p.3.as_str()])
            .collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let rows: BTreeMap<String, RecordRow> = records::load(conn, Entity::Person, &ids)?
            .into_iter()
            .filter(|r| scope.contains(&r.org_unit) && !r.deleted && r.merged_into.is_none())
            .map(|r| (r.id.clone(), r))
            .collect();
        let before = pairs.len();
        pairs.retain(|_, p| rows.contains_key(&p.2) && rows.contains_key(&p.3));
        // Only queued pairs can drop out here (computed ones are live and in scope by query).
        let queued_total = queued_total - (before - pairs.len()) as i64;
        let total_capped = weak_total > COMPUTED_PAIRS_COUNT_CAP;
        let total = queued_total + weak_total.min(COMPUTED_PAIRS_COUNT_CAP);
        let list_ids = ids_for(principal, IdContext::List);
        let mut items = Vec::new();
        let mut persons = BTreeSet::new();
        let mut more = false;
        for (key, (cid, signal, a, b)) in pairs.into_iter().filter(|(k, _)| *k > after) {
            if items.len() == limit {
                more = true;
                break;
            }
            let (ra, rb) = (&rows[&a], &rows[&b]);
            persons.insert(a.clone());
            persons.insert(b.clone());
            items.push(DuplicatePair {
                key,
                candidate_id: cid,
                signal: signal.to_string(),
                signal_zh: if signal == "id_number" {
                    "身份证号相同"
                } else {
                    "姓名、出生日期、村相同"
                }
                .to_string(),
                org_unit: ra.org_unit.clone(),
                disagreements: disagreements(ra, rb),
                a: view(ra, list_ids),
                b: view(rb, list_ids),
            });
        }
        Ok((
            DuplicatePage {
                total,
                total_capped,
                next_after: next_after(more, &items, |i| i.key.clone()),
                items,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    pub survivor_id: String,
    pub merged_id: String,
    /// Per field, whose value the survivor keeps: `survivor` (default) or `merged`. Fields the
    /// survivor lacks are filled from the merged person either way.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct MergeResult {
    pub merge_id: String,
    pub survivor: RecordView,
    /// Records re-pointed from the merged person to the survivor.
    pub repointed: Vec<String>,
}

pub fn merge(db: &Db, principal: &Principal, m: &MergeRequest) -> AppResult<MergeResult> {
    for (field, side) in &m.fields {
        if Entity::Person.def().field(field).is_none() {
            return Err(AppError::validation(
                "unknown_field",
                format!("person has no field `{field}`"),
            ));
        }
        if !matches!(side.as_str(), "survivor" | "merged") {
            return Err(AppError::validation(
                "bad_choice",
                "a field's choice is survivor or merged",
            ));
        }
    }
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let survivor = load_in_scope(conn, &scope, Entity::Person, &m.survivor_id)?;
        let merged = load_in_scope(conn, &scope, Entity::Person, &m.merged_id)?;
        let mut cs = Changeset::begin(conn)?;
        cs.plan.load(survivor.clone());
        cs.plan.load(merged.clone());
        let merge_id = cs.merge_persons(
            conn,
            &survivor.id,
            &merged.id,
            &principal.user_id,
            &m.fields,
        )?;
        let repointed: Vec<String> = cs
            .plan
            .versions
            .iter()
            .filter(|(r, _)| r.id != survivor.id && r.id != merged.id)
            .map(|(r, _)| r.id.clone())
            .collect();
        let final_survivor = cs.plan.records[&(Entity::Person, survivor.id.clone())].clone();
        cs.finish(conn, None)?;
        audit_change(
            conn,
            principal,
            "persons_merged",
            "person",
            vec![survivor.id.clone(), merged.id.clone()],
            json!({"merge_id": merge_id, "repointed": repointed.len(), "reason": m.reason}),
        )?;
        Ok(MergeResult {
            merge_id,
            survivor: view(&final_survivor, ids_for(principal, IdContext::Record)),
            repointed,
        })
    })
}

#[derive(Serialize, ToSchema, Debug)]
pub struct UndoResult {
    pub merge_id: String,
    pub survivor: RecordView,
    pub restored: RecordView,
    /// Records pointed back at the restored person.
    pub repointed: Vec<String>,
    /// Conflicts the undo met: a field the merge changed and someone changed again since,
    /// settled by the field's policy like any edit (`review`: the current value stays and the
    /// value the undo would have restored waits in an open conflict).
    pub conflicts: Vec<ConflictOut>,
}

/// The version of a record the merge left: from the snapshot, or for merges stored before
/// snapshots held it, the newest version written no later than the merge.
fn version_after(
    conn: &mut DbConn,
    recorded: Option<i64>,
    entity: Entity,
    id: &str,
    merged_at: i64,
) -> AppResult<Option<i64>> {
    use crate::db::schema::record_versions as rv;
    if recorded.is_some() {
        return Ok(recorded);
    }
    Ok(rv::table
        .filter(rv::entity.eq(entity.name()))
        .filter(rv::record_id.eq(id))
        .filter(rv::created_at.le(merged_at))
        .select(diesel::dsl::max(rv::version))
        .first::<Option<i64>>(conn)?)
}

/// What the undo of a merge puts back on one record: `wanted` values of fields, against the
/// version the merge left. With `whole`, every field (a field absent from `wanted` is cleared);
/// otherwise only the fields `wanted` names.
struct Back<'a> {
    entity: Entity,
    id: &'a str,
    base_version: i64,
    wanted: &'a Map<String, Value>,
    whole: bool,
    /// When the values put back were current: the time of the merge.
    recorded_at: i64,
}

/// Puts `b` back through the merge path (`actor`), so that whatever changed since the merge is
/// kept and a field changed both ways becomes a conflict. None when the merge changed nothing
/// there.
fn merge_back(conn: &mut DbConn, actor: &Actor, b: &Back) -> AppResult<Option<OpResult>> {
    let base = records::load_bases(conn, b.entity, &[(b.id, b.base_version)])?
        .remove(&(b.id.to_string(), b.base_version))
        .ok_or_else(|| AppError::Internal("merge undo: base version missing".into()))?;
    let keys: BTreeSet<&String> = if b.whole {
        base.keys().chain(b.wanted.keys()).collect()
    } else {
        b.wanted.keys().collect()
    };
    let set: Map<String, Value> = keys
        .into_iter()
        .filter(|k| base.get(*k) != b.wanted.get(*k))
        .map(|k| (k.clone(), b.wanted.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    if set.is_empty() {
        return Ok(None);
    }
    let op = supervisor_op(
        b.entity,
        b.id,
        b.base_version,
        &Value::Object(set),
        Some(b.recorded_at),
    )?;
    let result = push::apply_direct(conn, actor, &op)?;
    if result.status == OpStatus::Rejected {
        return Err(AppError::Conflict(format!(
            "the {} could not be merged back: {}",
            b.entity.name(),
            result.message.clone().unwrap_or_default()
        )));
    }
    Ok(Some(result))
}

/// Undoes a merge through the merge path. The merged person comes back as it was; the fields
/// the merge changed on the survivor, and the references it re-pointed, are merged back
/// three-way against the versions the merge left, like a supervisor's edit made at the time of
/// the merge: edits made since survive, and a field changed both ways becomes a conflict
/// (kept, in the queue), never a silent loss. Each change is a new version devices receive.
pub fn undo(db: &Db, principal: &Principal, merge_id: &str) -> AppResult<UndoResult> {
    if !plain(merge_id) {
        return Err(AppError::NotFound);
    }
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let m: Option<(String, String, String, i64, Option<i64>)> = person_merges::table
            .filter(person_merges::id.eq(merge_id))
            .select((
                person_merges::survivor_id,
                person_merges::merged_id,
                person_merges::snapshot,
                person_merges::merged_at,
                person_merges::undone_at,
            ))
            .first(conn)
            .optional()?;
        let Some((survivor_id, merged_id, snapshot, merged_at, undone_at)) = m else {
            return Err(AppError::NotFound);
        };
        let survivor = load_in_scope(conn, &scope, Entity::Person, &survivor_id)?;
        let merged = load_in_scope(conn, &scope, Entity::Person, &merged_id)?;
        if undone_at.is_some() {
            return Err(AppError::Conflict("the merge was already undone".into()));
        }
        if merged.merged_into.as_deref() != Some(survivor_id.as_str()) {
            return Err(AppError::Conflict(
                "the merged person no longer points at the survivor".into(),
            ));
        }
        if survivor.merged_into.is_some() {
            return Err(AppError::Conflict(
                "the survivor was merged into another person since: undo that merge first".into(),
            ));
        }
        let snap: Value = serde_json::from_str(&snapshot)
            .map_err(|e| AppError::Internal(format!("merge snapshot: {e}")))?;
        let empty = Map::new();
        let before = snap["survivor"]["fields"].as_object().unwrap_or(&empty);
        let after = &snap["after"];
        let now = crate::db::now_micros();

        // The pair is dismissed first, so that neither this undo nor later pushes merge or
        // queue it again.
        dismiss_pair(
            conn,
            &Dismissal {
                a: &survivor_id,
                b: &merged_id,
                org_unit: snap["merged"]["org_unit"]
                    .as_str()
                    .unwrap_or(&merged.org_unit),
                reason: "merge undone",
                by: &principal.user_id,
                merge_id: Some(merge_id),
            },
            now,
        )?;

        // The merged person: ops sent to it since were redirected to the survivor, so its
        // tombstone still holds its fields as they were; it only comes back to life.
        let mut cs = Changeset::begin(conn)?;
        let mut r = merged.clone();
        r.deleted = false;
        r.merged_into = None;
        if let Some(o) = snap["merged"]["org_unit"].as_str() {
            r.org_unit = o.to_string();
        }
        let restored = cs.plan.supervisor_version(r, &principal.user_id);
        cs.finish(conn, None)?;

        let actor = Actor {
            user_id: &principal.user_id,
            device_id: None,
            scope: &scope,
        };
        let mut conflicts = Vec::new();
        // The survivor: every field the merge changed, back to its value before the merge.
        let survivor_after = version_after(
            conn,
            after["survivor"].as_i64(),
            Entity::Person,
            &survivor_id,
            merged_at,
        )?;
        if let Some(v) = survivor_after {
            let back = Back {
                entity: Entity::Person,
                id: &survivor_id,
                base_version: v,
                wanted: before,
                whole: true,
                recorded_at: merged_at,
            };
            if let Some(res) = merge_back(conn, &actor, &back)? {
                conflicts.extend(res.conflicts);
            }
        }
        // The records the merge re-pointed: their reference back to the restored person.
        let mut repointed = Vec::new();
        let children = snap["children"].as_array().cloned().unwrap_or_default();
        let child_after = after["children"].as_array().cloned().unwrap_or_default();
        for child in children {
            let (Some(e), Some(id), Some(field)) = (
                child[0].as_str().and_then(Entity::parse),
                child[1].as_str(),
                child[2].as_str(),
            ) else {
                continue;
            };
            let recorded = child_after
                .iter()
                .find(|c| c[1].as_str() == Some(id) && c[2].as_str() == Some(field))
                .and_then(|c| c[3].as_i64());
            let Some(v) = version_after(conn, recorded, e, id, merged_at)? else {
                continue;
            };
            let Some(current) = records::load_one(conn, e, id)? else {
                continue;
            };
            // The merge re-pointed it wherever it lay, so pointing it back may too (the
            // restored person is the reference's target, so its unit is in this scope).
            let child_scope = Scope::new(vec![current.org_unit.clone(), restored.org_unit.clone()]);
            let child_actor = Actor {
                user_id: &principal.user_id,
                device_id: None,
                scope: &child_scope,
            };
            let wanted = Map::from_iter([(field.to_string(), Value::String(merged_id.clone()))]);
            let back = Back {
                entity: e,
                id,
                base_version: v,
                wanted: &wanted,
                whole: false,
                recorded_at: merged_at,
            };
            if let Some(res) = merge_back(conn, &child_actor, &back)? {
                conflicts.extend(res.conflicts);
            }
            let now_points = records::load_one(conn, e, id)?.and_then(|r| {
                r.fields
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            if now_points.as_deref() == Some(merged_id.as_str())
                && !repointed.contains(&id.to_string())
            {
                repointed.push(id.to_string());
            }
        }
        diesel::update(person_merges::table.filter(person_merges::id.eq(merge_id)))
            .set((
                person_merges::undone_at.eq(now),
                person_merges::undone_by.eq(&principal.user_id),
            ))
            .execute(conn)?;
        audit_change(
            conn,
            principal,
            "merge_undone",
            "person",
            vec![survivor_id.clone(), merged_id.clone()],
            json!({"merge_id": merge_id, "repointed": repointed.len(),
                   "conflicts": conflicts.iter().map(|c| &c.id).collect::<Vec<_>>()}),
        )?;
        let s = records::load_one(conn, Entity::Person, &survivor_id)?.ok_or(AppError::NotFound)?;
        let restored = records::load_one(conn, Entity::Person, &merged_id)?.unwrap_or(restored);
        let ids = ids_for(principal, IdContext::Record);
        let conflicts = conflicts
            .into_iter()
            .map(|mut c| {
                if let Some(e) = Entity::parse(&c.entity) {
                    let f = c.field.clone();
                    c.base_value = id_value(e, f.as_deref(), c.base_value, ids);
                    c.server_value = id_value(e, f.as_deref(), c.server_value, ids);
                    c.device_value = id_value(e, f.as_deref(), c.device_value, ids);
                }
                c
            })
            .collect();
        Ok(UndoResult {
            merge_id: merge_id.to_string(),
            survivor: view(&s, ids),
            restored: view(&restored, ids),
            repointed,
            conflicts,
        })
    })
}

/// Two persons a supervisor judged to be different people.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DismissRequest {
    pub a_id: String,
    pub b_id: String,
    /// Why they are two people (kept with the dismissal and in the audit log; 1-500 characters).
    pub reason: String,
}

/// A dismissed pair: never listed again, never merged automatically, until withdrawn.
#[derive(Serialize, ToSchema, Debug)]
pub struct DismissalView {
    /// The smaller id of the two.
    pub person_a: String,
    pub person_b: String,
    pub org_unit: String,
    pub reason: String,
    pub dismissed_by: String,
    /// Unix microseconds.
    pub dismissed_at: i64,
    /// Set when the pair was dismissed by undoing this merge.
    pub merge_id: Option<String>,
}

fn check_reason(reason: &str) -> AppResult<()> {
    let n = reason.trim().chars().count();
    if n == 0 || n > 500 || reason.contains('\0') {
        return Err(AppError::validation(
            "bad_reason",
            "reason is 1 to 500 characters, without NUL",
        ));
    }
    Ok(())
}

/// Both persons of a pair, in the caller's scope (404 otherwise), distinct.
fn pair_in_scope(
    conn: &mut DbConn,
    principal: &Principal,
    a_id: &str,
    b_id: &str,
) -> AppResult<(RecordRow, RecordRow)> {
    let scope = principal.scope(conn)?;
    let a = load_in_scope(conn, &scope, Entity::Person, a_id)?;
    let b = load_in_scope(conn, &scope, Entity::Person, b_id)?;
    if a.id == b.id {
        return Err(AppError::validation(
            "same_person",
            "a_id and b_id name the same person",
        ));
    }
    Ok((a, b))
}

/// Dismisses a potential duplicate: the pair stops being listed (and is never merged
/// automatically) until the dismissal is withdrawn. Dismissing a dismissed pair again answers
/// the stored dismissal.
pub fn dismiss(db: &Db, principal: &Principal, d: &DismissRequest) -> AppResult<DismissalView> {
    use crate::db::schema::duplicate_dismissals as dd;
    check_reason(&d.reason)?;
    db.write(|conn| {
        let (a, b) = pair_in_scope(conn, principal, &d.a_id, &d.b_id)?;
        let (a, b) = if a.id < b.id { (a, b) } else { (b, a) };
        let now = crate::db::now_micros();
        let fresh = !crate::sync::duplicates::dismissed(conn, &a.id, &b.id)?;
        if fresh {
            dismiss_pair(
                conn,
                &Dismissal {
                    a: &a.id,
                    b: &b.id,
                    org_unit: &a.org_unit,
                    reason: d.reason.trim(),
                    by: &principal.user_id,
                    merge_id: None,
                },
                now,
            )?;
            audit_change(
                conn,
                principal,
                "duplicate_dismissed",
                "person",
                vec![a.id.clone(), b.id.clone()],
                json!({"reason": d.reason.trim()}),
            )?;
        }
        type Row = (String, String, String, String, String, i64, Option<String>);
        let r: Row = dd::table
            .filter(dd::person_a.eq(&a.id))
            .filter(dd::person_b.eq(&b.id))
            .select((
                dd::person_a,
                dd::person_b,
                dd::org_unit,
                dd::reason,
                dd::dismissed_by,
                dd::dismissed_at,
                dd::merge_id,
            ))
            .first(conn)?;
        Ok(DismissalView {
            person_a: r.0,
            person_b: r.1,
            org_unit: r.2,
            reason: r.3,
            dismissed_by: r.4,
            dismissed_at: r.5,
            merge_id: r.6,
        })
    })
}

#[derive(diesel::QueryableByName)]
struct DismissalRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    person_a: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    person_b: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    org_unit: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    reason: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    dismissed_by: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    dismissed_at: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    merge_id: Option<String>,
}

/// A dismissed pair with both persons (ID numbers masked).
#[derive(Serialize, ToSchema, Debug)]
pub struct DismissedPair {
    /// `person_a|person_b`, the pair's key (and cursor).
    pub key: String,
    pub dismissal: DismissalView,
    pub a: RecordView,
    pub b: RecordView,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct DismissedPage {
    pub total: i64,
    pub items: Vec<DismissedPair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The persons `ids` names (in one read for a page of pairs or merges), by id.
fn persons_by_id<'a>(
    conn: &mut DbConn,
    ids: impl Iterator<Item = &'a str>,
) -> AppResult<BTreeMap<String, RecordRow>> {
    let ids: Vec<&str> = ids.collect::<BTreeSet<_>>().into_iter().collect();
    Ok(records::load(conn, Entity::Person, &ids)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect())
}

/// Dismissed pairs whose two persons both lie in the caller's subtree, by key; reading them is
/// audited like the duplicates list. The scope and the cursor are conditions of the query
/// (keyset paging on the primary key), so a page reads no more rows than it shows.
pub fn dismissed_list(
    db: &Db,
    principal: &Principal,
    f: &DuplicateFilter,
) -> AppResult<DismissedPage> {
    let limit = page_limit(f.limit)?;
    let after = match f.after.as_deref() {
        None => None,
        Some(a) => Some(
            a.split_once('|')
                .filter(|(x, y)| plain(a) && !x.is_empty() && !y.is_empty())
                .ok_or_else(|| AppError::BadRequest("bad cursor".into()))?,
        ),
    };
    let (page, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "x.org_unit"));
        q.cond(scope_cond(&scope, "pa.org_unit"));
        q.cond(scope_cond(&scope, "pb.org_unit"));
        if let Some(v) = &f.village {
            q.cond(prefix_cond(v, "x.org_unit")?);
        }
        let from = "duplicate_dismissals x JOIN persons pa ON pa.id = x.person_a \
                    JOIN persons pb ON pb.id = x.person_b";
        let total = count(&q, conn, from)?;
        if let Some((a, b)) = after {
            let (a, b) = (q.text(a), q.text(b));
            q.cond(format!(
                "(x.person_a > {a} OR (x.person_a = {a} AND x.person_b > {b}))"
            ));
        }
        let mut rows: Vec<DismissalRow> = q.load(
            conn,
            &format!(
                "SELECT x.person_a, x.person_b, x.org_unit, x.reason, x.dismissed_by, \
                 x.dismissed_at, x.merge_id FROM {from}{} \
                 ORDER BY x.person_a, x.person_b LIMIT {}",
                q.where_sql(),
                limit + 1
            ),
        )?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let people = persons_by_id(
            conn,
            rows.iter()
                .flat_map(|r| [r.person_a.as_str(), r.person_b.as_str()]),
        )?;
        let mut items = Vec::new();
        let mut persons = BTreeSet::new();
        for r in rows {
            let (Some(a), Some(b)) = (people.get(&r.person_a), people.get(&r.person_b)) else {
                continue;
            };
            persons.insert(r.person_a.clone());
            persons.insert(r.person_b.clone());
            items.push(DismissedPair {
                key: format!("{}|{}", r.person_a, r.person_b),
                a: view(a, ids_for(principal, IdContext::List)),
                b: view(b, ids_for(principal, IdContext::List)),
                dismissal: DismissalView {
                    person_a: r.person_a,
                    person_b: r.person_b,
                    org_unit: r.org_unit,
                    reason: r.reason,
                    dismissed_by: r.dismissed_by,
                    dismissed_at: r.dismissed_at,
                    merge_id: r.merge_id,
                },
            });
        }
        Ok((
            DismissedPage {
                total,
                next_after: next_after(more, &items, |i| i.key.clone()),
                items,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}

/// Withdraws a dismissal.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct UndismissRequest {
    pub a_id: String,
    pub b_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct UndismissResult {
    pub person_a: String,
    pub person_b: String,
}

/// Withdraws a dismissal: the pair is listed again (and, sharing an ID number without
/// disagreeing fields, may be merged by a later push). 404 when the pair is not dismissed.
pub fn undismiss(
    db: &Db,
    principal: &Principal,
    u: &UndismissRequest,
) -> AppResult<UndismissResult> {
    if let Some(r) = &u.reason {
        check_reason(r)?;
    }
    db.write(|conn| {
        let (a, b) = pair_in_scope(conn, principal, &u.a_id, &u.b_id)?;
        let (a, b) = if a.id < b.id { (a, b) } else { (b, a) };
        if !undismiss_pair(conn, &a.id, &b.id)? {
            return Err(AppError::NotFound);
        }
        audit_change(
            conn,
            principal,
            "duplicate_undismissed",
            "person",
            vec![a.id.clone(), b.id.clone()],
            json!({"reason": u.reason.as_deref().map(str::trim)}),
        )?;
        Ok(UndismissResult {
            person_a: a.id,
            person_b: b.id,
        })
    })
}

/// A merge of two persons, listed for undo.
#[derive(Serialize, ToSchema, Debug)]
pub struct MergeView {
    /// The merge's id (what `POST /api/v1/supervise/merges/{id}/undo` takes).
    pub merge_id: String,
    /// `merged_at|merge_id` with `merged_at` zero-padded: the page's order (newest first) and cursor.
    pub key: String,
    /// The survivor's org unit.
    pub org_unit: String,
    pub merged_by: String,
    /// Made by the server when a device registered a known ID number.
    pub automatic: bool,
    /// Microseconds since the epoch.
    pub merged_at: i64,
    /// Set when the merge was undone.
    pub undone_at: Option<i64>,
    pub undone_by: Option<String>,
    /// Both persons as they are now (ID numbers masked).
    pub survivor: RecordView,
    pub merged: RecordView,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct MergePage {
    pub total: i64,
    pub items: Vec<MergeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct MergeRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    survivor_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    merged_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    merged_by: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    automatic: bool,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    merged_at: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    undone_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    undone_by: Option<String>,
}

/// Merges (automatic or a supervisor's, undone or not) whose two persons both lie in the
/// caller's subtree, newest first; `village` keeps those whose survivor lies in that subtree.
/// The scope and the cursor are conditions of the query (keyset paging on `(merged_at, id)`).
/// Reading them is audited like the duplicates list.
pub fn merges_list(db: &Db, principal: &Principal, f: &DuplicateFilter) -> AppResult<MergePage> {
    let limit = page_limit(f.limit)?;
    let after = match f.after.as_deref() {
        None => None,
        Some(a) => Some(
            a.split_once('|')
                .filter(|(_, id)| plain(a) && !id.is_empty())
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
                .ok_or_else(|| AppError::BadRequest("bad cursor".into()))?,
        ),
    };
    let (page, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let mut q = Query::new(conn);
        q.cond(scope_cond(&scope, "s.org_unit"));
        q.cond(scope_cond(&scope, "d.org_unit"));
        if let Some(v) = &f.village {
            q.cond(prefix_cond(v, "s.org_unit")?);
        }
        let from = "person_merges m JOIN persons s ON s.id = m.survivor_id \
                    JOIN persons d ON d.id = m.merged_id";
        let total = count(&q, conn, from)?;
        if let Some((at, id)) = after {
            let id = q.text(id);
            q.cond(format!(
                "(m.merged_at < {at} OR (m.merged_at = {at} AND m.id < {id}))"
            ));
        }
        let mut rows: Vec<MergeRow> = q.load(
            conn,
            &format!(
                "SELECT m.id, m.survivor_id, m.merged_id, m.merged_by, m.automatic, \
                 m.merged_at, m.undone_at, m.undone_by FROM {from}{} \
                 ORDER BY m.merged_at DESC, m.id DESC LIMIT {}",
                q.where_sql(),
                limit + 1
            ),
        )?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let people = persons_by_id(
            conn,
            rows.iter()
                .flat_map(|r| [r.survivor_id.as_str(), r.merged_id.as_str()]),
        )?;
        let mut items = Vec::new();
        let mut persons = BTreeSet::new();
        for r in rows {
            let (Some(survivor), Some(merged)) =
                (people.get(&r.survivor_id), people.get(&r.merged_id))
            else {
                continue;
            };
            persons.insert(r.survivor_id.clone());
            persons.insert(r.merged_id.clone());
            items.push(MergeView {
                key: format!("{:020}|{}", r.merged_at, r.id),
                merge_id: r.id,
                org_unit: survivor.org_unit.clone(),
                merged_by: r.merged_by,
                automatic: r.automatic,
                merged_at: r.merged_at,
                undone_at: r.undone_at,
                undone_by: r.undone_by,
                survivor: view(survivor, ids_for(principal, IdContext::List)),
                merged: view(merged, ids_for(principal, IdContext::List)),
            });
        }
        Ok((
            MergePage {
                total,
                next_after: next_after(more, &items, |i| i.key.clone()),
                items,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(page)
}
