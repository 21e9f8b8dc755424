//! iSCSI URLs in libiscsi's form and portal addresses (RFC 7143 §4.2.7.1 for the
//! `host[:port]` of a portal, default port 3260 per §13.8 / IANA).
//!
//! ```text
//! iscsi://[user[%secret]@]host[:port]/IQN/LUN[?target_user=U&target_password=P]
//! ```
//!
//! `host` may be a name, an IPv4 address or a bracketed IPv6 address. The query keys
//! `target_user`/`target_password` carry the credentials a target proves itself with in mutual
//! CHAP, as libiscsi accepts them.
//!
//! ```
//! use rtgt_client::IscsiUrl;
//!
//! let u: IscsiUrl = "iscsi://bob%s3cret@127.0.0.1:3261/iqn.2026-11.io.rtgt:default/1".parse()?;
//! assert_eq!(u.portal.to_string(), "127.0.0.1:3261");
//! assert_eq!(u.target, "iqn.2026-11.io.rtgt:default");
//! assert_eq!(u.lun, 1);
//! assert_eq!(u.user.as_deref(), Some("bob"));
//! assert_eq!(u.secret.as_deref(), Some("s3cret"));
//! # Ok::<(), rtgt_client::UrlError>(())
//! ```

use core::fmt;
use core::str::FromStr;

/// The IANA port of iSCSI.
pub const DEFAULT_PORT: u16 = 3260;

/// A malformed URL or portal address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL does not start with `iscsi://`.
    #[error("URL must start with iscsi://")]
    Scheme,
    /// No host between `//` (or `@`) and the port/path.
    #[error("missing host")]
    MissingHost,
    /// A port that is not a number in 1..=65535.
    #[error("invalid port {0:?}")]
    Port(String),
    /// An IPv6 literal without its closing bracket.
    #[error("unterminated [ in host")]
    Bracket,
    /// The path does not have the form `/IQN/LUN`.
    #[error("expected /TARGET-IQN/LUN after the host")]
    Path,
    /// The LUN is not a number in 0..=16383.
    #[error("invalid LUN {0:?} (0..=16383)")]
    Lun(String),
    /// An unknown or malformed query parameter.
    #[error("unknown URL parameter {0:?}")]
    Query(String),
}

/// A target portal: host name or address and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Portal {
    /// The address in a form `ToSocketAddrs` accepts (`host:port`, IPv6 in brackets).
    pub fn socket_addr_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Portal {
    type Err = UrlError;

    /// Parses `host[:port]`, `[v6][:port]`, or an `iscsi://host[:port][/]` URL.
    fn from_str(s: &str) -> Result<Self, UrlError> {
        let s = s.strip_prefix("iscsi://").unwrap_or(s);
        let s = s.trim_end_matches('/');
        parse_hostport(s)
    }
}

/// A parsed `iscsi://` URL naming one logical unit.
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// Where to connect.
    pub portal: Portal,
    /// The target's iSCSI name.
    pub target: String,
    /// The logical unit number.
    pub lun: u16,
    /// CHAP user name the initiator authenticates with.
    pub user: Option<String>,
    /// CHAP secret of `user`.
    pub secret: Option<String>,
    /// Mutual CHAP: the name the target must answer with.
    pub target_user: Option<String>,
    /// Mutual CHAP: the target's secret.
    pub target_secret: Option<String>,
}

impl fmt::Debug for IscsiUrl {
    /// Secrets are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiUrl")
            .field("portal", &self.portal)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .field("user", &self.user)
            .field("target_user", &self.target_user)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for IscsiUrl {
    /// The URL without secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("iscsi://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}/{}/{}", self.portal, self.target, self.lun)
    }
}

impl FromStr for IscsiUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let rest = s.strip_prefix("iscsi://").ok_or(UrlError::Scheme)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        // Credentials end at the last '@' before the first '/'.
        let authority_end = rest.find('/').ok_or(UrlError::Path)?;
        let (authority, path) = rest.split_at(authority_end);
        let (user, secret, hostport) = match authority.rsplit_once('@') {
            Some((cred, hp)) => match cred.split_once('%') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string()), hp),
                None => (Some(cred.to_string()), None, hp),
            },
            None => (None, None, authority),
        };
        let portal = parse_hostport(hostport)?;
        let path = path.trim_start_matches('/');
        let (target, lun) = path.rsplit_once('/').ok_or(UrlError::Path)?;
        if target.is_empty() || target.contains('/') {
            return Err(UrlError::Path);
        }
        let lun = parse_lun(lun)?;
        let mut url = Self {
            portal,
            target: target.to_string(),
            lun,
            user: user.filter(|u| !u.is_empty()),
            secret,
            target_user: None,
            target_secret: None,
        };
        if let Some(q) = query {
            for kv in q.split('&').filter(|kv| !kv.is_empty()) {
                match kv.split_once('=') {
                    Some(("target_user", v)) => url.target_user = Some(v.to_string()),
                    Some(("target_password", v)) => url.target_secret = Some(v.to_string()),
                    _ => return Err(UrlError::Query(kv.chars().take(64).collect())),
                }
            }
        }
        Ok(url)
    }
}

fn parse_lun(s: &str) -> Result<u16, UrlError> {
    match s.parse::<u16>() {
        Ok(n) if n < 0x4000 && !s.starts_with('+') => Ok(n),
        _ => Err(UrlError::Lun(s.chars().take(32).collect())),
    }
}

fn parse_hostport(s: &str) -> Result<Portal, UrlError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::Bracket)?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::Port(p.to_string()))?,
            ),
        };
        (host, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(UrlError::Bracket),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && !p.starts_with('+') => n,
            _ => return Err(UrlError::Port(p.chars().take(16).collect())),
        },
    };
    Ok(Portal {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url_with_mutual_credentials() {
        let u: IscsiUrl =
            "iscsi://u%p@host.example:3262/iqn.a:b/7?target_user=t&target_password=tp"
                .parse()
                .unwrap();
        assert_eq!(
            u.portal,
            Portal {
                host: "host.example".into(),
                port: 3262
            }
        );
        assert_eq!(u.lun, 7);
        assert_eq!(u.target_user.as_deref(), Some("t"));
        assert_eq!(u.target_secret.as_deref(), Some("tp"));
        assert_eq!(u.to_string(), "iscsi://u@host.example:3262/iqn.a:b/7");
        assert!(!format!("{u:?}").contains("tp"));
    }

    #[test]
    fn defaults_and_ipv6() {
        let u: IscsiUrl = "iscsi://[::1]/iqn.x/0".parse().unwrap();
        assert_eq!(
            u.portal,
            Portal {
                host: "::1".into(),
                port: 3260
            }
        );
        assert_eq!(u.portal.to_string(), "[::1]:3260");
        let u: IscsiUrl = "iscsi://[fe80::1]:99/iqn.x/3".parse().unwrap();
        assert_eq!(u.portal.port, 99);
        assert_eq!(u.user, None);
    }

    #[test]
    fn portal_forms() {
        assert_eq!("10.0.0.1".parse::<Portal>().unwrap().port, 3260);
        assert_eq!(
            "iscsi://10.0.0.1:1234/".parse::<Portal>().unwrap().port,
            1234
        );
        assert_eq!("[::1]:5".parse::<Portal>().unwrap().host, "::1");
        assert_eq!("h:0".parse::<Portal>(), Err(UrlError::Port("0".into())));
        assert_eq!("::1".parse::<Portal>(), Err(UrlError::Bracket));
        assert_eq!(":5".parse::<Portal>(), Err(UrlError::MissingHost));
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert_eq!("http://h/i/0".parse::<IscsiUrl>(), Err(UrlError::Scheme));
        assert_eq!("iscsi://h".parse::<IscsiUrl>(), Err(UrlError::Path));
        assert_eq!("iscsi://h/iqn".parse::<IscsiUrl>(), Err(UrlError::Path));
        assert_eq!("iscsi://h//0".parse::<IscsiUrl>(), Err(UrlError::Path));
        assert_eq!(
            "iscsi://h/iqn/x".parse::<IscsiUrl>(),
            Err(UrlError::Lun("x".into()))
        );
        assert_eq!(
            "iscsi://h/iqn/16384".parse::<IscsiUrl>(),
            Err(UrlError::Lun("16384".into()))
        );
        assert_eq!(
            "iscsi://h:x/iqn/1".parse::<IscsiUrl>(),
            Err(UrlError::Port("x".into()))
        );
        assert_eq!(
            "iscsi://h/iqn/1?foo=1".parse::<IscsiUrl>(),
            Err(UrlError::Query("foo=1".into()))
        );
        assert_eq!(
            "iscsi://[::1/iqn/1".parse::<IscsiUrl>(),
            Err(UrlError::Bracket)
        );
    }
}
