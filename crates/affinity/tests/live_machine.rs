//! Tests against the machine the tests run on. Values differ between machines, so these
//! assert invariants: both topology sources agree, plans stay within the machine, buffers
//! are node-local and never handed out twice, pinning sticks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtgt_affinity::{
    DeviceKind, DeviceLocality, DoctorReport, HugePages, InterruptTable, IrqPolicy, IrqTarget,
    NodePool, PerformanceConfig, PoolConfig, Profile, SysRoot, Topology, current_thread_affinity,
    list_block_devices, list_nics, node_of_address, pin_current_thread_to_cpu,
    pin_current_thread_to_node, plan_irqs, plan_placement,
};

fn live() -> (SysRoot, Topology) {
    let root = SysRoot::live();
    let topo = Topology::from_sysfs(&root).expect("sysfs topology of this machine");
    (root, topo)
}

#[test]
fn sysfs_topology_is_consistent() {
    let (_, topo) = live();
    assert!(!topo.cpus().is_empty());
    let mut seen = rtgt_affinity::CpuSet::new();
    for node in topo.nodes() {
        for cpu in node.cpus.iter() {
            assert!(seen.insert(cpu), "CPU {cpu} on two nodes");
            assert_eq!(topo.node_of_cpu(cpu), Some(node.id));
        }
    }
    assert_eq!(seen, topo.online());
    for cpu in topo.cpus() {
        assert!(cpu.siblings.contains(cpu.id));
        for s in cpu.siblings.iter() {
            let sib = topo.cpu(s).unwrap();
            assert_eq!(sib.siblings, cpu.siblings);
            assert_eq!(sib.node, cpu.node);
            assert_eq!(sib.package, cpu.package);
        }
    }
    let threads: usize = topo.cores().iter().map(|c| c.threads.len()).sum();
    assert_eq!(threads, topo.cpus().len());
}

#[test]
fn physical_devices_sit_on_existing_nodes() {
    let (root, topo) = live();
    for (kind, names) in [
        (DeviceKind::Nic, list_nics(&root)),
        (DeviceKind::Block, list_block_devices(&root)),
    ] {
        for name in names {
            let d = DeviceLocality::locate(&root, &topo, kind, &name).unwrap();
            if let Some(n) = d.node {
                assert!(topo.node(n).is_some(), "{name} on missing node {n}");
            }
            if topo.nodes().len() == 1 {
                assert_eq!(d.node, Some(topo.nodes()[0].id), "{name}");
            }
        }
    }
}

#[cfg(feature = "hwloc")]
#[test]
fn hwloc_and_sysfs_agree() {
    let (root, sysfs) = live();
    let hw = match Topology::from_hwloc() {
        Ok(t) => t,
        Err(e) => {
            println!("skipping the hwloc comparison: hwloc could not build the topology: {e}");
            return;
        }
    };
    assert_eq!(hw.layout_differences(&sysfs), Vec::<String>::new());
    for (kind, names) in [
        (DeviceKind::Nic, list_nics(&root)),
        (DeviceKind::Block, list_block_devices(&root)),
    ] {
        for name in names {
            let a = DeviceLocality::locate(&root, &sysfs, kind, &name).unwrap();
            let b = DeviceLocality::locate(&root, &hw, kind, &name).unwrap();
            assert_eq!(
                a.node, b.node,
                "{kind:?} {name}: sysfs {a:?} vs hwloc {b:?}"
            );
            assert_eq!(a.pci, b.pci);
        }
    }
    let detected = Topology::detect(&root).unwrap();
    assert_eq!(detected.source(), rtgt_affinity::TopologySource::Hwloc);
}

#[test]
fn placement_stays_on_the_machine() {
    let (root, topo) = live();
    let nics = list_nics(&root);
    let nic_refs: Vec<&str> = nics.iter().map(String::as_str).collect();
    for policy in [IrqPolicy::Separate, IrqPolicy::Shared] {
        let cfg = PerformanceConfig {
            irq_policy: policy,
            ..PerformanceConfig::default()
        };
        let plan = plan_placement(&root, &topo, &cfg, &nic_refs, &[]).unwrap();
        let online = topo.online();
        assert!(!plan.reactors.is_empty());
        assert!(plan.reactor_cpus().iter().all(|&c| online.contains(c)));
        assert!(plan.irq_cpus.iter().all(|&c| online.contains(c)));
        let mut unique = plan.reactor_cpus();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), plan.reactors.len(), "a CPU got two reactors");
        if policy == IrqPolicy::Separate && topo.cores().len() >= 2 {
            assert!(
                plan.reactor_cpus()
                    .iter()
                    .all(|c| !plan.irq_cpus.contains(c)),
                "{plan:?}"
            );
        }
        assert!(!plan.explanation.is_empty());
        println!("{policy}: {}", plan.explanation);
    }
}

#[test]
fn pin_to_every_planned_reactor_cpu() {
    let (root, topo) = live();
    let cfg = PerformanceConfig {
        irq_policy: IrqPolicy::Shared,
        ..PerformanceConfig::default()
    };
    let plan = plan_placement(&root, &topo, &cfg, &[], &[]).unwrap();
    let allowed = current_thread_affinity().unwrap();
    std::thread::spawn(move || {
        for cpu in plan
            .reactor_cpus()
            .into_iter()
            .filter(|&c| allowed.contains(c))
        {
            pin_current_thread_to_cpu(cpu).unwrap();
            assert_eq!(current_thread_affinity().unwrap().to_vec(), [cpu]);
        }
        let node = topo.nodes()[0].id;
        let set = pin_current_thread_to_node(&topo, node).unwrap();
        assert_eq!(current_thread_affinity().unwrap(), set);
        assert!(pin_current_thread_to_node(&topo, 999).is_err());
    })
    .join()
    .unwrap();
}

fn small_pool(node: Option<u32>, count: u32) -> NodePool {
    NodePool::new(&PoolConfig {
        node,
        buffer_size: 16 * 1024,
        buffer_count: count,
        huge_pages: HugePages::Auto,
        prefault: true,
    })
    .unwrap()
}

#[test]
fn pool_buffers_live_on_the_requested_node() {
    let (_, topo) = live();
    for node in topo.nodes().iter().map(|n| n.id) {
        let pool = small_pool(Some(node), 64);
        if pool.node().is_none() {
            println!("skipping node check: kernel cannot bind memory (no NUMA support)");
            return;
        }
        assert_eq!(pool.node(), Some(node));
        let cache = pool.cache(64);
        let bufs: Vec<_> = (0..64).map(|_| cache.get().unwrap()).collect();
        for b in &bufs {
            assert_eq!(
                node_of_address(&b[0]).unwrap(),
                Some(node),
                "buffer {}",
                b.index()
            );
            // The last page of the buffer too.
            assert_eq!(node_of_address(&b[b.len() - 1]).unwrap(), Some(node));
        }
    }
}

#[test]
fn huge_pages_on_requires_reserved_pages() {
    let free: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let result = NodePool::new(&PoolConfig {
        node: None,
        buffer_size: 1 << 20,
        buffer_count: 4,
        huge_pages: HugePages::On,
        prefault: true,
    });
    if free >= 2 {
        assert_eq!(result.unwrap().backing(), rtgt_affinity::Backing::HugeTlb);
    } else {
        let err = result.unwrap_err();
        assert!(
            matches!(err, rtgt_affinity::AffinityError::HugePagesUnavailable(_)),
            "{err}"
        );
    }
    // Auto never fails for lack of huge pages.
    let pool = small_pool(None, 4);
    assert!(pool.stats().free_shared == 4);
}

/// Many threads, each with its own cache, hammer one small pool: a buffer is never owned
/// by two holders at once and its contents are never disturbed while held.
#[test]
fn pool_never_hands_out_a_buffer_twice() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 4000;
    const COUNT: u32 = 48;
    let pool = small_pool(Some(0), COUNT);
    let owned: Arc<Vec<AtomicBool>> =
        Arc::new((0..COUNT).map(|_| AtomicBool::new(false)).collect());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let owned = Arc::clone(&owned);
            std::thread::spawn(move || {
                let cache = pool.cache(8);
                let tag = t as u8 + 1;
                let mut held = Vec::new();
                let mut exhausted = 0u32;
                for round in 0..ROUNDS {
                    let want = 1 + (round * 7 + t) % 6;
                    for _ in 0..want {
                        match cache.get() {
                            Some(mut b) => {
                                let was = owned[b.index() as usize].swap(true, Ordering::AcqRel);
                                assert!(!was, "buffer {} handed out twice", b.index());
                                b.fill(tag);
                                held.push(b);
                            }
                            None => exhausted += 1,
                        }
                    }
                    std::thread::yield_now();
                    for b in held.drain(..) {
                        assert!(
                            b.iter().all(|&x| x == tag),
                            "buffer {} written by another holder",
                            b.index()
                        );
                        owned[b.index() as usize].store(false, Ordering::Release);
                        drop(b);
                    }
                }
                (cache.stats(), exhausted)
            })
        })
        .collect();
    let mut gets = 0;
    for h in handles {
        let (stats, exhausted) = h.join().unwrap();
        assert_eq!(stats.in_use, 0);
        assert_eq!(stats.exhausted, u64::from(exhausted));
        assert!(stats.high_water <= 6);
        gets += stats.hits + stats.misses;
    }
    let s = pool.stats();
    assert_eq!(s.hits + s.misses, gets);
    assert_eq!(s.in_use, 0);
    assert!(s.high_water <= COUNT as usize);
    assert!(s.hits > s.misses, "caches should serve most gets: {s:?}");
    // Every buffer is back: the shared queue plus nothing held (caches were dropped).
    assert_eq!(s.free_shared, COUNT as usize);
}

#[test]
fn doctor_runs_on_this_machine() {
    let (root, topo) = live();
    for profile in [Profile::Ssd, Profile::HddStreaming] {
        let r = DoctorReport::run(&root, &topo, profile, &[], &[]);
        assert_eq!(
            r.summary.ok + r.summary.warn + r.summary.unknown,
            r.checks.len()
        );
        assert!(r.check("vm.swappiness").is_some());
        assert!(r.check("irq.irqbalance").is_some());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema"], "rtgt-doctor/1");
    }
}

#[test]
fn irq_plans_for_this_machines_nics() {
    let (root, topo) = live();
    let table = InterruptTable::read(&root).unwrap();
    assert!(!table.cpus().is_empty());
    for nic in list_nics(&root) {
        let Ok(plan) = plan_irqs(
            &root,
            &topo,
            &table,
            &IrqTarget::Nic(nic.clone()),
            None,
            &[],
        ) else {
            println!("{nic}: no interrupts found");
            continue;
        };
        assert_eq!(plan.assignments.len(), plan.source.irqs.len());
        let online = topo.online();
        assert!(plan.cpus.iter().all(|&c| online.contains(c)));
        let before: u64 = plan.per_cpu.iter().map(|r| r.current_interrupts).sum();
        let after: u64 = plan.per_cpu.iter().map(|r| r.planned_interrupts).sum();
        assert_eq!(
            before, after,
            "a plan moves interrupts, it does not create them"
        );
        let vectors: usize = plan.per_cpu.iter().map(|r| r.planned_vectors).sum();
        assert_eq!(vectors, plan.assignments.len());
    }
}
