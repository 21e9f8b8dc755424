//! Task Management Function Request (RFC 7143 §11.5) and Response (§11.6).

use super::header_codec;
use crate::codes::{Opcode, TmfFunction, TmfResponse};
use crate::error::PduError;
use crate::fields::{Itt, Lun};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, IMMEDIATE, bit, get_itt, get_lun, get_sn, get_u32, immediate, put_itt, put_lun,
    put_sn, put_u32,
};

/// Task Management Function Request (§11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    /// I bit.
    pub immediate: bool,
    /// Function code (7 bits).
    pub function: TmfFunction,
    /// LUN (for LU-scoped functions).
    pub lun: Lun,
    /// ITT of this request.
    pub itt: Itt,
    /// ITT of the task to act on (ABORT TASK, TASK REASSIGN, QUERY TASK), else reserved.
    pub referenced_task_tag: Itt,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
    /// CmdSN of the referenced task (ABORT TASK / QUERY TASK of a non-immediate task).
    pub ref_cmd_sn: Sn,
    /// ExpDataSN (TASK REASSIGN).
    pub exp_data_sn: Sn,
}

impl TaskMgmtRequest {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            immediate: immediate(b),
            function: TmfFunction(b[1] & 0x7f),
            lun: get_lun(b),
            itt: get_itt(b),
            referenced_task_tag: Itt(get_u32(b, 20)),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
            ref_cmd_sn: get_sn(b, 32),
            exp_data_sn: get_sn(b, 36),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | bit(self.immediate, IMMEDIATE);
        b[1] = FINAL | (self.function.0 & 0x7f);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_u32(b, 20, self.referenced_task_tag.0);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
        put_sn(b, 32, self.ref_cmd_sn);
        put_sn(b, 36, self.exp_data_sn);
    }
}
header_codec!(TaskMgmtRequest, Opcode::TASK_MGMT_REQUEST);

/// Task Management Function Response (§11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    /// Response code.
    pub response: TmfResponse,
    /// ITT of the request answered.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
}

impl TaskMgmtResponse {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            response: TmfResponse(b[2]),
            itt: get_itt(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
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
    }
}
header_codec!(TaskMgmtResponse, Opcode::TASK_MGMT_RESPONSE);
