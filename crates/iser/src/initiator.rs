//! The initiator side of an iSER connection (RFC 7145 §7.2 "iSCSI/iSER
//! initiator"), for rtgt-client.
//!
//! The initiator owns a registered data area. For each command it binds a
//! type 2 memory window over the command's read buffer (remote write) and
//! over the solicited part of its write buffer (remote read), and advertises
//! the STags and base offsets in the iSER header of the SCSI Command
//! (§7.2.1, §7.2.2). Immediate data rides in the command's message, gathered
//! straight from the data area; unsolicited Data-Out PDUs are not sent.
//!
//! When the SCSI Response arrives the task's STags must be invalid before
//! the buffers are used again (§7.2.4): the one the target invalidated with
//! Send with Invalidate is gone; any other is invalidated locally, and the
//! response is delivered only when that has completed. The same holds for a
//! task ended by ABORT TASK: its STags are invalidated when the task
//! management response arrives. On disconnect every window is deallocated,
//! so no STag of the connection survives it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use rtgt_pdu::negotiation::NegotiatedParams;
use rtgt_pdu::{Itt, Opcode, Pdu, PduHeader, ScsiCommand, TmfFunction};

use crate::conn::{Core, Geometry, Phase, RecvPdu, WrKind, wr_id, wr_index, wr_kind};
use crate::credits::{Direction, Tracker, rejected_pdu};
use crate::error::{IserError, ProtocolError};
use crate::header::{CmPrivateData, Hello, HelloReply, ISER_VERSION, IserHeader, Stag};
use crate::login::{IserLimits, IserParams};
use crate::memory::RegisteredBuffer;
use crate::message::{self, Message};
use crate::verbs::{
    Access, CmEvent, Endpoint, MemoryRegion, MemoryWindow, ProtectionDomain, QueuePair, SendOp,
    SendWr, Verbs, WcStatus, WorkCompletion,
};

/// Settings of an initiator connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitiatorConfig {
    /// The iSER limits this initiator declares.
    pub limits: IserLimits,
    /// Commands outstanding at once (a receive is posted for each response).
    pub queue_depth: u32,
    /// Bytes of registered data area for command buffers.
    pub data_area: usize,
    /// Announce support for Send with Invalidate in the CM request.
    pub send_with_invalidate: bool,
    /// Exchange iSER Hello/HelloReply after the login (§5.1.3; Linux does not).
    pub hello: bool,
    /// iSER-IRD announced in the Hello.
    pub ird: u16,
}

impl Default for InitiatorConfig {
    fn default() -> Self {
        Self {
            limits: IserLimits::default(),
            queue_depth: 32,
            data_area: 4 << 20,
            send_with_invalidate: true,
            hello: false,
            ird: 16,
        }
    }
}

/// The buffers of one command, as ranges of the data area.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandIo {
    /// Where read data is to land (Read STag).
    pub read: Option<Range<usize>>,
    /// Where write data is (Write STag for the part after the immediate data).
    pub write: Option<Range<usize>>,
    /// How many bytes of the write buffer go as immediate data.
    pub immediate: u32,
}

/// What an initiator connection reports.
#[derive(Debug)]
pub enum InitiatorEvent {
    /// The RDMA connection is up; the login may begin.
    Established,
    /// A PDU arrived (a SCSI or task management response only once the
    /// task's STags are invalid).
    Pdu(RecvPdu),
    /// The target answered the iSER Hello.
    HelloReply(HelloReply),
    /// The target disconnected; every STag of the connection is invalid.
    Disconnected,
    /// The connection failed (RFC 7145 §10); every STag is invalid.
    Failed(IserError),
}

#[derive(Debug)]
struct Window {
    index: u32,
    rkey: u32,
    valid: bool,
}

#[derive(Debug)]
struct Task {
    read: Option<Window>,
    write: Option<Window>,
    ranges: [Option<Range<usize>>; 2],
    send_pending: bool,
    invalidations: u32,
    delivery: Option<RecvPdu>,
    /// A task ended by ABORT TASK: released without a delivery of its own.
    aborted: bool,
}

impl Task {
    fn done(&self) -> bool {
        !self.send_pending && self.invalidations == 0
    }
}

/// The initiator side of one iSER connection.
pub struct IserInitiator<V: Verbs> {
    core: Core<V>,
    mws: Vec<Option<V::Mw>>,
    mw_free: Vec<u32>,
    data: RegisteredBuffer<V::Mr>,
    config: InitiatorConfig,
    target_sie: bool,
    params: Option<IserParams>,
    tasks: HashMap<Itt, Task>,
    slot_task: Vec<Option<Itt>>,
    aborts: HashMap<Itt, Itt>,
    /// Task-management responses waiting for the aborted task's windows.
    held: HashMap<Itt, RecvPdu>,
    /// Windows bound for a command that was never sent, with the range each
    /// covers: invalidation is posted, and the range stays reserved until it
    /// has completed.
    abandoned: Vec<(u32, Range<usize>)>,
    events: VecDeque<InitiatorEvent>,
    to_target: Tracker,
    from_target: Tracker,
    failure_reported: bool,
}

impl<V: Verbs> core::fmt::Debug for IserInitiator<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IserInitiator")
            .field("phase", &self.core.phase)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl<V: Verbs> IserInitiator<V> {
    /// Creates the queue pair and data area in `pd`, posts the login receive
    /// and sends the RDMA-CM request to `addr`. [`InitiatorEvent::Established`]
    /// follows from [`poll`](Self::poll).
    pub fn connect(
        verbs: &V,
        addr: SocketAddr,
        pd: Arc<V::Pd>,
        config: InitiatorConfig,
    ) -> Result<Self, IserError> {
        config.limits.validate()?;
        if config.queue_depth == 0 {
            return Err(IserError::Config("queue_depth must be positive"));
        }
        let unexpected = config.limits.max_outstanding_unexpected_pdus;
        let slots = Geometry::slots(config.queue_depth, unexpected)?;
        let geometry = Geometry {
            rx_slots: slots,
            rx_data: config.limits.initiator_recv_data_segment_length.max(8192),
            tx_slots: slots,
            tx_data: config.limits.target_recv_data_segment_length.max(8192),
        };
        let data = RegisteredBuffer::new(
            &*pd,
            config.data_area,
            Access::LOCAL_WRITE | Access::MW_BIND,
        )?;
        let windows = 2 * config.queue_depth;
        let mut mws = Vec::with_capacity(windows as usize);
        for _ in 0..windows {
            mws.push(Some(pd.alloc_mw()?));
        }
        let mut core = Core::new(verbs, Endpoint::Outgoing(addr), pd, geometry, 2 * windows)?;
        core.post_rx(0)?;
        let request = CmPrivateData {
            zero_based_va: false,
            send_with_invalidate: config.send_with_invalidate,
        };
        core.qp.connect(&request.encode())?;
        Ok(Self {
            core,
            mws,
            mw_free: (0..windows).rev().collect(),
            data,
            config,
            target_sie: false,
            params: None,
            tasks: HashMap::with_capacity(config.queue_depth as usize * 2),
            slot_task: vec![None; slots as usize],
            aborts: HashMap::new(),
            held: HashMap::new(),
            abandoned: Vec::new(),
            events: VecDeque::with_capacity(64),
            to_target: Tracker::new(Direction::ToTarget, unexpected),
            from_target: Tracker::new(Direction::ToInitiator, unexpected),
            failure_reported: false,
        })
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.core.phase
    }

    /// The full feature parameters.
    pub fn params(&self) -> Option<&IserParams> {
        self.params.as_ref()
    }

    /// Whether the target will invalidate STags with Send with Invalidate.
    pub fn remote_invalidation(&self) -> bool {
        self.target_sie
    }

    /// Commands in flight.
    pub fn active_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// The STags a task currently advertises (read, write), for tests and
    /// diagnostics.
    pub fn task_stags(&self, itt: Itt) -> (Option<u32>, Option<u32>) {
        self.tasks.get(&itt).map_or((None, None), |t| {
            (
                t.read.as_ref().map(|w| w.rkey),
                t.write.as_ref().map(|w| w.rkey),
            )
        })
    }

    /// The data area's virtual address (what the STags' base offsets are relative to).
    pub fn data_area_addr(&self) -> u64 {
        self.data.mr().addr()
    }

    fn in_flight(&self, r: &Range<usize>) -> bool {
        let overlaps = |x: &Range<usize>| x.start < r.end && r.start < x.end;
        self.tasks
            .values()
            .any(|t| t.ranges.iter().flatten().any(overlaps))
            || self.abandoned.iter().any(|(_, x)| overlaps(x))
    }

    /// Reads part of the data area not used by a command in flight.
    pub fn data(&self, range: Range<usize>) -> Result<&[u8], IserError> {
        if self.in_flight(&range) {
            return Err(IserError::BufferInFlight);
        }
        // SAFETY: no task in flight covers the range, so no memory window is
        // bound over it (windows live only while their task does, and the task
        // leaves the table only after they are invalid; windows of a command
        // that was never sent stay in `abandoned` until their invalidation
        // completes) and no Send gathers from it; the region itself grants no
        // remote access.
        unsafe { self.data.bytes(range.start, range.len()) }.ok_or(IserError::DataRange {
            offset: range.start as u32,
            len: range.len() as u32,
        })
    }

    /// Writes part of the data area not used by a command in flight.
    pub fn data_mut(&mut self, range: Range<usize>) -> Result<&mut [u8], IserError> {
        if self.in_flight(&range) {
            return Err(IserError::BufferInFlight);
        }
        let (start, len) = (range.start, range.len());
        // SAFETY: as in `data`.
        unsafe { self.data.bytes_mut(start, len) }.ok_or(IserError::DataRange {
            offset: start as u32,
            len: len as u32,
        })
    }

    /// The data segment of a received PDU.
    pub fn pdu_data(&self, rx: &RecvPdu) -> &[u8] {
        self.core.pdu_data(rx)
    }

    /// Returns a PDU's receive buffer to the receive queue.
    // Taking the token by value ends it: a buffer cannot be released twice.
    #[allow(clippy::needless_pass_by_value)]
    pub fn release(&mut self, rx: RecvPdu) -> Result<(), IserError> {
        self.core.release(&rx)
    }

    /// Copies a received PDU out and releases its buffer.
    ///
    /// A malformed AHS is a protocol violation: the connection fails (RFC
    /// 7145 §10) and the error is returned (and reported by `poll`).
    pub fn take_pdu(&mut self, rx: RecvPdu) -> Result<Pdu, IserError> {
        let pdu = match self.core.copy_pdu(&rx) {
            Ok(pdu) => pdu,
            Err(e) => {
                let e = IserError::from(e);
                self.report(e.clone());
                return Err(e);
            }
        };
        self.release(rx)?;
        Ok(pdu)
    }

    /// Enters full feature phase after the final Login Response: checks the
    /// login allows iSER, posts the receives, and sends the Hello if configured.
    pub fn enter_full_feature(
        &mut self,
        negotiated: &NegotiatedParams,
    ) -> Result<IserParams, IserError> {
        self.core.check_open()?;
        if self.core.phase != Phase::Login {
            return Err(IserError::WrongPhase("entering full feature phase"));
        }
        let p = match IserParams::from_negotiated(negotiated, &self.config.limits) {
            Ok(p) => p,
            Err(e) => return Err(self.core.fail(e.into())),
        };
        // We send what the target declared (no limit when it declared 0 or
        // nothing) and accept what we declared.
        self.to_target
            .set_limit(p.send_unexpected_pdus.unwrap_or(u32::MAX));
        self.from_target.set_limit(p.recv_unexpected_pdus);
        self.core.geometry.tx_data = self
            .core
            .geometry
            .tx_data
            .min(p.target_recv_data_segment_length);
        self.core.post_rx_range(0..self.core.geometry.rx_slots)?;
        self.core.phase = Phase::FullFeature;
        self.params = Some(p);
        if self.config.hello {
            let hello = Hello {
                max_version: ISER_VERSION,
                min_version: ISER_VERSION,
                ird: self.config.ird,
            };
            self.core.send(
                &IserHeader::default(),
                None,
                &[],
                &hello.encode(),
                &[],
                SendOp::Send,
                0,
            )?;
        }
        Ok(p)
    }

    /// Sends a control-type PDU other than a SCSI Command (Login, Text,
    /// NOP-Out, task management, Logout).
    pub fn send_pdu(&mut self, header: &PduHeader, data: &[u8]) -> Result<(), IserError> {
        self.core.check_open()?;
        let op = header.opcode();
        match self.core.phase {
            Phase::Login if op == Opcode::LOGIN_REQUEST => {
                self.core.send(
                    &IserHeader::default(),
                    Some(header),
                    &[],
                    data,
                    &[],
                    SendOp::Send,
                    0,
                )?;
                return Ok(());
            }
            Phase::FullFeature => {}
            _ => return Err(IserError::WrongPhase("sending this PDU")),
        }
        match header {
            PduHeader::ScsiCommand(_) => {
                return Err(IserError::WrongPhase("a SCSI Command outside send_command"));
            }
            PduHeader::DataOut(_) | PduHeader::SnackRequest(_) | PduHeader::LoginRequest(_) => {
                return Err(ProtocolError::NotAnIserMessage(op).into());
            }
            _ => {}
        }
        if self.to_target.would_exceed(header) {
            return Err(IserError::UnexpectedCredit(self.to_target.limit()));
        }
        self.core.send(
            &IserHeader::default(),
            Some(header),
            &[],
            data,
            &[],
            SendOp::Send,
            0,
        )?;
        let _ = self.to_target.admit(header);
        self.from_target.observe_reply(header);
        if let PduHeader::TaskMgmtRequest(t) = header {
            if t.function == TmfFunction::ABORT_TASK {
                self.aborts.insert(t.itt, t.referenced_task_tag);
            }
        }
        Ok(())
    }

    fn take_window(&mut self) -> Result<u32, IserError> {
        self.mw_free.pop().ok_or(IserError::NoSendResources)
    }

    fn bind(&mut self, range: &Range<usize>, access: Access) -> Result<Window, IserError> {
        let index = self.take_window()?;
        let Some(Some(mw)) = self.mws.get_mut(index as usize) else {
            self.mw_free.push(index);
            return Err(IserError::Closed);
        };
        let r = self.core.qp.bind_mw(
            wr_id(WrKind::Bind, index, 0),
            mw,
            self.data.mr(),
            range.start,
            range.len(),
            access,
            false,
        );
        match r {
            Ok(rkey) => Ok(Window {
                index,
                rkey,
                valid: true,
            }),
            Err(e) => {
                self.mw_free.push(index);
                Err(e.into())
            }
        }
    }

    /// Sends a SCSI Command with its buffers (ranges of the data area).
    pub fn send_command(
        &mut self,
        cmd: &ScsiCommand,
        ahs: &[u8],
        io: &CommandIo,
    ) -> Result<(), IserError> {
        self.core.check_open()?;
        let Some(p) = self.params else {
            return Err(IserError::WrongPhase(
                "a SCSI Command before full feature phase",
            ));
        };
        if !cmd.final_pdu {
            return Err(IserError::Config(
                "unsolicited Data-Out is not sent over iSER by this initiator (set F)",
            ));
        }
        if self.tasks.contains_key(&cmd.itt) {
            return Err(IserError::Config("ITT already in use"));
        }
        let header = PduHeader::ScsiCommand(*cmd);
        if self.to_target.would_exceed(&header) {
            return Err(IserError::UnexpectedCredit(self.to_target.limit()));
        }
        let imm = io.immediate as usize;
        let write_len = io.write.as_ref().map_or(0, Range::len);
        if imm > write_len
            || (imm > 0
                && (!p.immediate_data
                    || imm > p.first_burst_length as usize
                    || imm > p.target_recv_data_segment_length as usize))
        {
            return Err(IserError::SegmentTooLong {
                len: imm,
                limit: p.first_burst_length.min(p.target_recv_data_segment_length),
            });
        }
        for r in [&io.read, &io.write].into_iter().flatten() {
            if r.end > self.data.len() || r.start > r.end {
                return Err(IserError::DataRange {
                    offset: r.start as u32,
                    len: r.len() as u32,
                });
            }
            if self.in_flight(r) {
                return Err(IserError::BufferInFlight);
            }
        }
        let base = self.data.mr().addr();
        let read = match &io.read {
            Some(r) if !r.is_empty() => Some(self.bind(r, Access::REMOTE_WRITE)?),
            _ => None,
        };
        let solicited = io.write.as_ref().map(|w| w.start + imm..w.end);
        let write = match &solicited {
            Some(r) if !r.is_empty() => match self.bind(r, Access::REMOTE_READ) {
                Ok(w) => Some(w),
                Err(e) => {
                    if let (Some(w), Some(r)) = (read, &io.read) {
                        self.invalidate_now(&w, r.clone());
                    }
                    return Err(e);
                }
            },
            _ => None,
        };
        let iser = IserHeader {
            read: read.as_ref().zip(io.read.as_ref()).map(|(w, r)| Stag {
                stag: w.rkey,
                va: base + r.start as u64,
            }),
            write: write.as_ref().zip(solicited.as_ref()).map(|(w, r)| Stag {
                stag: w.rkey,
                va: base + r.start as u64,
            }),
        };
        let extra = match (&io.write, imm) {
            (Some(w), n) if n > 0 => self.data.sge(w.start, n),
            _ => None,
        };
        let sent = self.core.send(
            &iser,
            Some(&header),
            ahs,
            &[],
            extra.as_slice(),
            SendOp::Send,
            0,
        );
        let slot = match sent {
            Ok(s) => s,
            Err(e) => {
                for (w, r) in [(read, io.read.clone()), (write, solicited)] {
                    if let (Some(w), Some(r)) = (w, r) {
                        self.invalidate_now(&w, r);
                    }
                }
                return Err(e);
            }
        };
        if let Some(s) = self.slot_task.get_mut(slot as usize) {
            *s = Some(cmd.itt);
        }
        let _ = self.to_target.admit(&header);
        self.tasks.insert(
            cmd.itt,
            Task {
                read,
                write,
                ranges: [io.read.clone(), io.write.clone()],
                send_pending: true,
                invalidations: 0,
                delivery: None,
                aborted: false,
            },
        );
        Ok(())
    }

    /// Sends a SCSI Command whose iSER header advertises `iser` as given —
    /// STags this connection did not bind, nothing tracked, nothing
    /// invalidated: a hostile initiator, for tests of a target's STag checks
    /// (RFC 7145 §10: a remote access error ends the connection).
    #[cfg(feature = "test-utils")]
    pub fn send_command_raw(
        &mut self,
        cmd: &ScsiCommand,
        iser: &IserHeader,
    ) -> Result<(), IserError> {
        self.core.check_open()?;
        if self.core.phase != Phase::FullFeature {
            return Err(IserError::WrongPhase("a SCSI Command"));
        }
        self.core.send(
            iser,
            Some(&PduHeader::ScsiCommand(*cmd)),
            &[],
            &[],
            &[],
            SendOp::Send,
            0,
        )?;
        Ok(())
    }

    /// Invalidates a window over `range` that was never advertised (error
    /// paths). The range counts as in flight until the invalidation has
    /// completed: the bind and the invalidation are still queued, and in
    /// between the window grants remote access.
    fn invalidate_now(&mut self, w: &Window, range: Range<usize>) {
        if self
            .core
            .qp
            .post_send(&SendWr {
                wr_id: wr_id(WrKind::Invalidate, w.index, 0),
                op: SendOp::LocalInvalidate { rkey: w.rkey },
                sges: &[],
                signaled: true,
            })
            .is_err()
        {
            // The queue pair is gone or full: drop the window itself, which
            // invalidates it, and take a fresh one.
            self.replace_window(w.index);
        } else {
            self.abandoned.push((w.index, range));
        }
    }

    fn replace_window(&mut self, index: u32) {
        if let Some(slot) = self.mws.get_mut(index as usize) {
            *slot = None;
            *slot = self.core.pd.alloc_mw().ok();
            if slot.is_some() {
                self.mw_free.push(index);
            }
        }
    }

    /// Starts ending a task: marks the STag the target invalidated, posts
    /// local invalidation of the others.
    fn end_task(&mut self, itt: Itt, invalidated: Option<u32>) -> Result<(), IserError> {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return Ok(());
        };
        if let Some(rkey) = invalidated {
            let mut found = false;
            for w in [&mut task.read, &mut task.write].into_iter().flatten() {
                if w.rkey == rkey && w.valid {
                    w.valid = false;
                    found = true;
                }
            }
            if !found {
                return Err(ProtocolError::UnknownInvalidation(rkey).into());
            }
        }
        let mut to_invalidate = Vec::with_capacity(2);
        for w in [&mut task.read, &mut task.write].into_iter().flatten() {
            if w.valid {
                w.valid = false;
                to_invalidate.push((w.index, w.rkey));
            }
        }
        task.invalidations += to_invalidate.len() as u32;
        for (index, rkey) in to_invalidate {
            self.core.qp.post_send(&SendWr {
                wr_id: wr_id(WrKind::Invalidate, index, 0),
                op: SendOp::LocalInvalidate { rkey },
                sges: &[],
                signaled: true,
            })?;
        }
        Ok(())
    }

    /// Delivers and forgets a task whose windows are invalid and whose Send completed.
    fn try_finish(&mut self, itt: Itt) {
        let ready = self
            .tasks
            .get(&itt)
            .is_some_and(|t| t.done() && (t.delivery.is_some() || t.aborted));
        if !ready {
            return;
        }
        let Some(task) = self.tasks.remove(&itt) else {
            return;
        };
        for w in [task.read, task.write].into_iter().flatten() {
            self.mw_free.push(w.index);
        }
        if let Some(rx) = task.delivery {
            self.events.push_back(InitiatorEvent::Pdu(rx));
        }
        // A task-management response waiting for this task goes out now.
        let waiting: Vec<Itt> = self
            .aborts
            .iter()
            .filter(|(_, r)| **r == itt)
            .map(|(t, _)| *t)
            .collect();
        for tmf in waiting {
            if let Some(rx) = self.held.remove(&tmf) {
                self.aborts.remove(&tmf);
                self.events.push_back(InitiatorEvent::Pdu(rx));
            }
        }
    }

    /// Disconnects; every window is deallocated.
    pub fn disconnect(&mut self) -> Result<(), IserError> {
        self.close();
        self.core.qp.disconnect()?;
        Ok(())
    }

    fn close(&mut self) {
        self.core.phase = Phase::Closed;
        // Deallocating the windows invalidates every STag of the connection.
        for mw in &mut self.mws {
            *mw = None;
        }
        self.mw_free.clear();
        self.tasks.clear();
        self.held.clear();
        self.abandoned.clear();
    }

    /// The next event, if any. Never blocks; `None` means nothing is
    /// pending now (the completion queue has been drained).
    pub fn poll(&mut self) -> Result<Option<InitiatorEvent>, IserError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        while let Some(ev) = self.core.qp.poll_cm_event()? {
            match ev {
                CmEvent::Established { private_data } => {
                    if self.core.phase == Phase::Connecting {
                        self.target_sie = self.config.send_with_invalidate
                            && CmPrivateData::decode(&private_data).send_with_invalidate;
                        self.core.phase = Phase::Login;
                        self.events.push_back(InitiatorEvent::Established);
                    }
                }
                CmEvent::Rejected { .. } => self.report(IserError::Rejected),
                CmEvent::Unreachable => self.report(IserError::Unreachable),
                CmEvent::Disconnected => {
                    if self.core.phase != Phase::Closed {
                        self.close();
                        self.events.push_back(InitiatorEvent::Disconnected);
                    }
                }
            }
        }
        // Completions can start work whose own completion is the event (a
        // local invalidation before a response is delivered): keep reaping
        // until an event is ready or the queue is empty, so `None` means
        // nothing is pending right now.
        let mut wcs = [WorkCompletion::default(); 16];
        while self.events.is_empty() {
            let n = self.core.poll(&mut wcs)?;
            if n == 0 {
                break;
            }
            for wc in wcs.iter().take(n) {
                if let Err(e) = self.on_completion(wc) {
                    self.report(e);
                }
            }
        }
        Ok(self.events.pop_front())
    }

    fn report(&mut self, e: IserError) {
        let e = self.core.fail(e);
        self.close();
        if !self.failure_reported {
            self.failure_reported = true;
            self.events.push_back(InitiatorEvent::Failed(e));
        }
    }

    fn on_completion(&mut self, wc: &WorkCompletion) -> Result<(), IserError> {
        let index = wr_index(wc.wr_id);
        let kind = wr_kind(wc.wr_id);
        let mut finished = None;
        match kind {
            Some(WrKind::Recv) => self.core.rx_completed(index),
            Some(WrKind::Send) => {
                self.core.tx_completed(index);
                if let Some(itt) = self
                    .slot_task
                    .get_mut(index as usize)
                    .and_then(Option::take)
                {
                    if let Some(t) = self.tasks.get_mut(&itt) {
                        t.send_pending = false;
                    }
                    finished = Some(itt);
                }
            }
            Some(WrKind::Invalidate) => {
                let owner = self.tasks.iter_mut().find_map(|(itt, t)| {
                    let mine = [&t.read, &t.write]
                        .into_iter()
                        .flatten()
                        .any(|w| w.index == index);
                    mine.then(|| {
                        t.invalidations = t.invalidations.saturating_sub(1);
                        *itt
                    })
                });
                if let Some(itt) = owner {
                    finished = Some(itt);
                } else {
                    self.abandoned.retain(|(i, _)| *i != index);
                    if self.core.phase != Phase::Closed {
                        self.mw_free.push(index);
                    }
                }
            }
            _ => {}
        }
        if wc.status != WcStatus::SUCCESS {
            if wc.status == WcStatus::WR_FLUSH_ERR && self.core.phase == Phase::Closed {
                return Ok(());
            }
            return Err(IserError::Completion {
                status: wc.status,
                opcode: wc.opcode,
            });
        }
        if kind == Some(WrKind::Recv) {
            self.on_receive(index, wc.byte_len as usize, wc.invalidated_rkey)?;
        }
        if let Some(itt) = finished {
            self.try_finish(itt);
        }
        Ok(())
    }

    fn on_receive(
        &mut self,
        slot: u32,
        len: usize,
        invalidated: Option<u32>,
    ) -> Result<(), IserError> {
        let msg = self.core.rx_bytes(slot, len);
        let parsed = message::parse(msg)?;
        // What a Reject rejected: its data segment is the rejected BHS.
        let rejected = match &parsed {
            Message::Control {
                header: PduHeader::Reject(_),
                data,
                ..
            } => rejected_pdu(msg.get(data.clone()).unwrap_or(&[])),
            _ => None,
        };
        let (iser, header, ahs, data) = match parsed {
            Message::HelloReply(r) => {
                if !self.config.hello {
                    return Err(ProtocolError::UnexpectedIserOpcode(3).into());
                }
                self.core.post_rx(slot)?;
                if r.reject {
                    return Err(ProtocolError::HelloRejected {
                        max_version: r.max_version,
                    }
                    .into());
                }
                self.events.push_back(InitiatorEvent::HelloReply(r));
                return Ok(());
            }
            Message::Hello(_) => return Err(ProtocolError::UnexpectedIserOpcode(2).into()),
            Message::Control {
                iser,
                header,
                ahs,
                data,
            } => (iser, header, ahs, data),
        };
        let limit = match self.params {
            Some(p) if self.core.phase == Phase::FullFeature => {
                p.initiator_recv_data_segment_length
            }
            _ => rtgt_pdu::LOGIN_SEGMENT_LIMIT,
        };
        if data.len() > limit as usize {
            return Err(ProtocolError::DataSegmentTooLong {
                len: data.len(),
                limit,
            }
            .into());
        }
        match &header {
            PduHeader::NopIn(_)
            | PduHeader::ScsiResponse(_)
            | PduHeader::TaskMgmtResponse(_)
            | PduHeader::LoginResponse(_)
            | PduHeader::TextResponse(_)
            | PduHeader::LogoutResponse(_)
            | PduHeader::AsyncMessage(_)
            | PduHeader::Reject(_) => {}
            other => return Err(ProtocolError::NotAnIserMessage(other.opcode()).into()),
        }
        if invalidated.is_some() && !matches!(header, PduHeader::ScsiResponse(_)) {
            return Err(ProtocolError::UnknownInvalidation(invalidated.unwrap_or(0)).into());
        }
        if self.core.phase == Phase::FullFeature {
            if self.from_target.admit(&header).is_err() {
                return Err(ProtocolError::UnexpectedPduLimit {
                    limit: self.from_target.limit(),
                }
                .into());
            }
            self.to_target.observe_reply(&header);
            if let Some((_, itt)) = rejected {
                self.to_target.observe_reject_itt(itt);
            }
        }
        let rx = RecvPdu {
            slot,
            header,
            iser,
            ahs,
            data,
            len,
            invalidated,
        };
        match &rx.header {
            PduHeader::ScsiResponse(r) if self.tasks.contains_key(&r.itt) => {
                let itt = r.itt;
                self.end_task(itt, invalidated)?;
                if let Some(t) = self.tasks.get_mut(&itt) {
                    t.delivery = Some(rx);
                }
                self.try_finish(itt);
            }
            // A rejected SCSI Command is over (RFC 7143 §11.17): its STags
            // are invalidated like at a response, then the Reject is delivered.
            PduHeader::Reject(_) => match rejected {
                Some((Opcode::SCSI_COMMAND, itt)) if self.tasks.contains_key(&itt) => {
                    self.end_task(itt, None)?;
                    if let Some(t) = self.tasks.get_mut(&itt) {
                        t.delivery = Some(rx);
                    }
                    self.try_finish(itt);
                }
                _ => self.events.push_back(InitiatorEvent::Pdu(rx)),
            },
            PduHeader::ScsiResponse(_) if invalidated.is_some() => {
                return Err(ProtocolError::UnknownInvalidation(invalidated.unwrap_or(0)).into());
            }
            PduHeader::TaskMgmtResponse(t) => {
                let tmf = t.itt;
                match self.aborts.get(&tmf).copied() {
                    Some(reference) if self.tasks.contains_key(&reference) => {
                        if let Some(task) = self.tasks.get_mut(&reference) {
                            task.aborted = true;
                        }
                        self.held.insert(tmf, rx);
                        self.end_task(reference, None)?;
                        self.try_finish(reference);
                    }
                    _ => {
                        self.aborts.remove(&tmf);
                        self.events.push_back(InitiatorEvent::Pdu(rx));
                    }
                }
            }
            _ => self.events.push_back(InitiatorEvent::Pdu(rx)),
        }
        Ok(())
    }

    /// Ends a task locally, without a response of its own: one that a task
    /// management function other than ABORT TASK terminated (ABORT TASK SET,
    /// CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET; RFC 7145 §7.2.4).
    /// Its STags are invalidated; its buffers count as in flight until that
    /// has completed. A task whose response already arrived, or an unknown
    /// ITT, is left alone.
    pub fn abort_local(&mut self, itt: Itt) -> Result<(), IserError> {
        self.core.check_open()?;
        match self.tasks.get_mut(&itt) {
            Some(t) if t.delivery.is_none() => t.aborted = true,
            _ => return Ok(()),
        }
        self.end_task(itt, None)?;
        self.try_finish(itt);
        Ok(())
    }

    /// Whether `rkey` is one of the windows this connection still holds
    /// valid (for tests of STag lifetime).
    pub fn holds_stag(&self, rkey: u32) -> bool {
        self.mws.iter().flatten().any(|mw| mw.rkey() == rkey)
            && self.tasks.values().any(|t| {
                [&t.read, &t.write]
                    .into_iter()
                    .flatten()
                    .any(|w| w.rkey == rkey && w.valid)
            })
    }
}
