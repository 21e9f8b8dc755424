//! Connecting and logging in (RFC 7143 §6 login phase over TCP, §4.3 discovery sessions,
//! §11.13.5 redirection): runs the sans-IO [`Login`] of `rtgt-session` over a blocking
//! [`PduStream`] and follows redirects.

use std::time::Duration;

use rtgt_pdu::negotiation::{Digest, LocalConfig};
use rtgt_pdu::{Isid, PduHeader, Sn};
use rtgt_session::chap::ChapAlgorithm;
use rtgt_session::initiator::{
    ChapCredentials, Login, LoginConfig, LoginError, LoginOutcome, LoginStep,
};
use rtgt_session::params::SessionType;

use crate::error::{ClientError, Result};
use crate::transport::{IserFabric, IserOptions, TcpTransport, Transport};
use crate::url::{IscsiUrl, Portal};
use crate::wire::PduStream;

/// Default initiator name.
pub const DEFAULT_INITIATOR: &str = "iqn.2026-11.io.rtgt:initiator";

/// How many redirects a login follows.
const MAX_REDIRECTS: usize = 3;

/// Which digest to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestChoice {
    /// No digest.
    #[default]
    None,
    /// CRC32C only (the login fails if the target refuses).
    Crc32c,
    /// CRC32C if the target agrees, else none.
    Prefer,
}

impl DigestChoice {
    fn offer(self) -> Vec<Digest> {
        match self {
            Self::None => vec![Digest::None],
            Self::Crc32c => vec![Digest::Crc32c],
            Self::Prefer => vec![Digest::Crc32c, Digest::None],
        }
    }
}

/// Which transport connections use.
#[derive(Debug, Clone, Default)]
pub enum TransportChoice {
    /// iSCSI over TCP (RFC 7143).
    #[default]
    Tcp,
    /// iSER (RFC 7145) over `fabric`, with these settings.
    Iser {
        /// Where the RDMA verbs come from.
        fabric: IserFabric,
        /// The iSER settings.
        options: IserOptions,
    },
}

/// Everything a connection needs besides the target's address.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Our iSCSI name.
    pub initiator_name: String,
    /// CHAP credentials (one-way or mutual).
    pub chap: Option<ChapCredentials>,
    /// HeaderDigest to negotiate.
    pub header_digest: DigestChoice,
    /// DataDigest to negotiate.
    pub data_digest: DigestChoice,
    /// MaxRecvDataSegmentLength we declare.
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength we offer.
    pub max_burst_length: u32,
    /// FirstBurstLength we offer.
    pub first_burst_length: u32,
    /// ImmediateData we offer.
    pub immediate_data: bool,
    /// InitialR2T we offer.
    pub initial_r2t: bool,
    /// MaxOutstandingR2T we offer.
    pub max_outstanding_r2t: u16,
    /// MaxConnections we offer.
    pub max_connections: u16,
    /// Connect, login and command timeout.
    pub timeout: Duration,
    /// NOP-Out keepalive interval in full feature phase.
    pub nop_interval: Option<Duration>,
    /// TCP, or iSER.
    pub transport: TransportChoice,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            initiator_name: DEFAULT_INITIATOR.to_owned(),
            chap: None,
            header_digest: DigestChoice::None,
            data_digest: DigestChoice::None,
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1 << 20,
            first_burst_length: 262_144,
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 8,
            max_connections: 1,
            timeout: Duration::from_secs(10),
            nop_interval: Some(Duration::from_secs(15)),
            transport: TransportChoice::Tcp,
        }
    }
}

impl ConnectOptions {
    /// Takes the CHAP credentials of a URL (user, secret, and the mutual query keys) unless
    /// credentials were set explicitly.
    pub fn with_url_credentials(mut self, url: &IscsiUrl) -> Self {
        if self.chap.is_none() {
            if let (Some(user), Some(secret)) = (&url.user, &url.secret) {
                let mut c = ChapCredentials::new(user.clone(), secret.as_bytes().to_vec());
                if let (Some(tu), Some(ts)) = (&url.target_user, &url.target_secret) {
                    c = c.with_mutual(tu.clone(), ts.as_bytes().to_vec());
                }
                self.chap = Some(c);
            }
        }
        self
    }

    /// The negotiation preferences these options describe (with iSER: RDMAExtensions and
    /// the iSER keys, no digests).
    pub fn local_config(&self) -> LocalConfig {
        let mut c = LocalConfig {
            header_digests: self.header_digest.offer(),
            data_digests: self.data_digest.offer(),
            max_connections: self.max_connections.max(1),
            initial_r2t: self.initial_r2t,
            immediate_data: self.immediate_data,
            max_recv_data_segment_length: self.max_recv_data_segment_length,
            max_burst_length: self.max_burst_length,
            first_burst_length: self.first_burst_length.min(self.max_burst_length),
            max_outstanding_r2t: self.max_outstanding_r2t.max(1),
            ..LocalConfig::default()
        };
        if let TransportChoice::Iser { options, .. } = &self.transport {
            options.apply(&mut c);
        }
        c
    }

    /// Connects the transport to `portal`.
    pub fn connect_transport(&self, portal: &Portal) -> Result<Box<dyn Transport>> {
        Ok(match &self.transport {
            TransportChoice::Tcp => Box::new(TcpTransport::connect(portal, self.timeout)?),
            TransportChoice::Iser { fabric, options } => {
                let addr: std::net::SocketAddr =
                    portal.socket_addr_string().parse().map_err(|_| {
                        ClientError::Config(format!(
                            "iSER needs an IP address and port, not {}",
                            portal.socket_addr_string()
                        ))
                    })?;
                Box::new(fabric.connect(addr, options)?)
            }
        })
    }
}

/// A random ISID (RFC 7143 §11.12.5, type 2 "random": T=10b, B and C random, D a qualifier).
pub fn random_isid(qualifier: u16) -> Isid {
    let mut r = [0u8; 3];
    // A failing OS random source only makes ISIDs less unique: fall back to the process id.
    if getrandom::fill(&mut r).is_err() {
        let p = std::process::id().to_be_bytes();
        r = [p[1], p[2], p[3]];
    }
    let q = qualifier.to_be_bytes();
    Isid([0x80, r[0], r[1], r[2], q[0], q[1]])
}

/// One login's parameters besides the options.
#[derive(Debug, Clone)]
pub struct LoginRequestSpec<'a> {
    /// Target name (`None` for discovery).
    pub target: Option<&'a str>,
    /// ISID.
    pub isid: Isid,
    /// TSIH (0 for a new session).
    pub tsih: u16,
    /// CID.
    pub cid: u16,
    /// CmdSN the login carries.
    pub cmd_sn: Sn,
}

/// Connects to `portal` and logs in. Follows up to three redirects.
pub fn login(
    portal: &Portal,
    opts: &ConnectOptions,
    spec: &LoginRequestSpec<'_>,
) -> Result<(PduStream, LoginOutcome)> {
    let mut portal = portal.clone();
    for _ in 0..=MAX_REDIRECTS {
        let transport = opts.connect_transport(&portal)?;
        let mut stream = PduStream::new(transport, opts.timeout);
        match login_on(&mut stream, opts, spec) {
            Ok(outcome) => return Ok((stream, outcome)),
            Err(ClientError::Login(LoginError::Redirected { address, .. })) => {
                stream.shutdown();
                let addr = address.split(',').next().unwrap_or("").to_owned();
                portal = addr.parse()?;
            }
            Err(e) => {
                stream.shutdown();
                return Err(e);
            }
        }
    }
    Err(ClientError::Unexpected(format!(
        "more than {MAX_REDIRECTS} login redirects"
    )))
}

/// Runs the login on a connected stream; switches the stream to full feature phase.
pub fn login_on(
    stream: &mut PduStream,
    opts: &ConnectOptions,
    spec: &LoginRequestSpec<'_>,
) -> Result<LoginOutcome> {
    let cfg = LoginConfig {
        initiator_name: opts.initiator_name.clone(),
        initiator_alias: None,
        target_name: spec.target.map(str::to_owned),
        session_type: if spec.target.is_some() {
            SessionType::Normal
        } else {
            SessionType::Discovery
        },
        isid: spec.isid,
        tsih: spec.tsih,
        cid: spec.cid,
        cmd_sn: spec.cmd_sn,
        chap: opts.chap.clone(),
        negotiation: opts.local_config(),
    };
    let mut login = Login::new(cfg);
    let mut pdu = login.start()?;
    loop {
        stream.send_pdu(&pdu)?;
        let resp = stream.recv()?;
        let PduHeader::LoginResponse(h) = resp.header else {
            return Err(ClientError::Unexpected(format!(
                "{} during login",
                resp.header.opcode()
            )));
        };
        match login.on_response(&h, &resp.data)? {
            LoginStep::Send(next) => pdu = next,
            LoginStep::Done(mut outcome) => {
                // iSER: the stream is local from here on; its segment limit is the bridge's.
                if let Some(segment) = stream.transport().login_complete(&outcome.negotiated)? {
                    outcome.connection.max_recv_data_segment_length = segment;
                    outcome.connection.max_xmit_data_segment_length = segment;
                }
                stream.enter_full_feature(
                    outcome.negotiated.digests(),
                    outcome.connection.max_recv_data_segment_length,
                );
                return Ok(*outcome);
            }
        }
    }
}

/// Parses a CHAP algorithm list such as `sha256,md5` or `7,5`.
pub fn parse_chap_algorithms(list: &str) -> Result<Vec<ChapAlgorithm>> {
    list.split(',')
        .map(|a| match a.trim().to_ascii_lowercase().as_str() {
            "md5" | "5" => Ok(ChapAlgorithm::Md5),
            "sha1" | "sha-1" | "6" => Ok(ChapAlgorithm::Sha1),
            "sha256" | "sha-256" | "7" => Ok(ChapAlgorithm::Sha256),
            "sha3-256" | "sha3" | "8" => Ok(ChapAlgorithm::Sha3_256),
            other => Err(ClientError::Config(format!(
                "unknown CHAP algorithm {other:?}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_become_chap() {
        let url: IscsiUrl = "iscsi://u%p@h/iqn.x/0?target_user=t&target_password=tp"
            .parse()
            .unwrap();
        let o = ConnectOptions::default().with_url_credentials(&url);
        let c = o.chap.unwrap();
        assert_eq!((c.user.as_str(), c.secret.as_slice()), ("u", &b"p"[..]));
        assert_eq!(c.mutual.unwrap().secret, b"tp");
        let url: IscsiUrl = "iscsi://h/iqn.x/0".parse().unwrap();
        assert!(
            ConnectOptions::default()
                .with_url_credentials(&url)
                .chap
                .is_none()
        );
    }

    #[test]
    fn options_map_to_negotiation_preferences() {
        let o = ConnectOptions {
            header_digest: DigestChoice::Prefer,
            first_burst_length: 1 << 22,
            ..ConnectOptions::default()
        };
        let l = o.local_config();
        assert_eq!(l.header_digests, [Digest::Crc32c, Digest::None]);
        assert_eq!(l.data_digests, [Digest::None]);
        assert_eq!(l.first_burst_length, 1 << 20, "clamped to MaxBurstLength");
    }

    #[test]
    fn isids_are_random_format() {
        let a = random_isid(7);
        assert_eq!(a.format(), 2);
        assert_eq!(a.0[4..], [0, 7]);
    }

    #[test]
    fn chap_algorithm_names() {
        assert_eq!(
            parse_chap_algorithms("sha3-256, 7,md5").unwrap(),
            [
                ChapAlgorithm::Sha3_256,
                ChapAlgorithm::Sha256,
                ChapAlgorithm::Md5
            ]
        );
        assert!(parse_chap_algorithms("rot13").is_err());
    }
}

/// The negotiated parameters of a login, for printing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoginSummary {
    /// Target name.
    pub target: String,
    /// Target alias.
    pub target_alias: Option<String>,
    /// Target portal group tag.
    pub target_portal_group_tag: u16,
    /// ISID (hex).
    pub isid: String,
    /// TSIH.
    pub tsih: u16,
    /// AuthMethod used.
    pub auth_method: String,
    /// Whether the target authenticated itself (mutual CHAP).
    pub target_authenticated: bool,
    /// HeaderDigest.
    pub header_digest: &'static str,
    /// DataDigest.
    pub data_digest: &'static str,
    /// MaxRecvDataSegmentLength we declared.
    pub max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength the target declared (our send limit).
    pub target_max_recv_data_segment_length: u32,
    /// MaxConnections.
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength.
    pub first_burst_length: u32,
    /// DefaultTime2Wait.
    pub default_time2wait: u16,
    /// DefaultTime2Retain.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u8,
    /// ExpCmdSN after login.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN after login (window = MaxCmdSN - ExpCmdSN + 1).
    pub max_cmd_sn: u32,
}

impl LoginSummary {
    /// Summarises a login outcome.
    pub fn of(o: &LoginOutcome) -> Self {
        let s = &o.session;
        let c = &o.connection;
        Self {
            target: s.target_name.clone(),
            target_alias: s.target_alias.clone(),
            target_portal_group_tag: s.target_portal_group_tag,
            isid: format!("{:012x}", o.isid.to_u64()),
            tsih: o.tsih,
            auth_method: o.auth_method.clone(),
            target_authenticated: o.target_authenticated,
            header_digest: c.header_digest.as_str(),
            data_digest: c.data_digest.as_str(),
            max_recv_data_segment_length: c.max_recv_data_segment_length,
            target_max_recv_data_segment_length: c.max_xmit_data_segment_length,
            max_connections: s.max_connections,
            initial_r2t: s.initial_r2t,
            immediate_data: s.immediate_data,
            max_burst_length: s.max_burst_length,
            first_burst_length: s.first_burst_length,
            default_time2wait: s.default_time2wait,
            default_time2retain: s.default_time2retain,
            max_outstanding_r2t: s.max_outstanding_r2t,
            data_pdu_in_order: s.data_pdu_in_order,
            data_sequence_in_order: s.data_sequence_in_order,
            error_recovery_level: s.error_recovery_level,
            exp_cmd_sn: o.exp_cmd_sn.0,
            max_cmd_sn: o.max_cmd_sn.0,
        }
    }
}
