//! The test initiator must turn every protocol violation of a target into a returned error,
//! never a panic or a hang. A scripted fake target (built from the initiator's own PDU
//! encoder, which can encode target PDUs too) logs the initiator in and then answers a READ
//! with a deliberately broken sequence of PDUs. The same fake target also checks that the
//! initiator holds commands back while the CmdSN window is closed.

// Test helpers outside `#[test]` functions may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use tgt_system_tests::initiator::pdu::{
    read_pdu, write_pdu, Bhs, Body, DataIn, Digests, LoginResponse, NopIn, ScsiResponse, Stage,
    RESERVED_TAG,
};
use tgt_system_tests::initiator::{text, Error, Session, SessionOptions};

/// What the fake target sends after receiving the READ: (header, data) pairs built for the
/// READ's ITT. A header with an empty data vector and `data_segment_len` 0xffffff stands for
/// "raw bytes": the data vector is written to the socket as is.
type Script = fn(itt: u32) -> Vec<(Bhs, Vec<u8>)>;

const RAW: u32 = 0x00ff_ffff;

fn fake_target(script: Script) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let login = read_pdu(&mut s, Digests::default(), 1 << 20).unwrap();
        let Body::LoginRequest(req) = login.bhs.body else {
            panic!("expected login")
        };
        let resp = LoginResponse {
            transit: true,
            cont: false,
            csg: Stage::Security,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: 1,
            itt: req.itt,
            stat_sn: 0,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.wrapping_add(31),
            status_class: 0,
            status_detail: 0,
        };
        let data = text::encode(&[("AuthMethod".into(), "None".into())]);
        write_pdu(
            &mut s,
            &Bhs::new(Body::LoginResponse(resp), 0),
            &data,
            Digests::default(),
        )
        .unwrap();
        let cmd = read_pdu(&mut s, Digests::default(), 1 << 20).unwrap();
        let Body::ScsiCommand(c) = cmd.bhs.body else {
            panic!("expected a SCSI command")
        };
        for (bhs, data) in script(c.itt) {
            if bhs.data_segment_len == RAW {
                use std::io::Write;
                if s.write_all(&data).is_err() {
                    break;
                }
            } else if write_pdu(&mut s, &bhs, &data, Digests::default()).is_err() {
                break;
            }
        }
        // Keep the socket open briefly so the initiator judges the PDUs, not an EOF.
        std::thread::sleep(Duration::from_millis(300));
    });
    (addr, h)
}

fn data_in(itt: u32, data_sn: u32, offset: u32, status: Option<(u32, u8)>) -> Bhs {
    Bhs::new(
        Body::DataIn(DataIn {
            final_: status.is_some(),
            ack: false,
            overflow: false,
            underflow: false,
            has_status: status.is_some(),
            status: status.map(|s| s.1).unwrap_or(0),
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            stat_sn: status.map(|s| s.0).unwrap_or(0),
            exp_cmd_sn: 2,
            max_cmd_sn: 33,
            data_sn,
            offset,
            residual: 0,
        }),
        0,
    )
}

/// Reads 1024 bytes from a fake target running `script`.
fn read_against(script: Script) -> Result<Vec<u8>, Error> {
    let (addr, h) = fake_target(script);
    let opts = SessionOptions {
        target_name: Some("iqn.fake:t".into()),
        command_timeout: Duration::from_secs(5),
        ..SessionOptions::default()
    };
    let s = Session::login(addr, &opts).unwrap();
    let r = s.read16(1, 0, 2, 512);
    drop(s);
    h.join().unwrap();
    r
}

fn expect_violation(script: Script, needle: &str) {
    match read_against(script) {
        Err(Error::Protocol(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected a protocol violation about {needle:?}, got {other:?}"),
    }
}

#[test]
fn accepts_a_correct_two_pdu_read() {
    let got = read_against(|itt| {
        vec![
            (data_in(itt, 0, 0, None), vec![1; 512]),
            (data_in(itt, 1, 512, Some((1, 0))), vec![2; 512]),
        ]
    })
    .unwrap();
    assert_eq!(&got[..512], &[1; 512][..]);
    assert_eq!(&got[512..], &[2; 512][..]);
}

#[test]
fn datasn_gap_is_an_error() {
    expect_violation(
        |itt| {
            vec![
                (data_in(itt, 0, 0, None), vec![1; 512]),
                (data_in(itt, 2, 512, Some((1, 0))), vec![2; 512]),
            ]
        },
        "DataSN",
    );
}

#[test]
fn wrong_buffer_offset_is_an_error() {
    expect_violation(
        |itt| {
            vec![
                (data_in(itt, 0, 0, None), vec![1; 512]),
                (data_in(itt, 1, 600, Some((1, 0))), vec![2; 400]),
            ]
        },
        "offset",
    );
}

#[test]
fn statsn_out_of_sequence_is_an_error() {
    expect_violation(
        |itt| {
            vec![
                (data_in(itt, 0, 0, None), vec![1; 512]),
                (data_in(itt, 1, 512, Some((7, 0))), vec![2; 512]),
            ]
        },
        "StatSN",
    );
}

#[test]
fn data_beyond_expected_length_is_an_error() {
    expect_violation(
        |itt| vec![(data_in(itt, 0, 0, Some((1, 0))), vec![1; 1536])],
        "overruns",
    );
}

#[test]
fn residual_that_does_not_add_up_is_an_error() {
    expect_violation(
        |itt| {
            let mut last = data_in(itt, 0, 0, Some((1, 0)));
            if let Body::DataIn(d) = &mut last.body {
                d.underflow = true;
                d.residual = 100;
            }
            vec![(last, vec![1; 512])]
        },
        "residual",
    );
}

#[test]
fn good_status_with_missing_data_and_no_residual_is_an_error() {
    expect_violation(
        |itt| {
            let resp = ScsiResponse {
                bidi_overflow: false,
                bidi_underflow: false,
                overflow: false,
                underflow: false,
                response: 0,
                status: 0,
                itt,
                snack_tag: 0,
                stat_sn: 1,
                exp_cmd_sn: 2,
                max_cmd_sn: 33,
                exp_data_sn: 1,
                bidi_residual: 0,
                residual: 0,
            };
            vec![
                (data_in(itt, 0, 0, None), vec![1; 512]),
                (Bhs::new(Body::ScsiResponse(resp), 0), vec![]),
            ]
        },
        "residual",
    );
}

#[test]
fn data_for_an_unknown_itt_is_an_error() {
    expect_violation(
        |itt| vec![(data_in(itt ^ 0x55, 0, 0, Some((1, 0))), vec![1; 1024])],
        "unknown ITT",
    );
}

#[test]
fn unexpected_opcode_is_an_error() {
    // A NOP-Out is an initiator opcode; a target must never send one.
    expect_violation(
        |_| {
            let mut b = Bhs::new(
                Body::NopIn(NopIn {
                    lun: 0,
                    itt: RESERVED_TAG,
                    ttt: RESERVED_TAG,
                    stat_sn: 1,
                    exp_cmd_sn: 2,
                    max_cmd_sn: 33,
                }),
                0,
            );
            b.body = Body::NopOut(tgt_system_tests::initiator::pdu::NopOut {
                immediate: true,
                lun: 0,
                itt: RESERVED_TAG,
                ttt: RESERVED_TAG,
                cmd_sn: 0,
                exp_stat_sn: 0,
            });
            vec![(b, vec![])]
        },
        "unexpected PDU",
    );
}

#[test]
fn nop_in_answering_a_ping_never_sent_is_an_error() {
    expect_violation(
        |_| {
            let nop = NopIn {
                lun: 0,
                itt: 0x77,
                ttt: RESERVED_TAG,
                stat_sn: 1,
                exp_cmd_sn: 2,
                max_cmd_sn: 33,
            };
            vec![(Bhs::new(Body::NopIn(nop), 0), vec![])]
        },
        "NOP-In",
    );
}

#[test]
fn unknown_opcode_is_an_error() {
    expect_violation(
        |_| {
            // Opcode 0x1c is not defined by RFC 7143, so the header is built by hand.
            let mut raw = vec![0u8; 48];
            raw[0] = 0x1c;
            raw[1] = 0x80;
            let marker = Bhs::new(
                Body::NopIn(NopIn {
                    lun: 0,
                    itt: RESERVED_TAG,
                    ttt: RESERVED_TAG,
                    stat_sn: 0,
                    exp_cmd_sn: 0,
                    max_cmd_sn: 0,
                }),
                RAW,
            );
            vec![(marker, raw)]
        },
        "opcode",
    );
}

#[test]
fn commands_wait_for_the_cmdsn_window_to_open() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let target = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let login = read_pdu(&mut s, Digests::default(), 1 << 20).unwrap();
        let Body::LoginRequest(req) = login.bhs.body else {
            panic!("expected login")
        };
        // MaxCmdSN = CmdSN - 1: the window is closed (RFC 7143 §4.2.2.1).
        let resp = LoginResponse {
            transit: true,
            cont: false,
            csg: Stage::Security,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: 1,
            itt: req.itt,
            stat_sn: 0,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.wrapping_sub(1),
            status_class: 0,
            status_detail: 0,
        };
        write_pdu(
            &mut s,
            &Bhs::new(Body::LoginResponse(resp), 0),
            &[],
            Digests::default(),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let early = read_pdu(&mut s, Digests::default(), 1 << 20);
        assert!(
            early.is_err(),
            "a command went out while the window was closed"
        );
        // Open the window by one with an unsolicited NOP-In that wants no answer.
        let nop = NopIn {
            lun: 0,
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            stat_sn: 1,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn,
        };
        write_pdu(
            &mut s,
            &Bhs::new(Body::NopIn(nop), 0),
            &[],
            Digests::default(),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cmd = read_pdu(&mut s, Digests::default(), 1 << 20).unwrap();
        let Body::ScsiCommand(c) = cmd.bhs.body else {
            panic!("expected a SCSI command")
        };
        assert_eq!(c.cmd_sn, req.cmd_sn);
        let resp = ScsiResponse {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: false,
            underflow: false,
            response: 0,
            status: 0,
            itt: c.itt,
            snack_tag: 0,
            stat_sn: 1,
            exp_cmd_sn: c.cmd_sn.wrapping_add(1),
            max_cmd_sn: c.cmd_sn.wrapping_add(8),
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: 0,
        };
        write_pdu(
            &mut s,
            &Bhs::new(Body::ScsiResponse(resp), 0),
            &[],
            Digests::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let opts = SessionOptions {
        target_name: Some("iqn.fake:t".into()),
        command_timeout: Duration::from_secs(5),
        ..SessionOptions::default()
    };
    let s = Session::login(addr, &opts).unwrap();
    let started = std::time::Instant::now();
    s.test_unit_ready(1).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(350));
    drop(s);
    target.join().unwrap();
}
