//! Control PDUs of the full feature phase: NOP-Out/NOP-In (RFC 7143 §11.18–§11.19, §6.4 ping),
//! Text Request/Response (§11.10–§11.11: text negotiation in full feature phase through
//! rtgt-pdu's negotiation engine (§6.2, §13: MaxRecvDataSegmentLength declarations, SendTargets
//! §13.3, unknown and private keys `NotUnderstood`, login-only keys `Reject`), requests
//! continued with the C bit, negotiation sequences and long answers continued with the Target
//! Transfer Tag), Logout (§11.14–§11.15, §6.5 with Time2Wait/Time2Retain) and the Asynchronous
//! Message requesting a logout (§11.9).

use std::time::Instant;

use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role};
use rtgt_pdu::text::{TextAssembler, parse_pairs};
use rtgt_pdu::{
    AsyncEvent, AsyncMessage, Itt, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    NopIn, NopOut, PduHeader, RejectReason, TextRequest, TextResponse, Ttt,
};

use super::session::{ConnState, DeferredPdu, Ping, Slot, TargetSession, TxItem};
use super::task::TaskId;
use super::{ConnId, Payload};

/// Per-connection Text exchange state.
#[derive(Debug, Clone)]
pub(crate) struct TextState {
    assembler: TextAssembler,
    /// A long answer being handed out in pieces: (ITT, TTT, text, bytes already sent, whether
    /// it ends the negotiation).
    pending: Option<(Itt, Ttt, Vec<u8>, usize, bool)>,
    /// The exchange in progress (ITT, the TTT of our last non-final response): a request
    /// continued with the C bit, or a negotiation the initiator has not finished (F = 0).
    sequence: Option<(Itt, Ttt)>,
    /// MaxRecvDataSegmentLength the initiator declared in the exchange in progress; it
    /// applies to what we send once the exchange ends.
    declared_mrdsl: Option<u32>,
}

impl Default for TextState {
    fn default() -> Self {
        Self {
            assembler: TextAssembler::new(TextAssembler::DEFAULT_LIMIT),
            pending: None,
            sequence: None,
            declared_mrdsl: None,
        }
    }
}

/// A logout waiting for aborted tasks to drain before its response.
#[derive(Debug, Clone)]
pub(crate) struct PendingLogout {
    pub conn: ConnId,
    pub itt: Itt,
    pub response: LogoutResponseCode,
    /// Connections to close after the response (the responding one included if listed).
    pub close: Vec<ConnId>,
    pub waiting: Vec<TaskId>,
}

impl TargetSession {
    pub(crate) fn end_control(
        &mut self,
        conn: ConnId,
        header: PduHeader,
        data: &[u8],
        now: Instant,
    ) {
        let immediate = header.is_immediate();
        let cmd_sn = match &header {
            PduHeader::NopOut(h) => h.cmd_sn,
            PduHeader::TextRequest(h) => h.cmd_sn,
            PduHeader::LogoutRequest(h) => h.cmd_sn,
            PduHeader::TaskMgmtRequest(h) => h.cmd_sn,
            _ => self.exp_cmd_sn,
        };
        // A NOP-Out answering our ping (ITT 0xffffffff) carries no CmdSN of its own.
        let is_ping_reply = matches!(&header, PduHeader::NopOut(h) if h.itt == Itt::RESERVED);
        if immediate || is_ping_reply {
            self.process_control(conn, header, data, Some(now));
            return;
        }
        if cmd_sn == self.exp_cmd_sn {
            self.consume_cmd_sn_then(conn, header, data, now);
        } else if cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn) {
            let d = DeferredPdu {
                conn,
                header,
                data: data.to_vec(),
            };
            self.place_in_window(cmd_sn, Slot::Deferred(Box::new(d)));
        }
        // Outside the window: silently ignored (RFC 7143 §4.2.2.1).
    }

    fn consume_cmd_sn_then(&mut self, conn: ConnId, header: PduHeader, data: &[u8], now: Instant) {
        self.exp_cmd_sn = self.exp_cmd_sn.incremented();
        self.window.pop_front();
        self.process_control(conn, header, data, Some(now));
        self.drain_window();
    }

    /// Acts on an in-order (or immediate) control PDU.
    pub(crate) fn process_control(
        &mut self,
        conn: ConnId,
        header: PduHeader,
        data: &[u8],
        now: Option<Instant>,
    ) {
        match header {
            PduHeader::NopOut(h) => self.handle_nop_out(conn, &h, data, now),
            PduHeader::TextRequest(h) => self.handle_text(conn, &h, data),
            PduHeader::LogoutRequest(h) => self.handle_logout(conn, &h),
            PduHeader::TaskMgmtRequest(h) => self.handle_tmf(conn, &h),
            other => {
                let bytes = other.encode(rtgt_pdu::BhsLengths::ZERO);
                self.queue_reject(conn, RejectReason::PROTOCOL_ERROR, &bytes);
            }
        }
    }

    fn handle_nop_out(&mut self, conn: ConnId, h: &NopOut, data: &[u8], _now: Option<Instant>) {
        if h.itt == Itt::RESERVED {
            // An answer to our NOP-In ping (or a plain keep-alive): nothing to send back.
            if let Some(c) = self.conn_mut(conn) {
                if c.ping
                    .is_some_and(|p| p.ttt == h.ttt || h.ttt == Ttt::RESERVED)
                {
                    c.ping = None;
                }
            }
            return;
        }
        if h.ttt != Ttt::RESERVED {
            let bytes = PduHeader::NopOut(*h).encode(rtgt_pdu::BhsLengths::ZERO);
            self.queue_reject(conn, RejectReason::PROTOCOL_ERROR, &bytes);
            return;
        }
        let nop = NopIn {
            lun: h.lun,
            itt: h.itt,
            ttt: Ttt::RESERVED,
            ..Default::default()
        };
        let payload = if data.is_empty() {
            Payload::None
        } else {
            Payload::Owned(data.to_vec())
        };
        self.push_pdu(conn, PduHeader::NopIn(nop), payload, true);
    }

    /// Sends a target-initiated NOP-In ping and arms its timeout.
    pub(crate) fn send_ping(&mut self, conn: ConnId, now: Instant) {
        let ttt = self.alloc_ttt();
        let timeout = self.nop_timeout;
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        c.ping = Some(Ping {
            ttt,
            deadline: now + timeout,
        });
        let nop = NopIn {
            itt: Itt::RESERVED,
            ttt,
            ..Default::default()
        };
        self.push_pdu(conn, PduHeader::NopIn(nop), Payload::None, false);
    }

    // ---------------------------------------------------------------- text

    fn handle_text(&mut self, conn: ConnId, h: &TextRequest, data: &[u8]) {
        let max_seg = self
            .conn(conn)
            .map_or(8192, |c| c.params.max_xmit_data_segment_length.max(512))
            as usize;
        let reject = |s: &mut Self, reason| {
            let bytes = PduHeader::TextRequest(*h).encode(rtgt_pdu::BhsLengths::ZERO);
            if let Some(c) = s.conn_mut(conn) {
                c.text = TextState::default();
            }
            s.queue_reject(conn, reason, &bytes);
        };
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        if h.ttt == Ttt::RESERVED {
            // A new exchange: whatever was in progress is forgotten (§11.10.4).
            c.text = TextState::default();
        } else {
            // The next piece of a long answer of ours?
            if let Some((itt, ttt, text, sent, ends)) = c.text.pending.take() {
                if itt == h.itt && ttt == h.ttt && data.is_empty() && !h.continue_flag {
                    self.send_text_piece(conn, h.itt, text, sent, max_seg, ends);
                    return;
                }
            }
            // Otherwise it must continue the exchange our last response left open.
            if c.text.sequence != Some((h.itt, h.ttt)) {
                reject(self, RejectReason::INVALID_PDU_FIELD);
                return;
            }
        }
        let assembled = c.text.assembler.push(data, h.continue_flag);
        let text = match assembled {
            Ok(Some(t)) => t,
            Ok(None) => {
                // More request text follows: acknowledge with an empty response (§11.10.2).
                let ttt = self.alloc_ttt();
                if let Some(c) = self.conn_mut(conn) {
                    c.text.sequence = Some((h.itt, ttt));
                }
                let resp = TextResponse {
                    final_pdu: false,
                    itt: h.itt,
                    ttt,
                    ..Default::default()
                };
                self.push_pdu(conn, PduHeader::TextResponse(resp), Payload::None, true);
                return;
            }
            Err(_) => {
                reject(self, RejectReason::PROTOCOL_ERROR);
                return;
            }
        };
        let Some(answer) = self.answer_text(conn, &text) else {
            reject(self, RejectReason::PROTOCOL_ERROR);
            return;
        };
        // Without F the initiator will go on negotiating: the answer leaves the exchange open
        // (no F, a TTT to continue with) and declared values wait for its end.
        self.send_text_piece(conn, h.itt, answer, 0, max_seg, h.final_pdu);
    }

    /// Queues the next piece of a Text answer: at most `max_seg` bytes from `sent` on. `ends`:
    /// the answer ends the exchange (F = 1 on its last piece, declared values applied after
    /// it); otherwise its last piece leaves the exchange open with a TTT.
    fn send_text_piece(
        &mut self,
        conn: ConnId,
        itt: Itt,
        text: Vec<u8>,
        sent: usize,
        max_seg: usize,
        ends: bool,
    ) {
        let rest = text.len().saturating_sub(sent);
        let len = rest.min(max_seg);
        let piece = text.get(sent..sent + len).unwrap_or(&[]).to_vec();
        let last = sent + len >= text.len();
        let final_pdu = last && ends;
        let ttt = if final_pdu {
            Ttt::RESERVED
        } else {
            self.alloc_ttt()
        };
        // The C bit says a key=value pair is split across the boundary.
        let split_pair = !last && piece.last().is_some_and(|b| *b != 0);
        let resp = TextResponse {
            final_pdu,
            continue_flag: split_pair,
            itt,
            ttt,
            ..Default::default()
        };
        let mut applied = None;
        if let Some(c) = self.conn_mut(conn) {
            if !last {
                c.text.pending = Some((itt, ttt, text, sent + len, ends));
            } else if final_pdu {
                applied = c.text.declared_mrdsl.take();
                c.text = TextState::default();
            } else {
                c.text.sequence = Some((itt, ttt));
            }
        }
        let payload = if piece.is_empty() {
            Payload::None
        } else {
            Payload::Owned(piece)
        };
        self.push_pdu(conn, PduHeader::TextResponse(resp), payload, true);
        // RFC 7143 §13.12: the initiator's new MaxRecvDataSegmentLength limits the PDUs we
        // send after the exchange that declared it.
        if let (Some(v), Some(c)) = (applied, self.conn_mut(conn)) {
            c.params.max_xmit_data_segment_length = v;
        }
    }

    /// Answers the keys of a full-feature Text Request through the negotiation engine
    /// (RFC 7143 §6.2): SendTargets (§13.3) is answered with the targets, a
    /// MaxRecvDataSegmentLength declaration is recorded for the end of the exchange, unknown
    /// and private (`X-`, `X#`) keys are `NotUnderstood`, keys that may only be negotiated at
    /// login are `Reject`. `None` when the request breaks the negotiation rules (a key twice,
    /// a key only the target may send): the request is rejected.
    fn answer_text(&mut self, conn: ConnId, text: &[u8]) -> Option<Vec<u8>> {
        let pairs = parse_pairs(text).ok()?;
        let c = self.conn(conn)?;
        let local = c.local_addr;
        let mut negotiator = Negotiator::new(
            Role::Target,
            LocalConfig {
                max_recv_data_segment_length: c.params.max_recv_data_segment_length,
                ..LocalConfig::default()
            },
        );
        let ex = negotiator.process(Context::FULL_FEATURE, &pairs).ok()?;
        // Declared (and valid: an invalid value is answered Reject).
        let declared = pairs.iter().any(|p| p.key == "MaxRecvDataSegmentLength")
            && ex.answer("MaxRecvDataSegmentLength").is_none();
        let mut out = Vec::new();
        for p in &pairs {
            if p.key == "SendTargets" {
                let only = if self.is_discovery() {
                    None
                } else {
                    Some(self.params.target_name.as_str())
                };
                out.extend(super::discovery::send_targets(
                    &self.catalog,
                    &self.params.initiator_name,
                    ex.send_targets.as_deref().unwrap_or(p.value),
                    only,
                    local,
                ));
            }
        }
        for a in &ex.answers {
            rtgt_pdu::text::encode_pair(&a.key, &a.value, &mut out);
        }
        if declared {
            let v = negotiator.params().max_send_data_segment_length;
            if let Some(c) = self.conn_mut(conn) {
                c.text.declared_mrdsl = Some(v);
            }
        }
        Some(out)
    }

    // ---------------------------------------------------------------- logout

    fn handle_logout(&mut self, conn: ConnId, h: &LogoutRequest) {
        let mut close = Vec::new();
        let response = match h.reason {
            LogoutReason::CLOSE_SESSION => {
                self.logging_out = true;
                close.extend(
                    (0..self.conns.len() as u16)
                        .map(ConnId)
                        .filter(|c| self.conn(*c).is_some()),
                );
                LogoutResponseCode::SUCCESS
            }
            LogoutReason::CLOSE_CONNECTION => match self.connection_by_cid(h.cid) {
                Some(target) => {
                    close.push(target);
                    LogoutResponseCode::SUCCESS
                }
                None => LogoutResponseCode::CID_NOT_FOUND,
            },
            LogoutReason::REMOVE_CONNECTION_FOR_RECOVERY => {
                if self.params.error_recovery_level >= 2 {
                    LogoutResponseCode::CLEANUP_FAILED
                } else {
                    LogoutResponseCode::RECOVERY_NOT_SUPPORTED
                }
            }
            _ => {
                let bytes = PduHeader::LogoutRequest(*h).encode(rtgt_pdu::BhsLengths::ZERO);
                self.queue_reject(conn, RejectReason::PROTOCOL_ERROR, &bytes);
                return;
            }
        };
        // Stop further traffic on the closing connections and abort their tasks; other
        // connections closed by this request are dropped at once.
        let mut waiting = Vec::new();
        for c in &close {
            for id in self.tasks.live_ids() {
                if self.tasks.get(id).is_some_and(|t| t.conn == *c) && self.abort_task(id) {
                    waiting.push(id);
                }
            }
            if *c != conn {
                self.drop_connection(*c);
            } else if let Some(cc) = self.conn_mut(*c) {
                cc.state = ConnState::Closing;
                cc.logout_requested = None;
            }
        }
        self.pending_logouts.push(PendingLogout {
            conn,
            itt: h.itt,
            response,
            close,
            waiting,
        });
        self.check_logout_drain();
    }

    pub(crate) fn check_logout_drain(&mut self) {
        let mut i = 0;
        while i < self.pending_logouts.len() {
            let drained = self.pending_logouts[i]
                .waiting
                .iter()
                .all(|id| self.tasks.get(*id).is_none_or(|t| !t.engine_busy));
            if !drained {
                i += 1;
                continue;
            }
            let l = self.pending_logouts.remove(i);
            let erl0 = self.params.error_recovery_level == 0;
            let resp = LogoutResponse {
                response: l.response,
                itt: l.itt,
                time2wait: if l.response == LogoutResponseCode::SUCCESS {
                    0
                } else {
                    self.params.default_time2wait
                },
                time2retain: if erl0 {
                    0
                } else {
                    self.params.default_time2retain
                },
                ..Default::default()
            };
            // The response goes out even though the connection is closing.
            if let Some(c) = self.conn_mut(l.conn) {
                if c.state != ConnState::Closed {
                    c.txq.push_back(TxItem::Pdu {
                        header: PduHeader::LogoutResponse(resp),
                        payload: Payload::None,
                        advance_stat_sn: true,
                    });
                    if l.close.contains(&l.conn) {
                        c.txq.push_back(TxItem::Close);
                    }
                }
            }
        }
    }

    /// Asks the initiator to log out (target shutdown): an Asynchronous Message with
    /// AsyncEvent 1 on every connection (RFC 7143 §11.9.1). Connections that have not logged
    /// out within the grace period are dropped by [`TargetSession::handle_timeout`].
    pub fn request_logout(&mut self, now: Instant) {
        let grace = self.logout_grace().as_secs().min(u64::from(u16::MAX)) as u16;
        for i in 0..self.conns.len() {
            let conn = ConnId(i as u16);
            let Some(c) = self.conn_mut(conn) else {
                continue;
            };
            if c.state != ConnState::Active || c.logout_requested.is_some() {
                continue;
            }
            c.logout_requested = Some(now);
            let msg = AsyncMessage {
                event: AsyncEvent::LOGOUT_REQUESTED,
                parameter3: grace,
                ..Default::default()
            };
            self.push_pdu(conn, PduHeader::AsyncMessage(msg), Payload::None, true);
        }
    }
}
