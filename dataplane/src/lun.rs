//! The one LUN codec of the data plane: the 8-byte LUN field of SAM-5 4.7, single level
//! only, as we hand LUNs out. LUNs below 256 use peripheral device addressing (00b), LUNs
//! 256..=16383 flat space addressing (01b); any other form (hierarchical, extended, a
//! second level) does not name one of our logical units.
//!
//! It sits below both users so neither imports the other: `pdu` reads the LUN field of a
//! BHS with it (RFC 7143 §11.2.1.4 carries the SAM LUN as is) and `scsi::luns` writes REPORT
//! LUNS parameter data with it (SPC-4 6.33). The value is the field as a big-endian `u64`,
//! the way the BHS holds it.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

/// Highest LUN that single-level flat space addressing can express.
pub const LUN_MAX: u16 = 16383;

/// Decodes a LUN field into a LUN number; `None` for addressing methods we never hand out
/// (the transport answers those as a missing LUN).
pub fn decode(raw: u64) -> Option<u16> {
    let b = raw.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(u16::from(b[1])),
        1 => Some(u16::from_be_bytes([b[0] & 0x3F, b[1]])),
        _ => None,
    }
}

/// Encodes a LUN number as REPORT LUNS lists it. Numbers above [`LUN_MAX`] keep their low
/// 14 bits; callers never build a logical unit above it.
pub fn encode(lun: u16) -> u64 {
    let [hi, lo] = lun.to_be_bytes();
    let first = if lun < 256 { 0 } else { 0x40 | (hi & 0x3F) };
    u64::from_be_bytes([first, lo, 0, 0, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_peripheral_and_flat_addressing() {
        assert_eq!(encode(0).to_be_bytes(), [0; 8]);
        assert_eq!(encode(255).to_be_bytes(), [0, 255, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(256).to_be_bytes(), [0x41, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(16383).to_be_bytes(), [0x7F, 0xFF, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn decoding_an_encoded_lun_gives_it_back() {
        for lun in [0u16, 1, 255, 256, 1000, LUN_MAX] {
            assert_eq!(decode(encode(lun)), Some(lun));
        }
    }

    #[test]
    fn other_addressing_methods_name_no_lun() {
        assert_eq!(decode(0x0001_0000_0000_0000), Some(1));
        // Logical unit addressing (10b), extended (11b), and a second level.
        assert_eq!(decode(0x8000_0000_0000_0000), None);
        assert_eq!(decode(0xC000_0000_0000_0000), None);
        assert_eq!(decode(0x0001_0001_0000_0000), None);
        // Peripheral addressing with a bus identifier.
        assert_eq!(decode(0x0101_0000_0000_0000), None);
    }
}
