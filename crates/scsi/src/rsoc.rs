//! REPORT SUPPORTED OPERATION CODES (SPC-5 §6.36) and REPORT SUPPORTED TASK MANAGEMENT
//! FUNCTIONS (SPC-5 §6.39) parameter data, built from the command table of [`crate::opcodes`].

use crate::config::TmfSupport;
use crate::opcodes::{self, COMMANDS, CommandInfo};
use crate::sense::SenseError;

fn timeouts(out: &mut Vec<u8>, info: &CommandInfo) {
    out.extend_from_slice(&[0x00, 0x0A, 0x00, 0x00]);
    out.extend_from_slice(&0u32.to_be_bytes()); // nominal processing time: not specified
    out.extend_from_slice(&info.timeout.to_be_bytes());
}

fn one(info: Option<&CommandInfo>, rctd: bool) -> Vec<u8> {
    match info {
        None => vec![0, 0x01, 0, 0],
        Some(i) => {
            let mut v = vec![0, if rctd { 0x83 } else { 0x03 }];
            v.extend_from_slice(&(i.usage.len() as u16).to_be_bytes());
            v.extend_from_slice(i.usage);
            if rctd {
                timeouts(&mut v, i);
            }
            v
        }
    }
}

/// Builds the parameter data for the given REPORTING OPTIONS.
pub(crate) fn report_opcodes(
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    unmap: bool,
) -> Result<Vec<u8>, SenseError> {
    let supported = |i: &&'static CommandInfo| opcodes::supported(i, unmap);
    let lookup = |sa: Option<u8>| opcodes::find(opcode, sa).filter(supported);
    let sa8 = u8::try_from(sa).ok().filter(|s| *s <= 0x1F);
    let has_sa = opcodes::has_service_actions(opcode);
    let bad_options = SenseError::invalid_cdb_field(2, Some(2));
    match options {
        0 => {
            let mut body = Vec::with_capacity(COMMANDS.len() * 20);
            for c in COMMANDS.iter().filter(|c| opcodes::supported(c, unmap)) {
                body.push(c.opcode);
                body.push(0);
                body.extend_from_slice(&u16::from(c.sa.unwrap_or(0)).to_be_bytes());
                body.push(0);
                body.push(if rctd { 0x02 } else { 0 } | u8::from(c.sa.is_some()));
                body.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    timeouts(&mut body, c);
                }
            }
            let mut v = Vec::with_capacity(body.len() + 4);
            v.extend_from_slice(&(body.len() as u32).to_be_bytes());
            v.extend_from_slice(&body);
            Ok(v)
        }
        1 if has_sa => Err(bad_options),
        1 => Ok(one(lookup(None), rctd)),
        2 if has_sa => Ok(one(sa8.and_then(|s| lookup(Some(s))), rctd)),
        2 if lookup(None).is_some() => Err(bad_options),
        2 => Ok(one(None, rctd)),
        3 if has_sa => Ok(one(sa8.and_then(|s| lookup(Some(s))), rctd)),
        3 => Ok(one(lookup(None), rctd)),
        _ => Err(bad_options),
    }
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS parameter data.
pub(crate) fn report_tmfs(tmf: &TmfSupport, repd: bool) -> Vec<u8> {
    let b = |on: bool, bit: u8| if on { 1u8 << bit } else { 0 };
    let b0 = b(tmf.abort_task, 7)
        | b(tmf.abort_task_set, 6)
        | b(tmf.clear_aca, 5)
        | b(tmf.clear_task_set, 4)
        | b(tmf.lu_reset, 3)
        | b(tmf.query_task, 2)
        | b(tmf.target_reset, 1);
    let b1 = b(tmf.query_async_event, 2) | b(tmf.query_task_set, 1) | b(tmf.it_nexus_reset, 0);
    if repd {
        let mut v = vec![0u8; 16];
        v[0] = b0;
        v[1] = b1;
        v[3] = 0x0C;
        v
    } else {
        vec![b0, b1, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_read10() {
        let v = report_opcodes(false, 1, 0x28, 0, true).unwrap();
        assert_eq!(
            v,
            vec![
                0, 3, 0, 10, 0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0
            ]
        );
        let v = report_opcodes(true, 1, 0x28, 0, true).unwrap();
        assert_eq!(v[1], 0x83);
        assert_eq!(&v[14..], &[0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30]);
    }

    #[test]
    fn service_action_rules() {
        assert_eq!(
            report_opcodes(false, 1, 0x9E, 0x10, true).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(2))
        );
        assert_eq!(
            report_opcodes(false, 2, 0x28, 0, true).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(2))
        );
        let v = report_opcodes(false, 2, 0x9E, 0x10, true).unwrap();
        assert_eq!(&v[..6], &[0, 3, 0, 16, 0x9E, 0x10]);
        assert_eq!(
            report_opcodes(false, 2, 0x9E, 0x11, true).unwrap(),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            report_opcodes(false, 1, 0xC5, 0, true).unwrap(),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            report_opcodes(false, 1, 0x42, 0, false).unwrap(),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            report_opcodes(false, 4, 0, 0, true).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(2))
        );
    }

    #[test]
    fn all_commands() {
        let v = report_opcodes(false, 0, 0, 0, true).unwrap();
        let n = COMMANDS.len();
        assert_eq!(v.len(), 4 + 8 * n);
        assert_eq!(&v[4..12], &[0x00, 0, 0, 0, 0, 0, 0, 6]);
        let with_timeouts = report_opcodes(true, 0, 0, 0, false).unwrap();
        assert_eq!(with_timeouts.len(), 4 + 20 * (n - 1));
        assert_eq!(with_timeouts[9], 0x02);
    }

    #[test]
    fn tmfs_for_iscsi() {
        assert_eq!(report_tmfs(&TmfSupport::ISCSI, false), vec![0xDA, 0, 0, 0]);
        let v = report_tmfs(&TmfSupport::ISCSI, true);
        assert_eq!(&v[..4], &[0xDA, 0, 0, 0x0C]);
        assert_eq!(v.len(), 16);
    }
}
