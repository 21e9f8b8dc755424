//! SNACK Request (RFC 7143 §11.16).

use super::header_codec;
use crate::codes::{Opcode, SnackType};
use crate::error::PduError;
use crate::fields::{Itt, Lun, Ttt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, get_itt, get_lun, get_sn, get_ttt, get_u32, put_itt, put_lun, put_sn, put_ttt,
    put_u32,
};

/// SNACK Request (§11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnackRequest {
    /// Type (4 bits).
    pub snack_type: SnackType,
    /// LUN (DataACK and R-Data SNACK) or reserved.
    pub lun: Lun,
    /// ITT of the task, or [`Itt::RESERVED`] for a Status SNACK.
    pub itt: Itt,
    /// TTT of the acknowledged Data-In (DataACK), SNACK Tag (R-Data), or reserved.
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
    /// BegRun: first DataSN, R2TSN or StatSN requested.
    pub beg_run: u32,
    /// RunLength: number of PDUs requested (0 = all from BegRun).
    pub run_length: u32,
}

impl SnackRequest {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            snack_type: SnackType(b[1] & 0x0f),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            exp_stat_sn: get_sn(b, 28),
            beg_run: get_u32(b, 40),
            run_length: get_u32(b, 44),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = FINAL | (self.snack_type.0 & 0x0f);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 28, self.exp_stat_sn);
        put_u32(b, 40, self.beg_run);
        put_u32(b, 44, self.run_length);
    }
}
header_codec!(SnackRequest, Opcode::SNACK_REQUEST);
