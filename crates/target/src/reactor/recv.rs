//! Receiving: accepted connections, the framer's zero-copy mode (RFC 7143 §11.2 framing,
//! §7.8 digests) — each PDU's header goes to the login or session state machine, its data
//! segment into the task buffer the session names (or collected for control PDUs).
//!
//! Data segments go socket → task buffer without a user-space copy whenever they have not
//! arrived yet: when the receive buffer has been consumed up to the middle of a task's data
//! segment with at least [`DIRECT_MIN`] bytes still to come, the next receive targets the
//! task buffer at the right offset for exactly those bytes ([`Direct`]); the framer then
//! walks over them in place (checking the data digest as it goes) and padding and digest
//! arrive with the next ordinary receive.
//!
//! A big receive into the connection's buffer usually brings headers together with their data
//! segments, which then have to be copied. While a connection carries data segments of at
//! least [`HEADER_FIRST_MIN`] bytes it is therefore read *header first* ([`Core::rx_want`]):
//! each receive asks for no more than the rest of the current PDU's trailer and the next
//! header, so the next data segment is still in the socket when its header has been decoded
//! and goes straight to the task buffer. A PDU with a smaller (or no) data segment switches
//! back to big receives, where one receive for many PDUs beats one copy per PDU.

use std::collections::VecDeque;

use rtgt_pdu::{Digests, Event, Framer, PduHeader};
use rtgt_session::target::login::{LoginConnection, LoginSettings};
use rtgt_session::target::{Placement, TaskId};

use super::buffers::TaskBuf;
use super::core::{Conn, Core, LOGIN_TIMEOUT, Life, Phase, RX_BUF, RxPlace};
use super::send::SendBatch;
use super::shared::ConnInfo;

/// Smallest remainder of a data segment that is received straight into the task buffer.
pub(crate) const DIRECT_MIN: usize = 4096;

/// Data segments from this size on switch the connection to header-first receives.
pub(crate) const HEADER_FIRST_MIN: usize = 128 * 1024;

/// A receive straight into a task buffer: `len` bytes at `pos` of task `task`'s buffer (slot
/// `slot` of session `sidx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direct {
    pub sidx: usize,
    pub slot: usize,
    pub task: TaskId,
    pub pos: usize,
    pub len: usize,
}

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
            rx: Some(Box::new(TaskBuf::heap(RX_BUF))),
            direct: None,
            header_first: false,
            trailer: 0,
            phase: Phase::Login(Box::new(login)),
            place: RxPlace::Discard,
            collect: Vec::new(),
            login_req: None,
            digests: Digests::NONE,
            plain: 0,
            txq: VecDeque::with_capacity(64),
            batch: Some(SendBatch::new()),
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
        let Some(rx) = conn.rx.take() else {
            return;
        };
        self.process_input(token, rx.as_slice().get(..n).unwrap_or(&[]));
        if let Some(conn) = self.conns.get_mut(token) {
            conn.rx = Some(rx);
        }
        self.after_conn_activity(token);
    }

    /// Runs the framer over `input` (bytes received into the connection's buffer).
    fn process_input(&mut self, token: usize, mut input: &[u8]) {
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
    }

    /// Where the connection's next receive should go when it can go straight into a task
    /// buffer (see the module documentation).
    pub(crate) fn direct_target(&self, token: usize) -> Option<Direct> {
        let conn = self.conns.get(token)?;
        if conn.life != Life::Open {
            return None;
        }
        let RxPlace::Task {
            sidx,
            slot,
            task,
            pos,
            left,
        } = conn.place
        else {
            return None;
        };
        if left < DIRECT_MIN {
            return None;
        }
        let s = self.sessions.get(sidx)?.slots.get(slot)?;
        (s.buf.as_slice().len() >= pos + left).then_some(Direct {
            sidx,
            slot,
            task,
            pos,
            len: left,
        })
    }

    /// How many bytes the next receive into the connection's buffer should ask for (see the
    /// module documentation).
    pub(crate) fn rx_want(&self, token: usize) -> usize {
        let Some(conn) = self.conns.get(token) else {
            return RX_BUF;
        };
        if !conn.header_first {
            return RX_BUF;
        }
        let header = rtgt_pdu::BHS_LEN
            + if conn.framer.digests().header {
                rtgt_pdu::DIGEST_LEN
            } else {
                0
            };
        match conn.place {
            RxPlace::Task { left, .. } => left + conn.trailer + header,
            _ if conn.framer.is_idle() => header,
            _ => RX_BUF,
        }
    }

    /// `n` bytes arrived straight in a task buffer as `d` describes. `lent` is that buffer
    /// when the ring held it (it goes back to the task, or is dropped if the task is gone);
    /// `None` when it stayed in its slot.
    pub(crate) fn on_direct_received(
        &mut self,
        token: usize,
        d: Direct,
        n: usize,
        lent: Option<Box<TaskBuf>>,
    ) {
        let lent = lent.and_then(|b| {
            let ctx = self.sessions.get_mut(d.sidx)?;
            let alive = ctx.session.task_in_slot(d.slot) == Some(d.task);
            let slot = ctx.slots.get_mut(d.slot)?;
            if alive && slot.buf.is_none() {
                slot.restore(b, false);
                None
            } else {
                Some(b)
            }
        });
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.life, Life::Closing | Life::Handoff) {
            return;
        }
        // Walk the framer over the bytes where they landed: they are data of the current PDU
        // (the receive asked for no more than its remainder), so only Data events come back.
        let n = n.min(d.len);
        let data: &[u8] = match &lent {
            Some(b) => b.as_slice(),
            None => self
                .sessions
                .get(d.sidx)
                .and_then(|c| c.slots.get(d.slot))
                .map_or(&[], |s| s.buf.as_slice()),
        };
        let mut input = data.get(d.pos..d.pos + n).unwrap_or(&[]);
        let mut placed = 0;
        let mut error = None;
        while !input.is_empty() {
            match conn.framer.next_event(&mut input) {
                Ok(Some(Event::Data(chunk))) => placed += chunk.len(),
                Ok(_) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let RxPlace::Task { pos, left, .. } = &mut conn.place {
            *pos += placed;
            *left = left.saturating_sub(placed);
        }
        self.stats.rx_direct += placed as u64;
        if let Some(e) = error {
            self.on_frame_error(token, &e);
        } else if placed < n {
            // Cannot happen with a consistent framer; never deliver a PDU built on it.
            tracing::error!("direct receive out of step with the framer");
            self.close_conn(token);
        } else {
            // Padding, digest and End may be due without further input.
            self.process_input(token, &[]);
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
                if !matches!(placement, Placement::Task { .. }) {
                    conn.header_first &= data_len as usize >= HEADER_FIRST_MIN;
                }
                conn.place = match placement {
                    Placement::Discard => RxPlace::Discard,
                    Placement::Collect => RxPlace::Collect,
                    Placement::Task { task, offset } => {
                        conn.header_first = data_len as usize >= HEADER_FIRST_MIN;
                        conn.trailer = rtgt_pdu::pad_len(data_len as usize)
                            + if conn.framer.digests().data {
                                rtgt_pdu::DIGEST_LEN
                            } else {
                                0
                            };
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
                                    task,
                                    pos: offset as usize,
                                    left: data_len as usize,
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
            RxPlace::Task {
                sidx,
                slot,
                pos,
                left,
                ..
            } => {
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
                *left = left.saturating_sub(data.len());
                self.stats.rx_copied += data.len() as u64;
            }
        }
    }

    pub(crate) fn on_end(&mut self, token: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let data = core::mem::take(&mut conn.collect);
        conn.place = RxPlace::Discard;
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
        // The framer skips the rest of the PDU (or the connection drops): nothing more of it
        // is placed anywhere.
        conn.place = RxPlace::Discard;
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
