//! System tests: the real `tgt-dataplane` under the project's own verified-load initiator.
//! Every block read back is checked against what was last written to it.

mod support;

use std::time::Duration;

use support::{Dataplane, DataplaneOptions};
use tgt_system_tests::{initiator::SessionOptions, verified_load, LoadOptions};

fn assert_clean(what: &str, dp: &mut Dataplane, r: &tgt_system_tests::LoadReport) {
    eprintln!(
        "{what}: {} ops, {:.0} IOPS, {:.1} MiB/s, p99 {} us, {} blocks verified, {} errors, {} mismatches",
        r.ops, r.iops, r.mib_per_s, r.latency_us.p99, r.verified_blocks, r.errors, r.mismatches
    );
    assert!(
        r.passed(),
        "{what} failed: errors {:?} mismatches {:?}\ndata plane log:\n{}",
        r.first_errors,
        r.first_mismatches,
        dp.daemon.log_text()
    );
    assert!(r.verified_blocks > 0, "{what} verified nothing");
    assert!(dp.daemon.alive(), "data plane died during {what}");
}

#[test]
fn four_sessions_of_random_read_write_for_30_s_verify_clean() {
    let mut dp = Dataplane::start("load4");
    let opts = LoadOptions {
        sessions: 4,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(30),
        write_percent: 50,
        region_blocks: None,
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    assert_clean("4-session verified load", &mut dp, &r);
    assert!(r.writes > 0 && r.reads > 0);
}

#[test]
fn digests_and_solicited_data_verify_clean() {
    // Header and data digests on, no immediate data and InitialR2T=Yes, small bursts: every
    // write goes through R2T sequences of several Data-Out PDUs.
    let mut dp = Dataplane::start_with("load-dig", DataplaneOptions::default());
    let opts = LoadOptions {
        sessions: 2,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(5),
        io_len_bytes_min: 512,
        io_len_bytes_max: 256 * 1024,
        write_percent: 60,
        region_blocks: Some(8192),
        session: SessionOptions {
            header_digest: true,
            data_digest: true,
            immediate_data: false,
            initial_r2t: true,
            recv_data_segment_len_bytes_max: 8192,
            first_burst_len_bytes: 8192,
            burst_len_bytes_max: 16384,
            ..SessionOptions::default()
        },
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    assert_clean("digest/R2T verified load", &mut dp, &r);
    let neg = r
        .negotiated
        .as_ref()
        .expect("negotiated parameters reported");
    eprintln!("negotiated: {neg:?}");
}

#[test]
fn unsolicited_data_and_large_bursts_verify_clean() {
    // 1 MiB I/Os need 1 MiB pool buffers: MAXIMUM TRANSFER LENGTH is one buffer.
    let mut dp = Dataplane::start_with(
        "load-unsol",
        DataplaneOptions {
            extra_top_json: r#""performance":{"numaBufferSize":1048576,"numaBufferPoolSize":64}"#
                .to_string(),
            ..DataplaneOptions::default()
        },
    );
    let opts = LoadOptions {
        sessions: 1,
        queue_depth_per_session: 8,
        duration: Duration::from_secs(5),
        io_len_bytes_min: 4096,
        io_len_bytes_max: 1024 * 1024,
        write_percent: 70,
        region_blocks: Some(65536),
        session: SessionOptions {
            immediate_data: true,
            initial_r2t: false,
            first_burst_len_bytes: 65536,
            burst_len_bytes_max: 262_144,
            ..SessionOptions::default()
        },
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    assert_clean("unsolicited-data verified load", &mut dp, &r);
}

#[test]
fn an_exhausted_buffer_pool_is_back_pressure_not_errors() {
    // Four 64 KiB buffers for sixteen outstanding commands of up to 64 KiB: reads wait for a
    // buffer inside the LU, writes wait with their connection's input unread.
    let mut dp = Dataplane::start_with(
        "load-pool",
        DataplaneOptions {
            extra_top_json: r#""performance":{"numaBufferSize":65536,"numaBufferPoolSize":4}"#
                .to_string(),
            ..DataplaneOptions::default()
        },
    );
    let opts = LoadOptions {
        sessions: 4,
        queue_depth_per_session: 4,
        duration: Duration::from_secs(5),
        io_len_bytes_min: 4096,
        io_len_bytes_max: 65536,
        write_percent: 50,
        region_blocks: Some(8192),
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    assert_clean("exhausted-pool verified load", &mut dp, &r);
    assert!(r.writes > 0 && r.reads > 0);
    let log = dp.daemon.log_text();
    assert!(
        log.contains("data buffer pool ready") && log.contains("buffers=4"),
        "pool not built as configured:\n{log}"
    );
}

#[test]
fn solicited_writes_on_an_exhausted_pool_keep_their_pace() {
    // Four 64 KiB buffers, sixteen 64 KiB writes in flight, all data solicited by R2T: the
    // connection's own writes hold every buffer while their Data-Out is still in its input.
    // Stopping to read there would only wait out the pool timeout for each command (a few
    // writes per second); the connection must go on reading and give the extra writes
    // vectors instead.
    let mut dp = Dataplane::start_with(
        "load-pool-r2t",
        DataplaneOptions {
            extra_top_json: r#""performance":{"numaBufferSize":65536,"numaBufferPoolSize":4}"#
                .to_string(),
            ..DataplaneOptions::default()
        },
    );
    let opts = LoadOptions {
        sessions: 1,
        queue_depth_per_session: 16,
        duration: Duration::from_secs(5),
        io_len_bytes_min: 65536,
        io_len_bytes_max: 65536,
        write_percent: 100,
        region_blocks: Some(8192),
        session: SessionOptions {
            initial_r2t: true,
            immediate_data: false,
            ..SessionOptions::default()
        },
        ..LoadOptions::default()
    };
    let r = verified_load(dp.portal, &dp.iqn, 1, opts).expect("load runs");
    assert_clean("R2T writes on an exhausted pool", &mut dp, &r);
    // At the 200 ms pool timeout per command 5 s allow about 25 writes; a connection that
    // keeps reading does thousands even on a loaded 2-core machine.
    assert!(
        r.writes > 500,
        "{} writes in 5 s: the pool wait serialised them",
        r.writes
    );
}
