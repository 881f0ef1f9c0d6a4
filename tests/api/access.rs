//! Function access (every route of `ROUTES` against every role lacking access) and object
//! access (2 counties x 2 townships x 3 villages: foreign ids answer 404, lists hold no
//! foreign rows).

use serde_json::{json, Value};

use crate::auth::*;
use crate::both;
use crate::helpers::*;
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
    use crate::sync::{new_id, person, seed_units, worker, V1, V3};
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
    use crate::sync::{seed_units, worker, V1};
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
    }
});
