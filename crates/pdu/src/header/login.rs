//! Login Request (RFC 7143 §11.12) and Login Response (§11.13).

use super::header_codec;
use crate::codes::{LoginStage, LoginStatus, Opcode};
use crate::error::PduError;
use crate::fields::{Isid, Itt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, CONTINUE, IMMEDIATE, bit, flag, get_isid, get_itt, get_sn, get_u16, put_isid, put_itt,
    put_sn, put_u16,
};

/// The T (transit) bit of byte 1.
const TRANSIT: u8 = 0x80;

/// Decodes the stage bits of byte 1: CSG, and NSG when T is set (NSG is
/// reserved when T is 0, §11.12.3).
fn stages(b1: u8) -> (LoginStage, Option<LoginStage>) {
    let csg = LoginStage((b1 >> 2) & 3);
    let nsg = (b1 & TRANSIT != 0).then_some(LoginStage(b1 & 3));
    (csg, nsg)
}

fn stage_byte(csg: LoginStage, nsg: Option<LoginStage>, cont: bool) -> u8 {
    let t = match nsg {
        Some(n) => TRANSIT | (n.0 & 3),
        None => 0,
    };
    t | bit(cont, CONTINUE) | ((csg.0 & 3) << 2)
}

/// Login Request (§11.12). The I bit is always set on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginRequest {
    /// NSG when the T (transit) bit is set: the initiator is ready to move to
    /// that stage. `None` means T = 0.
    pub next_stage: Option<LoginStage>,
    /// C bit: the text continues in the next request (T must then be 0).
    pub continue_flag: bool,
    /// CSG: current stage.
    pub current_stage: LoginStage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: Isid,
    /// TSIH: 0 for a new session, else the session's handle.
    pub tsih: u16,
    /// ITT.
    pub itt: Itt,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN (or reserved on the first request).
    pub exp_stat_sn: Sn,
}

impl LoginRequest {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        let (current_stage, next_stage) = stages(b[1]);
        Ok(Self {
            next_stage,
            continue_flag: flag(b, 1, CONTINUE),
            current_stage,
            version_max: b[2],
            version_min: b[3],
            isid: get_isid(b),
            tsih: get_u16(b, 14),
            itt: get_itt(b),
            cid: get_u16(b, 20),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | IMMEDIATE;
        b[1] = stage_byte(self.current_stage, self.next_stage, self.continue_flag);
        b[2] = self.version_max;
        b[3] = self.version_min;
        put_isid(b, self.isid);
        put_u16(b, 14, self.tsih);
        put_itt(b, self.itt);
        put_u16(b, 20, self.cid);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
    }
}
header_codec!(LoginRequest, Opcode::LOGIN_REQUEST);

/// Login Response (§11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginResponse {
    /// NSG when the T bit is set. `None` means T = 0.
    pub next_stage: Option<LoginStage>,
    /// C bit.
    pub continue_flag: bool,
    /// CSG.
    pub current_stage: LoginStage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID echoed from the request.
    pub isid: Isid,
    /// TSIH: the session handle, set on the final response of a leading login.
    pub tsih: u16,
    /// ITT echoed from the request.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// Status-Class and Status-Detail.
    pub status: LoginStatus,
}

impl LoginResponse {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        let (current_stage, next_stage) = stages(b[1]);
        Ok(Self {
            next_stage,
            continue_flag: flag(b, 1, CONTINUE),
            current_stage,
            version_max: b[2],
            version_active: b[3],
            isid: get_isid(b),
            tsih: get_u16(b, 14),
            itt: get_itt(b),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            status: LoginStatus(get_u16(b, 36)),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = stage_byte(self.current_stage, self.next_stage, self.continue_flag);
        b[2] = self.version_max;
        b[3] = self.version_active;
        put_isid(b, self.isid);
        put_u16(b, 14, self.tsih);
        put_itt(b, self.itt);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        put_u16(b, 36, self.status.0);
    }
}
header_codec!(LoginResponse, Opcode::LOGIN_RESPONSE);
