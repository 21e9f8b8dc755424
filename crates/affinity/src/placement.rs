//! The reactor placement planner.
//!
//! Decides which CPUs run reactor threads and which take the NIC's interrupts, from the
//! topology, the `[performance]` section and where the portal NICs and backing devices sit.
//! The rules, in order: run on the NIC's NUMA node (memory and DMA stay local); give each
//! reactor its own physical core before doubling up on hyperthread siblings; with
//! `irq_policy = "separate"` keep the interrupt cores (the node's lowest cores) apart from the
//! reactor cores, with `"shared"` put one interrupt vector on each reactor's core. Every
//! choice is written into [`PlacementPlan::explanation`], which the engine logs at start-up.
//! The interrupt spread itself is the `irq` module's job (kernel
//! `Documentation/core-api/irq/irq-affinity.rst`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{IrqPolicy, PerformanceConfig};
use crate::cpuset::CpuSet;
use crate::error::{AffinityError, ConfigError, Result};
use crate::sysroot::SysRoot;
use crate::topology::{Core, DeviceKind, DeviceLocality, NodeEvidence, Topology};

/// One reactor's seat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReactorSlot {
    /// Reactor number (0-based).
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: u32,
    /// That CPU's NUMA node (where its buffer pool lives).
    pub node: u32,
}

/// Where reactors and interrupts go, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlacementPlan {
    /// The NUMA node chosen, if one was.
    pub node: Option<u32>,
    /// The interrupt policy applied.
    pub policy: IrqPolicy,
    /// Reactor seats, one per reactor.
    pub reactors: Vec<ReactorSlot>,
    /// CPUs for the NIC's interrupt vectors, in spreading order (pass to the IRQ planner).
    pub irq_cpus: Vec<u32>,
    /// Human-readable account of the choices.
    pub explanation: String,
}

impl PlacementPlan {
    /// The reactors' CPUs in reactor order.
    pub fn reactor_cpus(&self) -> Vec<u32> {
        self.reactors.iter().map(|r| r.cpu).collect()
    }

    /// The distinct nodes reactors run on (one buffer pool each).
    pub fn reactor_nodes(&self) -> Vec<u32> {
        let mut nodes: Vec<u32> = self.reactors.iter().map(|r| r.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// Locates `nics` and `devices` under `root` and plans placement.
///
/// ```
/// use rtgt_affinity::{PerformanceConfig, SysRoot, Topology, plan_placement};
///
/// let root = SysRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket"));
/// let topo = Topology::from_sysfs(&root)?;
/// let plan = plan_placement(&root, &topo, &PerformanceConfig::default(), &["ens1f0"], &["sda"])?;
/// assert_eq!(plan.node, Some(1));
/// assert_eq!(plan.reactor_cpus(), vec![12, 13, 14, 15]);
/// assert_eq!(plan.irq_cpus, vec![8, 9, 10, 11, 24, 25, 26, 27]);
/// println!("{}", plan.explanation);
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
pub fn plan_placement(
    root: &SysRoot,
    topology: &Topology,
    config: &PerformanceConfig,
    nics: &[&str],
    devices: &[&str],
) -> Result<PlacementPlan> {
    let nics = nics
        .iter()
        .map(|n| DeviceLocality::locate(root, topology, DeviceKind::Nic, n))
        .collect::<Result<Vec<_>>>()?;
    let devices = devices
        .iter()
        .map(|n| DeviceLocality::locate(root, topology, DeviceKind::Block, n))
        .collect::<Result<Vec<_>>>()?;
    PlacementPlan::compute(topology, config, &nics, &devices)
}

fn evidence_words(e: NodeEvidence) -> &'static str {
    match e {
        NodeEvidence::Hwloc => "per hwloc",
        NodeEvidence::SysfsNumaNode => "per its PCI numa_node",
        NodeEvidence::SingleNode => "the only node",
        NodeEvidence::Unknown => "unknown",
    }
}

/// Picks the node most of `devs` sit on (ties to the lower node); `None` if none is known.
fn majority_node(devs: &[DeviceLocality]) -> Option<(u32, usize)> {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for n in devs.iter().filter_map(|d| d.node) {
        *counts.entry(n).or_default() += 1;
    }
    // max_by_key keeps the last maximum; iterate high-to-low so ties go to the lowest node.
    counts.into_iter().rev().max_by_key(|&(_, c)| c)
}

fn describe(devs: &[DeviceLocality], node: u32, word: &str, out: &mut String) {
    let on: Vec<&DeviceLocality> = devs.iter().filter(|d| d.node == Some(node)).collect();
    let names: Vec<&str> = on.iter().map(|d| d.name.as_str()).collect();
    let evidence = on.first().map_or("unknown", |d| evidence_words(d.evidence));
    let _ = write!(
        out,
        "{word} {} on NUMA node {node} ({evidence})",
        names.join(", ")
    );
    let elsewhere: Vec<String> = devs
        .iter()
        .filter(|d| d.node != Some(node))
        .map(|d| match d.node {
            Some(n) => format!("{} (node {n})", d.name),
            None => format!("{} (node unknown)", d.name),
        })
        .collect();
    if !elsewhere.is_empty() {
        let _ = write!(out, "; also {}", elsewhere.join(", "));
    }
    out.push_str(". ");
}

/// Takes `count` CPUs from `cores`: first threads of every core, then second threads, ...
fn pick_threads(cores: &[Core], count: usize) -> Vec<u32> {
    let mut picked = Vec::with_capacity(count);
    let mut level = 0;
    while picked.len() < count {
        let mut any = false;
        for core in cores {
            if let Some(cpu) = core.threads.iter().nth(level) {
                any = true;
                if picked.len() < count {
                    picked.push(cpu);
                }
            }
        }
        if !any {
            break;
        }
        level += 1;
    }
    picked
}

fn all_threads(cores: &[Core]) -> Vec<u32> {
    let total = cores.iter().map(|c| c.threads.len()).sum();
    pick_threads(cores, total)
}

impl PlacementPlan {
    /// Plans from already located devices (see [`plan_placement`]).
    pub fn compute(
        topology: &Topology,
        config: &PerformanceConfig,
        nics: &[DeviceLocality],
        devices: &[DeviceLocality],
    ) -> Result<Self> {
        config.validate_for(topology)?;
        let mut why = String::new();

        // 1. The node.
        let node = if let Some(n) = config.numa_node {
            let _ = write!(why, "numa_node = {n} is set in [performance]. ");
            let away: Vec<String> = nics
                .iter()
                .filter_map(|d| {
                    d.node
                        .filter(|&m| m != n)
                        .map(|m| format!("{} (node {m})", d.name))
                })
                .collect();
            if !away.is_empty() {
                let _ = write!(
                    why,
                    "Warning: {} sit(s) on another node; their traffic crosses the socket interconnect. ",
                    away.join(", ")
                );
            }
            Some(n)
        } else if let Some((n, _)) = majority_node(nics) {
            describe(nics, n, "NIC", &mut why);
            Some(n)
        } else if let Some((n, _)) = majority_node(devices) {
            if nics.is_empty() {
                why.push_str("No portal NIC given; ");
            } else {
                why.push_str("The NICs' node is unknown; ");
            }
            describe(devices, n, "backing device", &mut why);
            Some(n)
        } else if let [only] = topology.nodes() {
            let _ = write!(why, "The machine has a single NUMA node ({}). ", only.id);
            Some(only.id)
        } else {
            why.push_str("No NIC or device locality is known; using the CPUs of all nodes. ");
            None
        };

        // 2. The candidate CPUs.
        let online = topology.online();
        let candidates = if let Some(cpus) = &config.cpus {
            let _ = write!(why, "Candidate CPUs {cpus} are set in [performance]");
            if let Some(n) = node {
                let off: CpuSet = cpus
                    .iter()
                    .filter(|&c| topology.node_of_cpu(c) != Some(n))
                    .collect();
                if !off.is_empty() {
                    let _ = write!(why, " (CPUs {off} are not on node {n})");
                }
            }
            why.push_str(". ");
            cpus.clone()
        } else if let Some(n) = node {
            let cpus = topology.node(n).map(|x| x.cpus.clone()).unwrap_or_default();
            if cpus.is_empty() {
                return Err(AffinityError::Placement(format!(
                    "node {n} has no CPUs; set performance.cpus or performance.numa_node"
                )));
            }
            cpus
        } else {
            online.clone()
        };
        let cores = topology.cores_in(&candidates);
        let threads: usize = cores.iter().map(|c| c.threads.len()).sum();
        let _ = write!(
            why,
            "{} has {} core(s), {} thread(s): CPUs {}. ",
            match (config.cpus.is_some(), node) {
                (true, _) | (false, None) => "The candidate set".to_owned(),
                (false, Some(n)) => format!("Node {n}"),
            },
            cores.len(),
            threads,
            candidates
        );

        // 3. Split between interrupts and reactors.
        let too_many = |wanted: usize, available: usize, place: &str| {
            AffinityError::Config(ConfigError::new(
                "performance.reactors",
                format!("{wanted} reactors need {wanted} CPUs but {place} has only {available}"),
            ))
        };
        let (reactor_cpus, irq_cpus) = match config.irq_policy {
            IrqPolicy::Shared => {
                let wanted = config.reactors.map_or(cores.len(), |r| r as usize);
                if wanted > threads {
                    return Err(too_many(wanted, threads, "the candidate set"));
                }
                let reactors = pick_threads(&cores, wanted);
                let _ = write!(
                    why,
                    "{} reactor(s) ({}); irq_policy = shared: one interrupt vector per reactor CPU, so completions are handled where the reactor runs.",
                    wanted,
                    if config.reactors.is_some() {
                        "set in [performance]"
                    } else {
                        "one per core"
                    },
                );
                (reactors.clone(), reactors)
            }
            IrqPolicy::Separate if cores.len() < 2 => {
                let wanted = config.reactors.map_or(1, |r| r as usize);
                if wanted > threads {
                    return Err(too_many(wanted, threads, "the candidate set"));
                }
                let reactors = pick_threads(&cores, wanted);
                let _ = write!(
                    why,
                    "irq_policy = separate cannot be honoured with a single core: interrupts and {wanted} reactor(s) share it.",
                );
                (reactors, all_threads(&cores))
            }
            IrqPolicy::Separate => {
                let wanted = config
                    .reactors
                    .map_or((cores.len() / 2).max(1), |r| r as usize);
                let reactor_core_count = wanted.min(cores.len() - 1);
                let split = cores.len() - reactor_core_count;
                let (irq_cores, reactor_cores) = cores.split_at(split);
                let reactor_threads: usize = reactor_cores.iter().map(|c| c.threads.len()).sum();
                if wanted > reactor_threads {
                    return Err(too_many(
                        wanted,
                        reactor_threads,
                        "the part of the candidate set left after the interrupt core",
                    ));
                }
                let reactors = pick_threads(reactor_cores, wanted);
                let irq = all_threads(irq_cores);
                let irq_set: CpuSet = irq.iter().copied().collect();
                let reactor_set: CpuSet = reactors.iter().copied().collect();
                let _ = write!(
                    why,
                    "irq_policy = separate: interrupts on CPUs {irq_set} ({} core(s)); {wanted} reactor(s) ({}) on CPUs {reactor_set}, ",
                    irq_cores.len(),
                    if config.reactors.is_some() {
                        "set in [performance]"
                    } else {
                        "half the cores"
                    },
                );
                if wanted > reactor_cores.len() {
                    why.push_str("hyperthread siblings used because there are more reactors than free cores.");
                } else {
                    why.push_str("one per core, away from the interrupt cores.");
                }
                (reactors, irq)
            }
        };

        let reactors = reactor_cpus
            .iter()
            .enumerate()
            .map(|(index, &cpu)| ReactorSlot {
                index,
                cpu,
                node: topology.node_of_cpu(cpu).unwrap_or(0),
            })
            .collect();
        Ok(Self {
            node,
            policy: config.irq_policy,
            reactors,
            irq_cpus,
            explanation: why.trim_end().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Cpu, NumaNode, TopologySource};

    /// One node, `n` cores without hyperthreads.
    fn flat(n: u32) -> Topology {
        let cpus = (0..n)
            .map(|id| Cpu {
                id,
                package: 0,
                core_id: id,
                node: 0,
                siblings: [id].into_iter().collect(),
            })
            .collect();
        let nodes = vec![NumaNode {
            id: 0,
            cpus: (0..n).collect(),
            memory_kib: None,
        }];
        Topology::assemble(TopologySource::Sysfs, nodes, cpus, BTreeMap::new())
    }

    #[test]
    fn single_core_cannot_separate() {
        let plan =
            PlacementPlan::compute(&flat(1), &PerformanceConfig::default(), &[], &[]).unwrap();
        assert_eq!(plan.reactor_cpus(), vec![0]);
        assert_eq!(plan.irq_cpus, vec![0]);
        assert!(
            plan.explanation.contains("cannot be honoured"),
            "{}",
            plan.explanation
        );
        assert!(
            plan.explanation
                .starts_with("The machine has a single NUMA node (0).")
        );
    }

    #[test]
    fn separate_on_flat_machine() {
        let plan =
            PlacementPlan::compute(&flat(6), &PerformanceConfig::default(), &[], &[]).unwrap();
        assert_eq!(plan.irq_cpus, vec![0, 1, 2]);
        assert_eq!(plan.reactor_cpus(), vec![3, 4, 5]);
        let cfg = PerformanceConfig {
            reactors: Some(5),
            ..Default::default()
        };
        let plan = PlacementPlan::compute(&flat(6), &cfg, &[], &[]).unwrap();
        assert_eq!(plan.irq_cpus, vec![0]);
        assert_eq!(plan.reactor_cpus(), vec![1, 2, 3, 4, 5]);
        // Without hyperthreads, 6 reactors leave no room for an interrupt core.
        let cfg = PerformanceConfig {
            reactors: Some(6),
            ..Default::default()
        };
        let err = PlacementPlan::compute(&flat(6), &cfg, &[], &[]).unwrap_err();
        assert!(
            matches!(&err, AffinityError::Config(c) if c.key == "performance.reactors"),
            "{err}"
        );
    }

    #[test]
    fn shared_uses_every_core() {
        let cfg = PerformanceConfig {
            irq_policy: IrqPolicy::Shared,
            ..Default::default()
        };
        let plan = PlacementPlan::compute(&flat(4), &cfg, &[], &[]).unwrap();
        assert_eq!(plan.reactor_cpus(), vec![0, 1, 2, 3]);
        assert_eq!(plan.irq_cpus, vec![0, 1, 2, 3]);
        assert_eq!(plan.reactor_nodes(), vec![0]);
        let cfg = PerformanceConfig {
            irq_policy: IrqPolicy::Shared,
            reactors: Some(5),
            ..Default::default()
        };
        assert!(PlacementPlan::compute(&flat(4), &cfg, &[], &[]).is_err());
    }

    #[test]
    fn invalid_config_is_rejected_before_planning() {
        let cfg = PerformanceConfig {
            cpus: Some("7".parse().unwrap()),
            ..Default::default()
        };
        let err = PlacementPlan::compute(&flat(4), &cfg, &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "performance.cpus: CPUs 7 are not online (online: 0-3)"
        );
    }
}
