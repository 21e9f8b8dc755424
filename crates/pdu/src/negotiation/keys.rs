//! The declarative table of every text key RFC 7143 defines (§12 security
//! keys, §13 operational keys) plus the iSER keys of RFC 7145 §6.
//!
//! Each [`KeyDef`] states the key's negotiation type (§6.2: list, Boolean
//! AND/OR, numerical minimum/maximum, declarative), its RFC default, its
//! value range, where it may be used (§13 "Use": LO, IO, ALL, FFP, security
//! stage), its scope (session-wide or connection-only), who may send it and
//! when it is irrelevant. The [`Negotiator`](super::Negotiator) is driven
//! entirely by this table.

/// Largest 24-bit length value (2^24 - 1), the upper bound of the
/// data-segment and burst length keys.
pub const MAX_LEN_24: u64 = (1 << 24) - 1;

/// Identifies a key of the table (for exhaustive matching in code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // variants are the RFC key names
pub enum KeyId {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    SendTargets,
    TargetName,
    InitiatorName,
    TargetAlias,
    InitiatorAlias,
    TargetAddress,
    TargetPortalGroupTag,
    InitialR2T,
    ImmediateData,
    MaxRecvDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPduInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
    SessionType,
    TaskReporting,
    IscsiProtocolLevel,
    AuthMethod,
    /// Any authentication-method key (CHAP_*, SRP_*, KRB_*, TargetAuth).
    AuthKey,
    OfMarker,
    IfMarker,
    OfMarkInt,
    IfMarkInt,
    RdmaExtensions,
    TargetRecvDataSegmentLength,
    InitiatorRecvDataSegmentLength,
    MaxOutstandingUnexpectedPdus,
    NodeArchitecture,
}

/// How a key is negotiated (RFC 7143 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// List of values in the originator's preference order; the acceptor
    /// answers with the first one it supports (§6.2.1). `values` are the
    /// values the RFC defines.
    List {
        /// Values defined by the RFC.
        values: &'static [&'static str],
    },
    /// Boolean, result is the AND of both sides (§6.2.2); an offer of `No`
    /// need not be answered.
    BoolAnd,
    /// Boolean, result is the OR of both sides; an offer of `Yes` need not be
    /// answered.
    BoolOr,
    /// Numerical, result is the minimum of offer and acceptor's value.
    NumMin {
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Numerical, result is the maximum.
    NumMax {
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Declarative number where 0 means "no limit" (RFC 7145 §6.7
    /// MaxOutstandingUnexpectedPDUs): each side states its own value, 0 or a
    /// value in `min..=max`; no answer.
    DeclarativeNumOrZero {
        /// Smallest non-zero valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Declarative number: each side states its own value; no answer.
    DeclarativeNum {
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Declarative text (names, aliases, addresses); no answer.
    DeclarativeText,
    /// Declarative choice among fixed values (SessionType); no answer.
    DeclarativeEnum {
        /// The valid values.
        values: &'static [&'static str],
    },
    /// A request the target fulfils rather than negotiates (SendTargets).
    Request,
    /// An authentication-method key exchanged by the security negotiation
    /// (§12); handed to the caller's authenticator.
    Auth,
    /// An obsolete key still answered (§13.25): with `answer`.
    Obsolete {
        /// The fixed answer.
        answer: &'static str,
    },
}

/// Where a key may be used (RFC 7143 §13 "Use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// LO: only in the login of the leading connection.
    LeadingOnly,
    /// IO: in the login of any connection, not in full feature phase.
    InitializeOnly,
    /// ALL: during login and in full feature phase.
    All,
    /// FFP: only in full feature phase (Text requests).
    FullFeatureOnly,
    /// Only in the security negotiation stage (§12).
    SecurityOnly,
}

/// Session-wide or connection-only (RFC 7143 §13 "Scope").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// SW: one value for the whole session.
    Session,
    /// CO: each connection has its own value.
    Connection,
}

/// Who may send a key unsolicited (RFC 7143 §13 "Senders").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Senders {
    /// Only the initiator.
    Initiator,
    /// Only the target.
    Target,
    /// Either side.
    Both,
}

/// When the acceptor answers `Irrelevant` (RFC 7143 §13 "Irrelevant when").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Irrelevance {
    /// Always relevant.
    Never,
    /// In a discovery session (SessionType=Discovery).
    Discovery,
    /// Unless iSER is in use (RDMAExtensions=No, RFC 7145).
    WithoutRdma,
    /// When iSER is in use (RDMAExtensions=Yes, RFC 7145).
    WithRdma,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    /// Identifier.
    pub id: KeyId,
    /// The key name on the wire.
    pub name: &'static str,
    /// Negotiation type and value range.
    pub key_type: KeyType,
    /// The RFC default ("" where none applies).
    pub default: &'static str,
    /// Where it may be used.
    pub usage: KeyUse,
    /// Scope.
    pub scope: Scope,
    /// Who may send it.
    pub senders: Senders,
    /// When it is irrelevant.
    pub irrelevant_when: Irrelevance,
    /// Whether a peer may answer `NotUnderstood` without failing the login
    /// (keys added after RFC 3720 that older peers do not know).
    pub optional: bool,
    /// The defining clause.
    pub reference: &'static str,
}

const DIGESTS: &[&str] = &["CRC32C", "None"];

macro_rules! key {
    ($id:ident, $name:literal, $ty:expr, $default:literal, $use:ident, $scope:ident, $senders:ident,
     $irr:ident, $optional:literal, $ref:literal) => {
        KeyDef {
            id: KeyId::$id,
            name: $name,
            key_type: $ty,
            default: $default,
            usage: KeyUse::$use,
            scope: Scope::$scope,
            senders: Senders::$senders,
            irrelevant_when: Irrelevance::$irr,
            optional: $optional,
            reference: $ref,
        }
    };
}

macro_rules! auth_key {
    ($name:literal, $ref:literal) => {
        key!(
            AuthKey,
            $name,
            KeyType::Auth,
            "",
            SecurityOnly,
            Connection,
            Both,
            Never,
            false,
            $ref
        )
    };
}

/// Every key, in RFC order.
pub static KEYS: &[KeyDef] = &[
    key!(
        HeaderDigest,
        "HeaderDigest",
        KeyType::List { values: DIGESTS },
        "None",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.1"
    ),
    key!(
        DataDigest,
        "DataDigest",
        KeyType::List { values: DIGESTS },
        "None",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.1"
    ),
    key!(
        MaxConnections,
        "MaxConnections",
        KeyType::NumMin { min: 1, max: 65535 },
        "1",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.2"
    ),
    key!(
        SendTargets,
        "SendTargets",
        KeyType::Request,
        "",
        FullFeatureOnly,
        Session,
        Initiator,
        Never,
        false,
        "RFC 7143 §13.3"
    ),
    key!(
        TargetName,
        "TargetName",
        KeyType::DeclarativeText,
        "",
        All,
        Session,
        Both,
        Never,
        false,
        "RFC 7143 §13.4"
    ),
    key!(
        InitiatorName,
        "InitiatorName",
        KeyType::DeclarativeText,
        "",
        InitializeOnly,
        Session,
        Initiator,
        Never,
        false,
        "RFC 7143 §13.5"
    ),
    key!(
        TargetAlias,
        "TargetAlias",
        KeyType::DeclarativeText,
        "",
        All,
        Session,
        Target,
        Never,
        true,
        "RFC 7143 §13.6"
    ),
    key!(
        InitiatorAlias,
        "InitiatorAlias",
        KeyType::DeclarativeText,
        "",
        All,
        Session,
        Initiator,
        Never,
        true,
        "RFC 7143 §13.7"
    ),
    key!(
        TargetAddress,
        "TargetAddress",
        KeyType::DeclarativeText,
        "",
        All,
        Session,
        Target,
        Never,
        false,
        "RFC 7143 §13.8"
    ),
    key!(
        TargetPortalGroupTag,
        "TargetPortalGroupTag",
        KeyType::DeclarativeNum { min: 0, max: 65535 },
        "",
        InitializeOnly,
        Session,
        Target,
        Never,
        false,
        "RFC 7143 §13.9"
    ),
    key!(
        InitialR2T,
        "InitialR2T",
        KeyType::BoolOr,
        "Yes",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.10"
    ),
    key!(
        ImmediateData,
        "ImmediateData",
        KeyType::BoolAnd,
        "Yes",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.11"
    ),
    key!(
        MaxRecvDataSegmentLength,
        "MaxRecvDataSegmentLength",
        KeyType::DeclarativeNum {
            min: 512,
            max: MAX_LEN_24
        },
        "8192",
        All,
        Connection,
        Both,
        WithRdma,
        false,
        "RFC 7143 §13.12"
    ),
    key!(
        MaxBurstLength,
        "MaxBurstLength",
        KeyType::NumMin {
            min: 512,
            max: MAX_LEN_24
        },
        "262144",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.13"
    ),
    key!(
        FirstBurstLength,
        "FirstBurstLength",
        KeyType::NumMin {
            min: 512,
            max: MAX_LEN_24
        },
        "65536",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.14"
    ),
    key!(
        DefaultTime2Wait,
        "DefaultTime2Wait",
        KeyType::NumMax { min: 0, max: 3600 },
        "2",
        LeadingOnly,
        Session,
        Both,
        Never,
        false,
        "RFC 7143 §13.15"
    ),
    key!(
        DefaultTime2Retain,
        "DefaultTime2Retain",
        KeyType::NumMin { min: 0, max: 3600 },
        "20",
        LeadingOnly,
        Session,
        Both,
        Never,
        false,
        "RFC 7143 §13.16"
    ),
    key!(
        MaxOutstandingR2T,
        "MaxOutstandingR2T",
        KeyType::NumMin { min: 1, max: 65535 },
        "1",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.17"
    ),
    key!(
        DataPduInOrder,
        "DataPDUInOrder",
        KeyType::BoolOr,
        "Yes",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.18"
    ),
    key!(
        DataSequenceInOrder,
        "DataSequenceInOrder",
        KeyType::BoolOr,
        "Yes",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        false,
        "RFC 7143 §13.19"
    ),
    key!(
        ErrorRecoveryLevel,
        "ErrorRecoveryLevel",
        KeyType::NumMin { min: 0, max: 2 },
        "0",
        LeadingOnly,
        Session,
        Both,
        Never,
        false,
        "RFC 7143 §13.20"
    ),
    key!(
        SessionType,
        "SessionType",
        KeyType::DeclarativeEnum {
            values: &["Discovery", "Normal"]
        },
        "Normal",
        LeadingOnly,
        Session,
        Initiator,
        Never,
        false,
        "RFC 7143 §13.21"
    ),
    key!(
        TaskReporting,
        "TaskReporting",
        KeyType::List {
            values: &["RFC3720", "ResponseFence", "FastAbort"]
        },
        "RFC3720",
        LeadingOnly,
        Session,
        Both,
        Discovery,
        true,
        "RFC 7143 §13.23"
    ),
    key!(
        IscsiProtocolLevel,
        "iSCSIProtocolLevel",
        KeyType::NumMin { min: 0, max: 31 },
        "1",
        LeadingOnly,
        Session,
        Both,
        Never,
        true,
        "RFC 7143 §13.24"
    ),
    key!(
        AuthMethod,
        "AuthMethod",
        KeyType::List {
            values: &["KRB5", "SRP", "CHAP", "None"]
        },
        "None",
        SecurityOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §12.1"
    ),
    auth_key!("KRB_AP_REQ", "RFC 7143 §12.1.1"),
    auth_key!("KRB_AP_REP", "RFC 7143 §12.1.1"),
    auth_key!("SRP_U", "RFC 7143 §12.1.2"),
    auth_key!("SRP_GROUP", "RFC 7143 §12.1.2"),
    auth_key!("SRP_s", "RFC 7143 §12.1.2"),
    auth_key!("SRP_A", "RFC 7143 §12.1.2"),
    auth_key!("SRP_B", "RFC 7143 §12.1.2"),
    auth_key!("SRP_M", "RFC 7143 §12.1.2"),
    auth_key!("SRP_HM", "RFC 7143 §12.1.2"),
    auth_key!("TargetAuth", "RFC 7143 §12.1.2"),
    auth_key!("CHAP_A", "RFC 7143 §12.1.3"),
    auth_key!("CHAP_I", "RFC 7143 §12.1.3"),
    auth_key!("CHAP_C", "RFC 7143 §12.1.3"),
    auth_key!("CHAP_N", "RFC 7143 §12.1.3"),
    auth_key!("CHAP_R", "RFC 7143 §12.1.3"),
    key!(
        OfMarker,
        "OFMarker",
        KeyType::Obsolete { answer: "No" },
        "No",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.25"
    ),
    key!(
        IfMarker,
        "IFMarker",
        KeyType::Obsolete { answer: "No" },
        "No",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.25"
    ),
    key!(
        OfMarkInt,
        "OFMarkInt",
        KeyType::Obsolete { answer: "Reject" },
        "",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.25"
    ),
    key!(
        IfMarkInt,
        "IFMarkInt",
        KeyType::Obsolete { answer: "Reject" },
        "",
        InitializeOnly,
        Connection,
        Both,
        Never,
        false,
        "RFC 7143 §13.25"
    ),
    key!(
        RdmaExtensions,
        "RDMAExtensions",
        KeyType::BoolAnd,
        "No",
        LeadingOnly,
        Session,
        Both,
        Never,
        true,
        "RFC 7145 §6.3"
    ),
    key!(
        TargetRecvDataSegmentLength,
        "TargetRecvDataSegmentLength",
        KeyType::NumMin {
            min: 512,
            max: MAX_LEN_24
        },
        "8192",
        InitializeOnly,
        Connection,
        Both,
        WithoutRdma,
        false,
        "RFC 7145 §6.4"
    ),
    key!(
        InitiatorRecvDataSegmentLength,
        "InitiatorRecvDataSegmentLength",
        KeyType::NumMin {
            min: 512,
            max: MAX_LEN_24
        },
        "8192",
        InitializeOnly,
        Connection,
        Both,
        WithoutRdma,
        false,
        "RFC 7145 §6.5"
    ),
    key!(
        MaxOutstandingUnexpectedPdus,
        "MaxOutstandingUnexpectedPDUs",
        KeyType::DeclarativeNumOrZero {
            min: 2,
            max: 0xffff_ffff
        },
        "0",
        LeadingOnly,
        Session,
        Both,
        WithoutRdma,
        false,
        "RFC 7145 §6.7"
    ),
    key!(
        NodeArchitecture,
        "X#NodeArchitecture",
        KeyType::DeclarativeText,
        "",
        LeadingOnly,
        Session,
        Both,
        Never,
        true,
        "RFC 7143 §13.26"
    ),
];

/// Looks a key up by its wire name (case-sensitive, §6.1).
///
/// ```
/// use rtgt_pdu::negotiation::{KeyType, KeyUse, lookup};
///
/// let k = lookup("MaxBurstLength").unwrap();
/// assert_eq!(k.key_type, KeyType::NumMin { min: 512, max: (1 << 24) - 1 });
/// assert_eq!(k.default, "262144");
/// assert_eq!(k.usage, KeyUse::LeadingOnly);
/// assert!(lookup("maxburstlength").is_none());
/// ```
pub fn lookup(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// The table row of a (non-[`KeyId::AuthKey`]) key id.
pub fn def(id: KeyId) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.id == id)
}

/// Whether `name` is a private or public extension key (`X-…` or `X#…`,
/// RFC 7143 §13.22), which an implementation may not understand.
pub fn is_extension_key(name: &str) -> bool {
    name.starts_with("X-") || name.starts_with("X#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(crate::text::is_valid_key_name(k.name), "{}", k.name);
            assert!(
                KEYS[..i].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
            assert!(!k.reference.is_empty());
        }
    }

    #[test]
    fn defaults_are_within_their_ranges() {
        use crate::text::value::{parse_bool, parse_number};
        for k in KEYS {
            match k.key_type {
                KeyType::NumMin { min, max }
                | KeyType::NumMax { min, max }
                | KeyType::DeclarativeNum { min, max }
                    if !k.default.is_empty() =>
                {
                    let d = parse_number(k.default).unwrap();
                    assert!((min..=max).contains(&d), "{}", k.name);
                }
                KeyType::BoolAnd | KeyType::BoolOr => {
                    parse_bool(k.default).unwrap();
                }
                KeyType::List { values } | KeyType::DeclarativeEnum { values } => {
                    assert!(values.contains(&k.default), "{}", k.name);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn every_non_auth_id_has_exactly_one_row() {
        for k in KEYS.iter().filter(|k| k.id != KeyId::AuthKey) {
            assert_eq!(
                KEYS.iter().filter(|o| o.id == k.id).count(),
                1,
                "{}",
                k.name
            );
            assert_eq!(def(k.id).map(|d| d.name), Some(k.name));
        }
    }

    #[test]
    fn extension_keys() {
        assert!(is_extension_key("X-com.example.Foo"));
        assert!(is_extension_key("X#Bar"));
        assert!(!is_extension_key("XFoo"));
    }
}
