//! LUN addressing (SAM-5 4.7) and REPORT LUNS parameter data (SPC-4 6.33).
//!
//! We use single-level LUNs: peripheral device addressing for LUNs below 256 and flat
//! space addressing (01b) for 256..=16383. The LUN field codec itself is `crate::lun`,
//! shared with the PDU codec.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;

pub use crate::lun::LUN_MAX;

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
        out.extend_from_slice(&crate::lun::encode(l).to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
