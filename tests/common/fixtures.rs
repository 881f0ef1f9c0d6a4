//! Fixtures: the org unit trees the tests use, users and their sessions.

use serde_json::json;

use fieldsync::auth::roles::Role;
use fieldsync::auth::users::{self, NewUser};
use fieldsync::orgunit::{self, NewOrgUnit};

use super::{pw_hash, Resp, TestApp, PW};

// The small tree of the sync tests (`seed_units`): one county and two townships, villages V1
// and V2 in the first, V3 in the second.
pub const V1: &str = "130131102201";
pub const V2: &str = "130131102202";
pub const V3: &str = "130131103201";

pub fn seed_units(app: &TestApp) {
    let u = |c: &str, n: &str, p: Option<&str>| NewOrgUnit {
        code: c.into(),
        name: n.into(),
        parent: p.map(str::to_string),
    };
    let mut c = app.conn();
    orgunit::upsert(
        &mut c,
        &[
            u("130131", "平山县", None),
            u("130131102", "东回舍镇", Some("130131")),
            u(V1, "东庄村", Some("130131102")),
            u(V2, "西沟村", Some("130131102")),
            u("130131103", "温塘镇", Some("130131")),
            u(V3, "南岗村", Some("130131103")),
        ],
    )
    .unwrap();
}

pub fn create_worker(app: &TestApp, username: &str, villages: &[&str]) -> String {
    let mut c = app.conn();
    users::create(
        &mut c,
        &NewUser {
            username: username.into(),
            display_name: username.into(),
            role: Role::Worker,
            org_unit: None,
            villages: villages.iter().map(|v| v.to_string()).collect(),
        },
        pw_hash(),
    )
    .unwrap()
    .id
}

// The larger tree of the access and report tests (`seed_tree`).
pub const COUNTIES: [&str; 2] = ["130131", "130132"];

pub fn township(county: usize, t: usize) -> String {
    format!("{}{}", COUNTIES[county], 101 + t)
}

pub fn village(county: usize, t: usize, v: usize) -> String {
    format!("{}{}", township(county, t), 201 + v)
}

/// The first county of the tree (the report and supervision tests' county).
pub const COUNTY: &str = COUNTIES[0];

/// Villages A and B of the first township and village C of the second, of the first county.
pub fn va() -> String {
    village(0, 0, 0)
}
pub fn vb() -> String {
    village(0, 0, 1)
}
pub fn vc() -> String {
    village(0, 1, 0)
}

/// 2 counties x 2 townships x 3 villages.
pub fn seed_tree(app: &TestApp) {
    let mut units = Vec::new();
    for (c, code) in COUNTIES.iter().enumerate() {
        units.push(NewOrgUnit {
            code: code.to_string(),
            name: format!("县{c}"),
            parent: None,
        });
        for t in 0..2 {
            units.push(NewOrgUnit {
                code: township(c, t),
                name: format!("镇{c}{t}"),
                parent: Some(code.to_string()),
            });
            for v in 0..3 {
                units.push(NewOrgUnit {
                    code: village(c, t, v),
                    name: format!("村{c}{t}{v}"),
                    parent: Some(township(c, t)),
                });
            }
        }
    }
    orgunit::upsert(&mut app.conn(), &units).unwrap();
}

pub fn add_user(
    app: &TestApp,
    username: &str,
    role: Role,
    org: Option<&str>,
    villages: &[String],
) -> String {
    let new = NewUser {
        username: username.into(),
        display_name: username.into(),
        role,
        org_unit: org.map(str::to_string),
        villages: villages.to_vec(),
    };
    users::create(&mut app.conn(), &new, pw_hash()).unwrap().id
}

pub fn login(app: &TestApp, username: &str, device: Option<&str>) -> Resp {
    let mut body = json!({ "username": username, "password": PW });
    if let Some(d) = device {
        body["device_id"] = json!(d);
    }
    app.post("/api/v1/auth/login", None, &body)
}

pub fn access(r: &Resp) -> String {
    r.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {:?}", r.body))
        .to_string()
}

pub fn refresh_of(r: &Resp) -> String {
    r.body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {:?}", r.body))
        .to_string()
}

/// A signed-in user's tokens.
pub struct Session {
    pub user_id: String,
    pub device_id: Option<String>,
    pub access: String,
    pub refresh: String,
}

/// Logs in without a device; for a worker, registers a device and uses its tokens.
pub fn session(app: &TestApp, username: &str) -> Session {
    let r = login(app, username, None);
    assert_eq!(r.status, 200, "login {username}: {:?}", r.body);
    let user_id = r.body["user"]["id"].as_str().unwrap().to_string();
    if r.body["user"]["role"] == "worker" {
        let d = app.post(
            "/api/v1/devices",
            Some(&access(&r)),
            &json!({ "name": "phone", "app_version": "1.0" }),
        );
        assert_eq!(d.status, 201, "{:?}", d.body);
        return Session {
            user_id,
            device_id: Some(d.body["device_id"].as_str().unwrap().to_string()),
            access: access(&d),
            refresh: refresh_of(&d),
        };
    }
    Session {
        user_id,
        device_id: None,
        access: access(&r),
        refresh: refresh_of(&r),
    }
}
