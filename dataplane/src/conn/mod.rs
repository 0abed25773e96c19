//! One iSCSI connection: the only socket code of the protocol path (RFC 7143 §4, §6, §11).
//!
//! A connection runs as one task: it reads as many PDUs as the socket holds, handles them
//! (login, then full feature phase), starts SCSI commands on the logical units, and answers
//! with one write per turn that carries every reply ready by then. Commands complete
//! concurrently; their replies are encoded here, so StatSN is assigned in send order.

mod inflight;
mod reply;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::buf::IoBuf;
use crate::limits;
use crate::live::{Shared, Snapshot, TargetEntry};
use crate::login::{self, Login, LoginContext, LoginRequest, LoginStep, Negotiated, SessionKind};
use crate::lu::{Admission, Nexus, NexusAttentions, ScsiResponse, TmFunction, TmResponse};
use crate::numa::{BufferPool, PoolBuf};
use crate::pdu::{self, op, reject, Bhs, Framing, RawPdu, SerialNumber, BHS_LEN, RESERVED_TAG};
use crate::scsi::{opcodes, Sense};
use crate::session::window::{Admit, CmdWindow};
use crate::session::KillSwitch;
use crate::task::{DataOutError, WriteLimits, WriteState};

pub use reply::Residual;

/// A PDU copied out of the receive buffer because its CmdSN is ahead of ExpCmdSN.
struct HeldPdu {
    bhs: Bhs,
    ext_cdb: Vec<u8>,
    data: Vec<u8>,
    digest_bad: bool,
    aborted: bool,
}

/// A CDB kept inline: the 16 bytes of the BHS plus an extended-CDB AHS of up to 16 more
/// (32-byte variable-length CDBs) need no allocation; longer ones are rare and allocate.
#[derive(Default)]
struct Cdb {
    inline: [u8; 32],
    len: usize,
    long: Vec<u8>,
}

impl Cdb {
    fn new(base: &[u8], ext: &[u8]) -> Self {
        let mut c = Cdb::default();
        let len = base.len() + ext.len();
        if len <= c.inline.len() {
            c.inline[..base.len()].copy_from_slice(base);
            c.inline[base.len()..len].copy_from_slice(ext);
            c.len = len;
        } else {
            c.long = [base, ext].concat();
        }
        c
    }

    fn as_slice(&self) -> &[u8] {
        if self.long.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.long
        }
    }
}

/// A SCSI command from arrival to its response.
struct Task {
    lun_raw: u64,
    lun: u16,
    cdb: Cdb,
    edtl: u32,
    read: bool,
    write: bool,
    /// Data-Out as it arrives: a buffer of the LU's pool, handed to the LU whole.
    data: IoBuf,
    ws: Option<WriteState>,
    running: bool,
    aborted: bool,
    digest_bad: bool,
}

/// A task management response waiting for aborted commands to finish.
struct PendingTmf {
    itt: u32,
    response: u8,
    waiting: Vec<u32>,
}

/// A finished SCSI command.
struct Done {
    itt: u32,
    resp: ScsiResponse,
}

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

enum Phase {
    Login(Box<Login>),
    Full,
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    portal_id: u16,
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
}

/// State of one connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    portal_id: u16,
    shared: Arc<Shared>,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    framing: Framing,
    phase: Phase,
    neg: Negotiated,
    stat_sn: SerialNumber,
    window: CmdWindow<HeldPdu>,
    tasks: HashMap<u32, Task>,
    running: inflight::Inflight,
    finished: Vec<Done>,
    target: Option<Arc<TargetEntry>>,
    /// Snapshot generation `target` was taken from.
    target_gen: u64,
    /// REPORTED LUNS DATA HAS CHANGED conditions of this connection's I_T nexus (one
    /// connection per session, so the connection is the nexus).
    attentions: NexusAttentions,
    nexus: Option<Nexus>,
    session: Option<(u16, u64)>,
    kill: Option<KillSwitch>,
    next_ttt: u32,
    tmfs: Vec<PendingTmf>,
    text_in: Vec<u8>,
    text_out: Vec<u8>,
    text_out_pos: usize,
    text_ttt: u32,
    last_rx: Instant,
    ping_ttt: Option<(u32, Instant)>,
    logout: Option<(u32, u8)>,
    closing: Option<End>,
    write_limits: WriteLimits,
    dead_itts: std::collections::VecDeque<u32>,
    /// A pool buffer taken for the write command at the head of the input.
    spare: Option<PoolBuf>,
    /// The pool the head write command waits for (input not read meanwhile), and since when.
    pool_wait: Option<(BufferPool, Instant)>,
    /// Set when that wait timed out: the next write command takes a heap buffer.
    pool_bypass: bool,
}

/// ITTs of failed or aborted commands remembered per connection (stray Data-Out is dropped).
const DEAD_ITTS_MAX: usize = 16;

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
        crate::metrics::inc(&shared.counters.login_failures_total);
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
            stream,
            peer,
            local,
            portal_id,
            shared,
            rbuf: vec![0; RBUF_BYTES],
            rlen: 0,
            wbuf: Vec::with_capacity(256 * 1024),
            wpos: 0,
            framing: Framing {
                header_digest: false,
                data_digest: false,
                max_recv_data: 8192,
            },
            phase: Phase::Login(Box::default()),
            neg: Negotiated::default(),
            stat_sn: SerialNumber(0),
            window: CmdWindow::new(0),
            tasks: HashMap::new(),
            running: inflight::Inflight::default(),
            finished: Vec::with_capacity(usize::try_from(limits::CMD_WINDOW).unwrap_or(128)),
            target: None,
            target_gen: 0,
            attentions: NexusAttentions::default(),
            nexus: None,
            session: None,
            kill: None,
            next_ttt: 0,
            tmfs: Vec::new(),
            text_in: Vec::new(),
            text_out: Vec::new(),
            text_out_pos: 0,
            text_ttt: RESERVED_TAG,
            last_rx: Instant::now(),
            ping_ttt: None,
            logout: None,
            closing: None,
            write_limits: WriteLimits {
                first_burst: 65536,
                max_burst: 262_144,
                outstanding_r2t_max: 1,
                initial_r2t: true,
            },
            dead_itts: std::collections::VecDeque::with_capacity(DEAD_ITTS_MAX),
            spare: None,
            pool_wait: None,
            pool_bypass: false,
        }
    }

    async fn run(&mut self) -> End {
        let login_deadline = Instant::now() + Duration::from_secs(limits::LOGIN_TIMEOUT_SECS);
        loop {
            // The commands of one read reach io_uring with one submission.
            if let Err(e) = crate::io::uring::batched(|| self.process_input()) {
                self.closing.get_or_insert(e);
            }
            self.maybe_finish_logout();
            if let Err(e) = self.flush() {
                return End::Io(e);
            }
            if self.closing.is_some() && self.wpos >= self.wbuf.len() {
                // Give aborted work a chance to finish so its buffers are not written after close.
                return self.closing.take().unwrap_or(End::Logout);
            }
            let want_read = self.closing.is_none()
                && self.logout.is_none()
                && self.pool_wait.is_none()
                && self.wbuf.len() - self.wpos < limits::OUTPUT_BUFFER_BYTES_HIGH
                && self.rlen < self.rbuf.len();
            let pool_wait = self.pool_wait.clone();
            let want_write = self.wpos < self.wbuf.len();
            let deadline = self.timer_deadline(login_deadline);
            let kill = self.kill.clone();
            tokio::select! {
                () = async {
                    match &kill { Some(k) => k.notified().await, None => std::future::pending().await }
                } => return End::Killed,
                () = std::future::poll_fn(|cx| self.running.poll_finished(cx, &mut self.finished)),
                    if !self.running.is_empty() => {
                    let mut finished = std::mem::take(&mut self.finished);
                    for d in finished.drain(..) {
                        self.on_done(d);
                    }
                    self.finished = finished;
                }
                r = self.stream.readable(), if want_read => {
                    if let Err(e) = r { return End::Io(e); }
                    match self.stream.try_read(&mut self.rbuf[self.rlen..]) {
                        Ok(0) => {
                            return End::Io(io::ErrorKind::UnexpectedEof.into());
                        }
                        Ok(n) => {
                            self.rlen += n;
                            self.last_rx = Instant::now();
                            self.ping_ttt = None;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return End::Io(e),
                    }
                }
                r = self.stream.writable(), if want_write => {
                    if let Err(e) = r { return End::Io(e); }
                }
                got = async {
                    match &pool_wait {
                        Some((pool, since)) => {
                            let until = *since + Duration::from_millis(limits::POOL_WAIT_MS_MAX);
                            tokio::time::timeout_at(until, pool.get()).await.ok()
                        }
                        None => std::future::pending().await,
                    }
                }, if pool_wait.is_some() => {
                    let waited = self.pool_wait.take();
                    match got {
                        Some(b) => self.spare = Some(b),
                        None => {
                            debug!(peer = %self.peer, "buffer pool empty too long: heap buffers until one returns");
                            // Every connection (and LU read) stops waiting on this pool
                            // until a buffer comes back.
                            if let Some((pool, _)) = waited {
                                pool.mark_starved();
                            }
                            self.pool_bypass = true;
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(end) = self.on_timer(login_deadline) { return end; }
                }
            }
        }
    }

    fn timer_deadline(&self, login_deadline: Instant) -> Instant {
        match self.phase {
            Phase::Login(_) => login_deadline,
            Phase::Full => match self.ping_ttt {
                Some((_, sent)) => sent + self.shared.tuning.nop_in_timeout,
                None => self.last_rx + self.shared.tuning.nop_in_interval,
            },
        }
    }

    fn on_timer(&mut self, login_deadline: Instant) -> Option<End> {
        let now = Instant::now();
        match self.phase {
            Phase::Login(_) => (now >= login_deadline).then_some(End::Timeout),
            Phase::Full => {
                if let Some((_, sent)) = self.ping_ttt {
                    if now >= sent + self.shared.tuning.nop_in_timeout {
                        return Some(End::Timeout);
                    }
                    return None;
                }
                if now >= self.last_rx + self.shared.tuning.nop_in_interval
                    && self.neg.kind == SessionKind::Normal
                {
                    let ttt = self.alloc_ttt();
                    self.ping_ttt = Some((ttt, now));
                    self.send_nop_in(RESERVED_TAG, ttt, 0, &[], false);
                }
                if self.neg.kind == SessionKind::Discovery {
                    self.last_rx = now;
                }
                None
            }
        }
    }

    fn alloc_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        self.next_ttt
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.wpos >= self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > self.wbuf.capacity() / 2 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// Handles every whole PDU in the receive buffer.
    fn process_input(&mut self) -> Result<(), End> {
        if self.closing.is_some() {
            return Ok(());
        }
        let rbuf = std::mem::take(&mut self.rbuf);
        let mut at = 0;
        let mut result = Ok(());
        let mut handled = 0;
        while handled < limits::PDUS_PER_TURN_MAX && self.closing.is_none() && self.logout.is_none()
        {
            match pdu::decode(&rbuf[at..self.rlen], &self.framing) {
                Ok(Some((p, used))) => {
                    if !self.data_out_buffer_ready(&p) {
                        // Back-pressure: the command stays in the input until a buffer
                        // returns to its pool (see `run`).
                        break;
                    }
                    at += used;
                    handled += 1;
                    let r = self.handle(&p);
                    // A buffer set aside for a command that did not take it (held back
                    // by CmdSN order, refused, answered without running) goes back.
                    self.spare = None;
                    if let Err(e) = r {
                        result = Err(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if e == pdu::PduError::HeaderDigest {
                        crate::metrics::inc(&self.shared.counters.digest_errors_total);
                    }
                    warn!(peer = %self.peer, error = %e, "undecodable PDU");
                    result = Err(End::Protocol("undecodable PDU"));
                    break;
                }
            }
        }
        self.rbuf = rbuf;
        if at > 0 {
            self.rbuf.copy_within(at..self.rlen, 0);
            self.rlen -= at;
        }
        result
    }

    /// The pool `p`'s Data-Out is taken from, when it is a write command that gets one.
    fn pool_for_data_out(&self, p: &RawPdu<'_>) -> Option<BufferPool> {
        let b = &p.bhs;
        if !matches!(self.phase, Phase::Full)
            || b.opcode() != op::SCSI_CMD
            || b.flags() & 0x20 == 0
            || !opcodes::takes_pool_data_out(b.0[32])
        {
            return None;
        }
        let edtl = usize::try_from(b.u32_at(20)).unwrap_or(usize::MAX);
        let lun = pdu::decode_lun(b.lun_raw()).unwrap_or(u16::MAX);
        self.lu_pool(lun)
            .filter(|pool| edtl > 0 && edtl <= pool.buf_size_bytes())
    }

    /// Pool buffers this connection's writes hold while they wait for their Data-Out.
    fn held_for_data_out(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| t.ws.is_some() && matches!(t.data, IoBuf::Pool(_)))
            .count()
    }

    /// False when `p` is a write command whose LU's buffer pool is empty and this
    /// connection holds none of its buffers: its input waits for one to return. True
    /// otherwise, with a pool buffer set aside in `spare` when one was free.
    ///
    /// A connection whose own writes hold buffers never stops reading: the Data-Out that
    /// frees them is behind this command in its input, so waiting would only wait out
    /// `POOL_WAIT_MS_MAX` per command. That write gets a vector instead (counted).
    fn data_out_buffer_ready(&mut self, p: &RawPdu<'_>) -> bool {
        if self.spare.is_some() || self.pool_bypass {
            return true;
        }
        if self.pool_wait.is_some() {
            // Already waiting: `run` hands over a buffer (or the timeout) when it comes;
            // asking the pool again would only count the same wait twice.
            return false;
        }
        let Some(pool) = self.pool_for_data_out(p) else {
            return true;
        };
        let held = self.held_for_data_out();
        if held >= limits::POOL_BUFFERS_PER_CONN_MAX {
            return true;
        }
        match pool.try_get() {
            Some(buf) => {
                self.spare = Some(buf);
                self.pool_wait = None;
                true
            }
            // Our own writes hold buffers (their Data-Out is behind this command), or a wait
            // on this pool already timed out and none came back since: go on with a vector.
            None if held > 0 || pool.is_starved() => true,
            None => {
                if self.pool_wait.is_none() {
                    self.pool_wait = Some((pool, Instant::now()));
                }
                false
            }
        }
    }

    /// The buffer pool of the LU behind `lun` on this session's target.
    fn lu_pool(&self, lun: u16) -> Option<BufferPool> {
        self.target
            .as_ref()?
            .scsi
            .logical_unit(lun)?
            .pool()
            .cloned()
    }

    /// A buffer for `edtl` bytes of Data-Out of a command with opcode `op0`.
    ///
    /// WRITE and WRITE AND VERIFY take the buffer set aside for them, or another of the LU's
    /// pool. They get a vector (counted in the pool's heap fallbacks) when they are longer
    /// than a pool buffer, the connection already holds `POOL_BUFFERS_PER_CONN_MAX` buffers
    /// for Data-Out, the pool is empty (a wait timed out, or the connection's own writes hold
    /// the buffers), or they were held back by CmdSN order. Other commands always get a
    /// vector: see `scsi::opcodes::OpEntry::pool_data_out`.
    fn data_out_buf(&mut self, lun: u16, edtl: usize, op0: u8) -> IoBuf {
        self.pool_bypass = false;
        let spare = self.spare.take();
        let Some(pool) = self
            .lu_pool(lun)
            .filter(|_| opcodes::takes_pool_data_out(op0))
        else {
            return IoBuf::Vec(vec![0u8; edtl]);
        };
        let buf = if edtl > pool.buf_size_bytes()
            || self.held_for_data_out() >= limits::POOL_BUFFERS_PER_CONN_MAX
        {
            None
        } else {
            match spare {
                Some(b) if b.capacity() >= edtl => Some(b),
                _ => pool.try_get(),
            }
        };
        match buf.map(|mut b| b.set_len(edtl).map(|()| b)) {
            Some(Ok(b)) => IoBuf::Pool(b),
            _ => {
                pool.note_heap();
                IoBuf::Vec(vec![0u8; edtl])
            }
        }
    }

    fn handle(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        match self.phase {
            Phase::Login(_) => self.handle_login(p),
            Phase::Full => self.handle_full(p),
        }
    }

    // ----- login -----

    fn handle_login(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        if b.opcode() != op::LOGIN {
            // Anything but a Login Request before full feature phase ends the connection
            // (RFC 7143 §6.3, "protocol error").
            return Err(End::Protocol("non-login PDU during login"));
        }
        let f = b.flags();
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&b.0[8..14]);
        let req = LoginRequest {
            transit: f & 0x80 != 0,
            cont: f & 0x40 != 0,
            csg: (f >> 2) & 3,
            nsg: f & 3,
            version_max: b.0[2],
            version_min: b.0[3],
            isid,
            tsih: b.u16_at(14),
            cid: b.u16_at(20),
            data: p.data,
        };
        let cmd_sn = b.u32_at(24);
        let itt = b.itt();
        let snap = self.shared.current();
        let Phase::Login(login) = &mut self.phase else {
            return Ok(());
        };
        let first = login.negotiated().initiator_name.is_empty();
        if first {
            self.window = CmdWindow::new(cmd_sn);
            self.stat_sn = SerialNumber(b.u32_at(28));
        }
        let step = login.step(
            &req,
            &Ctx {
                snap: &snap,
                portal_id: self.portal_id,
            },
        );
        match step {
            LoginStep::Reply(r) => {
                self.send_login_reply(itt, &isid, req.tsih, &r);
                Ok(())
            }
            LoginStep::Fail(r) => {
                info!(peer = %self.peer, class = r.status.0, detail = r.status.1, "login refused");
                self.send_login_reply(itt, &isid, req.tsih, &r);
                Err(End::LoginFailed)
            }
            LoginStep::Enter(r, neg) => {
                self.enter_full_feature(itt, isid, req.tsih, r, *neg, &snap)
            }
        }
    }

    fn enter_full_feature(
        &mut self,
        itt: u32,
        isid: [u8; 6],
        tsih: u16,
        mut r: login::LoginReply,
        neg: Negotiated,
        snap: &Snapshot,
    ) -> Result<(), End> {
        if tsih != 0 {
            // Adding a connection to an existing session (MC/S) is not offered: MaxConnections=1.
            r.status = if self.shared.sessions.exists(tsih) {
                login::status::TOO_MANY_CONNECTIONS
            } else {
                login::status::SESSION_DOES_NOT_EXIST
            };
            r.transit = false;
            r.text.clear();
            self.send_login_reply(itt, &isid, tsih, &r);
            return Err(End::LoginFailed);
        }
        let registered = self.shared.sessions.register(
            &neg.initiator_name,
            isid,
            &neg.target_name,
            self.local.to_string(),
            self.peer.to_string(),
        );
        let (info, kill) = match registered {
            Ok(x) => x,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "login refused");
                r.status = login::status::OUT_OF_RESOURCES;
                r.transit = false;
                r.text.clear();
                self.send_login_reply(itt, &isid, tsih, &r);
                return Err(End::LoginFailed);
            }
        };
        if neg.kind == SessionKind::Normal {
            self.target = snap.targets.get(&neg.target_name).cloned();
            self.target_gen = snap.generation;
        }
        let isid_hex: String = isid.iter().map(|b| format!("{b:02x}")).collect();
        self.nexus = Some(Nexus {
            id: info.nexus_id,
            initiator_port: Arc::from(format!("{},i,0x{}", neg.initiator_name, isid_hex)),
        });
        self.session = Some((info.tsih, info.nexus_id));
        self.kill = Some(kill);
        self.send_login_reply(itt, &isid, info.tsih, &r);
        info!(
            peer = %self.peer,
            initiator = %neg.initiator_name,
            target = %neg.target_name,
            tsih = info.tsih,
            kind = ?neg.kind,
            "login complete"
        );
        crate::metrics::inc(&self.shared.counters.logins_total);
        // Framing changes take effect after the final Login Response (RFC 7143 §13.1).
        self.framing = Framing {
            header_digest: neg.header_digest,
            data_digest: neg.data_digest,
            max_recv_data: limits::RECV_DATA_SEGMENT_BYTES,
        };
        self.write_limits = WriteLimits {
            first_burst: neg.first_burst_bytes,
            max_burst: neg.burst_bytes_max,
            outstanding_r2t_max: neg.outstanding_r2t_max,
            initial_r2t: neg.initial_r2t,
        };
        self.shared
            .sessions
            .set_details(info.tsih, info.nexus_id, session_details(&neg));
        self.neg = neg;
        self.phase = Phase::Full;
        self.last_rx = Instant::now();
        Ok(())
    }

    // ----- full feature phase -----

    fn in_progress(&self) -> usize {
        self.tasks.len()
    }

    fn handle_full(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        match b.opcode() {
            op::DATA_OUT => return self.on_data_out(p),
            op::SNACK => {
                // SNACK needs ErrorRecoveryLevel > 0; we negotiate 0 (RFC 7143 §11.16).
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                return Ok(());
            }
            op::NOP_OUT | op::SCSI_CMD | op::TASK_MGMT | op::TEXT | op::LOGOUT => {}
            op::LOGIN => {
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                return Ok(());
            }
            _ => {
                self.send_reject(reject::CMD_NOT_SUPPORTED, &b.0);
                return Ok(());
            }
        }
        // A NOP-Out answering our ping carries ITT 0xffffffff and is not a command.
        if b.opcode() == op::NOP_OUT && b.itt() == RESERVED_TAG {
            if let Some((ttt, _)) = self.ping_ttt {
                if b.u32_at(20) == ttt {
                    self.ping_ttt = None;
                }
            }
            return Ok(());
        }
        if b.immediate() {
            return self.dispatch(p, false);
        }
        let cmd_sn = b.u32_at(24);
        if self.window.exp_cmd_sn() == cmd_sn {
            // The expected command: deliver straight from the receive buffer, no copy.
            self.window.advance();
            self.dispatch(p, false)?;
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
        match self.window.admit(cmd_sn, n, held) {
            (Admit::Deliver, Some(h)) => {
                self.dispatch_held(h)?;
                self.drain_held()
            }
            (Admit::Held, _) => Ok(()),
            _ => {
                debug!(
                    cmd_sn,
                    exp = self.window.exp_cmd_sn(),
                    "command outside the CmdSN window ignored"
                );
                Ok(())
            }
        }
    }

    fn drain_held(&mut self) -> Result<(), End> {
        while let Some(h) = self.window.next_held() {
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
        self.dispatch(&p, true)
    }

    fn dispatch(&mut self, p: &RawPdu<'_>, _was_held: bool) -> Result<(), End> {
        match p.bhs.opcode() {
            op::NOP_OUT => self.on_nop_out(p),
            op::SCSI_CMD => self.on_scsi_cmd(p),
            op::TASK_MGMT => self.on_task_mgmt(p),
            op::TEXT => self.on_text(p),
            op::LOGOUT => self.on_logout(p),
            _ => Ok(()),
        }
    }

    fn on_nop_out(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        if p.data_digest_bad {
            self.digest_error();
            self.send_reject(reject::DATA_DIGEST, &p.bhs.0);
            return Ok(());
        }
        let b = &p.bhs;
        if b.u32_at(20) != RESERVED_TAG {
            // A NOP-Out with a TTT answers a ping; with a valid ITT it is a protocol error.
            self.send_reject(reject::PROTOCOL_ERROR, &b.0);
            return Ok(());
        }
        let data = &p.data[..p.data.len().min(self.neg.send_data_segment_bytes as usize)];
        self.send_nop_in(b.itt(), RESERVED_TAG, b.lun_raw(), data, true);
        Ok(())
    }

    /// Follows configuration changes: after a new snapshot, the next command sees the
    /// target's new LUN map (a LUN added is reachable, one removed answers LOGICAL UNIT NOT
    /// SUPPORTED). Commands already running keep the map they started with. A target that
    /// was removed keeps its old entry; the control plane refuses that while sessions exist.
    ///
    /// When the LUN numbers differ from the map this nexus had, REPORTED LUNS DATA HAS
    /// CHANGED becomes pending on its LUNs (SPC-4 6.33; rules in `scsi::ua`). Done here, at
    /// the nexus's first command after the change and before that command is judged, so
    /// the inventory the condition speaks of is exactly the one this nexus is served.
    fn refresh_target(&mut self) {
        let g = self.shared.generation();
        if g == self.target_gen {
            return;
        }
        self.target_gen = g;
        let Some(new) = self
            .shared
            .current()
            .targets
            .get(&self.neg.target_name)
            .cloned()
        else {
            return;
        };
        if let Some(old) = &self.target {
            if self
                .attentions
                .target_replaced(&old.scsi, &new.scsi, self.nexus.as_ref())
            {
                debug!(
                    peer = %self.peer,
                    target = %self.neg.target_name,
                    "LUN inventory changed: REPORTED LUNS DATA HAS CHANGED pending"
                );
            }
        }
        self.target = Some(new);
    }

    fn on_scsi_cmd(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        self.refresh_target();
        let b = &p.bhs;
        let itt = b.itt();
        if self.neg.kind == SessionKind::Discovery || self.target.is_none() {
            self.send_reject(reject::PROTOCOL_ERROR, &b.0);
            return Ok(());
        }
        if self.tasks.contains_key(&itt) {
            self.send_reject(reject::TASK_IN_PROGRESS, &b.0);
            return Ok(());
        }
        let f = b.flags();
        let read = f & 0x40 != 0;
        let write = f & 0x20 != 0;
        let edtl = b.u32_at(20);
        let lun_raw = b.lun_raw();
        let lun = pdu::decode_lun(lun_raw).unwrap_or(u16::MAX);
        let cdb = Cdb::new(&b.0[32..48], p.ext_cdb);
        let imm = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        if imm > 0 && (!write || !self.neg.immediate_data) {
            self.send_reject(reject::PROTOCOL_ERROR, &b.0);
            return Ok(());
        }
        match self.attentions.admit(lun, cdb.as_slice()) {
            Admission::Run => {}
            Admission::Terminate(sense) => {
                // Not run, so no data is taken in: any unsolicited Data-Out is dropped.
                self.respond_check(itt, edtl, sense.encode());
                return Ok(());
            }
            Admission::Complete(resp) => {
                // REQUEST SENSE answered here; it has no Data-Out, so nothing is pending.
                let task = Task {
                    lun_raw,
                    lun,
                    cdb: Cdb::default(),
                    edtl,
                    read,
                    write,
                    data: IoBuf::empty(),
                    ws: None,
                    running: false,
                    aborted: false,
                    digest_bad: false,
                };
                self.respond(itt, &task, resp);
                return Ok(());
            }
        }
        if write && read {
            // Bidirectional commands are not offered by any command we implement.
            self.respond_check(itt, edtl, Sense::invalid_field_in_cdb(0, None).encode());
            return Ok(());
        }
        if edtl > limits::TRANSFER_BYTES_MAX {
            self.respond_check(itt, edtl, Sense::invalid_field_in_cdb(0, None).encode());
            return Ok(());
        }
        let mut task = Task {
            lun_raw,
            lun,
            cdb,
            edtl,
            read,
            write,
            data: IoBuf::empty(),
            ws: None,
            running: false,
            aborted: false,
            digest_bad: p.data_digest_bad,
        };
        if write && edtl > 0 {
            let ws = match WriteState::new(edtl, imm, b.final_bit(), &self.write_limits) {
                Ok(ws) => ws,
                Err(e) => {
                    debug!(itt, error = %e, "write command refused");
                    self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                    return Ok(());
                }
            };
            let op0 = b.0[32];
            let mut data = self.data_out_buf(lun, usize::try_from(edtl).unwrap_or(usize::MAX), op0);
            data[..p.data.len()].copy_from_slice(p.data);
            task.data = data;
            task.ws = Some(ws);
        }
        if p.data_digest_bad {
            // The immediate data is lost; at ERL 0 the command ends with a CRC error
            // sense once its remaining data has been taken in (RFC 7143 §7.8).
            self.digest_error();
            self.send_reject(reject::DATA_DIGEST, &b.0);
        }
        self.tasks.insert(itt, task);
        self.advance_write(itt);
        Ok(())
    }

    /// Issues R2Ts for a write task, or starts it once all its data is in.
    fn advance_write(&mut self, itt: u32) {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        let mut r2ts = [crate::task::R2t {
            ttt: 0,
            r2t_sn: 0,
            offset: 0,
            len: 0,
        }; limits::OUTSTANDING_R2T_MAX as usize];
        let mut n = 0;
        let complete = match task.ws.as_mut() {
            Some(ws) => {
                let mut next = self.next_ttt;
                ws.issue_r2ts(
                    &self.write_limits,
                    || {
                        next = next.wrapping_add(1);
                        if next == RESERVED_TAG {
                            next = 1;
                        }
                        next
                    },
                    |r| {
                        if n < r2ts.len() {
                            r2ts[n] = r;
                            n += 1;
                        }
                    },
                );
                self.next_ttt = next;
                ws.complete()
            }
            None => true,
        };
        let lun_raw = task.lun_raw;
        for r in &r2ts[..n] {
            self.send_r2t(itt, lun_raw, r);
        }
        if complete {
            self.start(itt);
        }
    }

    fn start(&mut self, itt: u32) {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        if task.digest_bad {
            let edtl = task.edtl;
            self.tasks.remove(&itt);
            self.respond_check(itt, edtl, Sense::protocol_service_crc_error().encode());
            return;
        }
        let (Some(target), Some(nexus)) = (self.target.clone(), self.nexus.clone()) else {
            return;
        };
        task.running = true;
        task.ws = None;
        let data = std::mem::take(&mut task.data);
        let cdb = std::mem::take(&mut task.cdb);
        let lun = task.lun;
        let expected_in = if task.read { task.edtl } else { 0 };
        let mut fut = Box::pin(async move {
            let resp = target
                .scsi
                .execute(lun, &nexus, cdb.as_slice(), data, expected_in)
                .await;
            Done { itt, resp }
        });
        // Most commands (page-cache reads, INQUIRY, ...) finish without waiting: poll once
        // here and answer in this turn, with no task spawn and no cross-thread wake-up.
        // A future that is not ready is handed to the runtime, which polls it again with a
        // real waker (a future must honour the waker of its latest poll).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(done) => self.on_done(done),
            std::task::Poll::Pending => self.running.push(fut),
        }
    }

    fn on_data_out(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        let itt = b.itt();
        let Some(task) = self.tasks.get_mut(&itt) else {
            // Data for a command that already failed or was aborted is dropped quietly;
            // data for a command we never saw is rejected.
            if !self.dead_itts.contains(&itt) {
                self.send_reject(reject::INVALID_PDU_FIELD, &b.0);
            }
            return Ok(());
        };
        let Some(ws) = task.ws.as_mut() else {
            self.send_reject(reject::PROTOCOL_ERROR, &b.0);
            return Ok(());
        };
        let offset = b.u32_at(40);
        let len = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        match ws.data_out(b.u32_at(20), b.u32_at(36), offset, len, b.final_bit()) {
            Ok(()) => {
                let start = offset as usize;
                task.data[start..start + p.data.len()].copy_from_slice(p.data);
                if p.data_digest_bad {
                    task.digest_bad = true;
                    self.digest_error();
                    self.send_reject(reject::DATA_DIGEST, &b.0);
                }
                self.advance_write(itt);
                Ok(())
            }
            Err(DataOutError::ShortSequence { .. }) => {
                // The sequence closed short; what arrived is placed, and the task cannot
                // complete at ERL 0: end it with a protocol-error check condition.
                let edtl = task.edtl;
                self.tasks.remove(&itt);
                self.respond_check(itt, edtl, Sense::data_phase_error().encode());
                Ok(())
            }
            Err(e) => {
                // A sequence error ends the command at ERL 0: the Reject names its ITT so the
                // initiator fails it, and later Data-Out for it is dropped.
                debug!(itt, error = %e, "data-out refused");
                self.tasks.remove(&itt);
                self.mark_dead(itt);
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                Ok(())
            }
        }
    }

    /// Counts a data digest mismatch (the Reject goes out separately).
    fn digest_error(&self) {
        warn!(peer = %self.peer, "data digest error");
        crate::metrics::inc(&self.shared.counters.digest_errors_total);
    }

    /// Remembers a few ITTs of commands that ended early, so their stray Data-Out is dropped.
    fn mark_dead(&mut self, itt: u32) {
        if self.dead_itts.len() >= DEAD_ITTS_MAX {
            self.dead_itts.pop_front();
        }
        self.dead_itts.push_back(itt);
    }

    fn on_done(&mut self, done: Done) {
        let Done { itt, resp } = done;
        let Some(task) = self.tasks.remove(&itt) else {
            return;
        };
        if task.aborted {
            self.finish_tmf_wait(itt);
            return;
        }
        self.respond(itt, &task, resp);
    }

    fn respond(&mut self, itt: u32, task: &Task, resp: ScsiResponse) {
        let good_without_sense = resp.sense.is_empty();
        if task.read {
            let have = u32::try_from(resp.data_in.len()).unwrap_or(u32::MAX);
            let send = have.min(task.edtl);
            let residual = Residual::between(task.edtl, have);
            let payload = &resp.data_in[..send as usize];
            if good_without_sense && send > 0 {
                self.send_data_in(itt, task.lun_raw, payload, Some((resp.status, residual)));
                return;
            }
            let data_ins = if send > 0 {
                self.send_data_in(itt, task.lun_raw, payload, None)
            } else {
                0
            };
            self.send_scsi_response(itt, resp.status, &resp.sense, residual, data_ins);
            return;
        }
        let residual = if task.write {
            match resp.cdb_transfer_bytes {
                Some(want) => Residual::between(task.edtl, want),
                None => Residual::Under(task.edtl),
            }
        } else {
            match resp.cdb_transfer_bytes {
                Some(want) if want > 0 => Residual::Over(want),
                _ => Residual::None,
            }
        };
        // ExpDataSN counts Data-In PDUs only and is 0 when there were none (RFC 7143 §11.4.6).
        self.send_scsi_response(itt, resp.status, &resp.sense, residual, 0);
    }

    fn respond_check(&mut self, itt: u32, edtl: u32, sense: Vec<u8>) {
        self.mark_dead(itt);
        let residual = if edtl > 0 {
            Residual::Under(edtl)
        } else {
            Residual::None
        };
        self.send_scsi_response(
            itt,
            crate::scsi::status::CHECK_CONDITION,
            &sense,
            residual,
            0,
        );
    }

    // ----- task management (RFC 7143 §11.5, SAM-5 §7) -----

    fn on_task_mgmt(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        self.refresh_target();
        let b = &p.bhs;
        let itt = b.itt();
        let func = b.flags() & 0x7f;
        let lun_raw = b.lun_raw();
        let lun = pdu::decode_lun(lun_raw).unwrap_or(u16::MAX);
        let rtt = b.u32_at(20);
        let ref_cmd_sn = b.u32_at(32);
        let cmd_sn = b.u32_at(24);
        const COMPLETE: u8 = 0;
        const NO_TASK: u8 = 1;
        const NO_LUN: u8 = 2;
        const NO_REASSIGN: u8 = 4;
        const NOT_SUPPORTED: u8 = 5;
        let Some(target) = self.target.clone() else {
            self.send_tmf_response(itt, NOT_SUPPORTED);
            return Ok(());
        };
        let lun_based = matches!(func, 1..=5);
        if lun_based && !target.scsi.lun_exists(lun) {
            self.send_tmf_response(itt, NO_LUN);
            return Ok(());
        }
        let nexus = self.nexus.clone();
        match func {
            1 => {
                // ABORT TASK.
                if self.tasks.contains_key(&rtt) {
                    let waiting = self.abort_tasks(|t_itt, _| t_itt == rtt);
                    self.queue_tmf(itt, COMPLETE, waiting);
                    return Ok(());
                }
                let mut found_held = false;
                for h in self.window.held_mut() {
                    if h.bhs.itt() == rtt {
                        h.aborted = true;
                        found_held = true;
                    }
                }
                if found_held {
                    self.send_tmf_response(itt, COMPLETE);
                    return Ok(());
                }
                // RFC 7143 §11.5.1: a task not found whose RefCmdSN is inside the CmdSN window
                // and before this request was never received: count it received, "function
                // complete". Otherwise (it already completed, its CmdSN is behind ExpCmdSN):
                // "task does not exist".
                let rc = SerialNumber(ref_cmd_sn);
                let exp = SerialNumber(self.window.exp_cmd_sn());
                let max = SerialNumber(self.window.max_cmd_sn(self.in_progress()));
                let in_window = !rc.lt(exp) && !rc.gt(max);
                let resp = if in_window && rc.lt(SerialNumber(cmd_sn)) {
                    COMPLETE
                } else {
                    NO_TASK
                };
                self.send_tmf_response(itt, resp);
            }
            2 | 4 | 5 => {
                // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET: every task of this LUN.
                let waiting = self.abort_tasks(|_, t| t.lun == lun);
                for h in self.window.held_mut() {
                    if pdu::decode_lun(h.bhs.lun_raw()) == Some(lun) {
                        h.aborted = true;
                    }
                }
                if let Some(n) = &nexus {
                    let f = match func {
                        2 => TmFunction::AbortTaskSet,
                        4 => TmFunction::ClearTaskSet,
                        _ => TmFunction::LogicalUnitReset,
                    };
                    let r = target.scsi.task_management(f, lun, n);
                    if !matches!(r, TmResponse::Complete) {
                        self.queue_tmf(itt, NOT_SUPPORTED, waiting);
                        return Ok(());
                    }
                }
                self.queue_tmf(itt, COMPLETE, waiting);
            }
            6 | 7 => {
                // TARGET WARM / COLD RESET: every task of the session, then the target.
                let waiting = self.abort_tasks(|_, _| true);
                for h in self.window.held_mut() {
                    h.aborted = true;
                }
                if let Some(n) = &nexus {
                    let f = if func == 6 {
                        TmFunction::TargetWarmReset
                    } else {
                        TmFunction::TargetColdReset
                    };
                    let _ = target.scsi.task_management(f, 0, n);
                }
                self.queue_tmf(itt, COMPLETE, waiting);
            }
            8 => self.send_tmf_response(itt, NO_REASSIGN),
            _ => self.send_tmf_response(itt, NOT_SUPPORTED),
        }
        Ok(())
    }

    /// Aborts matching tasks: ones still collecting data go at once; running ones are marked
    /// and their ITTs returned so the TMF response waits for them (SAM-5 §7.2).
    fn abort_tasks(&mut self, pred: impl Fn(u32, &Task) -> bool) -> Vec<u32> {
        let victims: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(i, t)| pred(**i, t))
            .map(|(i, _)| *i)
            .collect();
        let mut waiting = Vec::new();
        for v in victims {
            if let Some(t) = self.tasks.get_mut(&v) {
                if t.running {
                    t.aborted = true;
                    waiting.push(v);
                } else {
                    self.tasks.remove(&v);
                    self.mark_dead(v);
                }
            }
        }
        waiting
    }

    fn queue_tmf(&mut self, itt: u32, response: u8, waiting: Vec<u32>) {
        if waiting.is_empty() {
            self.send_tmf_response(itt, response);
        } else {
            self.tmfs.push(PendingTmf {
                itt,
                response,
                waiting,
            });
        }
    }

    fn finish_tmf_wait(&mut self, done_itt: u32) {
        let mut ready = Vec::new();
        self.tmfs.retain_mut(|t| {
            t.waiting.retain(|&i| i != done_itt);
            if t.waiting.is_empty() {
                ready.push((t.itt, t.response));
                false
            } else {
                true
            }
        });
        for (itt, resp) in ready {
            self.send_tmf_response(itt, resp);
        }
    }

    // ----- text (RFC 7143 §11.10, SendTargets in Appendix C) -----

    fn on_text(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        let itt = b.itt();
        let ttt = b.u32_at(20);
        let cont = b.flags() & 0x40 != 0;
        if ttt != RESERVED_TAG {
            // The initiator asks for the next part of a long response.
            if ttt != self.text_ttt {
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                return Ok(());
            }
            self.send_text_part(itt, b.lun_raw());
            return Ok(());
        }
        if self.text_in.len() + p.data.len() > limits::TEXT_BYTES_MAX {
            self.text_in.clear();
            self.send_reject(reject::OUT_OF_RESOURCES, &b.0);
            return Ok(());
        }
        self.text_in.extend_from_slice(p.data);
        if cont {
            // Acknowledge and wait for the rest of the request.
            self.text_out.clear();
            self.text_out_pos = 0;
            let ttt = self.alloc_ttt();
            self.text_ttt = ttt;
            self.send_text_response(itt, b.lun_raw(), ttt, false, false, &[]);
            return Ok(());
        }
        let input = std::mem::take(&mut self.text_in);
        let pairs = match pdu::text::parse(&input) {
            Ok(p) => p,
            Err(_) => {
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                return Ok(());
            }
        };
        let mut out = Vec::new();
        for (k, v) in &pairs {
            if k == "SendTargets" {
                self.send_targets(v, &mut out);
            } else {
                pdu::text::push(&mut out, k, "NotUnderstood");
            }
        }
        self.text_out = out;
        self.text_out_pos = 0;
        self.send_text_part(itt, b.lun_raw());
        Ok(())
    }

    fn send_text_part(&mut self, itt: u32, lun_raw: u64) {
        let max = self.neg.send_data_segment_bytes as usize;
        let rest = self.text_out.len() - self.text_out_pos;
        let n = rest.min(max);
        let chunk = self.text_out[self.text_out_pos..self.text_out_pos + n].to_vec();
        self.text_out_pos += n;
        if self.text_out_pos < self.text_out.len() {
            let ttt = self.alloc_ttt();
            self.text_ttt = ttt;
            self.send_text_response(itt, lun_raw, ttt, false, true, &chunk);
        } else {
            self.text_ttt = RESERVED_TAG;
            self.send_text_response(itt, lun_raw, RESERVED_TAG, true, false, &chunk);
        }
    }

    fn send_targets(&self, which: &str, out: &mut Vec<u8>) {
        let snap = self.shared.current();
        let in_discovery = self.neg.kind == SessionKind::Discovery;
        for t in snap.targets.values() {
            let wanted = match which {
                "All" => in_discovery,
                "" => !in_discovery && t.name == self.neg.target_name,
                name => t.name == name,
            };
            if !wanted {
                continue;
            }
            let mut addrs = Vec::new();
            for (tag, portals) in &t.tpgs {
                for pid in portals {
                    if let Some(addr) = self.shared.bound_addr(*pid) {
                        let ip = if addr.ip().is_unspecified() {
                            self.local.ip()
                        } else {
                            addr.ip()
                        };
                        let host = match ip {
                            std::net::IpAddr::V4(v4) => v4.to_string(),
                            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        };
                        addrs.push(format!("{host}:{},{tag}", addr.port()));
                    }
                }
            }
            if addrs.is_empty() {
                continue;
            }
            pdu::text::push(out, "TargetName", &t.name);
            for a in addrs {
                pdu::text::push(out, "TargetAddress", &a);
            }
        }
    }

    // ----- logout (RFC 7143 §11.14) -----

    fn on_logout(&mut self, p: &RawPdu<'_>) -> Result<(), End> {
        let b = &p.bhs;
        let reason = b.flags() & 0x7f;
        let itt = b.itt();
        let response = match reason {
            0 => 0,
            1 if b.u16_at(20) == self.neg.cid => 0,
            1 => 1,
            2 => 2,
            _ => {
                self.send_reject(reject::PROTOCOL_ERROR, &b.0);
                return Ok(());
            }
        };
        if response != 0 {
            self.send_logout_response(itt, response);
            return Ok(());
        }
        // Tasks still collecting data can never finish now; running ones are waited for.
        let _ = self.abort_tasks(|_, t| !t.running);
        self.logout = Some((itt, response));
        self.maybe_finish_logout();
        Ok(())
    }

    fn maybe_finish_logout(&mut self) {
        if let Some((itt, response)) = self.logout {
            if self.tasks.is_empty() && self.closing.is_none() {
                self.send_logout_response(itt, response);
                self.closing = Some(End::Logout);
            }
        }
    }

    async fn teardown(&mut self) {
        self.spare = None;
        self.pool_wait = None;
        // Tasks waiting for Data-Out that will never come give their buffers back now.
        self.tasks.retain(|_, t| t.running);
        // Let running commands finish so no write lands after the session is gone, then
        // forget the session. Their results are dropped: the connection is closed.
        while !self.running.is_empty() {
            let mut sink = Vec::new();
            std::future::poll_fn(|cx| self.running.poll_finished(cx, &mut sink)).await;
        }
        if let (Some((tsih, nexus_id)), Some(n)) = (self.session, &self.nexus) {
            self.shared.sessions.remove(tsih, nexus_id);
            if let Some(t) = &self.target {
                t.scsi.nexus_gone(n);
            }
        }
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Cdb;

    #[test]
    fn cdbs_up_to_32_bytes_stay_inline_and_longer_ones_are_whole() {
        let base: Vec<u8> = (0..16).collect();
        let c = Cdb::new(&base, &[]);
        assert_eq!(c.as_slice(), &base[..]);
        assert!(c.long.is_empty());
        let ext: Vec<u8> = (16..32).collect();
        let c = Cdb::new(&base, &ext);
        assert_eq!(c.as_slice(), &(0..32).collect::<Vec<u8>>()[..]);
        assert!(c.long.is_empty());
        let ext: Vec<u8> = (16..60).collect();
        let c = Cdb::new(&base, &ext);
        assert_eq!(c.as_slice(), &(0..60).collect::<Vec<u8>>()[..]);
        assert!(Cdb::default().as_slice().is_empty());
    }
}
