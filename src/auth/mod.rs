//! Who may do what: roles, scope, passwords, signing keys, tokens, the authenticated
//! `Principal` (its actix extractor is `api::principal`), devices, users, login throttling and
//! the audit log.

pub mod audit;
pub mod devices;
pub mod keys;
pub mod passwords;
pub mod principal;
pub mod roles;
pub mod scope;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use principal::Principal;
pub use scope::Scope;

/// The authentication state the server shares across workers.
pub struct AuthState {
    pub keys: keys::Keyring,
    pub hasher: passwords::Hasher,
    pub throttle: throttle::LoginThrottle,
}

impl AuthState {
    pub fn new(settings: &crate::settings::Settings) -> std::io::Result<AuthState> {
        Ok(AuthState {
            keys: keys::Keyring::load(settings)?,
            hasher: passwords::Hasher::new(settings.auth.max_concurrent_hashes),
            throttle: throttle::LoginThrottle::default(),
        })
    }
}
