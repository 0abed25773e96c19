//! The documents of the control plane's REST API (`/api/v1`) that are not config: status,
//! dry-run results and diffs, LUN mappings, health probes and RFC 9457 problem details.
//!
//! They live here, beside the config types, so the control plane serialises and `tgtctl`
//! deserialises one definition: a renamed field fails to compile in both instead of
//! printing `-` at run time. Like the rest of the crate they are plain data with serde
//! derives; the optional `openapi` feature adds `utoipa::ToSchema` so the control plane's
//! OpenAPI spec is generated from these very types and their doc comments.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::socket::Status;
use crate::{Config, FieldError, Portal, Storage, Target};

/// An RFC 9457 problem document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the kind of problem, such as `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Every field at fault, each with its JSON path (validation and parse errors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// What the control plane knows of the data plane right now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// Whether the data plane answered the last poll.
    pub dataplane_connected: bool,
    /// Generation of the desired (persisted) config.
    pub desired_generation: u64,
    /// Generation the data plane reports as applied, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<u64>,
    /// Whether the data plane runs the desired config.
    pub in_sync: bool,
    /// The last push or connection error, if the data plane is not in sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The data plane's own status (portals, targets, LUNs with their active backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<Status>,
    /// Targets of the desired config that neither an initiator ACL nor CHAP protects: any
    /// initiator that reaches one of their portals may log in and use every LUN.
    #[serde(default)]
    pub open_targets: Vec<String>,
}

/// Result of a dry run of a full config.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Whether the config passes validation.
    pub valid: bool,
    /// Every validation problem, each with its JSON path.
    pub errors: Vec<FieldError>,
    /// What applying it would change, relative to the desired config.
    pub diff: ConfigDiff,
}

/// Differences between two configs, by resource id.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDiff {
    /// Storage `deviceID`s added.
    pub storages_added: Vec<u64>,
    /// Storage `deviceID`s removed.
    pub storages_removed: Vec<u64>,
    /// Storage `deviceID`s whose settings change.
    pub storages_changed: Vec<u64>,
    /// Portal ids added.
    pub portals_added: Vec<u16>,
    /// Portal ids removed.
    pub portals_removed: Vec<u16>,
    /// Portal ids whose address changes.
    pub portals_changed: Vec<u16>,
    /// Target names added.
    pub targets_added: Vec<String>,
    /// Target names removed.
    pub targets_removed: Vec<String>,
    /// Target names whose portal groups or LUN map change.
    pub targets_changed: Vec<String>,
    /// Whether the `performance` section changes.
    pub performance_changed: bool,
}

impl ConfigDiff {
    /// The differences from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Self {
        fn keyed<'a, K: Ord + Clone, V: PartialEq>(
            old: &[(K, &'a V)],
            new: &[(K, &'a V)],
        ) -> (Vec<K>, Vec<K>, Vec<K>) {
            fn find<'a, K: PartialEq, V>(v: &[(K, &'a V)], k: &K) -> Option<&'a V> {
                v.iter().find(|(x, _)| x == k).map(|(_, v)| *v)
            }
            let keys: BTreeSet<K> = old.iter().chain(new).map(|(k, _)| k.clone()).collect();
            let (mut a, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
            for k in keys {
                match (find(old, &k), find(new, &k)) {
                    (None, Some(_)) => a.push(k),
                    (Some(_), None) => r.push(k),
                    (Some(x), Some(y)) if x != y => c.push(k),
                    _ => {}
                }
            }
            (a, r, c)
        }
        fn s(c: &Config) -> Vec<(u64, &Storage)> {
            c.storages.iter().map(|s| (s.device_id, s)).collect()
        }
        fn p(c: &Config) -> Vec<(u16, &Portal)> {
            c.iscsi_portals.iter().map(|p| (p.id, p)).collect()
        }
        fn t(c: &Config) -> Vec<(String, &Target)> {
            c.iscsi_targets
                .iter()
                .map(|(n, t)| (n.clone(), t))
                .collect()
        }
        let (storages_added, storages_removed, storages_changed) = keyed(&s(old), &s(new));
        let (portals_added, portals_removed, portals_changed) = keyed(&p(old), &p(new));
        let (targets_added, targets_removed, targets_changed) = keyed(&t(old), &t(new));
        Self {
            storages_added,
            storages_removed,
            storages_changed,
            portals_added,
            portals_removed,
            portals_changed,
            targets_added,
            targets_removed,
            targets_changed,
            performance_changed: old.performance != new.performance,
        }
    }

    /// Whether anything changes at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What `PUT /config` answers with 200. The two shapes cannot be confused: a config
/// refuses unknown keys, and a dry run always carries `valid`, `errors` and `diff`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PutConfigReply {
    /// The config now desired; the ETag is its generation.
    Applied(Config),
    /// With `dry_run=true`: the validation result and the diff; nothing was changed.
    DryRun(DryRun),
}

/// What the control plane writes to its `--ready-file` once it listens, for scripts,
/// tests and `tgtctl quickstart`; not part of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlplaneReady {
    /// The control plane's process id.
    pub pid: u32,
    /// The address the REST API listens on (with the OS-chosen port if it asked for 0).
    pub listen: SocketAddr,
}

/// Which storage a LUN maps to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunMapping {
    /// `deviceID` of the storage behind the LUN.
    #[serde(rename = "deviceID")]
    pub device_id: u64,
}

/// The body of a successful health or readiness probe.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    pub status: HealthStatus,
}

/// What a successful probe reports.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The process serves HTTP.
    Ok,
    /// The data plane is connected and runs the desired config.
    Ready,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_removed_and_changed_resources() {
        let old: Config = serde_json::from_str(
            r#"{"storages":[{"deviceID":1,"path":"/a"},{"deviceID":2,"path":"/b"}],
                "iscsiportals":[{"id":0,"portal":"127.0.0.1:3260"}]}"#,
        )
        .unwrap();
        let new: Config = serde_json::from_str(
            r#"{"storages":[{"deviceID":1,"path":"/a2"},{"deviceID":3,"path":"/c"}],
                "iscsiportals":[{"id":0,"portal":"127.0.0.1:3260"}],
                "performance":{"enableNUMA":false}}"#,
        )
        .unwrap();
        let d = ConfigDiff::between(&old, &new);
        assert_eq!(d.storages_added, vec![3]);
        assert_eq!(d.storages_removed, vec![2]);
        assert_eq!(d.storages_changed, vec![1]);
        assert!(d.portals_changed.is_empty());
        assert!(d.performance_changed);
        assert!(!d.is_empty());
        assert!(ConfigDiff::between(&new, &new).is_empty());
    }

    #[test]
    fn put_config_reply_reads_back_as_the_shape_it_was() {
        let dry = PutConfigReply::DryRun(DryRun {
            valid: true,
            errors: Vec::new(),
            diff: ConfigDiff::default(),
        });
        let applied = PutConfigReply::Applied(Config::default());
        for reply in [dry, applied] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(
                serde_json::from_str::<PutConfigReply>(&text).unwrap(),
                reply
            );
        }
    }

    #[test]
    fn ready_file_keeps_its_shape() {
        let r = ControlplaneReady {
            pid: 7,
            listen: "[::1]:8080".parse().unwrap(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"pid":7,"listen":"[::1]:8080"}"#);
        assert_eq!(serde_json::from_str::<ControlplaneReady>(&text).unwrap(), r);
    }

    #[test]
    fn problem_without_errors_omits_and_reads_back_the_key() {
        let p = Problem {
            kind: "/problems/not-found".into(),
            title: "Not found".into(),
            status: 404,
            detail: "no portal 3".into(),
            errors: Vec::new(),
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("errors"), "{text}");
        assert!(text.contains(r#""type":"/problems/not-found""#), "{text}");
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap(), p);
    }
}

/// The access state of one target port group for one storage's logical units, as
/// `GET /api/v1/storages/{device_id}/alua` lists them: every group of the `alua` section,
/// this gateway's first, with its state resolved (`active-optimized` when `aluaStates`
/// does not name it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AluaGroupState {
    /// The target port group.
    pub target_port_group: u16,
    /// Whether it is this gateway's group (the others are its peers).
    pub local: bool,
    /// Its asymmetric access state for the storage.
    pub state: crate::AluaState,
}

/// The body of `PUT /api/v1/storages/{device_id}/alua/{group}`: the new state of that
/// target port group for the storage's logical units.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AluaStateChange {
    /// The asymmetric access state to set.
    pub state: crate::AluaState,
}

impl AluaGroupState {
    /// The resolved states of `storage` for the groups of `alua` (absent: group 1 alone).
    pub fn list(alua: Option<&crate::Alua>, storage: &Storage) -> Vec<AluaGroupState> {
        let (local, peers): (u16, Vec<u16>) = match alua {
            Some(a) => (
                a.target_port_group,
                a.peer_groups.iter().map(|p| p.target_port_group).collect(),
            ),
            None => (1, Vec::new()),
        };
        std::iter::once((local, true))
            .chain(peers.into_iter().map(|g| (g, false)))
            .map(|(g, local)| AluaGroupState {
                target_port_group: g,
                local,
                state: storage
                    .alua_states
                    .iter()
                    .find(|(k, _)| crate::validate::parse_decimal(k) == Some(u64::from(g)))
                    .map(|(_, s)| *s)
                    .unwrap_or_default(),
            })
            .collect()
    }
}
