//! A private PostgreSQL cluster, for the tests that must crash, starve or misconfigure the
//! database server itself (the shared server at FIELDSYNC_TEST_PG_URL must stay up for every
//! other test). `initdb` in a temp dir, run as the `postgres` OS user (through `runuser` when the
//! tests run as root) on a free port of 127.0.0.1, with 1 MB WAL segments so that it fits on a
//! small tmpfs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a cluster cannot be made here, for the SKIPPED line (and a failure under CI).
pub type Unavailable = String;

pub struct Cluster {
    pub data: PathBuf,
    pub port: u16,
    bin: PathBuf,
    log: PathBuf,
    settings: Vec<(String, String)>,
    _root: Option<tempfile::TempDir>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A command run as the `postgres` OS user.
fn as_postgres(program: &Path) -> Result<Command, Unavailable> {
    match whoami().as_str() {
        "postgres" => Ok(Command::new(program)),
        "root" => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            Ok(c)
        }
        other => Err(format!(
            "a private PostgreSQL cluster needs root or the postgres user (running as {other:?})"
        )),
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Makes (initdb) a cluster under `at` (a fresh temp dir when `None`) that starts with the
    /// given extra server settings. Not started yet.
    pub fn create(at: Option<&Path>, settings: &[(&str, &str)]) -> Result<Cluster, Unavailable> {
        let bin = bin_dir().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let (root, root_path) = match at {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let t = tempfile::tempdir().map_err(|e| e.to_string())?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let data = root_path.join("pgdata");
        let log = root_path.join("postgres.log");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        std::fs::write(&log, "").map_err(|e| e.to_string())?;
        // The postgres user must reach the data dir and own it.
        let mut chmod = Command::new("chmod");
        chmod.arg("755").arg(&root_path);
        run(chmod, "chmod")?;
        if whoami() == "root" {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&data).arg(&log);
            run(chown, "chown")?;
        }
        let mut init = as_postgres(&bin.join("initdb"))?;
        init.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["--wal-segsize=1", "--encoding=UTF8", "--locale=C.UTF-8"]);
        run(init, "initdb")?;
        let mut all = vec![
            ("listen_addresses".to_string(), "127.0.0.1".to_string()),
            ("unix_socket_directories".into(), data.display().to_string()),
            ("min_wal_size".into(), "4MB".into()),
            ("max_wal_size".into(), "8MB".into()),
            ("shared_buffers".into(), "16MB".into()),
            ("max_connections".into(), "40".into()),
        ];
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(Cluster {
            data,
            port: free_port(),
            bin,
            log,
            settings: all,
            _root: root,
        })
    }

    fn ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut c = as_postgres(&self.bin.join("pg_ctl"))?;
        c.arg("-D").arg(&self.data).args(args);
        run(c, &format!("pg_ctl {}", args.join(" ")))
    }

    pub fn start(&self) -> Result<(), String> {
        let mut opts = format!("-p {}", self.port);
        for (k, v) in &self.settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        let log = self.log.display().to_string();
        self.ctl(&["-w", "-t", "60", "-l", &log, "-o", &opts, "start"])
    }

    /// Stops the server at once, as a crash or power cut would for its processes: no
    /// checkpoint, the next start replays the WAL.
    pub fn crash(&self) -> Result<(), String> {
        self.ctl(&["-w", "-m", "immediate", "stop"])
    }

    pub fn is_running(&self) -> bool {
        self.ctl(&["status"]).is_ok()
    }

    /// The URL of its maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.crash();
        }
    }
}

/// A cluster, or `None` after printing why not (a panic under CI, where it must run).
pub fn cluster_or_skip(
    test: &str,
    at: Option<&Path>,
    settings: &[(&str, &str)],
) -> Option<Cluster> {
    match Cluster::create(at, settings) {
        Ok(c) => Some(c),
        Err(why) => {
            crate::harness::skip_or_fail(test, &format!("no private PostgreSQL cluster: {why}"));
            None
        }
    }
}
