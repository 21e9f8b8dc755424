//! The initiator's login state machine (RFC 7143 §6 login phase, §11.12 Login Request, §11.13
//! Login Response): security negotiation with AuthMethod and CHAP (§12.1.3), operational
//! negotiation through `rtgt_pdu`'s negotiation engine (§6.2, §13), stage transitions with the
//! T/CSG/NSG rules (§6.3), text continuation with the C bit in both directions (§6.2,
//! §11.12.4), ISID/TSIH handling for new sessions and for connections added to an existing
//! session (MC/S, §4.2.2), version checks (§11.12.4), and the status classes of the response
//! (§11.13.5), including redirection.
//!
//! ```
//! use rtgt_pdu::Isid;
//! use rtgt_session::initiator::{Login, LoginConfig};
//!
//! let cfg = LoginConfig::normal("iqn.2026-11.io.rtgt:client", "iqn.2026-11.io.rtgt:default", Isid([0x80, 0, 0, 1, 0, 0]));
//! let mut login = Login::new(cfg);
//! let first = login.start().unwrap();
//! let text = String::from_utf8(first.data.clone()).unwrap();
//! assert!(text.contains("InitiatorName=iqn.2026-11.io.rtgt:client\0"));
//! assert!(text.contains("AuthMethod=None\0"));
//! ```

use rtgt_pdu::negotiation::{
    Context, Digest, LocalConfig, NegotiatedParams, NegotiationError, Negotiator, Role,
    SessionType as PduSessionType, Stage,
};
use rtgt_pdu::text::{KeyValue, TextAssembler, TextError, encode_pairs, parse_pairs};
use rtgt_pdu::{
    Isid, Itt, LoginRequest, LoginResponse, LoginStage, LoginStatus, LoginStatusClass, Pdu, Sn,
};

use super::auth::{AuthError, ChapCredentials, ChapInitiator};
use super::session::{ConnectionSetup, SessionSetup};
use super::window::CmdWindow;
use crate::chap::{ChapRng, OsRng};
use crate::params::{ConnectionParams, DigestKind, SessionParams, SessionType, TaskReporting};

/// The ITT every Login Request of a connection carries.
const LOGIN_ITT: Itt = Itt(0);

/// Login exchanges after which a login that has not completed is abandoned.
const MAX_EXCHANGES: u32 = 32;

/// Largest text segment sent in one Login Request (the target's default
/// MaxRecvDataSegmentLength during login, §13.12).
const LOGIN_SEGMENT: usize = 8192;

/// What to log in to, and how.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Our iSCSI name.
    pub initiator_name: String,
    /// Our alias.
    pub initiator_alias: Option<String>,
    /// The target (normal sessions).
    pub target_name: Option<String>,
    /// Discovery or normal.
    pub session_type: SessionType,
    /// ISID of the session.
    pub isid: Isid,
    /// 0 for a new session; the session's TSIH to add a connection to it (MC/S).
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN of the Login Request (a new session's initial CmdSN; the session's current CmdSN
    /// when adding a connection).
    pub cmd_sn: Sn,
    /// CHAP credentials; `None` offers AuthMethod=None.
    pub chap: Option<ChapCredentials>,
    /// Limits and preferences for operational negotiation (digests, MaxRecvDataSegmentLength,
    /// burst lengths, MaxConnections…). Name, alias, session type and target are filled in
    /// from the fields above.
    pub negotiation: LocalConfig,
}

impl LoginConfig {
    /// A new normal session to `target` without authentication, RFC defaults otherwise.
    pub fn normal(initiator: impl Into<String>, target: impl Into<String>, isid: Isid) -> Self {
        Self {
            initiator_name: initiator.into(),
            initiator_alias: None,
            target_name: Some(target.into()),
            session_type: SessionType::Normal,
            isid,
            tsih: 0,
            cid: 0,
            cmd_sn: Sn(1),
            chap: None,
            negotiation: LocalConfig::default(),
        }
    }

    /// A discovery session.
    pub fn discovery(initiator: impl Into<String>, isid: Isid) -> Self {
        Self {
            target_name: None,
            session_type: SessionType::Discovery,
            ..Self::normal(initiator, "", isid)
        }
    }
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The target answered with a non-success status (§11.13.5).
    #[error("login refused by the target: {status} ({})", describe_status(*status))]
    Refused {
        /// The status.
        status: LoginStatus,
    },
    /// The target redirected us (status class 1) to this TargetAddress.
    #[error("target redirected the login to {address} ({status})")]
    Redirected {
        /// Status (moved temporarily / permanently).
        status: LoginStatus,
        /// The TargetAddress value.
        address: String,
    },
    /// Operational negotiation failed.
    #[error("negotiation failed: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The response text is malformed.
    #[error("malformed login text: {0}")]
    Text(#[from] TextError),
    /// CHAP failed (including a target that failed mutual authentication).
    #[error("CHAP authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The target wants an authentication method we did not offer, or refused ours.
    #[error("target answered AuthMethod={0:?}")]
    AuthMethod(String),
    /// The response breaks the login rules (§6.3, §11.13).
    #[error("login protocol violation: {0}")]
    Protocol(&'static str),
    /// The response does not fit its data into the text limits we accept.
    #[error("our login text of {0} bytes cannot be sent")]
    TextTooLong(usize),
}

/// A human description of a login status.
pub fn describe_status(s: LoginStatus) -> &'static str {
    match s {
        LoginStatus::SUCCESS => "success",
        LoginStatus::TARGET_MOVED_TEMPORARILY => "target moved temporarily",
        LoginStatus::TARGET_MOVED_PERMANENTLY => "target moved permanently",
        LoginStatus::INITIATOR_ERROR => "initiator error",
        LoginStatus::AUTHENTICATION_FAILURE => "authentication failure",
        LoginStatus::AUTHORIZATION_FAILURE => "authorization failure",
        LoginStatus::NOT_FOUND => "target not found",
        LoginStatus::TARGET_REMOVED => "target removed",
        LoginStatus::UNSUPPORTED_VERSION => "unsupported version",
        LoginStatus::TOO_MANY_CONNECTIONS => "too many connections",
        LoginStatus::MISSING_PARAMETER => "missing parameter",
        LoginStatus::CANT_INCLUDE_IN_SESSION => "cannot include connection in session",
        LoginStatus::SESSION_TYPE_NOT_SUPPORTED => "session type not supported",
        LoginStatus::SESSION_DOES_NOT_EXIST => "session does not exist",
        LoginStatus::INVALID_DURING_LOGIN => "invalid request during login",
        LoginStatus::TARGET_ERROR => "target error",
        LoginStatus::SERVICE_UNAVAILABLE => "service unavailable",
        LoginStatus::OUT_OF_RESOURCES => "out of resources",
        _ => "unknown status",
    }
}

/// The result of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// Everything negotiated, as the negotiation engine reports it.
    pub negotiated: NegotiatedParams,
    /// Session-wide values.
    pub session: SessionParams,
    /// This connection's values.
    pub connection: ConnectionParams,
    /// ISID.
    pub isid: Isid,
    /// TSIH of the session (assigned by the target on a leading login).
    pub tsih: u16,
    /// CID.
    pub cid: u16,
    /// The CmdSN the first command uses.
    pub cmd_sn: Sn,
    /// ExpCmdSN of the final response.
    pub exp_cmd_sn: Sn,
    /// MaxCmdSN of the final response.
    pub max_cmd_sn: Sn,
    /// StatSN of the final response.
    pub stat_sn: Sn,
    /// The authentication method used.
    pub auth_method: String,
    /// Whether the target proved its identity (mutual CHAP).
    pub target_authenticated: bool,
}

impl LoginOutcome {
    /// The command window after login.
    pub fn window(&self) -> CmdWindow {
        CmdWindow::new(self.cmd_sn, self.exp_cmd_sn, self.max_cmd_sn)
    }

    /// What [`Session::new`](super::Session::new) needs (leading connection).
    pub fn session_setup(&self) -> SessionSetup {
        SessionSetup {
            params: self.session.clone(),
            isid: self.isid,
            tsih: self.tsih,
            window: self.window(),
        }
    }

    /// What [`Session::add_connection`](super::Session::add_connection) needs.
    pub fn connection_setup(&self, queue_depth: u16) -> ConnectionSetup {
        let mut c = ConnectionSetup::new(self.cid, self.stat_sn.incremented(), queue_depth);
        c.params = self.connection;
        c
    }
}

/// What to do after a Login Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this Login Request and wait for the next response.
    Send(Pdu),
    /// Login completed: the connection is in full feature phase.
    Done(Box<LoginOutcome>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Security,
    Operational,
    Done,
}

/// A connection's login, for the initiator role.
pub struct Login {
    cfg: LoginConfig,
    negotiator: Negotiator,
    chap: Option<ChapInitiator>,
    rng: Box<dyn ChapRng + Send>,
    phase: Phase,
    /// Keys waiting to be sent in this stage (answers, offers, CHAP).
    outbox: Vec<u8>,
    /// Our text being sent in several PDUs (C bit): bytes already sent.
    out_sent: usize,
    inbound: TextAssembler,
    exp_stat_sn: Sn,
    auth_agreed: Option<String>,
    target_authenticated: bool,
    tsih: u16,
    exchanges: u32,
}

impl core::fmt::Debug for Login {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Login")
            .field("phase", &self.phase)
            .field("tsih", &self.tsih)
            .field("auth", &self.auth_agreed)
            .finish_non_exhaustive()
    }
}

/// Maps the negotiation engine's results onto the session crate's parameter types.
pub fn split_params(p: &NegotiatedParams) -> (SessionParams, ConnectionParams) {
    let digest = |d: Digest| match d {
        Digest::None => DigestKind::None,
        Digest::Crc32c => DigestKind::Crc32c,
    };
    let session = SessionParams {
        max_connections: p.max_connections,
        initial_r2t: p.initial_r2t,
        immediate_data: p.immediate_data,
        max_burst_length: p.max_burst_length,
        first_burst_length: p.first_burst_length.min(p.max_burst_length),
        default_time2wait: p.default_time2wait,
        default_time2retain: p.default_time2retain,
        max_outstanding_r2t: p.max_outstanding_r2t,
        data_pdu_in_order: p.data_pdu_in_order,
        data_sequence_in_order: p.data_sequence_in_order,
        error_recovery_level: p.error_recovery_level,
        session_type: match p.session_type {
            PduSessionType::Normal => SessionType::Normal,
            PduSessionType::Discovery => SessionType::Discovery,
        },
        task_reporting: match p.task_reporting.as_str() {
            "ResponseFence" => TaskReporting::ResponseFence,
            "FastAbort" => TaskReporting::FastAbort,
            _ => TaskReporting::Rfc3720,
        },
        protocol_level: p.iscsi_protocol_level,
        initiator_name: p.initiator_name.clone().unwrap_or_default(),
        target_name: p.target_name.clone().unwrap_or_default(),
        initiator_alias: p.initiator_alias.clone(),
        target_alias: p.target_alias.clone(),
        target_portal_group_tag: p.target_portal_group_tag.unwrap_or(0),
        rdma_extensions: p.rdma_extensions,
        max_outstanding_unexpected_pdus: p.max_outstanding_unexpected_pdus,
    };
    let connection = ConnectionParams {
        header_digest: digest(p.header_digest),
        data_digest: digest(p.data_digest),
        max_recv_data_segment_length: p.max_recv_data_segment_length,
        max_xmit_data_segment_length: p.max_send_data_segment_length,
        initiator_recv_data_segment_length: p.initiator_recv_data_segment_length,
        target_recv_data_segment_length: p.target_recv_data_segment_length,
    };
    (session, connection)
}

impl Login {
    /// A login using the OS random source for mutual-CHAP challenges.
    pub fn new(cfg: LoginConfig) -> Self {
        Self::with_rng(cfg, Box::new(OsRng))
    }

    /// A login with a given random source (tests use a deterministic one).
    pub fn with_rng(cfg: LoginConfig, rng: Box<dyn ChapRng + Send>) -> Self {
        let mut local = cfg.negotiation.clone();
        local.name = Some(cfg.initiator_name.clone());
        local.alias.clone_from(&cfg.initiator_alias);
        local.session_type = match cfg.session_type {
            SessionType::Normal => PduSessionType::Normal,
            SessionType::Discovery => PduSessionType::Discovery,
        };
        local.target_name.clone_from(&cfg.target_name);
        local.auth_methods = if cfg.chap.is_some() {
            vec!["CHAP".to_owned()]
        } else {
            vec!["None".to_owned()]
        };
        let chap = cfg.chap.clone().map(ChapInitiator::new);
        Self {
            negotiator: Negotiator::new(Role::Initiator, local),
            chap,
            rng,
            phase: Phase::NotStarted,
            outbox: Vec::new(),
            out_sent: 0,
            inbound: TextAssembler::new(TextAssembler::DEFAULT_LIMIT),
            exp_stat_sn: Sn(0),
            auth_agreed: None,
            target_authenticated: false,
            tsih: cfg.tsih,
            exchanges: 0,
            cfg,
        }
    }

    fn leading(&self) -> bool {
        self.cfg.tsih == 0
    }

    fn ctx(&self, stage: Stage) -> Context {
        Context::login(stage, self.leading())
    }

    /// The first Login Request (security stage).
    pub fn start(&mut self) -> Result<Pdu, LoginError> {
        if self.phase != Phase::NotStarted {
            return Err(LoginError::Protocol("login already started"));
        }
        self.phase = Phase::Security;
        let offers = self.negotiator.offers(self.ctx(Stage::Security));
        self.outbox = encode_pairs(&offers);
        self.out_sent = 0;
        // Without CHAP we may leave the security stage right away.
        let transit = self.chap.is_none();
        Ok(self.request(transit))
    }

    /// The current stage's CSG, and the NSG we ask for.
    fn stages(&self) -> (LoginStage, LoginStage) {
        match self.phase {
            Phase::Security | Phase::NotStarted => (
                LoginStage::SECURITY_NEGOTIATION,
                LoginStage::OPERATIONAL_NEGOTIATION,
            ),
            Phase::Operational | Phase::Done => (
                LoginStage::OPERATIONAL_NEGOTIATION,
                LoginStage::FULL_FEATURE_PHASE,
            ),
        }
    }

    /// Builds the next Login Request from the outbox (splitting with the C bit).
    fn request(&mut self, transit: bool) -> Pdu {
        let (csg, nsg) = self.stages();
        let rest = self.outbox.get(self.out_sent..).unwrap_or(&[]);
        let take = rest.len().min(LOGIN_SEGMENT);
        let more = take < rest.len();
        let data = rest.get(..take).unwrap_or(&[]).to_vec();
        self.out_sent += take;
        if !more {
            self.outbox.clear();
            self.out_sent = 0;
        }
        // T and C are never both set (§11.12.2).
        let transit = transit && !more;
        let hdr = LoginRequest {
            next_stage: transit.then_some(nsg),
            continue_flag: more,
            current_stage: csg,
            version_max: 0,
            version_min: 0,
            isid: self.cfg.isid,
            tsih: self.tsih,
            itt: LOGIN_ITT,
            cid: self.cfg.cid,
            cmd_sn: self.cfg.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        Pdu::with_data(hdr, data)
    }

    /// Handles a Login Response (`data` is its data segment).
    pub fn on_response(&mut self, h: &LoginResponse, data: &[u8]) -> Result<LoginStep, LoginError> {
        if matches!(self.phase, Phase::NotStarted | Phase::Done) {
            return Err(LoginError::Protocol("login response outside a login"));
        }
        if h.itt != LOGIN_ITT {
            return Err(LoginError::Protocol("login response with another ITT"));
        }
        // A refusal ends the login whatever else the response says (some targets zero the
        // ISID in error responses).
        if h.status != LoginStatus::SUCCESS {
            return Err(Self::refusal(h.status, data));
        }
        if h.isid != self.cfg.isid {
            return Err(LoginError::Protocol("login response with another ISID"));
        }
        self.exp_stat_sn = h.stat_sn.incremented();
        if h.version_active != 0 || h.version_max != 0 {
            return Err(LoginError::Protocol(
                "unsupported version in login response",
            ));
        }
        let (csg, _) = self.stages();
        if h.current_stage != csg {
            return Err(LoginError::Protocol("login response for another stage"));
        }
        if h.continue_flag && h.next_stage.is_some() {
            return Err(LoginError::Protocol("login response with both T and C"));
        }
        // Still sending our own text in pieces: the target acknowledges each with an empty
        // response.
        if !self.outbox.is_empty() {
            if !data.is_empty() || h.next_stage.is_some() {
                return Err(LoginError::Protocol(
                    "target answered before our text was complete",
                ));
            }
            let transit = self.wants_transit();
            return Ok(LoginStep::Send(self.request(transit)));
        }
        let Some(text) = self.inbound.push(data, h.continue_flag)? else {
            // More text follows: ask for it with an empty request (§11.12.4).
            return Ok(LoginStep::Send(self.request(false)));
        };
        let pairs = parse_pairs(&text)?;
        let stage = if self.phase == Phase::Security {
            Stage::Security
        } else {
            Stage::Operational
        };
        self.exchanges += 1;
        if self.exchanges > MAX_EXCHANGES {
            return Err(LoginError::Protocol("login does not converge"));
        }
        if let Some(m) = pairs.iter().find(|p| p.key == "AuthMethod") {
            let offered = if self.chap.is_some() { "CHAP" } else { "None" };
            if m.value != offered {
                return Err(LoginError::AuthMethod(m.value.chars().take(64).collect()));
            }
        }
        let exchange = self.negotiator.process(self.ctx(stage), &pairs)?;
        let mut out = exchange.answers;
        if stage == Stage::Security {
            self.security_step(&exchange.auth, &mut out)?;
        } else if let Some(kv) = exchange.auth.first() {
            return Err(LoginError::Auth(AuthError::UnexpectedKey(kv.key.clone())));
        }
        // The target switches stages only when we asked for it (§6.3).
        if let Some(next) = h.next_stage {
            if !self.wants_transit() {
                return Err(LoginError::Protocol(
                    "target changed stage without our request",
                ));
            }
            match (self.phase, next) {
                (Phase::Security, LoginStage::OPERATIONAL_NEGOTIATION) => {
                    self.finish_security()?;
                    self.phase = Phase::Operational;
                    out.extend(self.negotiator.offers(self.ctx(Stage::Operational)));
                }
                (Phase::Security | Phase::Operational, LoginStage::FULL_FEATURE_PHASE) => {
                    if self.phase == Phase::Security {
                        self.finish_security()?;
                    }
                    if !out.is_empty() {
                        return Err(LoginError::Protocol(
                            "target completed login with keys unanswered",
                        ));
                    }
                    return self.complete(h);
                }
                _ => return Err(LoginError::Protocol("invalid next stage in login response")),
            }
        }
        self.outbox = encode_pairs(&out);
        self.out_sent = 0;
        let transit = self.wants_transit();
        Ok(LoginStep::Send(self.request(transit)))
    }

    /// Whether our next request sets T (asks to leave the current stage).
    fn wants_transit(&self) -> bool {
        match self.phase {
            Phase::Security => match &self.chap {
                None => true,
                Some(c) => self.auth_agreed.as_deref() == Some("CHAP") && c.ready_to_transit(),
            },
            Phase::Operational => true,
            _ => false,
        }
    }

    fn security_step(
        &mut self,
        auth: &[KeyValue],
        out: &mut Vec<KeyValue>,
    ) -> Result<(), LoginError> {
        let method = self.negotiator.params().auth_method.clone();
        let offered = self.chap.is_some();
        if self.auth_agreed.is_none() {
            // The target answers AuthMethod in its first response.
            match (offered, method.as_str()) {
                (true, "CHAP") | (false, "None") => self.auth_agreed = Some(method.clone()),
                (false, _) if auth.is_empty() => {
                    // Answer not there (yet): treated as None when the target transits.
                }
                (_, m) => return Err(LoginError::AuthMethod(m.to_owned())),
            }
        }
        if let Some(chap) = self.chap.as_mut() {
            if self.auth_agreed.as_deref() != Some("CHAP") {
                return Err(LoginError::AuthMethod(method));
            }
            let mutual = self.cfg.chap.as_ref().is_some_and(|c| c.mutual.is_some());
            let keys = chap.step(auth, self.rng.as_mut())?;
            if mutual && chap.is_done() {
                self.target_authenticated = true;
            }
            out.extend(keys);
        } else if let Some(kv) = auth.first() {
            return Err(LoginError::Auth(AuthError::UnexpectedKey(kv.key.clone())));
        }
        Ok(())
    }

    fn finish_security(&mut self) -> Result<(), LoginError> {
        match &self.chap {
            Some(c) if !c.is_done() => {
                // One-way CHAP is done once the target accepts the response; mutual CHAP needs
                // the target's answer first.
                if self.cfg.chap.as_ref().is_some_and(|c| c.mutual.is_some()) {
                    return Err(LoginError::Auth(AuthError::MissingKey("CHAP_N/CHAP_R")));
                }
                if !c.ready_to_transit() {
                    return Err(LoginError::Protocol(
                        "target left the security stage before CHAP completed",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn complete(&mut self, h: &LoginResponse) -> Result<LoginStep, LoginError> {
        if self.leading() {
            if h.tsih == 0 && self.cfg.session_type == SessionType::Normal {
                return Err(LoginError::Protocol("final login response without a TSIH"));
            }
        } else if h.tsih != self.cfg.tsih {
            return Err(LoginError::Protocol(
                "final login response with another TSIH",
            ));
        }
        let negotiated = self.negotiator.finish()?;
        let (session, connection) = split_params(&negotiated);
        self.phase = Phase::Done;
        let auth_method = self
            .auth_agreed
            .clone()
            .unwrap_or_else(|| "None".to_owned());
        Ok(LoginStep::Done(Box::new(LoginOutcome {
            negotiated,
            session,
            connection,
            isid: self.cfg.isid,
            tsih: h.tsih,
            cid: self.cfg.cid,
            cmd_sn: self.cfg.cmd_sn,
            exp_cmd_sn: h.exp_cmd_sn,
            max_cmd_sn: h.max_cmd_sn,
            stat_sn: h.stat_sn,
            auth_method,
            target_authenticated: self.target_authenticated,
        })))
    }

    fn refusal(status: LoginStatus, data: &[u8]) -> LoginError {
        if status.class() == LoginStatusClass::REDIRECTION {
            let address = parse_pairs(data).ok().and_then(|p| {
                p.iter()
                    .find(|kv| kv.key == "TargetAddress")
                    .map(|kv| kv.value.to_owned())
            });
            if let Some(address) = address {
                return LoginError::Redirected { status, address };
            }
        }
        LoginError::Refused { status }
    }
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
