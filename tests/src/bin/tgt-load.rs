//! `tgt-load`: run a verified load against an iSCSI target and print a JSON report.
//!
//! ```text
//! tgt-load --portal 127.0.0.1:3260 --target IQN [--lun 1] [--sessions 4] [--qd 8]
//!          [--seconds 30] [--write-percent 50] [--min-bytes 512] [--max-bytes 65536]
//!          [--region-blocks N] [--seed N] [--digests] [--no-final-verify]
//! ```
//!
//! Exits 0 only when the run did work and saw no error and no mismatch; 1 otherwise; 2 on
//! bad arguments.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tgt_system_tests::{verified_load, LoadOptions};

struct Args {
    portal: SocketAddr,
    target: String,
    lun: u64,
    opts: LoadOptions,
}

fn parse() -> anyhow::Result<Args> {
    let mut portal = None;
    let mut target = None;
    let mut lun = 1;
    let mut opts = LoadOptions {
        region_blocks: None,
        ..LoadOptions::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--portal" => portal = Some(value()?.parse().context("--portal")?),
            "--target" => target = Some(value()?),
            "--lun" => lun = value()?.parse().context("--lun")?,
            "--sessions" => opts.sessions = value()?.parse().context("--sessions")?,
            "--qd" => opts.queue_depth_per_session = value()?.parse().context("--qd")?,
            "--seconds" => {
                opts.duration = Duration::from_secs_f64(value()?.parse().context("--seconds")?)
            }
            "--write-percent" => {
                opts.write_percent = value()?.parse().context("--write-percent")?
            }
            "--min-bytes" => opts.io_len_bytes_min = value()?.parse().context("--min-bytes")?,
            "--max-bytes" => opts.io_len_bytes_max = value()?.parse().context("--max-bytes")?,
            "--region-blocks" => {
                opts.region_blocks = Some(value()?.parse().context("--region-blocks")?)
            }
            "--seed" => opts.seed = value()?.parse().context("--seed")?,
            "--digests" => {
                opts.session.header_digest = true;
                opts.session.data_digest = true;
            }
            "--no-final-verify" => opts.verify_at_end = false,
            "--initiator-name" => opts.session.initiator_name = value()?,
            "-h" | "--help" => bail!("usage: tgt-load --portal ADDR:PORT --target IQN [--lun N] [--sessions N] [--qd N] [--seconds S] [--write-percent P] [--min-bytes B] [--max-bytes B] [--region-blocks N] [--seed N] [--digests] [--no-final-verify]"),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        portal: portal.ok_or_else(|| anyhow!("--portal is required"))?,
        target: target.ok_or_else(|| anyhow!("--target is required"))?,
        lun,
        opts,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tgt-load: {e:#}");
            return ExitCode::from(2);
        }
    };
    match verified_load(args.portal, &args.target, args.lun, args.opts) {
        Ok(report) => {
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("tgt-load: cannot encode the report: {e}"),
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("tgt-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
