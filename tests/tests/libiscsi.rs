//! System tests: the real `tgt-dataplane` binary judged by libiscsi's independent tools
//! (`iscsi-ls`, `iscsi-inq`, `iscsi-readcapacity16`, `iscsi-perf`, `iscsi-test-cu`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{require_tool, run_with_timeout, text, Dataplane, DataplaneOptions};
use tgt_system_tests::conformance::{
    AllowList, CuRun, ALLOW_LIST_PATH, MULTIPATH_TESTS, RAN_FOR_REAL_RECORDED,
};

#[test]
fn iscsi_ls_discovers_the_target_and_its_portal() {
    require_tool("iscsi-ls");
    let dp = Dataplane::start("ls");
    let out = run_with_timeout(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{}", dp.portal)),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(out.status.success(), "iscsi-ls failed:\n{t}");
    assert!(t.contains(&dp.iqn), "target missing from discovery:\n{t}");
    assert!(
        t.contains(&dp.portal.to_string()),
        "portal missing from discovery:\n{t}"
    );
    assert!(
        t.contains("Lun:1"),
        "LUN 1 missing from the LUN listing:\n{t}"
    );
}

#[test]
fn iscsi_inq_reads_standard_and_vpd_inquiry() {
    require_tool("iscsi-inq");
    let dp = Dataplane::start("inq");
    let out = run_with_timeout(
        Command::new("iscsi-inq").arg(dp.url(1)),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(out.status.success(), "iscsi-inq failed:\n{t}");
    assert!(
        t.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "not a direct-access device:\n{t}"
    );
    assert!(t.contains("TGTRS"), "vendor id missing:\n{t}");
    for page in ["0x80", "0x83", "0xb0", "0xb2"] {
        let out = run_with_timeout(
            Command::new("iscsi-inq")
                .args(["-e", "1", "-c", page])
                .arg(dp.url(1)),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "VPD page {page} failed:\n{}",
            text(&out)
        );
    }
}

#[test]
fn iscsi_readcapacity16_reports_the_file_size() {
    require_tool("iscsi-readcapacity16");
    let dp = Dataplane::start("rc16");
    let out = run_with_timeout(
        Command::new("iscsi-readcapacity16").arg(dp.url(1)),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(out.status.success(), "iscsi-readcapacity16 failed:\n{t}");
    let blocks = (256u64 << 20) / 512;
    assert!(
        t.contains(&format!("RETURNED LOGICAL BLOCK ADDRESS:{}", blocks - 1)),
        "{t}"
    );
    assert!(t.contains("LOGICAL BLOCK LENGTH IN BYTES:512"), "{t}");
}

#[test]
fn iscsi_perf_read_load_runs_without_errors() {
    require_tool("iscsi-perf");
    let dp = Dataplane::start("perf");
    let out = run_with_timeout(
        Command::new("iscsi-perf")
            .args(["-t", "3", "-m", "16", "-r"])
            .arg(dp.url(1)),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert!(out.status.success(), "iscsi-perf failed:\n{t}");
    assert!(
        !t.to_lowercase().contains("error"),
        "iscsi-perf saw errors:\n{t}"
    );
    let mut dp = dp;
    assert!(
        dp.daemon.alive(),
        "data plane died under iscsi-perf:\n{}",
        dp.daemon.log_text()
    );
}

/// Runs `iscsi-test-cu -d -x -S --test=SUITE` (destructive and SANITIZE tests allowed)
/// against `urls` (the first the LUN, the others more paths to it) and returns its verdicts.
fn conformance(urls: &[String], suite: &str) -> CuRun {
    let dir = support::TempDir::new("cu");
    let out = run_with_timeout(
        Command::new("iscsi-test-cu")
            .current_dir(dir.path())
            .args(["-d", "-x", "-S"])
            .arg(format!("--test={suite}"))
            .args(["-i", "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"])
            .args([
                "-I",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
            ])
            .args(urls),
        Duration::from_secs(900),
    );
    let output = text(&out);
    let xml = std::fs::read_to_string(dir.path().join("CUnitAutomated-Results.xml"))
        .unwrap_or_else(|_| panic!("iscsi-test-cu wrote no results:\n{output}"));
    CuRun::parse(&xml, &output)
        .unwrap_or_else(|e| panic!("iscsi-test-cu results unreadable: {e}\n{output}"))
}

/// Every test of `--test=ALL` passes (unless `conformance/allowed-failures.txt` names it
/// with a reason) and at least the recorded number really ran; then every MultipathIO test
/// runs for real over the target's two portals. A new failure, a test that starts skipping,
/// or a run cut short fails here (see `tgt_system_tests::conformance`).
fn all_tests_pass_and_the_recorded_number_runs(backend: &'static str) {
    require_tool("iscsi-test-cu");
    let allowed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ALLOW_LIST_PATH);
    let allowed = std::fs::read_to_string(&allowed_path)
        .map_err(|e| e.to_string())
        .and_then(|t| AllowList::parse(&t))
        .unwrap_or_else(|e| panic!("{}: {e}", allowed_path.display()));
    let mut dp = Dataplane::start_with(
        &format!("cu-all-{backend}"),
        DataplaneOptions {
            backend,
            second_portal: true,
            // The PreventAllow, StartStopUnit and NoMedia tests need a removable medium.
            extra_storage_json: r#","removable":true"#.to_string(),
            ..DataplaneOptions::default()
        },
    );
    let url2 = format!(
        "iscsi://{}/{}/1",
        dp.portal2.expect("second portal"),
        dp.iqn
    );
    let run = conformance(&[dp.url(1)], "ALL");
    assert!(
        dp.daemon.alive(),
        "the data plane died during iscsi-test-cu:\n{}",
        dp.daemon.log_text()
    );
    eprintln!(
        "iscsi-test-cu ALL on {backend}: {}/{} passed, {} ran for real ({} skipped); failed: {:?}",
        run.passed(),
        run.total(),
        run.ran_for_real(),
        run.skipped,
        run.failed()
    );
    let problems = run.problems(&allowed, RAN_FOR_REAL_RECORDED);
    assert!(
        problems.is_empty(),
        "conformance regressed:\n{}",
        problems.join("\n")
    );
    let mp = conformance(&[dp.url(1), url2], "ALL.MultipathIO");
    eprintln!(
        "iscsi-test-cu ALL.MultipathIO on {backend} over two portals: {}/{} passed, {} ran for real",
        mp.passed(),
        mp.total(),
        mp.ran_for_real()
    );
    let problems = mp.problems(&allowed, MULTIPATH_TESTS);
    assert!(
        problems.is_empty() && mp.total() == MULTIPATH_TESTS,
        "multipath conformance regressed ({} tests):\n{}",
        mp.total(),
        problems.join("\n")
    );
}

#[test]
fn iscsi_test_cu_all_passes_every_test_and_runs_the_recorded_number() {
    all_tests_pass_and_the_recorded_number_runs("file");
}

#[test]
fn iscsi_test_cu_all_passes_every_test_and_runs_the_recorded_number_on_io_uring() {
    all_tests_pass_and_the_recorded_number_runs("iouring");
}
