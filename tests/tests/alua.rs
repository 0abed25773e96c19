//! System test of implicit asymmetric logical unit access (SPC-4 5.15) on the real
//! binaries: a data plane configured as target port group 1 of an HA pair whose peer is
//! group 2, driven through the control plane's REST API and `tgtctl`, and observed with the
//! project's initiator, which parses every answer here from the spec rather than from the
//! target's code:
//!
//! - standard INQUIRY reports TPGS 01b (implicit, SPC-4 6.6.2);
//! - the Device Identification VPD page carries the relative target port (type 4) and the
//!   target port group (type 5) designators with association target port (SPC-4 7.8.6);
//! - REPORT TARGET PORT GROUPS (SPC-4 6.36) lists this gateway's group and its peer, in the
//!   length-only and extended formats, cut to the allocation length;
//! - a state changed through REST or `tgtctl` reaches every logged-in session as UNIT
//!   ATTENTION, ASYMMETRIC ACCESS STATE CHANGED (06h/2Ah/06h), once; then standby refuses
//!   medium access with NOT READY, TARGET PORT IN STANDBY STATE (02h/04h/0Bh) while INQUIRY,
//!   REPORT TARGET PORT GROUPS and REQUEST SENSE are served, transitioning answers
//!   02h/04h/0Ah, and active/optimized serves I/O again.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{
    binary, check_condition, http, login, run_with_timeout, start_controlplane,
    start_socket_dataplane, text, wait_in_sync, TempDir,
};
use tgt_system_tests::initiator::{DataDir, Sense, Session};

const IQN: &str = "iqn.2026-12.org.example.systest:alua";
const DEVICE_ID: u64 = 81;

const STATE_CHANGED: Sense = Sense {
    key: 0x06,
    asc: 0x2a,
    ascq: 0x06,
};
const STANDBY: Sense = Sense {
    key: 0x02,
    asc: 0x04,
    ascq: 0x0b,
};
const TRANSITIONING: Sense = Sense {
    key: 0x02,
    asc: 0x04,
    ascq: 0x0a,
};

/// One REST call that must answer with one of `ok`; returns the body as JSON.
fn rest(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    ok: &[u16],
) -> serde_json::Value {
    let r = http(api, method, path, body);
    assert!(
        ok.contains(&r.status),
        "{method} {path} {body:?}: {} {}",
        r.status,
        r.body
    );
    r.json()
}

/// Data-In of a command that must complete GOOD.
fn data_in(s: &Session, cdb: &[u8], len: u32, what: &str) -> Vec<u8> {
    s.execute(0, cdb, DataDir::Read(len))
        .and_then(|o| o.good())
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .data
}

fn rtpg_cdb(extended: bool, alloc_len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0A | if extended { 0x20 } else { 0 };
    c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

/// One target port group descriptor of REPORT TARGET PORT GROUPS: (group, state, status
/// code, relative target ports).
type Group = (u16, u8, u8, Vec<u16>);

/// Parses REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36.2).
fn parse_rtpg(d: &[u8]) -> Vec<Group> {
    let total = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize + 4;
    assert_eq!(
        total,
        d.len(),
        "RETURN DATA LENGTH matches the data: {d:02x?}"
    );
    let mut at = if d[4] >> 4 == 1 { 8 } else { 4 };
    let mut out = Vec::new();
    while at < total {
        let g = &d[at..];
        let ports = usize::from(g[7]);
        let rel = (0..ports)
            .map(|i| u16::from_be_bytes([g[8 + 4 * i + 2], g[8 + 4 * i + 3]]))
            .collect();
        out.push((u16::from_be_bytes([g[2], g[3]]), g[0] & 0x0F, g[5], rel));
        at += 8 + 4 * ports;
    }
    out
}

fn rtpg(s: &Session, what: &str) -> Vec<Group> {
    parse_rtpg(&data_in(s, &rtpg_cdb(false, 1024), 1024, what))
}

/// The designators of the Device Identification VPD page as (association, type, value).
fn device_ids(s: &Session) -> Vec<(u8, u8, Vec<u8>)> {
    let d = data_in(s, &[0x12, 0x01, 0x83, 0x04, 0x00, 0], 1024, "VPD 83h");
    assert_eq!(d[1], 0x83);
    let end = 4 + usize::from(u16::from_be_bytes([d[2], d[3]]));
    let mut at = 4;
    let mut out = Vec::new();
    while at + 4 <= end {
        let len = usize::from(d[at + 3]);
        out.push((
            (d[at + 1] >> 4) & 0x03,
            d[at + 1] & 0x0F,
            d[at + 4..at + 4 + len].to_vec(),
        ));
        at += 4 + len;
    }
    out
}

fn read_block(s: &Session) -> Result<Vec<u8>, tgt_system_tests::initiator::Error> {
    s.read10(0, 0, 1, 512)
}

/// Sets the state of `group` for the storage through REST and waits until the data plane
/// runs it.
fn set_state(api: SocketAddr, dp: &mut support::Daemon, group: u16, state: &str) {
    let body = json!({ "state": state }).to_string();
    let list = rest(
        api,
        "PUT",
        &format!("/api/v1/storages/{DEVICE_ID}/alua/{group}"),
        Some(&body),
        &[200],
    );
    assert!(
        list.as_array().is_some_and(|l| l
            .iter()
            .any(|g| g["targetPortGroup"] == group && g["state"] == state)),
        "{list}"
    );
    wait_in_sync(api, dp);
}

#[test]
fn implicit_alua_states_reach_sessions_as_unit_attention_then_gate_medium_access() {
    let dir = TempDir::new("alua");
    let mut dp = start_socket_dataplane(dir.path(), 1);
    let (_cp, api) = start_controlplane(dir.path());
    let storage = json!({
        "deviceID": DEVICE_ID,
        "path": dir.path().join("disk.img").display().to_string(),
        "size": 8u64 << 20,
    });
    rest(
        api,
        "POST",
        "/api/v1/storages",
        Some(&storage.to_string()),
        &[201],
    );
    let alua = json!({"targetPortGroup": 1, "peerGroups": [{"targetPortGroup": 2}]});
    rest(api, "PUT", "/api/v1/alua", Some(&alua.to_string()), &[200]);
    rest(
        api,
        "POST",
        "/api/v1/portals",
        Some(&json!({"id": 0, "portal": "127.0.0.1:0"}).to_string()),
        &[201],
    );
    let target = json!({"tpgts": {"1": [0]}, "luns": {"0": DEVICE_ID}});
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(&target.to_string()),
        &[201],
    );
    let portal = wait_in_sync(api, &mut dp);
    let a = login(portal, IQN);
    let b = login(portal, IQN);
    // A unit attention is owed to the I_T nexuses that have used the logical unit.
    b.test_unit_ready(0)
        .expect("TUR of b while active/optimized");

    // Standard INQUIRY: TPGS 01b, implicit only.
    let inq = data_in(&a, &[0x12, 0, 0, 0, 96, 0], 96, "standard INQUIRY");
    assert_eq!((inq[5] >> 4) & 0x03, 0b01, "TPGS in {inq:02x?}");

    // Device Identification: the LU's NAA designator, and the target port's relative port
    // and group (association 01b).
    let ids = device_ids(&a);
    assert!(
        ids.iter()
            .any(|(assoc, ty, v)| *assoc == 0 && *ty == 3 && v[0] >> 4 == 6),
        "NAA designator of the LU in {ids:?}"
    );
    assert!(
        ids.contains(&(1, 4, vec![0, 0, 0, 1])),
        "relative target port 1 in {ids:?}"
    );
    assert!(
        ids.contains(&(1, 5, vec![0, 0, 0, 1])),
        "target port group 1 in {ids:?}"
    );

    // REPORT TARGET PORT GROUPS: both groups active/optimized by default, each one port.
    assert_eq!(
        rtpg(&a, "RTPG"),
        vec![(1, 0x0, 0x00, vec![1]), (2, 0x0, 0x00, vec![2])]
    );
    let ext = data_in(&a, &rtpg_cdb(true, 1024), 1024, "RTPG extended");
    assert_eq!(ext[4] >> 4, 1, "FORMAT TYPE of the extended header");
    assert_eq!(parse_rtpg(&ext).len(), 2);
    // Cut to the allocation length, the header still says how much there is.
    let short = data_in(&a, &rtpg_cdb(false, 4), 4, "RTPG of 4 bytes");
    assert_eq!(short, vec![0, 0, 0, 24]);
    // And REPORT SUPPORTED OPERATION CODES knows the command (one command, A3h/0Ah).
    let rsoc = data_in(
        &a,
        &[0xA3, 0x0C, 0x02, 0xA3, 0x00, 0x0A, 0, 0, 0x01, 0x00, 0, 0],
        256,
        "RSOC of REPORT TARGET PORT GROUPS",
    );
    assert_eq!(
        rsoc[1] & 0x07,
        0b011,
        "SUPPORT: supported as the standard says"
    );

    // This gateway goes standby (the peer would take over).
    set_state(api, &mut dp, 1, "standby");
    for (s, name) in [(&a, "a"), (&b, "b")] {
        assert_eq!(
            check_condition(read_block(s), &format!("first READ of {name}")),
            STATE_CHANGED,
            "session {name} is told once"
        );
        assert_eq!(
            check_condition(read_block(s), &format!("READ of {name} in standby")),
            STANDBY
        );
    }
    assert_eq!(
        check_condition(a.test_unit_ready(0), "TUR in standby"),
        STANDBY
    );
    assert_eq!(
        a.request_sense(0).expect("REQUEST SENSE in standby"),
        Some(STANDBY),
        "REQUEST SENSE tells why the unit is not ready"
    );
    a.inquiry(0).expect("INQUIRY is served in standby");
    let groups = rtpg(&a, "RTPG in standby");
    assert_eq!(
        groups[0],
        (1, 0x2, 0x02, vec![1]),
        "standby, altered implicitly"
    );
    assert_eq!(groups[1].1, 0x0, "the peer stays active/optimized");

    // Through tgtctl: transitioning, then back to active/optimized.
    let server = format!("http://{api}");
    let tgtctl = |args: &[&str]| {
        let o = run_with_timeout(
            Command::new(binary("tgtctl"))
                .arg("--server")
                .arg(&server)
                .args(args)
                .env_remove("TGTCTL_SERVER")
                .env_remove("TGTCTL_TOKEN"),
            Duration::from_secs(60),
        );
        assert_eq!(o.status.code(), Some(0), "tgtctl {args:?}:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let out = tgtctl(&["alua", "set-state", &DEVICE_ID.to_string(), "transitioning"]);
    assert!(out.contains("transitioning"), "{out}");
    wait_in_sync(api, &mut dp);
    assert_eq!(
        check_condition(read_block(&a), "after the change"),
        STATE_CHANGED
    );
    assert_eq!(
        check_condition(read_block(&a), "READ while transitioning"),
        TRANSITIONING
    );
    tgtctl(&[
        "alua",
        "set-state",
        &DEVICE_ID.to_string(),
        "active-optimized",
    ]);
    wait_in_sync(api, &mut dp);
    assert_eq!(
        check_condition(read_block(&a), "after the change"),
        STATE_CHANGED
    );
    read_block(&a).expect("READ once active/optimized again");
    // Session b missed two changes: one report covers them, then I/O goes on.
    assert_eq!(
        check_condition(b.test_unit_ready(0), "b after both"),
        STATE_CHANGED
    );
    b.test_unit_ready(0).expect("b is served again");
    let out = tgtctl(&["alua", "states", &DEVICE_ID.to_string(), "-o", "json"]);
    let states: serde_json::Value = serde_json::from_str(&out).expect("tgtctl JSON");
    assert_eq!(states[0]["state"], "active-optimized", "{states}");
    assert_eq!(states[0]["local"], true, "{states}");

    // A group that is not configured is refused, and nothing changes.
    let r = http(
        api,
        "PUT",
        &format!("/api/v1/storages/{DEVICE_ID}/alua/9"),
        Some(r#"{"state":"standby"}"#),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    a.test_unit_ready(0)
        .expect("a refused change raises nothing");
    for s in [a, b] {
        s.logout().expect("logout");
    }
}
