//! `GET`/`PUT /api/v1/config`: the whole desired config as one document. Its ETag is the
//! generation; `PUT` honours `If-Match`, keeps CHAP secrets the body omits
//! ([`write_only`]), and `?dry_run=true` answers what the real request would (the same
//! 412 and 422 problems) and, for a valid config, the diff, without applying anything.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
pub use tgt_proto::api::PutConfigReply;
use tgt_proto::Config;

use super::{check_if_match, with_etag, AppState, JsonBody, QueryParams};
use crate::error::ApiError;
use crate::write_only;

/// The ETag of the config at `generation`.
pub fn etag(generation: u64) -> String {
    format!("\"{generation}\"")
}

/// Query of `PUT /config`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Validate and diff only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The desired config.
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, description = "The desired config; ETag is its generation", body = Config)))]
pub async fn get(State(st): State<AppState>) -> Response {
    let mut d = st.service.desired().await;
    // CHAP secrets are write-only: a GET never returns them.
    d.config.redact_secrets();
    with_etag(StatusCode::OK, &d.config, &etag(d.generation))
}

/// Replaces the desired config (or, with `dry_run=true`, only validates and diffs it).
///
/// CHAP secrets are write-only: a `secret` or `mutualSecret` the body omits keeps the one
/// stored for the same target (by name) or for discovery, so a document read with GET can
/// be written back; removing `chap` removes CHAP.
#[utoipa::path(put, path = "/api/v1/config", tag = "config", request_body = Config,
    params(PutQuery),
    responses(
        (status = 200, description = "Applied (or stored while the data plane is away); with dry_run, a DryRun document of a valid config (an invalid one fails with 422 like the real request)", body = PutConfigReply),
        (status = 400, description = "Malformed JSON, unknown field or wrong type", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The data plane refused the change because of live state", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match the current generation", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The config fails validation", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(st): State<AppState>,
    QueryParams(q): QueryParams<PutQuery>,
    headers: HeaderMap,
    JsonBody(config): JsonBody<Config>,
) -> Result<Response, ApiError> {
    if q.dry_run {
        let dry = st
            .service
            .dry_run(config, |generation| {
                check_if_match(&headers, Some(&etag(generation)))
            })
            .await?;
        return Ok(axum::Json(PutConfigReply::DryRun(dry)).into_response());
    }
    let ((), d) = st
        .service
        .update(|c, generation| {
            check_if_match(&headers, Some(&etag(generation)))?;
            let mut config = config;
            write_only::keep_config(&mut config, c);
            *c = config;
            Ok(())
        })
        .await?;
    let generation = d.generation;
    let mut shown = d.config;
    shown.redact_secrets();
    Ok(with_etag(
        StatusCode::OK,
        &PutConfigReply::Applied(shown),
        &etag(generation),
    ))
}
