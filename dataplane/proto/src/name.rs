//! iSCSI name checks (RFC 7143 §4.2.7, "iSCSI Names", formerly RFC 3720 §3.2.6).
//!
//! A name is at most 223 bytes and, after the stringprep profile of RFC 3722, is lowercase.
//! We accept only the ASCII subset that profile allows (`a-z`, `0-9`, `-`, `.`, `:`) and
//! refuse anything needing normalisation, because names are compared byte for byte.
//! Three formats exist (§4.2.7.3 to §4.2.7.5):
//! `iqn.yyyy-mm.reversed.domain[:anything]`, `eui.` plus 16 hex digits, and `naa.` plus
//! 16 or 32 hex digits.

use thiserror::Error;

/// Longest iSCSI name in bytes (RFC 7143 §4.2.7.1).
pub const ISCSI_NAME_BYTES_MAX: usize = 223;

/// Why a string is not a valid iSCSI name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IscsiNameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`ISCSI_NAME_BYTES_MAX`] bytes.
    #[error("name is {len} bytes long, more than the maximum {ISCSI_NAME_BYTES_MAX}")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// The name contains an uppercase letter; iSCSI names are normalised to lowercase.
    #[error("uppercase {ch:?} at byte {at}: iSCSI names are lowercase")]
    Uppercase {
        /// The uppercase character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name contains a character outside `a-z`, `0-9`, `-`, `.`, `:`.
    #[error("character {ch:?} at byte {at} is not allowed (only a-z, 0-9, '-', '.', ':')")]
    BadChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name does not start with `iqn.`, `eui.` or `naa.`.
    #[error("name must start with \"iqn.\", \"eui.\" or \"naa.\"")]
    UnknownType,
    /// `iqn.` is not followed by a `yyyy-mm.` date.
    #[error("\"iqn.\" must be followed by a date \"yyyy-mm.\" with month 01..12")]
    BadDate,
    /// The naming authority (reversed domain name) after the date is missing or has an
    /// empty label.
    #[error("naming authority after the date must be a reversed domain name like \"com.example\"")]
    BadAuthority,
    /// An `iqn.` name ends with `:` and nothing after it.
    #[error("nothing after ':' in an iqn name")]
    EmptySuffix,
    /// An `eui.` name is not followed by exactly 16 hex digits.
    #[error("\"eui.\" must be followed by exactly 16 hex digits")]
    BadEui,
    /// A `naa.` name is not followed by 16 or 32 hex digits.
    #[error("\"naa.\" must be followed by 16 or 32 hex digits")]
    BadNaa,
}

/// Whether `name` is a valid iSCSI name; see [`check_iscsi_name`].
pub fn is_valid_iscsi_name(name: &str) -> bool {
    check_iscsi_name(name).is_ok()
}

/// Checks `name` against RFC 7143 §4.2.7 and says what is wrong with it.
pub fn check_iscsi_name(name: &str) -> Result<(), IscsiNameError> {
    if name.is_empty() {
        return Err(IscsiNameError::Empty);
    }
    if name.len() > ISCSI_NAME_BYTES_MAX {
        return Err(IscsiNameError::TooLong { len: name.len() });
    }
    for (at, ch) in name.char_indices() {
        match ch {
            'a'..='z' | '0'..='9' | '-' | '.' | ':' => {}
            'A'..='Z' => return Err(IscsiNameError::Uppercase { ch, at }),
            _ => return Err(IscsiNameError::BadChar { ch, at }),
        }
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        check_iqn(rest)
    } else if let Some(hex) = name.strip_prefix("eui.") {
        if hex.len() == 16 && is_hex(hex) {
            Ok(())
        } else {
            Err(IscsiNameError::BadEui)
        }
    } else if let Some(hex) = name.strip_prefix("naa.") {
        if (hex.len() == 16 || hex.len() == 32) && is_hex(hex) {
            Ok(())
        } else {
            Err(IscsiNameError::BadNaa)
        }
    } else {
        Err(IscsiNameError::UnknownType)
    }
}

/// Checks what follows `iqn.`: `yyyy-mm.authority[:suffix]`.
fn check_iqn(rest: &str) -> Result<(), IscsiNameError> {
    let b = rest.as_bytes();
    let date_ok = b.len() > 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
        && b[7] == b'.';
    if !date_ok {
        return Err(IscsiNameError::BadDate);
    }
    let after_date = &rest[8..];
    let (authority, suffix) = match after_date.split_once(':') {
        Some((a, s)) => (a, Some(s)),
        None => (after_date, None),
    };
    if authority.split('.').any(str::is_empty) {
        return Err(IscsiNameError::BadAuthority);
    }
    if suffix == Some("") {
        return Err(IscsiNameError::EmptySuffix);
    }
    Ok(())
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc_examples_and_common_initiators() {
        for ok in [
            "iqn.2024-01.com.gotgt:fast-storage",
            "iqn.2001-04.com.example",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
            "iqn.1994-05.com.redhat:6f1a3b2c4d5e",
            "iqn.2005-03.org.open-iscsi:abc.def",
            "eui.02004567a425678d",
            "naa.52004567ba64678d",
            "naa.62004567ba64678d0123456789abcdef",
        ] {
            assert_eq!(check_iscsi_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_malformed_names_with_the_reason() {
        let long = format!("iqn.2001-04.com.example:{}", "a".repeat(200));
        let cases: &[(&str, IscsiNameError)] = &[
            ("", IscsiNameError::Empty),
            (&long, IscsiNameError::TooLong { len: 224 }),
            (
                "iqn.2001-04.com.Example",
                IscsiNameError::Uppercase { ch: 'E', at: 16 },
            ),
            (
                "iqn.2016-09.com.gotgt.gostor:example_tgt_0",
                IscsiNameError::BadChar { ch: '_', at: 36 },
            ),
            (
                "iqn.2001-04.com.ex ample",
                IscsiNameError::BadChar { ch: ' ', at: 18 },
            ),
            ("foo.2001-04.com.example", IscsiNameError::UnknownType),
            ("iqn.2001-13.com.example", IscsiNameError::BadDate),
            ("iqn.2001-00.com.example", IscsiNameError::BadDate),
            ("iqn.01-04.com.example", IscsiNameError::BadDate),
            ("iqn.2001-04", IscsiNameError::BadDate),
            ("iqn.2001-04.", IscsiNameError::BadDate),
            ("iqn.2001-04.com..example", IscsiNameError::BadAuthority),
            ("iqn.2001-04.:x", IscsiNameError::BadAuthority),
            ("iqn.2001-04.com.example:", IscsiNameError::EmptySuffix),
            ("eui.02004567a425678", IscsiNameError::BadEui),
            // 'g' is an allowed name character but not a hex digit.
            ("eui.02004567a425678g", IscsiNameError::BadEui),
            ("naa.0123456789abcdef01", IscsiNameError::BadNaa),
        ];
        for (name, want) in cases {
            assert_eq!(check_iscsi_name(name), Err(want.clone()), "{name}");
        }
        assert!(!is_valid_iscsi_name("IQN.2001-04.com.example"));
    }

    #[test]
    fn accepts_a_name_of_exactly_the_maximum_length() {
        let prefix = "iqn.2001-04.com.example:";
        let name = format!(
            "{prefix}{}",
            "a".repeat(ISCSI_NAME_BYTES_MAX - prefix.len())
        );
        assert!(is_valid_iscsi_name(&name));
    }
}
