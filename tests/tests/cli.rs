//! System tests of `tgtctl`: the real binary against a real control plane and data plane,
//! judged by its output (tables and JSON), its exit codes, and libiscsi's `iscsi-inq`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    binary, require_tool, run_with_timeout, start_controlplane, start_socket_dataplane, text,
    Daemon, TempDir,
};

const IQN: &str = "iqn.2026-11.org.example.systest:cli";

/// Both daemons on loopback port 0, configured with nothing; returns the REST URL.
fn start_daemons(dir: &Path) -> (Daemon, Daemon, String) {
    let dp = start_socket_dataplane(dir, 1);
    let (cp, addr) = start_controlplane(dir);
    (dp, cp, format!("http://{addr}"))
}

/// Runs `tgtctl --server URL ARGS...` with the environment cleared of its variables.
fn tgtctl(server: &str, args: &[&str]) -> Output {
    run_with_timeout(
        Command::new(binary("tgtctl"))
            .arg("--server")
            .arg(server)
            .args(args)
            .env_remove("TGTCTL_SERVER")
            .env_remove("TGTCTL_TOKEN"),
        Duration::from_secs(60),
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn ok(server: &str, args: &[&str]) -> String {
    let o = tgtctl(server, args);
    assert_eq!(o.status.code(), Some(0), "tgtctl {args:?}:\n{}", text(&o));
    stdout(&o)
}

fn json_of(server: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = ok(server, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tgtctl {a:?} is not JSON ({e}):\n{out}"))
}

/// Polls `tgtctl status -o json` until the data plane runs the desired config with a
/// bound portal; returns that portal.
fn wait_in_sync(server: &str, dp: &mut Daemon) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = json_of(server, &["status"]);
        if s["inSync"] == true {
            if let Some(a) = s["dataplane"]["portals"][0]["bound"]
                .as_str()
                .and_then(|a| a.parse().ok())
            {
                return a;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not in sync in 30 s: {s}; data plane log:\n{}",
            dp.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inquiry(url: &str) {
    let out = run_with_timeout(Command::new("iscsi-inq").arg(url), Duration::from_secs(30));
    let t = text(&out);
    assert!(out.status.success(), "iscsi-inq {url} failed:\n{t}");
    assert!(
        t.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "not a direct-access device:\n{t}"
    );
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn manages_resources_with_tables_json_and_script_friendly_exit_codes() {
    require_tool("iscsi-inq");
    let dir = TempDir::new("cli-resources");
    let (mut dp, _cp, api) = start_daemons(dir.path());
    let image = dir.path().join("disk.img");
    let image_s = image.display().to_string();

    let out = ok(
        &api,
        &[
            "storage", "create", "--id", "42", "--path", &image_s, "--size", "64M",
        ],
    );
    assert_eq!(out, "storage 42 created\n");
    ok(
        &api,
        &["portal", "create", "--id", "0", "--address", "127.0.0.1:0"],
    );
    let out = ok(
        &api,
        &["target", "create", IQN, "--portal", "0", "--lun", "0=42"],
    );
    assert_eq!(out, format!("target {IQN} created\n"));
    ok(&api, &["lun", "create", IQN, "3", "--storage", "42"]);

    // Tables for people.
    let t = ok(&api, &["storage", "list"]);
    let mut lines = t.lines();
    let header = lines.next().unwrap_or_default();
    for col in [
        "DEVICE ID",
        "PATH",
        "SIZE",
        "BACKEND",
        "ONLINE",
        "READ-ONLY",
    ] {
        assert!(header.contains(col), "no {col} column:\n{t}");
    }
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["42", image_s.as_str(), "64", "MiB"], "{t}");
    let t = ok(&api, &["target", "list"]);
    assert!(
        t.contains(IQN) && t.contains("1:[0]") && t.contains("0->42 3->42"),
        "{t}"
    );
    let t = ok(&api, &["lun", "list", IQN]);
    assert_eq!(t.lines().count(), 3, "header and two LUNs:\n{t}");

    // JSON for scripts is the API's own shape.
    let v = json_of(&api, &["storage", "get", "42"]);
    assert_eq!(v["deviceID"], 42);
    assert_eq!(v["size"], 64 << 20);
    let v = json_of(&api, &["target", "list"]);
    assert_eq!(v[IQN]["luns"]["3"], 42, "{v}");
    let v = json_of(&api, &["portal", "list"]);
    assert_eq!(v[0]["portal"], "127.0.0.1:0", "{v}");
    let y = ok(&api, &["lun", "get", IQN, "0", "-o", "yaml"]);
    assert_eq!(y, "deviceID: 42\n");

    // The target is real: iscsi-inq reaches both LUNs, and status shows them.
    let portal = wait_in_sync(&api, &mut dp);
    inquiry(&format!("iscsi://{portal}/{IQN}/0"));
    inquiry(&format!("iscsi://{portal}/{IQN}/3"));
    let s = ok(&api, &["status"]);
    assert!(s.contains("connected") && s.contains("(in sync)"), "{s}");
    assert!(s.contains(&portal.to_string()), "{s}");
    // This machine has at least one NUMA node (one when it has no NUMA at all).
    assert!(s.contains("numa nodes") && s.contains("node 0 cpus"), "{s}");
    assert!(s.contains("worker cpus"), "{s}");
    let m = ok(&api, &["metrics"]);
    assert!(m.contains("logins") && m.contains(IQN), "{m}");
    let m = json_of(&api, &["metrics"]);
    assert_eq!(m["dataplaneConnected"], true, "{m}");
    assert_eq!(m["luns"].as_array().map(Vec::len), Some(2), "{m}");

    // 1: the API refused, with the problem detail on stderr and nothing changed.
    let o = tgtctl(&api, &["storage", "create", "--id", "42", "--path", "/x"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("storage 42 already exists"),
        "{}",
        text(&o)
    );
    let o = tgtctl(&api, &["storage", "delete", "42"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is used by lun"), "{}", text(&o));
    let o = tgtctl(
        &api,
        &[
            "storage",
            "create",
            "--id",
            "7",
            "--path",
            "/x",
            "--block-size",
            "1000",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("blockSize"),
        "names the field:\n{}",
        text(&o)
    );
    let o = tgtctl(&api, &["target", "create", IQN, "--portal", "0"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "create is create-only:\n{}",
        text(&o)
    );
    let o = tgtctl(&api, &["lun", "create", IQN, "0", "--storage", "42"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        json_of(&api, &["storage", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    // 2: usage errors never reach the server.
    for args in [
        &["storage", "frobnicate"][..],
        &["storage", "create", "--id", "x", "--path", "/x"],
        &["target", "create", IQN, "--lun", "zero"],
        &["--server", "not a url", "status"],
    ] {
        let o = tgtctl(&api, args);
        assert_eq!(o.status.code(), Some(2), "tgtctl {args:?}:\n{}", text(&o));
    }
    // --help works on every level, with examples.
    let h = ok(&api, &["storage", "create", "--help"]);
    assert!(h.contains("Examples:"), "{h}");

    // 3: nothing listens there; the message says what to check.
    let down = format!("http://127.0.0.1:{}", closed_port());
    let o = tgtctl(&down, &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("cannot reach control plane at {down}: connection refused (is tgt-controlplane running?")),
        "{}",
        text(&o)
    );
    // The environment variable is the fallback for --server.
    let o = run_with_timeout(
        Command::new(binary("tgtctl"))
            .args(["storage", "list", "-o", "json"])
            .env("TGTCTL_SERVER", &api)
            .env_remove("TGTCTL_TOKEN"),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Deleting in dependency order works and the data plane follows.
    ok(&api, &["lun", "delete", IQN, "3"]);
    ok(&api, &["target", "delete", IQN]);
    ok(&api, &["storage", "delete", "42"]);
    assert_eq!(ok(&api, &["target", "list", "-o", "json"]).trim(), "{}");
}

#[test]
fn apply_shows_the_diff_on_a_dry_run_then_applies_it() {
    let dir = TempDir::new("cli-apply");
    let (mut dp, _cp, api) = start_daemons(dir.path());
    let image = dir.path().join("apply.img");
    let file = dir.path().join("tgt.json");
    // The reference design's combined example, with local paths and portals.
    let config = serde_json::json!({
        "storages": [{"deviceID": 1000, "path": image.display().to_string(), "online": true,
                      "backendType": "file", "thinprovisioning": true, "size": 32 << 20}],
        "iscsiportals": [{"id": 0, "portal": "127.0.0.1:0"}],
        "iscsitargets": {IQN: {"tpgts": {"1": [0]}, "luns": {"1": 1000}}},
        "performance": {"enableIoUring": false}
    });
    std::fs::write(&file, config.to_string()).expect("write config");
    let f = file.display().to_string();
    let before = json_of(&api, &["status"])["desiredGeneration"].clone();

    let out = ok(&api, &["apply", "-f", &f, "--dry-run"]);
    assert!(out.contains("+ storage 1000:"), "{out}");
    assert!(out.contains("+ portal 0:"), "{out}");
    assert!(out.contains(&format!("+ target {IQN}:")), "{out}");
    assert!(
        out.contains("~ performance: enableIoUring: (unset) -> false"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing applied"), "{out}");
    assert_eq!(json_of(&api, &["status"])["desiredGeneration"], before);
    assert_eq!(ok(&api, &["config", "get"]).trim(), "{}");

    let r = json_of(&api, &["apply", "-f", &f]);
    assert_eq!(r["applied"], true, "{r}");
    assert_eq!(r["diff"]["storagesAdded"][0], 1000, "{r}");
    let portal = wait_in_sync(&api, &mut dp);
    require_tool("iscsi-inq");
    inquiry(&format!("iscsi://{portal}/{IQN}/1"));

    // config get prints what apply takes back: applying it again changes nothing.
    let got = ok(&api, &["config", "get"]);
    let got_v: Value = serde_json::from_str(&got).expect("config get prints JSON");
    assert_eq!(got_v, config);
    std::fs::write(&file, &got).expect("write config");
    let out = ok(&api, &["apply", "-f", &f]);
    assert!(out.contains("no changes"), "{out}");

    // A change shows field by field; applying it reads from standard input too.
    let mut changed = config.clone();
    changed["storages"][0]["readOnly"] = Value::Bool(true);
    std::fs::write(&file, changed.to_string()).expect("write config");
    let out = ok(&api, &["apply", "-f", &f, "--dry-run"]);
    assert!(
        out.contains("~ storage 1000: readOnly: (unset) -> true"),
        "{out}"
    );
    let o = run_with_timeout(
        Command::new("sh").arg("-c").arg(format!(
            "{} --server {api} apply -f - < {f}",
            binary("tgtctl").display()
        )),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("applied: config generation"),
        "{}",
        text(&o)
    );
    assert_eq!(json_of(&api, &["storage", "get", "1000"])["readOnly"], true);

    // An invalid config is refused with the field's path and nothing changes; a file
    // that is not JSON is a usage error.
    let gen = json_of(&api, &["status"])["desiredGeneration"].clone();
    changed["storages"][0]["blockSize"] = serde_json::json!(1000);
    std::fs::write(&file, changed.to_string()).expect("write config");
    let o = tgtctl(&api, &["apply", "-f", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("storages[0].blockSize"), "{}", text(&o));
    std::fs::write(&file, "{ not json").expect("write config");
    let o = tgtctl(&api, &["apply", "-f", &f]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(json_of(&api, &["status"])["desiredGeneration"], gen);
}

fn pid_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie still shows state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn quickstart_serves_the_demo_target_and_stops_both_daemons() {
    require_tool("iscsi-inq");
    let dir = TempDir::new("cli-quickstart");
    let state = dir.path().join("state");
    for run in 0..2 {
        let mut child = Command::new(binary("tgtctl"))
            .arg("quickstart")
            .arg("--state-dir")
            .arg(&state)
            .args(["--portal", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
            .env_remove("TGTCTL_SERVER")
            .env_remove("TGTCTL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tgtctl quickstart");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.iter().any(|l: &String| l.starts_with("Ctrl-C")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = child.kill();
                    let o = child.wait_with_output().expect("wait");
                    panic!(
                        "quickstart did not come up in 60 s; stdout:\n{}\nstderr:\n{}",
                        seen.join("\n"),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        let field = |name: &str| {
            seen.iter()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(name)
                        .map(|r| r.trim_start_matches([' ', ':']).to_string())
                })
                .unwrap_or_else(|| panic!("no {name} line:\n{}", seen.join("\n")))
        };
        let portal: SocketAddr = field("portal").parse().expect("portal address");
        assert_eq!(field("target"), "iqn.2026-01.io.github.tgt-rs:demo");
        let api = field("REST API");
        let pids: Vec<u32> = field("pids")
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(pids.len(), 2, "{}", seen.join("\n"));
        assert!(
            seen.iter().any(|l| l.contains("iscsiadm -m discovery")),
            "{}",
            seen.join("\n")
        );

        inquiry(&format!(
            "iscsi://{portal}/iqn.2026-01.io.github.tgt-rs:demo/1"
        ));
        let s = ok(&api, &["status"]);
        assert!(s.contains("(in sync)"), "{s}");
        let image = state.join("demo.img");
        let meta = std::fs::metadata(&image).expect("demo image");
        assert_eq!(meta.len(), 1 << 30);
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) < 8192,
            "the demo image is sparse (run {run})"
        );

        // SIGTERM, as a service manager would send (Ctrl-C takes the same path).
        let k = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(k.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait quickstart") {
                break st;
            }
            assert!(Instant::now() < deadline, "quickstart did not stop in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "quickstart exit status {status}");
        for pid in pids {
            assert!(!pid_alive(pid), "daemon {pid} outlived quickstart");
        }
    }
}

/// Runs tgtctl in a session of its own (setsid), so it has no terminal to prompt on even
/// when the tests run in one.
fn tgtctl_without_tty(server: &str, args: &[&str]) -> Output {
    run_with_timeout(
        Command::new("setsid")
            .arg(binary("tgtctl"))
            .arg("--server")
            .arg(server)
            .args(args)
            .env_remove("TGTCTL_SERVER")
            .env_remove("TGTCTL_TOKEN"),
        Duration::from_secs(60),
    )
}

#[test]
fn access_verbs_change_only_their_part_and_never_print_a_secret() {
    let dir = TempDir::new("cli-access");
    let (mut dp, _cp, api) = start_daemons(dir.path());
    let image = dir.path().join("access.img").display().to_string();
    ok(
        &api,
        &[
            "storage", "create", "--id", "5", "--path", &image, "--size", "16M",
        ],
    );
    ok(
        &api,
        &["portal", "create", "--id", "0", "--address", "127.0.0.1:0"],
    );
    ok(
        &api,
        &["target", "create", IQN, "--portal", "0", "--lun", "0=5"],
    );
    wait_in_sync(&api, &mut dp);
    // Without ACL or CHAP the target is open, and status and the table say so.
    assert_eq!(
        json_of(&api, &["status"])["openTargets"],
        serde_json::json!([IQN])
    );
    assert!(ok(&api, &["status"]).contains("open targets"));
    assert!(ok(&api, &["target", "list"]).contains("OPEN"));

    let secret = dir.path().join("host1.secret");
    std::fs::write(&secret, "host1-secret-Z9\n").expect("write the secret");
    let mutual = dir.path().join("tgt.secret");
    std::fs::write(&mutual, "target-secret-Q7\n").expect("write the secret");
    let (secret_s, mutual_s) = (secret.display().to_string(), mutual.display().to_string());
    let out = ok(
        &api,
        &[
            "target",
            "auth",
            "set",
            IQN,
            "--username",
            "host1",
            "--secret-file",
            &secret_s,
            "--mutual-username",
            "disk",
            "--mutual-secret-file",
            &mutual_s,
            "--algorithms",
            "sha256,sha3-256",
        ],
    );
    assert_eq!(
        out,
        format!("target {IQN} now requires mutual CHAP as host1 (sha256,sha3-256)\n")
    );
    let out = ok(
        &api,
        &[
            "target",
            "acl",
            "set",
            IQN,
            "--initiator",
            "iqn.2026-11.org.example:host1",
            "--network",
            "127.0.0.0/8",
        ],
    );
    assert!(
        out.contains(
            "now admits only initiators iqn.2026-11.org.example:host1 from networks 127.0.0.0/8"
        ),
        "{out}"
    );
    let t = json_of(&api, &["target", "get", IQN]);
    assert_eq!(t["tpgts"]["1"], serde_json::json!([0]), "{t}");
    assert_eq!(t["luns"]["0"], 5, "{t}");
    assert_eq!(t["auth"]["chap"]["username"], "host1", "{t}");
    assert_eq!(
        t["auth"]["chap"]["algorithms"],
        serde_json::json!(["sha256", "sha3-256"]),
        "{t}"
    );
    assert_eq!(
        t["acl"]["networks"],
        serde_json::json!(["127.0.0.0/8"]),
        "{t}"
    );
    assert!(t["auth"]["chap"].get("secret").is_none(), "{t}");
    assert_eq!(
        json_of(&api, &["status"])["openTargets"],
        serde_json::json!([])
    );
    assert!(ok(&api, &["target", "list"]).contains("mutual-chap+acl"));

    // config get, then apply of the same file: the secrets it lacks are kept, nothing changes.
    let file = dir.path().join("config.json");
    std::fs::write(&file, ok(&api, &["config", "get"])).expect("write config");
    let f = file.display().to_string();
    let out = ok(&api, &["apply", "-f", &f]);
    assert!(out.contains("no changes"), "{out}");
    let state = std::fs::read_to_string(dir.path().join("state/desired.json")).expect("state");
    assert!(state.contains("host1-secret-Z9") && state.contains("target-secret-Q7"));

    // Discovery CHAP through the whole config keeps the targets' secrets.
    ok(
        &api,
        &[
            "discovery",
            "auth",
            "set",
            "--username",
            "disc",
            "--secret-file",
            &secret_s,
        ],
    );
    assert_eq!(
        json_of(&api, &["discovery", "get"])["auth"]["chap"]["username"],
        "disc"
    );
    let state = std::fs::read_to_string(dir.path().join("state/desired.json")).expect("state");
    assert!(
        state.contains("target-secret-Q7"),
        "the target's secret survived"
    );
    ok(&api, &["discovery", "auth", "clear"]);
    assert_eq!(json_of(&api, &["discovery", "get"]), serde_json::json!({}));

    // A secret is never an argument, and without a file and a terminal nothing is sent.
    let o = tgtctl(
        &api,
        &[
            "target",
            "auth",
            "set",
            IQN,
            "--username",
            "u",
            "--secret",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = tgtctl_without_tty(&api, &["target", "auth", "set", IQN, "--username", "u"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no terminal"), "{}", text(&o));
    assert_eq!(
        json_of(&api, &["target", "get", IQN])["auth"]["chap"]["username"],
        "host1"
    );

    // Clearing one half keeps the other; clearing both makes the target open again.
    ok(&api, &["target", "auth", "clear", IQN]);
    let t = json_of(&api, &["target", "get", IQN]);
    assert!(t.get("auth").is_none() && t["acl"].is_object(), "{t}");
    ok(&api, &["target", "acl", "clear", IQN]);
    assert_eq!(
        json_of(&api, &["status"])["openTargets"],
        serde_json::json!([IQN])
    );
    let o = tgtctl(&api, &["target", "acl", "set", IQN]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = tgtctl(
        &api,
        &["target", "auth", "clear", "iqn.2026-11.org.example:none"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
