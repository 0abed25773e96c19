//! `/api/v1/storages`: backing stores, identified by `deviceID`. Each handler is the
//! OpenAPI annotation over one call of the shared [`super::crud`] path.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tgt_proto::Storage;

use super::crud::{self, Keyed, Write};
use super::problems;
use super::{parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Every storage.
#[utoipa::path(get, path = "/api/v1/storages", tag = "storages",
    responses((status = 200, body = Vec<Storage>)))]
pub async fn list(State(st): State<AppState>) -> Response {
    resource(StatusCode::OK, &st.service.desired().await.config.storages)
}

/// Adds a storage; 409 when its `deviceID` is taken.
#[utoipa::path(post, path = "/api/v1/storages", tag = "storages", request_body = Storage,
    responses((status = 201, body = Storage), problems::BadRequest, problems::Conflict, problems::Unprocessable))]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(storage): JsonBody<Storage>,
) -> Result<Response, ApiError> {
    let id = storage.device_id;
    let location = format!("/api/v1/storages/{id}");
    let at = Keyed::<Storage>(id);
    crud::put(
        &st,
        at,
        &HeaderMap::new(),
        storage,
        Write::Create { location },
    )
    .await
}

/// One storage.
#[utoipa::path(get, path = "/api/v1/storages/{device_id}", tag = "storages",
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 200, body = Storage), problems::NotFound))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    crud::get(&st, Keyed::<Storage>(parse_param("deviceID", &raw)?)).await
}

/// Replaces a storage; honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/storages/{device_id}", tag = "storages", request_body = Storage,
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 200, body = Storage), problems::BadRequest, problems::NotFound, problems::Conflict, problems::PreconditionFailed, problems::Unprocessable))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(storage): JsonBody<Storage>,
) -> Result<Response, ApiError> {
    let at = Keyed::<Storage>(parse_param("deviceID", &raw)?);
    crud::put(&st, at, &headers, storage, Write::Replace).await
}

/// Removes a storage; 409 while a LUN uses it.
#[utoipa::path(delete, path = "/api/v1/storages/{device_id}", tag = "storages",
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 204), problems::NotFound, problems::Conflict, problems::PreconditionFailed))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let at = Keyed::<Storage>(parse_param("deviceID", &raw)?);
    crud::delete(&st, at, &headers).await
}
