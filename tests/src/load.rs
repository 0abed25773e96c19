//! Verified load: the acceptance test of a target's data path.
//!
//! `sessions` sessions each run `queue_depth_per_session` worker threads, so that many
//! commands are outstanding per session. Every worker owns a disjoint LBA range, which makes
//! the expected content of each block exact without locks: the worker remembers the sequence
//! number of the last successful write to every block of its range.
//!
//! Every logical block written carries a self-describing pattern: its LBA, the writer's
//! sequence number, the run's seed, a magic tag, and a payload derived from all three. Reads
//! check every block that has been written; blocks never written are not judged, because their
//! initial content is unknown. After the timed phase each worker reads its whole range back
//! once more, which catches lost writes that random reads happened to miss. I/O sizes are
//! random between the bounds, so immediate data, unsolicited Data-Out, R2T sequences and
//! multi-PDU Data-In are all exercised.
//!
//! A command answered with UNIT ATTENTION is sent again, as a real initiator does: the
//! condition (for example REPORTED LUNS DATA HAS CHANGED when a LUN is added to the target
//! under load) means the command was not run, so it is neither an error nor a lost write.
//! The report counts those retries separately.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::initiator::scsi::SENSE_KEY_UNIT_ATTENTION;
use crate::initiator::{Error, Negotiated, Session, SessionOptions, SessionStats};

/// Magic tag in every pattern block.
const MAGIC: &[u8; 8] = b"TGTLOAD1";
/// A block whose last write failed: its content is unknown and not verified.
const UNKNOWN: u64 = u64::MAX;
/// How many error and mismatch descriptions the report keeps.
const DETAILS_MAX: usize = 16;
/// Latency samples kept per worker; enough for minutes at loopback speed.
const SAMPLES_MAX: usize = 1 << 20;
/// Times one command is sent again after UNIT ATTENTION. Linux's sd gives a command five
/// tries as well; a target reports each pending condition once, and ours keeps at most
/// three per logical unit plus REPORTED LUNS DATA HAS CHANGED, so five clears any backlog.
const UA_RETRIES: u64 = 5;

/// Parameters of a verified load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Number of sessions (one connection each).
    pub sessions: usize,
    /// Commands outstanding per session (worker threads per session).
    pub queue_depth_per_session: usize,
    /// Length of the timed random phase.
    pub duration: Duration,
    /// Smallest I/O in bytes (rounded up to whole blocks).
    pub io_len_bytes_min: u32,
    /// Largest I/O in bytes (rounded down to whole blocks).
    pub io_len_bytes_max: u32,
    /// Percentage of I/Os that are writes (0–100).
    pub write_percent: u8,
    /// Blocks each session owns; `None` splits the LUN evenly between sessions.
    pub region_blocks: Option<u64>,
    /// Seed of the random choices and the data pattern.
    pub seed: u64,
    /// Read every worker's whole range back after the timed phase.
    pub verify_at_end: bool,
    /// Login options (the target name is filled in by [`verified_load`]).
    pub session: SessionOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            sessions: 2,
            queue_depth_per_session: 4,
            duration: Duration::from_secs(10),
            io_len_bytes_min: 512,
            io_len_bytes_max: 65_536,
            write_percent: 50,
            region_blocks: Some(16_384),
            seed: 0x5eed,
            verify_at_end: true,
            session: SessionOptions::default(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
    /// Mean.
    pub mean: u64,
}

/// What a verified load run did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Sessions used.
    pub sessions: usize,
    /// Workers per session.
    pub queue_depth_per_session: usize,
    /// Logical block length of the LUN.
    pub block_len_bytes: u32,
    /// LUN size in blocks.
    pub capacity_blocks: u64,
    /// Blocks each worker owned.
    pub worker_region_blocks: u64,
    /// Timed-phase length in seconds.
    pub elapsed_s: f64,
    /// Commands completed in the timed phase.
    pub ops: u64,
    /// Reads in the timed phase.
    pub reads: u64,
    /// Writes in the timed phase.
    pub writes: u64,
    /// Bytes read in the timed phase.
    pub bytes_read: u64,
    /// Bytes written in the timed phase.
    pub bytes_written: u64,
    /// Blocks whose content was checked (timed phase and final pass).
    pub verified_blocks: u64,
    /// Commands or sessions that failed.
    pub errors: u64,
    /// Blocks whose content was wrong.
    pub mismatches: u64,
    /// UNIT ATTENTION answers met and retried; not errors, as the command had not run.
    pub unit_attentions: u64,
    /// Timed-phase operations per second.
    pub iops: f64,
    /// Timed-phase throughput in MiB/s.
    pub mib_per_s: f64,
    /// Per-command latency in the timed phase.
    pub latency_us: Latency,
    /// Protocol paths exercised, summed over the sessions.
    pub protocol: SessionStats,
    /// The first few errors.
    pub first_errors: Vec<String>,
    /// The first few mismatches.
    pub first_mismatches: Vec<String>,
    /// Parameters negotiated by the first session.
    pub negotiated: Option<Negotiated>,
}

impl LoadReport {
    /// True when the run did work and found nothing wrong.
    pub fn passed(&self) -> bool {
        self.errors == 0 && self.mismatches == 0 && self.ops > 0
    }
}

/// splitmix64: small, fast and good enough to drive random choices and patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills one block with the pattern for (`lba`, `seq`).
fn fill_block(out: &mut [u8], lba: u64, seq: u64, seed: u64) {
    out[0..8].copy_from_slice(&lba.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&seed.to_le_bytes());
    out[24..32].copy_from_slice(MAGIC);
    let mut r = Rng(mix(seed
        ^ lba.wrapping_mul(0x100_0000_01b3)
        ^ seq.rotate_left(32)));
    for chunk in out[32..].chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Describes what a mismatching block holds instead.
fn describe(found: &[u8], lba: u64, seq: u64, seed: u64) -> String {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&found[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if found.len() >= 32 && &found[24..32] == MAGIC {
        let (f_lba, f_seq, f_seed) = (word(0), word(8), word(16));
        if f_lba == lba && f_seq == seq && f_seed == seed {
            format!("lba {lba}: header right (seq {seq}) but payload corrupt")
        } else {
            format!(
                "lba {lba}: expected seq {seq}, found block of lba {f_lba} seq {f_seq} seed {f_seed:#x}"
            )
        }
    } else if found.iter().all(|&b| b == 0) {
        format!("lba {lba}: expected seq {seq}, found zeros")
    } else {
        format!("lba {lba}: expected seq {seq}, found foreign data")
    }
}

#[derive(Default)]
struct WorkerResult {
    ops: u64,
    reads: u64,
    writes: u64,
    bytes_read: u64,
    bytes_written: u64,
    verified_blocks: u64,
    errors: u64,
    mismatches: u64,
    unit_attentions: u64,
    first_errors: Vec<String>,
    first_mismatches: Vec<String>,
    latencies_us: Vec<u32>,
}

impl WorkerResult {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < DETAILS_MAX {
            self.first_errors.push(what);
        }
    }
    fn mismatch(&mut self, what: String) {
        self.mismatches += 1;
        if self.first_mismatches.len() < DETAILS_MAX {
            self.first_mismatches.push(what);
        }
    }
}

struct Worker<'a> {
    session: &'a Session,
    lun: u64,
    block_len: u32,
    start: u64,
    gens: Vec<u64>,
    seed: u64,
    rng: Rng,
    next_seq: u64,
    blocks_min: u64,
    blocks_max: u64,
    write_percent: u8,
}

impl Worker<'_> {
    fn block_bytes(&self) -> usize {
        usize::try_from(self.block_len).unwrap_or(512)
    }

    fn verify(&self, res: &mut WorkerResult, lba: u64, data: &[u8]) {
        let bl = self.block_bytes();
        let mut expect = vec![0u8; bl];
        for (i, found) in data.chunks(bl).enumerate() {
            let b = lba + i as u64;
            let idx = usize::try_from(b - self.start).unwrap_or(usize::MAX);
            let Some(&seq) = self.gens.get(idx) else {
                res.mismatch(format!("lba {b} outside the worker range"));
                continue;
            };
            if seq == 0 || seq == UNKNOWN {
                continue;
            }
            fill_block(&mut expect, b, seq, self.seed);
            res.verified_blocks += 1;
            if found != expect.as_slice() {
                res.mismatch(describe(found, b, seq, self.seed));
            }
        }
    }

    /// One random I/O; returns false when the session is dead.
    fn step(&mut self, res: &mut WorkerResult) -> bool {
        let region = self.gens.len() as u64;
        let n = self.blocks_min + self.rng.below(self.blocks_max - self.blocks_min + 1);
        let lba = self.start + self.rng.below(region - n + 1);
        let idx = usize::try_from(lba - self.start).unwrap_or(0);
        let nb = usize::try_from(n).unwrap_or(0);
        let bl = self.block_bytes();
        let is_write = self.rng.below(100) < u64::from(self.write_percent);
        // A quarter of the commands use the 10-byte CDBs where the LBA fits.
        let use10 = self.rng.below(4) == 0 && lba + n <= u64::from(u32::MAX);
        let bytes = n * u64::from(self.block_len);
        let t0 = Instant::now();
        let outcome: Result<(), Error> = if is_write {
            self.next_seq += 1;
            let seq = self.next_seq;
            let mut buf = vec![0u8; nb * bl];
            for (i, blk) in buf.chunks_mut(bl).enumerate() {
                fill_block(blk, lba + i as u64, seq, self.seed);
            }
            let (r, uas) = retry_unit_attention(|| match (use10, u32::try_from(lba)) {
                (true, Ok(l)) => self.session.write10(self.lun, l, &buf, self.block_len),
                _ => self.session.write16(self.lun, lba, &buf, self.block_len),
            });
            res.unit_attentions += uas;
            let mark = if r.is_ok() { seq } else { UNKNOWN };
            for g in &mut self.gens[idx..idx + nb] {
                *g = mark;
            }
            r
        } else {
            let (r, uas) =
                retry_unit_attention(|| match (use10, u32::try_from(lba), u16::try_from(n)) {
                    (true, Ok(l), Ok(c)) => self.session.read10(self.lun, l, c, self.block_len),
                    _ => self.session.read16(
                        self.lun,
                        lba,
                        u32::try_from(n).unwrap_or(0),
                        self.block_len,
                    ),
                });
            res.unit_attentions += uas;
            r.map(|data| {
                if data.len() != nb * bl {
                    res.error(format!("read of {n} blocks returned {} bytes", data.len()));
                } else {
                    self.verify(res, lba, &data);
                }
            })
        };
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        match outcome {
            Ok(()) => {
                res.ops += 1;
                if is_write {
                    res.writes += 1;
                    res.bytes_written += bytes;
                } else {
                    res.reads += 1;
                    res.bytes_read += bytes;
                }
                if res.latencies_us.len() < SAMPLES_MAX {
                    res.latencies_us.push(us);
                }
                true
            }
            Err(e) => {
                let op = if is_write { "write" } else { "read" };
                res.error(format!("{op} lba {lba} blocks {n}: {e}"));
                self.session.failure().is_none()
            }
        }
    }

    /// Reads the whole range back and verifies every written block.
    fn final_pass(&mut self, res: &mut WorkerResult) {
        let region = self.gens.len() as u64;
        let mut at = 0;
        while at < region {
            let n = self.blocks_max.min(region - at);
            let lba = self.start + at;
            let (r, uas) = retry_unit_attention(|| {
                self.session
                    .read16(self.lun, lba, u32::try_from(n).unwrap_or(0), self.block_len)
            });
            res.unit_attentions += uas;
            match r {
                Ok(data) => self.verify(res, lba, &data),
                Err(e) => {
                    res.error(format!("final read lba {lba} blocks {n}: {e}"));
                    if self.session.failure().is_some() {
                        return;
                    }
                }
            }
            at += n;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round();
    let i = usize::try_from(rank as u64)
        .unwrap_or(0)
        .min(sorted.len() - 1);
    u64::from(sorted[i])
}

/// Runs `op` and sends it again while the target answers UNIT ATTENTION, at most
/// [`UA_RETRIES`] times; returns its last outcome and how many UNIT ATTENTIONs it met.
/// Any other failure, or a UNIT ATTENTION past the last retry, is returned as it came.
fn retry_unit_attention<T>(mut op: impl FnMut() -> Result<T, Error>) -> (Result<T, Error>, u64) {
    let mut met = 0;
    loop {
        let r = op();
        match &r {
            Err(Error::Scsi {
                sense: Some(sense), ..
            }) if sense.key == SENSE_KEY_UNIT_ATTENTION && met < UA_RETRIES => met += 1,
            _ => return (r, met),
        }
    }
}

/// The first command of a new I_T nexus may meet a unit attention (for example POWER ON
/// RESET, SPC-4 §5.14); TEST UNIT READY consumes it before the measured I/O starts.
fn clear_unit_attention(s: &Session, lun: u64) -> anyhow::Result<()> {
    retry_unit_attention(|| s.test_unit_ready(lun))
        .0
        .context("TEST UNIT READY")
}

/// Runs a verified load against `target` LUN `lun` at `portal`. Errors found during the run
/// are counted in the report; `Err` means the run could not start (login or capacity failed,
/// or the options do not fit the LUN).
pub fn verified_load(
    portal: SocketAddr,
    target: &str,
    lun: u64,
    opts: LoadOptions,
) -> anyhow::Result<LoadReport> {
    if opts.sessions == 0 || opts.queue_depth_per_session == 0 {
        bail!("sessions and queue depth must be at least 1");
    }
    if opts.write_percent > 100 {
        bail!("write percent {} is above 100", opts.write_percent);
    }
    let sopts = SessionOptions {
        target_name: Some(target.to_string()),
        ..opts.session.clone()
    };
    let probe = Session::login(portal, &sopts).context("probe login")?;
    clear_unit_attention(&probe, lun)?;
    // A configuration change between the TUR loop and here raises a new condition (for
    // example REPORTED LUNS DATA HAS CHANGED while a LUN is added under load): retried as sd
    // would.
    let (cap, _) = retry_unit_attention(|| probe.read_capacity16(lun));
    let cap = cap.context("READ CAPACITY (16)")?;
    probe.logout().context("probe logout")?;
    if cap.block_len_bytes < 32 {
        bail!(
            "block length {} is too small for the pattern",
            cap.block_len_bytes
        );
    }
    let bl = u64::from(cap.block_len_bytes);
    let blocks_min = u64::from(opts.io_len_bytes_min).div_ceil(bl).max(1);
    let blocks_max_want = u64::from(opts.io_len_bytes_max) / bl;
    let sessions = opts.sessions as u64;
    let qd = opts.queue_depth_per_session as u64;
    let session_region = opts
        .region_blocks
        .unwrap_or(cap.blocks / sessions)
        .min(cap.blocks / sessions);
    let worker_region = session_region / qd;
    let blocks_max = blocks_max_want.min(worker_region);
    if blocks_max < blocks_min || blocks_max == 0 {
        bail!(
            "worker range of {worker_region} blocks cannot hold I/Os of {blocks_min}..{blocks_max_want} blocks"
        );
    }

    let mut sessions_v = Vec::new();
    for i in 0..opts.sessions {
        let s = Session::login(portal, &sopts).with_context(|| format!("login {i}"))?;
        clear_unit_attention(&s, lun)?;
        sessions_v.push(s);
    }
    let negotiated = sessions_v.first().map(|s| s.negotiated().clone());
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut timed_elapsed = Duration::ZERO;
    let results: Vec<WorkerResult> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (si, s) in sessions_v.iter().enumerate() {
            for q in 0..opts.queue_depth_per_session {
                let wid = si as u64 * qd + q as u64;
                let start = si as u64 * session_region + q as u64 * worker_region;
                let mut w = Worker {
                    session: s,
                    lun,
                    block_len: cap.block_len_bytes,
                    start,
                    gens: vec![0; usize::try_from(worker_region).unwrap_or(0)],
                    seed: opts.seed,
                    rng: Rng(mix(opts.seed ^ wid.wrapping_mul(0x9e37_79b9))),
                    next_seq: 0,
                    blocks_min,
                    blocks_max,
                    write_percent: opts.write_percent,
                };
                let verify_at_end = opts.verify_at_end;
                handles.push(scope.spawn(move || {
                    let mut res = WorkerResult::default();
                    while Instant::now() < deadline {
                        if !w.step(&mut res) {
                            break;
                        }
                    }
                    let timed = started.elapsed();
                    if verify_at_end && w.session.failure().is_none() {
                        w.final_pass(&mut res);
                    }
                    (res, timed)
                }));
            }
        }
        let mut out = Vec::new();
        for h in handles {
            match h.join() {
                Ok((r, t)) => {
                    timed_elapsed = timed_elapsed.max(t);
                    out.push(r);
                }
                Err(_) => {
                    let mut r = WorkerResult::default();
                    r.error("worker thread panicked".into());
                    out.push(r);
                }
            }
        }
        out
    });

    let mut report = LoadReport {
        sessions: opts.sessions,
        queue_depth_per_session: opts.queue_depth_per_session,
        block_len_bytes: cap.block_len_bytes,
        capacity_blocks: cap.blocks,
        worker_region_blocks: worker_region,
        negotiated,
        ..LoadReport::default()
    };
    let mut lat = Vec::new();
    for r in results {
        report.ops += r.ops;
        report.reads += r.reads;
        report.writes += r.writes;
        report.bytes_read += r.bytes_read;
        report.bytes_written += r.bytes_written;
        report.verified_blocks += r.verified_blocks;
        report.errors += r.errors;
        report.mismatches += r.mismatches;
        report.unit_attentions += r.unit_attentions;
        for e in r.first_errors {
            if report.first_errors.len() < DETAILS_MAX {
                report.first_errors.push(e);
            }
        }
        for m in r.first_mismatches {
            if report.first_mismatches.len() < DETAILS_MAX {
                report.first_mismatches.push(m);
            }
        }
        lat.extend(r.latencies_us);
    }
    for (i, s) in sessions_v.into_iter().enumerate() {
        report.protocol.add(&s.stats());
        if let Err(e) = s.logout() {
            report.errors += 1;
            if report.first_errors.len() < DETAILS_MAX {
                report
                    .first_errors
                    .push(format!("logout of session {i}: {e}"));
            }
        }
    }
    lat.sort_unstable();
    let secs = timed_elapsed.as_secs_f64().max(1e-9);
    report.elapsed_s = secs;
    report.iops = report.ops as f64 / secs;
    report.mib_per_s = (report.bytes_read + report.bytes_written) as f64 / secs / 1_048_576.0;
    report.latency_us = Latency {
        p50: percentile(&lat, 50.0),
        p90: percentile(&lat, 90.0),
        p99: percentile(&lat, 99.0),
        p999: percentile(&lat, 99.9),
        max: lat.last().map(|&v| u64::from(v)).unwrap_or(0),
        mean: if lat.is_empty() {
            0
        } else {
            lat.iter().map(|&v| u64::from(v)).sum::<u64>() / lat.len() as u64
        },
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_distinguishes_lba_and_seq() {
        let mut a = vec![0u8; 512];
        let mut b = vec![0u8; 512];
        fill_block(&mut a, 10, 3, 7);
        fill_block(&mut b, 10, 3, 7);
        assert_eq!(a, b);
        fill_block(&mut b, 11, 3, 7);
        assert_ne!(a[32..], b[32..]);
        fill_block(&mut b, 10, 4, 7);
        assert_ne!(a[32..], b[32..]);
        assert!(describe(&b, 10, 3, 7).contains("found block of lba 10 seq 4"));
        assert!(describe(&[0u8; 512], 10, 3, 7).contains("zeros"));
    }

    fn scsi_error(key: u8) -> Error {
        Error::Scsi {
            status: crate::initiator::scsi::STATUS_CHECK_CONDITION,
            sense: Some(crate::initiator::Sense {
                key,
                asc: 0x3f,
                ascq: 0x0e,
            }),
        }
    }

    #[test]
    fn unit_attention_is_retried_and_counted_but_other_failures_are_not() {
        let mut answers = vec![Ok(7), Err(scsi_error(6)), Err(scsi_error(6))];
        let (r, met) = retry_unit_attention(|| answers.pop().unwrap());
        assert_eq!((r.unwrap(), met), (7, 2));
        let mut calls = 0;
        let (r, met) = retry_unit_attention(|| -> Result<u8, Error> {
            calls += 1;
            Err(scsi_error(5))
        });
        assert!(r.is_err() && met == 0 && calls == 1);
        // A target that never stops answering UNIT ATTENTION fails the command in the end.
        let (r, met) = retry_unit_attention(|| -> Result<u8, Error> { Err(scsi_error(6)) });
        assert!(r.is_err());
        assert_eq!(met, UA_RETRIES);
    }

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 501);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
