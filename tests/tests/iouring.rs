//! System tests of the io_uring backing store: it really serves I/O (with O_DIRECT where the
//! file system allows it), data survives a verified load, and a kernel without io_uring
//! falls back to plain file I/O with one clear warning.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{require_tool, run_with_timeout, text, Dataplane, DataplaneOptions};
use tgt_system_tests::{verified_load, LoadOptions};

fn wait_for_log(dp: &Dataplane, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = dp.daemon.log_text();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn iouring_storage_is_served_by_the_ring_with_o_direct_and_verifies_clean() {
    let mut dp = Dataplane::start_with(
        "uring-load",
        DataplaneOptions {
            backend: "iouring",
            ..DataplaneOptions::default()
        },
    );
    let log = wait_for_log(&dp, "logical unit ready");
    assert!(
        log.contains("backend=\"iouring+odirect\""),
        "expected the LU on io_uring with O_DIRECT; log:\n{log}"
    );
    let opts = LoadOptions {
        sessions: 2,
        queue_depth_per_session: 8,
        duration: Duration::from_secs(8),
        io_len_bytes_min: 512,
        io_len_bytes_max: 128 * 1024,
        write_percent: 50,
        region_blocks: Some(16_384),
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    eprintln!(
        "io_uring verified load: {} ops, {:.0} IOPS, {} blocks verified, {} errors, {} mismatches",
        r.ops, r.iops, r.verified_blocks, r.errors, r.mismatches
    );
    assert!(
        r.passed(),
        "errors {:?} mismatches {:?}",
        r.first_errors,
        r.first_mismatches
    );
    assert!(r.verified_blocks > 0);
    assert!(
        dp.daemon.alive(),
        "data plane died:\n{}",
        dp.daemon.log_text()
    );
    // The pool buffers went to the ring as registered (fixed) buffers, unbounced.
    let log = dp.daemon.log_text();
    assert!(
        log.contains("buffer pools registered with io_uring as fixed buffers"),
        "the rings did not register the buffer pools; log:\n{log}"
    );
}

#[test]
fn without_io_uring_the_storage_falls_back_to_file_io_with_one_warning() {
    require_tool("iscsi-inq");
    let dp = Dataplane::start_with(
        "uring-fallback",
        DataplaneOptions {
            backend: "iouring",
            env: vec![("TGT_FORCE_NO_IOURING", "1")],
            ..DataplaneOptions::default()
        },
    );
    let log = wait_for_log(&dp, "logical unit ready");
    assert_eq!(
        log.matches("io_uring unavailable").count(),
        1,
        "one warning expected; log:\n{log}"
    );
    assert!(
        log.contains("backend=\"file\""),
        "fallback not reported; log:\n{log}"
    );
    let out = run_with_timeout(
        Command::new("iscsi-inq").arg(dp.url(1)),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "the fallback LU must serve I/O:\n{}",
        text(&out)
    );
    let r = verified_load(
        dp.portal,
        &dp.iqn,
        1,
        LoadOptions {
            sessions: 1,
            duration: Duration::from_secs(2),
            ..LoadOptions::default()
        },
    )
    .expect("load runs");
    assert!(
        r.passed(),
        "errors {:?} mismatches {:?}",
        r.first_errors,
        r.first_mismatches
    );
}
