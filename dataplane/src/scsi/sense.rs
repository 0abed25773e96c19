//! Sense data (SPC-4 4.5): fixed-format (response code 70h) encoding and the sense key /
//! additional sense code vocabulary we use (SPC-4 Annex D), one named constructor per
//! condition the target raises. No other module spells an ASC/ASCQ pair: callers name the
//! condition. What a backend failure looks like to SCSI is decided in `crate::lu::medium`,
//! from these constructors, because this layer knows nothing of backends.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

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
    /// An EXTENDED COPY stopped (SPC-4 5.17.7).
    CopyAborted = 0xA,
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
    /// Progress indication for NOT READY (sense-key specific bytes, SPC-4 4.5.2.4.4): the
    /// fraction done, in 65536ths.
    pub progress: Option<u16>,
}

/// Length of the fixed-format sense data we produce.
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// A condition without information or field pointer. Private: callers name the
    /// condition with one of the constructors below.
    const fn new(key: SenseKey, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            information: None,
            field: None,
            progress: None,
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

    /// NOT READY 04h/0Ah LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION
    /// (SPC-4 5.15.2.5: the target port group is transitioning; the initiator retries).
    pub const fn lu_not_accessible_transition() -> Self {
        Self::new(SenseKey::NotReady, 0x04, 0x0A)
    }

    /// NOT READY 04h/0Bh LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE
    /// (SPC-4 5.15.2.4.4).
    pub const fn lu_not_accessible_standby() -> Self {
        Self::new(SenseKey::NotReady, 0x04, 0x0B)
    }

    /// NOT READY 04h/0Ch LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE
    /// (SPC-4 5.15.2.4.5).
    pub const fn lu_not_accessible_unavailable() -> Self {
        Self::new(SenseKey::NotReady, 0x04, 0x0C)
    }

    /// NOT READY 04h/1Bh LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS, with the fraction
    /// done in 65536ths as progress indication (SBC-4 4.33).
    pub const fn sanitize_in_progress(progress: u16) -> Self {
        Self {
            progress: Some(progress),
            ..Self::new(SenseKey::NotReady, 0x04, 0x1B)
        }
    }

    /// MEDIUM ERROR 31h/03h SANITIZE COMMAND FAILED: the medium is in sanitize failure
    /// mode until a SANITIZE succeeds or EXIT FAILURE MODE (SBC-4 4.33.3).
    pub const fn sanitize_failed() -> Self {
        Self::new(SenseKey::MediumError, 0x31, 0x03)
    }

    /// COPY ABORTED 0Dh/02h COPY TARGET DEVICE NOT REACHABLE: an EXTENDED COPY names a
    /// logical unit we do not have, or a descriptor index beyond its list.
    pub const fn copy_target_not_reachable() -> Self {
        Self::new(SenseKey::CopyAborted, 0x0D, 0x02)
    }

    /// COPY ABORTED 00h/00h: a copy target refused a segment (out of range, write
    /// protected, not ready); the copy stops there.
    pub const fn copy_segment_failed() -> Self {
        Self::new(SenseKey::CopyAborted, 0x00, 0x00)
    }

    /// ILLEGAL REQUEST 26h/06h TOO MANY TARGET DESCRIPTORS.
    pub const fn too_many_target_descriptors() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x06)
    }

    /// ILLEGAL REQUEST 26h/07h UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    pub const fn unsupported_target_descriptor() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x07)
    }

    /// ILLEGAL REQUEST 26h/08h TOO MANY SEGMENT DESCRIPTORS.
    pub const fn too_many_segment_descriptors() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x08)
    }

    /// ILLEGAL REQUEST 26h/09h UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    pub const fn unsupported_segment_descriptor() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x09)
    }

    /// ILLEGAL REQUEST 55h/03h INSUFFICIENT RESOURCES: more concurrent copies than
    /// MAXIMUM CONCURRENT COPIES.
    pub const fn insufficient_resources() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x55, 0x03)
    }

    /// ILLEGAL REQUEST 53h/02h MEDIUM REMOVAL PREVENTED.
    pub const fn medium_removal_prevented() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x53, 0x02)
    }

    /// UNIT ATTENTION 28h/00h NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const fn not_ready_to_ready_change() -> Self {
        Self::unit_attention(0x28, 0x00)
    }

    /// ABORTED COMMAND 2Fh/00h COMMANDS CLEARED BY ANOTHER INITIATOR: task management
    /// ended a command that was waiting (a reset from another I_T nexus).
    pub const fn commands_cleared() -> Self {
        Self::new(SenseKey::AbortedCommand, 0x2F, 0x00)
    }

    /// MISCOMPARE 1Dh/00h MISCOMPARE DURING VERIFY OPERATION, INFORMATION = byte offset.
    pub const fn miscompare(offset: u32) -> Self {
        Self {
            information: Some(offset),
            ..Self::new(SenseKey::Miscompare, 0x1D, 0x00)
        }
    }

    /// UNIT ATTENTION with the given ASC/ASCQ.
    const fn unit_attention(asc: u8, ascq: u8) -> Self {
        Self::new(SenseKey::UnitAttention, asc, ascq)
    }

    /// NO SENSE 00h/00h: what REQUEST SENSE returns when nothing is pending.
    pub const fn no_sense() -> Self {
        Self::new(SenseKey::NoSense, 0x00, 0x00)
    }

    /// MEDIUM ERROR 0Ch/00h WRITE ERROR.
    pub const fn write_error() -> Self {
        Self::new(SenseKey::MediumError, 0x0C, 0x00)
    }

    /// MEDIUM ERROR 11h/00h UNRECOVERED READ ERROR.
    pub const fn unrecovered_read_error() -> Self {
        Self::new(SenseKey::MediumError, 0x11, 0x00)
    }

    /// DATA PROTECT 27h/07h SPACE ALLOCATION FAILED WRITE PROTECT (SBC-3 4.7.3.7: a thin
    /// provisioned unit ran out of space).
    pub const fn space_allocation_failed() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x07)
    }

    /// HARDWARE ERROR 44h/00h INTERNAL TARGET FAILURE.
    pub const fn internal_target_failure() -> Self {
        Self::new(SenseKey::HardwareError, 0x44, 0x00)
    }

    /// ABORTED COMMAND 47h/05h PROTOCOL SERVICE CRC ERROR (RFC 7143 §7.8: a data digest
    /// error ends the command at ERL 0).
    pub const fn protocol_service_crc_error() -> Self {
        Self::new(SenseKey::AbortedCommand, 0x47, 0x05)
    }

    /// ABORTED COMMAND 4Bh/00h DATA PHASE ERROR (the Data-Out sequence ended short).
    pub const fn data_phase_error() -> Self {
        Self::new(SenseKey::AbortedCommand, 0x4B, 0x00)
    }

    /// ILLEGAL REQUEST 55h/04h INSUFFICIENT REGISTRATION RESOURCES (SPC-4 5.12.7).
    pub const fn insufficient_registration_resources() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x55, 0x04)
    }

    /// ILLEGAL REQUEST 26h/04h INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4 5.12.11.2).
    pub const fn invalid_release_of_persistent_reservation() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x04)
    }

    /// UNIT ATTENTION 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const fn reset_occurred() -> Self {
        Self::unit_attention(0x29, 0x00)
    }

    /// UNIT ATTENTION 2Ah/01h MODE PARAMETERS CHANGED.
    pub const fn mode_parameters_changed() -> Self {
        Self::unit_attention(0x2A, 0x01)
    }

    /// UNIT ATTENTION 2Ah/03h RESERVATIONS PREEMPTED.
    pub const fn reservations_preempted() -> Self {
        Self::unit_attention(0x2A, 0x03)
    }

    /// UNIT ATTENTION 2Ah/04h RESERVATIONS RELEASED.
    pub const fn reservations_released() -> Self {
        Self::unit_attention(0x2A, 0x04)
    }

    /// UNIT ATTENTION 2Ah/05h REGISTRATIONS PREEMPTED.
    pub const fn registrations_preempted() -> Self {
        Self::unit_attention(0x2A, 0x05)
    }

    /// UNIT ATTENTION 2Ah/09h CAPACITY DATA HAS CHANGED (SBC-3 4.11).
    pub const fn capacity_data_changed() -> Self {
        Self::unit_attention(0x2A, 0x09)
    }

    /// UNIT ATTENTION 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED (SPC-4 5.15.2.3).
    pub const fn asymmetric_access_state_changed() -> Self {
        Self::unit_attention(0x2A, 0x06)
    }

    /// UNIT ATTENTION 3Fh/03h INQUIRY DATA HAS CHANGED (SPC-4 6.6).
    pub const fn inquiry_data_changed() -> Self {
        Self::unit_attention(0x3F, 0x03)
    }

    /// UNIT ATTENTION 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED (SPC-4 6.33).
    pub const fn reported_luns_changed() -> Self {
        Self::unit_attention(0x3F, 0x0E)
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
        } else if let Some(p) = self.progress {
            // SKSV and the PROGRESS INDICATION.
            s[15] = 0x80;
            s[16..18].copy_from_slice(&p.to_be_bytes());
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
    fn encodes_sanitize_progress_as_sense_key_specific_bytes() {
        let s = Sense::sanitize_in_progress(0x8000).encode();
        assert_eq!(s[2], 0x02);
        assert_eq!((s[12], s[13]), (0x04, 0x1B));
        assert_eq!(s[15], 0x80);
        assert_eq!(&s[16..18], &[0x80, 0]);
        let f = Sense::sanitize_failed().encode();
        assert_eq!((f[2], f[12], f[13], f[15]), (0x03, 0x31, 0x03, 0));
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
    fn no_sense_is_the_empty_fixed_format() {
        let mut want = vec![0u8; FIXED_SENSE_LEN];
        want[0] = 0x70;
        want[7] = 10;
        assert_eq!(Sense::no_sense().encode(), want);
    }
}
