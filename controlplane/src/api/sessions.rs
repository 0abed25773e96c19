//! `/api/v1/sessions`: logged-in iSCSI sessions, and force-closing one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tgt_proto::socket::SessionInfo;

use super::problems;
use super::{parse_param, AppState, PathParams};
use crate::error::ApiError;

/// The data plane's sessions; 503 when it is not reachable.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = Vec<SessionInfo>), problems::Unavailable))]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    Ok(Json(st.service.sessions().await?))
}

/// Closes every connection of a session.
#[utoipa::path(delete, path = "/api/v1/sessions/{tsih}", tag = "sessions",
    params(("tsih" = u16, Path, description = "The session's TSIH")),
    responses((status = 204), problems::NotFound, problems::Unavailable))]
pub async fn delete(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    let tsih: u16 = parse_param("tsih", &raw)?;
    st.service.close_session(tsih).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
