//! The SCSI target layer: transport-agnostic and pure (no I/O, no clock, nothing about
//! iSCSI, no backend types). It holds the opcode registry (`opcodes`), turns CDB bytes into
//! a typed plan (`cdb`), builds the data-in payloads for SPC-4 / SBC-3 commands (`inquiry`,
//! `mode`, `opcodes`, `luns`, `provisioning`), decides SANITIZE's parameters (`sanitize`), owns the per-LU state machines (`ua` for unit
//! attentions, `alua` for the asymmetric access states of the target port groups, `reservation` for SPC-2 RESERVE/RELEASE, `pr` for persistent reservations)
//! and names every sense condition (`sense`). The executor in `crate::lu` ties these
//! decisions to a block backend, including what a backend failure looks like as sense.

pub mod alua;
pub mod cdb;
pub mod inquiry;
pub mod luns;
pub mod mode;
pub mod opcodes;
pub mod pr;
pub mod provisioning;
pub mod reservation;
pub mod sanitize;
pub mod sense;
pub mod ua;
pub mod xcopy;

pub use sense::{Sense, SenseKey};

/// A logical block address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lba(pub u64);

/// A number of logical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockCount(pub u64);

/// SAM-5 status codes.
pub mod status {
    /// GOOD.
    pub const GOOD: u8 = 0x00;
    /// CHECK CONDITION: sense data follows.
    pub const CHECK_CONDITION: u8 = 0x02;
    /// BUSY.
    pub const BUSY: u8 = 0x08;
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    /// TASK SET FULL.
    pub const TASK_SET_FULL: u8 = 0x28;
}

/// Checks that `[lba, lba + blocks)` lies within a medium of `capacity_blocks` blocks
/// (SBC-3 4.5: LOGICAL BLOCK ADDRESS OUT OF RANGE otherwise, including for zero blocks
/// starting past the end).
pub fn check_lba_range(lba: Lba, blocks: BlockCount, capacity_blocks: u64) -> Result<(), Sense> {
    if lba.0 > capacity_blocks {
        return Err(Sense::lba_out_of_range());
    }
    match lba.0.checked_add(blocks.0) {
        Some(end) if end <= capacity_blocks => Ok(()),
        _ => Err(Sense::lba_out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba_range_edges() {
        assert!(check_lba_range(Lba(0), BlockCount(10), 10).is_ok());
        assert!(check_lba_range(Lba(10), BlockCount(0), 10).is_ok());
        assert!(check_lba_range(Lba(11), BlockCount(0), 10).is_err());
        assert!(check_lba_range(Lba(9), BlockCount(2), 10).is_err());
        assert!(check_lba_range(Lba(u64::MAX), BlockCount(1), 10).is_err());
    }
}
