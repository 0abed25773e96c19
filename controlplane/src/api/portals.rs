//! `/api/v1/portals`: network portals (listening addresses), identified by `id`. Each
//! handler is the OpenAPI annotation over one call of the shared [`super::crud`] path.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tgt_proto::Portal;

use super::crud::{self, Keyed, Write};
use super::problems;
use super::{parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// Every portal.
#[utoipa::path(get, path = "/api/v1/portals", tag = "portals",
    responses((status = 200, body = Vec<Portal>)))]
pub async fn list(State(st): State<AppState>) -> Response {
    resource(
        StatusCode::OK,
        &st.service.desired().await.config.iscsi_portals,
    )
}

/// Adds a portal; 409 when its `id` is taken.
#[utoipa::path(post, path = "/api/v1/portals", tag = "portals", request_body = Portal,
    responses((status = 201, body = Portal), problems::BadRequest, problems::Conflict, problems::Unprocessable))]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(portal): JsonBody<Portal>,
) -> Result<Response, ApiError> {
    let id = portal.id;
    let location = format!("/api/v1/portals/{id}");
    let at = Keyed::<Portal>(id);
    crud::put(
        &st,
        at,
        &HeaderMap::new(),
        portal,
        Write::Create { location },
    )
    .await
}

/// One portal.
#[utoipa::path(get, path = "/api/v1/portals/{id}", tag = "portals",
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 200, body = Portal), problems::NotFound))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    crud::get(&st, Keyed::<Portal>(parse_param("id", &raw)?)).await
}

/// Replaces a portal; honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/portals/{id}", tag = "portals", request_body = Portal,
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 200, body = Portal), problems::BadRequest, problems::NotFound, problems::Conflict, problems::PreconditionFailed, problems::Unprocessable))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(portal): JsonBody<Portal>,
) -> Result<Response, ApiError> {
    let at = Keyed::<Portal>(parse_param("id", &raw)?);
    crud::put(&st, at, &headers, portal, Write::Replace).await
}

/// Removes a portal; 409 while a target's portal group lists it.
#[utoipa::path(delete, path = "/api/v1/portals/{id}", tag = "portals",
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 204), problems::NotFound, problems::Conflict, problems::PreconditionFailed))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crud::delete(&st, Keyed::<Portal>(parse_param("id", &raw)?), &headers).await
}
