//! The io_uring queue of the standalone store: its own ring, the backing file registered as
//! fixed file 0, optional registered buffers, short-transfer resubmission and O_DIRECT
//! bouncing (io_uring_enter(2), io_uring_register(2)).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::IoUring;
use rtgt_scsi::BackendError;

use super::prep::{self, Prep};
use super::{Completion, Op, QueueFull, SubmitPolicy};
use crate::aligned::AlignedBuf;
use crate::caps::BackingKind;
use crate::completion::{Direction, Next, Transfer, decode_result};
use crate::errno::io_to_backend;
use crate::ring::{AppliedFlags, RingOptions};
use crate::shared::{OpKind, Shared};
use crate::sqe::{self, FileRef, PuntPolicy};
use crate::stats::Stats;

/// Identifies rings so a registered buffer is only used with the ring it belongs to.
static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

/// Largest single submission; longer transfers continue as "short" ones.
const MAX_SUBMIT: usize = 1 << 30;

/// `user_data` of the operation of a synchronous call.
const SYNC_TAG: u64 = u64::MAX;

struct Slot {
    user_data: u64,
    kind: OpKind,
    transfer: Transfer,
    /// Memory of the device I/O.
    ptr: *mut u8,
    /// Where the caller wants read data (differs from `ptr` when bounced).
    dst: *mut u8,
    /// Bytes the caller asked for.
    caller_len: usize,
    /// Range of fallocate-type operations.
    range: (u64, u64),
    owned: Option<AlignedBuf>,
    bounce: Option<AlignedBuf>,
    copy_out: Option<(usize, usize)>,
    fixed: Option<u16>,
}

impl Slot {
    fn empty() -> Self {
        Self {
            user_data: 0,
            kind: OpKind::Flush,
            transfer: Transfer::new(Direction::Read, 0, 0, 0, 1),
            ptr: std::ptr::null_mut(),
            dst: std::ptr::null_mut(),
            caller_len: 0,
            range: (0, 0),
            owned: None,
            bounce: None,
            copy_out: None,
            fixed: None,
        }
    }
}

/// An io_uring queue over one store (see [`crate::Store::queue`]).
///
/// Not for sharing between threads at once (`&mut self` everywhere); with
/// [`RingOptions::single_issuer`] it must be used only on the thread that created it.
pub struct UringQueue {
    ring: IoUring,
    shared: Arc<Shared>,
    file: FileRef,
    ring_id: u64,
    applied: AppliedFlags,
    slots: Vec<Slot>,
    free: Vec<u32>,
    ready: VecDeque<Completion>,
    /// Slots whose SQE is in the kernel (or in the SQ).
    busy: usize,
    /// SQEs in the SQ not yet handed to the kernel.
    pending: usize,
    /// `push` hands its SQE to the kernel at once (see [`SubmitPolicy`]).
    immediate: bool,
    buffers_registered: bool,
    punt: PuntPolicy,
    direct: bool,
}

// SAFETY: the raw pointers in the slots point into heap buffers owned by the same slots
// (which move with the queue) or, only for the duration of a `&mut self` synchronous call,
// into the caller's buffer; nothing is shared with other threads. The ring itself is `Send`.
unsafe impl Send for UringQueue {}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("ring_id", &self.ring_id)
            .field("file", &self.file)
            .field("applied", &self.applied)
            .field("capacity", &self.slots.len())
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

impl UringQueue {
    pub(crate) fn new(
        shared: Arc<Shared>,
        depth: u32,
        opts: &RingOptions,
        punt: PuntPolicy,
        submit: SubmitPolicy,
    ) -> Result<Self, BackendError> {
        let depth = depth.clamp(1, 4096);
        let (ring, applied) =
            crate::ring::build(depth, opts).map_err(|e| io_to_backend(&e, "io_uring_setup"))?;
        let file = match ring.submitter().register_files(&[shared.backing.raw_fd()]) {
            Ok(()) => FileRef::Fixed(0),
            Err(err) => {
                tracing::debug!(error = %err, "registering the backing file failed; using the plain descriptor");
                FileRef::Fd(shared.backing.raw_fd())
            }
        };
        let cap = depth as usize;
        Ok(Self {
            ring,
            file,
            ring_id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            applied,
            slots: (0..cap).map(|_| Slot::empty()).collect(),
            free: (0..cap as u32).rev().collect(),
            ready: VecDeque::with_capacity(cap),
            busy: 0,
            pending: 0,
            immediate: submit.immediate(shared.backing.is_direct()),
            buffers_registered: false,
            direct: shared.backing.is_direct(),
            punt,
            shared,
        })
    }

    /// The setup flags the ring really has.
    pub fn applied_flags(&self) -> AppliedFlags {
        self.applied
    }

    /// Maximum operations in flight.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Operations queued or in flight (including finished ones not yet reaped).
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Entries pushed but not yet handed to the kernel (see [`SubmitPolicy`]).
    pub fn unsubmitted(&self) -> usize {
        self.pending
    }

    /// A buffer aligned for this store.
    pub fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::new(
            len,
            self.shared.backing.alignment().buffer_align().max(4096),
        )
    }

    /// Allocate `count` buffers of `len` bytes and register them with this ring
    /// (IORING_REGISTER_BUFFERS); reads and writes using them go out as READ_FIXED /
    /// WRITE_FIXED. Once per queue.
    pub fn register_buffers(
        &mut self,
        count: u16,
        len: usize,
    ) -> Result<Vec<AlignedBuf>, BackendError> {
        if self.buffers_registered {
            return Err(BackendError::Other(
                "buffers already registered with this queue".into(),
            ));
        }
        let mut bufs: Vec<AlignedBuf> = (0..count).map(|_| self.alloc_buf(len)).collect();
        let iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.capacity(),
            })
            .collect();
        // SAFETY: every iovec describes a live heap allocation owned by `bufs`. After
        // registration the buffers are handed to the caller; the kernel only touches them
        // through fixed operations this queue issues with the buffer's own pointer while the
        // queue owns it (in a slot), and keeps its own page references otherwise.
        unsafe { self.ring.submitter().register_buffers(&iovecs) }
            .map_err(|e| io_to_backend(&e, "register buffers"))?;
        for (index, buf) in bufs.iter_mut().enumerate() {
            buf.fixed = Some((self.ring_id, index as u16));
        }
        self.buffers_registered = true;
        Ok(bufs)
    }

    /// Queue an operation. Depending on the queue's [`SubmitPolicy`] it is handed to the
    /// kernel right here or at the next [`submit`](Self::submit) or [`wait`](Self::wait); an
    /// error of an immediate submission leaves the entry queued, and the next `submit` or
    /// `wait` reports it.
    pub fn push(&mut self, op: Op, user_data: u64) -> Result<(), QueueFull> {
        let Some(idx) = self.free.pop() else {
            return Err(QueueFull(op));
        };
        match op {
            Op::Read { offset, mut buf } => {
                let (ptr, len) = (buf.as_mut_ptr(), buf.len());
                let fixed = buf
                    .fixed
                    .filter(|(ring, _)| *ring == self.ring_id)
                    .map(|(_, i)| i);
                // SAFETY: `buf` is moved into the slot below and stays there until completion.
                let prep = unsafe { prep::read(&self.shared, offset, ptr, len) };
                self.start(
                    idx,
                    OpKind::Read,
                    prep,
                    ptr,
                    len,
                    fixed,
                    Some(buf),
                    user_data,
                );
            }
            Op::Write { offset, buf, fua } => {
                let (ptr, len) = (buf.as_ptr(), buf.len());
                let fixed = buf
                    .fixed
                    .filter(|(ring, _)| *ring == self.ring_id)
                    .map(|(_, i)| i);
                // SAFETY: as above.
                let prep = unsafe { prep::write(&self.shared, offset, ptr, len, fua) };
                self.start(
                    idx,
                    OpKind::Write { fua },
                    prep,
                    ptr.cast_mut(),
                    len,
                    fixed,
                    Some(buf),
                    user_data,
                );
            }
            Op::Flush => self.start_other(idx, OpKind::Flush, (0, 0), user_data),
            Op::Unmap { offset, len } => {
                self.start_other(idx, OpKind::Unmap, (offset, len), user_data);
            }
            Op::WriteZeroes { offset, len } => {
                self.start_other(idx, OpKind::WriteZeroes, (offset, len), user_data);
            }
        }
        if self.immediate && self.pending > 0 {
            // A failure leaves the entries in the SQ; the next submit or wait enters the
            // kernel again and reports it.
            let _ = self.submit();
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        idx: u32,
        kind: OpKind,
        prep: Prep,
        dst: *mut u8,
        caller_len: usize,
        fixed: Option<u16>,
        owned: Option<AlignedBuf>,
        user_data: u64,
    ) {
        match prep {
            Prep::Done(result) => self.finish_inline(idx, kind, result, owned, user_data),
            Prep::Go(p) => {
                let dir = if kind == OpKind::Read {
                    Direction::Read
                } else {
                    Direction::Write
                };
                let align = self.shared.backing.alignment().offset();
                let slot = &mut self.slots[idx as usize];
                slot.user_data = user_data;
                slot.kind = kind;
                slot.transfer =
                    Transfer::new(dir, p.offset, p.len, self.shared.io_capacity(), align);
                slot.ptr = p.ptr;
                slot.dst = dst;
                slot.caller_len = caller_len;
                slot.fixed = if p.bounce.is_some() { None } else { fixed };
                slot.bounce = p.bounce;
                slot.copy_out = p.copy_out;
                slot.owned = owned;
                self.busy += 1;
                self.push_sqe(idx);
            }
        }
    }

    fn start_other(&mut self, idx: u32, kind: OpKind, range: (u64, u64), user_data: u64) {
        let shared = &self.shared;
        let check = match kind {
            OpKind::Flush => Ok(()),
            _ => shared
                .check_writable()
                .and_then(|()| shared.check_range(range.0, range.1)),
        };
        if let Err(e) = check {
            return self.finish_inline(idx, kind, Err(e), None, user_data);
        }
        if kind == OpKind::Unmap && shared.unmap_by_discard() {
            let result = shared.discard(range.0, range.1);
            return self.finish_inline(idx, kind, result, None, user_data);
        }
        if kind == OpKind::WriteZeroes
            && shared.backing.kind() == BackingKind::File
            && !shared.zero_range_ok()
        {
            let result = shared.zero_by_writing(range.0, range.1);
            return self.finish_inline(idx, kind, result, None, user_data);
        }
        let slot = &mut self.slots[idx as usize];
        slot.user_data = user_data;
        slot.kind = kind;
        slot.range = range;
        slot.owned = None;
        slot.bounce = None;
        slot.copy_out = None;
        self.busy += 1;
        self.push_sqe(idx);
    }

    fn finish_inline(
        &mut self,
        idx: u32,
        kind: OpKind,
        result: Result<usize, BackendError>,
        buf: Option<AlignedBuf>,
        user_data: u64,
    ) {
        self.shared.note(kind, &result);
        self.ready.push_back(Completion {
            user_data,
            result,
            buf,
        });
        self.free.push(idx);
    }

    /// Build and queue the SQE for the slot's current step.
    fn push_sqe(&mut self, idx: u32) {
        let slot = &self.slots[idx as usize];
        let ud = u64::from(idx);
        let entry = match slot.kind {
            OpKind::Read | OpKind::Write { .. } => {
                let Next::Resubmit {
                    offset,
                    buf_pos,
                    len,
                } = slot.transfer.remainder()
                else {
                    // Nothing left: cannot happen for a started transfer; complete it.
                    let n = slot.caller_len;
                    return self.complete(idx, Ok(n));
                };
                let n = len.min(MAX_SUBMIT) as u32;
                // SAFETY: the memory belongs to the slot (owned or bounce buffer, or a
                // synchronous caller's buffer held for the whole call) and stays put until
                // this slot's completion is processed; `buf_pos + n` lies inside it; fixed
                // indexes come only from buffers registered with this very ring.
                unsafe {
                    rw_entry(
                        self.file,
                        slot.kind,
                        slot.fixed,
                        offset,
                        slot.ptr.add(buf_pos),
                        n,
                        ud,
                    )
                }
            }
            OpKind::Flush => sqe::fdatasync(self.file, ud),
            OpKind::Unmap => sqe::punch_hole(self.file, slot.range.0, slot.range.1, ud),
            OpKind::WriteZeroes => sqe::zero_range(self.file, slot.range.0, slot.range.1, ud),
        };
        let entry = match slot.kind {
            OpKind::Read => self
                .punt
                .apply(entry, self.direct, false, slot.transfer.len()),
            OpKind::Write { .. } => self
                .punt
                .apply(entry, self.direct, true, slot.transfer.len()),
            _ => entry,
        };
        loop {
            // SAFETY: the entry's memory contract is upheld as described above.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                break;
            }
            // SQ full (only possible with SQPOLL lagging): hand entries to the kernel.
            if self.ring.submit().is_err() {
                let _ = self.ring.submitter().squeue_wait();
            }
        }
        self.pending += 1;
    }

    /// Finish a slot that had an SQE in flight.
    fn complete(&mut self, idx: u32, result: Result<usize, BackendError>) {
        let slot = &mut self.slots[idx as usize];
        if slot.kind == OpKind::Read && result.is_ok() {
            // SAFETY: `dst` is the caller's buffer of `caller_len` bytes, alive in the slot
            // (or the synchronous caller's frame).
            unsafe { prep::finish_read(slot.bounce.as_ref(), slot.copy_out, slot.dst) };
        }
        let kind = slot.kind;
        let user_data = slot.user_data;
        let buf = slot.owned.take();
        slot.bounce = None;
        slot.ptr = std::ptr::null_mut();
        slot.dst = std::ptr::null_mut();
        self.busy -= 1;
        self.shared.note(kind, &result);
        self.ready.push_back(Completion {
            user_data,
            result,
            buf,
        });
        self.free.push(idx);
    }

    fn on_cqe(&mut self, idx: u32, res: i32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            tracing::error!(idx, "completion for an unknown slot");
            return;
        };
        match slot.kind {
            OpKind::Read | OpKind::Write { .. } => match slot.transfer.on_result(res) {
                Ok(Next::Done) => {
                    let n = slot.caller_len;
                    self.complete(idx, Ok(n));
                }
                Ok(Next::Resubmit { .. }) => {
                    Stats::add(&self.shared.stats.short_resubmits, 1);
                    self.push_sqe(idx);
                }
                Ok(Next::ZeroFill { buf_pos, len }) => {
                    // SAFETY: `buf_pos + len` is within the device I/O memory of the slot.
                    unsafe { std::ptr::write_bytes(slot.ptr.add(buf_pos), 0, len) };
                    Stats::add(&self.shared.stats.eof_zero_fills, 1);
                    let n = slot.caller_len;
                    self.complete(idx, Ok(n));
                }
                Err(e) => self.complete(idx, Err(e)),
            },
            OpKind::WriteZeroes
                if res == -libc::EOPNOTSUPP && self.shared.backing.kind() == BackingKind::File =>
            {
                self.shared.zero_range_unsupported();
                let (offset, len) = slot.range;
                let result = self.shared.zero_by_writing(offset, len);
                self.complete(idx, result);
            }
            OpKind::Flush => {
                let result = decode_result(res, "flush").map(|_| 0);
                self.complete(idx, result);
            }
            OpKind::Unmap | OpKind::WriteZeroes => {
                let what = if slot.kind == OpKind::Unmap {
                    "unmap"
                } else {
                    "write zeroes"
                };
                let len = slot.range.1 as usize;
                let result = decode_result(res, what).map(|_| len);
                self.complete(idx, result);
            }
        }
    }

    fn reap(&mut self) {
        let mut batch = [(0u32, 0i32); 64];
        loop {
            let mut n = 0;
            for cqe in self.ring.completion().take(batch.len()) {
                batch[n] = (cqe.user_data() as u32, cqe.result());
                n += 1;
            }
            if n == 0 {
                return;
            }
            for &(idx, res) in &batch[..n] {
                self.on_cqe(idx, res);
            }
        }
    }

    /// Enter the kernel: submit and wait for `want` completions, riding out EINTR and a
    /// full completion queue.
    fn enter(&mut self, want: usize) -> Result<(), BackendError> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => {
                    // The kernel may take fewer entries than offered (or, with SQPOLL, take
                    // them later); what is left stays pending.
                    self.pending = self.ring.submission().len();
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    return Ok(());
                }
                Err(e) => return Err(io_to_backend(&e, "io_uring_enter")),
            }
        }
    }

    /// Start everything queued without waiting.
    pub fn submit(&mut self) -> Result<(), BackendError> {
        if self.pending > 0 {
            self.enter(0)
        } else {
            Ok(())
        }
    }

    /// Start everything queued, wait until at least `min` operations completed (or none is
    /// in flight), append the completions to `out` and return how many were appended. With
    /// DEFER_TASKRUN, completions only arrive while waiting (`min >= 1`).
    pub fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, BackendError> {
        let mut got = 0;
        loop {
            self.reap();
            while let Some(c) = self.ready.pop_front() {
                out.push(c);
                got += 1;
            }
            if got >= min || self.busy == 0 {
                self.submit()?;
                return Ok(got);
            }
            self.enter(1)?;
        }
    }

    /// Run one read or write synchronously on the caller's memory.
    ///
    /// # Safety
    /// `ptr` must be valid for `len` bytes (writes for reads, reads for writes) for the whole
    /// call. The queue must have nothing else in flight.
    pub(crate) unsafe fn run_sync(
        &mut self,
        kind: OpKind,
        offset: u64,
        ptr: *mut u8,
        len: usize,
    ) -> Result<usize, BackendError> {
        let Some(idx) = self.free.pop() else {
            return Err(BackendError::Other("synchronous queue busy".into()));
        };
        let prep = match kind {
            // SAFETY: forwarded contract.
            OpKind::Read => unsafe { prep::read(&self.shared, offset, ptr, len) },
            // SAFETY: forwarded contract.
            OpKind::Write { fua } => unsafe { prep::write(&self.shared, offset, ptr, len, fua) },
            _ => return Err(BackendError::Other("not a transfer".into())),
        };
        self.start(idx, kind, prep, ptr, len, None, None, SYNC_TAG);
        self.finish_sync()
    }

    /// Run a flush, unmap or zeroing synchronously.
    pub(crate) fn run_sync_other(
        &mut self,
        kind: OpKind,
        offset: u64,
        len: u64,
    ) -> Result<usize, BackendError> {
        let Some(idx) = self.free.pop() else {
            return Err(BackendError::Other("synchronous queue busy".into()));
        };
        self.start_other(idx, kind, (offset, len), SYNC_TAG);
        self.finish_sync()
    }

    fn finish_sync(&mut self) -> Result<usize, BackendError> {
        loop {
            self.reap();
            if let Some(c) = self.ready.pop_front() {
                return c.result;
            }
            if let Err(e) = self.enter(1) {
                // The kernel may still write into the caller's memory; returning now would
                // let it be freed under the kernel's feet.
                tracing::error!(error = %e, "io_uring_enter failed with a synchronous operation in flight");
                std::process::abort();
            }
        }
    }
}

/// The SQE of one read or write step.
///
/// # Safety
/// As for [`sqe::read`]/[`sqe::write`] (and the `_fixed` variants when `fixed` is set).
unsafe fn rw_entry(
    file: FileRef,
    kind: OpKind,
    fixed: Option<u16>,
    offset: u64,
    ptr: *mut u8,
    len: u32,
    ud: u64,
) -> io_uring::squeue::Entry {
    // SAFETY: forwarded contract.
    unsafe {
        match (kind, fixed) {
            (OpKind::Read, Some(bi)) => sqe::read_fixed(file, offset, ptr, len, bi, ud),
            (OpKind::Read, None) => sqe::read(file, offset, ptr, len, ud),
            (OpKind::Write { fua }, Some(bi)) => {
                sqe::write_fixed(file, offset, ptr, len, bi, fua, ud)
            }
            (kind, _) => sqe::write(
                file,
                offset,
                ptr,
                len,
                matches!(kind, OpKind::Write { fua: true }),
                ud,
            ),
        }
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        while self.busy > 0 {
            if self.enter(1).is_err() {
                // Cannot wait for the kernel: leak the memory it may still write into.
                for slot in &mut self.slots {
                    std::mem::forget(slot.owned.take());
                    std::mem::forget(slot.bounce.take());
                }
                return;
            }
            self.reap();
        }
    }
}
