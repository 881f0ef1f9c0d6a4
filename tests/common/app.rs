//! The app spawner: `spawn_app` starts the real server on port 0 against a fresh database
//! (a temp SQLite file, or a new PostgreSQL database when FIELDSYNC_TEST_PG_URL is set) and
//! returns a small HTTP client that records every answer and checks it against
//! api-spec/openapi.json when dropped. Each test gets its own database.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use fieldsync::db::Db;
use fieldsync::settings::Settings;

use super::spec_check::{self, Answer};
use super::{drop_pg_database, fresh_pg_database, Backend};

pub struct TestApp {
    pub base: String,
    pub db: Db,
    pub backend: Backend,
    pub database_url: String,
    pub settings: Settings,
    agent: ureq::Agent,
    server: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<(String, String)>,
    /// Every answer this client got, checked against api-spec/openapi.json on drop.
    answers: std::sync::Mutex<Vec<Answer>>,
}

/// An answer: its status, its body as JSON (a JSON string of the text when it is not JSON), the
/// text itself and the headers. The fault harness's client answers the same type.
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    /// The headers of a ureq answer, as `Resp::headers` holds them.
    pub fn headers_of(resp: &ureq::Response) -> Vec<(String, String)> {
        resp.headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or("").to_string();
                (n, v)
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        database_url: database_url.to_string(),
        workers: 2,
        pool_size: 6,
        data_dir: std::env::temp_dir().join(format!("fs-data-{}", uuid::Uuid::new_v4().simple())),
        ..Settings::default()
    }
}

pub fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {})
}

pub fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (url, dir, pg_db) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let (url, admin, name) = fresh_pg_database();
            (url, None, Some((admin, name)))
        }
    };
    let mut settings = test_settings(&url);
    tweak(&mut settings);
    serve(backend, url, settings, dir, pg_db)
}

/// A server on `settings`' database, torn down (and its PostgreSQL database `pg_db` dropped)
/// with the returned app.
fn serve(
    backend: Backend,
    url: String,
    settings: Settings,
    dir: Option<tempfile::TempDir>,
    pg_db: Option<(String, String)>,
) -> TestApp {
    let db = fieldsync::open_database(&settings).expect("open test database");
    let (tx, rx) = mpsc::channel();
    let server_settings = settings.clone();
    let server_db = db.clone();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = fieldsync::Application::build(server_settings, server_db).expect("build app");
            let addr = app.addr();
            let server = app.server();
            tx.send((addr, server.handle())).unwrap();
            let _ = server.await;
        });
    });
    let (addr, handle) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    TestApp {
        base: format!("http://{addr}"),
        db,
        backend,
        database_url: url,
        settings,
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build(),
        server: Some(handle),
        thread: Some(thread),
        _dir: dir,
        pg_db,
        answers: Default::default(),
    }
}

impl TestApp {
    /// A second server on the same database, with its own connection pool and push queue: a
    /// second process of a PostgreSQL deployment.
    pub fn peer(&self) -> TestApp {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "one process owns a SQLite file"
        );
        serve(
            self.backend,
            self.database_url.clone(),
            self.settings.clone(),
            None,
            None,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Records an answer for the spec check.
    fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        ct: Option<String>,
        body: Option<Value>,
    ) {
        let path = path.split('?').next().unwrap_or(path).to_string();
        self.answers.lock().unwrap().push(Answer {
            method: method.to_string(),
            path,
            status,
            content_type: ct,
            body,
        });
    }

    /// What the answers recorded so far break of api-spec/openapi.json.
    pub fn spec_violations(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .flat_map(spec_check::violations)
            .collect()
    }

    /// The answers recorded so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    fn finish(&self, method: &str, path: &str, r: Result<ureq::Response, ureq::Error>) -> Resp {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = resp.status();
        let ct = resp.header("content-type").map(str::to_string);
        let headers = Resp::headers_of(&resp);
        let text = resp.into_string().unwrap_or_default();
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let is_json = ct.as_deref().is_some_and(|c| c.contains("json"));
        self.record(method, path, status, ct, json.clone().filter(|_| is_json));
        let body = json.unwrap_or_else(|| Value::String(text.clone()));
        Resp {
            status,
            body,
            text,
            headers,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.agent.get(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        self.finish("GET", path, req.call())
    }

    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        self.finish(method, path, req.send_json(body.clone()))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.send("POST", path, token, body)
    }

    /// GET a file (an export): status, content type and the body's bytes.
    pub fn get_bytes(&self, path: &str, token: &str) -> (u16, Option<String>, Vec<u8>) {
        let r = self
            .agent
            .get(&self.url(path))
            .set("Authorization", &format!("Bearer {token}"))
            .call();
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = resp.status();
        let ct = resp.header("content-type").map(str::to_string);
        self.record("GET", path, status, ct.clone(), None);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut out).unwrap();
        (status, ct, out)
    }

    /// A raw request with any headers and body bytes.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = self.agent.request(method, &self.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        self.finish(method, path, req.send_bytes(body))
    }

    /// A direct connection to the test database, for checks against the store itself.
    pub fn conn(&self) -> fieldsync::db::PooledConn {
        self.db.conn().expect("db connection")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Every answer of the test against the spec (not when the test already failed).
        if !std::thread::panicking() {
            let v = self.spec_violations();
            if !v.is_empty() {
                self.stop();
                panic!(
                    "{} answers differ from api-spec/openapi.json:\n{}",
                    v.len(),
                    v.join("\n")
                );
            }
        }
        self.stop();
    }
}

impl TestApp {
    fn stop(&mut self) {
        if let Some(h) = self.server.take() {
            futures_executor_block_on(h.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((admin, name)) = self.pg_db.take() {
            drop_pg_database(&admin, &name);
        }
        // The generated signing key lives in the data dir.
        let _ = std::fs::remove_dir_all(&self.settings.data_dir);
    }
}

fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_web::rt::System::new().block_on(f)
}

/// The real binary, run in `cwd`, with no `FIELDSYNC_*` variable inherited from the test's
/// environment (CI sets some for the test harness; the binary would take them as settings).
pub fn fieldsync_command(cwd: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fieldsync"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("FIELDSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The password of every account the tests create.
pub const PW: &str = "correct-horse-42";

/// One hash of `PW` for every seeded account (hashing is slow on purpose).
pub fn pw_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| fieldsync::auth::passwords::hash_blocking(PW).unwrap())
}

/// Creates a supervisor account at `org` and logs in; returns the access token.
pub fn supervisor(
    app: &TestApp,
    username: &str,
    role: fieldsync::auth::roles::Role,
    org: &str,
) -> String {
    fieldsync::auth::users::create(
        &mut app.conn(),
        &fieldsync::auth::users::NewUser {
            username: username.into(),
            display_name: username.into(),
            role,
            org_unit: Some(org.into()),
            villages: vec![],
        },
        pw_hash(),
    )
    .unwrap();
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &serde_json::json!({"username": username, "password": PW}),
    );
    assert_eq!(r.status, 200, "login {username}: {:?}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

/// The rows of a CSV export, which must start with a UTF-8 BOM (for Excel and WPS).
pub fn csv_rows(data: &[u8]) -> Vec<Vec<String>> {
    let body = data
        .strip_prefix(b"\xEF\xBB\xBF")
        .expect("a CSV export starts with a BOM");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// The rows of the XLSX file's sheet `sheet`, or of every sheet in turn when `None`.
pub fn xlsx_rows(data: Vec<u8>, sheet: Option<&str>) -> Vec<Vec<String>> {
    use calamine::{Reader, Xlsx};
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(data)).unwrap();
    let sheets = match sheet {
        Some(s) => vec![s.to_string()],
        None => wb.sheet_names(),
    };
    let mut rows = Vec::new();
    for name in sheets {
        let range = wb.worksheet_range(&name).unwrap();
        rows.extend(
            range
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect()),
        );
    }
    rows
}
