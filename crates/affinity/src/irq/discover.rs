//! Finding the interrupt vectors of a NIC or storage controller, and a running irqbalance.
//!
//! A PCI function lists its MSI/MSI-X vectors as files in `msi_irqs/`
//! (`Documentation/ABI/testing/sysfs-bus-pci`); a function without MSI has its legacy line in
//! `irq`. Drivers name their handlers after the interface or PCI address, which is the last
//! resort when neither file helps (`/proc/interrupts`). irqbalance is found by its process
//! name (`/proc/PID/comm`, `Documentation/filesystems/proc.rst`).

use serde::Serialize;

use super::interrupts::InterruptTable;
use crate::error::{AffinityError, Result};
use crate::sysroot::SysRoot;
use crate::topology::{DeviceKind, DeviceLocality, NodeEvidence, Topology};

/// What to find interrupts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum IrqTarget {
    /// A network interface (`--nic IF`).
    Nic(String),
    /// A block device (`sda`, `nvme0n1`) or a PCI address (`0000:02:00.0`) (`--device DEV`).
    Device(String),
}

impl IrqTarget {
    /// The name given.
    pub fn name(&self) -> &str {
        match self {
            Self::Nic(n) | Self::Device(n) => n,
        }
    }
}

/// How a device's vectors were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IrqDiscovery {
    /// The PCI function's `msi_irqs/` directory.
    MsiIrqs,
    /// The PCI function's legacy `irq` line.
    LegacyIrq,
    /// Handler or chip names in `/proc/interrupts`.
    InterruptNames,
}

/// A device and its interrupt vectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrqSource {
    /// What was asked for.
    pub target: IrqTarget,
    /// PCI address of the function serving it.
    pub pci: Option<String>,
    /// Its NUMA node, when known.
    pub node: Option<u32>,
    /// IRQ numbers, ascending.
    pub irqs: Vec<u32>,
    /// How they were found.
    pub discovery: IrqDiscovery,
}

/// Finds the vectors of `target`.
pub fn find_irqs(
    root: &SysRoot,
    topology: &Topology,
    target: &IrqTarget,
    table: &InterruptTable,
) -> Result<IrqSource> {
    let (pci, pci_dir, node) = match target {
        IrqTarget::Nic(name) => {
            let loc = DeviceLocality::locate(root, topology, DeviceKind::Nic, name)?;
            let dir = loc
                .pci_sysfs_path()
                .map(|p| root.join(&p.to_string_lossy()));
            (loc.pci, dir, loc.node)
        }
        IrqTarget::Device(name) if crate::topology::is_pci_address(name) => {
            let dir = root
                .resolve(&root.join(&format!("/sys/bus/pci/devices/{name}")))
                .ok_or_else(|| AffinityError::UnknownDevice {
                    kind: "PCI device",
                    name: name.clone(),
                    looked_in: "/sys/bus/pci/devices".into(),
                })?;
            let node = match root.read_path_opt(&dir.join("numa_node"))? {
                Some(t) => t.parse::<u32>().ok(),
                None => None,
            };
            let node = node.or_else(|| match topology.nodes() {
                [only] => Some(only.id),
                _ => None,
            });
            (Some(name.clone()), Some(dir), node)
        }
        IrqTarget::Device(name) => {
            let loc = DeviceLocality::locate(root, topology, DeviceKind::Block, name)?;
            let dir = loc
                .pci_sysfs_path()
                .map(|p| root.join(&p.to_string_lossy()));
            let node = match loc.evidence {
                NodeEvidence::Unknown => None,
                _ => loc.node,
            };
            (loc.pci, dir, node)
        }
    };
    let found = |irqs: Vec<u32>, discovery| IrqSource {
        target: target.clone(),
        pci: pci.clone(),
        node,
        irqs,
        discovery,
    };

    if let Some(dir) = &pci_dir {
        let mut irqs: Vec<u32> = root
            .list_dir(&dir.join("msi_irqs"))
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        if !irqs.is_empty() {
            irqs.sort_unstable();
            return Ok(found(irqs, IrqDiscovery::MsiIrqs));
        }
    }

    // Handler names: "IF", "IF-TxRx-3", "mlx5_comp3@pci:0000:81:00.0", or the PCI address in
    // the chip name ("PCI-MSIX-0000:00:03.0").
    let name = target.name();
    let mut irqs: Vec<u32> = table
        .lines()
        .iter()
        .filter(|l| {
            let by_name = l.names.split(", ").any(|n| {
                n == name
                    || n.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(['-', '@', ':']))
            });
            let by_pci = pci
                .as_deref()
                .is_some_and(|p| l.names.contains(p) || l.chip.contains(p));
            by_name || by_pci
        })
        .filter_map(|l| l.irq)
        .collect();
    if !irqs.is_empty() {
        irqs.sort_unstable();
        irqs.dedup();
        return Ok(found(irqs, IrqDiscovery::InterruptNames));
    }

    if let Some(dir) = &pci_dir {
        if let Some(irq) = root
            .read_path_opt(&dir.join("irq"))?
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|&n| n > 0)
        {
            return Ok(found(vec![irq], IrqDiscovery::LegacyIrq));
        }
    }
    Err(AffinityError::NoIrqs {
        device: name.to_owned(),
    })
}

/// PIDs of running irqbalance processes under `root`.
pub fn irqbalance_pids(root: &SysRoot) -> Vec<u32> {
    let proc_dir = root.join("/proc");
    let mut pids: Vec<u32> = root
        .list_dir(&proc_dir)
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(proc_dir.join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim() == "irqbalance")
        })
        .collect();
    pids.sort_unstable();
    pids
}
