//! Commands in progress on one connection, polled by the connection's own task.
//!
//! A command that is not ready on its first poll stays here instead of becoming a runtime
//! task: its I/O completion wakes the connection task directly, which polls every pending
//! command once and answers the finished ones in the same turn. That saves a task spawn and
//! a cross-task wake-up per command; with at most `CMD_WINDOW` commands per connection, the
//! extra polls cost less than the hops they replace.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::command::Done;

/// A command's execution, boxed so commands of different shapes share one list.
pub(super) type CmdFuture = Pin<Box<dyn Future<Output = Done> + Send>>;

#[derive(Default)]
pub(super) struct Inflight {
    futs: Vec<CmdFuture>,
}

impl Inflight {
    pub(super) fn push(&mut self, f: CmdFuture) {
        self.futs.push(f);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.futs.is_empty()
    }

    /// Polls every pending command; `Ready` when at least one finished (moved to `done`).
    pub(super) fn poll_finished(&mut self, cx: &mut Context<'_>, done: &mut Vec<Done>) -> Poll<()> {
        let mut i = 0;
        while i < self.futs.len() {
            match self.futs[i].as_mut().poll(cx) {
                Poll::Ready(d) => {
                    done.push(d);
                    drop(self.futs.swap_remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        if done.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}
