//! Spreading a device's vectors over a CPU list, and applying the result.
//!
//! One vector per CPU, round-robin over the list in order, as Intel's and Mellanox's
//! `set_irq_affinity_cpulist.sh` scripts do: vector i goes to `cpus[i % cpus.len()]`. The
//! affinity is written as a CPU list to `/proc/irq/N/smp_affinity_list`
//! (`Documentation/core-api/irq/irq-affinity.rst`); the kernel may refuse for vectors whose
//! affinity it manages itself (`EIO`), which is reported per vector.

use std::collections::BTreeMap;

use serde::Serialize;

use super::discover::{IrqDiscovery, IrqSource, IrqTarget, find_irqs};
use super::interrupts::InterruptTable;
use crate::cpuset::CpuSet;
use crate::error::{AffinityError, Result};
use crate::sysroot::SysRoot;
use crate::topology::Topology;

/// One vector and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrqAssignment {
    /// IRQ number.
    pub irq: u32,
    /// Handler name(s) from `/proc/interrupts` (empty when not listed there).
    pub name: String,
    /// Current `smp_affinity_list`.
    pub current: Option<CpuSet>,
    /// Current `effective_affinity_list` (where the kernel actually delivers), if exposed.
    pub effective: Option<CpuSet>,
    /// Interrupts counted so far, all CPUs.
    pub interrupts: u64,
    /// The planned CPU.
    pub cpu: u32,
}

/// Per-CPU view of a device's vectors now and after the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuLoad {
    /// CPU number.
    pub cpu: u32,
    /// Its NUMA node.
    pub node: Option<u32>,
    /// Vectors whose (effective) affinity includes this CPU now.
    pub current_vectors: usize,
    /// Interrupts this CPU has handled for the device.
    pub current_interrupts: u64,
    /// Vectors planned on this CPU.
    pub planned_vectors: usize,
    /// The same interrupts, had the plan been in place (each vector's total on its CPU).
    pub planned_interrupts: u64,
}

/// A plan for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrqPlan {
    /// The device and its vectors.
    pub source: IrqSource,
    /// The CPU list spread over, in order.
    pub cpus: Vec<u32>,
    /// One entry per vector.
    pub assignments: Vec<IrqAssignment>,
    /// CPUs touched now or by the plan, ascending.
    pub per_cpu: Vec<CpuLoad>,
    /// Things the operator should know (irqbalance, off-node CPUs, doubled-up CPUs).
    pub warnings: Vec<String>,
}

/// Round-robin `irqs` over `cpus`: (irq, cpu) pairs in IRQ order. Empty when `cpus` is.
///
/// ```
/// assert_eq!(
///     rtgt_affinity::spread(&[100, 101, 102], &[8, 9]),
///     vec![(100, 8), (101, 9), (102, 8)]
/// );
/// ```
pub fn spread(irqs: &[u32], cpus: &[u32]) -> Vec<(u32, u32)> {
    if cpus.is_empty() {
        return Vec::new();
    }
    irqs.iter()
        .zip(cpus.iter().cycle())
        .map(|(&irq, &cpu)| (irq, cpu))
        .collect()
}

/// The default CPU order for a device on `node`: the node's cores' first threads, then their
/// second threads, ...; all online CPUs in that order when the node is unknown.
pub fn default_irq_cpus(topology: &Topology, node: Option<u32>) -> Vec<u32> {
    let set = match node.and_then(|n| topology.node(n)) {
        Some(n) if !n.cpus.is_empty() => n.cpus.clone(),
        _ => topology.online(),
    };
    let cores = topology.cores_in(&set);
    let mut out = Vec::with_capacity(set.len());
    let mut level = 0;
    loop {
        let before = out.len();
        out.extend(cores.iter().filter_map(|c| c.threads.iter().nth(level)));
        if out.len() == before {
            break;
        }
        level += 1;
    }
    out
}

fn read_cpulist(root: &SysRoot, abs: &str) -> Option<CpuSet> {
    root.read_opt(abs)
        .ok()
        .flatten()
        .and_then(|t| CpuSet::parse(&t).ok())
}

/// Plans the spread of `target`'s vectors over `cpus` (default: [`default_irq_cpus`] of
/// the device's node). `irqbalance` lists running irqbalance PIDs for the warning.
pub fn plan_irqs(
    root: &SysRoot,
    topology: &Topology,
    table: &InterruptTable,
    target: &IrqTarget,
    cpus: Option<&CpuSet>,
    irqbalance: &[u32],
) -> Result<IrqPlan> {
    let source = find_irqs(root, topology, target, table)?;
    let online = topology.online();
    let cpu_list: Vec<u32> = match cpus {
        Some(set) => {
            if let Some(cpu) = set.iter().find(|&c| !online.contains(c)) {
                return Err(AffinityError::CpuNotOnline {
                    cpu,
                    online: online.to_string(),
                });
            }
            set.to_vec()
        }
        None => default_irq_cpus(topology, source.node),
    };
    if cpu_list.is_empty() {
        return Err(AffinityError::Placement("the CPU list is empty".into()));
    }

    let pairs = spread(&source.irqs, &cpu_list);
    let assignments: Vec<IrqAssignment> = pairs
        .iter()
        .map(|&(irq, cpu)| {
            let line = table.line(irq);
            IrqAssignment {
                irq,
                name: line.map(|l| l.names.clone()).unwrap_or_default(),
                current: read_cpulist(root, &format!("/proc/irq/{irq}/smp_affinity_list")),
                effective: read_cpulist(root, &format!("/proc/irq/{irq}/effective_affinity_list")),
                interrupts: line.map_or(0, super::interrupts::InterruptLine::total),
                cpu,
            }
        })
        .collect();

    let mut rows: BTreeMap<u32, CpuLoad> = BTreeMap::new();
    fn row<'a>(rows: &'a mut BTreeMap<u32, CpuLoad>, t: &Topology, cpu: u32) -> &'a mut CpuLoad {
        rows.entry(cpu).or_insert_with(|| CpuLoad {
            cpu,
            node: t.node_of_cpu(cpu),
            current_vectors: 0,
            current_interrupts: 0,
            planned_vectors: 0,
            planned_interrupts: 0,
        })
    }
    for a in &assignments {
        if let Some(now) = a.effective.as_ref().or(a.current.as_ref()) {
            for cpu in now.iter().filter(|&c| online.contains(c)) {
                row(&mut rows, topology, cpu).current_vectors += 1;
            }
        }
        for &cpu in table.cpus() {
            let n = table.count_on(a.irq, cpu);
            if n > 0 {
                let r = row(&mut rows, topology, cpu);
                r.current_interrupts = r.current_interrupts.saturating_add(n);
            }
        }
        let r = row(&mut rows, topology, a.cpu);
        r.planned_vectors += 1;
        r.planned_interrupts = r.planned_interrupts.saturating_add(a.interrupts);
    }
    let per_cpu: Vec<CpuLoad> = rows.into_values().collect();

    let mut warnings = Vec::new();
    if !irqbalance.is_empty() {
        let pids: Vec<String> = irqbalance.iter().map(u32::to_string).collect();
        warnings.push(format!(
            "irqbalance is running (pid {}): it rewrites interrupt affinity every few seconds and will undo this plan; stop and disable it, or ban these IRQs from it (--banirq / IRQBALANCE_BANNED_CPULIST)",
            pids.join(", ")
        ));
    }
    if let Some(node) = source.node {
        let away: CpuSet = cpu_list
            .iter()
            .copied()
            .filter(|&c| topology.node_of_cpu(c) != Some(node))
            .collect();
        if !away.is_empty() {
            warnings.push(format!(
                "CPUs {away} are not on node {node}, where {} sits: their interrupts cross the socket interconnect",
                target.name()
            ));
        }
    }
    let doubled: CpuSet = per_cpu
        .iter()
        .filter(|r| r.planned_vectors > 1)
        .map(|r| r.cpu)
        .collect();
    if !doubled.is_empty() {
        warnings.push(format!(
            "{} vectors over {} CPUs: CPU(s) {doubled} take more than one",
            source.irqs.len(),
            cpu_list.len()
        ));
    }
    if source.discovery == IrqDiscovery::InterruptNames {
        warnings.push(
            "vectors matched by name in /proc/interrupts (no msi_irqs directory): check the list"
                .to_owned(),
        );
    }
    Ok(IrqPlan {
        source,
        cpus: cpu_list,
        assignments,
        per_cpu,
        warnings,
    })
}

/// The result of writing one vector's affinity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApplyOutcome {
    /// IRQ number.
    pub irq: u32,
    /// CPU written.
    pub cpu: u32,
    /// `None` on success, else what went wrong.
    pub error: Option<String>,
}

/// Writes each assignment to `/proc/irq/N/smp_affinity_list` under `root`. Every vector is
/// attempted; failures are reported per vector.
pub fn apply_plan(root: &SysRoot, plan: &IrqPlan) -> Vec<ApplyOutcome> {
    plan.assignments
        .iter()
        .map(|a| {
            let abs = format!("/proc/irq/{}/smp_affinity_list", a.irq);
            let path = root.join(&abs);
            let error = match std::fs::OpenOptions::new().write(true).truncate(true).open(&path)
            {
                Err(e) => Some(format!("{abs}: {e}")),
                Ok(mut f) => {
                    use std::io::Write as _;
                    match f.write_all(format!("{}\n", a.cpu).as_bytes()) {
                        Ok(()) => None,
                        Err(e) if e.raw_os_error() == Some(libc::EIO) => Some(format!(
                            "{abs}: the kernel manages this vector's affinity (EIO); it cannot be moved"
                        )),
                        Err(e) => Some(format!("{abs}: {e}")),
                    }
                }
            };
            ApplyOutcome {
                irq: a.irq,
                cpu: a.cpu,
                error,
            }
        })
        .collect()
}
