//! The text key=value format of Login and Text PDU data segments (RFC 7143 §6.1): UTF-8
//! `key=value` pairs, each terminated by a NUL byte.

use super::Error;

/// Encodes pairs as `key=value\0...`.
pub fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes `key=value\0...`. Empty strings between NULs (padding some targets leave) are
/// skipped; a pair without `=`, an empty key or non-UTF-8 text is an error.
pub fn decode(data: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(item)
            .map_err(|_| Error::Protocol("text key is not UTF-8".into()))?;
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::Protocol(format!("text item {s:?} has no '='")))?;
        if k.is_empty() {
            return Err(Error::Protocol(format!("text item {s:?} has an empty key")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parses a numerical value: decimal, or hex with a `0x` prefix (RFC 7143 §6.1).
pub fn parse_number(key: &str, v: &str) -> Result<u64, Error> {
    let parsed = if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        v.parse::<u64>()
    };
    parsed.map_err(|_| Error::Protocol(format!("{key}={v} is not a number")))
}

/// Parses `Yes`/`No`.
pub fn parse_bool(key: &str, v: &str) -> Result<bool, Error> {
    match v {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(Error::Protocol(format!("{key}={v} is not Yes or No"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_pairs() {
        let pairs = vec![
            ("InitiatorName".to_string(), "iqn.x:y".to_string()),
            ("TargetAddress".to_string(), "127.0.0.1:3260,1".to_string()),
            ("Empty".to_string(), String::new()),
        ];
        let raw = encode(&pairs);
        assert_eq!(&raw[..22], b"InitiatorName=iqn.x:y\0");
        assert_eq!(decode(&raw).unwrap(), pairs);
    }

    #[test]
    fn value_may_contain_equals_and_padding_is_ignored() {
        let got = decode(b"A=b=c\0\0\0B=1\0").unwrap();
        assert_eq!(
            got,
            vec![("A".into(), "b=c".into()), ("B".into(), "1".into())]
        );
    }

    #[test]
    fn malformed_items_are_errors() {
        assert!(decode(b"NoEquals\0").is_err());
        assert!(decode(b"=value\0").is_err());
        assert!(decode(&[b'A', b'=', 0xff, 0]).is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(parse_number("K", "262144").unwrap(), 262_144);
        assert_eq!(parse_number("K", "0x10").unwrap(), 16);
        assert!(parse_number("K", "ten").is_err());
        assert!(parse_bool("K", "Yes").unwrap());
        assert!(!parse_bool("K", "No").unwrap());
        assert!(parse_bool("K", "yes").is_err());
    }
}
