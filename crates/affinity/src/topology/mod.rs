//! Machine topology: NUMA nodes, packages, cores, hyperthread siblings, and where devices sit.
//!
//! Two sources give the same answers: hwloc (via `hwlocality`, feature `hwloc`) on the live
//! machine, and a pure reader of the kernel's sysfs topology ABI
//! (`Documentation/ABI/stable/sysfs-devices-system-cpu`, `.../sysfs-devices-node`), which
//! also works on fixture trees. A device's node comes from its PCI function's `numa_node`
//! attribute (`Documentation/ABI/testing/sysfs-bus-pci`).

mod device;
#[cfg(feature = "hwloc")]
mod hwloc;
mod sysfs;

use std::collections::BTreeMap;

use serde::Serialize;

pub(crate) use device::is_pci_address;
pub use device::{DeviceKind, DeviceLocality, NodeEvidence, list_block_devices, list_nics};

use crate::cpuset::CpuSet;
use crate::error::Result;
use crate::sysroot::SysRoot;

/// Where a [`Topology`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologySource {
    /// hwloc (the system libhwloc), live machine only.
    Hwloc,
    /// The kernel's sysfs files under a root.
    Sysfs,
}

/// One logical CPU (a hardware thread; hwloc's "PU").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// The kernel's CPU number.
    pub id: u32,
    /// Physical package (socket) id.
    pub package: u32,
    /// Core id within the package (`topology/core_id`).
    pub core_id: u32,
    /// NUMA node the CPU belongs to.
    pub node: u32,
    /// All online threads of the same core, this one included.
    pub siblings: CpuSet,
}

/// A physical core and its online hardware threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Core {
    /// Physical package (socket) id.
    pub package: u32,
    /// Core id within the package.
    pub core_id: u32,
    /// NUMA node.
    pub node: u32,
    /// The core's hardware threads (restricted to the set the core was selected from).
    pub threads: CpuSet,
}

impl Core {
    /// The core's first (lowest-numbered) thread.
    pub fn primary(&self) -> u32 {
        self.threads.first().unwrap_or(0)
    }
}

/// A NUMA node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// Node number.
    pub id: u32,
    /// Online CPUs of the node (empty for a memory-only node).
    pub cpus: CpuSet,
    /// Memory local to the node, in KiB, when known.
    pub memory_kib: Option<u64>,
}

/// The machine's CPU and memory layout.
///
/// ```
/// use rtgt_affinity::{SysRoot, Topology};
///
/// let root = SysRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket"));
/// let topo = Topology::from_sysfs(&root)?;
/// assert_eq!(topo.nodes().len(), 2);
/// assert_eq!(topo.cores().len(), 16);
/// assert_eq!(topo.cpu(8).unwrap().siblings.to_string(), "8,24");
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct Topology {
    source: TopologySource,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
    nodes: Vec<NumaNode>,
    cpus: Vec<Cpu>,
    #[serde(skip)]
    device_nodes: BTreeMap<String, Option<u32>>,
}

impl Topology {
    /// Reads the topology from sysfs under `root`.
    pub fn from_sysfs(root: &SysRoot) -> Result<Self> {
        sysfs::read(root)
    }

    /// Builds the topology of the running machine with hwloc.
    #[cfg(feature = "hwloc")]
    pub fn from_hwloc() -> Result<Self> {
        hwloc::read()
    }

    /// The best source for `root`: hwloc for the live machine (when built with the `hwloc`
    /// feature and hwloc initialises), sysfs otherwise. When hwloc fails the reason is kept
    /// ([`Topology::fallback_reason`]) and logged.
    pub fn detect(root: &SysRoot) -> Result<Self> {
        #[cfg(feature = "hwloc")]
        if root.is_live() {
            match hwloc::read() {
                Ok(t) => return Ok(t),
                Err(e) => {
                    tracing::warn!(error = %e, "hwloc topology unavailable; reading sysfs");
                    let mut t = sysfs::read(root)?;
                    t.fallback_reason = Some(e.to_string());
                    return Ok(t);
                }
            }
        }
        sysfs::read(root)
    }

    pub(crate) fn assemble(
        source: TopologySource,
        mut nodes: Vec<NumaNode>,
        mut cpus: Vec<Cpu>,
        device_nodes: BTreeMap<String, Option<u32>>,
    ) -> Self {
        nodes.sort_by_key(|n| n.id);
        cpus.sort_by_key(|c| c.id);
        Self {
            source,
            fallback_reason: None,
            nodes,
            cpus,
            device_nodes,
        }
    }

    /// Where the data came from.
    pub fn source(&self) -> TopologySource {
        self.source
    }

    /// Why hwloc was not used, when [`Topology::detect`] fell back to sysfs.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// NUMA nodes, ascending.
    pub fn nodes(&self) -> &[NumaNode] {
        &self.nodes
    }

    /// One node by number.
    pub fn node(&self, id: u32) -> Option<&NumaNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Online CPUs, ascending.
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// One CPU by number.
    pub fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .and_then(|i| self.cpus.get(i))
    }

    /// All online CPUs.
    pub fn online(&self) -> CpuSet {
        self.cpus.iter().map(|c| c.id).collect()
    }

    /// The node list in CPU-list syntax (for messages).
    pub fn node_list(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.id)
            .collect::<CpuSet>()
            .to_string()
    }

    /// The node of a CPU.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.cpu(cpu).map(|c| c.node)
    }

    /// Physical cores of the machine, ordered by their first thread.
    pub fn cores(&self) -> Vec<Core> {
        self.cores_in(&self.online())
    }

    /// Physical cores having at least one thread in `set`, with `threads` restricted to
    /// `set`; ordered by first thread.
    pub fn cores_in(&self, set: &CpuSet) -> Vec<Core> {
        let mut cores: Vec<Core> = Vec::new();
        for cpu in self.cpus.iter().filter(|c| set.contains(c.id)) {
            let threads = cpu.siblings.intersection(set);
            if threads.first() != Some(cpu.id) {
                // Listed under the core's first thread in `set`.
                continue;
            }
            cores.push(Core {
                package: cpu.package,
                core_id: cpu.core_id,
                node: cpu.node,
                threads,
            });
        }
        cores
    }

    /// The node a device sits on according to hwloc, when this topology came from hwloc and
    /// hwloc knows the device: `Some(None)` means hwloc knows it but it is not attached to a
    /// single node.
    pub fn hwloc_device_node(&self, name: &str) -> Option<Option<u32>> {
        self.device_nodes.get(name).copied()
    }

    /// Differences in layout (nodes' CPUs, and every CPU's package, core, node and siblings)
    /// between two topologies; empty when they describe the same machine. Memory sizes are
    /// not compared: they move between two reads under a balloon driver or memory hot-plug.
    pub fn layout_differences(&self, other: &Topology) -> Vec<String> {
        let mut diffs = Vec::new();
        let ours: Vec<(u32, &CpuSet)> = self.nodes.iter().map(|n| (n.id, &n.cpus)).collect();
        let theirs: Vec<(u32, &CpuSet)> = other.nodes.iter().map(|n| (n.id, &n.cpus)).collect();
        if ours != theirs {
            diffs.push(format!("nodes differ: {ours:?} vs {theirs:?}"));
        }
        if self.cpus.len() != other.cpus.len() {
            diffs.push(format!(
                "CPU count differs: {} vs {}",
                self.cpus.len(),
                other.cpus.len()
            ));
        }
        for (a, b) in self.cpus.iter().zip(&other.cpus) {
            if a != b {
                diffs.push(format!("CPU differs: {a:?} vs {b:?}"));
            }
        }
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(id: u32, core_id: u32, node: u32, siblings: &str) -> Cpu {
        Cpu {
            id,
            package: node,
            core_id,
            node,
            siblings: siblings.parse().unwrap(),
        }
    }

    fn small() -> Topology {
        // 2 nodes x 2 cores x 2 threads, Intel-style numbering.
        let cpus = vec![
            cpu(0, 0, 0, "0,4"),
            cpu(1, 1, 0, "1,5"),
            cpu(2, 0, 1, "2,6"),
            cpu(3, 1, 1, "3,7"),
            cpu(4, 0, 0, "0,4"),
            cpu(5, 1, 0, "1,5"),
            cpu(6, 0, 1, "2,6"),
            cpu(7, 1, 1, "3,7"),
        ];
        let nodes = vec![
            NumaNode {
                id: 0,
                cpus: "0-1,4-5".parse().unwrap(),
                memory_kib: None,
            },
            NumaNode {
                id: 1,
                cpus: "2-3,6-7".parse().unwrap(),
                memory_kib: None,
            },
        ];
        Topology::assemble(TopologySource::Sysfs, nodes, cpus, BTreeMap::new())
    }

    #[test]
    fn cores_group_siblings_in_first_thread_order() {
        let t = small();
        let cores = t.cores();
        let threads: Vec<String> = cores.iter().map(|c| c.threads.to_string()).collect();
        assert_eq!(threads, ["0,4", "1,5", "2,6", "3,7"]);
        // Restricting to a set keeps only its threads and cores touching it.
        let sub = t.cores_in(&"4-6".parse().unwrap());
        let threads: Vec<String> = sub.iter().map(|c| c.threads.to_string()).collect();
        assert_eq!(threads, ["4", "5", "6"]);
        assert_eq!(sub[2].node, 1);
        assert_eq!(sub[2].primary(), 6);
    }

    #[test]
    fn lookups() {
        let t = small();
        assert_eq!(t.node_of_cpu(6), Some(1));
        assert_eq!(t.node_of_cpu(60), None);
        assert_eq!(t.online().to_string(), "0-7");
        assert_eq!(t.node_list(), "0-1");
        assert!(t.layout_differences(&small()).is_empty());
    }
}
