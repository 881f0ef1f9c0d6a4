//! `fieldsync backup --out FILE` and `fieldsync restore --from FILE`.
//!
//! SQLite: `VACUUM INTO` writes a consistent, compact copy from one read snapshot while the
//! server keeps serving (WAL readers do not block the writer). PostgreSQL: the system `pg_dump
//! -Fc` (one repeatable-read snapshot), restored with `pg_restore --single-transaction`.
//! A backup is written to `FILE.partial`, synced, then renamed, so a crash never leaves a
//! truncated file under the final name. A restore goes only into a fresh, empty database, then
//! runs the migrations and the durability checks as a server start would.
//!
//! The token signing key lives in `data_dir` (or `auth.signing_key_pem`), not in the database:
//! keep it with the backups, or devices must log in again after a restore onto a new machine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryResult, QueryableByName, RunQueryDsl};

use crate::db::{redact_url, Backend};
use crate::progress::Progress;
use crate::settings::Settings;

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const PGDUMP_MAGIC: &[u8] = b"PGDMP";

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

fn sync_and_rename(tmp: &Path, out: &Path) -> anyhow::Result<u64> {
    let f = std::fs::File::open(tmp).with_context(|| format!("open {}", tmp.display()))?;
    f.sync_all()?;
    let len = f.metadata()?.len();
    drop(f);
    std::fs::rename(tmp, out).with_context(|| format!("rename to {}", out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(len)
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Writes a consistent copy of the database named by the settings to `out`.
pub fn backup(settings: &Settings, out: &Path) -> anyhow::Result<String> {
    if out.exists() {
        bail!("{} exists; choose a new file", out.display());
    }
    let tmp = partial_path(out);
    let _ = std::fs::remove_file(&tmp);
    let backend = Backend::from_url(&settings.database_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    match backend {
        Backend::Sqlite => {
            let path = sqlite_path(&settings.database_url);
            if !Path::new(path).exists() {
                bail!("no SQLite database at {path}");
            }
            let mut c = diesel::SqliteConnection::establish(path)
                .with_context(|| format!("open {path}"))?;
            c.batch_execute("PRAGMA busy_timeout = 10000")?;
            let tmp_s = tmp.to_str().context("backup path is not UTF-8")?;
            // The copy is compacted, so the live file's size is an upper bound.
            let bar = Progress::bytes(std::fs::metadata(path).map_or(0, |m| m.len()), "backup");
            let watch = bar.follow_file(tmp.clone());
            let done = c.batch_execute(&format!("VACUUM INTO {}", sql_string(tmp_s)));
            drop(watch);
            bar.finish();
            done.context("VACUUM INTO")?;
        }
        Backend::Postgres => {
            let bar = Progress::spinner("pg_dump", true);
            let watch = bar.follow_file(tmp.clone());
            let st = Command::new("pg_dump")
                .arg("--format=custom")
                .arg("--no-owner")
                .arg("--file")
                .arg(&tmp)
                .arg("--dbname")
                .arg(&settings.database_url)
                .status();
            drop(watch);
            bar.finish();
            let st = st.context("run pg_dump (install the PostgreSQL client tools)")?;
            if !st.success() {
                let _ = std::fs::remove_file(&tmp);
                bail!(
                    "pg_dump of {} failed ({st})",
                    redact_url(&settings.database_url)
                );
            }
        }
    }
    let len = sync_and_rename(&tmp, out)?;
    Ok(format!(
        "backup of {} written to {} ({len} bytes)",
        backend.name(),
        out.display()
    ))
}

/// `std::fs::copy` under a byte progress bar.
fn copy_with_progress(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let bar = Progress::bytes(src.metadata()?.len(), "restore");
    let mut dst = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    bar.finish();
    Ok(())
}

fn magic(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; 16];
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Restores `from` into the (fresh, empty) database named by the settings.
pub fn restore(settings: &Settings, from: &Path) -> anyhow::Result<String> {
    let backend = Backend::from_url(&settings.database_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let head = magic(from)?;
    match backend {
        Backend::Sqlite => {
            if !head.starts_with(SQLITE_MAGIC) {
                bail!(
                    "{} is not a SQLite backup (made by `fieldsync backup` on SQLite)",
                    from.display()
                );
            }
            let mut c = diesel::SqliteConnection::establish(
                from.to_str().context("backup path is not UTF-8")?,
            )?;
            let bar = Progress::spinner("integrity check", false);
            let rows: QueryResult<Vec<TextRow>> =
                diesel::sql_query("SELECT integrity_check AS v FROM pragma_integrity_check")
                    .load(&mut c);
            bar.finish();
            let rows = rows?;
            if rows.len() != 1 || rows[0].v != "ok" {
                bail!("the backup fails its integrity check; not restoring it");
            }
            drop(c);
            let target = PathBuf::from(sqlite_path(&settings.database_url));
            for p in [
                target.clone(),
                PathBuf::from(format!("{}-wal", target.display())),
            ] {
                if std::fs::metadata(&p).is_ok_and(|m| m.len() > 0) {
                    bail!(
                        "{} exists and is not empty; restore goes into a fresh database",
                        p.display()
                    );
                }
            }
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = partial_path(&target);
            copy_with_progress(from, &tmp).with_context(|| format!("copy to {}", tmp.display()))?;
            let _ = std::fs::remove_file(format!("{}-shm", target.display()));
            sync_and_rename(&tmp, &target)?;
        }
        Backend::Postgres => {
            if !head.starts_with(PGDUMP_MAGIC) {
                bail!(
                    "{} is not a PostgreSQL backup (made by `fieldsync backup` on PostgreSQL)",
                    from.display()
                );
            }
            let mut c = diesel::PgConnection::establish(&settings.database_url)
                .with_context(|| format!("connect to {}", redact_url(&settings.database_url)))?;
            let rows: Vec<CountRow> = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .load(&mut c)?;
            if rows[0].n > 0 {
                bail!(
                    "{} already holds tables; restore goes into a fresh, empty database",
                    redact_url(&settings.database_url)
                );
            }
            drop(c);
            let bar = Progress::spinner("pg_restore", false);
            let st = Command::new("pg_restore")
                .arg("--no-owner")
                .arg("--exit-on-error")
                .arg("--single-transaction")
                .arg("--dbname")
                .arg(&settings.database_url)
                .arg(from)
                .status();
            bar.finish();
            let st = st.context("run pg_restore (install the PostgreSQL client tools)")?;
            if !st.success() {
                bail!("pg_restore failed ({st}); the database is left as it was");
            }
        }
    }
    // Migrations (a backup from an older release) and the durability checks, as at start.
    let db = crate::open_database(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let devices = db
        .read(|c| {
            let rows: Vec<CountRow> =
                diesel::sql_query("SELECT COUNT(*) AS n FROM devices").load(c)?;
            Ok(rows[0].n)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!(
        "restored {} into {} ({devices} devices)",
        from.display(),
        redact_url(&settings.database_url)
    ))
}
