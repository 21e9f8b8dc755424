//! SCSI direct-access logical unit (SBC-4/SPC-5): CDB decoding, sense data, unit attentions,
//! reservations, mode pages, EXTENDED COPY, and the [`BlockBackend`] seam to storage.
//!
//! The crate is sans-IO: a [`LogicalUnit`] turns each command into a plan of backend
//! operations that the engine executes against its own buffers, then turns the outcomes into
//! status, sense data, Data-In and residual. It never touches sockets, threads or clocks.
//!
//! # Contract with the engine
//!
//! * One [`LogicalUnit`] per LUN, shared by every reactor thread in an `Arc`. Commands for a
//!   LUN that does not exist go to [`target::lun_not_present`]; REPORT LUNS goes to
//!   [`target::report_luns`] whatever LUN it addresses ([`target::is_target_level`]).
//! * Each I_T nexus is a [`Nexus`] (initiator port name, relative target port, a small
//!   [`NexusId`]). Report logins with [`LogicalUnit::nexus_established`] and logouts or
//!   connection losses with [`LogicalUnit::nexus_lost`].
//! * [`LogicalUnit::prepare`] either completes the command ([`Dispatch::Complete`]) or returns a
//!   [`Command`] saying how many Data-Out bytes to collect and how big a Data-In buffer the plan
//!   needs. [`LogicalUnit::execute`] then returns a [`Step`]: an [`IoPlan`] of [`IoOp`]s to run
//!   in order (stop at the first failure or miscompare), `Blocked` (retry after the notifier
//!   installed with [`LogicalUnit::set_unblock_notifier`] fired), or `Complete`.
//!   [`LogicalUnit::complete`] takes the [`IoOutcome`]s and returns the [`Completion`] with the
//!   residual already computed against the expected transfer length. Every `Command` ends in
//!   exactly one `complete` or [`LogicalUnit::abort`] (it may hold a place in the COMPARE AND
//!   WRITE gate).
//! * READ and WRITE take no lock and allocate nothing unless a unit attention is pending for
//!   some nexus, a reservation is held, or an atomic command (COMPARE AND WRITE, ORWRITE, WRITE
//!   ATOMIC) is active on the logical unit.
//! * Task management: [`LogicalUnit::reset`], [`LogicalUnit::commands_cleared`], and
//!   [`Completion::abort_nexuses`] after PREEMPT AND ABORT.
//! * [`LogicalUnit::execute_sync`] runs all three steps against a synchronous [`BlockBackend`]
//!   (tests, RAM disk, simple engines).
//!
//! ```
//! use rtgt_scsi::{
//!     BlockBackend, CommandRequest, DataDirection, DataIn, Dispatch, IoOp, IoOutcome, LogicalUnit,
//!     LuConfig, MemoryBackend, Nexus, NexusId, Status, Step,
//! };
//!
//! let store = MemoryBackend::new(512, 1 << 16).unwrap();
//! let lu = LogicalUnit::new(LuConfig::new("iqn.2024-01.org.example:t", 0), store.capabilities());
//! let nexus = Nexus::new(NexusId(1), "iqn.2024-01.org.example:i", [0x40, 0, 0, 0, 0, 1], 1);
//!
//! // READ(16) of 8 blocks at LBA 100, step by step as an engine would run it.
//! let cdb = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8, 0, 0];
//! let req = CommandRequest::new(&cdb, 4096, DataDirection::Read);
//! let Dispatch::Execute(mut cmd) = lu.prepare(&nexus, &req) else { panic!() };
//! let mut data_in = vec![0u8; cmd.data_in_capacity()];
//! let Step::Io(plan) = lu.execute(&nexus, &mut cmd, &[]) else { panic!() };
//! let mut outcomes = Vec::new();
//! for op in plan.ops() {
//!     if let IoOp::Read { offset, len, buf } = *op {
//!         store.read_at(offset, &mut data_in[buf..buf + len as usize]).unwrap();
//!         outcomes.push(IoOutcome::Done);
//!     }
//! }
//! let done = lu.complete(&nexus, cmd, &outcomes);
//! assert_eq!(done.status, Status::GOOD);
//! assert_eq!(done.data_in, DataIn::Buffer { len: 4096 });
//! ```
#![forbid(unsafe_code)]

mod cdb;
mod code;
mod config;
mod exec;
mod gate;
mod identity;
mod inquiry;
mod lu;
mod memory;
mod mode;
mod opcodes;
mod plan;
mod pr;
mod rsoc;
mod sense;
mod types;
mod ua;
mod xcopy;

pub mod backend;
pub mod lun;
pub mod target;

pub use backend::{AllocationExtent, BackendError, BlockBackend, Capabilities, Provisioning};
pub use config::{CopyLimits, LuConfig, TmfSupport};
pub use exec::run_plan;
pub use identity::{DEFAULT_NAA_OUI, LuIdentity, NaaDesignatorError};
pub use lu::{Command, Dispatch, LogicalUnit, ResetKind, Response, Step};
pub use memory::{MemoryBackend, NullBackend, StoreConfigError};
pub use opcodes::OpCode;
pub use plan::{CopyEndpoint, CopyTarget, CopyTargets, IoOp, IoOutcome, IoPlan, first_difference};
pub use sense::{
    AdditionalSense, ScsiError, SenseData, SenseError, SenseKey, SenseSpecific, Status,
};
pub use types::{
    CommandRequest, Completion, DataDirection, DataIn, Nexus, NexusId, Residual, TaskAttribute,
};
pub use ua::UnitAttention;
