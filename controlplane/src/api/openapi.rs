//! The OpenAPI document, generated from the handlers' annotations and the `tgt-proto`
//! types (their doc comments become the descriptions). The same document is checked in
//! as `openapi/openapi.json`; a test fails when they differ.

use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tgt control plane",
        description = "REST API of the iSCSI target's control plane. Mutating calls need `Authorization: Bearer <token>` when a token is configured. Errors are `application/problem+json` naming the JSON path of the field at fault.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::config::get,
        super::config::put,
        super::storages::list,
        super::storages::create,
        super::storages::get,
        super::storages::put,
        super::storages::delete,
        super::portals::list,
        super::portals::create,
        super::portals::get,
        super::portals::put,
        super::portals::delete,
        super::targets::list,
        super::targets::get,
        super::targets::put,
        super::targets::delete,
        super::luns::list,
        super::luns::get,
        super::luns::put,
        super::luns::delete,
        super::performance::get,
        super::performance::put,
        super::performance::delete,
        super::status::get,
        super::sessions::list,
        super::sessions::delete,
        super::health::healthz,
        super::health::readyz,
        super::metrics::get,
        get,
    ),
    components(schemas(crate::service::DryRun, crate::service::ConfigDiff))
)]
pub struct ApiDoc;

/// The spec as pretty JSON with a trailing newline, exactly as checked in.
pub fn spec_json() -> String {
    let mut s = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn get() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        spec_json(),
    )
        .into_response()
}
