//! One logical unit (SAM-5 4.6): its configuration, identity, backend, and the SCSI state
//! kept per unit (mode pages, unit attentions, SPC-2 and persistent reservations). How a
//! command runs on it is `super::dispatch`; the medium commands are `super::medium`.

use super::{Engine, LuConfig};
use crate::backend::{Backend, BackendError, ErrorKind, FileBackend};
use crate::numa::pool::BufferPool;
use crate::scsi::inquiry::{self, BlockLimits, Identity};
use crate::scsi::mode::{ModeDevice, ModeState};
use crate::scsi::pr::PersistentReservations;
use crate::scsi::reservation::Reservations;
use crate::scsi::ua::{self, UnitAttentions};
use crate::scsi::{luns, BlockCount, Lba};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
pub(super) struct LuState {
    pub(super) mode: ModeState,
    pub(super) ua: UnitAttentions,
    pub(super) res: Reservations,
    pub(super) pr: PersistentReservations,
}

/// A logical unit: a backend plus SCSI state.
#[derive(Debug)]
pub struct LogicalUnit {
    pub(super) lun: u16,
    pub(super) role: Role,
    pub(super) read_only: bool,
    pub(super) block_size: u32,
    pub(super) blocks: u64,
    pub(super) identity: Identity,
    pub(super) backend: Option<Backend>,
    pub(super) pool: Option<BufferPool>,
    pub(super) state: Mutex<LuState>,
    pub(super) rmw: tokio::sync::Mutex<()>,
    pub(super) counters: crate::metrics::LuCounters,
}

/// What kind of logical unit answers: a disk (SBC-3) with or without its medium, or the
/// synthetic storage-array controller at LUN 0 (`super::controller`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// A direct-access block device.
    Disk,
    /// The stand-in LUN 0 of a target without a logical unit there.
    Controller,
}

fn validate_block_size(bs: u32) -> Result<(), BackendError> {
    if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
        return Err(BackendError::new(
            ErrorKind::Unsupported,
            format!("block size {bs} is not a power of two in 512..=65536"),
        ));
    }
    Ok(())
}

impl LogicalUnit {
    /// Opens the backing file or block device (unless offline).
    pub fn open(cfg: &LuConfig) -> Result<Self, BackendError> {
        validate_block_size(cfg.block_size)?;
        if !cfg.online {
            return Self::build(cfg, None);
        }
        let backend = match &cfg.engine {
            Engine::File => Backend::File(FileBackend::open(
                &cfg.path,
                cfg.read_only,
                cfg.create_size_bytes,
            )?),
            Engine::IoUring {
                queue_depth,
                direct,
            } => {
                let opts = crate::backend::UringOptions {
                    queue_depth: Some(*queue_depth),
                    direct: *direct,
                    block_size_bytes: cfg.block_size,
                    force_unavailable: false,
                };
                match crate::backend::UringBackend::open(
                    &cfg.path,
                    cfg.read_only,
                    cfg.create_size_bytes,
                    &opts,
                ) {
                    Ok(u) => Backend::Uring(u),
                    Err(crate::backend::UringOpenError::Unavailable(why)) => {
                        tracing::warn!(
                            device_id = cfg.device_id,
                            reason = %why,
                            "io_uring unavailable: serving this storage with plain file I/O"
                        );
                        Backend::File(FileBackend::open(
                            &cfg.path,
                            cfg.read_only,
                            cfg.create_size_bytes,
                        )?)
                    }
                    Err(crate::backend::UringOpenError::Backend(e)) => return Err(e),
                }
            }
            Engine::Rbd(spec) => {
                Backend::Rbd(crate::backend::RbdBackend::open(spec, cfg.read_only)?)
            }
        };
        Self::build(cfg, Some(backend))
    }

    /// This LU's I/O counters.
    pub fn counters(&self) -> &crate::metrics::LuCounters {
        &self.counters
    }

    /// The engine actually serving I/O: `"file"`, `"iouring"`, `"iouring+odirect"`, or
    /// `"none"` for an offline storage.
    pub fn active_backend(&self) -> &'static str {
        match &self.backend {
            None => "none",
            Some(Backend::Uring(u)) => u.active_kind(),
            Some(Backend::Rbd(_)) => "rbd",
            Some(_) => "file",
        }
    }

    /// Uses an already built backend (memory or fault backends in tests).
    pub fn with_backend(cfg: &LuConfig, backend: Backend) -> Result<Self, BackendError> {
        validate_block_size(cfg.block_size)?;
        Self::build(cfg, if cfg.online { Some(backend) } else { None })
    }

    fn build(cfg: &LuConfig, backend: Option<Backend>) -> Result<Self, BackendError> {
        if cfg.lun > luns::LUN_MAX {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                format!("lun {} above {}", cfg.lun, luns::LUN_MAX),
            ));
        }
        let blocks = backend
            .as_ref()
            .map_or(0, |b| b.size_bytes() / u64::from(cfg.block_size));
        let read_only = cfg.read_only || backend.as_ref().is_some_and(Backend::read_only);
        let mut limits = BlockLimits::for_block_size(cfg.block_size);
        if let Some(pool) = &cfg.pool {
            limits = limits
                .fit_buffer(cfg.block_size, pool.buf_size_bytes())
                .ok_or_else(|| {
                    BackendError::new(
                        ErrorKind::Unsupported,
                        format!(
                            "numaBufferSize {} cannot hold two {}-byte blocks",
                            pool.buf_size_bytes(),
                            cfg.block_size
                        ),
                    )
                })?;
        }
        Ok(Self {
            lun: cfg.lun,
            read_only,
            block_size: cfg.block_size,
            blocks,
            identity: Identity {
                device_type: inquiry::TYPE_DISK,
                target_name: cfg.target_name.clone(),
                device_id: cfg.device_id,
                limits,
                thin: cfg.thin,
            },
            backend,
            pool: cfg.pool.clone(),
            state: Mutex::new(LuState::default()),
            rmw: tokio::sync::Mutex::new(()),
            counters: crate::metrics::LuCounters::default(),
            role: Role::Disk,
        })
    }

    /// LUN number.
    pub fn lun(&self) -> u16 {
        self.lun
    }

    /// Capacity in logical blocks (0 when offline).
    pub fn capacity_blocks(&self) -> u64 {
        self.blocks
    }

    /// Tells nexus `nexus` that this logical unit replaced the one it used under the same
    /// LUN, with the unit attentions that fit the difference (`previous` is that one):
    /// CAPACITY DATA HAS CHANGED when READ CAPACITY now answers differently, INQUIRY DATA HAS
    /// CHANGED when the identity (device id, type, write protection) differs.
    pub fn replaced(&self, previous: &LogicalUnit, nexus: u64) {
        // READ CAPACITY (16) also carries LBPME/LBPRZ (thin provisioning).
        let capacity = self.blocks != previous.blocks
            || self.block_size != previous.block_size
            || self.identity.thin != previous.identity.thin;
        // Standard INQUIRY and the VPD pages: device identity, write protection, the Block
        // Limits and Logical Block Provisioning pages.
        let identity = self.identity.device_id != previous.identity.device_id
            || self.read_only != previous.read_only
            || self.identity.thin != previous.identity.thin
            || self.identity.limits != previous.identity.limits;
        let conditions = ua::replaced_lu_conditions(capacity, identity);
        if conditions.is_empty() {
            return;
        }
        let mut st = self.state();
        for c in conditions {
            st.ua.raise_new(nexus, c);
        }
    }

    /// Tells nexus `nexus` that this logical unit took LUN 0 from the synthetic controller:
    /// the device type and identity behind the LUN changed.
    pub fn took_lun0(&self, nexus: u64) {
        self.state().ua.raise_new(nexus, ua::UA_INQUIRY_CHANGED);
    }

    /// Logical block length.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub(super) fn state(&self) -> MutexGuard<'_, LuState> {
        // State stays consistent under panics in other threads: every update is a single
        // assignment or queue operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn bytes(&self, lba: Lba, n: BlockCount) -> (u64, u64) {
        let bs = u64::from(self.block_size);
        (lba.0.saturating_mul(bs), n.0.saturating_mul(bs))
    }

    pub(super) fn mode_device(&self) -> ModeDevice {
        ModeDevice {
            read_only: self.read_only,
            block_size: self.block_size,
            blocks: self.blocks,
        }
    }

    pub(super) fn reset(&self) {
        let mut st = self.state();
        st.res.reset();
        st.ua.raise_others(None, ua::UA_RESET);
    }

    pub(super) fn forget(&self, nexus: u64) {
        let mut st = self.state();
        st.ua.forget(nexus);
        st.res.nexus_gone(nexus);
    }

    /// The pool this LU's data buffers come from, if any: the transport takes Data-Out
    /// buffers from it too.
    pub fn pool(&self) -> Option<&BufferPool> {
        self.pool.as_ref()
    }
}
