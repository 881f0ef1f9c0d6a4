//! The fault harness: runs the real `fieldsync` binary as a child process on a temp SQLite
//! file or a fresh PostgreSQL database, so that it can be killed with SIGKILL, stopped with
//! SIGTERM and restarted on the same store; plus a small HTTP client and direct store access
//! for the invariant checks.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::{json, Value};

use fieldsync::auth::roles::Role;
use fieldsync::auth::users::{self, NewUser};
use fieldsync::db::{Db, DbOptions};
use fieldsync::orgunit::{self, NewOrgUnit};
use fieldsync::settings::Settings;

pub use crate::common::{
    new_id, pg_admin_url, pg_exec_at, pg_url_for, skip_or_fail, Backend, Resp,
};

pub const V1: &str = "130131102201";
pub const V2: &str = "130131102202";
pub const PASSWORD: &str = "correct-horse-battery";

/// The server binary Cargo built for this test target.
pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fieldsync"))
}

pub fn pg_admin_exec(sql: &str) -> Result<(), String> {
    pg_exec_at(&pg_admin_url().expect("FIELDSYNC_TEST_PG_URL"), sql)
}

fn password_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| fieldsync::auth::passwords::hash_blocking(PASSWORD).unwrap())
}

/// One store (a SQLite file or a PostgreSQL database), its data dir (the token signing key
/// lives there, so tokens survive restarts) and the environment the server runs with.
pub struct Env {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub data_dir: PathBuf,
    pub bin: PathBuf,
    pub extra_env: Vec<(String, String)>,
    pub log_path: PathBuf,
    pg_name: Option<String>,
    /// The maintenance URL of the PostgreSQL server holding the test database.
    pg_admin: Option<String>,
}

impl Env {
    pub fn new(backend: Backend) -> Env {
        Self::new_at(backend, None)
    }

    /// `sqlite_path`: where the SQLite file lives (default: in the temp dir).
    pub fn new_at(backend: Backend, sqlite_path: Option<&Path>) -> Env {
        let env = Self::empty_at(backend, sqlite_path);
        env.seed();
        env
    }

    /// A store that does not exist yet (SQLite) or an empty database (PostgreSQL).
    pub fn empty(backend: Backend) -> Env {
        Self::empty_at(backend, None)
    }

    /// A fresh database on another PostgreSQL server (a private cluster), seeded or not.
    pub fn on_postgres(admin: &str, seeded: bool) -> Env {
        let env = Self::empty_with(Backend::Postgres, None, Some(admin.to_string()));
        if seeded {
            env.seed();
        }
        env
    }

    fn empty_at(backend: Backend, sqlite_path: Option<&Path>) -> Env {
        let admin = (backend == Backend::Postgres)
            .then(|| pg_admin_url().expect("FIELDSYNC_TEST_PG_URL is set"));
        Self::empty_with(backend, sqlite_path, admin)
    }

    fn empty_with(backend: Backend, sqlite_path: Option<&Path>, pg_admin: Option<String>) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_name) = match (backend, &pg_admin) {
            (Backend::Sqlite, _) | (Backend::Postgres, None) => {
                let p = sqlite_path
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.path().join("fieldsync.db"));
                (format!("sqlite://{}", p.display()), None)
            }
            (Backend::Postgres, Some(admin)) => {
                let name = format!("fs_faults_{}", uuid::Uuid::new_v4().simple());
                pg_exec_at(admin, &format!("CREATE DATABASE {name}")).expect("create database");
                (pg_url_for(admin, &name), Some(name))
            }
        };
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        Env {
            backend,
            url,
            data_dir,
            bin: server_bin(),
            extra_env: Vec::new(),
            log_path,
            pg_name,
            pg_admin,
            dir,
        }
    }

    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    fn settings(&self) -> Settings {
        Settings {
            database_url: self.url.clone(),
            data_dir: self.data_dir.clone(),
            pool_size: 2,
            ..Settings::default()
        }
    }

    /// Migrates the store and loads the org units every test uses.
    fn seed(&self) {
        let db = fieldsync::open_database(&self.settings()).expect("open store");
        let u = |c: &str, n: &str, p: Option<&str>| NewOrgUnit {
            code: c.into(),
            name: n.into(),
            parent: p.map(str::to_string),
        };
        db.write(|c| {
            orgunit::upsert(
                c,
                &[
                    u("130131", "平山县", None),
                    u("130131102", "东回舍镇", Some("130131")),
                    u(V1, "东庄村", Some("130131102")),
                    u(V2, "西沟村", Some("130131102")),
                ],
            )
        })
        .expect("seed org units");
    }

    /// Creates a worker through the library, before or while the server runs.
    pub fn add_worker(&self, username: &str, villages: &[&str]) {
        self.add_user(username, Role::Worker, None, villages);
    }

    pub fn add_user(&self, username: &str, role: Role, org_unit: Option<&str>, villages: &[&str]) {
        let db = self.db();
        let new = NewUser {
            username: username.into(),
            display_name: username.into(),
            role,
            org_unit: org_unit.map(str::to_string),
            villages: villages.iter().map(|v| v.to_string()).collect(),
        };
        db.write(|c| users::create(c, &new, password_hash()))
            .expect("create worker");
    }

    /// A small pool on the store, for checks. Drop it before killing database backends.
    pub fn db(&self) -> Db {
        Db::connect(&DbOptions {
            url: self.url.clone(),
            pool_size: 2,
            sqlite_synchronous: "FULL".into(),
            connect_timeout: Duration::from_secs(10),
        })
        .expect("connect to the store")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("FIELDSYNC_") && k != "FIELDSYNC_TEST_PG_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.env("FIELDSYNC_DATABASE_URL", &self.url)
            .env("FIELDSYNC_DATA_DIR", &self.data_dir)
            .env("FIELDSYNC_WORKERS", "2")
            .env("FIELDSYNC_POOL_SIZE", "6")
            .env("FIELDSYNC_AUTH__ACCESS_TTL_SECS", "3600");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `fieldsync serve` on a free port and waits until it listens.
    pub fn start(&self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(&self) -> Result<Server, String> {
        let offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("server log");
        let mut child = self
            .command()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("fieldsync listening on http://") {
                    let _ = tx.send(a.trim().parse::<SocketAddr>().ok());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(addr)) => return Ok(Server::new(child, addr)),
                Ok(None) => return Err("unparsable listening line".into()),
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        let log = self.log();
                        return Err(format!(
                            "server exited ({st}) before listening; its log:\n{}",
                            log.get(offset..).unwrap_or(&log)
                        ));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err("server did not start within 60 s".into());
                    }
                }
            }
        }
    }

    /// Runs `fieldsync serve` and checks that it exits non-zero without listening and names
    /// `reason` (the unsafe setting) in what it prints.
    pub fn assert_refuses_to_start(&self, reason: &str) {
        let out = self
            .command()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .output()
            .expect("run the binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "started anyway: {text}");
        assert!(
            text.contains(reason) && !text.contains("listening"),
            "no reason given: {text}"
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let l = self.log();
        let start = l.len().saturating_sub(2000);
        let start = (start..l.len())
            .find(|i| l.is_char_boundary(*i))
            .unwrap_or(0);
        l[start..].to_string()
    }

    /// Waits until no other session is connected to this test database (PostgreSQL), so a
    /// check reads the store at rest after a kill: the killed server's backends finish (commit or
    /// roll back) the statement they were running, then notice the closed socket.
    pub fn wait_quiet(&self) {
        let (Some(name), Some(admin)) = (&self.pg_name, &self.pg_admin) else {
            return;
        };
        let mut c = diesel::PgConnection::establish(admin).expect("admin connection");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = count(
                &mut c,
                &format!(
                    "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ),
            );
            if n == 0 || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let (Some(name), Some(admin)) = (self.pg_name.take(), &self.pg_admin) {
            let _ = pg_exec_at(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `SELECT ... AS n` with one BigInt row, on PostgreSQL.
pub fn count(c: &mut diesel::PgConnection, sql: &str) -> i64 {
    let rows: Vec<N> = diesel::sql_query(sql).load(c).expect(sql);
    rows[0].n
}

/// `SELECT ... AS n` with one BigInt row, on the store.
pub fn db_count(c: &mut fieldsync::db::DbConn, sql: &str) -> i64 {
    let rows: Vec<N> = diesel::sql_query(sql).load(c).expect(sql);
    rows[0].n
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base: String,
    agent: ureq::Agent,
}

/// A field device as the harness drives it.
#[derive(Clone, Debug)]
pub struct Device {
    pub token: String,
    pub device_id: String,
}

impl Server {
    fn new(child: Child, addr: SocketAddr) -> Server {
        Server {
            child: Some(child),
            addr,
            base: format!("http://{addr}"),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    /// A client of this server that connects through `addr` (a fault proxy in front of it);
    /// it owns no process.
    pub fn through(&self, addr: SocketAddr) -> Server {
        Server {
            child: None,
            addr,
            base: format!("http://{addr}"),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal by name (e.g. "TERM") with the system `kill`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(r: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers = Resp::headers_of(&resp);
        let text = resp.into_string().map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            text,
            headers,
        })
    }

    /// A JSON POST; `Err` is a transport failure (refused, reset, timed out).
    pub fn try_post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Resp, String> {
        let mut req = self.agent.post(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        Self::finish(req.send_json(body.clone()))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.try_post(path, token, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn try_get(&self, path: &str, token: Option<&str>) -> Result<Resp, String> {
        let mut req = self.agent.get(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        Self::finish(req.call())
    }

    /// Any method, headers and body bytes.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, String> {
        let mut req = self.agent.request(method, &self.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        Self::finish(req.send_bytes(body))
    }

    /// Logs in as `username`; the access token.
    pub fn login(&self, username: &str) -> String {
        let r = self.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": username, "password": PASSWORD}),
        );
        assert_eq!(r.status, 200, "login: {}", r.text);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    /// Logs in as `username` and registers a new device.
    pub fn register_device(&self, username: &str) -> Device {
        self.register_devices(username, 1).remove(0)
    }

    /// Logs in once as `username` and registers `n` devices.
    pub fn register_devices(&self, username: &str, n: usize) -> Vec<Device> {
        let r = self.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": username, "password": PASSWORD}),
        );
        assert_eq!(r.status, 200, "login: {}", r.text);
        let t = r.body["access_token"].as_str().unwrap().to_string();
        (0..n)
            .map(|_| {
                let r = self.post(
                    "/api/v1/devices",
                    Some(&t),
                    &json!({"name": "phone", "app_version": "1.0"}),
                );
                assert_eq!(r.status, 201, "register device: {}", r.text);
                Device {
                    token: r.body["access_token"].as_str().unwrap().to_string(),
                    device_id: r.body["device_id"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }

    pub fn push(&self, dev: &Device, ops: &[Value]) -> Result<Resp, String> {
        self.try_post(
            "/api/v1/sync/push",
            Some(&dev.token),
            &json!({ "ops": ops }),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A person create as a device sends it.
pub fn create_op(seq: i64, id: &str, name: &str) -> Value {
    json!({"seq": seq, "op_id": uuid::Uuid::now_v7().to_string(), "entity": "person", "id": id,
           "kind": "create", "recorded_at": "2026-11-20T08:00:00Z",
           "set": {"org_unit": V1, "name": name, "sex": "female", "birth_date": "1990-02-03",
                   "marital_status": "first_marriage", "residence": "resident"}})
}

/// A tmpfs of `size` (e.g. `6m`) mounted on a fresh temp dir, unmounted when dropped; `None`
/// when it cannot be mounted (needs root): SKIPPED for `test`, a failure under CI.
pub fn mount_tmpfs(test: &str, size: &str) -> Option<Tmpfs> {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir.path())
        .output();
    match &mounted {
        Ok(o) if o.status.success() => Some(Tmpfs { dir }),
        other => {
            skip_or_fail(
                test,
                &format!("cannot mount a tmpfs (needs root): {other:?}"),
            );
            None
        }
    }
}

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
