//! Step 3: turn the outcomes of a plan into status, sense data, Data-In and residual
//! (SAM-5 §5.1; MISCOMPARE reporting SBC-4 §5.3 and §5.41; GET LBA STATUS data SBC-4 §5.8.2;
//! copy status SPC-5 §6.18.3).

use std::sync::atomic::Ordering;

use super::{Command, LogicalUnit};
use crate::backend::{AllocationExtent, BackendError, Provisioning};
use crate::cdb::Op;
use crate::plan::IoOutcome;
use crate::sense::{ScsiError, SenseError};
use crate::types::{Completion, DataIn, Nexus, Residual};
use crate::xcopy::CopyState;

impl LogicalUnit {
    /// Completes a command after its plan ran. `outcomes` holds one entry per operation that
    /// ran, in order; operations after a failure or a miscompare must not have run.
    pub fn complete(&self, nexus: &Nexus, mut cmd: Command, outcomes: &[IoOutcome]) -> Completion {
        self.leave_gate(&mut cmd);
        let result = match cmd.early.take() {
            Some(c) => c,
            None => self.complete_inner(&cmd, outcomes),
        };
        if let Some(p) = cmd.copy.take() {
            if p.retain {
                let ok = result.status == crate::sense::Status::GOOD;
                let mut st = self.state();
                if let Some(r) = st.copies.iter_mut().find(|r| {
                    r.list_id == p.list_id
                        && r.port.eq_ignore_ascii_case(&nexus.initiator_port)
                        && r.state == CopyState::InProgress
                }) {
                    r.state = CopyState::Done { ok };
                    r.segments = if ok { p.segments } else { 0 };
                    r.bytes = if ok { p.bytes } else { 0 };
                }
            }
        }
        result
    }

    fn complete_inner(&self, cmd: &Command, outcomes: &[IoOutcome]) -> Completion {
        let residual_out = cmd.out_residual();
        let fail = |e: SenseError| Completion::error(&ScsiError::Sense(e), cmd.desc, residual_out);
        let reads = matches!(
            cmd.op,
            Op::Read { .. } | Op::Verify { .. } | Op::GetLbaStatus { .. }
        );
        let mut allocation = None;
        for o in outcomes {
            match o {
                IoOutcome::Done => {}
                IoOutcome::Allocation(a) => allocation = Some(*a),
                IoOutcome::Miscompare { offset } => return fail(SenseError::miscompare(*offset)),
                IoOutcome::Failed(BackendError::Unsupported)
                    if matches!(cmd.op, Op::GetLbaStatus { .. }) =>
                {
                    // A store that cannot report provisioning has every block mapped.
                    let bs = u64::from(self.caps.block_size.max(1));
                    let len = self.num_blocks().saturating_sub(match cmd.op {
                        Op::GetLbaStatus { lba, .. } => lba,
                        _ => 0,
                    }) * bs;
                    allocation = Some(AllocationExtent {
                        status: Provisioning::Mapped,
                        len,
                    });
                }
                IoOutcome::Failed(e) => {
                    let s = e.sense(!reads);
                    if matches!(cmd.op, Op::ExtendedCopy { .. }) {
                        return fail(SenseError::copy_aborted(s.code));
                    }
                    return fail(s);
                }
            }
        }
        if outcomes.len() < cmd.planned {
            // The engine skipped operations without reporting a failure.
            return fail(SenseError::internal_failure());
        }
        match cmd.op {
            Op::Read { .. } => {
                let produced = cmd.data_in_cap;
                let len = produced.min(cmd.expected_in as usize);
                let data_in = if len == 0 {
                    DataIn::None
                } else {
                    DataIn::Buffer { len }
                };
                Completion::good(data_in, Residual::between(produced as u64, cmd.expected_in))
            }
            Op::GetLbaStatus { lba, alloc } => {
                let Some(a) = allocation else {
                    return fail(SenseError::internal_failure());
                };
                let bs = u64::from(self.caps.block_size.max(1));
                let blocks = u32::try_from(a.len / bs).unwrap_or(u32::MAX);
                let status = match a.status {
                    Provisioning::Mapped => 0,
                    Provisioning::Deallocated => 1,
                };
                let mut d = Vec::with_capacity(24);
                d.extend_from_slice(&20u32.to_be_bytes());
                d.extend_from_slice(&[0; 4]);
                d.extend_from_slice(&lba.to_be_bytes());
                d.extend_from_slice(&blocks.to_be_bytes());
                d.extend_from_slice(&[status, 0, 0, 0]);
                d.truncate(alloc as usize);
                let expected = cmd.expected_in;
                let residual = Residual::between(d.len() as u64, expected);
                d.truncate(expected as usize);
                Completion::good(
                    if d.is_empty() {
                        DataIn::None
                    } else {
                        DataIn::Owned(d)
                    },
                    residual,
                )
            }
            Op::StartStop { .. } => {
                self.stopped.store(true, Ordering::Release);
                Completion::good(DataIn::None, residual_out)
            }
            _ => Completion::good(DataIn::None, residual_out),
        }
    }
}
