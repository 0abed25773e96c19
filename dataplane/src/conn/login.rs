//! The login phase of a connection (RFC 7143 §6, §11.12, §11.13): feeding Login Requests to
//! the [`crate::login`] state machine, sending its replies, and entering full feature phase
//! (registering the session, switching framing to what was negotiated).
//!
//! Key negotiation and the checks on the leading Login Request are the state machine's;
//! this file owns what needs the connection: the session table (TSIH, reinstatement),
//! the target the session binds to, and the framing switch after the final response.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{info, warn};

use super::{Conn, End, Outcome, Phase};
use crate::limits;
use crate::live::Snapshot;
use crate::login::throttle::Verdict;
use crate::login::{
    self, ChapPolicy, ChapRandom, LoginContext, LoginRequest, LoginStep, Negotiated, SessionKind,
};
use crate::lu::Nexus;
use crate::pdu::{request, Framing, RawPdu, Request, SerialNumber};
use crate::session::window::CmdWindow;
use crate::task::WriteLimits;

/// What the login state machine may ask about the configuration: the targets of this
/// connection's portal and who may log in to them from this connection's source address.
struct Ctx<'a> {
    snap: &'a Snapshot,
    portal_id: u16,
    source: IpAddr,
}

impl LoginContext for Ctx<'_> {
    fn target_tpgt(&self, target: &str) -> Option<u16> {
        let t = self.snap.targets.get(target)?;
        t.tpgs
            .iter()
            .find(|(_, portals)| portals.contains(&self.portal_id))
            .map(|(tag, _)| *tag)
    }
    fn portal_tpgt(&self) -> u16 {
        1
    }
    fn initiator_allowed(&self, target: &str, initiator: &str) -> bool {
        self.snap
            .access
            .get(target)
            .is_none_or(|a| a.allows(initiator, self.source))
    }
    fn chap_policy(&self, kind: SessionKind, target: &str) -> Option<Arc<ChapPolicy>> {
        match kind {
            SessionKind::Discovery => self.snap.discovery_chap.clone(),
            SessionKind::Normal => self.snap.access.get(target)?.chap.clone(),
        }
    }
}

/// Draws a fresh CHAP identifier and challenge from the OS CSPRNG (getrandom(2)), one per
/// login, as RFC 7143 §12.1.3 requires. `None` if the kernel refuses: the login then cannot
/// use CHAP, which fails closed.
pub(super) fn chap_random() -> Option<ChapRandom> {
    let mut buf = [0u8; limits::CHAP_CHALLENGE_BYTES + 1];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a live, writable buffer of `rest.len()` bytes for the whole call;
        // getrandom writes at most that many bytes into it.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => filled += n,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => {
                warn!(error = %std::io::Error::last_os_error(), "getrandom failed; CHAP unavailable");
                return None;
            }
        }
    }
    let (identifier, challenge) = buf.split_first()?;
    Some(ChapRandom {
        identifier: *identifier,
        challenge: challenge.try_into().ok()?,
    })
}

/// What login agreed, as the status views report it.
fn session_details(neg: &Negotiated) -> crate::session::SessionDetails {
    crate::session::SessionDetails {
        cid: neg.cid,
        header_digest: neg.header_digest,
        data_digest: neg.data_digest,
        send_data_segment_bytes: neg.send_data_segment_bytes,
        recv_data_segment_bytes: limits::RECV_DATA_SEGMENT_BYTES,
        params: tgt_proto::socket::SessionParams {
            session_type: match neg.kind {
                SessionKind::Discovery => "Discovery",
                SessionKind::Normal => "Normal",
            }
            .to_string(),
            max_burst_length: neg.burst_bytes_max,
            first_burst_length: neg.first_burst_bytes,
            initial_r2t: neg.initial_r2t,
            immediate_data: neg.immediate_data,
            max_outstanding_r2t: neg.outstanding_r2t_max,
            default_time2_wait: neg.time2wait_secs,
            default_time2_retain: neg.time2retain_secs,
            max_connections: 1,
            error_recovery_level: 0,
            auth_method: if neg.auth_none { "None" } else { "CHAP" }.to_string(),
        },
    }
}

impl Conn {
    /// Handles one PDU of the login phase.
    pub(super) fn on_login(&mut self, p: &RawPdu<'_>) -> Outcome {
        let Request::Login(l) = Request::parse(&p.bhs) else {
            // Anything but a Login Request before full feature phase ends the connection
            // (RFC 7143 §6.3, "protocol error").
            return Outcome::Drop(End::Protocol("non-login PDU during login"));
        };
        let req = LoginRequest {
            header: l,
            data: p.data,
        };
        let snap = self.shared.current();
        let Phase::Login(login) = &mut self.phase else {
            return Outcome::Reply;
        };
        let first = login.negotiated().initiator_name.is_empty();
        if first {
            self.sn.window = CmdWindow::new(l.cmd_sn);
            self.sn.stat_sn = SerialNumber(l.exp_stat_sn);
            let source = self.sock.peer.ip();
            let now = self.shared.monotonic();
            let verdict = self.shared.login_throttle().check(source, now);
            if let Verdict::Refuse(left) = verdict {
                let counters = self.shared.counters();
                crate::metrics::inc(&counters.login_throttled_total);
                info!(peer = %self.sock.peer, lockout_left_secs = left.as_secs(), "login refused: source locked out after repeated failed logins");
                let r = login::LoginReply {
                    csg: l.csg,
                    status: login::status::SERVICE_UNAVAILABLE,
                    ..login::LoginReply::default()
                };
                self.send_login_reply(l.itt, &l.isid, l.tsih, &r);
                return Outcome::Drop(End::LoginFailed);
            }
        }
        let step = login.step(
            &req,
            &Ctx {
                snap: &snap,
                portal_id: self.portal_id,
                source: self.sock.peer.ip(),
            },
        );
        match step {
            LoginStep::Reply(r) => {
                self.send_login_reply(l.itt, &l.isid, l.tsih, &r);
                Outcome::Reply
            }
            LoginStep::Fail(r) => {
                info!(peer = %self.sock.peer, class = r.status.0, detail = r.status.1, "login refused");
                self.count_refusal(r.status);
                self.send_login_reply(l.itt, &l.isid, l.tsih, &r);
                Outcome::Drop(End::LoginFailed)
            }
            LoginStep::Enter(r, neg) => self.enter_full_feature(&l, r, *neg, &snap),
        }
    }

    /// Counts a refused login by its reason, and against its source's failure budget when
    /// it is one an attacker learns from (a wrong secret or a refused initiator name).
    fn count_refusal(&self, status: (u8, u8)) {
        let counters = self.shared.counters();
        let counter = match status {
            login::status::AUTH_FAILURE => &counters.login_authentication_failures_total,
            login::status::AUTHORIZATION_FAILURE => &counters.login_authorization_failures_total,
            _ => return,
        };
        crate::metrics::inc(counter);
        let locked = self
            .shared
            .login_throttle()
            .record_failure(self.sock.peer.ip(), self.shared.monotonic());
        if locked {
            crate::metrics::inc(&counters.login_lockouts_total);
            warn!(
                peer = %self.sock.peer,
                failures = limits::LOGIN_FAILURES_PER_SOURCE_MAX,
                window_secs = limits::LOGIN_FAILURE_WINDOW.as_secs(),
                lockout_secs = limits::LOGIN_LOCKOUT.as_secs(),
                "source locked out after repeated failed logins"
            );
        }
    }

    /// Completes the final Login Request: registers the session (assigning its TSIH),
    /// answers, and switches the connection to full feature phase.
    fn enter_full_feature(
        &mut self,
        l: &request::LoginRequest,
        mut r: login::LoginReply,
        neg: Negotiated,
        snap: &Snapshot,
    ) -> Outcome {
        let (itt, isid, tsih) = (l.itt, l.isid, l.tsih);
        if tsih != 0 {
            // Adding a connection to an existing session (MC/S) is not offered: MaxConnections=1.
            r.status = if self.shared.sessions().exists(tsih) {
                login::status::TOO_MANY_CONNECTIONS
            } else {
                login::status::SESSION_DOES_NOT_EXIST
            };
            r.transit = false;
            r.text.clear();
            self.send_login_reply(itt, &isid, tsih, &r);
            return Outcome::Drop(End::LoginFailed);
        }
        let registered = self.shared.sessions().register(
            &neg.initiator_name,
            isid,
            &neg.target_name,
            self.sock.local.to_string(),
            self.sock.peer.to_string(),
        );
        let (info, kill) = match registered {
            Ok(x) => x,
            Err(e) => {
                warn!(peer = %self.sock.peer, error = %e, "login refused");
                r.status = login::status::OUT_OF_RESOURCES;
                r.transit = false;
                r.text.clear();
                self.send_login_reply(itt, &isid, tsih, &r);
                return Outcome::Drop(End::LoginFailed);
            }
        };
        if neg.kind == SessionKind::Normal {
            self.bound.target = snap.targets.get(&neg.target_name).cloned();
            self.bound.target_gen = snap.generation;
        }
        let isid_hex: String = isid.iter().map(|b| format!("{b:02x}")).collect();
        self.bound.nexus = Some(Nexus {
            id: info.nexus_id,
            initiator_port: Arc::from(format!("{},i,0x{}", neg.initiator_name, isid_hex)),
        });
        self.bound.session = Some((info.tsih, info.nexus_id));
        self.bound.kill = Some(kill);
        self.send_login_reply(itt, &isid, info.tsih, &r);
        info!(
            peer = %self.sock.peer,
            initiator = %neg.initiator_name,
            target = %neg.target_name,
            tsih = info.tsih,
            kind = ?neg.kind,
            "login complete"
        );
        crate::metrics::inc(&self.shared.counters().logins_total);
        // Framing changes take effect after the final Login Response (RFC 7143 §13.1).
        self.sock.framing = Framing {
            header_digest: neg.header_digest,
            data_digest: neg.data_digest,
            max_recv_data: limits::RECV_DATA_SEGMENT_BYTES,
        };
        self.cmds.write_limits = WriteLimits {
            first_burst: neg.first_burst_bytes,
            max_burst: neg.burst_bytes_max,
            outstanding_r2t_max: neg.outstanding_r2t_max,
            initial_r2t: neg.initial_r2t,
        };
        self.shared
            .sessions()
            .set_details(info.tsih, info.nexus_id, session_details(&neg));
        self.neg = neg;
        self.phase = Phase::Full;
        self.reset_keepalive();
        Outcome::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::chap_random;

    #[test]
    fn every_login_gets_a_fresh_challenge() {
        let a = chap_random().expect("getrandom works on the test machine");
        let b = chap_random().expect("getrandom works on the test machine");
        // 256 random bits colliding is not a flake we need to allow for.
        assert_ne!(a.challenge, b.challenge);
        assert_ne!(a.challenge, [0; crate::limits::CHAP_CHALLENGE_BYTES]);
    }
}
