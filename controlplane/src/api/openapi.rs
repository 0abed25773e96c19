//! The OpenAPI document, generated from the handlers' annotations and the `tgt-proto`
//! types (their doc comments become the descriptions). The same document is checked in
//! as `openapi/openapi.json`; a test fails when they differ.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

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
    components(schemas(crate::service::DryRun, crate::service::ConfigDiff)),
    modifiers(&ApiWideRules)
)]
pub struct ApiDoc;

/// Rules that hold for every operation, applied here once instead of being repeated in
/// each handler's annotation:
///
/// * the operationId is `<tag>_<handler>`, because utoipa's default (the bare function
///   name) repeats across resources (`get`, `list`, `put`...) and must be unique;
/// * every mutating call (any method but GET, HEAD and OPTIONS) can answer 401, because
///   the bearer-token guard in the router refuses it without the token;
/// * every call with a body can answer 413, because [`JsonBody`](super::JsonBody) refuses
///   bodies over [`BODY_BYTES_MAX`](super::BODY_BYTES_MAX);
/// * every call with a path parameter can answer 400, because
///   [`PathParams`](super::PathParams) refuses one that is not UTF-8 and
///   [`parse_param`](super::parse_param) one that is not a number.
struct ApiWideRules;

impl Modify for ApiWideRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.options, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
                (&mut item.trace, true),
            ];
            for (op, mutating) in ops {
                if let Some(op) = op.as_mut() {
                    apply_rules(op, mutating);
                }
            }
        }
    }
}

fn apply_rules(op: &mut Operation, mutating: bool) {
    if let (Some(tag), Some(id)) = (
        op.tags.as_ref().and_then(|t| t.first()),
        op.operation_id.as_ref(),
    ) {
        if !id.starts_with(&format!("{tag}_")) {
            op.operation_id = Some(format!("{tag}_{id}"));
        }
    }
    if mutating {
        add_problem(op, "401", "Missing or wrong bearer token");
    }
    if op.request_body.is_some() {
        add_problem(op, "413", "Body too large");
    }
    let path_params = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
    if path_params {
        add_problem(op, "400", "A path parameter is not valid");
    }
}

/// Declares an `application/problem+json` response, unless the handler declares one.
fn add_problem(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            let mut r = utoipa::openapi::Response::new(description);
            r.content.insert(
                "application/problem+json".to_string(),
                Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
            );
            RefOr::T(r)
        });
}

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
