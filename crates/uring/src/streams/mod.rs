//! Streams: read-ahead and write coalescing for many parallel sequential streams on
//! rotational storage (the load of file, video and download servers).
//!
//! A sequential stream is recognised among interleaved I/O ([`StreamDetector`]); its reads are
//! served from large aligned chunks fetched into a bounded cache ([`ReadAheadCache`]), and its
//! small adjacent writes that are in flight together go out as one write
//! ([`WriteCoalescer`]). These three are sans-IO and take time as a parameter; the store's
//! synchronous path drives them ([`crate::Store`]), and an engine on its own ring can drive
//! them the same way. Defaults: on for rotational backends, off for SSD/RAM.
//! SBC-4 §4.6 data caching and the Caching mode page (§6.5.5) define what may be cached:
//! acknowledged writes keep exactly their durability; cached read data is dropped on any
//! overlapping write, UNMAP or WRITE SAME.

mod cache;
mod coalesce;
mod detector;
pub(crate) mod layer;

pub use cache::{Fetch, Hit, ReadAheadCache};
pub use coalesce::{ClosedBatch, CoalesceConfig, WriteCoalescer, WritePlan};
pub use detector::{DetectorConfig, Observation, StreamDetector};

use std::time::Duration;

/// Whether the streams feature is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamsMode {
    /// On for rotational backends, off otherwise.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

/// Configuration of the streams feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsConfig {
    /// On, off, or by rotation.
    pub mode: StreamsMode,
    /// Read-ahead chunk size in bytes (1–4 MiB, a multiple of 64 KiB). Default 1 MiB.
    pub readahead_bytes: u64,
    /// Read-ahead cache size in bytes (at least one chunk). Default 64 MiB.
    pub cache_bytes: u64,
    /// Longest time a write waits for adjacent writes. Default 1 ms.
    pub coalesce_window: Duration,
    /// Largest coalesced write in bytes. Default 1 MiB.
    pub coalesce_max_bytes: u64,
    /// Streams tracked at once. Default 32.
    pub max_streams: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            mode: StreamsMode::Auto,
            readahead_bytes: 1 << 20,
            cache_bytes: 64 << 20,
            coalesce_window: Duration::from_millis(1),
            coalesce_max_bytes: 1 << 20,
            max_streams: 32,
        }
    }
}

/// A streams setting that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("streams.{key}: {reason}")]
pub struct StreamsConfigError {
    /// The configuration key.
    pub key: &'static str,
    /// Why it was refused.
    pub reason: &'static str,
}

impl StreamsConfig {
    /// Check the settings.
    ///
    /// ```
    /// let mut cfg = rtgt_uring::StreamsConfig::default();
    /// assert!(cfg.validate().is_ok());
    /// cfg.readahead_bytes = 8 << 20;
    /// assert_eq!(cfg.validate().unwrap_err().to_string(), "streams.readahead_bytes: must be 1-4 MiB, a multiple of 64 KiB");
    /// ```
    pub fn validate(&self) -> Result<(), StreamsConfigError> {
        let err = |key, reason| Err(StreamsConfigError { key, reason });
        if !(1 << 20..=4 << 20).contains(&self.readahead_bytes)
            || self.readahead_bytes % (64 << 10) != 0
        {
            return err("readahead_bytes", "must be 1-4 MiB, a multiple of 64 KiB");
        }
        if self.cache_bytes < self.readahead_bytes {
            return err("cache_bytes", "must hold at least one read-ahead chunk");
        }
        if self.coalesce_window > Duration::from_millis(100) {
            return err("coalesce_window", "must be at most 100 ms");
        }
        if !(4096..=16 << 20).contains(&self.coalesce_max_bytes) {
            return err("coalesce_max_bytes", "must be 4 KiB to 16 MiB");
        }
        if self.max_streams == 0 || self.max_streams > 4096 {
            return err("max_streams", "must be 1 to 4096");
        }
        Ok(())
    }

    /// Whether the feature is on for a backend that is (or is not) rotational.
    pub fn enabled_for(&self, rotational: bool) -> bool {
        match self.mode {
            StreamsMode::Auto => rotational,
            StreamsMode::On => true,
            StreamsMode::Off => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let base = StreamsConfig::default();
        let cases: [(StreamsConfig, &str); 5] = [
            (
                StreamsConfig {
                    readahead_bytes: 1000,
                    ..base.clone()
                },
                "readahead_bytes",
            ),
            (
                StreamsConfig {
                    cache_bytes: 1,
                    ..base.clone()
                },
                "cache_bytes",
            ),
            (
                StreamsConfig {
                    coalesce_window: Duration::from_secs(1),
                    ..base.clone()
                },
                "coalesce_window",
            ),
            (
                StreamsConfig {
                    coalesce_max_bytes: 1,
                    ..base.clone()
                },
                "coalesce_max_bytes",
            ),
            (
                StreamsConfig {
                    max_streams: 0,
                    ..base.clone()
                },
                "max_streams",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().map_err(|e| e.key), Err(key));
        }
        assert!(
            StreamsConfig {
                readahead_bytes: 4 << 20,
                ..base
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn default_follows_rotation() {
        let cfg = StreamsConfig::default();
        assert!(cfg.enabled_for(true));
        assert!(!cfg.enabled_for(false));
        assert!(
            StreamsConfig {
                mode: StreamsMode::On,
                ..cfg.clone()
            }
            .enabled_for(false)
        );
        assert!(
            !StreamsConfig {
                mode: StreamsMode::Off,
                ..cfg
            }
            .enabled_for(true)
        );
    }
}
