//! The key=value text format of Login and Text PDUs (RFC 7143 §6.1).
//!
//! Pairs are `key=value` terminated by NUL; keys are at most 63 bytes (§6.1), values at most
//! 8192 bytes. Order is kept because responses must answer keys in the order they came.

use thiserror::Error;

/// Longest key name (RFC 7143 §6.1).
pub const KEY_BYTES_MAX: usize = 63;

/// Longest value we accept (RFC 7143 §6.1 allows 255 for most keys; 8192 bytes for binary
/// values such as CHAP challenges, so that is the overall bound).
pub const VALUE_BYTES_MAX: usize = 8192;

/// A malformed key=value list.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TextError {
    /// A pair had no `=`.
    #[error("text pair without '=': {0:?}")]
    NoEquals(String),
    /// A key is empty, too long or has characters outside the allowed set.
    #[error("invalid text key {0:?}")]
    BadKey(String),
    /// A value is too long.
    #[error("value of {key} is {len} bytes, over the limit")]
    ValueTooLong {
        /// The key.
        key: String,
        /// Its value's length.
        len: usize,
    },
    /// The same key appeared twice in one negotiation.
    #[error("key {0} sent twice")]
    Duplicate(String),
    /// Not UTF-8.
    #[error("text is not valid UTF-8")]
    NotUtf8,
}

/// Parses a complete key=value list (after continuation PDUs were joined).
///
/// A trailing fragment without a NUL is accepted as a last pair, as initiators in the wild
/// sometimes omit the final NUL.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let item = std::str::from_utf8(item).map_err(|_| TextError::NotUtf8)?;
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| TextError::NoEquals(item.chars().take(64).collect()))?;
        let key_ok = !k.is_empty()
            && k.len() <= KEY_BYTES_MAX
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:_+@".contains(&b));
        if !key_ok {
            return Err(TextError::BadKey(k.chars().take(64).collect()));
        }
        if v.len() > VALUE_BYTES_MAX {
            return Err(TextError::ValueTooLong {
                key: k.to_string(),
                len: v.len(),
            });
        }
        if pairs.iter().any(|(pk, _)| pk == k) {
            return Err(TextError::Duplicate(k.to_string()));
        }
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

/// Appends `key=value\0` to `out`.
pub fn push(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_in_order() {
        let p = parse(b"InitiatorName=iqn.x\0SessionType=Normal\0").unwrap();
        assert_eq!(
            p,
            vec![
                ("InitiatorName".into(), "iqn.x".into()),
                ("SessionType".into(), "Normal".into())
            ]
        );
        assert_eq!(parse(b"A=1").unwrap().len(), 1);
        assert_eq!(parse(b"SendTargets=\0").unwrap()[0].1, "");
    }

    #[test]
    fn refuses_malformed_text() {
        assert!(matches!(parse(b"novalue\0"), Err(TextError::NoEquals(_))));
        assert!(matches!(parse(b"=x\0"), Err(TextError::BadKey(_))));
        assert!(matches!(parse(b"A=1\0A=2\0"), Err(TextError::Duplicate(_))));
        let long_key = format!("{}=1", "K".repeat(64));
        assert!(matches!(
            parse(long_key.as_bytes()),
            Err(TextError::BadKey(_))
        ));
        let long_val = format!("K={}", "v".repeat(VALUE_BYTES_MAX + 1));
        assert!(matches!(
            parse(long_val.as_bytes()),
            Err(TextError::ValueTooLong { .. })
        ));
        assert_eq!(parse(&[0xff, b'=', b'1']), Err(TextError::NotUtf8));
    }

    #[test]
    fn push_round_trips() {
        let mut out = Vec::new();
        push(&mut out, "TargetName", "iqn.2026-01.org.example:a");
        push(&mut out, "TargetAddress", "127.0.0.1:3260,1");
        let p = parse(&out).unwrap();
        assert_eq!(p[1].1, "127.0.0.1:3260,1");
    }
}
