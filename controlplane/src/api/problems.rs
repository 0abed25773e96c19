//! The problem responses the OpenAPI annotations share: one type per status, each an
//! RFC 9457 `application/problem+json` document ([`Problem`]) whose `detail` names what
//! failed. A handler's annotation lists the ones it can return, so every path describes a
//! status the same way and the status → meaning table lives here once.
//!
//! The types exist for the spec only; handlers return [`crate::error::ApiError`].

#![allow(dead_code)] // the wrapped Problem is read by utoipa's derive, never by code

use utoipa::IntoResponses;

use crate::error::Problem;

/// Malformed JSON, an unknown field, a wrong type, a value outside its declared range or
/// a bad path parameter.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub struct BadRequest(Problem);

/// No such resource.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub struct NotFound(Problem);

/// The change conflicts with the config (an id taken, a resource still in use) or with
/// the data plane's live state (a session using the target, a shrinking storage).
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub struct Conflict(Problem);

/// `If-Match` (or `If-None-Match: *`) does not hold for the current resource.
#[derive(IntoResponses)]
#[response(status = 412, content_type = "application/problem+json")]
pub struct PreconditionFailed(Problem);

/// The resulting config fails validation; the problem lists every error with its path.
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub struct Unprocessable(Problem);

/// The data plane is not connected.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
pub struct Unavailable(Problem);
