//! `/healthz` (the process is up) and `/readyz` (the data plane is connected and runs the
//! desired config).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub use tgt_proto::api::{Health, HealthStatus};

use super::AppState;
use crate::error::ApiError;

/// Always 200 while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves HTTP", body = Health)))]
pub async fn healthz() -> Response {
    Json(Health {
        status: HealthStatus::Ok,
    })
    .into_response()
}

/// 200 when the data plane is connected and in sync, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The data plane runs the desired config", body = Health),
        (status = 503, description = "The data plane is not connected or not in sync", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.service.ready().await {
        Json(Health {
            status: HealthStatus::Ready,
        })
        .into_response()
    } else {
        ApiError::Unavailable("not connected, or the desired config is not applied yet".into())
            .into_response()
    }
}
