//! `tgtctl quickstart`: runs the product on one machine with one command. It starts the
//! sibling binaries `tgt-dataplane` and `tgt-controlplane`, configures a demo target
//! through the REST API (the same calls an operator makes), prints what to run next, and
//! stops both daemons on Ctrl-C or SIGTERM.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tgt_proto::api::{ControlplaneReady, StatusView};
use tgt_proto::{Portal, Storage, Target};

use crate::client::Client;
use crate::{CliError, Result};

/// The demo target's name.
pub const DEMO_IQN: &str = "iqn.2026-01.io.github.tgt-rs:demo";
/// The demo LUN.
pub const DEMO_LUN: u16 = 1;
const DEMO_DEVICE_ID: u64 = 1;
const DEMO_PORTAL_ID: u16 = 0;
const DEMO_SIZE_BYTES: u64 = 1 << 30;
/// How long each daemon gets to come up; start-up is sub-second, this covers a loaded CI.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each daemon gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tgtctl quickstart`.
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Where the demo image, the desired config, sockets and logs live (reused across runs).
    #[arg(long, default_value = "tgt-state")]
    pub state_dir: PathBuf,
    /// iSCSI portal address [default: 127.0.0.1:3260, or a free port if that is taken].
    #[arg(long)]
    pub portal: Option<String>,
    /// REST API address [default: 127.0.0.1:8080, or a free port if that is taken].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// A daemon we started: SIGTERM then wait on stop, SIGKILL if it lingers.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
            // our own unreaped child, so it cannot have been recycled for another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in {STOP_TIMEOUT:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find tgtctl's own path")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("tgtctl's path {} has no directory", exe.display()))?;
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "cannot find {name} next to tgtctl in {}: build them with cargo build --release (then run target/release/tgtctl quickstart)",
            dir.display()
        );
    }
    Ok(p)
}

fn spawn(
    name: &'static str,
    bin: &Path,
    args: &[&std::ffi::OsStr],
    log: PathBuf,
) -> anyhow::Result<Daemon> {
    let file = std::fs::File::create(&log)
        .with_context(|| format!("cannot create log file {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("cannot share the log file")?)
        .stderr(file)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    // If tgtctl itself dies (even by SIGKILL), the kernel stops the daemons too, so no
    // orphan keeps the ports.
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(Daemon { name, child, log })
}

/// Waits for `path` to hold a whole JSON document (the daemons write ready files
/// atomically), failing early if the daemon exits.
fn wait_ready_file<T: DeserializeOwned>(d: &mut Daemon, path: &Path) -> anyhow::Result<T> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str::<T>(&text) {
                return Ok(v);
            }
        }
        if let Some(status) = d.exited() {
            bail!(
                "{} exited ({status}) before it was ready; see its log {}:\n{}",
                d.name,
                d.log.display(),
                tail(&d.log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready in {START_TIMEOUT:?}; see its log {}",
                d.name,
                d.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// Makes the resource at `path` equal `want`: created with `create` when missing,
/// replaced with PUT when different, left alone when equal (no needless generation).
fn ensure<T: Serialize + DeserializeOwned + PartialEq>(
    c: &Client,
    path: &str,
    want: &T,
    create: (Method, &str),
) -> Result<()> {
    match c.get::<T>(path) {
        Ok(r) if &r.body == want => Ok(()),
        Ok(_) => c
            .call::<_, Value>(Method::PUT, path, Some(want), &[])
            .map(|_| ()),
        Err(CliError::Api { status: 404, .. }) => c
            .call::<_, Value>(create.0, create.1, Some(want), &[])
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Runs `tgtctl quickstart` until Ctrl-C or SIGTERM.
pub fn run(a: &QuickstartArgs) -> Result<()> {
    quickstart(a).map_err(CliError::Other)
}

fn quickstart(a: &QuickstartArgs) -> anyhow::Result<()> {
    let dataplane_bin = sibling("tgt-dataplane")?;
    let controlplane_bin = sibling("tgt-controlplane")?;
    std::fs::create_dir_all(&a.state_dir)
        .with_context(|| format!("cannot create state directory {}", a.state_dir.display()))?;
    let state = a
        .state_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", a.state_dir.display()))?;
    let image = state.join("demo.img");
    if !image.exists() {
        let f = std::fs::File::create(&image)
            .with_context(|| format!("cannot create {}", image.display()))?;
        // set_len on a new file makes it sparse: no blocks are written.
        f.set_len(DEMO_SIZE_BYTES)
            .with_context(|| format!("cannot size {}", image.display()))?;
    }
    let socket = state.join("dataplane.sock");
    let dp_ready = state.join("dataplane.ready.json");
    let cp_ready = state.join("controlplane.ready.json");
    let _ = std::fs::remove_file(&dp_ready);
    let _ = std::fs::remove_file(&cp_ready);

    let default_portal = SocketAddr::from((Ipv4Addr::LOCALHOST, 3260));
    let portal = a.portal.clone().unwrap_or_else(|| {
        if free(default_portal) {
            default_portal.to_string()
        } else {
            "127.0.0.1:0".into()
        }
    });
    let default_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let listen = a.listen.unwrap_or_else(|| {
        if free(default_listen) {
            default_listen
        } else {
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        }
    });

    let mut dp = spawn(
        "tgt-dataplane",
        &dataplane_bin,
        &[
            "--control-socket".as_ref(),
            socket.as_os_str(),
            "--ready-file".as_ref(),
            dp_ready.as_os_str(),
        ],
        state.join("dataplane.log"),
    )?;
    // Any whole document will do: the data plane's ready file only says it is up.
    wait_ready_file::<Value>(&mut dp, &dp_ready)?;
    let listen_arg = listen.to_string();
    let cp_state = state.join("controlplane");
    let mut cp = spawn(
        "tgt-controlplane",
        &controlplane_bin,
        &[
            "--listen".as_ref(),
            listen_arg.as_ref(),
            "--state-dir".as_ref(),
            cp_state.as_os_str(),
            "--dataplane-socket".as_ref(),
            socket.as_os_str(),
            "--ready-file".as_ref(),
            cp_ready.as_os_str(),
        ],
        state.join("controlplane.log"),
    )?;
    let ready: ControlplaneReady = wait_ready_file(&mut cp, &cp_ready)?;
    let api = ready.listen;
    let url = format!("http://{api}");
    let client =
        Client::new(&url, std::env::var("TGTCTL_TOKEN").ok(), None).map_err(|e| anyhow!("{e}"))?;

    configure(&client, &image, &portal).map_err(|e| {
        anyhow!(
            "cannot configure the demo target through {url}: {e}\nlogs: {} and {}",
            dp.log.display(),
            cp.log.display()
        )
    })?;
    let bound = wait_portal(&client, &mut dp, &mut cp)?;

    // The path this tgtctl was run by, relative when it is under the working directory.
    let me = std::env::current_exe()
        .map(|p| {
            std::env::current_dir()
                .ok()
                .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
                .unwrap_or(p)
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tgtctl".into());
    let server_flag = if api == default_listen {
        String::new()
    } else {
        format!(" --server {url}")
    };
    println!("tgt is up (state in {})", state.display());
    println!("  portal   : {bound}");
    println!("  target   : {DEMO_IQN}");
    println!(
        "  lun      : {DEMO_LUN} (1 GiB sparse file {})",
        image.display()
    );
    println!("  REST API : {url}");
    println!(
        "  pids     : tgt-dataplane {}, tgt-controlplane {}",
        dp.child.id(),
        cp.child.id()
    );
    println!("  logs     : {}, {}", dp.log.display(), cp.log.display());
    println!("next:");
    println!("  {me}{server_flag} status");
    println!("  iscsi-ls -s iscsi://{bound}");
    println!("  iscsi-inq iscsi://{bound}/{DEMO_IQN}/{DEMO_LUN}");
    println!(
        "  on a Linux host with open-iscsi (rerun with --portal '*:3260' to serve other hosts):"
    );
    println!("    iscsiadm -m discovery -t sendtargets -p {bound}");
    println!("    iscsiadm -m node -T {DEMO_IQN} -p {bound} --login");
    println!("Ctrl-C stops both.");

    let outcome = wait_for_stop(&mut dp, &mut cp);
    // Stop the control plane first so it does not log the data plane going away.
    cp.stop();
    dp.stop();
    match outcome? {
        None => {
            println!("stopped");
            Ok(())
        }
        Some(msg) => Err(anyhow!(msg)),
    }
}

fn configure(c: &Client, image: &Path, portal: &str) -> Result<()> {
    ensure(
        c,
        &format!("/api/v1/storages/{DEMO_DEVICE_ID}"),
        &Storage {
            device_id: DEMO_DEVICE_ID,
            path: image.display().to_string(),
            ..Storage::default()
        },
        (Method::POST, "/api/v1/storages"),
    )?;
    ensure(
        c,
        &format!("/api/v1/portals/{DEMO_PORTAL_ID}"),
        &Portal {
            id: DEMO_PORTAL_ID,
            portal: portal.to_string(),
        },
        (Method::POST, "/api/v1/portals"),
    )?;
    let target = format!("/api/v1/targets/{DEMO_IQN}");
    ensure(
        c,
        &target,
        &Target {
            tpgts: [("1".to_string(), vec![DEMO_PORTAL_ID])].into(),
            luns: [(DEMO_LUN.to_string(), DEMO_DEVICE_ID)].into(),
            ..Target::default()
        },
        (Method::PUT, &target),
    )
}

/// Waits until the data plane runs the desired config, and returns the demo portal's bound
/// address (which has the real port when the config said 0).
fn wait_portal(c: &Client, dp: &mut Daemon, cp: &mut Daemon) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let s: StatusView = c.get("/api/v1/status").map_err(|e| anyhow!("{e}"))?.body;
        if s.in_sync {
            let bound = s
                .dataplane
                .iter()
                .flat_map(|d| &d.portals)
                .find(|p| p.id == DEMO_PORTAL_ID)
                .map(|p| p.bound);
            if let Some(b) = bound {
                return Ok(b);
            }
        }
        for d in [&mut *dp, &mut *cp] {
            if let Some(st) = d.exited() {
                bail!(
                    "{} exited ({st}); see its log {}:\n{}",
                    d.name,
                    d.log.display(),
                    tail(&d.log)
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the data plane did not apply the demo config in {START_TIMEOUT:?}: {}\nlogs: {} and {}",
                s.last_error.as_deref().unwrap_or("no error reported"),
                dp.log.display(),
                cp.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Blocks until Ctrl-C or SIGTERM (`None`) or until a daemon exits on its own (`Some`
/// with what happened).
fn wait_for_stop(dp: &mut Daemon, cp: &mut Daemon) -> anyhow::Result<Option<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = int.recv() => return Ok(None),
                _ = term.recv() => return Ok(None),
                _ = tick.tick() => {
                    for d in [&mut *dp, &mut *cp] {
                        if let Some(st) = d.exited() {
                            return Ok(Some(format!(
                                "{} exited on its own ({st}); see its log {}:\n{}",
                                d.name,
                                d.log.display(),
                                tail(&d.log)
                            )));
                        }
                    }
                }
            }
        }
    })
}
