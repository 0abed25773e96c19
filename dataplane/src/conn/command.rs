//! The SCSI command flow of a connection (RFC 7143 §11.3-§11.8, §4.2.5.2): a SCSI Command
//! becomes a [`Task`]; a write collects its immediate, unsolicited and solicited (R2T)
//! Data-Out; the task runs on its logical unit; its result goes back as Data-In and a SCSI
//! Response with the residual (RFC 7143 §11.4.5).
//!
//! A command whose data digest failed is still taken in and then ended with a CRC error
//! check condition (ERL 0, RFC 7143 §7.8). SCSI semantics (the CDB, sense data, unit
//! attentions) are the logical unit's; this file only moves data and status.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use tracing::{debug, warn};

use super::{inflight, Conn, Outcome};
use crate::buf::IoBuf;
use crate::limits;
use crate::login::SessionKind;
use crate::lu::{Admission, ScsiResponse};
use crate::pdu::request::{DataOut, ScsiCommand};
use crate::pdu::{self, reject, rfc_default, RawPdu, Residual, RESERVED_TAG};
use crate::scsi::Sense;
use crate::task::{DataOutError, WriteLimits, WriteState};

/// ITTs of failed or aborted commands remembered per connection (stray Data-Out is dropped).
const DEAD_ITTS_MAX: usize = 16;

/// A CDB kept inline: the 16 bytes of the BHS plus an extended-CDB AHS of up to 16 more
/// (32-byte variable-length CDBs) need no allocation; longer ones are rare and allocate.
#[derive(Default)]
pub(super) struct Cdb {
    inline: [u8; 32],
    len: usize,
    long: Vec<u8>,
}

impl Cdb {
    fn new(base: &[u8], ext: &[u8]) -> Self {
        let mut c = Cdb::default();
        let len = base.len() + ext.len();
        if len <= c.inline.len() {
            c.inline[..base.len()].copy_from_slice(base);
            c.inline[base.len()..len].copy_from_slice(ext);
            c.len = len;
        } else {
            c.long = [base, ext].concat();
        }
        c
    }

    fn as_slice(&self) -> &[u8] {
        if self.long.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.long
        }
    }
}

/// A SCSI command from arrival to its response.
pub(super) struct Task {
    lun_raw: u64,
    pub(super) lun: u16,
    cdb: Cdb,
    edtl: u32,
    read: bool,
    write: bool,
    /// Data-Out as it arrives: a buffer of the LU's pool, handed to the LU whole.
    pub(super) data: IoBuf,
    pub(super) ws: Option<WriteState>,
    /// Handed to the logical unit; it ends only when the LU answers.
    pub(super) running: bool,
    /// Aborted by task management while running: its result is dropped.
    pub(super) aborted: bool,
    digest_bad: bool,
}

impl Task {
    /// A command just admitted: no Data-Out yet, not handed to the LU.
    fn new(
        lun_raw: u64,
        lun: u16,
        cdb: Cdb,
        edtl: u32,
        read: bool,
        write: bool,
        digest_bad: bool,
    ) -> Self {
        Self {
            lun_raw,
            lun,
            cdb,
            edtl,
            read,
            write,
            data: IoBuf::empty(),
            ws: None,
            running: false,
            aborted: false,
            digest_bad,
        }
    }
}

/// A finished SCSI command.
pub(super) struct Done {
    itt: u32,
    resp: ScsiResponse,
}

#[cfg(test)]
impl Done {
    /// A GOOD completion of `itt` with no data, for tests of the in-flight list.
    pub(super) fn for_test(itt: u32) -> Self {
        Self {
            itt,
            resp: ScsiResponse::good(IoBuf::empty()),
        }
    }

    pub(super) fn itt_for_test(&self) -> u32 {
        self.itt
    }
}

/// The SCSI commands of one connection.
pub(super) struct Commands {
    /// Every command from arrival to response, by ITT.
    pub(super) tasks: HashMap<u32, Task>,
    /// Commands running on their logical units.
    pub(super) running: inflight::Inflight,
    /// Commands that finished in this turn, answered in arrival order of completion.
    pub(super) finished: Vec<Done>,
    /// What login agreed on unsolicited data and bursts.
    pub(super) write_limits: WriteLimits,
    /// ITTs of commands that ended early; their stray Data-Out is dropped quietly.
    dead_itts: VecDeque<u32>,
}

impl Commands {
    pub(super) fn new() -> Self {
        Self {
            tasks: HashMap::new(),
            running: inflight::Inflight::default(),
            finished: Vec::with_capacity(usize::try_from(limits::CMD_WINDOW).unwrap_or(128)),
            write_limits: WriteLimits {
                first_burst: rfc_default::FIRST_BURST_LENGTH,
                max_burst: rfc_default::MAX_BURST_LENGTH,
                outstanding_r2t_max: 1,
                initial_r2t: true,
            },
            dead_itts: VecDeque::with_capacity(DEAD_ITTS_MAX),
        }
    }
}

impl Conn {
    /// A SCSI Command whose turn has come.
    pub(super) fn on_scsi_cmd(&mut self, p: &RawPdu<'_>, c: &ScsiCommand) -> Outcome {
        self.refresh_target();
        let itt = c.itt;
        if self.neg.kind == SessionKind::Discovery || self.bound.target.is_none() {
            return Outcome::Reject(reject::PROTOCOL_ERROR);
        }
        if self.cmds.tasks.contains_key(&itt) {
            return Outcome::Reject(reject::TASK_IN_PROGRESS);
        }
        let (read, write, edtl, lun_raw) = (c.read, c.write, c.edtl, c.lun_raw);
        let lun = pdu::decode_lun(lun_raw).unwrap_or(u16::MAX);
        let cdb = Cdb::new(&c.cdb, p.ext_cdb);
        let imm = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        if imm > 0 && (!write || !self.neg.immediate_data) {
            return Outcome::Reject(reject::PROTOCOL_ERROR);
        }
        match self.bound.attentions.admit(lun, cdb.as_slice()) {
            Admission::Run => {}
            Admission::Terminate(sense) => {
                // Not run, so no data is taken in: any unsolicited Data-Out is dropped.
                self.respond_check(itt, edtl, sense.encode());
                return Outcome::Reply;
            }
            Admission::Complete(resp) => {
                // REQUEST SENSE answered here; it has no Data-Out, so nothing is pending.
                let task = Task::new(lun_raw, lun, Cdb::default(), edtl, read, write, false);
                self.respond(itt, &task, resp);
                return Outcome::Reply;
            }
        }
        if write && read {
            // Bidirectional commands are not offered by any command we implement.
            self.respond_check(itt, edtl, Sense::invalid_field_in_cdb(0, None).encode());
            return Outcome::Reply;
        }
        if edtl > limits::TRANSFER_BYTES_MAX {
            self.respond_check(itt, edtl, Sense::invalid_field_in_cdb(0, None).encode());
            return Outcome::Reply;
        }
        let mut task = Task::new(lun_raw, lun, cdb, edtl, read, write, p.data_digest_bad);
        if write && edtl > 0 {
            let ws = match WriteState::new(edtl, imm, c.final_bit, &self.cmds.write_limits) {
                Ok(ws) => ws,
                Err(e) => {
                    debug!(itt, error = %e, "write command refused");
                    return Outcome::Reject(reject::PROTOCOL_ERROR);
                }
            };
            let mut data = self.data_out_buf(lun, usize::try_from(edtl).unwrap_or(usize::MAX), c);
            data[..p.data.len()].copy_from_slice(p.data);
            task.data = data;
            task.ws = Some(ws);
        }
        if p.data_digest_bad {
            // The immediate data is lost; at ERL 0 the command ends with a CRC error
            // sense once its remaining data has been taken in (RFC 7143 §7.8). The Reject
            // goes out now, ahead of the R2Ts or the response that follow, which is why it
            // is sent here rather than returned.
            self.digest_error();
            self.send_reject(reject::DATA_DIGEST, &p.bhs.0);
        }
        self.cmds.tasks.insert(itt, task);
        self.advance_write(itt);
        Outcome::Reply
    }

    /// Issues R2Ts for a write task, or starts it once all its data is in.
    fn advance_write(&mut self, itt: u32) {
        let Some(task) = self.cmds.tasks.get_mut(&itt) else {
            return;
        };
        let mut r2ts = [crate::task::R2t {
            ttt: 0,
            r2t_sn: 0,
            offset: 0,
            len: 0,
        }; limits::OUTSTANDING_R2T_MAX as usize];
        let mut n = 0;
        let complete = match task.ws.as_mut() {
            Some(ws) => {
                let mut next = self.sn.next_ttt;
                ws.issue_r2ts(
                    &self.cmds.write_limits,
                    || {
                        next = next.wrapping_add(1);
                        if next == RESERVED_TAG {
                            next = 1;
                        }
                        next
                    },
                    |r| {
                        if n < r2ts.len() {
                            r2ts[n] = r;
                            n += 1;
                        }
                    },
                );
                self.sn.next_ttt = next;
                ws.complete()
            }
            None => true,
        };
        let lun_raw = task.lun_raw;
        for r in &r2ts[..n] {
            self.send_r2t(itt, lun_raw, r);
        }
        if complete {
            self.start(itt);
        }
    }

    /// Hands a task whose data is all in to its logical unit.
    fn start(&mut self, itt: u32) {
        let Some(task) = self.cmds.tasks.get_mut(&itt) else {
            return;
        };
        if task.digest_bad {
            let edtl = task.edtl;
            self.cmds.tasks.remove(&itt);
            self.respond_check(itt, edtl, Sense::protocol_service_crc_error().encode());
            return;
        }
        let (Some(target), Some(nexus)) = (self.bound.target.clone(), self.bound.nexus.clone())
        else {
            return;
        };
        task.running = true;
        task.ws = None;
        let data = std::mem::take(&mut task.data);
        let cdb = std::mem::take(&mut task.cdb);
        let lun = task.lun;
        let expected_in = if task.read { task.edtl } else { 0 };
        let mut fut = Box::pin(async move {
            let resp = target
                .scsi
                .execute(lun, &nexus, cdb.as_slice(), data, expected_in)
                .await;
            Done { itt, resp }
        });
        // Most commands (page-cache reads, INQUIRY, ...) finish without waiting: poll once
        // here and answer in this turn, with no task spawn and no cross-thread wake-up.
        // A future that is not ready is handed to the runtime, which polls it again with a
        // real waker (a future must honour the waker of its latest poll).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(done) => self.on_done(done),
            std::task::Poll::Pending => self.cmds.running.push(fut),
        }
    }

    /// A Data-Out (RFC 7143 §11.7): placed in its task's buffer once its sequence checks.
    pub(super) fn on_data_out(&mut self, p: &RawPdu<'_>, d: &DataOut) -> Outcome {
        let itt = d.itt;
        let Some(task) = self.cmds.tasks.get_mut(&itt) else {
            // Data for a command that already failed or was aborted is dropped quietly;
            // data for a command we never saw is rejected.
            if self.cmds.dead_itts.contains(&itt) {
                return Outcome::Reply;
            }
            return Outcome::Reject(reject::INVALID_PDU_FIELD);
        };
        let Some(ws) = task.ws.as_mut() else {
            return Outcome::Reject(reject::PROTOCOL_ERROR);
        };
        let offset = d.buffer_offset;
        let len = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        match ws.data_out(d.ttt, d.data_sn, offset, len, d.final_bit) {
            Ok(()) => {
                // `data_out` checked that offset + len lies inside the EDTL the buffer holds.
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                task.data[start..start + p.data.len()].copy_from_slice(p.data);
                if p.data_digest_bad {
                    // As for a command's immediate data: the Reject precedes whatever this
                    // Data-Out completes (R2Ts, or the check condition).
                    task.digest_bad = true;
                    self.digest_error();
                    self.send_reject(reject::DATA_DIGEST, &p.bhs.0);
                }
                self.advance_write(itt);
                Outcome::Reply
            }
            Err(DataOutError::ShortSequence { .. }) => {
                // The sequence closed short; what arrived is placed, and the task cannot
                // complete at ERL 0: end it with a protocol-error check condition.
                let edtl = task.edtl;
                self.cmds.tasks.remove(&itt);
                self.respond_check(itt, edtl, Sense::data_phase_error().encode());
                Outcome::Reply
            }
            Err(e) => {
                // A sequence error ends the command at ERL 0: the Reject names its ITT so the
                // initiator fails it, and later Data-Out for it is dropped.
                debug!(itt, error = %e, "data-out refused");
                self.cmds.tasks.remove(&itt);
                self.mark_dead(itt);
                Outcome::Reject(reject::PROTOCOL_ERROR)
            }
        }
    }

    /// Counts a data digest mismatch (the Reject goes out separately).
    pub(super) fn digest_error(&self) {
        warn!(peer = %self.sock.peer, "data digest error");
        crate::metrics::inc(&self.shared.counters().digest_errors_total);
    }

    /// Remembers a few ITTs of commands that ended early, so their stray Data-Out is dropped.
    pub(super) fn mark_dead(&mut self, itt: u32) {
        let dead = &mut self.cmds.dead_itts;
        if dead.len() >= DEAD_ITTS_MAX {
            dead.pop_front();
        }
        dead.push_back(itt);
    }

    /// A command finished on its logical unit: answer it, or release a task management
    /// function that waited for it.
    pub(super) fn on_done(&mut self, done: Done) {
        let Done { itt, resp } = done;
        let Some(task) = self.cmds.tasks.remove(&itt) else {
            return;
        };
        if task.aborted {
            self.finish_tmf_wait(itt);
            return;
        }
        self.respond(itt, &task, resp);
    }

    /// Sends a command's data and status, with the residual against its EDTL.
    fn respond(&mut self, itt: u32, task: &Task, resp: ScsiResponse) {
        let good_without_sense = resp.sense.is_empty();
        if task.read {
            let have = u32::try_from(resp.data_in.len()).unwrap_or(u32::MAX);
            let send = have.min(task.edtl);
            let residual = Residual::between(task.edtl, have);
            // `send` is at most `data_in.len()`, so it fits a usize and indexes inside.
            let payload = &resp.data_in[..usize::try_from(send).unwrap_or(usize::MAX)];
            if good_without_sense && send > 0 {
                self.send_data_in(itt, task.lun_raw, payload, Some((resp.status, residual)));
                return;
            }
            let data_ins = if send > 0 {
                self.send_data_in(itt, task.lun_raw, payload, None)
            } else {
                0
            };
            self.send_scsi_response(itt, resp.status, &resp.sense, residual, data_ins);
            return;
        }
        let residual = if task.write {
            match resp.cdb_transfer_bytes {
                Some(want) => Residual::between(task.edtl, want),
                None => Residual::Under(task.edtl),
            }
        } else {
            match resp.cdb_transfer_bytes {
                Some(want) if want > 0 => Residual::Over(want),
                _ => Residual::None,
            }
        };
        // ExpDataSN counts Data-In PDUs only and is 0 when there were none (RFC 7143 §11.4.6).
        self.send_scsi_response(itt, resp.status, &resp.sense, residual, 0);
    }

    /// Ends a command that did not run with CHECK CONDITION and `sense`.
    fn respond_check(&mut self, itt: u32, edtl: u32, sense: Vec<u8>) {
        self.mark_dead(itt);
        let residual = if edtl > 0 {
            Residual::Under(edtl)
        } else {
            Residual::None
        };
        self.send_scsi_response(
            itt,
            crate::scsi::status::CHECK_CONDITION,
            &sense,
            residual,
            0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Cdb;

    #[test]
    fn cdbs_up_to_32_bytes_stay_inline_and_longer_ones_are_whole() {
        let base: Vec<u8> = (0..16).collect();
        let c = Cdb::new(&base, &[]);
        assert_eq!(c.as_slice(), &base[..]);
        assert!(c.long.is_empty());
        let ext: Vec<u8> = (16..32).collect();
        let c = Cdb::new(&base, &ext);
        assert_eq!(c.as_slice(), &(0..32).collect::<Vec<u8>>()[..]);
        assert!(c.long.is_empty());
        let ext: Vec<u8> = (16..60).collect();
        let c = Cdb::new(&base, &ext);
        assert_eq!(c.as_slice(), &(0..60).collect::<Vec<u8>>()[..]);
        assert!(Cdb::default().as_slice().is_empty());
    }
}
