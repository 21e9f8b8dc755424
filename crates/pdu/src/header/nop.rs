//! NOP-Out (RFC 7143 §11.18) and NOP-In (§11.19).

use super::header_codec;
use crate::codes::Opcode;
use crate::error::PduError;
use crate::fields::{Itt, Lun, Ttt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, IMMEDIATE, bit, get_itt, get_lun, get_sn, get_ttt, immediate, put_itt, put_lun,
    put_sn, put_ttt,
};

/// NOP-Out: an initiator ping, or the answer to a target's NOP-In (§11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopOut {
    /// I bit: immediate delivery (CmdSN is not advanced).
    pub immediate: bool,
    /// LUN; echoes the NOP-In's LUN when answering one.
    pub lun: Lun,
    /// ITT; [`Itt::RESERVED`] when answering a NOP-In.
    pub itt: Itt,
    /// TTT copied from the NOP-In being answered, else [`Ttt::RESERVED`].
    pub ttt: Ttt,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
}

impl NopOut {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            immediate: immediate(b),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | bit(self.immediate, IMMEDIATE);
        b[1] = FINAL;
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
    }
}
header_codec!(NopOut, Opcode::NOP_OUT);

/// NOP-In: a target ping or the answer to a NOP-Out (§11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopIn {
    /// LUN (valid when TTT is not reserved).
    pub lun: Lun,
    /// ITT of the NOP-Out answered, or [`Itt::RESERVED`] for a target ping.
    pub itt: Itt,
    /// TTT the initiator must echo, or [`Ttt::RESERVED`] when no answer is wanted.
    pub ttt: Ttt,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
}

impl NopIn {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
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
        b[1] = FINAL;
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
    }
}
header_codec!(NopIn, Opcode::NOP_IN);
