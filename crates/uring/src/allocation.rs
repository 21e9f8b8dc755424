//! Allocation map of a sparse file with lseek(2) SEEK_DATA / SEEK_HOLE, for GET LBA STATUS
//! (SBC-4 §5.9: the provisioning status of the extent starting at an LBA).
//!
//! Synchronous on purpose: GET LBA STATUS is rare and not on the data path.

use std::os::fd::{AsRawFd, BorrowedFd};

use rtgt_scsi::{AllocationExtent, BackendError, Provisioning};

use crate::errno::errno_to_backend;

fn seek(fd: BorrowedFd<'_>, offset: u64, whence: i32) -> Result<Option<u64>, i32> {
    let Ok(off) = libc::off_t::try_from(offset) else {
        return Err(libc::EINVAL);
    };
    // SAFETY: lseek takes plain integers and does not touch memory.
    let rc = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        Some(errno) => Err(errno),
        None => Err(libc::EIO),
    }
}

/// Provisioning status of the extent at `offset` (at most `len` bytes, whole `block_size`
/// blocks) of the file open at `fd`. A block that is partly mapped counts as mapped; where
/// the file system cannot tell (no SEEK_DATA support, block devices) everything is mapped.
///
/// ```
/// use rtgt_scsi::Provisioning;
/// let file = tempfile::tempfile()?;
/// file.set_len(1 << 20)?; // all hole
/// let ext = rtgt_uring::allocation::extent(std::os::fd::AsFd::as_fd(&file), 0, 65536, 512)?;
/// assert_eq!((ext.status, ext.len), (Provisioning::Deallocated, 65536));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn extent(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    block_size: u32,
) -> Result<AllocationExtent, BackendError> {
    let bs = u64::from(block_size.max(1));
    let len = len.max(bs);
    let mapped = |n: u64| AllocationExtent {
        status: Provisioning::Mapped,
        len: n.next_multiple_of(bs).clamp(bs, len),
    };
    let data = match seek(fd, offset, libc::SEEK_DATA) {
        Ok(found) => found,
        Err(libc::EINVAL | libc::EOPNOTSUPP | libc::ESPIPE) => return Ok(mapped(len)),
        Err(errno) => return Err(errno_to_backend(errno, "SEEK_DATA")),
    };
    match data {
        Some(start) if start <= offset => {
            let hole = match seek(fd, offset, libc::SEEK_HOLE) {
                Ok(Some(hole)) => hole,
                Ok(None) => offset + len,
                Err(errno) => return Err(errno_to_backend(errno, "SEEK_HOLE")),
            };
            Ok(mapped(hole.saturating_sub(offset)))
        }
        found => {
            let hole_len = found.map_or(len, |start| start - offset);
            let whole_blocks = (hole_len / bs) * bs;
            if whole_blocks == 0 {
                // The first block holds data somewhere inside it.
                return Ok(mapped(bs));
            }
            Ok(AllocationExtent {
                status: Provisioning::Deallocated,
                len: whole_blocks.min(len),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    #[test]
    fn maps_data_and_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("sparse"))
            .expect("open");
        file.set_len(4 << 20).expect("set_len");
        file.write_all_at(&vec![1u8; 65536], 1 << 20)
            .expect("write");
        file.sync_all().expect("sync");
        let fd = file.as_fd();
        let first = extent(fd, 0, 4 << 20, 512).expect("extent");
        assert_eq!(
            first,
            AllocationExtent {
                status: Provisioning::Deallocated,
                len: 1 << 20
            }
        );
        let data = extent(fd, 1 << 20, 4 << 20, 512).expect("extent");
        assert_eq!(data.status, Provisioning::Mapped);
        assert!(data.len >= 65536, "{data:?}");
        let tail = extent(fd, 3 << 20, 1 << 20, 512).expect("extent");
        assert_eq!(
            tail,
            AllocationExtent {
                status: Provisioning::Deallocated,
                len: 1 << 20
            }
        );
        let capped = extent(fd, 1 << 20, 4096, 512).expect("extent");
        assert_eq!(
            capped,
            AllocationExtent {
                status: Provisioning::Mapped,
                len: 4096
            }
        );
    }
}
