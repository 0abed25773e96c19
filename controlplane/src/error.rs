//! The one error type of the REST layer and its `application/problem+json` rendering
//! (RFC 9457): every failure names a stable `type`, the HTTP status and, where one field
//! is at fault, its JSON path.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use tgt_proto::api::Problem;
use tgt_proto::socket::Refusal;
use tgt_proto::FieldError;

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with existing config (duplicate id, a reference still in use).
    #[error("{0}")]
    Conflict(String),
    /// The data plane refused the change because of its live state.
    #[error("the data plane refused the change: {0}")]
    Refused(Refusal),
    /// `If-Match` or `If-None-Match` did not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body is not the JSON the endpoint takes.
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// JSON path of the field at fault, if one is.
        path: Option<String>,
    },
    /// The resulting config fails validation.
    #[error("the config is not valid ({} errors)", .0.len())]
    Invalid(Vec<FieldError>),
    /// A mutating call without the bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The body is larger than the limit.
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The data plane cannot be reached for a live view.
    #[error("the data plane is not reachable: {0}")]
    Unavailable(String),
    /// Something on our side failed (such as writing the state file).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Refused(r) => match r {
                Refusal::Invalid { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "Invalid config",
                ),
                Refusal::Malformed { .. } => {
                    (StatusCode::BAD_REQUEST, "malformed", "Malformed request")
                }
                Refusal::NoSuchSession { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
                _ => (
                    StatusCode::CONFLICT,
                    "dataplane-refused",
                    "Refused by the data plane",
                ),
            },
            ApiError::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid config",
            ),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "dataplane-unavailable",
                "Data plane unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        let errors = match self {
            ApiError::Invalid(errors) | ApiError::Refused(Refusal::Invalid { errors }) => {
                errors.clone()
            }
            ApiError::BadRequest {
                path: Some(path),
                detail,
            } => vec![FieldError {
                path: path.clone(),
                message: detail.clone(),
            }],
            _ => Vec::new(),
        };
        Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
