//! The synthetic storage-array controller (SCC-2) that answers LUN 0 of a target whose
//! LUN map has no logical unit 0. SAM-5 4.6.3 requires LUN 0 to exist; initiators probe it
//! with INQUIRY and REPORT LUNS before anything else.
//!
//! It is a logical unit like the others, on the same dispatch path (`super::dispatch`):
//! the same unit-attention gate, INQUIRY from its own identity (peripheral device type
//! 0Ch), REPORT LUNS and REQUEST SENSE. It has no medium and needs none: TEST UNIT READY is
//! GOOD and REQUEST SENSE with nothing pending is NO SENSE. Every other command it refuses
//! with INVALID COMMAND OPERATION CODE.

use super::unit::{LogicalUnit, LuState, Role};
use crate::scsi::cdb::Command;
use crate::scsi::inquiry::{self, BlockLimits, Identity};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// The block size the controller reports transfer lengths in; it has no blocks.
const CONTROLLER_BLOCK_BYTES: u32 = 512;

impl LogicalUnit {
    /// The controller standing in for LUN 0 of the target named `target_name`.
    pub(super) fn controller(target_name: &str) -> Self {
        Self {
            lun: 0,
            role: Role::Controller,
            read_only: false,
            block_size: CONTROLLER_BLOCK_BYTES,
            blocks: AtomicU64::new(0),
            identity: Identity {
                device_type: inquiry::TYPE_CONTROLLER,
                target_name: target_name.to_string(),
                // The controller stand-in needs a device id distinct from real LUs'.
                device_id: inquiry::fnv1a64(target_name.as_bytes()),
                limits: BlockLimits::for_block_size(CONTROLLER_BLOCK_BYTES),
                thin: false,
                removable: false,
                port: None,
            },
            backend: None,
            pool: None,
            state: Mutex::new(LuState::default()),
            rmw: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            ejected: std::sync::atomic::AtomicBool::new(false),
            counters: crate::metrics::LuCounters::default(),
        }
    }
}

/// True for the commands the controller serves (the SCC-2 subset we offer).
pub(super) fn serves(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::TestUnitReady
            | Command::Inquiry { .. }
            | Command::ReportLuns { .. }
            | Command::RequestSense { .. }
    )
}
