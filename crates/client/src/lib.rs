//! rtgt-client: an iSCSI initiator library (RFC 7143) for testing and loading targets.
//!
//! * [`Client`]: a blocking session for discovery, login, INQUIRY, READ CAPACITY, single
//!   reads/writes, TMF, NOP and logout.
//! * [`engine`]: the pipelined IO engine — a fixed queue depth per connection inside the CmdSN
//!   window, several sessions and connections (MC/S) per thread, batched sends and receives on
//!   an epoll loop, no allocation per IO, its own CPU time measured per IO.
//! * [`bench`], [`verify`], [`torture`]: the workloads of the `rtgt-initiator` tool.
//!
//! The protocol logic lives in the sans-IO initiator role of `rtgt-session`; this crate adds
//! sockets, threads and clocks.

pub mod bench;
pub mod client;
pub mod connect;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod rng;
pub mod scsi;
pub mod stats;
pub mod torture;
pub mod transport;
pub mod url;
pub mod verify;
pub mod wire;
pub mod workload;

pub use client::{Client, CommandResult, DataDir, discover};
pub use connect::{ConnectOptions, DigestChoice, TransportChoice};
pub use error::{ClientError, Result};
pub use rtgt_session::initiator::ChapCredentials;
pub use url::{IscsiUrl, Portal, UrlError};
