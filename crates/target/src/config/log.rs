//! `[log]`: log verbosity and output format for rtgtd's `tracing` subscriber.
//!
//! `RUST_LOG`, when set, takes precedence over `level` (the engine applies it); the format
//! chooses between `tracing-subscriber`'s full text, compact text and JSON formatters.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `[log]` settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Least severe level logged. Default `info`.
    pub level: LogLevel,
    /// Output format. Default `text`.
    pub format: LogFormat,
}

/// A log level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Start-up, shutdown, logins and logouts, plus warnings.
    #[default]
    Info,
    /// Protocol decisions (negotiation, task management).
    Debug,
    /// Everything, including per-PDU detail.
    Trace,
}

impl LogLevel {
    /// The level's name as `tracing` filters spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines with timestamps and fields.
    #[default]
    Text,
    /// Shorter human-readable lines.
    Compact,
    /// One JSON object per line, for log collectors.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_by_verbosity() {
        assert!(LogLevel::Error < LogLevel::Trace);
        assert_eq!(LogLevel::default().to_string(), "info");
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
