//! `/api/v1/targets/{name}/luns`: a target's LUN map, one LUN → storage mapping each.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::targets::not_found as no_target;
use super::{check_if_match, etag_of, parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Which storage a LUN maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LunMapping {
    /// `deviceID` of the storage behind the LUN.
    #[serde(rename = "deviceID")]
    pub device_id: u64,
}

/// The LUN map of a target: LUN (decimal string) → `deviceID`.
#[utoipa::path(get, path = "/api/v1/targets/{name}/luns", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = std::collections::BTreeMap<String, u64>),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    let d = st.service.desired().await;
    let t = d
        .config
        .iscsi_targets
        .get(&name)
        .ok_or_else(|| no_target(&name))?;
    Ok(resource(StatusCode::OK, &t.luns))
}

/// One LUN.
#[utoipa::path(get, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 200, body = LunMapping),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    let d = st.service.desired().await;
    let t = d
        .config
        .iscsi_targets
        .get(&name)
        .ok_or_else(|| no_target(&name))?;
    let device_id = *t
        .luns
        .get(&lun.to_string())
        .ok_or_else(|| no_lun(&name, lun))?;
    Ok(resource(StatusCode::OK, &LunMapping { device_id }))
}

/// Maps a LUN to a storage: 201 when new, 200 when replaced.
#[utoipa::path(put, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns", request_body = LunMapping,
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 200, body = LunMapping), (status = 201, body = LunMapping),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
    headers: HeaderMap,
    JsonBody(mapping): JsonBody<LunMapping>,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    let (created, _) = st
        .service
        .update(|c, _| {
            let t = c
                .iscsi_targets
                .get_mut(&name)
                .ok_or_else(|| no_target(&name))?;
            let existing = t
                .luns
                .get(&lun.to_string())
                .map(|d| etag_of(&LunMapping { device_id: *d }));
            check_if_match(&headers, existing.as_deref())?;
            Ok(t.luns.insert(lun.to_string(), mapping.device_id).is_none())
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(resource(status, &mapping))
}

/// Unmaps a LUN; 409 when the data plane reports a session using the target.
#[utoipa::path(delete, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 204),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    st.service
        .update(|c, _| {
            let t = c
                .iscsi_targets
                .get_mut(&name)
                .ok_or_else(|| no_target(&name))?;
            let device_id = *t
                .luns
                .get(&lun.to_string())
                .ok_or_else(|| no_lun(&name, lun))?;
            check_if_match(&headers, Some(&etag_of(&LunMapping { device_id })))?;
            t.luns.remove(&lun.to_string());
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_lun(name: &str, lun: u16) -> ApiError {
    ApiError::NotFound(format!("target {name} has no lun {lun}"))
}
