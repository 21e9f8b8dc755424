//! Hand-driven connections for the torture cases: full-feature sessions whose sequence
//! numbers the case controls (RFC 7143 §3.2.2, §4.2.2.1), raw login exchanges (§6.3, §11.12),
//! and a classifier of what the target answered.

use std::fmt;
use std::time::{Duration, Instant};

use rtgt_pdu::text::{KeyValue, encode_pairs};
use rtgt_pdu::{
    AsyncEvent, Isid, Itt, LoginRequest, LoginResponse, LoginStage, LoginStatus,
    LogoutResponseCode, Lun, NopOut, Opcode, Pdu, PduHeader, R2t, RejectReason, ResponseCode,
    ScsiCommand, ScsiStatus, SenseSegment, Sn, TaskAttribute, TmfResponse, Ttt,
};
use rtgt_session::initiator::LoginOutcome;

use super::Ctx;
use crate::connect::{ConnectOptions, LoginRequestSpec, login, random_isid};
use crate::error::{ClientError, Result};
use crate::scsi::Sense;
use crate::transport::TcpTransport;
use crate::wire::PduStream;

/// How long a case waits for an answer that should come.
pub(crate) const ANSWER: Duration = Duration::from_secs(5);
/// How long a case waits to be sure nothing comes.
pub(crate) const SILENCE: Duration = Duration::from_millis(1500);

/// What the target did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Obs {
    /// A Reject PDU.
    Reject {
        reason: RejectReason,
        opcode: Opcode,
    },
    /// The connection was closed (or reset, or the stream became undecodable).
    Closed(String),
    /// Nothing within the wait.
    Timeout,
    /// A SCSI Response (or a Data-In with status).
    Status {
        itt: Itt,
        response: ResponseCode,
        status: ScsiStatus,
        sense: Option<Sense>,
    },
    /// An R2T.
    R2t(R2t),
    /// A TMF response.
    Tmf(TmfResponse),
    /// A Logout Response.
    Logout(LogoutResponseCode),
    /// A NOP-In answering our ping.
    Pong(Itt),
    /// A Login Response.
    Login {
        status: LoginStatus,
        text: String,
        transit: bool,
    },
    /// An Asynchronous Message.
    Async(AsyncEvent),
    /// Something else.
    Other(Opcode),
}

impl fmt::Display for Obs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reject { reason, opcode } => write!(f, "Reject {reason} (of {opcode})"),
            Self::Closed(why) => write!(f, "connection closed ({why})"),
            Self::Timeout => f.write_str("no answer"),
            Self::Status {
                response,
                status,
                sense,
                ..
            } => {
                if *response != ResponseCode::COMMAND_COMPLETED {
                    return write!(f, "SCSI Response: target failure {response}");
                }
                write!(f, "SCSI status {status}")?;
                if let Some(s) = sense {
                    write!(f, " ({s})")?;
                }
                Ok(())
            }
            Self::R2t(r) => write!(
                f,
                "R2T offset {} len {}",
                r.buffer_offset, r.desired_data_transfer_length
            ),
            Self::Tmf(r) => write!(f, "TMF response {r}"),
            Self::Logout(r) => write!(f, "Logout Response {r}"),
            Self::Pong(_) => f.write_str("NOP-In"),
            Self::Login { status, .. } => write!(
                f,
                "Login Response status {:#06x} ({})",
                status.0,
                rtgt_session::initiator::login::describe_status(*status)
            ),
            Self::Async(e) => write!(f, "Async Message {e}"),
            Self::Other(op) => write!(f, "unexpected {op}"),
        }
    }
}

impl Obs {
    pub(crate) fn is_reject(&self, reasons: &[RejectReason]) -> bool {
        matches!(self, Self::Reject { reason, .. } if reasons.contains(reason))
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }

    pub(crate) fn is_check_condition(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: ScsiStatus::CHECK_CONDITION,
                ..
            }
        ) || matches!(self, Self::Status { response, .. } if *response != ResponseCode::COMMAND_COMPLETED)
    }

    pub(crate) fn login_class(&self) -> Option<u8> {
        match self {
            Self::Login { status, .. } => Some(status.class().0),
            _ => None,
        }
    }
}

/// A logged-in connection driven by hand.
pub(crate) struct Raw {
    pub(crate) stream: PduStream,
    pub(crate) cmd_sn: Sn,
    pub(crate) exp_stat_sn: Sn,
    pub(crate) exp_cmd_sn: Sn,
    pub(crate) max_cmd_sn: Sn,
    pub(crate) lun: Lun,
    pub(crate) outcome: LoginOutcome,
    next_itt: u32,
}

impl Raw {
    /// Logs in with `opts` (tweaked by the case), first CmdSN `cmd_sn`.
    pub(crate) fn login(ctx: &Ctx, opts: &ConnectOptions, cmd_sn: Sn) -> Result<Self> {
        let spec = LoginRequestSpec {
            target: Some(&ctx.url.target),
            isid: random_isid(0x7e57),
            tsih: 0,
            cid: 0,
            cmd_sn,
        };
        let (stream, outcome) = login(&ctx.url.portal, opts, &spec)?;
        let mut r = Self {
            stream,
            cmd_sn: outcome.cmd_sn,
            exp_stat_sn: outcome.stat_sn.incremented(),
            exp_cmd_sn: outcome.exp_cmd_sn,
            max_cmd_sn: outcome.max_cmd_sn,
            lun: rtgt_pdu::Lun::from_number(ctx.url.lun).unwrap_or_default(),
            outcome,
            next_itt: 0x1000,
        };
        // Clear unit attentions so that later statuses mean what the case provoked.
        for _ in 0..4 {
            match r.tur() {
                Obs::Status {
                    status: ScsiStatus::GOOD,
                    ..
                } => break,
                Obs::Status { .. } => {}
                other => return Err(ClientError::Unexpected(format!("TEST UNIT READY: {other}"))),
            }
        }
        Ok(r)
    }

    /// A fresh ITT.
    pub(crate) fn itt(&mut self) -> Itt {
        self.next_itt += 1;
        Itt(self.next_itt)
    }

    /// Takes the next CmdSN for a non-immediate command.
    pub(crate) fn take_cmd_sn(&mut self) -> Sn {
        let s = self.cmd_sn;
        self.cmd_sn = s.incremented();
        s
    }

    /// Sends a PDU (with the negotiated digests).
    pub(crate) fn send(&mut self, h: impl Into<PduHeader>, data: Vec<u8>) -> Result<()> {
        self.stream.send_pdu(&Pdu::with_data(h, data))
    }

    /// A SCSI Command header for `cdb` with the next CmdSN.
    pub(crate) fn command(&mut self, cdb: &[u8], read: bool, write: bool, len: u32) -> ScsiCommand {
        let mut c = [0u8; 16];
        if let Some(d) = c.get_mut(..cdb.len()) {
            d.copy_from_slice(cdb);
        }
        ScsiCommand {
            immediate: false,
            final_pdu: true,
            read,
            write,
            attr: TaskAttribute::SIMPLE,
            lun: self.lun,
            itt: self.itt(),
            expected_data_transfer_length: len,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
        }
    }

    fn note(&mut self, h: &PduHeader) {
        let (stat, exp, max) = match h {
            PduHeader::ScsiResponse(r) => (Some(r.stat_sn), r.exp_cmd_sn, r.max_cmd_sn),
            PduHeader::DataIn(d) => (d.status.map(|s| s.stat_sn), d.exp_cmd_sn, d.max_cmd_sn),
            PduHeader::NopIn(n) => (
                (n.itt != Itt::RESERVED).then_some(n.stat_sn),
                n.exp_cmd_sn,
                n.max_cmd_sn,
            ),
            PduHeader::TaskMgmtResponse(t) => (Some(t.stat_sn), t.exp_cmd_sn, t.max_cmd_sn),
            PduHeader::LogoutResponse(l) => (Some(l.stat_sn), l.exp_cmd_sn, l.max_cmd_sn),
            PduHeader::TextResponse(t) => (Some(t.stat_sn), t.exp_cmd_sn, t.max_cmd_sn),
            PduHeader::Reject(r) => (Some(r.stat_sn), r.exp_cmd_sn, r.max_cmd_sn),
            PduHeader::R2t(r) => (None, r.exp_cmd_sn, r.max_cmd_sn),
            PduHeader::AsyncMessage(a) => (Some(a.stat_sn), a.exp_cmd_sn, a.max_cmd_sn),
            _ => return,
        };
        if let Some(s) = stat {
            if s.serial_ge(self.exp_stat_sn) {
                self.exp_stat_sn = s.incremented();
            }
        }
        if exp.serial_gt(self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if max.serial_gt(self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    /// Waits up to `wait` for the first PDU that answers something (target NOP-In pings are
    /// answered and skipped; Data-In without status is skipped).
    pub(crate) fn observe(&mut self, wait: Duration) -> Obs {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Obs::Timeout;
            }
            let pdu = match self.stream.recv_within(left) {
                Ok(Some(p)) => p,
                Ok(None) => return Obs::Timeout,
                Err(e) => return Obs::Closed(e.to_string()),
            };
            self.note(&pdu.header);
            match pdu.header {
                PduHeader::NopIn(n) if n.itt == Itt::RESERVED => {
                    if n.ttt != Ttt::RESERVED {
                        let reply = NopOut {
                            immediate: true,
                            lun: n.lun,
                            itt: Itt::RESERVED,
                            ttt: n.ttt,
                            cmd_sn: self.cmd_sn,
                            exp_stat_sn: self.exp_stat_sn,
                        };
                        if let Err(e) = self.send(reply, Vec::new()) {
                            return Obs::Closed(e.to_string());
                        }
                    }
                }
                PduHeader::NopIn(n) => return Obs::Pong(n.itt),
                PduHeader::DataIn(d) => {
                    if let Some(s) = d.status {
                        return Obs::Status {
                            itt: d.itt,
                            response: ResponseCode::COMMAND_COMPLETED,
                            status: s.status,
                            sense: None,
                        };
                    }
                }
                PduHeader::ScsiResponse(r) => {
                    let sense = SenseSegment::parse(&pdu.data)
                        .ok()
                        .and_then(|s| Sense::parse(s.sense));
                    return Obs::Status {
                        itt: r.itt,
                        response: r.response,
                        status: r.status,
                        sense,
                    };
                }
                PduHeader::Reject(r) => {
                    let opcode = Opcode(pdu.data.first().copied().unwrap_or(0) & 0x3f);
                    return Obs::Reject {
                        reason: r.reason,
                        opcode,
                    };
                }
                PduHeader::R2t(r) => return Obs::R2t(r),
                PduHeader::TaskMgmtResponse(t) => return Obs::Tmf(t.response),
                PduHeader::LogoutResponse(l) => return Obs::Logout(l.response),
                PduHeader::AsyncMessage(a) => return Obs::Async(a.event),
                PduHeader::LoginResponse(l) => {
                    return Obs::Login {
                        status: l.status,
                        text: text_of(&pdu.data),
                        transit: l.next_stage.is_some(),
                    };
                }
                other => return Obs::Other(other.opcode()),
            }
        }
    }

    /// Observes until an answer concerning `itt` (or a connection-level event) arrives.
    pub(crate) fn observe_for(&mut self, itt: Itt, wait: Duration) -> Obs {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.observe(left) {
                Obs::Status { itt: i, .. } if i != itt => {}
                Obs::Pong(i) if i != itt => {}
                other => return other,
            }
        }
    }

    /// Sends an immediate NOP-Out ping and waits for its NOP-In.
    pub(crate) fn ping(&mut self) -> Obs {
        let itt = self.itt();
        let nop = NopOut {
            immediate: true,
            lun: Lun::ZERO,
            itt,
            ttt: Ttt::RESERVED,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        if let Err(e) = self.send(nop, Vec::new()) {
            return Obs::Closed(e.to_string());
        }
        self.observe_for(itt, ANSWER)
    }

    /// A valid TEST UNIT READY with the next CmdSN.
    pub(crate) fn tur(&mut self) -> Obs {
        let cmd = self.command(&[0; 6], false, false, 0);
        let itt = cmd.itt;
        if let Err(e) = self.send(cmd, Vec::new()) {
            return Obs::Closed(e.to_string());
        }
        self.observe_for(itt, ANSWER)
    }

    /// Whether the connection still answers a ping and a valid command.
    pub(crate) fn still_serves(&mut self) -> std::result::Result<(), String> {
        match self.ping() {
            Obs::Pong(_) => {}
            other => return Err(format!("ping afterwards: {other}")),
        }
        match self.tur() {
            Obs::Status {
                status: ScsiStatus::GOOD,
                ..
            } => Ok(()),
            other => Err(format!("TEST UNIT READY afterwards: {other}")),
        }
    }
}

/// The text of a login/text data segment, NULs shown as spaces.
pub(crate) fn text_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace('\0', " ")
        .trim_end()
        .to_owned()
}

/// A raw connection in the login phase.
pub(crate) struct RawLogin {
    pub(crate) stream: PduStream,
    pub(crate) isid: Isid,
    pub(crate) exp_stat_sn: Sn,
}

impl RawLogin {
    /// Connects without logging in.
    pub(crate) fn connect(ctx: &Ctx) -> Result<Self> {
        let t = TcpTransport::connect(&ctx.url.portal, ctx.opts.timeout)?;
        Ok(Self {
            stream: PduStream::new(Box::new(t), ANSWER),
            isid: random_isid(0x7e58),
            exp_stat_sn: Sn(0),
        })
    }

    /// A Login Request header.
    pub(crate) fn request(&self, csg: LoginStage, nsg: Option<LoginStage>) -> LoginRequest {
        LoginRequest {
            next_stage: nsg,
            continue_flag: false,
            current_stage: csg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt: Itt(0),
            cid: 0,
            cmd_sn: Sn(1),
            exp_stat_sn: self.exp_stat_sn,
        }
    }

    /// The identity keys of a normal session.
    pub(crate) fn identity(ctx: &Ctx) -> Vec<KeyValue> {
        vec![
            KeyValue::new("InitiatorName", ctx.opts.initiator_name.clone()),
            KeyValue::new("SessionType", "Normal"),
            KeyValue::new("TargetName", ctx.url.target.clone()),
        ]
    }

    /// Sends a login request with `pairs` and returns the answer.
    pub(crate) fn exchange(&mut self, h: LoginRequest, pairs: &[KeyValue]) -> Obs {
        self.exchange_bytes(h, encode_pairs(pairs))
    }

    /// Sends a login request with raw text and returns the answer.
    pub(crate) fn exchange_bytes(&mut self, h: LoginRequest, text: Vec<u8>) -> Obs {
        if let Err(e) = self.stream.send_pdu(&Pdu::with_data(h, text)) {
            return Obs::Closed(e.to_string());
        }
        self.answer()
    }

    /// Waits for the next PDU.
    pub(crate) fn answer(&mut self) -> Obs {
        match self.stream.recv_within(ANSWER) {
            Ok(Some(p)) => match p.header {
                PduHeader::LoginResponse(LoginResponse {
                    status,
                    stat_sn,
                    next_stage,
                    ..
                }) => {
                    self.exp_stat_sn = stat_sn.incremented();
                    Obs::Login {
                        status,
                        text: text_of(&p.data),
                        transit: next_stage.is_some(),
                    }
                }
                PduHeader::Reject(r) => Obs::Reject {
                    reason: r.reason,
                    opcode: Opcode(p.data.first().copied().unwrap_or(0) & 0x3f),
                },
                other => Obs::Other(other.opcode()),
            },
            Ok(None) => Obs::Timeout,
            Err(e) => Obs::Closed(e.to_string()),
        }
    }

    /// The value of `key` in a login answer's text.
    pub(crate) fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.split(' ')
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}
