//! Unit attention conditions (SAM-5 5.14, SPC-4 5.13): a small queue per I_T nexus,
//! reported one at a time on the next command that is not INQUIRY, REPORT LUNS or
//! REQUEST SENSE, and returned by REQUEST SENSE.
//!
//! # REPORTED LUNS DATA HAS CHANGED
//!
//! [`LunsChanged`] tracks the one condition that is about the target's LUN inventory rather
//! than about one logical unit: UNIT ATTENTION 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED.
//! SPC-4 6.33 (REPORT LUNS) says that when the logical unit inventory changes (a logical
//! unit created or removed) the device server establishes it for the initiator port of
//! every I_T nexus. The rules we follow:
//!
//! - It is established per logical unit and per I_T nexus, like every UA (SAM-5 5.14), on
//!   each LUN the nexus could address both before and after the change. A LUN that just
//!   appeared gets none, as in LIO (`target_luns_data_has_changed(.., skip_new)` in
//!   `drivers/target/target_core_device.c`): the initiator learns of it from REPORT LUNS.
//!   Linux expects one report per LUN: `scsi_report_lun_change` in
//!   `drivers/scsi/scsi_error.c` marks the whole target as `expecting_lun_change` after
//!   the first, and clears that flag only when a REPORT LUNS completes GOOD.
//! - The change is the one this nexus sees: the inventory it was last served against the
//!   current one. A configuration change that leaves the LUN numbers alone (another target,
//!   a portal, a storage setting) raises nothing, and a LUN added and removed again before
//!   the nexus sends another command leaves nothing to report. A session that logs in after
//!   the change starts with the new inventory and so has nothing pending.
//! - INQUIRY neither reports nor clears it (SAM-5 5.14 a).
//! - REPORT LUNS does not report it and clears it (SAM-5 5.14 b: the device server "shall
//!   clear any pending unit attention condition with an additional sense code of REPORTED
//!   LUNS DATA HAS CHANGED" for that nexus). We clear it on every LUN of the nexus, as
//!   SCST's `scst_report_luns_local` does: the initiator now holds the new inventory, and a
//!   report from each other LUN would tell it nothing. Only a REPORT LUNS that will complete
//!   GOOD clears it; one with an invalid CDB delivers no inventory.
//! - REQUEST SENSE returns it as parameter data with GOOD status and clears it for that LUN
//!   only (SAM-5 5.14 e with UA_INTLCK_CTRL 00b, the only value our Control mode page offers).
//!   Descriptor format is not supported, so such a REQUEST SENSE is left to the logical unit,
//!   which refuses it, and the condition stays.
//! - Any other command to a LUN with the condition pending, even one we would reject as
//!   invalid, ends in CHECK CONDITION with it, and that clears it for that LUN (SAM-5 5.14:
//!   the UA is reported before the command is otherwise processed).
//!
//! A pending condition is a member of a set, so it is reported once however many changes
//! happened before the next command.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::{self, op, Command};
use super::sense::Sense;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Most conditions kept per nexus; older ones are dropped first (SAM allows reporting a
/// later condition in place of lost ones). Kept small because initiators clear UAs with a
/// bounded TUR loop (libiscsi gives up after a handful).
pub const UA_QUEUE_MAX: usize = 3;

/// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (libiscsi's tests accept this one after
/// resets).
pub const UA_RESET: Sense = Sense::reset_occurred();
/// MODE PARAMETERS CHANGED.
pub const UA_MODE_CHANGED: Sense = Sense::mode_parameters_changed();
/// RESERVATIONS PREEMPTED.
pub const UA_RESERVATIONS_PREEMPTED: Sense = Sense::reservations_preempted();
/// RESERVATIONS RELEASED.
pub const UA_RESERVATIONS_RELEASED: Sense = Sense::reservations_released();
/// REGISTRATIONS PREEMPTED.
pub const UA_REGISTRATIONS_PREEMPTED: Sense = Sense::registrations_preempted();

/// How SAM-5 5.14 treats a command when a unit attention is pending for its nexus: the one
/// rule both gates below follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// INQUIRY neither reports nor clears it (SAM-5 5.14 a).
    Inquiry,
    /// REPORT LUNS does not report it; it clears REPORTED LUNS DATA HAS CHANGED (5.14 b).
    ReportLuns,
    /// REQUEST SENSE returns it as parameter data with GOOD status (5.14 e).
    RequestSense,
    /// Any other command ends in CHECK CONDITION with it, before it is otherwise processed.
    Report,
}

/// The rule for the command whose CDB starts with `opcode`.
pub fn rule(opcode: u8) -> Rule {
    match opcode {
        op::INQUIRY => Rule::Inquiry,
        op::REPORT_LUNS => Rule::ReportLuns,
        op::REQUEST_SENSE => Rule::RequestSense,
        _ => Rule::Report,
    }
}

/// Pending unit attentions of one logical unit, keyed by nexus id.
#[derive(Debug, Default)]
pub struct UnitAttentions {
    pending: HashMap<u64, VecDeque<Sense>>,
}

impl UnitAttentions {
    /// Makes the nexus known so that later broadcast conditions reach it.
    pub fn touch(&mut self, nexus: u64) {
        self.pending.entry(nexus).or_default();
    }

    fn push(q: &mut VecDeque<Sense>, c: Sense) {
        if q.contains(&c) {
            return;
        }
        if q.len() >= UA_QUEUE_MAX {
            q.pop_front();
        }
        q.push_back(c);
    }

    /// Raises a condition for one nexus, if it is known (a nexus that is gone or has not
    /// used this LU yet gets nothing).
    pub fn raise(&mut self, nexus: u64, c: Sense) {
        if let Some(q) = self.pending.get_mut(&nexus) {
            Self::push(q, c);
        }
    }

    /// Raises a condition for every known nexus except `except`.
    pub fn raise_others(&mut self, except: Option<u64>, c: Sense) {
        for (id, q) in self.pending.iter_mut() {
            if Some(*id) != except {
                Self::push(q, c);
            }
        }
    }

    /// The gate every command to the logical unit passes before it is decoded: makes the
    /// nexus known, and returns the oldest pending condition when the command must report it
    /// instead of running ([`Rule::Report`]). REQUEST SENSE takes it with [`Self::take`]
    /// once its CDB is known to be valid.
    pub fn gate(&mut self, nexus: u64, opcode: u8) -> Option<Sense> {
        self.touch(nexus);
        match rule(opcode) {
            Rule::Report => self.take(nexus),
            Rule::Inquiry | Rule::ReportLuns | Rule::RequestSense => None,
        }
    }

    /// Takes the oldest condition for a nexus.
    pub fn take(&mut self, nexus: u64) -> Option<Sense> {
        self.pending.get_mut(&nexus)?.pop_front()
    }

    /// Raises a condition for one nexus whether or not it used this LU yet (a new logical
    /// unit standing in for one the nexus used under the same LUN).
    pub fn raise_new(&mut self, nexus: u64, c: Sense) {
        Self::push(self.pending.entry(nexus).or_default(), c);
    }

    /// Drops everything about a nexus (its session ended).
    pub fn forget(&mut self, nexus: u64) {
        self.pending.remove(&nexus);
    }
}

/// ASYMMETRIC ACCESS STATE CHANGED (SPC-4 5.15.2.3): a target port group's access state
/// for this logical unit changed; raised for every I_T nexus, whichever group changed.
pub const UA_ALUA_CHANGED: Sense = Sense::asymmetric_access_state_changed();

/// CAPACITY DATA HAS CHANGED (SBC-3 4.11: the capacity READ CAPACITY reports).
pub const UA_CAPACITY_CHANGED: Sense = Sense::capacity_data_changed();
/// INQUIRY DATA HAS CHANGED (SPC-4 6.6: standard INQUIRY or VPD data differ).
pub const UA_INQUIRY_CHANGED: Sense = Sense::inquiry_data_changed();

/// The conditions to establish for a nexus when the logical unit behind one of its LUNs was
/// replaced by another (a storage's settings changed) with `capacity` and `identity` each
/// telling whether that part differs. None when the replacement looks the same to an
/// initiator.
pub fn replaced_lu_conditions(capacity: bool, identity: bool) -> Vec<Sense> {
    let mut v = Vec::new();
    if identity {
        v.push(UA_INQUIRY_CHANGED);
    }
    if capacity {
        v.push(UA_CAPACITY_CHANGED);
    }
    v
}

/// REPORTED LUNS DATA HAS CHANGED.
pub const UA_REPORTED_LUNS_CHANGED: Sense = Sense::reported_luns_changed();

/// What happens to a command as it arrives, given its nexus's pending REPORTED LUNS DATA HAS
/// CHANGED conditions (see the module docs for the rules).
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Run the command on the logical unit as usual.
    Run,
    /// End the command with CHECK CONDITION and this UNIT ATTENTION sense, without running it.
    Terminate(Sense),
    /// A REQUEST SENSE: complete it with GOOD status and `data` (the condition as fixed-format
    /// sense, already truncated to `alloc_len`) without running it.
    SenseData {
        /// The parameter data.
        data: Vec<u8>,
        /// The CDB's ALLOCATION LENGTH, the bytes the command asked to move.
        alloc_len: u32,
    },
}

/// The LUNs on which one I_T nexus has REPORTED LUNS DATA HAS CHANGED pending.
///
/// Held for the nexus by `crate::lu::NexusAttentions`, which feeds it the nexus's view of
/// the inventory. It allocates only when an inventory change arrives, never per command.
#[derive(Debug, Default)]
pub struct LunsChanged {
    pending: BTreeSet<u16>,
}

impl LunsChanged {
    /// The inventory this nexus is served went from `old` to `new` (each the LUN list REPORT
    /// LUNS would return). Establishes the condition on every LUN in both and drops it from
    /// LUNs that are gone; returns whether the inventory differed.
    pub fn inventory_changed(
        &mut self,
        old: impl IntoIterator<Item = u16>,
        new: impl IntoIterator<Item = u16>,
    ) -> bool {
        let old: BTreeSet<u16> = old.into_iter().collect();
        let new: BTreeSet<u16> = new.into_iter().collect();
        if old == new {
            return false;
        }
        // A removed LUN answers LOGICAL UNIT NOT SUPPORTED from now on; a condition kept for
        // it would surface on an unrelated logical unit that later gets the same number.
        self.pending.retain(|l| new.contains(l));
        self.pending.extend(old.intersection(&new));
        true
    }

    /// Decides what happens to a command for `lun` with CDB `cdb`, and clears what that
    /// command clears. Called once per command, in CmdSN order, before it runs.
    pub fn gate(&mut self, lun: u16, cdb: &[u8]) -> Gate {
        if self.pending.is_empty() {
            return Gate::Run;
        }
        match rule(cdb.first().copied().unwrap_or(0xFF)) {
            Rule::Inquiry => Gate::Run,
            Rule::ReportLuns => {
                // SELECT REPORT values we answer (`luns::report_luns`); anything else, or a
                // short allocation length, ends in CHECK CONDITION with no inventory sent.
                if matches!(
                    cdb::decode(cdb),
                    Ok(Command::ReportLuns {
                        select: 0x00..=0x02,
                        ..
                    })
                ) {
                    self.pending.clear();
                }
                Gate::Run
            }
            Rule::RequestSense => match cdb::decode(cdb) {
                Ok(Command::RequestSense {
                    desc: false,
                    alloc_len,
                }) if self.pending.remove(&lun) => {
                    let mut data = UA_REPORTED_LUNS_CHANGED.encode();
                    data.truncate(usize::try_from(alloc_len).unwrap_or(usize::MAX));
                    Gate::SenseData { data, alloc_len }
                }
                _ => Gate::Run,
            },
            Rule::Report if self.pending.remove(&lun) => Gate::Terminate(UA_REPORTED_LUNS_CHANGED),
            Rule::Report => Gate::Run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_reaches_known_nexuses_once() {
        let mut u = UnitAttentions::default();
        u.touch(1);
        u.touch(2);
        u.raise_others(Some(1), UA_MODE_CHANGED);
        u.raise_others(Some(1), UA_MODE_CHANGED);
        assert!(u.take(1).is_none());
        assert_eq!(u.take(2).unwrap().asc, 0x2A);
        assert!(u.take(2).is_none());
        u.raise_others(None, UA_RESET);
        assert_eq!(u.take(1).unwrap().asc, 0x29);
        u.forget(2);
        assert!(u.take(2).is_none());
    }

    #[test]
    fn queue_is_bounded() {
        let mut u = UnitAttentions::default();
        u.raise(1, UA_MODE_CHANGED);
        assert!(u.take(1).is_none());
        u.touch(1);
        // Distinct conditions, so none is merged with one already queued.
        for i in 0..20u8 {
            u.raise(
                1,
                Sense {
                    ascq: i,
                    ..UA_MODE_CHANGED
                },
            );
        }
        let mut n = 0;
        while u.take(1).is_some() {
            n += 1;
        }
        assert_eq!(n, UA_QUEUE_MAX);
    }

    /// One step of a [`check`] script.
    enum Step {
        /// The inventory goes from the first list to the second; the bool is whether
        /// `inventory_changed` must call that a change.
        Change(&'static [u16], &'static [u16], bool),
        /// A command to a LUN, and what the gate must answer.
        Cmd(u16, &'static [u8], Want),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Want {
        /// `Gate::Run`.
        Run,
        /// `Gate::Terminate` with UNIT ATTENTION 3Fh/0Eh.
        Ua,
        /// `Gate::SenseData` holding UNIT ATTENTION 3Fh/0Eh.
        SenseUa,
    }

    use Step::{Change, Cmd};
    use Want::{Run, SenseUa, Ua};

    const TUR: &[u8] = &[0; 6];
    const READ10: &[u8] = &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const INQUIRY: &[u8] = &[0x12, 0, 0, 0, 36, 0];
    const REPORT_LUNS: &[u8] = &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    const REPORT_LUNS_WELL_KNOWN: &[u8] = &[0xA0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    const REPORT_LUNS_BAD_SELECT: &[u8] = &[0xA0, 0, 3, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    const REPORT_LUNS_SHORT: &[u8] = &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    const REQUEST_SENSE: &[u8] = &[0x03, 0, 0, 0, 18, 0];
    const REQUEST_SENSE_DESC: &[u8] = &[0x03, 1, 0, 0, 18, 0];
    const UNKNOWN_OPCODE: &[u8] = &[0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    fn is_luns_changed_ua(sense: &[u8]) -> bool {
        sense.len() >= 14 && (sense[2], sense[12], sense[13]) == (0x06, 0x3F, 0x0E)
    }

    fn check(name: &str, script: &[Step]) {
        let mut u = LunsChanged::default();
        for (i, step) in script.iter().enumerate() {
            match *step {
                Change(old, new, differs) => assert_eq!(
                    u.inventory_changed(old.iter().copied(), new.iter().copied()),
                    differs,
                    "{name}: step {i}"
                ),
                Cmd(lun, cdb, want) => {
                    let got = match u.gate(lun, cdb) {
                        Gate::Run => Run,
                        Gate::Terminate(s) => {
                            assert!(is_luns_changed_ua(&s.encode()), "{name}: step {i}");
                            Ua
                        }
                        Gate::SenseData { data, alloc_len } => {
                            let full = UA_REPORTED_LUNS_CHANGED.encode();
                            assert!(is_luns_changed_ua(&full));
                            let n = full.len().min(usize::try_from(alloc_len).unwrap());
                            assert_eq!(data, full[..n], "{name}: step {i}");
                            SenseUa
                        }
                    };
                    assert_eq!(got, want, "{name}: step {i}");
                }
            }
        }
    }

    #[test]
    fn luns_changed_follows_sam5_and_spc4() {
        let cases: &[(&str, &[Step])] = &[
            (
                "a new nexus has nothing pending",
                &[
                    Cmd(0, TUR, Run),
                    Cmd(0, READ10, Run),
                    Cmd(1, REQUEST_SENSE, Run),
                ],
            ),
            (
                "a change that keeps the LUN numbers raises nothing",
                &[
                    Change(&[0, 1], &[1, 0], false),
                    Cmd(0, TUR, Run),
                    Cmd(1, TUR, Run),
                ],
            ),
            (
                "an added LUN is reported once on each old LUN and not on the new one",
                &[
                    Change(&[0, 1], &[0, 1, 2], true),
                    Cmd(2, TUR, Run),
                    Cmd(0, READ10, Ua),
                    Cmd(0, READ10, Run),
                    Cmd(1, TUR, Ua),
                    Cmd(1, TUR, Run),
                ],
            ),
            (
                "INQUIRY neither reports nor clears it",
                &[
                    Change(&[0], &[0, 1], true),
                    Cmd(0, INQUIRY, Run),
                    Cmd(0, INQUIRY, Run),
                    Cmd(0, TUR, Ua),
                ],
            ),
            (
                "REPORT LUNS to any LUN clears it on every LUN of the nexus",
                &[
                    Change(&[0, 1], &[0, 1, 2], true),
                    Cmd(7, REPORT_LUNS, Run),
                    Cmd(0, TUR, Run),
                    Cmd(1, TUR, Run),
                ],
            ),
            (
                "REPORT LUNS of the well known LUs still clears it",
                &[
                    Change(&[0], &[0, 1], true),
                    Cmd(0, REPORT_LUNS_WELL_KNOWN, Run),
                    Cmd(0, TUR, Run),
                ],
            ),
            (
                "a REPORT LUNS that fails clears nothing",
                &[
                    Change(&[0], &[0, 1], true),
                    Cmd(0, REPORT_LUNS_SHORT, Run),
                    Cmd(0, REPORT_LUNS_BAD_SELECT, Run),
                    Cmd(0, TUR, Ua),
                ],
            ),
            (
                "REQUEST SENSE returns it and clears it on that LUN only",
                &[
                    Change(&[0, 1], &[0, 1, 2], true),
                    Cmd(0, REQUEST_SENSE_DESC, Run),
                    Cmd(0, REQUEST_SENSE, SenseUa),
                    Cmd(0, REQUEST_SENSE, Run),
                    Cmd(0, TUR, Run),
                    Cmd(1, TUR, Ua),
                ],
            ),
            (
                "REQUEST SENSE truncates the sense to its allocation length",
                &[
                    Change(&[0], &[0, 1], true),
                    Cmd(0, &[0x03, 0, 0, 0, 8, 0], SenseUa),
                    Cmd(0, TUR, Run),
                ],
            ),
            (
                "a command we would reject still reports it first",
                &[
                    Change(&[0], &[0, 1], true),
                    Cmd(0, UNKNOWN_OPCODE, Ua),
                    Cmd(0, UNKNOWN_OPCODE, Run),
                ],
            ),
            (
                "changes before the next command are reported once",
                &[
                    Change(&[0], &[0, 1], true),
                    Change(&[0, 1], &[0, 1, 2], true),
                    Cmd(0, TUR, Ua),
                    Cmd(0, TUR, Run),
                    Cmd(1, TUR, Ua),
                    Cmd(1, TUR, Run),
                    Cmd(2, TUR, Run),
                ],
            ),
            (
                "a removal raises it on the remaining LUNs",
                &[
                    Change(&[0, 1, 2], &[0, 1], true),
                    Cmd(2, TUR, Run),
                    Cmd(1, TUR, Ua),
                    Cmd(0, TUR, Ua),
                ],
            ),
            (
                "a removed LUN loses its condition and starts clean when added back",
                &[
                    Change(&[0, 1, 2], &[0, 1, 2, 3], true),
                    Change(&[0, 1, 2, 3], &[0, 1, 3], true),
                    Change(&[0, 1, 3], &[0, 1, 2, 3], true),
                    Cmd(2, TUR, Run),
                    Cmd(3, TUR, Ua),
                    Cmd(0, TUR, Ua),
                ],
            ),
        ];
        for (name, script) in cases {
            check(name, script);
        }
    }
}
