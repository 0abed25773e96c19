//! Start-up: builds the live state, applies the first config through `control` as
//! generation 1 (which opens the logical units and binds the portals, each accepting in
//! [`crate::accept`]), opens the control socket and writes the ready file.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use crate::control::server::ControlSocket;
use crate::control::Controller;
use crate::live::{Settings, Shared};
use crate::numa::NodeRuntimes;

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

/// Serves `opts.config` (if any) and the control socket (if any) until `shutdown`
/// resolves.
pub async fn run(opts: RunOptions, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let (shared, writer) = Shared::new(Settings {
        tuning: opts.tuning,
        pinned_cpus: opts.pinned_cpus,
        placement: opts.placement,
        numa_sysfs_root: opts.numa_sysfs_root,
    });
    let controller = Arc::new(Controller::new(writer));
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
    let bound = shared.bound_portals();
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
