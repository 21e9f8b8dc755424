//! What received target PDUs mean to the initiator's caller (RFC 7143 §11.4 SCSI Response,
//! §11.7 Data-In, §11.6 TMF Response, §11.15 Logout Response, §11.9 Asynchronous Message,
//! §11.17 Reject, §11.19 NOP-In, §11.11 Text Response).

use std::time::Instant;

use rtgt_pdu::{
    AsyncEvent, LogoutResponseCode, Lun, Opcode, RejectReason, Residual, ResponseCode, ScsiStatus,
    TmfFunction, TmfResponse,
};

use super::task::TaskId;

/// A byte range of the data segment that was passed to
/// [`Session::on_pdu`](super::Session::on_pdu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRange {
    /// Offset into the data segment.
    pub offset: u16,
    /// Length in bytes.
    pub len: u16,
}

impl SegmentRange {
    /// The bytes this range names in `data`.
    pub fn of<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = usize::from(self.offset);
        data.get(start..start + usize::from(self.len))
            .unwrap_or(&[])
    }
}

/// The end of a SCSI command: its service response, status and residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The task that completed; its slot is free again.
    pub task: TaskId,
    /// iSCSI service response (§11.4.3).
    pub response: ResponseCode,
    /// SCSI status (valid when `response` is COMMAND_COMPLETED).
    pub status: ScsiStatus,
    /// Residual over/underflow reported by the target (§11.4.5).
    pub residual: Residual,
    /// Data-In bytes received for the command.
    pub transferred: u32,
    /// Sense data within the SCSI Response's data segment (§11.4.7), if any.
    pub sense: Option<SegmentRange>,
}

impl Completion {
    /// Whether the command completed with GOOD status.
    #[inline]
    pub fn is_good(&self) -> bool {
        self.response == ResponseCode::COMMAND_COMPLETED && self.status == ScsiStatus::GOOD
    }
}

/// Where the payload of a Data-In PDU goes, decided from its header before the payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInPlacement {
    /// The read task; copy the payload into its buffer.
    pub task: TaskId,
    /// Offset of the payload in the task's buffer.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
    /// The command's completion when the Data-In carried status (phase collapse, §11.7.1).
    /// Act on it only after the payload (and its digest) arrived.
    pub completion: Option<Completion>,
}

/// An Asynchronous Message from the target (§11.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncNotice {
    /// AsyncEvent code.
    pub event: AsyncEvent,
    /// LUN (SCSI events).
    pub lun: Lun,
    /// Parameter1 (CID for a connection drop).
    pub parameter1: u16,
    /// Parameter2 (Time2Wait).
    pub parameter2: u16,
    /// Parameter3 (Time2Retain, or the logout deadline in seconds for event 1).
    pub parameter3: u16,
    /// Sense data of a SCSI asynchronous event within the data segment.
    pub sense: Option<SegmentRange>,
}

/// The outcome of one received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Nothing for the caller (window update, a target ping answered, an R2T queued…).
    None,
    /// Read data for a task (only returned by `on_pdu`; `on_data_in` returns the placement).
    DataIn(DataInPlacement),
    /// A SCSI command completed with a SCSI Response.
    Complete(Completion),
    /// A SCSI command was terminated without a response: aborted by a TMF, or failed because
    /// its connection went away. Its slot is free again.
    Aborted(TaskId),
    /// A task management request was answered.
    Tmf {
        /// The TMF task (slot already freed).
        task: TaskId,
        /// The function requested.
        function: TmfFunction,
        /// The target's answer.
        response: TmfResponse,
    },
    /// The target answered our NOP-Out ping.
    Pong {
        /// The ping task.
        task: TaskId,
        /// When the ping was sent.
        sent_at: Instant,
    },
    /// A text exchange finished; the reassembled key=value data of all responses.
    Text {
        /// The text task.
        task: TaskId,
        /// Concatenated data segments.
        data: Vec<u8>,
    },
    /// The Logout Response arrived; the connection (or session) is closed.
    Logout {
        /// The logout task.
        task: TaskId,
        /// The target's answer.
        response: LogoutResponseCode,
        /// Time2Wait in seconds.
        time2wait: u16,
        /// Time2Retain in seconds.
        time2retain: u16,
    },
    /// An Asynchronous Message (target-requested logout, connection or session drop, SCSI
    /// event…).
    Async(AsyncNotice),
    /// The target rejected a PDU (§11.17).
    Rejected {
        /// Reject reason.
        reason: RejectReason,
        /// Opcode of the rejected PDU.
        opcode: Opcode,
        /// The task that was rejected and is now freed (a command, TMF, text, logout or ping).
        task: Option<TaskId>,
    },
}
