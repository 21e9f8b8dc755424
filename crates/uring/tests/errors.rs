//! Error paths with real kernel errors: ENOSPC on a full tmpfs mounted in a private mount
//! namespace, EIO from a file whose reads fail, and the backend override.

mod common;

use std::process::Command;

use common::engines;
use rtgt_scsi::{BackendError, BlockBackend};
use rtgt_uring::{EngineSelect, Op, Store, StoreConfig};

const CHILD_DIR: &str = "RTGT_TEST_ENOSPC_DIR";

/// Fill a store on a 1 MiB tmpfs until the file system is full; both backends, both APIs.
fn fill_until_enospc(dir: &std::path::Path) {
    for engine in engines() {
        let mut cfg = StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        cfg.backing.create = true;
        cfg.backing.size = Some(8 << 20); // sparse: larger than the file system
        let name = format!("full-{engine:?}.img");
        let store = Store::open(dir.join(&name), &cfg).expect("open on tmpfs");
        let chunk = vec![0x11u8; 64 << 10];
        let mut result = Ok(());
        for i in 0..64u64 {
            result = store.write_at(i * chunk.len() as u64, &chunk, false);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(BackendError::NoSpace), "{engine:?} sync path");

        let mut q = store.queue().expect("queue");
        let mut buf = q.alloc_buf(64 << 10);
        buf.as_mut_slice().fill(0x22);
        q.push(
            Op::Write {
                offset: 7 << 20,
                buf,
                fua: false,
            },
            9,
        )
        .expect("room");
        let mut done = Vec::new();
        q.wait(1, &mut done).expect("wait");
        assert_eq!(
            done[0].result,
            Err(BackendError::NoSpace),
            "{engine:?} queue path"
        );
        drop(q);
        drop(store);
        std::fs::remove_file(dir.join(&name)).expect("remove");
    }
}

#[test]
fn enospc_on_a_full_tmpfs_is_no_space() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        // Inside the private mount namespace prepared by the parent below.
        fill_until_enospc(std::path::Path::new(&dir));
        return;
    }
    let mount_point = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let script = r#"mount -t tmpfs -o size=1m rtgt-enospc "$0" && exec "$@""#;
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(mount_point.path())
        .arg(&exe)
        .args([
            "enospc_on_a_full_tmpfs_is_no_space",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, mount_point.path())
        .output();
    match status {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("1 passed"),
                "child did not run the test: {text}"
            );
        }
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("panicked") => {
            panic!(
                "ENOSPC check failed inside the namespace:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        other => {
            // No mount namespace for us (not root, or no unshare): the errno mapping is still
            // checked with the error the kernel would give.
            println!("skipping the tmpfs ENOSPC case ({other:?}); checking the mapping only");
            assert_eq!(
                rtgt_uring::decode_result(-libc::ENOSPC, "write"),
                Err(BackendError::NoSpace)
            );
        }
    }
}

#[test]
fn eio_is_a_medium_error() {
    // Reading an unmapped address of our own memory through /proc/self/mem fails with EIO
    // in the kernel, on pread and io_uring alike: a real medium-error path.
    for engine in engines() {
        let mut cfg = StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        cfg.backing.read_only = true;
        cfg.backing.size = Some(1 << 20);
        cfg.backing.block_size = Some(4096);
        let store = match Store::open("/proc/self/mem", &cfg) {
            Ok(store) => store,
            Err(e) => {
                println!("skipping /proc/self/mem EIO case: {e}");
                assert!(matches!(
                    rtgt_uring::decode_result(-libc::EIO, "read"),
                    Err(BackendError::Medium(_))
                ));
                continue;
            }
        };
        let mut buf = vec![0u8; 4096];
        let err = store
            .read_at(0, &mut buf)
            .expect_err("address 0 is never mapped");
        assert!(
            matches!(err, BackendError::Medium(_)),
            "{engine:?}: {err:?}"
        );
        let mut q = store.queue().expect("queue");
        let qbuf = q.alloc_buf(4096);
        q.push(
            Op::Read {
                offset: 4096,
                buf: qbuf,
            },
            1,
        )
        .expect("room");
        let mut done = Vec::new();
        q.wait(1, &mut done).expect("wait");
        assert!(
            matches!(done[0].result, Err(BackendError::Medium(_))),
            "{engine:?}: {:?}",
            done[0].result
        );
        assert!(store.stats().errors >= 2);
    }
}

#[test]
fn environment_forces_the_fallback() {
    if std::env::var(rtgt_uring::detect::BACKEND_ENV).as_deref() == Ok("threadpool") {
        let dir = tempfile::tempdir().expect("tempdir");
        // The environment wins over configuration.
        let mut cfg = StoreConfig {
            engine: EngineSelect::Uring,
            ..StoreConfig::default()
        };
        cfg.backing.create = true;
        cfg.backing.size = Some(65536);
        let store = Store::open(dir.path().join("env.img"), &cfg).expect("open");
        assert_eq!(store.backend_kind(), rtgt_uring::BackendKind::ThreadPool);
        assert!(store.backend_reason().contains("RTGT_URING_BACKEND"));
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["environment_forces_the_fallback", "--exact", "--nocapture"])
        .env(rtgt_uring::detect::BACKEND_ENV, "threadpool")
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}
