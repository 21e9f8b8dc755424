//! Run statistics: IO and byte counts, a latency histogram (HdrHistogram, 3 significant
//! digits, 1 ns .. 60 s) and the initiator's own CPU time, merged across engine threads and
//! turned into the figures `bench` prints.
//!
//! ```
//! use rtgt_client::stats::RunStats;
//! use std::time::Duration;
//!
//! let mut s = RunStats::new();
//! for us in [100u64, 200, 300] {
//!     s.record(false, 4096, us * 1000);
//! }
//! s.elapsed = Duration::from_secs(1);
//! let r = s.report();
//! assert_eq!(r.ios, 3);
//! assert_eq!(r.iops, 3.0);
//! assert!((r.latency_us.p50 - 200.0).abs() < 1.0);
//! ```

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency the histogram tracks exactly (longer ones saturate).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Counters and latency histogram of one engine thread, or of a whole run after merging.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// IOs that completed with a check condition or other non-GOOD status.
    pub errors: u64,
    /// IOs re-issued after a reconnect.
    pub retried: u64,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Wall time of the measured interval (the longest of the merged threads).
    pub elapsed: Duration,
    /// CPU time (user+system) of the engine threads over the interval (summed when merged).
    pub cpu: Duration,
    /// Latency of successful IOs in nanoseconds.
    pub latency: Histogram<u64>,
    /// The first failure, described.
    pub first_error: Option<String>,
    /// Sum of the recorded latencies (for the engine's running mean).
    pub latency_sum_ns: u64,
}

impl Default for RunStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RunStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            reads: 0,
            writes: 0,
            read_bytes: 0,
            write_bytes: 0,
            errors: 0,
            retried: 0,
            reconnects: 0,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            // 1 ns .. 60 s at 3 significant digits: bounds are constants known to be valid.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            first_error: None,
            latency_sum_ns: 0,
        }
    }

    /// Records one completed IO. Never allocates: values beyond the range saturate.
    #[inline]
    pub fn record(&mut self, write: bool, bytes: u64, latency_ns: u64) {
        if write {
            self.writes += 1;
            self.write_bytes += bytes;
        } else {
            self.reads += 1;
            self.read_bytes += bytes;
        }
        self.latency
            .saturating_record(latency_ns.clamp(1, MAX_LATENCY_NS));
        self.latency_sum_ns = self.latency_sum_ns.saturating_add(latency_ns);
    }

    /// Completed IOs.
    pub fn ios(&self) -> u64 {
        self.reads + self.writes
    }

    /// Adds another thread's statistics (CPU summed, elapsed the longer).
    pub fn merge(&mut self, other: &Self) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        self.errors += other.errors;
        self.retried += other.retried;
        self.reconnects += other.reconnects;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.cpu += other.cpu;
        self.latency_sum_ns = self.latency_sum_ns.saturating_add(other.latency_sum_ns);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        // Both histograms share bounds, so adding cannot fail; a failure would only drop
        // latency samples, never counts.
        let _ = self.latency.add(&other.latency);
    }

    /// The figures a run reports.
    pub fn report(&self) -> Report {
        let secs = self.elapsed.as_secs_f64();
        let ios = self.ios();
        let per_sec = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        let lat = if self.latency.is_empty() {
            Latency::default()
        } else {
            Latency {
                min: self.latency.min() as f64 / 1000.0,
                mean: self.latency.mean() / 1000.0,
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p999: q(0.999),
                max: self.latency.max() as f64 / 1000.0,
            }
        };
        Report {
            ios,
            reads: self.reads,
            writes: self.writes,
            errors: self.errors,
            retried: self.retried,
            reconnects: self.reconnects,
            seconds: secs,
            iops: per_sec(ios as f64),
            mb_per_s: per_sec((self.read_bytes + self.write_bytes) as f64) / 1e6,
            read_mb_per_s: per_sec(self.read_bytes as f64) / 1e6,
            write_mb_per_s: per_sec(self.write_bytes as f64) / 1e6,
            latency_us: lat,
            cpu_seconds: self.cpu.as_secs_f64(),
            cpu_us_per_io: if ios > 0 {
                self.cpu.as_secs_f64() * 1e6 / ios as f64
            } else {
                0.0
            },
            first_error: self.first_error.clone(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Smallest.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// The summary of a run, as printed and as `--json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Completed IOs.
    pub ios: u64,
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// IOs that failed.
    pub errors: u64,
    /// IOs re-issued after a reconnect.
    pub retried: u64,
    /// Connections re-established.
    pub reconnects: u64,
    /// Measured wall time.
    pub seconds: f64,
    /// IOs per second.
    pub iops: f64,
    /// Megabytes (10^6) per second, reads plus writes.
    pub mb_per_s: f64,
    /// Read megabytes per second.
    pub read_mb_per_s: f64,
    /// Write megabytes per second.
    pub write_mb_per_s: f64,
    /// Latency percentiles.
    pub latency_us: Latency,
    /// CPU time of the engine threads.
    pub cpu_seconds: f64,
    /// Initiator CPU time per IO in microseconds.
    pub cpu_us_per_io: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counts_and_keeps_longest_elapsed() {
        let mut a = RunStats::new();
        a.record(true, 512, 1_000);
        a.elapsed = Duration::from_secs(2);
        a.cpu = Duration::from_millis(10);
        let mut b = RunStats::new();
        b.record(false, 4096, 3_000);
        b.errors = 1;
        b.elapsed = Duration::from_secs(1);
        b.cpu = Duration::from_millis(30);
        a.merge(&b);
        let r = a.report();
        assert_eq!((r.ios, r.reads, r.writes, r.errors), (2, 1, 1, 1));
        assert!((r.seconds - 2.0).abs() < 1e-12);
        assert!((r.iops - 1.0).abs() < 1e-12);
        assert!((r.cpu_us_per_io - 20_000.0).abs() < 1e-6);
        assert!((r.mb_per_s - 4608.0 / 2.0 / 1e6).abs() < 1e-12);
        assert!((r.latency_us.max - 3.0).abs() < 0.01);
    }

    #[test]
    fn empty_run_reports_zeros() {
        let r = RunStats::new().report();
        assert!(r.iops.abs() < f64::EPSILON);
        assert!(r.cpu_us_per_io.abs() < f64::EPSILON);
        assert_eq!(r.latency_us, Latency::default());
    }

    #[test]
    fn huge_latency_saturates() {
        let mut s = RunStats::new();
        s.record(false, 1, u64::MAX);
        assert_eq!(s.ios(), 1);
        assert!(s.latency.max() >= MAX_LATENCY_NS / 2);
    }
}
