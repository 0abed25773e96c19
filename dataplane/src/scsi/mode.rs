//! Mode parameters (SPC-4 7.5, SBC-3 6.4): MODE SENSE(6/10) data and MODE SELECT(6/10)
//! parsing for the Caching (08h), Control (0Ah) and Informational Exceptions Control (1Ch)
//! pages. Only WCE in the Caching page and SWP (software write protect, SPC-4 7.5.8) in the
//! Control page are changeable; saving is not supported.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;

/// Caching mode page code.
pub const PAGE_CACHING: u8 = 0x08;
/// Control mode page code.
pub const PAGE_CONTROL: u8 = 0x0A;
/// Informational Exceptions Control mode page code.
pub const PAGE_IEC: u8 = 0x1C;
/// "Return all pages".
pub const PAGE_ALL: u8 = 0x3F;

/// Page control field values (SPC-4 6.11.1).
#[allow(missing_docs)]
pub mod pc {
    pub const CURRENT: u8 = 0;
    pub const CHANGEABLE: u8 = 1;
    pub const DEFAULT: u8 = 2;
    pub const SAVED: u8 = 3;
}

/// Current values of the mode parameters an initiator can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeState {
    /// Write cache enable: when false every write is made durable before GOOD.
    pub wce: bool,
    /// Software write protect (Control page SWP): while set, the logical unit refuses every
    /// write to the medium with DATA PROTECT / WRITE PROTECTED.
    pub swp: bool,
}

impl Default for ModeState {
    fn default() -> Self {
        Self {
            wce: true,
            swp: false,
        }
    }
}

/// Device facts mode data reports.
#[derive(Clone, Copy, Debug)]
pub struct ModeDevice {
    /// Write protected (device-specific parameter WP).
    pub read_only: bool,
    /// Logical block length.
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
}

/// A decoded MODE SENSE request.
#[derive(Clone, Copy, Debug)]
pub struct SenseRequest {
    /// MODE SENSE(10) rather than (6).
    pub ten: bool,
    /// Disable block descriptors.
    pub dbd: bool,
    /// Long LBA block descriptor accepted.
    pub llbaa: bool,
    /// Page control.
    pub pc: u8,
    /// Page code.
    pub page: u8,
    /// Subpage code.
    pub subpage: u8,
}

const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_IEC];

fn page_bytes(code: u8, pc: u8, st: &ModeState) -> Vec<u8> {
    match code {
        PAGE_CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = PAGE_CACHING;
            p[1] = 18;
            p[2] = match pc {
                pc::CHANGEABLE => 0x04,
                pc::DEFAULT => 0x04,
                _ => {
                    if st.wce {
                        0x04
                    } else {
                        0
                    }
                }
            };
            p
        }
        PAGE_CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_CONTROL;
            p[1] = 10;
            if pc == pc::CHANGEABLE {
                p[4] = 0x08;
            } else {
                if pc == pc::CURRENT && st.swp {
                    p[4] = 0x08;
                }
                // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering allowed.
                p[3] = 0x10;
                // BUSY TIMEOUT PERIOD: unlimited.
                p[8] = 0xFF;
                p[9] = 0xFF;
            }
            p
        }
        _ => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_IEC;
            p[1] = 10;
            p
        }
    }
}

fn changeable_mask(code: u8) -> Vec<u8> {
    page_bytes(code, pc::CHANGEABLE, &ModeState::default())
}

/// Builds MODE SENSE data (untruncated).
pub fn mode_sense(req: SenseRequest, st: &ModeState, dev: ModeDevice) -> Result<Vec<u8>, Sense> {
    if req.pc == pc::SAVED {
        return Err(Sense::saving_not_supported());
    }
    let pages: Vec<u8> = match req.page {
        PAGE_ALL => {
            if req.subpage != 0 && req.subpage != 0xFF {
                return Err(Sense::invalid_field_in_cdb(3, Some(7)));
            }
            PAGES.to_vec()
        }
        p if PAGES.contains(&p) => {
            if req.subpage != 0 {
                return Err(Sense::invalid_field_in_cdb(3, Some(7)));
            }
            vec![p]
        }
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
    };
    let mut body = Vec::new();
    for p in pages {
        body.extend_from_slice(&page_bytes(p, req.pc, st));
    }
    let long = req.ten && req.llbaa;
    let mut bd = Vec::new();
    if !req.dbd {
        if long {
            bd.extend_from_slice(&dev.blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&dev.block_size.to_be_bytes());
        } else {
            let n = u32::try_from(dev.blocks).unwrap_or(u32::MAX);
            bd.extend_from_slice(&n.to_be_bytes());
            bd.push(0);
            let bs = dev.block_size.to_be_bytes();
            bd.extend_from_slice(&bs[1..4]);
        }
    }
    // WP, and DPOFUA: DPO and FUA are accepted in READ/WRITE CDBs (SBC-3 6.4.1).
    // SWP write-protects the medium as a read-only storage does (SPC-4 7.5.8).
    let dsp = if dev.read_only || st.swp { 0x80 } else { 0 } | 0x10;
    let mut out = Vec::new();
    if req.ten {
        let total = 8 + bd.len() + body.len();
        let mdl = u16::try_from(total - 2).map_err(|_| Sense::invalid_field_in_cdb(2, None))?;
        out.extend_from_slice(&mdl.to_be_bytes());
        out.push(0);
        out.push(dsp);
        out.push(if long { 1 } else { 0 });
        out.push(0);
        let bdl = u16::try_from(bd.len()).unwrap_or(0);
        out.extend_from_slice(&bdl.to_be_bytes());
    } else {
        let total = 4 + bd.len() + body.len();
        let mdl = u8::try_from(total - 1).map_err(|_| Sense::invalid_field_in_cdb(2, None))?;
        out.push(mdl);
        out.push(0);
        out.push(dsp);
        out.push(u8::try_from(bd.len()).unwrap_or(0));
    }
    out.extend_from_slice(&bd);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Applies MODE SELECT parameter data; returns the new state (SPC-4 6.9, 6.10).
pub fn mode_select(
    ten: bool,
    pf: bool,
    sp: bool,
    data: &[u8],
    st: &ModeState,
    dev: ModeDevice,
) -> Result<ModeState, Sense> {
    if !pf {
        return Err(Sense::invalid_field_in_cdb(1, Some(4)));
    }
    if sp {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    if data.is_empty() {
        return Ok(*st);
    }
    let hdr = if ten { 8 } else { 4 };
    if data.len() < hdr {
        return Err(Sense::param_list_length_error());
    }
    let (bdl, long) = if ten {
        (
            usize::from(u16::from_be_bytes([data[6], data[7]])),
            data[4] & 1 != 0,
        )
    } else {
        (usize::from(data[3]), false)
    };
    let desc_len = if long { 16 } else { 8 };
    if bdl != 0 && bdl != desc_len {
        let at = if ten { 6 } else { 3 };
        return Err(Sense::invalid_field_in_param(at, None));
    }
    if data.len() < hdr + bdl {
        return Err(Sense::param_list_length_error());
    }
    if bdl != 0 {
        let d = &data[hdr..hdr + bdl];
        let bs = if long {
            u32::from_be_bytes([d[12], d[13], d[14], d[15]])
        } else {
            u32::from_be_bytes([0, d[5], d[6], d[7]])
        };
        // Changing the block length (FORMAT-style) is not supported.
        if bs != dev.block_size {
            let at = u16::try_from(hdr + if long { 12 } else { 5 }).unwrap_or(0);
            return Err(Sense::invalid_field_in_param(at, None));
        }
    }
    let mut new = *st;
    let mut pos = hdr + bdl;
    while pos < data.len() {
        let at = |off: usize| u16::try_from(pos + off).unwrap_or(u16::MAX);
        if data.len() < pos + 2 {
            return Err(Sense::param_list_length_error());
        }
        let code = data[pos] & 0x3F;
        if data[pos] & 0x40 != 0 {
            return Err(Sense::invalid_field_in_param(at(0), Some(6)));
        }
        if !PAGES.contains(&code) {
            return Err(Sense::invalid_field_in_param(at(0), Some(5)));
        }
        let current = page_bytes(code, pc::CURRENT, &new);
        let plen = usize::from(data[pos + 1]);
        if plen + 2 != current.len() {
            return Err(Sense::invalid_field_in_param(at(1), Some(7)));
        }
        if data.len() < pos + 2 + plen {
            return Err(Sense::param_list_length_error());
        }
        let page = &data[pos..pos + 2 + plen];
        let mask = changeable_mask(code);
        for i in 2..page.len() {
            let diff = page[i] ^ current[i];
            if diff & !mask[i] != 0 {
                return Err(Sense::invalid_field_in_param(at(i), None));
            }
        }
        if code == PAGE_CACHING {
            new.wce = page[2] & 0x04 != 0;
        }
        if code == PAGE_CONTROL {
            new.swp = page[4] & 0x08 != 0;
        }
        pos += 2 + plen;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: ModeDevice = ModeDevice {
        read_only: false,
        block_size: 512,
        blocks: 2048,
    };

    fn req(ten: bool, page: u8, pc: u8) -> SenseRequest {
        SenseRequest {
            ten,
            dbd: false,
            llbaa: false,
            pc,
            page,
            subpage: 0,
        }
    }

    #[test]
    fn all_pages_six_has_header_descriptor_and_pages() {
        let d = mode_sense(
            req(false, PAGE_ALL, pc::CURRENT),
            &ModeState::default(),
            DEV,
        )
        .unwrap();
        assert_eq!(usize::from(d[0]) + 1, d.len());
        assert_eq!(d[2] & 0x80, 0);
        assert_eq!(d[2] & 0x10, 0x10);
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..8], &2048u32.to_be_bytes());
        assert_eq!(d[12], PAGE_CACHING);
        assert_eq!(d.len(), 4 + 8 + 20 + 12 + 12);
    }

    #[test]
    fn mode_sense_ten_long_lba() {
        let mut r = req(true, PAGE_CONTROL, pc::CURRENT);
        r.llbaa = true;
        let d = mode_sense(
            r,
            &ModeState::default(),
            ModeDevice {
                read_only: true,
                ..DEV
            },
        )
        .unwrap();
        assert_eq!(usize::from(u16::from_be_bytes([d[0], d[1]])) + 2, d.len());
        assert_eq!(d[3] & 0x80, 0x80);
        assert_eq!(d[4], 1);
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), 16);
        assert_eq!(d[24], PAGE_CONTROL);
    }

    #[test]
    fn saved_and_unknown_pages_fail() {
        assert_eq!(
            mode_sense(req(false, PAGE_ALL, pc::SAVED), &ModeState::default(), DEV)
                .unwrap_err()
                .asc,
            0x39
        );
        assert_eq!(
            mode_sense(req(false, 0x01, pc::CURRENT), &ModeState::default(), DEV)
                .unwrap_err()
                .asc,
            0x24
        );
    }

    #[test]
    fn wce_round_trip_through_select() {
        let st = ModeState::default();
        let mut r = req(false, PAGE_CACHING, pc::CURRENT);
        r.dbd = true;
        let mut d = mode_sense(r, &st, DEV).unwrap();
        d[0] = 0;
        d[4 + 2] &= !0x04;
        let new = mode_select(false, true, false, &d, &st, DEV).unwrap();
        assert!(!new.wce);
        let d2 = mode_sense(r, &new, DEV).unwrap();
        assert_eq!(d2[4 + 2] & 0x04, 0);
    }

    #[test]
    fn select_rejects_unchangeable_bits_and_bad_lengths() {
        let st = ModeState::default();
        let mut r = req(false, PAGE_CONTROL, pc::CURRENT);
        r.dbd = true;
        let mut d = mode_sense(r, &st, DEV).unwrap();
        d[0] = 0;
        d[4 + 4] |= 0x04; // RAERP is not changeable.
        assert_eq!(
            mode_select(false, true, false, &d, &st, DEV)
                .unwrap_err()
                .asc,
            0x26
        );
        let mut d = mode_sense(r, &st, DEV).unwrap();
        d[0] = 0;
        d[4 + 1] = 9;
        assert_eq!(
            mode_select(false, true, false, &d, &st, DEV)
                .unwrap_err()
                .asc,
            0x26
        );
        let d = mode_sense(r, &st, DEV).unwrap();
        assert_eq!(
            mode_select(false, true, false, &d[..8], &st, DEV)
                .unwrap_err()
                .asc,
            0x1A
        );
        assert_eq!(
            mode_select(false, false, false, &d, &st, DEV)
                .unwrap_err()
                .asc,
            0x24
        );
        assert_eq!(
            mode_select(false, true, true, &d, &st, DEV)
                .unwrap_err()
                .asc,
            0x24
        );
    }

    #[test]
    fn select_checks_block_descriptor_length() {
        let st = ModeState::default();
        let d = mode_sense(req(false, PAGE_CACHING, pc::CURRENT), &st, DEV).unwrap();
        let mut d = d.clone();
        d[0] = 0;
        assert_eq!(mode_select(false, true, false, &d, &st, DEV).unwrap(), st);
        d[4 + 6] = 0x10; // block length 4096 != 512
        assert_eq!(
            mode_select(false, true, false, &d, &st, DEV)
                .unwrap_err()
                .asc,
            0x26
        );
    }

    #[test]
    fn swp_is_changeable_and_write_protects_the_mode_header() {
        let st = ModeState::default();
        let mut r = req(false, PAGE_CONTROL, pc::CHANGEABLE);
        r.dbd = true;
        let ch = mode_sense(r, &st, DEV).unwrap();
        assert_eq!(ch[4 + 4] & 0x08, 0x08);
        r.pc = pc::CURRENT;
        let mut d = mode_sense(r, &st, DEV).unwrap();
        assert_eq!(d[2] & 0x80, 0);
        d[0] = 0;
        d[4 + 4] |= 0x08;
        let new = mode_select(false, true, false, &d, &st, DEV).unwrap();
        assert!(new.swp);
        let d = mode_sense(r, &new, DEV).unwrap();
        assert_eq!(d[4 + 4] & 0x08, 0x08);
        assert_eq!(d[2] & 0x80, 0x80, "WP follows SWP");
        let mut d = d;
        d[0] = 0;
        d[2] = 0;
        d[4 + 4] &= !0x08;
        assert!(!mode_select(false, true, false, &d, &new, DEV).unwrap().swp);
    }
}
