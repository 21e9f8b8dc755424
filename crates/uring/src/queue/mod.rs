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
    /// Queue an operation (it starts at the next [`submit`](Self::submit) or
    /// [`wait`](Self::wait)); fails when [`capacity`](Self::capacity) operations are in flight.
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
