//! Logical units and the SCSI target executor: ties the pure decisions of `crate::scsi`
//! to a `crate::backend::Backend` (SAM-5 task execution, SPC-4 / SBC-3 command semantics).
//!
//! - `unit`: a logical unit, its SCSI state and how it is built (disk or controller).
//! - `dispatch`: the one path every command to a logical unit takes: the unit-attention
//!   gate, CDB decode, reservation checks, the command itself, the transfer length.
//! - `medium`: the commands that touch the backend, and what a backend error looks like
//!   as sense data.
//! - `controller`: the synthetic storage-array controller that answers LUN 0 when no
//!   logical unit has that number (SCC-2), a logical unit without a medium.
//! - `target`: the LUN map, LUNs without a logical unit, task management, and the unit
//!   attentions a nexus is owed when the LUN map changes.
//!
//! # API used by the transport
//!
//! ```text
//! Nexus { id: u64, initiator_port: Arc<str> }          // one per session (I_T nexus)
//! LuConfig { device_id, path, online, read_only, block_size, create_size_bytes, target_name, lun }
//! LogicalUnit::open(&LuConfig) -> Result<LogicalUnit, BackendError>
//! LogicalUnit::with_backend(&LuConfig, Backend) -> Result<LogicalUnit, BackendError>
//! LogicalUnit::grow_to(&self, size_bytes) -> Result<u64, BackendError>   // online resize (blocking)
//! LogicalUnit::refresh_capacity(&self) -> bool   // the backend's size changed: publish it, UA
//! LogicalUnit::set_port_groups(&self, &PortGroups) -> bool   // new ALUA states: apply, UA
//! Target::new(name, Vec<(u16, Arc<LogicalUnit>)>) -> Target
//! Target::execute(&self, lun, &Nexus, cdb, data_out, expected_in_len).await -> ScsiResponse
//! Target::task_management(&self, TmFunction, lun, &Nexus) -> TmResponse
//! Target::nexus_gone(&self, &Nexus)
//! Target::lun_exists(&self, lun) -> bool
//! NexusAttentions::target_replaced(&mut self, &old, &new, Option<&Nexus>) -> bool
//! NexusAttentions::admit(&mut self, lun, cdb) -> Admission
//! ScsiResponse { status, sense, data_in, cdb_transfer_bytes }
//! ```
//!
//! `execute` never panics on any CDB or data-out; every failure becomes a status plus
//! sense. `data_in` is already truncated to the CDB allocation length; the transport still
//! truncates it to the Expected Data Transfer Length and computes residuals from
//! `cdb_transfer_bytes`. For data-out commands only the whole blocks actually received are
//! written (libiscsi's residual tests expect an under-sized WRITE to write what was sent).
//!
//! Locking: each LU has one short `std::sync::Mutex` for its SCSI state (mode pages, unit
//! attentions, reservations), never held across an await, and one `tokio::sync::Mutex`
//! that serialises read-modify-write commands (COMPARE AND WRITE, ORWRITE) against each other.

mod controller;
mod dispatch;
mod medium;
mod removable;
mod sanitize;
mod target;
#[cfg(test)]
mod tests;
mod unit;
mod xcopy;

pub use target::{Admission, CopyScope, NexusAttentions, Target};
pub use unit::LogicalUnit;

use crate::buf::IoBuf;
use crate::numa::pool::BufferPool;
use crate::scsi::alua::{AccessState, PortGroup, PortGroups};
use crate::scsi::cdb::{DataDir, Transfer};
use crate::scsi::sense::Sense;
use crate::scsi::status;
use std::path::PathBuf;
use std::sync::Arc;

/// Identity of an I_T nexus: a unique id per session plus the initiator port name
/// (iqn + ",i,0x" + ISID hex), used by unit attentions and reservations.
#[derive(Clone, Debug)]
pub struct Nexus {
    /// Unique per session, never reused while the process lives.
    pub id: u64,
    /// SCSI initiator port name.
    pub initiator_port: Arc<str>,
}

/// Configuration of one logical unit.
#[derive(Clone, Debug)]
pub struct LuConfig {
    /// Stable device id: serial number and NAA identifier derive from it.
    pub device_id: u64,
    /// Backing file or block device.
    pub path: PathBuf,
    /// False: the LU answers INQUIRY / REPORT LUNS but medium access is NOT READY.
    pub online: bool,
    /// Write protected.
    pub read_only: bool,
    /// Logical block length in bytes (power of two, 512..=65536).
    pub block_size: u32,
    /// Physical block length in bytes: `block_size` times a power of two up to 2^15.
    pub physical_block_size: u32,
    /// Removable medium (RMB, START STOP UNIT load/eject, PREVENT ALLOW MEDIUM REMOVAL).
    pub removable: bool,
    /// Create a sparse file of this size when `path` is missing.
    pub create_size_bytes: Option<u64>,
    /// iSCSI target name (for identifiers).
    pub target_name: String,
    /// LUN number (0..=16383).
    pub lun: u16,
    /// Which backing-store engine to use.
    pub engine: Engine,
    /// Advertise logical block provisioning (LBPME, UNMAP, WRITE SAME with UNMAP).
    pub thin: bool,
    /// Where READ and WRITE data buffers come from: the pool of the storage's NUMA node.
    /// OPTIMAL TRANSFER LENGTH shrinks to what one buffer holds. `None` (unit tests, tools)
    /// uses vectors.
    pub pool: Option<BufferPool>,
    /// The target port groups the unit is reached through (this gateway's, its peers')
    /// and their access states for it (SPC-4 5.15).
    pub alua: PortGroups,
}

/// The backing-store engine a storage asks for (`backendType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Plain file I/O (`"file"`).
    #[default]
    File,
    /// io_uring (`"iouring"`), falling back to `File` when the kernel refuses it.
    IoUring {
        /// `ioUringQueueDepth`.
        queue_depth: u32,
        /// Open with O_DIRECT when the file system supports it.
        direct: bool,
    },
}

/// Outcome of one SCSI command.
#[derive(Debug, PartialEq, Eq)]
pub struct ScsiResponse {
    /// SAM status: 0 GOOD, 2 CHECK CONDITION, 0x18 RESERVATION CONFLICT.
    pub status: u8,
    /// Fixed-format sense data (18 bytes) for CHECK CONDITION, else empty.
    pub sense: Vec<u8>,
    /// Data-in, truncated to the allocation length: a pool buffer for medium reads.
    pub data_in: IoBuf,
    /// Bytes the CDB asks to move in its data direction; `None` when it has no data phase
    /// (or could not be decoded).
    pub cdb_transfer_bytes: Option<u32>,
}

impl ScsiResponse {
    pub(crate) fn good(data_in: IoBuf) -> Self {
        Self {
            status: status::GOOD,
            sense: Vec::new(),
            data_in,
            cdb_transfer_bytes: None,
        }
    }

    pub(crate) fn check(sense: Sense) -> Self {
        Self {
            status: status::CHECK_CONDITION,
            sense: sense.encode(),
            data_in: IoBuf::empty(),
            cdb_transfer_bytes: None,
        }
    }

    pub(crate) fn conflict() -> Self {
        Self {
            status: status::RESERVATION_CONFLICT,
            sense: Vec::new(),
            data_in: IoBuf::empty(),
            cdb_transfer_bytes: None,
        }
    }

    pub(crate) fn from_result<T: Into<IoBuf>>(r: Result<T, Sense>) -> Self {
        match r {
            Ok(d) => Self::good(d.into()),
            Err(s) => Self::check(s),
        }
    }

    /// Records the bytes the CDB asks to move, for commands that have a data phase.
    pub(crate) fn with_transfer(mut self, transfer: Transfer) -> Self {
        if transfer.dir != DataDir::None {
            self.cdb_transfer_bytes = Some(u32::try_from(transfer.bytes).unwrap_or(u32::MAX));
        }
        self
    }
}

/// Task management functions with SCSI-side effects (RFC 7143 11.5.1 / SAM-5 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmFunction {
    /// ABORT TASK: nothing to undo here; the transport aborts the task.
    AbortTask,
    /// ABORT TASK SET.
    AbortTaskSet,
    /// CLEAR TASK SET.
    ClearTaskSet,
    /// CLEAR ACA (we never establish ACA).
    ClearAca,
    /// LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// TARGET WARM RESET.
    TargetWarmReset,
    /// TARGET COLD RESET.
    TargetColdReset,
}

/// Task management outcome (maps onto the iSCSI TMF response codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmResponse {
    /// Function complete.
    Complete,
    /// The LUN does not exist.
    LunDoesNotExist,
    /// Function not supported.
    NotSupported,
}

impl LuConfig {
    /// The settings the logical unit `lun` of `target` is opened with from a validated
    /// storage, taking its data buffers from the pool of the storage's NUMA node (or the
    /// first pool when it names none).
    pub fn from_storage(
        target: &str,
        lun: u16,
        storage: &tgt_proto::ValidStorage,
        alua: &tgt_proto::ValidAlua,
        pools: &crate::numa::NumaPools,
    ) -> Self {
        let pool = storage
            .numa_node()
            .and_then(|n| pools.pool_for(n))
            .or_else(|| pools.pools().first())
            .cloned();
        Self {
            device_id: storage.device_id(),
            path: storage.path().to_path_buf(),
            online: storage.online(),
            read_only: storage.read_only(),
            block_size: storage.block_size(),
            physical_block_size: storage.physical_block_size(),
            removable: storage.removable(),
            create_size_bytes: storage.size_bytes(),
            target_name: target.to_string(),
            lun,
            engine: match storage.backend() {
                tgt_proto::BackendType::Iouring => Engine::IoUring {
                    queue_depth: storage.io_uring_queue_depth(),
                    direct: storage.direct_io(),
                },
                tgt_proto::BackendType::File => Engine::File,
            },
            thin: storage.thin_provisioning(),
            pool,
            alua: port_groups(alua, storage),
        }
    }
}

/// The target port groups of a storage's logical units: this gateway's group and its
/// peers from the `alua` section, each in the state the storage's `aluaStates` gives it.
pub fn port_groups(alua: &tgt_proto::ValidAlua, storage: &tgt_proto::ValidStorage) -> PortGroups {
    let group = |id: u16, relative_port: u16| {
        PortGroup::new(id, relative_port, access_state(storage.alua_state(id)))
    };
    PortGroups::new(
        group(alua.target_port_group(), alua.relative_target_port()),
        alua.peers().iter().map(|&(g, r)| group(g, r)).collect(),
    )
}

/// The SCSI access state of a configured one.
pub fn access_state(s: tgt_proto::AluaState) -> AccessState {
    match s {
        tgt_proto::AluaState::ActiveOptimized => AccessState::ActiveOptimized,
        tgt_proto::AluaState::ActiveNonOptimized => AccessState::ActiveNonOptimized,
        tgt_proto::AluaState::Standby => AccessState::Standby,
        tgt_proto::AluaState::Unavailable => AccessState::Unavailable,
        tgt_proto::AluaState::Transitioning => AccessState::Transitioning,
    }
}
