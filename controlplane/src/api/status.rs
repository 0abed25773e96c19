//! `GET /api/v1/status`: the data plane as the control plane sees it.

use axum::extract::State;
use axum::Json;

use super::AppState;
use crate::service::StatusView;

/// Connection, generations and the data plane's own status.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = StatusView)))]
pub async fn get(State(st): State<AppState>) -> Json<StatusView> {
    Json(st.service.status().await)
}
