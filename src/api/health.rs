use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::error::{AppError, AppResult};
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the process is up.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` when the database answers and its migrations are current.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Liveness: the process is up. Does not touch the database.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: the database is reachable, every migration is applied and writes have room.
/// 503 `unavailable` (database away; answered within a second, never after the pool's whole
/// wait), `migrations_pending`, or `storage_full` (the last write failed for lack of space and
/// a probe write still does), each with Retry-After.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = crate::error::Problem)))]
pub async fn ready(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let (pending, full) =
        web::block(move || db.pending_migrations().map(|p| (p, db.storage_full()))).await??;
    if pending > 0 {
        return Err(AppError::MigrationsPending);
    }
    if full {
        return Err(AppError::NotReady("storage_full"));
    }
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready",
        database: state.db.backend().name(),
    }))
}

/// The OpenAPI description of this API (the same document as api-spec/openapi.json).
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_spec() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}

/// Operational metrics (Prometheus text format): requests by route pattern, method and status;
/// pushed ops by result; pool and push-gate gauges. Counts only, never a value a client sent.
/// Off (404) unless the `metrics_token` setting is set; the scraper sends it as a bearer token
/// (this is not a user's access token).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong metrics token")))]
pub async fn metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> AppResult<HttpResponse> {
    let expected = state.settings.metrics_token.0.as_bytes();
    if expected.is_empty() {
        return Err(AppError::NotFound);
    }
    let sent = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .as_bytes();
    // Compare digests, so the time taken does not tell how much of the token matched.
    use sha2::{Digest, Sha256};
    if Sha256::digest(sent) != Sha256::digest(expected) {
        return Err(AppError::Unauthorized("invalid_token"));
    }
    let (open, idle) = state.db.pool_state();
    let permits = state.push_gate.available_permits() as f64;
    let max = state.settings.limits.max_inflight_pushes as f64;
    let body = crate::metrics::global().render(&[
        (
            "fieldsync_db_connections",
            "Open database connections in the pool.",
            f64::from(open),
        ),
        (
            "fieldsync_db_connections_idle",
            "Idle database connections in the pool.",
            f64::from(idle),
        ),
        (
            "fieldsync_pushes_in_flight",
            "Pushes being processed now.",
            max - permits,
        ),
    ]);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
