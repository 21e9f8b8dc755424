//! io_uring backing store for files and block devices.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
