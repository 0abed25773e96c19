//! Block backends: byte-addressed storage that knows nothing about SCSI.
//!
//! A backend stores `size_bytes()` bytes and offers read, write, flush, hole punching,
//! zeroing and an allocation map (for GET LBA STATUS, SBC-3 5.6, computed one layer up).
//! Dispatch is a closed enum rather than a trait object so the hot path has no dynamic
//! calls and no boxing, and adding a backend is a compile error everywhere it matters.
//!
//! Every I/O call takes an owned buffer and hands it back with the result: the buffer
//! belongs to the in-flight operation until it completes, which is what an io_uring
//! engine needs and what `spawn_blocking` needs today.

pub mod fault;
pub mod file;
pub mod memory;
pub mod uring;

pub use fault::{FaultBackend, FaultEffect, FaultOp, FaultRule};
pub use file::FileBackend;
pub use memory::MemoryBackend;
pub use uring::{UringBackend, UringOpenError, UringOptions};

pub use crate::buf::IoBuf;

use std::fmt;

/// Stable classification of a backend failure; `scsi::sense` maps it to sense data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The medium failed (EIO, short transfer that could not be completed).
    Io,
    /// The request reaches beyond the end of the device.
    OutOfRange,
    /// The backing store ran out of space (ENOSPC, EDQUOT).
    NoSpace,
    /// The device or file is read-only.
    ReadOnly,
    /// The device is not usable right now (missing, offline).
    NotReady,
    /// The operation is not supported by this backend or file system.
    Unsupported,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Io => "i/o error",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::NoSpace => "no space",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::NotReady => "not ready",
            ErrorKind::Unsupported => "unsupported",
        };
        f.write_str(s)
    }
}

/// The one error type of the backend boundary.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {context}")]
pub struct BackendError {
    /// What kind of failure this is; the only thing callers branch on.
    pub kind: ErrorKind,
    /// Human-readable context (operation, offset, path).
    pub context: String,
    /// The OS error, when there was one.
    #[source]
    pub source: Option<std::io::Error>,
}

impl BackendError {
    /// Builds an error without an OS source.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// Classifies an OS error by errno.
    pub fn from_io(err: std::io::Error, context: impl Into<String>) -> Self {
        let kind = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::ReadOnly,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => ErrorKind::Unsupported,
            Some(libc::ENXIO) | Some(libc::ENOMEDIUM) | Some(libc::ENODEV) | Some(libc::ENOENT) => {
                ErrorKind::NotReady
            }
            _ => ErrorKind::Io,
        };
        Self {
            kind,
            context: context.into(),
            source: Some(err),
        }
    }
}

/// One run of bytes with a single allocation state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First byte of the run.
    pub offset: u64,
    /// Length of the run in bytes.
    pub len: u64,
    /// True when the bytes are backed by storage; false for a hole (reads as zeroes).
    pub mapped: bool,
}

/// Result of an I/O that carries its buffer back to the caller.
pub type BufResult = (IoBuf, Result<(), BackendError>);

/// A block device implementation, dispatched statically.
#[derive(Debug)]
pub enum Backend {
    /// A regular file or a block device.
    File(FileBackend),
    /// RAM, for tests.
    Memory(MemoryBackend),
    /// Another backend with injected faults, for tests.
    Fault(FaultBackend),
    /// A regular file or a block device driven through io_uring.
    Uring(UringBackend),
}

/// Checks that `[offset, offset + len)` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64, what: &str) -> Result<(), BackendError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BackendError::new(
            ErrorKind::OutOfRange,
            format!("{what} at {offset} len {len} beyond size {size}"),
        )),
    }
}

impl Backend {
    /// Size of the device in bytes: what open found, or the last [`grow_to`](Self::grow_to).
    pub fn size_bytes(&self) -> u64 {
        match self {
            Backend::File(b) => b.size_bytes(),
            Backend::Memory(b) => b.size_bytes(),
            Backend::Fault(b) => b.size_bytes(),
            Backend::Uring(b) => b.size_bytes(),
        }
    }

    /// Grows the device to `new_size` bytes without touching the data below the old end;
    /// a smaller `new_size` is refused (`Unsupported`), an equal one changes nothing.
    /// Blocking (a file is extended with `ftruncate`): call it off the network threads.
    /// The new size is visible to [`size_bytes`](Self::size_bytes) only once every byte
    /// below it can be read and written.
    pub fn grow_to(&self, new_size: u64) -> Result<(), BackendError> {
        match self {
            Backend::File(b) => b.grow_to(new_size),
            Backend::Memory(b) => b.grow_to(new_size),
            Backend::Fault(b) => b.grow_to(new_size),
            Backend::Uring(b) => b.grow_to(new_size),
        }
    }

    /// True when the backend refuses writes.
    pub fn read_only(&self) -> bool {
        match self {
            Backend::File(b) => b.read_only(),
            Backend::Memory(b) => b.read_only(),
            Backend::Fault(b) => b.read_only(),
            Backend::Uring(b) => b.read_only(),
        }
    }

    /// Fills all of `buf` from `offset`.
    pub async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        match self {
            Backend::File(b) => b.read(offset, buf).await,
            Backend::Memory(b) => b.read(offset, buf),
            Backend::Fault(b) => b.read(offset, buf).await,
            Backend::Uring(b) => b.read(offset, buf).await,
        }
    }

    /// Writes all of `buf` at `offset`.
    pub async fn write(&self, offset: u64, buf: IoBuf) -> BufResult {
        match self {
            Backend::File(b) => b.write(offset, buf).await,
            Backend::Memory(b) => b.write(offset, buf),
            Backend::Fault(b) => b.write(offset, buf).await,
            Backend::Uring(b) => b.write(offset, buf).await,
        }
    }

    /// Makes completed writes durable (fdatasync).
    pub async fn flush(&self) -> Result<(), BackendError> {
        match self {
            Backend::File(b) => b.flush().await,
            Backend::Memory(b) => b.flush(),
            Backend::Fault(b) => b.flush().await,
            Backend::Uring(b) => b.flush().await,
        }
    }

    /// Deallocates a byte range; afterwards it reads as zeroes.
    pub async fn punch_hole(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        match self {
            Backend::File(b) => b.punch_hole(offset, len).await,
            Backend::Memory(b) => b.punch_hole(offset, len),
            Backend::Fault(b) => b.punch_hole(offset, len).await,
            Backend::Uring(b) => b.punch_hole(offset, len).await,
        }
    }

    /// Makes a byte range read as zeroes, keeping it allocated where the backend can.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        match self {
            Backend::File(b) => b.write_zeroes(offset, len).await,
            Backend::Memory(b) => b.write_zeroes(offset, len),
            Backend::Fault(b) => b.write_zeroes(offset, len).await,
            Backend::Uring(b) => b.write_zeroes(offset, len).await,
        }
    }

    /// Mapped/deallocated runs covering `[offset, offset + len)`, in order, without gaps.
    pub async fn allocation_status(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Extent>, BackendError> {
        match self {
            Backend::File(b) => b.allocation_status(offset, len).await,
            Backend::Memory(b) => b.allocation_status(offset, len),
            Backend::Fault(b) => b.allocation_status(offset, len).await,
            Backend::Uring(b) => b.allocation_status(offset, len).await,
        }
    }
}
