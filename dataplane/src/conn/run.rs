//! The connection's event loop and teardown: read the socket, handle what was read, write
//! the replies, follow command completions, pool buffers, timers and the kill switch.
//!
//! Reading stops while a reason holds (closing, a Logout pending, a pool wait, too much
//! output queued, the receive buffer full); that is the connection's back-pressure
//! (STYLE.md §3). Ends are returned as [`End`].

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;

use tokio::time::Instant;
use tracing::debug;

use super::{Conn, End, Phase};
use crate::limits;

impl Conn {
    pub(super) async fn run(&mut self) -> End {
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
            if self.closing.is_some() && self.sock.wpos >= self.sock.wbuf.len() {
                // Give aborted work a chance to finish so its buffers are not written after close.
                return self.closing.take().unwrap_or(End::Logout);
            }
            let want_read = self.closing.is_none()
                && self.logout.is_none()
                && self.pool.wait.is_none()
                && self.sock.wbuf.len() - self.sock.wpos < limits::OUTPUT_BUFFER_BYTES_HIGH
                && self.sock.rlen < self.sock.rbuf.len();
            let pool_wait = self.pool.wait.clone();
            let want_write = self.sock.wpos < self.sock.wbuf.len();
            let deadline = self.timer_deadline(login_deadline);
            let kill = self.bound.kill.clone();
            tokio::select! {
                () = async {
                    match &kill { Some(k) => k.notified().await, None => std::future::pending().await }
                } => return End::Killed,
                () = std::future::poll_fn(|cx| self.cmds.running.poll_finished(cx, &mut self.cmds.finished)),
                    if !self.cmds.running.is_empty() => {
                    let mut finished = std::mem::take(&mut self.cmds.finished);
                    for d in finished.drain(..) {
                        self.on_done(d);
                    }
                    self.cmds.finished = finished;
                }
                r = self.sock.stream.readable(), if want_read => {
                    if let Err(e) = r { return End::Io(e); }
                    match self.read_socket() {
                        Ok(0) => {
                            return End::Io(io::ErrorKind::UnexpectedEof.into());
                        }
                        Ok(n) => {
                            self.sock.rlen += n;
                            self.keepalive.heard_from_peer();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return End::Io(e),
                    }
                }
                r = self.sock.stream.writable(), if want_write => {
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
                    let waited = self.pool.wait.take();
                    match got {
                        Some(b) => self.pool.spare = Some(b),
                        None => {
                            debug!(peer = %self.sock.peer, "buffer pool empty too long: heap buffers until one returns");
                            // Every connection (and LU read) stops waiting on this pool
                            // until a buffer comes back.
                            if let Some((pool, _)) = waited {
                                pool.mark_starved();
                            }
                            self.pool.bypass = true;
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
            Phase::Full => self.keepalive.deadline(&self.shared.tuning()),
        }
    }

    fn on_timer(&mut self, login_deadline: Instant) -> Option<End> {
        let now = Instant::now();
        match self.phase {
            Phase::Login(_) => (now >= login_deadline).then_some(End::Timeout),
            Phase::Full => self.on_keepalive_timer(now),
        }
    }

    /// One `recv` into the free tail of the receive buffer.
    ///
    /// A read that did not fill that space drained the socket, so the readiness is cleared
    /// then, as tokio's own `poll_read` does: the next turn waits for the next segment
    /// instead of paying a `recv` that answers `EAGAIN` (0.84 of them per I/O at QD1
    /// before). tokio clears only if no new readiness event arrived since the read began,
    /// so data that lands meanwhile is not missed.
    fn read_socket(&mut self) -> io::Result<usize> {
        let s = &mut self.sock;
        let buf = &mut s.rbuf[s.rlen..];
        let fd = s.stream.as_raw_fd();
        let mut got = 0usize;
        let r = s.stream.try_io(Interest::READABLE, || loop {
            // SAFETY: `buf` is writable memory of `buf.len()` bytes, borrowed for the whole
            // call; `fd` is the socket `stream` owns and keeps open.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            };
            got = n;
            if n > 0 && n < buf.len() {
                // Reported as WouldBlock so tokio clears the readiness; `got` has the bytes.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            return Ok(n);
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            r => r,
        }
    }

    /// Writes what the socket takes now of the queued output.
    fn flush(&mut self) -> io::Result<()> {
        let s = &mut self.sock;
        while s.wpos < s.wbuf.len() {
            match s.stream.try_write(&s.wbuf[s.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => s.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if s.wpos >= s.wbuf.len() {
            s.wbuf.clear();
            s.wpos = 0;
        } else if s.wpos > s.wbuf.capacity() / 2 {
            s.wbuf.drain(..s.wpos);
            s.wpos = 0;
        }
        Ok(())
    }

    pub(super) async fn teardown(&mut self) {
        self.pool.spare = None;
        self.pool.wait = None;
        // Tasks waiting for Data-Out that will never come give their buffers back now.
        self.cmds.tasks.retain(|_, t| t.running);
        // Let running commands finish so no write lands after the session is gone, then
        // forget the session. Their results are dropped: the connection is closed.
        while !self.cmds.running.is_empty() {
            let mut sink = Vec::new();
            std::future::poll_fn(|cx| self.cmds.running.poll_finished(cx, &mut sink)).await;
        }
        if let (Some((tsih, nexus_id)), Some(n)) = (self.bound.session, &self.bound.nexus) {
            self.shared.sessions().remove(tsih, nexus_id);
            if let Some(t) = &self.bound.target {
                t.scsi.nexus_gone(n);
            }
        }
    }
}
