//! The SCSI target device (SAM-5 4.6): the LUN map, LUN 0 as the synthetic controller when
//! no logical unit has it, LUNs without a logical unit (SPC-4 6.6.2, SAM-5 5.9.4), task
//! management (SAM-5 7), and [`NexusAttentions`], the unit attentions one I_T nexus is owed
//! when a configuration change gives its target a new LUN map (SPC-4 6.33; the rules are
//! `crate::scsi::ua`).

use super::dispatch::truncate;
use super::unit::LogicalUnit;
use super::{Nexus, ScsiResponse, TmFunction, TmResponse};
use crate::buf::IoBuf;
use crate::scsi::cdb::{self, Command};
use crate::scsi::inquiry::Identity;
use crate::scsi::luns;
use crate::scsi::sense::Sense;
use crate::scsi::status;
use crate::scsi::ua::{Gate, LunsChanged};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The block size transfer lengths are computed in for a LUN without a logical unit.
const NO_LUN_BLOCK_BYTES: u32 = 512;

/// Where an EXTENDED COPY finds logical units of the data plane's other targets (SPC-4
/// 6.4.5: a CSCD descriptor may name any logical unit the copy manager can reach). The
/// data plane implements it over its live configuration and sessions; a target without
/// one copies between its own logical units only.
pub trait CopyScope: Send + Sync + std::fmt::Debug {
    /// The targets other than `own` whose logical units the initiator named `initiator` may
    /// name as copy sources and destinations.
    fn reachable_targets(&self, own: &str, initiator: &str) -> Vec<Arc<Target>>;
}

/// The SCSI target device: a LUN map plus a synthetic LUN 0 when none is configured.
#[derive(Debug)]
pub struct Target {
    /// The target's iSCSI name.
    name: String,
    luns: BTreeMap<u16, Arc<LogicalUnit>>,
    /// Answers LUN 0 when `luns` has no logical unit there.
    controller: LogicalUnit,
    /// The other targets an EXTENDED COPY may reach; `None`: this target's units only.
    copy_scope: Option<Arc<dyn CopyScope>>,
}

impl Target {
    /// Builds a target from its LUN map. LUN numbers above 16383 are ignored.
    pub fn new(name: &str, luns: Vec<(u16, Arc<LogicalUnit>)>) -> Self {
        let map: BTreeMap<u16, Arc<LogicalUnit>> = luns
            .into_iter()
            .filter(|(l, _)| *l <= luns::LUN_MAX)
            .collect();
        Self {
            name: name.to_string(),
            luns: map,
            controller: LogicalUnit::controller(name),
            copy_scope: None,
        }
    }

    /// Lets EXTENDED COPY through this target reach the logical units `scope` offers.
    #[must_use]
    pub fn with_copy_scope(mut self, scope: Arc<dyn CopyScope>) -> Self {
        self.copy_scope = Some(scope);
        self
    }

    /// The target's iSCSI name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The targets other than this one whose logical units the initiator of `nexus` may
    /// name in an EXTENDED COPY (none without a copy scope).
    pub(super) fn copy_peers(&self, nexus: &super::Nexus) -> Vec<Arc<Target>> {
        let Some(scope) = &self.copy_scope else {
            return Vec::new();
        };
        // The initiator port name is "<iSCSI name>,i,0x<ISID>" (RFC 7143 §4.2.7.1 / SAM-5).
        let initiator = nexus.initiator_port.split(",i,").next().unwrap_or_default();
        scope.reachable_targets(&self.name, initiator)
    }

    /// True when `lun` answers commands (a configured LU, or the synthetic LUN 0).
    pub fn lun_exists(&self, lun: u16) -> bool {
        lun == 0 || self.luns.contains_key(&lun)
    }

    /// Tells nexus `nexus` that LUN 0 is the synthetic controller again (its disk was
    /// removed): INQUIRY DATA HAS CHANGED on the controller's next command from it.
    pub fn controller_took_lun0(&self, nexus: u64) {
        self.controller.took_lun0(nexus);
    }

    /// Every configured logical unit, ascending by LUN.
    pub fn logical_units(&self) -> impl Iterator<Item = &Arc<LogicalUnit>> {
        self.luns.values()
    }

    /// The logical unit behind a LUN.
    pub fn logical_unit(&self, lun: u16) -> Option<&Arc<LogicalUnit>> {
        self.luns.get(&lun)
    }

    /// The LUNs REPORT LUNS lists: the logical units plus LUN 0, which always answers (as
    /// the synthetic controller when no logical unit has that number).
    pub fn inventory(&self) -> impl Iterator<Item = u16> + '_ {
        let controller = (!self.luns.contains_key(&0)).then_some(0);
        self.luns.keys().copied().chain(controller)
    }

    /// REPORT LUNS parameter data (SPC-4 6.33), cut to `alloc_len`: the same from every LUN.
    pub(super) fn report_luns(&self, select: u8, alloc_len: u32) -> Result<Vec<u8>, Sense> {
        let list: Vec<u16> = self.inventory().collect();
        luns::report_luns(select, &list).map(|d| truncate(d, alloc_len))
    }

    /// Runs one SCSI command to completion.
    ///
    /// `data_out` holds exactly the bytes the initiator sent (it may be shorter or longer
    /// than the CDB implies). `expected_in_len` is the iSCSI Expected Data Transfer Length;
    /// the transport truncates `data_in` to it, so it is informational here.
    pub async fn execute(
        &self,
        lun: u16,
        nexus: &Nexus,
        cdb: &[u8],
        data_out: impl Into<IoBuf>,
        expected_in_len: u32,
    ) -> ScsiResponse {
        let _ = expected_in_len;
        let data_out = data_out.into();
        match self.luns.get(&lun) {
            Some(lu) => {
                let out_len = data_out.len();
                let opcode = cdb.first().copied().unwrap_or(0);
                // The time measured is the SCSI execution in the LU, backend I/O (and any
                // wait for a data buffer or the RMW lock) included. The transport calls this
                // once all the command's Data-Out has arrived and sends Data-In and the
                // response after it returns, so network transfer is outside it. The guard
                // ends the command's time in flight even if this future is dropped.
                let in_flight = lu.counters.start();
                let began = Instant::now();
                let r = lu.execute(self, nexus, cdb, data_out).await;
                let elapsed = began.elapsed();
                lu.counters
                    .count(opcode, r.data_in.len(), out_len, r.status, elapsed);
                // After the counts: a scrape that sees the command finished sees it counted.
                drop(in_flight);
                r
            }
            None if lun == 0 => self.controller.execute(self, nexus, cdb, data_out).await,
            None => self.no_lun_execute(cdb),
        }
    }

    /// Commands to a LUN with no logical unit (SPC-4 6.6.2, SAM-5 5.9.4).
    fn no_lun_execute(&self, cdb_bytes: &[u8]) -> ScsiResponse {
        let cmd = match cdb::decode(cdb_bytes) {
            Ok(c) => c,
            Err(_) => return ScsiResponse::check(Sense::lun_not_supported()),
        };
        let transfer = cmd.transfer(NO_LUN_BLOCK_BYTES);
        let r = match cmd {
            Command::Inquiry {
                evpd: false,
                alloc_len,
                ..
            } => Ok(truncate(Identity::standard_no_lun(), alloc_len)),
            Command::ReportLuns { select, alloc_len } => self.report_luns(select, alloc_len),
            Command::RequestSense { alloc_len, .. } => {
                Ok(truncate(Sense::lun_not_supported().encode(), alloc_len))
            }
            _ => Err(Sense::lun_not_supported()),
        };
        ScsiResponse::from_result(r).with_transfer(transfer)
    }

    /// Applies the SCSI-side effects of a task management function.
    pub fn task_management(&self, func: TmFunction, lun: u16, nexus: &Nexus) -> TmResponse {
        match func {
            TmFunction::AbortTask | TmFunction::AbortTaskSet | TmFunction::ClearTaskSet => {
                if let Some(lu) = self.luns.get(&lun) {
                    lu.release_sanitize_waiter(nexus.id, false);
                }
                if self.lun_exists(lun) {
                    TmResponse::Complete
                } else {
                    TmResponse::LunDoesNotExist
                }
            }
            TmFunction::ClearAca => TmResponse::NotSupported,
            TmFunction::LogicalUnitReset => match self.luns.get(&lun) {
                Some(lu) => {
                    lu.state().ua.touch(nexus.id);
                    lu.release_sanitize_waiter(nexus.id, true);
                    lu.reset();
                    TmResponse::Complete
                }
                None if lun == 0 => TmResponse::Complete,
                None => TmResponse::LunDoesNotExist,
            },
            TmFunction::TargetWarmReset | TmFunction::TargetColdReset => {
                for lu in self.luns.values() {
                    lu.state().ua.touch(nexus.id);
                    lu.release_sanitize_waiter(nexus.id, true);
                    lu.reset();
                }
                self.controller.reset();
                TmResponse::Complete
            }
        }
    }

    /// The session behind `nexus` ended: drop its unit attentions and SPC-2 reservations.
    pub fn nexus_gone(&self, nexus: &Nexus) {
        for lu in self.luns.values() {
            lu.forget(nexus.id);
        }
        self.controller.forget(nexus.id);
    }
}

/// What happens to a command when it arrives, before any of its data is taken in.
#[derive(Debug)]
pub enum Admission {
    /// Go on: take its data in and run it on the target.
    Run,
    /// End it with CHECK CONDITION and this sense, without running it or taking its data.
    Terminate(Sense),
    /// It is answered: complete it with this response, without running it.
    Complete(ScsiResponse),
}

/// The unit attentions one I_T nexus is owed for changes of its target's LUN map:
/// REPORTED LUNS DATA HAS CHANGED (pending per LUN in [`LunsChanged`]), and the conditions
/// raised on a logical unit that took over a LUN the nexus used (CAPACITY DATA HAS CHANGED,
/// INQUIRY DATA HAS CHANGED).
///
/// Held by the transport for the nexus (one connection per session, so the connection is
/// the nexus); it allocates only when the inventory changes, never per command.
#[derive(Debug, Default)]
pub struct NexusAttentions {
    luns_changed: LunsChanged,
}

impl NexusAttentions {
    /// The nexus's target went from `old` to `new` (a configuration change took effect).
    /// Establishes REPORTED LUNS DATA HAS CHANGED when the LUN numbers differ; tells each
    /// logical unit that replaced one under a LUN `nexus` used what changed; and raises
    /// INQUIRY DATA HAS CHANGED when LUN 0 switched between a disk and the controller.
    /// Returns whether the inventory changed.
    ///
    /// Called at the nexus's first command after the change and before that command is
    /// admitted, so the inventory the condition speaks of is exactly the one it is served.
    pub fn target_replaced(&mut self, old: &Target, new: &Target, nexus: Option<&Nexus>) -> bool {
        // Targets untouched by the change keep their `Target`, so most sessions of a data
        // plane with many targets skip the comparison.
        if std::ptr::eq(old, new) {
            return false;
        }
        let changed = self
            .luns_changed
            .inventory_changed(old.inventory(), new.inventory());
        if let Some(nexus) = nexus {
            // A LUN kept but served by a new logical unit (its storage changed): the nexus
            // hears of what changed on that LUN at its next command there.
            for old_lu in old.logical_units() {
                if let Some(new_lu) = new.logical_unit(old_lu.lun()) {
                    if !Arc::ptr_eq(old_lu, new_lu) {
                        new_lu.replaced(old_lu, nexus.id);
                    }
                }
            }
            // LUN 0 always answers, as a disk or as the synthetic controller: a switch
            // between the two changes its device type without changing the inventory.
            match (old.logical_unit(0), new.logical_unit(0)) {
                (None, Some(lu)) => lu.took_lun0(nexus.id),
                (Some(_), None) => new.controller_took_lun0(nexus.id),
                _ => {}
            }
        }
        changed
    }

    /// Decides, in CmdSN order as commands arrive, what happens to a command for `lun` with
    /// CDB `cdb` given the pending REPORTED LUNS DATA HAS CHANGED conditions, and clears
    /// what the command clears (rules in `crate::scsi::ua`). A REQUEST SENSE that returns the
    /// condition is answered here with GOOD status and the sense as parameter data.
    pub fn admit(&mut self, lun: u16, cdb: &[u8]) -> Admission {
        match self.luns_changed.gate(lun, cdb) {
            Gate::Run => Admission::Run,
            Gate::Terminate(sense) => Admission::Terminate(sense),
            Gate::SenseData { data, alloc_len } => Admission::Complete(ScsiResponse {
                status: status::GOOD,
                sense: Vec::new(),
                data_in: IoBuf::from(data),
                cdb_transfer_bytes: Some(alloc_len),
            }),
        }
    }
}
