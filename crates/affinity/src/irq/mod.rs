//! Interrupt affinity: find a device's vectors, plan their spread, apply it.
//!
//! See `discover` (which vectors), `plan` (where they go) and `interrupts` (the counters
//! in `/proc/interrupts`). Planning never writes; applying writes
//! `/proc/irq/N/smp_affinity_list` (kernel `Documentation/core-api/irq/irq-affinity.rst`).

mod discover;
mod interrupts;
mod plan;

pub use discover::{IrqDiscovery, IrqSource, IrqTarget, find_irqs, irqbalance_pids};
pub use interrupts::{InterruptLine, InterruptTable};
pub use plan::{
    ApplyOutcome, CpuLoad, IrqAssignment, IrqPlan, apply_plan, default_irq_cpus, plan_irqs, spread,
};
