//! The streams feature of a file or block-device logical unit, as the engine runs it
//! (issue 6: many parallel sequential streams on rotational storage): read-ahead of detected
//! sequential readers into a bounded cache and coalescing of adjacent small writes, driven on
//! each reactor's ring by `reactor/streams.rs` with rtgt-uring's sans-IO
//! [`StreamDetector`](rtgt_uring::streams::StreamDetector),
//! [`ReadAheadCache`](rtgt_uring::streams::ReadAheadCache) and
//! [`WriteCoalescer`](rtgt_uring::streams::WriteCoalescer).
//!
//! What may be cached follows SBC-4 §4.6: read-ahead data is dropped on any overlapping write,
//! and a coalesced write is acknowledged only once its batch is on the store, so the write
//! cache reported in the Caching mode page (SBC-4 §6.5.5) stays truthful; FUA writes and
//! SYNCHRONIZE CACHE are never delayed.
//!
//! Every reactor keeps its own cache (no lock on the I/O path). They stay coherent through
//! one write epoch per logical unit: every write that completes bumps it, a reactor knows how
//! many bumps were its own (it invalidated exactly what those wrote), and any other bump makes
//! it drop its whole cache before the next lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rtgt_scsi::{AllocationExtent, BackendError, BlockBackend, Capabilities};

use crate::config;

/// Resolved settings of a logical unit's streams feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsSettings {
    /// Read ahead of sequential readers.
    pub read_ahead: bool,
    /// Read-ahead chunk in bytes.
    pub chunk: u64,
    /// Read-ahead memory of the logical unit in bytes (shared out among the reactors).
    pub cache_bytes: u64,
    /// Coalesce adjacent writes.
    pub write_combine: bool,
    /// Longest time a write waits for neighbours.
    pub window: Duration,
    /// Largest coalesced write in bytes.
    pub combine_max: u64,
    /// Sequential streams tracked at once.
    pub max_streams: usize,
}

impl StreamsSettings {
    /// The settings `[target.lun.streams]` asks for on a backend that is (or is not)
    /// rotational; `None` when both parts are off.
    pub fn resolve(cfg: &config::StreamsConfig, rotational: bool) -> Option<Self> {
        let s = Self {
            read_ahead: cfg.read_ahead.enabled(rotational),
            chunk: cfg.read_ahead_size.bytes().max(4096),
            cache_bytes: cfg.cache_size.bytes(),
            write_combine: cfg.write_combine.enabled(rotational),
            window: cfg.write_combine_window.get(),
            combine_max: cfg.write_combine_max.bytes().max(4096),
            max_streams: cfg.max_streams.max(1) as usize,
        };
        (s.read_ahead || s.write_combine).then_some(s)
    }
}

/// Counters of a logical unit's streams feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamsStats {
    /// Reads of sequential streams served from the read-ahead cache.
    pub readahead_hits: u64,
    /// Reads of sequential streams that had to wait for (or go to) the store.
    pub readahead_misses: u64,
    /// Read-ahead chunks fetched.
    pub readahead_chunks: u64,
    /// Writes that went to the store as part of a coalesced batch.
    pub coalesced_writes: u64,
    /// Coalesced batches written.
    pub coalesced_batches: u64,
}

impl StreamsStats {
    /// Fraction of sequential-stream reads served from the cache (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let all = self.readahead_hits + self.readahead_misses;
        if all == 0 {
            0.0
        } else {
            self.readahead_hits as f64 / all as f64
        }
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Self) {
        self.readahead_hits += other.readahead_hits;
        self.readahead_misses += other.readahead_misses;
        self.readahead_chunks += other.readahead_chunks;
        self.coalesced_writes += other.coalesced_writes;
        self.coalesced_batches += other.coalesced_batches;
    }
}

/// A logical unit's streams feature: settings, the write epoch, counters.
#[derive(Debug)]
pub struct LuStreams {
    /// The settings.
    pub settings: StreamsSettings,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    chunks: AtomicU64,
    coalesced_writes: AtomicU64,
    coalesced_batches: AtomicU64,
}

/// Which counter to add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Chunk,
    CoalescedWrites,
    Batch,
}

impl LuStreams {
    /// A streams feature with `settings`.
    pub fn new(settings: StreamsSettings) -> Self {
        Self {
            settings,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            coalesced_writes: AtomicU64::new(0),
            coalesced_batches: AtomicU64::new(0),
        }
    }

    /// A write to the logical unit completed (call before it is acknowledged).
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes completed so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn count(&self, c: Counter, n: u64) {
        let a = match c {
            Counter::Hit => &self.hits,
            Counter::Miss => &self.misses,
            Counter::Chunk => &self.chunks,
            Counter::CoalescedWrites => &self.coalesced_writes,
            Counter::Batch => &self.coalesced_batches,
        };
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> StreamsStats {
        StreamsStats {
            readahead_hits: self.hits.load(Ordering::Relaxed),
            readahead_misses: self.misses.load(Ordering::Relaxed),
            readahead_chunks: self.chunks.load(Ordering::Relaxed),
            coalesced_writes: self.coalesced_writes.load(Ordering::Relaxed),
            coalesced_batches: self.coalesced_batches.load(Ordering::Relaxed),
        }
    }
}

/// A store seen through the synchronous [`BlockBackend`] interface (EXTENDED COPY, commands
/// the ring does not run): every change bumps the write epoch, so read-ahead caches drop
/// what they hold.
pub(crate) struct EpochBackend {
    pub inner: Arc<dyn BlockBackend>,
    pub streams: Arc<LuStreams>,
}

impl EpochBackend {
    fn changed<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        self.streams.bump();
        r
    }
}

impl BlockBackend for EpochBackend {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), BackendError> {
        self.changed(self.inner.write_at(offset, buf, fua))
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.changed(self.inner.unmap(offset, len))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.changed(self.inner.write_zeroes(offset, len))
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError> {
        self.inner.allocation(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_rotation_unless_forced() {
        let cfg = config::StreamsConfig::default();
        assert_eq!(StreamsSettings::resolve(&cfg, false), None);
        let on = StreamsSettings::resolve(&cfg, true).expect("auto: on when rotational");
        assert!(on.read_ahead && on.write_combine);
        assert_eq!(on.chunk, 2 << 20);
        assert_eq!(on.window, Duration::from_millis(2));
        let forced = config::StreamsConfig {
            read_ahead: config::Toggle::On,
            write_combine: config::Toggle::Off,
            ..cfg
        };
        let s = StreamsSettings::resolve(&forced, false).expect("forced on");
        assert!(s.read_ahead && !s.write_combine);
    }

    #[test]
    fn epoch_backend_bumps_on_changes_only() {
        let mem = Arc::new(rtgt_scsi::MemoryBackend::new(512, 64).unwrap());
        let lu = Arc::new(LuStreams::new(
            StreamsSettings::resolve(&config::StreamsConfig::default(), true).unwrap(),
        ));
        let b = EpochBackend {
            inner: mem,
            streams: lu.clone(),
        };
        let mut buf = [0u8; 512];
        b.read_at(0, &mut buf).unwrap();
        b.flush().unwrap();
        assert_eq!(lu.epoch(), 0);
        b.write_at(0, &[1; 512], false).unwrap();
        b.write_zeroes(512, 512).unwrap();
        assert_eq!(lu.epoch(), 2);
        lu.count(Counter::Hit, 3);
        lu.count(Counter::Miss, 1);
        assert!((lu.stats().hit_rate() - 0.75).abs() < 1e-9);
    }
}
