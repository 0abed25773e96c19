//! CDB decoding (SPC-4 4.2, SBC-3 5): raw CDB bytes to a typed [`Command`].
//!
//! Decoding checks only what can be checked without device state: operation code, CDB
//! length (from the opcode group, SPC-4 4.2.5.1), reserved/unsupported bits (protection
//! fields, ANCHOR, NACA) and service actions. Range checks against the capacity and
//! everything that needs LU state happen in the executor. `decode` never panics: every
//! byte is read through [`Cdb::b`], and the length is checked before any field is read.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;
use super::{BlockCount, Lba};

/// Operation codes we decode (SPC-4 / SBC-3 names).
#[allow(missing_docs)]
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PREFETCH_10: u8 = 0x34;
    pub const SYNC_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const SANITIZE: u8 = 0x48;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PR_IN: u8 = 0x5E;
    pub const PR_OUT: u8 = 0x5F;
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PREFETCH_16: u8 = 0x90;
    pub const SYNC_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_12: u8 = 0xB7;

    /// SERVICE ACTION IN(16) service actions.
    pub const SA_READ_CAPACITY_16: u16 = 0x10;
    pub const SA_GET_LBA_STATUS: u16 = 0x12;
    /// MAINTENANCE IN service action: REPORT TARGET PORT GROUPS (SPC-4 6.36).
    pub const SA_REPORT_TARGET_PORT_GROUPS: u16 = 0x0A;
    /// MAINTENANCE IN service action.
    pub const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
}

/// Largest WRITE SAME / UNMAP / transfer sizes are LU limits, not decode limits; this is
/// the CDB length for an operation code from its group code (SPC-4 4.2.5.1).
pub fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Which way data moves for a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// No data phase.
    None,
    /// Device to initiator.
    In,
    /// Initiator to device.
    Out,
}

/// How many bytes a command's data phase holds, in which direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Direction.
    pub dir: DataDir,
    /// Bytes the CDB asks to move (allocation length or blocks × block size).
    pub bytes: u64,
}

/// Kind of write-like command sharing the block write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// WRITE(6/10/12/16).
    Plain,
    /// WRITE AND VERIFY(10/12/16); BYTCHK only changes whether data is compared after the
    /// write, which always matches for us.
    Verify,
    /// ORWRITE(16): new = old OR data.
    Or,
    /// WRITE ATOMIC(16) (SBC-4 5.48): all of the blocks or none of them, as any other
    /// command sees them.
    Atomic,
}

/// A decoded command: the typed plan the executor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        desc: bool,
        alloc_len: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc_len: u32,
    },
    ReportLuns {
        select: u8,
        alloc_len: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc_len: u32,
    },
    Read {
        lba: Lba,
        blocks: BlockCount,
        dpo: bool,
        fua: bool,
    },
    Write {
        kind: WriteKind,
        lba: Lba,
        blocks: BlockCount,
        dpo: bool,
        fua: bool,
    },
    /// VERIFY: bytchk 0 = medium check only, 1 = compare all blocks, 3 = compare one block
    /// against every block.
    Verify {
        lba: Lba,
        blocks: BlockCount,
        bytchk: u8,
    },
    CompareAndWrite {
        lba: Lba,
        blocks: BlockCount,
        fua: bool,
    },
    WriteSame {
        lba: Lba,
        blocks: BlockCount,
        unmap: bool,
        ndob: bool,
        sixteen: bool,
    },
    Unmap {
        param_len: u32,
    },
    GetLbaStatus {
        lba: Lba,
        alloc_len: u32,
    },
    SyncCache {
        lba: Lba,
        blocks: BlockCount,
    },
    Prefetch {
        lba: Lba,
        blocks: BlockCount,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc_len: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
    },
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        loej: bool,
        start: bool,
    },
    PreventAllow {
        prevent: u8,
    },
    /// REPORT TARGET PORT GROUPS (SPC-4 6.36): `extended` selects the extended header
    /// (PARAMETER DATA FORMAT 001b) over the length-only one (000b).
    ReportTargetPortGroups {
        extended: bool,
        alloc_len: u32,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        service_action: u16,
        alloc_len: u32,
    },
    ReadDefectData {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc_len: u32,
    },
    Reserve,
    Release,
    /// SANITIZE (SBC-4 5.30): the action, IMMED, AUSE and the OVERWRITE parameter list
    /// length.
    Sanitize {
        action: super::sanitize::Action,
        immed: bool,
        ause: bool,
        param_len: u32,
    },
    /// EXTENDED COPY (LID1, SPC-4 6.4).
    ExtendedCopy {
        param_len: u32,
    },
    /// RECEIVE COPY RESULTS (SPC-4 6.18): COPY STATUS (0), OPERATING PARAMETERS (3) or
    /// FAILED SEGMENT DETAILS (4) of the copy with LIST IDENTIFIER `list_id`.
    ReceiveCopyResults {
        service_action: u8,
        list_id: u8,
        alloc_len: u32,
    },
    PrIn {
        service_action: u8,
        alloc_len: u32,
    },
    PrOut {
        service_action: u8,
        scope: u8,
        pr_type: u8,
        param_len: u32,
    },
}

/// Bounds-safe reader over CDB bytes.
#[derive(Clone, Copy)]
pub struct Cdb<'a>(pub &'a [u8]);

impl Cdb<'_> {
    /// Byte `i`, or 0 past the end (never reached after the length check).
    pub fn b(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    fn be16(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.b(i), self.b(i + 1)])
    }
    fn be32(&self, i: usize) -> u32 {
        u32::from_be_bytes([self.b(i), self.b(i + 1), self.b(i + 2), self.b(i + 3)])
    }
    fn be64(&self, i: usize) -> u64 {
        (u64::from(self.be32(i)) << 32) | u64::from(self.be32(i + 4))
    }
    fn bit(&self, i: usize, bit: u8) -> bool {
        self.b(i) & (1 << bit) != 0
    }
}

fn invalid(byte: u16, bit: u8) -> Sense {
    Sense::invalid_field_in_cdb(byte, Some(bit))
}

/// Rejects a non-zero RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT: we have no protection
/// information (SBC-3 4.22, READ CAPACITY(16) reports PROT_EN=0).
fn no_protect(c: Cdb<'_>) -> Result<(), Sense> {
    if c.b(1) >> 5 != 0 {
        return Err(invalid(1, 7));
    }
    Ok(())
}

fn bytchk(c: Cdb<'_>) -> Result<u8, Sense> {
    // SBC-4 widened BYTCHK to bits 2:1; 10b is reserved.
    let v = (c.b(1) >> 1) & 0x03;
    if v == 2 {
        return Err(invalid(1, 2));
    }
    Ok(v)
}

/// Decodes a CDB: the checks every CDB gets (a known operation code, the length its group
/// code gives, no NACA), then the decoder the opcode registry names for it.
pub fn decode(cdb: &[u8]) -> Result<Command, Sense> {
    let opcode = *cdb.first().ok_or(Sense::invalid_opcode())?;
    let len = cdb_len(opcode).ok_or(Sense::invalid_opcode())?;
    let decoder = super::opcodes::decoder(opcode).ok_or(Sense::invalid_opcode())?;
    if cdb.len() < len {
        return Err(Sense::invalid_field_in_cdb(0, None));
    }
    let c = Cdb(&cdb[..len]);
    // CONTROL byte NACA: we do not support ACA (SAM-5 5.9).
    let control = len - 1;
    if c.bit(control, 2) {
        return Err(invalid(u16::try_from(control).unwrap_or(15), 2));
    }
    decoder(c, opcode)
}

/// The decoder of one operation code (or a family of them): the CDB, already checked for
/// length and CONTROL, and its operation code.
pub type Decoder = fn(Cdb<'_>, u8) -> Result<Command, Sense>;

/// A 4-byte LBA at bytes 2..6 (the 10- and 12-byte CDBs).
fn lba32(c: Cdb<'_>) -> Lba {
    Lba(u64::from(c.be32(2)))
}

/// Decodes TEST UNIT READY.
pub(super) fn decode_test_unit_ready(_c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::TestUnitReady)
}

/// Decodes REQUEST SENSE.
pub(super) fn decode_request_sense(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::RequestSense {
        desc: c.bit(1, 0),
        alloc_len: u32::from(c.b(4)),
    })
}

/// Decodes INQUIRY.
pub(super) fn decode_inquiry(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        if c.bit(1, 1) {
            // CmdDt is obsolete (SPC-3) and not supported.
            return Err(invalid(1, 1));
        }
        let evpd = c.bit(1, 0);
        let page = c.b(2);
        if !evpd && page != 0 {
            return Err(invalid(2, 7));
        }
        Command::Inquiry {
            evpd,
            page,
            alloc_len: u32::from(c.be16(3)),
        }
    };
    Ok(cmd)
}

/// Decodes READ 6 / WRITE 6.
pub(super) fn decode_rw6(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        let lba = Lba((u64::from(c.b(1) & 0x1F) << 16) | u64::from(c.be16(2)));
        // SBC-3 5.12: a TRANSFER LENGTH of zero means 256 blocks for the 6-byte CDBs.
        let n = match c.b(4) {
            0 => 256,
            n => u64::from(n),
        };
        if opcode == READ_6 {
            Command::Read {
                lba,
                blocks: BlockCount(n),
                dpo: false,
                fua: false,
            }
        } else {
            Command::Write {
                kind: WriteKind::Plain,
                lba,
                blocks: BlockCount(n),
                dpo: false,
                fua: false,
            }
        }
    };
    Ok(cmd)
}

/// Decodes READ 10 / READ 12 / READ 16.
pub(super) fn decode_read(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        no_protect(c)?;
        let (lba, n) = match opcode {
            READ_10 => (lba32(c), u64::from(c.be16(7))),
            READ_12 => (lba32(c), u64::from(c.be32(6))),
            _ => (Lba(c.be64(2)), u64::from(c.be32(10))),
        };
        Command::Read {
            lba,
            blocks: BlockCount(n),
            dpo: c.bit(1, 4),
            fua: c.bit(1, 3),
        }
    };
    Ok(cmd)
}

/// Decodes EXTENDED COPY: only the LID1 service action (00h).
pub(super) fn decode_extended_copy(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    if c.b(1) & 0x1F != 0 {
        return Err(invalid(1, 4));
    }
    Ok(Command::ExtendedCopy {
        param_len: c.be32(10),
    })
}

/// Decodes RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT DETAILS.
pub(super) fn decode_receive_copy_results(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let service_action = c.b(1) & 0x1F;
    if !matches!(service_action, 0x00 | 0x03 | 0x04) {
        return Err(invalid(1, 4));
    }
    Ok(Command::ReceiveCopyResults {
        service_action,
        list_id: c.b(2),
        alloc_len: c.be32(10),
    })
}

/// Decodes SANITIZE: reserved bits and bytes must be zero, the service action one we
/// offer, and only OVERWRITE has a parameter list.
pub(super) fn decode_sanitize(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    use super::sanitize::Action;
    if c.bit(1, 6) {
        return Err(invalid(1, 6));
    }
    for i in 2..=6u16 {
        if c.b(usize::from(i)) != 0 {
            return Err(Sense::invalid_field_in_cdb(i, None));
        }
    }
    let action = Action::from_code(c.b(1) & 0x1F)?;
    let param_len = u32::from(c.be16(7));
    if action != Action::Overwrite && param_len != 0 {
        return Err(Sense::invalid_field_in_cdb(7, None));
    }
    Ok(Command::Sanitize {
        action,
        immed: c.bit(1, 7),
        ause: c.bit(1, 5),
        param_len,
    })
}

/// Decodes WRITE (10/12/16), WRITE AND VERIFY (10/12/16), ORWRITE (16) and WRITE ATOMIC
/// (16).
pub(super) fn decode_write(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        no_protect(c)?;
        let (lba, n) = match opcode {
            WRITE_10 | WRITE_VERIFY_10 => (lba32(c), u64::from(c.be16(7))),
            WRITE_12 | WRITE_VERIFY_12 => (lba32(c), u64::from(c.be32(6))),
            WRITE_ATOMIC_16 => {
                // We advertise no MAXIMUM ATOMIC BOUNDARY SIZE, so ATOMIC BOUNDARY must be 0.
                if c.be16(10) != 0 {
                    return Err(invalid(10, 7));
                }
                (Lba(c.be64(2)), u64::from(c.be16(12)))
            }
            _ => (Lba(c.be64(2)), u64::from(c.be32(10))),
        };
        let kind = match opcode {
            WRITE_VERIFY_10 | WRITE_VERIFY_12 | WRITE_VERIFY_16 => {
                bytchk(c)?;
                WriteKind::Verify
            }
            ORWRITE_16 => WriteKind::Or,
            WRITE_ATOMIC_16 => WriteKind::Atomic,
            _ => WriteKind::Plain,
        };
        // WRITE AND VERIFY has no FUA bit (bit 3 is reserved there); it is durable anyway.
        let fua = kind != WriteKind::Verify && c.bit(1, 3);
        Command::Write {
            kind,
            lba,
            blocks: BlockCount(n),
            dpo: c.bit(1, 4),
            fua,
        }
    };
    Ok(cmd)
}

/// Decodes VERIFY 10 / VERIFY 12 / VERIFY 16.
pub(super) fn decode_verify(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        no_protect(c)?;
        let bytchk = bytchk(c)?;
        let (lba, n) = match opcode {
            VERIFY_10 => (lba32(c), u64::from(c.be16(7))),
            VERIFY_12 => (lba32(c), u64::from(c.be32(6))),
            _ => (Lba(c.be64(2)), u64::from(c.be32(10))),
        };
        Command::Verify {
            lba,
            blocks: BlockCount(n),
            bytchk,
        }
    };
    Ok(cmd)
}

/// Decodes COMPARE AND WRITE.
pub(super) fn decode_compare_and_write(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        no_protect(c)?;
        Command::CompareAndWrite {
            lba: Lba(c.be64(2)),
            blocks: BlockCount(u64::from(c.b(13))),
            fua: c.bit(1, 3),
        }
    };
    Ok(cmd)
}

/// Decodes WRITE SAME 10 / WRITE SAME 16.
pub(super) fn decode_write_same(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        no_protect(c)?;
        if c.bit(1, 4) {
            // ANCHOR: we report ANC_SUP=0 (SBC-3 5.45), so ANCHOR=1 is invalid.
            return Err(invalid(1, 4));
        }
        let sixteen = opcode == WRITE_SAME_16;
        let ndob = sixteen && c.bit(1, 0);
        let unmap = c.bit(1, 3);
        if !sixteen && c.bit(1, 0) {
            // Bit 0 of WRITE SAME(10) is obsolete RELADR.
            return Err(invalid(1, 0));
        }
        let (lba, n) = if sixteen {
            (Lba(c.be64(2)), u64::from(c.be32(10)))
        } else {
            (lba32(c), u64::from(c.be16(7)))
        };
        Command::WriteSame {
            lba,
            blocks: BlockCount(n),
            unmap,
            ndob,
            sixteen,
        }
    };
    Ok(cmd)
}

/// Decodes UNMAP.
pub(super) fn decode_unmap(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        if c.bit(1, 0) {
            // ANCHOR, not supported.
            return Err(invalid(1, 0));
        }
        Command::Unmap {
            param_len: u32::from(c.be16(7)),
        }
    };
    Ok(cmd)
}

/// Decodes SYNC CACHE 10.
pub(super) fn decode_sync_cache_10(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::SyncCache {
        lba: lba32(c),
        blocks: BlockCount(u64::from(c.be16(7))),
    })
}

/// Decodes SYNC CACHE 16.
pub(super) fn decode_sync_cache_16(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::SyncCache {
        lba: Lba(c.be64(2)),
        blocks: BlockCount(u64::from(c.be32(10))),
    })
}

/// Decodes PREFETCH 10.
pub(super) fn decode_prefetch_10(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::Prefetch {
        lba: lba32(c),
        blocks: BlockCount(u64::from(c.be16(7))),
    })
}

/// Decodes PREFETCH 16.
pub(super) fn decode_prefetch_16(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::Prefetch {
        lba: Lba(c.be64(2)),
        blocks: BlockCount(u64::from(c.be32(10))),
    })
}

/// Decodes READ CAPACITY 10.
pub(super) fn decode_read_capacity_10(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        // SBC-3 5.15: with PMI=0 the LBA field must be zero.
        if !c.bit(8, 0) && c.be32(2) != 0 {
            return Err(invalid(2, 7));
        }
        Command::ReadCapacity10
    };
    Ok(cmd)
}

/// Decodes SERVICE ACTION IN 16.
pub(super) fn decode_service_action_in_16(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    use op::*;
    Ok(match u16::from(c.b(1) & 0x1F) {
        SA_READ_CAPACITY_16 => Command::ReadCapacity16 {
            alloc_len: c.be32(10),
        },
        SA_GET_LBA_STATUS => Command::GetLbaStatus {
            lba: Lba(c.be64(2)),
            alloc_len: c.be32(10),
        },
        _ => return Err(invalid(1, 4)),
    })
}

/// Decodes MODE SENSE 6 / MODE SENSE 10.
pub(super) fn decode_mode_sense(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        let ten = opcode == MODE_SENSE_10;
        Command::ModeSense {
            ten,
            dbd: c.bit(1, 3),
            llbaa: ten && c.bit(1, 4),
            pc: c.b(2) >> 6,
            page: c.b(2) & 0x3F,
            subpage: c.b(3),
            alloc_len: if ten {
                u32::from(c.be16(7))
            } else {
                u32::from(c.b(4))
            },
        }
    };
    Ok(cmd)
}

/// Decodes MODE SELECT 6 / MODE SELECT 10.
pub(super) fn decode_mode_select(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        let ten = opcode == MODE_SELECT_10;
        Command::ModeSelect {
            ten,
            pf: c.bit(1, 4),
            sp: c.bit(1, 0),
            param_len: if ten {
                u32::from(c.be16(7))
            } else {
                u32::from(c.b(4))
            },
        }
    };
    Ok(cmd)
}

/// Decodes START STOP UNIT.
pub(super) fn decode_start_stop_unit(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::StartStopUnit {
        immed: c.bit(1, 0),
        power_condition: c.b(4) >> 4,
        loej: c.bit(4, 1),
        start: c.bit(4, 0),
    })
}

/// Decodes PREVENT ALLOW.
pub(super) fn decode_prevent_allow(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::PreventAllow {
        prevent: c.b(4) & 0x03,
    })
}

/// Decodes REPORT LUNS.
pub(super) fn decode_report_luns(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        let alloc_len = c.be32(6);
        // SPC-4 6.33: an allocation length below 16 is invalid.
        if alloc_len < 16 {
            return Err(invalid(6, 7));
        }
        Command::ReportLuns {
            select: c.b(2),
            alloc_len,
        }
    };
    Ok(cmd)
}

/// Decodes MAINTENANCE IN.
pub(super) fn decode_maintenance_in(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    use op::*;
    Ok(match u16::from(c.b(1) & 0x1F) {
        SA_REPORT_SUPPORTED_OPCODES => {
            let options = c.b(2) & 0x07;
            if options > 3 {
                return Err(invalid(2, 2));
            }
            Command::ReportSupportedOpcodes {
                rctd: c.bit(2, 7),
                options,
                opcode: c.b(3),
                service_action: c.be16(4),
                alloc_len: c.be32(6),
            }
        }
        SA_REPORT_TARGET_PORT_GROUPS => Command::ReportTargetPortGroups {
            extended: match c.b(1) >> 5 {
                0 => false,
                1 => true,
                _ => return Err(invalid(1, 7)),
            },
            alloc_len: c.be32(6),
        },
        _ => return Err(invalid(1, 4)),
    })
}

/// Decodes READ DEFECT 10.
pub(super) fn decode_read_defect_10(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::ReadDefectData {
        twelve: false,
        plist: c.bit(2, 4),
        glist: c.bit(2, 3),
        format: c.b(2) & 0x07,
        alloc_len: u32::from(c.be16(7)),
    })
}

/// Decodes READ DEFECT 12.
pub(super) fn decode_read_defect_12(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    Ok(Command::ReadDefectData {
        twelve: true,
        plist: c.bit(1, 4),
        glist: c.bit(1, 3),
        format: c.b(1) & 0x07,
        alloc_len: c.be32(6),
    })
}

/// Decodes RESERVE 6 / RESERVE 10 / RELEASE 6 / RELEASE 10.
pub(super) fn decode_reserve_release(c: Cdb<'_>, opcode: u8) -> Result<Command, Sense> {
    use op::*;
    let cmd = {
        // Third-party and extent reservations are not supported (SPC-2 7.21).
        if opcode == RESERVE_10 || opcode == RELEASE_10 {
            if c.bit(1, 4) {
                return Err(invalid(1, 4));
            }
            if c.bit(1, 1) {
                return Err(invalid(1, 1));
            }
        } else if c.b(1) & 0x1F != 0 {
            return Err(invalid(1, 0));
        }
        if opcode == RESERVE_6 || opcode == RESERVE_10 {
            Command::Reserve
        } else {
            Command::Release
        }
    };
    Ok(cmd)
}

/// Decodes PR IN.
pub(super) fn decode_pr_in(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        let sa = c.b(1) & 0x1F;
        if sa > 3 {
            return Err(invalid(1, 4));
        }
        Command::PrIn {
            service_action: sa,
            alloc_len: u32::from(c.be16(7)),
        }
    };
    Ok(cmd)
}

/// Decodes PR OUT.
pub(super) fn decode_pr_out(c: Cdb<'_>, _opcode: u8) -> Result<Command, Sense> {
    let cmd = {
        let sa = c.b(1) & 0x1F;
        if sa > 7 {
            return Err(invalid(1, 4));
        }
        Command::PrOut {
            service_action: sa,
            scope: c.b(2) >> 4,
            pr_type: c.b(2) & 0x0F,
            param_len: c.be32(5),
        }
    };
    Ok(cmd)
}

impl Command {
    /// The data phase the CDB describes, for a device with `block_size` bytes per block.
    pub fn transfer(&self, block_size: u32) -> Transfer {
        let bs = u64::from(block_size);
        let t = |dir, bytes| Transfer { dir, bytes };
        match *self {
            Command::TestUnitReady
            | Command::ReadCapacity10
            | Command::SyncCache { .. }
            | Command::Prefetch { .. }
            | Command::StartStopUnit { .. }
            | Command::PreventAllow { .. }
            | Command::Reserve
            | Command::Release => {
                if matches!(self, Command::ReadCapacity10) {
                    t(DataDir::In, 8)
                } else {
                    t(DataDir::None, 0)
                }
            }
            Command::RequestSense { alloc_len, .. }
            | Command::Inquiry { alloc_len, .. }
            | Command::ReportLuns { alloc_len, .. }
            | Command::ReadCapacity16 { alloc_len }
            | Command::GetLbaStatus { alloc_len, .. }
            | Command::ModeSense { alloc_len, .. }
            | Command::ReportSupportedOpcodes { alloc_len, .. }
            | Command::ReportTargetPortGroups { alloc_len, .. }
            | Command::ReadDefectData { alloc_len, .. }
            | Command::ReceiveCopyResults { alloc_len, .. }
            | Command::PrIn { alloc_len, .. } => t(DataDir::In, u64::from(alloc_len)),
            Command::Read { blocks, .. } => t(DataDir::In, blocks.0.saturating_mul(bs)),
            Command::Write { blocks, .. } => t(DataDir::Out, blocks.0.saturating_mul(bs)),
            Command::Verify { blocks, bytchk, .. } => match bytchk {
                0 => t(DataDir::None, 0),
                3 => t(DataDir::Out, if blocks.0 == 0 { 0 } else { bs }),
                _ => t(DataDir::Out, blocks.0.saturating_mul(bs)),
            },
            Command::CompareAndWrite { blocks, .. } => {
                t(DataDir::Out, blocks.0.saturating_mul(bs).saturating_mul(2))
            }
            Command::WriteSame { ndob, .. } => t(DataDir::Out, if ndob { 0 } else { bs }),
            // Only OVERWRITE carries a parameter list; the other actions have no data phase.
            Command::Sanitize { param_len: 0, .. } => t(DataDir::None, 0),
            Command::Unmap { param_len }
            | Command::ExtendedCopy { param_len }
            | Command::Sanitize { param_len, .. }
            | Command::ModeSelect { param_len, .. }
            | Command::PrOut { param_len, .. } => t(DataDir::Out, u64::from(param_len)),
        }
    }

    /// True for commands that modify the medium (refused on a write-protected LU).
    pub fn writes_medium(&self) -> bool {
        matches!(
            self,
            Command::Write { .. }
                | Command::CompareAndWrite { .. }
                | Command::WriteSame { .. }
                | Command::Unmap { .. }
                | Command::Sanitize { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c10(op: u8, b1: u8, lba: u32, len: u16) -> Vec<u8> {
        let mut v = vec![0u8; 10];
        v[0] = op;
        v[1] = b1;
        v[2..6].copy_from_slice(&lba.to_be_bytes());
        v[7..9].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn c16(op: u8, b1: u8, lba: u64, len: u32) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[0] = op;
        v[1] = b1;
        v[2..10].copy_from_slice(&lba.to_be_bytes());
        v[10..14].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn key(r: Result<Command, Sense>) -> (u8, u8) {
        let s = r.unwrap_err();
        (s.asc, s.ascq)
    }

    #[test]
    fn read6_table() {
        assert_eq!(
            decode(&[0x08, 0x1F, 0xFF, 0xFF, 0, 0]).unwrap(),
            Command::Read {
                lba: Lba(0x1F_FFFF),
                blocks: BlockCount(256),
                dpo: false,
                fua: false
            }
        );
        assert_eq!(
            decode(&[0x08, 0xE0, 0, 5, 3, 0]).unwrap(),
            Command::Read {
                lba: Lba(5),
                blocks: BlockCount(3),
                dpo: false,
                fua: false
            }
        );
        assert_eq!(key(decode(&[0x08, 0, 0])), (0x24, 0));
        assert_eq!(key(decode(&[0x08, 0, 0, 0, 1, 0x04])), (0x24, 0));
    }

    #[test]
    fn read10_table() {
        assert_eq!(
            decode(&c10(0x28, 0x18, 7, 2)).unwrap(),
            Command::Read {
                lba: Lba(7),
                blocks: BlockCount(2),
                dpo: true,
                fua: true
            }
        );
        for p in 1..8u8 {
            let s = decode(&c10(0x28, p << 5, 0, 1)).unwrap_err();
            assert_eq!((s.asc, s.ascq), (0x24, 0));
            assert_eq!(s.field.unwrap().byte, 1);
        }
    }

    #[test]
    fn read16_and_write16_table() {
        assert_eq!(
            decode(&c16(0x88, 0, u64::MAX, 1)).unwrap(),
            Command::Read {
                lba: Lba(u64::MAX),
                blocks: BlockCount(1),
                dpo: false,
                fua: false
            }
        );
        assert_eq!(
            decode(&c16(0x8A, 0x08, 3, 4)).unwrap(),
            Command::Write {
                kind: WriteKind::Plain,
                lba: Lba(3),
                blocks: BlockCount(4),
                dpo: false,
                fua: true
            }
        );
        assert_eq!(key(decode(&c16(0x8A, 0x20, 3, 4))), (0x24, 0));
    }

    #[test]
    fn read12_write12_table() {
        let mut v = vec![0u8; 12];
        v[0] = 0xA8;
        v[2..6].copy_from_slice(&9u32.to_be_bytes());
        v[6..10].copy_from_slice(&70000u32.to_be_bytes());
        assert_eq!(
            decode(&v).unwrap(),
            Command::Read {
                lba: Lba(9),
                blocks: BlockCount(70000),
                dpo: false,
                fua: false
            }
        );
        v[0] = 0xAA;
        v[1] = 0x40;
        assert_eq!(key(decode(&v)), (0x24, 0));
    }

    #[test]
    fn verify_table() {
        assert_eq!(
            decode(&c10(0x2F, 0x02, 1, 2)).unwrap(),
            Command::Verify {
                lba: Lba(1),
                blocks: BlockCount(2),
                bytchk: 1
            }
        );
        assert_eq!(
            decode(&c10(0x2F, 0x00, 1, 2)).unwrap(),
            Command::Verify {
                lba: Lba(1),
                blocks: BlockCount(2),
                bytchk: 0
            }
        );
        assert_eq!(key(decode(&c10(0x2F, 0x04, 1, 2))), (0x24, 0));
        assert_eq!(key(decode(&c10(0x2F, 0x20, 1, 2))), (0x24, 0));
        assert_eq!(
            decode(&c16(0x8F, 0x06, 1, 2)).unwrap(),
            Command::Verify {
                lba: Lba(1),
                blocks: BlockCount(2),
                bytchk: 3
            }
        );
    }

    #[test]
    fn write_and_verify_table() {
        assert_eq!(
            decode(&c10(0x2E, 0x12, 1, 2)).unwrap(),
            Command::Write {
                kind: WriteKind::Verify,
                lba: Lba(1),
                blocks: BlockCount(2),
                dpo: true,
                fua: false
            }
        );
        assert_eq!(key(decode(&c10(0x2E, 0xE0, 1, 2))), (0x24, 0));
    }

    #[test]
    fn write_same_table() {
        assert_eq!(
            decode(&c10(0x41, 0x08, 5, 0)).unwrap(),
            Command::WriteSame {
                lba: Lba(5),
                blocks: BlockCount(0),
                unmap: true,
                ndob: false,
                sixteen: false
            }
        );
        assert_eq!(key(decode(&c10(0x41, 0x10, 5, 1))), (0x24, 0));
        assert_eq!(key(decode(&c10(0x41, 0x18, 5, 1))), (0x24, 0));
        assert_eq!(key(decode(&c10(0x41, 0x20, 5, 1))), (0x24, 0));
        assert_eq!(
            decode(&c16(0x93, 0x09, 5, 9)).unwrap(),
            Command::WriteSame {
                lba: Lba(5),
                blocks: BlockCount(9),
                unmap: true,
                ndob: true,
                sixteen: true
            }
        );
    }

    #[test]
    fn inquiry_table() {
        assert_eq!(
            decode(&[0x12, 0, 0, 1, 0, 0]).unwrap(),
            Command::Inquiry {
                evpd: false,
                page: 0,
                alloc_len: 256
            }
        );
        assert_eq!(
            decode(&[0x12, 1, 0x83, 0, 255, 0]).unwrap(),
            Command::Inquiry {
                evpd: true,
                page: 0x83,
                alloc_len: 255
            }
        );
        assert_eq!(key(decode(&[0x12, 0, 1, 0, 255, 0])), (0x24, 0));
        assert_eq!(key(decode(&[0x12, 2, 0, 0, 255, 0])), (0x24, 0));
    }

    #[test]
    fn report_luns_table() {
        let mut v = vec![0u8; 12];
        v[0] = 0xA0;
        v[2] = 2;
        v[6..10].copy_from_slice(&16u32.to_be_bytes());
        assert_eq!(
            decode(&v).unwrap(),
            Command::ReportLuns {
                select: 2,
                alloc_len: 16
            }
        );
        v[6..10].copy_from_slice(&15u32.to_be_bytes());
        assert_eq!(key(decode(&v)), (0x24, 0));
    }

    #[test]
    fn service_action_in_table() {
        let mut v = c16(0x9E, 0x10, 0, 32);
        assert_eq!(
            decode(&v).unwrap(),
            Command::ReadCapacity16 { alloc_len: 32 }
        );
        v[1] = 0x12;
        assert_eq!(
            decode(&v).unwrap(),
            Command::GetLbaStatus {
                lba: Lba(0),
                alloc_len: 32
            }
        );
        v[1] = 0x11;
        assert_eq!(key(decode(&v)), (0x24, 0));
    }

    #[test]
    fn mode_sense_select_table() {
        assert_eq!(
            decode(&[0x1A, 0x08, 0x3F, 0, 255, 0]).unwrap(),
            Command::ModeSense {
                ten: false,
                dbd: true,
                llbaa: false,
                pc: 0,
                page: 0x3F,
                subpage: 0,
                alloc_len: 255
            }
        );
        let mut v = c10(0x5A, 0x10, 0, 512);
        v[2] = 0x88;
        assert_eq!(
            decode(&v).unwrap(),
            Command::ModeSense {
                ten: true,
                dbd: false,
                llbaa: true,
                pc: 2,
                page: 8,
                subpage: 0,
                alloc_len: 512
            }
        );
        assert_eq!(
            decode(&[0x15, 0x10, 0, 0, 24, 0]).unwrap(),
            Command::ModeSelect {
                ten: false,
                pf: true,
                sp: false,
                param_len: 24
            }
        );
    }

    #[test]
    fn unknown_opcodes_are_invalid_opcode() {
        for op in [0x04u8, 0x06, 0x9D, 0xC0, 0x7F, 0xFF] {
            assert_eq!(key(decode(&[op; 16])), (0x20, 0), "{op:#x}");
        }
        assert_eq!(key(decode(&[])), (0x20, 0));
    }

    #[test]
    fn report_target_port_groups_table() {
        let mut v = vec![0u8; 12];
        v[0] = 0xA3;
        v[1] = 0x0A;
        v[6..10].copy_from_slice(&300u32.to_be_bytes());
        assert_eq!(
            decode(&v).unwrap(),
            Command::ReportTargetPortGroups {
                extended: false,
                alloc_len: 300
            }
        );
        v[1] = 0x2A;
        assert_eq!(
            decode(&v).unwrap(),
            Command::ReportTargetPortGroups {
                extended: true,
                alloc_len: 300
            }
        );
        // PARAMETER DATA FORMAT 010b..111b are reserved.
        v[1] = 0x4A;
        assert!(decode(&v).is_err());
    }

    #[test]
    fn report_supported_opcodes_table() {
        let mut v = vec![0u8; 12];
        v[0] = 0xA3;
        v[1] = 0x0C;
        v[2] = 0x81;
        v[3] = 0x28;
        v[6..10].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            decode(&v).unwrap(),
            Command::ReportSupportedOpcodes {
                rctd: true,
                options: 1,
                opcode: 0x28,
                service_action: 0,
                alloc_len: 100
            }
        );
        v[2] = 0x07;
        assert_eq!(key(decode(&v)), (0x24, 0));
        v[1] = 0x0B; // REPORT ALIASES: not supported
        assert_eq!(key(decode(&v)), (0x24, 0));
    }

    #[test]
    fn naca_is_rejected() {
        assert_eq!(key(decode(&[0, 0, 0, 0, 0, 0x04])), (0x24, 0));
    }

    #[test]
    fn random_cdbs_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = [0u8; 20];
        for _ in 0..200_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x & 0xFF) as u8;
            }
            let n = usize::try_from(x % 21).unwrap();
            if let Ok(cmd) = decode(&buf[..n]) {
                let _ = cmd.transfer(512);
            }
        }
    }
}
