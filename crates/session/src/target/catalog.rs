//! What the login and discovery code needs to know about the targets a portal serves (RFC 7143
//! §13.3 SendTargets, §13.9 TargetPortalGroupTag, §12 security, §13 operational defaults).
//!
//! The engine builds one [`Catalog`] from its configuration and shares it (read-only) with every
//! connection; this crate never parses configuration files.

use crate::chap::ChapAlgorithm;
use crate::params::DigestKind;

/// Every target served, plus discovery-session policy and operational defaults.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The targets, in SendTargets order.
    pub targets: Vec<TargetEntry>,
    /// Portal groups: tag and the addresses that belong to it.
    pub portal_groups: Vec<PortalGroup>,
    /// Authentication required for discovery sessions.
    pub discovery_auth: AuthPolicy,
    /// Operational values the target offers and the limits it enforces.
    pub defaults: SessionDefaults,
}

impl Catalog {
    /// The target called `name` (IQN/EUI names compare case-insensitively, RFC 3722 §6).
    pub fn target(&self, name: &str) -> Option<&TargetEntry> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The portal group with `tag`.
    pub fn portal_group(&self, tag: u16) -> Option<&PortalGroup> {
        self.portal_groups.iter().find(|g| g.tag == tag)
    }
}

/// One target: name, LUNs, who may log in and how.
#[derive(Debug, Clone, Default)]
pub struct TargetEntry {
    /// iSCSI name (iqn./eui./naa.).
    pub name: String,
    /// TargetAlias, if any.
    pub alias: Option<String>,
    /// LUN numbers this target exposes.
    pub luns: Vec<u16>,
    /// Which initiators may log in.
    pub acl: Acl,
    /// Authentication for sessions to this target.
    pub auth: AuthPolicy,
    /// Portal group tags through which the target is reachable (empty = every group).
    pub portal_groups: Vec<u16>,
}

impl TargetEntry {
    /// Whether the target is reachable through portal group `tag`.
    pub fn in_group(&self, tag: u16) -> bool {
        self.portal_groups.is_empty() || self.portal_groups.contains(&tag)
    }

    /// Whether LUN `n` exists.
    pub fn has_lun(&self, n: u16) -> bool {
        self.luns.contains(&n)
    }
}

/// A portal group (RFC 7143 §4.4.1): its tag and its listening addresses.
#[derive(Debug, Clone, Default)]
pub struct PortalGroup {
    /// TargetPortalGroupTag.
    pub tag: u16,
    /// Addresses as `ip:port` (IPv6 in brackets). A wildcard address (0.0.0.0 or [::]) is
    /// replaced by the address the initiator connected to when reported.
    pub addresses: Vec<std::net::SocketAddr>,
}

/// Initiator access control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Acl {
    /// Any initiator may log in.
    #[default]
    Any,
    /// Only these initiator names (compared case-insensitively).
    Allow(Vec<String>),
}

impl Acl {
    /// Whether `initiator` may log in.
    pub fn allows(&self, initiator: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Allow(names) => names.iter().any(|n| n.eq_ignore_ascii_case(initiator)),
        }
    }
}

/// CHAP credentials: a user name and its secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl core::fmt::Debug for Credential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How initiators must authenticate (RFC 7143 §12).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No authentication (AuthMethod=None).
    #[default]
    None,
    /// CHAP is required.
    Chap(ChapPolicy),
}

/// CHAP settings of a target or of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapPolicy {
    /// Accepted initiator credentials (any one may be used).
    pub users: Vec<Credential>,
    /// The target's own credentials, used to answer an initiator's challenge (mutual CHAP).
    /// Without them a mutual-CHAP request fails authentication.
    pub target: Option<Credential>,
    /// Require the initiator to authenticate the target (mutual CHAP).
    pub require_mutual: bool,
    /// Algorithms offered, in preference order.
    pub algorithms: Vec<ChapAlgorithm>,
}

impl Default for ChapPolicy {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            target: None,
            require_mutual: false,
            algorithms: ChapAlgorithm::ALL.to_vec(),
        }
    }
}

/// Most commands a session may have in flight (the largest `queue_depth`).
pub const MAX_QUEUE_DEPTH: u32 = 16384;

/// The target's operational offers and limits (RFC 7143 §13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDefaults {
    /// MaxRecvDataSegmentLength we declare.
    pub max_recv_data_segment_length: u32,
    /// Largest MaxBurstLength we accept.
    pub max_burst_length: u32,
    /// Largest FirstBurstLength we accept.
    pub first_burst_length: u32,
    /// ImmediateData we offer (AND with the initiator's).
    pub immediate_data: bool,
    /// InitialR2T we offer (OR with the initiator's).
    pub initial_r2t: bool,
    /// Largest MaxOutstandingR2T we accept (≤ 16).
    pub max_outstanding_r2t: u16,
    /// Largest MaxConnections we accept.
    pub max_connections: u16,
    /// Header digests we accept, in preference order.
    pub header_digest: Vec<DigestKind>,
    /// Data digests we accept, in preference order.
    pub data_digest: Vec<DigestKind>,
    /// Highest ErrorRecoveryLevel we support.
    pub max_error_recovery_level: u8,
    /// DefaultTime2Wait we accept at most.
    pub default_time2wait: u16,
    /// DefaultTime2Retain we accept at most.
    pub default_time2retain: u16,
    /// Idle time after which we ping with NOP-In (None: never).
    pub nop_interval: Option<std::time::Duration>,
    /// How long a ping may go unanswered before the connection is dropped.
    pub nop_timeout: std::time::Duration,
    /// Commands in flight per session (the CmdSN window), 1 to [`MAX_QUEUE_DEPTH`].
    pub queue_depth: u32,
    /// Largest per-task data buffer the engine provides.
    pub max_task_buffer: u32,
}

impl Default for SessionDefaults {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 1,
            max_connections: 8,
            header_digest: vec![DigestKind::None, DigestKind::Crc32c],
            data_digest: vec![DigestKind::None, DigestKind::Crc32c],
            max_error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            nop_interval: Some(std::time::Duration::from_secs(15)),
            nop_timeout: std::time::Duration::from_secs(15),
            queue_depth: 128,
            max_task_buffer: 8 * 1024 * 1024,
        }
    }
}
