//! CRC32C (Castagnoli) for iSCSI header and data digests (RFC 7143 §13.1, Appendix B.4).
//!
//! Uses the SSE4.2 `crc32` instruction when the CPU has it (detected once), else
//! slicing-by-8 tables built at compile time.

const POLY: u32 = 0x82f6_3b78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    // `i` as a u32 (a const fn cannot call `u32::try_from`): the two count 0..256 together.
    let mut n = 0u32;
    while i < 256 {
        let mut c = n;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
        n += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

fn update_soft(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_hw(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc64 = u64::from(crc);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        crc64 = _mm_crc32_u64(crc64, v);
    }
    // The crc32 instruction only ever yields 32 significant bits.
    let mut crc = u32::try_from(crc64 & 0xffff_ffff).unwrap_or(0);
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

/// CRC32C of the concatenation of `parts`, as iSCSI digests are computed.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            for p in parts {
                // SAFETY: the CPU supports SSE4.2, checked on the line above.
                crc = unsafe { update_hw(crc, p) };
            }
            return !crc;
        }
    }
    for p in parts {
        crc = update_soft(crc, p);
    }
    !crc
}

/// CRC32C of one buffer.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_parts(&[data])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_3720_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113f_db5c);
    }

    #[test]
    fn software_and_hardware_agree() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| u8::try_from((i * 7 + 3) % 256).unwrap())
            .collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 999] {
            let soft = !update_soft(!0, &data[..len]);
            assert_eq!(soft, crc32c(&data[..len]), "len {len}");
        }
        assert_eq!(crc32c_parts(&[&data[..10], &data[10..]]), crc32c(&data));
    }
}
