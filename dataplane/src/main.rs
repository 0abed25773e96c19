//! The `tgt-dataplane` binary: parses flags, installs logging, runs [`tgt_dataplane::run`].

mod demo;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// iSCSI target data plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Serve this gotgt-style JSON config file at once (as config generation 1).
    #[arg(
        long,
        env = "TGT_DATAPLANE_CONFIG",
        required_unless_present_any = ["demo", "control_socket"]
    )]
    config: Option<PathBuf>,
    /// Listen for the control plane on this Unix socket (mode 0600). With no --config the
    /// data plane starts empty and waits for the control plane to push a config.
    #[arg(long, env = "TGT_DATAPLANE_CONTROL_SOCKET")]
    control_socket: Option<PathBuf>,
    /// Serve a demo target on a sparse 1 GiB file in --state-dir (created on first run).
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// Where --demo keeps its image and config.
    #[arg(long, env = "TGT_STATE_DIR", default_value = "tgt-state")]
    state_dir: PathBuf,
    /// Once every portal listens, write their addresses here as JSON (for scripts and tests).
    #[arg(long, env = "TGT_DATAPLANE_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Worker threads for the network and I/O runtime (default: one per CPU).
    #[arg(long, env = "TGT_DATAPLANE_WORKERS")]
    workers: Option<usize>,
    /// Seconds of silence on a connection before the target pings it with a NOP-In.
    #[arg(long, env = "TGT_NOP_IN_INTERVAL_SECS", default_value_t = tgt_dataplane::limits::NOP_IN_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    nop_in_interval_secs: u64,
    /// Seconds a NOP-In ping may stay unanswered before the connection is dropped.
    #[arg(long, env = "TGT_NOP_IN_TIMEOUT_SECS", default_value_t = tgt_dataplane::limits::NOP_IN_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    nop_in_timeout_secs: u64,
    /// Read the NUMA topology below this directory instead of `/` (tests use fake sysfs
    /// trees to exercise multi-node placement on one-node machines).
    #[arg(long, env = "TGT_NUMA_SYSFS_ROOT", hide = true)]
    numa_sysfs_root: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let path = match (&args.config, args.demo) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(demo::prepare(&args.state_dir)?),
        (None, false) => None,
    };
    let config = path.map(|p| load_config(&p)).transpose()?;
    let demo_banner = args.demo;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    let workers = args
        .workers
        .or(config.as_ref().and_then(|c| c.performance_worker_threads()));
    if let Some(n) = workers {
        rt.worker_threads(n.max(1));
    }
    let sysfs_root = args
        .numa_sysfs_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let pinned = config
        .as_ref()
        .map(|c| worker_affinity(c, &sysfs_root))
        .transpose()?
        .flatten();
    let pinned_cpus = pinned.clone().map(|p| p.1).unwrap_or_default();
    // Worker CPUs on two or more nodes: one runtime per node, and connections are placed
    // on the node of their storage (see `numa::runtimes`).
    let node_runtimes = match &pinned {
        Some((topology, cpus)) => start_node_runtimes(topology, cpus)?,
        None => Vec::new(),
    };
    let placement = (!node_runtimes.is_empty()).then(|| {
        let topology = pinned
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_else(|| tgt_dataplane::numa::Topology::single_node(Vec::new()));
        std::sync::Arc::new(tgt_dataplane::numa::NodeRuntimes::new(
            topology,
            node_runtimes
                .iter()
                .map(|(node, rt, n)| (*node, rt.handle().clone(), *n))
                .collect(),
        ))
    });
    let pinned = pinned.map(|p| p.1);
    if let Some(cpus) = pinned {
        // Every runtime thread (network workers and the blocking I/O pool) runs on the CPUs
        // of the storages' NUMA nodes or the configured CPU list.
        tracing::info!(?cpus, "pinning worker threads");
        let warned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        rt.on_thread_start(move || {
            if let Err(e) = tgt_dataplane::numa::pin_current_thread(&cpus) {
                if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot pin worker threads (needs CAP_SYS_NICE?); running unpinned");
                }
            }
        });
    }
    let rt = rt.build().context("cannot start the runtime")?;
    let result = rt.block_on(async move {
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        tgt_dataplane::run(
            tgt_dataplane::RunOptions {
                config,
                control_socket: args.control_socket,
                ready_file: args.ready_file,
                pinned_cpus,
                placement,
                numa_sysfs_root: args.numa_sysfs_root,
                tuning: tgt_dataplane::live::Tuning {
                    nop_in_interval: std::time::Duration::from_secs(args.nop_in_interval_secs),
                    nop_in_timeout: std::time::Duration::from_secs(args.nop_in_timeout_secs),
                },
                on_ready: demo_banner.then(|| Box::new(demo::banner) as tgt_dataplane::ReadyHook),
            },
            shutdown,
        )
        .await
    });
    for (_, rt, _) in node_runtimes {
        // Connections still on a node runtime are cut off here, as they would be by exit.
        rt.shutdown_background();
    }
    result?;
    Ok(())
}

/// One runtime per node the worker CPUs span, each thread pinned to its node's CPUs:
/// `(node, runtime, threads)`. Empty when the CPUs are on one node (the main runtime, pinned
/// to them, serves every connection).
fn start_node_runtimes(
    topology: &tgt_dataplane::numa::Topology,
    cpus: &[u32],
) -> anyhow::Result<Vec<(u32, tokio::runtime::Runtime, usize)>> {
    let groups = tgt_dataplane::numa::node_cpu_groups(topology, cpus);
    if groups.len() < 2 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(groups.len());
    for (node, node_cpus) in groups {
        let threads = node_cpus.len();
        let pin = node_cpus.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(threads)
            .thread_name(format!("tgt-node{node}"))
            .on_thread_start(move || {
                // The main runtime's hook already warned once if pinning is not allowed.
                let _ = tgt_dataplane::numa::pin_current_thread(&pin);
            })
            .build()
            .with_context(|| format!("cannot start the runtime of numa node {node}"))?;
        tracing::info!(node, cpus = ?node_cpus, "numa node runtime started");
        out.push((node, rt, threads));
    }
    Ok(out)
}

/// Reads and validates a config file.
/// The worker CPU set the config asks for (see `numa::affinity`), checked against the
/// machine's NUMA topology; a node or CPU the machine lacks is a start-up error.
fn worker_affinity(
    config: &tgt_proto::ValidConfig,
    sysfs_root: &std::path::Path,
) -> anyhow::Result<Option<(tgt_dataplane::numa::Topology, Vec<u32>)>> {
    let perf = config.performance();
    let nodes: Vec<u32> = config
        .storages()
        .filter(|s| s.numa_enabled())
        .filter_map(|s| s.numa_node())
        .collect();
    if perf.cpu_list().is_none() && nodes.is_empty() {
        return Ok(None);
    }
    let topology = tgt_dataplane::numa::Topology::from_sysfs(sysfs_root)
        .context("cannot read the NUMA topology")?;
    tracing::info!(nodes = topology.node_count(), "NUMA topology");
    let cpus = tgt_dataplane::numa::worker_cpus(
        &topology,
        perf.cpu_list().map(|c| c.cpus()),
        perf.numa_enabled() || !nodes.is_empty(),
        &nodes,
    )
    .map_err(|e| anyhow::anyhow!("NUMA placement in the config cannot be honoured: {e}"))?;
    Ok(cpus.map(|c| (topology, c)))
}

fn load_config(path: &std::path::Path) -> anyhow::Result<tgt_proto::ValidConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config: tgt_proto::Config = serde_json::from_str(&text)
        .with_context(|| format!("config file {} is not valid", path.display()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("config file {} is not valid:\n{e}", path.display()))
}
