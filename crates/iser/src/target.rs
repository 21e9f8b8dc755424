//! The target side of an iSER connection (RFC 7145 §7.3 "iSCSI/iSER
//! target"): it turns the iSCSI PDUs of the session layer into RDMA work and
//! received iSER messages into PDUs.
//!
//! * Login PDUs travel as iSER messages (§5.1, iSER-assisted mode); one
//!   receive buffer is posted while the login runs, the full set when
//!   [`IserTarget::enter_full_feature`] is called (before the final Login
//!   Response goes out, so the initiator's first command finds a receive).
//! * A SCSI Command's iSER header carries the initiator's Read and Write
//!   STags (§7.3.1, §7.3.2); the task keeps them until its SCSI Response.
//! * Data-In becomes an RDMA Write to the Read STag at Read Base Offset +
//!   Buffer Offset (§7.3.5); a Data-In carrying status is followed by a
//!   SCSI Response (iSER never sends Data-In PDUs).
//! * An R2T becomes an RDMA Read from the Write STag of the Desired Data
//!   Transfer Length at Write Base Offset + (Buffer Offset − the unsolicited
//!   length) (§7.3.6); its completion is reported as
//!   [`TargetEvent::SolicitedData`], which the session treats as the final
//!   Data-Out of the R2T (see [`SolicitedData::as_data_out`]).
//! * The SCSI Response goes out as Send with Invalidate of the task's STag
//!   when the initiator allows it (§7.3.4, CM private data), which ends the
//!   initiator's exposure of its buffer; the task and its STags are
//!   forgotten here at the same moment.
//! * Other PDUs (NOP-In, Text, Logout, TMF responses, Reject, Async) are
//!   plain Sends (§7.3.7), counted against the initiator's
//!   MaxOutstandingUnexpectedPDUs where they are unexpected (§6.7).
//! * An RDMA error (e.g. the initiator advertised a bad STag: remote access
//!   error) or a protocol violation fails the connection (§10).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rtgt_pdu::negotiation::NegotiatedParams;
use rtgt_pdu::{
    Ahs, DataIn, DataOut, Itt, Lun, Opcode, Pdu, PduHeader, R2t, ResponseCode, ScsiCommand,
    ScsiResponse, Sn, Ttt,
};

use crate::conn::{
    Core, Geometry, MAX_SLOTS, Phase, RecvPdu, WrKind, wr_aux, wr_id, wr_index, wr_kind,
};
use crate::credits::{Direction, Tracker};
use crate::error::{IserError, ProtocolError};
use crate::header::{CmPrivateData, HelloReply, IserHeader, Stag};
use crate::login::{IserLimits, IserParams};
use crate::message::{self, Message};
use crate::taskbuf::{Lease, TaskBuffer};
use crate::verbs::{
    CmEvent, ConnectRequest, Endpoint, QueuePair, RemoteAddr, SendOp, SendWr, Sge, Verbs, WcOpcode,
    WcStatus, WorkCompletion,
};

/// Settings of a target connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetConfig {
    /// The iSER limits this target declares.
    pub limits: IserLimits,
    /// Commands the session admits at once (its CmdSN window); a receive
    /// buffer is posted for each.
    pub queue_depth: u32,
    /// Use Send with Invalidate when the initiator supports it.
    pub send_with_invalidate: bool,
    /// RDMA Reads and Writes in flight at once.
    pub max_rdma_ops: u32,
    /// iSER-ORD announced in a HelloReply.
    pub ord: u16,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            limits: IserLimits::default(),
            queue_depth: 64,
            send_with_invalidate: true,
            max_rdma_ops: 128,
            ord: 16,
        }
    }
}

/// Solicited write data that an RDMA Read placed in the R2T's sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolicitedData {
    /// The task.
    pub itt: Itt,
    /// The R2T's TTT.
    pub ttt: Ttt,
    /// The task's LUN.
    pub lun: Lun,
    /// The R2T's buffer offset.
    pub buffer_offset: u32,
    /// Bytes placed.
    pub len: u32,
    /// The initiator's last ExpStatSN seen on this connection.
    pub exp_stat_sn: Sn,
    /// The tag given to [`IserTarget::send_r2t`] (0 for [`Outbound::R2t`]).
    pub tag: u64,
}

impl SolicitedData {
    /// The Data-Out a TCP connection would have delivered for the whole
    /// R2T (final, DataSN 0): lets the session run its R2T bookkeeping
    /// unchanged; the data is already in the sink the R2T named.
    pub fn as_data_out(&self) -> DataOut {
        DataOut {
            final_pdu: true,
            lun: self.lun,
            itt: self.itt,
            ttt: self.ttt,
            exp_stat_sn: self.exp_stat_sn,
            data_sn: Sn(0),
            buffer_offset: self.buffer_offset,
        }
    }
}

/// What a target connection reports.
#[derive(Debug)]
pub enum TargetEvent {
    /// The RDMA connection is up; the login may begin.
    Established,
    /// An iSCSI PDU arrived.
    Pdu(RecvPdu),
    /// An RDMA Read for an R2T completed.
    SolicitedData(SolicitedData),
    /// An RDMA Write for a Data-In completed: its source buffer is free.
    DataSent {
        /// The task.
        itt: Itt,
        /// The Data-In's buffer offset.
        buffer_offset: u32,
        /// Bytes written.
        len: u32,
        /// The tag given to [`IserTarget::send_data_in`] (0 for [`Outbound::DataIn`]).
        tag: u64,
    },
    /// An aborted task's last RDMA operation finished: the task management
    /// response may be sent.
    TaskQuiesced(Itt),
    /// The peer disconnected. RDMA operations still outstanding are flushed
    /// without events: see [`IserTarget::rdma_ops_in_flight`].
    Disconnected,
    /// The connection failed (RFC 7145 §10). RDMA operations still
    /// outstanding are flushed without events: see
    /// [`IserTarget::rdma_ops_in_flight`].
    Failed(IserError),
}

/// What the session asks the transport to move.
#[derive(Debug, Clone, Copy)]
pub enum Outbound<'a> {
    /// A control-type PDU (anything but Data-In and R2T) with its AHS and data.
    Pdu {
        /// The BHS.
        header: &'a PduHeader,
        /// Raw AHS.
        ahs: &'a [u8],
        /// Data segment.
        data: &'a [u8],
    },
    /// A Data-In whose payload is in registered memory (`source`).
    DataIn {
        /// The Data-In (with status: a SCSI Response follows the write).
        header: &'a DataIn,
        /// Where the payload is.
        source: &'a [Sge],
    },
    /// An R2T whose data is to land in registered memory (`sink`, exactly
    /// the Desired Data Transfer Length).
    R2t {
        /// The R2T.
        header: &'a R2t,
        /// Where the data goes.
        sink: &'a [Sge],
    },
}

#[derive(Debug)]
struct Task {
    /// Distinguishes this task from a later one with the same ITT.
    serial: u64,
    lun: Lun,
    read: Option<Stag>,
    write: Option<Stag>,
    read_len: u32,
    write_len: u32,
    unsolicited: u32,
    in_flight: u32,
    aborted: bool,
}

#[derive(Debug)]
struct RdmaOp {
    itt: Itt,
    /// The serial of the task that posted it (its ITT may be reused after
    /// the task's response, while the operation is still outstanding).
    serial: u64,
    ttt: Ttt,
    offset: u32,
    len: u32,
    tag: u64,
    /// The buffer's hold, released (dropped) when the operation is over.
    _lease: Option<Lease>,
}

/// The target side of one iSER connection.
pub struct IserTarget<V: Verbs> {
    // Declared (so dropped) before `ops`: the queue pair is destroyed before
    // the buffer leases of its outstanding operations end.
    core: Core<V>,
    config: TargetConfig,
    peer: CmPrivateData,
    remote_invalidate: bool,
    params: Option<IserParams>,
    tasks: HashMap<Itt, Task>,
    ops: Vec<Option<RdmaOp>>,
    ops_free: Vec<u32>,
    events: VecDeque<TargetEvent>,
    from_initiator: Tracker,
    to_initiator: Tracker,
    exp_stat_sn: Sn,
    hello_done: bool,
    final_login_sent: bool,
    failure_reported: bool,
    next_serial: u64,
}

impl<V: Verbs> core::fmt::Debug for IserTarget<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IserTarget")
            .field("phase", &self.core.phase)
            .field("tasks", &self.tasks.len())
            .field("remote_invalidate", &self.remote_invalidate)
            .finish_non_exhaustive()
    }
}

impl<V: Verbs> IserTarget<V> {
    /// Accepts `request` (from [`Listener::poll_request`](crate::verbs::Listener::poll_request)):
    /// creates the queue pair in `pd`, posts the login receive and accepts
    /// with the iSER CM reply.
    pub fn accept(
        verbs: &V,
        request: V::Request,
        pd: Arc<V::Pd>,
        config: TargetConfig,
    ) -> Result<Self, IserError> {
        config.limits.validate()?;
        if config.queue_depth == 0 || config.max_rdma_ops == 0 {
            return Err(IserError::Config(
                "queue_depth and max_rdma_ops must be positive",
            ));
        }
        if config.max_rdma_ops > MAX_SLOTS {
            return Err(IserError::Config("max_rdma_ops exceeds 65536"));
        }
        let peer = CmPrivateData::decode(request.private_data());
        let unexpected = config.limits.max_outstanding_unexpected_pdus;
        let slots = Geometry::slots(config.queue_depth, unexpected)?;
        let geometry = Geometry {
            rx_slots: slots,
            rx_data: config.limits.target_recv_data_segment_length.max(8192),
            tx_slots: slots,
            tx_data: config.limits.initiator_recv_data_segment_length.max(8192),
        };
        let mut core = Core::new(
            verbs,
            Endpoint::Incoming(request),
            pd,
            geometry,
            config.max_rdma_ops,
        )?;
        core.post_rx(0)?;
        let remote_invalidate = config.send_with_invalidate && peer.send_with_invalidate;
        let reply = CmPrivateData {
            zero_based_va: false,
            send_with_invalidate: remote_invalidate,
        };
        core.qp.accept(&reply.encode())?;
        Ok(Self {
            core,
            config,
            peer,
            remote_invalidate,
            params: None,
            tasks: HashMap::with_capacity(config.queue_depth as usize * 2),
            ops: (0..config.max_rdma_ops).map(|_| None).collect(),
            ops_free: (0..config.max_rdma_ops).rev().collect(),
            events: VecDeque::with_capacity(64),
            from_initiator: Tracker::new(Direction::ToTarget, unexpected),
            to_initiator: Tracker::new(Direction::ToInitiator, unexpected),
            exp_stat_sn: Sn(0),
            hello_done: false,
            final_login_sent: false,
            failure_reported: false,
            next_serial: 0,
        })
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.core.phase
    }

    /// The full feature parameters (after [`enter_full_feature`](Self::enter_full_feature)).
    pub fn params(&self) -> Option<&IserParams> {
        self.params.as_ref()
    }

    /// What the initiator announced in its CM request.
    pub fn peer_private_data(&self) -> CmPrivateData {
        self.peer
    }

    /// Whether SCSI Responses go out as Send with Invalidate.
    pub fn remote_invalidation(&self) -> bool {
        self.remote_invalidate
    }

    /// The largest CmdSN window (MaxCmdSN − ExpCmdSN + 1) the session may
    /// grant: one receive buffer is posted per admitted command.
    pub fn command_window(&self) -> u32 {
        self.config.queue_depth
    }

    /// Active tasks (commands whose SCSI Response has not been sent).
    pub fn active_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// RDMA Writes (Data-In) and RDMA Reads (R2T) posted and not yet
    /// completed. Their `source` and `sink` memory belongs to the device
    /// until this count has dropped: once the connection has ended
    /// ([`TargetEvent::Disconnected`], [`TargetEvent::Failed`], or
    /// [`disconnect`](Self::disconnect)) the outstanding operations are
    /// flushed without an event of their own, so keep polling until this is
    /// 0 — or drop the connection, which destroys its queue pair — before
    /// reusing those buffers.
    pub fn rdma_ops_in_flight(&self) -> usize {
        self.ops.len() - self.ops_free.len()
    }

    /// The data segment of a received PDU.
    pub fn pdu_data(&self, rx: &RecvPdu) -> &[u8] {
        self.core.pdu_data(rx)
    }

    /// The raw AHS of a received PDU.
    pub fn pdu_ahs(&self, rx: &RecvPdu) -> &[u8] {
        self.core.pdu_ahs(rx)
    }

    /// Returns a PDU's receive buffer to the receive queue.
    // Taking the token by value ends it: a buffer cannot be released twice.
    #[allow(clippy::needless_pass_by_value)]
    pub fn release(&mut self, rx: RecvPdu) -> Result<(), IserError> {
        self.core.release(&rx)
    }

    /// Copies a received PDU out (AHS decoded) and releases its buffer.
    ///
    /// A malformed AHS is a protocol violation: the connection fails (RFC
    /// 7145 §10) and the error is returned (and reported by `poll`).
    pub fn take_pdu(&mut self, rx: RecvPdu) -> Result<Pdu, IserError> {
        let pdu = match self.core.copy_pdu(&rx) {
            Ok(pdu) => pdu,
            Err(e) => return Err(self.fail_connection(e.into())),
        };
        self.release(rx)?;
        Ok(pdu)
    }

    /// Enters full feature phase with the login's outcome: checks it allows
    /// iSER and posts the full set of receive buffers. Call it after the
    /// final Login Request was accepted and before the final Login Response
    /// is sent.
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
        // We accept what we declared; we send what the initiator declared
        // (no limit when it declared 0 or nothing).
        self.from_initiator.set_limit(p.recv_unexpected_pdus);
        self.to_initiator
            .set_limit(p.send_unexpected_pdus.unwrap_or(u32::MAX));
        // Send buffers never carry more than the initiator may receive.
        self.core.geometry.tx_data = self
            .core
            .geometry
            .tx_data
            .min(p.initiator_recv_data_segment_length);
        self.core.post_rx_range(0..self.core.geometry.rx_slots)?;
        self.core.phase = Phase::FullFeature;
        self.params = Some(p);
        Ok(p)
    }

    /// Sends `out`.
    pub fn send(&mut self, out: Outbound<'_>) -> Result<(), IserError> {
        self.core.check_open()?;
        match out {
            Outbound::Pdu { header, ahs, data } => self.send_pdu(header, ahs, data),
            Outbound::DataIn { header, source } => self.put_data(header, source, 0, None),
            Outbound::R2t { header, sink } => self.get_data(header, sink, 0, None),
        }
    }

    /// Sends a whole [`Pdu`] (control path).
    pub fn send_owned(&mut self, pdu: &Pdu) -> Result<(), IserError> {
        let mut ahs = Vec::new();
        Ahs::encode_all(&pdu.ahs, &mut ahs).map_err(|_| IserError::Config("AHS too long"))?;
        self.send(Outbound::Pdu {
            header: &pdu.header,
            ahs: &ahs,
            data: &pdu.data,
        })
    }

    fn send_pdu(&mut self, h: &PduHeader, ahs: &[u8], data: &[u8]) -> Result<(), IserError> {
        let op = h.opcode();
        match self.core.phase {
            Phase::Login => {
                if op != Opcode::LOGIN_RESPONSE && op != Opcode::REJECT {
                    return Err(IserError::WrongPhase("a non-login PDU"));
                }
                self.core.send(
                    &IserHeader::default(),
                    Some(h),
                    ahs,
                    data,
                    &[],
                    SendOp::Send,
                    0,
                )?;
                return Ok(());
            }
            Phase::FullFeature => {}
            Phase::Connecting | Phase::Closed => return Err(IserError::WrongPhase("sending")),
        }
        match h {
            PduHeader::DataIn(_) | PduHeader::R2t(_) => {
                return Err(ProtocolError::NotAnIserMessage(op).into());
            }
            PduHeader::LoginResponse(r) => {
                // Only the final Login Response, right after entering full feature phase.
                if self.final_login_sent
                    || r.next_stage != Some(rtgt_pdu::LoginStage::FULL_FEATURE_PHASE)
                {
                    return Err(IserError::WrongPhase("a Login Response"));
                }
                self.core.send(
                    &IserHeader::default(),
                    Some(h),
                    ahs,
                    data,
                    &[],
                    SendOp::Send,
                    0,
                )?;
                self.final_login_sent = true;
                return Ok(());
            }
            _ => {}
        }
        if self.to_initiator.would_exceed(h) {
            return Err(IserError::UnexpectedCredit(self.to_initiator.limit()));
        }
        let send_op = match h {
            PduHeader::ScsiResponse(r) => self.response_op(r.itt),
            _ => SendOp::Send,
        };
        self.core
            .send(&IserHeader::default(), Some(h), ahs, data, &[], send_op, 0)?;
        if let PduHeader::ScsiResponse(r) = h {
            // The task ends with its response: its STags are gone from here on.
            self.tasks.remove(&r.itt);
        }
        let _ = self.to_initiator.admit(h);
        self.from_initiator.observe_reply(h);
        if let PduHeader::Reject(_) = h {
            self.forget_rejected(data);
        }
        Ok(())
    }

    /// A Reject of a SCSI Command ends the task (RFC 7143 §11.17: the
    /// rejected command is not executed; no SCSI Response follows), and gives back
    /// the unexpected-PDU credit of a rejected immediate PDU. `data` is the
    /// Reject's data segment, the rejected BHS.
    fn forget_rejected(&mut self, data: &[u8]) {
        self.from_initiator.observe_reject(data);
        if let Some((Opcode::SCSI_COMMAND, itt)) = crate::credits::rejected_pdu(data) {
            if self.tasks.get(&itt).is_some_and(|t| t.in_flight == 0) {
                self.tasks.remove(&itt);
            }
        }
    }

    /// How a task's response is sent: with invalidation of its STag at the
    /// initiator when allowed (the Read STag, else the Write STag; a
    /// bidirectional task's other STag is invalidated by the initiator).
    fn response_op(&self, itt: Itt) -> SendOp {
        match self.tasks.get(&itt) {
            Some(t) if self.remote_invalidate => match t.read.or(t.write) {
                Some(s) => SendOp::SendWithInvalidate { rkey: s.stag },
                None => SendOp::Send,
            },
            _ => SendOp::Send,
        }
    }

    fn take_op_slot(&mut self, op: RdmaOp) -> Result<u32, IserError> {
        let i = self.ops_free.pop().ok_or(IserError::NoSendResources)?;
        if let Some(s) = self.ops.get_mut(i as usize) {
            *s = Some(op);
        }
        Ok(i)
    }

    /// Sends a Data-In whose payload is `buf[offset..offset + len]` as an
    /// RDMA Write (none when `len` is 0), followed by a SCSI Response when
    /// the Data-In carries status. The buffer is lent for reading until the
    /// write is over: [`TargetEvent::DataSent`] with `tag` reports it (or,
    /// after the connection ended, nothing; see [`TaskBuffer`]).
    pub fn send_data_in(
        &mut self,
        header: &DataIn,
        buf: &TaskBuffer<V::Mr>,
        offset: usize,
        len: usize,
        tag: u64,
    ) -> Result<(), IserError> {
        self.core.check_open()?;
        if len == 0 {
            return self.put_data(header, &[], tag, None);
        }
        let (sge, lease) = buf.lend_for_read(offset, len).ok_or(IserError::DataRange {
            offset: header.buffer_offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        })?;
        self.put_data(header, &[sge], tag, Some(lease))
    }

    /// Sends an R2T as an RDMA Read of its Desired Data Transfer Length into
    /// `buf` at `offset`. The buffer is lent for writing until the read is
    /// over: [`TargetEvent::SolicitedData`] with `tag` reports it (or, after
    /// the task was aborted or the connection ended, nothing).
    pub fn send_r2t(
        &mut self,
        header: &R2t,
        buf: &mut TaskBuffer<V::Mr>,
        offset: usize,
        tag: u64,
    ) -> Result<(), IserError> {
        self.core.check_open()?;
        let len = header.desired_data_transfer_length as usize;
        let (sge, lease) = buf
            .lend_for_write(offset, len)
            .ok_or(IserError::DataRange {
                offset: header.buffer_offset,
                len: header.desired_data_transfer_length,
            })?;
        self.get_data(header, &[sge], tag, Some(lease))
    }

    /// Aborted tasks whose RDMA operations have not all finished yet (each
    /// ends with [`TargetEvent::TaskQuiesced`]).
    pub fn quiescing_tasks(&self) -> usize {
        self.tasks.values().filter(|t| t.aborted).count()
    }

    /// Sends (control PDUs, Hello replies) posted and not yet completed.
    pub fn sends_outstanding(&self) -> usize {
        self.core.tx_outstanding()
    }

    fn put_data(
        &mut self,
        h: &DataIn,
        source: &[Sge],
        tag: u64,
        lease: Option<Lease>,
    ) -> Result<(), IserError> {
        if self.core.phase != Phase::FullFeature {
            return Err(IserError::WrongPhase("Data-In"));
        }
        let len: u64 = source.iter().map(|s| u64::from(s.len)).sum();
        let len = u32::try_from(len).map_err(|_| IserError::DataRange {
            offset: h.buffer_offset,
            len: u32::MAX,
        })?;
        // With status, a SCSI Response follows the write: make sure it can go
        // out before anything is posted, so a refusal leaves nothing half done
        // (a retry would write the data twice).
        if h.status.is_some() && !self.core.tx_available() {
            return Err(IserError::NoSendResources);
        }
        if len > 0 {
            let task = self
                .tasks
                .get(&h.itt)
                .filter(|t| !t.aborted)
                .ok_or(IserError::UnknownTask(h.itt))?;
            let read = task.read.ok_or(IserError::DataRange {
                offset: h.buffer_offset,
                len,
            })?;
            if u64::from(h.buffer_offset) + u64::from(len) > u64::from(task.read_len) {
                return Err(IserError::DataRange {
                    offset: h.buffer_offset,
                    len,
                });
            }
            let serial = task.serial;
            let slot = self.take_op_slot(RdmaOp {
                itt: h.itt,
                serial,
                ttt: h.ttt,
                offset: h.buffer_offset,
                len,
                tag,
                _lease: lease,
            })?;
            let remote = RemoteAddr {
                addr: read.va.wrapping_add(u64::from(h.buffer_offset)),
                rkey: read.stag,
            };
            if let Err(e) = self.core.qp.post_send(&SendWr {
                wr_id: wr_id(WrKind::Write, slot, 0),
                op: SendOp::RdmaWrite { remote },
                sges: source,
                signaled: true,
            }) {
                self.release_op(slot);
                return Err(e.into());
            }
            if let Some(t) = self.tasks.get_mut(&h.itt) {
                t.in_flight += 1;
            }
        }
        if let Some(st) = h.status {
            // iSER carries status only in a SCSI Response (§7.3.5).
            let rsp = ScsiResponse {
                bidi_read_residual: rtgt_pdu::Residual::default(),
                residual: st.residual,
                response: ResponseCode::COMMAND_COMPLETED,
                status: st.status,
                itt: h.itt,
                snack_tag: 0,
                stat_sn: st.stat_sn,
                exp_cmd_sn: h.exp_cmd_sn,
                max_cmd_sn: h.max_cmd_sn,
                exp_data_sn: h.data_sn.incremented(),
            };
            self.send_pdu(&PduHeader::ScsiResponse(rsp), &[], &[])?;
        }
        Ok(())
    }

    fn get_data(
        &mut self,
        h: &R2t,
        sink: &[Sge],
        tag: u64,
        lease: Option<Lease>,
    ) -> Result<(), IserError> {
        if self.core.phase != Phase::FullFeature {
            return Err(IserError::WrongPhase("R2T"));
        }
        let len = h.desired_data_transfer_length;
        let range_err = IserError::DataRange {
            offset: h.buffer_offset,
            len,
        };
        let sink_len: u64 = sink.iter().map(|s| u64::from(s.len)).sum();
        if sink_len != u64::from(len) || len == 0 {
            return Err(range_err);
        }
        let task = self
            .tasks
            .get(&h.itt)
            .filter(|t| !t.aborted)
            .ok_or(IserError::UnknownTask(h.itt))?;
        let write = task.write.ok_or(range_err.clone())?;
        if h.buffer_offset < task.unsolicited
            || u64::from(h.buffer_offset) + u64::from(len) > u64::from(task.write_len)
        {
            return Err(range_err);
        }
        let remote = RemoteAddr {
            addr: write
                .va
                .wrapping_add(u64::from(h.buffer_offset - task.unsolicited)),
            rkey: write.stag,
        };
        let serial = task.serial;
        let slot = self.take_op_slot(RdmaOp {
            itt: h.itt,
            serial,
            ttt: h.ttt,
            offset: h.buffer_offset,
            len,
            tag,
            _lease: lease,
        })?;
        if let Err(e) = self.core.qp.post_send(&SendWr {
            wr_id: wr_id(WrKind::Read, slot, 0),
            op: SendOp::RdmaRead { remote },
            sges: sink,
            signaled: true,
        }) {
            self.release_op(slot);
            return Err(e.into());
        }
        if let Some(t) = self.tasks.get_mut(&h.itt) {
            t.in_flight += 1;
        }
        Ok(())
    }

    fn release_op(&mut self, slot: u32) -> Option<RdmaOp> {
        let op = self.ops.get_mut(slot as usize).and_then(Option::take);
        if op.is_some() {
            self.ops_free.push(slot);
        }
        op
    }

    /// Aborts a task (ABORT TASK and friends, RFC 7145 §7.3.8): no further
    /// data is moved for it and it is forgotten. Returns `true` if no RDMA
    /// operation of the task is outstanding; otherwise
    /// [`TargetEvent::TaskQuiesced`] follows when the last one completes,
    /// and only then may the task management response be sent (the
    /// initiator frees its buffer on that response).
    ///
    /// Every SCSI Command that arrives becomes a task here, holding the
    /// initiator's STags until its SCSI Response (or a Reject of it) is sent.
    /// A command the session drops without either (RFC 7143 §4.2.2.1: outside
    /// the CmdSN window) must be ended with this call too, or its task stays
    /// and its ITT is refused as a duplicate later.
    pub fn abort_task(&mut self, itt: Itt) -> bool {
        match self.tasks.get_mut(&itt) {
            None => true,
            Some(t) if t.in_flight == 0 => {
                self.tasks.remove(&itt);
                true
            }
            Some(t) => {
                t.aborted = true;
                false
            }
        }
    }

    /// Disconnects (logout done, or the session is closing the connection).
    /// Outstanding RDMA operations are flushed; their buffers are free once
    /// [`rdma_ops_in_flight`](Self::rdma_ops_in_flight) is 0.
    pub fn disconnect(&mut self) -> Result<(), IserError> {
        self.core.phase = Phase::Closed;
        self.tasks.clear();
        self.core.qp.disconnect()?;
        Ok(())
    }

    /// The next event, if any. Never blocks; `None` means nothing is
    /// pending now (the completion queue has been drained).
    pub fn poll(&mut self) -> Result<Option<TargetEvent>, IserError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        while let Some(ev) = self.core.qp.poll_cm_event()? {
            match ev {
                CmEvent::Established { .. } => {
                    if self.core.phase == Phase::Connecting {
                        self.core.phase = Phase::Login;
                        self.events.push_back(TargetEvent::Established);
                    }
                }
                CmEvent::Disconnected | CmEvent::Rejected { .. } | CmEvent::Unreachable => {
                    if self.core.phase != Phase::Closed || self.core.failure.is_none() {
                        self.core.phase = Phase::Closed;
                        self.tasks.clear();
                        self.events.push_back(TargetEvent::Disconnected);
                    }
                }
            }
        }
        // Reap until an event is ready or the queue is empty, so `None`
        // means nothing is pending right now.
        let mut wcs = [WorkCompletion::default(); 16];
        while self.events.is_empty() {
            let n = self.core.poll(&mut wcs)?;
            if n == 0 {
                break;
            }
            for wc in wcs.iter().take(n) {
                if let Err(e) = self.on_completion(wc) {
                    self.fail_connection(e);
                }
            }
        }
        Ok(self.events.pop_front())
    }

    /// Fails the connection with `e` (once reported as [`TargetEvent::Failed`]).
    fn fail_connection(&mut self, e: IserError) -> IserError {
        let e = self.core.fail(e);
        self.tasks.clear();
        if !self.failure_reported {
            self.failure_reported = true;
            self.events.push_back(TargetEvent::Failed(e.clone()));
        }
        e
    }

    fn on_completion(&mut self, wc: &WorkCompletion) -> Result<(), IserError> {
        let kind = wr_kind(wc.wr_id);
        let index = wr_index(wc.wr_id);
        let _ = wr_aux(wc.wr_id);
        // Free what the work request held, whatever its outcome.
        let op = match kind {
            Some(WrKind::Recv) => {
                self.core.rx_completed(index);
                None
            }
            Some(WrKind::Send) => {
                self.core.tx_completed(index);
                None
            }
            Some(WrKind::Write | WrKind::Read) => self.release_op(index),
            _ => None,
        };
        if let Some(op) = &op {
            if let Some(t) = self
                .tasks
                .get_mut(&op.itt)
                .filter(|t| t.serial == op.serial)
            {
                t.in_flight = t.in_flight.saturating_sub(1);
                if t.aborted && t.in_flight == 0 {
                    self.tasks.remove(&op.itt);
                    self.events.push_back(TargetEvent::TaskQuiesced(op.itt));
                    return Ok(());
                }
            }
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
        match (kind, op) {
            (Some(WrKind::Recv), _) => self.on_receive(index, wc.byte_len as usize),
            (Some(WrKind::Read), Some(op)) => {
                let live = self
                    .tasks
                    .get(&op.itt)
                    .filter(|t| t.serial == op.serial && !t.aborted);
                if let Some(t) = live {
                    self.events
                        .push_back(TargetEvent::SolicitedData(SolicitedData {
                            itt: op.itt,
                            ttt: op.ttt,
                            lun: t.lun,
                            buffer_offset: op.offset,
                            len: op.len,
                            exp_stat_sn: self.exp_stat_sn,
                            tag: op.tag,
                        }));
                }
                Ok(())
            }
            (Some(WrKind::Write), Some(op)) => {
                self.events.push_back(TargetEvent::DataSent {
                    itt: op.itt,
                    buffer_offset: op.offset,
                    len: op.len,
                    tag: op.tag,
                });
                Ok(())
            }
            _ => {
                debug_assert!(wc.opcode != WcOpcode::RECV);
                Ok(())
            }
        }
    }

    fn on_receive(&mut self, slot: u32, len: usize) -> Result<(), IserError> {
        let msg = self.core.rx_bytes(slot, len);
        let parsed = message::parse(msg)?;
        let mut ahs_copy = [0u8; crate::verbs::MAX_AHS];
        let mut ahs_len = 0;
        if let Message::Control { ahs, .. } = &parsed {
            if let (Some(src), Some(dst)) = (msg.get(ahs.clone()), ahs_copy.get_mut(..ahs.len())) {
                dst.copy_from_slice(src);
                ahs_len = ahs.len();
            }
        }
        let (iser, header, ahs, data) = match parsed {
            Message::Hello(hello) => {
                if self.core.phase != Phase::FullFeature || self.hello_done {
                    return Err(ProtocolError::UnexpectedIserOpcode(2).into());
                }
                self.hello_done = true;
                let reply = HelloReply::answer(&hello, self.config.ord);
                self.core.post_rx(slot)?;
                self.core.send(
                    &IserHeader::default(),
                    None,
                    &[],
                    &reply.encode(),
                    &[],
                    SendOp::Send,
                    0,
                )?;
                return Ok(());
            }
            Message::HelloReply(_) => return Err(ProtocolError::UnexpectedIserOpcode(3).into()),
            Message::Control {
                iser,
                header,
                ahs,
                data,
            } => (iser, header, ahs, data),
        };
        let limit = match self.params {
            Some(p) if self.core.phase == Phase::FullFeature => p.target_recv_data_segment_length,
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
            PduHeader::NopOut(_)
            | PduHeader::ScsiCommand(_)
            | PduHeader::TaskMgmtRequest(_)
            | PduHeader::LoginRequest(_)
            | PduHeader::TextRequest(_)
            | PduHeader::DataOut(_)
            | PduHeader::LogoutRequest(_)
            | PduHeader::SnackRequest(_) => {}
            other => return Err(ProtocolError::NotAnIserMessage(other.opcode()).into()),
        }
        if self.core.phase == Phase::FullFeature {
            if self.from_initiator.admit(&header).is_err() {
                return Err(ProtocolError::UnexpectedPduLimit {
                    limit: self.from_initiator.limit(),
                }
                .into());
            }
            self.to_initiator.observe_reply(&header);
            if let Some(e) = exp_stat_sn(&header) {
                self.exp_stat_sn = e;
            }
            if let PduHeader::ScsiCommand(cmd) = &header {
                let ahs_bytes = ahs_copy.get(..ahs_len).unwrap_or(&[]);
                self.new_task(cmd, &iser, ahs_bytes, data.len() as u32)?;
            }
        }
        self.events.push_back(TargetEvent::Pdu(RecvPdu {
            slot,
            header,
            iser,
            ahs,
            data,
            len,
            invalidated: None,
        }));
        Ok(())
    }

    fn new_task(
        &mut self,
        cmd: &ScsiCommand,
        iser: &IserHeader,
        ahs: &[u8],
        immediate: u32,
    ) -> Result<(), IserError> {
        if self.tasks.contains_key(&cmd.itt) {
            return Err(ProtocolError::DuplicateTask(cmd.itt).into());
        }
        let edtl = cmd.expected_data_transfer_length;
        let bidi = ScsiCommand::bidi_read_length(ahs).map_err(ProtocolError::from)?;
        let (read_len, write_len) = match (cmd.read, cmd.write) {
            (true, true) => (bidi.unwrap_or(0), edtl),
            (true, false) => (edtl, 0),
            (false, true) => (0, edtl),
            (false, false) => (0, 0),
        };
        let p = self.params.unwrap_or(IserParams {
            target_recv_data_segment_length: 8192,
            initiator_recv_data_segment_length: 8192,
            recv_unexpected_pdus: 2,
            send_unexpected_pdus: Some(2),
            first_burst_length: 65536,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
        });
        let unsolicited = if cmd.final_pdu || p.initial_r2t {
            immediate
        } else {
            p.first_burst_length.min(write_len).max(immediate)
        };
        if read_len > 0 && iser.read.is_none() {
            return Err(ProtocolError::MissingStag {
                itt: cmd.itt,
                direction: "read",
            }
            .into());
        }
        if write_len > unsolicited && iser.write.is_none() {
            return Err(ProtocolError::MissingStag {
                itt: cmd.itt,
                direction: "write",
            }
            .into());
        }
        self.next_serial = self.next_serial.wrapping_add(1);
        self.tasks.insert(
            cmd.itt,
            Task {
                serial: self.next_serial,
                lun: cmd.lun,
                read: iser.read.filter(|_| read_len > 0),
                write: iser.write.filter(|_| write_len > unsolicited),
                read_len,
                write_len,
                unsolicited,
                in_flight: 0,
                aborted: false,
            },
        );
        Ok(())
    }
}

fn exp_stat_sn(h: &PduHeader) -> Option<Sn> {
    Some(match h {
        PduHeader::NopOut(x) => x.exp_stat_sn,
        PduHeader::ScsiCommand(x) => x.exp_stat_sn,
        PduHeader::TaskMgmtRequest(x) => x.exp_stat_sn,
        PduHeader::TextRequest(x) => x.exp_stat_sn,
        PduHeader::LogoutRequest(x) => x.exp_stat_sn,
        PduHeader::DataOut(x) => x.exp_stat_sn,
        _ => return None,
    })
}
