//! Counters of a store: I/O, bounces, short transfers, read-ahead and write-coalescing hit
//! rates. Relaxed atomics: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every queue of a store.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) fua_writes: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) unmaps: AtomicU64,
    pub(crate) write_zeroes: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bounced_ios: AtomicU64,
    pub(crate) short_resubmits: AtomicU64,
    pub(crate) eof_zero_fills: AtomicU64,
    pub(crate) readahead_hits: AtomicU64,
    pub(crate) readahead_misses: AtomicU64,
    pub(crate) readahead_chunks: AtomicU64,
    pub(crate) coalesced_writes: AtomicU64,
    pub(crate) coalesced_batches: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Writes with FUA.
    pub fua_writes: u64,
    /// Flushes (SYNCHRONIZE CACHE).
    pub flushes: u64,
    /// Deallocations.
    pub unmaps: u64,
    /// Zeroings.
    pub write_zeroes: u64,
    /// Operations that failed.
    pub errors: u64,
    /// O_DIRECT I/Os that went through a bounce buffer (unaligned memory, offset or length).
    pub bounced_ios: u64,
    /// Short transfers whose remainder was resubmitted.
    pub short_resubmits: u64,
    /// Reads that met the end of the file inside the LU and were completed with zeros.
    pub eof_zero_fills: u64,
    /// Reads of a sequential stream served from the read-ahead cache.
    pub readahead_hits: u64,
    /// Reads of a sequential stream that had to go to the store.
    pub readahead_misses: u64,
    /// Read-ahead chunks fetched.
    pub readahead_chunks: u64,
    /// Writes that went out as part of a coalesced batch.
    pub coalesced_writes: u64,
    /// Coalesced batches submitted.
    pub coalesced_batches: u64,
}

impl StatsSnapshot {
    /// Fraction of stream reads served from the read-ahead cache (0 when none).
    pub fn readahead_hit_rate(&self) -> f64 {
        let total = self.readahead_hits + self.readahead_misses;
        if total == 0 {
            0.0
        } else {
            self.readahead_hits as f64 / total as f64
        }
    }

    /// Average number of writes per coalesced batch (0 when none).
    pub fn writes_per_batch(&self) -> f64 {
        if self.coalesced_batches == 0 {
            0.0
        } else {
            self.coalesced_writes as f64 / self.coalesced_batches as f64
        }
    }
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            reads: g(&self.reads),
            writes: g(&self.writes),
            bytes_read: g(&self.bytes_read),
            bytes_written: g(&self.bytes_written),
            fua_writes: g(&self.fua_writes),
            flushes: g(&self.flushes),
            unmaps: g(&self.unmaps),
            write_zeroes: g(&self.write_zeroes),
            errors: g(&self.errors),
            bounced_ios: g(&self.bounced_ios),
            short_resubmits: g(&self.short_resubmits),
            eof_zero_fills: g(&self.eof_zero_fills),
            readahead_hits: g(&self.readahead_hits),
            readahead_misses: g(&self.readahead_misses),
            readahead_chunks: g(&self.readahead_chunks),
            coalesced_writes: g(&self.coalesced_writes),
            coalesced_batches: g(&self.coalesced_batches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let stats = Stats::default();
        assert!(stats.snapshot().readahead_hit_rate().abs() < f64::EPSILON);
        Stats::add(&stats.readahead_hits, 3);
        Stats::add(&stats.readahead_misses, 1);
        Stats::add(&stats.coalesced_writes, 8);
        Stats::add(&stats.coalesced_batches, 2);
        let snap = stats.snapshot();
        assert!((snap.readahead_hit_rate() - 0.75).abs() < 1e-9);
        assert!((snap.writes_per_batch() - 4.0).abs() < 1e-9);
    }
}
