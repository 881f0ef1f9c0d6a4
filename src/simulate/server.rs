//! The server in-process for `simulate --spawn` and the load harness: a temp SQLite file (or the
//! given database), the demo county, and worker accounts for the simulated devices.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::auth::roles::Role;
use crate::auth::{passwords, users};
use crate::db::Db;
use crate::orgunit::{self, Level};
use crate::settings::Settings;

/// A running server; stops it and removes its temp files when dropped.
pub struct Spawned {
    pub base: String,
    pub db: Db,
    pub settings: Settings,
    handle: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    temp: Option<PathBuf>,
}

/// A private temp directory under the system's temp dir.
pub fn temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Settings for an in-process server on 127.0.0.1:0 against `database_url` (a temp SQLite file
/// when None).
pub fn settings_for(database_url: Option<&str>) -> anyhow::Result<(Settings, PathBuf)> {
    let dir = temp_dir("fieldsync-sim")?;
    let url = match database_url {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}", dir.join("sim.db").display()),
    };
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: url,
        data_dir: dir.join("data"),
        ..Settings::default()
    };
    Ok((settings, dir))
}

impl Spawned {
    /// Opens the database (migrating it) and starts the server.
    pub fn start(settings: Settings, temp: Option<PathBuf>) -> anyhow::Result<Spawned> {
        let db = crate::open_database(&settings).map_err(|e| anyhow!("open database: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let (server_settings, server_db) = (settings.clone(), db.clone());
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match crate::Application::build(server_settings, server_db) {
                    Ok(app) => {
                        let addr = app.addr();
                        let server = app.server();
                        let _ = tx.send(Ok((addr, server.handle())));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, handle) = rx
            .recv_timeout(Duration::from_secs(60))
            .context("server did not start")?
            .context("bind the server")?;
        Ok(Spawned {
            base: format!("http://{addr}"),
            db,
            settings,
            handle: Some(handle),
            thread: Some(thread),
            temp,
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            actix_web::rt::System::new().block_on(h.stop(true));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(dir) = self.temp.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The villages of the demo county, in code order.
pub fn demo_villages(db: &Db) -> anyhow::Result<Vec<String>> {
    db.read(|c| orgunit::subtree_at(c, crate::demo::COUNTY_CODE, Level::Village))
        .map_err(|e| anyhow!("list villages: {e}"))
}

/// Creates one worker account per entry of `villages` (`{prefix}{i}`), all sharing one fresh
/// password, which is returned.
pub fn create_workers(db: &Db, prefix: &str, villages: &[String]) -> anyhow::Result<String> {
    let password = passwords::generate(16);
    let hash = passwords::hash_blocking(&password).map_err(|e| anyhow!("hash: {e}"))?;
    db.write(|c| {
        for (i, v) in villages.iter().enumerate() {
            users::create(
                c,
                &users::NewUser {
                    username: format!("{prefix}{i}"),
                    display_name: format!("村计生专干 {i}"),
                    role: Role::Worker,
                    org_unit: None,
                    villages: vec![v.clone()],
                },
                &hash,
            )?;
        }
        Ok(())
    })
    .map_err(|e| anyhow!("create worker accounts: {e}"))?;
    Ok(password)
}
