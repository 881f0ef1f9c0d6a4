//! Access tokens (JWT, EdDSA, short-lived) and refresh tokens (opaque, rotated at each use).
//!
//! Refresh tokens are 32 random bytes (base64url) at sign-in; only their SHA-256 is stored.
//! Each use marks the token used and issues a successor in the same family. The successor's
//! plaintext is derived, not random: `HMAC-SHA256(keyring secret, parent token id)`. So a retry
//! of the same refresh inside `auth.refresh_grace_secs` (a phone that lost the answer) is given
//! the very same successor again, with nothing secret stored; two refreshes at once end with
//! the same successor (the database's row lock / single writer orders them and the loser reads
//! the winner's successor). A rotated token presented after the grace window is a replay: the
//! whole family is revoked and `refresh_reuse` is audited.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::audit::{self, AuditEntry};
use crate::auth::keys::Keyring;
use crate::auth::roles::Role;
use crate::db::schema::{devices, refresh_tokens, users};
use crate::db::{now_micros, DbConn};
use crate::error::{AppError, AppResult};
use crate::settings::AuthSettings;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;
pub const LEEWAY_SECS: u64 = 30;
pub const ACCESS_USE: &str = "access";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(rename = "use")]
    pub token_use: String,
    /// The session: the refresh-token family the token was issued with. Every request checks
    /// that the family is still live, so logout, device revocation and a password change end
    /// the session's access tokens at once, not when they expire.
    pub sid: String,
}

/// Signs an access token for the user (and device).
pub fn issue_access(
    keys: &Keyring,
    cfg: &AuthSettings,
    user_id: &str,
    role: Role,
    device_id: Option<&str>,
    session_id: &str,
) -> AppResult<String> {
    let now = (now_micros() / 1_000_000) as u64;
    let claims = AccessClaims {
        sub: user_id.to_string(),
        did: device_id.map(str::to_string),
        role: role.as_str().to_string(),
        iss: cfg.issuer.clone(),
        aud: cfg.audience.clone(),
        exp: now + cfg.access_ttl_secs as u64,
        nbf: now,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        token_use: ACCESS_USE.to_string(),
        sid: session_id.to_string(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.kid().to_string());
    encode(&header, &claims, keys.encoding_key())
        .map_err(|e| AppError::Internal(format!("token signing: {e}")))
}

/// Validates an access token: EdDSA only, a known key id, exp/nbf/aud/iss/sub present and
/// valid (30 s leeway), and `use = access`.
pub fn validate_access(keys: &Keyring, cfg: &AuthSettings, token: &str) -> AppResult<AccessClaims> {
    if token.len() > MAX_TOKEN_BYTES || token.is_empty() {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    let header = decode_header(token).map_err(|_| AppError::Unauthorized("invalid_token"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|k| keys.decoding_key(k))
        .ok_or(AppError::Unauthorized("invalid_token"))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.algorithms = vec![Algorithm::EdDSA];
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.leeway = LEEWAY_SECS;
    v.set_audience(&[cfg.audience.as_str()]);
    v.set_issuer(&[cfg.issuer.as_str()]);
    let data = decode::<AccessClaims>(token, key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => AppError::Unauthorized("token_expired"),
            _ => AppError::Unauthorized("invalid_token"),
        }
    })?;
    let c = data.claims;
    if c.token_use != ACCESS_USE
        || c.sub.is_empty()
        || c.sid.is_empty()
        || Role::parse(&c.role).is_none()
    {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    Ok(c)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The successor of refresh token `parent_id`, the same every time it is derived.
fn successor_token(keys: &Keyring, parent_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(keys.refresh_secret()).expect("any key length");
    mac.update(b"successor\0");
    mac.update(parent_id.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[derive(Insertable)]
#[diesel(table_name = refresh_tokens)]
struct NewRefresh<'a> {
    id: &'a str,
    family_id: &'a str,
    device_id: Option<&'a str>,
    user_id: &'a str,
    token_hash: &'a str,
    successor_id: Option<&'a str>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshRow {
    pub id: String,
    pub family_id: String,
    pub device_id: Option<String>,
    pub user_id: String,
    pub token_hash: String,
    pub successor_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn ttl_micros(cfg: &AuthSettings) -> i64 {
    cfg.refresh_ttl_days.max(1) * 86_400 * 1_000_000
}

/// A new session: its refresh-token family and first refresh token.
pub struct Family {
    pub id: String,
    pub token: String,
}

/// Starts a new family (a sign-in, or a device registration) and returns its first token.
pub fn start_family(
    conn: &mut DbConn,
    cfg: &AuthSettings,
    user_id: &str,
    device_id: Option<&str>,
) -> AppResult<Family> {
    let token = random_token();
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_micros();
    diesel::insert_into(refresh_tokens::table)
        .values(NewRefresh {
            id: &id,
            family_id: &id,
            device_id,
            user_id,
            token_hash: &sha256_hex(&token),
            successor_id: None,
            created_at: now,
            expires_at: now + ttl_micros(cfg),
            used_at: None,
            revoked_at: None,
        })
        .execute(conn)?;
    Ok(Family { id, token })
}

/// What a refresh came to.
pub enum Refreshed {
    /// The new refresh token and whom it belongs to.
    Issued {
        token: String,
        family_id: String,
        user_id: String,
        role: Role,
        device_id: Option<String>,
    },
    /// A replay after the grace window: the family is now revoked (answer 401 after commit).
    Reused,
    /// A token of a revoked device: its family is revoked too (answer 403 after commit).
    DeviceRevoked,
    /// Unknown, expired, revoked, or of an inactive user or revoked device.
    Invalid,
}

pub fn revoke_family(conn: &mut DbConn, family_id: &str) -> AppResult<usize> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now_micros()))
    .execute(conn)?)
}

pub fn revoke_device(conn: &mut DbConn, device_id: &str) -> AppResult<usize> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::device_id.eq(device_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now_micros()))
    .execute(conn)?)
}

fn find_by_hash(conn: &mut DbConn, hash: &str) -> AppResult<Option<RefreshRow>> {
    Ok(refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshRow::as_select())
        .first(conn)
        .optional()?)
}

/// Revokes every session of a user (a password change).
pub fn revoke_user(conn: &mut DbConn, user_id: &str) -> AppResult<usize> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now_micros()))
    .execute(conn)?)
}

/// Whether the session `family_id` is live for this user and device: some token of the family
/// is not revoked. Logout, a replay, device revocation and a password change revoke them all.
pub fn session_live(
    conn: &mut DbConn,
    family_id: &str,
    user_id: &str,
    device_id: Option<&str>,
) -> AppResult<bool> {
    let row: Option<(String, Option<String>)> = refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family_id))
        .filter(refresh_tokens::revoked_at.is_null())
        .select((refresh_tokens::user_id, refresh_tokens::device_id))
        .first(conn)
        .optional()?;
    Ok(row.is_some_and(|(u, d)| u == user_id && d.as_deref() == device_id))
}

fn device_active(conn: &mut DbConn, device_id: &str) -> AppResult<bool> {
    let status: Option<String> = devices::table
        .filter(devices::id.eq(device_id))
        .select(devices::status)
        .first(conn)
        .optional()?;
    Ok(status.as_deref() == Some("active"))
}

/// Rotates `token` (run inside a write transaction). `request_id` goes to the audit row.
pub fn rotate(
    conn: &mut DbConn,
    keys: &Keyring,
    cfg: &AuthSettings,
    token: &str,
    request_id: &str,
) -> AppResult<Refreshed> {
    if token.is_empty() || token.len() > 256 {
        return Ok(Refreshed::Invalid);
    }
    let Some(row) = find_by_hash(conn, &sha256_hex(token))? else {
        return Ok(Refreshed::Invalid);
    };
    // A known token of a revoked device says so (its holder may learn what it already holds),
    // whether or not the revocation already reached the token itself.
    if let Some(did) = &row.device_id {
        if !device_active(conn, did)? {
            revoke_family(conn, &row.family_id)?;
            return Ok(Refreshed::DeviceRevoked);
        }
    }
    let now = now_micros();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(Refreshed::Invalid);
    }
    // The owner must still be active, and the device (when there is one) not revoked.
    let user: Option<(String, bool)> = users::table
        .filter(users::id.eq(&row.user_id))
        .select((users::role, users::active))
        .first(conn)
        .optional()?;
    let Some((role, true)) = user else {
        return Ok(Refreshed::Invalid);
    };
    let Some(role) = Role::parse(&role) else {
        return Ok(Refreshed::Invalid);
    };
    let issued = |token: String| Refreshed::Issued {
        token,
        family_id: row.family_id.clone(),
        user_id: row.user_id.clone(),
        role,
        device_id: row.device_id.clone(),
    };

    let mut row = row.clone();
    if row.used_at.is_none() {
        let successor_id = uuid::Uuid::now_v7().to_string();
        let claimed = diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::id.eq(&row.id))
                .filter(refresh_tokens::used_at.is_null()),
        )
        .set((
            refresh_tokens::used_at.eq(now),
            refresh_tokens::successor_id.eq(&successor_id),
        ))
        .execute(conn)?;
        if claimed == 1 {
            let next = successor_token(keys, &row.id);
            diesel::insert_into(refresh_tokens::table)
                .values(NewRefresh {
                    id: &successor_id,
                    family_id: &row.family_id,
                    device_id: row.device_id.as_deref(),
                    user_id: &row.user_id,
                    token_hash: &sha256_hex(&next),
                    successor_id: None,
                    created_at: now,
                    expires_at: now + ttl_micros(cfg),
                    used_at: None,
                    revoked_at: None,
                })
                .execute(conn)?;
            return Ok(issued(next));
        }
        // Someone else rotated it in the meantime: read what they did.
        row = refresh_tokens::table
            .filter(refresh_tokens::id.eq(&row.id))
            .select(RefreshRow::as_select())
            .first(conn)?;
        if row.revoked_at.is_some() {
            return Ok(Refreshed::Invalid);
        }
    }

    let used_at = row.used_at.unwrap_or(now);
    let within_grace = now - used_at <= cfg.refresh_grace_secs.max(0) * 1_000_000;
    if within_grace {
        if let Some(succ_id) = &row.successor_id {
            let succ: Option<RefreshRow> = refresh_tokens::table
                .filter(refresh_tokens::id.eq(succ_id))
                .select(RefreshRow::as_select())
                .first(conn)
                .optional()?;
            if let Some(succ) = succ {
                let next = successor_token(keys, &row.id);
                if succ.revoked_at.is_none() && succ.token_hash == sha256_hex(&next) {
                    return Ok(issued(next));
                }
            }
        }
        return Ok(Refreshed::Invalid);
    }

    // A replay of a rotated token: someone else may hold the family. End it.
    revoke_family(conn, &row.family_id)?;
    audit::record(
        conn,
        AuditEntry {
            actor_user: Some(row.user_id.clone()),
            actor_role: Some(role.as_str().to_string()),
            action: "refresh_reuse",
            target_kind: Some("refresh_family".into()),
            target_ids: vec![row.family_id.clone()],
            request_id: request_id.to_string(),
            detail: row
                .device_id
                .as_ref()
                .map(|d| serde_json::json!({ "device_id": d })),
        },
    )?;
    Ok(Refreshed::Reused)
}

/// Revokes the family of `token` (logout). Unknown tokens are ignored.
pub fn logout(conn: &mut DbConn, token: &str) -> AppResult<Option<String>> {
    if token.is_empty() || token.len() > 256 {
        return Ok(None);
    }
    match find_by_hash(conn, &sha256_hex(token))? {
        Some(row) => {
            revoke_family(conn, &row.family_id)?;
            Ok(Some(row.user_id))
        }
        None => Ok(None),
    }
}
