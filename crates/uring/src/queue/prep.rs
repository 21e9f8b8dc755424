//! Preparing a read or write for the device: range checks and O_DIRECT bouncing.
//!
//! open(2) "O_DIRECT": the buffer address, file offset and length must be aligned. When the
//! caller's are not, a read goes through an aligned bounce buffer covering the aligned range
//! and a write either through a bounce copy (only the memory unaligned) or a synchronous
//! read-modify-write (offset or length unaligned). Every bounce is counted in the stats.

use rtgt_scsi::BackendError;

use crate::aligned::AlignedBuf;
use crate::shared::Shared;
use crate::stats::Stats;

/// Where the device I/O goes and what to do afterwards.
pub(crate) struct Prepared {
    /// File offset of the device I/O.
    pub(crate) offset: u64,
    /// Memory of the device I/O (the caller's buffer or the bounce buffer).
    pub(crate) ptr: *mut u8,
    /// Length of the device I/O.
    pub(crate) len: usize,
    /// The bounce buffer, if any (kept alive until completion).
    pub(crate) bounce: Option<AlignedBuf>,
    /// For bounced reads: copy `len` bytes from this position of the bounce buffer back.
    pub(crate) copy_out: Option<(usize, usize)>,
}

impl Prepared {
    /// A range-only operation (flush, unmap, zeroing): no memory.
    pub(crate) fn none(offset: u64, len: usize) -> Self {
        Self {
            offset,
            ptr: std::ptr::null_mut(),
            len,
            bounce: None,
            copy_out: None,
        }
    }
}

pub(crate) enum Prep {
    /// Submit this device I/O.
    Go(Prepared),
    /// Already finished (rejected, or done synchronously).
    Done(Result<usize, BackendError>),
}

/// Prepare a read of `len` bytes at `offset` into `ptr`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes (it is only recorded here, not written).
pub(crate) unsafe fn read(shared: &Shared, offset: u64, ptr: *mut u8, len: usize) -> Prep {
    if let Err(e) = shared.check_range(offset, len as u64) {
        return Prep::Done(Err(e));
    }
    let align = shared.backing.alignment();
    if align.is_aligned(ptr, len, offset) {
        return Prep::Go(Prepared {
            offset,
            ptr,
            len,
            bounce: None,
            copy_out: None,
        });
    }
    let start = offset - offset % align.offset();
    let end = (offset + len as u64).next_multiple_of(align.offset());
    let mut bounce = AlignedBuf::new((end - start) as usize, align.buffer_align());
    Stats::add(&shared.stats.bounced_ios, 1);
    Prep::Go(Prepared {
        offset: start,
        ptr: bounce.as_mut_ptr(),
        len: bounce.len(),
        copy_out: Some(((offset - start) as usize, len)),
        bounce: Some(bounce),
    })
}

/// Prepare a write of `len` bytes from `ptr` at `offset`.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes for the duration of the call (a bounce copy
/// or a read-modify-write reads it here) and, when the result is [`Prep::Go`] without a
/// bounce buffer, until the device I/O completes.
pub(crate) unsafe fn write(
    shared: &Shared,
    offset: u64,
    ptr: *const u8,
    len: usize,
    fua: bool,
) -> Prep {
    if let Err(e) = shared
        .check_writable()
        .and_then(|()| shared.check_range(offset, len as u64))
    {
        return Prep::Done(Err(e));
    }
    let align = shared.backing.alignment();
    if align.is_aligned(ptr, len, offset) {
        return Prep::Go(Prepared {
            offset,
            ptr: ptr.cast_mut(),
            len,
            bounce: None,
            copy_out: None,
        });
    }
    // SAFETY: valid for reads of `len` bytes per the contract.
    let data = unsafe { std::slice::from_raw_parts(ptr, len) };
    if !align.range_aligned(len as u64, offset) {
        return Prep::Done(shared.rmw_write(offset, data, fua));
    }
    let mut bounce = AlignedBuf::new(len, align.buffer_align());
    bounce.as_mut_slice().copy_from_slice(data);
    Stats::add(&shared.stats.bounced_ios, 1);
    Prep::Go(Prepared {
        offset,
        ptr: bounce.as_mut_ptr(),
        len,
        bounce: Some(bounce),
        copy_out: None,
    })
}

/// After a bounced read completed: copy the caller's part out of the bounce buffer.
///
/// # Safety
/// `dst` must be valid for writes of the `copy_out` length.
pub(crate) unsafe fn finish_read(
    bounce: Option<&AlignedBuf>,
    copy_out: Option<(usize, usize)>,
    dst: *mut u8,
) {
    if let (Some(bounce), Some((pos, len))) = (bounce, copy_out) {
        let src = &bounce.as_slice()[pos..pos + len];
        // SAFETY: `dst` is valid for `len` bytes per the contract and cannot overlap the
        // bounce buffer, which this module allocated.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len) };
    }
}
