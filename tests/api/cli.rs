//! The command line through the real binary (`CARGO_BIN_EXE_fieldsync`), each test on a fresh
//! database: `migrate`, `orgunit import`, `user add` / `user passwd`, `device list` / `device
//! revoke`, the README's first command (`serve --demo` in an empty directory, started twice),
//! and the settings layers as the binary reads them. The HTTP checks run against the library's
//! server (`spawn_app`) on the same database, or against the binary's own server.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::db::{Db, DbOptions};
use fieldsync::orgunit::{self, NewOrgUnit};

const V1: &str = "130131102201";

/// What a run of the binary printed, and whether it succeeded.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok {}\nstdout:\n{}\nstderr:\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the fieldsync binary");
    let mut pipe = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("wait for fieldsync");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh store that nothing has migrated yet (a SQLite path in a temp dir, or a new
/// PostgreSQL database), with a working directory for the binary.
struct Store {
    dir: tempfile::TempDir,
    url: String,
    pg: Option<(String, String)>,
}

impl Store {
    fn new(b: Backend) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg) = match b {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("cli.db").display()),
                None,
            ),
            Backend::Postgres => {
                let (url, admin, name) = fresh_pg_database();
                (url, Some((admin, name)))
            }
        };
        Store { dir, url, pg }
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = fieldsync_command(self.dir.path());
        cmd.env("FIELDSYNC_DATABASE_URL", &self.url)
            .env("FIELDSYNC_DATA_DIR", self.dir.path().join("data"))
            .args(args);
        run(cmd, stdin)
    }

    /// A pool on the store that applies no migrations.
    fn db(&self) -> Db {
        Db::connect(&DbOptions {
            url: self.url.clone(),
            pool_size: 2,
            sqlite_synchronous: "FULL".into(),
            connect_timeout: Duration::from_secs(10),
        })
        .expect("connect to the store")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            drop_pg_database(&admin, &name);
        }
    }
}

/// The binary on the store of a running test server (so HTTP sees what the command did).
fn cli_on(app: &TestApp, args: &[&str], stdin: Option<&str>) -> Out {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = fieldsync_command(dir.path());
    cmd.env("FIELDSYNC_DATABASE_URL", &app.database_url)
        .env("FIELDSYNC_DATA_DIR", &app.settings.data_dir)
        .args(args);
    run(cmd, stdin)
}

fn count(db: &Db, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut c = db.conn().expect("connection");
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *c).expect(sql);
    rows[0].n
}

fn migration_dirs(b: Backend) -> usize {
    let dir = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir),
    )
    .expect("migrations folder")
    .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("up.sql").exists()))
    .count()
}

/// The one password a command printed as `password (shown once): ...`.
fn printed_password(out: &Out) -> String {
    let found: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once("(shown once): ").map(|(_, p)| p.trim()))
        .collect();
    assert_eq!(found.len(), 1, "one printed password: {out:?}");
    assert!(found[0].len() >= 12, "a short generated password: {out:?}");
    found[0].to_string()
}

fn login_status(app: &TestApp, username: &str, password: &str) -> u16 {
    app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": password}),
    )
    .status
}

fn seed(app: &TestApp) {
    let u = |c: &str, n: &str, p: Option<&str>| NewOrgUnit {
        code: c.into(),
        name: n.into(),
        parent: p.map(str::to_string),
    };
    orgunit::upsert(
        &mut app.conn(),
        &[
            u("130131", "平山县", None),
            u("130131102", "东回舍镇", Some("130131")),
            u(V1, "东庄村", Some("130131102")),
        ],
    )
    .unwrap();
}

both!(migrate_creates_the_schema, |b| {
    let store = Store::new(b);
    let expected = migration_dirs(b);
    assert!(expected > 0);
    let db = store.db();
    assert_eq!(db.pending_migrations().unwrap(), expected, "fresh store");
    let out = store.cli(&["migrate"], None);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("applied {expected} migrations; current on")),
        "{out:?}"
    );
    assert!(out.stdout.contains("(0 pending)"), "{out:?}");
    assert!(
        !out.stderr.contains("migrations ("),
        "a progress bar on a stderr that is not a terminal: {out:?}"
    );
    // What /ready checks, and the tables themselves.
    assert_eq!(db.pending_migrations().unwrap(), 0);
    for table in ["org_units", "users", "devices", "persons", "sync_state"] {
        count(&db, &format!("SELECT COUNT(*) AS n FROM {table}"));
    }
    let again = store.cli(&["migrate"], None);
    assert!(again.ok, "{again:?}");
    assert!(again.stdout.contains("applied 0 migrations"), "{again:?}");
});

both!(orgunit_import_builds_the_tree_and_names_a_bad_line, |b| {
    let store = Store::new(b);
    let good = store.dir.path().join("units.csv");
    std::fs::write(
        &good,
        "\u{feff}code,name,parent\n\
         130131,平山县,\n\
         130131102,东回舍镇,130131\n\
         130131102201,东庄村,130131102\n\
         130131102202,西沟村,130131102\n\
         130131102201G01,一组,130131102201\n\
         130131103,温塘镇,130131\n\
         130131103201,南岗村,130131103\n",
    )
    .unwrap();
    let out = store.cli(&["orgunit", "import", "units.csv"], None);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("imported 7 org units"), "{out:?}");
    assert!(
        !out.stderr.contains("org units ("),
        "a progress bar: {out:?}"
    );
    let db = store.db();
    let mut c = db.conn().unwrap();
    let sub: Vec<(String, String)> = orgunit::subtree(&mut c, "130131102")
        .unwrap()
        .into_iter()
        .map(|u| (u.code, u.level))
        .collect();
    assert_eq!(
        sub,
        vec![
            ("130131102".to_string(), "township".to_string()),
            ("130131102201".into(), "village".into()),
            ("130131102201G01".into(), "group".into()),
            ("130131102202".into(), "village".into()),
        ]
    );
    assert_eq!(orgunit::subtree(&mut c, "130131").unwrap().len(), 7);
    drop(c);

    // A village under the wrong township, on line 3: the line is named, nothing is stored.
    let bad = store.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "130131104,岗南镇,130131\n130131104201,新村,130131104\n130131104202,错村,130131102\n",
    )
    .unwrap();
    let out = store.cli(&["orgunit", "import", "bad.csv"], None);
    assert!(!out.ok, "a bad line was accepted: {out:?}");
    assert!(
        out.stderr.contains("line 3") && out.stderr.contains("130131104202"),
        "{out:?}"
    );
    // A parent that exists nowhere passes the file's checks and is refused by the store, in
    // the same transaction as the good lines before it.
    std::fs::write(
        &bad,
        "130131104,岗南镇,130131\n130131105201,孤村,130131105\n",
    )
    .unwrap();
    let out = store.cli(&["orgunit", "import", "bad.csv"], None);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains("130131105") && out.stderr.contains("nothing imported"),
        "{out:?}"
    );
    let mut c = db.conn().unwrap();
    assert!(orgunit::get(&mut c, "130131104").unwrap().is_none());
    assert_eq!(orgunit::subtree(&mut c, "130131").unwrap().len(), 7);
    // A file that does not exist.
    let out = store.cli(&["orgunit", "import", "missing.csv"], None);
    assert!(!out.ok && out.stderr.contains("missing.csv"), "{out:?}");
    // Importing again renames and adds nothing twice.
    std::fs::write(&good, "130131102202,西沟新村,130131102\n").unwrap();
    let out = store.cli(&["orgunit", "import", "units.csv"], None);
    assert!(out.ok, "{out:?}");
    assert_eq!(
        orgunit::get(&mut c, "130131102202").unwrap().unwrap().name,
        "西沟新村"
    );
    assert_eq!(orgunit::subtree(&mut c, "130131").unwrap().len(), 7);
});

both!(user_add_prints_a_password_once_and_passwd_changes_it, |b| {
    let app = spawn_app(b);
    seed(&app);
    let out = cli_on(
        &app,
        &["user", "add", "--username", "boss", "--role", "admin"],
        None,
    );
    assert!(out.ok, "{out:?}");
    let pw = printed_password(&out);
    assert_eq!(login_status(&app, "boss", &pw), 200);
    assert_eq!(login_status(&app, "boss", "not-the-password"), 401);

    // Stored as an argon2id hash, never the password itself.
    #[derive(diesel::QueryableByName)]
    struct H {
        #[diesel(sql_type = Text)]
        password_hash: String,
    }
    let rows: Vec<H> = diesel::sql_query("SELECT password_hash FROM users WHERE username = 'boss'")
        .load(&mut *app.conn())
        .unwrap();
    assert!(
        rows[0].password_hash.starts_with("$argon2id$"),
        "{}",
        rows[0].password_hash
    );
    assert!(!rows[0].password_hash.contains(&pw));

    // From stdin: nothing printed, that password works.
    let out = cli_on(
        &app,
        &[
            "user",
            "add",
            "--username",
            "wang",
            "--role",
            "worker",
            "--village",
            V1,
            "--password-stdin",
        ],
        Some("wang-first-pass-1\n"),
    );
    assert!(out.ok, "{out:?}");
    assert!(!out.stdout.contains("shown once"), "{out:?}");
    assert!(!out.stdout.contains("wang-first-pass-1"), "{out:?}");
    assert_eq!(login_status(&app, "wang", "wang-first-pass-1"), 200);

    // A worker's place must be a village or group; a bad role is named.
    let out = cli_on(
        &app,
        &[
            "user",
            "add",
            "--username",
            "li",
            "--role",
            "worker",
            "--village",
            "130131102",
        ],
        None,
    );
    assert!(!out.ok, "a worker assigned to a township: {out:?}");
    assert!(!out.stdout.contains("shown once"), "{out:?}");
    let out = cli_on(
        &app,
        &["user", "add", "--username", "li", "--role", "boss"],
        None,
    );
    assert!(!out.ok && out.stderr.contains("unknown role"), "{out:?}");
    assert_eq!(login_status(&app, "li", "anything-at-all"), 401);

    // A supervisor at its township (the README's example), and not at a village.
    let out = cli_on(
        &app,
        &[
            "user",
            "add",
            "--username",
            "zhen",
            "--role",
            "township_supervisor",
            "--org-unit",
            "130131102",
            "--password-stdin",
        ],
        Some("zhen-pass-123456\n"),
    );
    assert!(out.ok, "{out:?}");
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "zhen", "password": "zhen-pass-123456"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let me = app.get("/api/v1/me", Some(r.body["access_token"].as_str().unwrap()));
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["role"], "township_supervisor", "{:?}", me.body);
    assert_eq!(me.body["scope"], json!(["130131102"]), "{:?}", me.body);
    let out = cli_on(
        &app,
        &[
            "user",
            "add",
            "--username",
            "zhou",
            "--role",
            "township_supervisor",
            "--org-unit",
            V1,
        ],
        None,
    );
    assert!(!out.ok && out.stderr.contains("township"), "{out:?}");

    let out = cli_on(
        &app,
        &["user", "passwd", "wang", "--password-stdin"],
        Some("wang-second-pass-2\n"),
    );
    assert!(out.ok, "{out:?}");
    assert!(!out.stdout.contains("shown once"), "{out:?}");
    assert_eq!(login_status(&app, "wang", "wang-first-pass-1"), 401);
    assert_eq!(login_status(&app, "wang", "wang-second-pass-2"), 200);

    // Generated: printed once, and it replaces the old one.
    let out = cli_on(&app, &["user", "passwd", "wang"], None);
    assert!(out.ok, "{out:?}");
    let generated = printed_password(&out);
    assert_eq!(login_status(&app, "wang", "wang-second-pass-2"), 401);
    assert_eq!(login_status(&app, "wang", &generated), 200);

    // A too-short password from stdin and an unknown user are refused.
    let out = cli_on(
        &app,
        &["user", "passwd", "wang", "--password-stdin"],
        Some("x\n"),
    );
    assert!(!out.ok, "{out:?}");
    assert_eq!(login_status(&app, "wang", &generated), 200);
    let out = cli_on(
        &app,
        &["user", "passwd", "nobody", "--password-stdin"],
        Some("long-enough-pass-3\n"),
    );
    assert!(!out.ok && out.stderr.contains("nobody"), "{out:?}");
});

both!(device_revoke_from_the_cli_refuses_the_phone, |b| {
    let app = spawn_app(b);
    seed(&app);
    let out = cli_on(
        &app,
        &[
            "user",
            "add",
            "--username",
            "zhao",
            "--role",
            "worker",
            "--village",
            V1,
            "--password-stdin",
        ],
        Some("zhao-pass-12345\n"),
    );
    assert!(out.ok, "{out:?}");
    let register = |name: &str| {
        let r = app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "zhao", "password": "zhao-pass-12345"}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        let t = r.body["access_token"].as_str().unwrap().to_string();
        let r = app.post(
            "/api/v1/devices",
            Some(&t),
            &json!({"name": name, "app_version": "1.0"}),
        );
        assert_eq!(r.status, 201, "{:?}", r.body);
        (
            r.body["device_id"].as_str().unwrap().to_string(),
            r.body["access_token"].as_str().unwrap().to_string(),
            r.body["refresh_token"].as_str().unwrap().to_string(),
        )
    };
    let (lost, lost_token, lost_refresh) = register("lost-phone");
    let (kept, kept_token, _) = register("kept-phone");
    assert_eq!(app.get("/api/v1/me", Some(&lost_token)).status, 200);

    let out = cli_on(&app, &["device", "list"], None);
    assert!(out.ok, "{out:?}");
    let line = |out: &Out, id: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed: {out:?}"))
            .to_string()
    };
    for id in [&lost, &kept] {
        let l = line(&out, id);
        assert!(l.contains("active") && l.contains("zhao"), "{l}");
    }
    let out = cli_on(&app, &["device", "list", "--user", "zhao"], None);
    assert!(out.ok, "{out:?}");
    assert!(line(&out, &lost).contains("lost-phone"), "{out:?}");

    let out = cli_on(&app, &["device", "revoke", &lost], None);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains(&format!("device {lost} revoked")),
        "{out:?}"
    );

    let r = app.get("/api/v1/me", Some(&lost_token));
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "device_revoked");
    let r = app.post(
        "/api/v1/sync/pull",
        Some(&lost_token),
        &json!({"cursor": 0}),
    );
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": lost_refresh}),
    );
    assert!(
        r.status == 401 || r.status == 403,
        "refresh of a revoked device: {:?}",
        r.body
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&kept_token)).status,
        200,
        "the other phone"
    );
    let out = cli_on(&app, &["device", "list"], None);
    assert!(line(&out, &lost).contains("revoked"), "{out:?}");
    assert!(line(&out, &kept).contains("active"), "{out:?}");

    let out = cli_on(&app, &["device", "revoke", "no-such-device"], None);
    assert!(!out.ok && out.stderr.contains("no-such-device"), "{out:?}");
});

/// `fieldsync serve` as a child process; its stdout lines up to the listening line are kept.
struct Served {
    child: Child,
    base: String,
    printed: Vec<String>,
}

impl Served {
    fn start(mut cmd: Command, log: &Path) -> Served {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn fieldsync serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("fieldsync listening on ") {
                        let base = addr.trim().to_string();
                        return Served {
                            child,
                            base,
                            printed,
                        };
                    }
                    printed.push(line);
                }
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("server exited ({st}) before listening: {printed:?}");
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("server did not listen within 300 s: {printed:?}");
                    }
                }
            }
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req =
            ureq::request(method, &format!("{}{path}", self.base)).timeout(Duration::from_secs(60));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn login(&self, username: &str, password: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "server exit after SIGTERM: {st}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The README's first command in an empty directory: `fieldsync serve --demo` (on port 0
/// here) creates `fieldsync.db` and `data/`, prints the shared demo password once, is ready,
/// and every demo account logs in; started again on the same files it prints no password,
/// loads nothing twice and keeps the data, the password and the signing key.
#[test]
fn serve_demo_in_an_empty_directory_then_again() {
    let dir = tempfile::tempdir().unwrap();
    let serve = || {
        let mut cmd = fieldsync_command(dir.path());
        cmd.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
        Served::start(cmd, &dir.path().join("server.log"))
    };
    let first = serve();
    assert!(
        dir.path().join("fieldsync.db").is_file(),
        "fieldsync.db in the working directory"
    );
    assert!(
        dir.path().join("data").is_dir(),
        "data/ in the working directory"
    );
    let passwords: Vec<&str> = first
        .printed
        .iter()
        .filter_map(|l| l.strip_prefix("admin password (shown once): "))
        .collect();
    assert_eq!(passwords.len(), 1, "{:?}", first.printed);
    let pw = passwords[0].trim().to_string();
    let (st, body) = first.call("GET", "/ready", None, None);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["database"], "sqlite");

    let store = Db::connect(&DbOptions {
        url: format!("sqlite://{}", dir.path().join("fieldsync.db").display()),
        pool_size: 2,
        sqlite_synchronous: "FULL".into(),
        connect_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let villages = count(
        &store,
        "SELECT COUNT(*) AS n FROM org_units WHERE level = 'village'",
    );
    assert_eq!(villages, 12);
    let persons = count(&store, "SELECT COUNT(*) AS n FROM persons");
    assert!(persons > 2000, "{persons} demo persons");
    #[derive(diesel::QueryableByName)]
    struct U {
        #[diesel(sql_type = Text)]
        username: String,
    }
    let names: Vec<String> = diesel::sql_query("SELECT username FROM users ORDER BY username")
        .load::<U>(&mut *store.conn().unwrap())
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    for expected in ["admin", "county", "township", "w130131100201"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    // One worker per village of the first township, the one `township` supervises.
    let first_township_villages = count(
        &store,
        "SELECT COUNT(*) AS n FROM org_units WHERE level = 'village' AND parent_code = \
         (SELECT MIN(code) FROM org_units WHERE level = 'township')",
    );
    assert!(first_township_villages > 0);
    assert_eq!(
        names.iter().filter(|n| n.starts_with('w')).count() as i64,
        first_township_villages,
        "{names:?}"
    );
    let mut admin_token = String::new();
    for name in &names {
        let (st, body) = first.login(name, &pw);
        assert_eq!(st, 200, "{name}: {body}");
        if name == "admin" {
            admin_token = body["access_token"].as_str().unwrap().to_string();
        }
    }
    assert_eq!(first.login("admin", "wrong-password").0, 401);
    first.stop();

    let second = serve();
    assert!(
        !second.printed.iter().any(|l| l.contains("password")),
        "a second start printed a password: {:?}",
        second.printed
    );
    assert!(
        second.printed.iter().any(|l| l.contains("nothing loaded")),
        "{:?}",
        second.printed
    );
    assert_eq!(second.call("GET", "/ready", None, None).0, 200);
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM persons"), persons);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) AS n FROM org_units WHERE level = 'village'"
        ),
        12
    );
    let (st, body) = second.call("GET", "/api/v1/me", Some(&admin_token), None);
    assert_eq!(
        st, 200,
        "a token of the first run, same signing key: {body}"
    );
    let (st, body) = second.login("admin", &pw);
    assert_eq!(st, 200, "{body}");
    let (st, body) = second.login("w130131100201", &pw);
    assert_eq!(st, 200, "{body}");
    second.stop();
}

/// defaults < ./fieldsync.toml (or --config FILE) < FIELDSYNC_* < --flags, as the binary
/// reads them: each run migrates the database its settings name.
#[test]
fn settings_layers_as_the_binary_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { dir.path().join(name) };
    std::fs::write(p("fieldsync.toml"), "database_url = \"sqlite://file.db\"\n").unwrap();
    std::fs::write(p("other.toml"), "database_url = \"sqlite://other.db\"\n").unwrap();
    let migrate = |env: Option<&str>, args: &[&str]| {
        let mut cmd = fieldsync_command(dir.path());
        cmd.env("FIELDSYNC_DATA_DIR", p("data"));
        if let Some(url) = env {
            cmd.env("FIELDSYNC_DATABASE_URL", url);
        }
        cmd.args(args).arg("migrate");
        let out = run(cmd, None);
        assert!(out.ok, "{out:?}");
    };
    migrate(None, &[]);
    assert!(p("file.db").exists(), "./fieldsync.toml read");
    migrate(None, &["--config", "other.toml"]);
    assert!(p("other.db").exists(), "--config FILE read");
    migrate(Some("sqlite://env.db"), &[]);
    assert!(p("env.db").exists(), "environment over the file");
    migrate(
        Some("sqlite://env2.db"),
        &["--database-url", "sqlite://flag.db"],
    );
    assert!(p("flag.db").exists(), "flag over environment over file");
    assert!(
        !p("env2.db").exists(),
        "the environment's database was opened"
    );
    assert!(!p("fieldsync.db").exists(), "the default was used");

    // A named file that does not exist, and an unknown key in a file, stop the command.
    let mut cmd = fieldsync_command(dir.path());
    cmd.args(["--config", "missing.toml", "migrate"]);
    let out = run(cmd, None);
    assert!(!out.ok && out.stderr.contains("missing.toml"), "{out:?}");
    std::fs::write(p("typo.toml"), "[limits]\nmax_opz_per_batch = 5\n").unwrap();
    let mut cmd = fieldsync_command(dir.path());
    cmd.args(["--config", "typo.toml", "migrate"]);
    let out = run(cmd, None);
    assert!(
        !out.ok && out.stderr.contains("max_opz_per_batch"),
        "{out:?}"
    );
    // An environment variable that names no setting (deployment tools set their own) only
    // warns, by name (issue 13 item 8: it used to stop the command).
    let mut cmd = fieldsync_command(dir.path());
    cmd.env("FIELDSYNC_DATA_DIR", p("data"))
        .env("FIELDSYNC_LIMITS__MAX_OPZ_PER_BATCH", "5")
        .env("FIELDSYNC_DEPLOY_REVISION", "secret-looking-value")
        .arg("migrate");
    let out = run(cmd, None);
    assert!(out.ok, "{out:?}");
    for name in [
        "FIELDSYNC_LIMITS__MAX_OPZ_PER_BATCH",
        "FIELDSYNC_DEPLOY_REVISION",
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains(name)),
            "{name}: {out:?}"
        );
    }
    assert!(!out.stderr.contains("secret-looking-value"), "{out:?}");
}

// Issue 13 item 6: `user passwd` ends the account's sessions. Before, an access token
// obtained with the old password kept working until it expired, and so did its refresh token.
both!(passwd_ends_the_accounts_sessions_at_once, |b| {
    let app = spawn_app(b);
    seed(&app);
    let out = cli_on(
        &app,
        &["user", "add", "--username", "boss", "--role", "admin"],
        None,
    );
    assert!(out.ok, "{out:?}");
    let pw = printed_password(&out);
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "boss", "password": pw}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_string();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/v1/me", Some(&token)).status, 200);

    let out = cli_on(
        &app,
        &["user", "passwd", "boss", "--password-stdin"],
        Some("boss-second-pass-2\n"),
    );
    assert!(out.ok, "{out:?}");
    let r = app.get("/api/v1/me", Some(&token));
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["code"], "session_ended");
    let r = app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": refresh }),
    );
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(login_status(&app, "boss", "boss-second-pass-2"), 200);
});
