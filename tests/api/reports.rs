//! The monthly report (issue 6): a fixture built to known counts in three villages of one
//! county (and one village of another county that must never show), checked exactly at village,
//! township and county level for month, quarter, year to date, year and range; targets and
//! attainment; the approval flow with return, lock and a change after approval, the village's
//! worker submitting its own month; CSV and XLSX exports read back, in Chinese and English
//! (`lang=en`), from the API and from `fieldsync report` (the real binary); the ledger export's
//! audit row.

use std::collections::BTreeMap;

use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use crate::common::{add_user, seed_tree, session, township, village};
use fieldsync::auth::roles::Role;
use fieldsync::db::records::{self, RecordRow};
use fieldsync::domain::entities::Entity;
use fieldsync::report::counts::{Counts, COUNTS};
use fieldsync::report::export::{write_report_file, ExportFormat};
use fieldsync::report::indicators as ind;
use fieldsync::report::lang::Lang;
use fieldsync::report::report::{rates, Period};

fn outside() -> String {
    village(1, 0, 0)
}

/// Records written straight to the store, with change sequences after everything else.
struct Fixture {
    rows: Vec<RecordRow>,
    seq: i64,
    ids: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            rows: Vec::new(),
            seq: 0,
            ids: BTreeMap::new(),
        }
    }

    fn id(&mut self, name: &'static str) -> String {
        self.ids
            .entry(name)
            .or_insert_with(|| uuid::Uuid::now_v7().to_string())
            .clone()
    }

    fn add(&mut self, entity: Entity, org: &str, fields: Value) -> String {
        self.add_full(entity, org, fields, false, None)
    }

    fn add_full(
        &mut self,
        entity: Entity,
        org: &str,
        fields: Value,
        deleted: bool,
        name: Option<&'static str>,
    ) -> String {
        self.seq += 1;
        let id = match name {
            Some(n) => self.id(n),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let fields: records::Fields = fields
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.rows.push(RecordRow {
            entity,
            id: id.clone(),
            org_unit: org.to_string(),
            version: 1,
            change_seq: self.seq,
            deleted,
            merged_into: None,
            fields,
            stamps: Default::default(),
            created_at: 1,
            updated_at: 1,
            recorded_at: 1,
            created_by: "fixture".into(),
            updated_by: "fixture".into(),
            updated_device: None,
        });
        id
    }

    fn person(&mut self, name: &'static str, org: &str, f: Value) -> String {
        self.add_full(Entity::Person, org, f, false, Some(name))
    }

    fn store(self, app: &TestApp) {
        let mut c = app.conn();
        records::upsert(&mut c, &self.rows).unwrap();
        diesel::sql_query(format!(
            "UPDATE sync_state SET last_change_seq = {} WHERE id = 1",
            self.seq
        ))
        .execute(&mut *c)
        .unwrap();
    }
}

fn p(sex: &str, birth: &str, extra: Value) -> Value {
    let mut v = json!({"name": "某某", "sex": sex, "birth_date": birth});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// The fixture: see the expected counts below for what each record contributes.
fn build(app: &TestApp) -> BTreeMap<&'static str, String> {
    let mut f = Fixture::new();
    let (a, b, c, o) = (va(), vb(), vc(), outside());
    let hh: Vec<String> = (0..6)
        .map(|i| {
            f.add(
                Entity::Household,
                if i < 4 { &a } else { &b },
                // H1 is a one-child household (its parents hold the certificate), H4 one of
                // two daughters.
                json!({"household_no": format!("H{i}"), "one_child": i == 1, "two_daughters": i == 4}),
            )
        })
        .collect();
    let res = "resident";
    // Village A persons.
    let w1 = f.person("W1", &a, p("female", "1990-05-01", json!({"marital_status": "first_marriage", "residence": res, "household_id": hh[0], "relation": "spouse", "alive": true, "id_number": "130131199005010027"})));
    let m1 = f.person("M1", &a, p("male", "1988-01-01", json!({"marital_status": "first_marriage", "residence": res, "household_id": hh[0], "relation": "head"})));
    let w2 = f.person("W2", &a, p("female", "1995-03-03", json!({"marital_status": "remarried", "residence": res, "household_id": hh[1], "relation": "head"})));
    let w3 = f.person("W3", &a, p("female", "1976-11-15", json!({"marital_status": "first_marriage", "residence": res, "household_id": hh[2], "relation": "head"})));
    let w4 = f.person("W4", &a, p("female", "1992-01-01", json!({"marital_status": "divorced", "residence": res, "household_id": hh[2], "relation": "other"})));
    let w5 = f.person("W5", &a, p("female", "1993-01-01", json!({"marital_status": "first_marriage", "residence": "moved_out", "household_id": hh[3], "relation": "spouse"})));
    let d1 = f.person("D1", &a, p("male", "1950-01-01", json!({"marital_status": "widowed", "residence": res, "alive": false, "household_id": hh[3], "relation": "parent"})));
    let k1 = f.person(
        "K1",
        &a,
        p(
            "male",
            "2026-10-05",
            json!({"residence": res, "household_id": hh[0], "relation": "child"}),
        ),
    );
    let k2 = f.person(
        "K2",
        &a,
        p(
            "female",
            "2020-01-01",
            json!({"residence": res, "household_id": hh[0], "relation": "child"}),
        ),
    );
    let n1 = f.person(
        "N1",
        &a,
        p(
            "female",
            "2026-12-10",
            json!({"residence": res, "household_id": hh[1], "relation": "child"}),
        ),
    );
    let c3 = f.person(
        "C3",
        &a,
        p(
            "female",
            "2001-06-01",
            json!({"residence": res, "alive": false, "household_id": hh[2], "relation": "child"}),
        ),
    );
    f.add_full(
        Entity::Person,
        &a,
        p(
            "female",
            "1990-01-01",
            json!({"marital_status": "first_marriage", "residence": res}),
        ),
        true,
        None,
    );
    let po = f.person("PO", &a, p("male", "1960-02-02", json!({})));
    // Births.
    // Where the birth just added took place: K1 in hospital and W2's first in the township
    // clinic (住院分娩), WB1's at home; the others not recorded.
    let place = |f: &mut Fixture, at: &str| {
        let row = f.rows.last_mut().unwrap();
        assert_eq!(row.entity, Entity::Birth);
        row.fields.insert("place".into(), json!(at));
    };
    let birth = |f: &mut Fixture,
                 org: &str,
                 mother: &str,
                 child: Option<&str>,
                 date: &str,
                 sex: &str,
                 parity: i64,
                 wp: bool| {
        let mut v = json!({"mother_id": mother, "birth_date": date, "sex": sex, "parity": parity, "within_policy": wp});
        if let Some(ch) = child {
            v["child_id"] = json!(ch);
        }
        f.add(Entity::Birth, org, v)
    };
    birth(&mut f, &a, &w1, Some(&k1), "2026-10-05", "male", 2, true);
    place(&mut f, "hospital");
    birth(&mut f, &a, &w1, Some(&k2), "2020-01-01", "female", 1, true);
    birth(&mut f, &a, &w2, None, "2026-10-20", "female", 1, true);
    place(&mut f, "township_clinic");
    birth(&mut f, &a, &w2, Some(&n1), "2026-12-10", "female", 2, false);
    birth(&mut f, &a, &w3, Some(&c3), "2001-06-01", "female", 1, true);
    f.add_full(
        Entity::Birth,
        &a,
        json!({"mother_id": w1, "birth_date": "2026-10-07", "sex": "male", "parity": 3}),
        true,
        None,
    );
    // Measures.
    let measure =
        |f: &mut Fixture, org: &str, who: &str, method: &str, start: &str, end: Option<&str>| {
            let mut v = json!({"person_id": who, "method": method, "started_on": start});
            if let Some(e) = end {
                v["ended_on"] = json!(e);
            }
            f.add(Entity::Measure, org, v)
        };
    measure(&mut f, &a, &m1, "vasectomy", "2026-10-20", None);
    measure(&mut f, &a, &w1, "condoms", "2026-01-01", None);
    measure(&mut f, &a, &w2, "pills", "2026-09-01", Some("2026-10-15"));
    measure(
        &mut f,
        &a,
        &w2,
        "iud_removal",
        "2026-10-02",
        Some("2026-10-02"),
    );
    measure(&mut f, &a, &w3, "iud_insertion", "2026-10-03", None);
    measure(&mut f, &a, &w4, "implant", "2026-10-08", None);
    // Pregnancies.
    f.add(Entity::Pregnancy, &a, json!({"person_id": w2, "detected_on": "2026-04-01", "status": "ended", "outcome": "birth", "outcome_date": "2026-12-10"}));
    f.add(Entity::Pregnancy, &a, json!({"person_id": w3, "detected_on": "2026-09-10", "status": "ended", "outcome": "induced", "outcome_date": "2026-10-12"}));
    f.add(Entity::Pregnancy, &a, json!({"person_id": w4, "detected_on": "2026-10-20", "status": "ended", "outcome": "miscarriage", "outcome_date": "2026-10-28"}));
    // Deaths.
    f.add(
        Entity::Death,
        &a,
        json!({"person_id": d1, "death_date": "2026-10-10"}),
    );
    f.add(
        Entity::Death,
        &a,
        json!({"person_id": c3, "death_date": "2002-01-01"}),
    );
    // Visits.
    let visit = |f: &mut Fixture, who: &str, kind: &str, due: &str, done: Option<&str>| {
        let mut v = json!({"person_id": who, "kind": kind, "due_date": due});
        if let Some(d) = done {
            v["visit_date"] = json!(d);
        }
        f.add(Entity::Visit, &va(), v)
    };
    visit(&mut f, &w1, "iud_check", "2026-10-10", Some("2026-10-11"));
    visit(&mut f, &w2, "pregnancy_check", "2026-10-20", None);
    visit(
        &mut f,
        &w2,
        "disease_check",
        "2026-10-05",
        Some("2026-10-06"),
    );
    visit(&mut f, &w3, "iud_check", "2026-11-05", Some("2026-10-30"));
    visit(&mut f, &w3, "disease_check", "2026-10-15", None);
    visit(
        &mut f,
        &m1,
        "post_operation",
        "2026-10-25",
        Some("2026-10-26"),
    );
    visit(&mut f, &w1, "postpartum", "2026-10-15", Some("2026-11-02"));
    visit(
        &mut f,
        &w3,
        "contraceptive",
        "2026-09-20",
        Some("2026-10-02"),
    );
    // Migrations.
    f.add(Entity::Migration, &a, json!({"person_id": w5, "direction": "out", "moved_on": "2026-10-03", "certificate_no": "HY001", "place": "outside_province"}));
    f.add(Entity::Migration, &a, json!({"person_id": w4, "direction": "out", "moved_on": "2026-10-09", "certificate_no": "HY002"}));
    f.add(Entity::Migration, &a, json!({"person_id": po, "direction": "in", "moved_on": "2026-10-11", "certificate_checked": true}));
    f.add(
        Entity::Migration,
        &a,
        json!({"person_id": w4, "direction": "in", "moved_on": "2026-10-21"}),
    );
    // Supplies.
    for (who, item, q, d) in [
        (&w1, "condoms", 10, "2026-10-01"),
        (&w1, "condoms", 5, "2026-10-20"),
        (&w2, "pills", 3, "2026-10-10"),
        (&w2, "film", 2, "2026-09-30"),
    ] {
        f.add(
            Entity::Supply,
            &a,
            json!({"person_id": who, "item": item, "quantity": q, "handed_on": d}),
        );
    }
    // Benefits.
    f.add(
        Entity::Benefit,
        &a,
        json!({"person_id": po, "kind": "reward_assistance", "year": 2026, "amount_yuan": 960}),
    );
    f.add(
        Entity::Benefit,
        &a,
        json!({"household_id": hh[1], "kind": "one_child_certificate", "year": 2026}),
    );
    f.add(
        Entity::Benefit,
        &a,
        json!({"person_id": po, "kind": "special_assistance", "year": 2025, "amount_yuan": 1320}),
    );

    // Village B.
    let wb1 = f.person("WB1", &b, p("female", "1985-07-07", json!({"marital_status": "first_marriage", "residence": res, "household_id": hh[4], "relation": "spouse"})));
    f.person("MB1", &b, p("male", "1983-03-03", json!({"marital_status": "first_marriage", "residence": res, "household_id": hh[4], "relation": "head"})));
    f.person("MB2", &b, p("male", "2000-01-01", json!({"marital_status": "unmarried", "residence": res, "household_id": hh[4], "relation": "child"})));
    measure(&mut f, &b, &wb1, "tubal_ligation", "2015-01-01", None);
    birth(&mut f, &b, &wb1, None, "2026-10-15", "female", 3, false);
    place(&mut f, "home");
    f.add(Entity::Visit, &b, json!({"person_id": wb1, "kind": "iud_check", "due_date": "2026-10-12", "visit_date": "2026-10-12"}));

    // Village C (the county's other township).
    // MC7 works in the provincial capital since May 2025: away at every period end, never in
    // the population of 2026.
    let mc7 = f.person("MC7", &c, p("male", "1980-07-07", json!({"marital_status": "first_marriage", "residence": "moved_out", "relation": "other"})));
    f.add(Entity::Migration, &c, json!({"person_id": mc7, "direction": "out", "moved_on": "2025-05-01", "place": "within_province"}));
    let wc1 = f.person("WC1", &c, p("female", "1991-04-04", json!({"marital_status": "first_marriage", "residence": "moved_in", "relation": "head"})));
    measure(&mut f, &c, &wc1, "pills", "2026-10-05", None);
    birth(&mut f, &c, &wc1, None, "2026-09-15", "male", 1, true);
    f.add(
        Entity::Death,
        &c,
        json!({"person_id": uuid::Uuid::now_v7().to_string(), "death_date": "2026-03-01"}),
    );
    // Village C's other married women, one current measure of each remaining method, so that
    // every count of the report is non-zero somewhere (and township 2 keeps 100% prevalence).
    // WC2: three living children (births without a child record count as living), the third
    // in March and within policy; a tubal ligation on 6 October.
    let wc2 = f.person(
        "WC2",
        &c,
        p(
            "female",
            "1988-08-08",
            json!({"marital_status": "first_marriage", "residence": res}),
        ),
    );
    birth(&mut f, &c, &wc2, None, "2012-05-01", "male", 1, true);
    birth(&mut f, &c, &wc2, None, "2016-05-01", "female", 2, true);
    birth(&mut f, &c, &wc2, None, "2026-03-10", "female", 3, true);
    measure(&mut f, &c, &wc2, "tubal_ligation", "2026-10-06", None);
    // WC3: condoms only; a one-child parents' certificate of 120 yuan.
    let wc3 = f.person(
        "WC3",
        &c,
        p(
            "female",
            "1994-02-02",
            json!({"marital_status": "remarried", "residence": res}),
        ),
    );
    measure(&mut f, &c, &wc3, "condoms", "2026-08-01", None);
    f.add(
        Entity::Benefit,
        &c,
        json!({"person_id": wc3, "kind": "one_child_certificate", "year": 2026, "amount_yuan": 120}),
    );
    // WC4: an implant of 2025 (current, not an operation of 2026).
    let wc4 = f.person(
        "WC4",
        &c,
        p(
            "female",
            "1990-09-09",
            json!({"marital_status": "first_marriage", "residence": res}),
        ),
    );
    measure(&mut f, &c, &wc4, "implant", "2025-05-05", None);
    // WC5: injections since July.
    let wc5 = f.person(
        "WC5",
        &c,
        p(
            "female",
            "1992-12-12",
            json!({"marital_status": "first_marriage", "residence": res}),
        ),
    );
    measure(&mut f, &c, &wc5, "injection", "2026-07-01", None);
    // WC6: no measure of her own; her husband MC6 (head of her household) had a vasectomy in
    // 2020, so she is a user through him alone. MC6 receives special assistance.
    let hc = f.add(Entity::Household, &c, json!({"household_no": "HC"}));
    f.person("WC6", &c, p("female", "1989-06-06", json!({"marital_status": "first_marriage", "residence": res, "household_id": hc, "relation": "spouse"})));
    let mc6 = f.person("MC6", &c, p("male", "1987-01-01", json!({"marital_status": "first_marriage", "residence": res, "household_id": hc, "relation": "head"})));
    measure(&mut f, &c, &mc6, "vasectomy", "2020-01-01", None);
    f.add(
        Entity::Benefit,
        &c,
        json!({"person_id": mc6, "kind": "special_assistance", "year": 2026, "amount_yuan": 1320}),
    );

    // Another county: never in these reports.
    let wo = f.person(
        "WO",
        &o,
        p(
            "female",
            "1990-01-01",
            json!({"marital_status": "first_marriage", "residence": res}),
        ),
    );
    for _ in 0..3 {
        birth(&mut f, &o, &wo, None, "2026-10-10", "male", 1, true);
    }
    let ids = f.ids.clone();
    f.store(app);
    ids
}

/// Counts of issue 14's indicators, written out for their own fixture in
/// `report_indicators.rs`; the counts below are the rest.
const OWN_FIXTURE_KEYS: &[&str] = &[
    "mothers_timely_due",
    "mothers_timely",
    "mothers_timely_pending",
    "one_child_certificates_held",
    "households_one_child_certified",
    "households_one_son",
    "new_couples",
    "women_first_married",
    "women_first_married_late",
    "records_checked",
    "records_checked_accurate",
    "supply_method_users",
    "supply_method_users_supplied",
    "births_resident",
    "births_resident_within_policy",
    "births_floating",
    "births_floating_within_policy",
];

fn counts_of(pairs: &[(&str, i64)]) -> Counts {
    let mut c: Counts = COUNTS
        .iter()
        .filter(|d| !OWN_FIXTURE_KEYS.contains(&d.key))
        .map(|d| (d.key.to_string(), 0))
        .collect();
    for (k, v) in pairs {
        assert!(c.contains_key(*k), "unknown key {k}");
        c.insert(k.to_string(), *v);
    }
    c
}

fn village_a_october() -> Counts {
    counts_of(&[
        // W5 (moved out on 3 October) and D1 (died on 10 October) were in the population on
        // 30 September; PO (moved in on 11 October) was not.
        ("population_start", 8),
        ("population_end", 8),
        ("population_end_male", 3),
        ("population_end_female", 5),
        ("moved_out_end", 1),
        // W5, away since 3 October (outside the province, with her certificate); W4 came back.
        ("away_end_outside_province", 1),
        ("away_married_women_end", 1),
        ("away_married_women_certified_end", 1),
        ("births", 2),
        ("births_male", 1),
        ("births_female", 1),
        ("households_one_child", 1),
        ("births_parity_1", 1),
        // K1 in hospital, W2's first in the township clinic.
        ("births_in_facility", 2),
        ("births_parity_2", 1),
        ("births_within_policy", 2),
        ("births_within_policy_1", 1),
        ("births_within_policy_2", 1),
        ("deaths", 1),
        ("married_wcba", 3),
        ("wcba_children_0", 1),
        ("wcba_children_1", 1),
        ("wcba_children_2", 1),
        ("contraceptive_users", 2),
        ("users_vasectomy", 1),
        ("users_iud_insertion", 1),
        ("mothers", 2),
        ("mothers_long_acting", 1),
        ("ops_iud_insertion", 1),
        ("ops_iud_removal", 1),
        ("ops_vasectomy", 1),
        ("ops_induced", 1),
        ("ops_total", 4),
        ("ops_implant", 1),
        ("pregnancies_detected", 1),
        ("pregnancy_miscarriages", 1),
        ("check_women_due", 3),
        ("check_women_checked", 2),
        ("checks_done", 3),
        ("follow_ups_due", 2),
        ("follow_ups_done", 1),
        ("visits_done", 5),
        ("migrants_out", 2),
        ("migrants_in", 2),
        ("out_married_women", 1),
        ("out_married_women_certified", 1),
        ("certificates_issued", 2),
        ("in_checked", 1),
        ("supply_condoms", 15),
        ("supply_pills", 3),
        ("supply_recipients", 2),
        ("benefit_one_child_certificate", 1),
        ("benefit_reward_assistance", 1),
        ("benefit_reward_assistance_yuan", 960),
    ])
}

fn village_b_october() -> Counts {
    counts_of(&[
        ("households_two_daughters", 1),
        ("population_start", 3),
        ("population_end", 3),
        ("population_end_male", 2),
        ("population_end_female", 1),
        ("births", 1),
        ("births_female", 1),
        ("births_parity_3plus", 1),
        ("married_wcba", 1),
        ("wcba_children_1", 1),
        ("contraceptive_users", 1),
        ("users_tubal_ligation", 1),
        ("mothers", 1),
        ("mothers_long_acting", 1),
        ("check_women_due", 1),
        ("check_women_checked", 1),
        ("checks_done", 1),
        ("visits_done", 1),
    ])
}

fn village_c_october() -> Counts {
    counts_of(&[
        // WC1 (moved in), WC2-WC6 and MC6, at both ends of the month.
        ("population_start", 7),
        ("population_end", 7),
        ("population_end_male", 1),
        ("population_end_female", 6),
        ("moved_in_end", 1),
        // MC7, away in the province since May 2025.
        ("moved_out_end", 1),
        ("away_end_within_province", 1),
        ("married_wcba", 6),
        // WC3-WC6 have no child; WC1 her September birth; WC2 three.
        ("wcba_children_0", 4),
        ("wcba_children_1", 1),
        ("wcba_children_3plus", 1),
        // One of each: WC2 ligation (6 October), WC6 through MC6's vasectomy, WC4 implant,
        // WC5 injection, WC1 pills (from 5 October), WC3 condoms.
        ("contraceptive_users", 6),
        ("users_tubal_ligation", 1),
        ("users_vasectomy", 1),
        ("users_implant", 1),
        ("users_injection", 1),
        ("users_pills", 1),
        ("users_condoms", 1),
        ("ops_tubal_ligation", 1),
        ("ops_total", 1),
        ("benefit_one_child_certificate", 1),
        ("benefit_one_child_certificate_yuan", 120),
        ("benefit_special_assistance", 1),
        ("benefit_special_assistance_yuan", 1320),
    ])
}

/// The period kinds of the report, each over the fixture's October 2026.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Month,
    Quarter,
    Ytd,
    Year,
    Range,
}

const KINDS: [Kind; 5] = [
    Kind::Month,
    Kind::Quarter,
    Kind::Ytd,
    Kind::Year,
    Kind::Range,
];

impl Kind {
    fn query(self) -> &'static str {
        match self {
            Kind::Month => "period=2026-10",
            Kind::Quarter => "period=2026-Q4",
            Kind::Ytd => "period=2026-10&kind=ytd",
            Kind::Year => "period=2026",
            Kind::Range => "from=2026-09-15&to=2026-10-05",
        }
    }

    /// The answer's `period.kind`, `period.days` and `annualise` (2026 has 365 days).
    fn shape(self) -> (&'static str, i64, f64) {
        match self {
            Kind::Month => ("month", 31, 365.0 / 31.0),
            Kind::Quarter => ("quarter", 92, 365.0 / 92.0),
            // 1 January to 31 October: 31+28+31+30+31+30+31+31+30+31.
            Kind::Ytd => ("ytd", 304, 365.0 / 304.0),
            Kind::Year => ("year", 365, 1.0),
            // 15 September to 5 October: 16 + 5.
            Kind::Range => ("range", 21, 365.0 / 21.0),
        }
    }
}

/// Sets some counts of `base`.
fn with(mut base: Counts, changes: &[(&str, i64)]) -> Counts {
    for (k, v) in changes {
        assert!(base.contains_key(*k), "unknown key {k}");
        base.insert(k.to_string(), *v);
    }
    base
}

/// Village A by period kind: October and what the other periods add or lose.
fn village_a(k: Kind) -> Counts {
    let oct = village_a_october();
    // 1 October to 31 December: N1 born on 10 December (second child of W2, not within
    // policy); W3 turns 50 on 15 November (out of the married women, and her IUD with her);
    // her IUD check due 5 November was done on 30 October; W1's postpartum visit due 15 October
    // was done on 2 November.
    let q4 = [
        ("population_end", 9),
        ("population_end_female", 6),
        ("births", 3),
        ("births_female", 2),
        ("births_parity_2", 2),
        ("married_wcba", 2),
        ("wcba_children_0", 0),
        ("wcba_children_1", 0),
        ("wcba_children_2", 2),
        ("contraceptive_users", 1),
        ("users_iud_insertion", 0),
        ("check_women_checked", 3),
        ("follow_ups_done", 2),
        ("visits_done", 6),
    ];
    // 1 January to 31 October: the population on 31 December 2025 is the one of 30 September
    // (8); W2's pregnancy detected on 1 April and W3's on 10 September; W3's contraceptive
    // follow-up due 20 September (done 2 October); W2's film handed out on 30 September.
    let ytd = [
        ("pregnancies_detected", 3),
        ("follow_ups_due", 3),
        ("follow_ups_done", 2),
        ("supply_film", 2),
    ];
    match k {
        Kind::Month => oct,
        Kind::Quarter => with(oct, &q4),
        Kind::Ytd => with(oct, &ytd),
        // Both; the three follow-ups due in the year are all done by 31 December.
        Kind::Year => with(with(with(oct, &q4), &ytd), &[("follow_ups_done", 3)]),
        // 15 September to 5 October. On 14 September: the 8 of 30 September. On 5 October: W1,
        // M1, W2, W3, K2, W4 (leaves on 9 October), D1 (dies on 10 October), K1 (born that
        // day); W5 left on 3 October; PO comes on 11 October.
        Kind::Range => with(
            oct,
            &[
                // Not resident on 5 October and alive: W5, and PO (who comes only later).
                ("moved_out_end", 2),
                // K1 only: male, second, within policy, in hospital.
                ("births", 1),
                ("births_in_facility", 1),
                ("births_female", 0),
                ("births_parity_1", 0),
                ("births_within_policy", 1),
                ("births_within_policy_1", 0),
                ("deaths", 0),
                // W2's first birth (20 October) is later: W2 and W3 have none, W1 two.
                ("wcba_children_0", 2),
                ("wcba_children_1", 0),
                // M1's vasectomy (20 October) is later: W1 counts by her condoms; W2's pills
                // end on 15 October; W3's IUD since 3 October.
                ("contraceptive_users", 3),
                ("users_vasectomy", 0),
                ("users_condoms", 1),
                ("users_pills", 1),
                // W1, without a long-acting measure on 5 October.
                ("mothers", 1),
                ("mothers_long_acting", 0),
                // The IUD removal (2 October) and insertion (3 October) only.
                ("ops_vasectomy", 0),
                ("ops_induced", 0),
                ("ops_total", 2),
                ("ops_implant", 0),
                ("pregnancies_detected", 0),
                ("pregnancy_miscarriages", 0),
                // W2's disease check due 5 October, done on 6 October (after the end).
                ("check_women_due", 1),
                ("check_women_checked", 0),
                ("checks_done", 0),
                // W3's contraceptive follow-up due 20 September, done 2 October.
                ("follow_ups_due", 1),
                ("follow_ups_done", 1),
                ("visits_done", 1),
                // W5 out on 3 October with her certificate; nobody in yet.
                ("migrants_out", 1),
                ("migrants_in", 0),
                ("certificates_issued", 1),
                ("in_checked", 0),
                // W1's 10 condoms of 1 October, W2's film of 30 September.
                ("supply_condoms", 10),
                ("supply_pills", 0),
                ("supply_film", 2),
            ],
        ),
    }
}

/// Village B: nothing happens outside October except that the range ends before WB1's birth
/// (15 October) and check (12 October).
fn village_b(k: Kind) -> Counts {
    match k {
        Kind::Range => with(
            village_b_october(),
            &[
                ("births", 0),
                ("births_female", 0),
                ("births_parity_3plus", 0),
                ("wcba_children_0", 1),
                ("wcba_children_1", 0),
                ("mothers", 0),
                ("mothers_long_acting", 0),
                ("check_women_due", 0),
                ("check_women_checked", 0),
                ("checks_done", 0),
                ("visits_done", 0),
            ],
        ),
        _ => village_b_october(),
    }
}

/// Village C: the quarter is October; the year and the year to date add WC2's birth of
/// 10 March (third, within policy), WC1's of 15 September (first, within policy) and the death
/// of 1 March; the range ends before WC2's ligation (6 October).
fn village_c(k: Kind) -> Counts {
    let oct = village_c_october();
    match k {
        Kind::Month | Kind::Quarter => oct,
        Kind::Ytd | Kind::Year => with(
            oct,
            &[
                ("births", 2),
                ("births_male", 1),
                ("births_female", 1),
                ("births_parity_1", 1),
                ("births_parity_3plus", 1),
                ("births_within_policy", 2),
                ("births_within_policy_1", 1),
                ("births_within_policy_3plus", 1),
                ("deaths", 1),
                // WC1 (pills: not long-acting), WC2 (ligation).
                ("mothers", 2),
                ("mothers_long_acting", 1),
            ],
        ),
        Kind::Range => with(
            oct,
            &[
                ("births", 1),
                ("births_male", 1),
                ("births_parity_1", 1),
                ("births_within_policy", 1),
                ("births_within_policy_1", 1),
                ("contraceptive_users", 5),
                ("users_tubal_ligation", 0),
                ("mothers", 1),
                ("ops_tubal_ligation", 0),
                ("ops_total", 0),
            ],
        ),
    }
}

/// The units whose indicators are written out below: township 2 is village C.
#[derive(Clone, Copy, Debug)]
enum Unit {
    A,
    B,
    C,
    T1,
    County,
}

/// Indicator codes in report order.
const INDICATORS: [&str; 13] = [
    "crude_birth_rate",
    "crude_death_rate",
    "natural_growth_rate",
    "policy_compliant_birth_rate",
    "sex_ratio_at_birth",
    "contraceptive_prevalence",
    "long_acting_measure_rate",
    "check_coverage",
    "follow_up_rate",
    "certificate_rate",
    "check_rate",
    "first_child_share",
    "hospital_delivery_rate",
];

/// (numerator, denominator, value) of each indicator of [`INDICATORS`], worked out from the
/// counts above. Per-mille rates: count / average population x 1000 x days of 2026 / days of
/// the period, the denominator being the average rounded; the growth rate is the difference
/// of the two rounded rates. A `None` is a zero denominator: not applicable.
type Expected = [(i64, i64, Option<f64>); 13];

fn expected_indicators(k: Kind, u: Unit) -> Expected {
    match (k, u) {
        (Kind::Month, Unit::A) => [
            (2, 8, Some(2943.55)), // births / avg (8 + 8) / 2 x 1000 x 365/31
            (1, 8, Some(1471.77)), // deaths / avg x 1000 x 365/31
            (1, 8, Some(1471.78)), // birth rate - death rate
            (2, 2, Some(100.0)),   // within policy / births
            (1, 1, Some(100.0)),   // male / female births x 100
            (2, 3, Some(66.67)),   // users / married women
            (1, 2, Some(50.0)),    // long-acting / mothers
            (2, 3, Some(66.67)),   // checked / due
            (1, 2, Some(50.0)),    // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (1, 2, Some(50.0)),    // first births / births
            (2, 2, Some(100.0)),   // births in a facility / births
        ],
        (Kind::Month, Unit::B) => [
            (1, 3, Some(3924.73)), // births / avg (3 + 3) / 2 x 1000 x 365/31
            (0, 3, Some(0.0)),     // deaths / avg x 1000 x 365/31
            (1, 3, Some(3924.73)), // birth rate - death rate
            (0, 1, Some(0.0)),     // within policy / births
            (0, 1, Some(0.0)),     // male / female births x 100
            (1, 1, Some(100.0)),   // users / married women
            (1, 1, Some(100.0)),   // long-acting / mothers
            (1, 1, Some(100.0)),   // checked / due
            (0, 0, None),          // follow-ups done / due
            (0, 0, None),          // certified / out-migrant married women
            (0, 0, None),          // checked / in-migrants
            (0, 1, Some(0.0)),     // first births / births
            (0, 1, Some(0.0)),     // births in a facility / births
        ],
        (Kind::Month, Unit::C) => [
            (0, 7, Some(0.0)),   // births / avg (7 + 7) / 2 x 1000 x 365/31
            (0, 7, Some(0.0)),   // deaths / avg x 1000 x 365/31
            (0, 7, Some(0.0)),   // birth rate - death rate
            (0, 0, None),        // within policy / births
            (0, 0, None),        // male / female births x 100
            (6, 6, Some(100.0)), // users / married women
            (0, 0, None),        // long-acting / mothers
            (0, 0, None),        // checked / due
            (0, 0, None),        // follow-ups done / due
            (0, 0, None),        // certified / out-migrant married women
            (0, 0, None),        // checked / in-migrants
            (0, 0, None),        // first births / births
            (0, 0, None),        // births in a facility / births
        ],
        (Kind::Month, Unit::T1) => [
            (3, 11, Some(3211.14)), // births / avg (11 + 11) / 2 x 1000 x 365/31
            (1, 11, Some(1070.38)), // deaths / avg x 1000 x 365/31
            (2, 11, Some(2140.76)), // birth rate - death rate
            (2, 3, Some(66.67)),    // within policy / births
            (1, 2, Some(50.0)),     // male / female births x 100
            (3, 4, Some(75.0)),     // users / married women
            (2, 3, Some(66.67)),    // long-acting / mothers
            (3, 4, Some(75.0)),     // checked / due
            (1, 2, Some(50.0)),     // follow-ups done / due
            (1, 1, Some(100.0)),    // certified / out-migrant married women
            (1, 2, Some(50.0)),     // checked / in-migrants
            (1, 3, Some(33.33)),    // first births / births
            (2, 3, Some(66.67)),    // births in a facility / births
        ],
        (Kind::Month, Unit::County) => [
            (3, 18, Some(1962.37)), // births / avg (18 + 18) / 2 x 1000 x 365/31
            (1, 18, Some(654.12)),  // deaths / avg x 1000 x 365/31
            (2, 18, Some(1308.25)), // birth rate - death rate
            (2, 3, Some(66.67)),    // within policy / births
            (1, 2, Some(50.0)),     // male / female births x 100
            (9, 10, Some(90.0)),    // users / married women
            (2, 3, Some(66.67)),    // long-acting / mothers
            (3, 4, Some(75.0)),     // checked / due
            (1, 2, Some(50.0)),     // follow-ups done / due
            (1, 1, Some(100.0)),    // certified / out-migrant married women
            (1, 2, Some(50.0)),     // checked / in-migrants
            (1, 3, Some(33.33)),    // first births / births
            (2, 3, Some(66.67)),    // births in a facility / births
        ],
        (Kind::Quarter, Unit::A) => [
            (3, 9, Some(1400.26)), // births / avg (8 + 9) / 2 x 1000 x 365/92
            (1, 9, Some(466.75)),  // deaths / avg x 1000 x 365/92
            (2, 9, Some(933.51)),  // birth rate - death rate
            (2, 3, Some(66.67)),   // within policy / births
            (1, 2, Some(50.0)),    // male / female births x 100
            (1, 2, Some(50.0)),    // users / married women
            (1, 2, Some(50.0)),    // long-acting / mothers
            (3, 3, Some(100.0)),   // checked / due
            (2, 2, Some(100.0)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (1, 3, Some(33.33)),   // first births / births
            (2, 3, Some(66.67)),   // births in a facility / births
        ],
        (Kind::Quarter, Unit::B) => [
            (1, 3, Some(1322.46)), // births / avg (3 + 3) / 2 x 1000 x 365/92
            (0, 3, Some(0.0)),     // deaths / avg x 1000 x 365/92
            (1, 3, Some(1322.46)), // birth rate - death rate
            (0, 1, Some(0.0)),     // within policy / births
            (0, 1, Some(0.0)),     // male / female births x 100
            (1, 1, Some(100.0)),   // users / married women
            (1, 1, Some(100.0)),   // long-acting / mothers
            (1, 1, Some(100.0)),   // checked / due
            (0, 0, None),          // follow-ups done / due
            (0, 0, None),          // certified / out-migrant married women
            (0, 0, None),          // checked / in-migrants
            (0, 1, Some(0.0)),     // first births / births
            (0, 1, Some(0.0)),     // births in a facility / births
        ],
        (Kind::Quarter, Unit::C) => [
            (0, 7, Some(0.0)),   // births / avg (7 + 7) / 2 x 1000 x 365/92
            (0, 7, Some(0.0)),   // deaths / avg x 1000 x 365/92
            (0, 7, Some(0.0)),   // birth rate - death rate
            (0, 0, None),        // within policy / births
            (0, 0, None),        // male / female births x 100
            (6, 6, Some(100.0)), // users / married women
            (0, 0, None),        // long-acting / mothers
            (0, 0, None),        // checked / due
            (0, 0, None),        // follow-ups done / due
            (0, 0, None),        // certified / out-migrant married women
            (0, 0, None),        // checked / in-migrants
            (0, 0, None),        // first births / births
            (0, 0, None),        // births in a facility / births
        ],
        (Kind::Quarter, Unit::T1) => [
            (4, 12, Some(1379.96)), // births / avg (11 + 12) / 2 x 1000 x 365/92
            (1, 12, Some(344.99)),  // deaths / avg x 1000 x 365/92
            (3, 12, Some(1034.97)), // birth rate - death rate
            (2, 4, Some(50.0)),     // within policy / births
            (1, 3, Some(33.33)),    // male / female births x 100
            (2, 3, Some(66.67)),    // users / married women
            (2, 3, Some(66.67)),    // long-acting / mothers
            (4, 4, Some(100.0)),    // checked / due
            (2, 2, Some(100.0)),    // follow-ups done / due
            (1, 1, Some(100.0)),    // certified / out-migrant married women
            (1, 2, Some(50.0)),     // checked / in-migrants
            (1, 4, Some(25.0)),     // first births / births
            (2, 4, Some(50.0)),     // births in a facility / births
        ],
        (Kind::Quarter, Unit::County) => [
            (4, 19, Some(857.81)), // births / avg (18 + 19) / 2 x 1000 x 365/92
            (1, 19, Some(214.45)), // deaths / avg x 1000 x 365/92
            (3, 19, Some(643.36)), // birth rate - death rate
            (2, 4, Some(50.0)),    // within policy / births
            (1, 3, Some(33.33)),   // male / female births x 100
            (8, 9, Some(88.89)),   // users / married women
            (2, 3, Some(66.67)),   // long-acting / mothers
            (4, 4, Some(100.0)),   // checked / due
            (2, 2, Some(100.0)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (1, 4, Some(25.0)),    // first births / births
            (2, 4, Some(50.0)),    // births in a facility / births
        ],
        (Kind::Ytd, Unit::A) => [
            (2, 8, Some(300.16)), // births / avg (8 + 8) / 2 x 1000 x 365/304
            (1, 8, Some(150.08)), // deaths / avg x 1000 x 365/304
            (1, 8, Some(150.08)), // birth rate - death rate
            (2, 2, Some(100.0)),  // within policy / births
            (1, 1, Some(100.0)),  // male / female births x 100
            (2, 3, Some(66.67)),  // users / married women
            (1, 2, Some(50.0)),   // long-acting / mothers
            (2, 3, Some(66.67)),  // checked / due
            (2, 3, Some(66.67)),  // follow-ups done / due
            (1, 1, Some(100.0)),  // certified / out-migrant married women
            (1, 2, Some(50.0)),   // checked / in-migrants
            (1, 2, Some(50.0)),   // first births / births
            (2, 2, Some(100.0)),  // births in a facility / births
        ],
        (Kind::Ytd, Unit::B) => [
            (1, 3, Some(400.22)), // births / avg (3 + 3) / 2 x 1000 x 365/304
            (0, 3, Some(0.0)),    // deaths / avg x 1000 x 365/304
            (1, 3, Some(400.22)), // birth rate - death rate
            (0, 1, Some(0.0)),    // within policy / births
            (0, 1, Some(0.0)),    // male / female births x 100
            (1, 1, Some(100.0)),  // users / married women
            (1, 1, Some(100.0)),  // long-acting / mothers
            (1, 1, Some(100.0)),  // checked / due
            (0, 0, None),         // follow-ups done / due
            (0, 0, None),         // certified / out-migrant married women
            (0, 0, None),         // checked / in-migrants
            (0, 1, Some(0.0)),    // first births / births
            (0, 1, Some(0.0)),    // births in a facility / births
        ],
        (Kind::Ytd, Unit::C) => [
            (2, 7, Some(343.05)), // births / avg (7 + 7) / 2 x 1000 x 365/304
            (1, 7, Some(171.52)), // deaths / avg x 1000 x 365/304
            (1, 7, Some(171.53)), // birth rate - death rate
            (2, 2, Some(100.0)),  // within policy / births
            (1, 1, Some(100.0)),  // male / female births x 100
            (6, 6, Some(100.0)),  // users / married women
            (1, 2, Some(50.0)),   // long-acting / mothers
            (0, 0, None),         // checked / due
            (0, 0, None),         // follow-ups done / due
            (0, 0, None),         // certified / out-migrant married women
            (0, 0, None),         // checked / in-migrants
            (1, 2, Some(50.0)),   // first births / births
            (0, 2, Some(0.0)),    // births in a facility / births
        ],
        (Kind::Ytd, Unit::T1) => [
            (3, 11, Some(327.45)), // births / avg (11 + 11) / 2 x 1000 x 365/304
            (1, 11, Some(109.15)), // deaths / avg x 1000 x 365/304
            (2, 11, Some(218.3)),  // birth rate - death rate
            (2, 3, Some(66.67)),   // within policy / births
            (1, 2, Some(50.0)),    // male / female births x 100
            (3, 4, Some(75.0)),    // users / married women
            (2, 3, Some(66.67)),   // long-acting / mothers
            (3, 4, Some(75.0)),    // checked / due
            (2, 3, Some(66.67)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (1, 3, Some(33.33)),   // first births / births
            (2, 3, Some(66.67)),   // births in a facility / births
        ],
        (Kind::Ytd, Unit::County) => [
            (5, 18, Some(333.52)), // births / avg (18 + 18) / 2 x 1000 x 365/304
            (2, 18, Some(133.41)), // deaths / avg x 1000 x 365/304
            (3, 18, Some(200.11)), // birth rate - death rate
            (4, 5, Some(80.0)),    // within policy / births
            (2, 3, Some(66.67)),   // male / female births x 100
            (9, 10, Some(90.0)),   // users / married women
            (3, 5, Some(60.0)),    // long-acting / mothers
            (3, 4, Some(75.0)),    // checked / due
            (2, 3, Some(66.67)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (2, 5, Some(40.0)),    // first births / births
            (2, 5, Some(40.0)),    // births in a facility / births
        ],
        (Kind::Year, Unit::A) => [
            (3, 9, Some(352.94)), // births / avg (8 + 9) / 2 x 1000
            (1, 9, Some(117.65)), // deaths / avg x 1000
            (2, 9, Some(235.29)), // birth rate - death rate
            (2, 3, Some(66.67)),  // within policy / births
            (1, 2, Some(50.0)),   // male / female births x 100
            (1, 2, Some(50.0)),   // users / married women
            (1, 2, Some(50.0)),   // long-acting / mothers
            (3, 3, Some(100.0)),  // checked / due
            (3, 3, Some(100.0)),  // follow-ups done / due
            (1, 1, Some(100.0)),  // certified / out-migrant married women
            (1, 2, Some(50.0)),   // checked / in-migrants
            (1, 3, Some(33.33)),  // first births / births
            (2, 3, Some(66.67)),  // births in a facility / births
        ],
        (Kind::Year, Unit::B) => [
            (1, 3, Some(333.33)), // births / avg (3 + 3) / 2 x 1000
            (0, 3, Some(0.0)),    // deaths / avg x 1000
            (1, 3, Some(333.33)), // birth rate - death rate
            (0, 1, Some(0.0)),    // within policy / births
            (0, 1, Some(0.0)),    // male / female births x 100
            (1, 1, Some(100.0)),  // users / married women
            (1, 1, Some(100.0)),  // long-acting / mothers
            (1, 1, Some(100.0)),  // checked / due
            (0, 0, None),         // follow-ups done / due
            (0, 0, None),         // certified / out-migrant married women
            (0, 0, None),         // checked / in-migrants
            (0, 1, Some(0.0)),    // first births / births
            (0, 1, Some(0.0)),    // births in a facility / births
        ],
        (Kind::Year, Unit::C) => [
            (2, 7, Some(285.71)), // births / avg (7 + 7) / 2 x 1000
            (1, 7, Some(142.86)), // deaths / avg x 1000
            (1, 7, Some(142.85)), // birth rate - death rate
            (2, 2, Some(100.0)),  // within policy / births
            (1, 1, Some(100.0)),  // male / female births x 100
            (6, 6, Some(100.0)),  // users / married women
            (1, 2, Some(50.0)),   // long-acting / mothers
            (0, 0, None),         // checked / due
            (0, 0, None),         // follow-ups done / due
            (0, 0, None),         // certified / out-migrant married women
            (0, 0, None),         // checked / in-migrants
            (1, 2, Some(50.0)),   // first births / births
            (0, 2, Some(0.0)),    // births in a facility / births
        ],
        (Kind::Year, Unit::T1) => [
            (4, 12, Some(347.83)), // births / avg (11 + 12) / 2 x 1000
            (1, 12, Some(86.96)),  // deaths / avg x 1000
            (3, 12, Some(260.87)), // birth rate - death rate
            (2, 4, Some(50.0)),    // within policy / births
            (1, 3, Some(33.33)),   // male / female births x 100
            (2, 3, Some(66.67)),   // users / married women
            (2, 3, Some(66.67)),   // long-acting / mothers
            (4, 4, Some(100.0)),   // checked / due
            (3, 3, Some(100.0)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (1, 4, Some(25.0)),    // first births / births
            (2, 4, Some(50.0)),    // births in a facility / births
        ],
        (Kind::Year, Unit::County) => [
            (6, 19, Some(324.32)), // births / avg (18 + 19) / 2 x 1000
            (2, 19, Some(108.11)), // deaths / avg x 1000
            (4, 19, Some(216.21)), // birth rate - death rate
            (4, 6, Some(66.67)),   // within policy / births
            (2, 4, Some(50.0)),    // male / female births x 100
            (8, 9, Some(88.89)),   // users / married women
            (3, 5, Some(60.0)),    // long-acting / mothers
            (4, 4, Some(100.0)),   // checked / due
            (3, 3, Some(100.0)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (1, 2, Some(50.0)),    // checked / in-migrants
            (2, 6, Some(33.33)),   // first births / births
            (2, 6, Some(33.33)),   // births in a facility / births
        ],
        (Kind::Range, Unit::A) => [
            (1, 8, Some(2172.62)), // births / avg (8 + 8) / 2 x 1000 x 365/21
            (0, 8, Some(0.0)),     // deaths / avg x 1000 x 365/21
            (1, 8, Some(2172.62)), // birth rate - death rate
            (1, 1, Some(100.0)),   // within policy / births
            (1, 0, None),          // male / female births x 100
            (3, 3, Some(100.0)),   // users / married women
            (0, 1, Some(0.0)),     // long-acting / mothers
            (0, 1, Some(0.0)),     // checked / due
            (1, 1, Some(100.0)),   // follow-ups done / due
            (1, 1, Some(100.0)),   // certified / out-migrant married women
            (0, 0, None),          // checked / in-migrants
            (0, 1, Some(0.0)),     // first births / births
            (1, 1, Some(100.0)),   // births in a facility / births
        ],
        (Kind::Range, Unit::B) => [
            (0, 3, Some(0.0)),   // births / avg (3 + 3) / 2 x 1000 x 365/21
            (0, 3, Some(0.0)),   // deaths / avg x 1000 x 365/21
            (0, 3, Some(0.0)),   // birth rate - death rate
            (0, 0, None),        // within policy / births
            (0, 0, None),        // male / female births x 100
            (1, 1, Some(100.0)), // users / married women
            (0, 0, None),        // long-acting / mothers
            (0, 0, None),        // checked / due
            (0, 0, None),        // follow-ups done / due
            (0, 0, None),        // certified / out-migrant married women
            (0, 0, None),        // checked / in-migrants
            (0, 0, None),        // first births / births
            (0, 0, None),        // births in a facility / births
        ],
        (Kind::Range, Unit::C) => [
            (1, 7, Some(2482.99)), // births / avg (7 + 7) / 2 x 1000 x 365/21
            (0, 7, Some(0.0)),     // deaths / avg x 1000 x 365/21
            (1, 7, Some(2482.99)), // birth rate - death rate
            (1, 1, Some(100.0)),   // within policy / births
            (1, 0, None),          // male / female births x 100
            (5, 6, Some(83.33)),   // users / married women
            (0, 1, Some(0.0)),     // long-acting / mothers
            (0, 0, None),          // checked / due
            (0, 0, None),          // follow-ups done / due
            (0, 0, None),          // certified / out-migrant married women
            (0, 0, None),          // checked / in-migrants
            (1, 1, Some(100.0)),   // first births / births
            (0, 1, Some(0.0)),     // births in a facility / births
        ],
        (Kind::Range, Unit::T1) => [
            (1, 11, Some(1580.09)), // births / avg (11 + 11) / 2 x 1000 x 365/21
            (0, 11, Some(0.0)),     // deaths / avg x 1000 x 365/21
            (1, 11, Some(1580.09)), // birth rate - death rate
            (1, 1, Some(100.0)),    // within policy / births
            (1, 0, None),           // male / female births x 100
            (4, 4, Some(100.0)),    // users / married women
            (0, 1, Some(0.0)),      // long-acting / mothers
            (0, 1, Some(0.0)),      // checked / due
            (1, 1, Some(100.0)),    // follow-ups done / due
            (1, 1, Some(100.0)),    // certified / out-migrant married women
            (0, 0, None),           // checked / in-migrants
            (0, 1, Some(0.0)),      // first births / births
            (1, 1, Some(100.0)),    // births in a facility / births
        ],
        (Kind::Range, Unit::County) => [
            (2, 18, Some(1931.22)), // births / avg (18 + 18) / 2 x 1000 x 365/21
            (0, 18, Some(0.0)),     // deaths / avg x 1000 x 365/21
            (2, 18, Some(1931.22)), // birth rate - death rate
            (2, 2, Some(100.0)),    // within policy / births
            (2, 0, None),           // male / female births x 100
            (9, 10, Some(90.0)),    // users / married women
            (0, 2, Some(0.0)),      // long-acting / mothers
            (0, 1, Some(0.0)),      // checked / due
            (1, 1, Some(100.0)),    // follow-ups done / due
            (1, 1, Some(100.0)),    // certified / out-migrant married women
            (0, 0, None),           // checked / in-migrants
            (1, 2, Some(50.0)),     // first births / births
            (1, 2, Some(50.0)),     // births in a facility / births
        ],
    }
}

fn sum(parts: &[&Counts]) -> Counts {
    let mut out = counts_of(&[]);
    for p in parts {
        for (k, v) in p.iter() {
            *out.get_mut(k).unwrap() += v;
        }
    }
    out
}

fn body_counts(v: &Value) -> Counts {
    let mut c: Counts = serde_json::from_value(v["counts"].clone()).unwrap();
    c.retain(|k, _| !OWN_FIXTURE_KEYS.contains(&k.as_str()));
    c
}

/// Every indicator of the answer: code, numerator, denominator and value (issue 14's, after
/// these, in `report_indicators.rs`).
fn assert_indicators(v: &Value, expected: &Expected, what: &str) {
    let rows = v["indicators"].as_array().unwrap();
    assert_eq!(rows.len(), ind::Indicator::ALL.len());
    for ((row, code), (n, d, value)) in rows.iter().zip(INDICATORS).zip(expected) {
        assert_eq!(row["indicator"], code, "{what}");
        assert_eq!(
            (
                row["numerator"].as_i64(),
                row["denominator"].as_i64(),
                row["value"].as_f64()
            ),
            (Some(*n), Some(*d), *value),
            "{what} {code}"
        );
    }
}

fn indicator<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["indicator"] == code)
        .unwrap()
}

struct World {
    app: TestApp,
    county: String,
    ts: String,
    ts2: String,
    worker: String,
    ids: BTreeMap<&'static str, String>,
}

fn world(b: Backend) -> World {
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
    add_user(
        &app,
        "ts2",
        Role::TownshipSupervisor,
        Some(&township(0, 1)),
        &[],
    );
    add_user(&app, "w", Role::Worker, None, &[va()]);
    let ids = build(&app);
    World {
        county: session(&app, "cs").access,
        ts: session(&app, "ts").access,
        ts2: session(&app, "ts2").access,
        worker: session(&app, "w").access,
        app,
        ids,
    }
}

fn report(w: &World, token: &str, query: &str) -> Value {
    let r = w.app.get(&format!("/api/v1/reports?{query}"), Some(token));
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    r.body
}

both!(counts_and_indicators_are_exact_at_every_level, |b| {
    let w = world(b);
    // Every count and every indicator, for each period kind, at village, township and county
    // level. Township 1 is villages A and B (and an empty village), township 2 village C.
    for k in KINDS {
        let (a, bb, c) = (village_a(k), village_b(k), village_c(k));
        let t1 = sum(&[&a, &bb]);
        let county = sum(&[&a, &bb, &c]);
        for (unit, expected, u) in [
            (va(), &a, Unit::A),
            (vb(), &bb, Unit::B),
            (vc(), &c, Unit::C),
            (township(0, 0), &t1, Unit::T1),
            (township(0, 1), &c, Unit::C),
            (COUNTY.to_string(), &county, Unit::County),
        ] {
            let what = format!("{k:?} {unit}");
            let v = report(&w, &w.county, &format!("org_unit={unit}&{}", k.query()));
            assert_eq!(&body_counts(&v), expected, "{what}");
            assert_indicators(&v, &expected_indicators(k, u), &what);
            let (kind, days, annualise) = k.shape();
            assert_eq!(v["period"]["kind"], kind, "{what}");
            assert_eq!(v["period"]["days"], days, "{what}");
            assert_eq!(v["annualise"].as_f64(), Some(annualise), "{what}");
        }
    }
    // Every count is non-zero somewhere, so none of them goes unchecked.
    let all = sum(&KINDS
        .iter()
        .flat_map(|k| [village_a(*k), village_b(*k), village_c(*k)])
        .collect::<Vec<_>>()
        .iter()
        .collect::<Vec<_>>());
    let zero: Vec<&String> = all
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k)
        .collect();
    assert!(zero.is_empty(), "never counted: {zero:?}");
    // WC6 is a user through her husband's vasectomy alone: without it village C would have
    // 5 users of 6, and no vasectomy.
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-10", vc()));
    assert_eq!(
        (
            v["counts"]["contraceptive_users"].as_i64(),
            v["counts"]["users_vasectomy"].as_i64()
        ),
        (Some(6), Some(1))
    );
    // A township supervisor sees the same figures for their township, by default.
    let v = report(&w, &w.ts, "period=2026-10");
    assert_eq!(v["org_unit"]["code"], township(0, 0));
    assert_eq!(
        body_counts(&v),
        sum(&[&village_a_october(), &village_b_october()])
    );

    // Village A's indicators, spelt out.
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-10", va()));
    let val = |code: &str| indicator(&v, code)["value"].as_f64();
    assert_eq!(val("contraceptive_prevalence"), Some(66.67));
    assert_eq!(val("policy_compliant_birth_rate"), Some(100.0));
    // The same figure under the name the seeds use.
    let pc = indicator(&v, "policy_compliant_birth_rate");
    assert_eq!(
        (&pc["zh"], &pc["also_zh"]),
        (&json!("符合政策生育率"), &json!("计划生育率"))
    );
    assert_eq!(
        v["labels"]["indicator_aliases"]["policy_compliant_birth_rate"],
        "计划生育率"
    );
    assert_eq!(indicator(&v, "check_rate")["also_zh"], Value::Null);
    assert_eq!(val("sex_ratio_at_birth"), Some(100.0));
    assert_eq!(val("long_acting_measure_rate"), Some(50.0));
    assert_eq!(val("check_coverage"), Some(66.67));
    assert_eq!(val("follow_up_rate"), Some(50.0));
    assert_eq!(val("certificate_rate"), Some(100.0));
    assert_eq!(val("check_rate"), Some(50.0));
    assert_eq!(val("first_child_share"), Some(50.0));
    // 2 births, average population 8, a 31-day month annualised: 2 / 8 * 1000 * 365 / 31.
    assert_eq!(val("crude_birth_rate"), Some(2943.55));
    assert_eq!(v["average_population"], 8.0);
    // Village C: no births, so the birth-based rates do not apply (null, not 0).
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-10", vc()));
    assert_eq!(
        indicator(&v, "policy_compliant_birth_rate")["value"],
        Value::Null
    );
    assert_eq!(indicator(&v, "sex_ratio_at_birth")["value"], Value::Null);
    assert_eq!(indicator(&v, "crude_birth_rate")["value"], 0.0);

    // Bad input and scope.
    let r = w.app.get("/api/v1/reports?period=2026-13", Some(&w.county));
    assert_eq!(r.status, 400);
    let r = w.app.get(
        &format!("/api/v1/reports?org_unit={}&period=2026-10", outside()),
        Some(&w.county),
    );
    assert_eq!(r.status, 404);
    let r = w.app.get(
        &format!("/api/v1/reports?org_unit={}&period=2026-10", vc()),
        Some(&w.ts),
    );
    assert_eq!(r.status, 404);
    let r = w.app.get("/api/v1/reports?period=2026-10", Some(&w.worker));
    assert_eq!(r.status, 403);
    let _ = &w.ids;
});

// Population at a date from the dated ledgers (the rule in `report::counts`): one village,
// October and November 2026.
both!(population_at_a_date_follows_deaths_and_migrations, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
    let token = session(&app, "cs").access;
    let v = va();
    let mut f = Fixture::new();
    let married = |sex: &str, birth: &str, extra: Value| {
        let mut x = p(sex, birth, extra);
        x["marital_status"] = json!("first_marriage");
        x
    };
    // R: resident throughout.
    f.person(
        "R",
        &v,
        married("female", "1995-02-02", json!({"residence": "resident"})),
    );
    // DM: died on 15 October; marked dead now.
    let dm = f.person(
        "DM",
        &v,
        p(
            "male",
            "1960-01-01",
            json!({"residence": "resident", "alive": false}),
        ),
    );
    f.add(
        Entity::Death,
        &v,
        json!({"person_id": dm, "death_date": "2026-10-15"}),
    );
    // DA: died on 5 November, after October.
    let da = f.person(
        "DA",
        &v,
        p(
            "female",
            "1950-01-01",
            json!({"residence": "resident", "alive": false}),
        ),
    );
    f.add(
        Entity::Death,
        &v,
        json!({"person_id": da, "death_date": "2026-11-05"}),
    );
    // MO: moved out on 20 November; moved out now.
    let mo = f.person(
        "MO",
        &v,
        married("female", "1990-06-06", json!({"residence": "moved_out"})),
    );
    f.add(
        Entity::Migration,
        &v,
        json!({"person_id": mo, "direction": "out", "moved_on": "2026-11-20"}),
    );
    // MI: moved in on 12 October.
    let mi = f.person(
        "MI",
        &v,
        p("male", "1985-03-03", json!({"residence": "moved_in"})),
    );
    f.add(
        Entity::Migration,
        &v,
        json!({"person_id": mi, "direction": "in", "moved_on": "2026-10-12"}),
    );
    // RT: left in September, came back on 20 October (resident again now).
    let rt = f.person(
        "RT",
        &v,
        p("male", "1980-04-04", json!({"residence": "resident"})),
    );
    f.add(
        Entity::Migration,
        &v,
        json!({"person_id": rt, "direction": "out", "moved_on": "2026-09-01"}),
    );
    f.add(
        Entity::Migration,
        &v,
        json!({"person_id": rt, "direction": "in", "moved_on": "2026-10-20"}),
    );
    // DX: marked dead, no death record: dead at every date.
    f.person(
        "DX",
        &v,
        married(
            "female",
            "1992-01-01",
            json!({"residence": "resident", "alive": false}),
        ),
    );
    f.store(&app);

    let get = |period: &str| {
        let r = app.get(
            &format!("/api/v1/reports?org_unit={v}&period={period}"),
            Some(&token),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    };
    let keys = [
        "population_start",
        "population_end",
        "population_end_male",
        "population_end_female",
        "moved_in_end",
        "moved_out_end",
        "deaths",
        "married_wcba",
        "migrants_in",
        "migrants_out",
    ];
    let pick = |body: &Value| -> Vec<i64> {
        keys.iter()
            .map(|k| body["counts"][*k].as_i64().unwrap())
            .collect()
    };
    // 30 September: R, DM, DA, MO (RT away, MI not yet here, DX dead).
    // 31 October: R, DA, MO, MI, RT (DM died; MO leaves only in November).
    let oct = get("2026-10");
    assert_eq!(pick(&oct), [4, 5, 2, 3, 1, 0, 1, 2, 2, 0], "{keys:?}");
    assert_eq!(oct["average_population"], 4.5);
    // 30 November: R, MI, RT (DA died, MO moved out).
    let nov = get("2026-11");
    assert_eq!(pick(&nov), [5, 3, 2, 1, 1, 1, 1, 1, 0, 1], "{keys:?}");
    // 30 September, moved out at end: RT (a local away until 20 October), not MI (registered
    // as moved in: before 12 October not here, so not away from here either).
    let sep = get("2026-09");
    assert_eq!(sep["counts"]["moved_out_end"], 1, "{:?}", sep["counts"]);
    // The quarter starts where October starts and ends after both departures.
    let q = get("2026-Q4");
    assert_eq!(
        (
            q["counts"]["population_start"].as_i64(),
            q["counts"]["population_end"].as_i64()
        ),
        (Some(4), Some(3))
    );
});

both!(breakdown_ranks_children_and_totals, |b| {
    let w = world(b);
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=contraceptive_prevalence",
        Some(&w.county),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body["rows"].as_array().unwrap();
    let codes: Vec<&str> = rows
        .iter()
        .map(|r| r["org_unit"]["code"].as_str().unwrap())
        .collect();
    // Township 2: 6 of 6 (100%); township 1: 3 of 4 (75%).
    assert_eq!(codes, [township(0, 1), township(0, 0)]);
    assert_eq!(rows[0]["rank"], 1);
    assert_eq!(
        indicator(&rows[1], "contraceptive_prevalence")["value"],
        75.0
    );
    let total = sum(&[
        &village_a_october(),
        &village_b_october(),
        &village_c_october(),
    ]);
    assert_eq!(body_counts(&r.body["total"]), total);
    assert_eq!(r.body["total"]["org_unit"]["name"], "合计");
    // Ascending by birth rate: township 2 (no births) first.
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=crude_birth_rate&order=asc",
        Some(&w.county),
    );
    assert_eq!(r.body["rows"][0]["org_unit"]["code"], township(0, 1));
    // A township's villages, with an empty one: its birth-based rates do not apply.
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=policy_compliant_birth_rate",
        Some(&w.ts),
    );
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["org_unit"]["code"], va());
    assert_eq!(body_counts(&rows[0]), village_a_october());
    assert_eq!(body_counts(&rows[1]), village_b_october());
    assert_eq!(rows[2]["org_unit"]["code"], village(0, 0, 2));
    assert_eq!(rows[2]["rank"], Value::Null);
    assert_eq!(
        indicator(&rows[2], "policy_compliant_birth_rate")["value"],
        Value::Null
    );
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=nope",
        Some(&w.ts),
    );
    assert_eq!(r.status, 400);
});

both!(targets_are_set_by_the_level_above, |b| {
    let w = world(b);
    let t1 = township(0, 0);
    let put = |token: &str, body: Value| w.app.send("PUT", "/api/v1/targets", Some(token), &body);
    let r = put(
        &w.county,
        json!({"org_unit": t1, "year": 2026, "targets": [
        {"indicator": "contraceptive_prevalence", "value": 88.0},
        {"indicator": "policy_compliant_birth_rate", "direction": "at_least", "value": 94.0},
        {"indicator": "crude_death_rate", "value": 5000.0},
        {"indicator": "sex_ratio_at_birth", "value": 103.0, "upper": 107.0}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 4);
    // A band: direction between by default with an upper, which PUT answers and stores.
    let sr = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["indicator"] == "sex_ratio_at_birth")
        .unwrap();
    assert_eq!(
        (&sr["direction"], &sr["value"], &sr["upper"]),
        (&json!("between"), &json!(103.0), &json!(107.0))
    );
    let cp = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["indicator"] == "contraceptive_prevalence")
        .unwrap();
    assert_eq!(
        (&cp["direction"], &cp["upper"]),
        (&json!("at_least"), &Value::Null)
    );
    // A band needs its ceiling, not below its floor; a floor or a ceiling has no upper.
    for bad in [
        json!({"indicator": "sex_ratio_at_birth", "direction": "between", "value": 103.0}),
        json!({"indicator": "sex_ratio_at_birth", "value": 107.0, "upper": 103.0}),
        json!({"indicator": "contraceptive_prevalence", "direction": "at_least", "value": 88.0, "upper": 95.0}),
    ] {
        let r = put(
            &w.county,
            json!({"org_unit": t1, "year": 2026, "targets": [bad]}),
        );
        assert_eq!(r.status, 422, "{bad} {:?}", r.body);
    }
    // The township sets its villages' targets, not its own; the county not a village's.
    let r = put(
        &w.ts,
        json!({"org_unit": va(), "year": 2026, "targets": [
            {"indicator": "contraceptive_prevalence", "value": 60.0},
            {"indicator": "sex_ratio_at_birth", "direction": "between", "value": 95.0, "upper": 99.0},
            {"indicator": "first_child_share", "value": 40.0, "upper": 55.0}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = put(
        &w.ts,
        json!({"org_unit": t1, "year": 2026, "targets": [{"indicator": "contraceptive_prevalence", "value": 50.0}]}),
    );
    assert_eq!(r.status, 403);
    let r = put(
        &w.county,
        json!({"org_unit": va(), "year": 2026, "targets": [{"indicator": "contraceptive_prevalence", "value": 50.0}]}),
    );
    assert_eq!(r.status, 403);
    let r = put(
        &w.county,
        json!({"org_unit": township(1, 0), "year": 2026, "targets": [{"indicator": "contraceptive_prevalence", "value": 50.0}]}),
    );
    assert_eq!(r.status, 404);
    let r = put(
        &w.ts,
        json!({"org_unit": vc(), "year": 2026, "targets": [{"indicator": "contraceptive_prevalence", "value": 50.0}]}),
    );
    assert_eq!(r.status, 404);

    // Attainment on the township's report: 75% against at least 88%, 66.67% against 94%.
    let v = report(&w, &w.county, &format!("org_unit={t1}&period=2026-10"));
    let cp = indicator(&v, "contraceptive_prevalence");
    assert_eq!(cp["target"]["value"], 88.0);
    assert_eq!(
        cp["attainment"],
        json!({"met": false, "gap": -13.0, "missed": "below_floor"})
    );
    let pc = indicator(&v, "policy_compliant_birth_rate");
    assert_eq!(
        pc["attainment"],
        json!({"met": false, "gap": -27.33, "missed": "below_floor"})
    );
    // 1 boy to 2 girls: 50.00, 53 points under the band 103-107.
    let sr = indicator(&v, "sex_ratio_at_birth");
    assert_eq!(sr["value"], 50.0);
    assert_eq!(
        sr["target"],
        json!({"indicator": "sex_ratio_at_birth", "direction": "between", "value": 103.0, "upper": 107.0})
    );
    assert_eq!(
        sr["attainment"],
        json!({"met": false, "gap": -53.0, "missed": "below_floor"})
    );
    let dr = indicator(&v, "crude_death_rate");
    assert_eq!(dr["target"]["direction"], "at_most");
    assert_eq!(dr["attainment"]["met"], true);
    assert_eq!(indicator(&v, "check_rate")["target"], Value::Null);
    // The village: 66.67% against at least 60%.
    let v = report(&w, &w.ts, &format!("org_unit={}&period=2026-10", va()));
    assert_eq!(
        indicator(&v, "contraceptive_prevalence")["attainment"],
        json!({"met": true, "gap": 6.67, "missed": null})
    );
    // 1 boy to 1 girl: 100.00, one point over the band 95-99.
    assert_eq!(
        indicator(&v, "sex_ratio_at_birth")["attainment"],
        json!({"met": false, "gap": -1.0, "missed": "above_ceiling"})
    );
    // 1 first birth of 2: 50.00 in the band 40-55, 5 points from its ceiling.
    assert_eq!(
        indicator(&v, "first_child_share")["attainment"],
        json!({"met": true, "gap": 5.0, "missed": null})
    );
    // Another year has no targets.
    let v = report(&w, &w.ts, &format!("org_unit={}&period=2025-10", va()));
    assert_eq!(
        indicator(&v, "contraceptive_prevalence")["target"],
        Value::Null
    );
    // The list, from the county: its township's and the village's.
    let r = w.app.get("/api/v1/targets?year=2026", Some(&w.county));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 7);
    let bands: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["direction"] == "between")
        .map(|t| {
            (
                t["org_unit"].as_str().unwrap().to_string(),
                t["value"].as_f64(),
                t["upper"].as_f64(),
            )
        })
        .collect();
    assert_eq!(bands.len(), 3, "{bands:?}");
    assert!(bands.contains(&(va(), Some(95.0), Some(99.0))));
    let r = w.app.get("/api/v1/targets?year=2026", Some(&w.ts2));
    assert_eq!(r.body.as_array().unwrap().len(), 0);
    // Breakdown rows carry their own targets.
    let r = w
        .app
        .get("/api/v1/reports/breakdown?period=2026-10", Some(&w.county));
    let t1_row = &r.body["rows"][0];
    assert_eq!(
        indicator(t1_row, "contraceptive_prevalence")["target"]["value"],
        88.0
    );
});

both!(approval_return_lock_and_changes_after_approval, |b| {
    let w = world(b);
    let app = &w.app;
    let submit = |token: &str, village: &str| {
        app.post(
            "/api/v1/reports/submissions",
            Some(token),
            &json!({"org_unit": village, "period": "2026-10"}),
        )
    };
    let r = submit(&w.county, &va());
    assert_eq!(r.status, 403, "the county does not submit");
    let r = submit(&w.ts2, &va());
    assert_eq!(r.status, 404, "another township's village");
    let r = submit(&w.ts, &township(0, 0));
    assert_eq!(r.status, 422);
    let r = app.post(
        "/api/v1/reports/submissions",
        Some(&w.ts),
        &json!({"org_unit": va(), "period": "2099-01"}),
    );
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = submit(&w.ts, &va());
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id_a = r.body["id"].as_str().unwrap().to_string();
    let first = r.body["first_submitted_at"].clone();
    assert_eq!(r.body["status"], "submitted");
    assert_eq!(submit(&w.ts, &va()).status, 409);

    // Returned with a comment, resubmitted, approved.
    let ret = |token: &str, id: &str, comment: &str| {
        app.post(
            &format!("/api/v1/reports/submissions/{id}/return"),
            Some(token),
            &json!({"comment": comment}),
        )
    };
    assert_eq!(ret(&w.ts, &id_a, "  ").status, 422);
    assert_eq!(ret(&w.ts2, &id_a, "x").status, 404);
    let r = ret(&w.ts, &id_a, "出生登记缺一例");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["status"].as_str(), r.body["comment"].as_str()),
        (Some("returned"), Some("出生登记缺一例"))
    );
    let approve = |id: &str| {
        app.post(
            &format!("/api/v1/reports/submissions/{id}/approve"),
            Some(&w.ts),
            &json!({}),
        )
    };
    assert_eq!(
        approve(&id_a).status,
        409,
        "a returned report is not approved"
    );
    let r = submit(&w.ts, &va());
    assert_eq!(r.status, 201);
    assert_eq!(r.body["id"], id_a.as_str());
    assert_eq!(r.body["first_submitted_at"], first);
    let r = approve(&id_a);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert!(r.body["approved_seq"].as_i64().unwrap() > 0);

    // The county cannot lock while village B (and the empty village) are not approved.
    let lock = |unit: &str| {
        app.post(
            "/api/v1/reports/lock",
            Some(&w.county),
            &json!({"org_unit": unit, "period": "2026-10"}),
        )
    };
    let r = lock(&township(0, 0));
    assert_eq!(r.status, 409);
    assert!(
        r.body["message"].as_str().unwrap().contains(&vb()),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.post(
            "/api/v1/reports/lock",
            Some(&w.ts),
            &json!({"period": "2026-10"})
        )
        .status,
        403
    );
    for v in [vb(), village(0, 0, 2)] {
        let r = submit(&w.ts, &v);
        assert_eq!(r.status, 201);
        assert_eq!(approve(r.body["id"].as_str().unwrap()).status, 200);
    }
    let r = lock(&township(0, 0));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["locked"].as_array().unwrap().len(), 3);
    assert_eq!(ret(&w.ts, &id_a, "too late").status, 409);

    // Completeness: township 1's villages submitted (late: today is past 5 November) and one
    // made on time.
    {
        let mut c = app.conn();
        let on_time = chrono::NaiveDate::from_ymd_opt(2026, 11, 3)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        diesel::sql_query(format!(
            "UPDATE report_submissions SET first_submitted_at = {on_time} WHERE org_unit = '{}'",
            vb()
        ))
        .execute(&mut *c)
        .unwrap();
    }
    let r = app.get(
        "/api/v1/reports/completeness?period=2026-10",
        Some(&w.county),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let n = |k: &str| r.body[k].as_i64().unwrap();
    assert_eq!(
        (
            n("villages"),
            n("submitted"),
            n("on_time"),
            n("late"),
            n("missing"),
            n("locked")
        ),
        (6, 3, 1, 2, 3, 3)
    );
    assert_eq!(r.body["completeness"]["value"], 50.0);
    let rows = r.body["rows"].as_array().unwrap();
    let row_b = rows.iter().find(|x| x["org_unit"]["code"] == vb()).unwrap();
    assert_eq!(
        (row_b["status"].as_str(), row_b["on_time"].as_bool()),
        (Some("locked"), Some(true))
    );
    let row_c = rows.iter().find(|x| x["org_unit"]["code"] == vc()).unwrap();
    assert_eq!(row_c["status"], Value::Null);
    let r = app.get("/api/v1/reports/completeness?period=2026-10", Some(&w.ts2));
    assert_eq!(r.body["villages"], 3);
    assert_eq!(r.body["submitted"], 0);

    // A worker's phone syncs an October birth in village A after the lock, and one in November.
    let w1 = w.ids["W1"].clone();
    let late_birth = uuid::Uuid::now_v7().to_string();
    let november = uuid::Uuid::now_v7().to_string();
    let op = |seq: i64, id: &str, date: &str| {
        json!({"seq": seq, "op_id": uuid::Uuid::now_v7().to_string(), "entity": "birth", "id": id, "kind": "create",
        "set": {"org_unit": va(), "mother_id": w1, "birth_date": date, "sex": "male", "parity": 3, "within_policy": true},
        "recorded_at": "2026-11-20T08:00:00Z"})
    };
    let r = app.post(
        "/api/v1/sync/push",
        Some(&w.worker),
        &json!({"ops": [op(1, &late_birth, "2026-10-25"), op(2, &november, "2026-11-10")]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["status"], "applied", "{:?}", r.body);

    // The locked month keeps its approved figures and flags the change.
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-10", va()));
    assert_eq!(body_counts(&v), village_a_october());
    let ap = &v["approval"];
    assert_eq!(ap["submission"]["status"], "locked");
    assert_eq!(ap["changed_after_approval"], true);
    let changed: Vec<&str> = ap["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, [late_birth.as_str()]);
    assert!(
        ap["count_changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == "births" && c["approved"] == 2 && c["current"] == 3),
        "{ap:?}"
    );
    // Roll-ups use the frozen figures too; other periods are live.
    let v = report(
        &w,
        &w.county,
        &format!("org_unit={}&period=2026-10", township(0, 0)),
    );
    assert_eq!(
        body_counts(&v),
        sum(&[&village_a_october(), &village_b_october()])
    );
    assert_eq!(
        v["approval"]["locked_villages"].as_array().unwrap().len(),
        3
    );
    let v = report(&w, &w.county, "period=2026-10");
    assert_eq!(
        body_counts(&v),
        sum(&[
            &village_a_october(),
            &village_b_october(),
            &village_c_october()
        ])
    );
    assert_eq!(v["approval"]["changed_after_approval"], true);
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-Q4", va()));
    assert_eq!(body_counts(&v)["births"], 5);
    // The trend shows the locked month with its frozen figures too, as its report does.
    let tr = assert_trend_is_the_reports(
        &w.app,
        &w.county,
        &va(),
        "2026-11",
        2,
        &["sex_ratio_at_birth", "policy_compliant_birth_rate"],
    );
    // October's births are the two approved, not the three live ones.
    assert_eq!(tr["series"][1]["points"][0]["denominator"], 2, "{tr:?}");
    // The county's month cannot be locked while township 2's village has not reported.
    assert_eq!(lock(COUNTY).status, 409);
});

both!(
    exports_open_with_chinese_headers_and_nothing_outside_scope,
    |b| {
        let w = world(b);
        let app = &w.app;
        // The county's report as CSV: the two townships and the total.
        let (status, ct, data) =
            app.get_bytes("/api/v1/exports/report.csv?period=2026-10", &w.county);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&data));
        assert!(ct.unwrap().starts_with("text/csv"));
        let rows = csv_rows(&data);
        assert_eq!(&rows[0][..3], ["单位代码", "单位名称", "统计期"]);
        assert!(rows[0].contains(&"人口出生率(‰)".to_string()));
        assert!(rows[0].contains(&"已婚育龄妇女".to_string()));
        let codes: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            codes,
            [township(0, 0).as_str(), township(0, 1).as_str(), COUNTY]
        );
        assert_eq!(rows[3][1], "合计");
        let births = rows[0].iter().position(|h| h == "出生人数").unwrap();
        assert_eq!(rows[3][births], "3");
        let pcb = rows[0]
            .iter()
            .position(|h| h == "符合政策生育率/计划生育率(%)")
            .unwrap();
        assert_eq!(rows[2][pcb], "不适用");
        // As XLSX.
        let (status, _, data) =
            app.get_bytes("/api/v1/exports/report.xlsx?period=2026-10", &w.county);
        assert_eq!(status, 200);
        let sheet = xlsx_rows(data.clone(), Some("分单位报表"));
        assert_eq!(sheet[0][0], "单位代码");
        assert_eq!(sheet.len(), 4);
        assert_eq!(sheet[3][births], "3");
        let ind = xlsx_rows(data, Some("指标"));
        assert_eq!(
            ind[0][..5],
            ["指标", "单位", "分子", "分母", "数值"].map(String::from)
        );
        assert_eq!(
            ind.len(),
            1 + fieldsync::report::indicators::Indicator::ALL.len()
        );
        // One counting pass gives both sheets: the indicator sheet is the report's figures.
        let v = report(&w, &w.county, "period=2026-10");
        for (row, i) in ind[1..].iter().zip(v["indicators"].as_array().unwrap()) {
            // The Chinese name, with the other name beside it when there is one.
            let label = match i["also_zh"].as_str() {
                Some(a) => format!("{}/{a}", i["zh"].as_str().unwrap()),
                None => i["zh"].as_str().unwrap().to_string(),
            };
            assert_eq!(row[0], label);
            assert_eq!(row[2], i["numerator"].to_string(), "{row:?}");
            assert_eq!(row[3], i["denominator"].to_string(), "{row:?}");
        }
        // Another county's report: 404.
        let (status, _, _) = app.get_bytes(
            &format!(
                "/api/v1/exports/report.csv?period=2026-10&org_unit={}",
                outside()
            ),
            &w.county,
        );
        assert_eq!(status, 404);
        let (status, _, _) = app.get_bytes("/api/v1/exports/report.pdf?period=2026-10", &w.county);
        assert_eq!(status, 404);

        // The person ledger of township 1: villages A and B only, ID numbers masked.
        let (status, _, data) = app.get_bytes("/api/v1/exports/ledger/person.csv", &w.ts);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&data));
        let rows = csv_rows(&data);
        assert_eq!(&rows[0][..4], ["单位代码", "记录ID", "所属户", "姓名"]);
        assert_eq!(rows.len() - 1, 12 + 3);
        assert!(rows[1..].iter().all(|r| r[0] == va() || r[0] == vb()));
        let text = String::from_utf8(data).unwrap();
        assert!(text.contains("130131********0027"));
        assert!(!text.contains("130131199005010027"));
        assert!(text.contains("初婚") && text.contains("常住"));
        // Births of the county as XLSX: 10 live births in A (5), B (1) and C (4), none of the
        // other county.
        let (status, ct, data) = app.get_bytes("/api/v1/exports/ledger/birth.xlsx", &w.county);
        assert_eq!(status, 200);
        assert!(ct.unwrap().contains("spreadsheetml"));
        let sheet = xlsx_rows(data, Some("出生"));
        assert_eq!(
            sheet[0][..4],
            ["单位代码", "记录ID", "母亲", "婴儿"].map(String::from)
        );
        assert_eq!(sheet.len() - 1, 10);
        assert!(sheet[1..].iter().all(|r| r[0].starts_with(COUNTY)));
        // Streamed: no length up front.
        let resp = ureq::get(&app.url("/api/v1/exports/ledger/visit.csv"))
            .set("Authorization", &format!("Bearer {}", w.county))
            .call()
            .unwrap();
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        assert_eq!(resp.header("content-length"), None);
        // The CLI's writer (`fieldsync report`) makes the same file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xlsx");
        let oct = Period::parse_month("2026-10").unwrap();
        write_report_file(
            &app.db,
            COUNTY,
            &oct,
            ExportFormat::Xlsx,
            &path,
            Lang::Zh,
            Default::default(),
        )
        .unwrap();
        let sheet = xlsx_rows(std::fs::read(&path).unwrap(), Some("分单位报表"));
        assert_eq!(sheet.len(), 4);
        assert_eq!(sheet[3][births], "3");
        let path = dir.path().join("r.csv");
        write_report_file(
            &app.db,
            &va(),
            &oct,
            ExportFormat::Csv,
            &path,
            Lang::Zh,
            Default::default(),
        )
        .unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\xEF\xBB\xBF"));
        // Out of scope, unknown type, worker.
        let (status, _, _) = app.get_bytes(
            &format!("/api/v1/exports/ledger/person.csv?org_unit={}", vc()),
            &w.ts,
        );
        assert_eq!(status, 404);
        let (status, _, _) = app.get_bytes("/api/v1/exports/ledger/secret.csv", &w.ts);
        assert_eq!(status, 404);
        let (status, _, _) = app.get_bytes("/api/v1/exports/ledger/person.csv", &w.worker);
        assert_eq!(status, 403);
    }
);

both!(english_labels_with_lang_en_chinese_by_default, |b| {
    let w = world(b);
    let app = &w.app;
    // The report: labels of every indicator and count, Chinese unless lang=en; the figures do
    // not depend on the language.
    let zh = report(&w, &w.county, "period=2026-10");
    let en = report(&w, &w.county, "period=2026-10&lang=en");
    assert_eq!(zh["labels"]["lang"], "zh-CN");
    assert_eq!(en["labels"]["lang"], "en");
    assert_eq!(zh["labels"]["counts"]["married_wcba"], "已婚育龄妇女");
    assert_eq!(
        en["labels"]["counts"]["married_wcba"],
        "married women of childbearing age"
    );
    assert_eq!(zh["labels"]["indicators"]["crude_birth_rate"], "人口出生率");
    assert_eq!(
        en["labels"]["indicators"]["crude_birth_rate"],
        "crude birth rate"
    );
    assert_eq!(
        en["labels"]["indicators"]["contraceptive_prevalence"],
        "contraceptive prevalence"
    );
    for v in [&zh, &en] {
        assert_eq!(
            v["labels"]["counts"].as_object().unwrap().len(),
            COUNTS.len()
        );
        assert_eq!(
            v["labels"]["indicators"].as_object().unwrap().len(),
            ind::Indicator::ALL.len()
        );
    }
    assert_eq!(zh["counts"], en["counts"]);
    assert_eq!(zh["indicators"], en["indicators"]);
    let r = app.get("/api/v1/reports?period=2026-10&lang=fr", Some(&w.county));
    assert_eq!(r.status, 400, "{:?}", r.body);
    // The breakdown and the completeness.
    let r = app.get(
        "/api/v1/reports/breakdown?period=2026-10&lang=en",
        Some(&w.county),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["labels"]["counts"]["births"], "births");
    let r = app.get("/api/v1/reports/breakdown?period=2026-10", Some(&w.county));
    assert_eq!(r.body["labels"]["counts"]["births"], "出生人数");
    let r = app.get(
        "/api/v1/reports/completeness?period=2026-10&lang=en",
        Some(&w.county),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["lang"].as_str(),
            r.body["labels"]["submitted"].as_str(),
            r.body["labels"]["completeness"].as_str()
        ),
        (Some("en"), Some("submitted"), Some("completeness"))
    );
    let r = app.get(
        "/api/v1/reports/completeness?period=2026-10",
        Some(&w.county),
    );
    assert_eq!(
        (
            r.body["lang"].as_str(),
            r.body["labels"]["submitted"].as_str()
        ),
        (Some("zh-CN"), Some("已上报"))
    );

    // The report export in English: headers, the total row, not applicable; the same figures
    // as the Chinese file.
    let (status, _, data) = app.get_bytes(
        "/api/v1/exports/report.csv?period=2026-10&lang=en",
        &w.county,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&data));
    let rows = csv_rows(&data);
    assert_eq!(&rows[0][..3], ["org unit code", "org unit name", "period"]);
    assert!(
        rows[0].contains(&"crude birth rate (‰)".to_string()),
        "{:?}",
        rows[0]
    );
    assert!(rows[0].contains(&"sex ratio at birth".to_string()));
    let births = rows[0].iter().position(|h| h == "births").unwrap();
    assert_eq!(rows[3][births], "3");
    assert_eq!(rows[3][1], "total");
    let pcb = rows[0]
        .iter()
        .position(|h| h == "policy-compliant birth rate / family planning rate (%)")
        .unwrap();
    assert_eq!(rows[2][pcb], "n/a");
    let (_, _, zh_data) = app.get_bytes("/api/v1/exports/report.csv?period=2026-10", &w.county);
    let zh_rows = csv_rows(&zh_data);
    assert_eq!(zh_rows[0].len(), rows[0].len());
    assert!(zh_rows[0]
        .iter()
        .all(|h| !rows[0].contains(h) || h == "合计"));
    for (e, z) in rows[1..].iter().zip(&zh_rows[1..]) {
        for (i, (x, y)) in e.iter().zip(z).enumerate() {
            if i != 1 && x != "n/a" {
                assert_eq!(x, y, "column {}", rows[0][i]);
            }
        }
    }
    let (status, _, data) = app.get_bytes(
        "/api/v1/exports/report.xlsx?period=2026-10&lang=en",
        &w.county,
    );
    assert_eq!(status, 200);
    let sheet = xlsx_rows(data.clone(), Some("breakdown"));
    assert_eq!(sheet[0], rows[0]);
    assert_eq!(sheet[3][births], "3");
    let ind = xlsx_rows(data, Some("indicators"));
    assert_eq!(
        ind[0],
        [
            "indicator",
            "unit",
            "numerator",
            "denominator",
            "value",
            "target direction",
            "target",
            "met",
            "gap",
            "target ceiling",
            "side missed"
        ]
        .map(String::from)
    );
    assert_eq!(ind[1][0], "crude birth rate");
    assert_eq!(
        ind.len(),
        1 + fieldsync::report::indicators::Indicator::ALL.len()
    );

    // Ledgers: English headers and coded values; Chinese by default.
    let (status, _, data) = app.get_bytes("/api/v1/exports/ledger/person.csv?lang=en", &w.ts);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&data));
    let rows = csv_rows(&data);
    assert_eq!(
        &rows[0][..4],
        ["org unit code", "record id", "household", "name"]
    );
    assert_eq!(rows.len() - 1, 12 + 3);
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains("first marriage") && !text.contains("初婚"));
    assert!(text.contains("130131********0027"));
    let (status, _, data) = app.get_bytes("/api/v1/exports/ledger/birth.xlsx?lang=en", &w.county);
    assert_eq!(status, 200);
    let sheet = xlsx_rows(data, Some("birth"));
    assert_eq!(
        sheet[0][..2],
        ["org unit code", "record id"].map(String::from)
    );
    assert_eq!(sheet.len() - 1, 10);
    let (_, _, data) = app.get_bytes("/api/v1/exports/ledger/birth.xlsx", &w.county);
    assert_eq!(xlsx_rows(data, Some("出生"))[0][0], "单位代码");
});

// A village's month report is submitted by its field worker; the township approves or
// returns it; the county locks the month.
both!(a_village_worker_submits_its_own_month, |b| {
    let w = world(b);
    let app = &w.app;
    add_user(app, "wb", Role::Worker, None, &[vb()]);
    let wb = session(app, "wb").access;
    let submit = |token: &str, village: &str| {
        app.post(
            "/api/v1/reports/submissions",
            Some(token),
            &json!({"org_unit": village, "period": "2026-10"}),
        )
    };
    // Not another village's, not a township's.
    assert_eq!(submit(&w.worker, &vb()).status, 404);
    assert_eq!(submit(&wb, &va()).status, 404);
    assert_eq!(submit(&w.worker, &township(0, 0)).status, 404);
    // Village A's worker submits A's month.
    let r = submit(&w.worker, &va());
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let worker_id = app.get("/api/v1/me", Some(&w.worker)).body["user"]["id"].clone();
    assert_eq!(r.body["submitted_by"], worker_id);
    assert_eq!(r.body["status"], "submitted");
    assert_eq!(submit(&w.worker, &va()).status, 409);
    // The worker neither decides nor locks.
    let decide = |token: &str, what: &str, body: Value| {
        app.post(
            &format!("/api/v1/reports/submissions/{id}/{what}"),
            Some(token),
            &body,
        )
    };
    assert_eq!(decide(&w.worker, "approve", json!({})).status, 403);
    assert_eq!(
        decide(&w.worker, "return", json!({"comment": "x"})).status,
        403
    );
    let lock = |token: &str| {
        app.post(
            "/api/v1/reports/lock",
            Some(token),
            &json!({"org_unit": township(0, 0), "period": "2026-10"}),
        )
    };
    assert_eq!(lock(&w.worker).status, 403);
    // Another township cannot decide on it; its own returns it, the worker resubmits, the
    // township approves.
    assert_eq!(
        decide(&w.ts2, "return", json!({"comment": "x"})).status,
        404
    );
    let r = decide(&w.ts, "return", json!({"comment": "死亡登记缺日期"}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "returned");
    let r = submit(&w.worker, &va());
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["status"], "submitted");
    let r = decide(&w.ts, "approve", json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(submit(&w.worker, &va()).status, 409, "approved: not again");
    // Village B's worker submits B's; the township submits the empty village on behalf of its
    // worker; both approved, the county locks the township's month.
    let r = submit(&wb, &vb());
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id_b = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(lock(&w.county).status, 409, "B not approved yet");
    assert_eq!(
        app.post(
            &format!("/api/v1/reports/submissions/{id_b}/approve"),
            Some(&w.ts),
            &json!({})
        )
        .status,
        200
    );
    let r = submit(&w.ts, &village(0, 0, 2));
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id_e = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.post(
            &format!("/api/v1/reports/submissions/{id_e}/approve"),
            Some(&w.ts),
            &json!({})
        )
        .status,
        200
    );
    assert_eq!(lock(&w.ts).status, 403, "the township does not lock");
    let r = lock(&w.county);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["locked"].as_array().unwrap().len(), 3);
    let v = report(&w, &w.county, &format!("org_unit={}&period=2026-10", va()));
    assert_eq!(v["approval"]["submission"]["status"], "locked");
    assert_eq!(v["approval"]["submission"]["submitted_by"], worker_id);
    assert_eq!(body_counts(&v), village_a_october());
});

/// Runs the real binary on `app`'s database; its output, and whether it succeeded.
fn fieldsync_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::fieldsync_command(dir.path())
        .arg("--database-url")
        .arg(&app.database_url)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

both!(report_cli_writes_report_and_ledger_files, |b| {
    let w = world(b);
    let app = &w.app;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (ok, text) = fieldsync_cli(app, args);
        assert!(ok, "{args:?}: {text}");
        text
    };
    // The county's October as CSV: a row per township and the total, Chinese headers.
    run(&[
        "report",
        "--org-unit",
        COUNTY,
        "--period",
        "2026-10",
        "--out",
        &path("m.csv"),
    ]);
    let rows = csv_rows(&std::fs::read(path("m.csv")).unwrap());
    assert_eq!(&rows[0][..3], ["单位代码", "单位名称", "统计期"]);
    let codes: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        codes,
        [township(0, 0).as_str(), township(0, 1).as_str(), COUNTY]
    );
    let births = rows[0].iter().position(|h| h == "出生人数").unwrap();
    let married = rows[0].iter().position(|h| h == "已婚育龄妇女").unwrap();
    // Townships 1 and 2 and the county: births 3, 0, 3; married women 4, 6, 10.
    let col = |rows: &[Vec<String>], i: usize| -> Vec<String> {
        rows[1..].iter().map(|r| r[i].clone()).collect()
    };
    assert_eq!(col(&rows, births), ["3", "0", "3"]);
    assert_eq!(col(&rows, married), ["4", "6", "10"]);
    assert_eq!(rows[3][2], "2026-10");
    // The same as XLSX, in English, by the file name.
    run(&[
        "report",
        "--org-unit",
        COUNTY,
        "--period",
        "2026-10",
        "--lang",
        "en",
        "--out",
        &path("m.xlsx"),
    ]);
    let data = std::fs::read(path("m.xlsx")).unwrap();
    let sheet = xlsx_rows(data.clone(), Some("breakdown"));
    assert_eq!(&sheet[0][..3], ["org unit code", "org unit name", "period"]);
    let en_births = sheet[0].iter().position(|h| h == "births").unwrap();
    assert_eq!(col(&sheet, en_births), ["3", "0", "3"]);
    assert_eq!(
        xlsx_rows(data, Some("indicators")).len(),
        1 + ind::Indicator::ALL.len()
    );
    // A date range: 15 September to 5 October. Township 1: K1 (5 October); township 2: WC1's
    // child (15 September).
    run(&[
        "report",
        "--org-unit",
        COUNTY,
        "--from",
        "2026-09-15",
        "--to",
        "2026-10-05",
        "--format",
        "xlsx",
        "--out",
        &path("r.bin"),
    ]);
    let sheet = xlsx_rows(std::fs::read(path("r.bin")).unwrap(), Some("分单位报表"));
    assert_eq!(col(&sheet, births), ["1", "1", "2"]);
    assert_eq!(sheet[3][2], "2026-09-15..2026-10-05");
    // Year to date for village A (one row per group: none, so the village's own row).
    run(&[
        "report",
        "--org-unit",
        &va(),
        "--period",
        "2026-10",
        "--kind",
        "ytd",
        "--out",
        &path("y.csv"),
    ]);
    let rows = csv_rows(&std::fs::read(path("y.csv")).unwrap());
    assert_eq!(rows.last().unwrap()[births], "2");

    // Ledgers: township 1's persons as CSV (villages A and B only, ID numbers masked), the
    // county's births as XLSX in English.
    let text = run(&[
        "report",
        "--ledger",
        "person",
        "--org-unit",
        &township(0, 0),
        "--format",
        "csv",
        "--out",
        &path("p.csv"),
    ]);
    assert!(text.contains("15 records"), "{text}");
    let data = std::fs::read(path("p.csv")).unwrap();
    let rows = csv_rows(&data);
    assert_eq!(&rows[0][..4], ["单位代码", "记录ID", "所属户", "姓名"]);
    assert_eq!(rows.len() - 1, 12 + 3);
    assert!(rows[1..].iter().all(|r| r[0] == va() || r[0] == vb()));
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains("130131********0027") && !text.contains("130131199005010027"));
    run(&[
        "report",
        "--ledger",
        "birth",
        "--org-unit",
        COUNTY,
        "--lang",
        "en",
        "--out",
        &path("b.xlsx"),
    ]);
    let sheet = xlsx_rows(std::fs::read(path("b.xlsx")).unwrap(), Some("birth"));
    assert_eq!(
        sheet[0][..3],
        ["org unit code", "record id", "mother"].map(String::from)
    );
    assert_eq!(sheet.len() - 1, 10);
    assert!(sheet[1..].iter().all(|r| r[0].starts_with(COUNTY)));
    // The CLI's ledger exports are audited like the API's.
    let mut c = app.conn();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        detail: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT detail FROM audit_log WHERE action = 'ledger_export' AND actor_role = 'cli' ORDER BY id",
    )
    .load(&mut *c)
    .unwrap();
    let details: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r.detail.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        details
            .iter()
            .map(|d| (d["entity"].as_str().unwrap(), d["rows"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        [("person", 15), ("birth", 10)]
    );
    // Refused: no such record type, no such unit, a period and a range at once, no period.
    for args in [
        vec![
            "report",
            "--ledger",
            "secret",
            "--org-unit",
            COUNTY,
            "--out",
            "x.csv",
        ],
        vec![
            "report",
            "--ledger",
            "person",
            "--org-unit",
            "999999",
            "--out",
            "x.csv",
        ],
        vec![
            "report",
            "--org-unit",
            COUNTY,
            "--period",
            "2026-10",
            "--from",
            "2026-09-15",
            "--to",
            "2026-10-05",
            "--out",
            "x.csv",
        ],
        vec!["report", "--org-unit", COUNTY, "--out", "x.csv"],
        vec![
            "report",
            "--org-unit",
            COUNTY,
            "--period",
            "2026-10",
            "--lang",
            "fr",
            "--out",
            "x.csv",
        ],
    ] {
        let (ok, text) = fieldsync_cli(app, &args);
        assert!(!ok, "{args:?}: {text}");
    }
});

// The audit row of a ledger export says what left the server: the record type, the org unit
// whose subtree was exported, the filter and the number of rows.
both!(ledger_export_audit_names_scope_and_count, |b| {
    let w = world(b);
    let app = &w.app;
    add_user(app, "admin", Role::Admin, None, &[]);
    let admin = session(app, "admin").access;
    let (status, _, data) = app.get_bytes("/api/v1/exports/ledger/person.csv", &w.ts);
    assert_eq!(status, 200);
    assert_eq!(csv_rows(&data).len() - 1, 15);
    let (status, _, _) = app.get_bytes(
        &format!(
            "/api/v1/exports/ledger/birth.xlsx?org_unit={}&lang=en",
            vc()
        ),
        &w.county,
    );
    assert_eq!(status, 200);
    // Refused exports leave no row.
    let (status, _, _) = app.get_bytes(
        &format!("/api/v1/exports/ledger/person.csv?org_unit={}", vc()),
        &w.ts,
    );
    assert_eq!(status, 404);
    let r = app.get("/api/v1/audit?action=ledger_export", Some(&admin));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Newest first: the county's export of village C's births (WC1's and WC2's four), then
    // the township's persons (12 in village A, 3 in B).
    let parse = |v: &Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };
    let county_id = app.get("/api/v1/me", Some(&w.county)).body["user"]["id"].clone();
    let ts_id = app.get("/api/v1/me", Some(&w.ts)).body["user"]["id"].clone();
    assert_eq!(rows[0]["actor_user"], county_id);
    assert_eq!(rows[0]["target_kind"], "org_unit");
    assert_eq!(parse(&rows[0]["target_ids"]), json!([vc()]));
    let d = parse(&rows[0]["detail"]);
    assert_eq!(
        (
            d["entity"].as_str(),
            d["org_unit"].as_str(),
            d["rows"].as_i64(),
            d["format"].as_str(),
            d["lang"].as_str()
        ),
        (
            Some("birth"),
            Some(vc().as_str()),
            Some(4),
            Some("xlsx"),
            Some("en")
        )
    );
    assert!(d["filter"].as_str().is_some_and(|f| !f.is_empty()));
    assert_eq!(rows[1]["actor_user"], ts_id);
    assert_eq!(parse(&rows[1]["target_ids"]), json!([township(0, 0)]));
    let d = parse(&rows[1]["detail"]);
    assert_eq!(
        (
            d["entity"].as_str(),
            d["rows"].as_i64(),
            d["format"].as_str(),
            d["lang"].as_str()
        ),
        (Some("person"), Some(15), Some("csv"), Some("zh-CN"))
    );
});

/// DOMAIN.md's worked examples, through the report's indicator computation.
#[test]
fn worked_examples_through_the_report() {
    let mut c: Counts = COUNTS.iter().map(|d| (d.key.to_string(), 0)).collect();
    for (k, v) in [
        ("contraceptive_users", 1096),
        ("married_wcba", 1206),
        ("births", 110),
        ("births_within_policy", 106),
        ("check_women_checked", 1623),
        ("check_women_due", 1836),
    ] {
        c.insert(k.into(), v);
    }
    let year = Period::parse(None, Some("2025"), None, None).unwrap();
    let r: BTreeMap<&str, Option<f64>> = rates(&c, &year)
        .into_iter()
        .map(|(i, r)| (i.code(), r.value))
        .collect();
    assert_eq!(r["contraceptive_prevalence"], Some(90.88));
    assert_eq!(r["policy_compliant_birth_rate"], Some(96.36));
    assert_eq!(r["check_coverage"], Some(88.4));
    assert_eq!(r["crude_birth_rate"], None, "no population: not applicable");
    c.insert("births".into(), 302);
    c.insert("births_within_policy".into(), 298);
    assert_eq!(rates(&c, &year)[3].1.value, Some(98.68));
    assert_eq!(
        ind::policy_compliant_birth_rate(298, 302).value,
        Some(98.68)
    );
}

// A total row (合计) is the report's figure, never a sum of distinct-person counts over its
// children: a woman checked in two villages is one woman due a check in the township.
both!(
    total_rows_equal_the_report_for_a_woman_in_two_villages,
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
        let (a, vb) = (va(), vb());
        let mut f = Fixture::new();
        let w = f.person("W", &a, p("female", "1990-01-01", json!({})));
        let x = f.person("X", &a, p("female", "1992-01-01", json!({})));
        // W: checked in her village A on the 6th and in village B on the 11th; X: due in A, not seen.
        for (org, who, kind, due, done) in [
            (&a, &w, "iud_check", "2026-10-05", Some("2026-10-06")),
            (&vb, &w, "pregnancy_check", "2026-10-10", Some("2026-10-11")),
            (&a, &x, "iud_check", "2026-10-20", None),
        ] {
            let mut v = json!({"person_id": who, "kind": kind, "due_date": due});
            if let Some(d) = done {
                v["visit_date"] = json!(d);
            }
            f.add(Entity::Visit, org, v);
        }
        f.store(&app);
        let (ts, county) = (session(&app, "ts").access, session(&app, "cs").access);
        // (women due, women checked): village A 2/1, village B 1/1, the township and county 2/1.
        let pair = |c: &Value| {
            (
                c["check_women_due"].as_i64().unwrap(),
                c["check_women_checked"].as_i64().unwrap(),
            )
        };
        for (token, unit) in [(&ts, township(0, 0)), (&county, COUNTY.to_string())] {
            for period in ["2026-10", "2026"] {
                let q = format!("period={period}&org_unit={unit}");
                let r = app.get(&format!("/api/v1/reports?{q}"), Some(token));
                assert_eq!(r.status, 200, "{:?}", r.body);
                assert_eq!(pair(&r.body["counts"]), (2, 1), "{q}");
                assert_eq!(indicator(&r.body, "check_coverage")["value"], 50.0);
                let bd = app.get(&format!("/api/v1/reports/breakdown?{q}"), Some(token));
                assert_eq!(bd.status, 200, "{:?}", bd.body);
                assert_eq!(pair(&bd.body["total"]["counts"]), (2, 1), "{q}");
                assert_eq!(
                    indicator(&bd.body["total"], "check_coverage")["value"],
                    50.0
                );
                if unit != COUNTY {
                    let rows: Vec<(String, (i64, i64))> = bd.body["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| r["counts"]["check_women_due"] != 0)
                        .map(|r| {
                            (
                                r["org_unit"]["code"].as_str().unwrap().to_string(),
                                pair(&r["counts"]),
                            )
                        })
                        .collect();
                    assert_eq!(rows, [(a.clone(), (2, 1)), (vb.clone(), (1, 1))]);
                }
                for ext in ["csv", "xlsx"] {
                    let (status, _, data) =
                        app.get_bytes(&format!("/api/v1/exports/report.{ext}?{q}"), token);
                    assert_eq!(status, 200);
                    let rows = if ext == "csv" {
                        csv_rows(&data)
                    } else {
                        xlsx_rows(data, Some("分单位报表"))
                    };
                    let col = |h: &str| rows[0].iter().position(|x| x == h).unwrap();
                    let total = rows.iter().find(|r| r[1] == "合计").expect("total row");
                    assert_eq!(total[col("应查人数")], "2", "{ext} {q}");
                    assert_eq!(total[col("实查人数")], "1", "{ext} {q}");
                }
            }
        }
    }
);

// Persons away (流出) at period end by destination, and the 办证率 over the married women of
// childbearing age away at period end: stocks at the report date, not the period's flows.
both!(
    persons_away_and_certificate_rate_are_stocks_at_period_end,
    |b| {
        let app = spawn_app(b);
        seed_tree(&app);
        add_user(&app, "cs", Role::CountySupervisor, Some(COUNTY), &[]);
        let (a, vb, c) = (va(), vb(), vc());
        let mut f = Fixture::new();
        let married =
            |sex: &str, born: &str| p(sex, born, json!({"marital_status": "first_marriage"}));
        let out = |f: &mut Fixture, org: &str, who: &str, on: &str, place: &str, cert: bool| {
            let mut v =
                json!({"person_id": who, "direction": "out", "moved_on": on, "place": place});
            if cert {
                v["certificate_no"] = json!("HY");
            }
            f.add(Entity::Migration, org, v);
        };
        // Village A: P1 away since 2025 (in the province, certificate); P2 left on 15 October
        // (outside, none) and comes back on 10 November; P3, a man, away outside since March; P4
        // left in February and came back in September.
        let p1 = f.person("P1", &a, married("female", "1990-01-01"));
        out(&mut f, &a, &p1, "2025-06-01", "within_province", true);
        let p2 = f.person("P2", &a, married("female", "1988-01-01"));
        out(&mut f, &a, &p2, "2026-10-15", "outside_province", false);
        f.add(
            Entity::Migration,
            &a,
            json!({"person_id": p2, "direction": "in", "moved_on": "2026-11-10"}),
        );
        let p3 = f.person("P3", &a, married("male", "1985-01-01"));
        out(&mut f, &a, &p3, "2026-03-01", "outside_province", false);
        let p4 = f.person("P4", &a, married("female", "1991-01-01"));
        out(&mut f, &a, &p4, "2026-02-01", "within_province", true);
        f.add(
            Entity::Migration,
            &a,
            json!({"person_id": p4, "direction": "in", "moved_on": "2026-09-01"}),
        );
        // Village B: P5 left on 20 October (outside, certificate); P6 unmarried, in the province.
        let p5 = f.person("P5", &vb, married("female", "1995-01-01"));
        out(&mut f, &vb, &p5, "2026-10-20", "outside_province", true);
        let p6 = f.person(
            "P6",
            &vb,
            p(
                "female",
                "2000-01-01",
                json!({"marital_status": "unmarried"}),
            ),
        );
        out(&mut f, &vb, &p6, "2026-05-01", "within_province", false);
        // Village C (the other township): P7 away outside since 2024 without a certificate; P8,
        // 56, away outside with one; P9 left in January and died in August.
        let p7 = f.person("P7", &c, married("female", "1980-03-01"));
        out(&mut f, &c, &p7, "2024-01-01", "outside_province", false);
        let p8 = f.person("P8", &c, married("female", "1970-01-01"));
        out(&mut f, &c, &p8, "2025-01-01", "outside_province", true);
        let p9 = f.person("P9", &c, married("female", "1990-01-01"));
        out(&mut f, &c, &p9, "2026-01-01", "within_province", true);
        f.add(
            Entity::Death,
            &c,
            json!({"person_id": p9, "death_date": "2026-08-01"}),
        );
        f.store(&app);
        let county = session(&app, "cs").access;

        // (within the province, outside, married women away, of whom certified), 办证率.
        let t0 = township(0, 0);
        let cases: [(&str, &str, [i64; 4], Option<f64>); 10] = [
            ("2026-10", a.as_str(), [1, 2, 2, 1], Some(50.0)),
            ("2026-10", vb.as_str(), [1, 1, 1, 1], Some(100.0)),
            ("2026-10", t0.as_str(), [2, 3, 3, 2], Some(66.67)),
            ("2026-10", c.as_str(), [0, 2, 1, 0], Some(0.0)),
            ("2026-10", COUNTY, [2, 5, 4, 2], Some(50.0)),
            // 31 December: P2 is back.
            ("2026", a.as_str(), [1, 1, 1, 1], Some(100.0)),
            ("2026", t0.as_str(), [2, 2, 2, 2], Some(100.0)),
            ("2026", COUNTY, [2, 4, 3, 2], Some(66.67)),
            // 31 August: P4 still away (back on 1 September), P6 away, P9 dead, P2 and P5 not
            // yet gone.
            ("2026-08", t0.as_str(), [3, 1, 2, 2], Some(100.0)),
            ("2026-08", COUNTY, [3, 3, 3, 2], Some(66.67)),
        ];
        for (period, unit, n, rate) in cases {
            let r = app.get(
                &format!("/api/v1/reports?period={period}&org_unit={unit}"),
                Some(&county),
            );
            assert_eq!(r.status, 200, "{:?}", r.body);
            let k = &r.body["counts"];
            let got = [
                "away_end_within_province",
                "away_end_outside_province",
                "away_married_women_end",
                "away_married_women_certified_end",
            ]
            .map(|key| k[key].as_i64().unwrap());
            assert_eq!(got, n, "{period} {unit}");
            let cr = indicator(&r.body, "certificate_rate");
            assert_eq!(
                (
                    cr["numerator"].as_i64(),
                    cr["denominator"].as_i64(),
                    cr["value"].as_f64()
                ),
                (Some(n[3]), Some(n[2]), rate),
                "{period} {unit}"
            );
        }
        // The county's October file: the total row carries the same stock.
        let (status, _, data) = app.get_bytes("/api/v1/exports/report.csv?period=2026-10", &county);
        assert_eq!(status, 200);
        let rows = csv_rows(&data);
        let col = |h: &str| rows[0].iter().position(|x| x == h).expect(h);
        let total = rows.iter().find(|r| r[1] == "合计").unwrap();
        assert_eq!(total[col("期末流出(省内)")], "2");
        assert_eq!(total[col("期末流出(省外)")], "5");
        assert_eq!(total[col("期末流出已婚育龄妇女")], "4");
        assert_eq!(total[col("期末流出已婚育龄妇女办证")], "2");
    }
);

// A past period's report is taken as of its end: a wedding, a departure and a death recorded
// after October leave October's report as it was, and show in November's.
both!(a_past_period_is_unchanged_by_later_status_changes, |b| {
    let w = world(b);
    let units = [va(), township(0, 0), COUNTY.to_string()];
    let snapshot = |period: &str| -> Vec<Value> {
        units
            .iter()
            .map(|u| {
                let r = report(&w, &w.county, &format!("period={period}&org_unit={u}"));
                json!([r["counts"], r["indicators"]])
            })
            .collect()
    };
    let october = snapshot("2026-10");
    let november = report(&w, &w.county, &format!("period=2026-11&org_unit={}", va()));
    {
        let mut c = w.app.conn();
        let mut edit = |id: &str, entity: Entity, set: Value| {
            let mut row = records::load_one(&mut c, entity, id).unwrap().unwrap();
            for (k, v) in set.as_object().unwrap() {
                row.fields.insert(k.clone(), v.clone());
            }
            row.version += 1;
            row.change_seq += 10_000;
            records::upsert(&mut c, &[row]).unwrap();
        };
        // W4 (divorced) remarries on 20 November.
        edit(
            &w.ids["W4"],
            Entity::Person,
            json!({"marital_status": "remarried", "marriage_date": "2026-11-20"}),
        );
        // W1 leaves on 5 November; M1 dies on 3 November.
        edit(
            &w.ids["W1"],
            Entity::Person,
            json!({"residence": "moved_out"}),
        );
        edit(&w.ids["M1"], Entity::Person, json!({"alive": false}));
    }
    let mut f = Fixture::new();
    f.seq = 20_000;
    f.add(
        Entity::Migration,
        &va(),
        json!({"person_id": w.ids["W1"], "direction": "out", "moved_on": "2026-11-05"}),
    );
    f.add(
        Entity::Death,
        &va(),
        json!({"person_id": w.ids["M1"], "death_date": "2026-11-03"}),
    );
    f.store(&w.app);
    assert_eq!(snapshot("2026-10"), october);
    // November sees all three: W4 married and W1 away (still married women: W1 out, W4 in).
    let after = report(&w, &w.county, &format!("period=2026-11&org_unit={}", va()));
    let n = |r: &Value, k: &str| r["counts"][k].as_i64().unwrap();
    assert_eq!(
        n(&after, "population_end"),
        n(&november, "population_end") - 2
    );
    assert_eq!(
        n(&after, "moved_out_end"),
        n(&november, "moved_out_end") + 1
    );
    assert_eq!(n(&after, "deaths"), n(&november, "deaths") + 1);
    assert_eq!(n(&after, "married_wcba"), n(&november, "married_wcba"));
    assert_eq!(
        n(&after, "away_married_women_end"),
        n(&november, "away_married_women_end") + 1
    );
});

both!(
    approval_history_lists_each_action_with_who_role_and_reason,
    |b| {
        let w = world(b);
        let app = &w.app;
        let submit = || {
            app.post(
                "/api/v1/reports/submissions",
                Some(&w.ts),
                &json!({"org_unit": va(), "period": "2026-10"}),
            )
        };
        let r = submit();
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        let act = |what: &str, body: Value| {
            app.post(
                &format!("/api/v1/reports/submissions/{id}/{what}"),
                Some(&w.ts),
                &body,
            )
        };
        assert_eq!(
            act("return", json!({"comment": "出生登记缺一例"})).status,
            200
        );
        // A refused action leaves no trace.
        assert_eq!(act("approve", json!({})).status, 409);
        assert_eq!(submit().status, 201);
        assert_eq!(act("approve", json!({})).status, 200);
        for v in [vb(), village(0, 0, 2)] {
            let r = app.post(
                "/api/v1/reports/submissions",
                Some(&w.ts),
                &json!({"org_unit": v, "period": "2026-10"}),
            );
            let other = r.body["id"].as_str().unwrap().to_string();
            let r = app.post(
                &format!("/api/v1/reports/submissions/{other}/approve"),
                Some(&w.ts),
                &json!({}),
            );
            assert_eq!(r.status, 200);
        }
        let r = app.post(
            "/api/v1/reports/lock",
            Some(&w.county),
            &json!({"org_unit": township(0, 0), "period": "2026-10"}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);

        let path = format!("/api/v1/reports/submissions/{id}/history");
        for token in [&w.ts, &w.county] {
            let r = app.get(&path, Some(token));
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["submission"]["status"], "locked");
            let events = r.body["events"].as_array().unwrap();
            let seen: Vec<(&str, &str, &str, &str, Option<&str>)> = events
                .iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap(),
                        e["status"].as_str().unwrap(),
                        e["username"].as_str().unwrap(),
                        e["role"].as_str().unwrap(),
                        e["reason"].as_str(),
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("submit", "submitted", "ts", "township_supervisor", None),
                    (
                        "return",
                        "returned",
                        "ts",
                        "township_supervisor",
                        Some("出生登记缺一例")
                    ),
                    ("resubmit", "submitted", "ts", "township_supervisor", None),
                    ("approve", "approved", "ts", "township_supervisor", None),
                    ("lock", "locked", "cs", "county_supervisor", None),
                ]
            );
            let times: Vec<i64> = events.iter().map(|e| e["at"].as_i64().unwrap()).collect();
            assert!(times.windows(2).all(|p| p[0] <= p[1]), "{times:?}");
        }
        // Another township's supervisor does not find it; a worker may not ask; no such id is 404.
        assert_eq!(app.get(&path, Some(&w.ts2)).status, 404);
        assert_eq!(app.get(&path, Some(&w.worker)).status, 403);
        assert_eq!(
            app.get("/api/v1/reports/submissions/nope/history", Some(&w.ts))
                .status,
            404
        );
    }
);

both!(breakdown_worst_first_respects_floor_ceiling_and_band, |b| {
    let w = world(b);
    let (t1, t2) = (township(0, 0), township(0, 1));
    let order = |sort: &str| -> Vec<String> {
        let r = w.app.get(
            &format!("/api/v1/reports/breakdown?period=2026-10&sort={sort}&order=worst"),
            Some(&w.county),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["org_unit"]["code"].as_str().unwrap().to_string())
            .collect()
    };
    // No targets: a rate pushed up lowest first (township 1: 75%, township 2: 100%); a rate
    // held down highest first (township 2 has no births).
    assert_eq!(order("contraceptive_prevalence"), [t1.clone(), t2.clone()]);
    assert_eq!(order("crude_birth_rate"), [t1.clone(), t2.clone()]);
    let set = |unit: &str, target: Value| {
        let r = w.app.send(
            "PUT",
            "/api/v1/targets",
            Some(&w.county),
            &json!({"org_unit": unit, "year": 2026, "targets": [target]}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    };
    // A ceiling township 2 exceeds by 10 points comes before a floor township 1 meets.
    set(
        &t1,
        json!({"indicator": "contraceptive_prevalence", "direction": "at_least", "value": 70.0}),
    );
    set(
        &t2,
        json!({"indicator": "contraceptive_prevalence", "direction": "at_most", "value": 90.0}),
    );
    assert_eq!(order("contraceptive_prevalence"), [t2.clone(), t1.clone()]);
    // A band: township 1 inside 70..80, township 2 above 80..99.
    set(
        &t1,
        json!({"indicator": "contraceptive_prevalence", "value": 70.0, "upper": 80.0}),
    );
    set(
        &t2,
        json!({"indicator": "contraceptive_prevalence", "value": 80.0, "upper": 99.0}),
    );
    assert_eq!(order("contraceptive_prevalence"), [t2.clone(), t1.clone()]);
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=contraceptive_prevalence&order=worst",
        Some(&w.county),
    );
    assert_eq!(r.body["rows"][0]["rank"], 1);
    assert_eq!(
        r.body["rows"][0]["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["indicator"] == "contraceptive_prevalence")
            .unwrap()["attainment"]["met"],
        false
    );
    let r = w.app.get(
        "/api/v1/reports/breakdown?period=2026-10&sort=contraceptive_prevalence&order=worse",
        Some(&w.county),
    );
    assert_eq!(r.status, 400);
});

// The breakdown's total row comes from the same statements as its rows (summed), with only the
// distinct-person counts counted again over the whole unit: on the demo county, for a county and
// a township and every kind of period, it is the report's every figure.
both!(breakdown_total_is_the_report_on_the_demo_county, |b| {
    let app = spawn_app(b);
    fieldsync::demo::load(&app.db, 2026, true).expect("demo loads");
    let county = fieldsync::demo::COUNTY_CODE;
    add_user(&app, "cs", Role::CountySupervisor, Some(county), &[]);
    let token = session(&app, "cs").access;
    let all = |v: &Value| -> Counts { serde_json::from_value(v["counts"].clone()).unwrap() };
    for unit in [county, "130131102"] {
        for period in [
            "period=2026-10",
            "period=2026-Q3",
            "kind=ytd&period=2026-10",
            "period=2026",
            "from=2026-03-01&to=2026-05-15",
        ] {
            let q = format!("{period}&org_unit={unit}");
            let r = app.get(&format!("/api/v1/reports?{q}"), Some(&token));
            assert_eq!(r.status, 200, "{:?}", r.body);
            let bd = app.get(&format!("/api/v1/reports/breakdown?{q}"), Some(&token));
            assert_eq!(bd.status, 200, "{:?}", bd.body);
            let report = all(&r.body);
            assert!(
                report["married_wcba"] > 0 && report["population_end"] > 0,
                "{q}"
            );
            if period == "period=2026" {
                assert!(
                    report["births"] > 0 && report["supply_recipients"] > 0,
                    "{q}"
                );
            }
            assert_eq!(all(&bd.body["total"]), report, "{q}");
            // The summed counts are the sum of the rows; a distinct count may be less.
            let rows = bd.body["rows"].as_array().expect("rows");
            for key in [
                "population_end",
                "married_wcba",
                "births",
                "contraceptive_users",
            ] {
                let sum: i64 = rows.iter().map(|row| all(row)[key]).sum();
                assert_eq!(sum, report[key], "{q} {key}");
            }
        }
    }
});

/// The demo county with a county supervisor `cs` and a supervisor `ts` of township 130131102;
/// returns the app and the county supervisor's access token.
fn demo_county_supervisors(b: Backend) -> (TestApp, String) {
    let app = spawn_app(b);
    fieldsync::demo::load(&app.db, 2026, true).expect("demo loads");
    let county = fieldsync::demo::COUNTY_CODE;
    add_user(&app, "cs", Role::CountySupervisor, Some(county), &[]);
    add_user(&app, "ts", Role::TownshipSupervisor, Some("130131102"), &[]);
    let token = session(&app, "cs").access;
    (app, token)
}

// The console's report page reads the report and its breakdown from one count of the unit:
// both parts are exactly what the two separate requests answer. And the unit list it reads at
// sign-in names the same child units as a breakdown, within the caller's scope only.
both!(
    report_with_breakdown_and_units_answer_as_the_separate_requests,
    |b| {
        let (app, token) = demo_county_supervisors(b);
        let county = fieldsync::demo::COUNTY_CODE;
        let villages = app.get("/api/v1/reports/units?org_unit=130131102", Some(&token));
        assert_eq!(villages.status, 200, "{:?}", villages.body);
        let village = villages.body["children"][0]["code"]
            .as_str()
            .expect("a village")
            .to_string();
        for q in [
            format!("org_unit={county}&period=2026-10&lang=en"),
            "org_unit=130131102&period=2026-Q3&sort=contraceptive_prevalence&order=worst"
                .to_string(),
            format!("org_unit={village}&period=2026"),
        ] {
            let both = app.get(&format!("/api/v1/reports/with-breakdown?{q}"), Some(&token));
            assert_eq!(both.status, 200, "{:?}", both.body);
            let r = app.get(&format!("/api/v1/reports?{q}"), Some(&token));
            let bd = app.get(&format!("/api/v1/reports/breakdown?{q}"), Some(&token));
            assert_eq!((r.status, bd.status), (200, 200), "{q}");
            assert_eq!(both.body["report"], r.body, "{q}");
            assert_eq!(both.body["breakdown"], bd.body, "{q}");
            assert!(
                r.body["counts"]["population_end"].as_i64().unwrap() > 0,
                "{q}"
            );
        }

        let units = app.get(
            &format!("/api/v1/reports/units?org_unit={county}"),
            Some(&token),
        );
        assert_eq!(units.status, 200, "{:?}", units.body);
        let bd = app.get(
            &format!("/api/v1/reports/breakdown?org_unit={county}&period=2026-10"),
            Some(&token),
        );
        let codes = |v: &Value, f: &dyn Fn(&Value) -> Value| -> Vec<String> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| f(x).as_str().expect("code").to_string())
                .collect()
        };
        let children = codes(&units.body["children"], &|u| u["code"].clone());
        assert!(children.len() >= 2, "{children:?}");
        assert_eq!(
            children,
            codes(&bd.body["rows"], &|r| r["org_unit"]["code"].clone())
        );
        assert_eq!(units.body["org_unit"]["code"], county);

        // A township supervisor: its own unit by default, its villages, nothing outside.
        let ts = session(&app, "ts").access;
        let own = app.get("/api/v1/reports/units", Some(&ts));
        assert_eq!(own.status, 200, "{:?}", own.body);
        assert_eq!(own.body["org_unit"]["code"], "130131102");
        assert!(codes(&own.body["children"], &|u| u["code"].clone())
            .iter()
            .all(|c| c.starts_with("130131102") && c.len() == 12));
        let other = app.get("/api/v1/reports/units?org_unit=130131100", Some(&ts));
        assert_eq!(other.status, 404, "{:?}", other.body);
        let other = app.get(
            "/api/v1/reports/with-breakdown?org_unit=130131100&period=2026-10",
            Some(&ts),
        );
        assert_eq!(other.status, 404, "{:?}", other.body);
    }
);

/// The trend of `unit` over the `months` months ending with `to` equals, month by month, the
/// indicators of each month's report (numerator, denominator and value). Returns the trend.
fn assert_trend_is_the_reports(
    app: &TestApp,
    token: &str,
    unit: &str,
    to: &str,
    months: u32,
    indicators: &[&str],
) -> Value {
    let q = format!(
        "org_unit={unit}&to={to}&months={months}&indicators={}",
        indicators.join(",")
    );
    let tr = app.get(&format!("/api/v1/reports/trend?{q}"), Some(token));
    assert_eq!(tr.status, 200, "{:?}", tr.body);
    assert_eq!(tr.body["org_unit"]["code"], unit);
    let listed: Vec<String> = tr.body["months"]
        .as_array()
        .expect("months")
        .iter()
        .map(|m| m.as_str().expect("month").to_string())
        .collect();
    assert_eq!(listed.len(), months as usize, "{q}");
    assert_eq!(listed.last().map(String::as_str), Some(to), "{q}");
    let series = tr.body["series"].as_array().expect("series");
    assert_eq!(
        series
            .iter()
            .map(|s| s["indicator"].as_str().unwrap())
            .collect::<Vec<_>>(),
        indicators,
        "{q}"
    );
    for (i, month) in listed.iter().enumerate() {
        let r = app.get(
            &format!("/api/v1/reports?org_unit={unit}&period={month}"),
            Some(token),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        for s in series {
            let k = &s["indicator"];
            let row = r.body["indicators"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| &x["indicator"] == k)
                .expect("indicator in the report");
            let p = &s["points"][i];
            assert_eq!(p["period"].as_str(), Some(month.as_str()), "{q}");
            for f in ["numerator", "denominator", "value"] {
                assert_eq!(p[f], row[f], "{q} {month} {k} {f}");
            }
        }
    }
    tr.body
}

// The overview's trend lines come from one request: each month's values are exactly that month's
// report, for a county and a township, across a year boundary; the request's bounds are checked
// and the caller's scope enforced.
both!(trend_is_each_months_report, |b| {
    let (app, token) = demo_county_supervisors(b);
    let county = fieldsync::demo::COUNTY_CODE;
    let key = [
        "contraceptive_prevalence",
        "policy_compliant_birth_rate",
        "crude_birth_rate",
        "sex_ratio_at_birth",
        "follow_up_rate",
    ];
    let tr = assert_trend_is_the_reports(&app, &token, county, "2026-10", 12, &key);
    let denominators = |s: &Value| -> Vec<Value> {
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["denominator"].clone())
            .collect()
    };
    // Not twelve copies of one month: married women are counted at each month's end and
    // births in each month.
    assert!(
        tr["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| denominators(s).windows(2).any(|w| w[0] != w[1])),
        "{tr:?}"
    );
    assert_eq!(tr["labels"]["lang"], "zh-CN");
    assert_trend_is_the_reports(
        &app,
        &token,
        "130131102",
        "2026-02",
        3,
        &["crude_birth_rate", "long_acting_measure_rate"],
    );
    // Every indicator by default, labels in English on request.
    let all = app.get(
        &format!("/api/v1/reports/trend?org_unit={county}&to=2026-10&months=1&lang=en"),
        Some(&token),
    );
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(
        all.body["series"].as_array().unwrap().len(),
        ind::Indicator::ALL.len()
    );
    assert_eq!(all.body["labels"]["lang"], "en");
    for bad in [
        "to=2026-13",
        "to=2026-10-01",
        "to=2026-10&months=0",
        "to=2026-10&months=25",
        "to=2026-10&months=-1",
        "to=2026-10&indicators=nonsense",
        "to=2026-10&indicators=,",
    ] {
        let r = app.get(&format!("/api/v1/reports/trend?{bad}"), Some(&token));
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let ts = session(&app, "ts").access;
    let own = app.get("/api/v1/reports/trend?to=2026-10&months=2", Some(&ts));
    assert_eq!(own.status, 200, "{:?}", own.body);
    assert_eq!(own.body["org_unit"]["code"], "130131102");
    let other = app.get(
        "/api/v1/reports/trend?org_unit=130131100&to=2026-10",
        Some(&ts),
    );
    assert_eq!(other.status, 404, "{:?}", other.body);
});

// The counts read through two connections in one snapshot (`Db::read_split`, as the report
// endpoints read: the married-women statement on the second, the others on the first) are
// those read through one connection: for the county and a township, as a total and by each
// grouping the reports use, for a month and a year.
both!(counts_read_in_two_parts_are_the_counts_read_whole, |b| {
    use fieldsync::report::counts::{count, count_with_total, KeyBy, Window};
    let w = world(b);
    for kind in ["month", "year"] {
        let period = if kind == "month" {
            Period::parse_month("2026-10").unwrap()
        } else {
            Period::parse(Some("year"), Some("2026"), None, None).unwrap()
        };
        for (unit, by) in [
            (COUNTY.to_string(), KeyBy::Total),
            (COUNTY.to_string(), KeyBy::Prefix(9)),
            (COUNTY.to_string(), KeyBy::Prefix(12)),
            (township(0, 0), KeyBy::Total),
            (township(0, 0), KeyBy::Prefix(12)),
            (township(0, 0), KeyBy::Unit),
        ] {
            let window = Window {
                org_unit: unit.clone(),
                start: period.start,
                end: period.end,
                rules: Default::default(),
            };
            let whole = w
                .app
                .db
                .read(|c| count_with_total(c, None, &window, by))
                .unwrap();
            let (parts, split) = w
                .app
                .db
                .read_split(|c, second| {
                    let split = second.is_some();
                    Ok((count_with_total(c, second, &window, by)?, split))
                })
                .unwrap();
            assert!(split, "{unit} {by:?}: a second connection was free");
            assert_eq!(parts, whole, "{unit} {by:?} {kind}");
            let total = whole.1.get("married_wcba").copied().unwrap_or(0);
            assert!(total > 0, "{unit} {kind}: the fixture counts married women");
            let plain = w
                .app
                .db
                .read_split(|c, second| count(c, second, &window, by))
                .unwrap();
            assert_eq!(plain, whole.0, "{unit} {by:?} {kind}: count");
        }
    }
});

// A read split over two connections sees one snapshot: a write committed while it runs is
// seen by neither connection. On SQLite it never waits for a write in progress: it reads
// through one connection instead.
both!(a_split_read_is_one_snapshot, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let units = |c: &mut fieldsync::db::DbConn| -> i64 {
        diesel::sql_query("SELECT COUNT(*) AS n FROM org_units")
            .load::<N>(c)
            .unwrap()[0]
            .n
    };
    let insert = |code: &str| {
        let code = code.to_string();
        let db = app.db.clone();
        std::thread::spawn(move || {
            db.write(|c| {
                diesel::sql_query(format!(
                    "INSERT INTO org_units (code, name, level, parent_code, created_at) \
                     VALUES ('{code}', 'x', 'county', NULL, 0)"
                ))
                .execute(c)?;
                Ok(())
            })
            .unwrap()
        })
        .join()
        .unwrap()
    };
    let before = app.db.read(|c| Ok(units(c))).unwrap();
    app.db
        .read_split(|a, second| {
            let second = second.expect("a second connection is free");
            insert("139901");
            assert_eq!(units(a), before, "the first connection's snapshot");
            assert_eq!(units(second), before, "the second connection's snapshot");
            Ok(())
        })
        .unwrap();
    assert_eq!(app.db.read(|c| Ok(units(c))).unwrap(), before + 1);

    // A write in progress: SQLite reads through one connection rather than wait for it.
    let (held, release) = (
        std::sync::Arc::new(std::sync::Barrier::new(2)),
        std::sync::Arc::new(std::sync::Barrier::new(2)),
    );
    let writer = {
        let (db, held, release) = (app.db.clone(), held.clone(), release.clone());
        std::thread::spawn(move || {
            db.write(|_| {
                held.wait();
                release.wait();
                Ok(())
            })
            .unwrap()
        })
    };
    held.wait();
    let split = app.db.read_split(|_, second| Ok(second.is_some())).unwrap();
    release.wait();
    writer.join().unwrap();
    assert_eq!(split, b == Backend::Postgres);
});
