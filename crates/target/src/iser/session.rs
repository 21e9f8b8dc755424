//! Full feature phase over iSER (RFC 7145 §7.3 the target's data transfer, RFC 7143 §11 via
//! rtgt-session): received PDUs go to the session with their data placed in the task buffer,
//! the session's transmits become RDMA operations or iSER messages, and RDMA completions come
//! back to the session as the sends (Data-In) and Data-Out (R2T) they stand for.
//!
//! * A Data-In transmit (a range of the task buffer) becomes an RDMA Write; a run of
//!   contiguous Data-In of one task leaves as one write (§7.3.5: Data-In PDUs are never sent
//!   over iSER, so their split is only the session's bookkeeping). The session learns the send
//!   is done from [`TargetEvent::DataSent`](rtgt_iser::TargetEvent::DataSent).
//! * An R2T becomes an RDMA Read into the task buffer (§7.3.6); the completed read is handed
//!   to the session as the R2T's one final Data-Out.
//! * A task that ends without a response (aborted) is ended at the transport too, so its STags
//!   are forgotten; a task management response is held while an aborted task still has an RDMA
//!   operation in flight (§7.3.8: the initiator frees its buffers on that response).

use std::collections::VecDeque;
use std::sync::Arc;

use rtgt_iser::verbs::{MemoryRegion, Verbs};
use rtgt_iser::{IserError, Outbound, RecvPdu, SolicitedData, TaskBuffer, TaskMemory};
use rtgt_pdu::{DataIn, Itt, PduHeader};
use rtgt_scsi::{Command, Nexus};
use rtgt_session::target::{
    ConnId, Payload, Placement, SessionEvent, TargetSession, TaskId, Transmit,
};

use super::reactor::Reactor;
use crate::runtime::TargetRuntime;

/// A session owned by an iSER reactor.
pub(crate) struct Sess<M: MemoryRegion> {
    pub session: TargetSession,
    /// ConnId → connection index.
    pub conns: Vec<Option<usize>>,
    pub slots: Vec<Slot<M>>,
    pub nexus: Nexus,
    pub target: Option<Arc<TargetRuntime>>,
    pub serial: u64,
    pub tsih: u16,
    pub ended: bool,
}

/// The engine's state of one task slot of a session.
pub(crate) struct Slot<M: MemoryRegion> {
    /// The task buffer (registered memory).
    pub buf: Option<TaskBuffer<M>>,
    /// Data-In of commands that also take Data-Out (COMPARE AND WRITE, XCOPY…): not lent to
    /// the transport, copied to `buf` when the command completes.
    pub aux: Vec<u8>,
    pub aux_used: bool,
    /// The SCSI command between prepare and complete.
    pub cmd: Option<Command>,
    pub lun: u16,
    /// The task's ITT and connection, while the transport knows the task.
    pub itt: Option<Itt>,
    pub conn: usize,
    /// Its status has been handed to the transport.
    pub responded: bool,
    /// Data-In transmits whose RDMA Write has not completed.
    pub writes_out: u32,
}

impl<M: MemoryRegion> Default for Slot<M> {
    fn default() -> Self {
        Self {
            buf: None,
            aux: Vec::new(),
            aux_used: false,
            cmd: None,
            lun: 0,
            itt: None,
            conn: usize::MAX,
            responded: false,
            writes_out: 0,
        }
    }
}

/// A buffer of at least `want` bytes in `buf`: the one there if it is large enough and no
/// RDMA operation holds it, else a new one (the old one is kept aside while lent).
pub(crate) fn ensure_buf<V: Verbs>(
    memory: &TaskMemory<V>,
    buf: &mut Option<TaskBuffer<V::Mr>>,
    want: usize,
) -> Option<()> {
    let fits = buf
        .as_ref()
        .is_some_and(|b| b.len() >= want.max(1) && !b.is_lent());
    if !fits {
        match memory.alloc(want) {
            Ok(b) => *buf = Some(b),
            Err(e) => {
                tracing::warn!(error = %e, bytes = want, "iSER: cannot register a task buffer");
                *buf = None;
                return None;
            }
        }
    }
    Some(())
}

/// Tag of an RDMA Write: the task's slot and how many Data-In transmits it carries.
fn write_tag(slot: usize, count: u32) -> u64 {
    (u64::from(count) << 32) | (slot as u64 & 0xffff_ffff)
}

impl<V: Verbs> Reactor<V> {
    /// A PDU in full feature phase: to the session, its data into the task buffer.
    pub(crate) fn on_ffp_pdu(&mut self, idx: usize, sidx: usize, cid: ConnId, rx: RecvPdu) {
        let now = self.now;
        let Self {
            conns,
            sessions,
            memory,
            ..
        } = self;
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some(ctx) = sessions.get_mut(sidx).and_then(Option::as_mut) else {
            let _ = conn.iser.release(rx);
            return;
        };
        let header = rx.header.clone();
        let data_len = u32::try_from(rx.data_len()).unwrap_or(u32::MAX);
        let placement = ctx
            .session
            .begin_pdu(cid, &header, conn.iser.pdu_ahs(&rx), data_len, now);
        match placement {
            Placement::Task { task, offset } => {
                let want = ctx
                    .session
                    .task(task)
                    .map_or(0, |t| t.buffer_len() as usize);
                let placed = ctx.slots.get_mut(task.slot()).and_then(|slot| {
                    ensure_buf(memory, &mut slot.buf, want)?;
                    let dst = slot.buf.as_mut()?.as_mut_slice()?;
                    let data = conn.iser.pdu_data(&rx);
                    let at = offset as usize;
                    dst.get_mut(at..at.checked_add(data.len())?)?
                        .copy_from_slice(data);
                    Some(())
                });
                if placed.is_none() {
                    // No memory for the data: the connection cannot go on consistently.
                    tracing::warn!(conn = idx, "iSER: immediate or unsolicited data not placed");
                    ctx.session.drop_connection(cid);
                }
                ctx.session.end_pdu(cid, &[], now);
            }
            Placement::Collect => ctx.session.end_pdu(cid, conn.iser.pdu_data(&rx), now),
            Placement::Discard => ctx.session.end_pdu(cid, &[], now),
        }
        if let PduHeader::ScsiCommand(cmd) = &header {
            match ctx.session.task_by_itt(cmd.itt) {
                Some(id) => {
                    if let Some(slot) = ctx.slots.get_mut(id.slot()) {
                        slot.itt = Some(cmd.itt);
                        slot.conn = idx;
                        slot.responded = false;
                    }
                }
                // Dropped (outside the window) or rejected: the transport forgets it too.
                None => {
                    conn.iser.abort_task(cmd.itt);
                }
            }
        }
        if let Err(e) = conn.iser.release(rx) {
            tracing::debug!(conn = idx, error = %e, "iSER: receive not reposted");
        }
        self.drive_session(sidx);
    }

    /// An RDMA Read for an R2T completed: its data is in the task buffer; the session takes it
    /// as the R2T's final Data-Out.
    pub(crate) fn on_solicited_data(&mut self, sidx: usize, cid: ConnId, d: &SolicitedData) {
        let now = self.now;
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        let header = PduHeader::DataOut(d.as_data_out());
        match ctx.session.begin_pdu(cid, &header, &[], d.len, now) {
            Placement::Task { offset, .. } if offset != d.buffer_offset => {
                tracing::error!(
                    itt = ?d.itt,
                    offset,
                    read_at = d.buffer_offset,
                    "iSER: solicited data landed elsewhere than the session expects"
                );
            }
            _ => {}
        }
        ctx.session.end_pdu(cid, &[], now);
        self.drive_session(sidx);
    }

    /// An RDMA Write for Data-In completed.
    pub(crate) fn on_data_sent(&mut self, sidx: usize, tag: u64) {
        let slot_idx = (tag & 0xffff_ffff) as usize;
        let count = (tag >> 32) as u32;
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        if let Some(slot) = ctx.slots.get_mut(slot_idx) {
            slot.writes_out = slot.writes_out.saturating_sub(count);
        }
        if let Some(id) = ctx.session.task_in_slot(slot_idx) {
            for _ in 0..count {
                ctx.session.transmit_done(id);
            }
        }
        self.drive_session(sidx);
    }

    /// Runs a session's events and sends what it produced, until nothing is left.
    pub(crate) fn drive_session(&mut self, sidx: usize) {
        for _ in 0..64 {
            self.run_events(sidx);
            let conns: Vec<usize> = match self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                Some(ctx) => collect_transmits(ctx, &mut self.conns),
                None => return,
            };
            for idx in conns {
                self.flush(idx);
            }
            if !self
                .sessions
                .get(sidx)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.session.has_events())
            {
                break;
            }
        }
        if self
            .sessions
            .get(sidx)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.ended)
        {
            self.remove_session(sidx);
        }
    }

    fn run_events(&mut self, sidx: usize) {
        while let Some(ev) = self
            .sessions
            .get_mut(sidx)
            .and_then(Option::as_mut)
            .and_then(|c| c.session.poll_event())
        {
            match ev {
                SessionEvent::Execute(id) => self.scsi_start(sidx, id),
                SessionEvent::DataOutComplete(id) => self.scsi_execute(sidx, id),
                SessionEvent::Aborted(id) => self.scsi_aborted(sidx, id),
                SessionEvent::TaskReleased(id) => self.release_slot(sidx, id),
                SessionEvent::Lu(action) => self.lu_action(sidx, action),
                SessionEvent::CloseConnection(cid) => {
                    let idx = self
                        .sessions
                        .get(sidx)
                        .and_then(Option::as_ref)
                        .and_then(|c| c.conns.get(usize::from(cid.0)).copied().flatten());
                    if let Some(conn) = idx.and_then(|i| self.conns.get_mut(i)?.as_mut()) {
                        conn.close_after_flush = true;
                    }
                }
                SessionEvent::ConnectionRemoved(cid) => {
                    if let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                        if let Some(c) = ctx.conns.get_mut(usize::from(cid.0)) {
                            *c = None;
                        }
                    }
                }
                SessionEvent::SessionEnded => {
                    if let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                        ctx.ended = true;
                    }
                }
            }
        }
    }

    /// The session no longer references the task: the slot is free; a task that ended
    /// without a response (aborted) is ended at the transport as well.
    fn release_slot(&mut self, sidx: usize, id: TaskId) {
        let Self {
            conns, sessions, ..
        } = self;
        let Some(ctx) = sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        if ctx.session.task_in_slot(id.slot()).is_some() {
            // The slot already holds a newer task (a stale release).
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
        if let Some(itt) = slot.itt.take() {
            if !slot.responded {
                if let Some(conn) = conns.get_mut(slot.conn).and_then(Option::as_mut) {
                    conn.iser.abort_task(itt);
                }
            }
        }
        // Returned to the pool (or kept aside until an RDMA operation on it ends).
        slot.buf = None;
        slot.aux = Vec::new();
        slot.aux_used = false;
        slot.responded = false;
        slot.writes_out = 0;
    }

    /// Sends a connection's pending transmits (full feature phase) as far as the transport
    /// takes them. Returns whether anything went out.
    pub(crate) fn flush_ffp(&mut self, idx: usize, sidx: usize) -> bool {
        let Self {
            conns, sessions, ..
        } = self;
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        let Some(ctx) = sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return false;
        };
        let mut any = false;
        while let Some(t) = conn.pending.front() {
            let Ok(header) = PduHeader::decode(&t.bhs) else {
                conn.pending.pop_front();
                continue;
            };
            let (taken, result) = match (&header, &t.payload) {
                (PduHeader::DataIn(h), Payload::Task { task, offset, len }) => {
                    let (task, offset) = (*task, *offset);
                    let (merged, count, end) = merge_data_in(&conn.pending, h, task, offset, *len);
                    let slot_idx = task.slot();
                    let r = match ctx.slots.get(slot_idx).and_then(|s| s.buf.as_ref()) {
                        Some(buf) => conn.iser.send_data_in(
                            &merged,
                            buf,
                            offset as usize,
                            (end - offset) as usize,
                            write_tag(slot_idx, count),
                        ),
                        None => Err(IserError::UnknownTask(h.itt)),
                    };
                    match &r {
                        Ok(()) => {
                            if let Some(slot) = ctx.slots.get_mut(slot_idx) {
                                slot.writes_out += count;
                                if merged.status.is_some() {
                                    slot.responded = true;
                                }
                            }
                        }
                        Err(e) if dropped(e) => {
                            // Never sent, and never will be: the session's send is over.
                            for _ in 0..count {
                                ctx.session.transmit_done(task);
                            }
                        }
                        // Retried later, or left to the connection's end.
                        Err(_) => {}
                    }
                    (count as usize, r)
                }
                (PduHeader::R2t(h), _) => {
                    let r = match ctx.session.task_by_itt(h.itt) {
                        Some(id) => match ctx.slots.get_mut(id.slot()).and_then(|s| s.buf.as_mut())
                        {
                            Some(buf) => conn.iser.send_r2t(
                                h,
                                buf,
                                h.buffer_offset as usize,
                                id.slot() as u64,
                            ),
                            None => Err(IserError::UnknownTask(h.itt)),
                        },
                        // The task was aborted after the R2T was queued.
                        None => Ok(()),
                    };
                    (1, r)
                }
                (PduHeader::TaskMgmtResponse(_), _) if conn.iser.quiescing_tasks() > 0 => {
                    // Held until the aborted tasks' RDMA operations have ended.
                    break;
                }
                (header, payload) => {
                    let data: &[u8] = match payload {
                        Payload::Owned(v) => v,
                        _ => &[],
                    };
                    let r = conn.iser.send(Outbound::Pdu {
                        header,
                        ahs: &[],
                        data,
                    });
                    if let (Ok(()), PduHeader::ScsiResponse(rsp)) = (&r, header) {
                        if let Some(slot) = ctx
                            .slots
                            .iter_mut()
                            .find(|s| s.itt == Some(rsp.itt) && !s.responded && s.conn == idx)
                        {
                            slot.responded = true;
                        }
                    }
                    (1, r)
                }
            };
            match result {
                Ok(()) => {
                    for _ in 0..taken {
                        conn.pending.pop_front();
                    }
                    any = true;
                }
                Err(e) if retry_later(&e) => break,
                Err(e) if e.is_connection_fatal() || e == IserError::Closed => {
                    // The transport reports the failure as an event; the connection closes then.
                    break;
                }
                Err(e) => {
                    tracing::warn!(conn = idx, error = %e, opcode = ?header.opcode(), "iSER: transmit refused");
                    for _ in 0..taken {
                        conn.pending.pop_front();
                    }
                }
            }
        }
        any
    }

    /// A connection of a session is gone: the session loses it; Data-In that never completed
    /// (flushed, or still queued here) count as sent.
    pub(crate) fn connection_gone(
        &mut self,
        sidx: usize,
        cid: ConnId,
        pending: VecDeque<Transmit>,
    ) {
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        for t in pending {
            if let Payload::Task { task, .. } = t.payload {
                ctx.session.transmit_done(task);
            }
        }
        let idx = ctx.conns.get(usize::from(cid.0)).copied().flatten();
        for slot_idx in 0..ctx.slots.len() {
            let Some(slot) = ctx.slots.get_mut(slot_idx) else {
                continue;
            };
            if Some(slot.conn) != idx || slot.writes_out == 0 {
                continue;
            }
            let n = core::mem::take(&mut slot.writes_out);
            slot.itt = None;
            if let Some(id) = ctx.session.task_in_slot(slot_idx) {
                for _ in 0..n {
                    ctx.session.transmit_done(id);
                }
            }
        }
        for slot in &mut ctx.slots {
            if Some(slot.conn) == idx {
                // The transport's state of the task went with the connection.
                slot.itt = None;
            }
        }
        ctx.session.connection_lost(cid);
    }
}

/// Whether a refused transmit is dropped for good (the connection goes on).
fn dropped(e: &IserError) -> bool {
    !retry_later(e) && !e.is_connection_fatal() && *e != IserError::Closed
}

/// Whether a refused send may succeed once completions have come in.
fn retry_later(e: &IserError) -> bool {
    matches!(
        e,
        IserError::NoSendResources | IserError::UnexpectedCredit(_)
    )
}

/// The Data-In at the head of `pending` and the contiguous Data-In of the same task behind it,
/// as one header (the first's offset, the last's DataSN, flags and status); how many transmits
/// it covers and where its data ends.
fn merge_data_in(
    pending: &VecDeque<Transmit>,
    first: &DataIn,
    task: TaskId,
    offset: u32,
    len: u32,
) -> (DataIn, u32, u32) {
    let mut merged = *first;
    let mut count = 1;
    let mut end = offset.saturating_add(len);
    if first.status.is_some() {
        return (merged, count, end);
    }
    for t in pending.iter().skip(1) {
        let Payload::Task {
            task: t2,
            offset: o2,
            len: l2,
        } = t.payload
        else {
            break;
        };
        if t2 != task || o2 != end {
            break;
        }
        let Ok(PduHeader::DataIn(h)) = PduHeader::decode(&t.bhs) else {
            break;
        };
        merged = DataIn {
            buffer_offset: first.buffer_offset,
            ..h
        };
        count += 1;
        end = end.saturating_add(l2);
        if h.status.is_some() {
            break;
        }
    }
    (merged, count, end)
}

/// Moves a session's transmits to its connections' pending queues; returns the connections
/// that got some.
fn collect_transmits<V: Verbs>(
    ctx: &mut Sess<V::Mr>,
    conns: &mut [Option<super::reactor::Conn<V>>],
) -> Vec<usize> {
    let mut touched = Vec::new();
    for (i, idx) in ctx.conns.iter().enumerate() {
        let Some(idx) = *idx else {
            continue;
        };
        let cid = ConnId(u16::try_from(i).unwrap_or(u16::MAX));
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            continue;
        };
        let mut any = conn.close_after_flush;
        while let Some(t) = ctx.session.poll_transmit(cid) {
            conn.pending.push_back(t);
            any = true;
        }
        if any || !conn.pending.is_empty() {
            touched.push(idx);
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_pdu::{BhsLengths, DataInStatus, ScsiStatus, Sn};

    fn data_in(task: TaskId, offset: u32, len: u32, sn: u32, status: bool) -> Transmit {
        let h = DataIn {
            itt: Itt(9),
            data_sn: Sn(sn),
            buffer_offset: offset,
            final_pdu: status,
            status: status.then_some(DataInStatus {
                status: ScsiStatus::GOOD,
                ..Default::default()
            }),
            ..Default::default()
        };
        Transmit {
            bhs: PduHeader::DataIn(h).encode(BhsLengths::data_bounded(len)),
            payload: Payload::Task { task, offset, len },
        }
    }

    #[test]
    fn contiguous_data_in_of_a_task_merge_into_one_write() {
        let task = first_task_id();
        let q: VecDeque<Transmit> = [
            data_in(task, 0, 8192, 0, false),
            data_in(task, 8192, 8192, 1, false),
            data_in(task, 16384, 100, 2, true),
        ]
        .into_iter()
        .collect();
        let PduHeader::DataIn(h) = PduHeader::decode(&q[0].bhs).unwrap() else {
            panic!()
        };
        let (m, count, end) = merge_data_in(&q, &h, task, 0, 8192);
        assert_eq!((count, end), (3, 16484));
        assert_eq!(m.buffer_offset, 0);
        assert_eq!(
            m.data_sn,
            Sn(2),
            "the last DataSN: the response's ExpDataSN follows it"
        );
        assert!(m.status.is_some() && m.final_pdu);
        // A gap stops the run.
        let q: VecDeque<Transmit> = [
            data_in(task, 0, 8192, 0, false),
            data_in(task, 9000, 100, 1, true),
        ]
        .into_iter()
        .collect();
        assert_eq!(merge_data_in(&q, &h, task, 0, 8192).1, 1);
    }

    /// The id of the first task a fresh session allocates (slot 0, generation 1).
    fn first_task_id() -> TaskId {
        let catalog = Arc::new(rtgt_session::target::Catalog {
            targets: vec![rtgt_session::target::TargetEntry {
                name: "iqn.2024-01.org.example:t".into(),
                luns: vec![0],
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut s = TargetSession::new(rtgt_session::target::SessionSetup {
            tsih: 1,
            isid: rtgt_pdu::Isid([0x80, 0, 0, 0, 0, 1]),
            params: rtgt_session::params::SessionParams {
                target_name: "iqn.2024-01.org.example:t".into(),
                ..Default::default()
            },
            catalog,
            cmd_sn: Sn(1),
        });
        let now = std::time::Instant::now();
        let c = s.add_connection(
            0,
            rtgt_session::params::ConnectionParams::default(),
            Sn(1),
            None,
            now,
        );
        let cmd = rtgt_pdu::ScsiCommand {
            final_pdu: true,
            itt: Itt(9),
            cmd_sn: Sn(1),
            ..Default::default()
        };
        s.begin_pdu(c, &PduHeader::ScsiCommand(cmd), &[], 0, now);
        s.end_pdu(c, &[], now);
        s.task_by_itt(Itt(9)).unwrap()
    }
}
