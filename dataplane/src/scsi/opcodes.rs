//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the table of commands a disk LU accepts,
//! with CDB usage bitmaps that mirror what `cdb::decode` accepts, in the all-commands and
//! one-command formats, with optional command timeouts descriptors (RCTD).

use super::cdb::op;
use super::sense::Sense;

/// One supported command.
#[derive(Clone, Copy, Debug)]
pub struct OpEntry {
    /// Operation code.
    pub opcode: u8,
    /// Service action, for commands that have one.
    pub service_action: Option<u16>,
    /// CDB usage data: byte 0 is the opcode, then a bitmap of the bits we look at.
    pub usage: &'static [u8],
}

const fn e(opcode: u8, usage: &'static [u8]) -> OpEntry {
    OpEntry {
        opcode,
        service_action: None,
        usage,
    }
}
const fn sa(opcode: u8, service_action: u16, usage: &'static [u8]) -> OpEntry {
    OpEntry {
        opcode,
        service_action: Some(service_action),
        usage,
    }
}

const FF4: [u8; 4] = [0xFF; 4];
#[rustfmt::skip]
/// Commands supported by a disk LU (PERSISTENT RESERVE entries are appended when enabled).
pub const DISK_OPS: &[OpEntry] = &[
    e(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    e(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xFF, 0]),
    e(op::READ_6, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    e(op::WRITE_6, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0]),
    e(op::INQUIRY, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0]),
    e(op::MODE_SELECT_6, &[0x15, 0x10, 0, 0, 0xFF, 0]),
    e(op::RESERVE_6, &[0x16, 0, 0, 0, 0, 0]),
    e(op::RELEASE_6, &[0x17, 0, 0, 0, 0, 0]),
    e(op::MODE_SENSE_6, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0]),
    e(op::START_STOP_UNIT, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0]),
    e(op::PREVENT_ALLOW, &[0x1E, 0, 0, 0, 0x03, 0]),
    e(op::READ_CAPACITY_10, &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0]),
    e(op::READ_10, &[0x28, 0x1E, FF4[0], FF4[1], FF4[2], FF4[3], 0x1F, 0xFF, 0xFF, 0]),
    e(op::WRITE_10, &[0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::WRITE_VERIFY_10, &[0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::VERIFY_10, &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::PREFETCH_10, &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::SYNC_CACHE_10, &[0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::READ_DEFECT_10, &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::WRITE_SAME_10, &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0]),
    e(op::UNMAP, &[0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0]),
    e(op::MODE_SELECT_10, &[0x55, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::RESERVE_10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(op::RELEASE_10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(op::MODE_SENSE_10, &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0]),
    e(op::READ_16, &[0x88, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::COMPARE_AND_WRITE, &[0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0]),
    e(op::WRITE_16, &[0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::ORWRITE_16, &[0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_VERIFY_16, &[0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::VERIFY_16, &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::PREFETCH_16, &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::SYNC_CACHE_16, &[0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_SAME_16, &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    sa(op::SERVICE_ACTION_IN_16, op::SA_READ_CAPACITY_16, &[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::SERVICE_ACTION_IN_16, op::SA_GET_LBA_STATUS, &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    e(op::REPORT_LUNS, &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    sa(op::MAINTENANCE_IN, op::SA_REPORT_SUPPORTED_OPCODES, &[0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
    e(op::READ_12, &[0xA8, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_12, &[0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::WRITE_VERIFY_12, &[0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::VERIFY_12, &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0]),
    e(op::READ_DEFECT_12, &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
];

#[rustfmt::skip]
/// PERSISTENT RESERVE IN/OUT service actions.
pub const PR_OPS: &[OpEntry] = &[
    sa(op::PR_IN, 0, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, 1, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, 2, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_IN, 3, &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 0, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 1, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 2, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 3, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 4, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
    sa(op::PR_OUT, 6, &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
];

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
    use crate::scsi::cdb::{cdb_len, decode};

    #[test]
    fn usage_lengths_match_cdb_lengths_and_opcodes_decode() {
        for o in DISK_OPS.iter().chain(PR_OPS) {
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
            assert!(decode(&cdb).is_ok(), "{:#x}", o.opcode);
        }
    }

    #[test]
    fn all_commands_format_with_and_without_timeouts() {
        let r = RsocRequest {
            rctd: false,
            options: 0,
            opcode: 0,
            service_action: 0,
        };
        let d = report(r, DISK_OPS).unwrap();
        assert_eq!(d.len(), 4 + 8 * DISK_OPS.len());
        let d = report(RsocRequest { rctd: true, ..r }, DISK_OPS).unwrap();
        assert_eq!(d.len(), 4 + 20 * DISK_OPS.len());
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
        let d = report(r, DISK_OPS).unwrap();
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
        assert_eq!(report(r1, DISK_OPS).unwrap_err().asc, 0x24);
        let r2 = RsocRequest {
            options: 2,
            opcode: op::READ_10,
            ..r
        };
        assert_eq!(report(r2, DISK_OPS).unwrap_err().asc, 0x24);
        let r3 = RsocRequest {
            options: 2,
            opcode: op::SERVICE_ACTION_IN_16,
            service_action: 0x10,
            ..r
        };
        assert_eq!(report(r3, DISK_OPS).unwrap()[1] & 7, 3);
        let r4 = RsocRequest {
            options: 1,
            opcode: 0xC5,
            ..r
        };
        assert_eq!(report(r4, DISK_OPS).unwrap()[1] & 7, 1);
    }
}
