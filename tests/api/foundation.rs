//! The foundation: health and readiness, errors, the spec, durability refusal, the schema.

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::db::records::{self, RecordRow};
use fieldsync::domain::entities::{Entity, FieldType, ENTITIES};
use fieldsync::orgunit::{self, NewOrgUnit};

both!(health_and_ready, |b| {
    let app = spawn_app(b);
    let r = app.get("/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert!(r.header("x-request-id").is_some());
    let r = app.get("/ready", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let expected = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(r.body["database"], expected);
});

both!(unknown_route_is_problem_json, |b| {
    let app = spawn_app(b);
    let r = app.raw("GET", "/no/such/thing", &[("x-request-id", "abc-123")], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.body["code"], "not_found");
    assert_eq!(r.body["request_id"], "abc-123");
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
});

both!(undeclared_method_is_405_with_allow, |b| {
    let app = spawn_app(b);
    let r = app.raw("DELETE", "/health", &[], b"");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.body["code"], "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    // A path with a parameter: the declared methods of that pattern.
    let r = app.raw("PUT", "/api/v1/supervise/conflicts/abc/resolve", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
});

both!(metrics_need_their_token_and_count_by_route, |b| {
    let off = spawn_app(b);
    assert_eq!(off.get("/metrics", None).status, 404, "off without a token");
    drop(off);
    let app = spawn_app_with(b, |s| {
        s.metrics_token = fieldsync::settings::Secret("scrape-secret-123".into());
    });
    assert_eq!(app.get("/metrics", None).status, 401);
    assert_eq!(app.get("/metrics", Some("wrong")).status, 401);
    let _ = app.get("/api/v1/supervise/person/13013119900203", None);
    let r = app.raw(
        "GET",
        "/metrics",
        &[("authorization", "Bearer scrape-secret-123")],
        b"",
    );
    let text = r.body.as_str().unwrap_or_default();
    assert_eq!(r.status, 200, "{text}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        text.contains("route=\"/api/v1/supervise/{entity}/{id}\",method=\"GET\",status=\"401\"}"),
        "{text}"
    );
    assert!(!text.contains("13013119900203"), "a path value in a metric");
    assert!(text.contains("fieldsync_db_connections "));
});

#[test]
fn committed_spec_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/api-spec/openapi.json"
    ))
    .expect("api-spec/openapi.json exists");
    let generated = fieldsync::openapi::pretty_json();
    assert!(
        committed == generated,
        "api-spec/openapi.json differs from the code; run `cargo run -- openapi` and commit it"
    );
}

#[test]
fn sqlite_below_full_synchronous_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(&format!("sqlite://{}", dir.path().join("x.db").display()));
    s.sqlite_synchronous = "NORMAL".into();
    let err = fieldsync::open_database(&s).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("synchronous"), "{msg}");
}

#[test]
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set FIELDSYNC_TEST_PG_URL"
)]
fn postgres_synchronous_commit_off_is_refused() {
    let (url, admin, name) = fresh_pg_database();
    {
        let mut c = diesel::PgConnection::establish(&admin).unwrap();
        c.batch_execute(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .unwrap();
    }
    let s = test_settings(&url);
    let result = fieldsync::open_database(&s);
    drop_pg_database(&admin, &name);
    let msg = result.err().expect("refused").to_string();
    assert!(msg.contains("synchronous_commit"), "{msg}");
}

#[test]
fn unreachable_postgres_reports_the_real_cause() {
    let s = test_settings("postgres://nobody@127.0.0.1:1/none");
    let msg = fieldsync::open_database(&s)
        .err()
        .expect("fails")
        .to_string();
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(!msg.contains("Invalid connection url"), "{msg}");
}

fn tree() -> Vec<NewOrgUnit> {
    let u = |c: &str, n: &str, p: Option<&str>| NewOrgUnit {
        code: c.into(),
        name: n.into(),
        parent: p.map(str::to_string),
    };
    vec![
        u("130131", "平山县", None),
        u("130131102", "东回舍镇", Some("130131")),
        u("130131102201", "东庄村", Some("130131102")),
        u("130131102202", "西沟村", Some("130131102")),
        u("130131102201G01", "一组", Some("130131102201")),
        u("130131103", "温塘镇", Some("130131")),
        u("130131103201", "南岗村", Some("130131103")),
    ]
}

both!(org_unit_tree_by_code_prefix, |b| {
    let app = spawn_app(b);
    let mut c = app.conn();
    orgunit::upsert(&mut c, &tree()).unwrap();
    let sub: Vec<String> = orgunit::subtree(&mut c, "130131102")
        .unwrap()
        .into_iter()
        .map(|u| u.code)
        .collect();
    assert_eq!(
        sub,
        vec![
            "130131102",
            "130131102201",
            "130131102201G01",
            "130131102202"
        ]
    );
    let kids: Vec<String> = orgunit::children(&mut c, "130131")
        .unwrap()
        .into_iter()
        .map(|u| u.code)
        .collect();
    assert_eq!(kids, vec!["130131102", "130131103"]);
    // a village whose parent is not the township above it is refused
    let bad = vec![NewOrgUnit {
        code: "130131103202".into(),
        name: "x".into(),
        parent: Some("130131102".into()),
    }];
    assert!(orgunit::upsert(&mut c, &bad).is_err());
});

both!(org_unit_csv_import, |b| {
    let app = spawn_app(b);
    let csv = "\u{feff}code,name,parent\n130131,平山县,\n130131102,东回舍镇,130131\n130131102201,东庄村,130131102\n";
    let units = orgunit::parse_csv(csv.as_bytes()).unwrap();
    assert_eq!(units.len(), 3);
    let mut c = app.conn();
    assert_eq!(orgunit::upsert(&mut c, &units).unwrap(), 3);
    assert_eq!(
        orgunit::get(&mut c, "130131102201").unwrap().unwrap().name,
        "东庄村"
    );
});

/// A valid value for each field type, so every record type can be written and read back.
fn sample(ty: FieldType, n: usize) -> Value {
    match ty {
        FieldType::Text { .. } => json!(format!("文本{n}")),
        FieldType::Int { min, .. } => json!(min + 1),
        FieldType::Bool => json!(n.is_multiple_of(2)),
        FieldType::Date => json!("2024-03-15"),
        FieldType::Enum(choices) => json!(choices[n % choices.len()].value),
        FieldType::Ref(_) => json!(uuid::Uuid::now_v7().to_string()),
        FieldType::ResidentId => json!("11010519491231002X"),
    }
}

fn row(entity: Entity, org_unit: &str, seq: i64) -> RecordRow {
    let fields = entity
        .def()
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_string(), sample(f.ty, i)))
        .collect();
    RecordRow {
        entity,
        id: uuid::Uuid::now_v7().to_string(),
        org_unit: org_unit.into(),
        version: 1,
        change_seq: seq,
        deleted: false,
        merged_into: None,
        fields,
        stamps: [("x".to_string(), 5i64)].into_iter().collect(),
        created_at: 1,
        updated_at: 2,
        recorded_at: 3,
        created_by: "u".into(),
        updated_by: "u".into(),
        updated_device: Some("d".into()),
    }
}

both!(every_record_type_round_trips, |b| {
    let app = spawn_app(b);
    let mut c = app.conn();
    orgunit::upsert(&mut c, &tree()).unwrap();
    for (i, d) in ENTITIES.iter().enumerate() {
        let r = row(d.entity, "130131102201", i as i64 + 1);
        records::upsert(&mut c, std::slice::from_ref(&r)).unwrap();
        let back = records::load_one(&mut c, d.entity, &r.id)
            .unwrap()
            .expect("stored");
        assert_eq!(back, r, "{} round trip", d.name);
        // an update through the same upsert replaces the row
        let mut r2 = r.clone();
        r2.version = 2;
        r2.change_seq = 100 + i as i64;
        r2.deleted = true;
        records::upsert(&mut c, std::slice::from_ref(&r2)).unwrap();
        assert_eq!(
            records::load_one(&mut c, d.entity, &r.id).unwrap().unwrap(),
            r2
        );
    }
});

both!(the_database_refuses_bad_values, |b| {
    let app = spawn_app(b);
    let mut c = app.conn();
    orgunit::upsert(&mut c, &tree()).unwrap();
    for d in ENTITIES {
        for f in d.fields {
            let bad = match f.ty {
                FieldType::Enum(_) => json!("not_a_value"),
                FieldType::Date => json!("15/03/2024"),
                FieldType::Int { max, .. } => json!(max + 1),
                FieldType::Text { max_len } => json!("长".repeat(max_len + 1)),
                // A typed number is kept even when malformed (flagged), up to a bound.
                FieldType::ResidentId => {
                    json!("1".repeat(fieldsync::domain::resident_id::MAX_TYPED_LEN + 1))
                }
                FieldType::Ref(_) => json!("short"),
                FieldType::Bool => continue,
            };
            let mut r = row(d.entity, "130131102201", 1);
            r.fields.insert(f.name.to_string(), bad);
            let res = records::upsert(&mut c, &[r]);
            assert!(res.is_err(), "{}.{} accepted a bad value", d.name, f.name);
        }
        // a record in an org unit that does not exist is refused too
        let r = row(d.entity, "999999999999", 1);
        assert!(records::upsert(&mut c, &[r]).is_err());
    }
});

both!(schema_matches_the_entity_registry, |b| {
    let app = spawn_app(b);
    let mut c = app.conn();
    orgunit::upsert(&mut c, &tree()).unwrap();
    // Writing every column of every table through the generated SQL proves each exists; a
    // column the registry lacks would be missing from the round trip above. Here: no extras.
    for d in ENTITIES {
        let cols = records::columns(d.entity);
        let n = count_columns(&mut c, d.table);
        assert_eq!(
            n,
            cols.len(),
            "{} has {} columns, registry {}",
            d.table,
            n,
            cols.len()
        );
    }
});

fn count_columns(c: &mut fieldsync::db::DbConn, table: &str) -> usize {
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let sql = match c {
        fieldsync::db::DbConn::Sqlite(_) => format!("SELECT COUNT(*) AS n FROM pragma_table_info('{table}')"),
        fieldsync::db::DbConn::Postgres(_) => format!(
            "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    };
    let rows: Vec<N> = diesel::sql_query(sql).load(c).unwrap();
    rows[0].n as usize
}

// `/ready` reads the migration ledger on every call: with one applied migration missing
// from it the database answers but is not ready (503, problem+json, a stable code, and
// Retry-After); once the ledger is whole again it is ready, without a restart.
both!(ready_is_503_while_a_migration_is_pending, |b| {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let app = spawn_app(b);
    assert_eq!(app.get("/ready", None).status, 200);
    let latest: Vec<V> =
        diesel::sql_query("SELECT MAX(version) AS version FROM __diesel_schema_migrations")
            .load(&mut *app.conn())
            .unwrap();
    let version = latest[0].version.clone();
    app.conn()
        .batch_execute(&format!(
            "DELETE FROM __diesel_schema_migrations WHERE version = '{version}'"
        ))
        .unwrap();
    let r = app.get("/ready", None);
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.body["code"], "migrations_pending");
    assert!(r.body["request_id"].is_string());
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        app.get("/health", None).status,
        200,
        "liveness is not readiness"
    );
    app.conn()
        .batch_execute(&format!(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('{version}')"
        ))
        .unwrap();
    let r = app.get("/ready", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
});

both!(served_spec_equals_the_committed_one, |b| {
    let app = spawn_app(b);
    let r = app.get("/api/openapi.json", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/api-spec/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(committed["paths"]["/ready"].is_object());
    assert!(
        r.body == committed,
        "GET /api/openapi.json differs from api-spec/openapi.json"
    );
});

/// Logs in (password `records-pass-1`) and, for a worker, registers a phone: its token.
fn token_of(app: &TestApp, username: &str, device: bool) -> String {
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": "records-pass-1"}),
    );
    assert_eq!(r.status, 200, "login {username}: {:?}", r.body);
    let t = r.body["access_token"].as_str().unwrap().to_string();
    if !device {
        return t;
    }
    let r = app.post(
        "/api/v1/devices",
        Some(&t),
        &json!({"name": "phone", "app_version": "1.0"}),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

// DOMAIN: the org unit of a record is a village or a villager group. A device op or a
// supervisor's edit naming a township or the county is refused with `bad_org_unit` (also a
// township inside a supervisor's subtree) and nothing of it is stored.
both!(records_belong_to_villages_or_groups, |b| {
    use fieldsync::auth::roles::Role;
    use fieldsync::auth::users::{self, NewUser};
    let app = spawn_app(b);
    orgunit::upsert(&mut app.conn(), &tree()).unwrap();
    let hash = fieldsync::auth::passwords::hash_blocking("records-pass-1").unwrap();
    let add = |username: &str, role: Role, org: Option<&str>, villages: &[&str]| {
        let new = NewUser {
            username: username.into(),
            display_name: username.into(),
            role,
            org_unit: org.map(str::to_string),
            villages: villages.iter().map(|v| v.to_string()).collect(),
        };
        users::create(&mut app.conn(), &new, &hash).unwrap();
    };
    add("rw", Role::Worker, None, &["130131102201"]);
    add("rt", Role::TownshipSupervisor, Some("130131102"), &[]);
    let w = token_of(&app, "rw", true);
    let ts = token_of(&app, "rt", false);
    let person = |org: &str| {
        json!({"org_unit": org, "name": "赵敏", "sex": "female", "birth_date": "1990-02-03",
               "marital_status": "first_marriage", "residence": "resident"})
    };
    let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let op = |seq: i64, id: &str, kind: &str, base: Option<i64>, set: Value| {
        let mut op = json!({"seq": seq, "op_id": uuid::Uuid::now_v7().to_string(),
            "entity": "person", "id": id, "kind": kind, "set": set,
            "recorded_at": "2026-11-20T08:00:00Z"});
        if let Some(v) = base {
            op["base_version"] = json!(v);
        }
        op
    };
    let r = app.post(
        "/api/v1/sync/push",
        Some(&w),
        &json!({"ops": [
            op(1, &ids[0], "create", None, person("130131102")),
            op(2, &ids[1], "create", None, person("130131")),
            op(3, &ids[2], "create", None, person("130131102201")),
            op(4, &ids[3], "create", None, person("130131102201G01")),
            op(5, &ids[2], "update", Some(1), json!({"org_unit": "130131102"})),
        ]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let results = r.body["results"].as_array().unwrap();
    let codes: Vec<(&str, &str)> = results
        .iter()
        .map(|x| {
            (
                x["status"].as_str().unwrap(),
                x["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("rejected", "bad_org_unit"),
            ("rejected", "bad_org_unit"),
            ("applied", ""),
            ("applied", ""),
            ("rejected", "bad_org_unit"),
        ],
        "{results:?}"
    );
    let mut c = app.conn();
    for id in &ids[..2] {
        assert!(records::load_one(&mut c, Entity::Person, id)
            .unwrap()
            .is_none());
    }
    let kept = records::load_one(&mut c, Entity::Person, &ids[2])
        .unwrap()
        .unwrap();
    assert_eq!((kept.org_unit.as_str(), kept.version), ("130131102201", 1));
    drop(c);

    // A township supervisor's direct edit into its own township is refused the same way.
    let path = format!("/api/v1/supervise/records/person/{}", ids[2]);
    let r = app.post(
        &path,
        Some(&ts),
        &json!({"base_version": 1, "set": {"org_unit": "130131102"}}),
    );
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["code"], "bad_org_unit");
    let r = app.post(
        &path,
        Some(&ts),
        &json!({"base_version": 1, "set": {"org_unit": "130131102202"}}),
    );
    assert_eq!(r.status, 200, "a move to another village: {:?}", r.body);
    assert_eq!(r.body["status"], "applied");
    let mut c = app.conn();
    let moved = records::load_one(&mut c, Entity::Person, &ids[2])
        .unwrap()
        .unwrap();
    assert_eq!(moved.org_unit, "130131102202");
    let n = count_rows(
        &mut c,
        "SELECT COUNT(*) AS n FROM persons WHERE org_unit IN ('130131', '130131102', '130131103')",
    );
    assert_eq!(n, 0);
});

fn count_rows(c: &mut fieldsync::db::DbConn, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<N> = diesel::sql_query(sql).load(c).unwrap();
    rows[0].n
}
