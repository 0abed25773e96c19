//! `/api/v1/targets`: targets keyed by iSCSI name, each with its portal groups (`tpgts`)
//! and LUN map. `PUT` creates (201) or replaces (200); `If-None-Match: *` makes it
//! create-only and `If-Match` replace-only.
//!
//! Each handler is the OpenAPI annotation over one call of the shared
//! [`super::crud`] path.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use tgt_proto::Target;

use super::crud::{self, TargetAt, Write};
use super::problems;
use super::{resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Every target by name.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, body = std::collections::BTreeMap<String, Target>)))]
pub async fn list(State(st): State<AppState>) -> Response {
    let mut targets = st.service.desired().await.config.iscsi_targets;
    // CHAP secrets are write-only.
    targets.values_mut().for_each(Target::redact_secrets);
    resource(StatusCode::OK, &targets)
}

/// One target.
#[utoipa::path(get, path = "/api/v1/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = Target), problems::NotFound))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    crud::get(&st, TargetAt(&name)).await
}

/// Creates or replaces a target.
///
/// CHAP secrets are write-only: a `secret` or `mutualSecret` the body omits keeps the one
/// stored for this target, so a target read with GET can be written back unchanged;
/// removing `auth.chap` removes CHAP.
#[utoipa::path(put, path = "/api/v1/targets/{name}", tag = "targets", request_body = Target,
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = Target), (status = 201, body = Target), problems::BadRequest, problems::Conflict, problems::PreconditionFailed, problems::Unprocessable))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    JsonBody(target): JsonBody<Target>,
) -> Result<Response, ApiError> {
    let create_only = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let mode = if create_only {
        Write::CreateOnly
    } else {
        Write::Upsert
    };
    crud::put(&st, TargetAt(&name), &headers, target, mode).await
}

/// Removes a target.
#[utoipa::path(delete, path = "/api/v1/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 204), problems::NotFound, problems::Conflict, problems::PreconditionFailed))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crud::delete(&st, TargetAt(&name), &headers).await
}
