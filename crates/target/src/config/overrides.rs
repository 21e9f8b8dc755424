//! Command-line overrides: `rtgtd --listen ADDR… --target IQN --lun SPEC…`.
//!
//! They edit a loaded (or the embedded) configuration before it is validated: `--listen`
//! replaces every portal with one TCP portal group (tag 1) and makes every target reachable
//! through it; `--target` renames the single target (or creates it when there is none);
//! `--lun` replaces that target's LUNs, numbering them 0, 1, 2… in the order given;
//! `--portal [tcp:|iser:]ADDR` adds one portal group per flag (after the `--listen` group, or
//! in place of the file's portals), with the transport named (RFC 7145 iSER where built in).
//! Errors name the flag.

use super::Config;
use super::backend::{Backend, storage_path};
use super::error::{ConfigError, KeyPath};
use super::lun::{Lun, MAX_LUN};
use super::name::IscsiName;
use super::portal::{self, ListenAddr, Portal, Transport};
use super::spec::LunSpec;
use super::target::Target;

/// Values of the overriding command-line flags, as typed by the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen ADDR`, repeatable: replaces the portals.
    pub listen: Vec<String>,
    /// `--target IQN`: renames (or creates) the single target.
    pub target: Option<String>,
    /// `--lun SPEC`, repeatable: replaces the target's LUNs, numbered from 0.
    pub luns: Vec<String>,
    /// `--portal [tcp:|iser:]ADDR`, repeatable: replaces the portals (alongside a `--listen`
    /// group), one portal group per flag with the next free tag, reachable by every target.
    pub portals: Vec<String>,
}

impl Overrides {
    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.listen.is_empty()
            && self.target.is_none()
            && self.luns.is_empty()
            && self.portals.is_empty()
    }
}

fn flag(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Flag {
        flag,
        message: message.into(),
    }
}

/// Applies `o` to `config`; returns the key paths the flags replaced, so that a later
/// validation error under one of them can name the flag instead of a file line.
pub(crate) fn apply(
    config: &mut Config,
    o: &Overrides,
) -> Result<Vec<(KeyPath, &'static str)>, ConfigError> {
    let mut touched = Vec::new();
    if !o.listen.is_empty() {
        let mut addrs: Vec<ListenAddr> = Vec::with_capacity(o.listen.len());
        for text in &o.listen {
            let addr = ListenAddr::parse(text).map_err(|e| flag("--listen", e.to_string()))?;
            if let Some(prev) = addrs.iter().find(|a| **a == addr) {
                return Err(flag("--listen", format!("{prev} is given twice")));
            }
            if let Some(prev) = addrs
                .iter()
                .find(|a| portal::overlaps(a.addr(), addr.addr()))
            {
                return Err(flag(
                    "--listen",
                    format!("{addr} overlaps {prev} (a wildcard address already covers that port)"),
                ));
            }
            addrs.push(addr);
        }
        config.portals = vec![Portal {
            group: 1,
            listen: addrs,
            transport: Transport::Tcp,
        }];
        for t in &mut config.targets {
            t.portal_groups.clear();
        }
        touched.push((KeyPath::root().key("portal"), "--listen"));
    }
    if !o.portals.is_empty() {
        apply_portals(config, &o.portals, o.listen.is_empty())?;
        touched.push((KeyPath::root().key("portal"), "--portal"));
    }
    if let Some(text) = &o.target {
        let name = IscsiName::parse(text).map_err(|e| flag("--target", e.to_string()))?;
        match config.targets.as_mut_slice() {
            [] => {
                if o.luns.is_empty() {
                    return Err(flag(
                        "--target",
                        "the configuration has no [[target]], so --target creates one; give it LUNs with --lun SPEC",
                    ));
                }
                config.targets.push(Target::new(name));
                touched.push((KeyPath::root().key("target").index(0), "--target"));
            }
            [only] => {
                only.name = name;
                touched.push((
                    KeyPath::root().key("target").index(0).key("name"),
                    "--target",
                ));
            }
            many => {
                return Err(flag(
                    "--target",
                    format!(
                        "the configuration defines {} targets; --target can only rename a single one",
                        many.len()
                    ),
                ));
            }
        }
    }
    if !o.luns.is_empty() {
        let target = match config.targets.as_mut_slice() {
            [only] => only,
            [] => {
                return Err(flag(
                    "--lun",
                    "there is no target to attach LUNs to; add --target IQN",
                ));
            }
            many => {
                return Err(flag(
                    "--lun",
                    format!(
                        "the configuration defines {} targets; --lun needs exactly one",
                        many.len()
                    ),
                ));
            }
        };
        if o.luns.len() > usize::from(MAX_LUN) + 1 {
            return Err(flag(
                "--lun",
                format!("at most {} LUNs", usize::from(MAX_LUN) + 1),
            ));
        }
        let mut luns: Vec<Lun> = Vec::with_capacity(o.luns.len());
        for (number, text) in (0u16..).zip(&o.luns) {
            let spec = LunSpec::parse(text).map_err(|e| flag("--lun", format!("{text:?}: {e}")))?;
            let same = luns
                .iter()
                .zip(&o.luns)
                .find_map(|(l, t)| same_storage(&spec.backend, &l.backend).then_some(t));
            if let Some(earlier) = same {
                return Err(flag(
                    "--lun",
                    format!("{text:?} uses the same storage as {earlier:?}"),
                ));
            }
            luns.push(spec.into_lun(number));
        }
        target.luns = luns;
        touched.push((KeyPath::root().key("target").index(0).key("lun"), "--lun"));
    }
    Ok(touched)
}

/// `--portal [tcp:|iser:]ADDR…`: one portal group per address, after a `--listen` group (or
/// instead of the file's portals when there is none).
fn apply_portals(config: &mut Config, specs: &[String], replace: bool) -> Result<(), ConfigError> {
    if replace {
        config.portals.clear();
        for t in &mut config.targets {
            t.portal_groups.clear();
        }
    }
    for text in specs {
        let (transport, rest) = if let Some(r) = text.strip_prefix("iser:") {
            (Transport::Iser, r)
        } else if let Some(r) = text.strip_prefix("tcp:") {
            (Transport::Tcp, r)
        } else {
            (Transport::Tcp, text.as_str())
        };
        let addr = ListenAddr::parse(rest).map_err(|e| flag("--portal", e.to_string()))?;
        let clash = config
            .portals
            .iter()
            .flat_map(|p| p.listen.iter())
            .find(|a| **a == addr || portal::overlaps(a.addr(), addr.addr()));
        if let Some(prev) = clash {
            return Err(flag(
                "--portal",
                format!("{addr} overlaps {prev}, which is already a portal"),
            ));
        }
        let group = config
            .portals
            .iter()
            .map(|p| p.group)
            .max()
            .map_or(Some(1), |g| g.checked_add(1))
            .ok_or_else(|| flag("--portal", "no portal group tag left"))?;
        config.portals.push(Portal {
            group,
            listen: vec![addr],
            transport,
        });
        for t in &mut config.targets {
            if !t.portal_groups.is_empty() {
                t.portal_groups.push(group);
            }
        }
    }
    Ok(())
}

fn same_storage(a: &Backend, b: &Backend) -> bool {
    matches!((storage_path(a), storage_path(b)), (Some(x), Some(y)) if x == y)
}
