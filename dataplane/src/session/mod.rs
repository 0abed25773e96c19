//! Sessions (RFC 7143 §4.4, §6.3.5): the table of live sessions keyed by TSIH with
//! reinstatement by ISID, and the CmdSN window that orders non-immediate commands.
//!
//! Nothing here does I/O; the table's lock is held only for map operations.

pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::limits;

/// What the table knows of one live session, for reinstatement and for status views.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// TSIH assigned at login.
    pub tsih: u16,
    /// InitiatorName.
    pub initiator: String,
    /// ISID.
    pub isid: [u8; 6],
    /// TargetName (empty for discovery).
    pub target: String,
    /// Unique id of the I_T nexus (never reused while the process runs).
    pub nexus_id: u64,
    /// The local portal the session's connection arrived on.
    pub portal: String,
    /// The initiator's address.
    pub peer: String,
    /// What login agreed, once the connection recorded it ([`SessionTable::set_details`]).
    pub details: Option<SessionDetails>,
}

/// The negotiated parameters of a session and its connection, for status views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDetails {
    /// The connection's CID.
    pub cid: u16,
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength.
    pub send_data_segment_bytes: u32,
    /// Ours.
    pub recv_data_segment_bytes: u32,
    /// The session-wide keys.
    pub params: tgt_proto::socket::SessionParams,
}

/// A handle a connection watches: when the session is reinstated or force-closed, it fires.
pub type KillSwitch = Arc<tokio::sync::Notify>;

struct Entry {
    info: SessionInfo,
    kill: KillSwitch,
}

/// Why a session could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// `SESSIONS_MAX` sessions are alive.
    #[error("session table full ({0} sessions)")]
    Full(usize),
}

/// The live sessions of the whole data plane.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<Inner>,
    next_nexus: AtomicU64,
}

#[derive(Default)]
struct Inner {
    next_tsih: u16,
    sessions: HashMap<u16, Entry>,
}

impl SessionTable {
    /// Registers a new session, closing any session it reinstates (same InitiatorName, ISID
    /// and TargetName: RFC 7143 §6.3.5). Returns the new session's info and its kill switch.
    pub fn register(
        &self,
        initiator: &str,
        isid: [u8; 6],
        target: &str,
        portal: String,
        peer: String,
    ) -> Result<(SessionInfo, KillSwitch), SessionError> {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old: Vec<u16> = g
            .sessions
            .iter()
            .filter(|(_, e)| {
                e.info.initiator == initiator && e.info.isid == isid && e.info.target == target
            })
            .map(|(t, _)| *t)
            .collect();
        for t in old {
            if let Some(e) = g.sessions.remove(&t) {
                e.kill.notify_one();
            }
        }
        if g.sessions.len() >= limits::SESSIONS_MAX {
            return Err(SessionError::Full(g.sessions.len()));
        }
        // TSIH 0 is reserved (RFC 7143 §11.12.6); skip values still in use.
        let mut tsih = g.next_tsih;
        loop {
            tsih = tsih.wrapping_add(1);
            if tsih != 0 && !g.sessions.contains_key(&tsih) {
                break;
            }
        }
        g.next_tsih = tsih;
        let info = SessionInfo {
            tsih,
            initiator: initiator.to_string(),
            isid,
            target: target.to_string(),
            nexus_id: self.next_nexus.fetch_add(1, Ordering::Relaxed) + 1,
            portal,
            peer,
            details: None,
        };
        let kill = Arc::new(tokio::sync::Notify::new());
        g.sessions.insert(
            tsih,
            Entry {
                info: info.clone(),
                kill: kill.clone(),
            },
        );
        Ok((info, kill))
    }

    /// Records what login agreed for session `tsih` (only if it is still the one registered
    /// under that TSIH).
    pub fn set_details(&self, tsih: u16, nexus_id: u64, details: SessionDetails) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = g.sessions.get_mut(&tsih) {
            if e.info.nexus_id == nexus_id {
                e.info.details = Some(details);
            }
        }
    }

    /// Forgets a session that ended (only if it is still the one registered under `tsih`).
    pub fn remove(&self, tsih: u16, nexus_id: u64) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.sessions
            .get(&tsih)
            .is_some_and(|e| e.info.nexus_id == nexus_id)
        {
            g.sessions.remove(&tsih);
        }
    }

    /// True when a session with this TSIH is alive.
    pub fn exists(&self, tsih: u16) -> bool {
        let g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.sessions.contains_key(&tsih)
    }

    /// Closes a session by TSIH; false when there is none.
    pub fn close(&self, tsih: u16) -> bool {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match g.sessions.remove(&tsih) {
            Some(e) => {
                e.kill.notify_one();
                true
            }
            None => false,
        }
    }

    /// A copy of every live session's info, ordered by TSIH.
    pub fn list(&self) -> Vec<SessionInfo> {
        let g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<SessionInfo> = g.sessions.values().map(|e| e.info.clone()).collect();
        v.sort_by_key(|s| s.tsih);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reinstatement_kills_the_old_session() {
        let t = SessionTable::default();
        let (a, _ka) = t
            .register("iqn.i", [1; 6], "iqn.t", String::new(), String::new())
            .unwrap();
        let (b, _kb) = t
            .register("iqn.i", [2; 6], "iqn.t", String::new(), String::new())
            .unwrap();
        assert_ne!(a.tsih, b.tsih);
        let (c, _kc) = t
            .register("iqn.i", [1; 6], "iqn.t", String::new(), String::new())
            .unwrap();
        let live: Vec<u16> = t.list().iter().map(|s| s.tsih).collect();
        assert!(!live.contains(&a.tsih));
        assert!(live.contains(&b.tsih) && live.contains(&c.tsih));
        // Removing with a stale nexus id leaves the new session alone.
        t.remove(c.tsih, a.nexus_id);
        assert!(t.exists(c.tsih));
        t.remove(c.tsih, c.nexus_id);
        assert!(!t.exists(c.tsih));
    }

    #[test]
    fn refuses_sessions_over_the_limit() {
        let t = SessionTable::default();
        let mut keep = Vec::new();
        for i in 0..limits::SESSIONS_MAX {
            let isid = (i as u64).to_be_bytes();
            let isid = [isid[2], isid[3], isid[4], isid[5], isid[6], isid[7]];
            keep.push(
                t.register("iqn.i", isid, "iqn.t", String::new(), String::new())
                    .unwrap(),
            );
        }
        let err = t.register("iqn.other", [9; 6], "iqn.t", String::new(), String::new());
        assert_eq!(err.unwrap_err(), SessionError::Full(limits::SESSIONS_MAX));
    }
}
