//! EXTENDED COPY from the initiator's side (SPC-4 6.4, 6.18, 7.8.17), written independently
//! of the target's `scsi::xcopy`: the NAA designator a CSCD descriptor names a logical unit
//! by, the LID1 parameter list with identification CSCD (E4h) and block-to-block (02h)
//! descriptors, RECEIVE COPY RESULTS, and a decoder of the Third-party Copy VPD page that
//! walks its descriptors as libiscsi and sg3_utils do.

use crate::initiator::{DataDir, Error, ScsiOutcome, Session};

type Result<T> = std::result::Result<T, Error>;

fn protocol<T>(what: impl Into<String>) -> Result<T> {
    Err(Error::Protocol(what.into()))
}

fn inquiry_vpd(session: &Session, lun: u64, page: u8) -> Result<Vec<u8>> {
    const ALLOC: u16 = 1024;
    let [hi, lo] = ALLOC.to_be_bytes();
    let cdb = [0x12, 0x01, page, hi, lo, 0];
    let o = session
        .execute(lun, &cdb, DataDir::Read(u32::from(ALLOC)))?
        .good()?;
    if o.data.len() < 4 || o.data[1] != page {
        return protocol(format!("VPD page {page:02x}h: {:02x?}", o.data));
    }
    let len = usize::from(u16::from_be_bytes([o.data[2], o.data[3]]));
    if o.data.len() != 4 + len {
        return protocol(format!(
            "VPD page {page:02x}h: PAGE LENGTH {len} but {} bytes",
            o.data.len()
        ));
    }
    Ok(o.data)
}

/// The 16-byte NAA designator of the logical unit (Device Identification VPD page, SPC-4
/// 7.8.6: designator type 3, associated with the logical unit).
pub fn naa(session: &Session, lun: u64) -> Result<[u8; 16]> {
    let page = inquiry_vpd(session, lun, 0x83)?;
    let mut d = &page[4..];
    while d.len() >= 4 {
        let len = usize::from(d[3]);
        let Some(value) = d.get(4..4 + len) else {
            return protocol("designation descriptor runs past the page");
        };
        let association = (d[1] >> 4) & 0x03;
        if d[1] & 0x0F == 0x03 && association == 0 && len == 16 {
            let mut out = [0u8; 16];
            out.copy_from_slice(value);
            return Ok(out);
        }
        d = &d[4 + len..];
    }
    protocol("no 16-byte NAA designator of the logical unit")
}

/// One block-to-block segment: CSCD indexes, blocks, first source and destination LBAs.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Index of the source CSCD descriptor.
    pub source: u16,
    /// Index of the destination CSCD descriptor.
    pub destination: u16,
    /// Blocks to copy.
    pub blocks: u16,
    /// First source LBA.
    pub source_lba: u64,
    /// First destination LBA.
    pub destination_lba: u64,
}

/// An EXTENDED COPY (LID1) parameter list whose results RECEIVE COPY RESULTS may ask for
/// (LIST ID USAGE 00b), naming each copy target by its NAA designator with `block_len`.
pub fn parameter_list(
    list_id: u8,
    targets: &[[u8; 16]],
    block_len: u32,
    segments: &[Segment],
) -> Vec<u8> {
    let mut cscds = Vec::new();
    for naa in targets {
        let mut d = [0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01; // CODE SET binary
        d[5] = 0x03; // association LU, designator type NAA
        d[7] = 16;
        d[8..24].copy_from_slice(naa);
        // DISK BLOCK LENGTH is three bytes (29..32); byte 28 is reserved.
        d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
        cscds.extend_from_slice(&d);
    }
    let mut segs = Vec::new();
    for s in segments {
        let mut d = [0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&24u16.to_be_bytes());
        d[4..6].copy_from_slice(&s.source.to_be_bytes());
        d[6..8].copy_from_slice(&s.destination.to_be_bytes());
        d[10..12].copy_from_slice(&s.blocks.to_be_bytes());
        d[12..20].copy_from_slice(&s.source_lba.to_be_bytes());
        d[20..28].copy_from_slice(&s.destination_lba.to_be_bytes());
        segs.extend_from_slice(&d);
    }
    let mut list = vec![0u8; 16];
    list[0] = list_id;
    let cscd_len = u16::try_from(cscds.len()).unwrap_or(u16::MAX);
    let seg_len = u32::try_from(segs.len()).unwrap_or(u32::MAX);
    list[2..4].copy_from_slice(&cscd_len.to_be_bytes());
    list[8..12].copy_from_slice(&seg_len.to_be_bytes());
    list.extend_from_slice(&cscds);
    list.extend_from_slice(&segs);
    list
}

/// Sends EXTENDED COPY (LID1) with `list` to `lun`, the copy manager; the outcome as is.
pub fn extended_copy(session: &Session, lun: u64, list: &[u8]) -> Result<ScsiOutcome> {
    let len = u32::try_from(list.len()).map_err(|_| Error::Protocol("list too long".into()))?;
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&len.to_be_bytes());
    session.execute(lun, &cdb, DataDir::Write(list))
}

/// RECEIVE COPY RESULTS / COPY STATUS of list `list_id`: (COPY MANAGER STATUS, SEGMENTS
/// PROCESSED, bytes transferred).
pub fn copy_status(session: &Session, lun: u64, list_id: u8) -> Result<(u8, u16, u64)> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x84;
    cdb[2] = list_id;
    cdb[10..14].copy_from_slice(&64u32.to_be_bytes());
    let d = session.execute(lun, &cdb, DataDir::Read(64))?.good()?.data;
    if d.len() < 12 {
        return protocol(format!("COPY STATUS: {d:02x?}"));
    }
    let count = u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
    let bytes = match d[7] {
        0x00 => count,
        0xF1 => count << 10,
        0xF2 => count << 20,
        u => return protocol(format!("TRANSFER COUNT UNITS {u:02x}h")),
    };
    Ok((d[4] & 0x7F, u16::from_be_bytes([d[5], d[6]]), bytes))
}

/// What the Third-party Copy VPD page (8Fh) says about the copy manager.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThirdPartyCopy {
    /// Every third-party copy descriptor type, in page order.
    pub descriptor_types: Vec<u16>,
    /// Supported Commands: (operation code, service actions).
    pub commands: Vec<(u8, Vec<u8>)>,
    /// Parameter Data: MAXIMUM CSCD DESCRIPTOR COUNT.
    pub max_cscd_descriptors: u16,
    /// Parameter Data: MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub max_segment_descriptors: u16,
    /// Parameter Data: MAXIMUM DESCRIPTOR LIST LENGTH.
    pub max_descriptor_list_bytes: u32,
    /// Supported Descriptors: segment and CSCD descriptor type codes.
    pub supported_descriptors: Vec<u8>,
    /// General Copy Operations: TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u32,
    /// General Copy Operations: MAXIMUM SEGMENT LENGTH.
    pub max_segment_bytes: u32,
}

/// Reads and decodes the Third-party Copy VPD page of `lun`. Any descriptor that runs past
/// the page, or whose length is not a multiple of 4, is a protocol error.
pub fn third_party_copy(session: &Session, lun: u64) -> Result<ThirdPartyCopy> {
    let page = inquiry_vpd(session, lun, 0x8F)?;
    let mut out = ThirdPartyCopy::default();
    let mut d = &page[4..];
    while !d.is_empty() {
        if d.len() < 4 {
            return protocol("a third-party copy descriptor header is cut short");
        }
        let kind = u16::from_be_bytes([d[0], d[1]]);
        let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
        if len % 4 != 0 {
            return protocol(format!("descriptor {kind:04x}h length {len}"));
        }
        let Some(body) = d.get(4..4 + len) else {
            return protocol(format!("descriptor {kind:04x}h runs past the page"));
        };
        out.descriptor_types.push(kind);
        let short = || Error::Protocol(format!("descriptor {kind:04x}h too short"));
        let be16 = |i: usize| body.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let be32 = |i: usize| {
            body.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match kind {
            0x0001 => {
                let n = usize::from(*body.first().ok_or_else(short)?);
                let mut list = body.get(1..1 + n).ok_or_else(short)?;
                while !list.is_empty() {
                    let k = usize::from(*list.get(1).ok_or_else(short)?);
                    let actions = list.get(2..2 + k).ok_or_else(short)?;
                    out.commands.push((list[0], actions.to_vec()));
                    list = &list[2 + k..];
                }
            }
            0x0004 => {
                out.max_cscd_descriptors = be16(4).ok_or_else(short)?;
                out.max_segment_descriptors = be16(6).ok_or_else(short)?;
                out.max_descriptor_list_bytes = be32(8).ok_or_else(short)?;
            }
            0x0008 => {
                let n = usize::from(*body.first().ok_or_else(short)?);
                out.supported_descriptors = body.get(1..1 + n).ok_or_else(short)?.to_vec();
            }
            0x8001 => {
                out.total_concurrent_copies = be32(0).ok_or_else(short)?;
                out.max_segment_bytes = be32(8).ok_or_else(short)?;
            }
            _ => {}
        }
        d = &d[4 + len..];
    }
    Ok(out)
}
