//! What the supervisor services share: scope predicates written into SQL, statements whose
//! parameters travel as one JSON object (any number of filters, one bind on both backends),
//! paging, ID-number masking, labels. Supervisor-made versions go through `sync::changeset`.

use std::collections::BTreeSet;

use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::audit::{self, AuditEntry};
pub use crate::auth::roles::{IdContext, IdNumberView};
use crate::auth::{Principal, Scope};
use crate::db::records::{self, backend_of, RecordRow};
use crate::db::{now_micros, Backend, DbConn};
use crate::domain::entities::{Entity, ENTITIES};
use crate::domain::orgunit::subtree_range;
use crate::domain::resident_id::ResidentId;
use crate::error::{AppError, AppResult};
pub use crate::sync::changeset::Changeset;
use crate::sync::validate::{self, ParsedOp};

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

pub type Key = (Entity, String);

/// The page size asked for, checked.
pub fn page_limit(limit: Option<i64>) -> AppResult<i64> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(_) => Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Plain ids and cursors: letters, digits, `-`, `_`, `|`, `.`, at most 200 bytes.
pub fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'|' | b'.'))
}

/// An org unit code given as a filter: ASCII letters and digits only (so it can be written
/// into SQL text as a range bound).
pub fn check_code(code: &str) -> AppResult<()> {
    if code.is_empty() || code.len() > 20 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::BadRequest(
            "village must be an org unit code".into(),
        ));
    }
    Ok(())
}

/// `col` within the scope's subtrees. Codes are ASCII letters and digits (validated when org
/// units are created), so they are written into the SQL text.
pub fn scope_cond(scope: &Scope, col: &str) -> String {
    let parts: Vec<String> = scope
        .ranges()
        .into_iter()
        .filter(|(lo, _)| lo.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|(lo, hi)| format!("({col} >= '{lo}' AND {col} < '{hi}')"))
        .collect();
    if parts.is_empty() {
        "1 = 0".into()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// `col` within the subtree of `code` (checked with [`check_code`] first).
pub fn prefix_cond(code: &str, col: &str) -> AppResult<String> {
    check_code(code)?;
    let (lo, hi) = subtree_range(code);
    Ok(format!("({col} >= '{lo}' AND {col} < '{hi}')"))
}

/// A WHERE clause whose values travel in one JSON parameter.
pub struct Query {
    backend: Backend,
    conds: Vec<String>,
    params: Map<String, Value>,
}

impl Query {
    pub fn new(conn: &DbConn) -> Query {
        Query {
            backend: backend_of(conn),
            conds: Vec::new(),
            params: Map::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A text parameter; returns the SQL expression that reads it.
    pub fn text(&mut self, value: &str) -> String {
        let key = format!("p{}", self.params.len());
        self.params.insert(key.clone(), Value::String(value.into()));
        match self.backend {
            Backend::Sqlite => format!("json_extract(?1, '$.{key}')"),
            Backend::Postgres => format!("($1::jsonb ->> '{key}')"),
        }
    }

    pub fn cond(&mut self, c: impl Into<String>) -> &mut Self {
        self.conds.push(c.into());
        self
    }

    /// ` WHERE ...`, always naming the parameter once so that both backends accept the bind.
    pub fn where_sql(&self) -> String {
        let touch = match self.backend {
            Backend::Sqlite => "?1 IS NOT NULL",
            Backend::Postgres => "$1::jsonb IS NOT NULL",
        };
        let mut all: Vec<&str> = self.conds.iter().map(String::as_str).collect();
        all.push(touch);
        format!(" WHERE {}", all.join(" AND "))
    }

    pub fn load<T>(&self, conn: &mut DbConn, sql: &str) -> AppResult<Vec<T>>
    where
        T: diesel::QueryableByName<diesel::sqlite::Sqlite>
            + diesel::QueryableByName<diesel::pg::Pg>
            + 'static,
    {
        // PostgreSQL's jsonb refuses NUL characters: a client's NUL is its error, not ours.
        if self
            .params
            .values()
            .any(|v| v.as_str().is_some_and(|t| t.contains('\0')))
        {
            return Err(AppError::bad_param(
                "bad_text",
                "text parameters may not contain NUL characters",
            ));
        }
        let param = Value::Object(self.params.clone()).to_string();
        let rows = match conn {
            DbConn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
            DbConn::Postgres(c) => diesel::sql_query(sql).bind::<Text, _>(&param).load(c)?,
        };
        Ok(rows)
    }
}

#[derive(diesel::QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

pub fn count(q: &Query, conn: &mut DbConn, from: &str) -> AppResult<i64> {
    let rows: Vec<CountRow> = q.load(
        conn,
        &format!("SELECT COUNT(*) AS n FROM {from}{}", q.where_sql()),
    )?;
    Ok(rows.first().map_or(0, |r| r.n))
}

/// An ID number as lists show it: region code and last four characters.
pub fn mask_id_number(s: &str) -> String {
    match ResidentId::parse(s) {
        Ok(id) => id.masked(),
        Err(_) => {
            let chars: Vec<char> = s.chars().collect();
            if chars.len() > 10 {
                let head: String = chars[..6].iter().collect();
                let tail: String = chars[chars.len() - 4..].iter().collect();
                format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
            } else {
                "*".repeat(chars.len())
            }
        }
    }
}

/// How `principal` sees ID numbers in `ctx`: the one rule, `roles::id_number_view`.
pub fn ids_for(principal: &Principal, ctx: IdContext) -> IdNumberView {
    crate::auth::roles::id_number_view(principal.role, ctx)
}

/// A value held in an ID-number field, masked: text as [`mask_id_number`]; anything else a
/// device may have sent in its place (a number, an array) as the mask of its JSON text.
fn mask_any(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(mask_id_number(s)),
        other => Value::String(mask_id_number(&other.to_string())),
    }
}

/// Masks the ID number in a person's fields.
pub fn mask_fields(entity: Entity, fields: &mut Map<String, Value>) {
    if entity == Entity::Person {
        if let Some(v) = fields.get_mut("id_number") {
            *v = mask_any(v);
        }
    }
}

/// A record's fields (or, with `field`, one field's value) as `ids` shows them.
pub fn id_value(entity: Entity, field: Option<&str>, v: Value, ids: IdNumberView) -> Value {
    if !ids.masked() || entity != Entity::Person {
        return v;
    }
    match (field, v) {
        (Some("id_number"), v) => mask_any(&v),
        (None, Value::Object(mut m)) => {
            mask_fields(entity, &mut m);
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// An op as a device sent it (a stored payload), as `ids` shows it: an `id_number` in its
/// `set` masked, whatever the op's record type (only persons have one; an op of another or an
/// unknown type that carries one was refused, and its payload is masked all the same).
pub fn id_payload(mut payload: Value, ids: IdNumberView) -> Value {
    if let Some(set) = payload.get_mut("set") {
        *set = id_value(Entity::Person, None, set.take(), ids);
    }
    payload
}

/// An op's stored result, as `ids` shows it: the values of its conflicts masked.
pub fn id_result(entity: &str, mut result: Value, ids: IdNumberView) -> Value {
    let Some(e) = Entity::parse(entity) else {
        return result;
    };
    if let Some(cs) = result.get_mut("conflicts").and_then(Value::as_array_mut) {
        for c in cs {
            let field = c.get("field").and_then(Value::as_str).map(str::to_string);
            for k in ["base_value", "server_value", "device_value"] {
                if let Some(v) = c.get_mut(k) {
                    *v = id_value(e, field.as_deref(), v.take(), ids);
                }
            }
        }
    }
    result
}

/// A record type's labels.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct Label {
    pub zh: &'static str,
    pub en: &'static str,
}

pub fn entity_label(e: Entity) -> Label {
    let d = e.def();
    Label { zh: d.zh, en: d.en }
}

pub fn field_label(e: Entity, field: &str) -> Option<Label> {
    e.def().field(field).map(|f| Label { zh: f.zh, en: f.en })
}

pub fn parse_entity(name: &str) -> AppResult<Entity> {
    Entity::parse(name).ok_or(AppError::NotFound)
}

/// A record as supervisors see it.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct RecordView {
    pub entity: String,
    pub id: String,
    pub org_unit: String,
    pub version: i64,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The domain fields. A person's `id_number` is masked in lists, and in one record unless
    /// the role sees it in full (township supervisors; see `roles::id_number_view`).
    #[schema(value_type = Object)]
    pub fields: Value,
    pub change_seq: i64,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds.
    pub updated_at: i64,
    pub updated_by: String,
    pub updated_device: Option<String>,
}

pub fn view(r: &RecordRow, ids: IdNumberView) -> RecordView {
    let mut fields: Map<String, Value> = r.fields.clone().into_iter().collect();
    if ids.masked() {
        mask_fields(r.entity, &mut fields);
    }
    RecordView {
        entity: r.entity.name().to_string(),
        id: r.id.clone(),
        org_unit: r.org_unit.clone(),
        version: r.version,
        deleted: r.deleted,
        merged_into: r.merged_into.clone(),
        fields: Value::Object(fields),
        change_seq: r.change_seq,
        created_at: r.created_at,
        updated_at: r.updated_at,
        updated_by: r.updated_by.clone(),
        updated_device: r.updated_device.clone(),
    }
}

/// Loads one record the caller may see, or 404.
pub fn load_in_scope(
    conn: &mut DbConn,
    scope: &Scope,
    entity: Entity,
    id: &str,
) -> AppResult<RecordRow> {
    if !plain(id) {
        return Err(AppError::NotFound);
    }
    records::load_one(conn, entity, id)?
        .filter(|r| scope.contains(&r.org_unit))
        .ok_or(AppError::NotFound)
}

/// Writes an audit row for persons read, in its own transaction after the read (the answer is
/// only given once the row is stored).
pub fn audit_person_reads(
    db: &crate::db::Db,
    principal: &Principal,
    ids: &BTreeSet<String>,
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.iter().cloned().collect();
    db.write(|c| audit::record_person_reads(c, principal, &ids))
}

/// An audit row for a supervisor's change.
pub fn audit_change(
    conn: &mut DbConn,
    principal: &Principal,
    action: &'static str,
    target_kind: &str,
    ids: Vec<String>,
    detail: Value,
) -> AppResult<()> {
    audit::record(
        conn,
        AuditEntry {
            actor_user: Some(principal.user_id.clone()),
            actor_role: Some(principal.role.as_str().to_string()),
            action,
            target_kind: Some(target_kind.into()),
            target_ids: ids,
            request_id: principal.request_id.clone(),
            detail: Some(detail),
        },
    )
}

/// An update made by a supervisor (an edit, or the undo of a merge), as the merge path takes a
/// device's op: `set` holds the changed fields only, against `base_version`. `recorded_at`
/// (unix microseconds) defaults to now. An op the validation refuses answers 422 with its code.
pub fn supervisor_op(
    entity: Entity,
    id: &str,
    base_version: i64,
    set: &Value,
    recorded_at: Option<i64>,
) -> AppResult<ParsedOp> {
    let mut raw = serde_json::json!({"seq": 1, "op_id": uuid::Uuid::now_v7().to_string(),
        "entity": entity.name(), "id": id, "kind": "update", "base_version": base_version,
        "set": set});
    if let Some(at) = recorded_at.and_then(chrono::DateTime::from_timestamp_micros) {
        raw["recorded_at"] = Value::String(at.to_rfc3339());
    }
    let header = validate::header(&raw, 0)?;
    validate::parse(&raw, &header, now_micros())
        .map_err(|r| AppError::validation(r.code, r.message))
}

/// Records (of every type) that refer to `id` of type `target` through a reference field, and
/// the field: the children of a person or household.
pub fn referring(
    conn: &mut DbConn,
    target: Entity,
    id: &str,
) -> AppResult<Vec<(RecordRow, &'static str)>> {
    let mut out = Vec::new();
    for def in ENTITIES {
        for field in def.refs_to(target) {
            let mut q = Query::new(conn);
            let p = q.text(id);
            q.cond(format!("{} = {p}", field.name));
            let sql = format!(
                "{}{} ORDER BY id",
                records::select_json_sql(q.backend(), def.entity),
                q.where_sql()
            );
            let rows: Vec<records::JsonRow> = q.load(conn, &sql)?;
            for r in rows {
                out.push((RecordRow::from_json(&r.j)?, field.name));
            }
        }
    }
    Ok(out)
}
