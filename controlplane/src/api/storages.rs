//! `/api/v1/storages`: backing stores, identified by `deviceID`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tgt_proto::Storage;

use super::{check_if_match, etag_of, parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Every storage.
#[utoipa::path(get, path = "/api/v1/storages", tag = "storages",
    responses((status = 200, body = Vec<Storage>)))]
pub async fn list(State(st): State<AppState>) -> Response {
    resource(StatusCode::OK, &st.service.desired().await.config.storages)
}

/// Adds a storage; 409 when its `deviceID` is taken.
#[utoipa::path(post, path = "/api/v1/storages", tag = "storages", request_body = Storage,
    responses((status = 201, body = Storage),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(storage): JsonBody<Storage>,
) -> Result<Response, ApiError> {
    let id = storage.device_id;
    st.service
        .update(|c, _| {
            if c.storages.iter().any(|s| s.device_id == id) {
                return Err(ApiError::Conflict(format!("storage {id} already exists")));
            }
            c.storages.push(storage.clone());
            Ok(())
        })
        .await?;
    let mut resp = resource(StatusCode::CREATED, &storage);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/storages/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// One storage.
#[utoipa::path(get, path = "/api/v1/storages/{device_id}", tag = "storages",
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 200, body = Storage),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    let id: u64 = parse_param("deviceID", &raw)?;
    let d = st.service.desired().await;
    let s = d
        .config
        .storages
        .iter()
        .find(|s| s.device_id == id)
        .ok_or_else(|| not_found(id))?;
    Ok(resource(StatusCode::OK, s))
}

/// Replaces a storage; honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/storages/{device_id}", tag = "storages", request_body = Storage,
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 200, body = Storage),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(storage): JsonBody<Storage>,
) -> Result<Response, ApiError> {
    let id: u64 = parse_param("deviceID", &raw)?;
    if storage.device_id != id {
        return Err(ApiError::BadRequest {
            detail: format!(
                "deviceID {} in the body differs from {id} in the path",
                storage.device_id
            ),
            path: Some("deviceID".into()),
        });
    }
    st.service
        .update(|c, _| {
            let slot = c
                .storages
                .iter_mut()
                .find(|s| s.device_id == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(&headers, Some(&etag_of(slot)))?;
            *slot = storage.clone();
            Ok(())
        })
        .await?;
    Ok(resource(StatusCode::OK, &storage))
}

/// Removes a storage; 409 while a LUN uses it.
#[utoipa::path(delete, path = "/api/v1/storages/{device_id}", tag = "storages",
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 204),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: u64 = parse_param("deviceID", &raw)?;
    st.service
        .update(|c, _| {
            let pos = c
                .storages
                .iter()
                .position(|s| s.device_id == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(&headers, Some(&etag_of(&c.storages[pos])))?;
            for (name, t) in &c.iscsi_targets {
                if let Some((lun, _)) = t.luns.iter().find(|(_, d)| **d == id) {
                    return Err(ApiError::Conflict(format!(
                        "storage {id} is used by lun {lun} of target {name}"
                    )));
                }
            }
            c.storages.remove(pos);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(id: u64) -> ApiError {
    ApiError::NotFound(format!("no storage {id}"))
}
