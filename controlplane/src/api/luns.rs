//! `/api/v1/targets/{name}/luns`: a target's LUN map, one LUN → storage mapping each.
//! Each handler is the OpenAPI annotation over one call of the shared
//! [`super::crud`] path.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tgt_proto::api::LunMapping;

use super::crud::{self, LunAt, TargetAt, Write};
use super::problems;
use super::{parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// The LUN map of a target: LUN (decimal string) → `deviceID`.
#[utoipa::path(get, path = "/api/v1/targets/{name}/luns", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name")),
    responses((status = 200, body = std::collections::BTreeMap<String, u64>), problems::NotFound))]
pub async fn list(
    State(st): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    let d = st.service.desired().await;
    let t = TargetAt(&name).find(&d.config)?;
    Ok(resource(StatusCode::OK, &t.luns))
}

/// One LUN.
#[utoipa::path(get, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 200, body = LunMapping), problems::NotFound))]
pub async fn get(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    crud::get(&st, LunAt { target: &name, lun }).await
}

/// Maps a LUN to a storage: 201 when new, 200 when replaced.
#[utoipa::path(put, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns", request_body = LunMapping,
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 200, body = LunMapping), (status = 201, body = LunMapping), problems::BadRequest, problems::NotFound, problems::Conflict, problems::PreconditionFailed, problems::Unprocessable))]
pub async fn put(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
    headers: HeaderMap,
    JsonBody(mapping): JsonBody<LunMapping>,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    crud::put(
        &st,
        LunAt { target: &name, lun },
        &headers,
        mapping,
        Write::Upsert,
    )
    .await
}

/// Unmaps a LUN; 409 when the data plane reports a session using the target.
#[utoipa::path(delete, path = "/api/v1/targets/{name}/luns/{lun}", tag = "luns",
    params(("name" = String, Path, description = "The target's iSCSI name"),
        ("lun" = u16, Path, description = "The LUN (0..=16383)")),
    responses((status = 204), problems::NotFound, problems::Conflict, problems::PreconditionFailed))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams((name, raw)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lun: u16 = parse_param("lun", &raw)?;
    crud::delete(&st, LunAt { target: &name, lun }, &headers).await
}
