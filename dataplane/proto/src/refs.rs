//! The references of a config: which LUN uses which storage and which portal group lists
//! which portal.
//!
//! [`Config::validate`](crate::Config::validate) refuses a reference to a storage or portal
//! that does not exist; this module answers the converse question a delete asks first
//! (who still refers to this one?), so the control plane refuses removing a resource in
//! use with a sentence naming the user instead of a validation error on the user's path.

use std::fmt;

use crate::Config;

/// One reference from a target to a storage or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use<'a> {
    /// LUN `lun` of `target` maps to storage `device_id`.
    Lun {
        /// The target's iSCSI name.
        target: &'a str,
        /// The LUN as written in the config (a decimal string).
        lun: &'a str,
        /// The storage it maps to.
        device_id: u64,
    },
    /// Portal group `tag` of `target` lists portal `portal_id`.
    PortalGroup {
        /// The target's iSCSI name.
        target: &'a str,
        /// The portal group tag as written in the config (a decimal string).
        tag: &'a str,
        /// The portal it lists.
        portal_id: u16,
    },
}

impl fmt::Display for Use<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::Lun {
                target,
                lun,
                device_id,
            } => write!(
                f,
                "storage {device_id} is used by lun {lun} of target {target}"
            ),
            Use::PortalGroup {
                target,
                tag,
                portal_id,
            } => write!(
                f,
                "portal {portal_id} is in portal group {tag} of target {target}"
            ),
        }
    }
}

impl Config {
    /// Every reference of every target, targets in name order, each target's LUNs before
    /// its portal groups, keys in the order of the config's maps.
    pub fn references(&self) -> impl Iterator<Item = Use<'_>> + '_ {
        self.iscsi_targets.iter().flat_map(|(target, t)| {
            let luns = t.luns.iter().map(move |(lun, device_id)| Use::Lun {
                target,
                lun,
                device_id: *device_id,
            });
            let groups = t.tpgts.iter().flat_map(move |(tag, ids)| {
                ids.iter().map(move |portal_id| Use::PortalGroup {
                    target,
                    tag,
                    portal_id: *portal_id,
                })
            });
            luns.chain(groups)
        })
    }

    /// The first LUN that maps to storage `device_id`, if any.
    pub fn storage_user(&self, device_id: u64) -> Option<Use<'_>> {
        self.references()
            .find(|u| matches!(u, Use::Lun { device_id: d, .. } if *d == device_id))
    }

    /// The first portal group that lists portal `id`, if any.
    pub fn portal_user(&self, id: u16) -> Option<Use<'_>> {
        self.references()
            .find(|u| matches!(u, Use::PortalGroup { portal_id, .. } if *portal_id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_str(
            r#"{"storages":[{"deviceID":1,"path":"/a"},{"deviceID":2,"path":"/b"}],
                "iscsiportals":[{"id":0,"portal":"127.0.0.1:3260"},{"id":5,"portal":"127.0.0.1:3261"}],
                "iscsitargets":{
                  "iqn.2024-01.com.example:b":{"tpgts":{"1":[0]},"luns":{"0":1}},
                  "iqn.2024-01.com.example:a":{"tpgts":{"2":[5],"1":[0]},"luns":{"3":2,"1":2}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn names_the_first_user_in_config_order() {
        let c = config();
        assert_eq!(
            c.storage_user(2).unwrap().to_string(),
            "storage 2 is used by lun 1 of target iqn.2024-01.com.example:a"
        );
        assert_eq!(
            c.storage_user(1).unwrap().to_string(),
            "storage 1 is used by lun 0 of target iqn.2024-01.com.example:b"
        );
        assert_eq!(
            c.portal_user(0).unwrap().to_string(),
            "portal 0 is in portal group 1 of target iqn.2024-01.com.example:a"
        );
        assert_eq!(
            c.portal_user(5).unwrap().to_string(),
            "portal 5 is in portal group 2 of target iqn.2024-01.com.example:a"
        );
    }

    #[test]
    fn unused_resources_have_no_user() {
        let c = config();
        assert_eq!(c.storage_user(9), None);
        assert_eq!(c.portal_user(9), None);
        assert_eq!(c.references().count(), 6);
    }
}
