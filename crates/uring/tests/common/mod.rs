//! Helpers shared by the integration tests: backends to run against, a directory that takes
//! O_DIRECT, stamped blocks.

#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rtgt_uring::{BackendKind, EngineSelect, Store, StoreConfig};

/// Both backends: io_uring (when the kernel allows it) and the thread-pool fallback.
pub fn engines() -> Vec<EngineSelect> {
    let mut out = vec![EngineSelect::ThreadPool];
    if matches!(
        rtgt_uring::detect::detect(Path::new("/proc")),
        rtgt_uring::detect::Availability::Available
    ) {
        out.insert(0, EngineSelect::Uring);
    } else {
        println!("io_uring unavailable here: only the fallback is tested");
    }
    out
}

/// The backend a store on `engine` must have picked (the environment override wins).
pub fn expect_kind(store: &Store, engine: EngineSelect) {
    if std::env::var_os(rtgt_uring::detect::BACKEND_ENV).is_some() {
        return;
    }
    let want = match engine {
        EngineSelect::ThreadPool => BackendKind::ThreadPool,
        _ => BackendKind::Uring,
    };
    assert_eq!(store.backend_kind(), want, "{}", store.backend_reason());
}

fn supports_direct(dir: &Path) -> bool {
    let probe = dir.join(format!(".rtgt-direct-probe-{}", std::process::id()));
    let ok = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .and_then(|f| {
            let buf = rtgt_uring::AlignedBuf::new(4096, 4096);
            std::os::unix::fs::FileExt::write_all_at(&f, buf.as_slice(), 0)
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A temporary directory on a file system that supports O_DIRECT (/tmp may be tmpfs).
pub fn direct_tempdir() -> Option<tempfile::TempDir> {
    let mut candidates: Vec<PathBuf> = vec![std::env::temp_dir(), PathBuf::from("/var/tmp")];
    candidates.push(PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    for dir in candidates {
        if dir.is_dir() && supports_direct(&dir) {
            if let Ok(t) = tempfile::tempdir_in(&dir) {
                return Some(t);
            }
        }
    }
    println!("skipping O_DIRECT cases: no file system here accepts O_DIRECT");
    None
}

/// The modes to test: buffered always, O_DIRECT where a directory supports it.
pub fn modes() -> Vec<(bool, tempfile::TempDir)> {
    let mut out = vec![(false, tempfile::tempdir().expect("tempdir"))];
    if let Some(dir) = direct_tempdir() {
        out.push((true, dir));
    }
    out
}

/// A store of `size` bytes on a new file in `dir`.
pub fn open_store(dir: &Path, name: &str, size: u64, engine: EngineSelect, direct: bool) -> Store {
    open_store_with(dir, name, size, engine, direct, |_| {})
}

/// As [`open_store`], with `adjust` applied to the configuration last.
pub fn open_store_with(
    dir: &Path,
    name: &str,
    size: u64,
    engine: EngineSelect,
    direct: bool,
    adjust: impl FnOnce(&mut StoreConfig),
) -> Store {
    let mut cfg = StoreConfig {
        engine,
        ..StoreConfig::default()
    };
    cfg.queue_depth = 64;
    cfg.backing.create = true;
    cfg.backing.size = Some(size);
    cfg.backing.direct = direct;
    // These tests check the plain data path; the streams tests turn streams on themselves.
    cfg.streams.mode = rtgt_uring::StreamsMode::Off;
    adjust(&mut cfg);
    let store = Store::open(dir.join(name), &cfg).expect("open store");
    expect_kind(&store, engine);
    store
}

/// Fill `buf` (one block) with a pattern naming its LBA and generation.
pub fn stamp(buf: &mut [u8], lba: u64, generation: u64) {
    for (i, chunk) in buf.chunks_mut(16).enumerate() {
        let mut word = [0u8; 16];
        word[..8].copy_from_slice(&lba.to_le_bytes());
        word[8..].copy_from_slice(&(generation ^ (i as u64).rotate_left(32)).to_le_bytes());
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Check a block's stamp; returns the generation it carries, or `None` if it is not a stamp
/// of `lba` (or all zeros, generation 0 meaning "never written").
pub fn read_stamp(buf: &[u8], lba: u64) -> Option<u64> {
    if buf.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let generation = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let mut expect = vec![0u8; buf.len()];
    stamp(&mut expect, lba, generation);
    (expect == buf).then_some(generation)
}
