//! A minimal, independent codec for the 48-byte Basic Header Segment (RFC 7143 §11.2) of
//! every PDU an initiator sends or receives, plus data-segment framing (padding and CRC32C
//! digests, §11.2.4 and §13.1) over a blocking stream.
//!
//! It deliberately shares no code with the target's `pdu` module: the two codecs are written
//! from the RFC separately so that each checks the other. Only the PDUs a plain initiator uses
//! are typed; any other opcode decodes to an error, which the session turns into a protocol
//! violation.

use std::io::{Read, Write};

use super::crc32c::crc32c;
use super::Error;

/// Length of the Basic Header Segment (RFC 7143 §11.2.1).
pub const BHS_LEN: usize = 48;

/// The reserved tag value (RFC 7143 §11.2.1.8 and §11.9.4): "no task" / "no transfer tag".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Initiator opcodes (RFC 7143 §11.2.1.2).
pub mod opcode {
    /// NOP-Out.
    pub const NOP_OUT: u8 = 0x00;
    /// SCSI Command.
    pub const SCSI_COMMAND: u8 = 0x01;
    /// Login Request.
    pub const LOGIN_REQUEST: u8 = 0x03;
    /// Text Request.
    pub const TEXT_REQUEST: u8 = 0x04;
    /// SCSI Data-Out.
    pub const DATA_OUT: u8 = 0x05;
    /// Logout Request.
    pub const LOGOUT_REQUEST: u8 = 0x06;
    /// NOP-In.
    pub const NOP_IN: u8 = 0x20;
    /// SCSI Response.
    pub const SCSI_RESPONSE: u8 = 0x21;
    /// Login Response.
    pub const LOGIN_RESPONSE: u8 = 0x23;
    /// Text Response.
    pub const TEXT_RESPONSE: u8 = 0x24;
    /// SCSI Data-In.
    pub const DATA_IN: u8 = 0x25;
    /// Logout Response.
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    /// Ready To Transfer.
    pub const R2T: u8 = 0x31;
    /// Asynchronous Message.
    pub const ASYNC_MESSAGE: u8 = 0x32;
    /// Reject.
    pub const REJECT: u8 = 0x3f;
}

/// Login stages (RFC 7143 §11.12.3): the CSG and NSG fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// SecurityNegotiation (0).
    Security,
    /// LoginOperationalNegotiation (1).
    Operational,
    /// FullFeaturePhase (3).
    FullFeature,
}

impl Stage {
    fn bits(self) -> u8 {
        match self {
            Stage::Security => 0,
            Stage::Operational => 1,
            Stage::FullFeature => 3,
        }
    }

    fn from_bits(b: u8) -> Result<Stage, Error> {
        match b & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(Error::Protocol("login stage 2 is reserved".into())),
        }
    }
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Raw 8-byte LUN field.
    pub lun: u64,
    /// Initiator Task Tag; 0xffffffff when answering a target ping.
    pub itt: u32,
    /// Target Transfer Tag; echoes the NOP-In's TTT when answering a ping.
    pub ttt: u32,
    /// CmdSN (not advanced for immediate PDUs).
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows.
    pub final_: bool,
    /// R bit: data flows to the initiator.
    pub read: bool,
    /// W bit: data flows to the target.
    pub write: bool,
    /// Task attribute (0 untagged, 1 simple, ...).
    pub attr: u8,
    /// Raw 8-byte LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length in bytes.
    pub expected_len: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// CDB, zero padded to 16 bytes.
    pub cdb: [u8; 16],
}

/// Login Request (RFC 7143 §11.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// T bit: the initiator is ready to move to `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful only with `transit`).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// Initiator Session ID.
    pub isid: [u8; 6],
    /// Target Session Identifying Handle (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// Text Request (RFC 7143 §11.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    /// I bit.
    pub immediate: bool,
    /// F bit.
    pub final_: bool,
    /// C bit.
    pub cont: bool,
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff to start a new exchange).
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    /// F bit: last PDU of the sequence.
    pub final_: bool,
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN within the sequence.
    pub data_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// I bit.
    pub immediate: bool,
    /// Reason code (0 = close the session).
    pub reason: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// NOP-In (RFC 7143 §11.19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopIn {
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for a target-initiated ping).
    pub itt: u32,
    /// Target Transfer Tag (not 0xffffffff when the target wants an answer).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Response (RFC 7143 §11.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    /// o bit: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u bit: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O bit: residual overflow.
    pub overflow: bool,
    /// U bit: residual underflow.
    pub underflow: bool,
    /// iSCSI service response (0 = command completed at target).
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count.
    pub bidi_residual: u32,
    /// Residual Count.
    pub residual: u32,
}

/// Login Response (RFC 7143 §11.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    /// T bit.
    pub transit: bool,
    /// C bit.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage.
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID echoed.
    pub isid: [u8; 6],
    /// TSIH (assigned in the final response).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status-Class (0 = success).
    pub status_class: u8,
    /// Status-Detail.
    pub status_detail: u8,
}

/// Text Response (RFC 7143 §11.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponse {
    /// F bit.
    pub final_: bool,
    /// C bit.
    pub cont: bool,
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (not 0xffffffff when more text follows).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Data-In (RFC 7143 §11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataIn {
    /// F bit.
    pub final_: bool,
    /// A bit (acknowledge request; only with ErrorRecoveryLevel > 0).
    pub ack: bool,
    /// O bit (valid only with S).
    pub overflow: bool,
    /// U bit (valid only with S).
    pub underflow: bool,
    /// S bit: the PDU carries the command status.
    pub has_status: bool,
    /// SCSI status (valid only with S).
    pub status: u8,
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN (valid only with S).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
    /// Residual Count (valid only with S).
    pub residual: u32,
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    /// Response (0 = closed successfully).
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait.
    pub time2wait: u16,
    /// Time2Retain.
    pub time2retain: u16,
}

/// Ready To Transfer (RFC 7143 §11.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2t {
    /// Raw LUN field.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag to echo in the Data-Out PDUs.
    pub ttt: u32,
    /// StatSN (the next StatSN; not advanced).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
    /// Desired Data Transfer Length.
    pub desired_len: u32,
}

/// Asynchronous Message (RFC 7143 §11.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncMessage {
    /// Raw LUN field.
    pub lun: u64,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent.
    pub event: u8,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1..3.
    pub params: [u16; 3],
}

/// Reject (RFC 7143 §11.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Reason code.
    pub reason: u8,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN/R2TSN.
    pub data_sn: u32,
}

/// A typed Basic Header Segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// NOP-Out.
    NopOut(NopOut),
    /// SCSI Command.
    ScsiCommand(ScsiCommand),
    /// Login Request.
    LoginRequest(LoginRequest),
    /// Text Request.
    TextRequest(TextRequest),
    /// SCSI Data-Out.
    DataOut(DataOut),
    /// Logout Request.
    LogoutRequest(LogoutRequest),
    /// NOP-In.
    NopIn(NopIn),
    /// SCSI Response.
    ScsiResponse(ScsiResponse),
    /// Login Response.
    LoginResponse(LoginResponse),
    /// Text Response.
    TextResponse(TextResponse),
    /// SCSI Data-In.
    DataIn(DataIn),
    /// Logout Response.
    LogoutResponse(LogoutResponse),
    /// R2T.
    R2t(R2t),
    /// Asynchronous Message.
    AsyncMessage(AsyncMessage),
    /// Reject.
    Reject(Reject),
}

/// A Basic Header Segment: the typed opcode-specific part plus the two length fields every
/// PDU carries (RFC 7143 §11.2.1.5 and §11.2.1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bhs {
    /// Opcode-specific fields.
    pub body: Body,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_words: u8,
    /// DataSegmentLength in bytes, without padding.
    pub data_segment_len: u32,
}

fn put32(b: &mut [u8; BHS_LEN], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put16(b: &mut [u8; BHS_LEN], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8; BHS_LEN], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn get32(b: &[u8; BHS_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn get16(b: &[u8; BHS_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn get64(b: &[u8; BHS_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}
fn flag(b: u8, mask: u8) -> bool {
    b & mask != 0
}
fn bit(on: bool, mask: u8) -> u8 {
    if on {
        mask
    } else {
        0
    }
}

impl Bhs {
    /// A header with no AHS for `body` carrying `data_segment_len` bytes of data.
    pub fn new(body: Body, data_segment_len: u32) -> Bhs {
        Bhs {
            body,
            total_ahs_words: 0,
            data_segment_len,
        }
    }

    /// Encodes the 48 header bytes.
    pub fn encode(&self) -> Result<[u8; BHS_LEN], Error> {
        let mut b = [0u8; BHS_LEN];
        if self.data_segment_len > 0x00ff_ffff {
            return Err(Error::Protocol(format!(
                "data segment length {} does not fit 24 bits",
                self.data_segment_len
            )));
        }
        b[4] = self.total_ahs_words;
        let dsl = self.data_segment_len.to_be_bytes();
        b[5..8].copy_from_slice(&dsl[1..4]);
        match &self.body {
            Body::NopOut(p) => {
                b[0] = opcode::NOP_OUT | bit(p.immediate, 0x40);
                b[1] = 0x80;
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.cmd_sn);
                put32(&mut b, 28, p.exp_stat_sn);
            }
            Body::ScsiCommand(p) => {
                b[0] = opcode::SCSI_COMMAND | bit(p.immediate, 0x40);
                b[1] =
                    bit(p.final_, 0x80) | bit(p.read, 0x40) | bit(p.write, 0x20) | (p.attr & 0x07);
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.expected_len);
                put32(&mut b, 24, p.cmd_sn);
                put32(&mut b, 28, p.exp_stat_sn);
                b[32..48].copy_from_slice(&p.cdb);
            }
            Body::LoginRequest(p) => {
                // RFC 7143 §11.12: a Login Request always has the I bit set.
                b[0] = opcode::LOGIN_REQUEST | 0x40;
                b[1] =
                    bit(p.transit, 0x80) | bit(p.cont, 0x40) | (p.csg.bits() << 2) | p.nsg.bits();
                b[2] = p.version_max;
                b[3] = p.version_min;
                b[8..14].copy_from_slice(&p.isid);
                put16(&mut b, 14, p.tsih);
                put32(&mut b, 16, p.itt);
                put16(&mut b, 20, p.cid);
                put32(&mut b, 24, p.cmd_sn);
                put32(&mut b, 28, p.exp_stat_sn);
            }
            Body::TextRequest(p) => {
                b[0] = opcode::TEXT_REQUEST | bit(p.immediate, 0x40);
                b[1] = bit(p.final_, 0x80) | bit(p.cont, 0x40);
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.cmd_sn);
                put32(&mut b, 28, p.exp_stat_sn);
            }
            Body::DataOut(p) => {
                b[0] = opcode::DATA_OUT;
                b[1] = bit(p.final_, 0x80);
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 28, p.exp_stat_sn);
                put32(&mut b, 36, p.data_sn);
                put32(&mut b, 40, p.offset);
            }
            Body::LogoutRequest(p) => {
                b[0] = opcode::LOGOUT_REQUEST | bit(p.immediate, 0x40);
                b[1] = 0x80 | (p.reason & 0x7f);
                put32(&mut b, 16, p.itt);
                put16(&mut b, 20, p.cid);
                put32(&mut b, 24, p.cmd_sn);
                put32(&mut b, 28, p.exp_stat_sn);
            }
            Body::NopIn(p) => {
                b[0] = opcode::NOP_IN;
                b[1] = 0x80;
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
            }
            Body::ScsiResponse(p) => {
                b[0] = opcode::SCSI_RESPONSE;
                b[1] = 0x80
                    | bit(p.bidi_overflow, 0x10)
                    | bit(p.bidi_underflow, 0x08)
                    | bit(p.overflow, 0x04)
                    | bit(p.underflow, 0x02);
                b[2] = p.response;
                b[3] = p.status;
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.snack_tag);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                put32(&mut b, 36, p.exp_data_sn);
                put32(&mut b, 40, p.bidi_residual);
                put32(&mut b, 44, p.residual);
            }
            Body::LoginResponse(p) => {
                b[0] = opcode::LOGIN_RESPONSE;
                b[1] =
                    bit(p.transit, 0x80) | bit(p.cont, 0x40) | (p.csg.bits() << 2) | p.nsg.bits();
                b[2] = p.version_max;
                b[3] = p.version_active;
                b[8..14].copy_from_slice(&p.isid);
                put16(&mut b, 14, p.tsih);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                b[36] = p.status_class;
                b[37] = p.status_detail;
            }
            Body::TextResponse(p) => {
                b[0] = opcode::TEXT_RESPONSE;
                b[1] = bit(p.final_, 0x80) | bit(p.cont, 0x40);
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
            }
            Body::DataIn(p) => {
                b[0] = opcode::DATA_IN;
                b[1] = bit(p.final_, 0x80)
                    | bit(p.ack, 0x40)
                    | bit(p.overflow, 0x04)
                    | bit(p.underflow, 0x02)
                    | bit(p.has_status, 0x01);
                b[3] = p.status;
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                put32(&mut b, 36, p.data_sn);
                put32(&mut b, 40, p.offset);
                put32(&mut b, 44, p.residual);
            }
            Body::LogoutResponse(p) => {
                b[0] = opcode::LOGOUT_RESPONSE;
                b[1] = 0x80;
                b[2] = p.response;
                put32(&mut b, 16, p.itt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                put16(&mut b, 40, p.time2wait);
                put16(&mut b, 42, p.time2retain);
            }
            Body::R2t(p) => {
                b[0] = opcode::R2T;
                b[1] = 0x80;
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, p.itt);
                put32(&mut b, 20, p.ttt);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                put32(&mut b, 36, p.r2t_sn);
                put32(&mut b, 40, p.offset);
                put32(&mut b, 44, p.desired_len);
            }
            Body::AsyncMessage(p) => {
                b[0] = opcode::ASYNC_MESSAGE;
                b[1] = 0x80;
                put64(&mut b, 8, p.lun);
                put32(&mut b, 16, RESERVED_TAG);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                b[36] = p.event;
                b[37] = p.vcode;
                put16(&mut b, 38, p.params[0]);
                put16(&mut b, 40, p.params[1]);
                put16(&mut b, 42, p.params[2]);
            }
            Body::Reject(p) => {
                b[0] = opcode::REJECT;
                b[1] = 0x80;
                b[2] = p.reason;
                put32(&mut b, 16, RESERVED_TAG);
                put32(&mut b, 24, p.stat_sn);
                put32(&mut b, 28, p.exp_cmd_sn);
                put32(&mut b, 32, p.max_cmd_sn);
                put32(&mut b, 36, p.data_sn);
            }
        }
        Ok(b)
    }

    /// Decodes 48 header bytes. Unknown or unsupported opcodes are errors.
    pub fn decode(b: &[u8; BHS_LEN]) -> Result<Bhs, Error> {
        let op = b[0] & 0x3f;
        let immediate = flag(b[0], 0x40);
        let f1 = b[1];
        let total_ahs_words = b[4];
        let data_segment_len = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        let body = match op {
            opcode::NOP_OUT => Body::NopOut(NopOut {
                immediate,
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                cmd_sn: get32(b, 24),
                exp_stat_sn: get32(b, 28),
            }),
            opcode::SCSI_COMMAND => {
                let mut cdb = [0u8; 16];
                cdb.copy_from_slice(&b[32..48]);
                Body::ScsiCommand(ScsiCommand {
                    immediate,
                    final_: flag(f1, 0x80),
                    read: flag(f1, 0x40),
                    write: flag(f1, 0x20),
                    attr: f1 & 0x07,
                    lun: get64(b, 8),
                    itt: get32(b, 16),
                    expected_len: get32(b, 20),
                    cmd_sn: get32(b, 24),
                    exp_stat_sn: get32(b, 28),
                    cdb,
                })
            }
            opcode::LOGIN_REQUEST => {
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&b[8..14]);
                Body::LoginRequest(LoginRequest {
                    transit: flag(f1, 0x80),
                    cont: flag(f1, 0x40),
                    csg: Stage::from_bits(f1 >> 2)?,
                    nsg: Stage::from_bits(f1)?,
                    version_max: b[2],
                    version_min: b[3],
                    isid,
                    tsih: get16(b, 14),
                    itt: get32(b, 16),
                    cid: get16(b, 20),
                    cmd_sn: get32(b, 24),
                    exp_stat_sn: get32(b, 28),
                })
            }
            opcode::TEXT_REQUEST => Body::TextRequest(TextRequest {
                immediate,
                final_: flag(f1, 0x80),
                cont: flag(f1, 0x40),
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                cmd_sn: get32(b, 24),
                exp_stat_sn: get32(b, 28),
            }),
            opcode::DATA_OUT => Body::DataOut(DataOut {
                final_: flag(f1, 0x80),
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                exp_stat_sn: get32(b, 28),
                data_sn: get32(b, 36),
                offset: get32(b, 40),
            }),
            opcode::LOGOUT_REQUEST => Body::LogoutRequest(LogoutRequest {
                immediate,
                reason: f1 & 0x7f,
                itt: get32(b, 16),
                cid: get16(b, 20),
                cmd_sn: get32(b, 24),
                exp_stat_sn: get32(b, 28),
            }),
            opcode::NOP_IN => Body::NopIn(NopIn {
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
            }),
            opcode::SCSI_RESPONSE => Body::ScsiResponse(ScsiResponse {
                bidi_overflow: flag(f1, 0x10),
                bidi_underflow: flag(f1, 0x08),
                overflow: flag(f1, 0x04),
                underflow: flag(f1, 0x02),
                response: b[2],
                status: b[3],
                itt: get32(b, 16),
                snack_tag: get32(b, 20),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                exp_data_sn: get32(b, 36),
                bidi_residual: get32(b, 40),
                residual: get32(b, 44),
            }),
            opcode::LOGIN_RESPONSE => {
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&b[8..14]);
                Body::LoginResponse(LoginResponse {
                    transit: flag(f1, 0x80),
                    cont: flag(f1, 0x40),
                    csg: Stage::from_bits(f1 >> 2)?,
                    nsg: Stage::from_bits(f1)?,
                    version_max: b[2],
                    version_active: b[3],
                    isid,
                    tsih: get16(b, 14),
                    itt: get32(b, 16),
                    stat_sn: get32(b, 24),
                    exp_cmd_sn: get32(b, 28),
                    max_cmd_sn: get32(b, 32),
                    status_class: b[36],
                    status_detail: b[37],
                })
            }
            opcode::TEXT_RESPONSE => Body::TextResponse(TextResponse {
                final_: flag(f1, 0x80),
                cont: flag(f1, 0x40),
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
            }),
            opcode::DATA_IN => Body::DataIn(DataIn {
                final_: flag(f1, 0x80),
                ack: flag(f1, 0x40),
                overflow: flag(f1, 0x04),
                underflow: flag(f1, 0x02),
                has_status: flag(f1, 0x01),
                status: b[3],
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                data_sn: get32(b, 36),
                offset: get32(b, 40),
                residual: get32(b, 44),
            }),
            opcode::LOGOUT_RESPONSE => Body::LogoutResponse(LogoutResponse {
                response: b[2],
                itt: get32(b, 16),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                time2wait: get16(b, 40),
                time2retain: get16(b, 42),
            }),
            opcode::R2T => Body::R2t(R2t {
                lun: get64(b, 8),
                itt: get32(b, 16),
                ttt: get32(b, 20),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                r2t_sn: get32(b, 36),
                offset: get32(b, 40),
                desired_len: get32(b, 44),
            }),
            opcode::ASYNC_MESSAGE => Body::AsyncMessage(AsyncMessage {
                lun: get64(b, 8),
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                event: b[36],
                vcode: b[37],
                params: [get16(b, 38), get16(b, 40), get16(b, 42)],
            }),
            opcode::REJECT => Body::Reject(Reject {
                reason: b[2],
                stat_sn: get32(b, 24),
                exp_cmd_sn: get32(b, 28),
                max_cmd_sn: get32(b, 32),
                data_sn: get32(b, 36),
            }),
            other => return Err(Error::Protocol(format!("unexpected opcode {other:#04x}"))),
        };
        Ok(Bhs {
            body,
            total_ahs_words,
            data_segment_len,
        })
    }
}

/// Encodes a SCSI LUN number as the 8-byte LUN field (SAM-5 §4.7: peripheral device
/// addressing below 256, flat space addressing up to 16383).
pub fn encode_lun(lun: u64) -> Result<u64, Error> {
    if lun < 256 {
        Ok(lun << 48)
    } else if lun < 0x4000 {
        Ok((0x4000 | lun) << 48)
    } else {
        Err(Error::Protocol(format!(
            "lun {lun} needs more than single-level addressing"
        )))
    }
}

/// Bytes of padding that follow `len` data bytes (RFC 7143 §11.2.4: multiples of 4).
pub fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Which digests apply to PDUs on a connection (RFC 7143 §13.1). They are off during the
/// login phase and switched on after it when negotiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    /// CRC32C after the header (and AHS).
    pub header: bool,
    /// CRC32C after the padded data segment.
    pub data: bool,
}

/// One received PDU: header, AHS bytes and the unpadded data segment.
#[derive(Debug, Clone)]
pub struct Pdu {
    /// The decoded header.
    pub bhs: Bhs,
    /// Raw AHS bytes (initiators do not expect any from a target in this subset).
    pub ahs: Vec<u8>,
    /// Data segment without padding.
    pub data: Vec<u8>,
}

/// Writes one PDU (header, optional header digest, data, padding, optional data digest) with a
/// single `write_all`, so PDUs from several threads never interleave if the caller serialises
/// calls.
pub fn write_pdu<W: Write>(
    w: &mut W,
    bhs: &Bhs,
    data: &[u8],
    digests: Digests,
) -> Result<(), Error> {
    let mut hdr = bhs.clone();
    hdr.data_segment_len =
        u32::try_from(data.len()).map_err(|_| Error::Protocol("data segment too long".into()))?;
    let head = hdr.encode()?;
    let pad = pad_len(data.len());
    let mut buf = Vec::with_capacity(BHS_LEN + 8 + data.len() + pad);
    buf.extend_from_slice(&head);
    if digests.header {
        buf.extend_from_slice(&crc32c(&head).to_le_bytes());
    }
    if !data.is_empty() {
        buf.extend_from_slice(data);
        buf.resize(buf.len() + pad, 0);
        if digests.data {
            let start = buf.len() - data.len() - pad;
            let d = crc32c(&buf[start..]);
            buf.extend_from_slice(&d.to_le_bytes());
        }
    }
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one PDU. `data_len_max` bounds the data segment the peer may send (our declared
/// MaxRecvDataSegmentLength); a longer segment is a protocol violation.
pub fn read_pdu<R: Read>(r: &mut R, digests: Digests, data_len_max: u32) -> Result<Pdu, Error> {
    let mut head = [0u8; BHS_LEN];
    r.read_exact(&mut head)?;
    let bhs = Bhs::decode(&head)?;
    let mut ahs = vec![0u8; usize::from(bhs.total_ahs_words) * 4];
    r.read_exact(&mut ahs)?;
    if digests.header {
        let mut d = [0u8; 4];
        r.read_exact(&mut d)?;
        let mut crc_in = head.to_vec();
        crc_in.extend_from_slice(&ahs);
        let want = crc32c(&crc_in);
        let got = u32::from_le_bytes(d);
        if want != got {
            return Err(Error::Protocol(format!(
                "header digest mismatch: got {got:#010x}, computed {want:#010x}"
            )));
        }
    }
    if bhs.data_segment_len > data_len_max {
        return Err(Error::Protocol(format!(
            "data segment of {} bytes exceeds our MaxRecvDataSegmentLength {}",
            bhs.data_segment_len, data_len_max
        )));
    }
    let len = usize::try_from(bhs.data_segment_len)
        .map_err(|_| Error::Protocol("data segment length overflows usize".into()))?;
    let mut data = Vec::new();
    if len > 0 {
        data.resize(len + pad_len(len), 0);
        r.read_exact(&mut data)?;
        if digests.data {
            let mut d = [0u8; 4];
            r.read_exact(&mut d)?;
            let want = crc32c(&data);
            let got = u32::from_le_bytes(d);
            if want != got {
                return Err(Error::Protocol(format!(
                    "data digest mismatch: got {got:#010x}, computed {want:#010x}"
                )));
            }
        }
        data.truncate(len);
    }
    Ok(Pdu { bhs, ahs, data })
}

/// Serial number comparison `a < b` (RFC 1982 with SERIAL_BITS = 32, as RFC 7143 §4.2.2.1
/// requires for CmdSN, StatSN and friends).
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// Serial number comparison `a <= b`.
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: Body, dsl: u32) {
        let bhs = Bhs {
            body,
            total_ahs_words: 0,
            data_segment_len: dsl,
        };
        let raw = bhs.encode().unwrap();
        let back = Bhs::decode(&raw).unwrap();
        assert_eq!(back, bhs);
        assert_eq!(back.encode().unwrap(), raw);
    }

    #[test]
    fn every_pdu_type_round_trips() {
        round_trip(
            Body::NopOut(NopOut {
                immediate: true,
                lun: 0x0001_0000_0000_0000,
                itt: 7,
                ttt: RESERVED_TAG,
                cmd_sn: 9,
                exp_stat_sn: 10,
            }),
            4,
        );
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[13] = 8;
        round_trip(
            Body::ScsiCommand(ScsiCommand {
                immediate: false,
                final_: true,
                read: true,
                write: false,
                attr: 1,
                lun: encode_lun(1).unwrap(),
                itt: 0x1234,
                expected_len: 4096,
                cmd_sn: 0xffff_fffe,
                exp_stat_sn: 3,
                cdb,
            }),
            0,
        );
        round_trip(
            Body::LoginRequest(LoginRequest {
                transit: true,
                cont: false,
                csg: Stage::Operational,
                nsg: Stage::FullFeature,
                version_max: 0,
                version_min: 0,
                isid: [0x80, 1, 2, 3, 4, 5],
                tsih: 0,
                itt: 1,
                cid: 0,
                cmd_sn: 1,
                exp_stat_sn: 2,
            }),
            123,
        );
        round_trip(
            Body::TextRequest(TextRequest {
                immediate: true,
                final_: true,
                cont: false,
                lun: 0,
                itt: 5,
                ttt: RESERVED_TAG,
                cmd_sn: 3,
                exp_stat_sn: 4,
            }),
            16,
        );
        round_trip(
            Body::DataOut(DataOut {
                final_: true,
                lun: encode_lun(3).unwrap(),
                itt: 8,
                ttt: 77,
                exp_stat_sn: 5,
                data_sn: 2,
                offset: 16384,
            }),
            8192,
        );
        round_trip(
            Body::LogoutRequest(LogoutRequest {
                immediate: true,
                reason: 0,
                itt: 9,
                cid: 0,
                cmd_sn: 6,
                exp_stat_sn: 7,
            }),
            0,
        );
        round_trip(
            Body::NopIn(NopIn {
                lun: 0,
                itt: RESERVED_TAG,
                ttt: 99,
                stat_sn: 4,
                exp_cmd_sn: 5,
                max_cmd_sn: 36,
            }),
            0,
        );
        round_trip(
            Body::ScsiResponse(ScsiResponse {
                bidi_overflow: false,
                bidi_underflow: true,
                overflow: false,
                underflow: true,
                response: 0,
                status: 2,
                itt: 11,
                snack_tag: 0,
                stat_sn: 12,
                exp_cmd_sn: 13,
                max_cmd_sn: 44,
                exp_data_sn: 1,
                bidi_residual: 0,
                residual: 512,
            }),
            20,
        );
        round_trip(
            Body::LoginResponse(LoginResponse {
                transit: true,
                cont: false,
                csg: Stage::Security,
                nsg: Stage::Operational,
                version_max: 0,
                version_active: 0,
                isid: [0x80, 9, 8, 7, 6, 5],
                tsih: 0x0102,
                itt: 1,
                stat_sn: 100,
                exp_cmd_sn: 1,
                max_cmd_sn: 32,
                status_class: 2,
                status_detail: 1,
            }),
            40,
        );
        round_trip(
            Body::TextResponse(TextResponse {
                final_: false,
                cont: true,
                lun: 0,
                itt: 5,
                ttt: 6,
                stat_sn: 7,
                exp_cmd_sn: 8,
                max_cmd_sn: 9,
            }),
            100,
        );
        round_trip(
            Body::DataIn(DataIn {
                final_: true,
                ack: false,
                overflow: false,
                underflow: true,
                has_status: true,
                status: 0,
                lun: encode_lun(1).unwrap(),
                itt: 21,
                ttt: RESERVED_TAG,
                stat_sn: 22,
                exp_cmd_sn: 23,
                max_cmd_sn: 24,
                data_sn: 3,
                offset: 24576,
                residual: 512,
            }),
            8192,
        );
        round_trip(
            Body::LogoutResponse(LogoutResponse {
                response: 0,
                itt: 30,
                stat_sn: 31,
                exp_cmd_sn: 32,
                max_cmd_sn: 33,
                time2wait: 2,
                time2retain: 20,
            }),
            0,
        );
        round_trip(
            Body::R2t(R2t {
                lun: encode_lun(1).unwrap(),
                itt: 40,
                ttt: 41,
                stat_sn: 42,
                exp_cmd_sn: 43,
                max_cmd_sn: 44,
                r2t_sn: 1,
                offset: 65536,
                desired_len: 65536,
            }),
            0,
        );
        round_trip(
            Body::AsyncMessage(AsyncMessage {
                lun: 0,
                stat_sn: 1,
                exp_cmd_sn: 2,
                max_cmd_sn: 3,
                event: 1,
                vcode: 0,
                params: [0, 2, 20],
            }),
            0,
        );
        round_trip(
            Body::Reject(Reject {
                reason: 4,
                stat_sn: 1,
                exp_cmd_sn: 2,
                max_cmd_sn: 3,
                data_sn: 0,
            }),
            48,
        );
    }

    #[test]
    fn scsi_command_bytes_match_rfc_layout() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        let bhs = Bhs::new(
            Body::ScsiCommand(ScsiCommand {
                immediate: false,
                final_: true,
                read: true,
                write: false,
                attr: 1,
                lun: encode_lun(1).unwrap(),
                itt: 0x0a0b_0c0d,
                expected_len: 0x200,
                cmd_sn: 0x11,
                exp_stat_sn: 0x22,
                cdb,
            }),
            0x0001_0203,
        );
        let b = bhs.encode().unwrap();
        assert_eq!(b[0], 0x01);
        assert_eq!(b[1], 0xc1);
        assert_eq!(&b[5..8], &[0x01, 0x02, 0x03]);
        assert_eq!(&b[8..10], &[0x00, 0x01]);
        assert_eq!(&b[16..20], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(&b[20..24], &[0, 0, 2, 0]);
        assert_eq!(b[32], 0x28);
    }

    #[test]
    fn unknown_opcode_is_an_error_not_a_panic() {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x1c;
        assert!(Bhs::decode(&b).is_err());
        // Reserved login stage 2.
        b[0] = opcode::LOGIN_RESPONSE;
        b[1] = 0x82;
        assert!(Bhs::decode(&b).is_err());
    }

    #[test]
    fn decoding_arbitrary_headers_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut b = [0u8; BHS_LEN];
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x.to_le_bytes()[0];
            }
            if let Ok(bhs) = Bhs::decode(&b) {
                let again = Bhs::decode(&bhs.encode().unwrap()).unwrap();
                assert_eq!(again, bhs);
            }
        }
    }

    #[test]
    fn pdu_framing_round_trips_with_digests_and_padding() {
        for digests in [
            Digests::default(),
            Digests {
                header: true,
                data: true,
            },
        ] {
            let bhs = Bhs::new(
                Body::NopIn(NopIn {
                    lun: 0,
                    itt: 1,
                    ttt: RESERVED_TAG,
                    stat_sn: 1,
                    exp_cmd_sn: 1,
                    max_cmd_sn: 1,
                }),
                0,
            );
            let mut wire = Vec::new();
            write_pdu(&mut wire, &bhs, b"hello", digests).unwrap();
            let extra = if digests.header { 8 } else { 0 };
            assert_eq!(wire.len(), 48 + 8 + extra);
            let pdu = read_pdu(&mut wire.as_slice(), digests, 8192).unwrap();
            assert_eq!(pdu.data, b"hello");
            assert_eq!(pdu.bhs.data_segment_len, 5);
            if digests.data {
                let n = wire.len();
                wire[n - 5] ^= 1;
                assert!(read_pdu(&mut wire.as_slice(), digests, 8192).is_err());
            }
        }
    }

    #[test]
    fn oversized_data_segment_is_a_violation() {
        let bhs = Bhs::new(
            Body::NopIn(NopIn {
                lun: 0,
                itt: 1,
                ttt: RESERVED_TAG,
                stat_sn: 1,
                exp_cmd_sn: 1,
                max_cmd_sn: 1,
            }),
            0,
        );
        let mut wire = Vec::new();
        write_pdu(&mut wire, &bhs, &[0u8; 600], Digests::default()).unwrap();
        assert!(read_pdu(&mut wire.as_slice(), Digests::default(), 512).is_err());
    }

    #[test]
    fn serial_numbers_compare_across_wrap() {
        assert!(sn_lt(0xffff_fff0, 5));
        assert!(!sn_lt(5, 0xffff_fff0));
        assert!(sn_le(7, 7));
        assert!(sn_lt(1, 2));
    }

    #[test]
    fn lun_encoding_uses_peripheral_then_flat_addressing() {
        assert_eq!(
            encode_lun(1).unwrap().to_be_bytes(),
            [0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode_lun(300).unwrap().to_be_bytes(),
            [0x41, 0x2c, 0, 0, 0, 0, 0, 0]
        );
        assert!(encode_lun(20_000).is_err());
    }
}
