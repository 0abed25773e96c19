//! Encoding of the target's PDUs into the connection's output buffer (RFC 7143 §11), with
//! StatSN assigned in send order and ExpCmdSN/MaxCmdSN from the current window
//! (RFC 7143 §4.2.2.1). The layouts are [`crate::pdu::response`]'s.

use super::Conn;
use crate::login::LoginReply;
use crate::pdu::response::{
    DataIn, LoginResponse, LogoutResponse, NopIn, R2t, Reject, ScsiResponse, TaskMgmtResponse,
    TextResponse,
};
use crate::pdu::{Residual, Seq, BHS_LEN};

impl Conn {
    /// The sequence numbers of a PDU that takes no StatSN of its own: the current StatSN
    /// is the next one to be sent.
    fn seq_current(&self) -> Seq {
        Seq {
            stat_sn: self.sn.stat_sn.0,
            exp_cmd_sn: self.sn.window.exp_cmd_sn(),
            max_cmd_sn: self.sn.window.max_cmd_sn(self.in_progress()),
        }
    }

    /// The sequence numbers of a PDU that takes the next StatSN.
    fn seq_next(&mut self) -> Seq {
        let seq = self.seq_current();
        self.sn.stat_sn = self.sn.stat_sn.plus(1);
        seq
    }

    pub(super) fn send_login_reply(&mut self, itt: u32, isid: &[u8; 6], tsih: u16, r: &LoginReply) {
        let seq = self.seq_next();
        LoginResponse {
            transit: r.transit,
            cont: r.cont,
            csg: r.csg,
            nsg: r.nsg,
            isid: *isid,
            tsih,
            itt,
            status: r.status,
            seq,
        }
        .emit(&mut self.sock.wbuf, &r.text);
    }

    /// SCSI Response; `exp_data_sn` counts the R2T or Data-In PDUs sent for the command.
    pub(super) fn send_scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: Residual,
        exp_data_sn: u32,
    ) {
        let seq = self.seq_next();
        ScsiResponse {
            itt,
            status,
            residual,
            exp_data_sn,
            seq,
        }
        .emit(&mut self.sock.wbuf, sense, &self.sock.framing);
    }

    /// Sends `data` as Data-In PDUs of at most MaxRecvDataSegmentLength each, F at every
    /// MaxBurstLength boundary, with the status in the last PDU when `status` is given.
    /// Returns the number of Data-In PDUs sent.
    pub(super) fn send_data_in(
        &mut self,
        itt: u32,
        lun_raw: u64,
        data: &[u8],
        status: Option<(u8, Residual)>,
    ) -> u32 {
        let seg = usize::try_from(self.neg.send_data_segment_bytes.max(512)).unwrap_or(512);
        let burst = usize::try_from(self.neg.burst_bytes_max.max(512)).unwrap_or(512);
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
            let mut seq = self.seq_current();
            let status = status.filter(|_| last);
            if status.is_some() {
                seq = self.seq_next();
            } else {
                // StatSN is meaningful only in the Data-In with the S bit (RFC 7143 §11.7).
                seq.stat_sn = 0;
            }
            DataIn {
                final_bit: end_of_burst,
                status,
                lun_raw,
                itt,
                data_sn,
                buffer_offset: u32::try_from(offset).unwrap_or(u32::MAX),
                seq,
            }
            .emit(
                &mut self.sock.wbuf,
                &data[offset..offset + n],
                &self.sock.framing,
            );
            offset += n;
            data_sn = data_sn.wrapping_add(1);
        }
        data_sn
    }

    pub(super) fn send_r2t(&mut self, itt: u32, lun_raw: u64, r: &crate::task::R2t) {
        let seq = self.seq_current();
        R2t {
            lun_raw,
            itt,
            ttt: r.ttt,
            r2t_sn: r.r2t_sn,
            buffer_offset: r.offset,
            desired_len: r.len,
            seq,
        }
        .emit(&mut self.sock.wbuf, &self.sock.framing);
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
        let seq = if answer {
            self.seq_next()
        } else {
            self.seq_current()
        };
        NopIn {
            lun_raw,
            itt,
            ttt,
            seq,
        }
        .emit(&mut self.sock.wbuf, data, &self.sock.framing);
    }

    pub(super) fn send_reject(&mut self, reason: u8, header: &[u8; BHS_LEN]) {
        let seq = self.seq_next();
        Reject { reason, seq }.emit(&mut self.sock.wbuf, header, &self.sock.framing);
    }

    pub(super) fn send_tmf_response(&mut self, itt: u32, response: u8) {
        let seq = self.seq_next();
        TaskMgmtResponse { itt, response, seq }.emit(&mut self.sock.wbuf, &self.sock.framing);
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
        let seq = self.seq_next();
        TextResponse {
            final_bit,
            cont,
            lun_raw,
            itt,
            ttt,
            seq,
        }
        .emit(&mut self.sock.wbuf, data, &self.sock.framing);
    }

    pub(super) fn send_logout_response(&mut self, itt: u32, response: u8) {
        let seq = self.seq_next();
        LogoutResponse {
            itt,
            response,
            time2wait_secs: self.neg.time2wait_secs,
            time2retain_secs: self.neg.time2retain_secs,
            seq,
        }
        .emit(&mut self.sock.wbuf, &self.sock.framing);
    }
}
