//! Load patterns for the bench: random and sequential reads and writes, a random mix, and
//! `paraseq` — N slow sequential streams, each on its own region, the access pattern that
//! defeats naive read-ahead (SBC-4 §5.x READ/WRITE commands carry the LBAs generated here).
//!
//! A [`Generator`] produces the next IO of one connection; the engine asks it whenever a
//! queue slot is free. Generators are plain state machines: no clock reads (time is passed in),
//! no allocation per IO.
//!
//! ```
//! use rtgt_client::workload::{Generator, Next, Pattern, WorkloadSpec};
//! use std::time::Instant;
//!
//! let spec = WorkloadSpec::new(Pattern::SeqRead, 4096, 512, 0, 1024);
//! let mut g = Generator::new(&spec, 0, 1, 42);
//! let now = Instant::now();
//! let Next::Io(a) = g.next(now) else { panic!() };
//! let Next::Io(b) = g.next(now) else { panic!() };
//! assert_eq!((a.lba, a.blocks, a.write), (0, 8, false));
//! assert_eq!(b.lba, 8);
//! ```

use std::time::{Duration, Instant};

use crate::rng::SplitMix64;

/// The access pattern of a bench run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Uniformly random reads.
    RandRead,
    /// Uniformly random writes.
    RandWrite,
    /// Uniformly random IOs, `read_pct` percent of them reads.
    RandRw {
        /// Percentage of reads, 0..=100.
        read_pct: u8,
    },
    /// Sequential reads (each connection walks its own slice of the range).
    SeqRead,
    /// Sequential writes (each connection walks its own slice of the range).
    SeqWrite,
    /// `streams` sequential streams, each on its own region, one IO outstanding per stream,
    /// optionally rate-limited; `read_pct` percent of streams read, the others write.
    ParaSeq {
        /// Number of streams over all connections.
        streams: u32,
        /// Percentage of reading streams, 0..=100.
        read_pct: u8,
    },
}

impl Pattern {
    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RandRead => "randread",
            Self::RandWrite => "randwrite",
            Self::RandRw { .. } => "randrw",
            Self::SeqRead => "seqread",
            Self::SeqWrite => "seqwrite",
            Self::ParaSeq { .. } => "paraseq",
        }
    }

    /// Whether the pattern issues any writes.
    pub const fn writes(self) -> bool {
        match self {
            Self::RandRead | Self::SeqRead => false,
            Self::RandWrite | Self::SeqWrite => true,
            Self::RandRw { read_pct } | Self::ParaSeq { read_pct, .. } => read_pct < 100,
        }
    }
}

/// What to run, in logical blocks of the LU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// The access pattern.
    pub pattern: Pattern,
    /// Bytes per IO (a multiple of `block_len`).
    pub io_bytes: u32,
    /// The LU's logical block length.
    pub block_len: u32,
    /// First LBA of the range the load touches.
    pub start_lba: u64,
    /// Number of blocks in the range (at least one IO's worth).
    pub range_blocks: u64,
    /// paraseq: IOs per second per stream (`None`: as fast as one outstanding IO allows).
    pub stream_rate: Option<u32>,
    /// Set the FUA bit on writes.
    pub fua: bool,
}

impl WorkloadSpec {
    /// A spec without rate limit or FUA.
    pub fn new(
        pattern: Pattern,
        io_bytes: u32,
        block_len: u32,
        start_lba: u64,
        range_blocks: u64,
    ) -> Self {
        Self {
            pattern,
            io_bytes,
            block_len,
            start_lba,
            range_blocks,
            stream_rate: None,
            fua: false,
        }
    }

    /// Blocks per IO (at least 1).
    pub fn io_blocks(&self) -> u32 {
        (self.io_bytes / self.block_len.max(1)).max(1)
    }

    /// Number of whole IOs that fit the range.
    pub fn slots(&self) -> u64 {
        self.range_blocks / u64::from(self.io_blocks())
    }
}

/// One IO to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoSpec {
    /// Write (else read).
    pub write: bool,
    /// First LBA.
    pub lba: u64,
    /// Length in blocks.
    pub blocks: u32,
    /// Force unit access.
    pub fua: bool,
    /// paraseq stream index within the generator (0 otherwise).
    pub stream: u32,
    /// SYNCHRONIZE CACHE instead of a transfer (`lba`/`blocks` unused).
    pub flush: bool,
}

/// The generator's answer to "what next?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Issue this IO.
    Io(IoSpec),
    /// Nothing to issue now; ask again at this time (or after a completion when `None`).
    Wait(Option<Instant>),
}

#[derive(Debug, Clone)]
struct Stream {
    first_slot: u64,
    slots: u64,
    cursor: u64,
    write: bool,
    busy: bool,
    next_at: Option<Instant>,
}

/// Produces the IOs of one connection.
#[derive(Debug, Clone)]
pub struct Generator {
    pattern: Pattern,
    io_blocks: u32,
    start_lba: u64,
    /// Slot range this generator walks (sequential) or draws from (random).
    first_slot: u64,
    slots: u64,
    cursor: u64,
    fua: bool,
    rng: SplitMix64,
    streams: Vec<Stream>,
    interval: Option<Duration>,
    rr: usize,
}

impl Generator {
    /// The generator of connection `index` out of `count` (sequential patterns and paraseq
    /// streams split the range between connections; random patterns share it).
    pub fn new(spec: &WorkloadSpec, index: u32, count: u32, seed: u64) -> Self {
        let count = u64::from(count.max(1));
        let index = u64::from(index).min(count - 1);
        let total = spec.slots().max(1);
        let (first_slot, slots) = match spec.pattern {
            Pattern::SeqRead | Pattern::SeqWrite => split(total, count, index),
            _ => (0, total),
        };
        let mut streams = Vec::new();
        if let Pattern::ParaSeq {
            streams: n,
            read_pct,
        } = spec.pattern
        {
            let n = u64::from(n.max(1));
            // Streams are numbered globally so regions do not overlap across connections.
            let (s0, sn) = split(n, count, index);
            for s in s0..s0 + sn {
                let (f, len) = split(total, n, s);
                // Spread readers and writers evenly: stream s writes when its share of the
                // percentage crosses a whole stream.
                let write = (s * (100 - u64::from(read_pct.min(100)))) / 100
                    != ((s + 1) * (100 - u64::from(read_pct.min(100)))) / 100;
                streams.push(Stream {
                    first_slot: f,
                    slots: len.max(1),
                    cursor: 0,
                    write,
                    busy: false,
                    next_at: None,
                });
            }
        }
        let interval = spec
            .stream_rate
            .filter(|r| *r > 0)
            .map(|r| Duration::from_nanos(1_000_000_000 / u64::from(r)));
        Self {
            pattern: spec.pattern,
            io_blocks: spec.io_blocks(),
            start_lba: spec.start_lba,
            first_slot,
            slots: slots.max(1),
            cursor: 0,
            fua: spec.fua,
            rng: SplitMix64::new(seed ^ (index.wrapping_mul(0x9e37_79b9))),
            streams,
            interval,
            rr: 0,
        }
    }

    fn lba(&self, slot: u64) -> u64 {
        self.start_lba + slot * u64::from(self.io_blocks)
    }

    fn io(&self, write: bool, slot: u64, stream: u32) -> IoSpec {
        IoSpec {
            write,
            lba: self.lba(slot),
            blocks: self.io_blocks,
            fua: write && self.fua,
            stream,
            flush: false,
        }
    }

    /// The next IO, or when to ask again.
    #[inline]
    pub fn next(&mut self, now: Instant) -> Next {
        match self.pattern {
            Pattern::RandRead | Pattern::RandWrite | Pattern::RandRw { .. } => {
                let write = match self.pattern {
                    Pattern::RandRead => false,
                    Pattern::RandWrite => true,
                    Pattern::RandRw { read_pct } => self.rng.below(100) >= u64::from(read_pct),
                    _ => false,
                };
                let slot = self.first_slot + self.rng.below(self.slots);
                Next::Io(self.io(write, slot, 0))
            }
            Pattern::SeqRead | Pattern::SeqWrite => {
                let slot = self.first_slot + self.cursor;
                self.cursor = (self.cursor + 1) % self.slots;
                Next::Io(self.io(self.pattern == Pattern::SeqWrite, slot, 0))
            }
            Pattern::ParaSeq { .. } => self.next_stream(now),
        }
    }

    fn next_stream(&mut self, now: Instant) -> Next {
        let n = self.streams.len();
        let mut earliest: Option<Instant> = None;
        for k in 0..n {
            let i = (self.rr + k) % n;
            let Some(s) = self.streams.get(i) else {
                continue;
            };
            if s.busy {
                continue;
            }
            if let Some(t) = s.next_at.filter(|t| *t > now) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                continue;
            }
            let slot = s.first_slot + s.cursor;
            let write = s.write;
            let io = self.io(write, slot, i as u32);
            if let Some(s) = self.streams.get_mut(i) {
                s.busy = true;
                s.cursor = (s.cursor + 1) % s.slots;
            }
            self.rr = (i + 1) % n;
            return Next::Io(io);
        }
        Next::Wait(earliest)
    }

    /// Tells the generator an IO it produced has completed (frees a paraseq stream).
    #[inline]
    pub fn completed(&mut self, io: &IoSpec, now: Instant) {
        if let Some(s) = self.streams.get_mut(io.stream as usize) {
            s.busy = false;
            s.next_at = self.interval.map(|d| now + d);
        }
    }

    /// How many IOs this generator can have outstanding at most (`None`: unlimited).
    pub fn max_outstanding(&self) -> Option<usize> {
        match self.pattern {
            Pattern::ParaSeq { .. } => Some(self.streams.len()),
            _ => None,
        }
    }
}

/// Splits `total` items into `parts` near-equal contiguous shares; returns (first, len) of
/// share `index`.
fn split(total: u64, parts: u64, index: u64) -> (u64, u64) {
    let parts = parts.max(1);
    let base = total / parts;
    let extra = total % parts;
    let first = index * base + index.min(extra);
    let len = base + u64::from(index < extra);
    (first, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ios(g: &mut Generator, n: usize) -> Vec<IoSpec> {
        let now = Instant::now();
        (0..n)
            .map(|_| match g.next(now) {
                Next::Io(io) => io,
                Next::Wait(_) => panic!("generator stalled"),
            })
            .collect()
    }

    #[test]
    fn random_reads_stay_aligned_in_range() {
        let spec = WorkloadSpec::new(Pattern::RandRead, 4096, 512, 100, 800);
        let mut g = Generator::new(&spec, 0, 1, 1);
        for io in ios(&mut g, 2000) {
            assert!(!io.write);
            assert_eq!(io.blocks, 8);
            assert!(io.lba >= 100 && io.lba + 8 <= 900, "{io:?}");
            assert_eq!((io.lba - 100) % 8, 0);
        }
    }

    #[test]
    fn mix_respects_percentage_roughly() {
        let spec = WorkloadSpec::new(Pattern::RandRw { read_pct: 70 }, 512, 512, 0, 1 << 20);
        let mut g = Generator::new(&spec, 0, 1, 9);
        let reads = ios(&mut g, 10_000).iter().filter(|io| !io.write).count();
        assert!((6500..7500).contains(&reads), "{reads}");
        let spec = WorkloadSpec::new(Pattern::RandRw { read_pct: 0 }, 512, 512, 0, 64);
        let mut g = Generator::new(&spec, 0, 1, 9);
        assert!(ios(&mut g, 100).iter().all(|io| io.write));
    }

    #[test]
    fn sequential_connections_walk_disjoint_slices_and_wrap() {
        let mut spec = WorkloadSpec::new(Pattern::SeqWrite, 1024, 512, 0, 20);
        spec.fua = true;
        // 10 slots over 3 connections: 4, 3, 3.
        let mut g1 = Generator::new(&spec, 1, 3, 0);
        let lbas: Vec<u64> = ios(&mut g1, 4).iter().map(|io| io.lba).collect();
        assert_eq!(lbas, [8, 10, 12, 8]);
        assert!(ios(&mut g1, 1)[0].fua);
        let mut g0 = Generator::new(&spec, 0, 3, 0);
        assert_eq!(
            ios(&mut g0, 5).iter().map(|io| io.lba).collect::<Vec<_>>(),
            [0, 2, 4, 6, 0]
        );
    }

    #[test]
    fn paraseq_streams_have_one_io_each_and_honour_rate() {
        let mut spec = WorkloadSpec::new(
            Pattern::ParaSeq {
                streams: 4,
                read_pct: 50,
            },
            512,
            512,
            0,
            400,
        );
        spec.stream_rate = Some(10);
        let mut g = Generator::new(&spec, 0, 1, 0);
        assert_eq!(g.max_outstanding(), Some(4));
        let now = Instant::now();
        let first = ios(&mut g, 4);
        let lbas: Vec<u64> = first.iter().map(|io| io.lba).collect();
        assert_eq!(lbas, [0, 100, 200, 300]);
        assert_eq!(first.iter().filter(|io| io.write).count(), 2);
        // All streams busy: nothing to do until a completion.
        assert_eq!(g.next(now), Next::Wait(None));
        g.completed(&first[1], now);
        // Rate 10/s: stream 1 may go again 100 ms later, not before.
        assert_eq!(
            g.next(now),
            Next::Wait(Some(now + Duration::from_millis(100)))
        );
        let Next::Io(io) = g.next(now + Duration::from_millis(100)) else {
            panic!()
        };
        assert_eq!(io.lba, 101);
        assert_eq!(io.stream, 1);
    }

    #[test]
    fn paraseq_splits_streams_over_connections() {
        let spec = WorkloadSpec::new(
            Pattern::ParaSeq {
                streams: 4,
                read_pct: 100,
            },
            512,
            512,
            0,
            400,
        );
        let mut g = Generator::new(&spec, 1, 2, 0);
        let lbas: Vec<u64> = ios(&mut g, 2).iter().map(|io| io.lba).collect();
        assert_eq!(lbas, [200, 300]);
    }

    #[test]
    fn split_is_exact() {
        assert_eq!(split(10, 3, 0), (0, 4));
        assert_eq!(split(10, 3, 1), (4, 3));
        assert_eq!(split(10, 3, 2), (7, 3));
        assert_eq!(split(2, 4, 3), (2, 0));
    }
}
