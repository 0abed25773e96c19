//! The login phase (RFC 7143 §6 and §11.12–11.13) as the initiator runs it: SecurityNegotiation
//! with `AuthMethod=None`, or with CHAP ([`super::chap`]) when [`SessionOptions::chap`] is
//! set, then LoginOperationalNegotiation, then FullFeaturePhase.
//!
//! Negotiation results are computed from both offers by the rules of RFC 7143 §13 (minimum
//! for burst lengths, OR for InitialR2T, AND for ImmediateData, list choice for digests), and an
//! answer a conforming target could not have given (a larger FirstBurstLength than offered, a
//! digest we did not list) is reported as a protocol violation.

use std::io::{Read, Write};

use super::chap::{self, ChapOptions};
use super::pdu::{read_pdu, write_pdu, Bhs, Body, Digests, LoginRequest, Stage};
use super::text;
use super::Error;

/// Data segment bound during login (RFC 7143 §13.12: MaxRecvDataSegmentLength defaults to
/// 8192 until the login phase is over).
pub const LOGIN_DATA_LEN_MAX: u32 = 8192;

/// How many Login Request/Response exchanges we allow before giving up, so a target that never
/// sets the T bit cannot keep us in a loop.
const LOGIN_ROUNDS_MAX: usize = 16;

/// What the initiator offers during login.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// InitiatorName (an IQN).
    pub initiator_name: String,
    /// TargetName; `None` opens a discovery session.
    pub target_name: Option<String>,
    /// Offer `HeaderDigest=CRC32C,None` instead of `None`.
    pub header_digest: bool,
    /// Offer `DataDigest=CRC32C,None` instead of `None`.
    pub data_digest: bool,
    /// ImmediateData we offer.
    pub immediate_data: bool,
    /// InitialR2T we offer.
    pub initial_r2t: bool,
    /// MaxRecvDataSegmentLength we declare: the largest data segment the target may send us.
    pub recv_data_segment_len_bytes_max: u32,
    /// FirstBurstLength we offer.
    pub first_burst_len_bytes: u32,
    /// MaxBurstLength we offer.
    pub burst_len_bytes_max: u32,
    /// MaxOutstandingR2T we offer.
    pub outstanding_r2t_max: u32,
    /// How long a command may wait for its response before it fails with a timeout.
    pub command_timeout: std::time::Duration,
    /// Check ExpDataSN in SCSI Responses (RFC 7143 §11.4.8: the number of Data-In PDUs sent
    /// for the command). On by default; a knob for judging targets that follow RFC 3720, which
    /// also counted R2Ts.
    pub check_exp_data_sn: bool,
    /// Authenticate with CHAP instead of `AuthMethod=None`.
    pub chap: Option<ChapOptions>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            initiator_name: "iqn.2026-01.io.github.tgt-rs:test-initiator".into(),
            target_name: None,
            header_digest: false,
            data_digest: false,
            immediate_data: true,
            initial_r2t: false,
            recv_data_segment_len_bytes_max: 65_536,
            first_burst_len_bytes: 65_536,
            burst_len_bytes_max: 262_144,
            outstanding_r2t_max: 1,
            command_timeout: std::time::Duration::from_secs(30),
            check_exp_data_sn: true,
            chap: None,
        }
    }
}

/// The operational parameters in force after login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// CRC32C header digests are on.
    pub header_digest: bool,
    /// CRC32C data digests are on.
    pub data_digest: bool,
    /// ImmediateData result.
    pub immediate_data: bool,
    /// InitialR2T result.
    pub initial_r2t: bool,
    /// FirstBurstLength result.
    pub first_burst_len_bytes: u32,
    /// MaxBurstLength result.
    pub burst_len_bytes_max: u32,
    /// MaxOutstandingR2T result.
    pub outstanding_r2t_max: u32,
    /// The target's declared MaxRecvDataSegmentLength: the largest segment we may send.
    pub send_data_segment_len_bytes_max: u32,
    /// Our declared MaxRecvDataSegmentLength: the largest segment the target may send us.
    pub recv_data_segment_len_bytes_max: u32,
    /// TSIH assigned by the target.
    pub tsih: u16,
    /// TargetPortalGroupTag, when the target declared it.
    pub target_portal_group_tag: Option<u16>,
    /// TargetAlias, when the target declared it.
    pub target_alias: Option<String>,
}

/// Sequence-number state at the end of login, handed to the full-feature session.
#[derive(Debug, Clone, Copy)]
pub struct LoginSeq {
    /// The next CmdSN to use (the login CmdSN, since Login Requests are immediate).
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// ExpCmdSN from the last Login Response.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN from the last Login Response.
    pub max_cmd_sn: u32,
}

/// Accumulates the target's answers over the exchanges of the login.
#[derive(Default)]
struct Answers {
    pairs: Vec<(String, String)>,
}

impl Answers {
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn pair(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn digest_offer(on: bool) -> &'static str {
    if on {
        "CRC32C,None"
    } else {
        "None"
    }
}

/// Keys a target declares or answers that need no reply from us.
const DECLARATIVE: &[&str] = &[
    "MaxRecvDataSegmentLength",
    "TargetAlias",
    "TargetPortalGroupTag",
    "TargetAddress",
];

/// The keys we offer in LoginOperationalNegotiation.
fn operational_offer(o: &SessionOptions) -> Vec<(String, String)> {
    let mut keys = vec![
        pair("HeaderDigest", digest_offer(o.header_digest)),
        pair("DataDigest", digest_offer(o.data_digest)),
        pair(
            "MaxRecvDataSegmentLength",
            o.recv_data_segment_len_bytes_max,
        ),
    ];
    if o.target_name.is_some() {
        keys.extend([
            pair("InitialR2T", yes_no(o.initial_r2t)),
            pair("ImmediateData", yes_no(o.immediate_data)),
            pair("FirstBurstLength", o.first_burst_len_bytes),
            pair("MaxBurstLength", o.burst_len_bytes_max),
            pair("MaxOutstandingR2T", o.outstanding_r2t_max),
            pair("MaxConnections", 1),
            pair("DataPDUInOrder", "Yes"),
            pair("DataSequenceInOrder", "Yes"),
            pair("ErrorRecoveryLevel", 0),
            pair("DefaultTime2Wait", 2),
            pair("DefaultTime2Retain", 0),
        ]);
    }
    keys
}

/// Our answer to a key the target proposed on its own (RFC 7143 §6.2): accept the values we
/// can live with, refuse the ones we cannot, and say NotUnderstood for the rest.
fn answer_target_proposal(key: &str, value: &str) -> (String, String) {
    let v = match key {
        "HeaderDigest" | "DataDigest" => {
            if value.split(',').any(|c| c == "None") {
                "None".to_string()
            } else {
                "Reject".to_string()
            }
        }
        "DataPDUInOrder"
        | "DataSequenceInOrder"
        | "IFMarker"
        | "OFMarker"
        | "InitialR2T"
        | "ImmediateData"
        | "ErrorRecoveryLevel"
        | "MaxConnections"
        | "DefaultTime2Wait"
        | "DefaultTime2Retain"
        | "MaxOutstandingR2T"
        | "FirstBurstLength"
        | "MaxBurstLength" => value.to_string(),
        _ => "NotUnderstood".to_string(),
    };
    (key.to_string(), v)
}

fn number(answers: &Answers, key: &str, offered: u32, default: u32) -> Result<u32, Error> {
    match answers.get(key) {
        None | Some("Irrelevant") | Some("NotUnderstood") => Ok(default.min(offered)),
        Some(v) => {
            let n = text::parse_number(key, v)?;
            let n = u32::try_from(n)
                .map_err(|_| Error::Protocol(format!("{key}={v} is out of range")))?;
            if n > offered || n == 0 {
                return Err(Error::Protocol(format!(
                    "target answered {key}={n}, but we offered {offered} (result must be the minimum)"
                )));
            }
            Ok(n)
        }
    }
}

fn boolean(answers: &Answers, key: &str, offered: bool, or: bool) -> Result<bool, Error> {
    match answers.get(key) {
        None | Some("Irrelevant") | Some("NotUnderstood") => Ok(offered),
        Some(v) => {
            let b = text::parse_bool(key, v)?;
            // OR keys: the result is Yes whenever we offered Yes; AND keys: No whenever we
            // offered No.
            if (or && offered && !b) || (!or && !offered && b) {
                return Err(Error::Protocol(format!(
                    "target answered {key}={v}, impossible for offer {}",
                    yes_no(offered)
                )));
            }
            Ok(b)
        }
    }
}

fn digest(answers: &Answers, key: &str, offered: bool) -> Result<bool, Error> {
    match answers.get(key) {
        None | Some("None") => Ok(false),
        Some("CRC32C") if offered => Ok(true),
        Some(v) => Err(Error::Protocol(format!(
            "target answered {key}={v}, not in our offer {}",
            digest_offer(offered)
        ))),
    }
}

fn negotiated(o: &SessionOptions, a: &Answers, tsih: u16) -> Result<Negotiated, Error> {
    let normal = o.target_name.is_some();
    let send_max = match a.get("MaxRecvDataSegmentLength") {
        None => 8192,
        Some(v) => {
            let n = text::parse_number("MaxRecvDataSegmentLength", v)?;
            u32::try_from(n)
                .ok()
                .filter(|n| (512..=0x00ff_ffff).contains(n))
                .ok_or_else(|| {
                    Error::Protocol(format!("target MaxRecvDataSegmentLength={v} out of range"))
                })?
        }
    };
    let (immediate_data, initial_r2t, first_burst, burst_max, r2t_max) = if normal {
        (
            boolean(a, "ImmediateData", o.immediate_data, false)?,
            boolean(a, "InitialR2T", o.initial_r2t, true)?,
            number(a, "FirstBurstLength", o.first_burst_len_bytes, 65_536)?,
            number(a, "MaxBurstLength", o.burst_len_bytes_max, 262_144)?,
            number(a, "MaxOutstandingR2T", o.outstanding_r2t_max, 1)?,
        )
    } else {
        (false, true, 0, 0, 1)
    };
    if normal && first_burst > burst_max {
        return Err(Error::Protocol(format!(
            "FirstBurstLength {first_burst} exceeds MaxBurstLength {burst_max}"
        )));
    }
    let tpgt = match a.get("TargetPortalGroupTag") {
        None => None,
        Some(v) => Some(
            u16::try_from(text::parse_number("TargetPortalGroupTag", v)?)
                .map_err(|_| Error::Protocol(format!("TargetPortalGroupTag={v} out of range")))?,
        ),
    };
    Ok(Negotiated {
        header_digest: digest(a, "HeaderDigest", o.header_digest)?,
        data_digest: digest(a, "DataDigest", o.data_digest)?,
        immediate_data,
        initial_r2t,
        first_burst_len_bytes: first_burst,
        burst_len_bytes_max: burst_max,
        outstanding_r2t_max: r2t_max,
        send_data_segment_len_bytes_max: send_max,
        recv_data_segment_len_bytes_max: o.recv_data_segment_len_bytes_max,
        tsih,
        target_portal_group_tag: tpgt,
        target_alias: a.get("TargetAlias").map(str::to_string),
    })
}

/// Runs the login phase on a fresh connection. `isid` identifies the session; `cmd_sn` is the
/// initial CmdSN.
pub fn login<S: Read + Write>(
    stream: &mut S,
    o: &SessionOptions,
    isid: [u8; 6],
    cmd_sn: u32,
) -> Result<(Negotiated, LoginSeq), Error> {
    let itt = 0;
    let mut exp_stat_sn = 0u32;
    let mut first = true;
    let mut answers = Answers::default();
    let mut stage = Stage::Security;
    let mut pending: Vec<(String, String)> = {
        let mut v = vec![pair("InitiatorName", &o.initiator_name)];
        match &o.target_name {
            Some(t) => {
                v.push(pair("SessionType", "Normal"));
                v.push(pair("TargetName", t));
            }
            None => v.push(pair("SessionType", "Discovery")),
        }
        // With CHAP we offer only CHAP, so a target cannot talk us down to no authentication.
        v.push(pair(
            "AuthMethod",
            if o.chap.is_some() { "CHAP" } else { "None" },
        ));
        v
    };
    let mut chap_step = o.chap.as_ref().map(|_| chap::Step::Offered);
    let mut offered: Vec<String> = pending.iter().map(|(k, _)| k.clone()).collect();
    for _ in 0..LOGIN_ROUNDS_MAX {
        let nsg = match stage {
            Stage::Security => Stage::Operational,
            _ => Stage::FullFeature,
        };
        // During CHAP we ask to move on only with our response (RFC 7143 §12.1.3).
        let transit = match &chap_step {
            Some(chap::Step::Offered | chap::Step::SentAlgorithms) => stage != Stage::Security,
            _ => true,
        };
        let req = LoginRequest {
            transit,
            cont: false,
            csg: stage,
            nsg: if transit { nsg } else { stage },
            version_max: 0,
            version_min: 0,
            isid,
            tsih: 0,
            itt,
            cid: 0,
            cmd_sn,
            exp_stat_sn,
        };
        let data = text::encode(&pending);
        pending.clear();
        write_pdu(
            stream,
            &Bhs::new(Body::LoginRequest(req), 0),
            &data,
            Digests::default(),
        )?;

        // Read the response, following C-bit continuations (RFC 7143 §6.3).
        let mut payload = Vec::new();
        let resp = loop {
            let pdu = read_pdu(stream, Digests::default(), LOGIN_DATA_LEN_MAX)?;
            let Body::LoginResponse(r) = pdu.bhs.body else {
                return Err(Error::Protocol(format!(
                    "expected a Login Response, got {:?}",
                    pdu.bhs.body
                )));
            };
            if r.status_class != 0 {
                return Err(Error::Login {
                    class: r.status_class,
                    detail: r.status_detail,
                });
            }
            if r.itt != itt || r.isid != isid {
                return Err(Error::Protocol(
                    "Login Response ITT or ISID does not echo the request".into(),
                ));
            }
            if r.version_active != 0 {
                return Err(Error::Protocol(format!(
                    "Login Response Version-active {} is not 0",
                    r.version_active
                )));
            }
            if !first && r.stat_sn != exp_stat_sn {
                return Err(Error::Protocol(format!(
                    "login StatSN {} but expected {exp_stat_sn}",
                    r.stat_sn
                )));
            }
            first = false;
            exp_stat_sn = r.stat_sn.wrapping_add(1);
            payload.extend_from_slice(&pdu.data);
            if !r.cont {
                break r;
            }
            // Ask for the rest of the text with an empty request of the same stage.
            let more = LoginRequest {
                transit: false,
                cont: false,
                csg: stage,
                nsg: stage,
                version_max: 0,
                version_min: 0,
                isid,
                tsih: 0,
                itt,
                cid: 0,
                cmd_sn,
                exp_stat_sn,
            };
            write_pdu(
                stream,
                &Bhs::new(Body::LoginRequest(more), 0),
                &[],
                Digests::default(),
            )?;
        };
        if resp.csg != stage {
            return Err(Error::Protocol(format!(
                "Login Response CSG {:?} but we are in {stage:?}",
                resp.csg
            )));
        }
        let keys = text::decode(&payload)?;
        if let (Some(step), Some(c), Stage::Security) = (&mut chap_step, &o.chap, stage) {
            pending.extend(chap::advance(c, step, &keys)?);
        }
        for (k, v) in keys {
            if (k == "AuthMethod" || k.starts_with("CHAP_")) && o.chap.is_some() {
                answers.pairs.push((k, v));
                continue;
            }
            if k == "AuthMethod" && v != "None" {
                return Err(Error::Protocol(format!(
                    "target chose AuthMethod={v}, but we offered only None"
                )));
            }
            if v == "Reject" && offered.contains(&k) && k != "MaxConnections" {
                return Err(Error::Protocol(format!("target rejected our {k}")));
            }
            if !offered.contains(&k) && !DECLARATIVE.contains(&k.as_str()) {
                pending.push(answer_target_proposal(&k, &v));
            }
            answers.pairs.push((k, v));
        }
        if resp.transit {
            if stage == Stage::Security
                && chap_step.as_ref().is_some_and(|s| *s != chap::Step::Done)
            {
                return Err(Error::Protocol(
                    "target left the security stage before CHAP completed".into(),
                ));
            }
            match (stage, resp.nsg) {
                (Stage::Security, Stage::Operational) => {
                    stage = Stage::Operational;
                    pending.extend(operational_offer(o));
                    offered = pending.iter().map(|(k, _)| k.clone()).collect();
                }
                (_, Stage::FullFeature) => {
                    if !pending.is_empty() {
                        return Err(Error::Protocol(
                            "target moved to full feature phase while proposing keys".into(),
                        ));
                    }
                    // A target may skip LoginOperationalNegotiation; then only defaults apply.
                    let neg = negotiated(o, &answers, resp.tsih)?;
                    if o.target_name.is_some() && resp.tsih == 0 {
                        return Err(Error::Protocol("final Login Response has TSIH 0".into()));
                    }
                    return Ok((
                        neg,
                        LoginSeq {
                            cmd_sn,
                            exp_stat_sn,
                            exp_cmd_sn: resp.exp_cmd_sn,
                            max_cmd_sn: resp.max_cmd_sn,
                        },
                    ));
                }
                (s, n) => {
                    return Err(Error::Protocol(format!(
                        "target transit from {s:?} to {n:?} is not allowed"
                    )))
                }
            }
        }
    }
    Err(Error::Protocol(format!(
        "login did not complete within {LOGIN_ROUNDS_MAX} exchanges"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(pairs: &[(&str, &str)]) -> Answers {
        Answers {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn normal() -> SessionOptions {
        SessionOptions {
            target_name: Some("iqn.t:x".into()),
            header_digest: true,
            ..SessionOptions::default()
        }
    }

    #[test]
    fn applies_target_answers() {
        let a = answers(&[
            ("HeaderDigest", "CRC32C"),
            ("DataDigest", "None"),
            ("ImmediateData", "No"),
            ("InitialR2T", "Yes"),
            ("FirstBurstLength", "8192"),
            ("MaxBurstLength", "0x8000"),
            ("MaxOutstandingR2T", "1"),
            ("MaxRecvDataSegmentLength", "16384"),
            ("TargetPortalGroupTag", "1"),
        ]);
        let n = negotiated(&normal(), &a, 5).unwrap();
        assert!(n.header_digest && !n.data_digest);
        assert!(!n.immediate_data && n.initial_r2t);
        assert_eq!(n.first_burst_len_bytes, 8192);
        assert_eq!(n.burst_len_bytes_max, 32_768);
        assert_eq!(n.send_data_segment_len_bytes_max, 16_384);
        assert_eq!(n.target_portal_group_tag, Some(1));
    }

    #[test]
    fn impossible_answers_are_violations() {
        let cases: &[(&str, &str)] = &[
            ("FirstBurstLength", "1048576"),
            ("InitialR2T", "Maybe"),
            ("DataDigest", "CRC32C"),
            ("MaxRecvDataSegmentLength", "16"),
        ];
        for (k, v) in cases {
            let a = answers(&[(k, v)]);
            assert!(negotiated(&normal(), &a, 1).is_err(), "{k}={v} accepted");
        }
        // ImmediateData=Yes after we offered No.
        let o = SessionOptions {
            immediate_data: false,
            ..normal()
        };
        assert!(negotiated(&o, &answers(&[("ImmediateData", "Yes")]), 1).is_err());
        // InitialR2T=No after we offered Yes.
        let o = SessionOptions {
            initial_r2t: true,
            ..normal()
        };
        assert!(negotiated(&o, &answers(&[("InitialR2T", "No")]), 1).is_err());
    }

    #[test]
    fn unanswered_keys_fall_back_to_defaults() {
        let n = negotiated(&normal(), &answers(&[]), 1).unwrap();
        assert_eq!(n.send_data_segment_len_bytes_max, 8192);
        assert_eq!(n.first_burst_len_bytes, 65_536);
        assert!(!n.header_digest);
    }

    #[test]
    fn target_proposals_get_answers() {
        assert_eq!(
            answer_target_proposal("HeaderDigest", "CRC32C,None").1,
            "None"
        );
        assert_eq!(answer_target_proposal("X-Vendor", "1").1, "NotUnderstood");
    }
}
