//! Logic checks (逻辑错误) that depend on other records: a flag follows the data whichever
//! record reaches the server first, a malformed ID number is stored and flagged instead of
//! refused, and a birth to a woman marked dead without a death record is flagged.

use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use crate::common::{new_id, person, seed_units, worker, Dev, V1};

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

/// The open flags of one record, sorted.
fn open_flags(app: &TestApp, id: &str) -> Vec<String> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct C {
        #[diesel(sql_type = diesel::sql_types::Text)]
        check_code: String,
    }
    let mut c = app.conn();
    let rows: Vec<C> = diesel::sql_query(format!(
        "SELECT check_code FROM flags WHERE active AND record_id = '{id}' ORDER BY check_code"
    ))
    .load(&mut *c)
    .unwrap();
    rows.into_iter().map(|r| r.check_code).collect()
}

/// Pushes ops that must all be applied; returns each op's flags.
fn push_applied(app: &TestApp, d: &Dev, ops: &[Value]) -> Vec<Vec<String>> {
    let rs = d.push_ok(app, ops);
    rs.iter()
        .map(|r| {
            assert_eq!(r["status"], "applied", "{r:?}");
            r["flags"]
                .as_array()
                .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        })
        .collect()
}

fn id_number(birth: &str, seq: u16) -> String {
    let d = chrono::NaiveDate::parse_from_str(birth, "%Y-%m-%d").unwrap();
    fieldsync::domain::resident_id::generate("130131", d, seq, false)
}

fn setup(b: Backend) -> (TestApp, Dev) {
    let app = spawn_app(b);
    seed_units(&app);
    let a = worker(&app, "worker_a", &[V1]);
    (app, a)
}

both!(checks_follow_related_records, |b| {
    let (app, a) = setup(b);
    let m = new_id();
    push_applied(
        &app,
        &a,
        &[a.op("person", &m, "create", None, person(V1, "蒋红"))],
    );

    // A visit pushed before the death dated earlier: flagged when the death arrives.
    let v = new_id();
    let visit = json!({"org_unit": V1, "person_id": m, "visit_date": "2026-05-10", "kind": "pregnancy_check"});
    let f = push_applied(&app, &a, &[a.op("visit", &v, "create", None, visit)]);
    assert!(f[0].is_empty(), "{f:?}");
    let d = new_id();
    push_applied(
        &app,
        &a,
        &[a.op(
            "death",
            &d,
            "create",
            None,
            json!({"org_unit": V1, "person_id": m, "death_date": "2026-05-01"}),
        )],
    );
    assert_eq!(open_flags(&app, &v), ["after_death"]);
    // The death's date corrected to after the visit: the visit's flag closes.
    push_applied(
        &app,
        &a,
        &[a.op(
            "death",
            &d,
            "update",
            Some(1),
            json!({"death_date": "2026-05-20"}),
        )],
    );
    assert!(open_flags(&app, &v).is_empty());
    // Back before the visit, then the death deleted: raised again, then closed.
    push_applied(
        &app,
        &a,
        &[a.op(
            "death",
            &d,
            "update",
            Some(2),
            json!({"death_date": "2026-05-02"}),
        )],
    );
    assert_eq!(open_flags(&app, &v), ["after_death"]);
    push_applied(&app, &a, &[a.op("death", &d, "delete", Some(3), json!({}))]);
    assert!(open_flags(&app, &v).is_empty());

    // A second birth pushed before the first: flagged, then closed when the first arrives.
    let birth = |date: &str, parity: i64| json!({"org_unit": V1, "mother_id": m, "birth_date": date, "sex": "male", "parity": parity});
    let b2 = new_id();
    let f = push_applied(
        &app,
        &a,
        &[a.op("birth", &b2, "create", None, birth("2020-06-01", 2))],
    );
    assert_eq!(f[0], ["birth_parity"]);
    let b1 = new_id();
    let f = push_applied(
        &app,
        &a,
        &[a.op("birth", &b1, "create", None, birth("2018-03-01", 1))],
    );
    assert!(f[0].is_empty(), "{f:?}");
    assert!(open_flags(&app, &b2).is_empty(), "stale birth_parity kept");
    // The first birth deleted again: the second is again a 'second' without a first.
    push_applied(
        &app,
        &a,
        &[a.op("birth", &b1, "delete", Some(1), json!({}))],
    );
    assert_eq!(open_flags(&app, &b2), ["birth_parity"]);

    // A person's own record corrected: her measures are judged again.
    let p = new_id();
    let mut s = person(V1, "冯丽");
    s["sex"] = json!("male"); // entered wrongly
    push_applied(&app, &a, &[a.op("person", &p, "create", None, s)]);
    let me = new_id();
    let f = push_applied(
        &app,
        &a,
        &[a.op(
            "measure",
            &me,
            "create",
            None,
            json!({"org_unit": V1, "person_id": p, "method": "iud_insertion", "started_on": "2026-03-01"}),
        )],
    );
    assert_eq!(f[0], ["method_sex"]);
    push_applied(
        &app,
        &a,
        &[a.op("person", &p, "update", Some(1), json!({"sex": "female"}))],
    );
    assert!(open_flags(&app, &me).is_empty());
    // The related record's flag rows name its own village, as the supervisor's list shows.
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) AS n FROM flags WHERE record_id = '{me}' AND org_unit = '{V1}' AND NOT active")
        ),
        1
    );
});

both!(malformed_id_number_is_stored_and_flagged, |b| {
    let (app, a) = setup(b);
    let good = id_number("1990-02-03", 41);
    let short = &good[..17];
    let p1 = new_id();
    let mut s = person(V1, "钱芳");
    s["id_number"] = json!(short);
    let f = push_applied(&app, &a, &[a.op("person", &p1, "create", None, s.clone())]);
    assert_eq!(f[0], ["id_format"]);
    let (recs, _) = a.pull_all(&app, 0);
    assert_eq!(recs[&p1]["fields"]["id_number"], short);
    assert_eq!(recs[&p1]["fields"]["name"], "钱芳");

    // The same typo on a second, otherwise identical person: not matched, not merged.
    let p2 = new_id();
    let f = push_applied(&app, &a, &[a.op("person", &p2, "create", None, s.clone())]);
    assert_eq!(f[0], ["id_format"]);
    let live = "SELECT COUNT(*) AS n FROM persons WHERE NOT deleted AND merged_into IS NULL";
    assert_eq!(count(&app, live), 2);
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM duplicate_candidates"),
        0
    );

    // Corrected to a valid number: the flag closes, and the number matches as a duplicate again.
    let f = push_applied(
        &app,
        &a,
        &[a.op("person", &p1, "update", Some(1), json!({"id_number": good}))],
    );
    assert!(f[0].is_empty(), "{f:?}");
    assert!(open_flags(&app, &p1).is_empty());
    let f = push_applied(
        &app,
        &a,
        &[a.op("person", &p2, "update", Some(1), json!({"id_number": good}))],
    );
    assert!(f[0].is_empty(), "{f:?}");
    assert_eq!(count(&app, live), 1, "the valid number merges the two");

    // Too long to be a typed number: still a type error.
    let r = a.push_ok(
        &app,
        &[a.op(
            "person",
            &new_id(),
            "create",
            None,
            json!({"org_unit": V1, "name": "长号", "sex": "female", "birth_date": "1990-02-03",
                   "id_number": "1".repeat(25)}),
        )],
    );
    assert_eq!(r[0]["status"], "rejected");
    assert_eq!(r[0]["code"], "bad_field_value");
});

both!(birth_to_woman_marked_dead_without_death_record, |b| {
    let (app, a) = setup(b);
    let m = new_id();
    let mut s = person(V1, "蒋红");
    s["alive"] = json!(false);
    push_applied(&app, &a, &[a.op("person", &m, "create", None, s)]);
    let b1 = new_id();
    let f = push_applied(
        &app,
        &a,
        &[a.op(
            "birth",
            &b1,
            "create",
            None,
            json!({"org_unit": V1, "mother_id": m, "birth_date": "2024-03-01", "sex": "female", "parity": 1}),
        )],
    );
    assert_eq!(f[0], ["mother_dead_without_record"]);
    // Her death record arrives, dated after the birth: the dates agree, the flag closes.
    push_applied(
        &app,
        &a,
        &[a.op(
            "death",
            &new_id(),
            "create",
            None,
            json!({"org_unit": V1, "person_id": m, "death_date": "2024-03-02"}),
        )],
    );
    assert!(open_flags(&app, &b1).is_empty());

    // A living mother's birth is not flagged; marking her dead without a record flags it.
    let w = new_id();
    let mut s = person(V1, "冯芳");
    s["alive"] = json!(true);
    push_applied(&app, &a, &[a.op("person", &w, "create", None, s)]);
    let b2 = new_id();
    let f = push_applied(
        &app,
        &a,
        &[a.op(
            "birth",
            &b2,
            "create",
            None,
            json!({"org_unit": V1, "mother_id": w, "birth_date": "2024-05-01", "sex": "male", "parity": 1}),
        )],
    );
    assert!(f[0].is_empty(), "{f:?}");
    push_applied(
        &app,
        &a,
        &[a.op("person", &w, "update", Some(1), json!({"alive": false}))],
    );
    assert_eq!(open_flags(&app, &b2), ["mother_dead_without_record"]);
});
