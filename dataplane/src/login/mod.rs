//! Login phase as a pure state machine (RFC 7143 §6 and §13): stages, text negotiation of
//! every operational key, and the checks on the leading Login Request.
//!
//! The connection layer feeds each Login Request in and sends back what comes out; it also
//! owns the session table, so entering full feature phase is an outcome it completes
//! (assigning the TSIH) rather than something decided here.

pub mod negotiate;

pub use negotiate::{Negotiated, SessionKind};

use crate::limits;
use crate::pdu::text;

/// Login status classes and details (RFC 7143 §11.13.5).
pub mod status {
    /// Initiator error (class 2) details.
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0x00);
    /// Authentication failure.
    pub const AUTH_FAILURE: (u8, u8) = (2, 0x01);
    /// Target not found.
    pub const NOT_FOUND: (u8, u8) = (2, 0x03);
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 0x05);
    /// Too many connections on this session.
    pub const TOO_MANY_CONNECTIONS: (u8, u8) = (2, 0x06);
    /// Missing parameter.
    pub const MISSING_PARAMETER: (u8, u8) = (2, 0x07);
    /// Session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: (u8, u8) = (2, 0x09);
    /// Session does not exist.
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (2, 0x0a);
    /// Invalid request during login.
    pub const INVALID_DURING_LOGIN: (u8, u8) = (2, 0x0b);
    /// Target error (class 3).
    pub const TARGET_ERROR: (u8, u8) = (3, 0x00);
    /// Out of resources.
    pub const OUT_OF_RESOURCES: (u8, u8) = (3, 0x02);
}

/// Login stages (RFC 7143 §11.12.3, CSG/NSG encoding).
pub mod stage {
    /// SecurityNegotiation.
    pub const SECURITY: u8 = 0;
    /// LoginOperationalNegotiation.
    pub const OPERATIONAL: u8 = 1;
    /// FullFeaturePhase.
    pub const FULL_FEATURE: u8 = 3;
}

/// What the target-side knows that login needs: the targets reachable on this portal.
pub trait LoginContext {
    /// The portal group tag through which `target` is reachable on this connection's portal,
    /// or `None` when no such target is served here.
    fn target_tpgt(&self, target: &str) -> Option<u16>;
    /// The portal group tag of this connection's portal for discovery sessions.
    fn portal_tpgt(&self) -> u16;
}

/// One Login Request as the state machine reads it: the typed header view and the
/// data segment (its text keys).
#[derive(Clone, Debug)]
pub struct LoginRequest<'a> {
    /// The header fields (T, C, CSG, NSG, versions, ISID, TSIH, CID, ...).
    pub header: crate::pdu::request::LoginRequest,
    /// The data segment.
    pub data: &'a [u8],
}

/// Fields of the Login Response to send (the connection layer adds the sequence numbers).
#[derive(Clone, Debug, Default)]
pub struct LoginReply {
    /// T bit.
    pub transit: bool,
    /// C bit (more response text follows).
    pub cont: bool,
    /// CSG.
    pub csg: u8,
    /// NSG.
    pub nsg: u8,
    /// Status class and detail.
    pub status: (u8, u8),
    /// key=value text.
    pub text: Vec<u8>,
}

/// The outcome of one Login Request.
#[derive(Debug)]
pub enum LoginStep {
    /// Send the reply and stay in the login phase.
    Reply(LoginReply),
    /// Send the reply (a failure status) and close the connection.
    Fail(LoginReply),
    /// Send the reply (after the caller sets the TSIH) and enter full feature phase.
    Enter(LoginReply, Box<Negotiated>),
}

/// Login state of one connection.
#[derive(Debug)]
pub struct Login {
    stage: u8,
    started: bool,
    pending: Vec<u8>,
    pdus: u32,
    neg: Negotiated,
    sent_tpgt: bool,
    sent_mrdsl: bool,
}

impl Default for Login {
    fn default() -> Self {
        Self::new()
    }
}

fn fail(req: &LoginRequest<'_>, status: (u8, u8)) -> LoginStep {
    LoginStep::Fail(LoginReply {
        csg: req.header.csg,
        status,
        ..LoginReply::default()
    })
}

impl Login {
    /// A connection that has not sent its first Login Request.
    pub fn new() -> Self {
        Self {
            stage: stage::SECURITY,
            started: false,
            pending: Vec::new(),
            pdus: 0,
            neg: Negotiated::default(),
            sent_tpgt: false,
            sent_mrdsl: false,
        }
    }

    /// What has been negotiated so far (used for framing while still in login).
    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    /// Handles one Login Request.
    pub fn step(&mut self, req: &LoginRequest<'_>, ctx: &dyn LoginContext) -> LoginStep {
        self.pdus += 1;
        if self.pdus > limits::TEXT_PDUS_MAX {
            return fail(req, status::INITIATOR_ERROR);
        }
        if req.header.version_min > 0 {
            return fail(req, status::UNSUPPORTED_VERSION);
        }
        if !self.started {
            self.neg.isid = req.header.isid;
            self.neg.tsih = req.header.tsih;
            self.neg.cid = req.header.cid;
        } else if req.header.isid != self.neg.isid
            || req.header.tsih != self.neg.tsih
            || req.header.cid != self.neg.cid
        {
            return fail(req, status::INITIATOR_ERROR);
        }
        // Stage rules (RFC 7143 §6.3): stages only move forward; NSG 2 does not exist.
        if req.header.csg == 2
            || req.header.csg == stage::FULL_FEATURE
            || req.header.csg < self.stage
        {
            return fail(req, status::INITIATOR_ERROR);
        }
        if req.header.transit && (req.header.nsg <= req.header.csg || req.header.nsg == 2) {
            return fail(req, status::INITIATOR_ERROR);
        }
        if self.pending.len() + req.data.len() > limits::TEXT_BYTES_MAX {
            return fail(req, status::INITIATOR_ERROR);
        }
        self.pending.extend_from_slice(req.data);
        if req.header.cont {
            // More text follows: acknowledge with an empty response (RFC 7143 §11.12.2).
            if req.header.transit {
                return fail(req, status::INITIATOR_ERROR);
            }
            return LoginStep::Reply(LoginReply {
                csg: req.header.csg,
                ..LoginReply::default()
            });
        }
        let pairs = match text::parse(&std::mem::take(&mut self.pending)) {
            Ok(p) => p,
            Err(_) => return fail(req, status::INITIATOR_ERROR),
        };
        self.stage = req.header.csg;
        let mut out = Vec::new();
        if let Err(st) = self.neg.apply(&pairs, !self.started, &mut out) {
            return fail(req, st);
        }
        if !self.started {
            self.started = true;
            if let Some(st) = self.check_leading(ctx) {
                return fail(req, st);
            }
        }
        if self.neg.kind == SessionKind::Normal && !self.sent_tpgt {
            self.sent_tpgt = true;
            text::push(&mut out, "TargetPortalGroupTag", &self.neg.tpgt.to_string());
        }
        let entering = req.header.transit && req.header.nsg == stage::FULL_FEATURE;
        if !self.sent_mrdsl && (req.header.csg == stage::OPERATIONAL || entering) {
            self.sent_mrdsl = true;
            text::push(
                &mut out,
                "MaxRecvDataSegmentLength",
                &limits::RECV_DATA_SEGMENT_BYTES.to_string(),
            );
        }
        let reply = LoginReply {
            transit: req.header.transit,
            cont: false,
            csg: req.header.csg,
            nsg: if req.header.transit {
                req.header.nsg
            } else {
                0
            },
            status: (0, 0),
            text: out,
        };
        if req.header.transit {
            self.stage = req.header.nsg;
        }
        if entering {
            self.neg.finish();
            LoginStep::Enter(reply, Box::new(self.neg.clone()))
        } else {
            LoginStep::Reply(reply)
        }
    }

    fn check_leading(&mut self, ctx: &dyn LoginContext) -> Option<(u8, u8)> {
        if self.neg.initiator_name.is_empty() {
            return Some(status::MISSING_PARAMETER);
        }
        // iSCSI names compare case-insensitively after stringprep (RFC 7143 §4.2.7.2), and
        // initiators in the wild use '_' in host-derived names; be lenient on both here and
        // strict on the rest of the syntax.
        let normalized = self
            .neg
            .initiator_name
            .to_ascii_lowercase()
            .replace('_', "-");
        if !tgt_proto::is_valid_iscsi_name(&normalized) {
            return Some(status::INITIATOR_ERROR);
        }
        match self.neg.kind {
            SessionKind::Discovery => {
                self.neg.tpgt = ctx.portal_tpgt();
                None
            }
            SessionKind::Normal => {
                if self.neg.target_name.is_empty() {
                    return Some(status::MISSING_PARAMETER);
                }
                match ctx.target_tpgt(&self.neg.target_name) {
                    Some(tpgt) => {
                        self.neg.tpgt = tpgt;
                        None
                    }
                    None => Some(status::NOT_FOUND),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
