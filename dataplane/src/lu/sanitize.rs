//! SANITIZE on a logical unit (SBC-4 4.33, 5.30): the operation runs as a task of its own,
//! so it outlives the command, its connection and task management (SBC-4 4.33.2: a sanitize
//! operation is not stopped by a reset or an abort); while it runs the unit serves only the
//! commands `crate::scsi::sanitize::served_while_sanitizing` names and answers the rest, TEST
//! UNIT READY included, with NOT READY, SANITIZE IN PROGRESS and the fraction done, which
//! REQUEST SENSE also reports. A sanitize that fails leaves the medium in sanitize failure
//! mode (MEDIUM ERROR, SANITIZE COMMAND FAILED for medium access) until a sanitize succeeds
//! or EXIT FAILURE MODE (allowed only when the failed one had AUSE set).
//!
//! The operation holds the medium gate exclusively (`LogicalUnit::gate`), so commands that
//! were already on the medium when it started finish first, and none run during it.
//! OVERWRITE writes at most [`SANITIZE_BYTES_PER_SEC`]: it writes every block of the LUN,
//! and unbounded it would take the whole bandwidth of the storage behind it from every other
//! LUN on it for as long as it runs.

use super::target::Target;
use super::unit::LogicalUnit;
use crate::scsi::cdb::Command;
use crate::scsi::sanitize::{self, Action, Overwrite};
use crate::scsi::sense::Sense;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes per second an OVERWRITE writes (32 MiB/s: a 256 MiB LUN in 8 s, 1 TiB in
/// about 9 hours, comparable to a disk's own sanitize), leaving the rest of the storage's
/// bandwidth to the other LUNs on it.
pub const SANITIZE_BYTES_PER_SEC: u64 = 32 << 20;

/// Bytes an OVERWRITE writes per backend call, and the step its progress moves in.
const SANITIZE_CHUNK_BYTES: u64 = 1 << 20;

/// What a unit's sanitize is doing.
#[derive(Debug, Default)]
pub(super) enum SanitizeState {
    /// None runs, the medium is usable.
    #[default]
    Idle,
    /// One runs.
    Running(Arc<Progress>),
    /// The last one failed: the medium is in sanitize failure mode.
    Failed {
        /// AUSE of the failed SANITIZE: whether EXIT FAILURE MODE may leave the mode.
        ause: bool,
    },
}

/// How far a running sanitize got, and the release of the command waiting for it.
#[derive(Debug)]
pub(super) struct Progress {
    done_bytes: AtomicU64,
    total_bytes: u64,
    /// The nexus whose SANITIZE (without IMMED) waits for the operation.
    issuer: u64,
    /// Wakes that command when task management aborts it: the command ends, the operation
    /// goes on.
    released: tokio::sync::Notify,
}

impl Progress {
    fn fraction(&self) -> u16 {
        sanitize::progress(self.done_bytes.load(Ordering::Relaxed), self.total_bytes)
    }
}

impl LogicalUnit {
    /// The sanitize rule for a decoded command (checked before reservations): NOT READY,
    /// SANITIZE IN PROGRESS while one runs, SANITIZE COMMAND FAILED for medium access in
    /// failure mode.
    pub(super) fn sanitize_gate(&self, cmd: &Command) -> Option<Sense> {
        match &self.state().sanitize {
            SanitizeState::Idle => None,
            SanitizeState::Running(p) => (!sanitize::served_while_sanitizing(cmd))
                .then(|| Sense::sanitize_in_progress(p.fraction())),
            SanitizeState::Failed { .. } => {
                sanitize::refused_in_failure_mode(cmd).then(Sense::sanitize_failed)
            }
        }
    }

    /// What REQUEST SENSE reports about a running sanitize, if one runs.
    pub(super) fn sanitize_sense(&self) -> Option<Sense> {
        match &self.state().sanitize {
            SanitizeState::Running(p) => Some(Sense::sanitize_in_progress(p.fraction())),
            _ => None,
        }
    }

    /// SANITIZE: checks the command, then starts the operation as its own task and, unless
    /// IMMED is set, waits for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sanitize(
        &self,
        target: &Target,
        issuer: u64,
        action: Action,
        immed: bool,
        ause: bool,
        param_len: u32,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        self.writable()?;
        let job = match action {
            Action::ExitFailureMode => {
                let mut st = self.state();
                if let SanitizeState::Failed { ause: false } = st.sanitize {
                    return Err(Sense::invalid_field_in_cdb(1, Some(4)));
                }
                st.sanitize = SanitizeState::Idle;
                return Ok(Vec::new());
            }
            // Deallocated blocks read as zeroes only with provisioning (LBPME=1, LBPRZ=1);
            // REPORT SUPPORTED OPERATION CODES does not list it otherwise.
            Action::BlockErase if !self.identity.thin => {
                return Err(Sense::invalid_field_in_cdb(1, Some(4)))
            }
            Action::BlockErase => None,
            Action::Overwrite => Some(sanitize::parse_overwrite(
                data_out,
                param_len,
                self.block_size,
            )?),
        };
        // The task needs the unit itself, which the target's LUN map holds.
        let unit = target
            .logical_unit(self.lun)
            .filter(|u| std::ptr::eq(u.as_ref(), self))
            .cloned()
            .ok_or(Sense::internal_target_failure())?;
        let progress = Arc::new(Progress {
            done_bytes: AtomicU64::new(0),
            total_bytes: self.blocks().saturating_mul(u64::from(self.block_size)),
            issuer,
            released: tokio::sync::Notify::new(),
        });
        {
            let mut st = self.state();
            if let SanitizeState::Running(p) = &st.sanitize {
                return Err(Sense::sanitize_in_progress(p.fraction()));
            }
            st.sanitize = SanitizeState::Running(progress.clone());
        }
        let waiter = progress.clone();
        let task = tokio::spawn(async move {
            let r = unit.sanitize_medium(job.as_ref(), &progress).await;
            unit.state().sanitize = match r {
                Ok(()) => SanitizeState::Idle,
                Err(_) => SanitizeState::Failed { ause },
            };
            r
        });
        if immed {
            return Ok(Vec::new());
        }
        tokio::select! {
            r = task => match r {
                Ok(r) => r.map(|()| Vec::new()),
                Err(_) => Err(Sense::internal_target_failure()),
            },
            () = waiter.released.notified() => Err(Sense::commands_cleared()),
        }
    }

    /// Task management reached this unit: an abort from the nexus whose SANITIZE waits
    /// (`reset` false), or a reset from anyone (`reset` true), ends that command; the
    /// operation itself goes on (SBC-4 4.33.2).
    pub(super) fn release_sanitize_waiter(&self, nexus: u64, reset: bool) {
        if let SanitizeState::Running(p) = &self.state().sanitize {
            if reset || p.issuer == nexus {
                p.released.notify_one();
            }
        }
    }

    /// The operation: every block overwritten (`Some`) or deallocated (`None`), then
    /// flushed, holding the medium gate throughout.
    async fn sanitize_medium(
        &self,
        overwrite: Option<&Overwrite>,
        progress: &Progress,
    ) -> Result<(), Sense> {
        let b = self.medium()?;
        let _exclusive = self.gate.write().await;
        let total = progress.total_bytes;
        let write_err =
            |e: crate::backend::BackendError| super::medium::backend_sense(e.kind, true);
        match overwrite {
            None => {
                b.punch_hole(0, total).await.map_err(write_err)?;
                progress.done_bytes.store(total, Ordering::Relaxed);
            }
            Some(o) => {
                let bs = u64::from(self.block_size);
                let chunk = (SANITIZE_CHUNK_BYTES / bs).max(1) * bs;
                let bs_usize = usize::try_from(bs).map_err(|_| Sense::internal_target_failure())?;
                let passes = u64::from(o.passes);
                let started = Instant::now();
                for pass in 0..o.passes {
                    let mut off = 0u64;
                    while off < total {
                        let n = (total - off).min(chunk);
                        let len =
                            usize::try_from(n).map_err(|_| Sense::internal_target_failure())?;
                        let mut buf = self.data_buf(len).await?;
                        o.fill(&mut buf, bs_usize, pass);
                        let (_, r) = b.write(off, buf).await;
                        r.map_err(write_err)?;
                        off += n;
                        let written = u64::from(pass) * total + off;
                        progress
                            .done_bytes
                            .store(written / passes.max(1), Ordering::Relaxed);
                        let due = Duration::from_millis(
                            written.saturating_mul(1000) / SANITIZE_BYTES_PER_SEC,
                        );
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
        b.flush().await.map_err(write_err)?;
        Ok(())
    }
}
