//! The initiator's full feature phase (RFC 7143 §3.2.2–§3.2.5, §4.2, §11): one session with
//! its command window and one or more connections (MC/S, §4.2.2), each with its own task
//! table, StatSN tracking, transmit queue and NOP keepalive.
//!
//! * SCSI commands (§11.3) take a CmdSN inside [ExpCmdSN, MaxCmdSN]; write data goes as
//!   immediate data and unsolicited Data-Out per ImmediateData, InitialR2T and
//!   FirstBurstLength (§4.2.5.2, §13.10, §13.11, §13.14), the rest in answer to R2Ts (§11.8)
//!   in Data-Out PDUs no longer than the target's MaxRecvDataSegmentLength (§13.12).
//! * Data-In (§11.7) is checked for DataSN order, buffer offset and overrun before its payload
//!   is placed; status in the last Data-In completes the command (phase collapse).
//! * NOP-In pings from the target are answered (§11.18/§11.19); our own NOP-Out keepalives
//!   detect a dead target.
//! * Task management (§11.5/§11.6), Logout (§11.14/§11.15), Text (§11.10/§11.11, with
//!   continuation) and Asynchronous Messages (§11.9) are handled.
//!
//! Nothing here allocates per IO: task slots and queues are sized when a connection is added.
//!
//! ```
//! use rtgt_pdu::{Lun, PduHeader, ScsiCommand, Sn, TaskAttribute};
//! use rtgt_session::initiator::{
//!     CmdWindow, ConnectionSetup, Direction, Event, ScsiRequest, Session, SessionSetup,
//! };
//! use std::time::Instant;
//!
//! let mut s = Session::new(SessionSetup::new(CmdWindow::new(Sn(1), Sn(1), Sn(32))));
//! let c = s.add_connection(ConnectionSetup::new(0, Sn(1), 8));
//! let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
//! let req = ScsiRequest::new(Lun::ZERO, &read10, Direction::Read(512));
//! let sent = s.submit(c, &req).unwrap();
//! let PduHeader::ScsiCommand(cmd) = PduHeader::decode(&sent.pdu.bhs).unwrap() else { panic!() };
//! assert_eq!(cmd.cmd_sn, Sn(1));
//! assert!(cmd.read && cmd.final_pdu);
//! assert_eq!(cmd.expected_data_transfer_length, 512);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtgt_pdu::{
    AsyncEvent, AsyncMessage, BHS_LEN, BhsLengths, DataIn, Isid, Itt, LogoutReason, Lun, NopIn,
    NopOut, Opcode, PduHeader, R2t, Reject, ScsiCommand, ScsiResponse, SenseSegment, Sn,
    TaskAttribute, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse, TmfFunction,
    TmfResponse, Ttt,
};

use super::error::{ProtocolError, SubmitError};
use super::event::{AsyncNotice, Completion, DataInPlacement, Event, SegmentRange};
use super::task::{Kind, ScsiTask, TaskId, TaskTable};
use super::transmit::{DataOutSeq, OutData, OutPdu, Pending};
use super::window::CmdWindow;
use crate::params::{ConnectionParams, SessionParams, SessionType};

/// Index of a connection within its [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// Data direction and length of a SCSI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// No data transfer.
    None,
    /// Read this many bytes (Data-In).
    Read(u32),
    /// Write this many bytes (Data-Out) from the task's buffer.
    Write(u32),
}

/// A SCSI command to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiRequest<'a> {
    /// Logical unit.
    pub lun: Lun,
    /// The CDB (at most 16 bytes).
    pub cdb: &'a [u8],
    /// Data direction and expected transfer length.
    pub direction: Direction,
    /// Task attribute (SIMPLE by default).
    pub attr: TaskAttribute,
}

impl<'a> ScsiRequest<'a> {
    /// A SIMPLE-attribute request.
    pub const fn new(lun: Lun, cdb: &'a [u8], direction: Direction) -> Self {
        Self {
            lun,
            cdb,
            direction,
            attr: TaskAttribute::SIMPLE,
        }
    }
}

/// A command that was accepted: its task and the SCSI Command PDU to send now. Any unsolicited
/// Data-Out PDUs follow from [`Session::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The task; its slot indexes the caller's buffer.
    pub task: TaskId,
    /// The SCSI Command PDU (with immediate data, if any).
    pub pdu: OutPdu,
}

/// Session-wide state after the leading login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetup {
    /// Negotiated session parameters.
    pub params: SessionParams,
    /// ISID of the session.
    pub isid: Isid,
    /// TSIH the target assigned.
    pub tsih: u16,
    /// Command window from the final Login Response.
    pub window: CmdWindow,
}

impl SessionSetup {
    /// Default (RFC) parameters with the given window; ISID and TSIH zero.
    pub fn new(window: CmdWindow) -> Self {
        Self {
            params: SessionParams::default(),
            isid: Isid::default(),
            tsih: 0,
            window,
        }
    }
}

/// Per-connection state after its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSetup {
    /// Connection ID.
    pub cid: u16,
    /// Negotiated connection parameters (digests, both MaxRecvDataSegmentLengths).
    pub params: ConnectionParams,
    /// StatSN expected next (the final Login Response's StatSN + 1).
    pub exp_stat_sn: Sn,
    /// SCSI task slots (queue depth) of this connection.
    pub queue_depth: u16,
    /// Send a NOP-Out ping after this much silence from the target (`None`: never).
    pub nop_interval: Option<Duration>,
    /// Drop the connection when a ping is not answered within this time.
    pub nop_timeout: Duration,
}

impl ConnectionSetup {
    /// Default parameters, no keepalive.
    pub fn new(cid: u16, exp_stat_sn: Sn, queue_depth: u16) -> Self {
        Self {
            cid,
            params: ConnectionParams::default(),
            exp_stat_sn,
            queue_depth,
            nop_interval: None,
            nop_timeout: Duration::from_secs(10),
        }
    }
}

/// Life cycle of a connection in full feature phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Commands may be sent.
    Active,
    /// A Logout Request is outstanding; no new commands.
    LoggingOut,
    /// Logged out or failed.
    Closed,
}

#[derive(Debug)]
struct Conn {
    cid: u16,
    params: ConnectionParams,
    exp_stat_sn: Sn,
    tasks: TaskTable,
    pending: VecDeque<Pending>,
    events: VecDeque<Event>,
    state: ConnState,
    nop_interval: Option<Duration>,
    nop_timeout: Duration,
    last_rx: Option<Instant>,
    ping: Option<(TaskId, Instant)>,
    text: Vec<u8>,
}

impl Conn {
    #[inline]
    fn note_stat_sn(&mut self, stat_sn: Sn) {
        if stat_sn.serial_ge(self.exp_stat_sn) {
            self.exp_stat_sn = stat_sn.incremented();
        }
    }
}

/// One initiator session in full feature phase.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    isid: Isid,
    tsih: u16,
    window: CmdWindow,
    conns: Vec<Conn>,
}

impl Session {
    /// A session with no connections yet.
    pub fn new(setup: SessionSetup) -> Self {
        Self {
            params: setup.params,
            isid: setup.isid,
            tsih: setup.tsih,
            window: setup.window,
            conns: Vec::new(),
        }
    }

    /// Adds a logged-in connection (the leading one, or one more for MC/S). Task tags stay
    /// unique across at most 64 connections per session.
    pub fn add_connection(&mut self, setup: ConnectionSetup) -> ConnId {
        let tasks = TaskTable::new(setup.queue_depth, self.conns.len());
        let depth = usize::from(tasks.scsi_slots());
        let max_r2t = usize::from(self.params.max_outstanding_r2t.max(1));
        let conn = Conn {
            cid: setup.cid,
            params: setup.params,
            exp_stat_sn: setup.exp_stat_sn,
            tasks,
            pending: VecDeque::with_capacity(depth * (1 + max_r2t) + 32),
            events: VecDeque::with_capacity(depth + 8),
            state: ConnState::Active,
            nop_interval: setup.nop_interval,
            nop_timeout: setup.nop_timeout,
            last_rx: None,
            ping: None,
            text: Vec::new(),
        };
        self.conns.push(conn);
        ConnId(self.conns.len() - 1)
    }

    /// Negotiated session parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// ISID.
    pub fn isid(&self) -> Isid {
        self.isid
    }

    /// TSIH (used to add connections to this session).
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The command window.
    pub fn window(&self) -> &CmdWindow {
        &self.window
    }

    /// Takes in a window update seen outside [`Session::on_pdu`] (e.g. from the Login Response
    /// of a connection added later).
    pub fn update_window(&mut self, exp_cmd_sn: Sn, max_cmd_sn: Sn) {
        self.window.update(exp_cmd_sn, max_cmd_sn);
    }

    /// Number of connections ever added (closed ones keep their index).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn conn_mut(&mut self, c: ConnId) -> Result<&mut Conn, SubmitError> {
        self.conns
            .get_mut(c.0)
            .ok_or(SubmitError::NoConnection(c.0))
    }

    /// Negotiated parameters of a connection.
    pub fn connection_params(&self, c: ConnId) -> Option<&ConnectionParams> {
        self.conns.get(c.0).map(|k| &k.params)
    }

    /// The CID of a connection.
    pub fn cid(&self, c: ConnId) -> Option<u16> {
        self.conns.get(c.0).map(|k| k.cid)
    }

    /// The StatSN the connection expects next (sent as ExpStatSN).
    pub fn exp_stat_sn(&self, c: ConnId) -> Option<Sn> {
        self.conns.get(c.0).map(|k| k.exp_stat_sn)
    }

    /// The connection's life-cycle state.
    pub fn state(&self, c: ConnId) -> Option<ConnState> {
        self.conns.get(c.0).map(|k| k.state)
    }

    /// Outstanding SCSI commands on a connection.
    pub fn outstanding(&self, c: ConnId) -> usize {
        self.conns
            .get(c.0)
            .map_or(0, |k| usize::from(k.tasks.outstanding_scsi()))
    }

    /// Whether [`Session::submit`] would accept a command on `c` now.
    #[inline]
    pub fn can_submit(&self, c: ConnId) -> bool {
        self.window.is_open()
            && self
                .conns
                .get(c.0)
                .is_some_and(|k| k.state == ConnState::Active && k.tasks.has_free_scsi())
    }

    /// Whether our NOP-Out ping on `c` awaits its answer.
    pub fn ping_outstanding(&self, c: ConnId) -> bool {
        self.conns.get(c.0).is_some_and(|k| k.ping.is_some())
    }

    /// Whether a SCSI task is still outstanding.
    pub fn is_outstanding(&self, c: ConnId, task: TaskId) -> bool {
        self.conns.get(c.0).is_some_and(|k| k.tasks.is_live(task))
    }

    /// Starts a SCSI command on connection `c`.
    ///
    /// For writes, the payload is read from the caller's buffer of the returned task's slot:
    /// the immediate data rides in the returned PDU, unsolicited Data-Out and R2T answers come
    /// from [`Session::poll_transmit`].
    pub fn submit(&mut self, c: ConnId, req: &ScsiRequest<'_>) -> Result<Submitted, SubmitError> {
        if self.params.session_type == SessionType::Discovery {
            return Err(SubmitError::DiscoverySession);
        }
        if req.cdb.len() > 16 {
            return Err(SubmitError::CdbTooLong(req.cdb.len()));
        }
        let params = &self.params;
        let conn = self
            .conns
            .get_mut(c.0)
            .ok_or(SubmitError::NoConnection(c.0))?;
        if conn.state != ConnState::Active {
            return Err(SubmitError::NotActive);
        }
        if !conn.tasks.has_free_scsi() {
            return Err(SubmitError::NoFreeSlot);
        }
        let cmd_sn = self.window.take().ok_or(SubmitError::WindowClosed)?;
        let (read, write, len) = match req.direction {
            Direction::None => (false, false, 0),
            Direction::Read(n) => (true, false, n),
            Direction::Write(n) => (false, true, n),
        };
        let Some(task) = conn.tasks.alloc(Kind::Scsi(ScsiTask {
            lun: req.lun,
            read,
            write,
            expected_len: len,
            cmd_sn,
            next_data_sn: 0,
            received: 0,
            next_r2t_sn: 0,
            outstanding_r2t: 0,
            data_done: false,
            completed: false,
        })) else {
            return Err(SubmitError::NoFreeSlot);
        };
        // Unsolicited data (§4.2.5.2): immediate data up to FirstBurstLength and the target's
        // MaxRecvDataSegmentLength; with InitialR2T=No, Data-Out up to FirstBurstLength.
        let (immediate, unsolicited) = if write {
            let first_burst = params.first_burst_length.min(len);
            let immediate = if params.immediate_data {
                first_burst.min(conn.params.max_xmit_data_segment_length)
            } else {
                0
            };
            let unsolicited = if params.initial_r2t {
                immediate
            } else {
                first_burst
            };
            (immediate, unsolicited)
        } else {
            (0, 0)
        };
        let mut cdb = [0u8; 16];
        if let Some(dst) = cdb.get_mut(..req.cdb.len()) {
            dst.copy_from_slice(req.cdb);
        }
        let hdr = ScsiCommand {
            immediate: false,
            final_pdu: unsolicited == immediate,
            read,
            write,
            attr: req.attr,
            lun: req.lun,
            itt: task.itt(),
            expected_data_transfer_length: len,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
            cdb,
        };
        if unsolicited > immediate {
            conn.pending.push_back(Pending::Data(DataOutSeq {
                task,
                lun: req.lun,
                ttt: Ttt::RESERVED,
                offset: immediate,
                end: unsolicited,
                data_sn: 0,
                solicited: false,
            }));
        }
        let data = if immediate > 0 {
            OutData::Task {
                task,
                offset: 0,
                len: immediate,
            }
        } else {
            OutData::None
        };
        Ok(Submitted {
            task,
            pdu: OutPdu {
                bhs: hdr.encode(BhsLengths::data_bounded(immediate)),
                data,
            },
        })
    }

    /// Sends a task management request (immediate, §11.5). `referenced` names the task for
    /// ABORT TASK. Returns the TMF task; its answer is an [`Event::Tmf`].
    pub fn task_management(
        &mut self,
        c: ConnId,
        function: TmfFunction,
        lun: Lun,
        referenced: Option<TaskId>,
    ) -> Result<TaskId, SubmitError> {
        let cmd_sn = self.window.cmd_sn();
        let conn = self.conn_mut(c)?;
        if conn.state != ConnState::Active {
            return Err(SubmitError::NotActive);
        }
        let (lun, ref_itt, ref_cmd_sn) = match referenced {
            Some(r) => match conn.tasks.get_mut(r) {
                Some(Kind::Scsi(t)) => (t.lun, r.itt(), t.cmd_sn),
                _ => return Err(SubmitError::NoSuchTask),
            },
            None => (lun, Itt::RESERVED, Sn(0)),
        };
        let task = conn
            .tasks
            .alloc(Kind::Tmf {
                function,
                lun,
                referenced,
            })
            .ok_or(SubmitError::NoFreeSlot)?;
        let hdr = TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt: task.itt(),
            referenced_task_tag: ref_itt,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: Sn(0),
        };
        conn.pending.push_back(Pending::Pdu(OutPdu {
            bhs: hdr.encode(BhsLengths::ZERO),
            data: OutData::None,
        }));
        Ok(task)
    }

    /// ABORT TASK for an outstanding command.
    pub fn abort_task(&mut self, c: ConnId, task: TaskId) -> Result<TaskId, SubmitError> {
        self.task_management(c, TmfFunction::ABORT_TASK, Lun::ZERO, Some(task))
    }

    /// LOGICAL UNIT RESET.
    pub fn lun_reset(&mut self, c: ConnId, lun: Lun) -> Result<TaskId, SubmitError> {
        self.task_management(c, TmfFunction::LOGICAL_UNIT_RESET, lun, None)
    }

    /// Sends a NOP-Out ping (immediate, ITT valid, §11.18) carrying `data`; the answer is an
    /// [`Event::Pong`].
    pub fn ping(&mut self, c: ConnId, data: Vec<u8>, now: Instant) -> Result<TaskId, SubmitError> {
        let cmd_sn = self.window.cmd_sn();
        let conn = self.conn_mut(c)?;
        if conn.state == ConnState::Closed {
            return Err(SubmitError::NotActive);
        }
        let task = conn
            .tasks
            .alloc(Kind::Ping)
            .ok_or(SubmitError::NoFreeSlot)?;
        let hdr = NopOut {
            immediate: true,
            lun: Lun::ZERO,
            itt: task.itt(),
            ttt: Ttt::RESERVED,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
        };
        let lengths = BhsLengths::data_bounded(data.len() as u32);
        let data = if data.is_empty() {
            OutData::None
        } else {
            OutData::Owned(data)
        };
        conn.pending.push_back(Pending::Pdu(OutPdu {
            bhs: hdr.encode(lengths),
            data,
        }));
        conn.ping = Some((task, now));
        Ok(task)
    }

    /// Sends a Logout Request (immediate, §11.14): `CLOSE_SESSION`, or `CLOSE_CONNECTION` for
    /// this connection. No new commands are accepted on the connection afterwards.
    pub fn logout(&mut self, c: ConnId, reason: LogoutReason) -> Result<TaskId, SubmitError> {
        let cmd_sn = self.window.cmd_sn();
        let conn = self.conn_mut(c)?;
        if conn.state != ConnState::Active {
            return Err(SubmitError::NotActive);
        }
        let task = conn
            .tasks
            .alloc(Kind::Logout)
            .ok_or(SubmitError::NoFreeSlot)?;
        let hdr = rtgt_pdu::LogoutRequest {
            immediate: true,
            reason,
            itt: task.itt(),
            cid: conn.cid,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
        };
        conn.pending.push_back(Pending::Pdu(OutPdu {
            bhs: hdr.encode(BhsLengths::ZERO),
            data: OutData::None,
        }));
        conn.state = ConnState::LoggingOut;
        Ok(task)
    }

    /// Sends a Text Request (§11.10) with `key=value` data (e.g. `SendTargets=All`); the
    /// reassembled answer is an [`Event::Text`]. The data must fit the target's
    /// MaxRecvDataSegmentLength.
    pub fn text(&mut self, c: ConnId, data: Vec<u8>) -> Result<TaskId, SubmitError> {
        let conn = self
            .conns
            .get_mut(c.0)
            .ok_or(SubmitError::NoConnection(c.0))?;
        if conn.state != ConnState::Active {
            return Err(SubmitError::NotActive);
        }
        if data.len() > conn.params.max_xmit_data_segment_length as usize {
            return Err(SubmitError::TextTooLong(data.len()));
        }
        if !conn.tasks.has_free_control() {
            return Err(SubmitError::NoFreeSlot);
        }
        let cmd_sn = self.window.take().ok_or(SubmitError::WindowClosed)?;
        let task = conn
            .tasks
            .alloc(Kind::Text)
            .ok_or(SubmitError::NoFreeSlot)?;
        conn.text.clear();
        let hdr = TextRequest {
            immediate: false,
            final_pdu: true,
            continue_flag: false,
            lun: Lun::ZERO,
            itt: task.itt(),
            ttt: Ttt::RESERVED,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
        };
        let bhs = hdr.encode(BhsLengths::data_bounded(data.len() as u32));
        conn.pending.push_back(Pending::Pdu(OutPdu {
            bhs,
            data: OutData::Owned(data),
        }));
        Ok(task)
    }

    /// The next PDU to send on `c` (queued control PDUs and Data-Out, in order), or `None`.
    #[inline]
    pub fn poll_transmit(&mut self, c: ConnId) -> Option<OutPdu> {
        let conn = self.conns.get_mut(c.0)?;
        loop {
            match conn.pending.front_mut()? {
                Pending::Pdu(_) => {
                    return match conn.pending.pop_front() {
                        Some(Pending::Pdu(p)) => Some(p),
                        _ => None,
                    };
                }
                Pending::Data(seq) => {
                    let task = seq.task;
                    if !conn.tasks.is_live(task) {
                        conn.pending.pop_front();
                        continue;
                    }
                    let (pdu, done) =
                        seq.next_pdu(conn.params.max_xmit_data_segment_length, conn.exp_stat_sn);
                    if done {
                        let solicited = seq.solicited;
                        conn.pending.pop_front();
                        if let (true, Some(Kind::Scsi(t))) = (solicited, conn.tasks.get_mut(task)) {
                            t.outstanding_r2t = t.outstanding_r2t.saturating_sub(1);
                        }
                    }
                    return Some(pdu);
                }
            }
        }
    }

    /// Whether `c` has PDUs waiting in [`Session::poll_transmit`].
    #[inline]
    pub fn has_pending_transmit(&self, c: ConnId) -> bool {
        self.conns.get(c.0).is_some_and(|k| !k.pending.is_empty())
    }

    /// Events queued besides the ones `on_pdu` returned (tasks aborted by a TMF or LU reset).
    #[inline]
    pub fn poll_event(&mut self, c: ConnId) -> Option<Event> {
        self.conns.get_mut(c.0)?.events.pop_front()
    }

    /// Decides where a Data-In payload goes, from its header alone, and advances the task's
    /// reassembly state (§11.7: DataSN order, buffer offset, no data beyond the expected
    /// length). Call before the payload is read, then copy the payload to the task's buffer at
    /// the returned offset. When the placement carries a completion (status in the Data-In),
    /// the task keeps its slot until [`Session::release`] is called after the payload arrived.
    #[inline]
    pub fn on_data_in(
        &mut self,
        c: ConnId,
        h: &DataIn,
        len: u32,
        now: Instant,
    ) -> Result<DataInPlacement, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let Some(conn) = self.conns.get_mut(c.0) else {
            return Err(ProtocolError::UnexpectedPdu(DataIn::OPCODE));
        };
        conn.last_rx = Some(now);
        let unknown = ProtocolError::UnknownTask {
            opcode: DataIn::OPCODE,
            itt: h.itt,
        };
        let (task, _) = conn.tasks.lookup(h.itt).ok_or(unknown)?;
        let Some(Kind::Scsi(t)) = conn.tasks.get_mut(task) else {
            return Err(ProtocolError::WrongTaskKind {
                opcode: DataIn::OPCODE,
                itt: h.itt,
            });
        };
        if !t.read || t.data_done || t.completed {
            return Err(ProtocolError::WrongTaskKind {
                opcode: DataIn::OPCODE,
                itt: h.itt,
            });
        }
        if h.data_sn.0 != t.next_data_sn {
            return Err(ProtocolError::DataSn {
                itt: h.itt,
                expected: t.next_data_sn,
                got: h.data_sn.0,
            });
        }
        if h.buffer_offset != t.received {
            return Err(ProtocolError::DataOffset {
                itt: h.itt,
                expected: t.received,
                got: h.buffer_offset,
            });
        }
        let end = u64::from(h.buffer_offset) + u64::from(len);
        if end > u64::from(t.expected_len) {
            return Err(ProtocolError::DataOverrun {
                itt: h.itt,
                end,
                expected: t.expected_len,
            });
        }
        if h.status.is_some() && !h.final_pdu {
            return Err(ProtocolError::StatusWithoutFinal(h.itt));
        }
        t.received += len;
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        t.data_done = h.final_pdu;
        // With status, the slot stays allocated until the caller has placed the payload and
        // calls `release`: a new command must not take the buffer the bytes are going to.
        t.completed = h.status.is_some();
        let transferred = t.received;
        let completion = match h.status {
            Some(st) => {
                conn.note_stat_sn(st.stat_sn);
                Some(Completion {
                    task,
                    response: rtgt_pdu::ResponseCode::COMMAND_COMPLETED,
                    status: st.status,
                    residual: st.residual,
                    transferred,
                    sense: None,
                })
            }
            None => None,
        };
        Ok(DataInPlacement {
            task,
            offset: h.buffer_offset,
            len,
            completion,
        })
    }

    /// Frees the slot of a read completed by a Data-In with status once its payload has been
    /// placed (see [`Session::on_data_in`]). Returns whether a completed task was released.
    pub fn release(&mut self, c: ConnId, task: TaskId) -> bool {
        let Some(conn) = self.conns.get_mut(c.0) else {
            return false;
        };
        match conn.tasks.get_mut(task) {
            Some(Kind::Scsi(t)) if t.completed => conn.tasks.free(task).is_some(),
            _ => false,
        }
    }

    /// Handles a complete PDU from the target (`data` is its data segment, digests already
    /// checked by the framer). A Data-In yields [`Event::DataIn`]: copy `data` to the task's
    /// buffer at the placement's offset.
    pub fn on_pdu(
        &mut self,
        c: ConnId,
        header: &PduHeader,
        data: &[u8],
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        if let PduHeader::DataIn(h) = header {
            // The whole payload is at hand: the caller copies it before doing anything else,
            // so a completed task's slot can be released at once.
            let p = self.on_data_in(c, h, data.len() as u32, now)?;
            if p.completion.is_some() {
                self.release(c, p.task);
            }
            return Ok(Event::DataIn(p));
        }
        if self.conns.get(c.0).is_none() {
            return Err(ProtocolError::UnexpectedPdu(header.opcode()));
        }
        match header {
            PduHeader::ScsiResponse(h) => self.on_scsi_response(c, h, data, now),
            PduHeader::R2t(h) => self.on_r2t(c, h, now),
            PduHeader::NopIn(h) => self.on_nop_in(c, h, now),
            PduHeader::TaskMgmtResponse(h) => self.on_tmf_response(c, h, now),
            PduHeader::LogoutResponse(h) => {
                self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
                let conn = self.conn_mut_rx(c, now)?;
                conn.note_stat_sn(h.stat_sn);
                let (task, kind) = lookup(conn, h.itt, header.opcode())?;
                if kind != Kind::Logout {
                    return Err(ProtocolError::WrongTaskKind {
                        opcode: header.opcode(),
                        itt: h.itt,
                    });
                }
                conn.tasks.free(task);
                conn.state = ConnState::Closed;
                Ok(Event::Logout {
                    task,
                    response: h.response,
                    time2wait: h.time2wait,
                    time2retain: h.time2retain,
                })
            }
            PduHeader::TextResponse(h) => self.on_text_response(c, h, data, now),
            PduHeader::AsyncMessage(h) => self.on_async(c, h, data, now),
            PduHeader::Reject(h) => self.on_reject(c, h, data, now),
            other => Err(ProtocolError::UnexpectedPdu(other.opcode())),
        }
    }

    fn conn_mut_rx(&mut self, c: ConnId, now: Instant) -> Result<&mut Conn, ProtocolError> {
        let conn = self
            .conns
            .get_mut(c.0)
            .ok_or(ProtocolError::UnexpectedPdu(Opcode::NOP_IN))?;
        conn.last_rx = Some(now);
        Ok(conn)
    }

    fn on_scsi_response(
        &mut self,
        c: ConnId,
        h: &ScsiResponse,
        data: &[u8],
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let conn = self.conn_mut_rx(c, now)?;
        conn.note_stat_sn(h.stat_sn);
        let (task, kind) = lookup(conn, h.itt, ScsiResponse::OPCODE)?;
        if matches!(
            kind,
            Kind::Scsi(ScsiTask {
                completed: true,
                ..
            })
        ) {
            // Status already came in the last Data-In.
            return Err(ProtocolError::UnknownTask {
                opcode: ScsiResponse::OPCODE,
                itt: h.itt,
            });
        }
        let Kind::Scsi(t) = kind else {
            return Err(ProtocolError::WrongTaskKind {
                opcode: ScsiResponse::OPCODE,
                itt: h.itt,
            });
        };
        let seg = SenseSegment::parse(data).map_err(|_| ProtocolError::BadSenseSegment)?;
        let sense = if seg.sense.is_empty() {
            None
        } else {
            Some(SegmentRange {
                offset: 2,
                len: seg.sense.len() as u16,
            })
        };
        conn.tasks.free(task);
        Ok(Event::Complete(Completion {
            task,
            response: h.response,
            status: h.status,
            residual: h.residual,
            transferred: t.received,
            sense,
        }))
    }

    fn on_r2t(&mut self, c: ConnId, h: &R2t, now: Instant) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let max_burst = self.params.max_burst_length;
        let max_r2t = self.params.max_outstanding_r2t.max(1);
        let conn = self.conn_mut_rx(c, now)?;
        let (task, _) = lookup(conn, h.itt, R2t::OPCODE)?;
        let Some(Kind::Scsi(t)) = conn.tasks.get_mut(task) else {
            return Err(ProtocolError::WrongTaskKind {
                opcode: R2t::OPCODE,
                itt: h.itt,
            });
        };
        if !t.write {
            return Err(ProtocolError::WrongTaskKind {
                opcode: R2t::OPCODE,
                itt: h.itt,
            });
        }
        if h.r2t_sn.0 != t.next_r2t_sn {
            return Err(ProtocolError::R2tSn {
                itt: h.itt,
                expected: t.next_r2t_sn,
                got: h.r2t_sn.0,
            });
        }
        let len = h.desired_data_transfer_length;
        let end = u64::from(h.buffer_offset) + u64::from(len);
        if len == 0 || len > max_burst || end > u64::from(t.expected_len) {
            return Err(ProtocolError::R2tRange {
                itt: h.itt,
                offset: h.buffer_offset,
                len,
                expected: t.expected_len,
                max_burst,
            });
        }
        if t.outstanding_r2t >= max_r2t {
            return Err(ProtocolError::TooManyR2t(max_r2t));
        }
        t.next_r2t_sn = t.next_r2t_sn.wrapping_add(1);
        t.outstanding_r2t += 1;
        let lun = t.lun;
        conn.pending.push_back(Pending::Data(DataOutSeq {
            task,
            lun,
            ttt: h.ttt,
            offset: h.buffer_offset,
            end: end as u32,
            data_sn: 0,
            solicited: true,
        }));
        Ok(Event::None)
    }

    fn on_nop_in(&mut self, c: ConnId, h: &NopIn, now: Instant) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let cmd_sn = self.window.cmd_sn();
        let conn = self.conn_mut_rx(c, now)?;
        if h.itt != Itt::RESERVED {
            // The answer to our ping: it carries a StatSN of its own.
            conn.note_stat_sn(h.stat_sn);
            let (task, kind) = lookup(conn, h.itt, NopIn::OPCODE)?;
            if kind != Kind::Ping {
                return Err(ProtocolError::WrongTaskKind {
                    opcode: NopIn::OPCODE,
                    itt: h.itt,
                });
            }
            conn.tasks.free(task);
            let sent_at = match conn.ping {
                Some((p, at)) if p == task => {
                    conn.ping = None;
                    at
                }
                _ => now,
            };
            return Ok(Event::Pong { task, sent_at });
        }
        // A target ping (§11.19): StatSN is not advanced; answer when TTT is valid.
        if h.ttt != Ttt::RESERVED {
            let hdr = NopOut {
                immediate: true,
                lun: h.lun,
                itt: Itt::RESERVED,
                ttt: h.ttt,
                cmd_sn,
                exp_stat_sn: conn.exp_stat_sn,
            };
            conn.pending.push_back(Pending::Pdu(OutPdu {
                bhs: hdr.encode(BhsLengths::ZERO),
                data: OutData::None,
            }));
        }
        Ok(Event::None)
    }

    fn on_tmf_response(
        &mut self,
        c: ConnId,
        h: &TaskMgmtResponse,
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let conn = self.conn_mut_rx(c, now)?;
        conn.note_stat_sn(h.stat_sn);
        let (task, kind) = lookup(conn, h.itt, TaskMgmtResponse::OPCODE)?;
        let Kind::Tmf {
            function,
            lun,
            referenced,
        } = kind
        else {
            return Err(ProtocolError::WrongTaskKind {
                opcode: TaskMgmtResponse::OPCODE,
                itt: h.itt,
            });
        };
        conn.tasks.free(task);
        // Tasks the function terminated get no response of their own (RFC3720 task
        // reporting): report them as aborted.
        let done = matches!(h.response, TmfResponse::FUNCTION_COMPLETE);
        match function {
            TmfFunction::ABORT_TASK if done || h.response == TmfResponse::TASK_DOES_NOT_EXIST => {
                if let Some(r) = referenced {
                    if let Some(Kind::Scsi(_)) = conn.tasks.free(r) {
                        conn.events.push_back(Event::Aborted(r));
                    }
                }
            }
            TmfFunction::ABORT_TASK_SET
            | TmfFunction::CLEAR_TASK_SET
            | TmfFunction::LOGICAL_UNIT_RESET
                if done =>
            {
                self.abort_matching(|t| t.lun == lun);
            }
            TmfFunction::TARGET_WARM_RESET | TmfFunction::TARGET_COLD_RESET if done => {
                self.abort_matching(|_| true);
            }
            _ => {}
        }
        Ok(Event::Tmf {
            task,
            function,
            response: h.response,
        })
    }

    /// Frees every live SCSI task of the session that `pred` selects, queuing `Aborted` events.
    fn abort_matching(&mut self, pred: impl Fn(&ScsiTask) -> bool) {
        for conn in &mut self.conns {
            let mut victims: [Option<TaskId>; 64] = [None; 64];
            loop {
                let mut n = 0;
                for (id, _) in conn
                    .tasks
                    .live_scsi()
                    .filter(|(_, t)| !t.completed && pred(t))
                {
                    let Some(slot) = victims.get_mut(n) else {
                        break;
                    };
                    *slot = Some(id);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                for id in victims.iter_mut().take(n).filter_map(Option::take) {
                    conn.tasks.free(id);
                    conn.events.push_back(Event::Aborted(id));
                }
            }
        }
    }

    fn on_text_response(
        &mut self,
        c: ConnId,
        h: &TextResponse,
        data: &[u8],
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        // A continuation request is a new non-immediate PDU with its own CmdSN.
        let next_cmd_sn = if h.final_pdu {
            None
        } else {
            self.window.take()
        };
        let cmd_sn = next_cmd_sn.unwrap_or(self.window.cmd_sn());
        let conn = self.conn_mut_rx(c, now)?;
        conn.note_stat_sn(h.stat_sn);
        let (task, kind) = lookup(conn, h.itt, TextResponse::OPCODE)?;
        if kind != Kind::Text {
            return Err(ProtocolError::WrongTaskKind {
                opcode: TextResponse::OPCODE,
                itt: h.itt,
            });
        }
        conn.text.extend_from_slice(data);
        if h.final_pdu {
            conn.tasks.free(task);
            let data = std::mem::take(&mut conn.text);
            return Ok(Event::Text { task, data });
        }
        // More to come (§11.11.1): ask for it with an empty request carrying the TTT.
        let hdr = TextRequest {
            immediate: false,
            final_pdu: true,
            continue_flag: false,
            lun: Lun::ZERO,
            itt: task.itt(),
            ttt: h.ttt,
            cmd_sn,
            exp_stat_sn: conn.exp_stat_sn,
        };
        conn.pending.push_back(Pending::Pdu(OutPdu {
            bhs: hdr.encode(BhsLengths::ZERO),
            data: OutData::None,
        }));
        Ok(Event::None)
    }

    fn on_async(
        &mut self,
        c: ConnId,
        h: &AsyncMessage,
        data: &[u8],
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let conn = self.conn_mut_rx(c, now)?;
        conn.note_stat_sn(h.stat_sn);
        let sense = if h.event == AsyncEvent::SCSI_EVENT && !data.is_empty() {
            let seg = SenseSegment::parse(data).map_err(|_| ProtocolError::BadSenseSegment)?;
            (!seg.sense.is_empty()).then_some(SegmentRange {
                offset: 2,
                len: seg.sense.len() as u16,
            })
        } else {
            None
        };
        Ok(Event::Async(AsyncNotice {
            event: h.event,
            lun: h.lun,
            parameter1: h.parameter1,
            parameter2: h.parameter2,
            parameter3: h.parameter3,
            sense,
        }))
    }

    fn on_reject(
        &mut self,
        c: ConnId,
        h: &Reject,
        data: &[u8],
        now: Instant,
    ) -> Result<Event, ProtocolError> {
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let conn = self.conn_mut_rx(c, now)?;
        conn.note_stat_sn(h.stat_sn);
        let rejected: &[u8; BHS_LEN] = data
            .first_chunk::<BHS_LEN>()
            .ok_or(ProtocolError::BadReject(data.len()))?;
        let opcode = Opcode(rejected[0] & 0x3f);
        let itt = Itt(u32::from_be_bytes([
            rejected[16],
            rejected[17],
            rejected[18],
            rejected[19],
        ]));
        // A rejected command, TMF, text, logout or ping will get no other answer (§11.17.1 and
        // §6.3 at ERL 0): free its task. A rejected Data-Out leaves the command to the target.
        let frees = matches!(
            opcode,
            Opcode::SCSI_COMMAND
                | Opcode::TASK_MGMT_REQUEST
                | Opcode::TEXT_REQUEST
                | Opcode::LOGOUT_REQUEST
                | Opcode::NOP_OUT
        );
        let task = if frees && itt != Itt::RESERVED {
            match conn.tasks.lookup(itt) {
                Some((id, _)) => {
                    if let Some(Kind::Logout) = conn.tasks.free(id) {
                        conn.state = ConnState::Active;
                    }
                    if conn.ping.is_some_and(|(p, _)| p == id) {
                        conn.ping = None;
                    }
                    Some(id)
                }
                None => None,
            }
        } else {
            None
        };
        Ok(Event::Rejected {
            reason: h.reason,
            opcode,
            task,
        })
    }

    /// When [`Session::handle_timeout`] wants to run next for `c` (NOP keepalive).
    pub fn poll_timeout(&self, c: ConnId) -> Option<Instant> {
        let conn = self.conns.get(c.0)?;
        if conn.state == ConnState::Closed {
            return None;
        }
        if let Some((_, at)) = conn.ping {
            return Some(at + conn.nop_timeout);
        }
        let interval = conn.nop_interval?;
        conn.last_rx.map(|t| t + interval)
    }

    /// Drives the keepalive: pings after `nop_interval` of silence, fails the connection when
    /// a ping stays unanswered for `nop_timeout`.
    pub fn handle_timeout(&mut self, c: ConnId, now: Instant) -> Result<(), ProtocolError> {
        let Some(conn) = self.conns.get_mut(c.0) else {
            return Ok(());
        };
        if conn.state == ConnState::Closed {
            return Ok(());
        }
        if let Some((_, at)) = conn.ping {
            if now >= at + conn.nop_timeout {
                return Err(ProtocolError::PingTimeout(
                    conn.nop_timeout.as_millis() as u64
                ));
            }
            return Ok(());
        }
        let Some(interval) = conn.nop_interval else {
            return Ok(());
        };
        let last = *conn.last_rx.get_or_insert(now);
        if now >= last + interval {
            // A failure to allocate means a ping is already on its way.
            let _ = self.ping(c, Vec::new(), now);
        }
        Ok(())
    }

    /// Fails every outstanding task of `c` (the connection is gone) and closes it. Returns
    /// the SCSI tasks so the caller can retry or report them; control tasks are dropped.
    pub fn fail_connection(&mut self, c: ConnId) -> Vec<TaskId> {
        let Some(conn) = self.conns.get_mut(c.0) else {
            return Vec::new();
        };
        let all: Vec<(TaskId, Kind)> = conn.tasks.live().collect();
        let mut scsi = Vec::new();
        for (id, kind) in all {
            conn.tasks.free(id);
            if matches!(kind, Kind::Scsi(_)) {
                scsi.push(id);
            }
        }
        conn.pending.clear();
        conn.events.clear();
        conn.ping = None;
        conn.state = ConnState::Closed;
        scsi
    }
}

fn lookup(conn: &Conn, itt: Itt, opcode: Opcode) -> Result<(TaskId, Kind), ProtocolError> {
    conn.tasks
        .lookup(itt)
        .map(|(id, k)| (id, *k))
        .ok_or(ProtocolError::UnknownTask { opcode, itt })
}

/// Index of the CID-bearing connection, for logging.
impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "conn{}", self.0)
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
