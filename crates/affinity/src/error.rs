//! The crate's error type.
//!
//! Every failure names what it was looking at: the file under the root that could not be read
//! or parsed, the configuration key that is wrong, the system call that failed. Configuration
//! errors carry the dotted key (`performance.cpus`) so the engine can report them next to the
//! line of the TOML file, as the design's configuration rule asks.

use std::path::PathBuf;

use crate::cpuset::CpuListError;

/// Everything that can go wrong in `rtgt-affinity`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AffinityError {
    /// A file under the root could not be read (or written, for IRQ affinity).
    #[error("{path}: {source}")]
    Io {
        /// The file, as seen from the root (e.g. `/proc/interrupts`).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what the kernel writes there.
    #[error("{path}: cannot parse {what} from {value:?}")]
    Parse {
        /// The file, as seen from the root.
        path: PathBuf,
        /// What was expected (e.g. "a CPU list").
        what: &'static str,
        /// The offending text (shortened to 80 characters).
        value: String,
    },
    /// A CPU list given by the user is malformed.
    #[error("invalid CPU list: {0}")]
    CpuList(#[from] CpuListError),
    /// The named network interface or block device does not exist under the root.
    #[error("no {kind} named {name:?} (looked in {looked_in})")]
    UnknownDevice {
        /// "network interface" or "block device".
        kind: &'static str,
        /// The name the user gave.
        name: String,
        /// The directory that was searched.
        looked_in: String,
    },
    /// The device exists but no interrupt line could be attributed to it.
    #[error(
        "no interrupts found for {device}: no msi_irqs directory, no legacy irq and no matching name in /proc/interrupts"
    )]
    NoIrqs {
        /// The interface or device name.
        device: String,
    },
    /// A CPU that is not online (or not present) was named.
    #[error("CPU {cpu} is not online on this machine (online: {online})")]
    CpuNotOnline {
        /// The CPU number.
        cpu: u32,
        /// The machine's online CPU list.
        online: String,
    },
    /// A NUMA node that does not exist was named.
    #[error("NUMA node {node} does not exist (nodes: {nodes})")]
    UnknownNode {
        /// The node number.
        node: u32,
        /// The machine's nodes.
        nodes: String,
    },
    /// A CPU number does not fit the kernel's affinity mask (`CPU_SETSIZE`).
    #[error("CPU {cpu} is beyond the largest CPU number this build can pin ({max})")]
    CpuOutOfRange {
        /// The CPU number.
        cpu: u32,
        /// The largest supported CPU number.
        max: u32,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The system call (e.g. `sched_setaffinity`).
        call: &'static str,
        /// The errno, as an I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The placement planner cannot satisfy the configuration.
    #[error("placement: {0}")]
    Placement(String),
    /// Huge pages were required (`huge_pages = "on"`) but none could be mapped.
    #[error("huge pages required but unavailable: {0}")]
    HugePagesUnavailable(String),
    /// A `[performance]` setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// hwloc failed to build the topology.
    #[error("hwloc: {0}")]
    Hwloc(String),
    /// A command was invoked without what it needs (e.g. `irq plan` without a device).
    #[error("{0}")]
    Usage(String),
    /// A report could not be serialised or written.
    #[error("writing the report: {0}")]
    Output(String),
}

/// An invalid `[performance]` setting; `key` is the dotted TOML key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The dotted key, e.g. `performance.buffer_size`.
    pub key: &'static str,
    /// Why the value was rejected, in words an operator understands.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

impl AffinityError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, what: &'static str, value: &str) -> Self {
        let value: String = value.chars().take(80).collect();
        Self::Parse {
            path: path.into(),
            what,
            value,
        }
    }

    pub(crate) fn syscall(call: &'static str) -> Self {
        Self::Syscall {
            call,
            source: std::io::Error::last_os_error(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = AffinityError> = std::result::Result<T, E>;
