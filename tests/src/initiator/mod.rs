//! The project's own iSCSI test initiator (RFC 7143), written independently of the target's
//! codec so the two check each other.
//!
//! One [`Session`] is one TCP connection (MaxConnections=1, ErrorRecoveryLevel=0). After the
//! login phase (`login`), a reader thread owns the receive side and dispatches every PDU by
//! ITT (RFC 7143 §11.2.1.8): it reassembles Data-In (§11.7), forwards R2Ts (§11.8) to the
//! thread that issued the command, completes tasks on SCSI Response (§11.4), and answers
//! target NOP-In pings (§11.19). Any number of threads may call [`Session::execute`] at once;
//! each one waits for the CmdSN window (§4.2.2.1) before its command goes out, so the queue
//! depth of a session is the number of threads using it.
//!
//! Everything the target might get wrong — a StatSN out of sequence, a DataSN gap, a Data-In
//! at the wrong offset, a residual that does not add up, an unexpected opcode — is returned
//! as [`Error::Protocol`]. After such a violation the session is dead: every waiting and
//! future command fails with the same error.

pub mod chap;
pub mod crc32c;
pub mod login;
pub mod pdu;
pub mod scsi;
pub mod text;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use login::{Negotiated, SessionOptions};
use pdu::{
    read_pdu, sn_le, sn_lt, write_pdu, Bhs, Body, DataIn, DataOut, Digests, LogoutRequest, NopOut,
    ScsiCommand, ScsiResponse, TextRequest, RESERVED_TAG,
};
pub use scsi::{Capacity, Inquiry, Sense};

/// Everything that can go wrong in the initiator. `Clone`, because one connection failure
/// completes every waiting command with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The target broke RFC 7143 (or sent something this initiator does not support).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The target refused the login.
    #[error("login rejected: status class {class:#04x} detail {detail:#04x}")]
    Login {
        /// Status-Class.
        class: u8,
        /// Status-Detail.
        detail: u8,
    },
    /// The target rejected one of our PDUs (a bug on our side, or a target limit).
    #[error("target rejected our pdu: reason {0:#04x}")]
    Rejected(u8),
    /// A command ended with a SCSI status other than GOOD.
    #[error("scsi status {status:#04x} ({})", sense.map(|s| s.to_string()).unwrap_or_else(|| "no sense".into()))]
    Scsi {
        /// SCSI status.
        status: u8,
        /// Decoded sense data, if any came with it.
        sense: Option<Sense>,
    },
    /// The iSCSI service response was not "command completed at target".
    #[error("iscsi service response {0:#04x}")]
    ServiceResponse(u8),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The session was logged out or dropped.
    #[error("session closed")]
    Closed,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Direction and size of a command's data transfer.
#[derive(Debug, Clone, Copy)]
pub enum DataDir<'a> {
    /// No data.
    None,
    /// Read up to this many bytes.
    Read(u32),
    /// Write these bytes.
    Write(&'a [u8]),
}

/// Residual reported by the target (RFC 7143 §11.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    /// Exactly the expected amount moved.
    None,
    /// The command moved this many bytes fewer than expected.
    Underflow(u32),
    /// The command wanted this many bytes more than expected.
    Overflow(u32),
}

/// The outcome of a SCSI command that reached the target.
#[derive(Debug, Clone)]
pub struct ScsiOutcome {
    /// SCSI status.
    pub status: u8,
    /// Data-In bytes received (reads).
    pub data: Vec<u8>,
    /// Raw sense data, if the target sent any.
    pub sense: Option<Vec<u8>>,
    /// Residual.
    pub residual: Residual,
}

impl ScsiOutcome {
    /// Turns a non-GOOD status into [`Error::Scsi`].
    pub fn good(self) -> Result<ScsiOutcome> {
        if self.status == scsi::STATUS_GOOD {
            Ok(self)
        } else {
            Err(Error::Scsi {
                status: self.status,
                sense: self.sense.as_deref().and_then(scsi::parse_sense),
            })
        }
    }
}

/// One target from a SendTargets answer (RFC 7143 Appendix C).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// TargetAddress values (`address[:port],tpgt`).
    pub addresses: Vec<String>,
}

enum TaskKind {
    Scsi,
    Nop,
    Text,
    Logout,
}

enum Completion {
    Scsi(ScsiOutcome),
    Nop(Vec<u8>),
    Text { more: bool, ttt: u32, data: Vec<u8> },
    Logout(u8),
}

enum Event {
    R2t { ttt: u32, offset: u32, len: u32 },
    Done(Result<Completion>),
}

struct Task {
    kind: TaskKind,
    tx: mpsc::Sender<Event>,
    read: bool,
    write: bool,
    expected_len: u32,
    data: Vec<u8>,
    received: u32,
    next_data_sn: u32,
    next_r2t_sn: u32,
}

struct State {
    cmd_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    exp_stat_sn: u32,
    next_itt: u32,
    tasks: HashMap<u32, Task>,
    fatal: Option<Error>,
    closing: bool,
}

/// Counters of the protocol paths a session exercised, so tests can prove that, say, R2Ts
/// really happened.
#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    immediate_data_bytes: AtomicU64,
    unsolicited_data_out_pdus: AtomicU64,
    solicited_data_out_pdus: AtomicU64,
    r2ts: AtomicU64,
    data_in_pdus: AtomicU64,
    target_pings_answered: AtomicU64,
    async_events: AtomicU64,
}

/// A snapshot of the protocol paths a session exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// SCSI commands sent.
    pub commands: u64,
    /// Bytes sent as immediate data.
    pub immediate_data_bytes: u64,
    /// Unsolicited Data-Out PDUs sent (TTT 0xffffffff).
    pub unsolicited_data_out_pdus: u64,
    /// Data-Out PDUs sent in answer to R2Ts.
    pub solicited_data_out_pdus: u64,
    /// R2Ts received.
    pub r2ts: u64,
    /// Data-In PDUs received.
    pub data_in_pdus: u64,
    /// Target NOP-In pings answered.
    pub target_pings_answered: u64,
    /// Asynchronous Messages received.
    pub async_events: u64,
}

impl SessionStats {
    /// Field-wise sum.
    pub fn add(&mut self, o: &SessionStats) {
        self.commands += o.commands;
        self.immediate_data_bytes += o.immediate_data_bytes;
        self.unsolicited_data_out_pdus += o.unsolicited_data_out_pdus;
        self.solicited_data_out_pdus += o.solicited_data_out_pdus;
        self.r2ts += o.r2ts;
        self.data_in_pdus += o.data_in_pdus;
        self.target_pings_answered += o.target_pings_answered;
        self.async_events += o.async_events;
    }
}

struct Inner {
    writer: Mutex<TcpStream>,
    state: Mutex<State>,
    window: Condvar,
    params: Negotiated,
    digests: Digests,
    timeout: Duration,
    check_exp_data_sn: bool,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic on another thread cannot leave these structures half-updated in a way that
    // matters to a test tool, so poisoning is ignored rather than propagated as a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn violation<T>(msg: String) -> Result<T> {
    Err(Error::Protocol(msg))
}

impl State {
    /// RFC 7143 §4.2.2.1: adopt newer ExpCmdSN/MaxCmdSN values; ignore both when
    /// MaxCmdSN < ExpCmdSN - 1.
    fn update_window(&mut self, exp: u32, max: u32) -> Result<()> {
        if sn_lt(max, exp.wrapping_sub(1)) {
            return Ok(());
        }
        if sn_lt(self.cmd_sn, exp) {
            return violation(format!(
                "ExpCmdSN {exp} is beyond the next CmdSN {} we have not sent yet",
                self.cmd_sn
            ));
        }
        if sn_lt(self.exp_cmd_sn, exp) {
            self.exp_cmd_sn = exp;
        }
        if sn_lt(self.max_cmd_sn, max) {
            self.max_cmd_sn = max;
        }
        Ok(())
    }

    /// StatSN of a status-carrying PDU must be exactly the next one (RFC 7143 §4.2.2.2;
    /// one connection, ErrorRecoveryLevel=0, so there are no gaps to recover).
    fn take_stat_sn(&mut self, sn: u32, what: &str) -> Result<()> {
        if sn != self.exp_stat_sn {
            return violation(format!(
                "{what} StatSN {sn} but expected {}",
                self.exp_stat_sn
            ));
        }
        self.exp_stat_sn = sn.wrapping_add(1);
        Ok(())
    }

    fn task(&mut self, itt: u32, what: &str) -> Result<&mut Task> {
        match self.tasks.get_mut(&itt) {
            Some(t) => Ok(t),
            None => violation(format!("{what} for unknown ITT {itt:#x}")),
        }
    }
}

/// Checks the residual against what arrived (reads) or what the command asked for (writes).
fn check_residual(
    task: &Task,
    status: u8,
    overflow: bool,
    underflow: bool,
    residual: u32,
) -> Result<Residual> {
    if overflow && underflow {
        return violation("both O and U residual bits set".into());
    }
    let r = if underflow {
        Residual::Underflow(residual)
    } else if overflow {
        Residual::Overflow(residual)
    } else {
        Residual::None
    };
    if status != scsi::STATUS_GOOD {
        return Ok(r);
    }
    if task.read {
        let short = task.expected_len - task.received;
        let ok = match r {
            Residual::Underflow(n) => n == short && n > 0,
            Residual::Overflow(n) => short == 0 && n > 0,
            Residual::None => short == 0,
        };
        if !ok {
            return violation(format!(
                "residual {r:?} does not match {} of {} bytes received",
                task.received, task.expected_len
            ));
        }
    } else if let Residual::Underflow(n) = r {
        if n > task.expected_len {
            return violation(format!(
                "underflow residual {n} exceeds expected length {}",
                task.expected_len
            ));
        }
    }
    Ok(r)
}

impl Inner {
    fn handle(&self, pdu: pdu::Pdu) -> Result<()> {
        let mut reply_ping: Option<(u64, u32, Vec<u8>)> = None;
        {
            let mut st = lock(&self.state);
            match pdu.bhs.body {
                Body::DataIn(d) => self.on_data_in(&mut st, d, &pdu.data)?,
                Body::ScsiResponse(r) => self.on_scsi_response(&mut st, r, &pdu.data)?,
                Body::R2t(r) => {
                    st.update_window(r.exp_cmd_sn, r.max_cmd_sn)?;
                    let burst_max = self.params.burst_len_bytes_max;
                    let t = st.task(r.itt, "R2T")?;
                    if !t.write {
                        return violation(format!("R2T for non-write ITT {:#x}", r.itt));
                    }
                    if r.r2t_sn != t.next_r2t_sn {
                        return violation(format!(
                            "R2TSN {} but expected {}",
                            r.r2t_sn, t.next_r2t_sn
                        ));
                    }
                    t.next_r2t_sn = t.next_r2t_sn.wrapping_add(1);
                    self.counters.r2ts.fetch_add(1, Ordering::Relaxed);
                    let end = u64::from(r.offset) + u64::from(r.desired_len);
                    if r.desired_len == 0
                        || r.desired_len > burst_max
                        || end > u64::from(t.expected_len)
                        || r.ttt == RESERVED_TAG
                    {
                        return violation(format!(
                            "bad R2T: offset {} length {} ttt {:#x} (expected length {}, MaxBurstLength {burst_max})",
                            r.offset, r.desired_len, r.ttt, t.expected_len
                        ));
                    }
                    // The issuing thread may have timed out and gone; nothing to do then.
                    let _ = t.tx.send(Event::R2t {
                        ttt: r.ttt,
                        offset: r.offset,
                        len: r.desired_len,
                    });
                }
                Body::NopIn(n) => {
                    st.update_window(n.exp_cmd_sn, n.max_cmd_sn)?;
                    if n.itt == RESERVED_TAG {
                        // Unsolicited: StatSN is the next one, not advanced (§11.19.4).
                        if n.stat_sn != st.exp_stat_sn {
                            return violation(format!(
                                "NOP-In StatSN {} but expected {}",
                                n.stat_sn, st.exp_stat_sn
                            ));
                        }
                        if n.ttt != RESERVED_TAG {
                            reply_ping = Some((n.lun, n.ttt, pdu.data));
                        }
                    } else {
                        st.take_stat_sn(n.stat_sn, "NOP-In")?;
                        let t = st.tasks.remove(&n.itt);
                        match t {
                            Some(
                                t @ Task {
                                    kind: TaskKind::Nop,
                                    ..
                                },
                            ) => {
                                let _ = t.tx.send(Event::Done(Ok(Completion::Nop(pdu.data))));
                            }
                            _ => {
                                return violation(format!(
                                    "NOP-In for ITT {:#x} that is not a ping",
                                    n.itt
                                ))
                            }
                        }
                    }
                }
                Body::TextResponse(r) => {
                    st.update_window(r.exp_cmd_sn, r.max_cmd_sn)?;
                    st.take_stat_sn(r.stat_sn, "Text Response")?;
                    match st.tasks.remove(&r.itt) {
                        Some(
                            t @ Task {
                                kind: TaskKind::Text,
                                ..
                            },
                        ) => {
                            if r.final_ && r.cont {
                                return violation("Text Response with both F and C".into());
                            }
                            let _ = t.tx.send(Event::Done(Ok(Completion::Text {
                                more: !r.final_,
                                ttt: r.ttt,
                                data: pdu.data,
                            })));
                        }
                        _ => return violation(format!("Text Response for ITT {:#x}", r.itt)),
                    }
                }
                Body::LogoutResponse(r) => {
                    st.update_window(r.exp_cmd_sn, r.max_cmd_sn)?;
                    st.take_stat_sn(r.stat_sn, "Logout Response")?;
                    match st.tasks.remove(&r.itt) {
                        Some(
                            t @ Task {
                                kind: TaskKind::Logout,
                                ..
                            },
                        ) => {
                            st.closing = true;
                            let _ = t.tx.send(Event::Done(Ok(Completion::Logout(r.response))));
                        }
                        _ => return violation(format!("Logout Response for ITT {:#x}", r.itt)),
                    }
                }
                Body::Reject(r) => {
                    st.update_window(r.exp_cmd_sn, r.max_cmd_sn)?;
                    st.take_stat_sn(r.stat_sn, "Reject")?;
                    if pdu.data.len() < pdu::BHS_LEN {
                        return violation("Reject without the rejected header".into());
                    }
                    let itt = u32::from_be_bytes([
                        pdu.data[16],
                        pdu.data[17],
                        pdu.data[18],
                        pdu.data[19],
                    ]);
                    if let Some(t) = st.tasks.remove(&itt) {
                        let _ = t.tx.send(Event::Done(Err(Error::Rejected(r.reason))));
                    } else {
                        return Err(Error::Rejected(r.reason));
                    }
                }
                Body::AsyncMessage(a) => {
                    st.update_window(a.exp_cmd_sn, a.max_cmd_sn)?;
                    st.take_stat_sn(a.stat_sn, "Async Message")?;
                    self.counters.async_events.fetch_add(1, Ordering::Relaxed);
                }
                other => return violation(format!("unexpected PDU from target: {other:?}")),
            }
        }
        self.window.notify_all();
        if let Some((lun, ttt, data)) = reply_ping {
            let mut w = lock(&self.writer);
            let st = lock(&self.state);
            let bhs = Bhs::new(
                Body::NopOut(NopOut {
                    immediate: true,
                    lun,
                    itt: RESERVED_TAG,
                    ttt,
                    cmd_sn: st.cmd_sn,
                    exp_stat_sn: st.exp_stat_sn,
                }),
                0,
            );
            drop(st);
            write_pdu(&mut *w, &bhs, &data, self.digests)?;
            self.counters
                .target_pings_answered
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn on_data_in(&self, st: &mut State, d: DataIn, data: &[u8]) -> Result<()> {
        st.update_window(d.exp_cmd_sn, d.max_cmd_sn)?;
        if d.has_status {
            if !d.final_ {
                return violation("Data-In with S but without F".into());
            }
            st.take_stat_sn(d.stat_sn, "Data-In")?;
        }
        self.counters.data_in_pdus.fetch_add(1, Ordering::Relaxed);
        let t = st.task(d.itt, "Data-In")?;
        if !t.read {
            return violation(format!("Data-In for non-read ITT {:#x}", d.itt));
        }
        if d.data_sn != t.next_data_sn {
            return violation(format!(
                "Data-In DataSN {} but expected {} (ITT {:#x})",
                d.data_sn, t.next_data_sn, d.itt
            ));
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        // DataPDUInOrder=Yes and DataSequenceInOrder=Yes: data arrives contiguously.
        if d.offset != t.received {
            return violation(format!(
                "Data-In offset {} but {} bytes received so far (ITT {:#x})",
                d.offset, t.received, d.itt
            ));
        }
        let len = u32::try_from(data.len())
            .map_err(|_| Error::Protocol("Data-In segment too long".into()))?;
        let end = d.offset.checked_add(len).filter(|&e| e <= t.expected_len);
        let Some(end) = end else {
            return violation(format!(
                "Data-In offset {} length {len} overruns expected length {}",
                d.offset, t.expected_len
            ));
        };
        let (lo, hi) = (
            usize::try_from(d.offset).map_err(|_| Error::Protocol("offset".into()))?,
            usize::try_from(end).map_err(|_| Error::Protocol("offset".into()))?,
        );
        t.data[lo..hi].copy_from_slice(data);
        t.received = end;
        if d.has_status {
            let residual = check_residual(t, d.status, d.overflow, d.underflow, d.residual)?;
            if let Some(mut t) = st.tasks.remove(&d.itt) {
                t.data.truncate(hi);
                let _ = t.tx.send(Event::Done(Ok(Completion::Scsi(ScsiOutcome {
                    status: d.status,
                    data: t.data,
                    sense: None,
                    residual,
                }))));
            }
        }
        Ok(())
    }

    fn on_scsi_response(&self, st: &mut State, r: ScsiResponse, data: &[u8]) -> Result<()> {
        st.update_window(r.exp_cmd_sn, r.max_cmd_sn)?;
        st.take_stat_sn(r.stat_sn, "SCSI Response")?;
        let t = st.task(r.itt, "SCSI Response")?;
        if !matches!(t.kind, TaskKind::Scsi) {
            return violation(format!("SCSI Response for non-SCSI ITT {:#x}", r.itt));
        }
        let sense = if data.is_empty() {
            None
        } else {
            if data.len() < 2 {
                return violation("SCSI Response data segment shorter than SenseLength".into());
            }
            let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
            if 2 + n > data.len() {
                return violation(format!(
                    "SenseLength {n} exceeds the {}-byte data segment",
                    data.len()
                ));
            }
            Some(data[2..2 + n].to_vec())
        };
        let outcome = if r.response != 0 {
            Err(Error::ServiceResponse(r.response))
        } else {
            let residual = check_residual(t, r.status, r.overflow, r.underflow, r.residual)?;
            // RFC 7143 §11.4.6: ExpDataSN is the number of Data-In PDUs sent for the command
            // and MUST be 0 when there were none (so 0 for writes; RFC 3720 also counted R2Ts,
            // which RFC 7143 dropped).
            let sent = t.next_data_sn;
            if self.check_exp_data_sn && r.exp_data_sn != sent && r.status == scsi::STATUS_GOOD {
                return violation(format!(
                    "SCSI Response ExpDataSN {} but the target sent {sent} Data-In PDUs",
                    r.exp_data_sn
                ));
            }
            Ok(residual)
        };
        if let Some(mut t) = st.tasks.remove(&r.itt) {
            let received = usize::try_from(t.received).unwrap_or(usize::MAX);
            t.data.truncate(received);
            let done = outcome.map(|residual| {
                Completion::Scsi(ScsiOutcome {
                    status: r.status,
                    data: t.data,
                    sense,
                    residual,
                })
            });
            let _ = t.tx.send(Event::Done(done));
        }
        Ok(())
    }

    fn fail(&self, e: Error) {
        let mut st = lock(&self.state);
        let e = if st.closing { Error::Closed } else { e };
        if st.fatal.is_none() {
            st.fatal = Some(e.clone());
        }
        for (_, t) in st.tasks.drain() {
            let _ = t.tx.send(Event::Done(Err(e.clone())));
        }
        drop(st);
        self.window.notify_all();
    }

    fn register(
        &self,
        kind: TaskKind,
        dir: DataDir<'_>,
        itt: Option<u32>,
    ) -> Result<(u32, mpsc::Receiver<Event>)> {
        let (tx, rx) = mpsc::channel();
        let (read, write, expected_len) = match dir {
            DataDir::None => (false, false, 0),
            DataDir::Read(n) => (true, false, n),
            DataDir::Write(d) => (
                false,
                true,
                u32::try_from(d.len()).map_err(|_| Error::Protocol("write too long".into()))?,
            ),
        };
        let mut st = lock(&self.state);
        if let Some(e) = &st.fatal {
            return Err(e.clone());
        }
        let itt = match itt {
            Some(i) => i,
            None => loop {
                let i = st.next_itt;
                st.next_itt = st.next_itt.wrapping_add(1);
                if i != RESERVED_TAG && !st.tasks.contains_key(&i) {
                    break i;
                }
            },
        };
        let data = if read {
            vec![0u8; usize::try_from(expected_len).unwrap_or(0)]
        } else {
            Vec::new()
        };
        st.tasks.insert(
            itt,
            Task {
                kind,
                tx,
                read,
                write,
                expected_len,
                data,
                received: 0,
                next_data_sn: 0,
                next_r2t_sn: 0,
            },
        );
        Ok((itt, rx))
    }

    fn unregister(&self, itt: u32) {
        lock(&self.state).tasks.remove(&itt);
    }

    /// Sends a PDU that carries a CmdSN. Non-immediate PDUs wait until the CmdSN window
    /// allows them and take the next CmdSN; CmdSN assignment and the socket write happen under
    /// the writer lock, so commands leave in CmdSN order.
    fn send_numbered(
        &self,
        immediate: bool,
        deadline: Instant,
        data: &[u8],
        build: impl Fn(u32, u32) -> Body,
    ) -> Result<()> {
        loop {
            {
                let mut st = lock(&self.state);
                loop {
                    if let Some(e) = &st.fatal {
                        return Err(e.clone());
                    }
                    if immediate || sn_le(st.cmd_sn, st.max_cmd_sn) {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout("the CmdSN window to open".into()));
                    }
                    st = self
                        .window
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            let mut w = lock(&self.writer);
            let mut st = lock(&self.state);
            if let Some(e) = &st.fatal {
                return Err(e.clone());
            }
            if !immediate && !sn_le(st.cmd_sn, st.max_cmd_sn) {
                continue;
            }
            let cmd_sn = st.cmd_sn;
            if !immediate {
                st.cmd_sn = st.cmd_sn.wrapping_add(1);
            }
            let body = build(cmd_sn, st.exp_stat_sn);
            drop(st);
            return self.write_locked(&mut w, body, data);
        }
    }

    fn send_unnumbered(&self, data: &[u8], build: impl Fn(u32) -> Body) -> Result<()> {
        let mut w = lock(&self.writer);
        let st = lock(&self.state);
        if let Some(e) = &st.fatal {
            return Err(e.clone());
        }
        let body = build(st.exp_stat_sn);
        drop(st);
        self.write_locked(&mut w, body, data)
    }

    fn write_locked(&self, w: &mut TcpStream, body: Body, data: &[u8]) -> Result<()> {
        let r = write_pdu(w, &Bhs::new(body, 0), data, self.digests);
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    fn wait(&self, rx: &mpsc::Receiver<Event>, itt: u32, deadline: Instant) -> Result<Event> {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => Ok(ev),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.unregister(itt);
                Err(Error::Timeout(format!("the response to ITT {itt:#x}")))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = lock(&self.state);
                Err(st.fatal.clone().unwrap_or(Error::Closed))
            }
        }
    }

    /// Sends Data-Out PDUs for `[offset, end)` of `buf` as one sequence (RFC 7143 §11.7),
    /// each no larger than the target's MaxRecvDataSegmentLength.
    fn send_data_out(
        &self,
        lun: u64,
        itt: u32,
        ttt: u32,
        buf: &[u8],
        offset: u32,
        end: u32,
    ) -> Result<()> {
        let seg_max = self.params.send_data_segment_len_bytes_max;
        let mut at = offset;
        let mut data_sn = 0u32;
        while at < end {
            let n = seg_max.min(end - at);
            let lo = usize::try_from(at).map_err(|_| Error::Protocol("offset".into()))?;
            let hi = usize::try_from(at + n).map_err(|_| Error::Protocol("offset".into()))?;
            let last = at + n == end;
            self.send_unnumbered(&buf[lo..hi], |exp_stat_sn| {
                Body::DataOut(DataOut {
                    final_: last,
                    lun,
                    itt,
                    ttt,
                    exp_stat_sn,
                    data_sn,
                    offset: at,
                })
            })?;
            data_sn += 1;
            at += n;
            let c = if ttt == RESERVED_TAG {
                &self.counters.unsolicited_data_out_pdus
            } else {
                &self.counters.solicited_data_out_pdus
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn reader_loop(inner: Arc<Inner>, mut stream: TcpStream) {
    let limit = inner.params.recv_data_segment_len_bytes_max;
    let err = loop {
        match read_pdu(&mut stream, inner.digests, limit) {
            Ok(pdu) => {
                if let Err(e) = inner.handle(pdu) {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    inner.fail(err);
}

/// A logged-in iSCSI session over one connection.
pub struct Session {
    inner: Arc<Inner>,
    control: TcpStream,
    reader: Option<JoinHandle<()>>,
}

static ISID_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A random-format ISID (RFC 7143 §11.12.5, T=10b) unique within this process.
fn new_isid() -> [u8; 6] {
    let n = ISID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id().to_be_bytes();
    let c = n.to_be_bytes();
    [0x80, pid[2], pid[3], c[1], c[2], c[3]]
}

impl Session {
    /// Connects to `portal` and logs in with `opts` (a discovery session when
    /// `opts.target_name` is `None`).
    pub fn login(portal: impl ToSocketAddrs, opts: &SessionOptions) -> Result<Session> {
        let addr: SocketAddr = portal
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Io("portal resolves to no address".into()))?;
        let mut stream = TcpStream::connect_timeout(&addr, opts.command_timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(opts.command_timeout))?;
        let (params, seq) = login::login(&mut stream, opts, new_isid(), 1)?;
        // The reader thread blocks without a timeout; Drop shuts the socket down to end it.
        stream.set_read_timeout(None)?;
        let digests = Digests {
            header: params.header_digest,
            data: params.data_digest,
        };
        let reader_stream = stream.try_clone()?;
        let control = stream.try_clone()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream),
            state: Mutex::new(State {
                cmd_sn: seq.cmd_sn,
                exp_cmd_sn: seq.exp_cmd_sn,
                max_cmd_sn: seq.max_cmd_sn,
                exp_stat_sn: seq.exp_stat_sn,
                next_itt: 0x100,
                tasks: HashMap::new(),
                fatal: None,
                closing: false,
            }),
            window: Condvar::new(),
            params,
            digests,
            timeout: opts.command_timeout,
            check_exp_data_sn: opts.check_exp_data_sn,
            counters: Counters::default(),
        });
        let r_inner = Arc::clone(&inner);
        let reader = std::thread::Builder::new()
            .name("iscsi-reader".into())
            .spawn(move || reader_loop(r_inner, reader_stream))?;
        Ok(Session {
            inner,
            control,
            reader: Some(reader),
        })
    }

    /// The operational parameters in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.inner.params
    }

    /// Counters of the protocol paths this session exercised so far.
    pub fn stats(&self) -> SessionStats {
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SessionStats {
            commands: g(&c.commands),
            immediate_data_bytes: g(&c.immediate_data_bytes),
            unsolicited_data_out_pdus: g(&c.unsolicited_data_out_pdus),
            solicited_data_out_pdus: g(&c.solicited_data_out_pdus),
            r2ts: g(&c.r2ts),
            data_in_pdus: g(&c.data_in_pdus),
            target_pings_answered: g(&c.target_pings_answered),
            async_events: g(&c.async_events),
        }
    }

    /// The fatal error that ended this session, if any.
    pub fn failure(&self) -> Option<Error> {
        lock(&self.inner.state).fatal.clone()
    }

    /// Runs one SCSI command (RFC 7143 §11.3) and waits for its status. Writes send immediate
    /// data and unsolicited Data-Out as negotiated, then answer R2Ts.
    pub fn execute(&self, lun: u64, cdb: &[u8], dir: DataDir<'_>) -> Result<ScsiOutcome> {
        if cdb.len() > 16 {
            return violation(format!("CDB of {} bytes needs an AHS", cdb.len()));
        }
        let mut cdb16 = [0u8; 16];
        cdb16[..cdb.len()].copy_from_slice(cdb);
        let wire_lun = pdu::encode_lun(lun)?;
        let deadline = Instant::now() + self.inner.timeout;
        let p = &self.inner.params;
        let (itt, rx) = self.inner.register(TaskKind::Scsi, dir, None)?;
        let (read, write, expected_len, buf): (bool, bool, u32, &[u8]) = match dir {
            DataDir::None => (false, false, 0, &[]),
            DataDir::Read(n) => (true, false, n, &[]),
            // `register` checked that the length fits u32.
            DataDir::Write(d) => (false, true, u32::try_from(d.len()).unwrap_or(0), d),
        };
        // RFC 7143 §13.10/§13.11: immediate data and unsolicited Data-Out together are capped
        // by FirstBurstLength; each PDU by the target's MaxRecvDataSegmentLength.
        let immediate_len = if write && p.immediate_data {
            expected_len
                .min(p.first_burst_len_bytes)
                .min(p.send_data_segment_len_bytes_max)
        } else {
            0
        };
        let unsolicited_end = if write && !p.initial_r2t {
            expected_len.min(p.first_burst_len_bytes)
        } else {
            immediate_len
        };
        let imm = usize::try_from(immediate_len).unwrap_or(0);
        let result = (|| {
            self.inner
                .send_numbered(false, deadline, &buf[..imm], |cmd_sn, exp_stat_sn| {
                    Body::ScsiCommand(ScsiCommand {
                        immediate: false,
                        final_: unsolicited_end == immediate_len,
                        read,
                        write,
                        attr: 1,
                        lun: wire_lun,
                        itt,
                        expected_len,
                        cmd_sn,
                        exp_stat_sn,
                        cdb: cdb16,
                    })
                })?;
            self.inner.counters.commands.fetch_add(1, Ordering::Relaxed);
            self.inner
                .counters
                .immediate_data_bytes
                .fetch_add(u64::from(immediate_len), Ordering::Relaxed);
            if unsolicited_end > immediate_len {
                self.inner.send_data_out(
                    wire_lun,
                    itt,
                    RESERVED_TAG,
                    buf,
                    immediate_len,
                    unsolicited_end,
                )?;
            }
            let mut next_solicited = unsolicited_end;
            loop {
                match self.inner.wait(&rx, itt, deadline)? {
                    Event::R2t { ttt, offset, len } => {
                        if offset != next_solicited {
                            let e = Error::Protocol(format!(
                                "R2T offset {offset} but the next unsent byte is {next_solicited}"
                            ));
                            self.inner.fail(e.clone());
                            return Err(e);
                        }
                        self.inner
                            .send_data_out(wire_lun, itt, ttt, buf, offset, offset + len)?;
                        next_solicited = offset + len;
                    }
                    Event::Done(Ok(Completion::Scsi(o))) => {
                        if write && o.status == scsi::STATUS_GOOD {
                            let missing = expected_len - next_solicited;
                            let explained =
                                matches!(o.residual, Residual::Underflow(n) if n == missing);
                            if missing > 0 && !explained {
                                let e = Error::Protocol(format!(
                                    "write completed GOOD with {missing} bytes never requested"
                                ));
                                self.inner.fail(e.clone());
                                return Err(e);
                            }
                        }
                        return Ok(o);
                    }
                    Event::Done(Ok(_)) => {
                        return violation("non-SCSI completion for a SCSI task".into())
                    }
                    Event::Done(Err(e)) => return Err(e),
                }
            }
        })();
        if result.is_err() {
            self.inner.unregister(itt);
        }
        result
    }

    /// TEST UNIT READY; a non-GOOD status is [`Error::Scsi`].
    pub fn test_unit_ready(&self, lun: u64) -> Result<()> {
        self.execute(lun, &scsi::test_unit_ready(), DataDir::None)?
            .good()
            .map(|_| ())
    }

    /// Standard INQUIRY.
    pub fn inquiry(&self, lun: u64) -> Result<Inquiry> {
        let o = self
            .execute(lun, &scsi::inquiry(255), DataDir::Read(255))?
            .good()?;
        scsi::parse_inquiry(&o.data)
    }

    /// REPORT LUNS (SELECT REPORT 00h) addressed to `lun`: the LUN inventory of this I_T
    /// nexus, in the order the target lists it. Room is asked for 1024 LUNs; a longer list
    /// is a [`Error::Protocol`], as the test targets never have that many.
    pub fn report_luns(&self, lun: u64) -> Result<Vec<u64>> {
        const ALLOC_LEN_BYTES: u32 = 8 + 8 * 1024;
        let o = self
            .execute(
                lun,
                &scsi::report_luns(ALLOC_LEN_BYTES),
                DataDir::Read(ALLOC_LEN_BYTES),
            )?
            .good()?;
        scsi::parse_report_luns(&o.data)
    }

    /// REQUEST SENSE (fixed format): the sense data the logical unit returns, decoded; `None`
    /// when it holds no sense key, ASC or ASCQ (NO SENSE).
    pub fn request_sense(&self, lun: u64) -> Result<Option<Sense>> {
        let o = self
            .execute(lun, &scsi::request_sense(252), DataDir::Read(252))?
            .good()?;
        let sense = scsi::parse_sense(&o.data)
            .ok_or_else(|| Error::Protocol(format!("REQUEST SENSE returned {:02x?}", o.data)))?;
        Ok(((sense.key, sense.asc, sense.ascq) != (0, 0, 0)).then_some(sense))
    }

    /// READ CAPACITY (16).
    pub fn read_capacity16(&self, lun: u64) -> Result<Capacity> {
        let o = self
            .execute(lun, &scsi::read_capacity16(), DataDir::Read(32))?
            .good()?;
        scsi::parse_capacity16(&o.data)
    }

    fn rw_result(o: ScsiOutcome) -> Result<ScsiOutcome> {
        let o = o.good()?;
        if o.residual != Residual::None {
            return violation(format!(
                "unexpected residual {:?} on a READ/WRITE",
                o.residual
            ));
        }
        Ok(o)
    }

    /// READ (16) of `blocks` blocks of `block_len` bytes; any residual is an error.
    pub fn read16(&self, lun: u64, lba: u64, blocks: u32, block_len: u32) -> Result<Vec<u8>> {
        let len = blocks
            .checked_mul(block_len)
            .ok_or_else(|| Error::Protocol("read too long".into()))?;
        let o = self.execute(lun, &scsi::read16(lba, blocks), DataDir::Read(len))?;
        Ok(Self::rw_result(o)?.data)
    }

    /// WRITE (16) of `data`, a whole number of `block_len` blocks.
    pub fn write16(&self, lun: u64, lba: u64, data: &[u8], block_len: u32) -> Result<()> {
        let blocks = blocks_of(data, block_len)?;
        let o = self.execute(lun, &scsi::write16(lba, blocks), DataDir::Write(data))?;
        Self::rw_result(o).map(|_| ())
    }

    /// READ (10).
    pub fn read10(&self, lun: u64, lba: u32, blocks: u16, block_len: u32) -> Result<Vec<u8>> {
        let len = u32::from(blocks)
            .checked_mul(block_len)
            .ok_or_else(|| Error::Protocol("read too long".into()))?;
        let o = self.execute(lun, &scsi::read10(lba, blocks), DataDir::Read(len))?;
        Ok(Self::rw_result(o)?.data)
    }

    /// WRITE (10).
    pub fn write10(&self, lun: u64, lba: u32, data: &[u8], block_len: u32) -> Result<()> {
        let blocks = u16::try_from(blocks_of(data, block_len)?)
            .map_err(|_| Error::Protocol("WRITE (10) of more than 65535 blocks".into()))?;
        let o = self.execute(lun, &scsi::write10(lba, blocks), DataDir::Write(data))?;
        Self::rw_result(o).map(|_| ())
    }

    /// NOP-Out ping (RFC 7143 §11.18) carrying `payload`; the echoed NOP-In data must match.
    pub fn nop_ping(&self, payload: &[u8]) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + self.inner.timeout;
        let (itt, rx) = self.inner.register(TaskKind::Nop, DataDir::None, None)?;
        self.inner
            .send_numbered(true, deadline, payload, |cmd_sn, exp_stat_sn| {
                Body::NopOut(NopOut {
                    immediate: true,
                    lun: 0,
                    itt,
                    ttt: RESERVED_TAG,
                    cmd_sn,
                    exp_stat_sn,
                })
            })?;
        match self.inner.wait(&rx, itt, deadline)? {
            Event::Done(Ok(Completion::Nop(echo))) if echo == payload => Ok(start.elapsed()),
            Event::Done(Ok(Completion::Nop(echo))) => violation(format!(
                "NOP-In echoed {} bytes that differ from the {} sent",
                echo.len(),
                payload.len()
            )),
            Event::Done(Err(e)) => Err(e),
            _ => violation("unexpected completion for a NOP-Out".into()),
        }
    }

    /// One Text Request/Response exchange (RFC 7143 §11.10), following continuations, and
    /// returning the concatenated response text.
    pub fn text_exchange(&self, pairs: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let deadline = Instant::now() + self.inner.timeout;
        let mut request = text::encode(pairs);
        let mut ttt = RESERVED_TAG;
        let mut itt = None;
        let mut all = Vec::new();
        // Bounded so a target that keeps saying "more" cannot hold us forever.
        for _ in 0..64 {
            let (tag, rx) = self.inner.register(TaskKind::Text, DataDir::None, itt)?;
            itt = Some(tag);
            self.inner
                .send_numbered(false, deadline, &request, |cmd_sn, exp_stat_sn| {
                    Body::TextRequest(TextRequest {
                        immediate: false,
                        final_: true,
                        cont: false,
                        lun: 0,
                        itt: tag,
                        ttt,
                        cmd_sn,
                        exp_stat_sn,
                    })
                })?;
            request.clear();
            match self.inner.wait(&rx, tag, deadline)? {
                Event::Done(Ok(Completion::Text {
                    more,
                    ttt: next,
                    data,
                })) => {
                    all.extend_from_slice(&data);
                    if !more {
                        return text::decode(&all);
                    }
                    if next == RESERVED_TAG {
                        return violation("Text Response wants more but has no TTT".into());
                    }
                    ttt = next;
                }
                Event::Done(Err(e)) => return Err(e),
                _ => return violation("unexpected completion for a Text Request".into()),
            }
        }
        violation("text exchange did not finish in 64 PDUs".into())
    }

    /// SendTargets=All (RFC 7143 Appendix C) on this (discovery) session.
    pub fn send_targets(&self) -> Result<Vec<DiscoveredTarget>> {
        let pairs = self.text_exchange(&[("SendTargets".into(), "All".into())])?;
        let mut out: Vec<DiscoveredTarget> = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "TargetName" => out.push(DiscoveredTarget {
                    name: v,
                    addresses: Vec::new(),
                }),
                "TargetAddress" => match out.last_mut() {
                    Some(t) => t.addresses.push(v),
                    None => return violation("TargetAddress before any TargetName".into()),
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// Logout with reason "close the session" (RFC 7143 §11.14) and wait for the response.
    pub fn logout(mut self) -> Result<()> {
        let r = self.logout_inner();
        self.shutdown();
        r
    }

    fn logout_inner(&self) -> Result<()> {
        let deadline = Instant::now() + self.inner.timeout;
        let (itt, rx) = self.inner.register(TaskKind::Logout, DataDir::None, None)?;
        self.inner
            .send_numbered(true, deadline, &[], |cmd_sn, exp_stat_sn| {
                Body::LogoutRequest(LogoutRequest {
                    immediate: true,
                    reason: 0,
                    itt,
                    cid: 0,
                    cmd_sn,
                    exp_stat_sn,
                })
            })?;
        match self.inner.wait(&rx, itt, deadline)? {
            Event::Done(Ok(Completion::Logout(0))) => Ok(()),
            Event::Done(Ok(Completion::Logout(r))) => {
                violation(format!("Logout Response {r}: not closed"))
            }
            Event::Done(Err(e)) => Err(e),
            _ => violation("unexpected completion for a Logout Request".into()),
        }
    }

    fn shutdown(&mut self) {
        lock(&self.inner.state).closing = true;
        let _ = self.control.shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn blocks_of(data: &[u8], block_len: u32) -> Result<u32> {
    let len = u32::try_from(data.len()).map_err(|_| Error::Protocol("write too long".into()))?;
    if block_len == 0 || len % block_len != 0 {
        return violation(format!(
            "write of {len} bytes is not a whole number of {block_len}-byte blocks"
        ));
    }
    Ok(len / block_len)
}

/// Logs in to `portal` for discovery, runs SendTargets=All and logs out.
pub fn discover(portal: SocketAddr, initiator_name: &str) -> Result<Vec<DiscoveredTarget>> {
    let opts = SessionOptions {
        initiator_name: initiator_name.to_string(),
        target_name: None,
        ..SessionOptions::default()
    };
    let s = Session::login(portal, &opts)?;
    let targets = s.send_targets()?;
    s.logout()?;
    Ok(targets)
}
