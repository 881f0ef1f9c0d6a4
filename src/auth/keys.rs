//! Token signing keys: Ed25519 (EdDSA), the only algorithm accepted. The key comes from
//! `auth.signing_key_pem` or is generated into `data_dir/signing_key.pem` (mode 0600) at first
//! start and reused. Each key is named by its `kid` (a short hash of the public key); the
//! keyring also holds retired keys, so tokens signed before a rotation keep verifying until
//! they expire. Retired keys are PEM files (private PKCS#8 or public SPKI) in
//! `data_dir/retired_keys/`.
//!
//! The keyring also derives the secret that makes refresh-token successors deterministic
//! (see `tokens`), so that a retried refresh can be answered with the same successor without
//! storing any token in plaintext.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::DecodePublicKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

use crate::settings::Settings;

pub const KEY_FILE: &str = "signing_key.pem";
pub const RETIRED_DIR: &str = "retired_keys";

pub struct Keyring {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    refresh_secret: [u8; 32],
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn kid_of(public: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..8])
}

impl Keyring {
    /// The keyring the settings name: the configured PEM, else the key file in `data_dir`
    /// (generated when missing), plus any retired keys.
    pub fn load(settings: &Settings) -> std::io::Result<Keyring> {
        let signing = if !settings.auth.signing_key_pem.0.trim().is_empty() {
            SigningKey::from_pkcs8_pem(settings.auth.signing_key_pem.0.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("auth.signing_key_pem is not a PKCS#8 Ed25519 key: {e}"),
                )
            })?
        } else {
            load_or_generate(&settings.data_dir)?
        };
        let mut ring = Keyring::from_signing_key(&signing);
        let retired = settings.data_dir.join(RETIRED_DIR);
        if let Ok(entries) = std::fs::read_dir(&retired) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                    continue;
                }
                let text = std::fs::read_to_string(&path)?;
                let public = match SigningKey::from_pkcs8_pem(&text) {
                    Ok(k) => k.verifying_key(),
                    Err(_) => VerifyingKey::from_public_key_pem(&text).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: not an Ed25519 key: {e}", path.display()),
                        )
                    })?,
                };
                ring.add_verifier(&public);
            }
        }
        Ok(ring)
    }

    pub fn from_signing_key(signing: &SigningKey) -> Keyring {
        let der = signing
            .to_pkcs8_der()
            .expect("an Ed25519 key encodes as PKCS#8");
        let public = signing.verifying_key();
        let kid = kid_of(&public);
        let mut decoding = HashMap::new();
        decoding.insert(kid.clone(), DecodingKey::from_ed_der(public.as_bytes()));
        let mut h = Sha256::new();
        h.update(b"fieldsync refresh successor secret v1\0");
        h.update(signing.to_bytes());
        Keyring {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding,
            refresh_secret: h.finalize().into(),
        }
    }

    /// Accepts tokens signed by this (retired) key as well.
    pub fn add_verifier(&mut self, public: &VerifyingKey) {
        self.decoding
            .insert(kid_of(public), DecodingKey::from_ed_der(public.as_bytes()));
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }

    pub fn refresh_secret(&self) -> &[u8; 32] {
        &self.refresh_secret
    }
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub retired_kid: String,
    pub new_kid: String,
}

/// Rotates the key file in `data_dir`: the current key's public half goes to
/// `retired_keys/<kid>.pem` (so tokens it signed keep verifying until they expire), and a new
/// key replaces `signing_key.pem` (written to a temp file, synced, renamed). The running server
/// picks the new key up at its next start. Refused when the key comes from settings.
pub fn rotate(settings: &Settings) -> std::io::Result<Rotation> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    if !settings.auth.signing_key_pem.0.trim().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the signing key comes from auth.signing_key_pem: put a new key there, and the old \
             public key (PEM) in data_dir/retired_keys/, then restart",
        ));
    }
    let dir = &settings.data_dir;
    let old = load_or_generate(dir)?;
    let old_public = old.verifying_key();
    let retired_kid = kid_of(&old_public);
    let retired_dir = dir.join(RETIRED_DIR);
    std::fs::create_dir_all(&retired_dir)?;
    let public_pem = old_public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    write_synced(
        &retired_dir.join(format!("{retired_kid}.pem")),
        public_pem.as_bytes(),
    )?;
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = new
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    write_synced(&dir.join(KEY_FILE), pem.as_bytes())?;
    Ok(Rotation {
        retired_kid,
        new_kid: kid_of(&new.verifying_key()),
    })
}

/// Options to write a file only its owner can read (mode 0600 on Unix).
fn private_file() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

/// Writes `path` through a synced temp file (mode 0600) renamed into place.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let mut opts = private_file();
    opts.create(true).truncate(true);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn load_or_generate(dir: &Path) -> std::io::Result<SigningKey> {
    let path = dir.join(KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a PKCS#8 Ed25519 key: {e}", path.display()),
            )
        });
    }
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut opts = private_file();
    opts.create_new(true);
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(pem.as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_generate(dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_reused_and_private() {
        let dir = std::env::temp_dir().join(format!("fs-keys-{}", uuid::Uuid::new_v4().simple()));
        let s = Settings {
            data_dir: dir.clone(),
            ..Settings::default()
        };
        let a = Keyring::load(&s).unwrap();
        let b = Keyring::load(&s).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rotation_retires_the_old_key_for_verification() {
        let dir = std::env::temp_dir().join(format!("fs-rot-{}", uuid::Uuid::new_v4().simple()));
        let settings = Settings {
            data_dir: dir.clone(),
            ..Settings::default()
        };
        let before = Keyring::load(&settings).unwrap();
        let r = rotate(&settings).unwrap();
        assert_eq!(r.retired_kid, before.kid());
        let after = Keyring::load(&settings).unwrap();
        assert_eq!(after.kid(), r.new_kid);
        assert_ne!(after.kid(), before.kid());
        assert!(
            after.decoding_key(before.kid()).is_some(),
            "old tokens still verify"
        );
        let again = rotate(&settings).unwrap();
        let third = Keyring::load(&settings).unwrap();
        assert!(third.decoding_key(before.kid()).is_some());
        assert!(third.decoding_key(&again.retired_kid).is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
