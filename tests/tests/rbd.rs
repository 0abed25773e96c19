//! System test of the Ceph RBD backend against a real single-node Ceph cluster that the test
//! starts with `scripts/ceph-single-node.sh` (Ceph 16.2 from Debian 12's packages, which
//! `scripts/test-all.sh` installs): libiscsi's conformance suite on an RBD LUN, the verified
//! load, `rbd export` against what the initiator wrote, SIGKILL of the data plane under FUA
//! writes, a second data plane on an image whose exclusive lock the first one owns, and a
//! stalled OSD (SIGSTOP): NOT READY within the bound, the data plane stays up, I/O resumes.
//!
//! One test function runs the phases in order on one cluster (starting a cluster costs
//! about 15 s); each phase names itself in its failure messages.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{binary, require_tool, run_with_timeout, text, workspace_root, Daemon, TempDir};
use tgt_system_tests::conformance::{AllowList, CuRun, ALLOW_LIST_PATH};
use tgt_system_tests::initiator::{DataDir, Session, SessionOptions};
use tgt_system_tests::{verified_load, LoadOptions};

const BLOCK: u32 = 512;

/// Tests of iscsi-test-cu ALL that ran for real (not skipped) on an RBD LUN, as recorded: the
/// RBD LU offers less than the file LU the conformance suite's own count is taken on, so
/// more tests skip themselves. A run below it means tests stopped running.
const RAN_FOR_REAL_ON_RBD: usize = 200;

/// The cluster of `scripts/ceph-single-node.sh`, stopped (only its own daemons) on drop.
struct Cluster {
    conf: PathBuf,
    script: PathBuf,
    dir: TempDir,
}

impl Cluster {
    fn start() -> Self {
        for tool in ["ceph-mon", "ceph-osd", "rbd"] {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
            assert!(
                found,
                "{tool} is not installed: the README test command (scripts/test-all.sh) installs \
                 ceph-mon ceph-osd ceph-common librbd1 (apt-get install -y ceph-mon ceph-osd ceph-common librbd1)"
            );
        }
        let dir = TempDir::new("ceph");
        let script = workspace_root().join("scripts/ceph-single-node.sh");
        let t0 = Instant::now();
        let out = run_with_timeout(
            Command::new(&script).arg("start").arg(dir.path()),
            Duration::from_secs(150),
        );
        let cluster = Self {
            conf: dir.path().join("ceph.conf"),
            script,
            dir,
        };
        if !out.status.success() {
            let logs = cluster.logs();
            panic!(
                "the single-node Ceph cluster did not start:\n{}\n{logs}",
                text(&out)
            );
        }
        eprintln!(
            "ceph cluster started in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        cluster
    }

    /// The tail of every daemon log, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in rd.flatten() {
                let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                s.push_str(&format!("== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    fn rbd(&self, args: &[&str]) -> String {
        let out = run_with_timeout(
            Command::new("rbd").arg("-c").arg(&self.conf).args(args),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "rbd {args:?} failed:\n{}", text(&out));
        text(&out)
    }

    fn create_image(&self, name: &str, size_mib: u64) {
        self.rbd(&[
            "create",
            "--size",
            &format!("{size_mib}M"),
            &format!("rbd/{name}"),
        ]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A data plane serving one RBD image as LUN 1 of `iqn`.
struct RbdDataplane {
    daemon: Daemon,
    portal: SocketAddr,
    iqn: String,
    _dir: TempDir,
}

impl RbdDataplane {
    fn start(cluster: &Cluster, tag: &str, image: &str) -> Self {
        let dir = TempDir::new(tag);
        let iqn = format!("iqn.2026-11.org.example.systest:{tag}");
        let config = format!(
            r#"{{"storages":[{{"deviceID":1000,"backendType":"rbd","rbd":{{"image":"rbd/{image}","cephConf":"{}"}}}}],
"iscsiportals":[{{"id":0,"portal":"127.0.0.1:0"}}],
"iscsitargets":{{"{iqn}":{{"tpgts":{{"1":[0]}},"luns":{{"1":1000}}}}}}}}"#,
            cluster.conf.display()
        );
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, config).expect("write config");
        let ready = dir.path().join("ready.json");
        let log = dir.path().join("dataplane.log");
        let child = Command::new(binary("tgt-dataplane"))
            .arg("--config")
            .arg(&cfg)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn tgt-dataplane");
        let mut daemon = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        let portal = loop {
            if let Some(addr) = std::fs::read_to_string(&ready).ok().and_then(|t| {
                t.split("\"addr\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|a| a.parse().ok())
            }) {
                break addr;
            }
            assert!(
                daemon.alive(),
                "tgt-dataplane on rbd/{image} exited before it was ready; log:\n{}",
                daemon.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "tgt-dataplane on rbd/{image} not ready in 60 s; log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            daemon,
            portal,
            iqn,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("iscsi://{}/{}/1", self.portal, self.iqn)
    }

    fn session(&self) -> Session {
        Session::login(
            self.portal,
            &SessionOptions {
                target_name: Some(self.iqn.clone()),
                ..SessionOptions::default()
            },
        )
        .expect("login")
    }
}

/// Deterministic bytes of block `lba` in generation `gen`.
fn pattern(lba: u64, gen: u64, len: usize) -> Vec<u8> {
    let mut x = lba.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ gen.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// WRITE (16) with FUA (SBC-3 5.40: the data is on the medium before GOOD).
fn write16_fua(s: &Session, lba: u64, data: &[u8]) -> Result<(), String> {
    let blocks = u32::try_from(data.len() / BLOCK as usize).expect("blocks");
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8A;
    cdb[1] = 0x08;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    s.execute(1, &cdb, DataDir::Write(data))
        .and_then(|o| o.good())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn conformance(dp: &RbdDataplane) -> CuRun {
    require_tool("iscsi-test-cu");
    let dir = TempDir::new("rbd-cu");
    let out = run_with_timeout(
        Command::new("iscsi-test-cu")
            .current_dir(dir.path())
            .args(["-d", "-x", "--test=ALL"])
            .args(["-i", "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"])
            .args([
                "-I",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
            ])
            .arg(dp.url()),
        Duration::from_secs(900),
    );
    let output = text(&out);
    let xml = std::fs::read_to_string(dir.path().join("CUnitAutomated-Results.xml"))
        .unwrap_or_else(|_| panic!("iscsi-test-cu wrote no results:\n{output}"));
    CuRun::parse(&xml, &output)
        .unwrap_or_else(|e| panic!("iscsi-test-cu results unreadable: {e}\n{output}"))
}

fn phase_conformance(cluster: &Cluster) {
    let allowed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ALLOW_LIST_PATH);
    let allowed = std::fs::read_to_string(&allowed_path)
        .map_err(|e| e.to_string())
        .and_then(|t| AllowList::parse(&t))
        .unwrap_or_else(|e| panic!("{}: {e}", allowed_path.display()));
    cluster.create_image("cu", 64);
    let mut dp = RbdDataplane::start(cluster, "rbd-cu", "cu");
    let t0 = Instant::now();
    let run = conformance(&dp);
    assert!(
        dp.daemon.alive(),
        "the data plane died during iscsi-test-cu on RBD:\n{}",
        dp.daemon.log_text()
    );
    eprintln!(
        "iscsi-test-cu ALL on RBD: {}/{} passed, {} ran for real ({} skipped) in {:.0} s; failed: {:?}",
        run.passed(),
        run.total(),
        run.ran_for_real(),
        run.skipped,
        t0.elapsed().as_secs_f64(),
        run.failed()
    );
    let problems = run.problems(&allowed, RAN_FOR_REAL_ON_RBD);
    assert!(
        problems.is_empty(),
        "iscsi-test-cu ALL on RBD:\n{}",
        problems.join("\n")
    );
}

fn phase_verified_load(cluster: &Cluster) {
    cluster.create_image("load", 128);
    let mut dp = RbdDataplane::start(cluster, "rbd-load", "load");
    let opts = LoadOptions {
        sessions: 2,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(10),
        write_percent: 50,
        region_blocks: Some(16384),
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("verified load runs");
    eprintln!(
        "verified load on RBD: {} ops ({} writes, {} reads), {:.0} IOPS, {:.1} MiB/s, p99 {} us, {} blocks verified, {} errors, {} mismatches",
        r.ops, r.writes, r.reads, r.iops, r.mib_per_s, r.latency_us.p99, r.verified_blocks, r.errors, r.mismatches
    );
    assert!(
        r.passed() && r.mismatches == 0 && r.errors == 0,
        "verified load on RBD failed: errors {:?} mismatches {:?}\ndata plane log:\n{}",
        r.first_errors,
        r.first_mismatches,
        dp.daemon.log_text()
    );
    assert!(
        r.verified_blocks > 0 && r.writes > 0,
        "the load verified nothing"
    );
    assert!(dp.daemon.alive(), "data plane died under load");
}

fn phase_export(cluster: &Cluster) {
    const MIB: u64 = 16;
    cluster.create_image("exp", MIB);
    let dp = RbdDataplane::start(cluster, "rbd-exp", "exp");
    let s = dp.session();
    let chunk_blocks = 256u64;
    let total_blocks = (MIB << 20) / u64::from(BLOCK);
    let mut want = Vec::with_capacity((MIB << 20) as usize);
    for lba in (0..total_blocks).step_by(chunk_blocks as usize) {
        let data = pattern(lba, 7, (chunk_blocks * u64::from(BLOCK)) as usize);
        s.write16(1, lba, &data, BLOCK)
            .expect("write through iSCSI");
        want.extend_from_slice(&data);
    }
    s.logout().expect("logout");
    drop(dp);
    let file = cluster.dir.path().join("exp.raw");
    cluster.rbd(&["export", "rbd/exp", file.to_str().expect("utf-8 path")]);
    let got = std::fs::read(&file).expect("read export");
    let _ = std::fs::remove_file(&file);
    assert_eq!(got.len(), want.len(), "rbd export has the image's size");
    let first = got.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        first.is_none(),
        "rbd export differs from what the initiator wrote at byte {first:?}"
    );
    eprintln!("rbd export equals the {MIB} MiB the initiator wrote");
}

fn phase_kill9_under_fua(cluster: &Cluster) {
    cluster.create_image("kill", 64);
    let mut dp = RbdDataplane::start(cluster, "rbd-kill", "kill");
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let s = dp.session();
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // Each writer owns blocks w, w+4, w+8, ... (8 blocks each, generation 1).
                let mut lba = w * 8;
                while !stop.load(Ordering::Relaxed) && lba + 8 <= (64 << 20) / 512 {
                    match write16_fua(&s, lba, &pattern(lba, 1, 8 * BLOCK as usize)) {
                        Ok(()) => acked.lock().expect("lock").push(lba),
                        Err(_) => break,
                    }
                    lba += 32;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL while the writers still have commands outstanding.
    dp.daemon.child.kill().expect("SIGKILL the data plane");
    let _ = dp.daemon.child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 200,
        "only {} FUA writes acknowledged before the kill",
        acked.len()
    );
    drop(dp);
    let t0 = Instant::now();
    let dp = RbdDataplane::start(cluster, "rbd-kill2", "kill");
    let s = dp.session();
    let mut lost = Vec::new();
    for &lba in &acked {
        let got = s.read16(1, lba, 8, BLOCK).expect("read after restart");
        if got != pattern(lba, 1, 8 * BLOCK as usize) {
            lost.push(lba);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged FUA writes did not survive SIGKILL (first LBAs {:?})",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(8)]
    );
    // The restarted gateway becomes the writer once the killed one's watch expires.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match write16_fua(&s, 0, &pattern(0, 2, 8 * BLOCK as usize)) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the restarted data plane never got the image's lock: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "kill -9 under FUA writes: {} acknowledged, {} lost; restarted gateway writing after {:.1} s",
        acked.len(),
        lost.len(),
        t0.elapsed().as_secs_f64()
    );
}

fn phase_second_gateway(cluster: &Cluster) {
    cluster.create_image("lock", 16);
    let first = RbdDataplane::start(cluster, "rbd-lock1", "lock");
    let s1 = first.session();
    let a = pattern(100, 3, BLOCK as usize);
    s1.write16(1, 100, &a, BLOCK)
        .expect("the lock owner writes");
    let mut second = RbdDataplane::start(cluster, "rbd-lock2", "lock");
    let s2 = second.session();
    let b = pattern(100, 4, BLOCK as usize);
    for _ in 0..3 {
        let r = s2.write16(1, 100, &b, BLOCK);
        assert!(
            r.is_err(),
            "a second gateway acknowledged a write while the first owns the lock:\n{}",
            second.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(
        s2.read16(1, 100, 1, BLOCK)
            .expect("the second gateway reads"),
        a,
        "the refused write changed the image"
    );
    s1.write16(1, 101, &b, BLOCK)
        .expect("the owner keeps writing while a second gateway asks for the lock");
    assert!(second.daemon.alive(), "the second gateway died");
    eprintln!("second gateway: writes refused while the first owns the lock, reads served");
}

/// Sends SIGSTOP or SIGCONT to the cluster's OSD (a PID the script recorded).
fn signal_osd(cluster: &Cluster, sig: &str) {
    let pid = std::fs::read_to_string(cluster.dir.path().join("pids/osd.0.pid"))
        .expect("the script records the OSD's PID");
    let ok = Command::new("kill")
        .arg(sig)
        .arg(pid.trim())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} of the OSD failed");
}

/// Resumes the OSD when dropped, so a failing phase does not leave it stopped.
struct OsdStopped<'a>(&'a Cluster);

impl Drop for OsdStopped<'_> {
    fn drop(&mut self) {
        signal_osd(self.0, "-CONT");
    }
}

fn phase_stalled_cluster(cluster: &Cluster) {
    cluster.create_image("stall", 16);
    let mut dp = RbdDataplane::start(cluster, "rbd-stall", "stall");
    let s = dp.session();
    s.write16(1, 0, &pattern(0, 5, BLOCK as usize), BLOCK)
        .expect("write before the stall");
    signal_osd(cluster, "-STOP");
    let stopped = OsdStopped(cluster);
    let t0 = Instant::now();
    let r = s.write16(1, 8, &pattern(8, 5, BLOCK as usize), BLOCK);
    let waited = t0.elapsed();
    drop(stopped);
    match r {
        Err(tgt_system_tests::initiator::Error::Scsi {
            sense: Some(sense), ..
        }) => assert_eq!(sense.key, 2, "a stalled cluster is NOT READY, got {sense}"),
        other => panic!("a write to a stalled cluster gave {other:?}"),
    }
    assert!(
        waited < Duration::from_secs(28),
        "the stalled write took {waited:?}, more than the bound"
    );
    assert!(
        dp.daemon.alive(),
        "the data plane died while the cluster stalled"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.write16(1, 8, &pattern(8, 6, BLOCK as usize), BLOCK) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "I/O did not resume after the cluster came back: {e}\ndata plane log:\n{}",
                dp.daemon.log_text()
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        s.read16(1, 8, 1, BLOCK).expect("read after the stall"),
        pattern(8, 6, BLOCK as usize)
    );
    eprintln!(
        "stalled cluster: NOT READY after {:.1} s, data plane up, I/O resumed",
        waited.as_secs_f64()
    );
}

#[test]
fn rbd_backend_on_a_single_node_ceph_cluster() {
    let cluster = Cluster::start();
    let t0 = Instant::now();
    phase_second_gateway(&cluster);
    phase_export(&cluster);
    phase_kill9_under_fua(&cluster);
    phase_verified_load(&cluster);
    phase_stalled_cluster(&cluster);
    phase_conformance(&cluster);
    eprintln!("rbd phases done in {:.0} s", t0.elapsed().as_secs_f64());
}
