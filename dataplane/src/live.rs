//! The live configuration the fast path reads: an immutable snapshot of targets, their
//! logical units and portal groups, swapped whole when the configuration changes.
//!
//! [`Shared`] is what every listener and connection holds. Its fields are private: the fast
//! path reads through methods, and what configuration code may change (the snapshot, the
//! bound portal addresses, the buffer pools) is reachable only through the one [`Writer`]
//! that [`Shared::new`] hands out, which start-up gives to `control`. So "only `control`
//! changes configuration" is a property of the types, not a convention.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::login::throttle::Throttle;
use crate::login::ChapPolicy;
use crate::lu;
use crate::metrics::Counters;
use crate::numa::{NodeRuntimes, NumaPools};
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

/// The copy scope of the data plane ([`lu::CopyScope`]): an EXTENDED COPY may name the
/// logical units of every target the initiator has a logged-in session with now (the rule
/// and why: `crate::lu`'s `xcopy` module). Holds the live state weakly, because the
/// targets it is given to are themselves held by that state.
#[derive(Debug)]
pub struct PlaneCopyScope(std::sync::Weak<Shared>);

impl PlaneCopyScope {
    /// The copy scope over `shared`'s snapshot and sessions.
    pub fn new(shared: &Arc<Shared>) -> Self {
        Self(Arc::downgrade(shared))
    }
}

impl lu::CopyScope for PlaneCopyScope {
    fn reachable_targets(&self, own: &str, initiator: &str) -> Vec<Arc<lu::Target>> {
        let Some(shared) = self.0.upgrade() else {
            return Vec::new();
        };
        let sessions = shared.sessions().list();
        let snapshot = shared.current();
        snapshot
            .targets
            .values()
            .filter(|t| t.name != own)
            .filter(|t| {
                sessions
                    .iter()
                    .any(|s| s.target == t.name && s.initiator.eq_ignore_ascii_case(initiator))
            })
            .map(|t| Arc::clone(&t.scsi))
            .collect()
    }
}

/// Who may log in to one target: its initiator ACL and the CHAP credentials it requires.
/// Kept apart from [`TargetEntry`] so that changing credentials never rebuilds the SCSI side.
#[derive(Debug, Default)]
pub struct TargetAccess {
    /// Initiator names allowed (lowercase); `None` allows every initiator.
    pub initiators: Option<Vec<String>>,
    /// Source networks allowed; `None` allows every address.
    pub networks: Option<Vec<tgt_proto::Cidr>>,
    /// CHAP credentials logins must present; `None` means no authentication.
    pub chap: Option<Arc<ChapPolicy>>,
}

impl TargetAccess {
    /// Whether `initiator`, connecting from `source`, passes the ACL. iSCSI names compare
    /// case-insensitively (RFC 7143 §4.2.7.2).
    pub fn allows(&self, initiator: &str, source: IpAddr) -> bool {
        let name_ok = self.initiators.as_ref().is_none_or(|names| {
            let lower = initiator.to_ascii_lowercase();
            names.contains(&lower)
        });
        let net_ok = self
            .networks
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|c| c.contains(source)));
        name_ok && net_ok
    }

    /// Whether neither an ACL nor CHAP protects the target: any host that reaches a portal
    /// may log in.
    pub fn is_open(&self) -> bool {
        self.initiators.is_none() && self.networks.is_none() && self.chap.is_none()
    }
}

impl TargetAccess {
    /// The live form of a validated target's access rules.
    pub fn from_valid(a: &tgt_proto::ValidAccess) -> Self {
        Self {
            initiators: a.initiators().map(<[String]>::to_vec),
            networks: a.networks().map(<[tgt_proto::Cidr]>::to_vec),
            chap: a.chap().map(|c| Arc::new(chap_policy(c))),
        }
    }
}

/// The login state machine's form of validated CHAP credentials.
pub fn chap_policy(c: &tgt_proto::ValidChap) -> ChapPolicy {
    use crate::login::ChapAlgorithm;
    use tgt_proto::ChapAlgorithmName as N;
    ChapPolicy {
        username: c.username().to_string(),
        secret: c.secret().as_bytes().to_vec(),
        mutual: c
            .mutual()
            .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec())),
        algorithms: c
            .algorithms()
            .iter()
            .map(|a| match a {
                N::Md5 => ChapAlgorithm::Md5,
                N::Sha1 => ChapAlgorithm::Sha1,
                N::Sha256 => ChapAlgorithm::Sha256,
                N::Sha3_256 => ChapAlgorithm::Sha3_256,
            })
            .collect(),
    }
}

/// Everything a connection needs to know about the configuration, at one generation.
#[derive(Default)]
pub struct Snapshot {
    /// Targets by name.
    pub targets: BTreeMap<String, Arc<TargetEntry>>,
    /// Access rules by target name; a target missing here is open.
    pub access: BTreeMap<String, TargetAccess>,
    /// CHAP credentials discovery sessions must present; `None` means none.
    pub discovery_chap: Option<Arc<ChapPolicy>>,
    /// Generation of the configuration this snapshot was built from.
    pub generation: u64,
}

/// What the data plane fixes at start and never changes: the settings [`Shared::new`] takes.
#[derive(Default)]
pub struct Settings {
    /// Timers an operator may tune.
    pub tuning: Tuning,
    /// CPUs the runtime threads were pinned to at start (empty: not pinned).
    pub pinned_cpus: Vec<u32>,
    /// Per-node runtimes that accepted connections are placed on (worker CPUs on two or
    /// more nodes); `None` runs every connection on the current runtime.
    pub placement: Option<Arc<NodeRuntimes>>,
    /// Where the NUMA topology is read (`--numa-sysfs-root`); `None` is `/`.
    pub numa_sysfs_root: Option<PathBuf>,
}

/// State shared by every listener and connection of the data plane.
pub struct Shared {
    /// The current snapshot; replaced as a whole, never edited in place.
    snapshot: RwLock<Arc<Snapshot>>,
    /// Generation of the installed snapshot; set only by [`Writer::install`].
    installed_generation: AtomicU64,
    /// Live sessions.
    sessions: SessionTable,
    /// The address each portal id is actually listening on (port 0 resolved).
    bound: Mutex<BTreeMap<u16, SocketAddr>>,
    /// Connections currently open, each held by a [`ConnectionPermit`].
    connections: Arc<AtomicUsize>,
    /// Data-plane-wide counters.
    counters: Counters,
    /// Failed logins per source address and the lockouts they caused.
    login_throttle: Mutex<Throttle>,
    /// The origin of [`Shared::monotonic`].
    origin: std::time::Instant,
    /// The data buffer pools, one per NUMA node (one unbound pool with NUMA off), built
    /// from the first config applied and kept for the process's life: their memory is
    /// mapped, bound and touched once, and logical units hold handles into them.
    pools: OnceLock<Arc<NumaPools>>,
    /// Open connections per portal id; see [`Shared::portal_connections`]. Entries are
    /// never removed: portal ids are few and an id may come back.
    portal_gauges: Mutex<BTreeMap<u16, Arc<AtomicU64>>>,
    /// Fixed at start.
    settings: Settings,
}

/// The one handle that changes [`Shared`]: installs snapshots, records bound portal
/// addresses and sets the buffer pools.
///
/// [`Shared::new`] returns exactly one; start-up hands it to `control::Controller`. It is
/// neither `Clone` nor constructible elsewhere, so code holding only an `Arc<Shared>` (the
/// accept loops, connections) can read the configuration but not change it.
pub struct Writer {
    shared: Arc<Shared>,
}

/// One open connection, counted in [`Shared::connection_count`] until dropped.
///
/// The accept loop takes it with [`Shared::admit_connection`] and moves it into the
/// connection's task, so the count drops when that task ends however it ends: a normal
/// close, a socket that fails before the connection starts, a failed move to a NUMA node's
/// runtime, an aborted task or a panic.
#[must_use = "the connection is counted only while the permit lives"]
pub struct ConnectionPermit(Arc<AtomicUsize>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes one of `max` slots counted in `open`, or `None` when all are taken.
fn acquire(open: &Arc<AtomicUsize>, max: usize) -> Option<ConnectionPermit> {
    open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < max).then_some(n + 1)
    })
    .ok()
    .map(|_| ConnectionPermit(Arc::clone(open)))
}

/// The connections one portal listener accepted that are still open, so that removing
/// the portal can close them.
///
/// Each holds a duplicate descriptor of its connection's socket. Closing a portal shuts
/// those sockets down (`shutdown(2)`, both directions): the connection's next read sees the
/// end of the stream and it ends through its usual path (running commands finish, the
/// session is forgotten, the LU is told the nexus is gone), and the initiator sees the
/// connection close as it would if the target went away (RFC 7143 §6: it may log in again
/// through a portal that still exists). No connection code knows about portals being
/// removed.
#[derive(Default)]
pub struct PortalSockets {
    inner: Mutex<SocketSet>,
}

#[derive(Default)]
struct SocketSet {
    /// Set by [`PortalSockets::close_all`]; a connection registered later (accepted just
    /// before the listener stopped) is shut down at once.
    closed: bool,
    next_key: u64,
    open: std::collections::HashMap<u64, std::net::TcpStream>,
}

impl PortalSockets {
    fn set(&self) -> std::sync::MutexGuard<'_, SocketSet> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shuts down every open connection of the portal, and any registered from now on;
    /// returns how many were open.
    pub fn close_all(&self) -> usize {
        let mut set = self.set();
        set.closed = true;
        for s in set.open.values() {
            // A socket the peer already closed answers ENOTCONN: nothing left to close.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        set.open.len()
    }

    /// Connections registered and not yet ended.
    pub fn open_count(&self) -> usize {
        self.set().open.len()
    }
}

/// One open connection of a portal until dropped: counted in the portal's gauge and
/// registered in its [`PortalSockets`].
///
/// The accept loop creates it for each accepted connection and moves it into the
/// connection's task, so the count drops, and the registration ends, when that task ends
/// however it ends.
pub struct PortalConnection {
    gauge: Arc<AtomicU64>,
    sockets: Arc<PortalSockets>,
    key: u64,
}

impl PortalConnection {
    /// Counts a connection in `gauge` (from [`Shared::portal_connections`]) and registers
    /// its socket in `sockets`; fails only when the socket's descriptor cannot be
    /// duplicated (the process is out of descriptors).
    pub fn open(
        gauge: &Arc<AtomicU64>,
        sockets: &Arc<PortalSockets>,
        stream: &impl std::os::fd::AsFd,
    ) -> std::io::Result<Self> {
        let dup = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
        let mut set = sockets.set();
        if set.closed {
            let _ = dup.shutdown(std::net::Shutdown::Both);
        }
        let key = set.next_key;
        set.next_key += 1;
        set.open.insert(key, dup);
        drop(set);
        gauge.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            gauge: Arc::clone(gauge),
            sockets: Arc::clone(sockets),
            key,
        })
    }
}

impl Drop for PortalConnection {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
        // Closes the duplicate descriptor; the connection's own one is already gone.
        self.sockets.set().open.remove(&self.key);
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
    /// Empty live state (generation 0, no targets) with `settings`, and the one [`Writer`]
    /// that may change it.
    pub fn new(settings: Settings) -> (Arc<Self>, Writer) {
        let shared = Arc::new(Self {
            snapshot: RwLock::default(),
            installed_generation: AtomicU64::new(0),
            sessions: SessionTable::default(),
            bound: Mutex::default(),
            connections: Arc::default(),
            counters: Counters::default(),
            login_throttle: Mutex::new(Throttle::default()),
            origin: std::time::Instant::now(),
            pools: OnceLock::new(),
            portal_gauges: Mutex::default(),
            settings,
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
        };
        (shared, writer)
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Generation of the installed snapshot; one atomic load, checked per command.
    pub fn generation(&self) -> u64 {
        self.installed_generation.load(Ordering::Acquire)
    }

    /// The live sessions.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Monotonic time since this data plane started: the clock the pure login throttle is
    /// given.
    pub fn monotonic(&self) -> std::time::Duration {
        self.origin.elapsed()
    }

    /// Failed-login counts and lockouts by source address; locked briefly, once per login.
    pub fn login_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // A panic while holding the lock cannot leave the table half-updated in a way
        // that matters (counts only), so a poisoned lock is used as is.
        self.login_throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Data-plane-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connection timers.
    pub fn tuning(&self) -> Tuning {
        self.settings.tuning
    }

    /// CPUs the runtime threads were pinned to at start (empty: not pinned).
    pub fn pinned_cpus(&self) -> &[u32] {
        &self.settings.pinned_cpus
    }

    /// Per-node runtimes to place accepted connections on, if any.
    pub fn placement(&self) -> Option<&Arc<NodeRuntimes>> {
        self.settings.placement.as_ref()
    }

    /// Where the NUMA topology is read; `None` is `/`.
    pub fn numa_sysfs_root(&self) -> Option<&Path> {
        self.settings.numa_sysfs_root.as_deref()
    }

    /// The data buffer pools, once the first config with logical units built them.
    pub fn pools(&self) -> Option<&Arc<NumaPools>> {
        self.pools.get()
    }

    /// Counts a new connection, or refuses it (`None`) when
    /// [`CONNECTIONS_MAX`](crate::limits::CONNECTIONS_MAX) are open.
    pub fn admit_connection(&self) -> Option<ConnectionPermit> {
        acquire(&self.connections, crate::limits::CONNECTIONS_MAX)
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
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
        self.bound_map().get(&portal).copied()
    }

    /// Every bound portal, ascending by id: its id and the address it listens on.
    pub fn bound_portals(&self) -> Vec<(u16, SocketAddr)> {
        self.bound_map().iter().map(|(id, a)| (*id, *a)).collect()
    }

    fn bound_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, SocketAddr>> {
        self.bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Writer {
    /// The live state this writer changes.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Installs a new snapshot.
    pub fn install(&self, snap: Snapshot) {
        let generation = snap.generation;
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snap);
        // Published after the swap: a connection that sees the new number finds the new
        // snapshot.
        self.shared
            .installed_generation
            .store(generation, Ordering::Release);
    }

    /// Records that portal `id` listens on `addr`.
    pub fn set_bound(&self, id: u16, addr: SocketAddr) {
        self.shared.bound_map().insert(id, addr);
    }

    /// Forgets the bound address of every portal `keep` says no to.
    pub fn retain_bound(&self, mut keep: impl FnMut(u16) -> bool) {
        self.shared.bound_map().retain(|id, _| keep(*id));
    }

    /// Sets the buffer pools; `false` (and `pools` dropped) when they were set already.
    pub fn set_pools(&self, pools: Arc<NumaPools>) -> bool {
        self.shared.pools.set(pools).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_scope_offers_the_other_targets_the_initiator_has_sessions_with() {
        use crate::lu::CopyScope;
        let (shared, writer) = Shared::new(Settings::default());
        let entry = |name: &str| {
            Arc::new(TargetEntry {
                name: name.to_string(),
                scsi: Arc::new(lu::Target::new(name, Vec::new())),
                tpgs: BTreeMap::new(),
            })
        };
        let mut snap = Snapshot::default();
        for name in ["iqn.t:a", "iqn.t:b", "iqn.t:c"] {
            snap.targets.insert(name.to_string(), entry(name));
        }
        writer.install(snap);
        let scope = PlaneCopyScope::new(&shared);
        let names = |own: &str, initiator: &str| -> Vec<String> {
            scope
                .reachable_targets(own, initiator)
                .iter()
                .map(|t| t.name().to_string())
                .collect()
        };
        assert!(names("iqn.t:a", "iqn.i:host").is_empty(), "no sessions");
        let sessions = shared.sessions();
        let (a, _ka) = sessions
            .register(
                "iqn.i:host",
                [1; 6],
                "iqn.t:a",
                String::new(),
                String::new(),
            )
            .unwrap();
        let (b, _kb) = sessions
            .register(
                "iqn.i:host",
                [2; 6],
                "iqn.t:b",
                String::new(),
                String::new(),
            )
            .unwrap();
        let (_c, _kc) = sessions
            .register(
                "iqn.i:other",
                [3; 6],
                "iqn.t:c",
                String::new(),
                String::new(),
            )
            .unwrap();
        // The own target is never offered; a session of another initiator is no ticket.
        assert_eq!(names("iqn.t:a", "iqn.i:host"), ["iqn.t:b"]);
        assert_eq!(
            names("iqn.t:a", "IQN.I:HOST"),
            ["iqn.t:b"],
            "names ignore case"
        );
        assert_eq!(names("iqn.t:b", "iqn.i:host"), ["iqn.t:a"]);
        assert!(names("iqn.t:c", "iqn.i:nobody").is_empty());
        sessions.remove(b.tsih, b.nexus_id);
        assert!(names("iqn.t:a", "iqn.i:host").is_empty(), "session ended");
        sessions.remove(a.tsih, a.nexus_id);
        // Once the live state is gone nothing is reachable (the scope holds it weakly).
        drop((shared, writer));
        assert!(scope.reachable_targets("iqn.t:a", "iqn.i:host").is_empty());
    }

    #[test]
    fn permits_are_bounded_and_each_drop_frees_one_slot() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = acquire(&open, 2).unwrap();
        let b = acquire(&open, 2).unwrap();
        assert!(
            acquire(&open, 2).is_none(),
            "a third permit over a limit of 2"
        );
        assert_eq!(open.load(Ordering::Relaxed), 2, "a refusal counts nothing");
        drop(a);
        assert_eq!(open.load(Ordering::Relaxed), 1);
        let c = acquire(&open, 2).unwrap();
        drop((b, c));
        assert_eq!(open.load(Ordering::Relaxed), 0);
    }

    /// Every way a connection's task can end gives its permit back: it returns (a normal
    /// close, or `conn::serve` returning early because `local_addr` failed), it panics, or
    /// it is aborted (portal removed, runtime shut down) while it waits.
    #[test]
    fn a_permit_is_released_on_every_path_out_of_the_connection_task() {
        let (shared, _writer) = Shared::new(Settings::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let moved_out = shared.admit_connection().unwrap();
        rt.block_on(async {
            let returns = shared.admit_connection().unwrap();
            let panics = shared.admit_connection().unwrap();
            let aborted = shared.admit_connection().unwrap();
            assert_eq!(shared.connection_count(), 4);
            tokio::spawn(async move {
                let _permit = returns;
            })
            .await
            .unwrap();
            assert_eq!(shared.connection_count(), 3, "task returned");
            let r = tokio::spawn(async move {
                let _permit = panics;
                panic!("connection task panics");
            })
            .await;
            assert!(r.unwrap_err().is_panic());
            assert_eq!(shared.connection_count(), 2, "task panicked");
            let t = tokio::spawn(async move {
                let _permit = aborted;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            t.abort();
            assert!(t.await.unwrap_err().is_cancelled());
            assert_eq!(shared.connection_count(), 1, "task aborted");
        });
        // A task never polled (its runtime shut down first, as a NUMA node's runtime is at
        // exit) drops its permit too.
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        other.spawn(async move {
            let _permit = moved_out;
        });
        drop(other);
        assert_eq!(shared.connection_count(), 0, "task never run");
    }

    #[test]
    fn the_connection_limit_is_connections_max() {
        let (shared, _writer) = Shared::new(Settings::default());
        let permits: Vec<ConnectionPermit> = (0..crate::limits::CONNECTIONS_MAX)
            .map(|_| shared.admit_connection().unwrap())
            .collect();
        assert!(shared.admit_connection().is_none());
        drop(permits);
        assert_eq!(shared.connection_count(), 0);
        assert!(shared.admit_connection().is_some());
    }

    /// Closing a portal's sockets ends the connections it accepted (their reads see the end
    /// of the stream) and one registered afterwards; another portal's connection is not
    /// touched, and a connection that ends on its own leaves the set.
    #[test]
    fn closing_a_portal_shuts_down_only_its_connections() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pair = || {
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            (client, server)
        };
        let gauge = Arc::new(AtomicU64::new(0));
        let (removed, kept) = (
            Arc::new(PortalSockets::default()),
            Arc::new(PortalSockets::default()),
        );
        let (mut c1, s1) = pair();
        let (mut c2, s2) = pair();
        let (c3, s3) = pair();
        let r1 = PortalConnection::open(&gauge, &removed, &s1).unwrap();
        let k2 = PortalConnection::open(&gauge, &kept, &s2).unwrap();
        let r3 = PortalConnection::open(&gauge, &removed, &s3).unwrap();
        assert_eq!(gauge.load(Ordering::Relaxed), 3);
        // The third connection ends by itself before the portal goes.
        drop((r3, s3, c3));
        assert_eq!(removed.open_count(), 1);
        assert_eq!(removed.close_all(), 1);
        let mut buf = [0u8; 1];
        assert_eq!(c1.read(&mut buf).unwrap(), 0, "the client sees the close");
        let mut s1_read = s1.try_clone().unwrap();
        assert_eq!(
            s1_read.read(&mut buf).unwrap(),
            0,
            "the server side reads EOF"
        );
        // The other portal's connection still carries data.
        let mut s2w = s2.try_clone().unwrap();
        std::io::Write::write_all(&mut s2w, b"x").unwrap();
        assert_eq!(c2.read(&mut buf).unwrap(), 1);
        // Accepted just before the listener stopped: closed as it registers.
        let (mut c4, s4) = pair();
        let r4 = PortalConnection::open(&gauge, &removed, &s4).unwrap();
        assert_eq!(c4.read(&mut buf).unwrap(), 0);
        drop((r1, r4, k2));
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        assert_eq!(removed.open_count(), 0);
        assert_eq!(kept.open_count(), 0);
    }
}
