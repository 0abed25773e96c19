//! Operational key negotiation (RFC 7143 §13): each key's result function and range.
//!
//! Our preferences: ImmediateData=Yes, InitialR2T=No (fewer round trips for writes),
//! ErrorRecoveryLevel=0, one connection per session, digests as the initiator prefers.

use crate::limits;
use crate::pdu::{rfc_default, text};

/// The kind of session being logged in (RFC 7143 §13.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SessionKind {
    /// A normal session bound to one target.
    #[default]
    Normal,
    /// A discovery session (SendTargets only).
    Discovery,
}

/// Everything login establishes for a connection and its session.
#[derive(Clone, Debug)]
pub struct Negotiated {
    /// InitiatorName.
    pub initiator_name: String,
    /// InitiatorAlias, if sent.
    pub initiator_alias: String,
    /// TargetName (empty for discovery).
    pub target_name: String,
    /// Session type.
    pub kind: SessionKind,
    /// ISID from the leading login.
    pub isid: [u8; 6],
    /// TSIH from the leading login (0 for a new session).
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// The portal group tag the session runs through.
    pub tpgt: u16,
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the most we send in one PDU.
    pub send_data_segment_bytes: u32,
    /// MaxBurstLength.
    pub burst_bytes_max: u32,
    /// FirstBurstLength.
    pub first_burst_bytes: u32,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxOutstandingR2T.
    pub outstanding_r2t_max: u16,
    /// DefaultTime2Wait, seconds.
    pub time2wait_secs: u16,
    /// DefaultTime2Retain, seconds.
    pub time2retain_secs: u16,
    /// Whether the session logged in without authentication (AuthMethod=None); the login
    /// state machine sets it from the policy, since AuthMethod is negotiated in [`super::chap`].
    pub auth_none: bool,
}

impl Default for Negotiated {
    /// RFC 7143 §13 defaults.
    fn default() -> Self {
        Self {
            initiator_name: String::new(),
            initiator_alias: String::new(),
            target_name: String::new(),
            kind: SessionKind::Normal,
            isid: [0; 6],
            tsih: 0,
            cid: 0,
            tpgt: 1,
            header_digest: false,
            data_digest: false,
            send_data_segment_bytes: rfc_default::MAX_RECV_DATA_SEGMENT_LENGTH,
            burst_bytes_max: rfc_default::MAX_BURST_LENGTH,
            first_burst_bytes: rfc_default::FIRST_BURST_LENGTH,
            initial_r2t: true,
            immediate_data: true,
            outstanding_r2t_max: 1,
            time2wait_secs: 2,
            time2retain_secs: 20,
            auth_none: false,
        }
    }
}

fn parse_num(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if v.is_empty() || v.len() > 20 {
        None
    } else {
        v.parse().ok()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Keys that may only appear in the leading Login Request.
const LEADING_ONLY: &[&str] = &["InitiatorName", "TargetName", "SessionType"];

impl Negotiated {
    /// Applies the initiator's keys and appends our answers to `out`.
    ///
    /// Returns a login status when the keys make the login impossible.
    pub fn apply(
        &mut self,
        pairs: &[(String, String)],
        leading: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), (u8, u8)> {
        use super::status;
        for (k, v) in pairs {
            let k = k.as_str();
            if !leading && LEADING_ONLY.contains(&k) {
                return Err(status::INITIATOR_ERROR);
            }
            match k {
                "InitiatorName" => self.initiator_name = v.clone(),
                "InitiatorAlias" => self.initiator_alias = v.clone(),
                "TargetName" => self.target_name = v.clone(),
                "SessionType" => match v.as_str() {
                    "Normal" => self.kind = SessionKind::Normal,
                    "Discovery" => self.kind = SessionKind::Discovery,
                    _ => return Err(status::SESSION_TYPE_NOT_SUPPORTED),
                },
                "HeaderDigest" | "DataDigest" => {
                    let pick = v.split(',').find(|d| *d == "None" || *d == "CRC32C");
                    match pick {
                        Some(d) => {
                            let on = d == "CRC32C";
                            if k == "HeaderDigest" {
                                self.header_digest = on;
                            } else {
                                self.data_digest = on;
                            }
                            text::push(out, k, d);
                        }
                        None => text::push(out, k, "Reject"),
                    }
                }
                "MaxRecvDataSegmentLength" => match parse_num(v) {
                    Some(n) if (512..(1 << 24)).contains(&n) => {
                        let n = u32::try_from(n).unwrap_or(limits::SEND_DATA_SEGMENT_BYTES_MAX);
                        self.send_data_segment_bytes = n.min(limits::SEND_DATA_SEGMENT_BYTES_MAX);
                    }
                    _ => text::push(out, k, "Reject"),
                },
                "MaxBurstLength" | "FirstBurstLength" => match parse_num(v) {
                    Some(n) if (512..(1 << 24)).contains(&n) => {
                        let n = u32::try_from(n)
                            .unwrap_or(limits::BURST_LEN_BYTES_MAX)
                            .min(limits::BURST_LEN_BYTES_MAX);
                        if k == "MaxBurstLength" {
                            self.burst_bytes_max = n;
                        } else {
                            self.first_burst_bytes = n;
                        }
                        text::push(out, k, &n.to_string());
                    }
                    _ => text::push(out, k, "Reject"),
                },
                "InitialR2T" => match parse_bool(v) {
                    // Result function OR (§13.10): we would say No, so theirs wins.
                    Some(b) => {
                        self.initial_r2t = b;
                        text::push(out, k, yes_no(b));
                    }
                    None => text::push(out, k, "Reject"),
                },
                "ImmediateData" => match parse_bool(v) {
                    // Result function AND (§13.11): we say Yes.
                    Some(b) => {
                        self.immediate_data = b;
                        text::push(out, k, yes_no(b));
                    }
                    None => text::push(out, k, "Reject"),
                },
                "DataPDUInOrder" | "DataSequenceInOrder" => match parse_bool(v) {
                    // Result function OR: we say Yes, so the result is Yes.
                    Some(_) => text::push(out, k, "Yes"),
                    None => text::push(out, k, "Reject"),
                },
                "MaxOutstandingR2T" => match parse_num(v) {
                    Some(n) if (1..=65535).contains(&n) => {
                        let n = u16::try_from(n)
                            .unwrap_or(limits::OUTSTANDING_R2T_MAX)
                            .min(limits::OUTSTANDING_R2T_MAX);
                        self.outstanding_r2t_max = n;
                        text::push(out, k, &n.to_string());
                    }
                    _ => text::push(out, k, "Reject"),
                },
                "DefaultTime2Wait" | "DefaultTime2Retain" => match parse_num(v) {
                    Some(n) if n <= 3600 => {
                        let n = u16::try_from(n).unwrap_or(3600);
                        // Time2Wait: max(theirs, 2); Time2Retain: min(theirs, 20) (§13.15-16).
                        let r = if k == "DefaultTime2Wait" {
                            self.time2wait_secs = n.max(2);
                            self.time2wait_secs
                        } else {
                            self.time2retain_secs = n.min(20);
                            self.time2retain_secs
                        };
                        text::push(out, k, &r.to_string());
                    }
                    _ => text::push(out, k, "Reject"),
                },
                "ErrorRecoveryLevel" => match parse_num(v) {
                    Some(n) if n <= 2 => text::push(out, k, "0"),
                    _ => text::push(out, k, "Reject"),
                },
                "MaxConnections" => match parse_num(v) {
                    Some(n) if (1..=65535).contains(&n) => text::push(out, k, "1"),
                    _ => text::push(out, k, "Reject"),
                },
                "OFMarker" | "IFMarker" => match parse_bool(v) {
                    Some(_) => text::push(out, k, "No"),
                    None => text::push(out, k, "Reject"),
                },
                "OFMarkInt" | "IFMarkInt" => text::push(out, k, "Irrelevant"),
                "iSCSIProtocolLevel" => match parse_num(v) {
                    Some(n) if n <= 31 => text::push(out, k, if n >= 1 { "1" } else { "0" }),
                    _ => text::push(out, k, "Reject"),
                },
                "TaskReporting" => text::push(out, k, "RFC3720"),
                "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => {
                    // Target-declared keys an initiator must not send.
                    return Err(status::INITIATOR_ERROR);
                }
                _ => text::push(out, k, "NotUnderstood"),
            }
        }
        Ok(())
    }

    /// Settles cross-key rules once login ends (RFC 7143 §13.14: FirstBurstLength ≤ MaxBurstLength).
    pub fn finish(&mut self) {
        if self.first_burst_bytes > self.burst_bytes_max {
            self.first_burst_bytes = self.burst_bytes_max;
        }
    }
}
