//! Human-readable sizes (`1GiB`, `512MiB`, `4096`, `1G`) and durations (`5s`, `500ms`).
//!
//! Sizes feed the RFC 7143 §13 byte-count keys (MaxRecvDataSegmentLength §13.12,
//! MaxBurstLength §13.13, FirstBurstLength §13.14) and backend capacities; durations feed
//! DefaultTime2Wait/Retain (§13.15, §13.16) and the NOP-In ping of §11.19. Both are written
//! as a whole number followed by a unit, with no space in between.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written in a config file as an integer (`4096`) or a string with a
/// unit (`"512MiB"`, `"1GiB"`, `"1G"`).
///
/// Units are case-insensitive. `K`, `M`, `G`, `T`, `P` and their `KiB`… spellings are powers
/// of 1024; `KB`, `MB`, `GB`, `TB`, `PB` are powers of 1000; `B` or no unit means bytes.
///
/// ```
/// use rtgt_target::config::ByteSize;
///
/// assert_eq!("1GiB".parse::<ByteSize>()?.bytes(), 1 << 30);
/// assert_eq!("1G".parse::<ByteSize>()?.bytes(), 1 << 30);
/// assert_eq!("2MB".parse::<ByteSize>()?.bytes(), 2_000_000);
/// assert_eq!(ByteSize::new(512 << 20).to_string(), "512MiB");
/// let err = "1 GiB".parse::<ByteSize>().unwrap_err();
/// assert_eq!(err.to_string(), "\"1 GiB\" is not a size (try 1GiB)");
/// # Ok::<(), rtgt_target::config::UnitError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// A length of time, written in a config file as a string with a unit: `"500ms"`, `"5s"`,
/// `"2m"` (minutes), `"1h"`. Zero may be written as `0` or `"0"`.
///
/// ```
/// use std::time::Duration;
/// use rtgt_target::config::HumanDuration;
///
/// assert_eq!("500ms".parse::<HumanDuration>()?.get(), Duration::from_millis(500));
/// assert_eq!("2m".parse::<HumanDuration>()?.get(), Duration::from_secs(120));
/// assert_eq!(HumanDuration::from_secs(20).to_string(), "20s");
/// assert!("5".parse::<HumanDuration>().is_err());
/// # Ok::<(), rtgt_target::config::UnitError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

/// Why a size or duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Not a size at all; `hint` is a corrected spelling when one is obvious.
    #[error("{text:?} is not a size ({})", hint_or(.hint.as_ref(), SIZE_FORMS))]
    NotASize {
        /// What was written.
        text: String,
        /// A spelling that would have worked, if there is an obvious one.
        hint: Option<String>,
    },
    /// A size with a unit we do not know.
    #[error("{text:?} has an unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)")]
    UnknownSizeUnit {
        /// What was written.
        text: String,
        /// The unit part.
        unit: String,
    },
    /// A size that does not fit in 64 bits.
    #[error("{text:?} is too large")]
    SizeTooLarge {
        /// What was written.
        text: String,
    },
    /// A negative integer where a size was expected.
    #[error("{value} is not a size (sizes cannot be negative)")]
    NegativeSize {
        /// The integer.
        value: i64,
    },
    /// Not a duration at all.
    #[error("{text:?} is not a duration ({})", hint_or(.hint.as_ref(), DURATION_FORMS))]
    NotADuration {
        /// What was written.
        text: String,
        /// A spelling that would have worked, if there is an obvious one.
        hint: Option<String>,
    },
    /// A bare number where a duration was expected.
    #[error("{value} is not a duration: add a unit, e.g. \"{value}s\" or \"{value}ms\"")]
    BareNumber {
        /// The number.
        value: i64,
    },
    /// A duration with a unit we do not know.
    #[error("{text:?} has an unknown unit {unit:?} (use ms, s, m or h)")]
    UnknownDurationUnit {
        /// What was written.
        text: String,
        /// The unit part.
        unit: String,
    },
    /// A duration too long to represent.
    #[error("{text:?} is too long")]
    DurationTooLong {
        /// What was written.
        text: String,
    },
}

const SIZE_FORMS: &str =
    "sizes are whole numbers with an optional unit: 4096, 64KiB, 512MiB, 1GiB, 1G";
const DURATION_FORMS: &str = "durations are whole numbers with a unit: 500ms, 5s, 2m, 1h";

fn hint_or(hint: Option<&String>, forms: &str) -> String {
    match hint {
        Some(h) => format!("try {h}"),
        None => forms.to_owned(),
    }
}

/// Splits `"512MiB"` into `(512, "MiB")`; `None` when there is no leading digit run.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    Some(text.split_at(digits))
}

fn size_multiplier(unit: &str) -> Option<u64> {
    const KI: u64 = 1024;
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KI,
        "m" | "mib" => KI.pow(2),
        "g" | "gib" => KI.pow(3),
        "t" | "tib" => KI.pow(4),
        "p" | "pib" => KI.pow(5),
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "pb" => 1000u64.pow(5),
        _ => return None,
    };
    Some(m)
}

impl ByteSize {
    /// `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        Self(n << 10)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        Self(n << 30)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The number of bytes as a `u32`, saturating at `u32::MAX`. Every size the validator
    /// accepts for an RFC 7143 key (at most 2^24 - 1) fits.
    pub fn as_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// Parses the textual form (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let not_a_size = |hint| UnitError::NotASize {
            text: text.to_owned(),
            hint,
        };
        if text.chars().any(char::is_whitespace) {
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let hint = Self::parse(&squeezed).ok().map(|_| squeezed);
            return Err(not_a_size(hint));
        }
        let Some((number, unit)) = split_number(text) else {
            return Err(not_a_size(None));
        };
        if unit.starts_with(['.', ',']) {
            return Err(not_a_size(None));
        }
        let Some(multiplier) = size_multiplier(unit) else {
            return Err(UnitError::UnknownSizeUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        };
        let too_large = || UnitError::SizeTooLarge {
            text: text.to_owned(),
        };
        let n: u64 = number.parse().map_err(|_| too_large())?;
        n.checked_mul(multiplier).map(Self).ok_or_else(too_large)
    }

    /// The largest binary unit that divides the size exactly, as (count, suffix).
    fn exact_unit(self) -> Option<(u64, &'static str)> {
        const UNITS: [(u32, &str); 5] = [
            (50, "PiB"),
            (40, "TiB"),
            (30, "GiB"),
            (20, "MiB"),
            (10, "KiB"),
        ];
        if self.0 == 0 {
            return None;
        }
        UNITS
            .iter()
            .find(|(shift, _)| self.0.trailing_zeros() >= *shift)
            .map(|&(shift, suffix)| (self.0 >> shift, suffix))
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.exact_unit() {
            Some((n, suffix)) => write!(f, "{n}{suffix}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.exact_unit(), i64::try_from(self.0)) {
            (None, Ok(n)) => serializer.serialize_i64(n),
            _ => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 4096, \"512MiB\" or \"1GiB\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(UnitError::NegativeSize { value: v }))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

fn duration_unit_ms(unit: &str) -> Option<u64> {
    Some(match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    })
}

impl HumanDuration {
    /// Wraps a `Duration`.
    pub const fn new(d: Duration) -> Self {
        Self(d)
    }

    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses the textual form (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let not_a_duration = |hint| UnitError::NotADuration {
            text: text.to_owned(),
            hint,
        };
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if text.chars().any(char::is_whitespace) {
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let hint = Self::parse(&squeezed).ok().map(|_| squeezed);
            return Err(not_a_duration(hint));
        }
        let Some((number, unit)) = split_number(text) else {
            return Err(not_a_duration(None));
        };
        if unit.is_empty() {
            return Err(not_a_duration(Some(format!("{number}s or {number}ms"))));
        }
        if unit.starts_with(['.', ',']) {
            return Err(not_a_duration(None));
        }
        let Some(ms_per_unit) = duration_unit_ms(unit) else {
            return Err(UnitError::UnknownDurationUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        };
        let too_long = || UnitError::DurationTooLong {
            text: text.to_owned(),
        };
        let n: u64 = number.parse().map_err(|_| too_long())?;
        let ms = n.checked_mul(ms_per_unit).ok_or_else(too_long)?;
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            f.write_str("0")
        } else if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\" or \"5s\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                if v == 0 {
                    Ok(HumanDuration(Duration::ZERO))
                } else {
                    Err(E::custom(UnitError::BareNumber { value: v }))
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, String> {
        ByteSize::parse(s)
            .map(ByteSize::bytes)
            .map_err(|e| e.to_string())
    }

    fn dur(s: &str) -> Result<Duration, String> {
        HumanDuration::parse(s)
            .map(HumanDuration::get)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("4096B"), Ok(4096));
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size("64k"), Ok(65536));
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("1gib"), Ok(1 << 30));
        assert_eq!(size("2TiB"), Ok(2 << 40));
        assert_eq!(size("1PiB"), Ok(1 << 50));
        assert_eq!(size("1KB"), Ok(1000));
        assert_eq!(size("3GB"), Ok(3_000_000_000));
        assert_eq!(size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert_eq!(
            size("1 GiB").unwrap_err(),
            "\"1 GiB\" is not a size (try 1GiB)"
        );
        assert_eq!(
            size("1.5GiB").unwrap_err(),
            "\"1.5GiB\" is not a size (sizes are whole numbers with an optional unit: 4096, 64KiB, 512MiB, 1GiB, 1G)"
        );
        assert_eq!(
            size("GiB").unwrap_err(),
            "\"GiB\" is not a size (sizes are whole numbers with an optional unit: 4096, 64KiB, 512MiB, 1GiB, 1G)"
        );
        assert_eq!(
            size("12XB").unwrap_err(),
            "\"12XB\" has an unknown unit \"XB\" (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
        );
        assert_eq!(size("20000PiB").unwrap_err(), "\"20000PiB\" is too large");
        assert_eq!(
            size("99999999999999999999999").unwrap_err(),
            "\"99999999999999999999999\" is too large"
        );
        assert!(size("").unwrap_err().contains("is not a size"));
        assert!(size("-1").unwrap_err().contains("is not a size"));
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize::new(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize::new(1536 << 20).to_string(), "1536MiB");
        assert_eq!(ByteSize::new(4096).to_string(), "4KiB");
        assert_eq!(ByteSize::new(1000).to_string(), "1000");
        assert_eq!(ByteSize::new(0).to_string(), "0");
        for n in [0u64, 1, 512, 1000, 4096, 1 << 30, 3_000_000_000, u64::MAX] {
            let s = ByteSize::new(n);
            assert_eq!(ByteSize::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn durations_in_every_spelling() {
        assert_eq!(dur("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(dur("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(dur("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(dur("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(dur("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(dur("0"), Ok(Duration::ZERO));
        assert_eq!(dur("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(
            dur("5").unwrap_err(),
            "\"5\" is not a duration (try 5s or 5ms)"
        );
        assert_eq!(
            dur("5 s").unwrap_err(),
            "\"5 s\" is not a duration (try 5s)"
        );
        assert_eq!(
            dur("1.5s").unwrap_err(),
            "\"1.5s\" is not a duration (durations are whole numbers with a unit: 500ms, 5s, 2m, 1h)"
        );
        assert_eq!(
            dur("5sec").unwrap_err(),
            "\"5sec\" has an unknown unit \"sec\" (use ms, s, m or h)"
        );
        assert_eq!(
            dur("99999999999999999999h").unwrap_err(),
            "\"99999999999999999999h\" is too long"
        );
    }

    #[test]
    fn durations_print_back() {
        for text in ["0", "500ms", "1500ms", "5s", "120s"] {
            assert_eq!(HumanDuration::parse(text).unwrap().to_string(), text);
        }
    }
}
