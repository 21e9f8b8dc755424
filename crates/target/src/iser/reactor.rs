//! One iSER portal's reactor (RFC 7145 §5 connection setup, §5.1 iSER-assisted login, §10
//! connection failure): accepting RDMA-CM requests, the login phase of each connection
//! through the session crate's target-role login with the iSER keys, session creation,
//! reinstatement and MC/S joins (RFC 7143 §6.3.5, §5.3.4) through the engine's session table,
//! timers, connection teardown and the shutdown drain.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::parked::ParkedCommands;
use rtgt_iser::verbs::{ConnectRequest, Listener, Verbs};
use rtgt_iser::{IserLimits, IserTarget, Outbound, TargetConfig, TargetEvent, TaskMemory};
use rtgt_pdu::{LoginStatus, PduHeader};
use rtgt_scsi::{Nexus, NexusId};
use rtgt_session::table::SessionKey;
use rtgt_session::target::login::{
    LoginConnection, LoginOutcome, LoginSettings, LoginStep, RdmaLogin, SessionRequest,
    SessionResolution,
};
use rtgt_session::target::{ConnId, SessionDefaults, SessionSetup, TargetSession, Transmit};

use super::session::{Sess, Slot};
use crate::reactor::shared::{Message, Shared};

/// How long a login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for initiators to log out before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// After the grace period, how long sessions may take to drain before they are dropped.
const HARD_STOP: Duration = Duration::from_secs(3);
/// Longest idle sleep of the polling loop.
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);

/// Session-table locations of iSER reactors count down from here, so they never name a TCP
/// reactor (messages sent to them by TCP reactors are dropped).
const ISER_REACTOR_BASE: usize = usize::MAX - 1024;

/// The iSER settings of a portal's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The CmdSN window a session grants (a receive buffer is posted per command).
    pub queue_depth: u32,
    /// The iSER keys this target declares or accepts.
    pub iser: IserLimits,
}

impl Limits {
    pub(crate) fn from_catalog(d: &SessionDefaults) -> Self {
        Self {
            queue_depth: d.queue_depth.clamp(1, 4096),
            iser: IserLimits {
                // Immediate data up to 64 KiB, the usual FirstBurstLength.
                target_recv_data_segment_length: 65_536,
                // Our send buffers: control PDUs (sense, text) are split to this.
                initiator_recv_data_segment_length: 8192,
                // Linux initiators never declare theirs and keep up to 6 outstanding.
                max_outstanding_unexpected_pdus: rtgt_iser::login::DEFAULT_UNEXPECTED_PDUS,
            },
        }
    }
}

/// What a reactor serves.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub index: usize,
    pub addr: SocketAddr,
    pub tpgt: u16,
    pub pool: rtgt_affinity::PoolConfig,
    pub limits: Limits,
}

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// RDMA-CM connection being established.
    Connecting,
    /// Login phase.
    Login(Box<LoginConnection>),
    /// Full feature phase on a session of ours.
    Ffp { sidx: usize, cid: ConnId },
}

pub(crate) struct Conn<V: Verbs> {
    pub iser: IserTarget<V>,
    pub phase: Phase,
    pub peer: Option<SocketAddr>,
    /// Transmits the transport has not taken yet (no send resources, or a task management
    /// response waiting for aborted tasks' RDMA operations).
    pub pending: VecDeque<Transmit>,
    /// Close once `pending` and the posted sends are done.
    pub close_after_flush: bool,
    pub login_deadline: Option<Instant>,
}

/// One portal's reactor.
pub(crate) struct Reactor<V: Verbs> {
    pub id: usize,
    pub spec: Spec,
    pub verbs: V,
    pub listener: Option<V::Listener>,
    pub pd: Arc<V::Pd>,
    pub memory: TaskMemory<V>,
    pub shared: Arc<Shared>,
    pub stop: Arc<AtomicBool>,
    pub conns: Vec<Option<Conn<V>>>,
    pub sessions: Vec<Option<Sess<V::Mr>>>,
    /// Commands parked behind the COMPARE AND WRITE gate.
    pub blocked: Vec<(usize, rtgt_session::target::TaskId)>,
    pub now: Instant,
    pub shutdown_deadline: Option<Instant>,
    /// Resets and PREEMPT AND ABORT from sessions elsewhere ([`Shared::broadcast`]).
    pub inbox: crossbeam_channel::Receiver<crate::reactor::shared::Message>,
    // Declared last: the pool's memory outlives every registration in `memory`.
    _pool: Option<rtgt_affinity::NodePool>,
}

impl<V: Verbs> Reactor<V> {
    pub(crate) fn new(
        verbs: V,
        listener: V::Listener,
        pd: V::Pd,
        spec: Spec,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let pd = Arc::new(pd);
        // The pool is made on this thread, so its cache (not `Send`) stays here.
        let pool = match rtgt_affinity::NodePool::new(&spec.pool) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "iSER: no buffer pool; task buffers are registered one by one");
                None
            }
        };
        let memory = match TaskMemory::with_pool(Arc::clone(&pd), pool.as_ref()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "iSER: cannot register the buffer pool; task buffers are registered one by one");
                TaskMemory::new(Arc::clone(&pd))
            }
        };
        let id = ISER_REACTOR_BASE - spec.index;
        let inbox = shared.register_iser(id);
        Self {
            id,
            inbox,
            spec,
            verbs,
            listener: Some(listener),
            pd,
            memory,
            shared,
            stop,
            conns: Vec::new(),
            sessions: Vec::new(),
            blocked: Vec::new(),
            now: Instant::now(),
            shutdown_deadline: None,
            _pool: pool,
        }
    }

    /// Runs until stopped and drained.
    pub(crate) fn run(mut self) {
        let mut idle = Duration::ZERO;
        loop {
            self.now = Instant::now();
            if self.stop.load(Ordering::Acquire) || self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_shutdown();
            }
            let mut busy = self.accept();
            busy |= self.read_inbox();
            for idx in 0..self.conns.len() {
                busy |= self.poll_conn(idx);
            }
            self.tick();
            if self.finished() {
                break;
            }
            if busy {
                idle = Duration::ZERO;
            } else {
                // Nothing moved: back off gently (the fabric has no wake-up to wait on).
                idle = (idle * 2).clamp(Duration::from_micros(20), MAX_IDLE_SLEEP);
                std::thread::sleep(idle);
            }
        }
        // Connections first (their queue pairs go before the buffers they lease), then the
        // sessions, then the memory.
        self.conns.clear();
        for sidx in 0..self.sessions.len() {
            self.remove_session(sidx);
        }
        self.shared.unregister_iser(self.id);
        tracing::info!(addr = %self.spec.addr, "iSER portal stopped");
    }

    fn finished(&self) -> bool {
        self.shutdown_deadline.is_some()
            && self.conns.iter().all(Option::is_none)
            && self.sessions.iter().all(Option::is_none)
    }

    // ------------------------------------------------------------------ connections

    fn accept(&mut self) -> bool {
        let Some(listener) = self.listener.as_mut() else {
            return false;
        };
        let mut any = false;
        loop {
            let request = match listener.poll_request() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "iSER: listener failed");
                    break;
                }
            };
            any = true;
            let peer = request.peer_addr();
            let config = TargetConfig {
                limits: self.spec.limits.iser,
                queue_depth: self.spec.limits.queue_depth,
                ..TargetConfig::default()
            };
            match IserTarget::accept(&self.verbs, request, Arc::clone(&self.pd), config) {
                Ok(iser) => {
                    let conn = Conn {
                        iser,
                        phase: Phase::Connecting,
                        peer,
                        pending: VecDeque::new(),
                        close_after_flush: false,
                        login_deadline: Some(self.now + LOGIN_TIMEOUT),
                    };
                    let idx = insert(&mut self.conns, conn);
                    tracing::debug!(conn = idx, ?peer, "iSER connection accepted");
                }
                Err(e) => tracing::warn!(error = %e, ?peer, "iSER: cannot accept a connection"),
            }
        }
        any
    }

    /// Handles every event of a connection available now; returns whether anything happened.
    fn poll_conn(&mut self, idx: usize) -> bool {
        let mut any = false;
        loop {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return any;
            };
            let ev = match conn.iser.poll() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(conn = idx, error = %e, "iSER connection failed");
                    self.close_conn(idx);
                    return true;
                }
            };
            any = true;
            match ev {
                TargetEvent::Established => {
                    if matches!(conn.phase, Phase::Connecting) {
                        let settings = LoginSettings {
                            portal_group_tag: self.spec.tpgt,
                            local_addr: Some(self.spec.addr),
                        };
                        let rdma = RdmaLogin {
                            target_recv_data_segment_length: self
                                .spec
                                .limits
                                .iser
                                .target_recv_data_segment_length,
                            initiator_recv_data_segment_length: self
                                .spec
                                .limits
                                .iser
                                .initiator_recv_data_segment_length,
                            max_outstanding_unexpected_pdus: self
                                .spec
                                .limits
                                .iser
                                .max_outstanding_unexpected_pdus,
                        };
                        conn.phase = Phase::Login(Box::new(
                            LoginConnection::new(self.shared.runtime.catalog.clone(), settings)
                                .with_rdma(rdma),
                        ));
                    }
                }
                TargetEvent::Pdu(rx) => match conn.phase {
                    Phase::Connecting => {
                        let _ = conn.iser.release(rx);
                    }
                    Phase::Login(_) => {
                        let Ok(pdu) = conn.iser.take_pdu(rx) else {
                            self.close_conn(idx);
                            return true;
                        };
                        self.on_login_pdu(idx, &pdu);
                    }
                    Phase::Ffp { sidx, cid } => self.on_ffp_pdu(idx, sidx, cid, rx),
                },
                TargetEvent::SolicitedData(d) => {
                    if let Phase::Ffp { sidx, cid } = conn.phase {
                        self.on_solicited_data(sidx, cid, &d);
                    }
                }
                TargetEvent::DataSent { tag, .. } => {
                    if let Phase::Ffp { sidx, .. } = conn.phase {
                        self.on_data_sent(sidx, tag);
                    }
                }
                TargetEvent::TaskQuiesced(itt) => {
                    tracing::debug!(conn = idx, ?itt, "aborted task's RDMA operations ended");
                }
                TargetEvent::Disconnected => {
                    tracing::debug!(conn = idx, "iSER peer disconnected");
                    self.close_conn(idx);
                    return true;
                }
                TargetEvent::Failed(e) => {
                    tracing::info!(conn = idx, error = %e, "iSER connection failed");
                    self.close_conn(idx);
                    return true;
                }
            }
        }
        any |= self.flush(idx);
        any
    }

    /// Sends what the connection has pending; closes it when asked to after the flush.
    pub(crate) fn flush(&mut self, idx: usize) -> bool {
        let any = match self
            .conns
            .get(idx)
            .and_then(Option::as_ref)
            .map(|c| &c.phase)
        {
            Some(Phase::Ffp { sidx, .. }) => {
                let sidx = *sidx;
                self.flush_ffp(idx, sidx)
            }
            Some(_) => self.flush_login(idx),
            None => false,
        };
        let done = self
            .conns
            .get(idx)
            .and_then(Option::as_ref)
            .is_some_and(|c| {
                c.close_after_flush && c.pending.is_empty() && c.iser.sends_outstanding() == 0
            });
        if done {
            self.close_conn(idx);
        }
        any
    }

    /// Login phase: Login Responses go out as they are.
    fn flush_login(&mut self, idx: usize) -> bool {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        let mut any = false;
        while let Some(t) = conn.pending.front() {
            let Ok(header) = PduHeader::decode(&t.bhs) else {
                conn.pending.pop_front();
                continue;
            };
            let data: &[u8] = match &t.payload {
                rtgt_session::target::Payload::Owned(v) => v,
                _ => &[],
            };
            match conn.iser.send(Outbound::Pdu {
                header: &header,
                ahs: &[],
                data,
            }) {
                Ok(()) => {
                    conn.pending.pop_front();
                    any = true;
                }
                Err(rtgt_iser::IserError::NoSendResources) => break,
                Err(e) => {
                    tracing::info!(conn = idx, error = %e, "iSER: login response not sent");
                    conn.pending.clear();
                    conn.close_after_flush = true;
                    break;
                }
            }
        }
        any
    }

    /// Ends a connection: its session loses it, its queue pair goes (and with it every
    /// buffer lease of its RDMA operations).
    pub(crate) fn close_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let _ = conn.iser.disconnect();
        if let Phase::Ffp { sidx, cid } = conn.phase {
            let pending = core::mem::take(&mut conn.pending);
            drop(conn);
            self.connection_gone(sidx, cid, pending);
            self.drive_session(sidx);
        }
        tracing::debug!(conn = idx, "iSER connection closed");
    }

    // ------------------------------------------------------------------ login

    fn on_login_pdu(&mut self, idx: usize, pdu: &rtgt_pdu::Pdu) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Phase::Login(login) = &mut conn.phase else {
            return;
        };
        let step = match &pdu.header {
            PduHeader::LoginRequest(req) => login.handle_login(req, &pdu.data),
            other => login.handle_other(other),
        };
        match step {
            LoginStep::Continue => {}
            LoginStep::Drop => {
                self.close_conn(idx);
                return;
            }
            LoginStep::Failed(status) => {
                tracing::info!(peer = ?conn.peer, ?status, "iSER login failed");
                conn.close_after_flush = true;
            }
            LoginStep::NeedsSession(req) => {
                let rdma = login.negotiated().is_some_and(|p| p.rdma_extensions);
                if !rdma {
                    // RFC 7145 §5.1: an iSER connection needs RDMAExtensions=Yes; discovery
                    // belongs on a TCP portal.
                    let status = if req.session_type == rtgt_session::params::SessionType::Discovery
                    {
                        LoginStatus::SESSION_TYPE_NOT_SUPPORTED
                    } else {
                        LoginStatus::INITIATOR_ERROR
                    };
                    tracing::info!(peer = ?conn.peer, "iSER login without RDMAExtensions=Yes refused");
                    self.finish_resolution(idx, SessionResolution::Refuse(status), None);
                    return;
                }
                self.resolve_session(idx, &req);
                return;
            }
        }
        self.drain_login(idx, None);
    }

    /// Moves the login's responses to the pending queue; enters full feature phase when the
    /// login finished (before the final response goes out: RFC 7145 §5.1 posts the full
    /// set of receives first).
    fn drain_login(&mut self, idx: usize, target: Option<Target>) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Phase::Login(login) = &mut conn.phase else {
            return;
        };
        while let Some(t) = login.poll_transmit() {
            conn.pending.push_back(t);
        }
        if let Some(outcome) = login.take_outcome() {
            let negotiated = login.negotiated().cloned();
            let entered = negotiated.map(|n| conn.iser.enter_full_feature(&n));
            match entered {
                Some(Ok(_)) => {
                    conn.login_deadline = None;
                    self.enter_ffp(idx, &outcome, target);
                }
                Some(Err(e)) => {
                    tracing::info!(conn = idx, error = %e, "iSER full feature phase refused");
                    self.close_conn(idx);
                    return;
                }
                None => {
                    self.close_conn(idx);
                    return;
                }
            }
        }
        self.flush(idx);
    }

    fn resolve_session(&mut self, idx: usize, req: &SessionRequest) {
        let key = SessionKey::new(&req.initiator_name, req.isid, &req.target_name);
        if req.tsih == 0 {
            if self.shutdown_deadline.is_some() {
                self.finish_resolution(
                    idx,
                    SessionResolution::Refuse(LoginStatus::SERVICE_UNAVAILABLE),
                    None,
                );
                return;
            }
            let new = self.shared.insert_session(key, self.id);
            let (tsih, serial) = (new.tsih, new.serial);
            if let Some((old_tsih, loc)) = new.replaced {
                tracing::info!(
                    tsih = old_tsih,
                    "session reinstatement: closing the old session"
                );
                if loc.reactor == self.id {
                    self.terminate_session(old_tsih, loc.serial);
                } else {
                    // A TCP reactor's session (another iSER portal's is not reachable).
                    self.shared.send(
                        loc.reactor,
                        Message::Terminate {
                            tsih: old_tsih,
                            serial: loc.serial,
                        },
                    );
                }
            }
            match tsih {
                Some(tsih) => self.finish_resolution(
                    idx,
                    SessionResolution::New { tsih },
                    Some(Target::New(serial)),
                ),
                None => self.finish_resolution(
                    idx,
                    SessionResolution::Refuse(LoginStatus::OUT_OF_RESOURCES),
                    None,
                ),
            }
            return;
        }
        // Joining an existing session (MC/S or connection reinstatement): only one of ours.
        let loc = self.shared.session_loc(req.tsih, &key);
        let found = loc.filter(|l| l.reactor == self.id).and_then(|l| {
            self.sessions
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.serial == l.serial && !s.ended))
        });
        let Some(sidx) = found else {
            self.finish_resolution(
                idx,
                SessionResolution::Refuse(LoginStatus::SESSION_DOES_NOT_EXIST),
                None,
            );
            return;
        };
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        if ctx.session.is_discovery() {
            self.finish_resolution(
                idx,
                SessionResolution::Refuse(LoginStatus::CANT_INCLUDE_IN_SESSION),
                None,
            );
            return;
        }
        if let Some(old) = ctx.session.connection_by_cid(req.cid) {
            tracing::info!(cid = req.cid, "connection reinstatement");
            let old_idx = ctx.conns.get(usize::from(old.0)).copied().flatten();
            ctx.session.drop_connection(old);
            if let Some(t) = old_idx {
                self.close_conn(t);
            }
        }
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            return;
        };
        if ctx.session.can_add_connection() {
            let (exp_cmd_sn, max_cmd_sn) = ctx.session.cmd_window();
            self.finish_resolution(
                idx,
                SessionResolution::Join {
                    exp_cmd_sn,
                    max_cmd_sn,
                },
                Some(Target::Join(sidx)),
            );
        } else {
            self.finish_resolution(
                idx,
                SessionResolution::Refuse(LoginStatus::TOO_MANY_CONNECTIONS),
                None,
            );
        }
    }

    fn finish_resolution(
        &mut self,
        idx: usize,
        resolution: SessionResolution,
        target: Option<Target>,
    ) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Phase::Login(login) = &mut conn.phase else {
            return;
        };
        if let LoginStep::Failed(status) = login.resolve(resolution) {
            tracing::info!(peer = ?conn.peer, ?status, "iSER login refused");
            conn.close_after_flush = true;
        }
        self.drain_login(idx, target);
    }

    fn enter_ffp(&mut self, idx: usize, o: &LoginOutcome, target: Option<Target>) {
        let now = self.now;
        let mut params = o.negotiated.connection;
        // Data-In and control PDUs are sent as the initiator can receive them (RFC 7145
        // §6.5: InitiatorRecvDataSegmentLength replaces MaxRecvDataSegmentLength). Contiguous
        // Data-In of a task leave as one RDMA Write anyway.
        params.max_xmit_data_segment_length = params.initiator_recv_data_segment_length;
        params.max_recv_data_segment_length = params.target_recv_data_segment_length;
        let sidx = match target {
            Some(Target::New(serial)) if o.leading => {
                let sp = o.negotiated.session.clone();
                let runtime = self.shared.runtime.clone();
                let target = runtime.target(&sp.target_name).cloned();
                let nexus_id = NexusId(self.shared.next_nexus.fetch_add(1, Ordering::Relaxed));
                let nexus = Nexus::new(nexus_id, &sp.initiator_name, o.isid.0, self.spec.tpgt);
                if let Some(t) = &target {
                    for l in &t.luns {
                        l.lu.nexus_established(&nexus);
                    }
                }
                let session = TargetSession::new(SessionSetup {
                    tsih: o.tsih,
                    isid: o.isid,
                    params: sp,
                    catalog: runtime.catalog.clone(),
                    cmd_sn: o.cmd_sn,
                });
                let slots = (0..session.task_capacity())
                    .map(|_| Slot::default())
                    .collect();
                tracing::info!(
                    tsih = o.tsih,
                    initiator = %session.params().initiator_name,
                    target = %session.params().target_name,
                    "iSER session started"
                );
                insert(
                    &mut self.sessions,
                    Sess {
                        session,
                        conns: Vec::new(),
                        slots,
                        nexus,
                        target,
                        serial,
                        tsih: o.tsih,
                        ended: false,
                    },
                )
            }
            Some(Target::Join(sidx)) if !o.leading => sidx,
            _ => {
                self.close_conn(idx);
                return;
            }
        };
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::as_mut) else {
            self.close_conn(idx);
            return;
        };
        let cid = ctx
            .session
            .add_connection(o.cid, params, o.stat_sn, Some(self.spec.addr), now);
        let i = usize::from(cid.0);
        if ctx.conns.len() <= i {
            ctx.conns.resize(i + 1, None);
        }
        if let Some(c) = ctx.conns.get_mut(i) {
            *c = Some(idx);
        }
        if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
            conn.phase = Phase::Ffp { sidx, cid };
        }
    }

    // ------------------------------------------------------------------ sessions

    /// Ends a session of ours (reinstated by a new login).
    pub(crate) fn terminate_session(&mut self, tsih: u16, serial: u64) {
        let found: Vec<usize> = self
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.as_ref()
                    .is_some_and(|s| s.tsih == tsih && s.serial == serial)
            })
            .map(|(i, _)| i)
            .collect();
        for sidx in found {
            let conns: Vec<usize> = self
                .sessions
                .get(sidx)
                .and_then(Option::as_ref)
                .map(|s| s.conns.iter().flatten().copied().collect())
                .unwrap_or_default();
            if let Some(s) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                s.session.terminate();
            }
            for c in conns {
                self.close_conn(c);
            }
            self.drive_session(sidx);
        }
    }

    pub(crate) fn remove_session(&mut self, sidx: usize) {
        let Some(ctx) = self.sessions.get_mut(sidx).and_then(Option::take) else {
            return;
        };
        self.blocked.retain(|(s, _)| *s != sidx);
        if let Some(t) = &ctx.target {
            for l in &t.luns {
                l.lu.nexus_lost(ctx.nexus.id);
            }
            for slot in ctx.slots {
                if let (Some(cmd), Some(l)) = (slot.cmd, t.lun(slot.lun)) {
                    let _ = l.lu.abort(cmd);
                }
            }
        }
        let mut table = self
            .shared
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table
            .get(ctx.tsih)
            .is_some_and(|e| e.value.serial == ctx.serial)
        {
            table.remove(ctx.tsih);
        }
        tracing::info!(tsih = ctx.tsih, "iSER session ended");
    }

    // ------------------------------------------------------------------ timers and shutdown

    fn tick(&mut self) {
        let now = self.now;
        for sidx in 0..self.sessions.len() {
            let due = self
                .sessions
                .get(sidx)
                .and_then(Option::as_ref)
                .and_then(|s| s.session.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(s) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                    s.session.handle_timeout(now);
                }
                self.drive_session(sidx);
            }
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.as_ref()
                    .is_some_and(|c| c.login_deadline.is_some_and(|d| d <= now))
            })
            .map(|(i, _)| i)
            .collect();
        for idx in expired {
            tracing::info!(conn = idx, "iSER login timed out");
            self.close_conn(idx);
        }
        if let Some(deadline) = self.shutdown_deadline {
            if deadline <= now {
                for idx in 0..self.conns.len() {
                    self.close_conn(idx);
                }
                for sidx in 0..self.sessions.len() {
                    if let Some(s) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                        s.session.terminate();
                    }
                    self.drive_session(sidx);
                }
            }
            if deadline + HARD_STOP <= now {
                for sidx in 0..self.sessions.len() {
                    if self.sessions.get(sidx).is_some_and(Option::is_some) {
                        tracing::warn!("dropping an iSER session whose tasks did not drain");
                        self.remove_session(sidx);
                    }
                }
            }
        }
        self.retry_blocked();
        self.memory.reclaim();
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + SHUTDOWN_GRACE);
        // No new connections.
        self.listener = None;
        let now = self.now;
        for sidx in 0..self.sessions.len() {
            if let Some(s) = self.sessions.get_mut(sidx).and_then(Option::as_mut) {
                s.session.request_logout(now);
            }
            self.drive_session(sidx);
        }
        for idx in 0..self.conns.len() {
            let login = self
                .conns
                .get(idx)
                .and_then(Option::as_ref)
                .is_some_and(|c| !matches!(c.phase, Phase::Ffp { .. }));
            if login {
                self.close_conn(idx);
            }
        }
    }
}

/// Which session a finishing login lands in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// A new session with this serial.
    New(u64),
    /// An existing session of ours.
    Join(usize),
}

/// Puts `value` in the first free place; returns its index.
pub(crate) fn insert<T>(list: &mut Vec<Option<T>>, value: T) -> usize {
    if let Some(i) = list.iter().position(Option::is_none) {
        if let Some(slot) = list.get_mut(i) {
            *slot = Some(value);
        }
        i
    } else {
        list.push(Some(value));
        list.len() - 1
    }
}
