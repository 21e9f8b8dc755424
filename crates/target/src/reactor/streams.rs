//! A reactor's share of the streams feature (see [`crate::streams`]; SBC-4 §4.6 caching):
//! per logical unit, a detector of sequential readers and one of sequential writers, a
//! read-ahead cache whose chunks are fetched on the reactor's ring (reads of a stream wait
//! for the fetch of their chunk, and the next chunk is fetched ahead), and a write coalescer
//! whose batches are written on the ring once full, due, or joined by every write of their
//! stream in flight.
//!
//! Only this reactor touches this state; other reactors' writes reach it through the logical
//! unit's write epoch.

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_session::target::TaskId;
use rtgt_uring::streams::{
    ClosedBatch, CoalesceConfig, DetectorConfig, Fetch, ReadAheadCache, StreamDetector,
    WriteCoalescer, WritePlan,
};

use super::buffers::TaskBuf;
use crate::streams::{Counter, LuStreams};

/// A task whose read waits for a read-ahead fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub sidx: usize,
    pub slot: usize,
    pub task: TaskId,
    pub offset: u64,
    pub len: usize,
    /// Position in the task buffer (`aux`: the auxiliary Data-In buffer).
    pub pos: usize,
    pub aux: bool,
}

/// A task whose write is part of a coalesced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub sidx: usize,
    pub slot: usize,
    pub task: TaskId,
    pub stream: u64,
}

struct Pending {
    fetch: Fetch,
    waiters: Vec<Waiter>,
}

/// A coalesced batch being filled or written.
pub(crate) struct WBatch {
    pub id: u64,
    /// `None` while the ring writes it.
    pub buf: Option<Box<TaskBuf>>,
    pub members: Vec<Member>,
    pub closed: Option<ClosedBatch>,
}

/// What to do with a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStep {
    /// Served from the cache (already copied).
    Hit,
    /// Park the task on the fetch into this cache slot.
    Wait(usize),
    /// Read it from the store as usual.
    Direct,
}

/// What to do with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteStep {
    /// Write it as usual; report `stream` done afterwards.
    Direct(Option<u64>),
    /// Copy the data into batch number `index` at `pos` and join it as a write of `stream`.
    Batch {
        index: usize,
        pos: usize,
        stream: u64,
    },
}

/// A fetch to submit: cache slot, file offset, length.
pub(crate) type FetchOp = (usize, u64, usize);

/// This reactor's streams state of logical unit `l` (created on first use), if the feature is
/// on for it.
pub(crate) fn state_for<'a>(
    streams: &'a mut Vec<Option<ReactorStreams>>,
    l: &crate::runtime::LunRuntime,
    reactors: usize,
) -> Option<&'a mut ReactorStreams> {
    let lus = l.streams.as_ref()?;
    let crate::runtime::Backend::File(store) = &l.backend else {
        return None;
    };
    if streams.len() <= l.index {
        streams.resize_with(l.index + 1, || None);
    }
    let rs = streams.get_mut(l.index)?;
    Some(rs.get_or_insert_with(|| {
        let b = store.backing();
        let mut rs = ReactorStreams::new(
            lus.clone(),
            reactors,
            b.size_bytes(),
            b.alignment().memory(),
        );
        rs.file = Some(super::core::RingFile::of(store));
        rs
    }))
}

/// One logical unit's streams state on this reactor.
pub(crate) struct ReactorStreams {
    pub lu: Arc<LuStreams>,
    epoch0: Instant,
    reads: StreamDetector,
    writes: StreamDetector,
    cache: ReadAheadCache,
    bufs: Vec<Option<Box<TaskBuf>>>,
    pending: Vec<Pending>,
    /// Fetches begun and not yet handed to the ring.
    pub to_submit: Vec<FetchOp>,
    mine: u64,
    seen_foreign: u64,
    coal: WriteCoalescer,
    pub batches: Vec<WBatch>,
    /// The store's file (for batch writes).
    pub file: Option<super::core::RingFile>,
    size: u64,
    align: usize,
}

impl ReactorStreams {
    /// State for a logical unit of `size` bytes whose store wants `align`-aligned memory, on
    /// one of `reactors` reactors (the cache memory is shared out among them).
    pub(crate) fn new(lu: Arc<LuStreams>, reactors: usize, size: u64, align: usize) -> Self {
        let s = lu.settings;
        let detector = StreamDetector::new(DetectorConfig {
            max_streams: s.max_streams,
            ..DetectorConfig::default()
        });
        let slots = ((s.cache_bytes / s.chunk) as usize / reactors.max(1)).max(2);
        let epoch = lu.epoch();
        Self {
            epoch0: Instant::now(),
            reads: detector.clone(),
            writes: detector,
            cache: ReadAheadCache::new(s.chunk, slots),
            bufs: (0..slots).map(|_| None).collect(),
            pending: Vec::new(),
            to_submit: Vec::new(),
            mine: 0,
            seen_foreign: epoch,
            coal: WriteCoalescer::new(CoalesceConfig {
                window_ns: u64::try_from(s.window.as_nanos()).unwrap_or(u64::MAX),
                max_bytes: s.combine_max,
            }),
            batches: Vec::new(),
            file: None,
            size,
            align: align.max(4096),
            lu,
        }
    }

    fn now_ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops the whole cache if another reactor (or a synchronous path) wrote since we last
    /// looked.
    fn sync_epoch(&mut self) {
        let foreign = self.lu.epoch().wrapping_sub(self.mine);
        if foreign != self.seen_foreign {
            self.cache.invalidate(0, u64::MAX);
            self.seen_foreign = foreign;
        }
    }

    // The ring takes its memory boxed.
    #[allow(clippy::unnecessary_box_returns)]
    fn aligned(&self, len: usize) -> Box<TaskBuf> {
        let mut b = rtgt_uring::AlignedBuf::new(len, self.align);
        b.set_len(len);
        Box::new(TaskBuf::Aligned(b))
    }

    /// The buffer of cache slot `slot`, lent to a fetch.
    #[allow(clippy::unnecessary_box_returns)]
    pub(crate) fn lend_fetch_buf(&mut self, slot: usize) -> Box<TaskBuf> {
        match self.bufs.get_mut(slot).and_then(Option::take) {
            Some(b) => b,
            None => self.aligned(self.lu.settings.chunk as usize),
        }
    }

    fn begin_fetch(&mut self, chunk: u64) -> Option<usize> {
        let start = chunk.checked_mul(self.cache.chunk_bytes())?;
        if start >= self.size {
            return None;
        }
        let fetch = self.cache.begin_fetch(chunk)?;
        let len = self.cache.chunk_bytes().min(self.size - start) as usize;
        self.to_submit.push((fetch.slot, start, len));
        self.pending.push(Pending {
            fetch,
            waiters: Vec::new(),
        });
        Some(fetch.slot)
    }

    fn copy_hit(&mut self, offset: u64, dst: &mut [u8]) -> bool {
        let Some(hit) = self.cache.lookup(offset, dst.len() as u64) else {
            return false;
        };
        let src = self
            .bufs
            .get(hit.slot)
            .and_then(Option::as_ref)
            .and_then(|b| b.as_slice().get(hit.pos..hit.pos + dst.len()));
        match src {
            Some(src) => {
                dst.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    /// Decides a read of `dst.len()` bytes at `offset` on the ring (copying it when the cache
    /// has it); fetches begun meanwhile are in [`Self::to_submit`].
    pub(crate) fn read(&mut self, now: Instant, offset: u64, dst: &mut [u8]) -> ReadStep {
        if !self.lu.settings.read_ahead {
            return ReadStep::Direct;
        }
        self.sync_epoch();
        let len = dst.len() as u64;
        let obs = self.reads.observe(offset, len, self.now_ns(now));
        let chunk = self.cache.chunk_of(offset);
        if self.copy_hit(offset, dst) {
            self.lu.count(Counter::Hit, 1);
            if obs.sequential {
                self.begin_fetch(chunk + 1);
            }
            return ReadStep::Hit;
        }
        let chunk_end = (chunk + 1).saturating_mul(self.cache.chunk_bytes());
        if !obs.sequential || len >= self.cache.chunk_bytes() || offset + len > chunk_end {
            return ReadStep::Direct;
        }
        self.lu.count(Counter::Miss, 1);
        let step = match self.pending.iter().find(|p| p.fetch.chunk == chunk) {
            Some(p) => ReadStep::Wait(p.fetch.slot),
            None => self
                .begin_fetch(chunk)
                .map_or(ReadStep::Direct, ReadStep::Wait),
        };
        self.begin_fetch(chunk + 1);
        step
    }

    /// Parks `w` on the fetch into cache slot `slot`.
    pub(crate) fn park(&mut self, slot: usize, w: Waiter) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.fetch.slot == slot) {
            p.waiters.push(w);
        }
    }

    /// The fetch into cache slot `slot` completed with `res` (bytes or -errno); its buffer is
    /// back. Returns the tasks that waited for it.
    pub(crate) fn fetch_done(&mut self, slot: usize, res: i32, buf: Box<TaskBuf>) -> Vec<Waiter> {
        if let Some(b) = self.bufs.get_mut(slot) {
            *b = Some(buf);
        }
        // A write elsewhere during the fetch marks it stale (see `sync_epoch`).
        self.sync_epoch();
        let Some(i) = self.pending.iter().position(|p| p.fetch.slot == slot) else {
            return Vec::new();
        };
        let p = self.pending.swap_remove(i);
        let valid = u64::try_from(res).ok().filter(|&n| n > 0);
        if self.cache.finish_fetch(p.fetch, valid) {
            self.lu.count(Counter::Chunk, 1);
        }
        p.waiters
    }

    /// Copies a waiter's data from the cache; false when the fetch did not bring it (failed,
    /// short or overtaken by a write): read it from the store then.
    pub(crate) fn serve(&mut self, w: &Waiter, dst: &mut [u8]) -> bool {
        w.len == dst.len() && self.copy_hit(w.offset, dst)
    }

    /// Synchronous read-ahead (readiness engine, files in memory): serves `dst` from the cache,
    /// or for a sequential stream fetches its chunk with `pread` first. `None`: read it
    /// directly.
    pub(crate) fn read_sync(
        &mut self,
        file: &File,
        now: Instant,
        offset: u64,
        dst: &mut [u8],
    ) -> Option<std::io::Result<()>> {
        use std::os::unix::fs::FileExt;
        match self.read(now, offset, dst) {
            ReadStep::Hit => Some(Ok(())),
            ReadStep::Direct => {
                self.to_submit.clear();
                self.pending.retain(|p| !p.waiters.is_empty());
                None
            }
            ReadStep::Wait(slot) => {
                // Fetch only the chunk this read needs; read-ahead beyond it would stall the
                // reactor.
                let fetches = core::mem::take(&mut self.to_submit);
                let mut result = None;
                for (s, start, len) in fetches {
                    let mut buf = self.lend_fetch_buf(s);
                    let res = if s == slot {
                        let area = buf.as_mut_slice().get_mut(..len).unwrap_or(&mut []);
                        let mut done = 0;
                        let mut err = None;
                        while done < area.len() {
                            match file.read_at(&mut area[done..], start + done as u64) {
                                Ok(0) => break,
                                Ok(n) => done += n,
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                Err(e) => {
                                    err = Some(e);
                                    break;
                                }
                            }
                        }
                        match err {
                            Some(e) => {
                                result = Some(Err(e));
                                -1
                            }
                            None => done as i32,
                        }
                    } else {
                        -libc::ECANCELED
                    };
                    self.fetch_done(s, res, buf);
                }
                match result {
                    Some(e) => Some(e),
                    None if self.copy_hit(offset, dst) => Some(Ok(())),
                    None => None,
                }
            }
        }
    }

    /// Drops cached data overlapping a range about to be written.
    pub(crate) fn invalidate(&mut self, offset: u64, len: u64) {
        self.cache.invalidate(offset, len);
    }

    /// A write by this reactor completed: drop what it overlapped and tell the other reactors.
    pub(crate) fn after_write(&mut self, offset: u64, len: u64) {
        self.cache.invalidate(offset, len);
        self.mine = self.mine.wrapping_add(1);
        self.lu.bump();
    }

    /// Decides a write of `len` bytes at `offset` on the ring.
    pub(crate) fn plan_write(
        &mut self,
        now: Instant,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> WriteStep {
        if !self.lu.settings.write_combine {
            return WriteStep::Direct(None);
        }
        let now_ns = self.now_ns(now);
        let obs = self.writes.observe(offset, len, now_ns);
        let stream = obs.sequential.then_some(obs.stream);
        match self.coal.plan(stream, offset, len, fua, now_ns) {
            WritePlan::Direct => WriteStep::Direct(stream),
            WritePlan::Lead { batch } => {
                let buf = self.aligned(self.lu.settings.combine_max as usize);
                self.batches.push(WBatch {
                    id: batch,
                    buf: Some(buf),
                    members: Vec::new(),
                    closed: None,
                });
                WriteStep::Batch {
                    index: self.batches.len() - 1,
                    pos: 0,
                    stream: stream.unwrap_or_default(),
                }
            }
            WritePlan::Join { batch, pos } => match self.batches.iter().position(|b| b.id == batch)
            {
                Some(index) => WriteStep::Batch {
                    index,
                    pos: pos as usize,
                    stream: stream.unwrap_or_default(),
                },
                None => WriteStep::Direct(stream),
            },
        }
    }

    /// A write planned [`WriteStep::Direct`] with `stream` completed.
    pub(crate) fn write_done(&mut self, stream: Option<u64>) {
        self.coal.write_done(stream);
    }

    /// Batches due now (closed; their buffers are still in them): index in `batches`.
    pub(crate) fn due_batches(&mut self, now: Instant, out: &mut Vec<usize>) {
        let now_ns = self.now_ns(now);
        for (i, b) in self.batches.iter_mut().enumerate() {
            if b.closed.is_none() && self.coal.ready(b.id, now_ns) {
                b.closed = self.coal.close(b.id);
                if b.closed.is_some() {
                    out.push(i);
                }
            }
        }
    }

    /// When the earliest open batch falls due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.batches
            .iter()
            .filter(|b| b.closed.is_none())
            .filter_map(|b| self.coal.deadline(b.id))
            .min()
            .map(|ns| self.epoch0 + Duration::from_nanos(ns))
    }

    /// SYNCHRONIZE CACHE: every open batch is due now.
    pub(crate) fn close_all(&mut self) {
        self.coal.close_all();
    }

    /// Batch `id` was written (or failed): removes it, accounts for its writes and returns it.
    pub(crate) fn batch_done(&mut self, id: u64) -> Option<WBatch> {
        let i = self.batches.iter().position(|b| b.id == id)?;
        let b = self.batches.swap_remove(i);
        for m in &b.members {
            self.coal.write_done(Some(m.stream));
        }
        self.lu
            .count(Counter::CoalescedWrites, b.members.len() as u64);
        self.lu.count(Counter::Batch, 1);
        if let Some(c) = b.closed {
            self.after_write(c.offset, c.len);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::streams::StreamsSettings;

    fn rs(chunk_kib: u64) -> ReactorStreams {
        let cfg = config::StreamsConfig {
            read_ahead_size: config::ByteSize::kib(chunk_kib),
            cache_size: config::ByteSize::kib(chunk_kib * 8),
            ..config::StreamsConfig::default()
        };
        let lu = Arc::new(LuStreams::new(
            StreamsSettings::resolve(&cfg, true).unwrap(),
        ));
        ReactorStreams::new(lu, 1, 16 << 20, 512)
    }

    #[test]
    fn sequential_reader_waits_for_its_chunk_then_hits() {
        let mut s = rs(64);
        let now = Instant::now();
        let mut dst = [0u8; 4096];
        // Not sequential yet: direct.
        assert_eq!(s.read(now, 0, &mut dst), ReadStep::Direct);
        assert_eq!(s.read(now, 4096, &mut dst), ReadStep::Direct);
        // Third in a row: the chunk (and the next) are fetched, the read waits.
        let ReadStep::Wait(slot) = s.read(now, 8192, &mut dst) else {
            panic!("wait for the fetch")
        };
        let fetches = core::mem::take(&mut s.to_submit);
        assert_eq!(fetches.len(), 2);
        assert_eq!((fetches[0].0, fetches[0].1, fetches[0].2), (slot, 0, 65536));
        assert_eq!((fetches[1].1, fetches[1].2), (65536, 65536));
        s.park(
            slot,
            Waiter {
                sidx: 0,
                slot: 0,
                task: TaskId::from_raw(0),
                offset: 8192,
                len: 4096,
                pos: 0,
                aux: false,
            },
        );
        let mut buf = s.lend_fetch_buf(slot);
        buf.as_mut_slice()[8192..12288].fill(0xab);
        let waiters = s.fetch_done(slot, 65536, buf);
        assert_eq!(waiters.len(), 1);
        assert!(s.serve(&waiters[0], &mut dst));
        assert_eq!(dst, [0xab; 4096]);
        // The next read of the stream hits.
        assert_eq!(s.read(now, 12288, &mut dst), ReadStep::Hit);
        // A write of ours drops the chunks it overlaps (the one being fetched is marked
        // stale); a write elsewhere drops everything.
        s.after_write(70000, 512);
        let mut buf = s.lend_fetch_buf(fetches[1].0);
        buf.as_mut_slice().fill(1);
        assert!(s.fetch_done(fetches[1].0, 65536, buf).is_empty());
        assert_eq!(s.read(now, 16384, &mut dst), ReadStep::Hit);
        let mut far = [0u8; 4096];
        assert_ne!(
            s.read(now, 65536, &mut far),
            ReadStep::Hit,
            "stale fetch not cached"
        );
        s.lu.bump();
        assert_ne!(s.read(now, 20480, &mut dst), ReadStep::Hit);
        let st = s.lu.stats();
        assert_eq!((st.readahead_hits, st.readahead_chunks), (2, 1));
        assert!(st.readahead_misses >= 1);
    }

    #[test]
    fn adjacent_writes_form_a_batch_and_fua_goes_direct() {
        let mut s = rs(64);
        let now = Instant::now();
        let w = 8192u64;
        let mut steps = Vec::new();
        for i in 0..5u64 {
            steps.push(s.plan_write(now, i * w, w, false));
        }
        // The first writes of a stream go direct until it is sequential and one is in flight.
        assert!(matches!(steps[0], WriteStep::Direct(_)));
        let batched: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                WriteStep::Batch { index, pos, .. } => Some((*index, *pos)),
                WriteStep::Direct(_) => None,
            })
            .collect();
        assert!(batched.len() >= 2, "{steps:?}");
        assert_eq!(batched[1].1 - batched[0].1, w as usize);
        assert_eq!(
            s.plan_write(now, 5 * w, w, true),
            WriteStep::Direct(Some(1))
        );
        // Due at the latest after the window.
        let mut due = Vec::new();
        s.due_batches(now + Duration::from_secs(1), &mut due);
        assert_eq!(due.len(), 1);
        let id = s.batches[due[0]].id;
        let b = s.batch_done(id).expect("batch");
        assert_eq!(b.closed.map(|c| c.len), Some(w * batched.len() as u64));
        assert_eq!(s.lu.stats().coalesced_batches, 1);
    }
}
