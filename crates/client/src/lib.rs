//! iSCSI initiator library: sessions, pipelined IO engine, workloads, verification.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
