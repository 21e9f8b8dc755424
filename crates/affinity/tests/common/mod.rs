//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rtgt_affinity::SysRoot;

/// The 2-socket fixture tree.
pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/two-socket")
}

pub fn fixture() -> SysRoot {
    SysRoot::new(fixture_path())
}

/// Copies a tree, keeping symlinks as symlinks (they are relative in the fixture).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A writable copy of the fixture.
pub fn fixture_copy() -> (tempfile::TempDir, SysRoot) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_path(), dir.path());
    let root = SysRoot::new(dir.path());
    (dir, root)
}
