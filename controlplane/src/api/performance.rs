//! `/api/v1/performance`: the process-wide performance settings.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tgt_proto::Performance;

use super::problems;
use super::{check_if_match, etag_of, resource, AppState, JsonBody};
use crate::error::ApiError;

/// The performance settings (`{}` when none are set).
#[utoipa::path(get, path = "/api/v1/performance", tag = "performance",
    responses((status = 200, body = Performance)))]
pub async fn get(State(st): State<AppState>) -> Response {
    let p = st
        .service
        .desired()
        .await
        .config
        .performance
        .unwrap_or_default();
    resource(StatusCode::OK, &p)
}

/// Replaces the performance settings.
#[utoipa::path(put, path = "/api/v1/performance", tag = "performance", request_body = Performance,
    responses((status = 200, body = Performance), problems::BadRequest, problems::Conflict, problems::PreconditionFailed, problems::Unprocessable))]
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(perf): JsonBody<Performance>,
) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            let cur = c.performance.clone().unwrap_or_default();
            check_if_match(&headers, Some(&etag_of(&cur)))?;
            c.performance = Some(perf.clone());
            Ok(())
        })
        .await?;
    Ok(resource(StatusCode::OK, &perf))
}

/// Removes every performance setting (all defaults).
#[utoipa::path(delete, path = "/api/v1/performance", tag = "performance",
    responses((status = 204), problems::Conflict, problems::PreconditionFailed))]
pub async fn delete(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            let cur = c.performance.clone().unwrap_or_default();
            check_if_match(&headers, Some(&etag_of(&cur)))?;
            c.performance = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
