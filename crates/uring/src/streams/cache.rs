//! Bookkeeping of the read-ahead cache: which aligned chunks are cached in which slot, which
//! are being fetched, and least-recently-used eviction.
//!
//! Sans-IO: the caller owns the chunk buffers (indexed by slot), performs the fetches and
//! reports their outcome. A write or deallocation overlapping a chunk drops it and marks an
//! overlapping fetch in flight stale, so data read before the write is never cached after it.

/// A fetch handed out by [`ReadAheadCache::begin_fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// Buffer slot to fill.
    pub slot: usize,
    /// Chunk number (chunk `n` covers bytes `n * chunk_bytes ..`).
    pub chunk: u64,
    ticket: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Fetching { ticket: u64, stale: bool },
    Valid { valid_len: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    chunk: u64,
    last_use: u64,
}

/// Where a cached request's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Buffer slot holding the chunk.
    pub slot: usize,
    /// Position of the request inside the chunk.
    pub pos: usize,
}

/// The cache's map of chunks to slots.
///
/// ```
/// use rtgt_uring::streams::ReadAheadCache;
/// let mut c = ReadAheadCache::new(1 << 20, 4);
/// assert!(c.lookup(4096, 4096).is_none());
/// let f = c.begin_fetch(0).unwrap();
/// assert!(c.finish_fetch(f, Some(1 << 20)));
/// assert_eq!(c.lookup(4096, 4096).unwrap().pos, 4096);
/// ```
#[derive(Debug, Clone)]
pub struct ReadAheadCache {
    chunk_bytes: u64,
    entries: Vec<Entry>,
    tick: u64,
    next_ticket: u64,
}

impl ReadAheadCache {
    /// A cache of `slots` chunks of `chunk_bytes` each.
    pub fn new(chunk_bytes: u64, slots: usize) -> Self {
        Self {
            chunk_bytes: chunk_bytes.max(1),
            entries: vec![
                Entry {
                    state: State::Empty,
                    chunk: 0,
                    last_use: 0
                };
                slots
            ],
            tick: 0,
            next_ticket: 1,
        }
    }

    /// Chunk size in bytes.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Number of buffer slots.
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// The chunk holding byte `offset`.
    pub fn chunk_of(&self, offset: u64) -> u64 {
        offset / self.chunk_bytes
    }

    /// Where `len` bytes at `offset` are cached, if all of them are (in one chunk).
    pub fn lookup(&mut self, offset: u64, len: u64) -> Option<Hit> {
        let chunk = self.chunk_of(offset);
        let pos = offset - chunk * self.chunk_bytes;
        self.tick += 1;
        let tick = self.tick;
        let slot = self.entries.iter().position(|e| {
            e.chunk == chunk
                && matches!(e.state, State::Valid { valid_len } if pos + len <= valid_len)
        })?;
        self.entries[slot].last_use = tick;
        Some(Hit {
            slot,
            pos: pos as usize,
        })
    }

    /// Reserve a slot to fetch `chunk` into: a free slot, else the least recently used valid
    /// one. `None` if the chunk is already cached or being fetched, or every slot is busy
    /// fetching.
    pub fn begin_fetch(&mut self, chunk: u64) -> Option<Fetch> {
        if self
            .entries
            .iter()
            .any(|e| e.chunk == chunk && e.state != State::Empty)
        {
            return None;
        }
        let slot = self
            .entries
            .iter()
            .position(|e| e.state == State::Empty)
            .or_else(|| {
                self.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| matches!(e.state, State::Valid { .. }))
                    .min_by_key(|(_, e)| e.last_use)
                    .map(|(i, _)| i)
            })?;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tick += 1;
        self.entries[slot] = Entry {
            state: State::Fetching {
                ticket,
                stale: false,
            },
            chunk,
            last_use: self.tick,
        };
        Some(Fetch {
            slot,
            chunk,
            ticket,
        })
    }

    /// Report a fetch's outcome: `Some(valid_len)` bytes read, or `None` if it failed.
    /// Returns whether the chunk is now cached (false if it failed or went stale).
    pub fn finish_fetch(&mut self, fetch: Fetch, valid_len: Option<u64>) -> bool {
        let Some(entry) = self.entries.get_mut(fetch.slot) else {
            return false;
        };
        let State::Fetching { ticket, stale } = entry.state else {
            return false;
        };
        if ticket != fetch.ticket {
            return false;
        }
        match valid_len {
            Some(valid_len) if !stale && valid_len > 0 => {
                entry.state = State::Valid { valid_len };
                true
            }
            _ => {
                entry.state = State::Empty;
                false
            }
        }
    }

    /// Forget everything overlapping `len` bytes at `offset` (after a write, unmap, zeroing).
    pub fn invalidate(&mut self, offset: u64, len: u64) {
        let first = self.chunk_of(offset);
        let last = self.chunk_of(offset + len.max(1) - 1);
        for e in &mut self.entries {
            if e.chunk < first || e.chunk > last {
                continue;
            }
            match e.state {
                State::Valid { .. } => e.state = State::Empty,
                State::Fetching { ticket, .. } => {
                    e.state = State::Fetching {
                        ticket,
                        stale: true,
                    }
                }
                State::Empty => {}
            }
        }
    }

    /// Chunks currently cached.
    pub fn cached(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.state, State::Valid { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn hit_only_inside_valid_bytes() {
        let mut c = ReadAheadCache::new(MIB, 2);
        let f = c.begin_fetch(3).expect("slot");
        assert!(c.finish_fetch(f, Some(512 << 10)));
        assert_eq!(
            c.lookup(3 * MIB, 4096),
            Some(Hit {
                slot: f.slot,
                pos: 0
            })
        );
        assert!(
            c.lookup(3 * MIB + (512 << 10), 4096).is_none(),
            "past the valid part"
        );
        assert!(c.lookup(4 * MIB - 4096, 8192).is_none(), "spans chunks");
        assert!(c.begin_fetch(3).is_none(), "already cached");
    }

    #[test]
    fn lru_eviction_and_busy_slots() {
        let mut c = ReadAheadCache::new(MIB, 2);
        let a = c.begin_fetch(0).expect("a");
        let b = c.begin_fetch(1).expect("b");
        assert!(c.begin_fetch(2).is_none(), "both slots fetching");
        assert!(c.finish_fetch(a, Some(MIB)));
        assert!(c.finish_fetch(b, Some(MIB)));
        c.lookup(0, 10); // chunk 0 recently used
        let d = c.begin_fetch(2).expect("evicts chunk 1");
        assert_eq!(d.slot, b.slot);
        assert!(c.finish_fetch(d, Some(MIB)));
        assert!(c.lookup(MIB, 10).is_none());
        assert!(c.lookup(0, 10).is_some());
        assert_eq!(c.cached(), 2);
    }

    #[test]
    fn writes_invalidate_cached_and_in_flight_chunks() {
        let mut c = ReadAheadCache::new(MIB, 4);
        let a = c.begin_fetch(0).expect("a");
        assert!(c.finish_fetch(a, Some(MIB)));
        let b = c.begin_fetch(1).expect("b");
        c.invalidate(MIB - 512, 1024); // touches chunks 0 and 1
        assert!(c.lookup(0, 512).is_none());
        assert!(
            !c.finish_fetch(b, Some(MIB)),
            "fetch overlapped by a write is dropped"
        );
        assert!(c.lookup(MIB, 512).is_none());
        let e = c.begin_fetch(5).expect("e");
        assert!(!c.finish_fetch(e, None), "failed fetch is not cached");
        assert_eq!(c.cached(), 0);
    }
}
