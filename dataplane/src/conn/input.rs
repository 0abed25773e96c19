//! The read phase: cutting the receive buffer into PDUs (RFC 7143 §11.2) and handing each to
//! the handler of the connection's phase, with back-pressure from the buffer pools.
//!
//! A write command whose Data-Out goes to a pool buffer is read only when a buffer is
//! free: while its logical unit's pool is empty the command stays in the input and the
//! connection stops reading (STYLE.md §3, "an empty pool is back-pressure"), for at most
//! `POOL_WAIT_MS_MAX`.

use tokio::time::Instant;
use tracing::warn;

use super::{Conn, End, Phase};
use crate::buf::IoBuf;
use crate::limits;
use crate::numa::{BufferPool, PoolBuf};
use crate::pdu::{self, op, request::ScsiCommand, RawPdu};
use crate::scsi::opcodes;

/// Pool buffers set aside for, or waited for by, the write command at the head of the input.
#[derive(Default)]
pub(super) struct PoolWait {
    /// A pool buffer taken for the write command at the head of the input.
    pub(super) spare: Option<PoolBuf>,
    /// The pool the head write command waits for (input not read meanwhile), and since when.
    pub(super) wait: Option<(BufferPool, Instant)>,
    /// Set when that wait timed out: the next write command takes a heap buffer.
    pub(super) bypass: bool,
}

impl Conn {
    /// Handles every whole PDU in the receive buffer.
    pub(super) fn process_input(&mut self) -> Result<(), End> {
        if self.closing.is_some() {
            return Ok(());
        }
        let rbuf = std::mem::take(&mut self.sock.rbuf);
        let mut at = 0;
        let mut result = Ok(());
        let mut handled = 0;
        while handled < limits::PDUS_PER_TURN_MAX && self.closing.is_none() && self.logout.is_none()
        {
            match pdu::decode(&rbuf[at..self.sock.rlen], &self.sock.framing) {
                Ok(Some((p, used))) => {
                    if !self.data_out_buffer_ready(&p) {
                        // Back-pressure: the command stays in the input until a buffer
                        // returns to its pool (see `run`).
                        break;
                    }
                    at += used;
                    handled += 1;
                    let r = self.handle(&p);
                    // A buffer set aside for a command that did not take it (held back
                    // by CmdSN order, refused, answered without running) goes back.
                    self.pool.spare = None;
                    if let Err(e) = r {
                        result = Err(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if e == pdu::PduError::HeaderDigest {
                        crate::metrics::inc(&self.shared.counters().digest_errors_total);
                    }
                    warn!(peer = %self.sock.peer, error = %e, "undecodable PDU");
                    result = Err(End::Protocol("undecodable PDU"));
                    break;
                }
            }
        }
        self.sock.rbuf = rbuf;
        if at > 0 {
            self.sock.rbuf.copy_within(at..self.sock.rlen, 0);
            self.sock.rlen -= at;
        }
        result
    }

    fn handle(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        match self.phase {
            Phase::Login(_) => {
                let outcome = self.on_login(p);
                self.apply(outcome, &p.bhs)
            }
            Phase::Full => self.handle_full(p),
        }
    }

    /// The pool `p`'s Data-Out is taken from, when it is a write command that gets one.
    fn pool_for_data_out(&self, p: &RawPdu<'_>) -> Option<BufferPool> {
        if !matches!(self.phase, Phase::Full) || p.bhs.opcode() != op::SCSI_CMD {
            return None;
        }
        let c = ScsiCommand::parse(&p.bhs);
        if !c.write || !opcodes::takes_pool_data_out(c.opcode()) {
            return None;
        }
        let edtl = usize::try_from(c.edtl).unwrap_or(usize::MAX);
        let lun = pdu::decode_lun(c.lun_raw).unwrap_or(u16::MAX);
        self.lu_pool(lun)
            .filter(|pool| edtl > 0 && edtl <= pool.buf_size_bytes())
    }

    /// Pool buffers this connection's writes hold while they wait for their Data-Out.
    fn held_for_data_out(&self) -> usize {
        self.cmds
            .tasks
            .values()
            .filter(|t| t.ws.is_some() && matches!(t.data, IoBuf::Pool(_)))
            .count()
    }

    /// False when `p` is a write command whose LU's buffer pool is empty and this
    /// connection holds none of its buffers: its input waits for one to return. True
    /// otherwise, with a pool buffer set aside in `spare` when one was free.
    ///
    /// A connection whose own writes hold buffers never stops reading: the Data-Out that
    /// frees them is behind this command in its input, so waiting would only wait out
    /// `POOL_WAIT_MS_MAX` per command. That write gets a vector instead (counted).
    fn data_out_buffer_ready(&mut self, p: &RawPdu<'_>) -> bool {
        if self.pool.spare.is_some() || self.pool.bypass {
            return true;
        }
        if self.pool.wait.is_some() {
            // Already waiting: `run` hands over a buffer (or the timeout) when it comes;
            // asking the pool again would only count the same wait twice.
            return false;
        }
        let Some(pool) = self.pool_for_data_out(p) else {
            return true;
        };
        let held = self.held_for_data_out();
        if held >= limits::POOL_BUFFERS_PER_CONN_MAX {
            return true;
        }
        match pool.try_get() {
            Some(buf) => {
                self.pool.spare = Some(buf);
                self.pool.wait = None;
                true
            }
            // Our own writes hold buffers (their Data-Out is behind this command), or a wait
            // on this pool already timed out and none came back since: go on with a vector.
            None if held > 0 || pool.is_starved() => true,
            None => {
                if self.pool.wait.is_none() {
                    self.pool.wait = Some((pool, Instant::now()));
                }
                false
            }
        }
    }

    /// The buffer pool of the LU behind `lun` on this session's target.
    fn lu_pool(&self, lun: u16) -> Option<BufferPool> {
        self.bound
            .target
            .as_ref()?
            .scsi
            .logical_unit(lun)?
            .pool()
            .cloned()
    }

    /// A buffer for `edtl` bytes of Data-Out of the write command `c`.
    ///
    /// WRITE and WRITE AND VERIFY take the buffer set aside for them, or another of the LU's
    /// pool. They get a vector (counted in the pool's heap fallbacks) when they are longer
    /// than a pool buffer, the connection already holds `POOL_BUFFERS_PER_CONN_MAX` buffers
    /// for Data-Out, the pool is empty (a wait timed out, or the connection's own writes hold
    /// the buffers), or they were held back by CmdSN order. Other commands always get a
    /// vector: see `scsi::opcodes::OpEntry::pool_data_out`.
    pub(super) fn data_out_buf(&mut self, lun: u16, edtl: usize, c: &ScsiCommand) -> IoBuf {
        self.pool.bypass = false;
        let spare = self.pool.spare.take();
        let Some(pool) = self
            .lu_pool(lun)
            .filter(|_| opcodes::takes_pool_data_out(c.opcode()))
        else {
            return IoBuf::Vec(vec![0u8; edtl]);
        };
        let buf = if edtl > pool.buf_size_bytes()
            || self.held_for_data_out() >= limits::POOL_BUFFERS_PER_CONN_MAX
        {
            None
        } else {
            match spare {
                Some(b) if b.capacity() >= edtl => Some(b),
                _ => pool.try_get(),
            }
        };
        match buf.map(|mut b| b.set_len(edtl).map(|()| b)) {
            Some(Ok(b)) => IoBuf::Pool(b),
            _ => {
                pool.note_heap();
                IoBuf::Vec(vec![0u8; edtl])
            }
        }
    }
}
