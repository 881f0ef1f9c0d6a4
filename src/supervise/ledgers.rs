//! The merged ledgers for supervisors: lists with filters and keyset pages, one record with
//! its linked records, a record's history, and direct edits through the merge path.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Principal, Scope};
use crate::db::records::{self, JsonRow, RecordRow};
use crate::db::schema::{conflicts, device_ops, flags, record_versions, users};
use crate::db::{Db, DbConn};
use crate::domain::checks;
use crate::domain::entities::{Entity, FieldType, ENTITIES};
use crate::error::{AppError, AppResult};
use crate::supervise::audit::{audit_change, audit_person_reads};
use crate::supervise::conflicts::{conflict_views, ConflictView};
use crate::supervise::ids::{id_payload, id_result, id_value, ids_for, IdContext, IdNumberView};
use crate::supervise::labels::{entity_label, field_label, Label};
use crate::supervise::paging::{next_after, page_limit};
use crate::supervise::record::{load_in_scope, referring, supervisor_op, view, RecordView};
use crate::supervise::sql::{count, plain, prefix_cond, scope_cond, Query};
use crate::sync::protocol::{OpResult, OpStatus};
use crate::sync::push::{self, Actor};

/// Filters of a ledger list. Person filters apply to `person` only.
#[derive(Deserialize, IntoParams, Default, Debug, Clone)]
#[into_params(parameter_in = Query)]
pub struct LedgerFilter {
    /// Only this org unit's subtree (a township, village or group code).
    pub village: Option<String>,
    /// Include deleted records and merge tombstones (default false).
    pub include_deleted: Option<bool>,
    /// Person: exact name.
    pub name: Option<String>,
    /// Person: names starting with this.
    pub name_prefix: Option<String>,
    /// Person: exact resident ID number.
    pub id_number: Option<String>,
    /// Person: at least this old today.
    pub min_age: Option<i32>,
    /// Person: at most this old today.
    pub max_age: Option<i32>,
    /// Person: `resident`, `moved_out` or `moved_in`.
    pub residence: Option<String>,
    /// Person: `unmarried`, `first_marriage`, `remarried`, `divorced` or `widowed`.
    pub marital_status: Option<String>,
    /// Person: `male` or `female`.
    pub sex: Option<String>,
    /// Records referring to this person (any person reference field).
    pub person: Option<String>,
    /// Records referring to this household (its id), e.g. a household's members: persons with
    /// `household=<id>`. Only record types with a household reference take it (400 otherwise).
    pub household: Option<String>,
    /// Order: `id` (the default: creation order), or one of the record type's sort keys, `-`
    /// first for descending: persons `name`, `birth_date`, `org_unit`, `updated_at`; other types
    /// their main date column and `updated_at` (the registry in `domain::entities` holds the
    /// list; a 400 `unknown_sort_key` answer names the keys). Ties are broken by id in the same
    /// direction; empty values come last either way.
    pub sort: Option<String>,
    /// The `next_after` of the previous page (of the same `sort`).
    pub after: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct LedgerPage {
    pub entity: String,
    pub entity_label: Label,
    /// Records matching the filters in the caller's subtree (all pages).
    pub total: i64,
    /// The order of the items: `id` (UUID v7: creation order) or the `sort` asked for.
    pub sort: String,
    /// In the `sort` order. ID numbers are masked.
    pub items: Vec<RecordView>,
    /// Pass as `after` (with the same `sort`) for the next page; absent on the last page. For
    /// `sort=id` the last item's id; otherwise an opaque cursor holding the last item's sort
    /// value and id, so pages stay stable while records change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

fn enum_value(entity: Entity, field: &str, value: &str) -> AppResult<()> {
    let ok = match entity.def().field(field).map(|f| f.ty) {
        Some(FieldType::Enum(choices)) => choices.iter().any(|c| c.value == value),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!("unknown {field} value")))
    }
}

fn years_before(today: NaiveDate, years: i32) -> NaiveDate {
    let y = today.year() - years;
    NaiveDate::from_ymd_opt(y, today.month(), today.day())
        .or_else(|| NaiveDate::from_ymd_opt(y, today.month(), 28))
        .unwrap_or(today)
}

fn build_filter(
    conn: &DbConn,
    scope: &Scope,
    entity: Entity,
    f: &LedgerFilter,
) -> AppResult<Query> {
    let mut q = Query::new(conn);
    q.cond(scope_cond(scope, "org_unit"));
    if let Some(v) = &f.village {
        q.cond(prefix_cond(v, "org_unit")?);
    }
    if !f.include_deleted.unwrap_or(false) {
        q.cond("NOT deleted");
    }
    let person_only = [
        f.name.is_some(),
        f.name_prefix.is_some(),
        f.id_number.is_some(),
        f.min_age.is_some(),
        f.max_age.is_some(),
        f.residence.is_some(),
        f.marital_status.is_some(),
        f.sex.is_some(),
    ];
    if entity != Entity::Person && person_only.iter().any(|b| *b) {
        return Err(AppError::BadRequest(
            "name, id_number, age, residence, marital_status and sex filter persons only".into(),
        ));
    }
    if let Some(n) = &f.name {
        let p = q.text(n.trim());
        q.cond(format!("name = {p}"));
    }
    if let Some(n) = &f.name_prefix {
        let p = q.text(n.trim());
        q.cond(format!("substr(name, 1, length({p})) = {p}"));
    }
    if let Some(n) = &f.id_number {
        let p = q.text(&n.trim().to_ascii_uppercase());
        q.cond(format!("id_number = {p}"));
    }
    let today = chrono::Utc::now().date_naive();
    if let Some(min) = f.min_age {
        if !(0..=150).contains(&min) {
            return Err(AppError::BadRequest("min_age must be 0-150".into()));
        }
        let p = q.text(&years_before(today, min).format("%Y-%m-%d").to_string());
        q.cond(format!("birth_date <= {p}"));
    }
    if let Some(max) = f.max_age {
        if !(0..=150).contains(&max) {
            return Err(AppError::BadRequest("max_age must be 0-150".into()));
        }
        let p = q.text(&years_before(today, max + 1).format("%Y-%m-%d").to_string());
        q.cond(format!("birth_date > {p}"));
    }
    for (field, value) in [
        ("residence", &f.residence),
        ("marital_status", &f.marital_status),
        ("sex", &f.sex),
    ] {
        if let Some(v) = value {
            enum_value(entity, field, v)?;
            let p = q.text(v);
            q.cond(format!("{field} = {p}"));
        }
    }
    if let Some(person) = &f.person {
        let refs: Vec<&str> = entity
            .def()
            .refs_to(Entity::Person)
            .map(|fld| fld.name)
            .collect();
        if refs.is_empty() {
            return Err(AppError::BadRequest(format!(
                "{} records do not refer to persons",
                entity.name()
            )));
        }
        let p = q.text(person);
        let any: Vec<String> = refs.iter().map(|r| format!("{r} = {p}")).collect();
        q.cond(format!("({})", any.join(" OR ")));
    }
    if let Some(household) = &f.household {
        let refs: Vec<&str> = entity
            .def()
            .refs_to(Entity::Household)
            .map(|fld| fld.name)
            .collect();
        if refs.is_empty() {
            return Err(AppError::BadRequest(format!(
                "{} records do not refer to households",
                entity.name()
            )));
        }
        let p = q.text(household);
        let any: Vec<String> = refs.iter().map(|r| format!("{r} = {p}")).collect();
        q.cond(format!("({})", any.join(" OR ")));
    }
    Ok(q)
}

/// A ledger list's order: a whitelisted sort key of the record type (`EntityDef::sort_keys`),
/// or the id; ties broken by id in the same direction, NULLs last either way.
struct Sort {
    /// The column (a sort key, or `id`).
    key: &'static str,
    desc: bool,
}

impl Sort {
    fn parse(entity: Entity, sort: Option<&str>) -> AppResult<Sort> {
        let s = sort.unwrap_or("id");
        let (desc, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let def = entity.def();
        let key = if name == "id" {
            Some("id")
        } else {
            def.sort_keys.iter().copied().find(|k| *k == name)
        };
        let Some(key) = key else {
            return Err(AppError::bad_param(
                "unknown_sort_key",
                format!(
                    "{} lists sort by id or {} (prefix - for descending)",
                    def.name,
                    def.sort_keys.join(", ")
                ),
            ));
        };
        Ok(Sort { key, desc })
    }

    fn name(&self) -> String {
        format!("{}{}", if self.desc { "-" } else { "" }, self.key)
    }

    fn order_by(&self) -> String {
        let dir = if self.desc { "DESC" } else { "ASC" };
        if self.key == "id" {
            format!(" ORDER BY id {dir}")
        } else {
            format!(" ORDER BY {} {dir} NULLS LAST, id {dir}", self.key)
        }
    }

    /// The cursor after `r`: the sort and the record's id, never the sort value (a name or a
    /// birth date must not travel in a URL, where proxies log it). The value is read back from
    /// the record itself, within the caller's scope and filters (`after`).
    fn cursor(&self, r: &RecordRow) -> String {
        if self.key == "id" {
            return r.id.clone();
        }
        let c = json!({"s": self.name(), "id": r.id});
        URL_SAFE_NO_PAD.encode(c.to_string())
    }

    /// Adds the keyset condition "after this cursor" to `q`, whose conditions so far (scope and
    /// filters) also bound the lookup of the cursor record's sort value.
    fn after(&self, q: &mut Query, table: &str, cursor: &str) -> AppResult<()> {
        let cmp = if self.desc { "<" } else { ">" };
        if self.key == "id" {
            if !plain(cursor) {
                return Err(AppError::BadRequest("bad cursor".into()));
            }
            let p = q.text(cursor);
            q.cond(format!("id {cmp} {p}"));
            return Ok(());
        }
        let bad = || AppError::bad_param("bad_cursor", "after is not a cursor of this sort");
        let c: Value = (cursor.len() <= 500)
            .then(|| URL_SAFE_NO_PAD.decode(cursor).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(bad)?;
        if c["s"].as_str() != Some(self.name().as_str()) {
            return Err(bad());
        }
        let id = c["id"].as_str().filter(|i| plain(i)).ok_or_else(bad)?;
        let id = q.text(id);
        let col = self.key;
        // Unqualified names in the subquery name its own table: the same scope and filters.
        let v = format!("(SELECT {col} FROM {table}{} AND id = {id})", q.where_sql());
        q.cond(format!(
            // Past the cursor within its value, past its value, or into the NULLs that come
            // last; from a NULL (or a record no longer in the list): on within the NULLs.
            "(({v} IS NOT NULL AND ({col} {cmp} {v} OR ({col} = {v} AND id {cmp} {id}) OR {col} IS NULL)) \
             OR ({v} IS NULL AND {col} IS NULL AND id {cmp} {id}))"
        ));
        Ok(())
    }
}

/// One page of a ledger, with the total; person reads are audited.
pub fn list(
    db: &Db,
    principal: &Principal,
    entity: Entity,
    f: &LedgerFilter,
) -> AppResult<LedgerPage> {
    let limit = page_limit(f.limit)?;
    let sort = Sort::parse(entity, f.sort.as_deref())?;
    let page = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let q = build_filter(conn, &scope, entity, f)?;
        let total = count(&q, conn, entity.def().table)?;
        let mut q = q;
        if let Some(a) = &f.after {
            sort.after(&mut q, entity.def().table, a)?;
        }
        let sql = records::select_json_limited_sql(
            q.backend(),
            entity,
            &format!("{}{} LIMIT {}", q.where_sql(), sort.order_by(), limit + 1),
            &sort.order_by(),
        );
        let rows: Vec<JsonRow> = q.load(conn, &sql)?;
        let mut rows: Vec<RecordRow> = rows
            .iter()
            .map(|r| RecordRow::from_json(&r.j))
            .collect::<AppResult<_>>()?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(LedgerPage {
            entity: entity.name().to_string(),
            entity_label: entity_label(entity),
            total,
            sort: sort.name(),
            next_after: next_after(more, &rows, |r| sort.cursor(r)),
            items: rows
                .iter()
                .map(|r| view(r, ids_for(principal, IdContext::List)))
                .collect(),
        })
    })?;
    if entity == Entity::Person {
        let ids = page.items.iter().map(|r| r.id.clone()).collect();
        audit_person_reads(db, principal, &ids)?;
    }
    Ok(page)
}

/// A record linked to the one shown.
#[derive(Serialize, ToSchema, Debug)]
pub struct Linked {
    /// `refers_to`: the shown record points at this one through `field`; `referred_by`: this
    /// record points at the shown one through `field`.
    pub direction: String,
    pub field: String,
    pub entity_label: Label,
    pub record: RecordView,
}

/// An active logic-check flag.
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct FlagView {
    pub entity: String,
    pub record_id: String,
    pub org_unit: String,
    pub check: String,
    pub zh: String,
    pub en: String,
    /// The record version that raised it.
    pub version: i64,
    /// Unix microseconds.
    pub raised_at: i64,
    /// Where to read the record.
    pub link: String,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct RecordDetail {
    pub entity_label: Label,
    /// The record in full (the read is audited), its ID number as the role sees one record
    /// (`roles::id_number_view`: in full for township supervisors, masked for county ones).
    pub record: RecordView,
    /// Labels of the record type's fields.
    #[schema(value_type = Object)]
    pub labels: BTreeMap<String, Label>,
    /// A person with household, births, pregnancies, measures, visits...; a household with its
    /// members; a pregnancy, birth, measure... with its person. Only records in your subtree.
    pub linked: Vec<Linked>,
    pub flags: Vec<FlagView>,
    /// Conflicts of this record that wait for a supervisor.
    pub open_conflicts: Vec<ConflictView>,
}

pub fn flag_view(
    entity: &str,
    record_id: &str,
    org_unit: &str,
    code: &str,
    version: i64,
    raised_at: i64,
) -> FlagView {
    let def = checks::find(code);
    FlagView {
        entity: entity.to_string(),
        record_id: record_id.to_string(),
        org_unit: org_unit.to_string(),
        check: code.to_string(),
        zh: def.map_or("", |d| d.zh).to_string(),
        en: def.map_or("", |d| d.en).to_string(),
        version,
        raised_at,
        link: format!("/api/v1/supervise/{entity}/{record_id}"),
    }
}

fn record_flags(conn: &mut DbConn, entity: Entity, id: &str) -> AppResult<Vec<FlagView>> {
    let rows: Vec<(String, String, i64, i64)> = flags::table
        .filter(flags::entity.eq(entity.name()))
        .filter(flags::record_id.eq(id))
        .filter(flags::active.eq(true))
        .select((
            flags::org_unit,
            flags::check_code,
            flags::version,
            flags::raised_at,
        ))
        .order(flags::check_code)
        .load(conn)?;
    Ok(rows
        .iter()
        .map(|(o, c, v, at)| flag_view(entity.name(), id, o, c, *v, *at))
        .collect())
}

fn labels(entity: Entity) -> BTreeMap<String, Label> {
    entity
        .def()
        .fields
        .iter()
        .map(|f| (f.name.to_string(), Label { zh: f.zh, en: f.en }))
        .collect()
}

/// One record with its linked records; person reads (the record or linked persons) are audited.
pub fn one(db: &Db, principal: &Principal, entity: Entity, id: &str) -> AppResult<RecordDetail> {
    let ids = ids_for(principal, IdContext::Record);
    let (detail, persons) = db.read(|conn| {
        let scope = principal.scope(conn)?;
        let row = load_in_scope(conn, &scope, entity, id)?;
        let mut persons = BTreeSet::new();
        if entity == Entity::Person {
            persons.insert(row.id.clone());
        }
        let mut linked = Vec::new();
        // Records this one points at.
        for f in entity.def().fields {
            if let FieldType::Ref(target) = f.ty {
                if let Some(t) = row.fields.get(f.name).and_then(Value::as_str) {
                    if let Some(r) =
                        records::load_one(conn, target, t)?.filter(|r| scope.contains(&r.org_unit))
                    {
                        if target == Entity::Person {
                            persons.insert(r.id.clone());
                        }
                        linked.push(Linked {
                            direction: "refers_to".into(),
                            field: f.name.to_string(),
                            entity_label: entity_label(target),
                            record: view(&r, ids),
                        });
                    }
                }
            }
        }
        // Records pointing at this one.
        for (r, field) in referring(conn, entity, &row.id)? {
            if !scope.contains(&r.org_unit) {
                continue;
            }
            if r.entity == Entity::Person {
                persons.insert(r.id.clone());
            }
            linked.push(Linked {
                direction: "referred_by".into(),
                field: field.to_string(),
                entity_label: entity_label(r.entity),
                record: view(&r, ids),
            });
        }
        let flags = record_flags(conn, entity, &row.id)?;
        let open = open_conflicts_of(conn, entity, &row.id, ids)?;
        Ok((
            RecordDetail {
                entity_label: entity_label(entity),
                record: view(&row, ids),
                labels: labels(entity),
                linked,
                flags,
                open_conflicts: open,
            },
            persons,
        ))
    })?;
    audit_person_reads(db, principal, &persons)?;
    Ok(detail)
}

fn open_conflicts_of(
    conn: &mut DbConn,
    entity: Entity,
    id: &str,
    ids: IdNumberView,
) -> AppResult<Vec<ConflictView>> {
    let rows = conflicts::table
        .filter(conflicts::entity.eq(entity.name()))
        .filter(conflicts::record_id.eq(id))
        .filter(conflicts::status.eq("open"))
        .order(conflicts::id)
        .select(crate::sync::store::ConflictRow::as_select())
        .load(conn)?;
    Ok(conflict_views(rows, ids))
}

/// A field's change between two versions.
#[derive(Serialize, ToSchema, Debug)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Any JSON value, or null for "no value".
    pub from: Value,
    pub to: Value,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct VersionView {
    pub version: i64,
    pub org_unit: String,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    pub user_id: String,
    pub username: Option<String>,
    /// The device that sent the op; null for a supervisor's change or a merge.
    pub device_id: Option<String>,
    pub op_id: Option<String>,
    /// When the worker did it (device clock, clamped), unix microseconds.
    pub recorded_at: i64,
    /// When the server stored it, unix microseconds.
    pub created_at: i64,
    pub change_seq: i64,
    /// Fields changed against the previous version (all set fields for version 1).
    pub changes: Vec<FieldChange>,
    #[schema(value_type = Object)]
    pub fields: Value,
}

/// An op a device sent about the record.
#[derive(Serialize, ToSchema, Debug)]
pub struct OpView {
    pub device_id: String,
    pub seq: i64,
    pub op_id: String,
    pub kind: String,
    /// `applied`, `redirected` or `rejected`.
    pub status: String,
    pub code: Option<String>,
    pub recorded_at: Option<i64>,
    pub received_at: i64,
    /// The answer the device got.
    #[schema(value_type = Object)]
    pub result: Value,
    /// The op as sent, kept for rejected ops.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct History {
    pub entity: String,
    pub entity_label: Label,
    pub id: String,
    pub versions: Vec<VersionView>,
    pub ops: Vec<OpView>,
    pub conflicts: Vec<ConflictView>,
}

type VersionTuple = (
    i64,
    String,
    bool,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
);

/// Every version of a record with what changed, and the ops and conflicts about it.
pub fn history(db: &Db, principal: &Principal, entity: Entity, id: &str) -> AppResult<History> {
    let ids = ids_for(principal, IdContext::Record);
    let h = db.read(|conn| {
        let scope = principal.scope(conn)?;
        load_in_scope(conn, &scope, entity, id)?;
        let rows: Vec<VersionTuple> = record_versions::table
            .filter(record_versions::entity.eq(entity.name()))
            .filter(record_versions::record_id.eq(id))
            .order(record_versions::version)
            .select((
                record_versions::version,
                record_versions::org_unit,
                record_versions::deleted,
                record_versions::merged_into,
                record_versions::data,
                record_versions::change_seq,
                record_versions::op_id,
                record_versions::device_id,
                record_versions::user_id,
                record_versions::recorded_at,
                record_versions::created_at,
            ))
            .load(conn)?;
        let user_ids: BTreeSet<&String> = rows.iter().map(|r| &r.8).collect();
        let names: HashMap<String, String> = users::table
            .filter(users::id.eq_any(user_ids.into_iter().cloned().collect::<Vec<_>>()))
            .select((users::id, users::username))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect();
        let mut prev: Map<String, Value> = Map::new();
        let mut versions = Vec::new();
        for r in rows {
            let data: Map<String, Value> = serde_json::from_str(&r.4).unwrap_or_default();
            let keys: BTreeSet<&String> = prev.keys().chain(data.keys()).collect();
            let changes = keys
                .into_iter()
                .filter(|k| prev.get(*k) != data.get(*k))
                .map(|k| FieldChange {
                    field: k.clone(),
                    label: field_label(entity, k),
                    from: id_value(
                        entity,
                        Some(k),
                        prev.get(k).cloned().unwrap_or(Value::Null),
                        ids,
                    ),
                    to: id_value(
                        entity,
                        Some(k),
                        data.get(k).cloned().unwrap_or(Value::Null),
                        ids,
                    ),
                })
                .collect();
            versions.push(VersionView {
                version: r.0,
                org_unit: r.1,
                deleted: r.2,
                merged_into: r.3,
                username: names.get(&r.8).cloned(),
                user_id: r.8,
                device_id: r.7,
                op_id: r.6,
                recorded_at: r.9,
                created_at: r.10,
                change_seq: r.5,
                changes,
                fields: id_value(entity, None, Value::Object(data.clone()), ids),
            });
            prev = data;
        }
        type OpTuple = (
            String,
            i64,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<i64>,
            i64,
        );
        let ops: Vec<OpTuple> = device_ops::table
            .filter(device_ops::entity.eq(entity.name()))
            .filter(device_ops::record_id.eq(id))
            .order((
                device_ops::received_at,
                device_ops::device_id,
                device_ops::seq,
            ))
            .select((
                device_ops::device_id,
                device_ops::seq,
                device_ops::op_id,
                device_ops::kind,
                device_ops::status,
                device_ops::code,
                device_ops::result,
                device_ops::payload,
                device_ops::recorded_at,
                device_ops::received_at,
            ))
            .load(conn)?;
        let ops = ops
            .into_iter()
            .map(|o| OpView {
                device_id: o.0,
                seq: o.1,
                op_id: o.2,
                kind: o.3,
                status: o.4,
                code: o.5,
                result: id_result(
                    entity.name(),
                    serde_json::from_str(&o.6).unwrap_or(Value::Null),
                    ids,
                ),
                payload: o
                    .7
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .map(|p| id_payload(p, ids)),
                recorded_at: o.8,
                received_at: o.9,
            })
            .collect();
        let cs = conflicts::table
            .filter(conflicts::entity.eq(entity.name()))
            .filter(conflicts::record_id.eq(id))
            .order(conflicts::id)
            .select(crate::sync::store::ConflictRow::as_select())
            .load(conn)?;
        Ok(History {
            entity: entity.name().to_string(),
            entity_label: entity_label(entity),
            id: id.to_string(),
            versions,
            ops,
            conflicts: conflict_views(cs, ids),
        })
    })?;
    if entity == Entity::Person {
        audit_person_reads(db, principal, &BTreeSet::from([id.to_string()]))?;
    }
    Ok(h)
}

/// A supervisor's edit of one record.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DirectEdit {
    /// The version the supervisor edited (required: edits merge like a device's).
    pub base_version: i64,
    /// The changed fields only; null clears a field. `org_unit` moves the record (within your subtree).
    #[schema(value_type = Object)]
    pub set: Value,
    /// Why (kept in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Applies a supervisor's edit through the merge path: conflicts, checks and duplicate
/// detection as for a device's op; no device ledger. A refused edit answers 422 with its code.
pub fn edit(
    db: &Db,
    principal: &Principal,
    entity: Entity,
    id: &str,
    body: &DirectEdit,
) -> AppResult<OpResult> {
    if body.base_version < 1 {
        return Err(AppError::validation(
            "bad_base_version",
            "base_version must be the version you edited (>= 1)",
        ));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(AppError::validation(
            "bad_reason",
            "reason is at most 500 characters",
        ));
    }
    let parsed = supervisor_op(entity, id, body.base_version, &body.set, None)?;
    let op_id = parsed.op_id.clone();
    let result = db.write(|conn| {
        let scope = principal.scope(conn)?;
        load_in_scope(conn, &scope, entity, id)?;
        let actor = Actor {
            user_id: &principal.user_id,
            device_id: None,
            scope: &scope,
        };
        let result = push::apply_direct(conn, &actor, &parsed)?;
        if result.status == OpStatus::Rejected {
            return Ok(result);
        }
        audit_change(
            conn,
            principal,
            "supervisor_edit",
            entity.name(),
            vec![id.to_string()],
            json!({"op_id": op_id, "version": result.version,
                   "fields": parsed.set.keys().collect::<Vec<_>>(),
                   "conflicts": result.conflicts.iter().map(|c| &c.id).collect::<Vec<_>>(),
                   "reason": body.reason}),
        )?;
        Ok(result)
    })?;
    if result.status == OpStatus::Rejected {
        return Err(AppError::validation(
            match result.code.as_deref() {
                Some("out_of_scope") => "out_of_scope",
                Some("unknown_org_unit") => "unknown_org_unit",
                Some("bad_base_version") => "bad_base_version",
                _ => "edit_refused",
            },
            result.message.unwrap_or_default(),
        ));
    }
    Ok(result)
}

/// Record types with their labels (for building menus).
pub fn entity_names() -> Vec<(&'static str, Label)> {
    ENTITIES
        .iter()
        .map(|d| (d.name, Label { zh: d.zh, en: d.en }))
        .collect()
}
