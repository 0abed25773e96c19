//! Table-driven login scripts: each step is a Login Request and what must come back.

use super::*;

struct Ctx;

impl LoginContext for Ctx {
    fn target_tpgt(&self, target: &str) -> Option<u16> {
        (target == "iqn.2026-01.org.example:t1").then_some(7)
    }
    fn portal_tpgt(&self) -> u16 {
        1
    }
    fn initiator_allowed(&self, _target: &str, _initiator: &str) -> bool {
        true
    }
    fn chap_policy(&self, _kind: SessionKind, _target: &str) -> Option<Arc<ChapPolicy>> {
        None
    }
}

/// A target that requires CHAP (SHA-256 only) and allows one initiator.
struct Guarded;

const ALLOWED: &str = "iqn.2026-01.org.example:allowed";

impl LoginContext for Guarded {
    fn target_tpgt(&self, target: &str) -> Option<u16> {
        (target == "iqn.2026-01.org.example:t1").then_some(7)
    }
    fn portal_tpgt(&self) -> u16 {
        1
    }
    fn initiator_allowed(&self, _target: &str, initiator: &str) -> bool {
        initiator == ALLOWED
    }
    fn chap_policy(&self, _kind: SessionKind, _target: &str) -> Option<Arc<ChapPolicy>> {
        Some(Arc::new(ChapPolicy {
            username: "alice".into(),
            secret: b"initiator-secret-1".to_vec(),
            mutual: None,
            algorithms: vec![ChapAlgorithm::Sha256],
        }))
    }
}

const RANDOM: ChapRandom = ChapRandom {
    identifier: 9,
    challenge: [0x3c; limits::CHAP_CHALLENGE_BYTES],
};

fn new_login() -> Login {
    Login::new(Some(RANDOM))
}

fn req(csg: u8, nsg: u8, transit: bool, data: &[u8]) -> LoginRequest<'_> {
    LoginRequest {
        header: crate::pdu::request::LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0, 0, 1],
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
        },
        data,
    }
}

fn keys(reply: &LoginReply) -> Vec<(String, String)> {
    crate::pdu::text::parse(&reply.text).unwrap()
}

fn get<'a>(k: &'a [(String, String)], key: &str) -> Option<&'a str> {
    k.iter().find(|(a, _)| a == key).map(|(_, v)| v.as_str())
}

const LEADING: &[u8] =
    b"InitiatorName=iqn.2026-01.org.example:init\0TargetName=iqn.2026-01.org.example:t1\0SessionType=Normal\0AuthMethod=CHAP,None\0";

#[test]
fn normal_login_through_all_stages() {
    let mut l = new_login();
    let LoginStep::Reply(r) = l.step(&req(0, 1, true, LEADING), &Ctx) else {
        panic!("security stage must succeed")
    };
    assert!(r.transit && r.csg == 0 && r.nsg == 1);
    let k = keys(&r);
    assert_eq!(get(&k, "AuthMethod"), Some("None"));
    assert_eq!(get(&k, "TargetPortalGroupTag"), Some("7"));
    let op = b"HeaderDigest=CRC32C,None\0DataDigest=None\0MaxRecvDataSegmentLength=65536\0InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=16776192\0FirstBurstLength=262144\0MaxOutstandingR2T=8\0X-com.example.foo=1\0ErrorRecoveryLevel=2\0";
    let LoginStep::Enter(r, neg) = l.step(&req(1, 3, true, op), &Ctx) else {
        panic!("operational stage must enter full feature phase")
    };
    let k = keys(&r);
    assert_eq!(get(&k, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(get(&k, "InitialR2T"), Some("No"));
    assert_eq!(get(&k, "X-com.example.foo"), Some("NotUnderstood"));
    assert_eq!(get(&k, "ErrorRecoveryLevel"), Some("0"));
    assert_eq!(
        get(&k, "MaxBurstLength"),
        Some(limits::BURST_LEN_BYTES_MAX.to_string().as_str())
    );
    assert!(get(&k, "MaxRecvDataSegmentLength").is_some());
    assert!(neg.header_digest && !neg.data_digest && !neg.initial_r2t);
    assert_eq!(neg.send_data_segment_bytes, 65536);
    assert_eq!(neg.outstanding_r2t_max, 8);
    assert!(neg.first_burst_bytes <= neg.burst_bytes_max);
}

#[test]
fn refuses_unknown_target_and_missing_names() {
    let cases: &[(&[u8], (u8, u8))] = &[
        (
            b"InitiatorName=iqn.2026-01.org.example:i\0TargetName=iqn.2026-01.org.example:nope\0",
            status::NOT_FOUND,
        ),
        (b"TargetName=iqn.2026-01.org.example:t1\0", status::MISSING_PARAMETER),
        (b"InitiatorName=iqn.2026-01.org.example:i\0", status::MISSING_PARAMETER),
        (
            b"InitiatorName=iqn.2026-01.org.example:i\0SessionType=Bogus\0",
            status::SESSION_TYPE_NOT_SUPPORTED,
        ),
        (
            b"InitiatorName=iqn.2026-01.org.example:i\0TargetName=iqn.2026-01.org.example:t1\0AuthMethod=CHAP\0",
            status::AUTH_FAILURE,
        ),
        (b"garbage-without-equals\0", status::INITIATOR_ERROR),
    ];
    for (data, want) in cases {
        let mut l = new_login();
        match l.step(&req(0, 1, true, data), &Ctx) {
            LoginStep::Fail(r) => assert_eq!(r.status, *want, "{data:?}"),
            other => panic!("{data:?}: expected failure, got {other:?}"),
        }
    }
}

#[test]
fn discovery_session_needs_no_target() {
    let mut l = new_login();
    let data = b"InitiatorName=iqn.2026-01.org.example:i\0SessionType=Discovery\0";
    let LoginStep::Enter(_, neg) = l.step(&req(1, 3, true, data), &Ctx) else {
        panic!("discovery login")
    };
    assert_eq!(neg.kind, SessionKind::Discovery);
}

#[test]
fn continued_text_is_joined() {
    let mut l = new_login();
    let mut first = req(0, 1, false, b"InitiatorName=iqn.2026-01.org.ex");
    first.header.cont = true;
    assert!(matches!(l.step(&first, &Ctx), LoginStep::Reply(_)));
    let rest = b"ample:i\0TargetName=iqn.2026-01.org.example:t1\0AuthMethod=None\0";
    let LoginStep::Reply(r) = l.step(&req(0, 1, true, rest), &Ctx) else {
        panic!("joined text")
    };
    assert!(r.transit);
    assert_eq!(l.negotiated().initiator_name, "iqn.2026-01.org.example:i");
}

#[test]
fn refuses_stage_going_backwards_and_bad_version() {
    let mut l = new_login();
    assert!(matches!(
        l.step(&req(1, 3, false, LEADING), &Ctx),
        LoginStep::Reply(_)
    ));
    assert!(matches!(
        l.step(&req(0, 1, true, b""), &Ctx),
        LoginStep::Fail(_)
    ));
    let mut l = new_login();
    let mut r = req(0, 1, true, LEADING);
    r.header.version_min = 1;
    assert!(matches!(l.step(&r, &Ctx), LoginStep::Fail(_)));
    let mut l = new_login();
    assert!(matches!(
        l.step(&req(0, 2, true, LEADING), &Ctx),
        LoginStep::Fail(_)
    ));
}

#[test]
fn text_over_the_limit_fails_login() {
    let mut l = new_login();
    let chunk = vec![b'a'; 8192];
    let mut outcome = None;
    for _ in 0..(limits::TEXT_BYTES_MAX / chunk.len() + 2) {
        let mut r = req(0, 1, false, &chunk);
        r.header.cont = true;
        match l.step(&r, &Ctx) {
            LoginStep::Reply(_) => {}
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    assert!(matches!(outcome, Some(LoginStep::Fail(_))));
}

fn guarded_leading(initiator: &str) -> Vec<u8> {
    format!(
        "InitiatorName={initiator}\0TargetName=iqn.2026-01.org.example:t1\0SessionType=Normal\0AuthMethod=CHAP,None\0"
    )
    .into_bytes()
}

fn right_response() -> Vec<u8> {
    let r =
        ChapAlgorithm::Sha256.response(RANDOM.identifier, b"initiator-secret-1", &RANDOM.challenge);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("CHAP_N=alice\0CHAP_R=0x{hex}\0").into_bytes()
}

#[test]
fn chap_login_holds_the_security_stage_until_the_response_checks_out() {
    let mut l = new_login();
    // The initiator asks to move on at once (as open-iscsi does); we answer T=0.
    let LoginStep::Reply(r) = l.step(&req(0, 1, true, &guarded_leading(ALLOWED)), &Guarded) else {
        panic!("AuthMethod=CHAP must be agreed")
    };
    assert!(!r.transit);
    assert_eq!(get(&keys(&r), "AuthMethod"), Some("CHAP"));
    let LoginStep::Reply(r) = l.step(&req(0, 1, true, b"CHAP_A=5,7\0"), &Guarded) else {
        panic!("challenge")
    };
    assert!(!r.transit);
    let k = keys(&r);
    assert_eq!(get(&k, "CHAP_A"), Some("7"));
    assert_eq!(get(&k, "CHAP_I"), Some("9"));
    let LoginStep::Reply(r) = l.step(&req(0, 1, true, &right_response()), &Guarded) else {
        panic!("right response")
    };
    assert!(r.transit && r.nsg == 1);
    let LoginStep::Enter(_, neg) = l.step(&req(1, 3, true, b""), &Guarded) else {
        panic!("operational stage")
    };
    assert!(!neg.auth_none);
}

#[test]
fn chap_target_refuses_logins_that_skip_or_fail_authentication() {
    let leading = guarded_leading(ALLOWED);
    let skip_to_operational: &[&[u8]] = &[&leading];
    let none_only = format!(
        "InitiatorName={ALLOWED}\0TargetName=iqn.2026-01.org.example:t1\0AuthMethod=None\0"
    );
    /// One Login Request: CSG, NSG, T bit, data segment.
    type Step = (u8, u8, bool, Vec<u8>);
    let cases: &[(&str, Vec<Step>)] = &[
        (
            "operational stage first",
            vec![(1, 3, true, skip_to_operational[0].to_vec())],
        ),
        ("AuthMethod=None only", vec![(0, 1, true, none_only.into_bytes())]),
        (
            "leaves the security stage before the response",
            vec![
                (0, 1, false, leading.clone()),
                (0, 1, false, b"CHAP_A=7\0".to_vec()),
                (1, 3, true, b"".to_vec()),
            ],
        ),
        (
            "wrong secret",
            vec![
                (0, 1, false, leading.clone()),
                (0, 1, false, b"CHAP_A=7\0".to_vec()),
                (0, 1, true, b"CHAP_N=alice\0CHAP_R=0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\0".to_vec()),
            ],
        ),
        (
            "MD5 refused by the target",
            vec![
                (0, 1, false, leading.clone()),
                (0, 1, false, b"CHAP_A=5\0".to_vec()),
            ],
        ),
        (
            "CHAP keys in the operational stage",
            vec![
                (0, 1, false, leading.clone()),
                (0, 1, false, b"CHAP_A=7\0".to_vec()),
                (0, 1, true, right_response()),
                (1, 3, true, b"CHAP_A=7\0".to_vec()),
            ],
        ),
    ];
    for (what, script) in cases {
        let mut l = new_login();
        let mut last = None;
        for (csg, nsg, transit, data) in script {
            last = Some(l.step(&req(*csg, *nsg, *transit, data), &Guarded));
            if matches!(last, Some(LoginStep::Fail(_))) {
                break;
            }
        }
        match last {
            Some(LoginStep::Fail(r)) => {
                assert_eq!(r.status, status::AUTH_FAILURE, "{what}");
                assert!(r.text.is_empty(), "{what}: a failure says nothing more");
            }
            other => panic!("{what}: expected failure, got {other:?}"),
        }
    }
}

#[test]
fn initiator_outside_the_acl_gets_authorization_failure() {
    let mut l = new_login();
    let leading = guarded_leading("iqn.2026-01.org.example:stranger");
    match l.step(&req(0, 1, true, &leading), &Guarded) {
        LoginStep::Fail(r) => assert_eq!(r.status, status::AUTHORIZATION_FAILURE),
        other => panic!("expected 0202, got {other:?}"),
    }
}
