//! LUN addressing (SAM-5 4.7) and REPORT LUNS parameter data (SPC-4 6.33).
//!
//! We use single-level LUNs: peripheral device addressing for LUNs below 256 and flat
//! space addressing (01b) for 256..=16383.

use super::sense::Sense;

/// Highest LUN that single-level flat space addressing can express.
pub const LUN_MAX: u16 = 16383;

/// Encodes a LUN as the 8-byte SAM LUN field.
pub fn encode_lun(lun: u16) -> [u8; 8] {
    let mut out = [0u8; 8];
    let [hi, lo] = lun.to_be_bytes();
    if lun < 256 {
        out[1] = lo;
    } else {
        out[0] = 0x40 | (hi & 0x3F);
        out[1] = lo;
    }
    out
}

/// Decodes an 8-byte SAM LUN field into a LUN number; `None` for hierarchical or other
/// addressing methods we never hand out (the transport answers those with LUN NOT SUPPORTED).
pub fn decode_lun(raw: [u8; 8]) -> Option<u16> {
    if raw[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match raw[0] >> 6 {
        0 if raw[0] == 0 => Some(u16::from(raw[1])),
        1 => Some(u16::from_be_bytes([raw[0] & 0x3F, raw[1]])),
        _ => None,
    }
}

/// REPORT LUNS parameter data (untruncated) for the LUNs in `luns` (sorted by the caller
/// or not; we sort). SELECT REPORT 01h (well-known LUs only) returns an empty list.
pub fn report_luns(select: u8, luns: &[u16]) -> Result<Vec<u8>, Sense> {
    let mut list: Vec<u16> = match select {
        0x00 | 0x02 => luns.to_vec(),
        0x01 => Vec::new(),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(7))),
    };
    list.sort_unstable();
    list.dedup();
    let len = u32::try_from(list.len() * 8).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(8 + list.len() * 8);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for l in list {
        out.extend_from_slice(&encode_lun(l));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_peripheral_and_flat() {
        assert_eq!(encode_lun(0), [0; 8]);
        assert_eq!(encode_lun(255), [0, 255, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(256), [0x41, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(16383), [0x7F, 0xFF, 0, 0, 0, 0, 0, 0]);
        for l in [0u16, 1, 255, 256, 1000, 16383] {
            assert_eq!(decode_lun(encode_lun(l)), Some(l));
        }
        assert_eq!(decode_lun([0x80, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode_lun([0, 1, 0, 1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn report_luns_lists_sorted() {
        let d = report_luns(0, &[300, 0, 7]).unwrap();
        assert_eq!(&d[0..4], &24u32.to_be_bytes());
        assert_eq!(d[9], 0);
        assert_eq!(d[17], 7);
        assert_eq!(d[24], 0x41);
        assert_eq!(report_luns(1, &[0]).unwrap().len(), 8);
        assert_eq!(report_luns(3, &[0]).unwrap_err().asc, 0x24);
    }
}
