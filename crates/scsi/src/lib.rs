//! SCSI direct-access logical unit (SBC-4/SPC-5): CDB decoding, sense, reservations, and the
//! [`BlockBackend`] seam to storage.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
#![forbid(unsafe_code)]

pub mod backend;

pub use backend::{AllocationExtent, BackendError, BlockBackend, Capabilities, Provisioning};
