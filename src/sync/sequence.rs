//! Change numbers: how a writing transaction numbers the changes it makes, and how far a pull
//! may read so that it never skips a change that commits later with a smaller number
//! (promise 5).
//!
//! **SQLite** has one writer at a time. A writer takes the `sync_state` row (the write lock),
//! numbers after `last_change_seq` and writes the last number back; numbers are committed in
//! order, and a pull reads up to `last_change_seq` in its snapshot.
//!
//! **PostgreSQL** has no lock that orders the writers of pushes. A transaction numbers its
//! changes in a window of its own, fixed by its transaction id:
//! `seq_base + ((xid - seq_xid0) << WINDOW_BITS) + k` for its `k`-th change (`WINDOW`
//! numbers per transaction), so number order is transaction-id order and two pushes commit at
//! once. A change may still commit after one with a larger number (a transaction with a
//! smaller id that commits later), so a pull reads only up to its *horizon*: the start of the
//! window of the oldest transaction of this database that was still running before the pull's
//! snapshot was taken ([`pg_horizon`], run before the pull's transaction begins), less one.
//! Every change at or below it belongs to a transaction that had ended when the snapshot was
//! taken, so the pull sees all of them or none was made; nothing it leaves out is ever given a
//! number at or below its cursor.
//!
//! Pushes take [`K_WRITERS`] in shared mode ([`Writers::Beside`]), and lock the records, ID
//! numbers and device they touch ([`lock_keys`]), so that what a push reads stays true until it
//! commits. Everything else that numbers changes (a supervisor's decision, a direct edit, the
//! demo loader, a re-base) takes it exclusively ([`Writers::Alone`]): it waits for the pushes
//! in flight and runs alone, as every writer did under the `sync_state` row lock. Such a
//! transaction may number past its window; it then moves `seq_base` past its last number and
//! `seq_xid0` past its own transaction id, so later transactions number above it.

use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName};

use crate::db::stmt::{Bind, Stmt};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};

/// Bits of a PostgreSQL transaction's window of change numbers.
pub const WINDOW_BITS: u32 = 16;
/// Change numbers a pushing transaction may hand out (a group of chunks that needs more is
/// applied again one chunk per transaction).
pub const WINDOW: i64 = 1 << WINDOW_BITS;

/// The advisory lock every transaction that numbers changes on PostgreSQL holds: shared by
/// pushes, exclusive for the others (`fieldsyn` in ASCII).
pub const K_WRITERS: i64 = 0x6669_656c_6473_796e;

/// Whether a writer runs beside pushes or alone (PostgreSQL; SQLite writers are always alone).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Writers {
    /// A push: beside other pushes, each locking the keys it touches.
    Beside,
    /// Waits for every push in flight, and keeps new ones waiting until it commits.
    Alone,
}

/// Hands out change numbers inside one write transaction.
pub struct SeqAlloc {
    next: i64,
    start: i64,
    /// PostgreSQL: the end of the transaction's window (exclusive) and how it was locked.
    window: Option<(i64, Writers)>,
}

#[derive(QueryableByName)]
struct SeqRow {
    #[diesel(sql_type = BigInt)]
    last_change_seq: i64,
}

#[derive(QueryableByName)]
struct WindowRow {
    /// The first number of this transaction's window.
    #[diesel(sql_type = BigInt)]
    window_start: i64,
    /// Numbers handed out earlier in this transaction (by an earlier chunk of its group).
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    seq_base: i64,
}

/// Where the transaction-local count of handed-out numbers is kept (`set_config(.., true)`).
const USED_SETTING: &str = "fieldsync.seq_used";

impl SeqAlloc {
    /// Takes the change-number lock for a writer that runs alone (see the module).
    pub fn lock(conn: &mut DbConn) -> AppResult<SeqAlloc> {
        Self::lock_as(conn, Writers::Alone)
    }

    pub fn lock_as(conn: &mut DbConn, writers: Writers) -> AppResult<SeqAlloc> {
        if let DbConn::Sqlite(_) = conn {
            let rows: Vec<SeqRow> = Stmt::new(
                "UPDATE sync_state SET last_change_seq = last_change_seq WHERE id = 1 \
                 RETURNING last_change_seq",
            )
            .load_on(conn)?;
            let last = state_row(rows)?.last_change_seq;
            return Ok(SeqAlloc {
                next: last + 1,
                start: last,
                window: None,
            });
        }
        enter(conn, writers)?;
        // After the lock, so that the transaction id (assigned here if not before) and the base
        // are read once every writer running alone before it has committed.
        let rows: Vec<WindowRow> = Stmt::new(format!(
            "SELECT seq_base + ((pg_current_xact_id()::text::bigint - seq_xid0) << {WINDOW_BITS}) \
               AS window_start, \
             COALESCE(NULLIF(current_setting('{USED_SETTING}', true), ''), '0')::bigint AS used, \
             seq_base FROM sync_state WHERE id = 1"
        ))
        .load_on(conn)?;
        let w = state_row(rows)?;
        let next = w.window_start + w.used;
        if next < w.seq_base {
            // Transaction ids behind the base: a restore into another cluster, not yet re-based.
            // (A writer that moved the base past its own numbers continues from it: `used`.)
            return Err(AppError::Internal(
                "change numbers are behind the store's; restart the server to re-base them".into(),
            ));
        }
        Ok(SeqAlloc {
            next,
            start: next - 1,
            window: Some((w.window_start + WINDOW, writers)),
        })
    }

    pub fn alloc(&mut self) -> i64 {
        let s = self.next;
        self.next += 1;
        s
    }

    /// The last number handed out (or, before any, the number before this writer's first).
    pub fn last(&self) -> i64 {
        self.next - 1
    }

    /// Hands out every number up to `last` (numbered elsewhere, e.g. by a plan started at
    /// [`SeqAlloc::last`]), so that [`SeqAlloc::finish`] writes it back.
    pub fn advance_to(&mut self, last: i64) {
        self.next = self.next.max(last + 1);
    }

    /// Records the numbers handed out; call once, last, in the same transaction.
    pub fn finish(self, conn: &mut DbConn) -> AppResult<()> {
        if self.next - 1 <= self.start {
            return Ok(());
        }
        match self.window {
            None => {
                Stmt::new("UPDATE sync_state SET last_change_seq = ? WHERE id = 1")
                    .int(self.next - 1)
                    .execute_on(conn)?;
            }
            Some((end, writers)) => {
                let past = self.next > end;
                if past && writers == Writers::Beside {
                    return Err(AppError::Internal(format!(
                        "a transaction may hand out {WINDOW} change numbers"
                    )));
                }
                if writers == Writers::Alone {
                    // Later transactions number above this one's last number, however far past
                    // its window it went (the base moves to its next number, and its own window
                    // then ends there); `last_change_seq` keeps the newest number written alone.
                    Stmt::new(
                        "UPDATE sync_state SET last_change_seq = GREATEST(last_change_seq, ?), \
                         seq_base = CASE WHEN ? THEN ? ELSE seq_base END, \
                         seq_xid0 = CASE WHEN ? THEN pg_current_xact_id()::text::bigint + 1 \
                           ELSE seq_xid0 END WHERE id = 1",
                    )
                    .int(self.next - 1)
                    .bind(Bind::Bool(Some(past)))
                    .int(self.next)
                    .bind(Bind::Bool(Some(past)))
                    .execute_on(conn)?;
                }
                // Numbers handed out so far in this transaction, counted from its window's start
                // (after a move of the base, the window that ends at the new base).
                let window_start = if past {
                    self.next - WINDOW
                } else {
                    end - WINDOW
                };
                Stmt::new(format!("SELECT set_config('{USED_SETTING}', ?, true)"))
                    .bind(Bind::OwnedText(Some(
                        (self.next - window_start).to_string(),
                    )))
                    .execute_on(conn)?;
            }
        }
        Ok(())
    }
}

/// Takes [`K_WRITERS`] for the transaction, shared or exclusive (PostgreSQL; on SQLite the
/// writer is alone already).
pub fn enter(conn: &mut DbConn, writers: Writers) -> AppResult<()> {
    if let DbConn::Sqlite(_) = conn {
        return Ok(());
    }
    let lock = match writers {
        Writers::Beside => "SELECT pg_advisory_xact_lock_shared(?)",
        Writers::Alone => "SELECT pg_advisory_xact_lock(?)",
    };
    Stmt::new(lock).int(K_WRITERS).execute_on(conn)?;
    Ok(())
}

/// The one row of `sync_state`.
fn state_row<T>(rows: Vec<T>) -> AppResult<T> {
    rows.into_iter()
        .next()
        .ok_or_else(|| AppError::Internal("sync_state row missing".into()))
}

#[derive(QueryableByName)]
struct OwnRow {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq_xid0: i64,
    #[diesel(sql_type = BigInt)]
    seq_base: i64,
}

/// PostgreSQL: this transaction's id (assigned here if not before) and the base it sees.
fn own_xid_and_base(conn: &mut DbConn) -> AppResult<OwnRow> {
    let rows: Vec<OwnRow> = Stmt::new(
        "SELECT pg_current_xact_id()::text::bigint AS xid, seq_xid0, seq_base \
         FROM sync_state WHERE id = 1",
    )
    .load_on(conn)?;
    state_row(rows)
}

/// PostgreSQL, a push: locks (for the transaction) the keys of what it touches, in one sorted
/// order so that two pushes never wait for each other in a circle. Keys are 64-bit hashes of
/// the names (`kind`, `value`); two names sharing a hash only make two pushes wait for each
/// other. Nothing to do on SQLite, whose writer is alone.
pub fn lock_keys<K: AsRef<str>, V: AsRef<str>>(
    conn: &mut DbConn,
    names: impl IntoIterator<Item = (K, V)>,
) -> AppResult<()> {
    if let DbConn::Sqlite(_) = conn {
        return Ok(());
    }
    let mut keys: Vec<i64> = names
        .into_iter()
        .map(|(k, v)| key_of(k.as_ref(), v.as_ref()))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    let list = keys
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // `unnest` returns the array in order, and the locks are taken row by row in that order.
    Stmt::new("SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k")
        .bind(Bind::OwnedText(Some(format!("{{{list}}}"))))
        .execute_on(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A stable 64-bit key for a name (FNV-1a; the same in every process and version, as two
/// servers on one database must agree). Never [`K_WRITERS`].
pub fn key_of(kind: &str, value: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain([0u8]).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let k = h as i64;
    if k == K_WRITERS {
        k ^ 1
    } else {
        k
    }
}

#[derive(QueryableByName)]
struct HorizonRow {
    #[diesel(sql_type = BigInt)]
    h: i64,
    #[diesel(sql_type = BigInt)]
    xmax: i64,
    #[diesel(sql_type = BigInt)]
    seq_xid0: i64,
    #[diesel(sql_type = BigInt)]
    seq_base: i64,
}

/// PostgreSQL, before a pull's transaction begins: the horizon from the id of the oldest
/// transaction of this database still running (or, with none, the next id to be assigned).
/// A transaction id in the snapshot's running list that `pg_stat_activity` no longer shows has
/// ended since, so the pull's snapshot, taken after this, sees its changes; one shown for
/// another database writes no change here. So the pull waits only for writers of this
/// database, not for the whole cluster's. The base is read here too: it changes only when a
/// writer running alone commits, and a horizon from the base before that lies below that
/// writer's numbers (it was running, or had not begun, when the ids were read).
pub fn pg_horizon(conn: &mut DbConn) -> AppResult<Horizon> {
    let rows: Vec<HorizonRow> = Stmt::new(
        "WITH s AS (SELECT pg_current_snapshot() AS snap) \
         SELECT COALESCE((SELECT min(x::text::bigint) FROM s, pg_snapshot_xip(s.snap) AS x \
             WHERE (x::text::bigint % 4294967296) IN (SELECT a.backend_xid::text::bigint \
               FROM pg_stat_activity a \
               WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL)), \
           (SELECT pg_snapshot_xmax(snap)::text::bigint FROM s)) AS h, \
           (SELECT pg_snapshot_xmax(snap)::text::bigint FROM s) AS xmax, \
           seq_xid0, seq_base FROM sync_state WHERE id = 1",
    )
    .load_on(conn)?;
    let r = state_row(rows)?;
    Ok(windows(r.seq_xid0, r.seq_base, r.h, r.xmax))
}

/// The horizon of the ids below `h` and the bound of those below `xmax`.
fn windows(xid0: i64, seq_base: i64, h: i64, xmax: i64) -> Horizon {
    let window_of = |xid: i64| seq_base + ((xid - xid0) << WINDOW_BITS);
    Horizon {
        upto: window_of(h) - 1,
        bound: window_of(xmax) - 1,
    }
}

/// What a read must learn before its snapshot to know its horizon: [`pg_horizon`] on
/// PostgreSQL, nothing on SQLite. Run outside a transaction, then [`horizon`] inside one.
pub fn before_snapshot(conn: &mut DbConn) -> AppResult<Option<Horizon>> {
    match conn {
        DbConn::Postgres(_) => pg_horizon(conn).map(Some),
        DbConn::Sqlite(_) => Ok(None),
    }
}

/// The horizon of a snapshot taken now (a device that starts to pull from here misses nothing).
pub fn current(db: &crate::db::Db) -> AppResult<Horizon> {
    db.read_after(before_snapshot, horizon)
}

/// How far a pull may read, and the highest cursor it may have been given.
#[derive(Clone, Copy, Debug)]
pub struct Horizon {
    /// Every change numbered at or below it is committed and in this snapshot (or was never
    /// made).
    pub upto: i64,
    /// No change has been numbered above it yet; a cursor beyond it was never handed out.
    pub bound: i64,
}

/// The horizon of a read transaction: on PostgreSQL the one read before it began
/// ([`before_snapshot`]); on SQLite, whose writer is alone, `last_change_seq`.
pub fn horizon(conn: &mut DbConn, pre: Option<Horizon>) -> AppResult<Horizon> {
    if let Some(h) = pre {
        return Ok(h);
    }
    let rows: Vec<SeqRow> =
        Stmt::new("SELECT last_change_seq FROM sync_state WHERE id = 1").load_on(conn)?;
    let last = state_row(rows)?.last_change_seq;
    Ok(Horizon {
        upto: last,
        bound: last,
    })
}

/// The horizon now, for a writer running alone ([`Writers::Alone`], so no push is in flight):
/// every change numbered so far. Call after [`SeqAlloc::lock`].
pub fn horizon_alone(conn: &mut DbConn) -> AppResult<i64> {
    match conn {
        DbConn::Sqlite(_) => Ok(horizon(conn, None)?.upto),
        DbConn::Postgres(_) => {
            let own = own_xid_and_base(conn)?;
            Ok(windows(own.seq_xid0, own.seq_base, own.xid, own.xid).upto)
        }
    }
}

/// PostgreSQL, at start: when transaction ids are behind the store's numbers (the database was
/// restored into another cluster, whose ids started again), numbers the next transactions above
/// every number in the store. Runs alone ([`Writers::Alone`]).
pub fn rebase_if_behind(conn: &mut DbConn) -> AppResult<bool> {
    if let DbConn::Sqlite(_) = conn {
        return Ok(false);
    }
    let behind = |c: &mut DbConn| -> AppResult<bool> {
        let own = own_xid_and_base(c)?;
        Ok(own.xid < own.seq_xid0)
    };
    // Looked at first without the lock, which would wait for every push in flight (a second
    // server starting beside a busy one).
    if !conn.transaction(behind)? {
        return Ok(false);
    }
    conn.transaction(|c| {
        enter(c, Writers::Alone)?;
        if !behind(c)? {
            return Ok(false);
        }
        let tables: Vec<TableName> = Stmt::new(
            "SELECT table_name::text AS t FROM information_schema.columns              WHERE table_schema = current_schema() AND column_name = 'change_seq'              ORDER BY table_name",
        )
        .load_on(c)?;
        let mut max = 0i64;
        for t in tables {
            // Table names from the catalogue, not from input.
            let m: Vec<Count> = Stmt::new(format!(
                "SELECT COALESCE(MAX(change_seq), 0) AS n FROM \"{}\"",
                t.t
            ))
            .load_on(c)?;
            max = max.max(m.first().map_or(0, |r| r.n));
        }
        Stmt::new(
            "UPDATE sync_state SET seq_base = GREATEST(?, last_change_seq) + 1, \
             seq_xid0 = pg_current_xact_id()::text::bigint + 1 WHERE id = 1",
        )
        .int(max)
        .execute_on(c)?;
        tracing::warn!("transaction ids were behind the change numbers; re-based");
        Ok(true)
    })
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    t: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers on one database, of any version, must lock the same key for the same name.
    #[test]
    fn lock_keys_are_stable_fnv_1a_hashes() {
        assert_eq!(key_of("device", "abc"), -2335207277362766089);
        assert_ne!(key_of("device", "abc"), key_of("record", "abc"));
        assert_ne!(key_of("device", "ab"), key_of("device", "abc"));
    }

    #[test]
    fn windows_are_numbered_from_the_base_by_transaction_id() {
        let h = windows(100, 1_000, 102, 105);
        assert_eq!(h.upto, 1_000 + 2 * WINDOW - 1);
        assert_eq!(h.bound, 1_000 + 5 * WINDOW - 1);
        // ids before the base (a writer older than a re-base): below the base, never above
        assert!(windows(100, 1_000, 99, 105).upto < 1_000);
    }
}
