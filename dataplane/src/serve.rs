//! Start-up and the accept loops: opens every logical unit of a validated config, binds
//! every portal, and hands accepted connections to [`crate::conn::serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::control::server::ControlSocket;
use crate::control::Controller;
use crate::limits;
use crate::live::{PortalConnection, Shared};
use crate::lu::{self, LuConfig};
use crate::numa::pool::DIRECT_IO_ALIGN_BYTES;
use crate::numa::{BufferPool, NodeRuntimes, NumaPools, Topology};

/// What [`run`] serves.
pub struct RunOptions {
    /// The validated configuration to serve at once as generation 1 (`--config`); `None`
    /// starts empty and waits for the control plane.
    pub config: Option<tgt_proto::ValidConfig>,
    /// Where to listen for the control plane (`--control-socket`).
    pub control_socket: Option<PathBuf>,
    /// Where to write the pid, bound portal addresses and control socket once listening.
    pub ready_file: Option<PathBuf>,
    /// Called once with the bound portal addresses when every portal listens.
    pub on_ready: Option<ReadyHook>,
    /// Connection timers.
    pub tuning: crate::live::Tuning,
    /// CPUs the binary pinned the runtime threads to (reported in status).
    pub pinned_cpus: Vec<u32>,
    /// Per-node runtimes to place connections on (see `numa::runtimes`).
    pub placement: Option<Arc<NodeRuntimes>>,
    /// Where the NUMA topology is read; `None` is `/`.
    pub numa_sysfs_root: Option<PathBuf>,
}
/// A callback told the bound `(portal id, address)` pairs once the data plane listens.
pub type ReadyHook = Box<dyn FnOnce(&[(u16, SocketAddr)]) + Send>;

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A storage could not be opened.
    #[error("storage {device_id} ({path}): {source}")]
    Storage {
        /// deviceID.
        device_id: u64,
        /// Its path.
        path: String,
        /// The backend's error.
        #[source]
        source: crate::backend::BackendError,
    },
    /// A portal could not be bound.
    #[error("portal {id} ({addr}): cannot listen")]
    Bind {
        /// Portal id.
        id: u16,
        /// Address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The start-up config could not be applied.
    #[error("start-up config refused")]
    Refused(#[source] tgt_proto::socket::Refusal),
    /// The control socket could not be opened.
    #[error(transparent)]
    ControlSocket(#[from] crate::control::server::ControlSocketError),
    /// The ready file could not be written.
    #[error("cannot write ready file {0}")]
    ReadyFile(String, #[source] std::io::Error),
}

/// The settings a logical unit of `target` at `lun` is opened with, taking its data buffers
/// from the pool of the storage's NUMA node (or the first pool when it names none).
pub fn lu_config(
    target: &str,
    lun: u16,
    storage: &tgt_proto::ValidStorage,
    pools: &NumaPools,
) -> LuConfig {
    let pool = storage
        .numa_node()
        .and_then(|n| pools.pool_for(n))
        .or_else(|| pools.pools().first())
        .cloned();
    LuConfig {
        device_id: storage.device_id(),
        path: storage.path().to_path_buf(),
        online: storage.online(),
        read_only: storage.read_only(),
        block_size: storage.block_size(),
        create_size_bytes: storage.size_bytes(),
        target_name: target.to_string(),
        lun,
        engine: match storage.backend() {
            tgt_proto::BackendType::Iouring => lu::Engine::IoUring {
                queue_depth: storage.io_uring_queue_depth(),
                direct: storage.direct_io(),
            },
            tgt_proto::BackendType::File => lu::Engine::File,
        },
        thin: storage.thin_provisioning(),
        pool,
    }
}

/// Builds the data buffer pools the first applied config asks for (`performance`):
/// `numaBufferPoolSize` buffers of `numaBufferSize` bytes, 4 KiB aligned for O_DIRECT. With
/// NUMA awareness on (`enableNUMA`, or a storage with `numaNode`) every node of the machine
/// gets a pool bound to it; otherwise one unbound pool serves every LU.
///
/// Maps and touches all the memory: call it off the network threads.
pub fn build_pools(
    cfg: &tgt_proto::ValidConfig,
    sysfs_root: Option<&std::path::Path>,
) -> Result<NumaPools, String> {
    let perf = cfg.performance();
    let count = usize::try_from(perf.numa_buffer_pool_size()).map_err(|e| e.to_string())?;
    let size = usize::try_from(perf.numa_buffer_size_bytes()).map_err(|e| e.to_string())?;
    let numa = perf.numa_enabled() || cfg.storages().any(|s| s.numa_node().is_some());
    let pools = if numa {
        let topology = Topology::from_sysfs(sysfs_root.unwrap_or(std::path::Path::new("/")))
            .map_err(|e| format!("numa topology: {e}"))?;
        let nodes: Vec<u32> = topology.nodes().iter().map(|n| n.id).collect();
        NumaPools::new(&topology, &nodes, count, size, DIRECT_IO_ALIGN_BYTES)
    } else {
        BufferPool::unbound(count, size, DIRECT_IO_ALIGN_BYTES).map(NumaPools::single)
    }
    .map_err(|e| format!("buffer pools: {e}"))?;
    for st in pools.stats() {
        info!(
            node = st.node,
            buffers = st.capacity,
            buffer_bytes = size,
            bound = st.bound,
            "data buffer pool ready"
        );
    }
    Ok(pools)
}

/// Serves `opts.config` (if any) and the control socket (if any) until `shutdown`
/// resolves.
pub async fn run(opts: RunOptions, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let shared = Arc::new(Shared {
        tuning: opts.tuning,
        pinned_cpus: opts.pinned_cpus,
        placement: opts.placement,
        numa_sysfs_root: opts.numa_sysfs_root,
        ..Shared::default()
    });
    let controller = Arc::new(Controller::new(shared.clone()));
    if let Some(cfg) = opts.config {
        controller
            .apply_valid(1, cfg)
            .await
            .map_err(RunError::Refused)?;
    }
    let socket_task = match &opts.control_socket {
        Some(path) => {
            let sock = ControlSocket::bind(path)?;
            Some(tokio::spawn(sock.serve(controller.clone())))
        }
        None => None,
    };
    let bound: Vec<(u16, SocketAddr)> = shared
        .bound
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(id, a)| (*id, *a))
        .collect();
    if let Some(path) = &opts.ready_file {
        write_ready_file(path, &bound, opts.control_socket.as_deref())?;
    }
    if let Some(hook) = opts.on_ready {
        hook(&bound);
    }
    shutdown.await;
    info!("shutting down");
    if let Some(t) = socket_task {
        t.abort();
        // Wait for the abort so the socket file is removed before we return.
        let _ = t.await;
    }
    controller.stop_listening().await;
    Ok(())
}

/// Writes `{"pid":..,"portals":[{"id":..,"addr":".."}],"controlSocket":".."}` atomically.
fn write_ready_file(
    path: &std::path::Path,
    bound: &[(u16, SocketAddr)],
    control_socket: Option<&std::path::Path>,
) -> Result<(), RunError> {
    let portals: Vec<String> = bound
        .iter()
        .map(|(id, a)| format!("{{\"id\":{id},\"addr\":\"{a}\"}}"))
        .collect();
    let control = control_socket
        .map(|p| {
            format!(
                ",\"controlSocket\":{}",
                serde_json::Value::String(p.display().to_string())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{{\"pid\":{},\"portals\":[{}]{control}}}\n",
        std::process::id(),
        portals.join(",")
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| RunError::ReadyFile(path.display().to_string(), e))
}

/// The NUMA node of every LU a portal exports (the node of the pool its buffers come from),
/// for placing the portal's connections.
fn portal_storage_nodes(shared: &Shared, portal_id: u16) -> Vec<Option<u32>> {
    let snap = shared.current();
    snap.targets
        .values()
        .filter(|t| t.tpgs.values().any(|ps| ps.contains(&portal_id)))
        .flat_map(|t| {
            t.scsi
                .logical_units()
                .map(|lu| lu.pool().and_then(BufferPool::numa_node))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Accepts connections on one portal until the task is aborted.
pub(crate) async fn accept_loop(portal_id: u16, listener: TcpListener, shared: Arc<Shared>) {
    let open = shared.portal_connections(portal_id);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin, then go on.
                warn!(portal = portal_id, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let n = shared.connections.fetch_add(1, Ordering::Relaxed);
        if n >= limits::CONNECTIONS_MAX {
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            warn!(%peer, limit = limits::CONNECTIONS_MAX, "connection refused: too many connections");
            drop(stream);
            continue;
        }
        // The guard lives in the connection's task: it is dropped when the task ends,
        // whether the connection closed or the task was aborted.
        let counted = PortalConnection::open(&open);
        let placed = shared
            .placement
            .as_ref()
            .and_then(|p| p.place(&portal_storage_nodes(&shared, portal_id)));
        let Some((seat, node_runtime)) = placed else {
            let conn = crate::conn::serve(stream, peer, portal_id, shared.clone());
            tokio::spawn(async move {
                let _counted = counted;
                conn.await;
            });
            continue;
        };
        info!(%peer, portal = portal_id, node = seat.worker().node, "connection placed on numa node");
        // The socket moves to the node runtime's reactor too, so its readiness is handled
        // on that node's threads rather than on the accepting runtime's.
        let shared = shared.clone();
        let moved = stream.into_std();
        node_runtime.spawn(async move {
            let _seat = seat;
            let _counted = counted;
            match moved.and_then(TcpStream::from_std) {
                Ok(stream) => crate::conn::serve(stream, peer, portal_id, shared).await,
                Err(e) => {
                    shared.connections.fetch_sub(1, Ordering::Relaxed);
                    warn!(%peer, error = %e, "cannot move the connection to its numa node");
                }
            }
        });
    }
}
