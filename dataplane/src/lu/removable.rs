//! Removable media (SBC-3 4.13, 5.20 START STOP UNIT; SPC-4 6.13 PREVENT ALLOW MEDIUM
//! REMOVAL) on a logical unit configured `removable`: START STOP UNIT with LOEJ ejects
//! (START=0) and loads (START=1) the medium, refused with MEDIUM REMOVAL PREVENTED while any
//! I_T nexus prevents removal; an ejected medium makes every medium access NOT READY, MEDIUM
//! NOT PRESENT (`LogicalUnit::medium`); loading it tells the other nexuses NOT READY TO
//! READY CHANGE, MEDIUM MAY HAVE CHANGED. A nexus's prevention ends with ALLOW, its loss
//! (logout, dropped connection) and any reset. The backing store stays open throughout:
//! ejecting is a state of the unit, not of the storage.

use super::unit::LogicalUnit;
use super::Nexus;
use crate::scsi::sense::Sense;
use std::sync::atomic::Ordering;

impl LogicalUnit {
    /// START STOP UNIT. A POWER CONDITION other than 0 makes START and LOEJ ignored (SBC-3
    /// 5.20); without LOEJ there is nothing to do (our medium needs no spinning up); a unit
    /// that is not removable accepts the command and keeps its medium.
    pub(super) fn start_stop(
        &self,
        nexus: &Nexus,
        power_condition: u8,
        loej: bool,
        start: bool,
    ) -> Result<Vec<u8>, Sense> {
        if !self.identity.removable || power_condition != 0 || !loej {
            return Ok(Vec::new());
        }
        let mut st = self.state();
        if !st.prevent.is_empty() {
            return Err(Sense::medium_removal_prevented());
        }
        let was_ejected = self.ejected.swap(!start, Ordering::Relaxed);
        if start && was_ejected {
            st.ua
                .raise_others(Some(nexus.id), Sense::not_ready_to_ready_change());
        }
        Ok(Vec::new())
    }

    /// PREVENT ALLOW MEDIUM REMOVAL: 1 prevents removal for this nexus, 0 allows it again;
    /// 2 and 3 are for medium changers (INVALID FIELD IN CDB).
    pub(super) fn prevent_allow(&self, nexus: &Nexus, prevent: u8) -> Result<Vec<u8>, Sense> {
        if prevent > 1 {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        if self.identity.removable {
            let mut st = self.state();
            if prevent == 1 {
                st.prevent.insert(nexus.id);
            } else {
                st.prevent.remove(&nexus.id);
            }
        }
        Ok(Vec::new())
    }
}
