//! Reactor placement plans on the 2-socket fixture, asserted exactly.

mod common;

use common::fixture;
use rtgt_affinity::{
    AffinityError, CpuSet, IrqPolicy, PerformanceConfig, PlacementPlan, Topology, plan_placement,
};

fn plan(
    cfg: &PerformanceConfig,
    nics: &[&str],
    devices: &[&str],
) -> Result<PlacementPlan, AffinityError> {
    let root = fixture();
    let topo = Topology::from_sysfs(&root).unwrap();
    plan_placement(&root, &topo, cfg, nics, devices)
}

fn cfg() -> PerformanceConfig {
    PerformanceConfig::default()
}

#[test]
fn default_separate_policy_on_the_nic_node() {
    let p = plan(&cfg(), &["ens1f0"], &["sda"]).unwrap();
    assert_eq!(p.node, Some(1));
    assert_eq!(p.policy, IrqPolicy::Separate);
    assert_eq!(p.reactor_cpus(), [12, 13, 14, 15]);
    assert_eq!(p.irq_cpus, [8, 9, 10, 11, 24, 25, 26, 27]);
    assert_eq!(p.reactor_nodes(), [1]);
    assert_eq!(p.reactors[3].index, 3);
    assert_eq!(
        p.explanation,
        "NIC ens1f0 on NUMA node 1 (per its PCI numa_node). Node 1 has 8 core(s), 16 thread(s): \
         CPUs 8-15,24-31. irq_policy = separate: interrupts on CPUs 8-11,24-27 (4 core(s)); \
         4 reactor(s) (half the cores) on CPUs 12-15, one per core, away from the interrupt cores."
    );
}

#[test]
fn shared_policy_puts_a_reactor_on_every_core() {
    let c = PerformanceConfig {
        irq_policy: IrqPolicy::Shared,
        ..cfg()
    };
    let p = plan(&c, &["ens1f0", "ens1f1"], &[]).unwrap();
    assert_eq!(p.reactor_cpus(), [8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(p.irq_cpus, p.reactor_cpus());
    assert!(
        p.explanation
            .starts_with("NIC ens1f0, ens1f1 on NUMA node 1"),
        "{}",
        p.explanation
    );
    assert!(p.explanation.ends_with(
        "8 reactor(s) (one per core); irq_policy = shared: one interrupt vector per reactor CPU, \
         so completions are handled where the reactor runs."
    ), "{}", p.explanation);
}

#[test]
fn explicit_reactor_counts() {
    let c = PerformanceConfig {
        reactors: Some(6),
        ..cfg()
    };
    let p = plan(&c, &["ens1f0"], &[]).unwrap();
    assert_eq!(p.irq_cpus, [8, 9, 24, 25]);
    assert_eq!(p.reactor_cpus(), [10, 11, 12, 13, 14, 15]);

    // More reactors than free cores: one interrupt core is kept, siblings are used.
    let c = PerformanceConfig {
        reactors: Some(10),
        ..cfg()
    };
    let p = plan(&c, &["ens1f0"], &[]).unwrap();
    assert_eq!(p.irq_cpus, [8, 24]);
    assert_eq!(p.reactor_cpus(), [9, 10, 11, 12, 13, 14, 15, 25, 26, 27]);
    assert!(
        p.explanation.ends_with(
            "hyperthread siblings used because there are more reactors than free cores."
        )
    );

    let c = PerformanceConfig {
        reactors: Some(15),
        ..cfg()
    };
    let err = plan(&c, &["ens1f0"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "performance.reactors: 15 reactors need 15 CPUs but the part of the candidate set \
         left after the interrupt core has only 14"
    );

    let c = PerformanceConfig {
        reactors: Some(17),
        irq_policy: IrqPolicy::Shared,
        ..cfg()
    };
    let err = plan(&c, &["ens1f0"], &[]).unwrap_err();
    assert!(matches!(err, AffinityError::Config(ref e) if e.key == "performance.reactors"));
}

#[test]
fn configured_node_overrides_the_nic_and_says_so() {
    let c = PerformanceConfig {
        numa_node: Some(0),
        ..cfg()
    };
    let p = plan(&c, &["ens1f0"], &[]).unwrap();
    assert_eq!(p.node, Some(0));
    assert_eq!(p.irq_cpus, [0, 1, 2, 3, 16, 17, 18, 19]);
    assert_eq!(p.reactor_cpus(), [4, 5, 6, 7]);
    assert!(p.explanation.starts_with(
        "numa_node = 0 is set in [performance]. Warning: ens1f0 (node 1) sit(s) on another node; \
         their traffic crosses the socket interconnect."
    ), "{}", p.explanation);
}

#[test]
fn configured_cpus_are_used_as_given() {
    let c = PerformanceConfig {
        cpus: Some("8-11".parse().unwrap()),
        ..cfg()
    };
    let p = plan(&c, &["ens1f0"], &[]).unwrap();
    assert_eq!(p.irq_cpus, [8, 9]);
    assert_eq!(p.reactor_cpus(), [10, 11]);
    assert!(p.explanation.contains("Candidate CPUs 8-11 are set in [performance]. The candidate set has 4 core(s), 4 thread(s)"), "{}", p.explanation);

    let c = PerformanceConfig {
        cpus: Some("6-9".parse().unwrap()),
        ..cfg()
    };
    let p = plan(&c, &["ens1f0"], &[]).unwrap();
    assert!(
        p.explanation.contains("(CPUs 6-7 are not on node 1)"),
        "{}",
        p.explanation
    );
    assert_eq!(p.reactors[0].node, 1);
    assert_eq!(p.irq_cpus, [6, 7]);
}

#[test]
fn without_nics_the_backing_device_decides() {
    let p = plan(&cfg(), &[], &["sda"]).unwrap();
    assert_eq!(p.node, Some(0));
    assert_eq!(p.reactor_cpus(), [4, 5, 6, 7]);
    assert!(
        p.explanation.starts_with(
            "No portal NIC given; backing device sda on NUMA node 0 (per its PCI numa_node)."
        ),
        "{}",
        p.explanation
    );
    // A virtual NIC gives no locality; the device still decides.
    let p = plan(&cfg(), &["lo"], &["dm-0"]).unwrap();
    assert_eq!(p.node, Some(0));
    assert!(
        p.explanation
            .starts_with("The NICs' node is unknown; backing device dm-0")
    );
}

#[test]
fn without_any_locality_all_nodes_are_used() {
    let p = plan(&cfg(), &[], &[]).unwrap();
    assert_eq!(p.node, None);
    assert_eq!(p.irq_cpus, (0..8).chain(16..24).collect::<Vec<u32>>());
    assert_eq!(p.reactor_cpus(), (8..16).collect::<Vec<u32>>());
    assert!(
        p.explanation
            .starts_with("No NIC or device locality is known; using the CPUs of all nodes.")
    );
}

#[test]
fn bad_config_and_devices_are_errors() {
    let c = PerformanceConfig {
        cpus: Some("30-40".parse().unwrap()),
        ..cfg()
    };
    assert_eq!(
        plan(&c, &["ens1f0"], &[]).unwrap_err().to_string(),
        "performance.cpus: CPUs 32-40 are not online (online: 0-31)"
    );
    let c = PerformanceConfig {
        numa_node: Some(5),
        ..cfg()
    };
    assert_eq!(
        plan(&c, &[], &[]).unwrap_err().to_string(),
        "performance.numa_node: node 5 does not exist (nodes: 0-1)"
    );
    assert!(matches!(
        plan(&cfg(), &["eth7"], &[]).unwrap_err(),
        AffinityError::UnknownDevice { .. }
    ));
    let topo = Topology::from_sysfs(&fixture()).unwrap();
    let ok = PerformanceConfig {
        cpus: Some(CpuSet::parse("0-31").unwrap()),
        ..cfg()
    };
    assert!(ok.validate_for(&topo).is_ok());
}
