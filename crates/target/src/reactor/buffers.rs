//! Task data buffers of a reactor: registered buffers from the reactor's NUMA-local pool
//! (rtgt-affinity), heap memory for transfers larger than a pool buffer, and the per-slot SCSI
//! state (prepared command, I/O plan, ring transfer) of each session task (SAM-5 task
//! lifetime, SBC-4 data transfer).

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
}

impl TaskBuf {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::Pool(b, n) => b.get(..*n).unwrap_or(&[]),
            Self::Heap(v, n) => v.get(..*n).unwrap_or(&[]),
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Self::None => &mut [],
            Self::Pool(b, n) => b.get_mut(..*n).unwrap_or(&mut []),
            Self::Heap(v, n) => v.get_mut(..*n).unwrap_or(&mut []),
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

    /// Gives a pool buffer back; a heap buffer of up to [`KEEP_HEAP`] bytes is kept (length
    /// reset) for the slot's next task, a larger one is freed.
    pub(crate) fn release(&mut self) {
        match self {
            Self::Pool(..) => *self = Self::None,
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
    pub aux: Vec<u8>,
    pub aux_used: bool,
    pub cmd: Option<rtgt_scsi::Command>,
    pub plan: Option<IoPlan>,
    pub next_op: usize,
    pub outcomes: Vec<IoOutcome>,
    pub lun: u16,
    /// A ring operation of this slot is in flight.
    pub io_pending: bool,
    pub xfer: Option<(rtgt_uring::completion::Transfer, IoOp)>,
}
