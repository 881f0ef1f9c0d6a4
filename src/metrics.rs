//! Operational metrics in the Prometheus text format, at `GET /metrics`.
//!
//! Only counts, keyed by what the server itself defines: the route *pattern* (never the path
//! as sent, which can carry a name or an ID number), the method, the status, and the result of
//! sync ops. No label ever holds a value a client sent, so no personal data can reach a metric
//! and the number of series is bounded by the route table.
//!
//! The endpoint is off unless `metrics_token` is set; a scraper then sends it as a bearer
//! token (`authorization: Bearer ...` in Prometheus' scrape config).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::sync::protocol::OpStatus;

#[derive(Default)]
struct RequestStats {
    count: u64,
    seconds: f64,
}

/// The process's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), RequestStats>>,
    ops: Mutex<BTreeMap<&'static str, u64>>,
    pushes_busy: AtomicU64,
}

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

impl Metrics {
    /// One answered request. `route` is the matched pattern or `(no route)`.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let s = m
            .entry((route.to_string(), method.to_string(), status))
            .or_default();
        s.count += 1;
        s.seconds += seconds;
    }

    /// The results of one push.
    pub fn ops(&self, statuses: impl IntoIterator<Item = OpStatus>) {
        let mut m = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        for s in statuses {
            *m.entry(s.as_str()).or_default() += 1;
        }
    }

    /// A push turned away because too many were in flight (503).
    pub fn push_busy(&self) {
        self.pushes_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP fieldsync_http_requests_total Answered HTTP requests by route pattern, method and status.\n# TYPE fieldsync_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, method, status), s) in requests.iter() {
            let _ = writeln!(
                out,
                "fieldsync_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP fieldsync_http_request_seconds_sum Time spent answering, by route pattern, method and status.\n# TYPE fieldsync_http_request_seconds_sum counter\n");
        for ((route, method, status), s) in requests.iter() {
            let _ = writeln!(
                out,
                "fieldsync_http_request_seconds_sum{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {:.6}",
                escape(route),
                s.seconds
            );
        }
        drop(requests);
        out.push_str("# HELP fieldsync_sync_ops_total Pushed ops by result.\n# TYPE fieldsync_sync_ops_total counter\n");
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        for key in OpStatus::ALL.map(OpStatus::as_str) {
            let n = ops.get(key).copied().unwrap_or(0);
            let _ = writeln!(out, "fieldsync_sync_ops_total{{result=\"{key}\"}} {n}");
        }
        drop(ops);
        let _ = writeln!(
            out,
            "# HELP fieldsync_push_busy_total Pushes answered 503 because too many were in flight.\n# TYPE fieldsync_push_busy_total counter\nfieldsync_push_busy_total {}",
            self.pushes_busy.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Label values are route patterns and methods, but escape them as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_pattern_and_op_result() {
        let m = Metrics::default();
        m.request("/api/v1/supervise/{entity}/{id}", "GET", 200, 0.01);
        m.request("/api/v1/supervise/{entity}/{id}", "GET", 200, 0.02);
        m.request("(no route)", "GET", 404, 0.0);
        m.ops([OpStatus::Applied, OpStatus::Applied, OpStatus::Rejected]);
        m.push_busy();
        let text = m.render(&[("fieldsync_db_connections", "Open connections.", 3.0)]);
        assert!(text.contains(
            "fieldsync_http_requests_total{route=\"/api/v1/supervise/{entity}/{id}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("fieldsync_sync_ops_total{result=\"applied\"} 2"));
        assert!(text.contains("fieldsync_sync_ops_total{result=\"rejected\"} 1"));
        assert!(text.contains("fieldsync_sync_ops_total{result=\"duplicate\"} 0"));
        assert!(text.contains("fieldsync_push_busy_total 1"));
        assert!(text.contains("fieldsync_db_connections 3"));
    }
}
