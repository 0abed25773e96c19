//! `/api/v1/portals`: network portals (listening addresses), identified by `id`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tgt_proto::Portal;

use super::{check_if_match, etag_of, parse_param, resource, AppState, JsonBody, PathParams};
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
    responses((status = 201, body = Portal),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(portal): JsonBody<Portal>,
) -> Result<Response, ApiError> {
    let id = portal.id;
    st.service
        .update(|c, _| {
            if c.iscsi_portals.iter().any(|s| s.id == id) {
                return Err(ApiError::Conflict(format!("portal {id} already exists")));
            }
            c.iscsi_portals.push(portal.clone());
            Ok(())
        })
        .await?;
    let mut resp = resource(StatusCode::CREATED, &portal);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/portals/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// One portal.
#[utoipa::path(get, path = "/api/v1/portals/{id}", tag = "portals",
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 200, body = Portal),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    let id: u16 = parse_param("id", &raw)?;
    let d = st.service.desired().await;
    let s = d
        .config
        .iscsi_portals
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found(id))?;
    Ok(resource(StatusCode::OK, s))
}

/// Replaces a portal; honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/portals/{id}", tag = "portals", request_body = Portal,
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 200, body = Portal),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(portal): JsonBody<Portal>,
) -> Result<Response, ApiError> {
    let id: u16 = parse_param("id", &raw)?;
    if portal.id != id {
        return Err(ApiError::BadRequest {
            detail: format!("id {} in the body differs from {id} in the path", portal.id),
            path: Some("id".into()),
        });
    }
    st.service
        .update(|c, _| {
            let slot = c
                .iscsi_portals
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(&headers, Some(&etag_of(slot)))?;
            *slot = portal.clone();
            Ok(())
        })
        .await?;
    Ok(resource(StatusCode::OK, &portal))
}

/// Removes a portal; 409 while a target's portal group lists it.
#[utoipa::path(delete, path = "/api/v1/portals/{id}", tag = "portals",
    params(("id" = u16, Path, description = "The portal's id")),
    responses((status = 204),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: u16 = parse_param("id", &raw)?;
    st.service
        .update(|c, _| {
            let pos = c
                .iscsi_portals
                .iter()
                .position(|s| s.id == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(&headers, Some(&etag_of(&c.iscsi_portals[pos])))?;
            for (name, t) in &c.iscsi_targets {
                if let Some((tag, _)) = t.tpgts.iter().find(|(_, ids)| ids.contains(&id)) {
                    return Err(ApiError::Conflict(format!(
                        "portal {id} is in portal group {tag} of target {name}"
                    )));
                }
            }
            c.iscsi_portals.remove(pos);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(id: u16) -> ApiError {
    ApiError::NotFound(format!("no portal {id}"))
}
