//! Unit attention conditions (SAM-5 5.14, SPC-4 5.13): a small queue per I_T nexus,
//! reported one at a time on the next command that is not INQUIRY, REPORT LUNS or
//! REQUEST SENSE, and returned by REQUEST SENSE.

use super::sense::Sense;
use std::collections::{HashMap, VecDeque};

/// Most conditions kept per nexus; older ones are dropped first (SAM allows reporting a
/// later condition in place of lost ones). Kept small because initiators clear UAs with a
/// bounded TUR loop (libiscsi gives up after a handful).
pub const UA_QUEUE_MAX: usize = 3;

/// 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (libiscsi's tests accept this one
/// after resets).
pub const UA_RESET: (u8, u8) = (0x29, 0x00);
/// 2Ah/01h MODE PARAMETERS CHANGED.
pub const UA_MODE_CHANGED: (u8, u8) = (0x2A, 0x01);
/// 2Ah/03h RESERVATIONS PREEMPTED.
pub const UA_RESERVATIONS_PREEMPTED: (u8, u8) = (0x2A, 0x03);
/// 2Ah/04h RESERVATIONS RELEASED.
pub const UA_RESERVATIONS_RELEASED: (u8, u8) = (0x2A, 0x04);
/// 2Ah/05h REGISTRATIONS PREEMPTED.
pub const UA_REGISTRATIONS_PREEMPTED: (u8, u8) = (0x2A, 0x05);

/// Pending unit attentions of one logical unit, keyed by nexus id.
#[derive(Debug, Default)]
pub struct UnitAttentions {
    pending: HashMap<u64, VecDeque<(u8, u8)>>,
}

impl UnitAttentions {
    /// Makes the nexus known so that later broadcast conditions reach it.
    pub fn touch(&mut self, nexus: u64) {
        self.pending.entry(nexus).or_default();
    }

    fn push(q: &mut VecDeque<(u8, u8)>, c: (u8, u8)) {
        if q.contains(&c) {
            return;
        }
        if q.len() >= UA_QUEUE_MAX {
            q.pop_front();
        }
        q.push_back(c);
    }

    /// Raises a condition for one nexus, if it is known (a nexus that is gone or has not
    /// used this LU yet gets nothing).
    pub fn raise(&mut self, nexus: u64, c: (u8, u8)) {
        if let Some(q) = self.pending.get_mut(&nexus) {
            Self::push(q, c);
        }
    }

    /// Raises a condition for every known nexus except `except`.
    pub fn raise_others(&mut self, except: Option<u64>, c: (u8, u8)) {
        for (id, q) in self.pending.iter_mut() {
            if Some(*id) != except {
                Self::push(q, c);
            }
        }
    }

    /// Takes the oldest condition for a nexus.
    pub fn take(&mut self, nexus: u64) -> Option<Sense> {
        let (asc, ascq) = self.pending.get_mut(&nexus)?.pop_front()?;
        Some(Sense::unit_attention(asc, ascq))
    }

    /// Drops everything about a nexus (its session ended).
    pub fn forget(&mut self, nexus: u64) {
        self.pending.remove(&nexus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_reaches_known_nexuses_once() {
        let mut u = UnitAttentions::default();
        u.touch(1);
        u.touch(2);
        u.raise_others(Some(1), UA_MODE_CHANGED);
        u.raise_others(Some(1), UA_MODE_CHANGED);
        assert!(u.take(1).is_none());
        assert_eq!(u.take(2).unwrap().asc, 0x2A);
        assert!(u.take(2).is_none());
        u.raise_others(None, UA_RESET);
        assert_eq!(u.take(1).unwrap().asc, 0x29);
        u.forget(2);
        assert!(u.take(2).is_none());
    }

    #[test]
    fn queue_is_bounded() {
        let mut u = UnitAttentions::default();
        u.raise(1, (0x2A, 0));
        assert!(u.take(1).is_none());
        u.touch(1);
        for i in 0..20u8 {
            u.raise(1, (0x2A, i));
        }
        let mut n = 0;
        while u.take(1).is_some() {
            n += 1;
        }
        assert_eq!(n, UA_QUEUE_MAX);
    }
}
