//! Write data: immediate data, unsolicited Data-Out and R2T-solicited bursts (RFC 7143 §4.2.5
//! data transfer, §11.7.1 SCSI Data-Out, §11.8 R2T, §13.10 InitialR2T, §13.13 MaxBurstLength,
//! §13.14 FirstBurstLength, §13.17 MaxOutstandingR2T).
//!
//! The session negotiates DataPDUInOrder=Yes and DataSequenceInOrder=Yes (OR semantics let the
//! target insist), so every burst arrives in offset order: a Data-Out PDU is accepted only at
//! the next offset with the next DataSN of its burst. At ErrorRecoveryLevel 0 a sequence
//! violation is a connection failure (§7.1.1, §7.4).

use rtgt_pdu::{DataOut, PduHeader, R2t, Ttt};

use super::session::{Rx, TargetSession};
use super::task::{MAX_R2T_PER_TASK, Phase, R2tState, TaskId};
use super::{ConnId, Placement, SessionEvent};

/// RFC 7143 §10.4.7.2 additional sense codes for Data-Out sequence errors.
const DATA_OFFSET_ERROR: (u8, u8) = (0x4b, 0x05);
const INVALID_TTT: (u8, u8) = (0x4b, 0x01);
const TOO_MUCH_WRITE_DATA: (u8, u8) = (0x4b, 0x02);
const UNEXPECTED_UNSOLICITED: (u8, u8) = (0x0c, 0x0c);

impl TargetSession {
    pub(crate) fn begin_data_out(
        &mut self,
        conn: ConnId,
        d: &DataOut,
        data_len: u32,
    ) -> (Rx, Placement) {
        let Some(id) = self.tasks.by_itt(d.itt) else {
            // A task that was aborted or already answered: its late data is dropped.
            return (Rx::Dropped, Placement::Discard);
        };
        let Some(task) = self.tasks.get(id) else {
            return (Rx::Dropped, Placement::Discard);
        };
        if task.silent || task.data_error.is_some() {
            return (Rx::Dropped, Placement::Discard);
        }
        if !task.write || task.conn != conn {
            return (
                Self::reject_rx(
                    &PduHeader::DataOut(*d),
                    rtgt_pdu::RejectReason::PROTOCOL_ERROR,
                ),
                Placement::Discard,
            );
        }
        let end = u64::from(d.buffer_offset) + u64::from(data_len);
        if d.ttt == Ttt::RESERVED {
            // Unsolicited burst.
            if !task.unsol_pending {
                return self.data_error(id, UNEXPECTED_UNSOLICITED);
            }
            if end > u64::from(task.unsol_limit) {
                return self.data_error(id, TOO_MUCH_WRITE_DATA);
            }
            if d.buffer_offset != task.unsol_next || d.data_sn.0 != task.unsol_data_sn {
                return self.data_error(id, DATA_OFFSET_ERROR);
            }
        } else {
            let Some(r) = task.outstanding_r2ts().iter().find(|r| r.ttt == d.ttt) else {
                return self.data_error(id, INVALID_TTT);
            };
            if end > u64::from(r.offset) + u64::from(r.len) {
                return self.data_error(id, TOO_MUCH_WRITE_DATA);
            }
            if d.buffer_offset != r.offset + r.received || d.data_sn.0 != r.next_data_sn {
                return self.data_error(id, DATA_OFFSET_ERROR);
            }
        }
        let placement = if data_len == 0 {
            Placement::Discard
        } else if end <= u64::from(task.buffer_len) {
            Placement::Task {
                task: id,
                offset: d.buffer_offset,
            }
        } else {
            Placement::Discard
        };
        (
            Rx::DataOut {
                task: id,
                ttt: d.ttt,
                len: data_len,
                final_pdu: d.final_pdu,
            },
            placement,
        )
    }

    /// A Data-Out broke the sequence rules. At ErrorRecoveryLevel 0 there is no recovery
    /// within the command, so the command ends with CHECK CONDITION, ABORTED COMMAND and the
    /// iSCSI-specific additional sense of RFC 7143 §10.4.7.2; the connection stays up and
    /// further Data-Out for the task is discarded.
    fn data_error(&mut self, id: TaskId, code: (u8, u8)) -> (Rx, Placement) {
        self.fail_task_data(id, code);
        (Rx::Dropped, Placement::Discard)
    }

    pub(crate) fn fail_task_data(&mut self, id: TaskId, code: (u8, u8)) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.data_error.is_some() || task.silent {
            return;
        }
        task.data_error = Some(code);
        task.r2t_count = 0;
        task.unsol_pending = false;
        if task.phase == Phase::Collecting {
            self.respond_data_error(id);
        }
    }

    /// Ends a task whose Data-Out failed, once the engine is not holding it.
    pub(crate) fn respond_data_error(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let Some((asc, ascq)) = task.data_error else {
            return;
        };
        let sense = [
            0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
        ];
        task.status = rtgt_pdu::ScsiStatus::CHECK_CONDITION;
        task.residual = rtgt_pdu::Residual::None;
        task.sense.clear();
        task.sense.extend_from_slice(&sense);
        task.data_in_len = 0;
        task.engine_busy = false;
        task.phase = Phase::Responding;
        let conn = task.conn;
        self.push_task(conn, id);
    }

    pub(crate) fn end_data_out(
        &mut self,
        conn: ConnId,
        id: TaskId,
        ttt: Ttt,
        len: u32,
        final_pdu: bool,
    ) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.silent || task.data_error.is_some() {
            return;
        }
        if ttt == Ttt::RESERVED {
            task.unsol_next += len;
            task.unsol_data_sn = task.unsol_data_sn.wrapping_add(1);
            if final_pdu {
                task.unsol_pending = false;
            }
        } else {
            let Some(idx) = task.outstanding_r2ts().iter().position(|r| r.ttt == ttt) else {
                return;
            };
            let r = &mut task.r2ts[idx];
            r.received += len;
            r.next_data_sn = r.next_data_sn.wrapping_add(1);
            task.solicited_received += len;
            let done = r.received >= r.len;
            if final_pdu && !done {
                // F before the burst is complete: the initiator will send no more for it.
                let _ = conn;
                self.fail_task_data(id, DATA_OFFSET_ERROR);
                return;
            }
            if done {
                task.remove_r2t(idx);
            }
        }
        self.issue_r2ts(id);
        self.check_data_complete(id);
    }

    /// The SCSI layer wants `len` bytes of Data-Out for the task (at most its EDTL); the
    /// session solicits what the unsolicited data does not cover and reports
    /// [`SessionEvent::DataOutComplete`] when all of it is in the task buffer.
    pub fn task_wants_data(&mut self, id: TaskId, len: u32) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.aborted || task.silent {
            // Aborted while the engine prepared it: the engine lets go here.
            task.engine_busy = false;
            task.phase = Phase::Finished;
            self.maybe_release(id);
            self.check_tmfs();
            self.check_logout_drain();
            return;
        }
        if task.phase != Phase::Delivered {
            return;
        }
        task.engine_busy = false;
        let want = if task.write {
            len.min(task.edtl).min(task.buffer_len)
        } else {
            0
        };
        task.want = Some(want);
        task.phase = Phase::Collecting;
        if task.data_error.is_some() {
            self.respond_data_error(id);
            return;
        }
        self.issue_r2ts(id);
        self.check_data_complete(id);
    }

    /// Queues R2Ts for the part of the wanted range not covered by unsolicited data, keeping at
    /// most MaxOutstandingR2T outstanding, each at most MaxBurstLength long.
    pub(crate) fn issue_r2ts(&mut self, id: TaskId) {
        let max_out = usize::from(self.params.max_outstanding_r2t).clamp(1, MAX_R2T_PER_TASK);
        let burst = self.params.max_burst_length.max(512);
        loop {
            let Some(task) = self.tasks.get(id) else {
                return;
            };
            let Some(want) = task.want else {
                return;
            };
            if task.phase != Phase::Collecting || task.unsol_pending || task.silent {
                break;
            }
            let next = task.r2t_next.max(task.unsol_next);
            if next >= want || task.r2t_count >= max_out {
                break;
            }
            let len = burst.min(want - next);
            let ttt = self.alloc_ttt();
            let Some(task) = self.tasks.get_mut(id) else {
                return;
            };
            let r2t_sn = task.next_r2t_sn;
            task.next_r2t_sn = task.next_r2t_sn.wrapping_add(1);
            task.r2ts[task.r2t_count] = R2tState {
                ttt,
                offset: next,
                len,
                received: 0,
                next_data_sn: 0,
            };
            task.r2t_count += 1;
            task.r2t_next = next + len;
            let header = R2t {
                lun: task.lun,
                itt: task.itt,
                ttt,
                r2t_sn: rtgt_pdu::Sn(r2t_sn),
                buffer_offset: next,
                desired_data_transfer_length: len,
                ..Default::default()
            };
            let conn = task.conn;
            self.push_pdu(conn, PduHeader::R2t(header), super::Payload::None, false);
        }
    }

    pub(crate) fn check_data_complete(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let Some(want) = task.want else {
            return;
        };
        if task.phase == Phase::Collecting
            && !task.unsol_pending
            && task.r2t_count == 0
            && task.collected() >= want
        {
            task.phase = Phase::Executing;
            task.engine_busy = true;
            self.events.push_back(SessionEvent::DataOutComplete(id));
        }
    }
}
