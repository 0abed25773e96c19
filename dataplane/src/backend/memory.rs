//! RAM backend for tests: a `Vec<u8>` plus a per-page allocation map so that hole punching
//! and GET LBA STATUS can be tested without a file system.

use super::{check_range, BackendError, BufResult, ErrorKind, Extent};
use crate::buf::IoBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Allocation granularity of the memory backend, like a file system block.
pub const MEMORY_PAGE_BYTES: u64 = 4096;

#[derive(Debug)]
struct Inner {
    data: Vec<u8>,
    /// One flag per `MEMORY_PAGE_BYTES` page: true once written, false after a full punch.
    mapped: Vec<bool>,
}

/// A RAM disk.
#[derive(Debug)]
pub struct MemoryBackend {
    inner: Mutex<Inner>,
    /// Published after `inner` holds that many bytes, so a range checked against it is
    /// always inside `inner.data`.
    size_bytes: AtomicU64,
    read_only: bool,
}

impl MemoryBackend {
    /// A zero-filled, fully deallocated device of `size_bytes`.
    pub fn new(size_bytes: u64, read_only: bool) -> Result<Self, BackendError> {
        let len = usize::try_from(size_bytes)
            .map_err(|_| BackendError::new(ErrorKind::OutOfRange, "memory backend too large"))?;
        let pages = usize::try_from(size_bytes.div_ceil(MEMORY_PAGE_BYTES))
            .map_err(|_| BackendError::new(ErrorKind::OutOfRange, "memory backend too large"))?;
        Ok(Self {
            inner: Mutex::new(Inner {
                data: vec![0; len],
                mapped: vec![false; pages],
            }),
            size_bytes: AtomicU64::new(size_bytes),
            read_only,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test thread panicked; the bytes are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    /// Grows the device to `new_size` bytes (zero-filled, deallocated); refuses to shrink.
    pub fn grow_to(&self, new_size: u64) -> Result<(), BackendError> {
        let mut g = self.lock();
        let current = self.size_bytes();
        if new_size < current {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                format!(
                    "memory device is {current} bytes: shrinking it to {new_size} would lose data"
                ),
            ));
        }
        let too_large = || BackendError::new(ErrorKind::OutOfRange, "memory backend too large");
        let len = usize::try_from(new_size).map_err(|_| too_large())?;
        let pages =
            usize::try_from(new_size.div_ceil(MEMORY_PAGE_BYTES)).map_err(|_| too_large())?;
        g.data.resize(len, 0);
        g.mapped.resize(pages, false);
        self.size_bytes.store(new_size, Ordering::Release);
        Ok(())
    }

    /// True when writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn span(
        &self,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<std::ops::Range<usize>, BackendError> {
        check_range(offset, len, self.size_bytes(), what)?;
        // Both fit: the whole device fits in a usize (checked in `new`).
        let start = usize::try_from(offset)
            .map_err(|_| BackendError::new(ErrorKind::OutOfRange, what.to_string()))?;
        let end = usize::try_from(offset + len)
            .map_err(|_| BackendError::new(ErrorKind::OutOfRange, what.to_string()))?;
        Ok(start..end)
    }

    fn writable(&self, what: &str) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::new(
                ErrorKind::ReadOnly,
                format!("{what} on read-only backend"),
            ));
        }
        Ok(())
    }

    fn page_index(p: u64) -> usize {
        usize::try_from(p).unwrap_or(usize::MAX)
    }

    /// Copies device bytes into `buf`.
    pub fn read(&self, offset: u64, mut buf: IoBuf) -> BufResult {
        let r = self.span(offset, buf.len() as u64, "read").map(|range| {
            let g = self.lock();
            buf.copy_from_slice(&g.data[range]);
        });
        (buf, r)
    }

    /// Copies `buf` to the device and marks the touched pages mapped.
    pub fn write(&self, offset: u64, buf: IoBuf) -> BufResult {
        let r = self
            .writable("write")
            .and_then(|()| self.span(offset, buf.len() as u64, "write"))
            .map(|range| {
                let mut g = self.lock();
                g.data[range].copy_from_slice(&buf);
                if !buf.is_empty() {
                    let first = offset / MEMORY_PAGE_BYTES;
                    let last = (offset + buf.len() as u64 - 1) / MEMORY_PAGE_BYTES;
                    for p in first..=last {
                        if let Some(m) = g.mapped.get_mut(Self::page_index(p)) {
                            *m = true;
                        }
                    }
                }
            });
        (buf, r)
    }

    /// Nothing to make durable.
    pub fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Zeroes the range and deallocates the pages it fully covers.
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.writable("punch hole")?;
        let range = self.span(offset, len, "punch hole")?;
        let mut g = self.lock();
        g.data[range].fill(0);
        let first_full = offset.div_ceil(MEMORY_PAGE_BYTES);
        let end = offset + len;
        let end_full = if end == self.size_bytes() {
            end.div_ceil(MEMORY_PAGE_BYTES)
        } else {
            end / MEMORY_PAGE_BYTES
        };
        for p in first_full..end_full {
            if let Some(m) = g.mapped.get_mut(Self::page_index(p)) {
                *m = false;
            }
        }
        Ok(())
    }

    /// Zeroes the range, keeping allocation.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.writable("write zeroes")?;
        let range = self.span(offset, len, "write zeroes")?;
        self.lock().data[range].fill(0);
        Ok(())
    }

    /// Runs of mapped/unmapped pages clipped to the requested range.
    pub fn allocation_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BackendError> {
        check_range(offset, len, self.size_bytes(), "allocation status")?;
        let g = self.lock();
        let mut out: Vec<Extent> = Vec::new();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let page = pos / MEMORY_PAGE_BYTES;
            let page_end = ((page + 1) * MEMORY_PAGE_BYTES).min(end);
            let mapped = g
                .mapped
                .get(Self::page_index(page))
                .copied()
                .unwrap_or(false);
            match out.last_mut() {
                Some(last) if last.mapped == mapped => last.len += page_end - pos,
                _ => out.push(Extent {
                    offset: pos,
                    len: page_end - pos,
                    mapped,
                }),
            }
            pos = page_end;
        }
        Ok(out)
    }
}
