//! The tuning doctor: reads the settings that decide iSCSI target throughput and latency and
//! says, per setting, what it is, what we suggest for a profile, and why.
//!
//! Sources: sysctls under `/proc/sys` (kernel `Documentation/admin-guide/sysctl/{net,vm}.rst`,
//! `Documentation/networking/ip-sysctl.rst`), block queue attributes
//! (`Documentation/ABI/stable/sysfs-block`), cpufreq governors
//! (`Documentation/admin-guide/pm/cpufreq.rst`), PCIe link attributes
//! (`Documentation/ABI/testing/sysfs-bus-pci`) and the process list for irqbalance. The
//! report's JSON schema and the reasoning behind every suggestion are in `docs/tuning.md`.

mod checks;
mod rules;

use std::fmt::Write as _;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sysroot::SysRoot;
use crate::topology::{Topology, list_block_devices, list_nics};

/// Identifies the doctor's JSON layout; bumped on incompatible changes.
pub const DOCTOR_SCHEMA: &str = "rtgt-doctor/1";

/// Which workload the suggestions are for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Flash/NVMe backing stores, latency and IOPS first.
    #[default]
    Ssd,
    /// Rotating disks serving many parallel sequential streams: deep queues, long write-back.
    HddStreaming,
}

impl Profile {
    /// The profile's name as used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssd => "ssd",
            Self::HddStreaming => "hdd-streaming",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?} (profiles: ssd, hdd-streaming)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ssd" => Ok(Self::Ssd),
            "hdd-streaming" => Ok(Self::HddStreaming),
            other => Err(UnknownProfile(other.to_owned())),
        }
    }
}

/// Verdict on one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Matches the suggestion.
    Ok,
    /// Differs from the suggestion.
    Warn,
    /// Could not be read or judged.
    Unknown,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Unknown => "unknown",
        }
    }
}

/// Area a check belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Network stack sysctls.
    Network,
    /// Virtual memory sysctls.
    Vm,
    /// CPU frequency.
    Cpu,
    /// Interrupt handling.
    Irq,
    /// NIC hardware.
    Nic,
    /// Block device queues.
    Block,
}

/// One setting's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `net.core.rmem_max`, `block.sda.queue.scheduler`.
    pub id: String,
    /// Area.
    pub category: Category,
    /// The device, for per-device checks.
    pub subject: Option<String>,
    /// The file read (kernel path), when one file holds the setting.
    pub path: Option<String>,
    /// The value found; `None` when absent or unreadable.
    pub current: Option<String>,
    /// What the profile suggests (`">= 16777216"`, `"none"`, ...).
    pub suggested: String,
    /// Verdict.
    pub status: Status,
    /// One line on why the suggestion matters.
    pub reason: String,
    /// A command that applies the suggestion, when status is `warn` and one exists.
    pub fix: Option<String>,
}

/// Counts per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Checks that passed.
    pub ok: usize,
    /// Checks that differ from the suggestion.
    pub warn: usize,
    /// Checks that could not be judged.
    pub unknown: usize,
}

/// The whole report (`rtgtd doctor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// [`DOCTOR_SCHEMA`].
    pub schema: &'static str,
    /// Profile the suggestions are for.
    pub profile: Profile,
    /// Root the settings were read from.
    pub root: String,
    /// Counts per status.
    pub summary: Summary,
    /// Every check, in a fixed order: network, vm, cpu, irq, nic, block.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// Runs every check. `nics`/`devices` empty means all physical ones under the root.
    ///
    /// ```
    /// use rtgt_affinity::{DoctorReport, Profile, Status, SysRoot, Topology};
    ///
    /// let root = SysRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket"));
    /// let topo = Topology::from_sysfs(&root)?;
    /// let report = DoctorReport::run(&root, &topo, Profile::Ssd, &[], &[]);
    /// let rmem = report.check("net.core.rmem_max").unwrap();
    /// assert_eq!(rmem.status, Status::Warn);
    /// assert_eq!(rmem.current.as_deref(), Some("212992"));
    /// # Ok::<(), rtgt_affinity::AffinityError>(())
    /// ```
    pub fn run(
        root: &SysRoot,
        topology: &Topology,
        profile: Profile,
        nics: &[String],
        devices: &[String],
    ) -> Self {
        let nics = if nics.is_empty() {
            list_nics(root)
        } else {
            nics.to_vec()
        };
        let devices = if devices.is_empty() {
            list_block_devices(root)
        } else {
            devices.to_vec()
        };
        let mut checks = Vec::new();
        for rule in rules::sysctls(profile) {
            checks.push(checks::sysctl(root, &rule));
        }
        checks.push(checks::governor(root, topology));
        checks.push(checks::irqbalance(root));
        for nic in &nics {
            checks.push(checks::pcie_link(root, topology, nic));
        }
        for dev in &devices {
            checks.extend(checks::block_queue(root, profile, dev));
        }
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Ok => summary.ok += 1,
                Status::Warn => summary.warn += 1,
                Status::Unknown => summary.unknown += 1,
            }
        }
        Self {
            schema: DOCTOR_SCHEMA,
            profile,
            root: root.path().display().to_string(),
            summary,
            checks,
        }
    }

    /// The check with identifier `id`.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Whether any check warns.
    pub fn has_warnings(&self) -> bool {
        self.summary.warn > 0
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rtgt tuning doctor: profile {}, root {}",
            self.profile, self.root
        );
        let _ = writeln!(
            out,
            "{:<8} {:<40} {:<28} SUGGESTED",
            "STATUS", "SETTING", "CURRENT"
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<8} {:<40} {:<28} {}",
                c.status.word(),
                c.id,
                c.current.as_deref().unwrap_or("-"),
                c.suggested
            );
            let _ = writeln!(out, "{:<8} {}", "", c.reason);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "{:<8} fix: {fix}", "");
            }
        }
        let _ = writeln!(
            out,
            "summary: {} ok, {} warn, {} unknown",
            self.summary.ok, self.summary.warn, self.summary.unknown
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_round_trip() {
        for p in [Profile::Ssd, Profile::HddStreaming] {
            assert_eq!(p.name().parse::<Profile>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        assert_eq!(
            "nvme".parse::<Profile>().unwrap_err().to_string(),
            "unknown profile \"nvme\" (profiles: ssd, hdd-streaming)"
        );
        assert_eq!(Profile::default(), Profile::Ssd);
    }
}
