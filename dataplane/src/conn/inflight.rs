//! Commands in progress on one connection, polled by the connection's own task.
//!
//! A command that is not ready on its first poll stays here instead of becoming a runtime
//! task: its I/O completion wakes the connection task directly, which polls the commands
//! that were woken and answers the finished ones in the same turn. That saves a task spawn
//! and a cross-task wake-up per command.
//!
//! Each slot polls its command with a waker of its own (built once per slot and reused), and
//! that waker records the slot in a ready list before it wakes the connection task. A turn
//! polls only the slots in that list: at queue depth 32 an O_DIRECT completion used to cost
//! 32 polls (every pending command locked its ring and looked at its slot), now it costs
//! one. A command is polled once when it is pushed (its first poll used a no-op waker), and
//! whenever its waker fires; a spurious wake only costs one poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use super::command::Done;

/// A command's execution, boxed so commands of different shapes share one list.
pub(super) type CmdFuture = Pin<Box<dyn Future<Output = Done> + Send>>;

/// What slot wakers share with the connection task.
#[derive(Default)]
struct ReadyList {
    /// Slots woken since the connection task last looked, each at most once.
    slots: Vec<usize>,
    /// The connection task's waker from its latest poll.
    parent: Option<Waker>,
    /// Set while the connection task is inside `poll_finished`: it takes the list before it
    /// returns, so a wake then needs no wake-up of the connection task. A task that wakes
    /// itself is rescheduled behind other work, and tokio may wake a parked worker to steal
    /// it (a futex call and a context switch per turn).
    polling: bool,
}

/// The waker of one slot: queues the slot (once until it is polled) and wakes the connection.
struct SlotWake {
    idx: usize,
    /// Set while the slot sits in the ready list, so repeated wakes queue it once.
    queued: AtomicBool,
    ready: Arc<Mutex<ReadyList>>,
}

impl SlotWake {
    fn queue(&self) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let parent = {
            let mut r = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            r.slots.push(self.idx);
            if r.polling {
                None
            } else {
                r.parent.clone()
            }
        };
        // Woken after the lock is released: a waker is foreign code.
        if let Some(w) = parent {
            w.wake();
        }
    }
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.queue();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue();
    }
}

struct Slot {
    fut: Option<CmdFuture>,
    wake: Arc<SlotWake>,
    waker: Waker,
}

/// Rounds of reap-and-poll in one turn: bounds the turn when completions keep coming.
const ROUNDS_MAX: usize = 4;

pub(super) struct Inflight {
    slots: Vec<Slot>,
    /// Indices of slots without a command.
    free: Vec<usize>,
    /// Commands held.
    len: usize,
    ready: Arc<Mutex<ReadyList>>,
    /// The ready list taken out of the lock for one turn; reused, never shrunk.
    scratch: Vec<usize>,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            ready: Arc::new(Mutex::new(ReadyList::default())),
            scratch: Vec::new(),
        }
    }
}

impl Inflight {
    /// Holds `f` and queues it for a poll with its slot's waker in the next turn.
    pub(super) fn push(&mut self, f: CmdFuture) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let idx = self.slots.len();
                let wake = Arc::new(SlotWake {
                    idx,
                    queued: AtomicBool::new(false),
                    ready: Arc::clone(&self.ready),
                });
                let waker = Waker::from(Arc::clone(&wake));
                self.slots.push(Slot {
                    fut: None,
                    wake,
                    waker,
                });
                idx
            }
        };
        self.slots[idx].fut = Some(f);
        self.len += 1;
        // Queued without waking the connection task: it is the caller, and its loop polls
        // the in-flight list before it sleeps.
        let wake = &self.slots[idx].wake;
        if !wake.queued.swap(true, Ordering::AcqRel) {
            let mut r = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            r.slots.push(idx);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Polls every command woken since the last turn; `Ready` when at least one finished
    /// (moved to `done`).
    ///
    /// The thread's io_uring CQ is looked at first (no system call), and again after each
    /// round, while it keeps yielding completions (at most [`ROUNDS_MAX`] rounds), so
    /// completions that land while the turn runs are answered in it.
    pub(super) fn poll_finished(&mut self, cx: &mut Context<'_>, done: &mut Vec<Done>) -> Poll<()> {
        {
            let mut r = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            match &r.parent {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => r.parent = Some(cx.waker().clone()),
            }
            r.polling = true;
        }
        crate::io::uring::reap_here();
        for _ in 0..ROUNDS_MAX {
            self.poll_ready(done);
            if self.len == 0 || !crate::io::uring::reap_here() {
                break;
            }
        }
        let more = {
            let mut r = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            r.polling = false;
            !r.slots.is_empty()
        };
        if more {
            // Woken while this turn ran and not polled in it (the rounds ran out): come back.
            cx.waker().wake_by_ref();
        }
        if done.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Polls the slots in the ready list once each.
    fn poll_ready(&mut self, done: &mut Vec<Done>) {
        {
            let mut r = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut r.slots, &mut self.scratch);
        }
        for k in 0..self.scratch.len() {
            let idx = self.scratch[k];
            let Some(slot) = self.slots.get_mut(idx) else {
                continue;
            };
            // Cleared before the poll: a wake during or after it queues the slot again.
            slot.wake.queued.store(false, Ordering::Release);
            let Some(fut) = slot.fut.as_mut() else {
                // A late wake of a command that already finished.
                continue;
            };
            let mut scx = Context::from_waker(&slot.waker);
            if let Poll::Ready(d) = fut.as_mut().poll(&mut scx) {
                done.push(d);
                slot.fut = None;
                self.len -= 1;
                self.free.push(idx);
            }
        }
        self.scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_woken_commands_are_polled_and_each_finishes_once() {
        use std::sync::atomic::AtomicUsize;
        // Each command counts its polls and finishes when its flag is set and it is woken.
        struct Cmd {
            itt: u32,
            polls: Arc<AtomicUsize>,
            go: Arc<AtomicBool>,
            waker: Arc<Mutex<Option<Waker>>>,
        }
        impl Future for Cmd {
            type Output = Done;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
                self.polls.fetch_add(1, Ordering::Relaxed);
                if self.go.load(Ordering::Relaxed) {
                    return Poll::Ready(Done::for_test(self.itt));
                }
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let mut inflight = Inflight::default();
        let mut cmds = Vec::new();
        for itt in 0..4u32 {
            let polls = Arc::new(AtomicUsize::new(0));
            let go = Arc::new(AtomicBool::new(false));
            let waker = Arc::new(Mutex::new(None));
            inflight.push(Box::pin(Cmd {
                itt,
                polls: Arc::clone(&polls),
                go: Arc::clone(&go),
                waker: Arc::clone(&waker),
            }));
            cmds.push((polls, go, waker));
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut done = Vec::new();
        // First turn: every pushed command is polled once with its slot's waker.
        assert!(inflight.poll_finished(&mut cx, &mut done).is_pending());
        assert!(cmds.iter().all(|c| c.0.load(Ordering::Relaxed) == 1));
        // Nothing woken: nothing polled.
        assert!(inflight.poll_finished(&mut cx, &mut done).is_pending());
        assert!(cmds.iter().all(|c| c.0.load(Ordering::Relaxed) == 1));
        // Command 2 completes and is woken twice: it alone is polled, once.
        cmds[2].1.store(true, Ordering::Relaxed);
        let w = cmds[2].2.lock().unwrap().clone().unwrap();
        w.wake_by_ref();
        w.wake();
        assert!(inflight.poll_finished(&mut cx, &mut done).is_ready());
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].itt_for_test(), 2);
        assert_eq!(cmds[2].0.load(Ordering::Relaxed), 2);
        assert_eq!(cmds[0].0.load(Ordering::Relaxed), 1);
        // A late wake of the finished command polls nothing; a new command reuses the slot.
        let stale = cmds[2].2.lock().unwrap().clone().unwrap();
        stale.wake_by_ref();
        done.clear();
        assert!(inflight.poll_finished(&mut cx, &mut done).is_pending());
        for (polls, go, waker) in &cmds {
            if !go.load(Ordering::Relaxed) {
                go.store(true, Ordering::Relaxed);
                waker.lock().unwrap().clone().unwrap().wake();
                assert_eq!(polls.load(Ordering::Relaxed), 1);
            }
        }
        assert!(inflight.poll_finished(&mut cx, &mut done).is_ready());
        assert_eq!(done.len(), 3);
        assert!(inflight.is_empty());
    }
}
