//! rtgtd's configuration: a TOML file (serde + toml), the embedded default, and the
//! command-line overrides.
//!
//! The file has these sections (docs/configuration.md describes every key):
//! `[[portal]]` portal groups (RFC 7143 §4.4.1), `[[target]]` target nodes with their
//! `[[target.lun]]` logical units, ACL and `[target.auth]` CHAP credentials (§12.1.3),
//! `[session]` operational defaults (§13), `[discovery]` (discovery sessions and SendTargets,
//! §13.3 and Appendix C), `[performance]` (reactor placement and buffer pools, from `rtgt_affinity`) and
//! `[log]`.
//!
//! Loading happens in three steps: TOML syntax (errors carry line and column), schema
//! (types, unknown keys — rejected —, value formats such as sizes, durations and iSCSI
//! names; errors name the key path found from toml's span), then semantic validation
//! (ranges, references and cross-checks; errors are placed back at the key's line). Every
//! error reads `FILE:LINE:COLUMN: KEY.PATH: what is wrong`.
//!
//! ```
//! use rtgt_target::config::{Backend, ByteSize, Config};
//!
//! let text = r#"
//! [[portal]]
//! listen = ["127.0.0.1:3260"]
//!
//! [[target]]
//! name = "iqn.2026-11.io.rtgt:disk1"
//!
//! [[target.lun]]
//! number = 0
//! backend = "memory:64MiB"
//! "#;
//! let config = Config::from_toml_str(text, "rtgtd.toml")?;
//! assert_eq!(config.targets[0].luns[0].backend, Backend::Memory { size: ByteSize::mib(64) });
//!
//! let bad = text.replace("memory:64MiB", "memory:64 MiB");
//! assert_eq!(
//!     Config::from_toml_str(&bad, "rtgtd.toml").unwrap_err().to_string(),
//!     "rtgtd.toml:10:11: target[0].lun[0].backend: \"64 MiB\" is not a size (try 64MiB)",
//! );
//! # Ok::<(), rtgt_target::config::ConfigError>(())
//! ```

mod auth;
mod backend;
mod de;
mod error;
mod log;
mod lun;
mod name;
mod overrides;
mod portal;
mod session;
mod source;
mod spec;
mod streams;
mod target;
mod units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use rtgt_affinity::{HugePages, IrqPolicy, PerformanceConfig};

pub use auth::{AuthConfig, ChapAlgorithm, ChapCredential, MAX_SECRET_LEN, MIN_SECRET_LEN, Secret};
pub use backend::{Backend, DeviceBackend, FileBackend, WriteCache};
pub use error::{ConfigError, Location};
pub use log::{LogConfig, LogFormat, LogLevel};
pub use lun::{DEFAULT_BLOCK_SIZE, Lun, MAX_LUN, Naa, NaaError};
pub use name::{IscsiName, MAX_NAME_LEN, NameError, NameFormat};
pub use overrides::Overrides;
pub use portal::{ISCSI_PORT, ListenAddr, ListenAddrError, Portal, Transport};
pub use session::{Digest, MAX_DATA_LEN, MIN_DATA_LEN, SessionDefaults};
pub use spec::{LunSpec, LunSpecError};
pub use streams::{StreamsConfig, Toggle};
pub use target::{Acl, Target};
pub use units::{ByteSize, HumanDuration, UnitError};

use error::{Check, Invalid, KeyPath};
use source::Source;

/// The name of the target in the embedded default configuration.
pub const DEFAULT_TARGET_NAME: &str = "iqn.2026-11.io.rtgt:default";

/// What the running engine supports; validation rejects settings beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// iSER portals can be served (RDMA support is built in).
    pub iser: bool,
    /// Highest ErrorRecoveryLevel the session layer implements.
    pub max_error_recovery_level: u8,
}

impl Default for Capabilities {
    /// TCP only, ErrorRecoveryLevel 0.
    fn default() -> Self {
        Self {
            iser: false,
            max_error_recovery_level: 0,
        }
    }
}

/// `[discovery]`: settings for discovery sessions (SessionType=Discovery, SendTargets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// CHAP for discovery sessions; no users means discovery is open.
    pub auth: AuthConfig,
}

/// A whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Portal groups, written `[[portal]]`.
    #[serde(default, rename = "portal")]
    pub portals: Vec<Portal>,
    /// Targets, written `[[target]]`.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// Operational defaults offered at login.
    #[serde(default)]
    pub session: SessionDefaults,
    /// Discovery-session settings.
    #[serde(default)]
    pub discovery: Discovery,
    /// Reactor placement, buffer pools and interrupt policy.
    #[serde(default)]
    pub performance: PerformanceConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

impl Config {
    /// rtgtd's configuration when started without `--config`: target
    /// `iqn.2026-11.io.rtgt:default` with LUN 0 a 1 GiB RAM disk, one portal on
    /// 127.0.0.1:3260, no authentication, any initiator allowed.
    ///
    /// ```
    /// use rtgt_target::config::{Acl, Backend, ByteSize, Capabilities, Config};
    ///
    /// let c = Config::embedded_default();
    /// assert_eq!(c.targets[0].name.as_str(), "iqn.2026-11.io.rtgt:default");
    /// assert_eq!(c.targets[0].luns[0].backend, Backend::Memory { size: ByteSize::gib(1) });
    /// assert_eq!(c.portals[0].listen[0].to_string(), "127.0.0.1:3260");
    /// assert_eq!(c.targets[0].acl, Acl::Any);
    /// assert!(!c.targets[0].auth.required());
    /// assert!(c.validate(Capabilities::default()).is_ok());
    /// ```
    pub fn embedded_default() -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ISCSI_PORT));
        let mut target = Target::new(IscsiName::new_unchecked(DEFAULT_TARGET_NAME));
        // A thin-provisioned RAM disk: UNMAP frees its pages.
        let mut lun = Lun::new(
            0,
            Backend::Memory {
                size: ByteSize::gib(1),
            },
        );
        lun.thin_provisioning = true;
        target.luns.push(lun);
        Self {
            portals: vec![Portal {
                group: 1,
                listen: vec![ListenAddr::new(addr)],
                transport: Transport::Tcp,
            }],
            targets: vec![target],
            session: SessionDefaults::default(),
            discovery: Discovery::default(),
            performance: PerformanceConfig::default(),
            log: LogConfig::default(),
        }
    }

    /// The embedded default with command-line overrides applied, validated.
    pub fn embedded_default_with(
        caps: Capabilities,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::embedded_default();
        let touched = overrides::apply(&mut config, overrides)?;
        config
            .check(caps)
            .map_err(|inv| blame_flag(inv, &touched).unwrap_or_else(Invalid::unplaced))?;
        Ok(config)
    }

    /// Parses and validates configuration `text`; `path` names the file in errors. Uses
    /// [`Capabilities::default`] and no overrides.
    pub fn from_toml_str(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_toml_str_with(text, path, Capabilities::default(), &Overrides::default())
    }

    /// Parses `text`, applies `overrides`, then validates against `caps`.
    pub fn from_toml_str_with(
        text: &str,
        path: impl AsRef<Path>,
        caps: Capabilities,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let source = Source::parse(text, path)?;
        let mut config: Self = toml::from_str(text).map_err(|e| source.de_error(&e))?;
        let touched = overrides::apply(&mut config, overrides)?;
        config
            .check(caps)
            .map_err(|inv| blame_flag(inv, &touched).unwrap_or_else(|inv| source.place(inv)))?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path` (see [`Config::from_toml_str`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, Capabilities::default(), &Overrides::default())
    }

    /// Reads the file at `path`, applies `overrides` and validates against `caps`.
    pub fn load_with(
        path: impl AsRef<Path>,
        caps: Capabilities,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str_with(&text, path, caps, overrides)
    }

    /// Applies command-line overrides (see [`Overrides`]) without re-validating the rest.
    ///
    /// ```
    /// use rtgt_target::config::{Capabilities, Config, Overrides};
    ///
    /// let mut c = Config::embedded_default();
    /// c.apply_overrides(&Overrides {
    ///     listen: vec!["[::1]:3261".into()],
    ///     target: Some("iqn.2026-11.io.rtgt:scratch".into()),
    ///     luns: vec!["null:1TiB".into(), "memory:16MiB".into()],
    ///     ..Overrides::default()
    /// })?;
    /// assert_eq!(c.portals[0].listen[0].to_string(), "[::1]:3261");
    /// assert_eq!(c.targets[0].name.as_str(), "iqn.2026-11.io.rtgt:scratch");
    /// assert_eq!(c.targets[0].luns[1].number, 1);
    ///
    /// let err = c.apply_overrides(&Overrides { luns: vec!["disk:1G".into()], ..Overrides::default() });
    /// assert_eq!(
    ///     err.unwrap_err().to_string(),
    ///     "--lun: \"disk:1G\": unknown backend \"disk\" (use memory:SIZE, file:PATH[,size=SIZE][,direct][,ro], block:DEVICE[,ro] or null:SIZE)",
    /// );
    /// # Ok::<(), rtgt_target::config::ConfigError>(())
    /// ```
    pub fn apply_overrides(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        overrides::apply(self, overrides).map(|_| ())
    }

    /// Validates a configuration built or edited in code; errors name the key but no line.
    pub fn validate(&self, caps: Capabilities) -> Result<(), ConfigError> {
        self.check(caps).map_err(Invalid::unplaced)
    }

    /// The configuration as TOML text (what `from_toml_str` reads back to an equal value).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// A copy with every CHAP secret replaced by `(redacted)`, for logging or printing the
    /// effective configuration ([`Config::to_toml_string`] writes secrets as they are).
    pub fn redacted(&self) -> Self {
        fn hide(auth: &mut AuthConfig) {
            for c in auth.users.iter_mut().chain(auth.mutual.as_mut()) {
                c.secret = Secret::new("(redacted)");
            }
        }
        let mut copy = self.clone();
        hide(&mut copy.discovery.auth);
        for t in &mut copy.targets {
            hide(&mut t.auth);
        }
        copy
    }

    /// The target named `name` (compared as iSCSI names are: case-insensitively).
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name.matches(name))
    }

    /// The portal groups `target` is reachable through.
    pub fn portals_for<'a>(&'a self, target: &'a Target) -> impl Iterator<Item = &'a Portal> + 'a {
        self.portals
            .iter()
            .filter(move |p| target.reachable_through(p.group))
    }

    fn check(&self, caps: Capabilities) -> Check {
        let root = KeyPath::root();
        portal::validate(&self.portals, caps, &root.key("portal"))?;
        let tags = portal::tags(&self.portals);
        if self.targets.is_empty() {
            return Err(Invalid::new(
                root.key("target"),
                "no [[target]]: add one with a name and at least one [[target.lun]]",
            ));
        }
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut storage: BTreeMap<&Path, String> = BTreeMap::new();
        let mut naas: BTreeMap<&Naa, String> = BTreeMap::new();
        for (i, t) in self.targets.iter().enumerate() {
            let here = root.key("target").index(i);
            if let Some(first) = names.insert(t.name.as_str().to_ascii_lowercase(), i) {
                return Err(Invalid::new(
                    here.key("name"),
                    format!("target {} is already defined at target[{first}]", t.name),
                ));
            }
            target::validate(t, &tags, &here)?;
            for (j, l) in t.luns.iter().enumerate() {
                let lun_key = here.key("lun").index(j);
                if let Some(p) = backend::storage_path(&l.backend) {
                    let key = match l.backend {
                        Backend::Block(_) => lun_key.key("backend").key("device"),
                        _ => lun_key.key("backend").key("path"),
                    };
                    if let Some(first) = storage.insert(p, lun_key.to_string()) {
                        return Err(Invalid::new(
                            key,
                            format!("{} is already the storage of {first}", p.display()),
                        ));
                    }
                }
                if let Some(naa) = &l.naa {
                    if let Some(first) = naas.insert(naa, lun_key.to_string()) {
                        return Err(Invalid::new(
                            lun_key.key("naa"),
                            format!("{naa} is already the identifier of {first}"),
                        ));
                    }
                }
            }
        }
        session::validate(&self.session, caps, &root.key("session"))?;
        auth::validate(&self.discovery.auth, &root.key("discovery").key("auth"))?;
        self.performance
            .validate()
            .map_err(|e| Invalid::new(KeyPath::dotted(e.key), e.reason))?;
        Ok(())
    }
}

/// If `inv` lies under a key a command-line flag replaced, the error names the flag.
fn blame_flag(inv: Invalid, touched: &[(KeyPath, &'static str)]) -> Result<ConfigError, Invalid> {
    match touched
        .iter()
        .find(|(prefix, _)| inv.path.starts_with(prefix))
    {
        Some((_, flag)) => Ok(ConfigError::Flag {
            flag,
            message: format!("{}: {}", inv.path, inv.message),
        }),
        None => Err(inv),
    }
}
