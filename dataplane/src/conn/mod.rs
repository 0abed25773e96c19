//! One iSCSI connection: the only socket code of the protocol path (RFC 7143 §4, §6, §11).
//!
//! A connection runs as one task: it reads as many PDUs as the socket holds, handles them
//! (login, then full feature phase), starts SCSI commands on the logical units, and answers
//! with one write per turn that carries every reply ready by then. Commands complete
//! concurrently; their replies are encoded here, so StatSN is assigned in send order.
//!
//! The code is split by phase and concern, one file each:
//! - `run`: the socket loop, timers, flushing and teardown;
//! - `input`: the read phase (decode, dispatch by phase) and pool back-pressure;
//! - `login`: the login phase and the switch to full feature phase (RFC 7143 §6, §11.12);
//! - `order`: CmdSN ordering of full-feature requests (RFC 7143 §3.2.2.1);
//! - `command`: SCSI Command, R2T and Data-Out flow and the SCSI Response (§11.3-§11.8);
//! - `tmf`: task management (§11.5, SAM-5 §7);
//! - `discovery`: Text requests and SendTargets (§11.10, Appendix C);
//! - `logout`: Logout (§11.14);
//! - `nop`: NOP-Out answers and our NOP-In pings (§11.18, §11.19);
//! - `luns`: following LUN-map changes of the session's target;
//! - `reply`: encoding of every target PDU with its sequence numbers.
//!
//! Every request handler returns one `Outcome`: its replies are queued, the request is
//! answered with a Reject, or the connection ends.

mod command;
mod discovery;
mod inflight;
mod input;
mod login;
mod logout;
mod luns;
mod nop;
mod order;
mod reply;
mod run;
mod tmf;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::limits;
use crate::live::Shared;
use crate::login::{Login, Negotiated};
use crate::pdu::{Framing, SerialNumber, BHS_LEN};
use crate::session::window::CmdWindow;

pub use crate::pdu::Residual;

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer closed or the socket failed.
    Io(io::Error),
    /// The peer broke the protocol badly enough that the connection cannot go on.
    Protocol(&'static str),
    /// Login failed (reply already queued).
    LoginFailed,
    /// Logout completed.
    Logout,
    /// The session was reinstated elsewhere or closed by the operator.
    Killed,
    /// No answer to a NOP-In ping.
    Timeout,
}

/// How the handling of one request ended (STYLE.md §4).
#[derive(Debug)]
enum Outcome {
    /// The replies due now are queued (there may be none yet: a command still runs, a
    /// Data-Out sequence goes on, a request waits for its CmdSN).
    Reply,
    /// Answer with a Reject PDU with this reason (RFC 7143 §11.17.1), carrying the
    /// request's header.
    Reject(u8),
    /// End the connection (after what is queued is written).
    Drop(End),
}

enum Phase {
    Login(Box<Login>),
    Full,
}

/// The socket and its buffers: bytes read but not yet handled, bytes queued but not yet
/// written, and the framing both are cut by.
struct Socket {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    framing: Framing,
}

/// Sequence numbers and tags this connection hands out or checks.
struct Numbering {
    stat_sn: SerialNumber,
    /// The CmdSN window, holding requests that arrived ahead of ExpCmdSN.
    window: CmdWindow<order::HeldPdu>,
    next_ttt: u32,
}

/// State of one connection.
struct Conn {
    sock: Socket,
    portal_id: u16,
    shared: Arc<Shared>,
    phase: Phase,
    neg: Negotiated,
    sn: Numbering,
    /// What the session is bound to: target, nexus, session-table entry.
    bound: luns::Bound,
    cmds: command::Commands,
    tmfs: Vec<tmf::PendingTmf>,
    text: discovery::TextExchange,
    keepalive: nop::Keepalive,
    pool: input::PoolWait,
    /// A Logout whose response waits for running commands: its ITT and response code.
    logout: Option<(u32, u8)>,
    closing: Option<End>,
}

/// Serves one accepted connection until it ends; never panics on peer input.
pub async fn serve(stream: TcpStream, peer: SocketAddr, portal_id: u16, shared: Arc<Shared>) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, error = %e, "connection gone before it started");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream, peer, local, portal_id, shared.clone());
    let end = conn.run().await;
    if matches!(end, End::LoginFailed) {
        crate::metrics::inc(&shared.counters().login_failures_total);
    }
    match &end {
        End::Logout | End::LoginFailed => debug!(%peer, ?end, "connection closed"),
        End::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            debug!(%peer, "peer closed the connection")
        }
        End::Protocol(reason) => warn!(%peer, reason, "connection dropped: protocol error"),
        _ => warn!(%peer, ?end, "connection dropped"),
    }
    conn.teardown().await;
}

const RBUF_BYTES: usize =
    2 * (BHS_LEN + limits::AHS_BYTES_MAX + 8 + limits::RECV_DATA_SEGMENT_BYTES as usize);

impl Conn {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        portal_id: u16,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            sock: Socket {
                stream,
                peer,
                local,
                rbuf: vec![0; RBUF_BYTES],
                rlen: 0,
                wbuf: Vec::with_capacity(256 * 1024),
                wpos: 0,
                framing: Framing::LOGIN,
            },
            portal_id,
            shared,
            phase: Phase::Login(Box::new(Login::new(login::chap_random()))),
            neg: Negotiated::default(),
            sn: Numbering {
                stat_sn: SerialNumber(0),
                window: CmdWindow::new(0),
                next_ttt: 0,
            },
            bound: luns::Bound::default(),
            cmds: command::Commands::new(),
            tmfs: Vec::new(),
            text: discovery::TextExchange::default(),
            keepalive: nop::Keepalive::new(),
            pool: input::PoolWait::default(),
            logout: None,
            closing: None,
        }
    }

    /// Commands in progress: what the CmdSN window's MaxCmdSN leaves room for.
    fn in_progress(&self) -> usize {
        self.cmds.tasks.len()
    }

    /// A new Target Transfer Tag, never the reserved value.
    fn alloc_ttt(&mut self) -> u32 {
        self.sn.next_ttt = self.sn.next_ttt.wrapping_add(1);
        if self.sn.next_ttt == crate::pdu::RESERVED_TAG {
            self.sn.next_ttt = 1;
        }
        self.sn.next_ttt
    }
}
