//! The thread-pool fallback: blocking pread/pwritev2/fdatasync/fallocate on worker threads,
//! with the same semantics as the io_uring queue (short transfers continued, EOF zero-fill,
//! FUA as RWF_DSYNC, O_DIRECT bouncing, errno mapping).

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rtgt_scsi::BackendError;

use super::prep::{self, Prep};
use super::{Completion, Op, QueueFull, SubmitPolicy};
use crate::aligned::AlignedBuf;
use crate::caps::BackingKind;
use crate::shared::{OpKind, Shared};
use crate::stats::Stats;
use crate::sync_io;

/// A pointer handed to a worker together with the guarantee that its memory stays alive.
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);

// SAFETY: the pointee is owned by a queue slot (or a synchronous caller) that does not touch
// or free it until the worker has reported completion.
unsafe impl Send for SendPtr {}

struct Job {
    kind: OpKind,
    offset: u64,
    ptr: SendPtr,
    len: usize,
    slot: u32,
    done: Sender<(u32, Result<usize, BackendError>)>,
}

/// Execute one operation with blocking system calls.
///
/// # Safety
/// For reads and writes, `ptr` must be valid for `len` bytes (writes resp. reads) for the
/// duration of the call. For the others, `offset`/`len` are the range and `ptr` is unused.
pub(crate) unsafe fn exec(
    shared: &Shared,
    kind: OpKind,
    offset: u64,
    ptr: *mut u8,
    len: usize,
) -> Result<usize, BackendError> {
    let fd = shared.backing.raw_fd();
    let align = shared.backing.alignment().offset();
    match kind {
        OpKind::Read => {
            // SAFETY: forwarded contract.
            let filled =
                unsafe { sync_io::read_full(fd, offset, ptr, len, shared.io_capacity(), align)? };
            if filled > 0 {
                Stats::add(&shared.stats.eof_zero_fills, 1);
            }
            Ok(len)
        }
        OpKind::Write { fua } => {
            // SAFETY: forwarded contract.
            unsafe { sync_io::write_full(fd, offset, ptr, len, fua, shared.io_capacity())? };
            Ok(len)
        }
        OpKind::Flush => sync_io::datasync(fd).map(|()| 0),
        OpKind::Unmap if shared.unmap_by_discard() => shared.discard(offset, len as u64),
        OpKind::Unmap => sync_io::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len as u64,
            "unmap",
        )
        .map(|()| len),
        OpKind::WriteZeroes => {
            let is_file = shared.backing.kind() == BackingKind::File;
            if is_file && !shared.zero_range_ok() {
                return shared.zero_by_writing(offset, len as u64);
            }
            let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
            match sync_io::fallocate(fd, mode, offset, len as u64, "write zeroes") {
                Ok(()) => Ok(len),
                Err(BackendError::Unsupported) if is_file => {
                    shared.zero_range_unsupported();
                    shared.zero_by_writing(offset, len as u64)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Worker threads of one store.
pub(crate) struct ThreadPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    pub(crate) fn new(shared: &Arc<Shared>, threads: usize) -> Result<Self, BackendError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let shared = Arc::clone(shared);
            let handle = std::thread::Builder::new()
                .name(format!("rtgt-io-{i}"))
                .spawn(move || {
                    for job in rx {
                        let Job {
                            kind,
                            offset,
                            ptr,
                            len,
                            slot,
                            done,
                        } = job;
                        // SAFETY: the submitting queue keeps the memory alive until it has
                        // received this job's completion (see `SendPtr`).
                        let result = unsafe { exec(&shared, kind, offset, ptr.0, len) };
                        let _ = done.send((slot, result));
                    }
                })
                .map_err(|e| BackendError::Other(format!("spawning an I/O thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Self {
            jobs: Some(tx),
            workers,
        })
    }

    fn send(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct PoolSlot {
    user_data: u64,
    kind: OpKind,
    dst: *mut u8,
    owned: Option<AlignedBuf>,
    bounce: Option<AlignedBuf>,
    copy_out: Option<(usize, usize)>,
}

/// The thread-pool queue of a store (see [`crate::Store::queue`]).
pub struct PoolQueue {
    pool: Arc<ThreadPool>,
    shared: Arc<Shared>,
    slots: Vec<PoolSlot>,
    free: Vec<u32>,
    staged: Vec<Job>,
    done_tx: Sender<(u32, Result<usize, BackendError>)>,
    done_rx: Receiver<(u32, Result<usize, BackendError>)>,
    ready: VecDeque<Completion>,
    busy: usize,
    /// `push` hands its job to the workers at once (see [`SubmitPolicy`]).
    immediate: bool,
}

// SAFETY: the raw pointers in the slots point into heap buffers owned by the same slots,
// which move with the queue; workers only access them between a job's send and its reply.
unsafe impl Send for PoolQueue {}

impl std::fmt::Debug for PoolQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolQueue")
            .field("capacity", &self.slots.len())
            .field("busy", &self.busy)
            .field("threads", &self.pool.workers.len())
            .finish_non_exhaustive()
    }
}

impl PoolQueue {
    pub(crate) fn new(
        pool: Arc<ThreadPool>,
        shared: Arc<Shared>,
        depth: u32,
        submit: SubmitPolicy,
    ) -> Self {
        let cap = depth.clamp(1, 4096) as usize;
        let (done_tx, done_rx) = crossbeam_channel::bounded(cap);
        Self {
            pool,
            slots: (0..cap)
                .map(|_| PoolSlot {
                    user_data: 0,
                    kind: OpKind::Flush,
                    dst: std::ptr::null_mut(),
                    owned: None,
                    bounce: None,
                    copy_out: None,
                })
                .collect(),
            free: (0..cap as u32).rev().collect(),
            staged: Vec::with_capacity(cap),
            done_tx,
            done_rx,
            ready: VecDeque::with_capacity(cap),
            busy: 0,
            immediate: submit.immediate(shared.backing.is_direct()),
            shared,
        }
    }

    /// Maximum operations in flight.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Operations queued or in flight (including finished ones not yet reaped).
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Operations pushed but not yet handed to the workers (see [`SubmitPolicy`]).
    pub fn unsubmitted(&self) -> usize {
        self.staged.len()
    }

    /// A buffer aligned for this store.
    pub fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::new(
            len,
            self.shared.backing.alignment().buffer_align().max(4096),
        )
    }

    /// Queue an operation. Depending on the queue's [`SubmitPolicy`] it is handed to the
    /// workers right here or at the next [`submit`](Self::submit) or [`wait`](Self::wait).
    pub fn push(&mut self, op: Op, user_data: u64) -> Result<(), QueueFull> {
        let Some(idx) = self.free.pop() else {
            return Err(QueueFull(op));
        };
        let (kind, prep, dst, owned) = match op {
            Op::Read { offset, mut buf } => {
                let (ptr, len) = (buf.as_mut_ptr(), buf.len());
                // SAFETY: `buf` moves into the slot and stays there until completion.
                (
                    OpKind::Read,
                    unsafe { prep::read(&self.shared, offset, ptr, len) },
                    ptr,
                    Some(buf),
                )
            }
            Op::Write { offset, buf, fua } => {
                let (ptr, len) = (buf.as_ptr(), buf.len());
                // SAFETY: as above.
                let prep = unsafe { prep::write(&self.shared, offset, ptr, len, fua) };
                (OpKind::Write { fua }, prep, ptr.cast_mut(), Some(buf))
            }
            Op::Flush => (
                OpKind::Flush,
                Prep::Go(prep::Prepared::none(0, 0)),
                std::ptr::null_mut(),
                None,
            ),
            Op::Unmap { offset, len } | Op::WriteZeroes { offset, len } => {
                let kind = if matches!(op, Op::Unmap { .. }) {
                    OpKind::Unmap
                } else {
                    OpKind::WriteZeroes
                };
                let check = self
                    .shared
                    .check_writable()
                    .and_then(|()| self.shared.check_range(offset, len))
                    .and_then(|()| {
                        usize::try_from(len)
                            .map_err(|_| BackendError::Other("range too long".into()))
                    });
                let prep = match check {
                    Ok(n) => Prep::Go(prep::Prepared::none(offset, n)),
                    Err(e) => Prep::Done(Err(e)),
                };
                (kind, prep, std::ptr::null_mut(), None)
            }
        };
        match prep {
            Prep::Done(result) => {
                self.shared.note(kind, &result);
                self.ready.push_back(Completion {
                    user_data,
                    result,
                    buf: owned,
                });
                self.free.push(idx);
            }
            Prep::Go(p) => {
                let slot = &mut self.slots[idx as usize];
                slot.user_data = user_data;
                slot.kind = kind;
                slot.dst = dst;
                slot.owned = owned;
                slot.copy_out = p.copy_out;
                slot.bounce = p.bounce;
                self.busy += 1;
                self.staged.push(Job {
                    kind,
                    offset: p.offset,
                    ptr: SendPtr(p.ptr),
                    len: p.len,
                    slot: idx,
                    done: self.done_tx.clone(),
                });
                if self.immediate {
                    // Cannot fail: a job without workers is failed through its completion.
                    let _ = self.submit();
                }
            }
        }
        Ok(())
    }

    /// Hand everything queued to the workers.
    pub fn submit(&mut self) -> Result<(), BackendError> {
        for job in self.staged.drain(..) {
            if let Err(job) = self.pool.send(job) {
                // No worker left: fail the job here.
                let _ = self.done_tx.send((
                    job.slot,
                    Err(BackendError::Other("I/O threads gone".into())),
                ));
            }
        }
        Ok(())
    }

    fn on_done(&mut self, idx: u32, result: Result<usize, BackendError>) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if slot.kind == OpKind::Read && result.is_ok() {
            // SAFETY: `dst` is the owned buffer in this slot, alive and `copy_out` long.
            unsafe { prep::finish_read(slot.bounce.as_ref(), slot.copy_out, slot.dst) };
        }
        let kind = slot.kind;
        let completion = Completion {
            user_data: slot.user_data,
            result,
            buf: slot.owned.take(),
        };
        slot.bounce = None;
        self.busy -= 1;
        self.shared.note(kind, &completion.result);
        self.ready.push_back(completion);
        self.free.push(idx);
    }

    /// Hand everything queued to the workers, wait until at least `min` operations completed
    /// (or none is in flight), append the completions to `out` and return how many.
    pub fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, BackendError> {
        self.submit()?;
        let mut got = 0;
        loop {
            while let Ok((idx, result)) = self.done_rx.try_recv() {
                self.on_done(idx, result);
            }
            while let Some(c) = self.ready.pop_front() {
                out.push(c);
                got += 1;
            }
            if got >= min || self.busy == 0 {
                return Ok(got);
            }
            match self.done_rx.recv() {
                Ok((idx, result)) => self.on_done(idx, result),
                Err(_) => return Err(BackendError::Other("I/O threads gone".into())),
            }
        }
    }
}

impl Drop for PoolQueue {
    fn drop(&mut self) {
        // Every job in flight (staged ones included, sent now) must finish before the
        // buffers it writes into can be freed.
        let _ = self.submit();
        while self.busy > 0 {
            if let Ok((idx, result)) = self.done_rx.recv() {
                self.on_done(idx, result);
            } else {
                for slot in &mut self.slots {
                    std::mem::forget(slot.owned.take());
                    std::mem::forget(slot.bounce.take());
                }
                return;
            }
        }
    }
}
