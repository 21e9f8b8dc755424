//! Topology from sysfs alone.
//!
//! Reads `/sys/devices/system/cpu/online`, `cpuN/topology/{core_id,physical_package_id,
//! thread_siblings_list}` (kernel `Documentation/ABI/stable/sysfs-devices-system-cpu`) and
//! `/sys/devices/system/node/nodeN/{cpulist,meminfo}` (`.../sysfs-devices-node`). A kernel
//! without NUMA support has no `node` directory: the machine is then one node 0.

use std::collections::BTreeMap;

use super::{Cpu, NumaNode, Topology, TopologySource};
use crate::cpuset::CpuSet;
use crate::error::{AffinityError, Result};
use crate::sysroot::{SysRoot, numbered};

const CPU_DIR: &str = "/sys/devices/system/cpu";
const NODE_DIR: &str = "/sys/devices/system/node";

pub(super) fn read(root: &SysRoot) -> Result<Topology> {
    let online = online_cpus(root)?;
    if online.is_empty() {
        return Err(AffinityError::parse(
            root.display_path(&root.join(CPU_DIR)),
            "at least one online CPU",
            "",
        ));
    }
    let mut nodes = Vec::new();
    for name in root.list_dir(&root.join(NODE_DIR)) {
        let Some(id) = numbered(&name, "node") else {
            continue;
        };
        let cpus = read_cpulist(root, &format!("{NODE_DIR}/{name}/cpulist"))?
            .unwrap_or_default()
            .intersection(&online);
        let memory_kib = node_memory_kib(root, &format!("{NODE_DIR}/{name}/meminfo"))?;
        nodes.push(NumaNode {
            id,
            cpus,
            memory_kib,
        });
    }
    if nodes.is_empty() {
        nodes.push(NumaNode {
            id: 0,
            cpus: online.clone(),
            memory_kib: node_memory_kib(root, "/proc/meminfo")?,
        });
    }
    let mut cpus = Vec::with_capacity(online.len());
    for id in online.iter() {
        let base = format!("{CPU_DIR}/cpu{id}/topology");
        let core_id = read_id(root, &format!("{base}/core_id"))?.unwrap_or(id);
        let package = read_id(root, &format!("{base}/physical_package_id"))?.unwrap_or(0);
        let mut siblings = read_cpulist(root, &format!("{base}/thread_siblings_list"))?
            .unwrap_or_default()
            .intersection(&online);
        siblings.insert(id);
        // A CPU missing from every node's list (possible on odd firmware) is put on the
        // first node, which is what the kernel's memory allocator falls back to as well.
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
    Ok(Topology::assemble(
        TopologySource::Sysfs,
        nodes,
        cpus,
        BTreeMap::new(),
    ))
}

fn online_cpus(root: &SysRoot) -> Result<CpuSet> {
    if let Some(set) = read_cpulist(root, &format!("{CPU_DIR}/online"))? {
        return Ok(set);
    }
    Ok(root
        .list_dir(&root.join(CPU_DIR))
        .iter()
        .filter_map(|n| numbered(n, "cpu"))
        .collect())
}

/// Reads a CPU-list file; `None` when absent.
pub(crate) fn read_cpulist(root: &SysRoot, abs: &str) -> Result<Option<CpuSet>> {
    match root.read_opt(abs)? {
        Some(text) => CpuSet::parse(&text)
            .map(Some)
            .map_err(|_| AffinityError::parse(abs, "a CPU list", &text)),
        None => Ok(None),
    }
}

/// Reads a small id; `-1` (the kernel's "unknown") and absence give `None`.
fn read_id(root: &SysRoot, abs: &str) -> Result<Option<u32>> {
    match root.read_opt(abs)? {
        Some(text) if text == "-1" => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| AffinityError::parse(abs, "a number", &text)),
        None => Ok(None),
    }
}

/// `MemTotal` from a node's meminfo ("Node 0 MemTotal:  123 kB") or /proc/meminfo.
fn node_memory_kib(root: &SysRoot, abs: &str) -> Result<Option<u64>> {
    let Some(text) = root.read_opt(abs)? else {
        return Ok(None);
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim_end().ends_with("MemTotal") {
            let number = value.trim().trim_end_matches("kB").trim();
            return number
                .parse()
                .map(Some)
                .map_err(|_| AffinityError::parse(abs, "MemTotal in kB", line));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn machine_without_numa_directory_is_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "sys/devices/system/cpu/online", "0-1\n");
        for cpu in 0..2 {
            let base = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            write(d, &format!("{base}/core_id"), &format!("{cpu}\n"));
            write(d, &format!("{base}/physical_package_id"), "0\n");
            write(
                d,
                &format!("{base}/thread_siblings_list"),
                &format!("{cpu}\n"),
            );
        }
        write(d, "proc/meminfo", "MemTotal:  2048 kB\nMemFree: 1 kB\n");
        let t = read(&SysRoot::new(d)).unwrap();
        assert_eq!(t.nodes().len(), 1);
        assert_eq!(t.nodes()[0].cpus.to_string(), "0-1");
        assert_eq!(t.nodes()[0].memory_kib, Some(2048));
        assert_eq!(t.cores().len(), 2);
    }

    #[test]
    fn offline_cpus_and_missing_topology_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // CPU 1 is offline: it must not appear, not even as a sibling.
        write(d, "sys/devices/system/cpu/online", "0,2\n");
        write(
            d,
            "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
            "0-1\n",
        );
        write(
            d,
            "sys/devices/system/cpu/cpu0/topology/physical_package_id",
            "-1\n",
        );
        write(d, "sys/devices/system/node/node0/cpulist", "0-2\n");
        let t = read(&SysRoot::new(d)).unwrap();
        assert_eq!(t.online().to_string(), "0,2");
        assert_eq!(t.cpu(0).unwrap().siblings.to_string(), "0");
        assert_eq!(t.cpu(0).unwrap().package, 0);
        // No topology directory at all: the CPU is its own core.
        assert_eq!(t.cpu(2).unwrap().core_id, 2);
        assert_eq!(t.nodes()[0].cpus.to_string(), "0,2");
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "sys/devices/system/cpu/online", "0-1\n");
        write(d, "sys/devices/system/cpu/cpu1/topology/core_id", "one\n");
        let err = read(&SysRoot::new(d)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/sys/devices/system/cpu/cpu1/topology/core_id: cannot parse a number from \"one\""
        );
        write(d, "sys/devices/system/cpu/online", "0-\n");
        let err = read(&SysRoot::new(d)).unwrap_err();
        assert!(err.to_string().contains("a CPU list"), "{err}");
    }

    #[test]
    fn empty_root_has_no_cpus() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&SysRoot::new(dir.path())).is_err());
    }
}
