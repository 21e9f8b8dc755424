//! One connection's login phase, target role (RFC 7143 §6.3 login phase, §11.12–§11.13 Login
//! Request/Response, §13 keys, §12 security): version check, stage sequencing with the
//! CSG/NSG/T/C rules, identity and access checks (InitiatorName, TargetName, SessionType, ACL),
//! negotiation through `rtgt-pdu`'s engine, CHAP, text continuation in both directions, and the
//! final step that needs the engine's session table (new session, reinstatement, joining a
//! session by TSIH).
//!
//! ```
//! use std::sync::Arc;
//! use rtgt_pdu::{LoginRequest, LoginStage, Isid, Itt, Sn};
//! use rtgt_pdu::text::{encode_pairs, KeyValue};
//! use rtgt_session::target::{Catalog, TargetEntry};
//! use rtgt_session::target::login::{LoginConnection, LoginSettings, LoginStep, SessionResolution};
//!
//! let catalog = Arc::new(Catalog {
//!     targets: vec![TargetEntry { name: "iqn.t:disk".into(), luns: vec![0], ..Default::default() }],
//!     ..Default::default()
//! });
//! let mut login = LoginConnection::new(catalog, LoginSettings::default());
//! let req = LoginRequest {
//!     current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
//!     next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
//!     isid: Isid([0x80, 0, 0, 0, 0, 1]),
//!     itt: Itt(1),
//!     cmd_sn: Sn(5),
//!     ..Default::default()
//! };
//! let text = encode_pairs(&[
//!     KeyValue::new("InitiatorName", "iqn.i:host"),
//!     KeyValue::new("TargetName", "iqn.t:disk"),
//! ]);
//! let LoginStep::NeedsSession(request) = login.handle_login(&req, &text) else { panic!() };
//! assert_eq!(request.tsih, 0);
//! login.resolve(SessionResolution::New { tsih: 7 });
//! let response = login.poll_transmit().unwrap();
//! assert_eq!(response.bhs[0] & 0x3f, 0x23); // Login Response
//! let outcome = login.take_outcome().unwrap();
//! assert_eq!(outcome.tsih, 7);
//! assert_eq!(outcome.cmd_sn, Sn(5));
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use rtgt_pdu::negotiation::{Context, Digest, LocalConfig, Negotiator, Role, Stage};
use rtgt_pdu::text::{KeyValue, TextAssembler, encode_pairs, parse_unique};
use rtgt_pdu::{
    BhsLengths, Isid, LOGIN_SEGMENT_LIMIT, LoginRequest, LoginResponse, LoginStage, LoginStatus,
    PduHeader, Sn,
};

use super::auth::ChapExchange;
use super::catalog::{AuthPolicy, Catalog};
use super::{Payload, Transmit};
use crate::chap::{ChapRng, OsRng};
use crate::params::{DigestKind, Negotiated, SessionType};

/// The iSCSI version this target speaks (RFC 7143 §11.12.4: 0x00).
pub const ISCSI_VERSION: u8 = 0;

/// Where the connection arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginSettings {
    /// Portal group of the listening portal (TargetPortalGroupTag).
    pub portal_group_tag: u16,
    /// Local address of the connection.
    pub local_addr: Option<SocketAddr>,
}

/// The iSER login settings of a connection that arrived over RDMA (RFC 7145 §5.1, §6): the
/// target offers `RDMAExtensions=Yes`, takes no digests (the RDMA transport checks integrity),
/// negotiates the iSER data segment lengths and declares its MaxOutstandingUnexpectedPDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdmaLogin {
    /// TargetRecvDataSegmentLength this target accepts at most (its receive buffers).
    pub target_recv_data_segment_length: u32,
    /// InitiatorRecvDataSegmentLength this target accepts at most.
    pub initiator_recv_data_segment_length: u32,
    /// The MaxOutstandingUnexpectedPDUs this target declares (the unexpected PDUs it can
    /// receive; at least 2).
    pub max_outstanding_unexpected_pdus: u32,
}

/// What the engine must do after [`LoginConnection::handle_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send what `poll_transmit` yields and keep reading.
    Continue,
    /// The initiator is ready for full feature phase: look the session up (or create it) and
    /// call [`LoginConnection::resolve`].
    NeedsSession(SessionRequest),
    /// Login failed with this status; send the queued response, then close.
    Failed(LoginStatus),
    /// The peer broke the protocol so badly that no response can be given: close.
    Drop,
}

/// The identity of the session a finishing login belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// 0 for a new session (possibly reinstating one), else the session to join.
    pub tsih: u16,
    /// ISID.
    pub isid: Isid,
    /// CID of this connection.
    pub cid: u16,
    /// InitiatorName.
    pub initiator_name: String,
    /// TargetName (empty for discovery).
    pub target_name: String,
    /// Normal or discovery.
    pub session_type: SessionType,
}

/// The engine's answer to a [`SessionRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionResolution {
    /// A new session with this TSIH (any session with the same identity has been closed).
    New {
        /// Assigned TSIH.
        tsih: u16,
    },
    /// The connection joins an existing session whose window is `(ExpCmdSN, MaxCmdSN)`.
    Join {
        /// The session's current ExpCmdSN.
        exp_cmd_sn: Sn,
        /// The session's current MaxCmdSN.
        max_cmd_sn: Sn,
    },
    /// Refuse with this status (e.g. SESSION_DOES_NOT_EXIST, TOO_MANY_CONNECTIONS).
    Refuse(LoginStatus),
}

/// The result of a successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The session's TSIH.
    pub tsih: u16,
    /// ISID.
    pub isid: Isid,
    /// CID.
    pub cid: u16,
    /// Whether this created a new session (leading connection).
    pub leading: bool,
    /// Negotiated values (session part meaningful for a leading connection only).
    pub negotiated: Negotiated,
    /// CmdSN of the login: the first full-feature command's CmdSN (new sessions).
    pub cmd_sn: Sn,
    /// StatSN the first full-feature response on this connection carries.
    pub stat_sn: Sn,
    /// The CHAP user the initiator authenticated as, if CHAP was used.
    pub chap_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No PDU yet.
    Fresh,
    /// Exchanging PDUs in `stage`.
    Stage(LoginStage),
    /// Waiting for the engine to resolve the session.
    Resolving,
    /// Finished (success or failure); nothing more is accepted.
    Finished,
}

struct Identity {
    isid: Isid,
    tsih: u16,
    cid: u16,
    initiator_name: String,
    target_name: String,
    session_type: SessionType,
    auth: AuthPolicy,
}

/// A long Login Response text still being handed out in pieces (C bit).
struct PendingText {
    text: Vec<u8>,
    sent: usize,
    transit: Option<LoginStage>,
}

/// The login state machine of one connection (target role).
pub struct LoginConnection {
    catalog: Arc<Catalog>,
    settings: LoginSettings,
    rdma: Option<RdmaLogin>,
    state: State,
    id: Option<Identity>,
    negotiator: Option<Negotiator>,
    chap: ChapExchange,
    rng: Box<dyn ChapRng + Send>,
    assembler: TextAssembler,
    pending: Option<PendingText>,
    stat_sn: Sn,
    cmd_sn: Sn,
    itt: rtgt_pdu::Itt,
    final_answers: Vec<KeyValue>,
    last_stage: Option<LoginStage>,
    txq: VecDeque<Transmit>,
    outcome: Option<LoginOutcome>,
}

impl core::fmt::Debug for LoginConnection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoginConnection")
            .field("state", &self.state)
            .field("stat_sn", &self.stat_sn)
            .finish_non_exhaustive()
    }
}

impl LoginConnection {
    /// A connection that has not sent anything yet; challenges come from the OS CSPRNG.
    pub fn new(catalog: Arc<Catalog>, settings: LoginSettings) -> Self {
        Self::with_rng(catalog, settings, Box::new(OsRng))
    }

    /// As [`LoginConnection::new`] with a given random source (deterministic tests).
    pub fn with_rng(
        catalog: Arc<Catalog>,
        settings: LoginSettings,
        rng: Box<dyn ChapRng + Send>,
    ) -> Self {
        Self {
            catalog,
            settings,
            rdma: None,
            state: State::Fresh,
            id: None,
            negotiator: None,
            chap: ChapExchange::default(),
            rng,
            assembler: TextAssembler::new(LOGIN_SEGMENT_LIMIT as usize * 8),
            pending: None,
            stat_sn: Sn(0),
            cmd_sn: Sn(0),
            itt: rtgt_pdu::Itt(0),
            final_answers: Vec::new(),
            last_stage: None,
            txq: VecDeque::new(),
            outcome: None,
        }
    }

    /// Marks the connection as an iSER connection (RFC 7145): the login negotiates
    /// `RDMAExtensions=Yes` with `rdma`'s limits instead of the TCP keys. Call before the first
    /// Login Request is handled.
    #[must_use]
    pub fn with_rdma(mut self, rdma: RdmaLogin) -> Self {
        self.rdma = Some(rdma);
        self
    }

    /// The values negotiated so far, as the negotiation engine holds them (after
    /// [`LoginConnection::resolve`]: the final ones). `None` before the first Login Request.
    /// An iSER transport needs them to enter its full feature phase (RFC 7145 §5.1).
    pub fn negotiated(&self) -> Option<&rtgt_pdu::negotiation::NegotiatedParams> {
        self.negotiator.as_ref().map(Negotiator::params)
    }

    /// The next Login Response to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.txq.pop_front()
    }

    /// The outcome once the final response has been queued.
    pub fn take_outcome(&mut self) -> Option<LoginOutcome> {
        self.outcome.take()
    }

    /// Whether the login is over (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// A PDU other than a Login Request arrived during login: answered with "invalid request
    /// during login" (0x020b) and the connection is closed (RFC 7143 §11.13.5).
    pub fn handle_other(&mut self, header: &PduHeader) -> LoginStep {
        if self.state == State::Finished {
            return LoginStep::Drop;
        }
        self.itt = header.itt();
        self.fail(LoginStatus::INVALID_DURING_LOGIN)
    }

    /// Processes one Login Request with its (digest-checked) data segment.
    pub fn handle_login(&mut self, req: &LoginRequest, data: &[u8]) -> LoginStep {
        match self.state {
            State::Finished | State::Resolving => return LoginStep::Drop,
            State::Fresh | State::Stage(_) => {}
        }
        self.itt = req.itt;
        self.cmd_sn = req.cmd_sn;
        if let Err(status) = self.check_header(req) {
            return self.fail(status);
        }
        let stage = req.current_stage;
        // The rest of a long response of ours.
        if let Some(p) = self.pending.take() {
            if !data.is_empty() {
                return self.fail(LoginStatus::INITIATOR_ERROR);
            }
            self.send_piece(stage, p);
            return LoginStep::Continue;
        }
        // A long request: acknowledge each continued piece with an empty response.
        let text = match self.assembler.push(data, req.continue_flag) {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.respond(stage, None, false, Vec::new(), LoginStatus::SUCCESS, 0);
                return LoginStep::Continue;
            }
            Err(_) => return self.fail(LoginStatus::INITIATOR_ERROR),
        };
        let Ok(pairs) = parse_unique(&text) else {
            return self.fail(LoginStatus::INITIATOR_ERROR);
        };
        if self.id.is_none() {
            if let Err(status) = self.identify(req, &pairs) {
                return self.fail(status);
            }
        }
        let Some(id) = self.id.as_ref() else {
            return self.fail(LoginStatus::TARGET_ERROR);
        };
        let requires_chap = matches!(id.auth, AuthPolicy::Chap(_));
        if stage == LoginStage::OPERATIONAL_NEGOTIATION && requires_chap && !self.chap.is_done() {
            // The initiator skipped the security stage the target requires.
            return self.fail(LoginStatus::AUTHENTICATION_FAILURE);
        }
        let Some(neg_stage) = Stage::from_login_stage(stage) else {
            return self.fail(LoginStatus::INITIATOR_ERROR);
        };
        let leading = id.tsih == 0;
        let ctx = Context::login(neg_stage, leading);
        let Some(neg) = self.negotiator.as_mut() else {
            return self.fail(LoginStatus::TARGET_ERROR);
        };
        let exchange = match neg.process(ctx, &pairs) {
            Ok(e) => e,
            Err(e) => return self.fail(e.login_status()),
        };
        let mut answers = exchange.answers;
        let method = neg.params().auth_method.clone();
        if stage == LoginStage::SECURITY_NEGOTIATION {
            let auth_offered = pairs.iter().any(|p| p.key == "AuthMethod");
            match (&id.auth, method.as_str()) {
                (AuthPolicy::Chap(policy), "CHAP") => {
                    let policy = policy.clone();
                    match self.chap.step(&exchange.auth, &policy, self.rng.as_mut()) {
                        Ok(keys) => answers.extend(keys),
                        Err(_) => return self.fail(LoginStatus::AUTHENTICATION_FAILURE),
                    }
                }
                (AuthPolicy::Chap(_), _) => {
                    if auth_offered || req.next_stage.is_some() {
                        return self.fail(LoginStatus::AUTHENTICATION_FAILURE);
                    }
                }
                (AuthPolicy::None, _) => {
                    if !exchange.auth.is_empty() {
                        return self.fail(LoginStatus::AUTHENTICATION_FAILURE);
                    }
                    if answers
                        .iter()
                        .any(|a| a.key == "AuthMethod" && a.value == "Reject")
                    {
                        return self.fail(LoginStatus::AUTHENTICATION_FAILURE);
                    }
                }
            }
        } else if !exchange.auth.is_empty() {
            return self.fail(LoginStatus::INITIATOR_ERROR);
        }
        if let Some(neg) = self.negotiator.as_mut() {
            answers.extend(neg.offers(ctx));
        }
        // May we move on?
        let transit = match req.next_stage {
            Some(next) => {
                let ready = stage != LoginStage::SECURITY_NEGOTIATION
                    || !requires_chap
                    || self.chap.is_done();
                ready.then_some(next)
            }
            None => None,
        };
        if transit == Some(LoginStage::FULL_FEATURE_PHASE) {
            self.final_answers = answers;
            self.state = State::Resolving;
            let Some(id) = self.id.as_ref() else {
                return self.fail(LoginStatus::TARGET_ERROR);
            };
            return LoginStep::NeedsSession(SessionRequest {
                tsih: id.tsih,
                isid: id.isid,
                cid: id.cid,
                initiator_name: id.initiator_name.clone(),
                target_name: id.target_name.clone(),
                session_type: id.session_type,
            });
        }
        let text = encode_pairs(&answers);
        self.send_piece(
            stage,
            PendingText {
                text,
                sent: 0,
                transit,
            },
        );
        if let Some(next) = transit {
            self.state = State::Stage(next);
        }
        LoginStep::Continue
    }

    /// Completes the final step with the engine's decision.
    pub fn resolve(&mut self, resolution: SessionResolution) -> LoginStep {
        if self.state != State::Resolving {
            return LoginStep::Drop;
        }
        let (tsih, exp, max, leading) = match resolution {
            SessionResolution::Refuse(status) => return self.fail(status),
            SessionResolution::New { tsih } => {
                let depth = self
                    .catalog
                    .defaults
                    .queue_depth
                    .clamp(1, super::catalog::MAX_QUEUE_DEPTH);
                (tsih, self.cmd_sn, self.cmd_sn.add(depth - 1), true)
            }
            SessionResolution::Join {
                exp_cmd_sn,
                max_cmd_sn,
            } => {
                let tsih = self.id.as_ref().map_or(0, |i| i.tsih);
                (tsih, exp_cmd_sn, max_cmd_sn, false)
            }
        };
        let Some(Ok(params)) = self.negotiator.as_mut().map(Negotiator::finish) else {
            return self.fail(LoginStatus::INITIATOR_ERROR);
        };
        let mut negotiated = Negotiated::from(&params);
        if let Some(id) = self.id.as_ref() {
            negotiated
                .session
                .initiator_name
                .clone_from(&id.initiator_name);
            negotiated.session.target_name.clone_from(&id.target_name);
            negotiated.session.session_type = id.session_type;
        }
        negotiated.session.target_portal_group_tag = self.settings.portal_group_tag;
        let current = match self.state_stage() {
            Some(s) => s,
            None => LoginStage::OPERATIONAL_NEGOTIATION,
        };
        let text = encode_pairs(&core::mem::take(&mut self.final_answers));
        let final_stat_sn = self.stat_sn;
        self.respond_full(
            current,
            Some(LoginStage::FULL_FEATURE_PHASE),
            false,
            text,
            LoginStatus::SUCCESS,
            tsih,
            exp,
            max,
        );
        let (isid, cid) = self
            .id
            .as_ref()
            .map_or((Isid::default(), 0), |i| (i.isid, i.cid));
        let chap_user = match &self.chap {
            ChapExchange::Done { user } => Some(user.clone()),
            _ => None,
        };
        self.outcome = Some(LoginOutcome {
            tsih,
            isid,
            cid,
            leading,
            negotiated,
            cmd_sn: self.cmd_sn,
            stat_sn: final_stat_sn.incremented(),
            chap_user,
        });
        self.state = State::Finished;
        LoginStep::Continue
    }

    fn state_stage(&self) -> Option<LoginStage> {
        self.last_stage
    }

    // ---------------------------------------------------------------- checks

    fn check_header(&mut self, req: &LoginRequest) -> Result<(), LoginStatus> {
        let stage = req.current_stage;
        if !matches!(
            stage,
            LoginStage::SECURITY_NEGOTIATION | LoginStage::OPERATIONAL_NEGOTIATION
        ) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if req.continue_flag && req.next_stage.is_some() {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if let Some(next) = req.next_stage {
            let valid = matches!(
                next,
                LoginStage::OPERATIONAL_NEGOTIATION | LoginStage::FULL_FEATURE_PHASE
            ) && next.0 > stage.0;
            if !valid {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
        }
        match &self.state {
            State::Fresh => {
                // RFC 7143 §11.12.4: Version-min ≤ 0x00 ≤ Version-max.
                // (Version-max cannot be below 0x00.)
                if req.version_min > ISCSI_VERSION {
                    return Err(LoginStatus::UNSUPPORTED_VERSION);
                }
                self.stat_sn = req.exp_stat_sn;
                self.state = State::Stage(stage);
            }
            State::Stage(current) => {
                if stage != *current {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                if let Some(id) = &self.id {
                    if id.isid != req.isid || id.tsih != req.tsih || id.cid != req.cid {
                        return Err(LoginStatus::INITIATOR_ERROR);
                    }
                }
            }
            State::Resolving | State::Finished => return Err(LoginStatus::INITIATOR_ERROR),
        }
        self.last_stage = Some(stage);
        Ok(())
    }

    /// First PDU: who is logging in to what, and is it allowed.
    fn identify(
        &mut self,
        req: &LoginRequest,
        pairs: &[rtgt_pdu::text::TextPair<'_>],
    ) -> Result<(), LoginStatus> {
        let get = |k: &str| pairs.iter().find(|p| p.key == k).map(|p| p.value);
        let initiator = get("InitiatorName").ok_or(LoginStatus::MISSING_PARAMETER)?;
        if initiator.is_empty() {
            return Err(LoginStatus::MISSING_PARAMETER);
        }
        let session_type = match get("SessionType") {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
        };
        if req.tsih != 0 && session_type == SessionType::Discovery && get("SessionType").is_some() {
            // SessionType is leading-only; a discovery session has one connection.
            return Err(LoginStatus::CANT_INCLUDE_IN_SESSION);
        }
        let d = &self.catalog.defaults;
        let (target_name, auth, alias) = match session_type {
            SessionType::Normal => {
                let name = get("TargetName").ok_or(LoginStatus::MISSING_PARAMETER)?;
                let t = self
                    .catalog
                    .target(name)
                    .filter(|t| t.in_group(self.settings.portal_group_tag))
                    .ok_or(LoginStatus::NOT_FOUND)?;
                if !t.acl.allows(initiator) {
                    return Err(LoginStatus::AUTHORIZATION_FAILURE);
                }
                (t.name.clone(), t.auth.clone(), t.alias.clone())
            }
            SessionType::Discovery => (String::new(), self.catalog.discovery_auth.clone(), None),
        };
        let auth_methods = match &auth {
            AuthPolicy::None => vec!["None".to_owned()],
            AuthPolicy::Chap(_) => vec!["CHAP".to_owned()],
        };
        let digest = |v: &[DigestKind]| -> Vec<Digest> {
            let l: Vec<Digest> = v
                .iter()
                .map(|d| match d {
                    DigestKind::None => Digest::None,
                    DigestKind::Crc32c => Digest::Crc32c,
                })
                .collect();
            if l.is_empty() { vec![Digest::None] } else { l }
        };
        let mut local = LocalConfig {
            header_digests: digest(&d.header_digest),
            data_digests: digest(&d.data_digest),
            auth_methods,
            max_connections: d.max_connections.max(1),
            initial_r2t: d.initial_r2t,
            immediate_data: d.immediate_data,
            max_recv_data_segment_length: d.max_recv_data_segment_length.clamp(512, (1 << 24) - 1),
            max_burst_length: d.max_burst_length.clamp(512, (1 << 24) - 1),
            first_burst_length: d.first_burst_length.clamp(512, (1 << 24) - 1),
            default_time2wait: d.default_time2wait,
            default_time2retain: d.default_time2retain,
            max_outstanding_r2t: d
                .max_outstanding_r2t
                .clamp(1, super::MAX_R2T_PER_TASK as u16),
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            // The session layer implements ErrorRecoveryLevel 0 only.
            error_recovery_level: 0,
            alias,
            target_portal_group_tag: Some(self.settings.portal_group_tag),
            ..LocalConfig::default()
        };
        if let Some(r) = self.rdma {
            // RFC 7145 §6: iSER keys instead of digests and MaxRecvDataSegmentLength.
            local.rdma_extensions = true;
            local.header_digests = vec![Digest::None];
            local.data_digests = vec![Digest::None];
            local.target_recv_data_segment_length = r.target_recv_data_segment_length;
            local.initiator_recv_data_segment_length = r.initiator_recv_data_segment_length;
            local.max_outstanding_unexpected_pdus = r.max_outstanding_unexpected_pdus;
        }
        self.negotiator = Some(Negotiator::new(Role::Target, local));
        self.id = Some(Identity {
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
            initiator_name: initiator.to_owned(),
            target_name,
            session_type,
            auth,
        });
        Ok(())
    }

    // ---------------------------------------------------------------- responses

    fn fail(&mut self, status: LoginStatus) -> LoginStep {
        let stage = self.last_stage.unwrap_or(LoginStage::SECURITY_NEGOTIATION);
        self.pending = None;
        self.respond(stage, None, false, Vec::new(), status, 0);
        self.state = State::Finished;
        LoginStep::Failed(status)
    }

    /// Sends the next piece of a (possibly long) response text; the transit goes with the
    /// last piece.
    fn send_piece(&mut self, stage: LoginStage, mut p: PendingText) {
        let max = LOGIN_SEGMENT_LIMIT as usize;
        let rest = p.text.len().saturating_sub(p.sent);
        let len = rest.min(max);
        let piece = p.text.get(p.sent..p.sent + len).unwrap_or(&[]).to_vec();
        p.sent += len;
        if p.sent < p.text.len() {
            self.respond(stage, None, true, piece, LoginStatus::SUCCESS, 0);
            self.pending = Some(p);
        } else {
            self.respond(stage, p.transit, false, piece, LoginStatus::SUCCESS, 0);
        }
    }

    fn respond(
        &mut self,
        stage: LoginStage,
        next: Option<LoginStage>,
        cont: bool,
        text: Vec<u8>,
        status: LoginStatus,
        tsih: u16,
    ) {
        let (exp, max) = (self.cmd_sn, self.cmd_sn);
        self.respond_full(stage, next, cont, text, status, tsih, exp, max);
    }

    #[allow(clippy::too_many_arguments)] // one Login Response's fields, built in one place
    fn respond_full(
        &mut self,
        stage: LoginStage,
        next: Option<LoginStage>,
        cont: bool,
        text: Vec<u8>,
        status: LoginStatus,
        tsih: u16,
        exp_cmd_sn: Sn,
        max_cmd_sn: Sn,
    ) {
        let isid = self.id.as_ref().map_or(Isid::default(), |i| i.isid);
        let resp = LoginResponse {
            next_stage: next,
            continue_flag: cont,
            current_stage: stage,
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            isid,
            tsih,
            itt: self.itt,
            stat_sn: self.stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
            status,
        };
        self.stat_sn = self.stat_sn.incremented();
        let bhs = resp.encode(BhsLengths::data_bounded(text.len() as u32));
        let payload = if text.is_empty() {
            Payload::None
        } else {
            Payload::Owned(text)
        };
        self.txq.push_back(Transmit { bhs, payload });
    }
}
