//! The iSCSI PDU codec (RFC 7143 §11): Basic Header Segment, AHS, data segment, digests.
//!
//! Decoding borrows a [`RawPdu`] from the receive buffer; "not enough bytes yet" is `Ok(None)`.
//! [`request`] turns its header into a typed view of the initiator PDU it carries, with named
//! fields and flags; [`response`] builds every target PDU from named fields and writes it in
//! place into an output buffer. Byte offsets of the Basic Header Segment appear only in this
//! module and its children. No I/O happens here.
// Wire fields are exact-width integers: conversions go through `try_from`, never `as`
// (STYLE.md §3), and these lints keep it so.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod digest;
pub mod request;
pub mod response;
pub mod serial;
pub mod text;

pub use request::Request;
pub use response::{Residual, Seq};
pub use serial::SerialNumber;

use thiserror::Error;

/// Length of the Basic Header Segment (RFC 7143 §11.2.1).
pub const BHS_LEN: usize = 48;

/// The "reserved" tag value (RFC 7143 §11.2.1.8 and elsewhere).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Values RFC 7143 §13 gives a key when login does not negotiate it, where the data plane
/// relies on them: before login ends, and as the starting point of negotiation.
pub mod rfc_default {
    /// MaxRecvDataSegmentLength (RFC 7143 §13.12): also the most a Login PDU may carry
    /// before the key is negotiated, in either direction.
    pub const MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;
    /// MaxBurstLength (RFC 7143 §13.13).
    pub const MAX_BURST_LENGTH: u32 = 262_144;
    /// FirstBurstLength (RFC 7143 §13.14).
    pub const FIRST_BURST_LENGTH: u32 = 65_536;
}

/// Flag bits of BHS bytes 0 and 1 (RFC 7143 §11.2.1.1 and the sections of each PDU).
///
/// The same bit has different names in different PDUs; each constant names the PDUs it
/// belongs to.
pub mod flag {
    /// Byte 0: the I (immediate delivery) bit of initiator PDUs (§11.2.1.1).
    pub const IMMEDIATE: u8 = 0x40;
    /// Byte 0: the opcode bits (§11.2.1.2).
    pub const OPCODE_MASK: u8 = 0x3f;
    /// Byte 1: F (final) of most PDUs; T (transit) of Login PDUs (§11.12.2, §11.13.1).
    pub const FINAL: u8 = 0x80;
    /// Byte 1 of a Login PDU: T (transit to the next stage, §11.12.2).
    pub const TRANSIT: u8 = 0x80;
    /// Byte 1 of Login and Text PDUs: C (continue, §11.10.2, §11.12.3).
    pub const CONTINUE: u8 = 0x40;
    /// Byte 1 of a Login PDU: the CSG field, two bits at shift [`CSG_SHIFT`] (§11.12.4).
    pub const CSG_MASK: u8 = 0x0c;
    /// Byte 1 of a Login PDU: where CSG starts.
    pub const CSG_SHIFT: u8 = 2;
    /// Byte 1 of a Login PDU: the NSG field (§11.12.4).
    pub const NSG_MASK: u8 = 0x03;
    /// Byte 1 of a SCSI Command: R (data will be read from the target, §11.3.1).
    pub const READ: u8 = 0x40;
    /// Byte 1 of a SCSI Command: W (data will be written to the target, §11.3.1).
    pub const WRITE: u8 = 0x20;
    /// Byte 1 of a SCSI Command: the task attribute field (ATTR, §11.3.1).
    pub const ATTR_MASK: u8 = 0x07;
    /// Byte 1 of a Task Management or Logout request: the function or reason code
    /// (§11.5.1, §11.14.1).
    pub const CODE_MASK: u8 = 0x7f;
    /// Byte 1 of a Data-In: A (acknowledge, ERL > 0 only, §11.7.2).
    pub const ACKNOWLEDGE: u8 = 0x40;
    /// Byte 1 of a SCSI Response or Data-In: O (residual overflow, §11.4.5.1, §11.7.5).
    pub const OVERFLOW: u8 = 0x04;
    /// Byte 1 of a SCSI Response or Data-In: U (residual underflow).
    pub const UNDERFLOW: u8 = 0x02;
    /// Byte 1 of a Data-In: S (the PDU carries the command's status, §11.7.3).
    pub const STATUS: u8 = 0x01;
}

/// Initiator opcodes (RFC 7143 §11.2.1.2).
pub mod op {
    /// NOP-Out.
    pub const NOP_OUT: u8 = 0x00;
    /// SCSI Command.
    pub const SCSI_CMD: u8 = 0x01;
    /// SCSI Task Management Function Request.
    pub const TASK_MGMT: u8 = 0x02;
    /// Login Request.
    pub const LOGIN: u8 = 0x03;
    /// Text Request.
    pub const TEXT: u8 = 0x04;
    /// SCSI Data-Out.
    pub const DATA_OUT: u8 = 0x05;
    /// Logout Request.
    pub const LOGOUT: u8 = 0x06;
    /// SNACK Request.
    pub const SNACK: u8 = 0x10;
    /// NOP-In.
    pub const NOP_IN: u8 = 0x20;
    /// SCSI Response.
    pub const SCSI_RESP: u8 = 0x21;
    /// Task Management Function Response.
    pub const TASK_MGMT_RESP: u8 = 0x22;
    /// Login Response.
    pub const LOGIN_RESP: u8 = 0x23;
    /// Text Response.
    pub const TEXT_RESP: u8 = 0x24;
    /// SCSI Data-In.
    pub const DATA_IN: u8 = 0x25;
    /// Logout Response.
    pub const LOGOUT_RESP: u8 = 0x26;
    /// Ready To Transfer.
    pub const R2T: u8 = 0x31;
    /// Asynchronous Message.
    pub const ASYNC: u8 = 0x32;
    /// Reject.
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject {
    /// Data (payload) digest error.
    pub const DATA_DIGEST: u8 = 0x02;
    /// SNACK Reject.
    pub const SNACK: u8 = 0x03;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x04;
    /// Command not supported.
    pub const CMD_NOT_SUPPORTED: u8 = 0x05;
    /// Immediate command reject: too many immediate commands.
    pub const IMMEDIATE_CMD: u8 = 0x06;
    /// Task in progress.
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    /// Invalid data ack.
    pub const INVALID_DATA_ACK: u8 = 0x08;
    /// Invalid PDU field.
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    /// Long operation reject: out of resources.
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    /// Waiting for Logout.
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Why bytes from the wire could not be decoded into a PDU.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PduError {
    /// The opcode is not one an initiator may send.
    #[error("unknown initiator opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// The data segment is larger than we declared we accept.
    #[error("data segment of {len} bytes exceeds the {max} we accept")]
    DataSegmentTooLong {
        /// Length announced in the header.
        len: u32,
        /// Our limit.
        max: u32,
    },
    /// The AHS is larger than any AHS we accept.
    #[error("additional header segments of {0} bytes exceed the limit")]
    AhsTooLong(usize),
    /// A header digest did not match.
    #[error("header digest mismatch")]
    HeaderDigest,
}

/// Decoded Basic Header Segment fields common to all PDUs, plus the raw header.
#[derive(Clone, Debug)]
pub struct Bhs(pub [u8; BHS_LEN]);

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

// Field offsets of the BHS (RFC 7143 §11.2.1), shared by every PDU that has the field.
const AT_FLAGS: usize = 1;
const AT_LUN: usize = 8;
const AT_ITT: usize = 16;
/// Target Transfer Tag, Referenced Task Tag, Expected Data Transfer Length or CID.
const AT_WORD5: usize = 20;
/// CmdSN in initiator PDUs, StatSN in target PDUs.
const AT_SN: usize = 24;
/// ExpStatSN in initiator PDUs, ExpCmdSN in target PDUs.
const AT_EXP_SN: usize = 28;
/// MaxCmdSN in target PDUs; RefCmdSN of a Task Management request; CDB start.
const AT_WORD8: usize = 32;
/// DataSN, R2TSN, ExpDataSN or ExpDataSN of a Task Management request.
const AT_WORD9: usize = 36;
/// Buffer Offset, or Time2Wait/Time2Retain of a Logout Response.
const AT_WORD10: usize = 40;
/// Residual Count or Desired Data Transfer Length.
const AT_WORD11: usize = 44;

impl Bhs {
    /// Opcode without the immediate bit.
    pub fn opcode(&self) -> u8 {
        self.0[0] & flag::OPCODE_MASK
    }
    /// The I (immediate delivery) bit.
    pub fn immediate(&self) -> bool {
        self.0[0] & flag::IMMEDIATE != 0
    }
    /// Byte 1 (F bit and opcode-specific flags).
    pub fn flags(&self) -> u8 {
        self.0[AT_FLAGS]
    }
    /// The F (final) bit.
    pub fn final_bit(&self) -> bool {
        self.0[AT_FLAGS] & flag::FINAL != 0
    }
    /// TotalAHSLength in bytes.
    pub fn ahs_len(&self) -> usize {
        usize::from(self.0[4]) * 4
    }
    /// DataSegmentLength in bytes (without padding).
    pub fn data_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }
    /// The LUN field as sent (8 bytes, SAM format).
    pub fn lun_raw(&self) -> u64 {
        be64(&self.0, AT_LUN)
    }
    /// Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        be32(&self.0, AT_ITT)
    }
    /// The CmdSN of an initiator PDU that carries one (every request but Data-Out and
    /// SNACK, RFC 7143 §11.2.1.5).
    pub fn cmd_sn(&self) -> u32 {
        be32(&self.0, AT_SN)
    }
    /// The ExpStatSN of an initiator PDU.
    pub fn exp_stat_sn(&self) -> u32 {
        be32(&self.0, AT_EXP_SN)
    }
    /// The Target Transfer Tag of a PDU that carries one (NOP-Out/In, Text, Data-Out, R2T).
    pub fn target_transfer_tag(&self) -> u32 {
        be32(&self.0, AT_WORD5)
    }
    /// A big-endian u32 at byte offset `at` of the header; offsets stay inside `pdu`.
    fn u32_at(&self, at: usize) -> u32 {
        be32(&self.0, at)
    }
    /// A big-endian u16 at byte offset `at` of the header.
    fn u16_at(&self, at: usize) -> u16 {
        be16(&self.0, at)
    }
    /// The byte at offset `at` of the header.
    fn u8_at(&self, at: usize) -> u8 {
        self.0[at]
    }
}

/// The LUN field codec lives in `crate::lun`, below both `pdu` and `scsi`.
pub use crate::lun::{decode as decode_lun, encode as encode_lun};

/// One PDU as received, borrowing the receive buffer: header, extended CDB, data segment.
#[derive(Debug)]
pub struct RawPdu<'a> {
    /// The Basic Header Segment.
    pub bhs: Bhs,
    /// Extended CDB bytes from an AHS of type 1 (CDB bytes 16 onwards), if present.
    pub ext_cdb: &'a [u8],
    /// The data segment without padding.
    pub data: &'a [u8],
    /// True when a data digest was negotiated and did not match.
    pub data_digest_bad: bool,
}

/// Sizes and digests that framing depends on, as negotiated for a connection.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    /// HeaderDigest=CRC32C is in effect.
    pub header_digest: bool,
    /// DataDigest=CRC32C is in effect.
    pub data_digest: bool,
    /// The largest data segment we accept.
    pub max_recv_data: u32,
}

impl Framing {
    /// Framing during login: never digested (digests start after the final Login
    /// Response, RFC 7143 §13.1), and data segments of the RFC default size.
    pub const LOGIN: Framing = Framing {
        header_digest: false,
        data_digest: false,
        max_recv_data: rfc_default::MAX_RECV_DATA_SEGMENT_LENGTH,
    };
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Tries to take one whole PDU from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the PDU and the number of bytes it used.
pub fn decode<'a>(
    buf: &'a [u8],
    framing: &Framing,
) -> Result<Option<(RawPdu<'a>, usize)>, PduError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let mut hdr = [0u8; BHS_LEN];
    hdr.copy_from_slice(&buf[..BHS_LEN]);
    let bhs = Bhs(hdr);
    let ahs_len = bhs.ahs_len();
    if ahs_len > crate::limits::AHS_BYTES_MAX {
        return Err(PduError::AhsTooLong(ahs_len));
    }
    let data_len = bhs.data_len();
    // Login PDUs may carry the RFC default before MaxRecvDataSegmentLength is negotiated.
    let max = framing
        .max_recv_data
        .max(rfc_default::MAX_RECV_DATA_SEGMENT_LENGTH);
    if data_len > max {
        return Err(PduError::DataSegmentTooLong { len: data_len, max });
    }
    // At most 2^24 - 1 (three bytes on the wire), so it fits any usize we build for.
    let Ok(data_len) = usize::try_from(data_len) else {
        return Err(PduError::DataSegmentTooLong { len: data_len, max });
    };
    let hd = if framing.header_digest { 4 } else { 0 };
    let dd = if framing.data_digest && data_len > 0 {
        4
    } else {
        0
    };
    let total = BHS_LEN + ahs_len + hd + data_len + pad4(data_len) + dd;
    if buf.len() < total {
        return Ok(None);
    }
    if framing.header_digest {
        // Digests travel least-significant byte first (RFC 3720 Appendix B.4 shows the order).
        let want = le32(buf, BHS_LEN + ahs_len);
        if digest::crc32c(&buf[..BHS_LEN + ahs_len]) != want {
            return Err(PduError::HeaderDigest);
        }
    }
    let mut ext_cdb: &[u8] = &[];
    // AHS walk (RFC 7143 §11.2.2): 2-byte length, 1-byte type, then the AHS-specific bytes.
    let mut at = BHS_LEN;
    let ahs_end = BHS_LEN + ahs_len;
    while at + 4 <= ahs_end {
        let len = usize::from(be16(buf, at));
        let kind = buf[at + 2];
        let body_start = at + 4;
        let body_end = (at + 3 + len).min(ahs_end);
        if kind == 1 && body_start <= body_end && ext_cdb.is_empty() {
            ext_cdb = &buf[body_start..body_end];
        }
        at += 3 + len + pad4(3 + len);
    }
    let data_start = ahs_end + hd;
    let data = &buf[data_start..data_start + data_len];
    let mut data_digest_bad = false;
    if dd != 0 {
        let padded_end = data_start + data_len + pad4(data_len);
        let want = le32(buf, padded_end);
        if digest::crc32c(&buf[data_start..padded_end]) != want {
            data_digest_bad = true;
        }
    }
    Ok(Some((
        RawPdu {
            bhs,
            ext_cdb,
            data,
            data_digest_bad,
        },
        total,
    )))
}

/// A PDU header under construction; fields are set by byte offset per RFC 7143 §11.
///
/// The target's PDUs are built from named fields by [`response`]; the offset setters stay
/// public for test initiators that write requests byte by byte.
#[derive(Clone)]
pub struct Out(pub [u8; BHS_LEN]);

impl Out {
    /// A zeroed header with the given opcode and flags byte.
    pub fn new(opcode: u8, flags: u8) -> Self {
        let mut h = [0u8; BHS_LEN];
        h[0] = opcode;
        h[1] = flags;
        Self(h)
    }
    /// Sets a big-endian u32 at `at`.
    pub fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self
    }
    /// Sets a big-endian u16 at `at`.
    pub fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }
    /// Sets a byte at `at`.
    pub fn u8(&mut self, at: usize, v: u8) -> &mut Self {
        self.0[at] = v;
        self
    }
    /// Sets the 8-byte LUN field.
    pub fn lun(&mut self, raw: u64) -> &mut Self {
        self.0[AT_LUN..AT_LUN + 8].copy_from_slice(&raw.to_be_bytes());
        self
    }
    /// Sets the ITT.
    pub fn itt(&mut self, itt: u32) -> &mut Self {
        self.u32(AT_ITT, itt)
    }
    /// Appends this header and `data` to `out` as one PDU, with padding and digests.
    pub fn emit(&mut self, out: &mut Vec<u8>, data: &[u8], framing: &Framing) {
        let len = u32::try_from(data.len()).unwrap_or(0) & 0x00ff_ffff;
        let lb = len.to_be_bytes();
        self.0[4] = 0;
        self.0[5..8].copy_from_slice(&lb[1..4]);
        out.extend_from_slice(&self.0);
        if framing.header_digest {
            out.extend_from_slice(&digest::crc32c(&self.0).to_le_bytes());
        }
        if !data.is_empty() {
            out.extend_from_slice(data);
            let pad = [0u8; 3];
            let p = &pad[..pad4(data.len())];
            out.extend_from_slice(p);
            if framing.data_digest {
                out.extend_from_slice(&digest::crc32c_parts(&[data, p]).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(hd: bool, dd: bool) -> Framing {
        Framing {
            header_digest: hd,
            data_digest: dd,
            max_recv_data: 262_144,
        }
    }

    #[test]
    fn round_trips_with_and_without_digests() {
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = framing(hd, dd);
            let mut out = Vec::new();
            let mut h = Out::new(op::NOP_OUT | 0x40, 0x80);
            h.itt(7).u32(24, 99);
            h.emit(&mut out, b"hello", &f);
            let (pdu, used) = decode(&out, &f).unwrap().unwrap();
            assert_eq!(used, out.len());
            assert_eq!(pdu.bhs.opcode(), op::NOP_OUT);
            assert!(pdu.bhs.immediate());
            assert_eq!(pdu.bhs.itt(), 7);
            assert_eq!(pdu.data, b"hello");
            assert!(!pdu.data_digest_bad);
            // Any prefix is "not enough yet".
            for cut in 0..out.len() {
                assert!(decode(&out[..cut], &f).unwrap().is_none());
            }
        }
    }

    #[test]
    fn detects_digest_errors() {
        let f = framing(true, true);
        let mut out = Vec::new();
        Out::new(op::NOP_OUT, 0x80).emit(&mut out, b"data", &f);
        let mut bad_data = out.clone();
        bad_data[BHS_LEN + 4] ^= 1;
        assert!(decode(&bad_data, &f).unwrap().unwrap().0.data_digest_bad);
        let mut bad_hdr = out;
        bad_hdr[20] ^= 1;
        assert_eq!(decode(&bad_hdr, &f).unwrap_err(), PduError::HeaderDigest);
    }

    #[test]
    fn refuses_oversized_segments() {
        let f = framing(false, false);
        let mut h = [0u8; BHS_LEN];
        h[5] = 0x10; // 1 MiB
        assert!(matches!(
            decode(&h, &f),
            Err(PduError::DataSegmentTooLong { .. })
        ));
    }

    #[test]
    fn decoding_random_bytes_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = vec![0u8; 600];
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x.to_le_bytes()[0];
            }
            // Keep segment lengths small often enough to reach the AHS and digest paths.
            if round % 2 == 0 {
                buf[5] = 0;
                buf[6] = 0;
                buf[4] %= 8;
            }
            let len = usize::try_from(x % 600).unwrap();
            for f in [framing(false, false), framing(true, true)] {
                let _ = decode(&buf[..len], &f);
            }
        }
    }
}
