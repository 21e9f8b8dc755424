//! The SCSI path of an iSER task (SAM-5 §5 task execution via rtgt-scsi; SBC-4/SPC-5 through
//! the logical unit): prepare, ask the session for the Data-Out (which arrives by RDMA Read
//! into the task buffer), execute the plan against the store, complete; task-management
//! effects on logical units (SAM-5 §6) and on this reactor's other sessions.
//!
//! Every store is driven through its synchronous [`rtgt_scsi::BlockBackend`] path on the
//! reactor thread (the TCP reactors' io_uring submission path is theirs alone).

use std::sync::Arc;

use rtgt_iser::verbs::Verbs;
use rtgt_scsi::{
    CommandRequest, DataDirection, DataIn, Dispatch, ScsiError, SenseError, Step, run_plan,
};
use rtgt_session::target::{Completion, LuAction, TaskId};

use super::reactor::Reactor;
use super::session::ensure_buf;
use crate::parked::ParkedCommands;
use crate::reactor::shared::Message;

impl<V: Verbs> ParkedCommands for Reactor<V> {
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

impl<V: Verbs> Reactor<V> {
    /// A command's turn has come: prepare it.
    pub(crate) fn scsi_start(&mut self, sidx: usize, id: TaskId) {
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        let Some(task) = ctx.session.task(id) else {
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
        let buffer_len = task.buffer_len() as usize;
        let req = CommandRequest {
            cdb: task.cdb(),
            attribute,
            expected_len: task.expected_len(),
            direction,
        };
        let lun = task.lun().number();
        let dispatch = match ctx.target.as_ref() {
            None => Dispatch::Complete(rtgt_scsi::target::lun_not_present(&[], &req)),
            Some(_) if direction == DataDirection::Bidirectional => {
                // No command set we emulate has bidirectional commands.
                let err: ScsiError = SenseError::invalid_cdb_field(0, None).into();
                Dispatch::Complete(rtgt_scsi::Completion::error(
                    &err,
                    false,
                    rtgt_scsi::Residual::None,
                ))
            }
            Some(t) if rtgt_scsi::target::is_target_level(req.cdb) => {
                Dispatch::Complete(rtgt_scsi::target::report_luns(&t.lun_list, &req))
            }
            Some(t) => match lun.and_then(|n| t.lun(n)) {
                Some(l) => {
                    if let Some(s) = ctx.slots.get_mut(id.slot()) {
                        s.lun = l.number;
                    }
                    l.lu.prepare(&ctx.nexus, &req)
                }
                None => Dispatch::Complete(rtgt_scsi::target::lun_not_present(&t.lun_list, &req)),
            },
        };
        let cmd = match dispatch {
            Dispatch::Complete(c) => {
                self.finish(sidx, id, &c);
                return;
            }
            Dispatch::Execute(cmd) => cmd,
        };
        let out = cmd.data_out_len();
        let refused = {
            let Self {
                sessions, memory, ..
            } = self;
            let Some(ctx) = sessions.get_mut(sidx).and_then(Option::as_mut) else {
                return;
            };
            let Some(slot) = ctx.slots.get_mut(id.slot()) else {
                return;
            };
            if out > 0 && ensure_buf(memory, &mut slot.buf, buffer_len).is_none() {
                // No registered memory for the Data-Out: BUSY, the initiator retries.
                if let Some(l) = ctx.target.as_ref().and_then(|t| t.lun(slot.lun)) {
                    let _ = l.lu.abort(cmd);
                }
                true
            } else {
                slot.cmd = Some(cmd);
                if out > 0 {
                    ctx.session
                        .task_wants_data(id, u32::try_from(out).unwrap_or(u32::MAX));
                }
                false
            }
        };
        if refused {
            self.finish(sidx, id, &busy());
        } else if out == 0 {
            self.scsi_execute(sidx, id);
        }
    }

    /// All Data-Out is in the task buffer (or none is needed): execute.
    pub(crate) fn scsi_execute(&mut self, sidx: usize, id: TaskId) {
        if let Some(c) = self.execute_now(sidx, id) {
            self.finish(sidx, id, &c);
        }
    }

    /// Executes the command of a task; `None` when it is parked (blocked) or gone.
    fn execute_now(&mut self, sidx: usize, id: TaskId) -> Option<rtgt_scsi::Completion> {
        let Self {
            sessions,
            memory,
            blocked,
            ..
        } = self;
        let ctx = sessions.get_mut(sidx).and_then(Option::as_mut)?;
        let slot = ctx.slots.get_mut(id.slot())?;
        let mut cmd = slot.cmd.take()?;
        let l = ctx.target.as_ref().and_then(|t| t.lun(slot.lun))?;
        let out_len = cmd.data_out_len();
        let in_cap = cmd.data_in_capacity();
        slot.aux_used = out_len > 0 && in_cap > 0;
        if slot.aux_used {
            slot.aux.clear();
            slot.aux.resize(in_cap, 0);
        } else if in_cap > 0 && ensure_buf(memory, &mut slot.buf, in_cap).is_none() {
            let _ = l.lu.abort(cmd);
            return Some(busy());
        }
        let step = {
            let out = if out_len > 0 {
                slot.buf
                    .as_ref()
                    .and_then(|b| b.as_slice())
                    .and_then(|b| b.get(..out_len))
                    .unwrap_or(&[])
            } else {
                &[]
            };
            l.lu.execute(&ctx.nexus, &mut cmd, out)
        };
        let c = match step {
            Step::Complete => l.lu.complete(&ctx.nexus, cmd, &[]),
            Step::Blocked => {
                slot.cmd = Some(cmd);
                blocked.push((sidx, id));
                return None;
            }
            Step::Io(plan) => {
                let backend = l.backend.block();
                let outcomes = if out_len > 0 {
                    let out = slot
                        .buf
                        .as_ref()
                        .and_then(|b| b.as_slice())
                        .and_then(|b| b.get(..out_len))
                        .unwrap_or(&[]);
                    if slot.aux_used {
                        run_plan(backend, &plan, out, &mut slot.aux)
                    } else {
                        run_plan(backend, &plan, out, &mut [])
                    }
                } else {
                    match slot.buf.as_mut().and_then(|b| b.as_mut_slice()) {
                        Some(data_in) => run_plan(backend, &plan, &[], data_in),
                        None => run_plan(backend, &plan, &[], &mut []),
                    }
                };
                l.lu.complete(&ctx.nexus, cmd, &outcomes)
            }
        };
        Some(c)
    }

    /// Hands the SCSI layer's completion to the session (Data-In from the task buffer).
    fn finish(&mut self, sidx: usize, id: TaskId, c: &rtgt_scsi::Completion) {
        let Self {
            sessions, memory, ..
        } = self;
        let Some(ctx) = sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        let Some(slot) = ctx.slots.get_mut(id.slot()) else {
            return;
        };
        let data_in_len = match &c.data_in {
            DataIn::None => 0,
            DataIn::Buffer { len } => {
                if slot.aux_used {
                    let n = (*len).min(slot.aux.len());
                    copy_in(memory, &mut slot.buf, slot.aux.get(..n).unwrap_or(&[]))
                } else {
                    let have = slot.buf.as_ref().map_or(0, rtgt_iser::TaskBuffer::len);
                    (*len).min(have)
                }
            }
            DataIn::Owned(v) => copy_in(memory, &mut slot.buf, v),
        };
        ctx.session.complete_task(
            id,
            crate::reactor::shared::session_completion(c, data_in_len),
        );
        if !c.abort_nexuses.is_empty() {
            // PERSISTENT RESERVE OUT PREEMPT AND ABORT: the preempted nexuses lose their
            // tasks, on the TCP reactors and here.
            let name = ctx.target.as_ref().map(|t| t.name.clone());
            let lun = ctx.slots.get(id.slot()).map(|s| s.lun);
            let nexuses = c.abort_nexuses.clone();
            if let Some(name) = name {
                let target: Arc<str> = Arc::from(name.as_str());
                self.shared
                    .broadcast_from(Some(self.id), || Message::AbortNexuses {
                        target: target.clone(),
                        lun,
                        nexuses: nexuses.clone(),
                    });
                self.abort_sessions(
                    |s| {
                        nexuses.contains(&s.nexus.id)
                            && s.target.as_ref().is_some_and(|t| t.name == name)
                    },
                    lun,
                    false,
                    Some(sidx),
                );
            }
        }
    }

    /// A task the engine holds was aborted: a command parked behind the COMPARE AND WRITE
    /// gate is released now (nothing else is held across events here).
    pub(crate) fn scsi_aborted(&mut self, sidx: usize, id: TaskId) {
        if let Some(pos) = self.blocked.iter().position(|b| *b == (sidx, id)) {
            self.blocked.swap_remove(pos);
        }
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
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

    /// A task management function's effect beyond the session (SAM-5 §6): the logical unit,
    /// this reactor's other sessions, and the TCP reactors' sessions.
    pub(crate) fn lu_action(&mut self, sidx: usize, action: LuAction) {
        let Some(ctx) = self.sessions.get(sidx).and_then(Option::as_ref) else {
            return;
        };
        let Some(target) = ctx.target.clone() else {
            return;
        };
        let serial = ctx.serial;
        let name: Arc<str> = Arc::from(target.name.as_str());
        let (lun, terminate) = match action {
            LuAction::AbortTaskSet { lun, clear } => {
                if !clear {
                    return;
                }
                (Some(lun), false)
            }
            LuAction::LogicalUnitReset { lun } => {
                if let Some(l) = target.lun(lun) {
                    l.lu.reset(rtgt_scsi::ResetKind::LogicalUnit);
                }
                (Some(lun), false)
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
                (None, cold)
            }
            LuAction::ClearAca { .. } => return,
        };
        self.shared
            .broadcast_from(Some(self.id), || Message::ResetAbort {
                target: name.clone(),
                lun,
                except: serial,
                terminate,
            });
        self.abort_sessions(
            |s| s.serial != serial && s.target.as_ref().is_some_and(|t| *t.name == *name),
            lun,
            terminate,
            None,
        );
    }

    /// Ends the tasks of the sessions `pred` picks on `lun` (every LU with `None`) after a
    /// reset or PREEMPT AND ABORT (SAM-5 §6.3, SPC-5 §5.14.11.2.5), or the sessions themselves
    /// (`terminate`, a cold reset). Every session hit is driven except `skip`, whose caller
    /// drives it.
    fn abort_sessions(
        &mut self,
        pred: impl Fn(&super::session::Sess<V::Mr>) -> bool,
        lun: Option<u16>,
        terminate: bool,
        skip: Option<usize>,
    ) {
        for s in self.session_indices(pred) {
            if terminate {
                let (tsih, ser) = self
                    .sessions
                    .get(s)
                    .and_then(Option::as_ref)
                    .map_or((0, 0), |c| (c.tsih, c.serial));
                self.terminate_session(tsih, ser);
                continue;
            }
            if let Some(c) = self.sessions.get_mut(s).and_then(Option::as_mut) {
                c.session
                    .abort_for_reset(lun.and_then(rtgt_pdu::Lun::from_number));
            }
            if Some(s) != skip {
                self.drive_session(s);
            }
        }
    }

    /// Takes what the TCP reactors and the other iSER portals sent: resets and PREEMPT AND
    /// ABORT of sessions on this portal. Returns whether there was anything.
    pub(crate) fn read_inbox(&mut self) -> bool {
        let mut any = false;
        while let Ok(m) = self.inbox.try_recv() {
            any = true;
            match m {
                Message::ResetAbort {
                    target,
                    lun,
                    except,
                    terminate,
                } => self.abort_sessions(
                    |s| s.serial != except && s.target.as_ref().is_some_and(|t| *t.name == *target),
                    lun,
                    terminate,
                    None,
                ),
                Message::AbortNexuses {
                    target,
                    lun,
                    nexuses,
                } => self.abort_sessions(
                    |s| {
                        nexuses.contains(&s.nexus.id)
                            && s.target.as_ref().is_some_and(|t| *t.name == *target)
                    },
                    lun,
                    false,
                    None,
                ),
                _ => {}
            }
        }
        any
    }

    fn session_indices(&self, pred: impl Fn(&super::session::Sess<V::Mr>) -> bool) -> Vec<usize> {
        self.sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(&pred))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Copies `data` to the start of the task buffer (growing it if needed); returns the bytes
/// placed.
fn copy_in<V: Verbs>(
    memory: &rtgt_iser::TaskMemory<V>,
    buf: &mut Option<rtgt_iser::TaskBuffer<V::Mr>>,
    data: &[u8],
) -> usize {
    if data.is_empty() || ensure_buf(memory, buf, data.len()).is_none() {
        return 0;
    }
    match buf
        .as_mut()
        .and_then(|b| b.as_mut_slice())
        .and_then(|b| b.get_mut(..data.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(data);
            data.len()
        }
        None => 0,
    }
}

/// BUSY: no registered memory for the task right now; the initiator retries.
fn busy() -> rtgt_scsi::Completion {
    rtgt_scsi::Completion {
        status: rtgt_scsi::Status::BUSY,
        ..rtgt_scsi::Completion::good(DataIn::None, rtgt_scsi::Residual::None)
    }
}
