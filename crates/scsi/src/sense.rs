//! Status codes, sense keys, additional sense codes and sense data (SAM-5 §5.3, SPC-5 §4.4).
//!
//! A failed command is described by a [`ScsiError`]: either a status without sense data
//! (RESERVATION CONFLICT, BUSY, TASK SET FULL) or a [`SenseError`] carrying the sense key, the
//! additional sense code and qualifier, and optionally the INFORMATION field and a
//! sense-key-specific field pointer. [`SenseError::encode`] renders it as fixed-format
//! (SPC-5 §4.4.3) or descriptor-format (SPC-5 §4.4.2) sense data, chosen by the D_SENSE bit of
//! the Control mode page.

use crate::code::wire_code;

wire_code! {
    /// A SCSI status code (SAM-5 §5.3.1).
    pub struct Status(u8) {
        /// The command completed successfully.
        GOOD = 0x00,
        /// Sense data describes why the command failed.
        CHECK_CONDITION = 0x02,
        /// PRE-FETCH: the requested blocks fit in the cache.
        CONDITION_MET = 0x04,
        /// The logical unit is busy.
        BUSY = 0x08,
        /// The command conflicts with a reservation.
        RESERVATION_CONFLICT = 0x18,
        /// The task set is full.
        TASK_SET_FULL = 0x28,
        /// An ACA condition exists.
        ACA_ACTIVE = 0x30,
        /// The command was aborted (TAS=1).
        TASK_ABORTED = 0x40,
    }
}

wire_code! {
    /// A sense key (SPC-5 §4.4.8, table 48).
    pub struct SenseKey(u8) {
        /// No specific sense key information.
        NO_SENSE = 0x0,
        /// The command completed with recovery actions.
        RECOVERED_ERROR = 0x1,
        /// The logical unit is not accessible.
        NOT_READY = 0x2,
        /// A flaw in the medium or in the recorded data.
        MEDIUM_ERROR = 0x3,
        /// A non-recoverable hardware failure.
        HARDWARE_ERROR = 0x4,
        /// An illegal parameter in the CDB or the parameter data.
        ILLEGAL_REQUEST = 0x5,
        /// A unit attention condition.
        UNIT_ATTENTION = 0x6,
        /// The medium is write protected (or the access is otherwise protected).
        DATA_PROTECT = 0x7,
        /// EXTENDED COPY was aborted.
        COPY_ABORTED = 0xA,
        /// The command was aborted by the device server.
        ABORTED_COMMAND = 0xB,
        /// The source data did not match the medium (VERIFY, COMPARE AND WRITE).
        MISCOMPARE = 0xE,
    }
}

wire_code! {
    /// An additional sense code and qualifier, `ASC << 8 | ASCQ` (SPC-5 §4.4.9, table 50).
    pub struct AdditionalSense(u16) {
        /// 00/00 NO ADDITIONAL SENSE INFORMATION.
        NO_ADDITIONAL_SENSE = 0x0000,
        /// 00/16 OPERATION IN PROGRESS.
        OPERATION_IN_PROGRESS = 0x0016,
        /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED.
        NOT_READY_INITIALIZING_COMMAND_REQUIRED = 0x0402,
        /// 08/04 UNREACHABLE COPY TARGET.
        UNREACHABLE_COPY_TARGET = 0x0804,
        /// 0C/00 WRITE ERROR.
        WRITE_ERROR = 0x0C00,
        /// 0D/02 COPY TARGET DEVICE NOT REACHABLE.
        COPY_TARGET_DEVICE_NOT_REACHABLE = 0x0D02,
        /// 0D/03 INCORRECT COPY TARGET DEVICE TYPE.
        INCORRECT_COPY_TARGET_DEVICE_TYPE = 0x0D03,
        /// 0E/03 INVALID FIELD IN COMMAND INFORMATION UNIT.
        INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT = 0x0E03,
        /// 11/00 UNRECOVERED READ ERROR.
        UNRECOVERED_READ_ERROR = 0x1100,
        /// 1A/00 PARAMETER LIST LENGTH ERROR.
        PARAMETER_LIST_LENGTH_ERROR = 0x1A00,
        /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
        MISCOMPARE_DURING_VERIFY_OPERATION = 0x1D00,
        /// 20/00 INVALID COMMAND OPERATION CODE.
        INVALID_COMMAND_OPERATION_CODE = 0x2000,
        /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
        LBA_OUT_OF_RANGE = 0x2100,
        /// 24/00 INVALID FIELD IN CDB.
        INVALID_FIELD_IN_CDB = 0x2400,
        /// 25/00 LOGICAL UNIT NOT SUPPORTED.
        LOGICAL_UNIT_NOT_SUPPORTED = 0x2500,
        /// 26/00 INVALID FIELD IN PARAMETER LIST.
        INVALID_FIELD_IN_PARAMETER_LIST = 0x2600,
        /// 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
        INVALID_RELEASE_OF_PERSISTENT_RESERVATION = 0x2604,
        /// 26/06 TOO MANY TARGET DESCRIPTORS.
        TOO_MANY_TARGET_DESCRIPTORS = 0x2606,
        /// 26/07 UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
        UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = 0x2607,
        /// 26/08 TOO MANY SEGMENT DESCRIPTORS.
        TOO_MANY_SEGMENT_DESCRIPTORS = 0x2608,
        /// 26/09 UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
        UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = 0x2609,
        /// 26/0A UNEXPECTED INEXACT SEGMENT.
        UNEXPECTED_INEXACT_SEGMENT = 0x260A,
        /// 27/00 WRITE PROTECTED.
        WRITE_PROTECTED = 0x2700,
        /// 27/02 SOFTWARE WRITE PROTECTED.
        SOFTWARE_WRITE_PROTECTED = 0x2702,
        /// 27/07 SPACE ALLOCATION FAILED WRITE PROTECT.
        SPACE_ALLOCATION_FAILED_WRITE_PROTECT = 0x2707,
        /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
        POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED = 0x2900,
        /// 29/01 POWER ON OCCURRED.
        POWER_ON_OCCURRED = 0x2901,
        /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED.
        BUS_DEVICE_RESET_FUNCTION_OCCURRED = 0x2903,
        /// 29/07 I_T NEXUS LOSS OCCURRED.
        I_T_NEXUS_LOSS_OCCURRED = 0x2907,
        /// 2A/01 MODE PARAMETERS CHANGED.
        MODE_PARAMETERS_CHANGED = 0x2A01,
        /// 2A/03 RESERVATIONS PREEMPTED.
        RESERVATIONS_PREEMPTED = 0x2A03,
        /// 2A/04 RESERVATIONS RELEASED.
        RESERVATIONS_RELEASED = 0x2A04,
        /// 2A/05 REGISTRATIONS PREEMPTED.
        REGISTRATIONS_PREEMPTED = 0x2A05,
        /// 2A/09 CAPACITY DATA HAS CHANGED.
        CAPACITY_DATA_HAS_CHANGED = 0x2A09,
        /// 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR.
        COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00,
        /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
        SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900,
        /// 3F/03 INQUIRY DATA HAS CHANGED.
        INQUIRY_DATA_HAS_CHANGED = 0x3F03,
        /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
        REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E,
        /// 44/00 INTERNAL TARGET FAILURE.
        INTERNAL_TARGET_FAILURE = 0x4400,
        /// 49/00 INVALID MESSAGE ERROR.
        INVALID_MESSAGE_ERROR = 0x4900,
        /// 4B/00 DATA PHASE ERROR.
        DATA_PHASE_ERROR = 0x4B00,
    }
}

impl AdditionalSense {
    /// The additional sense code (ASC).
    pub const fn asc(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The additional sense code qualifier (ASCQ).
    pub const fn ascq(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// Builds the value from an ASC and ASCQ pair.
    pub const fn from_parts(asc: u8, ascq: u8) -> Self {
        Self(((asc as u16) << 8) | ascq as u16)
    }
}

/// The sense-key-specific field (SPC-5 §4.4.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseSpecific {
    /// A field pointer to the byte (and optionally bit) in error (ILLEGAL REQUEST).
    Field {
        /// `true` when the pointer refers to the CDB, `false` for the parameter data.
        in_cdb: bool,
        /// Byte offset of the field in error.
        byte: u16,
        /// The most significant bit of the field in error, when known.
        bit: Option<u8>,
    },
    /// A segment pointer for EXTENDED COPY errors (COPY ABORTED, SPC-5 §4.4.2.4.5).
    Segment {
        /// Byte offset within the segment descriptor.
        byte: u16,
    },
}

impl SenseSpecific {
    /// The three SKS bytes with SKSV set.
    pub fn to_bytes(self) -> [u8; 3] {
        match self {
            Self::Field { in_cdb, byte, bit } => {
                let mut b0 = 0x80;
                if in_cdb {
                    b0 |= 0x40;
                }
                if let Some(bit) = bit {
                    b0 |= 0x08 | (bit & 0x07);
                }
                let [hi, lo] = byte.to_be_bytes();
                [b0, hi, lo]
            }
            Self::Segment { byte } => {
                let [hi, lo] = byte.to_be_bytes();
                [0x80, hi, lo]
            }
        }
    }
}

/// A CHECK CONDITION with its sense information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {code} (asc {asc:#04x} ascq {ascq:#04x})", asc = code.asc(), ascq = code.ascq())]
pub struct SenseError {
    /// The sense key.
    pub key: SenseKey,
    /// The additional sense code and qualifier.
    pub code: AdditionalSense,
    /// The INFORMATION field (e.g. the miscompare offset), when valid.
    pub information: Option<u64>,
    /// The sense-key-specific field, when valid.
    pub specific: Option<SenseSpecific>,
}

impl SenseError {
    /// A sense error without INFORMATION or sense-key-specific data.
    pub const fn new(key: SenseKey, code: AdditionalSense) -> Self {
        Self {
            key,
            code,
            information: None,
            specific: None,
        }
    }

    /// Adds the INFORMATION field.
    pub const fn with_information(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// Adds a sense-key-specific field.
    pub const fn with_specific(mut self, specific: SenseSpecific) -> Self {
        self.specific = Some(specific);
        self
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB pointing at `byte` (and bit `bit` when known).
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::INVALID_FIELD_IN_CDB,
        )
        .with_specific(SenseSpecific::Field {
            in_cdb: true,
            byte,
            bit,
        })
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST pointing at `byte` of the parameter data.
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST,
        )
        .with_specific(SenseSpecific::Field {
            in_cdb: false,
            byte,
            bit,
        })
    }

    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
    pub const fn parameter_list_length() -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::PARAMETER_LIST_LENGTH_ERROR,
        )
    }

    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::INVALID_COMMAND_OPERATION_CODE,
        )
    }

    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseKey::ILLEGAL_REQUEST, AdditionalSense::LBA_OUT_OF_RANGE)
    }

    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
    pub const fn lun_not_supported() -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::LOGICAL_UNIT_NOT_SUPPORTED,
        )
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (transfer length mismatch).
    pub const fn invalid_command_iu() -> Self {
        Self::new(
            SenseKey::ILLEGAL_REQUEST,
            AdditionalSense::INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT,
        )
    }

    /// DATA PROTECT with the given write-protect code.
    pub const fn write_protected(code: AdditionalSense) -> Self {
        Self::new(SenseKey::DATA_PROTECT, code)
    }

    /// NOT READY, LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED (stopped unit).
    pub const fn not_ready_stopped() -> Self {
        Self::new(
            SenseKey::NOT_READY,
            AdditionalSense::NOT_READY_INITIALIZING_COMMAND_REQUIRED,
        )
    }

    /// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION with the offset of the first differing byte.
    pub const fn miscompare(offset: u64) -> Self {
        Self::new(
            SenseKey::MISCOMPARE,
            AdditionalSense::MISCOMPARE_DURING_VERIFY_OPERATION,
        )
        .with_information(offset)
    }

    /// COPY ABORTED with the given code.
    pub const fn copy_aborted(code: AdditionalSense) -> Self {
        Self::new(SenseKey::COPY_ABORTED, code)
    }

    /// HARDWARE ERROR, INTERNAL TARGET FAILURE.
    pub const fn internal_failure() -> Self {
        Self::new(
            SenseKey::HARDWARE_ERROR,
            AdditionalSense::INTERNAL_TARGET_FAILURE,
        )
    }

    /// Renders the sense data in fixed format (`descriptor == false`, SPC-5 §4.4.3) or
    /// descriptor format (SPC-5 §4.4.2).
    ///
    /// ```
    /// use rtgt_scsi::{SenseError, SenseKey, AdditionalSense};
    ///
    /// let e = SenseError::lba_out_of_range();
    /// assert_eq!(
    ///     e.encode(false).as_bytes(),
    ///     &[0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0]
    /// );
    /// assert_eq!(e.encode(true).as_bytes(), &[0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]);
    /// ```
    pub fn encode(&self, descriptor: bool) -> SenseData {
        let mut d = SenseData::empty();
        if descriptor {
            d.push(&[
                0x72,
                self.key.0 & 0x0F,
                self.code.asc(),
                self.code.ascq(),
                0,
                0,
                0,
                0,
            ]);
            if let Some(info) = self.information {
                d.push(&[0x00, 0x0A, 0x80, 0x00]);
                d.push(&info.to_be_bytes());
            }
            if let Some(s) = self.specific {
                let sks = s.to_bytes();
                d.push(&[0x02, 0x06, 0x00, 0x00, sks[0], sks[1], sks[2], 0x00]);
            }
            let additional = d.len.saturating_sub(8);
            d.bytes[7] = additional;
        } else {
            let mut b = [0u8; 18];
            b[0] = 0x70;
            b[2] = self.key.0 & 0x0F;
            if let Some(info) = self.information {
                b[0] |= 0x80;
                // The fixed format INFORMATION field is four bytes; larger values saturate.
                let v = u32::try_from(info).unwrap_or(u32::MAX);
                b[3..7].copy_from_slice(&v.to_be_bytes());
            }
            b[7] = 10;
            b[12] = self.code.asc();
            b[13] = self.code.ascq();
            if let Some(s) = self.specific {
                b[15..18].copy_from_slice(&s.to_bytes());
            }
            d.push(&b);
        }
        d
    }
}

/// Why a command did not complete with GOOD status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScsiError {
    /// CHECK CONDITION with sense data.
    #[error("check condition: {0}")]
    Sense(#[from] SenseError),
    /// RESERVATION CONFLICT (no sense data).
    #[error("reservation conflict")]
    ReservationConflict,
    /// BUSY (no sense data).
    #[error("busy")]
    Busy,
    /// TASK SET FULL (no sense data).
    #[error("task set full")]
    TaskSetFull,
}

impl ScsiError {
    /// The status byte this error is reported with.
    pub const fn status(&self) -> Status {
        match self {
            Self::Sense(_) => Status::CHECK_CONDITION,
            Self::ReservationConflict => Status::RESERVATION_CONFLICT,
            Self::Busy => Status::BUSY,
            Self::TaskSetFull => Status::TASK_SET_FULL,
        }
    }

    /// The sense information, for CHECK CONDITION.
    pub const fn sense(&self) -> Option<&SenseError> {
        match self {
            Self::Sense(s) => Some(s),
            _ => None,
        }
    }
}

/// Encoded sense data, held inline (no allocation): at most 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SenseData {
    bytes: [u8; 32],
    len: u8,
}

impl SenseData {
    const fn empty() -> Self {
        Self {
            bytes: [0; 32],
            len: 0,
        }
    }

    fn push(&mut self, src: &[u8]) {
        let start = usize::from(self.len);
        let end = (start + src.len()).min(self.bytes.len());
        let n = end - start;
        self.bytes[start..end].copy_from_slice(&src[..n]);
        self.len = end as u8;
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Decodes the sense key, ASC and ASCQ from fixed or descriptor format sense data.
    ///
    /// Returns `None` when the buffer is too short or the response code is unknown.
    pub fn parse(bytes: &[u8]) -> Option<(SenseKey, AdditionalSense)> {
        match bytes.first()? & 0x7F {
            0x70 | 0x71 => {
                let key = *bytes.get(2)? & 0x0F;
                let asc = *bytes.get(12)?;
                let ascq = *bytes.get(13)?;
                Some((SenseKey(key), AdditionalSense::from_parts(asc, ascq)))
            }
            0x72 | 0x73 => {
                let key = *bytes.get(1)? & 0x0F;
                let asc = *bytes.get(2)?;
                let ascq = *bytes.get(3)?;
                Some((SenseKey(key), AdditionalSense::from_parts(asc, ascq)))
            }
            _ => None,
        }
    }
}

impl core::fmt::Debug for SenseData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SenseData({:02x?})", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_field_pointer() {
        let e = SenseError::invalid_cdb_field(1, Some(4));
        assert_eq!(
            e.encode(false).as_bytes(),
            &[
                0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xCC, 0, 1
            ]
        );
    }

    #[test]
    fn descriptor_format_information_and_specific() {
        let e = SenseError::miscompare(0x1234).with_specific(SenseSpecific::Field {
            in_cdb: false,
            byte: 2,
            bit: None,
        });
        assert_eq!(
            e.encode(true).as_bytes(),
            &[
                0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 20, //
                0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, //
                0x02, 0x06, 0, 0, 0x80, 0, 2, 0
            ]
        );
    }

    #[test]
    fn fixed_information_sets_valid() {
        let d = SenseError::miscompare(7).encode(false);
        assert_eq!(d.as_bytes()[0], 0xF0);
        assert_eq!(&d.as_bytes()[3..7], &[0, 0, 0, 7]);
    }

    #[test]
    fn parse_round_trips() {
        let e = SenseError::write_protected(AdditionalSense::WRITE_PROTECTED);
        for desc in [false, true] {
            let d = e.encode(desc);
            assert_eq!(
                SenseData::parse(d.as_bytes()),
                Some((SenseKey::DATA_PROTECT, AdditionalSense::WRITE_PROTECTED))
            );
        }
        assert_eq!(SenseData::parse(&[0x70, 0]), None);
        assert_eq!(SenseData::parse(&[0x12]), None);
    }

    #[test]
    fn unknown_codes_print_as_hex() {
        assert_eq!(format!("{:?}", SenseKey(0x0C)), "SenseKey(0x0c)");
        assert_eq!(format!("{}", AdditionalSense(0x9999)), "0x9999");
        assert_eq!(format!("{}", Status::GOOD), "GOOD");
    }
}
