//! The data path's one buffer type, [`IoBuf`]: what carries Data-Out from the socket to the
//! backend and Data-In from the backend to the socket.
//!
//! On the I/O path (READ and WRITE of the medium) buffers come from the per-node pools of
//! [`crate::numa::pool`]: allocated once at start-up, aligned for O_DIRECT, and returned to
//! their pool when the `IoBuf` is dropped. Small control-path payloads (INQUIRY, MODE SENSE,
//! sense data) stay plain vectors. Every variant keeps its bytes off the `IoBuf` value itself,
//! so the data pointer stays put while the value moves into an io_uring slab and back.

use std::alloc::Layout;
use std::io;
use std::ptr::NonNull;

use crate::numa::pool::PoolBuf;

/// A heap buffer with a chosen alignment, for O_DIRECT transfers.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Box<[u8]>); nothing else holds
// the pointer except an in-flight SQE, and the engine keeps the buffer alive until then.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out `&[u8]`, as `Box<[u8]>` does.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zero-filled buffer of `len` bytes whose address is a multiple of `align` (a power
    /// of two).
    pub fn zeroed(len: usize, align: usize) -> io::Result<Self> {
        // A zero-size allocation is undefined behaviour; allocate at least one alignment unit.
        let layout = Layout::from_size_align(len.max(align).max(1), align)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: the layout has a non-zero size (checked just above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Self { ptr, len, layout })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Shortens the visible length; the allocation stays.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to an initialised (zeroed) allocation of at least `len` bytes
        // owned by `self`, and the shared borrow of `self` prevents mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the exclusive borrow of `self` makes this the only
        // reference to the bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly `self.layout` and is freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.layout.align())
            .finish()
    }
}

/// A buffer an I/O operation owns while it is in flight.
pub enum IoBuf {
    /// An ordinary vector: control-path payloads and tests.
    Vec(Vec<u8>),
    /// An aligned heap buffer (O_DIRECT bounce buffers).
    Aligned(AlignedBuf),
    /// A buffer from a per-node pool, back to its pool on drop.
    Pool(PoolBuf),
}

impl IoBuf {
    /// An empty vector buffer (allocates nothing).
    pub fn empty() -> Self {
        IoBuf::Vec(Vec::new())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            IoBuf::Vec(v) => v.len(),
            IoBuf::Aligned(a) => a.len(),
            IoBuf::Pool(p) => p.len(),
        }
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IoBuf::Vec(v) => v,
            IoBuf::Aligned(a) => a.as_slice(),
            IoBuf::Pool(p) => p,
        }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            IoBuf::Vec(v) => v,
            IoBuf::Aligned(a) => a.as_mut_slice(),
            IoBuf::Pool(p) => p,
        }
    }

    /// Shortens the buffer to `len` bytes; longer lengths leave it as it is.
    pub fn truncate(&mut self, len: usize) {
        match self {
            IoBuf::Vec(v) => v.truncate(len),
            IoBuf::Aligned(a) => a.truncate(len),
            IoBuf::Pool(p) => {
                if len < p.len() {
                    // Cannot fail: `len` is below the current length, itself within capacity.
                    let _ = p.set_len(len);
                }
            }
        }
    }

    /// Whether the start address and the length are multiples of `align`, as O_DIRECT needs.
    pub fn is_aligned(&self, align: usize) -> bool {
        align != 0
            && (self.as_slice().as_ptr() as usize).is_multiple_of(align)
            && self.len().is_multiple_of(align)
    }

    /// The index of the pool slot behind this buffer, for io_uring fixed-buffer I/O.
    pub fn pool_slot(&self) -> Option<(u32, u32)> {
        match self {
            IoBuf::Pool(p) => Some((p.node(), p.slot_index())),
            _ => None,
        }
    }

    /// The bytes as a vector, copying unless it already is one (tests and slow paths).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            IoBuf::Vec(v) => v,
            other => other.as_slice().to_vec(),
        }
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoBuf::Vec(v) => f.debug_tuple("Vec").field(&v.len()).finish(),
            IoBuf::Aligned(a) => a.fmt(f),
            IoBuf::Pool(p) => p.fmt(f),
        }
    }
}

impl PartialEq for IoBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IoBuf {}

impl PartialEq<[u8]> for IoBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for IoBuf {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for IoBuf {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for IoBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Default for IoBuf {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(v: Vec<u8>) -> Self {
        IoBuf::Vec(v)
    }
}

impl From<PoolBuf> for IoBuf {
    fn from(p: PoolBuf) -> Self {
        IoBuf::Pool(p)
    }
}

impl From<AlignedBuf> for IoBuf {
    fn from(a: AlignedBuf) -> Self {
        IoBuf::Aligned(a)
    }
}

impl From<&[u8]> for IoBuf {
    fn from(s: &[u8]) -> Self {
        IoBuf::Vec(s.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for IoBuf {
    fn from(s: &[u8; N]) -> Self {
        IoBuf::Vec(s.to_vec())
    }
}

impl From<&Vec<u8>> for IoBuf {
    fn from(s: &Vec<u8>) -> Self {
        IoBuf::Vec(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numa::pool::{BufferPool, DIRECT_IO_ALIGN_BYTES};

    #[test]
    fn every_variant_reads_writes_and_truncates_alike() {
        let pool = BufferPool::unbound(1, 8192, DIRECT_IO_ALIGN_BYTES).unwrap();
        let mut p = pool.try_get().unwrap();
        p.set_len(4096).unwrap();
        let a = AlignedBuf::zeroed(4096, 4096).unwrap();
        for mut b in [IoBuf::from(vec![0u8; 4096]), IoBuf::from(a), IoBuf::from(p)] {
            b.as_mut_slice()[..4].copy_from_slice(b"abcd");
            assert_eq!(&b[..4], b"abcd");
            assert_eq!(b.len(), 4096);
            b.truncate(1000);
            assert_eq!(b.len(), 1000);
            b.truncate(5000);
            assert_eq!(b.len(), 1000);
        }
    }

    #[test]
    fn pool_and_aligned_buffers_are_direct_io_aligned() {
        let pool = BufferPool::unbound(2, 8192, DIRECT_IO_ALIGN_BYTES).unwrap();
        let mut p = pool.try_get().unwrap();
        p.set_len(8192).unwrap();
        let b = IoBuf::from(p);
        assert!(b.is_aligned(4096));
        assert!(b.pool_slot().is_some());
        let mut b = b;
        b.truncate(512);
        assert!(!b.is_aligned(4096));
        assert!(b.is_aligned(512));
        assert!(IoBuf::from(AlignedBuf::zeroed(4096, 4096).unwrap()).is_aligned(4096));
    }

    #[test]
    fn dropping_a_pool_buffer_returns_it() {
        let pool = BufferPool::unbound(1, 4096, DIRECT_IO_ALIGN_BYTES).unwrap();
        let b = IoBuf::from(pool.try_get().unwrap());
        assert!(pool.try_get().is_none());
        drop(b);
        assert!(pool.try_get().is_some());
    }
}
