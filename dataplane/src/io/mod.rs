//! Kernel I/O engines; knows nothing about backends or SCSI.
//!
//! [`uring`] is the io_uring engine: positioned reads and writes, fsync/fdatasync and
//! fallocate on a file, each taking an owned buffer and handing it back on completion.
//! A backend decides what to do with it; the engine only moves bytes.
//!
//! # Threading model
//!
//! There is one ring per thread that submits, created lazily in a `thread_local!` on first
//! use, so on the multi-thread runtime each worker gets its own ring and a command is
//! submitted on the core that received it. Each ring lives in an `Arc<Ring>` whose state
//! (the `IoUring` and a slab of in-flight operations) sits behind one `std::sync::Mutex`.
//! On its home thread that mutex is uncontended: the lock is a single atomic exchange.
//!
//! Submission: the first poll of an operation's future locks the ring of the thread it is
//! polled on, puts its buffer and file into a slab slot, pushes the SQE and calls
//! `io_uring_enter` at once, which also submits anything else queued on that ring. Then it
//! reaps the CQ in the same lock. A page-cache hit completes inside that `io_uring_enter`,
//! so a buffered read that hits the cache finishes in its first poll with no wake-up and no
//! other thread involved. If the SQ is full, the submitter flushes it and pushes again; if
//! the kernel is busy (`EBUSY`/`EAGAIN`), the SQE stays queued and the future re-polls itself.
//! Inside [`uring::batched`] (the connection task handling one socket read) the SQE only
//! queues, and one `io_uring_enter` at the end of the batch submits every command of that
//! read.
//!
//! Fixed buffers: the data buffer pools are registered with every ring once they exist
//! ([`uring::register_fixed_regions`]); a transfer whose buffer lies inside them goes as
//! `READ_FIXED`/`WRITE_FIXED`, so the kernel does not pin and unpin its pages per I/O. The
//! registered memory is kept mapped for the rest of the process, so a ring can never point
//! at pages that were unmapped and reused.
//!
//! Completion: the ring fd itself (it polls readable while the CQ holds entries) is
//! registered with tokio's reactor through `tokio::io::unix::AsyncFd`, and the waker left
//! with the reactor is the ring's own (`ReadyWaker`), not a task's: when a CQE is posted,
//! the thread driving the reactor reaps the CQ, wakes the waiting futures' wakers and
//! re-arms, so a completion reaches the connection task with no task scheduled in between.
//! Every poll of an operation also reaps its own ring first, and the connection task reaps
//! its thread's ring (a read of shared memory, no system call) before it polls its woken
//! commands ([`uring::reap_here`]), so a task that is polled anyway never waits for the
//! reactor. One small reaper task per ring, spawned when the ring is created, is the safety
//! net: every 100 ms it reaps a ring with operations in flight and submits what an `EBUSY`
//! left queued, so no completion is stranded even if a readiness event were missed.
//!
//! Tasks move between threads on the multi-thread runtime, so an operation remembers the
//! `Arc<Ring>` it was submitted to, and is always reaped there: by its own later polls,
//! whichever thread they run on (they lock that ring), or by that ring's readiness waker,
//! which wakes the task wherever it now lives. Correctness never depends on the thread a
//! task runs on; staying on one thread only makes the lock uncontended.
//!
//! Why not dedicated ring threads blocking in `submit_and_wait`: that costs two thread
//! hand-offs per I/O (submit queue to ring thread, completion back to the worker), which on
//! two shared cores is most of the per-I/O budget, and page-cache hits could no longer
//! complete inline. The price of this design is one reactor wake-up per batch of
//! asynchronous completions (O_DIRECT, cache misses), and one lock per poll.
//!
//! Ownership: a buffer and the file it targets belong to the slab slot from push until the
//! CQE is reaped. A future dropped before that marks its slot abandoned; whoever reaps its
//! CQE frees the buffer then. A ring dropped with operations in flight (runtime shutdown)
//! waits for their CQEs before its memory is freed, and leaks them if the kernel refuses.
//! A ring lives until its runtime shuts down (its reaper task holds it); a thread that sees
//! its ring's reaper gone (a previous runtime) builds a new ring.
//!
//! Sizing: each ring's SQ has the largest queue depth any backend requested before it was
//! built ([`uring::request_queue_depth`]), rounded up to a power of two and capped at the
//! kernel's 32768; the CQ is twice that, and the kernel's `IORING_FEAT_NODROP` (required by
//! the probe) keeps completions beyond it instead of dropping them.
//!
//! Availability: [`uring::io_uring_available`] probes once per process (the
//! `kernel.io_uring_disabled` sysctl, ring set-up refused by the kernel or seccomp, missing
//! opcodes on old kernels). `TGT_FORCE_NO_IOURING=1` makes it report unavailable, so tests
//! and operators can exercise the fallback to the blocking-pool file backend.

pub mod uring;

pub use uring::{io_uring_available, AlignedBuf, IoBuf};
