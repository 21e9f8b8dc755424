//! Sans-IO iSCSI login, session and connection state machines (RFC 7143), target and initiator
//! roles.
//!
//! Nothing here opens a socket, spawns a thread or reads a clock: bytes are fed in, time is
//! passed in, and what must happen comes out as values.
#![forbid(unsafe_code)]

pub mod chap;
#[cfg(feature = "test-utils")]
pub mod harness;
pub mod initiator;
pub mod params;
pub mod table;
pub mod target;
