//! The sync contract (PROTOCOL.md): one test named after each of the 13 promises, over HTTP
//! against the real server, on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::auth::roles::Role;
use fieldsync::auth::users;

fn setup(b: Backend) -> (TestApp, Dev, Dev) {
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]);
    let w = worker(&app, "worker_b", &[V1]);
    (app, a, w)
}

fn status(r: &Value) -> &str {
    r["status"].as_str().unwrap()
}

fn count(app: &TestApp, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = app.conn();
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *c).unwrap();
    rows[0].n
}

both!(promise_01_exactly_once, |b| {
    let (app, a, _) = setup(b);
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let ops: Vec<Value> = ids
        .iter()
        .map(|id| a.op("person", id, "create", None, person(V1, "王芳")))
        .collect();
    let first = a.push_ok(&app, &ops);
    assert!(first.iter().all(|r| status(r) == "applied"));
    // a prefix, then the whole batch again: duplicates carrying the first answers
    for replay in [&ops[..2], &ops[..]] {
        let again = a.push_ok(&app, replay);
        for (r, f) in again.iter().zip(&first) {
            assert_eq!(status(r), "duplicate");
            assert_eq!(&r["first"], f);
        }
    }
    // the same new batch on 8 connections at once
    let more: Vec<Value> = (0..3).map(|_| a.op("visit", &new_id(), "create", None,
        json!({"org_unit": V1, "person_id": ids[0], "kind": "iud_check", "visit_date": "2026-11-20"}))).collect();
    let answers: Vec<Vec<Value>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| a.push(&app, &more))).collect();
        hs.into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                assert_eq!(r.status, 200, "{:?}", r.body);
                r.body["results"].as_array().unwrap().clone()
            })
            .collect()
    });
    for i in 0..3 {
        let applied = answers
            .iter()
            .filter(|rs| status(&rs[i]) == "applied")
            .count();
        assert_eq!(applied, 1, "op {i} applied {applied} times");
    }
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM visits"), 3);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM record_versions WHERE entity = 'visit'"
        ),
        3
    );
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM device_ops"), 6);
});

both!(promise_02_per_device_order, |b| {
    let (app, a, _) = setup(b);
    let id = new_id();
    let create = a.op("person", &id, "create", None, person(V1, "李娜"));
    let update = a.op(
        "person",
        &id,
        "update",
        Some(1),
        json!({"relation": "spouse"}),
    );
    // the later op alone: a gap, nothing applied
    let r = a.push(&app, std::slice::from_ref(&update));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["stopped_at"], 2);
    assert_eq!(r.body["stop_reason"], "gap");
    assert_eq!(r.body["last_seq"], 0);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM persons"), 0);
    // both, in order
    let rs = a.push_ok(&app, &[create, update]);
    assert_eq!(status(&rs[0]), "applied");
    assert_eq!(status(&rs[1]), "applied");
    assert_eq!(rs[1]["version"], 2);
});

both!(promise_03_nothing_acknowledged_is_lost, |b| {
    let (app, a, w) = setup(b);
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "张敏"))],
    );
    // both devices edit the same review field from version 1: the loser's value is kept in a conflict
    let ra = a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"relation": "spouse"}),
        )],
    );
    let rw = w.push_ok(
        &app,
        &[w.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"relation": "parent"}),
        )],
    );
    assert_eq!(status(&ra[0]), "applied");
    assert_eq!(status(&rw[0]), "applied");
    // a rejected op keeps its payload
    let rej = w.push_ok(
        &app,
        &[w.op("person", &new_id(), "create", None, person(V3, "外村人"))],
    );
    assert_eq!(status(&rej[0]), "rejected");
    let (recs, _) = w.pull_all(&app, 0);
    assert_eq!(recs[&id]["fields"]["relation"], "spouse");
    let pulled = w.pull(&app, 0);
    let conflicts = pulled["conflicts"].as_array().unwrap();
    assert!(conflicts
        .iter()
        .any(|c| c["device_value"] == "parent" && c["server_value"] == "spouse"));
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM device_ops WHERE status = 'rejected' AND payload LIKE '%外村人%'"), 1);
});

both!(promise_04_atomic_ops, |b| {
    let (app, a, _) = setup(b);
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "刘洋"))],
    );
    // one good field and one bad: the op applies whole or not at all
    let rs = a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"relation": "spouse", "sex": "unknown"}),
        )],
    );
    assert_eq!(status(&rs[0]), "rejected");
    assert_eq!(rs[0]["code"], "bad_field_value");
    let (recs, _) = a.pull_all(&app, 0);
    assert!(recs[&id]["fields"].get("relation").is_none());
    assert_eq!(recs[&id]["version"], 1);
});

/// Waits (bounded) until a backend of the test database waits for a lock in a statement whose
/// text contains `needle` (proof that a request is parked at that statement), or until `done`.
fn wait_for_pg_lock_wait(app: &TestApp, needle: &str, what: &str, done: impl Fn() -> bool) {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query LIKE '%{needle}%'"
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(app, &sql) == 0 && !done() {
        assert!(std::time::Instant::now() < until, "never saw {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

both!(promise_05_no_missed_change, |b| {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    use fieldsync::auth::scope::Scope;
    use fieldsync::sync::{push, validate};
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]); // its change is held uncommitted
    let c = worker(&app, "worker_c", &[V1]); // pushes while the other is held
    let r = worker(&app, "worker_r", &[V1]); // pulls
    a.push_ok(
        &app,
        &[a.op("person", &new_id(), "create", None, person(V1, "陈静"))],
    );
    let (_, cursor) = r.pull_all(&app, 0);
    let (held_id, later_id) = (new_id(), new_id());
    let held_op = a.op("person", &held_id, "create", None, person(V1, "慢写入"));
    let later_op = c.op("person", &later_id, "create", None, person(V1, "后提交"));
    std::thread::scope(|s| {
        // The held writer has taken its change sequence number, written its record, and not
        // committed. PostgreSQL: a real push, parked by a row lock on its device at the ledger
        // write that follows the record writes. SQLite (one writer, in this process): the real
        // write path of a push (SeqAlloc, merge, record and version writes) in a transaction
        // the test keeps open.
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let mut lock = None;
        let held = match b {
            Backend::Postgres => {
                let mut l = diesel::PgConnection::establish(&app.database_url).unwrap();
                l.batch_execute("BEGIN").unwrap();
                l.batch_execute(&format!(
                    "SELECT id FROM devices WHERE id = '{}' FOR UPDATE",
                    a.device_id
                ))
                .unwrap();
                lock = Some(l);
                let h = s.spawn(|| {
                    let rs = a.push_ok(&app, std::slice::from_ref(&held_op));
                    rs[0].clone()
                });
                wait_for_pg_lock_wait(
                    &app,
                    "device",
                    "the held push parked at its ledger write",
                    || h.is_finished(),
                );
                h
            }
            Backend::Sqlite => {
                let (started_tx, started_rx) = std::sync::mpsc::channel();
                let db = app.db.clone();
                let user = a.user_id.clone();
                let op = held_op.clone();
                let h = s.spawn(move || {
                    let out = db
                        .write(|conn| {
                            let h = validate::header(&op, 0).unwrap();
                            let parsed = validate::parse(&op, &h, fieldsync::db::now_micros())
                                .unwrap_or_else(|r| panic!("{}", r.code));
                            let scope = Scope::new(vec![V1.to_string()]);
                            let actor = push::Actor {
                                user_id: &user,
                                device_id: None,
                                scope: &scope,
                            };
                            let res = push::apply_direct(conn, &actor, &parsed)?;
                            started_tx.send(()).unwrap();
                            release_rx.recv().unwrap();
                            Ok(res)
                        })
                        .unwrap();
                    serde_json::to_value(out).unwrap()
                });
                started_rx.recv().unwrap();
                h
            }
        };
        // Another device pushes meanwhile. On PostgreSQL it does not wait for the held writer
        // (no lock orders pushes; sync::sequence): it is sent to a second server on the same
        // database and commits, with a larger change number, while the held one has not. On
        // SQLite it queues for the one writer (not observable from here; the assertions below
        // hold whether it got there yet or not).
        let later = s.spawn(|| {
            let via = (b == Backend::Postgres).then(|| app.peer());
            c.push_ok(
                via.as_ref().unwrap_or(&app),
                std::slice::from_ref(&later_op),
            )
        });
        let mut later = Some(later);
        let later_first = if b == Backend::Postgres {
            let rs = later.take().unwrap().join().unwrap();
            assert_eq!(status(&rs[0]), "applied");
            assert!(!held.is_finished(), "the held push was not held");
            Some(rs)
        } else {
            None
        };
        let mid = r.pull(&app, cursor);
        assert_eq!(mid["reset_required"], false, "{mid:?}");
        assert_eq!(
            mid["records"],
            json!([]),
            "uncommitted or later changes visible: {mid:?}"
        );
        if b == Backend::Sqlite {
            assert_eq!(
                mid["next_cursor"], cursor,
                "the cursor moved past a change that is not committed yet: {mid:?}"
            );
        }
        let mid_cursor = mid["next_cursor"].as_i64().unwrap();
        // the held writer commits, then the waiting push
        match lock.take() {
            Some(mut l) => l.batch_execute("COMMIT").unwrap(),
            None => release_tx.send(()).unwrap(),
        }
        let held_result = held.join().unwrap();
        assert_eq!(held_result["status"], "applied", "{held_result:?}");
        let later_result = match (later_first, later) {
            (Some(rs), _) => rs,
            (None, later) => later.unwrap().join().unwrap(),
        };
        assert_eq!(status(&later_result[0]), "applied");
        // nothing committed after the pull began is skipped by the next pull
        let (after, _) = r.pull_all(&app, mid_cursor);
        assert!(
            after.contains_key(&held_id),
            "the held writer's change was skipped: {after:?}"
        );
        assert!(after[&held_id]["change_seq"].as_i64().unwrap() > mid_cursor);
        assert!(
            after.contains_key(&later_id),
            "the later push was skipped: {after:?}"
        );
    });
});

both!(promise_06_read_your_writes, |b| {
    let (app, a, _) = setup(b);
    let id = new_id();
    let rs = a.push_ok(
        &app,
        &[a.op(
            "household",
            &id,
            "create",
            None,
            json!({"org_unit": V1, "household_no": "201-001", "head_name": "王强"}),
        )],
    );
    let (recs, _) = a.pull_all(&app, 0);
    assert_eq!(recs[&id]["version"], rs[0]["version"]);
    assert_eq!(recs[&id]["fields"]["head_name"], "王强");
    let r = a.pull(&app, 0);
    assert_eq!(r["last_seq"], 1);
    let r = a.push(&app, &[]);
    assert_eq!(r.body["device_id"], a.device_id.as_str());
    assert_eq!(
        r.body["last_seq"], 1,
        "an empty push reports the stored last_seq"
    );
});

/// A device's local copy of its scope, built only from what it pulled: entity/id -> record,
/// tombstones removed, advanced one page at a time.
struct Replica<'d> {
    dev: &'d Dev,
    cursor: i64,
    map: BTreeMap<String, Value>,
    pages: usize,
}

impl<'d> Replica<'d> {
    fn new(dev: &'d Dev) -> Self {
        Replica {
            dev,
            cursor: 0,
            map: BTreeMap::new(),
            pages: 0,
        }
    }

    /// Applies one page; says whether there is more.
    fn step(&mut self, app: &TestApp, limit: usize) -> bool {
        let r = self.dev.pull_page(app, self.cursor, limit);
        assert_eq!(r["reset_required"], false, "{r:?}");
        let recs = r["records"].as_array().unwrap();
        assert!(recs.len() <= limit);
        for rec in recs {
            let key = format!(
                "{}/{}",
                rec["entity"].as_str().unwrap(),
                rec["id"].as_str().unwrap()
            );
            if rec["deleted"] == true {
                self.map.remove(&key);
            } else {
                self.map.insert(key, rec.clone());
            }
        }
        let next = r["next_cursor"].as_i64().unwrap();
        assert!(
            next >= self.cursor,
            "the cursor went back: {} -> {next}",
            self.cursor
        );
        self.cursor = next;
        self.pages += 1;
        r["has_more"] == true
    }

    fn sync(&mut self, app: &TestApp, limit: usize) {
        while self.step(app, limit) {}
    }
}

/// The server's live records of a village (and its groups), read from the database, in the
/// pull's wire form: entity/id -> record.
fn server_live(app: &TestApp, village: &str) -> BTreeMap<String, Value> {
    use diesel::RunQueryDsl;
    use fieldsync::db::records::{self, JsonRow, RecordRow};
    use fieldsync::domain::entities::ENTITIES;
    let mut c = app.conn();
    let backend = records::backend_of(&c);
    let mut out = BTreeMap::new();
    for d in ENTITIES {
        let sql = format!(
            "{} WHERE NOT deleted AND org_unit LIKE '{village}%'",
            records::select_json_sql(backend, d.entity)
        );
        let rows: Vec<JsonRow> = diesel::sql_query(sql).load(&mut *c).unwrap();
        for r in rows {
            let row = RecordRow::from_json(&r.j).unwrap();
            let v = serde_json::to_value(fieldsync::sync::pull::record_out(row)).unwrap();
            let key = format!(
                "{}/{}",
                v["entity"].as_str().unwrap(),
                v["id"].as_str().unwrap()
            );
            out.insert(key, v);
        }
    }
    out
}

fn id_number_for(birth: &str, seq: u16) -> String {
    let d = chrono::NaiveDate::parse_from_str(birth, "%Y-%m-%d").unwrap();
    fieldsync::domain::resident_id::generate("130131", d, seq, false)
}

both!(promise_07_convergence, |b| {
    let (app, a, w) = setup(b);
    let c = worker(&app, "worker_c", &[V1]);
    let other = worker(&app, "worker_o", &[V2]);
    const PAGE: usize = 3;
    let (mut ra, mut rw, mut rc) = (Replica::new(&a), Replica::new(&w), Replica::new(&c));
    // first registrations, each device pulling a page between pushes
    let p: Vec<String> = (0..8).map(|_| new_id()).collect();
    let household = new_id();
    let mut ops = vec![a.op(
        "household",
        &household,
        "create",
        None,
        json!({"org_unit": V1, "household_no": "201-009", "head_name": "王强"}),
    )];
    for (i, id) in p.iter().enumerate().take(4) {
        ops.push(a.op("person", id, "create", None, person(V1, &format!("甲{i}"))));
    }
    // text that JSON must escape, as each backend renders it for a pull: quotes, a backslash,
    // control characters, a non-BMP character, markup
    let mut odd = person(V1, "\"引号\" \\ 反斜杠");
    odd["notes"] = json!("line1\nline2\ttab \u{1} \u{1f} 😀 </script> '单引号'");
    odd["phone"] = Value::Null;
    ops.push(a.op("person", &new_id(), "create", None, odd));
    a.push_ok(&app, &ops);
    rw.step(&app, PAGE);
    let ops: Vec<Value> = p[4..]
        .iter()
        .enumerate()
        .map(|(i, id)| w.op("person", id, "create", None, person(V1, &format!("乙{i}"))))
        .collect();
    w.push_ok(&app, &ops);
    rc.step(&app, PAGE);
    ra.step(&app, PAGE);
    // a record of another village is never in these replicas, nor in the comparison
    other.push_ok(
        &app,
        &[other.op("person", &new_id(), "create", None, person(V2, "外村"))],
    );
    let visit = new_id();
    let measure = new_id();
    let idn = id_number_for("1990-02-03", 11);
    c.push_ok(&app, &[
        c.op("visit", &visit, "create", None,
             json!({"org_unit": V1, "person_id": p[0], "kind": "iud_check", "visit_date": "2026-11-20"})),
        c.op("measure", &measure, "create", None,
             json!({"org_unit": V1, "person_id": p[5], "method": "iud_insertion", "started_on": "2026-03-01"})),
        c.op("person", &p[5], "update", Some(1), json!({"id_number": idn})),
    ]);
    rw.step(&app, PAGE);
    // interleaved edits from version 1: disjoint fields, a review conflict, a latest conflict
    a.push_ok(
        &app,
        &[
            a.op(
                "person",
                &p[0],
                "update",
                Some(1),
                json!({"relation": "spouse"}),
            ),
            a.op(
                "person",
                &p[1],
                "update",
                Some(1),
                json!({"marital_status": "divorced"}),
            ),
            a.op(
                "person",
                &p[2],
                "update",
                Some(1),
                json!({"phone": "13800000001"}),
            ),
        ],
    );
    rc.step(&app, PAGE);
    let mut ops = vec![
        w.op(
            "person",
            &p[0],
            "update",
            Some(1),
            json!({"residence": "moved_out"}),
        ),
        w.op(
            "person",
            &p[1],
            "update",
            Some(1),
            json!({"marital_status": "widowed"}),
        ),
        w.op(
            "person",
            &p[2],
            "update",
            Some(1),
            json!({"phone": "13800000002"}),
        ),
    ];
    ops[2]["recorded_at"] = json!("2026-11-20T11:00:00Z");
    let rs = w.push_ok(&app, &ops);
    assert_eq!(rs[1]["conflicts"][0]["status"], "open");
    assert_eq!(rs[2]["conflicts"][0]["status"], "closed");
    ra.step(&app, PAGE);
    // deletes: a plain one, a delete against an edited record, an edit against a deleted record
    a.push_ok(
        &app,
        &[
            a.op("person", &p[3], "delete", Some(1), json!({})),
            a.op(
                "person",
                &p[6],
                "update",
                Some(1),
                json!({"relation": "child"}),
            ),
        ],
    );
    rw.step(&app, PAGE);
    let rs = c.push_ok(
        &app,
        &[
            c.op(
                "person",
                &p[3],
                "update",
                Some(1),
                json!({"relation": "parent"}),
            ),
            c.op("person", &p[6], "delete", Some(1), json!({})),
            c.op("person", &p[7], "delete", Some(1), json!({})),
            c.op(
                "household",
                &household,
                "update",
                Some(1),
                json!({"head_name": "王刚"}),
            ),
        ],
    );
    assert_eq!(rs[0]["conflicts"][0]["kind"], "edit_vs_delete");
    assert_eq!(rs[1]["conflicts"][0]["kind"], "delete_vs_edit");
    rc.step(&app, PAGE);
    // a second registration of p[5] (same ID number, nothing disagrees) with a visit: merged
    // at once, the visit re-pointed to the survivor, the tombstone carries merged_into
    let p8 = new_id();
    let visit2 = new_id();
    let mut again = person(V1, "乙1");
    again["id_number"] = json!(idn);
    a.push_ok(&app, &[
        a.op("person", &p8, "create", None, again),
        a.op("visit", &visit2, "create", None,
             json!({"org_unit": V1, "person_id": p8, "kind": "iud_check", "visit_date": "2026-11-21"})),
    ]);
    rc.step(&app, PAGE);
    // a redirected edit to the merged id
    let rs = w.push_ok(
        &app,
        &[w.op(
            "person",
            &p8,
            "update",
            Some(1),
            json!({"phone": "13900000009"}),
        )],
    );
    assert_eq!(status(&rs[0]), "redirected", "{rs:?}");
    ra.step(&app, PAGE);
    // everyone pulls to the end
    ra.sync(&app, PAGE);
    rw.sync(&app, PAGE);
    rc.sync(&app, PAGE);
    // SQLite: every device ends at the newest change number. PostgreSQL: each at its pull's
    // horizon (sync::sequence), which moves with transaction ids; each at or past the newest.
    let newest = count(&app, "SELECT MAX(change_seq) AS n FROM record_versions");
    if b == Backend::Sqlite {
        assert_eq!(ra.cursor, rw.cursor);
        assert_eq!(rw.cursor, rc.cursor);
    }
    for r in [&ra, &rw, &rc] {
        assert!(r.cursor >= newest, "{} < {newest}", r.cursor);
    }
    for r in [&ra, &rw, &rc] {
        assert!(
            r.pages >= 4,
            "only {} pages: the page limit was not exercised",
            r.pages
        );
    }
    let server = server_live(&app, V1);
    assert_eq!(ra.map, server, "device a differs from the server");
    assert_eq!(rw.map, server, "device w differs from the server");
    assert_eq!(rc.map, server, "device c differs from the server");
    // and the expected facts are there
    let person_of = |id: &str| &server[&format!("person/{id}")];
    assert_eq!(person_of(&p[0])["fields"]["relation"], "spouse");
    assert_eq!(person_of(&p[0])["fields"]["residence"], "moved_out");
    assert_eq!(person_of(&p[1])["fields"]["marital_status"], "divorced");
    assert_eq!(person_of(&p[2])["fields"]["phone"], "13800000002");
    assert!(!server.contains_key(&format!("person/{}", p[3])));
    assert_eq!(person_of(&p[6])["fields"]["relation"], "child");
    assert!(!server.contains_key(&format!("person/{}", p[7])));
    assert!(!server.contains_key(&format!("person/{p8}")));
    assert_eq!(person_of(&p[5])["fields"]["phone"], "13900000009");
    assert_eq!(
        server[&format!("measure/{measure}")]["fields"]["person_id"],
        p[5].as_str()
    );
    assert_eq!(
        server[&format!("visit/{visit2}")]["fields"]["person_id"],
        p[5].as_str()
    );
    assert_eq!(server[&format!("visit/{visit2}")]["version"], 2);
    assert_eq!(
        server[&format!("household/{household}")]["fields"]["head_name"],
        "王刚"
    );
    assert!(server
        .values()
        .all(|r| r["org_unit"].as_str().unwrap().starts_with(V1)));
});

// A device whose cursor is more than `pull::WALK_SPAN` change numbers behind (a busy day in
// other villages) is served through the scope indexes on SQLite: the page that ends there and
// the last page both hold exactly the village's changes, in order.
both!(
    a_pull_behind_many_changes_elsewhere_gets_only_its_own,
    |b| {
        let (app, a, _) = setup(b);
        let other = worker(&app, "worker_o", &[V2]);
        a.push_ok(
            &app,
            &[a.op("person", &new_id(), "create", None, person(V1, "甲"))],
        );
        let (_, cursor) = a.pull_all(&app, 0);
        for batch in 0..5 {
            let ops: Vec<Value> = (0..450)
                .map(|i| {
                    let name = format!("乙{batch}-{i}");
                    other.op("person", &new_id(), "create", None, person(V2, &name))
                })
                .collect();
            other.push_ok(&app, &ops);
        }
        let (x, y) = (new_id(), new_id());
        a.push_ok(
            &app,
            &[
                a.op("person", &x, "create", None, person(V1, "丙")),
                a.op("person", &y, "create", None, person(V1, "丁")),
            ],
        );
        // one page of one record: it ends at x, more than 2,000 change numbers after the cursor
        let page = a.pull_page(&app, cursor, 1);
        let ids: Vec<&str> = page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![x.as_str()]);
        assert_eq!(page["has_more"], true);
        let next = page["next_cursor"].as_i64().unwrap();
        assert!(next - cursor > 2_000, "{cursor} -> {next}");
        let (rest, _) = a.pull_all(&app, next);
        assert_eq!(rest.keys().collect::<Vec<_>>(), vec![&y]);
        // the whole span in one default page
        let (all, _) = a.pull_all(&app, cursor);
        let mut want = vec![x.clone(), y.clone()];
        want.sort();
        assert_eq!(all.keys().cloned().collect::<Vec<_>>(), want);
    }
);

both!(pull_paging_has_more_until_the_last_page, |b| {
    let (app, a, r) = setup(b);
    const PAGE: usize = 5;
    let ids: Vec<String> = (0..12).map(|_| new_id()).collect();
    let ops: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| a.op("person", id, "create", None, person(V1, &format!("页{i}"))))
        .collect();
    a.push_ok(&app, &ops);
    let mut cursor = 0;
    let mut seen: Vec<(String, i64, bool)> = Vec::new(); // id, version, deleted
    let mut pages = Vec::new();
    let (changed_seen, changed_unseen, created, deleted) =
        (ids[0].clone(), ids[11].clone(), new_id(), ids[1].clone());
    loop {
        let page = r.pull_page(&app, cursor, PAGE);
        assert_eq!(page["reset_required"], false);
        let recs = page["records"].as_array().unwrap();
        assert!(recs.len() <= PAGE);
        let next = page["next_cursor"].as_i64().unwrap();
        let mut in_page = std::collections::BTreeSet::new();
        for rec in recs {
            let seq = rec["change_seq"].as_i64().unwrap();
            assert!(
                seq > cursor && seq <= next,
                "change {seq} outside ({cursor}, {next}]"
            );
            let id = rec["id"].as_str().unwrap().to_string();
            assert!(in_page.insert(id.clone()), "{id} twice in one page");
            seen.push((id, rec["version"].as_i64().unwrap(), rec["deleted"] == true));
        }
        let more = page["has_more"] == true;
        if more {
            assert_eq!(recs.len(), PAGE, "a short page with has_more");
            assert!(next > cursor, "has_more without progress");
        }
        pages.push((recs.len(), more));
        cursor = next;
        if pages.len() == 1 {
            // between pages: edit a record already received and one not yet received, create one,
            // delete one already received
            assert!(seen.iter().any(|s| s.0 == changed_seen));
            assert!(!seen.iter().any(|s| s.0 == changed_unseen));
            a.push_ok(
                &app,
                &[
                    a.op(
                        "person",
                        &changed_seen,
                        "update",
                        Some(1),
                        json!({"relation": "spouse"}),
                    ),
                    a.op(
                        "person",
                        &changed_unseen,
                        "update",
                        Some(1),
                        json!({"relation": "child"}),
                    ),
                    a.op("person", &created, "create", None, person(V1, "新")),
                    a.op("person", &deleted, "delete", Some(1), json!({})),
                ],
            );
        }
        if !more {
            break;
        }
    }
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(pages[..pages.len() - 1].iter().all(|p| p.1));
    // the last cursor is the store's newest change (SQLite), or the pull's horizon at or past
    // it (PostgreSQL, sync::sequence)
    let newest = count(&app, "SELECT MAX(change_seq) AS n FROM record_versions");
    assert!(cursor >= newest, "{cursor} < {newest}");
    if b == Backend::Sqlite {
        assert_eq!(
            cursor,
            count(&app, "SELECT last_change_seq AS n FROM sync_state")
        );
    }
    let times = |id: &str| seen.iter().filter(|s| s.0 == id).count();
    for id in &ids[2..11] {
        assert_eq!(times(id), 1, "{id} seen {} times", times(id));
    }
    // changed after it was received: again, at its new version; changed before: once, new version
    let versions = |id: &str| {
        seen.iter()
            .filter(|s| s.0 == id)
            .map(|s| s.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(&changed_seen), [1, 2]);
    assert_eq!(versions(&changed_unseen), [2]);
    assert_eq!(versions(&created), [1]);
    assert_eq!(
        seen.iter()
            .filter(|s| s.0 == deleted)
            .map(|s| (s.1, s.2))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)]
    );
    // nothing more after the end
    let end = r.pull_page(&app, cursor, PAGE);
    assert_eq!(end["records"], json!([]));
    assert_eq!(end["has_more"], false);
    // (PostgreSQL: the horizon moves on with transaction ids, never back)
    match b {
        Backend::Sqlite => assert_eq!(end["next_cursor"], cursor),
        Backend::Postgres => assert!(end["next_cursor"].as_i64().unwrap() >= cursor),
    }
});

both!(
    promise_08_disjoint_edits_survive_same_field_conflicts,
    |b| {
        let (app, a, w) = setup(b);
        let id = new_id();
        a.push_ok(
            &app,
            &[a.op("person", &id, "create", None, person(V1, "赵丽"))],
        );
        let ra = a.push_ok(
            &app,
            &[a.op(
                "person",
                &id,
                "update",
                Some(1),
                json!({"relation": "spouse"}),
            )],
        );
        let rw = w.push_ok(
            &app,
            &[w.op(
                "person",
                &id,
                "update",
                Some(1),
                json!({"residence": "moved_out"}),
            )],
        );
        assert!(ra[0]["conflicts"].as_array().is_none() && rw[0].get("conflicts").is_none());
        let (recs, _) = a.pull_all(&app, 0);
        assert_eq!(recs[&id]["fields"]["relation"], "spouse");
        assert_eq!(recs[&id]["fields"]["residence"], "moved_out");
        // same field, different values: exactly one conflict holding both
        let rw = w.push_ok(
            &app,
            &[w.op(
                "person",
                &id,
                "update",
                Some(1),
                json!({"marital_status": "divorced"}),
            )],
        );
        assert!(rw[0].get("conflicts").is_none(), "only one side changed it");
        let ra = a.push_ok(
            &app,
            &[a.op(
                "person",
                &id,
                "update",
                Some(3),
                json!({"marital_status": "widowed"}),
            )],
        );
        let cs = ra[0]["conflicts"].as_array().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["server_value"], "divorced");
        assert_eq!(cs[0]["device_value"], "widowed");
        assert_eq!(cs[0]["status"], "open");
        assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM conflicts"), 1);
        // a `latest` field: the later recorded_at wins and the other value is kept, closed
        let mut op1 = a.op(
            "person",
            &id,
            "update",
            Some(4),
            json!({"phone": "13800000001"}),
        );
        op1["recorded_at"] = json!("2026-11-20T09:00:00Z");
        let mut op2 = w.op(
            "person",
            &id,
            "update",
            Some(4),
            json!({"phone": "13800000002"}),
        );
        op2["recorded_at"] = json!("2026-11-20T10:00:00Z");
        a.push_ok(&app, &[op1]);
        let r2 = w.push_ok(&app, &[op2]);
        let c = &r2[0]["conflicts"][0];
        assert_eq!(c["status"], "closed");
        assert_eq!(c["winner"], "device");
        assert_eq!(c["server_value"], "13800000001");
        let (recs, _) = a.pull_all(&app, 0);
        assert_eq!(recs[&id]["fields"]["phone"], "13800000002");
    }
);

both!(promise_09_deletes_reach_every_device, |b| {
    let (app, a, w) = setup(b);
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "周芳"))],
    );
    let (_, cursor) = w.pull_all(&app, 0);
    let rd = a.push_ok(&app, &[a.op("person", &id, "delete", Some(1), json!({}))]);
    assert_eq!(rd[0]["version"], 2);
    let (changes, _) = w.pull_all(&app, cursor);
    assert_eq!(changes[&id]["deleted"], true);
    // an edit made offline against the old version: kept in a conflict, no resurrection
    let re = w.push_ok(
        &app,
        &[w.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"relation": "spouse"}),
        )],
    );
    let c = &re[0]["conflicts"][0];
    assert_eq!(c["kind"], "edit_vs_delete");
    assert_eq!(c["device_value"]["relation"], "spouse");
    let (recs, _) = w.pull_all(&app, cursor);
    assert_eq!(recs[&id]["deleted"], true);
    // a delete against a record changed since its base: delete-vs-edit, the record stays
    let id2 = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id2, "create", None, person(V1, "吴静"))],
    );
    a.push_ok(
        &app,
        &[a.op(
            "person",
            &id2,
            "update",
            Some(1),
            json!({"relation": "child"}),
        )],
    );
    let rd = w.push_ok(&app, &[w.op("person", &id2, "delete", Some(1), json!({}))]);
    assert_eq!(rd[0]["conflicts"][0]["kind"], "delete_vs_edit");
    let (recs, _) = w.pull_all(&app, 0);
    assert_eq!(recs[&id2]["deleted"], false);
});

both!(promise_10_merge_redirects, |b| {
    let (app, a, w) = setup(b);
    let (p1, p2) = (new_id(), new_id());
    let mut s1 = person(V1, "孙丽");
    s1["id_number"] = json!("11010519491231002X");
    a.push_ok(&app, &[a.op("person", &p1, "create", None, s1.clone())]);
    let (_, cursor) = w.pull_all(&app, 0);
    // another worker registers the same woman (no field disagrees) and a visit for her
    let mut s2 = s1.clone();
    s2.as_object_mut().unwrap().remove("residence");
    let visit = new_id();
    let rs = w.push_ok(&app, &[
        w.op("person", &p2, "create", None, s2),
        w.op("visit", &visit, "create", None, json!({"org_unit": V1, "person_id": p2, "kind": "iud_check", "visit_date": "2026-11-21"})),
    ]);
    assert_eq!(status(&rs[0]), "applied");
    // the second registration is merged into the first at once
    let (changes, _) = w.pull_all(&app, cursor);
    assert_eq!(changes[&p2]["deleted"], true);
    assert_eq!(changes[&p2]["merged_into"], p1.as_str());
    assert_eq!(
        changes[&visit]["fields"]["person_id"],
        p1.as_str(),
        "child re-pointed"
    );
    // ops sent to the merged id land on the survivor
    let r = w.push_ok(
        &app,
        &[w.op(
            "person",
            &p2,
            "update",
            Some(1),
            json!({"phone": "13900000000"}),
        )],
    );
    assert_eq!(status(&r[0]), "redirected");
    assert_eq!(r[0]["canonical_id"], p1.as_str());
    let (recs, _) = a.pull_all(&app, 0);
    assert_eq!(recs[&p1]["fields"]["phone"], "13900000000");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM person_merges"), 1);
    // a duplicate that disagrees waits for a supervisor
    let p3 = new_id();
    let mut s3 = s1.clone();
    s3["name"] = json!("孙立");
    w.push_ok(&app, &[w.op("person", &p3, "create", None, s3)]);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM duplicate_candidates WHERE status = 'open'"
        ),
        1
    );
});

both!(promise_11_scope, |b| {
    let (app, a, _) = setup(b);
    let other = worker(&app, "worker_c", &[V3]);
    let theirs = new_id();
    other.push_ok(
        &app,
        &[other.op("person", &theirs, "create", None, person(V3, "外村"))],
    );
    // an op into another village, and an op on another village's record, are rejected
    let rs = a.push_ok(
        &app,
        &[
            a.op("person", &new_id(), "create", None, person(V3, "越界")),
            a.op(
                "person",
                &theirs,
                "update",
                Some(1),
                json!({"relation": "spouse"}),
            ),
        ],
    );
    assert_eq!(rs[0]["code"], "out_of_scope");
    assert_eq!(rs[1]["code"], "out_of_scope");
    let (recs, _) = a.pull_all(&app, 0);
    assert!(!recs.contains_key(&theirs));
    assert!(recs
        .values()
        .all(|r| r["org_unit"].as_str().unwrap().starts_with(V1)));
});

both!(promise_12_no_poison_batch, |b| {
    let (app, a, _) = setup(b);
    let ops = vec![
        a.op("person", &new_id(), "create", None, person(V1, "好1")),
        a.op("spaceship", &new_id(), "create", None, json!({})),
        a.op("person", &new_id(), "create", None, json!({"org_unit": V1, "name": "缺字段"})),
        a.op("person", &new_id(), "create", None, json!({"org_unit": V1, "name": "x", "sex": "female", "birth_date": "1990-01-01", "version": 7})),
        a.op("person", &new_id(), "create", None, person(V1, "好2")),
    ];
    let rs = a.push_ok(&app, &ops);
    let codes: Vec<&str> = rs
        .iter()
        .map(|r| r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            "applied",
            "unknown_entity",
            "required_field",
            "server_owned_field",
            "applied"
        ]
    );
    assert!(rs[1..4].iter().all(|r| r["retryable"] == false));
    // too many ops: 413 with the limits
    let next = a.next_seq.load(std::sync::atomic::Ordering::SeqCst);
    let many: Vec<Value> = (0..(app.settings.limits.max_ops_per_batch + 1))
        .map(|_| a.op("person", &new_id(), "create", None, person(V1, "多")))
        .collect();
    a.next_seq.store(next, std::sync::atomic::Ordering::SeqCst);
    let r = a.push(&app, &many);
    assert_eq!(r.status, 413);
    assert_eq!(
        r.body["details"]["max_ops_per_batch"],
        app.settings.limits.max_ops_per_batch
    );
    // a gzip bomb: small on the wire, huge inflated
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, b"{\"ops\": [").unwrap();
    std::io::Write::write_all(
        &mut enc,
        &vec![b' '; app.settings.limits.max_inflated_bytes + 10],
    )
    .unwrap();
    let bomb = enc.finish().unwrap();
    let auth = format!("Bearer {}", a.token);
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("authorization", &auth),
        ],
        &bomb,
    );
    assert_eq!(r.status, 413);
    // malformed envelope and wrong media type
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        b"{\"ops\": 5}",
    );
    assert_eq!(r.status, 400);
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[("content-type", "text/plain"), ("authorization", &auth)],
        b"{}",
    );
    assert_eq!(r.status, 415);
    // a gzip body that is fine is accepted
    let good = json!({"ops": [a.op("person", &new_id(), "create", None, person(V1, "压缩"))]});
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, good.to_string().as_bytes()).unwrap();
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("authorization", &auth),
        ],
        &enc.finish().unwrap(),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["status"], "applied");
});

both!(promise_13_safe_reset, |b| {
    let (app, a, _) = setup(b);
    a.push_ok(
        &app,
        &[a.op("person", &new_id(), "create", None, person(V1, "郑红"))],
    );
    let (_, cursor) = a.pull_all(&app, 0);
    // the worker's villages change: the next pull says reset
    {
        let mut c = app.conn();
        users::set_villages(&mut c, &a.user_id, &[V1.to_string(), V2.to_string()], None).unwrap();
    }
    let r = a.pull(&app, cursor);
    assert_eq!(r["reset_required"], true);
    assert_eq!(r["reset_reason"], "scope_changed");
    let (recs, cursor) = a.pull_all(&app, 0);
    assert_eq!(recs.len(), 1);
    assert_eq!(a.pull(&app, cursor)["reset_required"], false);
    // a cursor older than what the server keeps
    {
        use diesel::RunQueryDsl;
        let mut c = app.conn();
        diesel::sql_query(format!(
            "UPDATE sync_state SET purged_before_seq = {}",
            cursor + 1
        ))
        .execute(&mut *c)
        .unwrap();
    }
    let r = a.pull(&app, cursor);
    assert_eq!(r["reset_required"], true);
    assert_eq!(r["reset_reason"], "cursor_too_old");
});

both!(logic_checks_flag_and_never_reject, |b| {
    let (app, a, _) = setup(b);
    let id = new_id();
    let mut p = person(V1, "钱芳");
    p["id_number"] = json!("11010519900203002X"); // wrong check digit (it should be 1)
    let rs = a.push_ok(&app, &[a.op("person", &id, "create", None, p)]);
    assert_eq!(status(&rs[0]), "applied");
    let flags: Vec<&str> = rs[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"id_check_digit"), "{flags:?}");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM flags WHERE active AND check_code = 'id_check_digit'"
        ),
        1
    );
    // a vasectomy recorded on a woman is flagged
    let m = new_id();
    let rs = a.push_ok(&app, &[a.op("measure", &m, "create", None, json!({"org_unit": V1, "person_id": id, "method": "vasectomy", "started_on": "2026-01-05"}))]);
    assert!(rs[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "method_sex"));
    // the flag clears when a later version passes
    let rs = a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"id_number": "110105199002030021"}),
        )],
    );
    assert_eq!(status(&rs[0]), "applied");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM flags WHERE active AND check_code = 'id_check_digit'"
        ),
        0
    );
});

/// After a merge of `merged` into `survivor`, a device pulling from a cursor taken before it
/// (and after the children were made) receives the children re-pointed at a new version and the
/// tombstone with merged_into; its ops to the merged id are redirected.
fn assert_device_learns_merge(
    app: &TestApp,
    w: &Dev,
    cursor: i64,
    survivor: &str,
    merged: &str,
    children: &[(&str, i64)],
) {
    let (changes, _) = w.pull_all(app, cursor);
    assert_eq!(changes[merged]["deleted"], true, "{changes:?}");
    assert_eq!(changes[merged]["merged_into"], survivor);
    for (child, version_before) in children {
        let c = &changes[*child];
        assert_eq!(
            c["fields"]["person_id"], survivor,
            "child {child} not re-pointed"
        );
        assert!(
            c["version"].as_i64().unwrap() > *version_before,
            "child {child} kept version {version_before}"
        );
        assert!(c["change_seq"].as_i64().unwrap() > cursor);
    }
    let rs = w.push_ok(
        app,
        &[w.op(
            "person",
            merged,
            "update",
            Some(1),
            json!({"phone": "13900000001"}),
        )],
    );
    assert_eq!(status(&rs[0]), "redirected", "{rs:?}");
    assert_eq!(rs[0]["canonical_id"], survivor);
    let (recs, _) = w.pull_all(app, 0);
    assert_eq!(recs[survivor]["fields"]["phone"], "13900000001");
    // a fresh snapshot keeps the redirect tombstone, never the merged record alive
    assert_eq!(recs[merged]["deleted"], true);
    assert_eq!(recs[merged]["merged_into"], survivor);
}

both!(
    promise_10_children_made_before_the_cursor_follow_a_merge,
    |b| {
        let (app, a, w) = setup(b);
        let ts = supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");
        // a supervisor's merge of a pair that disagrees
        let (p1, p2, visit, measure) = (new_id(), new_id(), new_id(), new_id());
        let mut s1 = person(V1, "孙丽");
        s1["id_number"] = json!(id_number_for("1990-02-03", 21));
        let mut s2 = s1.clone();
        s2["name"] = json!("孙立");
        a.push_ok(&app, &[
        a.op("person", &p1, "create", None, s1),
        a.op("person", &p2, "create", None, s2),
        a.op("visit", &visit, "create", None,
             json!({"org_unit": V1, "person_id": p2, "kind": "iud_check", "visit_date": "2026-11-21"})),
        a.op("measure", &measure, "create", None,
             json!({"org_unit": V1, "person_id": p2, "method": "iud_insertion", "started_on": "2026-03-01"})),
    ]);
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) AS n FROM duplicate_candidates WHERE status = 'open'"
            ),
            1
        );
        let (_, cursor) = w.pull_all(&app, 0);
        let r = app.post(
            "/api/v1/supervise/duplicates/merge",
            Some(&ts),
            &json!({"survivor_id": p1, "merged_id": p2}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_device_learns_merge(&app, &w, cursor, &p1, &p2, &[(&visit, 1), (&measure, 1)]);

        // the automatic merge: a second registration without the ID number, with children, later
        // given the number; nothing disagrees, so it merges at once
        let (p3, p4, visit2, measure2) = (new_id(), new_id(), new_id(), new_id());
        let mut s3 = person(V1, "钱红");
        s3["id_number"] = json!(id_number_for("1990-02-03", 31));
        a.push_ok(&app, &[
        a.op("person", &p3, "create", None, s3.clone()),
        a.op("person", &p4, "create", None, person(V1, "钱红")),
        a.op("visit", &visit2, "create", None,
             json!({"org_unit": V1, "person_id": p4, "kind": "iud_check", "visit_date": "2026-11-21"})),
        a.op("measure", &measure2, "create", None,
             json!({"org_unit": V1, "person_id": p4, "method": "pills", "started_on": "2026-03-01"})),
    ]);
        let (_, cursor) = w.pull_all(&app, 0);
        let rs = a.push_ok(
            &app,
            &[a.op(
                "person",
                &p4,
                "update",
                Some(1),
                json!({"id_number": s3["id_number"]}),
            )],
        );
        assert_eq!(status(&rs[0]), "applied");
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) AS n FROM person_merges WHERE automatic"
            ),
            1
        );
        assert_device_learns_merge(&app, &w, cursor, &p3, &p4, &[(&visit2, 1), (&measure2, 1)]);
    }
);

both!(open_duplicate_that_comes_to_agree_merges_at_once, |b| {
    let (app, a, w) = setup(b);
    let (p1, p2) = (new_id(), new_id());
    let mut s1 = person(V1, "周敏");
    s1["id_number"] = json!(id_number_for("1990-02-03", 41));
    let mut s2 = s1.clone();
    s2["name"] = json!("周民");
    a.push_ok(&app, &[a.op("person", &p1, "create", None, s1)]);
    w.push_ok(&app, &[w.op("person", &p2, "create", None, s2)]);
    let open = "SELECT COUNT(*) AS n FROM duplicate_candidates WHERE status = 'open'";
    assert_eq!(count(&app, open), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM person_merges"), 0);
    let (_, cursor) = a.pull_all(&app, 0);
    // the worker corrects the name: nothing disagrees any more
    let rs = w.push_ok(
        &app,
        &[w.op("person", &p2, "update", Some(1), json!({"name": "周敏"}))],
    );
    assert_eq!(status(&rs[0]), "applied");
    assert_eq!(count(&app, open), 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM duplicate_candidates WHERE status = 'merged'"
        ),
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM person_merges WHERE automatic"
        ),
        1
    );
    let (changes, _) = a.pull_all(&app, cursor);
    assert_eq!(changes[&p2]["deleted"], true);
    assert_eq!(changes[&p2]["merged_into"], p1.as_str());
    let rs = a.push_ok(
        &app,
        &[a.op(
            "person",
            &p2,
            "update",
            Some(2),
            json!({"phone": "13500000000"}),
        )],
    );
    assert_eq!(status(&rs[0]), "redirected");
    assert_eq!(rs[0]["canonical_id"], p1.as_str());
});

both!(create_of_an_existing_id_is_an_update_from_version_0, |b| {
    let (app, a, w) = setup(b);
    let id = new_id();
    let mut first = person(V1, "王芳");
    first["phone"] = json!("13800000001");
    a.push_ok(&app, &[a.op("person", &id, "create", None, first)]);
    // the other device creates the same id: same name, a field the server lacks, a review field
    // and a latest field that differ
    let mut second = person(V1, "王芳");
    second["marital_status"] = json!("divorced");
    second["phone"] = json!("13800000002");
    second["relation"] = json!("spouse");
    let mut op = w.op("person", &id, "create", None, second);
    op["recorded_at"] = json!("2026-11-20T09:00:00Z");
    let rs = w.push_ok(&app, &[op]);
    assert_eq!(status(&rs[0]), "applied", "{rs:?}");
    assert_eq!(rs[0]["version"], 2);
    let mut cs: Vec<&Value> = rs[0]["conflicts"].as_array().unwrap().iter().collect();
    cs.sort_by_key(|c| c["field"].as_str().unwrap().to_string());
    assert_eq!(cs.len(), 2, "{cs:?}");
    assert_eq!(cs[0]["field"], "marital_status");
    assert_eq!(cs[0]["policy"], "review");
    assert_eq!(cs[0]["status"], "open");
    assert_eq!(cs[0]["winner"], "server");
    assert_eq!(cs[0]["base_value"], Value::Null);
    assert_eq!(cs[0]["server_value"], "first_marriage");
    assert_eq!(cs[0]["device_value"], "divorced");
    assert_eq!(cs[1]["field"], "phone");
    assert_eq!(cs[1]["policy"], "latest");
    assert_eq!(cs[1]["status"], "closed");
    assert_eq!(cs[1]["winner"], "device");
    assert_eq!(cs[1]["server_value"], "13800000001");
    assert_eq!(cs[1]["device_value"], "13800000002");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM conflicts"), 2);
    let (recs, _) = a.pull_all(&app, 0);
    let f = &recs[&id]["fields"];
    assert_eq!(
        f["relation"], "spouse",
        "the field the server lacked is added"
    );
    assert_eq!(f["marital_status"], "first_marriage");
    assert_eq!(f["phone"], "13800000002");
    assert_eq!(f["name"], "王芳");
    assert_eq!(recs[&id]["version"], 2);
    // the same create again from a third side, equal values: nothing changes, no conflict
    let c = worker(&app, "worker_c", &[V1]);
    let rs = c.push_ok(
        &app,
        &[c.op("person", &id, "create", None, person(V1, "王芳"))],
    );
    assert_eq!(status(&rs[0]), "applied");
    assert!(rs[0].get("conflicts").is_none(), "{rs:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM conflicts"), 2);
});

fn active_flag(app: &TestApp, id: &str, code: &str) -> bool {
    count(
        app,
        &format!(
            "SELECT COUNT(*) AS n FROM flags WHERE active AND record_id = '{id}' AND check_code = '{code}'"
        ),
    ) == 1
}

/// Pushes one op that must be applied, flagged with `code` in the answer and the flags table.
fn push_flagged(app: &TestApp, d: &Dev, op: Value, code: &str) {
    let id = op["id"].as_str().unwrap().to_string();
    let rs = d.push_ok(app, &[op]);
    assert_eq!(status(&rs[0]), "applied", "a check rejected the op: {rs:?}");
    let flags: Vec<&str> = rs[0]["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(flags.contains(&code), "{code} not in {flags:?}");
    assert!(active_flag(app, &id, code), "{code} not in the flags table");
}

/// Pushes one op that must be applied and clear `code`.
fn push_clearing(app: &TestApp, d: &Dev, op: Value, code: &str) {
    let id = op["id"].as_str().unwrap().to_string();
    let rs = d.push_ok(app, &[op]);
    assert_eq!(status(&rs[0]), "applied", "{rs:?}");
    assert!(
        !rs[0]["flags"]
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f == code)),
        "{code} still reported: {rs:?}"
    );
    assert!(!active_flag(app, &id, code), "{code} still active");
}

both!(logic_checks_with_related_records_flag_and_clear, |b| {
    let (app, a, _) = setup(b);
    let female = id_number_for("1990-02-03", 51);
    let male = fieldsync::domain::resident_id::generate(
        "130131",
        chrono::NaiveDate::from_ymd_opt(1990, 2, 3).unwrap(),
        51,
        true,
    );
    // id_birth_date: a valid number whose birth date is not the record's
    let p = new_id();
    let mut s = person(V1, "冯丽");
    s["id_number"] = json!(female);
    s["birth_date"] = json!("1991-01-01");
    push_flagged(
        &app,
        &a,
        a.op("person", &p, "create", None, s),
        "id_birth_date",
    );
    push_clearing(
        &app,
        &a,
        a.op(
            "person",
            &p,
            "update",
            Some(1),
            json!({"birth_date": "1990-02-03"}),
        ),
        "id_birth_date",
    );
    // id_sex: a man's number on a woman
    let q = new_id();
    let mut s = person(V1, "冯芳");
    s["id_number"] = json!(male);
    push_flagged(&app, &a, a.op("person", &q, "create", None, s), "id_sex");
    push_clearing(
        &app,
        &a,
        a.op(
            "person",
            &q,
            "update",
            Some(1),
            json!({"id_number": id_number_for("1990-02-03", 53)}),
        ),
        "id_sex",
    );

    // the mother, pushed on her own: the checks of her births load her from the store
    let m = new_id();
    let mut s = person(V1, "蒋红");
    s["id_number"] = json!(id_number_for("1990-02-03", 55));
    a.push_ok(&app, &[a.op("person", &m, "create", None, s)]);
    let birth = |date: &str, parity: i64| json!({"org_unit": V1, "mother_id": m, "birth_date": date, "sex": "male", "parity": parity});
    let b1 = new_id();
    let rs = a.push_ok(
        &app,
        &[a.op("birth", &b1, "create", None, birth("2015-03-01", 1))],
    );
    assert!(rs[0].get("flags").is_none(), "{rs:?}");
    // mother_age: a birth when she was 12
    let b0 = new_id();
    push_flagged(
        &app,
        &a,
        a.op("birth", &b0, "create", None, birth("2002-06-01", 1)),
        "mother_age",
    );
    push_clearing(
        &app,
        &a,
        a.op("birth", &b0, "delete", Some(1), json!({})),
        "mother_age",
    );
    // birth_parity: her second birth (one earlier in the store) recorded as the third
    let b2 = new_id();
    push_flagged(
        &app,
        &a,
        a.op("birth", &b2, "create", None, birth("2020-05-05", 3)),
        "birth_parity",
    );
    push_clearing(
        &app,
        &a,
        a.op("birth", &b2, "update", Some(1), json!({"parity": 2})),
        "birth_parity",
    );

    // after_death: a visit dated after the death recorded in the store
    let dead = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &dead, "create", None, person(V1, "韩梅"))],
    );
    a.push_ok(
        &app,
        &[a.op(
            "death",
            &new_id(),
            "create",
            None,
            json!({"org_unit": V1, "person_id": dead, "death_date": "2026-01-10"}),
        )],
    );
    let v = new_id();
    push_flagged(&app, &a, a.op("visit", &v, "create", None,
        json!({"org_unit": V1, "person_id": dead, "kind": "iud_check", "visit_date": "2026-03-01"})), "after_death");
    push_clearing(
        &app,
        &a,
        a.op(
            "visit",
            &v,
            "update",
            Some(1),
            json!({"visit_date": "2025-12-01"}),
        ),
        "after_death",
    );

    // pregnancy_overdue: two months past the expected date, still ongoing; then its outcome
    let expected = (chrono::Utc::now().date_naive() - chrono::Duration::days(60)).to_string();
    let preg = new_id();
    push_flagged(
        &app,
        &a,
        a.op(
            "pregnancy",
            &preg,
            "create",
            None,
            json!({"org_unit": V1, "person_id": m, "expected_date": expected, "status": "ongoing"}),
        ),
        "pregnancy_overdue",
    );
    push_clearing(
        &app,
        &a,
        a.op(
            "pregnancy",
            &preg,
            "update",
            Some(1),
            json!({"status": "ended", "outcome": "birth", "outcome_date": expected}),
        ),
        "pregnancy_overdue",
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM device_ops WHERE status = 'rejected'"
        ),
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM flags WHERE active"),
        0
    );
});

both!(promise_12_413_answers_carry_the_limits, |b| {
    let app = spawn_app_with(b, |s| {
        s.limits.max_body_bytes = 64 * 1024;
        s.limits.max_inflated_bytes = 256 * 1024;
    });
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]);
    let l = &app.settings.limits;
    let auth = format!("Bearer {}", a.token);
    let check = |r: &Resp, what: &str| {
        assert_eq!(r.status, 413, "{what}: {:?}", r.body);
        assert_eq!(r.body["code"], "payload_too_large", "{what}");
        let d = &r.body["details"];
        assert_eq!(d["max_body_bytes"], l.max_body_bytes, "{what}: {d:?}");
        assert_eq!(
            d["max_inflated_bytes"], l.max_inflated_bytes,
            "{what}: {d:?}"
        );
        assert_eq!(d["max_ops_per_batch"], l.max_ops_per_batch, "{what}: {d:?}");
    };
    // too many bytes on the wire
    let mut big = b"{\"ops\": [], \"pad\": \"".to_vec();
    big.resize(l.max_body_bytes + 1, b'x');
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        &big,
    );
    check(&r, "body bytes");
    // a gzip bomb: small on the wire, too large inflated
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, b"{\"ops\": [").unwrap();
    std::io::Write::write_all(&mut enc, &vec![b' '; l.max_inflated_bytes + 10]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < l.max_body_bytes);
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("authorization", &auth),
        ],
        &bomb,
    );
    check(&r, "gzip bomb");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM device_ops"), 0);
});

both!(conflict_rows_keep_who_which_device_and_when, |b| {
    let (app, a, w) = setup(b);
    let ts = supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "杨洁"))],
    );
    a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"marital_status": "divorced"}),
        )],
    );
    let before = fieldsync::db::now_micros();
    let mut op = w.op(
        "person",
        &id,
        "update",
        Some(1),
        json!({"marital_status": "widowed"}),
    );
    op["recorded_at"] = json!("2026-11-20T10:30:00Z");
    let op_id = op["op_id"].as_str().unwrap().to_string();
    let rs = w.push_ok(&app, &[op]);
    let after = fieldsync::db::now_micros();
    let cid = rs[0]["conflicts"][0]["id"].as_str().unwrap().to_string();
    // the supervisor's view
    let r = app.get(&format!("/api/v1/supervise/conflicts/{cid}"), Some(&ts));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = &r.body["conflict"];
    assert_eq!(c["device_id"], w.device_id.as_str());
    assert_eq!(c["user_id"], w.user_id.as_str());
    let created = c["created_at"].as_i64().unwrap();
    assert!(
        before <= created && created <= after,
        "{before} <= {created} <= {after}"
    );
    assert_eq!(c["base_value"], "first_marriage");
    assert_eq!(c["server_value"], "divorced");
    assert_eq!(c["device_value"], "widowed");
    assert_eq!(c["base_version"], 1);
    assert_eq!(c["server_version"], 2);
    // the row itself: when the worker did it (the op's recorded_at) and which op
    let recorded = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:30:00Z")
        .unwrap()
        .timestamp_micros();
    assert_eq!(
        count(&app, &format!(
            "SELECT COUNT(*) AS n FROM conflicts WHERE id = '{cid}' AND recorded_at = {recorded} AND op_id = '{op_id}'"
        )),
        1
    );
    // and the device's pull carries the three values
    let pulled = w.pull(&app, 0);
    let pc = pulled["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == cid.as_str())
        .expect("the conflict in the pull");
    assert_eq!(pc["server_value"], "divorced");
    assert_eq!(pc["device_value"], "widowed");
    assert_eq!(pc["base_value"], "first_marriage");
});

/// The push examples of api-spec answer their requests: one result per op in order up to
/// `stopped_at`, and `last_seq` the last op processed (a rejected op advances it).
#[test]
fn push_examples_in_the_spec_agree_with_their_requests() {
    let spec: Value = serde_json::from_str(&fieldsync::openapi::pretty_json()).unwrap();
    let push = &spec["paths"]["/api/v1/sync/push"]["post"];
    let requests = &push["requestBody"]["content"]["application/json"]["examples"];
    let answers = push["responses"]["200"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("named push examples");
    let mut kinds = std::collections::BTreeSet::new();
    let mut gaps = 0;
    for (name, ex) in answers {
        let v = &ex["value"];
        let sent = requests[name]["value"]["ops"]
            .as_array()
            .unwrap_or_else(|| panic!("no request example {name}"));
        let results = v["results"].as_array().unwrap();
        assert!(results.len() <= sent.len(), "{name}");
        for (r, op) in results.iter().zip(sent) {
            for k in ["seq", "op_id", "entity", "id"] {
                assert_eq!(r[k], op[k], "{name}: {k}");
            }
            kinds.insert(status(r).to_string());
        }
        let last = results.last().map_or(0, |r| r["seq"].as_i64().unwrap());
        assert_eq!(
            v["last_seq"], last,
            "{name}: last_seq is the last op processed"
        );
        match v.get("stopped_at") {
            Some(at) => {
                gaps += 1;
                assert_eq!(v["stop_reason"], "gap", "{name}");
                assert_eq!(*at, sent[results.len()]["seq"], "{name}");
                assert!(
                    at.as_i64().unwrap() > last + 1,
                    "{name}: no gap before {at}"
                );
            }
            None => assert_eq!(results.len(), sent.len(), "{name}"),
        }
    }
    assert_eq!(
        kinds,
        ["applied", "duplicate", "redirected", "rejected"]
            .map(String::from)
            .into()
    );
    assert!(gaps >= 1, "an example with stopped_at");
}

/// A transient failure after the first chunk of a large batch (PostgreSQL: the connection of the
/// second chunk is terminated while it waits at its record write): the first chunk stays
/// acknowledged, processing stops at the second with `stop_reason: transient` and `retry_after`,
/// and a resend applies the rest once.
#[test]
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set FIELDSYNC_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
)]
fn transient_stop_mid_batch_keeps_the_committed_chunks() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let (app, a, _) = setup(Backend::Postgres);
    let x = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &x, "create", None, person(V1, "许静"))],
    );
    // 500 creates (the first chunk), then an update of x (the second)
    let mut ops: Vec<Value> = (0..500)
        .map(|i| {
            a.op(
                "person",
                &new_id(),
                "create",
                None,
                person(V1, &format!("批{i}")),
            )
        })
        .collect();
    ops.push(a.op(
        "person",
        &x,
        "update",
        Some(1),
        json!({"relation": "spouse"}),
    ));
    assert_eq!(ops.len(), 501);
    let mut lock = diesel::PgConnection::establish(&app.database_url).unwrap();
    lock.batch_execute("BEGIN").unwrap();
    lock.batch_execute(&format!(
        "SELECT id FROM persons WHERE id = '{x}' FOR UPDATE"
    ))
    .unwrap();
    let answer = std::thread::scope(|s| {
        let h = s.spawn(|| a.push(&app, &ops));
        // the second chunk parks at its write of x; its connection is then cut
        wait_for_pg_lock_wait(
            &app,
            "persons",
            "the second chunk at its record write",
            || h.is_finished(),
        );
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                 AND query LIKE '%persons%' AND pid <> pg_backend_pid()) t"
            ),
            1
        );
        h.join().unwrap()
    });
    lock.batch_execute("ROLLBACK").unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let b = &answer.body;
    assert_eq!(b["stop_reason"], "transient", "{:?}", b["stop_reason"]);
    assert_eq!(b["stopped_at"], 502);
    assert_eq!(b["retry_after"], 5);
    assert_eq!(b["last_seq"], 501);
    let results = b["results"].as_array().unwrap();
    assert_eq!(results.len(), 500);
    assert!(results.iter().all(|r| status(r) == "applied"));
    // what was acknowledged is stored; the stopped op is not
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM persons"), 501);
    assert_eq!(
        count(&app, "SELECT last_seq AS n FROM devices WHERE last_seq > 0"),
        501
    );
    let (recs, _) = a.pull_all(&app, 0);
    assert!(recs[&x]["fields"].get("relation").is_none());
    // the device resends the batch: the first chunk is duplicate, the rest applies once
    let again = a.push_ok(&app, &ops);
    assert!(again[..500].iter().all(|r| status(r) == "duplicate"));
    assert_eq!(status(&again[500]), "applied");
    let (recs, _) = a.pull_all(&app, 0);
    assert_eq!(recs[&x]["fields"]["relation"], "spouse");
    assert_eq!(recs[&x]["version"], 2);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM persons"), 501);
}

// The duplicate look-up of every push chunk is answered from the ID-number index on both
// databases. On PostgreSQL, `id_number IN (SELECT jsonb_array_elements_text($1))` was planned
// as a hash join over a scan of every person (the planner guesses 100 list elements), which
// made the look-up grow with the county; the demo county (about 3,000 persons, statistics
// taken by the demo load) is enough for that plan to be chosen.
both!(duplicate_lookup_by_id_number_uses_its_index, |b| {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    use fieldsync::db::stmt::Stmt;
    use fieldsync::db::DbConn;
    #[derive(diesel::QueryableByName)]
    struct PgLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(diesel::QueryableByName)]
    struct SqliteLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let app = spawn_app(b);
    fieldsync::demo::load(&app.db, 2026, true).expect("demo loads");
    let numbers = r#"["130131199001011234","130131198502023456"]"#;
    let mut conn = app.conn();
    let sql = fieldsync::sync::duplicates::persons_with_numbers_sql(
        fieldsync::db::records::backend_of(&conn),
    );
    let plan: Vec<String> = match &mut *conn {
        DbConn::Postgres(c) => Stmt::new(format!("EXPLAIN {sql}"))
            .text(numbers)
            .load::<PgLine>(c)
            .expect("explain")
            .into_iter()
            .map(|l| l.line)
            .collect(),
        DbConn::Sqlite(c) => Stmt::new(format!("EXPLAIN QUERY PLAN {sql}"))
            .text(numbers)
            .load::<SqliteLine>(c)
            .expect("explain")
            .into_iter()
            .map(|l| l.detail)
            .collect(),
    };
    let text = plan.join("\n");
    assert!(text.contains("persons_id_number"), "{text}");
    assert!(!text.contains("Seq Scan on persons"), "{text}");
    assert!(!plan.iter().any(|l| l.trim() == "SCAN t"), "{text}");
});

// Group commit: a chunk that fails inside a group (its device was revoked while its push
// waited for the writer) rolls the group back, and the group's other chunks are applied again
// on their own: only the failing device gets the error. The writer is held (SQLite: a write
// transaction of the test; PostgreSQL: the writers' lock taken exclusively, as a writer running
// alone does) while the pushes queue, and the revoke commits when it is let go. The first pushes
// are sent alone and lead the first groups (one on SQLite, `push::group_leaders` on
// PostgreSQL); the other two queue behind them and are committed as one more group.
both!(group_commit_answers_a_failing_chunk_alone, |b| {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    use diesel::RunQueryDsl;
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]);
    let r = worker(&app, "worker_r", &[V1]); // revoked while its push waits
    let c = worker(&app, "worker_c", &[V1]);
    let (ida, idr, idc) = (new_id(), new_id(), new_id());
    let op_a = a.op("person", &ida, "create", None, person(V1, "甲先到"));
    let op_r = r.op("person", &idr, "create", None, person(V1, "乙已停用"));
    let op_c = c.op("person", &idc, "create", None, person(V1, "丙同组"));
    // One more leading push for each group PostgreSQL commits at once beyond the first.
    let leads: Vec<(Dev, Value)> = (1..fieldsync::sync::push::group_leaders(&app.db))
        .map(|i| {
            let d = worker(&app, &format!("worker_l{i}"), &[V1]);
            let op = d.op("person", &new_id(), "create", None, person(V1, "丁先到"));
            (d, op)
        })
        .collect();
    let revoke = format!(
        "UPDATE devices SET status = 'revoked' WHERE id = '{}'",
        r.device_id
    );
    let pause = std::time::Duration::from_millis(400);
    std::thread::scope(|s| {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let db = app.db.clone();
        let url = app.database_url.clone();
        let holder = s.spawn(move || match b {
            Backend::Sqlite => db
                .write(|conn| {
                    diesel::sql_query(revoke.as_str()).execute(conn)?;
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap(),
            Backend::Postgres => {
                let mut l = diesel::PgConnection::establish(&url).unwrap();
                l.batch_execute("BEGIN").unwrap();
                l.batch_execute(&revoke).unwrap();
                l.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({})",
                    fieldsync::sync::sequence::K_WRITERS
                ))
                .unwrap();
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                l.batch_execute("COMMIT").unwrap();
            }
        });
        started_rx.recv().unwrap();
        let pa = s.spawn(|| a.push(&app, std::slice::from_ref(&op_a)));
        let pl: Vec<_> = leads
            .iter()
            .map(|(d, op)| s.spawn(|| d.push(&app, std::slice::from_ref(op))))
            .collect();
        std::thread::sleep(pause);
        let pr = s.spawn(|| r.push(&app, std::slice::from_ref(&op_r)));
        let pc = s.spawn(|| c.push(&app, std::slice::from_ref(&op_c)));
        std::thread::sleep(pause);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        let (ra, rr, rc) = (pa.join().unwrap(), pr.join().unwrap(), pc.join().unwrap());
        for l in pl {
            let rl = l.join().unwrap();
            assert_eq!(status(&rl.body["results"][0]), "applied", "{:?}", rl.body);
        }
        assert_eq!(ra.status, 200, "{:?}", ra.body);
        assert_eq!(status(&ra.body["results"][0]), "applied", "{:?}", ra.body);
        assert_eq!(rr.status, 403, "{:?}", rr.body);
        assert_eq!(rr.body["code"], "device_revoked");
        assert_eq!(
            rc.status, 200,
            "the other chunk of the group: {:?}",
            rc.body
        );
        assert_eq!(status(&rc.body["results"][0]), "applied", "{:?}", rc.body);
    });
    let n = |id: &str| {
        count(
            &app,
            &format!("SELECT COUNT(*) AS n FROM persons WHERE id = '{id}'"),
        )
    };
    assert_eq!((n(&ida), n(&idr), n(&idc)), (1, 0, 1));
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) AS n FROM device_ops WHERE device_id = '{}'",
                r.device_id
            )
        ),
        0,
        "nothing of the revoked device's chunk is kept"
    );
});

// A batch long enough that PostgreSQL appends its ledger and history rows with `COPY` (32 rows
// and more) keeps every character: the history row of each record holds the text as sent
// (tabs, line breaks, carriage returns, backslashes, a `\.` and a `\N` that COPY's text format
// would otherwise read as an end or a NULL), and the batch sent again is answered from the
// device ledger with the same results.
both!(a_large_batch_keeps_its_text_exactly, |b| {
    let (app, a, _) = setup(b);
    let texts: Vec<String> = (0..40)
        .map(|i| format!("第{i}户\t制表\n换行\r回车 \\ 反斜杠 \\. \\N \"引号\" 😀"))
        .collect();
    let ids: Vec<String> = (0..40).map(|_| new_id()).collect();
    let ops: Vec<Value> = ids
        .iter()
        .zip(&texts)
        .map(|(id, t)| {
            let mut p = person(V1, "文本");
            p["notes"] = json!(t);
            a.op("person", id, "create", None, p)
        })
        .collect();
    let first = a.push_ok(&app, &ops);
    assert!(first.iter().all(|r| status(r) == "applied"), "{first:?}");
    #[derive(diesel::QueryableByName)]
    struct Data {
        #[diesel(sql_type = diesel::sql_types::Text)]
        record_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data: String,
    }
    let rows: Vec<Data> = {
        use diesel::RunQueryDsl;
        let mut c = app.conn();
        diesel::sql_query("SELECT record_id, data FROM record_versions WHERE entity = 'person'")
            .load(&mut *c)
            .unwrap()
    };
    let stored: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|r| (r.record_id, serde_json::from_str(&r.data).unwrap()))
        .collect();
    for (id, t) in ids.iter().zip(&texts) {
        assert_eq!(stored[id]["notes"], json!(t), "history of {id}");
    }
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) AS n FROM device_ops WHERE device_id = '{}'",
                a.device_id
            )
        ),
        40
    );
    let again = a.push_ok(&app, &ops);
    for (r, f) in again.iter().zip(&first) {
        assert_eq!(status(r), "duplicate");
        assert_eq!(&r["first"], f, "the replay is answered from the ledger");
    }
});

// Many devices pushing at once lose nothing (on PostgreSQL through two servers, each committing
// groups side by side: no lock orders pushes, sync::sequence): every edit answered `applied`
// has its own version in the record's history, versions have no gaps, persons created at once
// with one ID number find each other (one stays live), and a device pulling from before the
// pushes gets every change.
both!(concurrent_pushes_lose_nothing_and_find_each_other, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    let peer = (b == Backend::Postgres).then(|| app.peer());
    let owner = worker(&app, "worker_o", &[V1]);
    let shared: Vec<String> = (0..4).map(|_| new_id()).collect();
    let creates: Vec<Value> = shared
        .iter()
        .map(|id| owner.op("person", id, "create", None, person(V1, "共改")))
        .collect();
    owner.push_ok(&app, &creates);
    let (_, cursor) = owner.pull_all(&app, 0);
    let birth = chrono::NaiveDate::from_ymd_opt(1990, 2, 3).unwrap();
    let number = fieldsync::domain::resident_id::generate("130131", birth, 77, false);
    let devs: Vec<Dev> = (0..8)
        .map(|i| worker(&app, &format!("worker_c{i}"), &[V1]))
        .collect();
    // All devices push at once (half of them to the second server): first a person with one
    // ID number each, then edits of the same records.
    let at_once = |make: &(dyn Fn(usize, &Dev) -> Vec<Value> + Sync)| {
        let barrier = std::sync::Barrier::new(devs.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = devs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let (app, peer, barrier) = (&app, &peer, &barrier);
                    s.spawn(move || {
                        let ops = make(i, d);
                        barrier.wait();
                        let via = match peer {
                            Some(p) if i % 2 == 1 => p,
                            _ => app,
                        };
                        let rs = d.push_ok(via, &ops);
                        (ops, rs)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<(Vec<Value>, Vec<Value>)>>()
        })
    };
    let created = at_once(&|_, d| {
        let mut p = person(V1, "同号");
        p["id_number"] = json!(number);
        vec![d.op("person", &new_id(), "create", None, p)]
    });
    let edited = at_once(&|i, d| {
        shared
            .iter()
            .map(|id| {
                let set = json!({"phone": format!("1380000{i:04}"), "name": format!("改{i}")});
                d.op("person", id, "update", Some(1), set)
            })
            .collect()
    });
    // Each creator after the first found the person before it and was merged into it at once.
    let kept: Vec<&Value> = created
        .iter()
        .map(|(_, rs)| &rs[0])
        .filter(|r| r.get("merged_into").is_none_or(Value::is_null))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "creators that did not find each other: {kept:?}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM person_merges"), 7);
    let answers: Vec<(Vec<Value>, Vec<Value>)> = created.into_iter().chain(edited).collect();
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        version: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        op_id: Option<String>,
    }
    let history = |id: &str| -> Vec<V> {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "SELECT version, op_id FROM record_versions WHERE record_id = '{id}' ORDER BY version"
        ))
        .load(&mut app.conn())
        .unwrap()
    };
    for (ops, rs) in &answers {
        for (op, r) in ops.iter().zip(rs) {
            assert_ne!(status(r), "rejected", "{r:?}");
            let clean = r["conflicts"].as_array().is_none_or(|c| c.is_empty());
            if op["kind"] == "update" && status(r) == "applied" && clean {
                let v = r["version"].as_i64().unwrap();
                let h = history(op["id"].as_str().unwrap());
                let row = h.iter().find(|x| x.version == v).expect("answered version");
                assert_eq!(
                    row.op_id.as_deref(),
                    op["op_id"].as_str(),
                    "two edits answered with one version: {r:?}"
                );
            }
        }
    }
    for id in &shared {
        // one edit made from version 1 without a conflict: the first; a second one would have
        // been made from a state that did not hold the first
        let clean = answers
            .iter()
            .flat_map(|(ops, rs)| ops.iter().zip(rs))
            .filter(|(op, r)| {
                op["id"] == id.as_str()
                    && status(r) == "applied"
                    && r["conflicts"].as_array().is_none_or(|c| c.is_empty())
            })
            .count();
        assert_eq!(clean, 1, "{id}: {answers:?}");
        let h = history(id);
        let versions: Vec<i64> = h.iter().map(|x| x.version).collect();
        assert_eq!(versions, (1..=h.len() as i64).collect::<Vec<_>>());
        assert!(h.len() > 1, "no edit of {id} applied");
    }
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) AS n FROM persons WHERE id_number = '{number}' \
                 AND NOT deleted AND merged_into IS NULL"
            )
        ),
        1,
        "persons created at once with one ID number did not find each other"
    );
    let (after, _) = owner.pull_all(&app, cursor);
    let live: BTreeMap<String, Value> = server_live(&app, V1);
    for id in &shared {
        let key = format!("person/{id}");
        assert_eq!(after[id]["version"], live[&key]["version"], "{id}");
    }
});

// A pull waits only for the writers of its own database: a transaction holding a transaction id
// open in another database of the same PostgreSQL cluster (a county's reporting database, say)
// does not hold its horizon back, so a change committed after it began is pulled at once. (On
// SQLite each database is a file of its own; the push-then-pull still has to hold.)
both!(a_writer_in_another_database_does_not_hold_back_pulls, |b| {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let (app, a, w) = setup(b);
    let (_, cursor) = w.pull_all(&app, 0);
    let mut other = pg_admin_url()
        .filter(|_| b == Backend::Postgres)
        .map(|url| {
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            c.batch_execute("BEGIN; SELECT pg_current_xact_id();")
                .unwrap();
            c
        });
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "别库"))],
    );
    let (got, _) = w.pull_all(&app, cursor);
    assert!(
        got.contains_key(&id),
        "the change waits for another database: {got:?}"
    );
    if let Some(c) = other.as_mut() {
        c.batch_execute("COMMIT").unwrap();
    }
});

// A writer running alone (the demo loader, a supervisor's decision) that numbers past its
// transaction's window moves the base past its last number: a second allocation in the same
// transaction continues after that number, and a later push numbers above it.
both!(
    a_writer_alone_numbering_past_its_window_continues_after_it,
    |b| {
        use fieldsync::sync::sequence::{SeqAlloc, Writers, WINDOW};
        let app = spawn_app(b);
        let (far, again) = app
            .db
            .write(|c| {
                let mut first = SeqAlloc::lock(c)?;
                let far = first.last() + WINDOW + 10;
                first.advance_to(far);
                first.finish(c)?;
                let again = SeqAlloc::lock(c)?.last();
                Ok((far, again))
            })
            .unwrap();
        assert_eq!(again, far);
        let later = app
            .db
            .write(|c| Ok(SeqAlloc::lock_as(c, Writers::Beside)?.last()))
            .unwrap();
        assert!(later >= far, "{later} < {far}");
    }
);

// A PostgreSQL database restored into another cluster, whose transaction ids started again: the
// change numbers are re-based at start (`rebase_if_behind`, run when the server opens the
// database), and the next push numbers above everything in the store. (SQLite numbers from
// `last_change_seq` and has nothing to re-base.)
both!(a_restore_into_another_cluster_is_re_based_at_start, |b| {
    use diesel::RunQueryDsl;
    let (app, a, w) = setup(b);
    a.push_ok(
        &app,
        &[a.op("person", &new_id(), "create", None, person(V1, "复原前"))],
    );
    let (_, cursor) = w.pull_all(&app, 0);
    let newest = count(&app, "SELECT MAX(change_seq) AS n FROM record_versions");
    if b == Backend::Postgres {
        // as after a restore: the store's numbers ahead of what the cluster's ids give
        diesel::sql_query("UPDATE sync_state SET seq_xid0 = seq_xid0 + 1000000000")
            .execute(&mut *app.conn())
            .unwrap();
    }
    let rebased = fieldsync::sync::sequence::rebase_if_behind(&mut app.conn()).unwrap();
    assert_eq!(rebased, b == Backend::Postgres);
    assert!(!fieldsync::sync::sequence::rebase_if_behind(&mut app.conn()).unwrap());
    let id = new_id();
    let rs = a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "复原后"))],
    );
    assert_eq!(status(&rs[0]), "applied", "{rs:?}");
    let after = count(
        &app,
        &format!("SELECT change_seq AS n FROM persons WHERE id = '{id}'"),
    );
    assert!(after > newest, "{after} <= {newest}");
    let (got, _) = w.pull_all(&app, cursor);
    assert!(got.contains_key(&id), "{got:?}");
});
