//! The root of the file system the readers look at.
//!
//! Every reader in this crate goes through [`SysRoot`], so the same code reads the live
//! machine (root `/`) or a fixture tree laid out like one (`tests/data/two-socket/sys/...`,
//! `.../proc/...`). Paths inside the tree are the kernel's ABI paths, documented in the kernel's
//! `Documentation/ABI/testing/sysfs-*` and `Documentation/filesystems/proc.rst`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{AffinityError, Result};

/// A root directory holding `sys/` and `proc/` as the kernel lays them out.
///
/// ```
/// use rtgt_affinity::SysRoot;
///
/// let live = SysRoot::live();
/// assert!(live.is_live());
/// let fixture = SysRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket"));
/// assert!(!fixture.is_live());
/// ```
#[derive(Clone, Debug)]
pub struct SysRoot {
    root: PathBuf,
    canonical: PathBuf,
}

impl SysRoot {
    /// A root at `root` (need not exist; reads then fail with the path named).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let canonical = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        Self { root, canonical }
    }

    /// The running machine: root `/`.
    pub fn live() -> Self {
        Self::new("/")
    }

    /// The root as given.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether this is the running machine's own root (`/`), where system calls and hwloc
    /// describe the same machine as the files.
    pub fn is_live(&self) -> bool {
        self.canonical == Path::new("/")
    }

    /// The path of kernel ABI path `abs` (e.g. `/proc/interrupts`) under this root.
    pub fn join(&self, abs: &str) -> PathBuf {
        self.canonical.join(abs.trim_start_matches('/'))
    }

    /// Reads a whole file under the root, trimmed; `None` when it does not exist.
    pub(crate) fn read_opt(&self, abs: &str) -> Result<Option<String>> {
        self.read_path_opt(&self.join(abs))
    }

    /// Reads a file given by its full path (inside the root), trimmed; `None` when it does
    /// not exist (or, as sysfs
    /// does for attributes a driver does not implement, cannot be read at all).
    pub(crate) fn read_path_opt(&self, path: &Path) -> Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::InvalidInput | ErrorKind::Unsupported
                ) || e.raw_os_error() == Some(libc::ENOTSUP)
                    || e.raw_os_error() == Some(libc::ENODEV)
                    || e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::EIO) =>
            {
                Ok(None)
            }
            Err(e) => Err(AffinityError::io(self.display_path(path), e)),
        }
    }

    /// Resolves symlinks of a path under the root; `None` when it does not exist or leaves
    /// the root (a fixture's symlink must stay inside its tree).
    pub(crate) fn resolve(&self, path: &Path) -> Option<PathBuf> {
        let real = std::fs::canonicalize(path).ok()?;
        real.starts_with(&self.canonical).then_some(real)
    }

    /// Directory entries (names) of a directory under the root, sorted; empty when absent
    /// or outside the root.
    pub(crate) fn list_dir(&self, path: &Path) -> Vec<String> {
        if !path.starts_with(&self.canonical) {
            return Vec::new();
        }
        let Ok(rd) = std::fs::read_dir(path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The path as the kernel names it: the root prefix removed ("/sys/...").
    pub fn display_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.canonical) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => path.to_path_buf(),
        }
    }
}

impl Default for SysRoot {
    fn default() -> Self {
        Self::live()
    }
}

/// Numeric-aware ordering for names like `cpu2`/`cpu10` and `node1`: returns the number
/// after `prefix`, or `None` when the name is not `prefix` followed by digits.
pub(crate) fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_displays_kernel_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/vm")).unwrap();
        std::fs::write(dir.path().join("proc/sys/vm/swappiness"), "60\n").unwrap();
        let root = SysRoot::new(dir.path());
        assert_eq!(
            root.read_opt("/proc/sys/vm/swappiness").unwrap().as_deref(),
            Some("60")
        );
        assert_eq!(root.read_opt("/proc/sys/vm/nope").unwrap(), None);
        // Reading a directory is an error that names the kernel path, not the fixture's.
        let err = root.read_opt("/proc/sys/vm").unwrap_err();
        assert!(err.to_string().starts_with("/proc/sys/vm: "), "{err}");
        assert!(!root.is_live());
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered("cpu12", "cpu"), Some(12));
        assert_eq!(numbered("cpufreq", "cpu"), None);
        assert_eq!(numbered("cpu", "cpu"), None);
        assert_eq!(numbered("node1", "node"), Some(1));
    }
}
