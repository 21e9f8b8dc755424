//! Topology from hwloc (the system libhwloc through `hwlocality`).
//!
//! hwloc's object model (Machine > Package > ... > Core > PU, NUMA nodes attached as memory
//! children, I/O objects under their PCI bridges) is flattened into the same [`Topology`] the
//! sysfs reader builds. Offline CPUs are left out, like the sysfs reader does; CPUs hidden
//! from this process by a cgroup are kept (`INCLUDE_DISALLOWED`), so both readers describe
//! the machine rather than the process.

use std::collections::BTreeMap;

use hwlocality::object::TopologyObject;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::topology::builder::{BuildFlags, TypeFilter};

use super::{Cpu, NumaNode, Topology, TopologySource};
use crate::cpuset::CpuSet;
use crate::error::{AffinityError, Result};

fn hw_err(e: impl std::fmt::Display) -> AffinityError {
    AffinityError::Hwloc(e.to_string())
}

fn cpuset_of(obj: &TopologyObject) -> CpuSet {
    obj.cpuset()
        .map(|set| {
            set.iter_set()
                .filter_map(|i| u32::try_from(usize::from(i)).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn index_of(obj: &TopologyObject) -> Option<u32> {
    obj.os_index().and_then(|i| u32::try_from(i).ok())
}

pub(super) fn read() -> Result<Topology> {
    let hw = hwlocality::Topology::builder()
        .with_flags(BuildFlags::INCLUDE_DISALLOWED)
        .map_err(hw_err)?
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(hw_err)?
        .build()
        .map_err(hw_err)?;

    let mut nodes = Vec::new();
    for obj in hw.objects_with_type(ObjectType::NUMANode) {
        let Some(id) = index_of(obj) else { continue };
        let memory_kib = match obj.attributes() {
            Some(ObjectAttributes::NUMANode(attr)) => {
                attr.local_memory().map(|b| u64::from(b) / 1024)
            }
            _ => None,
        };
        nodes.push(NumaNode {
            id,
            cpus: cpuset_of(obj),
            memory_kib,
        });
    }

    let mut cpus = Vec::new();
    for pu in hw.objects_with_type(ObjectType::PU) {
        let Some(id) = index_of(pu) else { continue };
        let core = pu.ancestors().find(|a| a.object_type() == ObjectType::Core);
        let package = pu
            .ancestors()
            .find(|a| a.object_type() == ObjectType::Package)
            .and_then(index_of)
            .unwrap_or(0);
        let core_id = core.and_then(index_of).unwrap_or(id);
        let mut siblings = core.map(cpuset_of).unwrap_or_default();
        siblings.insert(id);
        let node = nodes
            .iter()
            .find(|n| n.cpus.contains(id))
            .or(nodes.first())
            .map_or(0, |n| n.id);
        cpus.push(Cpu {
            id,
            package,
            core_id,
            node,
            siblings,
        });
    }
    if cpus.is_empty() {
        return Err(AffinityError::Hwloc("hwloc reported no CPUs".into()));
    }

    let all_nodes: Vec<u32> = nodes.iter().map(|n| n.id).collect();
    let mut device_nodes = BTreeMap::new();
    for dev in hw.objects_with_type(ObjectType::OSDevice) {
        let Some(name) = dev.name().and_then(|n| n.to_str().ok()) else {
            continue;
        };
        let node = dev.first_non_io_ancestor().and_then(|anc| {
            let set: Vec<u32> = anc
                .nodeset()
                .map(|s| {
                    s.iter_set()
                        .filter_map(|i| u32::try_from(usize::from(i)).ok())
                        .collect()
                })
                .unwrap_or_default();
            match (set.as_slice(), all_nodes.as_slice()) {
                ([one], _) => Some(*one),
                (_, [only]) => Some(*only),
                _ => None,
            }
        });
        device_nodes.insert(name.to_owned(), node);
    }
    Ok(Topology::assemble(
        TopologySource::Hwloc,
        nodes,
        cpus,
        device_nodes,
    ))
}
