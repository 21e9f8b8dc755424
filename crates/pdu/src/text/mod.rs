//! Text data segments of Login and Text PDUs (RFC 7143 §6.1): a list of
//! `key=value` pairs, each followed by one NUL byte.
//!
//! * [`parse_pairs`] parses a complete (reassembled) segment with `nom`,
//!   checking key names (§6.1: at most 63 bytes of letters, digits and
//!   `. - + @ _`, plus `#` for `X#` keys) and value lengths (255 bytes, or
//!   8192 for the large binary values of CHAP/SRP/Kerberos and for
//!   private `X-`/`X#` keys); values must be UTF-8.
//! * [`parse_unique`] additionally refuses a key that appears twice (§6.2:
//!   a key may not be negotiated twice; SendTargets answers, which repeat
//!   TargetName/TargetAddress, use [`parse_pairs`]).
//! * [`assembly`] reassembles segments split with the C bit and splits
//!   outgoing text by the peer's MaxRecvDataSegmentLength (§6.2, §11.10.2).
//! * [`value`] encodes and decodes the value grammar: decimal, `0x` hex and
//!   `0b` base64 numbers and binary values, booleans, lists, and the special
//!   answers `Irrelevant`, `NotUnderstood` and `Reject`.
//!
//! Stray NUL bytes between pairs (empty pairs) are skipped: some initiators
//! pad text segments with them, and they carry no key.

pub mod assembly;
pub mod value;

use nom::IResult;
use nom::bytes::complete::take_till;

pub use assembly::{TextAssembler, split_segments};
pub use value::ValueError;

/// Longest key name (RFC 7143 §6.1).
pub const MAX_KEY_LEN: usize = 63;
/// Longest value unless the key allows more (RFC 7143 §6.1).
pub const MAX_VALUE_LEN: usize = 255;
/// Longest value of a key that carries a large binary value (CHAP_C, CHAP_R,
/// SRP and Kerberos keys, §12) or of a private extension key.
pub const MAX_LARGE_VALUE_LEN: usize = 8192;

/// Keys whose values are large-binary-values (RFC 7143 §12).
const LARGE_VALUE_KEYS: [&str; 9] = [
    "CHAP_C",
    "CHAP_R",
    "SRP_s",
    "SRP_A",
    "SRP_B",
    "SRP_M",
    "SRP_HM",
    "KRB_AP_REQ",
    "KRB_AP_REP",
];

/// The longest value `key` may carry.
pub fn max_value_len(key: &str) -> usize {
    if LARGE_VALUE_KEYS.contains(&key) || key.starts_with("X-") || key.starts_with("X#") {
        MAX_LARGE_VALUE_LEN
    } else {
        MAX_VALUE_LEN
    }
}

/// Malformed text data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A pair has no `=` before its terminating NUL.
    #[error("text pair at byte {offset} has no '='")]
    MissingEquals {
        /// Offset of the pair in the segment.
        offset: usize,
    },
    /// The last pair is not NUL-terminated.
    #[error("text pair at byte {offset} is not NUL-terminated")]
    Unterminated {
        /// Offset of the pair in the segment.
        offset: usize,
    },
    /// A key name is empty, too long or has characters outside §6.1's set.
    #[error("invalid key name {key:?}")]
    InvalidKeyName {
        /// The key as received (lossily decoded, truncated to 80 bytes).
        key: String,
    },
    /// A key or value is not valid UTF-8.
    #[error("text pair at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Offset of the pair in the segment.
        offset: usize,
    },
    /// A value exceeds the length its key allows.
    #[error("value of {key} is {len} bytes, more than {max}")]
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length.
        len: usize,
        /// The key's limit.
        max: usize,
    },
    /// A key appears more than once.
    #[error("key {0} appears more than once")]
    DuplicateKey(String),
    /// Reassembled text exceeds the assembler's limit.
    #[error("text of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Bytes received so far.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A `key=value` pair borrowed from a text segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPair<'a> {
    /// Key name.
    pub key: &'a str,
    /// Value (not decoded).
    pub value: &'a str,
}

/// An owned `key=value` pair, as produced by negotiation answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// Key name.
    pub key: String,
    /// Value.
    pub value: String,
}

impl KeyValue {
    /// A pair from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Borrows as a [`TextPair`].
    pub fn as_pair(&self) -> TextPair<'_> {
        TextPair {
            key: &self.key,
            value: &self.value,
        }
    }
}

impl From<TextPair<'_>> for KeyValue {
    fn from(p: TextPair<'_>) -> Self {
        Self::new(p.key, p.value)
    }
}

/// Whether `key` is a syntactically valid key name (RFC 7143 §6.1).
pub fn is_valid_key_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+@_#".contains(&b))
}

/// Key bytes and, if there was an `=`, value bytes.
type RawPair<'a> = (&'a [u8], Option<&'a [u8]>);

/// `key` bytes, `=`, `value` bytes; the NUL is left in the input.
fn raw_pair(input: &[u8]) -> IResult<&[u8], RawPair<'_>> {
    let (rest, pair) = take_till(|b| b == 0)(input)?;
    Ok((
        rest,
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], pair.get(eq + 1..)),
            None => (pair, None),
        },
    ))
}

/// Parses a complete text segment into pairs, in order, duplicates kept.
///
/// ```
/// use rtgt_pdu::text::{parse_pairs, TextPair};
///
/// let pairs = parse_pairs(b"InitiatorName=iqn.2004-10.com.example:h1\0SessionType=Normal\0")?;
/// assert_eq!(pairs[1], TextPair { key: "SessionType", value: "Normal" });
/// # Ok::<(), rtgt_pdu::text::TextError>(())
/// ```
pub fn parse_pairs(data: &[u8]) -> Result<Vec<TextPair<'_>>, TextError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        if let Some(after) = rest.strip_prefix(b"\0") {
            rest = after;
            continue;
        }
        // take_till on complete input cannot fail.
        let Ok((after, (key, value))) = raw_pair(rest) else {
            return Err(TextError::Unterminated { offset });
        };
        let Some(after) = after.strip_prefix(b"\0") else {
            return Err(TextError::Unterminated { offset });
        };
        let value = value.ok_or(TextError::MissingEquals { offset })?;
        let key = core::str::from_utf8(key).map_err(|_| TextError::NotUtf8 { offset })?;
        if !is_valid_key_name(key) {
            return Err(TextError::InvalidKeyName {
                key: key.chars().take(80).collect(),
            });
        }
        let value = core::str::from_utf8(value).map_err(|_| TextError::NotUtf8 { offset })?;
        let max = max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_owned(),
                len: value.len(),
                max,
            });
        }
        out.push(TextPair { key, value });
        rest = after;
    }
    Ok(out)
}

/// [`parse_pairs`] refusing any key that appears twice.
pub fn parse_unique(data: &[u8]) -> Result<Vec<TextPair<'_>>, TextError> {
    let pairs = parse_pairs(data)?;
    for (i, p) in pairs.iter().enumerate() {
        if pairs.iter().take(i).any(|q| q.key == p.key) {
            return Err(TextError::DuplicateKey(p.key.to_owned()));
        }
    }
    Ok(pairs)
}

/// Appends `key=value\0` to `out`.
pub fn encode_pair(key: &str, value: &str, out: &mut Vec<u8>) {
    out.reserve(key.len() + value.len() + 2);
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// Encodes a list of pairs into a text segment.
///
/// ```
/// use rtgt_pdu::text::{encode_pairs, KeyValue};
///
/// let seg = encode_pairs(&[KeyValue::new("HeaderDigest", "None"), KeyValue::new("MaxConnections", "1")]);
/// assert_eq!(seg, b"HeaderDigest=None\0MaxConnections=1\0");
/// ```
pub fn encode_pairs(pairs: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pairs {
        encode_pair(&p.key, &p.value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_in_order() {
        let p = parse_pairs(b"A=1\0B=\0C=x=y\0").unwrap();
        assert_eq!(
            p,
            [
                TextPair {
                    key: "A",
                    value: "1"
                },
                TextPair {
                    key: "B",
                    value: ""
                },
                TextPair {
                    key: "C",
                    value: "x=y"
                },
            ]
        );
        assert!(parse_pairs(b"").unwrap().is_empty());
    }

    #[test]
    fn skips_stray_nuls() {
        let p = parse_pairs(b"\0A=1\0\0\0").unwrap();
        assert_eq!(
            p,
            [TextPair {
                key: "A",
                value: "1"
            }]
        );
    }

    #[test]
    fn reports_malformed_pairs_with_offsets() {
        assert_eq!(
            parse_pairs(b"A=1\0B=2"),
            Err(TextError::Unterminated { offset: 4 })
        );
        assert_eq!(
            parse_pairs(b"A=1\0B\0"),
            Err(TextError::MissingEquals { offset: 4 })
        );
        assert_eq!(
            parse_pairs(b"=1\0"),
            Err(TextError::InvalidKeyName { key: String::new() })
        );
        assert_eq!(
            parse_pairs(b"A B=1\0"),
            Err(TextError::InvalidKeyName { key: "A B".into() })
        );
        assert_eq!(
            parse_pairs(b"A=\xff\0"),
            Err(TextError::NotUtf8 { offset: 0 })
        );
    }

    #[test]
    fn key_names_are_limited_to_63_bytes() {
        let ok = format!("{}=1\0", "K".repeat(63));
        assert!(parse_pairs(ok.as_bytes()).is_ok());
        let long = format!("{}=1\0", "K".repeat(64));
        assert!(matches!(
            parse_pairs(long.as_bytes()),
            Err(TextError::InvalidKeyName { .. })
        ));
    }

    #[test]
    fn value_limits_depend_on_the_key() {
        let v255 = format!("TargetAlias={}\0", "a".repeat(255));
        assert!(parse_pairs(v255.as_bytes()).is_ok());
        let v256 = format!("TargetAlias={}\0", "a".repeat(256));
        assert_eq!(
            parse_pairs(v256.as_bytes()),
            Err(TextError::ValueTooLong {
                key: "TargetAlias".into(),
                len: 256,
                max: 255
            })
        );
        let chap = format!("CHAP_C=0x{}\0", "ab".repeat(4095));
        assert!(parse_pairs(chap.as_bytes()).is_ok());
        let chap = format!("CHAP_C=0x{}\0", "ab".repeat(4096));
        assert!(matches!(
            parse_pairs(chap.as_bytes()),
            Err(TextError::ValueTooLong { max: 8192, .. })
        ));
    }

    #[test]
    fn duplicates_are_detected_on_request() {
        let data = b"TargetName=a\0TargetAddress=b\0TargetName=c\0";
        assert_eq!(parse_pairs(data).unwrap().len(), 3);
        assert_eq!(
            parse_unique(data),
            Err(TextError::DuplicateKey("TargetName".into()))
        );
    }

    #[test]
    fn encode_then_parse() {
        let pairs = vec![
            KeyValue::new("X-com.example.k", "v"),
            KeyValue::new("InitialR2T", "Yes"),
        ];
        let seg = encode_pairs(&pairs);
        let back: Vec<KeyValue> = parse_unique(&seg)
            .unwrap()
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(back, pairs);
    }
}
