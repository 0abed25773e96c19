//! Reservations: SPC-2 RESERVE/RELEASE (SPC-2 7.21, 7.15) held by one I_T nexus, and the
//! conflict rules that decide which commands another nexus may still run.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::Command;

/// Reservation state of one logical unit.
#[derive(Debug, Default)]
pub struct Reservations {
    /// Nexus holding an SPC-2 reservation.
    holder: Option<u64>,
}

/// Outcome of a reservation request that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict;

impl Reservations {
    /// RESERVE(6/10): succeeds for the holder again or when nobody holds it.
    pub fn reserve(&mut self, nexus: u64) -> Result<(), Conflict> {
        match self.holder {
            Some(h) if h != nexus => Err(Conflict),
            _ => {
                self.holder = Some(nexus);
                Ok(())
            }
        }
    }

    /// RELEASE(6/10): releases only the caller's own reservation; otherwise a no-op
    /// (SPC-2 7.15: GOOD status, reservation unchanged).
    pub fn release(&mut self, nexus: u64) {
        if self.holder == Some(nexus) {
            self.holder = None;
        }
    }

    /// LUN reset, target reset: SPC-2 reservations are cleared.
    pub fn reset(&mut self) {
        self.holder = None;
    }

    /// The nexus went away (logout, connection loss): its SPC-2 reservation is released.
    pub fn nexus_gone(&mut self, nexus: u64) {
        self.release(nexus);
    }

    /// Current SPC-2 holder.
    pub fn holder(&self) -> Option<u64> {
        self.holder
    }

    /// True when `cmd` from `nexus` must end in RESERVATION CONFLICT.
    pub fn conflicts(&self, nexus: u64, cmd: &Command) -> bool {
        match self.holder {
            Some(h) if h != nexus => !matches!(
                cmd,
                Command::Inquiry { .. }
                    | Command::ReportLuns { .. }
                    | Command::RequestSense { .. }
                    | Command::Release
                    | Command::ReportSupportedOpcodes { .. }
                    | Command::ReportTargetPortGroups { .. }
                    | Command::ReceiveCopyResults { .. }
                    | Command::PrIn { .. }
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc2_reserve_release_rules() {
        let mut r = Reservations::default();
        r.reserve(1).unwrap();
        r.reserve(1).unwrap();
        assert_eq!(r.reserve(2), Err(Conflict));
        assert!(r.conflicts(2, &Command::TestUnitReady));
        assert!(!r.conflicts(2, &Command::Release));
        assert!(!r.conflicts(1, &Command::TestUnitReady));
        r.release(2);
        assert_eq!(r.holder(), Some(1));
        r.nexus_gone(1);
        assert_eq!(r.holder(), None);
        r.reserve(2).unwrap();
        r.reset();
        assert_eq!(r.holder(), None);
    }
}
