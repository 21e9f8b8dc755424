//! The seam between a logical unit and its storage (the `BlockBackend` trait).
//!
//! The logical unit (SBC-4 direct-access device model) never owns data buffers and never
//! performs I/O itself: it turns commands into plans, the engine executes those plans against a
//! backend, and the logical unit turns the results into status and sense. This module defines
//! what a backend is: its [`Capabilities`] (which feed READ CAPACITY, the Block Limits,
//! Block Device Characteristics and Logical Block Provisioning VPD pages, and the Caching mode
//! page) and a synchronous, object-safe data path used by the in-memory and null stores, by
//! tests and by engines that execute plans inline. Asynchronous stores (io_uring) implement the
//! same trait for standalone use and additionally expose their own submission interface.
//!
//! All offsets and lengths are in **bytes**; callers guarantee they are multiples of
//! [`Capabilities::block_size`] and lie inside the device.

/// What a backing store can do and how it is shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Logical block size in bytes (512 or 4096 in practice).
    pub block_size: u32,
    /// Number of logical blocks.
    pub num_blocks: u64,
    /// log2(physical block size / logical block size) (READ CAPACITY(16) exponent).
    pub physical_block_exponent: u8,
    /// Optimal transfer length granularity in logical blocks (e.g. the RAID stripe); 0 = unknown.
    pub optimal_granularity_blocks: u32,
    /// Optimal transfer length in logical blocks; 0 = unknown.
    pub optimal_transfer_blocks: u32,
    /// Largest transfer the store accepts in one command, in logical blocks; 0 = no limit.
    pub max_transfer_blocks: u32,
    /// Medium rotation rate (SBC-4 VPD B1): 0 = not reported, 1 = non-rotating, else RPM.
    pub rotation_rate: u16,
    /// Thin provisioned: blocks may be deallocated with [`BlockBackend::unmap`].
    pub thin_provisioned: bool,
    /// Deallocated blocks read back as zeros (LBPRZ).
    pub unmap_reads_zeroes: bool,
    /// The store can deallocate ranges.
    pub supports_unmap: bool,
    /// The store can zero ranges without a data buffer.
    pub supports_write_zeroes: bool,
    /// The store honours per-write force-unit-access.
    pub supports_fua: bool,
    /// The store has a volatile cache that [`BlockBackend::flush`] makes durable.
    pub supports_flush: bool,
    /// Writes are acknowledged before they are durable (WCE=1 in the Caching mode page).
    pub write_cache_enabled: bool,
    /// The medium is read-only (write protected).
    pub read_only: bool,
}

impl Capabilities {
    /// A plain, writable, non-thin store of `num_blocks` blocks of `block_size` bytes.
    pub fn simple(block_size: u32, num_blocks: u64) -> Self {
        Self {
            block_size,
            num_blocks,
            physical_block_exponent: 0,
            optimal_granularity_blocks: 0,
            optimal_transfer_blocks: 0,
            max_transfer_blocks: 0,
            rotation_rate: 0,
            thin_provisioned: false,
            unmap_reads_zeroes: false,
            supports_unmap: false,
            supports_write_zeroes: false,
            supports_fua: true,
            supports_flush: true,
            write_cache_enabled: false,
            read_only: false,
        }
    }

    /// Capacity in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }
}

/// Whether a range of blocks is mapped (holds data) or deallocated (SBC-4 GET LBA STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// The blocks are mapped (or the store cannot tell).
    Mapped,
    /// The blocks are deallocated.
    Deallocated,
}

/// The first extent at an offset: its provisioning status and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationExtent {
    /// Status of every block in the extent.
    pub status: Provisioning,
    /// Length of the extent in bytes (at least one block, at most what was asked).
    pub len: u64,
}

/// Why a backend operation failed; each maps to the sense data the initiator receives.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The medium could not be read or written (EIO): MEDIUM ERROR.
    #[error("medium error: {0}")]
    Medium(String),
    /// The store has no room left (ENOSPC): space allocation failed, write protect.
    #[error("no space left on the backing store")]
    NoSpace,
    /// The store is read-only (EROFS / EPERM): DATA PROTECT, WRITE PROTECTED.
    #[error("backing store is write protected")]
    WriteProtected,
    /// The store does not support the operation.
    #[error("operation not supported by the backing store")]
    Unsupported,
    /// Any other failure of the host (ENOMEM, ...): HARDWARE ERROR, INTERNAL TARGET FAILURE.
    #[error("backing store failure: {0}")]
    Other(String),
}

/// A backing store for one logical unit.
///
/// Implementations must be safe to call from several threads at once; writes to disjoint
/// ranges must not interfere. Atomicity of COMPARE AND WRITE against concurrent writes is the
/// logical unit's and the engine's business, not the backend's.
pub trait BlockBackend: Send + Sync {
    /// Shape and features of the store.
    fn capabilities(&self) -> Capabilities;
    /// Read `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError>;
    /// Write `buf` at `offset`; with `fua` the data is durable when this returns.
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), BackendError>;
    /// Make every acknowledged write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> Result<(), BackendError>;
    /// Deallocate `len` bytes at `offset` (UNMAP, WRITE SAME with UNMAP).
    fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError>;
    /// Make `len` bytes at `offset` read back as zeros.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError>;
    /// Provisioning status of the extent starting at `offset`, at most `len` bytes long.
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError>;
}

impl BackendError {
    /// The sense data reporting this failure (SBC-4 §4.18, SPC-5 §4.4.9). `write` selects
    /// WRITE ERROR rather than UNRECOVERED READ ERROR for medium errors.
    pub fn sense(&self, write: bool) -> crate::SenseError {
        use crate::sense::{AdditionalSense, SenseError, SenseKey};
        match self {
            Self::Medium(_) if write => {
                SenseError::new(SenseKey::MEDIUM_ERROR, AdditionalSense::WRITE_ERROR)
            }
            Self::Medium(_) => SenseError::new(
                SenseKey::MEDIUM_ERROR,
                AdditionalSense::UNRECOVERED_READ_ERROR,
            ),
            Self::NoSpace => {
                SenseError::write_protected(AdditionalSense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
            }
            Self::WriteProtected => SenseError::write_protected(AdditionalSense::WRITE_PROTECTED),
            Self::Unsupported => SenseError::new(
                SenseKey::ILLEGAL_REQUEST,
                AdditionalSense::INVALID_FIELD_IN_CDB,
            ),
            Self::Other(_) => SenseError::internal_failure(),
        }
    }
}
