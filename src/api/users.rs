//! Accounts: created and listed by admins; a worker's villages reassigned by an admin or a
//! supervisor of those villages.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::audit::{self, AuditEntry};
use crate::auth::passwords;
use crate::auth::roles::Role;
use crate::auth::users::{self, NewUser, UserView};
use crate::auth::Principal;
use crate::error::{AppResult, Problem};
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub display_name: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    pub role: Role,
    /// A supervisor's township (township_supervisor) or county (county_supervisor).
    #[serde(default)]
    pub org_unit: Option<String>,
    /// A field worker's village or villager-group codes.
    #[serde(default)]
    pub villages: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVillages {
    pub villages: Vec<String>,
}

/// Create an account (admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    security(("bearer" = [])),
    responses((status = 201, body = UserView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateUser>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    passwords::check_new(&body.password)?;
    let hash = state.auth.hasher.hash(body.password).await?;
    let new = NewUser {
        username: body.username,
        display_name: body.display_name,
        role: body.role,
        org_unit: body.org_unit,
        villages: body.villages,
    };
    let db = state.db.clone();
    let user = web::block(move || {
        db.write(|c| {
            let user = users::create(c, &new, &hash)?;
            audit::record(
                c,
                AuditEntry {
                    actor_user: Some(principal.user_id.clone()),
                    actor_role: Some(principal.role.as_str().into()),
                    action: "user_created",
                    target_kind: Some("user".into()),
                    target_ids: vec![user.id.clone()],
                    request_id: principal.request_id.clone(),
                    detail: Some(serde_json::json!({ "role": user.role.as_str(), "org_unit": user.org_unit, "villages": user.villages })),
                },
            )?;
            Ok(user)
        })
    })
    .await??;
    Ok(HttpResponse::Created().json(user))
}

/// All accounts (admins).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = Problem)))]
pub async fn list(principal: Principal, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let _ = principal;
    let db = state.db.clone();
    let list = web::block(move || db.read(users::list)).await??;
    Ok(HttpResponse::Ok().json(list))
}

/// Reassign a field worker's villages (admins, or a supervisor of the worker and of every new
/// village; outside the supervisor's subtree the worker is not found).
#[utoipa::path(put, path = "/api/v1/users/{id}/villages", tag = "users", request_body = SetVillages,
    params(("id" = String, Path, description = "user id")),
    security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_villages(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SetVillages>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let villages = body.into_inner().villages;
    let db = state.db.clone();
    let user = web::block(move || {
        db.write(|c| {
            let scope = match principal.role {
                Role::Admin => None,
                _ => Some(principal.scope(c)?),
            };
            let user = users::set_villages(c, &id, &villages, scope.as_ref())?;
            audit::record(
                c,
                AuditEntry {
                    actor_user: Some(principal.user_id.clone()),
                    actor_role: Some(principal.role.as_str().into()),
                    action: "user_villages_changed",
                    target_kind: Some("user".into()),
                    target_ids: vec![user.id.clone()],
                    request_id: principal.request_id.clone(),
                    detail: Some(serde_json::json!({ "villages": user.villages })),
                },
            )?;
            Ok(user)
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(user))
}
