//! Issue 14's counting definitions, with ledgers pushed over the sync API as a village worker's
//! phone does and figures read from `GET /api/v1/reports`: the couple (a husband's measure
//! covers his wife by the spouse link, not by household roles), status at the period end from
//! the record's history (a past period's report does not change when a status changes later),
//! and one paragraph of a township's yearly report reproduced figure by figure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::auth::roles::Role;

/// A worker's phone: pushes records over the sync API, a create the first time an id is seen
/// and an update of the version it last got afterwards.
struct Phone<'a> {
    app: &'a TestApp,
    dev: Dev,
    versions: BTreeMap<String, i64>,
}

impl<'a> Phone<'a> {
    fn new(app: &'a TestApp, username: &str) -> Phone<'a> {
        Phone {
            app,
            dev: register_device(app, username),
            versions: BTreeMap::new(),
        }
    }

    fn ops(&self, at: &str, recs: &[(&str, String, Value)]) -> Vec<Value> {
        recs.iter()
            .map(|(entity, id, set)| {
                let base = self.versions.get(id).copied();
                let kind = if base.is_some() { "update" } else { "create" };
                let mut op = self.dev.op(entity, id, kind, base, set.clone());
                op["recorded_at"] = json!(format!("{at}T10:00:00+08:00"));
                op
            })
            .collect()
    }

    /// Pushes `recs` (entity, id, fields) recorded on `at` (a date, China time), in batches
    /// of 400; every op must be applied.
    fn push(&mut self, at: &str, recs: &[(&str, String, Value)]) {
        for chunk in recs.chunks(400) {
            let ops = self.ops(at, chunk);
            for r in self.dev.push_ok(self.app, &ops) {
                assert_eq!(r["status"], "applied", "{r:?}");
                let id = r["id"].as_str().unwrap().to_string();
                self.versions.insert(id, r["version"].as_i64().unwrap());
            }
        }
    }

    /// Pushes one op and returns its result.
    fn push_one(&mut self, at: &str, rec: (&str, String, Value)) -> Value {
        let ops = self.ops(at, &[rec]);
        self.dev.push_ok(self.app, &ops)[0].clone()
    }
}

fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.get(path, Some(token));
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.body
}

fn report(app: &TestApp, token: &str, period: &str, unit: &str) -> Value {
    get(
        app,
        token,
        &format!("/api/v1/reports?period={period}&org_unit={unit}"),
    )
}

fn counts_of(r: &Value, keys: &[&str]) -> Vec<i64> {
    keys.iter()
        .map(|k| r["counts"][*k].as_i64().unwrap_or_else(|| panic!("{k}")))
        .collect()
}

/// (numerator, denominator, value) of an indicator of a report.
fn rate(r: &Value, code: &str) -> (i64, i64, Option<f64>) {
    let i = r["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["indicator"] == code)
        .unwrap_or_else(|| panic!("{code}"));
    (
        i["numerator"].as_i64().unwrap(),
        i["denominator"].as_i64().unwrap(),
        i["value"].as_f64(),
    )
}

fn person(org: &str, sex: &str, born: &str, extra: Value) -> Value {
    let mut v = json!({"org_unit": org, "name": "某某", "sex": sex, "birth_date": born,
                       "residence": "resident", "alive": true});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

// Definition 3: a husband's measure (男扎, 避孕套) covers his wife through the spouse link on
// either record, whatever their household roles; the household head/spouse rule is only the
// fallback for a woman without any spouse link.
both!(a_husbands_measure_covers_his_wife_by_the_couple, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
    add_user(&app, "w", Role::Worker, None, &[va(), vb(), vc()]);
    let county = session(&app, "cs").access;
    let mut phone = Phone::new(&app, "w");
    let (a, vb, c) = (va(), vb(), vc());
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for n in [
        "H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H9", "F1", "S1", "D1", "M2", "W2", "M8",
        "F3", "M3", "W3", "M4", "W4", "X4", "M5", "W5", "M6", "W6", "M7", "W7", "W8", "M9", "W9",
        "K1", "K3",
    ] {
        ids.insert(n, new_id());
    }
    let id = |n: &str| ids[n].clone();
    let married = |rel: &str, spouse: Option<&str>| {
        let mut v = json!({"relation": rel, "marital_status": "first_marriage"});
        if let Some(s) = spouse {
            v["spouse_id"] = json!(ids[s]);
        }
        v
    };
    let hh = |org: &str, no: &str| json!({"org_unit": org, "household_no": no});
    let member = |org: &str, h: &str, sex: &str, born: &str, extra: Value| {
        let mut v = person(org, sex, born, extra);
        v["household_id"] = json!(ids[h]);
        v
    };
    let mut recs = vec![];
    for (h, org, no) in [
        ("H1", &a, "001"),
        ("H2", &a, "002"),
        ("H3", &a, "003"),
        ("H4", &a, "004"),
        ("H5", &a, "005"),
        ("H6", &a, "006"),
        ("H7", &a, "007"),
        ("H8", &vb, "008"),
        ("H9", &c, "009"),
    ] {
        recs.push(("household", id(h), hh(org, no)));
    }
    // Men first (the wives' links name them), then the wives, then M3 who names his wife.
    for (n, org, h, born, extra) in [
        // H1: the husband S1 lives with his father F1, the head; his wife D1 is a 儿媳.
        ("F1", &a, "H1", "1960-02-01", married("head", None)),
        ("S1", &a, "H1", "1990-03-01", married("child", None)),
        // H2: head and spouse without any link (the fallback); M8, the head's brother, is W8's
        // husband (W8 lives in village B).
        ("M2", &a, "H2", "1985-04-01", married("head", None)),
        ("M8", &a, "H2", "1991-05-01", married("sibling", None)),
        ("F3", &a, "H3", "1958-06-01", married("head", None)),
        ("M4", &a, "H4", "1980-07-01", married("head", None)),
        ("X4", &vb, "H8", "1981-08-01", married("sibling", None)),
        ("M5", &a, "H5", "1984-09-01", married("head", None)),
        ("M6", &a, "H6", "1983-10-01", married("head", None)),
        ("M7", &a, "H7", "1988-11-01", married("head", None)),
        ("M9", &c, "H9", "1987-12-01", married("head", None)),
    ] {
        recs.push(("person", id(n), member(org, h, "male", born, extra)));
    }
    for (n, org, h, born, extra) in [
        (
            "D1",
            &a,
            "H1",
            "1992-01-15",
            married("daughter_in_law", Some("S1")),
        ),
        ("W2", &a, "H2", "1987-02-15", married("spouse", None)),
        (
            "W3",
            &a,
            "H3",
            "1991-03-15",
            married("daughter_in_law", None),
        ),
        // W4 is the spouse of H4's head M4 by the register, but linked to X4: the link decides.
        ("W4", &a, "H4", "1982-04-15", married("spouse", Some("X4"))),
        ("W5", &a, "H5", "1986-05-15", married("spouse", Some("M5"))),
        ("W6", &a, "H6", "1985-06-15", married("spouse", Some("M6"))),
        ("W7", &a, "H7", "1990-07-15", married("spouse", Some("M7"))),
        ("W8", &vb, "H8", "1993-08-15", married("head", Some("M8"))),
        ("W9", &c, "H9", "1989-09-15", married("spouse", Some("M9"))),
    ] {
        recs.push(("person", id(n), member(org, h, "female", born, extra)));
    }
    recs.push((
        "person",
        id("M3"),
        member(&a, "H3", "male", "1989-04-01", married("child", Some("W3"))),
    ));
    let measure = |org: &str, who: &str, method: &str, from: &str, to: Option<&str>| {
        let mut v =
            json!({"org_unit": org, "person_id": ids[who], "method": method, "started_on": from});
        if let Some(t) = to {
            v["ended_on"] = json!(t);
        }
        ("measure", new_id(), v)
    };
    recs.extend([
        measure(&a, "S1", "vasectomy", "2026-03-01", None),
        measure(&a, "M2", "condoms", "2026-01-01", None),
        measure(&a, "M3", "condoms", "2026-05-01", None),
        measure(&a, "M4", "vasectomy", "2020-06-01", None),
        // A husband's pills record is not a measure of his that covers his wife.
        measure(&a, "M5", "pills", "2026-02-01", None),
        measure(&a, "W6", "iud_insertion", "2025-04-01", None),
        measure(&a, "M6", "vasectomy", "2025-09-01", None),
        measure(&a, "M7", "condoms", "2026-01-01", Some("2026-10-15")),
        measure(&a, "M8", "vasectomy", "2024-01-01", None),
        measure(&c, "M9", "vasectomy", "2026-11-05", None),
    ]);
    // Two births in October: D1's (her husband's vasectomy is long-acting) and W3's (condoms
    // are not).
    for (k, mother, sex, on) in [
        ("K1", "D1", "female", "2026-10-10"),
        ("K3", "W3", "male", "2026-10-20"),
    ] {
        let h = if mother == "D1" { "H1" } else { "H3" };
        recs.push((
            "person",
            id(k),
            member(&a, h, sex, on, json!({"relation": "grandchild"})),
        ));
        recs.push((
            "birth",
            new_id(),
            json!({"org_unit": a, "mother_id": ids[mother], "child_id": ids[k], "birth_date": on,
                   "sex": sex, "parity": 1, "within_policy": true}),
        ));
    }
    phone.push("2026-01-05", &recs);

    // A spouse link is a reference like any other: to a record outside the caller's villages
    // (or none) it is refused; a relation outside the register's list is a bad value.
    let r = phone.push_one(
        "2026-01-05",
        (
            "person",
            new_id(),
            person(
                &a,
                "female",
                "1990-01-01",
                json!({"spouse_id": new_id(), "relation": "daughter_in_law"}),
            ),
        ),
    );
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("rejected"), Some("bad_reference")),
        "{r:?}"
    );
    let r = phone.push_one(
        "2026-01-05",
        (
            "person",
            new_id(),
            person(&a, "female", "1990-01-01", json!({"relation": "cousin"})),
        ),
    );
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("rejected"), Some("bad_field_value")),
        "{r:?}"
    );

    // Married women of childbearing age, users, of whom by vasectomy, condoms, IUD and pills,
    // mothers, of whom with a long-acting measure. Village A: D1 (S1's vasectomy), W2 (M2's
    // condoms by the household rule), W3 (M3's condoms, linked from his record), W6 (her IUD
    // and M6's vasectomy: counted once, under the vasectomy); not W4 (linked to X4, who has
    // none: M4's vasectomy does not count), W5 (pills are not a husband's measure) or W7 (M7's
    // condoms ended on 15 October; counted in September). Village B: W8 (M8's vasectomy, kept
    // in village A). Village C: W9, from M9's vasectomy of 5 November (the year, not October).
    let keys = [
        "married_wcba",
        "contraceptive_users",
        "users_vasectomy",
        "users_condoms",
        "users_iud_insertion",
        "users_pills",
        "mothers",
        "mothers_long_acting",
    ];
    let (t0, t1) = (township(0, 0), township(0, 1));
    let cases: [(&str, &str, [i64; 8]); 16] = [
        ("2026-10", &a, [7, 4, 2, 2, 0, 0, 2, 1]),
        ("2026-10", &vb, [1, 1, 1, 0, 0, 0, 0, 0]),
        ("2026-10", &t0, [8, 5, 3, 2, 0, 0, 2, 1]),
        ("2026-10", &c, [1, 0, 0, 0, 0, 0, 0, 0]),
        ("2026-10", &t1, [1, 0, 0, 0, 0, 0, 0, 0]),
        ("2026-10", COUNTY, [9, 5, 3, 2, 0, 0, 2, 1]),
        ("2026", &a, [7, 4, 2, 2, 0, 0, 2, 1]),
        ("2026", &vb, [1, 1, 1, 0, 0, 0, 0, 0]),
        ("2026", &t0, [8, 5, 3, 2, 0, 0, 2, 1]),
        ("2026", &c, [1, 1, 1, 0, 0, 0, 0, 0]),
        ("2026", &t1, [1, 1, 1, 0, 0, 0, 0, 0]),
        ("2026", COUNTY, [9, 6, 4, 2, 0, 0, 2, 1]),
        ("2026-09", &a, [7, 5, 2, 3, 0, 0, 0, 0]),
        ("2026-09", &t0, [8, 6, 3, 3, 0, 0, 0, 0]),
        ("2026-09", &c, [1, 0, 0, 0, 0, 0, 0, 0]),
        ("2026-09", COUNTY, [9, 6, 3, 3, 0, 0, 0, 0]),
    ];
    for (period, unit, expected) in cases {
        let r = report(&app, &county, period, unit);
        assert_eq!(counts_of(&r, &keys), expected, "{period} {unit}");
        let prevalence = |n: i64, d: i64| (n * 10_000 * 100 / d + 50) / 100;
        let (n, d, v) = rate(&r, "contraceptive_prevalence");
        assert_eq!((n, d), (expected[1], expected[0]), "{period} {unit}");
        assert_eq!(
            (v.unwrap() * 100.0).round() as i64,
            prevalence(n, d),
            "{period} {unit}"
        );
        let (n, d, v) = rate(&r, "long_acting_measure_rate");
        assert_eq!(
            (n, d, v),
            (expected[7], expected[6], (expected[6] > 0).then_some(50.0)),
            "{period} {unit}"
        );
    }
    // Hand-written prevalence values: village A October 4/7, township 1 5/8, the county 5/9
    // in October and 6/9 for the year.
    assert_eq!(
        rate(
            &report(&app, &county, "2026-10", &a),
            "contraceptive_prevalence"
        )
        .2,
        Some(57.14)
    );
    assert_eq!(
        rate(
            &report(&app, &county, "2026-10", &t0),
            "contraceptive_prevalence"
        )
        .2,
        Some(62.5)
    );
    assert_eq!(
        rate(
            &report(&app, &county, "2026-10", COUNTY),
            "contraceptive_prevalence"
        )
        .2,
        Some(55.56)
    );
    assert_eq!(
        rate(
            &report(&app, &county, "2026", COUNTY),
            "contraceptive_prevalence"
        )
        .2,
        Some(66.67)
    );
});

/// The report and its CSV file for a month at each unit, as bytes.
fn month_bytes(app: &TestApp, token: &str, period: &str, units: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for u in units {
        for path in [
            format!("/api/v1/reports?period={period}&org_unit={u}"),
            format!("/api/v1/exports/report.csv?period={period}&org_unit={u}"),
        ] {
            let (status, _, data) = app.get_bytes(&path, token);
            assert_eq!(status, 200, "{path}");
            out.push(data);
        }
    }
    out
}

// Definition 1: status-like counts are taken at the period end from the record's history, so a
// change dated after a month (a wedding, a divorce, a measure started or stopped, a spouse link
// removed, a departure or a death recorded only as a status) leaves that month's report
// byte-identical, while a change dated inside the month changes it, and a locked month shows
// the change beside its approved figures.
both!(
    status_changes_after_a_month_leave_its_report_unchanged,
    |b| {
        let app = spawn_app(b);
        seed_tree(&app);
        add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
        add_user(
            &app,
            "ts",
            Role::TownshipSupervisor,
            Some(&township(0, 0)),
            &[],
        );
        add_user(&app, "w", Role::Worker, None, &[va()]);
        let (county, ts) = (session(&app, "cs").access, session(&app, "ts").access);
        let mut phone = Phone::new(&app, "w");
        let a = va();
        let ids: BTreeMap<&str, String> = [
            "W1", "W2", "H3", "W3", "P4", "P5", "W6", "W7", "H8", "W8", "K8",
        ]
        .into_iter()
        .map(|n| (n, new_id()))
        .collect();
        let id = |n: &str| ids[n].clone();
        let single = json!({"marital_status": "unmarried"});
        let wed = |on: &str| json!({"marital_status": "first_marriage", "marriage_date": on});
        let (m2, m3) = (new_id(), new_id());
        phone.push(
        "2026-01-05",
        &[
            ("person", id("W1"), person(&a, "female", "1995-01-01", single.clone())),
            ("person", id("W2"), person(&a, "female", "1988-02-01", wed("2015-05-01"))),
            ("person", id("H3"), person(&a, "male", "1986-03-01", wed("2012-01-01"))),
            (
                "person",
                id("W3"),
                person(&a, "female", "1989-04-01", {
                    let mut v = wed("2012-01-01");
                    v["spouse_id"] = json!(ids["H3"]);
                    v
                }),
            ),
            ("person", id("P4"), person(&a, "male", "1970-05-01", json!({}))),
            ("person", id("P5"), person(&a, "female", "1950-06-01", json!({}))),
            ("person", id("W6"), person(&a, "female", "1991-07-01", wed("2016-01-01"))),
            ("person", id("W7"), person(&a, "female", "1996-08-01", single.clone())),
            (
                "measure",
                m2,
                json!({"org_unit": a, "person_id": ids["W2"], "method": "iud_insertion", "started_on": "2020-01-01"}),
            ),
            (
                "measure",
                m3.clone(),
                json!({"org_unit": a, "person_id": ids["H3"], "method": "condoms", "started_on": "2025-01-01"}),
            ),
            // W8, linked to H8 (vasectomy), gives birth to K8 on 5 October.
            ("person", id("H8"), person(&a, "male", "1984-09-01", wed("2014-01-01"))),
            (
                "person",
                id("W8"),
                person(&a, "female", "1990-10-01", {
                    let mut v = wed("2014-01-01");
                    v["spouse_id"] = json!(ids["H8"]);
                    v
                }),
            ),
            ("person", id("K8"), person(&a, "male", "2026-10-05", json!({}))),
            (
                "measure",
                new_id(),
                json!({"org_unit": a, "person_id": ids["H8"], "method": "vasectomy", "started_on": "2020-01-01"}),
            ),
            (
                "birth",
                new_id(),
                json!({"org_unit": a, "mother_id": ids["W8"], "child_id": ids["K8"], "birth_date": "2026-10-05",
                       "sex": "male", "parity": 1, "within_policy": true}),
            ),
        ],
    );
        let t0 = township(0, 0);
        let units = [a.as_str(), t0.as_str(), COUNTY];
        let keys = [
            "population_end",
            "moved_out_end",
            "married_wcba",
            "contraceptive_users",
            "users_iud_insertion",
            "users_condoms",
            "users_pills",
            "users_vasectomy",
            "mothers",
            "mothers_long_acting",
        ];
        // October at village A: everyone is in the population; married: W2, W3, W6, W8; users: W2
        // (IUD), W3 (her husband H3's condoms) and W8 (H8's vasectomy, long-acting for her birth).
        for u in units {
            let r = report(&app, &county, "2026-10", u);
            assert_eq!(counts_of(&r, &keys), [11, 0, 4, 3, 1, 1, 0, 1, 1, 1], "{u}");
        }
        let october = month_bytes(&app, &county, "2026-10", &units);

        // In November: W1 marries (20 November), W2 divorces (10 November), H3 stops the condoms
        // (15 November) and W3's spouse link is removed (recorded 25 November), P4 is recorded as
        // moved out and P5 as dead without a dated record (12 and 8 November), W6 starts pills
        // (2 November).
        phone.push(
            "2026-11-08",
            &[("person", id("P5"), json!({"alive": false}))],
        );
        phone.push(
            "2026-11-12",
            &[("person", id("P4"), json!({"residence": "moved_out"}))],
        );
        phone.push(
        "2026-11-21",
        &[
            ("person", id("W1"), wed("2026-11-20")),
            (
                "person",
                id("W2"),
                json!({"marital_status": "divorced", "marriage_date": "2026-11-10"}),
            ),
            (
                "measure",
                new_id(),
                json!({"org_unit": a, "person_id": ids["W6"], "method": "pills", "started_on": "2026-11-02"}),
            ),
        ],
    );
        phone.push(
            "2026-11-25",
            &[
                ("person", id("W3"), json!({"spouse_id": null})),
                ("measure", m3, json!({"ended_on": "2026-11-15"})),
                // W8 divorces H8 on 18 November: the link goes with it.
                (
                    "person",
                    id("W8"),
                    json!({"marital_status": "divorced", "marriage_date": "2026-11-18", "spouse_id": null}),
                ),
            ],
        );
        assert!(
            month_bytes(&app, &county, "2026-10", &units) == october,
            "October's report changed after changes dated in November"
        );
        // November sees them: P4 away, P5 dead; married W1, W3, W6; users: W6's pills only.
        let r = report(&app, &county, "2026-11", &a);
        assert_eq!(counts_of(&r, &keys), [9, 1, 3, 1, 0, 0, 1, 0, 0, 0]);

        // October is approved and locked; then W7's wedding of 15 October is recorded: October
        // counts her (5 married women), and the locked month shows the change beside its figures.
        let villages = [va(), vb(), village(0, 0, 2)];
        for v in &villages {
            let r = app.post(
                "/api/v1/reports/submissions",
                Some(&ts),
                &json!({"org_unit": v, "period": "2026-10"}),
            );
            assert_eq!(r.status, 201, "{:?}", r.body);
            let sid = r.body["id"].as_str().unwrap();
            let r = app.post(
                &format!("/api/v1/reports/submissions/{sid}/approve"),
                Some(&ts),
                &json!({}),
            );
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        let r = app.post(
            "/api/v1/reports/lock",
            Some(&county),
            &json!({"org_unit": t0, "period": "2026-10"}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        let locked = report(&app, &county, "2026-10", &a);
        assert_eq!(locked["approval"]["submission"]["status"], "locked");
        assert_eq!(locked["approval"]["count_changes"], json!([]));
        phone.push("2026-11-26", &[("person", id("W7"), wed("2026-10-15"))]);
        let locked = report(&app, &county, "2026-10", &a);
        assert_eq!(counts_of(&locked, &keys), [11, 0, 4, 3, 1, 1, 0, 1, 1, 1]);
        let ap = &locked["approval"];
        assert_eq!(ap["changed_after_approval"], true);
        let changes: Vec<(String, i64, i64)> = ap["count_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["key"].as_str().unwrap().to_string(),
                    c["approved"].as_i64().unwrap(),
                    c["current"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            changes.contains(&("married_wcba".to_string(), 4, 5)),
            "{changes:?}"
        );
        assert!(
            changes.contains(&("wcba_children_0".to_string(), 3, 4)),
            "{changes:?}"
        );
        // An October range (not a locked month) is live: W7 counts.
        let r = get(
            &app,
            &county,
            &format!("/api/v1/reports?from=2026-10-01&to=2026-10-31&org_unit={a}"),
        );
        assert_eq!(counts_of(&r, &keys), [11, 0, 5, 3, 1, 1, 0, 1, 1, 1]);
    }
);

/// A day of 2026 (`n` days after 1 January).
fn day_2026(n: usize) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(n as u64);
    d.format("%Y-%m-%d").to_string()
}

/// One paragraph of a township's yearly report (年度工作总结), reproduced from ledgers built for it
/// and pushed over the sync API by the villages' worker, then read from `GET /api/v1/reports`
/// and the breakdown by village:
///
/// > 全镇年末总人口1,334人（年初1,224人）。全年出生110人，其中男58人、女52人，出生人口性别比
/// > 111.54；一孩72人、二孩34人、多孩4人，一孩率65.45%；符合政策生育106人，符合政策生育率
/// > （计划生育率）96.36%。已婚育龄妇女1,206人，落实各种节育措施1,096人（女扎312人、男扎18人、
/// > 上环655人、皮埋21人、口服药30人、避孕套60人），综合避孕率90.88%。全镇流出人口总数472人
/// > （省内301人、省外171人），流出已婚育龄妇女59人，办证59人，办证率100%。全年兑现奖励扶助
/// > 85人81,600元、特别扶助6人7,920元。
///
/// The seed reports themselves are not in the repository. The figures quoted from them (issue
/// 14, DOMAIN.md) are the births (110: 58 boys, 52 girls, 72 first births, 106 within policy),
/// the married women and their measures (1,096 of 1,206), and the persons away (472; 59 married
/// women, 59 with a certificate); the other figures of the paragraph (population, the second
/// and later births, the split by method and by destination, the benefits) are this test's,
/// of the same kinds. The seeds' other indicators (长效避孕及时率, 独生子女领证 cumulative,
/// 新婚/晚婚, 独男户, 信息准确率, 药具使用率, the 常住/流动 split of 符合政策生育率) are not in
/// this paragraph; `report_indicators.rs` tests each of them with hand-written figures.
fn seed_paragraph_ledgers(a: &[String; 3]) -> Vec<Vec<(&'static str, String, Value)>> {
    let org = |i: usize| a[i % 3].clone();
    let women: Vec<String> = (0..1206).map(|_| new_id()).collect();
    let husbands: Vec<String> = (0..18).map(|_| new_id()).collect();
    let mut men = vec![];
    // The 18 husbands with a vasectomy, each named by his wife's spouse link.
    for (k, h) in husbands.iter().enumerate() {
        let i = 312 + k;
        men.push((
            "person",
            h.clone(),
            person(
                &org(i),
                "male",
                "1982-05-01",
                json!({"marital_status": "first_marriage"}),
            ),
        ));
    }
    let mut people = vec![];
    for (i, w) in women.iter().enumerate() {
        let mut extra = json!({"marital_status": "first_marriage", "marriage_date": "2010-10-01"});
        if (312..330).contains(&i) {
            extra["spouse_id"] = json!(husbands[i - 312]);
        }
        let born = format!("{}-03-{:02}", 1980 + i % 20, 1 + i % 28);
        people.push(("person", w.clone(), person(&org(i), "female", &born, extra)));
    }
    // 472 persons away since 2025: 301 within the province, 171 outside; 59 of them married
    // women of childbearing age, each with a marriage-and-childbearing certificate.
    let mut away = vec![];
    let mut moves = vec![];
    for j in 0..472 {
        let id = new_id();
        let (sex, extra) = if j % 8 == 0 && j / 8 < 59 {
            ("female", json!({"marital_status": "first_marriage"}))
        } else {
            ("male", json!({"marital_status": "unmarried"}))
        };
        let mut p = person(&org(j), sex, "1990-06-01", extra);
        p["residence"] = json!("moved_out");
        away.push(("person", id.clone(), p));
        let mut m = json!({"org_unit": org(j), "person_id": id, "direction": "out",
                           "moved_on": "2025-06-01",
                           "place": if j < 301 { "within_province" } else { "outside_province" }});
        if sex == "female" {
            m["certificate_no"] = json!(format!("HY{j:04}"));
        }
        moves.push(("migration", new_id(), m));
    }
    // Measures: 312 tubal ligations, 18 husbands' vasectomies, 655 IUDs, 21 implants, 30 on
    // pills, 60 on condoms; the last 110 women have none.
    let mut measures = vec![];
    for i in 0..1096 {
        let (who, method) = match i {
            0..=311 => (&women[i], "tubal_ligation"),
            312..=329 => (&husbands[i - 312], "vasectomy"),
            330..=984 => (&women[i], "iud_insertion"),
            985..=1005 => (&women[i], "implant"),
            1006..=1035 => (&women[i], "pills"),
            _ => (&women[i], "condoms"),
        };
        measures.push((
            "measure",
            new_id(),
            json!({"org_unit": org(i), "person_id": who, "method": method, "started_on": "2024-03-01"}),
        ));
    }
    // 110 births of 2026 to the women without a measure: 58 boys then 52 girls; 72 first, 34
    // second, 4 third births, the third ones outside policy.
    let mut children = vec![];
    let mut births = vec![];
    for k in 0..110 {
        let i = 1096 + k;
        let (child, on) = (new_id(), day_2026(10 + k * 3));
        let sex = if k < 58 { "male" } else { "female" };
        let parity = match k {
            0..=71 => 1,
            72..=105 => 2,
            _ => 3,
        };
        children.push((
            "person",
            child.clone(),
            person(&org(i), sex, &on, json!({})),
        ));
        births.push((
            "birth",
            new_id(),
            json!({"org_unit": org(i), "mother_id": women[i], "child_id": child, "birth_date": on,
                   "sex": sex, "parity": parity, "within_policy": parity < 3, "place": "township_clinic"}),
        ));
    }
    // Benefits of 2026: 85 reward-and-assistance at 960 yuan, 6 special assistance at 1,320.
    let mut benefits = vec![];
    for (i, woman) in women.iter().enumerate().take(91) {
        let (kind, yuan) = if i < 85 {
            ("reward_assistance", 960)
        } else {
            ("special_assistance", 1320)
        };
        benefits.push((
            "benefit",
            new_id(),
            json!({"org_unit": org(i), "person_id": woman, "kind": kind, "year": 2026, "amount_yuan": yuan}),
        ));
    }
    let mut rest = away;
    rest.extend(children);
    rest.extend(measures);
    rest.extend(births);
    rest.extend(moves);
    rest.extend(benefits);
    vec![men, people, rest]
}

both!(a_seed_report_paragraph_is_reproduced, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
    let villages = [va(), vb(), village(0, 0, 2)];
    add_user(&app, "w", Role::Worker, None, &villages);
    let county = session(&app, "cs").access;
    let mut phone = Phone::new(&app, "w");
    for part in seed_paragraph_ledgers(&villages) {
        phone.push("2026-12-20", &part);
    }
    let t0 = township(0, 0);
    let figures: [(&str, i64); 27] = [
        ("population_end", 1334),
        ("population_start", 1224),
        ("births", 110),
        ("births_male", 58),
        ("births_female", 52),
        ("births_parity_1", 72),
        ("births_parity_2", 34),
        ("births_parity_3plus", 4),
        ("births_within_policy", 106),
        ("married_wcba", 1206),
        ("contraceptive_users", 1096),
        ("users_tubal_ligation", 312),
        ("users_vasectomy", 18),
        ("users_iud_insertion", 655),
        ("users_implant", 21),
        ("users_pills", 30),
        ("users_condoms", 60),
        ("moved_out_end", 472),
        ("away_end_within_province", 301),
        ("away_end_outside_province", 171),
        ("away_married_women_end", 59),
        ("away_married_women_certified_end", 59),
        ("benefit_reward_assistance", 85),
        ("benefit_reward_assistance_yuan", 81_600),
        ("benefit_special_assistance", 6),
        ("benefit_special_assistance_yuan", 7_920),
        ("wcba_children_1", 110),
    ];
    let keys: Vec<&str> = figures.iter().map(|(k, _)| *k).collect();
    let expected: Vec<i64> = figures.iter().map(|(_, v)| *v).collect();
    let r = report(&app, &county, "2026", &t0);
    assert_eq!(counts_of(&r, &keys), expected);
    for (code, n, d, v) in [
        ("contraceptive_prevalence", 1096, 1206, 90.88),
        ("policy_compliant_birth_rate", 106, 110, 96.36),
        ("sex_ratio_at_birth", 58, 52, 111.54),
        ("first_child_share", 72, 110, 65.45),
        ("certificate_rate", 59, 59, 100.0),
    ] {
        assert_eq!(rate(&r, code), (n, d, Some(v)), "{code}");
    }
    // The county holds only this township: the same paragraph.
    let c = report(&app, &county, "2026", COUNTY);
    assert_eq!(counts_of(&c, &keys), expected);
    // The breakdown by village: its total row is the report's figure, and its villages add up
    // to it (every figure here is a sum over villages).
    let bd = get(
        &app,
        &county,
        &format!("/api/v1/reports/breakdown?period=2026&org_unit={t0}"),
    );
    assert_eq!(counts_of(&bd["total"], &keys), expected);
    let rows = bd["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let mut sum = vec![0; keys.len()];
    for row in rows {
        for (s, v) in sum.iter_mut().zip(counts_of(row, &keys)) {
            *s += v;
        }
    }
    assert_eq!(sum, expected);
    // Village A (every third record from the first): 402 married women, 366 users, 36 births.
    let first = rows
        .iter()
        .find(|r| r["org_unit"]["code"] == villages[0])
        .unwrap();
    assert_eq!(
        counts_of(first, &["married_wcba", "contraceptive_users", "births"]),
        [402, 366, 36]
    );
});

/// The status-history rows of one person: (field, old value, effective on, org unit).
fn status_history(app: &TestApp, person: &str) -> Vec<(String, Option<String>, String, String)> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct H {
        #[diesel(sql_type = diesel::sql_types::Text)]
        field: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        old_value: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        effective_on: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        org_unit: String,
    }
    assert!(person.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    let rows: Vec<H> = diesel::sql_query(format!(
        "SELECT field, old_value, effective_on, org_unit FROM person_status_changes \
         WHERE person_id = '{person}' ORDER BY change_seq, field"
    ))
    .load(&mut *app.conn())
    .unwrap();
    rows.into_iter()
        .map(|h| (h.field, h.old_value, h.effective_on, h.org_unit))
        .collect()
}

// Definition 1's history is kept by a trigger on persons, which fires only for an update that
// changes a status field or the org unit: an edit of anything else leaves no row, a change of
// status leaves one with the value it replaced, and a move carries the rows to the new unit.
both!(status_history_keeps_only_changes_of_status, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "w", Role::Worker, None, &[va(), vb()]);
    let mut phone = Phone::new(&app, "w");
    let (a, w) = (va(), new_id());
    let single = json!({"marital_status": "unmarried"});
    phone.push(
        "2026-03-01",
        &[(
            "person",
            w.clone(),
            person(&a, "female", "1990-01-01", single),
        )],
    );
    phone.push(
        "2026-04-01",
        &[(
            "person",
            w.clone(),
            json!({"name": "某某某", "id_number": null}),
        )],
    );
    assert_eq!(status_history(&app, &w), vec![]);
    phone.push(
        "2026-05-01",
        &[(
            "person",
            w.clone(),
            json!({"marital_status": "first_marriage", "marriage_date": "2026-04-20"}),
        )],
    );
    let married = (
        "marital_status".to_string(),
        Some("unmarried".to_string()),
        "2026-04-20".to_string(),
        a.clone(),
    );
    assert_eq!(status_history(&app, &w), vec![married.clone()]);
    phone.push(
        "2026-06-02",
        &[("person", w.clone(), json!({"residence": "moved_out"}))],
    );
    let moved_out = (
        "residence".to_string(),
        Some("resident".to_string()),
        "2026-06-02".to_string(),
        a.clone(),
    );
    assert_eq!(
        status_history(&app, &w),
        vec![married.clone(), moved_out.clone()]
    );
    phone.push(
        "2026-07-01",
        &[("person", w.clone(), json!({"org_unit": vb()}))],
    );
    let at_b = |mut h: (String, Option<String>, String, String)| {
        h.3 = vb();
        h
    };
    assert_eq!(
        status_history(&app, &w),
        vec![at_b(married), at_b(moved_out)]
    );
});
