//! What a session is bound to (its target, I_T nexus and session-table entry), and
//! following configuration changes of that target's LUN map while the session lives.

use std::sync::Arc;

use tracing::debug;

use super::Conn;
use crate::live::TargetEntry;
use crate::lu::Nexus;
use crate::scsi::ua::LunsChanged;
use crate::session::KillSwitch;

/// The target, nexus and session entry of a connection in full feature phase.
#[derive(Default)]
pub(super) struct Bound {
    /// The session's target (none for discovery sessions).
    pub(super) target: Option<Arc<TargetEntry>>,
    /// Snapshot generation `target` was taken from.
    pub(super) target_gen: u64,
    /// REPORTED LUNS DATA HAS CHANGED conditions of this connection's I_T nexus (one
    /// connection per session, so the connection is the nexus).
    pub(super) luns_changed: LunsChanged,
    pub(super) nexus: Option<Nexus>,
    /// TSIH and nexus id of the session-table entry.
    pub(super) session: Option<(u16, u64)>,
    /// Fires when the session is reinstated elsewhere or closed by the operator.
    pub(super) kill: Option<KillSwitch>,
}

/// The LUNs REPORT LUNS lists for `t`: its logical units plus LUN 0, which always answers
/// (as the synthetic controller when no logical unit has that number).
fn lun_inventory(t: &crate::lu::Target) -> impl Iterator<Item = u16> + '_ {
    std::iter::once(0).chain(t.logical_units().map(|lu| lu.lun()))
}

impl Conn {
    /// Follows configuration changes: after a new snapshot, the next command sees the
    /// target's new LUN map (a LUN added is reachable, one removed answers LOGICAL UNIT NOT
    /// SUPPORTED). Commands already running keep the map they started with. A target that
    /// was removed keeps its old entry; the control plane refuses that while sessions exist.
    ///
    /// When the LUN numbers differ from the map this nexus had, REPORTED LUNS DATA HAS
    /// CHANGED becomes pending on its LUNs (SPC-4 6.33; rules in `scsi::ua`). Done here, at
    /// the nexus's first command after the change and before that command is judged, so
    /// the inventory the condition speaks of is exactly the one this nexus is served.
    pub(super) fn refresh_target(&mut self) {
        let g = self.shared.generation();
        let bound = &mut self.bound;
        if g == bound.target_gen {
            return;
        }
        bound.target_gen = g;
        let Some(new) = self
            .shared
            .current()
            .targets
            .get(&self.neg.target_name)
            .cloned()
        else {
            return;
        };
        if let Some(old) = &bound.target {
            // Targets untouched by the change keep their `lu::Target`, so most sessions of a
            // data plane with many targets skip the comparison.
            if !Arc::ptr_eq(&old.scsi, &new.scsi)
                && bound
                    .luns_changed
                    .inventory_changed(lun_inventory(&old.scsi), lun_inventory(&new.scsi))
            {
                debug!(
                    peer = %self.sock.peer,
                    target = %self.neg.target_name,
                    "LUN inventory changed: REPORTED LUNS DATA HAS CHANGED pending"
                );
            }
            // A LUN kept but served by a new logical unit (its storage changed): the nexus
            // hears of what changed on that LUN (capacity, identity) at its next command there.
            if let Some(nexus) = &bound.nexus {
                for old_lu in old.scsi.logical_units() {
                    if let Some(new_lu) = new.scsi.logical_unit(old_lu.lun()) {
                        if !Arc::ptr_eq(old_lu, new_lu) {
                            new_lu.replaced(old_lu, nexus.id);
                        }
                    }
                }
                // LUN 0 always answers, as a disk or as the synthetic controller: a switch
                // between the two changes its device type without changing the inventory.
                match (old.scsi.logical_unit(0), new.scsi.logical_unit(0)) {
                    (None, Some(lu)) => lu.took_lun0(nexus.id),
                    (Some(_), None) => new.scsi.controller_took_lun0(nexus.id),
                    _ => {}
                }
            }
        }
        bound.target = Some(new);
    }
}
