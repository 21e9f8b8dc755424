//! Text Request (RFC 7143 §11.10) and Text Response (§11.11).

use super::header_codec;
use crate::codes::Opcode;
use crate::error::PduError;
use crate::fields::{Itt, Lun, Ttt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, CONTINUE, FINAL, IMMEDIATE, bit, flag, get_itt, get_lun, get_sn, get_ttt, immediate,
    put_itt, put_lun, put_sn, put_ttt,
};

/// Text Request (§11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRequest {
    /// I bit.
    pub immediate: bool,
    /// F bit: the last request of the text sequence.
    pub final_pdu: bool,
    /// C bit: the text continues in the next request (F must then be 0).
    pub continue_flag: bool,
    /// LUN or reserved.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT: [`Ttt::RESERVED`] to start, else copied from the Text Response.
    pub ttt: Ttt,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
}

impl TextRequest {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            immediate: immediate(b),
            final_pdu: flag(b, 1, FINAL),
            continue_flag: flag(b, 1, CONTINUE),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | bit(self.immediate, IMMEDIATE);
        b[1] = bit(self.final_pdu, FINAL) | bit(self.continue_flag, CONTINUE);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
    }
}
header_codec!(TextRequest, Opcode::TEXT_REQUEST);

/// Text Response (§11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextResponse {
    /// F bit: the target has finished the text sequence.
    pub final_pdu: bool,
    /// C bit: the text continues in the next response.
    pub continue_flag: bool,
    /// LUN or reserved.
    pub lun: Lun,
    /// ITT of the request answered.
    pub itt: Itt,
    /// TTT: set when more responses follow, [`Ttt::RESERVED`] on the final one.
    pub ttt: Ttt,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
}

impl TextResponse {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            final_pdu: flag(b, 1, FINAL),
            continue_flag: flag(b, 1, CONTINUE),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = bit(self.final_pdu, FINAL) | bit(self.continue_flag, CONTINUE);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
    }
}
header_codec!(TextResponse, Opcode::TEXT_RESPONSE);
