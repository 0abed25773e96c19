//! Encoding of the target's PDUs into the connection's output buffer (RFC 7143 §11),
//! with StatSN assigned in send order and ExpCmdSN/MaxCmdSN from the current window.

use super::Conn;
use crate::login::LoginReply;
use crate::pdu::{op, Out, RESERVED_TAG};
use crate::task::R2t;

/// Residual count of a command (RFC 7143 §11.4.5): what the initiator expected versus
/// what the command moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// Exactly as expected.
    None,
    /// Fewer bytes than expected moved (U bit).
    Under(u32),
    /// The command wanted more than expected (O bit).
    Over(u32),
}

impl Residual {
    /// The residual between what was expected and what the command wanted to move.
    pub fn between(expected: u32, wanted: u32) -> Self {
        match wanted.cmp(&expected) {
            std::cmp::Ordering::Equal => Self::None,
            std::cmp::Ordering::Less => Self::Under(expected - wanted),
            std::cmp::Ordering::Greater => Self::Over(wanted - expected),
        }
    }

    fn flags_and_count(self) -> (u8, u32) {
        match self {
            Self::None => (0, 0),
            Self::Under(n) => (0x02, n),
            Self::Over(n) => (0x04, n),
        }
    }
}

impl Conn {
    fn seq(&self) -> (u32, u32) {
        let exp = self.window.exp_cmd_sn();
        (exp, self.window.max_cmd_sn(self.in_progress()))
    }

    /// Takes the next StatSN.
    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn.0;
        self.stat_sn = self.stat_sn.plus(1);
        s
    }

    pub(super) fn send_login_reply(&mut self, itt: u32, isid: &[u8; 6], tsih: u16, r: &LoginReply) {
        let mut flags = (r.csg << 2) | r.nsg;
        if r.transit {
            flags |= 0x80;
        }
        if r.cont {
            flags |= 0x40;
        }
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut h = Out::new(op::LOGIN_RESP, flags);
        h.0[8..14].copy_from_slice(isid);
        h.u16(14, tsih)
            .itt(itt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max)
            .u8(36, r.status.0)
            .u8(37, r.status.1);
        // Login PDUs are never digested: digests start after the final Login Response.
        let framing = crate::pdu::Framing {
            header_digest: false,
            data_digest: false,
            max_recv_data: 8192,
        };
        h.emit(&mut self.wbuf, &r.text, &framing);
    }

    /// SCSI Response; `exp_data_sn` counts the R2T or Data-In PDUs sent for the command.
    pub(super) fn send_scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: super::Residual,
        exp_data_sn: u32,
    ) {
        let (rflags, count) = residual.flags_and_count();
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut h = Out::new(op::SCSI_RESP, 0x80 | rflags);
        h.u8(2, 0)
            .u8(3, status)
            .itt(itt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max)
            .u32(36, exp_data_sn)
            .u32(44, count);
        if sense.is_empty() {
            h.emit(&mut self.wbuf, &[], &self.framing);
        } else {
            // Sense data travels with a 2-byte SenseLength prefix (RFC 7143 §11.4.7.2).
            let len = u16::try_from(sense.len()).unwrap_or(u16::MAX);
            let mut seg = Vec::with_capacity(2 + sense.len());
            seg.extend_from_slice(&len.to_be_bytes());
            seg.extend_from_slice(&sense[..usize::from(len)]);
            h.emit(&mut self.wbuf, &seg, &self.framing);
        }
    }

    /// Sends `data` as Data-In PDUs of at most MaxRecvDataSegmentLength each, F at every
    /// MaxBurstLength boundary, with the status in the last PDU when `status` is given.
    /// Returns the number of Data-In PDUs sent.
    pub(super) fn send_data_in(
        &mut self,
        itt: u32,
        lun_raw: u64,
        data: &[u8],
        status: Option<(u8, super::Residual)>,
    ) -> u32 {
        let seg = self.neg.send_data_segment_bytes.max(512) as usize;
        let burst = self.neg.burst_bytes_max.max(512) as usize;
        let mut offset = 0usize;
        let mut data_sn = 0u32;
        let mut in_burst = 0usize;
        while offset < data.len() {
            let n = (data.len() - offset).min(seg).min(burst - in_burst);
            let last = offset + n == data.len();
            in_burst += n;
            let end_of_burst = last || in_burst == burst;
            if end_of_burst {
                in_burst = 0;
            }
            let mut flags = if end_of_burst { 0x80 } else { 0 };
            let (exp, max) = self.seq();
            let mut h = Out::new(op::DATA_IN, 0);
            let mut stat_sn = 0;
            if let (true, Some((st, residual))) = (last, status) {
                let (rflags, count) = residual.flags_and_count();
                flags |= 0x01 | rflags;
                stat_sn = self.next_stat_sn();
                h.u8(3, st).u32(44, count);
            }
            h.0[1] = flags;
            h.lun(lun_raw)
                .itt(itt)
                .u32(20, RESERVED_TAG)
                .u32(24, stat_sn)
                .u32(28, exp)
                .u32(32, max)
                .u32(36, data_sn)
                .u32(40, u32::try_from(offset).unwrap_or(u32::MAX));
            h.emit(&mut self.wbuf, &data[offset..offset + n], &self.framing);
            offset += n;
            data_sn = data_sn.wrapping_add(1);
        }
        data_sn
    }

    pub(super) fn send_r2t(&mut self, itt: u32, lun_raw: u64, r: &R2t) {
        let (exp, max) = self.seq();
        let mut h = Out::new(op::R2T, 0x80);
        h.lun(lun_raw)
            .itt(itt)
            .u32(20, r.ttt)
            .u32(24, self.stat_sn.0)
            .u32(28, exp)
            .u32(32, max)
            .u32(36, r.r2t_sn)
            .u32(40, r.offset)
            .u32(44, r.len);
        h.emit(&mut self.wbuf, &[], &self.framing);
    }

    /// NOP-In: an answer to a NOP-Out (advances StatSN) or our own ping (ITT reserved,
    /// StatSN not advanced: RFC 7143 §11.19.3).
    pub(super) fn send_nop_in(
        &mut self,
        itt: u32,
        ttt: u32,
        lun_raw: u64,
        data: &[u8],
        answer: bool,
    ) {
        let stat_sn = if answer {
            self.next_stat_sn()
        } else {
            self.stat_sn.0
        };
        let (exp, max) = self.seq();
        let mut h = Out::new(op::NOP_IN, 0x80);
        h.lun(lun_raw)
            .itt(itt)
            .u32(20, ttt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max);
        h.emit(&mut self.wbuf, data, &self.framing);
    }

    pub(super) fn send_reject(&mut self, reason: u8, header: &[u8; 48]) {
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut h = Out::new(op::REJECT, 0x80);
        h.u8(2, reason)
            .itt(RESERVED_TAG)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max);
        h.emit(&mut self.wbuf, header, &self.framing);
    }

    pub(super) fn send_tmf_response(&mut self, itt: u32, response: u8) {
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut h = Out::new(op::TASK_MGMT_RESP, 0x80);
        h.u8(2, response)
            .itt(itt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max);
        h.emit(&mut self.wbuf, &[], &self.framing);
    }

    pub(super) fn send_text_response(
        &mut self,
        itt: u32,
        lun_raw: u64,
        ttt: u32,
        final_bit: bool,
        cont: bool,
        data: &[u8],
    ) {
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut flags = 0;
        if final_bit {
            flags |= 0x80;
        }
        if cont {
            flags |= 0x40;
        }
        let mut h = Out::new(op::TEXT_RESP, flags);
        h.lun(lun_raw)
            .itt(itt)
            .u32(20, ttt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max);
        h.emit(&mut self.wbuf, data, &self.framing);
    }

    pub(super) fn send_logout_response(&mut self, itt: u32, response: u8) {
        let stat_sn = self.next_stat_sn();
        let (exp, max) = self.seq();
        let mut h = Out::new(op::LOGOUT_RESP, 0x80);
        h.u8(2, response)
            .itt(itt)
            .u32(24, stat_sn)
            .u32(28, exp)
            .u32(32, max)
            .u16(40, self.neg.time2wait_secs)
            .u16(42, self.neg.time2retain_secs);
        h.emit(&mut self.wbuf, &[], &self.framing);
    }
}
