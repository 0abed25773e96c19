//! System tests of access control (issue 11): the real `tgt-dataplane` with CHAP and an
//! initiator ACL, judged by libiscsi's tools, which implement CHAP on their own.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{require_tool, run_with_timeout, text, Dataplane, DataplaneOptions};

const SECRET: &str = "initiator-secret-1";
const TARGET_SECRET: &str = "target-secret-22";
const GOOD: &str = "iqn.2026-11.org.example.systest:good";
const BAD: &str = "iqn.2026-11.org.example.systest:bad";

fn chap_target(tag: &str) -> Dataplane {
    Dataplane::start_with(
        tag,
        DataplaneOptions {
            extra_target_json: format!(
                r#""auth":{{"chap":{{"username":"alice","secret":"{SECRET}","mutualUsername":"array","mutualSecret":"{TARGET_SECRET}"}}}},"acl":{{"initiators":["{GOOD}"]}}"#
            ),
            ..DataplaneOptions::default()
        },
    )
}

/// `iscsi-inq` as `initiator` with `user%secret` in the URL (empty: none).
fn inq(dp: &Dataplane, initiator: &str, cred: &str, mutual: Option<&str>) -> (bool, String) {
    let url = if cred.is_empty() {
        dp.url(1)
    } else {
        format!("iscsi://{cred}@{}/{}/1", dp.portal, dp.iqn)
    };
    let mut cmd = Command::new("iscsi-inq");
    cmd.args(["-i", initiator]).arg(url);
    if let Some(pw) = mutual {
        cmd.env("LIBISCSI_CHAP_TARGET_USERNAME", "array")
            .env("LIBISCSI_CHAP_TARGET_PASSWORD", pw);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    (out.status.success(), text(&out))
}

#[test]
fn chap_admits_the_right_secret_and_refuses_wrong_or_missing_ones() {
    require_tool("iscsi-inq");
    let dp = chap_target("chap-one-way");
    let (ok, t) = inq(&dp, GOOD, &format!("alice%{SECRET}"), None);
    assert!(
        ok && t.contains("DIRECT_ACCESS"),
        "right secret refused:\n{t}"
    );
    for cred in ["alice%wrong-secret-99", "mallory%initiator-secret-1", ""] {
        let (ok, t) = inq(&dp, GOOD, cred, None);
        assert!(!ok, "{cred:?} logged in:\n{t}");
        assert!(
            t.contains("Authentication failure"),
            "{cred:?}: not 0201:\n{t}"
        );
    }
    let log = dp.daemon.log_text();
    assert!(
        !log.contains(SECRET) && !log.contains(TARGET_SECRET),
        "a secret reached the log:\n{log}"
    );
}

#[test]
fn mutual_chap_proves_the_target_to_the_initiator() {
    require_tool("iscsi-inq");
    let dp = chap_target("chap-mutual");
    let (ok, t) = inq(&dp, GOOD, &format!("alice%{SECRET}"), Some(TARGET_SECRET));
    assert!(
        ok && t.contains("DIRECT_ACCESS"),
        "mutual CHAP failed:\n{t}"
    );
    // An initiator expecting another target secret rejects our answer.
    let (ok, t) = inq(
        &dp,
        GOOD,
        &format!("alice%{SECRET}"),
        Some("not-the-target-pw"),
    );
    assert!(
        !ok,
        "initiator accepted a target that cannot know its secret:\n{t}"
    );
}

#[test]
fn acl_refuses_other_initiators_and_hides_the_target_from_them() {
    require_tool("iscsi-inq");
    require_tool("iscsi-ls");
    let dp = chap_target("chap-acl");
    let (ok, t) = inq(&dp, BAD, &format!("alice%{SECRET}"), None);
    assert!(!ok && t.contains("Authorization failure"), "not 0202:\n{t}");
    let ls = |initiator: &str| {
        let out = run_with_timeout(
            Command::new("iscsi-ls")
                .args(["-i", initiator])
                .arg(format!("iscsi://{}", dp.portal)),
            Duration::from_secs(30),
        );
        text(&out)
    };
    let seen = ls(GOOD);
    assert!(
        seen.contains(&dp.iqn),
        "allowed initiator does not see the target:\n{seen}"
    );
    let hidden = ls(BAD);
    assert!(
        !hidden.contains(&dp.iqn),
        "SendTargets shows the target to a refused initiator:\n{hidden}"
    );
}

// ---------------------------------------------------------------------------------------
// The project's own initiator, whose CHAP is written independently of the target's
// (tests/src/initiator/chap.rs), drives what libiscsi cannot: every algorithm, each
// encoding, and hostile responses.

use std::sync::{Arc, Mutex};

use tgt_system_tests::initiator::chap::{hex, ChapChallenge, ChapOptions};
use tgt_system_tests::initiator::{Error, Session, SessionOptions};

const USER: &str = "alice";

/// A target requiring CHAP (`alice`/[`SECRET`], mutual `array`/[`TARGET_SECRET`]) that
/// accepts `algorithms` (JSON list; empty: the default, all four), without an ACL.
fn own_chap_target(tag: &str, algorithms: &str) -> Dataplane {
    let algs = if algorithms.is_empty() {
        String::new()
    } else {
        format!(r#","algorithms":{algorithms}"#)
    };
    Dataplane::start_with(
        tag,
        DataplaneOptions {
            extra_target_json: format!(
                r#""auth":{{"chap":{{"username":"{USER}","secret":"{SECRET}","mutualUsername":"array","mutualSecret":"{TARGET_SECRET}"{algs}}}}}"#
            ),
            ..DataplaneOptions::default()
        },
    )
}

fn own_login(dp: &Dataplane, chap: ChapOptions) -> Result<Session, Error> {
    Session::login(
        dp.portal,
        &SessionOptions {
            target_name: Some(dp.iqn.clone()),
            chap: Some(chap),
            ..SessionOptions::default()
        },
    )
}

/// Logs in with `chap`, reads LUN 1's capacity to prove the session works, logs out.
fn works(dp: &Dataplane, chap: ChapOptions) -> Result<(), Error> {
    let s = own_login(dp, chap)?;
    let cap = s.read_capacity16(1)?;
    assert!(cap.blocks > 0);
    s.logout()
}

fn is_auth_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Login {
            class: 2,
            detail: 1
        }
    )
}

/// Records the algorithm the target chose, without changing the response.
fn recording(chap: ChapOptions, seen: &Arc<Mutex<Vec<u8>>>) -> ChapOptions {
    let seen = seen.clone();
    ChapOptions {
        tamper: Some(Arc::new(
            move |c: &ChapChallenge, _: &mut Vec<(String, String)>| {
                seen.lock().expect("not poisoned").push(c.algorithm);
            },
        )),
        ..chap
    }
}

#[test]
fn own_initiator_negotiates_every_algorithm_and_the_strongest_common_one() {
    let dp = own_chap_target("chap-own-algs", "");
    let seen = Arc::new(Mutex::new(Vec::new()));
    for (offer, chosen) in [
        (vec![5], 5),
        (vec![6], 6),
        (vec![7], 7),
        (vec![8], 8),
        (vec![5, 7], 7),
        (vec![5, 6, 7, 8], 8),
        (vec![6, 5], 6),
    ] {
        for base64 in [false, true] {
            let chap = ChapOptions {
                algorithms: offer.clone(),
                base64,
                ..ChapOptions::new(USER, SECRET)
            };
            works(&dp, recording(chap, &seen))
                .unwrap_or_else(|e| panic!("offer {offer:?} base64={base64}: {e}"));
            assert_eq!(
                seen.lock().expect("not poisoned").pop(),
                Some(chosen),
                "offer {offer:?}: the target must choose the strongest common algorithm"
            );
        }
    }
    // Mutual CHAP with every algorithm: the target proves it knows its own secret.
    for alg in [5, 6, 7, 8] {
        let chap = ChapOptions {
            algorithms: vec![alg],
            mutual: Some(("array".into(), TARGET_SECRET.as_bytes().to_vec())),
            ..ChapOptions::new(USER, SECRET)
        };
        works(&dp, chap).unwrap_or_else(|e| panic!("mutual CHAP_A={alg}: {e}"));
    }
    // A target answering with the wrong mutual secret is caught by the initiator.
    let chap = ChapOptions {
        mutual: Some(("array".into(), b"some-other-secret".to_vec())),
        ..ChapOptions::new(USER, SECRET)
    };
    match own_login(&dp, chap) {
        Err(Error::Protocol(m)) => assert!(m.contains("mutual"), "{m}"),
        other => panic!(
            "a target without our target secret passed: {:?}",
            other.err()
        ),
    }
}

#[test]
fn a_target_refusing_md5_fails_an_md5_only_initiator() {
    let dp = own_chap_target("chap-own-nomd5", r#"["sha256","sha3-256"]"#);
    let only_md5 = ChapOptions {
        algorithms: vec![5],
        ..ChapOptions::new(USER, SECRET)
    };
    let e = own_login(&dp, only_md5)
        .err()
        .expect("MD5-only login passed");
    assert!(is_auth_failure(&e), "want 0201, got {e}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let both = ChapOptions {
        algorithms: vec![5, 7],
        ..ChapOptions::new(USER, SECRET)
    };
    works(&dp, recording(both, &seen)).expect("MD5 and SHA-256 offered");
    assert_eq!(seen.lock().expect("not poisoned").pop(), Some(7));
}

/// Replaces (or with `None`, removes) `key` in a response message.
fn set(keys: &mut Vec<(String, String)>, key: &str, value: Option<String>) {
    keys.retain(|(k, _)| k != key);
    if let Some(v) = value {
        keys.push((key.to_string(), v));
    }
}

type Attack = (
    &'static str,
    bool,
    fn(&ChapChallenge, &mut Vec<(String, String)>),
);

/// Each attack: its name, whether it is mutual, and how it reshapes a correct response.
const ATTACKS: &[Attack] = &[
    (
        "reflected challenge: our own CHAP_C sent back as the initiator's",
        true,
        |c, k| {
            set(k, "CHAP_I", Some(c.identifier.to_string()));
            set(k, "CHAP_C", Some(hex(&c.challenge)));
        },
    ),
    ("short initiator challenge (8 bytes)", true, |_, k| {
        set(k, "CHAP_C", Some(hex(&[7; 8])))
    }),
    ("empty initiator challenge", true, |_, k| {
        set(k, "CHAP_C", Some("0x".into()))
    }),
    ("initiator challenge over 1024 bytes", true, |_, k| {
        set(k, "CHAP_C", Some(hex(&[1; 1100])))
    }),
    ("CHAP_I out of range", true, |_, k| {
        set(k, "CHAP_I", Some("256".into()))
    }),
    ("CHAP_R with an odd number of hex digits", false, |_, k| {
        set(k, "CHAP_R", Some("0x123".into()))
    }),
    ("CHAP_R not hex", false, |_, k| {
        set(k, "CHAP_R", Some("0xzz11".into()))
    }),
    ("CHAP_R without a 0x/0b prefix", false, |_, k| {
        set(k, "CHAP_R", Some("00112233445566778899aabbccddeeff".into()))
    }),
    ("CHAP_R of the wrong length", false, |_, k| {
        set(k, "CHAP_R", Some(hex(&[0; 15])))
    }),
    ("CHAP_R missing", false, |_, k| set(k, "CHAP_R", None)),
    ("CHAP_N missing", false, |_, k| set(k, "CHAP_N", None)),
    ("CHAP_N of another user", false, |_, k| {
        set(k, "CHAP_N", Some("mallory".into()))
    }),
    (
        "CHAP_R replaying the response to another challenge",
        false,
        |_, k| set(k, "CHAP_R", Some(hex(&[0x5a; 32]))),
    ),
];

#[test]
fn hostile_chap_responses_are_refused_with_0201_and_the_target_stays_up() {
    // The source's failure budget (ten) is smaller than the attack list, so the attacks
    // are spread over data planes: each gets a fresh budget.
    for (round, attacks) in ATTACKS.chunks(6).enumerate() {
        let dp = own_chap_target(&format!("chap-own-hostile-{round}"), r#"["sha256"]"#);
        for (name, mutual, tamper) in attacks {
            let tamper = *tamper;
            let chap = ChapOptions {
                mutual: mutual.then(|| ("array".to_string(), TARGET_SECRET.as_bytes().to_vec())),
                tamper: Some(Arc::new(
                    move |c: &ChapChallenge, k: &mut Vec<(String, String)>| tamper(c, k),
                )),
                ..ChapOptions::new(USER, SECRET)
            };
            match own_login(&dp, chap) {
                Err(e) if is_auth_failure(&e) => {}
                Err(e) => panic!("{name}: want Login Response 0201, got {e}"),
                Ok(_) => panic!("{name}: the target accepted it"),
            }
        }
        works(&dp, ChapOptions::new(USER, SECRET))
            .unwrap_or_else(|e| panic!("a good login after the attacks failed: {e}"));
        let log = dp.daemon.log_text();
        assert!(
            !log.contains(SECRET) && !log.contains(TARGET_SECRET),
            "{log}"
        );
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn guessing_secrets_locks_the_source_out_even_for_the_right_secret() {
    let dp = own_chap_target("chap-own-brute", "");
    let mut failures = 0;
    let refused = loop {
        let guess = format!("guess-{failures:04}-of-secret");
        match own_login(&dp, ChapOptions::new(USER, &guess)) {
            Err(e) if is_auth_failure(&e) => failures += 1,
            Err(e) => break e,
            Ok(_) => panic!("guess {guess} logged in"),
        }
        assert!(failures <= 50, "50 wrong secrets and no lockout");
    };
    assert!(
        matches!(
            refused,
            Error::Login {
                class: 3,
                detail: 1
            }
        ),
        "after {failures} failures: want 0301 (service unavailable), got {refused}"
    );
    assert_eq!(
        failures, 10,
        "lockout after the named bound of ten failures"
    );
    // While locked out, even the right secret is refused: the lockout answers before
    // looking at any key, so it tells a guesser nothing.
    let e = own_login(&dp, ChapOptions::new(USER, SECRET))
        .err()
        .expect("the right secret passed during the lockout");
    assert!(
        matches!(
            e,
            Error::Login {
                class: 3,
                detail: 1
            }
        ),
        "{e}"
    );
    let log = dp.daemon.log_text();
    assert!(log.contains("source locked out"), "{log}");
}

// ---------------------------------------------------------------------------------------
// libiscsi over authenticated sessions, discovery CHAP, and rotation.

use tgt_system_tests::conformance::{AllowList, CuRun, ALLOW_LIST_PATH};

/// Tests of `iscsi-test-cu --test=ALL` that must really run over a CHAP session: the count
/// of the single-portal run before multipath and the SCSI-completeness features (173),
/// so that authentication cannot quietly turn tests into skips.
const CHAP_RAN_FOR_REAL_MIN: usize = 173;

#[test]
fn iscsi_test_cu_all_passes_over_a_chap_session() {
    require_tool("iscsi-test-cu");
    let allowed_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ALLOW_LIST_PATH);
    let allowed = std::fs::read_to_string(&allowed_path)
        .map_err(|e| e.to_string())
        .and_then(|t| AllowList::parse(&t))
        .unwrap_or_else(|e| panic!("{}: {e}", allowed_path.display()));
    let mut dp = own_chap_target("chap-cu-all", "");
    let dir = support::TempDir::new("chap-cu");
    let out = run_with_timeout(
        Command::new("iscsi-test-cu")
            .current_dir(dir.path())
            .args(["-d", "-x", "--test=ALL"])
            .args(["-i", "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"])
            .args([
                "-I",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
            ])
            .arg(format!(
                "iscsi://{USER}%{SECRET}@{}/{}/1",
                dp.portal, dp.iqn
            )),
        Duration::from_secs(900),
    );
    let output = text(&out);
    let xml = std::fs::read_to_string(dir.path().join("CUnitAutomated-Results.xml"))
        .unwrap_or_else(|_| panic!("iscsi-test-cu wrote no results:\n{output}"));
    let run = CuRun::parse(&xml, &output)
        .unwrap_or_else(|e| panic!("iscsi-test-cu results unreadable: {e}\n{output}"));
    assert!(dp.daemon.alive(), "{}", dp.daemon.log_text());
    eprintln!(
        "iscsi-test-cu ALL over CHAP: {}/{} passed, {} ran for real",
        run.passed(),
        run.total(),
        run.ran_for_real()
    );
    let problems = run.problems(&allowed, CHAP_RAN_FOR_REAL_MIN);
    assert!(problems.is_empty(), "over CHAP:\n{}", problems.join("\n"));
}

#[test]
fn discovery_chap_guards_send_targets() {
    require_tool("iscsi-ls");
    let dp = Dataplane::start_with(
        "chap-discovery",
        DataplaneOptions {
            extra_top_json: format!(
                r#""discovery":{{"auth":{{"chap":{{"username":"finder","secret":"{SECRET}"}}}}}}"#
            ),
            ..DataplaneOptions::default()
        },
    );
    let ls = |cred: &str| {
        let out = run_with_timeout(
            Command::new("iscsi-ls").arg(format!("iscsi://{cred}{}", dp.portal)),
            Duration::from_secs(30),
        );
        (out.status.success(), text(&out))
    };
    let (ok, t) = ls(&format!("finder%{SECRET}@"));
    assert!(
        ok && t.contains(&dp.iqn),
        "discovery with CHAP failed:\n{t}"
    );
    for cred in ["", "finder%not-the-secret-1@"] {
        let (ok, t) = ls(cred);
        assert!(
            !ok && !t.contains(&dp.iqn),
            "discovery {cred:?} listed targets:\n{t}"
        );
    }
    // The target itself needs no CHAP: normal sessions follow the target's own rules.
    let (ok, t) = inq(&dp, GOOD, "", None);
    assert!(ok, "normal login refused:\n{t}");
}

/// The target of [`credentials_rotate_without_dropping_logged_in_sessions`], with `secret`.
fn rest_config(image: &std::path::Path, secret: &str) -> String {
    format!(
        r#"{{"storages":[{{"deviceID":1,"path":"{}","online":true}}],
"iscsiportals":[{{"id":0,"portal":"127.0.0.1:0"}}],
"iscsitargets":{{"iqn.2026-11.org.example.systest:rotate":{{"tpgts":{{"1":[0]}},"luns":{{"1":1}},
"auth":{{"chap":{{"username":"{USER}","secret":"{secret}"}}}}}}}}}}"#,
        image.display()
    )
}

#[test]
fn credentials_rotate_without_dropping_logged_in_sessions() {
    use support::{http, start_controlplane, start_socket_dataplane, wait_in_sync, TempDir};
    use tgt_system_tests::load::{verified_load, LoadOptions};
    const NEW: &str = "rotated-secret-0002";
    const IQN: &str = "iqn.2026-11.org.example.systest:rotate";
    let dir = TempDir::new("chap-rotate");
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .expect("image");
    let mut dp = start_socket_dataplane(dir.path(), 0);
    let (_cp, api) = start_controlplane(dir.path());
    let put = |secret: &str| {
        let r = http(
            api,
            "PUT",
            "/api/v1/config",
            Some(&rest_config(&image, secret)),
        );
        assert!(r.status / 100 == 2, "PUT config: {} {}", r.status, r.body);
    };
    put(SECRET);
    let portal = wait_in_sync(api, &mut dp);
    let login = |secret: &str| {
        Session::login(
            portal,
            &SessionOptions {
                target_name: Some(IQN.into()),
                chap: Some(ChapOptions::new(USER, secret)),
                ..SessionOptions::default()
            },
        )
    };
    // A verified load logged in with the old secret runs through the rotation.
    let load = std::thread::spawn(move || {
        verified_load(
            portal,
            IQN,
            1,
            LoadOptions {
                sessions: 2,
                duration: Duration::from_secs(6),
                region_blocks: Some(4096),
                session: SessionOptions {
                    chap: Some(ChapOptions::new(USER, SECRET)),
                    ..SessionOptions::default()
                },
                ..LoadOptions::default()
            },
        )
    });
    // Rotate once the load's sessions are in (the probe and two workers).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http(api, "GET", "/api/v1/sessions", None)
        .json()
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "load never logged in");
        std::thread::sleep(Duration::from_millis(50));
    }
    put(NEW);
    wait_in_sync(api, &mut dp);
    let e = login(SECRET).err().expect("the old secret still logs in");
    assert!(is_auth_failure(&e), "old secret: want 0201, got {e}");
    login(NEW)
        .expect("the new secret is refused")
        .logout()
        .expect("logout");
    let report = load
        .join()
        .expect("load thread")
        .expect("load could not start");
    assert!(
        report.passed(),
        "the load across the rotation lost data or sessions: {report:?}"
    );
    let log = dp.log_text();
    assert!(!log.contains(SECRET) && !log.contains(NEW), "{log}");
}
