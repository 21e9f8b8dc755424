//! Completion queues over libibverbs (`ibv_create_cq`, `ibv_poll_cq`), each
//! with a completion channel for blocking waits. Completions report the
//! outcome of the RDMA operations of RFC 7145 §7.3; an error status means
//! the connection has failed (§10).

use core::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys::{ibv_comp_channel, ibv_cq, ibv_wc};

use super::convert::work_completion;
use super::device::DeviceInner;
use super::ffi::{self, set_nonblocking, wait_readable};
use super::{errno_error, last_errno, os_error};
use crate::verbs::{CompletionQueue, VerbsError, WorkCompletion};

/// Completions read from the device per `ibv_poll_cq` call.
const BATCH: usize = 16;

#[derive(Debug)]
pub(crate) struct CqInner {
    pub cq: NonNull<ibv_cq>,
    channel: NonNull<ibv_comp_channel>,
    pub dev: Arc<DeviceInner>,
}

// SAFETY: the queue is used only through libibverbs calls, which lock the
// queue where the provider needs it; destroyed once, in `Drop`.
unsafe impl Send for CqInner {}
// SAFETY: as above; shared access mutates no Rust state.
unsafe impl Sync for CqInner {}

impl Drop for CqInner {
    fn drop(&mut self) {
        // SAFETY: created by `ibv_create_cq`, destroyed once; every queue pair
        // using it holds this `Arc`, so none is left; every channel event was
        // acknowledged when read.
        let rc = unsafe { rdma_sys::ibv_destroy_cq(self.cq.as_ptr()) };
        if rc != 0 {
            tracing::warn!(error = %errno_error("ibv_destroy_cq", rc), "completion queue not destroyed");
            // The channel is still referenced by the queue: leave both.
            return;
        }
        // SAFETY: created by `ibv_create_comp_channel`, destroyed once, after
        // the only queue attached to it.
        let rc = unsafe { rdma_sys::ibv_destroy_comp_channel(self.channel.as_ptr()) };
        if rc != 0 {
            tracing::warn!(error = %errno_error("ibv_destroy_comp_channel", rc), "completion channel not destroyed");
        }
    }
}

/// A completion queue; destroyed after the last queue pair using it.
#[derive(Debug)]
pub struct RdmaCq {
    inner: Arc<CqInner>,
}

impl RdmaCq {
    pub(crate) fn new(dev: &Arc<DeviceInner>, capacity: u32) -> Result<Self, VerbsError> {
        let cqe = libc::c_int::try_from(capacity)
            .map_err(|_| VerbsError::InvalidArgument("completion queue capacity too large"))?;
        // SAFETY: the context is open while `dev` lives.
        let raw = unsafe { rdma_sys::ibv_create_comp_channel(dev.ctx.as_ptr()) };
        let channel = NonNull::new(raw).ok_or_else(|| os_error("ibv_create_comp_channel"))?;
        // SAFETY: open context, a live channel of it, no user context, vector 0.
        let cq = unsafe {
            rdma_sys::ibv_create_cq(
                dev.ctx.as_ptr(),
                cqe,
                core::ptr::null_mut(),
                channel.as_ptr(),
                0,
            )
        };
        let Some(cq) = NonNull::new(cq) else {
            let err = os_error("ibv_create_cq");
            // SAFETY: the channel was created above and has no queue: destroyed once.
            unsafe { rdma_sys::ibv_destroy_comp_channel(channel.as_ptr()) };
            return Err(err);
        };
        let inner = CqInner {
            cq,
            channel,
            dev: Arc::clone(dev),
        };
        // SAFETY: the channel is live; `fd` is a plain field.
        set_nonblocking(unsafe { (*channel.as_ptr()).fd })?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub(crate) fn device(&self) -> &Arc<DeviceInner> {
        &self.inner.dev
    }

    pub(crate) fn inner(&self) -> &Arc<CqInner> {
        &self.inner
    }

    /// Like [`poll`](CompletionQueue::poll), but when nothing has completed
    /// waits (on the completion channel) up to `timeout` for a completion;
    /// returns 0 if none came.
    pub fn poll_wait(
        &self,
        out: &mut [WorkCompletion],
        timeout: Duration,
    ) -> Result<usize, VerbsError> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.poll(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            // Arm, then look again: a completion that arrived before arming
            // raises no event, but is seen by this second poll.
            // SAFETY: the queue is live while `self` is.
            let rc = unsafe { ffi::req_notify_cq(self.inner.cq.as_ptr(), false) };
            if rc != 0 {
                return Err(errno_error("ibv_req_notify_cq", rc));
            }
            let n = self.poll(out)?;
            if n > 0 {
                return Ok(n);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(0);
            }
            // SAFETY: the channel is live; `fd` is a plain field.
            let fd = unsafe { (*self.inner.channel.as_ptr()).fd };
            wait_readable(fd, deadline - now)?;
            self.drain_events()?;
        }
    }

    /// Reads and acknowledges every pending channel event (non-blocking).
    fn drain_events(&self) -> Result<(), VerbsError> {
        loop {
            let mut cq: *mut ibv_cq = core::ptr::null_mut();
            let mut ctx: *mut libc::c_void = core::ptr::null_mut();
            // SAFETY: a live, non-blocking channel and valid out-pointers.
            let rc = unsafe {
                rdma_sys::ibv_get_cq_event(self.inner.channel.as_ptr(), &raw mut cq, &raw mut ctx)
            };
            if rc != 0 {
                return match last_errno() {
                    libc::EAGAIN | libc::EINTR => Ok(()),
                    errno => Err(errno_error("ibv_get_cq_event", errno)),
                };
            }
            // SAFETY: the event is for our queue (the only one on the
            // channel), acknowledged once, before the queue can be destroyed.
            unsafe { rdma_sys::ibv_ack_cq_events(cq, 1) };
        }
    }
}

impl CompletionQueue for RdmaCq {
    fn poll(&self, out: &mut [WorkCompletion]) -> Result<usize, VerbsError> {
        let mut raw: [MaybeUninit<ibv_wc>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        let mut done = 0;
        while done < out.len() {
            let want = (out.len() - done).min(BATCH);
            // SAFETY: a live queue; `raw` has room for `want` (≤ BATCH) entries.
            let n = unsafe {
                ffi::poll_cq(
                    self.inner.cq.as_ptr(),
                    want as libc::c_int,
                    raw.as_mut_ptr().cast::<ibv_wc>(),
                )
            };
            if n < 0 {
                return Err(errno_error("ibv_poll_cq", -n));
            }
            let n = (n as usize).min(want);
            for (slot, wc) in out[done..].iter_mut().zip(&raw[..n]) {
                // SAFETY: the provider wrote the first `n` entries.
                *slot = work_completion(unsafe { wc.assume_init_ref() });
            }
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }
}
