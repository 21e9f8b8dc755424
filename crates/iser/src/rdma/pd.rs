//! Protection domains, memory registration and type 2 memory windows over
//! libibverbs (RFC 7145 §4.2: buffers used in RDMA operations are
//! registered; §7.2.1: the initiator advertises STags, here windows bound
//! over its registered data area; the affinity crate's NUMA pools are
//! registered as one region through [`crate::memory::PoolRegistration`]).

use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::{ibv_mr, ibv_mw, ibv_mw_type, ibv_pd};

use super::convert::mr_access;
use super::device::DeviceInner;
use super::{errno_error, ffi, os_error};
use crate::verbs::{Access, MemoryRegion, MemoryWindow, ProtectionDomain, VerbsError};

/// The domain shared by its regions, windows and queue pairs.
#[derive(Debug)]
pub(crate) struct PdInner {
    pub pd: NonNull<ibv_pd>,
    pub dev: Arc<DeviceInner>,
}

// SAFETY: the domain is used only through libibverbs calls, which are
// thread-safe; it is deallocated once, in `Drop`.
unsafe impl Send for PdInner {}
// SAFETY: as above; shared access mutates no Rust state.
unsafe impl Sync for PdInner {}

impl Drop for PdInner {
    fn drop(&mut self) {
        // SAFETY: allocated by `ibv_alloc_pd`, deallocated once; every region,
        // window and queue pair of the domain holds this `Arc`, so they are gone.
        let rc = unsafe { rdma_sys::ibv_dealloc_pd(self.pd.as_ptr()) };
        if rc != 0 {
            tracing::warn!(error = %errno_error("ibv_dealloc_pd", rc), "protection domain not deallocated");
        }
    }
}

/// A protection domain (`ibv_alloc_pd`); deallocated when it and everything
/// created in it are dropped.
#[derive(Debug)]
pub struct RdmaPd {
    inner: Arc<PdInner>,
}

impl RdmaPd {
    pub(crate) fn new(dev: &Arc<DeviceInner>) -> Result<Self, VerbsError> {
        // SAFETY: the context is open while `dev` lives.
        let raw = unsafe { rdma_sys::ibv_alloc_pd(dev.ctx.as_ptr()) };
        let pd = NonNull::new(raw).ok_or_else(|| os_error("ibv_alloc_pd"))?;
        Ok(Self {
            inner: Arc::new(PdInner {
                pd,
                dev: Arc::clone(dev),
            }),
        })
    }

    pub(crate) fn device(&self) -> &Arc<DeviceInner> {
        &self.inner.dev
    }

    pub(crate) fn inner(&self) -> &Arc<PdInner> {
        &self.inner
    }
}

impl ProtectionDomain for RdmaPd {
    type Mr = RdmaMr;
    type Mw = RdmaMw;

    unsafe fn register(
        &self,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<RdmaMr, VerbsError> {
        if ptr.is_null() || len == 0 {
            return Err(VerbsError::InvalidArgument("empty or null region"));
        }
        let flags = mr_access(access)?;
        // SAFETY: a live domain; `ptr..ptr+len` is valid and stays allocated
        // and in place until the returned region is dropped (the caller's
        // contract), which is what the device needs while it is registered.
        let raw = unsafe { rdma_sys::ibv_reg_mr(self.inner.pd.as_ptr(), ptr.cast(), len, flags) };
        let mr = NonNull::new(raw).ok_or_else(|| os_error("ibv_reg_mr"))?;
        // SAFETY: a region just returned by libibverbs; plain fields.
        let (lkey, rkey) = unsafe { ((*raw).lkey, (*raw).rkey) };
        Ok(RdmaMr {
            mr,
            lkey,
            rkey,
            addr: ptr as usize as u64,
            len,
            access,
            pd: Arc::clone(&self.inner),
        })
    }

    fn alloc_mw(&self) -> Result<RdmaMw, VerbsError> {
        if !self.inner.dev.caps.mw_type2 {
            return Err(VerbsError::Unsupported("type 2 memory windows"));
        }
        // SAFETY: a live domain.
        match unsafe { ffi::alloc_mw(self.inner.pd.as_ptr(), ibv_mw_type::IBV_MW_TYPE_2) } {
            Ok(mw) => {
                // SAFETY: a window just returned by the provider; plain field.
                let rkey = unsafe { (*mw).rkey };
                Ok(RdmaMw {
                    // `alloc_mw` returns only non-null windows.
                    mw: NonNull::new(mw).ok_or(VerbsError::Unsupported("type 2 memory windows"))?,
                    rkey,
                    pd: Arc::clone(&self.inner),
                })
            }
            Err(libc::EOPNOTSUPP | libc::ENOSYS) => {
                Err(VerbsError::Unsupported("type 2 memory windows"))
            }
            Err(errno) => Err(errno_error("ibv_alloc_mw", errno)),
        }
    }
}

/// A registered memory region (`ibv_reg_mr`); deregistered on drop.
#[derive(Debug)]
pub struct RdmaMr {
    mr: NonNull<ibv_mr>,
    lkey: u32,
    rkey: u32,
    addr: u64,
    len: usize,
    access: Access,
    pd: Arc<PdInner>,
}

// SAFETY: the region handle is used only through libibverbs calls (and by
// pointer in bind work requests); it is deregistered once, in `Drop`.
unsafe impl Send for RdmaMr {}

impl RdmaMr {
    pub(crate) fn as_ptr(&self) -> *mut ibv_mr {
        self.mr.as_ptr()
    }

    pub(crate) fn pd(&self) -> &Arc<PdInner> {
        &self.pd
    }
}

impl MemoryRegion for RdmaMr {
    fn lkey(&self) -> u32 {
        self.lkey
    }
    fn rkey(&self) -> u32 {
        self.rkey
    }
    fn addr(&self) -> u64 {
        self.addr
    }
    fn len(&self) -> usize {
        self.len
    }
    fn access(&self) -> Access {
        self.access
    }
}

impl Drop for RdmaMr {
    fn drop(&mut self) {
        // SAFETY: registered by `ibv_reg_mr`, deregistered once. After this
        // the owner frees the memory: deregistration fails only for a handle
        // the kernel no longer has (the device was removed and the kernel
        // already released its regions), so no device access to the memory
        // survives either way.
        let rc = unsafe { rdma_sys::ibv_dereg_mr(self.mr.as_ptr()) };
        if rc != 0 {
            tracing::error!(error = %errno_error("ibv_dereg_mr", rc), len = self.len, "memory region not deregistered");
        }
    }
}

/// A type 2 memory window (`ibv_alloc_mw`); deallocated (which invalidates
/// its STag) on drop.
#[derive(Debug)]
pub struct RdmaMw {
    mw: NonNull<ibv_mw>,
    rkey: u32,
    pd: Arc<PdInner>,
}

// SAFETY: the window handle is used only through libibverbs calls and bind
// work requests of its owner; it is deallocated once, in `Drop`.
unsafe impl Send for RdmaMw {}

impl RdmaMw {
    pub(crate) fn as_ptr(&self) -> *mut ibv_mw {
        self.mw.as_ptr()
    }

    pub(crate) fn pd(&self) -> &Arc<PdInner> {
        &self.pd
    }

    /// Records the rkey of a bind just posted.
    pub(crate) fn set_rkey(&mut self, rkey: u32) {
        self.rkey = rkey;
    }
}

impl MemoryWindow for RdmaMw {
    fn rkey(&self) -> u32 {
        self.rkey
    }
}

impl Drop for RdmaMw {
    fn drop(&mut self) {
        // SAFETY: allocated by `ibv_alloc_mw`, deallocated once.
        let rc = unsafe { ffi::dealloc_mw(self.mw.as_ptr()) };
        if rc != 0 {
            tracing::error!(error = %errno_error("ibv_dealloc_mw", rc), rkey = self.rkey, "memory window not deallocated");
        }
    }
}
