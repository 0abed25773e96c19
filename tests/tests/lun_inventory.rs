//! System tests of UNIT ATTENTION 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED (SPC-4 6.33,
//! SAM-5 5.14): LUNs added and removed through the control plane's REST API while sessions
//! of the project's initiator are logged in, which shows the sense data of every answer.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    check_condition, login, start_controlplane, start_socket_dataplane, wait_in_sync, Daemon,
    TempDir,
};
use tgt_system_tests::initiator::{Error, Sense, Session};

const IQN: &str = "iqn.2026-11.org.example.systest:inventory";

/// The condition under test: UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED.
const LUNS_CHANGED: Sense = Sense {
    key: 0x06,
    asc: 0x3f,
    ascq: 0x0e,
};

/// One exchange with the control plane: status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let r = support::http(addr, method, path, body);
    (r.status, r.body)
}

fn get_json(api: SocketAddr, path: &str) -> Value {
    let (status, body) = http(api, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Creates a 64 MiB sparse storage per `(deviceID, file)` in `dir`, portal 0 on loopback
/// port 0 and the target with portal group 1, all through REST.
fn configure(api: SocketAddr, dir: &Path, storages: &[(u32, &str)]) {
    for (id, name) in storages {
        let body =
            json!({"deviceID": id, "path": dir.join(name).display().to_string(), "size": 64 << 20});
        let (status, body) = http(api, "POST", "/api/v1/storages", Some(&body.to_string()));
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/portals",
        Some(r#"{"id": 0, "portal": "127.0.0.1:0"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(r#"{"tpgts": {"1": [0]}}"#),
    );
    assert_eq!(status, 201, "{body}");
}

/// Maps `lun` to storage `device_id` through REST and waits until the data plane runs it.
fn add_lun(api: SocketAddr, dp: &mut Daemon, lun: u16, device_id: u32) {
    let (status, body) = http(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}/luns/{lun}"),
        Some(&json!({ "deviceID": device_id }).to_string()),
    );
    assert!(
        status == 201 || status == 200,
        "PUT LUN {lun}: {status} {body}"
    );
    wait_in_sync(api, dp);
}

/// Unmaps `lun` through REST and waits until the data plane runs without it.
fn remove_lun(api: SocketAddr, dp: &mut Daemon, lun: u16) {
    let (status, body) = http(
        api,
        "DELETE",
        &format!("/api/v1/targets/{IQN}/luns/{lun}"),
        None,
    );
    assert!(
        status == 200 || status == 204,
        "DELETE LUN {lun}: {status} {body}"
    );
    wait_in_sync(api, dp);
}

fn read1(s: &Session, lun: u64) -> Result<Vec<u8>, Error> {
    s.read10(lun, 0, 1, 512)
}

#[test]
fn a_lun_change_is_reported_once_per_lun_to_sessions_logged_in_before_it() {
    let dir = TempDir::new("lun-inventory");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, api) = start_controlplane(dir.path());
    configure(
        api,
        dir.path(),
        &[(51, "a.img"), (52, "b.img"), (53, "c.img")],
    );
    add_lun(api, &mut dp, 0, 51);
    add_lun(api, &mut dp, 1, 52);
    let portal = wait_in_sync(api, &mut dp);

    let a = login(portal, IQN);
    a.test_unit_ready(0).expect("LUN 0 ready before the change");
    a.test_unit_ready(1).expect("LUN 1 ready before the change");
    assert_eq!(a.report_luns(0).expect("REPORT LUNS"), vec![0, 1]);

    add_lun(api, &mut dp, 2, 53);

    // A session that logs in after the change has nothing to be told.
    let b = login(portal, IQN);
    b.test_unit_ready(0)
        .expect("a new session meets no unit attention");
    b.test_unit_ready(1)
        .expect("a new session meets no unit attention");

    // INQUIRY neither reports nor clears the condition (SAM-5 5.14 a).
    a.inquiry(0)
        .expect("INQUIRY runs despite the pending condition");
    // The next other command to each LUN that existed before reports it, once.
    let sense = check_condition(read1(&a, 0), "READ (10) of LUN 0 after LUN 2 was added");
    assert_eq!(sense, LUNS_CHANGED);
    // REPORT LUNS lists the new LUN and clears the condition on every LUN of the nexus,
    // so LUN 1 does not report it any more (SAM-5 5.14 b).
    assert_eq!(a.report_luns(0).expect("REPORT LUNS"), vec![0, 1, 2]);
    read1(&a, 0).expect("LUN 0 reads after the unit attention");
    read1(&a, 1).expect("REPORT LUNS cleared LUN 1's condition");
    // The new LUN starts without one.
    read1(&a, 2).expect("the new LUN reads at once");

    remove_lun(api, &mut dp, 2);

    // REQUEST SENSE returns the condition as sense data and clears it for that LUN only
    // (SAM-5 5.14 e).
    assert_eq!(
        a.request_sense(1).expect("REQUEST SENSE"),
        Some(LUNS_CHANGED)
    );
    assert_eq!(a.request_sense(1).expect("REQUEST SENSE"), None);
    a.test_unit_ready(1).expect("LUN 1 has nothing pending");
    let sense = check_condition(a.test_unit_ready(0), "TEST UNIT READY of LUN 0");
    assert_eq!(sense, LUNS_CHANGED);
    a.test_unit_ready(0).expect("reported once");
    // The removed LUN is gone, not in unit attention.
    let sense = check_condition(a.test_unit_ready(2), "TEST UNIT READY of removed LUN 2");
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (0x05, 0x25, 0x00),
        "LOGICAL UNIT NOT SUPPORTED"
    );
    assert_eq!(a.report_luns(0).expect("REPORT LUNS"), vec![0, 1]);

    // Session b logged in while LUN 2 existed, so its removal is news to b.
    let sense = check_condition(b.test_unit_ready(1), "TEST UNIT READY of LUN 1 on b");
    assert_eq!(sense, LUNS_CHANGED);
    b.test_unit_ready(1).expect("reported once");

    a.logout().expect("logout a");
    b.logout().expect("logout b");
}

#[test]
fn verified_load_retries_the_unit_attention_of_a_lun_change_and_loses_nothing() {
    let dir = TempDir::new("lun-inventory-load");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, api) = start_controlplane(dir.path());
    configure(api, dir.path(), &[(61, "a.img"), (62, "b.img")]);
    add_lun(api, &mut dp, 0, 61);
    let portal = wait_in_sync(api, &mut dp);

    let load = std::thread::spawn(move || {
        tgt_system_tests::verified_load(
            portal,
            IQN,
            0,
            tgt_system_tests::LoadOptions {
                sessions: 2,
                duration: Duration::from_secs(4),
                region_blocks: Some(8192),
                ..tgt_system_tests::LoadOptions::default()
            },
        )
    });
    // Change the inventory only once a session of the load is logged in (the load's probe
    // session logs out before its workers' sessions log in, so two sessions include one).
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(api, "/api/v1/sessions")
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(
            Instant::now() < deadline && !load.is_finished(),
            "the load's sessions did not log in; data plane log:\n{}",
            dp.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    add_lun(api, &mut dp, 1, 62);
    remove_lun(api, &mut dp, 1);

    let report = load.join().expect("load thread").expect("load runs");
    assert!(
        report.passed(),
        "the running sessions must see no error: {:?} {:?}\n{}",
        report.first_errors,
        report.first_mismatches,
        dp.log_text()
    );
    assert!(report.writes > 0 && report.verified_blocks > 0);
    assert!(
        report.unit_attentions >= 1,
        "a session logged in before the change must have met REPORTED LUNS DATA HAS CHANGED"
    );
}

#[test]
fn a_lun_moved_to_another_storage_reports_inquiry_and_capacity_changes() {
    let dir = TempDir::new("lun-replaced");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, api) = start_controlplane(dir.path());
    configure(api, dir.path(), &[(61, "a.img")]);
    // A second storage, twice as large, to move LUN 1 onto.
    let body = json!({"deviceID": 62, "path": dir.path().join("b.img").display().to_string(), "size": 128 << 20});
    let (status, body) = http(api, "POST", "/api/v1/storages", Some(&body.to_string()));
    assert_eq!(status, 201, "{body}");
    add_lun(api, &mut dp, 1, 61);
    let portal = wait_in_sync(api, &mut dp);

    let s = login(portal, IQN);
    let before = s.read_capacity16(1).expect("READ CAPACITY before the move");
    add_lun(api, &mut dp, 1, 62);

    // Same LUN number, so no REPORTED LUNS DATA HAS CHANGED; but the logical unit behind it
    // is another device of another size: INQUIRY DATA HAS CHANGED, then CAPACITY DATA HAS
    // CHANGED, each once, then the new capacity.
    let first = check_condition(s.read_capacity16(1), "READ CAPACITY after the move");
    assert_eq!((first.key, first.asc, first.ascq), (0x06, 0x3f, 0x03));
    let second = check_condition(s.read_capacity16(1), "READ CAPACITY again");
    assert_eq!((second.key, second.asc, second.ascq), (0x06, 0x2a, 0x09));
    let after = s.read_capacity16(1).expect("READ CAPACITY once told");
    assert_eq!(after.blocks, before.blocks * 2, "{before:?} -> {after:?}");
    s.logout().expect("logout");
}
