//! `POST /api/v1/sync/push` and `POST /api/v1/sync/pull`: parse, call the sync services, map.

use std::io::Read;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use crate::api::safe_serde_message;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::settings::Limits;
use crate::sync::protocol::{PullRequest, PullResponse, PushRequest, PushResponse};
use crate::sync::{pull, push};
use crate::AppState;

/// How long a push waits for a free slot before answering 503.
const GATE_WAIT: Duration = Duration::from_secs(2);

fn limits_body(l: &Limits) -> serde_json::Value {
    json!({
        "max_body_bytes": l.max_body_bytes,
        "max_inflated_bytes": l.max_inflated_bytes,
        "max_ops_per_batch": l.max_ops_per_batch,
    })
}

/// Reads the body with a cap on the bytes received and, for gzip, on the inflated size.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, l: &Limits) -> AppResult<Vec<u8>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(AppError::UnsupportedMediaType);
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if len > l.max_body_bytes {
            return Err(AppError::TooLarge(limits_body(l)));
        }
    }
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(l.body_timeout_secs.max(1));
    while let Some(chunk) = tokio::time::timeout_at(deadline, payload.next())
        .await
        .map_err(|_| AppError::BadRequest("the request body did not arrive in time".into()))?
    {
        let chunk =
            chunk.map_err(|_| AppError::BadRequest("the request body was cut off".into()))?;
        if body.len() + chunk.len() > l.max_body_bytes {
            return Err(AppError::TooLarge(limits_body(l)));
        }
        body.extend_from_slice(&chunk);
    }
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            let mut dec =
                flate2::read::GzDecoder::new(&body[..]).take(l.max_inflated_bytes as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|_| AppError::BadRequest("the gzip body is corrupt".into()))?;
            if out.len() > l.max_inflated_bytes {
                return Err(AppError::TooLarge(limits_body(l)));
            }
            Ok(out)
        }
        _ => Err(AppError::UnsupportedMediaType),
    }
}

fn device_of(p: &Principal) -> AppResult<String> {
    p.device_id
        .clone()
        .ok_or(AppError::Forbidden("device_required"))
}

/// Push a batch of operations.
///
/// Each op gets its own result: `applied` (with the new version and any conflicts),
/// `duplicate` (seq already applied: the first answer is returned again in `first`),
/// `redirected` (the record was merged into `canonical_id`; applied there) or `rejected`
/// (stable `code`, `retryable: false`; the payload is kept on the server). `last_seq` is the
/// last seq the server holds for the device, a rejected op's included. A gap in `seq` stops
/// processing at `stopped_at` (`stop_reason: gap`); a transient failure after part of a large
/// batch was committed stops there too (`stop_reason: transient`, `retry_after` seconds).
/// Bodies may be gzip-compressed (`Content-Encoding: gzip`).
#[utoipa::path(post, path = "/api/v1/sync/push", tag = "sync",
    request_body(content = PushRequest, examples(
        ("every result kind" = (summary = "A resend after a lost answer: seq 7 was applied before; the rest is new",
          value = json!({"ops": [
            {"seq": 7, "op_id": "0192f0c1-0000-7000-8000-000000000007", "entity": "visit", "id": "0192f0c1-0000-7000-8000-0000000000cc",
             "kind": "create", "set": {"org_unit": "130131102201", "person_id": "0192f0c1-0000-7000-8000-0000000000bb", "kind": "iud_check",
             "visit_date": "2026-11-23"}, "recorded_at": "2026-11-23T08:40:00+08:00"},
            {"seq": 8, "op_id": "0192f0c1-0000-7000-8000-000000000008", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa",
             "kind": "create", "set": {"org_unit": "130131102201", "name": "王芳", "sex": "female", "birth_date": "1990-02-03",
             "id_number": "130131199002030025", "marital_status": "first_marriage"}, "recorded_at": "2026-11-23T09:15:00+08:00"},
            {"seq": 9, "op_id": "0192f0c1-0000-7000-8000-000000000009", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000bb",
             "kind": "update", "base_version": 3, "set": {"marital_status": "divorced"}, "recorded_at": "2026-11-23T10:00:00+08:00"},
            {"seq": 10, "op_id": "0192f0c1-0000-7000-8000-000000000010", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000dd",
             "kind": "update", "base_version": 1, "set": {"phone": "13800000000"}, "recorded_at": "2026-11-23T10:20:00+08:00"},
            {"seq": 11, "op_id": "0192f0c1-0000-7000-8000-000000000011", "entity": "measure", "id": "0192f0c1-0000-7000-8000-0000000000ff",
             "kind": "create", "set": {"org_unit": "130131103201", "person_id": "0192f0c1-0000-7000-8000-0000000000bb", "method": "pills",
             "started_on": "2026-11-23"}, "recorded_at": "2026-11-23T11:00:00+08:00"}
          ], "sent_at": "2026-11-23T18:30:00+08:00"}))),
        ("a gap" = (summary = "seq 14 never reached the server: processing stops at 15",
          value = json!({"ops": [
            {"seq": 12, "op_id": "0192f0c1-0000-7000-8000-000000000012", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa",
             "kind": "update", "base_version": 1, "set": {"phone": "13900000000"}, "recorded_at": "2026-11-24T09:00:00+08:00"},
            {"seq": 13, "op_id": "0192f0c1-0000-7000-8000-000000000013", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa",
             "kind": "update", "base_version": 2, "set": {"relation": "spouse"}, "recorded_at": "2026-11-24T09:05:00+08:00"},
            {"seq": 15, "op_id": "0192f0c1-0000-7000-8000-000000000015", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa",
             "kind": "update", "base_version": 3, "set": {"notes": "外出务工"}, "recorded_at": "2026-11-24T09:30:00+08:00"}
          ]})))
    )),
    responses(
        (status = 200, body = PushResponse, examples(
            ("every result kind" = (summary = "One result per op; last_seq is the last op processed, a rejected one included",
              value = json!({"device_id": "0192f0c1-0000-7000-8000-0000000000d1", "last_seq": 11, "results": [
                {"seq": 7, "op_id": "0192f0c1-0000-7000-8000-000000000007", "status": "duplicate", "entity": "visit", "id": "0192f0c1-0000-7000-8000-0000000000cc", "version": 1,
                 "first": {"seq": 7, "op_id": "0192f0c1-0000-7000-8000-000000000007", "status": "applied", "entity": "visit", "id": "0192f0c1-0000-7000-8000-0000000000cc", "version": 1}},
                {"seq": 8, "op_id": "0192f0c1-0000-7000-8000-000000000008", "status": "applied", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa", "version": 1},
                {"seq": 9, "op_id": "0192f0c1-0000-7000-8000-000000000009", "status": "applied", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000bb", "version": 5,
                 "conflicts": [{"id": "0192f0c1-0000-7000-8000-0000000000c1", "entity": "person", "record_id": "0192f0c1-0000-7000-8000-0000000000bb", "field": "marital_status",
                  "kind": "field", "policy": "review", "status": "open", "winner": "server", "base_value": "unmarried", "server_value": "first_marriage", "device_value": "divorced"}]},
                {"seq": 10, "op_id": "0192f0c1-0000-7000-8000-000000000010", "status": "redirected", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000dd", "version": 3, "canonical_id": "0192f0c1-0000-7000-8000-0000000000ee"},
                {"seq": 11, "op_id": "0192f0c1-0000-7000-8000-000000000011", "status": "rejected", "entity": "measure", "id": "0192f0c1-0000-7000-8000-0000000000ff", "code": "out_of_scope", "message": "org_unit is outside your villages", "retryable": false}
              ]}))),
            ("a gap" = (summary = "Stopped at the op after the gap; resend from seq 14",
              value = json!({"device_id": "0192f0c1-0000-7000-8000-0000000000d1", "last_seq": 13, "results": [
                {"seq": 12, "op_id": "0192f0c1-0000-7000-8000-000000000012", "status": "applied", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa", "version": 2},
                {"seq": 13, "op_id": "0192f0c1-0000-7000-8000-000000000013", "status": "applied", "entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000aa", "version": 3}
              ], "stopped_at": 15, "stop_reason": "gap"})))
        )),
        (status = 400, description = "Malformed envelope", body = crate::error::Problem),
        (status = 401, description = "Bad or expired token", body = crate::error::Problem),
        (status = 403, description = "Revoked device, or no device in the token", body = crate::error::Problem),
        (status = 413, description = "Too large; `details` carries the limits", body = crate::error::Problem),
        (status = 415, description = "Not JSON, or an unknown Content-Encoding", body = crate::error::Problem),
        (status = 503, description = "Busy or database away; see Retry-After", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn push_batch(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> AppResult<HttpResponse> {
    let received_at = crate::db::now_micros();
    let limits = &state.settings.limits;
    let device_id = device_of(&principal)?;
    let body = read_body(&req, payload, limits).await?;
    crate::api::check_json_depth(&body, limits.max_json_depth)?;
    let request: PushRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed push: {}", safe_serde_message(&e))))?;
    let clock_offset_ms = request
        .sent_at
        .as_deref()
        .map(|s| push::clock_offset_ms(s, received_at))
        .transpose()?;
    if request.ops.len() > limits.max_ops_per_batch {
        return Err(AppError::TooLarge(limits_body(limits)));
    }
    let _permit = tokio::time::timeout(GATE_WAIT, state.push_gate.clone().acquire_owned())
        .await
        .map_err(|_| {
            crate::metrics::global().push_busy();
            AppError::Unavailable
        })?
        .map_err(|_| AppError::Unavailable)?;
    let db = state.db.clone();
    let response: PushResponse = web::block(move || {
        let scope = db.read(|c| principal.scope(c))?;
        let caller = push::Caller {
            user_id: principal.user_id,
            device_id: device_id.into(),
            scope,
            clock_offset_ms,
        };
        push::push(&db, &caller, request.ops)
    })
    .await??;
    crate::metrics::global().ops(response.results.iter().map(|r| r.status));
    Ok(HttpResponse::Ok().json(response))
}

/// Pull changes in the device's scope after its cursor.
///
/// Records come at their latest version in commit order (tombstones carry `merged_into` when a
/// merge removed them), with the conflicts about them and the device's `last_seq`, all from one
/// snapshot. Continue with `next_cursor` while `has_more`. On `reset_required`, fetch a fresh
/// snapshot with cursor 0, then push unsynced local ops.
#[utoipa::path(post, path = "/api/v1/sync/pull", tag = "sync",
    request_body(content = PullRequest, example = json!({"cursor": 1520, "limit": 500})),
    responses(
        (status = 200, body = PullResponse, example = json!({"records": [
            {"entity": "person", "id": "0192f0c1-0000-7000-8000-0000000000dd", "org_unit": "130131102201", "version": 4, "deleted": true,
             "merged_into": "0192f0c1-0000-7000-8000-0000000000ee", "fields": {"name": "王芳", "sex": "female", "birth_date": "1990-02-03"}, "change_seq": 1601}],
            "conflicts": [], "last_seq": 42, "next_cursor": 1601, "has_more": false, "reset_required": false})),
        (status = 400, description = "Bad cursor or page size", body = crate::error::Problem),
        (status = 401, description = "Bad or expired token", body = crate::error::Problem),
        (status = 403, description = "Revoked device, or no device in the token", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn pull_changes(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<PullRequest>,
) -> AppResult<HttpResponse> {
    let limits = state.settings.limits.clone();
    if body
        .limit
        .is_some_and(|l| l == 0 || l > limits.max_page_size)
    {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {}",
            limits.max_page_size
        )));
    }
    let device_id = device_of(&principal)?;
    let db = state.db.clone();
    let (response, scope_news, puller): (pull::PullPage, bool, pull::Puller) =
        web::block(move || {
            let scope = db.read(|c| principal.scope(c))?;
            let puller = pull::Puller {
                user_id: principal.user_id,
                device_id,
                scope,
            };
            let (resp, news) = pull::pull(
                &db,
                &puller,
                &body,
                limits.max_page_size,
                limits.default_page_size,
            )?;
            Ok::<_, AppError>((resp, news, puller))
        })
        .await??;
    // The bookkeeping write waits for the writer. A new scope is recorded before answering, so
    // the next pull is judged against it; otherwise the answer, read from its snapshot, does not wait.
    let db = state.db.clone();
    let fingerprint = (!response.reset_required).then(|| puller.scope.fingerprint());
    let cursor = response.next_cursor;
    let record = move || pull::record_pull(&db, &puller.device_id, fingerprint.as_deref(), cursor);
    if scope_news && !response.reset_required {
        web::block(record).await??;
    } else {
        actix_web::rt::spawn(async move {
            let _ = web::block(record).await;
        });
    }
    Ok(HttpResponse::Ok().json(response))
}
