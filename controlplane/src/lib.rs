//! `tgt-controlplane`: owns the desired configuration of the iSCSI target, serves it as a
//! REST API (`/api/v1`), persists it, and keeps the data plane running it over the data
//! plane's Unix control socket.
//!
//! Layers: [`api`] (one file per resource; handlers only parse and map status codes) →
//! [`service`] (validation through `tgt-proto`, push, persistence, resync) → [`store`]
//! (atomic state file) and [`dataplane`] (socket client). Config types come only from
//! `tgt-proto`; nothing here duplicates them.

pub mod api;
pub mod audit;
pub mod dataplane;
pub mod error;
pub mod service;
pub mod store;
pub mod tls;
pub mod write_only;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to serve HTTP on (port 0: the OS picks).
    pub listen: SocketAddr,
    /// Directory holding the desired config.
    pub state_dir: PathBuf,
    /// The data plane's control socket.
    pub dataplane_socket: PathBuf,
    /// Bearer token every call but the health probes must present, if any; required when
    /// `listen` is not a loopback address.
    pub token: Option<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Once listening, write `{"pid":..,"listen":"addr"}` here (for scripts and tests).
    pub ready_file: Option<PathBuf>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state directory or file could not be loaded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A non-loopback address without a bearer token: anyone who reaches it could change
    /// the config.
    #[error("refusing to listen on {0} without a bearer token: an address other than loopback needs --token-file (and --tls-cert/--tls-key, so the token does not cross the network in clear)")]
    TokenRequired(SocketAddr),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The ready file could not be written.
    #[error("cannot write ready file {0}")]
    ReadyFile(PathBuf, #[source] std::io::Error),
    /// The HTTP server failed.
    #[error("http server failed")]
    Serve(#[source] std::io::Error),
}

/// Serves the control plane until `shutdown` resolves.
pub async fn run(
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let off_loopback = !opts.listen.ip().is_loopback();
    if off_loopback && opts.token.is_none() {
        return Err(RunError::TokenRequired(opts.listen));
    }
    let acceptor = opts.tls.as_ref().map(tls::acceptor).transpose()?;
    let (store, desired) = store::Store::open(&opts.state_dir)?;
    info!(
        state = %store.path().display(),
        generation = desired.generation,
        "desired config loaded"
    );
    let service = Arc::new(service::Service::new(
        store,
        desired,
        dataplane::DataplaneClient::new(&opts.dataplane_socket),
    ));
    let sync = tokio::spawn(service.clone().sync_loop());
    let app = api::router(api::AppState {
        service,
        token: opts.token.map(Arc::from),
    })
    .into_make_service_with_connect_info::<tls::Peer>();
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: opts.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| RunError::Bind {
        addr: opts.listen,
        source,
    })?;
    info!(%bound, tls = acceptor.is_some(), "control plane listening");
    if off_loopback && acceptor.is_none() {
        warn!(%bound, "the REST API is reachable off this host over plain HTTP: the bearer token and every change cross the network in clear (use --tls-cert and --tls-key)");
    }
    if let Some(path) = &opts.ready_file {
        let ready = tgt_proto::api::ControlplaneReady {
            pid: std::process::id(),
            listen: bound,
        };
        // Cannot fail: a number and an address always serialise.
        let mut body = serde_json::to_string(&ready).unwrap_or_default();
        body.push('\n');
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| RunError::ReadyFile(path.clone(), e))?;
    }
    let served = match acceptor {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(RunError::Serve);
    sync.abort();
    info!("control plane stopped");
    served
}
