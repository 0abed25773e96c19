//! INQUIRY data (SPC-4 6.6) and the VPD pages we support (SPC-4 7.8, SBC-3 6.6):
//! 00h Supported VPD Pages, 80h Unit Serial Number, 83h Device Identification,
//! 8Fh Third-party Copy (SPC-4 7.8.17, for the copy manager that standard INQUIRY's 3PC bit
//! announces; its descriptors come from `super::xcopy`), B0h Block Limits, B1h Block Device Characteristics, B2h Logical Block Provisioning.
//!
//! Identifiers are derived from the target name and device id with FNV-1a, so they are
//! stable across restarts and differ between LUs; nothing here reads the clock or disk.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::sense::Sense;

/// Vendor identification, 8 ASCII bytes (SPC-4 6.6.2).
pub const VENDOR_ID: &[u8; 8] = b"TGTRS   ";
/// Product identification for disks, 16 ASCII bytes.
pub const PRODUCT_ID_DISK: &[u8; 16] = b"VIRTUAL-DISK    ";
/// Product identification for the LUN 0 controller stand-in.
pub const PRODUCT_ID_CONTROLLER: &[u8; 16] = b"CONTROLLER      ";
/// Product revision level, 4 ASCII bytes.
pub const PRODUCT_REV: &[u8; 4] = b"0001";

/// Peripheral device type: direct-access block device (SBC).
pub const TYPE_DISK: u8 = 0x00;
/// Peripheral device type: storage array controller (SCC), used for a synthetic LUN 0.
pub const TYPE_CONTROLLER: u8 = 0x0C;
/// Byte 0 for a LUN with no logical unit behind it: qualifier 011b, type 1Fh.
pub const NO_LUN_BYTE0: u8 = 0x7F;

/// VPD page codes.
#[allow(missing_docs)]
pub mod page {
    pub const SUPPORTED: u8 = 0x00;
    pub const SERIAL: u8 = 0x80;
    pub const DEVICE_ID: u8 = 0x83;
    pub const THIRD_PARTY_COPY: u8 = 0x8F;
    pub const BLOCK_LIMITS: u8 = 0xB0;
    pub const BLOCK_CHARACTERISTICS: u8 = 0xB1;
    pub const PROVISIONING: u8 = 0xB2;
}

/// Limits advertised in the Block Limits page and enforced by the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// MAXIMUM TRANSFER LENGTH in blocks.
    pub max_transfer_blocks: u32,
    /// OPTIMAL TRANSFER LENGTH in blocks.
    pub optimal_transfer_blocks: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks.
    pub max_compare_and_write_blocks: u8,
    /// MAXIMUM UNMAP LBA COUNT.
    pub max_unmap_lba_count: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub max_unmap_descriptors: u32,
    /// OPTIMAL UNMAP GRANULARITY in blocks.
    pub unmap_granularity_blocks: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks.
    pub max_write_same_blocks: u64,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT of READ CAPACITY (16) (SBC-3 5.16.2):
    /// a physical block holds `1 << physical_exponent` logical blocks, the first of them at
    /// LBA 0 (LOWEST ALIGNED LOGICAL BLOCK ADDRESS 0).
    pub physical_exponent: u8,
    /// MAXIMUM ATOMIC TRANSFER LENGTH in blocks (SBC-4 6.6.4): the longest WRITE ATOMIC
    /// (16). The logical unit makes such a write atomic against every other command to the
    /// medium (`crate::lu`); it is one buffer, so one backend write.
    pub max_atomic_transfer_blocks: u32,
}

impl BlockLimits {
    /// The limits we use for a given block size.
    pub fn for_block_size(block_size: u32) -> Self {
        let bs = block_size.max(1);
        Self {
            // 8 MiB per command bounds the buffer one command can pin.
            max_transfer_blocks: (8 << 20) / bs,
            optimal_transfer_blocks: (1 << 20) / bs,
            // The CDB field is one byte; 255 blocks is the most the command can ask for.
            max_compare_and_write_blocks: 255,
            // libiscsi treats more than 1 Mi as insane; hole punching is cheap anyway.
            max_unmap_lba_count: 1 << 20,
            max_unmap_descriptors: 1024,
            unmap_granularity_blocks: (4096 / bs).max(1),
            // Just under 64 Ki blocks bounds a non-UNMAP WRITE SAME. It also stays below
            // 65536, which is where libiscsi's WriteSame16.Unmap would send a 32 MiB WRITE(16)
            // larger than MAXIMUM TRANSFER LENGTH.
            max_write_same_blocks: (1 << 16) - 1,
            physical_exponent: 0,
            // One optimal transfer: a WRITE ATOMIC fits one data buffer.
            max_atomic_transfer_blocks: (1 << 20) / bs,
        }
    }

    /// These limits on a physical block of `1 << exponent` logical blocks: the optimal
    /// transfer length and unmap granularities become whole physical blocks.
    pub fn with_physical_exponent(self, exponent: u8) -> Self {
        let per_physical = 1u32 << exponent.min(15);
        Self {
            physical_exponent: exponent,
            unmap_granularity_blocks: self.unmap_granularity_blocks.max(per_physical),
            ..self
        }
    }

    /// OPTIMAL TRANSFER LENGTH GRANULARITY in blocks: one physical block, and at least the
    /// 4 KiB the page cache and O_DIRECT work in.
    pub fn optimal_granularity_blocks(&self) -> u32 {
        self.unmap_granularity_blocks
            .max(1u32 << self.physical_exponent.min(15))
    }

    /// These limits (for `block_size`) with OPTIMAL TRANSFER LENGTH shrunk to one data
    /// buffer of `buf_bytes`. Linux initiators cap their I/O at the optimal length, so their
    /// commands fit one pool buffer; MAXIMUM TRANSFER LENGTH stays, and a longer command is
    /// served from a heap buffer. `None` when a buffer cannot hold two blocks.
    pub fn fit_buffer(self, block_size: u32, buf_bytes: usize) -> Option<Self> {
        let bs = usize::try_from(block_size.max(1)).ok()?;
        let per_buf = u32::try_from(buf_bytes / bs).unwrap_or(u32::MAX);
        if per_buf < 2 {
            return None;
        }
        Some(Self {
            optimal_transfer_blocks: self.optimal_transfer_blocks.min(per_buf),
            max_atomic_transfer_blocks: self.max_atomic_transfer_blocks.min(per_buf),
            ..self
        })
    }
}

/// The SCSI target port a logical unit is reached through, with its target port group
/// (SPC-4 5.15): TPGS in standard INQUIRY data and two designators of the Device
/// Identification page come from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPort {
    /// TARGET PORT GROUP.
    pub group: u16,
    /// RELATIVE TARGET PORT IDENTIFIER.
    pub relative: u16,
}

/// Everything INQUIRY needs to know about a logical unit.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Peripheral device type (`TYPE_DISK` or `TYPE_CONTROLLER`).
    pub device_type: u8,
    /// iSCSI target name (used for identifiers and the SCSI name string designators).
    pub target_name: String,
    /// Configured device id (stable across restarts).
    pub device_id: u64,
    /// Advertised limits.
    pub limits: BlockLimits,
    /// True when thin provisioning (UNMAP, WRITE SAME UNMAP) is advertised.
    pub thin: bool,
    /// Removable medium: RMB in standard INQUIRY data.
    pub removable: bool,
    /// The target port and its group, for a logical unit with implicit ALUA (TPGS 01b);
    /// `None` (the LUN 0 controller) reports relative target port 1 and no group.
    pub port: Option<TargetPort>,
}

/// 64-bit FNV-1a.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl Identity {
    /// Unit serial number: 16 upper-case hex digits of the device id.
    pub fn serial(&self) -> String {
        format!("{:016X}", self.device_id)
    }

    /// NAA 6 (IEEE Registered Extended) identifier, 16 bytes (SPC-4 7.8.6.6.5).
    pub fn naa(&self) -> [u8; 16] {
        let mut seed = self.target_name.as_bytes().to_vec();
        seed.push(0);
        seed.extend_from_slice(&self.device_id.to_be_bytes());
        let h1 = fnv1a64(&seed);
        seed.push(1);
        let h2 = fnv1a64(&seed);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&h1.to_be_bytes());
        out[8..].copy_from_slice(&h2.to_be_bytes());
        // NAA field = 6 in the top nibble.
        out[0] = 0x60 | (out[0] & 0x0F);
        out
    }

    fn vpd_pages(&self) -> &'static [u8] {
        if self.device_type == TYPE_DISK {
            &[
                page::SUPPORTED,
                page::SERIAL,
                page::DEVICE_ID,
                page::THIRD_PARTY_COPY,
                page::BLOCK_LIMITS,
                page::BLOCK_CHARACTERISTICS,
                page::PROVISIONING,
            ]
        } else {
            &[page::SUPPORTED, page::SERIAL, page::DEVICE_ID]
        }
    }

    /// Standard INQUIRY data, 74 bytes (the caller truncates to the allocation length).
    pub fn standard(&self) -> Vec<u8> {
        let mut d = vec![0u8; 74];
        d[0] = self.device_type & 0x1F;
        if self.removable {
            d[1] = 0x80; // RMB
        }
        d[2] = 0x06; // SPC-4
        d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
        d[4] = 74 - 5;
        if self.device_type == TYPE_DISK {
            // 3PC: a copy manager (EXTENDED COPY) answers through this LU; the Third-party
            // Copy VPD page describes it (SPC-4 6.6.2, 7.8.17), and only disks list it.
            d[5] = 0x08;
        }
        if self.port.is_some() {
            d[5] |= 0x10; // TPGS 01b: implicit asymmetric access (SPC-4 5.15).
        }
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(VENDOR_ID);
        let product = if self.device_type == TYPE_DISK {
            PRODUCT_ID_DISK
        } else {
            PRODUCT_ID_CONTROLLER
        };
        d[16..32].copy_from_slice(product);
        d[32..36].copy_from_slice(PRODUCT_REV);
        // Version descriptors (SPC-4 6.6.2 table): SAM-5, iSCSI, SPC-4, then the command set.
        let mut versions: Vec<u16> = vec![0x00A0, 0x0960, 0x0460];
        if self.device_type == TYPE_DISK {
            versions.push(0x04C0); // SBC-3
        }
        for (i, v) in versions.iter().enumerate() {
            d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        d
    }

    /// Standard INQUIRY data for a LUN without a logical unit (qualifier 011b).
    pub fn standard_no_lun() -> Vec<u8> {
        let mut d = vec![0u8; 36];
        d[0] = NO_LUN_BYTE0;
        d[2] = 0x06;
        d[3] = 0x12;
        d[4] = 36 - 5;
        d[8..16].copy_from_slice(VENDOR_ID);
        d[16..32].copy_from_slice(PRODUCT_ID_DISK);
        d[32..36].copy_from_slice(PRODUCT_REV);
        d
    }

    fn page_header(&self, code: u8, body: Vec<u8>) -> Vec<u8> {
        let mut d = Vec::with_capacity(body.len() + 4);
        d.push(self.device_type & 0x1F);
        d.push(code);
        // Every page body we build is far below 64 KiB.
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&body);
        d
    }

    fn device_id_page(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut designator = |proto_codeset: u8, piv_assoc_type: u8, value: &[u8]| {
            body.push(proto_codeset);
            body.push(piv_assoc_type);
            body.push(0);
            body.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
            body.extend_from_slice(value);
        };
        // NAA, binary, associated with the logical unit.
        designator(0x01, 0x03, &self.naa());
        // T10 vendor id, ASCII: vendor + serial.
        let mut t10 = VENDOR_ID.to_vec();
        t10.extend_from_slice(self.serial().as_bytes());
        designator(0x02, 0x01, &t10);
        // Relative target port, binary, PIV=1, associated with the target port; protocol
        // iSCSI (5) (SPC-4 7.8.6.6.7).
        let relative = self.port.map_or(1, |p| p.relative).to_be_bytes();
        designator(0x51, 0x80 | 0x10 | 0x04, &[0, 0, relative[0], relative[1]]);
        // Target port group, same association (SPC-4 7.8.6.6.8).
        if let Some(p) = self.port {
            let g = p.group.to_be_bytes();
            designator(0x51, 0x80 | 0x10 | 0x05, &[0, 0, g[0], g[1]]);
        }
        // SCSI name strings (UTF-8, NUL-terminated, padded to a multiple of 4): target port and target device.
        let pad = |s: String| {
            let mut v = s.into_bytes();
            v.push(0);
            while !v.len().is_multiple_of(4) {
                v.push(0);
            }
            v.truncate(252);
            v
        };
        designator(
            0x53,
            0x80 | 0x10 | 0x08,
            &pad(format!("{},t,0x0001", self.target_name)),
        );
        designator(0x53, 0x80 | 0x20 | 0x08, &pad(self.target_name.clone()));
        self.page_header(page::DEVICE_ID, body)
    }

    fn block_limits_page(&self) -> Vec<u8> {
        let l = &self.limits;
        let mut b = vec![0u8; 0x3C];
        // Offsets below are page offsets minus the 4-byte header.
        b[0] = 0; // WSNZ=0: a zero NUMBER OF LOGICAL BLOCKS in WRITE SAME means "to the end".
        b[1] = l.max_compare_and_write_blocks;
        b[2..4].copy_from_slice(
            &u16::try_from(l.optimal_granularity_blocks())
                .unwrap_or(1)
                .to_be_bytes(),
        );
        b[4..8].copy_from_slice(&l.max_transfer_blocks.to_be_bytes());
        b[8..12].copy_from_slice(&l.optimal_transfer_blocks.to_be_bytes());
        if self.thin {
            b[16..20].copy_from_slice(&l.max_unmap_lba_count.to_be_bytes());
            b[20..24].copy_from_slice(&l.max_unmap_descriptors.to_be_bytes());
            b[24..28].copy_from_slice(&l.unmap_granularity_blocks.to_be_bytes());
        }
        b[32..40].copy_from_slice(&l.max_write_same_blocks.to_be_bytes());
        // WRITE ATOMIC (16): MAXIMUM ATOMIC TRANSFER LENGTH; ATOMIC ALIGNMENT and ATOMIC
        // TRANSFER LENGTH GRANULARITY 0 (any LBA, any length: atomicity comes from the
        // logical unit's lock, not from the medium); no atomic boundaries.
        b[40..44].copy_from_slice(&l.max_atomic_transfer_blocks.to_be_bytes());
        self.page_header(page::BLOCK_LIMITS, b)
    }

    fn characteristics_page(&self) -> Vec<u8> {
        let mut b = vec![0u8; 0x3C];
        // MEDIUM ROTATION RATE 0001h: non-rotating medium.
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        if self.thin {
            // WABEREQ 01b: after SANITIZE BLOCK ERASE (offered with provisioning) a read
            // succeeds, and returns zeroes (LBPRZ).
            b[3] = 0x40;
        }
        self.page_header(page::BLOCK_CHARACTERISTICS, b)
    }

    fn provisioning_page(&self) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        if self.thin {
            // LBPU, LBPWS, LBPWS10, LBPRZ (deallocated blocks read as zeroes).
            b[1] = 0x80 | 0x40 | 0x20 | 0x04;
            // PROVISIONING TYPE 010b: thin provisioned.
            b[2] = 0x02;
        }
        self.page_header(page::PROVISIONING, b)
    }

    /// A VPD page, or INVALID FIELD IN CDB for a page we do not have.
    pub fn vpd(&self, code: u8) -> Result<Vec<u8>, Sense> {
        if !self.vpd_pages().contains(&code) {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)));
        }
        Ok(match code {
            page::SUPPORTED => self.page_header(code, self.vpd_pages().to_vec()),
            page::SERIAL => self.page_header(code, self.serial().into_bytes()),
            page::DEVICE_ID => self.device_id_page(),
            page::THIRD_PARTY_COPY => self.page_header(
                code,
                super::xcopy::third_party_copy_vpd_body(super::opcodes::OPS),
            ),
            page::BLOCK_LIMITS => self.block_limits_page(),
            page::BLOCK_CHARACTERISTICS => self.characteristics_page(),
            _ => self.provisioning_page(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimal_transfer_length_shrinks_to_one_data_buffer() {
        let l = BlockLimits::for_block_size(512)
            .fit_buffer(512, 256 * 1024)
            .unwrap();
        assert_eq!(l.optimal_transfer_blocks, 512);
        assert_eq!(l.max_transfer_blocks, (8 << 20) / 512, "the maximum stays");
        let l = BlockLimits::for_block_size(4096)
            .fit_buffer(4096, 256 * 1024)
            .unwrap();
        assert_eq!(l.optimal_transfer_blocks, 64);
        // Larger buffers never raise the 1 MiB optimum.
        let l = BlockLimits::for_block_size(512)
            .fit_buffer(512, 16 << 20)
            .unwrap();
        assert_eq!(l.optimal_transfer_blocks, (1 << 20) / 512);
        assert!(BlockLimits::for_block_size(4096)
            .fit_buffer(4096, 4096)
            .is_none());
    }

    fn disk() -> Identity {
        Identity {
            device_type: TYPE_DISK,
            target_name: "iqn.2024-01.test:t1".into(),
            device_id: 42,
            limits: BlockLimits::for_block_size(512),
            thin: true,
            removable: false,
            port: Some(TargetPort {
                group: 1,
                relative: 1,
            }),
        }
    }

    /// The designators of a Device Identification page as (byte 0, byte 1, value).
    fn designators(page: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut d = &page[4..];
        while d.len() >= 4 {
            let len = usize::from(d[3]);
            out.push((d[0], d[1], d[4..4 + len].to_vec()));
            d = &d[4 + len..];
        }
        out
    }

    #[test]
    fn tpgs_is_implicit_only_with_a_target_port() {
        assert_eq!((disk().standard()[5] >> 4) & 0x03, 0b01);
        assert_eq!(disk().standard()[5] & 0x08, 0x08, "3PC stays");
        let mut controller = disk();
        controller.port = None;
        assert_eq!((controller.standard()[5] >> 4) & 0x03, 0);
    }

    #[test]
    fn device_id_names_the_relative_port_and_the_port_group() {
        let mut id = disk();
        id.port = Some(TargetPort {
            group: 0x0102,
            relative: 0x0304,
        });
        let ds = designators(&id.vpd(page::DEVICE_ID).unwrap());
        // Relative target port (type 4) and target port group (type 5), both binary,
        // PIV=1, association target port, protocol iSCSI.
        assert!(ds.contains(&(0x51, 0x94, vec![0, 0, 3, 4])), "{ds:?}");
        assert!(ds.contains(&(0x51, 0x95, vec![0, 0, 1, 2])), "{ds:?}");
        // The logical unit's own designators do not depend on the port.
        let lu = |ds: &[(u8, u8, Vec<u8>)]| -> Vec<(u8, u8, Vec<u8>)> {
            ds.iter().filter(|d| d.1 & 0x30 == 0).cloned().collect()
        };
        let plain = designators(&disk().vpd(page::DEVICE_ID).unwrap());
        assert_eq!(lu(&ds), lu(&plain));
        assert_eq!(lu(&plain).len(), 2, "NAA and T10 vendor id");
        // Without a port (the LUN 0 controller): relative port 1 and no group.
        let mut c = disk();
        c.port = None;
        let ds = designators(&c.vpd(page::DEVICE_ID).unwrap());
        assert!(ds.contains(&(0x51, 0x94, vec![0, 0, 0, 1])));
        assert!(!ds.iter().any(|d| d.1 & 0x0F == 5));
    }

    #[test]
    fn three_pc_bit_and_the_third_party_copy_page_go_together() {
        let controller = Identity {
            device_type: TYPE_CONTROLLER,
            ..disk()
        };
        for id in [disk(), controller] {
            let three_pc = id.standard()[5] & 0x08 != 0;
            let pages = id.vpd(page::SUPPORTED).unwrap();
            let listed = pages[4..].contains(&page::THIRD_PARTY_COPY);
            assert_eq!(three_pc, listed, "device type {}", id.device_type);
            assert_eq!(id.vpd(page::THIRD_PARTY_COPY).is_ok(), listed);
        }
        let p = disk().vpd(page::THIRD_PARTY_COPY).unwrap();
        assert_eq!((p[0], p[1]), (0, 0x8F));
        // The first descriptor is Supported Commands (libiscsi looks for it).
        assert_eq!(&p[4..6], &[0x00, 0x01]);
    }

    #[test]
    fn rmb_follows_removable() {
        assert_eq!(disk().standard()[1], 0);
        let mut id = disk();
        id.removable = true;
        assert_eq!(id.standard()[1], 0x80);
    }

    #[test]
    fn standard_inquiry_fields() {
        let d = disk().standard();
        assert_eq!(d.len(), 74);
        assert_eq!(d[0], 0);
        assert_eq!(d[2], 6);
        assert_eq!(d[3] & 0x0F, 2);
        assert_eq!(usize::from(d[4]), d.len() - 5);
        assert_eq!(d[7] & 0x02, 0x02);
        assert_eq!(&d[8..16], b"TGTRS   ");
        assert!(d[8..36].iter().all(|&c| (0x20..=0x7E).contains(&c)));
        let versions: Vec<u16> = (0..8)
            .map(|i| u16::from_be_bytes([d[58 + 2 * i], d[59 + 2 * i]]))
            .collect();
        assert!(versions.contains(&0x04C0) && versions.contains(&0x0460));
    }

    #[test]
    fn supported_pages_all_resolve() {
        let id = disk();
        let p = id.vpd(page::SUPPORTED).unwrap();
        assert_eq!(p[1], 0);
        let n = usize::from(u16::from_be_bytes([p[2], p[3]]));
        for &code in &p[4..4 + n] {
            let v = id.vpd(code).unwrap();
            assert_eq!(v[1], code);
            assert_eq!(usize::from(u16::from_be_bytes([v[2], v[3]])) + 4, v.len());
        }
        assert_eq!(id.vpd(0xB3).unwrap_err().asc, 0x24);
    }

    #[test]
    fn block_limits_page_is_sbc3_length() {
        let v = disk().vpd(page::BLOCK_LIMITS).unwrap();
        assert_eq!(v.len(), 64);
        assert_eq!(v[3], 0x3C);
        let max_unmap = u32::from_be_bytes([v[20], v[21], v[22], v[23]]);
        assert!(max_unmap > 0 && max_unmap <= 1 << 20);
        let bdc = u32::from_be_bytes([v[24], v[25], v[26], v[27]]);
        assert!(bdc > 0);
        let ws = u64::from_be_bytes(v[36..44].try_into().unwrap());
        assert_eq!(ws, (1 << 16) - 1);
        let atomic = u32::from_be_bytes([v[44], v[45], v[46], v[47]]);
        let max_xfer = u32::from_be_bytes([v[8], v[9], v[10], v[11]]);
        assert!(atomic >= 256 && atomic <= max_xfer, "{atomic}");
        assert_eq!(&v[48..56], &[0; 8], "no alignment or granularity rule");
    }

    #[test]
    fn physical_blocks_raise_the_granularities() {
        let mut id = disk();
        id.limits = BlockLimits::for_block_size(512).with_physical_exponent(4);
        let v = id.vpd(page::BLOCK_LIMITS).unwrap();
        assert_eq!(u16::from_be_bytes([v[6], v[7]]), 16, "optimal granularity");
        assert_eq!(u32::from_be_bytes([v[28], v[29], v[30], v[31]]), 16);
        // 8 x 512 is the 4 KiB the default already uses.
        let l = BlockLimits::for_block_size(512).with_physical_exponent(3);
        assert_eq!(l.optimal_granularity_blocks(), 8);
        assert_eq!(l.physical_exponent, 3);
    }

    #[test]
    fn atomic_length_fits_one_buffer() {
        let l = BlockLimits::for_block_size(512)
            .fit_buffer(512, 128 * 1024)
            .unwrap();
        assert_eq!(l.max_atomic_transfer_blocks, 256);
    }

    #[test]
    fn characteristics_page_reports_wabereq_with_provisioning() {
        let v = disk().vpd(page::BLOCK_CHARACTERISTICS).unwrap();
        assert_eq!(v[7] >> 6, 1);
        let mut thick = disk();
        thick.thin = false;
        assert_eq!(thick.vpd(page::BLOCK_CHARACTERISTICS).unwrap()[7], 0);
    }

    #[test]
    fn provisioning_page_bits() {
        let v = disk().vpd(page::PROVISIONING).unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v[5], 0xE4);
        assert_eq!(v[6] & 0x07, 2);
    }

    #[test]
    fn device_id_is_stable_and_distinct() {
        let a = disk().vpd(page::DEVICE_ID).unwrap();
        assert_eq!(a, disk().vpd(page::DEVICE_ID).unwrap());
        let mut other = disk();
        other.device_id = 43;
        assert_ne!(a, other.vpd(page::DEVICE_ID).unwrap());
        // First designator: NAA, 16 bytes, NAA=6.
        assert_eq!(a[5] & 0x0F, 3);
        assert_eq!(a[7], 16);
        assert_eq!(a[8] >> 4, 6);
    }

    #[test]
    fn serial_page_is_ascii_device_id() {
        let v = disk().vpd(page::SERIAL).unwrap();
        assert_eq!(&v[4..], b"000000000000002A");
    }
}
