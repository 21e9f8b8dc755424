//! Connections in the login phase (RFC 7143 §6.3, §11.12–§11.13): driving the login state
//! machine, and its last step — creating a session (with reinstatement of an older one,
//! §6.3.5), joining a session by TSIH (MC/S, connection reinstatement §5.3.4), handing the
//! connection to the reactor that owns the session — then entering full feature phase.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use rtgt_pdu::{Digests, LoginStatus};
use rtgt_scsi::{Nexus, NexusId};
use rtgt_session::table::SessionKey;
use rtgt_session::target::login::{LoginStep, SessionRequest, SessionResolution};
use rtgt_session::target::{SessionSetup, TargetSession};

use super::buffers::{Slot, TaskBuf};
use super::core::{Conn, Core, LOGIN_TIMEOUT, Life, Phase, RX_BUF, RxPlace};
use super::send::SendBatch;
use super::sessions::SessionCtx;
use super::shared::{Handoff, Message};

impl Core {
    pub(crate) fn login_step(&mut self, token: usize, step: LoginStep) {
        match step {
            LoginStep::Continue => {}
            LoginStep::Drop => {
                self.close_conn(token);
                return;
            }
            LoginStep::Failed(status) => {
                if let Some(conn) = self.conns.get_mut(token) {
                    tracing::info!(peer = %conn.info.peer, ?status, "login failed");
                    conn.life = Life::CloseAfterFlush;
                }
            }
            LoginStep::NeedsSession(req) => {
                self.resolve_session(token, req);
                return;
            }
        }
        self.drain_login(token);
    }

    /// Moves the login's responses to the transmit queue and, when the login finished,
    /// enters full feature phase.
    pub(crate) fn drain_login(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Phase::Login(login) = &mut conn.phase else {
            return;
        };
        while let Some(t) = login.poll_transmit() {
            conn.txq.push_back(t);
        }
        let outcome = login.take_outcome();
        self.mark_dirty(token);
        if let Some(o) = outcome {
            self.enter_ffp(token, &o);
        }
    }

    pub(crate) fn resolve_session(
        &mut self,
        token: usize,
        req: rtgt_session::target::login::SessionRequest,
    ) {
        let key = SessionKey::new(&req.initiator_name, req.isid, &req.target_name);
        if req.tsih == 0 {
            if self.is_shutting_down() {
                self.refuse(token, LoginStatus::SERVICE_UNAVAILABLE);
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
                    self.shared.send(
                        loc.reactor,
                        Message::Terminate {
                            tsih: old_tsih,
                            serial: loc.serial,
                        },
                    );
                }
            }
            let resolution = match tsih {
                Some(tsih) => {
                    if let Some(conn) = self.conns.get_mut(token) {
                        conn.login_deadline = None;
                    }
                    self.pending_serial = Some(serial);
                    SessionResolution::New { tsih }
                }
                None => SessionResolution::Refuse(LoginStatus::OUT_OF_RESOURCES),
            };
            self.finish_resolution(token, resolution);
            return;
        }
        // Joining an existing session (MC/S or connection reinstatement).
        let Some(loc) = self.shared.session_loc(req.tsih, &key) else {
            self.refuse(token, LoginStatus::SESSION_DOES_NOT_EXIST);
            return;
        };
        if loc.reactor != self.id {
            // All connections of a session live on the session's reactor. The loop moves the
            // connection there once none of its I/O is in flight here.
            if let Some(conn) = self.conns.get_mut(token) {
                conn.life = Life::Handoff;
                self.handoffs.push((token, loc.reactor, req));
            }
            return;
        }
        self.join_local(token, &req, loc.serial);
    }

    /// Hands a connection marked for hand-off to the reactor owning its session (the loop
    /// calls this once the connection has no I/O in flight and is out of its poller).
    pub(crate) fn complete_handoff(
        &mut self,
        token: usize,
        reactor: usize,
        request: SessionRequest,
    ) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        self.shared.load(self.id).fetch_sub(1, Ordering::Relaxed);
        let phase = core::mem::replace(&mut conn.phase, Phase::Gone);
        if let Phase::Login(login) = phase {
            let handoff = Handoff {
                stream: conn.stream,
                info: conn.info,
                framer: conn.framer,
                login,
                request,
                txq: conn.txq,
            };
            self.shared.send(reactor, Message::Adopt(Box::new(handoff)));
        }
    }

    pub(crate) fn join_local(
        &mut self,
        token: usize,
        req: &rtgt_session::target::login::SessionRequest,
        serial: u64,
    ) {
        let found = self
            .sessions
            .iter_mut()
            .find(|(_, c)| c.serial == serial && !c.ended)
            .map(|(i, _)| i);
        let Some(sidx) = found else {
            self.refuse(token, LoginStatus::SESSION_DOES_NOT_EXIST);
            return;
        };
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        if ctx.session.is_discovery() {
            self.refuse(token, LoginStatus::CANT_INCLUDE_IN_SESSION);
            return;
        }
        // Connection reinstatement: the same CID replaces the old connection.
        if let Some(old) = ctx.session.connection_by_cid(req.cid) {
            tracing::info!(cid = req.cid, "connection reinstatement");
            let old_token = ctx.conns.get(usize::from(old.0)).copied().flatten();
            ctx.session.drop_connection(old);
            if let Some(t) = old_token {
                self.close_conn(t);
            }
        }
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let resolution = if ctx.session.can_add_connection() {
            let (exp_cmd_sn, max_cmd_sn) = ctx.session.cmd_window();
            self.pending_join = Some(sidx);
            SessionResolution::Join {
                exp_cmd_sn,
                max_cmd_sn,
            }
        } else {
            SessionResolution::Refuse(LoginStatus::TOO_MANY_CONNECTIONS)
        };
        self.finish_resolution(token, resolution);
    }

    pub(crate) fn refuse(&mut self, token: usize, status: LoginStatus) {
        self.finish_resolution(token, SessionResolution::Refuse(status));
    }

    pub(crate) fn finish_resolution(&mut self, token: usize, resolution: SessionResolution) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Phase::Login(login) = &mut conn.phase else {
            return;
        };
        let step = login.resolve(resolution);
        if let LoginStep::Failed(status) = step {
            tracing::info!(peer = %conn.info.peer, ?status, "login refused");
            conn.life = Life::CloseAfterFlush;
        }
        self.drain_login(token);
    }

    /// A connection handed over by another reactor to join a session of ours.
    pub(crate) fn adopt(&mut self, h: Box<Handoff>) {
        let Handoff {
            stream,
            info,
            framer,
            login,
            request,
            txq,
        } = *h;
        let mut conn_txq = VecDeque::with_capacity(64);
        conn_txq.extend(txq);
        let conn = Conn {
            stream,
            info,
            framer,
            rx: Some(Box::new(TaskBuf::heap(RX_BUF))),
            direct: None,
            header_first: false,
            trailer: 0,
            phase: Phase::Login(login),
            place: RxPlace::Discard,
            collect: Vec::new(),
            login_req: None,
            digests: Digests::NONE,
            plain: 0,
            txq: conn_txq,
            batch: Some(SendBatch::new()),
            life: Life::Open,
            login_deadline: Some(self.now + LOGIN_TIMEOUT),
        };
        self.shared.load(self.id).fetch_add(1, Ordering::Relaxed);
        let token = self.conns.insert(conn);
        self.adopted.push(token);
        let key = SessionKey::new(&request.initiator_name, request.isid, &request.target_name);
        let loc = {
            let table = self
                .shared
                .table
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            table
                .get(request.tsih)
                .filter(|e| e.key == key)
                .map(|e| e.value)
        };
        match loc {
            Some(l) if l.reactor == self.id => self.join_local(token, &request, l.serial),
            _ => self.refuse(token, LoginStatus::SESSION_DOES_NOT_EXIST),
        }
    }

    pub(crate) fn enter_ffp(
        &mut self,
        token: usize,
        o: &rtgt_session::target::login::LoginOutcome,
    ) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.login_deadline = None;
        let conn_params = o.negotiated.connection;
        conn.plain = conn.txq.len();
        conn.digests = conn_params.digests();
        conn.framer
            .enter_full_feature(conn.digests, conn_params.max_recv_data_segment_length);
        let local = conn.info.local;
        let tpgt = conn.info.tpgt;
        let sidx = if o.leading {
            let serial = self.pending_serial.take().unwrap_or_default();
            let params = o.negotiated.session.clone();
            let target = self.shared.runtime.target(&params.target_name).cloned();
            let nexus_id = NexusId(self.shared.next_nexus.fetch_add(1, Ordering::Relaxed));
            let nexus = Nexus::new(nexus_id, &params.initiator_name, o.isid.0, tpgt);
            if let Some(t) = &target {
                for l in &t.luns {
                    l.lu.nexus_established(&nexus);
                }
            }
            let session = TargetSession::new(SessionSetup {
                tsih: o.tsih,
                isid: o.isid,
                params,
                catalog: self.shared.runtime.catalog.clone(),
                cmd_sn: o.cmd_sn,
            });
            let slots = (0..session.task_capacity())
                .map(|_| Slot::default())
                .collect();
            tracing::info!(
                reactor = self.id,
                tsih = o.tsih,
                initiator = %session.params().initiator_name,
                target = %session.params().target_name,
                discovery = session.is_discovery(),
                "session started"
            );
            self.sessions.insert(SessionCtx {
                session,
                conns: Vec::new(),
                slots,
                nexus,
                target,
                serial,
                tsih: o.tsih,
                ended: false,
            })
        } else {
            let Some(s) = self.pending_join.take() else {
                self.close_conn(token);
                return;
            };
            s
        };
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            self.close_conn(token);
            return;
        };
        let cid = ctx
            .session
            .add_connection(o.cid, conn_params, o.stat_sn, Some(local), now);
        let i = usize::from(cid.0);
        if ctx.conns.len() <= i {
            ctx.conns.resize(i + 1, None);
        }
        ctx.conns[i] = Some(token);
        if let Some(conn) = self.conns.get_mut(token) {
            conn.phase = Phase::Ffp { sidx, cid };
        }
    }

    // ------------------------------------------------------------------ sessions
}
