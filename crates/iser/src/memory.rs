//! Registered memory owned by the transport (receive and send buffers, the
//! initiator's data area) and registration of the affinity crate's
//! NUMA-local buffer pools (RFC 7145 §4.2: buffers advertised or used by
//! RDMA operations must be registered with the RNIC).

use core::ptr::NonNull;
use std::mem::ManuallyDrop;

use crate::verbs::{Access, MemoryRegion, ProtectionDomain, Sge, VerbsError};

/// Heap memory registered for its whole life: deregistered before it is
/// freed.
///
/// Its bytes are reached by the device (or soft fabric) through the region's
/// keys, so Rust code reads and writes them only through the `unsafe`
/// accessors, whose contract is the protocol rule "not while an operation
/// that may access them is outstanding".
pub struct RegisteredBuffer<M: MemoryRegion> {
    mr: ManuallyDrop<M>,
    mem: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively (it is never aliased by
// a safe reference); moving it to another thread moves that ownership. The
// region handle is `Send` by the `MemoryRegion` bound.
unsafe impl<M: MemoryRegion> Send for RegisteredBuffer<M> {}

impl<M: MemoryRegion> core::fmt::Debug for RegisteredBuffer<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegisteredBuffer")
            .field("addr", &self.mr.addr())
            .field("len", &self.len)
            .field("access", &self.mr.access())
            .finish_non_exhaustive()
    }
}

impl<M: MemoryRegion> RegisteredBuffer<M> {
    /// Allocates `len` zeroed bytes (at least 1) and registers them with `access`.
    pub fn new<P: ProtectionDomain<Mr = M>>(
        pd: &P,
        len: usize,
        access: Access,
    ) -> Result<Self, VerbsError> {
        let len = len.max(1);
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let raw: *mut [u8] = Box::into_raw(boxed);
        // SAFETY: `Box::into_raw` never returns null.
        let mem = unsafe { NonNull::new_unchecked(raw.cast::<u8>()) };
        // SAFETY: `mem..mem+len` is a live heap allocation owned by the value we
        // build; `Drop` deregisters the region before freeing it, and the
        // allocation never moves. Rust code touches its bytes only through the
        // `unsafe` accessors below, whose callers promise no operation that may
        // access them is outstanding.
        let mr = match unsafe { pd.register(mem.as_ptr(), len, access) } {
            Ok(mr) => mr,
            Err(e) => {
                // SAFETY: `raw` came from `Box::into_raw` above and was not freed.
                drop(unsafe { Box::from_raw(raw) });
                return Err(e);
            }
        };
        Ok(Self {
            mr: ManuallyDrop::new(mr),
            mem,
            len,
        })
    }

    /// The memory region.
    pub fn mr(&self) -> &M {
        &self.mr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (buffers have at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A scatter/gather entry for `len` bytes at `offset`.
    pub fn sge(&self, offset: usize, len: usize) -> Option<Sge> {
        self.mr.sge(offset, u32::try_from(len).ok()?)
    }

    fn check(&self, offset: usize, len: usize) -> Option<()> {
        (offset.checked_add(len)? <= self.len).then_some(())
    }

    /// Reads `len` bytes at `offset`; `None` when out of range.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no work request that writes these bytes
    /// may be outstanding (a receive, an RDMA Read sink) and no remote write
    /// access to them may be possible (the region was not registered with
    /// REMOTE_WRITE and no memory window granting it is bound over them).
    pub unsafe fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.check(offset, len)?;
        // SAFETY: in range of the live allocation (checked); the caller
        // guarantees no concurrent writer.
        Some(unsafe { core::slice::from_raw_parts(self.mem.as_ptr().add(offset), len) })
    }

    /// Writes access to `len` bytes at `offset`; `None` when out of range.
    ///
    /// # Safety
    ///
    /// As for [`bytes`](Self::bytes), and in addition no work request that
    /// reads these bytes (a Send, an RDMA Write source) may be outstanding and
    /// no remote read access may be possible while the slice lives.
    pub unsafe fn bytes_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        self.check(offset, len)?;
        // SAFETY: in range of the live allocation (checked); `&mut self` rules
        // out other Rust references made through this buffer, the caller rules
        // out the device.
        Some(unsafe { core::slice::from_raw_parts_mut(self.mem.as_ptr().add(offset), len) })
    }
}

impl<M: MemoryRegion> Drop for RegisteredBuffer<M> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; the region goes before the memory.
        unsafe { ManuallyDrop::drop(&mut self.mr) };
        let raw = core::ptr::slice_from_raw_parts_mut(self.mem.as_ptr(), self.len);
        // SAFETY: `raw` is the allocation made by `Box::into_raw` in `new`,
        // freed only here; nothing can reach it through the deregistered region.
        drop(unsafe { Box::from_raw(raw) });
    }
}

/// A NUMA-local buffer pool ([`rtgt_affinity::NodePool`]) registered as
/// one memory region, so every pool buffer can be named in work requests by
/// the region's lkey (the engine's Data-In sources and R2T sinks).
pub struct PoolRegistration<M: MemoryRegion> {
    mr: M,
    // Keeps the mapping alive for as long as it is registered.
    _pool: rtgt_affinity::NodePool,
}

impl<M: MemoryRegion> core::fmt::Debug for PoolRegistration<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolRegistration")
            .field("addr", &self.mr.addr())
            .field("len", &self.mr.len())
            .finish_non_exhaustive()
    }
}

impl<M: MemoryRegion> PoolRegistration<M> {
    /// Registers the whole region of `pool` with LOCAL_WRITE (targets never
    /// grant remote access: they are the RDMA requester).
    ///
    /// # Safety
    ///
    /// Pool buffers are handed out as safe `PoolBuf`s. The caller must not
    /// read or write (through a `PoolBuf` or otherwise) a buffer while a work
    /// request naming it is outstanding: the engine holds a buffer used as a
    /// Data-In source or R2T sink, untouched, until the transport reports the
    /// operation complete (`TargetEvent::DataSent` / `SolicitedData`) or,
    /// after the connection ended, until `IserTarget::rdma_ops_in_flight` is
    /// 0 or the connection is dropped (flushed operations report no event).
    pub unsafe fn new<P: ProtectionDomain<Mr = M>>(
        pd: &P,
        pool: &rtgt_affinity::NodePool,
    ) -> Result<Self, VerbsError> {
        // SAFETY: the region is a mapping that stays in place while any clone of
        // the pool lives; we keep one until after the region is deregistered
        // (`mr` is declared, so dropped, before `_pool`). Access discipline is
        // the caller's contract above.
        let mr =
            unsafe { pd.register(pool.region_base(), pool.region_len(), Access::LOCAL_WRITE)? };
        Ok(Self {
            mr,
            _pool: pool.clone(),
        })
    }

    /// The region (its lkey names pool buffers in work requests).
    pub fn mr(&self) -> &M {
        &self.mr
    }

    /// A scatter/gather entry for `len` bytes at `offset` of the buffer at
    /// `ptr` (from `PoolBuf::as_ptr`); `None` when outside the pool.
    pub fn sge_for(&self, ptr: *const u8, offset: usize, len: u32) -> Option<Sge> {
        let base = self.mr.addr();
        let at = (ptr as usize as u64).checked_sub(base)?;
        self.mr
            .sge(usize::try_from(at).ok()?.checked_add(offset)?, len)
    }
}
