//! Block-device geometry via ioctl: BLKGETSIZE64, BLKSSZGET, BLKPBSZGET.
//!
//! These give READ CAPACITY(16) its values (SBC-4 §5.20.2: RETURNED LOGICAL BLOCK ADDRESS,
//! LOGICAL BLOCK LENGTH IN BYTES, LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT).

use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOR(0x12, 114, size_t)`: the direction bits sit at 30 on most architectures, at 29 with
/// a 3-bit field on MIPS, PowerPC and SPARC.
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272_u32 as libc::Ioctl;
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const BLKGETSIZE64: libc::Ioctl = 0x4008_1272_u32 as libc::Ioctl;

/// What the kernel tells about a block device's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockGeometry {
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
    /// Physical block size in bytes.
    pub physical_block_size: u32,
}

/// Query size and block sizes of the block device open at `fd`.
pub fn geometry(fd: BorrowedFd<'_>) -> std::io::Result<BlockGeometry> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &raw mut size) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut lbs: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::BLKSSZGET, &raw mut lbs) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut pbs: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer, a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::BLKPBSZGET, &raw mut pbs) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(BlockGeometry {
        size_bytes: size,
        logical_block_size: u32::try_from(lbs).unwrap_or(512),
        physical_block_size: pbs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn regular_file_is_not_a_block_device() {
        let file = tempfile::tempfile().expect("tempfile");
        let err = geometry(file.as_fd()).expect_err("ioctl on a regular file must fail");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }
}
