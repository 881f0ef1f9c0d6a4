//! The audit log: who did what to which records, when, under which request. Append-only (the
//! database refuses UPDATE and DELETE). Rows never carry passwords, tokens, names or ID
//! numbers: targets are ids.

use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::principal::Principal;
use crate::db::schema::audit_log;
use crate::db::{now_micros, DbConn};
use crate::error::AppResult;

pub struct AuditEntry {
    pub actor_user: Option<String>,
    pub actor_role: Option<String>,
    pub action: &'static str,
    pub target_kind: Option<String>,
    pub target_ids: Vec<String>,
    pub request_id: String,
    pub detail: Option<serde_json::Value>,
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewAudit {
    at: i64,
    actor_user: Option<String>,
    actor_role: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_ids: Option<String>,
    request_id: Option<String>,
    detail: Option<String>,
}

/// Appends one row.
pub fn record(conn: &mut DbConn, e: AuditEntry) -> AppResult<()> {
    let row = NewAudit {
        at: now_micros(),
        actor_user: e.actor_user,
        actor_role: e.actor_role,
        action: e.action.to_string(),
        target_kind: e.target_kind,
        target_ids: if e.target_ids.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&e.target_ids).expect("strings serialise"))
        },
        request_id: Some(e.request_id).filter(|r| !r.is_empty()),
        detail: e.detail.map(|d| d.to_string()),
    };
    diesel::insert_into(audit_log::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Records that `principal` read these persons (call on every read of person records by a
/// supervisor: lists, details, exports). No row for an empty list.
pub fn record_person_reads(
    conn: &mut DbConn,
    principal: &Principal,
    ids: &[String],
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    record(
        conn,
        AuditEntry {
            actor_user: Some(principal.user_id.clone()),
            actor_role: Some(principal.role.as_str().to_string()),
            action: "person_read",
            target_kind: Some("person".into()),
            target_ids: ids.to_vec(),
            request_id: principal.request_id.clone(),
            detail: None,
        },
    )
}

#[derive(Queryable, Selectable, Serialize, ToSchema, Debug, Clone)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    /// Unix microseconds.
    pub at: i64,
    pub actor_user: Option<String>,
    pub actor_role: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    /// JSON array of ids.
    pub target_ids: Option<String>,
    pub request_id: Option<String>,
    /// JSON object.
    pub detail: Option<String>,
}

#[derive(Default, Debug, Clone)]
pub struct AuditQuery {
    pub person: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: i64,
}

/// Newest first. `person` matches rows whose targets include that person id; `from` is
/// inclusive and `to` exclusive (unix microseconds).
pub fn query(conn: &mut DbConn, q: &AuditQuery) -> AppResult<Vec<AuditRow>> {
    let mut sel = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(p) = &q.person {
        // The id is checked to be plain ([A-Za-z0-9-]) by the caller, so no LIKE escapes apply.
        sel = sel
            .filter(audit_log::target_kind.eq("person"))
            .filter(audit_log::target_ids.like(format!("%\"{p}\"%")));
    }
    if let Some(u) = &q.user {
        sel = sel.filter(audit_log::actor_user.eq(u.clone()));
    }
    if let Some(a) = &q.action {
        sel = sel.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(f) = q.from {
        sel = sel.filter(audit_log::at.ge(f));
    }
    if let Some(t) = q.to {
        sel = sel.filter(audit_log::at.lt(t));
    }
    Ok(sel
        .order(audit_log::id.desc())
        .limit(q.limit.clamp(1, 1000))
        .load(conn)?)
}
