//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use super::header_codec;
use crate::codes::{LogoutReason, LogoutResponseCode, Opcode};
use crate::error::PduError;
use crate::fields::Itt;
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, IMMEDIATE, bit, get_itt, get_sn, get_u16, immediate, put_itt, put_sn, put_u16,
};

/// Logout Request (§11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    /// I bit.
    pub immediate: bool,
    /// Reason code (7 bits).
    pub reason: LogoutReason,
    /// ITT.
    pub itt: Itt,
    /// CID of the connection to close (reserved for session close).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
}

impl LogoutRequest {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            immediate: immediate(b),
            reason: LogoutReason(b[1] & 0x7f),
            itt: get_itt(b),
            cid: get_u16(b, 20),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | bit(self.immediate, IMMEDIATE);
        b[1] = FINAL | (self.reason.0 & 0x7f);
        put_itt(b, self.itt);
        put_u16(b, 20, self.cid);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
    }
}
header_codec!(LogoutRequest, Opcode::LOGOUT_REQUEST);

/// Logout Response (§11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// Response code.
    pub response: LogoutResponseCode,
    /// ITT of the request answered.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// Seconds to wait before reconnecting (for recovery).
    pub time2wait: u16,
    /// Seconds the target keeps connection state for recovery.
    pub time2retain: u16,
}

impl LogoutResponse {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            response: LogoutResponseCode(b[2]),
            itt: get_itt(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            time2wait: get_u16(b, 40),
            time2retain: get_u16(b, 42),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = FINAL;
        b[2] = self.response.0;
        put_itt(b, self.itt);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        put_u16(b, 40, self.time2wait);
        put_u16(b, 42, self.time2retain);
    }
}
header_codec!(LogoutResponse, Opcode::LOGOUT_RESPONSE);
