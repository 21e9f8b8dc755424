//! rtgtd as a process: start-up failures exit non-zero naming the cause, SIGTERM stops it
//! cleanly and promptly (exit 0), `--check-config` validates files, the subcommands run.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RTGTD: &str = env!("CARGO_BIN_EXE_rtgtd");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(args: &[&str]) -> Child {
    Command::new(RTGTD)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_listening(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "rtgtd exited early");
        assert!(Instant::now() < deadline, "rtgtd never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_taken_port_is_a_startup_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut child = start(&["--listen", &addr, "--lun", "null:1MiB", "--reactors", "1"]);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("rtgtd must exit");
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn sigterm_with_nothing_to_drain_exits_zero_promptly() {
    for engine in ["epoll", "auto"] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = start(&[
            "--listen",
            &listen,
            "--lun",
            "null:1MiB",
            "--reactors",
            "1",
            "--io-engine",
            engine,
        ]);
        wait_listening(port, &mut child);
        sigterm(&child);
        let status = wait_exit(&mut child, Duration::from_secs(25)).expect("rtgtd must stop");
        assert!(status.success(), "{engine}: {status}");
    }
}

#[test]
fn sigterm_with_a_connection_mid_login_exits_zero() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = start(&[
        "--listen",
        &listen,
        "--lun",
        "memory:1MiB",
        "--reactors",
        "2",
    ]);
    wait_listening(port, &mut child);
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(25)).expect("rtgtd must stop");
    assert!(status.success(), "{status}");
    drop(idle);
}

#[test]
fn poll_window_is_bounded_and_a_polling_target_serves() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgtd"))
        .args(["--poll-us", "20000", "--check-config", "/dev/null"])
        .output()
        .expect("run rtgtd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--poll-us") && err.contains("0..=10000"),
        "{err}"
    );
    // Polling on (it is off by default) serves and stops normally.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = start(&["--listen", &listen, "--lun", "null:1MiB", "--poll-us", "50"]);
    wait_listening(port, &mut child);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(25)).expect("rtgtd must stop");
    assert!(status.success(), "{status}");
}

#[test]
fn check_config_accepts_good_files_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[portal]]\nlisten = [\"127.0.0.1:3260\"]\n[[target]]\nname = \"iqn.2026-11.io.rtgt:x\"\n[[target.lun]]\nnumber = 0\nbackend = \"memory:1MiB\"\n",
    )
    .unwrap();
    let out = Command::new(RTGTD)
        .arg("--check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[portal]]\nlisten = [\"127.0.0.1:3260\"]\n[[target]]\nname = \"not an iqn\"\n",
    )
    .unwrap();
    let out = Command::new(RTGTD)
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("target[0].name"),
        "{err}"
    );
}

#[test]
fn topology_subcommand_prints_json() {
    let out = Command::new(RTGTD)
        .args(["topology", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_start().starts_with('{'), "{text}");
}
