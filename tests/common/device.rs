//! Device op builders: a field worker's registered phone (`Dev`) with its own seq counter, its
//! ops, pushes and pulls.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{create_worker, Resp, TestApp, PW};

/// A field device: a worker's registered phone with its access token and its own seq counter.
pub struct Dev {
    pub token: String,
    pub device_id: String,
    pub user_id: String,
    pub next_seq: std::sync::atomic::AtomicI64,
}

/// Logs in as `username` and registers a new device.
pub fn register_device(app: &TestApp, username: &str) -> Dev {
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": PW}),
    );
    assert_eq!(r.status, 200, "login: {:?}", r.body);
    let user_id = r.body["user"]["id"].as_str().unwrap().to_string();
    let t = r.body["access_token"].as_str().unwrap().to_string();
    let r = app.post(
        "/api/v1/devices",
        Some(&t),
        &json!({"name": "phone", "app_version": "1.0"}),
    );
    assert_eq!(r.status, 201, "register device: {:?}", r.body);
    Dev {
        token: r.body["access_token"].as_str().unwrap().to_string(),
        device_id: r.body["device_id"].as_str().unwrap().to_string(),
        user_id,
        next_seq: std::sync::atomic::AtomicI64::new(1),
    }
}

pub fn worker(app: &TestApp, username: &str, villages: &[&str]) -> Dev {
    create_worker(app, username, villages);
    register_device(app, username)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Dev {
    /// An op with the next seq.
    pub fn op(&self, entity: &str, id: &str, kind: &str, base: Option<i64>, set: Value) -> Value {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut op = json!({"seq": seq, "op_id": new_id(), "entity": entity, "id": id, "kind": kind, "set": set,
                            "recorded_at": "2026-11-20T08:00:00Z"});
        if let Some(b) = base {
            op["base_version"] = json!(b);
        }
        op
    }

    pub fn push(&self, app: &TestApp, ops: &[Value]) -> Resp {
        app.post(
            "/api/v1/sync/push",
            Some(&self.token),
            &json!({ "ops": ops }),
        )
    }

    pub fn push_ok(&self, app: &TestApp, ops: &[Value]) -> Vec<Value> {
        let r = self.push(app, ops);
        assert_eq!(r.status, 200, "push: {:?}", r.body);
        r.body["results"].as_array().unwrap().clone()
    }

    pub fn pull(&self, app: &TestApp, cursor: i64) -> Value {
        let r = app.post(
            "/api/v1/sync/pull",
            Some(&self.token),
            &json!({ "cursor": cursor }),
        );
        assert_eq!(r.status, 200, "pull: {:?}", r.body);
        r.body
    }

    /// One page of at most `limit` records from `cursor`.
    pub fn pull_page(&self, app: &TestApp, cursor: i64, limit: usize) -> Value {
        let r = app.post(
            "/api/v1/sync/pull",
            Some(&self.token),
            &json!({ "cursor": cursor, "limit": limit }),
        );
        assert_eq!(r.status, 200, "pull: {:?}", r.body);
        r.body
    }

    /// Pulls every page from `cursor`; returns the records by id (latest wins) and the cursor.
    pub fn pull_all(&self, app: &TestApp, mut cursor: i64) -> (BTreeMap<String, Value>, i64) {
        let mut out = BTreeMap::new();
        loop {
            let r = self.pull(app, cursor);
            assert_eq!(r["reset_required"], false, "{r:?}");
            for rec in r["records"].as_array().unwrap() {
                out.insert(rec["id"].as_str().unwrap().to_string(), rec.clone());
            }
            cursor = r["next_cursor"].as_i64().unwrap();
            if r["has_more"] == false {
                return (out, cursor);
            }
        }
    }
}

pub fn person(village: &str, name: &str) -> Value {
    json!({"org_unit": village, "name": name, "sex": "female", "birth_date": "1990-02-03",
           "marital_status": "first_marriage", "residence": "resident"})
}
