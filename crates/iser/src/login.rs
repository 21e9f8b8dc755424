//! iSER login keys on top of the iSCSI negotiation (RFC 7145 §5.1 login in
//! iSER-assisted mode, §6 keys): what each role offers, and the check that
//! a completed login may enter iSER full feature phase.
//!
//! The connection is an RDMA-CM connection from the start: the login PDUs
//! travel as iSER messages ("iSER-assisted" login, the only mode on
//! InfiniBand and RoCE, and what Linux ib_iser/ib_isert do). The initiator
//! offers `RDMAExtensions=Yes` in the operational stage of the leading
//! connection, with `TargetRecvDataSegmentLength`,
//! `InitiatorRecvDataSegmentLength` and `MaxOutstandingUnexpectedPDUs`;
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
    /// Unexpected PDUs this side can take beyond the CmdSN window (at least 2).
    pub max_outstanding_unexpected_pdus: u32,
}

impl Default for IserLimits {
    fn default() -> Self {
        Self {
            target_recv_data_segment_length: 8192,
            initiator_recv_data_segment_length: 8192,
            max_outstanding_unexpected_pdus: 4,
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
    /// assert_eq!(cfg.max_outstanding_unexpected_pdus, 4);
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
    /// Outstanding unexpected PDUs each side may send the other.
    pub max_outstanding_unexpected_pdus: u32,
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
    /// extracts its parameters. `local` are this side's limits: a
    /// negotiated unexpected-PDU limit of 0 ("no limit") is held to them.
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
        let unexpected = match p.max_outstanding_unexpected_pdus {
            0 => local.max_outstanding_unexpected_pdus,
            n => n.min(local.max_outstanding_unexpected_pdus),
        };
        Ok(Self {
            target_recv_data_segment_length: p.target_recv_data_segment_length,
            initiator_recv_data_segment_length: p.initiator_recv_data_segment_length,
            max_outstanding_unexpected_pdus: unexpected,
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
    fn iser_keys_negotiate_to_the_minimum() {
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
        assert_eq!(pi, pt);
        let p = IserParams::from_negotiated(&pt, &tlim).unwrap();
        assert_eq!(p.target_recv_data_segment_length, 16_384);
        assert_eq!(p.initiator_recv_data_segment_length, 65_536);
        assert_eq!(p.max_outstanding_unexpected_pdus, 4);
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
