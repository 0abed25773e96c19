//! Source networks in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`) for initiator ACLs.

use std::fmt;
use std::net::IpAddr;

/// One network: an address and a prefix length. Only [`Cidr::parse`] builds one, so the
/// prefix always fits the address family and the host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address/prefix`.
    #[error("expected address/prefix, such as 192.0.2.0/24")]
    Syntax,
    /// The prefix is longer than the address.
    #[error("prefix length {0} is too long for the address family")]
    Prefix(u32),
    /// Bits set below the prefix: a typo such as `10.0.0.1/8` for `10.0.0.0/8`.
    #[error("host bits are set below the prefix")]
    HostBits,
}

fn bits(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(width: u32, prefix: u32) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (width - prefix)) - 1)
    }
}

impl Cidr {
    /// Parses `address/prefix`; a bare address means a single host.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| CidrError::Syntax)?;
        let (value, width) = bits(net);
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::Syntax)?
            }
            Some(_) => return Err(CidrError::Syntax),
        };
        if prefix > width {
            return Err(CidrError::Prefix(prefix));
        }
        if value & !mask(width, prefix) != 0 {
            return Err(CidrError::HostBits);
        }
        let prefix = u8::try_from(prefix).map_err(|_| CidrError::Prefix(prefix))?;
        Ok(Self { net, prefix })
    }

    /// Whether `ip` lies in this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, wa) = bits(self.net);
        let (b, wb) = bits(ip);
        wa == wb && (a ^ b) & mask(wa, u32::from(self.prefix)) == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_networks() {
        let cases: &[(&str, &str, bool)] = &[
            ("192.0.2.0/24", "192.0.2.77", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("192.0.2.5", "192.0.2.5", true),
            ("192.0.2.5", "192.0.2.6", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("192.0.2.0/24", "2001:db8::1", false),
        ];
        for (net, ip, want) in cases {
            let c = Cidr::parse(net).unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), *want, "{net} {ip}");
        }
    }

    #[test]
    fn refuses_malformed_networks() {
        let cases: &[(&str, CidrError)] = &[
            ("192.0.2.0/33", CidrError::Prefix(33)),
            ("10.0.0.1/8", CidrError::HostBits),
            ("host.example/24", CidrError::Syntax),
            ("192.0.2.0/", CidrError::Syntax),
            ("192.0.2.0/-1", CidrError::Syntax),
            ("2001:db8::/129", CidrError::Prefix(129)),
        ];
        for (s, want) in cases {
            assert_eq!(Cidr::parse(s).unwrap_err(), *want, "{s}");
        }
    }
}
