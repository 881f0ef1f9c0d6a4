//! Settings: one typed struct, layered defaults < file (`fieldsync.toml`) < `FIELDSYNC_*`
//! environment < command-line flags. Nested keys use `__` in the environment, e.g.
//! `FIELDSYNC_LIMITS__MAX_OPS_PER_BATCH=500`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A secret value: never printed by `Debug` or `Serialize`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("[redacted]")
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// `sqlite://PATH` (default, embedded) or `postgres://user@host/db`.
    pub database_url: String,
    /// Where generated keys and backups live.
    pub data_dir: PathBuf,
    pub pool_size: u32,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Groups of pushes PostgreSQL commits at once (0 = one per core, at least two). Each keeps
    /// a core busy while devices push; 1 leaves a small server's other core to pulls and
    /// reports. SQLite commits one at a time whatever this says.
    pub push_groups: usize,
    /// On SIGTERM the server stops accepting connections and lets the requests in flight finish
    /// for up to this many seconds; then it closes what is left (a push cut off that way is
    /// neither committed nor acknowledged) and exits.
    pub shutdown_timeout_secs: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// SQLite `synchronous` pragma; anything below FULL makes the server refuse to start.
    pub sqlite_synchronous: String,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// The report's counting rules (统计口径) a deployment may change.
    pub report: crate::report::indicators::Rules,
    /// Bearer token a metrics scraper sends to `GET /metrics`; the endpoint is off when empty.
    pub metrics_token: Secret,
    /// Addresses of reverse proxies in front of the server (e.g. `["127.0.0.1"]` behind a local
    /// nginx). Only a request from one of them has its client address taken from
    /// `X-Forwarded-For` (the nearest address that is not a trusted proxy); from anyone else the
    /// header is ignored, so it cannot be forged to dodge the per-address login throttle.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `FIELDSYNC_*` environment variables that name no setting: ignored with a warning
    /// (deployment tools set their own), where an unknown key in the file is an error.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_days: i64,
    /// Seconds during which a retried refresh with the just-rotated token gets the same successor.
    pub refresh_grace_secs: i64,
    /// PEM (PKCS#8) Ed25519 signing key; when empty, one is generated into `data_dir` at first start.
    pub signing_key_pem: Secret,
    /// At most this many password hashes run at once (argon2 is memory-hard by design).
    pub max_concurrent_hashes: usize,
}

/// Limits on everything a device can send. One place, reported to devices on a 413.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_inflated_bytes: usize,
    pub max_ops_per_batch: usize,
    pub max_page_size: usize,
    pub default_page_size: usize,
    pub max_json_depth: usize,
    /// Pushes processed at once; more wait briefly, then get 503 with Retry-After, so a
    /// retry storm cannot queue without bound.
    pub max_inflight_pushes: usize,
    /// Seconds a push body may take to arrive; a stalled or 1-byte-a-second body is answered
    /// 400 and its connection freed.
    pub body_timeout_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://fieldsync.db".into(),
            data_dir: PathBuf::from("data"),
            pool_size: 8,
            workers: 0,
            push_groups: 0,
            shutdown_timeout_secs: 30,
            log_format: "text".into(),
            sqlite_synchronous: "FULL".into(),
            auth: AuthSettings {
                issuer: "fieldsync".into(),
                audience: "fieldsync-api".into(),
                access_ttl_secs: 15 * 60,
                refresh_ttl_days: 30,
                refresh_grace_secs: 60,
                signing_key_pem: Secret::default(),
                max_concurrent_hashes: 2,
            },
            limits: Limits {
                max_body_bytes: 4 * 1024 * 1024,
                max_inflated_bytes: 16 * 1024 * 1024,
                max_ops_per_batch: 1000,
                max_page_size: 1000,
                default_page_size: 500,
                max_json_depth: 32,
                max_inflight_pushes: 64,
                body_timeout_secs: 30,
            },
            report: crate::report::indicators::Rules::default(),
            metrics_token: Secret::default(),
            trusted_proxies: Vec::new(),
            ignored_env: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("settings file {0} is not valid TOML: {1}")]
    Parse(PathBuf, String),
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layers. `file` is an explicit path (missing is an error); without one,
    /// `./fieldsync.toml` is read when it exists. `flags` are `key.path = value` pairs from the CLI.
    pub fn load(file: Option<&Path>, flags: &[(&str, Value)]) -> Result<Settings, SettingsError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, flags)
    }

    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &[(&str, Value)],
    ) -> Result<Settings, SettingsError> {
        let mut merged = serde_json::to_value(Settings::default())
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        // Secrets serialise as a marker; start them empty so the marker never becomes a value.
        merged["auth"]["signing_key_pem"] = Value::String(String::new());

        let default_file = PathBuf::from("fieldsync.toml");
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        if let Some(path) = path {
            let text =
                std::fs::read_to_string(&path).map_err(|e| SettingsError::Read(path.clone(), e))?;
            let t: toml::Value = toml::from_str(&text)
                .map_err(|e| SettingsError::Parse(path.clone(), e.to_string()))?;
            let v = serde_json::to_value(t).map_err(|e| SettingsError::Invalid(e.to_string()))?;
            overlay(&mut merged, v);
        }
        let mut ignored_env = Vec::new();
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix("FIELDSYNC_") else {
                continue;
            };
            // FIELDSYNC_LOG is the log filter (telemetry), not a setting.
            if rest.starts_with("TEST_") || rest == "CONFIG" || rest == "LOG" {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if !names_setting(&merged, &path) {
                ignored_env.push(key.clone());
                continue;
            }
            set_path(&mut merged, &path, parse_scalar(raw));
        }
        for (key, value) in flags {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            set_path(&mut merged, &path, value.clone());
        }
        let mut s: Settings =
            serde_json::from_value(merged).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        s.validate()?;
        ignored_env.sort();
        s.ignored_env = ignored_env;
        Ok(s)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.push_groups > 64 {
            return Err(SettingsError::Invalid(
                "push_groups must be between 0 (one per core) and 64".into(),
            ));
        }
        let l = &self.limits;
        if l.max_ops_per_batch == 0 || l.max_page_size == 0 || l.default_page_size == 0 {
            return Err(SettingsError::Invalid("limits must be positive".into()));
        }
        if l.default_page_size > l.max_page_size {
            return Err(SettingsError::Invalid(
                "limits.default_page_size exceeds limits.max_page_size".into(),
            ));
        }
        if self.auth.access_ttl_secs <= 0 || self.auth.access_ttl_secs > 24 * 3600 {
            return Err(SettingsError::Invalid(
                "auth.access_ttl_secs must be between 1 and 86400".into(),
            ));
        }
        if !(1..=3650).contains(&self.report.long_acting_within_days) {
            return Err(SettingsError::Invalid(
                "report.long_acting_within_days must be between 1 and 3650".into(),
            ));
        }
        Ok(())
    }
}

/// Environment values are strings; numbers, booleans and JSON lists (`["127.0.0.1"]`) are
/// recognised so that typed fields can be set from the environment.
fn parse_scalar(raw: &str) -> Value {
    if raw.trim_start().starts_with('[') {
        if let Ok(v @ Value::Array(_)) = serde_json::from_str(raw) {
            return v;
        }
    }
    if let Ok(n) = raw.parse::<i64>() {
        return Value::from(n);
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(raw.to_string()),
    }
}

/// Whether `path` leads to a setting: every settings key has a value in the defaults.
fn names_setting(defaults: &Value, path: &[String]) -> bool {
    let mut cur = defaults;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    !path.is_empty()
}

fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                overlay(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, t) => *b = t,
    }
}

fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().expect("made an object above");
        if i + 1 == path.len() {
            // A string where the default is a string keeps its text, even when it looks numeric.
            let v = match (obj.get(key), &value) {
                (Some(Value::String(_)), Value::Number(n)) => Value::String(n.to_string()),
                _ => value,
            };
            obj.insert(key.clone(), v);
            return;
        }
        cur = obj.entry(key.clone()).or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("fs-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fieldsync.toml");
        std::fs::write(
            &file,
            "bind = \"0.0.0.0:9000\"\npool_size = 3\n[limits]\nmax_ops_per_batch = 200\n",
        )
        .unwrap();
        let env = vec![
            ("FIELDSYNC_POOL_SIZE".to_string(), "5".to_string()),
            (
                "FIELDSYNC_LIMITS__MAX_PAGE_SIZE".to_string(),
                "700".to_string(),
            ),
            ("FIELDSYNC_TEST_PG_URL".to_string(), "ignored".to_string()),
            ("FIELDSYNC_LOG".to_string(), "debug".to_string()),
            (
                "FIELDSYNC_TRUSTED_PROXIES".to_string(),
                r#"["127.0.0.1", "::1"]"#.to_string(),
            ),
        ];
        let s = Settings::load_from(
            Some(&file),
            &env,
            &[("database_url", Value::from("sqlite://x.db"))],
        )
        .unwrap();
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert_eq!(s.pool_size, 5);
        assert_eq!(s.limits.max_ops_per_batch, 200);
        assert_eq!(s.limits.max_page_size, 700);
        assert_eq!(s.database_url, "sqlite://x.db");
        assert_eq!(s.sqlite_synchronous, "FULL");
        assert_eq!(
            s.trusted_proxies,
            vec![
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    /// Every combination of the three layers over the defaults, for a top-level and a nested
    /// key: the highest layer that sets a key wins, whichever layers are below it.
    #[test]
    fn highest_layer_wins_for_every_combination() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fieldsync.toml");
        std::fs::write(&file, "pool_size = 3\n[limits]\nmax_page_size = 600\n").unwrap();
        let env = vec![
            ("FIELDSYNC_POOL_SIZE".to_string(), "5".to_string()),
            (
                "FIELDSYNC_LIMITS__MAX_PAGE_SIZE".to_string(),
                "700".to_string(),
            ),
        ];
        let flags = [
            ("pool_size", Value::from(7)),
            ("limits.max_page_size", Value::from(800)),
        ];
        let defaults = Settings::default();
        for mask in 0..8 {
            let (with_file, with_env, with_flags) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0);
            let s = Settings::load_from(
                with_file.then_some(file.as_path()),
                if with_env { &env } else { &[] },
                if with_flags { &flags } else { &[] },
            )
            .unwrap();
            let (pool, page) = if with_flags {
                (7, 800)
            } else if with_env {
                (5, 700)
            } else if with_file {
                (3, 600)
            } else {
                (defaults.pool_size, defaults.limits.max_page_size)
            };
            let layers = format!("file {with_file}, env {with_env}, flags {with_flags}");
            assert_eq!(s.pool_size, pool, "pool_size with {layers}");
            assert_eq!(
                s.limits.max_page_size, page,
                "limits.max_page_size with {layers}"
            );
            // Keys no layer sets keep their defaults, also beside an overridden nested key.
            assert_eq!(
                s.limits.max_ops_per_batch,
                defaults.limits.max_ops_per_batch
            );
            assert_eq!(s.bind, defaults.bind);
        }
    }

    /// The example settings file in the README loads as it is.
    #[test]
    fn the_readme_example_file_loads() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("an example file") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("its end");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fieldsync.toml");
        std::fs::write(&file, &readme[start..end]).unwrap();
        let s = Settings::load_from(Some(&file), &[], &[]).unwrap();
        assert_eq!(s.shutdown_timeout_secs, 30);
        assert_eq!(s.push_groups, 0);
    }

    #[test]
    fn push_groups_is_read_and_bounded() {
        let env = vec![("FIELDSYNC_PUSH_GROUPS".to_string(), "1".to_string())];
        let s = Settings::load_from(None, &env, &[]).unwrap();
        assert_eq!(s.push_groups, 1);
        assert_eq!(
            Settings::default().push_groups,
            0,
            "one per core by default"
        );
        let env = vec![("FIELDSYNC_PUSH_GROUPS".to_string(), "65".to_string())];
        assert!(Settings::load_from(None, &env, &[]).is_err());
    }

    /// One key per layer pairing in one load: file only, env over file, flag over file (no env),
    /// flag over env (no file), flag over env over file.
    #[test]
    fn flags_beat_env_and_file_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("custom.toml");
        std::fs::write(
            &file,
            "log_format = \"json\"\nbind = \"0.0.0.0:9000\"\nworkers = 3\npool_size = 4\n[auth]\naccess_ttl_secs = 600\n",
        )
        .unwrap();
        let env = vec![
            ("FIELDSYNC_POOL_SIZE".to_string(), "5".to_string()),
            ("FIELDSYNC_WORKERS".to_string(), "6".to_string()),
            (
                "FIELDSYNC_DATABASE_URL".to_string(),
                "sqlite://env.db".to_string(),
            ),
            (
                "FIELDSYNC_AUTH__ACCESS_TTL_SECS".to_string(),
                "1200".to_string(),
            ),
            ("OTHER_POOL_SIZE".to_string(), "99".to_string()),
        ];
        let flags = [
            ("bind", Value::from("127.0.0.1:0")),
            ("workers", Value::from(7)),
            ("database_url", Value::from("sqlite://flag.db")),
        ];
        let s = Settings::load_from(Some(&file), &env, &flags).unwrap();
        assert_eq!(s.log_format, "json", "file over default");
        assert_eq!(s.pool_size, 5, "env over file");
        assert_eq!(s.auth.access_ttl_secs, 1200, "nested env over nested file");
        assert_eq!(s.bind, "127.0.0.1:0", "flag over file");
        assert_eq!(s.database_url, "sqlite://flag.db", "flag over env");
        assert_eq!(s.workers, 7, "flag over env over file");
        assert_eq!(
            s.auth.issuer, "fieldsync",
            "default beside a nested override"
        );
    }

    #[test]
    fn a_named_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            Settings::load_from(Some(&missing), &[], &[]),
            Err(SettingsError::Read(..))
        ));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "pool_size = \n").unwrap();
        assert!(matches!(
            Settings::load_from(Some(&bad), &[], &[]),
            Err(SettingsError::Parse(..))
        ));
        let unknown = dir.path().join("unknown.toml");
        std::fs::write(&unknown, "[limits]\nmax_opz_per_batch = 5\n").unwrap();
        assert!(matches!(
            Settings::load_from(Some(&unknown), &[], &[]),
            Err(SettingsError::Invalid(..))
        ));
        let typed = dir.path().join("typed.toml");
        std::fs::write(&typed, "pool_size = \"many\"\n").unwrap();
        assert!(Settings::load_from(Some(&typed), &[], &[]).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        // Issue 13 item 8: an environment variable that names no setting is ignored and
        // reported (it stopped the binary); the file stays strict (above).
        let env = vec![
            ("FIELDSYNC_NO_SUCH_KEY".to_string(), "1".to_string()),
            (
                "FIELDSYNC_LIMITS__NO_SUCH_LIMIT".to_string(),
                "1".to_string(),
            ),
            ("FIELDSYNC_POOL_SIZE".to_string(), "3".to_string()),
        ];
        let s = Settings::load_from(None, &env, &[]).unwrap();
        assert_eq!(
            s.ignored_env,
            ["FIELDSYNC_LIMITS__NO_SUCH_LIMIT", "FIELDSYNC_NO_SUCH_KEY"]
        );
        assert_eq!(s.pool_size, 3);
        let env = vec![("FIELDSYNC_POOL_SIZE".to_string(), "many".to_string())];
        assert!(Settings::load_from(None, &env, &[]).is_err());
        let env = vec![(
            "FIELDSYNC_LIMITS__MAX_OPS_PER_BATCH".to_string(),
            "0".to_string(),
        )];
        assert!(Settings::load_from(None, &env, &[]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Settings::default();
        s.auth.signing_key_pem = Secret("-----BEGIN PRIVATE KEY-----abc".into());
        assert!(!format!("{s:?}").contains("BEGIN"));
        assert!(!serde_json::to_string(&s).unwrap().contains("BEGIN"));
    }
}
