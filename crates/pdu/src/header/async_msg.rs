//! Asynchronous Message (RFC 7143 §11.9).

use super::header_codec;
use crate::codes::{AsyncEvent, Opcode};
use crate::error::PduError;
use crate::fields::{Itt, Lun};
use crate::serial::Sn;
use crate::wire::{Bhs, FINAL, get_lun, get_sn, get_u16, put_itt, put_lun, put_sn, put_u16};

/// Asynchronous Message (§11.9). Its ITT is always `0xffffffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    /// LUN (SCSI events) or reserved.
    pub lun: Lun,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// AsyncEvent.
    pub event: AsyncEvent,
    /// AsyncVCode (vendor detail).
    pub vendor_code: u8,
    /// Parameter1 (e.g. the CID to be dropped).
    pub parameter1: u16,
    /// Parameter2 (Time2Wait for drops).
    pub parameter2: u16,
    /// Parameter3 (Time2Retain for drops, logout deadline for event 1).
    pub parameter3: u16,
}

impl AsyncMessage {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            lun: get_lun(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            event: AsyncEvent(b[36]),
            vendor_code: b[37],
            parameter1: get_u16(b, 38),
            parameter2: get_u16(b, 40),
            parameter3: get_u16(b, 42),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = FINAL;
        put_lun(b, self.lun);
        put_itt(b, Itt::RESERVED);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        b[36] = self.event.0;
        b[37] = self.vendor_code;
        put_u16(b, 38, self.parameter1);
        put_u16(b, 40, self.parameter2);
        put_u16(b, 42, self.parameter3);
    }
}
header_codec!(AsyncMessage, Opcode::ASYNC_MESSAGE);
