//! Targets the integration tests start themselves: Debian's `tgtd` (configured with `tgtadm`)
//! and, once it serves, `rtgtd` as a child process. Each instance listens on its own free
//! loopback port (never 3260), uses its own control port and backing file, and is killed
//! when dropped.

#![allow(dead_code)] // each test file uses a different part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtgt_client::{ConnectOptions, IscsiUrl};

pub const TGT_IQN: &str = "iqn.2026-01.io.rtgt.test:client";

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

fn installed(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// CHAP accounts for a tgtd instance.
#[derive(Default, Clone, Copy)]
pub struct Accounts {
    pub incoming: Option<(&'static str, &'static str)>,
    pub outgoing: Option<(&'static str, &'static str)>,
}

/// A running tgtd with one target and LUN 1 on a 64 MiB file under /dev/shm.
pub struct Tgtd {
    child: Child,
    pub port: u16,
    control: u16,
    file: PathBuf,
}

impl Tgtd {
    /// Starts tgtd, or prints why not and returns `None` when it is not installed.
    pub fn start(accounts: Accounts) -> Option<Self> {
        if !installed("tgtd") || !installed("tgtadm") {
            unavailable("tgtd/tgtadm not installed (Debian package `tgt`)");
            return None;
        }
        let port = free_port();
        // tgtd's control port is at most 32767; ephemeral ports (32768–60999) map one-to-one.
        let control = port % 30_000 + 1_000;
        let file = PathBuf::from(format!(
            "/dev/shm/rtgt-client-test-{}-{port}.img",
            std::process::id()
        ));
        let f = std::fs::File::create(&file).expect("create backing file");
        f.set_len(64 << 20).expect("size backing file");
        drop(f);
        let child = Command::new("tgtd")
            .args([
                "-f",
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
                "-C",
                &control.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tgtd");
        let t = Self {
            child,
            port,
            control,
            file,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.adm(&["--op", "show", "--mode", "target"]) {
            assert!(Instant::now() < deadline, "tgtd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(t.adm(&[
            "--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN
        ]));
        let path = t.file.display().to_string();
        assert!(t.adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            &path
        ]));
        assert!(t.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"
        ]));
        if let Some((u, p)) = accounts.incoming {
            assert!(t.adm(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                u,
                "--password",
                p
            ]));
            assert!(t.adm(&[
                "--op", "bind", "--mode", "account", "--tid", "1", "--user", u
            ]));
        }
        if let Some((u, p)) = accounts.outgoing {
            assert!(t.adm(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                u,
                "--password",
                p
            ]));
            assert!(t.adm(&[
                "--op",
                "bind",
                "--mode",
                "account",
                "--tid",
                "1",
                "--user",
                u,
                "--outgoing"
            ]));
        }
        assert!(wait_port(port), "tgtd does not listen on {port}");
        Some(t)
    }

    fn adm(&self, args: &[&str]) -> bool {
        Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// URL of LUN 1, optionally with credentials.
    pub fn url(&self, creds: Option<(&str, &str)>) -> IscsiUrl {
        let auth = creds.map(|(u, p)| format!("{u}%{p}@")).unwrap_or_default();
        format!("iscsi://{auth}127.0.0.1:{}/{TGT_IQN}/1", self.port)
            .parse()
            .expect("valid URL")
    }

    /// The backing file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Options used against tgtd: short timeouts; MD5 first (tgtd 1.0.85 answers CHAP_A=7 but
/// computes SHA-1, so it cannot complete a SHA-256 exchange).
pub fn options() -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    }
}

/// Says why a test cannot run here. Under CI (`CI=true`, where `scripts/install-deps` has
/// installed every peer and the workspace build has produced rtgtd) a missing peer fails the
/// test instead, so CI can never pass by skipping.
pub fn unavailable(why: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|v| v != "true"),
        "{why}: required when CI=true"
    );
    eprintln!("skipping: {why}");
}

/// Locates the rtgtd binary built in this workspace's target directories.
pub fn rtgtd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RTGTD_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let candidate = profile_dir.join("rtgtd");
    candidate.exists().then_some(candidate)
}

/// A running rtgtd child serving the default target.
pub struct Rtgtd {
    child: Child,
    pub port: u16,
    file: Option<PathBuf>,
    bin: PathBuf,
    args: Vec<String>,
}

pub const RTGTD_IQN: &str = "iqn.2026-11.io.rtgt:default";

impl Rtgtd {
    /// Starts rtgtd with its default target (LUN 0) or with a file LUN, or prints why not.
    pub fn start(file_backed: bool) -> Option<Self> {
        let Some(bin) = rtgtd_binary() else {
            unavailable("rtgtd is not built (cargo build -p rtgtd, or set RTGTD_BIN)");
            return None;
        };
        let port = free_port();
        let mut args = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
        let mut file = None;
        if file_backed {
            let f = PathBuf::from(format!(
                "/dev/shm/rtgt-client-rtgtd-{}-{port}.img",
                std::process::id()
            ));
            std::fs::File::create(&f)
                .and_then(|h| h.set_len(64 << 20))
                .expect("backing file");
            args.push("--lun".to_owned());
            args.push(format!("file:{}", f.display()));
            file = Some(f);
        }
        let child = Self::spawn(&bin, &args);
        let r = Self {
            child,
            port,
            file,
            bin,
            args,
        };
        assert!(wait_port(port), "rtgtd did not listen on {port}");
        Some(r)
    }

    fn spawn(bin: &Path, args: &[String]) -> Child {
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtgtd")
    }

    /// Kills the target with SIGKILL and starts it again with the same port and backing file.
    pub fn restart_after_sigkill(mut self) -> Self {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = self.file.take();
        let child = Self::spawn(&self.bin, &self.args);
        let next = Self {
            child,
            port: self.port,
            file,
            bin: self.bin.clone(),
            args: self.args.clone(),
        };
        assert!(
            wait_port(next.port),
            "rtgtd did not come back on {}",
            next.port
        );
        next
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// URL of LUN 0.
    pub fn url(&self) -> IscsiUrl {
        format!("iscsi://127.0.0.1:{}/{RTGTD_IQN}/0", self.port)
            .parse()
            .expect("valid URL")
    }
}

impl Drop for Rtgtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}
