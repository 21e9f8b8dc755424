//! Outgoing PDUs: Data-In split by the initiator's MaxRecvDataSegmentLength with status in the
//! last Data-In when the command ends without sense (phase collapse), SCSI Response with sense
//! and residuals, and the stamping of StatSN/ExpCmdSN/MaxCmdSN (RFC 7143 §4.2.2.2 StatSN,
//! §11.4 SCSI Response, §11.7.2–§11.7.6 Data-In, §13.13 MaxBurstLength sequences).

use rtgt_pdu::{
    BhsLengths, DataIn, DataInStatus, PduHeader, ResponseCode, ScsiResponse, ScsiStatus, Sn,
};

use super::session::{ConnState, TargetSession, TxItem};
use super::task::{Phase, TaskId};
use super::{Completion, ConnId, Payload, SessionEvent, Transmit};

impl TargetSession {
    /// The SCSI layer finished a task (or let go of an aborted one). For a live task the
    /// Data-In (the first `data_in_len` bytes of the task buffer) and status are queued on the
    /// task's connection.
    pub fn complete_task(&mut self, id: TaskId, completion: Completion<'_>) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        task.engine_busy = false;
        if task.phase == Phase::Responding {
            // Already answered (Data-Out error); the engine just let go of it.
            return;
        }
        if task.aborted || task.silent || task.phase == Phase::Finished {
            task.phase = Phase::Finished;
            self.maybe_release(id);
            self.check_tmfs();
            self.check_logout_drain();
            return;
        }
        task.r2t_count = 0;
        task.status = completion.status;
        task.residual = completion.residual;
        task.sense.clear();
        task.sense.extend_from_slice(completion.sense);
        task.data_in_len = completion.data_in_len.min(task.edtl).min(task.buffer_len);
        task.phase = Phase::Responding;
        let conn = task.conn;
        self.push_task(conn, id);
    }

    /// The send of a [`Payload::Task`] transmit has completed (or was abandoned because the
    /// connection closed); the task buffer range is no longer needed for it.
    pub fn transmit_done(&mut self, id: TaskId) {
        if let Some(task) = self.tasks.get_mut(id) {
            task.sends_in_flight = task.sends_in_flight.saturating_sub(1);
            self.maybe_release(id);
        }
    }

    /// The next PDU to send on `conn`, if any.
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Transmit> {
        loop {
            let c = self.conn_mut(conn)?;
            if c.state == ConnState::Closed {
                return None;
            }
            let item = c.txq.pop_front()?;
            match item {
                TxItem::Pdu {
                    header,
                    payload,
                    advance_stat_sn,
                } => {
                    return Some(self.stamp(conn, header, payload, advance_stat_sn));
                }
                TxItem::Task(id) => {
                    if let Some(t) = self.task_pdu(conn, id) {
                        return Some(t);
                    }
                }
                TxItem::Close => {
                    if let Some(c) = self.conn_mut(conn) {
                        c.state = ConnState::Closed;
                        c.txq.clear();
                    }
                    self.events.push_back(SessionEvent::CloseConnection(conn));
                    return None;
                }
            }
        }
    }

    /// Whether `poll_transmit` has anything for `conn`.
    pub fn has_transmit(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .is_some_and(|c| c.state != ConnState::Closed && !c.txq.is_empty())
    }

    /// Fills the sequence numbers of a control PDU and encodes it.
    pub(crate) fn stamp(
        &mut self,
        conn: ConnId,
        mut header: PduHeader,
        payload: Payload,
        advance: bool,
    ) -> Transmit {
        let (exp, max) = (self.exp_cmd_sn, self.current_max_cmd_sn());
        let stat_sn = self.next_stat_sn(conn, advance);
        match &mut header {
            PduHeader::NopIn(h) => (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max),
            PduHeader::ScsiResponse(h) => {
                (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max);
            }
            PduHeader::TaskMgmtResponse(h) => {
                (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max);
            }
            PduHeader::TextResponse(h) => {
                (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max);
            }
            PduHeader::LogoutResponse(h) => {
                (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max);
            }
            PduHeader::R2t(h) => (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max),
            PduHeader::AsyncMessage(h) => {
                (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max);
            }
            PduHeader::Reject(h) => (h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn) = (stat_sn, exp, max),
            PduHeader::DataIn(h) => {
                (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max);
                if let Some(s) = &mut h.status {
                    s.stat_sn = stat_sn;
                }
            }
            _ => {}
        }
        let len = payload.len();
        let bhs = header.encode(BhsLengths::data_bounded(len as u32));
        Transmit { bhs, payload }
    }

    /// StatSN for the next PDU; status-bearing PDUs advance it.
    fn next_stat_sn(&mut self, conn: ConnId, advance: bool) -> Sn {
        let Some(c) = self.conn_mut(conn) else {
            return Sn(0);
        };
        let sn = c.stat_sn;
        if advance {
            c.stat_sn = c.stat_sn.incremented();
        }
        sn
    }

    /// Generates the next Data-In or the SCSI Response of a task.
    fn task_pdu(&mut self, conn: ConnId, id: TaskId) -> Option<Transmit> {
        let max_seg = self
            .conn(conn)?
            .params
            .max_xmit_data_segment_length
            .max(512);
        let burst = self.params.max_burst_length.max(512);
        let task = self.tasks.get_mut(id)?;
        if task.silent || task.phase != Phase::Responding {
            return None;
        }
        let collapse = task.sense.is_empty()
            && matches!(task.status, ScsiStatus::GOOD | ScsiStatus::CONDITION_MET);
        if task.data_in_sent < task.data_in_len {
            let offset = task.data_in_sent;
            let into_burst = offset % burst;
            let len = max_seg
                .min(task.data_in_len - offset)
                .min(burst - into_burst);
            let last = offset + len == task.data_in_len;
            let end_of_burst = last || (offset + len) % burst == 0;
            let with_status = last && collapse;
            let data_sn = Sn(task.data_sn);
            task.data_sn = task.data_sn.wrapping_add(1);
            task.data_in_sent += len;
            task.sends_in_flight += 1;
            let header = DataIn {
                final_pdu: end_of_burst || with_status,
                ack_requested: false,
                lun: task.lun,
                itt: task.itt,
                ttt: rtgt_pdu::Ttt::RESERVED,
                data_sn,
                buffer_offset: offset,
                status: with_status.then_some(DataInStatus {
                    status: task.status,
                    stat_sn: Sn(0),
                    residual: task.residual,
                }),
                ..Default::default()
            };
            if with_status {
                task.status_sent = true;
                task.phase = Phase::Finished;
                self.tasks.forget_itt(id);
            } else if let Some(c) = self.conn_mut(conn) {
                c.txq.push_front(TxItem::Task(id));
            }
            let payload = Payload::Task {
                task: id,
                offset,
                len,
            };
            let t = self.stamp(conn, PduHeader::DataIn(header), payload, with_status);
            return Some(t);
        }
        // A separate SCSI Response: no Data-In, or sense/exception status.
        let exp_data_sn = if task.read {
            task.data_sn
        } else {
            task.next_r2t_sn
        };
        let payload = if task.sense.is_empty() {
            Payload::None
        } else {
            let mut v = Vec::with_capacity(2 + task.sense.len());
            v.extend_from_slice(&(task.sense.len() as u16).to_be_bytes());
            v.extend_from_slice(&task.sense);
            Payload::Owned(v)
        };
        let header = ScsiResponse {
            response: ResponseCode::COMMAND_COMPLETED,
            status: task.status,
            itt: task.itt,
            residual: task.residual,
            exp_data_sn: Sn(exp_data_sn),
            ..Default::default()
        };
        task.status_sent = true;
        task.phase = Phase::Finished;
        self.tasks.forget_itt(id);
        let t = self.stamp(conn, PduHeader::ScsiResponse(header), payload, true);
        self.maybe_release(id);
        Some(t)
    }
}
