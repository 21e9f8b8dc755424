//! Data integrity verification: writes stamped blocks ([`stamp`]) at random and sequential
//! offsets with a mix of FUA writes (SBC-4 §5.40 FUA bit) and SYNCHRONIZE CACHE (§5.27),
//! checks reads of written blocks while it runs and reads everything back at the end, and
//! keeps a local [`journal`] of acknowledged writes. `resume` re-reads a previous run's blocks
//! after the target was killed and restarted and reports acknowledged writes that were lost,
//! torn or stale — "no acknowledged write is lost" made testable.
//!
//! Writes never overlap other outstanding IOs, so every acknowledged write defines exactly what
//! its blocks must hold until the next write to them is acknowledged.

pub mod journal;
pub mod stamp;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use self::journal::{Journal, JournalHeader, Replay};
use self::stamp::{Observed, check, stamp};
use crate::ConnectOptions;
use crate::bench::{lba_range, probe_capacity};
use crate::client::Client;
use crate::engine::{ConnKey, Engine, EngineConfig, IoSource, IoStatus, Progress};
use crate::error::{ClientError, Result};
use crate::rng::SplitMix64;
use crate::url::IscsiUrl;
use crate::workload::{IoSpec, Next};

/// Default range when none is given: the first 256 MiB of the LU.
const DEFAULT_RANGE: u64 = 256 << 20;
/// Read-back chunk.
const READBACK_CHUNK: usize = 256 * 1024;
/// Problems listed individually in a report.
const MAX_LISTED: usize = 20;

/// A verify run.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The LU.
    pub url: IscsiUrl,
    /// Login options.
    pub opts: ConnectOptions,
    /// Journal file.
    pub journal: PathBuf,
    /// Bytes per IO.
    pub block_size: u32,
    /// Outstanding commands.
    pub queue_depth: u16,
    /// Run time.
    pub time: Option<Duration>,
    /// Number of writes.
    pub count: Option<u64>,
    /// Byte range `(offset, length)`.
    pub range: Option<(u64, u64)>,
    /// Percentage of writes with FUA.
    pub fua_pct: u8,
    /// SYNCHRONIZE CACHE after this many acknowledged writes (0: never).
    pub flush_every: u64,
    /// Percentage of writes at sequential offsets.
    pub seq_pct: u8,
    /// Seed (random when `None`).
    pub seed: Option<u64>,
    /// Reconnect after a connection loss for this long.
    pub reconnect: Option<Duration>,
    /// On resume, only durable writes (FUA or flushed) must be present.
    pub durable_only: bool,
}

impl VerifyConfig {
    /// Defaults: 4 KiB, QD 16, 20000 writes, 25 % FUA, a flush every 1000 writes.
    pub fn new(url: IscsiUrl, opts: ConnectOptions, journal: PathBuf) -> Self {
        Self {
            url,
            opts,
            journal,
            block_size: 4096,
            queue_depth: 16,
            time: None,
            count: Some(20_000),
            range: None,
            fua_pct: 25,
            flush_every: 1000,
            seq_pct: 30,
            seed: None,
            reconnect: None,
            durable_only: false,
        }
    }
}

/// One block whose content is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The LBA.
    pub lba: u64,
    /// What was expected (generation of the last acknowledged write).
    pub expected: Option<u64>,
    /// What was found.
    pub observed: Observed,
    /// Classification.
    pub kind: ProblemKind,
}

/// How an acknowledged write went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// The block holds nothing (or unrelated data) although a write was acknowledged.
    Lost,
    /// The block's checksum does not match: partially written.
    Torn,
    /// The block holds an older generation than the last acknowledged write.
    Stale,
    /// The block holds another LBA's data.
    Misplaced,
    /// A generation the journal does not know (journal incomplete).
    Unknown,
}

/// What a verify run or resume found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// `run` or `resume`.
    pub mode: &'static str,
    /// The journal file.
    pub journal: String,
    /// Seed of the stamps.
    pub seed: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes that failed with an error status.
    pub write_errors: u64,
    /// Writes with FUA.
    pub fua_writes: u64,
    /// SYNCHRONIZE CACHE commands completed.
    pub flushes: u64,
    /// Blocks checked by reads during the run.
    pub blocks_checked_live: u64,
    /// Blocks checked by the final read-back (or the resume).
    pub blocks_checked: u64,
    /// Blocks whose last acknowledged write was durable (resume).
    pub durable_blocks: u64,
    /// Acknowledged writes lost.
    pub lost: u64,
    /// Torn blocks.
    pub torn: u64,
    /// Stale blocks.
    pub stale: u64,
    /// Misplaced blocks.
    pub misplaced: u64,
    /// Blocks with generations the journal does not know.
    pub unknown: u64,
    /// Lost or stale blocks whose write was not durable (not failures with `durable_only`).
    pub volatile_losses: u64,
    /// Reconnects during the run.
    pub reconnects: u64,
    /// IOs outstanding when a connection was lost.
    pub lost_in_flight: u64,
    /// The run stopped early because of this error.
    pub interrupted: Option<String>,
    /// The first problems found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the target kept every write it acknowledged.
    pub fn passed(&self) -> bool {
        self.interrupted.is_none()
            && self.write_errors == 0
            && self.lost + self.torn + self.stale + self.misplaced == 0
    }

    fn record(&mut self, p: Problem) {
        match p.kind {
            ProblemKind::Lost => self.lost += 1,
            ProblemKind::Torn => self.torn += 1,
            ProblemKind::Stale => self.stale += 1,
            ProblemKind::Misplaced => self.misplaced += 1,
            ProblemKind::Unknown => self.unknown += 1,
        }
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify {} (journal {}, seed {:#x})",
            self.mode, self.journal, self.seed
        )?;
        if self.mode == "run" {
            writeln!(
                f,
                "  writes acked {} ({} FUA), write errors {}, flushes {}, blocks checked live {}",
                self.writes_acked,
                self.fua_writes,
                self.write_errors,
                self.flushes,
                self.blocks_checked_live
            )?;
        }
        writeln!(
            f,
            "  blocks checked {} ({} durable)",
            self.blocks_checked, self.durable_blocks
        )?;
        writeln!(
            f,
            "  lost {}  torn {}  stale {}  misplaced {}  unknown {}  (non-durable losses {})",
            self.lost, self.torn, self.stale, self.misplaced, self.unknown, self.volatile_losses
        )?;
        if self.reconnects > 0 || self.lost_in_flight > 0 {
            writeln!(
                f,
                "  reconnects {}, IOs in flight at connection loss {}",
                self.reconnects, self.lost_in_flight
            )?;
        }
        for p in &self.problems {
            writeln!(
                f,
                "  LBA {}: {:?}, expected generation {:?}, found {:?}",
                p.lba, p.kind, p.expected, p.observed
            )?;
        }
        if let Some(e) = &self.interrupted {
            writeln!(f, "  INTERRUPTED: {e}")?;
            writeln!(
                f,
                "  (re-check later with --resume --journal {})",
                self.journal
            )?;
        }
        write!(
            f,
            "  result: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Classifies one block against an expectation.
fn classify(observed: Observed, lba: u64, e: &journal::Expectation) -> Option<Problem> {
    let kind = match observed {
        Observed::Stamp { generation } if e.allows(generation) => return None,
        Observed::Stamp { generation } => match e.acked {
            Some(a) if generation < a => ProblemKind::Stale,
            None if e.pending.is_empty() => ProblemKind::Unknown,
            _ if e
                .pending
                .iter()
                .chain(e.acked.iter())
                .all(|g| *g < generation) =>
            {
                ProblemKind::Unknown
            }
            _ => ProblemKind::Stale,
        },
        Observed::Unwritten | Observed::Foreign => {
            // Only unacknowledged writes were issued: their absence is allowed.
            e.acked?;
            ProblemKind::Lost
        }
        Observed::Torn => ProblemKind::Torn,
        Observed::Misplaced { .. } => ProblemKind::Misplaced,
    };
    Some(Problem {
        lba,
        expected: e.acked,
        observed,
        kind,
    })
}

/// Per-run state shared by the IO source.
struct VerifySource {
    seed: u64,
    first_lba: u64,
    blocks: u64,
    io_blocks: u32,
    block_len: usize,
    rng: SplitMix64,
    next_gen: u64,
    /// Last acknowledged generation per block (0: none).
    acked: Vec<u64>,
    /// In-flight write generation per block (0: none); reads mark `u64::MAX`.
    busy: Vec<u64>,
    /// Blocks whose content is uncertain (failed or lost writes): acceptable generations.
    unresolved: HashMap<u64, Vec<u64>>,
    journal: Journal,
    writes_issued: u64,
    max_writes: Option<u64>,
    deadline: Option<Instant>,
    seq_cursor: u64,
    fua_pct: u8,
    seq_pct: u8,
    flush_every: u64,
    acked_since_flush: u64,
    flush_in_flight: bool,
    flush_id: u64,
    report: VerifyReport,
    written_slots: Vec<u64>,
    error: Option<ClientError>,
}

impl VerifySource {
    fn slot_free(&self, first: u64) -> bool {
        (first..first + u64::from(self.io_blocks))
            .all(|b| self.busy.get(b as usize).is_some_and(|x| *x == 0))
    }

    fn done_issuing(&self, now: Instant) -> bool {
        self.max_writes.is_some_and(|m| self.writes_issued >= m)
            || self.deadline.is_some_and(|d| now >= d)
    }

    fn fail(&mut self, e: ClientError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn journal_io(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.fail(ClientError::Io(e));
        }
    }
}

impl IoSource for VerifySource {
    fn next(&mut self, _key: ConnKey, now: Instant) -> Next {
        if self.error.is_some() || self.done_issuing(now) {
            return Next::Wait(None);
        }
        if self.flush_every > 0
            && self.acked_since_flush >= self.flush_every
            && !self.flush_in_flight
        {
            self.flush_in_flight = true;
            self.acked_since_flush = 0;
            self.flush_id += 1;
            let r = self.journal.flush_issued(self.flush_id);
            self.journal_io(r);
            return Next::Io(IoSpec {
                flush: true,
                stream: self.flush_id as u32,
                ..IoSpec::default()
            });
        }
        let slots = self.blocks / u64::from(self.io_blocks);
        // A third of the IOs re-read blocks written earlier.
        if !self.written_slots.is_empty() && self.rng.below(3) == 0 {
            for _ in 0..4 {
                let i = self.rng.below(self.written_slots.len() as u64) as usize;
                let Some(&first) = self.written_slots.get(i) else {
                    break;
                };
                if self.slot_free(first) {
                    for b in first..first + u64::from(self.io_blocks) {
                        if let Some(x) = self.busy.get_mut(b as usize) {
                            *x = u64::MAX;
                        }
                    }
                    return Next::Io(IoSpec {
                        write: false,
                        lba: self.first_lba + first,
                        blocks: self.io_blocks,
                        ..IoSpec::default()
                    });
                }
            }
        }
        for _ in 0..8 {
            let slot = if self.rng.below(100) < u64::from(self.seq_pct) {
                let s = self.seq_cursor;
                self.seq_cursor = (self.seq_cursor + 1) % slots.max(1);
                s
            } else {
                self.rng.below(slots.max(1))
            };
            let first = slot * u64::from(self.io_blocks);
            if !self.slot_free(first) {
                continue;
            }
            let generation = self.next_gen;
            self.next_gen += 1;
            for b in first..first + u64::from(self.io_blocks) {
                if let Some(x) = self.busy.get_mut(b as usize) {
                    *x = generation;
                }
            }
            let fua = self.rng.below(100) < u64::from(self.fua_pct);
            let lba = self.first_lba + first;
            let r = self.journal.issued(generation, lba, self.io_blocks, fua);
            self.journal_io(r);
            self.writes_issued += 1;
            return Next::Io(IoSpec {
                write: true,
                lba,
                blocks: self.io_blocks,
                fua,
                ..IoSpec::default()
            });
        }
        Next::Wait(None)
    }

    fn fill(&mut self, io: &IoSpec, buf: &mut [u8]) {
        let first = io.lba - self.first_lba;
        let generation = self.busy.get(first as usize).copied().unwrap_or(0);
        for (i, block) in buf.chunks_mut(self.block_len).enumerate() {
            stamp(block, io.lba + i as u64, generation, self.seed);
        }
    }

    fn complete(
        &mut self,
        _key: ConnKey,
        io: &IoSpec,
        status: &IoStatus,
        data: &[u8],
        now: Instant,
    ) -> Result<()> {
        if io.flush {
            self.flush_in_flight = false;
            if *status == IoStatus::Good {
                self.report.flushes += 1;
                let r = self.journal.flush_done(u64::from(io.stream));
                self.journal_io(r);
            } else {
                self.fail(ClientError::Verify(format!(
                    "SYNCHRONIZE CACHE failed: {status:?}"
                )));
            }
            return self.take_error();
        }
        let first = io.lba - self.first_lba;
        let range = first..first + u64::from(io.blocks);
        if io.write {
            let generation = self.busy.get(first as usize).copied().unwrap_or(0);
            for b in range.clone() {
                if let Some(x) = self.busy.get_mut(b as usize) {
                    *x = 0;
                }
            }
            if *status == IoStatus::Good {
                for b in range {
                    if let Some(x) = self.acked.get_mut(b as usize) {
                        *x = generation;
                    }
                    self.unresolved.remove(&b);
                }
                self.report.writes_acked += 1;
                self.report.fua_writes += u64::from(io.fua);
                self.acked_since_flush += 1;
                self.written_slots.push(first);
                let r = self.journal.acked(generation);
                self.journal_io(r);
            } else {
                self.report.write_errors += 1;
                for b in range {
                    self.unresolved.entry(b).or_default().push(generation);
                }
                let r = self.journal.failed(generation);
                self.journal_io(r);
            }
        } else {
            for b in range.clone() {
                if let Some(x) = self.busy.get_mut(b as usize) {
                    *x = 0;
                }
            }
            match status {
                IoStatus::Good => {
                    for (i, block) in data.chunks(self.block_len).enumerate() {
                        let rel = first + i as u64;
                        let lba = io.lba + i as u64;
                        let acked = self.acked.get(rel as usize).copied().unwrap_or(0);
                        let e = journal::Expectation {
                            acked: (acked != 0).then_some(acked),
                            durable: false,
                            pending: self.unresolved.get(&rel).cloned().unwrap_or_default(),
                        };
                        self.report.blocks_checked_live += 1;
                        if let Some(p) = classify(check(block, lba, self.seed), lba, &e) {
                            self.report.record(p);
                        }
                    }
                }
                IoStatus::Failed(f) => self.fail(ClientError::Verify(format!(
                    "read at LBA {} failed: {f}",
                    io.lba
                ))),
            }
        }
        let r = self.journal.maybe_sync(now);
        self.journal_io(r);
        self.take_error()
    }

    fn lost(&mut self, _key: ConnKey, io: &IoSpec) {
        self.report.lost_in_flight += 1;
        if io.flush {
            self.flush_in_flight = false;
            return;
        }
        let first = io.lba - self.first_lba;
        let generation = self.busy.get(first as usize).copied().unwrap_or(0);
        for b in first..first + u64::from(io.blocks) {
            if let Some(x) = self.busy.get_mut(b as usize) {
                *x = 0;
            }
            if io.write {
                self.unresolved.entry(b).or_default().push(generation);
            }
        }
    }
}

impl VerifySource {
    fn take_error(&mut self) -> Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Reads `[first, first + blocks)` in chunks and classifies every block with an expectation.
#[allow(clippy::too_many_arguments)] // a private helper called twice with different sources
fn read_back(
    client: &mut Client,
    block_len: u32,
    first: u64,
    blocks: u64,
    seed: u64,
    mut expect: impl FnMut(u64) -> Option<journal::Expectation>,
    report: &mut VerifyReport,
    durable_only: bool,
) -> Result<()> {
    let per = (READBACK_CHUNK / block_len as usize).max(1) as u64;
    let mut buf = vec![0u8; per as usize * block_len as usize];
    let mut lba = first;
    while lba < first + blocks {
        let n = per.min(first + blocks - lba);
        let chunk = buf
            .get_mut(..(n * u64::from(block_len)) as usize)
            .unwrap_or(&mut []);
        client.read(lba, block_len, chunk)?;
        for (i, block) in chunk.chunks(block_len as usize).enumerate() {
            let l = lba + i as u64;
            let Some(e) = expect(l) else { continue };
            report.blocks_checked += 1;
            report.durable_blocks += u64::from(e.durable);
            if let Some(p) = classify(check(block, l, seed), l, &e) {
                if durable_only
                    && !e.durable
                    && matches!(p.kind, ProblemKind::Lost | ProblemKind::Stale)
                {
                    report.volatile_losses += 1;
                    continue;
                }
                report.record(p);
            }
        }
        lba += n;
    }
    Ok(())
}

/// Writes, checks and reads back; see the module docs.
pub fn run(cfg: &VerifyConfig, progress: Option<Arc<Progress>>) -> Result<VerifyReport> {
    let cap = probe_capacity(&cfg.url, &cfg.opts)?;
    if (cap.block_len as usize) < stamp::MIN_BLOCK {
        return Err(ClientError::Config(format!(
            "block length {} too small to stamp",
            cap.block_len
        )));
    }
    let range = cfg.range.or(Some((0, cap.bytes().min(DEFAULT_RANGE))));
    let (first_lba, blocks) = lba_range(&cap, range, cfg.block_size)?;
    let seed = cfg
        .seed
        .unwrap_or_else(|| SplitMix64::from_entropy().next_u64());
    let header = JournalHeader {
        block_len: cap.block_len,
        seed,
        first_lba,
        blocks,
        url: cfg.url.to_string(),
    };
    let journal = Journal::create(&cfg.journal, &header)?;
    let io_blocks = cfg.block_size / cap.block_len;
    let mut source = VerifySource {
        seed,
        first_lba,
        blocks,
        io_blocks,
        block_len: cap.block_len as usize,
        rng: SplitMix64::new(seed),
        next_gen: 1,
        acked: vec![0; blocks as usize],
        busy: vec![0; blocks as usize],
        unresolved: HashMap::new(),
        journal,
        writes_issued: 0,
        max_writes: cfg.count,
        deadline: cfg.time.map(|t| Instant::now() + t),
        seq_cursor: 0,
        fua_pct: cfg.fua_pct,
        seq_pct: cfg.seq_pct,
        flush_every: cfg.flush_every,
        acked_since_flush: 0,
        flush_in_flight: false,
        flush_id: 0,
        report: VerifyReport {
            mode: "run",
            journal: cfg.journal.display().to_string(),
            seed,
            ..VerifyReport::default()
        },
        written_slots: Vec::new(),
        error: None,
    };
    let mut ecfg = EngineConfig::new(cfg.queue_depth, cfg.block_size, cap.block_len);
    ecfg.reconnect = cfg.reconnect;
    ecfg.progress = progress;
    let outcome = Engine::connect(&cfg.url, &cfg.opts, ecfg).and_then(|e| e.run(&mut source));
    source.journal.sync()?;
    let mut report = std::mem::take(&mut source.report);
    match outcome {
        Ok(stats) => report.reconnects = stats.reconnects,
        Err(e) => {
            report.interrupted = Some(e.to_string());
            return Ok(report);
        }
    }
    // Final read-back of everything written.
    let mut client = Client::connect(&cfg.url, &cfg.opts)?;
    let acked = std::mem::take(&mut source.acked);
    let unresolved = std::mem::take(&mut source.unresolved);
    read_back(
        &mut client,
        cap.block_len,
        first_lba,
        blocks,
        seed,
        |lba| {
            let rel = lba - first_lba;
            let a = acked.get(rel as usize).copied().unwrap_or(0);
            let pending = unresolved.get(&rel).cloned().unwrap_or_default();
            (a != 0 || !pending.is_empty()).then(|| journal::Expectation {
                acked: (a != 0).then_some(a),
                durable: true,
                pending,
            })
        },
        &mut report,
        false,
    )?;
    client.logout()?;
    Ok(report)
}

/// Re-checks a previous run's journal against the target's current contents.
pub fn resume(cfg: &VerifyConfig) -> Result<VerifyReport> {
    let replay = Replay::read(&cfg.journal)?;
    let h = &replay.header;
    let mut report = VerifyReport {
        mode: "resume",
        journal: cfg.journal.display().to_string(),
        seed: h.seed,
        ..VerifyReport::default()
    };
    let mut client = Client::connect(&cfg.url, &cfg.opts)?;
    client.test_unit_ready()?;
    let cap = client.capacity()?;
    if cap.block_len != h.block_len {
        return Err(ClientError::Verify(format!(
            "the journal was written with {}-byte blocks, the LU now has {}",
            h.block_len, cap.block_len
        )));
    }
    report.writes_acked = replay.blocks.values().filter(|e| e.acked.is_some()).count() as u64;
    read_back(
        &mut client,
        h.block_len,
        h.first_lba,
        h.blocks,
        h.seed,
        |lba| replay.expectation(lba).cloned(),
        &mut report,
        cfg.durable_only,
    )?;
    client.logout()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::Expectation;

    fn exp(acked: Option<u64>, pending: &[u64]) -> Expectation {
        Expectation {
            acked,
            durable: true,
            pending: pending.to_vec(),
        }
    }

    #[test]
    fn classification_of_read_back_blocks() {
        let s = |g| Observed::Stamp { generation: g };
        assert_eq!(classify(s(5), 1, &exp(Some(5), &[])), None);
        assert_eq!(
            classify(s(6), 1, &exp(Some(5), &[6])),
            None,
            "in-flight write landed"
        );
        assert_eq!(
            classify(s(4), 1, &exp(Some(5), &[])).unwrap().kind,
            ProblemKind::Stale
        );
        assert_eq!(
            classify(Observed::Unwritten, 1, &exp(Some(5), &[]))
                .unwrap()
                .kind,
            ProblemKind::Lost
        );
        assert_eq!(classify(Observed::Unwritten, 1, &exp(None, &[3])), None);
        assert_eq!(
            classify(Observed::Torn, 1, &exp(Some(5), &[]))
                .unwrap()
                .kind,
            ProblemKind::Torn
        );
        assert_eq!(
            classify(s(9), 1, &exp(Some(5), &[])).unwrap().kind,
            ProblemKind::Unknown
        );
        assert_eq!(
            classify(Observed::Misplaced { lba: 3 }, 1, &exp(Some(5), &[]))
                .unwrap()
                .kind,
            ProblemKind::Misplaced
        );
    }

    #[test]
    fn report_passes_only_without_problems() {
        let mut r = VerifyReport::default();
        assert!(r.passed());
        r.record(Problem {
            lba: 1,
            expected: Some(1),
            observed: Observed::Unwritten,
            kind: ProblemKind::Lost,
        });
        assert!(!r.passed());
        assert_eq!(r.lost, 1);
        let mut r = VerifyReport {
            interrupted: Some("x".into()),
            ..VerifyReport::default()
        };
        assert!(!r.passed());
        r.interrupted = None;
        r.unknown = 3;
        assert!(
            r.passed(),
            "unknown generations are a journal gap, not a target failure"
        );
        assert!(r.to_string().contains("PASS"));
    }
}
