//! The `tgt-controlplane` binary: parses flags, installs logging, runs
//! [`tgt_controlplane::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// REST control plane of the iSCSI target.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// REST address. Loopback by default; any other address needs --token-file, and should
    /// have --tls-cert/--tls-key.
    #[arg(
        long,
        env = "TGT_CONTROLPLANE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Directory holding the desired config (desired.json).
    #[arg(
        long,
        env = "TGT_CONTROLPLANE_STATE_DIR",
        default_value = "/var/lib/tgt"
    )]
    state_dir: PathBuf,
    /// The data plane's control socket (tgt-dataplane --control-socket).
    #[arg(
        long,
        env = "TGT_DATAPLANE_CONTROL_SOCKET",
        default_value = "/run/tgt/dataplane.sock"
    )]
    dataplane_socket: PathBuf,
    /// File holding the bearer token every call but /healthz and /readyz must present
    /// (read once at start; surrounding whitespace is ignored). Required off loopback.
    #[arg(long, env = "TGT_CONTROLPLANE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, env = "TGT_CONTROLPLANE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TGT_CONTROLPLANE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Once listening, write {"pid":..,"listen":"addr"} here (for scripts and tests).
    #[arg(long, env = "TGT_CONTROLPLANE_READY_FILE")]
    ready_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let token = match &args.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))?
                .trim()
                .to_string();
            anyhow::ensure!(!t.is_empty(), "token file {} is empty", p.display());
            Some(t)
        }
        None => None,
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(tgt_controlplane::tls::TlsFiles { cert, key }),
        // clap requires both or neither.
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        tgt_controlplane::run(
            tgt_controlplane::Options {
                listen: args.listen,
                state_dir: args.state_dir,
                dataplane_socket: args.dataplane_socket,
                token,
                tls,
                ready_file: args.ready_file,
            },
            shutdown,
        )
        .await
    })
    .map_err(|e| anyhow::anyhow!(tgt_controlplane::service::error_chain(&e)))?;
    Ok(())
}
