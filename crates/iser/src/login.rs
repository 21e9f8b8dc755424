//! iSER login keys on top of the iSCSI negotiation (RFC 7145 §5.1 login in
//! iSER-assisted mode, §6 keys): what each role offers, and the check that
//! a completed login may enter iSER full feature phase.
//!
//! The connection is an RDMA-CM connection from the start: the login PDUs
//! travel as iSER messages ("iSER-assisted" login, the only mode on
//! InfiniBand and RoCE, and what Linux ib_iser/ib_isert do). The initiator
//! offers `RDMAExtensions=Yes` in the operational stage of the leading
//! connection, with `TargetRecvDataSegmentLength`,
//! `InitiatorRecvDataSegmentLength` and its `MaxOutstandingUnexpectedPDUs`
//! declaration; the target declares its own (§6.7: the key is declarative,
//! each side states how many unexpected control PDUs it can receive, 0 for
//! no limit). Each side sends no more than the peer declared and accepts no
//! more than it declared itself. An initiator that never declares (Linux
//! `ib_iser`) is taken as "no limit" for what the target sends, and is held
//! to the target's declaration, which is why [`IserLimits::default`] allows
//! 8: Linux initiators keep up to 6 control PDUs outstanding.
//! `MaxRecvDataSegmentLength` is irrelevant once RDMA extensions are on, and
//! digests are not used (the RDMA transport checks integrity). A login that
//! ends with `RDMAExtensions=No` cannot continue on an RDMA connection: the
//! connection fails with [`ProtocolError::RdmaExtensionsNotNegotiated`].

use rtgt_pdu::negotiation::{Digest, LocalConfig, NegotiatedParams};

use crate::error::{IserError, ProtocolError};

/// This side's iSER limits, declared in the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IserLimits {
    /// Largest data segment of an iSCSI control-type PDU the target can
    /// receive (its receive buffers).
    pub target_recv_data_segment_length: u32,
    /// Largest data segment the initiator can receive.
    pub initiator_recv_data_segment_length: u32,
    /// Unexpected PDUs this side can receive beyond the CmdSN window (at
    /// least 2): its MaxOutstandingUnexpectedPDUs declaration, backed by as
    /// many extra receive buffers.
    pub max_outstanding_unexpected_pdus: u32,
}

/// Unexpected control PDUs a side accepts by default: Linux initiators
/// (which never declare the key) keep up to 6 outstanding (2 NOP-Out, 1
/// Text, 2 task management, 1 Logout), so 8 leaves them room.
pub const DEFAULT_UNEXPECTED_PDUS: u32 = 8;

impl Default for IserLimits {
    fn default() -> Self {
        Self {
            target_recv_data_segment_length: 8192,
            initiator_recv_data_segment_length: 8192,
            max_outstanding_unexpected_pdus: DEFAULT_UNEXPECTED_PDUS,
        }
    }
}

impl IserLimits {
    /// Checks the ranges RFC 7145 §6.4–§6.7 allow.
    pub fn validate(&self) -> Result<(), IserError> {
        let ok = |v: u32| (512..=0x00ff_ffff).contains(&v);
        if !ok(self.target_recv_data_segment_length) {
            return Err(IserError::Config(
                "TargetRecvDataSegmentLength must be 512..=16777215",
            ));
        }
        if !ok(self.initiator_recv_data_segment_length) {
            return Err(IserError::Config(
                "InitiatorRecvDataSegmentLength must be 512..=16777215",
            ));
        }
        if self.max_outstanding_unexpected_pdus < 2 {
            return Err(IserError::Config(
                "MaxOutstandingUnexpectedPDUs must be at least 2 (0, unlimited, cannot be backed by receive buffers)",
            ));
        }
        Ok(())
    }

    /// Sets `config` up for an iSER login (either role): RDMA extensions on,
    /// digests off, the iSER lengths and the unexpected-PDU limit.
    ///
    /// ```
    /// use rtgt_iser::login::IserLimits;
    /// use rtgt_pdu::negotiation::{Digest, LocalConfig};
    ///
    /// let mut cfg = LocalConfig::default();
    /// IserLimits::default().apply(&mut cfg);
    /// assert!(cfg.rdma_extensions);
    /// assert_eq!(cfg.header_digests, vec![Digest::None]);
    /// assert_eq!(cfg.max_outstanding_unexpected_pdus, 8);
    /// ```
    pub fn apply(&self, config: &mut LocalConfig) {
        config.rdma_extensions = true;
        config.header_digests = vec![Digest::None];
        config.data_digests = vec![Digest::None];
        config.target_recv_data_segment_length = self.target_recv_data_segment_length;
        config.initiator_recv_data_segment_length = self.initiator_recv_data_segment_length;
        config.max_outstanding_unexpected_pdus = self.max_outstanding_unexpected_pdus;
    }
}

/// What full feature phase runs with, derived from the negotiated parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IserParams {
    /// Largest data segment the target receives (initiator → target).
    pub target_recv_data_segment_length: u32,
    /// Largest data segment the initiator receives (target → initiator).
    pub initiator_recv_data_segment_length: u32,
    /// Unexpected PDUs the peer may have outstanding towards this side: this
    /// side's declaration (what its receive buffers are sized for).
    pub recv_unexpected_pdus: u32,
    /// Unexpected PDUs this side may have outstanding towards the peer: the
    /// peer's declaration; `None` when it declared 0 or nothing (no limit).
    pub send_unexpected_pdus: Option<u32>,
    /// FirstBurstLength (unsolicited data limit).
    pub first_burst_length: u32,
    /// InitialR2T (no unsolicited Data-Out when true).
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxBurstLength (largest RDMA Read the target issues per R2T).
    pub max_burst_length: u32,
}

impl IserParams {
    /// Checks that a finished login allows iSER full feature phase and
    /// extracts its parameters. `local` are this side's limits: what it
    /// accepts is its own declaration (`local`, the value
    /// [`IserLimits::apply`] declared), what it sends is bounded by the
    /// peer's (none when the peer declared 0 or never declared).
    pub fn from_negotiated(
        p: &NegotiatedParams,
        local: &IserLimits,
    ) -> Result<Self, ProtocolError> {
        if !p.rdma_extensions {
            return Err(ProtocolError::RdmaExtensionsNotNegotiated);
        }
        if p.header_digest != Digest::None || p.data_digest != Digest::None {
            return Err(ProtocolError::DigestsNegotiated);
        }
        // Our declaration is `local`'s (`apply` declared it); a different
        // value in `p` can only be smaller, and buffers exist for `local`'s.
        let recv = match p.max_outstanding_unexpected_pdus {
            0 => local.max_outstanding_unexpected_pdus,
            n => n.min(local.max_outstanding_unexpected_pdus),
        };
        Ok(Self {
            target_recv_data_segment_length: p.target_recv_data_segment_length,
            initiator_recv_data_segment_length: p.initiator_recv_data_segment_length,
            recv_unexpected_pdus: recv,
            send_unexpected_pdus: match p.peer_max_outstanding_unexpected_pdus {
                0 => None,
                n => Some(n),
            },
            first_burst_length: p.first_burst_length,
            initial_r2t: p.initial_r2t,
            immediate_data: p.immediate_data,
            max_burst_length: p.max_burst_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_pdu::negotiation::{Context, Negotiator, Role, Stage};
    use rtgt_pdu::text::{encode_pairs, parse_pairs};

    fn login(ini: LocalConfig, tgt: LocalConfig) -> (NegotiatedParams, NegotiatedParams) {
        let mut i = Negotiator::new(Role::Initiator, ini);
        let mut t = Negotiator::new(Role::Target, tgt);
        for stage in [Stage::Security, Stage::Operational] {
            let ctx = Context::login(stage, true);
            let req = encode_pairs(&i.offers(ctx));
            let mut answers = t.process(ctx, &parse_pairs(&req).unwrap()).unwrap().answers;
            answers.extend(t.offers(ctx));
            let rsp = encode_pairs(&answers);
            i.process(ctx, &parse_pairs(&rsp).unwrap()).unwrap();
        }
        (i.finish().unwrap(), t.finish().unwrap())
    }

    #[test]
    fn iser_lengths_negotiate_to_the_minimum_and_unexpected_pdus_are_declared() {
        let mut ini = LocalConfig {
            name: Some("iqn.2024-01.org.example:i".into()),
            target_name: Some("iqn.2024-01.org.example:t".into()),
            ..LocalConfig::default()
        };
        IserLimits {
            target_recv_data_segment_length: 262_144,
            initiator_recv_data_segment_length: 65_536,
            max_outstanding_unexpected_pdus: 8,
        }
        .apply(&mut ini);
        let mut tgt = LocalConfig::default();
        let tlim = IserLimits {
            target_recv_data_segment_length: 16_384,
            initiator_recv_data_segment_length: 131_072,
            max_outstanding_unexpected_pdus: 4,
        };
        tlim.apply(&mut tgt);
        let (pi, pt) = login(ini, tgt);
        let p = IserParams::from_negotiated(&pt, &tlim).unwrap();
        assert_eq!(p.target_recv_data_segment_length, 16_384);
        assert_eq!(p.initiator_recv_data_segment_length, 65_536);
        // The target accepts what it declared and sends what the initiator declared.
        assert_eq!(
            (p.recv_unexpected_pdus, p.send_unexpected_pdus),
            (4, Some(8))
        );
        let ilim = IserLimits {
            max_outstanding_unexpected_pdus: 8,
            ..tlim
        };
        let q = IserParams::from_negotiated(&pi, &ilim).unwrap();
        assert_eq!(
            (q.recv_unexpected_pdus, q.send_unexpected_pdus),
            (8, Some(4))
        );
        assert_eq!(
            q.target_recv_data_segment_length,
            p.target_recv_data_segment_length
        );
    }

    /// Linux `ib_iser` never declares MaxOutstandingUnexpectedPDUs: the
    /// target sends without limit and accepts its own default of 8, enough
    /// for the 6 control PDUs Linux keeps outstanding.
    #[test]
    fn an_initiator_that_never_declares_is_not_limited_and_gets_the_default_allowance() {
        let mut ini = LocalConfig {
            name: Some("iqn.2024-01.org.example:i".into()),
            target_name: Some("iqn.2024-01.org.example:t".into()),
            ..LocalConfig::default()
        };
        IserLimits::default().apply(&mut ini);
        // Declaring 0 means what not declaring means (no limit; the pdu crate
        // tests a login without the key).
        ini.max_outstanding_unexpected_pdus = 0;
        let mut tgt = LocalConfig::default();
        IserLimits::default().apply(&mut tgt);
        let (_, pt) = login(ini, tgt);
        let p = IserParams::from_negotiated(&pt, &IserLimits::default()).unwrap();
        assert_eq!(p.send_unexpected_pdus, None);
        assert!(p.recv_unexpected_pdus >= 6);
    }

    #[test]
    fn a_login_without_rdma_extensions_cannot_enter_iser() {
        let ini = LocalConfig {
            name: Some("iqn.2024-01.org.example:i".into()),
            target_name: Some("iqn.2024-01.org.example:t".into()),
            ..LocalConfig::default()
        };
        let mut tgt = LocalConfig::default();
        IserLimits::default().apply(&mut tgt);
        let (_, pt) = login(ini, tgt);
        assert_eq!(
            IserParams::from_negotiated(&pt, &IserLimits::default()),
            Err(ProtocolError::RdmaExtensionsNotNegotiated)
        );
        let digests = NegotiatedParams {
            rdma_extensions: true,
            header_digest: Digest::Crc32c,
            ..NegotiatedParams::default()
        };
        assert_eq!(
            IserParams::from_negotiated(&digests, &IserLimits::default()),
            Err(ProtocolError::DigestsNegotiated)
        );
    }

    #[test]
    fn limits_are_range_checked() {
        assert!(IserLimits::default().validate().is_ok());
        let bad = IserLimits {
            max_outstanding_unexpected_pdus: 1,
            ..IserLimits::default()
        };
        assert!(matches!(bad.validate(), Err(IserError::Config(_))));
        let bad = IserLimits {
            target_recv_data_segment_length: 100,
            ..IserLimits::default()
        };
        assert!(matches!(bad.validate(), Err(IserError::Config(_))));
    }
}
