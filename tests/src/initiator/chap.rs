//! The initiator's side of CHAP (RFC 7143 §12.1.3, RFC 1994 §4.1), written independently
//! of the target's implementation so that each checks the other.
//!
//! The initiator offers `AuthMethod=CHAP`, then its `CHAP_A` list; it answers the target's
//! `CHAP_I`/`CHAP_C` with `CHAP_N` and `CHAP_R = H(CHAP_I || secret || CHAP_C)`; for mutual
//! CHAP it sends its own `CHAP_I`/`CHAP_C` in the same message and checks the target's
//! `CHAP_N`/`CHAP_R`. Algorithms by `CHAP_A` number: 5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256.
//!
//! Hostile tests reshape the response message with [`ChapOptions::tamper`]: it sees the
//! target's challenge and may replace, drop or add any key before the message is sent.

use std::io::Read;
use std::sync::Arc;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

use super::Error;

/// What the target asked us in its challenge message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapChallenge {
    /// The `CHAP_A` the target chose.
    pub algorithm: u8,
    /// The target's `CHAP_I`.
    pub identifier: u8,
    /// The target's `CHAP_C`, decoded.
    pub challenge: Vec<u8>,
}

/// Rewrites the keys of our response message (`CHAP_N`, `CHAP_R`, and for mutual CHAP
/// `CHAP_I`, `CHAP_C`) before they are sent.
pub type Tamper = Arc<dyn Fn(&ChapChallenge, &mut Vec<(String, String)>) + Send + Sync>;

/// CHAP credentials and behaviour for one login.
#[derive(Clone)]
pub struct ChapOptions {
    /// `CHAP_N` we send.
    pub username: String,
    /// The secret we prove we know.
    pub secret: Vec<u8>,
    /// `CHAP_A` values we offer, in our order of preference.
    pub algorithms: Vec<u8>,
    /// Mutual CHAP: the name the target must answer with and the secret it must know.
    pub mutual: Option<(String, Vec<u8>)>,
    /// Encode binary values in base64 (`0b…`) instead of hex (`0x…`).
    pub base64: bool,
    /// Reshapes the response message (hostile tests).
    pub tamper: Option<Tamper>,
}

impl std::fmt::Debug for ChapOptions {
    /// Written by hand: no secret in a test's output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapOptions")
            .field("username", &self.username)
            .field("algorithms", &self.algorithms)
            .field("mutual", &self.mutual.as_ref().map(|(n, _)| n))
            .field("base64", &self.base64)
            .field("tamper", &self.tamper.is_some())
            .finish_non_exhaustive()
    }
}

impl ChapOptions {
    /// One-way CHAP offering all four algorithms, strongest first.
    pub fn new(username: &str, secret: &str) -> Self {
        ChapOptions {
            username: username.to_string(),
            secret: secret.as_bytes().to_vec(),
            algorithms: vec![8, 7, 6, 5],
            mutual: None,
            base64: false,
            tamper: None,
        }
    }
}

/// `H(identifier || secret || challenge)` with the algorithm `CHAP_A` names.
pub fn response(algorithm: u8, identifier: u8, secret: &[u8], challenge: &[u8]) -> Option<Vec<u8>> {
    fn run<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update([id]);
        d.update(secret);
        d.update(challenge);
        d.finalize().to_vec()
    }
    Some(match algorithm {
        5 => run::<Md5>(identifier, secret, challenge),
        6 => run::<Sha1>(identifier, secret, challenge),
        7 => run::<Sha256>(identifier, secret, challenge),
        8 => run::<Sha3_256>(identifier, secret, challenge),
        _ => return None,
    })
}

/// Encodes binary as hex with `0x` (RFC 7143 §6.1, binary-value).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Encodes binary as base64 with `0b` (RFC 7143 §6.1, RFC 4648 alphabet with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::from("0b");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decodes a binary value given in hex (`0x`) or base64 (`0b`).
pub fn decode(value: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::Protocol(format!("CHAP value {value:?} is not hex or base64"));
    if let Some(h) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        if h.is_empty() || h.len() % 2 != 0 {
            return Err(bad());
        }
        return (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(h.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
            .collect();
    }
    if let Some(b) = value
        .strip_prefix("0b")
        .or_else(|| value.strip_prefix("0B"))
    {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in b.trim_end_matches('=').bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err(bad()),
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if out.is_empty() {
            return Err(bad());
        }
        return Ok(out);
    }
    Err(bad())
}

/// Bytes from the OS CSPRNG, for our mutual-CHAP identifier and challenge.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("/dev/urandom is readable");
    v
}

/// Where our side of the exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// `AuthMethod=CHAP` offered; waiting for the target to pick it.
    Offered,
    /// `CHAP_A` sent; waiting for the challenge.
    SentAlgorithms,
    /// Response sent; for mutual CHAP, our identifier and challenge, to check the answer.
    SentResponse {
        /// The algorithm in use.
        algorithm: u8,
        /// Our `CHAP_I` and `CHAP_C`, when mutual.
        ours: Option<(u8, Vec<u8>)>,
    },
    /// Authenticated (both ways when mutual).
    Done,
}

/// Reads the value of `key` from one response's keys.
fn get<'a>(keys: &'a [(String, String)], key: &str) -> Option<&'a str> {
    keys.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Advances the exchange with the keys of one Login Response; returns the keys to send next.
pub(super) fn advance(
    o: &ChapOptions,
    step: &mut Step,
    keys: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    let pair = |k: &str, v: String| (k.to_string(), v);
    match step.clone() {
        Step::Offered => match get(keys, "AuthMethod") {
            Some("CHAP") => {
                let list: Vec<String> = o.algorithms.iter().map(u8::to_string).collect();
                *step = Step::SentAlgorithms;
                Ok(vec![pair("CHAP_A", list.join(","))])
            }
            Some(other) => Err(Error::Protocol(format!(
                "target chose AuthMethod={other}, but we offered only CHAP"
            ))),
            None => Err(Error::Protocol(
                "target did not answer AuthMethod=CHAP".into(),
            )),
        },
        Step::SentAlgorithms => {
            let missing = |k: &str| Error::Protocol(format!("target's challenge lacks {k}"));
            let a = get(keys, "CHAP_A").ok_or_else(|| missing("CHAP_A"))?;
            let algorithm: u8 = a
                .parse()
                .map_err(|_| Error::Protocol(format!("CHAP_A={a} is not a number we offered")))?;
            if !o.algorithms.contains(&algorithm) {
                return Err(Error::Protocol(format!(
                    "target chose CHAP_A={algorithm}, which we did not offer"
                )));
            }
            let i = get(keys, "CHAP_I").ok_or_else(|| missing("CHAP_I"))?;
            let identifier: u8 = i
                .parse()
                .map_err(|_| Error::Protocol(format!("CHAP_I={i} is not 0..=255")))?;
            let challenge = decode(get(keys, "CHAP_C").ok_or_else(|| missing("CHAP_C"))?)?;
            if challenge.len() < 16 {
                return Err(Error::Protocol(format!(
                    "target's CHAP_C has {} bytes; RFC 7143 §12.1.3 asks for at least 16",
                    challenge.len()
                )));
            }
            let r = response(algorithm, identifier, &o.secret, &challenge)
                .ok_or_else(|| Error::Protocol(format!("CHAP_A={algorithm} unknown")))?;
            let enc = |b: &[u8]| if o.base64 { base64(b) } else { hex(b) };
            let mut out = vec![pair("CHAP_N", o.username.clone()), pair("CHAP_R", enc(&r))];
            let ours = o.mutual.as_ref().map(|_| {
                let id = random_bytes(1)[0];
                let c = random_bytes(32);
                out.push(pair("CHAP_I", id.to_string()));
                out.push(pair("CHAP_C", enc(&c)));
                (id, c)
            });
            if let Some(t) = &o.tamper {
                t(
                    &ChapChallenge {
                        algorithm,
                        identifier,
                        challenge,
                    },
                    &mut out,
                );
            }
            *step = Step::SentResponse { algorithm, ours };
            Ok(out)
        }
        Step::SentResponse { algorithm, ours } => {
            match (&o.mutual, ours) {
                (Some((name, secret)), Some((id, c))) => {
                    let n = get(keys, "CHAP_N").ok_or_else(|| {
                        Error::Protocol("target did not answer our mutual challenge".into())
                    })?;
                    let r = decode(get(keys, "CHAP_R").ok_or_else(|| {
                        Error::Protocol("target's mutual answer lacks CHAP_R".into())
                    })?)?;
                    let want = response(algorithm, id, secret, &c).unwrap_or_default();
                    if n != name || r != want {
                        return Err(Error::Protocol(
                            "target failed mutual CHAP: it does not know our target secret".into(),
                        ));
                    }
                }
                _ => {
                    if get(keys, "CHAP_R").is_some() {
                        return Err(Error::Protocol(
                            "target sent CHAP_R without being challenged".into(),
                        ));
                    }
                }
            }
            *step = Step::Done;
            Ok(Vec::new())
        }
        Step::Done => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        for len in [1usize, 2, 3, 16, 31, 32] {
            let b: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&hex(&b)).unwrap(), b);
            assert_eq!(decode(&base64(&b)).unwrap(), b);
        }
        assert_eq!(base64(b"any carnal pleas"), "0bYW55IGNhcm5hbCBwbGVhcw==");
        for bad in ["0x", "0x1", "0xzz", "0b", "0b!!", "12"] {
            assert!(decode(bad).is_err(), "{bad} decoded");
        }
    }

    #[test]
    fn responses_match_rfc_1994_construction() {
        // H(0x01 || "secret" || 0x00..0x0f), computed independently with Python's hashlib.
        let c: Vec<u8> = (0..16).collect();
        for (a, want) in [
            (5, "0x740e86463bda3a4d7017d6e0fba0699d"),
            (6, "0x3890198f5112376188a9742805758384545583a6"),
            (
                7,
                "0x28b96c916cf784528bbfaa6ad7e012cab293437604aae8d66a3295b319132cef",
            ),
            (
                8,
                "0xbdceca071be509f41acf88309bb6d12e51526c23a2d18f22c2bb8ed199c36fd8",
            ),
        ] {
            assert_eq!(
                hex(&response(a, 1, b"secret", &c).unwrap()),
                want,
                "CHAP_A={a}"
            );
        }
        assert!(response(9, 1, b"secret", &c).is_none());
    }
}
