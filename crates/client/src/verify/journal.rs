//! The verify journal: an append-only local file recording every write issued, acknowledged
//! or failed, and every SYNCHRONIZE CACHE (SBC-4 §5.27) that completed, so that a later run can
//! say which acknowledged writes a target lost after a crash.
//!
//! Layout: a header (magic `RTGTJRN1`, block length, seed, first LBA, block count, URL), then
//! fixed 32-byte records. A truncated last record (the tool itself died mid-write) is ignored
//! on replay. Records are buffered and `fsync`ed in batches and at the end of a run; a write
//! is always journaled as issued before it is sent.
//!
//! ```
//! use rtgt_client::verify::journal::{Journal, JournalHeader, Replay};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("j");
//! let h = JournalHeader { block_len: 512, seed: 1, first_lba: 0, blocks: 64, url: "iscsi://x/y/0".into() };
//! let mut j = Journal::create(&path, &h)?;
//! j.issued(1, 8, 2, false)?;
//! j.acked(1)?;
//! j.sync()?;
//! let r = Replay::read(&path)?;
//! assert_eq!(r.header, h);
//! assert_eq!(r.expectation(8).unwrap().acked, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const MAGIC: [u8; 8] = *b"RTGTJRN1";
const RECORD: usize = 32;

const ISSUED: u8 = b'W';
const ACKED: u8 = b'A';
const FAILED: u8 = b'F';
const FLUSH_ISSUED: u8 = b'S';
const FLUSH_DONE: u8 = b'D';

/// How often buffered records are forced to disk during a run.
const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// What the journal is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalHeader {
    /// Logical block length of the LU.
    pub block_len: u32,
    /// Seed of the stamps.
    pub seed: u64,
    /// First LBA of the range.
    pub first_lba: u64,
    /// Blocks in the range.
    pub blocks: u64,
    /// URL of the LU (without secrets).
    pub url: String,
}

/// The writing side.
#[derive(Debug)]
pub struct Journal {
    out: BufWriter<File>,
    last_sync: Instant,
}

fn record(kind: u8, flags: u8, blocks: u32, a: u64, b: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind;
    r[1] = flags;
    r[4..8].copy_from_slice(&blocks.to_le_bytes());
    r[8..16].copy_from_slice(&a.to_le_bytes());
    r[16..24].copy_from_slice(&b.to_le_bytes());
    let crc = rtgt_pdu::crc32c(&r[..24]);
    r[24..28].copy_from_slice(&crc.to_le_bytes());
    r
}

impl Journal {
    /// Creates (truncates) the journal and writes its header, durably.
    pub fn create(path: &Path, h: &JournalHeader) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(&MAGIC)?;
        out.write_all(&h.block_len.to_le_bytes())?;
        out.write_all(&h.seed.to_le_bytes())?;
        out.write_all(&h.first_lba.to_le_bytes())?;
        out.write_all(&h.blocks.to_le_bytes())?;
        let url = h.url.as_bytes();
        let len = u16::try_from(url.len()).unwrap_or(u16::MAX);
        out.write_all(&len.to_le_bytes())?;
        out.write_all(url.get(..usize::from(len)).unwrap_or(url))?;
        let mut j = Self {
            out,
            last_sync: Instant::now(),
        };
        j.sync()?;
        Ok(j)
    }

    /// A write of `blocks` blocks at `lba` with generation `generation` is about to be sent.
    pub fn issued(&mut self, generation: u64, lba: u64, blocks: u32, fua: bool) -> io::Result<()> {
        self.out
            .write_all(&record(ISSUED, u8::from(fua), blocks, generation, lba))
    }

    /// The write completed with GOOD status.
    pub fn acked(&mut self, generation: u64) -> io::Result<()> {
        self.out.write_all(&record(ACKED, 0, 0, generation, 0))
    }

    /// The write completed with an error: its blocks hold old or new data.
    pub fn failed(&mut self, generation: u64) -> io::Result<()> {
        self.out.write_all(&record(FAILED, 0, 0, generation, 0))
    }

    /// A SYNCHRONIZE CACHE was sent; `id` names it.
    pub fn flush_issued(&mut self, id: u64) -> io::Result<()> {
        self.out.write_all(&record(FLUSH_ISSUED, 0, 0, id, 0))
    }

    /// The SYNCHRONIZE CACHE `id` completed: every write acknowledged before it was issued is
    /// durable.
    pub fn flush_done(&mut self, id: u64) -> io::Result<()> {
        self.out.write_all(&record(FLUSH_DONE, 0, 0, id, 0))
    }

    /// Forces buffered records to disk if the last sync is older than the batch interval.
    pub fn maybe_sync(&mut self, now: Instant) -> io::Result<()> {
        if now.duration_since(self.last_sync) >= SYNC_INTERVAL {
            self.sync()?;
            self.last_sync = now;
        }
        Ok(())
    }

    /// Writes buffered records and `fsync`s the file.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// What the journal says a block should contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// Generation of the last acknowledged write.
    pub acked: Option<u64>,
    /// Whether that write was durable (FUA, or acknowledged before a completed flush).
    pub durable: bool,
    /// Generations issued later without an acknowledgement (in flight, failed or lost): the
    /// block may hold any of them.
    pub pending: Vec<u64>,
}

impl Expectation {
    /// Whether `generation` is an acceptable content.
    pub fn allows(&self, generation: u64) -> bool {
        self.acked == Some(generation) || self.pending.contains(&generation)
    }
}

/// The journal read back.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Its header.
    pub header: JournalHeader,
    /// Per LBA (absolute) what it should contain.
    pub blocks: HashMap<u64, Expectation>,
    /// Records replayed.
    pub records: u64,
    /// Bytes of a truncated last record that were ignored.
    pub truncated: usize,
    /// Records with a bad checksum (ignored).
    pub corrupt: u64,
}

impl Replay {
    /// Reads and replays a journal.
    pub fn read(path: &Path) -> io::Result<Self> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let bad = |m: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("journal {}: {m}", path.display()),
            )
        };
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(bad("not an rtgt verify journal"));
        }
        let u32_at = |o: usize| {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |o: usize| {
            bytes
                .get(o..o + 8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        };
        let (Some(block_len), Some(seed), Some(first_lba), Some(blocks)) =
            (u32_at(8), u64_at(12), u64_at(20), u64_at(28))
        else {
            return Err(bad("truncated header"));
        };
        let url_len = bytes
            .get(36..38)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| bad("truncated header"))?;
        let url = bytes
            .get(38..38 + url_len)
            .ok_or_else(|| bad("truncated header"))?;
        let header = JournalHeader {
            block_len,
            seed,
            first_lba,
            blocks,
            url: String::from_utf8_lossy(url).into_owned(),
        };
        let body = bytes.get(38 + url_len..).unwrap_or(&[]);
        let mut replay = Self {
            header,
            blocks: HashMap::new(),
            records: 0,
            truncated: body.len() % RECORD,
            corrupt: 0,
        };
        // generation -> (lba, blocks, fua)
        let mut writes: HashMap<u64, (u64, u32, bool)> = HashMap::new();
        // Writes acknowledged but not yet covered by a completed flush.
        let mut volatile: Vec<u64> = Vec::new();
        // flush id -> the volatile writes it covers.
        let mut flushes: HashMap<u64, Vec<u64>> = HashMap::new();
        for r in body.chunks_exact(RECORD) {
            let crc = u32::from_le_bytes([r[24], r[25], r[26], r[27]]);
            if rtgt_pdu::crc32c(&r[..24]) != crc {
                replay.corrupt += 1;
                continue;
            }
            replay.records += 1;
            let n = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            let a = u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
            let b = u64::from_le_bytes([r[16], r[17], r[18], r[19], r[20], r[21], r[22], r[23]]);
            match r[0] {
                ISSUED => {
                    writes.insert(a, (b, n, r[1] & 1 != 0));
                    for lba in b..b + u64::from(n) {
                        replay.blocks.entry(lba).or_default().pending.push(a);
                    }
                }
                ACKED => {
                    let Some(&(lba0, n, fua)) = writes.get(&a) else {
                        continue;
                    };
                    for lba in lba0..lba0 + u64::from(n) {
                        let e = replay.blocks.entry(lba).or_default();
                        // Pending generations older than this acknowledged one can no longer
                        // be the content: SCSI orders acknowledged writes.
                        e.pending.retain(|g| *g > a);
                        if e.acked.is_none_or(|old| old < a) {
                            e.acked = Some(a);
                            e.durable = fua;
                        }
                    }
                    if !fua {
                        volatile.push(a);
                    }
                }
                FAILED => {}
                FLUSH_ISSUED => {
                    flushes.insert(a, std::mem::take(&mut volatile));
                }
                FLUSH_DONE => {
                    for g in flushes.remove(&a).unwrap_or_default() {
                        let Some(&(lba0, n, _)) = writes.get(&g) else {
                            continue;
                        };
                        for lba in lba0..lba0 + u64::from(n) {
                            if let Some(e) = replay.blocks.get_mut(&lba) {
                                if e.acked == Some(g) {
                                    e.durable = true;
                                }
                            }
                        }
                    }
                }
                _ => replay.corrupt += 1,
            }
        }
        // Flushes that never completed leave their writes volatile.
        Ok(replay)
    }

    /// The expectation for an absolute LBA.
    pub fn expectation(&self, lba: u64) -> Option<&Expectation> {
        self.blocks.get(&lba)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> JournalHeader {
        JournalHeader {
            block_len: 4096,
            seed: 77,
            first_lba: 100,
            blocks: 1000,
            url: "iscsi://h/t/1".into(),
        }
    }

    #[test]
    fn replay_tracks_acks_failures_and_durability() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut j = Journal::create(&path, &header()).unwrap();
        j.issued(1, 100, 2, false).unwrap();
        j.acked(1).unwrap();
        j.issued(2, 101, 1, true).unwrap();
        j.acked(2).unwrap();
        j.issued(3, 200, 1, false).unwrap();
        j.failed(3).unwrap();
        j.flush_issued(1).unwrap();
        j.flush_done(1).unwrap();
        j.issued(4, 100, 1, false).unwrap();
        j.acked(4).unwrap();
        j.issued(5, 100, 1, false).unwrap(); // in flight at the crash
        j.sync().unwrap();
        drop(j);
        // A torn record at the end is ignored.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[b'A', 0, 0]).unwrap();
        let r = Replay::read(&path).unwrap();
        assert_eq!(r.header, header());
        assert_eq!(r.truncated, 3);
        assert_eq!(r.records, 11);
        let e100 = r.expectation(100).unwrap();
        assert_eq!(e100.acked, Some(4));
        assert!(!e100.durable, "acked after the last flush");
        assert_eq!(e100.pending, [5]);
        assert!(e100.allows(4) && e100.allows(5) && !e100.allows(1));
        let e101 = r.expectation(101).unwrap();
        assert_eq!((e101.acked, e101.durable), (Some(2), true));
        let e200 = r.expectation(200).unwrap();
        assert_eq!(e200.acked, None);
        assert_eq!(
            e200.pending,
            [3],
            "a failed write may or may not have landed"
        );
        assert!(r.expectation(5).is_none());
    }

    #[test]
    fn flush_makes_earlier_acks_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut j = Journal::create(&path, &header()).unwrap();
        j.issued(1, 300, 1, false).unwrap();
        j.acked(1).unwrap();
        j.flush_issued(9).unwrap();
        j.issued(2, 301, 1, false).unwrap();
        j.acked(2).unwrap();
        j.flush_done(9).unwrap();
        j.sync().unwrap();
        let r = Replay::read(&path).unwrap();
        assert!(r.expectation(300).unwrap().durable);
        assert!(
            !r.expectation(301).unwrap().durable,
            "acked after the flush was issued"
        );
    }

    #[test]
    fn corrupt_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(
            Replay::read(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut j = Journal::create(&path, &header()).unwrap();
        j.issued(1, 100, 1, false).unwrap();
        j.sync().unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let r = Replay::read(&path).unwrap();
        assert_eq!((r.records, r.corrupt), (0, 1));
    }
}
