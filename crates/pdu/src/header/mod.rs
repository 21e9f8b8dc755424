//! Typed Basic Header Segments for every RFC 7143 PDU (§11.2 template,
//! §11.3–§11.19 per opcode) and the [`PduHeader`] enum over them.
//!
//! Decoding reads exactly 48 bytes and never allocates; encoding writes a
//! `[u8; 48]` and never allocates, so the per-IO headers (Data-In, R2T, SCSI
//! Response) can be produced on the fast path.
//!
//! # Reserved fields and fixed bits
//!
//! RFC 7143 §11.2 requires senders to zero every reserved bit and field and
//! receivers to ignore them. This codec follows that literally:
//!
//! * reserved bits and bytes, and fields a PDU marks "or Reserved" when not
//!   applicable (e.g. StatSN of a Data-In without the S bit), are **ignored**
//!   on decode and written as zero on encode;
//! * fixed bits (the `1` in byte 1 of most PDUs, the I bit of a Login Request,
//!   the `0xffffffff` ITT of Reject and Asynchronous Message) are ignored on
//!   decode and always written on encode;
//! * reserved *code values* in defined fields (a TMF function 13, a SNACK type
//!   9, a login stage 2, …) survive decoding in their newtype so the consumer
//!   can give the PDU-specific answer (TMF "function not supported", login
//!   "initiator error", Reject "protocol error");
//! * the only field combinations refused at decode are those that cannot be
//!   represented: both residual overflow and underflow bits set
//!   ([`PduError::InvalidField`], Reject reason "Protocol Error");
//! * an opcode this codec does not implement (vendor-specific or unassigned)
//!   is [`PduError::UnsupportedOpcode`], Reject reason "Command not supported".
//!
//! Because decoding ignores reserved bits, `decode(encode(h)) == h` holds for
//! every header, and `encode(decode(b))` equals `b` with its reserved bits
//! cleared.

// Every header decodes through one fallible signature so `PduHeader::decode`
// treats them alike; most never fail.
#![allow(clippy::unnecessary_wraps)]

mod async_msg;
mod data;
mod login;
mod logout;
mod nop;
mod r2t;
mod reject;
mod scsi;
mod snack;
mod text;
mod tmf;

pub use async_msg::AsyncMessage;
pub use data::{DataIn, DataInStatus, DataOut};
pub use login::{LoginRequest, LoginResponse};
pub use logout::{LogoutRequest, LogoutResponse};
pub use nop::{NopIn, NopOut};
pub use r2t::R2t;
pub use reject::Reject;
pub use scsi::{Cdb, MAX_CDB_LEN, ScsiCommand, ScsiResponse, SenseSegment};
pub use snack::SnackRequest;
pub use text::{TextRequest, TextResponse};
pub use tmf::{TaskMgmtRequest, TaskMgmtResponse};

use crate::bhs::{BHS_LEN, BhsLengths};
use crate::codes::Opcode;
use crate::error::PduError;
use crate::fields::Itt;

/// Implements the public decode/encode entry points of one header type on top
/// of its `decode_fields`/`encode_fields`.
macro_rules! header_codec {
    ($ty:ident, $op:expr) => {
        impl $ty {
            /// This PDU's opcode.
            pub const OPCODE: $crate::codes::Opcode = $op;

            /// Decodes a 48-byte BHS whose opcode must be [`Self::OPCODE`].
            pub fn decode(
                bhs: &[u8; $crate::bhs::BHS_LEN],
            ) -> Result<Self, $crate::error::PduError> {
                let op = $crate::codes::Opcode(bhs[0] & 0x3f);
                if op != Self::OPCODE {
                    return Err($crate::error::PduError::InvalidField {
                        opcode: op,
                        field: "opcode",
                    });
                }
                Self::decode_fields(bhs)
            }

            /// Encodes into a fresh 48-byte BHS with the given lengths. No allocation.
            #[inline]
            pub fn encode(&self, lengths: $crate::bhs::BhsLengths) -> [u8; $crate::bhs::BHS_LEN] {
                let mut b = [0u8; $crate::bhs::BHS_LEN];
                self.encode_fields(&mut b);
                lengths.write(&mut b);
                b
            }

            /// Encodes into `out`, overwriting all 48 bytes. No allocation.
            #[inline]
            pub fn encode_into(
                &self,
                lengths: $crate::bhs::BhsLengths,
                out: &mut [u8; $crate::bhs::BHS_LEN],
            ) {
                *out = [0u8; $crate::bhs::BHS_LEN];
                self.encode_fields(out);
                lengths.write(out);
            }
        }

        impl From<$ty> for $crate::header::PduHeader {
            fn from(h: $ty) -> Self {
                $crate::header::PduHeader::$ty(h)
            }
        }
    };
}
pub(crate) use header_codec;

/// The decoded BHS of any PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is named after, and documented on, its header type
pub enum PduHeader {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    SnackRequest(SnackRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
}

impl PduHeader {
    /// Decodes any BHS. Bytes 4–7 (lengths) are framing, read with
    /// [`BhsLengths::from_bhs`]; they are not part of the typed header.
    ///
    /// ```
    /// use rtgt_pdu::{BhsLengths, NopOut, PduHeader, Sn, Itt, Ttt};
    ///
    /// let nop = NopOut { immediate: true, itt: Itt(7), ttt: Ttt::RESERVED, cmd_sn: Sn(1), ..Default::default() };
    /// let bytes = nop.encode(BhsLengths::ZERO);
    /// assert_eq!(PduHeader::decode(&bytes)?, PduHeader::NopOut(nop));
    /// # Ok::<(), rtgt_pdu::PduError>(())
    /// ```
    pub fn decode(bhs: &[u8; BHS_LEN]) -> Result<Self, PduError> {
        let op = Opcode(bhs[0] & 0x3f);
        Ok(match op {
            Opcode::NOP_OUT => Self::NopOut(NopOut::decode_fields(bhs)?),
            Opcode::SCSI_COMMAND => Self::ScsiCommand(ScsiCommand::decode_fields(bhs)?),
            Opcode::TASK_MGMT_REQUEST => {
                Self::TaskMgmtRequest(TaskMgmtRequest::decode_fields(bhs)?)
            }
            Opcode::LOGIN_REQUEST => Self::LoginRequest(LoginRequest::decode_fields(bhs)?),
            Opcode::TEXT_REQUEST => Self::TextRequest(TextRequest::decode_fields(bhs)?),
            Opcode::SCSI_DATA_OUT => Self::DataOut(DataOut::decode_fields(bhs)?),
            Opcode::LOGOUT_REQUEST => Self::LogoutRequest(LogoutRequest::decode_fields(bhs)?),
            Opcode::SNACK_REQUEST => Self::SnackRequest(SnackRequest::decode_fields(bhs)?),
            Opcode::NOP_IN => Self::NopIn(NopIn::decode_fields(bhs)?),
            Opcode::SCSI_RESPONSE => Self::ScsiResponse(ScsiResponse::decode_fields(bhs)?),
            Opcode::TASK_MGMT_RESPONSE => {
                Self::TaskMgmtResponse(TaskMgmtResponse::decode_fields(bhs)?)
            }
            Opcode::LOGIN_RESPONSE => Self::LoginResponse(LoginResponse::decode_fields(bhs)?),
            Opcode::TEXT_RESPONSE => Self::TextResponse(TextResponse::decode_fields(bhs)?),
            Opcode::SCSI_DATA_IN => Self::DataIn(DataIn::decode_fields(bhs)?),
            Opcode::LOGOUT_RESPONSE => Self::LogoutResponse(LogoutResponse::decode_fields(bhs)?),
            Opcode::R2T => Self::R2t(R2t::decode_fields(bhs)?),
            Opcode::ASYNC_MESSAGE => Self::AsyncMessage(AsyncMessage::decode_fields(bhs)?),
            Opcode::REJECT => Self::Reject(Reject::decode_fields(bhs)?),
            other => return Err(PduError::UnsupportedOpcode(other)),
        })
    }

    /// Encodes into a fresh 48-byte BHS. No allocation.
    pub fn encode(&self, lengths: BhsLengths) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        self.encode_into(lengths, &mut b);
        b
    }

    /// Encodes into `out`, overwriting all 48 bytes. No allocation.
    pub fn encode_into(&self, lengths: BhsLengths, out: &mut [u8; BHS_LEN]) {
        match self {
            Self::NopOut(h) => h.encode_into(lengths, out),
            Self::ScsiCommand(h) => h.encode_into(lengths, out),
            Self::TaskMgmtRequest(h) => h.encode_into(lengths, out),
            Self::LoginRequest(h) => h.encode_into(lengths, out),
            Self::TextRequest(h) => h.encode_into(lengths, out),
            Self::DataOut(h) => h.encode_into(lengths, out),
            Self::LogoutRequest(h) => h.encode_into(lengths, out),
            Self::SnackRequest(h) => h.encode_into(lengths, out),
            Self::NopIn(h) => h.encode_into(lengths, out),
            Self::ScsiResponse(h) => h.encode_into(lengths, out),
            Self::TaskMgmtResponse(h) => h.encode_into(lengths, out),
            Self::LoginResponse(h) => h.encode_into(lengths, out),
            Self::TextResponse(h) => h.encode_into(lengths, out),
            Self::DataIn(h) => h.encode_into(lengths, out),
            Self::LogoutResponse(h) => h.encode_into(lengths, out),
            Self::R2t(h) => h.encode_into(lengths, out),
            Self::AsyncMessage(h) => h.encode_into(lengths, out),
            Self::Reject(h) => h.encode_into(lengths, out),
        }
    }

    /// This header's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::NopOut(_) => NopOut::OPCODE,
            Self::ScsiCommand(_) => ScsiCommand::OPCODE,
            Self::TaskMgmtRequest(_) => TaskMgmtRequest::OPCODE,
            Self::LoginRequest(_) => LoginRequest::OPCODE,
            Self::TextRequest(_) => TextRequest::OPCODE,
            Self::DataOut(_) => DataOut::OPCODE,
            Self::LogoutRequest(_) => LogoutRequest::OPCODE,
            Self::SnackRequest(_) => SnackRequest::OPCODE,
            Self::NopIn(_) => NopIn::OPCODE,
            Self::ScsiResponse(_) => ScsiResponse::OPCODE,
            Self::TaskMgmtResponse(_) => TaskMgmtResponse::OPCODE,
            Self::LoginResponse(_) => LoginResponse::OPCODE,
            Self::TextResponse(_) => TextResponse::OPCODE,
            Self::DataIn(_) => DataIn::OPCODE,
            Self::LogoutResponse(_) => LogoutResponse::OPCODE,
            Self::R2t(_) => R2t::OPCODE,
            Self::AsyncMessage(_) => AsyncMessage::OPCODE,
            Self::Reject(_) => Reject::OPCODE,
        }
    }

    /// The Initiator Task Tag ([`Itt::RESERVED`] for Reject and Asynchronous
    /// Message, which carry `0xffffffff`).
    pub fn itt(&self) -> Itt {
        match self {
            Self::NopOut(h) => h.itt,
            Self::ScsiCommand(h) => h.itt,
            Self::TaskMgmtRequest(h) => h.itt,
            Self::LoginRequest(h) => h.itt,
            Self::TextRequest(h) => h.itt,
            Self::DataOut(h) => h.itt,
            Self::LogoutRequest(h) => h.itt,
            Self::SnackRequest(h) => h.itt,
            Self::NopIn(h) => h.itt,
            Self::ScsiResponse(h) => h.itt,
            Self::TaskMgmtResponse(h) => h.itt,
            Self::LoginResponse(h) => h.itt,
            Self::TextResponse(h) => h.itt,
            Self::DataIn(h) => h.itt,
            Self::LogoutResponse(h) => h.itt,
            Self::R2t(h) => h.itt,
            Self::AsyncMessage(_) | Self::Reject(_) => Itt::RESERVED,
        }
    }

    /// The I (immediate delivery) bit; always false for PDUs without one.
    /// Login Requests always carry it.
    pub fn is_immediate(&self) -> bool {
        match self {
            Self::NopOut(h) => h.immediate,
            Self::ScsiCommand(h) => h.immediate,
            Self::TaskMgmtRequest(h) => h.immediate,
            Self::LoginRequest(_) => true,
            Self::TextRequest(h) => h.immediate,
            Self::LogoutRequest(h) => h.immediate,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_vendor_opcodes_are_unsupported() {
        for op in [0x07u8, 0x1c, 0x1d, 0x1e, 0x27, 0x3c, 0x3e] {
            let mut b = [0u8; BHS_LEN];
            b[0] = op;
            assert_eq!(
                PduHeader::decode(&b),
                Err(PduError::UnsupportedOpcode(Opcode(op))),
                "{op:#x}"
            );
        }
    }

    #[test]
    fn typed_decode_checks_the_opcode() {
        let b = NopIn::default().encode(BhsLengths::ZERO);
        assert_eq!(
            NopOut::decode(&b),
            Err(PduError::InvalidField {
                opcode: Opcode::NOP_IN,
                field: "opcode"
            })
        );
    }
}
