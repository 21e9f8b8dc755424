//! Block-queue attributes from sysfs (`/sys/dev/block/MAJ:MIN/queue/...`).
//!
//! These feed the Block Limits VPD page (SBC-4 §6.6.4: optimal transfer length and its
//! granularity), the Block Device Characteristics VPD page (SBC-4 §6.6.2: medium rotation
//! rate), the Logical Block Provisioning VPD page (SBC-4 §6.6.6) and the Caching mode page
//! (SBC-4 §6.5.5: WCE). The root directory is a parameter so tests can use fixture trees.

use std::path::{Path, PathBuf};

/// Whether a device acknowledges writes from a volatile cache (`queue/write_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceWriteCache {
    /// "write back": the device has a volatile cache; writes need a flush to be durable.
    WriteBack,
    /// "write through": a completed write is durable.
    WriteThrough,
}

/// The attributes of one block queue that matter to a logical unit; `None` where the file is
/// absent or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueInfo {
    /// `queue/rotational`.
    pub rotational: Option<bool>,
    /// `queue/optimal_io_size` in bytes (io_opt, the stripe width of RAID devices); 0 = none.
    pub optimal_io_size: Option<u64>,
    /// `queue/minimum_io_size` in bytes (io_min, e.g. the RAID chunk).
    pub minimum_io_size: Option<u64>,
    /// `queue/discard_max_bytes`: 0 means the device cannot discard.
    pub discard_max_bytes: Option<u64>,
    /// `queue/write_zeroes_max_bytes`: 0 means no offloaded zeroing.
    pub write_zeroes_max_bytes: Option<u64>,
    /// `queue/write_cache`.
    pub write_cache: Option<DeviceWriteCache>,
    /// `queue/logical_block_size`.
    pub logical_block_size: Option<u32>,
    /// `queue/physical_block_size`.
    pub physical_block_size: Option<u32>,
    /// `queue/max_sectors_kb` in KiB.
    pub max_sectors_kb: Option<u32>,
}

/// Where sysfs is mounted (normally `/sys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    fn default() -> Self {
        Self(PathBuf::from("/sys"))
    }
}

impl SysfsRoot {
    /// A sysfs tree rooted at `root` (a fixture directory in tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The queue directory of device `major:minor`; for a partition (which has no queue of its
    /// own) the queue of the whole disk it belongs to.
    pub fn queue_dir(&self, major: u32, minor: u32) -> Option<PathBuf> {
        let dev = self.0.join("dev/block").join(format!("{major}:{minor}"));
        let own = dev.join("queue");
        if own.is_dir() {
            return Some(own);
        }
        // A partition's directory sits inside its disk's directory.
        let parent = dev.join("..").join("queue");
        if dev.join("partition").exists() && parent.is_dir() {
            return Some(parent);
        }
        None
    }

    /// Read the queue attributes of device `major:minor`; all `None` if it has none.
    pub fn queue_info(&self, major: u32, minor: u32) -> QueueInfo {
        match self.queue_dir(major, minor) {
            Some(dir) => parse_queue_dir(&dir),
            None => QueueInfo::default(),
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn read_u64(dir: &Path, name: &str) -> Option<u64> {
    read_trimmed(&dir.join(name))?.parse().ok()
}

fn read_u32(dir: &Path, name: &str) -> Option<u32> {
    read_trimmed(&dir.join(name))?.parse().ok()
}

/// Parse a queue directory's attribute files.
pub fn parse_queue_dir(dir: &Path) -> QueueInfo {
    QueueInfo {
        rotational: read_trimmed(&dir.join("rotational")).and_then(|s| match s.as_str() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        }),
        optimal_io_size: read_u64(dir, "optimal_io_size"),
        minimum_io_size: read_u64(dir, "minimum_io_size"),
        discard_max_bytes: read_u64(dir, "discard_max_bytes"),
        write_zeroes_max_bytes: read_u64(dir, "write_zeroes_max_bytes"),
        write_cache: read_trimmed(&dir.join("write_cache")).and_then(|s| match s.as_str() {
            "write back" => Some(DeviceWriteCache::WriteBack),
            "write through" => Some(DeviceWriteCache::WriteThrough),
            _ => None,
        }),
        logical_block_size: read_u32(dir, "logical_block_size"),
        physical_block_size: read_u32(dir, "physical_block_size"),
        max_sectors_kb: read_u32(dir, "max_sectors_kb"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, SysfsRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = dir.path().join("dev/block/8:0/queue");
        std::fs::create_dir_all(&queue).expect("mkdir");
        for (name, value) in files {
            std::fs::write(queue.join(name), value).expect("write fixture");
        }
        let root = SysfsRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn parses_a_raid_like_queue() {
        let (_dir, root) = fixture(&[
            ("rotational", "1\n"),
            ("optimal_io_size", "524288\n"),
            ("minimum_io_size", "65536\n"),
            ("discard_max_bytes", "0\n"),
            ("write_cache", "write through\n"),
            ("logical_block_size", "512\n"),
            ("physical_block_size", "4096\n"),
        ]);
        let info = root.queue_info(8, 0);
        assert_eq!(info.rotational, Some(true));
        assert_eq!(info.optimal_io_size, Some(524_288));
        assert_eq!(info.minimum_io_size, Some(65_536));
        assert_eq!(info.discard_max_bytes, Some(0));
        assert_eq!(info.write_cache, Some(DeviceWriteCache::WriteThrough));
        assert_eq!(info.logical_block_size, Some(512));
        assert_eq!(info.physical_block_size, Some(4096));
        assert_eq!(info.max_sectors_kb, None);
    }

    #[test]
    fn garbage_and_missing_values_are_none() {
        let (_dir, root) = fixture(&[("rotational", "maybe"), ("write_cache", "unknown")]);
        let info = root.queue_info(8, 0);
        assert_eq!(info.rotational, None);
        assert_eq!(info.write_cache, None);
        assert_eq!(root.queue_info(9, 9), QueueInfo::default());
    }

    #[test]
    fn partition_uses_its_disks_queue() {
        let (dir, root) = fixture(&[("rotational", "0")]);
        // Model sysfs: dev/block/8:1 is inside the disk directory dev/block/8:0.
        let part = dir.path().join("dev/block/8:0/sda1");
        std::fs::create_dir_all(&part).expect("mkdir");
        std::fs::write(part.join("partition"), "1").expect("write");
        std::os::unix::fs::symlink(&part, dir.path().join("dev/block/8:1")).expect("symlink");
        assert_eq!(root.queue_info(8, 1).rotational, Some(false));
    }
}
