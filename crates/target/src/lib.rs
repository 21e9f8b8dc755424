//! The rtgt engine: per-core io_uring reactors, TCP transport, configuration.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
