//! Mode pages: MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-5 §6.11–6.14, §7.5) with the
//! Read-Write Error Recovery (SBC-4 §6.5.8), Caching (SBC-4 §6.5.5), Control (SPC-5 §7.5.9)
//! and Informational Exceptions Control (SPC-5 §7.5.14) pages.
//!
//! Current, changeable and default values are reported; saved values are not implemented
//! (SAVING PARAMETERS NOT SUPPORTED). The changeable fields are WCE (when the backend has a
//! volatile cache), D_SENSE and SWP. Every other field of a MODE SELECT page must equal its
//! current value.
//!
//! The Control page is kept per I_T nexus and the other pages are shared by every nexus; the
//! Mode Page Policy VPD page (SPC-5, VPD page 87h) reports exactly that
//! ([`policy_descriptors`]).

use crate::sense::{AdditionalSense, SenseError, SenseKey};

/// The mode parameters that can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeState {
    /// Caching page WCE: writes may be acknowledged before they are durable.
    pub wce: bool,
    /// Control page D_SENSE: descriptor format sense data.
    pub d_sense: bool,
    /// Control page SWP: software write protect.
    pub swp: bool,
}

/// What the device behind the pages can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeShape {
    /// The backend has a volatile write cache (WCE defaults to one and is changeable).
    pub volatile_cache: bool,
    pub write_protected: bool,
    pub block_size: u32,
    pub num_blocks: u64,
}

impl ModeShape {
    pub(crate) fn defaults(&self) -> ModeState {
        ModeState {
            wce: self.volatile_cache,
            d_sense: false,
            swp: false,
        }
    }
}

/// MODE SENSE page control (SPC-5 §6.13.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageControl {
    Current,
    Changeable,
    Default,
}

const PAGE_RW_ERROR_RECOVERY: u8 = 0x01;
const PAGE_CACHING: u8 = 0x08;
const PAGE_CONTROL: u8 = 0x0A;
const PAGE_INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
const ALL_PAGES: u8 = 0x3F;
const PAGES: [u8; 4] = [
    PAGE_RW_ERROR_RECOVERY,
    PAGE_CACHING,
    PAGE_CONTROL,
    PAGE_INFORMATIONAL_EXCEPTIONS,
];

fn page(code: u8, pc: PageControl, state: ModeState, shape: &ModeShape) -> Option<Vec<u8>> {
    let changeable = pc == PageControl::Changeable;
    let values = match pc {
        PageControl::Current => state,
        PageControl::Default | PageControl::Changeable => shape.defaults(),
    };
    Some(match code {
        PAGE_RW_ERROR_RECOVERY => vec![0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        PAGE_CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 0x12;
            if changeable {
                p[2] = if shape.volatile_cache { 0x04 } else { 0 };
            } else if values.wce {
                p[2] = 0x04;
            }
            p
        }
        PAGE_CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = 0x0A;
            p[1] = 0x0A;
            if changeable {
                p[2] = 0x04;
                p[4] = 0x08;
            } else {
                // TST=000b (one task set), D_SENSE; QUEUE ALGORITHM MODIFIER=1 (unrestricted
                // reordering), QERR=00b; SWP; TAS=0; BUSY TIMEOUT PERIOD unlimited.
                p[2] = if values.d_sense { 0x04 } else { 0 };
                p[3] = 0x10;
                p[4] = if values.swp { 0x08 } else { 0 };
                p[8] = 0xFF;
                p[9] = 0xFF;
            }
            p
        }
        PAGE_INFORMATIONAL_EXCEPTIONS => {
            let mut p = vec![0u8; 12];
            p[0] = 0x1C;
            p[1] = 0x0A;
            if !changeable {
                p[2] = 0x08; // DEXCPT: informational exceptions are not reported.
            }
            p
        }
        _ => return None,
    })
}

/// MODE PAGE POLICY: one copy of the page shared by every I_T nexus.
const POLICY_SHARED: u8 = 0b00;
/// MODE PAGE POLICY: each I_T nexus has its own copy of the page.
const POLICY_PER_IT_NEXUS: u8 = 0b11;

/// The mode page policy descriptors of the Mode Page Policy VPD page (SPC-5, VPD page 87h):
/// four bytes per page — policy page code, policy subpage code, MLUS (zero: each logical unit
/// has its own pages) with the MODE PAGE POLICY, and a reserved byte.
pub(crate) fn policy_descriptors() -> Vec<u8> {
    let mut d = Vec::with_capacity(PAGES.len() * 4);
    for &code in &PAGES {
        let policy = if code == PAGE_CONTROL {
            POLICY_PER_IT_NEXUS
        } else {
            POLICY_SHARED
        };
        d.extend_from_slice(&[code, 0, policy, 0]);
    }
    d
}

/// A decoded MODE SENSE request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenseRequest {
    pub ten: bool,
    pub dbd: bool,
    pub llbaa: bool,
    pub pc: u8,
    pub page: u8,
    pub subpage: u8,
}

/// Builds the MODE SENSE parameter data (before cutting to the allocation length).
pub(crate) fn sense(
    req: SenseRequest,
    state: ModeState,
    shape: &ModeShape,
) -> Result<Vec<u8>, SenseError> {
    let pc = match req.pc {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => {
            return Err(SenseError::new(
                SenseKey::ILLEGAL_REQUEST,
                AdditionalSense::SAVING_PARAMETERS_NOT_SUPPORTED,
            ));
        }
    };
    // Only subpage 00h exists; FFh asks for all subpages of the page(s).
    if req.subpage != 0 && req.subpage != 0xFF {
        return Err(SenseError::invalid_cdb_field(3, Some(7)));
    }
    let codes: &[u8] = if req.page == ALL_PAGES {
        &PAGES
    } else if PAGES.contains(&req.page) {
        std::slice::from_ref(&req.page)
    } else {
        return Err(SenseError::invalid_cdb_field(2, Some(5)));
    };
    let mut pages = Vec::with_capacity(64);
    for &c in codes {
        if let Some(p) = page(c, pc, state, shape) {
            pages.extend_from_slice(&p);
        }
    }

    let mut dsp = 0x10; // DPOFUA: DPO and FUA are supported.
    if shape.write_protected || state.swp {
        dsp |= 0x80;
    }
    let long = req.ten && req.llbaa;
    let mut bd = Vec::new();
    if !req.dbd {
        if long {
            bd.extend_from_slice(&shape.num_blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&shape.block_size.to_be_bytes());
        } else {
            let n = u32::try_from(shape.num_blocks).unwrap_or(u32::MAX);
            bd.extend_from_slice(&n.to_be_bytes());
            bd.push(0);
            bd.extend_from_slice(&shape.block_size.to_be_bytes()[1..]);
        }
    }
    let mut out = Vec::with_capacity(8 + bd.len() + pages.len());
    if req.ten {
        let len = u16::try_from(6 + bd.len() + pages.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(0);
        out.push(dsp);
        out.push(u8::from(long));
        out.push(0);
        out.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let len = u8::try_from(3 + bd.len() + pages.len()).unwrap_or(u8::MAX);
        out.extend_from_slice(&[len, 0, dsp, bd.len() as u8]);
    }
    out.extend_from_slice(&bd);
    out.extend_from_slice(&pages);
    Ok(out)
}

/// Parses and applies MODE SELECT parameter data, returning the new state.
pub(crate) fn select(
    ten: bool,
    data: &[u8],
    state: ModeState,
    shape: &ModeShape,
) -> Result<ModeState, SenseError> {
    let hdr = if ten { 8 } else { 4 };
    if data.len() < hdr {
        return Err(SenseError::parameter_list_length());
    }
    let (medium_type, bdl) = if ten {
        (data[2], usize::from(u16::from_be_bytes([data[6], data[7]])))
    } else {
        (data[1], usize::from(data[3]))
    };
    if medium_type != 0 {
        return Err(SenseError::invalid_param_field(
            if ten { 2 } else { 1 },
            Some(7),
        ));
    }
    let long = ten && data[4] & 0x01 != 0;
    let bd_len = if long { 16 } else { 8 };
    if bdl != 0 && bdl != bd_len {
        return Err(SenseError::invalid_param_field(
            if ten { 6 } else { 3 },
            Some(7),
        ));
    }
    if data.len() < hdr + bdl {
        return Err(SenseError::parameter_list_length());
    }
    if bdl != 0 {
        let bd = &data[hdr..hdr + bdl];
        let (blocks, block_len, len_at) = if long {
            let mut n = [0u8; 8];
            n.copy_from_slice(&bd[..8]);
            (
                u64::from_be_bytes(n),
                u32::from_be_bytes([bd[12], bd[13], bd[14], bd[15]]),
                12,
            )
        } else {
            (
                u64::from(u32::from_be_bytes([bd[0], bd[1], bd[2], bd[3]])),
                u32::from_be_bytes([0, bd[5], bd[6], bd[7]]),
                5,
            )
        };
        let current_blocks = if long {
            shape.num_blocks
        } else {
            shape.num_blocks.min(u64::from(u32::MAX))
        };
        if blocks != 0 && blocks != current_blocks {
            return Err(SenseError::invalid_param_field(hdr as u16, Some(7)));
        }
        if block_len != shape.block_size {
            return Err(SenseError::invalid_param_field(
                (hdr + len_at) as u16,
                Some(7),
            ));
        }
    }

    let current_pages: Vec<(u8, Vec<u8>, Vec<u8>)> = PAGES
        .iter()
        .filter_map(|&c| {
            let cur = page(c, PageControl::Current, state, shape)?;
            let chg = page(c, PageControl::Changeable, state, shape)?;
            Some((c, cur, chg))
        })
        .collect();
    let mut new = state;
    let mut at = hdr + bdl;
    while at < data.len() {
        let b0 = data[at];
        if b0 & 0x80 != 0 {
            // PS is reserved in MODE SELECT parameter data.
            return Err(SenseError::invalid_param_field(at as u16, Some(7)));
        }
        if b0 & 0x40 != 0 {
            // No page of this logical unit has subpages.
            return Err(SenseError::invalid_param_field(at as u16, Some(6)));
        }
        let code = b0 & 0x3F;
        let Some((_, cur, chg)) = current_pages.iter().find(|(c, _, _)| *c == code) else {
            return Err(SenseError::invalid_param_field(at as u16, Some(5)));
        };
        let Some(&plen) = data.get(at + 1) else {
            return Err(SenseError::parameter_list_length());
        };
        if usize::from(plen) != cur.len() - 2 {
            return Err(SenseError::invalid_param_field((at + 1) as u16, Some(7)));
        }
        let Some(p) = data.get(at..at + cur.len()) else {
            return Err(SenseError::parameter_list_length());
        };
        for i in 2..cur.len() {
            let differs = (p[i] ^ cur[i]) & !chg[i];
            if differs != 0 {
                return Err(SenseError::invalid_param_field(
                    (at + i) as u16,
                    Some(7 - differs.leading_zeros() as u8),
                ));
            }
        }
        match code {
            PAGE_CACHING => new.wce = p[2] & 0x04 != 0,
            PAGE_CONTROL => {
                new.d_sense = p[2] & 0x04 != 0;
                new.swp = p[4] & 0x08 != 0;
            }
            _ => {}
        }
        at += cur.len();
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> ModeShape {
        ModeShape {
            volatile_cache: true,
            write_protected: false,
            block_size: 512,
            num_blocks: 1000,
        }
    }

    fn req(page: u8, pc: u8) -> SenseRequest {
        SenseRequest {
            ten: false,
            dbd: false,
            llbaa: false,
            pc,
            page,
            subpage: 0,
        }
    }

    #[test]
    fn control_page_current_six_byte() {
        let st = shape().defaults();
        let d = sense(
            SenseRequest {
                dbd: true,
                ..req(0x0A, 0)
            },
            st,
            &shape(),
        )
        .unwrap();
        assert_eq!(
            d,
            vec![
                15, 0, 0x10, 0, 0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0
            ]
        );
    }

    #[test]
    fn block_descriptor_and_wp() {
        let st = ModeState {
            swp: true,
            ..shape().defaults()
        };
        let d = sense(req(0x01, 0), st, &shape()).unwrap();
        assert_eq!(
            &d[..12],
            &[23, 0, 0x90, 8, 0, 0, 0x03, 0xE8, 0, 0, 0x02, 0x00]
        );
    }

    #[test]
    fn long_lba_descriptor() {
        let st = shape().defaults();
        let r = SenseRequest {
            ten: true,
            llbaa: true,
            ..req(0x1C, 0)
        };
        let d = sense(r, st, &shape()).unwrap();
        assert_eq!(&d[..8], &[0, 34, 0, 0x10, 1, 0, 0, 16]);
        assert_eq!(
            &d[8..24],
            &[0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0, 0, 0, 0, 0, 0, 0x02, 0]
        );
    }

    #[test]
    fn saved_values_and_unknown_pages() {
        let st = shape().defaults();
        assert_eq!(
            sense(req(0x0A, 3), st, &shape()).unwrap_err().code,
            AdditionalSense::SAVING_PARAMETERS_NOT_SUPPORTED
        );
        assert_eq!(
            sense(req(0x02, 0), st, &shape()).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(5))
        );
        let bad_sub = SenseRequest {
            subpage: 1,
            ..req(0x0A, 0)
        };
        assert_eq!(
            sense(bad_sub, st, &shape()).unwrap_err(),
            SenseError::invalid_cdb_field(3, Some(7))
        );
    }

    #[test]
    fn select_changes_swp_and_rejects_fixed_fields() {
        let st = shape().defaults();
        let mut data = vec![
            0, 0, 0, 0, 0x0A, 0x0A, 0, 0x10, 0x08, 0, 0, 0, 0xFF, 0xFF, 0, 0,
        ];
        let new = select(false, &data, st, &shape()).unwrap();
        assert!(new.swp);
        data[7] = 0x00; // QAM is not changeable
        assert_eq!(
            select(false, &data, st, &shape()).unwrap_err(),
            SenseError::invalid_param_field(7, Some(4))
        );
        assert_eq!(
            select(false, &data[..10], st, &shape()).unwrap_err(),
            SenseError::parameter_list_length()
        );
    }

    #[test]
    fn select_wce_only_when_changeable() {
        let st = shape().defaults();
        let mut data = vec![0u8; 24];
        data[4] = 0x08;
        data[5] = 0x12;
        assert!(!select(false, &data, st, &shape()).unwrap().wce);
        let no_cache = ModeShape {
            volatile_cache: false,
            ..shape()
        };
        data[6] = 0x04;
        assert_eq!(
            select(false, &data, no_cache.defaults(), &no_cache).unwrap_err(),
            SenseError::invalid_param_field(6, Some(2))
        );
    }
}
