//! Negotiated operational parameters with their RFC 7143 §13 defaults, and
//! the local limits and preferences a side negotiates from.
//!
//! `MaxRecvDataSegmentLength` is declarative per direction (§13.12): each
//! side states what it can receive. [`NegotiatedParams`] therefore holds
//! both [`max_recv_data_segment_length`](NegotiatedParams::max_recv_data_segment_length)
//! (what this side declared; the limit for incoming data segments, 8192 if
//! never declared) and
//! [`max_send_data_segment_length`](NegotiatedParams::max_send_data_segment_length)
//! (what the peer declared; the limit for outgoing data segments). The iSER
//! key `MaxOutstandingUnexpectedPDUs` is declarative in the same way (RFC 7145
//! §6.7): [`max_outstanding_unexpected_pdus`](NegotiatedParams::max_outstanding_unexpected_pdus)
//! is ours, [`peer_max_outstanding_unexpected_pdus`](NegotiatedParams::peer_max_outstanding_unexpected_pdus)
//! the peer's.
//!
//! `DataPDUInOrder=No` allows the Data PDUs of a sequence to arrive at any
//! buffer offset; `DataSequenceInOrder=No` allows the sequences (bursts) of
//! a command to arrive in any order; with both `Yes` data arrives at
//! continuously increasing offsets (§13.18, §13.19). `FirstBurstLength` never
//! exceeds `MaxBurstLength` (§13.14): the engine clamps it.

use crate::pdu::Digests;

/// A digest choice (RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    /// No digest.
    #[default]
    None,
    /// CRC32C.
    Crc32c,
}

impl Digest {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Crc32c => "CRC32C",
        }
    }

    /// Parses a wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "CRC32C" => Some(Self::Crc32c),
            _ => None,
        }
    }
}

/// Session type (RFC 7143 §13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    /// A normal session, for SCSI commands.
    #[default]
    Normal,
    /// A discovery session: SendTargets only.
    Discovery,
}

impl SessionType {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Discovery => "Discovery",
        }
    }

    /// Parses a wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Normal" => Some(Self::Normal),
            "Discovery" => Some(Self::Discovery),
            _ => None,
        }
    }
}

/// The outcome of negotiation: every operational parameter, RFC defaults
/// for keys never negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedParams {
    /// HeaderDigest (connection).
    pub header_digest: Digest,
    /// DataDigest (connection).
    pub data_digest: Digest,
    /// MaxConnections.
    pub max_connections: u16,
    /// InitialR2T: `true` means no unsolicited Data-Out outside immediate data.
    pub initial_r2t: bool,
    /// ImmediateData: data may ride in the SCSI Command PDU.
    pub immediate_data: bool,
    /// The MaxRecvDataSegmentLength this side declared (limit for data it receives).
    pub max_recv_data_segment_length: u32,
    /// The MaxRecvDataSegmentLength the peer declared (limit for data it is sent).
    pub max_send_data_segment_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength (≤ MaxBurstLength).
    pub first_burst_length: u32,
    /// DefaultTime2Wait, seconds.
    pub default_time2wait: u16,
    /// DefaultTime2Retain, seconds.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T per task.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (0–2).
    pub error_recovery_level: u8,
    /// SessionType.
    pub session_type: SessionType,
    /// TaskReporting (`RFC3720`, `ResponseFence` or `FastAbort`).
    pub task_reporting: String,
    /// iSCSIProtocolLevel.
    pub iscsi_protocol_level: u8,
    /// AuthMethod selected for this connection (`None`, `CHAP`, …).
    pub auth_method: String,
    /// RDMAExtensions (iSER, RFC 7145).
    pub rdma_extensions: bool,
    /// InitiatorRecvDataSegmentLength (iSER).
    pub initiator_recv_data_segment_length: u32,
    /// TargetRecvDataSegmentLength (iSER).
    pub target_recv_data_segment_length: u32,
    /// The MaxOutstandingUnexpectedPDUs this side declared (iSER, RFC 7145 §6.7): how many
    /// unexpected control PDUs the peer may have outstanding towards us; 0 (the default, also
    /// when never declared) means no limit.
    pub max_outstanding_unexpected_pdus: u32,
    /// The MaxOutstandingUnexpectedPDUs the peer declared: how many unexpected control PDUs
    /// we may have outstanding towards it; 0 (the default, also when never declared) means
    /// no limit.
    pub peer_max_outstanding_unexpected_pdus: u32,
    /// InitiatorName.
    pub initiator_name: Option<String>,
    /// InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// TargetName.
    pub target_name: Option<String>,
    /// TargetAlias.
    pub target_alias: Option<String>,
    /// TargetAddress (a redirection, as seen by an initiator).
    pub target_address: Option<String>,
    /// TargetPortalGroupTag.
    pub target_portal_group_tag: Option<u16>,
}

impl Default for NegotiatedParams {
    fn default() -> Self {
        Self {
            header_digest: Digest::None,
            data_digest: Digest::None,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_send_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            session_type: SessionType::Normal,
            task_reporting: "RFC3720".to_owned(),
            iscsi_protocol_level: 1,
            auth_method: "None".to_owned(),
            rdma_extensions: false,
            initiator_recv_data_segment_length: 8192,
            target_recv_data_segment_length: 8192,
            max_outstanding_unexpected_pdus: 0,
            peer_max_outstanding_unexpected_pdus: 0,
            initiator_name: None,
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_address: None,
            target_portal_group_tag: None,
        }
    }
}

impl NegotiatedParams {
    /// The digests to configure the framer and encoder with.
    pub fn digests(&self) -> Digests {
        Digests {
            header: self.header_digest == Digest::Crc32c,
            data: self.data_digest == Digest::Crc32c,
        }
    }
}

/// This side's limits and preferences (what it offers, or accepts when
/// answering). Defaults are the RFC defaults with digests off and no
/// authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Acceptable header digests in preference order (offered in this order).
    pub header_digests: Vec<Digest>,
    /// Acceptable data digests in preference order.
    pub data_digests: Vec<Digest>,
    /// Acceptable AuthMethod values in preference order (e.g. `["CHAP"]`).
    pub auth_methods: Vec<String>,
    /// MaxConnections this side supports.
    pub max_connections: u16,
    /// InitialR2T preference (OR: `true` forces it on).
    pub initial_r2t: bool,
    /// ImmediateData preference (AND: `false` forces it off).
    pub immediate_data: bool,
    /// MaxRecvDataSegmentLength this side declares.
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength limit.
    pub max_burst_length: u32,
    /// FirstBurstLength limit.
    pub first_burst_length: u32,
    /// DefaultTime2Wait (result is the maximum).
    pub default_time2wait: u16,
    /// DefaultTime2Retain limit.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T limit.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder preference (OR: `true` forces in-order).
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder preference (OR).
    pub data_sequence_in_order: bool,
    /// Highest ErrorRecoveryLevel supported.
    pub error_recovery_level: u8,
    /// Supported TaskReporting values in preference order.
    pub task_reporting: Vec<String>,
    /// Highest iSCSIProtocolLevel supported.
    pub iscsi_protocol_level: u8,
    /// Whether iSER is available on this connection (RDMAExtensions).
    pub rdma_extensions: bool,
    /// InitiatorRecvDataSegmentLength limit (iSER).
    pub initiator_recv_data_segment_length: u32,
    /// TargetRecvDataSegmentLength limit (iSER).
    pub target_recv_data_segment_length: u32,
    /// MaxOutstandingUnexpectedPDUs this side declares (iSER, RFC 7145 §6.7: the unexpected
    /// control PDUs it can receive; 0 = no limit). The initiator declares it with its
    /// RDMAExtensions offer; a target declares it, when not 0, once iSER is negotiated.
    pub max_outstanding_unexpected_pdus: u32,
    /// This node's iSCSI name (sent as InitiatorName by an initiator).
    pub name: Option<String>,
    /// This node's alias (InitiatorAlias or TargetAlias).
    pub alias: Option<String>,
    /// Target: the portal group tag to declare.
    pub target_portal_group_tag: Option<u16>,
    /// Initiator: the session type to request.
    pub session_type: SessionType,
    /// Initiator: the target to log in to (normal sessions).
    pub target_name: Option<String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            header_digests: vec![Digest::None],
            data_digests: vec![Digest::None],
            auth_methods: vec!["None".to_owned()],
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            task_reporting: vec!["RFC3720".to_owned()],
            iscsi_protocol_level: 1,
            rdma_extensions: false,
            initiator_recv_data_segment_length: 8192,
            target_recv_data_segment_length: 8192,
            max_outstanding_unexpected_pdus: 0,
            name: None,
            alias: None,
            target_portal_group_tag: None,
            session_type: SessionType::Normal,
            target_name: None,
        }
    }
}
