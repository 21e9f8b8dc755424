//! SCSI Data-Out (RFC 7143 §11.7) and SCSI Data-In (§11.7), the per-IO data
//! PDUs. Data-In may carry the command's status (S bit, "phase collapse",
//! §11.7.3), modelled as [`DataIn::status`].

use super::header_codec;
use crate::codes::{Opcode, ScsiStatus};
use crate::error::PduError;
use crate::fields::{Itt, Lun, Residual, Ttt};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, bit, flag, get_itt, get_lun, get_sn, get_ttt, get_u32, put_itt, put_lun, put_sn,
    put_ttt, put_u32,
};

/// SCSI Data-Out (§11.7): write data sent solicited (after an R2T) or
/// unsolicited (up to FirstBurstLength).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOut {
    /// F bit: last PDU of the sequence (burst).
    pub final_pdu: bool,
    /// LUN (copied from the R2T for solicited data).
    pub lun: Lun,
    /// ITT of the command.
    pub itt: Itt,
    /// TTT of the R2T, or [`Ttt::RESERVED`] for unsolicited data.
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
    /// DataSN within the sequence.
    pub data_sn: Sn,
    /// Offset of this PDU's data within the command's buffer.
    pub buffer_offset: u32,
}

impl DataOut {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        Ok(Self {
            final_pdu: flag(b, 1, FINAL),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            exp_stat_sn: get_sn(b, 28),
            data_sn: get_sn(b, 36),
            buffer_offset: get_u32(b, 40),
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        b[1] = bit(self.final_pdu, FINAL);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 28, self.exp_stat_sn);
        put_sn(b, 36, self.data_sn);
        put_u32(b, 40, self.buffer_offset);
    }
}
header_codec!(DataOut, Opcode::SCSI_DATA_OUT);

/// A (acknowledge) bit of Data-In byte 1.
const ACK: u8 = 0x40;
/// O (residual overflow) bit of Data-In byte 1.
const OVERFLOW: u8 = 0x04;
/// U (residual underflow) bit of Data-In byte 1.
const UNDERFLOW: u8 = 0x02;
/// S (status) bit of Data-In byte 1.
const STATUS: u8 = 0x01;

/// The status part of a Data-In with the S bit set (§11.7.3–§11.7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataInStatus {
    /// SCSI status (GOOD, CONDITION MET or an intermediate status; never
    /// CHECK CONDITION, which needs a SCSI Response with sense).
    pub status: ScsiStatus,
    /// StatSN.
    pub stat_sn: Sn,
    /// Residual of the whole command.
    pub residual: Residual,
}

/// SCSI Data-In (§11.7): read data, optionally carrying the final status.
///
/// ```
/// use rtgt_pdu::{BhsLengths, DataIn, DataInStatus, Itt, Lun, ScsiStatus, Sn, Ttt};
///
/// let hdr = DataIn {
///     final_pdu: true,
///     itt: Itt(0x10),
///     ttt: Ttt::RESERVED,
///     data_sn: Sn(0),
///     status: Some(DataInStatus { status: ScsiStatus::GOOD, stat_sn: Sn(5), ..Default::default() }),
///     ..Default::default()
/// };
/// let bhs = hdr.encode(BhsLengths::data_bounded(4096));
/// assert_eq!(bhs[0], 0x25);
/// assert_eq!(bhs[1], 0x81); // F and S
/// assert_eq!(bhs[5..8], [0x00, 0x10, 0x00]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    /// F bit: last PDU of the sequence.
    pub final_pdu: bool,
    /// A bit: the target asks for a DataACK SNACK (ERL > 0).
    pub ack_requested: bool,
    /// LUN (required when the A bit is set), else reserved.
    pub lun: Lun,
    /// ITT of the command.
    pub itt: Itt,
    /// TTT (with the A bit), else [`Ttt::RESERVED`].
    pub ttt: Ttt,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// DataSN.
    pub data_sn: Sn,
    /// Offset of this PDU's data within the command's buffer.
    pub buffer_offset: u32,
    /// Status carried with the last data (S bit); RFC 7143 requires F with S.
    pub status: Option<DataInStatus>,
}

impl DataIn {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        let status = if flag(b, 1, STATUS) {
            let residual =
                Residual::from_bits(flag(b, 1, OVERFLOW), flag(b, 1, UNDERFLOW), get_u32(b, 44))
                    .ok_or(PduError::InvalidField {
                        opcode: Self::OPCODE,
                        field: "residual flags (O and U both set)",
                    })?;
            Some(DataInStatus {
                status: ScsiStatus(b[3]),
                stat_sn: get_sn(b, 24),
                residual,
            })
        } else {
            None
        };
        Ok(Self {
            final_pdu: flag(b, 1, FINAL),
            ack_requested: flag(b, 1, ACK),
            lun: get_lun(b),
            itt: get_itt(b),
            ttt: get_ttt(b),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            data_sn: get_sn(b, 36),
            buffer_offset: get_u32(b, 40),
            status,
        })
    }

    #[inline]
    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0;
        let mut b1 = bit(self.final_pdu, FINAL) | bit(self.ack_requested, ACK);
        if let Some(st) = self.status {
            let (o, u) = st.residual.bits();
            b1 |= STATUS | bit(o, OVERFLOW) | bit(u, UNDERFLOW);
            b[3] = st.status.0;
            put_sn(b, 24, st.stat_sn);
            put_u32(b, 44, st.residual.count());
        }
        b[1] = b1;
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_ttt(b, self.ttt);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        put_sn(b, 36, self.data_sn);
        put_u32(b, 40, self.buffer_offset);
    }
}
header_codec!(DataIn, Opcode::SCSI_DATA_IN);
