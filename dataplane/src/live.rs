//! The live configuration the fast path reads: an immutable snapshot of targets, their
//! logical units and portal groups, swapped whole when the configuration changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use crate::lu;
use crate::session::SessionTable;

/// One target as served: its SCSI side and its portal groups.
pub struct TargetEntry {
    /// The target's iSCSI name.
    pub name: String,
    /// The SCSI target (logical units) behind it.
    pub scsi: Arc<lu::Target>,
    /// Portal group tag → portal ids in that group.
    pub tpgs: BTreeMap<u16, Vec<u16>>,
}

/// Everything a connection needs to know about the configuration, at one generation.
#[derive(Default)]
pub struct Snapshot {
    /// Targets by name.
    pub targets: BTreeMap<String, Arc<TargetEntry>>,
    /// Generation of the configuration this snapshot was built from.
    pub generation: u64,
}

/// State shared by every listener and connection of the data plane.
#[derive(Default)]
pub struct Shared {
    /// The current snapshot; replaced as a whole, never edited in place.
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Live sessions.
    pub sessions: SessionTable,
    /// The address each portal id is actually listening on (port 0 resolved).
    pub bound: Mutex<BTreeMap<u16, SocketAddr>>,
    /// Connections currently open.
    pub connections: AtomicUsize,
    /// Data-plane-wide counters.
    pub counters: crate::metrics::Counters,
    /// Timers an operator may tune.
    pub tuning: Tuning,
    /// CPUs the runtime threads were pinned to at start (empty: not pinned).
    pub pinned_cpus: Vec<u32>,
    /// Generation of the installed snapshot; read it with [`Shared::generation`], set only
    /// by [`Shared::install`].
    pub installed_generation: std::sync::atomic::AtomicU64,
    /// The data buffer pools, one per NUMA node (one unbound pool with NUMA off), built
    /// from the first config applied and kept for the process's life: their memory is
    /// mapped, bound and touched once, and logical units hold handles into them.
    pub pools: std::sync::OnceLock<Arc<crate::numa::NumaPools>>,
}

/// Connection timers (defaults from `limits`).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Silence on a full-feature connection before a NOP-In ping.
    pub nop_in_interval: std::time::Duration,
    /// How long a ping may stay unanswered before the connection is dropped.
    pub nop_in_timeout: std::time::Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            nop_in_interval: std::time::Duration::from_secs(crate::limits::NOP_IN_INTERVAL_SECS),
            nop_in_timeout: std::time::Duration::from_secs(crate::limits::NOP_IN_TIMEOUT_SECS),
        }
    }
}

impl Shared {
    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs a new snapshot.
    pub fn install(&self, snap: Snapshot) {
        let generation = snap.generation;
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snap);
        // Published after the swap: a connection that sees the new number finds the new
        // snapshot.
        self.installed_generation
            .store(generation, std::sync::atomic::Ordering::Release);
    }

    /// Generation of the installed snapshot; one atomic load, checked per command.
    pub fn generation(&self) -> u64 {
        self.installed_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The bound address of a portal id.
    pub fn bound_addr(&self, portal: u16) -> Option<SocketAddr> {
        self.bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&portal)
            .copied()
    }
}
