//! The SCSI path of a task (SAM-5 §5 task execution via rtgt-scsi; SBC-4 commands): prepare,
//! collect Data-Out, execute the plan — inline for memory and null stores, on the reactor's
//! ring for files and block devices (short transfers resubmitted), synchronously in the
//! readiness engine — complete, and apply task-management effects (SAM-5 §6) to logical units
//! and other sessions.

use std::sync::Arc;

use rtgt_scsi::{
    CommandRequest, DataDirection, DataIn, Dispatch, IoOp, IoOutcome, ScsiError, SenseError, Step,
};
use rtgt_session::target::{Completion, LuAction, TaskId};

use super::buffers::TaskBuf;
use super::core::{Core, IoMode, Owner, RingFile, RingOp, RingOpKind};
use super::sessions::SessionCtx;
use super::shared::Message;
use crate::parked::ParkedCommands;
use crate::runtime::Backend;

impl ParkedCommands for Core {
    fn parked(&mut self) -> &mut Vec<(usize, TaskId)> {
        &mut self.blocked
    }
    fn execute_again(&mut self, sidx: usize, id: TaskId) {
        self.scsi_execute(sidx, id);
    }
    fn drive(&mut self, sidx: usize) {
        self.drive_session(sidx);
    }
}

impl Core {
    pub(crate) fn scsi_start(&mut self, sidx: usize, id: TaskId) {
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let SessionCtx {
            session,
            slots,
            nexus,
            target,
            ..
        } = ctx;
        let Some(task) = session.task(id) else {
            return;
        };
        let direction = match (task.is_read(), task.is_write()) {
            (true, true) => DataDirection::Bidirectional,
            (true, false) => DataDirection::Read,
            (false, true) => DataDirection::Write,
            (false, false) => DataDirection::None,
        };
        let attribute = match task.attr() {
            rtgt_pdu::TaskAttribute::ORDERED => rtgt_scsi::TaskAttribute::Ordered,
            rtgt_pdu::TaskAttribute::HEAD_OF_QUEUE => rtgt_scsi::TaskAttribute::HeadOfQueue,
            rtgt_pdu::TaskAttribute::ACA => rtgt_scsi::TaskAttribute::Aca,
            rtgt_pdu::TaskAttribute::UNTAGGED => rtgt_scsi::TaskAttribute::Untagged,
            _ => rtgt_scsi::TaskAttribute::Simple,
        };
        let req = CommandRequest {
            cdb: task.cdb(),
            attribute,
            expected_len: task.expected_len(),
            direction,
        };
        let Some(target) = target.as_ref() else {
            let c = rtgt_scsi::target::lun_not_present(&[], &req);
            self.finish(sidx, id, &c);
            return;
        };
        let lun = task.lun().number();
        let dispatch = if direction == DataDirection::Bidirectional {
            // Bidirectional commands are not supported by any command set we emulate.
            let err: ScsiError = SenseError::invalid_cdb_field(0, None).into();
            Dispatch::Complete(rtgt_scsi::Completion::error(
                &err,
                false,
                rtgt_scsi::Residual::None,
            ))
        } else if rtgt_scsi::target::is_target_level(req.cdb) {
            Dispatch::Complete(rtgt_scsi::target::report_luns(&target.lun_list, &req))
        } else {
            match lun.and_then(|n| target.lun(n)) {
                Some(l) => {
                    if let Some(s) = slots.get_mut(id.slot()) {
                        s.lun = l.number;
                    }
                    l.lu.prepare(nexus, &req)
                }
                None => {
                    Dispatch::Complete(rtgt_scsi::target::lun_not_present(&target.lun_list, &req))
                }
            }
        };
        match dispatch {
            Dispatch::Complete(c) => self.finish(sidx, id, &c),
            Dispatch::Execute(cmd) => {
                let out = cmd.data_out_len();
                if let Some(s) = slots.get_mut(id.slot()) {
                    s.cmd = Some(cmd);
                }
                if out > 0 {
                    session.task_wants_data(id, u32::try_from(out).unwrap_or(u32::MAX));
                } else {
                    self.scsi_execute(sidx, id);
                }
            }
        }
    }

    pub(crate) fn scsi_execute(&mut self, sidx: usize, id: TaskId) {
        let mode = self.mode;
        let cache = self.cache.as_ref();
        let pool_size = self.pool_size;
        let now = self.now;
        let reactors = self.shared.reactors.get().map_or(1, Vec::len);
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let SessionCtx {
            slots,
            nexus,
            target,
            ..
        } = ctx;
        let Some(slot) = slots.get_mut(id.slot()) else {
            return;
        };
        let Some(mut cmd) = slot.cmd.take() else {
            return;
        };
        let Some(l) = target.as_ref().and_then(|t| t.lun(slot.lun)) else {
            return;
        };
        let lu = &l.lu;
        let out_len = cmd.data_out_len();
        let in_cap = cmd.data_in_capacity();
        slot.aux_used = out_len > 0 && in_cap > 0;
        if slot.aux_used {
            slot.aux.zeroed_heap(in_cap);
        } else if in_cap > 0 {
            slot.buf.ensure(in_cap, cache, pool_size);
        }
        let step = {
            let data_out = slot.buf.as_slice().get(..out_len).unwrap_or(&[]);
            lu.execute(nexus, &mut cmd, data_out)
        };
        match step {
            Step::Complete => {
                let c = lu.complete(nexus, cmd, &[]);
                self.finish(sidx, id, &c);
            }
            Step::Blocked => {
                slot.cmd = Some(cmd);
                self.blocked.push((sidx, id));
            }
            Step::Io(plan) => {
                // Files in memory (tmpfs/ramfs) are read and written inline: the kernel cannot do
                // those without blocking, so the ring would hand every one to an io-wq worker
                // thread, costing two context switches per I/O for what is a memcpy.
                let in_memory = matches!(&l.backend, Backend::File(s) if s.backing().facts().in_memory && !s.backing().is_direct());
                let ring = mode == IoMode::Uring
                    && !in_memory
                    && matches!(&l.backend, Backend::File(s) if !s.backing().is_direct() || (!slot.aux_used && slot.buf.fixed_index().is_some()))
                    && plan.ops().iter().all(|op| {
                        matches!(op, IoOp::Read { .. } | IoOp::Write { .. } | IoOp::Flush)
                    });
                if ring {
                    slot.cmd = Some(cmd);
                    slot.plan = Some(plan);
                    slot.next_op = 0;
                    slot.outcomes.clear();
                    self.submit_next_op(sidx, id);
                    return;
                }
                let backend = l.backend.block();
                let mut rs = super::streams::state_for(&mut self.streams, l, reactors);
                let c = {
                    let (data_out, data_in): (&[u8], &mut [u8]) = if slot.aux_used {
                        (
                            slot.buf.as_slice().get(..out_len).unwrap_or(&[]),
                            slot.aux.as_mut_slice(),
                        )
                    } else if out_len > 0 {
                        (slot.buf.as_slice().get(..out_len).unwrap_or(&[]), &mut [])
                    } else {
                        (&[], slot.buf.as_mut_slice())
                    };
                    // One data operation (the common case) runs directly, without
                    // `run_plan`'s vector of outcomes.
                    let single = match (plan.ops(), &l.backend) {
                        // Plain pread/pwrite on the descriptor: no lock, no second ring (the
                        // store's own synchronous path serialises on a mutex).
                        ([op], Backend::File(s)) if !s.backing().is_direct() => streamed_file_io(
                            rs.as_deref_mut(),
                            s.backing().file(),
                            now,
                            *op,
                            data_out,
                            data_in,
                        ),
                        ([op], _) => run_one(backend, *op, data_out, data_in),
                        _ => None,
                    };
                    // Plain reads and writes through `streamed_file_io` kept the cache coherent.
                    let tracked = single.is_some()
                        && matches!(&l.backend, Backend::File(s) if !s.backing().is_direct());
                    let c = if let Some(o) = single {
                        lu.complete(nexus, cmd, core::slice::from_ref(&o))
                    } else {
                        let outcomes = rtgt_scsi::run_plan(backend, &plan, data_out, data_in);
                        lu.complete(nexus, cmd, &outcomes)
                    };
                    let changed = plan
                        .ops()
                        .iter()
                        .any(|op| !matches!(op, IoOp::Read { .. } | IoOp::Flush));
                    if let (Some(rs), true, false) = (rs, changed, tracked) {
                        // Anything but a plain write (WRITE SAME, UNMAP, ...): drop it all.
                        rs.after_write(0, u64::MAX);
                    }
                    c
                };
                self.finish(sidx, id, &c);
            }
        }
    }

    /// Queues the next operation of a ring plan, or completes the command.
    pub(crate) fn submit_next_op(&mut self, sidx: usize, id: TaskId) {
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let SessionCtx {
            slots,
            nexus,
            target,
            ..
        } = ctx;
        let Some(slot) = slots.get_mut(id.slot()) else {
            return;
        };
        let Some(l) = target.as_ref().and_then(|t| t.lun(slot.lun)) else {
            return;
        };
        let Backend::File(store) = &l.backend else {
            return;
        };
        let failed = slot
            .outcomes
            .last()
            .is_some_and(|o| !matches!(o, IoOutcome::Done));
        let op = slot
            .plan
            .as_ref()
            .and_then(|p| p.ops().get(slot.next_op).copied());
        let (Some(op), false) = (op, failed) else {
            // Plan finished (or an operation failed: the rest must not run).
            slot.plan = None;
            let Some(cmd) = slot.cmd.take() else {
                return;
            };
            let outcomes = core::mem::take(&mut slot.outcomes);
            let c = l.lu.complete(nexus, cmd, &outcomes);
            if let Some(slot) = self
                .sessions
                .get_mut(sidx)
                .and_then(|c| c.slots.get_mut(id.slot()))
            {
                let mut outcomes = outcomes;
                outcomes.clear();
                slot.outcomes = outcomes;
            }
            self.finish(sidx, id, &c);
            return;
        };
        let file = RingFile::of(store);
        let capacity = store.backing().size_bytes();
        let align = store.backing().alignment().offset();
        let single_op = slot.plan.as_ref().is_some_and(|p| p.ops().len() == 1);
        let reactors = self.shared.reactors.get().map_or(1, Vec::len);
        let rs = super::streams::state_for(&mut self.streams, l, reactors);
        let transfer = |dir, offset, len: u64| {
            rtgt_uring::completion::Transfer::new(dir, offset, len as usize, capacity, align)
        };
        let kind =
            match op {
                IoOp::Read { offset, len, buf } => {
                    slot.xfer = Some((
                        transfer(rtgt_uring::completion::Direction::Read, offset, len),
                        op,
                    ));
                    let aux = slot.aux_used;
                    if let Some(rs) = rs {
                        let base = if aux { &mut slot.aux } else { &mut slot.buf };
                        let step = match base.as_mut_slice().get_mut(buf..buf + len as usize) {
                            Some(dst) => rs.read(self.now, offset, dst),
                            None => super::streams::ReadStep::Direct,
                        };
                        for (cs, start, n) in rs.to_submit.drain(..) {
                            self.ring_ops.push(RingOp {
                                owner: Owner::Fetch {
                                    lu: l.index,
                                    slot: cs,
                                },
                                file,
                                kind: RingOpKind::Read {
                                    offset: start,
                                    pos: 0,
                                    len: n,
                                    aux: false,
                                },
                            });
                        }
                        match step {
                            super::streams::ReadStep::Hit => {
                                slot.outcomes.push(IoOutcome::Done);
                                slot.next_op += 1;
                                return self.submit_next_op(sidx, id);
                            }
                            super::streams::ReadStep::Wait(cs) => {
                                rs.park(
                                    cs,
                                    super::streams::Waiter {
                                        sidx,
                                        slot: id.slot(),
                                        task: id,
                                        offset,
                                        len: len as usize,
                                        pos: buf,
                                        aux,
                                    },
                                );
                                slot.io_pending = true;
                                return;
                            }
                            super::streams::ReadStep::Direct => {}
                        }
                    }
                    RingOpKind::Read {
                        offset,
                        pos: buf,
                        len: len as usize,
                        aux,
                    }
                }
                IoOp::Write {
                    offset,
                    len,
                    buf,
                    fua,
                } => {
                    slot.xfer = Some((
                        transfer(rtgt_uring::completion::Direction::Write, offset, len),
                        op,
                    ));
                    if let Some(rs) = rs {
                        rs.invalidate(offset, len);
                        let step = if single_op && !slot.aux_used {
                            rs.plan_write(self.now, offset, len, fua)
                        } else {
                            super::streams::WriteStep::Direct(None)
                        };
                        match step {
                            super::streams::WriteStep::Direct(stream) => slot.wstream = stream,
                            super::streams::WriteStep::Batch { index, pos, stream } => {
                                let src = slot.buf.as_slice().get(buf..buf + len as usize);
                                let batch = rs.batches.get_mut(index);
                                if let (Some(src), Some(b)) = (src, batch) {
                                    if let Some(dst) = b.buf.as_mut().and_then(|d| {
                                        d.as_mut_slice().get_mut(pos..pos + src.len())
                                    }) {
                                        dst.copy_from_slice(src);
                                    }
                                    b.members.push(super::streams::Member {
                                        sidx,
                                        slot: id.slot(),
                                        task: id,
                                        stream,
                                    });
                                }
                                slot.io_pending = true;
                                return;
                            }
                        }
                    }
                    RingOpKind::Write {
                        offset,
                        pos: buf,
                        len: len as usize,
                        fua,
                    }
                }
                _ => {
                    slot.xfer = None;
                    if let Some(rs) = rs {
                        // SYNCHRONIZE CACHE: nothing waits for neighbours any more.
                        rs.close_all();
                    }
                    RingOpKind::Flush
                }
            };
        slot.io_pending = true;
        self.ring_ops.push(RingOp {
            owner: Owner::Task {
                sidx,
                slot: id.slot(),
            },
            file,
            kind,
        });
    }

    /// Lends the buffer a ring operation works on (the ring owns it until the completion).
    pub(crate) fn lend_for_op(&mut self, op: &RingOp) -> Option<Box<TaskBuf>> {
        match op.owner {
            Owner::Task { sidx, slot } => {
                let slot = self.sessions.get_mut(sidx)?.slots.get_mut(slot)?;
                match op.kind {
                    RingOpKind::Read { aux, .. } => Some(slot.lend(aux)),
                    RingOpKind::Write { .. } => Some(slot.lend(false)),
                    RingOpKind::Flush => None,
                }
            }
            Owner::Fetch { lu, slot } => {
                Some(self.streams.get_mut(lu)?.as_mut()?.lend_fetch_buf(slot))
            }
            Owner::Batch { lu, id } => self
                .streams
                .get_mut(lu)?
                .as_mut()?
                .batches
                .iter_mut()
                .find(|b| b.id == id)?
                .buf
                .take(),
        }
    }

    /// A ring operation completed with `res`; `buf` is its memory, back from the ring.
    pub(crate) fn on_ring_done(&mut self, owner: Owner, res: i32, buf: Option<Box<TaskBuf>>) {
        match owner {
            Owner::Task { sidx, slot } => self.on_backend_done(sidx, slot, res, buf),
            Owner::Fetch { lu, slot } => self.on_fetch_done(lu, slot, res, buf),
            Owner::Batch { lu, id } => self.on_batch_done(lu, id, res, buf),
        }
    }

    /// A read-ahead fetch completed: serve the reads that waited for it (or send them to the
    /// store when it did not bring their data).
    fn on_fetch_done(&mut self, lu: usize, cache_slot: usize, res: i32, buf: Option<Box<TaskBuf>>) {
        let Some(rs) = self.streams.get_mut(lu).and_then(Option::as_mut) else {
            return;
        };
        let waiters = match buf {
            Some(b) => rs.fetch_done(cache_slot, res, b),
            None => Vec::new(),
        };
        for w in waiters {
            let Some(rs) = self.streams.get_mut(lu).and_then(Option::as_mut) else {
                return;
            };
            let Some(ctx) = self.sessions.get_mut(w.sidx) else {
                continue;
            };
            if ctx.session.task_in_slot(w.slot) != Some(w.task) {
                continue;
            }
            let Some(slot) = ctx.slots.get_mut(w.slot) else {
                continue;
            };
            let base = if w.aux { &mut slot.aux } else { &mut slot.buf };
            let served = base
                .as_mut_slice()
                .get_mut(w.pos..w.pos + w.len)
                .is_some_and(|dst| rs.serve(&w, dst));
            if served {
                slot.io_pending = false;
                slot.outcomes.push(IoOutcome::Done);
                slot.next_op += 1;
                self.submit_next_op(w.sidx, w.task);
                self.drive_session(w.sidx);
            } else {
                let file = ctx
                    .target
                    .as_ref()
                    .and_then(|t| t.lun(slot.lun))
                    .and_then(|l| RingFile::of_backend(&l.backend));
                if let Some(file) = file {
                    self.ring_ops.push(RingOp {
                        owner: Owner::Task {
                            sidx: w.sidx,
                            slot: w.slot,
                        },
                        file,
                        kind: RingOpKind::Read {
                            offset: w.offset,
                            pos: w.pos,
                            len: w.len,
                            aux: w.aux,
                        },
                    });
                }
            }
        }
    }

    /// The batch of logical unit `lu` whose id ends in `low` (completion tags carry 32 bits).
    pub(crate) fn batch_id(&self, lu: usize, low: u32) -> u64 {
        self.streams
            .get(lu)
            .and_then(Option::as_ref)
            .and_then(|rs| rs.batches.iter().find(|b| b.id as u32 == low))
            .map_or(u64::from(low), |b| b.id)
    }

    /// Queues the write of every coalesced batch that is due.
    pub(crate) fn poll_batches(&mut self) {
        let mut due = Vec::new();
        for (lu, rs) in self.streams.iter_mut().enumerate() {
            let Some(rs) = rs else { continue };
            if rs.batches.is_empty() {
                continue;
            }
            due.clear();
            rs.due_batches(self.now, &mut due);
            for &i in &due {
                let Some(b) = rs.batches.get(i) else { continue };
                let (Some(closed), Some(file)) = (b.closed, rs.file) else {
                    continue;
                };
                self.ring_ops.push(RingOp {
                    owner: Owner::Batch { lu, id: b.id },
                    file,
                    kind: RingOpKind::Write {
                        offset: closed.offset,
                        pos: 0,
                        len: closed.len as usize,
                        fua: false,
                    },
                });
            }
        }
    }

    /// A coalesced batch was written: every write in it completes with the batch's outcome.
    fn on_batch_done(&mut self, lu: usize, id: u64, res: i32, _buf: Option<Box<TaskBuf>>) {
        let Some(rs) = self.streams.get_mut(lu).and_then(Option::as_mut) else {
            return;
        };
        let Some(batch) = rs.batch_done(id) else {
            return;
        };
        let want = batch.closed.map_or(0, |c| c.len);
        let outcome = match rtgt_uring::decode_result(res, "write") {
            Ok(n) if n as u64 == want => IoOutcome::Done,
            Ok(_) => IoOutcome::Failed(rtgt_scsi::BackendError::Other(
                "short coalesced write".into(),
            )),
            Err(e) => IoOutcome::Failed(e),
        };
        for m in batch.members {
            let Some(ctx) = self.sessions.get_mut(m.sidx) else {
                continue;
            };
            let Some(slot) = ctx.slots.get_mut(m.slot) else {
                continue;
            };
            slot.io_pending = false;
            if ctx.session.task_in_slot(m.slot) != Some(m.task) {
                continue;
            }
            slot.outcomes.push(outcome.clone());
            slot.next_op += 1;
            self.submit_next_op(m.sidx, m.task);
            self.drive_session(m.sidx);
        }
    }

    /// A ring operation of a task slot completed with `res` (bytes or -errno); `buf` is the
    /// buffer it worked on, back from the ring.
    pub(crate) fn on_backend_done(
        &mut self,
        sidx: usize,
        slot_idx: usize,
        res: i32,
        buf: Option<Box<TaskBuf>>,
    ) {
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let id = ctx.session_task_id(slot_idx);
        let Some(slot) = ctx.slots.get_mut(slot_idx) else {
            return;
        };
        if let Some(b) = buf {
            let aux = slot.aux_used && matches!(slot.xfer, Some((_, IoOp::Read { .. })));
            slot.restore(b, aux);
        }
        slot.io_pending = false;
        let Some(id) = id else {
            return;
        };
        let outcome = match slot.xfer.as_mut() {
            None => match rtgt_uring::decode_result(res, "flush") {
                Ok(_) => IoOutcome::Done,
                Err(e) => IoOutcome::Failed(e),
            },
            Some((xfer, op)) => match xfer.on_result(res) {
                Ok(rtgt_uring::completion::Next::Done) => IoOutcome::Done,
                Ok(rtgt_uring::completion::Next::ZeroFill { buf_pos, len }) => {
                    if let IoOp::Read { buf, .. } = *op {
                        let base = if slot.aux_used {
                            slot.aux.as_mut_slice()
                        } else {
                            slot.buf.as_mut_slice()
                        };
                        if let Some(z) = base.get_mut(buf + buf_pos..buf + buf_pos + len) {
                            z.fill(0);
                        }
                    }
                    IoOutcome::Done
                }
                Ok(rtgt_uring::completion::Next::Resubmit {
                    offset,
                    buf_pos,
                    len,
                }) => {
                    // A short transfer: submit the rest.
                    let op = *op;
                    let Some(file) = ctx
                        .target
                        .as_ref()
                        .and_then(|t| t.lun(slot.lun))
                        .and_then(|l| RingFile::of_backend(&l.backend))
                    else {
                        return;
                    };
                    let kind = match op {
                        IoOp::Read { buf, .. } => Some(RingOpKind::Read {
                            offset,
                            pos: buf + buf_pos,
                            len,
                            aux: slot.aux_used,
                        }),
                        IoOp::Write { buf, fua, .. } => Some(RingOpKind::Write {
                            offset,
                            pos: buf + buf_pos,
                            len,
                            fua,
                        }),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        slot.io_pending = true;
                        self.ring_ops.push(RingOp {
                            owner: Owner::Task {
                                sidx,
                                slot: slot_idx,
                            },
                            file,
                            kind,
                        });
                        return;
                    }
                    IoOutcome::Failed(rtgt_scsi::BackendError::Other("short transfer".into()))
                }
                Err(e) => IoOutcome::Failed(e),
            },
        };
        if let Some((_, IoOp::Write { offset, len, .. })) = slot.xfer {
            // Before the write is acknowledged: read-ahead caches drop what it changed.
            let lu = ctx
                .target
                .as_ref()
                .and_then(|t| t.lun(slot.lun))
                .map(|l| l.index);
            if let Some(rs) = lu
                .and_then(|i| self.streams.get_mut(i))
                .and_then(Option::as_mut)
            {
                rs.after_write(offset, len);
                rs.write_done(slot.wstream.take());
            }
        }
        slot.outcomes.push(outcome);
        slot.next_op += 1;
        self.submit_next_op(sidx, id);
        self.drive_session(sidx);
    }

    /// Turns the SCSI layer's completion into the session's.
    pub(crate) fn finish(&mut self, sidx: usize, id: TaskId, c: &rtgt_scsi::Completion) {
        let cache = self.cache.as_ref();
        let pool_size = self.pool_size;
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let Some(slot) = ctx.slots.get_mut(id.slot()) else {
            return;
        };
        let data_in_len = match &c.data_in {
            DataIn::None => 0,
            DataIn::Buffer { len } => {
                if slot.aux_used {
                    let n = (*len).min(slot.aux.as_slice().len());
                    slot.buf.ensure(n, cache, pool_size);
                    if let (Some(dst), Some(src)) = (
                        slot.buf.as_mut_slice().get_mut(..n),
                        slot.aux.as_slice().get(..n),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    n
                } else {
                    (*len).min(slot.buf.as_slice().len())
                }
            }
            DataIn::Owned(v) => {
                slot.buf.ensure(v.len(), cache, pool_size);
                if let Some(dst) = slot.buf.as_mut_slice().get_mut(..v.len()) {
                    dst.copy_from_slice(v);
                }
                v.len()
            }
        };
        ctx.session.complete_task(
            id,
            crate::reactor::shared::session_completion(c, data_in_len),
        );
        if !c.abort_nexuses.is_empty() {
            // PERSISTENT RESERVE OUT PREEMPT AND ABORT: the preempted nexuses lose their tasks.
            let target: Arc<str> = ctx
                .target
                .as_ref()
                .map_or_else(|| Arc::from(""), |t| Arc::from(t.name.as_str()));
            let lun = ctx.slots.get(id.slot()).map(|s| s.lun);
            self.shared.broadcast(|| Message::AbortNexuses {
                target: target.clone(),
                lun,
                nexuses: c.abort_nexuses.clone(),
            });
        }
    }

    pub(crate) fn scsi_aborted(&mut self, sidx: usize, id: TaskId) {
        // A task aborted while the engine holds it: a ring operation finishes on its own; a
        // command parked behind the COMPARE AND WRITE gate is released now.
        let Some(pos) = self.blocked.iter().position(|b| *b == (sidx, id)) else {
            return;
        };
        self.blocked.swap_remove(pos);
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let Some(slot) = ctx.slots.get_mut(id.slot()) else {
            return;
        };
        if let (Some(cmd), Some(l)) = (
            slot.cmd.take(),
            ctx.target.as_ref().and_then(|t| t.lun(slot.lun)),
        ) {
            let c = l.lu.abort(cmd);
            self.finish(sidx, id, &c);
        } else {
            ctx.session.complete_task(id, Completion::good(0));
        }
    }

    pub(crate) fn release_slot(&mut self, sidx: usize, id: TaskId) {
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        if ctx.session.task_in_slot(id.slot()).is_some() {
            // The slot already holds a newer task (the release event is stale).
            return;
        }
        let Some(slot) = ctx.slots.get_mut(id.slot()) else {
            return;
        };
        if let Some(cmd) = slot.cmd.take() {
            if let Some(l) = ctx.target.as_ref().and_then(|t| t.lun(slot.lun)) {
                let _ = l.lu.abort(cmd);
            }
        }
        slot.plan = None;
        slot.xfer = None;
        slot.buf.release();
    }

    pub(crate) fn lu_action(&mut self, sidx: usize, action: LuAction) {
        let Some(ctx) = self.sessions.get(sidx) else {
            return;
        };
        let Some(target) = ctx.target.clone() else {
            return;
        };
        let serial = ctx.serial;
        let name: Arc<str> = Arc::from(target.name.as_str());
        match action {
            LuAction::AbortTaskSet { lun, clear } => {
                if clear {
                    self.shared.broadcast(|| Message::ResetAbort {
                        target: name.clone(),
                        lun: Some(lun),
                        except: serial,
                        terminate: false,
                    });
                }
            }
            LuAction::LogicalUnitReset { lun } => {
                if let Some(l) = target.lun(lun) {
                    l.lu.reset(rtgt_scsi::ResetKind::LogicalUnit);
                }
                self.shared.broadcast(|| Message::ResetAbort {
                    target: name.clone(),
                    lun: Some(lun),
                    except: serial,
                    terminate: false,
                });
            }
            LuAction::TargetReset { cold } => {
                let kind = if cold {
                    rtgt_scsi::ResetKind::TargetCold
                } else {
                    rtgt_scsi::ResetKind::TargetWarm
                };
                for l in &target.luns {
                    l.lu.reset(kind);
                }
                self.shared.broadcast(|| Message::ResetAbort {
                    target: name.clone(),
                    lun: None,
                    except: serial,
                    terminate: cold,
                });
            }
            LuAction::ClearAca { .. } => {}
        }
    }

    // ------------------------------------------------------------------ messages
}

/// Runs a single data operation directly (the common case), avoiding `run_plan`'s vector.
fn run_one(
    backend: &dyn rtgt_scsi::BlockBackend,
    op: IoOp,
    data_out: &[u8],
    data_in: &mut [u8],
) -> Option<IoOutcome> {
    let r = match op {
        IoOp::Read { offset, len, buf } => {
            let dst = data_in.get_mut(buf..buf + len as usize)?;
            backend.read_at(offset, dst)
        }
        IoOp::Write {
            offset,
            len,
            buf,
            fua,
        } => {
            let src = data_out.get(buf..buf + len as usize)?;
            backend.write_at(offset, src, fua)
        }
        IoOp::Flush => backend.flush(),
        _ => return None,
    };
    Some(match r {
        Ok(()) => IoOutcome::Done,
        Err(e) => IoOutcome::Failed(e),
    })
}

/// [`file_io`] with the streams feature: reads of sequential streams through the read-ahead
/// cache (fetching their chunk synchronously), writes dropping what they overlap.
fn streamed_file_io(
    rs: Option<&mut super::streams::ReactorStreams>,
    file: &std::fs::File,
    now: std::time::Instant,
    op: IoOp,
    data_out: &[u8],
    data_in: &mut [u8],
) -> Option<IoOutcome> {
    let Some(rs) = rs else {
        return file_io(file, op, data_out, data_in);
    };
    match op {
        IoOp::Read { offset, len, buf } => {
            let dst = data_in.get_mut(buf..buf + usize::try_from(len).ok()?)?;
            match rs.read_sync(file, now, offset, dst) {
                Some(Ok(())) => Some(IoOutcome::Done),
                Some(Err(e)) => Some(IoOutcome::Failed(rtgt_uring::io_to_backend(&e, "read"))),
                None => file_io(file, op, data_out, data_in),
            }
        }
        IoOp::Write { offset, len, .. } => {
            rs.invalidate(offset, len);
            let o = file_io(file, op, data_out, data_in);
            rs.after_write(offset, len);
            o
        }
        _ => file_io(file, op, data_out, data_in),
    }
}

/// Reads or writes a file directly with pread/pwrite (readiness engine, and files in memory on
/// either engine). A read past the end of a file inside the logical unit returns zeros (SBC-4
/// §4.7: every LBA up to the capacity is readable); FUA makes the write durable with
/// fdatasync. Other operations return `None` (the store runs them).
fn file_io(
    file: &std::fs::File,
    op: IoOp,
    data_out: &[u8],
    data_in: &mut [u8],
) -> Option<IoOutcome> {
    use std::os::unix::fs::FileExt;
    let failed = |e: &std::io::Error, what| IoOutcome::Failed(rtgt_uring::io_to_backend(e, what));
    match op {
        IoOp::Read { offset, len, buf } => {
            let dst = data_in.get_mut(buf..buf + usize::try_from(len).ok()?)?;
            let mut done = 0;
            while done < dst.len() {
                let rest = dst.get_mut(done..)?;
                match file.read_at(rest, offset + done as u64) {
                    Ok(0) => {
                        rest.fill(0);
                        break;
                    }
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Some(failed(&e, "read")),
                }
            }
            Some(IoOutcome::Done)
        }
        IoOp::Write {
            offset,
            len,
            buf,
            fua,
        } => {
            let src = data_out.get(buf..buf + usize::try_from(len).ok()?)?;
            if let Err(e) = file.write_all_at(src, offset) {
                return Some(failed(&e, "write"));
            }
            if fua {
                if let Err(e) = file.sync_data() {
                    return Some(failed(&e, "fdatasync"));
                }
            }
            Some(IoOutcome::Done)
        }
        _ => None,
    }
}
