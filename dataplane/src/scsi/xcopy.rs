//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18; 5.17 for the copy
//! manager model): the parameter list parsed into copy targets and block-to-block segments,
//! the limits we advertise, and the RECEIVE COPY RESULTS parameter data. Pure: the logical
//! unit (`crate::lu`) resolves the copy targets to its target's logical units and moves the
//! blocks.
//!
//! Offered: identification CSCD descriptors (E4h) naming a logical unit by the NAA designator
//! of its Device Identification page, and block device to block device segment descriptors
//! (02h). Everything else is refused with the SPC-4 sense for an unsupported descriptor.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;

/// Most CSCD (target) descriptors in one EXTENDED COPY.
pub const MAX_CSCD_DESCRIPTORS: u16 = 4;
/// Most segment descriptors in one EXTENDED COPY.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 16;
/// Length of an identification CSCD descriptor (E4h).
pub const CSCD_DESCRIPTOR_BYTES: usize = 32;
/// Length of a block-to-block segment descriptor (02h).
pub const SEGMENT_DESCRIPTOR_BYTES: usize = 28;
/// MAXIMUM DESCRIPTOR LIST LENGTH: room for one descriptor of each kind beyond the counts, so
/// a list with one too many descriptors is reported as such, not as too long.
pub const MAX_DESCRIPTOR_LIST_BYTES: u32 =
    (MAX_CSCD_DESCRIPTORS as u32 + 1) * 32 + (MAX_SEGMENT_DESCRIPTORS as u32 + 1) * 28;
const _: () = assert!(CSCD_DESCRIPTOR_BYTES == 32 && SEGMENT_DESCRIPTOR_BYTES == 28);
/// MAXIMUM SEGMENT LENGTH in bytes: what one segment may copy (the CDB field allows 65535
/// blocks; 64 MiB bounds one command's work).
pub const MAX_SEGMENT_BYTES: u32 = 64 << 20;
/// Copies one logical unit runs at once (MAXIMUM CONCURRENT COPIES).
pub const MAX_CONCURRENT_COPIES: u8 = 4;

const TYPE_IDENTIFICATION_CSCD: u8 = 0xE4;
const TYPE_BLOCK_TO_BLOCK: u8 = 0x02;
/// NAA designator type in a designation descriptor (SPC-4 7.8.6.1).
const DESIGNATOR_NAA: u8 = 0x03;

/// One copy target, named by the NAA designator of a logical unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyTarget {
    /// The 16-byte NAA identifier.
    pub naa: [u8; 16],
    /// DISK BLOCK LENGTH the initiator expects.
    pub block_size: u32,
}

/// One block-to-block segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the source in the CSCD descriptor list.
    pub source: u16,
    /// Index of the destination in the CSCD descriptor list.
    pub destination: u16,
    /// Blocks to copy.
    pub blocks: u16,
    /// First source LBA.
    pub source_lba: u64,
    /// First destination LBA.
    pub destination_lba: u64,
}

/// A parsed EXTENDED COPY parameter list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// Whether RECEIVE COPY RESULTS may ask for this copy's status (LIST ID USAGE 00b or
    /// 01b).
    pub held: bool,
    /// The copy targets, in descriptor order.
    pub targets: Vec<CopyTarget>,
    /// The segments, in the order they run.
    pub segments: Vec<Segment>,
}

/// COPY ABORTED (0Ah) sense with the given additional sense code.
fn copy_aborted_target() -> Sense {
    Sense::copy_target_not_reachable()
}

/// Parses an EXTENDED COPY (LID1) parameter list of `param_len` bytes. An empty list is a
/// copy of nothing (`None`).
pub fn parse(data: &[u8], param_len: u32) -> Result<Option<CopyList>, Sense> {
    if param_len == 0 {
        return Ok(None);
    }
    let n = usize::try_from(param_len).map_err(|_| Sense::param_list_length_error())?;
    let list = data.get(..n).ok_or(Sense::param_list_length_error())?;
    if list.len() < 16 {
        return Err(Sense::param_list_length_error());
    }
    let be32 = |i: usize| u32::from_be_bytes([list[i], list[i + 1], list[i + 2], list[i + 3]]);
    let cscd_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    let seg_len = usize::try_from(be32(8)).map_err(|_| Sense::param_list_length_error())?;
    let inline_len = usize::try_from(be32(12)).map_err(|_| Sense::param_list_length_error())?;
    if cscd_len.saturating_add(seg_len) > MAX_DESCRIPTOR_LIST_BYTES as usize {
        return Err(Sense::param_list_length_error());
    }
    if inline_len != 0 {
        // We advertise MAXIMUM INLINE DATA LENGTH 0.
        return Err(Sense::invalid_field_in_param(12, None));
    }
    if 16 + cscd_len + seg_len > list.len() {
        return Err(Sense::param_list_length_error());
    }
    let usage = (list[1] >> 3) & 0x03;
    if usage == 0x03 && list[0] != 0 {
        return Err(Sense::invalid_field_in_param(0, None));
    }
    let cscds = &list[16..16 + cscd_len];
    let mut targets = Vec::new();
    let mut at = 0usize;
    while at < cscds.len() {
        let d = &cscds[at..];
        if d[0] != TYPE_IDENTIFICATION_CSCD {
            return Err(Sense::unsupported_target_descriptor());
        }
        if targets.len() >= usize::from(MAX_CSCD_DESCRIPTORS) {
            return Err(Sense::too_many_target_descriptors());
        }
        let d = d
            .get(..CSCD_DESCRIPTOR_BYTES)
            .ok_or(Sense::param_list_length_error())?;
        let pointer = u16::try_from(16 + at).unwrap_or(u16::MAX);
        // PERIPHERAL DEVICE TYPE: only block devices (LU ID TYPE is ignored, SPC-4 6.4.5.2;
        // NUL is obsolete).
        if d[1] & 0x1F != 0 {
            return Err(Sense::invalid_field_in_param(pointer + 1, Some(4)));
        }
        // The designation descriptor: an NAA designator of 16 bytes.
        if d[5] & 0x0F != DESIGNATOR_NAA || d[7] != 16 {
            return Err(copy_aborted_target());
        }
        let mut naa = [0u8; 16];
        naa.copy_from_slice(&d[8..24]);
        targets.push(CopyTarget {
            naa,
            block_size: u32::from_be_bytes([0, d[29], d[30], d[31]]),
        });
        at += CSCD_DESCRIPTOR_BYTES;
    }
    let segs = &list[16 + cscd_len..16 + cscd_len + seg_len];
    let mut segments = Vec::new();
    let mut at = 0usize;
    while at < segs.len() {
        let d = &segs[at..];
        if d[0] != TYPE_BLOCK_TO_BLOCK {
            return Err(Sense::unsupported_segment_descriptor());
        }
        if segments.len() >= usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(Sense::too_many_segment_descriptors());
        }
        let d = d
            .get(..SEGMENT_DESCRIPTOR_BYTES)
            .ok_or(Sense::param_list_length_error())?;
        let be16 = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        let be64 = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let pointer = u16::try_from(16 + cscd_len + at).unwrap_or(u16::MAX);
        if usize::from(be16(2)) != SEGMENT_DESCRIPTOR_BYTES - 4 {
            return Err(Sense::invalid_field_in_param(pointer + 2, None));
        }
        segments.push(Segment {
            source: be16(4),
            destination: be16(6),
            blocks: be16(10),
            source_lba: be64(12),
            destination_lba: be64(20),
        });
        at += SEGMENT_DESCRIPTOR_BYTES;
    }
    Ok(Some(CopyList {
        list_id: list[0],
        held: usage <= 0x01,
        targets,
        segments,
    }))
}

/// How a copy ended, as RECEIVE COPY RESULTS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyStatus {
    /// Completed without error.
    pub good: bool,
    /// Segments fully processed.
    pub segments_processed: u16,
    /// Bytes written to destinations.
    pub bytes: u64,
    /// The sense data the EXTENDED COPY ended with, when it failed.
    pub sense: Option<Sense>,
}

/// RECEIVE COPY RESULTS / COPY STATUS parameter data (SPC-4 6.18.2).
pub fn copy_status_data(s: &CopyStatus) -> Vec<u8> {
    let mut d = vec![0u8; 12];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    // COPY MANAGER STATUS: 01h completed without error, 02h completed with error.
    d[4] = if s.good { 0x01 } else { 0x02 };
    d[5..7].copy_from_slice(&s.segments_processed.to_be_bytes());
    // TRANSFER COUNT UNITS: in KiB (F1h) when bytes would not fit.
    let (units, count) = match u32::try_from(s.bytes) {
        Ok(b) => (0x00, b),
        Err(_) => (0xF1, u32::try_from(s.bytes >> 10).unwrap_or(u32::MAX)),
    };
    d[7] = units;
    d[8..12].copy_from_slice(&count.to_be_bytes());
    d
}

/// RECEIVE COPY RESULTS / FAILED SEGMENT DETAILS parameter data (SPC-4 6.18.3): the sense
/// data of a failed copy, or nothing to report for one that completed.
pub fn failed_segment_data(s: &CopyStatus) -> Vec<u8> {
    let Some(sense) = s.sense else {
        return vec![0u8; 4];
    };
    let sense = sense.encode();
    let mut d = vec![0u8; 60];
    d[56] = 0x02; // COPY COMMAND STATUS: CHECK CONDITION.
    d[58..60].copy_from_slice(&u16::try_from(sense.len()).unwrap_or(0).to_be_bytes());
    d.extend_from_slice(&sense);
    let avail = u32::try_from(d.len() - 4).unwrap_or(0);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d
}

/// RECEIVE COPY RESULTS / OPERATING PARAMETERS parameter data (SPC-4 6.18.4).
pub fn operating_parameters() -> Vec<u8> {
    let implemented = [TYPE_BLOCK_TO_BLOCK, TYPE_IDENTIFICATION_CSCD];
    let mut d = vec![0u8; 44];
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_BYTES.to_be_bytes());
    d[16..20].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0.
    d[34..36].copy_from_slice(&u16::from(MAX_CONCURRENT_COPIES).to_be_bytes());
    d[36] = MAX_CONCURRENT_COPIES;
    // DATA SEGMENT GRANULARITY: 2^9 bytes.
    d[37] = 9;
    d[43] = u8::try_from(implemented.len()).unwrap_or(0);
    d.extend_from_slice(&implemented);
    let avail = u32::try_from(d.len() - 4).unwrap_or(0);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d
}

/// Parameter-list pieces for tests of the copy manager, here and in `lu`.
#[cfg(test)]
pub(crate) mod test_descriptors {
    /// An identification CSCD descriptor (E4h) naming a LU by its 16-byte NAA designator.
    pub(crate) fn cscd(naa: [u8; 16]) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 16;
        d[8..24].copy_from_slice(&naa);
        d[29..32].copy_from_slice(&[0, 2, 0]);
        d
    }

    /// A block-to-block segment descriptor (02h).
    pub(crate) fn seg(src: u16, dst: u16, blocks: u16, s: u64, t: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&24u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&s.to_be_bytes());
        d[20..28].copy_from_slice(&t.to_be_bytes());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::test_descriptors::{cscd, seg};
    use super::*;

    pub(crate) fn list(id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let c: Vec<u8> = cscds.concat();
        let s: Vec<u8> = segs.concat();
        let mut v = vec![0u8; 16];
        v[0] = id;
        v[1] = usage << 3;
        v[2..4].copy_from_slice(&u16::try_from(c.len()).unwrap().to_be_bytes());
        v[8..12].copy_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
        v.extend_from_slice(&c);
        v.extend_from_slice(&s);
        v
    }

    fn len(v: &[u8]) -> u32 {
        u32::try_from(v.len()).unwrap()
    }

    #[test]
    fn parses_targets_and_segments() {
        let l = list(7, 0, &[cscd([0x60; 16])], &[seg(0, 0, 8, 1, 100)]);
        let c = parse(&l, len(&l)).unwrap().unwrap();
        assert_eq!((c.list_id, c.held), (7, true));
        assert_eq!(c.targets[0].naa, [0x60; 16]);
        assert_eq!(c.targets[0].block_size, 512);
        assert_eq!(c.segments[0].blocks, 8);
        assert_eq!(c.segments[0].destination_lba, 100);
        assert_eq!(parse(&[], 0), Ok(None));
        let l = list(1, 2, &[cscd([0x60; 16])], &[]);
        assert!(!parse(&l, len(&l)).unwrap().unwrap().held);
    }

    fn key(r: Result<Option<CopyList>, Sense>) -> (u8, u8, u8) {
        let e = r.unwrap_err();
        (e.key as u8, e.asc, e.ascq)
    }

    #[test]
    fn refuses_short_lists_unknown_descriptors_and_too_many() {
        let l = list(1, 0, &[cscd([0x60; 16])], &[seg(0, 0, 8, 1, 100)]);
        assert_eq!(key(parse(&l, 16 + 31)), (5, 0x1A, 0));
        assert_eq!(key(parse(&l, len(&l) - 1)), (5, 0x1A, 0));
        assert_eq!(key(parse(&l[..20], len(&l))), (5, 0x1A, 0));
        let mut bad = cscd([0x60; 16]);
        bad[0] = 0xE0;
        let l = list(1, 0, &[bad], &[seg(0, 0, 1, 0, 0)]);
        assert_eq!(key(parse(&l, len(&l))), (5, 0x26, 0x07));
        let mut bad = seg(0, 0, 1, 0, 0);
        bad[0] = 0x03;
        let l = list(1, 0, &[cscd([0x60; 16])], &[bad]);
        assert_eq!(key(parse(&l, len(&l))), (5, 0x26, 0x09));
        let many: Vec<Vec<u8>> = (0..=MAX_CSCD_DESCRIPTORS)
            .map(|_| cscd([0x60; 16]))
            .collect();
        let l = list(1, 0, &many, &[seg(0, 0, 1, 0, 0)]);
        assert_eq!(key(parse(&l, len(&l))), (5, 0x26, 0x06));
        let many: Vec<Vec<u8>> = (0..=MAX_SEGMENT_DESCRIPTORS)
            .map(|_| seg(0, 0, 1, 0, 0))
            .collect();
        let l = list(1, 0, &[cscd([0x60; 16])], &many);
        assert_eq!(key(parse(&l, len(&l))), (5, 0x26, 0x08));
        // Longer than MAXIMUM DESCRIPTOR LIST LENGTH.
        let many: Vec<Vec<u8>> = (0..30).map(|_| seg(0, 0, 1, 0, 0)).collect();
        let l = list(1, 0, &[cscd([0x60; 16])], &many);
        assert_eq!(key(parse(&l, len(&l))), (5, 0x1A, 0));
    }

    #[test]
    fn results_data_layouts() {
        let op = operating_parameters();
        assert_eq!(u16::from_be_bytes([op[8], op[9]]), MAX_CSCD_DESCRIPTORS);
        assert_eq!(
            u16::from_be_bytes([op[10], op[11]]),
            MAX_SEGMENT_DESCRIPTORS
        );
        assert_eq!(
            u32::from_be_bytes([op[0], op[1], op[2], op[3]]) as usize + 4,
            op.len()
        );
        assert_eq!(&op[44..], &[0x02, 0xE4]);
        let s = CopyStatus {
            good: true,
            segments_processed: 1,
            bytes: 4096,
            sense: None,
        };
        let d = copy_status_data(&s);
        assert_eq!((d[4], d[6], d[7]), (1, 1, 0));
        assert_eq!(&d[8..12], &4096u32.to_be_bytes());
        assert_eq!(failed_segment_data(&s), [0, 0, 0, 0]);
        let f = CopyStatus {
            good: false,
            sense: Some(Sense::copy_target_not_reachable()),
            ..s
        };
        let d = failed_segment_data(&f);
        assert_eq!(d[56], 2);
        assert_eq!((d[60 + 2], d[60 + 12], d[60 + 13]), (0x0A, 0x0D, 0x02));
    }
}
