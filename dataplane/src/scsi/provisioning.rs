//! Logical block provisioning (SBC-3 4.7): UNMAP parameter list parsing (SBC-3 5.28) and
//! GET LBA STATUS parameter data (SBC-3 5.6).

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;
use super::{BlockCount, Lba};

/// Parses and validates an UNMAP parameter list against the device capacity and limits.
/// `data` holds the bytes actually received (at most PARAMETER LIST LENGTH of them).
pub fn parse_unmap(
    data: &[u8],
    capacity_blocks: u64,
    max_descriptors: u32,
    max_lba_count: u32,
) -> Result<Vec<(Lba, BlockCount)>, Sense> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.len() < 8 {
        return Err(Sense::param_list_length_error());
    }
    let bddl = usize::from(u16::from_be_bytes([data[2], data[3]]));
    // A partial trailing descriptor is ignored (SBC-3 5.28.2).
    let count = bddl / 16;
    if 8 + count * 16 > data.len() {
        return Err(Sense::param_list_length_error());
    }
    if u32::try_from(count).map_or(true, |c| c > max_descriptors) {
        return Err(Sense::invalid_field_in_param(2, None));
    }
    let mut out = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for i in 0..count {
        let d = &data[8 + i * 16..8 + i * 16 + 16];
        let mut lba8 = [0u8; 8];
        lba8.copy_from_slice(&d[0..8]);
        let lba = u64::from_be_bytes(lba8);
        let n = u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
        match lba.checked_add(n) {
            Some(end) if end <= capacity_blocks => {}
            _ => return Err(Sense::lba_out_of_range()),
        }
        total += n;
        if total > u64::from(max_lba_count) {
            let at = u16::try_from(8 + i * 16 + 8).unwrap_or(u16::MAX);
            return Err(Sense::invalid_field_in_param(at, None));
        }
        if n > 0 {
            out.push((Lba(lba), BlockCount(n)));
        }
    }
    Ok(out)
}

/// Provisioning status of a run of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaStatus {
    /// First block.
    pub lba: Lba,
    /// Number of blocks.
    pub blocks: BlockCount,
    /// True for deallocated (reads as zeroes), false for mapped.
    pub deallocated: bool,
}

/// Converts byte runs `(offset, len, mapped)` covering `[start_lba, end_lba)` into block
/// runs. A block that is partly mapped counts as mapped.
pub fn block_runs(
    byte_runs: &[(u64, u64, bool)],
    block_size: u32,
    start_lba: u64,
    end_lba: u64,
) -> Vec<LbaStatus> {
    let bs = u64::from(block_size.max(1));
    let mut out: Vec<LbaStatus> = Vec::new();
    let mut push = |from: u64, to: u64, deallocated: bool| {
        if to <= from {
            return;
        }
        if let Some(last) = out.last_mut() {
            if last.deallocated == deallocated && last.lba.0 + last.blocks.0 == from {
                last.blocks.0 += to - from;
                return;
            }
        }
        out.push(LbaStatus {
            lba: Lba(from),
            blocks: BlockCount(to - from),
            deallocated,
        });
    };
    let mut cursor = start_lba;
    for &(off, len, mapped) in byte_runs {
        if cursor >= end_lba {
            break;
        }
        let (first, last) = if mapped {
            (off / bs, (off + len).div_ceil(bs))
        } else {
            (off.div_ceil(bs), (off + len) / bs)
        };
        let first = first.max(cursor);
        let last = last.min(end_lba);
        if last <= first {
            continue;
        }
        // Blocks skipped between runs straddle a mapped boundary: they are mapped.
        push(cursor, first, false);
        push(first, last, !mapped);
        cursor = last;
    }
    push(cursor, end_lba, false);
    out
}

/// GET LBA STATUS parameter data (untruncated).
pub fn lba_status_data(runs: &[LbaStatus]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + runs.len() * 16);
    let len = u32::try_from(4 + runs.len() * 16).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for r in runs {
        out.extend_from_slice(&r.lba.0.to_be_bytes());
        let n = u32::try_from(r.blocks.0).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.push(if r.deallocated { 1 } else { 0 });
        out.extend_from_slice(&[0; 3]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(descs: &[(u64, u32)]) -> Vec<u8> {
        let mut v = vec![0u8; 8];
        let bddl = u16::try_from(descs.len() * 16).unwrap();
        v[0..2].copy_from_slice(&(bddl + 6).to_be_bytes());
        v[2..4].copy_from_slice(&bddl.to_be_bytes());
        for &(l, n) in descs {
            v.extend_from_slice(&l.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
        }
        v
    }

    #[test]
    fn parses_descriptors_and_skips_empty_ones() {
        let r = parse_unmap(&list(&[(0, 8), (100, 0), (1000, 24)]), 2048, 16, 1 << 20).unwrap();
        assert_eq!(
            r,
            vec![(Lba(0), BlockCount(8)), (Lba(1000), BlockCount(24))]
        );
        assert!(parse_unmap(&[], 2048, 16, 100).unwrap().is_empty());
        assert!(parse_unmap(&list(&[]), 2048, 16, 100).unwrap().is_empty());
        assert!(parse_unmap(&list(&[(2048, 0)]), 2048, 16, 100)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rejects_bad_lists() {
        assert_eq!(
            parse_unmap(&[0, 6, 0], 2048, 16, 100).unwrap_err().asc,
            0x1A
        );
        let mut short = list(&[(0, 1)]);
        short.truncate(20);
        assert_eq!(parse_unmap(&short, 2048, 16, 100).unwrap_err().asc, 0x1A);
        assert_eq!(
            parse_unmap(&list(&[(2040, 9)]), 2048, 16, 100)
                .unwrap_err()
                .asc,
            0x21
        );
        assert_eq!(
            parse_unmap(&list(&[(u64::MAX, 2)]), 2048, 16, 100)
                .unwrap_err()
                .asc,
            0x21
        );
        assert_eq!(
            parse_unmap(&list(&[(0, 60), (100, 60)]), 2048, 16, 100)
                .unwrap_err()
                .asc,
            0x26
        );
        assert_eq!(
            parse_unmap(&list(&[(0, 1), (1, 1), (2, 1)]), 2048, 2, 100)
                .unwrap_err()
                .asc,
            0x26
        );
    }

    #[test]
    fn converts_byte_runs_to_block_runs() {
        // 512-byte blocks; bytes 4096..8192 are a hole, rest mapped.
        let runs = [(0, 4096, true), (4096, 4096, false), (8192, 8192, true)];
        let r = block_runs(&runs, 512, 4, 32);
        assert_eq!(
            r,
            vec![
                LbaStatus {
                    lba: Lba(4),
                    blocks: BlockCount(4),
                    deallocated: false
                },
                LbaStatus {
                    lba: Lba(8),
                    blocks: BlockCount(8),
                    deallocated: true
                },
                LbaStatus {
                    lba: Lba(16),
                    blocks: BlockCount(16),
                    deallocated: false
                },
            ]
        );
        let d = lba_status_data(&r);
        assert_eq!(d.len(), 8 + 48);
        assert_eq!(&d[0..4], &52u32.to_be_bytes());
        assert_eq!(d[8 + 16 + 12], 1);
    }
}
