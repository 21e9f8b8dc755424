//! EXTENDED COPY (LID1) parameter lists and RECEIVE COPY RESULTS (LID1) data
//! (SPC-5 §5.17, §6.4, §6.18).
//!
//! Only identification-descriptor CSCD descriptors (E4h) naming logical units by their NAA
//! designator and block-to-block segment descriptors (02h) are supported; the copy manager
//! copies only between logical units of this target.

use crate::config::CopyLimits;
use crate::inquiry::max_segment_bytes;
use crate::sense::{AdditionalSense, SenseError};

/// The CSCD descriptor type code for an identification descriptor.
const CSCD_IDENTIFICATION: u8 = 0xE4;
/// The segment descriptor type code for block device to block device.
const SEG_BLOCK_TO_BLOCK: u8 = 0x02;
/// The length of the parameter list header.
const HEADER: usize = 16;

/// A CSCD (target) descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetDescriptor {
    /// The NUL bit: a null copy target.
    pub null: bool,
    /// Designator type (SPC-5 table 500) and designator bytes.
    pub designator_type: u8,
    pub designator: Vec<u8>,
    /// DISK BLOCK LENGTH from the device type specific parameters.
    pub block_len: u32,
    /// Offset of the descriptor in the parameter list.
    pub at: usize,
}

/// A block-to-block segment descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub src: u16,
    pub dst: u16,
    /// NUMBER OF BLOCKS, in destination blocks when `dc` is set, else source blocks.
    pub blocks: u16,
    pub dc: bool,
    pub src_lba: u64,
    pub dst_lba: u64,
}

/// A parsed parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyList {
    pub list_id: u8,
    /// LIST ID USAGE (00b hold, 10b retain status, 11b discard).
    pub usage: u8,
    pub targets: Vec<TargetDescriptor>,
    pub segments: Vec<Segment>,
}

impl CopyList {
    /// Whether the copy status is kept for RECEIVE COPY RESULTS.
    pub(crate) fn retains_status(&self) -> bool {
        self.usage != 0b11
    }
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

fn illegal(code: AdditionalSense) -> SenseError {
    SenseError::new(crate::sense::SenseKey::ILLEGAL_REQUEST, code)
}

/// Parses an EXTENDED COPY (LID1) parameter list.
pub(crate) fn parse(data: &[u8], limits: CopyLimits) -> Result<CopyList, SenseError> {
    if data.len() < HEADER {
        return Err(SenseError::parameter_list_length());
    }
    let list_id = data[0];
    let usage = (data[1] >> 3) & 0x03;
    if usage == 0b01 {
        return Err(SenseError::invalid_param_field(1, Some(4)));
    }
    let tgt_len = usize::from(be16(data, 2));
    let seg_len = be32(data, 8) as usize;
    let inline_len = be32(data, 12) as usize;
    if inline_len != 0 {
        return Err(
            illegal(AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST).with_specific(
                crate::sense::SenseSpecific::Field {
                    in_cdb: false,
                    byte: 12,
                    bit: Some(7),
                },
            ),
        );
    }
    let total = tgt_len
        .checked_add(seg_len)
        .ok_or_else(SenseError::parameter_list_length)?;
    if total > limits.max_descriptor_list_length as usize || HEADER + total > data.len() {
        return Err(SenseError::parameter_list_length());
    }
    if tgt_len % 32 != 0 {
        return Err(SenseError::invalid_param_field(2, Some(7)));
    }
    if tgt_len / 32 > usize::from(limits.max_target_descriptors) {
        return Err(illegal(AdditionalSense::TOO_MANY_TARGET_DESCRIPTORS));
    }
    let mut targets = Vec::with_capacity(tgt_len / 32);
    for at in (HEADER..HEADER + tgt_len).step_by(32) {
        let d = &data[at..at + 32];
        if d[0] != CSCD_IDENTIFICATION {
            return Err(illegal(
                AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
            ));
        }
        // The LU ID TYPE field (byte 1 bits 7-6) qualifies the LU IDENTIFIER of port-based
        // target descriptors; an identification descriptor (E4h) names its logical unit by the
        // designator alone, so the field is not interpreted here (libiscsi's
        // ExtendedCopy.ValidTgtDescr expects a reserved value to be accepted).
        let dlen = usize::from(d[7]);
        if dlen > 20 {
            return Err(SenseError::invalid_param_field((at + 7) as u16, Some(7)));
        }
        targets.push(TargetDescriptor {
            null: d[1] & 0x20 != 0,
            designator_type: d[5] & 0x0F,
            designator: d[8..8 + dlen].to_vec(),
            block_len: u32::from_be_bytes([0, d[29], d[30], d[31]]),
            at,
        });
    }
    let mut segments = Vec::new();
    let mut at = HEADER + tgt_len;
    let end = at + seg_len;
    while at < end {
        let Some(h) = data.get(at..at + 4) else {
            return Err(SenseError::parameter_list_length());
        };
        let dlen = 4 + usize::from(be16(h, 2));
        if at + dlen > end {
            return Err(SenseError::parameter_list_length());
        }
        if segments.len() >= usize::from(limits.max_segment_descriptors) {
            return Err(illegal(AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
        if h[0] != SEG_BLOCK_TO_BLOCK {
            return Err(illegal(
                AdditionalSense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
            ));
        }
        if dlen != 28 {
            return Err(SenseError::invalid_param_field((at + 2) as u16, Some(7)));
        }
        let d = &data[at..at + 28];
        segments.push(Segment {
            dc: d[1] & 0x02 != 0,
            src: be16(d, 4),
            dst: be16(d, 6),
            blocks: be16(d, 10),
            src_lba: be64(d, 12),
            dst_lba: be64(d, 20),
        });
        at += dlen;
    }
    Ok(CopyList {
        list_id,
        usage,
        targets,
        segments,
    })
}

/// The outcome of a copy, for RECEIVE COPY RESULTS COPY STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyState {
    InProgress,
    Done { ok: bool },
}

/// A retained copy status.
#[derive(Debug, Clone)]
pub(crate) struct CopyRecord {
    pub port: std::sync::Arc<str>,
    pub list_id: u8,
    pub state: CopyState,
    pub segments: u16,
    pub bytes: u64,
}

/// COPY STATUS parameter data (SPC-5 §6.18.3).
pub(crate) fn copy_status(r: &CopyRecord) -> Vec<u8> {
    let status = match r.state {
        CopyState::InProgress => 0x00,
        CopyState::Done { ok: true } => 0x01,
        CopyState::Done { ok: false } => 0x02,
    };
    // TRANSFER COUNT UNITS: bytes, then KiB, MiB, ... until the count fits in 32 bits.
    let mut units = 0u8;
    let mut count = r.bytes;
    while count > u64::from(u32::MAX) {
        count >>= 10;
        units = if units == 0 { 0xF1 } else { units + 1 };
    }
    let mut v = vec![0, 0, 0, 8, status];
    v.extend_from_slice(&r.segments.to_be_bytes());
    v.push(units);
    v.extend_from_slice(&(count as u32).to_be_bytes());
    v
}

/// OPERATING PARAMETERS parameter data (SPC-5 §6.18.4).
pub(crate) fn operating_parameters(limits: CopyLimits, block_size: u32) -> Vec<u8> {
    let mut v = vec![0u8; 46];
    v[0..4].copy_from_slice(&42u32.to_be_bytes());
    v[4] = 0x01; // SNLID: list identifiers are checked per I_T nexus
    v[8..10].copy_from_slice(&limits.max_target_descriptors.to_be_bytes());
    v[10..12].copy_from_slice(&limits.max_segment_descriptors.to_be_bytes());
    v[12..16].copy_from_slice(&limits.max_descriptor_list_length.to_be_bytes());
    v[16..20].copy_from_slice(&max_segment_bytes(block_size).to_be_bytes());
    // Inline data, held data and stream transfers are not supported (zero).
    v[34..36].copy_from_slice(&1u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
    v[36] = 1; // MAXIMUM CONCURRENT COPIES
    v[37] = block_size.trailing_zeros() as u8; // DATA SEGMENT GRANULARITY (log2)
    v[43] = 2; // IMPLEMENTED DESCRIPTOR LIST LENGTH
    v[44] = SEG_BLOCK_TO_BLOCK;
    v[45] = CSCD_IDENTIFICATION;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tgt: u16, seg: u32) -> Vec<u8> {
        let mut h = vec![0u8; 16];
        h[0] = 1;
        h[2..4].copy_from_slice(&tgt.to_be_bytes());
        h[8..12].copy_from_slice(&seg.to_be_bytes());
        h
    }

    fn target(naa: &[u8; 16]) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 16;
        d[8..24].copy_from_slice(naa);
        d[29..32].copy_from_slice(&[0, 2, 0]);
        d
    }

    fn segment(blocks: u16, src: u64, dst: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&src.to_be_bytes());
        d[20..28].copy_from_slice(&dst.to_be_bytes());
        d
    }

    #[test]
    fn parses_a_simple_list() {
        let mut p = header(32, 28);
        p.extend(target(&[0x60; 16]));
        p.extend(segment(8, 1, 100));
        let l = parse(&p, CopyLimits::default()).unwrap();
        assert_eq!(l.targets.len(), 1);
        assert_eq!(l.targets[0].block_len, 512);
        assert_eq!(
            l.segments,
            vec![Segment {
                src: 0,
                dst: 0,
                blocks: 8,
                dc: false,
                src_lba: 1,
                dst_lba: 100
            }]
        );
    }

    #[test]
    fn truncated_lists() {
        let mut p = header(32, 28);
        p.extend(target(&[0x60; 16]));
        p.extend(segment(8, 1, 100));
        for cut in [10, 47, 75] {
            assert_eq!(
                parse(&p[..cut], CopyLimits::default()).unwrap_err(),
                SenseError::parameter_list_length()
            );
        }
    }

    #[test]
    fn descriptor_limits_and_types() {
        let limits = CopyLimits {
            max_target_descriptors: 1,
            max_segment_descriptors: 1,
            max_descriptor_list_length: 1024,
        };
        let mut p = header(64, 28);
        p.extend(target(&[0x60; 16]));
        p.extend(target(&[0x60; 16]));
        p.extend(segment(1, 0, 0));
        assert_eq!(
            parse(&p, limits).unwrap_err().code,
            AdditionalSense::TOO_MANY_TARGET_DESCRIPTORS
        );
        let mut p = header(32, 56);
        p.extend(target(&[0x60; 16]));
        p.extend(segment(1, 0, 0));
        p.extend(segment(1, 0, 0));
        assert_eq!(
            parse(&p, limits).unwrap_err().code,
            AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS
        );
        let mut p = header(32, 28);
        let mut t = target(&[0x60; 16]);
        t[0] = 0xE0;
        p.extend(t);
        p.extend(segment(1, 0, 0));
        assert_eq!(
            parse(&p, limits).unwrap_err().code,
            AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE
        );
        let mut p = header(32, 20);
        p.extend(target(&[0x60; 16]));
        let mut s = vec![0u8; 20];
        s[0] = 0x03;
        s[2..4].copy_from_slice(&0x10u16.to_be_bytes());
        p.extend(s);
        assert_eq!(
            parse(&p, limits).unwrap_err().code,
            AdditionalSense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
        );
    }

    #[test]
    fn status_units() {
        let r = CopyRecord {
            port: "p".into(),
            list_id: 1,
            state: CopyState::Done { ok: true },
            segments: 1,
            bytes: 1 << 40,
        };
        assert_eq!(
            copy_status(&r),
            vec![0, 0, 0, 8, 1, 0, 1, 0xF1, 0x40, 0, 0, 0]
        );
    }

    #[test]
    fn operating_parameters_layout() {
        let v = operating_parameters(CopyLimits::default(), 512);
        assert_eq!(
            &v[..20],
            &[
                0, 0, 0, 42, 1, 0, 0, 0, 0, 4, 0, 8, 0, 0, 4, 0, 0x01, 0xFF, 0xFE, 0
            ]
        );
        assert_eq!(&v[43..], &[2, 0x02, 0xE4]);
    }
}
