//! Interrupt discovery, planning and applying on the 2-socket fixture.

mod common;

use common::{fixture, fixture_copy, fixture_path};
use rtgt_affinity::{
    AffinityError, CpuLoad, CpuSet, InterruptTable, IrqAction, IrqDiscovery, IrqOptions, IrqPlan,
    IrqTarget, SysRoot, Topology, apply_plan, irq_command, irqbalance_pids, plan_irqs,
};

const IRQBALANCE_WARNING: &str = "irqbalance is running (pid 812): it rewrites interrupt affinity every few seconds and will undo this plan; stop and disable it, or ban these IRQs from it (--banirq / IRQBALANCE_BANNED_CPULIST)";

fn plan_on(
    root: &SysRoot,
    target: &IrqTarget,
    cpus: Option<&str>,
) -> Result<IrqPlan, AffinityError> {
    let topo = Topology::from_sysfs(root).unwrap();
    let table = InterruptTable::read(root).unwrap();
    let cpus: Option<CpuSet> = cpus.map(|c| c.parse().unwrap());
    plan_irqs(
        root,
        &topo,
        &table,
        target,
        cpus.as_ref(),
        &irqbalance_pids(root),
    )
}

fn plan(target: &IrqTarget, cpus: Option<&str>) -> Result<IrqPlan, AffinityError> {
    plan_on(&fixture(), target, cpus)
}

fn pairs(p: &IrqPlan) -> Vec<(u32, u32)> {
    p.assignments.iter().map(|a| (a.irq, a.cpu)).collect()
}

fn load(cpu: u32, node: u32, cv: usize, ci: u64, pv: usize, pi: u64) -> CpuLoad {
    CpuLoad {
        cpu,
        node: Some(node),
        current_vectors: cv,
        current_interrupts: ci,
        planned_vectors: pv,
        planned_interrupts: pi,
    }
}

#[test]
fn irqbalance_is_detected() {
    assert_eq!(irqbalance_pids(&fixture()), [812]);
}

#[test]
fn skewed_nic_vectors_spread_over_its_node() {
    let p = plan(&IrqTarget::Nic("ens1f0".into()), None).unwrap();
    assert_eq!(p.source.pci.as_deref(), Some("0000:81:00.0"));
    assert_eq!(p.source.node, Some(1));
    assert_eq!(p.source.discovery, IrqDiscovery::MsiIrqs);
    assert_eq!(p.source.irqs, (100..=108).collect::<Vec<u32>>());
    assert_eq!(
        p.cpus,
        [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]
    );
    assert_eq!(
        pairs(&p),
        [
            (100, 8),
            (101, 9),
            (102, 10),
            (103, 11),
            (104, 12),
            (105, 13),
            (106, 14),
            (107, 15),
            (108, 24)
        ]
    );
    let first = &p.assignments[0];
    assert_eq!(first.name, "ens1f0");
    assert_eq!(first.current.as_ref().unwrap().to_string(), "0-31");
    assert_eq!(first.effective.as_ref().unwrap().to_string(), "0");
    assert_eq!(first.interrupts, 12);
    assert_eq!(p.assignments[8].name, "ens1f0-TxRx-7");
    assert_eq!(p.assignments[8].interrupts, 1_007_000);

    let mut expected = vec![load(0, 0, 9, 8_028_012, 0, 0), load(8, 1, 0, 0, 1, 12)];
    for k in 0..7u32 {
        expected.push(load(9 + k, 1, 0, 0, 1, 1_000_000 + 1000 * u64::from(k)));
    }
    expected.push(load(24, 1, 0, 0, 1, 1_007_000));
    assert_eq!(p.per_cpu, expected);
    assert_eq!(p.warnings, [IRQBALANCE_WARNING]);
}

/// Regression: counters near `u64::MAX` in a corrupt /proc/interrupts overflowed the sums
/// (a panic in debug builds) instead of saturating.
#[test]
fn huge_interrupt_counts_saturate_instead_of_overflowing() {
    let (dir, root) = fixture_copy();
    let path = dir.path().join("proc/interrupts");
    let text = std::fs::read_to_string(&path).unwrap();
    let max = u64::MAX.to_string();
    let text: String = text
        .lines()
        .map(|l| {
            let label = l.split(':').next().unwrap_or("").trim();
            if label == "101" || label == "102" {
                l.replacen("1000000 ", &format!("{max} "), 1)
                    .replacen("1001000 ", &format!("{max} "), 1)
                    .replacen("         0 ", &format!(" {max} "), 1)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let p = plan_on(&root, &IrqTarget::Nic("ens1f0".into()), Some("9")).unwrap();
    let a = p.assignments.iter().find(|a| a.irq == 101).unwrap();
    assert_eq!(a.interrupts, u64::MAX);
    let cpu0 = p.per_cpu.iter().find(|r| r.cpu == 0).unwrap();
    assert_eq!(cpu0.current_interrupts, u64::MAX);
    // Every vector lands on CPU 9: the planned sum saturates too.
    let cpu9 = p.per_cpu.iter().find(|r| r.cpu == 9).unwrap();
    assert_eq!(cpu9.planned_vectors, 9);
    assert_eq!(cpu9.planned_interrupts, u64::MAX);
}

#[test]
fn raid_vectors_over_a_short_list_double_up() {
    let p = plan(&IrqTarget::Device("sda".into()), Some("0-3")).unwrap();
    assert_eq!(p.source.pci.as_deref(), Some("0000:02:00.0"));
    assert_eq!(p.source.node, Some(0));
    assert_eq!(
        pairs(&p),
        [
            (60, 0),
            (61, 1),
            (62, 2),
            (63, 3),
            (64, 0),
            (65, 1),
            (66, 2),
            (67, 3)
        ]
    );
    assert_eq!(
        p.per_cpu,
        [
            load(0, 0, 8, 160_028, 2, 40_004),
            load(1, 0, 0, 0, 2, 40_006),
            load(2, 0, 0, 0, 2, 40_008),
            load(3, 0, 0, 0, 2, 40_010),
        ]
    );
    assert_eq!(
        p.warnings,
        [
            IRQBALANCE_WARNING,
            "8 vectors over 4 CPUs: CPU(s) 0-3 take more than one"
        ]
    );
}

#[test]
fn same_controller_by_partition_pci_address_or_dm_device() {
    let by_disk = plan(&IrqTarget::Device("sda".into()), None).unwrap();
    assert_eq!(by_disk.cpus[..8], [0, 1, 2, 3, 4, 5, 6, 7]);
    for name in ["sda1", "0000:02:00.0", "dm-0"] {
        let p = plan(&IrqTarget::Device(name.into()), None).unwrap();
        assert_eq!(pairs(&p), pairs(&by_disk), "{name}");
        assert_eq!(p.source.node, Some(0), "{name}");
    }
}

#[test]
fn off_node_cpus_are_warned_about() {
    let p = plan(&IrqTarget::Nic("ens1f1".into()), Some("0-8")).unwrap();
    assert_eq!(p.source.irqs, (110..=118).collect::<Vec<u32>>());
    assert_eq!(pairs(&p).last(), Some(&(118, 8)));
    assert_eq!(
        p.warnings[1],
        "CPUs 0-7 are not on node 1, where ens1f1 sits: their interrupts cross the socket interconnect"
    );
}

#[test]
fn errors() {
    let err = plan(&IrqTarget::Nic("ens1f0".into()), Some("30-33")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CPU 32 is not online on this machine (online: 0-31)"
    );
    let err = plan(&IrqTarget::Nic("lo".into()), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no interrupts found for lo: no msi_irqs directory, no legacy irq and no matching name in /proc/interrupts"
    );
    let err = plan(&IrqTarget::Nic("eth9".into()), None).unwrap_err();
    assert!(matches!(err, AffinityError::UnknownDevice { .. }));
    let err = plan(&IrqTarget::Device("0000:99:00.0".into()), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no PCI device named \"0000:99:00.0\" (looked in /sys/bus/pci/devices)"
    );
    let err = irq_command(&fixture_path(), &IrqOptions::default(), &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "irq needs a device: --nic IF or --device DEV"
    );
}

#[test]
fn vectors_found_by_name_without_msi_irqs() {
    let (_dir, root) = fixture_copy();
    std::fs::remove_dir_all(
        root.join("/sys/devices/pci0000:80/0000:80:02.0/0000:81:00.1/msi_irqs"),
    )
    .unwrap();
    let p = plan_on(&root, &IrqTarget::Nic("ens1f1".into()), None).unwrap();
    assert_eq!(p.source.discovery, IrqDiscovery::InterruptNames);
    assert_eq!(p.source.irqs, (110..=118).collect::<Vec<u32>>());
    assert_eq!(
        p.warnings.last().unwrap(),
        "vectors matched by name in /proc/interrupts (no msi_irqs directory): check the list"
    );
}

#[test]
fn legacy_irq_line_is_the_last_resort() {
    let (_dir, root) = fixture_copy();
    std::fs::remove_dir_all(
        root.join("/sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/msi_irqs"),
    )
    .unwrap();
    let interrupts = root.join("/proc/interrupts");
    let text = std::fs::read_to_string(&interrupts).unwrap();
    let kept: String =
        text.lines()
            .filter(|l| !l.contains("megasas"))
            .fold(String::new(), |mut acc, l| {
                acc.push_str(l);
                acc.push('\n');
                acc
            });
    std::fs::write(&interrupts, kept).unwrap();
    let p = plan_on(&root, &IrqTarget::Device("sda".into()), None).unwrap();
    assert_eq!(p.source.discovery, IrqDiscovery::LegacyIrq);
    assert_eq!(pairs(&p), [(34, 0)]);
    assert_eq!(p.assignments[0].interrupts, 0);
    assert_eq!(p.assignments[0].current, None);
}

#[test]
fn apply_writes_one_cpu_per_vector() {
    let (dir, root) = fixture_copy();
    let p = plan_on(&root, &IrqTarget::Nic("ens1f0".into()), None).unwrap();
    // One vector's /proc entry vanished (device removed meanwhile): reported, others written.
    std::fs::remove_dir_all(root.join("/proc/irq/105")).unwrap();
    let outcomes = apply_plan(&root, &p);
    assert_eq!(outcomes.len(), 9);
    for o in &outcomes {
        if o.irq == 105 {
            let e = o.error.as_deref().unwrap();
            assert!(e.starts_with("/proc/irq/105/smp_affinity_list: "), "{e}");
        } else {
            assert_eq!(o.error, None, "irq {}", o.irq);
            let written = std::fs::read_to_string(
                root.join(&format!("/proc/irq/{}/smp_affinity_list", o.irq)),
            )
            .unwrap();
            assert_eq!(written, format!("{}\n", o.cpu));
        }
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proc/irq/108/smp_affinity_list")).unwrap(),
        "24\n"
    );
}

#[test]
fn irq_command_plan_is_dry_and_apply_reports() {
    let (dir, _root) = fixture_copy();
    let mut opts = IrqOptions {
        action: IrqAction::Plan,
        targets: vec![
            IrqTarget::Nic("ens1f0".into()),
            IrqTarget::Device("sda".into()),
        ],
        cpus: None,
        json: false,
    };
    let mut out = Vec::new();
    let report = irq_command(dir.path(), &opts, &mut out).unwrap();
    assert_eq!(report.plans.len(), 2);
    assert!(report.applied.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proc/irq/100/smp_affinity_list")).unwrap(),
        "0-31\n"
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(
        "ens1f0 (NIC, PCI 0000:81:00.0, NUMA node 1): 9 vector(s) found via msi_irqs; CPUs 8,9,10,11,12,13,14,15,24,25,26,27,28,29,30,31\n"
    ), "{text}");
    assert!(
        text.contains(
            "\n    101  ens1f0-TxRx-0                    0-31            0        1000000  9\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n      0     0        9 -> 0               8028012 -> 0             \n"),
        "{text}"
    );
    assert!(text.ends_with(
        "dry run: nothing written (use `irq apply` to write /proc/irq/N/smp_affinity_list)\n"
    ));

    opts.action = IrqAction::Apply;
    opts.json = true;
    let mut out = Vec::new();
    let report = irq_command(dir.path(), &opts, &mut out).unwrap();
    assert_eq!(report.applied.len(), 17);
    assert_eq!(report.failures(), 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proc/irq/100/smp_affinity_list")).unwrap(),
        "8\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proc/irq/67/smp_affinity_list")).unwrap(),
        "7\n"
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema"], "rtgt-irq/1");
    assert_eq!(v["action"], "apply");
    assert_eq!(v["irqbalance_pids"][0], 812);
    assert_eq!(v["plans"][0]["source"]["target"]["kind"], "nic");
    assert_eq!(v["plans"][0]["source"]["target"]["name"], "ens1f0");
    assert_eq!(v["plans"][0]["source"]["discovery"], "msi-irqs");
    assert_eq!(v["plans"][0]["assignments"][0]["cpu"], 8);
    assert_eq!(v["plans"][0]["assignments"][0]["current"], "0-31");
    assert_eq!(v["plans"][1]["per_cpu"][0]["current_interrupts"], 160_028);
    assert_eq!(v["applied"][0]["error"], serde_json::Value::Null);
}
