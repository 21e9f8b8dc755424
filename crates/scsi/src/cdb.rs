//! CDB decoding into typed commands (SPC-5 §4.2, §6; SBC-4 §5).
//!
//! Decoding is a pure function of the CDB bytes and the logical unit's feature set. It checks
//! the CDB length, rejects every set bit outside the command's CDB usage data (the same data
//! REPORT SUPPORTED OPERATION CODES reports) with ILLEGAL REQUEST, INVALID FIELD IN CDB and a
//! field pointer, and turns the fields into an [`Op`]. Semantic checks that need logical-unit
//! state (LBA ranges, write protection, reservations) happen later.

use crate::opcodes::{self, CommandInfo};
use crate::sense::SenseError;

/// A decoded command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    TestUnitReady,
    RequestSense {
        desc: bool,
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        len: u32,
    },
    StartStop {
        pc: u8,
        no_flush: bool,
        loej: bool,
        start: bool,
    },
    ReadCapacity10 {
        lba: u32,
        pmi: bool,
    },
    ReadCapacity16 {
        lba: u64,
        pmi: bool,
        alloc: u32,
    },
    Read {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    Write {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    WriteVerify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
    },
    Verify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
    },
    PreFetch {
        lba: u64,
        blocks: u32,
    },
    SyncCache {
        lba: u64,
        blocks: u32,
    },
    ReadDefect {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc: u32,
    },
    WriteSame {
        lba: u64,
        blocks: u32,
        unmap: bool,
        ndob: bool,
    },
    Unmap {
        len: u32,
    },
    CompareAndWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    OrWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    WriteAtomic {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    ReportOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        sa: u16,
        alloc: u32,
    },
    ReportTmfs {
        repd: bool,
        alloc: u32,
    },
    PrIn {
        sa: u8,
        alloc: u32,
    },
    PrOut {
        sa: u8,
        scope: u8,
        ty: u8,
        len: u32,
    },
    Reserve,
    Release,
    ExtendedCopy {
        len: u32,
    },
    ReceiveCopyResults {
        sa: u8,
        list_id: u8,
        alloc: u32,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn invalid(byte: usize, bit: u8) -> SenseError {
    SenseError::invalid_cdb_field(byte as u16, Some(bit))
}

/// Finds the table entry for the CDB's opcode (and service action).
pub(crate) fn lookup(cdb: &[u8], unmap: bool) -> Result<&'static CommandInfo, SenseError> {
    let Some(&opcode) = cdb.first() else {
        return Err(SenseError::invalid_opcode());
    };
    if opcodes::has_service_actions(opcode) {
        let Some(&b1) = cdb.get(1) else {
            return Err(SenseError::invalid_cdb_field(1, None));
        };
        let sa = b1 & 0x1F;
        opcodes::find(opcode, Some(sa))
            .filter(|i| opcodes::supported(i, unmap))
            .ok_or_else(|| invalid(1, 4))
    } else {
        opcodes::find(opcode, None)
            .filter(|i| opcodes::supported(i, unmap))
            .ok_or_else(SenseError::invalid_opcode)
    }
}

/// Decodes a CDB. `unmap` tells whether the logical unit supports UNMAP.
pub(crate) fn decode(cdb: &[u8], unmap: bool) -> Result<Op, SenseError> {
    let info = lookup(cdb, unmap)?;
    let len = info.usage.len();
    if cdb.len() < len {
        return Err(SenseError::invalid_cdb_field(0, None));
    }
    let c = &cdb[..len];
    for (i, (&b, &u)) in c.iter().zip(info.usage).enumerate().skip(1) {
        let allowed = if i == 1 && info.sa.is_some() {
            u | 0x1F
        } else {
            u
        };
        let bad = b & !allowed;
        if bad != 0 {
            return Err(invalid(i, 7 - bad.leading_zeros() as u8));
        }
    }
    decode_fields(info, c)
}

fn decode_fields(info: &CommandInfo, c: &[u8]) -> Result<Op, SenseError> {
    let fua = |b: u8| b & 0x08 != 0;
    Ok(match info.opcode {
        0x00 => Op::TestUnitReady,
        0x03 => Op::RequestSense {
            desc: c[1] & 1 != 0,
            alloc: u32::from(c[4]),
        },
        0x12 => {
            let evpd = c[1] & 1 != 0;
            if !evpd && c[2] != 0 {
                return Err(invalid(2, 7));
            }
            Op::Inquiry {
                evpd,
                page: c[2],
                alloc: u32::from(be16(c, 3)),
            }
        }
        0xA0 => Op::ReportLuns {
            select: c[2],
            alloc: be32(c, 6),
        },
        0x1A | 0x5A => {
            let ten = info.opcode == 0x5A;
            Op::ModeSense {
                ten,
                dbd: c[1] & 0x08 != 0,
                llbaa: ten && c[1] & 0x10 != 0,
                pc: c[2] >> 6,
                page: c[2] & 0x3F,
                subpage: c[3],
                alloc: if ten {
                    u32::from(be16(c, 7))
                } else {
                    u32::from(c[4])
                },
            }
        }
        0x15 | 0x55 => {
            let ten = info.opcode == 0x55;
            Op::ModeSelect {
                ten,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 0x01 != 0,
                len: if ten {
                    u32::from(be16(c, 7))
                } else {
                    u32::from(c[4])
                },
            }
        }
        0x1B => Op::StartStop {
            pc: c[4] >> 4,
            no_flush: c[4] & 0x04 != 0,
            loej: c[4] & 0x02 != 0,
            start: c[4] & 0x01 != 0,
        },
        0x25 => {
            let lba = be32(c, 2);
            let pmi = c[8] & 1 != 0;
            if !pmi && lba != 0 {
                return Err(invalid(2, 7));
            }
            Op::ReadCapacity10 { lba, pmi }
        }
        0x08 | 0x0A => {
            let lba = u64::from(be32(c, 0) & 0x001F_FFFF);
            // A TRANSFER LENGTH of zero means 256 blocks for the six-byte commands (SBC-4 §5.16).
            let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
            if info.opcode == 0x08 {
                Op::Read {
                    lba,
                    blocks,
                    fua: false,
                }
            } else {
                Op::Write {
                    lba,
                    blocks,
                    fua: false,
                }
            }
        }
        0x28 => Op::Read {
            lba: u64::from(be32(c, 2)),
            blocks: u32::from(be16(c, 7)),
            fua: fua(c[1]),
        },
        0xA8 => Op::Read {
            lba: u64::from(be32(c, 2)),
            blocks: be32(c, 6),
            fua: fua(c[1]),
        },
        0x88 => Op::Read {
            lba: be64(c, 2),
            blocks: be32(c, 10),
            fua: fua(c[1]),
        },
        0x2A => Op::Write {
            lba: u64::from(be32(c, 2)),
            blocks: u32::from(be16(c, 7)),
            fua: fua(c[1]),
        },
        0xAA => Op::Write {
            lba: u64::from(be32(c, 2)),
            blocks: be32(c, 6),
            fua: fua(c[1]),
        },
        0x8A => Op::Write {
            lba: be64(c, 2),
            blocks: be32(c, 10),
            fua: fua(c[1]),
        },
        0x2E | 0xAE | 0x8E => {
            let (lba, blocks) = lba_len(info.opcode, c);
            let bytchk = (c[1] >> 1) & 0x03;
            if bytchk > 1 {
                return Err(invalid(1, 2));
            }
            Op::WriteVerify {
                lba,
                blocks,
                bytchk,
            }
        }
        0x2F | 0xAF | 0x8F => {
            let (lba, blocks) = lba_len(info.opcode, c);
            let bytchk = (c[1] >> 1) & 0x03;
            if bytchk == 2 {
                return Err(invalid(1, 2));
            }
            Op::Verify {
                lba,
                blocks,
                bytchk,
            }
        }
        0x34 | 0x90 => {
            let (lba, blocks) = lba_len(info.opcode, c);
            Op::PreFetch { lba, blocks }
        }
        0x35 | 0x91 => {
            let (lba, blocks) = lba_len(info.opcode, c);
            Op::SyncCache { lba, blocks }
        }
        0x37 => Op::ReadDefect {
            twelve: false,
            plist: c[2] & 0x10 != 0,
            glist: c[2] & 0x08 != 0,
            format: c[2] & 0x07,
            alloc: u32::from(be16(c, 7)),
        },
        0xB7 => Op::ReadDefect {
            twelve: true,
            plist: c[1] & 0x10 != 0,
            glist: c[1] & 0x08 != 0,
            format: c[1] & 0x07,
            alloc: be32(c, 6),
        },
        0x41 => Op::WriteSame {
            lba: u64::from(be32(c, 2)),
            blocks: u32::from(be16(c, 7)),
            unmap: c[1] & 0x08 != 0,
            ndob: false,
        },
        0x93 => Op::WriteSame {
            lba: be64(c, 2),
            blocks: be32(c, 10),
            unmap: c[1] & 0x08 != 0,
            ndob: c[1] & 0x01 != 0,
        },
        0x42 => Op::Unmap {
            len: u32::from(be16(c, 7)),
        },
        0x89 => Op::CompareAndWrite {
            lba: be64(c, 2),
            blocks: u32::from(c[13]),
            fua: fua(c[1]),
        },
        0x8B => Op::OrWrite {
            lba: be64(c, 2),
            blocks: be32(c, 10),
            fua: fua(c[1]),
        },
        0x9C => Op::WriteAtomic {
            lba: be64(c, 2),
            blocks: u32::from(be16(c, 12)),
            fua: fua(c[1]),
        },
        0x9E => match info.sa {
            Some(opcodes::SAI_READ_CAPACITY_16) => {
                let lba = be64(c, 2);
                let pmi = c[14] & 1 != 0;
                if !pmi && lba != 0 {
                    return Err(invalid(2, 7));
                }
                Op::ReadCapacity16 {
                    lba,
                    pmi,
                    alloc: be32(c, 10),
                }
            }
            _ => Op::GetLbaStatus {
                lba: be64(c, 2),
                alloc: be32(c, 10),
            },
        },
        0xA3 => match info.sa {
            Some(opcodes::MI_REPORT_SUPPORTED_OPCODES) => Op::ReportOpcodes {
                rctd: c[2] & 0x80 != 0,
                options: c[2] & 0x07,
                opcode: c[3],
                sa: be16(c, 4),
                alloc: be32(c, 6),
            },
            _ => Op::ReportTmfs {
                repd: c[2] & 0x80 != 0,
                alloc: be32(c, 6),
            },
        },
        0x5E => Op::PrIn {
            sa: c[1] & 0x1F,
            alloc: u32::from(be16(c, 7)),
        },
        0x5F => Op::PrOut {
            sa: c[1] & 0x1F,
            scope: c[2] >> 4,
            ty: c[2] & 0x0F,
            len: be32(c, 5),
        },
        0x16 | 0x56 => Op::Reserve,
        0x17 | 0x57 => Op::Release,
        0x83 => Op::ExtendedCopy { len: be32(c, 10) },
        0x84 => Op::ReceiveCopyResults {
            sa: c[1] & 0x1F,
            list_id: c[2],
            alloc: be32(c, 10),
        },
        _ => return Err(SenseError::invalid_opcode()),
    })
}

/// LBA and block count of the 10-, 12- and 16-byte block commands.
fn lba_len(opcode: u8, c: &[u8]) -> (u64, u32) {
    match opcode {
        0x20..=0x5F => (u64::from(be32(c, 2)), u32::from(be16(c, 7))),
        0xA0..=0xBF => (u64::from(be32(c, 2)), be32(c, 6)),
        _ => (be64(c, 2), be32(c, 10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::{AdditionalSense, SenseKey, SenseSpecific};

    fn err(cdb: &[u8]) -> SenseError {
        decode(cdb, true).unwrap_err()
    }

    #[test]
    fn read10_fields() {
        let d = decode(&[0x28, 0x08, 0, 0, 0x12, 0x34, 0x05, 0, 8, 0], true).unwrap();
        assert_eq!(
            d,
            Op::Read {
                lba: 0x1234,
                blocks: 8,
                fua: true
            }
        );
    }

    #[test]
    fn read6_zero_length_means_256() {
        let d = decode(&[0x08, 0x01, 0x02, 0x03, 0, 0], true).unwrap();
        assert_eq!(
            d,
            Op::Read {
                lba: 0x10203,
                blocks: 256,
                fua: false
            }
        );
    }

    #[test]
    fn rdprotect_is_rejected_with_pointer() {
        let e = err(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(e.key, SenseKey::ILLEGAL_REQUEST);
        assert_eq!(e.code, AdditionalSense::INVALID_FIELD_IN_CDB);
        assert_eq!(
            e.specific,
            Some(SenseSpecific::Field {
                in_cdb: true,
                byte: 1,
                bit: Some(5)
            })
        );
    }

    #[test]
    fn naca_is_rejected() {
        let e = err(&[0x00, 0, 0, 0, 0, 0x04]);
        assert_eq!(
            e.specific,
            Some(SenseSpecific::Field {
                in_cdb: true,
                byte: 5,
                bit: Some(2)
            })
        );
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        assert_eq!(
            err(&[0xC0, 0, 0, 0, 0, 0]).code,
            AdditionalSense::INVALID_COMMAND_OPERATION_CODE
        );
        let e = err(&[0x9E, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(e.code, AdditionalSense::INVALID_FIELD_IN_CDB);
        assert_eq!(
            e.specific,
            Some(SenseSpecific::Field {
                in_cdb: true,
                byte: 1,
                bit: Some(4)
            })
        );
    }

    #[test]
    fn short_cdb_is_rejected() {
        assert_eq!(
            err(&[0x28, 0, 0]).code,
            AdditionalSense::INVALID_FIELD_IN_CDB
        );
        assert_eq!(
            err(&[]).code,
            AdditionalSense::INVALID_COMMAND_OPERATION_CODE
        );
    }

    #[test]
    fn unmap_only_when_supported() {
        let cdb = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
        assert!(decode(&cdb, true).is_ok());
        assert_eq!(
            decode(&cdb, false).unwrap_err().code,
            AdditionalSense::INVALID_COMMAND_OPERATION_CODE
        );
    }

    #[test]
    fn inquiry_page_without_evpd() {
        let e = err(&[0x12, 0, 1, 1, 0, 0]);
        assert_eq!(
            e.specific,
            Some(SenseSpecific::Field {
                in_cdb: true,
                byte: 2,
                bit: Some(7)
            })
        );
    }

    #[test]
    fn verify_bytchk_reserved_value() {
        assert!(decode(&[0x2F, 0x06, 0, 0, 0, 0, 0, 0, 1, 0], true).is_ok());
        let e = err(&[0x2F, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(
            e.specific,
            Some(SenseSpecific::Field {
                in_cdb: true,
                byte: 1,
                bit: Some(2)
            })
        );
        let e = err(&[0x2E, 0x06, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(e.code, AdditionalSense::INVALID_FIELD_IN_CDB);
    }
}
