//! I/O plans: what the engine must do against the backing store to carry out a command
//! (the execution half of SAM-5 §5.1 Execute Command, split from decoding as in virtio-blk's
//! parse/execute split).
//!
//! All offsets and lengths are in bytes. Buffer offsets index the engine's Data-Out buffer (the
//! bytes passed to [`crate::LogicalUnit::execute`]) or its Data-In buffer (at least
//! [`crate::Command::data_in_capacity`] bytes). Ops run **in order**; when one fails or a
//! compare reports a miscompare, the remaining ops must not run.

use std::sync::Arc;

use crate::backend::{AllocationExtent, BackendError, BlockBackend};
use crate::lu::LogicalUnit;

/// One backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Read `len` bytes at `offset` into the Data-In buffer at `buf`.
    Read {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
        /// Offset in the Data-In buffer.
        buf: usize,
    },
    /// Write `len` bytes from the Data-Out buffer at `buf` to `offset`.
    Write {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
        /// Offset in the Data-Out buffer.
        buf: usize,
        /// Force unit access: durable before completion.
        fua: bool,
    },
    /// Make every acknowledged write durable.
    Flush,
    /// Deallocate `len` bytes at `offset`.
    Unmap {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Make `len` bytes at `offset` read back as zeros, keeping them mapped.
    WriteZeroes {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
        /// Force unit access.
        fua: bool,
    },
    /// Write the `block_len`-byte block at Data-Out offset `block` (or zeros when `None`) to
    /// every block of the range (WRITE SAME).
    WriteSame {
        /// Medium byte offset.
        offset: u64,
        /// Byte count (a multiple of `block_len`).
        len: u64,
        /// Data-Out offset of the block, or `None` for a block of zeros.
        block: Option<usize>,
        /// Logical block size.
        block_len: usize,
        /// Force unit access.
        fua: bool,
    },
    /// Read the range and compare it with the Data-Out bytes at `buf`; report the offset of the
    /// first differing byte as [`IoOutcome::Miscompare`].
    Compare {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
        /// Offset of the expected data in the Data-Out buffer.
        buf: usize,
    },
    /// Read the range and compare every block with the single block at Data-Out offset `buf`
    /// (VERIFY with BYTCHK=11b).
    CompareEachBlock {
        /// Medium byte offset.
        offset: u64,
        /// Byte count (a multiple of `block_len`).
        len: u64,
        /// Offset of the expected block in the Data-Out buffer.
        buf: usize,
        /// Logical block size.
        block_len: usize,
    },
    /// Read the range and discard it (medium verification, VERIFY with BYTCHK=0).
    Verify {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Read the range, OR the Data-Out bytes at `buf` into it and write it back (ORWRITE).
    OrWrite {
        /// Medium byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
        /// Offset of the operand in the Data-Out buffer.
        buf: usize,
        /// Force unit access.
        fua: bool,
    },
    /// Report the provisioning status of the first extent at `offset` (at most `len` bytes) as
    /// [`IoOutcome::Allocation`].
    Allocation {
        /// Medium byte offset.
        offset: u64,
        /// Maximum extent length.
        len: u64,
    },
    /// Copy `len` bytes from `src` at `src_offset` to `dst` at `dst_offset` (EXTENDED COPY).
    Copy {
        /// Source logical unit.
        src: CopyEndpoint,
        /// Source byte offset.
        src_offset: u64,
        /// Destination logical unit.
        dst: CopyEndpoint,
        /// Destination byte offset.
        dst_offset: u64,
        /// Byte count.
        len: u64,
    },
}

/// A logical unit taking part in an EXTENDED COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEndpoint {
    /// The logical unit that received the EXTENDED COPY (its own backend).
    This,
    /// Another logical unit: an index into [`IoPlan::copy_targets`].
    Other(usize),
}

/// Another logical unit of this target, found by its NAA designator for EXTENDED COPY.
#[derive(Clone)]
pub struct CopyTarget {
    /// The logical unit (for its capacity and block size).
    pub lu: Arc<LogicalUnit>,
    /// Its backend (used by [`LogicalUnit::execute_sync`]).
    pub backend: Arc<dyn BlockBackend>,
    /// An engine-defined handle for the logical unit's backend.
    pub handle: u64,
}

impl core::fmt::Debug for CopyTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CopyTarget")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Resolves NAA designators to the logical units this target exports (EXTENDED COPY is limited
/// to those). The engine implements it; implementations should hold the logical units weakly
/// to avoid a reference cycle (each logical unit holds its resolver).
pub trait CopyTargets: Send + Sync {
    /// The logical unit whose NAA designator (designator bytes only) equals `naa`.
    fn find(&self, naa: &[u8]) -> Option<CopyTarget>;
}

/// The result of one [`IoOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOutcome {
    /// The operation completed.
    Done,
    /// A compare found a difference; `offset` is relative to the op's first byte.
    Miscompare {
        /// Offset of the first differing byte.
        offset: u64,
    },
    /// The provisioning status returned by an [`IoOp::Allocation`].
    Allocation(AllocationExtent),
    /// The operation failed.
    Failed(BackendError),
}

/// The operations of one command. Small plans (the READ and WRITE fast path) live inline
/// without allocation.
#[derive(Debug, Clone)]
pub struct IoPlan {
    inline: [IoOp; 2],
    inline_len: u8,
    heap: Vec<IoOp>,
    copy_targets: Vec<CopyTarget>,
}

impl IoPlan {
    /// An empty plan.
    pub(crate) fn new() -> Self {
        Self {
            inline: [IoOp::Flush; 2],
            inline_len: 0,
            heap: Vec::new(),
            copy_targets: Vec::new(),
        }
    }

    /// A plan of one op.
    #[cfg(test)]
    pub(crate) fn one(op: IoOp) -> Self {
        let mut p = Self::new();
        p.push(op);
        p
    }

    pub(crate) fn push(&mut self, op: IoOp) {
        if self.heap.is_empty() && usize::from(self.inline_len) < self.inline.len() {
            self.inline[usize::from(self.inline_len)] = op;
            self.inline_len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap
                    .extend_from_slice(&self.inline[..usize::from(self.inline_len)]);
            }
            self.heap.push(op);
        }
    }

    pub(crate) fn set_copy_targets(&mut self, targets: Vec<CopyTarget>) {
        self.copy_targets = targets;
    }

    /// The operations, in execution order.
    pub fn ops(&self) -> &[IoOp] {
        if self.heap.is_empty() {
            &self.inline[..usize::from(self.inline_len)]
        } else {
            &self.heap
        }
    }

    /// The other logical units an EXTENDED COPY plan refers to with [`CopyEndpoint::Other`].
    pub fn copy_targets(&self) -> &[CopyTarget] {
        &self.copy_targets
    }
}

/// The offset of the first differing byte of two equally long slices, if any.
///
/// Engines use it to carry out [`IoOp::Compare`].
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or(Some(a.len().min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spills_to_heap() {
        let mut p = IoPlan::one(IoOp::Flush);
        assert_eq!(p.ops().len(), 1);
        p.push(IoOp::Verify { offset: 0, len: 1 });
        assert_eq!(p.ops().len(), 2);
        p.push(IoOp::Unmap { offset: 0, len: 1 });
        assert_eq!(
            p.ops(),
            &[
                IoOp::Flush,
                IoOp::Verify { offset: 0, len: 1 },
                IoOp::Unmap { offset: 0, len: 1 }
            ]
        );
    }

    #[test]
    fn difference() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }
}
