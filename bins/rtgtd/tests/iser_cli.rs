//! rtgtd with iSER portals (RFC 7145) on a machine without RDMA devices: `--portal iser:ADDR`
//! and a configuration with `transport = "iser"` fail at start-up with one line naming the
//! portal and "no RDMA devices found", and a non-zero exit; the configuration itself is valid
//! for a build with RDMA support.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RTGTD: &str = env!("CARGO_BIN_EXE_rtgtd");

/// Whether this host has RDMA devices (then the exact reason may differ).
fn host_has_rdma_devices() -> bool {
    std::fs::read_dir("/sys/class/infiniband").is_ok_and(|mut d| d.next().is_some())
}

/// Runs rtgtd with `args`; returns its exit code and stderr (bounded: a hang fails).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(RTGTD)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rtgtd {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

fn assert_no_device_failure(code: Option<i32>, stderr: &str, portal: &str) {
    assert_eq!(code, Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rtgtd:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    let prefix = format!("rtgtd: cannot listen on {portal}: iSER portal: ");
    assert!(lines[0].starts_with(&prefix), "{}", lines[0]);
    if !host_has_rdma_devices() {
        assert_eq!(lines[0], format!("{prefix}no RDMA devices found"));
    }
}

#[test]
fn portal_flag_with_iser_fails_at_start_without_rdma_devices() {
    let (code, err) = run(&["--portal", "iser:127.0.0.1:3261"]);
    assert_no_device_failure(code, &err, "127.0.0.1:3261");
}

#[test]
fn a_configured_iser_portal_fails_at_start_without_rdma_devices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iser.toml");
    std::fs::write(
        &path,
        r#"
[[portal]]
group = 1
listen = ["127.0.0.1:3262"]

[[portal]]
group = 2
listen = ["127.0.0.1:3263"]
transport = "iser"

[[target]]
name = "iqn.2026-11.io.rtgt:iser-cli"

[[target.lun]]
number = 0
backend = "memory:16MiB"
"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    // Valid for this build (it has RDMA support)...
    let out = Command::new(RTGTD)
        .args(["--check-config", p])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{p}: valid (1 target(s), 2 portal group(s))")
    );
    // ...but without a device the portal cannot be served, and nothing else starts either.
    let (code, err) = run(&["--config", p]);
    assert_no_device_failure(code, &err, "127.0.0.1:3263");
}

#[test]
fn a_bad_portal_flag_is_named() {
    let out = Command::new(RTGTD)
        .args([
            "--check-config",
            "/nonexistent",
            "--portal",
            "iser:localhost:3260",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(RTGTD)
        .args([
            "--portal",
            "iser:localhost:3260",
            "--portal",
            "tcp:127.0.0.1:3264",
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("rtgtd: --portal: \"localhost:3260\" is not an IP address")),
        "{err}"
    );
    // Two portals on one address.
    let out = Command::new(RTGTD)
        .args([
            "--portal",
            "iser:127.0.0.1:3265",
            "--portal",
            "127.0.0.1:3265",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l
            == "rtgtd: --portal: 127.0.0.1:3265 overlaps 127.0.0.1:3265, which is already a portal"),
        "{err}"
    );
}
