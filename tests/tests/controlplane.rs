//! System tests of the two daemons together: `tgt-dataplane --control-socket` configured
//! only through `tgt-controlplane`'s REST API, judged by libiscsi's `iscsi-inq`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    require_tool, run_with_timeout, start_controlplane, start_socket_dataplane, text, Daemon,
    TempDir,
};

const IQN: &str = "iqn.2026-11.org.example.systest:rest";

/// One HTTP/1.1 exchange (`Connection: close`), enough for a JSON API on loopback.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the control plane");
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
/// portal, and returns that portal's address.
fn wait_in_sync(cp: SocketAddr, dp: &mut Daemon) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = http(cp, "GET", "/api/v1/status", None).json();
        if s["inSync"] == true {
            if let Some(addr) = s["dataplane"]["portals"][0]["bound"]
                .as_str()
                .and_then(|a| a.parse().ok())
            {
                return addr;
            }
        }
        assert!(
            Instant::now() < deadline,
            "data plane not in sync in 30 s: {s}; data plane log:\n{}",
            dp.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the storages (64 MiB sparse files in `dir`), portal 0 on loopback port 0, the
/// target with portal group 1, and LUN 0 on the first storage, all through REST.
fn configure_through_rest(api: SocketAddr, dir: &Path, storages: &[(u32, &str)]) {
    for (id, name) in storages {
        let body =
            json!({"deviceID": id, "path": dir.join(name).display().to_string(), "size": 64 << 20});
        let r = http(api, "POST", "/api/v1/storages", Some(&body.to_string()));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let steps = [
        (
            "POST",
            "/api/v1/portals".to_string(),
            r#"{"id": 0, "portal": "127.0.0.1:0"}"#.to_string(),
        ),
        (
            "PUT",
            format!("/api/v1/targets/{IQN}"),
            r#"{"tpgts": {"1": [0]}}"#.to_string(),
        ),
        (
            "PUT",
            format!("/api/v1/targets/{IQN}/luns/0"),
            json!({"deviceID": storages[0].0}).to_string(),
        ),
    ];
    for (method, path, body) in steps {
        let r = http(api, method, &path, Some(&body));
        assert_eq!(r.status, 201, "{method} {path}: {}", r.body);
    }
}

fn inquiry(portal: SocketAddr, lun: u16) {
    let out = run_with_timeout(
        Command::new("iscsi-inq").arg(format!("iscsi://{portal}/{IQN}/{lun}")),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(out.status.success(), "iscsi-inq failed:\n{t}");
    assert!(
        t.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "not a direct-access device:\n{t}"
    );
}

fn expect_problem(r: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    let p = r.json();
    assert_eq!(p["status"], status, "{what}: {p}");
    p
}

#[test]
fn configures_the_data_plane_through_rest_and_reapplies_after_a_restart() {
    require_tool("iscsi-inq");
    let dir = TempDir::new("controlplane");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (mut cp, api) = start_controlplane(dir.path());

    configure_through_rest(api, dir.path(), &[(42, "disk.img")]);

    let portal = wait_in_sync(api, &mut dp);
    inquiry(portal, 0);
    let status = http(api, "GET", "/api/v1/status", None).json();
    assert_eq!(
        status["dataplane"]["targets"][0]["luns"][0]["activeBackend"], "file",
        "{status}"
    );

    // Bad requests get the documented problem and change nothing.
    let before = http(api, "GET", "/api/v1/config", None);
    let etag = before.header("etag").map(str::to_string);
    expect_problem(
        &http(api, "POST", "/api/v1/storages", Some("{\"deviceID\": ")),
        400,
        "malformed JSON",
    );
    let p = expect_problem(
        &http(
            api,
            "POST",
            "/api/v1/storages",
            Some(r#"{"deviceID": 43, "path": "/x", "colour": 1}"#),
        ),
        400,
        "unknown field",
    );
    assert!(p.to_string().contains("colour"), "{p}");
    let p = expect_problem(
        &http(
            api,
            "POST",
            "/api/v1/storages",
            Some(r#"{"deviceID": 43, "path": "/x", "blockSize": 1000}"#),
        ),
        422,
        "invalid block size",
    );
    assert_eq!(p["errors"][0]["path"], "storages[1].blockSize", "{p}");
    let again = json!({"deviceID": 42, "path": dir.path().join("disk.img").display().to_string()});
    expect_problem(
        &http(api, "POST", "/api/v1/storages", Some(&again.to_string())),
        409,
        "duplicate id",
    );
    expect_problem(
        &http(api, "DELETE", "/api/v1/storages/42", None),
        409,
        "storage in use",
    );
    expect_problem(
        &http(
            api,
            "GET",
            "/api/v1/targets/iqn.2026-11.org.example:none",
            None,
        ),
        404,
        "missing target",
    );
    let after = http(api, "GET", "/api/v1/config", None);
    assert_eq!(after.header("etag").map(str::to_string), etag);
    assert_eq!(after.body, before.body);

    let metrics = http(api, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("tgt_dataplane_config_generation"),
        "{}",
        metrics.body
    );
    // I/O through the data plane moves the counters the control plane exports.
    let load = tgt_system_tests::verified_load(
        portal,
        IQN,
        0,
        tgt_system_tests::LoadOptions {
            sessions: 1,
            duration: std::time::Duration::from_secs(2),
            region_blocks: Some(4096),
            ..tgt_system_tests::LoadOptions::default()
        },
    )
    .expect("load runs");
    assert!(load.passed(), "{:?}", load.first_errors);
    let metrics = http(api, "GET", "/metrics", None).body;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("lun=\"0\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    assert!(
        value("tgt_lun_read_commands_total") >= load.reads,
        "{metrics}"
    );
    assert!(
        value("tgt_lun_write_commands_total") >= load.writes,
        "{metrics}"
    );
    assert!(
        value("tgt_lun_write_bytes_total") >= load.bytes_written,
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tgt_login_logins_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let spec = http(api, "GET", "/api/v1/openapi.json", None).json();
    assert!(spec["paths"]["/api/v1/storages"].is_object());

    // Kill the data plane: the control plane notices and pushes the config again.
    drop(dp);
    let mut dp = start_socket_dataplane(dir.path(), 2);
    let portal = wait_in_sync(api, &mut dp);
    inquiry(portal, 0);
    assert!(
        cp.log_text().contains("desired config pushed"),
        "{}",
        cp.log_text()
    );
    assert!(cp.alive());
}

#[test]
fn adding_and_removing_luns_under_verified_load_loses_nothing() {
    let dir = TempDir::new("cp-under-load");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, api) = start_controlplane(dir.path());
    configure_through_rest(api, dir.path(), &[(42, "a.img"), (43, "b.img")]);
    let portal = wait_in_sync(api, &mut dp);

    let load = std::thread::spawn(move || {
        tgt_system_tests::verified_load(
            portal,
            IQN,
            0,
            tgt_system_tests::LoadOptions {
                sessions: 2,
                duration: Duration::from_secs(6),
                region_blocks: Some(8192),
                ..tgt_system_tests::LoadOptions::default()
            },
        )
    });
    // While the load runs: add LUN 1, use it, remove it again.
    let r = http(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}/luns/1"),
        Some(r#"{"deviceID": 43}"#),
    );
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.body
    );
    wait_in_sync(api, &mut dp);
    inquiry(portal, 1);
    let r = http(
        api,
        "DELETE",
        &format!("/api/v1/targets/{IQN}/luns/1"),
        None,
    );
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    wait_in_sync(api, &mut dp);
    let gone = run_with_timeout(
        Command::new("iscsi-inq").arg(format!("iscsi://{portal}/{IQN}/1")),
        Duration::from_secs(30),
    );
    assert!(
        !gone.status.success(),
        "LUN 1 must be gone after its removal"
    );

    let report = load.join().expect("load thread").expect("load runs");
    assert!(
        report.passed(),
        "the running sessions must see no error: {:?} {:?}\n{}",
        report.first_errors,
        report.first_mismatches,
        dp.log_text()
    );
    assert!(report.writes > 0 && report.verified_blocks > 0);
}
