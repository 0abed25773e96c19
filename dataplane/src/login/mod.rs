//! Login phase as a pure state machine (RFC 7143 §6 and §13): stages, text negotiation of
//! every operational key, and the checks on the leading Login Request.
//!
//! The connection layer feeds each Login Request in and sends back what comes out; it also
//! owns the session table, so entering full feature phase is an outcome it completes
//! (assigning the TSIH) rather than something decided here. Authentication (CHAP, RFC 7143
//! §12.1.3) runs in the security stage, in [`chap`]; the connection layer supplies its
//! randomness, and the configuration (credentials, initiator ACLs) comes through
//! [`LoginContext`].

pub mod chap;
pub mod negotiate;
pub mod throttle;

use std::sync::Arc;

pub use chap::{ChapAlgorithm, ChapPolicy, ChapRandom};
pub use negotiate::{Negotiated, SessionKind};

use crate::limits;
use crate::pdu::text;

/// Login status classes and details (RFC 7143 §11.13.5).
pub mod status {
    /// Initiator error (class 2) details.
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0x00);
    /// Authentication failure.
    pub const AUTH_FAILURE: (u8, u8) = (2, 0x01);
    /// Authorization failure: the initiator may not log in to this target.
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (2, 0x02);
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
    /// Service unavailable: here, a source locked out after too many failed logins
    /// ([`super::throttle`]).
    pub const SERVICE_UNAVAILABLE: (u8, u8) = (3, 0x01);
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

/// What the target-side knows that login needs: the targets reachable on this portal, who
/// may log in to them, and with which credentials.
pub trait LoginContext {
    /// The portal group tag through which `target` is reachable on this connection's portal,
    /// or `None` when no such target is served here.
    fn target_tpgt(&self, target: &str) -> Option<u16>;
    /// The portal group tag of this connection's portal for discovery sessions.
    fn portal_tpgt(&self) -> u16;
    /// Whether `initiator` (from this connection's source address) may log in to `target`.
    fn initiator_allowed(&self, target: &str, initiator: &str) -> bool;
    /// The CHAP credentials a session of `kind` to `target` (empty for discovery) must
    /// present, or `None` when it needs no authentication.
    fn chap_policy(&self, kind: SessionKind, target: &str) -> Option<Arc<ChapPolicy>>;
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
    chap: chap::Chap,
    policy: Option<Arc<ChapPolicy>>,
}

fn fail(req: &LoginRequest<'_>, status: (u8, u8)) -> LoginStep {
    LoginStep::Fail(LoginReply {
        csg: req.header.csg,
        status,
        ..LoginReply::default()
    })
}

impl Login {
    /// A connection that has not sent its first Login Request; `random` is the fresh CHAP
    /// challenge this login will use if the target requires authentication (`None` when
    /// the OS had no randomness to give: then a login that needs CHAP fails).
    pub fn new(random: Option<ChapRandom>) -> Self {
        Self {
            stage: stage::SECURITY,
            started: false,
            pending: Vec::new(),
            pdus: 0,
            neg: Negotiated::default(),
            sent_tpgt: false,
            sent_mrdsl: false,
            chap: chap::Chap::new(random),
            policy: None,
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
        let (auth, ops): (Vec<_>, Vec<_>) =
            pairs.into_iter().partition(|(k, _)| chap::is_auth_key(k));
        let mut out = Vec::new();
        if let Err(st) = self.neg.apply(&ops, !self.started, &mut out) {
            return fail(req, st);
        }
        if !self.started {
            self.started = true;
            if let Some(st) = self.check_leading(ctx) {
                return fail(req, st);
            }
        }
        // Authentication keys belong to the security stage (RFC 7143 §6.3); a target that
        // requires CHAP refuses to leave that stage, or skip it, before CHAP has succeeded.
        let mut transit = req.header.transit;
        if req.header.csg == stage::SECURITY || self.policy.is_none() {
            match self.chap.step(&auth, self.policy.as_deref(), &mut out) {
                Err(st) => return fail(req, st),
                // The initiator asked to move on, but the exchange needs another round trip:
                // answer with T=0 (RFC 7143 §11.13.2) and stay in the security stage.
                Ok(chap::Progress::Pending) => transit = false,
                Ok(chap::Progress::Complete) => {}
            }
        } else if !auth.is_empty() || !self.chap.is_done() {
            return fail(req, status::AUTH_FAILURE);
        }
        if self.neg.kind == SessionKind::Normal && !self.sent_tpgt {
            self.sent_tpgt = true;
            text::push(&mut out, "TargetPortalGroupTag", &self.neg.tpgt.to_string());
        }
        let entering = transit && req.header.nsg == stage::FULL_FEATURE;
        if !self.sent_mrdsl && (req.header.csg == stage::OPERATIONAL || entering) {
            self.sent_mrdsl = true;
            text::push(
                &mut out,
                "MaxRecvDataSegmentLength",
                &limits::RECV_DATA_SEGMENT_BYTES.to_string(),
            );
        }
        let reply = LoginReply {
            transit,
            cont: false,
            csg: req.header.csg,
            nsg: if transit { req.header.nsg } else { 0 },
            status: (0, 0),
            text: out,
        };
        if transit {
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
            }
            SessionKind::Normal => {
                if self.neg.target_name.is_empty() {
                    return Some(status::MISSING_PARAMETER);
                }
                match ctx.target_tpgt(&self.neg.target_name) {
                    Some(tpgt) => self.neg.tpgt = tpgt,
                    None => return Some(status::NOT_FOUND),
                }
                if !ctx.initiator_allowed(&self.neg.target_name, &self.neg.initiator_name) {
                    return Some(status::AUTHORIZATION_FAILURE);
                }
            }
        }
        self.policy = ctx.chap_policy(self.neg.kind, &self.neg.target_name);
        self.neg.auth_none = self.policy.is_none();
        None
    }
}

#[cfg(test)]
mod tests;
