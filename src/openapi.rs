//! The OpenAPI document, generated from the handlers' annotations. api-spec/openapi.json is
//! written from it (`fieldsync openapi`), and a test fails when the committed file differs.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "fieldsync", description = "Sync backend for village population and family-planning field work (人口计生). Errors are application/problem+json with a stable `code`, a `message` and the `request_id`."),
    paths(
        crate::api::health::health,
        crate::api::health::ready,
        crate::api::health::openapi_spec,
    ),
    components(schemas(crate::error::Problem)),
    tags((name = "health", description = "Liveness, readiness and this document"))
)]
pub struct ApiDoc;

/// The document as committed to api-spec/openapi.json.
pub fn pretty_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}
