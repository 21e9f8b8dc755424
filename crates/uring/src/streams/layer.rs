//! The streams feature on the store's synchronous path: drives the sans-IO detector, cache
//! and coalescer with real time, buffers and threads (several callers at once). Cached data
//! follows SBC-4 §4.6 (a write, UNMAP or WRITE SAME drops what it overlaps); a coalesced
//! write is acknowledged only when its batch is on the store, as the Caching mode page
//! (SBC-4 §6.5.5) promises for the reported WCE.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rtgt_scsi::BackendError;

use super::{
    CoalesceConfig, DetectorConfig, ReadAheadCache, StreamDetector, StreamsConfig, WriteCoalescer,
    WritePlan,
};
use crate::aligned::AlignedBuf;
use crate::stats::Stats;

/// Raw read of the store below: fill the buffer from the offset.
pub(crate) type RawRead<'a> = &'a dyn Fn(u64, &mut [u8]) -> Result<(), BackendError>;
/// Raw write of the store below: offset, data, FUA.
pub(crate) type RawWrite<'a> = &'a dyn Fn(u64, &[u8], bool) -> Result<(), BackendError>;

struct ReadState {
    detector: StreamDetector,
    cache: ReadAheadCache,
    bufs: Vec<Option<AlignedBuf>>,
}

struct BatchBuf {
    id: u64,
    data: Option<AlignedBuf>,
    result: Option<Result<(), BackendError>>,
    waiters: u32,
}

struct WriteState {
    detector: StreamDetector,
    coal: WriteCoalescer,
    batches: Vec<BatchBuf>,
}

pub(crate) struct StreamLayer {
    epoch: Instant,
    size: u64,
    align: usize,
    chunk: u64,
    max_batch: u64,
    read: Mutex<ReadState>,
    write: Mutex<WriteState>,
    cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamLayer {
    pub(crate) fn new(cfg: &StreamsConfig, size: u64, align: usize) -> Self {
        let detector = StreamDetector::new(DetectorConfig {
            max_streams: cfg.max_streams,
            ..DetectorConfig::default()
        });
        let slots = (cfg.cache_bytes / cfg.readahead_bytes).max(1) as usize;
        Self {
            epoch: Instant::now(),
            size,
            align: align.max(4096),
            chunk: cfg.readahead_bytes,
            max_batch: cfg.coalesce_max_bytes,
            read: Mutex::new(ReadState {
                detector: detector.clone(),
                cache: ReadAheadCache::new(cfg.readahead_bytes, slots),
                bufs: (0..slots).map(|_| None).collect(),
            }),
            write: Mutex::new(WriteState {
                detector,
                coal: WriteCoalescer::new(CoalesceConfig {
                    window_ns: u64::try_from(cfg.coalesce_window.as_nanos()).unwrap_or(u64::MAX),
                    max_bytes: cfg.coalesce_max_bytes,
                }),
                batches: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn read(
        &self,
        offset: u64,
        buf: &mut [u8],
        stats: &Stats,
        raw: RawRead<'_>,
    ) -> Result<(), BackendError> {
        let len = buf.len() as u64;
        let mut st = lock(&self.read);
        let obs = st.detector.observe(offset, len, self.now());
        if let Some(hit) = st.cache.lookup(offset, len) {
            if let Some(chunk) = &st.bufs[hit.slot] {
                buf.copy_from_slice(&chunk.as_slice()[hit.pos..hit.pos + buf.len()]);
                Stats::add(&stats.readahead_hits, 1);
                return Ok(());
            }
        }
        if !obs.sequential || len >= self.chunk {
            drop(st);
            return raw(offset, buf);
        }
        Stats::add(&stats.readahead_misses, 1);
        let mut done = 0u64;
        while done < len {
            let cur = offset + done;
            let chunk = st.cache.chunk_of(cur);
            let chunk_off = chunk * self.chunk;
            let take = (len - done).min(chunk_off + self.chunk - cur);
            let dst = &mut buf[done as usize..(done + take) as usize];
            if let Some(hit) = st.cache.lookup(cur, take) {
                if let Some(cbuf) = &st.bufs[hit.slot] {
                    dst.copy_from_slice(&cbuf.as_slice()[hit.pos..hit.pos + dst.len()]);
                    done += take;
                    continue;
                }
            }
            let Some(fetch) = st.cache.begin_fetch(chunk) else {
                // Someone else is fetching it (or every slot is): read directly.
                drop(st);
                raw(cur, dst)?;
                done += take;
                st = lock(&self.read);
                continue;
            };
            let mut cbuf = st.bufs[fetch.slot]
                .take()
                .unwrap_or_else(|| AlignedBuf::new(self.chunk as usize, self.align));
            let valid = self.chunk.min(self.size.saturating_sub(chunk_off));
            drop(st);
            let result = raw(chunk_off, &mut cbuf.as_mut_slice()[..valid as usize]);
            st = lock(&self.read);
            st.cache
                .finish_fetch(fetch, result.as_ref().ok().map(|()| valid));
            if result.is_ok() {
                Stats::add(&stats.readahead_chunks, 1);
                let pos = (cur - chunk_off) as usize;
                dst.copy_from_slice(&cbuf.as_slice()[pos..pos + dst.len()]);
            }
            st.bufs[fetch.slot] = Some(cbuf);
            result?;
            done += take;
        }
        Ok(())
    }

    /// Drop cached data overlapping a range (before and after anything that changes it).
    pub(crate) fn invalidate(&self, offset: u64, len: u64) {
        lock(&self.read).cache.invalidate(offset, len);
    }

    fn write_now(
        &self,
        offset: u64,
        data: &[u8],
        fua: bool,
        raw: RawWrite<'_>,
    ) -> Result<(), BackendError> {
        self.invalidate(offset, data.len() as u64);
        let result = raw(offset, data, fua);
        // A fetch that read old data while the write ran must not be cached.
        self.invalidate(offset, data.len() as u64);
        result
    }

    pub(crate) fn write(
        &self,
        offset: u64,
        data: &[u8],
        fua: bool,
        stats: &Stats,
        raw: RawWrite<'_>,
    ) -> Result<(), BackendError> {
        let len = data.len() as u64;
        let mut ws = lock(&self.write);
        let now = self.now();
        let obs = ws.detector.observe(offset, len, now);
        let stream = obs.sequential.then_some(obs.stream);
        match ws.coal.plan(stream, offset, len, fua, now) {
            WritePlan::Direct => {
                drop(ws);
                let result = self.write_now(offset, data, fua, raw);
                lock(&self.write).coal.write_done(stream);
                self.cv.notify_all();
                result
            }
            WritePlan::Lead { batch } => {
                let mut buf = AlignedBuf::new(self.max_batch as usize, self.align);
                buf.set_len(data.len());
                buf.as_mut_slice().copy_from_slice(data);
                ws.batches.push(BatchBuf {
                    id: batch,
                    data: Some(buf),
                    result: None,
                    waiters: 0,
                });
                loop {
                    let now = self.now();
                    if ws.coal.ready(batch, now) {
                        break;
                    }
                    let wait = ws.coal.deadline(batch).unwrap_or(now).saturating_sub(now);
                    ws = self
                        .cv
                        .wait_timeout(ws, Duration::from_nanos(wait))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                let closed = ws.coal.close(batch);
                let data = ws
                    .batches
                    .iter_mut()
                    .find(|b| b.id == batch)
                    .and_then(|b| b.data.take());
                drop(ws);
                let result = match (closed, data) {
                    (Some(closed), Some(data)) => {
                        Stats::add(&stats.coalesced_batches, 1);
                        Stats::add(&stats.coalesced_writes, u64::from(closed.parts));
                        self.write_now(
                            closed.offset,
                            &data.as_slice()[..closed.len as usize],
                            false,
                            raw,
                        )
                    }
                    _ => Err(BackendError::Other("coalesced batch lost".into())),
                };
                let mut ws = lock(&self.write);
                if let Some(i) = ws.batches.iter().position(|b| b.id == batch) {
                    if ws.batches[i].waiters == 0 {
                        ws.batches.swap_remove(i);
                    } else {
                        ws.batches[i].result = Some(result.clone());
                    }
                }
                ws.coal.write_done(stream);
                drop(ws);
                self.cv.notify_all();
                result
            }
            WritePlan::Join { batch, pos } => {
                let Some(entry) = ws.batches.iter_mut().find(|b| b.id == batch) else {
                    return Err(BackendError::Other("coalesced batch lost".into()));
                };
                if let Some(buf) = entry.data.as_mut() {
                    let end = pos as usize + data.len();
                    buf.set_len(end);
                    buf.as_mut_slice()[pos as usize..end].copy_from_slice(data);
                }
                entry.waiters += 1;
                self.cv.notify_all();
                loop {
                    let Some(i) = ws.batches.iter().position(|b| b.id == batch) else {
                        return Err(BackendError::Other("coalesced batch lost".into()));
                    };
                    if let Some(result) = ws.batches[i].result.clone() {
                        ws.batches[i].waiters -= 1;
                        if ws.batches[i].waiters == 0 {
                            ws.batches.swap_remove(i);
                        }
                        ws.coal.write_done(stream);
                        drop(ws);
                        self.cv.notify_all();
                        return result;
                    }
                    ws = self.cv.wait(ws).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Release every batch now (SYNCHRONIZE CACHE).
    pub(crate) fn release_batches(&self) {
        lock(&self.write).coal.close_all();
        self.cv.notify_all();
    }
}
