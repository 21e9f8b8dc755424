//! The negotiation engine (RFC 7143 §6.2 text mode negotiation, §6.3 login
//! phase rules, §13 key semantics; RFC 7145 §6 iSER keys), for the target
//! and the initiator role.
//!
//! A [`Negotiator`] lives for one connection's login (and may then answer
//! full-feature Text negotiations). Per PDU exchange the caller:
//!
//! * passes the peer's (reassembled) pairs to [`Negotiator::process`], which
//!   answers the peer's offers, checks the peer's answers to this side's
//!   offers, and updates [`Negotiator::params`];
//! * appends [`Negotiator::offers`]: the keys this side originates at this
//!   point (initiator: its offers per stage; target: TargetPortalGroupTag and
//!   TargetAlias in its first response, its MaxRecvDataSegmentLength in the
//!   operational stage, or with iSER its MaxOutstandingUnexpectedPDUs, RFC
//!   7145 §6.7). Each key is originated once.
//!
//! # Decisions where RFC 7143 leaves a choice
//!
//! * A value outside a key's range or grammar is answered `Reject`; the key
//!   keeps its previous value (§6.2).
//! * An unknown key is answered `NotUnderstood` (§6.2); a standard key
//!   answered `NotUnderstood` fails the login, except keys added after RFC
//!   3720 ([`KeyDef::optional`](super::KeyDef::optional)).
//! * In the login phase, a key sent by a side that may not send it, a
//!   security key outside the security stage, a full-feature-only key
//!   (SendTargets), or a key negotiated or declared a second time is a
//!   protocol error ([`NegotiationError`]): the target answers with Login
//!   status "initiator error", an initiator drops the connection (§6.3).
//! * A leading-only negotiated key on a non-leading connection is answered
//!   `Irrelevant` (it cannot change the session); a leading-only declaration
//!   there is ignored.
//! * In full feature phase, keys that may only be negotiated at login (LO,
//!   IO, security) are answered `Reject`; each Text negotiation starts afresh.
//! * Negotiated keys irrelevant for the session type (discovery) or
//!   transport (iSER) are answered `Irrelevant`. Declarations are recorded
//!   even when irrelevant (MaxRecvDataSegmentLength under iSER), so both
//!   sides keep the same view whatever order the keys arrived in.
//! * OFMarker/IFMarker are answered `No`, OFMarkInt/IFMarkInt `Reject`, never
//!   `NotUnderstood` (§13.25).
//! * An offered Boolean whose result it already fixes (AND with `No`, OR
//!   with `Yes`) is still answered.

use super::keys::{Irrelevance, KEYS, KeyDef, KeyId, KeyType, KeyUse, Senders, lookup};
use super::params::{Digest, LocalConfig, NegotiatedParams, SessionType};
use crate::codes::{LoginStage, LoginStatus, RejectReason};
use crate::text::value::{
    IRRELEVANT, NOT_UNDERSTOOD, REJECT, Special, format_bool, parse_bool, parse_number, split_list,
};
use crate::text::{KeyValue, TextPair};

/// Which side of the connection this negotiator speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The initiator.
    Initiator,
    /// The target.
    Target,
}

impl Role {
    const fn peer(self) -> Self {
        match self {
            Self::Initiator => Self::Target,
            Self::Target => Self::Initiator,
        }
    }

    const fn may_send(self, senders: Senders) -> bool {
        matches!(
            (self, senders),
            (_, Senders::Both)
                | (Self::Initiator, Senders::Initiator)
                | (Self::Target, Senders::Target)
        )
    }
}

/// Where the exchange takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Login, security negotiation stage (CSG 0).
    Security,
    /// Login, operational negotiation stage (CSG 1).
    Operational,
    /// Full feature phase (Text requests).
    FullFeature,
}

impl Stage {
    /// The stage of a login PDU's CSG field; `None` for the reserved value 2.
    pub fn from_login_stage(csg: LoginStage) -> Option<Self> {
        match csg {
            LoginStage::SECURITY_NEGOTIATION => Some(Self::Security),
            LoginStage::OPERATIONAL_NEGOTIATION => Some(Self::Operational),
            LoginStage::FULL_FEATURE_PHASE => Some(Self::FullFeature),
            _ => None,
        }
    }
}

impl core::fmt::Display for Stage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Security => "security negotiation",
            Self::Operational => "operational negotiation",
            Self::FullFeature => "full feature phase",
        })
    }
}

/// The circumstances of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Current stage.
    pub stage: Stage,
    /// Whether this is the leading connection of a new session (TSIH 0).
    pub leading: bool,
}

impl Context {
    /// A login exchange.
    pub const fn login(stage: Stage, leading: bool) -> Self {
        Self { stage, leading }
    }

    /// A full-feature Text exchange.
    pub const FULL_FEATURE: Self = Self {
        stage: Stage::FullFeature,
        leading: false,
    };
}

/// A negotiation the peer conducted against the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The peer sent a key only the other side may send.
    #[error("{key} may not be sent by the {sender:?}")]
    WrongSender {
        /// The key.
        key: String,
        /// The offending sender.
        sender: Role,
    },
    /// The key is not allowed in this stage.
    #[error("{key} is not allowed in the {stage}")]
    WrongPhase {
        /// The key.
        key: String,
        /// The stage it arrived in.
        stage: Stage,
    },
    /// The key was already negotiated or declared in this login (or twice
    /// in one Text request).
    #[error("{key} negotiated more than once")]
    Renegotiated {
        /// The key.
        key: String,
    },
    /// The peer's answer does not follow from this side's offer.
    #[error("{key}: answer {answer:?} is not valid for offer {offer:?}")]
    InvalidAnswer {
        /// The key.
        key: String,
        /// What this side offered.
        offer: String,
        /// What the peer answered.
        answer: String,
    },
    /// The login ended without an answer this side required.
    #[error("{key}: no answer to the offer")]
    MissingAnswer {
        /// The key.
        key: String,
    },
}

impl NegotiationError {
    /// The Login Response status a target answers with.
    pub fn login_status(&self) -> LoginStatus {
        LoginStatus::INITIATOR_ERROR
    }

    /// The Reject reason for a full-feature Text request.
    pub fn reject_reason(&self) -> RejectReason {
        RejectReason::PROTOCOL_ERROR
    }
}

/// What one [`Negotiator::process`] call produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    /// Answers to the peer's keys, in order.
    pub answers: Vec<KeyValue>,
    /// Authentication keys (CHAP_*, SRP_*, KRB_*, TargetAuth) for the
    /// authenticator, in order.
    pub auth: Vec<KeyValue>,
    /// The value of a SendTargets request.
    pub send_targets: Option<String>,
}

impl Exchange {
    /// The answer given for `key`, if any.
    pub fn answer(&self, key: &str) -> Option<&str> {
        self.answers
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    }
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    /// This side's offer awaiting the peer's answer.
    offered: Option<String>,
    /// The outstanding offer already fixes the result (AND No / OR Yes).
    answer_optional: bool,
    /// This side offered or declared the key.
    sent: bool,
    /// The peer offered, declared or answered the key.
    received: bool,
}

/// One connection's negotiation state, for either role.
///
/// ```
/// use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role, Stage};
/// use rtgt_pdu::text::{encode_pairs, parse_pairs};
///
/// let initiator_cfg = LocalConfig {
///     name: Some("iqn.2024-01.org.example:host".into()),
///     target_name: Some("iqn.2024-01.org.example:disk".into()),
///     max_recv_data_segment_length: 262144,
///     ..LocalConfig::default()
/// };
/// let target_cfg = LocalConfig {
///     max_recv_data_segment_length: 65536,
///     max_burst_length: 1 << 20,
///     immediate_data: false,
///     ..LocalConfig::default()
/// };
/// let mut ini = Negotiator::new(Role::Initiator, initiator_cfg);
/// let mut tgt = Negotiator::new(Role::Target, target_cfg);
///
/// for stage in [Stage::Security, Stage::Operational] {
///     let ctx = Context::login(stage, true);
///     let request = encode_pairs(&ini.offers(ctx));
///     let mut answers = tgt.process(ctx, &parse_pairs(&request)?)?.answers;
///     answers.extend(tgt.offers(ctx));
///     let response = encode_pairs(&answers);
///     let replies = ini.process(ctx, &parse_pairs(&response)?)?;
///     assert!(replies.answers.is_empty());
/// }
/// let p = ini.finish()?;
/// assert_eq!(p.max_send_data_segment_length, 65536); // the target's declaration
/// assert_eq!(p.max_recv_data_segment_length, 262144); // ours
/// assert!(!p.immediate_data); // AND
/// assert_eq!(p.max_burst_length, 262144); // min(initiator default, target 1 MiB)
/// assert_eq!(tgt.finish()?.initiator_name.as_deref(), Some("iqn.2024-01.org.example:host"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Negotiator {
    role: Role,
    local: LocalConfig,
    params: NegotiatedParams,
    state: Vec<KeyState>,
    first_response_done: bool,
}

enum Outcome {
    /// Send this value as the answer and adopt it.
    Value(String),
    /// Answer `Reject`.
    Reject,
}

fn clamp(v: u64, min: u64, max: u64) -> u64 {
    v.clamp(min, max)
}

fn is_declarative(t: KeyType) -> bool {
    matches!(
        t,
        KeyType::DeclarativeNum { .. }
            | KeyType::DeclarativeNumOrZero { .. }
            | KeyType::DeclarativeText
            | KeyType::DeclarativeEnum { .. }
    )
}

impl Negotiator {
    /// A negotiator for `role` with this side's limits and preferences.
    pub fn new(role: Role, local: LocalConfig) -> Self {
        Self {
            role,
            local,
            params: NegotiatedParams::default(),
            state: vec![KeyState::default(); KEYS.len()],
            first_response_done: false,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This side's configuration.
    pub fn local(&self) -> &LocalConfig {
        &self.local
    }

    /// The parameters as negotiated so far (defaults where not negotiated).
    pub fn params(&self) -> &NegotiatedParams {
        &self.params
    }

    fn index(name: &str) -> Option<usize> {
        KEYS.iter().position(|k| k.name == name)
    }

    fn index_of(id: KeyId) -> Option<usize> {
        KEYS.iter().position(|k| k.id == id)
    }

    fn relevant(&self, def: &KeyDef) -> bool {
        match def.irrelevant_when {
            Irrelevance::Never => true,
            Irrelevance::Discovery => self.params.session_type != SessionType::Discovery,
            Irrelevance::WithoutRdma => self.params.rdma_extensions,
            Irrelevance::WithRdma => !self.params.rdma_extensions,
        }
    }

    // ----- local values -----

    fn local_list(&self, id: KeyId) -> Vec<String> {
        match id {
            KeyId::HeaderDigest => self
                .local
                .header_digests
                .iter()
                .map(|d| d.as_str().to_owned())
                .collect(),
            KeyId::DataDigest => self
                .local
                .data_digests
                .iter()
                .map(|d| d.as_str().to_owned())
                .collect(),
            KeyId::AuthMethod => self.local.auth_methods.clone(),
            KeyId::TaskReporting => self.local.task_reporting.clone(),
            _ => Vec::new(),
        }
    }

    fn local_bool(&self, id: KeyId) -> bool {
        match id {
            KeyId::InitialR2T => self.local.initial_r2t,
            KeyId::ImmediateData => self.local.immediate_data,
            KeyId::DataPduInOrder => self.local.data_pdu_in_order,
            KeyId::DataSequenceInOrder => self.local.data_sequence_in_order,
            KeyId::RdmaExtensions => self.local.rdma_extensions,
            _ => false,
        }
    }

    fn local_num(&self, id: KeyId) -> u64 {
        let l = &self.local;
        match id {
            KeyId::MaxConnections => l.max_connections.into(),
            KeyId::MaxRecvDataSegmentLength => l.max_recv_data_segment_length.into(),
            KeyId::MaxBurstLength => l.max_burst_length.into(),
            KeyId::FirstBurstLength => l.first_burst_length.min(l.max_burst_length).into(),
            KeyId::DefaultTime2Wait => l.default_time2wait.into(),
            KeyId::DefaultTime2Retain => l.default_time2retain.into(),
            KeyId::MaxOutstandingR2T => l.max_outstanding_r2t.into(),
            KeyId::ErrorRecoveryLevel => l.error_recovery_level.into(),
            KeyId::IscsiProtocolLevel => l.iscsi_protocol_level.into(),
            KeyId::TargetRecvDataSegmentLength => l.target_recv_data_segment_length.into(),
            KeyId::InitiatorRecvDataSegmentLength => l.initiator_recv_data_segment_length.into(),
            KeyId::MaxOutstandingUnexpectedPdus => l.max_outstanding_unexpected_pdus.into(),
            KeyId::TargetPortalGroupTag => l.target_portal_group_tag.unwrap_or(0).into(),
            _ => 0,
        }
    }

    /// This side's value for a negotiated key, as it would offer it.
    fn local_offer(&self, def: &KeyDef) -> Option<String> {
        Some(match def.key_type {
            KeyType::List { .. } => {
                let l = self.local_list(def.id);
                if l.is_empty() {
                    return None;
                }
                l.join(",")
            }
            KeyType::BoolAnd | KeyType::BoolOr => format_bool(self.local_bool(def.id)).to_owned(),
            KeyType::NumMin { min, max }
            | KeyType::NumMax { min, max }
            | KeyType::DeclarativeNum { min, max } => {
                clamp(self.local_num(def.id), min, max).to_string()
            }
            KeyType::DeclarativeNumOrZero { min, max } => {
                let v = self.local_num(def.id);
                if v == 0 { 0 } else { clamp(v, min, max) }.to_string()
            }
            _ => return None,
        })
    }

    // ----- results -----

    /// Adopts a validated value for a key.
    fn apply(&mut self, id: KeyId, value: &str) {
        let num = || parse_number(value).unwrap_or(0);
        let num16 = || u16::try_from(num()).unwrap_or(u16::MAX);
        let num32 = || u32::try_from(num()).unwrap_or(u32::MAX);
        let flag = || parse_bool(value).unwrap_or(false);
        let p = &mut self.params;
        match id {
            KeyId::HeaderDigest => p.header_digest = Digest::parse(value).unwrap_or_default(),
            KeyId::DataDigest => p.data_digest = Digest::parse(value).unwrap_or_default(),
            KeyId::MaxConnections => p.max_connections = num16(),
            KeyId::InitialR2T => p.initial_r2t = flag(),
            KeyId::ImmediateData => p.immediate_data = flag(),
            KeyId::MaxBurstLength => p.max_burst_length = num32(),
            KeyId::FirstBurstLength => p.first_burst_length = num32(),
            KeyId::DefaultTime2Wait => p.default_time2wait = num16(),
            KeyId::DefaultTime2Retain => p.default_time2retain = num16(),
            KeyId::MaxOutstandingR2T => p.max_outstanding_r2t = num16(),
            KeyId::DataPduInOrder => p.data_pdu_in_order = flag(),
            KeyId::DataSequenceInOrder => p.data_sequence_in_order = flag(),
            KeyId::ErrorRecoveryLevel => p.error_recovery_level = num() as u8,
            KeyId::TaskReporting => value.clone_into(&mut p.task_reporting),
            KeyId::IscsiProtocolLevel => p.iscsi_protocol_level = num() as u8,
            KeyId::AuthMethod => value.clone_into(&mut p.auth_method),
            KeyId::RdmaExtensions => p.rdma_extensions = flag(),
            KeyId::TargetRecvDataSegmentLength => p.target_recv_data_segment_length = num32(),
            KeyId::InitiatorRecvDataSegmentLength => {
                p.initiator_recv_data_segment_length = num32();
            }
            // Declarations are applied by `declared`.
            _ => {}
        }
    }

    /// Adopts a declaration, by this side (`ours`) or the peer.
    fn declared(&mut self, id: KeyId, value: &str, ours: bool) {
        let p = &mut self.params;
        let text = Some(value.to_owned());
        match id {
            KeyId::MaxRecvDataSegmentLength => {
                let v = u32::try_from(parse_number(value).unwrap_or(8192)).unwrap_or(8192);
                if ours {
                    p.max_recv_data_segment_length = v;
                } else {
                    p.max_send_data_segment_length = v;
                }
            }
            KeyId::MaxOutstandingUnexpectedPdus => {
                // Validated (0 or 2..=2^32-1) before it gets here.
                let v = u32::try_from(parse_number(value).unwrap_or(0)).unwrap_or(u32::MAX);
                if ours {
                    p.max_outstanding_unexpected_pdus = v;
                } else {
                    p.peer_max_outstanding_unexpected_pdus = v;
                }
            }
            KeyId::TargetName => p.target_name = text,
            KeyId::InitiatorName => p.initiator_name = text,
            KeyId::TargetAlias => p.target_alias = text,
            KeyId::InitiatorAlias => p.initiator_alias = text,
            KeyId::TargetAddress => p.target_address = text,
            KeyId::TargetPortalGroupTag => {
                p.target_portal_group_tag =
                    parse_number(value).ok().and_then(|v| u16::try_from(v).ok());
            }
            KeyId::SessionType => p.session_type = SessionType::parse(value).unwrap_or_default(),
            _ => {}
        }
    }

    // ----- acceptor -----

    /// The answer to the peer's offer of a negotiated key.
    fn answer_offer(&self, def: &KeyDef, value: &str) -> Outcome {
        match def.key_type {
            KeyType::List { .. } => {
                let local = self.local_list(def.id);
                split_list(value)
                    .find(|v| local.iter().any(|l| l == v))
                    .map_or(Outcome::Reject, |v| Outcome::Value(v.to_owned()))
            }
            KeyType::BoolAnd => match parse_bool(value) {
                Ok(b) => Outcome::Value(format_bool(b && self.local_bool(def.id)).to_owned()),
                Err(_) => Outcome::Reject,
            },
            KeyType::BoolOr => match parse_bool(value) {
                Ok(b) => Outcome::Value(format_bool(b || self.local_bool(def.id)).to_owned()),
                Err(_) => Outcome::Reject,
            },
            KeyType::NumMin { min, max } => match parse_number(value) {
                Ok(n) if (min..=max).contains(&n) => {
                    Outcome::Value(n.min(clamp(self.local_num(def.id), min, max)).to_string())
                }
                _ => Outcome::Reject,
            },
            KeyType::NumMax { min, max } => match parse_number(value) {
                Ok(n) if (min..=max).contains(&n) => {
                    Outcome::Value(n.max(clamp(self.local_num(def.id), min, max)).to_string())
                }
                _ => Outcome::Reject,
            },
            _ => Outcome::Reject,
        }
    }

    /// Validates a declaration's value; `false` means answer `Reject`.
    fn valid_declaration(def: &KeyDef, value: &str) -> bool {
        match def.key_type {
            KeyType::DeclarativeNum { min, max } => {
                parse_number(value).is_ok_and(|n| (min..=max).contains(&n))
            }
            KeyType::DeclarativeNumOrZero { min, max } => {
                parse_number(value).is_ok_and(|n| n == 0 || (min..=max).contains(&n))
            }
            KeyType::DeclarativeEnum { values } => values.contains(&value),
            KeyType::DeclarativeText => !value.is_empty(),
            _ => false,
        }
    }

    // ----- originator -----

    /// Checks the peer's answer to this side's offer and adopts the result.
    fn check_answer(
        &mut self,
        def: &KeyDef,
        offer: &str,
        answer: &str,
    ) -> Result<(), NegotiationError> {
        let bad = || NegotiationError::InvalidAnswer {
            key: def.name.to_owned(),
            offer: offer.to_owned(),
            answer: answer.to_owned(),
        };
        match Special::parse(answer) {
            Some(Special::Reject | Special::Irrelevant) => return Ok(()),
            Some(Special::NotUnderstood) => {
                return if def.optional { Ok(()) } else { Err(bad()) };
            }
            None => {}
        }
        let ok = match def.key_type {
            KeyType::List { .. } => split_list(offer).any(|o| o == answer),
            KeyType::BoolAnd => match (parse_bool(offer), parse_bool(answer)) {
                (Ok(o), Ok(a)) => o || !a,
                _ => false,
            },
            KeyType::BoolOr => match (parse_bool(offer), parse_bool(answer)) {
                (Ok(o), Ok(a)) => !o || a,
                _ => false,
            },
            KeyType::NumMin { min, max } => match (parse_number(offer), parse_number(answer)) {
                (Ok(o), Ok(a)) => (min..=max).contains(&a) && a <= o,
                _ => false,
            },
            KeyType::NumMax { min, max } => match (parse_number(offer), parse_number(answer)) {
                (Ok(o), Ok(a)) => (min..=max).contains(&a) && a >= o,
                _ => false,
            },
            _ => false,
        };
        if !ok {
            return Err(bad());
        }
        self.apply(def.id, answer);
        Ok(())
    }

    /// Records that this side originates `def` with `value`.
    fn originate(&mut self, idx: usize, def: &KeyDef, value: String, out: &mut Vec<KeyValue>) {
        let Some(st) = self.state.get_mut(idx) else {
            return;
        };
        st.sent = true;
        match def.key_type {
            KeyType::DeclarativeNum { .. }
            | KeyType::DeclarativeNumOrZero { .. }
            | KeyType::DeclarativeText
            | KeyType::DeclarativeEnum { .. } => {
                self.declared(def.id, &value, true);
            }
            KeyType::BoolAnd | KeyType::BoolOr => {
                let b = parse_bool(&value).unwrap_or(false);
                let fixed = (def.key_type == KeyType::BoolAnd && !b)
                    || (def.key_type == KeyType::BoolOr && b);
                st.offered = Some(value.clone());
                st.answer_optional = fixed;
                if fixed {
                    self.apply(def.id, &value);
                }
            }
            _ => {
                st.offered = Some(value.clone());
                st.answer_optional = false;
            }
        }
        out.push(KeyValue::new(def.name, value));
    }

    /// The keys this side originates now (offers and declarations not yet
    /// sent). Call it for each login request (initiator) or response (target)
    /// and send the result after the answers from [`process`](Self::process).
    pub fn offers(&mut self, ctx: Context) -> Vec<KeyValue> {
        let mut out = Vec::new();
        if ctx.stage == Stage::FullFeature {
            return out;
        }
        match self.role {
            Role::Initiator => self.initiator_offers(ctx, &mut out),
            Role::Target => self.target_offers(ctx, &mut out),
        }
        out
    }

    /// Whether this side may still originate the key: not yet sent, and for
    /// negotiated keys not yet offered by the peer either (declarations go
    /// both ways independently).
    fn fresh(&self, idx: usize) -> bool {
        let declarative = KEYS.get(idx).is_some_and(|d| is_declarative(d.key_type));
        self.state
            .get(idx)
            .is_some_and(|s| !s.sent && (declarative || !s.received))
    }

    fn offer_id(&mut self, id: KeyId, value: Option<String>, out: &mut Vec<KeyValue>) {
        let (Some(idx), Some(value)) = (Self::index_of(id), value) else {
            return;
        };
        let Some(def) = KEYS.get(idx) else { return };
        if self.fresh(idx) {
            self.originate(idx, def, value, out);
        }
    }

    fn initiator_offers(&mut self, ctx: Context, out: &mut Vec<KeyValue>) {
        let discovery = self.local.session_type == SessionType::Discovery;
        if ctx.stage == Stage::Security
            || (ctx.stage == Stage::Operational && self.fresh_identity())
        {
            self.offer_id(KeyId::InitiatorName, self.local.name.clone(), out);
            self.offer_id(KeyId::InitiatorAlias, self.local.alias.clone(), out);
            if ctx.leading {
                self.offer_id(
                    KeyId::SessionType,
                    Some(self.local.session_type.as_str().to_owned()),
                    out,
                );
            }
            if !discovery {
                self.offer_id(KeyId::TargetName, self.local.target_name.clone(), out);
            }
        }
        if ctx.stage == Stage::Security {
            let methods = self.local.auth_methods.join(",");
            if !methods.is_empty() {
                self.offer_id(KeyId::AuthMethod, Some(methods), out);
            }
            return;
        }
        // Operational stage.
        if ctx.leading && self.local.rdma_extensions && !discovery {
            self.offer_id(KeyId::RdmaExtensions, Some("Yes".to_owned()), out);
        }
        let rdma_offered = self.local.rdma_extensions && !discovery;
        for (idx, def) in KEYS.iter().enumerate() {
            if !self.fresh(idx) {
                continue;
            }
            let wanted = match def.id {
                KeyId::HeaderDigest | KeyId::DataDigest => true,
                KeyId::MaxRecvDataSegmentLength => !self.params.rdma_extensions,
                KeyId::MaxConnections
                | KeyId::InitialR2T
                | KeyId::ImmediateData
                | KeyId::MaxBurstLength
                | KeyId::FirstBurstLength
                | KeyId::MaxOutstandingR2T
                | KeyId::DataPduInOrder
                | KeyId::DataSequenceInOrder => ctx.leading && !discovery,
                KeyId::DefaultTime2Wait | KeyId::DefaultTime2Retain | KeyId::ErrorRecoveryLevel => {
                    ctx.leading
                }
                KeyId::TaskReporting => {
                    ctx.leading && !discovery && self.local.task_reporting != ["RFC3720"]
                }
                KeyId::IscsiProtocolLevel => ctx.leading && self.local.iscsi_protocol_level != 1,
                KeyId::TargetRecvDataSegmentLength | KeyId::InitiatorRecvDataSegmentLength => {
                    rdma_offered
                }
                KeyId::MaxOutstandingUnexpectedPdus => rdma_offered && ctx.leading,
                _ => false,
            };
            if wanted {
                if let Some(v) = self.local_offer(def) {
                    self.originate(idx, def, v, out);
                }
            }
        }
    }

    fn fresh_identity(&self) -> bool {
        Self::index_of(KeyId::InitiatorName).is_some_and(|i| self.fresh(i))
    }

    fn target_offers(&mut self, ctx: Context, out: &mut Vec<KeyValue>) {
        if !self.first_response_done {
            self.first_response_done = true;
            if self.params.session_type == SessionType::Normal {
                let tpgt = self.local.target_portal_group_tag.map(|t| t.to_string());
                self.offer_id(KeyId::TargetPortalGroupTag, tpgt, out);
                self.offer_id(KeyId::TargetAlias, self.local.alias.clone(), out);
            }
        }
        if ctx.stage == Stage::Operational && !self.params.rdma_extensions {
            if let Some(def) = super::keys::def(KeyId::MaxRecvDataSegmentLength) {
                let v = self.local_offer(def);
                self.offer_id(KeyId::MaxRecvDataSegmentLength, v, out);
            }
        }
        // RFC 7145 §6.7: with iSER on, the target declares how many unexpected PDUs it can
        // receive (leading connection; not declaring means "no limit").
        if ctx.stage == Stage::Operational
            && ctx.leading
            && self.params.rdma_extensions
            && self.local.max_outstanding_unexpected_pdus != 0
        {
            if let Some(def) = super::keys::def(KeyId::MaxOutstandingUnexpectedPdus) {
                let v = self.local_offer(def);
                self.offer_id(KeyId::MaxOutstandingUnexpectedPdus, v, out);
            }
        }
    }

    // ----- processing -----

    /// Processes the keys the peer sent in one (reassembled) Login or Text
    /// PDU sequence: answers its offers, checks its answers to this side's
    /// offers, records its declarations.
    pub fn process(
        &mut self,
        ctx: Context,
        received: &[TextPair<'_>],
    ) -> Result<Exchange, NegotiationError> {
        let mut ex = Exchange::default();
        let login = ctx.stage != Stage::FullFeature;
        if !login {
            for st in &mut self.state {
                *st = KeyState::default();
            }
        }
        // Session type and iSER decide the relevance of other keys: take them first.
        for pair in received {
            if pair.key == "SessionType" && self.role == Role::Target && login && ctx.leading {
                if let Some(t) = SessionType::parse(pair.value) {
                    self.params.session_type = t;
                }
            }
        }
        if let Some(pos) = received.iter().position(|p| p.key == "RDMAExtensions") {
            if let Some(p) = received.get(pos) {
                self.handle(ctx, *p, &mut ex)?;
            }
        }
        for pair in received.iter().filter(|p| p.key != "RDMAExtensions") {
            self.handle(ctx, *pair, &mut ex)?;
        }
        self.enforce_first_burst(&mut ex);
        Ok(ex)
    }

    /// FirstBurstLength must not exceed MaxBurstLength (§13.14).
    fn enforce_first_burst(&mut self, ex: &mut Exchange) {
        let mbl = self.params.max_burst_length;
        if self.params.first_burst_length > mbl {
            self.params.first_burst_length = mbl;
            if let Some(a) = ex.answers.iter_mut().find(|a| a.key == "FirstBurstLength") {
                if a.value != REJECT && a.value != IRRELEVANT {
                    a.value = mbl.to_string();
                }
            }
        }
    }

    fn handle(
        &mut self,
        ctx: Context,
        pair: TextPair<'_>,
        ex: &mut Exchange,
    ) -> Result<(), NegotiationError> {
        let login = ctx.stage != Stage::FullFeature;
        let Some(idx) = Self::index(pair.key) else {
            // Unknown key (including X- and X# extensions we do not implement).
            if Special::parse(pair.value).is_none() {
                ex.answers.push(KeyValue::new(pair.key, NOT_UNDERSTOOD));
            }
            return Ok(());
        };
        let Some(def) = lookup(pair.key) else {
            return Ok(());
        };
        let renegotiated = || NegotiationError::Renegotiated {
            key: def.name.to_owned(),
        };
        let wrong_phase = || NegotiationError::WrongPhase {
            key: def.name.to_owned(),
            stage: ctx.stage,
        };

        // An answer to this side's outstanding offer?
        if let Some(st) = self.state.get_mut(idx) {
            if let Some(offer) = st.offered.take() {
                st.received = true;
                return self.check_answer(def, &offer, pair.value);
            }
        }

        let peer = self.role.peer();
        if def.id == KeyId::AuthKey {
            if ctx.stage != Stage::Security {
                return if login {
                    Err(wrong_phase())
                } else {
                    ex.answers.push(KeyValue::new(pair.key, REJECT));
                    Ok(())
                };
            }
            ex.auth.push(pair.into());
            return Ok(());
        }
        if !peer.may_send(def.senders) {
            return Err(NegotiationError::WrongSender {
                key: def.name.to_owned(),
                sender: peer,
            });
        }
        let declarative = is_declarative(def.key_type);
        // Phase rules.
        match (def.usage, ctx.stage) {
            (KeyUse::FullFeatureOnly, Stage::Security | Stage::Operational)
            | (KeyUse::SecurityOnly, Stage::Operational) => return Err(wrong_phase()),
            (
                KeyUse::LeadingOnly | KeyUse::InitializeOnly | KeyUse::SecurityOnly,
                Stage::FullFeature,
            ) => {
                ex.answers.push(KeyValue::new(pair.key, REJECT));
                return Ok(());
            }
            _ => {}
        }
        // Once per login (or per Text request).
        let Some(st) = self.state.get_mut(idx) else {
            return Ok(());
        };
        if st.received || (st.sent && !declarative) {
            return Err(renegotiated());
        }
        st.received = true;

        if Special::parse(pair.value).is_some() {
            // A special value not answering an offer of ours: nothing to adopt or answer.
            return Ok(());
        }
        if def.usage == KeyUse::LeadingOnly && login && !ctx.leading {
            if !declarative {
                ex.answers.push(KeyValue::new(pair.key, IRRELEVANT));
            }
            return Ok(());
        }
        if !self.relevant(def) && !declarative {
            ex.answers.push(KeyValue::new(pair.key, IRRELEVANT));
            return Ok(());
        }
        match def.key_type {
            KeyType::Request => {
                ex.send_targets = Some(pair.value.to_owned());
            }
            KeyType::Obsolete { answer } => ex.answers.push(KeyValue::new(pair.key, answer)),
            KeyType::DeclarativeNum { .. }
            | KeyType::DeclarativeNumOrZero { .. }
            | KeyType::DeclarativeText
            | KeyType::DeclarativeEnum { .. } => {
                if Self::valid_declaration(def, pair.value) {
                    self.declared(def.id, pair.value, false);
                } else {
                    ex.answers.push(KeyValue::new(pair.key, REJECT));
                }
            }
            KeyType::Auth => ex.auth.push(pair.into()),
            _ => match self.answer_offer(def, pair.value) {
                Outcome::Value(v) => {
                    self.apply(def.id, &v);
                    if let Some(st) = self.state.get_mut(idx) {
                        st.sent = true;
                    }
                    ex.answers.push(KeyValue::new(pair.key, v));
                }
                Outcome::Reject => ex.answers.push(KeyValue::new(pair.key, REJECT)),
            },
        }
        Ok(())
    }

    /// Keys this side offered whose answer is still required.
    pub fn pending_offers(&self) -> Vec<&'static str> {
        KEYS.iter()
            .zip(&self.state)
            .filter(|(_, s)| s.offered.is_some() && !s.answer_optional)
            .map(|(k, _)| k.name)
            .collect()
    }

    /// Ends the negotiation: fails if a required answer never came, and
    /// returns the negotiated parameters.
    pub fn finish(&mut self) -> Result<NegotiatedParams, NegotiationError> {
        if let Some(key) = self.pending_offers().first() {
            return Err(NegotiationError::MissingAnswer {
                key: (*key).to_owned(),
            });
        }
        for st in &mut self.state {
            st.offered = None;
        }
        if self.params.first_burst_length > self.params.max_burst_length {
            self.params.first_burst_length = self.params.max_burst_length;
        }
        Ok(self.params.clone())
    }
}
