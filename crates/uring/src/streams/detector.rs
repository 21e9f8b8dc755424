//! Detecting interleaved sequential streams in a logical unit's I/O.
//!
//! Sans-IO: offsets, lengths and time (nanoseconds from any origin) are passed in. Each
//! tracked stream remembers where it will continue; a request that starts at (or within a
//! small tolerance of, to absorb reordering of a queue of requests) that point continues the
//! stream. After `min_run` requests in a row a stream counts as sequential. Streams idle for
//! longer than a timeout, or the least recently used one, make room for new ones.

/// Tuning of the detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// How many streams are tracked at once.
    pub max_streams: usize,
    /// Requests in a row before a stream counts as sequential.
    pub min_run: u32,
    /// How far (bytes) a request may start from the expected point and still continue it.
    pub tolerance: u64,
    /// A stream idle this long (ns) is forgotten.
    pub idle_ns: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            max_streams: 32,
            min_run: 3,
            tolerance: 256 << 10,
            idle_ns: 2_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    next: u64,
    run: u32,
    last_ns: u64,
}

/// What the detector concluded about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The stream the request belongs to (new streams get new ids).
    pub stream: u64,
    /// Requests of the stream so far, this one included.
    pub run: u32,
    /// Whether the stream is sequential (run >= min_run).
    pub sequential: bool,
}

/// Tracks several interleaved streams.
///
/// ```
/// use rtgt_uring::streams::{DetectorConfig, StreamDetector};
/// let mut d = StreamDetector::new(DetectorConfig::default());
/// let (mut a, mut b) = (0u64, 1 << 30);
/// let mut last = None;
/// for t in 0..4 {
///     d.observe(a, 65536, t); a += 65536;
///     last = Some(d.observe(b, 65536, t)); b += 65536;
/// }
/// assert!(last.unwrap().sequential);
/// ```
#[derive(Debug, Clone)]
pub struct StreamDetector {
    cfg: DetectorConfig,
    slots: Vec<Slot>,
    next_id: u64,
}

impl StreamDetector {
    /// A detector with no streams.
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            slots: Vec::with_capacity(cfg.max_streams.max(1)),
            next_id: 1,
        }
    }

    /// Streams currently tracked.
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// Account one request of `len` bytes at `offset` at time `now_ns`.
    pub fn observe(&mut self, offset: u64, len: u64, now_ns: u64) -> Observation {
        let cfg = self.cfg;
        let live = |s: &Slot| now_ns.saturating_sub(s.last_ns) <= cfg.idle_ns;
        let near = |s: &Slot| offset.abs_diff(s.next) <= cfg.tolerance;
        // Prefer the stream that expects exactly this offset.
        let found = self
            .slots
            .iter()
            .position(|s| live(s) && s.next == offset)
            .or_else(|| self.slots.iter().position(|s| live(s) && near(s)));
        if let Some(i) = found {
            let s = &mut self.slots[i];
            s.run = s.run.saturating_add(1);
            s.next = s.next.max(offset + len);
            s.last_ns = now_ns;
            return Observation {
                stream: s.id,
                run: s.run,
                sequential: s.run >= cfg.min_run,
            };
        }
        let fresh = Slot {
            id: self.next_id,
            next: offset + len,
            run: 1,
            last_ns: now_ns,
        };
        self.next_id += 1;
        if self.slots.len() < cfg.max_streams.max(1) {
            self.slots.push(fresh);
        } else {
            // Replace an idle stream, else the least recently used one.
            let victim = self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_ns)
                .map_or(0, |(i, _)| i);
            self.slots[victim] = fresh;
        }
        Observation {
            stream: fresh.id,
            run: 1,
            sequential: cfg.min_run <= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_io_is_not_sequential() {
        let mut d = StreamDetector::new(DetectorConfig::default());
        let offsets = [7u64 << 30, 1 << 20, 5 << 30, 3 << 30, 9 << 30, 2 << 30];
        for (t, off) in offsets.iter().enumerate() {
            assert!(!d.observe(*off, 4096, t as u64).sequential);
        }
    }

    #[test]
    fn interleaved_streams_are_told_apart() {
        let mut d = StreamDetector::new(DetectorConfig::default());
        let bases = [0u64, 10 << 30, 20 << 30, 30 << 30];
        let mut ids = [0u64; 4];
        for step in 0..5u64 {
            for (i, base) in bases.iter().enumerate() {
                let obs = d.observe(base + step * 131_072, 131_072, step);
                if step == 0 {
                    ids[i] = obs.stream;
                } else {
                    assert_eq!(obs.stream, ids[i], "stream {i} keeps its id");
                }
                assert_eq!(obs.sequential, step >= 2, "stream {i} step {step}");
            }
        }
        assert_eq!(d.tracked(), 4);
    }

    #[test]
    fn small_reordering_is_tolerated() {
        let mut d = StreamDetector::new(DetectorConfig::default());
        d.observe(0, 65536, 0);
        d.observe(131_072, 65536, 1); // arrived before 65536
        let obs = d.observe(65536, 65536, 2);
        assert!(obs.sequential);
        assert_eq!(obs.run, 3);
    }

    #[test]
    fn idle_streams_expire_and_lru_is_replaced() {
        let cfg = DetectorConfig {
            max_streams: 2,
            idle_ns: 100,
            ..DetectorConfig::default()
        };
        let mut d = StreamDetector::new(cfg);
        let a = d.observe(0, 4096, 0).stream;
        d.observe(4096, 4096, 1);
        // After the idle time the continuation starts a new stream.
        assert_ne!(d.observe(8192, 4096, 500).stream, a);
        let b = d.observe(1 << 30, 4096, 501).stream;
        let c = d.observe(2 << 30, 4096, 502).stream;
        assert_eq!(d.tracked(), 2);
        assert_ne!(b, c);
    }
}
