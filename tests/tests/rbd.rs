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
            .arg("--control-socket")
            .arg(dir.path().join("dp.sock"))
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

    /// The data plane's counters of its one RBD storage, as it reports them on its control
    /// socket to the control plane (which renders them as `tgt_rbd_*` in `/metrics`).
    fn rbd_stats(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let sock = self._dir.path().join("dp.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&sock)
            .unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // A frame: protocol version 1 and payload length, big-endian u32 each, then JSON.
        let req = br#""getStats""#;
        let mut frame = Vec::new();
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&u32::try_from(req.len()).expect("len").to_be_bytes());
        frame.extend_from_slice(req);
        s.write_all(&frame).expect("send getStats");
        let mut head = [0u8; 8];
        s.read_exact(&mut head).expect("frame header");
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).expect("frame body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        let rbd = v["stats"]["rbd"].clone();
        assert_eq!(
            rbd.as_array().map(Vec::len),
            Some(1),
            "one RBD storage in the stats: {v}"
        );
        rbd[0].clone()
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

/// Raw sense bytes of a command that did not end GOOD (for the INFORMATION field).
fn check_condition(s: &Session, cdb: &[u8], dir: DataDir<'_>) -> Vec<u8> {
    let o = s
        .execute(1, cdb, dir)
        .expect("the command reaches the target");
    assert_eq!(
        o.status, 0x02,
        "expected CHECK CONDITION, got status {:#x}",
        o.status
    );
    o.sense.expect("CHECK CONDITION carries sense data")
}

/// Sense key, ASC, ASCQ and INFORMATION of fixed (70h) or descriptor (72h) sense data.
fn sense_fields(s: &[u8]) -> (u8, u8, u8, Option<u64>) {
    match s.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) if s.len() >= 14 => {
            let info =
                (s[0] & 0x80 != 0).then(|| u64::from(u32::from_be_bytes([s[3], s[4], s[5], s[6]])));
            (s[2] & 0x0f, s[12], s[13], info)
        }
        Some(0x72 | 0x73) if s.len() >= 8 => {
            // Descriptors start at byte 8; the information descriptor is type 00h.
            let mut i = 8;
            let mut info = None;
            while i + 1 < s.len() {
                let (t, l) = (s[i], usize::from(s[i + 1]));
                if t == 0 && i + 12 <= s.len() {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&s[i + 4..i + 12]);
                    info = Some(u64::from_be_bytes(b));
                }
                i += 2 + l;
            }
            (s[1] & 0x0f, s[2], s[3], info)
        }
        _ => panic!("unreadable sense data {s:02x?}"),
    }
}

/// COMPARE AND WRITE (SBC-3 5.2): `verify` then `write`, both `blocks` long.
fn caw_cdb(lba: u64, blocks: u8) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = blocks;
    cdb
}

/// WRITE SAME (16) (SBC-3 5.46) of one block over `blocks` blocks.
fn write_same16_cdb(lba: u64, blocks: u32) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x93;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// WRITE SAME and COMPARE AND WRITE on RBD: data as SBC-3 says, a miscompare reported with
/// the offset of the first differing byte, inside one RADOS object (librbd's atomic
/// compare-and-write) and across an object boundary (4 MiB objects: LBA 8192).
fn phase_write_same_and_compare_and_write(cluster: &Cluster) {
    cluster.create_image("caw", 16);
    let dp = RbdDataplane::start(cluster, "rbd-caw", "caw");
    let s = dp.session();
    let bs = BLOCK as usize;

    // WRITE SAME of a non-zero block over 300 blocks, including an object boundary.
    let block = pattern(1, 9, bs);
    for (lba, n) in [(1000u64, 300u32), (8100, 200)] {
        s.execute(1, &write_same16_cdb(lba, n), DataDir::Write(&block))
            .and_then(|o| o.good())
            .expect("WRITE SAME (16)");
        let got = s.read16(1, lba, n, BLOCK).expect("read after WRITE SAME");
        for (i, b) in got.chunks(bs).enumerate() {
            assert_eq!(
                b,
                &block[..],
                "block {} after WRITE SAME at {lba}",
                lba + i as u64
            );
        }
    }
    // The blocks around it are untouched (zero: a fresh image).
    assert!(s
        .read16(1, 999, 1, BLOCK)
        .expect("read")
        .iter()
        .all(|&b| b == 0));
    assert!(s
        .read16(1, 1300, 1, BLOCK)
        .expect("read")
        .iter()
        .all(|&b| b == 0));

    for (lba, blocks) in [(2000u64, 1u8), (2100, 4), (8190, 4)] {
        let n = usize::from(blocks) * bs;
        let a = pattern(lba, 10, n);
        let b = pattern(lba, 11, n);
        s.write16(1, lba, &a, BLOCK)
            .expect("write the compare data");
        // Matching: GOOD and the write instance is on the medium.
        let mut out = a.clone();
        out.extend_from_slice(&b);
        s.execute(1, &caw_cdb(lba, blocks), DataDir::Write(&out))
            .and_then(|o| o.good())
            .unwrap_or_else(|e| panic!("COMPARE AND WRITE at {lba} x{blocks}: {e}"));
        assert_eq!(s.read16(1, lba, u32::from(blocks), BLOCK).expect("read"), b);
        // Stale verify data that differs first at byte `at`: MISCOMPARE, INFORMATION = at,
        // and nothing written.
        let at = n - bs + 37;
        let mut verify = b.clone();
        verify[at] ^= 0x5a;
        verify[n - 1] ^= 0x01;
        let mut out = verify;
        out.extend_from_slice(&pattern(lba, 12, n));
        let sense = check_condition(&s, &caw_cdb(lba, blocks), DataDir::Write(&out));
        let (key, asc, ascq, info) = sense_fields(&sense);
        assert_eq!(
            (key, asc, ascq),
            (0x0e, 0x1d, 0x00),
            "MISCOMPARE DURING VERIFY OPERATION at {lba} x{blocks}"
        );
        assert_eq!(
            info,
            Some(at as u64),
            "offset of the first differing byte at {lba} x{blocks}"
        );
        assert_eq!(
            s.read16(1, lba, u32::from(blocks), BLOCK).expect("read"),
            b,
            "a miscompare at {lba} x{blocks} wrote nothing"
        );
    }

    // Atomicity: two sessions increment one counter block with COMPARE AND WRITE; every
    // GOOD is one increment, so the final count is the number of GOODs.
    let counter_lba = 3000u64;
    s.write16(1, counter_lba, &vec![0u8; bs], BLOCK)
        .expect("zero the counter");
    let goods: Vec<u64> = (0..2)
        .map(|_| {
            let s = dp.session();
            std::thread::spawn(move || {
                let mut good = 0u64;
                for _ in 0..40 {
                    let cur = s.read16(1, counter_lba, 1, BLOCK).expect("read counter");
                    let v = u64::from_le_bytes(cur[..8].try_into().expect("8 bytes"));
                    let mut next = cur.clone();
                    next[..8].copy_from_slice(&(v + 1).to_le_bytes());
                    let mut out = cur;
                    out.extend_from_slice(&next);
                    let o = s
                        .execute(1, &caw_cdb(counter_lba, 1), DataDir::Write(&out))
                        .expect("COMPARE AND WRITE reaches the target");
                    if o.status == 0 {
                        good += 1;
                    } else {
                        let sense = o.sense.expect("sense");
                        assert_eq!(sense_fields(&sense).0, 0x0e, "a lost race is a MISCOMPARE");
                    }
                }
                good
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("incrementer"))
        .collect();
    let cur = s.read16(1, counter_lba, 1, BLOCK).expect("read counter");
    let count = u64::from_le_bytes(cur[..8].try_into().expect("8 bytes"));
    assert_eq!(
        count,
        goods.iter().sum::<u64>(),
        "every GOOD COMPARE AND WRITE counted once"
    );
    // The counters the control plane turns into tgt_rbd_* metrics: WRITE SAME went to
    // rbd_aio_writesame (two commands), the one-sector COMPARE AND WRITEs to librbd's
    // compare-and-write (with its miscompares), the longer ones were not offered to it.
    let st = dp.rbd_stats();
    let ops = &st["opsTotal"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    assert_eq!(st["deviceId"], 1000, "{st}");
    assert_eq!(st["image"], "rbd/caw", "{st}");
    assert_eq!(
        n(&ops["writesame"]),
        2,
        "WRITE SAME through rbd_aio_writesame: {st}"
    );
    // The GOOD and the MISCOMPARE at LBA 2000, and the 80 increments (GOOD or not).
    assert_eq!(
        n(&ops["compare_and_write"]),
        2 + 80,
        "one-sector COMPARE AND WRITEs through rbd_aio_compare_and_write: {st}"
    );
    assert_eq!(
        n(&st["miscomparesTotal"]),
        1 + (80 - goods.iter().sum::<u64>()),
        "{st}"
    );
    assert_eq!(st["lockOwner"], true, "{st}");
    let completed: u64 = st["latency"]["counts"]
        .as_array()
        .map(|c| c.iter().map(n).sum())
        .unwrap_or(0);
    assert!(completed > 0 && n(&ops["write"]) > 0, "{st}");
    eprintln!(
        "WRITE SAME and COMPARE AND WRITE on RBD: data and MISCOMPARE offsets right; counter {count} from {goods:?} GOODs; librbd ops {ops}"
    );
}

/// INQUIRY of VPD page `code`.
fn vpd(s: &Session, code: u8) -> Vec<u8> {
    let cdb = [0x12, 0x01, code, 0x01, 0x00, 0x00];
    s.execute(1, &cdb, DataDir::Read(256))
        .and_then(|o| o.good())
        .unwrap_or_else(|e| panic!("INQUIRY VPD {code:#04x}: {e}"))
        .data
}

/// UNMAP of one range (SBC-3 5.28).
fn unmap(s: &Session, lba: u64, blocks: u32) {
    let mut p = vec![0u8; 24];
    p[0..2].copy_from_slice(&22u16.to_be_bytes());
    p[2..4].copy_from_slice(&16u16.to_be_bytes());
    p[8..16].copy_from_slice(&lba.to_be_bytes());
    p[16..20].copy_from_slice(&blocks.to_be_bytes());
    let mut cdb = [0u8; 10];
    cdb[0] = 0x42;
    cdb[7..9].copy_from_slice(&24u16.to_be_bytes());
    s.execute(1, &cdb, DataDir::Write(&p))
        .and_then(|o| o.good())
        .unwrap_or_else(|e| panic!("UNMAP {lba}+{blocks}: {e}"));
}

/// Block Limits (B0h) advertises the discard granularity the gateway configures in librbd
/// (64 KiB: OPTIMAL UNMAP GRANULARITY 128 blocks of 512 bytes), and LBPRZ (B2h and READ
/// CAPACITY (16)) holds: ranges unmapped off that granularity, inside it and across it,
/// read back as zeroes.
fn phase_block_limits_and_lbprz(cluster: &Cluster) {
    const GRANULARITY_BLOCKS: u32 = (64 << 10) / BLOCK;
    cluster.create_image("limits", 16);
    let dp = RbdDataplane::start(cluster, "rbd-limits", "limits");
    let s = dp.session();
    let b0 = vpd(&s, 0xB0);
    assert!(b0.len() >= 0x40, "Block Limits page is {} bytes", b0.len());
    let be32 = |o: usize| u32::from_be_bytes([b0[o], b0[o + 1], b0[o + 2], b0[o + 3]]);
    assert_eq!(be32(28), GRANULARITY_BLOCKS, "OPTIMAL UNMAP GRANULARITY");
    assert_eq!(
        be32(32) & 0x7fff_ffff,
        0,
        "UNMAP GRANULARITY ALIGNMENT 0 (from LBA 0)"
    );
    assert!(be32(20) > 0, "MAXIMUM UNMAP LBA COUNT");
    let b2 = vpd(&s, 0xB2);
    assert_eq!(
        b2[5] & 0x04,
        0x04,
        "LBPRZ in the Logical Block Provisioning page"
    );
    let rc16 = s
        .execute(
            1,
            &tgt_system_tests::initiator::scsi::read_capacity16(),
            DataDir::Read(32),
        )
        .and_then(|o| o.good())
        .expect("READ CAPACITY (16)")
        .data;
    assert_eq!(
        rc16[14] & 0xC0,
        0xC0,
        "LBPME and LBPRZ in READ CAPACITY (16)"
    );
    // LBPRZ must hold for every range, aligned to the granularity or not.
    let g = u64::from(GRANULARITY_BLOCKS);
    for (lba, n) in [
        (3u64, 5u32),
        (g - 7, 20),
        (2 * g, GRANULARITY_BLOCKS),
        (5 * g + 1, 3 * GRANULARITY_BLOCKS),
    ] {
        let data = pattern(lba, 13, n as usize * BLOCK as usize);
        s.write16(1, lba, &data, BLOCK).expect("write before UNMAP");
        unmap(&s, lba, n);
        let got = s.read16(1, lba, n, BLOCK).expect("read after UNMAP");
        let nonzero = got.iter().position(|&b| b != 0);
        assert!(
            nonzero.is_none(),
            "UNMAP {lba}+{n}: byte {nonzero:?} is not zero, but LBPRZ is claimed"
        );
    }
    eprintln!(
        "block limits on RBD: OPTIMAL UNMAP GRANULARITY {GRANULARITY_BLOCKS} blocks, LBPRZ holds"
    );
}

/// `rbd resize` of a served image: the initiator gets CAPACITY DATA HAS CHANGED once and
/// READ CAPACITY the new size; a shrink (`--allow-shrink`) is not taken: the capacity stays
/// and the data plane says why in its log.
fn phase_resize(cluster: &Cluster) {
    cluster.create_image("grow", 16);
    let mut dp = RbdDataplane::start(cluster, "rbd-grow", "grow");
    let s = dp.session();
    let blocks_of = |mib: u64| mib * (1 << 20) / u64::from(BLOCK);
    assert_eq!(
        s.read_capacity16(1).expect("READ CAPACITY").blocks,
        blocks_of(16)
    );
    cluster.rbd(&["resize", "--size", "32M", "rbd/grow"]);
    // The data plane learns of the change asynchronously (librbd's header watch): poll with
    // TEST UNIT READY until the unit attention comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tur = [0u8; 6];
    loop {
        let o = s.execute(1, &tur, DataDir::None).expect("TEST UNIT READY");
        if o.status == 0x02 {
            let (key, asc, ascq, _) = sense_fields(&o.sense.expect("sense"));
            assert_eq!(
                (key, asc, ascq),
                (0x06, 0x2a, 0x09),
                "UNIT ATTENTION, CAPACITY DATA HAS CHANGED"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CAPACITY DATA HAS CHANGED 30 s after rbd resize; log:\n{}",
            dp.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once: the next command is GOOD.
    s.execute(1, &tur, DataDir::None)
        .and_then(|o| o.good())
        .expect("the unit attention is reported once");
    assert_eq!(
        s.read_capacity16(1).expect("READ CAPACITY").blocks,
        blocks_of(32)
    );
    let last = blocks_of(32) - 8;
    let data = pattern(last, 14, 8 * BLOCK as usize);
    s.write16(1, last, &data, BLOCK)
        .expect("write in the grown part");
    assert_eq!(
        s.read16(1, last, 8, BLOCK).expect("read the grown part"),
        data
    );

    // A shrink is refused: capacity unchanged, no unit attention, said in the log.
    cluster.rbd(&["resize", "--allow-shrink", "--size", "24M", "rbd/grow"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dp.daemon.log_text().contains("shrunk") {
        assert!(
            Instant::now() < deadline,
            "the data plane did not report the shrink; log:\n{}",
            dp.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.execute(1, &tur, DataDir::None)
        .and_then(|o| o.good())
        .expect("no unit attention for a refused shrink");
    assert_eq!(
        s.read_capacity16(1).expect("READ CAPACITY").blocks,
        blocks_of(32),
        "a shrunk image keeps the capacity the initiator knows"
    );
    assert!(dp.daemon.alive(), "the data plane died on a shrink");
    eprintln!("rbd resize: 16 -> 32 MiB seen as CAPACITY DATA HAS CHANGED once; shrink to 24 MiB refused and logged");
}

#[test]
fn rbd_backend_on_a_single_node_ceph_cluster() {
    let cluster = Cluster::start();
    let t0 = Instant::now();
    phase_second_gateway(&cluster);
    phase_export(&cluster);
    phase_write_same_and_compare_and_write(&cluster);
    phase_block_limits_and_lbprz(&cluster);
    phase_resize(&cluster);
    phase_kill9_under_fua(&cluster);
    phase_verified_load(&cluster);
    phase_stalled_cluster(&cluster);
    phase_conformance(&cluster);
    eprintln!("rbd phases done in {:.0} s", t0.elapsed().as_secs_f64());
}
