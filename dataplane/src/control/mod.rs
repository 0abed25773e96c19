//! Configuration changes at run time: the only code that replaces the live snapshot after
//! start-up, and the Unix control socket ([`server`]) the control plane talks to.
//!
//! [`Controller::apply`] takes a whole desired config with a generation number, validates
//! it again (the socket is a trust boundary), diffs it against what is running and
//! applies the difference:
//!
//! * a logical unit whose target, LUN and resolved storage settings did not change keeps
//!   its `Arc<LogicalUnit>`, so running sessions and their reservations are undisturbed;
//! * a storage whose `size` alone changed is an online resize: its logical units stay, the
//!   medium grows in place and every nexus is told CAPACITY DATA HAS CHANGED
//!   (`LogicalUnit::grow_to`). A size below the medium's is refused with
//!   [`Refusal::StorageShrink`] before anything happens. The grows are the last step that
//!   can fail; one that fails refuses the change, while media already grown by the same
//!   change stay grown (a file is never shrunk) and the next apply of that size finds
//!   nothing left to do;
//!   a target whose LUN map and portal groups did not change keeps its `Arc<TargetEntry>`;
//! * new logical units are opened before anything is installed, so a storage that cannot
//!   be opened refuses the whole change and nothing moves;
//! * a session takes the target's new LUN map at its next command (`conn`): a LUN added
//!   becomes reachable, a LUN removed answers LOGICAL UNIT NOT SUPPORTED, and the session
//!   gets REPORTED LUNS DATA HAS CHANGED (`scsi::ua`); commands already running keep the
//!   logical unit they started on, so removing a LUN under I/O loses nothing. Removing a
//!   target with sessions logged in is refused with [`Refusal::TargetBusy`];
//! * new portals are bound before the snapshot is installed (a bind failure refuses the
//!   change); a removed (or re-addressed) portal stops accepting and the connections it
//!   accepted are closed (`live::PortalSockets`): their sessions end as if the network had
//!   dropped, and an initiator with another path logs in again there;
//! * the new snapshot is installed with one pointer swap.
//!
//! Applies are serialised by one async mutex; the fast path never waits for it.

pub mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tgt_proto::socket::{
    ConnectionInfo, LunStatus, PortalStats, PortalStatus, Refusal, Response, SessionInfo, Stats,
    Status, TargetStatus,
};
use tgt_proto::{Config, ValidConfig, ValidStorage};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::live::{PortalSockets, Shared, Snapshot, TargetEntry, Writer};
use crate::lu::{self, LogicalUnit, LuConfig};
use crate::numa::NumaPools;

/// A listening portal and the task accepting on it; dropping it stops accepting.
struct PortalListener {
    /// The address as configured (port 0 stays 0), compared on the next apply.
    configured: SocketAddr,
    task: tokio::task::AbortHandle,
    /// The connections it accepted, closed when the portal is removed.
    sockets: Arc<PortalSockets>,
}

impl Drop for PortalListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One logical unit as applied: the settings it was opened with and the unit itself.
struct AppliedLu {
    storage: ValidStorage,
    unit: Arc<LogicalUnit>,
}

#[derive(Default)]
struct Applied {
    generation: u64,
    config: Option<ValidConfig>,
    /// Keyed by (target name, LUN).
    lus: BTreeMap<(String, u16), AppliedLu>,
    listeners: BTreeMap<u16, PortalListener>,
}

/// Owns the running configuration of a data plane and changes it.
pub struct Controller {
    /// The one handle that changes the live state (see [`crate::live::Writer`]).
    live: Writer,
    /// The machine's NUMA topology, read once at start for status.
    numa_nodes: Vec<tgt_proto::socket::NumaNodeStatus>,
    started: Instant,
    state: tokio::sync::Mutex<Applied>,
}

/// What an apply opened but has not installed yet.
struct Prepared {
    lus: BTreeMap<(String, u16), AppliedLu>,
    new_listeners: Vec<(u16, SocketAddr, TcpListener)>,
    /// Logical units kept open whose target port groups or access states change: applied
    /// at install, so a refused config changes no state.
    port_groups: Vec<(Arc<LogicalUnit>, crate::scsi::alua::PortGroups)>,
}

/// A logical unit kept across a change of its storage's `size`: grow it to `size_bytes`.
struct Grow {
    device_id: u64,
    key: (String, u16),
    unit: Arc<LogicalUnit>,
    size_bytes: u64,
}

impl Controller {
    /// A controller serving nothing yet (generation 0), changing the live state through
    /// `live`.
    pub fn new(live: Writer) -> Self {
        // The same root the pools and the binary read (`--numa-sysfs-root`), so status shows
        // the topology the data plane runs on. A topology that cannot be read is reported as
        // no nodes rather than failing start-up.
        let root = live
            .shared()
            .numa_sysfs_root()
            .unwrap_or(std::path::Path::new("/"));
        let numa_nodes = match crate::numa::Topology::from_sysfs(root) {
            Ok(t) => t
                .nodes()
                .iter()
                .map(|n| tgt_proto::socket::NumaNodeStatus {
                    id: n.id,
                    cpus: n.cpus.clone(),
                    mem_total_bytes: n.mem_total_bytes,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the NUMA topology for status");
                Vec::new()
            }
        };
        Self {
            live,
            numa_nodes,
            started: Instant::now(),
            state: tokio::sync::Mutex::new(Applied::default()),
        }
    }

    /// The state shared with the connections.
    pub fn shared(&self) -> &Arc<Shared> {
        self.live.shared()
    }

    /// Generation of the config now applied (0 before the first).
    pub async fn generation(&self) -> u64 {
        self.state.lock().await.generation
    }

    /// The config now applied, if any.
    pub async fn config(&self) -> Option<Config> {
        self.state
            .lock()
            .await
            .config
            .as_ref()
            .map(|c| c.as_config().clone())
    }

    /// Stops accepting on every portal (connections already accepted are not touched).
    pub async fn stop_listening(&self) {
        self.state.lock().await.listeners.clear();
    }

    /// Validates `config` and makes it live as `generation`; answers with
    /// [`Response::Applied`] or [`Response::Refused`] (and then nothing changed).
    pub async fn apply(&self, generation: u64, config: Config) -> Response {
        match self.try_apply(generation, config).await {
            Ok(()) => Response::Applied { generation },
            Err(reason) => {
                warn!(generation, %reason, "config refused");
                Response::Refused { reason }
            }
        }
    }

    /// Applies an already validated config (the start-up `--config` file).
    pub async fn apply_valid(&self, generation: u64, cfg: ValidConfig) -> Result<(), Refusal> {
        let mut st = self.state.lock().await;
        if generation <= st.generation {
            return Err(Refusal::StaleGeneration {
                current: st.generation,
                requested: generation,
            });
        }
        self.check_busy(&cfg)?;
        let prepared = self.prepare(&st, &cfg).await?;
        self.install(&mut st, generation, cfg, prepared);
        Ok(())
    }

    async fn try_apply(&self, generation: u64, config: Config) -> Result<(), Refusal> {
        let cfg = config
            .validate()
            .map_err(|e| Refusal::Invalid { errors: e.errors })?;
        self.apply_valid(generation, cfg).await
    }

    /// Refuses a change that would pull a target from under a logged-in session.
    ///
    /// Removing or replacing a LUN is always allowed: connections pick up the new LUN map at
    /// their next command, and commands already running hold the logical unit they started
    /// on until they finish, so nothing in flight is lost.
    fn check_busy(&self, cfg: &ValidConfig) -> Result<(), Refusal> {
        let snap = self.shared().current();
        let sessions = self.shared().sessions().list();
        for name in snap.targets.keys() {
            // A connection holds an older target entry until its next command, so count
            // sessions by target name in the session table, not references to the entry.
            let logged_in = sessions.iter().any(|s| &s.target == name);
            if cfg.target(name).is_none() && logged_in {
                return Err(Refusal::TargetBusy {
                    target: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The data buffer pools, built from the first config that reaches this data plane.
    ///
    /// They are sized once: a later change of `numaBufferPoolSize`, `numaBufferSize` or
    /// `enableNUMA` is logged and takes effect at the next start, because live LUs and
    /// in-flight commands hold buffers of the pools in place.
    async fn pools(&self, cfg: &ValidConfig) -> Result<Arc<NumaPools>, Refusal> {
        if let Some(p) = self.shared().pools() {
            let perf = cfg.performance();
            let want = (
                usize::try_from(perf.numa_buffer_pool_size()).unwrap_or(usize::MAX),
                usize::try_from(perf.numa_buffer_size_bytes()).unwrap_or(usize::MAX),
            );
            let have = p
                .pools()
                .first()
                .map(|b| (b.stats().capacity, b.buf_size_bytes()));
            if have.is_some_and(|h| h != want) {
                warn!(
                    pool_size = want.0,
                    buffer_bytes = want.1,
                    "buffer pool settings changed: they take effect at the next start"
                );
            }
            return Ok(p.clone());
        }
        let owned = cfg.clone();
        let root = self
            .shared()
            .numa_sysfs_root()
            .map(std::path::Path::to_path_buf);
        let built =
            tokio::task::spawn_blocking(move || crate::numa::build_pools(&owned, root.as_deref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|message| Refusal::StorageUnavailable {
                    device_id: 0,
                    message,
                })?;
        let built = Arc::new(built);
        // io_uring rings register the pools as fixed buffers (first pools of the process
        // only; they then live as long as the process).
        crate::io::uring::register_fixed_regions(
            &built.memory_regions(),
            Box::new(Arc::clone(&built)),
        );
        // Two applies never race here (the controller serialises them), so this is the
        // only `set`; a lost race would just drop the spare pools.
        let _ = self.live.set_pools(built);
        self.shared()
            .pools()
            .cloned()
            .ok_or_else(|| Refusal::StorageUnavailable {
                device_id: 0,
                message: "buffer pools missing".to_string(),
            })
    }

    /// Opens the logical units and binds the portals the new config adds.
    async fn prepare(&self, st: &Applied, cfg: &ValidConfig) -> Result<Prepared, Refusal> {
        let mut lus = BTreeMap::new();
        let mut to_open = Vec::new();
        let mut grows = Vec::new();
        let mut port_groups = Vec::new();
        // This gateway's own target port group and relative port are part of every unit's
        // identity (INQUIRY, VPD 83h): when they change the units are reopened. Peers and
        // access states change on the open units.
        let same_port = st.config.as_ref().is_none_or(|old| {
            old.alua().target_port_group() == cfg.alua().target_port_group()
                && old.alua().relative_target_port() == cfg.alua().relative_target_port()
        });
        for t in cfg.targets() {
            for (lun, storage) in t.luns() {
                let key = (t.name().to_string(), lun);
                match st.lus.get(&key) {
                    Some(old) if same_port && old.storage.same_but_live_settings(storage) => {
                        let groups = lu::port_groups(cfg.alua(), storage);
                        if old.unit.port_groups() != groups {
                            port_groups.push((old.unit.clone(), groups));
                        }
                        // A size that did not change is not checked: an existing file
                        // larger than the configured size keeps its own.
                        match storage.size_bytes() {
                            Some(size_bytes) if old.storage.size_bytes() != Some(size_bytes) => {
                                let grow = Grow {
                                    device_id: storage.device_id(),
                                    key: key.clone(),
                                    unit: old.unit.clone(),
                                    size_bytes,
                                };
                                check_no_shrink(&grow)?;
                                grows.push(grow);
                            }
                            _ => {}
                        }
                        lus.insert(
                            key,
                            AppliedLu {
                                storage: storage.clone(),
                                unit: old.unit.clone(),
                            },
                        );
                    }
                    _ => to_open.push((key, storage.clone())),
                }
            }
        }
        // A data plane without LUs (started empty, waiting for its config) maps no pools yet.
        let pools = match to_open.is_empty() {
            true => None,
            false => Some(self.pools(cfg).await?),
        };
        let alua = cfg.alua().clone();
        // Opening may create and size files: keep it off the network threads.
        let opened = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(to_open.len());
            let Some(pools) = pools else {
                return Ok(out);
            };
            for ((target, lun), storage) in to_open {
                let lc = LuConfig::from_storage(&target, lun, &storage, &alua, &pools);
                match LogicalUnit::open(&lc) {
                    Ok(unit) => out.push(((target, lun), storage, unit)),
                    Err(e) => {
                        return Err(Refusal::StorageUnavailable {
                            device_id: storage.device_id(),
                            message: e.to_string(),
                        })
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Refusal::StorageUnavailable {
            device_id: 0,
            message: format!("open task failed: {e}"),
        })??;
        for ((target, lun), storage, unit) in opened {
            info!(
                target = %target,
                lun,
                device_id = storage.device_id(),
                backend = unit.active_backend(),
                "logical unit ready"
            );
            lus.insert(
                (target, lun),
                AppliedLu {
                    storage,
                    unit: Arc::new(unit),
                },
            );
        }
        let mut new_listeners = Vec::new();
        for (id, addr) in cfg.portals() {
            if st.listeners.get(&id).is_some_and(|l| l.configured == addr) {
                continue;
            }
            let refusal = |e: std::io::Error| Refusal::PortalUnavailable {
                id,
                address: addr.to_string(),
                message: e.to_string(),
            };
            let l = TcpListener::bind(addr).await.map_err(refusal)?;
            new_listeners.push((id, addr, l));
        }
        grow_all(grows).await?;
        Ok(Prepared {
            lus,
            new_listeners,
            port_groups,
        })
    }

    /// Installs a prepared config; cannot fail, so the swap is all or nothing.
    fn install(&self, st: &mut Applied, generation: u64, cfg: ValidConfig, p: Prepared) {
        let old = self.shared().current();
        let mut targets = BTreeMap::new();
        for t in cfg.targets() {
            let luns: Vec<(u16, Arc<LogicalUnit>)> = t
                .luns()
                .filter_map(|(lun, _)| {
                    p.lus
                        .get(&(t.name().to_string(), lun))
                        .map(|a| (lun, a.unit.clone()))
                })
                .collect();
            let tpgs: BTreeMap<u16, Vec<u16>> =
                t.tpgs().map(|(tag, ids)| (tag, ids.to_vec())).collect();
            let unchanged = old.targets.get(t.name()).filter(|e| {
                e.tpgs == tpgs
                    && luns.iter().all(|(lun, u)| {
                        e.scsi
                            .logical_unit(*lun)
                            .is_some_and(|old_u| Arc::ptr_eq(old_u, u))
                    })
                    && st
                        .lus
                        .range((t.name().to_string(), 0)..=(t.name().to_string(), u16::MAX))
                        .count()
                        == luns.len()
            });
            let entry = match unchanged {
                Some(e) => e.clone(),
                None => Arc::new(TargetEntry {
                    name: t.name().to_string(),
                    scsi: Arc::new(lu::Target::new(t.name(), luns).with_copy_scope(Arc::new(
                        crate::live::PlaneCopyScope::new(self.shared()),
                    ))),
                    tpgs,
                }),
            };
            targets.insert(t.name().to_string(), entry);
        }
        drop(old);
        for (unit, groups) in &p.port_groups {
            if unit.set_port_groups(groups) {
                info!(
                    lun = unit.lun(),
                    state = ?groups.local().state,
                    "asymmetric access states changed"
                );
            }
        }
        let access = cfg
            .targets()
            .map(|t| {
                let a = t.access();
                if a.is_open() {
                    // Never silently open (issue 11): say so at every apply.
                    warn!(
                        target = t.name(),
                        "target is open: no initiator ACL and no CHAP"
                    );
                }
                if a.chap().is_some_and(|c| c.has_short_secret()) {
                    warn!(target = t.name(), "CHAP secret shorter than 12 bytes");
                }
                (
                    t.name().to_string(),
                    crate::live::TargetAccess::from_valid(a),
                )
            })
            .collect();
        let discovery_chap = cfg
            .discovery_chap()
            .map(|c| Arc::new(crate::live::chap_policy(c)));
        self.live.install(Snapshot {
            targets,
            access,
            discovery_chap,
            generation,
        });
        st.lus = p.lus;
        // Portals: stop the removed or re-addressed ones and close what they accepted, then
        // start the new ones.
        let (kept, gone): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut st.listeners)
            .into_iter()
            .partition(|(id, l)| cfg.portal(*id).is_some_and(|a| a == l.configured));
        st.listeners = kept;
        self.live.retain_bound(|id| st.listeners.contains_key(&id));
        for (id, listener) in gone {
            let sockets = Arc::clone(&listener.sockets);
            // Stop accepting first; a connection accepted meanwhile is closed as it
            // registers.
            drop(listener);
            let closed = sockets.close_all();
            info!(
                portal = id,
                connections = closed,
                "portal removed: its connections closed"
            );
        }
        for (id, configured, l) in p.new_listeners {
            let Ok(bound) = l.local_addr() else {
                warn!(
                    portal = id,
                    "cannot read the bound address; portal not started"
                );
                continue;
            };
            info!(portal = id, %bound, "listening");
            self.live.set_bound(id, bound);
            let sockets = Arc::new(PortalSockets::default());
            let task = tokio::spawn(crate::accept::accept_loop(
                id,
                l,
                self.shared().clone(),
                Arc::clone(&sockets),
            ))
            .abort_handle();
            st.listeners.insert(
                id,
                PortalListener {
                    configured,
                    task,
                    sockets,
                },
            );
        }
        st.generation = generation;
        st.config = Some(cfg);
        info!(generation, "config generation applied");
    }

    /// The running state, for [`tgt_proto::socket::Request::GetStatus`].
    pub async fn status(&self) -> Status {
        let st = self.state.lock().await;
        let portals = self
            .bound_portals()
            .into_iter()
            .map(|(id, bound)| PortalStatus { id, bound })
            .collect();
        let mut targets: BTreeMap<&str, Vec<LunStatus>> = BTreeMap::new();
        if let Some(cfg) = &st.config {
            for t in cfg.targets() {
                targets.insert(t.name(), Vec::new());
            }
        }
        for ((target, lun), a) in &st.lus {
            targets.entry(target).or_default().push(LunStatus {
                lun: *lun,
                device_id: a.storage.device_id(),
                backend: a.storage.backend(),
                active_backend: a.unit.active_backend().to_string(),
                online: a.storage.online(),
                read_only: a.storage.read_only(),
                block_size: a.unit.block_size(),
                size_bytes: a
                    .unit
                    .capacity_blocks()
                    .saturating_mul(u64::from(a.unit.block_size())),
            });
        }
        let sessions = self.shared().sessions().list();
        Status {
            generation: st.generation,
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            portals,
            targets: targets
                .into_iter()
                .map(|(name, luns)| TargetStatus {
                    name: name.to_string(),
                    luns,
                })
                .collect(),
            session_count: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
            connection_count: u32::try_from(self.shared().connection_count()).unwrap_or(u32::MAX),
            numa_nodes: self.numa_nodes.clone(),
            pinned_cpus: self.shared().pinned_cpus().to_vec(),
        }
    }

    /// Counters and gauges, for [`tgt_proto::socket::Request::GetStats`].
    pub async fn stats(&self) -> Stats {
        use crate::metrics::get;
        let st = self.state.lock().await;
        let c = self.shared().counters();
        Stats {
            logins_total: get(&c.logins_total),
            login_failures_total: get(&c.login_failures_total),
            login_authentication_failures_total: get(&c.login_authentication_failures_total),
            login_authorization_failures_total: get(&c.login_authorization_failures_total),
            login_throttled_total: get(&c.login_throttled_total),
            login_lockouts_total: get(&c.login_lockouts_total),
            login_locked_sources: u64::try_from(
                self.shared()
                    .login_throttle()
                    .locked_sources(self.shared().monotonic()),
            )
            .unwrap_or(u64::MAX),
            digest_errors_total: get(&c.digest_errors_total),
            luns: st
                .lus
                .iter()
                .map(|((target, lun), applied)| applied.unit.counters().stats(target, *lun))
                .collect(),
            uring: crate::metrics::URING.stats(),
            portals: self.portal_stats(),
            numa_pools: self
                .shared()
                .pools()
                .map(|p| crate::metrics::numa_pool_stats(p))
                .unwrap_or_default(),
        }
    }

    /// Open connections and logged-in sessions of every portal listened on, and of removed
    /// portals that still have connections.
    fn portal_stats(&self) -> Vec<PortalStats> {
        let bound = self.bound_portals();
        let mut by_id: BTreeMap<u16, PortalStats> = bound
            .iter()
            .map(|(id, _)| {
                (
                    *id,
                    PortalStats {
                        id: *id,
                        connections: 0,
                        sessions: 0,
                    },
                )
            })
            .collect();
        for (id, n) in self.shared().portal_connection_counts() {
            if n > 0 || by_id.contains_key(&id) {
                by_id
                    .entry(id)
                    .or_insert(PortalStats {
                        id,
                        connections: 0,
                        sessions: 0,
                    })
                    .connections = n;
            }
        }
        for s in self.shared().sessions().list() {
            let portal = s
                .portal
                .parse()
                .ok()
                .and_then(|local| portal_of(&bound, local));
            if let Some(p) = portal.and_then(|id| by_id.get_mut(&id)) {
                p.sessions += 1;
            }
        }
        by_id.into_values().collect()
    }

    /// Every bound portal: its id and the address it listens on.
    fn bound_portals(&self) -> Vec<(u16, SocketAddr)> {
        self.shared().bound_portals()
    }

    /// The logged-in sessions, ascending by TSIH.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let bound = self.bound_portals();
        self.shared()
            .sessions()
            .list()
            .into_iter()
            .filter_map(|s| {
                let local: Option<SocketAddr> = s.portal.parse().ok();
                let peer: Option<SocketAddr> = s.peer.parse().ok();
                let portal_id = local.and_then(|l| portal_of(&bound, l));
                let digest = |on: bool| if on { "CRC32C" } else { "None" }.to_string();
                let d = s.details.clone();
                let connections = match (local, peer, &d) {
                    // MaxConnections is 1: the session's one connection.
                    (Some(local), Some(peer), Some(d)) => vec![ConnectionInfo {
                        cid: d.cid,
                        portal_id: portal_id.unwrap_or(0),
                        peer,
                        local,
                        header_digest: digest(d.header_digest),
                        data_digest: digest(d.data_digest),
                        max_send_data_segment_length: d.send_data_segment_bytes,
                        max_recv_data_segment_length: d.recv_data_segment_bytes,
                    }],
                    _ => Vec::new(),
                };
                let isid = s
                    .isid
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                // A session whose login has not recorded its parameters yet is not listed:
                // it is between the table entry and full feature phase.
                Some(SessionInfo {
                    tsih: s.tsih,
                    isid,
                    initiator_name: s.initiator,
                    target_name: (!s.target.is_empty()).then_some(s.target),
                    connections,
                    negotiated: d?.params,
                })
            })
            .collect()
    }

    /// Closes every connection of session `tsih`.
    pub fn close_session(&self, tsih: u16) -> Response {
        if self.shared().sessions().close(tsih) {
            info!(tsih, "session closed by the control plane");
            Response::SessionClosed { tsih }
        } else {
            Response::Refused {
                reason: Refusal::NoSuchSession { tsih },
            }
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: tgt_proto::socket::Request) -> Response {
        use tgt_proto::socket::Request;
        match req {
            Request::ApplyConfig { generation, config } => self.apply(generation, config).await,
            Request::GetStatus => Response::Status(self.status().await),
            Request::GetStats => Response::Stats(self.stats().await),
            Request::ListSessions => Response::Sessions {
                sessions: self.sessions(),
            },
            Request::CloseSession { tsih } => self.close_session(tsih),
        }
    }
}

/// Refuses a `size` below the size of the medium a kept logical unit serves now (an
/// offline unit has no medium and takes its size when it comes online).
fn check_no_shrink(g: &Grow) -> Result<(), Refusal> {
    let current_bytes = g
        .unit
        .capacity_blocks()
        .saturating_mul(u64::from(g.unit.block_size()));
    if g.size_bytes < current_bytes {
        return Err(Refusal::StorageShrink {
            device_id: g.device_id,
            size_bytes: g.size_bytes,
            current_bytes,
        });
    }
    Ok(())
}

/// Grows the media of `grows` off the network threads (extending a file is a blocking
/// call); each logical unit publishes its capacity and raises its unit attentions itself.
async fn grow_all(grows: Vec<Grow>) -> Result<(), Refusal> {
    if grows.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        for g in grows {
            let blocks = g
                .unit
                .grow_to(g.size_bytes)
                .map_err(|e| Refusal::StorageUnavailable {
                    device_id: g.device_id,
                    message: e.to_string(),
                })?;
            info!(
                target = %g.key.0,
                lun = g.key.1,
                device_id = g.device_id,
                blocks,
                "logical unit grown online"
            );
        }
        Ok(())
    })
    .await
    .map_err(|e| Refusal::StorageUnavailable {
        device_id: 0,
        message: format!("grow task failed: {e}"),
    })?
}

/// The id of the bound portal a connection with local address `local` arrived on: the one
/// bound to exactly that address, or a wildcard one on its port.
fn portal_of(bound: &[(u16, SocketAddr)], local: SocketAddr) -> Option<u16> {
    bound
        .iter()
        .find(|(_, b)| *b == local || (b.ip().is_unspecified() && b.port() == local.port()))
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests;
