//! One create/read/replace/delete path for every resource that is a part of the desired
//! config: storages, portals, targets and a target's LUNs.
//!
//! A handler names the resource with a [`Slot`] (where in the config it lives) and calls
//! [`get`], [`put`] or [`delete`]; this module does the rest the same way for all of them:
//! 404 for an absent resource (or an absent parent), 409 for a POST whose key is taken and
//! for a delete while another resource still refers to it ([`tgt_proto::Use`]), 412 when
//! `If-Match` (or `If-None-Match: *`) does not hold, ETags on every answer, and the change
//! itself through [`Service::update`](crate::service::Service::update), which validates,
//! pushes and persists it.

use std::fmt::Display;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tgt_proto::api::LunMapping;
use tgt_proto::{Config, Portal, Storage, Target};

use super::{check_if_match, etag_of, resource, AppState};
use crate::error::ApiError;

/// Where one resource lives in the config. `Display` names it in messages ("portal 3").
pub trait Slot: Display + Send + Sync {
    /// The document clients read and write.
    type Item: Serialize + Clone + Send + Sync;

    /// The resource, `None` when absent; an error when its parent does not exist.
    fn read(&self, c: &Config) -> Result<Option<Self::Item>, ApiError>;

    /// Stores `item` here, replacing what is there; whether it is new.
    fn write(&self, c: &mut Config, item: Self::Item) -> Result<bool, ApiError>;

    /// Removes the resource, which exists.
    fn remove(&self, c: &mut Config);

    /// Checks a body against the path (a key in both must agree).
    fn check_body(&self, _item: &Self::Item) -> Result<(), ApiError> {
        Ok(())
    }

    /// Why the resource cannot be removed: another resource still refers to it.
    fn in_use(&self, _c: &Config) -> Option<String> {
        None
    }

    /// Removes what clients may write but never read (CHAP secrets) from an answer.
    fn redact(_item: &mut Self::Item) {}

    /// Fills what a write omits but the stored resource has and clients cannot read (CHAP
    /// secrets), so that writing back what a GET answered changes nothing.
    fn keep_write_only(_item: &mut Self::Item, _stored: &Self::Item) {}

    /// The 404 for this resource.
    fn not_found(&self) -> ApiError {
        ApiError::NotFound(format!("no {self}"))
    }
}

/// How a write treats a resource that exists, or does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `POST` to the collection: 409 when the key is taken; answers 201 with `Location`.
    Create {
        /// Where the new resource is.
        location: String,
    },
    /// `PUT` with `If-None-Match: *`: 412 when it exists.
    CreateOnly,
    /// `PUT` of a resource that must exist (404 otherwise).
    Replace,
    /// `PUT` that creates (201) or replaces (200).
    Upsert,
}

/// The ETag of a resource as clients see it (secrets removed), so that a hash of a secret
/// is never exposed and the ETag a GET gave matches `If-Match` later.
fn shown_etag<S: Slot>(item: &S::Item) -> String {
    let mut shown = item.clone();
    S::redact(&mut shown);
    etag_of(&shown)
}

/// `GET` of one resource.
pub async fn get<S: Slot>(st: &AppState, at: S) -> Result<Response, ApiError> {
    let d = st.service.desired().await;
    let mut item = at.read(&d.config)?.ok_or_else(|| at.not_found())?;
    S::redact(&mut item);
    Ok(resource(StatusCode::OK, &item))
}

/// `POST` or `PUT` of one resource, as `mode` says.
pub async fn put<S: Slot>(
    st: &AppState,
    at: S,
    headers: &HeaderMap,
    item: S::Item,
    mode: Write,
) -> Result<Response, ApiError> {
    at.check_body(&item)?;
    let (created, _) = st
        .service
        .update(|c, _| {
            let existing = at.read(c)?;
            match (&mode, &existing) {
                (Write::Create { .. }, Some(_)) => {
                    return Err(ApiError::Conflict(format!("{at} already exists")))
                }
                (Write::CreateOnly, Some(_)) => {
                    return Err(ApiError::PreconditionFailed(format!("{at} already exists")))
                }
                (Write::Replace, None) => return Err(at.not_found()),
                _ => {}
            }
            // A POST creates; If-Match names a version of something that exists.
            if !matches!(mode, Write::Create { .. }) {
                check_if_match(headers, existing.as_ref().map(shown_etag::<S>).as_deref())?;
            }
            let mut item = item.clone();
            if let Some(stored) = &existing {
                S::keep_write_only(&mut item, stored);
            }
            at.write(c, item)
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut shown = item;
    S::redact(&mut shown);
    let mut resp = resource(status, &shown);
    if let Write::Create { location } = &mode {
        if let Ok(v) = HeaderValue::from_str(location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

/// `DELETE` of one resource: 404 when absent, 412 when `If-Match` does not hold, 409
/// while another resource refers to it.
pub async fn delete<S: Slot>(
    st: &AppState,
    at: S,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    st.service
        .update(|c, _| {
            let existing = at.read(c)?.ok_or_else(|| at.not_found())?;
            check_if_match(headers, Some(&shown_etag::<S>(&existing)))?;
            if let Some(user) = at.in_use(c) {
                return Err(ApiError::Conflict(user));
            }
            at.remove(c);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A config list whose items carry their own unique key (storages, portals).
pub trait Listed: Serialize + Clone + Send + Sync {
    /// The key's type.
    type Key: PartialEq + Copy + Display + Send + Sync;
    /// What one item is called in messages.
    const NOUN: &'static str;
    /// The key's JSON name, for a body that disagrees with the path.
    const KEY_FIELD: &'static str;
    /// The item's key.
    fn key(&self) -> Self::Key;
    /// The list in a config.
    fn list(c: &Config) -> &Vec<Self>;
    /// The list in a config, to change.
    fn list_mut(c: &mut Config) -> &mut Vec<Self>;
    /// The first resource that refers to the item with `key`.
    fn user(c: &Config, key: Self::Key) -> Option<String>;
}

impl Listed for Storage {
    type Key = u64;
    const NOUN: &'static str = "storage";
    const KEY_FIELD: &'static str = "deviceID";
    fn key(&self) -> u64 {
        self.device_id
    }
    fn list(c: &Config) -> &Vec<Self> {
        &c.storages
    }
    fn list_mut(c: &mut Config) -> &mut Vec<Self> {
        &mut c.storages
    }
    fn user(c: &Config, key: u64) -> Option<String> {
        c.storage_user(key).map(|u| u.to_string())
    }
}

impl Listed for Portal {
    type Key = u16;
    const NOUN: &'static str = "portal";
    const KEY_FIELD: &'static str = "id";
    fn key(&self) -> u16 {
        self.id
    }
    fn list(c: &Config) -> &Vec<Self> {
        &c.iscsi_portals
    }
    fn list_mut(c: &mut Config) -> &mut Vec<Self> {
        &mut c.iscsi_portals
    }
    fn user(c: &Config, key: u16) -> Option<String> {
        c.portal_user(key).map(|u| u.to_string())
    }
}

/// The item of a [`Listed`] list with this key.
pub struct Keyed<T: Listed>(pub T::Key);

impl<T: Listed> Display for Keyed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", T::NOUN, self.0)
    }
}

impl<T: Listed> Slot for Keyed<T> {
    type Item = T;

    fn read(&self, c: &Config) -> Result<Option<T>, ApiError> {
        Ok(T::list(c).iter().find(|x| x.key() == self.0).cloned())
    }

    fn write(&self, c: &mut Config, item: T) -> Result<bool, ApiError> {
        let list = T::list_mut(c);
        match list.iter_mut().find(|x| x.key() == self.0) {
            Some(slot) => {
                *slot = item;
                Ok(false)
            }
            None => {
                list.push(item);
                Ok(true)
            }
        }
    }

    fn remove(&self, c: &mut Config) {
        let list = T::list_mut(c);
        if let Some(pos) = list.iter().position(|x| x.key() == self.0) {
            list.remove(pos);
        }
    }

    fn check_body(&self, item: &T) -> Result<(), ApiError> {
        if item.key() == self.0 {
            return Ok(());
        }
        Err(ApiError::BadRequest {
            detail: format!(
                "{} {} in the body differs from {} in the path",
                T::KEY_FIELD,
                item.key(),
                self.0
            ),
            path: Some(T::KEY_FIELD.into()),
        })
    }

    fn in_use(&self, c: &Config) -> Option<String> {
        T::user(c, self.0)
    }
}

/// A target, by iSCSI name.
pub struct TargetAt<'a>(pub &'a str);

impl Display for TargetAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "target {}", self.0)
    }
}

impl TargetAt<'_> {
    /// The target, or 404.
    pub fn find<'c>(&self, c: &'c Config) -> Result<&'c Target, ApiError> {
        c.iscsi_targets.get(self.0).ok_or_else(|| self.not_found())
    }
}

impl Slot for TargetAt<'_> {
    type Item = Target;

    fn read(&self, c: &Config) -> Result<Option<Target>, ApiError> {
        Ok(c.iscsi_targets.get(self.0).cloned())
    }

    fn redact(item: &mut Target) {
        item.redact_secrets();
    }

    fn keep_write_only(item: &mut Target, stored: &Target) {
        crate::write_only::keep_target(item, stored);
    }

    fn write(&self, c: &mut Config, item: Target) -> Result<bool, ApiError> {
        Ok(c.iscsi_targets.insert(self.0.to_owned(), item).is_none())
    }

    fn remove(&self, c: &mut Config) {
        c.iscsi_targets.remove(self.0);
    }
}

/// One LUN of a target; the target must exist.
pub struct LunAt<'a> {
    /// The target's iSCSI name.
    pub target: &'a str,
    /// The LUN.
    pub lun: u16,
}

impl Display for LunAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lun {} of target {}", self.lun, self.target)
    }
}

impl LunAt<'_> {
    fn target_mut<'c>(&self, c: &'c mut Config) -> Result<&'c mut Target, ApiError> {
        c.iscsi_targets
            .get_mut(self.target)
            .ok_or_else(|| TargetAt(self.target).not_found())
    }
}

impl Slot for LunAt<'_> {
    type Item = LunMapping;

    fn read(&self, c: &Config) -> Result<Option<LunMapping>, ApiError> {
        let t = TargetAt(self.target).find(c)?;
        Ok(t.luns
            .get(&self.lun.to_string())
            .map(|&device_id| LunMapping { device_id }))
    }

    fn write(&self, c: &mut Config, item: LunMapping) -> Result<bool, ApiError> {
        let t = self.target_mut(c)?;
        Ok(t.luns
            .insert(self.lun.to_string(), item.device_id)
            .is_none())
    }

    fn remove(&self, c: &mut Config) {
        if let Ok(t) = self.target_mut(c) {
            t.luns.remove(&self.lun.to_string());
        }
    }

    fn not_found(&self) -> ApiError {
        ApiError::NotFound(format!("target {} has no lun {}", self.target, self.lun))
    }
}
