//! System tests of NUMA placement on this machine (one node): worker threads really run on
//! the CPUs the config names, and a node the machine lacks stops start-up with a clear error.
//! Multi-node behaviour is covered by unit tests on fake sysfs trees (`numa::affinity`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{binary, run_with_timeout, text, Dataplane, DataplaneOptions, TempDir};

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
