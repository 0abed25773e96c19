//! The REST API under `/api/v1`, one file per resource. Handlers parse the request, call
//! the [`Service`] and map its result to a status code; they hold no logic of their own.
//! Shared here: the router, the bearer-token guard and audit trail of changes, the body,
//! path and query extractors that answer bad input with a problem document, and ETags.

pub mod alua;
pub mod config;
pub mod crud;
pub mod health;
pub mod luns;
pub mod metrics;
pub mod openapi;
pub mod performance;
pub mod portals;
pub mod problems;
pub mod sessions;
pub mod shape;
pub mod status;
pub mod storages;
pub mod targets;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use tracing::{info, warn};

use crate::error::ApiError;
use crate::service::Service;
use crate::tls::Peer;

/// Largest request body accepted. A full config with thousands of LUNs fits easily.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The service layer.
    pub service: Arc<Service>,
    /// Bearer token every call but [`OPEN_PATHS`] must present, if set.
    pub token: Option<Arc<str>>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/config", get(config::get).put(config::put))
        .route("/storages", get(storages::list).post(storages::create))
        .route(
            "/storages/{device_id}",
            get(storages::get)
                .put(storages::put)
                .delete(storages::delete),
        )
        .route("/storages/{device_id}/alua", get(alua::states))
        .route(
            "/storages/{device_id}/alua/{group}",
            axum::routing::put(alua::set_state),
        )
        .route("/alua", get(alua::get).put(alua::put).delete(alua::delete))
        .route("/portals", get(portals::list).post(portals::create))
        .route(
            "/portals/{id}",
            get(portals::get).put(portals::put).delete(portals::delete),
        )
        .route("/targets", get(targets::list))
        .route(
            "/targets/{name}",
            get(targets::get).put(targets::put).delete(targets::delete),
        )
        .route("/targets/{name}/luns", get(luns::list))
        .route(
            "/targets/{name}/luns/{lun}",
            get(luns::get).put(luns::put).delete(luns::delete),
        )
        .route(
            "/performance",
            get(performance::get)
                .put(performance::put)
                .delete(performance::delete),
        )
        .route("/status", get(status::get))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{tsih}", axum::routing::delete(sessions::delete))
        .route("/openapi.json", get(openapi::get));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::get))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// Paths served without the bearer token: liveness and readiness probes say only `ok` or
/// `ready`, and a load balancer or kubelet probing them has no token to send.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The bearer-token guard and the audit trail.
///
/// With a token configured, every request but [`OPEN_PATHS`] needs `Authorization: Bearer
/// <token>` (reads too: the config names every target, initiator and network, and
/// `/metrics` every target and LUN), compared in constant time. Every mutating request
/// runs on behalf of its client ([`audit::scope`](crate::audit::scope): the peer address,
/// and "bearer token" when it presented one), and is logged with its outcome; the change
/// itself is logged with its diff where it is committed.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map_or_else(|| "an unknown peer".to_string(), |c| c.0 .0.to_string());
    let mut who = format!("peer {peer}");
    let open = OPEN_PATHS.contains(&req.uri().path());
    if let (false, Some(token)) = (open, &state.token) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            if mutating {
                warn!(who, method = %req.method(), path = req.uri().path(), "change refused: no valid bearer token");
            }
            return ApiError::Unauthorized.into_response();
        }
        who.push_str(" with the bearer token");
    }
    if !mutating {
        return next.run(req).await;
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = crate::audit::scope(who.clone(), next.run(req)).await;
    info!(who, %method, path, status = resp.status().as_u16(), "change request");
    resp
}

/// Compares in time that depends only on the length of `expected` (the configured token),
/// so response timing reveals neither a matching prefix nor the token's length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ e;
    }
    std::hint::black_box(diff) == 0
}

/// A JSON body: malformed JSON, unknown fields, wrong types and an array where the schema
/// has an object ([`shape`]) are 400 naming the JSON path of the field at fault; a body
/// over [`BODY_BYTES_MAX`] is 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + utoipa::ToSchema> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(BODY_BYTES_MAX)
            } else {
                ApiError::BadRequest {
                    detail: r.body_text(),
                    path: None,
                }
            }
        })?;
        // Read once as plain JSON to check the kinds against the schema; a syntax error is
        // left to the typed read below, whose message has the same words and a JSON path.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            shape::check(&T::name(), &value).map_err(|path| ApiError::BadRequest {
                detail: format!("expected a JSON object at {path}, found an array"),
                path: Some(path),
            })?;
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::BadRequest {
                detail: e.inner().to_string(),
                path: Some(if path == "." { "$".into() } else { path }),
            }
        })?;
        de.end().map_err(|e| ApiError::BadRequest {
            detail: e.to_string(),
            path: Some("$".into()),
        })?;
        Ok(JsonBody(value))
    }
}

/// Path parameters: one that is not valid UTF-8 after percent-decoding is a 400 problem
/// (axum's own `Path` answers in plain text). Handlers parse numbers with
/// [`parse_param`], which names the parameter.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParams(p))
            .map_err(|r| ApiError::BadRequest {
                detail: r.body_text(),
                path: None,
            })
    }
}

/// A query string: unknown parameters and wrong types are 400 problems naming the
/// parameter, like a bad body (axum's own `Query` answers in plain text).
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| QueryParams(q))
            .map_err(|r| ApiError::BadRequest {
                detail: r.body_text(),
                path: None,
            })
    }
}

/// The strong ETag of a resource: a hash of its JSON form.
pub fn etag_of<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    // FNV-1a: stable across runs and builds, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// Checks `If-Match` against the current ETag (`None`: the resource does not exist).
pub fn check_if_match(headers: &HeaderMap, current: Option<&str>) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let v = v.to_str().unwrap_or_default();
    let ok = match current {
        None => false,
        Some(cur) => v
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == cur),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "If-Match {v} does not match the current ETag {}",
            current.unwrap_or("(none: the resource does not exist)")
        )))
    }
}

/// A JSON response with an ETag.
pub fn with_etag<T: Serialize>(status: StatusCode, value: &T, etag: &str) -> Response {
    let mut resp = (status, axum::Json(value)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// A JSON response carrying the resource's own ETag.
pub fn resource<T: Serialize>(status: StatusCode, value: &T) -> Response {
    with_etag(status, value, &etag_of(value))
}

/// Parses a path segment, answering 400 naming the parameter when it is not a number.
pub fn parse_param<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest {
        detail: format!("{name} {raw:?} is not a valid number"),
        path: None,
    })
}

#[cfg(test)]
mod tests;
