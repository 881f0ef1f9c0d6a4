//! Logging and request ids. Log lines carry method, route pattern, status and latency, never
//! bodies, query strings or personal data.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::error::REQUEST_ID;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: &str) {
    // actix-web's own debug lines quote request paths (which a client can fill with anything,
    // e.g. a name typed where an id belongs); they stay at info whatever FIELDSYNC_LOG asks.
    let filter = EnvFilter::try_from_env("FIELDSYNC_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"))
        .add_directive("actix_web=info".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A client-supplied request id is kept when it is short and plain, so a device can correlate
/// its own logs; otherwise the server makes one.
fn accept_client_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_string())
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(accept_client_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().to_string();
    // The route pattern, never the path as sent or the query string: searches put names and
    // ID numbers in the query, and a client can put anything in a path segment.
    let path = req
        .match_pattern()
        .unwrap_or_else(|| "(no route)".to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let start = Instant::now();
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let _enter = span.enter();
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let secs = start.elapsed().as_secs_f64();
            crate::metrics::global().request(&path, &method, status, secs);
            let ms = secs * 1000.0;
            if status >= 500 {
                tracing::warn!(status, ms, "request failed");
            } else {
                tracing::info!(status, ms, "request");
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
            }
            Ok(res)
        }
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            let secs = start.elapsed().as_secs_f64();
            crate::metrics::global().request(&path, &method, status, secs);
            tracing::warn!(error = %e.as_response_error().status_code(), "request error");
            Err(e)
        }
    }
}
