//! The opcode registry: one table of every command (operation code and service action) a
//! logical unit accepts, with its name, the CDB usage data REPORT SUPPORTED OPERATION CODES
//! returns (SPC-4 6.35), the direction of its data phase, how its Data-Out is buffered and
//! which I/O class the metrics count it in. What the rest of the data plane asks about an
//! opcode derives from it: whether `cdb::decode` knows it, whether the transport takes a
//! pool buffer for its Data-Out, the metrics class, and the REPORT SUPPORTED OPERATION
//! CODES parameter data in the all-commands and one-command formats, with optional command
//! timeouts descriptors (RCTD), and the decoder `cdb::decode` hands a CDB's fields to.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::{self, op, DataDir, Decoder};
use super::sense::Sense;

/// Which of the logical unit's I/O classes a command is counted in (`crate::metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoClass {
    /// READ (6/10/12/16).
    Read,
    /// WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16), WRITE SAME (10/16), COMPARE AND
    /// WRITE, WRITE ATOMIC (16).
    Write,
    /// Everything else.
    Other,
}

/// One supported command.
#[derive(Clone, Copy, Debug)]
pub struct OpEntry {
    /// Operation code.
    pub opcode: u8,
    /// Service action, for commands that have one.
    pub service_action: Option<u16>,
    /// Decodes its CDB (every entry of one operation code names the same decoder).
    pub decode: Decoder,
    /// The command's name in SPC-4 / SBC-3.
    pub name: &'static str,
    /// CDB usage data: byte 0 is the opcode, then a bitmap of the bits we look at.
    pub usage: &'static [u8],
    /// The direction of the data phase, when the CDB asks for one.
    pub dir: DataDir,
    /// True when the Data-Out goes to the backend whole, so the transport receives it into
    /// a buffer of the logical unit's pool (WRITE and WRITE AND VERIFY). The other commands
    /// with Data-Out (COMPARE AND WRITE, WRITE SAME, VERIFY, ORWRITE, UNMAP, MODE SELECT,
    /// PERSISTENT RESERVE OUT) take a second buffer inside the logical unit or only parse
    /// their data: a command never holds one pool buffer while it waits for another, which
    /// could deadlock the pool.
    pub pool_data_out: bool,
    /// The metrics class.
    pub class: IoClass,
}

impl OpEntry {
    const fn io(self, class: IoClass) -> Self {
        Self { class, ..self }
    }

    const fn pooled(self) -> Self {
        Self {
            pool_data_out: true,
            ..self
        }
    }
}

const fn e(
    opcode: u8,
    decode: Decoder,
    name: &'static str,
    dir: DataDir,
    usage: &'static [u8],
) -> OpEntry {
    OpEntry {
        opcode,
        decode,
        service_action: None,
        name,
        usage,
        dir,
        pool_data_out: false,
        class: IoClass::Other,
    }
}

const fn sa(
    opcode: u8,
    decode: Decoder,
    service_action: u16,
    name: &'static str,
    dir: DataDir,
    usage: &'static [u8],
) -> OpEntry {
    OpEntry {
        service_action: Some(service_action),
        ..e(opcode, decode, name, dir, usage)
    }
}

#[rustfmt::skip]
/// Every command a logical unit accepts, in the order REPORT SUPPORTED OPERATION CODES
/// lists them: the disk commands by operation code, then the PERSISTENT RESERVE IN/OUT
/// service actions.
pub const OPS: &[OpEntry] = &[
    e(op::TEST_UNIT_READY, cdb::decode_test_unit_ready, "TEST UNIT READY", DataDir::None, &[0x00, 0, 0, 0, 0, 0]),
    e(op::REQUEST_SENSE, cdb::decode_request_sense, "REQUEST SENSE", DataDir::In, &[0x03, 0x01, 0, 0, 0xFF, 0]),
    e(op::READ_6, cdb::decode_rw6, "READ (6)", DataDir::In, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0]).io(IoClass::Read),
    e(op::WRITE_6, cdb::decode_rw6, "WRITE (6)", DataDir::Out, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0]).io(IoClass::Write).pooled(),
    e(op::INQUIRY, cdb::decode_inquiry, "INQUIRY", DataDir::In, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0]),
    e(op::MODE_SELECT_6, cdb::decode_mode_select, "MODE SELECT (6)", DataDir::Out, &[0x15, 0x10, 0, 0, 0xFF, 0]),
    e(op::RESERVE_6, cdb::decode_reserve_release, "RESERVE (6)", DataDir::None, &[0x16, 0, 0, 0, 0, 0]),
    e(op::RELEASE_6, cdb::decode_reserve_release, "RELEASE (6)", DataDir::None, &[0x17, 0, 0, 0, 0, 0]),
    e(op::MODE_SENSE_6, cdb::decode_mode_sense, "MODE SENSE (6)", DataDir::In, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0]),
    e(op::START_STOP_UNIT, cdb::decode_start_stop_unit, "START STOP UNIT", DataDir::None, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0]),
    e(op::PREVENT_ALLOW, cdb::decode_prevent_allow, "PREVENT ALLOW MEDIUM REMOVAL", DataDir::None, &[0x1E, 0, 0, 0, 0x03, 0]),
    e(op::READ_CAPACITY_10, cdb::decode_read_capacity_10, "READ CAPACITY (10)", DataDir::In, &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0]),
    e(op::READ_10, cdb::decode_read, "READ (10)", DataDir::In, &[0x28, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]).io(IoClass::Read),
    e(op::WRITE_10, cdb::decode_write, "WRITE (10)", DataDir::Out, &[0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]).io(IoClass::Write).pooled(),
    e(op::WRITE_VERIFY_10, cdb::decode_write, "WRITE AND VERIFY (10)", DataDir::Out, &[0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]).io(IoClass::Write).pooled(),
    e(op::VERIFY_10, cdb::decode_verify, "VERIFY (10)", DataDir::Out, &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::PREFETCH_10, cdb::decode_prefetch_10, "PRE-FETCH (10)", DataDir::None, &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::SYNC_CACHE_10, cdb::decode_sync_cache_10, "SYNCHRONIZE CACHE (10)", DataDir::None, &[0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::READ_DEFECT_10, cdb::decode_read_defect_10, "READ DEFECT DATA (10)", DataDir::In, &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::WRITE_SAME_10, cdb::decode_write_same, "WRITE SAME (10)", DataDir::Out, &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]).io(IoClass::Write),
    e(op::UNMAP, cdb::decode_unmap, "UNMAP", DataDir::Out, &[0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0]),
    sa(op::SANITIZE, cdb::decode_sanitize, 0x01, "SANITIZE / OVERWRITE", DataDir::Out, &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::SANITIZE, cdb::decode_sanitize, 0x02, "SANITIZE / BLOCK ERASE", DataDir::None, &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::SANITIZE, cdb::decode_sanitize, 0x1F, "SANITIZE / EXIT FAILURE MODE", DataDir::None, &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::MODE_SELECT_10, cdb::decode_mode_select, "MODE SELECT (10)", DataDir::Out, &[0x55, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::RESERVE_10, cdb::decode_reserve_release, "RESERVE (10)", DataDir::None, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(op::RELEASE_10, cdb::decode_reserve_release, "RELEASE (10)", DataDir::None, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(op::MODE_SENSE_10, cdb::decode_mode_sense, "MODE SENSE (10)", DataDir::In, &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::EXTENDED_COPY, cdb::decode_extended_copy, 0x00, "EXTENDED COPY (LID1)", DataDir::Out, &[0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::RECEIVE_COPY_RESULTS, cdb::decode_receive_copy_results, 0x00, "RECEIVE COPY RESULTS / COPY STATUS", DataDir::In, &[0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::RECEIVE_COPY_RESULTS, cdb::decode_receive_copy_results, 0x03, "RECEIVE COPY RESULTS / OPERATING PARAMETERS", DataDir::In, &[0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::RECEIVE_COPY_RESULTS, cdb::decode_receive_copy_results, 0x04, "RECEIVE COPY RESULTS / FAILED SEGMENT DETAILS", DataDir::In, &[0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    e(op::READ_16, cdb::decode_read, "READ (16)", DataDir::In, &[0x88, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Read),
    e(op::COMPARE_AND_WRITE, cdb::decode_compare_and_write, "COMPARE AND WRITE", DataDir::Out, &[0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0]).io(IoClass::Write),
    e(op::WRITE_16, cdb::decode_write, "WRITE (16)", DataDir::Out, &[0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write).pooled(),
    e(op::ORWRITE_16, cdb::decode_write, "ORWRITE (16)", DataDir::Out, &[0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_VERIFY_16, cdb::decode_write, "WRITE AND VERIFY (16)", DataDir::Out, &[0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write).pooled(),
    e(op::VERIFY_16, cdb::decode_verify, "VERIFY (16)", DataDir::Out, &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::PREFETCH_16, cdb::decode_prefetch_16, "PRE-FETCH (16)", DataDir::None, &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::SYNC_CACHE_16, cdb::decode_sync_cache_16, "SYNCHRONIZE CACHE (16)", DataDir::None, &[0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_SAME_16, cdb::decode_write_same, "WRITE SAME (16)", DataDir::Out, &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write),
    e(op::WRITE_ATOMIC_16, cdb::decode_write, "WRITE ATOMIC (16)", DataDir::Out, &[0x9C, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write).pooled(),
    sa(op::SERVICE_ACTION_IN_16, cdb::decode_service_action_in_16, op::SA_READ_CAPACITY_16, "READ CAPACITY (16)", DataDir::In, &[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::SERVICE_ACTION_IN_16, cdb::decode_service_action_in_16, op::SA_GET_LBA_STATUS, "GET LBA STATUS", DataDir::In, &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    e(op::REPORT_LUNS, cdb::decode_report_luns, "REPORT LUNS", DataDir::In, &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::MAINTENANCE_IN, cdb::decode_maintenance_in, op::SA_REPORT_TARGET_PORT_GROUPS, "REPORT TARGET PORT GROUPS", DataDir::In, &[0xA3, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::MAINTENANCE_IN, cdb::decode_maintenance_in, op::SA_REPORT_SUPPORTED_OPCODES, "REPORT SUPPORTED OPERATION CODES", DataDir::In, &[0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    e(op::READ_12, cdb::decode_read, "READ (12)", DataDir::In, &[0xA8, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Read),
    e(op::WRITE_12, cdb::decode_write, "WRITE (12)", DataDir::Out, &[0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write).pooled(),
    e(op::WRITE_VERIFY_12, cdb::decode_write, "WRITE AND VERIFY (12)", DataDir::Out, &[0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]).io(IoClass::Write).pooled(),
    e(op::VERIFY_12, cdb::decode_verify, "VERIFY (12)", DataDir::Out, &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::READ_DEFECT_12, cdb::decode_read_defect_12, "READ DEFECT DATA (12)", DataDir::In, &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::PR_IN, cdb::decode_pr_in, 0, "PERSISTENT RESERVE IN / READ KEYS", DataDir::In, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, cdb::decode_pr_in, 1, "PERSISTENT RESERVE IN / READ RESERVATION", DataDir::In, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, cdb::decode_pr_in, 2, "PERSISTENT RESERVE IN / REPORT CAPABILITIES", DataDir::In, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, cdb::decode_pr_in, 3, "PERSISTENT RESERVE IN / READ FULL STATUS", DataDir::In, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 0, "PERSISTENT RESERVE OUT / REGISTER", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 1, "PERSISTENT RESERVE OUT / RESERVE", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 2, "PERSISTENT RESERVE OUT / RELEASE", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 3, "PERSISTENT RESERVE OUT / CLEAR", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 4, "PERSISTENT RESERVE OUT / PREEMPT", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, cdb::decode_pr_out, 6, "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY", DataDir::Out, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
];

/// What the fast path asks about an operation code, indexed by it: built from [`OPS`] at
/// compile time so a lookup is one load.
#[derive(Clone, Copy)]
struct ByOpcode {
    decode: Option<Decoder>,
    pool_data_out: bool,
    class: IoClass,
}

const BY_OPCODE: [ByOpcode; 256] = {
    let mut t = [ByOpcode {
        decode: None,
        pool_data_out: false,
        class: IoClass::Other,
    }; 256];
    let mut i = 0;
    while i < OPS.len() {
        let o = OPS[i];
        t[o.opcode as usize] = ByOpcode {
            decode: Some(o.decode),
            pool_data_out: o.pool_data_out,
            class: o.class,
        };
        i += 1;
    }
    t
};

/// The decoder of an operation code in [`OPS`]; `None` for one we do not support.
pub fn decoder(opcode: u8) -> Option<Decoder> {
    BY_OPCODE[usize::from(opcode)].decode
}

/// True for the operation codes in [`OPS`] (the ones `cdb::decode` understands).
pub fn is_supported(opcode: u8) -> bool {
    decoder(opcode).is_some()
}

/// True when the Data-Out of a command with this operation code is received into a buffer
/// of the logical unit's pool (see [`OpEntry::pool_data_out`]).
pub fn takes_pool_data_out(opcode: u8) -> bool {
    BY_OPCODE[usize::from(opcode)].pool_data_out
}

/// The metrics class of a command with this operation code.
pub fn io_class(opcode: u8) -> IoClass {
    BY_OPCODE[usize::from(opcode)].class
}

/// Nominal and recommended command timeouts we advertise, in seconds.
const TIMEOUT_SECS: u32 = 30;

fn timeouts_descriptor() -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0A;
    t[4..8].copy_from_slice(&TIMEOUT_SECS.to_be_bytes());
    t[8..12].copy_from_slice(&TIMEOUT_SECS.to_be_bytes());
    t
}

/// A decoded REPORT SUPPORTED OPERATION CODES request.
#[derive(Clone, Copy, Debug)]
pub struct RsocRequest {
    /// Return command timeouts descriptors.
    pub rctd: bool,
    /// REPORTING OPTIONS (0..=3).
    pub options: u8,
    /// REQUESTED OPERATION CODE.
    pub opcode: u8,
    /// REQUESTED SERVICE ACTION.
    pub service_action: u16,
}

/// Builds the parameter data for `req` over the command table `ops` (untruncated).
pub fn report(req: RsocRequest, ops: &[OpEntry]) -> Result<Vec<u8>, Sense> {
    if req.options == 0 {
        let mut body = Vec::new();
        for o in ops {
            body.push(o.opcode);
            body.push(0);
            body.extend_from_slice(&o.service_action.unwrap_or(0).to_be_bytes());
            body.push(0);
            let mut flags = 0u8;
            if req.rctd {
                flags |= 0x02;
            }
            if o.service_action.is_some() {
                flags |= 0x01;
            }
            body.push(flags);
            // Usage tables are at most 16 bytes.
            body.extend_from_slice(&u16::try_from(o.usage.len()).unwrap_or(16).to_be_bytes());
            if req.rctd {
                body.extend_from_slice(&timeouts_descriptor());
            }
        }
        let mut out = u32::try_from(body.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(&body);
        return Ok(out);
    }
    let has_sa = ops
        .iter()
        .any(|o| o.opcode == req.opcode && o.service_action.is_some());
    let found = match req.options {
        1 => {
            if has_sa {
                return Err(Sense::invalid_field_in_cdb(2, Some(2)));
            }
            ops.iter().find(|o| o.opcode == req.opcode)
        }
        2 => {
            if !has_sa && ops.iter().any(|o| o.opcode == req.opcode) {
                return Err(Sense::invalid_field_in_cdb(2, Some(2)));
            }
            ops.iter()
                .find(|o| o.opcode == req.opcode && o.service_action == Some(req.service_action))
        }
        _ => ops.iter().find(|o| {
            o.opcode == req.opcode
                && (o.service_action.is_none() || o.service_action == Some(req.service_action))
        }),
    };
    let mut out = vec![0u8; 4];
    match found {
        Some(o) => {
            out[1] = 0x03; // SUPPORT 011b: supported as described.
            out[2..4].copy_from_slice(&u16::try_from(o.usage.len()).unwrap_or(16).to_be_bytes());
            out.extend_from_slice(o.usage);
        }
        None => out[1] = 0x01, // SUPPORT 001b: not supported.
    }
    if req.rctd {
        out[1] |= 0x80;
        out.extend_from_slice(&timeouts_descriptor());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{cdb_len, decode, Command, WriteKind};

    #[test]
    fn usage_lengths_match_cdb_lengths_and_opcodes_decode() {
        for o in OPS {
            assert_eq!(Some(o.usage.len()), cdb_len(o.opcode), "{:#x}", o.opcode);
            assert_eq!(o.usage[0], o.opcode);
            let mut cdb = vec![0u8; o.usage.len()];
            cdb[0] = o.opcode;
            if let Some(s) = o.service_action {
                cdb[1] = u8::try_from(s).unwrap();
            }
            if o.opcode == op::REPORT_LUNS {
                cdb[9] = 16;
            }
            let cmd = decode(&cdb).unwrap_or_else(|e| panic!("{}: {e:?}", o.name));
            // The data phase a CDB asks for goes the registered way, or there is none.
            let dir = cmd.transfer(512).dir;
            assert!(dir == o.dir || dir == DataDir::None, "{}: {dir:?}", o.name);
            // Pool buffers for Data-Out only go to commands that hand them to the backend.
            let whole_write = matches!(
                cmd,
                Command::Write {
                    kind: WriteKind::Plain | WriteKind::Verify | WriteKind::Atomic,
                    ..
                }
            );
            assert_eq!(o.pool_data_out, whole_write, "{}", o.name);
            assert_eq!(takes_pool_data_out(o.opcode), whole_write, "{}", o.name);
            assert!(is_supported(o.opcode));
            assert_eq!(io_class(o.opcode), o.class);
        }
    }

    #[test]
    fn every_command_is_registered_once_under_its_own_name() {
        let mut keys: Vec<(u8, Option<u16>)> =
            OPS.iter().map(|o| (o.opcode, o.service_action)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), OPS.len());
        let mut names: Vec<&str> = OPS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPS.len());
        // Operation codes outside the table are unknown to every lookup.
        for opcode in [0x01u8, 0x04, 0x3B, 0x86, 0xC0, 0xFF] {
            assert!(!is_supported(opcode), "{opcode:#x}");
            assert!(!takes_pool_data_out(opcode));
            assert_eq!(io_class(opcode), IoClass::Other);
        }
    }

    #[test]
    fn metrics_classes_are_reads_and_whole_block_writes() {
        let of = |class| {
            let mut v: Vec<u8> = OPS
                .iter()
                .filter(|o| o.class == class)
                .map(|o| o.opcode)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(of(IoClass::Read), [0x08, 0x28, 0x88, 0xA8]);
        assert_eq!(
            of(IoClass::Write),
            [0x0A, 0x2A, 0x2E, 0x41, 0x89, 0x8A, 0x8E, 0x93, 0x9C, 0xAA, 0xAE]
        );
    }

    #[test]
    fn all_commands_format_with_and_without_timeouts() {
        let r = RsocRequest {
            rctd: false,
            options: 0,
            opcode: 0,
            service_action: 0,
        };
        let d = report(r, OPS).unwrap();
        assert_eq!(d.len(), 4 + 8 * OPS.len());
        let d = report(RsocRequest { rctd: true, ..r }, OPS).unwrap();
        assert_eq!(d.len(), 4 + 20 * OPS.len());
        assert_eq!(d[4 + 5] & 0x02, 0x02);
        assert_eq!(d[4 + 8 + 1], 0x0A);
    }

    #[test]
    fn one_command_format() {
        let r = RsocRequest {
            rctd: false,
            options: 1,
            opcode: op::READ_10,
            service_action: 0,
        };
        let d = report(r, OPS).unwrap();
        assert_eq!(d[1] & 0x07, 3);
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), 10);
        assert_eq!(d[4], op::READ_10);
        assert_eq!(d[5] & 0x18, 0x18);
        // A service-action opcode with options 1 is invalid, and vice versa.
        let r1 = RsocRequest {
            options: 1,
            opcode: op::SERVICE_ACTION_IN_16,
            ..r
        };
        assert_eq!(report(r1, OPS).unwrap_err().asc, 0x24);
        let r2 = RsocRequest {
            options: 2,
            opcode: op::READ_10,
            ..r
        };
        assert_eq!(report(r2, OPS).unwrap_err().asc, 0x24);
        let r3 = RsocRequest {
            options: 2,
            opcode: op::SERVICE_ACTION_IN_16,
            service_action: 0x10,
            ..r
        };
        assert_eq!(report(r3, OPS).unwrap()[1] & 7, 3);
        let r4 = RsocRequest {
            options: 1,
            opcode: 0xC5,
            ..r
        };
        assert_eq!(report(r4, OPS).unwrap()[1] & 7, 1);
    }
}
