//! Audit rows written by the supervisor services: persons read, and supervisors' changes.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::auth::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::db::DbConn;
use crate::error::AppResult;

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
