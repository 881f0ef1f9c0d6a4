//! Records as supervisors see and edit them: the record view, loading one record in scope, the
//! records that refer to one, and a supervisor's edit as an op of the merge path.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Scope;
use crate::db::records::{self, RecordRow};
use crate::db::{now_micros, DbConn};
use crate::domain::entities::{Entity, ENTITIES};
use crate::error::{AppError, AppResult};
use crate::supervise::ids::{mask_fields, IdNumberView};
use crate::supervise::sql::{plain, Query};
use crate::sync::validate::{self, ParsedOp};

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
