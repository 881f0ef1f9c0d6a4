//! Issue 14's indicators (长效避孕及时率, 独生子女领证率 and certificates held, 当年新婚对数 and
//! 晚婚率, 独男户, 信息准确率, 药具使用率, 符合政策生育率 of resident and floating mothers),
//! from ledgers pushed over the sync API by the villages' workers, checked with hand-written
//! figures at village, township and county level for a month and a year, and in the CSV and
//! XLSX exports.

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::auth::roles::Role;

/// A village's pushes: each `add` is one create op of the worker's device, applied.
struct Ledger<'a> {
    app: &'a TestApp,
    dev: &'a Dev,
    org: String,
}

impl Ledger<'_> {
    /// Pushes one record; returns its id and the flags it raised.
    fn add_flagged(&self, entity: &str, mut set: Value) -> (String, Vec<String>) {
        let id = new_id();
        set["org_unit"] = json!(self.org);
        let rs = self
            .dev
            .push_ok(self.app, &[self.dev.op(entity, &id, "create", None, set)]);
        assert_eq!(rs[0]["status"], "applied", "{entity}: {:?}", rs[0]);
        let flags = rs[0]["flags"]
            .as_array()
            .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        (id, flags)
    }

    /// Pushes one record that raises no flag.
    fn add(&self, entity: &str, set: Value) -> String {
        let (id, flags) = self.add_flagged(entity, set);
        assert!(flags.is_empty(), "{entity}: {flags:?}");
        id
    }

    fn household(&self, no: &str, one_child: bool) -> String {
        self.add(
            "household",
            json!({"household_no": no, "one_child": one_child}),
        )
    }

    fn person(&self, sex: &str, born: &str, extra: Value) -> String {
        let mut v =
            json!({"name": "某某", "sex": sex, "birth_date": born, "residence": "resident"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.add("person", v)
    }

    /// A married woman of childbearing age, spouse in `hh` (or without a household).
    fn wife(&self, born: &str, hh: Option<&str>, extra: Value) -> String {
        let mut v = json!({"marital_status": "first_marriage", "relation": "spouse"});
        if let Some(h) = hh {
            v["household_id"] = json!(h);
        }
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.person("female", born, v)
    }

    fn husband(&self, hh: &str) -> String {
        self.person(
            "male",
            "1990-01-01",
            json!({"marital_status": "first_marriage", "relation": "head", "household_id": hh}),
        )
    }

    fn child(&self, hh: &str, sex: &str, born: &str) -> String {
        self.person(
            sex,
            born,
            json!({"relation": "child", "household_id": hh, "marital_status": "unmarried"}),
        )
    }

    /// A first birth.
    fn birth(&self, mother: &str, on: &str, within_policy: bool) -> String {
        self.add(
            "birth",
            json!({"mother_id": mother, "birth_date": on, "sex": "male", "parity": 1,
                   "within_policy": within_policy}),
        )
    }

    fn measure(&self, who: &str, method: &str, from: &str) -> String {
        self.add(
            "measure",
            json!({"person_id": who, "method": method, "started_on": from}),
        )
    }

    fn supply(&self, who: &str, item: &str, on: &str) {
        self.add(
            "supply",
            json!({"person_id": who, "item": item, "quantity": 10, "handed_on": on}),
        );
    }

    fn migration(&self, who: &str, direction: &str, on: &str) {
        self.add(
            "migration",
            json!({"person_id": who, "direction": direction, "moved_on": on,
                   "place": "within_province"}),
        );
    }

    fn certificate(&self, holder: Value, year: i32) {
        let mut v = json!({"kind": "one_child_certificate", "year": year});
        for (k, x) in holder.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.add("benefit", v);
    }
}

struct World {
    app: TestApp,
    county: String,
}

fn world(b: Backend) -> (World, Dev, Dev) {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
    let ab = worker(&app, "wab", &[va().as_str(), vb().as_str()]);
    let c = worker(&app, "wc", &[vc().as_str()]);
    let county = session(&app, "cs").access;
    (World { app, county }, ab, c)
}

/// The ledgers of the three villages; the figures they give are in the test below.
fn build(app: &TestApp, ab: &Dev, dc: &Dev) {
    let (a, b, c) = (
        Ledger {
            app,
            dev: ab,
            org: va(),
        },
        Ledger {
            app,
            dev: ab,
            org: vb(),
        },
        Ledger {
            app,
            dev: dc,
            org: vc(),
        },
    );

    // Village A.
    // HA1 (one child, a son): A1 gives birth on 5 October and has an IUD on the 25th (20 days:
    // timely); the household holds a certificate of 2024.
    let ha1 = a.household("HA1", true);
    let a1 = a.wife(
        "1995-03-01",
        Some(&ha1),
        json!({"marriage_date": "2018-05-01"}),
    );
    a.husband(&ha1);
    a.child(&ha1, "male", "2026-10-05");
    a.birth(&a1, "2026-10-05", true);
    a.measure(&a1, "iud_insertion", "2026-10-25");
    a.certificate(json!({"household_id": ha1}), 2024);
    // HA2 (one child, a daughter): A2 gave birth on 1 June, IUD on 1 October (122 days: late);
    // her husband's condoms rank below her IUD. Her certificate of 2026.
    let ha2 = a.household("HA2", true);
    let a2 = a.wife(
        "1996-01-01",
        Some(&ha2),
        json!({"marriage_date": "2019-01-01"}),
    );
    let a2h = a.husband(&ha2);
    a.child(&ha2, "female", "2026-06-01");
    a.birth(&a2, "2026-06-01", true);
    a.measure(&a2, "iud_insertion", "2026-10-01");
    a.measure(&a2h, "condoms", "2025-01-01");
    a.certificate(json!({"person_id": a2}), 2026);
    // HA3 (not one-child): A3 went away on 1 September and gave birth there on 28 October,
    // not within policy (floating); her husband's vasectomy of 20 November is timely for the
    // year, not yet done at the end of October (pending then). A certificate of 2027: not
    // held in 2026.
    let ha3 = a.household("HA3", false);
    let a3 = a.wife(
        "1990-07-01",
        Some(&ha3),
        json!({"marriage_date": "2012-01-01", "residence": "moved_out"}),
    );
    let a3h = a.husband(&ha3);
    a.migration(&a3, "out", "2026-09-01");
    a.birth(&a3, "2026-10-28", false);
    a.measure(&a3h, "vasectomy", "2026-11-20");
    a.certificate(json!({"person_id": a3}), 2027);
    // HA4 (one child, a son born 2015), no certificate.
    let ha4 = a.household("HA4", true);
    a.child(&ha4, "male", "2015-04-04");
    // Weddings: A4 at 26 on 10 October with condoms from that day, supplied on the 12th; A5 on
    // 19 October, the day before she turns 23 (not late), pills since September supplied in
    // August; A6 remarried in March (not a first marriage), an implant ranking above her pills
    // (not a supply user though supplied). A man's wedding is not counted (A4's husband).
    let a4 = a.wife("2000-06-15", None, json!({"marriage_date": "2026-10-10"}));
    a.person(
        "male",
        "1999-01-01",
        json!({"marital_status": "first_marriage", "marriage_date": "2026-10-10"}),
    );
    a.measure(&a4, "condoms", "2026-10-10");
    a.supply(&a4, "condoms", "2026-10-12");
    let a5 = a.wife("2003-10-20", None, json!({"marriage_date": "2026-10-19"}));
    a.measure(&a5, "pills", "2026-09-01");
    a.supply(&a5, "pills", "2026-08-20");
    let a6 = a.wife(
        "1985-01-01",
        None,
        json!({"marital_status": "remarried", "marriage_date": "2026-03-01"}),
    );
    a.measure(&a6, "pills", "2026-01-01");
    a.measure(&a6, "implant", "2026-02-01");
    a.supply(&a6, "pills", "2026-10-05");

    // Village B.
    // HB1: B1 uses no measure herself; her husband's condoms, supplied to him on 3 October,
    // count for her. Her birth of 20 September has no long-acting measure (window over on
    // 19 December).
    let hb1 = b.household("HB1", false);
    let b1 = b.wife(
        "1992-04-04",
        Some(&hb1),
        json!({"marriage_date": "2015-01-01"}),
    );
    let b1h = b.husband(&hb1);
    b.measure(&b1h, "condoms", "2025-06-01");
    b.supply(&b1h, "condoms", "2026-10-03");
    b.birth(&b1, "2026-09-20", true);
    // B2, a registered in-migrant (流入) since March: birth on 15 October within policy
    // (floating), tubal ligation the same day (timely).
    let b2 = b.wife(
        "1988-12-12",
        None,
        json!({"marriage_date": "2010-01-01", "residence": "moved_in"}),
    );
    b.migration(&b2, "in", "2026-03-01");
    b.birth(&b2, "2026-10-15", true);
    b.measure(&b2, "tubal_ligation", "2026-10-15");
    // B3 was away from January to May, back before her birth of 2 October (resident, not
    // within policy); an implant only in January 2027: pending at the end of October, late at
    // the end of the year (the window closes on 31 December).
    let b3 = b.wife("1994-05-05", None, json!({"marriage_date": "2016-01-01"}));
    b.migration(&b3, "out", "2026-01-10");
    b.migration(&b3, "in", "2026-05-01");
    b.birth(&b3, "2026-10-02", false);
    b.measure(&b3, "implant", "2027-01-05");
    // B4 marries on 5 November at 28 (late). HB2 is flagged one-child without a child on
    // record: not a one-son household.
    b.wife("1998-02-28", None, json!({"marriage_date": "2026-11-05"}));
    b.household("HB2", true);

    // Village C (the county's other township).
    // HC1 (one child, a son): C1 on pills since May, never supplied; her certificate records
    // of 2020 and 2026 are one holder.
    let hc1 = c.household("HC1", true);
    let c1 = c.wife(
        "1989-09-09",
        Some(&hc1),
        json!({"marriage_date": "2010-01-01", "relation": "head"}),
    );
    c.child(&hc1, "male", "2012-01-01");
    c.measure(&c1, "pills", "2026-05-01");
    c.certificate(json!({"person_id": c1}), 2020);
    c.certificate(json!({"person_id": c1}), 2026);
    // C2: birth on 10 February, IUD on 10 May (89 days: timely).
    let c2 = c.wife("1990-10-10", None, json!({"marriage_date": "2012-01-01"}));
    c.birth(&c2, "2026-02-10", true);
    c.measure(&c2, "iud_insertion", "2026-05-10");
    // C3 marries on 1 October at 25 (late); C4, without a household, holds a certificate of
    // 2025.
    c.wife("2001-01-01", None, json!({"marriage_date": "2026-10-01"}));
    let c4 = c.person(
        "male",
        "1970-01-01",
        json!({"marital_status": "first_marriage"}),
    );
    c.certificate(json!({"person_id": c4}), 2025);
}

fn report(w: &World, query: &str) -> Value {
    let r = w
        .app
        .get(&format!("/api/v1/reports?{query}"), Some(&w.county));
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    r.body
}

fn indicator<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["indicator"] == code)
        .unwrap_or_else(|| panic!("no indicator {code}"))
}

fn counts(v: &Value, keys: &[&str]) -> Vec<i64> {
    keys.iter()
        .map(|k| v["counts"][*k].as_i64().unwrap_or_else(|| panic!("{k}")))
        .collect()
}

fn rate(v: &Value, code: &str) -> (i64, i64, Option<f64>) {
    let r = indicator(v, code);
    (
        r["numerator"].as_i64().unwrap(),
        r["denominator"].as_i64().unwrap(),
        r["value"].as_f64(),
    )
}

const TIMELY: [&str; 3] = [
    "mothers_timely_due",
    "mothers_timely",
    "mothers_timely_pending",
];
const CERTIFICATES: [&str; 4] = [
    "one_child_certificates_held",
    "households_one_child",
    "households_one_child_certified",
    "households_one_son",
];
const MARRIAGES: [&str; 3] = [
    "new_couples",
    "women_first_married",
    "women_first_married_late",
];
const SUPPLY: [&str; 2] = ["supply_method_users", "supply_method_users_supplied"];
const RESIDENCE: [&str; 4] = [
    "births_resident",
    "births_resident_within_policy",
    "births_floating",
    "births_floating_within_policy",
];

/// The figures of one unit and period.
struct Expected {
    timely: [i64; 3],
    certificates: [i64; 4],
    marriages: [i64; 3],
    supply: [i64; 2],
    residence: [i64; 4],
    /// Values of 长效避孕及时率, 独生子女领证率, 晚婚率, 药具使用率, 符合政策生育率 of resident and
    /// floating mothers.
    rates: [Option<f64>; 6],
}

fn check(w: &World, period: &str, unit: &str, e: &Expected) {
    let what = format!("{period} {unit}");
    let v = report(w, &format!("period={period}&org_unit={unit}"));
    assert_eq!(counts(&v, &TIMELY), e.timely, "{what} timeliness");
    assert_eq!(
        counts(&v, &CERTIFICATES),
        e.certificates,
        "{what} certificates"
    );
    assert_eq!(counts(&v, &MARRIAGES), e.marriages, "{what} marriages");
    assert_eq!(counts(&v, &SUPPLY), e.supply, "{what} supply");
    assert_eq!(counts(&v, &RESIDENCE), e.residence, "{what} residence");
    // The supply users are the users of pills and condoms counted by method.
    let by_method = counts(&v, &["users_pills", "users_condoms"]);
    assert_eq!(e.supply[0], by_method[0] + by_method[1], "{what}");
    // Resident and floating mothers' births are all the births.
    assert_eq!(
        e.residence[0] + e.residence[2],
        counts(&v, &["births"])[0],
        "{what}"
    );
    let [due, timely, _] = e.timely;
    let [_, one_child, certified, _] = e.certificates;
    let [_, first, late] = e.marriages;
    let [users, supplied] = e.supply;
    let [res, res_wp, fl, fl_wp] = e.residence;
    for ((code, (n, d)), value) in [
        ("long_acting_timeliness", (timely, due)),
        ("one_child_certificate_rate", (certified, one_child)),
        ("late_marriage_rate", (late, first)),
        ("supply_use_rate", (supplied, users)),
        ("policy_compliant_birth_rate_resident", (res_wp, res)),
        ("policy_compliant_birth_rate_floating", (fl_wp, fl)),
    ]
    .into_iter()
    .zip(e.rates)
    {
        assert_eq!(rate(&v, code), (n, d, value), "{what} {code}");
    }
}

both!(issue_14_indicators_at_every_level, |b| {
    let (w, ab, c) = world(b);
    build(&w.app, &ab, &c);
    let (t0, t1) = (township(0, 0), township(0, 1));
    let cases: Vec<(&str, String, Expected)> = vec![
        // October, village A: A1 timely, A3 pending (A2's birth was in June); A4 and A5 wed
        // (A4 late); A4 supplied, A5 not in October; A1 resident, A3 floating.
        (
            "2026-10",
            va(),
            Expected {
                timely: [1, 1, 1],
                certificates: [2, 3, 2, 2],
                marriages: [2, 2, 1],
                supply: [2, 1],
                residence: [1, 1, 1, 0],
                rates: [
                    Some(100.0),
                    Some(66.67),
                    Some(50.0),
                    Some(50.0),
                    Some(100.0),
                    Some(0.0),
                ],
            },
        ),
        // The year: A1 and A3 timely, A2 late; A6's remarriage is a new couple but not a first
        // marriage; A5's August pills count.
        (
            "2026",
            va(),
            Expected {
                timely: [3, 2, 0],
                certificates: [2, 3, 2, 2],
                marriages: [3, 2, 1],
                supply: [2, 2],
                residence: [2, 2, 1, 0],
                rates: [
                    Some(66.67),
                    Some(66.67),
                    Some(50.0),
                    Some(100.0),
                    Some(100.0),
                    Some(0.0),
                ],
            },
        ),
        // October, village B: B2 timely, B3 pending; B1 supplied through her husband; B3
        // resident (back in May), B2 floating.
        (
            "2026-10",
            vb(),
            Expected {
                timely: [1, 1, 1],
                certificates: [0, 1, 0, 0],
                marriages: [0, 0, 0],
                supply: [1, 1],
                residence: [1, 0, 1, 1],
                rates: [
                    Some(100.0),
                    Some(0.0),
                    None,
                    Some(100.0),
                    Some(0.0),
                    Some(100.0),
                ],
            },
        ),
        (
            "2026",
            vb(),
            Expected {
                timely: [3, 1, 0],
                certificates: [0, 1, 0, 0],
                marriages: [1, 1, 1],
                supply: [1, 1],
                residence: [2, 1, 1, 1],
                rates: [
                    Some(33.33),
                    Some(0.0),
                    Some(100.0),
                    Some(100.0),
                    Some(50.0),
                    Some(100.0),
                ],
            },
        ),
        // Township 1 (villages A and B).
        (
            "2026-10",
            t0.clone(),
            Expected {
                timely: [2, 2, 2],
                certificates: [2, 4, 2, 2],
                marriages: [2, 2, 1],
                supply: [3, 2],
                residence: [2, 1, 2, 1],
                rates: [
                    Some(100.0),
                    Some(50.0),
                    Some(50.0),
                    Some(66.67),
                    Some(50.0),
                    Some(50.0),
                ],
            },
        ),
        (
            "2026",
            t0.clone(),
            Expected {
                timely: [6, 3, 0],
                certificates: [2, 4, 2, 2],
                marriages: [4, 3, 2],
                supply: [3, 3],
                residence: [4, 3, 2, 1],
                rates: [
                    Some(50.0),
                    Some(50.0),
                    Some(66.67),
                    Some(100.0),
                    Some(75.0),
                    Some(50.0),
                ],
            },
        ),
        // Village C, alone in township 2: no birth in October; C1 unsupplied; C3 late.
        (
            "2026-10",
            t1.clone(),
            Expected {
                timely: [0, 0, 0],
                certificates: [2, 1, 1, 1],
                marriages: [1, 1, 1],
                supply: [1, 0],
                residence: [0, 0, 0, 0],
                rates: [None, Some(100.0), Some(100.0), Some(0.0), None, None],
            },
        ),
        (
            "2026",
            vc(),
            Expected {
                timely: [1, 1, 0],
                certificates: [2, 1, 1, 1],
                marriages: [1, 1, 1],
                supply: [1, 0],
                residence: [1, 1, 0, 0],
                rates: [
                    Some(100.0),
                    Some(100.0),
                    Some(100.0),
                    Some(0.0),
                    Some(100.0),
                    None,
                ],
            },
        ),
        // The county.
        (
            "2026-10",
            COUNTY.to_string(),
            Expected {
                timely: [2, 2, 2],
                certificates: [4, 5, 3, 3],
                marriages: [3, 3, 2],
                supply: [4, 2],
                residence: [2, 1, 2, 1],
                rates: [
                    Some(100.0),
                    Some(60.0),
                    Some(66.67),
                    Some(50.0),
                    Some(50.0),
                    Some(50.0),
                ],
            },
        ),
        (
            "2026",
            COUNTY.to_string(),
            Expected {
                timely: [7, 4, 0],
                certificates: [4, 5, 3, 3],
                marriages: [5, 4, 3],
                supply: [4, 3],
                residence: [5, 4, 2, 1],
                rates: [
                    Some(57.14),
                    Some(60.0),
                    Some(75.0),
                    Some(75.0),
                    Some(80.0),
                    Some(50.0),
                ],
            },
        ),
    ];
    for (period, unit, e) in &cases {
        check(&w, period, unit, e);
    }

    // Labels in Chinese and, with lang=en, in English.
    let v = report(&w, "period=2026&lang=en");
    let t = indicator(&v, "long_acting_timeliness");
    assert_eq!(t["zh"], "长效避孕及时率");
    assert_eq!(
        v["labels"]["indicators"]["long_acting_timeliness"],
        "long-acting measure timeliness"
    );
    assert_eq!(
        v["labels"]["counts"]["households_one_son"],
        "one-son households"
    );
    let v = report(&w, "period=2026");
    assert_eq!(v["labels"]["indicators"]["late_marriage_rate"], "晚婚率");
    assert_eq!(v["labels"]["counts"]["new_couples"], "当年新婚对数");

    // A yearly target on the new indicators, set by the county for township 1.
    let r = w.app.send(
        "PUT",
        "/api/v1/targets",
        Some(&w.county),
        &json!({"org_unit": t0, "year": 2026, "targets": [
            {"indicator": "long_acting_timeliness", "direction": "at_least", "value": 85.0},
            {"indicator": "late_marriage_rate", "direction": "at_least", "value": 60.0},
        ]}),
    );
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let v = report(&w, &format!("period=2026&org_unit={t0}"));
    let a = &indicator(&v, "long_acting_timeliness")["attainment"];
    assert_eq!((&a["met"], &a["gap"]), (&json!(false), &json!(-35.0)));
    assert_eq!(a["missed"], "below_floor");
    let a = &indicator(&v, "late_marriage_rate")["attainment"];
    assert_eq!((&a["met"], &a["gap"]), (&json!(true), &json!(6.67)));
});

// The window setting: with 120 days, A2's IUD 122 days after her birth is still late, and
// B3's window (2 October + 120) is still open at the end of the year.
both!(long_acting_window_is_a_setting, |b| {
    let app = spawn_app_with(b, |s| s.report.long_acting_within_days = 120);
    seed_tree(&app);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
    let ab = worker(&app, "wab", &[va().as_str(), vb().as_str()]);
    let c = worker(&app, "wc", &[vc().as_str()]);
    let w = World {
        county: session(&app, "cs").access,
        app,
    };
    build(&w.app, &ab, &c);
    let v = report(&w, &format!("period=2026&org_unit={}", vb()));
    // B1 (20 September + 120 = 18 January) and B3 pending; B2 timely.
    assert_eq!(counts(&v, &TIMELY), [1, 1, 2]);
    let v = report(&w, &format!("period=2026&org_unit={}", va()));
    assert_eq!(counts(&v, &TIMELY), [3, 2, 0]);
});

// The report's exports carry the new columns and indicator rows with the report's figures.
both!(issue_14_indicators_in_csv_and_xlsx, |b| {
    let (w, ab, c) = world(b);
    build(&w.app, &ab, &c);
    let v = report(&w, "period=2026");
    for ext in ["csv", "xlsx"] {
        let (status, _, data) = w.app.get_bytes(
            &format!("/api/v1/exports/report.{ext}?period=2026"),
            &w.county,
        );
        assert_eq!(status, 200);
        let rows = if ext == "csv" {
            csv_rows(&data)
        } else {
            xlsx_rows(data.clone(), Some("分单位报表"))
        };
        let col = |h: &str| rows[0].iter().position(|x| x == h).expect(h);
        let total = rows.iter().find(|r| r[1] == "合计").expect("total row");
        for (header, value) in [
            ("长效避孕及时率(%)", "57.14"),
            ("独生子女领证率(%)", "60"),
            ("晚婚率(%)", "75"),
            ("药具使用率(%)", "75"),
            ("符合政策生育率(常住)(%)", "80"),
            ("符合政策生育率(流动)(%)", "50"),
            ("独生子女领证(累计)", "4"),
            ("独男户", "3"),
            ("当年新婚对数", "5"),
            ("产后落实期限未满", "0"),
            ("流动人口出生", "2"),
        ] {
            assert_eq!(total[col(header)], value, "{ext} {header}");
        }
        // Township 2's row (village C): no floating birth, not applicable.
        let t1 = rows.iter().find(|r| r[0] == township(0, 1)).unwrap();
        assert_eq!(t1[col("符合政策生育率(流动)(%)")], "不适用", "{ext}");
        if ext == "xlsx" {
            let sheet = xlsx_rows(data, Some("指标"));
            for i in v["indicators"].as_array().unwrap() {
                let row = sheet
                    .iter()
                    .find(|r| {
                        r[0] == i["zh"].as_str().unwrap()
                            || r[0].starts_with(&format!("{}/", i["zh"].as_str().unwrap()))
                    })
                    .unwrap_or_else(|| panic!("{}", i["zh"]));
                assert_eq!(row[2], i["numerator"].to_string(), "{row:?}");
                assert_eq!(row[3], i["denominator"].to_string(), "{row:?}");
            }
        }
    }
    // English headers.
    let (_, _, data) = w
        .app
        .get_bytes("/api/v1/exports/report.csv?period=2026&lang=en", &w.county);
    let rows = csv_rows(&data);
    for h in [
        "long-acting measure timeliness (%)",
        "late marriage rate (%)",
        "one-son households",
        "couples married in the period",
    ] {
        assert!(rows[0].iter().any(|x| x == h), "{h}");
    }
});

/// The first day of the month before the one of `d`.
fn previous_month(d: NaiveDate) -> NaiveDate {
    let first = d.with_day(1).unwrap();
    first.pred_opt().unwrap().with_day(1).unwrap()
}

// 信息准确率: records received (and checked) in the period without a logic flag open at the
// period end. The server's clock dates the checks, so the periods are this month, the year
// and the month before (one measure's version and flag moved there, as if received then).
both!(
    information_accuracy_counts_records_checked_in_the_period,
    |b| {
        let (w, ab, dc) = world(b);
        let (a, vb_, c) = (
            Ledger {
                app: &w.app,
                dev: &ab,
                org: va(),
            },
            Ledger {
                app: &w.app,
                dev: &ab,
                org: vb(),
            },
            Ledger {
                app: &w.app,
                dev: &dc,
                org: vc(),
            },
        );
        let id_of = |born: &str, seq: u16, male: bool| {
            let d = NaiveDate::parse_from_str(born, "%Y-%m-%d").unwrap();
            fieldsync::domain::resident_id::generate("130131", d, seq, male)
        };
        let wrong_check_digit = |id: String| {
            let last = if id.ends_with('1') { '2' } else { '1' };
            format!("{}{last}", &id[..17])
        };
        // Village A: P1 clean; P2 with a wrong check digit, corrected later (flag cleared); P6
        // with a wrong check digit; a vasectomy recorded on P1, a woman (method_sex).
        let p1 = a.person(
            "female",
            "1990-01-01",
            json!({"id_number": id_of("1990-01-01", 1, false)}),
        );
        let (p2, f2) = a.add_flagged(
            "person",
            json!({"name": "某某", "sex": "female", "birth_date": "1991-01-01",
               "id_number": wrong_check_digit(id_of("1991-01-01", 2, false))}),
        );
        assert_eq!(f2, ["id_check_digit"]);
        let rs = ab.push_ok(
            &w.app,
            &[ab.op(
                "person",
                &p2,
                "update",
                Some(1),
                json!({"id_number": id_of("1991-01-01", 2, false)}),
            )],
        );
        assert_eq!(rs[0]["status"], "applied", "{rs:?}");
        let (_, f6) = a.add_flagged(
            "person",
            json!({"name": "某某", "sex": "female", "birth_date": "1992-01-01",
               "id_number": wrong_check_digit(id_of("1992-01-01", 3, false))}),
        );
        assert_eq!(f6, ["id_check_digit"]);
        let (m1, fm) = a.add_flagged(
            "measure",
            json!({"person_id": p1, "method": "vasectomy", "started_on": "2026-01-01"}),
        );
        assert_eq!(fm, ["method_sex"]);
        // Village B: one clean person. Village C: two clean, one whose ID says male (id_sex).
        vb_.person("male", "1985-01-01", json!({}));
        c.person("female", "1993-01-01", json!({}));
        c.person("female", "1994-01-01", json!({}));
        let (_, f7) = c.add_flagged(
            "person",
            json!({"name": "某某", "sex": "female", "birth_date": "1995-01-01",
               "id_number": id_of("1995-01-01", 4, true)}),
        );
        assert_eq!(f7, ["id_sex"]);

        // The measure's version and flag were received last month.
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
        let last = previous_month(today);
        let last_mid = last
            .with_day(15)
            .unwrap()
            .and_hms_opt(4, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        {
            use diesel::RunQueryDsl;
            let mut conn = w.app.conn();
            for sql in [
                format!(
                    "UPDATE record_versions SET created_at = {last_mid} WHERE record_id = '{m1}'"
                ),
                format!("UPDATE flags SET raised_at = {last_mid} WHERE record_id = '{m1}'"),
            ] {
                assert_eq!(diesel::sql_query(sql).execute(&mut *conn).unwrap(), 1);
            }
        }
        let month = today.format("%Y-%m").to_string();
        let last_month = last.format("%Y-%m").to_string();
        let year = last.year().to_string();
        // (records checked, of which without an open flag) by unit: this month, last month.
        let units = [
            va(),
            vb(),
            vc(),
            township(0, 0),
            township(0, 1),
            COUNTY.to_string(),
        ];
        // Village A: P1, P2 (its flag cleared), P6 (open); C: two clean of three.
        let this: [[i64; 2]; 6] = [[3, 2], [1, 1], [3, 2], [4, 3], [3, 2], [7, 5]];
        // The vasectomy on a woman, still flagged.
        let before: [[i64; 2]; 6] = [[1, 0], [0, 0], [0, 0], [1, 0], [0, 0], [1, 0]];
        let same_year = last.year() == today.year();
        for ((unit, now), prev) in units.iter().zip(this).zip(before) {
            let yearly = if same_year {
                [now[0] + prev[0], now[1] + prev[1]]
            } else {
                prev
            };
            for (period, [n, d]) in [(&month, now), (&last_month, prev), (&year, yearly)] {
                let v = report(&w, &format!("period={period}&org_unit={unit}"));
                let keys = ["records_checked", "records_checked_accurate"];
                assert_eq!(counts(&v, &keys), [n, d], "{period} {unit}");
                let value = (n > 0).then(|| ((d as f64 / n as f64) * 10_000.0).round() / 100.0);
                assert_eq!(
                    rate(&v, "information_accuracy"),
                    (d, n, value),
                    "{period} {unit}"
                );
            }
        }
        // This month's county figure, spelt out: 5 of 7.
        let v = report(&w, &format!("period={month}"));
        assert_eq!(indicator(&v, "information_accuracy")["value"], 71.43);
        assert_eq!(indicator(&v, "information_accuracy")["zh"], "信息准确率");
    }
);

// The couple by the spouse link, not the household: in village A a wife and a mother without a
// household (so the household head/spouse rule finds no husband), each linked by `spouse_id` to
// a man kept in village B. The wife's husband uses condoms from January and is handed some in
// October: she is a supply-method user, supplied (药具使用率 1/1 at A). The mother gives birth on
// 5 October; her husband's vasectomy on 20 October is within the 90 days: timely (长效避孕及时率
// 1/1 at A). Without the link neither would count (0/0 and 0/1: the household rule alone).
both!(spouse_link_counts_a_husbands_measure, |b| {
    let (w, ab, _dc) = world(b);
    let (a, vb_) = (
        Ledger {
            app: &w.app,
            dev: &ab,
            org: va(),
        },
        Ledger {
            app: &w.app,
            dev: &ab,
            org: vb(),
        },
    );
    let man = || {
        vb_.person(
            "male",
            "1988-01-01",
            json!({"marital_status": "first_marriage", "relation": "head"}),
        )
    };
    let (h1, h2) = (man(), man());
    a.wife("1990-01-01", None, json!({"spouse_id": h1}));
    let mother = a.wife("1995-01-01", None, json!({"spouse_id": h2}));
    vb_.measure(&h1, "condoms", "2026-01-01");
    vb_.supply(&h1, "condoms", "2026-10-10");
    a.birth(&mother, "2026-10-05", true);
    vb_.measure(&h2, "vasectomy", "2026-10-20");

    let v = report(&w, &format!("period=2026-10&org_unit={}", va()));
    assert_eq!(counts(&v, &SUPPLY), [1, 1]);
    assert_eq!(rate(&v, "supply_use_rate"), (1, 1, Some(100.0)));
    assert_eq!(
        counts(
            &v,
            &[
                "mothers_timely_due",
                "mothers_timely",
                "mothers_long_acting"
            ]
        ),
        [1, 1, 1]
    );
    assert_eq!(rate(&v, "long_acting_timeliness"), (1, 1, Some(100.0)));
});
