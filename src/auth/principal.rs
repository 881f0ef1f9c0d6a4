//! `Principal`: the authenticated caller. The actix extractor (`api::principal`) reads and
//! validates the bearer token and checks the route's declared access; [`load`] is the database
//! half: it loads the user (must be active) and the token's device (must be the user's and not
//! revoked) and its session (the refresh-token family, which logout, device revocation and a
//! password change end).

use diesel::prelude::*;

use crate::auth::roles::Role;
use crate::auth::scope::{self, Scope};
use crate::auth::tokens::{self, AccessClaims};
use crate::db::schema::{devices, users};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};

#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    pub device_id: Option<String>,
    /// The request this principal was authenticated for (for audit rows).
    pub request_id: String,
}

impl Principal {
    /// The caller's scope, loaded from the database (never from the token).
    pub fn scope(&self, conn: &mut DbConn) -> AppResult<Scope> {
        scope::for_user(conn, &self.user_id, self.role)
    }
}

/// The database half: the user is active with the same role, the device is theirs and active.
pub fn load(
    conn: &mut DbConn,
    claims: &AccessClaims,
    role: Role,
    request_id: String,
) -> AppResult<Principal> {
    let user: Option<(String, String, bool)> = users::table
        .filter(users::id.eq(&claims.sub))
        .select((users::username, users::role, users::active))
        .first(conn)
        .optional()?;
    let Some((username, db_role, active)) = user else {
        return Err(AppError::Unauthorized("invalid_token"));
    };
    if !active || db_role != role.as_str() {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    if let Some(did) = &claims.did {
        let dev: Option<(String, String)> = devices::table
            .filter(devices::id.eq(did))
            .select((devices::user_id, devices::status))
            .first(conn)
            .optional()?;
        match dev {
            Some((owner, _)) if owner != claims.sub => {
                return Err(AppError::Forbidden("forbidden"))
            }
            Some((_, status)) if status == "active" => {}
            Some(_) => return Err(AppError::Forbidden("device_revoked")),
            None => return Err(AppError::Unauthorized("invalid_token")),
        }
    }
    // Checked on every request rather than cached: a lost phone or a signed-out session must
    // stop at once, and it is one indexed lookup beside the two above.
    if !tokens::session_live(conn, &claims.sid, &claims.sub, claims.did.as_deref())? {
        return Err(AppError::Unauthorized("session_ended"));
    }
    Ok(Principal {
        user_id: claims.sub.clone(),
        username,
        role,
        device_id: claims.did.clone(),
        request_id,
    })
}
