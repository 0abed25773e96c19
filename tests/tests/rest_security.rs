//! The REST API off loopback, on the real binaries: built-in TLS with a certificate made in
//! the test (tgtctl trusts it only with `--ca-file`), the bearer token that start-up
//! demands on a non-loopback address and every call then needs, and CHAP secrets that no
//! answer, no `/metrics` scrape, no log line and no `tgtctl` output ever carries.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{
    binary, http, run_with_timeout, start_socket_dataplane, text, wait_for_file, wait_in_sync,
    Daemon, TempDir,
};

const IQN: &str = "iqn.2026-11.org.example.systest:security";
const SECRET: &str = "initiator-secret-7Q2";
const MUTUAL: &str = "target-secret-9Z4";
const DISCOVERY: &str = "discovery-secret-3K8";
const TOKEN: &str = "token-5f1d2c9e8a7b";

/// A control plane started with `args` (plus the state dir, socket and ready file under
/// `dir`); returns it and the address from its ready file.
fn start_controlplane(dir: &Path, args: &[&str]) -> (Daemon, SocketAddr) {
    let ready = dir.join("cp-ready.json");
    let log = dir.join("controlplane.log");
    let child = Command::new(binary("tgt-controlplane"))
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--dataplane-socket")
        .arg(dir.join("dp.sock"))
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "info")
        .env_remove("TGT_CONTROLPLANE_TOKEN_FILE")
        .env_remove("TGT_CONTROLPLANE_LISTEN")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn tgt-controlplane");
    let mut d = Daemon { child, log };
    let ready = wait_for_file(&mut d, &ready, "tgt-controlplane");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready file is JSON");
    let addr = v["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("listen address in the ready file");
    (d, addr)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a test file");
    p.display().to_string()
}

/// One HTTP/1.1 exchange with headers (the support helper sends none).
fn http_with(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn tgtctl(args: &[&str]) -> Output {
    run_with_timeout(
        Command::new(binary("tgtctl"))
            .args(args)
            .env_remove("TGTCTL_SERVER")
            .env_remove("TGTCTL_TOKEN")
            .env_remove("TGTCTL_TOKEN_FILE")
            .env_remove("TGTCTL_CA_FILE"),
        Duration::from_secs(60),
    )
}

#[test]
fn start_up_refuses_a_non_loopback_address_without_a_token() {
    let dir = TempDir::new("sec-refuse");
    let o = run_with_timeout(
        Command::new(binary("tgt-controlplane"))
            .args(["--listen", "0.0.0.0:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--dataplane-socket")
            .arg(dir.path().join("dp.sock"))
            .env_remove("TGT_CONTROLPLANE_TOKEN_FILE"),
        Duration::from_secs(30),
    );
    assert!(
        !o.status.success(),
        "started without a token:\n{}",
        text(&o)
    );
    assert!(
        text(&o).contains("refusing to listen on 0.0.0.0:0 without a bearer token"),
        "{}",
        text(&o)
    );
    // An empty token file is no token either.
    let empty = write(dir.path(), "empty-token", "\n");
    let o = run_with_timeout(
        Command::new(binary("tgt-controlplane"))
            .args([
                "--listen",
                "0.0.0.0:0",
                "--token-file",
                &empty,
                "--state-dir",
            ])
            .arg(dir.path().join("state"))
            .arg("--dataplane-socket")
            .arg(dir.path().join("dp.sock")),
        Duration::from_secs(30),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is empty"), "{}", text(&o));
}

#[test]
fn off_loopback_every_call_but_the_probes_needs_the_token() {
    let dir = TempDir::new("sec-token");
    let token_file = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let (_cp, bound) = start_controlplane(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--token-file", &token_file],
    );
    assert!(bound.ip().is_unspecified(), "{bound}");
    // Reached through loopback, as every test here must.
    let addr: SocketAddr = format!("127.0.0.1:{}", bound.port())
        .parse()
        .expect("address");
    for path in [
        "/api/v1/config",
        "/api/v1/status",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(http_with(addr, "GET", path, None).0, 401, "{path}");
        assert_eq!(http_with(addr, "GET", path, Some("wrong")).0, 401, "{path}");
        assert_eq!(http_with(addr, "GET", path, Some(TOKEN)).0, 200, "{path}");
    }
    assert_eq!(
        http_with(addr, "DELETE", "/api/v1/performance", None).0,
        401
    );
    assert_eq!(http_with(addr, "GET", "/healthz", None).0, 200);
    assert_eq!(http_with(addr, "GET", "/readyz", None).0, 503);

    let server = format!("http://{addr}");
    let o = tgtctl(&["--server", &server, "storage", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--token-file"),
        "the hint names the option:\n{}",
        text(&o)
    );
    let o = tgtctl(&[
        "--server",
        &server,
        "--token-file",
        &token_file,
        "storage",
        "list",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn https_works_with_the_ca_file_and_is_refused_without_it() {
    let dir = TempDir::new("sec-tls");
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("make a self-signed certificate");
    let cert = write(dir.path(), "cert.pem", &made.cert.pem());
    let key = write(dir.path(), "key.pem", &made.signing_key.serialize_pem());
    let token_file = write(dir.path(), "token", TOKEN);
    let (mut cp, addr) = start_controlplane(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            &token_file,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let server = format!("https://{addr}");
    let o = tgtctl(&[
        "--server",
        &server,
        "--ca-file",
        &cert,
        "--token-file",
        &token_file,
        "status",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status is JSON");
    assert_eq!(v["dataplaneConnected"], false, "{v}");
    // Without the CA the certificate is not trusted: nothing is sent.
    let o = tgtctl(&["--server", &server, "--token-file", &token_file, "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // A CA that did not sign it is refused too.
    let other =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let other_pem = write(dir.path(), "other.pem", &other.cert.pem());
    let o = tgtctl(&[
        "--server",
        &server,
        "--ca-file",
        &other_pem,
        "--token-file",
        &token_file,
        "status",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // Plain HTTP to the TLS port gets no answer the client can use.
    let o = tgtctl(&[
        "--server",
        &format!("http://{addr}"),
        "--token-file",
        &token_file,
        "status",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    // The server is still serving after all that.
    let o = tgtctl(&[
        "--server",
        &server,
        "--ca-file",
        &cert,
        "--token-file",
        &token_file,
        "storage",
        "list",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(cp.alive(), "{}", cp.log_text());
    // A key that does not match the certificate stops start-up with a clear error.
    let dir2 = TempDir::new("sec-tls-bad");
    let o = run_with_timeout(
        Command::new(binary("tgt-controlplane"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &cert,
                "--state-dir",
            ])
            .arg(dir2.path().join("state"))
            .arg("--dataplane-socket")
            .arg(dir2.path().join("dp.sock")),
        Duration::from_secs(30),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("private key"), "{}", text(&o));
}

#[test]
fn secrets_never_leave_the_control_plane() {
    let dir = TempDir::new("sec-secrets");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (cp, addr) = start_controlplane(dir.path(), &["--listen", "127.0.0.1:0"]);
    let image = dir.path().join("disk.img");
    let config = json!({
        "storages": [{"deviceID": 1, "path": image.display().to_string(), "size": 16 << 20}],
        "iscsiportals": [{"id": 0, "portal": "127.0.0.1:0"}],
        "iscsitargets": {IQN: {
            "tpgts": {"1": [0]}, "luns": {"0": 1},
            "auth": {"chap": {"username": "host1", "secret": SECRET,
                              "mutualUsername": "tgt", "mutualSecret": MUTUAL}},
            "acl": {"initiators": ["iqn.2026-11.org.example:host1"]}
        }},
        "discovery": {"auth": {"chap": {"username": "disc", "secret": DISCOVERY}}}
    });
    let r = http(addr, "PUT", "/api/v1/config", Some(&config.to_string()));
    assert_eq!(r.status, 200, "{}", r.body);
    wait_in_sync(addr, &mut dp);
    // A change through tgtctl with a secret file, and a read-modify-write of the target.
    let server = format!("http://{addr}");
    let secret_file = write(dir.path(), "rotated", "rotated-secret-4M1\n");
    let o = tgtctl(&[
        "--server",
        &server,
        "target",
        "auth",
        "set",
        IQN,
        "--username",
        "host1",
        "--secret-file",
        &secret_file,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = http(addr, "GET", &format!("/api/v1/targets/{IQN}"), None);
    let back = http(
        addr,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(&t.body),
    );
    assert_eq!(back.status, 200, "{}", back.body);
    wait_in_sync(addr, &mut dp);

    let secrets = [SECRET, MUTUAL, DISCOVERY, "rotated-secret-4M1"];
    let leaks = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows a secret:\n{text}");
        }
    };
    for path in [
        "/api/v1/config",
        "/api/v1/targets",
        &format!("/api/v1/targets/{IQN}"),
        &format!("/api/v1/targets/{IQN}/luns"),
        "/api/v1/status",
        "/api/v1/sessions",
        "/metrics",
    ] {
        let r = http(addr, "GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        leaks(path, &r.body);
    }
    // The config says who is protected: no target is open.
    let status = http(addr, "GET", "/api/v1/status", None).json();
    assert_eq!(status["openTargets"], json!([]), "{status}");
    for args in [
        &["target", "list"][..],
        &["target", "get", IQN, "-o", "json"],
        &["discovery", "get", "-o", "json"],
        &["config", "get"],
        &["status"],
        &["metrics", "-o", "json"],
    ] {
        let mut a = vec!["--server", server.as_str()];
        a.extend_from_slice(args);
        let o = tgtctl(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        leaks(&format!("tgtctl {args:?}"), &text(&o));
    }
    // The state file holds them, for the owner only.
    let state = dir.path().join("state/desired.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&state).expect("state file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&state)
        .expect("state")
        .contains("rotated-secret-4M1"));
    // Every change is in the log with who made it and what changed, and no secret is.
    let log = cp.log_text();
    leaks("the control plane's log", &log);
    assert!(log.contains("config changed"), "{log}");
    assert!(log.contains("who=peer 127.0.0.1:"), "{log}");
    assert!(log.contains("CHAP secret changed (not shown)"), "{log}");
    assert!(
        log.contains("+ target iqn.2026-11.org.example.systest:security"),
        "{log}"
    );
}
