//! NUMA/IRQ affinity for rtgt: topology, pinning, NUMA-local buffer pools, interrupt
//! placement and a tuning doctor.
//!
//! Implements issue 7 of the project. The references are the Linux kernel's documented
//! interfaces rather than a protocol standard: sysfs topology and device ABI
//! (`Documentation/ABI/`), `/proc/interrupts` and `/proc/irq/N/smp_affinity_list`
//! (`Documentation/core-api/irq/irq-affinity.rst`), NUMA memory policy
//! (`Documentation/admin-guide/mm/numa_memory_policy.rst`, `mbind(2)`), huge pages
//! (`.../mm/hugetlbpage.rst`, `.../mm/transhuge.rst`), `sched_setaffinity(2)`, and the
//! sysctls of `Documentation/admin-guide/sysctl/{net,vm}.rst` and
//! `Documentation/networking/ip-sysctl.rst`.
//!
//! Every reader takes a [`SysRoot`] (default `/`), so the same code runs against the live
//! machine and against fixture trees. The `rtgtd` subcommands are thin shims over
//! [`topology_command`], [`irq_command`] and [`doctor_command`].

mod commands;
mod config;
mod cpuset;
mod doctor;
mod error;
mod irq;
mod pin;
mod placement;
mod pool;
mod sysroot;
mod topology;

pub use commands::{
    DoctorOptions, IRQ_SCHEMA, IrqAction, IrqOptions, IrqReport, NodeReport, TOPOLOGY_SCHEMA,
    TopologyOptions, TopologyReport, doctor_command, irq_command, topology_command,
};
pub use config::{
    BUFFER_ALIGN, DEFAULT_POLL_US, HugePages, IrqPolicy, MAX_BUFFER_COUNT, MAX_BUFFER_SIZE,
    MAX_POLL_US, MAX_REACTORS, PerformanceConfig,
};
pub use cpuset::{CpuListError, CpuSet, MAX_CPU};
pub use doctor::{
    Category, Check, DOCTOR_SCHEMA, DoctorReport, Profile, Status, Summary, UnknownProfile,
};
pub use error::{AffinityError, ConfigError, Result};
pub use irq::{
    ApplyOutcome, CpuLoad, InterruptLine, InterruptTable, IrqAssignment, IrqDiscovery, IrqPlan,
    IrqSource, IrqTarget, apply_plan, default_irq_cpus, find_irqs, irqbalance_pids, plan_irqs,
    spread,
};
pub use pin::{
    MAX_PINNABLE_CPU, current_thread_affinity, pin_current_thread, pin_current_thread_to_cpu,
    pin_current_thread_to_node,
};
pub use placement::{PlacementPlan, ReactorSlot, plan_placement};
pub use pool::{
    Backing, CacheStats, NodePool, PoolBuf, PoolConfig, PoolStats, ReactorCache, node_of_address,
};
pub use sysroot::SysRoot;
pub use topology::{
    Core, Cpu, DeviceKind, DeviceLocality, NodeEvidence, NumaNode, Topology, TopologySource,
    list_block_devices, list_nics,
};
