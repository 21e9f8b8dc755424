//! Receiving: accepted connections, the framer's zero-copy mode (RFC 7143 §11.2 framing,
//! §7.8 digests) — each PDU's header goes to the login or session state machine, its data
//! segment straight into the task buffer the session names (or collected for control PDUs).

use std::collections::VecDeque;

use rtgt_pdu::{Digests, Event, Framer, PduHeader};
use rtgt_session::target::Placement;
use rtgt_session::target::login::{LoginConnection, LoginSettings};

use super::core::{Conn, Core, LOGIN_TIMEOUT, Life, MAX_BATCH, Phase, RX_BUF, RxPlace};
use super::send::SendBatch;
use super::shared::ConnInfo;

impl Core {
    /// Adopts a freshly accepted connection; returns its token.
    pub(crate) fn add_conn(&mut self, stream: mio::net::TcpStream, info: ConnInfo) -> usize {
        let _ = stream.set_nodelay(true);
        let login = LoginConnection::new(
            self.shared.runtime.catalog.clone(),
            LoginSettings {
                portal_group_tag: info.tpgt,
                local_addr: Some(info.local),
            },
        );
        let conn = Conn {
            stream,
            info,
            framer: Framer::new(),
            rx: vec![0u8; RX_BUF].into_boxed_slice(),
            phase: Phase::Login(Box::new(login)),
            place: RxPlace::Discard,
            collect: Vec::new(),
            login_req: None,
            digests: Digests::NONE,
            plain: 0,
            txq: VecDeque::with_capacity(64),
            batch: SendBatch {
                items: Vec::with_capacity(MAX_BATCH),
                total: 0,
                sent: 0,
            },
            life: Life::Open,
            login_deadline: Some(self.now + LOGIN_TIMEOUT),
        };
        tracing::debug!(reactor = self.id, peer = %info.peer, "connection accepted");
        self.conns.insert(conn)
    }

    /// Processes `n` bytes just received into the connection's buffer.
    pub(crate) fn on_received(&mut self, token: usize, n: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.life, Life::Closing | Life::Handoff) {
            return;
        }
        let rx = core::mem::take(&mut conn.rx);
        let mut input: &[u8] = rx.get(..n).unwrap_or(&[]);
        while let Some(conn) = self.conns.get_mut(token) {
            if matches!(conn.life, Life::Closing | Life::Handoff)
                || matches!(conn.phase, Phase::Gone)
            {
                break;
            }
            match conn.framer.next_event(&mut input) {
                Ok(None) => break,
                Ok(Some(Event::Header(fh))) => {
                    self.on_header(token, &fh.header, fh.lengths.data_len());
                }
                Ok(Some(Event::Data(d))) => self.on_data(token, d),
                Ok(Some(Event::End)) => self.on_end(token),
                Err(e) => {
                    self.on_frame_error(token, &e);
                    if e.action() == rtgt_pdu::ErrorAction::DropConnection {
                        break;
                    }
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(token) {
            conn.rx = rx;
        }
        self.after_conn_activity(token);
    }

    pub(crate) fn on_header(&mut self, token: usize, header: &PduHeader, data_len: u32) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.collect.clear();
        match &mut conn.phase {
            Phase::Login(login) => {
                if let PduHeader::LoginRequest(req) = header {
                    conn.login_req = Some(*req);
                    conn.place = RxPlace::Collect;
                } else {
                    conn.place = RxPlace::Discard;
                    let step = login.handle_other(header);
                    self.login_step(token, step);
                }
            }
            Phase::Ffp { sidx, cid } => {
                let (sidx, cid) = (*sidx, *cid);
                let Some(ctx) = self.sessions.get_mut(sidx) else {
                    conn.place = RxPlace::Discard;
                    return;
                };
                let placement =
                    ctx.session
                        .begin_pdu(cid, header, conn.framer.ahs(), data_len, now);
                conn.place = match placement {
                    Placement::Discard => RxPlace::Discard,
                    Placement::Collect => RxPlace::Collect,
                    Placement::Task { task, offset } => {
                        let need = ctx
                            .session
                            .task(task)
                            .map_or(0, |t| t.buffer_len() as usize);
                        let slot = task.slot();
                        match ctx.slots.get_mut(slot) {
                            Some(s) => {
                                s.buf.ensure(need, self.cache.as_ref(), self.pool_size);
                                RxPlace::Task {
                                    sidx,
                                    slot,
                                    pos: offset as usize,
                                }
                            }
                            None => RxPlace::Discard,
                        }
                    }
                };
            }
            Phase::Gone => conn.place = RxPlace::Discard,
        }
    }

    pub(crate) fn on_data(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match &mut conn.place {
            RxPlace::Discard => {}
            RxPlace::Collect => conn.collect.extend_from_slice(data),
            RxPlace::Task { sidx, slot, pos } => {
                if let Some(s) = self
                    .sessions
                    .get_mut(*sidx)
                    .and_then(|c| c.slots.get_mut(*slot))
                {
                    if let Some(dst) = s.buf.as_mut_slice().get_mut(*pos..*pos + data.len()) {
                        dst.copy_from_slice(data);
                    }
                }
                *pos += data.len();
            }
        }
    }

    pub(crate) fn on_end(&mut self, token: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let data = core::mem::take(&mut conn.collect);
        match &mut conn.phase {
            Phase::Login(login) => {
                if let Some(req) = conn.login_req.take() {
                    let step = login.handle_login(&req, &data);
                    self.login_step(token, step);
                }
            }
            Phase::Ffp { sidx, cid } => {
                let (sidx, cid) = (*sidx, *cid);
                if let Some(ctx) = self.sessions.get_mut(sidx) {
                    ctx.session.end_pdu(cid, &data, now);
                }
            }
            Phase::Gone => {}
        }
        if let Some(conn) = self.conns.get_mut(token) {
            let mut data = data;
            data.clear();
            conn.collect = data;
        }
    }

    pub(crate) fn on_frame_error(&mut self, token: usize, e: &rtgt_pdu::PduError) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        tracing::debug!(peer = %conn.info.peer, error = %e, "framing error");
        match conn.phase {
            Phase::Ffp { sidx, cid } => {
                if let Some(ctx) = self.sessions.get_mut(sidx) {
                    ctx.session
                        .pdu_error(cid, e, conn.framer.last_header_bytes());
                }
            }
            _ => self.close_conn(token),
        }
    }

    /// After input or events touched a connection: run its session and collect its output.
    pub(crate) fn after_conn_activity(&mut self, token: usize) {
        let sidx = match self.conns.get(token).map(|c| &c.phase) {
            Some(Phase::Ffp { sidx, .. }) => Some(*sidx),
            _ => None,
        };
        if let Some(sidx) = sidx {
            self.drive_session(sidx);
        } else {
            self.mark_dirty(token);
        }
    }

    pub(crate) fn mark_dirty(&mut self, token: usize) {
        if !self.dirty.contains(&token) {
            self.dirty.push(token);
        }
    }

    // ------------------------------------------------------------------ login
}
