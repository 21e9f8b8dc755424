//! Ready To Transfer (RFC 7143 §11.8).

use super::header_codec;
use crate::codes::Opcode;
use crate::error::PduError;
use crate::fields::{Itt, Lun, Ttt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, get_itt, get_lun, get_sn, get_ttt, get_u32, put_itt, put_lun, put_sn, put_ttt,
    put_u32,
};

/// R2T (§11.8): the target asks for `desired_data_transfer_length` bytes at
/// `buffer_offset` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    /// LUN.
    pub lun: Lun,
    /// ITT of the command.
    pub itt: Itt,
    /// TTT the initiator copies into the Data-Out PDUs.
    pub ttt: Ttt,
    /// StatSN (the next StatSN; not advanced by R2T).
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// R2TSN.
    pub r2t_sn: Sn,
    /// Buffer offset of the requested data.
    pub buffer_offset: u32,
    /// Desired data transfer length (≤ MaxBurstLength).
    pub desired_data_transfer_length: u32,
}

impl R2t {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            r2t_sn: get_sn(b, 36),
            buffer_offset: get_u32(b, 40),
            desired_data_transfer_length: get_u32(b, 44),
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
        put_sn(b, 36, self.r2t_sn);
        put_u32(b, 40, self.buffer_offset);
        put_u32(b, 44, self.desired_data_transfer_length);
    }
}
header_codec!(R2t, Opcode::R2T);
