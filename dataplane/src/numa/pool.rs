//! Per-node data buffer pools, allocated once at startup from memory bound to their node.
//!
//! Each pool is one anonymous `mmap` cut into `count` equal slots. Before the first touch the
//! mapping gets an `MPOL_BIND` policy for its node (`mbind(2)`), and then every page is
//! written once so the kernel allocates it there and no command later takes a page fault.
//! Slots start on an `align` boundary (4096 for O_DIRECT), so they can go straight to
//! io_uring.
//!
//! A buffer is a [`PoolBuf`] handle that goes back to its pool when dropped. An empty pool is
//! back-pressure: [`BufferPool::try_get`] returns `None` and [`BufferPool::get`] waits. Nothing
//! here allocates after [`BufferPool::new`] returns.

use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::topology::{Topology, NODE_ID_LIMIT};

/// Largest alignment we accept for slots: one 2 MiB huge page. Larger would waste most of a
/// mapping on padding and no device needs it.
pub const ALIGN_BYTES_MAX: usize = 2 * 1_048_576;

/// Alignment O_DIRECT needs on every device we support (logical blocks of at most 4 KiB).
pub const DIRECT_IO_ALIGN_BYTES: usize = 4096;

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `count` or `size_bytes` was zero.
    #[error("pool on node {node} would be empty")]
    Empty {
        /// The node.
        node: u32,
    },
    /// `align` was not a power of two or was larger than [`ALIGN_BYTES_MAX`].
    #[error("invalid buffer alignment {align}")]
    BadAlign {
        /// The alignment asked for.
        align: usize,
    },
    /// The node id is not one the kernel can have.
    #[error("numa node {node} out of range")]
    NodeOutOfRange {
        /// The node.
        node: u32,
    },
    /// The node is not part of the machine's topology.
    #[error("numa node {node} does not exist")]
    UnknownNode {
        /// The node.
        node: u32,
    },
    /// `count * size` does not fit the address space, or `count` exceeds `u32`.
    #[error("pool on node {node} too large")]
    TooLarge {
        /// The node.
        node: u32,
    },
    /// `mmap` failed.
    #[error("cannot map pool memory for node {node}")]
    Map {
        /// The node.
        node: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `mbind` failed with an error other than the tolerated ENOSYS, EPERM and EINVAL.
    #[error("cannot bind pool memory to node {node}")]
    Bind {
        /// The node.
        node: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A snapshot of a pool's counters, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// The node the pool's memory belongs to.
    pub node: u32,
    /// Buffers in the pool.
    pub capacity: usize,
    /// Buffers free now.
    pub free: usize,
    /// Buffers handed out now.
    pub in_use: usize,
    /// Times `try_get` found the pool empty.
    pub exhausted_total: u64,
    /// Transfers served from heap buffers instead: longer than one buffer, or the pool stayed
    /// empty for `POOL_WAIT_MS_MAX`, or a connection's own writes held the buffers.
    pub heap_total: u64,
    /// Whether the memory is bound to the node (false after a tolerated mbind failure).
    pub bound: bool,
}

/// One anonymous mapping, unmapped on drop.
struct Region {
    /// Start of the mapping, as returned by `mmap`.
    base: NonNull<u8>,
    /// Length of the mapping, as passed to `mmap`.
    map_len: usize,
    /// Offset of the first slot from `base`, for alignments past the page size.
    offset: usize,
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what `mmap` returned in `Region::map`, and the
        // region is dropped only with the last `Arc<Inner>`, i.e. after every `PoolBuf`
        // pointing into it is gone.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "munmap of buffer pool failed");
        }
    }
}

impl Region {
    fn map(node: u32, map_len: usize) -> Result<Self, PoolError> {
        // SAFETY: an anonymous private mapping with a null hint touches no existing memory;
        // the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PoolError::Map {
                node,
                source: io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(PoolError::Map {
            node,
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        })?;
        Ok(Self {
            base,
            map_len,
            offset: 0,
        })
    }

    /// Sets an `MPOL_BIND` policy for `node` on the whole mapping.
    fn bind(&self, node: u32) -> io::Result<()> {
        const BITS: usize = u64::BITS as usize;
        const WORDS: usize = NODE_ID_LIMIT as usize / BITS;
        let mut mask = [0u64; WORDS];
        let bit = node as usize;
        mask[bit / BITS] |= 1u64 << (bit % BITS);
        // The kernel drops the last bit of `maxnode` (a historical off-by-one kept for ABI
        // compatibility; libnuma passes mask bits + 1 too).
        let maxnode = (WORDS * BITS + 1) as libc::c_ulong;
        let mode = libc::c_ulong::from(libc::MPOL_BIND.unsigned_abs());
        // No MPOL_MF_MOVE: nothing has been touched yet, so there is nothing to migrate.
        let flags: libc::c_ulong = 0;
        // SAFETY: the range is exactly our own mapping; `mask` is a live array of
        // `WORDS * BITS` bits (node < NODE_ID_LIMIT is checked by `BufferPool::new`); the
        // kernel only reads it. mbind changes placement policy, never contents.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.base.as_ptr(),
                self.map_len,
                mode,
                mask.as_ptr(),
                maxnode,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Writes one byte in every page so each page is allocated now, under the policy.
    fn prefault(&self) {
        let page = page_size();
        let mut at = 0;
        while at < self.map_len {
            // SAFETY: `at < map_len`, so the byte lies inside our writable mapping, which no
            // one else references yet (no slot has been handed out).
            unsafe { self.base.as_ptr().add(at).write_volatile(0) };
            at += page;
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

struct Inner {
    node: u32,
    region: Region,
    /// Distance between slot starts: `size_bytes` rounded up to `align`.
    stride: usize,
    size_bytes: usize,
    count: usize,
    bound: bool,
    /// Built for a node (`new`), as opposed to the one pool of a data plane with NUMA off.
    for_node: bool,
    /// Indices of free slots. Its capacity is `count` from the start, so pushing never
    /// reallocates.
    free: Mutex<Vec<u32>>,
    in_use: AtomicUsize,
    exhausted_total: AtomicU64,
    heap_total: AtomicU64,
    /// Set when a wait for a buffer timed out; cleared when a buffer returns. While set,
    /// callers take heap buffers at once instead of each waiting out the timeout again.
    starved: std::sync::atomic::AtomicBool,
    /// Woken once per returned buffer, for tasks waiting in `get`.
    returned: Notify,
}

// SAFETY: `Inner` owns the mapping; the raw pointer in `Region` is only dereferenced through
// slots handed out exclusively via the `free` mutex, so sharing `Inner` between threads
// cannot alias a slot.
unsafe impl Send for Inner {}
// SAFETY: as for `Send`: all shared mutable state is behind the mutex or atomics.
unsafe impl Sync for Inner {}

impl Inner {
    fn pop(&self) -> Option<u32> {
        // A panic while holding this lock cannot leave the Vec half-updated (push never
        // reallocates, pop never panics), so a poisoned lock is still consistent.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let index = free.pop()?;
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(index)
    }

    fn push(&self, index: u32) {
        {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            free.push(index);
            self.in_use.fetch_sub(1, Ordering::Relaxed);
        }
        self.starved.store(false, Ordering::Relaxed);
        self.returned.notify_one();
    }
}

/// A fixed set of equal, aligned buffers in memory bound to one NUMA node.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .field("size_bytes", &self.inner.size_bytes)
            .finish()
    }
}

impl BufferPool {
    /// Maps, binds and prefaults `count` buffers of `size_bytes`, each starting on an `align`
    /// boundary, on `node`.
    ///
    /// When `mbind` is unavailable (ENOSYS: kernel without NUMA), forbidden (EPERM: seccomp,
    /// some containers) or refused for this node (EINVAL: the node has no online memory or is
    /// outside this process's cpuset) the pool is built unbound with a warning: whether a
    /// node exists is decided earlier, from the sysfs topology, and serving I/O from unbound
    /// memory beats refusing the storage. Any other mbind error fails.
    pub fn new(
        node: u32,
        count: usize,
        size_bytes: usize,
        align: usize,
    ) -> Result<Self, PoolError> {
        Self::build(node, count, size_bytes, align, true)
    }

    /// Like [`BufferPool::new`] on node 0 but without a memory policy: the kernel places
    /// pages as it likes. For a data plane with NUMA awareness off, where binding every
    /// buffer to node 0 would be wrong on a multi-node machine.
    pub fn unbound(count: usize, size_bytes: usize, align: usize) -> Result<Self, PoolError> {
        Self::build(0, count, size_bytes, align, false)
    }

    fn build(
        node: u32,
        count: usize,
        size_bytes: usize,
        align: usize,
        bind: bool,
    ) -> Result<Self, PoolError> {
        if count == 0 || size_bytes == 0 {
            return Err(PoolError::Empty { node });
        }
        if !align.is_power_of_two() || align > ALIGN_BYTES_MAX {
            return Err(PoolError::BadAlign { align });
        }
        if node >= NODE_ID_LIMIT {
            return Err(PoolError::NodeOutOfRange { node });
        }
        let too_large = PoolError::TooLarge { node };
        if u32::try_from(count).is_err() {
            return Err(too_large);
        }
        let stride = size_bytes
            .checked_next_multiple_of(align)
            .ok_or(PoolError::TooLarge { node })?;
        let page = page_size();
        // mmap returns page-aligned memory; alignments past a page need room to slide the
        // first slot forward.
        let slack = if align > page { align } else { 0 };
        let map_len = stride
            .checked_mul(count)
            .and_then(|n| n.checked_add(slack))
            .and_then(|n| n.checked_next_multiple_of(page))
            .filter(|&n| isize::try_from(n).is_ok())
            .ok_or(too_large)?;

        // Without MAP_NORESERVE, so a machine with strict overcommit refuses here with ENOMEM
        // instead of failing the prefault below.
        let mut region = Region::map(node, map_len)?;
        region.offset = region.base.as_ptr().align_offset(align);
        if region.offset > slack {
            // align_offset may give up (usize::MAX) only for non-power-of-two alignments,
            // which are rejected above; treat it as an impossible size rather than trust it.
            return Err(PoolError::TooLarge { node });
        }
        let bound = match if bind { region.bind(node) } else { Ok(()) } {
            Ok(()) => bind,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::EINVAL)
                ) =>
            {
                tracing::warn!(node, error = %e, "cannot bind buffer pool to its numa node; using unbound memory");
                false
            }
            Err(source) => return Err(PoolError::Bind { node, source }),
        };
        region.prefault();

        let mut free = Vec::with_capacity(count);
        // Reversed so that `pop` hands out slot 0 first: low slots stay warm in the cache.
        // `count` fits u32 (checked above), so every index does.
        free.extend((0..count).rev().filter_map(|i| u32::try_from(i).ok()));
        tracing::debug!(node, count, size_bytes, bound, "buffer pool ready");
        Ok(Self {
            inner: Arc::new(Inner {
                node,
                region,
                stride,
                size_bytes,
                count,
                bound,
                for_node: bind,
                free: Mutex::new(free),
                in_use: AtomicUsize::new(0),
                exhausted_total: AtomicU64::new(0),
                heap_total: AtomicU64::new(0),
                starved: std::sync::atomic::AtomicBool::new(false),
                returned: Notify::new(),
            }),
        })
    }

    /// A free buffer, or `None` when all are in use: stop reading and retry once one returns.
    pub fn try_get(&self) -> Option<PoolBuf> {
        match self.inner.pop() {
            Some(index) => Some(self.handle(index)),
            None => {
                self.inner.exhausted_total.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A free buffer, waiting for one to be returned if the pool is empty.
    ///
    /// Cancel-safe: dropping the future loses no buffer and no wake-up.
    pub async fn get(&self) -> PoolBuf {
        loop {
            let notified = std::pin::pin!(self.inner.returned.notified());
            let mut notified = notified;
            // Register before looking, so a buffer returned between the look and the wait
            // still wakes us.
            notified.as_mut().enable();
            if let Some(index) = self.inner.pop() {
                return self.handle(index);
            }
            notified.await;
        }
    }

    fn handle(&self, index: u32) -> PoolBuf {
        let inner = &self.inner;
        let offset = inner.region.offset + index as usize * inner.stride;
        // SAFETY: index < count, so `offset + stride <= offset_0 + count * stride <= map_len`
        // (see the size computation in `new`): the pointer stays inside the mapping.
        let ptr = unsafe { inner.region.base.as_ptr().add(offset) };
        PoolBuf {
            pool: Arc::clone(inner),
            index,
            // SAFETY: `ptr` is inside a mapping whose base is non-null and does not wrap.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len: 0,
        }
    }

    /// The node this pool's memory belongs to.
    pub fn node(&self) -> u32 {
        self.inner.node
    }

    /// The node this pool serves, for placing connections: `None` for the one unbound pool
    /// of a data plane with NUMA awareness off (its memory belongs to no node in
    /// particular).
    pub fn numa_node(&self) -> Option<u32> {
        self.inner.for_node.then_some(self.inner.node)
    }

    /// Records that a wait for a buffer timed out: until one returns, waiting is pointless.
    pub fn mark_starved(&self) {
        self.inner.starved.store(true, Ordering::Relaxed);
    }

    /// Whether a wait timed out and no buffer has returned since ([`BufferPool::mark_starved`]).
    pub fn is_starved(&self) -> bool {
        self.inner.starved.load(Ordering::Relaxed)
    }

    /// Counts a transfer the caller serves from a heap buffer instead of this pool.
    pub fn note_heap(&self) {
        self.inner.heap_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Start and length of the memory every slot lies in, for registering it with io_uring
    /// as a fixed buffer. Valid as long as any clone of this pool lives.
    pub fn memory(&self) -> (*mut u8, usize) {
        let inner = &self.inner;
        // SAFETY: `offset` is inside the mapping (checked in `build`: `offset <= slack`).
        let start = unsafe { inner.region.base.as_ptr().add(inner.region.offset) };
        (start, inner.stride * inner.count)
    }

    /// Usable bytes in each buffer.
    pub fn buf_size_bytes(&self) -> usize {
        self.inner.size_bytes
    }

    /// Whether the memory is bound to the node.
    pub fn is_bound(&self) -> bool {
        self.inner.bound
    }

    /// The pool's counters now.
    pub fn stats(&self) -> PoolStats {
        let in_use = self
            .inner
            .in_use
            .load(Ordering::Relaxed)
            .min(self.inner.count);
        PoolStats {
            node: self.inner.node,
            capacity: self.inner.count,
            free: self.inner.count - in_use,
            in_use,
            exhausted_total: self.inner.exhausted_total.load(Ordering::Relaxed),
            heap_total: self.inner.heap_total.load(Ordering::Relaxed),
            bound: self.inner.bound,
        }
    }
}

/// Returned by [`PoolBuf::set_len`] when the length exceeds the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("length {len} exceeds buffer capacity {capacity}")]
pub struct LenError {
    /// The length asked for.
    pub len: usize,
    /// The buffer's capacity.
    pub capacity: usize,
}

/// One buffer from a [`BufferPool`], returned to it on drop.
///
/// It dereferences to its used part (`..len()`); [`PoolBuf::set_len`] changes that and
/// [`PoolBuf::spare_mut`]/[`PoolBuf::full_mut`] reach the whole capacity. Contents are not
/// cleared between uses: set the length only over bytes you wrote.
pub struct PoolBuf {
    pool: Arc<Inner>,
    index: u32,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `PoolBuf` is the only handle to its slot (it was popped from the free list under
// the mutex and goes back only in `Drop`), and the mapping lives as long as the `Arc`.
unsafe impl Send for PoolBuf {}
// SAFETY: `&PoolBuf` gives only shared access to the bytes.
unsafe impl Sync for PoolBuf {}

impl PoolBuf {
    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.pool.size_bytes
    }

    /// Sets the used length; the bytes keep whatever they held.
    pub fn set_len(&mut self, len: usize) -> Result<(), LenError> {
        if len > self.capacity() {
            return Err(LenError {
                len,
                capacity: self.capacity(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// The whole buffer, regardless of the used length.
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: the slot is `capacity` bytes inside the live mapping, initialised by the
        // prefault or earlier use, and `&mut self` makes this handle's access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity()) }
    }

    /// The part past the used length, to fill before growing it with `set_len`.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_mut()[len..]
    }

    /// Start of the buffer, for I/O submissions; valid while this handle lives and aligned
    /// as the pool was built.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The node this buffer's memory belongs to.
    pub fn node(&self) -> u32 {
        self.pool.node
    }

    /// The slot's index in its pool (stable for the pool's life): the fixed-buffer index
    /// when the pool is registered with an io_uring.
    pub fn slot_index(&self) -> u32 {
        self.index
    }
}

impl Deref for PoolBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= capacity` (kept by `set_len`); the bytes are inside the live,
        // initialised slot that only this handle can reach.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_mut()[..len]
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("node", &self.pool.node)
            .field("index", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.pool.push(self.index);
    }
}

/// One buffer pool per configured node.
#[derive(Debug, Clone)]
pub struct NumaPools {
    /// Sorted by node id.
    pools: Vec<BufferPool>,
}

impl NumaPools {
    /// Builds a pool of `count` buffers of `size_bytes` (aligned to `align`) on each of
    /// `nodes`, which must exist in `topology`. Duplicate nodes get one pool.
    pub fn new(
        topology: &Topology,
        nodes: &[u32],
        count: usize,
        size_bytes: usize,
        align: usize,
    ) -> Result<Self, PoolError> {
        let mut ids: Vec<u32> = nodes.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if let Some(&node) = ids.iter().find(|&&n| topology.node(n).is_none()) {
            return Err(PoolError::UnknownNode { node });
        }
        let pools = ids
            .into_iter()
            .map(|node| BufferPool::new(node, count, size_bytes, align))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pools })
    }

    /// One pool without a node binding (NUMA awareness off): every LU uses it.
    pub fn single(pool: BufferPool) -> Self {
        Self { pools: vec![pool] }
    }

    /// The pool of `node`, if that node was configured.
    pub fn pool_for(&self, node: u32) -> Option<&BufferPool> {
        self.pools
            .binary_search_by_key(&node, BufferPool::node)
            .ok()
            .map(|i| &self.pools[i])
    }

    /// Every pool, ascending by node.
    pub fn pools(&self) -> &[BufferPool] {
        &self.pools
    }

    /// The memory of every pool (see [`BufferPool::memory`]).
    pub fn memory_regions(&self) -> Vec<(*mut u8, usize)> {
        self.pools.iter().map(BufferPool::memory).collect()
    }

    /// Counters of every pool, ascending by node.
    pub fn stats(&self) -> impl Iterator<Item = PoolStats> + '_ {
        self.pools.iter().map(BufferPool::stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(count: usize) -> BufferPool {
        BufferPool::new(0, count, 8192, DIRECT_IO_ALIGN_BYTES).unwrap()
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            BufferPool::new(0, 0, 4096, 4096),
            Err(PoolError::Empty { .. })
        ));
        assert!(matches!(
            BufferPool::new(0, 1, 0, 4096),
            Err(PoolError::Empty { .. })
        ));
        assert!(matches!(
            BufferPool::new(0, 1, 4096, 3000),
            Err(PoolError::BadAlign { align: 3000 })
        ));
        assert!(matches!(
            BufferPool::new(0, 1, 4096, 0),
            Err(PoolError::BadAlign { .. })
        ));
        assert!(matches!(
            BufferPool::new(NODE_ID_LIMIT, 1, 4096, 4096),
            Err(PoolError::NodeOutOfRange { .. })
        ));
        assert!(matches!(
            BufferPool::new(0, usize::MAX / 2, 4096, 4096),
            Err(PoolError::TooLarge { .. })
        ));
    }

    #[test]
    fn exhausts_and_refills() {
        let pool = pool(3);
        let a = pool.try_get().unwrap();
        let b = pool.try_get().unwrap();
        let c = pool.try_get().unwrap();
        assert!(pool.try_get().is_none());
        let stats = pool.stats();
        assert_eq!((stats.free, stats.in_use, stats.capacity), (0, 3, 3));
        assert_eq!(stats.exhausted_total, 1);
        drop(b);
        assert_eq!(pool.stats().free, 1);
        let b2 = pool.try_get().unwrap();
        assert!(pool.try_get().is_none());
        drop((a, b2, c));
        let stats = pool.stats();
        assert_eq!((stats.free, stats.in_use), (3, 0));
        assert_eq!(stats.exhausted_total, 2);
    }

    #[test]
    fn buffers_are_aligned_distinct_and_writable() {
        let pool = BufferPool::new(0, 4, 5000, 4096).unwrap();
        let mut bufs: Vec<PoolBuf> = (0..4).map(|_| pool.try_get().unwrap()).collect();
        let mut starts: Vec<usize> = bufs.iter_mut().map(|b| b.as_mut_ptr() as usize).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            assert_eq!(b.as_mut_ptr() as usize % 4096, 0);
            assert_eq!(b.capacity(), 5000);
            b.full_mut().fill(u8::try_from(i).unwrap());
        }
        for (i, b) in bufs.iter_mut().enumerate() {
            b.set_len(5000).unwrap();
            assert!(b.iter().all(|&x| usize::from(x) == i));
        }
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(starts.len(), 4);
    }

    #[test]
    fn honours_alignment_past_page_size() {
        let align = 2 * 1_048_576;
        let pool = BufferPool::new(0, 2, 4096, align).unwrap();
        let mut a = pool.try_get().unwrap();
        let mut b = pool.try_get().unwrap();
        assert_eq!(a.as_mut_ptr() as usize % align, 0);
        assert_eq!(b.as_mut_ptr() as usize % align, 0);
        b.full_mut().fill(1);
        a.full_mut().fill(2);
    }

    #[test]
    fn len_tracks_the_used_part() {
        let pool = pool(1);
        let mut buf = pool.try_get().unwrap();
        assert!(buf.is_empty());
        buf.spare_mut()[..3].copy_from_slice(b"abc");
        buf.set_len(3).unwrap();
        assert_eq!(&buf[..], b"abc");
        buf[0] = b'x';
        assert_eq!(&buf[..], b"xbc");
        assert_eq!(
            buf.set_len(8193),
            Err(LenError {
                len: 8193,
                capacity: 8192
            })
        );
        assert_eq!(buf.len(), 3);
        // A buffer comes back with length 0 whatever it had.
        drop(buf);
        assert!(pool.try_get().unwrap().is_empty());
    }

    #[test]
    fn buffers_cross_threads() {
        let pool = pool(2);
        let mut buf = pool.try_get().unwrap();
        buf.set_len(10).unwrap();
        let handle = std::thread::spawn(move || {
            buf.fill(7);
            buf.len()
        });
        assert_eq!(handle.join().unwrap(), 10);
        assert_eq!(pool.stats().free, 2);
    }

    #[tokio::test]
    async fn get_waits_for_a_returned_buffer() {
        let pool = pool(1);
        let held = pool.get().await;
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.node() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        let node = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node, 0);
        assert_eq!(pool.stats().free, 1);
    }

    #[tokio::test]
    async fn cancelled_get_loses_nothing() {
        let pool = pool(1);
        let held = pool.try_get().unwrap();
        let timed_out = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
        assert!(timed_out.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), pool.get()).await;
        assert!(again.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_all_served() {
        let pool = pool(2);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let mut b = pool.get().await;
                        b.set_len(1).unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(pool.stats().in_use, 0);
    }

    /// Finds the `/proc/self/numa_maps` line of the mapping holding `addr`: the one with the
    /// highest start address not above it.
    fn numa_maps_line(addr: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
        maps.lines()
            .filter_map(|line| {
                let start = usize::from_str_radix(line.split_whitespace().next()?, 16).ok()?;
                (start <= addr).then(|| (start, line.to_owned()))
            })
            .max_by_key(|(start, _)| *start)
            .map(|(_, line)| line)
            .unwrap()
    }

    #[test]
    fn memory_is_bound_to_its_node() {
        let pool = BufferPool::new(0, 16, 65536, 4096).unwrap();
        if !pool.is_bound() {
            eprintln!("mbind not permitted here; skipping the numa_maps check");
            return;
        }
        let addr = pool.inner.region.base.as_ptr() as usize;
        let line = numa_maps_line(addr);
        assert!(line.contains("bind:0"), "{line}");
        // Prefaulted: all 256 pages are already resident, on node 0.
        assert!(line.contains("N0="), "{line}");
    }

    #[test]
    fn only_node_pools_name_a_node_for_placement() {
        assert_eq!(pool(1).numa_node(), Some(0));
        let unbound = BufferPool::unbound(1, 4096, 4096).unwrap();
        assert_eq!(unbound.numa_node(), None);
        assert!(!unbound.is_bound());
    }

    #[test]
    fn binding_to_a_node_the_kernel_refuses_leaves_the_pool_unbound() {
        // No machine has node 1023 online, so the kernel answers EINVAL (or EPERM/ENOSYS):
        // the pool still works, unbound.
        let pool = BufferPool::new(NODE_ID_LIMIT - 1, 1, 4096, 4096).unwrap();
        assert!(!pool.is_bound());
        let mut b = pool.try_get().unwrap();
        b.set_len(4096).unwrap();
        b.fill(7);
        assert!(b.iter().all(|&x| x == 7));
    }

    #[test]
    fn numa_pools_have_one_pool_per_configured_node() {
        let topo = Topology::from_nodes(vec![
            crate::numa::topology::Node {
                id: 0,
                cpus: vec![0],
                mem_total_bytes: None,
                distances: vec![10, 20],
            },
            crate::numa::topology::Node {
                id: 1,
                cpus: vec![1],
                mem_total_bytes: None,
                distances: vec![20, 10],
            },
        ]);
        // Node 1 does not exist on this machine, so only node 0 can be built for real.
        let pools = NumaPools::new(&topo, &[0, 0], 2, 4096, 4096).unwrap();
        assert_eq!(pools.pools().len(), 1);
        assert_eq!(pools.pool_for(0).unwrap().node(), 0);
        assert!(pools.pool_for(1).is_none());
        assert_eq!(pools.stats().count(), 1);
        assert!(matches!(
            NumaPools::new(&topo, &[0, 2], 2, 4096, 4096),
            Err(PoolError::UnknownNode { node: 2 })
        ));
    }
}
