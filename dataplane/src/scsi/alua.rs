//! Implicit asymmetric logical unit access (ALUA, SPC-4 5.15): the access states of the
//! target port groups a logical unit is reached through, which commands each state serves,
//! and the REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36).
//!
//! One gateway (one data plane) is one target port group holding one SCSI target port, its
//! relative target port identifier; the other gateways of an HA group that export the same
//! logical unit are its peer groups. Only this gateway's state decides how a command that
//! arrives here is served; the peers' states are reported so that an initiator (Linux's
//! `scsi_dh_alua`) knows which path to prefer. The states are implicit (TPGS = 01b): the
//! target changes them (an operator through the control plane, later the owner of the
//! backing image's lock), never SET TARGET PORT GROUPS.
//!
//! # Which commands each state serves (SPC-4 5.15.2.4)
//!
//! - active/optimized, active/non-optimized: every command.
//! - standby (5.15.2.4.4): INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST
//!   SENSE, MODE SENSE, MODE SELECT, PERSISTENT RESERVE IN and OUT (the commands of that
//!   list we implement), and one addition: READ CAPACITY (10)/(16), as LIO serves them
//!   (`core_alua_state_standby`), because Linux's sd reads the capacity on every path it
//!   finds and would otherwise size a standby path at zero. Anything else is NOT READY,
//!   LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (02h/04h/0Bh), TEST UNIT
//!   READY included.
//! - unavailable (5.15.2.4.5): INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST
//!   SENSE; anything else is NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
//!   UNAVAILABLE STATE (02h/04h/0Ch).
//! - transitioning (5.15.2.5): the same commands as unavailable; anything else is NOT
//!   READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION (02h/04h/0Ah),
//!   which the initiator retries.
//!
//! A pending unit attention is reported before any of this (SAM-5 5.14): the gate of
//! `crate::scsi::ua` runs first, so ASYMMETRIC ACCESS STATE CHANGED (06h/2Ah/06h) reaches
//! an initiator before the NOT READY that the new state causes.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::Command;
use super::sense::Sense;

/// An asymmetric access state, with its code in REPORT TARGET PORT GROUPS (SPC-4 6.36.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessState {
    /// 0h: every command, at full performance.
    #[default]
    ActiveOptimized,
    /// 1h: every command, perhaps slower.
    ActiveNonOptimized,
    /// 2h: reporting and configuration commands only.
    Standby,
    /// 3h: reporting commands only.
    Unavailable,
    /// Fh: reporting commands only; the rest are retried by the initiator.
    Transitioning,
}

impl AccessState {
    /// The ASYMMETRIC ACCESS STATE code.
    pub const fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::Transitioning => 0xF,
        }
    }

    /// Why `cmd` cannot run through a port in this state, or `None` when it can.
    pub fn refuses(self, cmd: &Command) -> Option<Sense> {
        let reporting = matches!(
            cmd,
            Command::Inquiry { .. }
                | Command::ReportLuns { .. }
                | Command::ReportTargetPortGroups { .. }
                | Command::RequestSense { .. }
        );
        match self {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => None,
            AccessState::Standby => {
                let served = reporting
                    || matches!(
                        cmd,
                        Command::ModeSense { .. }
                            | Command::ModeSelect { .. }
                            | Command::PrIn { .. }
                            | Command::PrOut { .. }
                            | Command::ReadCapacity10
                            | Command::ReadCapacity16 { .. }
                    );
                (!served).then(Sense::lu_not_accessible_standby)
            }
            AccessState::Unavailable => (!reporting).then(Sense::lu_not_accessible_unavailable),
            AccessState::Transitioning => (!reporting).then(Sense::lu_not_accessible_transition),
        }
    }

    /// The sense REQUEST SENSE returns for a port in this state when nothing else is
    /// pending (SPC-4 6.29: the condition that would stop a medium access command).
    pub fn not_ready(self) -> Option<Sense> {
        self.refuses(&Command::TestUnitReady)
    }
}

/// STATUS CODE of a target port group descriptor (SPC-4 6.36.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusCode {
    /// 00h: no status available.
    #[default]
    None,
    /// 02h: the state was altered by implicit asymmetric logical unit access behaviour.
    AlteredImplicitly,
}

impl StatusCode {
    const fn code(self) -> u8 {
        match self {
            StatusCode::None => 0x00,
            StatusCode::AlteredImplicitly => 0x02,
        }
    }
}

/// One target port group as one logical unit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGroup {
    /// TARGET PORT GROUP (1..=65535).
    pub id: u16,
    /// The RELATIVE TARGET PORT IDENTIFIER of its one port.
    pub relative_port: u16,
    /// Its asymmetric access state for this logical unit.
    pub state: AccessState,
    /// Whether that state was changed since the logical unit started.
    pub status: StatusCode,
}

impl PortGroup {
    /// A group in `state` whose state has not changed yet.
    pub fn new(id: u16, relative_port: u16, state: AccessState) -> Self {
        Self {
            id,
            relative_port,
            state,
            status: StatusCode::None,
        }
    }
}

/// The target port groups of one logical unit: this gateway's first, then its peers'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGroups {
    local: PortGroup,
    peers: Vec<PortGroup>,
}

impl Default for PortGroups {
    /// Without ALUA configuration: group 1, relative port 1, active/optimized, no peers.
    fn default() -> Self {
        Self::new(
            PortGroup::new(1, 1, AccessState::ActiveOptimized),
            Vec::new(),
        )
    }
}

/// T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP: the states a group may be put in (SPC-4 6.36.2).
/// Offline (O_SUP) and logical block dependent (LBD_SUP) are never used.
const SUPPORTED_STATES: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

/// IMPLICIT TRANSITION TIME in the extended header, in seconds: how long an initiator
/// should wait for a transitioning group before giving up on it. A lock takeover of the
/// backing image takes well under a second; 10 s leaves room for a loaded cluster.
pub const IMPLICIT_TRANSITION_SECS: u8 = 10;

impl PortGroups {
    /// The groups of a logical unit reached through `local`, with `peers` in the order
    /// REPORT TARGET PORT GROUPS lists them.
    pub fn new(local: PortGroup, peers: Vec<PortGroup>) -> Self {
        Self { local, peers }
    }

    /// This gateway's group.
    pub fn local(&self) -> &PortGroup {
        &self.local
    }

    /// The peer groups.
    pub fn peers(&self) -> &[PortGroup] {
        &self.peers
    }

    /// Takes the peers and every state of `new` (the local group's id and port are part of
    /// the logical unit's identity and do not change here). A group whose state changed
    /// gets STATUS CODE 02h. Returns whether any group's state changed, or a peer came or
    /// went: then every I_T nexus is owed ASYMMETRIC ACCESS STATE CHANGED.
    pub fn update(&mut self, new: &PortGroups) -> bool {
        let mut changed = false;
        let status = |old: Option<&PortGroup>, g: &PortGroup| match old {
            Some(o) if o.state == g.state => o.status,
            Some(_) => StatusCode::AlteredImplicitly,
            None => g.status,
        };
        if self.local.state != new.local.state {
            self.local.state = new.local.state;
            self.local.status = StatusCode::AlteredImplicitly;
            changed = true;
        }
        let peers: Vec<PortGroup> = new
            .peers
            .iter()
            .map(|g| {
                let old = self.peers.iter().find(|o| o.id == g.id);
                changed |=
                    old.is_none_or(|o| o.state != g.state || o.relative_port != g.relative_port);
                PortGroup {
                    status: status(old, g),
                    ..g.clone()
                }
            })
            .collect();
        changed |= self.peers.len() != peers.len();
        self.peers = peers;
        changed
    }

    /// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36), untruncated: the
    /// length-only header, or with `extended` the extended header (FORMAT TYPE 001b and
    /// the implicit transition time). RETURN DATA LENGTH counts every byte after itself in
    /// both formats, as SPC-4 specifies and Linux's `alua_rtpg` reads it.
    pub fn report(&self, extended: bool) -> Vec<u8> {
        let groups = std::iter::once(&self.local).chain(self.peers.iter());
        let mut d = Vec::with_capacity(8 + 12 * (1 + self.peers.len()));
        d.extend_from_slice(&[0; 4]);
        if extended {
            d.extend_from_slice(&[0x10, IMPLICIT_TRANSITION_SECS, 0, 0]);
        }
        for g in groups {
            // PREF stays 0: no group is preferred over the state it is in.
            d.push(g.state.code());
            d.push(SUPPORTED_STATES);
            d.extend_from_slice(&g.id.to_be_bytes());
            d.push(0);
            d.push(g.status.code());
            d.push(0); // vendor specific
            d.push(1); // TARGET PORT COUNT: one port per gateway
            d.extend_from_slice(&[0, 0]); // obsolete
            d.extend_from_slice(&g.relative_port.to_be_bytes());
        }
        // At most 33 groups of 12 bytes: far below 4 GiB.
        let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
        d[..4].copy_from_slice(&len.to_be_bytes());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb;
    use crate::scsi::sense::SenseKey;

    fn pair(local: AccessState, peer: AccessState) -> PortGroups {
        PortGroups::new(
            PortGroup::new(1, 1, local),
            vec![PortGroup::new(2, 2, peer)],
        )
    }

    #[test]
    fn length_only_report_lists_local_group_then_peers() {
        let d = pair(AccessState::ActiveOptimized, AccessState::Standby).report(false);
        assert_eq!(d.len(), 4 + 2 * 12);
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), 24);
        // Local group: AO, every supported state bit but O_SUP and LBD_SUP, id 1, one port 1.
        assert_eq!(&d[4..16], &[0x00, 0x8F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        // Peer: standby, id 2, port 2.
        assert_eq!(&d[16..28], &[0x02, 0x8F, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn extended_report_has_format_type_and_transition_time() {
        let d = pair(AccessState::Transitioning, AccessState::ActiveNonOptimized).report(true);
        assert_eq!(d.len(), 8 + 2 * 12);
        // RETURN DATA LENGTH counts everything after the field, header included.
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), 28);
        assert_eq!(d[4] >> 4, 1, "FORMAT TYPE 001b");
        assert_eq!(d[5], IMPLICIT_TRANSITION_SECS);
        assert_eq!(d[8] & 0x0F, 0x0F);
        assert_eq!(d[20] & 0x0F, 0x01);
    }

    #[test]
    fn state_codes_follow_spc4() {
        let codes: Vec<u8> = [
            AccessState::ActiveOptimized,
            AccessState::ActiveNonOptimized,
            AccessState::Standby,
            AccessState::Unavailable,
            AccessState::Transitioning,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, [0x0, 0x1, 0x2, 0x3, 0xF]);
    }

    fn decode(cdb: &[u8]) -> Command {
        cdb::decode(cdb).unwrap()
    }

    fn tur() -> Command {
        Command::TestUnitReady
    }

    fn read10() -> Command {
        decode(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    }

    fn inquiry() -> Command {
        decode(&[0x12, 0, 0, 0, 96, 0])
    }

    fn rtpg() -> Command {
        decode(&[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    }

    fn mode_sense() -> Command {
        decode(&[0x1A, 0, 0x3F, 0, 255, 0])
    }

    fn read_capacity16() -> Command {
        decode(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])
    }

    fn asc(s: Option<Sense>) -> Option<(SenseKey, u8, u8)> {
        s.map(|s| (s.key, s.asc, s.ascq))
    }

    #[test]
    fn active_states_serve_everything() {
        for st in [
            AccessState::ActiveOptimized,
            AccessState::ActiveNonOptimized,
        ] {
            for c in [tur(), read10(), inquiry(), rtpg(), mode_sense()] {
                assert_eq!(st.refuses(&c), None, "{st:?} {c:?}");
            }
        }
    }

    #[test]
    fn standby_refuses_medium_access_but_serves_reporting_and_configuration() {
        let st = AccessState::Standby;
        let not_accessible = Some((SenseKey::NotReady, 0x04, 0x0B));
        assert_eq!(asc(st.refuses(&tur())), not_accessible);
        assert_eq!(asc(st.refuses(&read10())), not_accessible);
        for c in [inquiry(), rtpg(), mode_sense(), read_capacity16()] {
            assert_eq!(st.refuses(&c), None, "{c:?}");
        }
        assert_eq!(asc(st.not_ready()), not_accessible);
    }

    #[test]
    fn unavailable_and_transitioning_serve_only_reporting() {
        for (st, ascq) in [
            (AccessState::Unavailable, 0x0C),
            (AccessState::Transitioning, 0x0A),
        ] {
            let refused = Some((SenseKey::NotReady, 0x04, ascq));
            for c in [tur(), read10(), mode_sense(), read_capacity16()] {
                assert_eq!(asc(st.refuses(&c)), refused, "{st:?} {c:?}");
            }
            for c in [inquiry(), rtpg()] {
                assert_eq!(st.refuses(&c), None, "{st:?} {c:?}");
            }
        }
    }

    #[test]
    fn update_reports_changes_and_marks_changed_groups() {
        let mut g = pair(
            AccessState::ActiveOptimized,
            AccessState::ActiveNonOptimized,
        );
        assert!(!g.update(&pair(
            AccessState::ActiveOptimized,
            AccessState::ActiveNonOptimized
        )));
        assert_eq!(g.local().status, StatusCode::None);
        assert!(g.update(&pair(
            AccessState::ActiveNonOptimized,
            AccessState::ActiveNonOptimized
        )));
        assert_eq!(g.local().state, AccessState::ActiveNonOptimized);
        assert_eq!(g.local().status, StatusCode::AlteredImplicitly);
        assert_eq!(g.peers()[0].status, StatusCode::None);
        assert_eq!(g.report(false)[9], 0x02, "STATUS CODE of the local group");
        // A peer's state change counts too: the initiator must re-read the groups.
        assert!(g.update(&pair(
            AccessState::ActiveNonOptimized,
            AccessState::ActiveOptimized
        )));
        assert_eq!(g.peers()[0].status, StatusCode::AlteredImplicitly);
        // A peer removed counts.
        let alone = PortGroups::new(
            PortGroup::new(1, 1, AccessState::ActiveNonOptimized),
            Vec::new(),
        );
        assert!(g.update(&alone));
        assert!(g.peers().is_empty());
    }
}
