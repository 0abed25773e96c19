//! Logical units and the SCSI target executor: ties the pure decisions of `crate::scsi`
//! to a `crate::backend::Backend` (SAM-5 task execution, SPC-4 / SBC-3 command semantics).
//!
//! # API used by the transport
//!
//! ```text
//! Nexus { id: u64, initiator_port: Arc<str> }          // one per session (I_T nexus)
//! LuConfig { device_id, path, online, read_only, block_size, create_size_bytes, target_name, lun }
//! LogicalUnit::open(&LuConfig) -> Result<LogicalUnit, BackendError>
//! LogicalUnit::with_backend(&LuConfig, Backend) -> Result<LogicalUnit, BackendError>
//! Target::new(name, Vec<(u16, Arc<LogicalUnit>)>) -> Target
//! Target::execute(&self, lun, &Nexus, cdb, data_out, expected_in_len).await -> ScsiResponse
//! Target::task_management(&self, TmFunction, lun, &Nexus) -> TmResponse
//! Target::nexus_gone(&self, &Nexus)
//! Target::lun_exists(&self, lun) -> bool
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

use crate::backend::{Backend, BackendError, ErrorKind, FileBackend};
use crate::buf::IoBuf;
use crate::numa::pool::BufferPool;
use crate::scsi::cdb::{self, op, Command, DataDir, WriteKind};
use crate::scsi::inquiry::{self, BlockLimits, Identity};
use crate::scsi::mode::{self, ModeDevice, ModeState};
use crate::scsi::opcodes::{self, RsocRequest};
use crate::scsi::pr::{PersistentReservations, PrOutcome, Requester};
use crate::scsi::provisioning;
use crate::scsi::reservation::Reservations;
use crate::scsi::sense::{Sense, FIXED_SENSE_LEN};
use crate::scsi::ua::{self, UnitAttentions};
use crate::scsi::{check_lba_range, luns, status, BlockCount, Lba};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

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
    fn good(data_in: IoBuf) -> Self {
        Self {
            status: status::GOOD,
            sense: Vec::new(),
            data_in,
            cdb_transfer_bytes: None,
        }
    }

    fn check(sense: Sense) -> Self {
        Self {
            status: status::CHECK_CONDITION,
            sense: sense.encode(),
            data_in: IoBuf::empty(),
            cdb_transfer_bytes: None,
        }
    }

    fn conflict() -> Self {
        Self {
            status: status::RESERVATION_CONFLICT,
            sense: Vec::new(),
            data_in: IoBuf::empty(),
            cdb_transfer_bytes: None,
        }
    }

    fn from_result<T: Into<IoBuf>>(r: Result<T, Sense>) -> Self {
        match r {
            Ok(d) => Self::good(d.into()),
            Err(s) => Self::check(s),
        }
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

/// Largest buffer a single backend call uses for WRITE SAME / VERIFY chunking.
const CHUNK_BYTES: u64 = 1 << 20;
/// Largest range GET LBA STATUS examines per command.
const LBA_STATUS_SCAN_BYTES: u64 = 1 << 30;

#[derive(Debug, Default)]
struct LuState {
    mode: ModeState,
    ua: UnitAttentions,
    res: Reservations,
    pr: PersistentReservations,
}

/// A logical unit: a backend plus SCSI state.
#[derive(Debug)]
pub struct LogicalUnit {
    lun: u16,
    read_only: bool,
    block_size: u32,
    blocks: u64,
    identity: Identity,
    backend: Option<Backend>,
    pool: Option<BufferPool>,
    state: Mutex<LuState>,
    rmw: tokio::sync::Mutex<()>,
    counters: crate::metrics::LuCounters,
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

fn sense_write(e: &BackendError) -> Sense {
    Sense::from_backend(e.kind, true)
}

fn sense_read(e: &BackendError) -> Sense {
    Sense::from_backend(e.kind, false)
}

fn truncate(mut d: Vec<u8>, alloc_len: u32) -> Vec<u8> {
    let n = usize::try_from(alloc_len).unwrap_or(usize::MAX);
    d.truncate(n);
    d
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn to_usize(v: u64) -> Result<usize, Sense> {
    usize::try_from(v).map_err(|_| Sense::invalid_field_in_cdb(0, None))
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

    fn state(&self) -> MutexGuard<'_, LuState> {
        // State stays consistent under panics in other threads: every update is a single
        // assignment or queue operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes(&self, lba: Lba, n: BlockCount) -> (u64, u64) {
        let bs = u64::from(self.block_size);
        (lba.0.saturating_mul(bs), n.0.saturating_mul(bs))
    }

    fn mode_device(&self) -> ModeDevice {
        ModeDevice {
            read_only: self.read_only,
            block_size: self.block_size,
            blocks: self.blocks,
        }
    }

    fn reset(&self) {
        let mut st = self.state();
        st.res.reset();
        st.ua.raise_others(None, ua::UA_RESET);
    }

    fn forget(&self, nexus: u64) {
        let mut st = self.state();
        st.ua.forget(nexus);
        st.res.nexus_gone(nexus);
    }

    async fn execute(
        &self,
        target: &Target,
        nexus: &Nexus,
        cdb_bytes: &[u8],
        data_out: IoBuf,
    ) -> ScsiResponse {
        let opcode = cdb_bytes.first().copied().unwrap_or(0xFF);
        let ua_exempt = matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE);
        {
            let mut st = self.state();
            st.ua.touch(nexus.id);
            if !ua_exempt {
                if let Some(s) = st.ua.take(nexus.id) {
                    return ScsiResponse::check(s);
                }
            }
        }
        let cmd = match cdb::decode(cdb_bytes) {
            Ok(c) => c,
            Err(s) => return ScsiResponse::check(s),
        };
        let transfer = cmd.transfer(self.block_size);
        let conflict = {
            let st = self.state();
            st.res.conflicts(nexus.id, &cmd) || st.pr.conflicts(&nexus.initiator_port, &cmd)
        };
        let mut resp = if conflict {
            ScsiResponse::conflict()
        } else {
            self.run(target, nexus, &cmd, data_out).await
        };
        if transfer.dir != DataDir::None {
            resp.cdb_transfer_bytes = Some(u32::try_from(transfer.bytes).unwrap_or(u32::MAX));
        }
        resp
    }

    /// The backend, or NOT READY / MEDIUM NOT PRESENT when offline.
    fn medium(&self) -> Result<&Backend, Sense> {
        self.backend.as_ref().ok_or(Sense::medium_not_present())
    }

    fn writable(&self) -> Result<&Backend, Sense> {
        let b = self.medium()?;
        if self.read_only {
            return Err(Sense::write_protected());
        }
        Ok(b)
    }

    fn check_transfer_len(&self, n: BlockCount, field_byte: u16) -> Result<(), Sense> {
        if n.0 > u64::from(self.identity.limits.max_transfer_blocks) {
            return Err(Sense::invalid_field_in_cdb(field_byte, None));
        }
        Ok(())
    }

    async fn flush_if(&self, b: &Backend, needed: bool) -> Result<(), Sense> {
        if needed {
            b.flush().await.map_err(|e| sense_write(&e))?;
        }
        Ok(())
    }

    async fn run(
        &self,
        target: &Target,
        nexus: &Nexus,
        cmd: &Command,
        data_out: IoBuf,
    ) -> ScsiResponse {
        // The medium's data path moves pool buffers end to end; everything else works on
        // borrowed bytes and answers with small vectors.
        match *cmd {
            Command::Read { lba, blocks, .. } => {
                return ScsiResponse::from_result(self.read(lba, blocks).await)
            }
            Command::Write {
                kind,
                lba,
                blocks,
                fua,
                ..
            } => {
                return ScsiResponse::from_result(
                    self.write(kind, lba, blocks, fua, data_out).await,
                )
            }
            _ => {}
        }
        let data_out = data_out.as_slice();
        let r: Result<Vec<u8>, Sense> = match *cmd {
            Command::TestUnitReady => self.medium().map(|_| Vec::new()),
            Command::Inquiry {
                evpd,
                page,
                alloc_len,
            } => {
                let d = if evpd {
                    self.identity.vpd(page)
                } else {
                    Ok(self.identity.standard())
                };
                d.map(|d| truncate(d, alloc_len))
            }
            Command::RequestSense { desc, alloc_len } => self.request_sense(nexus, desc, alloc_len),
            Command::ReportLuns { select, alloc_len } => {
                luns::report_luns(select, &target.lun_list()).map(|d| truncate(d, alloc_len))
            }
            Command::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                service_action,
                alloc_len,
            } => {
                let ops: Vec<opcodes::OpEntry> = opcodes::DISK_OPS
                    .iter()
                    .chain(opcodes::PR_OPS)
                    .copied()
                    .collect();
                opcodes::report(
                    RsocRequest {
                        rctd,
                        options,
                        opcode,
                        service_action,
                    },
                    &ops,
                )
                .map(|d| truncate(d, alloc_len))
            }
            Command::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc_len,
            } => {
                let st = self.state().mode;
                mode::mode_sense(
                    mode::SenseRequest {
                        ten,
                        dbd,
                        llbaa,
                        pc,
                        page,
                        subpage,
                    },
                    &st,
                    self.mode_device(),
                )
                .map(|d| truncate(d, alloc_len))
            }
            Command::ModeSelect {
                ten,
                pf,
                sp,
                param_len,
            } => self.mode_select(nexus, ten, pf, sp, param_len, data_out),
            Command::StartStopUnit { .. } => Ok(Vec::new()),
            Command::PreventAllow { prevent } => {
                if prevent > 1 {
                    Err(Sense::invalid_field_in_cdb(4, Some(1)))
                } else {
                    Ok(Vec::new())
                }
            }
            Command::Reserve => {
                let mut st = self.state();
                // SPC-4 5.9.2: RESERVE(6/10) conflicts with any persistent reservation.
                if st.pr.reserved() || st.res.reserve(nexus.id).is_err() {
                    return ScsiResponse::conflict();
                }
                Ok(Vec::new())
            }
            Command::Release => {
                self.state().res.release(nexus.id);
                Ok(Vec::new())
            }
            Command::PrIn {
                service_action,
                alloc_len,
            } => self
                .state()
                .pr
                .pr_in(service_action)
                .map(|d| truncate(d, alloc_len)),
            Command::PrOut {
                service_action,
                scope,
                pr_type,
                param_len,
            } => {
                // Without SPEC_I_PT the basic parameter list is exactly 24 bytes (SPC-4 6.14.1).
                if param_len != 24 || data_out.len() < 24 {
                    return ScsiResponse::check(Sense::param_list_length_error());
                }
                let mut st = self.state();
                let who = Requester {
                    nexus: nexus.id,
                    port: &nexus.initiator_port,
                };
                match st
                    .pr
                    .pr_out(who, service_action, scope, pr_type, &data_out[..24])
                {
                    Ok(PrOutcome::Conflict) => return ScsiResponse::conflict(),
                    Ok(PrOutcome::Done(uas)) => {
                        for (id, c) in uas {
                            st.ua.raise(id, c);
                        }
                        Ok(Vec::new())
                    }
                    Err(s) => Err(s),
                }
            }
            Command::ReadCapacity10 => self.medium().map(|_| self.read_capacity10()),
            Command::ReadCapacity16 { alloc_len } => self
                .medium()
                .map(|_| truncate(self.read_capacity16(), alloc_len)),
            // Served above.
            Command::Read { .. } | Command::Write { .. } => Ok(Vec::new()),
            Command::Verify {
                lba,
                blocks,
                bytchk,
            } => self.verify(lba, blocks, bytchk, data_out).await,
            Command::CompareAndWrite { lba, blocks, fua } => {
                self.compare_and_write(lba, blocks, fua, data_out).await
            }
            Command::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
                sixteen,
            } => {
                self.write_same(lba, blocks, unmap, ndob, sixteen, data_out)
                    .await
            }
            // Without logical block provisioning UNMAP is not a command we offer (SBC-3 §4.7).
            Command::Unmap { .. } if !self.identity.thin => Err(Sense::invalid_opcode()),
            Command::Unmap { param_len } => self.unmap(param_len, data_out).await,
            Command::GetLbaStatus { lba, alloc_len } => self.get_lba_status(lba, alloc_len).await,
            Command::SyncCache { lba, blocks } => self.sync_cache(lba, blocks).await,
            Command::Prefetch { lba, blocks } => self
                .medium()
                .and_then(|_| check_lba_range(lba, blocks, self.blocks))
                .map(|()| Vec::new()),
            Command::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc_len,
            } => self
                .medium()
                .map(|_| truncate(read_defect_data(twelve, plist, glist, format), alloc_len)),
        };
        ScsiResponse::from_result(r)
    }

    fn request_sense(&self, nexus: &Nexus, desc: bool, alloc_len: u32) -> Result<Vec<u8>, Sense> {
        if desc {
            // Descriptor-format sense is not supported (Control page D_SENSE=0).
            return Err(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        let pending = self.state().ua.take(nexus.id);
        let s = match pending {
            Some(s) => s.encode(),
            None if self.backend.is_none() => Sense::medium_not_present().encode(),
            None => no_sense(),
        };
        Ok(truncate(s, alloc_len))
    }

    fn mode_select(
        &self,
        nexus: &Nexus,
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let n = usize::try_from(param_len)
            .unwrap_or(usize::MAX)
            .min(data_out.len());
        if n < usize::try_from(param_len).unwrap_or(usize::MAX) {
            return Err(Sense::param_list_length_error());
        }
        let mut st = self.state();
        let new = mode::mode_select(ten, pf, sp, &data_out[..n], &st.mode, self.mode_device())?;
        if new != st.mode {
            st.mode = new;
            st.ua.raise_others(Some(nexus.id), ua::UA_MODE_CHANGED);
        }
        Ok(Vec::new())
    }

    fn read_capacity10(&self) -> Vec<u8> {
        let last = self.blocks.saturating_sub(1);
        let last32 = u32::try_from(last).unwrap_or(u32::MAX);
        let mut d = last32.to_be_bytes().to_vec();
        d.extend_from_slice(&self.block_size.to_be_bytes());
        d
    }

    fn read_capacity16(&self) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0..8].copy_from_slice(&self.blocks.saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&self.block_size.to_be_bytes());
        // LBPME (thin provisioning enabled) and LBPRZ (unmapped blocks read zero), only when
        // the storage advertises provisioning (`thinprovisioning`, default on).
        if self.identity.thin {
            d[14] = 0x80 | 0x40;
        }
        d
    }

    async fn read(&self, lba: Lba, blocks: BlockCount) -> Result<IoBuf, Sense> {
        let b = self.medium()?;
        check_lba_range(lba, blocks, self.blocks)?;
        self.check_transfer_len(blocks, 7)?;
        if blocks.0 == 0 {
            return Ok(IoBuf::empty());
        }
        let (off, len) = self.bytes(lba, blocks);
        let buf = self.data_buf(to_usize(len)?).await?;
        let (buf, r) = b.read(off, buf).await;
        r.map_err(|e| sense_read(&e))?;
        Ok(buf)
    }

    /// A buffer of `len` bytes for the medium's data: from this LU's pool, waiting up to
    /// `POOL_WAIT_MS_MAX` when all are in use; or a vector for LUs built without a pool
    /// (unit tests, tools), for transfers longer than a pool buffer (OPTIMAL TRANSFER LENGTH
    /// tells initiators to stay within one) and after a wait that timed out, both counted in
    /// the pool's heap fallbacks. The bound keeps a command that already holds a buffer (the
    /// Data-Out of an ORWRITE or COMPARE AND WRITE, if the transport gave it one) from
    /// waiting forever on a pool only it could refill.
    async fn data_buf(&self, len: usize) -> Result<IoBuf, Sense> {
        let Some(pool) = &self.pool else {
            return Ok(IoBuf::Vec(vec![0u8; len]));
        };
        if len > pool.buf_size_bytes() {
            pool.note_heap();
            return Ok(IoBuf::Vec(vec![0u8; len]));
        }
        let got = match pool.try_get() {
            Some(p) => Some(p),
            // Another wait already timed out and nothing came back: do not wait again.
            None if pool.is_starved() => None,
            None => tokio::time::timeout(
                std::time::Duration::from_millis(crate::limits::POOL_WAIT_MS_MAX),
                pool.get(),
            )
            .await
            .ok(),
        };
        let Some(mut p) = got else {
            pool.mark_starved();
            pool.note_heap();
            return Ok(IoBuf::Vec(vec![0u8; len]));
        };
        p.set_len(len)
            .map_err(|_| Sense::invalid_field_in_cdb(0, None))?;
        Ok(IoBuf::Pool(p))
    }

    /// Largest piece VERIFY and WRITE SAME move per backend call: one data buffer.
    fn chunk_bytes(&self) -> u64 {
        self.pool.as_ref().map_or(CHUNK_BYTES, |p| {
            u64::try_from(p.buf_size_bytes())
                .unwrap_or(CHUNK_BYTES)
                .min(CHUNK_BYTES)
        })
    }

    /// The pool this LU's data buffers come from, if any: the transport takes Data-Out
    /// buffers from it too.
    pub fn pool(&self) -> Option<&BufferPool> {
        self.pool.as_ref()
    }

    async fn write(
        &self,
        kind: WriteKind,
        lba: Lba,
        blocks: BlockCount,
        fua: bool,
        mut data_out: IoBuf,
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        check_lba_range(lba, blocks, self.blocks)?;
        self.check_transfer_len(blocks, 7)?;
        let (off, len) = self.bytes(lba, blocks);
        // Only whole blocks that actually arrived are written.
        let bs = u64::from(self.block_size);
        let have = (data_out.len() as u64).min(len) / bs * bs;
        if have == 0 {
            return Ok(Vec::new());
        }
        data_out.truncate(to_usize(have)?);
        if kind == WriteKind::Or {
            let _guard = self.rmw.lock().await;
            let old = self.data_buf(data_out.len()).await?;
            let (mut old, r) = b.read(off, old).await;
            r.map_err(|e| sense_read(&e))?;
            for (o, n) in old.iter_mut().zip(data_out.iter()) {
                *o |= *n;
            }
            let (_, r) = b.write(off, old).await;
            r.map_err(|e| sense_write(&e))?;
        } else {
            // The Data-Out buffer itself goes to the backend: no copy on the write path.
            let (_, r) = b.write(off, data_out).await;
            r.map_err(|e| sense_write(&e))?;
        }
        let wce = self.state().mode.wce;
        self.flush_if(b, fua || !wce || kind == WriteKind::Verify)
            .await?;
        Ok(Vec::new())
    }

    async fn verify(
        &self,
        lba: Lba,
        blocks: BlockCount,
        bytchk: u8,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        check_lba_range(lba, blocks, self.blocks)?;
        if bytchk != 0 {
            self.check_transfer_len(blocks, 7)?;
        }
        let (off, len) = self.bytes(lba, blocks);
        let bs = u64::from(self.block_size);
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(self.chunk_bytes());
            let buf = self.data_buf(to_usize(n)?).await?;
            let (buf, r) = b.read(off + pos, buf).await;
            r.map_err(|e| sense_read(&e))?;
            match bytchk {
                1 => {
                    let start = to_usize(pos)?;
                    if start >= data_out.len() {
                        break;
                    }
                    let end = (start + buf.len()).min(data_out.len());
                    if let Some(i) = first_diff(&buf, &data_out[start..end]) {
                        return Err(Sense::miscompare(
                            u32::try_from(pos + i as u64).unwrap_or(u32::MAX),
                        ));
                    }
                }
                3 => {
                    let block = data_out
                        .get(..to_usize(bs)?)
                        .ok_or(Sense::param_list_length_error())?;
                    for (ci, chunk) in buf.chunks(block.len()).enumerate() {
                        if let Some(i) = first_diff(chunk, block) {
                            let at = pos + (ci * block.len() + i) as u64;
                            return Err(Sense::miscompare(u32::try_from(at).unwrap_or(u32::MAX)));
                        }
                    }
                }
                _ => {}
            }
            pos += n;
        }
        Ok(Vec::new())
    }

    async fn compare_and_write(
        &self,
        lba: Lba,
        blocks: BlockCount,
        fua: bool,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        check_lba_range(lba, blocks, self.blocks)?;
        if blocks.0 > u64::from(self.identity.limits.max_compare_and_write_blocks) {
            return Err(Sense::invalid_field_in_cdb(13, None));
        }
        let (off, len) = self.bytes(lba, blocks);
        if data_out.len() as u64 != len * 2 {
            // The data-out must hold exactly the verify and the write instance.
            return Err(Sense::invalid_field_in_cdb(13, None));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let n = to_usize(len)?;
        let _guard = self.rmw.lock().await;
        let cur = self.data_buf(n).await?;
        let (cur, r) = b.read(off, cur).await;
        r.map_err(|e| sense_read(&e))?;
        if let Some(i) = first_diff(&cur, &data_out[..n]) {
            return Err(Sense::miscompare(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        // The read buffer is spent: it carries the write instance to the backend.
        let mut new = cur;
        new.copy_from_slice(&data_out[n..]);
        let (_, r) = b.write(off, new).await;
        r.map_err(|e| sense_write(&e))?;
        let wce = self.state().mode.wce;
        self.flush_if(b, fua || !wce).await?;
        Ok(Vec::new())
    }

    async fn write_same(
        &self,
        lba: Lba,
        blocks: BlockCount,
        unmap: bool,
        ndob: bool,
        sixteen: bool,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        let len_byte = if sixteen { 10 } else { 7 };
        // WSNZ=0: zero blocks means "to the last LBA" (SBC-3 5.45).
        let blocks = if blocks.0 == 0 {
            if lba.0 > self.blocks {
                return Err(Sense::lba_out_of_range());
            }
            BlockCount(self.blocks - lba.0)
        } else {
            blocks
        };
        check_lba_range(lba, blocks, self.blocks)?;
        if blocks.0 > self.identity.limits.max_write_same_blocks {
            return Err(Sense::invalid_field_in_cdb(len_byte, None));
        }
        let bs = to_usize(u64::from(self.block_size))?;
        let zero_block;
        let block: &[u8] = if ndob {
            zero_block = vec![0u8; bs];
            &zero_block
        } else {
            if data_out.len() != bs {
                return Err(Sense::invalid_field_in_cdb(len_byte, None));
            }
            data_out
        };
        let (off, len) = self.bytes(lba, blocks);
        if len == 0 {
            return Ok(Vec::new());
        }
        let all_zero = block.iter().all(|&x| x == 0);
        if unmap && self.identity.thin {
            // UNMAP=1 asks for deallocation whatever the data block holds (SBC-4 §5.48;
            // libiscsi's WriteSame10.UnmapUntilEnd writes 0xFF blocks and expects zeroes
            // back because LBPRZ=1).
            b.punch_hole(off, len).await.map_err(|e| sense_write(&e))?;
        } else if all_zero {
            b.write_zeroes(off, len)
                .await
                .map_err(|e| sense_write(&e))?;
        } else {
            let per_chunk = (self.chunk_bytes() / bs as u64).max(1);
            let mut done = 0u64;
            while done < blocks.0 {
                let n = (blocks.0 - done).min(per_chunk);
                let mut buf = self.data_buf(to_usize(n * bs as u64)?).await?;
                for chunk in buf.chunks_mut(bs) {
                    chunk.copy_from_slice(block);
                }
                let (_, r) = b.write(off + done * bs as u64, buf).await;
                r.map_err(|e| sense_write(&e))?;
                done += n;
            }
        }
        let wce = self.state().mode.wce;
        self.flush_if(b, !wce).await?;
        Ok(Vec::new())
    }

    async fn unmap(&self, param_len: u32, data_out: &[u8]) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        let n = usize::try_from(param_len)
            .unwrap_or(usize::MAX)
            .min(data_out.len());
        let limits = self.identity.limits;
        let ranges = provisioning::parse_unmap(
            &data_out[..n],
            self.blocks,
            limits.max_unmap_descriptors,
            limits.max_unmap_lba_count,
        )?;
        for (lba, count) in ranges {
            let (off, len) = self.bytes(lba, count);
            b.punch_hole(off, len).await.map_err(|e| sense_write(&e))?;
        }
        Ok(Vec::new())
    }

    async fn get_lba_status(&self, lba: Lba, alloc_len: u32) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        if lba.0 >= self.blocks {
            return Err(Sense::lba_out_of_range());
        }
        let bs = u64::from(self.block_size);
        let scan_blocks = (LBA_STATUS_SCAN_BYTES / bs).max(1);
        let end = self.blocks.min(lba.0.saturating_add(scan_blocks));
        let (off, len) = self.bytes(lba, BlockCount(end - lba.0));
        let extents = b
            .allocation_status(off, len)
            .await
            .map_err(|e| sense_read(&e))?;
        let runs: Vec<(u64, u64, bool)> = extents
            .iter()
            .map(|e| (e.offset, e.len, e.mapped))
            .collect();
        let mut status = provisioning::block_runs(&runs, self.block_size, lba.0, end);
        let max_desc = (usize::try_from(alloc_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(8)
            / 16)
            .max(1);
        status.truncate(max_desc);
        Ok(truncate(provisioning::lba_status_data(&status), alloc_len))
    }

    async fn sync_cache(&self, lba: Lba, blocks: BlockCount) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        let blocks = if blocks.0 == 0 {
            BlockCount(self.blocks.saturating_sub(lba.0))
        } else {
            blocks
        };
        check_lba_range(lba, blocks, self.blocks)?;
        b.flush().await.map_err(|e| sense_write(&e))?;
        Ok(Vec::new())
    }
}

fn no_sense() -> Vec<u8> {
    let mut s = vec![0u8; FIXED_SENSE_LEN];
    s[0] = 0x70;
    s[7] = 10;
    s
}

/// READ DEFECT DATA (SBC-3 5.17/5.18): we have no defects; report empty lists in the
/// requested format.
fn read_defect_data(twelve: bool, plist: bool, glist: bool, format: u8) -> Vec<u8> {
    let mut flags = format & 0x07;
    if plist {
        flags |= 0x10;
    }
    if glist {
        flags |= 0x08;
    }
    if twelve {
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    }
}

/// The SCSI target device: a LUN map plus a synthetic LUN 0 when none is configured.
#[derive(Debug)]
pub struct Target {
    luns: BTreeMap<u16, Arc<LogicalUnit>>,
    controller: Identity,
    controller_ua: Mutex<UnitAttentions>,
}

impl Target {
    /// Builds a target from its LUN map. LUN numbers above 16383 are ignored.
    pub fn new(name: &str, luns: Vec<(u16, Arc<LogicalUnit>)>) -> Self {
        let map: BTreeMap<u16, Arc<LogicalUnit>> = luns
            .into_iter()
            .filter(|(l, _)| *l <= luns::LUN_MAX)
            .collect();
        Self {
            luns: map,
            controller: Identity {
                device_type: inquiry::TYPE_CONTROLLER,
                target_name: name.to_string(),
                // The controller stand-in needs a device id distinct from real LUs'.
                device_id: inquiry::fnv1a64(name.as_bytes()),
                limits: BlockLimits::for_block_size(512),
                thin: false,
            },
            controller_ua: Mutex::new(UnitAttentions::default()),
        }
    }

    /// True when `lun` answers commands (a configured LU, or the synthetic LUN 0).
    pub fn lun_exists(&self, lun: u16) -> bool {
        lun == 0 || self.luns.contains_key(&lun)
    }

    /// Tells nexus `nexus` that LUN 0 is the synthetic controller again (its disk was
    /// removed): INQUIRY DATA HAS CHANGED on the controller's next command from it.
    pub fn controller_took_lun0(&self, nexus: u64) {
        self.controller_ua
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .raise_new(nexus, ua::UA_INQUIRY_CHANGED);
    }

    /// Every configured logical unit, ascending by LUN.
    pub fn logical_units(&self) -> impl Iterator<Item = &Arc<LogicalUnit>> {
        self.luns.values()
    }

    /// The logical unit behind a LUN.
    pub fn logical_unit(&self, lun: u16) -> Option<&Arc<LogicalUnit>> {
        self.luns.get(&lun)
    }

    fn lun_list(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.luns.keys().copied().collect();
        if !self.luns.contains_key(&0) {
            v.push(0);
        }
        v
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
            None if lun == 0 => self.controller_execute(nexus, cdb),
            None => self.no_lun_execute(cdb),
        }
    }

    /// Commands to the synthetic storage-array-controller LUN 0 (SCC-2 subset).
    fn controller_execute(&self, nexus: &Nexus, cdb_bytes: &[u8]) -> ScsiResponse {
        let opcode = cdb_bytes.first().copied().unwrap_or(0xFF);
        let mut uas = self.controller_ua.lock().unwrap_or_else(|e| e.into_inner());
        uas.touch(nexus.id);
        if !matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE) {
            if let Some(s) = uas.take(nexus.id) {
                return ScsiResponse::check(s);
            }
        }
        let cmd = match cdb::decode(cdb_bytes) {
            Ok(c) => c,
            Err(s) => return ScsiResponse::check(s),
        };
        let transfer = cmd.transfer(512);
        let r = match cmd {
            Command::TestUnitReady => Ok(Vec::new()),
            Command::Inquiry {
                evpd,
                page,
                alloc_len,
            } => {
                let d = if evpd {
                    self.controller.vpd(page)
                } else {
                    Ok(self.controller.standard())
                };
                d.map(|d| truncate(d, alloc_len))
            }
            Command::ReportLuns { select, alloc_len } => {
                luns::report_luns(select, &self.lun_list()).map(|d| truncate(d, alloc_len))
            }
            Command::RequestSense {
                desc: false,
                alloc_len,
            } => Ok(truncate(
                uas.take(nexus.id).map_or_else(no_sense, |s| s.encode()),
                alloc_len,
            )),
            Command::RequestSense { desc: true, .. } => {
                Err(Sense::invalid_field_in_cdb(1, Some(0)))
            }
            _ => Err(Sense::invalid_opcode()),
        };
        let mut resp = ScsiResponse::from_result(r);
        if transfer.dir != DataDir::None {
            resp.cdb_transfer_bytes = Some(u32::try_from(transfer.bytes).unwrap_or(u32::MAX));
        }
        resp
    }

    /// Commands to a LUN with no logical unit (SPC-4 6.6.2, SAM-5 5.9.4).
    fn no_lun_execute(&self, cdb_bytes: &[u8]) -> ScsiResponse {
        let cmd = match cdb::decode(cdb_bytes) {
            Ok(c) => c,
            Err(_) => return ScsiResponse::check(Sense::lun_not_supported()),
        };
        let transfer = cmd.transfer(512);
        let r = match cmd {
            Command::Inquiry {
                evpd: false,
                alloc_len,
                ..
            } => Ok(truncate(Identity::standard_no_lun(), alloc_len)),
            Command::ReportLuns { select, alloc_len } => {
                luns::report_luns(select, &self.lun_list()).map(|d| truncate(d, alloc_len))
            }
            Command::RequestSense { alloc_len, .. } => {
                Ok(truncate(Sense::lun_not_supported().encode(), alloc_len))
            }
            _ => Err(Sense::lun_not_supported()),
        };
        let mut resp = ScsiResponse::from_result(r);
        if transfer.dir != DataDir::None {
            resp.cdb_transfer_bytes = Some(u32::try_from(transfer.bytes).unwrap_or(u32::MAX));
        }
        resp
    }

    /// Applies the SCSI-side effects of a task management function.
    pub fn task_management(&self, func: TmFunction, lun: u16, nexus: &Nexus) -> TmResponse {
        match func {
            TmFunction::AbortTask | TmFunction::AbortTaskSet | TmFunction::ClearTaskSet => {
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
                    lu.reset();
                    TmResponse::Complete
                }
                None if lun == 0 => TmResponse::Complete,
                None => TmResponse::LunDoesNotExist,
            },
            TmFunction::TargetWarmReset | TmFunction::TargetColdReset => {
                for lu in self.luns.values() {
                    lu.state().ua.touch(nexus.id);
                    lu.reset();
                }
                self.controller_ua
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .raise_others(None, ua::UA_RESET);
                TmResponse::Complete
            }
        }
    }

    /// The session behind `nexus` ended: drop its unit attentions and SPC-2 reservations.
    pub fn nexus_gone(&self, nexus: &Nexus) {
        for lu in self.luns.values() {
            lu.forget(nexus.id);
        }
        self.controller_ua
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(nexus.id);
    }
}

impl LuConfig {
    /// The settings the logical unit `lun` of `target` is opened with from a validated
    /// storage, taking its data buffers from the pool of the storage's NUMA node (or the
    /// first pool when it names none).
    pub fn from_storage(
        target: &str,
        lun: u16,
        storage: &tgt_proto::ValidStorage,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fault::{FaultHandle, FaultInner};
    use crate::backend::{FaultBackend, FaultEffect, FaultOp, FaultRule, MemoryBackend};

    const BS: u32 = 512;
    const BLOCKS: u64 = 2048;

    fn cfg(lun: u16) -> LuConfig {
        LuConfig {
            device_id: 7,
            path: PathBuf::from("/nonexistent"),
            online: true,
            read_only: false,
            block_size: BS,
            create_size_bytes: None,
            target_name: "iqn.2024-01.test:tgt".into(),
            engine: Engine::File,
            thin: true,
            pool: None,
            lun,
        }
    }

    fn mem_target() -> Target {
        let lu = LogicalUnit::with_backend(
            &cfg(0),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))])
    }

    #[tokio::test]
    async fn pool_buffers_carry_reads_and_writes_within_the_optimal_transfer_length() {
        let pool = BufferPool::unbound(2, 8192, 4096).unwrap();
        let mut c = cfg(0);
        c.pool = Some(pool.clone());
        let lu = LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
        let n = nexus(1);
        // OPTIMAL TRANSFER LENGTH is one 8 KiB buffer: 16 blocks.
        let r = run(&t, &n, &[0x12, 1, 0xB0, 0, 64, 0], &[]).await;
        assert_eq!(&r.data_in[12..16], &16u32.to_be_bytes());
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
        assert_eq!(run(&t, &n, &c10(0x2A, 0, 8, 16), &data).await.status, 0);
        let r = run(&t, &n, &c10(0x28, 0, 8, 16), &[]).await;
        assert_eq!(r.status, 0);
        assert!(matches!(r.data_in, IoBuf::Pool(_)), "{:?}", r.data_in);
        assert_eq!(r.data_in, data);
        // The response holds one buffer; dropping it gives it back.
        assert_eq!(pool.stats().in_use, 1);
        drop(r);
        assert_eq!(pool.stats().in_use, 0);
        // A longer transfer is served from the heap, and counted.
        let r = run(&t, &n, &c10(0x28, 0, 0, 24), &[]).await;
        assert_eq!(r.status, 0);
        assert!(matches!(r.data_in, IoBuf::Vec(_)));
        assert_eq!(&r.data_in[8 * 512..], &data[..]);
        assert_eq!(pool.stats().heap_total, 1);
        // A buffer too small for two blocks is a configuration error, not a panic.
        let mut c = cfg(0);
        c.block_size = 4096;
        c.pool = Some(BufferPool::unbound(1, 4096, 4096).unwrap());
        assert!(LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(1 << 20, false).unwrap()),
        )
        .is_err());
    }

    #[tokio::test]
    async fn a_replacement_lu_tells_each_nexus_what_changed_once() {
        let old = LogicalUnit::with_backend(
            &cfg(0),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        let same = LogicalUnit::with_backend(
            &cfg(0),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        let n = nexus(1);
        same.replaced(&old, n.id);
        let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(same))]);
        assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0, "nothing to tell");

        let mut c = cfg(0);
        c.device_id += 1;
        let bigger = LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(2 * BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        bigger.replaced(&old, n.id);
        let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(bigger))]);
        assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x3F, 0x03));
        assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x2A, 0x09));
        assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
        // Another nexus was not told.
        assert_eq!(run(&t, &nexus(2), &[0; 6], &[]).await.status, 0);
    }

    #[tokio::test]
    async fn lun0_switching_between_disk_and_controller_is_inquiry_data_changed() {
        let n = nexus(1);
        // LUN 0 becomes the synthetic controller (the target only has LUN 5).
        let lu = LogicalUnit::with_backend(
            &cfg(5),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        let t = Target::new("iqn.2024-01.test:tgt", vec![(5, Arc::new(lu))]);
        t.controller_took_lun0(n.id);
        assert_eq!(
            asc(&t.execute(0, &n, &[0; 6], &[], 0).await),
            (6, 0x3F, 0x03)
        );
        assert_eq!(t.execute(0, &n, &[0; 6], &[], 0).await.status, 0);
        // And a disk takes LUN 0 back.
        let disk = LogicalUnit::with_backend(
            &cfg(0),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        disk.took_lun0(n.id);
        let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(disk))]);
        assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x3F, 0x03));
        assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    }

    /// Data-Out as if the transport had handed a pool buffer over (it no longer does for
    /// these commands, but a command holding a buffer must never wait forever for another).
    fn pool_data(pool: &BufferPool, bytes: &[u8]) -> IoBuf {
        let mut b = pool.try_get().expect("pool buffer for data-out");
        b.set_len(bytes.len()).unwrap();
        b.copy_from_slice(bytes);
        IoBuf::Pool(b)
    }

    fn pooled_target(pool: &BufferPool) -> Target {
        let mut c = cfg(0);
        c.pool = Some(pool.clone());
        let lu = LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))])
    }

    #[tokio::test]
    async fn commands_holding_the_only_pool_buffer_never_wait_forever_for_another() {
        let within = std::time::Duration::from_secs(5);
        let n = nexus(1);
        // WRITE SAME (10) of 4 blocks of 0xFF.
        let pool = BufferPool::unbound(1, 8192, 4096).unwrap();
        let t = pooled_target(&pool);
        let out = pool_data(&pool, &[0xFF; 512]);
        let cdb = [0x41, 0, 0, 0, 0, 0, 0, 0, 4, 0];
        let r = tokio::time::timeout(within, t.execute(0, &n, &cdb, out, 0)).await;
        assert_eq!(r.expect("WRITE SAME finishes").status, 0);
        // COMPARE AND WRITE of one block at LBA 8 (zeros against zeros).
        let mut caw = vec![0u8; 16];
        caw[0] = 0x89;
        caw[9] = 8;
        caw[13] = 1;
        let out = pool_data(&pool, &[0u8; 1024]);
        let r = tokio::time::timeout(within, t.execute(0, &n, &caw, out, 0)).await;
        assert_eq!(r.expect("COMPARE AND WRITE finishes").status, 0);
        // VERIFY (10) BYTCHK=1 of 2 zero blocks at LBA 16.
        let cdb = [0x2F, 0x02, 0, 0, 0, 16, 0, 0, 2, 0];
        let out = pool_data(&pool, &[0u8; 1024]);
        let r = tokio::time::timeout(within, t.execute(0, &n, &cdb, out, 0)).await;
        assert_eq!(r.expect("VERIFY finishes").status, 0);
        assert!(pool.stats().heap_total >= 3, "{:?}", pool.stats());
        assert_eq!(pool.stats().in_use, 0);
    }

    #[tokio::test]
    async fn two_compare_and_writes_on_a_two_buffer_pool_both_finish() {
        let pool = BufferPool::unbound(2, 8192, 4096).unwrap();
        let t = Arc::new(pooled_target(&pool));
        let mut caw = vec![0u8; 16];
        caw[0] = 0x89;
        caw[13] = 1;
        let (a, b) = (
            pool_data(&pool, &[0u8; 1024]),
            pool_data(&pool, &[0u8; 1024]),
        );
        let (t1, t2, c1, c2) = (Arc::clone(&t), Arc::clone(&t), caw.clone(), caw);
        let j1 = tokio::spawn(async move { t1.execute(0, &nexus(1), &c1, a, 0).await.status });
        let j2 = tokio::spawn(async move { t2.execute(0, &nexus(2), &c2, b, 0).await.status });
        let both = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            (j1.await.unwrap(), j2.await.unwrap())
        })
        .await
        .expect("the two CAWs finish");
        assert_eq!(both, (0, 0));
    }

    fn fault_target() -> (Target, FaultHandle) {
        let fb = FaultBackend::new(FaultInner::Memory(
            MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap(),
        ));
        let h = fb.handle();
        let lu = LogicalUnit::with_backend(&cfg(0), Backend::Fault(fb)).unwrap();
        (
            Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]),
            h,
        )
    }

    fn nexus(id: u64) -> Nexus {
        Nexus {
            id,
            initiator_port: Arc::from(format!("iqn.init{id},i,0x000000000001")),
        }
    }

    fn c10(op: u8, b1: u8, lba: u32, len: u16) -> Vec<u8> {
        let mut v = vec![0u8; 10];
        v[0] = op;
        v[1] = b1;
        v[2..6].copy_from_slice(&lba.to_be_bytes());
        v[7..9].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn c16(op: u8, b1: u8, lba: u64, len: u32) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[0] = op;
        v[1] = b1;
        v[2..10].copy_from_slice(&lba.to_be_bytes());
        v[10..14].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn asc(r: &ScsiResponse) -> (u8, u8, u8) {
        assert_eq!(r.status, status::CHECK_CONDITION, "{r:?}");
        (r.sense[2] & 0x0F, r.sense[12], r.sense[13])
    }

    async fn run(t: &Target, n: &Nexus, cdb: &[u8], out: &[u8]) -> ScsiResponse {
        t.execute(0, n, cdb, out, 1 << 20).await
    }

    #[tokio::test]
    async fn tur_inquiry_and_capacity() {
        let t = mem_target();
        let n = nexus(1);
        assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
        let r = run(&t, &n, &[0x12, 0, 0, 0, 255, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data_in.len(), 74);
        assert_eq!(r.cdb_transfer_bytes, Some(255));
        let r = run(&t, &n, &[0x12, 0, 0, 0, 10, 0], &[]).await;
        assert_eq!(r.data_in.len(), 10);
        assert_eq!(
            asc(&run(&t, &n, &[0x12, 0, 0x80, 0, 255, 0], &[]).await),
            (5, 0x24, 0)
        );
        let r = run(&t, &n, &c10(0x25, 0, 0, 0), &[]).await;
        assert_eq!(r.data_in, [0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
        let r = run(&t, &n, &c16(0x9E, 0x10, 0, 32), &[]).await;
        assert_eq!(&r.data_in[0..8], &(BLOCKS - 1).to_be_bytes());
        assert_eq!(r.data_in[14] & 0xC0, 0xC0);
        let r = run(&t, &n, &c16(0x9E, 0x10, 0, 5), &[]).await;
        assert_eq!(r.data_in.len(), 5);
    }

    #[tokio::test]
    async fn write_read_round_trip_and_range_checks() {
        let t = mem_target();
        let n = nexus(1);
        let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        let r = run(&t, &n, &c10(0x2A, 0x08, 10, 2), &data).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.cdb_transfer_bytes, Some(1024));
        let r = run(&t, &n, &c10(0x28, 0, 10, 2), &[]).await;
        assert_eq!(r.data_in, data);
        let r = run(&t, &n, &c16(0x88, 0, 10, 2), &[]).await;
        assert_eq!(r.data_in, data);
        assert_eq!(
            asc(&run(&t, &n, &c10(0x28, 0, 2047, 2), &[]).await),
            (5, 0x21, 0)
        );
        assert_eq!(
            asc(&run(&t, &n, &c16(0x88, 0, u64::MAX, 1), &[]).await),
            (5, 0x21, 0)
        );
        assert_eq!(
            asc(&run(&t, &n, &c10(0x28, 0, 2049, 0), &[]).await),
            (5, 0x21, 0)
        );
        let r = run(&t, &n, &c10(0x28, 0, 0, 0), &[]).await;
        assert_eq!((r.status, r.data_in.len()), (0, 0));
        // READ(6) with transfer length 0 reads 256 blocks.
        let r = run(&t, &n, &[0x08, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.data_in.len(), 256 * 512);
        assert_eq!(
            asc(&run(&t, &n, &c10(0x28, 0x20, 0, 1), &[]).await),
            (5, 0x24, 0)
        );
    }

    #[tokio::test]
    async fn short_data_out_writes_only_whole_blocks_received() {
        let t = mem_target();
        let n = nexus(1);
        assert_eq!(
            run(&t, &n, &c10(0x2A, 0, 0, 2), &[b'a'; 1024]).await.status,
            0
        );
        assert_eq!(
            run(&t, &n, &c10(0x2A, 0, 0, 2), &[b'b'; 512]).await.status,
            0
        );
        let r = run(&t, &n, &c10(0x28, 0, 0, 2), &[]).await;
        assert!(r.data_in[..512].iter().all(|&x| x == b'b'));
        assert!(r.data_in[512..].iter().all(|&x| x == b'a'));
    }

    #[tokio::test]
    async fn verify_and_compare_and_write_miscompare() {
        let t = mem_target();
        let n = nexus(1);
        let data = vec![0x5Au8; 1024];
        run(&t, &n, &c10(0x2A, 0, 4, 2), &data).await;
        assert_eq!(run(&t, &n, &c10(0x2F, 0x02, 4, 2), &data).await.status, 0);
        let mut bad = data.clone();
        bad[700] ^= 1;
        let r = run(&t, &n, &c10(0x2F, 0x02, 4, 2), &bad).await;
        assert_eq!(asc(&r), (0x0E, 0x1D, 0));
        assert_eq!(&r.sense[3..7], &700u32.to_be_bytes());
        assert_eq!(run(&t, &n, &c10(0x2F, 0, 4, 2), &bad).await.status, 0);
        // COMPARE AND WRITE: compare 1 block, then write.
        let mut caw = vec![0u8; 16];
        caw[0] = 0x89;
        caw[2..10].copy_from_slice(&4u64.to_be_bytes());
        caw[13] = 1;
        let mut payload = vec![0x5Au8; 512];
        payload.extend_from_slice(&[0x11u8; 512]);
        assert_eq!(run(&t, &n, &caw, &payload).await.status, 0);
        let r = run(&t, &n, &c10(0x28, 0, 4, 1), &[]).await;
        assert!(r.data_in.iter().all(|&x| x == 0x11));
        let r = run(&t, &n, &caw, &payload).await;
        assert_eq!(asc(&r), (0x0E, 0x1D, 0));
        assert_eq!(asc(&run(&t, &n, &caw, &payload[..512]).await), (5, 0x24, 0));
    }

    #[tokio::test]
    async fn orwrite_ors_data() {
        let t = mem_target();
        let n = nexus(1);
        run(&t, &n, &c10(0x2A, 0, 0, 1), &[0xA5; 512]).await;
        assert_eq!(
            run(&t, &n, &c16(0x8B, 0, 0, 1), &[0x5A; 512]).await.status,
            0
        );
        let r = run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await;
        assert!(r.data_in.iter().all(|&x| x == 0xFF));
    }

    #[tokio::test]
    async fn write_same_unmap_and_lba_status() {
        let t = mem_target();
        let n = nexus(1);
        run(&t, &n, &c10(0x2A, 0, 0, 64), &vec![0xFF; 64 * 512]).await;
        let r = run(&t, &n, &c10(0x41, 0, 0, 8), &[7u8; 512]).await;
        assert_eq!(r.status, 0);
        let r = run(&t, &n, &c10(0x28, 0, 0, 9), &[]).await;
        assert!(r.data_in[..8 * 512].iter().all(|&x| x == 7));
        assert!(r.data_in[8 * 512..].iter().all(|&x| x == 0xFF));
        // UNMAP bit with a zero block deallocates 8..16 (one memory page).
        assert_eq!(
            run(&t, &n, &c10(0x41, 0x08, 8, 8), &[0u8; 512])
                .await
                .status,
            0
        );
        let r = run(&t, &n, &c16(0x9E, 0x12, 8, 64), &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(&r.data_in[8..16], &8u64.to_be_bytes());
        assert_eq!(r.data_in[8 + 12], 1);
        let r = run(&t, &n, &c10(0x28, 0, 8, 8), &[]).await;
        assert!(r.data_in.iter().all(|&x| x == 0));
        // Wrong data-out size, ANCHOR, protection, beyond the end.
        assert_eq!(
            asc(&run(&t, &n, &c10(0x41, 0, 0, 1), &[0u8; 256]).await),
            (5, 0x24, 0)
        );
        assert_eq!(
            asc(&run(&t, &n, &c10(0x41, 0x10, 0, 1), &[0u8; 512]).await),
            (5, 0x24, 0)
        );
        assert_eq!(
            asc(&run(&t, &n, &c10(0x41, 0, 2048, 1), &[0u8; 512]).await),
            (5, 0x21, 0)
        );
        // Zero blocks = to the end of the medium.
        assert_eq!(
            run(&t, &n, &c10(0x41, 0x08, 2040, 0), &[0u8; 512])
                .await
                .status,
            0
        );
        assert_eq!(
            asc(&run(&t, &n, &c16(0x9E, 0x12, 2048, 24), &[]).await),
            (5, 0x21, 0)
        );
    }

    #[tokio::test]
    async fn unmap_command() {
        let t = mem_target();
        let n = nexus(1);
        run(&t, &n, &c10(0x2A, 0, 0, 16), &vec![1u8; 16 * 512]).await;
        let mut list = vec![0u8; 8];
        list[0..2].copy_from_slice(&22u16.to_be_bytes());
        list[2..4].copy_from_slice(&16u16.to_be_bytes());
        list.extend_from_slice(&0u64.to_be_bytes());
        list.extend_from_slice(&16u32.to_be_bytes());
        list.extend_from_slice(&[0; 4]);
        let cdb = c10(0x42, 0, 0, 24);
        assert_eq!(run(&t, &n, &cdb, &list).await.status, 0);
        let r = run(&t, &n, &c10(0x28, 0, 0, 16), &[]).await;
        assert!(r.data_in.iter().all(|&x| x == 0));
        assert_eq!(run(&t, &n, &c10(0x42, 0, 0, 0), &[]).await.status, 0);
        list[8..16].copy_from_slice(&2040u64.to_be_bytes());
        assert_eq!(asc(&run(&t, &n, &cdb, &list).await), (5, 0x21, 0));
    }

    #[tokio::test]
    async fn without_thin_provisioning_unmap_is_not_offered_and_lbpme_is_clear() {
        let mut c = cfg(0);
        c.thin = false;
        let lu = LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap();
        let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
        let n = nexus(1);
        let rc16 = run(
            &t,
            &n,
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            &[],
        )
        .await;
        assert_eq!(rc16.status, 0);
        assert_eq!(rc16.data_in[14] & 0xc0, 0, "LBPME and LBPRZ clear");
        let mut list = vec![0u8; 8];
        list[0..2].copy_from_slice(&22u16.to_be_bytes());
        list[2..4].copy_from_slice(&16u16.to_be_bytes());
        list.extend_from_slice(&0u64.to_be_bytes());
        list.extend_from_slice(&16u32.to_be_bytes());
        list.extend_from_slice(&[0; 4]);
        assert_eq!(
            asc(&run(&t, &n, &c10(0x42, 0, 0, 24), &list).await),
            (5, 0x20, 0)
        );
        // WRITE SAME with UNMAP still writes the block (deallocation is only a hint).
        let mut ws = c10(0x41, 0x08, 0, 4);
        ws[7..9].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(run(&t, &n, &ws, &[7u8; 512]).await.status, 0);
        let r = run(&t, &n, &c10(0x28, 0, 0, 4), &[]).await;
        assert!(r.data_in.iter().all(|&x| x == 7));
    }

    #[tokio::test]
    async fn eio_enospc_and_short_write_map_to_sense() {
        let (t, h) = fault_target();
        let n = nexus(1);
        h.add(FaultRule {
            op: FaultOp::Read,
            start: 512 * 100,
            end: 512 * 101,
            effect: FaultEffect::Eio,
        });
        assert_eq!(run(&t, &n, &c10(0x28, 0, 99, 1), &[]).await.status, 0);
        assert_eq!(
            asc(&run(&t, &n, &c10(0x28, 0, 99, 2), &[]).await),
            (3, 0x11, 0)
        );
        h.clear();
        h.add(FaultRule {
            op: FaultOp::Write,
            start: 512 * 10,
            end: 512 * 11,
            effect: FaultEffect::Short,
        });
        assert_eq!(
            asc(&run(&t, &n, &c10(0x2A, 0, 8, 4), &[3u8; 2048]).await),
            (3, 0x0C, 0)
        );
        h.clear();
        h.add(FaultRule {
            op: FaultOp::Write,
            start: 0,
            end: 1 << 30,
            effect: FaultEffect::NoSpace,
        });
        assert_eq!(
            asc(&run(&t, &n, &c10(0x2A, 0, 0, 1), &[3u8; 512]).await),
            (7, 0x27, 0x07)
        );
        h.clear();
        h.add(FaultRule {
            op: FaultOp::Flush,
            start: 0,
            end: 0,
            effect: FaultEffect::Eio,
        });
        assert_eq!(
            asc(&run(&t, &n, &c10(0x35, 0, 0, 0), &[]).await),
            (3, 0x0C, 0)
        );
    }

    #[tokio::test]
    async fn mode_sense_select_and_unit_attention_for_other_nexus() {
        let t = mem_target();
        let (a, b) = (nexus(1), nexus(2));
        run(&t, &a, &[0; 6], &[]).await;
        run(&t, &b, &[0; 6], &[]).await;
        let r = run(&t, &a, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data_in[4], 0x08);
        assert_eq!(r.data_in[6] & 0x04, 0x04);
        let mut sel = r.data_in.to_vec();
        sel[0] = 0;
        sel[6] &= !0x04;
        let cdb = [0x15, 0x10, 0, 0, u8::try_from(sel.len()).unwrap(), 0];
        assert_eq!(run(&t, &a, &cdb, &sel).await.status, 0);
        let r = run(&t, &a, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]).await;
        assert_eq!(r.data_in[6] & 0x04, 0);
        // Nexus b sees MODE PARAMETERS CHANGED once; INQUIRY does not consume it.
        assert_eq!(run(&t, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
        assert_eq!(asc(&run(&t, &b, &[0; 6], &[]).await), (6, 0x2A, 0x01));
        assert_eq!(run(&t, &b, &[0; 6], &[]).await.status, 0);
        // Saved values are not supported.
        assert_eq!(
            asc(&run(&t, &a, &[0x1A, 0, 0xFF, 0, 255, 0], &[]).await),
            (5, 0x39, 0)
        );
        // Writes still work with WCE=0 (flushed before GOOD).
        assert_eq!(
            run(&t, &a, &c10(0x2A, 0, 0, 1), &[1u8; 512]).await.status,
            0
        );
    }

    #[tokio::test]
    async fn lun_reset_raises_ua_and_request_sense_returns_it() {
        let t = mem_target();
        let n = nexus(1);
        run(&t, &n, &[0; 6], &[]).await;
        assert_eq!(
            t.task_management(TmFunction::LogicalUnitReset, 0, &n),
            TmResponse::Complete
        );
        let r = run(&t, &n, &[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!((r.data_in[2], r.data_in[12]), (6, 0x29));
        let r = run(&t, &n, &[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!((r.data_in[2], r.data_in[12]), (0, 0));
        assert_eq!(
            t.task_management(TmFunction::LogicalUnitReset, 9, &n),
            TmResponse::LunDoesNotExist
        );
    }

    #[tokio::test]
    async fn reserve6_conflicts_and_is_released_on_nexus_loss() {
        let t = mem_target();
        let (a, b) = (nexus(1), nexus(2));
        assert_eq!(run(&t, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
        assert_eq!(
            run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(run(&t, &b, &[0x17, 0, 0, 0, 0, 0], &[]).await.status, 0);
        assert_eq!(
            run(&t, &b, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(run(&t, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
        t.nexus_gone(&a);
        assert_eq!(run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
    }

    fn prout(sa: u8, pr_type: u8, rk: u64, sark: u64) -> (Vec<u8>, Vec<u8>) {
        let mut cdb = vec![0u8; 10];
        cdb[0] = 0x5F;
        cdb[1] = sa;
        cdb[2] = pr_type;
        cdb[8] = 24;
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&rk.to_be_bytes());
        p[8..16].copy_from_slice(&sark.to_be_bytes());
        (cdb, p)
    }

    #[tokio::test]
    async fn persistent_reservation_exclusive_access_blocks_other_nexus() {
        let t = mem_target();
        let (a, b) = (nexus(1), nexus(2));
        let (c, p) = prout(0, 0, 0, 0xA);
        assert_eq!(run(&t, &a, &c, &p).await.status, 0);
        let (c, p) = prout(0, 0, 0, 0xB);
        assert_eq!(run(&t, &b, &c, &p).await.status, 0);
        let (c, p) = prout(1, 3, 0xA, 0);
        assert_eq!(run(&t, &a, &c, &p).await.status, 0);
        assert_eq!(run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status, 0);
        assert_eq!(
            run(&t, &b, &c10(0x28, 0, 1, 1), &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(
            run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        // READ KEYS from the other nexus is allowed and lists both keys.
        let r = run(&t, &b, &[0x5E, 0, 0, 0, 0, 0, 0, 0x40, 0, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(&r.data_in[4..8], &16u32.to_be_bytes());
        // Preempt by b removes a's registration and takes the reservation; a gets a UA.
        let (c, p) = prout(4, 3, 0xB, 0xA);
        assert_eq!(run(&t, &b, &c, &p).await.status, 0);
        assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (6, 0x2A, 0x05));
        assert_eq!(
            run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        let (c, p) = prout(3, 0, 0xB, 0);
        assert_eq!(run(&t, &b, &c, &p).await.status, 0);
        assert_eq!(run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status, 0);
        // PR IN service actions above 3 are invalid fields, not invalid opcodes.
        assert_eq!(
            asc(&run(&t, &a, &[0x5E, 4, 0, 0, 0, 0, 0, 0x40, 0, 0], &[]).await),
            (5, 0x24, 0)
        );
    }

    #[tokio::test]
    async fn lun_addressing_and_missing_luns() {
        let lu = LogicalUnit::with_backend(
            &cfg(300),
            Backend::Memory(MemoryBackend::new(1 << 20, false).unwrap()),
        )
        .unwrap();
        let t = Target::new("iqn.x", vec![(300, Arc::new(lu))]);
        let n = nexus(1);
        assert!(t.lun_exists(0) && t.lun_exists(300) && !t.lun_exists(5));
        let mut rl = vec![0u8; 12];
        rl[0] = 0xA0;
        rl[9] = 64;
        let r = t.execute(5, &n, &rl, &[], 64).await;
        assert_eq!(&r.data_in[0..4], &16u32.to_be_bytes());
        assert_eq!(&r.data_in[8..10], &[0, 0]);
        assert_eq!(&r.data_in[16..18], &[0x41, 0x2C]);
        let r = t.execute(0, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96).await;
        assert_eq!(r.data_in[0], 0x0C);
        let r = t.execute(0, &n, &c10(0x28, 0, 0, 1), &[], 512).await;
        assert_eq!(asc(&r), (5, 0x20, 0));
        let r = t.execute(5, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96).await;
        assert_eq!(r.data_in[0], 0x7F);
        assert_eq!(asc(&t.execute(5, &n, &[0; 6], &[], 0).await), (5, 0x25, 0));
        rl[9] = 8;
        assert_eq!(asc(&t.execute(0, &n, &rl, &[], 8).await), (5, 0x24, 0));
    }

    #[tokio::test]
    async fn offline_and_read_only_lus() {
        let mut c = cfg(0);
        c.online = false;
        let lu = LogicalUnit::open(&c).unwrap();
        let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
        let n = nexus(1);
        assert_eq!(
            t.execute(0, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96)
                .await
                .status,
            0
        );
        assert_eq!(asc(&t.execute(0, &n, &[0; 6], &[], 0).await), (2, 0x3A, 0));
        assert_eq!(
            asc(&t.execute(0, &n, &c10(0x28, 0, 0, 1), &[], 512).await),
            (2, 0x3A, 0)
        );
        let mut c = cfg(0);
        c.read_only = true;
        let lu = LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(1 << 20, true).unwrap()),
        )
        .unwrap();
        let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
        assert_eq!(
            asc(&t.execute(0, &n, &c10(0x2A, 0, 0, 1), &[0; 512], 0).await),
            (7, 0x27, 0)
        );
        let r = t
            .execute(0, &n, &[0x1A, 0, 0x3F, 0, 255, 0], &[], 255)
            .await;
        assert_eq!(r.data_in[2] & 0x80, 0x80);
    }

    #[tokio::test]
    async fn report_supported_opcodes_and_misc() {
        let t = mem_target();
        let n = nexus(1);
        let mut c = vec![0u8; 12];
        c[0] = 0xA3;
        c[1] = 0x0C;
        c[6..10].copy_from_slice(&4096u32.to_be_bytes());
        let r = run(&t, &n, &c, &[]).await;
        assert_eq!(r.status, 0);
        assert!(r.data_in.len() > 100);
        assert_eq!(run(&t, &n, &[0x1B, 0, 0, 0, 1, 0], &[]).await.status, 0);
        assert_eq!(run(&t, &n, &[0x1E, 0, 0, 0, 1, 0], &[]).await.status, 0);
        assert_eq!(run(&t, &n, &c10(0x34, 0, 0, 1), &[]).await.status, 0);
        assert_eq!(run(&t, &n, &c16(0x91, 0, 0, 0), &[]).await.status, 0);
        let r = run(&t, &n, &c10(0x37, 0, 0, 32), &[]).await;
        assert_eq!((r.status, r.data_in.len()), (0, 4));
        assert_eq!(
            asc(&run(
                &t,
                &n,
                &[0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[]
            )
            .await),
            (5, 0x20, 0)
        );
    }

    #[tokio::test]
    async fn file_backed_lu_punches_and_reports_deallocated() {
        let mut p = std::env::temp_dir();
        p.push(format!("tgt-lu-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut c = cfg(0);
        c.path = p.clone();
        c.create_size_bytes = Some(4 << 20);
        let lu = LogicalUnit::open(&c).unwrap();
        let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
        let n = nexus(1);
        let r = t
            .execute(0, &n, &c10(0x2A, 0, 0, 2048), &vec![0xEE; 1 << 20], 0)
            .await;
        assert_eq!(r.status, 0);
        assert_eq!(
            t.execute(0, &n, &c10(0x35, 0, 0, 0), &[], 0).await.status,
            0
        );
        assert_eq!(
            t.execute(0, &n, &c10(0x41, 0x08, 256, 256), &[0u8; 512], 0)
                .await
                .status,
            0
        );
        let r = t
            .execute(0, &n, &c10(0x28, 0, 256, 256), &[], 1 << 20)
            .await;
        assert!(r.data_in.iter().all(|&x| x == 0));
        let r = t.execute(0, &n, &c16(0x9E, 0x12, 256, 64), &[], 64).await;
        assert_eq!(r.status, 0);
        assert_eq!(&r.data_in[8..16], &256u64.to_be_bytes());
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn execute_times_reads_and_writes_and_counts_every_command() {
        let t = mem_target();
        let n = nexus(1);
        assert_eq!(
            run(&t, &n, &c10(0x2A, 0, 0, 2), &[0x5A; 1024]).await.status,
            0
        );
        assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 2), &[]).await.status, 0);
        assert_eq!(run(&t, &n, &c16(0x88, 0, 4, 1), &[]).await.status, 0);
        assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
        let lu = t.logical_unit(0).unwrap();
        let s = lu.counters().stats("t", 0);
        assert_eq!(s.commands_total, 4);
        assert_eq!(s.commands_in_flight, 0);
        assert_eq!(s.read_latency.counts.iter().sum::<u64>(), 2);
        assert_eq!(s.write_latency.counts.iter().sum::<u64>(), 1);
        assert_eq!((s.read_bytes_total, s.write_bytes_total), (1536, 1024));
    }

    #[tokio::test]
    async fn a_dropped_command_leaves_the_in_flight_gauge_uncounted() {
        let t = mem_target();
        let n = nexus(1);
        let lu = Arc::clone(t.logical_unit(0).unwrap());
        // COMPARE AND WRITE of one block waits for the read-modify-write lock held here.
        let held = lu.rmw.lock().await;
        let mut caw = vec![0u8; 16];
        caw[0] = 0x89;
        caw[13] = 1;
        let mut fut = Box::pin(run(&t, &n, &caw, &[0u8; 1024]));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(fut.as_mut(), &mut cx).is_pending());
        assert_eq!(lu.counters().in_flight(), 1);
        drop(fut);
        drop(held);
        let s = lu.counters().stats("t", 0);
        assert_eq!(s.commands_in_flight, 0);
        assert_eq!(s.commands_total, 0, "an aborted command did not complete");
        assert_eq!(s.write_latency.counts.iter().sum::<u64>(), 0);
    }
}
