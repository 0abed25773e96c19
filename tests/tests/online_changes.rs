//! System tests of configuration changes that reach sessions already logged in, driven
//! through the control plane's REST API and observed with the project's initiator:
//!
//! - a storage grown through REST is grown online: READ CAPACITY (16) (SBC-3 §5.16) answers
//!   the new size on the next command, after UNIT ATTENTION 2Ah/09h CAPACITY DATA HAS
//!   CHANGED once per session (SBC-3 §4.11, SPC-4 §5.13), the new blocks take I/O and the old
//!   ones keep their data; a smaller size is refused with 409 and changes nothing;
//! - a portal removed through REST closes the connections accepted on it (the initiator may
//!   log in again elsewhere, RFC 7143 §6), while sessions on the other portal go on.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{
    check_condition, http, login, poll_until, start_controlplane, start_socket_dataplane,
    wait_in_sync, Daemon, TempDir,
};
use tgt_system_tests::initiator::{Error, Sense, Session};

const IQN: &str = "iqn.2026-12.org.example.systest:online";
const DEVICE_ID: u64 = 71;

/// UNIT ATTENTION, CAPACITY DATA HAS CHANGED.
const CAPACITY_CHANGED: Sense = Sense {
    key: 0x06,
    asc: 0x2a,
    ascq: 0x09,
};

/// One REST call that must answer with one of `ok`; returns the body.
fn rest(api: SocketAddr, method: &str, path: &str, body: Option<&str>, ok: &[u16]) -> String {
    let r = http(api, method, path, body);
    assert!(
        ok.contains(&r.status),
        "{method} {path} {body:?}: {} {}",
        r.status,
        r.body
    );
    r.body
}

/// The storage document of the test's one storage with `size_bytes`.
fn storage(dir: &Path, size_bytes: u64) -> String {
    json!({
        "deviceID": DEVICE_ID,
        "path": dir.join("disk.img").display().to_string(),
        "size": size_bytes,
    })
    .to_string()
}

/// A data plane and a control plane with the storage, portals on loopback port 0 with the
/// ids in `portals` (all in portal group 1), and the target with the storage as LUN 0;
/// returns the daemons, the REST address and each portal's bound address.
fn start(
    dir: &Path,
    size_bytes: u64,
    portals: &[u16],
) -> (Daemon, Daemon, SocketAddr, Vec<SocketAddr>) {
    let mut dp = start_socket_dataplane(dir, 1);
    let (cp, api) = start_controlplane(dir);
    rest(
        api,
        "POST",
        "/api/v1/storages",
        Some(&storage(dir, size_bytes)),
        &[201],
    );
    for id in portals {
        let body = json!({"id": id, "portal": "127.0.0.1:0"}).to_string();
        rest(api, "POST", "/api/v1/portals", Some(&body), &[201]);
    }
    let body = json!({"tpgts": {"1": portals}, "luns": {"0": DEVICE_ID}}).to_string();
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(&body),
        &[201],
    );
    wait_in_sync(api, &mut dp);
    let status = http(api, "GET", "/api/v1/status", None).json();
    let bound = (0..portals.len())
        .map(|i| {
            status["dataplane"]["portals"][i]["bound"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("portal {i} bound address in {status}"))
        })
        .collect();
    (dp, cp, api, bound)
}

fn blocks(s: &Session, what: &str) -> u64 {
    let c = s
        .read_capacity16(0)
        .unwrap_or_else(|e| panic!("READ CAPACITY (16) {what}: {e}"));
    assert_eq!(c.block_len_bytes, 512, "{what}");
    c.blocks
}

#[test]
fn a_storage_grown_through_rest_is_seen_at_once_after_capacity_data_has_changed() {
    let dir = TempDir::new("online-resize");
    let (small, big) = (64u64 << 20, 96u64 << 20);
    let (mut dp, _cp, api, portals) = start(dir.path(), small, &[0]);
    let a = login(portals[0], IQN);
    let b = login(portals[0], IQN);
    assert_eq!(blocks(&a, "of a before the grow"), small / 512);
    assert_eq!(blocks(&b, "of b before the grow"), small / 512);
    let first: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    a.write10(0, 0, &first, 512).expect("write before the grow");
    let last_lba = big / 512 - 1;
    check_condition(a.read16(0, last_lba, 1, 512), "READ beyond the old end");

    rest(
        api,
        "PUT",
        &format!("/api/v1/storages/{DEVICE_ID}"),
        Some(&storage(dir.path(), big)),
        &[200],
    );
    wait_in_sync(api, &mut dp);
    assert_eq!(
        std::fs::metadata(dir.path().join("disk.img"))
            .unwrap()
            .len(),
        big,
        "the backing file grew"
    );
    // Each session is told once, on its next command, and then reads the new capacity;
    // neither had to log in again.
    for (s, name) in [(&a, "a"), (&b, "b")] {
        let sense = check_condition(s.read_capacity16(0), &format!("first command of {name}"));
        assert_eq!(sense, CAPACITY_CHANGED, "session {name}");
        assert_eq!(blocks(s, &format!("of {name} after the grow")), big / 512);
    }
    // A session that logs in afterwards has nothing to be told.
    let c = login(portals[0], IQN);
    c.test_unit_ready(0)
        .expect("a new session meets no unit attention");
    assert_eq!(blocks(&c, "of a new session"), big / 512);
    // The new blocks take I/O; the old ones kept their data.
    let tail = vec![0xC3u8; 512];
    a.write16(0, last_lba, &tail, 512)
        .expect("write to the last new block");
    assert_eq!(b.read16(0, last_lba, 1, 512).expect("read it back"), tail);
    assert_eq!(b.read10(0, 0, 8, 512).expect("read the old data"), first);

    // A smaller size is refused by the data plane; nothing changes.
    let r = http(
        api,
        "PUT",
        &format!("/api/v1/storages/{DEVICE_ID}"),
        Some(&storage(dir.path(), small)),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("would lose data"), "{}", r.body);
    assert_eq!(
        std::fs::metadata(dir.path().join("disk.img"))
            .unwrap()
            .len(),
        big,
        "the backing file was not shrunk"
    );
    a.test_unit_ready(0)
        .expect("a refused change raises nothing");
    assert_eq!(blocks(&a, "after the refused shrink"), big / 512);
    for s in [a, b, c] {
        s.logout().expect("logout");
    }
}

/// Waits until `s` has failed because its connection ended; panics after ten seconds.
fn wait_closed(s: &Session, what: &str) -> Error {
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        s.failure()
    })
    .unwrap_or_else(|| panic!("{what}: still open after 10 s"))
}

#[test]
fn removing_a_portal_closes_its_connections_and_spares_the_other_portal() {
    let dir = TempDir::new("online-portal");
    let (mut dp, _cp, api, portals) = start(dir.path(), 16 << 20, &[0, 1]);
    let kept = login(portals[0], IQN);
    let removed = login(portals[1], IQN);
    kept.test_unit_ready(0).expect("TUR through portal 0");
    removed.test_unit_ready(0).expect("TUR through portal 1");

    let body = json!({"tpgts": {"1": [0]}, "luns": {"0": DEVICE_ID}}).to_string();
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(&body),
        &[200],
    );
    rest(api, "DELETE", "/api/v1/portals/1", None, &[204]);
    wait_in_sync(api, &mut dp);

    let e = wait_closed(&removed, "the session on the removed portal");
    assert!(
        matches!(e, Error::Io(_)),
        "ended by the socket closing: {e:?}"
    );
    assert!(
        removed.test_unit_ready(0).is_err(),
        "a command on the closed connection"
    );
    assert!(
        std::net::TcpStream::connect(portals[1]).is_err(),
        "the removed portal still accepts"
    );
    // The other portal's session is untouched and no unit attention was raised for it.
    kept.test_unit_ready(0)
        .expect("TUR through the kept portal");
    assert!(kept.failure().is_none());
    let sessions =
        || http(api, "GET", "/api/v1/status", None).json()["dataplane"]["sessionCount"].as_u64();
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (sessions() == Some(1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the closed session is still counted: {:?}; data plane log:\n{}",
            sessions(),
            dp.log_text()
        )
    });
    assert!(
        dp.log_text()
            .contains("portal removed: its connections closed"),
        "{}",
        dp.log_text()
    );
    kept.logout().expect("logout through the kept portal");
}
