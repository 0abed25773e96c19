//! Sense data (SPC-4 4.5): fixed-format (response code 70h) encoding, the sense key /
//! additional sense code vocabulary we use, and the single mapping from backend error kinds
//! to sense (house rule: no other module decides what a backend failure looks like to SCSI).

use crate::backend::ErrorKind;

/// SPC-4 4.5.6 sense keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    /// No error to report.
    NoSense = 0x0,
    /// The logical unit cannot be accessed right now.
    NotReady = 0x2,
    /// Unrecovered medium error.
    MediumError = 0x3,
    /// Non-recoverable hardware failure.
    HardwareError = 0x4,
    /// Bad CDB or parameter data.
    IllegalRequest = 0x5,
    /// Something changed; reported once per I_T nexus.
    UnitAttention = 0x6,
    /// Write protection or space allocation failure.
    DataProtect = 0x7,
    /// The command was aborted by the device server.
    AbortedCommand = 0xB,
    /// Verify/compare found different data.
    Miscompare = 0xE,
}

/// Where in the CDB or parameter list an invalid field is (sense-key specific bytes,
/// SPC-4 4.5.2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPointer {
    /// True when the field is in the CDB, false when it is in the parameter list.
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// Bit position of the field's most significant bit, when known.
    pub bit: Option<u8>,
}

/// One sense condition, before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: SenseKey,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// INFORMATION field (VALID=1 when present), e.g. the miscompare offset.
    pub information: Option<u32>,
    /// Field pointer for ILLEGAL REQUEST.
    pub field: Option<FieldPointer>,
}

/// Length of the fixed-format sense data we produce.
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// A condition without information or field pointer.
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            information: None,
            field: None,
        }
    }

    /// 20h/00h INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte: 0,
                bit: Some(7),
            }),
            ..Self::new(SenseKey::IllegalRequest, 0x20, 0x00)
        }
    }

    /// 24h/00h INVALID FIELD IN CDB, pointing at `byte` (and `bit` when given).
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
            ..Self::new(SenseKey::IllegalRequest, 0x24, 0x00)
        }
    }

    /// 26h/00h INVALID FIELD IN PARAMETER LIST.
    pub const fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit,
            }),
            ..Self::new(SenseKey::IllegalRequest, 0x26, 0x00)
        }
    }

    /// 1Ah/00h PARAMETER LIST LENGTH ERROR.
    pub const fn param_list_length_error() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x1A, 0x00)
    }

    /// 21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x21, 0x00)
    }

    /// 25h/00h LOGICAL UNIT NOT SUPPORTED.
    pub const fn lun_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x25, 0x00)
    }

    /// 39h/00h SAVING PARAMETERS NOT SUPPORTED.
    pub const fn saving_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x39, 0x00)
    }

    /// DATA PROTECT 27h/00h WRITE PROTECTED.
    pub const fn write_protected() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x00)
    }

    /// NOT READY 3Ah/00h MEDIUM NOT PRESENT.
    pub const fn medium_not_present() -> Self {
        Self::new(SenseKey::NotReady, 0x3A, 0x00)
    }

    /// NOT READY 04h/00h LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const fn not_ready() -> Self {
        Self::new(SenseKey::NotReady, 0x04, 0x00)
    }

    /// MISCOMPARE 1Dh/00h MISCOMPARE DURING VERIFY OPERATION, INFORMATION = byte offset.
    pub const fn miscompare(offset: u32) -> Self {
        Self {
            information: Some(offset),
            ..Self::new(SenseKey::Miscompare, 0x1D, 0x00)
        }
    }

    /// UNIT ATTENTION with the given ASC/ASCQ.
    pub const fn unit_attention(asc: u8, ascq: u8) -> Self {
        Self::new(SenseKey::UnitAttention, asc, ascq)
    }

    /// The sense for a backend failure. `writing` picks WRITE ERROR over UNRECOVERED READ
    /// ERROR for medium failures.
    pub fn from_backend(kind: ErrorKind, writing: bool) -> Self {
        match kind {
            ErrorKind::Io if writing => Self::new(SenseKey::MediumError, 0x0C, 0x00),
            ErrorKind::Io => Self::new(SenseKey::MediumError, 0x11, 0x00),
            ErrorKind::NoSpace => Self::new(SenseKey::DataProtect, 0x27, 0x07),
            ErrorKind::OutOfRange => Self::lba_out_of_range(),
            ErrorKind::ReadOnly => Self::write_protected(),
            ErrorKind::NotReady => Self::not_ready(),
            // The backend cannot do it, the command itself was fine: report a target failure
            // rather than blaming the CDB.
            ErrorKind::Unsupported => Self::new(SenseKey::HardwareError, 0x44, 0x00),
        }
    }

    /// Fixed-format sense data, 18 bytes (SPC-4 4.5.3).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = vec![0u8; FIXED_SENSE_LEN];
        s[0] = 0x70;
        if let Some(info) = self.information {
            s[0] |= 0x80;
            s[3..7].copy_from_slice(&info.to_be_bytes());
        }
        s[2] = self.key as u8;
        // Additional sense length: bytes 8..18.
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(f) = self.field {
            let mut b15 = 0x80u8;
            if f.in_cdb {
                b15 |= 0x40;
            }
            if let Some(bit) = f.bit {
                b15 |= 0x08 | (bit & 0x07);
            }
            s[15] = b15;
            s[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fixed_format_with_field_pointer() {
        let s = Sense::invalid_field_in_cdb(2, Some(4)).encode();
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!(s[7], 10);
        assert_eq!((s[12], s[13]), (0x24, 0x00));
        assert_eq!(s[15], 0x80 | 0x40 | 0x08 | 4);
        assert_eq!(&s[16..18], &[0, 2]);
    }

    #[test]
    fn encodes_information_for_miscompare() {
        let s = Sense::miscompare(0x1234).encode();
        assert_eq!(s[0], 0xF0);
        assert_eq!(s[2], 0x0E);
        assert_eq!(&s[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!((s[12], s[13]), (0x1D, 0x00));
        assert_eq!(s[15], 0);
    }

    #[test]
    fn maps_backend_kinds() {
        let cases = [
            (ErrorKind::Io, false, SenseKey::MediumError, 0x11, 0x00),
            (ErrorKind::Io, true, SenseKey::MediumError, 0x0C, 0x00),
            (ErrorKind::NoSpace, true, SenseKey::DataProtect, 0x27, 0x07),
            (
                ErrorKind::OutOfRange,
                false,
                SenseKey::IllegalRequest,
                0x21,
                0x00,
            ),
            (ErrorKind::ReadOnly, true, SenseKey::DataProtect, 0x27, 0x00),
            (ErrorKind::NotReady, false, SenseKey::NotReady, 0x04, 0x00),
        ];
        for (kind, w, key, asc, ascq) in cases {
            let s = Sense::from_backend(kind, w);
            assert_eq!((s.key, s.asc, s.ascq), (key, asc, ascq), "{kind:?}");
        }
    }
}
