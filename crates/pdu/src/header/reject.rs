//! Reject (RFC 7143 §11.17). The data segment carries the complete header
//! (BHS and AHS) of the rejected PDU.

use super::header_codec;
use crate::codes::{Opcode, RejectReason};
use crate::error::PduError;
use crate::fields::Itt;
use crate::serial::Sn;
use crate::wire::{Bhs, FINAL, get_sn, put_itt, put_sn};

/// Reject (§11.17). Its ITT is always `0xffffffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject {
    /// Reason.
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// DataSN/R2TSN of a rejected SNACK (reason SNACK Reject), else reserved.
    pub data_sn_or_r2t_sn: Sn,
}

impl Reject {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            reason: RejectReason(b[2]),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            data_sn_or_r2t_sn: get_sn(b, 36),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = FINAL;
        b[2] = self.reason.0;
        put_itt(b, Itt::RESERVED);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        put_sn(b, 36, self.data_sn_or_r2t_sn);
    }
}
header_codec!(Reject, Opcode::REJECT);
