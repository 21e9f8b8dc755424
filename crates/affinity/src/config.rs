//! The `[performance]` section of the target's configuration file.
//!
//! Deserialised with serde (the engine parses the TOML file, so unknown keys and type errors
//! come back from `toml` naming the key and line); [`PerformanceConfig::validate`] then checks
//! ranges and [`PerformanceConfig::validate_for`] checks the values against the machine, both
//! with errors naming the dotted key. Limits follow the kernel: io_uring registers at most
//! 16384 fixed buffers (`IORING_MAX_REG_BUFFERS`, `io_uring_register(2)`), and O_DIRECT I/O
//! wants page-aligned buffers, hence sizes in whole 4 KiB pages.

use serde::{Deserialize, Serialize};

use crate::cpuset::CpuSet;
use crate::error::ConfigError;
use crate::pool::PoolConfig;
use crate::topology::Topology;

/// Largest number of buffers one pool may hold: io_uring's limit on registered buffers.
pub const MAX_BUFFER_COUNT: u32 = 16384;
/// Largest buffer size accepted (16 MiB).
pub const MAX_BUFFER_SIZE: u32 = 16 << 20;
/// Buffer sizes are whole multiples of this.
pub const BUFFER_ALIGN: u32 = 4096;
/// Largest number of reactors accepted.
pub const MAX_REACTORS: u32 = 1024;
/// Longest polling window accepted, in microseconds (10 ms).
pub const MAX_POLL_US: u32 = 10_000;
/// Default polling window, in microseconds.
pub const DEFAULT_POLL_US: u32 = 0;

/// Whether buffer pools use huge pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HugePages {
    /// Reserved huge pages (`MAP_HUGETLB`) when available, else transparent huge pages, else
    /// normal pages.
    #[default]
    Auto,
    /// Reserved huge pages or fail at start-up.
    On,
    /// Normal pages only.
    Off,
}

/// Where NIC interrupts go relative to reactor threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IrqPolicy {
    /// Interrupts on their own cores, reactors on the other cores of the node.
    #[default]
    Separate,
    /// One interrupt vector on each reactor's core.
    Shared,
}

impl std::fmt::Display for IrqPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Separate => "separate",
            Self::Shared => "shared",
        })
    }
}

/// `[performance]`: reactor placement, buffer pools and interrupt policy.
///
/// ```
/// use rtgt_affinity::{IrqPolicy, PerformanceConfig};
///
/// #[derive(serde::Deserialize)]
/// struct File { performance: PerformanceConfig }
///
/// let file: File = toml::from_str(r#"
///     [performance]
///     reactors = 4
///     cpus = "8-15"
///     irq_policy = "shared"
///     buffer_size = 262144
/// "#).unwrap();
/// let perf = file.performance;
/// perf.validate()?;
/// assert_eq!(perf.cpus.unwrap().len(), 8);
/// assert_eq!(perf.irq_policy, IrqPolicy::Shared);
///
/// let bad = PerformanceConfig { buffer_size: 1000, ..PerformanceConfig::default() };
/// assert_eq!(bad.validate().unwrap_err().key, "performance.buffer_size");
/// # Ok::<(), rtgt_affinity::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// Number of reactor threads; absent lets the planner choose from the cores available.
    pub reactors: Option<u32>,
    /// CPUs reactors and interrupts may use ("0-3,8"); absent means the NIC's node.
    pub cpus: Option<CpuSet>,
    /// NUMA node to run on; absent means the node of the portal NIC(s).
    pub numa_node: Option<u32>,
    /// Size of each pooled I/O buffer in bytes (multiple of 4096, at most 16 MiB).
    pub buffer_size: u32,
    /// Number of buffers in each node's pool (1..=16384).
    pub buffer_count: u32,
    /// Huge-page use for buffer pools.
    pub huge_pages: HugePages,
    /// Whether NIC interrupts share cores with reactors.
    pub irq_policy: IrqPolicy,
    /// How long, in microseconds, a reactor that has just done work may keep polling for more
    /// before it sleeps in the kernel (0, the default: sleep at once). Polling yields the CPU
    /// to any other runnable thread, is paid for by the reactor's own work (at most a quarter
    /// of its working time goes to polling), and an idle reactor does not poll.
    pub poll_us: u32,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            reactors: None,
            cpus: None,
            numa_node: None,
            buffer_size: 256 * 1024,
            buffer_count: 512,
            huge_pages: HugePages::Auto,
            irq_policy: IrqPolicy::Separate,
            poll_us: DEFAULT_POLL_US,
        }
    }
}

impl PerformanceConfig {
    /// Checks each value's range, independent of the machine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(r) = self.reactors {
            if r == 0 {
                return Err(ConfigError::new(
                    "performance.reactors",
                    "must be at least 1 (leave it out to let rtgt choose)",
                ));
            }
            if r > MAX_REACTORS {
                return Err(ConfigError::new(
                    "performance.reactors",
                    format!("{r} is more than the {MAX_REACTORS} supported"),
                ));
            }
        }
        if self.cpus.as_ref().is_some_and(CpuSet::is_empty) {
            return Err(ConfigError::new(
                "performance.cpus",
                "the CPU list is empty (leave it out to use the NIC's node)",
            ));
        }
        if let Some(n) = self.numa_node {
            if n > 1023 {
                return Err(ConfigError::new(
                    "performance.numa_node",
                    format!("{n} is not a valid node number"),
                ));
            }
        }
        let size = self.buffer_size;
        if size == 0 || size % BUFFER_ALIGN != 0 || size > MAX_BUFFER_SIZE {
            return Err(ConfigError::new(
                "performance.buffer_size",
                format!(
                    "{size} must be a multiple of {BUFFER_ALIGN} bytes between {BUFFER_ALIGN} and {MAX_BUFFER_SIZE}"
                ),
            ));
        }
        if self.poll_us > MAX_POLL_US {
            return Err(ConfigError::new(
                "performance.poll_us",
                format!(
                    "{} is more than {MAX_POLL_US} microseconds (a reactor polls only briefly before it sleeps; 0 turns polling off)",
                    self.poll_us
                ),
            ));
        }
        if self.buffer_count == 0 || self.buffer_count > MAX_BUFFER_COUNT {
            return Err(ConfigError::new(
                "performance.buffer_count",
                format!(
                    "{} must be between 1 and {MAX_BUFFER_COUNT} (io_uring's limit on registered buffers)",
                    self.buffer_count
                ),
            ));
        }
        Ok(())
    }

    /// [`PerformanceConfig::validate`], then checks CPUs and node against the machine.
    pub fn validate_for(&self, topology: &Topology) -> Result<(), ConfigError> {
        self.validate()?;
        if let Some(cpus) = &self.cpus {
            let online = topology.online();
            let missing = cpus.difference(&online);
            if !missing.is_empty() {
                return Err(ConfigError::new(
                    "performance.cpus",
                    format!("CPUs {missing} are not online (online: {online})"),
                ));
            }
        }
        if let Some(n) = self.numa_node {
            match topology.node(n) {
                None => {
                    return Err(ConfigError::new(
                        "performance.numa_node",
                        format!("node {n} does not exist (nodes: {})", topology.node_list()),
                    ));
                }
                Some(node) if node.cpus.is_empty() && self.cpus.is_none() => {
                    return Err(ConfigError::new(
                        "performance.numa_node",
                        format!("node {n} has memory but no CPUs; set performance.cpus too"),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The buffer-pool settings for a pool on `node`.
    pub fn pool_config(&self, node: Option<u32>) -> PoolConfig {
        PoolConfig {
            node,
            buffer_size: self.buffer_size as usize,
            buffer_count: self.buffer_count,
            huge_pages: self.huge_pages,
            prefault: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        #[serde(default)]
        performance: PerformanceConfig,
    }

    fn parse(text: &str) -> Result<PerformanceConfig, String> {
        toml::from_str::<File>(text)
            .map(|f| f.performance)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_when_section_missing() {
        let perf = parse("").unwrap();
        assert_eq!(perf, PerformanceConfig::default());
        assert!(perf.validate().is_ok());
        assert_eq!(perf.buffer_size, 262144);
        assert_eq!(perf.irq_policy, IrqPolicy::Separate);
        assert_eq!(perf.huge_pages, HugePages::Auto);
    }

    #[test]
    fn full_section_parses() {
        let perf = parse(
            "[performance]\nreactors = 6\ncpus = \"0-3,8\"\nnuma_node = 1\nbuffer_size = 65536\n\
             buffer_count = 2048\nhuge_pages = \"off\"\nirq_policy = \"shared\"\npoll_us = 0\n",
        )
        .unwrap();
        assert_eq!(perf.reactors, Some(6));
        assert_eq!(perf.cpus.as_ref().unwrap().to_string(), "0-3,8");
        assert_eq!(perf.numa_node, Some(1));
        assert_eq!(perf.buffer_count, 2048);
        assert_eq!(perf.huge_pages, HugePages::Off);
        assert_eq!(perf.irq_policy, IrqPolicy::Shared);
        assert_eq!(perf.poll_us, 0);
        let pool = perf.pool_config(Some(1));
        assert_eq!(pool.buffer_size, 65536);
        assert_eq!(pool.node, Some(1));
    }

    #[test]
    fn toml_errors_name_the_key() {
        let err = parse("[performance]\ncpus = \"3-1\"\n").unwrap_err();
        assert!(
            err.contains("performance.cpus") || err.contains("cpus"),
            "{err}"
        );
        assert!(err.contains("runs backwards"), "{err}");
        let err = parse("[performance]\nirq_policy = \"both\"\n").unwrap_err();
        assert!(
            err.contains("irq_policy") && err.contains("separate"),
            "{err}"
        );
        let err = parse("[performance]\nreactor = 4\n").unwrap_err();
        assert!(err.contains("unknown field `reactor`"), "{err}");
        let err = parse("[performance]\nreactors = -1\n").unwrap_err();
        assert!(err.contains("reactors"), "{err}");
    }

    #[test]
    fn range_errors_name_the_key() {
        let cases: [(PerformanceConfig, &str); 8] = [
            (
                PerformanceConfig {
                    reactors: Some(0),
                    ..Default::default()
                },
                "performance.reactors",
            ),
            (
                PerformanceConfig {
                    reactors: Some(5000),
                    ..Default::default()
                },
                "performance.reactors",
            ),
            (
                PerformanceConfig {
                    cpus: Some(CpuSet::new()),
                    ..Default::default()
                },
                "performance.cpus",
            ),
            (
                PerformanceConfig {
                    numa_node: Some(4096),
                    ..Default::default()
                },
                "performance.numa_node",
            ),
            (
                PerformanceConfig {
                    buffer_size: 6000,
                    ..Default::default()
                },
                "performance.buffer_size",
            ),
            (
                PerformanceConfig {
                    buffer_size: 32 << 20,
                    ..Default::default()
                },
                "performance.buffer_size",
            ),
            (
                PerformanceConfig {
                    buffer_count: 20000,
                    ..Default::default()
                },
                "performance.buffer_count",
            ),
            (
                PerformanceConfig {
                    poll_us: 20_000,
                    ..Default::default()
                },
                "performance.poll_us",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().key, key, "{cfg:?}");
        }
        let err = PerformanceConfig {
            buffer_count: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "performance.buffer_count: 0 must be between 1 and 16384 (io_uring's limit on registered buffers)"
        );
    }
}
