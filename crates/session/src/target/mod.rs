//! The target role: login, discovery and full-feature-phase session state machines
//! (RFC 7143 §5–§7, §11), driven by an engine through values.
//!
//! * [`login::LoginConnection`] runs one connection's login phase (security and operational
//!   negotiation, CHAP, discovery sessions) and reports what the engine must do with the
//!   finished connection: start a session, join one by TSIH, or reinstate one.
//! * [`TargetSession`] is a logged-in session with its connections, CmdSN window, task table,
//!   Data-Out/R2T and Data-In sequencing, task management and logout.
//! * [`SessionTable`](crate::table::SessionTable) allocates TSIHs and finds sessions by
//!   (InitiatorName, ISID) for reinstatement.
//!
//! # Engine contract (fast path)
//!
//! Buffers belong to the engine. For each received PDU the engine calls
//! [`TargetSession::begin_pdu`] with the decoded header; the returned [`Placement`] says where
//! the data segment goes — straight into a task's buffer at an offset (Data-Out, immediate
//! data), collected and handed to [`TargetSession::end_pdu`] (login, text, NOP), or nowhere.
//! Outgoing PDUs come from [`TargetSession::poll_transmit`] as a 48-byte header plus a
//! [`Payload`] that may borrow a range of a task buffer, so header and data leave in one
//! vectored send; the engine reports the send's completion with
//! [`TargetSession::transmit_done`]. Work for the SCSI layer comes out of
//! [`TargetSession::poll_event`]. Time is passed in; timers are [`TargetSession::poll_timeout`]
//! and [`TargetSession::handle_timeout`].

mod auth;
pub mod catalog;
mod control;
mod datain;
mod dataout;
pub mod discovery;
pub mod login;
mod session;
mod task;
mod tmf;

pub use auth::AuthError;
pub use catalog::{
    Acl, AuthPolicy, Catalog, ChapPolicy, Credential, MAX_QUEUE_DEPTH, PortalGroup,
    SessionDefaults, TargetEntry,
};
pub use session::{SessionSetup, TargetSession};
pub use task::{MAX_R2T_PER_TASK, Task, TaskId};

use rtgt_pdu::{PduHeader, Residual, ScsiStatus};

/// A connection of a session, as numbered by the session (not the CID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u16);

/// Where the data segment of the PDU whose header was just handed in must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The PDU has no data segment, or its data is to be skipped.
    Discard,
    /// Copy the data segment into the task's buffer starting at `offset`. The range lies
    /// inside [`Task::buffer_len`].
    Task {
        /// The task whose buffer receives the data.
        task: TaskId,
        /// Byte offset in the task buffer.
        offset: u32,
    },
    /// Collect the data segment and pass it to [`TargetSession::end_pdu`].
    Collect,
}

/// The data segment of an outgoing PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No data segment.
    None,
    /// Bytes owned by the transmit (login/text answers, sense data, NOP echo, Reject).
    Owned(Vec<u8>),
    /// `len` bytes of the task's buffer starting at `offset` (Data-In). The engine reports
    /// the send's completion with [`TargetSession::transmit_done`].
    Task {
        /// The task whose buffer holds the data.
        task: TaskId,
        /// Offset in the task buffer.
        offset: u32,
        /// Length in bytes.
        len: u32,
    },
}

impl Payload {
    /// Length of the data segment in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Owned(v) => v.len(),
            Self::Task { len, .. } => *len as usize,
        }
    }

    /// Whether the PDU has no data segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One PDU to send: the encoded BHS (its DataSegmentLength already set) and its payload. The
/// engine appends header digest, padding and data digest as negotiated for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The Basic Header Segment.
    pub bhs: [u8; rtgt_pdu::BHS_LEN],
    /// The data segment.
    pub payload: Payload,
}

impl Transmit {
    /// Decodes the header again (tests and logging).
    pub fn header(&self) -> Result<PduHeader, rtgt_pdu::PduError> {
        PduHeader::decode(&self.bhs)
    }
}

/// The SCSI layer's verdict on a task, handed to [`TargetSession::complete_task`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion<'a> {
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense data (empty unless CHECK CONDITION).
    pub sense: &'a [u8],
    /// Bytes of Data-In the task buffer holds (sent before the status; clamped to the EDTL).
    pub data_in_len: u32,
    /// Residual condition relative to the Expected Data Transfer Length.
    pub residual: Residual,
}

impl Completion<'static> {
    /// GOOD status with `data_in_len` bytes of Data-In and no residual.
    pub const fn good(data_in_len: u32) -> Self {
        Self {
            status: ScsiStatus::GOOD,
            sense: &[],
            data_in_len,
            residual: Residual::None,
        }
    }
}

/// Task management functions that reach beyond this session's own task list: the engine
/// applies them to the logical unit (unit attentions, reservations) and to other sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuAction {
    /// ABORT TASK SET / CLEAR TASK SET on `lun` by this session.
    AbortTaskSet {
        /// Logical unit.
        lun: u16,
        /// CLEAR TASK SET (affects all initiators' tasks) rather than ABORT TASK SET.
        clear: bool,
    },
    /// LOGICAL UNIT RESET.
    LogicalUnitReset {
        /// Logical unit.
        lun: u16,
    },
    /// TARGET WARM RESET (`cold = false`) or TARGET COLD RESET.
    TargetReset {
        /// Cold reset: every connection of every session is closed afterwards.
        cold: bool,
    },
    /// CLEAR ACA on `lun`.
    ClearAca {
        /// Logical unit.
        lun: u16,
    },
}

/// Work for the engine, from [`TargetSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A command is ready for the SCSI layer (in CmdSN order). Answer with
    /// [`TargetSession::task_wants_data`] or [`TargetSession::complete_task`].
    Execute(TaskId),
    /// All Data-Out the SCSI layer asked for is in the task buffer; execute the command and
    /// then call [`TargetSession::complete_task`].
    DataOutComplete(TaskId),
    /// A task the engine holds was aborted (TMF, logout, connection loss). Cancel its I/O if
    /// possible; in any case call [`TargetSession::complete_task`] when the engine lets go of
    /// it — the abort is answered only then.
    Aborted(TaskId),
    /// The session no longer references the task; its buffer may be reused.
    TaskReleased(TaskId),
    /// A task management function for the logical unit or target (see [`LuAction`]).
    Lu(LuAction),
    /// Close the connection once everything handed out by `poll_transmit` has been sent.
    CloseConnection(ConnId),
    /// The connection is gone from the session (after a close or a drop).
    ConnectionRemoved(ConnId),
    /// The session has ended: no connections and no tasks remain.
    SessionEnded,
}
