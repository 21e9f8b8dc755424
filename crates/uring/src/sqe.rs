//! Submission-queue entry builders for backing-store I/O on a caller's ring.
//!
//! io_uring_enter(2) opcodes IORING_OP_READ/WRITE (preadv2/pwritev2 semantics), READ_FIXED/
//! WRITE_FIXED (registered buffers), READV/WRITEV, FSYNC with IORING_FSYNC_DATASYNC
//! (SYNCHRONIZE CACHE, SBC-4 §5.26), FALLOCATE with PUNCH_HOLE|KEEP_SIZE (UNMAP, SBC-4 §5.32;
//! WRITE SAME with UNMAP, §5.50) and ZERO_RANGE (WRITE SAME of zeros). A write with FUA
//! (SBC-4 §5.46) carries RWF_DSYNC, which makes that one write durable before it completes.
//!
//! The engine pushes these entries into the same ring as its socket operations and decodes
//! the completions with [`crate::completion`]. The `user_data` is the caller's.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry, types};

/// Which file an SQE addresses: a plain descriptor or a slot of the ring's registered files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRef {
    /// A plain file descriptor.
    Fd(RawFd),
    /// Index in the ring's registered file table (IOSQE_FIXED_FILE).
    Fixed(u32),
}

macro_rules! with_file {
    ($file:expr, |$fd:ident| $body:expr) => {
        match $file {
            FileRef::Fd(raw) => {
                let $fd = types::Fd(raw);
                $body
            }
            FileRef::Fixed(index) => {
                let $fd = types::Fixed(index);
                $body
            }
        }
    };
}

fn rw_flags(fua: bool) -> i32 {
    if fua { libc::RWF_DSYNC } else { 0 }
}

/// Read `len` bytes at file `offset` into `buf`.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes, and that memory must stay allocated, not
/// moved and not otherwise accessed until the completion of this entry has been reaped from
/// the completion queue (the kernel writes into it asynchronously). With O_DIRECT, `buf`,
/// `offset` and `len` must satisfy the file's [`crate::Alignment`].
pub unsafe fn read(file: FileRef, offset: u64, buf: *mut u8, len: u32, user_data: u64) -> Entry {
    with_file!(file, |fd| opcode::Read::new(fd, buf, len)
        .offset(offset)
        .build()
        .user_data(user_data))
}

/// Read into a registered buffer (IORING_OP_READ_FIXED): `buf` lies inside registered buffer
/// number `buf_index` of the ring the entry is pushed to.
///
/// # Safety
/// As for [`read`]; in addition `buf..buf+len` must lie inside the buffer registered at
/// `buf_index` in the ring this entry is pushed to, and that registration (and the memory
/// behind it) must stay in place until the completion is reaped.
pub unsafe fn read_fixed(
    file: FileRef,
    offset: u64,
    buf: *mut u8,
    len: u32,
    buf_index: u16,
    user_data: u64,
) -> Entry {
    with_file!(file, |fd| opcode::ReadFixed::new(fd, buf, len, buf_index)
        .offset(offset)
        .build()
        .user_data(user_data))
}

/// Write `len` bytes from `buf` at file `offset`; with `fua` the write carries RWF_DSYNC.
///
/// # Safety
/// `buf` must be valid for reads of `len` bytes and must stay allocated, unmoved and
/// unmodified until the completion of this entry has been reaped. With O_DIRECT, `buf`,
/// `offset` and `len` must satisfy the file's [`crate::Alignment`].
pub unsafe fn write(
    file: FileRef,
    offset: u64,
    buf: *const u8,
    len: u32,
    fua: bool,
    user_data: u64,
) -> Entry {
    with_file!(file, |fd| opcode::Write::new(fd, buf, len)
        .offset(offset)
        .rw_flags(rw_flags(fua))
        .build()
        .user_data(user_data))
}

/// Write from a registered buffer (IORING_OP_WRITE_FIXED); with `fua` it carries RWF_DSYNC.
///
/// # Safety
/// As for [`write()`]; in addition `buf..buf+len` must lie inside the buffer registered at
/// `buf_index`, and that registration must stay in place until the completion is reaped.
pub unsafe fn write_fixed(
    file: FileRef,
    offset: u64,
    buf: *const u8,
    len: u32,
    buf_index: u16,
    fua: bool,
    user_data: u64,
) -> Entry {
    with_file!(file, |fd| opcode::WriteFixed::new(fd, buf, len, buf_index)
        .offset(offset)
        .rw_flags(rw_flags(fua))
        .build()
        .user_data(user_data))
}

/// Vectored read (IORING_OP_READV) into `iovcnt` iovecs at `iov`.
///
/// # Safety
/// The iovec array and every buffer it points to must stay valid, unmoved and untouched
/// until the completion is reaped (the kernel may read the array after submission on some
/// kernels, so it must not live on a stack frame that returns earlier).
pub unsafe fn readv(
    file: FileRef,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: u32,
    user_data: u64,
) -> Entry {
    with_file!(file, |fd| opcode::Readv::new(fd, iov, iovcnt)
        .offset(offset)
        .build()
        .user_data(user_data))
}

/// Vectored write (IORING_OP_WRITEV); with `fua` it carries RWF_DSYNC.
///
/// # Safety
/// As for [`readv`], with the buffers only read.
pub unsafe fn writev(
    file: FileRef,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: u32,
    fua: bool,
    user_data: u64,
) -> Entry {
    with_file!(file, |fd| opcode::Writev::new(fd, iov, iovcnt)
        .offset(offset)
        .rw_flags(rw_flags(fua))
        .build()
        .user_data(user_data))
}

/// fdatasync(2) of the whole file (SYNCHRONIZE CACHE). Completes after every write that had
/// *completed* before it was submitted is durable; writes still in flight are not covered.
pub fn fdatasync(file: FileRef, user_data: u64) -> Entry {
    with_file!(file, |fd| opcode::Fsync::new(fd)
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(user_data))
}

/// Deallocate a range, keeping the size (fallocate PUNCH_HOLE|KEEP_SIZE); reads return zeros
/// afterwards. UNMAP and WRITE SAME with UNMAP.
pub fn punch_hole(file: FileRef, offset: u64, len: u64, user_data: u64) -> Entry {
    with_file!(file, |fd| opcode::Fallocate::new(fd, len)
        .offset(offset)
        .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
        .build()
        .user_data(user_data))
}

/// Zero a range, keeping it allocated (fallocate ZERO_RANGE|KEEP_SIZE). WRITE SAME of zeros.
/// File systems without ZERO_RANGE (tmpfs) complete it with EOPNOTSUPP.
pub fn zero_range(file: FileRef, offset: u64, len: u64, user_data: u64) -> Entry {
    with_file!(file, |fd| opcode::Fallocate::new(fd, len)
        .offset(offset)
        .mode(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE)
        .build()
        .user_data(user_data))
}

/// When to hand a read or write straight to the kernel's worker threads (IOSQE_ASYNC)
/// instead of trying it inline in the submitting thread first.
///
/// Buffered I/O that hits the page cache completes inline, so all its copying runs on the
/// submitting (reactor) thread; large buffered reads are better copied by io-wq workers on
/// other cores, so by default reads of 64 KiB or more are punted.
///
/// Buffered writes are not punted by default. On ext4 (no non-blocking buffered writes) the
/// inline attempt fails and io_uring hands every one of them to io-wq anyway, where writes to
/// one regular file run one at a time. Without IOSQE_ASYNC a single worker ran them in order;
/// with it io-wq started a worker per write in flight (33 at QD 32), which only waited for
/// each other: 4 KiB random writes at QD 32 reached 0.6 of fio's IOPS punted and 1.1 of it
/// not punted (`docs/performance.md`). File systems with non-blocking buffered writes
/// complete them inline. O_DIRECT I/O is asynchronous in the block layer and never punted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PuntPolicy {
    /// Buffered reads of at least this many bytes are punted (`None`: never).
    pub buffered_read_min: Option<usize>,
    /// Buffered writes are punted (default: no).
    pub buffered_writes: bool,
}

impl Default for PuntPolicy {
    fn default() -> Self {
        Self {
            buffered_read_min: Some(64 << 10),
            buffered_writes: false,
        }
    }
}

impl PuntPolicy {
    /// Never punt.
    pub const NEVER: Self = Self {
        buffered_read_min: None,
        buffered_writes: false,
    };

    /// Whether a transfer of `len` bytes should be punted.
    ///
    /// ```
    /// use rtgt_uring::sqe::PuntPolicy;
    /// let p = PuntPolicy::default();
    /// assert!(p.punts(false, false, 128 << 10) && !p.punts(false, false, 4096));
    /// assert!(!p.punts(false, true, 4096));
    /// let w = PuntPolicy { buffered_writes: true, ..p };
    /// assert!(w.punts(false, true, 4096) && !w.punts(true, true, 4096));
    /// ```
    pub fn punts(&self, direct: bool, write: bool, len: usize) -> bool {
        !direct
            && if write {
                self.buffered_writes
            } else {
                self.buffered_read_min.is_some_and(|min| len >= min)
            }
    }

    /// Set IOSQE_ASYNC on `entry` if [`punts`](Self::punts) says so.
    pub fn apply(&self, entry: Entry, direct: bool, write: bool, len: usize) -> Entry {
        if self.punts(direct, write, len) {
            entry.flags(io_uring::squeue::Flags::ASYNC)
        } else {
            entry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_user_data_and_flags() {
        let mut buf = [0u8; 8];
        // SAFETY: the entries are only inspected, never pushed to a ring.
        let r = unsafe { read(FileRef::Fixed(0), 4096, buf.as_mut_ptr(), 8, 77) };
        assert_eq!(r.get_user_data(), 77);
        let f = fdatasync(FileRef::Fd(3), 9);
        assert_eq!(f.get_user_data(), 9);
        assert_eq!(rw_flags(true), libc::RWF_DSYNC);
        assert_eq!(rw_flags(false), 0);
    }
}
