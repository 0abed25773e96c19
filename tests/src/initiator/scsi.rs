//! The handful of SCSI commands the test initiator issues (SPC-4 and SBC-3): CDB builders and
//! parsers for their answers, plus sense data decoding (SPC-4 §4.5). No iSCSI here.

use super::Error;

/// SCSI status GOOD (SAM-5 §5.3.1).
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const STATUS_CHECK_CONDITION: u8 = 0x02;
/// Sense key UNIT ATTENTION (SPC-4 §4.5.6).
pub const SENSE_KEY_UNIT_ATTENTION: u8 = 0x06;

/// TEST UNIT READY (SPC-4 §6.47).
pub fn test_unit_ready() -> [u8; 6] {
    [0; 6]
}

/// INQUIRY (SPC-4 §6.6) of the standard page with `alloc_len`.
pub fn inquiry(alloc_len: u16) -> [u8; 6] {
    let l = alloc_len.to_be_bytes();
    [0x12, 0, 0, l[0], l[1], 0]
}

/// REQUEST SENSE (SPC-4 §6.39) asking for fixed-format sense of up to `alloc_len` bytes.
pub fn request_sense(alloc_len: u8) -> [u8; 6] {
    [0x03, 0, 0, 0, alloc_len, 0]
}

/// REPORT LUNS (SPC-4 §6.33), SELECT REPORT 00h, with `alloc_len` (at least 16).
pub fn report_luns(alloc_len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xa0;
    c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

/// READ CAPACITY (16) (SBC-3 §5.16).
pub fn read_capacity16() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[13] = 32;
    c
}

/// READ (10) (SBC-3 §5.11).
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(0x28, lba, blocks)
}

/// WRITE (10) (SBC-3 §5.32).
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(0x2a, lba, blocks)
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ (16) (SBC-3 §5.13).
pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x88, lba, blocks)
}

/// WRITE (16) (SBC-3 §5.34).
pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x8a, lba, blocks)
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// The READ CAPACITY (16) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Number of logical blocks (last LBA + 1).
    pub blocks: u64,
    /// Logical block length in bytes.
    pub block_len_bytes: u32,
}

/// Parses READ CAPACITY (16) parameter data.
pub fn parse_capacity16(d: &[u8]) -> Result<Capacity, Error> {
    if d.len() < 12 {
        return Err(Error::Protocol(format!(
            "READ CAPACITY (16) returned {} bytes",
            d.len()
        )));
    }
    let mut last = [0u8; 8];
    last.copy_from_slice(&d[0..8]);
    let block_len_bytes = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    if block_len_bytes == 0 {
        return Err(Error::Protocol("READ CAPACITY (16) block length 0".into()));
    }
    Ok(Capacity {
        blocks: u64::from_be_bytes(last).wrapping_add(1),
        block_len_bytes,
    })
}

/// Parses REPORT LUNS parameter data (SPC-4 §6.33) into LUN numbers, in the order listed.
/// Only single-level peripheral (00b) and flat space (01b) addressing is understood; the
/// list must be whole, so `d` must hold every entry the LUN LIST LENGTH announces.
pub fn parse_report_luns(d: &[u8]) -> Result<Vec<u64>, Error> {
    if d.len() < 8 {
        return Err(Error::Protocol(format!(
            "REPORT LUNS returned {} bytes, fewer than the 8-byte header",
            d.len()
        )));
    }
    let list_len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let list_len = usize::try_from(list_len).unwrap_or(usize::MAX);
    if list_len % 8 != 0 || d.len() - 8 < list_len {
        return Err(Error::Protocol(format!(
            "REPORT LUNS list length {list_len} with {} bytes of list",
            d.len() - 8
        )));
    }
    d[8..8 + list_len]
        .chunks(8)
        .map(|e| {
            if e[2..].iter().any(|&b| b != 0) {
                return Err(Error::Protocol(format!("multi-level LUN {e:02x?}")));
            }
            match e[0] >> 6 {
                0 if e[0] == 0 => Ok(u64::from(e[1])),
                1 => Ok(u64::from(e[0] & 0x3f) << 8 | u64::from(e[1])),
                _ => Err(Error::Protocol(format!("LUN addressing of {e:02x?}"))),
            }
        })
        .collect()
}

/// The standard INQUIRY fields the tests look at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inquiry {
    /// Peripheral device type (0 = direct access block device).
    pub device_type: u8,
    /// T10 vendor identification, trimmed.
    pub vendor: String,
    /// Product identification, trimmed.
    pub product: String,
    /// Product revision level, trimmed.
    pub revision: String,
}

/// Parses standard INQUIRY data (SPC-4 §6.6.2).
pub fn parse_inquiry(d: &[u8]) -> Result<Inquiry, Error> {
    if d.len() < 36 {
        return Err(Error::Protocol(format!(
            "standard INQUIRY returned {} bytes, fewer than 36",
            d.len()
        )));
    }
    let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&d[r]).trim().to_string();
    Ok(Inquiry {
        device_type: d[0] & 0x1f,
        vendor: s(8..16),
        product: s(16..32),
        revision: s(32..36),
    })
}

/// Decoded sense key and additional sense code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sense key {:#x} asc {:#04x} ascq {:#04x}",
            self.key, self.asc, self.ascq
        )
    }
}

/// Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data.
pub fn parse_sense(s: &[u8]) -> Option<Sense> {
    match s.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) if s.len() >= 14 => Some(Sense {
            key: s[2] & 0x0f,
            asc: s[12],
            ascq: s[13],
        }),
        Some(0x72 | 0x73) if s.len() >= 4 => Some(Sense {
            key: s[1] & 0x0f,
            asc: s[2],
            ascq: s[3],
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs_have_sbc_layout() {
        assert_eq!(
            read16(0x0102_0304_0506_0708, 8)[2..14],
            [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 8]
        );
        assert_eq!(write10(0x10, 2), [0x2a, 0, 0, 0, 0, 0x10, 0, 0, 2, 0]);
        assert_eq!(inquiry(255), [0x12, 0, 0, 0, 255, 0]);
    }

    #[test]
    fn parses_capacity_and_sense() {
        let mut d = [0u8; 32];
        d[7] = 0xff;
        d[10] = 2;
        let c = parse_capacity16(&d).unwrap();
        assert_eq!(c.blocks, 256);
        assert_eq!(c.block_len_bytes, 512);
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = 0x05;
        s[12] = 0x21;
        assert_eq!(
            parse_sense(&s),
            Some(Sense {
                key: 5,
                asc: 0x21,
                ascq: 0
            })
        );
        assert_eq!(parse_sense(&[0x72, 0x06, 0x29, 0x00]).unwrap().key, 6);
        assert_eq!(parse_sense(&[0x70]), None);
    }

    #[test]
    fn parses_report_luns_in_both_single_level_formats() {
        assert_eq!(report_luns(4096)[6..10], [0, 0, 0x10, 0]);
        let mut d = vec![0, 0, 0, 24, 0, 0, 0, 0];
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0, 7, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_report_luns(&d).unwrap(), vec![0, 7, 300]);
        assert!(parse_report_luns(&d[..20]).is_err());
        d[8] = 0x80;
        assert!(parse_report_luns(&d).is_err());
    }
}
