//! Password hashing: argon2id (m = 19456 KiB, t = 2, p = 1) in PHC strings. Hashing is
//! memory-hard on purpose, so at most `auth.max_concurrent_hashes` run at once (a semaphore)
//! and they run on the blocking pool. A login for an unknown user verifies against a fixed
//! dummy hash, so it takes as long as a login for a known one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest new password, in characters (at most 1 KiB in UTF-8).
pub const MAX_NEW_PASSWORD_CHARS: usize = 256;

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (blocking; call from the blocking pool or the CLI).
pub fn hash_blocking(password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("password hashing: {e}")))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("fieldsync dummy password for unknown users").expect("hash"))
}

/// Verifies `password` against `stored` (blocking). With no stored hash (unknown user) the
/// dummy hash is verified instead and the answer is always false.
pub fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        // An unparsable stored hash still costs a hash, then fails.
        let _ = argon2().verify_password(
            password.as_bytes(),
            &PasswordHash::new(dummy_hash()).expect("dummy parses"),
        );
        return false;
    };
    let ok = argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

/// Checks a new password's length (10 to 256 characters).
pub fn check_new(password: &str) -> AppResult<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AppError::validation(
            "password_too_short",
            format!("the password needs at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_NEW_PASSWORD_CHARS {
        return Err(AppError::validation(
            "password_too_long",
            format!("the password may have at most {MAX_NEW_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A random password of `len` characters from an alphabet without look-alikes.
pub fn generate(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The bounded hasher the server uses.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Hasher {
    pub fn new(max_concurrent: usize) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable)?;
        let running = self.running.clone();
        let peak = self.peak.clone();
        let runs = self.runs.clone();
        Ok(actix_web::web::block(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = f();
            running.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await?)
    }

    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.run(move || hash_blocking(&password)).await?
    }

    pub async fn verify(&self, password: String, stored: Option<String>) -> AppResult<bool> {
        self.run(move || verify_blocking(&password, stored.as_deref()))
            .await
    }

    /// The most hashes that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// How many hashes (hashing or verifying) have run.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_with_the_parameters_and_verifies() {
        let h = hash_blocking("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse battery", Some(&h)));
        assert!(!verify_blocking("wrong horse battery", Some(&h)));
        assert!(!verify_blocking("anything", None));
        assert!(!verify_blocking("anything", Some("not a hash")));
    }

    #[test]
    fn at_most_the_configured_hashes_run_at_once() {
        let hasher = Hasher::new(2);
        let h = hasher.clone();
        actix_web::rt::System::new().block_on(async move {
            let futs: Vec<_> = (0..6)
                .map(|i| {
                    let h = h.clone();
                    actix_web::rt::spawn(async move { h.verify(format!("pw{i}"), None).await })
                })
                .collect();
            for f in futs {
                assert!(!f.await.unwrap().unwrap());
            }
        });
        assert!(
            hasher.peak() >= 1 && hasher.peak() <= 2,
            "{}",
            hasher.peak()
        );
    }
}
