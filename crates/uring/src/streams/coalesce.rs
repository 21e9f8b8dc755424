//! Planning of write coalescing: adjacent small writes of one sequential stream that are in
//! flight together go to the store as one larger write.
//!
//! Sans-IO: time is passed in, the caller executes the plan. Durability is unchanged by
//! construction: a write is acknowledged only when the batch holding it has completed, in the
//! same mode (buffered/O_DIRECT/O_DSYNC) as an uncoalesced write. A write with FUA (SBC-4
//! §5.46) is never held back, and [`WriteCoalescer::close_all`] lets SYNCHRONIZE CACHE
//! (SBC-4 §5.26) release every batch at once. A batch waits at most the window, and not even
//! that once every in-flight write of its stream has joined it (no more can arrive until one
//! completes, so waiting would only add latency).

/// Tuning of the coalescer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Longest time (ns) a batch waits for more writes.
    pub window_ns: u64,
    /// Largest batch in bytes.
    pub max_bytes: u64,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            window_ns: 1_000_000,
            max_bytes: 1 << 20,
        }
    }
}

/// What to do with one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePlan {
    /// Write it on its own, now.
    Direct,
    /// Open batch `batch` with this write at its start and wait for followers.
    Lead {
        /// Batch id.
        batch: u64,
    },
    /// Append this write to open batch `batch` at byte `pos` of the batch.
    Join {
        /// Batch id.
        batch: u64,
        /// Position of this write's data inside the batch.
        pos: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    id: u64,
    stream: u64,
    start: u64,
    end: u64,
    deadline_ns: u64,
    parts: u32,
}

/// A closed batch, ready to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedBatch {
    /// File offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Writes in it.
    pub parts: u32,
}

/// Open batches and per-stream in-flight counts.
///
/// ```
/// use rtgt_uring::streams::{CoalesceConfig, WriteCoalescer, WritePlan};
/// let mut c = WriteCoalescer::new(CoalesceConfig::default());
/// assert_eq!(c.plan(Some(1), 0, 4096, false, 0), WritePlan::Direct); // nothing to join yet
/// let WritePlan::Lead { batch } = c.plan(Some(1), 4096, 4096, false, 0) else { panic!() };
/// assert_eq!(c.plan(Some(1), 8192, 4096, false, 0), WritePlan::Join { batch, pos: 4096 });
/// assert_eq!(c.plan(Some(1), 12288, 4096, true, 0), WritePlan::Direct); // FUA never waits
/// ```
#[derive(Debug, Clone)]
pub struct WriteCoalescer {
    cfg: CoalesceConfig,
    open: Vec<Batch>,
    in_flight: Vec<(u64, u32)>,
    next_id: u64,
}

impl WriteCoalescer {
    /// No batches, nothing in flight.
    pub fn new(cfg: CoalesceConfig) -> Self {
        Self {
            cfg,
            open: Vec::new(),
            in_flight: Vec::new(),
            next_id: 1,
        }
    }

    fn in_flight_of(&self, stream: u64) -> u32 {
        self.in_flight
            .iter()
            .find(|(s, _)| *s == stream)
            .map_or(0, |(_, n)| *n)
    }

    /// Plan a write of `len` bytes at `offset`. `stream` is the sequential stream it belongs
    /// to (`None` for random writes). Every planned write of a stream must be reported with
    /// [`write_done`](Self::write_done) when it completes.
    pub fn plan(
        &mut self,
        stream: Option<u64>,
        offset: u64,
        len: u64,
        fua: bool,
        now_ns: u64,
    ) -> WritePlan {
        let Some(stream) = stream else {
            return WritePlan::Direct;
        };
        let others = self.in_flight_of(stream);
        match self.in_flight.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, n)) => *n += 1,
            None => self.in_flight.push((stream, 1)),
        }
        if fua {
            return WritePlan::Direct;
        }
        let max = self.cfg.max_bytes;
        if let Some(b) = self
            .open
            .iter_mut()
            .find(|b| b.stream == stream && b.end == offset && b.end - b.start + len <= max)
        {
            let pos = b.end - b.start;
            b.end += len;
            b.parts += 1;
            return WritePlan::Join { batch: b.id, pos };
        }
        if others == 0 || len >= max {
            return WritePlan::Direct;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.push(Batch {
            id,
            stream,
            start: offset,
            end: offset + len,
            deadline_ns: now_ns.saturating_add(self.cfg.window_ns),
            parts: 1,
        });
        WritePlan::Lead { batch: id }
    }

    /// Whether open batch `batch` should be written now; also true for a batch that is no
    /// longer open.
    pub fn ready(&self, batch: u64, now_ns: u64) -> bool {
        let Some(b) = self.open.iter().find(|b| b.id == batch) else {
            return true;
        };
        now_ns >= b.deadline_ns
            || b.end - b.start >= self.cfg.max_bytes
            || b.parts >= self.in_flight_of(b.stream)
    }

    /// The deadline of open batch `batch`.
    pub fn deadline(&self, batch: u64) -> Option<u64> {
        self.open
            .iter()
            .find(|b| b.id == batch)
            .map(|b| b.deadline_ns)
    }

    /// Close batch `batch` (no more joins) and return what to write.
    pub fn close(&mut self, batch: u64) -> Option<ClosedBatch> {
        let i = self.open.iter().position(|b| b.id == batch)?;
        let b = self.open.swap_remove(i);
        Some(ClosedBatch {
            offset: b.start,
            len: b.end - b.start,
            parts: b.parts,
        })
    }

    /// Make every open batch ready at once (SYNCHRONIZE CACHE must not wait for windows).
    pub fn close_all(&mut self) {
        for b in &mut self.open {
            b.deadline_ns = 0;
        }
    }

    /// A write of `stream` completed (whatever its plan was).
    pub fn write_done(&mut self, stream: Option<u64>) {
        let Some(stream) = stream else { return };
        if let Some(i) = self.in_flight.iter().position(|(s, _)| *s == stream) {
            self.in_flight[i].1 -= 1;
            if self.in_flight[i].1 == 0 {
                self.in_flight.swap_remove(i);
            }
        }
    }

    /// Batches open.
    pub fn open_batches(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 65536;

    #[test]
    fn random_and_lone_writes_go_direct() {
        let mut c = WriteCoalescer::new(CoalesceConfig::default());
        assert_eq!(c.plan(None, 0, W, false, 0), WritePlan::Direct);
        assert_eq!(c.plan(Some(7), 0, W, false, 0), WritePlan::Direct);
        c.write_done(Some(7));
        // Queue depth 1: the next write again finds nothing in flight.
        assert_eq!(c.plan(Some(7), W, W, false, 1), WritePlan::Direct);
        assert_eq!(c.open_batches(), 0);
    }

    #[test]
    fn queued_adjacent_writes_form_a_batch() {
        let mut c = WriteCoalescer::new(CoalesceConfig::default());
        assert_eq!(c.plan(Some(1), 0, W, false, 0), WritePlan::Direct);
        let WritePlan::Lead { batch } = c.plan(Some(1), W, W, false, 10) else {
            panic!("lead")
        };
        assert!(
            !c.ready(batch, 11),
            "one write of the stream is still outside"
        );
        assert_eq!(
            c.plan(Some(1), 2 * W, W, false, 12),
            WritePlan::Join { batch, pos: W }
        );
        assert_eq!(
            c.plan(Some(1), 3 * W, W, false, 13),
            WritePlan::Join { batch, pos: 2 * W }
        );
        assert!(!c.ready(batch, 14));
        c.write_done(Some(1)); // the direct write completes: all in-flight writes joined
        assert!(c.ready(batch, 15));
        assert_eq!(
            c.close(batch),
            Some(ClosedBatch {
                offset: W,
                len: 3 * W,
                parts: 3
            })
        );
        let next = c.plan(Some(1), 4 * W, W, false, 16);
        assert_eq!(
            next,
            WritePlan::Lead { batch: batch + 1 },
            "a closed batch takes no joins"
        );
    }

    #[test]
    fn window_size_and_flush_close_batches() {
        let cfg = CoalesceConfig {
            window_ns: 1000,
            max_bytes: 4 * W,
        };
        let mut c = WriteCoalescer::new(cfg);
        c.plan(Some(1), 0, W, false, 0);
        c.plan(Some(1), 100 * W, W, false, 0); // another direct write in flight
        let WritePlan::Lead { batch } = c.plan(Some(1), W, W, false, 0) else {
            panic!("lead")
        };
        assert_eq!(c.deadline(batch), Some(1000));
        assert!(!c.ready(batch, 999));
        assert!(c.ready(batch, 1000), "window elapsed");
        c.plan(Some(1), 2 * W, W, false, 1);
        c.plan(Some(1), 3 * W, W, false, 1);
        assert_eq!(
            c.plan(Some(1), 4 * W, W, false, 1),
            WritePlan::Join { batch, pos: 3 * W }
        );
        assert!(c.ready(batch, 2), "full");
        assert_eq!(
            c.plan(Some(1), 5 * W, W, false, 2),
            WritePlan::Lead { batch: batch + 1 }
        );
        c.close_all();
        assert!(c.ready(batch + 1, 3), "flush releases batches");
    }

    #[test]
    fn fua_is_never_held_and_streams_do_not_mix() {
        let mut c = WriteCoalescer::new(CoalesceConfig::default());
        c.plan(Some(1), 0, W, false, 0);
        let WritePlan::Lead { batch } = c.plan(Some(1), W, W, false, 0) else {
            panic!("lead")
        };
        assert_eq!(c.plan(Some(1), 2 * W, W, true, 0), WritePlan::Direct);
        assert_eq!(c.plan(Some(2), 2 * W, W, false, 0), WritePlan::Direct);
        assert_eq!(c.close(batch).map(|b| b.parts), Some(1));
        assert!(c.ready(batch, 0), "a closed batch is ready");
    }
}
