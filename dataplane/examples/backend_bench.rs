//! Backend micro-benchmark: the file backend (RWF_NOWAIT inline, blocking pool otherwise)
//! against io_uring (page cache) and io_uring with O_DIRECT, at QD1 and QD32, 4 KiB and
//! 128 KiB, random reads and random writes, on one file.
//!
//! ```text
//! cargo run --release -p tgt-dataplane --example backend_bench -- [FILE] [SECONDS]
//! ```
//! FILE defaults to `target/backend-bench.img` (1 GiB, created and filled once).
//! Prints IOPS, MiB/s and process CPU time per I/O for every combination.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tgt_dataplane::backend::{Backend, FileBackend, UringBackend, UringOptions};

const SIZE_BYTES: u64 = 1 << 30;

fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct we pass, which is a zeroed local.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

async fn run(b: Arc<Backend>, qd: usize, len: usize, write: bool, secs: f64) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for q in 0..qd {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (q as u64 + 1);
            let mut n = 0u64;
            // Aligned like the data plane's pool buffers, so O_DIRECT needs no bounce.
            let Ok(aligned) = tgt_dataplane::buf::AlignedBuf::zeroed(len, 4096) else {
                eprintln!("cannot allocate a {len}-byte buffer");
                return 0;
            };
            let mut buf = tgt_dataplane::buf::IoBuf::from(aligned);
            let slots = SIZE_BYTES / len as u64;
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x % slots) * len as u64;
                let (b2, r) = if write {
                    b.write(off, buf).await
                } else {
                    b.read(off, buf).await
                };
                if let Err(e) = r {
                    eprintln!("I/O error: {e}");
                    return n;
                }
                buf = b2;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    let el = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - c0;
    (total as f64 / el, cpu * 1e6 / total.max(1) as f64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .map_or_else(|| PathBuf::from("target/backend-bench.img"), PathBuf::from);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < SIZE_BYTES {
        eprintln!("writing {} ({} MiB)", path.display(), SIZE_BYTES >> 20);
        let chunk = vec![0x5au8; 1 << 20];
        let mut f = std::fs::File::create(&path).expect("create bench file");
        for _ in 0..(SIZE_BYTES >> 20) {
            std::io::Write::write_all(&mut f, &chunk).expect("fill bench file");
        }
        f.sync_all().expect("sync bench file");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let file = Arc::new(Backend::File(
            FileBackend::open(&path, false, None).expect("open"),
        ));
        let uring = |direct| {
            let opts = UringOptions {
                queue_depth: Some(256),
                direct,
                block_size_bytes: 512,
                force_unavailable: false,
            };
            UringBackend::open(&path, false, None, &opts).map(|u| Arc::new(Backend::Uring(u)))
        };
        let mut backends = vec![("file", file)];
        match (uring(false), uring(true)) {
            (Ok(b), Ok(d)) => {
                backends.push(("iouring", b));
                backends.push(("iouring+odirect", d));
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("io_uring unavailable: {e}"),
        }
        println!(
            "{:<16} {:>5} {:>4} {:>6} {:>10} {:>9} {:>10}",
            "backend", "op", "QD", "size", "IOPS", "MiB/s", "CPU us/IO"
        );
        for (name, b) in &backends {
            for write in [false, true] {
                for qd in [1usize, 32] {
                    for len in [4096usize, 131_072] {
                        let (iops, cpu) = run(Arc::clone(b), qd, len, write, secs).await;
                        println!(
                            "{:<16} {:>5} {:>4} {:>5}k {:>10.0} {:>9.1} {:>10.2}",
                            name,
                            if write { "write" } else { "read" },
                            qd,
                            len / 1024,
                            iops,
                            iops * len as f64 / (1 << 20) as f64,
                            cpu
                        );
                    }
                }
            }
        }
    });
}
