//! Value encodings of text keys (RFC 7143 §6.1): decimal, hex (`0x`) and
//! base64 (`0b`) constants for numerical and binary values, `Yes`/`No`
//! booleans, comma-separated lists, numeric ranges, and the special answers
//! `Irrelevant`, `NotUnderstood` and `Reject` (§6.2).

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// Answer for a key the acceptor considers irrelevant to the negotiation.
pub const IRRELEVANT: &str = "Irrelevant";
/// Answer for a key the acceptor does not understand.
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
/// Answer refusing an offered value.
pub const REJECT: &str = "Reject";

/// The special values of §6.2 that replace a key's value in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `Irrelevant`.
    Irrelevant,
    /// `NotUnderstood`.
    NotUnderstood,
    /// `Reject`.
    Reject,
}

impl Special {
    /// Recognises a special value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            IRRELEVANT => Some(Self::Irrelevant),
            NOT_UNDERSTOOD => Some(Self::NotUnderstood),
            REJECT => Some(Self::Reject),
            _ => None,
        }
    }

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Irrelevant => IRRELEVANT,
            Self::NotUnderstood => NOT_UNDERSTOOD,
            Self::Reject => REJECT,
        }
    }
}

/// A value does not follow its type's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Empty where a value is required.
    #[error("empty value")]
    Empty,
    /// Not a decimal, `0x` or `0b` constant.
    #[error("not a number")]
    NotANumber,
    /// A number of 2^64 or more (use a large-binary-value).
    #[error("number does not fit 64 bits")]
    Overflow,
    /// Bad hex digits after `0x`.
    #[error("invalid hex constant")]
    InvalidHex,
    /// Bad base64 after `0b`.
    #[error("invalid base64 constant")]
    InvalidBase64,
    /// A binary value without a `0x` or `0b` prefix.
    #[error("binary value needs a 0x or 0b prefix")]
    MissingPrefix,
    /// Not `Yes` or `No`.
    #[error("not a boolean (Yes/No)")]
    NotABoolean,
    /// Not `low~high` with low ≤ high.
    #[error("not a numeric range")]
    NotARange,
}

/// Standard alphabet, padding optional on input.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn hex_digits(s: &str) -> Result<Vec<u8>, ValueError> {
    if s.is_empty() {
        return Err(ValueError::InvalidHex);
    }
    let digits = s.as_bytes();
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let nibble = |b: u8| -> Result<u8, ValueError> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(ValueError::InvalidHex),
        }
    };
    // An odd number of digits has an implicit leading zero nibble.
    let (head, tail) = digits.split_at(digits.len() % 2);
    if let Some(&h) = head.first() {
        out.push(nibble(h)?);
    }
    for pair in tail.chunks_exact(2) {
        out.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
    }
    Ok(out)
}

/// Decodes a binary value given as a `0x`/`0X` hex or `0b`/`0B` base64 constant.
///
/// ```
/// use rtgt_pdu::text::value::parse_binary;
///
/// assert_eq!(parse_binary("0x0a0B"), Ok(vec![0x0a, 0x0b]));
/// assert_eq!(parse_binary("0bAAEC"), Ok(vec![0, 1, 2]));
/// ```
pub fn parse_binary(s: &str) -> Result<Vec<u8>, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    match s.as_bytes() {
        [b'0', b'x' | b'X', ..] => hex_digits(s.get(2..).unwrap_or("")),
        [b'0', b'b' | b'B', ..] => {
            let body = s.get(2..).unwrap_or("");
            if body.is_empty() {
                return Err(ValueError::InvalidBase64);
            }
            BASE64.decode(body).map_err(|_| ValueError::InvalidBase64)
        }
        _ => Err(ValueError::MissingPrefix),
    }
}

/// Decodes a numerical value below 2^64 in decimal, hex or base64.
///
/// ```
/// use rtgt_pdu::text::value::parse_number;
///
/// assert_eq!(parse_number("262144"), Ok(262144));
/// assert_eq!(parse_number("0x40000"), Ok(262144));
/// assert_eq!(parse_number("0bBAAA"), Ok(262144));
/// ```
pub fn parse_number(s: &str) -> Result<u64, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    match s.as_bytes() {
        [b'0', b'x' | b'X' | b'b' | b'B', ..] => {
            let bytes = parse_binary(s)?;
            let significant = bytes
                .iter()
                .position(|&b| b != 0)
                .map_or(&[][..], |i| &bytes[i..]);
            if significant.len() > 8 {
                return Err(ValueError::Overflow);
            }
            Ok(significant
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        }
        digits if digits.iter().all(u8::is_ascii_digit) => {
            s.parse::<u64>().map_err(|_| ValueError::Overflow)
        }
        _ => Err(ValueError::NotANumber),
    }
}

/// Parses `low~high` (a numeric-range, §6.1).
pub fn parse_range(s: &str) -> Result<(u64, u64), ValueError> {
    let (lo, hi) = s.split_once('~').ok_or(ValueError::NotARange)?;
    let (lo, hi) = (parse_number(lo)?, parse_number(hi)?);
    if lo > hi {
        return Err(ValueError::NotARange);
    }
    Ok((lo, hi))
}

/// Parses `Yes` or `No`.
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(ValueError::NotABoolean),
    }
}

/// `Yes` or `No`.
pub const fn format_bool(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Encodes bytes as a `0x` hex constant (lower case).
pub fn encode_hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Encodes bytes as a `0b` base64 constant (padded).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut s = String::from("0b");
    general_purpose::STANDARD.encode_string(bytes, &mut s);
    s
}

/// The items of a list-of-values (comma separated, §6.1).
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_every_encoding() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_number("18446744073709551616"),
            Err(ValueError::Overflow)
        );
        assert_eq!(parse_number("0XfF"), Ok(255));
        assert_eq!(parse_number("0x000000000000000000001"), Ok(1));
        assert_eq!(
            parse_number("0x1ffffffffffffffff"),
            Err(ValueError::Overflow)
        );
        assert_eq!(parse_number("0B/w=="), Ok(255));
        assert_eq!(parse_number("0b/w"), Ok(255));
        assert_eq!(parse_number(""), Err(ValueError::Empty));
        assert_eq!(parse_number("12a"), Err(ValueError::NotANumber));
        assert_eq!(parse_number("-1"), Err(ValueError::NotANumber));
        assert_eq!(parse_number("0x"), Err(ValueError::InvalidHex));
        assert_eq!(parse_number("0xg1"), Err(ValueError::InvalidHex));
        assert_eq!(parse_number("0b!!"), Err(ValueError::InvalidBase64));
    }

    #[test]
    fn binary_values_round_trip() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        assert_eq!(parse_binary(&encode_hex(&bytes)), Ok(bytes.clone()));
        assert_eq!(parse_binary(&encode_base64(&bytes)), Ok(bytes));
        assert_eq!(parse_binary("0x123"), Ok(vec![0x01, 0x23]));
        assert_eq!(parse_binary("123"), Err(ValueError::MissingPrefix));
        assert_eq!(parse_binary("0b"), Err(ValueError::InvalidBase64));
    }

    #[test]
    fn booleans_lists_ranges_specials() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("no"), Err(ValueError::NotABoolean));
        assert_eq!(format_bool(false), "No");
        assert_eq!(
            split_list("CRC32C,None").collect::<Vec<_>>(),
            ["CRC32C", "None"]
        );
        assert_eq!(parse_range("512~0x1000"), Ok((512, 4096)));
        assert_eq!(parse_range("9~1"), Err(ValueError::NotARange));
        assert_eq!(Special::parse("Reject"), Some(Special::Reject));
        assert_eq!(Special::parse("reject"), None);
        assert_eq!(Special::NotUnderstood.as_str(), "NotUnderstood");
    }
}
