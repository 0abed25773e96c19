//! The CmdSN window (RFC 7143 §4.2.2.1, §3.2.2.1): non-immediate commands are delivered in
//! CmdSN order; ones that arrive early are held; ones outside the window are ignored.

use std::collections::BTreeMap;

use crate::limits;
use crate::pdu::SerialNumber;

/// What to do with an arriving non-immediate command.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// It is the next expected: deliver it now (then call [`CmdWindow::next_held`]).
    Deliver,
    /// It is ahead of ExpCmdSN but within the window: it was stored.
    Held,
    /// Outside the window or a duplicate: silently ignore (§4.2.2.1).
    Ignore,
}

/// ExpCmdSN, MaxCmdSN and the commands held for a gap in CmdSN.
#[derive(Debug)]
pub struct CmdWindow<T> {
    exp: SerialNumber,
    held: BTreeMap<u32, T>,
}

impl<T> CmdWindow<T> {
    /// A window whose first expected CmdSN is `initial` (the leading Login's CmdSN).
    pub fn new(initial: u32) -> Self {
        Self {
            exp: SerialNumber(initial),
            held: BTreeMap::new(),
        }
    }

    /// ExpCmdSN.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp.0
    }

    /// MaxCmdSN given how many commands are still in progress: the window shrinks as tasks
    /// pile up so that one session never has more than `CMD_WINDOW` commands outstanding.
    pub fn max_cmd_sn(&self, in_progress: usize) -> u32 {
        let busy = u32::try_from(in_progress + self.held.len()).unwrap_or(u32::MAX);
        let room = limits::CMD_WINDOW.saturating_sub(busy);
        // room == 0 gives MaxCmdSN = ExpCmdSN - 1: the window is closed (§4.2.2.1).
        self.exp.plus(room).0.wrapping_sub(1)
    }

    /// Counts the command with CmdSN == ExpCmdSN as delivered (the caller checked).
    pub fn advance(&mut self) {
        self.exp = self.exp.plus(1);
    }

    /// Decides about a non-immediate command with `cmd_sn`.
    pub fn admit(&mut self, cmd_sn: u32, in_progress: usize, item: T) -> (Admit, Option<T>) {
        let sn = SerialNumber(cmd_sn);
        if sn == self.exp {
            self.exp = self.exp.plus(1);
            return (Admit::Deliver, Some(item));
        }
        let max = SerialNumber(self.max_cmd_sn(in_progress));
        if sn.gt(self.exp) && !sn.gt(max) && !self.held.contains_key(&cmd_sn) {
            self.held.insert(cmd_sn, item);
            return (Admit::Held, None);
        }
        (Admit::Ignore, None)
    }

    /// The next held command, if the gap before it is now filled.
    pub fn next_held(&mut self) -> Option<T> {
        let item = self.held.remove(&self.exp.0)?;
        self.exp = self.exp.plus(1);
        Some(item)
    }

    /// Drops every held command (task set cleared, session ending); returns them.
    pub fn drain_held(&mut self) -> Vec<T> {
        std::mem::take(&mut self.held).into_values().collect()
    }

    /// The held commands, for marking ones an ABORT TASK names: they stay in place so their
    /// CmdSN still counts as received and the window moves past them.
    pub fn held_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.held.values_mut()
    }

    /// Number of held commands.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order_and_holds_early_commands() {
        let mut w = CmdWindow::new(10);
        assert_eq!(w.admit(11, 0, "b").0, Admit::Held);
        assert_eq!(w.admit(12, 0, "c").0, Admit::Held);
        assert_eq!(w.next_held(), None);
        assert_eq!(w.admit(10, 0, "a"), (Admit::Deliver, Some("a")));
        assert_eq!(w.next_held(), Some("b"));
        assert_eq!(w.next_held(), Some("c"));
        assert_eq!(w.next_held(), None);
        assert_eq!(w.exp_cmd_sn(), 13);
    }

    #[test]
    fn ignores_commands_outside_the_window() {
        let mut w = CmdWindow::new(100);
        assert_eq!(w.admit(99, 0, ()).0, Admit::Ignore); // duplicate
        assert_eq!(w.admit(100 + limits::CMD_WINDOW, 0, ()).0, Admit::Ignore); // beyond MaxCmdSN
        assert_eq!(w.admit(100 + limits::CMD_WINDOW - 1, 0, ()).0, Admit::Held);
        assert_eq!(
            w.admit(100 + limits::CMD_WINDOW - 1, 0, ()).0,
            Admit::Ignore
        ); // held twice
    }

    #[test]
    fn window_closes_when_full_and_wraps() {
        let w: CmdWindow<()> = CmdWindow::new(u32::MAX);
        assert_eq!(
            w.max_cmd_sn(0),
            (u32::MAX).wrapping_add(limits::CMD_WINDOW - 1)
        );
        let full = usize::try_from(limits::CMD_WINDOW).unwrap();
        assert_eq!(w.max_cmd_sn(full), u32::MAX - 1);
    }
}
