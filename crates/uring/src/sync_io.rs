//! Blocking primitives over pread(2)/pwritev2(2)/fdatasync(2)/fallocate(2) with the same
//! semantics as the io_uring path: short transfers are continued, EOF inside the logical unit
//! reads as zeros, FUA is RWF_DSYNC (or a write followed by fdatasync where the kernel lacks
//! RWF_DSYNC), errno maps to [`BackendError`]. Used by the thread-pool fallback, by the rare
//! paths of the ring path (read-modify-write of unaligned O_DIRECT writes, zeroing on file
//! systems without ZERO_RANGE, BLKDISCARD) and by tests.

use std::os::fd::RawFd;

use rtgt_scsi::BackendError;

use crate::completion::{Direction, Next, Transfer};
use crate::errno::{errno_to_backend, last_os_error};

/// Largest single system-call transfer.
const MAX_CHUNK: usize = 1 << 30;

fn res_of(rc: isize) -> i32 {
    if rc < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        i32::try_from(rc).unwrap_or(i32::MAX)
    }
}

/// Read `len` bytes at `offset` into `ptr`, continuing short reads; EOF inside `capacity`
/// zero-fills. Returns the number of bytes zero-filled.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
pub(crate) unsafe fn read_full(
    fd: RawFd,
    offset: u64,
    ptr: *mut u8,
    len: usize,
    capacity: u64,
    align: u64,
) -> Result<usize, BackendError> {
    let mut t = Transfer::new(Direction::Read, offset, len, capacity, align);
    let mut next = t.remainder();
    loop {
        match next {
            Next::Done => return Ok(0),
            Next::ZeroFill { buf_pos, len } => {
                // SAFETY: buf_pos + len <= the caller's len, valid per the contract.
                unsafe { std::ptr::write_bytes(ptr.add(buf_pos), 0, len) };
                return Ok(len);
            }
            Next::Resubmit {
                offset,
                buf_pos,
                len,
            } => {
                let n = len.min(MAX_CHUNK);
                let off = libc::off_t::try_from(offset)
                    .map_err(|_| errno_to_backend(libc::EINVAL, "read"))?;
                // SAFETY: ptr+buf_pos..+n lies inside the caller's buffer (contract above).
                let rc = unsafe { libc::pread(fd, ptr.add(buf_pos).cast(), n, off) };
                next = t.on_result(res_of(rc))?;
            }
        }
    }
}

/// Write `len` bytes from `ptr` at `offset`, continuing short writes; with `fua` the data is
/// durable on return.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
pub(crate) unsafe fn write_full(
    fd: RawFd,
    offset: u64,
    ptr: *const u8,
    len: usize,
    fua: bool,
    capacity: u64,
) -> Result<(), BackendError> {
    let mut t = Transfer::new(Direction::Write, offset, len, capacity, 1);
    let mut next = t.remainder();
    let mut need_sync = false;
    loop {
        match next {
            Next::Done | Next::ZeroFill { .. } => break,
            Next::Resubmit {
                offset,
                buf_pos,
                len,
            } => {
                let n = len.min(MAX_CHUNK);
                let off = libc::off_t::try_from(offset)
                    .map_err(|_| errno_to_backend(libc::EINVAL, "write"))?;
                let iov = libc::iovec {
                    // SAFETY: inside the caller's buffer (contract above).
                    iov_base: unsafe { ptr.add(buf_pos) }.cast_mut().cast(),
                    iov_len: n,
                };
                let flags = if fua && !need_sync {
                    libc::RWF_DSYNC
                } else {
                    0
                };
                // SAFETY: one iovec describing readable memory of the caller.
                let rc = unsafe { libc::pwritev2(fd, &raw const iov, 1, off, flags) };
                let res = res_of(rc);
                if fua
                    && !need_sync
                    && (res == -libc::EOPNOTSUPP || res == -libc::EINVAL || res == -libc::ENOSYS)
                {
                    // Kernel without RWF_DSYNC: plain write, then fdatasync.
                    need_sync = true;
                    continue;
                }
                next = t.on_result(res)?;
            }
        }
    }
    if need_sync {
        datasync(fd)?;
    }
    Ok(())
}

/// fdatasync(2).
pub(crate) fn datasync(fd: RawFd) -> Result<(), BackendError> {
    // SAFETY: plain system call on an integer descriptor.
    if unsafe { libc::fdatasync(fd) } < 0 {
        Err(last_os_error("flush"))
    } else {
        Ok(())
    }
}

/// fallocate(2) with `mode`.
pub(crate) fn fallocate(
    fd: RawFd,
    mode: i32,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<(), BackendError> {
    let off = libc::off_t::try_from(offset).map_err(|_| errno_to_backend(libc::EINVAL, what))?;
    let n = libc::off_t::try_from(len).map_err(|_| errno_to_backend(libc::EINVAL, what))?;
    // SAFETY: plain system call with integer arguments.
    if unsafe { libc::fallocate(fd, mode, off, n) } < 0 {
        Err(last_os_error(what))
    } else {
        Ok(())
    }
}

/// Write zeros over a range with ordinary writes (file systems without ZERO_RANGE).
pub(crate) fn write_zeroes_by_writing(
    fd: RawFd,
    offset: u64,
    len: u64,
    capacity: u64,
) -> Result<(), BackendError> {
    const CHUNK: u64 = 1 << 20;
    let zeros = crate::aligned::AlignedBuf::new(CHUNK.min(len.max(1)) as usize, 4096);
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(zeros.len() as u64) as usize;
        // SAFETY: `zeros` is alive for the call and at least `n` bytes long.
        unsafe { write_full(fd, offset + pos, zeros.as_ptr(), n, false, capacity)? };
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn round_trip_and_eof_zero_fill() {
        let file = tempfile::tempfile().expect("tempfile");
        file.set_len(4096).expect("set_len");
        let fd = file.as_raw_fd();
        let data = [0xA5u8; 4096];
        // SAFETY: `data` outlives the call.
        unsafe { write_full(fd, 0, data.as_ptr(), 4096, true, 8192) }.expect("write");
        let mut back = [0xFFu8; 8192];
        // SAFETY: `back` outlives the call.
        let filled = unsafe { read_full(fd, 0, back.as_mut_ptr(), 8192, 8192, 1) }.expect("read");
        assert_eq!(filled, 4096);
        assert!(back[..4096].iter().all(|&b| b == 0xA5));
        assert!(back[4096..].iter().all(|&b| b == 0));
        let mut beyond = [0u8; 512];
        // SAFETY: `beyond` outlives the call.
        let err = unsafe { read_full(fd, 8192, beyond.as_mut_ptr(), 512, 8192, 1) };
        assert!(err.is_err());
    }

    #[test]
    fn zeroing_by_writing() {
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        let data = vec![7u8; 3 << 20];
        // SAFETY: `data` outlives the call.
        unsafe { write_full(fd, 0, data.as_ptr(), data.len(), false, 3 << 20) }.expect("write");
        write_zeroes_by_writing(fd, 4096, (2 << 20) + 512, 3 << 20).expect("zero");
        let mut back = vec![1u8; 3 << 20];
        // SAFETY: `back` outlives the call.
        unsafe { read_full(fd, 0, back.as_mut_ptr(), back.len(), 3 << 20, 1) }.expect("read");
        assert!(back[..4096].iter().all(|&b| b == 7));
        assert!(back[4096..4096 + (2 << 20) + 512].iter().all(|&b| b == 0));
        assert!(back[4096 + (2 << 20) + 512..].iter().all(|&b| b == 7));
    }

    #[test]
    fn bad_descriptor_is_an_error() {
        let mut buf = [0u8; 16];
        // SAFETY: `buf` outlives the call.
        let err = unsafe { read_full(-1, 0, buf.as_mut_ptr(), 16, 16, 1) }.expect_err("EBADF");
        assert!(matches!(err, BackendError::Other(_)));
        assert!(datasync(-1).is_err());
    }
}
