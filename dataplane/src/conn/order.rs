//! Full feature phase dispatch in CmdSN order (RFC 7143 §3.2.2.1, §4.2.2.1).
//!
//! Immediate requests go at once; the request with CmdSN = ExpCmdSN goes straight from the
//! receive buffer; one ahead of it inside the window is copied and held until the gap
//! closes. Data-Out, SNACK and answers to our pings carry no CmdSN and are not ordered.

use tracing::debug;

use super::{Conn, End, Outcome};
use crate::pdu::{reject, Bhs, RawPdu, Request, RESERVED_TAG};
use crate::session::window::Admit;

/// A PDU copied out of the receive buffer because its CmdSN is ahead of ExpCmdSN.
pub(super) struct HeldPdu {
    pub(super) bhs: Bhs,
    ext_cdb: Vec<u8>,
    data: Vec<u8>,
    digest_bad: bool,
    /// Aborted by task management while held: dropped, unanswered, when its turn comes.
    pub(super) aborted: bool,
}

impl Conn {
    /// Sends the Reject an outcome asks for, or turns a drop into the end of the connection.
    pub(super) fn apply(&mut self, outcome: Outcome, bhs: &Bhs) -> Result<(), End> {
        match outcome {
            Outcome::Reply => Ok(()),
            Outcome::Reject(reason) => {
                self.send_reject(reason, &bhs.0);
                Ok(())
            }
            Outcome::Drop(end) => Err(end),
        }
    }

    /// Handles one PDU in full feature phase: requests without a CmdSN at once, the others
    /// in CmdSN order.
    pub(super) fn handle_full(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        let req = Request::parse(b);
        match req {
            Request::DataOut(d) => {
                let outcome = self.on_data_out(p, &d);
                return self.apply(outcome, b);
            }
            // SNACK needs ErrorRecoveryLevel > 0; we negotiate 0 (RFC 7143 §11.16).
            // A Login Request after login is a protocol error too.
            Request::Snack | Request::Login(_) => {
                return self.apply(Outcome::Reject(reject::PROTOCOL_ERROR), b);
            }
            Request::Other(_) => return self.apply(Outcome::Reject(reject::CMD_NOT_SUPPORTED), b),
            Request::NopOut(n) if n.itt == RESERVED_TAG => {
                let outcome = self.on_ping_answer(&n);
                return self.apply(outcome, b);
            }
            Request::NopOut(_)
            | Request::ScsiCommand(_)
            | Request::TaskMgmt(_)
            | Request::Text(_)
            | Request::Logout(_) => {}
        }
        if b.immediate() {
            let outcome = self.dispatch(p, req);
            return self.apply(outcome, b);
        }
        let cmd_sn = b.cmd_sn();
        if self.sn.window.exp_cmd_sn() == cmd_sn {
            // The expected command: deliver straight from the receive buffer, no copy.
            self.sn.window.advance();
            let outcome = self.dispatch(p, req);
            self.apply(outcome, b)?;
            return self.drain_held();
        }
        let held = HeldPdu {
            bhs: b.clone(),
            ext_cdb: p.ext_cdb.to_vec(),
            data: p.data.to_vec(),
            digest_bad: p.data_digest_bad,
            aborted: false,
        };
        let n = self.in_progress();
        match self.sn.window.admit(cmd_sn, n, held) {
            (Admit::Deliver, Some(h)) => {
                self.dispatch_held(h)?;
                self.drain_held()
            }
            (Admit::Held, _) => Ok(()),
            _ => {
                debug!(
                    cmd_sn,
                    exp = self.sn.window.exp_cmd_sn(),
                    "command outside the CmdSN window ignored"
                );
                Ok(())
            }
        }
    }

    /// Delivers the held requests whose turn has come.
    fn drain_held(&mut self) -> Result<(), End> {
        while let Some(h) = self.sn.window.next_held() {
            self.dispatch_held(h)?;
        }
        Ok(())
    }

    fn dispatch_held(&mut self, h: HeldPdu) -> Result<(), End> {
        if h.aborted {
            return Ok(());
        }
        let p = RawPdu {
            bhs: h.bhs,
            ext_cdb: &h.ext_cdb,
            data: &h.data,
            data_digest_bad: h.digest_bad,
        };
        let outcome = self.dispatch(&p, Request::parse(&p.bhs));
        self.apply(outcome, &p.bhs)
    }

    /// Hands a request whose turn has come to its handler.
    fn dispatch(&mut self, p: &RawPdu<'_>, req: Request) -> Outcome {
        match req {
            Request::NopOut(n) => self.on_nop_out(p, &n),
            Request::ScsiCommand(c) => self.on_scsi_cmd(p, &c),
            Request::TaskMgmt(t) => self.on_task_mgmt(&t),
            Request::Text(t) => self.on_text(p, &t),
            Request::Logout(l) => self.on_logout(&l),
            Request::DataOut(_) | Request::Login(_) | Request::Snack | Request::Other(_) => {
                Outcome::Reply
            }
        }
    }
}
