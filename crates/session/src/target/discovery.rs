//! SendTargets answers (RFC 7143 §13.3, Appendix C): which targets an initiator may see and the
//! portals (TargetAddress=`address:port,tag`) through which each is reachable.

use std::net::SocketAddr;

use super::catalog::Catalog;

/// Builds the `TargetName=`/`TargetAddress=` text answering `SendTargets=value`.
///
/// * `value` is `All`, a target name, or empty (the session's own target).
/// * `only` restricts the answer to the session's target (normal sessions); `None` in discovery
///   sessions.
/// * `local` replaces wildcard portal addresses with the address the initiator reached.
///
/// Targets whose ACL refuses `initiator` are never listed.
///
/// ```
/// use rtgt_session::target::{Catalog, PortalGroup, TargetEntry};
/// use rtgt_session::target::discovery::send_targets;
///
/// let catalog = Catalog {
///     targets: vec![TargetEntry { name: "iqn.2026-11.io.rtgt:a".into(), ..Default::default() }],
///     portal_groups: vec![PortalGroup { tag: 1, addresses: vec!["0.0.0.0:3260".parse().unwrap()] }],
///     ..Default::default()
/// };
/// let text = send_targets(&catalog, "iqn.x", "All", None, Some("10.0.0.5:3260".parse().unwrap()));
/// assert_eq!(text, b"TargetName=iqn.2026-11.io.rtgt:a\0TargetAddress=10.0.0.5:3260,1\0");
/// ```
pub fn send_targets(
    catalog: &Catalog,
    initiator: &str,
    value: &str,
    only: Option<&str>,
    local: Option<SocketAddr>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for t in &catalog.targets {
        if !t.acl.allows(initiator) {
            continue;
        }
        let wanted = match (value, only) {
            ("All", None) => true,
            ("All" | "", Some(own)) => t.name.eq_ignore_ascii_case(own),
            ("", None) => false,
            (name, Some(own)) => {
                t.name.eq_ignore_ascii_case(name) && name.eq_ignore_ascii_case(own)
            }
            (name, None) => t.name.eq_ignore_ascii_case(name),
        };
        if !wanted {
            continue;
        }
        rtgt_pdu::text::encode_pair("TargetName", &t.name, &mut out);
        for g in &catalog.portal_groups {
            if !t.in_group(g.tag) {
                continue;
            }
            for addr in &g.addresses {
                let shown = match (addr.ip().is_unspecified(), local) {
                    (true, Some(l)) => SocketAddr::new(l.ip(), addr.port()),
                    _ => *addr,
                };
                rtgt_pdu::text::encode_pair(
                    "TargetAddress",
                    &format!("{shown},{}", g.tag),
                    &mut out,
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Acl, PortalGroup, TargetEntry};

    fn catalog() -> Catalog {
        Catalog {
            targets: vec![
                TargetEntry {
                    name: "iqn.t:a".into(),
                    portal_groups: vec![1],
                    ..Default::default()
                },
                TargetEntry {
                    name: "iqn.t:b".into(),
                    acl: Acl::Allow(vec!["iqn.good".into()]),
                    ..Default::default()
                },
            ],
            portal_groups: vec![
                PortalGroup {
                    tag: 1,
                    addresses: vec!["192.0.2.1:3260".parse().unwrap()],
                },
                PortalGroup {
                    tag: 2,
                    addresses: vec!["[2001:db8::1]:3261".parse().unwrap()],
                },
            ],
            ..Default::default()
        }
    }

    fn text(v: &[u8]) -> String {
        String::from_utf8(v.to_vec()).unwrap().replace('\0', "|")
    }

    #[test]
    fn all_lists_allowed_targets_with_their_groups() {
        let c = catalog();
        assert_eq!(
            text(&send_targets(&c, "iqn.good", "All", None, None)),
            "TargetName=iqn.t:a|TargetAddress=192.0.2.1:3260,1|TargetName=iqn.t:b|\
             TargetAddress=192.0.2.1:3260,1|TargetAddress=[2001:db8::1]:3261,2|"
        );
        assert_eq!(
            text(&send_targets(&c, "iqn.other", "All", None, None)),
            "TargetName=iqn.t:a|TargetAddress=192.0.2.1:3260,1|"
        );
    }

    #[test]
    fn by_name_and_in_normal_sessions() {
        let c = catalog();
        assert_eq!(
            text(&send_targets(&c, "i", "iqn.T:A", None, None)),
            "TargetName=iqn.t:a|TargetAddress=192.0.2.1:3260,1|"
        );
        assert!(send_targets(&c, "i", "iqn.t:zz", None, None).is_empty());
        assert!(
            send_targets(&c, "i", "iqn.t:b", None, None).is_empty(),
            "ACL hides b"
        );
        assert!(send_targets(&c, "i", "", None, None).is_empty());
        assert_eq!(
            text(&send_targets(&c, "i", "", Some("iqn.t:a"), None)),
            "TargetName=iqn.t:a|TargetAddress=192.0.2.1:3260,1|"
        );
        assert_eq!(
            send_targets(&c, "i", "All", Some("iqn.t:a"), None),
            send_targets(&c, "i", "", Some("iqn.t:a"), None)
        );
        assert!(send_targets(&c, "iqn.good", "iqn.t:b", Some("iqn.t:a"), None).is_empty());
    }
}
