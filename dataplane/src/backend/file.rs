//! File and block-device backend.
//!
//! Reads and writes first try `preadv2`/`pwritev2` with `RWF_NOWAIT`, which the kernel
//! completes only when no waiting is needed (data in the page cache, no writeback
//! throttling) and otherwise refuses with `EAGAIN`: a page-cache hit is served inline, with
//! no thread hand-off. Everything that may block runs on `tokio::task::spawn_blocking` and
//! never on a network thread. Reads and writes use `pread`/`pwrite` (through
//! `std::os::unix::fs::FileExt`, which loops over short transfers); hole punching and zeroing
//! use `fallocate(2)`; the allocation map uses `lseek(2)` with `SEEK_DATA`/`SEEK_HOLE`.

use super::{check_range, BackendError, BufResult, ErrorKind, Extent};
use crate::buf::IoBuf;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// `BLKGETSIZE64` = `_IOR(0x12, 114, u64)`: the size of a block device in bytes.
/// The encoding is identical on x86_64 and aarch64, the two targets we build for.
const BLKGETSIZE64: u64 = 0x8008_1272;

/// Largest zero buffer written at once when `fallocate(ZERO_RANGE)` is unavailable.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Whether `RWF_NOWAIT` is worth trying on one file, per direction; cleared for good once
/// the kernel or file system says it does not support it (`EOPNOTSUPP`/`EINVAL`), so we stop
/// paying a failed syscall (ext4 refuses it for buffered writes, XFS does not).
#[derive(Debug, Default)]
struct NowaitSupport {
    read_off: AtomicBool,
    write_off: AtomicBool,
}

enum Nowait {
    /// The whole transfer completed.
    Done,
    /// It would block after `n` bytes (possibly 0); finish the rest on the blocking pool.
    WouldBlock(usize),
    /// A real error.
    Failed(std::io::Error),
}

/// One non-blocking attempt at a positioned read or write of all of `buf`.
fn try_nowait(
    file: &File,
    support: &NowaitSupport,
    buf: *mut u8,
    len: usize,
    offset: u64,
    write: bool,
) -> Nowait {
    let off_flag = if write {
        &support.write_off
    } else {
        &support.read_off
    };
    if off_flag.load(Ordering::Relaxed) {
        return Nowait::WouldBlock(0);
    }
    let mut done = 0usize;
    while done < len {
        let Ok(off) = libc::off_t::try_from(offset + done as u64) else {
            return Nowait::WouldBlock(done);
        };
        let iov = libc::iovec {
            // SAFETY (pointer arithmetic): done < len, so the pointer stays inside the buffer.
            iov_base: buf.wrapping_add(done).cast(),
            iov_len: len - done,
        };
        // SAFETY: `iov` describes `len - done` bytes inside the caller's live buffer (borrowed
        // mutably for a read, shared for a write, for the whole call); the fd is open.
        let n = unsafe {
            if write {
                libc::pwritev2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT)
            } else {
                libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT)
            }
        };
        match n {
            n if n > 0 => done += usize::try_from(n).unwrap_or(0),
            0 => {
                return Nowait::Failed(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            _ => {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Nowait::WouldBlock(done),
                    Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                        off_flag.store(true, Ordering::Relaxed);
                        Nowait::WouldBlock(done)
                    }
                    Some(libc::EINTR) => continue,
                    _ => Nowait::Failed(e),
                };
            }
        }
    }
    Nowait::Done
}

/// One write waiting for the blocking pool.
struct WriteJob {
    offset: u64,
    /// Bytes before this were already written by the non-blocking attempt.
    start: usize,
    buf: IoBuf,
    done: tokio::sync::oneshot::Sender<BufResult>,
}

/// Writes the blocking pool still has to do for one file.
///
/// Handing every write to the blocking pool on its own costs a thread wake-up and a context
/// switch per I/O, which profiles showed to be most of a 4 KiB write's CPU. Writes queue
/// here instead, and at most one pool thread per file drains the queue: a burst of writes
/// from one socket read costs one wake-up. Writes of one file go to the kernel one after
/// another, which costs nothing extra for page-cache writes (the kernel serialises them on
/// the inode lock anyway).
#[derive(Default)]
struct WriteQueue {
    /// Pending jobs and whether a drainer is running, under one lock so a job is never left
    /// behind by a drainer that is just finishing.
    inner: std::sync::Mutex<(std::collections::VecDeque<WriteJob>, bool)>,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteQueue")
    }
}

impl WriteQueue {
    /// Queues a job; true when the caller must start a drainer.
    fn push(&self, job: WriteJob) -> bool {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0.push_back(job);
        if g.1 {
            false
        } else {
            g.1 = true;
            true
        }
    }

    /// Runs on the blocking pool: writes every queued job, answering each as it completes.
    fn drain(&self, file: &File) {
        loop {
            let batch: Vec<WriteJob> = {
                let mut g = self
                    .inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if g.0.is_empty() {
                    g.1 = false;
                    return;
                }
                g.0.drain(..).collect()
            };
            for job in batch {
                let offset = job.offset;
                // write_all_at loops over short writes; a zero-length write is an error.
                let r = file
                    .write_all_at(&job.buf[job.start..], offset + job.start as u64)
                    .map_err(|e| BackendError::from_io(e, format!("write at {offset}")));
                // The requester may have gone (connection closed): nothing to answer then.
                let _ = job.done.send((job.buf, r));
            }
        }
    }
}

/// A plain file or a block device opened for pread/pwrite.
#[derive(Debug, Clone)]
pub struct FileBackend {
    file: Arc<File>,
    path: Arc<Path>,
    /// Shared by every clone (the io_uring backend keeps one), so a grow is seen by all.
    size_bytes: Arc<AtomicU64>,
    read_only: bool,
    nowait: Arc<NowaitSupport>,
    writes: Arc<WriteQueue>,
}

/// The size in bytes of an open regular file or block device.
fn device_size(file: &File, meta: &std::fs::Metadata, path: &Path) -> Result<u64, BackendError> {
    let ctx = || path.display().to_string();
    if meta.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes exactly one u64 through the pointer, which points
        // to a live, aligned local; the fd is open for the duration of the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
        if rc != 0 {
            return Err(BackendError::from_io(
                std::io::Error::last_os_error(),
                format!("BLKGETSIZE64 {}", ctx()),
            ));
        }
        Ok(size)
    } else if meta.file_type().is_file() {
        Ok(meta.len())
    } else {
        Err(BackendError::new(
            ErrorKind::Unsupported,
            format!("{} is neither a regular file nor a block device", ctx()),
        ))
    }
}

fn to_off(v: u64, what: &str) -> Result<libc::off_t, BackendError> {
    libc::off_t::try_from(v)
        .map_err(|_| BackendError::new(ErrorKind::OutOfRange, format!("{what} {v} exceeds off_t")))
}

async fn blocking<T, F>(f: F) -> Result<T, BackendError>
where
    F: FnOnce() -> Result<T, BackendError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(BackendError::new(
            ErrorKind::Io,
            format!("blocking task failed: {e}"),
        )),
    }
}

impl FileBackend {
    /// Opens `path`. A missing path is created as a sparse file of `create_size` bytes when
    /// given (and the LU is writable); otherwise it is a `NotReady` error naming the path.
    pub fn open(
        path: &Path,
        read_only: bool,
        create_size: Option<u64>,
    ) -> Result<Self, BackendError> {
        let ctx = || path.display().to_string();
        if !path.exists() {
            match create_size {
                Some(size) if !read_only => {
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                        .map_err(|e| BackendError::from_io(e, format!("create {}", ctx())))?;
                    // set_len on a new file only writes metadata: the file stays sparse.
                    f.set_len(size)
                        .map_err(|e| BackendError::from_io(e, format!("size {}", ctx())))?;
                }
                Some(_) => {
                    return Err(BackendError::new(
                        ErrorKind::NotReady,
                        format!(
                            "{} does not exist and a read-only lu cannot create it",
                            ctx()
                        ),
                    ))
                }
                None => {
                    return Err(BackendError::new(
                        ErrorKind::NotReady,
                        format!("{} does not exist and no create size is configured", ctx()),
                    ))
                }
            }
        }
        // Buffered I/O on purpose (no O_DIRECT): the page cache absorbs unaligned initiator
        // I/O, and durability comes from fdatasync on SYNCHRONIZE CACHE, FUA and WCE=0.
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| BackendError::from_io(e, format!("open {}", ctx())))?;
        let meta = file
            .metadata()
            .map_err(|e| BackendError::from_io(e, format!("stat {}", ctx())))?;
        let size_bytes = device_size(&file, &meta, path)?;
        Ok(Self {
            file: Arc::new(file),
            path: Arc::from(path),
            size_bytes: Arc::new(AtomicU64::new(size_bytes)),
            read_only,
            nowait: Arc::default(),
            writes: Arc::default(),
        })
    }

    /// Path this backend was opened from.
    pub fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Size in bytes: what open found, or the last [`grow_to`](Self::grow_to).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    /// Grows the device to `new_size` bytes, never shrinking it: a regular file is extended
    /// (sparse, so nothing is written), a block device must already have been grown
    /// underneath (its size is read again). Blocking: call it off the network threads.
    ///
    /// The new size is published after the file has it, so a reader that sees it can use
    /// every byte below it.
    pub fn grow_to(&self, new_size: u64) -> Result<(), BackendError> {
        let ctx = || self.path.display().to_string();
        let current = self.size_bytes();
        if new_size < current {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                format!(
                    "{} is {current} bytes: shrinking it to {new_size} would lose data",
                    ctx()
                ),
            ));
        }
        let meta = self
            .file
            .metadata()
            .map_err(|e| BackendError::from_io(e, format!("stat {}", ctx())))?;
        if meta.file_type().is_file() {
            if meta.len() < new_size {
                self.check_writable("grow")?;
                self.file
                    .set_len(new_size)
                    .map_err(|e| BackendError::from_io(e, format!("grow {}", ctx())))?;
            }
        } else {
            let have = device_size(&self.file, &meta, &self.path)?;
            if have < new_size {
                return Err(BackendError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "block device {} is {have} bytes, below {new_size}: grow the device first",
                        ctx()
                    ),
                ));
            }
        }
        self.size_bytes.store(new_size, Ordering::Release);
        Ok(())
    }

    /// True when opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn check_writable(&self, what: &str) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::new(
                ErrorKind::ReadOnly,
                format!("{what} on read-only backend"),
            ));
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub async fn read(&self, offset: u64, mut buf: IoBuf) -> BufResult {
        if let Err(e) = check_range(offset, buf.len() as u64, self.size_bytes(), "read") {
            return (buf, Err(e));
        }
        let len = buf.len();
        let start = match try_nowait(
            &self.file,
            &self.nowait,
            buf.as_mut_ptr(),
            len,
            offset,
            false,
        ) {
            Nowait::Done => return (buf, Ok(())),
            Nowait::WouldBlock(n) => n,
            Nowait::Failed(e) => {
                return (
                    buf,
                    Err(BackendError::from_io(e, format!("read at {offset}"))),
                )
            }
        };
        let file = Arc::clone(&self.file);
        let (tx_buf, res) = match tokio::task::spawn_blocking(move || {
            let mut buf = buf;
            // read_exact_at loops over short reads and reports EOF as an error.
            let r = file
                .read_exact_at(&mut buf[start..], offset + start as u64)
                .map_err(|e| BackendError::from_io(e, format!("read at {offset}")));
            (buf, r)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => (
                IoBuf::empty(),
                Err(BackendError::new(
                    ErrorKind::Io,
                    format!("read task failed: {e}"),
                )),
            ),
        };
        (tx_buf, res)
    }

    /// Writes all of `buf` at `offset`.
    pub async fn write(&self, offset: u64, buf: IoBuf) -> BufResult {
        if let Err(e) = self.check_writable("write") {
            return (buf, Err(e));
        }
        if let Err(e) = check_range(offset, buf.len() as u64, self.size_bytes(), "write") {
            return (buf, Err(e));
        }
        let len = buf.len();
        // pwritev2 only reads from the buffer; the cast to *mut is for the shared helper.
        let start = match try_nowait(
            &self.file,
            &self.nowait,
            buf.as_ptr().cast_mut(),
            len,
            offset,
            true,
        ) {
            Nowait::Done => return (buf, Ok(())),
            Nowait::WouldBlock(n) => n,
            Nowait::Failed(e) => {
                return (
                    buf,
                    Err(BackendError::from_io(e, format!("write at {offset}"))),
                )
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            offset,
            start,
            buf,
            done,
        };
        if self.writes.push(job) {
            let file = Arc::clone(&self.file);
            let queue = Arc::clone(&self.writes);
            // Dropping the JoinHandle detaches the drainer; it ends when the queue is empty.
            drop(tokio::task::spawn_blocking(move || queue.drain(&file)));
        }
        match result.await {
            Ok(v) => v,
            Err(_) => (
                IoBuf::empty(),
                Err(BackendError::new(
                    ErrorKind::Io,
                    "write task ended without an answer".to_string(),
                )),
            ),
        }
    }

    /// fdatasync.
    pub async fn flush(&self) -> Result<(), BackendError> {
        if self.read_only {
            return Ok(());
        }
        let file = Arc::clone(&self.file);
        blocking(move || {
            file.sync_data()
                .map_err(|e| BackendError::from_io(e, "fdatasync"))
        })
        .await
    }

    fn fallocate(
        file: &File,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> Result<(), BackendError> {
        let off = to_off(offset, "offset")?;
        let l = to_off(len, "length")?;
        // SAFETY: fallocate only reads its integer arguments; the fd is owned by `file`,
        // which outlives the call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, l) };
        if rc != 0 {
            return Err(BackendError::from_io(
                std::io::Error::last_os_error(),
                format!("fallocate mode {mode:#x} at {offset} len {len}"),
            ));
        }
        Ok(())
    }

    /// fallocate(PUNCH_HOLE | KEEP_SIZE): the range reads as zeroes afterwards.
    pub async fn punch_hole(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        // File systems without hole punching still give the zeroes SCSI promised.
        self.zero_range(
            "punch hole",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            false,
            offset,
            len,
        )
        .await
    }

    /// fallocate(ZERO_RANGE | KEEP_SIZE), falling back to writing zeroes.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.zero_range(
            "write zeroes",
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            true,
            offset,
            len,
        )
        .await
    }

    /// fallocate `mode` over the range, writing zeroes where the file system does not
    /// support it (or, with `fallback_on_einval`, rejects the mode with EINVAL).
    async fn zero_range(
        &self,
        what: &'static str,
        mode: libc::c_int,
        fallback_on_einval: bool,
        offset: u64,
        len: u64,
    ) -> Result<(), BackendError> {
        self.check_writable(what)?;
        check_range(offset, len, self.size_bytes(), what)?;
        if len == 0 {
            return Ok(());
        }
        let file = Arc::clone(&self.file);
        blocking(move || match Self::fallocate(&file, mode, offset, len) {
            Err(e)
                if e.kind == ErrorKind::Unsupported
                    || (fallback_on_einval
                        && e.source.as_ref().and_then(|s| s.raw_os_error())
                            == Some(libc::EINVAL)) =>
            {
                write_zero_chunks(&file, offset, len)
            }
            r => r,
        })
        .await
    }

    /// SEEK_DATA/SEEK_HOLE walk of `[offset, offset + len)`.
    pub async fn allocation_status(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Extent>, BackendError> {
        check_range(offset, len, self.size_bytes(), "allocation status")?;
        let file = Arc::clone(&self.file);
        blocking(move || seek_map(&file, offset, len)).await
    }
}

fn write_zero_chunks(file: &File, offset: u64, len: u64) -> Result<(), BackendError> {
    let chunk = usize::try_from(len).map_or(ZERO_CHUNK_BYTES, |l| l.min(ZERO_CHUNK_BYTES));
    let zeroes = vec![0u8; chunk];
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let n = usize::try_from(end - pos).map_or(chunk, |r| r.min(chunk));
        file.write_all_at(&zeroes[..n], pos)
            .map_err(|e| BackendError::from_io(e, format!("write zeroes at {pos}")))?;
        pos += n as u64;
    }
    Ok(())
}

fn lseek(file: &File, pos: u64, whence: libc::c_int) -> Result<Option<u64>, std::io::Error> {
    let off =
        libc::off_t::try_from(pos).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek only reads integer arguments; the fd is owned by `file` for the call.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(u64::try_from(r).ok())
}

fn push_extent(out: &mut Vec<Extent>, offset: u64, len: u64, mapped: bool) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.mapped == mapped && last.offset + last.len == offset {
            last.len += len;
            return;
        }
    }
    out.push(Extent {
        offset,
        len,
        mapped,
    });
}

fn seek_map(file: &File, offset: u64, len: u64) -> Result<Vec<Extent>, BackendError> {
    let end = offset + len;
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < end {
        let data = match lseek(file, pos, libc::SEEK_DATA) {
            Ok(Some(d)) => d,
            // ENXIO: no data at or after pos, the rest is a hole.
            Ok(None) => {
                push_extent(&mut out, pos, end - pos, false);
                break;
            }
            // Block devices and some file systems cannot report holes: everything is mapped.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
                ) =>
            {
                push_extent(&mut out, pos, end - pos, true);
                break;
            }
            Err(e) => return Err(BackendError::from_io(e, format!("SEEK_DATA at {pos}"))),
        };
        if data > pos {
            let h = data.min(end);
            push_extent(&mut out, pos, h - pos, false);
            pos = h;
            continue;
        }
        let hole = match lseek(file, pos, libc::SEEK_HOLE) {
            Ok(Some(h)) => h,
            Ok(None) => end,
            Err(e) => return Err(BackendError::from_io(e, format!("SEEK_HOLE at {pos}"))),
        };
        let h = hole.clamp(pos + 1, end);
        push_extent(&mut out, pos, h - pos, true);
        pos = h;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let mut p = std::env::temp_dir();
        p.push(format!("tgt-filebackend-{}-{}", std::process::id(), name));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[tokio::test]
    async fn missing_file_without_size_is_a_clear_error() {
        let p = temp_path("missing");
        let e = FileBackend::open(&p, false, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotReady);
        assert!(e.to_string().contains("does not exist"));
    }

    #[tokio::test]
    async fn creates_sparse_file_and_round_trips_data() {
        let p = temp_path("rt");
        let b = FileBackend::open(&p, false, Some(1 << 20)).unwrap();
        assert_eq!(b.size_bytes(), 1 << 20);
        let (_, r) = b.write(4096, vec![7u8; 8192].into()).await;
        r.unwrap();
        let (buf, r) = b.read(4096, vec![0u8; 8192].into()).await;
        r.unwrap();
        assert!(buf.iter().all(|&x| x == 7));
        let (_, r) = b.read((1 << 20) - 10, vec![0u8; 20].into()).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::OutOfRange);
        b.flush().await.unwrap();
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn punch_hole_reads_zero_and_shows_deallocated() {
        let p = temp_path("punch");
        let b = FileBackend::open(&p, false, Some(1 << 20)).unwrap();
        let (_, r) = b.write(0, vec![0xAB; 1 << 20].into()).await;
        r.unwrap();
        b.flush().await.unwrap();
        b.punch_hole(65536, 65536).await.unwrap();
        let (buf, r) = b.read(65536, vec![1u8; 65536].into()).await;
        r.unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        let map = b.allocation_status(0, 1 << 20).await.unwrap();
        // Some file systems (tmpfs on old kernels) report everything as data; only check
        // the hole when the file system reports holes at all.
        if map.iter().any(|e| !e.mapped) {
            assert!(map
                .iter()
                .any(|e| !e.mapped && e.offset <= 65536 && e.offset + e.len >= 131072));
        }
        let total: u64 = map.iter().map(|e| e.len).sum();
        assert_eq!(total, 1 << 20);
        b.write_zeroes(0, 4096).await.unwrap();
        let (buf, r) = b.read(0, vec![1u8; 4096].into()).await;
        r.unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let p = temp_path("ro");
        drop(FileBackend::open(&p, false, Some(4096)).unwrap());
        let b = FileBackend::open(&p, true, None).unwrap();
        let (_, r) = b.write(0, vec![0u8; 512].into()).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::ReadOnly);
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn grows_in_place_for_every_clone_and_refuses_to_shrink() {
        let p = temp_path("grow");
        let b = FileBackend::open(&p, false, Some(1 << 20)).unwrap();
        let twin = b.clone();
        let (_, r) = b.write(0, vec![5u8; 4096].into()).await;
        r.unwrap();
        b.grow_to(3 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
        assert_eq!(twin.size_bytes(), 3 << 20, "a clone sees the new size");
        let (_, r) = twin.write((3 << 20) - 4096, vec![9u8; 4096].into()).await;
        r.unwrap();
        let (buf, r) = b.read(0, vec![0u8; 4096].into()).await;
        r.unwrap();
        assert!(buf.iter().all(|&x| x == 5), "data below the old end kept");
        let e = b.grow_to(2 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.to_string().contains("would lose data"), "{e}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20, "not shrunk");
        b.grow_to(3 << 20).unwrap();
        let ro = FileBackend::open(&p, true, None).unwrap();
        assert_eq!(ro.grow_to(4 << 20).unwrap_err().kind, ErrorKind::ReadOnly);
        let _ = std::fs::remove_file(&p);
    }
}
