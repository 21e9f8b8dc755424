//! Codec errors and what the receiver must do about them (RFC 7143 §7.8,
//! §11.17.1, §6.3).
//!
//! Every [`PduError`] knows its answer on the wire through
//! [`PduError::action`]: either the PDU is discarded and answered with a
//! Reject PDU carrying a specific reason while the connection stays up, or the
//! byte stream can no longer be trusted and the connection must be dropped
//! (a header digest failure means no length in that header can be believed,
//! §7.8). The split mirrors virtio-blk's `Error::status()`.
//!
//! The Reject answer is the *target's* duty. An initiator that receives a
//! malformed PDU from a target has no Reject PDU to send; it treats every
//! error as [`ErrorAction::DropConnection`] (and may use connection recovery).

use crate::codes::{Opcode, RejectReason};

/// What the receiver of a bad PDU must do (see [`PduError::action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Discard the PDU, answer with a Reject PDU carrying this reason and the
    /// offending header, and keep the connection (RFC 7143 §11.17).
    Reject(RejectReason),
    /// Framing is lost or the peer cannot be trusted: close the connection.
    DropConnection,
}

/// A PDU could not be decoded or framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// The buffer ends before the PDU does (only from whole-buffer decoders;
    /// the stream framer waits for more bytes instead).
    #[error("truncated PDU: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the PDU needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Bytes follow the end of a PDU that was expected to fill the buffer.
    #[error("{0} trailing bytes after the PDU")]
    TrailingBytes(usize),
    /// The header digest does not match (RFC 7143 §7.8): lengths are untrustworthy.
    #[error("header digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    HeaderDigest {
        /// Digest carried by the PDU.
        received: u32,
        /// Digest computed over BHS and AHS.
        computed: u32,
    },
    /// The data digest does not match (RFC 7143 §7.8): Reject with
    /// "Data digest error" and discard the PDU.
    #[error("data digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    DataDigest {
        /// Digest carried by the PDU.
        received: u32,
        /// Digest computed over data and padding.
        computed: u32,
    },
    /// The opcode is not one this codec implements (vendor-specific or
    /// unassigned): Reject with "Command not supported".
    #[error("unsupported opcode {0}")]
    UnsupportedOpcode(Opcode),
    /// The data segment is longer than the receiver declared it accepts
    /// (MaxRecvDataSegmentLength, RFC 7143 §13.12): a peer that ignores the
    /// declared limit is not trusted further.
    #[error("data segment of {len} bytes exceeds the limit of {max} bytes")]
    DataSegmentTooLong {
        /// DataSegmentLength from the header.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// Before login completes, AHS plus data may not exceed 8 KiB (the default
    /// MaxRecvDataSegmentLength, RFC 7143 §13.12); checked before allocating.
    #[error("{len} bytes of AHS and data exceed the login-phase limit of {max} bytes")]
    LoginSegmentsTooLong {
        /// TotalAHSLength in bytes plus DataSegmentLength.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The additional header segments do not tile TotalAHSLength or are
    /// otherwise malformed (RFC 7143 §11.2.2): Reject with "Invalid PDU field".
    #[error("malformed additional header segment: {0}")]
    InvalidAhs(&'static str),
    /// A defined header field holds a combination the standard forbids:
    /// Reject with "Protocol Error".
    #[error("{opcode}: invalid {field}")]
    InvalidField {
        /// The PDU's opcode.
        opcode: Opcode,
        /// Which field or bit combination.
        field: &'static str,
    },
    /// `Framer::next_pdu` was called after some of the current PDU's data had
    /// already been handed out by `Framer::next_event`; the PDU cannot be
    /// rebuilt, so the stream is abandoned.
    #[error("framer used in whole-PDU mode after data of the current PDU was streamed")]
    ModeSwitchMidPdu,
}

impl PduError {
    /// The receiver's required answer to this error.
    ///
    /// ```
    /// use rtgt_pdu::{ErrorAction, PduError, RejectReason};
    ///
    /// let e = PduError::DataDigest { received: 1, computed: 2 };
    /// assert_eq!(e.action(), ErrorAction::Reject(RejectReason::DATA_DIGEST_ERROR));
    /// let e = PduError::HeaderDigest { received: 1, computed: 2 };
    /// assert_eq!(e.action(), ErrorAction::DropConnection);
    /// ```
    pub fn action(&self) -> ErrorAction {
        match self {
            Self::DataDigest { .. } => ErrorAction::Reject(RejectReason::DATA_DIGEST_ERROR),
            Self::UnsupportedOpcode(_) => ErrorAction::Reject(RejectReason::COMMAND_NOT_SUPPORTED),
            Self::InvalidAhs(_) => ErrorAction::Reject(RejectReason::INVALID_PDU_FIELD),
            Self::InvalidField { .. } => ErrorAction::Reject(RejectReason::PROTOCOL_ERROR),
            Self::Truncated { .. }
            | Self::TrailingBytes(_)
            | Self::HeaderDigest { .. }
            | Self::DataSegmentTooLong { .. }
            | Self::LoginSegmentsTooLong { .. }
            | Self::ModeSwitchMidPdu => ErrorAction::DropConnection,
        }
    }

    /// The Reject reason if this error is answered with a Reject PDU.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self.action() {
            ErrorAction::Reject(r) => Some(r),
            ErrorAction::DropConnection => None,
        }
    }
}

/// A PDU could not be encoded because a length does not fit its wire field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// DataSegmentLength is a 24-bit field (RFC 7143 §11.2.1.5).
    #[error("data segment of {0} bytes does not fit the 24-bit length field")]
    DataSegmentTooLong(usize),
    /// TotalAHSLength counts 4-byte words in one byte: at most 1020 bytes.
    #[error("{0} bytes of additional header segments exceed 1020")]
    AhsTooLong(usize),
    /// An AHS entry's length does not fit its 16-bit AHSLength field.
    #[error("additional header segment of {0} bytes does not fit AHSLength")]
    AhsEntryTooLong(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_wire_answer() {
        assert_eq!(
            PduError::UnsupportedOpcode(Opcode(0x1c)).reject_reason(),
            Some(RejectReason::COMMAND_NOT_SUPPORTED)
        );
        assert_eq!(
            PduError::InvalidAhs("x").reject_reason(),
            Some(RejectReason::INVALID_PDU_FIELD)
        );
        assert_eq!(
            PduError::InvalidField {
                opcode: Opcode::SCSI_RESPONSE,
                field: "residual flags"
            }
            .reject_reason(),
            Some(RejectReason::PROTOCOL_ERROR)
        );
        assert_eq!(
            PduError::DataSegmentTooLong {
                len: 9000,
                max: 8192
            }
            .action(),
            ErrorAction::DropConnection
        );
        assert_eq!(
            PduError::LoginSegmentsTooLong {
                len: 9000,
                max: 8192
            }
            .action(),
            ErrorAction::DropConnection
        );
    }

    #[test]
    fn messages_name_the_values() {
        let e = PduError::HeaderDigest {
            received: 0xdead_beef,
            computed: 1,
        };
        assert_eq!(
            e.to_string(),
            "header digest mismatch: received 0xdeadbeef, computed 0x00000001"
        );
        assert_eq!(
            PduError::UnsupportedOpcode(Opcode(0x1d)).to_string(),
            "unsupported opcode VENDOR_1D"
        );
    }
}
