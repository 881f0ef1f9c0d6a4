//! Accounts: creation with role-specific placement (a worker's villages or groups, a
//! supervisor's township or county), listing, village reassignment, password changes, and the
//! demo accounts of `serve --demo`.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::passwords;
use crate::auth::roles::Role;
use crate::auth::scope::Scope;
use crate::db::schema::{user_villages, users};
use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};
use crate::orgunit::{self, Level};

pub const MAX_VILLAGES: usize = 100;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub org_unit: Option<String>,
    pub password_hash: String,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An account as the API shows it (never the hash).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// A supervisor's township or county.
    pub org_unit: Option<String>,
    /// A field worker's villages or villager groups.
    pub villages: Vec<String>,
    pub active: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

impl UserView {
    /// Whether the account lies in `scope`: a worker by any of their villages, a supervisor by
    /// their org unit.
    pub fn in_scope(&self, scope: &Scope) -> bool {
        match self.role {
            Role::Worker => self.villages.iter().any(|v| scope.contains(v)),
            Role::TownshipSupervisor | Role::CountySupervisor => {
                self.org_unit.as_deref().is_some_and(|o| scope.contains(o))
            }
            Role::Admin => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub org_unit: Option<String>,
    pub villages: Vec<String>,
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn org_level(conn: &mut DbConn, code: &str) -> AppResult<Option<String>> {
    Ok(orgunit::get(conn, code)?.map(|u| u.level))
}

/// Checks that every code is an existing village or villager group.
pub fn check_villages(conn: &mut DbConn, villages: &[String]) -> AppResult<Vec<String>> {
    let mut v: Vec<String> = villages.iter().map(|s| s.trim().to_string()).collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        return Err(AppError::validation(
            "villages_required",
            "a field worker needs at least one village",
        ));
    }
    if v.len() > MAX_VILLAGES {
        return Err(AppError::validation(
            "too_many_villages",
            format!("at most {MAX_VILLAGES} villages"),
        ));
    }
    for code in &v {
        match org_level(conn, code)?.as_deref() {
            Some("village") | Some("group") => {}
            _ => {
                return Err(AppError::validation(
                    "unknown_village",
                    "every village must be an existing village or villager group code",
                ))
            }
        }
    }
    Ok(v)
}

fn villages_of(conn: &mut DbConn, ids: &[String]) -> AppResult<HashMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = user_villages::table
        .filter(user_villages::user_id.eq_any(ids))
        .select((user_villages::user_id, user_villages::org_unit))
        .order((user_villages::user_id, user_villages::org_unit))
        .load(conn)?;
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (u, o) in rows {
        map.entry(u).or_default().push(o);
    }
    Ok(map)
}

fn view(row: UserRow, villages: Vec<String>) -> UserView {
    UserView {
        role: Role::parse(&row.role).unwrap_or(Role::Worker),
        id: row.id,
        username: row.username,
        display_name: row.display_name,
        org_unit: row.org_unit,
        villages,
        active: row.active,
        created_at: row.created_at,
    }
}

/// Creates an account with an already computed password hash.
pub fn create(conn: &mut DbConn, new: &NewUser, password_hash: &str) -> AppResult<UserView> {
    let username = new.username.trim();
    if !valid_username(username) {
        return Err(AppError::validation(
            "bad_username",
            "usernames are 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    let display_name = new.display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(AppError::validation(
            "bad_display_name",
            "the display name needs 1 to 100 characters",
        ));
    }
    let (org_unit, villages) = match new.role {
        Role::Worker => (None, check_villages(conn, &new.villages)?),
        Role::TownshipSupervisor | Role::CountySupervisor => {
            let want = if new.role == Role::TownshipSupervisor {
                "township"
            } else {
                "county"
            };
            let code = new.org_unit.as_deref().map(str::trim).unwrap_or_default();
            if org_level(conn, code)?.as_deref() != Some(want) {
                return Err(AppError::validation(
                    "bad_org_unit",
                    format!(
                        "a {} needs an existing {want} as org_unit",
                        new.role.as_str()
                    ),
                ));
            }
            (Some(code.to_string()), Vec::new())
        }
        Role::Admin => (None, Vec::new()),
    };
    let taken: i64 = users::table
        .filter(users::username.eq(username))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Err(AppError::Conflict("that username is taken".into()));
    }
    let now = now_micros();
    let id = uuid::Uuid::now_v7().to_string();
    diesel::insert_into(users::table)
        .values((
            users::id.eq(&id),
            users::username.eq(username),
            users::display_name.eq(display_name),
            users::role.eq(new.role.as_str()),
            users::org_unit.eq(&org_unit),
            users::password_hash.eq(password_hash),
            users::active.eq(true),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)?;
    for v in &villages {
        diesel::insert_into(user_villages::table)
            .values((
                user_villages::user_id.eq(&id),
                user_villages::org_unit.eq(v),
            ))
            .execute(conn)?;
    }
    get(conn, &id)?.ok_or(AppError::Internal("user vanished after insert".into()))
}

pub fn find_by_username(conn: &mut DbConn, username: &str) -> AppResult<Option<UserRow>> {
    Ok(users::table
        .filter(users::username.eq(username.trim()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn get(conn: &mut DbConn, id: &str) -> AppResult<Option<UserView>> {
    let row: Option<UserRow> = users::table
        .filter(users::id.eq(id))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut v = villages_of(conn, std::slice::from_ref(&row.id))?;
    let villages = v.remove(&row.id).unwrap_or_default();
    Ok(Some(view(row, villages)))
}

/// All accounts, by username.
pub fn list(conn: &mut DbConn) -> AppResult<Vec<UserView>> {
    let rows: Vec<UserRow> = users::table
        .select(UserRow::as_select())
        .order(users::username)
        .load(conn)?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut villages = HashMap::new();
    for chunk in ids.chunks(500) {
        villages.extend(villages_of(conn, chunk)?);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let v = villages.remove(&r.id).unwrap_or_default();
            view(r, v)
        })
        .collect())
}

/// Replaces a worker's villages. `scope` (a supervisor's) limits both the worker and the new
/// villages; outside it the worker is not found.
pub fn set_villages(
    conn: &mut DbConn,
    user_id: &str,
    villages: &[String],
    scope: Option<&Scope>,
) -> AppResult<UserView> {
    let user = get(conn, user_id)?.ok_or(AppError::NotFound)?;
    if let Some(s) = scope {
        if !user.in_scope(s) {
            return Err(AppError::NotFound);
        }
    }
    if user.role != Role::Worker {
        return Err(AppError::validation(
            "not_a_worker",
            "only field workers have villages",
        ));
    }
    let villages = check_villages(conn, villages)?;
    if let Some(s) = scope {
        if villages.iter().any(|v| !s.contains(v)) {
            return Err(AppError::NotFound);
        }
    }
    diesel::delete(user_villages::table.filter(user_villages::user_id.eq(user_id)))
        .execute(conn)?;
    for v in &villages {
        diesel::insert_into(user_villages::table)
            .values((
                user_villages::user_id.eq(user_id),
                user_villages::org_unit.eq(v),
            ))
            .execute(conn)?;
    }
    diesel::update(users::table.filter(users::id.eq(user_id)))
        .set(users::updated_at.eq(now_micros()))
        .execute(conn)?;
    get(conn, user_id)?.ok_or(AppError::NotFound)
}

/// Sets a new password and ends every session of the account (its refresh tokens, and with
/// them its access tokens): whoever knew the old password is signed out.
pub fn set_password(conn: &mut DbConn, username: &str, password_hash: &str) -> AppResult<()> {
    let id: Option<String> = users::table
        .filter(users::username.eq(username.trim()))
        .select(users::id)
        .first(conn)
        .optional()?;
    let id = id.ok_or(AppError::NotFound)?;
    diesel::update(users::table.filter(users::id.eq(&id)))
        .set((
            users::password_hash.eq(password_hash),
            users::updated_at.eq(now_micros()),
        ))
        .execute(conn)?;
    crate::auth::tokens::revoke_user(conn, &id)?;
    Ok(())
}

pub const DEMO_COUNTY: &str = "130131";

/// For `serve --demo`: when no admin exists, creates `admin` and, when the demo county is
/// loaded, a county supervisor (`county`), a township supervisor (`township`, the county's
/// first township) and a worker per village of that township (`w` + village code), all with
/// one random 16-character password, returned so it can be printed once. `None` when an
/// admin already exists.
pub fn ensure_demo_accounts(conn: &mut DbConn) -> AppResult<Option<String>> {
    let admins: i64 = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .count()
        .get_result(conn)?;
    if admins > 0 {
        return Ok(None);
    }
    let password = passwords::generate(16);
    // One hash for all demo accounts: they share the printed password.
    let hash = passwords::hash_blocking(&password)?;
    let add = |conn: &mut DbConn,
               username: &str,
               display: &str,
               role: Role,
               org: Option<&str>,
               villages: Vec<String>|
     -> AppResult<()> {
        if find_by_username(conn, username)?.is_some() {
            return Ok(());
        }
        create(
            conn,
            &NewUser {
                username: username.into(),
                display_name: display.into(),
                role,
                org_unit: org.map(str::to_string),
                villages,
            },
            &hash,
        )?;
        Ok(())
    };
    add(conn, "admin", "Administrator", Role::Admin, None, vec![])?;
    if org_level(conn, DEMO_COUNTY)?.as_deref() == Some("county") {
        add(
            conn,
            "county",
            "县卫健局",
            Role::CountySupervisor,
            Some(DEMO_COUNTY),
            vec![],
        )?;
        let township: Option<String> = orgunit::children_at(conn, DEMO_COUNTY, Level::Township)?
            .into_iter()
            .next();
        if let Some(t) = township {
            add(
                conn,
                "township",
                "乡镇计生办",
                Role::TownshipSupervisor,
                Some(&t),
                vec![],
            )?;
            let villages = orgunit::children_at(conn, &t, Level::Village)?;
            for v in villages {
                add(
                    conn,
                    &format!("w{v}"),
                    "村计生专干",
                    Role::Worker,
                    None,
                    vec![v.clone()],
                )?;
            }
        }
    }
    Ok(Some(password))
}
