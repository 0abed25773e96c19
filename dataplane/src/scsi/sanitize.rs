//! SANITIZE (SBC-4 5.30, 4.33): the service actions we offer, the OVERWRITE parameter list
//! and the pattern an overwrite pass writes, and which commands a logical unit still serves
//! while a sanitize runs. Pure: the logical unit (`crate::lu`) runs the operation on its
//! backend.
//!
//! We offer OVERWRITE (every block written with the initiator's pattern, OWCOUNT passes,
//! inverted between passes when INVERT is set), BLOCK ERASE (every block deallocated, so it
//! reads as zeroes: only on a thin-provisioned unit, where LBPME=1 and LBPRZ=1) and EXIT
//! FAILURE MODE. CRYPTO ERASE is refused with INVALID FIELD IN CDB: our media hold no
//! encryption key to change.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::Command;
use super::sense::Sense;

/// SANITIZE service action codes (SBC-4 table 5.30-2).
pub mod action {
    /// OVERWRITE.
    pub const OVERWRITE: u8 = 0x01;
    /// BLOCK ERASE.
    pub const BLOCK_ERASE: u8 = 0x02;
    /// CRYPTO ERASE (not offered).
    pub const CRYPTO_ERASE: u8 = 0x03;
    /// EXIT FAILURE MODE.
    pub const EXIT_FAILURE_MODE: u8 = 0x1F;
}

/// A sanitize service action we offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write a pattern to every block.
    Overwrite,
    /// Deallocate every block.
    BlockErase,
    /// Leave sanitize failure mode.
    ExitFailureMode,
}

impl Action {
    /// The action for a service action code; INVALID FIELD IN CDB for the rest, CRYPTO
    /// ERASE included.
    pub fn from_code(code: u8) -> Result<Self, Sense> {
        match code {
            action::OVERWRITE => Ok(Self::Overwrite),
            action::BLOCK_ERASE => Ok(Self::BlockErase),
            action::EXIT_FAILURE_MODE => Ok(Self::ExitFailureMode),
            _ => Err(Sense::invalid_field_in_cdb(1, Some(4))),
        }
    }
}

/// A decoded OVERWRITE parameter list (SBC-4 5.30.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overwrite {
    /// Invert the pattern between consecutive passes.
    pub invert: bool,
    /// OVERWRITE COUNT: passes, 1..=31.
    pub passes: u8,
    /// INITIALIZATION PATTERN, 1 to one block of bytes, repeated across each block.
    pub pattern: Vec<u8>,
}

/// Parses the OVERWRITE parameter list of a CDB whose PARAMETER LIST LENGTH is
/// `param_len`. The list is the 4-byte header and a pattern of 1 to `block_size` bytes, so
/// the length must lie in 5..=block_size+4 (INVALID FIELD IN CDB otherwise), and the
/// pattern must fit in it; OVERWRITE COUNT 0 and a reserved TEST value are refused.
pub fn parse_overwrite(data: &[u8], param_len: u32, block_size: u32) -> Result<Overwrite, Sense> {
    let max = u64::from(block_size) + 4;
    if param_len < 5 || u64::from(param_len) > max {
        return Err(Sense::invalid_field_in_cdb(7, None));
    }
    let n = usize::try_from(param_len).map_err(|_| Sense::invalid_field_in_cdb(7, None))?;
    let list = data.get(..n).ok_or(Sense::param_list_length_error())?;
    let passes = list[0] & 0x1F;
    if passes == 0 {
        return Err(Sense::invalid_field_in_cdb(7, None));
    }
    if list[0] & 0x60 != 0 {
        // TEST is for vendor test modes; only 00b is defined for normal operation.
        return Err(Sense::invalid_field_in_param(0, Some(6)));
    }
    let pattern_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    if pattern_len == 0 || pattern_len > n - 4 {
        return Err(Sense::invalid_field_in_cdb(7, None));
    }
    Ok(Overwrite {
        invert: list[0] & 0x80 != 0,
        passes,
        pattern: list[4..4 + pattern_len].to_vec(),
    })
}

impl Overwrite {
    /// Fills `buf` (whole blocks of `block_size` bytes) with what pass `pass` (from 0)
    /// writes: the pattern from the start of every block, repeated to its end, inverted on
    /// odd passes when INVERT is set.
    pub fn fill(&self, buf: &mut [u8], block_size: usize, pass: u8) {
        let flip = if self.invert && pass % 2 == 1 {
            0xFF
        } else {
            0
        };
        for block in buf.chunks_mut(block_size.max(1)) {
            for (b, p) in block.iter_mut().zip(self.pattern.iter().cycle()) {
                *b = p ^ flip;
            }
        }
    }
}

/// True for the commands a logical unit serves while a sanitize runs (SBC-4 4.33.2: the
/// rest end in NOT READY, SANITIZE IN PROGRESS): those that report on the unit without
/// touching its medium.
pub fn served_while_sanitizing(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Inquiry { .. }
            | Command::ReportLuns { .. }
            | Command::RequestSense { .. }
            | Command::ReportSupportedOpcodes { .. }
    )
}

/// True for the commands refused with SANITIZE COMMAND FAILED while the medium is in
/// sanitize failure mode: those that read or write it (SANITIZE itself is how to leave).
pub fn refused_in_failure_mode(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Read { .. }
            | Command::Write { .. }
            | Command::Verify { .. }
            | Command::CompareAndWrite { .. }
            | Command::WriteSame { .. }
            | Command::Unmap { .. }
            | Command::GetLbaStatus { .. }
            | Command::Prefetch { .. }
    )
}

/// Progress in 65536ths for `done` of `total` (SPC-4 4.5.2.4.4).
pub fn progress(done: u64, total: u64) -> u16 {
    if total == 0 {
        return 0;
    }
    let v = u128::from(done.min(total)) * 65536 / u128::from(total);
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(b0: u8, pattern: &[u8]) -> Vec<u8> {
        let mut v = vec![b0, 0];
        v.extend_from_slice(&u16::try_from(pattern.len()).unwrap().to_be_bytes());
        v.extend_from_slice(pattern);
        v
    }

    #[test]
    fn overwrite_list_lengths_counts_and_patterns() {
        let l = list(0x01, &[0xAA; 512]);
        let o = parse_overwrite(&l, 516, 512).unwrap();
        assert_eq!((o.invert, o.passes, o.pattern.len()), (false, 1, 512));
        // A short pattern in a list of just its length.
        let l = list(0x83, &[1, 2, 3, 4]);
        let o = parse_overwrite(&l, 8, 512).unwrap();
        assert_eq!(
            (o.invert, o.passes, o.pattern.clone()),
            (true, 3, vec![1, 2, 3, 4])
        );
        for bad in [0u32, 1, 4, 517] {
            let e = parse_overwrite(&[0u8; 600], bad, 512).unwrap_err();
            assert_eq!((e.asc, e.ascq), (0x24, 0), "length {bad}");
        }
        // OVERWRITE COUNT 0, pattern length 0, pattern longer than a block or the list.
        let mut l = list(0x00, &[0xAA; 512]);
        assert_eq!(parse_overwrite(&l, 516, 512).unwrap_err().asc, 0x24);
        l[0] = 1;
        l[2] = 0;
        l[3] = 0;
        assert_eq!(parse_overwrite(&l, 516, 512).unwrap_err().asc, 0x24);
        l[2..4].copy_from_slice(&516u16.to_be_bytes());
        assert_eq!(parse_overwrite(&l, 516, 512).unwrap_err().asc, 0x24);
        // Data-Out shorter than the list it announces.
        assert_eq!(parse_overwrite(&l[..10], 516, 512).unwrap_err().asc, 0x1A);
    }

    #[test]
    fn fill_repeats_the_pattern_per_block_and_inverts_odd_passes() {
        let o = Overwrite {
            invert: true,
            passes: 2,
            pattern: vec![1, 2, 3],
        };
        let mut b = [0u8; 8];
        o.fill(&mut b, 4, 0);
        assert_eq!(b, [1, 2, 3, 1, 1, 2, 3, 1]);
        o.fill(&mut b, 4, 1);
        assert_eq!(b, [!1, !2, !3, !1, !1, !2, !3, !1]);
    }

    #[test]
    fn actions_and_progress() {
        assert_eq!(Action::from_code(1), Ok(Action::Overwrite));
        assert_eq!(Action::from_code(0x1F), Ok(Action::ExitFailureMode));
        for code in [0u8, action::CRYPTO_ERASE, 4, 0x1E] {
            assert_eq!(Action::from_code(code).unwrap_err().asc, 0x24);
        }
        assert_eq!(progress(0, 10), 0);
        assert_eq!(progress(5, 10), 0x8000);
        assert_eq!(progress(10, 10), u16::MAX);
        assert_eq!(progress(1, 0), 0);
    }
}
