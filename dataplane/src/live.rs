//! The live configuration the fast path reads: an immutable snapshot of targets, their
//! logical units and portal groups, swapped whole when the configuration changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Per-node runtimes that accepted connections are placed on (worker CPUs on two or
    /// more nodes); `None` runs every connection on the current runtime.
    pub placement: Option<Arc<crate::numa::NodeRuntimes>>,
    /// Where the NUMA topology is read (`--numa-sysfs-root`); `None` is `/`.
    pub numa_sysfs_root: Option<std::path::PathBuf>,
    /// Open connections per portal id; see [`Shared::portal_connections`]. Entries are
    /// never removed: portal ids are few and an id may come back.
    pub portal_gauges: Mutex<BTreeMap<u16, Arc<AtomicU64>>>,
}

/// Counts one open connection of a portal until dropped.
///
/// The accept loop creates it for each accepted connection and moves it into the
/// connection's task, so the count drops when that task ends however it ends.
pub struct PortalConnection(Arc<AtomicU64>);

impl PortalConnection {
    /// Counts a connection in `gauge` (from [`Shared::portal_connections`]).
    pub fn open(gauge: &Arc<AtomicU64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(gauge))
    }
}

impl Drop for PortalConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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

    /// The open-connections gauge of portal `id`, created at zero on first use. The accept
    /// loop looks it up once, not per connection.
    pub fn portal_connections(&self, id: u16) -> Arc<AtomicU64> {
        Arc::clone(
            self.portal_gauges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(id)
                .or_default(),
        )
    }

    /// Open connections per portal id, ascending, for every portal that ever accepted one
    /// or asked for its gauge.
    pub fn portal_connection_counts(&self) -> Vec<(u16, u64)> {
        self.portal_gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(id, n)| (*id, n.load(Ordering::Relaxed)))
            .collect()
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
