//! Opening a backing file or block device once: mode, geometry, capabilities, alignment.
//!
//! The result, [`BackingFile`], is what both the standalone stores and the engine's reactors
//! use: its descriptor is registered as a fixed file in a ring (io_uring_register(2),
//! IORING_REGISTER_FILES_UPDATE) and the SQE builders in [`crate::sqe`] address it. Geometry
//! and features come from ioctls and sysfs (see [`crate::blkdev`], [`crate::sysfs`]) and turn
//! into the SBC-4 capabilities by [`crate::caps::capabilities`].

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rtgt_scsi::{BackendError, Capabilities};

use crate::aligned::Alignment;
use crate::caps::{BackingKind, ProbeFacts, capabilities};
use crate::errno::last_os_error;
use crate::sqe::FileRef;
use crate::sysfs::SysfsRoot;

/// Why a backing store could not be opened; each names the offending path or setting.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path could not be opened or inspected.
    #[error("{path}: {source}")]
    Io {
        /// The backing path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{0}: not a regular file or block device")]
    NotFileOrDevice(PathBuf),
    /// The configured block size is not usable.
    #[error("block_size {block_size}: {reason}")]
    BadBlockSize {
        /// The configured value.
        block_size: u32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The configured size does not fit the device, or the store would be empty.
    #[error("size {size}: {reason}")]
    BadSize {
        /// The size in bytes.
        size: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The file system does not support O_DIRECT.
    #[error("{0}: the file system does not support O_DIRECT")]
    DirectUnsupported(PathBuf),
}

/// How to open a backing store.
#[derive(Debug, Clone, Default)]
pub struct BackingOptions {
    /// Bypass the page cache (O_DIRECT). Default: off.
    pub direct: bool,
    /// Every write durable before it completes (O_DSYNC); WCE is then reported as 0.
    pub write_through: bool,
    /// Open read-only (the LU is write protected).
    pub read_only: bool,
    /// Create the file if it does not exist (files only).
    pub create: bool,
    /// Size in bytes exported to the initiator; files are extended (sparsely) to it. Default:
    /// the file's or device's size.
    pub size: Option<u64>,
    /// Logical block size of the LU. Default: 512 for files, the device's for block devices.
    pub block_size: Option<u32>,
    /// Stripe size in bytes reported as optimal transfer granularity (overrides sysfs).
    pub stripe_bytes: Option<u64>,
    /// Medium rotation rate to report (overrides what sysfs says).
    pub rotation_rate: Option<u16>,
    /// Where sysfs is mounted (fixtures in tests).
    pub sysfs: SysfsRoot,
}

/// A backing file or block device, opened once, with what was learned about it.
#[derive(Debug)]
pub struct BackingFile {
    file: File,
    path: PathBuf,
    facts: ProbeFacts,
    caps: Capabilities,
    alignment: Alignment,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_block_size(block_size: u32, device_lbs: u32) -> Result<(), OpenError> {
    if !block_size.is_power_of_two() || !(512..=65_536).contains(&block_size) {
        return Err(OpenError::BadBlockSize {
            block_size,
            reason: "must be a power of two from 512 to 65536",
        });
    }
    if block_size % device_lbs.max(1) != 0 {
        return Err(OpenError::BadBlockSize {
            block_size,
            reason: "must be a multiple of the device's logical block size",
        });
    }
    Ok(())
}

impl BackingFile {
    /// Open `path` as described by `options`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("lu0.img");
    /// let opts = rtgt_uring::BackingOptions { create: true, size: Some(1 << 20), ..Default::default() };
    /// let backing = rtgt_uring::BackingFile::open(&path, &opts)?;
    /// assert_eq!(backing.capabilities().num_blocks, 2048);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: &BackingOptions) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let mut oo = OpenOptions::new();
        oo.read(true).write(!options.read_only);
        if options.create && !options.read_only {
            oo.create(true);
        }
        let mut flags = libc::O_CLOEXEC;
        if options.direct {
            flags |= libc::O_DIRECT;
        }
        if options.write_through {
            flags |= libc::O_DSYNC;
        }
        oo.custom_flags(flags);
        let file = oo.open(path).map_err(|e| {
            if options.direct && e.raw_os_error() == Some(libc::EINVAL) {
                OpenError::DirectUnsupported(path.to_owned())
            } else {
                OpenError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
        let meta = file.metadata().map_err(io_err(path))?;
        let ftype = meta.file_type();
        let (kind, queue_dev) = if ftype.is_block_device() {
            (BackingKind::BlockDevice, meta.rdev())
        } else if ftype.is_file() {
            (BackingKind::File, meta.dev())
        } else {
            return Err(OpenError::NotFileOrDevice(path.to_owned()));
        };
        let queue = options
            .sysfs
            .queue_info(libc::major(queue_dev), libc::minor(queue_dev));

        let (size, block_size, physical, in_memory) = match kind {
            BackingKind::BlockDevice => {
                let geo = crate::blkdev::geometry(file.as_fd()).map_err(io_err(path))?;
                let bs = options.block_size.unwrap_or(geo.logical_block_size);
                check_block_size(bs, geo.logical_block_size)?;
                let size = match options.size {
                    Some(size) if size > geo.size_bytes => {
                        return Err(OpenError::BadSize {
                            size,
                            reason: "larger than the block device",
                        });
                    }
                    Some(size) => size,
                    None => geo.size_bytes,
                };
                (size, bs, Some(geo.physical_block_size), false)
            }
            BackingKind::File => {
                let bs = options.block_size.unwrap_or(512);
                check_block_size(bs, 1)?;
                let mut size = meta.len();
                if let Some(want) = options.size {
                    if want > size && !options.read_only {
                        file.set_len(want).map_err(io_err(path))?;
                    }
                    size = want;
                }
                (
                    size,
                    bs,
                    queue.physical_block_size,
                    in_memory_fs(file.as_fd()),
                )
            }
        };
        let size = size - size % u64::from(block_size);
        if size == 0 {
            return Err(OpenError::BadSize {
                size,
                reason: "smaller than one logical block",
            });
        }

        let alignment = if options.direct {
            dio_alignment(&file, kind, queue.logical_block_size)
                .ok_or_else(|| OpenError::DirectUnsupported(path.to_owned()))?
        } else {
            Alignment::NONE
        };

        let punch_hole =
            kind == BackingKind::File && !options.read_only && probe_punch_hole(&file, meta.len());
        let facts = ProbeFacts {
            kind,
            size_bytes: size,
            block_size,
            physical_block_size: physical,
            queue,
            in_memory,
            punch_hole,
            direct: options.direct,
            write_through: options.write_through,
            read_only: options.read_only,
            stripe_bytes: options.stripe_bytes,
            rotation_rate: options.rotation_rate,
        };
        let caps = capabilities(&facts);
        tracing::debug!(path = %path.display(), ?kind, size, block_size, direct = options.direct,
            write_through = options.write_through, "backing store opened");
        Ok(Self {
            file,
            path: path.to_owned(),
            facts,
            caps,
            alignment,
        })
    }

    /// The capabilities to give the SCSI layer.
    pub fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    /// What was probed (kind, queue attributes, mode).
    pub fn facts(&self) -> &ProbeFacts {
        &self.facts
    }

    /// File or block device.
    pub fn kind(&self) -> BackingKind {
        self.facts.kind
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size exported to the initiator, in bytes (a multiple of the block size).
    pub fn size_bytes(&self) -> u64 {
        self.facts.size_bytes
    }

    /// Opened with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.facts.direct
    }

    /// Opened with O_DSYNC.
    pub fn is_write_through(&self) -> bool {
        self.facts.write_through
    }

    /// Alignment rules for I/O on this file ([`Alignment::NONE`] unless O_DIRECT).
    pub fn alignment(&self) -> Alignment {
        self.alignment
    }

    /// Whether the backend is rotating (streams default on).
    pub fn is_rotational(&self) -> bool {
        self.facts.rotational()
    }

    /// Whether UNMAP is done with fallocate(PUNCH_HOLE|KEEP_SIZE) (SQE builder
    /// [`crate::sqe::punch_hole`]); if not, a block device is discarded synchronously with
    /// [`BackingFile::discard`].
    pub fn unmap_by_punch(&self) -> bool {
        self.facts.unmap_zeroes()
    }

    /// The raw descriptor (for SQEs that do not use a registered file).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The underlying `File`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Register the descriptor in slot `slot` of the ring's file table (which the caller has
    /// created with `register_files` or `register_files_sparse`), returning the reference the
    /// SQE builders take. The `BackingFile` must outlive every SQE that uses the slot (the
    /// kernel holds its own reference to the file, so closing early is memory-safe, but
    /// I/O would then go to a stale descriptor).
    pub fn register(
        &self,
        submitter: &io_uring::Submitter<'_>,
        slot: u32,
    ) -> std::io::Result<FileRef> {
        submitter.register_files_update(slot, &[self.raw_fd()])?;
        Ok(FileRef::Fixed(slot))
    }

    /// A reference to the plain descriptor for SQE builders (no registration).
    pub fn file_ref(&self) -> FileRef {
        FileRef::Fd(self.raw_fd())
    }

    /// Discard a block-device range with BLKDISCARD (synchronous; for block devices whose
    /// UNMAP is not done by punching, see [`BackingFile::unmap_by_punch`]).
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        if self.facts.kind != BackingKind::BlockDevice {
            return Err(BackendError::Unsupported);
        }
        let range: [u64; 2] = [offset, len];
        // BLKDISCARD = _IO(0x12, 119).
        const BLKDISCARD: libc::Ioctl = 0x1277;
        // SAFETY: BLKDISCARD reads two u64 (start, length) from the pointer, a live local.
        let rc = unsafe { libc::ioctl(self.raw_fd(), BLKDISCARD, range.as_ptr()) };
        if rc < 0 {
            Err(last_os_error("discard"))
        } else {
            Ok(())
        }
    }

    /// Borrow the descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsFd for BackingFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Whether the file lives on tmpfs or ramfs.
fn in_memory_fs(fd: BorrowedFd<'_>) -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs into the pointer, which points at a live local.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), &raw mut st) };
    if rc < 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let ftype = i64::from(st.f_type);
    #[allow(clippy::unnecessary_cast)] // the constant's type differs between libc targets
    let tmpfs = libc::TMPFS_MAGIC as i64;
    ftype == tmpfs || ftype == RAMFS_MAGIC
}

/// Try punching a hole beyond the end of the file (harmless: no data there, size kept).
fn probe_punch_hole(file: &File, file_len: u64) -> bool {
    let at = file_len.next_multiple_of(65_536);
    let Ok(off) = libc::off_t::try_from(at) else {
        return false;
    };
    // SAFETY: fallocate takes plain integers; the descriptor is open for writing.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            65_536,
        )
    };
    rc == 0
}

/// O_DIRECT alignment: statx(STATX_DIOALIGN) where the kernel reports it, else the logical
/// block size. `None` when the file system reports that it cannot do direct I/O.
fn dio_alignment(file: &File, kind: BackingKind, queue_lbs: Option<u32>) -> Option<Alignment> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated empty string, AT_EMPTY_PATH makes statx use the
    // descriptor, and the kernel writes one statx into the pointer (a live local).
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &raw mut stx,
        )
    };
    if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        if stx.stx_dio_offset_align == 0 {
            return None;
        }
        return Some(Alignment::new(
            stx.stx_dio_mem_align as usize,
            u64::from(stx.stx_dio_offset_align),
        ));
    }
    let lbs = match kind {
        BackingKind::BlockDevice => {
            crate::blkdev::geometry(file.as_fd()).map_or(4096, |g| g.logical_block_size)
        }
        BackingKind::File => queue_lbs.unwrap_or(4096),
    };
    Some(Alignment::new(lbs as usize, u64::from(lbs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_extends_a_sparse_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.img");
        let opts = BackingOptions {
            create: true,
            size: Some(4 << 20),
            ..Default::default()
        };
        let b = BackingFile::open(&path, &opts).expect("open");
        assert_eq!(b.kind(), BackingKind::File);
        assert_eq!(b.size_bytes(), 4 << 20);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 4 << 20);
        let caps = b.capabilities();
        assert_eq!(caps.num_blocks, 8192);
        assert!(caps.write_cache_enabled);
        assert!(!caps.read_only);
        assert_eq!(b.alignment(), Alignment::NONE);
    }

    #[test]
    fn refuses_bad_settings_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.img");
        let opts = BackingOptions {
            create: true,
            size: Some(1 << 20),
            block_size: Some(1000),
            ..Default::default()
        };
        let err = BackingFile::open(&path, &opts).expect_err("bad block size");
        assert!(err.to_string().starts_with("block_size 1000"), "{err}");
        let opts = BackingOptions {
            create: true,
            size: Some(100),
            ..Default::default()
        };
        assert!(matches!(
            BackingFile::open(&path, &opts),
            Err(OpenError::BadSize { .. })
        ));
        let missing = BackingFile::open(dir.path().join("nope"), &BackingOptions::default());
        assert!(matches!(missing, Err(OpenError::Io { .. })));
        let not_file = BackingFile::open(
            dir.path(),
            &BackingOptions {
                read_only: true,
                ..Default::default()
            },
        );
        assert!(matches!(not_file, Err(OpenError::NotFileOrDevice(_))));
    }

    #[test]
    fn read_only_and_write_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.img");
        std::fs::write(&path, vec![0u8; 8192]).expect("write");
        let ro = BackingFile::open(
            &path,
            &BackingOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .expect("open ro");
        let caps = ro.capabilities();
        assert!(caps.read_only && !caps.supports_unmap);
        let wt = BackingFile::open(
            &path,
            &BackingOptions {
                write_through: true,
                ..Default::default()
            },
        )
        .expect("open wt");
        assert!(!wt.capabilities().write_cache_enabled);
        assert!(wt.is_write_through());
    }
}
