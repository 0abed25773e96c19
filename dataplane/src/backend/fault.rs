//! Fault-injecting backend for tests: wraps a file or memory backend and fails chosen byte
//! ranges with EIO, ENOSPC or a short transfer. Rules can be changed at runtime through a
//! cloned [`FaultHandle`] after the backend has been handed to a logical unit.

use super::{BackendError, BufResult, ErrorKind, Extent, FileBackend, MemoryBackend};
use crate::buf::IoBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which operations a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// Reads only.
    Read,
    /// Writes, punches and zeroing.
    Write,
    /// Flushes (the range is ignored).
    Flush,
    /// Every operation.
    Any,
}

/// What happens when a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultEffect {
    /// Fail with EIO before transferring anything.
    Eio,
    /// Fail with ENOSPC before transferring anything.
    NoSpace,
    /// Transfer the bytes before the faulty range, then fail with EIO (a device that died
    /// mid-transfer, as seen after the short-transfer loop gave up).
    Short,
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// Operations it applies to.
    pub op: FaultOp,
    /// First faulty byte.
    pub start: u64,
    /// One past the last faulty byte.
    pub end: u64,
    /// What the fault does.
    pub effect: FaultEffect,
}

/// Shared, runtime-editable list of fault rules.
#[derive(Clone, Debug, Default)]
pub struct FaultHandle {
    rules: Arc<Mutex<Vec<FaultRule>>>,
}

impl FaultHandle {
    fn lock(&self) -> MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn matching(&self, op: FaultOp, offset: u64, len: u64) -> Option<FaultRule> {
        let end = offset.saturating_add(len.max(1));
        self.lock()
            .iter()
            .find(|r| {
                let op_ok = r.op == FaultOp::Any || r.op == op;
                op_ok && (op == FaultOp::Flush || (r.start < end && offset < r.end))
            })
            .copied()
    }
}

/// The backends a fault backend can wrap (no boxing: the set is closed).
#[derive(Debug)]
pub enum FaultInner {
    /// A file backend.
    File(FileBackend),
    /// A memory backend.
    Memory(MemoryBackend),
}

/// A backend that fails where its rules say and otherwise forwards to `inner`.
#[derive(Debug)]
pub struct FaultBackend {
    inner: FaultInner,
    faults: FaultHandle,
}

fn injected(effect: FaultEffect, what: &str, offset: u64) -> BackendError {
    let (errno, kind) = match effect {
        FaultEffect::NoSpace => (libc::ENOSPC, ErrorKind::NoSpace),
        FaultEffect::Eio | FaultEffect::Short => (libc::EIO, ErrorKind::Io),
    };
    BackendError {
        kind,
        context: format!("injected fault on {what} at {offset}"),
        source: Some(std::io::Error::from_raw_os_error(errno)),
    }
}

impl FaultBackend {
    /// Wraps `inner` with no rules.
    pub fn new(inner: FaultInner) -> Self {
        Self {
            inner,
            faults: FaultHandle::default(),
        }
    }

    /// A handle that edits this backend's rules.
    pub fn handle(&self) -> FaultHandle {
        self.faults.clone()
    }

    /// Size in bytes of the wrapped backend.
    pub fn size_bytes(&self) -> u64 {
        match &self.inner {
            FaultInner::File(b) => b.size_bytes(),
            FaultInner::Memory(b) => b.size_bytes(),
        }
    }

    /// Grows the wrapped backend (no faults are injected here).
    pub fn grow_to(&self, new_size: u64) -> Result<(), BackendError> {
        match &self.inner {
            FaultInner::File(b) => b.grow_to(new_size),
            FaultInner::Memory(b) => b.grow_to(new_size),
        }
    }

    /// Whether the wrapped backend is read-only.
    pub fn read_only(&self) -> bool {
        match &self.inner {
            FaultInner::File(b) => b.read_only(),
            FaultInner::Memory(b) => b.read_only(),
        }
    }

    async fn inner_read(&self, offset: u64, buf: IoBuf) -> BufResult {
        match &self.inner {
            FaultInner::File(b) => b.read(offset, buf).await,
            FaultInner::Memory(b) => b.read(offset, buf),
        }
    }

    async fn inner_write(&self, offset: u64, buf: IoBuf) -> BufResult {
        match &self.inner {
            FaultInner::File(b) => b.write(offset, buf).await,
            FaultInner::Memory(b) => b.write(offset, buf),
        }
    }

    /// Reads, unless a read rule covers the range.
    pub async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        match self
            .faults
            .matching(FaultOp::Read, offset, buf.len() as u64)
        {
            None => self.inner_read(offset, buf).await,
            Some(rule) => {
                let mut buf = buf;
                if rule.effect == FaultEffect::Short && rule.start > offset {
                    let good = usize::try_from(rule.start - offset)
                        .unwrap_or(buf.len())
                        .min(buf.len());
                    let (part, r) = self.inner_read(offset, IoBuf::from(&buf[..good])).await;
                    if r.is_ok() {
                        buf[..good].copy_from_slice(&part);
                    }
                }
                (buf, Err(injected(rule.effect, "read", offset)))
            }
        }
    }

    /// Writes, unless a write rule covers the range (a short rule writes the prefix first).
    pub async fn write(&self, offset: u64, buf: IoBuf) -> BufResult {
        match self
            .faults
            .matching(FaultOp::Write, offset, buf.len() as u64)
        {
            None => self.inner_write(offset, buf).await,
            Some(rule) => {
                if rule.effect == FaultEffect::Short && rule.start > offset {
                    let good = usize::try_from(rule.start - offset)
                        .unwrap_or(buf.len())
                        .min(buf.len());
                    let (_, r) = self.inner_write(offset, IoBuf::from(&buf[..good])).await;
                    if let Err(e) = r {
                        return (buf, Err(e));
                    }
                }
                (buf, Err(injected(rule.effect, "write", offset)))
            }
        }
    }

    /// Flushes, unless a flush rule exists.
    pub async fn flush(&self) -> Result<(), BackendError> {
        if let Some(rule) = self.faults.matching(FaultOp::Flush, 0, 0) {
            return Err(injected(rule.effect, "flush", 0));
        }
        match &self.inner {
            FaultInner::File(b) => b.flush().await,
            FaultInner::Memory(b) => b.flush(),
        }
    }

    /// Punches, unless a write rule covers the range.
    pub async fn punch_hole(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        if let Some(rule) = self.faults.matching(FaultOp::Write, offset, len) {
            return Err(injected(rule.effect, "punch hole", offset));
        }
        match &self.inner {
            FaultInner::File(b) => b.punch_hole(offset, len).await,
            FaultInner::Memory(b) => b.punch_hole(offset, len),
        }
    }

    /// Zeroes, unless a write rule covers the range.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        if let Some(rule) = self.faults.matching(FaultOp::Write, offset, len) {
            return Err(injected(rule.effect, "write zeroes", offset));
        }
        match &self.inner {
            FaultInner::File(b) => b.write_zeroes(offset, len).await,
            FaultInner::Memory(b) => b.write_zeroes(offset, len),
        }
    }

    /// Allocation map of the wrapped backend (never faulted).
    pub async fn allocation_status(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Extent>, BackendError> {
        match &self.inner {
            FaultInner::File(b) => b.allocation_status(offset, len).await,
            FaultInner::Memory(b) => b.allocation_status(offset, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_write_writes_prefix_then_fails() {
        let fb = FaultBackend::new(FaultInner::Memory(MemoryBackend::new(8192, false).unwrap()));
        let h = fb.handle();
        h.add(FaultRule {
            op: FaultOp::Write,
            start: 1024,
            end: 2048,
            effect: FaultEffect::Short,
        });
        let (_, r) = fb.write(0, vec![9u8; 2048].into()).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Io);
        h.clear();
        let (buf, r) = fb.read(0, vec![0u8; 2048].into()).await;
        r.unwrap();
        assert!(buf[..1024].iter().all(|&b| b == 9));
        assert!(buf[1024..].iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn enospc_rule_maps_to_no_space() {
        let fb = FaultBackend::new(FaultInner::Memory(MemoryBackend::new(8192, false).unwrap()));
        fb.handle().add(FaultRule {
            op: FaultOp::Any,
            start: 0,
            end: 8192,
            effect: FaultEffect::NoSpace,
        });
        let (_, r) = fb.write(512, vec![1u8; 512].into()).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::NoSpace);
    }
}
