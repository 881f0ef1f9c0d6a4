//! The service's one error type, mapped once to `application/problem+json` bodies
//! `{code, message, request_id}` with stable codes. Bodies never carry SQL, stack traces or
//! personal data; the cause of an internal error goes to the log under the request id.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, set by `telemetry::RequestId` for the handler's task.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".to_string())
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Stable, machine-readable code, e.g. `token_expired`.
    pub code: String,
    /// Human-readable explanation (English).
    pub message: String,
    /// The request id, also in the `x-request-id` header; quote it when reporting a problem.
    pub request_id: String,
    /// Extra facts a client can act on (e.g. the limits after a 413).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 with its own stable code (e.g. `unknown_sort_key`), for input a client can fix.
    #[error("{message}")]
    BadParam { code: &'static str, message: String },
    #[error("{message}")]
    Validation { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthorized(&'static str),
    #[error("forbidden")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("request too large")]
    TooLarge(serde_json::Value),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the database is not available")]
    Unavailable,
    /// PostgreSQL: the transaction met a concurrent one (deadlock, serialization failure, or
    /// the same record version written by both); it rolled back and may be run again.
    #[error("the change met a concurrent one and was not made; send it again")]
    Contended,
    /// The database answers but its schema is behind this binary (`/ready` only).
    #[error("database migrations are pending; run `fieldsync migrate` or restart the server")]
    MigrationsPending,
    #[error("storage is full")]
    StorageFull,
    /// `/ready` only: the service cannot take writes now (`storage_full`).
    #[error("not ready: storage is full; writes are refused until space is freed")]
    NotReady(&'static str),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::BadParam { code, .. } => code,
            AppError::Validation { code, .. } => code,
            AppError::Unauthorized(code) => code,
            AppError::Forbidden(code) => code,
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge(_) => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::Unavailable => "unavailable",
            AppError::Contended => "write_contended",
            AppError::MigrationsPending => "migrations_pending",
            AppError::StorageFull => "storage_full",
            AppError::NotReady(code) => code,
            AppError::Internal(_) => "internal",
        }
    }

    pub fn validation(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Validation {
            code,
            message: message.into(),
        }
    }

    pub fn bad_param(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::BadParam {
            code,
            message: message.into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            AppError::Contended => Some(1),
            AppError::Unavailable
            | AppError::MigrationsPending
            | AppError::StorageFull
            | AppError::NotReady(_) => Some(5),
            _ => None,
        }
    }

    fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error; quote the request id".to_string(),
            AppError::Unauthorized(code) => match *code {
                "token_expired" => "the access token has expired; refresh it".to_string(),
                "invalid_credentials" => "wrong username or password".to_string(),
                "invalid_enrolment_code" => {
                    "the enrolment code is wrong, used or expired; ask for a new one".to_string()
                }
                "session_ended" => {
                    "the session has ended (signed out, device revoked or password changed); sign in again"
                        .to_string()
                }
                _ => "missing or invalid credentials".to_string(),
            },
            AppError::Forbidden(code) => match *code {
                "device_revoked" => "this device has been revoked".to_string(),
                "csrf_check_failed" => {
                    "send X-Fieldsync-Csrf: 1 from this server's own pages".to_string()
                }
                _ => "this role may not do that".to_string(),
            },
            other => other.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::BadParam { .. } => StatusCode::BAD_REQUEST,
            AppError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable
            | AppError::Contended
            | AppError::MigrationsPending
            | AppError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = current_request_id();
        if let AppError::Internal(cause) = self {
            tracing::error!(request_id = %request_id, cause = %cause, "internal error");
        }
        let details = match self {
            AppError::TooLarge(limits) => Some(limits.clone()),
            _ => None,
        };
        let body = Problem {
            code: self.code().to_string(),
            message: self.public_message(),
            request_id,
            details,
        };
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(secs) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let AppError::MethodNotAllowed { allow } = self {
            res.insert_header((header::ALLOW, allow.clone()));
        }
        res.json(body)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        classify_db_error(&e)
    }
}

/// Sorts a database error into what the client should do: trouble with the database itself
/// (connection lost, locked, disk full) is transient and answers 503/507 with Retry-After.
pub fn classify_db_error(e: &diesel::result::Error) -> AppError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::NotFound => AppError::NotFound,
        Error::DatabaseError(kind, info) => {
            let msg = info.message().to_ascii_lowercase();
            // PostgreSQL cannot store a NUL character in text or jsonb; only a client sends one.
            if msg.contains("0x00") || msg.contains("\\u0000") || msg.contains("unicode escape") {
                return AppError::bad_param("bad_text", "text may not contain NUL characters");
            }
            if msg.contains("database or disk is full")
                || msg.contains("no space left")
                || msg.contains("disk i/o error")
                || msg.contains("could not extend file")
                || msg.contains("could not write")
            {
                warn_storage_full(&format!("{kind:?}: {msg}"));
                AppError::StorageFull
            } else if matches!(kind, DatabaseErrorKind::SerializationFailure)
                || msg.contains("deadlock detected")
                || (matches!(kind, DatabaseErrorKind::UniqueViolation)
                    && info.constraint_name() == Some("record_versions_pkey"))
            {
                AppError::Contended
            } else if matches!(kind, DatabaseErrorKind::ClosedConnection)
                || msg.contains("database is locked")
                || msg.contains("terminating connection")
                || msg.contains("server closed the connection")
                || msg.contains("connection")
                || msg.contains("shutting down")
                || msg.contains("starting up")
                || msg.contains("recovery mode")
            {
                AppError::Unavailable
            } else {
                AppError::Internal(format!("database: {kind:?}"))
            }
        }
        Error::BrokenTransactionManager => AppError::Unavailable,
        other => AppError::Internal(format!("database: {other}")),
    }
}

/// Logs why writes fail for lack of space, at most once a minute however many requests get
/// 507 (the database's message names a file or the disk, never a value a client sent).
fn warn_storage_full(cause: &str) {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!(cause = %cause, "storage full: writes answer 507 (logged at most once a minute)");
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(_: diesel::r2d2::PoolError) -> Self {
        AppError::Unavailable
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        AppError::Unavailable
    }
}

pub type AppResult<T> = Result<T, AppError>;
