//! Potential duplicate persons, supervisor merges with per-field choices, and undo.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::db::records::{self, RecordRow};
use crate::db::schema::person_merges;
use crate::db::Db;
use crate::domain::entities::Entity;
use crate::error::{AppError, AppResult};
use crate::supervise::common::*;
use crate::sync::duplicates::{
    disagreements, dismiss_pair, merge_persons, undismiss_pair, Dismissal,
};

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct DuplicateFilter {
    /// Only this org unit's subtree.
    pub village: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
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
    pub total: i64,
    pub items: Vec<DuplicatePair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

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
                 AND d.person_b = b.id AND d.status <> 'open')",
            )
            .cond(
                "NOT EXISTS (SELECT 1 FROM duplicate_dismissals x WHERE x.person_a = a.id \
                 AND x.person_b = b.id)",
            );
        let weak: Vec<PairRow> = w.load(
            conn,
            &format!(
                "SELECT a.id AS a, b.id AS b FROM persons a JOIN persons b ON a.name = b.name{}",
                w.where_sql()
            ),
        )?;
        let mut pairs: BTreeMap<String, (Option<String>, &'static str, String, String)> =
            BTreeMap::new();
        for (id, a, b, _) in queued {
            pairs.insert(format!("{a}|{b}"), (Some(id), "id_number", a, b));
        }
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
        pairs.retain(|_, p| rows.contains_key(&p.2) && rows.contains_key(&p.3));
        let total = pairs.len() as i64;
        let after = f.after.clone().unwrap_or_default();
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
                a: view(ra, true),
                b: view(rb, true),
            });
        }
        Ok((
            DuplicatePage {
                total,
                next_after: if more {
                    items.last().map(|i| i.key.clone())
                } else {
                    None
                },
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
        let mut tx = Tx::begin(conn, &principal.user_id)?;
        tx.state
            .insert((Entity::Person, survivor.id.clone()), survivor.clone());
        tx.state
            .insert((Entity::Person, merged.id.clone()), merged.clone());
        let by = principal.user_id.clone();
        let merge_id = merge_persons(conn, &mut tx.work(), &survivor.id, &merged.id, &by, false)?;
        let mut row = tx.state[&(Entity::Person, survivor.id.clone())].clone();
        let before = row.fields.clone();
        for (field, side) in &m.fields {
            if side == "merged" {
                match merged.fields.get(field) {
                    Some(v) => row.fields.insert(field.clone(), v.clone()),
                    None => row.fields.remove(field),
                };
                row.stamps.insert(field.clone(), tx.now);
            }
        }
        if row.fields != before {
            tx.new_version(row);
        }
        let repointed: Vec<String> = tx
            .versions
            .iter()
            .filter(|(r, _)| r.id != survivor.id && r.id != merged.id)
            .map(|(r, _)| r.id.clone())
            .collect();
        let final_survivor = tx.state[&(Entity::Person, survivor.id.clone())].clone();
        tx.finish(conn, false)?;
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
            survivor: view(&final_survivor, false),
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
}

/// Undoes a merge from its snapshot: the survivor's fields and the merged person as they were,
/// children pointed back; each a new version, so devices receive every step.
pub fn undo(db: &Db, principal: &Principal, merge_id: &str) -> AppResult<UndoResult> {
    if !plain(merge_id) {
        return Err(AppError::NotFound);
    }
    db.write(|conn| {
        let scope = principal.scope(conn)?;
        let m: Option<(String, String, String, Option<i64>)> = person_merges::table
            .filter(person_merges::id.eq(merge_id))
            .select((
                person_merges::survivor_id,
                person_merges::merged_id,
                person_merges::snapshot,
                person_merges::undone_at,
            ))
            .first(conn)
            .optional()?;
        let Some((survivor_id, merged_id, snapshot, undone_at)) = m else {
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
        let snap: Value = serde_json::from_str(&snapshot)
            .map_err(|e| AppError::Internal(format!("merge snapshot: {e}")))?;
        let fields_of = |v: &Value| -> records::Fields {
            v.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let mut tx = Tx::begin(conn, &principal.user_id)?;
        let mut s = survivor.clone();
        s.fields = fields_of(&snap["survivor"]["fields"]);
        let s = tx.new_version(s);
        let mut r = merged.clone();
        r.fields = fields_of(&snap["merged"]["fields"]);
        r.deleted = false;
        r.merged_into = None;
        if let Some(o) = snap["merged"]["org_unit"].as_str() {
            r.org_unit = o.to_string();
        }
        let r = tx.new_version(r);
        let mut repointed = Vec::new();
        for child in snap["children"].as_array().cloned().unwrap_or_default() {
            let (Some(e), Some(id), Some(field)) = (
                child[0].as_str().and_then(Entity::parse),
                child[1].as_str(),
                child[2].as_str(),
            ) else {
                continue;
            };
            let Some(mut row) = tx.get(conn, e, id)? else {
                continue;
            };
            if row.fields.get(field).and_then(Value::as_str) != Some(survivor_id.as_str()) {
                continue; // changed since the merge: left as it is
            }
            row.fields
                .insert(field.to_string(), Value::String(merged_id.clone()));
            tx.new_version(row);
            repointed.push(id.to_string());
        }
        let now = tx.now;
        // Undone on purpose: not merged again automatically, not queued again.
        tx.finish(conn, false)?;
        diesel::update(person_merges::table.filter(person_merges::id.eq(merge_id)))
            .set((
                person_merges::undone_at.eq(now),
                person_merges::undone_by.eq(&principal.user_id),
            ))
            .execute(conn)?;
        // The pair is dismissed, so later pushes neither merge nor queue it again.
        dismiss_pair(
            conn,
            &Dismissal {
                a: &survivor_id,
                b: &merged_id,
                org_unit: &r.org_unit,
                reason: "merge undone",
                by: &principal.user_id,
                merge_id: Some(merge_id),
            },
            now,
        )?;
        audit_change(
            conn,
            principal,
            "merge_undone",
            "person",
            vec![survivor_id.clone(), merged_id.clone()],
            json!({"merge_id": merge_id, "repointed": repointed.len()}),
        )?;
        Ok(UndoResult {
            merge_id: merge_id.to_string(),
            survivor: view(&s, false),
            restored: view(&r, false),
            repointed,
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
    if n == 0 || n > 500 {
        return Err(AppError::validation(
            "bad_reason",
            "reason is 1 to 500 characters",
        ));
    }
    Ok(())
}

/// Both persons of a pair, in the caller's scope (404 otherwise), distinct.
fn pair_in_scope(
    conn: &mut crate::db::DbConn,
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
