//! The `rtgtd topology`, `rtgtd irq plan|apply` and `rtgtd doctor` commands, so the binary's
//! subcommands are shims: parse arguments into the option structs, call the function with the
//! root (`/`) and stdout, map the result to an exit code.
//!
//! Each command builds a serialisable report, then writes it as JSON (`json: true`) or as
//! text. JSON layouts carry a `schema` string and are documented in `docs/tuning.md`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::cpuset::CpuSet;
use crate::doctor::{DoctorReport, Profile};
use crate::error::{AffinityError, Result};
use crate::irq::{
    ApplyOutcome, InterruptTable, IrqPlan, IrqTarget, apply_plan, irqbalance_pids, plan_irqs,
};
use crate::sysroot::SysRoot;
use crate::topology::{
    DeviceKind, DeviceLocality, Topology, TopologySource, list_block_devices, list_nics,
};

/// Identifies the topology report's JSON layout.
pub const TOPOLOGY_SCHEMA: &str = "rtgt-topology/1";
/// Identifies the IRQ report's JSON layout.
pub const IRQ_SCHEMA: &str = "rtgt-irq/1";

fn emit<T: Serialize>(out: &mut dyn Write, json: bool, report: &T, text: &str) -> Result<()> {
    let res = if json {
        serde_json::to_writer_pretty(&mut *out, report)
            .map_err(|e| AffinityError::Output(e.to_string()))
            .and_then(|()| writeln!(out).map_err(|e| AffinityError::Output(e.to_string())))
    } else {
        out.write_all(text.as_bytes())
            .map_err(|e| AffinityError::Output(e.to_string()))
    };
    res.and_then(|()| {
        out.flush()
            .map_err(|e| AffinityError::Output(e.to_string()))
    })
}

// ---------------------------------------------------------------------------------------
// topology

/// Options of `rtgtd topology`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyOptions {
    /// Print JSON instead of text.
    pub json: bool,
}

/// One node in the topology report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// Node number.
    pub id: u32,
    /// Its CPUs.
    pub cpus: CpuSet,
    /// Local memory in KiB, when known.
    pub memory_kib: Option<u64>,
    /// Its physical cores as sets of hardware threads.
    pub cores: Vec<CpuSet>,
}

/// `rtgtd topology` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopologyReport {
    /// [`TOPOLOGY_SCHEMA`].
    pub schema: &'static str,
    /// Where the CPU/node data came from.
    pub source: TopologySource,
    /// Why hwloc was not used, if it failed.
    pub fallback_reason: Option<String>,
    /// Nodes.
    pub nodes: Vec<NodeReport>,
    /// Physical NICs and where they sit.
    pub nics: Vec<DeviceLocality>,
    /// Physical block devices and where they sit.
    pub block_devices: Vec<DeviceLocality>,
}

impl TopologyReport {
    /// Builds the report for `root` (hwloc on the live machine, sysfs elsewhere).
    pub fn build(root: &SysRoot) -> Result<Self> {
        let topo = Topology::detect(root)?;
        Ok(Self::from_topology(root, &topo))
    }

    /// Builds the report from an existing topology.
    pub fn from_topology(root: &SysRoot, topo: &Topology) -> Self {
        let nodes = topo
            .nodes()
            .iter()
            .map(|n| NodeReport {
                id: n.id,
                cpus: n.cpus.clone(),
                memory_kib: n.memory_kib,
                cores: topo
                    .cores_in(&n.cpus)
                    .into_iter()
                    .map(|c| c.threads)
                    .collect(),
            })
            .collect();
        let locate = |kind, names: Vec<String>| -> Vec<DeviceLocality> {
            names
                .iter()
                .filter_map(|n| DeviceLocality::locate(root, topo, kind, n).ok())
                .collect()
        };
        Self {
            schema: TOPOLOGY_SCHEMA,
            source: topo.source(),
            fallback_reason: topo.fallback_reason().map(str::to_owned),
            nodes,
            nics: locate(DeviceKind::Nic, list_nics(root)),
            block_devices: locate(DeviceKind::Block, list_block_devices(root)),
        }
    }

    /// The text form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let source = match self.source {
            TopologySource::Hwloc => "hwloc",
            TopologySource::Sysfs => "sysfs",
        };
        let _ = writeln!(out, "topology (source: {source})");
        if let Some(why) = &self.fallback_reason {
            let _ = writeln!(out, "  hwloc unavailable: {why}");
        }
        for n in &self.nodes {
            let threads = n.cpus.len();
            let _ = write!(
                out,
                "NUMA node {}: {} cores, {} threads, CPUs {}",
                n.id,
                n.cores.len(),
                threads,
                if n.cpus.is_empty() {
                    "none".to_owned()
                } else {
                    n.cpus.to_string()
                }
            );
            if let Some(kib) = n.memory_kib {
                let _ = write!(out, ", {:.1} GiB", kib as f64 / (1024.0 * 1024.0));
            }
            out.push('\n');
            if !n.cores.is_empty() {
                let cores: Vec<String> = n.cores.iter().map(CpuSet::to_string).collect();
                let _ = writeln!(out, "  cores (threads): {}", cores.join("  "));
            }
        }
        for (title, devs) in [("NICs", &self.nics), ("block devices", &self.block_devices)] {
            let _ = writeln!(out, "{title}:");
            if devs.is_empty() {
                let _ = writeln!(out, "  (none)");
            }
            for d in devs {
                let node = d
                    .node
                    .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
                let _ = writeln!(
                    out,
                    "  {:<12} node {:<8} PCI {:<14} ({})",
                    d.name,
                    node,
                    d.pci.as_deref().unwrap_or("-"),
                    match d.evidence {
                        crate::topology::NodeEvidence::Hwloc => "hwloc",
                        crate::topology::NodeEvidence::SysfsNumaNode => "sysfs numa_node",
                        crate::topology::NodeEvidence::SingleNode => "single-node machine",
                        crate::topology::NodeEvidence::Unknown => "firmware does not say",
                    }
                );
            }
        }
        out
    }
}

/// `rtgtd topology [--json]`.
///
/// ```
/// use rtgt_affinity::{TopologyOptions, topology_command};
///
/// let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket");
/// let mut out = Vec::new();
/// let report = topology_command(root.as_ref(), &TopologyOptions::default(), &mut out)?;
/// assert_eq!(report.nodes.len(), 2);
/// assert!(String::from_utf8(out).unwrap().contains("NUMA node 1: 8 cores, 16 threads"));
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
pub fn topology_command(
    root: &Path,
    opts: &TopologyOptions,
    out: &mut dyn Write,
) -> Result<TopologyReport> {
    let report = TopologyReport::build(&SysRoot::new(root))?;
    emit(out, opts.json, &report, &report.render())?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// irq

/// `plan` (dry run) or `apply`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IrqAction {
    /// Show the plan, write nothing.
    #[default]
    Plan,
    /// Write `/proc/irq/N/smp_affinity_list`.
    Apply,
}

/// Options of `rtgtd irq plan|apply [--nic IF|--device DEV] [--cpus LIST]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IrqOptions {
    /// Plan or apply.
    pub action: IrqAction,
    /// Devices to spread (each planned on its own over the CPU list).
    pub targets: Vec<IrqTarget>,
    /// CPUs to spread over, in order; default: the device's node, one thread per core first.
    pub cpus: Option<CpuSet>,
    /// Print JSON instead of text.
    pub json: bool,
}

/// `rtgtd irq` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrqReport {
    /// [`IRQ_SCHEMA`].
    pub schema: &'static str,
    /// What was done.
    pub action: IrqAction,
    /// Running irqbalance processes.
    pub irqbalance_pids: Vec<u32>,
    /// One plan per device.
    pub plans: Vec<IrqPlan>,
    /// Per-vector results of `apply` (empty for `plan`).
    pub applied: Vec<ApplyOutcome>,
}

impl IrqReport {
    /// Vectors that could not be written.
    pub fn failures(&self) -> usize {
        self.applied.iter().filter(|a| a.error.is_some()).count()
    }

    /// The text form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for plan in &self.plans {
            let s = &plan.source;
            let _ = writeln!(
                out,
                "{} ({}, PCI {}, NUMA node {}): {} vector(s) found via {}; CPUs {}",
                s.target.name(),
                match s.target {
                    IrqTarget::Nic(_) => "NIC",
                    IrqTarget::Device(_) => "device",
                },
                s.pci.as_deref().unwrap_or("-"),
                s.node
                    .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                s.irqs.len(),
                match s.discovery {
                    crate::irq::IrqDiscovery::MsiIrqs => "msi_irqs",
                    crate::irq::IrqDiscovery::LegacyIrq => "the legacy irq line",
                    crate::irq::IrqDiscovery::InterruptNames => "names in /proc/interrupts",
                },
                plan.cpus
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let _ = writeln!(
                out,
                "  {:>5}  {:<24} {:>12} {:>12} {:>14}  PLANNED CPU",
                "IRQ", "NAME", "AFFINITY", "EFFECTIVE", "INTERRUPTS"
            );
            for a in &plan.assignments {
                let show = |c: &Option<CpuSet>| {
                    c.as_ref().map_or_else(|| "-".to_owned(), CpuSet::to_string)
                };
                let _ = writeln!(
                    out,
                    "  {:>5}  {:<24} {:>12} {:>12} {:>14}  {}",
                    a.irq,
                    if a.name.is_empty() { "-" } else { &a.name },
                    show(&a.current),
                    show(&a.effective),
                    a.interrupts,
                    a.cpu
                );
            }
            let _ = writeln!(
                out,
                "  {:>5}  {:>4}  {:>17}  {:>29}",
                "CPU", "NODE", "VECTORS now->plan", "INTERRUPTS now -> planned"
            );
            for r in &plan.per_cpu {
                let _ = writeln!(
                    out,
                    "  {:>5}  {:>4}  {:>7} -> {:<7}  {:>14} -> {:<14}",
                    r.cpu,
                    r.node.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    r.current_vectors,
                    r.planned_vectors,
                    r.current_interrupts,
                    r.planned_interrupts
                );
            }
            for w in &plan.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
        }
        match self.action {
            IrqAction::Plan => out.push_str(
                "dry run: nothing written (use `irq apply` to write /proc/irq/N/smp_affinity_list)\n",
            ),
            IrqAction::Apply => {
                for a in &self.applied {
                    match &a.error {
                        None => {
                            let _ = writeln!(out, "IRQ {} -> CPU {}: written", a.irq, a.cpu);
                        }
                        Some(e) => {
                            let _ = writeln!(out, "IRQ {} -> CPU {}: FAILED: {e}", a.irq, a.cpu);
                        }
                    }
                }
                let _ = writeln!(
                    out,
                    "applied {} of {} vector(s)",
                    self.applied.len() - self.failures(),
                    self.applied.len()
                );
            }
        }
        out
    }
}

/// `rtgtd irq plan|apply`. Apply attempts every vector and reports failures per vector in
/// [`IrqReport::applied`]; the binary should exit non-zero when [`IrqReport::failures`] > 0.
///
/// ```
/// use rtgt_affinity::{IrqOptions, IrqTarget, irq_command};
///
/// let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket");
/// let opts = IrqOptions {
///     targets: vec![IrqTarget::Nic("ens1f0".into())],
///     ..IrqOptions::default()
/// };
/// let mut out = Vec::new();
/// let report = irq_command(root.as_ref(), &opts, &mut out)?;
/// assert_eq!(report.plans[0].cpus[..3], [8, 9, 10]);
/// assert!(report.applied.is_empty()); // dry run
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
pub fn irq_command(root: &Path, opts: &IrqOptions, out: &mut dyn Write) -> Result<IrqReport> {
    if opts.targets.is_empty() {
        return Err(AffinityError::Usage(
            "irq needs a device: --nic IF or --device DEV".into(),
        ));
    }
    let root = SysRoot::new(root);
    let topo = Topology::detect(&root)?;
    let table = InterruptTable::read(&root)?;
    let irqbalance = irqbalance_pids(&root);
    let plans = opts
        .targets
        .iter()
        .map(|t| plan_irqs(&root, &topo, &table, t, opts.cpus.as_ref(), &irqbalance))
        .collect::<Result<Vec<_>>>()?;
    let applied = match opts.action {
        IrqAction::Plan => Vec::new(),
        IrqAction::Apply => plans.iter().flat_map(|p| apply_plan(&root, p)).collect(),
    };
    let report = IrqReport {
        schema: IRQ_SCHEMA,
        action: opts.action,
        irqbalance_pids: irqbalance,
        plans,
        applied,
    };
    emit(out, opts.json, &report, &report.render())?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// doctor

/// Options of `rtgtd doctor [--profile P] [--json]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DoctorOptions {
    /// Profile to judge against.
    pub profile: Profile,
    /// NICs to check (empty: all physical NICs).
    pub nics: Vec<String>,
    /// Block devices to check (empty: all physical block devices).
    pub devices: Vec<String>,
    /// Print JSON instead of text.
    pub json: bool,
}

/// `rtgtd doctor`. The binary may exit non-zero when [`DoctorReport::has_warnings`].
///
/// ```
/// use rtgt_affinity::{DoctorOptions, doctor_command};
///
/// let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket");
/// let opts = DoctorOptions { json: true, ..DoctorOptions::default() };
/// let mut out = Vec::new();
/// let report = doctor_command(root.as_ref(), &opts, &mut out)?;
/// assert!(report.has_warnings());
/// let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
/// assert_eq!(json["schema"], "rtgt-doctor/1");
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
pub fn doctor_command(
    root: &Path,
    opts: &DoctorOptions,
    out: &mut dyn Write,
) -> Result<DoctorReport> {
    let root = SysRoot::new(root);
    let topo = Topology::detect(&root)?;
    let report = DoctorReport::run(&root, &topo, opts.profile, &opts.nics, &opts.devices);
    emit(out, opts.json, &report, &report.render())?;
    Ok(report)
}
