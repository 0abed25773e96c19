//! One logical unit (SAM-5 4.6): its configuration, identity, backend, and the SCSI state
//! kept per unit (mode pages, unit attentions, SPC-2 and persistent reservations). How a
//! command runs on it is `super::dispatch`; the medium commands are `super::medium`.

use super::{Engine, LuConfig};
use crate::backend::{Backend, BackendError, ErrorKind, FileBackend};
use crate::numa::pool::BufferPool;
use crate::scsi::alua::PortGroups;
use crate::scsi::inquiry::{self, BlockLimits, Identity, TargetPort};
use crate::scsi::mode::{ModeDevice, ModeState};
use crate::scsi::pr::PersistentReservations;
use crate::scsi::reservation::Reservations;
use crate::scsi::ua::{self, UnitAttentions};
use crate::scsi::{luns, BlockCount, Lba};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
pub(super) struct LuState {
    pub(super) mode: ModeState,
    pub(super) ua: UnitAttentions,
    pub(super) res: Reservations,
    pub(super) pr: PersistentReservations,
    pub(super) sanitize: super::sanitize::SanitizeState,
    /// The nexuses preventing medium removal (PREVENT ALLOW MEDIUM REMOVAL).
    pub(super) prevent: std::collections::HashSet<u64>,
    pub(super) copies: super::xcopy::Copies,
    /// The target port groups this unit is reached through and their access states.
    pub(super) alua: PortGroups,
}

/// A logical unit: a backend plus SCSI state.
#[derive(Debug)]
pub struct LogicalUnit {
    pub(super) lun: u16,
    pub(super) role: Role,
    pub(super) read_only: bool,
    pub(super) block_size: u32,
    /// Capacity in logical blocks: set at open, changed only by
    /// [`LogicalUnit::refresh_capacity`]; every command reads it once through `blocks()`.
    pub(super) blocks: AtomicU64,
    pub(super) identity: Identity,
    pub(super) backend: Option<Backend>,
    pub(super) pool: Option<BufferPool>,
    pub(super) state: Mutex<LuState>,
    pub(super) rmw: tokio::sync::Mutex<()>,
    /// The medium gate: every command that reads or writes the medium holds it shared for
    /// its backend calls, WRITE ATOMIC (16) holds it exclusively, so no other command sees
    /// an atomic write half done (SBC-4 4.29). The lock is for the whole LU rather than
    /// per range: atomic writes are rare and short (at most one data buffer).
    pub(super) gate: tokio::sync::RwLock<()>,
    /// A removable medium was ejected (`super::removable`): medium access is NOT READY.
    /// Atomic so the per-command medium check takes no lock.
    pub(super) ejected: std::sync::atomic::AtomicBool,
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

/// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT for a physical block of `pbs` bytes over
/// logical blocks of `bs` (SBC-3 5.16.2: a four-bit field).
fn physical_exponent(bs: u32, pbs: u32) -> Result<u8, BackendError> {
    let ratio = pbs / bs.max(1);
    if !pbs.is_multiple_of(bs.max(1)) || !ratio.is_power_of_two() || ratio > 1 << 15 {
        return Err(BackendError::new(
            ErrorKind::Unsupported,
            format!("physical block size {pbs} is not a power-of-two multiple of {bs}"),
        ));
    }
    u8::try_from(ratio.trailing_zeros())
        .map_err(|_| BackendError::new(ErrorKind::Unsupported, "physical block exponent"))
}

impl LogicalUnit {
    /// Opens the backing file or block device (unless offline).
    pub fn open(cfg: &LuConfig) -> Result<Self, BackendError> {
        validate_block_size(cfg.block_size)?;
        if !cfg.online {
            return Self::build(cfg, None);
        }
        let backend = match cfg.engine {
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
                    queue_depth: Some(queue_depth),
                    direct,
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
        let mut limits = BlockLimits::for_block_size(cfg.block_size)
            .with_physical_exponent(physical_exponent(cfg.block_size, cfg.physical_block_size)?);
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
            blocks: AtomicU64::new(blocks),
            identity: Identity {
                device_type: inquiry::TYPE_DISK,
                target_name: cfg.target_name.clone(),
                device_id: cfg.device_id,
                limits,
                thin: cfg.thin,
                removable: cfg.removable,
                port: Some(TargetPort {
                    group: cfg.alua.local().id,
                    relative: cfg.alua.local().relative_port,
                }),
            },
            backend,
            pool: cfg.pool.clone(),
            state: Mutex::new(LuState {
                alua: cfg.alua.clone(),
                ..LuState::default()
            }),
            rmw: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            ejected: std::sync::atomic::AtomicBool::new(false),
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
        self.blocks()
    }

    pub(super) fn blocks(&self) -> u64 {
        // Acquire pairs with the Release in `refresh_capacity`: a command that sees the new
        // capacity also sees the backend that holds it.
        self.blocks.load(Ordering::Acquire)
    }

    /// Grows the medium to `size_bytes` (the backend is extended, never shrunk: a smaller
    /// size is an `Unsupported` error naming both sizes) and then publishes the new
    /// capacity with [`refresh_capacity`](Self::refresh_capacity). Blocking: call it off the
    /// network threads. Returns the capacity in blocks now in force; an offline unit (no
    /// medium) changes nothing and answers 0.
    pub fn grow_to(&self, size_bytes: u64) -> Result<u64, BackendError> {
        let Some(backend) = &self.backend else {
            return Ok(0);
        };
        let bs = u64::from(self.block_size);
        if !size_bytes.is_multiple_of(bs) {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                format!(
                    "{size_bytes} bytes is not a multiple of the block size {}",
                    self.block_size
                ),
            ));
        }
        backend.grow_to(size_bytes)?;
        self.refresh_capacity();
        Ok(self.blocks())
    }

    /// Takes the capacity the backend reports now (a grown file, an image grown by its
    /// cluster) as this unit's capacity. When it differs, new commands use it at once (range
    /// checks, READ CAPACITY, mode block descriptors; commands already running keep the
    /// value they checked against) and every I_T nexus that has used this unit gets UNIT
    /// ATTENTION, CAPACITY DATA HAS CHANGED (SBC-3 §4.11, SPC-4 §5.13: ASC/ASCQ 2Ah/09h) once,
    /// however many changes happen before its next command. Returns whether it changed.
    pub fn refresh_capacity(&self) -> bool {
        let Some(backend) = &self.backend else {
            return false;
        };
        let blocks = backend.size_bytes() / u64::from(self.block_size);
        // Published and raised under the state lock that the unit-attention gate takes, so
        // a command gated after the change finds the condition queued.
        let mut st = self.state();
        if self.blocks.swap(blocks, Ordering::AcqRel) == blocks {
            return false;
        }
        st.ua.raise_others(None, ua::UA_CAPACITY_CHANGED);
        true
    }

    /// Tells nexus `nexus` that this logical unit replaced the one it used under the same
    /// LUN, with the unit attentions that fit the difference (`previous` is that one):
    /// CAPACITY DATA HAS CHANGED when READ CAPACITY now answers differently, INQUIRY DATA HAS
    /// CHANGED when the identity (device id, type, write protection) differs.
    pub fn replaced(&self, previous: &LogicalUnit, nexus: u64) {
        // READ CAPACITY (16) also carries LBPME/LBPRZ (thin provisioning).
        let capacity = self.blocks() != previous.blocks()
            || self.block_size != previous.block_size
            || self.identity.thin != previous.identity.thin;
        // Standard INQUIRY and the VPD pages: device identity, write protection, the Block
        // Limits and Logical Block Provisioning pages.
        let identity = self.identity.device_id != previous.identity.device_id
            || self.identity.port != previous.identity.port
            || self.read_only != previous.read_only
            || self.identity.thin != previous.identity.thin
            || self.identity.limits != previous.identity.limits;
        let mut conditions = ua::replaced_lu_conditions(capacity, identity);
        // The access states as the nexus knew them, against the new unit's.
        let mut groups = previous.state().alua.clone();
        let mut st = self.state();
        if groups.update(&st.alua) {
            conditions.push(ua::UA_ALUA_CHANGED);
        }
        for c in conditions {
            st.ua.raise_new(nexus, c);
        }
    }

    /// Takes the peer groups and access states of `groups` (SPC-4 5.15: an implicit
    /// transition). When a state changed, or a peer came or went, every I_T nexus that has
    /// used this unit gets UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED, once, and
    /// commands gated after this call run under the new states. Returns whether anything
    /// changed.
    pub fn set_port_groups(&self, groups: &PortGroups) -> bool {
        let mut st = self.state();
        let changed = st.alua.update(groups);
        if changed {
            st.ua.raise_others(None, ua::UA_ALUA_CHANGED);
        }
        changed
    }

    /// The target port groups of this unit, this gateway's first.
    pub fn port_groups(&self) -> PortGroups {
        self.state().alua.clone()
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
            blocks: self.blocks(),
        }
    }

    pub(super) fn reset(&self) {
        let mut st = self.state();
        st.res.reset();
        st.prevent.clear();
        st.ua.raise_others(None, ua::UA_RESET);
    }

    pub(super) fn forget(&self, nexus: u64) {
        let mut st = self.state();
        st.ua.forget(nexus);
        st.res.nexus_gone(nexus);
        st.prevent.remove(&nexus);
    }

    /// The pool this LU's data buffers come from, if any: the transport takes Data-Out
    /// buffers from it too.
    pub fn pool(&self) -> Option<&BufferPool> {
        self.pool.as_ref()
    }
}
