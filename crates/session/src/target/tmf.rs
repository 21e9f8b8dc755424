//! Task management (RFC 7143 §11.5–§11.6, SAM-5 §7): ABORT TASK (with the RefCmdSN rules for a
//! task that is not, or no longer, known), ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET,
//! TARGET WARM/COLD RESET, CLEAR ACA, and TASK REASSIGN (refused at ErrorRecoveryLevel 0).
//!
//! A function's response is sent only once every task it aborted has been let go by the engine
//! (no backend I/O in flight), so the initiator may reuse tags and buffers safely.

use rtgt_pdu::{PduHeader, TaskMgmtRequest, TaskMgmtResponse, TmfFunction, TmfResponse};

use super::session::{Slot, TargetSession};
use super::task::{Phase, TaskId};
use super::{ConnId, LuAction, Payload, SessionEvent};

/// A TMF waiting for aborted tasks to drain.
#[derive(Debug, Clone)]
pub(crate) struct PendingTmf {
    conn: ConnId,
    itt: rtgt_pdu::Itt,
    response: TmfResponse,
    waiting: Vec<TaskId>,
    /// Close every connection after answering (TARGET COLD RESET).
    close_after: bool,
}

impl TargetSession {
    pub(crate) fn handle_tmf(&mut self, conn: ConnId, req: &TaskMgmtRequest) {
        let lun_num = req.lun.number();
        let lun_exists = lun_num.is_some_and(|n| self.lun_exists(n));
        let mut waiting = Vec::new();
        let mut close_after = false;
        let response = match req.function {
            TmfFunction::ABORT_TASK => self.tmf_abort_task(req, &mut waiting),
            TmfFunction::ABORT_TASK_SET | TmfFunction::CLEAR_TASK_SET => {
                if lun_exists {
                    let clear = req.function == TmfFunction::CLEAR_TASK_SET;
                    self.abort_matching(|t| t.lun == req.lun, &mut waiting, Some(req.cmd_sn));
                    if let Some(lun) = lun_num {
                        self.events
                            .push_back(SessionEvent::Lu(LuAction::AbortTaskSet { lun, clear }));
                    }
                    TmfResponse::FUNCTION_COMPLETE
                } else {
                    TmfResponse::LUN_DOES_NOT_EXIST
                }
            }
            TmfFunction::CLEAR_ACA => {
                if let (true, Some(lun)) = (lun_exists, lun_num) {
                    self.events
                        .push_back(SessionEvent::Lu(LuAction::ClearAca { lun }));
                    TmfResponse::FUNCTION_COMPLETE
                } else {
                    TmfResponse::LUN_DOES_NOT_EXIST
                }
            }
            TmfFunction::LOGICAL_UNIT_RESET => {
                if let (true, Some(lun)) = (lun_exists, lun_num) {
                    self.abort_matching(|t| t.lun == req.lun, &mut waiting, None);
                    self.events
                        .push_back(SessionEvent::Lu(LuAction::LogicalUnitReset { lun }));
                    TmfResponse::FUNCTION_COMPLETE
                } else {
                    TmfResponse::LUN_DOES_NOT_EXIST
                }
            }
            TmfFunction::TARGET_WARM_RESET | TmfFunction::TARGET_COLD_RESET => {
                if self.is_discovery() {
                    TmfResponse::FUNCTION_AUTHORIZATION_FAILED
                } else {
                    let cold = req.function == TmfFunction::TARGET_COLD_RESET;
                    self.abort_matching(|_| true, &mut waiting, None);
                    self.events
                        .push_back(SessionEvent::Lu(LuAction::TargetReset { cold }));
                    close_after = cold;
                    TmfResponse::FUNCTION_COMPLETE
                }
            }
            TmfFunction::TASK_REASSIGN => {
                // Connection recovery needs ErrorRecoveryLevel 2 (RFC 7143 §11.5.1).
                TmfResponse::TASK_REASSIGNMENT_NOT_SUPPORTED
            }
            _ => TmfResponse::FUNCTION_NOT_SUPPORTED,
        };
        self.tmfs.push(PendingTmf {
            conn,
            itt: req.itt,
            response,
            waiting,
            close_after,
        });
        self.check_tmfs();
    }

    fn lun_exists(&self, n: u16) -> bool {
        self.catalog
            .target(&self.params.target_name)
            .is_some_and(|t| t.has_lun(n))
    }

    fn tmf_abort_task(&mut self, req: &TaskMgmtRequest, waiting: &mut Vec<TaskId>) -> TmfResponse {
        if let Some(id) = self.tasks.by_itt(req.referenced_task_tag) {
            let Some(task) = self.tasks.get(id) else {
                return TmfResponse::TASK_DOES_NOT_EXIST;
            };
            if task.status_sent {
                return TmfResponse::TASK_DOES_NOT_EXIST;
            }
            if self.abort_task(id) {
                waiting.push(id);
            }
            return TmfResponse::FUNCTION_COMPLETE;
        }
        // RFC 7143 §11.6.1: a task not (yet) seen whose RefCmdSN lies in the window, before the
        // TMF itself, is considered received and aborted; otherwise it does not exist.
        let r = req.ref_cmd_sn;
        if r.in_window(self.exp_cmd_sn, self.max_cmd_sn) && r.serial_lt(req.cmd_sn) {
            self.place_in_window(r, Slot::Skip);
            self.drain_window();
            TmfResponse::FUNCTION_COMPLETE
        } else {
            TmfResponse::TASK_DOES_NOT_EXIST
        }
    }

    /// Aborts every live task matching `pred` (and, for ABORT TASK SET, issued before the TMF:
    /// `before` is the TMF's CmdSN). Tasks still held by the engine are added to `waiting`.
    fn abort_matching(
        &mut self,
        pred: impl Fn(&super::Task) -> bool,
        waiting: &mut Vec<TaskId>,
        before: Option<rtgt_pdu::Sn>,
    ) {
        for id in self.tasks.live_ids() {
            let Some(t) = self.tasks.get(id) else {
                continue;
            };
            if t.status_sent || t.aborted || !pred(t) {
                continue;
            }
            if let Some(sn) = before {
                if !t.immediate && !t.cmd_sn.serial_lt(sn) && t.phase == Phase::Queued {
                    continue;
                }
            }
            if self.abort_task(id) {
                waiting.push(id);
            }
        }
    }

    /// Aborts this session's tasks on `lun` (every LUN when `None`) because another I_T nexus
    /// reset the logical unit or target, or cleared its task set, or preempted this nexus
    /// (SAM-5 §6.3, §5.6: with TAS=0 such tasks end without a response; the initiator learns
    /// of it from the unit attention). Tasks the engine still holds end when it lets go.
    pub fn abort_for_reset(&mut self, lun: Option<rtgt_pdu::Lun>) {
        let mut waiting = Vec::new();
        self.abort_matching(|t| lun.is_none_or(|l| t.lun == l), &mut waiting, None);
        self.check_tmfs();
        self.check_logout_drain();
    }

    /// Aborts one task: no further PDUs for it, its window position is skipped, outstanding
    /// R2Ts are dropped. Returns whether the engine still holds it (the caller must wait).
    pub(crate) fn abort_task(&mut self, id: TaskId) -> bool {
        let Some(task) = self.tasks.get_mut(id) else {
            return false;
        };
        task.aborted = true;
        task.silent = true;
        task.r2t_count = 0;
        let queued = task.phase == Phase::Queued;
        let cmd_sn = task.cmd_sn;
        let busy = task.engine_busy;
        task.phase = Phase::Finished;
        self.tasks.forget_itt(id);
        if queued {
            self.place_in_window(cmd_sn, Slot::Skip);
        }
        if busy {
            self.events.push_back(SessionEvent::Aborted(id));
        }
        self.maybe_release(id);
        busy
    }

    /// Sends the responses of TMFs whose aborted tasks have all drained.
    pub(crate) fn check_tmfs(&mut self) {
        let mut i = 0;
        while i < self.tmfs.len() {
            let drained = self.tmfs[i]
                .waiting
                .iter()
                .all(|id| self.tasks.get(*id).is_none_or(|t| !t.engine_busy));
            if drained {
                let t = self.tmfs.remove(i);
                let resp = TaskMgmtResponse {
                    response: t.response,
                    itt: t.itt,
                    ..Default::default()
                };
                self.push_pdu(
                    t.conn,
                    PduHeader::TaskMgmtResponse(resp),
                    Payload::None,
                    true,
                );
                if t.close_after {
                    let conns: Vec<ConnId> = (0..self.conns.len() as u16)
                        .map(ConnId)
                        .filter(|c| self.conn(*c).is_some())
                        .collect();
                    for c in conns {
                        if let Some(conn) = self.conn_mut(c) {
                            conn.txq.push_back(super::session::TxItem::Close);
                            conn.state = super::session::ConnState::Closing;
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
    }
}
