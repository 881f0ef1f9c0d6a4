//! Browser tests: the real binary runs `serve --demo` (a temp SQLite file, or a new PostgreSQL
//! database when FIELDSYNC_TEST_PG_URL is set), and a pytest file of this folder drives Debian's
//! Chromium through Playwright for Python against it (`executable_path`, headless; browsers
//! that download themselves cannot work here).
//!
//! Each pytest test arranges its own data, so any one passes alone: set FIELDSYNC_BROWSER_TESTS
//! to a pytest `-k` expression to run only those.
//!
//! Needs `/usr/bin/chromium` (Debian `chromium`) and `python3 -m pip install playwright pytest
//! openpyxl`. Without them the tests say they skipped; under `CI=true` they fail instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::{drop_pg_database, fieldsync_command, fresh_pg_database_named, skip_or_fail, Backend};

/// The Chromium the tests drive: FIELDSYNC_TEST_CHROMIUM or Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("FIELDSYNC_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run browser tests here, if anything.
fn missing_tools() -> Option<String> {
    if !chromium().exists() {
        return Some(format!(
            "{} not found (apt-get install chromium)",
            chromium().display()
        ));
    }
    let py = Command::new("python3")
        .args(["-c", "import playwright, pytest"])
        .output();
    match py {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "python3 with playwright and pytest not found (pip install playwright pytest openpyxl)"
                .into(),
        ),
    }
}

/// `true` when the test may run; panics under CI when it cannot.
fn tools_or_skip(name: &str) -> bool {
    match missing_tools() {
        None => true,
        Some(why) => {
            skip_or_fail(&format!("browser test {name}"), &why);
            false
        }
    }
}

/// A running `fieldsync serve --demo` and what the tests need to know of it.
pub struct DemoServer {
    child: Child,
    pub base: String,
    pub password: String,
    pub database_url: String,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((admin, name)) = &self.pg {
            drop_pg_database(admin, name);
        }
    }
}

/// Starts the real binary with `serve --demo` on a free port and waits until it listens.
pub fn start_demo(backend: Backend) -> DemoServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("fieldsync.db").display()),
            None,
        ),
        Backend::Postgres => {
            let (url, admin, name) = fresh_pg_database_named("fs_browser");
            (url, Some((admin, name)))
        }
    };
    let mut child = fieldsync_command(dir.path())
        .args([
            "--database-url",
            &url,
            "serve",
            "--demo",
            "--bind",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fieldsync");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut base, mut password) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while base.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("serve --demo printed its address in time");
        if let Some(pw) = line.strip_prefix("admin password (shown once): ") {
            password = Some(pw.trim().to_string());
        }
        if let Some(addr) = line.strip_prefix("fieldsync listening on ") {
            base = Some(addr.trim().to_string());
        }
    }
    DemoServer {
        child,
        base: base.unwrap(),
        password: password.expect("serve --demo printed the demo password"),
        database_url: url,
        _dir: dir,
        pg,
    }
}

/// Runs one pytest file of tests/browser against a fresh demo server.
pub fn run_pytest(file: &str, backend: Backend) {
    if !tools_or_skip(file) {
        return;
    }
    let server = start_demo(backend);
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut pytest = Command::new("python3");
    pytest.args(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]);
    // One test (or a few) alone: FIELDSYNC_BROWSER_TESTS is pytest's `-k` expression, e.g.
    // FIELDSYNC_BROWSER_TESTS=test_return_a_submission cargo test --test browser console::sqlite
    if let Some(k) = std::env::var_os("FIELDSYNC_BROWSER_TESTS").filter(|k| !k.is_empty()) {
        pytest.arg("-k").arg(k);
    }
    let status = pytest
        .arg(here.join(file))
        .current_dir(&here)
        .env("FIELDSYNC_BASE_URL", &server.base)
        .env("FIELDSYNC_DEMO_PASSWORD", &server.password)
        .env("FIELDSYNC_BACKEND", format!("{backend:?}").to_lowercase())
        .env("FIELDSYNC_TEST_CHROMIUM", chromium())
        .status()
        .expect("run python3 -m pytest");
    assert!(status.success(), "{file} failed on {backend:?}");
}

/// `browser!(name, "file.py")` runs a pytest file on SQLite, and on PostgreSQL when
/// FIELDSYNC_TEST_PG_URL is set (ignored with the reason otherwise).
macro_rules! browser {
    ($name:ident, $file:literal) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::run_pytest($file, super::Backend::Sqlite);
            }

            #[test]
            #[cfg_attr(
                not(pg_tests),
                ignore = "PostgreSQL tests skipped: set FIELDSYNC_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
            )]
            fn postgres() {
                super::run_pytest($file, super::Backend::Postgres);
            }
        }
    };
}

browser!(smoke, "test_smoke.py");
browser!(field, "test_field.py");
browser!(console, "test_console.py");

/// The JavaScript client's and the field app's unit tests (`node --test`, no browser): the op
/// log, batches, answers and pull pages against an in-memory server, and the phone's checks.
#[test]
fn client_unit_tests_in_node() {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        skip_or_fail(
            "client unit tests",
            "node not found (apt-get install nodejs)",
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("node")
        .args(["--test", "web/client/test/", "web/field/test/"])
        .current_dir(root)
        .status()
        .expect("run node --test");
    assert!(
        status.success(),
        "node --test web/client/test/ web/field/test/ failed"
    );
}
