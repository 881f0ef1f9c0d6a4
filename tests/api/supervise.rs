//! The supervisor API (issue 5): ledgers, history, conflict queue, duplicates and merge/undo,
//! data quality, device status and direct edits, over HTTP on both databases. Each test also
//! checks that a supervisor of another township gets 404 for the ids and empty lists, and that
//! person reads are audited.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use crate::common::{new_id, person, seed_units, worker, Dev, V1, V2, V3};
use fieldsync::auth::roles::Role;
use fieldsync::domain::resident_id;

const TOWNSHIP: &str = "130131102";
const OTHER_TOWNSHIP: &str = "130131103";

struct World {
    app: TestApp,
    a: Dev,
    w: Dev,
    far: Dev,
    ts: String,
    other: String,
    county: String,
}

fn world(b: Backend) -> World {
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1, V2]);
    let w = worker(&app, "worker_b", &[V1]);
    let far = worker(&app, "worker_far", &[V3]);
    let ts = supervisor(&app, "ts", Role::TownshipSupervisor, TOWNSHIP);
    let other = supervisor(&app, "ts_other", Role::TownshipSupervisor, OTHER_TOWNSHIP);
    let county = supervisor(&app, "cs", Role::CountySupervisor, COUNTY);
    World {
        app,
        a,
        w,
        far,
        ts,
        other,
        county,
    }
}

fn id_number(birth: &str, seq: u16) -> String {
    let d = NaiveDate::parse_from_str(birth, "%Y-%m-%d").unwrap();
    resident_id::generate("130131", d, seq, false)
}

fn n(app: &TestApp, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *app.conn()).unwrap();
    rows[0].n
}

fn audit_reads(app: &TestApp) -> i64 {
    n(
        app,
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'person_read'",
    )
}

/// The person ids named by the newest person_read audit row.
fn last_audited(app: &TestApp) -> BTreeSet<String> {
    use diesel::prelude::*;
    use fieldsync::db::schema::audit_log;
    let t: Option<String> = audit_log::table
        .filter(audit_log::action.eq("person_read"))
        .order(audit_log::id.desc())
        .select(audit_log::target_ids)
        .first(&mut *app.conn())
        .unwrap();
    serde_json::from_str(&t.unwrap()).unwrap()
}

fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, Some(token));
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.body
}

fn post_ok(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let r = app.post(path, Some(token), &body);
    assert_eq!(r.status, 200, "POST {path}: {:?}", r.body);
    r.body
}

fn ids_of(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every page of a list, following `next_after`.
fn all_pages(app: &TestApp, path: &str, token: &str, limit: usize) -> (Vec<Value>, i64) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut after: Option<String> = None;
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let mut p = format!("{path}{sep}limit={limit}");
        if let Some(a) = &after {
            p.push_str(&format!("&after={a}"));
        }
        let body = get_ok(app, &p, token);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        out.extend(items.iter().cloned());
        pages += 1;
        assert!(pages < 100);
        match body["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return (out, body["total"].as_i64().unwrap()),
        }
    }
}

both!(ledgers_are_scoped_filtered_paged_masked_and_audited, |b| {
    let World {
        app,
        a,
        far,
        ts,
        other,
        county,
        ..
    } = world(b);
    let mut ops = Vec::new();
    let mut mine = Vec::new();
    for i in 0..5 {
        let id = new_id();
        let mut p = person(V1, &format!("王{i}"));
        p["id_number"] = json!(id_number("1990-02-03", 100 + 2 * i));
        ops.push(a.op("person", &id, "create", None, p));
        mine.push(id);
    }
    for (name, birth, sex) in [
        ("李芳", "2000-05-05", "female"),
        ("李强", "1960-01-01", "male"),
    ] {
        let id = new_id();
        let mut p = person(V2, name);
        p["birth_date"] = json!(birth);
        p["sex"] = json!(sex);
        ops.push(a.op("person", &id, "create", None, p));
        mine.push(id);
    }
    a.push_ok(&app, &ops);
    let theirs = new_id();
    far.push_ok(
        &app,
        &[far.op("person", &theirs, "create", None, person(V3, "外镇"))],
    );

    // every page, no duplicates, only our township, ID numbers masked, one audit row per page
    let before = audit_reads(&app);
    let (items, total) = all_pages(&app, "/api/v1/supervise/person", &ts, 3);
    assert_eq!(total, 7);
    assert_eq!(items.len(), 7);
    let got: BTreeSet<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, mine.iter().cloned().collect());
    assert!(items
        .iter()
        .all(|i| i["org_unit"].as_str().unwrap().starts_with(TOWNSHIP)));
    let masked: Vec<&str> = items
        .iter()
        .filter_map(|i| i["fields"]["id_number"].as_str())
        .collect();
    assert_eq!(masked.len(), 5);
    assert!(masked.iter().all(|m| m.contains("********")), "{masked:?}");
    assert_eq!(audit_reads(&app), before + 3);
    // the order is stable: by id
    let order: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);

    // filters
    let total_of = |q: &str| {
        get_ok(&app, &format!("/api/v1/supervise/person?{q}"), &ts)["total"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(total_of(&format!("village={V2}")), 2);
    assert_eq!(total_of("name=%E6%9D%8E%E8%8A%B3"), 1); // 李芳
    assert_eq!(total_of("name_prefix=%E6%9D%8E"), 2); // 李
    assert_eq!(
        total_of(&format!("id_number={}", id_number("1990-02-03", 104))),
        1
    );
    assert_eq!(total_of("sex=male"), 1);
    assert_eq!(total_of("min_age=60"), 1);
    assert_eq!(total_of("max_age=30"), 1);
    assert_eq!(total_of("min_age=30&max_age=40"), 5);
    assert_eq!(
        total_of("residence=resident&marital_status=first_marriage"),
        7
    );
    let r = app.get("/api/v1/supervise/person?sex=robot", Some(&ts));
    assert_eq!(r.status, 400);
    let r = app.get("/api/v1/supervise/household?name=x", Some(&ts));
    assert_eq!(r.status, 400);
    let r = app.get("/api/v1/supervise/spaceship", Some(&ts));
    assert_eq!(r.status, 404);
    // the audit row names exactly the persons shown
    get_ok(&app, &format!("/api/v1/supervise/person?village={V2}"), &ts);
    assert_eq!(last_audited(&app), mine[5..].iter().cloned().collect());
    // a filter naming a village outside the subtree finds nothing
    assert_eq!(total_of(&format!("village={V3}")), 0);

    // another township sees only its own; the county sees all
    let (theirs_items, t) = all_pages(&app, "/api/v1/supervise/person", &other, 2);
    assert_eq!(t, 1);
    assert_eq!(ids_of(&Value::Array(theirs_items)), vec![theirs.clone()]);
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/person", &county)["total"],
        8
    );
    // workers and admins may not call it
    let r = app.get("/api/v1/supervise/person", Some(&a.token));
    assert_eq!(r.status, 403);
});

both!(one_record_with_links_and_history, |b| {
    let World {
        app, a, ts, other, ..
    } = world(b);
    let (hh, p, birth, m, v, child) = (new_id(), new_id(), new_id(), new_id(), new_id(), new_id());
    let mut mother = person(V1, "赵敏");
    mother["household_id"] = json!(hh);
    mother["id_number"] = json!(id_number("1990-02-03", 120));
    a.push_ok(
        &app,
        &[
            a.op("household", &hh, "create", None, json!({"org_unit": V1, "household_no": "001", "head_name": "赵刚"})),
            a.op("person", &p, "create", None, mother),
            a.op("person", &child, "create", None, json!({"org_unit": V1, "name": "赵小", "sex": "male", "birth_date": "2020-03-01", "household_id": hh})),
            a.op("birth", &birth, "create", None, json!({"org_unit": V1, "mother_id": p, "child_id": child, "birth_date": "2020-03-01", "sex": "male", "parity": 1})),
            a.op("measure", &m, "create", None, json!({"org_unit": V1, "person_id": p, "method": "iud_insertion", "started_on": "2020-06-01"})),
            a.op("visit", &v, "create", None, json!({"org_unit": V1, "person_id": p, "kind": "iud_check", "visit_date": "2026-11-01"})),
        ],
    );
    a.push_ok(
        &app,
        &[a.op(
            "person",
            &p,
            "update",
            Some(1),
            json!({"marital_status": "remarried", "phone": "13800000000"}),
        )],
    );

    let before = audit_reads(&app);
    let d = get_ok(&app, &format!("/api/v1/supervise/person/{p}"), &ts);
    assert_eq!(
        d["record"]["fields"]["id_number"],
        id_number("1990-02-03", 120),
        "full in the detail"
    );
    assert_eq!(d["entity_label"]["zh"], "人员");
    assert_eq!(d["labels"]["name"]["zh"], "姓名");
    let linked: BTreeSet<(String, String)> = d["linked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["record"]["entity"].as_str().unwrap().to_string(),
                l["record"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (e, id) in [
        ("household", &hh),
        ("birth", &birth),
        ("measure", &m),
        ("visit", &v),
    ] {
        assert!(
            linked.contains(&(e.to_string(), id.clone())),
            "{e} linked: {linked:?}"
        );
    }
    assert_eq!(audit_reads(&app), before + 1);
    assert!(last_audited(&app).contains(&p));
    // a household shows its members; reading them is audited too
    let d = get_ok(&app, &format!("/api/v1/supervise/household/{hh}"), &ts);
    let members: BTreeSet<String> = d["linked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["record"]["entity"] == "person")
        .map(|l| l["record"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, BTreeSet::from([p.clone(), child.clone()]));
    assert_eq!(last_audited(&app), members);
    // a birth shows mother and child
    let d = get_ok(&app, &format!("/api/v1/supervise/birth/{birth}"), &ts);
    assert_eq!(d["linked"].as_array().unwrap().len(), 2);

    // history: two versions, what changed, by whom and which device; the ops
    let h = get_ok(&app, &format!("/api/v1/supervise/person/{p}/history"), &ts);
    let vs = h["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[1]["device_id"], a.device_id.as_str());
    assert_eq!(vs[1]["username"], "worker_a");
    let changed: BTreeSet<&str> = vs[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(changed, BTreeSet::from(["marital_status", "phone"]));
    assert_eq!(vs[1]["changes"][0]["from"], "first_marriage");
    assert_eq!(h["ops"].as_array().unwrap().len(), 2);
    assert!(last_audited(&app).contains(&p));

    // another township: 404 for each, and no audit row
    let before = audit_reads(&app);
    for path in [
        format!("/api/v1/supervise/person/{p}"),
        format!("/api/v1/supervise/person/{p}/history"),
        format!("/api/v1/supervise/household/{hh}"),
        format!("/api/v1/supervise/birth/{birth}/history"),
        format!("/api/v1/supervise/person/{}", new_id()),
    ] {
        assert_eq!(app.get(&path, Some(&other)).status, 404, "{path}");
    }
    assert_eq!(audit_reads(&app), before);
});

/// Two devices edit the same review field from version 1: one open conflict.
fn make_conflict(
    app: &TestApp,
    a: &Dev,
    w: &Dev,
    field: &str,
    va: &str,
    vw: &str,
) -> (String, String) {
    let id = new_id();
    a.push_ok(
        app,
        &[a.op("person", &id, "create", None, person(V1, "冲突"))],
    );
    a.push_ok(
        app,
        &[a.op("person", &id, "update", Some(1), json!({field: va}))],
    );
    let r = w.push_ok(
        app,
        &[w.op("person", &id, "update", Some(1), json!({field: vw}))],
    );
    let c = r[0]["conflicts"][0]["id"]
        .as_str()
        .expect("a conflict")
        .to_string();
    (id, c)
}

both!(conflict_queue_resolve_reopen_bulk, |b| {
    let World {
        app,
        a,
        w,
        ts,
        other,
        ..
    } = world(b);
    let (_, cursor) = w.pull_all(&app, 0);
    let (pid, cid) = make_conflict(&app, &a, &w, "marital_status", "divorced", "widowed");
    let (_, cursor) = w.pull_all(&app, cursor);

    let page = get_ok(&app, "/api/v1/supervise/conflicts?status=open", &ts);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], cid.as_str());
    assert_eq!(page["items"][0]["field_label"]["zh"], "婚姻状况");
    assert_eq!(
        get_ok(
            &app,
            &format!("/api/v1/supervise/conflicts?village={V2}"),
            &ts
        )["total"],
        0
    );
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/conflicts?entity=household", &ts)["total"],
        0
    );
    let d = get_ok(&app, &format!("/api/v1/supervise/conflicts/{cid}"), &ts);
    assert_eq!(d["conflict"]["base_value"], "first_marriage");
    assert_eq!(d["conflict"]["server_value"], "divorced");
    assert_eq!(d["conflict"]["device_value"], "widowed");
    assert_eq!(d["current_value"], "divorced");
    assert!(last_audited(&app).contains(&pid));

    // another township: empty list, 404 for each id route
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/conflicts?status=all", &other)["total"],
        0
    );
    assert_eq!(
        app.get(&format!("/api/v1/supervise/conflicts/{cid}"), Some(&other))
            .status,
        404
    );
    let r = app.post(
        &format!("/api/v1/supervise/conflicts/{cid}/resolve"),
        Some(&other),
        &json!({"take": "device", "reason": "x"}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/conflicts/{cid}/reopen"),
            Some(&other),
            &json!({})
        )
        .status,
        404
    );
    let r = post_ok(
        &app,
        "/api/v1/supervise/conflicts/resolve-bulk",
        &other,
        json!({"ids": [cid], "take": "device", "reason": "x"}),
    );
    assert_eq!(r[0]["status"], "not_found");

    // a reason is required; a bad value is refused like a device's
    let path = format!("/api/v1/supervise/conflicts/{cid}/resolve");
    assert_eq!(
        app.post(&path, Some(&ts), &json!({"take": "device", "reason": " "}))
            .status,
        422
    );
    assert_eq!(
        app.post(
            &path,
            Some(&ts),
            &json!({"take": "value", "value": "robot", "reason": "x"})
        )
        .status,
        422
    );
    let r = post_ok(
        &app,
        &path,
        &ts,
        json!({"take": "device", "reason": "入户核实"}),
    );
    assert_eq!(r["conflict"]["status"], "resolved");
    assert_eq!(r["version"], 3);
    assert_eq!(
        app.post(
            &path,
            Some(&ts),
            &json!({"take": "server", "reason": "again"})
        )
        .status,
        409
    );
    // the resolution reaches the device's next pull: the record and the resolved conflict
    let pulled = w.pull(&app, cursor);
    let rec = pulled["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == pid.as_str())
        .expect("record pulled");
    assert_eq!(rec["fields"]["marital_status"], "widowed");
    assert_eq!(rec["version"], 3);
    let c = pulled["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cid.as_str())
        .expect("conflict pulled");
    assert_eq!(c["status"], "resolved");
    let h = get_ok(
        &app,
        &format!("/api/v1/supervise/person/{pid}/history"),
        &ts,
    );
    assert_eq!(h["conflicts"][0]["reason"], "入户核实");
    assert!(h["versions"][2]["device_id"].is_null());

    // take a typed value
    let (p2, c2) = make_conflict(&app, &a, &w, "residence", "moved_out", "moved_in");
    let r = post_ok(
        &app,
        &format!("/api/v1/supervise/conflicts/{c2}/resolve"),
        &ts,
        json!({"take": "value", "value": "resident", "reason": "核实"}),
    );
    assert_eq!(r["conflict"]["status"], "resolved");
    let d = get_ok(&app, &format!("/api/v1/supervise/person/{p2}"), &ts);
    assert_eq!(d["record"]["fields"]["residence"], "resident");

    // bulk
    let (p3, c3) = make_conflict(&app, &a, &w, "relation", "spouse", "parent");
    let (p4, c4) = make_conflict(&app, &a, &w, "relation", "child", "other");
    let r = post_ok(
        &app,
        "/api/v1/supervise/conflicts/resolve-bulk",
        &ts,
        json!({"ids": [c3, c4, cid, new_id()], "take": "server", "reason": "以服务器为准"}),
    );
    let st: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["resolved", "resolved", "not_resolvable", "not_found"]);
    assert_eq!(
        get_ok(&app, &format!("/api/v1/supervise/person/{p3}"), &ts)["record"]["fields"]
            ["relation"],
        "spouse"
    );
    assert_eq!(
        get_ok(&app, &format!("/api/v1/supervise/person/{p4}"), &ts)["record"]["fields"]
            ["relation"],
        "child"
    );
    assert_eq!(get_ok(&app, "/api/v1/supervise/conflicts", &ts)["total"], 0);

    // a closed `latest` conflict can be reopened, then resolved
    let (_, c5) = make_conflict(&app, &a, &w, "phone", "13800000001", "13800000002");
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/conflicts?status=closed", &ts)["total"],
        1
    );
    let (_, cursor) = w.pull_all(&app, 0);
    let r = post_ok(
        &app,
        &format!("/api/v1/supervise/conflicts/{c5}/reopen"),
        &ts,
        json!({}),
    );
    assert_eq!(r["status"], "open");
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/conflicts/{c5}/reopen"),
            Some(&ts),
            &json!({})
        )
        .status,
        409
    );
    let pulled = w.pull(&app, cursor);
    assert!(pulled["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == c5.as_str() && c["status"] == "open"));
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/conflicts/{cid}/reopen"),
            Some(&ts),
            &json!({})
        )
        .status,
        409
    );
    // pages
    let (all, total) = all_pages(&app, "/api/v1/supervise/conflicts?status=all", &ts, 2);
    assert_eq!(total, 5);
    assert_eq!(all.len(), 5);
    assert_eq!(
        n(
            &app,
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'conflict_resolved'"
        ),
        3
    );
});

both!(duplicates_merge_then_undo_reach_devices, |b| {
    let World {
        app,
        a,
        w,
        ts,
        other,
        ..
    } = world(b);
    let (p1, p2, visit) = (new_id(), new_id(), new_id());
    let num = id_number("1990-02-03", 150);
    let mut s1 = person(V1, "孙丽");
    s1["id_number"] = json!(num);
    s1["phone"] = json!("13900000001");
    let mut s2 = person(V1, "孙莉");
    s2["id_number"] = json!(num);
    a.push_ok(&app, &[a.op("person", &p1, "create", None, s1)]);
    w.push_ok(&app, &[
        w.op("person", &p2, "create", None, s2),
        w.op("visit", &visit, "create", None, json!({"org_unit": V1, "person_id": p2, "kind": "iud_check", "visit_date": "2026-11-21"})),
    ]);
    // a weaker signal: same name, birth date and village, no ID number
    let (p3, p4) = (new_id(), new_id());
    a.push_ok(
        &app,
        &[
            a.op("person", &p3, "create", None, person(V2, "周红")),
            a.op("person", &p4, "create", None, person(V2, "周红")),
        ],
    );

    let before = audit_reads(&app);
    let (items, total) = all_pages(&app, "/api/v1/supervise/duplicates", &ts, 1);
    assert_eq!(total, 2);
    // one new audit row per page, naming the pair it showed
    assert_eq!(audit_reads(&app), before + 2);
    let pair_of = |i: &Value| {
        BTreeSet::from([
            i["a"]["id"].as_str().unwrap().to_string(),
            i["b"]["id"].as_str().unwrap().to_string(),
        ])
    };
    assert_eq!(last_audited(&app), pair_of(&items[1]));
    let signals: BTreeSet<&str> = items
        .iter()
        .map(|i| i["signal"].as_str().unwrap())
        .collect();
    assert_eq!(signals, BTreeSet::from(["id_number", "name_birth_date"]));
    let strong = items.iter().find(|i| i["signal"] == "id_number").unwrap();
    assert_eq!(strong["disagreements"], json!(["name"]));
    assert!(strong["a"]["fields"]["id_number"]
        .as_str()
        .unwrap()
        .contains('*'));
    let before = audit_reads(&app);
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/duplicates", &other)["total"],
        0
    );
    assert_eq!(audit_reads(&app), before, "no persons shown, no row");
    let before = audit_reads(&app);
    get_ok(&app, "/api/v1/supervise/duplicates", &ts);
    assert_eq!(audit_reads(&app), before + 1);
    assert_eq!(
        last_audited(&app),
        BTreeSet::from([p1.clone(), p2.clone(), p3.clone(), p4.clone()])
    );

    // merge p2 into p1, keeping p2's spelling of the name
    let (_, cursor) = w.pull_all(&app, 0);
    let body = json!({"survivor_id": p1, "merged_id": p2, "fields": {"name": "merged"}});
    assert_eq!(
        app.post("/api/v1/supervise/duplicates/merge", Some(&other), &body)
            .status,
        404
    );
    let r = post_ok(
        &app,
        "/api/v1/supervise/duplicates/merge",
        &ts,
        body.clone(),
    );
    let merge_id = r["merge_id"].as_str().unwrap().to_string();
    assert_eq!(r["survivor"]["fields"]["name"], "孙莉");
    assert_eq!(r["repointed"], json!([visit]));
    assert_eq!(
        app.post("/api/v1/supervise/duplicates/merge", Some(&ts), &body)
            .status,
        409
    );
    let (recs, cursor) = w.pull_all(&app, cursor);
    assert_eq!(recs[&p2]["deleted"], true);
    assert_eq!(recs[&p2]["merged_into"], p1.as_str());
    assert_eq!(recs[&p1]["fields"]["name"], "孙莉");
    assert_eq!(recs[&visit]["fields"]["person_id"], p1.as_str());
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/duplicates", &ts)["total"],
        1
    );

    // undo: both persons as they were, the visit pointed back; devices receive each step
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/merges/{merge_id}/undo"),
            Some(&other),
            &json!({})
        )
        .status,
        404
    );
    let r = post_ok(
        &app,
        &format!("/api/v1/supervise/merges/{merge_id}/undo"),
        &ts,
        json!({}),
    );
    assert_eq!(r["repointed"], json!([visit]));
    let (recs, _) = w.pull_all(&app, cursor);
    assert_eq!(recs[&p1]["fields"]["name"], "孙丽");
    assert_eq!(recs[&p2]["deleted"], false);
    assert!(recs[&p2].get("merged_into").is_none_or(Value::is_null));
    assert_eq!(recs[&p2]["fields"]["name"], "孙莉");
    assert_eq!(recs[&visit]["fields"]["person_id"], p2.as_str());
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/merges/{merge_id}/undo"),
            Some(&ts),
            &json!({})
        )
        .status,
        409
    );
    // a fresh snapshot agrees
    let (fresh, _) = a.pull_all(&app, 0);
    assert_eq!(fresh[&p2]["deleted"], false);
    assert_eq!(fresh[&visit]["fields"]["person_id"], p2.as_str());
    assert_eq!(n(&app, "SELECT COUNT(*) AS n FROM audit_log WHERE action IN ('persons_merged', 'merge_undone')"), 2);
    // an undone pair is two persons: a later edit that makes them agree merges nothing
    let r = w.push_ok(
        &app,
        &[w.op(
            "person",
            &p2,
            "update",
            Some(2),
            json!({"name": "孙丽", "phone": "13900000001"}),
        )],
    );
    assert_eq!(r[0]["status"], "applied", "{r:?}");
    let (fresh, _) = a.pull_all(&app, 0);
    assert_eq!(fresh[&p2]["deleted"], false);
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/duplicates", &ts)["total"],
        1
    );
});

both!(data_quality_flags_and_summary, |b| {
    let World {
        app,
        a,
        far,
        ts,
        other,
        ..
    } = world(b);
    let (p, m) = (new_id(), new_id());
    let mut bad = person(V1, "钱芳");
    bad["id_number"] = json!("11010519900203002X"); // wrong check digit
    a.push_ok(&app, &[
        a.op("person", &p, "create", None, bad),
        a.op("measure", &m, "create", None, json!({"org_unit": V1, "person_id": p, "method": "vasectomy", "started_on": "2026-01-05"})),
    ]);
    let mut bad2 = person(V2, "钱二");
    bad2["id_number"] = json!("11010519900203002X");
    bad2["name"] = json!("钱二");
    a.push_ok(&app, &[a.op("person", &new_id(), "create", None, bad2)]);
    let mut far_bad = person(V3, "外镇");
    far_bad["id_number"] = json!("11010519900203003X");
    far.push_ok(
        &app,
        &[far.op("person", &new_id(), "create", None, far_bad)],
    );

    let (items, total) = all_pages(&app, "/api/v1/supervise/flags", &ts, 1);
    assert!(total >= 3, "{items:?}");
    assert_eq!(items.len() as i64, total);
    assert!(items
        .iter()
        .all(|f| f["org_unit"].as_str().unwrap().starts_with(TOWNSHIP)));
    let method = items
        .iter()
        .find(|f| f["check"] == "method_sex")
        .expect("method_sex flag");
    assert_eq!(method["entity"], "measure");
    assert_eq!(method["record_id"], m.as_str());
    assert_eq!(method["zh"], "节育措施与性别不符");
    assert_eq!(method["link"], format!("/api/v1/supervise/measure/{m}"));
    let digit = get_ok(&app, "/api/v1/supervise/flags?check=id_check_digit", &ts);
    assert_eq!(digit["total"], 2);
    assert_eq!(
        get_ok(
            &app,
            &format!("/api/v1/supervise/flags?check=id_check_digit&village={V2}"),
            &ts
        )["total"],
        1
    );
    assert_eq!(
        app.get("/api/v1/supervise/flags?check=nonsense", Some(&ts))
            .status,
        400
    );
    let s = get_ok(&app, "/api/v1/supervise/flags/summary", &ts);
    assert_eq!(s["total"], total);
    let villages: Vec<&str> = s["villages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["village"].as_str().unwrap())
        .collect();
    assert_eq!(villages, [V1, V2]);
    assert_eq!(s["villages"][0]["name"], "东庄村");
    let c = s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "id_check_digit")
        .unwrap();
    assert_eq!(c["count"], 2);
    assert_eq!(c["zh"], "身份证号校验码错误");
    // another township sees only its own
    let theirs = get_ok(&app, "/api/v1/supervise/flags", &other);
    assert!(theirs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["org_unit"] == V3));
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/flags/summary", &other)["villages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // the flag clears when a later version passes (here: a supervisor's correction)
    let r = post_ok(
        &app,
        &format!("/api/v1/supervise/records/person/{p}"),
        &ts,
        json!({"base_version": 1, "set": {"id_number": "110105199002030021"}}),
    );
    assert_eq!(r["status"], "applied");
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/flags?check=id_check_digit", &ts)["total"],
        1
    );
});

both!(device_status_and_rejected_ops, |b| {
    let World {
        app,
        a,
        w,
        far,
        ts,
        other,
        ..
    } = world(b);
    let rs = a.push_ok(
        &app,
        &[
            a.op("person", &new_id(), "create", None, person(V1, "好")),
            a.op("person", &new_id(), "create", None, person(V3, "越界")),
        ],
    );
    assert_eq!(rs[1]["code"], "out_of_scope");
    w.pull_all(&app, 0);
    let (items, total) = all_pages(&app, "/api/v1/supervise/devices/status", &ts, 1);
    assert_eq!(total, 2);
    let mine = items
        .iter()
        .find(|d| d["device_id"] == a.device_id.as_str())
        .unwrap();
    assert_eq!(mine["username"], "worker_a");
    assert_eq!(mine["ops_last_day"], 2);
    assert_eq!(mine["ops_last_week"], 2);
    assert_eq!(mine["rejected_ops"], 1);
    assert_eq!(mine["app_version"], "1.0");
    assert!(mine["last_push_at"].is_i64());
    assert!(mine.get("clock_offset_ms").is_some());
    assert!(!items
        .iter()
        .any(|d| d["device_id"] == far.device_id.as_str()));
    // who has not synced for a day: nobody yet
    assert_eq!(
        get_ok(
            &app,
            "/api/v1/supervise/devices/status?inactive_days=1",
            &ts
        )["total"],
        0
    );
    assert_eq!(
        get_ok(
            &app,
            "/api/v1/supervise/devices/status?inactive_days=0",
            &ts
        )["total"],
        2
    );
    // rejected ops with payload and code
    let r = get_ok(
        &app,
        &format!("/api/v1/supervise/devices/{}/rejected", a.device_id),
        &ts,
    );
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["code"], "out_of_scope");
    assert_eq!(r["items"][0]["payload"]["set"]["name"], "越界");
    // another township: not listed, 404
    let theirs = get_ok(&app, "/api/v1/supervise/devices/status", &other);
    assert_eq!(
        ids_of(&json!(theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!({"id": d["device_id"]}))
            .collect::<Vec<_>>())),
        vec![far.device_id.clone()]
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/supervise/devices/{}/rejected", a.device_id),
            Some(&other)
        )
        .status,
        404
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/supervise/devices/{}/rejected", new_id()),
            Some(&ts)
        )
        .status,
        404
    );
});

both!(direct_edits_merge_like_device_ops, |b| {
    let World {
        app,
        a,
        w,
        ts,
        other,
        ..
    } = world(b);
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "吴兰"))],
    );
    let (_, cursor) = w.pull_all(&app, 0);
    let path = format!("/api/v1/supervise/records/person/{id}");
    // base_version is required
    assert_eq!(
        app.post(&path, Some(&ts), &json!({"set": {"relation": "spouse"}}))
            .status,
        400
    );
    assert_eq!(
        app.post(
            &path,
            Some(&ts),
            &json!({"base_version": 1, "set": {"sex": "robot"}})
        )
        .status,
        422
    );
    assert_eq!(
        app.post(
            &path,
            Some(&other),
            &json!({"base_version": 1, "set": {"relation": "spouse"}})
        )
        .status,
        404
    );
    assert_eq!(
        app.post(
            &path,
            Some(&ts),
            &json!({"base_version": 1, "set": {"org_unit": V3}})
        )
        .status,
        422
    );
    let r = post_ok(
        &app,
        &path,
        &ts,
        json!({"base_version": 1, "set": {"relation": "spouse"}, "reason": "核实"}),
    );
    assert_eq!(r["status"], "applied");
    assert_eq!(r["version"], 2);
    // the device receives it
    let (recs, _) = w.pull_all(&app, cursor);
    assert_eq!(recs[&id]["fields"]["relation"], "spouse");
    // a stale edit of a field changed since: a review conflict, like a device's
    a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(2),
            json!({"marital_status": "divorced"}),
        )],
    );
    let r = post_ok(
        &app,
        &path,
        &ts,
        json!({"base_version": 2, "set": {"marital_status": "widowed", "phone": "13700000000"}}),
    );
    assert_eq!(r["conflicts"][0]["field"], "marital_status");
    assert_eq!(r["conflicts"][0]["status"], "open");
    let d = get_ok(&app, &format!("/api/v1/supervise/person/{id}"), &ts);
    assert_eq!(d["record"]["fields"]["marital_status"], "divorced");
    assert_eq!(d["record"]["fields"]["phone"], "13700000000");
    assert_eq!(d["open_conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(
        n(
            &app,
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'supervisor_edit'"
        ),
        2
    );
    // moving a record within the subtree is allowed
    let r = post_ok(
        &app,
        &path,
        &ts,
        json!({"base_version": 4, "set": {"org_unit": V2}}),
    );
    assert_eq!(r["status"], "applied");
});

/// Pushes `ops` in an envelope carrying `sent_at`.
fn push_sent_at(app: &TestApp, dev: &Dev, ops: &[Value], sent_at: &str) -> Resp {
    app.post(
        "/api/v1/sync/push",
        Some(&dev.token),
        &json!({"ops": ops, "sent_at": sent_at}),
    )
}

/// Now on a device clock `skew` away from the server's, as a phone would write it.
fn device_clock(skew: chrono::Duration) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (chrono::Utc::now() + skew).with_timezone(&tz).to_rfc3339()
}

both!(device_clock_offset_measured_from_sent_at, |b| {
    let World { app, a, w, ts, .. } = world(b);
    let status_of = |dev: &Dev| -> Value {
        let body = get_ok(&app, "/api/v1/supervise/devices/status", &ts);
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == dev.device_id.as_str())
            .unwrap()
            .clone()
    };
    // a phone ten minutes ahead
    let r = push_sent_at(
        &app,
        &a,
        &[a.op("person", &new_id(), "create", None, person(V1, "钟快"))],
        &device_clock(chrono::Duration::minutes(10)),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["status"], "applied");
    // an old client without sent_at still syncs; its offset stays unmeasured
    w.push_ok(
        &app,
        &[w.op("person", &new_id(), "create", None, person(V1, "钟旧"))],
    );
    let s = status_of(&a);
    let ms = s["clock_offset_ms"].as_i64().expect("offset measured");
    assert!((590_000..=600_500).contains(&ms), "{ms}");
    assert_eq!(s["clock_skewed"], true);
    let s = status_of(&w);
    assert!(s["clock_offset_ms"].is_null(), "{s:?}");
    assert_eq!(s["clock_skewed"], false);
    // the latest push counts, an empty batch too: a phone 3 minutes behind is not flagged
    let r = push_sent_at(&app, &a, &[], &device_clock(chrono::Duration::minutes(-3)));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = status_of(&a);
    let ms = s["clock_offset_ms"].as_i64().unwrap();
    assert!((-181_000..=-179_000).contains(&ms), "{ms}");
    assert_eq!(s["clock_skewed"], false);
    // a sent_at that is not RFC 3339: 400 with its code, nothing applied
    let id = new_id();
    let r = push_sent_at(
        &app,
        &w,
        &[w.op("person", &id, "create", None, person(V1, "钟坏"))],
        "yesterday",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "bad_sent_at");
    assert_eq!(
        app.get(&format!("/api/v1/supervise/person/{id}"), Some(&ts))
            .status,
        404
    );
});

/// The ids of every page of `path` (sorted by the server), following the opaque cursors.
fn sorted_ids(app: &TestApp, path: &str, token: &str, limit: usize) -> Vec<String> {
    let (items, total) = all_pages(app, path, token, limit);
    assert_eq!(items.len() as i64, total, "{path}");
    ids_of(&json!(items))
}

both!(
    ledger_sort_keyset_pages_stable_with_nulls_and_unknown_keys,
    |b| {
        let World {
            app, a, ts, other, ..
        } = world(b);
        // (name, birth date, village): ties on birth date and on name
        let people = [
            ("丁一", "1990-01-01", V1),
            ("甲二", "1985-05-05", V2),
            ("丁一", "1990-01-01", V2),
            ("乙三", "2000-12-12", V1),
            ("丙四", "1985-05-05", V1),
            ("丁一", "1970-07-07", V2),
        ];
        let mut rows: Vec<(String, String, String, String)> = Vec::new();
        let mut ops = Vec::new();
        for (name, birth, village) in people {
            let id = new_id();
            let mut p = person(village, name);
            p["birth_date"] = json!(birth);
            ops.push(a.op("person", &id, "create", None, p));
            rows.push((id, name.into(), birth.into(), village.into()));
        }
        a.push_ok(&app, &ops);
        let expect = |key: fn(&(String, String, String, String)) -> String, desc: bool| {
            let mut r = rows.clone();
            r.sort_by(|x, y| (key(x), &x.0).cmp(&(key(y), &y.0)));
            if desc {
                r.reverse();
            }
            r.into_iter().map(|x| x.0).collect::<Vec<_>>()
        };
        let by_birth = expect(|r| r.2.clone(), false);
        // every page size gives the same order, ties broken by id
        for limit in [1, 2, 4, 50] {
            assert_eq!(
                sorted_ids(&app, "/api/v1/supervise/person?sort=birth_date", &ts, limit),
                by_birth
            );
        }
        assert_eq!(
            sorted_ids(&app, "/api/v1/supervise/person?sort=-birth_date", &ts, 2),
            expect(|r| r.2.clone(), true)
        );
        assert_eq!(
            sorted_ids(&app, "/api/v1/supervise/person?sort=name", &ts, 1),
            expect(|r| r.1.clone(), false)
        );
        assert_eq!(
            sorted_ids(&app, "/api/v1/supervise/person?sort=-org_unit", &ts, 3),
            expect(|r| r.3.clone(), true)
        );
        let mut by_id: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        by_id.sort();
        assert_eq!(sorted_ids(&app, "/api/v1/supervise/person", &ts, 4), by_id);
        by_id.reverse();
        assert_eq!(
            sorted_ids(&app, "/api/v1/supervise/person?sort=-id", &ts, 4),
            by_id
        );
        let page = get_ok(
            &app,
            "/api/v1/supervise/person?sort=-birth_date&limit=2",
            &ts,
        );
        assert_eq!(page["sort"], "-birth_date");
        // filters still apply
        assert_eq!(
            sorted_ids(
                &app,
                &format!("/api/v1/supervise/person?sort=-birth_date&village={V1}"),
                &ts,
                1
            ),
            expect(|r| r.2.clone(), true)
                .into_iter()
                .filter(|id| rows.iter().any(|r| &r.0 == id && r.3 == V1))
                .collect::<Vec<_>>()
        );
        // the most recently changed first
        let edited = &rows[3].0;
        post_ok(
            &app,
            &format!("/api/v1/supervise/records/person/{edited}"),
            &ts,
            json!({"base_version": 1, "set": {"relation": "spouse"}}),
        );
        let latest = sorted_ids(&app, "/api/v1/supervise/person?sort=-updated_at", &ts, 2);
        assert_eq!(&latest[0], edited);
        assert_eq!(latest.len(), rows.len());

        // keyset pages are stable: a record added before the cursor is neither shown nor repeats one
        let first = get_ok(
            &app,
            "/api/v1/supervise/person?sort=birth_date&limit=2",
            &ts,
        );
        assert_eq!(ids_of(&first["items"]), by_birth[..2].to_vec());
        let cursor = first["next_after"].as_str().unwrap().to_string();
        // the cursor names the sort and a record, never the sort value (no dates or names in URLs)
        let decoded = {
            use base64::Engine;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&cursor)
                .unwrap();
            String::from_utf8(raw).unwrap()
        };
        let fields: Value = serde_json::from_str(&decoded).unwrap();
        let keys: Vec<&String> = fields.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "s"], "{decoded}");
        let by_name = get_ok(&app, "/api/v1/supervise/person?sort=name&limit=1", &ts);
        let name_cursor = by_name["next_after"].as_str().unwrap();
        let first_name = by_name["items"][0]["fields"]["name"].as_str().unwrap();
        assert!(!name_cursor.contains(first_name));
        let mut early = person(V1, "戊五");
        early["birth_date"] = json!("1960-01-01");
        a.push_ok(&app, &[a.op("person", &new_id(), "create", None, early)]);
        let rest = get_ok(
            &app,
            &format!("/api/v1/supervise/person?sort=birth_date&limit=50&after={cursor}"),
            &ts,
        );
        assert_eq!(ids_of(&rest["items"]), by_birth[2..].to_vec());

        // NULLs come last both ways, and paging passes through them
        let mother = &rows[0].0;
        let mut preg = Vec::new();
        let mut pops = Vec::new();
        for expected in [Some("2027-03-01"), None, Some("2027-01-15"), None] {
            let id = new_id();
            let mut set = json!({"org_unit": V1, "person_id": mother, "status": "ongoing"});
            if let Some(d) = expected {
                set["expected_date"] = json!(d);
            }
            pops.push(a.op("pregnancy", &id, "create", None, set));
            preg.push((id, expected));
        }
        a.push_ok(&app, &pops);
        let mut nulls: Vec<String> = preg
            .iter()
            .filter(|p| p.1.is_none())
            .map(|p| p.0.clone())
            .collect();
        nulls.sort();
        let asc = [vec![preg[2].0.clone(), preg[0].0.clone()], nulls.clone()].concat();
        assert_eq!(
            sorted_ids(
                &app,
                "/api/v1/supervise/pregnancy?sort=expected_date",
                &ts,
                1
            ),
            asc
        );
        nulls.reverse();
        let desc = [vec![preg[0].0.clone(), preg[2].0.clone()], nulls].concat();
        assert_eq!(
            sorted_ids(
                &app,
                "/api/v1/supervise/pregnancy?sort=-expected_date",
                &ts,
                1
            ),
            desc
        );

        // keys outside the whitelist, and cursors of another sort, are 400 with a stable code
        for bad in [
            "/api/v1/supervise/person?sort=id_number",
            "/api/v1/supervise/person?sort=phone",
            "/api/v1/supervise/person?sort=-",
            "/api/v1/supervise/pregnancy?sort=name",
            "/api/v1/supervise/person?sort=name;DROP",
        ] {
            let r = app.get(bad, Some(&ts));
            assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
            assert_eq!(r.body["code"], "unknown_sort_key", "{bad}");
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
        let name_cursor = get_ok(&app, "/api/v1/supervise/person?sort=name&limit=1", &ts)
            ["next_after"]
            .as_str()
            .unwrap()
            .to_string();
        for bad in [
            format!("/api/v1/supervise/person?sort=birth_date&after={name_cursor}"),
            "/api/v1/supervise/person?sort=birth_date&after=bm90LWpzb24".to_string(),
            "/api/v1/supervise/person?sort=updated_at&after=%25%25".to_string(),
        ] {
            let r = app.get(&bad, Some(&ts));
            assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
            assert_eq!(r.body["code"], "bad_cursor", "{bad}");
        }
        // NUL in a text parameter or a forged cursor: 400, never a database error
        let nul_cursor = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({"s": "name", "id": format!("{}\u{0}", rows[0].0)}).to_string())
        };
        for bad in [
            format!("/api/v1/supervise/person?sort=name&after={nul_cursor}"),
            "/api/v1/supervise/person?name=a%00b".to_string(),
        ] {
            let r = app.get(&bad, Some(&ts));
            assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        }
        // a cursor naming a record outside the caller's scope reads nothing of it: its sort
        // value is looked up within the scope, so the page is as if after an unknown record
        let other_first = get_ok(&app, "/api/v1/supervise/person?sort=name&limit=1", &ts);
        let foreign = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({"s": "name", "id": other_first["items"][0]["id"]}).to_string())
        };
        assert_eq!(
            get_ok(
                &app,
                &format!("/api/v1/supervise/person?sort=name&after={foreign}"),
                &other
            )["items"],
            json!([])
        );
        // another township sees nothing, sorted or not
        assert_eq!(
            get_ok(&app, "/api/v1/supervise/person?sort=name", &other)["total"],
            0
        );
    }
);

both!(
    dismissed_duplicates_stay_unlisted_and_unmerged_until_undismissed,
    |b| {
        let World {
            app,
            a,
            w,
            ts,
            other,
            ..
        } = world(b);
        // a strong pair (same ID number, names differ) and a weak one (same name, birth date, village)
        let (p1, p2, p3, p4) = (new_id(), new_id(), new_id(), new_id());
        let num = id_number("1990-02-03", 160);
        let mut s1 = person(V1, "冯丽");
        s1["id_number"] = json!(num);
        let mut s2 = person(V1, "冯莉");
        s2["id_number"] = json!(num);
        a.push_ok(
            &app,
            &[
                a.op("person", &p1, "create", None, s1),
                a.op("person", &p3, "create", None, person(V2, "陈红")),
                a.op("person", &p4, "create", None, person(V2, "陈红")),
            ],
        );
        w.push_ok(&app, &[w.op("person", &p2, "create", None, s2)]);
        let listed = |token: &str| -> BTreeSet<String> {
            let (items, total) = all_pages(&app, "/api/v1/supervise/duplicates", token, 50);
            assert_eq!(items.len() as i64, total);
            items
                .iter()
                .map(|i| i["key"].as_str().unwrap().to_string())
                .collect()
        };
        let key = |x: &str, y: &str| {
            if x < y {
                format!("{x}|{y}")
            } else {
                format!("{y}|{x}")
            }
        };
        assert_eq!(listed(&ts), BTreeSet::from([key(&p1, &p2), key(&p3, &p4)]));
        let dismissals = || {
            n(
                &app,
                "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'duplicate_dismissed'",
            )
        };

        // scoped, checked, audited
        let dismiss = "/api/v1/supervise/duplicates/dismiss";
        let weak = json!({"a_id": p4, "b_id": p3, "reason": "入户核实为两人"});
        assert_eq!(app.post(dismiss, Some(&other), &weak).status, 404);
        let r = app.post(
            dismiss,
            Some(&ts),
            &json!({"a_id": p3, "b_id": new_id(), "reason": "x"}),
        );
        assert_eq!(r.status, 404);
        let r = app.post(
            dismiss,
            Some(&ts),
            &json!({"a_id": p3, "b_id": p3, "reason": "x"}),
        );
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (422, Some("same_person"))
        );
        let r = app.post(
            dismiss,
            Some(&ts),
            &json!({"a_id": p3, "b_id": p4, "reason": "  "}),
        );
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (422, Some("bad_reason"))
        );
        let r = app.post(
            dismiss,
            Some(&ts),
            &json!({"a_id": p3, "b_id": p4, "reason": "a\u{0}b"}),
        );
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(
            app.post(dismiss, Some(&ts), &json!({"a_id": p3, "b_id": p4}))
                .status,
            400
        );
        assert_eq!(dismissals(), 0);
        assert_eq!(listed(&ts).len(), 2);

        let d = post_ok(&app, dismiss, &ts, weak.clone());
        assert_eq!(d["person_a"], std::cmp::min(&p3, &p4).as_str());
        assert_eq!(d["reason"], "入户核实为两人");
        assert_eq!(listed(&ts), BTreeSet::from([key(&p1, &p2)]));
        assert_eq!(dismissals(), 1);
        // dismissing again answers the stored dismissal
        let again = post_ok(&app, dismiss, &ts, weak.clone());
        assert_eq!(again["dismissed_at"], d["dismissed_at"]);
        assert_eq!(dismissals(), 1);

        // the strong pair: dismissed, it is neither listed nor merged when the two come to agree
        post_ok(
            &app,
            dismiss,
            &ts,
            json!({"a_id": p1, "b_id": p2, "reason": "双胞胎，身份证号录错"}),
        );
        assert!(listed(&ts).is_empty());
        let r = w.push_ok(
            &app,
            &[w.op("person", &p2, "update", Some(1), json!({"name": "冯丽"}))],
        );
        assert_eq!(r[0]["status"], "applied", "{r:?}");
        let (recs, _) = a.pull_all(&app, 0);
        assert_eq!(recs[&p2]["deleted"], false);
        assert!(recs[&p2].get("merged_into").is_none_or(Value::is_null));
        assert!(listed(&ts).is_empty());
        assert_eq!(
            n(&app, "SELECT COUNT(*) AS n FROM person_merges"),
            0,
            "a dismissed pair is never merged automatically"
        );

        // the dismissed pairs, with who and why, for the subtree only; reading them is audited
        let before = audit_reads(&app);
        let (items, total) = all_pages(&app, "/api/v1/supervise/duplicates/dismissed", &ts, 1);
        assert_eq!(total, 2);
        assert_eq!(audit_reads(&app), before + 2, "one new audit row per page");
        assert_eq!(
            last_audited(&app),
            BTreeSet::from([
                items[1]["a"]["id"].as_str().unwrap().to_string(),
                items[1]["b"]["id"].as_str().unwrap().to_string(),
            ])
        );
        let keys: BTreeSet<String> = items
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, BTreeSet::from([key(&p1, &p2), key(&p3, &p4)]));
        let strong = items.iter().find(|i| i["key"] == key(&p1, &p2)).unwrap();
        assert_eq!(strong["dismissal"]["reason"], "双胞胎，身份证号录错");
        assert!(strong["a"]["fields"]["id_number"]
            .as_str()
            .unwrap()
            .contains('*'));
        let before = audit_reads(&app);
        get_ok(&app, "/api/v1/supervise/duplicates/dismissed", &ts);
        assert_eq!(audit_reads(&app), before + 1);
        assert_eq!(
            last_audited(&app),
            BTreeSet::from([p1.clone(), p2.clone(), p3.clone(), p4.clone()])
        );
        assert_eq!(
            get_ok(&app, "/api/v1/supervise/duplicates/dismissed", &other)["total"],
            0
        );
        // withdrawing a dismissal lists the pair again
        let undismiss = "/api/v1/supervise/duplicates/undismiss";
        assert_eq!(
            app.post(undismiss, Some(&other), &json!({"a_id": p3, "b_id": p4}))
                .status,
            404
        );
        post_ok(
            &app,
            undismiss,
            &ts,
            json!({"a_id": p3, "b_id": p4, "reason": "误判"}),
        );
        assert_eq!(listed(&ts), BTreeSet::from([key(&p3, &p4)]));
        assert_eq!(
            app.post(undismiss, Some(&ts), &json!({"a_id": p3, "b_id": p4}))
                .status,
            404
        );
        post_ok(&app, undismiss, &ts, json!({"a_id": p2, "b_id": p1}));
        assert_eq!(listed(&ts), BTreeSet::from([key(&p1, &p2), key(&p3, &p4)]));
        assert_eq!(
            n(
                &app,
                "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'duplicate_undismissed'"
            ),
            2
        );
        assert_eq!(
            get_ok(&app, "/api/v1/supervise/duplicates/dismissed", &ts)["total"],
            0
        );
        // the other township never sees any of it
        assert!(listed(&other).is_empty());
    }
);

both!(merge_undo_keeps_edits_made_after_the_merge, |b| {
    let World { app, a, w, ts, .. } = world(b);
    let (p1, p2, visit) = (new_id(), new_id(), new_id());
    let num = id_number("1990-02-03", 170);
    let mut s1 = person(V1, "孙丽");
    s1["id_number"] = json!(num);
    let mut s2 = person(V1, "孙莉");
    s2["id_number"] = json!(num);
    s2["relation"] = json!("spouse");
    a.push_ok(&app, &[a.op("person", &p1, "create", None, s1)]);
    w.push_ok(&app, &[
        w.op("person", &p2, "create", None, s2),
        w.op("visit", &visit, "create", None, json!({"org_unit": V1, "person_id": p2, "kind": "iud_check", "visit_date": "2026-11-21"})),
    ]);
    // the merge: p1 survives with p2's spelling of the name and p2's relation filled in
    let r = post_ok(
        &app,
        "/api/v1/supervise/duplicates/merge",
        &ts,
        json!({"survivor_id": p1, "merged_id": p2, "fields": {"name": "merged"}}),
    );
    let merge_id = r["merge_id"].as_str().unwrap().to_string();
    assert_eq!(r["survivor"]["fields"]["name"], "孙莉");
    assert_eq!(r["survivor"]["fields"]["relation"], "spouse");
    let (recs, cursor) = w.pull_all(&app, 0);
    let (sv, vv) = (
        recs[&p1]["version"].as_i64().unwrap(),
        recs[&visit]["version"].as_i64().unwrap(),
    );
    // after the merge a phone edits the survivor (a field the merge left alone, and the name the
    // merge changed) and the re-pointed visit
    let r = w.push_ok(
        &app,
        &[
            w.op(
                "person",
                &p1,
                "update",
                Some(sv),
                json!({"marital_status": "divorced", "name": "孙丽丽"}),
            ),
            w.op(
                "visit",
                &visit,
                "update",
                Some(vv),
                json!({"next_due": "2027-01-01"}),
            ),
        ],
    );
    assert!(r.iter().all(|o| o["status"] == "applied"), "{r:?}");

    let undo = post_ok(
        &app,
        &format!("/api/v1/supervise/merges/{merge_id}/undo"),
        &ts,
        json!({}),
    );
    assert_eq!(undo["repointed"], json!([visit]));
    // the edits made after the merge survive; the merge's own change to relation is undone
    let d = get_ok(&app, &format!("/api/v1/supervise/person/{p1}"), &ts);
    let f = &d["record"]["fields"];
    assert_eq!(f["marital_status"], "divorced", "{f:?}");
    assert_eq!(f["name"], "孙丽丽", "{f:?}");
    assert!(f.get("relation").is_none_or(Value::is_null), "{f:?}");
    // the name was changed both ways: a conflict keeps the value the undo would have restored
    let open = d["open_conflicts"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["field"], "name");
    assert_eq!(open[0]["server_value"], "孙丽丽");
    assert_eq!(open[0]["device_value"], "孙丽");
    assert_eq!(undo["conflicts"][0]["id"], open[0]["id"]);
    let queue = get_ok(&app, "/api/v1/supervise/conflicts", &ts);
    assert!(queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == open[0]["id"]));
    let v = get_ok(&app, &format!("/api/v1/supervise/visit/{visit}"), &ts);
    assert_eq!(v["record"]["fields"]["person_id"], p2.as_str());
    assert_eq!(v["record"]["fields"]["next_due"], "2027-01-01");
    let restored = get_ok(&app, &format!("/api/v1/supervise/person/{p2}"), &ts);
    assert_eq!(restored["record"]["deleted"], false);
    assert_eq!(restored["record"]["fields"]["name"], "孙莉");

    // the phone receives every step, and the conflict
    let page = w.pull(&app, cursor);
    let recs: std::collections::BTreeMap<String, Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(recs[&p1]["version"], d["record"]["version"]);
    assert_eq!(recs[&p1]["fields"]["marital_status"], "divorced");
    assert!(recs[&p1]["fields"]
        .get("relation")
        .is_none_or(Value::is_null));
    assert_eq!(recs[&p2]["deleted"], false);
    assert_eq!(recs[&visit]["fields"]["person_id"], p2.as_str());
    assert_eq!(recs[&visit]["fields"]["next_due"], "2027-01-01");
    assert!(page["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == open[0]["id"]));
    // the undone pair stays two persons
    assert_eq!(n(&app, "SELECT COUNT(*) AS n FROM duplicate_dismissals"), 1);
});

both!(merge_undo_of_a_merge_stored_before_after_versions, |b| {
    use diesel::prelude::*;
    use fieldsync::db::schema::person_merges;
    let World { app, a, w, ts, .. } = world(b);
    let (p1, p2) = (new_id(), new_id());
    let num = id_number("1991-03-04", 180);
    let mut s1 = person(V1, "蒋梅");
    s1["id_number"] = json!(num);
    let mut s2 = person(V1, "蒋玫");
    s2["id_number"] = json!(num);
    s2["phone"] = json!("13900000003");
    a.push_ok(&app, &[a.op("person", &p1, "create", None, s1)]);
    w.push_ok(&app, &[w.op("person", &p2, "create", None, s2)]);
    let r = post_ok(
        &app,
        "/api/v1/supervise/duplicates/merge",
        &ts,
        json!({"survivor_id": p1, "merged_id": p2}),
    );
    let merge_id = r["merge_id"].as_str().unwrap().to_string();
    assert_eq!(r["survivor"]["fields"]["phone"], "13900000003");
    let sv = r["survivor"]["version"].as_i64().unwrap();
    // a merge stored before merges recorded the versions they left
    let mut c = app.conn();
    let snap: String = person_merges::table
        .filter(person_merges::id.eq(&merge_id))
        .select(person_merges::snapshot)
        .first(&mut *c)
        .unwrap();
    let mut snap: Value = serde_json::from_str(&snap).unwrap();
    assert!(snap.as_object_mut().unwrap().remove("after").is_some());
    diesel::update(person_merges::table.filter(person_merges::id.eq(&merge_id)))
        .set(person_merges::snapshot.eq(snap.to_string()))
        .execute(&mut *c)
        .unwrap();
    drop(c);
    // edited after the merge, then undone: the edit survives, the filled-in phone goes
    w.push_ok(
        &app,
        &[w.op(
            "person",
            &p1,
            "update",
            Some(sv),
            json!({"relation": "head"}),
        )],
    );
    post_ok(
        &app,
        &format!("/api/v1/supervise/merges/{merge_id}/undo"),
        &ts,
        json!({}),
    );
    let f =
        get_ok(&app, &format!("/api/v1/supervise/person/{p1}"), &ts)["record"]["fields"].clone();
    assert_eq!(f["relation"], "head", "{f:?}");
    assert_eq!(f["name"], "蒋梅");
    assert!(f.get("phone").is_none_or(Value::is_null), "{f:?}");
});

/// An ID number as every list shows it: region code and last four characters.
fn masked(number: &str) -> String {
    format!("{}********{}", &number[..6], &number[14..])
}

both!(
    id_numbers_masked_unless_the_role_sees_one_record_in_full,
    |b| {
        let World {
            app,
            a,
            w,
            ts,
            county,
            ..
        } = world(b);
        // p: a mother with a birth; d: her duplicate (same number, another spelling); c: a person
        // whose ID number two phones changed differently (an open conflict on the number)
        let (p, d, c, birth) = (new_id(), new_id(), new_id(), new_id());
        let num = id_number("1990-02-03", 190);
        let (num2, num3, num4) = (
            id_number("1985-05-05", 191),
            id_number("1985-05-05", 193),
            id_number("1985-05-05", 195),
        );
        let mut mother = person(V1, "韩梅");
        mother["id_number"] = json!(num);
        let mut dup = person(V1, "韩美");
        dup["id_number"] = json!(num);
        let mut cp = person(V1, "韩冲");
        cp["id_number"] = json!(num2);
        a.push_ok(
        &app,
        &[
            a.op("person", &p, "create", None, mother),
            a.op("person", &c, "create", None, cp),
            a.op("birth", &birth, "create", None, json!({"org_unit": V1, "mother_id": p, "birth_date": "2020-03-01", "sex": "male", "parity": 1})),
        ],
    );
        w.push_ok(&app, &[w.op("person", &d, "create", None, dup)]);
        a.push_ok(
            &app,
            &[a.op("person", &c, "update", Some(1), json!({"id_number": num3}))],
        );
        let r = w.push_ok(
            &app,
            &[w.op("person", &c, "update", Some(1), json!({"id_number": num4}))],
        );
        let cid = r[0]["conflicts"][0]["id"]
            .as_str()
            .expect("a conflict on the ID number")
            .to_string();
        // a refused op carrying a number: its stored payload shows in the history and the
        // device's rejected ops
        let num5 = id_number("1985-05-05", 197);
        let r = w.push_ok(
            &app,
            &[w.op(
                "person",
                &c,
                "update",
                Some(2),
                json!({"id_number": num5, "sex": "robot"}),
            )],
        );
        assert_eq!(r[0]["status"], "rejected", "{r:?}");
        // ops of another type carrying one are refused; their payloads are masked the same
        let r = w.push_ok(
            &app,
            &[w.op(
                "measure",
                &new_id(),
                "create",
                None,
                json!({"org_unit": V1, "person_id": p, "method": "pills", "started_on": "2026-01-05", "id_number": num5}),
            )],
        );
        assert_eq!(r[0]["status"], "rejected", "{r:?}");

        // lists: masked for both roles (the list, the duplicates, the conflict queue)
        for token in [&ts, &county] {
            let (items, _) = all_pages(&app, "/api/v1/supervise/person", token, 50);
            let shown: BTreeSet<String> = items
                .iter()
                .map(|i| i["fields"]["id_number"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                shown,
                BTreeSet::from([masked(&num), masked(&num3)]),
                "{items:?}"
            );
            let dups = get_ok(&app, "/api/v1/supervise/duplicates", token);
            let pair = dups["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["signal"] == "id_number")
                .expect("the pair");
            // both show the same masked number: the pair is still visible
            assert_eq!(pair["a"]["fields"]["id_number"], masked(&num).as_str());
            assert_eq!(pair["b"]["fields"]["id_number"], masked(&num).as_str());
            let queue = get_ok(&app, "/api/v1/supervise/conflicts", token);
            let qc = &queue["items"][0];
            assert_eq!(qc["id"], cid.as_str());
            assert_eq!(qc["base_value"], masked(&num2).as_str());
            assert_eq!(qc["server_value"], masked(&num3).as_str());
            assert_eq!(qc["device_value"], masked(&num4).as_str());
            let rejected = get_ok(
                &app,
                &format!("/api/v1/supervise/devices/{}/rejected", w.device_id),
                token,
            );
            let items = rejected["items"].as_array().unwrap();
            assert_eq!(items.len(), 2);
            for i in items {
                assert_eq!(
                    i["payload"]["set"]["id_number"],
                    masked(&num5).as_str(),
                    "{i:?}"
                );
            }
        }

        // one record: in full for the township supervisor, masked for the county's
        for (token, full) in [(&ts, true), (&county, false)] {
            let show = |n: &str| if full { n.to_string() } else { masked(n) };
            let detail = get_ok(&app, &format!("/api/v1/supervise/person/{p}"), token);
            assert_eq!(detail["record"]["fields"]["id_number"], show(&num).as_str());
            // linked records: a birth's mother
            let bd = get_ok(&app, &format!("/api/v1/supervise/birth/{birth}"), token);
            let m = bd["linked"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["field"] == "mother_id")
                .expect("the mother");
            assert_eq!(m["record"]["fields"]["id_number"], show(&num).as_str());
            // history: every version's fields and changes, and its conflicts
            let h = get_ok(
                &app,
                &format!("/api/v1/supervise/person/{c}/history"),
                token,
            );
            let vs = h["versions"].as_array().unwrap();
            assert_eq!(vs.len(), 2);
            assert_eq!(vs[0]["fields"]["id_number"], show(&num2).as_str());
            assert_eq!(vs[1]["fields"]["id_number"], show(&num3).as_str());
            let change = vs[1]["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|ch| ch["field"] == "id_number")
                .expect("the change");
            assert_eq!(change["from"], show(&num2).as_str());
            assert_eq!(change["to"], show(&num3).as_str());
            assert_eq!(h["conflicts"][0]["device_value"], show(&num4).as_str());
            // its ops: the answer the conflicting op got, and the refused op's payload
            let ops = h["ops"].as_array().unwrap();
            let answered = ops
                .iter()
                .find(|o| o["device_id"] == w.device_id.as_str() && o["status"] == "applied")
                .expect("w's update");
            assert_eq!(
                answered["result"]["conflicts"][0]["device_value"],
                show(&num4).as_str(),
                "{answered:?}"
            );
            let refused = ops
                .iter()
                .find(|o| o["status"] == "rejected")
                .expect("the refused op");
            assert_eq!(refused["payload"]["set"]["id_number"], show(&num5).as_str());
            // the record's detail with its open conflict, and the conflict itself
            let cd = get_ok(&app, &format!("/api/v1/supervise/person/{c}"), token);
            assert_eq!(cd["record"]["fields"]["id_number"], show(&num3).as_str());
            assert_eq!(
                cd["open_conflicts"][0]["device_value"],
                show(&num4).as_str()
            );
            let one = get_ok(&app, &format!("/api/v1/supervise/conflicts/{cid}"), token);
            assert_eq!(one["conflict"]["base_value"], show(&num2).as_str());
            assert_eq!(one["conflict"]["server_value"], show(&num3).as_str());
            assert_eq!(one["conflict"]["device_value"], show(&num4).as_str());
            assert_eq!(one["current"]["fields"]["id_number"], show(&num3).as_str());
            assert_eq!(one["current_value"], show(&num3).as_str());
        }
        // the full number still finds the person for both (the filter takes it; the answer masks it)
        for token in [&ts, &county] {
            let found = get_ok(
                &app,
                &format!("/api/v1/supervise/person?id_number={num3}"),
                token,
            );
            assert_eq!(ids_of(&found["items"]), vec![c.clone()]);
        }
    }
);

/// The fields of a record of `entity` (not a person or household) about `person` in `village`;
/// `i` varies its date.
fn ledger_fields(entity: &str, person: &str, village: &str, i: usize) -> Value {
    let day = format!("2026-0{}-1{i}", 1 + i);
    match entity {
        "birth" => {
            json!({"org_unit": village, "mother_id": person, "birth_date": day, "sex": "male", "parity": 1 + i})
        }
        "death" => json!({"org_unit": village, "person_id": person, "death_date": day}),
        "measure" => {
            json!({"org_unit": village, "person_id": person, "method": "iud_insertion", "started_on": day})
        }
        "visit" => {
            json!({"org_unit": village, "person_id": person, "kind": "iud_check", "visit_date": day})
        }
        "migration" => {
            json!({"org_unit": village, "person_id": person, "direction": "out", "moved_on": day})
        }
        "supply" => {
            json!({"org_unit": village, "person_id": person, "item": "condoms", "quantity": 10, "handed_on": day})
        }
        "benefit" => {
            json!({"org_unit": village, "person_id": person, "kind": "reward_assistance", "year": 2020 + i})
        }
        other => panic!("no fields for {other}"),
    }
}

both!(every_ledger_list_is_scoped_paged_and_filtered, |b| {
    let World {
        app,
        a,
        far,
        ts,
        other,
        county,
        ..
    } = world(b);
    let (p1, p2, p3) = (new_id(), new_id(), new_id());
    a.push_ok(
        &app,
        &[
            a.op("person", &p1, "create", None, person(V1, "林一")),
            a.op("person", &p2, "create", None, person(V2, "林二")),
        ],
    );
    far.push_ok(
        &app,
        &[far.op("person", &p3, "create", None, person(V3, "林三"))],
    );
    let entities = [
        "birth",
        "death",
        "measure",
        "visit",
        "migration",
        "supply",
        "benefit",
    ];
    for entity in entities {
        // ours: two about p1 in V1, one about p2 in V2, one about p1 deleted; theirs: one in V3
        let mine: Vec<String> = (0..3).map(|_| new_id()).collect();
        let (gone, theirs) = (new_id(), new_id());
        let r = a.push_ok(
            &app,
            &[
                a.op(
                    entity,
                    &mine[0],
                    "create",
                    None,
                    ledger_fields(entity, &p1, V1, 0),
                ),
                a.op(
                    entity,
                    &mine[1],
                    "create",
                    None,
                    ledger_fields(entity, &p1, V1, 1),
                ),
                a.op(
                    entity,
                    &mine[2],
                    "create",
                    None,
                    ledger_fields(entity, &p2, V2, 2),
                ),
                a.op(
                    entity,
                    &gone,
                    "create",
                    None,
                    ledger_fields(entity, &p1, V1, 3),
                ),
                a.op(entity, &gone, "delete", Some(1), json!({})),
            ],
        );
        assert!(
            r.iter().all(|o| o["status"] == "applied"),
            "{entity}: {r:?}"
        );
        let r = far.push_ok(
            &app,
            &[far.op(
                entity,
                &theirs,
                "create",
                None,
                ledger_fields(entity, &p3, V3, 0),
            )],
        );
        assert_eq!(r[0]["status"], "applied", "{entity}: {r:?}");
        let path = format!("/api/v1/supervise/{entity}");
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();

        // paged one at a time: every record once, in id order, total on each page
        let (items, total) = all_pages(&app, &path, &ts, 1);
        assert_eq!(total, 3, "{entity}");
        let got = ids_of(&json!(items));
        assert_eq!(got.len(), 3, "{entity}: {got:?}");
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(got, sorted, "{entity}: every record once, in order");
        let first = get_ok(&app, &format!("{path}?limit=2"), &ts);
        assert_eq!(first["total"], 3, "{entity}");
        assert_eq!(first["items"].as_array().unwrap().len(), 2, "{entity}");
        let next = first["next_after"].as_str().expect("a next page");
        let rest = get_ok(&app, &format!("{path}?limit=2&after={next}"), &ts);
        assert_eq!(ids_of(&rest["items"]), sorted[2..].to_vec(), "{entity}");
        assert!(rest.get("next_after").is_none(), "{entity}: last page");
        // its main date (or year) order pages the same records
        let key = fieldsync::domain::entities::Entity::parse(entity)
            .unwrap()
            .def()
            .sort_keys[0];
        let by_key = sorted_ids(&app, &format!("{path}?sort=-{key}"), &ts, 1);
        assert_eq!(
            by_key,
            vec![mine[2].clone(), mine[1].clone(), mine[0].clone()],
            "{entity} by -{key}"
        );

        // filters: village, person, deleted records
        let filtered = |q: &str, token: &str| -> BTreeSet<String> {
            let (items, total) = all_pages(&app, &format!("{path}?{q}"), token, 2);
            assert_eq!(items.len() as i64, total, "{entity}?{q}");
            set(&ids_of(&json!(items)))
        };
        assert_eq!(
            filtered(&format!("village={V2}"), &ts),
            set(&mine[2..]),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("village={V1}"), &ts),
            set(&mine[..2]),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("person={p1}"), &ts),
            set(&mine[..2]),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("person={p2}"), &ts),
            set(&mine[2..]),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("person={p3}"), &ts),
            BTreeSet::new(),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("person={p1}&include_deleted=true"), &ts),
            set(&[mine[0].clone(), mine[1].clone(), gone.clone()]),
            "{entity}"
        );
        let with_deleted = get_ok(&app, &format!("{path}?include_deleted=true&limit=500"), &ts);
        assert_eq!(with_deleted["total"], 4, "{entity}");
        assert!(with_deleted["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == gone.as_str() && i["deleted"] == true));
        // person filters of the person ledger are refused here
        assert_eq!(
            app.get(&format!("{path}?name=x"), Some(&ts)).status,
            400,
            "{entity}"
        );

        // another township sees none of ours, and counts none
        assert_eq!(
            filtered("include_deleted=true", &other),
            set(std::slice::from_ref(&theirs)),
            "{entity}"
        );
        assert_eq!(
            filtered(&format!("person={p1}"), &other),
            BTreeSet::new(),
            "{entity}"
        );
        assert_eq!(
            get_ok(
                &app,
                &format!("{path}?village={V1}&include_deleted=true"),
                &other
            )["total"],
            0,
            "{entity}"
        );
        for id in &mine {
            assert_eq!(
                app.get(&format!("{path}/{id}"), Some(&other)).status,
                404,
                "{entity}"
            );
        }
        // the county sees both townships
        assert_eq!(get_ok(&app, &path, &county)["total"], 4, "{entity}");
    }
    // a record type without person references refuses the person filter
    assert_eq!(
        app.get(
            &format!("/api/v1/supervise/household?person={p1}"),
            Some(&ts)
        )
        .status,
        400
    );
});

/// Runs one statement against the test database (to backdate rows).
fn exec(app: &TestApp, sql: &str) {
    use diesel::RunQueryDsl;
    let changed = diesel::sql_query(sql).execute(&mut *app.conn()).unwrap();
    assert!(changed > 0, "{sql} changed nothing");
}

const DAY_MICROS: i64 = 86_400_000_000;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

both!(conflict_queue_filters_by_age, |b| {
    let World {
        app,
        a,
        w,
        ts,
        other,
        ..
    } = world(b);
    let (_, young) = make_conflict(&app, &a, &w, "marital_status", "divorced", "widowed");
    let (_, old) = make_conflict(&app, &a, &w, "relation", "spouse", "parent");
    // the second arose ten days (and an hour) ago
    let then = now_micros() - 10 * DAY_MICROS - 3_600_000_000;
    exec(
        &app,
        &format!("UPDATE conflicts SET created_at = {then} WHERE id = '{old}'"),
    );
    let ids = |q: &str, token: &str| -> Vec<String> {
        let (items, total) = all_pages(&app, &format!("/api/v1/supervise/conflicts?{q}"), token, 1);
        assert_eq!(items.len() as i64, total, "{q}");
        ids_of(&json!(items))
    };
    let mut both_ids = vec![young.clone(), old.clone()];
    both_ids.sort();
    assert_eq!(ids("status=open", &ts), both_ids);
    assert_eq!(ids("min_age_days=0", &ts), both_ids);
    assert_eq!(ids("min_age_days=7", &ts), vec![old.clone()]);
    assert_eq!(ids("min_age_days=10", &ts), vec![old.clone()]);
    assert_eq!(ids("min_age_days=11", &ts), Vec::<String>::new());
    // combined with the other filters
    assert_eq!(
        ids(&format!("min_age_days=7&village={V1}&entity=person"), &ts),
        vec![old.clone()]
    );
    assert_eq!(
        ids(&format!("min_age_days=7&village={V2}"), &ts),
        Vec::<String>::new()
    );
    // the age shown agrees
    let page = get_ok(&app, "/api/v1/supervise/conflicts?min_age_days=7", &ts);
    assert_eq!(page["items"][0]["age_days"], 10);
    let d = get_ok(&app, &format!("/api/v1/supervise/conflicts/{young}"), &ts);
    assert_eq!(d["conflict"]["age_days"], 0);
    // another township: none, at any age
    assert_eq!(
        ids("min_age_days=0&status=all", &other),
        Vec::<String>::new()
    );
});

/// A village of the flag summary: code, total, (check, count) in order.
type VillageCounts = (String, i64, Vec<(String, i64)>);

both!(flag_summary_counts_per_village_exactly, |b| {
    use fieldsync::orgunit::{self, NewOrgUnit};
    let World {
        app,
        a,
        far,
        ts,
        other,
        county,
        ..
    } = world(b);
    // a villager group of V1: its flags count in V1
    let group = format!("{V1}01");
    orgunit::upsert(
        &mut app.conn(),
        &[NewOrgUnit {
            code: group.clone(),
            name: "一组".into(),
            parent: Some(V1.into()),
        }],
    )
    .unwrap();
    // a valid number with its check character changed: exactly one flag, id_check_digit
    let bad_number = |seq: u16| {
        let good = id_number("1990-02-03", seq);
        let last = good.chars().last().unwrap();
        let wrong = if last == '0' { '1' } else { '0' };
        format!("{}{wrong}", &good[..17])
    };
    let with_number = |village: &str, name: &str, seq: u16| {
        let mut p = person(village, name);
        p["id_number"] = json!(bad_number(seq));
        p
    };
    let p1 = new_id();
    a.push_ok(
        &app,
        &[
            // V1: two id_check_digit (one in the group), one method_sex (a woman's vasectomy)
            a.op("person", &p1, "create", None, with_number(V1, "宋一", 200)),
            a.op("person", &new_id(), "create", None, with_number(&group, "宋二", 202)),
            a.op("measure", &new_id(), "create", None, json!({"org_unit": V1, "person_id": p1, "method": "vasectomy", "started_on": "2026-01-05"})),
            // V2: three id_check_digit
            a.op("person", &new_id(), "create", None, with_number(V2, "宋三", 204)),
            a.op("person", &new_id(), "create", None, with_number(V2, "宋四", 206)),
            a.op("person", &new_id(), "create", None, with_number(V2, "宋五", 208)),
            // no flag
            a.op("person", &new_id(), "create", None, person(V2, "宋六")),
        ],
    );
    far.push_ok(
        &app,
        &[far.op(
            "person",
            &new_id(),
            "create",
            None,
            with_number(V3, "宋七", 210),
        )],
    );
    let counts = |s: &Value| -> Vec<VillageCounts> {
        s["villages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let checks = v["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["check"].as_str().unwrap().to_string(),
                            c["count"].as_i64().unwrap(),
                        )
                    })
                    .collect();
                (
                    v["village"].as_str().unwrap().to_string(),
                    v["total"].as_i64().unwrap(),
                    checks,
                )
            })
            .collect()
    };
    let digit = |n: i64| ("id_check_digit".to_string(), n);
    let method = |n: i64| ("method_sex".to_string(), n);
    let s = get_ok(&app, "/api/v1/supervise/flags/summary", &ts);
    assert_eq!(
        counts(&s),
        vec![
            (V1.to_string(), 3, vec![digit(2), method(1)]),
            (V2.to_string(), 3, vec![digit(3)]),
        ],
        "{s:?}"
    );
    assert_eq!(s["total"], 6);
    assert_eq!(
        s["checks"],
        json!([
            {"check": "id_check_digit", "zh": "身份证号校验码错误", "en": "the ID number's check digit is wrong", "count": 5},
            {"check": "method_sex", "zh": "节育措施与性别不符", "en": "the contraceptive method does not fit the person's sex", "count": 1},
        ])
    );
    let names: Vec<&str> = s["villages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["东庄村", "西沟村"]);
    // one village
    let s = get_ok(
        &app,
        &format!("/api/v1/supervise/flags/summary?village={V1}"),
        &ts,
    );
    assert_eq!(
        counts(&s),
        vec![(V1.to_string(), 3, vec![digit(2), method(1)])]
    );
    assert_eq!(s["total"], 3);
    // the list agrees with the summary
    assert_eq!(get_ok(&app, "/api/v1/supervise/flags", &ts)["total"], 6);
    // the county sees both townships; another township only its own
    let s = get_ok(&app, "/api/v1/supervise/flags/summary", &county);
    assert_eq!(
        counts(&s),
        vec![
            (V1.to_string(), 3, vec![digit(2), method(1)]),
            (V2.to_string(), 3, vec![digit(3)]),
            (V3.to_string(), 1, vec![digit(1)]),
        ]
    );
    let s = get_ok(&app, "/api/v1/supervise/flags/summary", &other);
    assert_eq!(counts(&s), vec![(V3.to_string(), 1, vec![digit(1)])]);
    assert_eq!(
        get_ok(
            &app,
            &format!("/api/v1/supervise/flags/summary?village={V1}"),
            &other
        )["total"],
        0
    );
    // a correction clears its flag from the counts
    post_ok(
        &app,
        &format!("/api/v1/supervise/records/person/{p1}"),
        &ts,
        json!({"base_version": 1, "set": {"id_number": id_number("1990-02-03", 200)}}),
    );
    let s = get_ok(
        &app,
        &format!("/api/v1/supervise/flags/summary?village={V1}"),
        &ts,
    );
    assert_eq!(
        counts(&s),
        vec![(V1.to_string(), 2, vec![digit(1), method(1)])]
    );
});

both!(
    device_and_worker_status_inactivity_pulls_and_recent_ops,
    |b| {
        let World {
            app,
            a,
            w,
            ts,
            other,
            county,
            ..
        } = world(b);
        // worker_a has a second phone; worker_far works in the other township
        let a2 = crate::common::register_device(&app, "worker_a");
        // a worker with no device yet
        crate::common::create_worker(&app, "worker_new", &[V2]);
        let status = |token: &str, q: &str| -> Vec<Value> {
            let (items, total) = all_pages(
                &app,
                &format!("/api/v1/supervise/devices/status?{q}"),
                token,
                1,
            );
            assert_eq!(items.len() as i64, total);
            items
        };
        let device = |dev: &Dev| -> Value {
            status(&ts, "")
                .into_iter()
                .find(|d| d["device_id"] == dev.device_id.as_str())
                .expect("listed")
        };
        let ids = |items: &[Value], key: &str| -> BTreeSet<String> {
            items
                .iter()
                .map(|d| d[key].as_str().unwrap().to_string())
                .collect()
        };
        // last_pull_at is the time of the pull
        assert!(device(&w)["last_pull_at"].is_null());
        let before = now_micros();
        w.pull_all(&app, 0);
        let after = now_micros();
        let at = device(&w)["last_pull_at"].as_i64().expect("pulled");
        assert!(
            (before..=after).contains(&at),
            "{before} <= {at} <= {after}"
        );
        assert!(device(&w)["last_push_at"].is_null());

        // ops in the last day and week: five pushed now, two backdated 3 days, one 10 days
        let ops: Vec<Value> = (0..5)
            .map(|i| {
                a.op(
                    "person",
                    &new_id(),
                    "create",
                    None,
                    person(V1, &format!("方{i}")),
                )
            })
            .collect();
        a.push_ok(&app, &ops);
        let now = now_micros();
        let seqs = |lo: i64, hi: i64| {
            format!(
                "device_id = '{}' AND seq BETWEEN {lo} AND {hi}",
                a.device_id
            )
        };
        exec(
            &app,
            &format!(
                "UPDATE device_ops SET received_at = {} WHERE {}",
                now - 3 * DAY_MICROS,
                seqs(1, 2)
            ),
        );
        exec(
            &app,
            &format!(
                "UPDATE device_ops SET received_at = {} WHERE {}",
                now - 10 * DAY_MICROS,
                seqs(3, 3)
            ),
        );
        let d = device(&a);
        assert_eq!(
            (d["ops_last_day"].as_i64(), d["ops_last_week"].as_i64()),
            (Some(2), Some(4)),
            "{d:?}"
        );
        a2.push_ok(
            &app,
            &[a2.op("person", &new_id(), "create", None, person(V2, "方二"))],
        );

        // a device that has not synced for 5 days; the others are fresh
        let five = now - 5 * DAY_MICROS - 3_600_000_000;
        exec(
            &app,
            &format!(
                "UPDATE devices SET last_push_at = {five}, last_pull_at = {five} WHERE id = '{}'",
                a.device_id
            ),
        );
        assert_eq!(device(&a)["days_since_sync"], 5);
        assert_eq!(device(&w)["days_since_sync"], 0);
        let stale = |token: &str, days: i64| {
            ids(
                &status(token, &format!("inactive_days={days}")),
                "device_id",
            )
        };
        assert_eq!(stale(&ts, 3), BTreeSet::from([a.device_id.clone()]));
        assert_eq!(stale(&ts, 5), BTreeSet::from([a.device_id.clone()]));
        assert_eq!(stale(&ts, 6), BTreeSet::new());
        assert_eq!(stale(&other, 3), BTreeSet::new());
        assert_eq!(stale(&county, 3), BTreeSet::from([a.device_id.clone()]));

        // a revoked device stays listed, marked, but is never "not synced": it cannot sync
        let r = app.post(
            &format!("/api/v1/devices/{}/revoke", a.device_id),
            Some(&ts),
            &json!({}),
        );
        assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
        let d = device(&a);
        assert_eq!(d["status"], "revoked");
        assert!(d["revoked_at"].is_i64(), "{d:?}");
        assert_eq!(d["ops_last_week"], 4);
        assert_eq!(stale(&ts, 3), BTreeSet::new());
        assert!(device(&w)["revoked_at"].is_null());

        // per worker: devices, the latest sync across them, ops summed
        let workers = |token: &str, q: &str| -> Vec<Value> {
            let (items, total) = all_pages(
                &app,
                &format!("/api/v1/supervise/workers/status?{q}"),
                token,
                1,
            );
            assert_eq!(items.len() as i64, total);
            items
        };
        let all = workers(&ts, "");
        assert_eq!(
            ids(&all, "username"),
            BTreeSet::from([
                "worker_a".to_string(),
                "worker_b".to_string(),
                "worker_new".to_string()
            ])
        );
        let of = |name: &str| all.iter().find(|x| x["username"] == name).unwrap().clone();
        let wa = of("worker_a");
        assert_eq!(wa["devices"], 2);
        assert_eq!(wa["active_devices"], 1);
        let device_ids: BTreeSet<String> = wa["device_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            device_ids,
            BTreeSet::from([a.device_id.clone(), a2.device_id.clone()])
        );
        assert_eq!(wa["ops_last_day"], 3, "{wa:?}");
        assert_eq!(wa["ops_last_week"], 5);
        assert_eq!(wa["days_since_sync"], 0, "a2 pushed today");
        let a2_push = device(&a2)["last_push_at"].as_i64().unwrap();
        assert_eq!(wa["last_push_at"], a2_push);
        assert_eq!(
            wa["last_pull_at"], five,
            "the only pull was a's, 5 days ago"
        );
        assert_eq!(wa["villages"], json!([V1, V2]));
        let wb = of("worker_b");
        assert_eq!(
            (wb["devices"].as_i64(), wb["ops_last_week"].as_i64()),
            (Some(1), Some(0))
        );
        assert_eq!(wb["last_pull_at"], at);
        let wn = of("worker_new");
        assert_eq!(wn["devices"], 0);
        assert!(wn["last_push_at"].is_null() && wn["last_pull_at"].is_null());
        assert_eq!(wn["days_since_sync"], 0);
        // who has not synced for N days: a worker whose phones are all stale
        exec(
            &app,
            &format!(
                "UPDATE devices SET last_push_at = {five}, last_pull_at = NULL WHERE id = '{}'",
                a2.device_id
            ),
        );
        assert_eq!(
            ids(&workers(&ts, "inactive_days=3"), "username"),
            BTreeSet::from(["worker_a".to_string()])
        );
        assert_eq!(
            ids(&workers(&ts, "inactive_days=6"), "username"),
            BTreeSet::new()
        );
        // another township sees only its own worker; bad filters are refused
        assert_eq!(
            ids(&workers(&other, ""), "username"),
            BTreeSet::from(["worker_far".to_string()])
        );
        assert_eq!(of("worker_a")["user_id"], a.user_id.as_str());
        assert_eq!(
            app.get(
                "/api/v1/supervise/workers/status?inactive_days=-1",
                Some(&ts)
            )
            .status,
            400
        );
        assert_eq!(
            app.get("/api/v1/supervise/workers/status", Some(&a2.token))
                .status,
            403
        );
    }
);

both!(rejected_ops_page_and_person_reads_are_audited, |b| {
    let World {
        app,
        a,
        w,
        ts,
        other,
        ..
    } = world(b);
    // seven rejected person ops among applied ones
    let mut ops = Vec::new();
    let mut rejected = Vec::new();
    for i in 0..7 {
        ops.push(a.op(
            "person",
            &new_id(),
            "create",
            None,
            person(V1, &format!("邓{i}")),
        ));
        let id = new_id();
        ops.push(a.op("person", &id, "create", None, person(V3, &format!("越{i}"))));
        rejected.push(id);
    }
    let r = a.push_ok(&app, &ops);
    assert_eq!(r.iter().filter(|o| o["status"] == "rejected").count(), 7);
    // every page of three: all seven once, by seq; each page audits the persons it shows
    let path = format!("/api/v1/supervise/devices/{}/rejected", a.device_id);
    let mut after: Option<i64> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut seqs: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let mut p = format!("{path}?limit=3");
        if let Some(s) = after {
            p.push_str(&format!("&after={s}"));
        }
        let before = audit_reads(&app);
        let page = get_ok(&app, &p, &ts);
        assert_eq!(page["total"], 7);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3 && !items.is_empty());
        let shown: Vec<String> = items
            .iter()
            .map(|i| i["record_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(audit_reads(&app), before + 1, "a new audit row per page");
        assert_eq!(last_audited(&app), shown.iter().cloned().collect());
        seqs.extend(items.iter().map(|i| i["seq"].as_i64().unwrap()));
        seen.extend(shown);
        pages += 1;
        assert!(pages <= 3);
        match page["next_after"].as_i64() {
            Some(s) => after = Some(s),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, rejected);
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted);
    // another township: 404 and no audit row
    let before = audit_reads(&app);
    assert_eq!(app.get(&path, Some(&other)).status, 404);
    assert_eq!(audit_reads(&app), before);

    // the conflict queue and one conflict each add a row naming the person
    let (pid, cid) = make_conflict(&app, &a, &w, "marital_status", "divorced", "widowed");
    let before = audit_reads(&app);
    get_ok(&app, "/api/v1/supervise/conflicts", &ts);
    assert_eq!(audit_reads(&app), before + 1);
    assert_eq!(last_audited(&app), BTreeSet::from([pid.clone()]));
    get_ok(&app, &format!("/api/v1/supervise/conflicts/{cid}"), &ts);
    assert_eq!(audit_reads(&app), before + 2);
    assert_eq!(last_audited(&app), BTreeSet::from([pid.clone()]));

    // a birth's and a measure's detail name their linked persons
    let (mother, child, birth, measure) = (new_id(), new_id(), new_id(), new_id());
    a.push_ok(
        &app,
        &[
            a.op("person", &mother, "create", None, person(V1, "邓母")),
            a.op("person", &child, "create", None, json!({"org_unit": V1, "name": "邓子", "sex": "male", "birth_date": "2020-03-01"})),
            a.op("birth", &birth, "create", None, json!({"org_unit": V1, "mother_id": mother, "child_id": child, "birth_date": "2020-03-01", "sex": "male", "parity": 1})),
            a.op("measure", &measure, "create", None, json!({"org_unit": V1, "person_id": mother, "method": "iud_insertion", "started_on": "2020-06-01"})),
        ],
    );
    let before = audit_reads(&app);
    get_ok(&app, &format!("/api/v1/supervise/birth/{birth}"), &ts);
    assert_eq!(audit_reads(&app), before + 1);
    assert_eq!(
        last_audited(&app),
        BTreeSet::from([mother.clone(), child.clone()])
    );
    get_ok(&app, &format!("/api/v1/supervise/measure/{measure}"), &ts);
    assert_eq!(audit_reads(&app), before + 2);
    assert_eq!(last_audited(&app), BTreeSet::from([mother.clone()]));
    // a person's history too
    get_ok(
        &app,
        &format!("/api/v1/supervise/person/{mother}/history"),
        &ts,
    );
    assert_eq!(audit_reads(&app), before + 3);
    assert_eq!(last_audited(&app), BTreeSet::from([mother.clone()]));
    // the row names who read, as which role
    let role: String = {
        use diesel::prelude::*;
        use fieldsync::db::schema::audit_log;
        audit_log::table
            .filter(audit_log::action.eq("person_read"))
            .order(audit_log::id.desc())
            .select(audit_log::actor_role)
            .first::<Option<String>>(&mut *app.conn())
            .unwrap()
            .unwrap()
    };
    assert_eq!(role, "township_supervisor");
});

// Issue 13 item 8: the computed duplicate pairs (same name, birth date and village) were all
// built and counted on every call (11-16 s once a village held ~9,000 persons sharing a birth
// date). They are now built only within groups of at most MAX_NAMESAKES, read a page at a time
// and counted up to a cap: two groups of 45 make 1,980 pairs, counted as "at least 1,000", paging
// still yields every pair once in key order, and a larger group makes no pairs.
both!(
    computed_duplicate_pairs_are_paged_and_counted_up_to_a_cap,
    |b| {
        use fieldsync::db::records::{self, RecordRow};
        use fieldsync::domain::entities::Entity;
        use fieldsync::supervise::duplicates::{COMPUTED_PAIRS_COUNT_CAP, MAX_NAMESAKES};
        let app = spawn_app(b);
        crate::common::seed_units(&app);
        let ts = supervisor(&app, "dup_cap_ts", Role::TownshipSupervisor, "130131102");
        let namesake = |i: i64, village: &str, name: &str| {
            let fields = [
                ("name", json!(name)),
                ("sex", json!("female")),
                ("birth_date", json!("1990-02-03")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            RecordRow {
                entity: Entity::Person,
                id: uuid::Uuid::now_v7().to_string(),
                org_unit: village.into(),
                version: 1,
                change_seq: i,
                deleted: false,
                merged_into: None,
                fields,
                stamps: Default::default(),
                created_at: 1,
                updated_at: 1,
                recorded_at: 1,
                created_by: "u".into(),
                updated_by: "u".into(),
                updated_device: None,
            }
        };
        // 45 namesakes in each of two villages, 300 others sharing only the birth date (no
        // pairs), and a crowd of more namesakes than are paired.
        use crate::common::{V1, V2};
        let mut rows: Vec<RecordRow> = (1..=45).map(|i| namesake(i, V1, "同名")).collect();
        rows.extend((46..=90).map(|i| namesake(i, V2, "同名")));
        rows.extend((91..=390).map(|i| namesake(i, V1, &format!("别名{i}"))));
        rows.extend((391..=391 + MAX_NAMESAKES).map(|i| namesake(i, V1, "众名")));
        records::upsert(&mut app.conn(), &rows).unwrap();
        let n = 2 * (45 * 44 / 2);
        assert!(n > COMPUTED_PAIRS_COUNT_CAP as usize);

        let mut keys: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &after {
                Some(a) => format!("/api/v1/supervise/duplicates?limit=500&after={a}"),
                None => "/api/v1/supervise/duplicates?limit=500".to_string(),
            };
            let r = app.get(&path, Some(&ts));
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["total"], COMPUTED_PAIRS_COUNT_CAP, "{path}");
            assert_eq!(r.body["total_capped"], true, "{path}");
            let items = r.body["items"].as_array().unwrap();
            assert!(items.len() <= 500);
            for it in items {
                assert_eq!(it["signal"], "name_birth_date");
                keys.push(it["key"].as_str().unwrap().to_string());
            }
            pages += 1;
            match r.body["next_after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
            assert!(pages < 10, "paging does not end");
        }
        assert_eq!(pages, 4);
        assert_eq!(keys.len(), n);
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "keys in order, once each"
        );

        // A dismissed pair leaves the computed pairs too.
        let r = app.get("/api/v1/supervise/duplicates?limit=5", Some(&ts));
        assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
        let dismissed = r.body["items"][0]["key"].as_str().unwrap().to_string();
        let (a, b2) = dismissed.split_once('|').unwrap();
        let d = app.post(
            "/api/v1/supervise/duplicates/dismiss",
            Some(&ts),
            &json!({"a_id": a, "b_id": b2, "reason": "two people"}),
        );
        assert!(d.status < 300, "{:?}", d.body);
        let r = app.get("/api/v1/supervise/duplicates?limit=500", Some(&ts));
        assert!(!r.body.to_string().contains(&dismissed));
    }
);

both!(household_filter_lists_a_households_members_in_scope, |b| {
    let World {
        app,
        a,
        far,
        ts,
        other,
        county,
        ..
    } = world(b);
    let (hh, hh2, far_hh) = (new_id(), new_id(), new_id());
    let (m1, m2, m3, loner, far_p) = (new_id(), new_id(), new_id(), new_id(), new_id());
    let with_hh = |v: &str, name: &str, h: &str| {
        let mut p = person(v, name);
        p["household_id"] = json!(h);
        p
    };
    a.push_ok(
        &app,
        &[
            a.op(
                "household",
                &hh,
                "create",
                None,
                json!({"org_unit": V1, "household_no": "001", "head_name": "赵刚"}),
            ),
            a.op(
                "household",
                &hh2,
                "create",
                None,
                json!({"org_unit": V1, "household_no": "002", "head_name": "钱进"}),
            ),
            a.op("person", &m1, "create", None, with_hh(V1, "赵刚", &hh)),
            a.op("person", &m2, "create", None, with_hh(V1, "赵丽", &hh)),
            a.op("person", &m3, "create", None, with_hh(V1, "钱进", &hh2)),
            a.op("person", &loner, "create", None, person(V1, "孙一")),
        ],
    );
    far.push_ok(
        &app,
        &[
            far.op(
                "household",
                &far_hh,
                "create",
                None,
                json!({"org_unit": V3, "household_no": "009", "head_name": "李四"}),
            ),
            far.op(
                "person",
                &far_p,
                "create",
                None,
                with_hh(V3, "李四", &far_hh),
            ),
        ],
    );
    let members = |h: &str, token: &str| -> BTreeSet<String> {
        let (items, total) = all_pages(
            &app,
            &format!("/api/v1/supervise/person?household={h}"),
            token,
            1,
        );
        assert_eq!(items.len() as i64, total);
        ids_of(&json!(items)).into_iter().collect()
    };
    let set = |v: &[&String]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(members(&hh, &ts), set(&[&m1, &m2]));
    assert_eq!(members(&hh2, &ts), set(&[&m3]));
    assert_eq!(members(&hh, &county), set(&[&m1, &m2]));
    // another township's household: none of its members for us, ours none for them
    assert_eq!(members(&far_hh, &ts), BTreeSet::new());
    assert_eq!(members(&hh, &other), BTreeSet::new());
    assert_eq!(members(&far_hh, &other), set(&[&far_p]));
    // combined with the other filters
    let r = get_ok(
        &app,
        &format!("/api/v1/supervise/person?household={hh}&name_prefix=赵丽"),
        &ts,
    );
    assert_eq!(ids_of(&r["items"]), vec![m2.clone()]);
    // a record type without a household reference refuses it
    assert_eq!(
        app.get(
            &format!("/api/v1/supervise/visit?household={hh}"),
            Some(&ts)
        )
        .status,
        400
    );
});

both!(merges_list_is_scoped_paged_and_shows_undone, |b| {
    let World {
        app,
        a,
        far,
        ts,
        other,
        county,
        ..
    } = world(b);
    let (p1, p2, p3, p4, f1, f2) = (new_id(), new_id(), new_id(), new_id(), new_id(), new_id());
    a.push_ok(
        &app,
        &[
            a.op("person", &p1, "create", None, person(V1, "周一")),
            a.op("person", &p2, "create", None, person(V1, "周一")),
            a.op("person", &p3, "create", None, person(V2, "吴二")),
            a.op("person", &p4, "create", None, person(V2, "吴二")),
        ],
    );
    far.push_ok(
        &app,
        &[
            far.op("person", &f1, "create", None, person(V3, "郑三")),
            far.op("person", &f2, "create", None, person(V3, "郑三")),
        ],
    );
    let merge = |s: &str, m: &str, token: &str| -> String {
        let r = post_ok(
            &app,
            "/api/v1/supervise/duplicates/merge",
            token,
            json!({"survivor_id": s, "merged_id": m}),
        );
        r["merge_id"].as_str().unwrap().to_string()
    };
    let first = merge(&p1, &p2, &ts);
    let second = merge(&p3, &p4, &ts);
    let theirs = merge(&f1, &f2, &other);

    // newest first, paged one at a time, each once
    let (items, total) = all_pages(&app, "/api/v1/supervise/merges", &ts, 1);
    assert_eq!(total, 2);
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["merge_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str(), first.as_str()]);
    let one = &items[1];
    assert_eq!(one["survivor"]["id"], p1.as_str());
    assert_eq!(one["merged"]["id"], p2.as_str());
    assert_eq!(one["org_unit"], V1);
    assert_eq!(one["automatic"], false);
    assert!(one["undone_at"].is_null());
    // village filter, the other township's, the county's
    let r = get_ok(&app, &format!("/api/v1/supervise/merges?village={V2}"), &ts);
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["merge_id"], second.as_str());
    let r = get_ok(&app, "/api/v1/supervise/merges", &other);
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["merge_id"], theirs.as_str());
    assert_eq!(
        get_ok(
            &app,
            &format!("/api/v1/supervise/merges?village={V1}"),
            &other
        )["total"],
        0
    );
    assert_eq!(
        get_ok(&app, "/api/v1/supervise/merges", &county)["total"],
        3
    );
    // a worker may not list them; a bad cursor is refused
    assert_eq!(
        app.get("/api/v1/supervise/merges", Some(&a.token)).status,
        403
    );
    assert_eq!(
        app.get("/api/v1/supervise/merges?after=%27x", Some(&ts))
            .status,
        400
    );
    // undone, it stays listed with who undid it, and cannot be undone twice
    post_ok(
        &app,
        &format!("/api/v1/supervise/merges/{first}/undo"),
        &ts,
        json!({}),
    );
    let r = get_ok(&app, &format!("/api/v1/supervise/merges?village={V1}"), &ts);
    assert_eq!(r["total"], 1);
    assert!(r["items"][0]["undone_at"].is_i64());
    assert!(r["items"][0]["undone_by"].is_string());
    assert_eq!(
        app.post(
            &format!("/api/v1/supervise/merges/{first}/undo"),
            Some(&ts),
            &json!({})
        )
        .status,
        409
    );
});

both!(
    merges_and_dismissals_filter_scope_in_the_query_and_page,
    |b| {
        let World {
            app,
            a,
            far,
            ts,
            other,
            county,
            ..
        } = world(b);
        // p0..p5 the township's, q0 and q1 too (for the county's pairs across townships), f1..f5
        // the other township's.
        let p: Vec<String> = (0..8).map(|_| new_id()).collect();
        let f: Vec<String> = (0..6).map(|_| new_id()).collect();
        a.push_ok(
            &app,
            &p.iter()
                .enumerate()
                .map(|(i, id)| a.op("person", id, "create", None, person(V1, &format!("钱{i}"))))
                .collect::<Vec<_>>(),
        );
        far.push_ok(
            &app,
            &f.iter()
                .enumerate()
                .skip(1)
                .map(|(i, id)| far.op("person", id, "create", None, person(V3, &format!("孙{i}"))))
                .collect::<Vec<_>>(),
        );
        let merge = |s: &str, m: &str, token: &str| -> String {
            post_ok(
                &app,
                "/api/v1/supervise/duplicates/merge",
                token,
                json!({"survivor_id": s, "merged_id": m}),
            )["merge_id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let dismiss = |x: &str, y: &str, token: &str| {
            post_ok(
                &app,
                "/api/v1/supervise/duplicates/dismiss",
                token,
                json!({"a_id": x, "b_id": y, "reason": "入户核实为两人"}),
            );
        };
        // The township's own: three merges, three dismissals.
        let mine = [
            merge(&p[0], &p[1], &ts),
            merge(&p[2], &p[3], &ts),
            merge(&p[4], &p[5], &ts),
        ];
        dismiss(&p[0], &p[2], &ts);
        dismiss(&p[0], &p[4], &ts);
        dismiss(&p[2], &p[4], &ts);
        // The other township's, and the county's across both townships (one person in each).
        merge(&f[1], &f[2], &other);
        dismiss(&f[1], &f[3], &other);
        merge(&p[6], &f[4], &county);
        dismiss(&p[7], &f[5], &county);
        // Two merges at the same instant page by id, each once.
        {
            use diesel::RunQueryDsl;
            diesel::sql_query(format!(
                "UPDATE person_merges SET merged_at = 1000 WHERE id IN ('{}', '{}')",
                mine[0], mine[1]
            ))
            .execute(&mut *app.conn())
            .unwrap();
        }
        let (items, total) = all_pages(&app, "/api/v1/supervise/merges", &ts, 1);
        assert_eq!(total, 3);
        let got: BTreeSet<&str> = items
            .iter()
            .map(|i| i["merge_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, mine.iter().map(String::as_str).collect());
        assert_eq!(items.len(), 3, "each merge once");
        assert_eq!(items[0]["merge_id"], mine[2].as_str(), "newest first");
        let (items, total) = all_pages(&app, "/api/v1/supervise/merges", &ts, 2);
        assert_eq!((items.len(), total), (3, 3));
        let (items, total) = all_pages(&app, "/api/v1/supervise/duplicates/dismissed", &ts, 1);
        assert_eq!((items.len(), total), (3, 3));
        let keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "by key");
        assert!(items.iter().all(|i| {
            let pa = i["dismissal"]["person_a"].as_str().unwrap();
            let pb = i["dismissal"]["person_b"].as_str().unwrap();
            p[..6].iter().any(|x| x == pa) && p[..6].iter().any(|x| x == pb)
        }));
        // The other township sees its own only; the county everything.
        let r = get_ok(&app, "/api/v1/supervise/merges", &other);
        assert_eq!(r["total"], 1);
        let r = get_ok(&app, "/api/v1/supervise/duplicates/dismissed", &other);
        assert_eq!(r["total"], 1);
        let (items, total) = all_pages(&app, "/api/v1/supervise/merges", &county, 2);
        assert_eq!((items.len(), total), (5, 5));
        let (items, total) = all_pages(&app, "/api/v1/supervise/duplicates/dismissed", &county, 2);
        assert_eq!((items.len(), total), (5, 5));
        // Bad cursors are 400, not 500.
        for bad in ["x", "12", "abc|def"] {
            assert_eq!(
                app.get(&format!("/api/v1/supervise/merges?after={bad}"), Some(&ts))
                    .status,
                400,
                "{bad}"
            );
        }
        assert_eq!(
            app.get("/api/v1/supervise/duplicates/dismissed?after=x", Some(&ts))
                .status,
            400
        );
    }
);
