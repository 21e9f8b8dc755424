//! Block devices: geometry from ioctls, queue attributes from sysfs, I/O through both
//! backends. Uses a loop device over a file (needs root and losetup; skipped otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::engines;
use rtgt_scsi::BlockBackend;
use rtgt_uring::sysfs::SysfsRoot;
use rtgt_uring::{BackingKind, Store, StoreConfig};

/// A loop device detached on drop.
struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn attach(file: &Path, sector: u32) -> Option<Loop> {
    let out = Command::new("losetup")
        .args(["--find", "--show", "--sector-size", &sector.to_string()])
        .arg(file)
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "skipping loop-device case: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(Loop(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim(),
    )))
}

#[test]
fn loop_device_geometry_and_io() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("loop.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image");
    let Some(dev) = attach(&img, 4096) else {
        return;
    };
    for engine in engines() {
        for direct in [false, true] {
            let mut cfg = StoreConfig {
                engine,
                ..StoreConfig::default()
            };
            cfg.backing.direct = direct;
            cfg.streams.mode = rtgt_uring::StreamsMode::Off;
            let store = Store::open(&dev.0, &cfg).expect("open loop device");
            assert_eq!(store.backing().kind(), BackingKind::BlockDevice);
            let caps = store.capabilities();
            println!("{} {engine:?} direct={direct}: {caps:?}", dev.0.display());
            assert_eq!(caps.block_size, 4096, "BLKSSZGET");
            assert_eq!(caps.num_blocks, 4096, "BLKGETSIZE64");
            assert_eq!(caps.physical_block_exponent, 0, "BLKPBSZGET");
            // Whatever sysfs says about this queue must be what is reported.
            let meta = std::fs::metadata(&dev.0).expect("stat");
            let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
            let queue = SysfsRoot::default().queue_info(libc::major(rdev), libc::minor(rdev));
            let want_rate = match queue.rotational {
                Some(false) => 1,
                Some(true) => rtgt_uring::caps::NOMINAL_ROTATION_RATE,
                None => 0,
            };
            assert_eq!(caps.rotation_rate, want_rate);
            assert_eq!(
                caps.supports_unmap,
                queue.discard_max_bytes.unwrap_or(0) > 0
            );
            if direct {
                assert_eq!(store.backing().alignment().offset(), 4096);
            }
            let data = vec![0x7Eu8; 8192];
            store.write_at(8192, &data, true).expect("write");
            store.flush().expect("flush");
            let mut back = vec![0u8; 8192];
            store.read_at(8192, &mut back).expect("read");
            assert_eq!(back, data, "{engine:?} direct={direct}");
            store.write_zeroes(8192, 4096).expect("zero");
            store.read_at(8192, &mut back).expect("read");
            assert!(
                back[..4096].iter().all(|&b| b == 0) && back[4096..].iter().all(|&b| b == 0x7E)
            );
            if caps.supports_unmap {
                store.unmap(8192, 8192).expect("unmap");
            }
            let ext = store.allocation(0, 65536).expect("allocation");
            assert_eq!(
                ext.status,
                rtgt_scsi::Provisioning::Mapped,
                "block devices report mapped"
            );
        }
    }
    // A block size that is not a multiple of the device's is refused, naming the key.
    let mut cfg = StoreConfig::default();
    cfg.backing.block_size = Some(512);
    let err = Store::open(&dev.0, &cfg).expect_err("512 on a 4096 device");
    assert!(err.to_string().starts_with("block_size 512"), "{err}");
}
