//! The SCSI commands the initiator sends and the answers it decodes: CDB builders for SBC-4
//! READ/WRITE(10/16) (§5.15, §5.16, §5.39, §5.40), SYNCHRONIZE CACHE (§5.27), READ CAPACITY
//! (10/16) (§5.20, §5.21), and SPC-5 TEST UNIT READY (§6.47), INQUIRY (§6.7) with the VPD pages
//! 00h, 80h, 83h (§7.7), B0h/B1h/B2h (SBC-4 §6.6), REPORT LUNS (§6.33), and sense data in fixed
//! and descriptor format (§4.4).
//!
//! ```
//! use rtgt_client::scsi::{Cdb, Sense};
//!
//! let cdb = Cdb::read(0x1_0000_0000, 8, false);
//! assert_eq!(cdb.as_bytes()[0], 0x88); // READ(16) beyond 32-bit LBAs
//! let cdb = Cdb::write(100, 8, true);
//! assert_eq!(cdb.as_bytes()[..2], [0x2a, 0x08]); // WRITE(10) with FUA
//! let s = Sense::parse(&[0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00]).unwrap();
//! assert_eq!(s.to_string(), "ILLEGAL REQUEST, INVALID FIELD IN CDB (0x24/0x00)");
//! ```

use core::fmt;

use rtgt_pdu::{RejectReason, ResponseCode, ScsiStatus};
use serde::Serialize;

/// A CDB of up to 16 bytes, built on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    bytes: [u8; 16],
    len: u8,
}

impl fmt::Debug for Cdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb({:02x?})", self.as_bytes())
    }
}

impl Cdb {
    /// A CDB from raw bytes (at most 16).
    pub fn raw(bytes: &[u8]) -> Option<Self> {
        let mut b = [0u8; 16];
        b.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    fn new(len: u8) -> Self {
        Self {
            bytes: [0; 16],
            len,
        }
    }

    /// The CDB bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }

    /// TEST UNIT READY.
    pub fn test_unit_ready() -> Self {
        Self::new(6)
    }

    /// INQUIRY: standard data (`page = None`) or a VPD page, `alloc` bytes.
    pub fn inquiry(page: Option<u8>, alloc: u16) -> Self {
        let mut c = Self::new(6);
        c.bytes[0] = 0x12;
        if let Some(p) = page {
            c.bytes[1] = 0x01;
            c.bytes[2] = p;
        }
        c.bytes[3..5].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    /// READ CAPACITY (10).
    pub fn read_capacity10() -> Self {
        let mut c = Self::new(10);
        c.bytes[0] = 0x25;
        c
    }

    /// READ CAPACITY (16) (SERVICE ACTION IN 9Eh/10h), 32 bytes.
    pub fn read_capacity16() -> Self {
        let mut c = Self::new(16);
        c.bytes[0] = 0x9e;
        c.bytes[1] = 0x10;
        c.bytes[10..14].copy_from_slice(&32u32.to_be_bytes());
        c
    }

    /// REPORT LUNS, `alloc` bytes.
    pub fn report_luns(alloc: u32) -> Self {
        let mut c = Self::new(12);
        c.bytes[0] = 0xa0;
        c.bytes[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    /// READ(10) when the LBA and length fit, else READ(16).
    #[inline]
    pub fn read(lba: u64, blocks: u32, fua: bool) -> Self {
        Self::rw(0x28, 0x88, lba, blocks, fua)
    }

    /// WRITE(10) when the LBA and length fit, else WRITE(16).
    #[inline]
    pub fn write(lba: u64, blocks: u32, fua: bool) -> Self {
        Self::rw(0x2a, 0x8a, lba, blocks, fua)
    }

    #[inline]
    fn rw(op10: u8, op16: u8, lba: u64, blocks: u32, fua: bool) -> Self {
        let flags = if fua { 0x08 } else { 0 };
        if let (Ok(l), Ok(n)) = (u32::try_from(lba), u16::try_from(blocks)) {
            let mut c = Self::new(10);
            c.bytes[0] = op10;
            c.bytes[1] = flags;
            c.bytes[2..6].copy_from_slice(&l.to_be_bytes());
            c.bytes[7..9].copy_from_slice(&n.to_be_bytes());
            c
        } else {
            let mut c = Self::new(16);
            c.bytes[0] = op16;
            c.bytes[1] = flags;
            c.bytes[2..10].copy_from_slice(&lba.to_be_bytes());
            c.bytes[10..14].copy_from_slice(&blocks.to_be_bytes());
            c
        }
    }

    /// SYNCHRONIZE CACHE (10) of the whole LU.
    pub fn synchronize_cache() -> Self {
        let mut c = Self::new(10);
        c.bytes[0] = 0x35;
        c
    }
}

/// Decoded sense data (SPC-5 §4.4.2 descriptor, §4.4.3 fixed format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// Response code (70h–73h).
    pub response_code: u8,
    /// Fixed format INFORMATION field, when valid.
    pub information: Option<u32>,
}

impl Sense {
    /// Parses fixed (70h/71h) or descriptor (72h/73h) sense data.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let code = b.first()? & 0x7f;
        match code {
            0x70 | 0x71 => Some(Self {
                key: b.get(2)? & 0x0f,
                asc: b.get(12).copied().unwrap_or(0),
                ascq: b.get(13).copied().unwrap_or(0),
                response_code: code,
                information: (b.first()? & 0x80 != 0)
                    .then(|| {
                        b.get(3..7)
                            .map(|i| u32::from_be_bytes([i[0], i[1], i[2], i[3]]))
                    })
                    .flatten(),
            }),
            0x72 | 0x73 => Some(Self {
                key: b.get(1)? & 0x0f,
                asc: b.get(2).copied().unwrap_or(0),
                ascq: b.get(3).copied().unwrap_or(0),
                response_code: code,
                information: None,
            }),
            _ => None,
        }
    }

    /// The sense key's name.
    pub fn key_name(&self) -> &'static str {
        sense_key_name(self.key)
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key_name())?;
        match asc_name(self.asc, self.ascq) {
            Some(n) => write!(f, ", {n} ({:#04x}/{:#04x})", self.asc, self.ascq),
            None => write!(f, ", ASC/ASCQ {:#04x}/{:#04x}", self.asc, self.ascq),
        }
    }
}

/// Name of a sense key (SPC-5 Table 48).
pub fn sense_key_name(key: u8) -> &'static str {
    match key {
        0x0 => "NO SENSE",
        0x1 => "RECOVERED ERROR",
        0x2 => "NOT READY",
        0x3 => "MEDIUM ERROR",
        0x4 => "HARDWARE ERROR",
        0x5 => "ILLEGAL REQUEST",
        0x6 => "UNIT ATTENTION",
        0x7 => "DATA PROTECT",
        0x8 => "BLANK CHECK",
        0x9 => "VENDOR SPECIFIC",
        0xa => "COPY ABORTED",
        0xb => "ABORTED COMMAND",
        0xd => "VOLUME OVERFLOW",
        0xe => "MISCOMPARE",
        _ => "RESERVED",
    }
}

/// Names of the ASC/ASCQ pairs an initiator commonly meets (SPC-5 Annex F).
pub fn asc_name(asc: u8, ascq: u8) -> Option<&'static str> {
    Some(match (asc, ascq) {
        (0x00, 0x00) => "NO ADDITIONAL SENSE INFORMATION",
        (0x04, 0x00) => "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
        (0x04, 0x01) => "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
        (0x0c, 0x00) => "WRITE ERROR",
        (0x11, 0x00) => "UNRECOVERED READ ERROR",
        (0x1a, 0x00) => "PARAMETER LIST LENGTH ERROR",
        (0x20, 0x00) => "INVALID COMMAND OPERATION CODE",
        (0x21, 0x00) => "LOGICAL BLOCK ADDRESS OUT OF RANGE",
        (0x24, 0x00) => "INVALID FIELD IN CDB",
        (0x25, 0x00) => "LOGICAL UNIT NOT SUPPORTED",
        (0x26, 0x00) => "INVALID FIELD IN PARAMETER LIST",
        (0x27, 0x00) => "WRITE PROTECTED",
        (0x28, 0x00) => "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
        (0x29, 0x00) => "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
        (0x29, 0x01) => "POWER ON OCCURRED",
        (0x29, 0x03) => "BUS DEVICE RESET FUNCTION OCCURRED",
        (0x29, 0x07) => "I_T NEXUS LOSS OCCURRED",
        (0x2a, 0x01) => "MODE PARAMETERS CHANGED",
        (0x2a, 0x09) => "CAPACITY DATA HAS CHANGED",
        (0x3f, 0x0e) => "REPORTED LUNS DATA HAS CHANGED",
        (0x3a, 0x00) => "MEDIUM NOT PRESENT",
        (0x44, 0x00) => "INTERNAL TARGET FAILURE",
        (0x47, 0x05) => "PROTOCOL SERVICE CRC ERROR",
        (0x49, 0x00) => "INVALID MESSAGE ERROR",
        (0x4b, 0x00) => "DATA PHASE ERROR",
        (0x4b, 0x02) => "TOO MUCH WRITE DATA",
        (0x4b, 0x03) => "ACK/NAK TIMEOUT",
        (0x4b, 0x04) => "NAK RECEIVED",
        (0x4b, 0x05) => "DATA OFFSET ERROR",
        (0x4b, 0x06) => "INITIATOR RESPONSE TIMEOUT",
        (0x55, 0x03) => "INSUFFICIENT RESOURCES",
        _ => return None,
    })
}

/// A SCSI command that did not complete with GOOD status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScsiFailure {
    /// iSCSI service response.
    pub response: ResponseCode,
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense data, if the target sent any.
    pub sense: Option<Sense>,
    /// The target rejected the command PDU instead (§11.17).
    pub rejected: Option<RejectReason>,
    /// The command was aborted (TMF or connection loss).
    pub aborted: bool,
}

impl ScsiFailure {
    /// A failure from a Reject PDU.
    pub fn rejected(reason: RejectReason) -> Self {
        Self {
            response: ResponseCode::TARGET_FAILURE,
            status: ScsiStatus::GOOD,
            sense: None,
            rejected: Some(reason),
            aborted: false,
        }
    }

    /// A task terminated without status.
    pub fn aborted() -> Self {
        Self {
            response: ResponseCode::TARGET_FAILURE,
            status: ScsiStatus::TASK_ABORTED,
            sense: None,
            rejected: None,
            aborted: true,
        }
    }
}

impl fmt::Display for ScsiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.rejected {
            return write!(f, "command rejected by the target: {r}");
        }
        if self.aborted {
            return f.write_str("command aborted");
        }
        if self.response != ResponseCode::COMMAND_COMPLETED {
            return write!(f, "target failure (iSCSI response {})", self.response);
        }
        write!(f, "SCSI status {}", self.status)?;
        if let Some(s) = &self.sense {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

fn ascii(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                char::from(c)
            } else {
                '.'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}

/// Standard INQUIRY data (SPC-5 §6.7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandardInquiry {
    /// Peripheral qualifier (0: connected).
    pub peripheral_qualifier: u8,
    /// Peripheral device type (0: direct access block device).
    pub device_type: u8,
    /// Device type name.
    pub device_type_name: &'static str,
    /// Removable medium.
    pub removable: bool,
    /// VERSION (6: SPC-4, 7: SPC-5).
    pub version: u8,
    /// NormACA.
    pub norm_aca: bool,
    /// HiSup.
    pub hisup: bool,
    /// Response data format (2).
    pub response_data_format: u8,
    /// SCCS.
    pub sccs: bool,
    /// TPGS (ALUA support).
    pub tpgs: u8,
    /// 3PC (third-party copy).
    pub third_party_copy: bool,
    /// PROTECT.
    pub protect: bool,
    /// CmdQue.
    pub cmd_que: bool,
    /// T10 vendor identification.
    pub vendor: String,
    /// Product identification.
    pub product: String,
    /// Product revision level.
    pub revision: String,
    /// Version descriptors (standards claimed).
    pub version_descriptors: Vec<u16>,
}

/// Name of a peripheral device type (SPC-5 Table 149).
pub fn device_type_name(t: u8) -> &'static str {
    match t {
        0x00 => "direct access block device",
        0x01 => "sequential access device",
        0x03 => "processor device",
        0x05 => "CD/DVD device",
        0x07 => "optical memory device",
        0x08 => "media changer",
        0x0c => "storage array controller",
        0x0d => "enclosure services device",
        0x1e => "well known logical unit",
        0x1f => "unknown or no device type",
        _ => "other",
    }
}

impl StandardInquiry {
    /// Decodes standard INQUIRY data (at least 36 bytes).
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 36 {
            return None;
        }
        let descriptors = (58..74)
            .step_by(2)
            .filter(|&o| o + 2 <= b.len())
            .map(|o| be16(b, o))
            .filter(|d| *d != 0)
            .collect();
        Some(Self {
            peripheral_qualifier: b[0] >> 5,
            device_type: b[0] & 0x1f,
            device_type_name: device_type_name(b[0] & 0x1f),
            removable: b[1] & 0x80 != 0,
            version: b[2],
            norm_aca: b[3] & 0x20 != 0,
            hisup: b[3] & 0x10 != 0,
            response_data_format: b[3] & 0x0f,
            sccs: b[5] & 0x80 != 0,
            tpgs: (b[5] >> 4) & 3,
            third_party_copy: b[5] & 0x08 != 0,
            protect: b[5] & 0x01 != 0,
            cmd_que: b[7] & 0x02 != 0,
            vendor: ascii(&b[8..16]),
            product: ascii(&b[16..32]),
            revision: ascii(&b[32..36]),
            version_descriptors: descriptors,
        })
    }
}

/// One designation descriptor of the Device Identification VPD page (SPC-5 §7.7.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Designator {
    /// Code set (1 binary, 2 ASCII, 3 UTF-8).
    pub code_set: u8,
    /// Association (0 LU, 1 target port, 2 target device).
    pub association: u8,
    /// Designator type (1 T10 vendor ID, 2 EUI-64, 3 NAA, 4 relative port, 5 TPG, 8 SCSI name).
    pub designator_type: u8,
    /// Type name.
    pub type_name: &'static str,
    /// The designator as text (hex for binary code sets).
    pub value: String,
}

/// Decoded VPD pages (SPC-5 §7.7, SBC-4 §6.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "page")]
pub enum VpdPage {
    /// 00h: the pages the LU supports.
    #[serde(rename = "supported_pages")]
    Supported {
        /// Page codes.
        pages: Vec<u8>,
    },
    /// 80h: unit serial number.
    #[serde(rename = "unit_serial_number")]
    Serial {
        /// The serial number.
        serial: String,
    },
    /// 83h: device identification.
    #[serde(rename = "device_identification")]
    Identification {
        /// Designation descriptors.
        designators: Vec<Designator>,
    },
    /// B0h: block limits.
    #[serde(rename = "block_limits")]
    BlockLimits {
        /// Maximum compare-and-write length (blocks).
        max_compare_and_write: u8,
        /// Optimal transfer length granularity (blocks).
        optimal_granularity: u16,
        /// Maximum transfer length (blocks, 0 = no limit).
        max_transfer_length: u32,
        /// Optimal transfer length (blocks).
        optimal_transfer_length: u32,
        /// Maximum UNMAP LBA count.
        max_unmap_lba_count: u32,
        /// Maximum UNMAP block descriptor count.
        max_unmap_descriptors: u32,
        /// Maximum WRITE SAME length.
        max_write_same_length: u64,
    },
    /// B1h: block device characteristics.
    #[serde(rename = "block_device_characteristics")]
    Characteristics {
        /// Medium rotation rate (1 = non-rotating).
        rotation_rate: u16,
        /// Nominal form factor.
        form_factor: u8,
    },
    /// B2h: logical block provisioning.
    #[serde(rename = "logical_block_provisioning")]
    Provisioning {
        /// UNMAP supported.
        lbpu: bool,
        /// WRITE SAME(16) with UNMAP supported.
        lbpws: bool,
        /// WRITE SAME(10) with UNMAP supported.
        lbpws10: bool,
        /// Provisioning type (0 full, 1 resource, 2 thin).
        provisioning_type: u8,
    },
    /// Any other page, as hex.
    #[serde(rename = "other")]
    Other {
        /// Page code.
        code: u8,
        /// Page bytes in hex.
        hex: String,
    },
}

fn hex(b: &[u8]) -> String {
    use core::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

impl VpdPage {
    /// Decodes a VPD page (header included). `None` when the header is truncated or names
    /// another page than requested.
    pub fn parse(code: u8, b: &[u8]) -> Option<Self> {
        if b.len() < 4 || b[1] != code {
            return None;
        }
        let len = usize::from(be16(b, 2));
        let body = b.get(4..(4 + len).min(b.len()))?;
        Some(match code {
            0x00 => Self::Supported {
                pages: body.to_vec(),
            },
            0x80 => Self::Serial {
                serial: ascii(body),
            },
            0x83 => {
                let mut designators = Vec::new();
                let mut p = body;
                while p.len() >= 4 {
                    let dlen = usize::from(p[3]);
                    let Some(value) = p.get(4..4 + dlen) else {
                        break;
                    };
                    let code_set = p[0] & 0x0f;
                    let designator_type = p[1] & 0x0f;
                    designators.push(Designator {
                        code_set,
                        association: (p[1] >> 4) & 3,
                        designator_type,
                        type_name: match designator_type {
                            0 => "vendor specific",
                            1 => "T10 vendor ID",
                            2 => "EUI-64",
                            3 => "NAA",
                            4 => "relative target port",
                            5 => "target port group",
                            6 => "logical unit group",
                            7 => "MD5 logical unit",
                            8 => "SCSI name string",
                            9 => "protocol specific port",
                            10 => "UUID",
                            _ => "reserved",
                        },
                        value: if code_set == 2 || code_set == 3 {
                            ascii(value).trim_end_matches('\0').to_owned()
                        } else {
                            hex(value)
                        },
                    });
                    p = p.get(4 + dlen..).unwrap_or(&[]);
                }
                Self::Identification { designators }
            }
            0xb0 => Self::BlockLimits {
                max_compare_and_write: b.get(5).copied().unwrap_or(0),
                optimal_granularity: be16(b, 6),
                max_transfer_length: be32(b, 8),
                optimal_transfer_length: be32(b, 12),
                max_unmap_lba_count: be32(b, 20),
                max_unmap_descriptors: be32(b, 24),
                max_write_same_length: be64(b, 36),
            },
            0xb1 => Self::Characteristics {
                rotation_rate: be16(b, 4),
                form_factor: b.get(7).map_or(0, |f| f & 0x0f),
            },
            0xb2 => Self::Provisioning {
                lbpu: b.get(5).is_some_and(|f| f & 0x80 != 0),
                lbpws: b.get(5).is_some_and(|f| f & 0x40 != 0),
                lbpws10: b.get(5).is_some_and(|f| f & 0x20 != 0),
                provisioning_type: b.get(6).map_or(0, |f| f & 0x07),
            },
            _ => Self::Other {
                code,
                hex: hex(body),
            },
        })
    }
}

/// Capacity of a logical unit (SBC-4 §5.20/§5.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Number of logical blocks.
    pub blocks: u64,
    /// Logical block length in bytes.
    pub block_len: u32,
    /// Logical blocks per physical block exponent (READ CAPACITY (16)).
    pub physical_exponent: u8,
    /// Thin provisioning enabled (LBPME).
    pub thin: bool,
}

impl Capacity {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_len))
    }

    /// From READ CAPACITY (10) data (8 bytes).
    pub fn parse10(b: &[u8]) -> Option<Self> {
        if b.len() < 8 {
            return None;
        }
        Some(Self {
            blocks: u64::from(be32(b, 0)) + 1,
            block_len: be32(b, 4),
            physical_exponent: 0,
            thin: false,
        })
    }

    /// From READ CAPACITY (16) data (at least 12 bytes).
    pub fn parse16(b: &[u8]) -> Option<Self> {
        if b.len() < 12 {
            return None;
        }
        Some(Self {
            blocks: be64(b, 0).saturating_add(1),
            block_len: be32(b, 8),
            physical_exponent: b.get(13).map_or(0, |x| x & 0x0f),
            thin: b.get(14).is_some_and(|x| x & 0x80 != 0),
        })
    }
}

/// LUN numbers from REPORT LUNS data (SPC-5 §6.33; single-level LUNs).
pub fn parse_report_luns(b: &[u8]) -> Vec<u64> {
    let len = be32(b, 0) as usize;
    b.get(8..(8 + len).min(b.len()))
        .unwrap_or(&[])
        .chunks_exact(8)
        .map(|l| {
            let lun = rtgt_pdu::Lun([l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]]);
            lun.number().map_or_else(|| lun.to_u64(), u64::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rw_cdbs_pick_10_or_16_byte_forms() {
        let c = Cdb::read(0x1234_5678, 0x20, false);
        assert_eq!(
            c.as_bytes(),
            [0x28, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x20, 0]
        );
        let c = Cdb::write(5, 70_000, true);
        assert_eq!(c.as_bytes()[..2], [0x8a, 0x08]);
        assert_eq!(c.as_bytes()[10..14], 70_000u32.to_be_bytes());
        assert_eq!(Cdb::read_capacity16().as_bytes()[..2], [0x9e, 0x10]);
        assert_eq!(
            Cdb::inquiry(Some(0x83), 255).as_bytes(),
            [0x12, 1, 0x83, 0, 255, 0]
        );
        assert_eq!(Cdb::report_luns(4096).as_bytes()[6..10], [0, 0, 0x10, 0]);
        assert!(Cdb::raw(&[0; 17]).is_none());
    }

    #[test]
    fn sense_formats() {
        let d = Sense::parse(&[0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]).unwrap();
        assert_eq!((d.key, d.asc, d.ascq), (6, 0x29, 0));
        assert_eq!(
            d.to_string(),
            "UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (0x29/0x00)"
        );
        let f = Sense::parse(&[0xf0, 0, 0x03, 0, 0, 0x10, 0, 10, 0, 0, 0, 0, 0x11, 0]).unwrap();
        assert_eq!(f.information, Some(0x1000));
        assert_eq!(
            Sense::parse(&[0x71, 0, 0x0e]).unwrap().key_name(),
            "MISCOMPARE"
        );
        assert!(Sense::parse(&[0x10]).is_none());
        assert!(Sense::parse(&[]).is_none());
        let unknown = Sense {
            key: 5,
            asc: 0x99,
            ascq: 1,
            response_code: 0x70,
            information: None,
        };
        assert_eq!(unknown.to_string(), "ILLEGAL REQUEST, ASC/ASCQ 0x99/0x01");
    }

    #[test]
    fn standard_inquiry_fields() {
        let mut b = [0u8; 74];
        b[0] = 0x00;
        b[2] = 0x06;
        b[3] = 0x12;
        b[7] = 0x02;
        b[8..16].copy_from_slice(b"RTGT    ");
        b[16..32].copy_from_slice(b"VIRTUAL-DISK    ");
        b[32..36].copy_from_slice(b"0001");
        b[58..60].copy_from_slice(&0x0960u16.to_be_bytes());
        let i = StandardInquiry::parse(&b).unwrap();
        assert_eq!(
            (i.vendor.as_str(), i.product.as_str(), i.revision.as_str()),
            ("RTGT", "VIRTUAL-DISK", "0001")
        );
        assert!(i.hisup && i.cmd_que && !i.removable);
        assert_eq!(i.version_descriptors, [0x0960]);
        assert_eq!(i.device_type_name, "direct access block device");
        assert!(StandardInquiry::parse(&b[..35]).is_none());
    }

    #[test]
    fn vpd_pages() {
        assert_eq!(
            VpdPage::parse(0, &[0, 0, 0, 3, 0, 0x80, 0x83]),
            Some(VpdPage::Supported {
                pages: vec![0, 0x80, 0x83]
            })
        );
        assert_eq!(
            VpdPage::parse(0x80, &[0, 0x80, 0, 4, b'a', b'b', b'c', b' ']),
            Some(VpdPage::Serial {
                serial: "abc".into()
            })
        );
        let id = [
            0, 0x83, 0, 16, // header
            0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7, // NAA, binary
            0x02, 0x01, 0, 0, // empty T10 vendor id
        ];
        let Some(VpdPage::Identification { designators }) = VpdPage::parse(0x83, &id) else {
            panic!()
        };
        assert_eq!(designators[0].value, "6001020304050607");
        assert_eq!(designators[0].type_name, "NAA");
        assert_eq!(designators[1].type_name, "T10 vendor ID");
        // The wrong page code is refused.
        assert_eq!(VpdPage::parse(0x80, &[0, 0x83, 0, 0]), None);
        let mut bl = [0u8; 64];
        bl[1] = 0xb0;
        bl[3] = 60;
        bl[8..12].copy_from_slice(&2048u32.to_be_bytes());
        let Some(VpdPage::BlockLimits {
            max_transfer_length,
            ..
        }) = VpdPage::parse(0xb0, &bl)
        else {
            panic!()
        };
        assert_eq!(max_transfer_length, 2048);
    }

    #[test]
    fn capacity_and_luns() {
        let c = Capacity::parse10(&[0, 0, 0x0f, 0xff, 0, 0, 2, 0]).unwrap();
        assert_eq!((c.blocks, c.block_len, c.bytes()), (4096, 512, 2 << 20));
        let mut b = [0u8; 32];
        b[7] = 0xff;
        b[8..12].copy_from_slice(&4096u32.to_be_bytes());
        b[13] = 3;
        b[14] = 0x80;
        let c = Capacity::parse16(&b).unwrap();
        assert_eq!(
            (c.blocks, c.block_len, c.physical_exponent, c.thin),
            (256, 4096, 3, true)
        );
        let luns = [
            0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(parse_report_luns(&luns), [0, 1]);
    }
}
