//! The runtime catalog: what a validated [`Config`] becomes when the engine starts — logical
//! units opened on their backends (SBC-4 direct-access devices over memory, file, block device
//! or null stores), the session layer's [`Catalog`] (targets, portal groups, ACLs, CHAP
//! credentials and operational defaults, RFC 7143 §12–§13) and the portals to listen on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtgt_scsi::{
    BlockBackend, CopyTarget, CopyTargets, LogicalUnit, LuConfig, MemoryBackend, NullBackend,
};
use rtgt_session::chap::ChapAlgorithm as SessionChap;
use rtgt_session::params::DigestKind;
use rtgt_session::target::{
    Acl, AuthPolicy, Catalog, ChapPolicy, Credential, PortalGroup, SessionDefaults, TargetEntry,
};

use crate::config::{self, Config};

/// Largest data buffer of one task; also the logical units' MAXIMUM TRANSFER LENGTH.
pub const MAX_TASK_BUFFER: u32 = 32 << 20;

/// Why the runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A backing store could not be opened.
    #[error("target {target} LUN {lun}: {message}")]
    Backend {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// What failed.
        message: String,
    },
}

/// Where a logical unit's data lives, as the engine executes it.
#[derive(Clone)]
pub enum Backend {
    /// RAM disk, executed inline on the reactor.
    Memory(Arc<MemoryBackend>),
    /// Reads zeros, discards writes; inline.
    Null(Arc<NullBackend>),
    /// A file or block device through rtgt-uring: the reactor's ring in the io_uring engine,
    /// synchronous calls in the readiness engine.
    File(Arc<rtgt_uring::Store>),
}

impl core::fmt::Debug for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("Memory"),
            Self::Null(_) => f.write_str("Null"),
            Self::File(s) => write!(f, "File({})", s.backing().path().display()),
        }
    }
}

impl Backend {
    /// The store as a synchronous [`BlockBackend`].
    pub fn block(&self) -> &dyn BlockBackend {
        match self {
            Self::Memory(m) => m.as_ref(),
            Self::Null(n) => n.as_ref(),
            Self::File(s) => s.as_ref(),
        }
    }

    fn shared(&self) -> Arc<dyn BlockBackend> {
        match self {
            Self::Memory(m) => m.clone(),
            Self::Null(n) => n.clone(),
            Self::File(s) => s.clone(),
        }
    }
}

/// One logical unit of a target.
#[derive(Debug, Clone)]
pub struct LunRuntime {
    /// Position among all logical units of the engine (indexes per-reactor state).
    pub index: usize,
    /// LUN number.
    pub number: u16,
    /// The SCSI logical unit (shared by every reactor).
    pub lu: Arc<LogicalUnit>,
    /// Its store.
    pub backend: Backend,
    /// Read-ahead and write coalescing (file and block-device logical units; `None` when
    /// off).
    pub streams: Option<Arc<crate::streams::LuStreams>>,
}

/// One target at run time.
#[derive(Debug)]
pub struct TargetRuntime {
    /// iSCSI name.
    pub name: String,
    /// Its logical units, by LUN number.
    pub luns: Vec<LunRuntime>,
    /// LUN numbers as REPORT LUNS lists them.
    pub lun_list: Vec<u64>,
}

impl TargetRuntime {
    /// The logical unit with number `n`.
    pub fn lun(&self, n: u16) -> Option<&LunRuntime> {
        self.luns.iter().find(|l| l.number == n)
    }
}

/// Everything the engine serves.
#[derive(Debug)]
pub struct Runtime {
    /// The session layer's view (targets, ACLs, auth, defaults).
    pub catalog: Arc<Catalog>,
    /// Targets with their logical units.
    pub targets: Vec<Arc<TargetRuntime>>,
    /// Addresses to listen on with their portal group tags.
    pub portals: Vec<(SocketAddr, u16)>,
    /// Placement and buffer settings.
    pub performance: rtgt_affinity::PerformanceConfig,
}

impl Runtime {
    /// Opens every backend and builds the catalog from a validated configuration.
    pub fn build(config: &Config) -> Result<Self, RuntimeError> {
        let tags: Vec<u16> = config.portals.iter().map(|p| p.group).collect();
        let mut all_luns: Vec<LunRuntime> = Vec::new();
        let mut targets = Vec::new();
        let mut entries = Vec::new();
        for t in &config.targets {
            let name = t.name.as_str().to_owned();
            let mut luns = Vec::new();
            for l in &t.luns {
                let backend = open_backend(l).map_err(|message| RuntimeError::Backend {
                    target: name.clone(),
                    lun: l.number,
                    message,
                })?;
                let mut cfg = LuConfig::new(&name, u64::from(l.number));
                cfg.max_transfer_bytes = MAX_TASK_BUFFER;
                cfg.target_ports = if tags.is_empty() {
                    vec![1]
                } else {
                    tags.clone()
                };
                // Unit serial number and NAA designator: configured, else derived from the
                // target name and LUN (LuConfig::new).
                if let Some(serial) = &l.serial {
                    cfg.identity = cfg.identity.clone().with_serial(serial);
                }
                if let Some(naa) = &l.naa {
                    cfg.identity = cfg.identity.clone().with_naa(naa.as_bytes()).map_err(|e| {
                        RuntimeError::Backend {
                            target: name.clone(),
                            lun: l.number,
                            message: e.to_string(),
                        }
                    })?;
                }
                cfg.read_only = match &l.backend {
                    config::Backend::File(f) => f.read_only,
                    config::Backend::Block(d) => d.read_only,
                    _ => false,
                };
                let mut caps = backend.block().capabilities();
                if matches!(backend, Backend::Memory(_) | Backend::Null(_))
                    && caps.block_size == 512
                {
                    // RAM is managed in 4 KiB pages: report 512-byte logical blocks on 4 KiB
                    // physical blocks (LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 3), as 512e
                    // drives do.
                    caps.physical_block_exponent = 3;
                }
                // Per-LUN overrides (VPD B1h rotation rate, B0h granularity, LBPME).
                if let Some(rot) = l.rotational {
                    caps.rotation_rate = if rot { 7200 } else { 1 };
                }
                if let Some(g) = l.optimal_granularity {
                    let blocks = g.bytes() / u64::from(caps.block_size.max(1));
                    caps.optimal_granularity_blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
                }
                // Logical block provisioning only when asked for (SBC-4 §4.7): otherwise no
                // LBPME, and UNMAP / WRITE SAME with UNMAP are not supported.
                caps.thin_provisioned = l.thin_provisioning && caps.supports_unmap;
                let streams = match &backend {
                    Backend::File(store) => {
                        let rotational = l
                            .rotational
                            .unwrap_or_else(|| store.backing().facts().rotational());
                        let settings =
                            crate::streams::StreamsSettings::resolve(&l.streams, rotational);
                        if let Some(s) = &settings {
                            tracing::info!(
                                iqn = %name,
                                lun = l.number,
                                read_ahead = s.read_ahead,
                                write_combine = s.write_combine,
                                rotational,
                                "streams feature on"
                            );
                        }
                        settings.map(|s| Arc::new(crate::streams::LuStreams::new(s)))
                    }
                    _ => None,
                };
                let lu = Arc::new(LogicalUnit::new(cfg, caps));
                let rt = LunRuntime {
                    index: all_luns.len(),
                    number: l.number,
                    lu,
                    backend,
                    streams,
                };
                all_luns.push(rt.clone());
                luns.push(rt);
            }
            luns.sort_by_key(|l| l.number);
            let lun_list = luns.iter().map(|l| u64::from(l.number)).collect();
            entries.push(TargetEntry {
                name: name.clone(),
                alias: t.alias.clone(),
                luns: luns.iter().map(|l| l.number).collect(),
                acl: match &t.acl {
                    config::Acl::Any => Acl::Any,
                    config::Acl::Only(names) => {
                        Acl::Allow(names.iter().map(|n| n.as_str().to_owned()).collect())
                    }
                },
                auth: auth_policy(&t.auth),
                portal_groups: t.portal_groups.clone(),
            });
            targets.push(Arc::new(TargetRuntime {
                name,
                luns,
                lun_list,
            }));
        }
        // EXTENDED COPY between any of our logical units, found by NAA designator.
        let resolver: Arc<dyn CopyTargets> = Arc::new(CopyResolver {
            luns: all_luns.clone(),
        });
        for l in &all_luns {
            l.lu.set_copy_targets(resolver.clone());
        }
        let mut portals = Vec::new();
        let mut groups: Vec<PortalGroup> = Vec::new();
        for p in &config.portals {
            if p.transport != config::Transport::Tcp {
                continue;
            }
            let addrs: Vec<SocketAddr> = p.listen.iter().map(|a| a.addr()).collect();
            for a in &addrs {
                portals.push((*a, p.group));
            }
            match groups.iter_mut().find(|g| g.tag == p.group) {
                Some(g) => g.addresses.extend(addrs),
                None => groups.push(PortalGroup {
                    tag: p.group,
                    addresses: addrs,
                }),
            }
        }
        let catalog = Catalog {
            targets: entries,
            portal_groups: groups,
            discovery_auth: auth_policy(&config.discovery.auth),
            defaults: session_defaults(&config.session),
        };
        Ok(Self {
            catalog: Arc::new(catalog),
            targets,
            portals,
            performance: config.performance.clone(),
        })
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Arc<TargetRuntime>> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// Every distinct logical unit with its backend.
    pub fn all_luns(&self) -> impl Iterator<Item = &LunRuntime> {
        self.targets.iter().flat_map(|t| t.luns.iter())
    }
}

struct CopyResolver {
    luns: Vec<LunRuntime>,
}

impl CopyTargets for CopyResolver {
    fn find(&self, naa: &[u8]) -> Option<CopyTarget> {
        self.luns.iter().enumerate().find_map(|(i, l)| {
            let id = l.lu.identity().naa_designator();
            let len = naa.len().min(id.len());
            (len > 0 && id.get(..len) == Some(naa) && naa.len() <= id.len()).then(|| {
                let backend = match &l.streams {
                    // Copies into a logical unit with read-ahead caches must drop them.
                    Some(streams) => Arc::new(crate::streams::EpochBackend {
                        inner: l.backend.shared(),
                        streams: streams.clone(),
                    }) as Arc<dyn BlockBackend>,
                    None => l.backend.shared(),
                };
                CopyTarget {
                    lu: l.lu.clone(),
                    backend,
                    handle: i as u64,
                }
            })
        })
    }
}

fn open_backend(l: &config::Lun) -> Result<Backend, String> {
    let bs = if l.block_size == 0 { 512 } else { l.block_size };
    match &l.backend {
        config::Backend::Memory { size } => {
            let blocks = size.bytes() / u64::from(bs);
            MemoryBackend::new(bs, blocks)
                .map(|m| Backend::Memory(Arc::new(m)))
                .map_err(|e| e.to_string())
        }
        config::Backend::Null { size } => {
            let blocks = size.bytes() / u64::from(bs);
            NullBackend::new(bs, blocks)
                .map(|m| Backend::Null(Arc::new(m)))
                .map_err(|e| e.to_string())
        }
        config::Backend::File(f) => {
            let mut sc = rtgt_uring::StoreConfig::default();
            sc.backing.direct = f.direct;
            sc.backing.read_only = f.read_only;
            sc.backing.write_through = f.write_cache == config::WriteCache::Writethrough;
            sc.backing.create = f.size.is_some();
            sc.backing.size = f.size.map(config::ByteSize::bytes);
            sc.backing.block_size = Some(bs);
            // The engine runs read-ahead and write coalescing itself (crate::streams), on
            // every path; the store's own synchronous layer would cache behind its back.
            sc.streams.mode = rtgt_uring::StreamsMode::Off;
            rtgt_uring::Store::open(&f.path, &sc)
                .map(|s| Backend::File(Arc::new(s)))
                .map_err(|e| format!("{}: {e}", f.path.display()))
        }
        config::Backend::Block(d) => {
            let mut sc = rtgt_uring::StoreConfig::default();
            sc.backing.direct = d.direct;
            sc.backing.read_only = d.read_only;
            sc.backing.write_through = d.write_cache == config::WriteCache::Writethrough;
            sc.streams.mode = rtgt_uring::StreamsMode::Off;
            rtgt_uring::Store::open(&d.device, &sc)
                .map(|s| Backend::File(Arc::new(s)))
                .map_err(|e| format!("{}: {e}", d.device.display()))
        }
    }
}

fn auth_policy(a: &config::AuthConfig) -> AuthPolicy {
    if !a.required() {
        return AuthPolicy::None;
    }
    let cred = |c: &config::ChapCredential| Credential {
        user: c.name.clone(),
        secret: c.secret.as_bytes().to_vec(),
    };
    let algorithms: Vec<SessionChap> = if a.algorithms.is_empty() {
        SessionChap::ALL.to_vec()
    } else {
        a.algorithms
            .iter()
            .map(|x| match x {
                config::ChapAlgorithm::Md5 => SessionChap::Md5,
                config::ChapAlgorithm::Sha1 => SessionChap::Sha1,
                config::ChapAlgorithm::Sha256 => SessionChap::Sha256,
                config::ChapAlgorithm::Sha3_256 => SessionChap::Sha3_256,
            })
            .collect()
    };
    AuthPolicy::Chap(ChapPolicy {
        users: a.users.iter().map(cred).collect(),
        target: a.mutual.as_ref().map(cred),
        require_mutual: false,
        algorithms,
    })
}

fn session_defaults(s: &config::SessionDefaults) -> SessionDefaults {
    let digests = |v: &[config::Digest]| -> Vec<DigestKind> {
        v.iter()
            .map(|d| match d {
                config::Digest::None => DigestKind::None,
                config::Digest::Crc32c => DigestKind::Crc32c,
            })
            .collect()
    };
    let secs = |d: config::HumanDuration| d.get().as_secs().min(3600) as u16;
    SessionDefaults {
        max_recv_data_segment_length: s.max_recv_data_segment_length.as_u32(),
        max_burst_length: s.max_burst_length.as_u32(),
        first_burst_length: s.first_burst_length.as_u32(),
        immediate_data: s.immediate_data,
        initial_r2t: s.initial_r2t,
        max_outstanding_r2t: s.max_outstanding_r2t.clamp(1, 16) as u16,
        max_connections: s.max_connections.clamp(1, 65535) as u16,
        header_digest: digests(&s.header_digest),
        data_digest: digests(&s.data_digest),
        // The session layer implements ErrorRecoveryLevel 0; configuration validation refuses
        // more (config::Capabilities).
        max_error_recovery_level: s.error_recovery_level,
        default_time2wait: secs(s.default_time2wait),
        default_time2retain: secs(s.default_time2retain),
        nop_interval: (!s.nop_interval.is_zero()).then(|| s.nop_interval.get()),
        nop_timeout: if s.nop_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            s.nop_timeout.get()
        },
        queue_depth: s
            .queue_depth
            .clamp(1, rtgt_session::target::MAX_QUEUE_DEPTH),
        max_task_buffer: MAX_TASK_BUFFER,
    }
}
