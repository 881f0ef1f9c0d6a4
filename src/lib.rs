//! fieldsync: the server that village field workers' phones sync to, and that township and
//! county supervisors read merged ledgers, conflicts and reports from.
//!
//! Layout: `db` (connections, migrations), `domain` (record types, rules), `sync` (protocol,
//! pure merge engine, push and pull services), `auth` (accounts, tokens, scope), `api` (thin
//! handlers), `demo` (the demo county), `settings`, `error`, `telemetry`, `openapi`.

pub mod api;
pub mod auth;
pub mod backup;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod orgunit;
pub mod progress;
pub mod report;
pub mod settings;
pub mod simulate;
pub mod supervise;
pub mod sync;
pub mod telemetry;
pub mod webapp;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::db::{Db, DbOptions};
use crate::settings::Settings;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Signing keys, the password hasher and the login throttle.
    pub auth: Arc<auth::AuthState>,
    /// Bounds the pushes processed at once, so a retry storm waits briefly or gets 503.
    pub push_gate: Arc<tokio::sync::Semaphore>,
}

/// Opens the database named by the settings and checks durability; no migrations.
pub fn connect_database(settings: &Settings) -> Result<Db, db::DbError> {
    Db::connect(&DbOptions {
        url: settings.database_url.clone(),
        pool_size: settings.pool_size,
        sqlite_synchronous: settings.sqlite_synchronous.clone(),
        connect_timeout: Duration::from_secs(5),
    })
    .map(|db| db.with_push_groups(settings.push_groups))
}

/// Opens the database named by the settings, checks durability and applies migrations.
pub fn open_database(settings: &Settings) -> Result<Db, db::DbError> {
    let db = connect_database(settings)?;
    let applied = db.run_migrations()?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    // PostgreSQL restored into another cluster: number the next changes above the store's.
    let mut conn = db
        .conn()
        .map_err(|e| db::DbError::Migration(e.to_string()))?;
    sync::sequence::rebase_if_behind(&mut conn)
        .map_err(|e| db::DbError::Migration(format!("change numbers: {e}")))?;
    drop(conn);
    Ok(db)
}

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    auth: Arc<auth::AuthState>,
}

impl Application {
    pub fn build(settings: Settings, db: Db) -> std::io::Result<Application> {
        let listener = TcpListener::bind(&settings.bind)?;
        let addr = listener.local_addr()?;
        let settings = Arc::new(settings);
        let auth = Arc::new(auth::AuthState::new(&settings)?);
        let state = web::Data::new(AppState {
            db,
            settings: settings.clone(),
            auth: auth.clone(),
            push_gate: Arc::new(tokio::sync::Semaphore::new(
                settings.limits.max_inflight_pushes.max(1),
            )),
        });
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.workers
        };
        let body_limit = settings.limits.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(api::json_config(body_limit))
                .app_data(api::query_config())
                .app_data(api::path_config())
                .wrap(from_fn(api::limit_json_depth))
                .wrap(from_fn(api::refuse_nul))
                .wrap(from_fn(telemetry::request_id))
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        })
        .workers(workers)
        // Slow or stalled clients must not hold a worker: bounded header and body waits.
        .client_request_timeout(Duration::from_secs(30))
        .client_disconnect_timeout(Duration::from_secs(5))
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .listen(listener)?
        .run();
        Ok(Application { server, addr, auth })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's authentication state (keys, password hasher, login throttle), shared with
    /// its workers: tests read the hasher's counters from it.
    pub fn auth(&self) -> Arc<auth::AuthState> {
        self.auth.clone()
    }

    pub fn server(self) -> Server {
        self.server
    }
}
