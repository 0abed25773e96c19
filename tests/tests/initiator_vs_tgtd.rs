//! The project's test initiator against an independent target: Debian's `tgtd` (the Linux
//! SCSI target framework). Each test starts its own `tgtd` on a free loopback port with its
//! own control port and backing file, and a guard kills it when the test ends, even on
//! failure. The tests skip (with a message) only when `tgtd` is not installed; the README's
//! test command installs it, so CI always runs them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tgt_system_tests::initiator::{self, DataDir, Error, Session, SessionOptions};
use tgt_system_tests::{verified_load, LoadOptions};

const IQN: &str = "iqn.2026-01.io.github.tgt-rs:tgtd-reference";
const LUN_BYTES: u64 = 64 << 20;

fn tgtd_installed() -> bool {
    ["/usr/sbin/tgtd", "/usr/bin/tgtd", "/sbin/tgtd"]
        .iter()
        .any(|p| Path::new(p).exists())
        || Command::new("tgtd")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

macro_rules! require_tgtd {
    () => {
        if !tgtd_installed() {
            eprintln!(
                "SKIPPED: tgtd is not installed (apt-get install -y tgt); ./scripts/test-all.sh installs it"
            );
            return;
        }
    };
}

/// A running `tgtd` serving one target with one file-backed LUN; killed on drop.
struct Tgtd {
    child: Child,
    dir: PathBuf,
    control_port: u32,
    portal: SocketAddr,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn tgtadm(control_port: u32, args: &[&str]) -> std::process::Output {
    Command::new("tgtadm")
        .arg("-C")
        .arg(control_port.to_string())
        .args(args)
        .output()
        .expect("run tgtadm")
}

impl Tgtd {
    fn start(name: &str) -> Tgtd {
        Tgtd::start_with(name, &[])
    }

    /// Starts tgtd and applies `params` (name, value) to the target with `tgtadm --op update`.
    fn start_with(name: &str, params: &[(&str, &str)]) -> Tgtd {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .join("target")
            .join("systest-tmp")
            .join(format!("tgtd-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create tgtd dir");
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(LUN_BYTES))
            .expect("create backing file");
        // A control port nobody else uses: tgtd's management socket is per port.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // tgtd accepts control ports up to 32767.
        let mut control_port = 1_000 + (std::process::id() * 31 + n * 7919 + nanos) % 31_000;
        while Path::new(&format!("/var/run/tgtd/socket.{control_port}")).exists() {
            control_port = 1_000 + (control_port + 1) % 31_000;
        }
        let port = free_port();
        let portal: SocketAddr = format!("127.0.0.1:{port}").parse().expect("portal");
        let log = std::fs::File::create(dir.join("tgtd.log")).expect("tgtd log");
        let child = Command::new("tgtd")
            .arg("-f")
            .arg("--iscsi")
            .arg(format!("portal={portal}"))
            .arg("-C")
            .arg(control_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn tgtd");
        let mut t = Tgtd {
            child,
            dir,
            control_port,
            portal,
        };
        t.wait_for_control();
        let disk = disk.to_str().expect("utf-8 path").to_string();
        for args in [
            vec![
                "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN,
            ],
            vec![
                "--lld",
                "iscsi",
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                "1",
                "-b",
                &disk,
            ],
            vec![
                "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
            ],
        ] {
            let out = tgtadm(t.control_port, &args);
            assert!(
                out.status.success(),
                "tgtadm {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                t.log()
            );
        }
        for (k, v) in params {
            let args = [
                "--lld", "iscsi", "--op", "update", "--mode", "target", "--tid", "1", "-n", k,
                "-v", v,
            ];
            let out = tgtadm(t.control_port, &args);
            assert!(
                out.status.success(),
                "tgtadm {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        t.wait_for_portal();
        t
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tgtd.log")).unwrap_or_default()
    }

    fn wait_for_control(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tgtd exited early with {status}:\n{}", self.log());
            }
            let out = tgtadm(self.control_port, &["--op", "show", "--mode", "sys"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tgtd control port {} never answered:\n{}",
                self.control_port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_portal(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&self.portal, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tgtd portal {} never accepted:\n{}",
                self.portal,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn options(&self) -> SessionOptions {
        SessionOptions {
            target_name: Some(IQN.into()),
            ..SessionOptions::default()
        }
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while targets exist, so it gets SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let sock = format!("/var/run/tgtd/socket.{}", self.control_port);
        let _ = std::fs::remove_file(format!("{sock}.lock"));
        let _ = std::fs::remove_file(sock);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn discovery_lists_the_tgtd_target_and_portal() {
    require_tgtd!();
    let t = Tgtd::start("discovery");
    let targets = initiator::discover(t.portal, "iqn.2026-01.io.github.tgt-rs:discovery").unwrap();
    let found = targets
        .iter()
        .find(|d| d.name == IQN)
        .unwrap_or_else(|| panic!("{IQN} missing from {targets:?}"));
    assert!(
        found
            .addresses
            .iter()
            .any(|a| a.starts_with(&t.portal.to_string())),
        "portal {} missing from {found:?}",
        t.portal
    );
}

#[test]
fn basic_commands_and_data_round_trip_against_tgtd() {
    require_tgtd!();
    let t = Tgtd::start("basic");
    let s = Session::login(t.portal, &t.options()).unwrap();
    let n = s.negotiated().clone();
    assert!(n.tsih != 0);
    let mut ready = s.test_unit_ready(1);
    if ready.is_err() {
        ready = s.test_unit_ready(1);
    }
    ready.unwrap();
    let inq = s.inquiry(1).unwrap();
    assert_eq!(inq.device_type, 0, "{inq:?}");
    let cap = s.read_capacity16(1).unwrap();
    assert_eq!(cap.block_len_bytes, 512);
    assert_eq!(cap.blocks * 512, LUN_BYTES);
    s.nop_ping(b"ping-payload").unwrap();
    s.nop_ping(&[]).unwrap();

    // 1 MiB forces several R2Ts (MaxBurstLength) and many Data-In PDUs.
    let data: Vec<u8> = (0..1_048_576u32).map(|i| (i * 7 + i / 512) as u8).collect();
    s.write16(1, 100, &data, 512).unwrap();
    assert_eq!(s.read16(1, 100, 2048, 512).unwrap(), data);
    let small: Vec<u8> = (0..1024u32).map(|i| (i ^ 0x5a) as u8).collect();
    s.write10(1, 7, &small, 512).unwrap();
    assert_eq!(s.read10(1, 7, 2, 512).unwrap(), small);

    // A read past the end is CHECK CONDITION / ILLEGAL REQUEST, and the session lives on.
    match s.read16(1, cap.blocks, 1, 512) {
        Err(Error::Scsi { status, sense }) => {
            assert_eq!(status, 2);
            assert_eq!(sense.map(|x| x.key), Some(5), "{sense:?}");
        }
        other => panic!("read past the end gave {other:?}"),
    }
    // A short INQUIRY allocation reports the residual honestly.
    let o = s
        .execute(1, &initiator::scsi::inquiry(255), DataDir::Read(255))
        .unwrap();
    assert_eq!(o.status, 0);
    assert!(o.data.len() >= 36);
    s.test_unit_ready(1).unwrap();
    assert!(s.failure().is_none());
    s.logout().unwrap();
}

#[test]
fn many_threads_share_one_session_within_the_cmdsn_window() {
    require_tgtd!();
    let t = Tgtd::start("qd");
    let s = Session::login(t.portal, &t.options()).unwrap();
    let _ = s.test_unit_ready(1);
    std::thread::scope(|scope| {
        for w in 0..16u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..20u64 {
                    let lba = w * 1000 + i * 16;
                    let buf = vec![(w * 20 + i) as u8; 8192];
                    s.write16(1, lba, &buf, 512).unwrap();
                    assert_eq!(s.read16(1, lba, 16, 512).unwrap(), buf);
                }
            });
        }
    });
    s.logout().unwrap();
}

#[test]
fn verified_load_against_tgtd_has_no_errors_or_mismatches() {
    require_tgtd!();
    // A one-second NOP-In interval makes tgtd ping us during the run; InitialR2T=No lets
    // unsolicited Data-Out happen (tgtd's default Yes would win the OR negotiation).
    let t = Tgtd::start_with(
        "load",
        &[
            ("nop_interval", "1"),
            ("nop_count", "5"),
            ("InitialR2T", "No"),
        ],
    );
    let opts = LoadOptions {
        sessions: 2,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(10),
        io_len_bytes_min: 512,
        io_len_bytes_max: 65_536,
        write_percent: 50,
        region_blocks: Some(16_384),
        // A first burst below the largest write makes the bigger writes go immediate data,
        // then unsolicited Data-Out, then R2T-solicited Data-Out; a 16 KiB receive limit
        // makes the bigger reads arrive as several Data-In PDUs.
        session: SessionOptions {
            first_burst_len_bytes: 16_384,
            recv_data_segment_len_bytes_max: 16_384,
            outstanding_r2t_max: 4,
            ..t.options()
        },
        ..LoadOptions::default()
    };
    let report = verified_load(t.portal, IQN, 1, opts).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    assert_eq!(report.mismatches, 0, "{:?}", report.first_mismatches);
    assert!(report.ops > 0);
    assert!(report.writes > 0 && report.reads > 0);
    assert!(report.verified_blocks > 0);
    let p = report.protocol;
    assert!(p.immediate_data_bytes > 0, "{p:?}");
    assert!(p.unsolicited_data_out_pdus > 0, "{p:?}");
    assert!(p.r2ts > 0 && p.solicited_data_out_pdus > 0, "{p:?}");
    assert!(p.data_in_pdus > report.reads, "no multi-PDU Data-In: {p:?}");
    assert!(p.target_pings_answered > 0, "tgtd never pinged: {p:?}");
}

#[test]
fn verified_load_with_digests_and_solicited_data_only() {
    require_tgtd!();
    // tgtd offers only None for digests unless the target is configured to accept CRC32C.
    let t = Tgtd::start_with(
        "digests",
        &[
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "CRC32C,None"),
        ],
    );
    let opts = LoadOptions {
        sessions: 1,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(3),
        write_percent: 60,
        region_blocks: Some(8192),
        session: SessionOptions {
            header_digest: true,
            data_digest: true,
            immediate_data: false,
            initial_r2t: true,
            recv_data_segment_len_bytes_max: 8192,
            burst_len_bytes_max: 16_384,
            first_burst_len_bytes: 8192,
            ..t.options()
        },
        ..LoadOptions::default()
    };
    let report = verified_load(t.portal, IQN, 1, opts).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    let n = report.negotiated.clone().unwrap();
    assert!(n.header_digest && n.data_digest, "{n:?}");
    assert!(n.initial_r2t && !n.immediate_data, "{n:?}");
    assert!(
        report.passed(),
        "{:?} {:?}",
        report.first_errors,
        report.first_mismatches
    );
}
