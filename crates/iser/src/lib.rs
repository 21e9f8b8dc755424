//! iSER (RFC 7145) over RDMA verbs, with a soft fabric for tests.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
