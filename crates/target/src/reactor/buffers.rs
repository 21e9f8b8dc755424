//! Task data buffers of a reactor: registered buffers from the reactor's NUMA-local pool
//! (rtgt-affinity), heap memory for transfers larger than a pool buffer, and the per-slot SCSI
//! state (prepared command, I/O plan, ring transfer) of each session task (SAM-5 task
//! lifetime, SBC-4 data transfer).
//!
//! A buffer is *lent* (moved, in a box kept with the slot so lending allocates nothing) to
//! whoever the kernel works for: the ring while a read, write or receive into it is in flight
//! (rtgt-uring's `ReactorRing` owns it until the completion), a connection's send batch while
//! its Data-In is being sent. It comes back with the completion; a buffer whose task is gone
//! by then is simply dropped (a pool buffer returns to the pool).

use rtgt_affinity::{PoolBuf, ReactorCache};
use rtgt_scsi::{IoOp, IoOutcome, IoPlan};

/// Heap task buffers up to this size stay with their slot for reuse; larger ones (rare, very
/// large transfers) are freed when the task ends so idle sessions do not pin memory.
const KEEP_HEAP: usize = 1 << 20;

/// A task's data buffer.
#[derive(Default)]
pub(crate) enum TaskBuf {
    /// Nothing allocated.
    #[default]
    None,
    /// A registered buffer from the reactor's pool.
    Pool(PoolBuf, usize),
    /// Heap memory (larger than a pool buffer, or no pool); kept for reuse.
    Heap(Vec<u8>, usize),
    /// Aligned heap memory (read-ahead chunks and coalesced writes, usable with O_DIRECT).
    Aligned(rtgt_uring::AlignedBuf),
}

impl rtgt_uring::net::IoMem for TaskBuf {
    fn mem(&self) -> &[u8] {
        self.as_slice()
    }
    fn mem_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl TaskBuf {
    /// A heap buffer of `len` bytes (connection receive buffers).
    pub(crate) fn heap(len: usize) -> Self {
        Self::Heap(vec![0; len], len)
    }

    /// Whether nothing is allocated (also while the buffer is lent).
    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::Pool(b, n) => b.get(..*n).unwrap_or(&[]),
            Self::Heap(v, n) => v.get(..*n).unwrap_or(&[]),
            Self::Aligned(b) => b.as_slice(),
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Self::None => &mut [],
            Self::Pool(b, n) => b.get_mut(..*n).unwrap_or(&mut []),
            Self::Heap(v, n) => v.get_mut(..*n).unwrap_or(&mut []),
            Self::Aligned(b) => b.as_mut_slice(),
        }
    }

    /// Fixed-buffer index for READ_FIXED/WRITE_FIXED.
    pub(crate) fn fixed_index(&self) -> Option<u16> {
        match self {
            Self::Pool(b, _) => u16::try_from(b.index()).ok(),
            _ => None,
        }
    }

    pub(crate) fn ensure(&mut self, len: usize, cache: Option<&ReactorCache>, pool_size: usize) {
        match self {
            Self::Pool(b, n) if len <= b.len() => *n = (*n).max(len),
            Self::Heap(v, n) if len <= v.len() => *n = (*n).max(len),
            Self::Aligned(b) if len <= b.capacity() => b.set_len(b.len().max(len)),
            Self::Heap(v, n) => {
                v.resize(len, 0);
                *n = len;
            }
            _ => {
                let pooled = if len <= pool_size {
                    cache.and_then(ReactorCache::get)
                } else {
                    None
                };
                *self = match pooled {
                    Some(b) => Self::Pool(b, len),
                    None => Self::Heap(vec![0; len], len),
                };
            }
        }
    }

    /// Makes this a zero-filled heap buffer of `len` bytes, reusing heap capacity.
    pub(crate) fn zeroed_heap(&mut self, len: usize) {
        match self {
            Self::Heap(v, n) => {
                v.clear();
                v.resize(len, 0);
                *n = len;
            }
            _ => *self = Self::heap(len),
        }
    }

    /// Gives a pool buffer back; a heap buffer of up to [`KEEP_HEAP`] bytes is kept (length
    /// reset) for the slot's next task, a larger one is freed.
    pub(crate) fn release(&mut self) {
        match self {
            Self::Pool(..) | Self::Aligned(_) => *self = Self::None,
            Self::Heap(v, _) if v.len() > KEEP_HEAP => *self = Self::None,
            Self::Heap(_, n) => *n = 0,
            Self::None => {}
        }
    }
}

/// SCSI state of one task slot.
#[derive(Default)]
pub(crate) struct Slot {
    pub buf: TaskBuf,
    /// Data-In of a command that also has Data-Out.
    pub aux: TaskBuf,
    pub aux_used: bool,
    /// Empty boxes for lending `buf`/`aux` without allocating.
    // The boxes themselves are what is reused: a loan moves one into the ring.
    #[allow(clippy::vec_box)]
    pub spare: Vec<Box<TaskBuf>>,
    pub cmd: Option<rtgt_scsi::Command>,
    pub plan: Option<IoPlan>,
    pub next_op: usize,
    pub outcomes: Vec<IoOutcome>,
    pub lun: u16,
    /// A ring operation of this slot is in flight.
    pub io_pending: bool,
    pub xfer: Option<(rtgt_uring::completion::Transfer, IoOp)>,
    /// The write stream (streams feature) of a write in flight outside a batch.
    pub wstream: Option<u64>,
}

impl Slot {
    /// Moves the task buffer (`aux` for the auxiliary Data-In buffer) out, boxed.
    // The ring takes operations' memory as boxes; the box comes from `spare`.
    #[allow(clippy::unnecessary_box_returns)]
    pub(crate) fn lend(&mut self, aux: bool) -> Box<TaskBuf> {
        let mut b = self.spare.pop().unwrap_or_default();
        *b = core::mem::take(if aux { &mut self.aux } else { &mut self.buf });
        b
    }

    /// Puts a lent buffer back (the box is kept for the next loan).
    pub(crate) fn restore(&mut self, mut b: Box<TaskBuf>, aux: bool) {
        let dst = if aux { &mut self.aux } else { &mut self.buf };
        *dst = core::mem::take(&mut *b);
        if self.spare.len() < 2 {
            self.spare.push(b);
        }
    }
}
