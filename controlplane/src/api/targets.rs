//! `/api/v1/targets`: targets keyed by iSCSI name, each with its portal groups (`tpgts`)
//! and LUN map. `PUT` creates (201) or replaces (200); `If-None-Match: *` makes it
//! create-only and `If-Match` replace-only.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tgt_proto::Target;

use super::{check_if_match, etag_of, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Every target by name.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, body = std::collections::BTreeMap<String, Target>)))]
pub async fn list(State(st): State<AppState>) -> Response {
    resource(
        StatusCode::OK,
        &st.service.desired().await.config.iscsi_targets,
    )
}

/// One target.
#[utoipa::path(get, path = "/api/v1/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = Target),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    let d = st.service.desired().await;
    let t = d
        .config
        .iscsi_targets
        .get(&name)
        .ok_or_else(|| not_found(&name))?;
    Ok(resource(StatusCode::OK, t))
}

/// Creates or replaces a target.
#[utoipa::path(put, path = "/api/v1/targets/{name}", tag = "targets", request_body = Target,
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = Target), (status = 201, body = Target),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    JsonBody(target): JsonBody<Target>,
) -> Result<Response, ApiError> {
    let create_only = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let (created, _) = st
        .service
        .update(|c, _| {
            let existing = c.iscsi_targets.get(&name);
            if create_only && existing.is_some() {
                return Err(ApiError::PreconditionFailed(format!(
                    "target {name} already exists"
                )));
            }
            check_if_match(&headers, existing.map(etag_of).as_deref())?;
            Ok(c.iscsi_targets
                .insert(name.clone(), target.clone())
                .is_none())
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(resource(status, &target))
}

/// Removes a target.
#[utoipa::path(delete, path = "/api/v1/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 204),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            let t = c.iscsi_targets.get(&name).ok_or_else(|| not_found(&name))?;
            check_if_match(&headers, Some(&etag_of(t)))?;
            c.iscsi_targets.remove(&name);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 404 for a target name.
pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no target {name}"))
}
