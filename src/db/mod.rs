//! The database layer: one connection type over SQLite and PostgreSQL, a pool, embedded
//! migrations, and the durability checks the server runs before it accepts any data.

pub mod records;
pub mod schema;
pub mod stmt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::sql_types::Text;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::AppError;

/// Attempts of [`Db::write_retrying`].
pub const CONTENDED_TRIES: u32 = 5;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Milliseconds a SQLite connection waits for a lock held by another process (the CLI beside
/// the server, a backup) before it reports the database as busy.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// How much of a SQLite database file the two connections of a split read ([`Db::read_split`])
/// map into memory while it runs. Read through `pread`, every page a statement touches is
/// copied into the connection's own 2 MB cache, and two report statements at once then ran no
/// faster than one after the other; mapped, the load bench's county report took 260 ms instead
/// of 415 (bench/analysis.md). Mapped only for the read (kept mapped on every pooled connection
/// it was 10% faster still, but each connection's mapping of the file then counted in the
/// server's RSS). The WAL is read as before, so the connections see exactly what they would.
const SQLITE_READ_MMAP_BYTES: u64 = 1 << 30;

/// Longest a split read ([`Db::read_split`]) waits for its second connection.
const SECOND_WAIT: Duration = Duration::from_millis(50);

/// How often the background checkpointer copies SQLite's WAL back into the database file.
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages after which a committing connection checkpoints by itself: a backstop for when the
/// background checkpointer falls behind (SQLite's default is 1,000 pages, done by whichever
/// writer crosses it, inside the single-writer lock).
const SQLITE_WAL_BACKSTOP_PAGES: u32 = 20_000;

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend is chosen from the URL scheme here rather than by trying each driver in
    /// turn, so that a PostgreSQL server that is down reports its real error.
    pub fn from_url(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite://") || url.starts_with("file:") || !url.contains("://") {
            Ok(Backend::Sqlite)
        } else {
            Err(DbError::Config(format!(
                "unsupported database URL scheme (use sqlite://PATH or postgres://...): {}",
                redact_url(url)
            )))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database configuration: {0}")]
    Config(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("unsafe durability settings: {0}")]
    UnsafeDurability(String),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
}

/// Hides a password in a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

/// The r2d2 manager: establishes the right connection for the URL and applies SQLite's
/// pragmas to every connection, since they are per connection.
#[derive(Clone)]
pub struct Manager {
    url: String,
    backend: Backend,
    sqlite_synchronous: String,
    /// Set by the pool's error handler at the first failed connection of an outage.
    outage: Arc<AtomicBool>,
}

/// How long a request waits for a connection while the database is known to be away: it
/// answers 503 at once instead of holding its worker for the pool's whole timeout.
const OUTAGE_WAIT: Duration = Duration::from_millis(300);

/// Free bytes under which a SQLite store whose writes failed for lack of space is still full.
const STORAGE_ROOM: u64 = 1024 * 1024;

/// `/ready` waits at most this for a connection, so a probe never hangs.
const READY_WAIT: Duration = Duration::from_millis(800);

/// The pool's error handler: one line when connections start failing, not one per attempt
/// (r2d2 retries in the background with backoff); `Manager::connect` logs the recovery.
#[derive(Debug)]
struct OutageLog(Arc<AtomicBool>);

impl r2d2::HandleError<DbError> for OutageLog {
    fn handle_error(&self, error: DbError) {
        if !self.0.swap(true, Ordering::SeqCst) {
            tracing::error!(
                error = %error,
                "database connection failed; answering 503 until it is back (logged once per outage)"
            );
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = DbError;

    fn connect(&self) -> Result<DbConn, DbError> {
        let conn = self.establish()?;
        if self.outage.swap(false, Ordering::SeqCst) {
            tracing::info!("database connection restored");
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

impl Manager {
    /// SQLite's one writing connection: a pooled connection's settings plus statement journals
    /// in memory. A multi-row statement inside a transaction journals the pages it touches; on
    /// disk that was a `pwrite` per page. Readers keep the default temp store, under which the
    /// report's grouped passes measured faster. (A 16-32 MB page cache for this connection was
    /// measured too: no faster once group commit stopped using savepoints, and more memory.)
    fn establish_writer(&self) -> Result<DbConn, DbError> {
        let mut c = self.establish()?;
        c.batch_execute("PRAGMA temp_store = MEMORY;")
            .map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(c)
    }

    fn establish(&self) -> Result<DbConn, DbError> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = diesel::SqliteConnection::establish(sqlite_path(&self.url))
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                // busy_timeout first: switching to WAL reads the file and can meet a lock (WAL
                // recovery after a crash, another process's checkpoint on close), which must be
                // waited for, not reported as `database is locked`. The WAL is checkpointed in
                // the background (`Checkpointer`), not by the committing writer.
                // The writer's own settings are in `establish_writer`.
                c.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; \
                     PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {};",
                    SQLITE_BUSY_TIMEOUT_MS, self.sqlite_synchronous, SQLITE_WAL_BACKSTOP_PAGES
                ))
                .map_err(|e| DbError::Connect(e.to_string()))?;
                Ok(DbConn::Sqlite(c))
            }
            Backend::Postgres => diesel::PgConnection::establish(&self.url)
                .map(DbConn::Postgres)
                .map_err(|e| DbError::Connect(e.to_string())),
        }
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// The handle the rest of the service uses: a pool plus, on SQLite, the one writing connection.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    /// SQLite allows one writer at a time: writes queue in-process for this connection instead
    /// of meeting `database is locked`. Kept apart from the pool so that its page cache stays
    /// warm and its settings are the writer's (`Manager::establish_writer`); opened at the
    /// first write and again after a write that failed (PostgreSQL writes use the pool).
    writer: Arc<Mutex<Option<DbConn>>>,
    manager: Manager,
    /// SQLite: stops the background checkpointer when the last handle goes.
    _checkpointer: Option<Arc<Checkpointer>>,
    /// Set when a write failed for lack of space, cleared by the next write that commits:
    /// `/ready` answers `storage_full` meanwhile.
    storage_full: Arc<AtomicBool>,
    /// SQLite: the database file, whose filesystem's free space tells when there is room again.
    sqlite_file: Option<std::path::PathBuf>,
    /// The database is away (a connection attempt failed and none has succeeded since).
    outage: Arc<AtomicBool>,
    /// `push_groups` as set (0 = one per core); see [`Db::push_groups`].
    push_groups: usize,
}

/// SQLite's WAL checkpoints on a thread of their own. Left to SQLite, the writer that commits
/// past `wal_autocheckpoint` pages copies the WAL into the database file before it returns,
/// inside the single-writer lock: 7% of a push batch's time in the load bench's profile. A
/// PASSIVE checkpoint here runs beside the writer and never blocks it; durability is the
/// WAL's (`synchronous = FULL` syncs it at every commit), not the checkpoint's.
struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(pool: Pool) -> Arc<Checkpointer> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Runs until every `Db` handle (the sender's owners) is dropped.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SQLITE_CHECKPOINT_EVERY)
                {
                    let Ok(mut conn) = pool.get() else { continue };
                    if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(error = %e, "background WAL checkpoint failed; retrying");
                    }
                }
            })
            .expect("spawn the checkpoint thread");
        Arc::new(Checkpointer { _stop: stop })
    }
}

pub struct DbOptions {
    pub url: String,
    pub pool_size: u32,
    pub sqlite_synchronous: String,
    pub connect_timeout: Duration,
}

impl Db {
    pub fn connect(opts: &DbOptions) -> Result<Db, DbError> {
        let backend = Backend::from_url(&opts.url)?;
        let outage = Arc::new(AtomicBool::new(false));
        let manager = Manager {
            url: opts.url.clone(),
            backend,
            sqlite_synchronous: opts.sqlite_synchronous.clone(),
            outage: outage.clone(),
        };
        // Check one connection first so that a bad URL or a server that is down reports its
        // own error instead of the pool's timeout.
        let mut first = manager.connect()?;
        check_durability(&mut first)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(2))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            .error_handler(Box::new(OutageLog(outage.clone())))
            .build(manager.clone())
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let checkpointer = (backend == Backend::Sqlite).then(|| Checkpointer::start(pool.clone()));
        Ok(Db {
            pool,
            backend,
            writer: Arc::new(Mutex::new(None)),
            manager,
            _checkpointer: checkpointer,
            storage_full: Arc::default(),
            sqlite_file: (backend == Backend::Sqlite).then(|| sqlite_path(&opts.url).into()),
            outage,
            push_groups: 0,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sets how many groups of pushes PostgreSQL commits at once (`push_groups`; 0 = one per
    /// core, at least two).
    pub fn with_push_groups(mut self, n: usize) -> Db {
        self.push_groups = n;
        self
    }

    /// Groups of pushes committed at once: one on SQLite (one writer); on PostgreSQL the setting,
    /// or one per core (at least two, at most eight).
    pub fn push_groups(&self) -> usize {
        match (self.backend, self.push_groups) {
            (Backend::Sqlite, _) => 1,
            (Backend::Postgres, 0) => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
            (Backend::Postgres, n) => n,
        }
    }

    /// Tells apart the databases a process has open (clones of one `Db` share it).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.writer) as usize
    }

    /// Open and idle connections of the pool, for the metrics.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    pub fn conn(&self) -> Result<PooledConn, AppError> {
        if self.outage.load(Ordering::SeqCst) {
            return self.conn_within(OUTAGE_WAIT);
        }
        self.pool.get().map_err(|_| AppError::Unavailable)
    }

    fn conn_within(&self, wait: Duration) -> Result<PooledConn, AppError> {
        self.pool
            .get_timeout(wait)
            .map_err(|_| AppError::Unavailable)
    }

    /// Runs `f` in a read transaction: one snapshot for everything it reads.
    pub fn read<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, AppError>,
    {
        let mut conn = self.conn()?;
        DbConn::transaction(&mut conn, f)
    }

    /// Runs `f` with one snapshot read through two connections, so that a long read (the
    /// report's counts) can use two cores; the second is `None` when none can be had at once
    /// (the pool is in use, or on SQLite a write is in progress), and `f` then reads through
    /// one. On PostgreSQL both transactions are REPEATABLE READ and the second imports the
    /// first's snapshot (`pg_export_snapshot`). On SQLite both read transactions begin while
    /// the writing connection is held (every SQLite write goes through it), so that no commit
    /// falls between them; a write that is running is not waited for.
    pub fn read_split<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn, Option<&mut DbConn>) -> Result<T, AppError>,
    {
        let mut main = self.conn()?;
        // A free connection, or a new one while the pool is below its size; never a long wait
        // (reports holding one connection each must not wait on each other for a second).
        let second = self
            .pool
            .try_get()
            .or_else(|| self.pool.get_timeout(SECOND_WAIT).ok());
        // SQLite: the writing connection, held while both snapshots begin; none to be had means
        // a write is in progress, and the read goes through one connection.
        let mut held = match (self.backend, &second) {
            (Backend::Sqlite, Some(_)) => self.writer.try_lock().ok(),
            _ => None,
        };
        let second = second.filter(|_| self.backend == Backend::Postgres || held.is_some());
        let Some(mut second) = second else {
            tracing::debug!("split read through one connection");
            return DbConn::transaction(&mut main, |c| {
                snapshot_begin(c)?;
                f(c, None)
            });
        };
        match self.backend {
            Backend::Postgres => DbConn::transaction(&mut main, |a| {
                snapshot_begin(a)?;
                let id: Vec<SnapshotId> =
                    diesel::sql_query("SELECT pg_export_snapshot() AS id").load(a)?;
                let id = id
                    .first()
                    .map(|r| r.id.clone())
                    .ok_or_else(|| AppError::Internal("no snapshot id".into()))?;
                DbConn::transaction(&mut second, |b| {
                    snapshot_begin(b)?;
                    // The id is the server's own (`pg_export_snapshot`), not a client's.
                    b.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'"))?;
                    f(a, Some(b))
                })
            }),
            Backend::Sqlite => {
                let map = |c: &mut DbConn, bytes: u64| {
                    c.batch_execute(&format!("PRAGMA mmap_size = {bytes};"))
                };
                map(&mut main, SQLITE_READ_MMAP_BYTES)?;
                map(&mut second, SQLITE_READ_MMAP_BYTES)?;
                let out = DbConn::transaction(&mut main, |a| {
                    snapshot_begin(a)?;
                    DbConn::transaction(&mut second, |b| {
                        snapshot_begin(b)?;
                        drop(held.take());
                        f(a, Some(b))
                    })
                });
                map(&mut main, 0)?;
                map(&mut second, 0)?;
                out
            }
        }
    }

    /// Runs `f` in a write transaction; on SQLite on the one writing connection.
    pub fn write<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, AppError>,
    {
        let result = match self.backend {
            Backend::Sqlite => self.write_sqlite(f),
            Backend::Postgres => {
                let mut conn = self.conn()?;
                DbConn::transaction(&mut conn, f)
            }
        };
        self.note_storage(&result);
        result
    }

    /// [`Db::write`], run again (up to [`CONTENDED_TRIES`] times in all) while it fails with
    /// [`AppError::Contended`]: a PostgreSQL transaction that met a concurrent one, rolled back.
    pub fn write_retrying<T, F>(&self, mut f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut DbConn) -> Result<T, AppError>,
    {
        let mut tries = 1;
        loop {
            match self.write(&mut f) {
                Err(AppError::Contended) if tries < CONTENDED_TRIES => {
                    tracing::debug!(tries, "write met a concurrent one; running it again");
                    std::thread::sleep(Duration::from_millis(2 << tries));
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs `pre` on a connection outside any transaction, then `f` with its answer in a read
    /// transaction on the same connection (a pull's horizon is read before its snapshot).
    pub fn read_after<P, T, G, F>(&self, pre: G, f: F) -> Result<T, AppError>
    where
        G: FnOnce(&mut DbConn) -> Result<P, AppError>,
        F: FnOnce(&mut DbConn, P) -> Result<T, AppError>,
    {
        let mut conn = self.conn()?;
        let p = pre(&mut conn)?;
        DbConn::transaction(&mut conn, |c| f(c, p))
    }

    /// Waits for the writing connection (a pull, which WAL lets read beside the writer, never
    /// waits behind queued writers for a pooled connection), opening it if needed. After a
    /// failed or panicked write it is closed, so that no state of a failed transaction
    /// outlives it; the next write opens it again.
    fn write_sqlite<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, AppError>,
    {
        let mut slot = self.writer.lock().unwrap_or_else(|poisoned| {
            // A write panicked while it held the connection, maybe inside its transaction:
            // that connection is not used again.
            let mut slot = poisoned.into_inner();
            *slot = None;
            self.writer.clear_poison();
            slot
        });
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(self.manager.establish_writer().map_err(|e| {
                tracing::error!(error = %e, "cannot open the SQLite writing connection");
                AppError::Unavailable
            })?),
        };
        let result = DbConn::transaction(conn, f);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Remembers whether the last write failed for lack of space, and logs when space is back.
    fn note_storage<T>(&self, result: &Result<T, AppError>) {
        match result {
            Err(AppError::StorageFull) => self.storage_full.store(true, Ordering::SeqCst),
            Ok(_) => {
                if self.storage_full.swap(false, Ordering::SeqCst) {
                    tracing::info!("storage writable again");
                }
            }
            Err(_) => {}
        }
    }

    /// Whether writes fail for lack of space: the last write failed so, and there is still no
    /// room (SQLite: less than `STORAGE_ROOM` free on the file's filesystem; PostgreSQL, whose
    /// disk may be another host's: a probe write of 64 KiB, in and out again, still fails). So
    /// the service turns ready again by itself when space is freed, even when no device pushes.
    pub fn storage_full(&self) -> bool {
        if !self.storage_full.load(Ordering::SeqCst) {
            return false;
        }
        let free = self.sqlite_file.as_deref().and_then(|file| {
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let st = rustix::fs::statvfs(dir).ok()?;
            Some(st.f_bavail.saturating_mul(st.f_frsize))
        });
        let room = match free {
            Some(bytes) => bytes >= STORAGE_ROOM,
            None => !matches!(self.probe_write(), Err(AppError::StorageFull)),
        };
        if room && self.storage_full.swap(false, Ordering::SeqCst) {
            tracing::info!("storage writable again");
        }
        !room
    }

    fn probe_write(&self) -> Result<(), AppError> {
        self.write(|c| {
            let blob = "0".repeat(64 * 1024);
            stmt::Stmt::new("INSERT INTO storage_probe (filler) VALUES (?)")
                .text(&blob)
                .execute_on(c)?;
            diesel::sql_query("DELETE FROM storage_probe").execute(c)?;
            Ok(())
        })
    }

    pub fn run_migrations(&self) -> Result<usize, DbError> {
        let mut conn = self.pool.get().map_err(|e| DbError::Pool(e.to_string()))?;
        run_migrations(&mut conn)
    }

    /// [`run_migrations_reporting`] on a connection of the pool.
    pub fn run_migrations_reporting(
        &self,
        report: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, DbError> {
        let mut conn = self.pool.get().map_err(|e| DbError::Pool(e.to_string()))?;
        run_migrations_reporting(&mut conn, report)
    }

    /// Pending migrations, on a connection waited for briefly (this is `/ready`'s probe).
    pub fn pending_migrations(&self) -> Result<usize, AppError> {
        let mut conn = self.conn_within(READY_WAIT)?;
        let n = match &mut *conn {
            DbConn::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            DbConn::Postgres(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        };
        n.map_err(|_| AppError::Unavailable)
    }
}

pub fn run_migrations(conn: &mut DbConn) -> Result<usize, DbError> {
    let applied = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    };
    applied.map_err(|e| DbError::Migration(e.to_string()))
}

/// Applies pending migrations one at a time, reporting `(applied so far, pending at start)`
/// first and after each, for the progress bar of `fieldsync migrate`. Each migration runs in
/// its own transaction, as in [`run_migrations`].
pub fn run_migrations_reporting(
    conn: &mut DbConn,
    report: &mut dyn FnMut(usize, usize),
) -> Result<usize, DbError> {
    fn each<DB: diesel::backend::Backend>(
        c: &mut impl MigrationHarness<DB>,
        source: EmbeddedMigrations,
        report: &mut dyn FnMut(usize, usize),
    ) -> diesel::migration::Result<usize>
    where
        EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
    {
        let pending = c.pending_migrations(source)?;
        report(0, pending.len());
        for (i, m) in pending.iter().enumerate() {
            c.run_migration(m.as_ref())?;
            report(i + 1, pending.len());
        }
        Ok(pending.len())
    }
    let applied = match conn {
        DbConn::Sqlite(c) => each(c, SQLITE_MIGRATIONS, report),
        DbConn::Postgres(c) => each(c, POSTGRES_MIGRATIONS, report),
    };
    applied.map_err(|e| DbError::Migration(e.to_string()))
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct SnapshotId {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Fixes a read transaction's snapshot now: on PostgreSQL REPEATABLE READ (one snapshot for
/// every statement, taken by the first), on SQLite a first read (a deferred transaction takes
/// its snapshot there).
fn snapshot_begin(conn: &mut DbConn) -> Result<(), AppError> {
    match conn {
        DbConn::Postgres(_) => {
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?
        }
        DbConn::Sqlite(_) => conn.batch_execute("SELECT 1 FROM sync_state LIMIT 1")?,
    }
    Ok(())
}

fn show(conn: &mut DbConn, sql: &str) -> Result<String, DbError> {
    let rows: Vec<Setting> = diesel::sql_query(sql).load(conn)?;
    rows.into_iter()
        .next()
        .map(|r| r.value)
        .ok_or_else(|| DbError::Config(format!("no answer to {sql}")))
}

/// The server answers a device only after a commit that survives power loss; settings that
/// break that promise stop the server at start instead of losing data later.
pub fn check_durability(conn: &mut DbConn) -> Result<(), DbError> {
    match conn {
        DbConn::Sqlite(_) => {
            let sync = show(
                conn,
                "SELECT CAST(synchronous AS TEXT) AS value FROM pragma_synchronous",
            )?;
            if sync != "2" && sync != "3" {
                return Err(DbError::UnsafeDurability(format!(
                    "SQLite synchronous is {} (need FULL = 2 or EXTRA = 3); an acknowledged op could be lost on power failure",
                    sync
                )));
            }
            let mode = show(
                conn,
                "SELECT journal_mode AS value FROM pragma_journal_mode",
            )?;
            if mode != "wal" && !mode.eq_ignore_ascii_case("memory") {
                return Err(DbError::UnsafeDurability(format!(
                    "SQLite journal_mode is {mode}, expected wal"
                )));
            }
        }
        DbConn::Postgres(_) => {
            let fsync = show(conn, "SELECT current_setting('fsync') AS value")?;
            if fsync != "on" {
                return Err(DbError::UnsafeDurability(
                    "PostgreSQL fsync is off; committed data could be lost on a crash".into(),
                ));
            }
            let sc = show(
                conn,
                "SELECT current_setting('synchronous_commit') AS value",
            )?;
            if sc == "off" {
                return Err(DbError::UnsafeDurability(
                    "PostgreSQL synchronous_commit is off; the server could acknowledge ops that a crash then loses".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Current time as unix microseconds: the one time representation stored on both backends.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_scheme() {
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("x.db").unwrap(), Backend::Sqlite);
        assert!(Backend::from_url("mysql://x").is_err());
    }

    /// A write that panics inside its transaction leaves nothing open on SQLite's writing
    /// connection: the next write commits, and a reader sees it but not the panicked one.
    #[test]
    fn a_panicked_write_does_not_hold_the_writer_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DbOptions {
            url: format!("sqlite://{}", dir.path().join("w.db").display()),
            pool_size: 2,
            sqlite_synchronous: "FULL".into(),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap();
        db.run_migrations().unwrap();
        let insert = |c: &mut DbConn, v: &str| {
            stmt::Stmt::new("INSERT INTO storage_probe (filler) VALUES (?)")
                .text(v)
                .execute_on(c)
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.write(|c| {
                insert(c, "lost")?;
                panic!("a write that panics mid-transaction");
                #[allow(unreachable_code)]
                Ok(())
            })
        }));
        assert!(panicked.is_err());
        db.write(|c| Ok(insert(c, "kept")?)).unwrap();
        let seen: Vec<Setting> = db
            .read(|c| {
                Ok(
                    diesel::sql_query("SELECT filler AS value FROM storage_probe ORDER BY filler")
                        .load(c)?,
                )
            })
            .unwrap();
        let seen: Vec<String> = seen.into_iter().map(|s| s.value).collect();
        assert_eq!(seen, vec!["kept".to_string()]);
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_url("postgres://fs:secret@db:5432/x"),
            "postgres://fs:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
