//! System tests of the two daemons together: `tgt-dataplane --control-socket` configured
//! only through `tgt-controlplane`'s REST API, judged by libiscsi's `iscsi-inq`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    http, require_tool, run_with_timeout, start_controlplane, start_socket_dataplane, text,
    wait_in_sync, Reply, TempDir,
};

const IQN: &str = "iqn.2026-11.org.example.systest:rest";

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    fn get(api: SocketAddr) -> Self {
        let r = http(api, "GET", "/metrics", None);
        assert_eq!(r.status, 200, "{}", r.body);
        Self(r.body)
    }

    /// `(labels, value)` of every sample of `name` (exactly that name).
    fn samples(&self, name: &str) -> Vec<(String, f64)> {
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter(|rest| rest.starts_with('{') || rest.starts_with(' '))
            .filter_map(|rest| {
                let (labels, v) = rest.rsplit_once(' ')?;
                let v = match v {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((labels.to_string(), v))
            })
            .collect()
    }

    /// The value of the sample of `name` carrying every label in `labels` (0 when absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .into_iter()
            .find(|(l, _)| has_labels(l, labels))
            .map_or(0.0, |(_, v)| v)
    }

    /// `(le, cumulative count)` of the buckets of histogram `name` with `labels`.
    fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        self.samples(&format!("{name}_bucket"))
            .into_iter()
            .filter(|(l, _)| has_labels(l, labels))
            .filter_map(|(l, v)| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = match le {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().ok()?,
                };
                Some((le, v))
            })
            .collect()
    }
}

fn has_labels(rendered: &str, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| rendered.contains(&format!("{k}=\"{v}\"")))
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
    // A second LUN on the io_uring backend, so the ring counters have work to count.
    let uring_storage = json!({
        "deviceID": 44,
        "path": dir.path().join("ring.img").display().to_string(),
        "size": 64 << 20,
        "backendType": "iouring",
    });
    let r = http(
        api,
        "POST",
        "/api/v1/storages",
        Some(&uring_storage.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}/luns/1"),
        Some(r#"{"deviceID": 44}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let portal = wait_in_sync(api, &mut dp);
    let status = http(api, "GET", "/api/v1/status", None).json();
    let ring_backend = status["dataplane"]["targets"][0]["luns"][1]["activeBackend"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uring_before = Scrape::get(api);

    // I/O through the data plane moves the counters the control plane exports.
    let load = |lun: u64| {
        let load = tgt_system_tests::verified_load(
            portal,
            IQN,
            lun,
            tgt_system_tests::LoadOptions {
                sessions: 1,
                duration: std::time::Duration::from_secs(2),
                region_blocks: Some(4096),
                ..tgt_system_tests::LoadOptions::default()
            },
        )
        .expect("load runs");
        assert!(load.passed(), "{:?}", load.first_errors);
        load
    };
    let load0 = load(0);
    let load1 = load(1);
    // Every session has logged out and every command was answered: nothing is in flight.
    let m = Scrape::get(api);
    for (lun, load) in [("0", &load0), ("1", &load1)] {
        let l = [("lun", lun)];
        let reads = m.value("tgt_lun_read_commands_total", &l);
        let writes = m.value("tgt_lun_write_commands_total", &l);
        assert!(reads >= load.reads as f64, "LUN {lun}\n{}", m.0);
        assert!(writes >= load.writes as f64, "LUN {lun}\n{}", m.0);
        assert!(
            m.value("tgt_lun_write_bytes_total", &l) >= load.bytes_written as f64,
            "LUN {lun}\n{}",
            m.0
        );
        // The histograms count exactly the commands the counters count.
        for (op, n) in [("read", reads), ("write", writes)] {
            let l = [("lun", lun), ("op", op)];
            let b = m.buckets("tgt_lun_io_duration_seconds", &l);
            assert!(
                b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "buckets not cumulative: {b:?}"
            );
            assert_eq!(b.last().map(|x| x.0), Some(f64::INFINITY), "{b:?}");
            assert_eq!(b.last().map(|x| x.1), Some(n), "{op} LUN {lun}\n{}", m.0);
            assert_eq!(m.value("tgt_lun_io_duration_seconds_count", &l), n);
            assert!(m.value("tgt_lun_io_duration_seconds_sum", &l) > 0.0);
        }
        assert!(
            m.value("tgt_lun_commands_total", &l) >= reads + writes,
            "{}",
            m.0
        );
        assert_eq!(m.value("tgt_lun_commands_in_flight", &l), 0.0, "{}", m.0);
    }
    assert!(m.value("tgt_login_logins_total", &[]) > 0.0, "{}", m.0);
    if ring_backend.starts_with("iouring") {
        let moved = |name: &str| m.value(name, &[]) - uring_before.value(name, &[]);
        let ops = (load1.reads + load1.writes) as f64;
        assert!(moved("tgt_uring_submissions_total") >= ops, "{}", m.0);
        assert!(moved("tgt_uring_completions_total") >= ops, "{}", m.0);
        assert!(moved("tgt_uring_enter_calls_total") > 0.0, "{}", m.0);
        assert!(
            m.value("tgt_uring_completions_total", &[])
                <= m.value("tgt_uring_submissions_total", &[]),
            "{}",
            m.0
        );
    }
    // The pools exist since the first LUN, and every buffer comes back after the load (a
    // Data-In buffer is released once written to the socket, so poll for the last ones).
    assert!(
        m.value("tgt_numa_pool_buffer_size_bytes", &[("node", "0")]) > 0.0,
        "{}",
        m.0
    );
    let in_use = [("node", "0"), ("state", "in_use")];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Scrape::get(api).value("tgt_numa_pool_buffers", &in_use) != 0.0 {
        assert!(Instant::now() < deadline, "{}", Scrape::get(api).0);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        m.value("tgt_numa_pool_buffers", &[("node", "0"), ("state", "free")]) > 0.0,
        "{}",
        m.0
    );

    // While a session is logged in, its portal counts its connection and the session.
    let session = tgt_system_tests::initiator::Session::login(
        portal,
        &tgt_system_tests::initiator::SessionOptions {
            target_name: Some(IQN.to_string()),
            ..Default::default()
        },
    )
    .expect("login");
    let m = Scrape::get(api);
    assert!(
        m.value("tgt_portal_connections", &[("portal", "0")]) >= 1.0,
        "{}",
        m.0
    );
    assert!(
        m.value("tgt_portal_sessions", &[("portal", "0")]) >= 1.0,
        "{}",
        m.0
    );
    // An EXTENDED COPY through LUN 0 (its copy manager) from LUN 0 to LUN 1, and one that
    // fails (a CSCD naming no unit of the data plane), move LUN 0's copy counters.
    let copies = |m: &Scrape| {
        let l = [("lun", "0")];
        let present = m
            .samples("tgt_lun_copies_total")
            .iter()
            .any(|(labels, _)| has_labels(labels, &l));
        assert!(present, "no tgt_lun_copies_total for LUN 0\n{}", m.0);
        (
            m.value("tgt_lun_copies_total", &l),
            m.value("tgt_lun_copy_bytes_total", &l),
            m.value("tgt_lun_copy_failures_total", &l),
        )
    };
    let before = copies(&Scrape::get(api));
    let naa0 = tgt_system_tests::xcopy::naa(&session, 0).expect("NAA of LUN 0");
    let naa1 = tgt_system_tests::xcopy::naa(&session, 1).expect("NAA of LUN 1");
    let seg = tgt_system_tests::xcopy::Segment {
        source: 0,
        destination: 1,
        blocks: 64,
        source_lba: 0,
        destination_lba: 128,
    };
    let list = tgt_system_tests::xcopy::parameter_list(1, &[naa0, naa1], 512, &[seg]);
    let o = tgt_system_tests::xcopy::extended_copy(&session, 0, &list).expect("EXTENDED COPY");
    assert_eq!(o.status, 0, "EXTENDED COPY: {:02x?}", o.sense);
    let list = tgt_system_tests::xcopy::parameter_list(2, &[naa0, [0x6f; 16]], 512, &[seg]);
    let o = tgt_system_tests::xcopy::extended_copy(&session, 0, &list).expect("EXTENDED COPY");
    assert_eq!(o.status, 2, "a copy to no unit fails");
    let after = copies(&Scrape::get(api));
    assert_eq!(after.0 - before.0, 2.0, "copies: {before:?} -> {after:?}");
    assert_eq!(
        after.1 - before.1,
        64.0 * 512.0,
        "bytes: {before:?} -> {after:?}"
    );
    assert_eq!(after.2 - before.2, 1.0, "failures: {before:?} -> {after:?}");
    session.logout().expect("logout");
    // The connection task ends after the logout response went out; poll for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Scrape::get(api).value("tgt_portal_connections", &[("portal", "0")]) != 0.0 {
        assert!(Instant::now() < deadline, "{}", Scrape::get(api).0);
        std::thread::sleep(Duration::from_millis(20));
    }
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
