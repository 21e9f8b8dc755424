//! iSCSI node names as the configuration accepts them (RFC 7143 §4.2.7).
//!
//! Three formats exist (§4.2.7.3–§4.2.7.6): `iqn.` + a year-month date + a reversed domain
//! name + an optional `:`-separated part chosen by the naming authority; `eui.` + 16 hex
//! digits (an EUI-64); `naa.` + 16 or 32 hex digits (RFC 3980's T11 NAA format). Names are at
//! most 223 bytes (§4.2.7.1) and are compared after the stringprep profile of RFC 3722, which
//! lower-cases them; we ask for the lower-case form in the file rather than rewrite it, and
//! accept ASCII letters, digits, `-`, `.`, `:` and non-ASCII letters/digits (full nameprep
//! normalisation of non-ASCII text is not performed).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest iSCSI name in bytes (RFC 7143 §4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;

/// A validated iSCSI name (target or initiator).
///
/// ```
/// use rtgt_target::config::IscsiName;
///
/// let n: IscsiName = "iqn.2026-11.io.rtgt:default".parse()?;
/// assert_eq!(n.as_str(), "iqn.2026-11.io.rtgt:default");
/// assert!("eui.02004567A425678D".parse::<IscsiName>().is_ok());
/// assert!("naa.52004567BA64678D".parse::<IscsiName>().is_ok());
/// assert_eq!(
///     "iqn.26-11.io.rtgt".parse::<IscsiName>().unwrap_err().to_string(),
///     "\"iqn.26-11.io.rtgt\": an iqn. name starts with a year and month, iqn.YYYY-MM. (e.g. iqn.2026-11.com.example:disk1)",
/// );
/// # Ok::<(), rtgt_target::config::NameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IscsiName(String);

/// The three iSCSI name formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFormat {
    /// `iqn.` — iSCSI qualified name (§4.2.7.4).
    Iqn,
    /// `eui.` — IEEE EUI-64 (§4.2.7.5).
    Eui,
    /// `naa.` — T11 network address authority (§4.2.7.6).
    Naa,
}

/// Why a string is not an acceptable iSCSI name. Displays as `"<name>": <reason>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?}: {reason}")]
pub struct NameError {
    /// The rejected text.
    pub name: String,
    /// Why, in words an operator understands.
    pub reason: String,
}

impl IscsiName {
    /// Validates `text` as an iSCSI name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check(text).map_err(|reason| NameError {
            name: text.to_owned(),
            reason,
        })?;
        Ok(Self(text.to_owned()))
    }

    /// Wraps a name known to be valid (a constant checked by a test).
    pub(crate) fn new_unchecked(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which of the three formats this name uses.
    pub fn format(&self) -> NameFormat {
        if self.0.starts_with("eui.") {
            NameFormat::Eui
        } else if self.0.starts_with("naa.") {
            NameFormat::Naa
        } else {
            NameFormat::Iqn
        }
    }

    /// Whether `other` (as an initiator sent it) names the same node: iSCSI names compare
    /// case-insensitively (RFC 3722 lower-cases them; hex digits of `eui.`/`naa.` too).
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other) || (!other.is_ascii() && self.0 == other.to_lowercase())
    }
}

fn check(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("an iSCSI name cannot be empty".into());
    }
    if text.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long; iSCSI names are at most {MAX_NAME_LEN} bytes",
            text.len()
        ));
    }
    let lower = text.to_lowercase();
    if let Some(rest) = lower.strip_prefix("eui.") {
        if !text.starts_with("eui.") {
            return Err(format!(
                "the type prefix is lower case (try eui.{})",
                text.get(4..).unwrap_or_default()
            ));
        }
        return hex_digits(
            rest,
            &[16],
            "an eui. name is eui. followed by 16 hex digits",
        );
    }
    if let Some(rest) = lower.strip_prefix("naa.") {
        if !text.starts_with("naa.") {
            return Err(format!(
                "the type prefix is lower case (try naa.{})",
                text.get(4..).unwrap_or_default()
            ));
        }
        return hex_digits(
            rest,
            &[16, 32],
            "a naa. name is naa. followed by 16 or 32 hex digits",
        );
    }
    if !lower.starts_with("iqn.") {
        return Err("an iSCSI name starts with iqn., eui. or naa.".into());
    }
    let rest = text.strip_prefix("iqn.");
    if let Some(c) = text.chars().find(|c| c.is_uppercase()) {
        return Err(format!(
            "contains the upper-case {c:?}; iSCSI names are lower case (try {lower})"
        ));
    }
    if let Some(c) = text.chars().find(|&c| !name_char(c)) {
        return Err(format!(
            "contains {c:?}; iSCSI names use letters, digits, '-', '.' and ':'"
        ));
    }
    match rest {
        Some(rest) => check_iqn(rest),
        None => Err(format!("iSCSI names are lower case (try {lower})")),
    }
}

fn name_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-' | '.' | ':') || (!c.is_ascii() && c.is_alphanumeric())
}

fn hex_digits(rest: &str, lengths: &[usize], what: &str) -> Result<(), String> {
    if lengths.contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// Checks the part after `iqn.`: `YYYY-MM.reversed.domain[:anything]`.
fn check_iqn(rest: &str) -> Result<(), String> {
    const DATE: &str = "an iqn. name starts with a year and month, iqn.YYYY-MM. (e.g. iqn.2026-11.com.example:disk1)";
    let b = rest.as_bytes();
    let date_ok = b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'.';
    if !date_ok {
        return Err(DATE.into());
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} in the date is not 01-12"));
    }
    let after_date = &rest[8..];
    let authority = after_date.split(':').next().unwrap_or_default();
    let labels_ok = !authority.is_empty()
        && authority
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !labels_ok {
        return Err(format!(
            "{authority:?} after the date is not a reversed domain name (e.g. iqn.2026-11.com.example)"
        ));
    }
    // Anything (of the allowed characters) may follow the ':', but not nothing.
    if after_date.ends_with(':') {
        return Err("ends with ':'; put the unique part after it or drop the ':'".into());
    }
    Ok(())
}

impl FromStr for IscsiName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for IscsiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IscsiName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for IscsiName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IscsiName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::de::parse_str(deserializer, "an iSCSI name", |text| {
            Self::parse(text).map_err(|e| e.reason_with_name())
        })
    }
}

impl NameError {
    /// `"<name>" is not an iSCSI name: <reason>` — the form used in config errors.
    fn reason_with_name(&self) -> String {
        format!("{:?} is not a valid iSCSI name: {}", self.name, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        IscsiName::parse(s).unwrap_err().reason
    }

    #[test]
    fn accepts_the_three_formats() {
        for ok in [
            "iqn.2026-11.io.rtgt:default",
            "iqn.2026-11.io.rtgt",
            "iqn.1993-08.org.debian:01:a1b2c3d4e5f6",
            "iqn.1991-05.com.microsoft:host-01.corp.example.com",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567A425678D",
            "eui.02004567a425678d",
            "naa.52004567BA64678D",
            "naa.62004567BA64678D0123456789ABCDEF",
        ] {
            assert!(IscsiName::parse(ok).is_ok(), "{ok}");
        }
        let max = format!("iqn.2026-11.io.rtgt:{}", "a".repeat(MAX_NAME_LEN - 20));
        assert_eq!(max.len(), MAX_NAME_LEN);
        assert!(IscsiName::parse(&max).is_ok());
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(reason(""), "an iSCSI name cannot be empty");
        assert_eq!(
            reason("target1"),
            "an iSCSI name starts with iqn., eui. or naa."
        );
        assert_eq!(
            reason("iqn.2026-11.io.rtgt:Disk"),
            "contains the upper-case 'D'; iSCSI names are lower case (try iqn.2026-11.io.rtgt:disk)"
        );
        assert_eq!(
            reason("IQN.2026-11.io.rtgt:disk"),
            "contains the upper-case 'I'; iSCSI names are lower case (try iqn.2026-11.io.rtgt:disk)"
        );
        assert_eq!(
            reason("iqn.2026-11.io.rtgt:my_disk"),
            "contains '_'; iSCSI names use letters, digits, '-', '.' and ':'"
        );
        assert_eq!(
            reason("iqn.2026-11.io.rtgt:my disk"),
            "contains ' '; iSCSI names use letters, digits, '-', '.' and ':'"
        );
        assert!(reason("iqn.2026-1.io.rtgt").starts_with("an iqn. name starts with a year"));
        assert!(reason("iqn.2026-11").starts_with("an iqn. name starts with a year"));
        assert_eq!(
            reason("iqn.2026-13.io.rtgt"),
            "month 13 in the date is not 01-12"
        );
        assert_eq!(
            reason("iqn.2026-00.io.rtgt"),
            "month 00 in the date is not 01-12"
        );
        assert_eq!(
            reason("iqn.2026-11.:disk"),
            "\"\" after the date is not a reversed domain name (e.g. iqn.2026-11.com.example)"
        );
        assert_eq!(
            reason("iqn.2026-11.io..rtgt"),
            "\"io..rtgt\" after the date is not a reversed domain name (e.g. iqn.2026-11.com.example)"
        );
        assert_eq!(
            reason("iqn.2026-11.io.rtgt:"),
            "ends with ':'; put the unique part after it or drop the ':'"
        );
        assert_eq!(
            reason("eui.0200"),
            "an eui. name is eui. followed by 16 hex digits"
        );
        assert_eq!(
            reason("eui.02004567A425678G"),
            "an eui. name is eui. followed by 16 hex digits"
        );
        assert_eq!(
            reason("EUI.02004567A425678D"),
            "the type prefix is lower case (try eui.02004567A425678D)"
        );
        assert_eq!(
            reason("naa.5200456"),
            "a naa. name is naa. followed by 16 or 32 hex digits"
        );
        let long = format!("iqn.2026-11.io.rtgt:{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(
            reason(&long),
            format!(
                "is {} bytes long; iSCSI names are at most 223 bytes",
                long.len()
            )
        );
    }

    #[test]
    fn matching_ignores_case() {
        let n = IscsiName::parse("eui.02004567a425678d").unwrap();
        assert!(n.matches("eui.02004567A425678D"));
        let n = IscsiName::parse("iqn.1991-05.com.microsoft:host").unwrap();
        assert!(n.matches("iqn.1991-05.com.microsoft:HOST"));
        assert!(!n.matches("iqn.1991-05.com.microsoft:host2"));
        assert_eq!(n.format(), NameFormat::Iqn);
    }
}
