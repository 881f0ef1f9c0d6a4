//! The demo county: it loads into a fresh database, once, the same for the same seed, with valid
//! resident ID numbers and the server still ready afterwards.

use std::time::Instant;

use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;

use crate::both;
use crate::common::*;
use fieldsync::db::records::{self, JsonRow, RecordRow};
use fieldsync::db::DbConn;
use fieldsync::demo::{self, Skipped, Summary};
use fieldsync::domain::checks::{self, CheckInput};
use fieldsync::domain::entities::{Entity, ENTITIES};
use fieldsync::domain::resident_id::ResidentId;
use fieldsync::orgunit::{self, NewOrgUnit};

const SEED: u64 = 2026;

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(c: &mut DbConn, sql: &str) -> i64 {
    let rows: Vec<N> = diesel::sql_query(sql).load(c).unwrap();
    rows[0].n
}

fn all(c: &mut DbConn, entity: Entity) -> Vec<RecordRow> {
    let sql = records::select_json_sql(records::backend_of(c), entity);
    let rows: Vec<JsonRow> = diesel::sql_query(format!("{sql} ORDER BY id"))
        .load(c)
        .unwrap();
    rows.iter()
        .map(|r| RecordRow::from_json(&r.j).unwrap())
        .collect()
}

fn load(app: &TestApp, seed: u64, force: bool) -> Summary {
    let t = Instant::now();
    let s = demo::load(&app.db, seed, force).expect("demo loads");
    eprintln!("{:?}: {s} [{:?}]", app.backend, t.elapsed());
    s
}

both!(demo_loads_once_into_a_fresh_database, |b| {
    let app = spawn_app(b);
    let s = load(&app, SEED, false);
    assert!(s.loaded, "{s}");
    assert_eq!(s.skipped, None);
    assert_eq!(s.villages, 12);
    assert!(s.org_units >= 1 + 3 + 12, "{s}");
    assert!((2_000..4_000).contains(&s.persons), "{s}");
    assert!((600..1_000).contains(&s.households), "{s}");
    assert!(s.recent_births > 0 && s.births >= s.recent_births, "{s}");
    for n in [
        s.pregnancies,
        s.deaths,
        s.measures,
        s.visits,
        s.migrations,
        s.supplies,
        s.benefits,
    ] {
        assert!(n > 0, "{s}");
    }
    assert!(s.to_string().contains("persons"));

    let mut c = app.conn();
    // The tree: county, 3 townships, 12 villages, groups under some of them.
    let units = orgunit::subtree(&mut c, demo::COUNTY_CODE).unwrap();
    assert_eq!(units.len(), s.org_units);
    let level = |l: &str| units.iter().filter(|u| u.level == l).count();
    assert_eq!(
        (level("county"), level("township"), level("village")),
        (1, 3, 12)
    );
    assert!(level("group") > 0);
    assert_eq!(
        orgunit::get(&mut c, "130131102201").unwrap().unwrap().name,
        "东庄村"
    );

    // What the summary says is what the tables hold, every record at version 1 with its history.
    let mut total = 0;
    for d in ENTITIES {
        let n = count(
            &mut c,
            &format!(
                "SELECT COUNT(*) AS n FROM {} WHERE created_by = 'demo'",
                d.table
            ),
        );
        let expected = match d.entity {
            Entity::Household => s.households,
            Entity::Person => s.persons,
            Entity::Pregnancy => s.pregnancies,
            Entity::Birth => s.births,
            Entity::Death => s.deaths,
            Entity::Measure => s.measures,
            Entity::Visit => s.visits,
            Entity::Migration => s.migrations,
            Entity::Supply => s.supplies,
            Entity::Benefit => s.benefits,
        };
        assert_eq!(n as usize, expected, "{}", d.table);
        total += n;
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) AS n FROM record_versions WHERE version = 1"
        ),
        total
    );
    // One number per record, consecutive: from 1 on SQLite; on PostgreSQL from the start of
    // the loading transaction's window (sync::sequence).
    if b == Backend::Sqlite {
        assert_eq!(s.first_change_seq, 1);
    }
    assert_eq!(s.last_change_seq - s.first_change_seq + 1, total);
    assert_eq!(
        count(&mut c, "SELECT MIN(change_seq) AS n FROM record_versions"),
        s.first_change_seq
    );
    assert_eq!(
        count(&mut c, "SELECT MAX(change_seq) AS n FROM record_versions"),
        s.last_change_seq
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT last_change_seq AS n FROM sync_state WHERE id = 1"
        ),
        s.last_change_seq
    );

    // Every person has a valid ID number that agrees with the birth date and sex.
    let persons = all(&mut c, Entity::Person);
    assert_eq!(persons.len(), s.persons);
    let today = demo::reference_date();
    for p in &persons {
        let number = p.fields["id_number"]
            .as_str()
            .expect("every person has an ID number");
        let id = ResidentId::parse(number).expect("valid check digit");
        assert_eq!(id.sex(), p.fields["sex"].as_str().unwrap());
        assert_eq!(
            id.birth_date()
                .map(|d| d.format("%Y-%m-%d").to_string())
                .as_deref(),
            p.fields["birth_date"].as_str()
        );
        let input = CheckInput {
            entity: Entity::Person,
            fields: &p.fields,
            today,
            subject: None,
            subject_death_date: None,
            earlier_births: None,
        };
        let failed: Vec<_> = checks::run(&input).into_iter().map(|d| d.code).collect();
        assert!(failed.iter().all(|c| !c.starts_with("id_")), "{failed:?}");
        assert_eq!(p.created_by, "demo");
        assert_eq!(p.version, 1);
        assert!(p.updated_device.is_none());
        assert!(p.stamps.keys().all(|k| p.fields.contains_key(k)));
    }
    let mut numbers: Vec<&str> = persons
        .iter()
        .map(|p| p.fields["id_number"].as_str().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), persons.len(), "ID numbers are unique");
    drop(c);

    // A second load, forced or not, changes nothing.
    for force in [false, true] {
        let again = load(&app, SEED, force);
        assert!(!again.loaded);
        assert_eq!(again.skipped, Some(Skipped::AlreadyLoaded), "{again}");
    }
    let mut c = app.conn();
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) AS n FROM persons") as usize,
        s.persons
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT last_change_seq AS n FROM sync_state WHERE id = 1"
        ),
        s.last_change_seq
    );

    let r = app.get("/ready", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
});

both!(same_seed_same_county, |b| {
    let people = |seed| {
        let app = spawn_app(b);
        assert!(load(&app, seed, false).loaded);
        let mut c = app.conn();
        all(&mut c, Entity::Person)
            .into_iter()
            .map(|p| (p.id, p.org_unit, p.fields))
            .collect::<Vec<_>>()
    };
    let a = people(SEED);
    assert_eq!(a, people(SEED));
    assert_ne!(a, people(SEED + 1));
});

both!(existing_org_units_stop_an_unforced_load, |b| {
    let app = spawn_app(b);
    {
        let mut c = app.conn();
        let unit = NewOrgUnit {
            code: "130131".into(),
            name: "平山县".into(),
            parent: None,
        };
        orgunit::upsert(&mut c, &[unit]).unwrap();
    }
    let s = load(&app, SEED, false);
    assert_eq!((s.loaded, s.skipped), (false, Some(Skipped::NotEmpty)));
    assert_eq!(
        count(&mut app.conn(), "SELECT COUNT(*) AS n FROM persons"),
        0
    );
    // Forced, it loads beside what is there.
    let s = load(&app, SEED, true);
    assert!(s.loaded, "{s}");
    assert_eq!(
        count(&mut app.conn(), "SELECT COUNT(*) AS n FROM persons") as usize,
        s.persons
    );
});
