//! The asynchronous, standalone API: submit many operations, reap their completions.
//!
//! The operations are the storage side of SBC-4 §5 READ, WRITE (FUA), SYNCHRONIZE CACHE,
//! UNMAP and WRITE SAME, completed with io_uring_enter(2) semantics (a byte count or an
//! errno per operation).
//!
//! Two implementations with identical semantics: [`UringQueue`] (one io_uring per queue) and
//! [`PoolQueue`] (the thread-pool fallback); [`IoQueue`] is whichever the store chose. A queue
//! belongs to one thread at a time; make one per thread. Operations own their buffers
//! ([`AlignedBuf`]) until their [`Completion`] hands them back, which is what makes this API
//! safe (the kernel writes into memory nobody else can touch or free meanwhile).

mod pool;
mod prep;
mod uring;

pub use pool::PoolQueue;

/// Preparation and blocking execution, shared with the store's synchronous path.
pub(crate) mod prep_api {
    pub(crate) use super::pool::exec;
    pub(crate) use super::prep::*;
}
pub(crate) use pool::ThreadPool;
pub use uring::UringQueue;

use rtgt_scsi::BackendError;

use crate::aligned::AlignedBuf;

/// One operation on the store. Offsets and lengths are bytes.
#[derive(Debug)]
pub enum Op {
    /// Read `buf.len()` bytes at `offset` into `buf` (READ).
    Read {
        /// File offset.
        offset: u64,
        /// Destination; returned in the completion.
        buf: AlignedBuf,
    },
    /// Write `buf` at `offset` (WRITE); `fua` makes it durable before it completes.
    Write {
        /// File offset.
        offset: u64,
        /// Source; returned in the completion.
        buf: AlignedBuf,
        /// Force unit access.
        fua: bool,
    },
    /// Make every completed write durable (SYNCHRONIZE CACHE).
    Flush,
    /// Deallocate a range (UNMAP).
    Unmap {
        /// File offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Zero a range (WRITE SAME of zeros).
    WriteZeroes {
        /// File offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// A finished operation.
#[derive(Debug)]
pub struct Completion {
    /// The caller's tag given at submission.
    pub user_data: u64,
    /// Bytes transferred (the whole length for reads/writes/zeroing; 0 for flush), or why
    /// it failed.
    pub result: Result<usize, BackendError>,
    /// The operation's buffer, handed back.
    pub buf: Option<AlignedBuf>,
}

/// When an asynchronous queue hands a pushed operation to the kernel (or to the fallback's
/// workers).
///
/// io_uring_enter(2) takes any number of queued entries at once, and fewer system calls is
/// cheaper, but the block layer dispatches a batch of three or more under one plug: the
/// device receives bursts instead of a request each time a slot frees up. Measured on a
/// virtio disk at QD 32 (`docs/performance.md`), the device's service time per 4 KiB O_DIRECT
/// request rose from about 0.33 ms to 0.40–0.60 ms with batches of ~10 and IOPS fell by
/// 10–30 %, for fio (`iodepth_batch_submit=32`) as for this crate. Page-cache I/O never reaches the device
/// from the submitting call, so there batching only saves system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubmitPolicy {
    /// [`Immediate`](Self::Immediate) for an O_DIRECT backing, [`AtWait`](Self::AtWait) for a
    /// buffered one.
    #[default]
    Auto,
    /// Every operation is handed over as it is pushed: one `io_uring_enter` per operation,
    /// like fio's default (`iodepth_batch_submit=1`).
    Immediate,
    /// Operations wait for the next [`IoQueue::submit`] or [`IoQueue::wait`], which hands them
    /// over together: one `io_uring_enter` per batch.
    AtWait,
}

impl SubmitPolicy {
    /// Whether `push` submits at once on a backing opened with (`direct`) or without O_DIRECT.
    ///
    /// ```
    /// use rtgt_uring::SubmitPolicy;
    /// assert!(SubmitPolicy::Auto.immediate(true) && !SubmitPolicy::Auto.immediate(false));
    /// assert!(SubmitPolicy::Immediate.immediate(false) && !SubmitPolicy::AtWait.immediate(true));
    /// ```
    pub fn immediate(self, direct: bool) -> bool {
        match self {
            SubmitPolicy::Auto => direct,
            SubmitPolicy::Immediate => true,
            SubmitPolicy::AtWait => false,
        }
    }
}

/// The queue already holds as many operations as its depth; the operation is handed back.
#[derive(Debug, thiserror::Error)]
#[error("queue full")]
pub struct QueueFull(pub Op);

/// The asynchronous queue of a store, on io_uring or on the thread pool.
#[derive(Debug)]
// A queue is created once per thread and used in place; boxing would add an indirection to
// every call of the hot path.
#[allow(clippy::large_enum_variant)]
pub enum IoQueue {
    /// io_uring.
    Uring(UringQueue),
    /// Thread-pool fallback.
    Pool(PoolQueue),
}

impl IoQueue {
    /// Queue an operation; fails when [`capacity`](Self::capacity) operations are in flight.
    /// It starts right here or at the next [`submit`](Self::submit) or [`wait`](Self::wait),
    /// as [`StoreConfig::submit`](crate::StoreConfig::submit) says ([`SubmitPolicy`]).
    pub fn push(&mut self, op: Op, user_data: u64) -> Result<(), QueueFull> {
        match self {
            IoQueue::Uring(q) => q.push(op, user_data),
            IoQueue::Pool(q) => q.push(op, user_data),
        }
    }

    /// Start everything queued without waiting.
    pub fn submit(&mut self) -> Result<(), BackendError> {
        match self {
            IoQueue::Uring(q) => q.submit(),
            IoQueue::Pool(q) => q.submit(),
        }
    }

    /// Start everything queued and wait until at least `min` operations have completed (or
    /// none is left in flight); append the completions to `out` and return how many.
    pub fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, BackendError> {
        match self {
            IoQueue::Uring(q) => q.wait(min, out),
            IoQueue::Pool(q) => q.wait(min, out),
        }
    }

    /// Operations queued or in flight.
    pub fn in_flight(&self) -> usize {
        match self {
            IoQueue::Uring(q) => q.in_flight(),
            IoQueue::Pool(q) => q.in_flight(),
        }
    }

    /// Operations pushed but not yet handed to the kernel or the workers: always 0 after
    /// [`submit`](Self::submit), and right after [`push`](Self::push) under an immediate
    /// [`SubmitPolicy`].
    pub fn unsubmitted(&self) -> usize {
        match self {
            IoQueue::Uring(q) => q.unsubmitted(),
            IoQueue::Pool(q) => q.unsubmitted(),
        }
    }

    /// Maximum operations in flight (the queue depth).
    pub fn capacity(&self) -> usize {
        match self {
            IoQueue::Uring(q) => q.capacity(),
            IoQueue::Pool(q) => q.capacity(),
        }
    }

    /// A buffer suited to this store's alignment.
    pub fn alloc_buf(&self, len: usize) -> AlignedBuf {
        match self {
            IoQueue::Uring(q) => q.alloc_buf(len),
            IoQueue::Pool(q) => q.alloc_buf(len),
        }
    }
}
