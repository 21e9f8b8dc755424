//! Sans-IO iSCSI login, session and connection state machines (RFC 7143), target and initiator roles.
//!
//! Work in progress: this crate is being built; see docs/architecture.md.
