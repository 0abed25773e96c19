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
