//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS on a logical unit (SPC-4 6.4, 6.18): the
//! copy manager resolves each identification CSCD descriptor to a logical unit by its NAA
//! designator (see below for which units it may name), then copies each block-to-block
//! segment from the source's backend to the destination's, one data buffer at a time,
//! without the data passing through the connection. Each read and each write holds its unit's medium gate shared (never both
//! at once), so a copy neither tears an atomic write nor deadlocks against one. At most
//! [`xcopy::MAX_CONCURRENT_COPIES`] copies run per logical unit; the status of the last
//! copies whose LIST ID USAGE asks for it is kept, [`RESULTS_KEPT`] at most, for RECEIVE COPY
//! RESULTS from the same I_T nexus.
//!
//! # Which logical units a copy may name
//!
//! A CSCD descriptor may name a disk of the target the EXTENDED COPY arrived through, or a
//! disk of another target of the same data plane that the initiator (by iSCSI name, the
//! part of the initiator port name before `,i,`) has a logged-in session with now
//! ([`Target::copy_peers`], answered by the data plane's [`super::CopyScope`]). Why that
//! rule: the copy must not give an initiator a path to data it could not read or write
//! itself. A live session means the initiator passed that target's initiator ACL, source
//! networks and CHAP at login, so the copy reaches only what the initiator could already
//! reach with READ and WRITE; checking the ACL alone would skip CHAP, and any unit of the
//! data plane (LIO's rule) would let an initiator of target A read target B's disks. VMware
//! VAAI full copy fits the rule: the host is logged in to every target whose datastores it
//! copies between. Logical units of another data plane are never reachable (COPY TARGET
//! DEVICE NOT REACHABLE). Cross-target copies take the same bounds as the others: the copy
//! manager's slot in [`xcopy::MAX_CONCURRENT_COPIES`], [`xcopy::MAX_SEGMENT_BYTES`] per
//! segment, one data buffer at a time.

use super::target::Target;
use super::unit::{LogicalUnit, Role};
use super::Nexus;
use crate::scsi::sense::Sense;
use crate::scsi::xcopy::{self, CopyList, CopyStatus};
use crate::scsi::{check_lba_range, BlockCount, Lba};
use std::collections::VecDeque;
use std::sync::Arc;

/// Copy results kept per logical unit (oldest dropped first).
pub const RESULTS_KEPT: usize = 16;

/// Bytes one read-then-write step of a copy moves.
const COPY_CHUNK_BYTES: u64 = 1 << 20;

/// A logical unit's copies: how many run, and the kept results.
#[derive(Debug, Default)]
pub(super) struct Copies {
    running: u8,
    results: VecDeque<(u64, u8, CopyStatus)>,
}

/// A running copy's place in [`xcopy::MAX_CONCURRENT_COPIES`], given back on drop.
struct Slot<'a>(&'a LogicalUnit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.copies.running = st.copies.running.saturating_sub(1);
    }
}

impl LogicalUnit {
    fn copy_slot(&self) -> Result<Slot<'_>, Sense> {
        let mut st = self.state();
        if st.copies.running >= xcopy::MAX_CONCURRENT_COPIES {
            return Err(Sense::insufficient_resources());
        }
        st.copies.running += 1;
        Ok(Slot(self))
    }

    /// EXTENDED COPY (LID1).
    pub(super) async fn extended_copy(
        &self,
        target: &Target,
        nexus: &Nexus,
        param_len: u32,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let Some(list) = xcopy::parse(data_out, param_len)? else {
            return Ok(Vec::new());
        };
        let _slot = self.copy_slot()?;
        // This target's units first; the other targets are looked up only when a CSCD
        // names a unit this target does not export.
        let names = |u: &LogicalUnit, t: &xcopy::CopyTarget| {
            u.role == Role::Disk && u.block_size == t.block_size && u.identity.naa() == t.naa
        };
        let mut peers: Option<Vec<Arc<Target>>> = None;
        let units: Vec<Option<Arc<LogicalUnit>>> = list
            .targets
            .iter()
            .map(|t| {
                if let Some(u) = target.logical_units().find(|u| names(u, t)) {
                    return Some(u.clone());
                }
                peers
                    .get_or_insert_with(|| target.copy_peers(nexus))
                    .iter()
                    .flat_map(|p| p.logical_units())
                    .find(|u| names(u, t))
                    .cloned()
            })
            .collect();
        let mut status = CopyStatus {
            good: true,
            segments_processed: 0,
            bytes: 0,
            sense: None,
        };
        let r = copy_segments(&list, &units, &mut status).await;
        if let Err(s) = r {
            status.good = false;
            status.sense = Some(s);
        }
        self.counters.note_copy(status.bytes, !status.good);
        if list.held {
            let mut st = self.state();
            let results = &mut st.copies.results;
            results.retain(|(n, id, _)| !(*n == nexus.id && *id == list.list_id));
            if results.len() >= RESULTS_KEPT {
                results.pop_front();
            }
            results.push_back((nexus.id, list.list_id, status));
        }
        r.map(|()| Vec::new())
    }

    /// RECEIVE COPY RESULTS: the operating parameters, or the status or failed segment
    /// details of this nexus's copy `list_id` (INVALID FIELD IN CDB when none is kept).
    pub(super) fn receive_copy_results(
        &self,
        nexus: &Nexus,
        service_action: u8,
        list_id: u8,
    ) -> Result<Vec<u8>, Sense> {
        if service_action == 0x03 {
            return Ok(xcopy::operating_parameters());
        }
        let st = self.state();
        let status = st
            .copies
            .results
            .iter()
            .find(|(n, id, _)| *n == nexus.id && *id == list_id)
            .map(|(_, _, s)| *s)
            .ok_or(Sense::invalid_field_in_cdb(2, None))?;
        Ok(if service_action == 0x00 {
            xcopy::copy_status_data(&status)
        } else {
            xcopy::failed_segment_data(&status)
        })
    }
}

/// Runs the segments in order; the first that fails stops the copy with COPY ABORTED.
async fn copy_segments(
    list: &CopyList,
    units: &[Option<Arc<LogicalUnit>>],
    status: &mut CopyStatus,
) -> Result<(), Sense> {
    let unit = |i: u16| {
        units
            .get(usize::from(i))
            .and_then(Option::as_ref)
            .ok_or(Sense::copy_target_not_reachable())
    };
    for seg in &list.segments {
        let src = unit(seg.source)?;
        let dst = unit(seg.destination)?;
        let failed = |_| Sense::copy_segment_failed();
        // A unit being sanitized holds its medium gate for the whole operation: fail the
        // segment rather than wait that long.
        if src.sanitize_sense().is_some() || dst.sanitize_sense().is_some() {
            return Err(Sense::copy_segment_failed());
        }
        let src_backend = src.medium().map_err(failed)?;
        let dst_backend = dst.writable().map_err(failed)?;
        let blocks = BlockCount(u64::from(seg.blocks));
        check_lba_range(Lba(seg.source_lba), blocks, src.blocks()).map_err(failed)?;
        check_lba_range(Lba(seg.destination_lba), blocks, dst.blocks()).map_err(failed)?;
        let (src_off, len) = src.bytes(Lba(seg.source_lba), blocks);
        let (dst_off, _) = dst.bytes(Lba(seg.destination_lba), blocks);
        if len > u64::from(xcopy::MAX_SEGMENT_BYTES) {
            return Err(Sense::copy_segment_failed());
        }
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(COPY_CHUNK_BYTES);
            let n_usize = usize::try_from(n).map_err(|_| Sense::copy_segment_failed())?;
            let buf = src.data_buf(n_usize).await?;
            let (buf, r) = {
                let _shared = src.gate.read().await;
                src_backend.read(src_off + done, buf).await
            };
            r.map_err(|_| Sense::copy_segment_failed())?;
            let (_, r) = {
                let _shared = dst.gate.read().await;
                dst_backend.write(dst_off + done, buf).await
            };
            r.map_err(|_| Sense::copy_segment_failed())?;
            done += n;
            status.bytes += n;
        }
        if !dst.state().mode.wce {
            dst_backend
                .flush()
                .await
                .map_err(|_| Sense::copy_segment_failed())?;
        }
        status.segments_processed = status.segments_processed.saturating_add(1);
    }
    Ok(())
}
