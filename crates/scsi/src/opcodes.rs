//! Operation codes and the table of supported commands (SPC-5 §6, SBC-4 §5).
//!
//! Each supported command carries its CDB usage data (SPC-5 §6.36.3): the bits the device
//! server looks at. The same table answers REPORT SUPPORTED OPERATION CODES and drives the
//! reserved-bit check of the CDB decoder, so what we report is exactly what we enforce: a set
//! bit outside the usage data is rejected with ILLEGAL REQUEST, INVALID FIELD IN CDB and a field
//! pointer to the offending bit.

use crate::code::wire_code;

wire_code! {
    /// A SCSI operation code (SPC-5 §4.2.5, SBC-4 §5).
    pub struct OpCode(u8) {
        /// TEST UNIT READY.
        TEST_UNIT_READY = 0x00,
        /// REQUEST SENSE.
        REQUEST_SENSE = 0x03,
        /// READ(6).
        READ_6 = 0x08,
        /// WRITE(6).
        WRITE_6 = 0x0A,
        /// INQUIRY.
        INQUIRY = 0x12,
        /// MODE SELECT(6).
        MODE_SELECT_6 = 0x15,
        /// RESERVE(6).
        RESERVE_6 = 0x16,
        /// RELEASE(6).
        RELEASE_6 = 0x17,
        /// MODE SENSE(6).
        MODE_SENSE_6 = 0x1A,
        /// START STOP UNIT.
        START_STOP_UNIT = 0x1B,
        /// PREVENT ALLOW MEDIUM REMOVAL (not supported: the medium is not removable).
        PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E,
        /// READ CAPACITY(10).
        READ_CAPACITY_10 = 0x25,
        /// READ(10).
        READ_10 = 0x28,
        /// WRITE(10).
        WRITE_10 = 0x2A,
        /// WRITE AND VERIFY(10).
        WRITE_AND_VERIFY_10 = 0x2E,
        /// VERIFY(10).
        VERIFY_10 = 0x2F,
        /// PRE-FETCH(10).
        PRE_FETCH_10 = 0x34,
        /// SYNCHRONIZE CACHE(10).
        SYNCHRONIZE_CACHE_10 = 0x35,
        /// READ DEFECT DATA(10).
        READ_DEFECT_DATA_10 = 0x37,
        /// WRITE SAME(10).
        WRITE_SAME_10 = 0x41,
        /// UNMAP.
        UNMAP = 0x42,
        /// SANITIZE (not supported).
        SANITIZE = 0x48,
        /// MODE SELECT(10).
        MODE_SELECT_10 = 0x55,
        /// RESERVE(10).
        RESERVE_10 = 0x56,
        /// RELEASE(10).
        RELEASE_10 = 0x57,
        /// MODE SENSE(10).
        MODE_SENSE_10 = 0x5A,
        /// PERSISTENT RESERVE IN.
        PERSISTENT_RESERVE_IN = 0x5E,
        /// PERSISTENT RESERVE OUT.
        PERSISTENT_RESERVE_OUT = 0x5F,
        /// EXTENDED COPY (LID1) — THIRD-PARTY COPY OUT.
        EXTENDED_COPY = 0x83,
        /// RECEIVE COPY RESULTS (LID1) — THIRD-PARTY COPY IN.
        RECEIVE_COPY_RESULTS = 0x84,
        /// READ(16).
        READ_16 = 0x88,
        /// COMPARE AND WRITE.
        COMPARE_AND_WRITE = 0x89,
        /// WRITE(16).
        WRITE_16 = 0x8A,
        /// ORWRITE(16).
        ORWRITE_16 = 0x8B,
        /// WRITE AND VERIFY(16).
        WRITE_AND_VERIFY_16 = 0x8E,
        /// VERIFY(16).
        VERIFY_16 = 0x8F,
        /// PRE-FETCH(16).
        PRE_FETCH_16 = 0x90,
        /// SYNCHRONIZE CACHE(16).
        SYNCHRONIZE_CACHE_16 = 0x91,
        /// WRITE SAME(16).
        WRITE_SAME_16 = 0x93,
        /// WRITE ATOMIC(16).
        WRITE_ATOMIC_16 = 0x9C,
        /// SERVICE ACTION IN(16): READ CAPACITY(16), GET LBA STATUS.
        SERVICE_ACTION_IN_16 = 0x9E,
        /// REPORT LUNS.
        REPORT_LUNS = 0xA0,
        /// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES, REPORT SUPPORTED TMFS.
        MAINTENANCE_IN = 0xA3,
        /// READ(12).
        READ_12 = 0xA8,
        /// WRITE(12).
        WRITE_12 = 0xAA,
        /// WRITE AND VERIFY(12).
        WRITE_AND_VERIFY_12 = 0xAE,
        /// VERIFY(12).
        VERIFY_12 = 0xAF,
        /// READ DEFECT DATA(12).
        READ_DEFECT_DATA_12 = 0xB7,
    }
}

/// SERVICE ACTION IN(16) service action: READ CAPACITY(16).
pub const SAI_READ_CAPACITY_16: u8 = 0x10;
/// SERVICE ACTION IN(16) service action: GET LBA STATUS.
pub const SAI_GET_LBA_STATUS: u8 = 0x12;
/// MAINTENANCE IN service action: REPORT SUPPORTED OPERATION CODES.
pub const MI_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
/// MAINTENANCE IN service action: REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
pub const MI_REPORT_SUPPORTED_TMFS: u8 = 0x0D;
/// EXTENDED COPY service action for the LID1 format.
pub const XCOPY_LID1: u8 = 0x00;
/// RECEIVE COPY RESULTS (LID1) service action: COPY STATUS.
pub const RCR_COPY_STATUS: u8 = 0x00;
/// RECEIVE COPY RESULTS (LID1) service action: OPERATING PARAMETERS.
pub const RCR_OPERATING_PARAMETERS: u8 = 0x03;

/// Which logical units support a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Every logical unit.
    Always,
    /// Thin-provisioned logical units whose backend can deallocate (UNMAP).
    Unmap,
}

/// One supported command: opcode, service action and CDB usage data.
#[derive(Debug)]
pub(crate) struct CommandInfo {
    pub opcode: u8,
    /// The service action, for opcodes that have service actions.
    pub sa: Option<u8>,
    /// CDB usage data; its length is the CDB length. Byte 0 is the opcode; for commands with
    /// service actions the SERVICE ACTION field of byte 1 holds the service action value.
    pub usage: &'static [u8],
    /// Recommended command timeout in seconds (REPORT SUPPORTED OPERATION CODES, RCTD=1).
    pub timeout: u32,
    pub needs: Needs,
}

const F: u8 = 0xFF;

macro_rules! cmd {
    ($op:expr, [$($u:expr),*]) => {
        CommandInfo { opcode: $op, sa: None, usage: &[$op, $($u),*], timeout: 30, needs: Needs::Always }
    };
    ($op:expr, sa $sa:expr, [$($u:expr),*]) => {
        CommandInfo { opcode: $op, sa: Some($sa), usage: &[$op, $sa $(, $u)*], timeout: 30, needs: Needs::Always }
    };
}

/// Every command the logical unit implements, in opcode order.
pub(crate) static COMMANDS: &[CommandInfo] = &[
    cmd!(0x00, [0, 0, 0, 0, 0]),
    cmd!(0x03, [0x01, 0, 0, F, 0]),
    cmd!(0x08, [0x1F, F, F, F, 0]),
    cmd!(0x0A, [0x1F, F, F, F, 0]),
    cmd!(0x12, [0x01, F, F, F, 0]),
    cmd!(0x15, [0x11, 0, 0, F, 0]),
    cmd!(0x16, [0, 0, 0, 0, 0]),
    cmd!(0x17, [0, 0, 0, 0, 0]),
    cmd!(0x1A, [0x08, F, F, F, 0]),
    cmd!(0x1B, [0x01, 0, 0x0F, 0xF7, 0]),
    cmd!(0x25, [0, F, F, F, F, 0, 0, 0x01, 0]),
    cmd!(0x28, [0x18, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x2A, [0x18, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x2E, [0x16, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x2F, [0x16, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x34, [0x02, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x35, [0x06, F, F, F, F, 0x3F, F, F, 0]),
    cmd!(0x37, [0, 0x1F, 0, 0, 0, 0, F, F, 0]),
    CommandInfo {
        timeout: 120,
        ..cmd!(0x41, [0x08, F, F, F, F, 0x3F, F, F, 0])
    },
    CommandInfo {
        timeout: 120,
        needs: Needs::Unmap,
        ..cmd!(0x42, [0, 0, 0, 0, 0, 0x3F, F, F, 0])
    },
    cmd!(0x55, [0x11, 0, 0, 0, 0, 0, F, F, 0]),
    cmd!(0x56, [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd!(0x57, [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd!(0x5A, [0x18, F, F, 0, 0, 0, F, F, 0]),
    cmd!(0x5E, sa 0x00, [0, 0, 0, 0, 0, F, F, 0]),
    cmd!(0x5E, sa 0x01, [0, 0, 0, 0, 0, F, F, 0]),
    cmd!(0x5E, sa 0x02, [0, 0, 0, 0, 0, F, F, 0]),
    cmd!(0x5E, sa 0x03, [0, 0, 0, 0, 0, F, F, 0]),
    cmd!(0x5F, sa 0x00, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x01, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x02, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x03, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x04, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x05, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x06, [F, 0, 0, F, F, F, F, 0]),
    cmd!(0x5F, sa 0x07, [F, 0, 0, F, F, F, F, 0]),
    CommandInfo {
        timeout: 600,
        ..cmd!(0x83, sa XCOPY_LID1, [0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0])
    },
    cmd!(0x84, sa RCR_COPY_STATUS, [F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0]),
    cmd!(0x84, sa RCR_OPERATING_PARAMETERS, [F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0]),
    cmd!(0x88, [0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0x89, [0x18, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0x3F, 0]),
    cmd!(0x8A, [0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0x8B, [0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0]),
    cmd!(0x8E, [0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0x8F, [0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0x90, [0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0]),
    CommandInfo {
        timeout: 120,
        ..cmd!(0x91, [0x06, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0])
    },
    CommandInfo {
        timeout: 120,
        ..cmd!(0x93, [0x09, F, F, F, F, F, F, F, F, F, F, F, F, 0x3F, 0])
    },
    cmd!(0x9C, [0x18, F, F, F, F, F, F, F, F, 0, 0, F, F, 0x3F, 0]),
    cmd!(0x9E, sa SAI_READ_CAPACITY_16, [F, F, F, F, F, F, F, F, F, F, F, F, 0x01, 0]),
    cmd!(0x9E, sa SAI_GET_LBA_STATUS, [F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    cmd!(0xA0, [0, F, 0, 0, 0, F, F, F, F, 0, 0]),
    cmd!(0xA3, sa MI_REPORT_SUPPORTED_OPCODES, [0x87, F, F, F, F, F, F, F, 0, 0]),
    cmd!(0xA3, sa MI_REPORT_SUPPORTED_TMFS, [0x80, 0, 0, 0, F, F, F, F, 0, 0]),
    cmd!(0xA8, [0x18, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0xAA, [0x18, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0xAE, [0x16, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0xAF, [0x16, F, F, F, F, F, F, F, F, 0x3F, 0]),
    cmd!(0xB7, [0x1F, F, F, F, F, F, F, F, F, 0, 0]),
];

/// For each opcode, one plus the index of its first entry in [`COMMANDS`] (zero: none), so
/// that decoding a CDB costs one table load instead of a scan.
static INDEX: [u8; 256] = {
    let mut index = [0u8; 256];
    let mut i = COMMANDS.len();
    while i > 0 {
        i -= 1;
        index[COMMANDS[i].opcode as usize] = (i + 1) as u8;
    }
    index
};

fn entries(opcode: u8) -> &'static [CommandInfo] {
    match INDEX[usize::from(opcode)] {
        0 => &[],
        first => {
            let start = usize::from(first) - 1;
            let rest = &COMMANDS[start..];
            let n = rest.iter().take_while(|c| c.opcode == opcode).count();
            &rest[..n]
        }
    }
}

/// Whether `opcode` is implemented with service actions.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    entries(opcode).first().is_some_and(|c| c.sa.is_some())
}

/// Looks up a command by opcode and, for service-action opcodes, service action.
pub(crate) fn find(opcode: u8, sa: Option<u8>) -> Option<&'static CommandInfo> {
    entries(opcode).iter().find(|c| c.sa == sa)
}

/// Whether a logical unit with the given feature set supports the command.
pub(crate) fn supported(info: &CommandInfo, unmap: bool) -> bool {
    match info.needs {
        Needs::Always => true,
        Needs::Unmap => unmap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for w in COMMANDS.windows(2) {
            let a = (w[0].opcode, w[0].sa);
            let b = (w[1].opcode, w[1].sa);
            assert!(a < b, "{a:?} before {b:?}");
        }
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode);
            let expected_len = match c.opcode {
                0x00..=0x1F => 6,
                0x20..=0x5F => 10,
                0x80..=0x9F => 16,
                _ => 12,
            };
            assert_eq!(c.usage.len(), expected_len, "opcode {:#04x}", c.opcode);
            if let Some(sa) = c.sa {
                assert_eq!(c.usage[1] & 0x1F, sa);
            }
            assert_eq!(*c.usage.last().unwrap(), 0, "control byte usage");
        }
    }

    #[test]
    fn index_matches_a_scan() {
        for op in 0..=255u8 {
            let scanned: Vec<_> = COMMANDS
                .iter()
                .filter(|c| c.opcode == op)
                .map(|c| c.sa)
                .collect();
            let indexed: Vec<_> = entries(op).iter().map(|c| c.sa).collect();
            assert_eq!(scanned, indexed, "opcode {op:#04x}");
        }
        assert!(COMMANDS.len() < 255);
    }

    #[test]
    fn lookup() {
        assert!(has_service_actions(0x9E));
        assert!(!has_service_actions(0x28));
        assert!(find(0x28, None).is_some());
        assert!(find(0x9E, Some(0x10)).is_some());
        assert!(find(0x9E, Some(0x11)).is_none());
        assert_eq!(OpCode(0x28).name(), Some("READ_10"));
    }
}
