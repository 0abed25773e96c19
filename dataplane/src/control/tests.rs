//! In-process tests of applying configs and of the control socket.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tgt_proto::socket::{
    decode_frame_len, encode_frame, Refusal, Request, Response, FRAME_HEADER_BYTES,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tgt_proto::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::server::ControlSocket;
use super::Controller;
use crate::live::{Settings, Shared};

const IQN: &str = "iqn.2026-01.org.example:control";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tgt-control-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config with one storage per LUN in `luns` (device id 100 + LUN), one portal on
/// 127.0.0.1:0 per id in `portals`, all in portal group 1.
fn config(dir: &Path, luns: &[u16], portals: &[u16]) -> Config {
    let storages: Vec<String> = luns
        .iter()
        .map(|l| {
            format!(
                r#"{{"deviceID":{},"path":"{}","size":1048576}}"#,
                100 + u64::from(*l),
                dir.join(format!("lun{l}.img")).display()
            )
        })
        .collect();
    let portal_list: Vec<String> = portals
        .iter()
        .map(|id| format!(r#"{{"id":{id},"portal":"127.0.0.1:0"}}"#))
        .collect();
    let lun_map: Vec<String> = luns
        .iter()
        .map(|l| format!(r#""{l}":{}"#, 100 + u64::from(*l)))
        .collect();
    let ids: Vec<String> = portals.iter().map(u16::to_string).collect();
    let json = format!(
        r#"{{"storages":[{}],"iscsiportals":[{}],
            "iscsitargets":{{"{IQN}":{{"tpgts":{{"1":[{}]}},"luns":{{{}}}}}}}}}"#,
        storages.join(","),
        portal_list.join(","),
        ids.join(","),
        lun_map.join(",")
    );
    serde_json::from_str(&json).unwrap()
}

fn controller() -> Controller {
    Controller::new(Shared::new(Settings::default()).1)
}

fn unit(c: &Controller, lun: u16) -> Option<Arc<crate::lu::LogicalUnit>> {
    c.shared()
        .current()
        .targets
        .get(IQN)
        .and_then(|t| t.scsi.logical_unit(lun).cloned())
}

#[tokio::test]
async fn adding_a_lun_keeps_the_running_logical_units() {
    let d = Dir::new("add");
    let c = controller();
    assert_eq!(
        c.apply(1, config(d.path(), &[0], &[0])).await,
        Response::Applied { generation: 1 }
    );
    let lun0 = unit(&c, 0).unwrap();
    assert_eq!(
        c.apply(2, config(d.path(), &[0, 1], &[0])).await,
        Response::Applied { generation: 2 }
    );
    assert!(Arc::ptr_eq(&lun0, &unit(&c, 0).unwrap()));
    assert!(unit(&c, 1).is_some());
    let status = c.status().await;
    assert_eq!(status.generation, 2);
    assert_eq!(status.targets[0].luns.len(), 2);
    assert_eq!(status.targets[0].luns[1].active_backend, "file");
    assert_eq!(status.targets[0].luns[1].size_bytes, 1 << 20);
}

#[tokio::test]
async fn an_unchanged_config_keeps_the_target_entry() {
    let d = Dir::new("same");
    let c = controller();
    c.apply(1, config(d.path(), &[0, 1], &[0])).await;
    let before = c.shared().current().targets.get(IQN).cloned().unwrap();
    assert_eq!(
        c.apply(2, config(d.path(), &[0, 1], &[0])).await,
        Response::Applied { generation: 2 }
    );
    let after = c.shared().current().targets.get(IQN).cloned().unwrap();
    assert!(Arc::ptr_eq(&before, &after));
}

#[tokio::test]
async fn removes_a_lun_no_session_uses() {
    let d = Dir::new("remove");
    let c = controller();
    c.apply(1, config(d.path(), &[0, 1], &[0])).await;
    assert_eq!(
        c.apply(2, config(d.path(), &[0], &[0])).await,
        Response::Applied { generation: 2 }
    );
    assert!(unit(&c, 1).is_none());
    assert!(unit(&c, 0).is_some());
}

#[tokio::test]
async fn removes_a_lun_while_a_session_is_logged_in_but_not_its_target() {
    let d = Dir::new("busy");
    let c = controller();
    c.apply(1, config(d.path(), &[0, 1], &[0])).await;
    // A logged-in connection registers its session and holds the target entry, exactly as
    // `conn` does at login; a command in flight holds the logical unit it runs on.
    let session = c.shared().current().targets.get(IQN).cloned().unwrap();
    let (info, _kill) = c
        .shared()
        .sessions()
        .register(
            "iqn.2026-11.org.example:init",
            [0x80, 0, 0, 0, 0, 1],
            IQN,
            String::new(),
            String::new(),
        )
        .unwrap();
    let in_flight = unit(&c, 1).unwrap();
    assert_eq!(
        c.apply(2, config(d.path(), &[0], &[0])).await,
        Response::Applied { generation: 2 }
    );
    assert!(
        unit(&c, 1).is_none(),
        "the LUN is gone from the live config"
    );
    assert!(
        session.scsi.lun_exists(1),
        "the session's old map still reaches it until its next command"
    );
    assert_eq!(
        in_flight.lun(),
        1,
        "a running command keeps its logical unit"
    );
    assert_eq!(
        c.shared().generation(),
        2,
        "connections see the new generation"
    );
    let empty: Config = serde_json::from_str("{}").unwrap();
    assert!(matches!(
        c.apply(3, empty.clone()).await,
        Response::Refused {
            reason: Refusal::TargetBusy { .. }
        }
    ));
    assert_eq!(c.generation().await, 2, "a refused change changes nothing");
    drop(session);
    c.shared().sessions().remove(info.tsih, info.nexus_id);
    assert_eq!(c.apply(3, empty).await, Response::Applied { generation: 3 });
}

#[tokio::test]
async fn refuses_an_invalid_config_naming_the_fields() {
    let c = controller();
    let bad: Config = serde_json::from_str(
        r#"{"storages":[{"deviceID":1,"path":""}],
            "iscsitargets":{"iqn.2026-01.org.example:t":{"luns":{"0":7}}}}"#,
    )
    .unwrap();
    let Response::Refused {
        reason: Refusal::Invalid { errors },
    } = c.apply(1, bad).await
    else {
        panic!("expected an invalid-config refusal");
    };
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"storages[0].path"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("iscsitargets.")),
        "{paths:?}"
    );
    assert_eq!(c.generation().await, 0);
}

#[tokio::test]
async fn refuses_stale_generations_and_unopenable_storages() {
    let d = Dir::new("stale");
    let c = controller();
    c.apply(5, config(d.path(), &[0], &[])).await;
    assert_eq!(
        c.apply(5, config(d.path(), &[0, 1], &[])).await,
        Response::Refused {
            reason: Refusal::StaleGeneration {
                current: 5,
                requested: 5
            }
        }
    );
    let missing_dir = config(&d.path().join("no-such-dir"), &[3], &[]);
    assert!(matches!(
        c.apply(6, missing_dir).await,
        Response::Refused {
            reason: Refusal::StorageUnavailable { device_id: 103, .. }
        }
    ));
    assert!(unit(&c, 0).is_some());
}

#[tokio::test]
async fn opens_and_closes_portal_listeners() {
    let d = Dir::new("portals");
    let c = controller();
    c.apply(1, config(d.path(), &[0], &[1, 2])).await;
    let bound = c.status().await.portals;
    assert_eq!(bound.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2]);
    let kept = bound[0].bound;
    tokio::net::TcpStream::connect(kept).await.unwrap();
    c.apply(2, config(d.path(), &[0], &[1])).await;
    let bound = c.status().await.portals;
    assert_eq!(bound.len(), 1);
    assert_eq!(
        bound[0].bound, kept,
        "an unchanged portal keeps its listener"
    );
}

/// Polls the stats until `done` holds for them (connection tasks start and end
/// asynchronously), for at most ten seconds.
async fn stats_until(c: &Controller, done: impl Fn(&tgt_proto::socket::Stats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = c.stats().await;
        if done(&st) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stats_count_open_connections_per_portal_and_report_the_pools() {
    let d = Dir::new("portal-stats");
    let c = controller();
    c.apply(1, config(d.path(), &[0], &[1, 2])).await;
    let st = c.stats().await;
    let ids: Vec<u16> = st.portals.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert!(st
        .portals
        .iter()
        .all(|p| p.connections == 0 && p.sessions == 0));
    // The first config with a LUN built the pools: they show, all buffers free.
    assert!(!st.numa_pools.is_empty(), "{st:?}");
    for p in &st.numa_pools {
        assert_eq!(p.buffers_free, p.buffers_total, "{p:?}");
        assert_eq!(p.buffers_in_use, 0);
        assert!(p.buffer_size_bytes > 0);
    }
    let lun = &st.luns[0];
    assert_eq!((lun.commands_total, lun.commands_in_flight), (0, 0));

    let bound = c.status().await.portals;
    let one = tokio::net::TcpStream::connect(bound[0].bound)
        .await
        .unwrap();
    let two = tokio::net::TcpStream::connect(bound[1].bound)
        .await
        .unwrap();
    stats_until(&c, |st| st.portals.iter().all(|p| p.connections == 1)).await;
    // A removed portal's connection is closed; the other portal's stays.
    c.apply(2, config(d.path(), &[0], &[1])).await;
    stats_until(&c, |st| st.portals.len() == 1 && st.portals[0].id == 1).await;
    assert_eq!(c.stats().await.portals[0].connections, 1);
    assert_eq!(
        read_to_end(two).await,
        0,
        "the removed portal's connection closed"
    );
    drop(one);
    stats_until(&c, |st| st.portals[0].connections == 0).await;
}

/// Bytes read from `s` until the peer closes it (fails after ten seconds).
async fn read_to_end(mut s: tokio::net::TcpStream) -> usize {
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the connection was not closed")
        .expect("read");
    buf.len()
}

#[tokio::test]
async fn removing_or_readdressing_a_portal_closes_only_its_connections() {
    let d = Dir::new("portal-close");
    let c = controller();
    c.apply(1, config(d.path(), &[0], &[1, 2, 3])).await;
    let bound = c.status().await.portals;
    let mut conns = Vec::new();
    for p in &bound {
        conns.push(tokio::net::TcpStream::connect(p.bound).await.unwrap());
    }
    stats_until(&c, |st| st.portals.iter().all(|p| p.connections == 1)).await;
    // Portal 2 goes; portal 3 moves to another address (a new listener).
    let mut next = config(d.path(), &[0], &[1, 3]);
    next.iscsi_portals[1].portal = "127.0.0.2:0".to_string();
    assert_eq!(c.apply(2, next).await, Response::Applied { generation: 2 });
    let third = conns.pop().unwrap();
    let second = conns.pop().unwrap();
    assert_eq!(read_to_end(second).await, 0);
    assert_eq!(read_to_end(third).await, 0);
    stats_until(&c, |st| {
        st.portals
            .iter()
            .map(|p| (p.id, p.connections))
            .collect::<Vec<_>>()
            == vec![(1, 1), (3, 0)]
    })
    .await;
    // The kept portal's connection is open: the peer has not closed it.
    let mut first = conns.pop().unwrap();
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), first.read(&mut b))
            .await
            .is_err(),
        "the kept portal's connection must stay open"
    );
}

/// The config of `luns` with every storage's `size` set to `size_bytes`.
fn sized(dir: &Path, luns: &[u16], size_bytes: u64) -> Config {
    let mut c = config(dir, luns, &[0]);
    for s in &mut c.storages {
        s.size = Some(size_bytes);
    }
    c
}

#[tokio::test]
async fn a_larger_size_grows_the_live_lun_in_place_and_a_smaller_one_is_refused() {
    let d = Dir::new("grow");
    let c = controller();
    assert_eq!(
        c.apply(1, sized(d.path(), &[0, 1], 1 << 20)).await,
        Response::Applied { generation: 1 }
    );
    let (lun0, lun1) = (unit(&c, 0).unwrap(), unit(&c, 1).unwrap());
    let entry = c.shared().current().targets.get(IQN).cloned().unwrap();
    let mut bigger = sized(d.path(), &[0, 1], 1 << 20);
    bigger.storages[0].size = Some(3 << 20);
    assert_eq!(
        c.apply(2, bigger).await,
        Response::Applied { generation: 2 }
    );
    // The same logical units and target entry: sessions keep them, no LUN-map change.
    assert!(Arc::ptr_eq(&lun0, &unit(&c, 0).unwrap()));
    assert!(Arc::ptr_eq(&lun1, &unit(&c, 1).unwrap()));
    let after = c.shared().current().targets.get(IQN).cloned().unwrap();
    assert!(Arc::ptr_eq(&entry, &after));
    assert_eq!(lun0.capacity_blocks(), (3 << 20) / 512);
    assert_eq!(lun1.capacity_blocks(), (1 << 20) / 512, "the other storage");
    assert_eq!(
        std::fs::metadata(d.path().join("lun0.img")).unwrap().len(),
        3 << 20
    );
    assert_eq!(c.status().await.targets[0].luns[0].size_bytes, 3 << 20);
    // Shrinking is refused, naming both sizes, and changes nothing.
    let r = c.apply(3, sized(d.path(), &[0, 1], 2 << 20)).await;
    let Response::Refused {
        reason:
            Refusal::StorageShrink {
                device_id,
                size_bytes,
                current_bytes,
            },
    } = r
    else {
        panic!("{r:?}");
    };
    assert_eq!(
        (device_id, size_bytes, current_bytes),
        (100, 2 << 20, 3 << 20)
    );
    assert_eq!(c.generation().await, 2);
    assert_eq!(lun0.capacity_blocks(), (3 << 20) / 512);
    assert_eq!(
        std::fs::metadata(d.path().join("lun0.img")).unwrap().len(),
        3 << 20
    );
    // Dropping `size` keeps the unit and its size.
    let mut unsized_cfg = sized(d.path(), &[0, 1], 1 << 20);
    unsized_cfg.storages[0].size = None;
    assert_eq!(
        c.apply(4, unsized_cfg).await,
        Response::Applied { generation: 4 }
    );
    assert!(Arc::ptr_eq(&lun0, &unit(&c, 0).unwrap()));
    assert_eq!(lun0.capacity_blocks(), (3 << 20) / 512);
}

async fn send_raw(s: &mut UnixStream, frame: &[u8]) -> Option<Response> {
    s.write_all(frame).await.unwrap();
    let mut header = [0u8; FRAME_HEADER_BYTES];
    s.read_exact(&mut header).await.ok()?;
    let len = decode_frame_len(&header).unwrap();
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    Some(serde_json::from_slice(&payload).unwrap())
}

async fn request(s: &mut UnixStream, req: &Request) -> Response {
    let frame = encode_frame(&serde_json::to_vec(req).unwrap()).unwrap();
    send_raw(s, &frame).await.unwrap()
}

async fn socket(d: &Dir) -> (PathBuf, Arc<Controller>, tokio::task::JoinHandle<()>) {
    let path = d.path().join("control.sock");
    let sock = ControlSocket::bind(&path).unwrap();
    let c = Arc::new(controller());
    let task = tokio::spawn(sock.serve(c.clone()));
    (path, c, task)
}

#[tokio::test]
async fn socket_answers_requests_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("sock");
    let (path, _c, task) = socket(&d).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut s = UnixStream::connect(&path).await.unwrap();
    let applied = request(
        &mut s,
        &Request::ApplyConfig {
            generation: 1,
            config: config(d.path(), &[0], &[0]),
        },
    )
    .await;
    assert_eq!(applied, Response::Applied { generation: 1 });
    let Response::Status(st) = request(&mut s, &Request::GetStatus).await else {
        panic!("expected status");
    };
    assert_eq!(st.generation, 1);
    assert_eq!(st.portals.len(), 1);
    assert_eq!(
        request(&mut s, &Request::ListSessions).await,
        Response::Sessions { sessions: vec![] }
    );
    assert_eq!(
        request(&mut s, &Request::CloseSession { tsih: 9 }).await,
        Response::Refused {
            reason: Refusal::NoSuchSession { tsih: 9 }
        }
    );
    let Response::Stats(stats) = request(&mut s, &Request::GetStats).await else {
        panic!("expected stats");
    };
    assert_eq!(stats.luns.len(), 1);
    task.abort();
    let _ = task.await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn socket_refuses_bad_payloads_and_stays_usable() {
    let d = Dir::new("badjson");
    let (path, _c, _task) = socket(&d).await;
    let mut s = UnixStream::connect(&path).await.unwrap();
    let resp = send_raw(&mut s, &encode_frame(br#"{"reboot":{}}"#).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        resp,
        Response::Refused {
            reason: Refusal::Malformed { .. }
        }
    ));
    assert!(matches!(
        request(&mut s, &Request::GetStatus).await,
        Response::Status(_)
    ));
}

#[tokio::test]
async fn socket_refuses_oversized_frames_and_closes() {
    let d = Dir::new("big");
    let (path, _c, _task) = socket(&d).await;
    let mut s = UnixStream::connect(&path).await.unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    header.extend_from_slice(&(MAX_FRAME_BYTES + 1).to_be_bytes());
    let resp = send_raw(&mut s, &header).await.unwrap();
    let Response::Refused {
        reason: Refusal::Malformed { message },
    } = resp
    else {
        panic!("expected a malformed refusal, got {resp:?}");
    };
    assert!(message.contains("exceeds"), "{message}");
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).await.unwrap(),
        0,
        "connection closed"
    );
}

#[tokio::test]
async fn socket_refuses_other_protocol_versions_and_closes() {
    let d = Dir::new("version");
    let (path, _c, _task) = socket(&d).await;
    let mut s = UnixStream::connect(&path).await.unwrap();
    let mut frame = encode_frame(br#""getStatus""#).unwrap();
    frame[..4].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let resp = send_raw(&mut s, &frame).await.unwrap();
    assert!(
        matches!(
            &resp,
            Response::Refused { reason: Refusal::Malformed { message } } if message.contains("version")
        ),
        "{resp:?}"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn socket_replaces_a_stale_socket_but_not_a_file() {
    let d = Dir::new("stale-sock");
    let path = d.path().join("c.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(ControlSocket::bind(&path).is_ok());
    let file = d.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(ControlSocket::bind(&file).is_err());
    assert!(file.exists());
}

#[tokio::test]
async fn status_reports_the_topology_under_the_configured_sysfs_root() {
    let fake = crate::numa::topology::tests::fake_sysfs("ctl-status", 2, 3);
    let (_, live) = Shared::new(Settings {
        numa_sysfs_root: Some(fake.0.clone()),
        ..Settings::default()
    });
    let c = Controller::new(live);
    let nodes: Vec<(u32, Vec<u32>)> = c
        .status()
        .await
        .numa_nodes
        .into_iter()
        .map(|n| (n.id, n.cpus))
        .collect();
    assert_eq!(nodes, vec![(0, vec![0, 1, 2]), (1, vec![3, 4, 5])]);
}
