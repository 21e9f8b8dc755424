//! `[target.auth]` and `[discovery.auth]`: CHAP credentials (RFC 7143 §12.1.3, RFC 1994).
//!
//! Users listed under `[[…auth.user]]` may log in (one-way CHAP: the target challenges, the
//! initiator answers with CHAP_N/CHAP_R). A `[…auth.mutual]` name and secret are what the
//! target answers with when the initiator challenges it back (mutual CHAP). RFC 7143 §9.2.1
//! asks for secrets of at least 96 bits (12 bytes) when the link is not otherwise protected
//! and forbids using a secret configured for initiator authentication to authenticate a
//! target; both are enforced here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{Check, Invalid, KeyPath};

/// Shortest secret accepted without `allow_short_secret` (RFC 7143 §9.2.1: 96 bits).
pub const MIN_SECRET_LEN: usize = 12;
/// Longest secret accepted; initiators such as open-iscsi store at most 256 bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Longest CHAP name (CHAP_N) accepted.
pub const MAX_CHAP_NAME_LEN: usize = 255;

/// CHAP settings for a target or for discovery sessions. No users means no authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Initiator credentials accepted (one-way CHAP). Written `[[target.auth.user]]`.
    #[serde(rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<ChapCredential>,
    /// The target's own credentials for mutual CHAP, if initiators may ask for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual: Option<ChapCredential>,
    /// CHAP_A algorithms accepted; the initiator's first supported choice wins.
    pub algorithms: Vec<ChapAlgorithm>,
    /// Accept secrets shorter than 12 bytes (only sensible on an otherwise protected link).
    pub allow_short_secret: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            mutual: None,
            algorithms: ChapAlgorithm::ALL.to_vec(),
            allow_short_secret: false,
        }
    }
}

impl AuthConfig {
    /// Whether logins must authenticate with CHAP.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// The secret of user `name` (CHAP_N), if that user may log in.
    pub fn secret_for(&self, name: &str) -> Option<&Secret> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .map(|u| &u.secret)
    }
}

/// A CHAP name and secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapCredential {
    /// The CHAP name (CHAP_N).
    pub name: String,
    /// The shared secret.
    pub secret: Secret,
}

/// A CHAP secret. Its `Debug` output hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret's bytes, as fed to the CHAP hash.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// A CHAP hash algorithm (the CHAP_A values of RFC 7143 §12.1.3 and the IANA PPP
/// authentication-algorithms registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChapAlgorithm {
    /// MD5 (CHAP_A=5), the one every initiator supports.
    #[serde(rename = "md5")]
    Md5,
    /// SHA-1 (CHAP_A=6).
    #[serde(rename = "sha1")]
    Sha1,
    /// SHA-256 (CHAP_A=7).
    #[serde(rename = "sha256")]
    Sha256,
    /// SHA3-256 (CHAP_A=8).
    #[serde(rename = "sha3-256")]
    Sha3_256,
}

impl ChapAlgorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Self; 4] = [Self::Sha3_256, Self::Sha256, Self::Sha1, Self::Md5];

    /// The CHAP_A value.
    pub const fn code(self) -> u8 {
        match self {
            Self::Md5 => 5,
            Self::Sha1 => 6,
            Self::Sha256 => 7,
            Self::Sha3_256 => 8,
        }
    }
}

/// Checks one auth table. `base` is e.g. `target[0].auth`.
pub(crate) fn validate(auth: &AuthConfig, base: &KeyPath) -> Check {
    let mut names = BTreeMap::new();
    for (i, user) in auth.users.iter().enumerate() {
        let here = base.key("user").index(i);
        check_credential(user, &here, auth.allow_short_secret)?;
        if let Some(first) = names.insert(user.name.as_str(), i) {
            return Err(Invalid::new(
                here.key("name"),
                format!("user {:?} is already defined at user[{first}]", user.name),
            ));
        }
    }
    if let Some(mutual) = &auth.mutual {
        let here = base.key("mutual");
        if auth.users.is_empty() {
            return Err(Invalid::new(
                here,
                "mutual CHAP needs at least one [[…auth.user]]: the initiator is authenticated first",
            ));
        }
        check_credential(mutual, &here, auth.allow_short_secret)?;
        if let Some(user) = auth.users.iter().find(|u| u.secret == mutual.secret) {
            return Err(Invalid::new(
                here.key("secret"),
                format!(
                    "is the same as user {:?}'s secret; RFC 7143 §9.2.1 forbids using one secret in both directions",
                    user.name
                ),
            ));
        }
    }
    if auth.algorithms.is_empty() {
        return Err(Invalid::new(
            base.key("algorithms"),
            "is empty: list at least one of \"sha3-256\", \"sha256\", \"sha1\", \"md5\"",
        ));
    }
    for (i, a) in auth.algorithms.iter().enumerate() {
        if auth.algorithms[..i].contains(a) {
            return Err(Invalid::new(
                base.key("algorithms").index(i),
                "is listed twice",
            ));
        }
    }
    Ok(())
}

fn check_credential(c: &ChapCredential, here: &KeyPath, allow_short: bool) -> Check {
    if c.name.is_empty() {
        return Err(Invalid::new(here.key("name"), "is empty"));
    }
    if c.name.len() > MAX_CHAP_NAME_LEN {
        return Err(Invalid::new(
            here.key("name"),
            format!("is {} bytes; at most {MAX_CHAP_NAME_LEN}", c.name.len()),
        ));
    }
    if c.name.chars().any(char::is_control) {
        return Err(Invalid::new(
            here.key("name"),
            "contains a control character",
        ));
    }
    let len = c.secret.len();
    if len == 0 {
        return Err(Invalid::new(here.key("secret"), "is empty"));
    }
    if len < MIN_SECRET_LEN && !allow_short {
        return Err(Invalid::new(
            here.key("secret"),
            format!(
                "is {len} bytes; RFC 7143 §9.2.1 asks for at least {MIN_SECRET_LEN} (set allow_short_secret = true to accept it anyway)"
            ),
        ));
    }
    if len > MAX_SECRET_LEN {
        return Err(Invalid::new(
            here.key("secret"),
            format!("is {len} bytes; at most {MAX_SECRET_LEN}"),
        ));
    }
    if c.secret.0.contains('\0') {
        return Err(Invalid::new(here.key("secret"), "contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(name: &str, secret: &str) -> ChapCredential {
        ChapCredential {
            name: name.into(),
            secret: Secret::new(secret),
        }
    }

    fn check(auth: &AuthConfig) -> Result<(), String> {
        validate(auth, &KeyPath::dotted("auth")).map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let c = cred("alice", "correct horse battery");
        assert_eq!(format!("{:?}", c.secret), "Secret(<21 bytes>)");
        assert!(!format!("{c:?}").contains("horse"));
    }

    #[test]
    fn default_is_open() {
        let a = AuthConfig::default();
        assert!(!a.required());
        assert!(check(&a).is_ok());
        assert_eq!(
            a.algorithms.iter().map(|a| a.code()).collect::<Vec<_>>(),
            [8, 7, 6, 5]
        );
    }

    #[test]
    fn credential_rules() {
        let mut a = AuthConfig {
            users: vec![cred("alice", "0123456789ab")],
            ..AuthConfig::default()
        };
        assert!(check(&a).is_ok());
        assert!(a.required());
        assert_eq!(
            a.secret_for("alice").map(Secret::as_bytes),
            Some(&b"0123456789ab"[..])
        );
        assert!(a.secret_for("bob").is_none());

        a.users.push(cred("bob", "short"));
        assert_eq!(
            check(&a),
            Err("auth.user[1].secret: is 5 bytes; RFC 7143 §9.2.1 asks for at least 12 (set allow_short_secret = true to accept it anyway)".into())
        );
        a.allow_short_secret = true;
        assert!(check(&a).is_ok());

        a.users.push(cred("alice", "another-secret"));
        assert_eq!(
            check(&a),
            Err("auth.user[2].name: user \"alice\" is already defined at user[0]".into())
        );
        a.users.pop();

        a.mutual = Some(cred("target", "0123456789ab"));
        assert_eq!(
            check(&a),
            Err("auth.mutual.secret: is the same as user \"alice\"'s secret; RFC 7143 §9.2.1 forbids using one secret in both directions".into())
        );
        a.mutual = Some(cred("target", "target-secret-1"));
        assert!(check(&a).is_ok());

        a.users.push(cred("", "0123456789abc"));
        assert_eq!(check(&a), Err("auth.user[2].name: is empty".into()));
        a.users.pop();
        a.users.push(cred("carol", &"x".repeat(300)));
        assert_eq!(
            check(&a),
            Err("auth.user[2].secret: is 300 bytes; at most 256".into())
        );
        a.users.pop();

        a.algorithms = vec![];
        assert_eq!(
            check(&a),
            Err("auth.algorithms: is empty: list at least one of \"sha3-256\", \"sha256\", \"sha1\", \"md5\"".into())
        );
        a.algorithms = vec![ChapAlgorithm::Md5, ChapAlgorithm::Md5];
        assert_eq!(check(&a), Err("auth.algorithms[1]: is listed twice".into()));
    }

    #[test]
    fn mutual_needs_users() {
        let a = AuthConfig {
            mutual: Some(cred("target", "target-secret-1")),
            ..AuthConfig::default()
        };
        assert_eq!(
            check(&a),
            Err("auth.mutual: mutual CHAP needs at least one [[…auth.user]]: the initiator is authenticated first".into())
        );
    }
}
