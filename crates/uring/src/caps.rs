//! Truthful [`Capabilities`] from what was probed about a backing file or device.
//!
//! Pure logic, kept apart from the probing so every rule is unit-tested. The values feed
//! READ CAPACITY(16) (SBC-4 §5.20.2), the Block Limits VPD page (SBC-4 §6.6.4), the Block
//! Device Characteristics VPD page (SBC-4 §6.6.2), the Logical Block Provisioning VPD page
//! (SBC-4 §6.6.6) and the Caching mode page's WCE bit (SBC-4 §6.5.5).

use rtgt_scsi::Capabilities;

use crate::sysfs::{DeviceWriteCache, QueueInfo};

/// Medium rotation rate reported for a rotating device whose speed nobody tells us.
pub const NOMINAL_ROTATION_RATE: u16 = 7200;

/// What a backing store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingKind {
    /// A regular file on a file system.
    File,
    /// A block device node.
    BlockDevice,
}

/// Everything probed about a backing store that decides its capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFacts {
    /// File or block device.
    pub kind: BackingKind,
    /// Size exported to the initiator, in bytes.
    pub size_bytes: u64,
    /// Logical block size of the logical unit.
    pub block_size: u32,
    /// Physical block size of the device (for files: of the device under the file system).
    pub physical_block_size: Option<u32>,
    /// Queue attributes of the device (for files: of the device under the file system).
    pub queue: QueueInfo,
    /// The file lives in memory (tmpfs/ramfs).
    pub in_memory: bool,
    /// For files: the file system punches holes (FALLOC_FL_PUNCH_HOLE).
    pub punch_hole: bool,
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// Opened with O_DSYNC (every write durable before completion).
    pub write_through: bool,
    /// Opened read-only.
    pub read_only: bool,
    /// Configured stripe size in bytes, overriding the device's optimal I/O size.
    pub stripe_bytes: Option<u64>,
    /// Configured rotation rate, overriding what was probed.
    pub rotation_rate: Option<u16>,
}

impl ProbeFacts {
    /// Whether UNMAP goes through fallocate(PUNCH_HOLE), which guarantees zeros afterwards
    /// (files; block devices that can write zeroes); otherwise a block device discards with
    /// BLKDISCARD and the blocks read back undefined.
    pub fn unmap_zeroes(&self) -> bool {
        match self.kind {
            BackingKind::File => true,
            BackingKind::BlockDevice => self.queue.write_zeroes_max_bytes.unwrap_or(0) > 0,
        }
    }

    /// Whether the store is rotating (drives the default of the streams feature).
    pub fn rotational(&self) -> bool {
        match self.rotation_rate {
            Some(rate) => rate > 1,
            None => !self.in_memory && self.queue.rotational == Some(true),
        }
    }
}

fn blocks(bytes: u64, block_size: u32) -> u32 {
    u32::try_from(bytes / u64::from(block_size.max(1))).unwrap_or(u32::MAX)
}

/// Derive the capabilities reported to the SCSI layer.
///
/// ```
/// use rtgt_uring::caps::{capabilities, BackingKind, ProbeFacts};
/// use rtgt_uring::sysfs::QueueInfo;
/// let facts = ProbeFacts {
///     kind: BackingKind::File, size_bytes: 1 << 20, block_size: 512,
///     physical_block_size: Some(4096), queue: QueueInfo { rotational: Some(false), ..Default::default() },
///     in_memory: false, punch_hole: true, direct: false, write_through: false, read_only: false,
///     stripe_bytes: None, rotation_rate: None,
/// };
/// let caps = capabilities(&facts);
/// assert_eq!((caps.num_blocks, caps.physical_block_exponent, caps.rotation_rate), (2048, 3, 1));
/// assert!(caps.write_cache_enabled && caps.thin_provisioned);
/// ```
pub fn capabilities(facts: &ProbeFacts) -> Capabilities {
    let bs = facts.block_size.max(1);
    let mut caps = Capabilities::simple(bs, facts.size_bytes / u64::from(bs));

    caps.physical_block_exponent = match facts.physical_block_size {
        Some(pbs) if pbs > bs && pbs % bs == 0 && (pbs / bs).is_power_of_two() => {
            (pbs / bs).trailing_zeros() as u8
        }
        _ => 0,
    };

    let stripe = facts
        .stripe_bytes
        .or(facts.queue.optimal_io_size)
        .filter(|&bytes| bytes >= u64::from(bs));
    if let Some(stripe) = stripe {
        caps.optimal_granularity_blocks = blocks(stripe, bs);
        caps.optimal_transfer_blocks = blocks(stripe, bs);
    }

    caps.rotation_rate = match facts.rotation_rate {
        Some(rate) => rate,
        None if facts.in_memory => 1,
        None => match facts.queue.rotational {
            Some(false) => 1,
            Some(true) => NOMINAL_ROTATION_RATE,
            None => 0,
        },
    };

    let can_unmap = !facts.read_only
        && match facts.kind {
            BackingKind::File => facts.punch_hole,
            BackingKind::BlockDevice => facts.queue.discard_max_bytes.unwrap_or(0) > 0,
        };
    caps.supports_unmap = can_unmap;
    caps.thin_provisioned = can_unmap;
    caps.unmap_reads_zeroes = can_unmap && facts.unmap_zeroes();
    caps.supports_write_zeroes = !facts.read_only;
    caps.supports_fua = true;
    caps.supports_flush = true;

    // A completed write is durable only with O_DSYNC, or with O_DIRECT straight to a block
    // device whose own cache is write-through. Buffered writes sit in the page cache; O_DIRECT
    // writes to a file may still need the file system's metadata flushed.
    let device_write_through = facts.queue.write_cache == Some(DeviceWriteCache::WriteThrough);
    let durable_on_completion = facts.write_through
        || (facts.direct && facts.kind == BackingKind::BlockDevice && device_write_through);
    caps.write_cache_enabled = !durable_on_completion;
    caps.read_only = facts.read_only;
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_facts() -> ProbeFacts {
        ProbeFacts {
            kind: BackingKind::File,
            size_bytes: 64 << 20,
            block_size: 512,
            physical_block_size: None,
            queue: QueueInfo::default(),
            in_memory: false,
            punch_hole: true,
            direct: false,
            write_through: false,
            read_only: false,
            stripe_bytes: None,
            rotation_rate: None,
        }
    }

    fn disk_facts(queue: QueueInfo) -> ProbeFacts {
        ProbeFacts {
            kind: BackingKind::BlockDevice,
            punch_hole: false,
            queue,
            ..file_facts()
        }
    }

    #[test]
    fn size_and_exponent() {
        let mut facts = file_facts();
        facts.physical_block_size = Some(4096);
        let caps = capabilities(&facts);
        assert_eq!(caps.block_size, 512);
        assert_eq!(caps.num_blocks, 131_072);
        assert_eq!(caps.physical_block_exponent, 3);
        facts.physical_block_size = Some(3000);
        assert_eq!(capabilities(&facts).physical_block_exponent, 0);
        facts.physical_block_size = Some(256);
        assert_eq!(capabilities(&facts).physical_block_exponent, 0);
    }

    #[test]
    fn rotation_rate_rules() {
        let mut facts = file_facts();
        assert_eq!(capabilities(&facts).rotation_rate, 0, "unknown");
        facts.queue.rotational = Some(false);
        assert_eq!(capabilities(&facts).rotation_rate, 1, "non-rotating");
        facts.queue.rotational = Some(true);
        assert_eq!(capabilities(&facts).rotation_rate, NOMINAL_ROTATION_RATE);
        assert!(facts.rotational());
        facts.rotation_rate = Some(15_000);
        assert_eq!(capabilities(&facts).rotation_rate, 15_000);
        let mut ram = file_facts();
        ram.in_memory = true;
        assert_eq!(capabilities(&ram).rotation_rate, 1);
        assert!(!ram.rotational());
    }

    #[test]
    fn stripe_becomes_optimal_granularity() {
        let mut facts = disk_facts(QueueInfo {
            optimal_io_size: Some(1 << 20),
            ..QueueInfo::default()
        });
        let caps = capabilities(&facts);
        assert_eq!(caps.optimal_granularity_blocks, 2048);
        assert_eq!(caps.optimal_transfer_blocks, 2048);
        facts.stripe_bytes = Some(256 << 10);
        assert_eq!(capabilities(&facts).optimal_granularity_blocks, 512);
        facts.stripe_bytes = None;
        facts.queue.optimal_io_size = Some(0);
        assert_eq!(capabilities(&facts).optimal_granularity_blocks, 0);
    }

    #[test]
    fn unmap_support() {
        let caps = capabilities(&file_facts());
        assert!(caps.supports_unmap && caps.thin_provisioned && caps.unmap_reads_zeroes);
        let mut no_punch = file_facts();
        no_punch.punch_hole = false;
        assert!(!capabilities(&no_punch).supports_unmap);

        let plain = disk_facts(QueueInfo {
            discard_max_bytes: Some(0),
            ..QueueInfo::default()
        });
        assert!(!capabilities(&plain).supports_unmap);
        let discard = disk_facts(QueueInfo {
            discard_max_bytes: Some(1 << 30),
            ..QueueInfo::default()
        });
        let caps = capabilities(&discard);
        assert!(caps.supports_unmap && !caps.unmap_reads_zeroes);
        let zeroing = disk_facts(QueueInfo {
            discard_max_bytes: Some(1 << 30),
            write_zeroes_max_bytes: Some(1 << 30),
            ..QueueInfo::default()
        });
        assert!(capabilities(&zeroing).unmap_reads_zeroes);
        let mut ro = file_facts();
        ro.read_only = true;
        let caps = capabilities(&ro);
        assert!(caps.read_only && !caps.supports_unmap && !caps.supports_write_zeroes);
    }

    #[test]
    fn write_cache_follows_mode_and_device() {
        let mut facts = file_facts();
        assert!(
            capabilities(&facts).write_cache_enabled,
            "buffered write-back"
        );
        facts.write_through = true;
        assert!(!capabilities(&facts).write_cache_enabled, "O_DSYNC");
        facts.write_through = false;
        facts.direct = true;
        assert!(
            capabilities(&facts).write_cache_enabled,
            "O_DIRECT file: metadata"
        );

        let mut disk = disk_facts(QueueInfo {
            write_cache: Some(DeviceWriteCache::WriteThrough),
            ..QueueInfo::default()
        });
        assert!(
            capabilities(&disk).write_cache_enabled,
            "buffered: page cache"
        );
        disk.direct = true;
        assert!(
            !capabilities(&disk).write_cache_enabled,
            "direct, device write-through"
        );
        disk.queue.write_cache = Some(DeviceWriteCache::WriteBack);
        assert!(
            capabilities(&disk).write_cache_enabled,
            "direct, device write-back"
        );
    }
}
