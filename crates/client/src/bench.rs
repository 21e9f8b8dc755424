//! The load generator behind `rtgt-initiator bench`: N engine threads, each with its share of
//! the sessions, every connection fed by its own [`Generator`] (SBC-4 READ/WRITE commands over
//! RFC 7143 sessions). Results are merged into one [`Report`].
//!
//! ```no_run
//! use rtgt_client::bench::{BenchConfig, run};
//! use rtgt_client::workload::Pattern;
//! use rtgt_client::{ConnectOptions, IscsiUrl};
//! use std::time::Duration;
//!
//! let url: IscsiUrl = "iscsi://127.0.0.1:3260/iqn.2026-11.io.rtgt:default/0".parse()?;
//! let mut cfg = BenchConfig::new(url, ConnectOptions::default(), Pattern::RandRead);
//! cfg.time = Some(Duration::from_secs(5));
//! let result = run(&cfg, None)?;
//! println!("{:.0} IOPS, {:.2} µs CPU per IO", result.report.iops, result.report.cpu_us_per_io);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ConnectOptions;
use crate::client::Client;
use crate::engine::{Coalesce, ConnKey, Engine, EngineConfig, IoSource, IoStatus, Progress};
use crate::error::{ClientError, Result};
use crate::rng::SplitMix64;
use crate::scsi::Capacity;
use crate::stats::{Report, RunStats};
use crate::url::IscsiUrl;
use crate::workload::{Generator, IoSpec, Next, Pattern, WorkloadSpec};

/// A bench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The LU to load.
    pub url: IscsiUrl,
    /// Login options.
    pub opts: ConnectOptions,
    /// Access pattern.
    pub pattern: Pattern,
    /// Bytes per IO.
    pub block_size: u32,
    /// Outstanding commands per connection.
    pub queue_depth: u16,
    /// Sessions.
    pub sessions: usize,
    /// Connections per session.
    pub connections: u16,
    /// Engine threads (sessions are spread over them).
    pub threads: usize,
    /// Run time (issuing stops then; outstanding IOs complete).
    pub time: Option<Duration>,
    /// Number of IOs to issue.
    pub count: Option<u64>,
    /// Byte range `(offset, length)` of the LU to use (default: all of it).
    pub range: Option<(u64, u64)>,
    /// Set FUA on writes.
    pub fua: bool,
    /// paraseq: IOs per second per stream.
    pub stream_rate: Option<u32>,
    /// Reconnect for this long after a connection loss.
    pub reconnect: Option<Duration>,
    /// Seed of the offsets.
    pub seed: u64,
    /// Completion coalescing.
    pub coalesce: Coalesce,
    /// Busy-poll window before sleeping ([`EngineConfig::poll`]).
    pub poll: Duration,
}

impl BenchConfig {
    /// 4 KiB, QD 32, one session and connection, 10 seconds.
    pub fn new(url: IscsiUrl, opts: ConnectOptions, pattern: Pattern) -> Self {
        Self {
            url,
            opts,
            pattern,
            block_size: 4096,
            queue_depth: 32,
            sessions: 1,
            connections: 1,
            threads: 1,
            time: Some(Duration::from_secs(10)),
            count: None,
            range: None,
            fua: false,
            stream_rate: None,
            reconnect: None,
            seed: 0x5eed,
            coalesce: Coalesce::Auto,
            poll: Duration::ZERO,
        }
    }
}

/// What a bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Workload name.
    pub workload: &'static str,
    /// Bytes per IO.
    pub block_size: u32,
    /// Queue depth per connection.
    pub queue_depth: u16,
    /// Sessions.
    pub sessions: usize,
    /// Connections per session.
    pub connections: u16,
    /// Engine threads.
    pub threads: usize,
    /// The LU's capacity.
    pub capacity: Capacity,
    /// The figures.
    #[serde(flatten)]
    pub report: Report,
}

/// Feeds each connection from its generator.
struct BenchSource {
    first_session: usize,
    connections: usize,
    gens: Vec<Generator>,
}

impl BenchSource {
    #[inline]
    fn gen_mut(&mut self, key: ConnKey) -> Option<&mut Generator> {
        let i = (key.session - self.first_session) * self.connections + key.conn;
        self.gens.get_mut(i)
    }
}

impl IoSource for BenchSource {
    #[inline]
    fn next(&mut self, key: ConnKey, now: Instant) -> Next {
        self.gen_mut(key).map_or(Next::Wait(None), |g| g.next(now))
    }

    #[inline]
    fn complete(
        &mut self,
        key: ConnKey,
        io: &IoSpec,
        _status: &IoStatus,
        _data: &[u8],
        now: Instant,
    ) -> Result<()> {
        if let Some(g) = self.gen_mut(key) {
            g.completed(io, now);
        }
        Ok(())
    }

    fn lost(&mut self, key: ConnKey, io: &IoSpec) {
        let now = Instant::now();
        if let Some(g) = self.gen_mut(key) {
            g.completed(io, now);
        }
    }
}

/// Reads the LU's capacity with a short management session.
pub fn probe_capacity(url: &IscsiUrl, opts: &ConnectOptions) -> Result<Capacity> {
    let mut c = Client::connect(url, opts)?;
    c.test_unit_ready()?;
    let cap = c.capacity()?;
    c.logout()?;
    Ok(cap)
}

/// Checks the range and block size against the LU; returns (first LBA, blocks).
pub fn lba_range(cap: &Capacity, range: Option<(u64, u64)>, io_bytes: u32) -> Result<(u64, u64)> {
    let bl = u64::from(cap.block_len.max(1));
    if io_bytes == 0 || u64::from(io_bytes) % bl != 0 {
        return Err(ClientError::Config(format!(
            "block size {io_bytes} is not a multiple of the LU's {bl}-byte blocks"
        )));
    }
    let (off, len) = range.unwrap_or((0, cap.bytes()));
    if off % bl != 0 || len % bl != 0 {
        return Err(ClientError::Config(format!(
            "range must be aligned to {bl} bytes"
        )));
    }
    let first = off / bl;
    let blocks = len / bl;
    if first.saturating_add(blocks) > cap.blocks {
        return Err(ClientError::Config(format!(
            "range {off}+{len} exceeds the LU ({} bytes)",
            cap.bytes()
        )));
    }
    if blocks < u64::from(io_bytes) / bl {
        return Err(ClientError::Config(
            "range is smaller than one IO".to_owned(),
        ));
    }
    Ok((first, blocks))
}

/// Runs a bench; `progress` (if given) is updated live.
pub fn run(cfg: &BenchConfig, progress: Option<&Arc<Progress>>) -> Result<BenchResult> {
    if cfg.sessions == 0 || cfg.threads == 0 || cfg.connections == 0 || cfg.queue_depth == 0 {
        return Err(ClientError::Config(
            "sessions, threads, connections and qd must be > 0".into(),
        ));
    }
    if cfg.time.is_none() && cfg.count.is_none() {
        return Err(ClientError::Config("give a run time or an IO count".into()));
    }
    let cap = probe_capacity(&cfg.url, &cfg.opts)?;
    let (first, blocks) = lba_range(&cap, cfg.range, cfg.block_size)?;
    let mut spec = WorkloadSpec::new(cfg.pattern, cfg.block_size, cap.block_len, first, blocks);
    spec.fua = cfg.fua;
    spec.stream_rate = cfg.stream_rate;
    let threads = cfg.threads.min(cfg.sessions);
    let barrier = Arc::new(Barrier::new(threads));
    let total_conns = (cfg.sessions * usize::from(cfg.connections)) as u32;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // Sessions t, t + threads, … would interleave; contiguous shares keep numbering simple.
            let share = cfg.sessions / threads + usize::from(t < cfg.sessions % threads);
            let first_session = t * (cfg.sessions / threads) + t.min(cfg.sessions % threads);
            let count = cfg
                .count
                .map(|c| c / threads as u64 + u64::from((t as u64) < c % threads as u64));
            let cfg = cfg.clone();
            let spec = spec.clone();
            let barrier = Arc::clone(&barrier);
            let progress = progress.cloned();
            let block_len = cap.block_len;
            std::thread::Builder::new()
                .name(format!("rtgt-bench-{t}"))
                .spawn(move || -> Result<RunStats> {
                    let mut ecfg = EngineConfig::new(cfg.queue_depth, cfg.block_size, block_len);
                    ecfg.sessions = share;
                    ecfg.connections = cfg.connections;
                    ecfg.first_session = first_session;
                    ecfg.max_ios = count;
                    ecfg.reconnect = cfg.reconnect;
                    ecfg.progress = progress;
                    ecfg.coalesce = cfg.coalesce;
                    ecfg.poll = cfg.poll;
                    let engine = Engine::connect(&cfg.url, &cfg.opts, ecfg);
                    barrier.wait();
                    let mut engine = engine?;
                    let mut rng = SplitMix64::new(cfg.seed ^ 0xdead_beef);
                    engine.fill_buffers(|b| {
                        for chunk in b.chunks_mut(8) {
                            let v = rng.next_u64().to_le_bytes();
                            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or(&[]));
                        }
                    });
                    let conns = usize::from(cfg.connections);
                    let gens = (0..share * conns)
                        .map(|i| {
                            let global = (first_session * conns + i) as u32;
                            Generator::new(&spec, global, total_conns, cfg.seed)
                        })
                        .collect();
                    let mut source = BenchSource {
                        first_session,
                        connections: conns,
                        gens,
                    };
                    let mut engine = engine;
                    if let Some(t) = cfg.time {
                        engine.set_deadline(Instant::now() + t);
                    }
                    engine.run(&mut source)
                })
                .map_err(ClientError::Io)
        })
        .collect::<Result<_>>()?;
    let mut total = RunStats::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => total.merge(&s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(ClientError::Unexpected("engine thread panicked".into()));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(BenchResult {
        workload: cfg.pattern.name(),
        block_size: cfg.block_size,
        queue_depth: cfg.queue_depth,
        sessions: cfg.sessions,
        connections: cfg.connections,
        threads,
        capacity: cap,
        report: total.report(),
    })
}
