//! Errors of the initiator role and what they mean on the wire (RFC 7143 §7.1.3, §7.8,
//! §11.2.1 on what a receiver does with a PDU it cannot accept).
//!
//! An initiator has no Reject PDU to answer a target with: a PDU from the target that breaks
//! the protocol (unknown task tag, Data-In out of sequence, an R2T for a read…) means the
//! connection can no longer be trusted, and at ErrorRecoveryLevel 0 the session's tasks on it
//! are failed and the connection is dropped ([`ProtocolError`]). Requests the caller makes that
//! cannot be sent right now are [`SubmitError`]s and leave the session untouched.

use rtgt_pdu::{Itt, Opcode};

/// A target PDU violated RFC 7143; the connection must be dropped (ERL 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A response or data PDU names a task tag we have no task for (§11.2.1.8).
    #[error("{opcode} for unknown task {itt:?}")]
    UnknownTask {
        /// The PDU's opcode.
        opcode: Opcode,
        /// Its ITT.
        itt: Itt,
    },
    /// A PDU of this kind arrived for a task of another kind (e.g. Data-In for a write,
    /// R2T for a read, a TMF response for a SCSI command).
    #[error("{opcode} does not fit task {itt:?}")]
    WrongTaskKind {
        /// The PDU's opcode.
        opcode: Opcode,
        /// Its ITT.
        itt: Itt,
    },
    /// Data-In DataSN out of sequence (§11.7.5; DataSequenceInOrder/DataPDUInOrder = Yes).
    #[error("Data-In for {itt:?} with DataSN {got}, expected {expected}")]
    DataSn {
        /// The task.
        itt: Itt,
        /// DataSN expected next.
        expected: u32,
        /// DataSN received.
        got: u32,
    },
    /// Data-In Buffer Offset not where the previous PDU ended (DataPDUInOrder = Yes, §13.18).
    #[error("Data-In for {itt:?} at offset {got}, expected {expected}")]
    DataOffset {
        /// The task.
        itt: Itt,
        /// Offset expected.
        expected: u32,
        /// Offset received.
        got: u32,
    },
    /// Data beyond the command's expected transfer length (§11.7.6).
    #[error("{itt:?}: {end} bytes of data exceed the expected transfer length {expected}")]
    DataOverrun {
        /// The task.
        itt: Itt,
        /// End offset of the data.
        end: u64,
        /// Expected data transfer length.
        expected: u32,
    },
    /// A Data-In with the S bit but without the F bit (§11.7.1).
    #[error("Data-In with status but without the final bit for {0:?}")]
    StatusWithoutFinal(Itt),
    /// R2TSN out of sequence (§11.8.5).
    #[error("R2T for {itt:?} with R2TSN {got}, expected {expected}")]
    R2tSn {
        /// The task.
        itt: Itt,
        /// R2TSN expected.
        expected: u32,
        /// R2TSN received.
        got: u32,
    },
    /// An R2T asks for a range outside the command's data, or for nothing, or for more than
    /// MaxBurstLength (§11.8.4, §13.13).
    #[error(
        "R2T for {itt:?} asks for {len} bytes at {offset} (transfer length {expected}, MaxBurstLength {max_burst})"
    )]
    R2tRange {
        /// The task.
        itt: Itt,
        /// Buffer offset requested.
        offset: u32,
        /// Desired data transfer length.
        len: u32,
        /// Expected data transfer length of the command.
        expected: u32,
        /// Negotiated MaxBurstLength.
        max_burst: u32,
    },
    /// More R2Ts outstanding than MaxOutstandingR2T allows (§13.17).
    #[error("more than MaxOutstandingR2T={0} R2Ts outstanding")]
    TooManyR2t(u16),
    /// A target PDU this role never expects (an initiator opcode, a SNACK-only PDU, a login
    /// response in full feature phase).
    #[error("unexpected {0} in full feature phase")]
    UnexpectedPdu(Opcode),
    /// The data segment of a SCSI Response is malformed (§11.4.7).
    #[error("malformed sense data segment")]
    BadSenseSegment,
    /// A Reject PDU whose data segment is not the rejected header (§11.17).
    #[error("malformed Reject data segment ({0} bytes)")]
    BadReject(usize),
    /// Our NOP-Out ping was not answered in time.
    #[error("no answer to NOP-Out ping within {0} ms")]
    PingTimeout(u64),
    /// The target asked for a logout and the initiator did not manage to log out; or the
    /// target announced it drops the connection (Asynchronous Message events 2 and 3).
    #[error("target dropped the connection (async event {0})")]
    TargetDropped(u8),
}

/// A request that cannot be sent now; the session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The next CmdSN lies outside [ExpCmdSN, MaxCmdSN] (§4.2.2.1): wait for the target to
    /// open the window.
    #[error("command window closed")]
    WindowClosed,
    /// Every task slot of the connection is in use.
    #[error("no free task slot")]
    NoFreeSlot,
    /// CDBs longer than 16 bytes need an extended-CDB AHS, which this initiator does not send.
    #[error("CDB of {0} bytes (at most 16 supported)")]
    CdbTooLong(usize),
    /// The connection is logging out or gone.
    #[error("connection is not in full feature phase")]
    NotActive,
    /// The connection index does not exist.
    #[error("no connection {0}")]
    NoConnection(usize),
    /// Text data longer than the target's MaxRecvDataSegmentLength.
    #[error("text of {0} bytes exceeds the target's MaxRecvDataSegmentLength")]
    TextTooLong(usize),
    /// The referenced task is not outstanding (TMF ABORT TASK).
    #[error("task is not outstanding")]
    NoSuchTask,
    /// The session is a discovery session: only Text, NOP and Logout are allowed (§13.21).
    #[error("SCSI commands are not allowed in a discovery session")]
    DiscoverySession,
}
