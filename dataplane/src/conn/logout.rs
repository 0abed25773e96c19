//! Logout (RFC 7143 §11.14, §11.15): closing the session or this connection once the
//! commands still running have finished; connection recovery is not offered (ERL 0).

use super::{Conn, End, Outcome};
use crate::pdu::reject;
use crate::pdu::request::{logout_reason, LogoutRequest};
use crate::pdu::response::logout_response;

impl Conn {
    pub(super) fn on_logout(&mut self, l: &LogoutRequest) -> Outcome {
        let response = match l.reason {
            logout_reason::CLOSE_SESSION => logout_response::CLOSED,
            logout_reason::CLOSE_CONNECTION if l.cid == self.neg.cid => logout_response::CLOSED,
            logout_reason::CLOSE_CONNECTION => logout_response::CID_NOT_FOUND,
            logout_reason::REMOVE_FOR_RECOVERY => logout_response::RECOVERY_NOT_SUPPORTED,
            _ => return Outcome::Reject(reject::PROTOCOL_ERROR),
        };
        if response != logout_response::CLOSED {
            self.send_logout_response(l.itt, response);
            return Outcome::Reply;
        }
        // Tasks still collecting data can never finish now; running ones are waited for.
        let _ = self.abort_tasks(|_, t| !t.running);
        self.logout = Some((l.itt, response));
        self.maybe_finish_logout();
        Outcome::Reply
    }

    /// Sends the pending Logout Response once no command runs, and ends the connection.
    pub(super) fn maybe_finish_logout(&mut self) {
        if let Some((itt, response)) = self.logout {
            if self.cmds.tasks.is_empty() && self.closing.is_none() {
                self.send_logout_response(itt, response);
                self.closing = Some(End::Logout);
            }
        }
    }
}
