//! Choosing between io_uring and the thread-pool fallback.
//!
//! io_uring can be unavailable: `kernel.io_uring_disabled` = 2 (disabled for everyone) or = 1
//! (only CAP_SYS_ADMIN or members of `kernel.io_uring_group`), a seccomp filter returning
//! EPERM/ENOSYS, a kernel without io_uring or without an opcode the store needs. The decision
//! is logged once per store with its reason. `RTGT_URING_BACKEND=threadpool|uring|auto`
//! overrides the configuration (so a test suite can be run once per backend).

use std::path::Path;

use io_uring::opcode;

/// Environment variable that forces a backend: `threadpool`, `uring` or `auto`.
pub const BACKEND_ENV: &str = "RTGT_URING_BACKEND";

/// Which backend a store should use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EngineSelect {
    /// io_uring where available, else the thread pool.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// The thread-pool fallback.
    ThreadPool,
}

impl EngineSelect {
    /// The selection after applying [`BACKEND_ENV`] (which wins over configuration).
    pub fn with_env_override(self) -> Self {
        match std::env::var(BACKEND_ENV).ok().as_deref().map(str::trim) {
            Some("threadpool" | "thread-pool" | "fallback") => Self::ThreadPool,
            Some("uring" | "io_uring" | "io-uring") => Self::Uring,
            Some("auto") => Self::Auto,
            _ => self,
        }
    }
}

/// The outcome of detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// io_uring works.
    Available,
    /// io_uring cannot be used, and why.
    Unavailable(String),
}

/// The process's standing with respect to `io_uring_disabled` = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privilege {
    /// Effective uid 0 (stands for CAP_SYS_ADMIN).
    pub root: bool,
    /// Whether the process is in the given group.
    pub in_group: bool,
}

/// Decide from the sysctl values alone (before trying setup). `disabled` is the content of
/// `io_uring_disabled`, `group` of `io_uring_group`.
///
/// ```
/// use rtgt_uring::detect::{policy, Availability, Privilege};
/// let user = Privilege { root: false, in_group: false };
/// assert!(matches!(policy(Some(2), None, user), Availability::Unavailable(_)));
/// assert_eq!(policy(Some(0), None, user), Availability::Available);
/// ```
pub fn policy(disabled: Option<u32>, group: Option<i64>, who: Privilege) -> Availability {
    match disabled {
        Some(2) => Availability::Unavailable("kernel.io_uring_disabled = 2".into()),
        Some(1) if !who.root && !who.in_group => Availability::Unavailable(format!(
            "kernel.io_uring_disabled = 1 and the process is neither privileged nor in io_uring_group ({})",
            group.map_or_else(|| "unset".to_owned(), |g| g.to_string())
        )),
        _ => Availability::Available,
    }
}

fn read_sysctl(proc_root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(proc_root.join("sys/kernel").join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn in_group(gid: i64) -> bool {
    let Ok(gid) = libc::gid_t::try_from(gid) else {
        return false;
    };
    // SAFETY: getegid has no preconditions.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most `len` gids into the array, which has that many.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    usize::try_from(n).is_ok_and(|n| groups.iter().take(n).any(|&g| g == gid))
}

/// Opcodes the store needs.
const REQUIRED: [(u8, &str); 8] = [
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Readv::CODE, "READV"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::Fallocate::CODE, "FALLOCATE"),
];

/// Full detection: sysctls under `proc_root` (normally `/proc`), then a probe ring and its
/// opcode table.
pub fn detect(proc_root: &Path) -> Availability {
    let disabled = read_sysctl(proc_root, "io_uring_disabled").and_then(|s| s.parse().ok());
    let group: Option<i64> = read_sysctl(proc_root, "io_uring_group").and_then(|s| s.parse().ok());
    let who = Privilege {
        // SAFETY: geteuid has no preconditions.
        root: unsafe { libc::geteuid() } == 0,
        in_group: group.is_some_and(in_group),
    };
    if let Availability::Unavailable(why) = policy(disabled, group, who) {
        return Availability::Unavailable(why);
    }
    let ring = match io_uring::IoUring::new(4) {
        Ok(ring) => ring,
        Err(err) => {
            let why = match err.raw_os_error() {
                Some(libc::ENOSYS) => {
                    "io_uring_setup: ENOSYS (no io_uring in this kernel, or seccomp)".to_owned()
                }
                Some(libc::EPERM) => {
                    "io_uring_setup: EPERM (disabled by sysctl, seccomp or policy)".to_owned()
                }
                _ => format!("io_uring_setup failed: {err}"),
            };
            return Availability::Unavailable(why);
        }
    };
    let mut probe = io_uring::Probe::new();
    if let Err(err) = ring.submitter().register_probe(&mut probe) {
        return Availability::Unavailable(format!(
            "io_uring probe failed (kernel too old?): {err}"
        ));
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Availability::Available
    } else {
        Availability::Unavailable(format!(
            "kernel lacks io_uring opcodes {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_policy() {
        let user = Privilege {
            root: false,
            in_group: false,
        };
        let member = Privilege {
            root: false,
            in_group: true,
        };
        let root = Privilege {
            root: true,
            in_group: false,
        };
        assert_eq!(policy(None, None, user), Availability::Available);
        assert_eq!(policy(Some(1), Some(100), member), Availability::Available);
        assert_eq!(policy(Some(1), None, root), Availability::Available);
        match policy(Some(1), Some(100), user) {
            Availability::Unavailable(why) => {
                assert!(why.contains("io_uring_group (100)"), "{why}");
            }
            Availability::Available => panic!("must be unavailable"),
        }
        assert!(matches!(
            policy(Some(2), None, root),
            Availability::Unavailable(_)
        ));
    }

    #[test]
    fn disabled_sysctl_in_a_fixture_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/kernel")).expect("mkdir");
        std::fs::write(dir.path().join("sys/kernel/io_uring_disabled"), "2\n").expect("write");
        match detect(dir.path()) {
            Availability::Unavailable(why) => assert_eq!(why, "kernel.io_uring_disabled = 2"),
            Availability::Available => panic!("io_uring_disabled = 2 must be honoured"),
        }
    }
}
