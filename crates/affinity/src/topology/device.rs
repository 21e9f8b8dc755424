//! Which NUMA node a network interface or block device sits on.
//!
//! sysfs links a network interface to its device (`/sys/class/net/IF/device`,
//! `Documentation/ABI/testing/sysfs-class-net`) and a block device to its place in the device
//! tree (`/sys/class/block/DEV`). Walking up that tree reaches the PCI function, whose
//! `numa_node` attribute (`Documentation/ABI/testing/sysfs-bus-pci`) names the node, `-1`
//! meaning the platform did not say. Stacked devices are followed down: a bond or VLAN
//! through its `lower_*` links, a device-mapper or MD device through `slaves/`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Topology;
use crate::error::{AffinityError, Result};
use crate::sysroot::SysRoot;

/// What kind of device is being located.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A network interface (`/sys/class/net`).
    Nic,
    /// A block device (`/sys/class/block`).
    Block,
}

impl DeviceKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Nic => "network interface",
            Self::Block => "block device",
        }
    }
}

/// How the node of a device was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeEvidence {
    /// hwloc placed the device under one node.
    Hwloc,
    /// The PCI function's `numa_node` attribute.
    SysfsNumaNode,
    /// The platform did not say, but the machine has one node only.
    SingleNode,
    /// Not known (a virtual device, or firmware that reports `-1` on a multi-node machine).
    Unknown,
}

/// Where a device sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceLocality {
    /// The interface or block device name.
    pub name: String,
    /// NIC or block device.
    pub kind: DeviceKind,
    /// PCI address of the function serving it (e.g. `0000:81:00.0`), when there is one.
    pub pci: Option<String>,
    /// The NUMA node, when known.
    pub node: Option<u32>,
    /// How `node` was established.
    pub evidence: NodeEvidence,
    /// The lower device the answer came from, for bonds, VLANs, dm and md devices.
    pub via: Option<String>,
    /// The PCI function's directory in sysfs (kernel path), used to find its interrupts.
    #[serde(skip)]
    pub(crate) pci_dir: Option<PathBuf>,
}

/// A device's sysfs facts before the node rule is applied.
struct Found {
    pci: Option<String>,
    pci_dir: Option<PathBuf>,
    numa_node: Option<u32>,
    via: Option<String>,
}

const MAX_STACK_DEPTH: usize = 4;

impl DeviceLocality {
    /// Locates `name` (an interface for [`DeviceKind::Nic`], a block device or partition for
    /// [`DeviceKind::Block`]) under `root`.
    ///
    /// ```
    /// use rtgt_affinity::{DeviceKind, DeviceLocality, SysRoot, Topology};
    ///
    /// let root = SysRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/two-socket"));
    /// let topo = Topology::from_sysfs(&root)?;
    /// let nic = DeviceLocality::locate(&root, &topo, DeviceKind::Nic, "ens1f0")?;
    /// assert_eq!(nic.node, Some(1));
    /// assert_eq!(nic.pci.as_deref(), Some("0000:81:00.0"));
    /// # Ok::<(), rtgt_affinity::AffinityError>(())
    /// ```
    pub fn locate(root: &SysRoot, topo: &Topology, kind: DeviceKind, name: &str) -> Result<Self> {
        let found = find(root, kind, name, 0)?;
        let (node, evidence) = match topo.hwloc_device_node(name) {
            Some(Some(n)) => (Some(n), NodeEvidence::Hwloc),
            _ => match (found.numa_node, topo.nodes()) {
                (Some(n), _) => (Some(n), NodeEvidence::SysfsNumaNode),
                (None, [only]) => (Some(only.id), NodeEvidence::SingleNode),
                (None, _) => (None, NodeEvidence::Unknown),
            },
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            pci: found.pci,
            node,
            evidence,
            via: found.via,
            pci_dir: found.pci_dir,
        })
    }

    /// The PCI function's sysfs directory as the kernel names it (`/sys/devices/...`).
    pub fn pci_sysfs_path(&self) -> Option<&Path> {
        self.pci_dir.as_deref()
    }
}

fn unknown(kind: DeviceKind, name: &str) -> AffinityError {
    AffinityError::UnknownDevice {
        kind: kind.noun(),
        name: name.to_owned(),
        looked_in: match kind {
            DeviceKind::Nic => "/sys/class/net".into(),
            DeviceKind::Block => "/sys/class/block and /sys/block".into(),
        },
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn find(root: &SysRoot, kind: DeviceKind, name: &str, depth: usize) -> Result<Found> {
    if !valid_name(name) {
        return Err(unknown(kind, name));
    }
    let class_dir = match kind {
        DeviceKind::Nic => root.join(&format!("/sys/class/net/{name}")),
        DeviceKind::Block => {
            let class = root.join(&format!("/sys/class/block/{name}"));
            if class.exists() {
                class
            } else {
                root.join(&format!("/sys/block/{name}"))
            }
        }
    };
    let Some(dir) = root.resolve(&class_dir) else {
        return Err(unknown(kind, name));
    };
    let start = match kind {
        DeviceKind::Nic => root.resolve(&dir.join("device")),
        DeviceKind::Block => Some(dir.clone()),
    };
    if let Some(start) = start {
        if let Some((pci_dir, numa_node)) = pci_ancestor(root, &start)? {
            let pci = pci_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned);
            return Ok(Found {
                pci,
                pci_dir: Some(root.display_path(&pci_dir)),
                numa_node,
                via: None,
            });
        }
    }
    // Stacked devices: ask the devices underneath.
    if depth < MAX_STACK_DEPTH {
        let lowers: Vec<String> = match kind {
            DeviceKind::Nic => root
                .list_dir(&dir)
                .into_iter()
                .filter_map(|n| n.strip_prefix("lower_").map(str::to_owned))
                .collect(),
            DeviceKind::Block => root.list_dir(&dir.join("slaves")),
        };
        for lower in lowers {
            if let Ok(found) = find(root, kind, &lower, depth + 1) {
                if found.pci.is_some() {
                    return Ok(Found {
                        via: Some(found.via.unwrap_or(lower)),
                        ..found
                    });
                }
            }
        }
    }
    Ok(Found {
        pci: None,
        pci_dir: None,
        numa_node: None,
        via: None,
    })
}

/// Whether a directory name is a PCI address: `DOMAIN:BB:DD.F` in hex (domain 4+ digits).
pub(crate) fn is_pci_address(name: &str) -> bool {
    let mut parts = name.split(':');
    let (Some(domain), Some(bus), Some(devfn), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    let hex = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    hex(domain, 4, 8) && hex(bus, 2, 2) && hex(dev, 2, 2) && hex(func, 1, 1)
}

/// The closest PCI function at or above `start` (inside the root) and its `numa_node`.
fn pci_ancestor(root: &SysRoot, start: &Path) -> Result<Option<(PathBuf, Option<u32>)>> {
    let devices = root.join("/sys/devices");
    let mut dir = Some(start);
    while let Some(d) = dir {
        if !d.starts_with(&devices) || d == devices {
            break;
        }
        let is_pci = d
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_pci_address);
        if is_pci {
            let node = match root.read_path_opt(&d.join("numa_node"))? {
                Some(text) => match text.parse::<i64>() {
                    Ok(n) if n >= 0 => u32::try_from(n).ok(),
                    Ok(_) => None,
                    Err(_) => {
                        return Err(AffinityError::parse(
                            root.display_path(&d.join("numa_node")),
                            "a node number",
                            &text,
                        ));
                    }
                },
                None => None,
            };
            return Ok(Some((d.to_path_buf(), node)));
        }
        dir = d.parent();
    }
    Ok(None)
}

/// Network interfaces under the root that sit on a bus device (physical NICs and their
/// virtual functions), sorted.
pub fn list_nics(root: &SysRoot) -> Vec<String> {
    root.list_dir(&root.join("/sys/class/net"))
        .into_iter()
        .filter(|n| root.join(&format!("/sys/class/net/{n}/device")).exists())
        .collect()
}

/// Whole block devices under the root that sit on a bus device (disks, RAID volumes, NVMe
/// namespaces; not loop, RAM or device-mapper devices), sorted.
pub fn list_block_devices(root: &SysRoot) -> Vec<String> {
    root.list_dir(&root.join("/sys/block"))
        .into_iter()
        .filter(|n| root.join(&format!("/sys/block/{n}/device")).exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:81:00.0"));
        assert!(is_pci_address("10000:e1:00.7"));
        assert!(!is_pci_address("pci0000:00"));
        assert!(!is_pci_address("virtio2"));
        assert!(!is_pci_address("0000:81:00"));
        assert!(!is_pci_address("0000:81:00.0:1"));
        assert!(!is_pci_address("0:2:0:0"));
    }

    #[test]
    fn names_that_could_escape_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        for bad in ["", ".", "..", "../etc", "a/b"] {
            let err = find(&root, DeviceKind::Nic, bad, 0).err().unwrap();
            assert!(
                matches!(err, AffinityError::UnknownDevice { .. }),
                "{bad:?}"
            );
        }
    }
}
