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

diesel::table! {
    device_enrolments (code_hash) {
        code_hash -> Text,
        device_id -> Text,
        user_id -> Text,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

/// How long an enrolment code can be used (microseconds): three days, time to reach the village.
pub const ENROLMENT_TTL_MICROS: i64 = 72 * 3600 * 1_000_000;

/// A device an admin registered for a field worker, and the one-time code its phone enrols with.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct Enrolment {
    pub device: DeviceView,
    /// Shown once: the phone exchanges it (`POST /api/v1/devices/enrol`) for tokens bound to
    /// this device. Only its SHA-256 is stored.
    pub enrolment_code: String,
    /// Unix microseconds after which the code no longer works.
    pub expires_at: i64,
}

fn enrolment_code() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Registers a device for the field worker `user_id` (an admin's act) and issues its one-time
/// enrolment code. The worker's scope stays what their villages say; the device has no token
/// until the phone enrols.
pub fn register_for(
    conn: &mut DbConn,
    admin: &Principal,
    user_id: &str,
    name: &str,
) -> AppResult<Enrolment> {
    let user = users::get(conn, user_id)?.ok_or(AppError::NotFound)?;
    if user.role != Role::Worker || !user.active {
        return Err(AppError::validation(
            "not_a_worker",
            "devices are registered for active field workers",
        ));
    }
    let id = register(conn, &user.id, name, None)?;
    let code = enrolment_code();
    let now = now_micros();
    let expires_at = now + ENROLMENT_TTL_MICROS;
    diesel::insert_into(device_enrolments::table)
        .values((
            device_enrolments::code_hash.eq(tokens::sha256_hex(&code)),
            device_enrolments::device_id.eq(&id),
            device_enrolments::user_id.eq(&user.id),
            device_enrolments::created_by.eq(&admin.user_id),
            device_enrolments::created_at.eq(now),
            device_enrolments::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEntry {
            actor_user: Some(admin.user_id.clone()),
            actor_role: Some(admin.role.as_str().into()),
            action: "device_registered_for_worker",
            target_kind: Some("device".into()),
            target_ids: vec![id.clone()],
            request_id: admin.request_id.clone(),
            detail: Some(serde_json::json!({ "user_id": user.id, "expires_at": expires_at })),
        },
    )?;
    let device = load_all(conn, Some(&id))?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)?;
    Ok(Enrolment {
        device,
        enrolment_code: code,
        expires_at,
    })
}

/// Consumes an enrolment code: answers the worker and the device it was issued for. A code
/// works once, before it expires, for an active device of an active worker; anything else is
/// `401 invalid_enrolment_code` (no hint which).
pub fn enrol(
    conn: &mut DbConn,
    code: &str,
    app_version: Option<&str>,
) -> AppResult<(users::UserView, String)> {
    let invalid = || AppError::Unauthorized("invalid_enrolment_code");
    if code.is_empty() || code.len() > 200 {
        return Err(invalid());
    }
    if app_version.is_some_and(|v| v.chars().count() > 50) {
        return Err(AppError::validation(
            "bad_app_version",
            "app_version is at most 50 characters",
        ));
    }
    let now = now_micros();
    let row: Option<(String, String)> = device_enrolments::table
        .filter(device_enrolments::code_hash.eq(tokens::sha256_hex(code)))
        .filter(device_enrolments::used_at.is_null())
        .filter(device_enrolments::expires_at.gt(now))
        .select((device_enrolments::device_id, device_enrolments::user_id))
        .first(conn)
        .optional()?;
    let (device_id, user_id) = row.ok_or_else(invalid)?;
    let user = users::get(conn, &user_id)?
        .filter(|u| u.active)
        .ok_or_else(invalid)?;
    let active: bool = devices::table
        .filter(devices::id.eq(&device_id))
        .select(devices::status)
        .first::<String>(conn)
        .optional()?
        .is_some_and(|s| s == "active");
    if !active {
        return Err(invalid());
    }
    let used = diesel::update(
        device_enrolments::table
            .filter(device_enrolments::code_hash.eq(tokens::sha256_hex(code)))
            .filter(device_enrolments::used_at.is_null()),
    )
    .set(device_enrolments::used_at.eq(now))
    .execute(conn)?;
    if used != 1 {
        return Err(invalid());
    }
    if let Some(v) = app_version {
        diesel::update(devices::table.filter(devices::id.eq(&device_id)))
            .set(devices::app_version.eq(v))
            .execute(conn)?;
    }
    audit::record(
        conn,
        AuditEntry {
            actor_user: Some(user.id.clone()),
            actor_role: Some(user.role.as_str().into()),
            action: "device_enrolled",
            target_kind: Some("device".into()),
            target_ids: vec![device_id.clone()],
            request_id: crate::error::current_request_id(),
            detail: None,
        },
    )?;
    Ok((user, device_id))
}
