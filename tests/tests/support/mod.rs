//! Shared helpers of the system tests: find (or build) the real binaries, start a data plane
//! on a loopback port it picks itself, wait for it by polling, and kill it when the test ends.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return newest;
    };
    for e in rd.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target" || n == "fuzz") {
                continue;
            }
            newest_mtime(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Path to a workspace binary that is up to date with the sources.
///
/// The README test command builds every binary before `cargo test`; when the binary next to
/// this test executable is missing or older than the sources (someone ran `cargo test` alone
/// after an edit), it is built into a separate target directory, because the outer cargo
/// holds the lock of the main one while tests run.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let candidate = profile_dir.join(name);
    let root = workspace_root();
    let sources = ["dataplane", "controlplane", "cli"]
        .iter()
        .map(|d| newest_mtime(&root.join(d)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh = |p: &Path| {
        p.metadata()
            .and_then(|m| m.modified())
            .map(|t| t >= sources)
            .unwrap_or(false)
    };
    if fresh(&candidate) {
        return candidate;
    }
    let dir = BUILT.get_or_init(|| {
        let target = root.join("target").join("systest-bins");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--workspace", "--bins"])
            .status()
            .expect("run cargo build for the system-test binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        target.join("debug")
    });
    dir.join(name)
}

/// A fresh directory under `target/systest-tmp`, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = workspace_root()
            .join("target")
            .join("systest-tmp")
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create test dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) when dropped, even when the test panics.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

/// `text` without terminal escape sequences: colour codes (ESC [ ... final letter) and
/// two-character ones such as a reset (ESC c).
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// Spawns `cmd` (a daemon taking `--ready-file`) with its stderr in `log`, and waits for
/// `ready` as [`wait_for_file`] does; returns the daemon and the ready file's text.
pub fn spawn_ready(mut cmd: Command, ready: &Path, log: PathBuf, what: &str) -> (Daemon, String) {
    let child = cmd
        .arg("--ready-file")
        .arg(ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut d = Daemon { child, log };
    let text = wait_for_file(&mut d, ready, what);
    (d, text)
}

/// The `"key":"value"` string value of `key` in a ready file's JSON text, parsed.
pub fn ready_value<T: std::str::FromStr>(text: &str, key: &str) -> Option<T> {
    text.split(&format!("\"{key}\":\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|a| a.parse().ok())
}

impl Daemon {
    /// The daemon's log so far, without terminal colour codes.
    pub fn log_text(&self) -> String {
        strip_escapes(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running data plane with one target and one LUN on a sparse file.
pub struct Dataplane {
    pub daemon: Daemon,
    pub portal: SocketAddr,
    /// A second portal of the same target portal group, when `second_portal` asked for one.
    pub portal2: Option<SocketAddr>,
    pub iqn: String,
    pub image: PathBuf,
    pub dir: TempDir,
}

pub struct DataplaneOptions {
    pub size_bytes: u64,
    pub backend: &'static str,
    pub lun: u16,
    pub extra_storage_json: String,
    pub env: Vec<(&'static str, &'static str)>,
    /// Extra top-level JSON members, e.g. `"performance":{...}` (without a leading comma).
    pub extra_top_json: String,
    /// Extra members of the target object, e.g. `"auth":{...}` (without a leading comma).
    pub extra_target_json: String,
    /// Listen on a second portal in the target's portal group (a second path to its LUNs).
    pub second_portal: bool,
}

impl Default for DataplaneOptions {
    fn default() -> Self {
        Self {
            size_bytes: 256 << 20,
            backend: "file",
            lun: 1,
            extra_storage_json: String::new(),
            env: Vec::new(),
            extra_top_json: String::new(),
            extra_target_json: String::new(),
            second_portal: false,
        }
    }
}

impl Dataplane {
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, DataplaneOptions::default())
    }

    pub fn start_with(tag: &str, o: DataplaneOptions) -> Self {
        let dir = TempDir::new(tag);
        let image = dir.path().join("disk.img");
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(o.size_bytes).expect("size image");
        drop(f);
        let iqn = format!("iqn.2026-11.org.example.systest:{tag}");
        let extra_top = if o.extra_top_json.is_empty() {
            String::new()
        } else {
            format!(",{}", o.extra_top_json)
        };
        let extra_target = if o.extra_target_json.is_empty() {
            String::new()
        } else {
            format!(",{}", o.extra_target_json)
        };
        let (portals, tpg) = if o.second_portal {
            (
                r#"{"id":0,"portal":"127.0.0.1:0"},{"id":1,"portal":"127.0.0.1:0"}"#,
                "0,1",
            )
        } else {
            (r#"{"id":0,"portal":"127.0.0.1:0"}"#, "0")
        };
        let config = format!(
            r#"{{"storages":[{{"deviceID":1000,"path":"{}","online":true,"backendType":"{}"{}}}],
"iscsiportals":[{portals}],
"iscsitargets":{{"{iqn}":{{"tpgts":{{"1":[{tpg}]}},"luns":{{"{}":1000}}{extra_target}}}}}{extra_top}}}"#,
            image.display(),
            o.backend,
            o.extra_storage_json,
            o.lun
        );
        let (daemon, ready) = spawn_config_dataplane(dir.path(), &config, &o.env);
        let portal = ready_value(&ready, "addr").expect("portal address in the ready file");
        let portal2 = o.second_portal.then(|| {
            ready
                .split("\"addr\":\"")
                .nth(2)
                .and_then(|r| r.split('"').next())
                .and_then(|a| a.parse().ok())
                .expect("second portal in the ready file")
        });
        Self {
            daemon,
            portal,
            portal2,
            iqn,
            image,
            dir,
        }
    }

    pub fn url(&self, lun: u16) -> String {
        format!("iscsi://{}/{}/{}", self.portal, self.iqn, lun)
    }
}

/// Fails the test with install advice when a libiscsi tool is missing.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: the README test command installs libiscsi-bin (apt-get install -y libiscsi-bin)"
    );
}

/// Runs a command with a time limit; the child is killed when the limit passes.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait tool") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = t_out.join().unwrap_or_default();
            panic!(
                "{:?} did not finish within {:?}; output so far:\n{}",
                cmd,
                limit,
                String::from_utf8_lossy(&stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Calls `look` every `every` until it finds what it waits for and returns that, or `None`
/// once `limit` has passed. `look` fails the test itself when the wait can never succeed
/// (the process waited on has exited); the caller fails it on `None`, with whatever
/// context (a log, a console) explains the wait.
pub fn poll_until<T>(
    limit: Duration,
    every: Duration,
    mut look: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = look() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Waits until a daemon has written its ready file (whole, newline-terminated) and returns
/// it; fails with the daemon's log when it exits first or takes over 30 s.
pub fn wait_for_file(daemon: &mut Daemon, path: &Path, what: &str) -> String {
    poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let text = std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.ends_with('\n'));
        assert!(
            text.is_some() || daemon.alive(),
            "{what} exited before it was ready; log:\n{}",
            daemon.log_text()
        );
        text
    })
    .unwrap_or_else(|| panic!("{what} not ready in 30 s; log:\n{}", daemon.log_text()))
}

/// A data plane that starts empty on `DIR/dp.sock` and waits for the control plane; `n`
/// numbers its log and ready files so a restarted one does not read the old ones.
pub fn start_socket_dataplane(dir: &Path, n: u32) -> Daemon {
    let mut cmd = Command::new(binary("tgt-dataplane"));
    cmd.arg("--control-socket").arg(dir.join("dp.sock"));
    spawn_dataplane(cmd, dir, n)
}

/// A data plane serving `config`, written to `DIR/config.json`, with `env` set; its ready
/// file is `DIR/ready.json` and its log `DIR/dataplane.log`. Returns it once ready, with the
/// ready file's text.
pub fn spawn_config_dataplane(dir: &Path, config: &str, env: &[(&str, &str)]) -> (Daemon, String) {
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, config).expect("write config");
    let mut cmd = Command::new(binary("tgt-dataplane"));
    cmd.envs(env.iter().copied()).arg("--config").arg(&cfg);
    spawn_ready(
        cmd,
        &dir.join("ready.json"),
        dir.join("dataplane.log"),
        "tgt-dataplane",
    )
}

/// Spawns the data plane `cmd` (the binary, possibly wrapped as `ip netns exec NS
/// tgt-dataplane`, with its config or control-socket arguments) with its ready file
/// `DIR/dp-ready-N.json` and log `DIR/dataplane-N.log`, and waits until it is ready; `n`
/// keeps a restarted one from reading the files of the one before.
pub fn spawn_dataplane(cmd: Command, dir: &Path, n: u32) -> Daemon {
    spawn_ready(
        cmd,
        &dir.join(format!("dp-ready-{n}.json")),
        dir.join(format!("dataplane-{n}.log")),
        "tgt-dataplane",
    )
    .0
}

/// A control plane on 127.0.0.1:0 pushing to `DIR/dp.sock`, state in `DIR/state`, no token;
/// returns it and the address it listens on.
pub fn start_controlplane(dir: &Path) -> (Daemon, SocketAddr) {
    start_controlplane_with_token(dir, None)
}

/// [`start_controlplane`], requiring `token` on mutating calls when given (a token from the
/// environment never leaks in).
pub fn start_controlplane_with_token(dir: &Path, token: Option<&str>) -> (Daemon, SocketAddr) {
    let mut cmd = Command::new(binary("tgt-controlplane"));
    cmd.args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.join("state"))
        .arg("--dataplane-socket")
        .arg(dir.join("dp.sock"))
        .env_remove("TGT_CONTROLPLANE_TOKEN")
        .env_remove("TGT_CONTROLPLANE_TOKEN_FILE");
    if let Some(token) = token {
        let file = dir.join("cp-token");
        std::fs::write(&file, token).expect("write the token file");
        cmd.arg("--token-file").arg(file);
    }
    let (d, text) = spawn_ready(
        cmd,
        &dir.join("cp-ready.json"),
        dir.join("controlplane.log"),
        "tgt-controlplane",
    );
    let addr = ready_value(&text, "listen").expect("listen address in the ready file");
    (d, addr)
}

/// One HTTP/1.1 answer from the control plane.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange (`Connection: close`), enough for a JSON API on loopback.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the control plane");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Polls `/api/v1/status` until the data plane runs the desired config with a bound
/// portal, and returns that portal's address; fails with the data plane's log after 30 s.
pub fn wait_in_sync(cp: SocketAddr, dp: &mut Daemon) -> SocketAddr {
    let mut last = serde_json::Value::Null;
    poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        last = http(cp, "GET", "/api/v1/status", None).json();
        if last["inSync"] != true {
            return None;
        }
        last["dataplane"]["portals"][0]["bound"]
            .as_str()
            .and_then(|a| a.parse().ok())
    })
    .unwrap_or_else(|| {
        panic!(
            "data plane not in sync in 30 s: {last}; data plane log:\n{}",
            dp.log_text()
        )
    })
}

/// Logs the project's initiator in to target `iqn` through `portal`.
pub fn login(portal: SocketAddr, iqn: &str) -> tgt_system_tests::initiator::Session {
    tgt_system_tests::initiator::Session::login(
        portal,
        &tgt_system_tests::initiator::SessionOptions {
            target_name: Some(iqn.to_string()),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("login to {iqn} through {portal}: {e}"))
}

/// The sense of a command that must end in CHECK CONDITION.
pub fn check_condition<T: std::fmt::Debug>(
    r: Result<T, tgt_system_tests::initiator::Error>,
    what: &str,
) -> tgt_system_tests::initiator::Sense {
    use tgt_system_tests::initiator::{scsi, Error};
    match r {
        Err(Error::Scsi {
            status: scsi::STATUS_CHECK_CONDITION,
            sense: Some(sense),
        }) => sense,
        other => panic!("{what}: expected CHECK CONDITION, got {other:?}"),
    }
}
