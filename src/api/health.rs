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

/// Readiness: the database is reachable and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = crate::error::Problem)))]
pub async fn ready(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let db = state.db.clone();
    let pending = web::block(move || db.pending_migrations()).await??;
    if pending > 0 {
        return Err(AppError::Unavailable);
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
