//! `/api/v1/alua` and `/api/v1/storages/{device_id}/alua`: this gateway's target port
//! group and its peers (SPC-4 5.15, implicit ALUA), and the asymmetric access state of
//! each group for one storage's logical units. Setting a state is a config change like
//! any other (validated, pushed, persisted); the data plane applies it to the open
//! logical units and tells every I_T nexus with ASYMMETRIC ACCESS STATE CHANGED.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tgt_proto::api::{AluaGroupState, AluaStateChange};
use tgt_proto::{Alua, Config, Storage};

use super::{check_if_match, etag_of, parse_param, resource, AppState, JsonBody, PathParams};
use crate::error::ApiError;

/// The `alua` section; 404 when none is set (the gateway is then group 1 alone).
#[utoipa::path(get, path = "/api/v1/alua", tag = "alua",
    responses((status = 200, body = Alua),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(State(st): State<AppState>) -> Result<Response, ApiError> {
    match st.service.desired().await.config.alua {
        Some(a) => Ok(resource(StatusCode::OK, &a)),
        None => Err(ApiError::NotFound(
            "no alua section: this gateway is target port group 1, relative port 1".into(),
        )),
    }
}

/// Sets this gateway's target port group, relative target port and peer groups.
#[utoipa::path(put, path = "/api/v1/alua", tag = "alua", request_body = Alua,
    responses((status = 200, body = Alua),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(alua): JsonBody<Alua>,
) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            check_if_match(&headers, c.alua.as_ref().map(etag_of).as_deref())?;
            c.alua = Some(alua.clone());
            Ok(())
        })
        .await?;
    Ok(resource(StatusCode::OK, &alua))
}

/// Removes the `alua` section: the gateway is group 1 with relative port 1 again.
#[utoipa::path(delete, path = "/api/v1/alua", tag = "alua",
    responses((status = 204),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            check_if_match(&headers, c.alua.as_ref().map(etag_of).as_deref())?;
            c.alua = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn storage_mut(c: &mut Config, device_id: u64) -> Result<&mut Storage, ApiError> {
    c.storages
        .iter_mut()
        .find(|s| s.device_id == device_id)
        .ok_or_else(|| ApiError::NotFound(format!("no storage {device_id}")))
}

/// The access state of every target port group for one storage's logical units, this
/// gateway's group first.
#[utoipa::path(get, path = "/api/v1/storages/{device_id}/alua", tag = "alua",
    params(("device_id" = u64, Path, description = "The storage's deviceID")),
    responses((status = 200, body = Vec<AluaGroupState>),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn states(
    State(st): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> Result<Response, ApiError> {
    let id: u64 = parse_param("deviceID", &raw)?;
    let c = st.service.desired().await.config;
    let s = c
        .storages
        .iter()
        .find(|s| s.device_id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no storage {id}")))?;
    Ok(resource(
        StatusCode::OK,
        &AluaGroupState::list(c.alua.as_ref(), s),
    ))
}

/// Sets the access state of target port group `group` for one storage's logical units;
/// answers every group's state. `If-Match` takes the ETag of that list.
#[utoipa::path(put, path = "/api/v1/storages/{device_id}/alua/{group}", tag = "alua",
    request_body = AluaStateChange,
    params(("device_id" = u64, Path, description = "The storage's deviceID"),
        ("group" = u16, Path, description = "The target port group (this gateway's or a peer's)")),
    responses((status = 200, body = Vec<AluaGroupState>),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set_state(
    State(st): State<AppState>,
    PathParams((raw_id, raw_group)): PathParams<(String, String)>,
    headers: HeaderMap,
    JsonBody(change): JsonBody<AluaStateChange>,
) -> Result<Response, ApiError> {
    let id: u64 = parse_param("deviceID", &raw_id)?;
    let group: u16 = parse_param("group", &raw_group)?;
    let (list, _) = st
        .service
        .update(|c, _| {
            let alua = c.alua.clone();
            let s = storage_mut(c, id)?;
            let before = AluaGroupState::list(alua.as_ref(), s);
            check_if_match(&headers, Some(&etag_of(&before)))?;
            if !before.iter().any(|g| g.target_port_group == group) {
                return Err(ApiError::NotFound(format!(
                    "no target port group {group} in the alua section"
                )));
            }
            // One key per group: drop any other spelling of it ("02") first.
            s.alua_states
                .retain(|k, _| k.parse::<u16>().ok() != Some(group));
            s.alua_states.insert(group.to_string(), change.state);
            Ok(AluaGroupState::list(alua.as_ref(), s))
        })
        .await?;
    Ok(resource(StatusCode::OK, &list))
}
