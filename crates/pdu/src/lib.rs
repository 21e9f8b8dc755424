//! iSCSI PDU codec (RFC 7143): headers, digests, text keys, negotiation, stream framer.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
