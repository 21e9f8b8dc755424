//! `[session]`: the operational values the target offers at login (RFC 7143 §13), plus the
//! target-side NOP-In ping (§11.19) and the per-session command window.
//!
//! Every value is range-checked against the clause that defines its key: digests §13.1,
//! MaxConnections §13.2, InitialR2T §13.10, ImmediateData §13.11,
//! MaxRecvDataSegmentLength §13.12, MaxBurstLength §13.13, FirstBurstLength §13.14 (which
//! must not exceed MaxBurstLength), DefaultTime2Wait §13.15, DefaultTime2Retain §13.16,
//! MaxOutstandingR2T §13.17, ErrorRecoveryLevel §13.20.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Capabilities;
use super::error::{Check, Invalid, KeyPath};
use super::units::{ByteSize, HumanDuration};

/// Smallest legal data-segment/burst length (RFC 7143 §13.12–§13.14).
pub const MIN_DATA_LEN: u64 = 512;
/// Largest legal data-segment/burst length: 2^24 - 1 (RFC 7143 §13.12–§13.14).
pub const MAX_DATA_LEN: u64 = (1 << 24) - 1;
/// Largest DefaultTime2Wait/Retain in seconds (RFC 7143 §13.15, §13.16).
pub const MAX_TIME2: u64 = 3600;
/// Largest per-session command queue depth accepted.
pub const MAX_QUEUE_DEPTH: u32 = 16384;

/// A digest choice (RFC 7143 §13.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Digest {
    /// No digest.
    #[serde(rename = "none", alias = "None")]
    None,
    /// CRC32C (iSCSI's Castagnoli CRC).
    #[serde(rename = "crc32c", alias = "CRC32C")]
    Crc32c,
}

impl Digest {
    /// The value as written in a login text key.
    pub const fn wire_name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Crc32c => "CRC32C",
        }
    }
}

/// Session defaults offered by the target. See the module documentation for the clauses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionDefaults {
    /// MaxRecvDataSegmentLength the target declares (512 B – 16 MiB-1). Default 256KiB.
    pub max_recv_data_segment_length: ByteSize,
    /// MaxBurstLength offered (512 B – 16 MiB-1). Default 1MiB.
    pub max_burst_length: ByteSize,
    /// FirstBurstLength offered (512 B – 16 MiB-1, ≤ MaxBurstLength). Default 256KiB.
    pub first_burst_length: ByteSize,
    /// ImmediateData offered. Default true.
    pub immediate_data: bool,
    /// InitialR2T offered. Default false (unsolicited Data-Out allowed).
    pub initial_r2t: bool,
    /// MaxOutstandingR2T offered (1–65535). Default 1.
    pub max_outstanding_r2t: u32,
    /// MaxConnections offered (1–65535). Default 4.
    pub max_connections: u32,
    /// HeaderDigest values accepted, in preference order. Default `["none", "crc32c"]`.
    pub header_digest: Vec<Digest>,
    /// DataDigest values accepted, in preference order. Default `["none", "crc32c"]`.
    pub data_digest: Vec<Digest>,
    /// ErrorRecoveryLevel offered (0–2, and at most what the engine supports). Default 0.
    pub error_recovery_level: u8,
    /// DefaultTime2Wait offered (whole seconds, 0–3600). Default 2s.
    pub default_time2wait: HumanDuration,
    /// DefaultTime2Retain offered (whole seconds, 0–3600). Default 20s.
    pub default_time2retain: HumanDuration,
    /// Idle time before the target sends a NOP-In ping; 0 disables pings. Default 5s.
    pub nop_interval: HumanDuration,
    /// How long a ping may go unanswered before the connection is dropped. Default 30s.
    pub nop_timeout: HumanDuration,
    /// Commands a session may have outstanding (sets MaxCmdSN - ExpCmdSN + 1). Default 128.
    pub queue_depth: u32,
}

impl Default for SessionDefaults {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: ByteSize::kib(256),
            max_burst_length: ByteSize::mib(1),
            first_burst_length: ByteSize::kib(256),
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 1,
            max_connections: 4,
            header_digest: vec![Digest::None, Digest::Crc32c],
            data_digest: vec![Digest::None, Digest::Crc32c],
            error_recovery_level: 0,
            default_time2wait: HumanDuration::from_secs(2),
            default_time2retain: HumanDuration::from_secs(20),
            nop_interval: HumanDuration::from_secs(5),
            nop_timeout: HumanDuration::from_secs(30),
            queue_depth: 128,
        }
    }
}

fn data_len(value: ByteSize, key: KeyPath, rfc: &str) -> Check {
    let n = value.bytes();
    if (MIN_DATA_LEN..=MAX_DATA_LEN).contains(&n) {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            format!("{value} is outside 512..=16777215 bytes (RFC 7143 {rfc})"),
        ))
    }
}

fn count(value: u32, key: KeyPath, rfc: &str) -> Check {
    if (1..=65535).contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            format!("{value} is outside 1..=65535 (RFC 7143 {rfc})"),
        ))
    }
}

fn time2(value: HumanDuration, key: KeyPath, rfc: &str) -> Check {
    let d = value.get();
    if d.subsec_nanos() != 0 {
        return Err(Invalid::new(
            key,
            format!("{value} is not a whole number of seconds (RFC 7143 {rfc} counts seconds)"),
        ));
    }
    if d.as_secs() > MAX_TIME2 {
        return Err(Invalid::new(
            key,
            format!("{value} is more than 3600s (RFC 7143 {rfc})"),
        ));
    }
    Ok(())
}

fn digests(list: &[Digest], key: &KeyPath) -> Check {
    if list.is_empty() {
        return Err(Invalid::new(
            key.clone(),
            "is empty: list \"none\", \"crc32c\" or both, preferred first",
        ));
    }
    for (i, d) in list.iter().enumerate() {
        if list[..i].contains(d) {
            return Err(Invalid::new(key.index(i), "is listed twice"));
        }
    }
    Ok(())
}

/// Checks `[session]` against RFC 7143 §13 and the engine's capabilities.
pub(crate) fn validate(s: &SessionDefaults, caps: Capabilities, base: &KeyPath) -> Check {
    data_len(
        s.max_recv_data_segment_length,
        base.key("max_recv_data_segment_length"),
        "§13.12",
    )?;
    data_len(s.max_burst_length, base.key("max_burst_length"), "§13.13")?;
    data_len(
        s.first_burst_length,
        base.key("first_burst_length"),
        "§13.14",
    )?;
    if s.first_burst_length > s.max_burst_length {
        return Err(Invalid::new(
            base.key("first_burst_length"),
            format!(
                "{} is larger than max_burst_length {} (RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength)",
                s.first_burst_length, s.max_burst_length
            ),
        ));
    }
    count(
        s.max_outstanding_r2t,
        base.key("max_outstanding_r2t"),
        "§13.17",
    )?;
    count(s.max_connections, base.key("max_connections"), "§13.2")?;
    digests(&s.header_digest, &base.key("header_digest"))?;
    digests(&s.data_digest, &base.key("data_digest"))?;
    if s.error_recovery_level > 2 {
        return Err(Invalid::new(
            base.key("error_recovery_level"),
            format!(
                "{} is outside 0..=2 (RFC 7143 §13.20)",
                s.error_recovery_level
            ),
        ));
    }
    if s.error_recovery_level > caps.max_error_recovery_level {
        return Err(Invalid::new(
            base.key("error_recovery_level"),
            format!(
                "{} is not supported by this build of rtgtd (highest: {})",
                s.error_recovery_level, caps.max_error_recovery_level
            ),
        ));
    }
    time2(s.default_time2wait, base.key("default_time2wait"), "§13.15")?;
    time2(
        s.default_time2retain,
        base.key("default_time2retain"),
        "§13.16",
    )?;
    let (min, max) = (Duration::from_millis(100), Duration::from_secs(3600));
    let interval = s.nop_interval.get();
    if !interval.is_zero() && !(min..=max).contains(&interval) {
        return Err(Invalid::new(
            base.key("nop_interval"),
            format!(
                "{} is outside 100ms..=1h (0 turns pings off)",
                s.nop_interval
            ),
        ));
    }
    if !(min..=max).contains(&s.nop_timeout.get()) {
        return Err(Invalid::new(
            base.key("nop_timeout"),
            format!("{} is outside 100ms..=1h", s.nop_timeout),
        ));
    }
    if !(1..=MAX_QUEUE_DEPTH).contains(&s.queue_depth) {
        return Err(Invalid::new(
            base.key("queue_depth"),
            format!("{} is outside 1..={MAX_QUEUE_DEPTH}", s.queue_depth),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &SessionDefaults) -> Result<(), String> {
        validate(s, Capabilities::default(), &KeyPath::dotted("session"))
            .map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn defaults_are_valid() {
        assert!(check(&SessionDefaults::default()).is_ok());
    }

    #[test]
    fn every_range_is_checked() {
        let d = SessionDefaults::default;
        let cases: Vec<(SessionDefaults, &str)> = vec![
            (
                SessionDefaults {
                    max_recv_data_segment_length: ByteSize::new(511),
                    ..d()
                },
                "session.max_recv_data_segment_length: 511 is outside 512..=16777215 bytes (RFC 7143 §13.12)",
            ),
            (
                SessionDefaults {
                    max_burst_length: ByteSize::mib(16),
                    ..d()
                },
                "session.max_burst_length: 16MiB is outside 512..=16777215 bytes (RFC 7143 §13.13)",
            ),
            (
                SessionDefaults {
                    first_burst_length: ByteSize::new(100),
                    ..d()
                },
                "session.first_burst_length: 100 is outside 512..=16777215 bytes (RFC 7143 §13.14)",
            ),
            (
                SessionDefaults {
                    first_burst_length: ByteSize::mib(2),
                    ..d()
                },
                "session.first_burst_length: 2MiB is larger than max_burst_length 1MiB (RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength)",
            ),
            (
                SessionDefaults {
                    max_outstanding_r2t: 0,
                    ..d()
                },
                "session.max_outstanding_r2t: 0 is outside 1..=65535 (RFC 7143 §13.17)",
            ),
            (
                SessionDefaults {
                    max_connections: 65536,
                    ..d()
                },
                "session.max_connections: 65536 is outside 1..=65535 (RFC 7143 §13.2)",
            ),
            (
                SessionDefaults {
                    header_digest: vec![],
                    ..d()
                },
                "session.header_digest: is empty: list \"none\", \"crc32c\" or both, preferred first",
            ),
            (
                SessionDefaults {
                    data_digest: vec![Digest::Crc32c, Digest::Crc32c],
                    ..d()
                },
                "session.data_digest[1]: is listed twice",
            ),
            (
                SessionDefaults {
                    error_recovery_level: 3,
                    ..d()
                },
                "session.error_recovery_level: 3 is outside 0..=2 (RFC 7143 §13.20)",
            ),
            (
                SessionDefaults {
                    error_recovery_level: 1,
                    ..d()
                },
                "session.error_recovery_level: 1 is not supported by this build of rtgtd (highest: 0)",
            ),
            (
                SessionDefaults {
                    default_time2wait: HumanDuration::from_millis(1500),
                    ..d()
                },
                "session.default_time2wait: 1500ms is not a whole number of seconds (RFC 7143 §13.15 counts seconds)",
            ),
            (
                SessionDefaults {
                    default_time2retain: HumanDuration::from_secs(3601),
                    ..d()
                },
                "session.default_time2retain: 3601s is more than 3600s (RFC 7143 §13.16)",
            ),
            (
                SessionDefaults {
                    nop_interval: HumanDuration::from_millis(10),
                    ..d()
                },
                "session.nop_interval: 10ms is outside 100ms..=1h (0 turns pings off)",
            ),
            (
                SessionDefaults {
                    nop_timeout: HumanDuration::from_secs(0),
                    ..d()
                },
                "session.nop_timeout: 0 is outside 100ms..=1h",
            ),
            (
                SessionDefaults {
                    queue_depth: 0,
                    ..d()
                },
                "session.queue_depth: 0 is outside 1..=16384",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(check(&s), Err(want.to_owned()));
        }
        let ok = SessionDefaults {
            nop_interval: HumanDuration::from_secs(0),
            first_burst_length: ByteSize::mib(1),
            max_recv_data_segment_length: ByteSize::new(MAX_DATA_LEN),
            ..d()
        };
        assert!(check(&ok).is_ok());
        let erl2 = SessionDefaults {
            error_recovery_level: 2,
            ..d()
        };
        let caps = Capabilities {
            max_error_recovery_level: 2,
            ..Capabilities::default()
        };
        assert!(validate(&erl2, caps, &KeyPath::dotted("session")).is_ok());
    }
}
