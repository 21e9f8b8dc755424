//! State shared by every queue of one store: the backing file, counters, and the rare
//! synchronous paths (read-modify-write of unaligned O_DIRECT writes, zeroing fallback).
//!
//! SBC-4 §4.6 (logical blocks): the store serves byte ranges of whole logical blocks; O_DIRECT
//! alignment (open(2), "O_DIRECT") is the store's business, not the initiator's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rtgt_scsi::BackendError;

use crate::aligned::AlignedBuf;
use crate::backing::BackingFile;
use crate::caps::BackingKind;
use crate::stats::Stats;
use crate::sync_io;

/// What an operation does (for statistics and dispatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Read,
    Write { fua: bool },
    Flush,
    Unmap,
    WriteZeroes,
}

pub(crate) struct Shared {
    pub(crate) backing: BackingFile,
    pub(crate) stats: Stats,
    zero_range_ok: AtomicBool,
    rmw: Mutex<()>,
}

impl Shared {
    pub(crate) fn new(backing: BackingFile) -> Self {
        Self {
            backing,
            stats: Stats::default(),
            zero_range_ok: AtomicBool::new(true),
            rmw: Mutex::new(()),
        }
    }

    /// The capacity used for EOF decisions of aligned I/O (the LU size rounded up to the
    /// O_DIRECT alignment, since a bounce may cover the last partial alignment unit).
    pub(crate) fn io_capacity(&self) -> u64 {
        self.backing
            .size_bytes()
            .next_multiple_of(self.backing.alignment().offset())
    }

    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.backing.size_bytes() => Ok(()),
            _ => Err(BackendError::Other(format!(
                "range {offset}+{len} beyond the store's {} bytes",
                self.backing.size_bytes()
            ))),
        }
    }

    pub(crate) fn check_writable(&self) -> Result<(), BackendError> {
        if self.backing.facts().read_only {
            Err(BackendError::WriteProtected)
        } else {
            Ok(())
        }
    }

    pub(crate) fn zero_range_ok(&self) -> bool {
        self.zero_range_ok.load(Ordering::Relaxed)
    }

    pub(crate) fn zero_range_unsupported(&self) {
        self.zero_range_ok.store(false, Ordering::Relaxed);
    }

    /// Account a finished operation.
    pub(crate) fn note(&self, kind: OpKind, result: &Result<usize, BackendError>) {
        let s = &self.stats;
        match (kind, result) {
            (_, Err(_)) => Stats::add(&s.errors, 1),
            (OpKind::Read, Ok(n)) => {
                Stats::add(&s.reads, 1);
                Stats::add(&s.bytes_read, *n as u64);
            }
            (OpKind::Write { fua }, Ok(n)) => {
                Stats::add(&s.writes, 1);
                Stats::add(&s.bytes_written, *n as u64);
                if fua {
                    Stats::add(&s.fua_writes, 1);
                }
            }
            (OpKind::Flush, Ok(_)) => Stats::add(&s.flushes, 1),
            (OpKind::Unmap, Ok(_)) => Stats::add(&s.unmaps, 1),
            (OpKind::WriteZeroes, Ok(_)) => Stats::add(&s.write_zeroes, 1),
        }
    }

    /// Read-modify-write of an O_DIRECT write whose offset or length is not aligned: read the
    /// covering aligned range, patch, write it back. Serialised with other such writes.
    pub(crate) fn rmw_write(
        &self,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<usize, BackendError> {
        let align = self.backing.alignment();
        let start = offset - offset % align.offset();
        let end = (offset + data.len() as u64).next_multiple_of(align.offset());
        let mut bounce = AlignedBuf::new((end - start) as usize, align.buffer_align());
        let fd = self.backing.raw_fd();
        let _guard = self
            .rmw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: `bounce` is alive and `end - start` bytes long for both calls.
        unsafe {
            sync_io::read_full(
                fd,
                start,
                bounce.as_mut_ptr(),
                bounce.len(),
                self.io_capacity(),
                align.offset(),
            )?;
        }
        let pos = (offset - start) as usize;
        bounce.as_mut_slice()[pos..pos + data.len()].copy_from_slice(data);
        // SAFETY: as above.
        unsafe {
            sync_io::write_full(
                fd,
                start,
                bounce.as_ptr(),
                bounce.len(),
                fua,
                self.io_capacity(),
            )?;
        }
        Stats::add(&self.stats.bounced_ios, 1);
        Ok(data.len())
    }

    /// Zero a range without ZERO_RANGE: ordinary writes of zeros (aligned for O_DIRECT).
    pub(crate) fn zero_by_writing(&self, offset: u64, len: u64) -> Result<usize, BackendError> {
        sync_io::write_zeroes_by_writing(self.backing.raw_fd(), offset, len, self.io_capacity())?;
        Ok(len as usize)
    }

    /// Synchronous UNMAP for block devices that discard rather than punch.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result<usize, BackendError> {
        self.backing.discard(offset, len)?;
        Ok(len as usize)
    }

    /// Whether UNMAP must go the synchronous BLKDISCARD way.
    pub(crate) fn unmap_by_discard(&self) -> bool {
        self.backing.kind() == BackingKind::BlockDevice && !self.backing.unmap_by_punch()
    }
}
