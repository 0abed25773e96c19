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
        description = "REST API of the iSCSI target's control plane. When the control plane has a bearer token (always, when it listens on an address other than loopback), every call but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`. Errors are `application/problem+json` naming the JSON path of the field at fault; a body the spec declares as an object must be one (an array in its place is 400). CHAP secrets (`secret`, `mutualSecret`) are write-only: no answer carries them, and a write that omits one keeps the secret stored for the same target (or for discovery), so a document read with GET can be written back unchanged; removing `chap` removes CHAP.",
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
        super::alua::get,
        super::alua::put,
        super::alua::delete,
        super::alua::states,
        super::alua::set_state,
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
/// * every call but the health probes ([`OPEN_PATHS`](super::OPEN_PATHS)) can answer 401,
///   because the bearer-token guard in the router refuses it without the token;
/// * every call with a body can answer 413, because [`JsonBody`](super::JsonBody) refuses
///   bodies over [`BODY_BYTES_MAX`](super::BODY_BYTES_MAX), and 400, because it refuses
///   malformed JSON and an array where the schema has an object ([`shape`](super::shape));
/// * every call with a path parameter can answer 400, because
///   [`PathParams`](super::PathParams) refuses one that is not UTF-8 and
///   [`parse_param`](super::parse_param) one that is not a number.
struct ApiWideRules;

impl Modify for ApiWideRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let guarded = !super::OPEN_PATHS.contains(&path.as_str());
            let ops = [
                &mut item.get,
                &mut item.head,
                &mut item.options,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                apply_rules(op, guarded);
            }
        }
    }
}

fn apply_rules(op: &mut Operation, guarded: bool) {
    if let (Some(tag), Some(id)) = (
        op.tags.as_ref().and_then(|t| t.first()),
        op.operation_id.as_ref(),
    ) {
        if !id.starts_with(&format!("{tag}_")) {
            op.operation_id = Some(format!("{tag}_{id}"));
        }
    }
    if guarded {
        add_problem(
            op,
            "401",
            "Missing or wrong bearer token (when the control plane has one)",
        );
    }
    if op.request_body.is_some() {
        add_problem(op, "413", "Body too large");
        add_problem(
            op,
            "400",
            "Malformed JSON, an unknown field, a wrong type, or an array where an object belongs",
        );
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
