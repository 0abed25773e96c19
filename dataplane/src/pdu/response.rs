//! Builders for the PDUs the target sends (RFC 7143 §11.4, §11.6, §11.7, §11.8, §11.11,
//! §11.13, §11.15, §11.17, §11.19): each names the fields of its Basic Header Segment and
//! appends the whole PDU (header, data segment, padding, digests) to an output buffer.
//!
//! Sequence numbers are chosen by the caller, which knows the send order; a builder only
//! places them.

use super::{
    flag, op, Bhs, Framing, Out, AT_EXP_SN, AT_SN, AT_WORD10, AT_WORD11, AT_WORD5, AT_WORD8,
    AT_WORD9, BHS_LEN, RESERVED_TAG,
};

/// Task management response codes (RFC 7143 §11.6.1).
pub mod tmf_response {
    /// Function complete.
    pub const COMPLETE: u8 = 0;
    /// Task does not exist.
    pub const NO_TASK: u8 = 1;
    /// LUN does not exist.
    pub const NO_LUN: u8 = 2;
    /// Task still allegiant.
    pub const STILL_ALLEGIANT: u8 = 3;
    /// Task allegiance reassignment not supported.
    pub const NO_REASSIGN: u8 = 4;
    /// Task management function not supported.
    pub const NOT_SUPPORTED: u8 = 5;
    /// Function authorization failed.
    pub const AUTHORIZATION_FAILED: u8 = 6;
    /// Function rejected.
    pub const REJECTED: u8 = 255;
}

/// Logout response codes (RFC 7143 §11.15.1).
pub mod logout_response {
    /// Connection or session closed successfully.
    pub const CLOSED: u8 = 0;
    /// CID not found.
    pub const CID_NOT_FOUND: u8 = 1;
    /// Connection recovery is not supported.
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
    /// Cleanup failed for various reasons.
    pub const CLEANUP_FAILED: u8 = 3;
}

/// StatSN, ExpCmdSN and MaxCmdSN, which every target PDU carries (RFC 7143 §11.2.1.5 and
/// the section of each PDU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    /// StatSN: the next one for a PDU that takes one, the current one otherwise.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl Seq {
    /// The sequence numbers of a target PDU as received (what an initiator reads).
    pub fn parse(b: &Bhs) -> Self {
        Self {
            stat_sn: b.u32_at(AT_SN),
            exp_cmd_sn: b.u32_at(AT_EXP_SN),
            max_cmd_sn: b.u32_at(AT_WORD8),
        }
    }

    fn put(&self, h: &mut Out) {
        h.u32(AT_SN, self.stat_sn)
            .u32(AT_EXP_SN, self.exp_cmd_sn)
            .u32(AT_WORD8, self.max_cmd_sn);
    }
}

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

    /// The O/U flag bits and the Residual Count field.
    fn flags_and_count(self) -> (u8, u32) {
        match self {
            Self::None => (0, 0),
            Self::Under(n) => (flag::UNDERFLOW, n),
            Self::Over(n) => (flag::OVERFLOW, n),
        }
    }
}

/// A SCSI Response (RFC 7143 §11.4), with the command completed at the target
/// (iSCSI response 0x00).
#[derive(Clone, Copy, Debug)]
pub struct ScsiResponse {
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// SCSI status.
    pub status: u8,
    /// Residual of the command.
    pub residual: Residual,
    /// ExpDataSN: R2T and Data-In PDUs sent for the command (0 when there were none).
    pub exp_data_sn: u32,
    /// Sequence numbers.
    pub seq: Seq,
}

impl ScsiResponse {
    /// Appends the PDU with `sense` (empty for none) as its data segment, behind the
    /// 2-byte SenseLength prefix (RFC 7143 §11.4.7.2).
    pub fn emit(&self, out: &mut Vec<u8>, sense: &[u8], framing: &Framing) {
        let (rflags, count) = self.residual.flags_and_count();
        let mut h = Out::new(op::SCSI_RESP, flag::FINAL | rflags);
        h.u8(2, 0)
            .u8(3, self.status)
            .itt(self.itt)
            .u32(AT_WORD9, self.exp_data_sn)
            .u32(AT_WORD11, count);
        self.seq.put(&mut h);
        if sense.is_empty() {
            h.emit(out, &[], framing);
        } else {
            let len = u16::try_from(sense.len()).unwrap_or(u16::MAX);
            let mut seg = Vec::with_capacity(2 + sense.len());
            seg.extend_from_slice(&len.to_be_bytes());
            seg.extend_from_slice(&sense[..usize::from(len)]);
            h.emit(out, &seg, framing);
        }
    }
}

/// A SCSI Data-In (RFC 7143 §11.7), optionally carrying the command's status (S bit).
#[derive(Clone, Copy, Debug)]
pub struct DataIn {
    /// F: the last PDU of its sequence (burst).
    pub final_bit: bool,
    /// The command's status and residual, sent in this (last) PDU.
    pub status: Option<(u8, Residual)>,
    /// The LUN field of the command.
    pub lun_raw: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset of the data segment.
    pub buffer_offset: u32,
    /// Sequence numbers; StatSN is meaningful only with `status` (0 without).
    pub seq: Seq,
}

impl DataIn {
    /// Appends the PDU with `data` as its data segment.
    pub fn emit(&self, out: &mut Vec<u8>, data: &[u8], framing: &Framing) {
        let mut flags = if self.final_bit { flag::FINAL } else { 0 };
        let mut h = Out::new(op::DATA_IN, 0);
        if let Some((status, residual)) = self.status {
            let (rflags, count) = residual.flags_and_count();
            flags |= flag::STATUS | rflags;
            h.u8(3, status).u32(AT_WORD11, count);
        }
        h.u8(1, flags)
            .lun(self.lun_raw)
            .itt(self.itt)
            .u32(AT_WORD5, RESERVED_TAG)
            .u32(AT_WORD9, self.data_sn)
            .u32(AT_WORD10, self.buffer_offset);
        self.seq.put(&mut h);
        h.emit(out, data, framing);
    }
}

/// A Ready To Transfer (RFC 7143 §11.8).
#[derive(Clone, Copy, Debug)]
pub struct R2t {
    /// The LUN field of the command.
    pub lun_raw: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag the Data-Out will carry.
    pub ttt: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset requested.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_len: u32,
    /// Sequence numbers (StatSN is the current one: an R2T does not take one).
    pub seq: Seq,
}

impl R2t {
    /// Appends the PDU (it has no data segment).
    pub fn emit(&self, out: &mut Vec<u8>, framing: &Framing) {
        let mut h = Out::new(op::R2T, flag::FINAL);
        h.lun(self.lun_raw)
            .itt(self.itt)
            .u32(AT_WORD5, self.ttt)
            .u32(AT_WORD9, self.r2t_sn)
            .u32(AT_WORD10, self.buffer_offset)
            .u32(AT_WORD11, self.desired_len);
        self.seq.put(&mut h);
        h.emit(out, &[], framing);
    }
}

/// A NOP-In (RFC 7143 §11.19): an answer to a NOP-Out, or our own ping.
#[derive(Clone, Copy, Debug)]
pub struct NopIn {
    /// The LUN field (echoed from the NOP-Out).
    pub lun_raw: u64,
    /// Initiator Task Tag: of the NOP-Out answered, or reserved for a ping.
    pub itt: u32,
    /// Target Transfer Tag: reserved for an answer, ours for a ping.
    pub ttt: u32,
    /// Sequence numbers.
    pub seq: Seq,
}

impl NopIn {
    /// Appends the PDU with `data` (the ping data echoed) as its data segment.
    pub fn emit(&self, out: &mut Vec<u8>, data: &[u8], framing: &Framing) {
        let mut h = Out::new(op::NOP_IN, flag::FINAL);
        h.lun(self.lun_raw).itt(self.itt).u32(AT_WORD5, self.ttt);
        self.seq.put(&mut h);
        h.emit(out, data, framing);
    }
}

/// A Reject (RFC 7143 §11.17).
#[derive(Clone, Copy, Debug)]
pub struct Reject {
    /// The reason (see [`super::reject`]).
    pub reason: u8,
    /// Sequence numbers.
    pub seq: Seq,
}

impl Reject {
    /// Appends the PDU with the rejected PDU's header as its data segment.
    pub fn emit(&self, out: &mut Vec<u8>, rejected: &[u8; BHS_LEN], framing: &Framing) {
        let mut h = Out::new(op::REJECT, flag::FINAL);
        h.u8(2, self.reason).itt(RESERVED_TAG);
        self.seq.put(&mut h);
        h.emit(out, rejected, framing);
    }
}

/// A Task Management Function Response (RFC 7143 §11.6).
#[derive(Clone, Copy, Debug)]
pub struct TaskMgmtResponse {
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// The response (see [`tmf_response`]).
    pub response: u8,
    /// Sequence numbers.
    pub seq: Seq,
}

impl TaskMgmtResponse {
    /// Appends the PDU (it has no data segment).
    pub fn emit(&self, out: &mut Vec<u8>, framing: &Framing) {
        let mut h = Out::new(op::TASK_MGMT_RESP, flag::FINAL);
        h.u8(2, self.response).itt(self.itt);
        self.seq.put(&mut h);
        h.emit(out, &[], framing);
    }
}

/// A Text Response (RFC 7143 §11.11).
#[derive(Clone, Copy, Debug)]
pub struct TextResponse {
    /// F: the last PDU of the response.
    pub final_bit: bool,
    /// C: more response text follows.
    pub cont: bool,
    /// The LUN field (echoed from the request).
    pub lun_raw: u64,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// Target Transfer Tag: ours while more is to come, reserved in the last PDU.
    pub ttt: u32,
    /// Sequence numbers.
    pub seq: Seq,
}

impl TextResponse {
    /// Appends the PDU with `data` (key=value text) as its data segment.
    pub fn emit(&self, out: &mut Vec<u8>, data: &[u8], framing: &Framing) {
        let mut flags = 0;
        if self.final_bit {
            flags |= flag::FINAL;
        }
        if self.cont {
            flags |= flag::CONTINUE;
        }
        let mut h = Out::new(op::TEXT_RESP, flags);
        h.lun(self.lun_raw).itt(self.itt).u32(AT_WORD5, self.ttt);
        self.seq.put(&mut h);
        h.emit(out, data, framing);
    }
}

/// A Login Response (RFC 7143 §11.13); Version-max and Version-active are 0.
#[derive(Clone, Copy, Debug)]
pub struct LoginResponse {
    /// T: the target goes to the next stage.
    pub transit: bool,
    /// C: more response text follows.
    pub cont: bool,
    /// CSG: current stage.
    pub csg: u8,
    /// NSG: next stage.
    pub nsg: u8,
    /// ISID of the request.
    pub isid: [u8; 6],
    /// TSIH: the session's, once it exists.
    pub tsih: u16,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// Status class and detail (RFC 7143 §11.13.5).
    pub status: (u8, u8),
    /// Sequence numbers.
    pub seq: Seq,
}

impl LoginResponse {
    /// Appends the PDU with `text` as its data segment, framed as login PDUs are
    /// ([`Framing::LOGIN`]: no digests, whatever is being negotiated).
    pub fn emit(&self, out: &mut Vec<u8>, text: &[u8]) {
        let mut flags =
            ((self.csg << flag::CSG_SHIFT) & flag::CSG_MASK) | (self.nsg & flag::NSG_MASK);
        if self.transit {
            flags |= flag::TRANSIT;
        }
        if self.cont {
            flags |= flag::CONTINUE;
        }
        let mut h = Out::new(op::LOGIN_RESP, flags);
        h.0[8..14].copy_from_slice(&self.isid);
        h.u16(14, self.tsih)
            .itt(self.itt)
            .u8(36, self.status.0)
            .u8(37, self.status.1);
        self.seq.put(&mut h);
        h.emit(out, text, &Framing::LOGIN);
    }
}

/// A Logout Response (RFC 7143 §11.15).
#[derive(Clone, Copy, Debug)]
pub struct LogoutResponse {
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// The response (see [`logout_response`]).
    pub response: u8,
    /// DefaultTime2Wait, seconds.
    pub time2wait_secs: u16,
    /// DefaultTime2Retain, seconds.
    pub time2retain_secs: u16,
    /// Sequence numbers.
    pub seq: Seq,
}

impl LogoutResponse {
    /// Appends the PDU (it has no data segment).
    pub fn emit(&self, out: &mut Vec<u8>, framing: &Framing) {
        let mut h = Out::new(op::LOGOUT_RESP, flag::FINAL);
        h.u8(2, self.response)
            .itt(self.itt)
            .u16(AT_WORD10, self.time2wait_secs)
            .u16(AT_WORD10 + 2, self.time2retain_secs);
        self.seq.put(&mut h);
        h.emit(out, &[], framing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::decode;

    const F: Framing = Framing {
        header_digest: false,
        data_digest: false,
        max_recv_data: 262_144,
    };
    const SEQ: Seq = Seq {
        stat_sn: 0x0102_0304,
        exp_cmd_sn: 0x1112_1314,
        max_cmd_sn: 0x2122_2324,
    };

    fn one(out: &[u8]) -> (Bhs, Vec<u8>) {
        let (p, used) = decode(out, &F).unwrap().unwrap();
        assert_eq!(used, out.len());
        (p.bhs, p.data.to_vec())
    }

    fn seq_of(b: &Bhs) -> [u8; 12] {
        let mut s = [0u8; 12];
        s.copy_from_slice(&b.0[24..36]);
        s
    }

    const SEQ_BYTES: [u8; 12] = [1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x21, 0x22, 0x23, 0x24];

    #[test]
    fn scsi_response_places_status_residual_and_sense() {
        let mut out = Vec::new();
        ScsiResponse {
            itt: 7,
            status: 2,
            residual: Residual::Under(512),
            exp_data_sn: 3,
            seq: SEQ,
        }
        .emit(&mut out, &[0x70, 0, 5], &F);
        let (b, data) = one(&out);
        assert_eq!(b.0[0], op::SCSI_RESP);
        assert_eq!(b.0[1], 0x80 | 0x02);
        assert_eq!((b.0[2], b.0[3], b.itt()), (0, 2, 7));
        assert_eq!(seq_of(&b), SEQ_BYTES);
        assert_eq!(&b.0[36..40], &3u32.to_be_bytes());
        assert_eq!(&b.0[44..48], &512u32.to_be_bytes());
        assert_eq!(data, [0, 3, 0x70, 0, 5]);
    }

    #[test]
    fn data_in_with_and_without_status() {
        let mut out = Vec::new();
        let mut d = DataIn {
            final_bit: true,
            status: Some((0, Residual::Over(8))),
            lun_raw: 0x0001_0000_0000_0000,
            itt: 9,
            data_sn: 4,
            buffer_offset: 1024,
            seq: SEQ,
        };
        d.emit(&mut out, b"abcd", &F);
        let (b, data) = one(&out);
        assert_eq!(b.0[1], 0x80 | 0x04 | 0x01);
        assert_eq!(b.lun_raw(), 0x0001_0000_0000_0000);
        assert_eq!(&b.0[20..24], &RESERVED_TAG.to_be_bytes());
        assert_eq!(&b.0[36..40], &4u32.to_be_bytes());
        assert_eq!(&b.0[40..44], &1024u32.to_be_bytes());
        assert_eq!(&b.0[44..48], &8u32.to_be_bytes());
        assert_eq!(data, b"abcd");
        out.clear();
        d.status = None;
        d.final_bit = false;
        d.emit(&mut out, b"abcd", &F);
        let (b, _) = one(&out);
        assert_eq!((b.0[1], b.0[3]), (0, 0));
        assert_eq!(&b.0[44..48], &[0; 4]);
    }

    #[test]
    fn r2t_nop_in_reject_tmf_text_logout_layouts() {
        let mut out = Vec::new();
        R2t {
            lun_raw: 0,
            itt: 1,
            ttt: 2,
            r2t_sn: 3,
            buffer_offset: 4,
            desired_len: 5,
            seq: SEQ,
        }
        .emit(&mut out, &F);
        let (b, _) = one(&out);
        assert_eq!((b.0[0], b.0[1]), (op::R2T, 0x80));
        let words: Vec<u32> = (20..48)
            .step_by(4)
            .map(|at| u32::from_be_bytes(b.0[at..at + 4].try_into().unwrap()))
            .collect();
        assert_eq!(words, [2, 0x0102_0304, 0x1112_1314, 0x2122_2324, 3, 4, 5]);

        out.clear();
        NopIn {
            lun_raw: 0,
            itt: RESERVED_TAG,
            ttt: 6,
            seq: SEQ,
        }
        .emit(&mut out, b"", &F);
        let (b, _) = one(&out);
        assert_eq!(
            (b.0[0], b.itt(), &b.0[20..24]),
            (op::NOP_IN, RESERVED_TAG, &6u32.to_be_bytes()[..])
        );

        out.clear();
        let rejected = [0x55u8; BHS_LEN];
        Reject {
            reason: 9,
            seq: SEQ,
        }
        .emit(&mut out, &rejected, &F);
        let (b, data) = one(&out);
        assert_eq!(
            (b.0[0], b.0[1], b.0[2], b.itt()),
            (op::REJECT, 0x80, 9, RESERVED_TAG)
        );
        assert_eq!(data, rejected);

        out.clear();
        TaskMgmtResponse {
            itt: 8,
            response: tmf_response::NO_LUN,
            seq: SEQ,
        }
        .emit(&mut out, &F);
        let (b, _) = one(&out);
        assert_eq!((b.0[0], b.0[2], b.itt()), (op::TASK_MGMT_RESP, 2, 8));
        assert_eq!(seq_of(&b), SEQ_BYTES);

        out.clear();
        TextResponse {
            final_bit: false,
            cont: true,
            lun_raw: 0,
            itt: 10,
            ttt: 11,
            seq: SEQ,
        }
        .emit(&mut out, b"a=b\0", &F);
        let (b, _) = one(&out);
        assert_eq!((b.0[0], b.0[1]), (op::TEXT_RESP, 0x40));

        out.clear();
        LogoutResponse {
            itt: 12,
            response: logout_response::CLOSED,
            time2wait_secs: 2,
            time2retain_secs: 20,
            seq: SEQ,
        }
        .emit(&mut out, &F);
        let (b, _) = one(&out);
        assert_eq!((b.0[0], b.0[1], b.0[2]), (op::LOGOUT_RESP, 0x80, 0));
        assert_eq!(&b.0[40..44], &[0, 2, 0, 20]);
    }

    #[test]
    fn login_response_stages_and_status() {
        let mut out = Vec::new();
        LoginResponse {
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            isid: [0x80, 1, 2, 3, 4, 5],
            tsih: 0x22,
            itt: 1,
            status: (2, 1),
            seq: SEQ,
        }
        .emit(&mut out, b"k=v\0");
        let (b, data) = one(&out);
        assert_eq!((b.0[0], b.0[1]), (op::LOGIN_RESP, 0x80 | (1 << 2) | 3));
        assert_eq!(&b.0[8..16], &[0x80, 1, 2, 3, 4, 5, 0, 0x22]);
        assert_eq!((b.0[36], b.0[37]), (2, 1));
        assert_eq!(seq_of(&b), SEQ_BYTES);
        assert_eq!(Seq::parse(&b), SEQ);
        assert_eq!(data, b"k=v\0");
    }
}
