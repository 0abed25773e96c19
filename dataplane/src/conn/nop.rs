//! NOP-Out and NOP-In (RFC 7143 §11.18, §11.19): answering the initiator's pings, and
//! pinging a silent initiator ourselves so a dead peer does not hold its session forever.

use tokio::time::Instant;

use super::{Conn, End, Outcome};
use crate::live::Tuning;
use crate::login::SessionKind;
use crate::pdu::request::NopOut;
use crate::pdu::{reject, RawPdu, RESERVED_TAG};

/// When the peer was last heard from, and the ping we wait an answer for.
pub(super) struct Keepalive {
    last_rx: Instant,
    /// The TTT of our unanswered NOP-In and when it was sent.
    ping: Option<(u32, Instant)>,
}

impl Keepalive {
    pub(super) fn new() -> Self {
        Self {
            last_rx: Instant::now(),
            ping: None,
        }
    }

    /// Any bytes from the peer show it is alive, and count as the answer to a ping.
    pub(super) fn heard_from_peer(&mut self) {
        self.last_rx = Instant::now();
        self.ping = None;
    }

    /// When the keepalive timer fires next in full feature phase.
    pub(super) fn deadline(&self, tuning: &Tuning) -> Instant {
        match self.ping {
            Some((_, sent)) => sent + tuning.nop_in_timeout,
            None => self.last_rx + tuning.nop_in_interval,
        }
    }
}

impl Conn {
    /// Restarts the silence count (on entering full feature phase).
    pub(super) fn reset_keepalive(&mut self) {
        self.keepalive.last_rx = Instant::now();
    }

    /// The keepalive timer fired: ping a silent Normal session, or end the connection when
    /// our ping went unanswered.
    pub(super) fn on_keepalive_timer(&mut self, now: Instant) -> Option<End> {
        if let Some((_, sent)) = self.keepalive.ping {
            if now >= sent + self.shared.tuning().nop_in_timeout {
                return Some(End::Timeout);
            }
            return None;
        }
        if now >= self.keepalive.last_rx + self.shared.tuning().nop_in_interval
            && self.neg.kind == SessionKind::Normal
        {
            let ttt = self.alloc_ttt();
            self.keepalive.ping = Some((ttt, now));
            self.send_nop_in(RESERVED_TAG, ttt, 0, &[], false);
        }
        if self.neg.kind == SessionKind::Discovery {
            // Discovery sessions are never pinged; their silence count starts over.
            self.keepalive.last_rx = now;
        }
        None
    }

    /// A NOP-Out with a reserved ITT answers our ping; it is not a command and has no CmdSN
    /// to order by (RFC 7143 §11.18.1).
    pub(super) fn on_ping_answer(&mut self, n: &NopOut) -> Outcome {
        if let Some((ttt, _)) = self.keepalive.ping {
            if n.ttt == ttt {
                self.keepalive.ping = None;
            }
        }
        Outcome::Reply
    }

    /// A NOP-Out with a valid ITT: answered with a NOP-In echoing its data.
    pub(super) fn on_nop_out(&mut self, p: &RawPdu<'_>, n: &NopOut) -> Outcome {
        if p.data_digest_bad {
            self.digest_error();
            return Outcome::Reject(reject::DATA_DIGEST);
        }
        if n.ttt != RESERVED_TAG {
            // A NOP-Out with a TTT answers a ping; with a valid ITT it is a protocol error.
            return Outcome::Reject(reject::PROTOCOL_ERROR);
        }
        let max = usize::try_from(self.neg.send_data_segment_bytes).unwrap_or(usize::MAX);
        let data = &p.data[..p.data.len().min(max)];
        self.send_nop_in(n.itt, RESERVED_TAG, n.lun_raw, data, true);
        Outcome::Reply
    }
}
