//! The sync contract (PROTOCOL.md): one test named after each of the 13 promises, over HTTP
//! against the real server, on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::both;
use crate::helpers::*;
use fieldsync::auth::roles::Role;
use fieldsync::auth::users::{self, NewUser};
use fieldsync::orgunits::{self, NewOrgUnit};

pub const V1: &str = "130131102201";
pub const V2: &str = "130131102202";
pub const V3: &str = "130131103201";
const PASSWORD: &str = "correct-horse-battery";

fn password_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| fieldsync::auth::passwords::hash_blocking(PASSWORD).unwrap())
}

pub fn seed_units(app: &TestApp) {
    let u = |c: &str, n: &str, p: Option<&str>| NewOrgUnit {
        code: c.into(),
        name: n.into(),
        parent: p.map(str::to_string),
    };
    let mut c = app.conn();
    orgunits::upsert(
        &mut c,
        &[
            u("130131", "平山县", None),
            u("130131102", "东回舍镇", Some("130131")),
            u(V1, "东庄村", Some("130131102")),
            u(V2, "西沟村", Some("130131102")),
            u("130131103", "温塘镇", Some("130131")),
            u(V3, "南岗村", Some("130131103")),
        ],
    )
    .unwrap();
}

/// A field device: a worker's registered phone with its access token and its own seq counter.
pub struct Dev {
    pub token: String,
    pub device_id: String,
    pub user_id: String,
    pub next_seq: std::sync::atomic::AtomicI64,
}

pub fn create_worker(app: &TestApp, username: &str, villages: &[&str]) -> String {
    let mut c = app.conn();
    users::create(
        &mut c,
        &NewUser {
            username: username.into(),
            display_name: username.into(),
            role: Role::Worker,
            org_unit: None,
            villages: villages.iter().map(|v| v.to_string()).collect(),
        },
        password_hash(),
    )
    .unwrap()
    .id
}

/// Logs in as `username` and registers a new device.
pub fn register_device(app: &TestApp, username: &str) -> Dev {
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": PASSWORD}),
    );
    assert_eq!(r.status, 200, "login: {:?}", r.body);
    let user_id = r.body["user"]["id"].as_str().unwrap().to_string();
    let t = r.body["access_token"].as_str().unwrap().to_string();
    let r = app.post(
        "/api/v1/devices",
        Some(&t),
        &json!({"name": "phone", "app_version": "1.0"}),
    );
    assert_eq!(r.status, 201, "register device: {:?}", r.body);
    Dev {
        token: r.body["access_token"].as_str().unwrap().to_string(),
        device_id: r.body["device_id"].as_str().unwrap().to_string(),
        user_id,
        next_seq: std::sync::atomic::AtomicI64::new(1),
    }
}

pub fn worker(app: &TestApp, username: &str, villages: &[&str]) -> Dev {
    create_worker(app, username, villages);
    register_device(app, username)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Dev {
    /// An op with the next seq.
    pub fn op(&self, entity: &str, id: &str, kind: &str, base: Option<i64>, set: Value) -> Value {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut op = json!({"seq": seq, "op_id": new_id(), "entity": entity, "id": id, "kind": kind, "set": set,
                            "recorded_at": "2026-11-20T08:00:00Z"});
        if let Some(b) = base {
            op["base_version"] = json!(b);
        }
        op
    }

    pub fn push(&self, app: &TestApp, ops: &[Value]) -> Resp {
        app.post(
            "/api/v1/sync/push",
            Some(&self.token),
            &json!({ "ops": ops }),
        )
    }

    pub fn push_ok(&self, app: &TestApp, ops: &[Value]) -> Vec<Value> {
        let r = self.push(app, ops);
        assert_eq!(r.status, 200, "push: {:?}", r.body);
        r.body["results"].as_array().unwrap().clone()
    }

    pub fn pull(&self, app: &TestApp, cursor: i64) -> Value {
        let r = app.post(
            "/api/v1/sync/pull",
            Some(&self.token),
            &json!({ "cursor": cursor }),
        );
        assert_eq!(r.status, 200, "pull: {:?}", r.body);
        r.body
    }

    /// Pulls every page from `cursor`; returns the records by id (latest wins) and the cursor.
    pub fn pull_all(&self, app: &TestApp, mut cursor: i64) -> (BTreeMap<String, Value>, i64) {
        let mut out = BTreeMap::new();
        loop {
            let r = self.pull(app, cursor);
            assert_eq!(r["reset_required"], false, "{r:?}");
            for rec in r["records"].as_array().unwrap() {
                out.insert(rec["id"].as_str().unwrap().to_string(), rec.clone());
            }
            cursor = r["next_cursor"].as_i64().unwrap();
            if r["has_more"] == false {
                return (out, cursor);
            }
        }
    }
}

pub fn person(village: &str, name: &str) -> Value {
    json!({"org_unit": village, "name": name, "sex": "female", "birth_date": "1990-02-03",
           "marital_status": "first_marriage", "residence": "resident"})
}

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

both!(promise_05_no_missed_change, |b| {
    use fieldsync::db::records::{self, RecordRow};
    use fieldsync::domain::entities::Entity;
    use fieldsync::sync::store::SeqAlloc;
    let (app, a, w) = setup(b);
    a.push_ok(
        &app,
        &[a.op("person", &new_id(), "create", None, person(V1, "陈静"))],
    );
    let (_, cursor) = w.pull_all(&app, 0);
    let slow_id = new_id();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        // a writer that holds its transaction open after taking its change number
        let db = app.db.clone();
        let slow_id2 = slow_id.clone();
        s.spawn(move || {
            db.write(|c| {
                let mut alloc = SeqAlloc::lock(c)?;
                let mut fields = BTreeMap::new();
                fields.insert("name".to_string(), json!("慢写入"));
                fields.insert("sex".to_string(), json!("female"));
                fields.insert("birth_date".to_string(), json!("1991-01-01"));
                let row = RecordRow {
                    entity: Entity::Person,
                    id: slow_id2.clone(),
                    org_unit: V1.into(),
                    version: 1,
                    change_seq: alloc.alloc(),
                    deleted: false,
                    merged_into: None,
                    fields,
                    stamps: BTreeMap::new(),
                    created_at: 1,
                    updated_at: 1,
                    recorded_at: 1,
                    created_by: "t".into(),
                    updated_by: "t".into(),
                    updated_device: None,
                };
                records::upsert(c, &[row])?;
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                alloc.finish(c)
            })
            .unwrap();
        });
        started_rx.recv().unwrap();
        // meanwhile another device pushes (it waits for the open writer) and a pull runs
        let pusher = s.spawn(|| {
            a.push_ok(
                &app,
                &[a.op("person", &new_id(), "create", None, person(V1, "后提交"))],
            )
        });
        let mid = w.pull(&app, cursor);
        let mid_cursor = mid["next_cursor"].as_i64().unwrap();
        assert!(
            mid["records"].as_array().unwrap().is_empty(),
            "uncommitted changes visible: {mid:?}"
        );
        release_tx.send(()).unwrap();
        pusher.join().unwrap();
        // nothing committed after the pull began is skipped by the next pull
        let (after, _) = w.pull_all(&app, mid_cursor);
        assert!(
            after.contains_key(&slow_id),
            "the held writer's change was skipped"
        );
        assert!(after.values().any(|r| r["fields"]["name"] == "后提交"));
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

both!(promise_07_convergence, |b| {
    let (app, a, w) = setup(b);
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = new_id();
        ids.push(id.clone());
        let dev = if i % 2 == 0 { &a } else { &w };
        let op = dev.op("person", &id, "create", None, person(V1, &format!("人{i}")));
        dev.push_ok(&app, &[op]);
    }
    let e1 = a.op(
        "person",
        &ids[1],
        "update",
        Some(1),
        json!({"relation": "child"}),
    );
    a.push_ok(&app, &[e1]);
    let e2 = w.op(
        "person",
        &ids[1],
        "update",
        Some(1),
        json!({"residence": "moved_out"}),
    );
    w.push_ok(&app, &[e2]);
    let d = a.op("person", &ids[4], "delete", Some(1), json!({}));
    a.push_ok(&app, &[d]);
    let (sa, ca) = a.pull_all(&app, 0);
    let (sw, cw) = w.pull_all(&app, 0);
    assert_eq!(ca, cw);
    assert_eq!(sa, sw);
    assert_eq!(sa.len(), 4, "the deleted record is not in a fresh snapshot");
    assert_eq!(sa[&ids[1]]["fields"]["relation"], "child");
    assert_eq!(sa[&ids[1]]["fields"]["residence"], "moved_out");
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
