//! SendTargets discovery (RFC 7143 §4.3 discovery sessions, Appendix C SendTargets operation;
//! key syntax §13.8 TargetAddress, §13.4 TargetName, §13.9 TargetPortalGroupTag).
//!
//! The answer to `SendTargets=All` is a list of `TargetName=` keys, each followed by the
//! `TargetAddress=` keys of its portals (`host[:port],tag`). Keys repeat, so the text is parsed
//! without the duplicate check that negotiation uses.
//!
//! ```
//! use rtgt_session::initiator::discovery::parse_send_targets;
//!
//! let text = b"TargetName=iqn.a:disk1\0TargetAddress=10.0.0.1:3260,1\0\
//!              TargetAddress=[fe80::1]:3261,2\0TargetName=iqn.a:disk2\0";
//! let targets = parse_send_targets(text).unwrap();
//! assert_eq!(targets.len(), 2);
//! assert_eq!(targets[0].portals[1].address, "[fe80::1]:3261");
//! assert_eq!(targets[0].portals[1].tag, Some(2));
//! assert!(targets[1].portals.is_empty());
//! ```

use rtgt_pdu::text::{TextError, parse_pairs};

/// The SendTargets request for every target the portal knows.
pub const SEND_TARGETS_ALL: &[u8] = b"SendTargets=All\0";

/// One portal of a discovered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPortal {
    /// `host[:port]` (IPv6 in brackets), as sent.
    pub address: String,
    /// Target portal group tag, if given.
    pub tag: Option<u16>,
}

/// One target in a SendTargets answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// Its portals (may be empty: then it is reached through the discovery portal).
    pub portals: Vec<DiscoveredPortal>,
}

/// A SendTargets answer that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The text is malformed.
    #[error(transparent)]
    Text(#[from] TextError),
    /// A TargetAddress before any TargetName.
    #[error("TargetAddress {0:?} before any TargetName")]
    OrphanAddress(String),
    /// A TargetAddress with a portal group tag that is not a 16-bit number.
    #[error("malformed TargetAddress {0:?}")]
    BadAddress(String),
}

/// Parses the (reassembled) text of a SendTargets answer.
pub fn parse_send_targets(text: &[u8]) -> Result<Vec<DiscoveredTarget>, DiscoveryError> {
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for pair in parse_pairs(text)? {
        match pair.key {
            "TargetName" => {
                out.push(DiscoveredTarget {
                    name: pair.value.to_owned(),
                    portals: Vec::new(),
                });
            }
            "TargetAddress" => {
                let target = out
                    .last_mut()
                    .ok_or_else(|| DiscoveryError::OrphanAddress(pair.value.to_owned()))?;
                target.portals.push(parse_address(pair.value)?);
            }
            // TargetAlias and other keys are informational.
            _ => {}
        }
    }
    Ok(out)
}

/// Parses `host[:port][,tag]`. The tag follows the last comma after any IPv6 bracket.
pub fn parse_address(value: &str) -> Result<DiscoveredPortal, DiscoveryError> {
    let bad = || DiscoveryError::BadAddress(value.chars().take(80).collect());
    let search_from = value.rfind(']').unwrap_or(0);
    match value
        .get(search_from..)
        .and_then(|s| s.rfind(','))
        .map(|i| i + search_from)
    {
        Some(comma) => {
            let (addr, tag) = value.split_at(comma);
            let tag = tag
                .get(1..)
                .ok_or_else(bad)?
                .parse::<u16>()
                .map_err(|_| bad())?;
            if addr.is_empty() {
                return Err(bad());
            }
            Ok(DiscoveredPortal {
                address: addr.to_owned(),
                tag: Some(tag),
            })
        }
        None if !value.is_empty() => Ok(DiscoveredPortal {
            address: value.to_owned(),
            tag: None,
        }),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_tags() {
        assert_eq!(
            parse_address("host.example").unwrap(),
            DiscoveredPortal {
                address: "host.example".into(),
                tag: None
            }
        );
        assert_eq!(parse_address("1.2.3.4:99,7").unwrap().tag, Some(7));
        assert_eq!(parse_address("[::1],3").unwrap().address, "[::1]");
        assert!(matches!(
            parse_address("1.2.3.4,x"),
            Err(DiscoveryError::BadAddress(_))
        ));
        assert!(matches!(
            parse_address(",1"),
            Err(DiscoveryError::BadAddress(_))
        ));
        assert!(matches!(
            parse_address(""),
            Err(DiscoveryError::BadAddress(_))
        ));
    }

    #[test]
    fn orphan_address_and_bad_text_are_errors() {
        assert!(matches!(
            parse_send_targets(b"TargetAddress=1.2.3.4\0"),
            Err(DiscoveryError::OrphanAddress(_))
        ));
        assert!(matches!(
            parse_send_targets(b"TargetName"),
            Err(DiscoveryError::Text(_))
        ));
        assert_eq!(parse_send_targets(b"").unwrap(), []);
    }
}
