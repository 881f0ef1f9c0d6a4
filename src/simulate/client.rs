//! A field device over HTTP: logs in, registers, pushes batches and pulls its scope into a
//! local replica, the way the phone app does.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::sync::protocol::{PullResponse, PushResponse};

/// One record as the device holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub entity: String,
    pub org_unit: String,
    pub version: i64,
    pub fields: Value,
}

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what}: {cause}")]
    Transport { what: &'static str, cause: String },
}

/// A logged-in, registered device with its live records.
pub struct Device {
    pub base: String,
    pub device_id: String,
    pub user_id: String,
    token: String,
    agent: ureq::Agent,
    /// Live records by id; tombstones remove them.
    pub replica: BTreeMap<String, Held>,
    pub cursor: i64,
    pub next_seq: i64,
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .max_idle_connections_per_host(4)
        .build()
}

/// The largest answer this client reads (a pull page of the biggest records is well below).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

fn call(what: &'static str, r: Result<ureq::Response, ureq::Error>) -> Result<Value, ClientError> {
    match r {
        // The body is read whole, then parsed: `into_json` parses from the socket reader a
        // byte at a time, which made this client take a third of a measured pull's time.
        Ok(resp) => {
            let transport = |cause: String| ClientError::Transport { what, cause };
            let mut body = Vec::new();
            std::io::Read::take(resp.into_reader(), MAX_ANSWER_BYTES)
                .read_to_end(&mut body)
                .map_err(|e| transport(e.to_string()))?;
            serde_json::from_slice(&body).map_err(|e| transport(e.to_string()))
        }
        Err(ureq::Error::Status(status, resp)) => Err(ClientError::Status {
            what,
            status,
            body: resp.into_string().unwrap_or_default(),
        }),
        Err(e) => Err(ClientError::Transport {
            what,
            cause: e.to_string(),
        }),
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

impl Device {
    /// Logs in as a worker and registers a new device, as a phone does at first start.
    pub fn register(base: &str, username: &str, password: &str) -> Result<Device, ClientError> {
        let agent = agent();
        let login = call(
            "login",
            agent
                .post(&format!("{base}/api/v1/auth/login"))
                .send_json(json!({"username": username, "password": password})),
        )?;
        let token = text(&login, "access_token");
        let reg = call(
            "register device",
            agent
                .post(&format!("{base}/api/v1/devices"))
                .set("Authorization", &format!("Bearer {token}"))
                .send_json(json!({"name": format!("sim {username}"), "app_version": "sim-1"})),
        )?;
        Ok(Device {
            base: base.to_string(),
            device_id: text(&reg, "device_id"),
            user_id: text(&login["user"], "id"),
            token: text(&reg, "access_token"),
            agent,
            replica: BTreeMap::new(),
            cursor: 0,
            next_seq: 1,
        })
    }

    fn post(&self, what: &'static str, path: &str, body: &Value) -> Result<Value, ClientError> {
        call(
            what,
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Authorization", &format!("Bearer {}", self.token))
                .send_json(body),
        )
    }

    /// Pushes a batch; returns the answer and how long the exchange took.
    pub fn push(&self, ops: &[Value]) -> Result<(PushResponse, Duration), ClientError> {
        let started = Instant::now();
        let v = self.post("push", "/api/v1/sync/push", &json!({ "ops": ops }))?;
        let elapsed = started.elapsed();
        let resp = serde_json::from_value(v).map_err(|e| ClientError::Transport {
            what: "push answer",
            cause: e.to_string(),
        })?;
        Ok((resp, elapsed))
    }

    /// Closes the device's connections (as a phone going offline does); the next exchange opens
    /// a new one.
    pub fn hang_up(&mut self) {
        self.agent = agent();
    }

    /// One pull page from `cursor`, without touching the replica.
    pub fn pull_page(&self, cursor: i64) -> Result<(PullResponse, Duration), ClientError> {
        let started = Instant::now();
        let v = self.post("pull", "/api/v1/sync/pull", &json!({ "cursor": cursor }))?;
        let elapsed = started.elapsed();
        let resp = serde_json::from_value(v).map_err(|e| ClientError::Transport {
            what: "pull answer",
            cause: e.to_string(),
        })?;
        Ok((resp, elapsed))
    }

    /// Pulls every page after the device's cursor into the replica (from a fresh snapshot when
    /// the server asks for a reset). Returns the pages fetched.
    pub fn pull_all(&mut self) -> Result<usize, ClientError> {
        let mut pages = 0;
        loop {
            let (r, _) = self.pull_page(self.cursor)?;
            pages += 1;
            if r.reset_required {
                self.replica.clear();
                self.cursor = 0;
                continue;
            }
            for rec in r.records {
                if rec.deleted {
                    self.replica.remove(&rec.id);
                } else {
                    self.replica.insert(
                        rec.id,
                        Held {
                            entity: rec.entity,
                            org_unit: rec.org_unit,
                            version: rec.version,
                            fields: rec.fields,
                        },
                    );
                }
            }
            self.cursor = r.next_cursor;
            if !r.has_more {
                return Ok(pages);
            }
        }
    }
}
