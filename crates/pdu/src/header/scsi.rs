//! SCSI Command (RFC 7143 §11.3) and SCSI Response (§11.4), with the CDB
//! reassembled from an Extended CDB AHS (§11.3.5, §11.2.2.3) and the sense
//! data segment of a response (§11.4.7).

use super::header_codec;
use crate::ahs::{AhsRef, iter_ahs};
use crate::codes::{Opcode, ResponseCode, ScsiStatus, TaskAttribute};
use crate::error::PduError;
use crate::fields::{Itt, Lun, Residual};
use crate::serial::Sn;
use crate::wire::{
    Bhs, FINAL, IMMEDIATE, bit, flag, get_itt, get_lun, get_sn, get_u32, immediate, put_itt,
    put_lun, put_sn, put_u32,
};

/// R (read) bit of SCSI Command byte 1.
const READ: u8 = 0x40;
/// W (write) bit of SCSI Command byte 1.
const WRITE: u8 = 0x20;

/// Longest CDB accepted (SPC-5 variable-length CDBs are at most 260 bytes).
pub const MAX_CDB_LEN: usize = 260;

/// SCSI Command (§11.3).
///
/// ```
/// use rtgt_pdu::{BhsLengths, Itt, Lun, PduHeader, ScsiCommand, Sn, TaskAttribute};
///
/// let mut cdb = [0u8; 16];
/// cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0, 0x10, 0, 0, 8, 0]); // READ(10)
/// let cmd = ScsiCommand {
///     final_pdu: true,
///     read: true,
///     attr: TaskAttribute::SIMPLE,
///     lun: Lun::from_number(1).unwrap(),
///     itt: Itt(1),
///     expected_data_transfer_length: 4096,
///     cmd_sn: Sn(10),
///     cdb,
///     ..Default::default()
/// };
/// let bhs = cmd.encode(BhsLengths::ZERO);
/// assert_eq!(bhs[1], 0xc1); // F, R, SIMPLE
/// assert_eq!(PduHeader::decode(&bhs)?, PduHeader::ScsiCommand(cmd));
/// # Ok::<(), rtgt_pdu::PduError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows.
    pub final_pdu: bool,
    /// R bit: data will be read (Data-In expected).
    pub read: bool,
    /// W bit: data will be written (Data-Out expected).
    pub write: bool,
    /// Task attribute (3 bits).
    pub attr: TaskAttribute,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// Expected data transfer length (the write length for bidirectional commands).
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: Sn,
    /// ExpStatSN.
    pub exp_stat_sn: Sn,
    /// First 16 bytes of the CDB (zero padded); longer CDBs continue in an
    /// Extended CDB AHS, see [`ScsiCommand::full_cdb`].
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&b[32..48]);
        Ok(Self {
            immediate: immediate(b),
            final_pdu: flag(b, 1, FINAL),
            read: flag(b, 1, READ),
            write: flag(b, 1, WRITE),
            attr: TaskAttribute(b[1] & 0x07),
            lun: get_lun(b),
            itt: get_itt(b),
            expected_data_transfer_length: get_u32(b, 20),
            cmd_sn: get_sn(b, 24),
            exp_stat_sn: get_sn(b, 28),
            cdb,
        })
    }

    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        b[0] = Self::OPCODE.0 | bit(self.immediate, IMMEDIATE);
        b[1] = bit(self.final_pdu, FINAL)
            | bit(self.read, READ)
            | bit(self.write, WRITE)
            | (self.attr.0 & 0x07);
        put_lun(b, self.lun);
        put_itt(b, self.itt);
        put_u32(b, 20, self.expected_data_transfer_length);
        put_sn(b, 24, self.cmd_sn);
        put_sn(b, 28, self.exp_stat_sn);
        b[32..48].copy_from_slice(&self.cdb);
    }

    /// The complete CDB: the 16 header bytes followed by the Extended CDB AHS
    /// if `ahs` (the raw AHS area) carries one. Without one, the CDB is the 16
    /// header bytes.
    pub fn full_cdb(&self, ahs: &[u8]) -> Result<Cdb, PduError> {
        let mut out = Cdb {
            len: 16,
            bytes: [0; MAX_CDB_LEN],
        };
        out.bytes[..16].copy_from_slice(&self.cdb);
        let mut seen = false;
        for entry in iter_ahs(ahs) {
            if let AhsRef::ExtendedCdb(ext) = entry? {
                if seen {
                    return Err(PduError::InvalidAhs("more than one extended CDB"));
                }
                seen = true;
                let total = 16 + ext.len();
                let dst = out
                    .bytes
                    .get_mut(16..total)
                    .ok_or(PduError::InvalidAhs("extended CDB longer than 260 bytes"))?;
                dst.copy_from_slice(ext);
                out.len = total as u16;
            }
        }
        Ok(out)
    }

    /// The bidirectional expected read-data length from the AHS, if present.
    pub fn bidi_read_length(ahs: &[u8]) -> Result<Option<u32>, PduError> {
        for entry in iter_ahs(ahs) {
            if let AhsRef::BidiReadLength(n) = entry? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }
}
header_codec!(ScsiCommand, Opcode::SCSI_COMMAND);

/// A CDB of up to [`MAX_CDB_LEN`] bytes held without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    len: u16,
    bytes: [u8; MAX_CDB_LEN],
}

impl Cdb {
    /// The CDB bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }
}

impl core::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Cdb({:02x?})", self.as_bytes())
    }
}

/// SCSI Response byte 1 flag bits (§11.4.1).
const BIDI_OVERFLOW: u8 = 0x10;
const BIDI_UNDERFLOW: u8 = 0x08;
const OVERFLOW: u8 = 0x04;
const UNDERFLOW: u8 = 0x02;

/// SCSI Response (§11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// o/u bits and Bidirectional Read Residual Count.
    pub bidi_read_residual: Residual,
    /// O/U bits and Residual Count.
    pub residual: Residual,
    /// iSCSI service response.
    pub response: ResponseCode,
    /// SCSI status (valid when `response` is COMMAND_COMPLETED).
    pub status: ScsiStatus,
    /// ITT of the command.
    pub itt: Itt,
    /// SNACK Tag (R-Data SNACK), else 0.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: Sn,
    /// ExpCmdSN.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN.
    pub max_cmd_sn: Sn,
    /// ExpDataSN: number of Data-In (and R2T) PDUs sent for the command.
    pub exp_data_sn: Sn,
}

impl ScsiResponse {
    pub(crate) fn decode_fields(b: &Bhs) -> Result<Self, PduError> {
        let bad = |field| PduError::InvalidField {
            opcode: Self::OPCODE,
            field,
        };
        let bidi_read_residual = Residual::from_bits(
            flag(b, 1, BIDI_OVERFLOW),
            flag(b, 1, BIDI_UNDERFLOW),
            get_u32(b, 40),
        )
        .ok_or(bad("bidirectional residual flags (o and u both set)"))?;
        let residual =
            Residual::from_bits(flag(b, 1, OVERFLOW), flag(b, 1, UNDERFLOW), get_u32(b, 44))
                .ok_or(bad("residual flags (O and U both set)"))?;
        Ok(Self {
            bidi_read_residual,
            residual,
            response: ResponseCode(b[2]),
            status: ScsiStatus(b[3]),
            itt: get_itt(b),
            snack_tag: get_u32(b, 20),
            stat_sn: get_sn(b, 24),
            exp_cmd_sn: get_sn(b, 28),
            max_cmd_sn: get_sn(b, 32),
            exp_data_sn: get_sn(b, 36),
        })
    }

    #[inline]
    pub(crate) fn encode_fields(&self, b: &mut Bhs) {
        let (bo, bu) = self.bidi_read_residual.bits();
        let (o, u) = self.residual.bits();
        b[0] = Self::OPCODE.0;
        b[1] = FINAL
            | bit(bo, BIDI_OVERFLOW)
            | bit(bu, BIDI_UNDERFLOW)
            | bit(o, OVERFLOW)
            | bit(u, UNDERFLOW);
        b[2] = self.response.0;
        b[3] = self.status.0;
        put_itt(b, self.itt);
        put_u32(b, 20, self.snack_tag);
        put_sn(b, 24, self.stat_sn);
        put_sn(b, 28, self.exp_cmd_sn);
        put_sn(b, 32, self.max_cmd_sn);
        put_sn(b, 36, self.exp_data_sn);
        put_u32(b, 40, self.bidi_read_residual.count());
        put_u32(b, 44, self.residual.count());
    }
}
header_codec!(ScsiResponse, Opcode::SCSI_RESPONSE);

/// The data segment of a SCSI Response (§11.4.7): a 2-byte SenseLength, the
/// sense data, then any response data. Also the layout of a SCSI
/// Asynchronous Message's data (§11.9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenseSegment<'a> {
    /// Sense data (fixed or descriptor format, SPC-5 §4.4).
    pub sense: &'a [u8],
    /// iSCSI response data following the sense data.
    pub response_data: &'a [u8],
}

impl<'a> SenseSegment<'a> {
    /// Splits a SCSI Response data segment. An empty segment has no sense.
    pub fn parse(data: &'a [u8]) -> Result<Self, PduError> {
        if data.is_empty() {
            return Ok(Self::default());
        }
        let bad = PduError::InvalidField {
            opcode: Opcode::SCSI_RESPONSE,
            field: "SenseLength",
        };
        let (len, rest) = data.split_first_chunk::<2>().ok_or(bad.clone())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len > rest.len() {
            return Err(bad);
        }
        let (sense, response_data) = rest.split_at(len);
        Ok(Self {
            sense,
            response_data,
        })
    }

    /// Appends the segment (SenseLength, sense, response data) to `out`.
    /// Sense data longer than 65535 bytes is truncated to fit SenseLength
    /// (SPC sense data is at most 252 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = self.sense.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(self.sense.get(..len).unwrap_or(self.sense));
        out.extend_from_slice(self.response_data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ahs::Ahs;

    #[test]
    fn full_cdb_joins_the_extended_cdb_ahs() {
        let mut ext = vec![];
        Ahs::encode_all(&[Ahs::ExtendedCdb((16u8..32).collect())], &mut ext).unwrap();
        let mut cmd = ScsiCommand::default();
        for (i, b) in cmd.cdb.iter_mut().enumerate() {
            *b = i as u8;
        }
        let cdb = cmd.full_cdb(&ext).unwrap();
        assert_eq!(cdb.as_bytes(), (0u8..32).collect::<Vec<_>>());
        assert_eq!(cmd.full_cdb(&[]).unwrap().as_bytes(), &cmd.cdb);
    }

    #[test]
    fn oversized_and_duplicate_extended_cdbs_are_invalid() {
        let mut raw = vec![];
        Ahs::encode_all(&[Ahs::ExtendedCdb(vec![0; 245])], &mut raw).unwrap();
        assert!(matches!(
            ScsiCommand::default().full_cdb(&raw),
            Err(PduError::InvalidAhs(_))
        ));
        let mut raw = vec![];
        Ahs::encode_all(
            &[Ahs::ExtendedCdb(vec![1; 4]), Ahs::ExtendedCdb(vec![2; 4])],
            &mut raw,
        )
        .unwrap();
        assert!(matches!(
            ScsiCommand::default().full_cdb(&raw),
            Err(PduError::InvalidAhs(_))
        ));
    }

    #[test]
    fn bidi_read_length_from_ahs() {
        let mut raw = vec![];
        Ahs::encode_all(&[Ahs::BidiReadLength(0x1234)], &mut raw).unwrap();
        assert_eq!(ScsiCommand::bidi_read_length(&raw), Ok(Some(0x1234)));
        assert_eq!(ScsiCommand::bidi_read_length(&[]), Ok(None));
    }

    #[test]
    fn response_with_both_residual_bits_is_a_protocol_error() {
        let mut b = ScsiResponse::default().encode(crate::BhsLengths::ZERO);
        b[1] |= OVERFLOW | UNDERFLOW;
        let e = ScsiResponse::decode(&b).unwrap_err();
        assert_eq!(e.reject_reason(), Some(crate::RejectReason::PROTOCOL_ERROR));
    }

    #[test]
    fn sense_segment_round_trip_and_bounds() {
        let sense = [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0];
        let mut out = vec![];
        SenseSegment {
            sense: &sense,
            response_data: &[],
        }
        .encode(&mut out);
        assert_eq!(out[..2], [0, 18]);
        let seg = SenseSegment::parse(&out).unwrap();
        assert_eq!(seg.sense, &sense);
        assert!(seg.response_data.is_empty());
        assert!(SenseSegment::parse(&[0, 5, 1]).is_err());
        assert!(SenseSegment::parse(&[0]).is_err());
        assert_eq!(SenseSegment::parse(&[]).unwrap(), SenseSegment::default());
    }
}
