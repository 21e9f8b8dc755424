//! NUMA/IRQ affinity: topology, pinning, NUMA-local buffer pools, IRQ placement, tuning doctor.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
