//! `[target.lun.streams]`: per-LU detection of sequential streams, with read-ahead into a
//! bounded cache and write combining — the behaviour `rtgt-uring`'s streams layer implements
//! for many parallel sequential readers and writers on rotational storage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Check, Invalid, KeyPath};
use super::units::{ByteSize, HumanDuration};

/// On, off, or decided by the backend (on for rotational media, off otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// On for rotational backends, off for SSD, RAM and null.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl Toggle {
    /// Resolves `Auto` for a backend that is (or is not) rotational.
    pub const fn enabled(self, rotational: bool) -> bool {
        match self {
            Self::Auto => rotational,
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// `[target.lun.streams]`: per-stream read-ahead and write combining for many parallel
/// sequential streams (busy file, video and download servers on RAID/HDD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Read ahead of detected sequential readers. Default auto.
    pub read_ahead: Toggle,
    /// Size of each read-ahead request (64KiB–64MiB, multiple of 4KiB). Default 2MiB.
    pub read_ahead_size: ByteSize,
    /// Memory bound for read-ahead data per LU (at least `read_ahead_size`, at most 16GiB).
    /// Default 64MiB.
    pub cache_size: ByteSize,
    /// Merge adjacent small writes into larger submissions. Default auto.
    pub write_combine: Toggle,
    /// How long a write may wait for a neighbour (1ms–1s). Default 2ms.
    pub write_combine_window: HumanDuration,
    /// Largest merged write (8KiB–16MiB, multiple of 4KiB). Default 1MiB.
    pub write_combine_max: ByteSize,
    /// Sequential streams tracked at once per LU (1–1024). Default 32.
    pub max_streams: u32,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            read_ahead: Toggle::Auto,
            read_ahead_size: ByteSize::mib(2),
            cache_size: ByteSize::mib(64),
            write_combine: Toggle::Auto,
            write_combine_window: HumanDuration::from_millis(2),
            write_combine_max: ByteSize::mib(1),
            max_streams: 32,
        }
    }
}

fn size_range(size: ByteSize, min: ByteSize, max: ByteSize, align: u64, key: KeyPath) -> Check {
    if size < min || size > max || size.bytes() % align != 0 {
        return Err(Invalid::new(
            key,
            format!(
                "{size} is outside {min}..={max} or not a multiple of {}",
                ByteSize::new(align)
            ),
        ));
    }
    Ok(())
}

/// Checks one LUN on its own; `base` is e.g. `target[0].lun[1]`.
pub(crate) fn validate(s: &StreamsConfig, base: &KeyPath) -> Check {
    size_range(
        s.read_ahead_size,
        ByteSize::kib(64),
        ByteSize::mib(64),
        4096,
        base.key("read_ahead_size"),
    )?;
    if s.cache_size < s.read_ahead_size || s.cache_size > ByteSize::gib(16) {
        return Err(Invalid::new(
            base.key("cache_size"),
            format!(
                "{} is outside read_ahead_size ({})..=16GiB",
                s.cache_size, s.read_ahead_size
            ),
        ));
    }
    let w = s.write_combine_window.get();
    if w < Duration::from_millis(1) || w > Duration::from_secs(1) {
        return Err(Invalid::new(
            base.key("write_combine_window"),
            format!("{} is outside 1ms..=1s", s.write_combine_window),
        ));
    }
    size_range(
        s.write_combine_max,
        ByteSize::kib(8),
        ByteSize::mib(16),
        4096,
        base.key("write_combine_max"),
    )?;
    if !(1..=1024).contains(&s.max_streams) {
        return Err(Invalid::new(
            base.key("max_streams"),
            format!("{} is outside 1..=1024", s.max_streams),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_resolve() {
        assert!(Toggle::Auto.enabled(true));
        assert!(!Toggle::Auto.enabled(false));
        assert!(Toggle::On.enabled(false));
        assert!(!Toggle::Off.enabled(true));
    }
}
