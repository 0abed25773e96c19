//! System tests of NUMA placement on this machine (one node): worker threads really run on
//! the CPUs the config names, and a node the machine lacks stops start-up with a clear error.
//! Multi-node behaviour runs the real binary on a fake two-node sysfs tree (one CPU per node)
//! and is covered further by unit tests on fake 2- and 4-node trees (`numa::*`).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    binary, run_with_timeout, text, wait_for_file, Daemon, Dataplane, DataplaneOptions, TempDir,
};
use tgt_system_tests::{verified_load, LoadOptions};

fn allowed_cpus_of_threads(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            out.push(l["Cpus_allowed_list:".len()..].trim().to_string());
        }
    }
    out
}

#[test]
fn cpu_list_pins_every_worker_thread() {
    let dp = Dataplane::start_with(
        "numa-pin",
        DataplaneOptions {
            extra_storage_json: r#","enableNUMA":true,"numaNode":0"#.into(),
            extra_top_json: r#""performance":{"enableNUMA":true,"cpuList":"0"}"#.into(),
            ..DataplaneOptions::default()
        },
    );
    let threads = allowed_cpus_of_threads(dp.daemon.child.id());
    // The main thread only waits for shutdown; every runtime thread must be on CPU 0.
    let pinned = threads.iter().filter(|c| c.as_str() == "0").count();
    assert!(
        pinned >= threads.len() - 1 && pinned >= 1,
        "threads' CPUs: {threads:?}"
    );
    assert!(dp.daemon.log_text().contains("pinning worker threads"));
}

#[test]
fn a_numa_node_the_machine_lacks_is_refused_at_start() {
    let dir = TempDir::new("numa-bad");
    let img = dir.path().join("d.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"storages":[{{"deviceID":1,"path":"{}","enableNUMA":true,"numaNode":7}}],"iscsiportals":[{{"id":0,"portal":"127.0.0.1:0"}}],"iscsitargets":{{"iqn.2026-11.org.example:numa":{{"tpgts":{{"1":[0]}},"luns":{{"1":1}}}}}},"performance":{{"enableNUMA":true}}}}"#,
            img.display()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(binary("tgt-dataplane"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_BACKTRACE", "0"),
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "must refuse a missing NUMA node");
    assert!(
        text(&out).contains("numa node 7 does not exist"),
        "{}",
        text(&out)
    );
}

/// A sysfs tree of two nodes with one CPU each (CPU 0 on node 0, CPU 1 on node 1): this
/// machine's two CPUs, split as a two-socket server would.
fn two_node_sysfs(root: &std::path::Path) {
    let node_dir = root.join("sys/devices/system/node");
    for (n, distance) in [(0, "10 20"), (1, "20 10")] {
        let d = node_dir.join(format!("node{n}"));
        std::fs::create_dir_all(&d).expect("fake sysfs");
        std::fs::write(d.join("cpulist"), format!("{n}\n")).expect("cpulist");
        std::fs::write(d.join("distance"), format!("{distance}\n")).expect("distance");
        std::fs::write(
            d.join("meminfo"),
            format!("Node {n} MemTotal:       1048576 kB\nNode {n} MemFree:        1000 kB\n"),
        )
        .expect("meminfo");
    }
    std::fs::write(node_dir.join("online"), "0-1\n").expect("online");
    std::fs::write(node_dir.join("possible"), "0-1\n").expect("possible");
}

fn threads_named(pid: u32, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
                out.push(l["Cpus_allowed_list:".len()..].trim().to_string());
            }
        }
    }
    out
}

#[test]
fn connections_run_on_the_node_of_their_storage_on_a_two_node_tree() {
    let dir = TempDir::new("numa-place");
    two_node_sysfs(dir.path());
    for i in 0..2 {
        std::fs::File::create(dir.path().join(format!("d{i}.img")))
            .and_then(|f| f.set_len(64 << 20))
            .expect("image");
    }
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"storages":[
  {{"deviceID":1,"path":"{d}/d0.img","enableNUMA":true,"numaNode":0}},
  {{"deviceID":2,"path":"{d}/d1.img","enableNUMA":true,"numaNode":1}}],
"iscsiportals":[{{"id":0,"portal":"127.0.0.1:0"}},{{"id":1,"portal":"127.0.0.1:0"}}],
"iscsitargets":{{
  "iqn.2026-11.org.example:node0":{{"tpgts":{{"1":[0]}},"luns":{{"1":1}}}},
  "iqn.2026-11.org.example:node1":{{"tpgts":{{"1":[1]}},"luns":{{"1":2}}}}}},
"performance":{{"enableNUMA":true,"numaBufferPoolSize":32,"numaBufferSize":131072}}}}"#,
            d = dir.path().display()
        ),
    )
    .expect("config");
    let ready = dir.path().join("ready.json");
    let log = dir.path().join("dataplane.log");
    let child = Command::new(binary("tgt-dataplane"))
        .arg("--config")
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--numa-sysfs-root")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn tgt-dataplane");
    let mut dp = Daemon { child, log };
    let ready_text = wait_for_file(&mut dp, &ready, "tgt-dataplane");
    let ready: serde_json::Value = serde_json::from_str(&ready_text).expect("ready json");
    let portal1: std::net::SocketAddr = ready["portals"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == 1))
        .and_then(|p| p["addr"].as_str())
        .and_then(|a| a.parse().ok())
        .expect("portal 1 address");

    let startup = dp.log_text();
    for node in [0, 1] {
        assert!(
            startup.contains(&format!("node={node}"))
                && startup.contains("numa node runtime started"),
            "no runtime for node {node}:\n{startup}"
        );
    }
    // Each node runtime's threads are pinned to that node's CPU.
    let pid = dp.child.id();
    assert_eq!(
        threads_named(pid, "tgt-node0")
            .iter()
            .filter(|c| *c != "0")
            .count(),
        0
    );
    let node1 = threads_named(pid, "tgt-node1");
    assert!(
        !node1.is_empty() && node1.iter().all(|c| c == "1"),
        "node 1 threads: {node1:?}"
    );

    // A session on portal 1 (which exports the storage on node 1) runs on node 1 and moves
    // verified data there.
    let opts = LoadOptions {
        sessions: 2,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(2),
        region_blocks: Some(4096),
        ..LoadOptions::default()
    };
    let r = verified_load(portal1, "iqn.2026-11.org.example:node1", 1, opts).expect("load runs");
    assert!(
        r.passed() && r.verified_blocks > 0,
        "{:?} {:?}",
        r.first_errors,
        r.first_mismatches
    );
    let log = dp.log_text();
    let placed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection placed on numa node"))
        .collect();
    assert!(
        placed.len() >= 2
            && placed
                .iter()
                .all(|l| l.contains("portal=1") && l.contains("node=1")),
        "placement lines: {placed:#?}"
    );
    assert!(dp.alive(), "data plane died:\n{log}");
}
