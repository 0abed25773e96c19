//! Every counter the data plane exports, read by the control socket's `GetStats` and turned
//! into Prometheus metrics by the control plane.
//!
//! Counting is one relaxed atomic add on a counter the code already holds a reference to
//! (the logical unit, or the shared state): no lookup by label and no lock per I/O.

use std::sync::atomic::{AtomicU64, Ordering};

/// Data-plane-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Logins that reached full feature phase.
    pub logins_total: AtomicU64,
    /// Logins refused or failed.
    pub login_failures_total: AtomicU64,
    /// Header or data digest mismatches.
    pub digest_errors_total: AtomicU64,
}

/// Per logical unit I/O counters.
#[derive(Debug, Default)]
pub struct LuCounters {
    /// Read commands completed (READ 6/10/12/16).
    pub read_commands_total: AtomicU64,
    /// Write commands completed (WRITE, WRITE AND VERIFY, WRITE SAME, COMPARE AND WRITE).
    pub write_commands_total: AtomicU64,
    /// Bytes returned by read commands.
    pub read_bytes_total: AtomicU64,
    /// Bytes taken by write commands.
    pub write_bytes_total: AtomicU64,
    /// Commands that ended in CHECK CONDITION.
    pub check_conditions_total: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl LuCounters {
    /// Counts one finished command by its opcode, data sizes and status.
    pub fn count(&self, opcode: u8, data_in_bytes: usize, data_out_bytes: usize, status: u8) {
        let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        match opcode {
            0x08 | 0x28 | 0xa8 | 0x88 => {
                inc(&self.read_commands_total);
                add(&self.read_bytes_total, to_u64(data_in_bytes));
            }
            0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e | 0x41 | 0x93 | 0x89 => {
                inc(&self.write_commands_total);
                add(&self.write_bytes_total, to_u64(data_out_bytes));
            }
            _ => {}
        }
        if status == crate::scsi::status::CHECK_CONDITION {
            inc(&self.check_conditions_total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reads_writes_and_check_conditions_by_opcode() {
        let c = LuCounters::default();
        c.count(0x28, 4096, 0, 0);
        c.count(0x8a, 0, 8192, 0);
        c.count(0x12, 36, 0, 0);
        c.count(0x88, 0, 0, 2);
        assert_eq!(get(&c.read_commands_total), 2);
        assert_eq!(get(&c.read_bytes_total), 4096);
        assert_eq!(get(&c.write_commands_total), 1);
        assert_eq!(get(&c.write_bytes_total), 8192);
        assert_eq!(get(&c.check_conditions_total), 1);
    }
}
