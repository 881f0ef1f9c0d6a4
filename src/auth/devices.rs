//! Devices: a field worker's phones. Registered by the worker, listed and revoked by an admin
//! or a supervisor of the worker. Revoking ends the device's refresh-token families and makes
//! its access tokens fail at once; what it already synced stays.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::audit::{self, AuditEntry};
use crate::auth::principal::Principal;
use crate::auth::roles::Role;
use crate::auth::scope::Scope;
use crate::auth::tokens;
use crate::auth::users;
use crate::db::schema::{devices, users as users_t};
use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct DeviceView {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub name: String,
    pub app_version: Option<String>,
    /// `active` or `revoked`.
    pub status: String,
    /// Unix microseconds.
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_push_at: Option<i64>,
    pub last_pull_at: Option<i64>,
}

type DeviceTuple = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
);

fn load_all(conn: &mut DbConn, id: Option<&str>) -> AppResult<Vec<DeviceView>> {
    let mut q = devices::table
        .inner_join(users_t::table.on(users_t::id.eq(devices::user_id)))
        .select((
            devices::id,
            devices::user_id,
            devices::name,
            devices::app_version,
            devices::status,
            devices::created_at,
            devices::revoked_at,
            devices::last_push_at,
            devices::last_pull_at,
            users_t::username,
        ))
        .order(devices::created_at)
        .into_boxed();
    if let Some(id) = id {
        q = q.filter(devices::id.eq(id.to_string()));
    }
    let rows: Vec<DeviceTuple> = q.load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                user_id,
                name,
                app_version,
                status,
                created_at,
                revoked_at,
                last_push_at,
                last_pull_at,
                username,
            )| DeviceView {
                id,
                user_id,
                username,
                name,
                app_version,
                status,
                created_at,
                revoked_at,
                last_push_at,
                last_pull_at,
            },
        )
        .collect())
}

/// Registers a device for `user_id`.
pub fn register(
    conn: &mut DbConn,
    user_id: &str,
    name: &str,
    app_version: Option<&str>,
) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::validation(
            "bad_device_name",
            "the device name needs 1 to 100 characters",
        ));
    }
    if app_version.is_some_and(|v| v.chars().count() > 50) {
        return Err(AppError::validation(
            "bad_app_version",
            "app_version is at most 50 characters",
        ));
    }
    let id = uuid::Uuid::now_v7().to_string();
    diesel::insert_into(devices::table)
        .values((
            devices::id.eq(&id),
            devices::user_id.eq(user_id),
            devices::name.eq(name),
            devices::app_version.eq(app_version),
            devices::status.eq("active"),
            devices::last_seq.eq(0i64),
            devices::created_at.eq(now_micros()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The caller's view: an admin every device; a supervisor devices of the accounts in their
/// subtree; anyone else nothing.
fn visible_filter(conn: &mut DbConn, principal: &Principal) -> AppResult<Option<Scope>> {
    match principal.role {
        Role::Admin => Ok(None),
        Role::TownshipSupervisor | Role::CountySupervisor => Ok(Some(principal.scope(conn)?)),
        Role::Worker => Ok(Some(Scope::empty())),
    }
}

pub fn list_visible(
    conn: &mut DbConn,
    principal: &Principal,
    user: Option<&str>,
) -> AppResult<Vec<DeviceView>> {
    let all = load_all(conn, None)?;
    let scope = visible_filter(conn, principal)?;
    let mut out = Vec::new();
    let mut cache: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for d in all {
        if user.is_some_and(|u| u != d.user_id && u != d.username) {
            continue;
        }
        let visible = match &scope {
            None => true,
            Some(s) => match cache.get(&d.user_id) {
                Some(v) => *v,
                None => {
                    let v = users::get(conn, &d.user_id)?.is_some_and(|u| u.in_scope(s));
                    cache.insert(d.user_id.clone(), v);
                    v
                }
            },
        };
        if visible {
            out.push(d);
        }
    }
    Ok(out)
}

/// Every device, optionally of one user (id or username): for the CLI.
pub fn list_all(conn: &mut DbConn, user: Option<&str>) -> AppResult<Vec<DeviceView>> {
    Ok(load_all(conn, None)?
        .into_iter()
        .filter(|d| user.is_none_or(|u| u == d.user_id || u == d.username))
        .collect())
}

/// Revokes a device the caller may see (`None` = the CLI, unrestricted). Idempotent.
pub fn revoke(
    conn: &mut DbConn,
    actor: Option<&Principal>,
    device_id: &str,
    request_id: &str,
) -> AppResult<DeviceView> {
    let dev = load_all(conn, Some(device_id))?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)?;
    if let Some(p) = actor {
        if let Some(scope) = visible_filter(conn, p)? {
            let owner = users::get(conn, &dev.user_id)?.ok_or(AppError::NotFound)?;
            if !owner.in_scope(&scope) {
                return Err(AppError::NotFound);
            }
        }
    }
    if dev.status != "revoked" {
        diesel::update(devices::table.filter(devices::id.eq(device_id)))
            .set((
                devices::status.eq("revoked"),
                devices::revoked_at.eq(now_micros()),
                devices::revoked_by.eq(actor
                    .map(|p| p.user_id.clone())
                    .unwrap_or_else(|| "cli".into())),
            ))
            .execute(conn)?;
    }
    let families = tokens::revoke_device(conn, device_id)?;
    audit::record(
        conn,
        AuditEntry {
            actor_user: actor.map(|p| p.user_id.clone()),
            actor_role: Some(actor.map_or("cli", |p| p.role.as_str()).to_string()),
            action: "device_revoked",
            target_kind: Some("device".into()),
            target_ids: vec![device_id.to_string()],
            request_id: request_id.to_string(),
            detail: Some(
                serde_json::json!({ "user_id": dev.user_id, "refresh_tokens_revoked": families }),
            ),
        },
    )?;
    load_all(conn, Some(device_id))?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}
