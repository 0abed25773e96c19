//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18; 5.17 for the copy
//! manager model): the parameter list parsed into copy targets and block-to-block segments,
//! the limits we advertise, the RECEIVE COPY RESULTS parameter data, and the body of the
//! Third-party Copy VPD page (SPC-4 7.8.17) that advertises the same commands, descriptors
//! and limits. Pure: the logical unit (`crate::lu`) resolves the copy targets to logical
//! units of the data plane and moves the blocks.
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
/// DATA SEGMENT GRANULARITY as a power of two: 2^9 = 512 bytes.
pub const DATA_SEGMENT_GRANULARITY_LOG2: u8 = 9;

const TYPE_IDENTIFICATION_CSCD: u8 = 0xE4;
const TYPE_BLOCK_TO_BLOCK: u8 = 0x02;
/// The segment and CSCD descriptor type codes `parse` accepts, ascending (the IMPLEMENTED
/// DESCRIPTOR LIST of the operating parameters and the Supported Descriptors list of the
/// Third-party Copy VPD page).
pub const SUPPORTED_DESCRIPTORS: [u8; 2] = [TYPE_BLOCK_TO_BLOCK, TYPE_IDENTIFICATION_CSCD];
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
    let implemented = SUPPORTED_DESCRIPTORS;
    let mut d = vec![0u8; 44];
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_BYTES.to_be_bytes());
    d[16..20].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0.
    d[34..36].copy_from_slice(&u16::from(MAX_CONCURRENT_COPIES).to_be_bytes());
    d[36] = MAX_CONCURRENT_COPIES;
    d[37] = DATA_SEGMENT_GRANULARITY_LOG2;
    d[43] = u8::try_from(implemented.len()).unwrap_or(0);
    d.extend_from_slice(&implemented);
    let avail = u32::try_from(d.len() - 4).unwrap_or(0);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d
}

/// Third-party copy descriptor types of the Third-party Copy VPD page (SPC-4 7.8.17.1).
pub mod tpc_descriptor {
    /// Supported Commands (SPC-4 7.8.17.3).
    pub const SUPPORTED_COMMANDS: u16 = 0x0001;
    /// Parameter Data (SPC-4 7.8.17.5).
    pub const PARAMETER_DATA: u16 = 0x0004;
    /// Supported Descriptors (SPC-4 7.8.17.6).
    pub const SUPPORTED_DESCRIPTORS: u16 = 0x0008;
    /// Supported CSCD Descriptor IDs (SPC-4 7.8.17.7).
    pub const SUPPORTED_CSCD_IDS: u16 = 0x000C;
    /// General Copy Operations (SPC-4 7.8.17.10).
    pub const GENERAL_COPY_OPERATIONS: u16 = 0x8001;
}

/// Appends one third-party copy descriptor: type, length, then `body` padded with zeroes to
/// a multiple of four bytes (SPC-4 7.8.17.1: every descriptor length is a multiple of 4).
fn tpc_descriptor(out: &mut Vec<u8>, kind: u16, mut body: Vec<u8>) {
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    out.extend_from_slice(&kind.to_be_bytes());
    // Every body built here is a few dozen bytes.
    out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&body);
}

/// The body (after the 4-byte page header) of the Third-party Copy VPD page (SPC-4 7.8.17),
/// the descriptors SPC-4 makes mandatory for a copy manager that offers EXTENDED COPY (LID1):
///
/// - Supported Commands: every EXTENDED COPY and RECEIVE COPY RESULTS service action of
///   `ops` (the opcode registry, so the page lists what the decoder accepts);
/// - Parameter Data: the descriptor counts and list length `parse` enforces, no inline data;
/// - Supported Descriptors: [`SUPPORTED_DESCRIPTORS`];
/// - Supported CSCD Descriptor IDs: none (we offer no CSCD ID above 07FFh);
/// - General Copy Operations: [`MAX_CONCURRENT_COPIES`] concurrent copies (total and
///   identified), [`MAX_SEGMENT_BYTES`] per segment, the data segment granularity.
pub fn third_party_copy_vpd_body(ops: &[super::opcodes::OpEntry]) -> Vec<u8> {
    use super::cdb::op;
    let mut out = Vec::new();

    let mut commands = Vec::new();
    for opcode in [op::EXTENDED_COPY, op::RECEIVE_COPY_RESULTS] {
        let actions: Vec<u8> = ops
            .iter()
            .filter(|e| e.opcode == opcode)
            .filter_map(|e| e.service_action.and_then(|a| u8::try_from(a).ok()))
            .collect();
        if actions.is_empty() {
            continue;
        }
        commands.push(opcode);
        commands.push(u8::try_from(actions.len()).unwrap_or(0));
        commands.extend_from_slice(&actions);
    }
    let mut body = vec![u8::try_from(commands.len()).unwrap_or(0)];
    body.extend_from_slice(&commands);
    tpc_descriptor(&mut out, tpc_descriptor::SUPPORTED_COMMANDS, body);

    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_BYTES.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH (bytes 12..16): 0, `parse` refuses inline data.
    tpc_descriptor(&mut out, tpc_descriptor::PARAMETER_DATA, body);

    let mut body = vec![u8::try_from(SUPPORTED_DESCRIPTORS.len()).unwrap_or(0)];
    body.extend_from_slice(&SUPPORTED_DESCRIPTORS);
    tpc_descriptor(&mut out, tpc_descriptor::SUPPORTED_DESCRIPTORS, body);

    // SUPPORTED CSCD DESCRIPTOR IDS LIST LENGTH 0.
    tpc_descriptor(&mut out, tpc_descriptor::SUPPORTED_CSCD_IDS, vec![0u8; 2]);

    let mut body = vec![0u8; 32];
    let copies = u32::from(MAX_CONCURRENT_COPIES);
    body[0..4].copy_from_slice(&copies.to_be_bytes());
    body[4..8].copy_from_slice(&copies.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    body[12] = DATA_SEGMENT_GRANULARITY_LOG2;
    // INLINE DATA GRANULARITY 2^0: there is no inline data.
    tpc_descriptor(&mut out, tpc_descriptor::GENERAL_COPY_OPERATIONS, body);
    out
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

    /// Walks the descriptors of a Third-party Copy VPD page body as an initiator does
    /// (libiscsi's `scsi_inquiry_unmarshall_third_party_copy`, sg3_utils' `sg_vpd`): type,
    /// length, body; every length a multiple of 4 and the walk ending exactly at the end.
    fn tpc_descriptors(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let kind = u16::from_be_bytes([b[0], b[1]]);
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            assert_eq!(len % 4, 0, "descriptor {kind:04x} length {len}");
            out.push((kind, b[4..4 + len].to_vec()));
            b = &b[4 + len..];
        }
        out
    }

    #[test]
    fn third_party_copy_page_advertises_what_parse_and_the_copy_manager_enforce() {
        let body = third_party_copy_vpd_body(crate::scsi::opcodes::OPS);
        let d = tpc_descriptors(&body);
        let kinds: Vec<u16> = d.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                tpc_descriptor::SUPPORTED_COMMANDS,
                tpc_descriptor::PARAMETER_DATA,
                tpc_descriptor::SUPPORTED_DESCRIPTORS,
                tpc_descriptor::SUPPORTED_CSCD_IDS,
                tpc_descriptor::GENERAL_COPY_OPERATIONS,
            ]
        );
        // Supported Commands: a list of (opcode, count, service actions...).
        let cmds = &d[0].1;
        let n = usize::from(cmds[0]);
        let mut list = &cmds[1..=n];
        let mut seen = Vec::new();
        while !list.is_empty() {
            let k = usize::from(list[1]);
            seen.push((list[0], list[2..2 + k].to_vec()));
            list = &list[2 + k..];
        }
        assert_eq!(
            seen,
            [(0x83, vec![0x00]), (0x84, vec![0x00, 0x03, 0x04])],
            "EXTENDED COPY (LID1) and the RECEIVE COPY RESULTS service actions the decoder takes"
        );
        assert!(cmds[1 + n..].iter().all(|&b| b == 0), "padding is zero");
        for (opcode, actions) in &seen {
            for a in actions {
                let mut cdb = [0u8; 16];
                cdb[0] = *opcode;
                cdb[1] = *a;
                assert!(
                    crate::scsi::cdb::decode(&cdb).is_ok(),
                    "{opcode:02x}/{a:02x}"
                );
            }
        }
        // Parameter Data.
        let p = &d[1].1;
        assert_eq!(p.len(), 28);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), MAX_CSCD_DESCRIPTORS);
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), MAX_SEGMENT_DESCRIPTORS);
        assert_eq!(
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            MAX_DESCRIPTOR_LIST_BYTES
        );
        assert_eq!(&p[12..16], &[0, 0, 0, 0], "no inline data");
        // Supported Descriptors and CSCD IDs.
        let s = &d[2].1;
        assert_eq!(&s[1..1 + usize::from(s[0])], &SUPPORTED_DESCRIPTORS);
        assert_eq!(&d[3].1[..2], &[0, 0]);
        // General Copy Operations.
        let g = &d[4].1;
        assert_eq!(g.len(), 32);
        let be32 = |i: usize| u32::from_be_bytes([g[i], g[i + 1], g[i + 2], g[i + 3]]);
        assert_eq!(be32(0), u32::from(MAX_CONCURRENT_COPIES));
        assert_eq!(be32(4), u32::from(MAX_CONCURRENT_COPIES));
        assert_eq!(be32(8), MAX_SEGMENT_BYTES);
        assert_eq!(g[12], DATA_SEGMENT_GRANULARITY_LOG2);
        // And the operating parameters of RECEIVE COPY RESULTS agree with the page.
        let op = operating_parameters();
        assert_eq!(&op[8..16], &p[4..12]);
        assert_eq!(&op[16..20], &g[8..12]);
        assert_eq!(op[37], g[12]);
        assert_eq!(&op[44..], &SUPPORTED_DESCRIPTORS);
    }

    #[test]
    fn third_party_copy_page_lists_only_the_commands_the_registry_has() {
        // Without the copy commands in the registry there is nothing to list.
        let ops: Vec<_> = crate::scsi::opcodes::OPS
            .iter()
            .filter(|e| e.opcode != 0x84)
            .copied()
            .collect();
        let body = third_party_copy_vpd_body(&ops);
        let d = tpc_descriptors(&body);
        assert_eq!(&d[0].1[..4], &[3, 0x83, 1, 0x00]);
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
