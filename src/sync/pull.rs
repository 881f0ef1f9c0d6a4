//! The pull service: changes in the device's scope after its cursor, in commit order, read in
//! one snapshot together with the device's last_seq.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::RunQueryDsl;

use crate::auth::scope::Scope;
use crate::db::records::{self, backend_of, JsonRow, RecordRow};
use crate::db::schema::{devices, sync_state};
use crate::db::stmt::{Bind, Stmt};
use crate::db::{now_micros, Backend, Db, DbConn};
use crate::domain::entities::ENTITIES;
use crate::error::{AppError, AppResult};
use crate::sync::protocol::{ConflictOut, PullRequest, RecordOut};
use crate::sync::sequence;
use crate::sync::store::{self, ConflictRow, CONFLICT_SELECT};

pub struct Puller {
    pub user_id: String,
    pub device_id: String,
    pub scope: Scope,
}

/// A stored row in the wire shape, rendered in Rust: what the database's own rendering
/// (`records::select_wire_limited_sql`, which pulls send) must equal; the sync tests compare the two.
pub fn record_out(r: RecordRow) -> RecordOut {
    RecordOut {
        entity: r.entity.name().to_string(),
        id: r.id,
        org_unit: r.org_unit,
        version: r.version,
        deleted: r.deleted,
        merged_into: r.merged_into,
        reason: None,
        fields: serde_json::to_value(r.fields).expect("fields serialise"),
        change_seq: r.change_seq,
    }
}

/// Notes a pull on the device (status pages, and the scope a later pull is compared with).
pub fn record_pull(
    db: &Db,
    device_id: &str,
    scope_fingerprint: Option<&str>,
    cursor: i64,
) -> AppResult<()> {
    let now = now_micros();
    db.write(|conn| {
        let target = devices::table.filter(devices::id.eq(device_id));
        match scope_fingerprint {
            Some(h) => diesel::update(target)
                .set((
                    devices::last_pull_at.eq(now),
                    devices::last_pull_cursor.eq(cursor),
                    devices::scope_hash.eq(h),
                ))
                .execute(conn)?,
            None => diesel::update(target)
                .set(devices::last_pull_at.eq(now))
                .execute(conn)?,
        };
        Ok(())
    })
}

/// A pull's answer as sent: [`crate::sync::protocol::PullResponse`] (the wire format the spec and clients read) with
/// each record's JSON built by the database (`records::select_wire_limited_sql`) and passed
/// through, instead of parsed into a row and serialised again (half of a pull's server time).
#[derive(serde::Serialize)]
pub struct PullPage {
    pub records: Vec<Box<serde_json::value::RawValue>>,
    pub conflicts: Vec<ConflictOut>,
    pub last_seq: i64,
    pub next_cursor: i64,
    pub has_more: bool,
    pub reset_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_reason: Option<String>,
}

/// Pulls a page. The flag says whether the device's stored scope differs from the scope this
/// answer was made for, so the caller must record the pull before the next one is judged.
pub fn pull(
    db: &Db,
    p: &Puller,
    req: &PullRequest,
    max_page: usize,
    default_page: usize,
) -> AppResult<(PullPage, bool)> {
    if req.cursor < 0 {
        return Err(AppError::BadRequest("cursor must be >= 0".into()));
    }
    let limit = req.limit.unwrap_or(default_page).clamp(1, max_page);
    let fingerprint = p.scope.fingerprint();
    let mut scope_news = false;
    // PostgreSQL: which writers had not ended, read before the pull's snapshot is taken.
    let resp = db.read_after(sequence::before_snapshot, |conn, pre| {
        if let DbConn::Postgres(_) = conn {
            // One snapshot for every statement of the pull.
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        let dev = store::device(conn, &p.device_id)?;
        if dev.status != "active" {
            return Err(AppError::Forbidden("device_revoked"));
        }
        scope_news = dev.scope_hash.as_deref() != Some(fingerprint.as_str());
        let purged_before: i64 = sync_state::table
            .filter(sync_state::id.eq(1))
            .select(sync_state::purged_before_seq)
            .first(conn)?;
        let horizon = sequence::horizon(conn, pre)?;
        let reset = if req.cursor == 0 {
            None
        } else if dev.scope_hash.as_deref().is_some_and(|h| h != fingerprint) {
            Some("scope_changed")
        } else if req.cursor < purged_before {
            Some("cursor_too_old")
        } else if req.cursor > horizon.bound {
            Some("unknown_cursor")
        } else {
            None
        };
        if let Some(reason) = reset {
            return Ok(PullPage {
                records: Vec::new(),
                conflicts: Vec::new(),
                last_seq: dev.last_seq,
                next_cursor: 0,
                has_more: false,
                reset_required: true,
                reset_reason: Some(reason.into()),
            });
        }
        let (rows, has_more) = changes(conn, &p.scope, req.cursor, limit, horizon.upto)?;
        let upper = if has_more {
            rows.last().map_or(req.cursor, |r| r.change_seq)
        } else {
            // Never back: a horizon read while an older writer runs may lie below the cursor.
            horizon.upto.max(req.cursor)
        };
        let conflicts = conflicts(conn, &p.scope, req.cursor, upper)?;
        let records = rows
            .into_iter()
            .map(|r| serde_json::value::RawValue::from_string(r.j))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AppError::Internal(format!("pulled record is not JSON: {e}")))?;
        Ok(PullPage {
            records,
            conflicts,
            last_seq: dev.last_seq,
            next_cursor: upper,
            has_more,
            reset_required: false,
            reset_reason: None,
        })
    })?;
    Ok((resp, scope_news))
}

/// Records in scope changed after `cursor`, oldest change first, at most `limit` of them
/// (more only when several share the last change number), across every record type, each as a
/// pull sends it, with a `reason: "moved"` tombstone for each record that was moved out of the
/// scope after `cursor`; and whether more changes follow. A fresh snapshot (cursor 0) leaves
/// out tombstones, except those of merges: a device may still hold the merged-away id (from a
/// backup, or an op not yet sent), and the tombstone tells it where that id went.
///
/// On SQLite, two statements in the pull's one snapshot: the first finds where the page ends
/// from the change numbers alone (the scope-and-sequence indexes), the second renders the
/// records up to there, which are then put in commit order here. In one statement SQLite
/// sorted the page's rows twice per record type (to pick them, then to merge the types), with
/// their JSON. PostgreSQL merges the types' ordered scans itself and was slower with two
/// statements (bench/analysis.md), so it keeps one.
/// The scope's ranges, the cursor and the bounds are bound, so each statement has one text per
/// number of scope ranges and kind of pull and stays prepared (`db::stmt`).
///
/// SQLite plans the second statement once, without the values, and walks each type's
/// `change_seq` index from the cursor to the page's end, reading every row on the way to test
/// its unit. That is right when few changes (anywhere) lie between them, and wrong for a device
/// that last synced before a busy day: it read every change made in the county since. Above
/// [`WALK_SPAN`] change numbers (`horizon`, the pull's horizon (`sync::sequence`), bounds the
/// span when the page is the last) the statement names the scope index (`INDEXED BY <table>_scope_seq`),
/// whose entries are tested without reading rows.
pub fn changes(
    conn: &mut DbConn,
    scope: &Scope,
    cursor: i64,
    limit: usize,
    horizon: i64,
) -> AppResult<(Vec<JsonRow>, bool)> {
    let backend = backend_of(conn);
    let ranges = scope.sql_ranges();
    let fresh = cursor == 0;
    let limit = limit.max(1) as i64;
    if backend == Backend::Postgres {
        // Changes above the horizon may be in the snapshot, but not every change below them
        // yet: they wait for the next pull.
        let sql = changes_sql(backend, ranges.len(), fresh, Part::Whole);
        let mut q = Stmt::new(&*sql);
        bind_arms(&mut q, &ranges, fresh, cursor, Some(horizon), limit + 1);
        q.push(Bind::Int(Some(limit + 1)));
        let mut rows: Vec<JsonRow> = q.load_on(conn)?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        return Ok((rows, has_more));
    }
    // The limit-th change after the cursor, and the one after it if there is one.
    let end_sql = changes_sql(backend, ranges.len(), fresh, Part::End);
    let mut q = Stmt::new(&*end_sql);
    bind_arms(&mut q, &ranges, fresh, cursor, None, limit + 1);
    q.push(Bind::Int(Some(limit - 1)));
    let ends: Vec<Seq> = q.load_on(conn)?;
    let has_more = ends.len() > 1;
    let upper = ends.first().map_or(i64::MAX, |e| e.change_seq);

    let span = upper.min(horizon).saturating_sub(cursor);
    let part = if span > WALK_SPAN {
        Part::PageByScope
    } else {
        Part::Page
    };
    let page_sql = changes_sql(backend, ranges.len(), fresh, part);
    let mut q = Stmt::new(&*page_sql);
    bind_arms(&mut q, &ranges, fresh, cursor, None, upper);
    let mut rows: Vec<JsonRow> = q.load_on(conn)?;
    rows.sort_by_key(|r| r.change_seq);
    Ok((rows, has_more))
}

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    change_seq: i64,
}

/// The binds of each part of [`changes`]: per record type (and departures, but for a fresh
/// pull) the ranges, the cursor, the horizon ([`Part::Whole`] only), and `last` (a count or a
/// change number, `Part`).
fn bind_arms<'a>(
    q: &mut Stmt<'a>,
    ranges: &'a [(String, String)],
    fresh: bool,
    cursor: i64,
    horizon: Option<i64>,
    last: i64,
) {
    let tail = |q: &mut Stmt<'a>| {
        q.push(Bind::Int(Some(cursor)));
        if let Some(h) = horizon {
            q.push(Bind::Int(Some(h)));
        }
        q.push(Bind::Int(Some(last)));
    };
    for _ in ENTITIES {
        bind_ranges(q, ranges);
        tail(q);
    }
    if !fresh {
        for _ in 0..3 {
            bind_ranges(q, ranges);
        }
        tail(q);
    }
}

fn bind_ranges<'a>(q: &mut Stmt<'a>, ranges: &'a [(String, String)]) {
    for (lo, hi) in ranges {
        q.push(Bind::Text(Some(lo)));
        q.push(Bind::Text(Some(hi)));
    }
}

/// `((col >= ? AND col < ?) OR ...)` for `n` bound ranges.
fn range_predicate(col: &str, n: usize) -> String {
    if n == 0 {
        return "1 = 0".into();
    }
    let one = format!("({col} >= ? AND {col} < ?)");
    format!("({})", vec![one.as_str(); n].join(" OR "))
}

/// A bound integer in a `LIMIT` or `OFFSET`. Written as a bare `?`, SQLite's planner reads the
/// bound value (`sqlite3ExprIsInteger`) and marks the statement to be planned again whenever
/// that parameter is bound anew: the pull's statement, kept prepared, was parsed and planned
/// again at every pull (a quarter of its time). A cast is an expression it does not read.
/// PostgreSQL keeps the plain form.
fn bound_count(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(? AS BIGINT)",
        Backend::Postgres => "?",
    }
}

/// The statements of [`changes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    /// The page in one statement, in commit order, with at most `?` rows of each type and in
    /// all, up to the horizon (binds per type: ranges, cursor, horizon, count; then the count).
    Whole,
    /// Change numbers after the cursor, each type's first `?` (binds per type: ranges, cursor,
    /// count), then the two at the `?`-th offset across types.
    End,
    /// The records after the cursor up to a change number (binds per type: ranges, cursor,
    /// last), in no order.
    Page,
    /// [`Part::Page`] read through each type's scope index (SQLite).
    PageByScope,
}

/// The most change numbers between a pull's cursor and its page's end for which SQLite walks
/// the change-number index, reading each row on the way (see [`changes`]).
const WALK_SPAN: i64 = 2_000;

/// The text of [`changes`]' statements, built once per backend, number of ranges, kind of pull
/// and part.
fn changes_sql(backend: Backend, ranges: usize, fresh: bool, part: Part) -> Arc<str> {
    type Shapes = Mutex<HashMap<(Backend, usize, bool, Part), Arc<str>>>;
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    let shapes = SHAPES.get_or_init(Default::default);
    let key = (backend, ranges, fresh, part);
    if let Some(sql) = shapes.lock().expect("shapes lock").get(&key) {
        return sql.clone();
    }
    let pred = range_predicate("org_unit", ranges);
    let live = if fresh {
        " AND (NOT deleted OR merged_into IS NOT NULL)"
    } else {
        ""
    };
    let n = bound_count(backend);
    let mut parts: Vec<String> = ENTITIES
        .iter()
        .map(|d| {
            // The type's records after the cursor, each as a pull sends it.
            let records = |tail: &str| {
                let picked = records::select_wire_limited_sql(backend, d.entity, tail);
                format!("SELECT * FROM ({picked}) AS s_{}", d.table)
            };
            match part {
                Part::Whole => records(&format!(
                    " WHERE {pred} AND change_seq > ? AND change_seq <= ?{live} \
                     ORDER BY change_seq LIMIT {n}"
                )),
                Part::End => format!(
                    "SELECT change_seq FROM (SELECT change_seq FROM {} WHERE {pred} \
                     AND change_seq > ?{live} ORDER BY change_seq LIMIT {n}) AS k_{}",
                    d.table, d.table
                ),
                Part::Page | Part::PageByScope => {
                    let index = if part == Part::PageByScope {
                        format!(" INDEXED BY {}_scope_seq", d.table)
                    } else {
                        String::new()
                    };
                    records(&format!(
                        "{index} WHERE {pred} AND change_seq > ? AND change_seq <= ?{live}"
                    ))
                }
            }
        })
        .collect();
    if !fresh {
        parts.push(departures_sql(backend, ranges, part));
    }
    let all = parts.join(" UNION ALL ");
    let sql: Arc<str> = match part {
        Part::Whole => format!("{all} ORDER BY change_seq LIMIT {n}"),
        Part::End => format!("{all} ORDER BY change_seq LIMIT 2 OFFSET {n}"),
        Part::Page | Part::PageByScope => all,
    }
    .into();
    shapes.lock().expect("shapes lock").insert(key, sql.clone());
    sql
}

/// Moves out of the scope after the cursor (from a unit in it to one outside it), as tombstones
/// in the wire shape of a record. A move is left out when a later version of the record is in
/// the scope again (it came back): that version reaches the device itself, later in commit
/// order, so a record appears once, and the last word on it is its latest state. Binds: the
/// ranges three times, the cursor, and the count or the last change number (`Part`).
fn departures_sql(backend: Backend, ranges: usize, part: Part) -> String {
    let from = range_predicate("d.from_org_unit", ranges);
    let to = range_predicate("d.to_org_unit", ranges);
    let back = range_predicate("v.org_unit", ranges);
    let moved = format!(
        "FROM departures d WHERE {from} AND NOT {to} \
         AND NOT EXISTS (SELECT 1 FROM record_versions v WHERE v.entity = d.entity \
         AND v.record_id = d.record_id AND v.version > d.version AND {back}) \
         AND d.change_seq > ?"
    );
    let j = match backend {
        Backend::Sqlite => {
            "json_object('entity', d.entity, 'id', d.record_id, 'org_unit', d.from_org_unit, \
             'version', d.version, 'deleted', json('true'), 'reason', 'moved', \
             'fields', json_object(), 'change_seq', d.change_seq)"
        }
        Backend::Postgres => {
            "jsonb_build_object('entity', d.entity, 'id', d.record_id, 'org_unit', d.from_org_unit, \
             'version', d.version, 'deleted', true, 'reason', 'moved', \
             'fields', jsonb_build_object(), 'change_seq', d.change_seq)::text"
        }
    };
    let n = bound_count(backend);
    match part {
        Part::Whole => format!(
            "SELECT * FROM (SELECT d.change_seq, {j} AS j {moved} AND d.change_seq <= ? \
             ORDER BY d.change_seq LIMIT {n}) AS s_departures"
        ),
        Part::End => format!(
            "SELECT change_seq FROM (SELECT d.change_seq {moved} ORDER BY d.change_seq LIMIT {n}) \
             AS k_departures"
        ),
        Part::Page | Part::PageByScope => {
            format!("SELECT d.change_seq, {j} AS j {moved} AND d.change_seq <= ?")
        }
    }
}

fn conflicts(
    conn: &mut DbConn,
    scope: &Scope,
    after: i64,
    upto: i64,
) -> AppResult<Vec<ConflictOut>> {
    let ranges = scope.sql_ranges();
    let sql = format!(
        "{CONFLICT_SELECT} WHERE {} AND change_seq > ? AND change_seq <= ? ORDER BY change_seq",
        range_predicate("org_unit", ranges.len())
    );
    let mut q = Stmt::new(sql);
    bind_ranges(&mut q, &ranges);
    q.push(Bind::Int(Some(after)));
    q.push(Bind::Int(Some(upto)));
    let rows: Vec<ConflictRow> = q.load_on(conn)?;
    Ok(rows.into_iter().map(ConflictRow::into_out).collect())
}
