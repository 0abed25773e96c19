//! CPU lists in the Linux list syntax (`0-3,6`), as used by `cpuset(7)` and `taskset -c`:
//! the one parser of the workspace, for `performance.cpuList` in the config ([`CpuList`])
//! and for the kernel's own lists in sysfs ([`parse_kernel_cpu_list`], read by the data
//! plane's NUMA topology).

// Wire and text codec: conversions that could truncate or lose a sign are `try_from`, never
// `as` (STYLE.md, hot-path rules).
#![deny(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use thiserror::Error;

use crate::config::CPU_INDEX_MAX;

/// A parsed, non-empty set of CPU indexes, kept sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList {
    cpus: Vec<u32>,
}

/// Why a CPU list was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CpuListError {
    /// The list, or one of its comma-separated items, is empty.
    #[error("empty item in cpu list {list:?}")]
    EmptyItem {
        /// The whole list as written.
        list: String,
    },
    /// An item is neither `N` nor `N-M` with decimal numbers.
    #[error("item {item:?} is not a cpu number or a range like 0-3")]
    BadItem {
        /// The offending item.
        item: String,
    },
    /// A range whose end is below its start.
    #[error("range {item:?} ends before it starts")]
    Reversed {
        /// The offending item.
        item: String,
    },
    /// A CPU index above [`CPU_INDEX_MAX`].
    #[error("cpu {cpu} is above the maximum {CPU_INDEX_MAX}")]
    TooLarge {
        /// The offending CPU index.
        cpu: u64,
    },
}

impl CpuList {
    /// Parses `s`, such as `0-3,6`. Whitespace is not allowed.
    pub fn parse(s: &str) -> Result<Self, CpuListError> {
        parse_items(s).map(|cpus| CpuList { cpus })
    }

    /// The CPU indexes, ascending and without duplicates; never empty.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// Whether `cpu` is in the list.
    pub fn contains(&self, cpu: u32) -> bool {
        self.cpus.binary_search(&cpu).is_ok()
    }
}

/// Parses a CPU list as the kernel writes it (`/sys/devices/system/node/node<N>/cpulist`,
/// `/sys/devices/system/cpu/online`): the syntax of [`CpuList::parse`], with the trailing
/// newline (any surrounding whitespace) ignored and an empty list meaning no CPUs (a
/// memory-only node). Ascending, without duplicates.
pub fn parse_kernel_cpu_list(text: &str) -> Result<Vec<u32>, CpuListError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    parse_items(text)
}

/// `N` and `N-M` items separated by commas, each index at most [`CPU_INDEX_MAX`] (which
/// also bounds the result): sorted and deduplicated.
fn parse_items(s: &str) -> Result<Vec<u32>, CpuListError> {
    let mut cpus = Vec::new();
    for item in s.split(',') {
        if item.is_empty() {
            return Err(CpuListError::EmptyItem { list: s.to_owned() });
        }
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (cpu_index(a, item)?, cpu_index(b, item)?),
            None => {
                let n = cpu_index(item, item)?;
                (n, n)
            }
        };
        if hi < lo {
            return Err(CpuListError::Reversed {
                item: item.to_owned(),
            });
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn cpu_index(s: &str, item: &str) -> Result<u32, CpuListError> {
    let n = crate::validate::parse_decimal(s).ok_or_else(|| CpuListError::BadItem {
        item: item.to_owned(),
    })?;
    match u32::try_from(n) {
        Ok(n) if n <= CPU_INDEX_MAX => Ok(n),
        _ => Err(CpuListError::TooLarge { cpu: n }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles_sorted_and_deduplicated() {
        let l = CpuList::parse("6,0-3,2").unwrap();
        assert_eq!(l.cpus(), &[0, 1, 2, 3, 6]);
        assert!(l.contains(6));
        assert!(!l.contains(4));
    }

    #[test]
    fn kernel_lists_allow_the_trailing_newline_and_the_empty_list() {
        let table: &[(&str, Option<&[u32]>)] = &[
            ("0", Some(&[0])),
            ("0-3,8-11\n", Some(&[0, 1, 2, 3, 8, 9, 10, 11])),
            ("3,3,2-3", Some(&[2, 3])),
            ("", Some(&[])),
            ("\n", Some(&[])),
            ("8191", Some(&[8191])),
            ("0,,2", None),
            ("0,", None),
            ("5-3", None),
            ("8192", None),
            ("0-99999", None),
            ("a", None),
            ("-1", None),
            ("1-2-3", None),
            ("+1", None),
            ("0-7:2", None),
            ("99999999999", None),
            (" 5 , 1-2 ", None),
        ];
        for (input, expected) in table {
            assert_eq!(
                parse_kernel_cpu_list(input).ok().as_deref(),
                *expected,
                "input {input:?}"
            );
        }
        assert_eq!(
            parse_kernel_cpu_list("8192\n").unwrap_err(),
            CpuListError::TooLarge { cpu: 8192 }
        );
        assert!(
            CpuList::parse("0-3\n").is_err(),
            "the config form takes no whitespace"
        );
    }

    #[test]
    fn refuses_malformed_lists() {
        for bad in ["", "1,", ",1", "a", "1-", "-1", "3-1", "1 ,2", "8192", "+1"] {
            assert!(CpuList::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            CpuList::parse("3-1").unwrap_err().to_string(),
            "range \"3-1\" ends before it starts"
        );
    }
}
