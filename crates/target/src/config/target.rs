//! `[[target]]`: target nodes — name (RFC 7143 §4.2.7), alias (TargetAlias, §13.6), the
//! portal groups they are reachable through (§4.4.1, reported by SendTargets, §13.8), the
//! initiators allowed to log in, CHAP credentials, and their logical units.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::auth::{self, AuthConfig};
use super::error::{Check, Invalid, KeyPath};
use super::lun::{self, Lun};
use super::name::IscsiName;

/// Longest TargetAlias accepted (RFC 7143 §13.6 allows up to 255 bytes of UTF-8).
pub const MAX_ALIAS_LEN: usize = 255;

/// One target node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The target's iSCSI name.
    pub name: IscsiName,
    /// A human-friendly alias sent as TargetAlias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Tags of the portal groups the target is reachable through; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portal_groups: Vec<u16>,
    /// Initiators allowed to log in: `"any"` or a list of initiator names. Default any.
    #[serde(default)]
    pub acl: Acl,
    /// CHAP settings. Default: no authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Logical units, written `[[target.lun]]`.
    #[serde(default, rename = "lun")]
    pub luns: Vec<Lun>,
}

impl Target {
    /// A target with no LUNs, open to any initiator, without authentication.
    pub fn new(name: IscsiName) -> Self {
        Self {
            name,
            alias: None,
            portal_groups: Vec::new(),
            acl: Acl::Any,
            auth: AuthConfig::default(),
            luns: Vec::new(),
        }
    }

    /// Whether the target is reachable through portal group `tag`.
    pub fn reachable_through(&self, tag: u16) -> bool {
        self.portal_groups.is_empty() || self.portal_groups.contains(&tag)
    }

    /// The LUN numbered `number`.
    pub fn lun(&self, number: u16) -> Option<&Lun> {
        self.luns.iter().find(|l| l.number == number)
    }
}

/// Which initiators may log in to a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Acl {
    /// Every initiator.
    #[default]
    Any,
    /// Only these initiator names.
    Only(Vec<IscsiName>),
}

impl Acl {
    /// Whether `initiator` (the InitiatorName it sent) may log in.
    pub fn allows(&self, initiator: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => names.iter().any(|n| n.matches(initiator)),
        }
    }
}

impl Serialize for Acl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Any => serializer.serialize_str("any"),
            Self::Only(names) => names.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Acl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AclVisitor;

        impl<'de> Visitor<'de> for AclVisitor {
            type Value = Acl;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"any\" or a list of initiator names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Acl, E> {
                if v == "any" {
                    Ok(Acl::Any)
                } else {
                    Err(E::custom(format!(
                        "{v:?} is neither \"any\" nor a list; write acl = [{v:?}] to allow one initiator"
                    )))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Acl, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<IscsiName>()? {
                    names.push(n);
                }
                Ok(Acl::Only(names))
            }
        }

        deserializer.deserialize_any(AclVisitor)
    }
}

/// Checks one target on its own; `base` is e.g. `target[0]`.
pub(crate) fn validate(
    t: &Target,
    portal_tags: &std::collections::BTreeSet<u16>,
    base: &KeyPath,
) -> Check {
    if let Some(alias) = &t.alias {
        if alias.len() > MAX_ALIAS_LEN || alias.chars().any(char::is_control) {
            return Err(Invalid::new(
                base.key("alias"),
                format!(
                    "must be at most {MAX_ALIAS_LEN} bytes without control characters (RFC 7143 §13.6)"
                ),
            ));
        }
    }
    for (i, tag) in t.portal_groups.iter().enumerate() {
        let key = base.key("portal_groups").index(i);
        if !portal_tags.contains(tag) {
            let known: Vec<String> = portal_tags.iter().map(u16::to_string).collect();
            return Err(Invalid::new(
                key,
                format!(
                    "no [[portal]] has group = {tag} (groups: {})",
                    known.join(", ")
                ),
            ));
        }
        if t.portal_groups[..i].contains(tag) {
            return Err(Invalid::new(key, format!("group {tag} is listed twice")));
        }
    }
    if let Acl::Only(names) = &t.acl {
        if names.is_empty() {
            return Err(Invalid::new(
                base.key("acl"),
                "is an empty list, so no initiator could log in; write acl = \"any\" or list initiators",
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].iter().any(|m| m.matches(n.as_str())) {
                return Err(Invalid::new(
                    base.key("acl").index(i),
                    format!("{n} is listed twice"),
                ));
            }
        }
    }
    auth::validate(&t.auth, &base.key("auth"))?;
    if t.luns.is_empty() {
        return Err(Invalid::new(
            base.clone(),
            format!("target {} has no LUNs: add a [[target.lun]]", t.name),
        ));
    }
    let mut numbers = BTreeMap::new();
    let mut serials = BTreeMap::new();
    for (i, l) in t.luns.iter().enumerate() {
        let here = base.key("lun").index(i);
        lun::validate(l, &here)?;
        if let Some(first) = numbers.insert(l.number, i) {
            return Err(Invalid::new(
                here.key("number"),
                format!("LUN {} is already defined at lun[{first}]", l.number),
            ));
        }
        if let Some(serial) = &l.serial {
            if let Some(first) = serials.insert(serial.as_str(), i) {
                return Err(Invalid::new(
                    here.key("serial"),
                    format!("serial {serial:?} is already used by lun[{first}]"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, ByteSize};

    fn name(s: &str) -> IscsiName {
        IscsiName::parse(s).unwrap()
    }

    #[test]
    fn acl_matching() {
        assert!(Acl::Any.allows("iqn.1993-08.org.debian:01:abc"));
        let acl = Acl::Only(vec![name("iqn.1993-08.org.debian:01:abc")]);
        assert!(acl.allows("iqn.1993-08.org.debian:01:abc"));
        assert!(acl.allows("iqn.1993-08.org.debian:01:ABC"));
        assert!(!acl.allows("iqn.1993-08.org.debian:01:abd"));
    }

    #[test]
    fn reachability() {
        let mut t = Target::new(name("iqn.2026-11.io.rtgt:t"));
        assert!(t.reachable_through(7));
        t.portal_groups = vec![2];
        assert!(t.reachable_through(2) && !t.reachable_through(1));
        t.luns.push(Lun::new(
            4,
            Backend::Null {
                size: ByteSize::mib(1),
            },
        ));
        assert!(t.lun(4).is_some() && t.lun(0).is_none());
    }
}
