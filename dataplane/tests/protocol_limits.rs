#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is the test failing.
//! Component tests: the real `tgt-dataplane` binary driven with hand-built PDUs over a raw
//! socket, for the edges libiscsi does not reach: every bound from `limits.rs` that an
//! initiator can push on, and the ERL 0 answers to PDUs we do not support.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tgt_dataplane::limits;
use tgt_dataplane::pdu::{self, op, Framing, Out, Seq, BHS_LEN};

const IQN: &str = "iqn.2026-11.org.example.component:limits";
const INITIATOR: &str = "iqn.2026-11.org.example.component:init";

struct Target {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str) -> Target {
    start_with(tag, &[])
}

fn start_with(tag: &str, args: &[&str]) -> Target {
    start_config(tag, args, "")
}

/// `extra_top` is added to the config's top-level object (`,"performance":{...}`).
fn start_config(tag: &str, args: &[&str], extra_top: &str) -> Target {
    let dir = std::env::temp_dir().join(format!("tgt-limits-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let cfg = dir.join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"storages":[{{"deviceID":1,"path":"{}"}}],"iscsiportals":[{{"id":0,"portal":"127.0.0.1:0"}}],"iscsitargets":{{"{IQN}":{{"tpgts":{{"1":[0]}},"luns":{{"1":1}}}}}}{extra_top}}}"#,
            img.display()
        ),
    )
    .unwrap();
    let ready = dir.join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tgt-dataplane"))
        .arg("--config")
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(addr) = std::fs::read_to_string(&ready)
            .ok()
            .and_then(|t| t.split("\"addr\":\"").nth(1).map(str::to_string))
            .and_then(|r| r.split('"').next().and_then(|a| a.parse().ok()))
        {
            return Target { child, addr, dir };
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "data plane exited early"
        );
        assert!(Instant::now() < deadline, "data plane not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    framing: Framing,
    cmd_sn: u32,
    exp_stat_sn: u32,
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        pdu::text::push(&mut v, k, val);
    }
    v
}

impl Client {
    fn connect(t: &Target) -> Self {
        let s = TcpStream::connect(t.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            s,
            buf: Vec::new(),
            framing: Framing {
                header_digest: false,
                data_digest: false,
                max_recv_data: 1 << 20,
            },
            cmd_sn: 1,
            exp_stat_sn: 0,
        }
    }

    fn send(&mut self, h: &mut Out, data: &[u8]) {
        let mut out = Vec::new();
        h.emit(&mut out, data, &self.framing);
        self.s.write_all(&out).unwrap();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next PDU, or `None` when the target closed the connection or said nothing
    /// within the read timeout.
    fn recv(&mut self) -> Option<(pdu::Bhs, Vec<u8>)> {
        loop {
            if let Some((p, used)) = pdu::decode(&self.buf, &self.framing).unwrap() {
                let out = (p.bhs.clone(), p.data.to_vec());
                self.buf.drain(..used);
                if matches!(
                    out.0.opcode(),
                    op::SCSI_RESP
                        | op::NOP_IN
                        | op::REJECT
                        | op::LOGIN_RESP
                        | op::TEXT_RESP
                        | op::LOGOUT_RESP
                ) {
                    self.exp_stat_sn = Seq::parse(&out.0).stat_sn.wrapping_add(1);
                }
                return Some(out);
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut tmp = [0u8; 4096];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }

    fn login(&mut self, extra: &[(&str, &str)]) -> pdu::Bhs {
        self.login_isid(extra, 1)
    }

    /// Logs in with ISID ...`isid_lo`: sessions with distinct ISIDs coexist.
    fn login_isid(&mut self, extra: &[(&str, &str)], isid_lo: u8) -> pdu::Bhs {
        let mut pairs = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", IQN),
            ("SessionType", "Normal"),
        ];
        pairs.extend_from_slice(extra);
        let mut h = Out::new(op::LOGIN | 0x40, 0x80 | (1 << 2) | 3);
        h.0[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, isid_lo]);
        h.itt(1).u32(24, self.cmd_sn);
        self.send(&mut h, &text(&pairs));
        let (b, _) = self.recv().expect("login response");
        assert_eq!(b.opcode(), op::LOGIN_RESP);
        assert_eq!((b.0[36], b.0[37]), (0, 0), "login refused");
        b
    }

    fn nop(&mut self, itt: u32, cmd_sn: u32, immediate: bool, data: &[u8]) {
        let mut h = Out::new(op::NOP_OUT | if immediate { 0x40 } else { 0 }, 0x80);
        h.itt(itt)
            .u32(20, pdu::RESERVED_TAG)
            .u32(24, cmd_sn)
            .u32(28, self.exp_stat_sn);
        self.send(&mut h, data);
    }
}

#[test]
fn drops_the_connection_when_a_data_segment_exceeds_max_recv_data_segment_length() {
    let t = start("dsl");
    let mut c = Client::connect(&t);
    c.login(&[]);
    let len = limits::RECV_DATA_SEGMENT_BYTES + 4;
    let mut h = Out::new(op::NOP_OUT | 0x40, 0x80);
    h.itt(5).u32(20, pdu::RESERVED_TAG).u32(24, c.cmd_sn);
    let mut bytes = h.0.to_vec();
    bytes[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    c.send_raw(&bytes);
    assert!(
        c.closed(),
        "connection must be dropped on an oversized data segment"
    );
}

#[test]
fn refuses_a_transfer_over_the_limit_with_check_condition_and_keeps_the_session() {
    let t = start("xfer");
    let mut c = Client::connect(&t);
    c.login(&[]);
    let edtl = limits::TRANSFER_BYTES_MAX + 512;
    let blocks = edtl / 512;
    let mut h = Out::new(op::SCSI_CMD, 0x80 | 0x40);
    h.lun(pdu::encode_lun(1))
        .itt(9)
        .u32(20, edtl)
        .u32(24, c.cmd_sn)
        .u32(28, c.exp_stat_sn);
    h.0[32] = 0x88; // READ(16)
    h.0[42..46].copy_from_slice(&blocks.to_be_bytes());
    c.send(&mut h, &[]);
    c.cmd_sn += 1;
    let (b, data) = c.recv().expect("response");
    assert_eq!(b.opcode(), op::SCSI_RESP);
    assert_eq!(b.itt(), 9);
    assert_eq!(b.0[3], 0x02, "CHECK CONDITION");
    assert_eq!(data[2 + 2] & 0x0f, 0x05, "ILLEGAL REQUEST");
    c.nop(10, c.cmd_sn, false, b"still-here");
    let (b, data) = c.recv().expect("nop-in");
    assert_eq!((b.opcode(), b.itt()), (op::NOP_IN, 10));
    assert_eq!(data, b"still-here");
}

#[test]
fn login_text_over_the_limit_is_refused_with_initiator_error() {
    let t = start("text");
    let mut c = Client::connect(&t);
    let chunk = vec![b'a'; 8192];
    let mut refused = None;
    for _ in 0..(limits::TEXT_BYTES_MAX / chunk.len() + 2) {
        let mut h = Out::new(op::LOGIN | 0x40, 0x40 | (1 << 2));
        h.0[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 2]);
        h.itt(1).u32(24, 1);
        c.send(&mut h, &chunk);
        let (b, _) = c.recv().expect("login response");
        if b.0[36] != 0 {
            refused = Some((b.0[36], b.0[37]));
            break;
        }
    }
    assert_eq!(
        refused,
        Some((2, 0)),
        "continued login text must be bounded"
    );
    assert!(c.closed());
}

#[test]
fn ignores_commands_outside_the_cmdsn_window_and_serves_the_next_one() {
    let t = start("window");
    let mut c = Client::connect(&t);
    let b = c.login(&[]);
    let exp = Seq::parse(&b).exp_cmd_sn;
    let max = Seq::parse(&b).max_cmd_sn;
    assert_eq!(max.wrapping_sub(exp).wrapping_add(1), limits::CMD_WINDOW);
    c.s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.nop(20, max.wrapping_add(1), false, b"");
    c.nop(21, exp.wrapping_sub(1), false, b"");
    assert!(
        c.recv().is_none(),
        "out-of-window commands must get no answer"
    );
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.nop(22, exp, false, b"");
    let (b, _) = c.recv().expect("in-window command answered");
    assert_eq!((b.opcode(), b.itt()), (op::NOP_IN, 22));
    assert_eq!(
        Seq::parse(&b).exp_cmd_sn,
        exp.wrapping_add(1),
        "ExpCmdSN advanced by one"
    );
}

#[test]
fn holds_an_early_command_until_the_gap_is_filled() {
    let t = start("gap");
    let mut c = Client::connect(&t);
    let b = c.login(&[]);
    let exp = Seq::parse(&b).exp_cmd_sn;
    c.s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.nop(31, exp.wrapping_add(1), false, b"");
    assert!(
        c.recv().is_none(),
        "the early command waits for CmdSN {exp}"
    );
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.nop(30, exp, false, b"");
    let (a, _) = c.recv().unwrap();
    let (b, _) = c.recv().unwrap();
    assert_eq!((a.itt(), b.itt()), (30, 31), "delivered in CmdSN order");
}

#[test]
fn rejects_snack_and_unknown_opcodes_at_erl_0() {
    let t = start("snack");
    let mut c = Client::connect(&t);
    c.login(&[]);
    let mut h = Out::new(op::SNACK, 0x80);
    h.itt(40);
    c.send(&mut h, &[]);
    let (b, data) = c.recv().expect("reject");
    assert_eq!(
        (b.opcode(), b.0[2]),
        (op::REJECT, pdu::reject::PROTOCOL_ERROR)
    );
    assert_eq!(data.len(), BHS_LEN, "the rejected header comes back");
    assert_eq!(
        u32::from_be_bytes([data[16], data[17], data[18], data[19]]),
        40
    );
    let mut h = Out::new(0x1c, 0x80);
    h.itt(41);
    c.send(&mut h, &[]);
    let (b, _) = c.recv().expect("reject");
    assert_eq!(
        (b.opcode(), b.0[2]),
        (op::REJECT, pdu::reject::CMD_NOT_SUPPORTED)
    );
}

#[test]
fn header_digest_error_drops_the_connection() {
    let t = start("hdig");
    let mut c = Client::connect(&t);
    c.login(&[("HeaderDigest", "CRC32C"), ("DataDigest", "None")]);
    c.framing.header_digest = true;
    let mut out = Vec::new();
    let mut h = Out::new(op::NOP_OUT | 0x40, 0x80);
    h.itt(50).u32(20, pdu::RESERVED_TAG);
    h.emit(&mut out, &[], &c.framing);
    out[BHS_LEN] ^= 0xff;
    c.send_raw(&out);
    assert!(
        c.closed(),
        "a bad header digest ends the connection (RFC 7143 §7.8)"
    );
}

#[test]
fn data_digest_error_is_rejected_and_the_session_goes_on() {
    let t = start("ddig");
    let mut c = Client::connect(&t);
    c.login(&[("HeaderDigest", "None"), ("DataDigest", "CRC32C")]);
    c.framing.data_digest = true;
    let mut out = Vec::new();
    let mut h = Out::new(op::NOP_OUT | 0x40, 0x80);
    h.itt(60).u32(20, pdu::RESERVED_TAG).u32(24, c.cmd_sn);
    h.emit(&mut out, b"ping", &c.framing);
    let n = out.len();
    out[n - 1] ^= 0xff;
    c.send_raw(&out);
    let (b, _) = c.recv().expect("reject");
    assert_eq!((b.opcode(), b.0[2]), (op::REJECT, pdu::reject::DATA_DIGEST));
    c.nop(61, c.cmd_sn, true, b"ok");
    let (b, data) = c.recv().expect("nop-in");
    assert_eq!(
        (b.opcode(), b.itt(), data.as_slice()),
        (op::NOP_IN, 61, &b"ok"[..])
    );
}

#[test]
fn idle_connections_are_pinged_and_an_answered_ping_keeps_them() {
    let t = start_with(
        "ping",
        &["--nop-in-interval-secs", "1", "--nop-in-timeout-secs", "2"],
    );
    let mut c = Client::connect(&t);
    c.login(&[]);
    for round in 0..3 {
        let (b, _) = c.recv().expect("a NOP-In ping after a second of silence");
        assert_eq!(b.opcode(), op::NOP_IN, "round {round}");
        assert_eq!(
            b.itt(),
            pdu::RESERVED_TAG,
            "a ping carries the reserved ITT"
        );
        let ttt = b.target_transfer_tag();
        assert_ne!(ttt, pdu::RESERVED_TAG, "a ping asks for an answer");
        let mut h = Out::new(op::NOP_OUT | 0x40, 0x80);
        h.itt(pdu::RESERVED_TAG).u32(20, ttt).u32(24, c.cmd_sn);
        c.send(&mut h, &[]);
    }
    c.nop(70, c.cmd_sn, true, b"alive");
    let mut got = None;
    while let Some((b, data)) = c.recv() {
        if b.opcode() == op::NOP_IN && b.itt() == 70 {
            got = Some(data);
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"alive"[..]));
}

#[test]
fn a_peer_that_never_answers_pings_is_dropped() {
    let t = start_with(
        "noping",
        &["--nop-in-interval-secs", "1", "--nop-in-timeout-secs", "1"],
    );
    let mut c = Client::connect(&t);
    c.login(&[]);
    let started = Instant::now();
    assert!(c.closed(), "the connection must be dropped");
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn write10(c: &mut Client, itt: u32, lba: u32, len: u32, data: &[u8]) {
    let mut h = Out::new(op::SCSI_CMD, 0x80 | 0x20);
    h.lun(pdu::encode_lun(1))
        .itt(itt)
        .u32(20, len)
        .u32(24, c.cmd_sn)
        .u32(28, c.exp_stat_sn);
    h.0[32] = 0x2A;
    h.0[34..38].copy_from_slice(&lba.to_be_bytes());
    h.0[39..41].copy_from_slice(&u16::try_from(len / 512).unwrap().to_be_bytes());
    c.send(&mut h, data);
    c.cmd_sn += 1;
}

#[test]
fn writes_keep_their_pace_while_another_session_holds_the_whole_pool() {
    let t = start_config(
        "pool-held",
        &[],
        r#","performance":{"numaBufferSize":65536,"numaBufferPoolSize":4}"#,
    );
    // B: four 64 KiB writes whose R2Ts it never answers: they hold all four pool buffers.
    let mut b = Client::connect(&t);
    b.login_isid(&[("InitialR2T", "Yes"), ("ImmediateData", "No")], 2);
    for i in 0..4 {
        write10(&mut b, 100 + i, i * 128, 65536, &[]);
    }
    for _ in 0..4 {
        let (p, _) = b.recv().expect("r2t");
        assert_eq!(p.opcode(), op::R2T);
    }
    // A: 4 KiB writes with all data immediate, one at a time. After one wait of
    // POOL_WAIT_MS_MAX the pool counts as starved and A's writes take vectors at once, until
    // a buffer returns.
    let mut a = Client::connect(&t);
    a.login_isid(&[("InitialR2T", "No"), ("ImmediateData", "Yes")], 3);
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        write10(
            &mut a,
            1000 + n,
            4096 + (n % 10_000) * 8,
            4096,
            &[0x5A; 4096],
        );
        let (p, data) = a.recv().expect("response");
        assert_eq!(p.opcode(), op::SCSI_RESP);
        assert_eq!(p.0[3], 0, "GOOD after {n} writes; sense {data:02x?}");
        n += 1;
    }
    // Waiting out the 200 ms timeout per write would allow about 10 in 2 s.
    assert!(
        n > 100,
        "{n} writes in 2 s: every write waited for the pool"
    );
}

/// RFC 7143 §11.13.5: a login naming a TSIH that no session has is answered 0x020A
/// (session does not exist), not turned into a new session.
#[test]
fn a_login_naming_an_unknown_tsih_is_refused_with_session_does_not_exist() {
    let t = start("tsih");
    let mut c = Client::connect(&t);
    let pairs = [
        ("InitiatorName", INITIATOR),
        ("TargetName", IQN),
        ("SessionType", "Normal"),
    ];
    let mut h = Out::new(op::LOGIN | 0x40, 0x80 | (1 << 2) | 3);
    h.0[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 7]);
    h.0[14..16].copy_from_slice(&0x4242u16.to_be_bytes());
    h.itt(1).u32(24, c.cmd_sn);
    c.send(&mut h, &text(&pairs));
    let (b, _) = c.recv().expect("login response");
    assert_eq!(b.opcode(), op::LOGIN_RESP);
    assert_eq!((b.0[36], b.0[37]), (0x02, 0x0a), "want 020A");
    assert!(c.closed(), "the connection must close after a failed login");
}
