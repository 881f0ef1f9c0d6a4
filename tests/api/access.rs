//! Function access (every route of `ROUTES` against every role lacking access) and object
//! access (2 counties x 2 townships x 3 villages: foreign ids answer 404, lists hold no
//! foreign rows).

use serde_json::{json, Value};

use crate::auth::*;
use crate::both;
use crate::common::*;
use fieldsync::api::{Access, ROUTES};
use fieldsync::auth::roles::Role;

#[test]
fn every_route_declares_who_may_call_it() {
    for r in ROUTES {
        if let Access::Roles(roles) = r.access {
            assert!(
                !roles.is_empty(),
                "{} {} declares no role",
                r.method,
                r.path
            );
        }
    }
    // the auth routes themselves are declared
    for (m, p) in [
        ("post", "/api/v1/auth/login"),
        ("get", "/api/v1/me"),
        ("post", "/api/v1/devices/{id}/revoke"),
    ] {
        assert!(
            ROUTES.iter().any(|r| r.method == m && r.path == p),
            "{m} {p}"
        );
    }
}

/// The only routes that take no token. A route declared `Access::Public` that is not here
/// fails `public_routes_are_a_fixed_list`: making a route public is a decision, not a default.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/api/openapi.json"),
    ("get", "/metrics"), // guarded by its own `metrics_token`, off (404) without one
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    // The console's cookie sessions (src/api/web_session.rs): CSRF header and Origin checked.
    ("post", "/api/v1/auth/web/login"),
    ("post", "/api/v1/auth/web/refresh"),
    ("post", "/api/v1/auth/web/logout"),
    // A phone enrolling with the one-time code an admin issued (src/auth/devices.rs::enrol).
    ("post", "/api/v1/devices/enrol"),
    // The browser side: static files, no data (each page asks the API with its own token).
    ("get", "/"),
    ("get", "/console/{file:.*}"),
    ("get", "/field"),
    ("get", "/field/{file:.*}"),
    ("get", "/client/{file:.*}"),
    ("get", "/vendor/{file:.*}"),
];

#[test]
fn public_routes_are_a_fixed_list() {
    for r in ROUTES {
        if matches!(r.access, Access::Public) {
            assert!(
                PUBLIC_ROUTES.contains(&(r.method, r.path)),
                "{} {} is public but not on the allow-list in tests/api/access.rs",
                r.method,
                r.path
            );
        }
    }
    for (m, p) in PUBLIC_ROUTES {
        assert!(
            ROUTES
                .iter()
                .any(|r| r.method == *m && r.path == *p && matches!(r.access, Access::Public)),
            "{m} {p} is on the allow-list but not a public route"
        );
    }
}

both!(public_routes_answer_without_a_token, |b| {
    let app = spawn_app(b);
    for (m, p) in PUBLIC_ROUTES {
        let r = call(&app, m, p, None);
        assert!(r.status < 500, "{m} {p}: {} {:?}", r.status, r.body);
        let want_401 = *p == "/api/v1/auth/login" || *p == "/api/v1/auth/refresh";
        if !want_401 {
            assert_ne!(r.status, 401, "{m} {p} asked for a token: {:?}", r.body);
        }
    }
    assert_eq!(app.get("/health", None).status, 200);
    assert_eq!(app.get("/ready", None).status, 200);
    assert_eq!(app.get("/api/openapi.json", None).status, 200);
    assert_eq!(
        app.get("/metrics", None).status,
        404,
        "off without metrics_token"
    );
});

fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> Resp {
    let path = path.replace("{id}", "0190aaaa-0000-7000-8000-000000000001");
    match method {
        "get" => app.get(&path, token),
        m => app.send(&m.to_ascii_uppercase(), &path, token, &json!({})),
    }
}

both!(function_access_for_every_route, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTIES[0]), &[]);
    add_user(
        &app,
        "ts",
        Role::TownshipSupervisor,
        Some(&township(0, 0)),
        &[],
    );
    add_user(&app, "w", Role::Worker, None, &[village(0, 0, 0)]);
    let tokens: Vec<(Role, String)> = vec![
        (Role::Admin, session(&app, "root").access),
        (Role::CountySupervisor, session(&app, "cs").access),
        (Role::TownshipSupervisor, session(&app, "ts").access),
        (Role::Worker, session(&app, "w").access),
    ];
    let worker_no_device = access(&login(&app, "w", None));
    for r in ROUTES {
        let Access::Roles(allowed) = r.access else {
            continue;
        };
        let resp = call(&app, r.method, r.path, None);
        assert_eq!(
            resp.status, 401,
            "{} {} without a token: {:?}",
            r.method, r.path, resp.body
        );
        for (role, token) in &tokens {
            if allowed.contains(role) {
                continue;
            }
            let resp = call(&app, r.method, r.path, Some(token));
            assert_eq!(
                resp.status, 403,
                "{} {} as {:?}: {:?}",
                r.method, r.path, role, resp.body
            );
        }
        let deviceless_ok = (r.method == "post" && r.path == "/api/v1/devices")
            || (r.method == "get" && r.path == "/api/v1/me");
        if !deviceless_ok {
            let resp = call(&app, r.method, r.path, Some(&worker_no_device));
            assert_eq!(
                resp.status, 403,
                "{} {} as a worker without a device",
                r.method, r.path
            );
        }
    }
});

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| x[key].as_str().unwrap().to_string())
        .collect()
}

both!(object_access_by_place, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    // a county supervisor per county, a township supervisor per township, a worker per village
    let mut worker_ids = Vec::new();
    for (c, county) in COUNTIES.iter().enumerate() {
        add_user(
            &app,
            &format!("cs{c}"),
            Role::CountySupervisor,
            Some(county),
            &[],
        );
        for t in 0..2 {
            add_user(
                &app,
                &format!("ts{c}{t}"),
                Role::TownshipSupervisor,
                Some(&township(c, t)),
                &[],
            );
            for v in 0..3 {
                let id = add_user(
                    &app,
                    &format!("w{c}{t}{v}"),
                    Role::Worker,
                    None,
                    &[village(c, t, v)],
                );
                worker_ids.push(((c, t, v), id));
            }
        }
    }
    // every worker registers a device
    let mut device_of = std::collections::HashMap::new();
    for ((c, t, v), _) in &worker_ids {
        let s = session(&app, &format!("w{c}{t}{v}"));
        device_of.insert((*c, *t, *v), s.device_id.unwrap());
    }
    let admin = session(&app, "root").access;
    let ts00 = session(&app, "ts00").access;
    let cs0 = session(&app, "cs0").access;

    // lists
    let all = app.get("/api/v1/devices", Some(&admin));
    assert_eq!(ids(&all.body, "id").len(), 12);
    let mine: Vec<String> = (0..3).map(|v| device_of[&(0, 0, v)].clone()).collect();
    let mut seen = ids(&app.get("/api/v1/devices", Some(&ts00)).body, "id");
    seen.sort();
    let mut want = mine.clone();
    want.sort();
    assert_eq!(
        seen, want,
        "a township supervisor sees only their township's devices"
    );
    let seen = ids(&app.get("/api/v1/devices", Some(&cs0)).body, "id");
    assert_eq!(seen.len(), 6);
    assert!(seen
        .iter()
        .all(|d| (0..2).any(|t| (0..3).any(|v| &device_of[&(0, t, v)] == d))));
    let users = app.get("/api/v1/users", Some(&admin));
    assert_eq!(ids(&users.body, "id").len(), 1 + 2 + 4 + 12);

    // foreign ids: 404
    let foreign_dev = &device_of[&(0, 1, 0)]; // other township, same county
    let r = app.post(
        &format!("/api/v1/devices/{foreign_dev}/revoke"),
        Some(&ts00),
        &json!({}),
    );
    assert_eq!(r.status, 404, "{:?}", r.body);
    let other_county_dev = &device_of[&(1, 0, 0)];
    let r = app.post(
        &format!("/api/v1/devices/{other_county_dev}/revoke"),
        Some(&cs0),
        &json!({}),
    );
    assert_eq!(r.status, 404);
    let r = app.post(
        "/api/v1/devices/no-such-device/revoke",
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.status, 404);
    // own ids: allowed
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", device_of[&(0, 0, 2)]),
        Some(&ts00),
        &json!({}),
    );
    assert_eq!(r.status, 200);
    let r = app.post(
        &format!("/api/v1/devices/{foreign_dev}/revoke"),
        Some(&cs0),
        &json!({}),
    );
    assert_eq!(r.status, 200);

    let worker = |c: usize, t: usize, v: usize| {
        worker_ids
            .iter()
            .find(|(k, _)| *k == (c, t, v))
            .unwrap()
            .1
            .clone()
    };
    // reassigning villages: a foreign worker, or a foreign village, is not found
    let put = |token: &str, uid: &str, villages: Value| {
        app.send(
            "PUT",
            &format!("/api/v1/users/{uid}/villages"),
            Some(token),
            &json!({ "villages": villages }),
        )
    };
    assert_eq!(
        put(&ts00, &worker(0, 1, 0), json!([village(0, 0, 0)])).status,
        404
    );
    assert_eq!(
        put(&ts00, &worker(0, 0, 0), json!([village(0, 1, 0)])).status,
        404
    );
    assert_eq!(
        put(&cs0, &worker(1, 0, 0), json!([village(0, 0, 0)])).status,
        404
    );
    let r = put(
        &ts00,
        &worker(0, 0, 0),
        json!([village(0, 0, 0), village(0, 0, 1)]),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["villages"],
        json!([village(0, 0, 0), village(0, 0, 1)])
    );
    let r = put(&admin, &worker(0, 0, 0), json!(["999999999999"]));
    assert_eq!(r.status, 422);
    let r = put(&admin, &worker(1, 1, 2), json!([village(0, 0, 0)]));
    assert_eq!(r.status, 200);
    // the moved worker now shows up in ts00's list and no longer in ts11's
    let ts11 = session(&app, "ts11").access;
    assert!(
        ids(&app.get("/api/v1/devices", Some(&ts00)).body, "id").contains(&device_of[&(1, 1, 2)])
    );
    assert!(
        !ids(&app.get("/api/v1/devices", Some(&ts11)).body, "id").contains(&device_of[&(1, 1, 2)])
    );
});

// Mass assignment (TESTING.md): ops and bodies carrying server-owned fields are refused with a
// clear code and never applied: every server-owned column in an op's `set` (device and
// supervisor edit), an org unit outside the caller's scope, and extra fields (role, status,
// ids, stamps) in every other request body.
both!(mass_assignment_is_refused_everywhere, |b| {
    use crate::common::{new_id, person, seed_units, worker, V1, V3};
    use fieldsync::domain::entities::SERVER_OWNED;
    let app = spawn_app(b);
    seed_units(&app);
    let dev = worker(&app, "mass_w", &[V1]);
    add_user(
        &app,
        "mass_ts",
        Role::TownshipSupervisor,
        Some("130131102"),
        &[],
    );
    add_user(&app, "mass_admin", Role::Admin, None, &[]);
    add_user(&app, "mass_cs", Role::CountySupervisor, Some("130131"), &[]);
    let ts = session(&app, "mass_ts").access;
    let cs = session(&app, "mass_cs").access;
    let admin = session(&app, "mass_admin").access;
    let id = new_id();
    let r = dev.push_ok(
        &app,
        &[dev.op("person", &id, "create", None, person(V1, "王芳"))],
    );
    assert_eq!(r[0]["status"], "applied", "{r:?}");
    let before = app.get(&format!("/api/v1/supervise/person/{id}"), Some(&ts));
    assert_eq!(before.status, 200, "{:?}", before.body);

    // A device's op: each server-owned field alone, in an update and in a create.
    for field in SERVER_OWNED {
        let value = match *field {
            "version" | "change_seq" | "created_at" | "updated_at" => json!(999),
            "deleted" => json!(true),
            _ => json!(new_id()),
        };
        let upd = dev.op("person", &id, "update", Some(1), json!({ *field: value }));
        let mut set = person(V1, "李娜");
        set[*field] = value.clone();
        let create = dev.op("person", &new_id(), "create", None, set);
        for res in dev.push_ok(&app, &[upd, create]) {
            assert_eq!(res["status"], "rejected", "{field}: {res}");
            assert_eq!(res["code"], "server_owned_field", "{field}: {res}");
        }
    }
    // Moving a record to, or creating it in, a village outside the device's scope.
    let moved = dev.op("person", &id, "update", Some(1), json!({"org_unit": V3}));
    let foreign = dev.op("person", &new_id(), "create", None, person(V3, "张伟"));
    for res in dev.push_ok(&app, &[moved, foreign]) {
        assert_eq!(res["status"], "rejected", "{res}");
        assert!(
            res["code"].as_str().is_some_and(|c| c.contains("scope")),
            "{res}"
        );
    }
    // A supervisor's direct edit goes through the same checks.
    let path = format!("/api/v1/supervise/records/person/{id}");
    for set in [
        json!({"version": 9}),
        json!({"created_by": "x"}),
        json!({"org_unit": V3}),
    ] {
        let r = app.post(&path, Some(&ts), &json!({"base_version": 1, "set": set}));
        assert!(
            r.status == 422 || r.status == 404 || r.body["status"] == "rejected",
            "{set}: {} {:?}",
            r.status,
            r.body
        );
        assert_ne!(r.body["status"], "applied", "{set}: {:?}", r.body);
    }
    // Nothing was applied: the record is as created.
    let after = app.get(&format!("/api/v1/supervise/person/{id}"), Some(&ts));
    assert_eq!(after.status, 200);
    assert_eq!(after.body["record"]["version"], 1, "{:?}", after.body);
    assert_eq!(after.body["record"]["org_unit"], V1);
    assert_eq!(after.body["record"]["fields"]["name"], "王芳");
    assert_eq!(after.body["record"]["deleted"], false);

    // Other bodies: an unknown (server-owned) field is a 400, never silently taken.
    let cases: Vec<(&str, &str, Option<&str>, Value)> = vec![
        (
            "POST",
            "/api/v1/auth/login",
            None,
            json!({"username": "mass_w", "password": PW, "role": "admin"}),
        ),
        (
            "POST",
            "/api/v1/devices",
            Some(&dev.token),
            json!({"name": "p", "user_id": "someone-else", "revoked_at": null}),
        ),
        (
            "POST",
            "/api/v1/users",
            Some(&admin),
            json!({"username": "mass_new", "display_name": "n", "password": "long-enough-pw",
                "role": "worker", "villages": [V1], "id": "chosen-id", "created_at": 1}),
        ),
        (
            "POST",
            "/api/v1/reports/submissions",
            Some(&ts),
            json!({"org_unit": V1, "period": "2026-10", "status": "approved", "approved_by": "me"}),
        ),
        (
            "POST",
            "/api/v1/reports/lock",
            Some(&cs),
            json!({"period": "2026-10", "locked_by": "me"}),
        ),
        // Issue 13 item 8: the targets body took unknown fields (200).
        (
            "PUT",
            "/api/v1/targets",
            Some(&cs),
            json!({"org_unit": "130131102", "year": 2026, "set_by": "me",
                "targets": [{"indicator": "contraceptive_prevalence", "value": 88.0}]}),
        ),
    ];
    for (method, path, token, body) in cases {
        let r = app.send(method, path, token, &body);
        assert_eq!(r.status, 400, "{method} {path}: {:?}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    // The refused user was not created; the worker's role is unchanged.
    let users = app.get("/api/v1/users", Some(&admin));
    assert!(!users.body.to_string().contains("mass_new"));
    let me = app.get("/api/v1/me", Some(&dev.token));
    assert_eq!(me.body["role"], "worker");
});

// A NUL character anywhere a client can put text: never a 500. PostgreSQL cannot store one, so
// on both backends a NUL in a path or query is refused up front (400 `bad_text`), and on
// PostgreSQL one inside a body is refused where it reaches the store.
both!(nul_characters_never_give_a_500, |b| {
    use crate::common::{seed_units, worker, V1};
    let app = spawn_app(b);
    seed_units(&app);
    let dev = worker(&app, "nul_w", &[V1]);
    add_user(&app, "nul_admin", Role::Admin, None, &[]);
    add_user(
        &app,
        "nul_ts",
        Role::TownshipSupervisor,
        Some("130131102"),
        &[],
    );
    add_user(&app, "nul_cs", Role::CountySupervisor, Some("130131"), &[]);
    let admin = session(&app, "nul_admin").access;
    let ts = session(&app, "nul_ts").access;
    let cs = session(&app, "nul_cs").access;
    let worker_id = dev.user_id.clone();
    let nul = "a\u{0}b";
    let bodies: Vec<(&str, String, Option<&str>, Value)> = vec![
        (
            "POST",
            "/api/v1/auth/login".into(),
            None,
            json!({"username": nul, "password": "xxxxxxxxxxxx"}),
        ),
        (
            "POST",
            "/api/v1/devices".into(),
            Some(&dev.token),
            json!({"name": nul, "app_version": nul}),
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            json!({"username": "nul_new", "display_name": nul, "password": "long-enough-pw", "role": "worker", "villages": [format!("{V1}\u{0}")]}),
        ),
        (
            "PUT",
            format!("/api/v1/users/{worker_id}/villages"),
            Some(&admin),
            json!({"villages": [nul]}),
        ),
        (
            "POST",
            "/api/v1/reports/submissions".into(),
            Some(&ts),
            json!({"org_unit": format!("{V1}\u{0}"), "period": "2026-10"}),
        ),
        (
            "PUT",
            "/api/v1/targets".into(),
            Some(&cs),
            json!({"org_unit": nul, "year": 2026, "targets": []}),
        ),
        (
            "POST",
            "/api/v1/auth/refresh".into(),
            None,
            json!({"refresh_token": nul}),
        ),
    ];
    for (method, path, token, body) in bodies {
        let r = app.send(method, &path, token, &body);
        assert!(r.status < 500, "{method} {path}: {} {:?}", r.status, r.body);
        if b == Backend::Postgres && r.status == 400 {
            assert_eq!(r.body["code"], "bad_text", "{method} {path}");
        }
    }
    for (method, path, token) in [
        ("POST", "/api/v1/devices/a%00b/revoke", &admin),
        ("PUT", "/api/v1/users/a%00b/villages", &admin),
        ("GET", "/api/v1/devices?user=a%00b", &admin),
        ("GET", "/api/v1/supervise/person?name=a%00b", &ts),
        (
            "GET",
            "/api/v1/reports?org_unit=1301%00&period=2026-10",
            &ts,
        ),
    ] {
        let r = app.send(method, path, Some(token), &json!({"villages": []}));
        assert_eq!(r.status, 400, "{method} {path}: {:?}", r.body);
        assert_eq!(r.body["code"], "bad_text", "{method} {path}");
        // Issue 13 item 8: answered with the request's id like any error (it was "-", and
        // there was no header).
        let id = r.body["request_id"].as_str().unwrap_or_default();
        assert!(id.len() > 8, "{method} {path}: request id {id:?}");
        assert_eq!(r.header("x-request-id"), Some(id), "{method} {path}");
    }
});

// ---------------------------------------------------------------------------------------------
// The object access matrix (TESTING.md, security row 1), driven from the route table.
//
// Every village of the 2 x 2 x 3 tree holds data of every kind; every route of `ROUTES` that
// takes an id (in its path, or in its body), and every list, count, report and export a
// supervisor may call, has an entry below keyed by its pattern. A route without an entry fails
// the test, so a new route is covered as soon as it is declared.

use std::collections::BTreeMap;

use crate::common::{new_id, person, register_device, worker as new_worker, Dev};
use fieldsync::domain::entities::{Entity, ENTITIES};
use fieldsync::domain::resident_id;

const PERIOD: &str = "2026-10";
const REASON: &str = "核实后处理";

/// One village of the matrix fixture: the ids of its objects and the strings (ids, names, ID
/// numbers, its code) that must never reach a caller outside its scope.
struct Place {
    c: usize,
    t: usize,
    code: String,
    dev: Dev,
    records: BTreeMap<&'static str, String>,
    conflict: String,
    candidate: (String, String),
    merge_pair: (String, String),
    merge: String,
    dismissed: (String, String),
    submission: String,
    canaries: Vec<String>,
}

impl Place {
    fn record(&self, entity: &str) -> &str {
        self.records
            .get(entity)
            .unwrap_or_else(|| panic!("the matrix fixture has no {entity} record: add one"))
    }
}

fn in_scope(role: Role, org: (usize, usize), p: &Place) -> bool {
    match role {
        Role::CountySupervisor => p.c == org.0,
        Role::TownshipSupervisor => (p.c, p.t) == org,
        _ => false,
    }
}

fn applied(results: &[Value]) {
    for r in results {
        assert_eq!(r["status"], "applied", "{r}");
    }
}

/// A village's data, pushed by its worker's two phones: a record of every type, a conflict, a
/// listed duplicate pair, a pair to merge, a pair to dismiss, a logic-error flag and a rejected
/// op (the supervisors add the merge, the dismissal, the submission and the targets).
fn build_place(app: &TestApp, c: usize, t: usize, v: usize) -> Place {
    let code = village(c, t, v);
    let tag = format!("{c}{t}{v}");
    let uname = format!("mw{tag}");
    let dev = new_worker(app, &uname, &[&code]);
    let dev_b = register_device(app, &uname);
    let name = |k: &str| format!("柳{tag}{k}");
    let birth = chrono::NaiveDate::from_ymd_opt(1990, 2, 3).unwrap();
    let id_number = resident_id::generate(
        COUNTIES[c],
        birth,
        (2 * (c * 100 + t * 10 + v + 1)) as u16,
        false,
    );
    let mut bad_number = id_number.clone();
    let last = bad_number.pop().unwrap();
    bad_number.push(if last == '0' { '1' } else { '0' });

    let ids: BTreeMap<&str, String> = [
        "household",
        "person",
        "conflicted",
        "cand_a",
        "cand_b",
        "merge_a",
        "merge_b",
        "dis_a",
        "dis_b",
        "flagged",
        "dead",
        "pregnancy",
        "birth",
        "death",
        "measure",
        "visit",
        "migration",
        "supply",
        "benefit",
    ]
    .into_iter()
    .map(|k| (k, new_id()))
    .collect();
    let mut main = person(&code, &name("甲"));
    main["household_id"] = json!(ids["household"]);
    main["id_number"] = json!(id_number);
    let mut flagged = person(&code, &name("己"));
    flagged["id_number"] = json!(bad_number);
    let mp = ids["person"].clone();
    let sets: Vec<(&str, &str, Value)> = vec![
        (
            "household",
            "household",
            json!({"org_unit": code, "household_no": format!("H{tag}")}),
        ),
        ("person", "person", main),
        ("conflicted", "person", person(&code, &name("乙"))),
        ("cand_a", "person", person(&code, &name("丙"))),
        ("cand_b", "person", person(&code, &name("丙"))),
        ("merge_a", "person", person(&code, &name("丁"))),
        ("merge_b", "person", person(&code, &name("丁"))),
        ("dis_a", "person", person(&code, &name("戊"))),
        ("dis_b", "person", person(&code, &name("戊"))),
        ("flagged", "person", flagged),
        ("dead", "person", person(&code, &name("庚"))),
        (
            "pregnancy",
            "pregnancy",
            json!({"org_unit": code, "person_id": mp, "status": "ongoing"}),
        ),
        (
            "birth",
            "birth",
            json!({"org_unit": code, "mother_id": mp, "birth_date": "2026-10-05", "sex": "male", "parity": 1}),
        ),
        (
            "death",
            "death",
            json!({"org_unit": code, "person_id": ids["dead"], "death_date": "2026-10-10"}),
        ),
        (
            "measure",
            "measure",
            json!({"org_unit": code, "person_id": mp, "method": "iud_insertion", "started_on": "2026-01-05"}),
        ),
        (
            "visit",
            "visit",
            json!({"org_unit": code, "person_id": mp, "kind": "iud_check", "visit_date": "2026-10-21"}),
        ),
        (
            "migration",
            "migration",
            json!({"org_unit": code, "person_id": mp, "direction": "out", "moved_on": "2026-09-01"}),
        ),
        (
            "supply",
            "supply",
            json!({"org_unit": code, "person_id": mp, "item": "condoms", "quantity": 10, "handed_on": "2026-10-01"}),
        ),
        (
            "benefit",
            "benefit",
            json!({"org_unit": code, "person_id": mp, "kind": "reward_assistance", "year": 2026, "amount_yuan": 960}),
        ),
    ];
    let ops: Vec<Value> = sets
        .iter()
        .map(|(k, entity, set)| dev.op(entity, &ids[k], "create", None, set.clone()))
        .collect();
    applied(&dev.push_ok(app, &ops));
    // one conflict: both phones change the same field from version 1
    let pc = &ids["conflicted"];
    applied(&dev.push_ok(
        app,
        &[dev.op(
            "person",
            pc,
            "update",
            Some(1),
            json!({"marital_status": "divorced"}),
        )],
    ));
    let r = dev_b.push_ok(
        app,
        &[dev_b.op(
            "person",
            pc,
            "update",
            Some(1),
            json!({"marital_status": "widowed"}),
        )],
    );
    let conflict = r[0]["conflicts"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a conflict: {r:?}"))
        .to_string();
    // one rejected op (an invalid value, in the village itself)
    let mut bad = person(&code, &name("辛"));
    bad["sex"] = json!("unknown");
    let r = dev.push_ok(app, &[dev.op("person", &new_id(), "create", None, bad)]);
    assert_eq!(r[0]["status"], "rejected", "{r:?}");

    let records: BTreeMap<&'static str, String> = sets
        .iter()
        .filter(|(k, e, _)| k == e)
        .map(|(k, _, _)| {
            let e = Entity::parse(k).unwrap();
            (e.name(), ids[k].clone())
        })
        .collect();
    let mut canaries: Vec<String> = ids.values().cloned().collect();
    canaries.extend([
        format!("柳{tag}"),
        id_number,
        bad_number,
        code.clone(),
        conflict.clone(),
        dev.device_id.clone(),
        dev_b.device_id.clone(),
        dev.user_id.clone(),
    ]);
    Place {
        c,
        t,
        code,
        dev,
        records,
        conflict,
        candidate: (ids["cand_a"].clone(), ids["cand_b"].clone()),
        merge_pair: (ids["merge_a"].clone(), ids["merge_b"].clone()),
        merge: String::new(),
        dismissed: (ids["dis_a"].clone(), ids["dis_b"].clone()),
        submission: String::new(),
        canaries,
    }
}

/// A valid one-field change of each record type, for the direct-edit route.
fn edit_of(entity: &str) -> Value {
    match entity {
        "household" => json!({"household_no": "H2"}),
        "person" => json!({"marital_status": "divorced"}),
        "pregnancy" => json!({"status": "ongoing"}),
        "birth" => json!({"parity": 1}),
        "death" => json!({"death_date": "2026-10-11"}),
        "measure" => json!({"started_on": "2026-01-06"}),
        "visit" => json!({"visit_date": "2026-10-22"}),
        "migration" => json!({"moved_on": "2026-09-02"}),
        "supply" => json!({"quantity": 11}),
        "benefit" => json!({"amount_yuan": 961}),
        e => panic!("no direct edit of {e} in the matrix: add one"),
    }
}

/// The calls of an id route for the objects of `p`: (path, body). `None`: no entry.
fn id_calls(method: &str, pattern: &str, p: &Place) -> Option<Vec<(String, Value)>> {
    let per_entity = |f: &dyn Fn(&str, &str) -> (String, Value)| {
        Entity::all()
            .map(|e| f(e.name(), p.record(e.name())))
            .collect::<Vec<_>>()
    };
    let one = |path: String, body: Value| Some(vec![(path, body)]);
    match (method, pattern) {
        ("post", "/api/v1/devices/{id}/revoke") => one(
            format!("/api/v1/devices/{}/revoke", p.dev.device_id),
            json!({}),
        ),
        ("put", "/api/v1/users/{id}/villages") => one(
            format!("/api/v1/users/{}/villages", p.dev.user_id),
            json!({"villages": [p.code]}),
        ),
        ("post", "/api/v1/users/{id}/devices") => one(
            format!("/api/v1/users/{}/devices", p.dev.user_id),
            json!({"name": "phone"}),
        ),
        ("get", "/api/v1/supervise/conflicts/{id}") => one(
            format!("/api/v1/supervise/conflicts/{}", p.conflict),
            json!({}),
        ),
        ("post", "/api/v1/supervise/conflicts/{id}/resolve") => one(
            format!("/api/v1/supervise/conflicts/{}/resolve", p.conflict),
            json!({"take": "server", "reason": REASON}),
        ),
        ("post", "/api/v1/supervise/conflicts/{id}/reopen") => one(
            format!("/api/v1/supervise/conflicts/{}/reopen", p.conflict),
            json!({"reason": REASON}),
        ),
        ("post", "/api/v1/supervise/merges/{id}/undo") => one(
            format!("/api/v1/supervise/merges/{}/undo", p.merge),
            json!({"reason": REASON}),
        ),
        ("get", "/api/v1/supervise/devices/{id}/rejected") => one(
            format!("/api/v1/supervise/devices/{}/rejected", p.dev.device_id),
            json!({}),
        ),
        ("post", "/api/v1/supervise/records/{entity}/{id}") => Some(per_entity(&|e, id| {
            (
                format!("/api/v1/supervise/records/{e}/{id}"),
                json!({"base_version": 1, "set": edit_of(e), "reason": REASON}),
            )
        })),
        ("get", "/api/v1/supervise/{entity}/{id}") => Some(per_entity(&|e, id| {
            (format!("/api/v1/supervise/{e}/{id}"), json!({}))
        })),
        ("get", "/api/v1/supervise/{entity}/{id}/history") => Some(per_entity(&|e, id| {
            (format!("/api/v1/supervise/{e}/{id}/history"), json!({}))
        })),
        ("get", "/api/v1/reports/submissions/{id}/history") => one(
            format!("/api/v1/reports/submissions/{}/history", p.submission),
            json!({}),
        ),
        ("post", "/api/v1/reports/submissions/{id}/approve") => one(
            format!("/api/v1/reports/submissions/{}/approve", p.submission),
            json!({}),
        ),
        ("post", "/api/v1/reports/submissions/{id}/return") => one(
            format!("/api/v1/reports/submissions/{}/return", p.submission),
            json!({"comment": REASON}),
        ),
        _ => None,
    }
}

/// How a route with ids in its body answers for foreign ones.
enum Refusal {
    NotFound,
    /// 200 with every item `not_found` (bulk operations).
    EachNotFound,
}

/// The body naming the objects of `p`, for a caller of `role`. `None`: no entry.
fn body_call(method: &str, pattern: &str, p: &Place, role: Role) -> Option<(Value, Refusal)> {
    use Refusal::*;
    let unit = match role {
        Role::CountySupervisor => township(p.c, p.t),
        _ => p.code.clone(),
    };
    Some(match (method, pattern) {
        ("post", "/api/v1/supervise/conflicts/resolve-bulk") => (
            json!({"ids": [p.conflict], "take": "server", "reason": REASON}),
            EachNotFound,
        ),
        ("post", "/api/v1/supervise/duplicates/merge") => (
            json!({"survivor_id": p.candidate.0, "merged_id": p.candidate.1}),
            NotFound,
        ),
        ("post", "/api/v1/supervise/duplicates/dismiss") => (
            json!({"a_id": p.candidate.0, "b_id": p.candidate.1, "reason": REASON}),
            NotFound,
        ),
        ("post", "/api/v1/supervise/duplicates/undismiss") => (
            json!({"a_id": p.dismissed.0, "b_id": p.dismissed.1}),
            NotFound,
        ),
        ("post", "/api/v1/reports/submissions") => {
            (json!({"org_unit": p.code, "period": PERIOD}), NotFound)
        }
        ("post", "/api/v1/reports/lock") => (
            json!({"org_unit": township(p.c, p.t), "period": PERIOD}),
            NotFound,
        ),
        ("put", "/api/v1/targets") => (
            json!({"org_unit": unit, "year": 2026,
                   "targets": [{"indicator": "contraceptive_prevalence", "value": 50.0}]}),
            NotFound,
        ),
        _ => return None,
    })
}

/// What a list answer counts, to compare across scopes.
#[derive(Clone, Copy)]
enum Count {
    Nothing,
    /// `total`
    Total,
    /// the array's length
    Len,
    /// every number of `counts` (a report)
    ReportCounts,
    /// every number of `total.counts` (a breakdown)
    BreakdownCounts,
    /// every number of `report.counts` (a report with its breakdown)
    ReportWithBreakdownCounts,
    /// every month's denominator of every indicator of a trend
    TrendDenominators,
    /// `villages` and `submitted`
    Completeness,
    /// data rows of a CSV or XLSX file
    FileRows,
}

struct ListEntry {
    paths: Vec<String>,
    count: Count,
    /// The query parameter naming an org unit (or, `user`, an account), called with a foreign
    /// one too.
    unit_param: Option<&'static str>,
    /// The answer lists rows of the caller's own villages (so an empty answer fails).
    shows_rows: bool,
}

/// The calls of a list, count, report or export route. `None`: no entry.
fn list_entry(method: &str, pattern: &str) -> Option<ListEntry> {
    use Count::*;
    let e = |paths: Vec<String>, count, unit_param, shows_rows| {
        Some(ListEntry {
            paths,
            count,
            unit_param,
            shows_rows,
        })
    };
    if method != "get" {
        return None;
    }
    let one = |s: &str| vec![s.to_string()];
    match pattern {
        "/api/v1/me" => e(one("/api/v1/me"), Nothing, None, false),
        "/api/v1/devices" => e(one("/api/v1/devices"), Len, Some("user"), true),
        "/api/v1/supervise/conflicts" => e(
            one("/api/v1/supervise/conflicts?status=open&limit=500"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/duplicates" => e(
            one("/api/v1/supervise/duplicates?limit=500"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/duplicates/dismissed" => e(
            one("/api/v1/supervise/duplicates/dismissed?limit=500"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/merges" => e(
            one("/api/v1/supervise/merges?limit=500"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/flags" => e(
            one("/api/v1/supervise/flags?limit=500"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/flags/summary" => e(
            one("/api/v1/supervise/flags/summary"),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/supervise/devices/status" => e(
            one("/api/v1/supervise/devices/status?limit=500"),
            Total,
            None,
            true,
        ),
        "/api/v1/supervise/workers/status" => e(
            one("/api/v1/supervise/workers/status?limit=500"),
            Total,
            None,
            true,
        ),
        "/api/v1/supervise/{entity}" => e(
            Entity::all()
                .map(|x| format!("/api/v1/supervise/{}?limit=500", x.name()))
                .collect(),
            Total,
            Some("village"),
            true,
        ),
        "/api/v1/reports" => e(
            vec![format!("/api/v1/reports?period={PERIOD}")],
            ReportCounts,
            Some("org_unit"),
            false,
        ),
        "/api/v1/reports/breakdown" => e(
            vec![format!("/api/v1/reports/breakdown?period={PERIOD}")],
            BreakdownCounts,
            Some("org_unit"),
            false,
        ),
        "/api/v1/reports/with-breakdown" => e(
            vec![format!("/api/v1/reports/with-breakdown?period={PERIOD}")],
            ReportWithBreakdownCounts,
            Some("org_unit"),
            false,
        ),
        "/api/v1/reports/trend" => e(
            // Denominators that add up over units (births, married women), unlike the
            // average population of the crude rates.
            vec![format!(
                "/api/v1/reports/trend?to={PERIOD}&months=2\
                 &indicators=policy_compliant_birth_rate,contraceptive_prevalence,sex_ratio_at_birth"
            )],
            TrendDenominators,
            Some("org_unit"),
            false,
        ),
        // Names of units, not data: what matters is that another unit's answer is a 404.
        "/api/v1/reports/units" => e(
            vec!["/api/v1/reports/units".to_string()],
            Nothing,
            Some("org_unit"),
            false,
        ),
        "/api/v1/reports/completeness" => e(
            vec![format!("/api/v1/reports/completeness?period={PERIOD}")],
            Completeness,
            Some("org_unit"),
            false,
        ),
        "/api/v1/targets" => e(
            one("/api/v1/targets?year=2026"),
            Len,
            Some("org_unit"),
            true,
        ),
        "/api/v1/exports/report.{format}" => e(
            ["csv", "xlsx"]
                .iter()
                .map(|f| format!("/api/v1/exports/report.{f}?period={PERIOD}"))
                .collect(),
            Nothing,
            Some("org_unit"),
            false,
        ),
        "/api/v1/exports/ledger/{entity}.{format}" => e(
            Entity::all()
                .flat_map(|x| {
                    ["csv", "xlsx"].map(|f| format!("/api/v1/exports/ledger/{}.{f}", x.name()))
                })
                .collect(),
            FileRows,
            Some("org_unit"),
            true,
        ),
        _ => None,
    }
}

/// GET `path`: status and the answer as text (an XLSX file: every cell of every sheet).
fn fetch_text(app: &TestApp, path: &str, token: &str) -> (u16, String, Vec<Vec<String>>) {
    let (status, _, data) = app.get_bytes(path, token);
    let rows: Vec<Vec<String>> = if status == 200 && path.contains(".xlsx") {
        xlsx_rows(data.clone(), None)
    } else if status == 200 && path.contains(".csv") {
        csv_rows(&data)
    } else {
        Vec::new()
    };
    let text = if path.contains(".xlsx") && status == 200 {
        format!("{rows:?}")
    } else {
        String::from_utf8_lossy(&data).into_owned()
    };
    (status, text, rows)
}

fn counted(count: Count, text: &str, rows: &[Vec<String>]) -> Vec<f64> {
    let v = || -> Value { serde_json::from_str(text).unwrap_or(Value::Null) };
    let nums = |x: &Value| -> Vec<f64> {
        x.as_object()
            .unwrap_or_else(|| panic!("no counts: {x}"))
            .values()
            .filter_map(Value::as_f64)
            .collect()
    };
    match count {
        Count::Nothing => vec![],
        Count::Total => vec![v()["total"].as_f64().expect("a total")],
        Count::Len => vec![v().as_array().expect("a list").len() as f64],
        Count::ReportCounts => nums(&v()["counts"]),
        Count::BreakdownCounts => nums(&v()["total"]["counts"]),
        Count::ReportWithBreakdownCounts => nums(&v()["report"]["counts"]),
        Count::TrendDenominators => v()["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["points"].as_array().into_iter().flatten())
            .map(|p| p["denominator"].as_f64().unwrap_or(0.0))
            .collect(),
        Count::Completeness => {
            let v = v();
            vec![
                v["villages"].as_f64().unwrap(),
                v["submitted"].as_f64().unwrap(),
            ]
        }
        Count::FileRows => vec![rows.len().saturating_sub(1) as f64],
    }
}

/// Live rows of an entity's table under an org unit code prefix, counted in the store.
fn live_rows(app: &TestApp, entity: &str, prefix: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let table = ENTITIES.iter().find(|d| d.name == entity).unwrap().table;
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE NOT deleted AND org_unit LIKE '{prefix}%'"
    );
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *app.conn()).unwrap();
    rows[0].n
}

fn allows(access: Access, role: Role) -> bool {
    matches!(access, Access::Roles(rs) if rs.contains(&role))
}

both!(object_access_matrix_from_the_route_table, |b| {
    let from = micros();
    let app = spawn_app(b);
    seed_tree(&app);
    let mut places = Vec::new();
    for c in 0..2 {
        for t in 0..2 {
            for v in 0..3 {
                places.push(build_place(&app, c, t, v));
            }
        }
    }
    // a supervisor per township and county
    let mut sups: Vec<(Role, (usize, usize), String)> = Vec::new();
    for (c, county) in COUNTIES.iter().enumerate() {
        add_user(
            &app,
            &format!("mcs{c}"),
            Role::CountySupervisor,
            Some(county),
            &[],
        );
        sups.push((
            Role::CountySupervisor,
            (c, 9),
            session(&app, &format!("mcs{c}")).access,
        ));
        for t in 0..2 {
            let u = format!("mts{c}{t}");
            add_user(
                &app,
                &u,
                Role::TownshipSupervisor,
                Some(&township(c, t)),
                &[],
            );
            sups.push((Role::TownshipSupervisor, (c, t), session(&app, &u).access));
        }
    }
    let ts_of = |c: usize, t: usize| {
        sups.iter()
            .find(|s| s.0 == Role::TownshipSupervisor && s.1 == (c, t))
            .unwrap()
            .2
            .clone()
    };
    // what the supervisors add: a merge, a dismissal, a submission, targets
    for p in &mut places {
        let ts = ts_of(p.c, p.t);
        let r = app.post(
            "/api/v1/supervise/duplicates/merge",
            Some(&ts),
            &json!({"survivor_id": p.merge_pair.0, "merged_id": p.merge_pair.1}),
        );
        assert_eq!(r.status, 200, "merge: {:?}", r.body);
        p.merge = r.body["merge_id"].as_str().unwrap().to_string();
        let r = app.post(
            "/api/v1/supervise/duplicates/dismiss",
            Some(&ts),
            &json!({"a_id": p.dismissed.0, "b_id": p.dismissed.1, "reason": REASON}),
        );
        assert_eq!(r.status, 200, "dismiss: {:?}", r.body);
        let r = app.post(
            "/api/v1/reports/submissions",
            Some(&ts),
            &json!({"org_unit": p.code, "period": PERIOD}),
        );
        assert_eq!(r.status, 201, "submit: {:?}", r.body);
        p.submission = r.body["id"].as_str().unwrap().to_string();
        let target = |token: &str, unit: &str| {
            let r = app.send(
                "PUT",
                "/api/v1/targets",
                Some(token),
                &json!({"org_unit": unit, "year": 2026,
                        "targets": [{"indicator": "contraceptive_prevalence", "value": 80.0}]}),
            );
            assert_eq!(r.status, 200, "targets {unit}: {:?}", r.body);
        };
        target(&ts, &p.code);
        if p.code.ends_with("201") {
            let cs = &sups.iter().find(|s| s.1 == (p.c, 9)).unwrap().2;
            target(cs, &township(p.c, p.t));
        }
        p.canaries.extend([p.merge.clone(), p.submission.clone()]);
    }
    let workers: Vec<(Role, (usize, usize), String)> = places
        .iter()
        .map(|p| (Role::Worker, (p.c, p.t), p.dev.token.clone()))
        .collect();

    // The table: every route that takes an id, in its path or its body, and every list a
    // supervisor may read, has an entry; an unknown one fails here.
    let sample = &places[0];
    let supervisor_route =
        |a: Access| allows(a, Role::TownshipSupervisor) || allows(a, Role::CountySupervisor);
    for r in ROUTES {
        let known = if r.path.contains("{id}") {
            id_calls(r.method, r.path, sample).is_some()
        } else if !supervisor_route(r.access) {
            true
        } else if r.method == "get" {
            list_entry(r.method, r.path).is_some()
        } else {
            body_call(r.method, r.path, sample, Role::TownshipSupervisor).is_some()
        };
        assert!(
            known,
            "{} {} has no entry in the object access matrix (tests/api/access.rs): add one",
            r.method, r.path
        );
    }

    // 1. Foreign ids, as every supervisor and every worker: 404, or 403 for a role the
    // route refuses. Nothing is changed by these calls (checked by the lists below).
    let mut calls = 0;
    for (role, org, token) in sups.iter().chain(&workers) {
        let foreign: Vec<&Place> = places
            .iter()
            .filter(|p| !in_scope(*role, *org, p))
            .filter(|p| *role != Role::Worker || (p.c, p.t) != *org)
            // a worker is refused by role: one place of another township is enough
            .take(if *role == Role::Worker { 1 } else { usize::MAX })
            .collect();
        for r in ROUTES {
            let want = if allows(r.access, *role) { 404 } else { 403 };
            for p in &foreign {
                let mut reqs: Vec<(String, Value, Refusal)> = Vec::new();
                if r.path.contains("{id}") {
                    for (path, body) in id_calls(r.method, r.path, p).unwrap() {
                        reqs.push((path, body, Refusal::NotFound));
                    }
                } else if supervisor_route(r.access) && r.method != "get" {
                    let (body, refusal) = body_call(r.method, r.path, p, *role).unwrap();
                    reqs.push((r.path.to_string(), body, refusal));
                }
                for (path, body, refusal) in reqs {
                    calls += 1;
                    let resp = match r.method {
                        "get" => app.get(&path, Some(token)),
                        m => app.send(&m.to_ascii_uppercase(), &path, Some(token), &body),
                    };
                    match refusal {
                        Refusal::EachNotFound if want == 404 => {
                            assert_eq!(resp.status, 200, "{role:?} {path}: {:?}", resp.body);
                            let items = resp.body.as_array().unwrap();
                            assert!(!items.is_empty());
                            for i in items {
                                assert_eq!(i["status"], "not_found", "{role:?} {path}: {i}");
                            }
                        }
                        _ => assert_eq!(
                            resp.status, want,
                            "{role:?} of {org:?} {} {path} for {}: {:?}",
                            r.method, p.code, resp.body
                        ),
                    }
                }
            }
        }
    }
    assert!(calls > 1000, "{calls} calls");

    // 2. Lists, counts, reports and exports, as every supervisor: no foreign row (id, name,
    // ID number, village code) in the answer; the caller's own rows are there; counts are
    // the in-scope counts: every village holds the same data, so a county counts exactly
    // twice what each township counts, and ledgers count what the store holds in scope.
    let mut seen_counts: BTreeMap<(String, &str), Vec<Vec<f64>>> = BTreeMap::new();
    for (role, org, token) in &sups {
        let (foreign, own): (Vec<&Place>, Vec<&Place>) =
            places.iter().partition(|p| !in_scope(*role, *org, p));
        let prefix = match role {
            Role::CountySupervisor => COUNTIES[org.0].to_string(),
            _ => township(org.0, org.1),
        };
        for r in ROUTES {
            if r.method != "get" || r.path.contains("{id}") || !allows(r.access, *role) {
                continue;
            }
            let entry = list_entry(r.method, r.path).unwrap();
            for path in &entry.paths {
                let (status, text, rows) = fetch_text(&app, path, token);
                assert_eq!(status, 200, "{role:?} {path}: {text}");
                for p in &foreign {
                    for canary in &p.canaries {
                        assert!(
                            !text.contains(canary.as_str()),
                            "{role:?} of {org:?} {path}: a row of {} ({canary}) in {text}",
                            p.code
                        );
                    }
                }
                if entry.shows_rows {
                    assert!(
                        own.iter()
                            .any(|p| p.canaries.iter().any(|c| text.contains(c.as_str()))),
                        "{role:?} {path}: none of the caller's own rows: {text}"
                    );
                }
                let n = counted(entry.count, &text, &rows);
                if let Some(e) = path
                    .strip_prefix("/api/v1/supervise/")
                    .or_else(|| path.strip_prefix("/api/v1/exports/ledger/"))
                    .map(|rest| rest.split(['?', '.']).next().unwrap())
                    .filter(|e| Entity::parse(e).is_some())
                {
                    assert_eq!(
                        n,
                        vec![live_rows(&app, e, &prefix) as f64],
                        "{role:?} {path}: the in-scope count"
                    );
                }
                seen_counts
                    .entry((path.clone(), role.as_str()))
                    .or_default()
                    .push(n);
                // a foreign unit (or account) named in the query: one of each foreign township
                let firsts: Vec<&Place> = match entry.unit_param {
                    Some(_) => foreign
                        .iter()
                        .copied()
                        .filter(|p| p.code.ends_with("201"))
                        .collect(),
                    None => Vec::new(),
                };
                for p in firsts {
                    let param = entry.unit_param.unwrap();
                    let value = match param {
                        "user" => &p.dev.user_id,
                        _ => &p.code,
                    };
                    let sep = if path.contains('?') { '&' } else { '?' };
                    let path = format!("{path}{sep}{param}={value}");
                    let (status, text, _) = fetch_text(&app, &path, token);
                    assert!(
                        status == 404 || status == 200,
                        "{role:?} {path}: {status} {text}"
                    );
                    if status == 200 {
                        for canary in &p.canaries {
                            assert!(!text.contains(canary.as_str()), "{role:?} {path}: {canary}");
                        }
                    }
                }
            }
        }
    }
    let paths: std::collections::BTreeSet<String> =
        seen_counts.keys().map(|k| k.0.clone()).collect();
    for path in paths {
        let ts = &seen_counts[&(path.clone(), Role::TownshipSupervisor.as_str())];
        let cs = &seen_counts[&(path.clone(), Role::CountySupervisor.as_str())];
        assert_eq!(ts.len(), 4);
        assert_eq!(cs.len(), 2);
        for x in ts.iter().chain(cs) {
            assert_eq!(x.len(), ts[0].len(), "{path}");
        }
        assert!(
            ts.iter().all(|x| x == &ts[0]),
            "{path}: townships differ: {ts:?}"
        );
        let twice: Vec<f64> = ts[0].iter().map(|x| x * 2.0).collect();
        assert!(
            cs.iter().all(|x| x == &twice),
            "{path}: county {cs:?}, township {ts:?}"
        );
        if !ts[0].is_empty() {
            assert!(ts[0].iter().any(|x| *x > 0.0), "{path}: nothing counted");
        }
    }

    // Workers: an op on another village's record is rejected and changes nothing; a pull
    // holds only the worker's own village.
    for w in &places {
        let other = places.iter().find(|p| (p.c, p.t) != (w.c, w.t)).unwrap();
        let op = w.dev.op(
            "person",
            other.record("person"),
            "update",
            Some(1),
            json!({"marital_status": "widowed"}),
        );
        let r = w.dev.push_ok(&app, &[op]);
        assert_eq!(r[0]["status"], "rejected", "{r:?}");
        let (got, _) = w.dev.pull_all(&app, 0);
        let text = serde_json::to_string(&got).unwrap();
        assert!(got.contains_key(w.record("person")));
        for p in places.iter().filter(|p| p.code != w.code) {
            for canary in &p.canaries {
                assert!(
                    !text.contains(canary.as_str()),
                    "{}'s pull holds {canary} of {}",
                    w.code,
                    p.code
                );
            }
        }
    }
    let r = app.get(
        &format!("/api/v1/supervise/person/{}", places[6].record("person")),
        Some(&ts_of(1, 0)),
    );
    assert_eq!(r.body["record"]["version"], 1, "{:?}", r.body);

    // 3. The same routes with the caller's own ids: not refused (the 404s above are scope,
    // not a broken route). Mutating ones last, in table order.
    let ts = ts_of(0, 0);
    let own = &places[0];
    for r in ROUTES {
        if !r.path.contains("{id}") || !allows(r.access, Role::TownshipSupervisor) {
            continue;
        }
        for (path, body) in id_calls(r.method, r.path, own).unwrap() {
            let resp = match r.method {
                "get" => app.get(&path, Some(&ts)),
                m => app.send(&m.to_ascii_uppercase(), &path, Some(&ts), &body),
            };
            assert!(
                resp.status < 500 && resp.status != 404 && resp.status != 403,
                "own {} {path}: {} {:?}",
                r.method,
                resp.status,
                resp.body
            );
        }
    }
    // every audit row of all this (reads, merges, dismissals, submissions, targets, exports,
    // revocations) names its actor's role and a time inside the test
    assert!(check_audit_rows(&app, from, micros()) > 100);
});

// Issue 13 item 8: `limits.max_json_depth` was never read. A body nested deeper is refused
// whole with 400 `json_too_deep` before anything is parsed or applied (the push checks its
// inflated body, every other route its body), brackets inside strings do not count.
both!(too_deep_json_bodies_are_refused, |b| {
    use crate::common::{new_id, person, seed_units, worker, V1};
    let app = spawn_app_with(b, |s| s.limits.max_json_depth = 8);
    seed_units(&app);
    let dev = worker(&app, "deep_w", &[V1]);
    let deep = |n: usize| (0..n).fold(json!("x"), |v, _| json!([v]));
    let refused = |r: &Resp, what: &str| {
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert_eq!(r.body["code"], "json_too_deep", "{what}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    };
    // The envelope takes 4 levels (body, ops, op, set): a value of 5 more is too deep.
    let mut fields = person(V1, "深");
    fields["notes"] = deep(5);
    let r = dev.push(
        &app,
        &[dev.op("person", &new_id(), "create", None, fields.clone())],
    );
    refused(&r, "push");
    let body = json!({ "ops": [dev.op("person", &new_id(), "create", None, fields)] });
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, body.to_string().as_bytes()).unwrap();
    let r = app.raw(
        "POST",
        "/api/v1/sync/push",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("authorization", &format!("Bearer {}", dev.token)),
        ],
        &enc.finish().unwrap(),
    );
    refused(&r, "gzip push");
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": deep(8), "password": "x"}),
    );
    refused(&r, "login");
    let r = app.post(
        "/api/v1/sync/pull",
        Some(&dev.token),
        &json!({"x": deep(8)}),
    );
    refused(&r, "pull");
    // At the limit, and with brackets inside strings, bodies go through (the refused ops
    // never reached the server: their seqs are free again).
    dev.next_seq.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut fields = person(V1, "浅");
    fields["notes"] = json!("[[[[[[[[[[[[{{{{{{{{{{ \" [[[[[[[[");
    let r = dev.push(&app, &[dev.op("person", &new_id(), "create", None, fields)]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["status"], "applied", "{:?}", r.body);
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": deep(7), "password": "x"}),
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_ne!(r.body["code"], "json_too_deep");
});
