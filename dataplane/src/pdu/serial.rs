//! Serial number arithmetic (RFC 1982, as RFC 7143 §4.2.2.1 requires for CmdSN, StatSN,
//! DataSN and R2TSN): 32-bit counters that wrap and compare within half the number space.

use std::cmp::Ordering;

/// A 32-bit sequence number compared by RFC 1982 rules; comparing raw `u32`s is a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SerialNumber(pub u32);

impl SerialNumber {
    /// The number `n` steps after this one, wrapping.
    #[must_use]
    pub fn plus(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// RFC 1982 comparison; `None` when the two are exactly half the space apart (undefined).
    pub fn compare(self, other: Self) -> Option<Ordering> {
        let diff = other.0.wrapping_sub(self.0);
        match diff {
            0 => Some(Ordering::Equal),
            d if d < 0x8000_0000 => Some(Ordering::Less),
            0x8000_0000 => None,
            _ => Some(Ordering::Greater),
        }
    }

    /// True when `self` comes strictly before `other`.
    pub fn lt(self, other: Self) -> bool {
        self.compare(other) == Some(Ordering::Less)
    }

    /// True when `self` comes strictly after `other`.
    pub fn gt(self, other: Self) -> bool {
        self.compare(other) == Some(Ordering::Greater)
    }

    /// Steps from `self` forward to `later` (wrapping distance).
    pub fn distance_to(self, later: Self) -> u32 {
        later.0.wrapping_sub(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_wrap() {
        let a = SerialNumber(0xffff_fff0);
        let b = a.plus(0x20);
        assert_eq!(b.0, 0x10);
        assert!(a.lt(b));
        assert!(b.gt(a));
        assert_eq!(a.distance_to(b), 0x20);
        assert_eq!(SerialNumber(0).compare(SerialNumber(0x8000_0000)), None);
        assert!(!a.lt(a));
    }
}
