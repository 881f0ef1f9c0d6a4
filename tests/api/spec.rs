//! Issue 13 item 7: the spec told clients that a conflict's values are objects (they are text,
//! numbers, booleans or null) and that `resolution` and `current_value` are never null. A
//! client generated from api-spec could not decode an answer with a conflict. These tests
//! drive a representative flow and validate every real answer against api-spec/openapi.json
//! (every other API test does the same for its own answers when its `TestApp` is dropped).

use serde_json::{json, Value};

use crate::both;
use crate::common::spec_check::{self, Answer};
use crate::common::*;
use crate::common::{new_id, person, seed_units, worker, V1};
use fieldsync::auth::roles::Role;

both!(a_representative_flow_answers_as_the_spec_says, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    // Sign-in, device registration (inside `worker`), who am I, refresh.
    let a = worker(&app, "spec_a", &[V1]);
    let w = worker(&app, "spec_b", &[V1]);
    assert_eq!(app.get("/api/v1/me", Some(&a.token)).status, 200);
    let ts = supervisor(&app, "spec_ts", Role::TownshipSupervisor, "130131102");
    let cs = supervisor(&app, "spec_cs", Role::CountySupervisor, "130131");

    // Push: a person, then the two devices edit the same fields from the same base: conflicts
    // on text and on a boolean (whose base is null), a latest-wins one.
    let id = new_id();
    a.push_ok(
        &app,
        &[a.op("person", &id, "create", None, person(V1, "规范甲"))],
    );
    a.push_ok(
        &app,
        &[a.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"marital_status": "divorced", "alive": false, "phone": "13800000001"}),
        )],
    );
    let rs = w.push_ok(
        &app,
        &[w.op(
            "person",
            &id,
            "update",
            Some(1),
            json!({"marital_status": "widowed", "alive": true, "phone": "13900000002"}),
        )],
    );
    let conflicts = rs[0]["conflicts"].as_array().cloned().unwrap_or_default();
    assert!(conflicts.len() >= 2, "{rs:?}");
    let values: Vec<&Value> = conflicts
        .iter()
        .flat_map(|c| [&c["base_value"], &c["server_value"], &c["device_value"]])
        .collect();
    assert!(values.iter().any(|v| v.is_string()), "{conflicts:?}");
    assert!(values.iter().any(|v| v.is_boolean()), "{conflicts:?}");
    assert!(values.iter().any(|v| v.is_null()), "{conflicts:?}");
    // A rejected op, and a pull (records, conflicts, tombstones none yet).
    let bad = a.push(
        &app,
        &[a.op(
            "person",
            &new_id(),
            "create",
            None,
            person("130131103201", "越界"),
        )],
    );
    assert_eq!(bad.status, 200, "{:?}", bad.body);
    w.pull(&app, 0);

    // The supervisor's queue, one conflict, a resolution, a reopen, the ledgers.
    let list = app.get("/api/v1/supervise/conflicts", Some(&ts));
    assert_eq!(list.status, 200, "{:?}", list.body);
    let open: Vec<String> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "open")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!open.is_empty(), "{:?}", list.body);
    let one = app.get(
        &format!("/api/v1/supervise/conflicts/{}", open[0]),
        Some(&ts),
    );
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert!(
        one.body["conflict"]["resolution"].is_null(),
        "{:?}",
        one.body
    );
    let r = app.post(
        &format!("/api/v1/supervise/conflicts/{}/resolve", open[0]),
        Some(&ts),
        &json!({"take": "device", "reason": "核实"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.post(
        &format!("/api/v1/supervise/conflicts/{}/resolve", open[0]),
        Some(&ts),
        &json!({"take": "device", "reason": "again"}),
    );
    assert!(r.status >= 400, "{:?}", r.body);
    for path in [
        format!("/api/v1/supervise/conflicts/{}", open[0]),
        "/api/v1/supervise/person".to_string(),
        format!("/api/v1/supervise/person/{id}"),
        format!("/api/v1/supervise/person/{id}/history"),
        "/api/v1/supervise/duplicates".to_string(),
        "/api/v1/supervise/flags".to_string(),
        "/api/v1/supervise/flags/summary".to_string(),
        "/api/v1/supervise/devices/status".to_string(),
        format!("/api/v1/supervise/devices/{}/rejected", a.device_id),
        "/api/v1/supervise/workers/status".to_string(),
        "/api/v1/devices".to_string(),
    ] {
        let r = app.get(&path, Some(&ts));
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // Reports and targets.
    let r = app.send(
        "PUT",
        "/api/v1/targets",
        Some(&cs),
        &json!({"org_unit": "130131102", "year": 2026,
            "targets": [{"indicator": "contraceptive_prevalence", "value": 88.0}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    for path in [
        "/api/v1/targets?year=2026",
        "/api/v1/reports?org_unit=130131102&period=2026-11",
        "/api/v1/reports/breakdown?org_unit=130131102&period=2026-11",
        "/api/v1/reports/completeness?org_unit=130131102&period=2026-11",
    ] {
        let r = app.get(path, Some(&cs));
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // Errors are answers too.
    assert_eq!(app.get("/api/v1/me", None).status, 401);
    assert_eq!(
        app.get("/api/v1/supervise/conflicts/no-such-id", Some(&ts))
            .status,
        404
    );
    assert_eq!(app.get("/ready", None).status, 200);

    let answers = app.answers();
    let with_conflicts = answers
        .iter()
        .filter(|a| {
            a.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("server_value"))
        })
        .count();
    assert!(
        with_conflicts >= 4,
        "answers with conflicts: {with_conflicts}"
    );
    let v = app.spec_violations();
    assert!(v.is_empty(), "{}", v.join("\n"));
});

/// The check sees a lie: answers that break the spec are reported (so the tests above, and the
/// check every `TestApp` runs when dropped, can fail).
#[test]
fn the_spec_check_reports_answers_that_break_the_spec() {
    let conflict = json!({"id": "c", "entity": "person", "record_id": "r", "field": "phone",
        "kind": "field", "policy": "latest", "status": "closed", "winner": "device",
        "base_value": null, "server_value": "1", "device_value": 2});
    let push = |c: Value| Answer {
        method: "POST".into(),
        path: "/api/v1/sync/push".into(),
        status: 200,
        content_type: Some("application/json".into()),
        body: Some(json!({"device_id": "d", "last_seq": 1, "results": [
            {"seq": 1, "op_id": "o", "status": "applied", "entity": "person", "id": "r",
             "version": 2, "conflicts": [c]}]})),
    };
    assert_eq!(
        spec_check::violations(&push(conflict.clone())),
        Vec::<String>::new()
    );
    let mut missing = conflict.clone();
    missing.as_object_mut().unwrap().remove("winner");
    assert!(!spec_check::violations(&push(missing)).is_empty());
    let mut wrong = conflict;
    wrong["kind"] = json!(7);
    assert!(!spec_check::violations(&push(wrong)).is_empty());
    // A status the operation does not declare.
    let teapot = Answer {
        method: "GET".into(),
        path: "/health".into(),
        status: 418,
        content_type: None,
        body: None,
    };
    assert!(!spec_check::violations(&teapot).is_empty());
    // Path templates: literal routes before parameters, parameters inside a segment.
    assert_eq!(
        spec_check::template_of("/api/v1/supervise/conflicts"),
        Some("/api/v1/supervise/conflicts")
    );
    assert_eq!(
        spec_check::template_of("/api/v1/supervise/person/abc"),
        Some("/api/v1/supervise/{entity}/{id}")
    );
    assert_eq!(
        spec_check::template_of("/api/v1/exports/ledger/person.csv"),
        Some("/api/v1/exports/ledger/{entity}.{format}")
    );
}
