//! A logged-in target session: its connections, the CmdSN window and ordered delivery, and the
//! receive dispatch of full-feature-phase PDUs (RFC 7143 §4.2.2 command numbering, §4.2.2.1
//! the window and MaxCmdSN, §5.1 connection allegiance, §6.4 NOP keep-alive, §11 PDUs).
//!
//! Data-Out/R2T live in `dataout.rs`, Data-In and responses in `datain.rs`, task management in
//! `tmf.rs`, NOP/Text/Logout/Async in `control.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_pdu::{BhsLengths, Isid, PduError, PduHeader, RejectReason, ScsiCommand, Sn, Ttt};

use super::catalog::Catalog;
use super::task::{Phase, TaskId, TaskTable};
use super::{ConnId, Placement, SessionEvent};
use crate::params::{ConnectionParams, SessionParams, SessionType};

/// Extra task slots, beyond the CmdSN window, for immediate commands.
pub(crate) const IMMEDIATE_RESERVE: u32 = 16;

/// Everything a new session needs, produced by a finished leading login.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    /// The TSIH the session table assigned.
    pub tsih: u16,
    /// The initiator's ISID.
    pub isid: Isid,
    /// Negotiated session-wide parameters (names included).
    pub params: SessionParams,
    /// The target catalog (LUN list, SendTargets answers, defaults).
    pub catalog: Arc<Catalog>,
    /// CmdSN of the leading login: the first command's CmdSN.
    pub cmd_sn: Sn,
}

/// An item waiting in a connection's transmit queue.
#[derive(Debug, Clone)]
pub(crate) enum TxItem {
    /// A control PDU; StatSN/ExpCmdSN/MaxCmdSN are stamped when it is handed out.
    Pdu {
        header: PduHeader,
        payload: super::Payload,
        advance_stat_sn: bool,
    },
    /// The next R2T or Data-In/response PDU(s) of a task, generated when handed out.
    Task(TaskId),
    /// Close the connection once this point of the stream is sent.
    Close,
}

/// What the PDU being received is, kept between `begin_pdu` and `end_pdu`.
#[derive(Debug, Clone)]
pub(crate) enum Rx {
    None,
    /// SCSI Command whose immediate data (if any) goes to the task buffer.
    Command {
        task: TaskId,
        data_len: u32,
    },
    /// SCSI Command that is not accepted (outside the window, rejected); data skipped.
    Dropped,
    /// Data-Out for a task.
    DataOut {
        task: TaskId,
        ttt: Ttt,
        len: u32,
        final_pdu: bool,
    },
    /// A control PDU processed in `end_pdu` with its data.
    Control(PduHeader),
    /// Reject this PDU once its data has been skipped.
    Reject {
        reason: RejectReason,
        header: Box<[u8; rtgt_pdu::BHS_LEN]>,
    },
}

/// Connection life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    Active,
    /// A Logout Response or fatal answer is queued; close after it.
    Closing,
    /// The engine was told to close; waiting for `connection_lost`.
    Closed,
}

/// An outstanding target-initiated NOP-In ping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ping {
    pub ttt: Ttt,
    pub deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub cid: u16,
    pub params: ConnectionParams,
    pub stat_sn: Sn,
    pub txq: VecDeque<TxItem>,
    pub state: ConnState,
    pub last_activity: Instant,
    pub ping: Option<Ping>,
    pub rx: Rx,
    /// Async logout request sent at this time.
    pub logout_requested: Option<Instant>,
    pub text: super::control::TextState,
    /// The local address the initiator connected to (SendTargets answers for wildcard portals).
    pub local_addr: Option<std::net::SocketAddr>,
}

/// An out-of-order non-immediate PDU other than a SCSI command, held until its turn.
#[derive(Debug, Clone)]
pub(crate) struct DeferredPdu {
    pub conn: ConnId,
    pub header: PduHeader,
    pub data: Vec<u8>,
}

/// What sits at a CmdSN position of the window.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Task(TaskId),
    Deferred(Box<DeferredPdu>),
    /// A position consumed without delivery (aborted before its turn).
    Skip,
}

/// A logged-in session (target role).
///
/// See the [module documentation](super) for the engine contract. A session is driven from one
/// thread; all of its connections live on that thread.
#[derive(Debug)]
pub struct TargetSession {
    pub(crate) tsih: u16,
    pub(crate) isid: Isid,
    pub(crate) params: SessionParams,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) exp_cmd_sn: Sn,
    pub(crate) max_cmd_sn: Sn,
    pub(crate) queue_depth: u32,
    pub(crate) max_task_buffer: u32,
    /// Window positions ExpCmdSN+1.. holding early arrivals (index = distance from ExpCmdSN).
    pub(crate) window: VecDeque<Option<Slot>>,
    pub(crate) tasks: TaskTable,
    /// Delivered (CmdSN < ExpCmdSN) non-immediate tasks still alive.
    pub(crate) held: u32,
    pub(crate) immediate_live: u32,
    pub(crate) conns: Vec<Option<Conn>>,
    pub(crate) events: VecDeque<SessionEvent>,
    pub(crate) tmfs: Vec<super::tmf::PendingTmf>,
    pub(crate) pending_logouts: Vec<super::control::PendingLogout>,
    pub(crate) next_ttt: u32,
    pub(crate) nop_interval: Option<Duration>,
    pub(crate) nop_timeout: Duration,
    pub(crate) logging_out: bool,
    pub(crate) ended: bool,
}

impl TargetSession {
    /// Creates a session from a finished leading login. Add the leading connection with
    /// [`TargetSession::add_connection`].
    pub fn new(setup: SessionSetup) -> Self {
        let d = &setup.catalog.defaults;
        let queue_depth = d.queue_depth.clamp(1, super::catalog::MAX_QUEUE_DEPTH);
        let capacity = (queue_depth + IMMEDIATE_RESERVE) as usize;
        let max_task_buffer = d
            .max_task_buffer
            .max(setup.params.first_burst_length)
            .max(setup.params.max_burst_length.min(d.max_task_buffer));
        Self {
            tsih: setup.tsih,
            isid: setup.isid,
            exp_cmd_sn: setup.cmd_sn,
            max_cmd_sn: setup.cmd_sn.add(queue_depth - 1),
            queue_depth,
            max_task_buffer,
            window: VecDeque::with_capacity(queue_depth as usize),
            tasks: TaskTable::new(capacity),
            held: 0,
            immediate_live: 0,
            conns: Vec::new(),
            events: VecDeque::with_capacity(capacity * 2),
            tmfs: Vec::new(),
            pending_logouts: Vec::new(),
            next_ttt: 1,
            nop_interval: d.nop_interval,
            nop_timeout: d.nop_timeout,
            logging_out: false,
            ended: false,
            params: setup.params,
            catalog: setup.catalog,
        }
    }

    /// The session's TSIH.
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The initiator's ISID.
    pub fn isid(&self) -> Isid {
        self.isid
    }

    /// Negotiated session-wide parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// Whether this is a discovery session.
    pub fn is_discovery(&self) -> bool {
        self.params.session_type == SessionType::Discovery
    }

    /// The largest buffer any task of this session asks for.
    pub fn max_task_buffer(&self) -> u32 {
        self.max_task_buffer
    }

    /// Most tasks alive at once (buffer slots an engine should provide).
    pub fn task_capacity(&self) -> usize {
        self.tasks.capacity()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.state != ConnState::Closed)
            .count()
    }

    /// The connection with CID `cid`, if live.
    pub fn connection_by_cid(&self, cid: u16) -> Option<ConnId> {
        self.conns.iter().enumerate().find_map(|(i, c)| {
            c.as_ref()
                .filter(|c| c.cid == cid && c.state != ConnState::Closed)
                .map(|_| ConnId(i as u16))
        })
    }

    /// Whether another connection may join (MaxConnections).
    pub fn can_add_connection(&self) -> bool {
        !self.logging_out
            && !self.ended
            && self.connection_count() < usize::from(self.params.max_connections)
    }

    /// Whether the session has ended (no connections, no tasks).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// ExpCmdSN and MaxCmdSN as they would be advertised now.
    pub fn cmd_window(&mut self) -> (Sn, Sn) {
        (self.exp_cmd_sn, self.current_max_cmd_sn())
    }

    /// Adds a logged-in connection (the leading one, or one joining by TSIH). `stat_sn` is the
    /// StatSN its first full-feature response carries; `local_addr` is the address the
    /// initiator connected to.
    pub fn add_connection(
        &mut self,
        cid: u16,
        params: ConnectionParams,
        stat_sn: Sn,
        local_addr: Option<std::net::SocketAddr>,
        now: Instant,
    ) -> ConnId {
        let conn = Conn {
            cid,
            params,
            stat_sn,
            txq: VecDeque::with_capacity(self.tasks.capacity() * 2),
            state: ConnState::Active,
            last_activity: now,
            ping: None,
            rx: Rx::None,
            logout_requested: None,
            text: super::control::TextState::default(),
            local_addr,
        };
        if let Some(i) = self.conns.iter().position(Option::is_none) {
            self.conns[i] = Some(conn);
            ConnId(i as u16)
        } else {
            self.conns.push(Some(conn));
            ConnId((self.conns.len() - 1) as u16)
        }
    }

    /// The negotiated parameters of a connection.
    pub fn connection_params(&self, conn: ConnId) -> Option<&ConnectionParams> {
        self.conn(conn).map(|c| &c.params)
    }

    /// The connection's CID.
    pub fn cid(&self, conn: ConnId) -> Option<u16> {
        self.conn(conn).map(|c| c.cid)
    }

    /// The live task occupying task slot `slot` (see [`TaskId::slot`]).
    pub fn task_in_slot(&self, slot: usize) -> Option<TaskId> {
        self.tasks.in_slot(slot)
    }

    /// A task, for the engine's SCSI processing.
    pub fn task(&self, id: TaskId) -> Option<&super::Task> {
        self.tasks.get(id)
    }

    /// The live task with Initiator Task Tag `itt` whose status has not been handed out (a
    /// task that was answered or aborted no longer holds its tag). An engine whose transport
    /// keeps per-command state (iSER's STags, RFC 7145 §7.3.1) learns from this whether a
    /// SCSI Command it just handed in became a task.
    pub fn task_by_itt(&self, itt: rtgt_pdu::Itt) -> Option<TaskId> {
        self.tasks.by_itt(itt)
    }

    /// Whether [`TargetSession::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next piece of work for the engine.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(usize::from(id.0)).and_then(Option::as_ref)
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
    }

    pub(crate) fn alloc_ttt(&mut self) -> Ttt {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == u32::MAX {
            self.next_ttt = 1;
        }
        Ttt(t)
    }

    /// MaxCmdSN from the free task slots; never moves backwards.
    pub(crate) fn current_max_cmd_sn(&mut self) -> Sn {
        let free = self.queue_depth.saturating_sub(self.held);
        let computed = self.exp_cmd_sn.add(free).add(u32::MAX); // exp + free - 1
        if computed.serial_gt(self.max_cmd_sn) {
            self.max_cmd_sn = computed;
        }
        self.max_cmd_sn
    }

    // ------------------------------------------------------------------ receive

    /// Hands in the header of a received PDU (digest already verified by the framer) and
    /// learns where its `data_len`-byte data segment must go. Follow with
    /// [`TargetSession::end_pdu`] once the data segment (and its digest) has been received.
    pub fn begin_pdu(
        &mut self,
        conn: ConnId,
        header: &PduHeader,
        ahs: &[u8],
        data_len: u32,
        now: Instant,
    ) -> Placement {
        let Some(c) = self.conn_mut(conn) else {
            return Placement::Discard;
        };
        if c.state != ConnState::Active {
            c.rx = Rx::Dropped;
            return Placement::Discard;
        }
        c.last_activity = now;
        let (rx, placement) = match header {
            PduHeader::ScsiCommand(cmd) => self.begin_command(conn, cmd, ahs, data_len),
            PduHeader::DataOut(d) => self.begin_data_out(conn, d, data_len),
            PduHeader::NopOut(_)
            | PduHeader::TextRequest(_)
            | PduHeader::LogoutRequest(_)
            | PduHeader::TaskMgmtRequest(_) => {
                let p = if data_len > 0 {
                    Placement::Collect
                } else {
                    Placement::Discard
                };
                (Rx::Control(header.clone()), p)
            }
            PduHeader::SnackRequest(_) => (
                Self::reject_rx(header, RejectReason::SNACK_REJECT),
                Placement::Discard,
            ),
            // A login request in full feature phase, or a target-only opcode.
            _ => (
                Self::reject_rx(header, RejectReason::PROTOCOL_ERROR),
                Placement::Discard,
            ),
        };
        if let Some(c) = self.conn_mut(conn) {
            c.rx = rx;
        }
        placement
    }

    pub(crate) fn reject_rx(header: &PduHeader, reason: RejectReason) -> Rx {
        Rx::Reject {
            reason,
            header: Box::new(header.encode(BhsLengths::ZERO)),
        }
    }

    /// Finishes the PDU begun with [`TargetSession::begin_pdu`]. `data` is the collected data
    /// segment when the placement was [`Placement::Collect`] and is ignored otherwise.
    pub fn end_pdu(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        let rx = core::mem::replace(&mut c.rx, Rx::None);
        match rx {
            Rx::None | Rx::Dropped => {}
            Rx::Command { task, data_len } => self.end_command(task, data_len),
            Rx::DataOut {
                task,
                ttt,
                len,
                final_pdu,
            } => {
                self.end_data_out(conn, task, ttt, len, final_pdu);
            }
            Rx::Control(header) => self.end_control(conn, header, data, now),
            Rx::Reject { reason, header } => self.queue_reject(conn, reason, &header[..]),
        }
    }

    /// Reports a framing error on a connection (from the framer). Errors answered with a Reject
    /// keep the connection; the others — and a data digest error, since recovery needs
    /// ErrorRecoveryLevel ≥ 1 — drop it (RFC 7143 §7.8, §6.3).
    pub fn pdu_error(&mut self, conn: ConnId, error: &PduError, header_bytes: &[u8]) {
        if let Some(c) = self.conn_mut(conn) {
            c.rx = Rx::None;
        }
        match error.action() {
            rtgt_pdu::ErrorAction::Reject(reason)
                if !matches!(error, PduError::DataDigest { .. }) =>
            {
                self.queue_reject(conn, reason, header_bytes);
            }
            _ => self.drop_connection(conn),
        }
    }

    /// Queues a Reject PDU carrying the offending header (RFC 7143 §11.17).
    pub(crate) fn queue_reject(&mut self, conn: ConnId, reason: RejectReason, header: &[u8]) {
        let data = header
            .get(..rtgt_pdu::BHS_LEN.min(header.len()))
            .unwrap_or(&[])
            .to_vec();
        let reject = rtgt_pdu::Reject {
            reason,
            ..Default::default()
        };
        self.push_pdu(
            conn,
            PduHeader::Reject(reject),
            super::Payload::Owned(data),
            true,
        );
    }

    pub(crate) fn push_pdu(
        &mut self,
        conn: ConnId,
        header: PduHeader,
        payload: super::Payload,
        advance_stat_sn: bool,
    ) {
        if let Some(c) = self.conn_mut(conn) {
            if c.state != ConnState::Closed {
                c.txq.push_back(TxItem::Pdu {
                    header,
                    payload,
                    advance_stat_sn,
                });
            }
        }
    }

    pub(crate) fn push_task(&mut self, conn: ConnId, task: TaskId) {
        if let Some(c) = self.conn_mut(conn) {
            if c.state != ConnState::Closed {
                c.txq.push_back(TxItem::Task(task));
            }
        }
    }

    // ------------------------------------------------------------------ commands

    fn begin_command(
        &mut self,
        conn: ConnId,
        cmd: &ScsiCommand,
        ahs: &[u8],
        data_len: u32,
    ) -> (Rx, Placement) {
        let header = PduHeader::ScsiCommand(*cmd);
        if self.is_discovery() {
            return (
                Self::reject_rx(&header, RejectReason::PROTOCOL_ERROR),
                Placement::Discard,
            );
        }
        if !cmd.immediate && !cmd.cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn) {
            // RFC 7143 §4.2.2.1: outside the window, silently ignored.
            return (Rx::Dropped, Placement::Discard);
        }
        if !cmd.immediate && self.window_slot_taken(cmd.cmd_sn) {
            return (Rx::Dropped, Placement::Discard);
        }
        if self.tasks.by_itt(cmd.itt).is_some() {
            return (
                Self::reject_rx(&header, RejectReason::TASK_IN_PROGRESS),
                Placement::Discard,
            );
        }
        let cdb = match cmd.full_cdb(ahs) {
            Ok(c) => c,
            Err(e) => {
                let reason = e.reject_reason().unwrap_or(RejectReason::INVALID_PDU_FIELD);
                return (Self::reject_rx(&header, reason), Placement::Discard);
            }
        };
        let p = &self.params;
        // Immediate data rules (RFC 7143 §13.11, §13.14).
        let unsol_cap = if p.initial_r2t {
            data_len
        } else {
            p.first_burst_length.min(cmd.expected_data_transfer_length)
        };
        if data_len > 0
            && (!cmd.write
                || !p.immediate_data
                || data_len > p.first_burst_length
                || data_len > cmd.expected_data_transfer_length)
        {
            return (
                Self::reject_rx(&header, RejectReason::PROTOCOL_ERROR),
                Placement::Discard,
            );
        }
        if cmd.immediate && self.immediate_live >= IMMEDIATE_RESERVE {
            return (
                Self::reject_rx(&header, RejectReason::IMMEDIATE_COMMAND_REJECT),
                Placement::Discard,
            );
        }
        let unsol_follows = cmd.write && !cmd.final_pdu && !p.initial_r2t;
        let max_task_buffer = self.max_task_buffer;
        let Some(task) = self.tasks.alloc(cmd.itt) else {
            // The window guarantees a slot for in-window commands; only a flood of immediate
            // commands gets here.
            return (
                Self::reject_rx(&header, RejectReason::IMMEDIATE_COMMAND_REJECT),
                Placement::Discard,
            );
        };
        task.conn = conn;
        task.lun = cmd.lun;
        task.cmd_sn = cmd.cmd_sn;
        task.immediate = cmd.immediate;
        task.cdb = Some(cdb);
        task.attr = cmd.attr;
        task.read = cmd.read;
        task.write = cmd.write;
        task.edtl = cmd.expected_data_transfer_length;
        task.buffer_len = if cmd.read || cmd.write {
            cmd.expected_data_transfer_length.min(max_task_buffer)
        } else {
            0
        };
        task.phase = Phase::Queued;
        task.unsol_pending = unsol_follows;
        task.unsol_limit = unsol_cap.max(data_len).min(task.buffer_len);
        task.unsol_next = 0;
        let id = task.id;
        if cmd.immediate {
            self.immediate_live += 1;
        }
        let placement = if data_len > 0 {
            Placement::Task {
                task: id,
                offset: 0,
            }
        } else {
            Placement::Discard
        };
        (Rx::Command { task: id, data_len }, placement)
    }

    fn end_command(&mut self, id: TaskId, data_len: u32) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        task.unsol_next = data_len;
        task.unsol_data_sn = 0;
        if task.immediate {
            self.deliver(id);
            return;
        }
        let cmd_sn = task.cmd_sn;
        if cmd_sn == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.incremented();
            task.held = true;
            self.held += 1;
            self.deliver(id);
            self.shift_window();
            self.drain_window();
        } else {
            self.place_in_window(cmd_sn, Slot::Task(id));
        }
    }

    /// Hands a task to the engine.
    pub(crate) fn deliver(&mut self, id: TaskId) {
        if let Some(task) = self.tasks.get_mut(id) {
            if task.aborted {
                task.phase = Phase::Finished;
                self.maybe_release(id);
                return;
            }
            task.phase = Phase::Delivered;
            task.engine_busy = true;
            self.events.push_back(SessionEvent::Execute(id));
        }
    }

    fn window_index(&self, cmd_sn: Sn) -> Option<usize> {
        let d = self.exp_cmd_sn.distance_to(cmd_sn)?;
        usize::try_from(d).ok()
    }

    fn window_slot_taken(&self, cmd_sn: Sn) -> bool {
        self.window_index(cmd_sn)
            .and_then(|i| self.window.get(i))
            .is_some_and(Option::is_some)
    }

    pub(crate) fn place_in_window(&mut self, cmd_sn: Sn, slot: Slot) {
        let Some(i) = self.window_index(cmd_sn) else {
            return;
        };
        while self.window.len() <= i {
            self.window.push_back(None);
        }
        if let Some(s) = self.window.get_mut(i) {
            *s = Some(slot);
        }
    }

    /// Drops the position of ExpCmdSN - 1 after ExpCmdSN advanced past an in-order arrival.
    fn shift_window(&mut self) {
        self.window.pop_front();
    }

    /// Delivers early arrivals whose turn has come.
    pub(crate) fn drain_window(&mut self) {
        while let Some(Some(_)) = self.window.front() {
            let Some(Some(slot)) = self.window.pop_front() else {
                break;
            };
            self.exp_cmd_sn = self.exp_cmd_sn.incremented();
            match slot {
                Slot::Task(id) => {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.held = true;
                        self.held += 1;
                        self.deliver(id);
                    }
                }
                Slot::Deferred(d) => {
                    let DeferredPdu { conn, header, data } = *d;
                    self.process_control(conn, header, &data, None);
                }
                Slot::Skip => {}
            }
        }
    }

    /// Releases a task once nothing references it any more.
    pub(crate) fn maybe_release(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.phase != Phase::Finished || task.engine_busy || task.sends_in_flight > 0 {
            return;
        }
        if task.immediate {
            self.immediate_live = self.immediate_live.saturating_sub(1);
        } else if task.held {
            self.held = self.held.saturating_sub(1);
        }
        self.tasks.release(id);
        self.events.push_back(SessionEvent::TaskReleased(id));
        self.check_tmfs();
        self.check_logout_drain();
        self.check_ended();
    }

    // ------------------------------------------------------------------ connections

    /// Drops a connection at once (fatal protocol error, dead peer): its tasks are aborted
    /// (ErrorRecoveryLevel 0 has no task reassignment) and the engine is told to close it.
    pub fn drop_connection(&mut self, conn: ConnId) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        if c.state == ConnState::Closed {
            return;
        }
        c.state = ConnState::Closed;
        c.txq.clear();
        c.ping = None;
        self.events.push_back(SessionEvent::CloseConnection(conn));
        self.abort_connection_tasks(conn);
    }

    /// The engine closed the connection (or it failed). Call once per connection; its tasks are
    /// aborted and the session ends when no connection remains.
    pub fn connection_lost(&mut self, conn: ConnId) {
        if self.conn(conn).is_none() {
            return;
        }
        if let Some(c) = self.conn_mut(conn) {
            c.state = ConnState::Closed;
            c.txq.clear();
        }
        self.abort_connection_tasks(conn);
        if let Some(slot) = self.conns.get_mut(usize::from(conn.0)) {
            *slot = None;
        }
        self.events.push_back(SessionEvent::ConnectionRemoved(conn));
        self.check_ended();
    }

    fn abort_connection_tasks(&mut self, conn: ConnId) {
        for id in self.tasks.live_ids() {
            if self.tasks.get(id).is_some_and(|t| t.conn == conn) {
                self.abort_task(id);
            }
        }
        self.check_tmfs();
        self.check_logout_drain();
    }

    pub(crate) fn check_ended(&mut self) {
        if self.ended {
            return;
        }
        let no_conns = self.conns.iter().all(Option::is_none);
        if no_conns && self.tasks.live_count() == 0 {
            self.ended = true;
            self.events.push_back(SessionEvent::SessionEnded);
        }
    }

    /// Ends the session from outside (reinstatement by a new login, target shutdown): every
    /// connection is dropped and every task aborted.
    pub fn terminate(&mut self) {
        let ids: Vec<ConnId> = (0..self.conns.len() as u16).map(ConnId).collect();
        for c in ids {
            self.drop_connection(c);
        }
    }

    // ------------------------------------------------------------------ timers

    /// When [`TargetSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for c in self.conns.iter().flatten() {
            if c.state != ConnState::Active {
                continue;
            }
            if let Some(p) = c.ping {
                consider(p.deadline);
            } else if let Some(iv) = self.nop_interval {
                consider(c.last_activity + iv);
            }
            if let Some(t) = c.logout_requested {
                consider(t + self.logout_grace());
            }
        }
        next
    }

    pub(crate) fn logout_grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.params.default_time2wait).max(2) + 3)
    }

    /// Runs due timers: NOP-In pings on idle connections, dropping connections whose ping
    /// went unanswered (RFC 7143 §6.4 dead-peer detection), and connections that ignored an
    /// asynchronous logout request.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let conn = ConnId(i as u16);
            let Some(c) = self.conn(conn) else {
                continue;
            };
            if c.state != ConnState::Active {
                continue;
            }
            if c.logout_requested
                .is_some_and(|t| now >= t + self.logout_grace())
            {
                self.drop_connection(conn);
                continue;
            }
            match c.ping {
                Some(p) if now >= p.deadline => self.drop_connection(conn),
                Some(_) => {}
                None => {
                    if let Some(iv) = self.nop_interval {
                        if now >= c.last_activity + iv {
                            self.send_ping(conn, now);
                        }
                    }
                }
            }
        }
    }
}
