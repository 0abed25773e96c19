//! CHAP authentication in the security negotiation stage (RFC 7143 §12.1.3, RFC 1994 §4.1),
//! as a pure state machine: the challenge and identifier come in from the caller (the
//! connection layer draws them from the OS CSPRNG), so nothing here does I/O.
//!
//! The exchange: the initiator offers `AuthMethod=CHAP`, then `CHAP_A=<list>`; we answer
//! with the strongest algorithm both sides allow, `CHAP_I` and `CHAP_C`; the initiator
//! answers `CHAP_N`/`CHAP_R` and, for mutual CHAP, its own `CHAP_I`/`CHAP_C`, to which we
//! answer `CHAP_N`/`CHAP_R`. Every failure is the same Login Response status, 0201
//! (authentication failure), so an attacker learns nothing about which part was wrong.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

use super::status;
use crate::limits;
use crate::pdu::text;

/// A CHAP digest algorithm with its `CHAP_A` number (RFC 7143 §12.1.3 and the IANA
/// "PPP Authentication Algorithms" registry that open-iscsi's `chap_algs` follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChapAlgorithm {
    /// MD5 (CHAP_A=5), the algorithm every initiator has.
    Md5,
    /// SHA-1 (CHAP_A=6).
    Sha1,
    /// SHA-256 (CHAP_A=7).
    Sha256,
    /// SHA3-256 (CHAP_A=8).
    Sha3_256,
}

impl ChapAlgorithm {
    /// Every algorithm, weakest first: the order in which "strongest" is decided.
    pub const ALL: [ChapAlgorithm; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha3_256];

    /// The `CHAP_A` value.
    pub fn number(self) -> u8 {
        match self {
            Self::Md5 => 5,
            Self::Sha1 => 6,
            Self::Sha256 => 7,
            Self::Sha3_256 => 8,
        }
    }

    /// The algorithm a `CHAP_A` value names, if we implement it.
    pub fn from_number(n: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|a| u64::from(a.number()) == n)
    }

    /// The configuration name (`md5`, `sha1`, `sha256`, `sha3-256`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha3-256" => Some(Self::Sha3_256),
            _ => None,
        }
    }

    /// Length in bytes of this algorithm's digest, which is the length of `CHAP_R`.
    pub fn digest_bytes(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 | Self::Sha3_256 => 32,
        }
    }

    /// The CHAP response: H(identifier || secret || challenge) (RFC 1994 §4.1).
    pub fn response(self, identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([identifier]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            Self::Md5 => run::<Md5>(identifier, secret, challenge),
            Self::Sha1 => run::<Sha1>(identifier, secret, challenge),
            Self::Sha256 => run::<Sha256>(identifier, secret, challenge),
            Self::Sha3_256 => run::<Sha3_256>(identifier, secret, challenge),
        }
    }
}

/// The credentials one target (or discovery) requires, as the live configuration holds
/// them. `Debug` is written by hand so that a secret can never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapPolicy {
    /// The name the initiator must send as `CHAP_N`.
    pub username: String,
    /// The secret the initiator proves it knows.
    pub secret: Vec<u8>,
    /// For mutual CHAP: the name and secret we answer the initiator's challenge with.
    pub mutual: Option<(String, Vec<u8>)>,
    /// Algorithms we accept; an initiator offering none of them fails.
    pub algorithms: Vec<ChapAlgorithm>,
}

impl std::fmt::Debug for ChapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapPolicy")
            .field("username", &self.username)
            .field("mutual", &self.mutual.as_ref().map(|(n, _)| n))
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The fresh randomness one login needs, drawn by the caller from the OS CSPRNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChapRandom {
    /// CHAP_I we send.
    pub identifier: u8,
    /// CHAP_C we send.
    pub challenge: [u8; limits::CHAP_CHALLENGE_BYTES],
}

/// Where the exchange stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// `AuthMethod=CHAP` not agreed yet.
    Start,
    /// We answered `AuthMethod=CHAP`; waiting for `CHAP_A`.
    AwaitAlgorithm,
    /// We sent our challenge; waiting for `CHAP_N`/`CHAP_R`.
    AwaitResponse(ChapAlgorithm),
    /// The initiator proved its identity (and got our proof back, if it asked).
    Done,
}

/// The CHAP side of one login.
#[derive(Debug)]
pub struct Chap {
    /// `None` when the OS could not supply randomness: then CHAP is refused, never run with
    /// a guessable challenge.
    random: Option<ChapRandom>,
    state: State,
}

/// The keys this module owns; everything else goes to operational negotiation.
pub fn is_auth_key(key: &str) -> bool {
    matches!(
        key,
        "AuthMethod" | "CHAP_A" | "CHAP_I" | "CHAP_C" | "CHAP_N" | "CHAP_R"
    )
}

/// Decodes a binary value in hex (`0x…`) or base64 (`0b…`) form (RFC 7143 §6.1).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    let (prefix, body) = (v.get(..2)?, v.get(2..)?);
    match prefix {
        "0x" | "0X" => decode_hex(body),
        "0b" | "0B" => decode_base64(body),
        _ => None,
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .map(|c| {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        })
        .collect::<Option<_>>()?;
    if digits.is_empty() {
        return None;
    }
    // An odd number of digits has an implied leading zero (RFC 7143 §6.1: "0x1" is 0x01).
    let lead = digits.len() % 2;
    let mut out = Vec::with_capacity(digits.len() / 2 + lead);
    if lead == 1 {
        out.push(digits[0]);
    }
    for pair in digits[lead..].chunks_exact(2) {
        out.push(pair[0] << 4 | pair[1]);
    }
    Some(out)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - pad];
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | sextet(c)?;
        }
        let bits = chunk.len() * 6;
        acc <<= 24 - bits;
        let be = acc.to_be_bytes();
        // 4 sextets give 3 bytes, 3 give 2, 2 give 1; a lone sextet is not valid base64.
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&be[1..=n]);
    }
    Some(out)
}

fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Compares two byte strings in time that depends only on their lengths, so a response
/// check leaks nothing about how many leading bytes were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_identifier(v: &str) -> Option<u8> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if !v.is_empty() && v.len() <= 3 && v.bytes().all(|c| c.is_ascii_digit()) {
        v.parse().ok()?
    } else {
        return None;
    };
    u8::try_from(n).ok()
}

/// What one Login Request did to the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No authentication is required, or it has completed: the stage may end.
    Complete,
    /// The exchange moved forward and needs another round trip.
    Pending,
}

impl Chap {
    /// The CHAP side of a login that will use `random` as its challenge.
    pub fn new(random: Option<ChapRandom>) -> Self {
        Self {
            random,
            state: State::Start,
        }
    }

    /// Whether authentication has completed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Handles the authentication keys of one Login Request in the security stage and
    /// appends our answers to `out`. `policy` is `None` when no authentication is required.
    ///
    /// Every refusal is [`status::AUTH_FAILURE`], whatever went wrong.
    pub fn step(
        &mut self,
        pairs: &[(String, String)],
        policy: Option<&ChapPolicy>,
        out: &mut Vec<u8>,
    ) -> Result<Progress, (u8, u8)> {
        let get = |k: &str| {
            let mut it = pairs.iter().filter(|(a, _)| a == k);
            let first = it.next().map(|(_, v)| v.as_str());
            // A key sent twice in one request is a protocol error (RFC 7143 §6.2); here it
            // could also smuggle a second response past the check of the first.
            if it.next().is_some() {
                Err(status::AUTH_FAILURE)
            } else {
                Ok(first)
            }
        };
        let auth_method = get("AuthMethod")?;
        let Some(policy) = policy else {
            // No authentication configured: the behaviour from before CHAP existed.
            if pairs.iter().any(|(k, _)| k != "AuthMethod") {
                return Err(status::AUTH_FAILURE);
            }
            if let Some(v) = auth_method {
                if v.split(',').any(|m| m == "None") {
                    text::push(out, "AuthMethod", "None");
                } else {
                    return Err(status::AUTH_FAILURE);
                }
            }
            self.state = State::Done;
            return Ok(Progress::Complete);
        };
        let (alg_offer, name, resp, peer_id, peer_chal) = (
            get("CHAP_A")?,
            get("CHAP_N")?,
            get("CHAP_R")?,
            get("CHAP_I")?,
            get("CHAP_C")?,
        );
        match self.state.clone() {
            State::Start => {
                let offered = auth_method.ok_or(status::AUTH_FAILURE)?;
                if !offered.split(',').any(|m| m == "CHAP") {
                    return Err(status::AUTH_FAILURE);
                }
                if name.is_some() || resp.is_some() || peer_id.is_some() || peer_chal.is_some() {
                    return Err(status::AUTH_FAILURE);
                }
                text::push(out, "AuthMethod", "CHAP");
                self.state = State::AwaitAlgorithm;
                // Some initiators send CHAP_A together with AuthMethod.
                match alg_offer {
                    Some(a) => self.offer_challenge(a, policy, out),
                    None => Ok(Progress::Pending),
                }
            }
            State::AwaitAlgorithm => {
                if auth_method.is_some()
                    || name.is_some()
                    || resp.is_some()
                    || peer_id.is_some()
                    || peer_chal.is_some()
                {
                    return Err(status::AUTH_FAILURE);
                }
                let a = alg_offer.ok_or(status::AUTH_FAILURE)?;
                self.offer_challenge(a, policy, out)
            }
            State::AwaitResponse(alg) => {
                if auth_method.is_some() || alg_offer.is_some() {
                    return Err(status::AUTH_FAILURE);
                }
                self.check_response(alg, policy, name, resp, peer_id, peer_chal, out)
            }
            State::Done => {
                if pairs.is_empty() {
                    Ok(Progress::Complete)
                } else {
                    Err(status::AUTH_FAILURE)
                }
            }
        }
    }

    fn offer_challenge(
        &mut self,
        offer: &str,
        policy: &ChapPolicy,
        out: &mut Vec<u8>,
    ) -> Result<Progress, (u8, u8)> {
        let mut best: Option<ChapAlgorithm> = None;
        for item in offer.split(',').take(limits::CHAP_ALGORITHMS_OFFERED_MAX) {
            let Some(alg) = item
                .parse::<u64>()
                .ok()
                .and_then(ChapAlgorithm::from_number)
            else {
                // Unknown or unparseable values are skipped: the offer is a preference list.
                continue;
            };
            if policy.algorithms.contains(&alg) && best.is_none_or(|b| alg > b) {
                best = Some(alg);
            }
        }
        let alg = best.ok_or(status::AUTH_FAILURE)?;
        let random = self.random.ok_or(status::TARGET_ERROR)?;
        text::push(out, "CHAP_A", &alg.number().to_string());
        text::push(out, "CHAP_I", &random.identifier.to_string());
        text::push(out, "CHAP_C", &encode_hex(&random.challenge));
        self.state = State::AwaitResponse(alg);
        Ok(Progress::Pending)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_response(
        &mut self,
        alg: ChapAlgorithm,
        policy: &ChapPolicy,
        name: Option<&str>,
        resp: Option<&str>,
        peer_id: Option<&str>,
        peer_chal: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<Progress, (u8, u8)> {
        const FAIL: (u8, u8) = status::AUTH_FAILURE;
        let name = name.ok_or(FAIL)?;
        let resp = resp.ok_or(FAIL)?;
        if name.is_empty() || name.len() > limits::CHAP_NAME_BYTES_MAX {
            return Err(FAIL);
        }
        let resp = decode_binary(resp).ok_or(FAIL)?;
        let random = self.random.ok_or(status::TARGET_ERROR)?;
        // Both the name and the response are checked before answering, so the time taken
        // does not tell a wrong name from a wrong secret.
        let expected = alg.response(random.identifier, &policy.secret, &random.challenge);
        let name_ok = constant_time_eq(name.as_bytes(), policy.username.as_bytes());
        let resp_ok = constant_time_eq(&resp, &expected);
        if !(name_ok & resp_ok) {
            return Err(FAIL);
        }
        match (peer_id, peer_chal) {
            (None, None) => {}
            (Some(id), Some(chal)) => {
                // Mutual CHAP: the initiator authenticates us (RFC 7143 §12.1.3).
                let (our_name, our_secret) = policy.mutual.as_ref().ok_or(FAIL)?;
                let id = parse_identifier(id).ok_or(FAIL)?;
                if chal.len() > 2 + 2 * limits::CHAP_CHALLENGE_PEER_BYTES_MAX {
                    return Err(FAIL);
                }
                let chal = decode_binary(chal).ok_or(FAIL)?;
                if chal.len() < limits::CHAP_CHALLENGE_PEER_BYTES_MIN
                    || chal.len() > limits::CHAP_CHALLENGE_PEER_BYTES_MAX
                {
                    return Err(FAIL);
                }
                // A challenge equal to ours would make us compute the very answer the
                // initiator owes us: a reflection attack (RFC 7143 §12.1.3).
                if chal == random.challenge {
                    return Err(FAIL);
                }
                text::push(out, "CHAP_N", our_name);
                text::push(
                    out,
                    "CHAP_R",
                    &encode_hex(&alg.response(id, our_secret, &chal)),
                );
            }
            // Half a mutual challenge is malformed.
            _ => return Err(FAIL),
        }
        self.state = State::Done;
        Ok(Progress::Complete)
    }
}

#[cfg(test)]
mod tests;
