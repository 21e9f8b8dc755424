//! INQUIRY data: standard data (SPC-5 §6.7.2) and the vital product data pages Supported VPD
//! Pages (§7.7.16), Unit Serial Number (§7.7.18), Device Identification (§7.7.6), Extended
//! INQUIRY Data (§7.7.8), Mode Page Policy (page 87h), Third-party Copy (§7.7.17), Block
//! Limits (SBC-4 §6.6.4), Block
//! Device Characteristics (SBC-4 §6.6.2) and Logical Block Provisioning (SBC-4 §6.6.6).

use crate::config::{CopyLimits, LuConfig};
use crate::opcodes;
use crate::sense::SenseError;

/// Peripheral device type: direct access block device.
const PDT_DISK: u8 = 0x00;

/// Version descriptors claimed in standard INQUIRY data (SPC-5 §6.7.2, table 149).
const VERSION_DESCRIPTORS: [u16; 6] = [
    0x00A0, // SAM-5
    0x0960, // iSCSI
    0x0460, // SPC-4
    0x04C0, // SBC-3
    0x05C0, // SPC-5
    0x0600, // SBC-4
];

/// VPD pages in ascending order.
pub(crate) const VPD_PAGES: [u8; 9] = [0x00, 0x80, 0x83, 0x86, 0x87, 0x8F, 0xB0, 0xB1, 0xB2];

/// Everything the INQUIRY builders need to know about the logical unit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InquiryContext<'a> {
    pub cfg: &'a LuConfig,
    pub block_size: u32,
    pub physical_block_exponent: u8,
    pub thin: bool,
    pub lbprz: bool,
    pub volatile_cache: bool,
    pub rotation_rate: u16,
    pub optimal_granularity: u32,
    pub optimal_transfer: u32,
    pub max_transfer: u32,
    pub max_write_same: u64,
    pub max_caw: u8,
    pub max_atomic: u32,
    /// The relative target port the command arrived on.
    pub target_port: u16,
}

fn ascii_field(dst: &mut [u8], src: &str) {
    dst.fill(b' ');
    for (d, c) in dst.iter_mut().zip(src.bytes()) {
        *d = if (0x20..=0x7E).contains(&c) { c } else { b' ' };
    }
}

/// Standard INQUIRY data (96 bytes).
pub(crate) fn standard(ctx: &InquiryContext<'_>) -> Vec<u8> {
    let mut d = vec![0u8; 96];
    d[0] = PDT_DISK;
    d[2] = 0x06; // SPC-4: libiscsi and Linux only accept versions up to 6.
    d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = 91;
    d[5] = 0x08; // 3PC: EXTENDED COPY
    d[7] = 0x02; // CMDQUE
    ascii_field(&mut d[8..16], &ctx.cfg.vendor);
    ascii_field(&mut d[16..32], &ctx.cfg.product);
    ascii_field(&mut d[32..36], &ctx.cfg.revision);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

fn vpd(page: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.push(PDT_DISK);
    v.push(page);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A designation descriptor (SPC-5 §7.7.6.1).
fn designator(
    out: &mut Vec<u8>,
    protocol: Option<u8>,
    code_set: u8,
    assoc: u8,
    kind: u8,
    value: &[u8],
) {
    let (b0, piv) = match protocol {
        Some(p) => ((p << 4) | code_set, 0x80),
        None => (code_set, 0),
    };
    out.push(b0);
    out.push(piv | (assoc << 4) | kind);
    out.push(0);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// A null-terminated SCSI name string padded to a multiple of four bytes.
fn name_string(name: &str) -> Vec<u8> {
    let mut v: Vec<u8> = name.bytes().take(251).collect();
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

const PROTOCOL_ISCSI: u8 = 0x5;

/// Builds a VPD page, or INVALID FIELD IN CDB for pages we do not have.
pub(crate) fn vpd_page(page: u8, ctx: &InquiryContext<'_>) -> Result<Vec<u8>, SenseError> {
    Ok(match page {
        0x00 => vpd(0x00, &VPD_PAGES),
        0x80 => vpd(0x80, ctx.cfg.identity.serial().as_bytes()),
        0x83 => {
            let mut b = Vec::with_capacity(128);
            // Logical unit: NAA IEEE Registered Extended, binary.
            designator(&mut b, None, 1, 0, 3, ctx.cfg.identity.naa_designator());
            // Logical unit: T10 vendor ID + serial, ASCII.
            let mut t10 = [b' '; 8].to_vec();
            ascii_field(&mut t10, &ctx.cfg.vendor);
            t10.extend_from_slice(ctx.cfg.identity.serial().as_bytes());
            t10.truncate(255);
            designator(&mut b, None, 2, 0, 1, &t10);
            // Target port: relative target port identifier.
            designator(
                &mut b,
                Some(PROTOCOL_ISCSI),
                1,
                1,
                4,
                &[0, 0, (ctx.target_port >> 8) as u8, ctx.target_port as u8],
            );
            // Target port: SCSI name string "<target>,t,0x<tpgt>".
            let port = format!("{},t,0x{:04x}", ctx.cfg.target_name, ctx.target_port);
            designator(&mut b, Some(PROTOCOL_ISCSI), 3, 1, 8, &name_string(&port));
            // Target device: SCSI name string.
            designator(
                &mut b,
                Some(PROTOCOL_ISCSI),
                3,
                2,
                8,
                &name_string(&ctx.cfg.target_name),
            );
            vpd(0x83, &b)
        }
        0x86 => {
            let mut b = [0u8; 60];
            b[1] = 0x07; // HEADSUP, ORDSUP, SIMPSUP
            b[2] = u8::from(ctx.volatile_cache); // V_SUP
            b[3] = 0x01; // LUICLR: unit attentions are cleared on I_T nexus loss
            vpd(0x86, &b)
        }
        0x87 => vpd(0x87, &crate::mode::policy_descriptors()),
        0x8F => vpd(0x8F, &third_party_copy(ctx)),
        0xB0 => vpd(0xB0, &block_limits(ctx)),
        0xB1 => {
            let mut b = [0u8; 60];
            b[0..2].copy_from_slice(&ctx.rotation_rate.to_be_bytes());
            vpd(0xB1, &b)
        }
        0xB2 => {
            let mut b = [0u8; 4];
            if ctx.thin {
                // LBPU, LBPWS, LBPWS10; LBPRZ=001b when deallocated blocks read as zeros.
                b[1] = 0xE0 | if ctx.lbprz { 0x04 } else { 0 };
                b[2] = 0x02; // PROVISIONING TYPE: thin
            }
            vpd(0xB2, &b)
        }
        _ => return Err(SenseError::invalid_cdb_field(2, Some(7))),
    })
}

fn block_limits(ctx: &InquiryContext<'_>) -> [u8; 60] {
    let mut b = [0u8; 60];
    let granularity = if ctx.optimal_granularity != 0 {
        ctx.optimal_granularity
    } else {
        1u32 << ctx.physical_block_exponent.min(15)
    };
    b[0] = 0x00; // WSNZ = 0: WRITE SAME with zero blocks writes to the end of the medium
    b[1] = ctx.max_caw;
    b[2..4].copy_from_slice(&u16::try_from(granularity).unwrap_or(u16::MAX).to_be_bytes());
    b[4..8].copy_from_slice(&ctx.max_transfer.to_be_bytes());
    b[8..12].copy_from_slice(&ctx.optimal_transfer.min(ctx.max_transfer).to_be_bytes());
    if ctx.thin {
        b[16..20].copy_from_slice(&ctx.cfg.max_unmap_blocks.to_be_bytes());
        b[20..24].copy_from_slice(&ctx.cfg.max_unmap_descriptors.to_be_bytes());
        b[24..28].copy_from_slice(&(1u32 << ctx.physical_block_exponent.min(31)).to_be_bytes());
        b[28] = 0x80; // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
    }
    b[32..40].copy_from_slice(&ctx.max_write_same.to_be_bytes());
    b[40..44].copy_from_slice(&ctx.max_atomic.to_be_bytes());
    b
}

fn third_party_copy(ctx: &InquiryContext<'_>) -> Vec<u8> {
    let limits: CopyLimits = ctx.cfg.copy;
    let mut out = Vec::with_capacity(128);
    let mut descriptor = |kind: u16, body: &[u8]| {
        let mut b = body.to_vec();
        while b.len() % 4 != 0 {
            b.push(0);
        }
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    };
    // Supported Commands: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS.
    let commands = [
        opcodes::OpCode::EXTENDED_COPY.0,
        1,
        opcodes::XCOPY_LID1,
        opcodes::OpCode::RECEIVE_COPY_RESULTS.0,
        2,
        opcodes::RCR_COPY_STATUS,
        opcodes::RCR_OPERATING_PARAMETERS,
    ];
    let mut body = vec![commands.len() as u8];
    body.extend_from_slice(&commands);
    descriptor(0x0001, &body);
    // Parameter Data.
    let mut body = [0u8; 28];
    body[2..4].copy_from_slice(&limits.max_target_descriptors.to_be_bytes());
    body[4..6].copy_from_slice(&limits.max_segment_descriptors.to_be_bytes());
    body[6..10].copy_from_slice(&limits.max_descriptor_list_length.to_be_bytes());
    descriptor(0x0008, &body);
    // Supported Descriptors: block-to-block segments, identification CSCD descriptors.
    descriptor(0x0009, &[2, 0x02, 0xE4]);
    // Supported CSCD Descriptor IDs: none.
    descriptor(0x000A, &[0, 0]);
    // General Copy Operations.
    let mut body = [0u8; 32];
    body[0..4].copy_from_slice(&1u32.to_be_bytes());
    body[4..8].copy_from_slice(&1u32.to_be_bytes());
    body[8..12].copy_from_slice(&max_segment_bytes(ctx.block_size).to_be_bytes());
    body[12] = ctx.block_size.trailing_zeros() as u8;
    descriptor(0x8001, &body);
    out
}

/// The largest segment of a block-to-block copy: 65535 blocks.
pub(crate) fn max_segment_bytes(block_size: u32) -> u32 {
    u32::try_from(u64::from(block_size) * 0xFFFF).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(cfg: &LuConfig) -> InquiryContext<'_> {
        InquiryContext {
            cfg,
            block_size: 512,
            physical_block_exponent: 0,
            thin: true,
            lbprz: true,
            volatile_cache: false,
            rotation_rate: 1,
            optimal_granularity: 8,
            optimal_transfer: 0,
            max_transfer: 65536,
            max_write_same: 1 << 21,
            max_caw: 255,
            max_atomic: 256,
            target_port: 1,
        }
    }

    #[test]
    fn standard_inquiry_layout() {
        let cfg = LuConfig::new("iqn.t", 0);
        let d = standard(&ctx(&cfg));
        assert_eq!(&d[..8], &[0, 0, 6, 0x12, 91, 0x08, 0, 0x02]);
        assert_eq!(&d[8..36], b"RTGT    rtgt disk       0.1 ");
        assert_eq!(
            &d[58..70],
            &[
                0, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xC0, 0x05, 0xC0, 0x06, 0x00
            ]
        );
        assert_eq!(d.len(), 96);
    }

    #[test]
    fn mode_page_policy_reports_the_control_page_per_i_t_nexus() {
        let cfg = LuConfig::new("iqn.t", 0);
        assert_eq!(
            vpd_page(0x87, &ctx(&cfg)).unwrap(),
            vec![
                0, 0x87, 0, 16, //
                0x01, 0, 0, 0, // Read-Write Error Recovery: shared
                0x08, 0, 0, 0, // Caching: shared
                0x0A, 0, 3, 0, // Control: per I_T nexus
                0x1C, 0, 0, 0, // Informational Exceptions Control: shared
            ]
        );
    }

    #[test]
    fn supported_pages() {
        let cfg = LuConfig::new("iqn.t", 0);
        assert_eq!(
            vpd_page(0, &ctx(&cfg)).unwrap(),
            vec![
                0, 0, 0, 9, 0x00, 0x80, 0x83, 0x86, 0x87, 0x8F, 0xB0, 0xB1, 0xB2
            ]
        );
        assert_eq!(
            vpd_page(0x81, &ctx(&cfg)).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(7))
        );
    }

    #[test]
    fn block_limits_page() {
        let cfg = LuConfig::new("iqn.t", 0);
        let p = vpd_page(0xB0, &ctx(&cfg)).unwrap();
        assert_eq!(p.len(), 64);
        // WSNZ (byte 4 bit 0) clear: zero-block WRITE SAME is supported.
        assert_eq!(&p[..12], &[0, 0xB0, 0, 0x3C, 0, 255, 0, 8, 0, 1, 0, 0]);
        assert_eq!(&p[20..28], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 8, 0]);
        assert_eq!(&p[36..48], &[0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn logical_block_provisioning_page() {
        let cfg = LuConfig::new("iqn.t", 0);
        assert_eq!(
            vpd_page(0xB2, &ctx(&cfg)).unwrap(),
            vec![0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]
        );
        let mut c = ctx(&cfg);
        c.thin = false;
        assert_eq!(vpd_page(0xB2, &c).unwrap(), vec![0, 0xB2, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn device_identification_carries_a_configured_8_byte_naa() {
        let mut cfg = LuConfig::new("iqn.t", 0);
        let naa = [0x52, 0x00, 0x45, 0x67, 0xBA, 0x64, 0x67, 0x8D];
        cfg.identity = cfg.identity.clone().with_naa(&naa).unwrap();
        let p = vpd_page(0x83, &ctx(&cfg)).unwrap();
        assert_eq!(&p[4..8], &[0x01, 0x03, 0x00, 0x08]);
        assert_eq!(&p[8..16], &naa);
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!(total + 4, p.len());
    }

    #[test]
    fn device_identification_has_one_naa() {
        let cfg = LuConfig::new("iqn.t", 0);
        let p = vpd_page(0x83, &ctx(&cfg)).unwrap();
        assert_eq!(&p[4..8], &[0x01, 0x03, 0x00, 0x10]);
        assert_eq!(&p[8..24], &cfg.identity.naa());
        // Walk the descriptors: exactly one NAA and lengths consistent with the page length.
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!(total + 4, p.len());
        let mut at = 4;
        let mut naa = 0;
        while at < p.len() {
            if p[at + 1] & 0x0F == 3 {
                naa += 1;
            }
            at += 4 + usize::from(p[at + 3]);
        }
        assert_eq!(at, p.len());
        assert_eq!(naa, 1);
    }

    #[test]
    fn third_party_copy_page() {
        let cfg = LuConfig::new("iqn.t", 0);
        let p = vpd_page(0x8F, &ctx(&cfg)).unwrap();
        assert_eq!(
            &p[4..20],
            &[0, 1, 0, 8, 7, 0x83, 1, 0, 0x84, 2, 0, 3, 0, 8, 0, 28]
        );
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!(total + 4, p.len());
        let mut at = 4;
        while at < p.len() {
            let len = usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
            assert_eq!(len % 4, 0);
            at += 4 + len;
        }
        assert_eq!(at, p.len());
    }
}
