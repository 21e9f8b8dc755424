//! Topology and device locality read from the 2-socket fixture.

mod common;

use common::fixture;
use rtgt_affinity::{
    AffinityError, DeviceKind, DeviceLocality, NodeEvidence, Topology, TopologyOptions,
    TopologySource, list_block_devices, list_nics, topology_command,
};

#[test]
fn nodes_cores_and_siblings() {
    let topo = Topology::from_sysfs(&fixture()).unwrap();
    assert_eq!(topo.source(), TopologySource::Sysfs);
    assert_eq!(topo.online().to_string(), "0-31");
    let nodes: Vec<(u32, String, Option<u64>)> = topo
        .nodes()
        .iter()
        .map(|n| (n.id, n.cpus.to_string(), n.memory_kib))
        .collect();
    assert_eq!(
        nodes,
        [
            (0, "0-7,16-23".to_owned(), Some(131_879_260)),
            (1, "8-15,24-31".to_owned(), Some(132_103_488))
        ]
    );
    for cpu in topo.cpus() {
        let c = cpu.id % 16;
        assert_eq!(cpu.package, c / 8, "cpu {}", cpu.id);
        assert_eq!(cpu.core_id, c % 8, "cpu {}", cpu.id);
        assert_eq!(cpu.node, c / 8, "cpu {}", cpu.id);
        assert_eq!(cpu.siblings.to_vec(), vec![c, c + 16], "cpu {}", cpu.id);
    }
    let cores = topo.cores();
    assert_eq!(cores.len(), 16);
    assert_eq!(cores[9].threads.to_string(), "9,25");
    assert_eq!(cores[9].node, 1);
    assert_eq!(cores[9].package, 1);
    assert_eq!(topo.cores_in(&topo.node(1).unwrap().cpus).len(), 8);
}

#[test]
fn detect_on_a_fixture_reads_sysfs() {
    // hwloc describes the running machine, never a fixture tree.
    let topo = Topology::detect(&fixture()).unwrap();
    assert_eq!(topo.source(), TopologySource::Sysfs);
    assert_eq!(topo.fallback_reason(), None);
}

fn locate(kind: DeviceKind, name: &str) -> Result<DeviceLocality, AffinityError> {
    let root = fixture();
    let topo = Topology::from_sysfs(&root).unwrap();
    DeviceLocality::locate(&root, &topo, kind, name)
}

#[test]
fn nic_ports_sit_on_node_1() {
    for (port, pci) in [("ens1f0", "0000:81:00.0"), ("ens1f1", "0000:81:00.1")] {
        let d = locate(DeviceKind::Nic, port).unwrap();
        assert_eq!(d.node, Some(1));
        assert_eq!(d.pci.as_deref(), Some(pci));
        assert_eq!(d.evidence, NodeEvidence::SysfsNumaNode);
        assert_eq!(d.via, None);
        assert_eq!(
            d.pci_sysfs_path().unwrap().to_str().unwrap(),
            format!("/sys/devices/pci0000:80/0000:80:02.0/{pci}")
        );
    }
}

#[test]
fn raid_disk_and_partition_sit_on_node_0() {
    for name in ["sda", "sda1"] {
        let d = locate(DeviceKind::Block, name).unwrap();
        assert_eq!(d.node, Some(0), "{name}");
        assert_eq!(d.pci.as_deref(), Some("0000:02:00.0"), "{name}");
        assert_eq!(d.via, None);
    }
}

#[test]
fn stacked_devices_follow_their_lower_devices() {
    let bond = locate(DeviceKind::Nic, "bond0").unwrap();
    assert_eq!(bond.node, Some(1));
    assert_eq!(bond.pci.as_deref(), Some("0000:81:00.0"));
    assert_eq!(bond.via.as_deref(), Some("ens1f0"));
    let dm = locate(DeviceKind::Block, "dm-0").unwrap();
    assert_eq!(dm.node, Some(0));
    assert_eq!(dm.via.as_deref(), Some("sda1"));
}

#[test]
fn virtual_and_missing_devices() {
    let lo = locate(DeviceKind::Nic, "lo").unwrap();
    assert_eq!(lo.node, None);
    assert_eq!(lo.evidence, NodeEvidence::Unknown);
    assert_eq!(lo.pci, None);
    let err = locate(DeviceKind::Nic, "eth9").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no network interface named \"eth9\" (looked in /sys/class/net)"
    );
    let err = locate(DeviceKind::Block, "nvme0n1").unwrap_err();
    assert!(matches!(
        err,
        AffinityError::UnknownDevice {
            kind: "block device",
            ..
        }
    ));
}

#[test]
fn physical_device_lists() {
    let root = fixture();
    assert_eq!(list_nics(&root), ["ens1f0", "ens1f1"]);
    assert_eq!(list_block_devices(&root), ["sda"]);
}

#[test]
fn topology_command_text_and_json() {
    let mut out = Vec::new();
    topology_command(
        &common::fixture_path(),
        &TopologyOptions { json: false },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let expected = "\
topology (source: sysfs)
NUMA node 0: 8 cores, 16 threads, CPUs 0-7,16-23, 125.8 GiB
  cores (threads): 0,16  1,17  2,18  3,19  4,20  5,21  6,22  7,23
NUMA node 1: 8 cores, 16 threads, CPUs 8-15,24-31, 126.0 GiB
  cores (threads): 8,24  9,25  10,26  11,27  12,28  13,29  14,30  15,31
NICs:
  ens1f0       node 1        PCI 0000:81:00.0   (sysfs numa_node)
  ens1f1       node 1        PCI 0000:81:00.1   (sysfs numa_node)
block devices:
  sda          node 0        PCI 0000:02:00.0   (sysfs numa_node)
";
    assert_eq!(text, expected);

    let mut out = Vec::new();
    topology_command(
        &common::fixture_path(),
        &TopologyOptions { json: true },
        &mut out,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema"], "rtgt-topology/1");
    assert_eq!(v["source"], "sysfs");
    assert_eq!(v["nodes"][1]["cpus"], "8-15,24-31");
    assert_eq!(v["nodes"][1]["cores"][0], "8,24");
    assert_eq!(v["nics"][0]["name"], "ens1f0");
    assert_eq!(v["nics"][0]["node"], 1);
    assert_eq!(v["nics"][0]["evidence"], "sysfs-numa-node");
    assert_eq!(v["block_devices"][0]["kind"], "block");
}

#[test]
fn missing_root_is_an_error_naming_the_file() {
    let err = Topology::from_sysfs(&rtgt_affinity::SysRoot::new("/nonexistent-root")).unwrap_err();
    assert!(err.to_string().contains("/sys/devices/system/cpu"), "{err}");
}
