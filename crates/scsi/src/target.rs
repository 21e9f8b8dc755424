//! Target-level answers the engine gives without a logical unit: REPORT LUNS (SPC-5 §6.33)
//! and commands addressed to a LUN that does not exist (SPC-5 §6.7.2 peripheral qualifier
//! 011b, SAM-5 §5.9 incorrect logical unit selection).

use crate::cdb::{self, Op};
use crate::lun;
use crate::sense::{ScsiError, SenseError};
use crate::types::{CommandRequest, Completion, DataIn, Residual, data_completion};

/// REPORT LUNS parameter data for the given LUNs and SELECT REPORT value (before cutting to
/// the allocation length). This target has no well-known or administrative logical units, so
/// SELECT REPORT 01h, 10h, 11h and 12h report an empty list.
pub(crate) fn report_luns_data(luns: &[u64], select: u8) -> Result<Vec<u8>, SenseError> {
    let listed: &[u64] = match select {
        0x00 | 0x02 => luns,
        0x01 | 0x10 | 0x11 | 0x12 => &[],
        _ => return Err(SenseError::invalid_cdb_field(2, Some(7))),
    };
    let mut v = Vec::with_capacity(8 + 8 * listed.len());
    let mut encoded = Vec::with_capacity(listed.len());
    for &l in listed {
        if let Ok(e) = lun::encode(l) {
            encoded.push(e);
        }
    }
    v.extend_from_slice(&((encoded.len() * 8) as u32).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    for e in encoded {
        v.extend_from_slice(&e);
    }
    Ok(v)
}

fn fail(e: SenseError, request: &CommandRequest<'_>) -> Completion {
    Completion::error(
        &ScsiError::Sense(e),
        false,
        Residual::between(0, request.expected_len),
    )
}

/// Answers REPORT LUNS for a target exporting `luns`, whatever LUN it was addressed to.
///
/// ```
/// use rtgt_scsi::{target, CommandRequest, DataDirection, DataIn, Status};
///
/// let cdb = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];
/// let c = target::report_luns(&[0, 1], &CommandRequest::new(&cdb, 64, DataDirection::Read));
/// assert_eq!(c.status, Status::GOOD);
/// assert_eq!(c.data_in, DataIn::Owned(vec![0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
/// ```
pub fn report_luns(luns: &[u64], request: &CommandRequest<'_>) -> Completion {
    match cdb::decode(request.cdb, false) {
        Ok(Op::ReportLuns { select, alloc }) => match report_luns_data(luns, select) {
            Ok(mut d) => {
                d.truncate(alloc as usize);
                data_completion(d, request)
            }
            Err(e) => fail(e, request),
        },
        Ok(_) => fail(SenseError::invalid_opcode(), request),
        Err(e) => fail(e, request),
    }
}

/// Whether a CDB is answered at target level whatever LUN it addresses (REPORT LUNS).
pub fn is_target_level(cdb: &[u8]) -> bool {
    cdb.first() == Some(&0xA0)
}

/// Answers a command addressed to a LUN that does not exist: INQUIRY reports peripheral
/// qualifier 011b and device type 1Fh, REPORT LUNS lists `luns`, REQUEST SENSE returns LOGICAL
/// UNIT NOT SUPPORTED as parameter data, everything else fails with ILLEGAL REQUEST, LOGICAL
/// UNIT NOT SUPPORTED.
///
/// ```
/// use rtgt_scsi::{target, AdditionalSense, CommandRequest, DataDirection, SenseData, Status};
///
/// let tur = [0u8; 6];
/// let c = target::lun_not_present(&[0], &CommandRequest::new(&tur, 0, DataDirection::None));
/// assert_eq!(c.status, Status::CHECK_CONDITION);
/// let (_, code) = SenseData::parse(c.sense.unwrap().as_bytes()).unwrap();
/// assert_eq!(code, AdditionalSense::LOGICAL_UNIT_NOT_SUPPORTED);
/// ```
pub fn lun_not_present(luns: &[u64], request: &CommandRequest<'_>) -> Completion {
    match request.cdb.first() {
        Some(0xA0) => return report_luns(luns, request),
        Some(0x12) => {
            return match cdb::decode(request.cdb, false) {
                Ok(Op::Inquiry {
                    evpd: false, alloc, ..
                }) => {
                    let mut d = vec![0u8; 36];
                    d[0] = 0x7F;
                    d[2] = 0x06;
                    d[3] = 0x12;
                    d[4] = 31;
                    d[8..36].copy_from_slice(b"RTGT    no logical unit     ");
                    d.truncate(alloc as usize);
                    data_completion(d, request)
                }
                Ok(Op::Inquiry {
                    evpd: true,
                    page: 0,
                    alloc,
                }) => {
                    let mut d = vec![0x7F, 0x00, 0x00, 0x01, 0x00];
                    d.truncate(alloc as usize);
                    data_completion(d, request)
                }
                Ok(Op::Inquiry { .. }) => fail(SenseError::invalid_cdb_field(2, Some(7)), request),
                Ok(_) => fail(SenseError::invalid_opcode(), request),
                Err(e) => fail(e, request),
            };
        }
        Some(0x03) => {
            if let Ok(Op::RequestSense { desc, alloc }) = cdb::decode(request.cdb, false) {
                let mut d = SenseError::lun_not_supported()
                    .encode(desc)
                    .as_bytes()
                    .to_vec();
                d.truncate(alloc as usize);
                return data_completion(d, request);
            }
        }
        _ => {}
    }
    let mut c = fail(SenseError::lun_not_supported(), request);
    c.data_in = DataIn::None;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::Status;
    use crate::types::DataDirection;

    #[test]
    fn select_report_values() {
        assert_eq!(
            report_luns_data(&[3, 300], 0).unwrap(),
            vec![
                0, 0, 0, 16, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x41, 0x2C, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(report_luns_data(&[3, 300], 2).unwrap().len(), 24);
        for s in [1, 0x10, 0x11, 0x12] {
            assert_eq!(report_luns_data(&[3], s).unwrap(), vec![0; 8]);
        }
        assert_eq!(
            report_luns_data(&[3], 3).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(7))
        );
    }

    #[test]
    fn missing_lun_inquiry() {
        let cdb = [0x12, 0, 0, 0, 36, 0];
        let c = lun_not_present(&[0], &CommandRequest::new(&cdb, 36, DataDirection::Read));
        assert_eq!(c.status, Status::GOOD);
        let DataIn::Owned(d) = c.data_in else {
            panic!("no data")
        };
        assert_eq!(&d[..5], &[0x7F, 0, 6, 0x12, 31]);
    }

    #[test]
    fn missing_lun_request_sense() {
        let cdb = [0x03, 0, 0, 0, 18, 0];
        let c = lun_not_present(&[0], &CommandRequest::new(&cdb, 18, DataDirection::Read));
        assert_eq!(c.status, Status::GOOD);
        assert_eq!(
            c.data_in,
            DataIn::Owned(vec![
                0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0
            ])
        );
    }
}
