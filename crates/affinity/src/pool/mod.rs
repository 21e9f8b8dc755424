//! NUMA-local pools of fixed-size I/O buffers.
//!
//! Each [`NodePool`] owns one region (see `region`) cut into `buffer_count` buffers of
//! `buffer_size` bytes, bound to one NUMA node. The free list is a lock-free bounded queue
//! (crossbeam's `ArrayQueue`); each reactor puts a [`ReactorCache`] in front of it, a plain
//! per-thread stack that is refilled and drained in batches, so the per-I/O path touches no
//! shared cache line at all. A single shared, locked pool capped SPDK's write IOPS on many
//! cores; this layout avoids that. The region is contiguous, so the engine can register it
//! with io_uring (`io_uring_register(2)`, `IORING_REGISTER_BUFFERS`) as one iovec per buffer,
//! buffer `i` being fixed-buffer index `i`.

mod cache;
mod region;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

pub use cache::{PoolBuf, ReactorCache};
pub use region::{Backing, node_of_address};

use crate::config::{BUFFER_ALIGN, HugePages, MAX_BUFFER_COUNT, MAX_BUFFER_SIZE};
use crate::error::{AffinityError, ConfigError, Result};
use cache::CacheCounters;
use region::Region;

/// How to build a [`NodePool`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Node to bind the memory to; `None` leaves placement to the kernel.
    pub node: Option<u32>,
    /// Bytes per buffer (multiple of 4096, at most 16 MiB).
    pub buffer_size: usize,
    /// Number of buffers (1..=16384).
    pub buffer_count: u32,
    /// Huge-page policy.
    pub huge_pages: HugePages,
    /// Touch every page at creation so memory is allocated (on the node) up front.
    pub prefault: bool,
}

/// Counters of a pool, summed over its reactor caches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// The node the memory is bound to (`None`: unbound).
    pub node: Option<u32>,
    /// What backs the pages.
    pub backing: Backing,
    /// Buffers in the pool.
    pub buffers: u32,
    /// Bytes per buffer.
    pub buffer_size: usize,
    /// Gets served from a reactor cache.
    pub hits: u64,
    /// Gets that had to refill from the shared pool (including exhausted ones).
    pub misses: u64,
    /// Gets that found no buffer at all.
    pub exhausted: u64,
    /// Buffers handed out and not yet returned.
    pub in_use: u64,
    /// Most buffers ever out of the shared pool at once (in caches or in use).
    pub high_water: usize,
    /// Buffers currently in the shared free queue.
    pub free_shared: usize,
}

/// Per-cache counters, readable from any thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Gets served locally.
    pub hits: u64,
    /// Gets that refilled from the shared pool.
    pub misses: u64,
    /// Gets that found no buffer.
    pub exhausted: u64,
    /// Buffers from this cache in use now.
    pub in_use: u64,
    /// Most buffers from this cache ever in use at once.
    pub high_water: u64,
}

pub(crate) struct Shared {
    region: Region,
    buffer_size: usize,
    count: u32,
    free: ArrayQueue<u32>,
    high_water: AtomicUsize,
    refills: AtomicU64,
    caches: Mutex<Vec<Arc<CacheCounters>>>,
}

impl Shared {
    /// Address of buffer `index` (< count, so inside the region: checked in `NodePool::new`).
    fn buffer_ptr(&self, index: u32) -> NonNull<u8> {
        self.region
            .ptr_at(index as usize * self.buffer_size)
            .unwrap_or_else(|| self.region.base())
    }

    fn note_taken(&self) {
        let taken = self.count as usize - self.free.len();
        self.high_water.fetch_max(taken, Ordering::Relaxed);
    }
}

/// A node-local pool of fixed-size buffers, shared (cheaply cloned) by the reactors of a node.
///
/// ```
/// use rtgt_affinity::{HugePages, NodePool, PoolConfig};
///
/// let pool = NodePool::new(&PoolConfig {
///     node: Some(0),
///     buffer_size: 64 * 1024,
///     buffer_count: 8,
///     huge_pages: HugePages::Off,
///     prefault: true,
/// })?;
/// // On the reactor thread:
/// let cache = pool.cache(4);
/// let mut buf = cache.get().expect("a free buffer");
/// buf[..5].copy_from_slice(b"hello");
/// assert_eq!(buf.len(), 64 * 1024);
/// assert!(buf.index() < 8);
/// // io_uring registration: one iovec per buffer, fixed-buffer index = buf.index().
/// assert_eq!(pool.iovecs().len(), 8);
/// drop(buf); // back into the reactor's cache
/// assert_eq!(pool.stats().in_use, 0);
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
#[derive(Clone)]
pub struct NodePool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePool")
            .field("node", &self.shared.region.bound_node())
            .field("buffers", &self.shared.count)
            .field("buffer_size", &self.shared.buffer_size)
            .field("backing", &self.shared.region.backing())
            .finish_non_exhaustive()
    }
}

impl NodePool {
    /// Maps, binds and (optionally) pre-faults the pool's memory.
    pub fn new(config: &PoolConfig) -> Result<Self> {
        let size = config.buffer_size;
        if size == 0 || size % BUFFER_ALIGN as usize != 0 || size > MAX_BUFFER_SIZE as usize {
            return Err(ConfigError::new(
                "performance.buffer_size",
                format!(
                    "{size} must be a multiple of {BUFFER_ALIGN} bytes between {BUFFER_ALIGN} and {MAX_BUFFER_SIZE}"
                ),
            )
            .into());
        }
        let count = config.buffer_count;
        if count == 0 || count > MAX_BUFFER_COUNT {
            return Err(ConfigError::new(
                "performance.buffer_count",
                format!("{count} must be between 1 and {MAX_BUFFER_COUNT}"),
            )
            .into());
        }
        if let Some(n) = config.node {
            let nodes = std::path::Path::new("/sys/devices/system/node");
            if nodes.exists() && !nodes.join(format!("node{n}")).exists() {
                return Err(AffinityError::UnknownNode {
                    node: n,
                    nodes: std::fs::read_to_string(nodes.join("online"))
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_default(),
                });
            }
        }
        // Both factors are bounded (16 MiB x 16384), so this cannot overflow on 64-bit.
        let total = size * count as usize;
        let region = Region::map(total, config.huge_pages, config.node, config.prefault)?;
        if region.len() < total {
            return Err(AffinityError::Placement(format!(
                "mapped {} bytes for a {total}-byte pool",
                region.len()
            )));
        }
        if let Some(note) = region.note() {
            tracing::info!(node = ?config.node, "buffer pool: {note}");
        }
        let free = ArrayQueue::new(count as usize);
        for i in 0..count {
            // Capacity is exactly `count`, so every push fits.
            let _ = free.push(i);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                region,
                buffer_size: size,
                count,
                free,
                high_water: AtomicUsize::new(0),
                refills: AtomicU64::new(0),
                caches: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A cache for the calling reactor thread holding up to `capacity` idle buffers
    /// (clamped to 2..=buffer_count). Create it on the thread that will use it.
    pub fn cache(&self, capacity: usize) -> ReactorCache {
        let capacity = capacity.clamp(2, (self.shared.count as usize).max(2));
        let counters = Arc::new(CacheCounters::default());
        self.shared
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&counters));
        ReactorCache::new(Arc::clone(&self.shared), capacity, counters)
    }

    /// The node the memory is bound to (`None` when unbound).
    pub fn node(&self) -> Option<u32> {
        self.shared.region.bound_node()
    }

    /// What backs the pages.
    pub fn backing(&self) -> Backing {
        self.shared.region.backing()
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.shared.buffer_size
    }

    /// Number of buffers.
    pub fn buffer_count(&self) -> u32 {
        self.shared.count
    }

    /// Start of the buffer area (buffer 0). Valid as long as any clone of this pool, any
    /// cache or any buffer from it is alive; the engine must unregister the region from
    /// io_uring before dropping the last of them.
    pub fn region_base(&self) -> *mut u8 {
        self.shared.region.base().as_ptr()
    }

    /// Length of the buffer area: `buffer_size * buffer_count`.
    pub fn region_len(&self) -> usize {
        self.shared.buffer_size * self.shared.count as usize
    }

    /// Address of buffer `index`, or `None` when out of range.
    pub fn buffer_ptr(&self, index: u32) -> Option<NonNull<u8>> {
        (index < self.shared.count).then(|| self.shared.buffer_ptr(index))
    }

    /// One iovec per buffer, in index order, for `IORING_REGISTER_BUFFERS`.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.shared.count)
            .map(|i| libc::iovec {
                iov_base: self.shared.buffer_ptr(i).as_ptr().cast(),
                iov_len: self.shared.buffer_size,
            })
            .collect()
    }

    /// Counters summed over all caches created from this pool.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            node: self.node(),
            backing: self.backing(),
            buffers: self.shared.count,
            buffer_size: self.shared.buffer_size,
            hits: 0,
            misses: 0,
            exhausted: 0,
            in_use: 0,
            high_water: self.shared.high_water.load(Ordering::Relaxed),
            free_shared: self.shared.free.len(),
        };
        for c in self
            .shared
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let s = c.snapshot();
            stats.hits += s.hits;
            stats.misses += s.misses;
            stats.exhausted += s.exhausted;
            stats.in_use += s.in_use;
        }
        stats
    }

    /// Times a cache refilled from the shared queue.
    pub fn refills(&self) -> u64 {
        self.shared.refills.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(count: u32) -> NodePool {
        NodePool::new(&PoolConfig {
            node: None,
            buffer_size: 4096,
            buffer_count: count,
            huge_pages: HugePages::Off,
            prefault: false,
        })
        .unwrap()
    }

    #[test]
    fn bad_sizes_name_the_key() {
        let mut cfg = PoolConfig {
            node: None,
            buffer_size: 100,
            buffer_count: 1,
            huge_pages: HugePages::Off,
            prefault: false,
        };
        let err = NodePool::new(&cfg).unwrap_err();
        assert!(matches!(err, AffinityError::Config(ref c) if c.key == "performance.buffer_size"));
        cfg.buffer_size = 4096;
        cfg.buffer_count = 0;
        let err = NodePool::new(&cfg).unwrap_err();
        assert!(matches!(err, AffinityError::Config(ref c) if c.key == "performance.buffer_count"));
        cfg.buffer_count = 1;
        cfg.node = Some(999);
        assert!(matches!(
            NodePool::new(&cfg).unwrap_err(),
            AffinityError::UnknownNode { node: 999, .. }
        ));
    }

    #[test]
    fn buffers_tile_the_region() {
        let p = pool(4);
        let iov = p.iovecs();
        assert_eq!(iov.len(), 4);
        for (i, v) in iov.iter().enumerate() {
            assert_eq!(v.iov_base as usize, p.region_base() as usize + i * 4096);
            assert_eq!(v.iov_len, 4096);
        }
        assert_eq!(p.region_len(), 4 * 4096);
        assert!(p.buffer_ptr(3).is_some());
        assert!(p.buffer_ptr(4).is_none());
    }

    #[test]
    fn exhaustion_and_return() {
        let pool = pool(3);
        let cache = pool.cache(2);
        let first = cache.get().unwrap();
        let second = cache.get().unwrap();
        let third = cache.get().unwrap();
        assert!(cache.get().is_none());
        let mut indices = [first.index(), second.index(), third.index()];
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2]);
        let stats = pool.stats();
        assert_eq!(stats.in_use, 3);
        assert_eq!(stats.exhausted, 1);
        assert_eq!(stats.high_water, 3);
        drop((first, second, third));
        let stats = pool.stats();
        assert_eq!(stats.in_use, 0);
        // Cache capacity 2: the third buffer spilled back to the shared queue.
        assert!(stats.free_shared >= 1);
        let again = cache.get().unwrap();
        assert!(again.index() < 3);
        assert_eq!(cache.stats().high_water, 3);
    }

    #[test]
    fn dropping_a_cache_returns_its_buffers() {
        let p = pool(8);
        {
            let c = p.cache(8);
            let held: Vec<_> = (0..5).filter_map(|_| c.get()).collect();
            assert_eq!(held.len(), 5);
        }
        assert_eq!(p.stats().free_shared, 8);
    }
}
