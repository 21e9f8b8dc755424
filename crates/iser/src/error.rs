//! Errors of the iSER transport and what they mean on the wire.
//!
//! RFC 7145 §10 (error handling): errors of the RDMA layer (a work request
//! completing in error, a remote access violation) and iSER protocol errors
//! are not recoverable within the connection: the iSER layer terminates the
//! connection and the iSCSI layer handles the loss of the connection (at
//! ErrorRecoveryLevel 0, the session). [`IserError::is_connection_fatal`]
//! tells which errors mean exactly that; the others are refusals of a local
//! request that leave the connection intact.

use rtgt_pdu::{Itt, Opcode, PduError};

use crate::verbs::{VerbsError, WcOpcode, WcStatus};

/// A violation of RFC 7145 by the peer (or a malformed message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The iSER header's opcode is not one this message may carry (§9).
    #[error("unexpected iSER opcode {0:#x}")]
    UnexpectedIserOpcode(u8),
    /// The message is shorter than its headers.
    #[error("iSER message of {0} bytes is shorter than its headers")]
    ShortMessage(usize),
    /// The BHS or AHS does not decode.
    #[error("malformed iSCSI PDU: {0}")]
    Pdu(#[from] PduError),
    /// The message's length disagrees with the PDU's AHS and data lengths.
    #[error("message carries {received} bytes of AHS and data, the BHS declares {declared}")]
    LengthMismatch {
        /// Bytes the BHS declares (AHS + data, padding allowed).
        declared: usize,
        /// Bytes the message carries after the headers.
        received: usize,
    },
    /// A data segment above the negotiated Initiator/TargetRecvDataSegmentLength (§6.4, §6.5).
    #[error("data segment of {len} bytes exceeds the negotiated limit {limit}")]
    DataSegmentTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: u32,
    },
    /// The peer exceeded MaxOutstandingUnexpectedPDUs (§6.7).
    #[error("more than {limit} outstanding unexpected PDUs")]
    UnexpectedPduLimit {
        /// The declared limit.
        limit: u32,
    },
    /// A PDU that iSER never carries in a message: Data-In and R2T are
    /// replaced by RDMA operations (§7.3.5, §7.3.6); SNACK cannot be
    /// honoured without the data PDUs.
    #[error("{0:?} is not carried as an iSER message")]
    NotAnIserMessage(Opcode),
    /// A read command without a Read STag, or a write with solicited data
    /// and no Write STag (§7.3.1, §7.3.2).
    #[error("command {itt:?} needs a {direction} STag in its iSER header")]
    MissingStag {
        /// The command.
        itt: Itt,
        /// "read" or "write".
        direction: &'static str,
    },
    /// A second command with the ITT of a task still active.
    #[error("task {0:?} already active")]
    DuplicateTask(Itt),
    /// The login ended without RDMAExtensions=Yes on an iSER connection (§5.1, §6.3).
    #[error("login completed without RDMAExtensions=Yes")]
    RdmaExtensionsNotNegotiated,
    /// Header or data digests negotiated on an iSER connection (§6.1: not used with iSER).
    #[error("digests are not used with iSER")]
    DigestsNegotiated,
    /// The target rejected the iSER Hello (§9.4).
    #[error("target rejected iSER version (it supports up to {max_version})")]
    HelloRejected {
        /// The target's highest version.
        max_version: u8,
    },
    /// The peer invalidated an STag that is not the one of the task (§7.3.4).
    #[error("peer invalidated STag {0:#x}, which belongs to no task")]
    UnknownInvalidation(u32),
}

/// An error of the iSER transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IserError {
    /// The verbs layer refused a request.
    #[error(transparent)]
    Verbs(#[from] VerbsError),
    /// A work request completed in error: the connection has failed (§10).
    #[error("{opcode:?} completed with {status}")]
    Completion {
        /// The completion status.
        status: WcStatus,
        /// The operation.
        opcode: WcOpcode,
    },
    /// The peer violated the protocol: the connection is terminated (§10).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The connection is closed (disconnected or failed).
    #[error("connection closed")]
    Closed,
    /// The target rejected the connection request.
    #[error("connection rejected by the target")]
    Rejected,
    /// No target listens at the address.
    #[error("target unreachable")]
    Unreachable,
    /// The request is not valid in the connection's current phase (e.g. a
    /// SCSI command before the login completed).
    #[error("{0} not allowed in the current phase")]
    WrongPhase(&'static str),
    /// All send buffers or send-queue slots are in use; retry after completions.
    #[error("no send resources free")]
    NoSendResources,
    /// Sending would exceed the peer's MaxOutstandingUnexpectedPDUs; retry
    /// after a response retires one (§6.7).
    #[error("peer's MaxOutstandingUnexpectedPDUs ({0}) reached")]
    UnexpectedCredit(u32),
    /// A data segment larger than the peer may receive.
    #[error("data segment of {len} bytes exceeds the peer's limit {limit}")]
    SegmentTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: u32,
    },
    /// A data operation names a task the connection does not know (or no
    /// longer knows: its STags are gone with it).
    #[error("no active task {0:?}")]
    UnknownTask(Itt),
    /// A data operation outside the STag's buffer or the task's length.
    #[error("data range {offset}+{len} outside the task's buffer")]
    DataRange {
        /// Buffer offset.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// The local buffer range is in use by a command in flight.
    #[error("buffer range in use by a command in flight")]
    BufferInFlight,
    /// A local configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

impl IserError {
    /// Whether the connection is lost (RFC 7145 §10: RDMA errors and
    /// protocol violations terminate the connection).
    pub fn is_connection_fatal(&self) -> bool {
        matches!(
            self,
            Self::Completion { .. }
                | Self::Protocol(_)
                | Self::Closed
                | Self::Rejected
                | Self::Unreachable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdma_and_protocol_errors_end_the_connection() {
        let e = IserError::Completion {
            status: WcStatus::REM_ACCESS_ERR,
            opcode: WcOpcode::RDMA_WRITE,
        };
        assert!(e.is_connection_fatal());
        assert_eq!(
            e.to_string(),
            "RDMA_WRITE completed with IBV_WC_REM_ACCESS_ERR"
        );
        assert!(IserError::from(ProtocolError::DigestsNegotiated).is_connection_fatal());
        assert!(!IserError::NoSendResources.is_connection_fatal());
        assert!(!IserError::UnknownTask(Itt(1)).is_connection_fatal());
    }
}
