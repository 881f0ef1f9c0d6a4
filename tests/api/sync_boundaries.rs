//! The sync core where a record crosses a boundary (issue 13): between scopes, between villages,
//! inside one batch. Each test names the behaviour it pins; each failed on the code before the fix.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use crate::common::{new_id, person, seed_units, worker, Dev, V1, V2, V3};
use fieldsync::auth::roles::Role;

fn id_number(seq: u16) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(1990, 2, 3).unwrap();
    fieldsync::domain::resident_id::generate("130131", d, seq, false)
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

/// Every record of a pull from `cursor` to the end, in the order received.
fn pull_list(app: &TestApp, d: &Dev, mut cursor: i64) -> (Vec<Value>, i64) {
    let mut out = Vec::new();
    loop {
        let r = d.pull(app, cursor);
        assert_eq!(r["reset_required"], false, "{r:?}");
        out.extend(r["records"].as_array().unwrap().iter().cloned());
        cursor = r["next_cursor"].as_i64().unwrap();
        if r["has_more"] == false {
            return (out, cursor);
        }
    }
}

// Issue 13, behaviour 1: an automatic duplicate merge happens only when both persons are in the
// pushing worker's scope. A pair across townships goes to the county's duplicate queue; the
// device keeps its own record, learns nothing of the other, and nothing outside its scope is
// written.
both!(
    cross_scope_duplicate_is_queued_for_the_common_supervisor,
    |b| {
        let app = spawn_app(b);
        seed_units(&app);
        let a = worker(&app, "worker_a", &[V1]);
        let c = worker(&app, "worker_c", &[V3]);
        let number = id_number(11);
        let (theirs, mine) = (new_id(), new_id());
        let mut s = person(V3, "孙丽");
        s["id_number"] = json!(number);
        c.push_ok(&app, &[c.op("person", &theirs, "create", None, s)]);
        let (_, c_cursor) = pull_list(&app, &c, 0);

        let mut m = person(V1, "孙丽");
        m["id_number"] = json!(number);
        m["phone"] = json!("13800000001");
        m["notes"] = json!("canary-note-A");
        let rs = a.push_ok(&app, &[a.op("person", &mine, "create", None, m)]);
        let text = serde_json::to_string(&rs).unwrap();
        assert_eq!(rs[0]["status"], "applied", "{rs:?}");
        assert!(!text.contains(&theirs), "foreign id in the answer: {text}");
        assert!(rs[0].get("merged_into").is_none(), "{rs:?}");

        // A's device keeps its record live, sees nothing of C's, and can go on editing it
        let (recs, _) = pull_list(&app, &a, 0);
        let text = serde_json::to_string(&recs).unwrap();
        assert!(!text.contains(&theirs), "foreign id in a pull: {text}");
        let own = recs.iter().find(|r| r["id"] == mine.as_str()).unwrap();
        assert_eq!(own["deleted"], false);
        let rs = a.push_ok(
            &app,
            &[a.op("person", &mine, "update", Some(1), json!({"notes": "n2"}))],
        );
        assert_eq!(rs[0]["status"], "applied", "{rs:?}");
        assert_eq!(rs[0]["id"], mine.as_str());

        // nothing of township B was written: C's record is at version 1 without A's values
        let (changes, _) = pull_list(&app, &c, c_cursor);
        assert!(changes.is_empty(), "C's scope changed: {changes:?}");
        let (recs, _) = pull_list(&app, &c, 0);
        let t = recs.iter().find(|r| r["id"] == theirs.as_str()).unwrap();
        assert_eq!(t["version"], 1);
        assert!(t["fields"].get("phone").is_none() && t["fields"].get("notes").is_none());
        assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM person_merges"), 0);

        // the pair waits for the county, the lowest supervisor whose scope holds both
        let county = supervisor(&app, "cs", Role::CountySupervisor, "130131");
        let town = supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");
        let pairs = |token: &str| -> Vec<BTreeSet<String>> {
            let r = app.get("/api/v1/supervise/duplicates", Some(token));
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    BTreeSet::from([
                        i["a"]["id"].as_str().unwrap().to_string(),
                        i["b"]["id"].as_str().unwrap().to_string(),
                    ])
                })
                .collect()
        };
        assert_eq!(
            pairs(&county),
            vec![BTreeSet::from([theirs.clone(), mine.clone()])]
        );
        assert!(pairs(&town).is_empty());
    }
);

// Issue 13, behaviours 1 and 9: a worker holding both villages still gets the automatic merge
// of a clean pair (the scope rule does not switch merging off), and the create merged away
// answers `merged_into`.
both!(
    duplicate_within_the_workers_scope_still_merges_at_once,
    |b| {
        let app = spawn_app(b);
        seed_units(&app);
        let a = worker(&app, "worker_a", &[V1, V2]);
        let number = id_number(12);
        let (p1, p2) = (new_id(), new_id());
        let mut s1 = person(V1, "钱红");
        s1["id_number"] = json!(number);
        let mut s2 = person(V2, "钱红");
        s2["id_number"] = json!(number);
        a.push_ok(&app, &[a.op("person", &p1, "create", None, s1)]);
        let rs = a.push_ok(&app, &[a.op("person", &p2, "create", None, s2)]);
        assert_eq!(rs[0]["status"], "applied");
        assert_eq!(rs[0]["merged_into"], p1.as_str(), "{rs:?}");
        assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM person_merges"), 1);
    }
);

// Issue 13, behaviour 2: a record moved out of a village reaches the old village's devices as
// an explicit tombstone with `reason: "moved"` in commit order (saying nothing of where it went),
// and an edit sent to it afterwards gets a clear `moved_out` answer.
both!(
    a_record_moved_out_of_a_village_reaches_its_old_devices,
    |b| {
        let app = spawn_app(b);
        seed_units(&app);
        let mover = worker(&app, "worker_m", &[V1, V2]);
        let old = worker(&app, "worker_o", &[V1]);
        let p = new_id();
        mover.push_ok(
            &app,
            &[mover.op("person", &p, "create", None, person(V1, "李梅"))],
        );
        let (_, cursor) = pull_list(&app, &old, 0);
        let (_, m_cursor) = pull_list(&app, &mover, 0);

        let later = new_id();
        let rs = mover.push_ok(
            &app,
            &[
                mover.op("person", &p, "update", Some(1), json!({"org_unit": V2})),
                mover.op("person", &later, "create", None, person(V1, "后来")),
            ],
        );
        assert_eq!(rs[0]["status"], "applied", "{rs:?}");
        assert_eq!(rs[0]["version"], 2);

        let (changes, _) = pull_list(&app, &old, cursor);
        let ids: Vec<&str> = changes.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![p.as_str(), later.as_str()], "{changes:?}");
        let gone = &changes[0];
        assert_eq!(gone["deleted"], true, "{gone:?}");
        assert_eq!(gone["reason"], "moved");
        assert_eq!(gone["version"], 2);
        assert!(gone["change_seq"].as_i64().unwrap() > cursor);
        let text = gone.to_string();
        assert!(!text.contains(V2) && !text.contains("李梅"), "{text}");
        // the mover, who still sees it, gets the record itself
        let (mine, _) = pull_list(&app, &mover, m_cursor);
        let rec = mine.iter().find(|r| r["id"] == p.as_str()).unwrap();
        assert_eq!(rec["deleted"], false);
        assert_eq!(rec["org_unit"], V2);
        assert!(rec.get("reason").is_none());

        // the old village's phone edited it in the same window
        let rs = old.push_ok(
            &app,
            &[old.op(
                "person",
                &p,
                "update",
                Some(1),
                json!({"phone": "13900000009"}),
            )],
        );
        assert_eq!(rs[0]["status"], "rejected", "{rs:?}");
        assert_eq!(rs[0]["code"], "moved_out");
        // a record that was never in its scope still answers out_of_scope
        let foreign = worker(&app, "worker_c", &[V3]);
        let theirs = new_id();
        foreign.push_ok(
            &app,
            &[foreign.op("person", &theirs, "create", None, person(V3, "外村"))],
        );
        let rs = old.push_ok(
            &app,
            &[old.op("person", &theirs, "update", Some(1), json!({"phone": "1"}))],
        );
        assert_eq!(rs[0]["code"], "out_of_scope");
        // a fresh snapshot of the old village no longer holds it
        let (snap, cursor) = pull_list(&app, &old, 0);
        assert!(snap.iter().all(|r| r["id"] != p.as_str()));

        // moved back, out and back again while the phone was away: it gets the record once,
        // at its latest version, no tombstone
        let mut base = 2;
        for unit in [V1, V2, V1] {
            let rs = mover.push_ok(
                &app,
                &[mover.op(
                    "person",
                    &p,
                    "update",
                    Some(base),
                    json!({"org_unit": unit}),
                )],
            );
            base = rs[0]["version"].as_i64().unwrap();
        }
        let (changes, cursor) = pull_list(&app, &old, cursor);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0]["id"], p.as_str());
        assert_eq!(changes[0]["deleted"], false);
        assert_eq!(changes[0]["version"], 5);

        // a supervisor's direct edit of org_unit moves a record the same way
        let q = new_id();
        mover.push_ok(
            &app,
            &[mover.op("person", &q, "create", None, person(V1, "张兰"))],
        );
        let (_, cursor) = pull_list(&app, &old, cursor);
        let ts = supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");
        let r = app.post(
            &format!("/api/v1/supervise/records/person/{q}"),
            Some(&ts),
            &json!({"base_version": 1, "set": {"org_unit": V2}, "reason": "户籍核实"}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        let (changes, _) = pull_list(&app, &old, cursor);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0]["id"], q.as_str());
        assert_eq!(changes[0]["deleted"], true);
        assert_eq!(changes[0]["reason"], "moved");
    }
);

// Issue 13, behaviour 3: bases see the ops earlier in the same batch. Create, update from v1,
// update from v1 again give the same record in one push as in three, without a conflict.
both!(bases_see_earlier_ops_of_the_same_batch, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    let one = worker(&app, "worker_a", &[V1]);
    let three = worker(&app, "worker_b", &[V1]);
    let run = |d: &Dev, id: &str, batched: bool| -> Vec<Value> {
        let ops = [
            d.op("person", id, "create", None, person(V1, "王芳")),
            d.op(
                "person",
                id,
                "update",
                Some(1),
                json!({"phone": "13700000001"}),
            ),
            d.op(
                "person",
                id,
                "update",
                Some(1),
                json!({"residence": "moved_out"}),
            ),
        ];
        if batched {
            d.push_ok(&app, &ops)
        } else {
            ops.iter()
                .flat_map(|o| d.push_ok(&app, std::slice::from_ref(o)))
                .collect()
        }
    };
    let (x, y) = (new_id(), new_id());
    let batched = run(&one, &x, true);
    let apart = run(&three, &y, false);
    for rs in [&batched, &apart] {
        assert!(rs.iter().all(|r| r["status"] == "applied"), "{rs:?}");
        assert_eq!(rs[2]["version"], 3, "{rs:?}");
        assert!(rs[2].get("conflicts").is_none(), "{rs:?}");
    }
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM conflicts"), 0);
    let (recs, _) = pull_list(&app, &one, 0);
    let get = |id: &str| recs.iter().find(|r| r["id"] == id).unwrap()["fields"].clone();
    assert_eq!(get(&x), get(&y));
    assert_eq!(get(&x)["residence"], "moved_out");
    assert_eq!(get(&x)["phone"], "13700000001");
});

// Issue 13, behaviours 4 and 9: after an automatic merge that changed nothing on the survivor
// (still version 1), an edit sent to the merged id is merged against what the device saw, not
// an empty record: no spurious conflict (4). The create merged away says so in its push result,
// also when resent, and a cursor-0 snapshot keeps the redirect tombstone (9).
both!(
    redirected_edit_after_identical_merge_is_merged_on_its_own_base,
    |b| {
        let app = spawn_app(b);
        seed_units(&app);
        let a = worker(&app, "worker_a", &[V1]);
        let w = worker(&app, "worker_b", &[V1]);
        let (p1, p2) = (new_id(), new_id());
        let mut s = person(V1, "周敏");
        s["id_number"] = json!(id_number(13));
        a.push_ok(&app, &[a.op("person", &p1, "create", None, s.clone())]);
        let create = w.op("person", &p2, "create", None, s);
        let first = w.push_ok(&app, std::slice::from_ref(&create));
        assert_eq!(first[0]["status"], "applied");
        let (recs, _) = pull_list(&app, &a, 0);
        let surv = recs.iter().find(|r| r["id"] == p1.as_str()).unwrap();
        assert_eq!(
            surv["version"], 1,
            "identical merge leaves the survivor alone"
        );
        assert!(recs
            .iter()
            .all(|r| r["id"] != p2.as_str() || r["deleted"] == true));

        // 4: the redirected edit of a field the survivor holds unchanged since the merge
        let rs = w.push_ok(
            &app,
            &[w.op(
                "person",
                &p2,
                "update",
                Some(1),
                json!({"residence": "moved_out"}),
            )],
        );
        assert_eq!(rs[0]["status"], "redirected", "{rs:?}");
        assert_eq!(rs[0]["canonical_id"], p1.as_str());
        assert!(rs[0].get("conflicts").is_none(), "{rs:?}");
        assert_eq!(rs[0]["version"], 2);
        let (recs, _) = pull_list(&app, &a, 0);
        let surv = recs.iter().find(|r| r["id"] == p1.as_str()).unwrap();
        assert_eq!(surv["fields"]["residence"], "moved_out");
        assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM conflicts"), 0);

        // 9: the create's answer named the survivor, and a resend answers the same
        assert_eq!(first[0]["merged_into"], p1.as_str(), "{first:?}");
        let again = w.push_ok(&app, &[create]);
        assert_eq!(again[0]["status"], "duplicate");
        assert_eq!(again[0]["first"]["merged_into"], p1.as_str());
        let (snap, _) = pull_list(&app, &w, 0);
        let tomb = snap
            .iter()
            .find(|r| r["id"] == p2.as_str())
            .expect("tombstone in a cursor-0 snapshot");
        assert_eq!(tomb["deleted"], true);
        assert_eq!(tomb["merged_into"], p1.as_str());
    }
);

// Issue 13, behaviour 5: a child record may only point at a record in the caller's scope. A
// foreign target and a target that does not exist get the same `bad_reference` answer, so the
// answer says nothing of whether the target exists.
both!(references_outside_the_scope_are_rejected_alike, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]);
    let c = worker(&app, "worker_c", &[V3]);
    let theirs = new_id();
    c.push_ok(
        &app,
        &[c.op("person", &theirs, "create", None, person(V3, "外村"))],
    );
    let mine = new_id();
    let visit = |p: &str| json!({"org_unit": V1, "person_id": p, "kind": "iud_check", "visit_date": "2026-11-21"});
    let (v1, v2, v3, v4) = (new_id(), new_id(), new_id(), new_id());
    let rs = a.push_ok(
        &app,
        &[
            a.op("visit", &v1, "create", None, visit(&theirs)),
            a.op("visit", &v2, "create", None, visit(&new_id())),
            a.op("person", &mine, "create", None, person(V1, "本村")),
            a.op("visit", &v3, "create", None, visit(&mine)),
            a.op("visit", &v3, "update", Some(1), json!({"person_id": theirs})),
            a.op("measure", &v4, "create", None,
                 json!({"org_unit": V1, "person_id": theirs, "method": "pills", "started_on": "2026-03-01"})),
        ],
    );
    let st: Vec<&str> = rs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(
        st,
        ["rejected", "rejected", "applied", "applied", "rejected", "rejected"],
        "{rs:?}"
    );
    for i in [0, 1, 4, 5] {
        assert_eq!(rs[i]["code"], "bad_reference", "{rs:?}");
    }
    assert_eq!(rs[0]["message"], rs[1]["message"]);
    assert!(!serde_json::to_string(&rs).unwrap().contains("外村"));
    let (recs, _) = pull_list(&app, &a, 0);
    let v = recs.iter().find(|r| r["id"] == v3.as_str()).unwrap();
    assert_eq!(v["fields"]["person_id"], mine.as_str());
    assert_eq!(v["version"], 1);
    assert!(recs
        .iter()
        .all(|r| r["id"] != v1.as_str() && r["id"] != v4.as_str()));
});
