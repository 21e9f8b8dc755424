//! The per-reactor buffer cache and the buffer handle.
//!
//! A reactor owns its cache (`!Send`): gets and returns are a push or pop on a local stack,
//! with no atomic read-modify-write and no allocation (the stack is sized once). Only when
//! the stack is empty does a get refill half a cache's worth from the node's lock-free
//! queue, and only when it overflows does a return spill half of it back.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CacheStats, Shared};

/// Counters written only by the owning reactor thread (plain load + store, no RMW) and read
/// by anyone for statistics. Aligned to its own cache lines so two reactors' counters never
/// share one (false sharing would put a cross-core transfer on every buffer get).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    exhausted: AtomicU64,
    in_use: AtomicU64,
    high_water: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl CacheCounters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            exhausted: self.exhausted.load(Ordering::Relaxed),
            in_use: self.in_use.load(Ordering::Relaxed),
            high_water: self.high_water.load(Ordering::Relaxed),
        }
    }
}

struct CacheInner {
    shared: Arc<Shared>,
    local: RefCell<Vec<u32>>,
    capacity: usize,
    batch: usize,
    counters: Arc<CacheCounters>,
}

impl CacheInner {
    fn release(&self, index: u32) {
        let c = &self.counters;
        c.in_use.store(
            c.in_use.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
        let Ok(mut local) = self.local.try_borrow_mut() else {
            // Unreachable by construction (no buffer is dropped while the stack is
            // borrowed), but returning straight to the shared queue is always correct.
            let _ = self.shared.free.push(index);
            return;
        };
        if local.len() >= self.capacity {
            let keep = local.len() - self.batch;
            for i in local.drain(keep..) {
                // The queue holds every buffer of the pool at most once, so it has room.
                let _ = self.shared.free.push(i);
            }
        }
        local.push(index);
    }
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        for i in self.local.get_mut().drain(..) {
            let _ = self.shared.free.push(i);
        }
    }
}

/// A reactor's private front to a [`NodePool`](super::NodePool); not `Send`, so create it
/// on the reactor thread ([`NodePool::cache`](super::NodePool::cache)).
pub struct ReactorCache {
    inner: Rc<CacheInner>,
}

impl std::fmt::Debug for ReactorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorCache")
            .field("capacity", &self.inner.capacity)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ReactorCache {
    pub(super) fn new(shared: Arc<Shared>, capacity: usize, counters: Arc<CacheCounters>) -> Self {
        Self {
            inner: Rc::new(CacheInner {
                shared,
                local: RefCell::new(Vec::with_capacity(capacity + 1)),
                capacity,
                batch: (capacity / 2).max(1),
                counters,
            }),
        }
    }

    /// Takes a buffer, or `None` when the whole pool is in use.
    pub fn get(&self) -> Option<PoolBuf> {
        let inner = &*self.inner;
        let c = &inner.counters;
        let index = {
            let mut local = inner.local.try_borrow_mut().ok()?;
            if let Some(i) = local.pop() {
                bump(&c.hits);
                i
            } else {
                bump(&c.misses);
                for _ in 0..inner.batch {
                    match inner.shared.free.pop() {
                        Some(i) => local.push(i),
                        None => break,
                    }
                }
                inner.shared.refills.fetch_add(1, Ordering::Relaxed);
                inner.shared.note_taken();
                if let Some(i) = local.pop() {
                    i
                } else {
                    bump(&c.exhausted);
                    return None;
                }
            }
        };
        let in_use = c.in_use.load(Ordering::Relaxed) + 1;
        c.in_use.store(in_use, Ordering::Relaxed);
        if in_use > c.high_water.load(Ordering::Relaxed) {
            c.high_water.store(in_use, Ordering::Relaxed);
        }
        Some(PoolBuf {
            ptr: inner.shared.buffer_ptr(index),
            len: inner.shared.buffer_size,
            index,
            cache: Rc::clone(&self.inner),
        })
    }

    /// This cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Idle buffers held locally right now.
    pub fn idle(&self) -> usize {
        self.inner.local.try_borrow().map_or(0, |l| l.len())
    }
}

/// An exclusively owned buffer from a pool; returns to its reactor's cache when dropped.
///
/// `index()` is the buffer's position in the pool, which is its io_uring fixed-buffer index
/// when the engine registered [`NodePool::iovecs`](super::NodePool::iovecs).
pub struct PoolBuf {
    cache: Rc<CacheInner>,
    index: u32,
    ptr: NonNull<u8>,
    len: usize,
}

impl PoolBuf {
    /// Position in the pool (fixed-buffer index).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Length in bytes (the pool's buffer size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: pool buffers are at least 4 KiB.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address, for submitting I/O into the buffer.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start address, writable.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Deref for PoolBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is buffer `index` of a live mapping (kept alive through
        // cache -> Shared -> Region); the index is owned by this handle alone (the free queue,
        // caches and handles hold each index exactly once); anonymous memory is zero-filled,
        // so the bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.cache.release(self.index);
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("index", &self.index)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
