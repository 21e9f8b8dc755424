//! `[[portal]]`: network portals grouped into target portal groups (RFC 7143 §4.4.1).
//!
//! Each `[[portal]]` table is one portal group: a portal group tag (the TargetPortalGroupTag
//! of §13.9, returned with each TargetAddress in SendTargets answers, §13.8), the addresses it
//! listens on, and its transport — TCP, or iSER (RFC 7145) where the engine supports it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Capabilities;
use super::error::{Check, Invalid, KeyPath};

/// The well-known iSCSI port (RFC 7143 §13.8, IANA).
pub const ISCSI_PORT: u16 = 3260;

/// One portal group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portal {
    /// The target portal group tag (0–65535), unique among portals. Default 1.
    #[serde(default = "default_group")]
    pub group: u16,
    /// Addresses to listen on: `"IP:PORT"`, `"[IPv6]:PORT"`, or an IP alone for port 3260.
    pub listen: Vec<ListenAddr>,
    /// The transport. Default `tcp`.
    #[serde(default)]
    pub transport: Transport,
}

fn default_group() -> u16 {
    1
}

/// The transport a portal group speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// iSCSI over TCP (RFC 7143).
    #[default]
    Tcp,
    /// iSCSI Extensions for RDMA (RFC 7145); accepted only when the engine reports support
    /// through [`Capabilities::iser`].
    Iser,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Iser => "iser",
        })
    }
}

/// A listen address: an IP literal and a port. Host names are not resolved.
///
/// ```
/// use rtgt_target::config::ListenAddr;
///
/// assert_eq!("[::1]:3260".parse::<ListenAddr>()?.to_string(), "[::1]:3260");
/// assert_eq!("192.0.2.7".parse::<ListenAddr>()?.addr().port(), 3260);
/// assert!("localhost:3260".parse::<ListenAddr>().is_err());
/// # Ok::<(), rtgt_target::config::ListenAddrError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenAddr(SocketAddr);

/// Why a listen address was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} {reason}")]
pub struct ListenAddrError {
    /// What was written.
    pub text: String,
    /// Why it is not usable.
    pub reason: &'static str,
}

impl ListenAddr {
    /// Wraps a socket address.
    pub const fn new(addr: SocketAddr) -> Self {
        Self(addr)
    }

    /// The socket address.
    pub const fn addr(self) -> SocketAddr {
        self.0
    }

    /// Parses `IP:PORT`, `[IPv6]:PORT`, `IP` or `[IPv6]` (the last two on port 3260).
    pub fn parse(text: &str) -> Result<Self, ListenAddrError> {
        let err = |reason| ListenAddrError {
            text: text.to_owned(),
            reason,
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
            return Ok(Self(SocketAddr::new(IpAddr::V4(ip), ISCSI_PORT)));
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if let Ok(ip) = inner.parse::<std::net::Ipv6Addr>() {
                return Ok(Self(SocketAddr::new(IpAddr::V6(ip), ISCSI_PORT)));
            }
        }
        if text.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(err(
                "is ambiguous: write IPv6 addresses in brackets, e.g. [::1]:3260",
            ));
        }
        Err(err(
            "is not an IP address and port (e.g. 0.0.0.0:3260, 127.0.0.1:3260, [::1]:3260; host names are not resolved)",
        ))
    }

    /// Whether this is the unspecified address (`0.0.0.0` / `::`), i.e. every interface.
    pub fn is_wildcard(self) -> bool {
        self.0.ip().is_unspecified()
    }
}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        Self(addr)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::de::parse_str(deserializer, "an IP address and port", Self::parse)
    }
}

/// Checks the portals: at least one, tags unique, every group listens somewhere, no address
/// twice (nor a specific address on a port a wildcard of the same family already covers),
/// and iSER only where supported.
pub(crate) fn validate(portals: &[Portal], caps: Capabilities, base: &KeyPath) -> Check {
    if portals.is_empty() {
        return Err(Invalid::new(
            base.clone(),
            "no [[portal]]: add one, e.g. [[portal]] listen = [\"0.0.0.0:3260\"]",
        ));
    }
    let mut tags = BTreeMap::new();
    let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
    for (i, p) in portals.iter().enumerate() {
        let here = base.index(i);
        if let Some(first) = tags.insert(p.group, i) {
            return Err(Invalid::new(
                here.key("group"),
                format!(
                    "portal group {} is already used by portal[{first}]; each [[portal]] is one group with its own tag",
                    p.group
                ),
            ));
        }
        if p.transport == Transport::Iser && !caps.iser {
            return Err(Invalid::new(
                here.key("transport"),
                "iser is not supported by this build of rtgtd (no RDMA support); use tcp",
            ));
        }
        if p.listen.is_empty() {
            return Err(Invalid::new(
                here.key("listen"),
                "is empty: give at least one address, e.g. [\"0.0.0.0:3260\"]",
            ));
        }
        for (j, addr) in p.listen.iter().enumerate() {
            let key = here.key("listen").index(j);
            let a = addr.addr();
            if let Some(prev) = seen.get(&a) {
                return Err(Invalid::new(
                    key,
                    format!("{a} is already listed at {prev}"),
                ));
            }
            let clash = seen.iter().find(|(b, _)| overlaps(**b, a));
            if let Some((b, prev)) = clash {
                return Err(Invalid::new(
                    key,
                    format!(
                        "{a} overlaps {b} at {prev}: a wildcard address already covers that port"
                    ),
                ));
            }
            seen.insert(a, key.to_string());
        }
    }
    Ok(())
}

/// Whether binding `a` and `b` both would fail because a wildcard address of the same family
/// already covers the port (port 0 asks the kernel for a fresh port each time, so never).
pub(crate) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The set of portal group tags defined.
pub(crate) fn tags(portals: &[Portal]) -> BTreeSet<u16> {
    portals.iter().map(|p| p.group).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let p = |s: &str| {
            ListenAddr::parse(s)
                .map(|a| a.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(p("127.0.0.1:3260"), Ok("127.0.0.1:3260".into()));
        assert_eq!(p("0.0.0.0:0"), Ok("0.0.0.0:0".into()));
        assert_eq!(p("[::1]:3261"), Ok("[::1]:3261".into()));
        assert_eq!(p("[::]"), Ok("[::]:3260".into()));
        assert_eq!(p("10.1.2.3"), Ok("10.1.2.3:3260".into()));
        assert_eq!(p("[fe80::1%2]:3260"), Ok("[fe80::1%2]:3260".into()));
        assert_eq!(
            p("::1"),
            Err("\"::1\" is ambiguous: write IPv6 addresses in brackets, e.g. [::1]:3260".into())
        );
        assert_eq!(
            p("localhost:3260"),
            Err("\"localhost:3260\" is not an IP address and port (e.g. 0.0.0.0:3260, 127.0.0.1:3260, [::1]:3260; host names are not resolved)".into())
        );
        assert!(p("127.0.0.1:65536").is_err());
        assert!(p("127.0.0.1:").is_err());
        assert!(ListenAddr::parse("0.0.0.0:3260").unwrap().is_wildcard());
    }

    fn portal(group: u16, listen: &[&str]) -> Portal {
        Portal {
            group,
            listen: listen
                .iter()
                .map(|s| ListenAddr::parse(s).unwrap())
                .collect(),
            transport: Transport::Tcp,
        }
    }

    fn check(portals: &[Portal], caps: Capabilities) -> Result<(), String> {
        validate(portals, caps, &KeyPath::root().key("portal"))
            .map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn portal_rules() {
        let caps = Capabilities::default();
        assert_eq!(
            check(&[], caps),
            Err(
                "portal: no [[portal]]: add one, e.g. [[portal]] listen = [\"0.0.0.0:3260\"]"
                    .into()
            )
        );
        assert!(check(&[portal(1, &["127.0.0.1:3260", "[::1]:3260"])], caps).is_ok());
        assert_eq!(
            check(&[portal(1, &["127.0.0.1:3260"]), portal(1, &["127.0.0.2:3260"])], caps),
            Err("portal[1].group: portal group 1 is already used by portal[0]; each [[portal]] is one group with its own tag".into())
        );
        assert_eq!(
            check(
                &[
                    portal(1, &["127.0.0.1:3260"]),
                    portal(2, &["127.0.0.1:3260"])
                ],
                caps
            ),
            Err(
                "portal[1].listen[0]: 127.0.0.1:3260 is already listed at portal[0].listen[0]"
                    .into()
            )
        );
        assert_eq!(
            check(&[portal(1, &["0.0.0.0:3260", "10.0.0.1:3260"])], caps),
            Err("portal[0].listen[1]: 10.0.0.1:3260 overlaps 0.0.0.0:3260 at portal[0].listen[0]: a wildcard address already covers that port".into())
        );
        // Different families or ports do not overlap; port 0 picks a free port each time.
        assert!(
            check(
                &[portal(1, &["0.0.0.0:3260", "[::1]:3260", "10.0.0.1:3261"])],
                caps
            )
            .is_ok()
        );
        assert!(check(&[portal(1, &["0.0.0.0:0", "127.0.0.1:0"])], caps).is_ok());
        assert_eq!(
            check(&[portal(1, &[])], caps),
            Err(
                "portal[0].listen: is empty: give at least one address, e.g. [\"0.0.0.0:3260\"]"
                    .into()
            )
        );
        let mut iser = portal(1, &["127.0.0.1:3260"]);
        iser.transport = Transport::Iser;
        assert_eq!(
            check(std::slice::from_ref(&iser), caps),
            Err("portal[0].transport: iser is not supported by this build of rtgtd (no RDMA support); use tcp".into())
        );
        let with_iser = Capabilities { iser: true, ..caps };
        assert!(check(&[iser], with_iser).is_ok());
    }
}
