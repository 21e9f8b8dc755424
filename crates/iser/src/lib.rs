//! iSER — iSCSI Extensions for RDMA (RFC 7145) — for rtgt: a verbs
//! abstraction with two implementations (an in-process soft fabric, and real
//! hardware through libibverbs/librdmacm behind the `rdma` feature) and the
//! iSER transport state machines for both roles.
//!
//! | Module | Implements |
//! |---|---|
//! | [`verbs`] | the verbs-level trait iSER needs (RFC 7145 §4, RDMA-CM) |
//! | [`soft`] | the soft fabric: RC semantics, STag checks, faults |
//! | `rdma` (feature `rdma`) | the verbs over real devices: libibverbs + librdmacm (RFC 7145 §4, §9.1) |
//! | [`header`] | iSER header, Hello/HelloReply (§9), CM private data |
//! | [`message`] | iSER messages carrying iSCSI control-type PDUs (§9) |
//! | [`login`] | iSER login keys and the entry into iSER full feature phase (§5.1, §6) |
//! | [`credits`] | MaxOutstandingUnexpectedPDUs flow control (§6.7, §8) |
//! | [`target`] | target connection: Data-In → RDMA Write, R2T → RDMA Read (§7.3) |
//! | [`initiator`] | initiator connection: STag advertisement and invalidation (§7.2) |
//! | [`memory`] | registered buffers; NUMA pool registration |
//! | [`taskbuf`] | an engine's task buffers, lent to RDMA operations (§4.2, §7.3.5, §7.3.6) |
//! | [`error`] | errors and their meaning (§10) |
//!
//! # How the session layer uses it
//!
//! The transport moves PDUs; the session decides. A target engine accepts a
//! request from a [`verbs::Listener`] with [`IserTarget::accept`], polls
//! [`IserTarget::poll`] for [`TargetEvent`]s (PDUs, completed RDMA Reads as
//! [`target::SolicitedData`], written Data-In buffers), and hands what the
//! session produces to [`IserTarget::send`] as [`target::Outbound`]: a
//! control PDU, a Data-In with its payload in registered memory, or an R2T
//! with the registered memory the data is to land in. Login PDUs flow the
//! same way; [`IserTarget::enter_full_feature`] is called with the
//! negotiated parameters before the final Login Response.
//!
//! # Example: a read over the soft fabric
//!
//! ```
//! use std::sync::Arc;
//! use rtgt_iser::soft::SoftFabric;
//! use rtgt_iser::verbs::{Listener, Verbs};
//! use rtgt_iser::{InitiatorConfig, InitiatorEvent, IserInitiator, IserTarget, TargetConfig, TargetEvent};
//!
//! let fabric = SoftFabric::new();
//! let addr = "192.0.2.1:3260".parse()?;
//! let mut listener = fabric.listen(addr)?;
//! let mut ini = IserInitiator::connect(&fabric, addr, Arc::new(fabric.alloc_pd()?), InitiatorConfig::default())?;
//! let request = listener.poll_request()?.expect("a connection request");
//! let mut tgt = IserTarget::accept(&fabric, request, Arc::new(fabric.alloc_pd()?), TargetConfig::default())?;
//! assert!(matches!(tgt.poll()?, Some(TargetEvent::Established)));
//! assert!(matches!(ini.poll()?, Some(InitiatorEvent::Established)));
//! assert!(ini.remote_invalidation()); // both sides support Send with Invalidate
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod conn;
pub mod credits;
pub mod error;
pub mod header;
pub mod initiator;
pub mod login;
pub mod memory;
pub mod message;
#[cfg(feature = "rdma")]
pub mod rdma;
pub mod soft;
pub mod target;
pub mod taskbuf;
pub mod verbs;

pub use conn::{Phase, RecvPdu};
pub use error::{IserError, ProtocolError};
pub use initiator::{CommandIo, InitiatorConfig, InitiatorEvent, IserInitiator};
pub use login::{IserLimits, IserParams};
pub use target::{IserTarget, Outbound, SolicitedData, TargetConfig, TargetEvent};
pub use taskbuf::{TaskBuffer, TaskMemory};
