//! Task buffers for a target engine, in registered memory (RFC 7145 §4.2:
//! memory an RDMA operation uses must be registered with the RNIC; §7.3.5
//! Data-In is an RDMA Write *from* the task buffer, §7.3.6 an R2T is an
//! RDMA Read *into* it).
//!
//! [`TaskMemory`] hands out [`TaskBuffer`]s: buffers of the reactor's
//! NUMA-local pool ([`rtgt_affinity::NodePool`], registered once as one
//! region through [`PoolRegistration`]) when the task fits a pool buffer,
//! else heap memory registered for the task's lifetime.
//!
//! Registered memory may be read or written by the device whenever a work
//! request naming it is outstanding, so a buffer is *lent* to the transport
//! for each RDMA operation ([`IserTarget::send_data_in`] lends it for
//! reading, [`IserTarget::send_r2t`] for writing) and the lease ends only
//! when the operation has completed, was flushed, or its queue pair was
//! destroyed. While lent for writing the engine cannot see the bytes; while
//! lent at all it cannot change them ([`TaskBuffer::as_slice`] and
//! [`TaskBuffer::as_mut_slice`] return `None`). A buffer dropped while lent
//! is kept aside by its [`TaskMemory`] until every lease has ended, so the
//! memory is never reused under the device. This makes the engine's side
//! free of `unsafe`.
//!
//! ```
//! use std::sync::Arc;
//! use rtgt_iser::soft::SoftFabric;
//! use rtgt_iser::taskbuf::TaskMemory;
//! use rtgt_iser::verbs::Verbs;
//!
//! let fabric = SoftFabric::new();
//! let pd = Arc::new(fabric.alloc_pd()?);
//! let memory = TaskMemory::<SoftFabric>::new(pd);
//! let mut buf = memory.alloc(4096)?;
//! buf.as_mut_slice().unwrap()[..5].copy_from_slice(b"hello");
//! assert_eq!(&buf.as_slice().unwrap()[..5], b"hello");
//! assert!(!buf.is_lent());
//! # Ok::<(), rtgt_iser::verbs::VerbsError>(())
//! ```
//!
//! [`IserTarget::send_data_in`]: crate::IserTarget::send_data_in
//! [`IserTarget::send_r2t`]: crate::IserTarget::send_r2t

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rtgt_affinity::{NodePool, PoolBuf, ReactorCache};

use crate::memory::{PoolRegistration, RegisteredBuffer};
use crate::verbs::{Access, MemoryRegion, Sge, Verbs, VerbsError};

/// How many operations are reading and writing a buffer.
#[derive(Debug, Default)]
struct LendCount {
    /// Device reads outstanding (RDMA Write sources).
    reads: AtomicU32,
    /// Device writes outstanding (RDMA Read sinks).
    writes: AtomicU32,
}

impl LendCount {
    fn idle(&self) -> bool {
        self.reads.load(Ordering::Acquire) == 0 && self.writes.load(Ordering::Acquire) == 0
    }
}

/// One RDMA operation's hold on a buffer; the transport keeps it until the
/// operation is over (completed, flushed, or its queue pair destroyed).
#[derive(Debug)]
pub struct Lease {
    count: Arc<LendCount>,
    write: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let c = if self.write {
            &self.count.writes
        } else {
            &self.count.reads
        };
        c.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Mem<M: MemoryRegion> {
    /// A pool buffer in the pool's registered region.
    Pool { buf: PoolBuf, lkey: u32, len: usize },
    /// Heap memory registered for this buffer alone.
    Heap(RegisteredBuffer<M>),
}

impl<M: MemoryRegion> Mem<M> {
    fn len(&self) -> usize {
        match self {
            Self::Pool { len, .. } => *len,
            Self::Heap(b) => b.len(),
        }
    }

    fn sge(&self, offset: usize, len: usize) -> Option<Sge> {
        let len32 = u32::try_from(len).ok()?;
        if offset.checked_add(len)? > self.len() {
            return None;
        }
        match self {
            Self::Pool { buf, lkey, .. } => Some(Sge {
                addr: (buf.as_ptr() as usize as u64).checked_add(offset as u64)?,
                len: len32,
                lkey: *lkey,
            }),
            Self::Heap(b) => b.sge(offset, len),
        }
    }
}

type Quarantine<M> = RefCell<Vec<(Mem<M>, Arc<LendCount>)>>;

/// Registered memory for the task buffers of one protection domain (one
/// reactor's connections on one device). Not `Send`: it lives on the
/// reactor thread, like the pool cache in front of it.
pub struct TaskMemory<V: Verbs> {
    pd: Arc<V::Pd>,
    pool: Option<(PoolRegistration<V::Mr>, ReactorCache, usize)>,
    quarantine: Rc<Quarantine<V::Mr>>,
}

impl<V: Verbs> core::fmt::Debug for TaskMemory<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskMemory")
            .field("pool_buffer_size", &self.pool_buffer_size())
            .field("kept_aside", &self.kept_aside())
            .finish_non_exhaustive()
    }
}

impl<V: Verbs> TaskMemory<V> {
    /// Task memory in `pd` without a pool: every buffer is heap memory
    /// registered for it.
    pub fn new(pd: Arc<V::Pd>) -> Self {
        Self {
            pd,
            pool: None,
            quarantine: Rc::new(RefCell::new(Vec::new())),
        }
    }

    /// Task memory in `pd`: `pool`'s buffers (registered here as one region)
    /// for tasks up to its buffer size, registered heap memory otherwise.
    pub fn with_pool(pd: Arc<V::Pd>, pool: Option<&NodePool>) -> Result<Self, VerbsError> {
        let pool = match pool {
            Some(p) => {
                // SAFETY: pool buffers reach Rust code only through `TaskBuffer`,
                // which refuses access while a lease (an outstanding work request
                // naming the buffer) exists and keeps a buffer dropped while lent
                // aside until its leases end; leases end only when the operation
                // is over or its queue pair is gone. Buffers taken from the pool
                // by other code are never named in work requests of this region.
                let reg = unsafe { PoolRegistration::new(&*pd, p)? };
                Some((reg, p.cache(64), p.buffer_size()))
            }
            None => None,
        };
        Ok(Self {
            pd,
            pool,
            quarantine: Rc::new(RefCell::new(Vec::new())),
        })
    }

    /// The pool's buffer size (0 without a pool): larger tasks get heap memory.
    pub fn pool_buffer_size(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.2)
    }

    /// Buffers dropped while lent, waiting for their operations to end.
    pub fn kept_aside(&self) -> usize {
        self.quarantine.try_borrow().map_or(0, |q| q.len())
    }

    /// Frees buffers kept aside whose operations have all ended.
    pub fn reclaim(&self) {
        if let Ok(mut q) = self.quarantine.try_borrow_mut() {
            q.retain(|(_, count)| !count.idle());
        }
    }

    /// A buffer of at least `len` bytes (at least 1), zeroed when it is heap
    /// memory; a pool buffer keeps what its last user left in it.
    pub fn alloc(&self, len: usize) -> Result<TaskBuffer<V::Mr>, VerbsError> {
        self.reclaim();
        let len = len.max(1);
        let from_pool = self.pool.as_ref().and_then(|(reg, cache, size)| {
            if len > *size {
                return None;
            }
            let buf = cache.get()?;
            let lkey = reg.sge_for(buf.as_ptr(), 0, 1)?.lkey;
            Some(Mem::Pool { buf, lkey, len })
        });
        let mem = match from_pool {
            Some(m) => m,
            None => Mem::Heap(RegisteredBuffer::new(&*self.pd, len, Access::LOCAL_WRITE)?),
        };
        Ok(TaskBuffer {
            mem: Some(mem),
            count: Arc::new(LendCount::default()),
            quarantine: Rc::downgrade(&self.quarantine),
        })
    }
}

impl<V: Verbs> Drop for TaskMemory<V> {
    fn drop(&mut self) {
        // Memory still lent must not be freed or reused: leak it.
        if let Ok(mut q) = self.quarantine.try_borrow_mut() {
            for (mem, count) in q.drain(..) {
                if count.idle() {
                    drop(mem);
                } else {
                    core::mem::forget(mem);
                }
            }
        }
    }
}

/// A task's buffer in registered memory (see the [module documentation](self)).
pub struct TaskBuffer<M: MemoryRegion> {
    mem: Option<Mem<M>>,
    count: Arc<LendCount>,
    quarantine: Weak<Quarantine<M>>,
}

impl<M: MemoryRegion> core::fmt::Debug for TaskBuffer<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskBuffer")
            .field("len", &self.len())
            .field("pool", &matches!(self.mem, Some(Mem::Pool { .. })))
            .field("reads", &self.count.reads.load(Ordering::Relaxed))
            .field("writes", &self.count.writes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<M: MemoryRegion> TaskBuffer<M> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mem.as_ref().map_or(0, Mem::len)
    }

    /// Whether the buffer has no bytes (never: buffers have at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an RDMA operation still holds the buffer.
    pub fn is_lent(&self) -> bool {
        !self.count.idle()
    }

    /// Whether the buffer is a pool buffer (not heap memory registered for it).
    pub fn is_pool(&self) -> bool {
        matches!(self.mem, Some(Mem::Pool { .. }))
    }

    /// The bytes, unless an RDMA Read is writing them.
    pub fn as_slice(&self) -> Option<&[u8]> {
        if self.count.writes.load(Ordering::Acquire) != 0 {
            return None;
        }
        match self.mem.as_ref()? {
            Mem::Pool { buf, len, .. } => buf.get(..*len),
            // SAFETY: no RDMA Read (device write) into the buffer is outstanding
            // (checked above; a new one needs `&mut self`, which this borrow rules
            // out), and the region grants no remote access.
            Mem::Heap(b) => unsafe { b.bytes(0, b.len()) },
        }
    }

    /// The bytes, writable, unless an RDMA operation holds the buffer.
    pub fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        if self.is_lent() {
            return None;
        }
        match self.mem.as_mut()? {
            Mem::Pool { buf, len, .. } => buf.get_mut(..*len),
            Mem::Heap(b) => {
                let n = b.len();
                // SAFETY: no operation holds the buffer (checked above; new leases
                // need a borrow of `self`, which this `&mut` rules out) and the
                // region grants no remote access.
                unsafe { b.bytes_mut(0, n) }
            }
        }
    }

    /// Lends `len` bytes at `offset` to a device read (an RDMA Write source).
    pub(crate) fn lend_for_read(&self, offset: usize, len: usize) -> Option<(Sge, Lease)> {
        if self.count.writes.load(Ordering::Acquire) != 0 {
            return None;
        }
        let sge = self.mem.as_ref()?.sge(offset, len)?;
        self.count.reads.fetch_add(1, Ordering::AcqRel);
        Some((
            sge,
            Lease {
                count: Arc::clone(&self.count),
                write: false,
            },
        ))
    }

    /// Lends `len` bytes at `offset` to a device write (an RDMA Read sink).
    pub(crate) fn lend_for_write(&mut self, offset: usize, len: usize) -> Option<(Sge, Lease)> {
        if self.is_lent() {
            return None;
        }
        let sge = self.mem.as_ref()?.sge(offset, len)?;
        self.count.writes.fetch_add(1, Ordering::AcqRel);
        Some((
            sge,
            Lease {
                count: Arc::clone(&self.count),
                write: true,
            },
        ))
    }
}

impl<M: MemoryRegion> Drop for TaskBuffer<M> {
    fn drop(&mut self) {
        let Some(mem) = self.mem.take() else {
            return;
        };
        if self.count.idle() {
            return;
        }
        // Still lent: the device may touch the memory until the leases end.
        match self.quarantine.upgrade() {
            Some(q) => match q.try_borrow_mut() {
                Ok(mut q) => q.push((mem, Arc::clone(&self.count))),
                Err(_) => core::mem::forget(mem),
            },
            None => core::mem::forget(mem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::SoftFabric;
    use rtgt_affinity::{HugePages, PoolConfig};

    fn memory(pool: Option<&NodePool>) -> TaskMemory<SoftFabric> {
        let fabric = SoftFabric::new();
        TaskMemory::with_pool(Arc::new(fabric.alloc_pd().unwrap()), pool).unwrap()
    }

    #[test]
    fn a_lent_buffer_cannot_be_touched_and_is_kept_aside_when_dropped() {
        let m = memory(None);
        let mut b = m.alloc(8192).unwrap();
        assert!(!b.is_pool());
        assert_eq!(b.len(), 8192);
        let (sge, lease) = b.lend_for_write(4096, 4096).unwrap();
        assert_eq!(sge.len, 4096);
        assert!(b.as_slice().is_none(), "the device is writing it");
        assert!(b.as_mut_slice().is_none());
        assert!(b.lend_for_read(0, 1).is_none());
        drop(b);
        assert_eq!(m.kept_aside(), 1);
        m.reclaim();
        assert_eq!(m.kept_aside(), 1, "the lease is still held");
        drop(lease);
        m.reclaim();
        assert_eq!(m.kept_aside(), 0);
    }

    #[test]
    fn reads_may_share_the_buffer_with_the_device() {
        let m = memory(None);
        let mut b = m.alloc(100).unwrap();
        b.as_mut_slice().unwrap().fill(7);
        let (_, l1) = b.lend_for_read(0, 50).unwrap();
        let (_, l2) = b.lend_for_read(50, 50).unwrap();
        assert_eq!(b.as_slice().unwrap()[99], 7);
        assert!(b.as_mut_slice().is_none());
        assert!(b.lend_for_read(60, 50).is_none(), "out of range");
        drop((l1, l2));
        assert!(b.as_mut_slice().is_some());
    }

    #[test]
    fn pool_buffers_carry_the_pool_region_key() {
        let pool = NodePool::new(&PoolConfig {
            node: None,
            buffer_size: 64 * 1024,
            buffer_count: 2,
            huge_pages: HugePages::Off,
            prefault: false,
        })
        .unwrap();
        let m = memory(Some(&pool));
        assert_eq!(m.pool_buffer_size(), 64 * 1024);
        let a = m.alloc(4096).unwrap();
        assert!(a.is_pool());
        assert_eq!(a.len(), 4096);
        let big = m.alloc(128 * 1024).unwrap();
        assert!(!big.is_pool(), "larger than a pool buffer");
        let (sa, _la) = a.lend_for_read(0, 4096).unwrap();
        let (sb, _lb) = big.lend_for_read(0, 1).unwrap();
        assert_ne!(sa.lkey, sb.lkey);
        let _b = m.alloc(1).unwrap();
        let c = m.alloc(1).unwrap();
        assert!(!c.is_pool(), "the pool is exhausted: heap memory instead");
    }
}
