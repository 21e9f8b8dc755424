//! Step 2: turn a prepared command and its Data-Out into backend operations (SBC-4 §5 command
//! semantics), or apply parameter-list commands (MODE SELECT SPC-5 §6.11, PERSISTENT RESERVE
//! OUT SPC-5 §6.17, UNMAP SBC-4 §5.31, EXTENDED COPY SPC-5 §6.4) to the logical unit's state.

use std::sync::atomic::Ordering;

use super::{Command, CopyProgress, LogicalUnit, MAX_COPY_RECORDS, NexusControl, Step, gate_kind};
use crate::cdb::Op;
use crate::mode;
use crate::plan::{CopyEndpoint, CopyTarget, IoOp, IoPlan};
use crate::pr::ItId;
use crate::sense::{AdditionalSense, ScsiError, SenseError, SenseKey};
use crate::types::{Completion, DataIn, Nexus, NexusId, Residual};
use crate::ua::UnitAttention;
use crate::xcopy::{self, CopyRecord, CopyState};

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

/// A resolved EXTENDED COPY endpoint.
struct Endpoint {
    at: CopyEndpoint,
    block_size: u32,
    num_blocks: u64,
    writable: bool,
}

impl LogicalUnit {
    /// Builds the I/O plan of a prepared command once its Data-Out (`data_out`, at least
    /// [`Command::data_out_len`] bytes) has arrived.
    pub fn execute(&self, nexus: &Nexus, cmd: &mut Command, data_out: &[u8]) -> Step {
        if cmd.early.is_some() {
            return Step::Complete;
        }
        let Some(data) = data_out.get(..cmd.data_out_len()) else {
            let e: ScsiError =
                SenseError::new(SenseKey::ABORTED_COMMAND, AdditionalSense::DATA_PHASE_ERROR)
                    .into();
            let residual = Residual::between(data_out.len() as u64, cmd.expected_out);
            cmd.early = Some(Completion::error(&e, cmd.desc, residual));
            return Step::Complete;
        };
        match self.execute_inner(nexus, cmd, data) {
            Ok(Step::Io(plan)) => {
                cmd.planned = plan.ops().len();
                Step::Io(plan)
            }
            Ok(step) => step,
            Err(e) => {
                self.leave_gate(cmd);
                let residual = cmd.out_residual();
                cmd.early = Some(Completion::error(&e, cmd.desc, residual));
                Step::Complete
            }
        }
    }

    /// Whether writes need FUA (or a flush) to honour `fua` and WCE, as (op FUA, flush after).
    fn durability(&self, fua: bool) -> (bool, bool) {
        let want = fua || !self.wce.load(Ordering::Acquire);
        if !want {
            (false, false)
        } else if self.caps.supports_fua {
            (true, false)
        } else {
            (false, self.caps.supports_flush)
        }
    }

    fn finish_early(cmd: &mut Command, c: Completion) -> Step {
        cmd.early = Some(c);
        Step::Complete
    }

    fn execute_inner(
        &self,
        nexus: &Nexus,
        cmd: &mut Command,
        data: &[u8],
    ) -> Result<Step, ScsiError> {
        let bs = u64::from(self.caps.block_size);
        let op = cmd.op;
        let residual = cmd.out_residual();
        let good =
            |cmd: &mut Command| Self::finish_early(cmd, Completion::good(DataIn::None, residual));
        // Range of blocks guarded against atomic commands.
        let range = match op {
            Op::Read { lba, blocks, .. }
            | Op::Write { lba, blocks, .. }
            | Op::WriteVerify { lba, blocks, .. }
            | Op::Verify { lba, blocks, .. }
            | Op::WriteSame { lba, blocks, .. }
            | Op::CompareAndWrite { lba, blocks, .. }
            | Op::OrWrite { lba, blocks, .. }
            | Op::WriteAtomic { lba, blocks, .. } => {
                Some((lba, lba.saturating_add(u64::from(blocks))))
            }
            _ => None,
        };
        let mut plan = IoPlan::new();
        match op {
            Op::Read { lba, blocks, .. } => {
                plan.push(IoOp::Read {
                    offset: lba * bs,
                    len: u64::from(blocks) * bs,
                    buf: 0,
                });
            }
            Op::Write { lba, blocks, fua } | Op::WriteAtomic { lba, blocks, fua } => {
                let (fua, flush) = self.durability(fua);
                plan.push(IoOp::Write {
                    offset: lba * bs,
                    len: u64::from(blocks) * bs,
                    buf: 0,
                    fua,
                });
                if flush {
                    plan.push(IoOp::Flush);
                }
            }
            Op::WriteVerify {
                lba,
                blocks,
                bytchk,
            } => {
                let (fua, flush) = self.durability(true);
                let len = u64::from(blocks) * bs;
                plan.push(IoOp::Write {
                    offset: lba * bs,
                    len,
                    buf: 0,
                    fua,
                });
                if flush {
                    plan.push(IoOp::Flush);
                }
                if bytchk == 1 {
                    plan.push(IoOp::Compare {
                        offset: lba * bs,
                        len,
                        buf: 0,
                    });
                }
            }
            Op::Verify {
                lba,
                blocks,
                bytchk,
            } => {
                let (offset, len) = (lba * bs, u64::from(blocks) * bs);
                plan.push(match bytchk {
                    0 => IoOp::Verify { offset, len },
                    1 => IoOp::Compare {
                        offset,
                        len,
                        buf: 0,
                    },
                    _ => IoOp::CompareEachBlock {
                        offset,
                        len,
                        buf: 0,
                        block_len: bs as usize,
                    },
                });
            }
            Op::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
            } => {
                let (offset, len) = (lba * bs, u64::from(blocks) * bs);
                let (fua, flush) = self.durability(false);
                if unmap {
                    plan.push(IoOp::Unmap { offset, len });
                } else if ndob || data.iter().all(|&b| b == 0) {
                    if self.caps.supports_write_zeroes {
                        plan.push(IoOp::WriteZeroes { offset, len, fua });
                    } else {
                        plan.push(IoOp::WriteSame {
                            offset,
                            len,
                            block: None,
                            block_len: bs as usize,
                            fua,
                        });
                    }
                } else {
                    plan.push(IoOp::WriteSame {
                        offset,
                        len,
                        block: Some(0),
                        block_len: bs as usize,
                        fua,
                    });
                }
                if flush {
                    plan.push(IoOp::Flush);
                }
            }
            Op::CompareAndWrite { lba, blocks, fua } => {
                let (offset, len) = (lba * bs, u64::from(blocks) * bs);
                let (fua, flush) = self.durability(fua);
                plan.push(IoOp::Compare {
                    offset,
                    len,
                    buf: 0,
                });
                plan.push(IoOp::Write {
                    offset,
                    len,
                    buf: len as usize,
                    fua,
                });
                if flush {
                    plan.push(IoOp::Flush);
                }
            }
            Op::OrWrite { lba, blocks, fua } => {
                let (fua, flush) = self.durability(fua);
                plan.push(IoOp::OrWrite {
                    offset: lba * bs,
                    len: u64::from(blocks) * bs,
                    buf: 0,
                    fua,
                });
                if flush {
                    plan.push(IoOp::Flush);
                }
            }
            Op::SyncCache { .. } | Op::StartStop { .. } => plan.push(IoOp::Flush),
            Op::GetLbaStatus { lba, .. } => {
                let remaining = self.num_blocks().saturating_sub(lba);
                if remaining == 0 {
                    return Err(SenseError::lba_out_of_range().into());
                }
                plan.push(IoOp::Allocation {
                    offset: lba * bs,
                    len: remaining * bs,
                });
            }
            Op::Unmap { .. } => {
                let Some(p) = self.unmap_plan(data)? else {
                    return Ok(good(cmd));
                };
                plan = p.0;
                if !self.gate.enter(
                    crate::gate::Kind::Plain,
                    nexus.id.0,
                    p.1,
                    p.2,
                    &mut cmd.pass,
                ) {
                    return Ok(Step::Blocked);
                }
                return Ok(Step::Io(plan));
            }
            Op::ModeSelect { ten, .. } => {
                let mut st = self.state();
                // `prepare` registered the nexus (MODE SELECT is not a fast-path command).
                let old = Self::mode_view(&st, nexus.id);
                let new = mode::select(ten, data, old, &self.mode_shape())?;
                // The Control page is per I_T nexus: only this nexus's copy changes.
                self.set_control(
                    &mut st,
                    nexus.id,
                    NexusControl {
                        d_sense: new.d_sense,
                        swp: new.swp,
                    },
                );
                // The Caching page is shared: the other nexuses learn of the change
                // (SPC-5 §6.14, MODE PARAMETERS CHANGED).
                if new.wce != old.wce {
                    st.wce = new.wce;
                    self.wce.store(new.wce, Ordering::Release);
                    let others: Vec<NexusId> = st
                        .nexuses
                        .keys()
                        .copied()
                        .filter(|id| *id != nexus.id)
                        .collect();
                    for id in others {
                        Self::establish(
                            &mut st,
                            id,
                            UnitAttention::ModeParametersChanged,
                            &self.ua_nexuses,
                        );
                    }
                }
                drop(st);
                return Ok(good(cmd));
            }
            Op::PrOut { sa, scope, ty, .. } => {
                let it = ItId {
                    port: nexus.initiator_port.clone(),
                    target_port: nexus.target_port,
                };
                let mut st = self.state();
                if st.spc2.is_some_and(|h| h != nexus.id) && !matches!(sa, 0 | 6) {
                    return Err(ScsiError::ReservationConflict);
                }
                let effects = st
                    .pr
                    .out(&it, sa, scope, ty, data, &self.cfg.target_ports)?;
                for (who, ua) in &effects.ua {
                    Self::establish_for(&mut st, who, *ua, &self.ua_nexuses);
                }
                let mut abort = Vec::new();
                for who in &effects.preempted {
                    for (id, r) in &st.nexuses {
                        if *id != nexus.id
                            && r.it.target_port == who.target_port
                            && r.it.port.eq_ignore_ascii_case(&who.port)
                        {
                            abort.push(*id);
                        }
                    }
                }
                abort.sort_unstable();
                self.update_reserved(&st);
                drop(st);
                let mut c = Completion::good(DataIn::None, residual);
                c.abort_nexuses = abort;
                return Ok(Self::finish_early(cmd, c));
            }
            Op::ExtendedCopy { .. } => return self.copy_plan(nexus, cmd, data),
            _ => return Ok(good(cmd)),
        }
        if let Some((start, end)) = range {
            if !self
                .gate
                .enter(gate_kind(&op), nexus.id.0, start, end, &mut cmd.pass)
            {
                return Ok(Step::Blocked);
            }
        }
        Ok(Step::Io(plan))
    }

    /// Validates UNMAP parameter data (SBC-4 §5.31.2): returns the plan and the guarded block
    /// range, or `None` when there is nothing to deallocate.
    fn unmap_plan(&self, data: &[u8]) -> Result<Option<(IoPlan, u64, u64)>, ScsiError> {
        let bs = u64::from(self.caps.block_size);
        // Partial trailing descriptors are ignored.
        let bd_len = usize::from(be16(data, 2)).min(data.len() - 8) / 16 * 16;
        let count = bd_len / 16;
        if count as u64 > u64::from(self.cfg.max_unmap_descriptors) {
            return Err(SenseError::invalid_param_field(2, Some(7)).into());
        }
        let capacity = self.num_blocks();
        let mut plan = IoPlan::new();
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for i in 0..count {
            let at = 8 + 16 * i;
            let lba = be64(data, at);
            let n = be32(data, at + 8);
            if n > self.cfg.max_unmap_blocks {
                return Err(SenseError::invalid_param_field((at + 8) as u16, Some(7)).into());
            }
            match lba.checked_add(u64::from(n)) {
                Some(end) if end <= capacity => {
                    if n > 0 {
                        plan.push(IoOp::Unmap {
                            offset: lba * bs,
                            len: u64::from(n) * bs,
                        });
                        lo = lo.min(lba);
                        hi = hi.max(end);
                    }
                }
                _ => return Err(SenseError::lba_out_of_range().into()),
            }
        }
        if plan.ops().is_empty() {
            Ok(None)
        } else {
            Ok(Some((plan, lo, hi)))
        }
    }

    fn resolve_endpoint(
        &self,
        nexus: NexusId,
        d: &xcopy::TargetDescriptor,
        targets: &mut Vec<CopyTarget>,
    ) -> Result<Endpoint, ScsiError> {
        let unreachable = || -> ScsiError {
            SenseError::copy_aborted(AdditionalSense::UNREACHABLE_COPY_TARGET).into()
        };
        if d.null || d.designator_type != 3 {
            return Err(unreachable());
        }
        let endpoint = if let Some(t) = self.copy_target(&d.designator) {
            let e = Endpoint {
                at: CopyEndpoint::Other(targets.len()),
                block_size: t.lu.block_size(),
                num_blocks: t.lu.num_blocks(),
                writable: !t.lu.write_protected(nexus),
            };
            targets.push(t);
            e
        } else if d.designator[..] == *self.cfg.identity.naa_designator() {
            Endpoint {
                at: CopyEndpoint::This,
                block_size: self.caps.block_size,
                num_blocks: self.num_blocks(),
                writable: !self.write_protected(nexus),
            }
        } else {
            return Err(unreachable());
        };
        if d.block_len != endpoint.block_size {
            return Err(SenseError::invalid_param_field((d.at + 29) as u16, Some(7)).into());
        }
        Ok(endpoint)
    }

    /// Validates an EXTENDED COPY parameter list and builds the copy plan.
    fn copy_plan(&self, nexus: &Nexus, cmd: &mut Command, data: &[u8]) -> Result<Step, ScsiError> {
        let list = xcopy::parse(data, self.cfg.copy)?;
        let mut targets = Vec::new();
        let mut endpoints: Vec<Option<Endpoint>> = Vec::new();
        endpoints.resize_with(list.targets.len(), || None);
        let mut plan = IoPlan::new();
        let mut bytes_total = 0u64;
        let not_reachable = || -> ScsiError {
            SenseError::copy_aborted(AdditionalSense::COPY_TARGET_DEVICE_NOT_REACHABLE).into()
        };
        for seg in &list.segments {
            for idx in [seg.src, seg.dst] {
                let i = usize::from(idx);
                let Some(d) = list.targets.get(i) else {
                    return Err(
                        SenseError::copy_aborted(AdditionalSense::UNREACHABLE_COPY_TARGET).into(),
                    );
                };
                if endpoints[i].is_none() {
                    endpoints[i] = Some(self.resolve_endpoint(nexus.id, d, &mut targets)?);
                }
            }
            let (Some(Some(src)), Some(Some(dst))) = (
                endpoints.get(usize::from(seg.src)),
                endpoints.get(usize::from(seg.dst)),
            ) else {
                return Err(not_reachable());
            };
            let unit = u64::from(if seg.dc {
                dst.block_size
            } else {
                src.block_size
            });
            let bytes = u64::from(seg.blocks) * unit;
            if bytes % u64::from(src.block_size) != 0 || bytes % u64::from(dst.block_size) != 0 {
                return Err(
                    SenseError::copy_aborted(AdditionalSense::UNEXPECTED_INEXACT_SEGMENT).into(),
                );
            }
            let src_end = seg.src_lba.checked_add(bytes / u64::from(src.block_size));
            let dst_end = seg.dst_lba.checked_add(bytes / u64::from(dst.block_size));
            if src_end.is_none_or(|e| e > src.num_blocks)
                || dst_end.is_none_or(|e| e > dst.num_blocks)
            {
                return Err(not_reachable());
            }
            if bytes > 0 && !dst.writable {
                return Err(SenseError::copy_aborted(AdditionalSense::WRITE_PROTECTED).into());
            }
            if bytes > 0 {
                plan.push(IoOp::Copy {
                    src: src.at,
                    src_offset: seg.src_lba * u64::from(src.block_size),
                    dst: dst.at,
                    dst_offset: seg.dst_lba * u64::from(dst.block_size),
                    len: bytes,
                });
            }
            bytes_total += bytes;
        }
        let progress = CopyProgress {
            list_id: list.list_id,
            retain: list.retains_status(),
            segments: list.segments.len() as u16,
            bytes: bytes_total,
        };
        if progress.retain {
            let mut st = self.state();
            let mine = |r: &CopyRecord| {
                r.list_id == list.list_id && r.port.eq_ignore_ascii_case(&nexus.initiator_port)
            };
            if st
                .copies
                .iter()
                .any(|r| mine(r) && r.state == CopyState::InProgress)
            {
                return Err(SenseError::new(
                    SenseKey::ILLEGAL_REQUEST,
                    AdditionalSense::OPERATION_IN_PROGRESS,
                )
                .into());
            }
            st.copies.retain(|r| !mine(r));
            if st.copies.len() >= MAX_COPY_RECORDS {
                st.copies.remove(0);
            }
            st.copies.push(CopyRecord {
                port: nexus.initiator_port.clone(),
                list_id: list.list_id,
                state: CopyState::InProgress,
                segments: 0,
                bytes: 0,
            });
        }
        cmd.copy = Some(progress);
        if plan.ops().is_empty() {
            return Ok(Step::Complete);
        }
        plan.set_copy_targets(targets);
        Ok(Step::Io(plan))
    }
}
