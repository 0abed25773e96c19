//! Ceph RBD backend (`backendType: "rbd"`): an RBD image served through librbd's
//! asynchronous C API, loaded at run time ([`ffi`]).
//!
//! # Completions
//!
//! Every operation is one heap block (`Op`) that owns its data buffer. Its address is the
//! completion's callback argument; librbd calls `on_complete` on one of its own threads,
//! which releases the completion and sends the block back over a tokio oneshot channel. The
//! waiting future never blocks a runtime thread. A future that is dropped (the command was
//! aborted) or that gives up after [`RBD_OP_TIMEOUT`] only drops the receiver: the block,
//! and with it the buffer librbd may still be writing into, is freed by the callback when
//! the send fails, never earlier.
//!
//! # Semantics (SBC-3 mapped to RBD)
//!
//! - `rbd_cache` is turned off: an acknowledged write is in the OSDs, so FUA and SYNCHRONIZE
//!   CACHE (SBC-3 5.22) become `rbd_aio_flush`, which is then cheap but still ordered.
//! - Deallocation (UNMAP, WRITE SAME with UNMAP): `rbd_aio_discard` when the range is
//!   aligned to the discard granularity this client sets ([`DISCARD_GRANULARITY_BYTES`]),
//!   else `rbd_aio_write_zeroes`, which zeroes partial objects, so a deallocated range always
//!   reads as zeroes (what LBPRZ promises, SBC-3 4.7.4.5).
//! - One gateway writes: the image's exclusive lock is taken explicitly
//!   (`rbd_lock_acquire(RBD_LOCK_MODE_EXCLUSIVE)`, which also stops librbd from handing it
//!   to another client on request). Without it, or once another client broke it (this client
//!   is then blocklisted, `EBLOCKLISTED`), writes fail with NOT READY instead of being
//!   acknowledged; a gateway that does not own the lock tries to take it again at most every
//!   [`RBD_LOCK_RETRY_INTERVAL`].
//! - WRITE SAME (SBC-3 5.46) of a non-zero block is one `rbd_aio_writesame`. COMPARE AND
//!   WRITE (SBC-3 5.2) of one 512-byte sector is `rbd_aio_compare_and_write`, which the OSD
//!   executes atomically (compare and write in one object operation), so it stays correct
//!   with several gateways; a miscompare comes back as `EILSEQ` with the image offset of the
//!   first differing byte. librbd 16 takes only a compare-and-write that fits one 512-byte
//!   sector (`ImageCompareAndWriteRequest::prune_object_extents` answers `EINVAL`
//!   otherwise): longer ones, and every one when the library lacks the function, are left
//!   to the logical unit (read, compare and write under its lock), which is atomic as long
//!   as this gateway owns the exclusive lock, and it must to write at all.
//! - Size: the image's, read at open and again whenever librbd reports a header change
//!   (`rbd_update_watch`, on a thread of this backend: a callback must not call back into
//!   librbd). A larger size is published (the logical unit then raises CAPACITY DATA HAS
//!   CHANGED); a smaller one (`rbd resize --allow-shrink`) is not taken: the capacity the
//!   initiators know stays, the data plane logs an error, and I/O to the cut-off blocks
//!   fails in librbd.
//! - Errors: `EBLOCKLISTED` and `ETIMEDOUT` are NOT READY (the initiator retries, possibly on
//!   another path), `EROFS` is DATA PROTECT / WRITE PROTECTED, `ENOSPC`/`EDQUOT` SPACE
//!   ALLOCATION FAILED, the rest MEDIUM ERROR (`lu::medium` maps kinds to sense).

pub mod ffi;

use super::{check_range, BackendError, BufResult, ErrorKind, Extent};
use crate::buf::IoBuf;
use ffi::{Lib, RadosIoctxT, RadosT, RbdCompletionT, RbdImageT};
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Longest wait for one librbd operation. A stalled cluster (OSDs down, network gone) turns
/// into NOT READY after this long instead of a command that never ends; it is below the
/// 30 s SCSI command timeout of Linux and libiscsi so the initiator sees sense, not an
/// abort.
pub const RBD_OP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a gateway that does not own the exclusive lock tries to take it again.
pub const RBD_LOCK_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Longest wait for `rbd_lock_acquire` (it asks the current owner over RADOS notify).
pub const RBD_LOCK_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `rados_connect` may wait for the monitors before the storage fails to open
/// (`client_mount_timeout`, whose default is 300 s).
pub const RBD_CONNECT_TIMEOUT_S: u32 = 15;
/// The discard granularity this client configures (`rbd_discard_granularity_bytes`, also
/// librbd's default): a discard aligned to it deallocates exactly its range.
pub const DISCARD_GRANULARITY_BYTES: u64 = 64 << 10;

/// Where an RBD image is and how to reach its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdSpec {
    /// RADOS pool.
    pub pool: String,
    /// RADOS namespace inside the pool, if any.
    pub namespace: Option<String>,
    /// Image name.
    pub image: String,
    /// Ceph configuration file; `None` uses librados' search (`$CEPH_CONF`,
    /// `/etc/ceph/ceph.conf`, ...).
    pub conf: Option<PathBuf>,
    /// Client id without the `client.` prefix; `None` means `admin`.
    pub client_id: Option<String>,
    /// Keyring file; `None` uses the configuration's.
    pub keyring: Option<PathBuf>,
}

impl std::fmt::Display for RbdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.pool, ns, self.image),
            None => write!(f, "{}/{}", self.pool, self.image),
        }
    }
}

/// What kind of operation, for the per-storage counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// `rbd_aio_read2`.
    Read = 0,
    /// `rbd_aio_write2`.
    Write = 1,
    /// `rbd_aio_flush`.
    Flush = 2,
    /// `rbd_aio_discard` / `rbd_aio_write_zeroes`.
    Deallocate = 3,
    /// `rbd_aio_writesame`.
    WriteSame = 4,
    /// `rbd_aio_compare_and_write` (miscompares included).
    CompareAndWrite = 5,
}

impl OpClass {
    /// Every class, in counter order.
    pub const ALL: [OpClass; 6] = [
        OpClass::Read,
        OpClass::Write,
        OpClass::Flush,
        OpClass::Deallocate,
        OpClass::WriteSame,
        OpClass::CompareAndWrite,
    ];

    /// The class's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Flush => "flush",
            OpClass::Deallocate => "deallocate",
            OpClass::WriteSame => "writesame",
            OpClass::CompareAndWrite => "compare_and_write",
        }
    }
}

/// Upper bounds (µs) of the latency histogram's buckets; the last bucket is everything above.
pub const LATENCY_BUCKETS_US: [u64; 8] = [250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000];

/// Counters of one RBD storage, read by status and metrics.
#[derive(Debug, Default)]
pub struct RbdStats {
    /// Operations submitted to librbd and not yet completed (timed-out ones included until
    /// librbd completes them).
    pub in_flight: AtomicU64,
    /// Completed operations by [`OpClass`].
    pub ops: [AtomicU64; 6],
    /// COMPARE AND WRITEs whose data did not match (answered MISCOMPARE).
    pub miscompares: AtomicU64,
    /// Size changes of the image seen through librbd's header watch: grows taken, shrinks
    /// refused.
    pub grows: AtomicU64,
    /// See [`grows`](Self::grows).
    pub shrinks_refused: AtomicU64,
    /// Completed operations by latency bucket ([`LATENCY_BUCKETS_US`], then overflow).
    pub latency: [AtomicU64; 9],
    /// Sum of the latencies of completed operations, in µs.
    pub latency_sum_us: AtomicU64,
    /// Failed operations by kind: io, out of range, no space, read-only, not ready,
    /// unsupported (the order of [`ErrorKind`]).
    pub errors: [AtomicU64; 6],
    /// Operations that did not complete within [`RBD_OP_TIMEOUT`].
    pub timeouts: AtomicU64,
    /// Writes refused because this gateway does not own the exclusive lock.
    pub lock_refusals: AtomicU64,
    /// Whether this gateway owns the image's exclusive lock now.
    pub lock_owner: AtomicBool,
}

/// The error kinds in [`RbdStats::errors`] order, by their metrics name.
pub const ERROR_KIND_NAMES: [&str; 6] = [
    "io",
    "out_of_range",
    "no_space",
    "read_only",
    "not_ready",
    "unsupported",
];

fn kind_index(k: ErrorKind) -> usize {
    match k {
        ErrorKind::Io => 0,
        ErrorKind::OutOfRange => 1,
        ErrorKind::NoSpace => 2,
        ErrorKind::ReadOnly => 3,
        ErrorKind::NotReady => 4,
        ErrorKind::Unsupported => 5,
    }
}

impl RbdStats {
    fn record(&self, class: OpClass, started: Instant) {
        self.ops[class as usize].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&top| us <= top)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[b].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn error(&self, e: &BackendError) {
        self.errors[kind_index(e.kind)].fetch_add(1, Ordering::Relaxed);
    }
}

/// librbd's handles of one open image, released in reverse order on drop.
struct Handles {
    lib: &'static Lib,
    cluster: RadosT,
    ioctx: RadosIoctxT,
    image: RbdImageT,
    /// True when this gateway took the exclusive lock (released on close).
    locked: AtomicBool,
    stats: Arc<RbdStats>,
    /// The image's size in bytes as served: set at open, raised by the header watch.
    size: AtomicU64,
    /// The registered header watch, unregistered before the image is closed.
    watch: Mutex<Option<Watch>>,
}

/// A registered `rbd_update_watch`: its handle and the context its callback gets.
struct Watch {
    handle: u64,
    ctx: *mut WatchCtx,
}

/// What the header-watch callback reaches: a wake-up for the backend's size thread.
struct WatchCtx {
    tx: std::sync::mpsc::SyncSender<()>,
}

/// `rbd_update_callback_t`: the image's header changed. Runs on a librbd thread, which must
/// not call back into librbd, so it only wakes the size thread.
///
/// # Safety
/// `arg` is the `WatchCtx` registered with this watch, alive until it is unregistered.
unsafe extern "C" fn on_header_update(arg: *mut c_void) {
    // SAFETY: the caller's contract; the context outlives the registration.
    let ctx = unsafe { &*arg.cast::<WatchCtx>() };
    // Full means a wake-up is already pending: one size read covers both changes.
    let _ = ctx.tx.try_send(());
}

// SAFETY: librados' and librbd's handles are documented thread-safe (every call may come from
// any thread; librbd serialises internally); the raw pointers are only passed to them.
unsafe impl Send for Handles {}
// SAFETY: see above.
unsafe impl Sync for Handles {}

impl Drop for Handles {
    fn drop(&mut self) {
        // Operations that timed out may still be in librbd: their blocks own their buffers,
        // but the image must outlive them. Wait for them (bounded), then close.
        let deadline = Instant::now() + RBD_OP_TIMEOUT * 2;
        while self.stats.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let watch = self
            .watch
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let (Some(w), Some(unwatch)) = (watch, self.lib.rbd_update_unwatch) {
            // SAFETY: the watch was registered on this open image; librbd waits for a running
            // callback before it returns, so the context is unused afterwards and freed
            // here exactly once (which also ends the size thread: its channel closes).
            unsafe {
                unwatch(self.image, w.handle);
                drop(Box::from_raw(w.ctx));
            }
        }
        // SAFETY: each handle is either null (never opened) or was returned by the matching
        // open call and is released exactly once, image before ioctx before cluster.
        unsafe {
            if !self.image.is_null() {
                if self.locked.load(Ordering::Acquire) {
                    (self.lib.rbd_lock_release)(self.image);
                }
                (self.lib.rbd_close)(self.image);
            }
            if !self.ioctx.is_null() {
                (self.lib.rados_ioctx_destroy)(self.ioctx);
            }
            if !self.cluster.is_null() {
                (self.lib.rados_shutdown)(self.cluster);
            }
        }
    }
}

/// An RBD image opened through librbd.
#[derive(Clone)]
pub struct RbdBackend {
    h: Arc<Handles>,
    spec: Arc<RbdSpec>,
    read_only: bool,
    /// Whether the image has the exclusive-lock feature (without it there is no lock to own).
    lock_feature: bool,
    next_lock_try: Arc<Mutex<Instant>>,
}

impl std::fmt::Debug for RbdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdBackend")
            .field("image", &self.spec.to_string())
            .field("size_bytes", &self.size_bytes())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// An errno as returned by librados/librbd (negative) into a backend error.
fn rbd_error(rc: i64, context: impl Into<String>) -> BackendError {
    let errno = rc
        .checked_neg()
        .and_then(|n| c_int::try_from(n).ok())
        .unwrap_or(libc::EIO);
    let context = context.into();
    let (kind, context) = match errno {
        ffi::EBLOCKLISTED => (
            ErrorKind::NotReady,
            format!("{context}: this client is blocklisted (another client took the image's lock)"),
        ),
        libc::ETIMEDOUT => (
            ErrorKind::NotReady,
            format!("{context}: timed out in the cluster"),
        ),
        libc::EROFS => (
            ErrorKind::ReadOnly,
            format!("{context}: image is read-only or its lock is held elsewhere"),
        ),
        _ => return BackendError::from_io(std::io::Error::from_raw_os_error(errno), context),
    };
    BackendError {
        kind,
        context,
        source: Some(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Whether a failed write means this client no longer owns the image's lock.
fn lock_lost(e: &BackendError) -> bool {
    matches!(
        e.source.as_ref().and_then(std::io::Error::raw_os_error),
        Some(ffi::EBLOCKLISTED) | Some(libc::EROFS)
    )
}

fn cstring(s: &str, what: &str) -> Result<CString, BackendError> {
    CString::new(s).map_err(|_| {
        BackendError::new(
            ErrorKind::Unsupported,
            format!("{what} {s:?} contains a NUL byte"),
        )
    })
}

fn path_cstring(p: &std::path::Path, what: &str) -> Result<CString, BackendError> {
    match p.to_str() {
        Some(s) => cstring(s, what),
        None => Err(BackendError::new(
            ErrorKind::Unsupported,
            format!("{what} {} is not UTF-8", p.display()),
        )),
    }
}

/// One operation in flight: owned by librbd from submission until [`on_complete`].
struct Op {
    buf: IoBuf,
    /// Where `rbd_aio_compare_and_write` puts the image offset of the first differing byte.
    mismatch: u64,
    tx: Option<oneshot::Sender<(isize, Box<Op>)>>,
    stats: Arc<RbdStats>,
}

/// librbd's completion callback (`rbd_callback_t`), run on a librbd thread.
///
/// # Safety
/// `arg` is the `Box<Op>` leaked by [`RbdBackend::run`] for this completion, delivered once.
unsafe extern "C" fn on_complete(c: RbdCompletionT, arg: *mut c_void) {
    // The library is loaded: a completion exists only after a successful load.
    let Ok(lib) = ffi::lib() else { return };
    // SAFETY: `c` is the completion librbd is completing; it is released exactly once here.
    let ret = unsafe { (lib.rbd_aio_get_return_value)(c) };
    // SAFETY: as above.
    unsafe { (lib.rbd_aio_release)(c) };
    // SAFETY: the caller's contract: `arg` is the leaked Box<Op>, reclaimed exactly once.
    let mut op = unsafe { Box::from_raw(arg.cast::<Op>()) };
    op.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
    if let Some(tx) = op.tx.take() {
        // A dropped receiver (timeout, aborted command) hands the block back here, and it is
        // freed now that librbd is done with its buffer.
        let _ = tx.send((ret, op));
    }
}

impl RbdBackend {
    /// Connects to the cluster and opens the image; unless `read_only`, takes its exclusive
    /// lock (failing to get it leaves the storage open but refusing writes).
    ///
    /// Blocks while librados connects (at most [`RBD_CONNECT_TIMEOUT_S`]).
    pub fn open(spec: &RbdSpec, read_only: bool) -> Result<Self, BackendError> {
        let lib = ffi::lib().map_err(|m| {
            BackendError::new(ErrorKind::Unsupported, format!("rbd image {spec}: {m}"))
        })?;
        let ctx = |what: &str| format!("rbd image {spec}: {what}");
        let stats = Arc::new(RbdStats::default());
        let mut h = Handles {
            lib,
            cluster: std::ptr::null_mut(),
            ioctx: std::ptr::null_mut(),
            image: std::ptr::null_mut(),
            locked: AtomicBool::new(false),
            stats: Arc::clone(&stats),
            size: AtomicU64::new(0),
            watch: Mutex::new(None),
        };
        let id = spec
            .client_id
            .as_deref()
            .map(|s| cstring(s, "clientId"))
            .transpose()?;
        // SAFETY: out-pointer to a local; id is a valid C string or null (meaning "admin").
        let rc = unsafe {
            (lib.rados_create)(
                &mut h.cluster,
                id.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("rados_create")));
        }
        let conf = spec
            .conf
            .as_deref()
            .map(|p| path_cstring(p, "cephConf"))
            .transpose()?;
        // SAFETY: cluster is a fresh handle; the path is a valid C string or null (search).
        let rc = unsafe {
            (lib.rados_conf_read_file)(
                h.cluster,
                conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("reading the Ceph configuration")));
        }
        let mut settings: Vec<(&str, String)> = vec![
            ("rbd_cache", "false".to_owned()),
            (
                "rbd_discard_granularity_bytes",
                DISCARD_GRANULARITY_BYTES.to_string(),
            ),
            ("client_mount_timeout", RBD_CONNECT_TIMEOUT_S.to_string()),
            // librados's own bound on an OSD op (0, forever, by default): an op the cluster
            // never answers is failed (ETIMEDOUT) inside librados just before our bound, so
            // it does not stay queued and block later writes to the same extent once the
            // cluster is back.
            (
                "rados_osd_op_timeout",
                RBD_OP_TIMEOUT.as_secs().saturating_sub(2).to_string(),
            ),
        ];
        if let Some(k) = &spec.keyring {
            settings.push((
                "keyring",
                k.to_str()
                    .ok_or_else(|| {
                        BackendError::new(ErrorKind::Unsupported, ctx("keyring path is not UTF-8"))
                    })?
                    .to_owned(),
            ));
        }
        for (k, v) in &settings {
            let (ck, cv) = (cstring(k, "option")?, cstring(v, k)?);
            // SAFETY: valid handle and C strings; librados copies them.
            let rc = unsafe { (lib.rados_conf_set)(h.cluster, ck.as_ptr(), cv.as_ptr()) };
            if rc < 0 {
                return Err(rbd_error(rc.into(), ctx(&format!("setting {k}"))));
            }
        }
        // SAFETY: configured handle, connected once.
        let rc = unsafe { (lib.rados_connect)(h.cluster) };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("connecting to the cluster")));
        }
        let pool = cstring(&spec.pool, "pool")?;
        // SAFETY: connected handle, valid pool name, out-pointer to the struct field.
        let rc = unsafe { (lib.rados_ioctx_create)(h.cluster, pool.as_ptr(), &mut h.ioctx) };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("opening the pool")));
        }
        if let Some(ns) = &spec.namespace {
            let ns = cstring(ns, "namespace")?;
            // SAFETY: valid ioctx; librados copies the name.
            unsafe { (lib.rados_ioctx_set_namespace)(h.ioctx, ns.as_ptr()) };
        }
        let name = cstring(&spec.image, "image")?;
        // SAFETY: valid ioctx and name; no snapshot (null); out-pointer to the field.
        let rc = unsafe { (lib.rbd_open)(h.ioctx, name.as_ptr(), &mut h.image, std::ptr::null()) };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("opening the image")));
        }
        let mut size = 0u64;
        // SAFETY: open image, out-pointer to a local.
        let rc = unsafe { (lib.rbd_get_size)(h.image, &mut size) };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("reading its size")));
        }
        let mut features = 0u64;
        // SAFETY: as above.
        let rc = unsafe { (lib.rbd_get_features)(h.image, &mut features) };
        if rc < 0 {
            return Err(rbd_error(rc.into(), ctx("reading its features")));
        }
        let lock_feature = features & ffi::RBD_FEATURE_EXCLUSIVE_LOCK != 0;
        h.size.store(size, Ordering::Release);
        let b = Self {
            h: Arc::new(h),
            spec: Arc::new(spec.clone()),
            read_only,
            lock_feature,
            next_lock_try: Arc::new(Mutex::new(Instant::now())),
        };
        b.watch_header()?;
        if !read_only {
            if lock_feature {
                match b.acquire_lock_blocking() {
                    Ok(()) => {
                        tracing::info!(image = %spec, librbd = lib.version(), "rbd image opened; exclusive lock owned")
                    }
                    Err(e) => {
                        tracing::warn!(image = %spec, error = %e, "rbd image opened without its exclusive lock: writes are refused until this gateway gets it")
                    }
                }
            } else {
                tracing::warn!(image = %spec, "rbd image has no exclusive-lock feature: nothing stops a second writer");
            }
        }
        Ok(b)
    }

    /// Registers librbd's header watch and starts the thread that reads the size when it
    /// fires. Without `rbd_update_watch` in the library the size stays the one read at open
    /// (logged).
    fn watch_header(&self) -> Result<(), BackendError> {
        let lib = self.h.lib;
        let (Some(watch), Some(_)) = (lib.rbd_update_watch, lib.rbd_update_unwatch) else {
            tracing::warn!(image = %self.spec, "librbd has no rbd_update_watch: a resize by another client is not noticed");
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let ctx = Box::into_raw(Box::new(WatchCtx { tx }));
        let mut handle = 0u64;
        // SAFETY: open image; the context stays alive until Handles::drop unregisters the
        // watch; the out-pointer is a local.
        let rc = unsafe { watch(self.h.image, &mut handle, on_header_update, ctx.cast()) };
        if rc < 0 {
            // SAFETY: not registered, so nothing else holds the context.
            drop(unsafe { Box::from_raw(ctx) });
            return Err(rbd_error(
                rc.into(),
                format!("rbd image {}: rbd_update_watch", self.spec),
            ));
        }
        *self
            .h
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Watch { handle, ctx });
        let weak = Arc::downgrade(&self.h);
        let spec = Arc::clone(&self.spec);
        std::thread::Builder::new()
            .name("rbd-size".into())
            .spawn(move || size_thread(&weak, &spec, &rx))
            .map_err(|e| {
                BackendError::from_io(e, format!("rbd image {}: size thread", self.spec))
            })?;
        Ok(())
    }

    fn acquire_lock_blocking(&self) -> Result<(), BackendError> {
        // SAFETY: open image handle.
        let rc =
            unsafe { (self.h.lib.rbd_lock_acquire)(self.h.image, ffi::RBD_LOCK_MODE_EXCLUSIVE) };
        if rc < 0 {
            return Err(rbd_error(
                rc.into(),
                format!("rbd image {}: rbd_lock_acquire", self.spec),
            ));
        }
        self.h.locked.store(true, Ordering::Release);
        self.h.stats.lock_owner.store(true, Ordering::Release);
        Ok(())
    }

    /// The image as `pool[/namespace]/image`.
    pub fn spec(&self) -> &RbdSpec {
        &self.spec
    }

    /// This storage's counters.
    pub fn stats(&self) -> &RbdStats {
        &self.h.stats
    }

    /// Size in bytes: read at open, raised when the image grows (see the module docs).
    pub fn size_bytes(&self) -> u64 {
        self.h.size.load(Ordering::Acquire)
    }

    /// True when opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether this gateway owns the image's exclusive lock now.
    pub fn lock_owner(&self) -> bool {
        self.h.stats.lock_owner.load(Ordering::Acquire)
    }

    /// Refuses writes on a read-only storage, and unless this gateway owns the exclusive lock
    /// (trying to take it at most every [`RBD_LOCK_RETRY_INTERVAL`]).
    async fn check_writable(&self, what: &str) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::new(
                ErrorKind::ReadOnly,
                format!("{what} on read-only rbd image {}", self.spec),
            ));
        }
        if !self.lock_feature || self.lock_owner() {
            return Ok(());
        }
        let due = {
            let mut next = self
                .next_lock_try
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if now >= *next {
                *next = now + RBD_LOCK_RETRY_INTERVAL;
                true
            } else {
                false
            }
        };
        if due {
            let me = self.clone();
            let task = tokio::task::spawn_blocking(move || me.acquire_lock_blocking());
            if let Ok(Ok(Ok(()))) = tokio::time::timeout(RBD_LOCK_ACQUIRE_TIMEOUT, task).await {
                tracing::info!(image = %self.spec, "exclusive lock acquired");
                return Ok(());
            }
        }
        self.h.stats.lock_refusals.fetch_add(1, Ordering::Relaxed);
        let e = BackendError::new(
            ErrorKind::NotReady,
            format!(
                "{what} refused: this gateway does not own the exclusive lock of rbd image {}",
                self.spec
            ),
        );
        self.h.stats.error(&e);
        Err(e)
    }

    /// A write-class failure that means the lock is gone: stop acknowledging writes.
    fn note_write_error(&self, e: &BackendError) {
        if lock_lost(e) && self.h.stats.lock_owner.swap(false, Ordering::AcqRel) {
            tracing::warn!(image = %self.spec, error = %e, "lost the exclusive lock: writes are refused");
        }
    }

    /// Hands one operation to librbd: the op block is leaked to the completion callback.
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        what: &str,
        buf: IoBuf,
        submit: impl FnOnce(&Lib, RbdImageT, &mut Op, RbdCompletionT) -> i64,
    ) -> Result<oneshot::Receiver<(isize, Box<Op>)>, (IoBuf, BackendError)> {
        let lib = self.h.lib;
        let (tx, rx) = oneshot::channel();
        let raw = Box::into_raw(Box::new(Op {
            buf,
            mismatch: 0,
            tx: Some(tx),
            stats: Arc::clone(&self.h.stats),
        }));
        let mut comp: RbdCompletionT = std::ptr::null_mut();
        // SAFETY: raw is a live leaked box; the out-pointer is a local.
        let rc = unsafe { (lib.rbd_aio_create_completion)(raw.cast(), on_complete, &mut comp) };
        if rc < 0 {
            // SAFETY: no completion exists, so nothing else holds `raw`.
            let op = unsafe { Box::from_raw(raw) };
            return Err((
                op.buf,
                rbd_error(rc.into(), format!("{what}: rbd_aio_create_completion")),
            ));
        }
        self.h.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        // SAFETY: raw stays valid until the callback reclaims it, which cannot happen before
        // it is submitted here.
        let rc = submit(lib, self.h.image, unsafe { &mut *raw }, comp);
        if rc < 0 {
            self.h.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            // SAFETY: the submission was refused, so librbd never calls the callback: the
            // completion and the block are still ours.
            unsafe { (lib.rbd_aio_release)(comp) };
            // SAFETY: as above.
            let op = unsafe { Box::from_raw(raw) };
            return Err((op.buf, rbd_error(rc, format!("{what} (submit)"))));
        }
        Ok(rx)
    }

    /// Submits one operation and waits for its completion (at most [`RBD_OP_TIMEOUT`]).
    ///
    /// `submit` gets the op (whose buffer stays where it is until the callback) and the
    /// completion, and returns librbd's immediate result. Returns the op back unless the wait
    /// timed out, and librbd's return value.
    async fn run(
        &self,
        class: OpClass,
        what: &str,
        buf: IoBuf,
        submit: impl FnOnce(&Lib, RbdImageT, &mut Op, RbdCompletionT) -> i64,
    ) -> (IoBuf, Result<isize, BackendError>) {
        let (buf, _, r) = self.run_full(class, what, buf, submit).await;
        (buf, r)
    }

    /// [`run`](Self::run), also returning the op's mismatch offset. For
    /// [`OpClass::CompareAndWrite`], `-EILSEQ` (miscompare) and `-EINVAL` (a range librbd
    /// does not take) are answers, returned as `Ok`, not errors.
    async fn run_full(
        &self,
        class: OpClass,
        what: &str,
        buf: IoBuf,
        submit: impl FnOnce(&Lib, RbdImageT, &mut Op, RbdCompletionT) -> i64,
    ) -> (IoBuf, u64, Result<isize, BackendError>) {
        let started = Instant::now();
        let rx = match self.submit(what, buf, submit) {
            Ok(rx) => rx,
            Err((buf, e)) => {
                self.h.stats.error(&e);
                return (buf, 0, Err(e));
            }
        };
        match tokio::time::timeout(RBD_OP_TIMEOUT, rx).await {
            Ok(Ok((ret, mut op))) => {
                self.h.stats.record(class, started);
                let buf = std::mem::take(&mut op.buf);
                let answer = class == OpClass::CompareAndWrite
                    && (ret == -(libc::EILSEQ as isize) || ret == -(libc::EINVAL as isize));
                if ret < 0 && !answer {
                    let e = rbd_error(i64::try_from(ret).unwrap_or(i64::MIN), what.to_owned());
                    self.h.stats.error(&e);
                    return (buf, op.mismatch, Err(e));
                }
                (buf, op.mismatch, Ok(ret))
            }
            Ok(Err(_)) => {
                let e = BackendError::new(ErrorKind::Io, format!("{what}: completion lost"));
                self.h.stats.error(&e);
                (IoBuf::empty(), 0, Err(e))
            }
            Err(_) => {
                self.h.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                let e = BackendError::new(
                    ErrorKind::NotReady,
                    format!(
                        "{what}: no answer from the cluster in {} s",
                        RBD_OP_TIMEOUT.as_secs()
                    ),
                );
                self.h.stats.error(&e);
                tracing::warn!(image = %self.spec, error = %e, "rbd operation timed out");
                (IoBuf::empty(), 0, Err(e))
            }
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        let len = buf.len();
        if let Err(e) = check_range(offset, len as u64, self.size_bytes(), "read") {
            return (buf, Err(e));
        }
        if len == 0 {
            return (buf, Ok(()));
        }
        let what = format!("read of {} at {offset} len {len}", self.spec);
        let (buf, r) = self
            .run(OpClass::Read, &what, buf, |lib, img, op, c| {
                let p = op.buf.as_mut_slice().as_mut_ptr().cast::<c_char>();
                // SAFETY: the buffer is owned by the op block until the callback; len bytes.
                i64::from(unsafe {
                    (lib.rbd_aio_read2)(img, offset, len, p, c, ffi::OP_FLAGS_NONE)
                })
            })
            .await;
        match r {
            Ok(n) if usize::try_from(n).ok() == Some(len) => (buf, Ok(())),
            Ok(n) => (
                buf,
                Err(BackendError::new(
                    ErrorKind::Io,
                    format!("{what}: short read of {n}"),
                )),
            ),
            Err(e) => (buf, Err(e)),
        }
    }

    /// Writes all of `buf` at `offset`.
    pub async fn write(&self, offset: u64, buf: IoBuf) -> BufResult {
        let len = buf.len();
        if let Err(e) = check_range(offset, len as u64, self.size_bytes(), "write") {
            return (buf, Err(e));
        }
        if let Err(e) = self.check_writable("write").await {
            return (buf, Err(e));
        }
        if len == 0 {
            return (buf, Ok(()));
        }
        let what = format!("write of {} at {offset} len {len}", self.spec);
        let (buf, r) = self
            .run(OpClass::Write, &what, buf, |lib, img, op, c| {
                let p = op.buf.as_slice().as_ptr().cast::<c_char>();
                // SAFETY: the buffer is owned by the op block until the callback; len bytes.
                i64::from(unsafe {
                    (lib.rbd_aio_write2)(img, offset, len, p, c, ffi::OP_FLAGS_NONE)
                })
            })
            .await;
        if let Err(e) = &r {
            self.note_write_error(e);
        }
        (buf, r.map(|_| ()))
    }

    /// `rbd_aio_flush`: every write acknowledged before it is durable.
    pub async fn flush(&self) -> Result<(), BackendError> {
        if self.read_only {
            return Ok(());
        }
        let what = format!("flush of {}", self.spec);
        let (_, r) = self
            .run(OpClass::Flush, &what, IoBuf::empty(), |lib, img, _, c| {
                // SAFETY: open image, fresh completion.
                i64::from(unsafe { (lib.rbd_aio_flush)(img, c) })
            })
            .await;
        r.map(|_| ())
    }

    /// Deallocates a range: `rbd_aio_discard` when it is aligned to the discard granularity,
    /// else `rbd_aio_write_zeroes` (which zeroes partial objects); it reads as zeroes after.
    pub async fn punch_hole(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        check_range(offset, len, self.size_bytes(), "unmap")?;
        self.check_writable("unmap").await?;
        if len == 0 {
            return Ok(());
        }
        if offset.is_multiple_of(DISCARD_GRANULARITY_BYTES)
            && len.is_multiple_of(DISCARD_GRANULARITY_BYTES)
        {
            let what = format!("discard of {} at {offset} len {len}", self.spec);
            let (_, r) = self
                .run(
                    OpClass::Deallocate,
                    &what,
                    IoBuf::empty(),
                    |lib, img, _, c| {
                        // SAFETY: open image, fresh completion.
                        i64::from(unsafe { (lib.rbd_aio_discard)(img, offset, len, c) })
                    },
                )
                .await;
            if let Err(e) = &r {
                self.note_write_error(e);
            }
            return r.map(|_| ());
        }
        self.zero(offset, len).await
    }

    /// Makes a range read as zeroes (`rbd_aio_write_zeroes`).
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        check_range(offset, len, self.size_bytes(), "write zeroes")?;
        self.check_writable("write zeroes").await?;
        if len == 0 {
            return Ok(());
        }
        self.zero(offset, len).await
    }

    async fn zero(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let what = format!("write zeroes of {} at {offset} len {len}", self.spec);
        let n = usize::try_from(len)
            .map_err(|_| BackendError::new(ErrorKind::OutOfRange, what.clone()))?;
        let (_, r) = self
            .run(
                OpClass::Deallocate,
                &what,
                IoBuf::empty(),
                |lib, img, _, c| {
                    // SAFETY: open image, fresh completion; no flags (plain zeroing).
                    i64::from(unsafe {
                        (lib.rbd_aio_write_zeroes)(img, offset, n, c, 0, ffi::OP_FLAGS_NONE)
                    })
                },
            )
            .await;
        if let Err(e) = &r {
            self.note_write_error(e);
        }
        r.map(|_| ())
    }

    /// WRITE SAME offload: `block` repeated over `[offset, offset + len)` in one
    /// `rbd_aio_writesame` (`len` a multiple of the block's length). `None` when the library
    /// has no `rbd_aio_writesame`: the caller writes the blocks itself.
    pub async fn write_same(
        &self,
        offset: u64,
        len: u64,
        block: IoBuf,
    ) -> Option<Result<(), BackendError>> {
        let writesame = self.h.lib.rbd_aio_writesame?;
        let data_len = block.len();
        if data_len == 0 || !len.is_multiple_of(data_len as u64) {
            return Some(Err(BackendError::new(
                ErrorKind::Unsupported,
                format!("write same of {len} bytes with a {data_len}-byte block"),
            )));
        }
        if let Err(e) = check_range(offset, len, self.size_bytes(), "write same") {
            return Some(Err(e));
        }
        if let Err(e) = self.check_writable("write same").await {
            return Some(Err(e));
        }
        let Ok(n) = usize::try_from(len) else {
            return None;
        };
        let what = format!("write same of {} at {offset} len {len}", self.spec);
        let (_, r) = self
            .run(OpClass::WriteSame, &what, block, |_, img, op, c| {
                let p = op.buf.as_slice().as_ptr().cast::<c_char>();
                // SAFETY: the block is owned by the op until the callback; data_len bytes.
                i64::from(unsafe { writesame(img, offset, n, p, data_len, c, ffi::OP_FLAGS_NONE) })
            })
            .await;
        if let Err(e) = &r {
            self.note_write_error(e);
        }
        Some(r.map(|_| ()))
    }

    /// COMPARE AND WRITE offload: `data` is the verify instance followed by the write
    /// instance, `len` bytes each. `Some(Ok(None))`: matched and written; `Some(Ok(Some(i)))`:
    /// byte `i` (from `offset`) is the first that differs, nothing written; `None`: librbd
    /// does not do this one (no function, or a range beyond one 512-byte sector, see the
    /// module docs), the caller compares and writes itself.
    pub async fn compare_and_write(
        &self,
        offset: u64,
        data: IoBuf,
    ) -> Option<Result<Option<u64>, BackendError>> {
        let caw = self.h.lib.rbd_aio_compare_and_write?;
        let n = data.len() / 2;
        if n == 0 || data.len() != 2 * n || !fits_one_sector(offset, n as u64) {
            return None;
        }
        if let Err(e) = check_range(offset, n as u64, self.size_bytes(), "compare and write") {
            return Some(Err(e));
        }
        if let Err(e) = self.check_writable("compare and write").await {
            return Some(Err(e));
        }
        let what = format!("compare and write of {} at {offset} len {n}", self.spec);
        let (_, mismatch, r) = self
            .run_full(OpClass::CompareAndWrite, &what, data, |_, img, op, c| {
                let cmp = op.buf.as_slice().as_ptr().cast::<c_char>();
                // SAFETY: `n` bytes further is the write instance, inside the same buffer.
                let new = unsafe { cmp.add(n) };
                // SAFETY: buffer and mismatch slot are owned by the op until the callback.
                i64::try_from(unsafe {
                    caw(
                        img,
                        offset,
                        n,
                        cmp,
                        new,
                        c,
                        &mut op.mismatch,
                        ffi::OP_FLAGS_NONE,
                    )
                })
                .unwrap_or(i64::MIN)
            })
            .await;
        match r {
            Ok(ret) if ret == -(libc::EILSEQ as isize) => {
                self.h.stats.miscompares.fetch_add(1, Ordering::Relaxed);
                let at = mismatch_from_start(mismatch, offset, n as u64);
                match at {
                    Some(i) => Some(Ok(Some(i))),
                    None => Some(Err(BackendError::new(
                        ErrorKind::Io,
                        format!(
                            "{what}: librbd reported a miscompare at {mismatch}, outside the range"
                        ),
                    ))),
                }
            }
            Ok(ret) if ret == -(libc::EINVAL as isize) => {
                tracing::debug!(image = %self.spec, offset, len = n, "librbd refused compare-and-write; the logical unit does it");
                None
            }
            Ok(_) => Some(Ok(None)),
            Err(e) => {
                self.note_write_error(&e);
                Some(Err(e))
            }
        }
    }

    /// The allocated extents of `[offset, offset + len)` from `rbd_diff_iterate2` (on the
    /// blocking pool: it is synchronous), the rest as deallocated.
    pub async fn allocation_status(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Extent>, BackendError> {
        check_range(offset, len, self.size_bytes(), "allocation status")?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || me.allocated_blocking(offset, len));
        let mapped = match tokio::time::timeout(RBD_OP_TIMEOUT, task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => return Err(BackendError::new(ErrorKind::Io, format!("diff task: {e}"))),
            Err(_) => {
                return Err(BackendError::new(
                    ErrorKind::NotReady,
                    format!("allocation status of {}: timed out", self.spec),
                ))
            }
        };
        Ok(cover(offset, len, &mapped))
    }

    fn allocated_blocking(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>, BackendError> {
        unsafe extern "C" fn cb(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: arg is the &mut Vec passed below, alive for the synchronous call.
            let v = unsafe { &mut *arg.cast::<Vec<(u64, u64)>>() };
            if exists != 0 {
                v.push((off, len as u64));
            }
            0
        }
        let mut v: Vec<(u64, u64)> = Vec::new();
        // SAFETY: open image; no snapshot (null); the callback only touches `v`, which outlives
        // the synchronous call.
        let rc = unsafe {
            (self.h.lib.rbd_diff_iterate2)(
                self.h.image,
                std::ptr::null(),
                offset,
                len,
                1,
                0,
                cb,
                (&mut v as *mut Vec<(u64, u64)>).cast(),
            )
        };
        if rc < 0 {
            return Err(rbd_error(
                rc.into(),
                format!("allocation status of {}", self.spec),
            ));
        }
        Ok(v)
    }
}

/// The offset of the first differing byte from the start of a one-sector compare-and-write
/// of `len` bytes at `offset`, from librbd's `mismatch_off`. What librbd puts there differs
/// by release: 16.2.15 gives the start of the RADOS object plus the offset in the request
/// (measured: 37 in object 0, 15 * 4 MiB + 485 for the last sector of a 64 MiB image),
/// later releases the image offset. Every form is a 512-byte-aligned base plus the byte's
/// place in the sector, because the request lies in one sector: the remainder by 512 is
/// the answer in all of them. `None` when it falls outside the request.
fn mismatch_from_start(mismatch: u64, offset: u64, len: u64) -> Option<u64> {
    (mismatch % 512)
        .checked_sub(offset % 512)
        .filter(|&i| i < len)
}

/// Whether `[offset, offset + len)` lies in one 512-byte sector: the only compare-and-write
/// librbd 16 takes (see the module docs).
fn fits_one_sector(offset: u64, len: u64) -> bool {
    len > 0 && offset % 512 + len <= 512
}

/// Reads the image's size each time the header watch fires, until the backend is gone:
/// a larger size is published, a smaller one refused and logged (see the module docs).
fn size_thread(h: &Weak<Handles>, spec: &RbdSpec, rx: &std::sync::mpsc::Receiver<()>) {
    let mut refused: Option<u64> = None;
    while rx.recv().is_ok() {
        let Some(h) = h.upgrade() else { return };
        let mut size = 0u64;
        // SAFETY: the image is open while `h` is alive (it closes in Handles::drop).
        let rc = unsafe { (h.lib.rbd_get_size)(h.image, &mut size) };
        if rc < 0 {
            let e = rbd_error(
                rc.into(),
                format!("rbd image {spec}: reading its size after a header change"),
            );
            tracing::warn!(image = %spec, error = %e, "rbd size unknown after a header change");
            continue;
        }
        let old = h.size.load(Ordering::Acquire);
        if size > old {
            h.size.store(size, Ordering::Release);
            h.stats.grows.fetch_add(1, Ordering::Relaxed);
            refused = None;
            tracing::info!(image = %spec, from = old, to = size, "rbd image grown: capacity raised");
        } else if size < old && refused != Some(size) {
            refused = Some(size);
            h.stats.shrinks_refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                image = %spec,
                from = old,
                to = size,
                "rbd image shrunk by another client: the capacity stays {old} bytes, and I/O to the \
                 bytes beyond {size} fails; grow the image back (data there is lost) or remove \
                 the LUN before shrinking"
            );
        }
    }
}

/// Turns allocated runs (any order, possibly overlapping or reaching outside) into ordered
/// extents covering exactly `[offset, offset + len)` without gaps.
fn cover(offset: u64, len: u64, mapped: &[(u64, u64)]) -> Vec<Extent> {
    let end = offset + len;
    let mut runs: Vec<(u64, u64)> = mapped
        .iter()
        .map(|&(o, l)| (o.max(offset), o.saturating_add(l).min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    runs.sort_unstable();
    let mut out: Vec<Extent> = Vec::new();
    let mut at = offset;
    for (a, b) in runs {
        if b <= at {
            continue;
        }
        let a = a.max(at);
        if a > at {
            out.push(Extent {
                offset: at,
                len: a - at,
                mapped: false,
            });
        }
        match out.last_mut() {
            Some(last) if last.mapped && last.offset + last.len == a => last.len += b - a,
            _ => out.push(Extent {
                offset: a,
                len: b - a,
                mapped: true,
            }),
        }
        at = b;
    }
    if at < end {
        out.push(Extent {
            offset: at,
            len: end - at,
            mapped: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_fills_gaps_merges_and_clips() {
        let e = cover(100, 100, &[(150, 10), (90, 20), (155, 20), (300, 5)]);
        let want = [
            Extent {
                offset: 100,
                len: 10,
                mapped: true,
            },
            Extent {
                offset: 110,
                len: 40,
                mapped: false,
            },
            Extent {
                offset: 150,
                len: 25,
                mapped: true,
            },
            Extent {
                offset: 175,
                len: 25,
                mapped: false,
            },
        ];
        assert_eq!(e, want);
        assert_eq!(
            cover(0, 8, &[]),
            [Extent {
                offset: 0,
                len: 8,
                mapped: false
            }]
        );
    }

    #[test]
    fn errno_mapping_names_the_ceph_conditions() {
        assert_eq!(
            rbd_error(-i64::from(ffi::EBLOCKLISTED), "w").kind,
            ErrorKind::NotReady
        );
        assert_eq!(
            rbd_error(-i64::from(libc::ETIMEDOUT), "w").kind,
            ErrorKind::NotReady
        );
        assert_eq!(
            rbd_error(-i64::from(libc::EROFS), "w").kind,
            ErrorKind::ReadOnly
        );
        assert_eq!(
            rbd_error(-i64::from(libc::ENOSPC), "w").kind,
            ErrorKind::NoSpace
        );
        assert_eq!(rbd_error(-i64::from(libc::EIO), "w").kind, ErrorKind::Io);
        assert_eq!(rbd_error(i64::MIN, "w").kind, ErrorKind::Io);
        assert!(lock_lost(&rbd_error(-i64::from(ffi::EBLOCKLISTED), "w")));
        assert!(lock_lost(&rbd_error(-i64::from(libc::EROFS), "w")));
        assert!(!lock_lost(&rbd_error(-i64::from(libc::ETIMEDOUT), "w")));
        assert!(!lock_lost(&BackendError::new(
            ErrorKind::NotReady,
            "timeout"
        )));
    }

    #[test]
    fn latency_buckets_are_ascending() {
        assert!(LATENCY_BUCKETS_US.windows(2).all(|w| w[0] < w[1]));
        let s = RbdStats::default();
        s.record(OpClass::Read, Instant::now());
        assert_eq!(s.ops[0].load(Ordering::Relaxed), 1);
        assert_eq!(
            s.latency
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
    }

    #[test]
    fn compare_and_write_offload_fits_one_sector_and_reads_both_mismatch_forms() {
        assert!(fits_one_sector(1024, 512));
        assert!(fits_one_sector(1030, 10));
        assert!(!fits_one_sector(1024, 1024));
        assert!(!fits_one_sector(1000, 512));
        assert!(!fits_one_sector(0, 0));
        // librbd 16's object-start-plus-offset and later releases' image offset of the
        // same byte, in object 0 and in object 15.
        assert_eq!(mismatch_from_start(37, 1_024_000, 512), Some(37));
        assert_eq!(mismatch_from_start(1_024_037, 1_024_000, 512), Some(37));
        let last = (64 << 20) - 512;
        assert_eq!(
            mismatch_from_start(15 * (4 << 20) + 485, last, 512),
            Some(485)
        );
        assert_eq!(mismatch_from_start(last + 485, last, 512), Some(485));
        // A request smaller than a sector, not at its start.
        assert_eq!(
            mismatch_from_start(1_024_000 + 300, 1_024_000 + 256, 128),
            Some(44)
        );
        assert_eq!(
            mismatch_from_start(1_024_000 + 100, 1_024_000 + 256, 128),
            None
        );
        assert_eq!(
            mismatch_from_start(1_024_000 + 400, 1_024_000 + 256, 128),
            None
        );
    }

    #[test]
    fn spec_displays_with_and_without_namespace() {
        let mut s = RbdSpec {
            pool: "p".into(),
            namespace: None,
            image: "i".into(),
            conf: None,
            client_id: None,
            keyring: None,
        };
        assert_eq!(s.to_string(), "p/i");
        s.namespace = Some("n".into());
        assert_eq!(s.to_string(), "p/n/i");
    }
}
