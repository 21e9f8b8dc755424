//! Negotiated operational parameters of a session and of one connection (RFC 7143 §13, with
//! the defaults of §13.1–§13.24; iSER keys from RFC 7145 §6.3).
//!
//! Login negotiation (in `rtgt-pdu`) produces `key=value` results; this module turns them into
//! typed values both roles consume. Session-wide values ([`SessionParams`]) are fixed by the
//! leading connection's login; connection-wide values ([`ConnectionParams`]) belong to each
//! connection. `MaxRecvDataSegmentLength` is *declarative* (§13.12): each side announces what
//! it can receive, so a connection keeps two numbers, [`ConnectionParams::max_recv_data_segment_length`]
//! (ours: the peer must not send more in one PDU) and
//! [`ConnectionParams::max_xmit_data_segment_length`] (the peer's: we must not send more).
//!
//! ```
//! use rtgt_session::params::{Declarer, Negotiated, DigestKind};
//!
//! let mut p = Negotiated::default();
//! p.apply("HeaderDigest", "CRC32C", Declarer::Local).unwrap();
//! p.apply("MaxRecvDataSegmentLength", "65536", Declarer::Peer).unwrap();
//! p.apply("MaxBurstLength", "1048576", Declarer::Local).unwrap();
//! p.apply("FirstBurstLength", "262144", Declarer::Local).unwrap();
//! p.validate().unwrap();
//! assert_eq!(p.connection.header_digest, DigestKind::Crc32c);
//! assert_eq!(p.connection.max_xmit_data_segment_length, 65536);
//! assert_eq!(p.connection.max_recv_data_segment_length, 8192); // our default declaration
//! assert_eq!(p.session.first_burst_length, 262144);
//! ```

/// Digest negotiated for headers or data (RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestKind {
    /// No digest.
    #[default]
    None,
    /// CRC32C over the header (or data plus padding).
    Crc32c,
}

impl DigestKind {
    /// Bytes the digest occupies on the wire.
    pub const fn wire_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::Crc32c => 4,
        }
    }

    /// Whether no digest is used.
    pub const fn is_none(self) -> bool {
        matches!(self, Self::None)
    }

    /// The key value naming this digest.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Crc32c => "CRC32C",
        }
    }
}

/// SessionType (RFC 7143 §13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    /// A normal session with access to a target's logical units.
    #[default]
    Normal,
    /// A discovery session: only Text (SendTargets), NOP and Logout.
    Discovery,
}

/// TaskReporting (RFC 7143 §13.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskReporting {
    /// RFC 3720 semantics (default).
    #[default]
    Rfc3720,
    /// Response fence semantics (RFC 7143 §4.2.2.3.3).
    ResponseFence,
    /// FastAbort multi-task abort semantics (RFC 7143 §4.2.3.4).
    FastAbort,
}

/// Which side declared a declarative key such as MaxRecvDataSegmentLength.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declarer {
    /// This end (target in the target role).
    Local,
    /// The peer.
    Peer,
}

/// A negotiated value could not be taken over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// The value is not valid for the key.
    #[error("invalid value {value:?} for {key}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value received (truncated).
        value: String,
    },
    /// The value lies outside the key's range.
    #[error("{key}={value} is outside {min}..={max}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value received.
        value: u64,
        /// Smallest legal value.
        min: u64,
        /// Largest legal value.
        max: u64,
    },
    /// FirstBurstLength exceeds MaxBurstLength (RFC 7143 §13.14).
    #[error("FirstBurstLength {first} exceeds MaxBurstLength {max}")]
    FirstBurstExceedsMax {
        /// FirstBurstLength.
        first: u32,
        /// MaxBurstLength.
        max: u32,
    },
}

/// Session-wide operational parameters (RFC 7143 §13), defaults per the RFC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// MaxConnections (§13.2), default 1, 1..=65535.
    pub max_connections: u16,
    /// InitialR2T (§13.10), default Yes.
    pub initial_r2t: bool,
    /// ImmediateData (§13.11), default Yes.
    pub immediate_data: bool,
    /// MaxBurstLength (§13.13), default 262144, 512..=2^24-1.
    pub max_burst_length: u32,
    /// FirstBurstLength (§13.14), default 65536, 512..=2^24-1, ≤ MaxBurstLength.
    pub first_burst_length: u32,
    /// DefaultTime2Wait (§13.15), default 2 s, 0..=3600.
    pub default_time2wait: u16,
    /// DefaultTime2Retain (§13.16), default 20 s, 0..=3600.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T (§13.17), default 1, 1..=65535.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder (§13.18), default Yes.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder (§13.19), default Yes.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (§13.20), default 0, 0..=2.
    pub error_recovery_level: u8,
    /// SessionType (§13.21), default Normal.
    pub session_type: SessionType,
    /// TaskReporting (§13.23), default RFC3720.
    pub task_reporting: TaskReporting,
    /// iSCSIProtocolLevel (RFC 7144 §2.1), default 0.
    pub protocol_level: u8,
    /// InitiatorName (§13.5).
    pub initiator_name: String,
    /// TargetName (§13.4); empty for discovery sessions.
    pub target_name: String,
    /// InitiatorAlias (§13.7).
    pub initiator_alias: Option<String>,
    /// TargetAlias (§13.6).
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag (§13.9).
    pub target_portal_group_tag: u16,
    /// RDMAExtensions (RFC 7145 §6.3.1), default No.
    pub rdma_extensions: bool,
    /// MaxOutstandingUnexpectedPDUs (RFC 7145 §6.3.4), default 0 (no limit).
    pub max_outstanding_unexpected_pdus: u32,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            session_type: SessionType::Normal,
            task_reporting: TaskReporting::Rfc3720,
            protocol_level: 0,
            initiator_name: String::new(),
            target_name: String::new(),
            initiator_alias: None,
            target_alias: None,
            target_portal_group_tag: 1,
            rdma_extensions: false,
            max_outstanding_unexpected_pdus: 0,
        }
    }
}

/// Connection-wide operational parameters (RFC 7143 §13.1, §13.12; RFC 7145 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionParams {
    /// HeaderDigest (§13.1).
    pub header_digest: DigestKind,
    /// DataDigest (§13.1).
    pub data_digest: DigestKind,
    /// The MaxRecvDataSegmentLength this end declared: the largest data segment the peer may
    /// send us in one PDU (default 8192).
    pub max_recv_data_segment_length: u32,
    /// The MaxRecvDataSegmentLength the peer declared: the largest data segment we may send
    /// (default 8192).
    pub max_xmit_data_segment_length: u32,
    /// InitiatorRecvDataSegmentLength (RFC 7145 §6.3.2), default 8192.
    pub initiator_recv_data_segment_length: u32,
    /// TargetRecvDataSegmentLength (RFC 7145 §6.3.3), default 8192.
    pub target_recv_data_segment_length: u32,
}

impl Default for ConnectionParams {
    fn default() -> Self {
        Self {
            header_digest: DigestKind::None,
            data_digest: DigestKind::None,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
            initiator_recv_data_segment_length: 8192,
            target_recv_data_segment_length: 8192,
        }
    }
}

/// Everything one login negotiated: the session's values and this connection's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// Session-wide values.
    pub session: SessionParams,
    /// This connection's values.
    pub connection: ConnectionParams,
}

const MAX_24: u64 = (1 << 24) - 1;

impl Negotiated {
    /// Takes over one negotiated (or declared) `key=value` result. Returns `Ok(false)` for keys
    /// that carry no operational parameter (e.g. SendTargets, TargetAddress, CHAP_*, X-… keys,
    /// obsolete markers), so the caller can hand every result over unconditionally.
    ///
    /// `who` matters only for declarative keys: MaxRecvDataSegmentLength declared by
    /// [`Declarer::Local`] limits what we receive, by [`Declarer::Peer`] what we send.
    pub fn apply(&mut self, key: &str, value: &str, who: Declarer) -> Result<bool, ParamError> {
        let s = &mut self.session;
        let c = &mut self.connection;
        match key {
            "HeaderDigest" => c.header_digest = digest("HeaderDigest", value)?,
            "DataDigest" => c.data_digest = digest("DataDigest", value)?,
            "MaxConnections" => s.max_connections = num("MaxConnections", value, 1, 65535)? as u16,
            "InitialR2T" => s.initial_r2t = boolean("InitialR2T", value)?,
            "ImmediateData" => s.immediate_data = boolean("ImmediateData", value)?,
            "MaxRecvDataSegmentLength" => {
                let v = num("MaxRecvDataSegmentLength", value, 512, MAX_24)? as u32;
                match who {
                    Declarer::Local => c.max_recv_data_segment_length = v,
                    Declarer::Peer => c.max_xmit_data_segment_length = v,
                }
            }
            "MaxBurstLength" => {
                s.max_burst_length = num("MaxBurstLength", value, 512, MAX_24)? as u32;
            }
            "FirstBurstLength" => {
                s.first_burst_length = num("FirstBurstLength", value, 512, MAX_24)? as u32;
            }
            "DefaultTime2Wait" => {
                s.default_time2wait = num("DefaultTime2Wait", value, 0, 3600)? as u16;
            }
            "DefaultTime2Retain" => {
                s.default_time2retain = num("DefaultTime2Retain", value, 0, 3600)? as u16;
            }
            "MaxOutstandingR2T" => {
                s.max_outstanding_r2t = num("MaxOutstandingR2T", value, 1, 65535)? as u16;
            }
            "DataPDUInOrder" => s.data_pdu_in_order = boolean("DataPDUInOrder", value)?,
            "DataSequenceInOrder" => {
                s.data_sequence_in_order = boolean("DataSequenceInOrder", value)?;
            }
            "ErrorRecoveryLevel" => {
                s.error_recovery_level = num("ErrorRecoveryLevel", value, 0, 2)? as u8;
            }
            "SessionType" => {
                s.session_type = match value {
                    "Normal" => SessionType::Normal,
                    "Discovery" => SessionType::Discovery,
                    _ => return Err(invalid("SessionType", value)),
                }
            }
            "TaskReporting" => {
                s.task_reporting = match value {
                    "RFC3720" => TaskReporting::Rfc3720,
                    "ResponseFence" => TaskReporting::ResponseFence,
                    "FastAbort" => TaskReporting::FastAbort,
                    _ => return Err(invalid("TaskReporting", value)),
                }
            }
            "iSCSIProtocolLevel" => {
                s.protocol_level = num("iSCSIProtocolLevel", value, 0, 31)? as u8;
            }
            "InitiatorName" => s.initiator_name = value.to_string(),
            "TargetName" => s.target_name = value.to_string(),
            "InitiatorAlias" => s.initiator_alias = Some(value.to_string()),
            "TargetAlias" => s.target_alias = Some(value.to_string()),
            "TargetPortalGroupTag" => {
                s.target_portal_group_tag = num("TargetPortalGroupTag", value, 0, 65535)? as u16;
            }
            "RDMAExtensions" => s.rdma_extensions = boolean("RDMAExtensions", value)?,
            "MaxOutstandingUnexpectedPDUs" => {
                s.max_outstanding_unexpected_pdus = num(
                    "MaxOutstandingUnexpectedPDUs",
                    value,
                    0,
                    u64::from(u32::MAX),
                )? as u32;
            }
            "InitiatorRecvDataSegmentLength" => {
                c.initiator_recv_data_segment_length =
                    num("InitiatorRecvDataSegmentLength", value, 512, MAX_24)? as u32;
            }
            "TargetRecvDataSegmentLength" => {
                c.target_recv_data_segment_length =
                    num("TargetRecvDataSegmentLength", value, 512, MAX_24)? as u32;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the cross-key rules once negotiation is over (RFC 7143 §13.14).
    pub fn validate(&self) -> Result<(), ParamError> {
        let s = &self.session;
        if s.first_burst_length > s.max_burst_length {
            return Err(ParamError::FirstBurstExceedsMax {
                first: s.first_burst_length,
                max: s.max_burst_length,
            });
        }
        Ok(())
    }
}

impl From<&rtgt_pdu::negotiation::NegotiatedParams> for Negotiated {
    /// Takes over the result of `rtgt-pdu`'s negotiation engine (either role): its
    /// `max_recv_data_segment_length` is this side's declaration and
    /// `max_send_data_segment_length` the peer's.
    fn from(p: &rtgt_pdu::negotiation::NegotiatedParams) -> Self {
        use rtgt_pdu::negotiation::{Digest, SessionType as PduSessionType};
        let digest = |d: Digest| match d {
            Digest::Crc32c => DigestKind::Crc32c,
            Digest::None => DigestKind::None,
        };
        Self {
            session: SessionParams {
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
                    PduSessionType::Discovery => SessionType::Discovery,
                    PduSessionType::Normal => SessionType::Normal,
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
                target_portal_group_tag: p.target_portal_group_tag.unwrap_or(1),
                rdma_extensions: p.rdma_extensions,
                max_outstanding_unexpected_pdus: p.max_outstanding_unexpected_pdus,
            },
            connection: ConnectionParams {
                header_digest: digest(p.header_digest),
                data_digest: digest(p.data_digest),
                max_recv_data_segment_length: p.max_recv_data_segment_length,
                max_xmit_data_segment_length: p.max_send_data_segment_length,
                initiator_recv_data_segment_length: p.initiator_recv_data_segment_length,
                target_recv_data_segment_length: p.target_recv_data_segment_length,
            },
        }
    }
}

impl ConnectionParams {
    /// The digests in `rtgt-pdu`'s form, for the framer and encoder.
    pub fn digests(&self) -> rtgt_pdu::Digests {
        rtgt_pdu::Digests {
            header: self.header_digest == DigestKind::Crc32c,
            data: self.data_digest == DigestKind::Crc32c,
        }
    }
}

fn invalid(key: &'static str, value: &str) -> ParamError {
    ParamError::InvalidValue {
        key,
        value: value.chars().take(64).collect(),
    }
}

fn digest(key: &'static str, value: &str) -> Result<DigestKind, ParamError> {
    match value {
        "None" => Ok(DigestKind::None),
        "CRC32C" => Ok(DigestKind::Crc32c),
        _ => Err(invalid(key, value)),
    }
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ParamError> {
    match value {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(invalid(key, value)),
    }
}

/// A numerical value in decimal or `0x` hex (RFC 7143 §6.1), checked against `min..=max`.
fn num(key: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ParamError> {
    let parsed = if let Some(h) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        if h.is_empty() || h.len() > 16 {
            None
        } else {
            u64::from_str_radix(h, 16).ok()
        }
    } else if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        value.parse().ok()
    };
    let v = parsed.ok_or_else(|| invalid(key, value))?;
    if v < min || v > max {
        return Err(ParamError::OutOfRange {
            key,
            value: v,
            min,
            max,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rfc_defaults() {
        let n = Negotiated::default();
        assert_eq!(n.session.max_burst_length, 262_144);
        assert_eq!(n.session.first_burst_length, 65_536);
        assert!(n.session.initial_r2t);
        assert!(n.session.immediate_data);
        assert_eq!(n.session.max_outstanding_r2t, 1);
        assert_eq!(n.session.default_time2wait, 2);
        assert_eq!(n.session.default_time2retain, 20);
        assert_eq!(n.session.error_recovery_level, 0);
        assert_eq!(n.connection.max_recv_data_segment_length, 8192);
        assert_eq!(n.connection.max_xmit_data_segment_length, 8192);
        assert_eq!(n.connection.header_digest, DigestKind::None);
        assert_eq!(n.session.session_type, SessionType::Normal);
    }

    #[test]
    fn apply_takes_each_key() {
        let mut n = Negotiated::default();
        for (k, v) in [
            ("DataDigest", "CRC32C"),
            ("MaxConnections", "4"),
            ("InitialR2T", "No"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "0x100000"),
            ("FirstBurstLength", "512"),
            ("DefaultTime2Wait", "0"),
            ("DefaultTime2Retain", "3600"),
            ("MaxOutstandingR2T", "8"),
            ("DataPDUInOrder", "No"),
            ("DataSequenceInOrder", "No"),
            ("ErrorRecoveryLevel", "2"),
            ("SessionType", "Discovery"),
            ("TaskReporting", "FastAbort"),
            ("InitiatorName", "iqn.x"),
            ("TargetAlias", "disk"),
            ("TargetPortalGroupTag", "7"),
        ] {
            assert_eq!(n.apply(k, v, Declarer::Local), Ok(true), "{k}");
        }
        assert_eq!(n.connection.data_digest, DigestKind::Crc32c);
        assert_eq!(n.session.max_connections, 4);
        assert!(!n.session.initial_r2t && !n.session.immediate_data);
        assert_eq!(n.session.max_burst_length, 1 << 20);
        assert_eq!(n.session.max_outstanding_r2t, 8);
        assert_eq!(n.session.session_type, SessionType::Discovery);
        assert_eq!(n.session.task_reporting, TaskReporting::FastAbort);
        assert_eq!(n.session.target_alias.as_deref(), Some("disk"));
        assert_eq!(n.session.target_portal_group_tag, 7);
        assert_eq!(n.apply("SendTargets", "All", Declarer::Peer), Ok(false));
        assert_eq!(n.apply("X-com.example", "1", Declarer::Peer), Ok(false));
    }

    #[test]
    fn declarative_max_recv_goes_to_the_right_side() {
        let mut n = Negotiated::default();
        n.apply("MaxRecvDataSegmentLength", "262144", Declarer::Local)
            .unwrap();
        n.apply("MaxRecvDataSegmentLength", "4096", Declarer::Peer)
            .unwrap();
        assert_eq!(n.connection.max_recv_data_segment_length, 262_144);
        assert_eq!(n.connection.max_xmit_data_segment_length, 4096);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let mut n = Negotiated::default();
        assert_eq!(
            n.apply("MaxRecvDataSegmentLength", "511", Declarer::Peer),
            Err(ParamError::OutOfRange {
                key: "MaxRecvDataSegmentLength",
                value: 511,
                min: 512,
                max: MAX_24
            })
        );
        assert!(matches!(
            n.apply("InitialR2T", "yes", Declarer::Peer),
            Err(ParamError::InvalidValue {
                key: "InitialR2T",
                ..
            })
        ));
        assert!(
            n.apply("HeaderDigest", "CRC32C,None", Declarer::Peer)
                .is_err()
        );
        assert!(n.apply("ErrorRecoveryLevel", "3", Declarer::Peer).is_err());
        assert!(n.apply("MaxBurstLength", "-1", Declarer::Peer).is_err());
        assert!(n.apply("MaxBurstLength", "0x", Declarer::Peer).is_err());
        assert!(
            n.apply("MaxBurstLength", "99999999999999999999999", Declarer::Peer)
                .is_err()
        );
        n.apply("FirstBurstLength", "8192", Declarer::Peer).unwrap();
        n.apply("MaxBurstLength", "4096", Declarer::Peer).unwrap();
        assert_eq!(
            n.validate(),
            Err(ParamError::FirstBurstExceedsMax {
                first: 8192,
                max: 4096
            })
        );
    }
}
