//! Failed-login throttling per source address, against guessing CHAP secrets or initiator
//! names online (RFC 7143 §12 leaves the policy to the target; RFC 1994 §2 notes that CHAP
//! is only as strong as the secret, so the number of guesses an attacker gets must be bounded).
//!
//! A source whose logins fail authentication (0201) or authorization (0202)
//! [`limits::LOGIN_FAILURES_PER_SOURCE_MAX`] times within
//! [`limits::LOGIN_FAILURE_WINDOW`] is refused for [`limits::LOGIN_LOCKOUT`]: its logins
//! are answered 0301 (service unavailable) before any key is looked at, so a guess made
//! while locked out tells nothing, right or wrong. Logins from other sources are not
//! affected.
//!
//! Pure: the clock comes in as an argument (`now`, a monotonic time since an origin the
//! caller fixes), so the rules are tested without waiting.
//! At most [`limits::LOGIN_THROTTLE_SOURCES_MAX`] sources are tracked; when full, the
//! source seen least recently is forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::limits;

/// What happens to a login from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The login may proceed.
    Allow,
    /// The source is locked out for this much longer.
    Refuse(Duration),
}

#[derive(Clone, Debug)]
struct Entry {
    /// When the current counting window started.
    window_start: Duration,
    /// Failures within the current window.
    failures: u32,
    /// End of the lockout, while one runs.
    locked_until: Option<Duration>,
    /// Last failure or refusal, for eviction.
    last_seen: Duration,
}

/// Failure counts and lockouts by source address.
#[derive(Debug, Default)]
pub struct Throttle {
    sources: HashMap<IpAddr, Entry>,
}

impl Throttle {
    /// Whether a login from `source` may start at `now`.
    pub fn check(&mut self, source: IpAddr, now: Duration) -> Verdict {
        let Some(e) = self.sources.get_mut(&source) else {
            return Verdict::Allow;
        };
        match e.locked_until {
            Some(until) if now < until => {
                e.last_seen = now;
                Verdict::Refuse(until - now)
            }
            Some(_) => {
                // The lockout is over: the source starts again with a clean count.
                self.sources.remove(&source);
                Verdict::Allow
            }
            None => Verdict::Allow,
        }
    }

    /// Records a failed login (authentication or authorization) from `source` at `now`;
    /// returns whether this failure started a lockout.
    pub fn record_failure(&mut self, source: IpAddr, now: Duration) -> bool {
        if !self.sources.contains_key(&source)
            && self.sources.len() >= limits::LOGIN_THROTTLE_SOURCES_MAX
        {
            self.evict(now);
        }
        let e = self.sources.entry(source).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            last_seen: now,
        });
        e.last_seen = now;
        if e.locked_until.is_some() {
            return false;
        }
        if now.saturating_sub(e.window_start) > limits::LOGIN_FAILURE_WINDOW {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= limits::LOGIN_FAILURES_PER_SOURCE_MAX {
            e.locked_until = Some(now + limits::LOGIN_LOCKOUT);
            return true;
        }
        false
    }

    /// Sources locked out at `now`.
    pub fn locked_sources(&self, now: Duration) -> usize {
        self.sources
            .values()
            .filter(|e| e.locked_until.is_some_and(|u| now < u))
            .count()
    }

    /// Makes room for one more source: drops every entry whose window and lockout are over,
    /// and if none is, the one seen least recently, preferring one that is not locked out.
    fn evict(&mut self, now: Duration) {
        self.sources.retain(|_, e| match e.locked_until {
            Some(u) => now < u,
            None => now.saturating_sub(e.window_start) <= limits::LOGIN_FAILURE_WINDOW,
        });
        if self.sources.len() >= limits::LOGIN_THROTTLE_SOURCES_MAX {
            if let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, e)| (e.locked_until.is_some_and(|u| now < u), e.last_seen))
                .map(|(ip, _)| *ip)
            {
                self.sources.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn locks_a_source_after_the_bound_and_not_before() {
        let mut t = Throttle::default();
        let t0 = Duration::from_secs(1000);
        for i in 1..limits::LOGIN_FAILURES_PER_SOURCE_MAX {
            assert!(!t.record_failure(ip(1), t0), "locked after {i} failures");
            assert_eq!(t.check(ip(1), t0), Verdict::Allow);
        }
        assert!(t.record_failure(ip(1), t0));
        assert_eq!(t.check(ip(1), t0), Verdict::Refuse(limits::LOGIN_LOCKOUT));
        // Another source is not affected.
        assert_eq!(t.check(ip(2), t0), Verdict::Allow);
        assert_eq!(t.locked_sources(t0), 1);
    }

    #[test]
    fn a_lockout_ends_and_the_count_starts_over() {
        let mut t = Throttle::default();
        let t0 = Duration::from_secs(1000);
        for _ in 0..limits::LOGIN_FAILURES_PER_SOURCE_MAX {
            t.record_failure(ip(1), t0);
        }
        let later = t0 + limits::LOGIN_LOCKOUT;
        assert!(matches!(
            t.check(ip(1), later - Duration::from_millis(1)),
            Verdict::Refuse(_)
        ));
        assert_eq!(t.check(ip(1), later), Verdict::Allow);
        assert!(!t.record_failure(ip(1), later), "count did not start over");
        assert_eq!(t.locked_sources(later), 0);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let mut t = Throttle::default();
        let mut now = Duration::from_secs(1000);
        let step = limits::LOGIN_FAILURE_WINDOW / limits::LOGIN_FAILURES_PER_SOURCE_MAX * 2;
        for _ in 0..(limits::LOGIN_FAILURES_PER_SOURCE_MAX * 4) {
            assert!(!t.record_failure(ip(1), now));
            now += step;
        }
        assert_eq!(t.check(ip(1), now), Verdict::Allow);
    }

    #[test]
    fn tracked_sources_stay_bounded_and_lockouts_survive_eviction() {
        let mut t = Throttle::default();
        let t0 = Duration::from_secs(1000);
        for _ in 0..limits::LOGIN_FAILURES_PER_SOURCE_MAX {
            t.record_failure(ip(0), t0);
        }
        let n = u32::try_from(limits::LOGIN_THROTTLE_SOURCES_MAX).expect("small bound");
        for i in 1..=n {
            t.record_failure(ip(i), t0 + Duration::from_secs(1));
        }
        assert!(t.sources.len() <= limits::LOGIN_THROTTLE_SOURCES_MAX);
        // The locked source is older, but a running lockout is not forgotten while
        // entries with no lockout can go.
        assert!(matches!(
            t.check(ip(0), t0 + Duration::from_secs(2)),
            Verdict::Refuse(_)
        ));
    }
}
