//! The initiator role (RFC 7143): login with security and operational negotiation, discovery,
//! and the full feature phase of a session with one or more connections.
//!
//! Sans-IO like the rest of the crate: the caller frames target PDUs (with `rtgt_pdu::Framer`),
//! passes them in with the current time, and sends what comes out. Task payloads stay in
//! buffers the caller owns, indexed by [`TaskId::slot`].
//!
//! | Module | Implements |
//! |---|---|
//! | [`login`] | login phase: stages, CHAP, negotiation, TSIH/ISID, redirects (§6, §11.12–§11.13) |
//! | [`auth`] | the initiator's CHAP exchange, one-way and mutual (§12.1.3) |
//! | [`discovery`] | SendTargets answers (§4.3, Appendix C) |
//! | [`window`] | CmdSN assignment and the command window (§4.2.2.1) |
//! | [`session`] | full feature phase: commands, Data-In/Out, R2T, NOP, TMF, Logout, Text, Async (§3.2, §11) |
//!
//! A typical life: [`Login::start`] → [`Login::on_response`] until [`LoginStep::Done`] →
//! [`Session::new`] from [`LoginOutcome::session_setup`] and [`Session::add_connection`] →
//! [`Session::submit`] / [`Session::poll_transmit`] / [`Session::on_pdu`].

pub mod auth;
pub mod discovery;
mod error;
mod event;
pub mod login;
pub mod session;
mod task;
mod transmit;
pub mod window;

pub use auth::{AuthError, ChapCredentials, ChapInitiator, MutualChap};
pub use error::{ProtocolError, SubmitError};
pub use event::{AsyncNotice, Completion, DataInPlacement, Event, SegmentRange};
pub use login::{Login, LoginConfig, LoginError, LoginOutcome, LoginStep};
pub use session::{
    ConnId, ConnState, ConnectionSetup, Direction, ScsiRequest, Session, SessionSetup, Submitted,
};
pub use task::TaskId;
pub use transmit::{OutData, OutPdu};
pub use window::CmdWindow;
