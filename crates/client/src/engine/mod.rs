//! The pipelined IO engine: one thread drives several sessions, each with one or more
//! connections (MC/S, RFC 7143 §4.2.2), keeping a fixed number of SCSI commands outstanding on
//! every connection inside the session's CmdSN window (§4.2.2.1).
//!
//! Each loop iteration reads the clock once, reads every readable socket into a fixed receive
//! buffer and frames it in place (`rtgt_pdu::Framer` zero-copy mode, Data-In payloads copied
//! straight into the task's slot buffer), refills every connection up to its queue depth, and
//! writes each connection's queued PDUs with one `writev`. Sockets are non-blocking and
//! watched by epoll (through mio); a short read means the socket is drained, so a busy loop
//! costs about one `read` and one `writev` per connection per batch.
//!
//! Nothing is allocated per IO: slot buffers, receive buffers, transmit arenas and the
//! session's task tables are sized at start. The engine measures its own thread's CPU time
//! between the first submission and the last completion.
//!
//! Connection loss (socket error, protocol violation, digest error, a target-requested
//! logout) fails the session's outstanding commands back to the [`IoSource`] as lost and, if
//! allowed, logs the session in again (session reinstatement with the same ISID, §6.3.5).
//!
//! ```no_run
//! use rtgt_client::engine::{ConnKey, Engine, EngineConfig, IoSource, IoStatus};
//! use rtgt_client::workload::{IoSpec, Next};
//! use rtgt_client::{ConnectOptions, IscsiUrl};
//! use std::time::Instant;
//!
//! /// Reads the first 1000 4 KiB blocks once.
//! struct FirstBlocks(u64);
//!
//! impl IoSource for FirstBlocks {
//!     fn next(&mut self, _key: ConnKey, _now: Instant) -> Next {
//!         if self.0 == 1000 {
//!             return Next::Wait(None); // nothing more: the run ends when all completed
//!         }
//!         self.0 += 1;
//!         Next::Io(IoSpec { lba: (self.0 - 1) * 8, blocks: 8, ..IoSpec::default() })
//!     }
//!     fn complete(&mut self, _: ConnKey, io: &IoSpec, status: &IoStatus, data: &[u8], _: Instant)
//!         -> rtgt_client::Result<()> {
//!         assert_eq!(*status, IoStatus::Good, "LBA {}", io.lba);
//!         assert_eq!(data.len(), 4096);
//!         Ok(())
//!     }
//! }
//!
//! let url: IscsiUrl = "iscsi://127.0.0.1:3260/iqn.2026-11.io.rtgt:default/0".parse()?;
//! let opts = ConnectOptions::default();
//! let engine = Engine::connect(&url, &opts, EngineConfig::new(32, 4096, 512))?;
//! let stats = engine.run(&mut FirstBlocks(0))?;
//! println!("{:.2} µs CPU per IO", stats.report().cpu_us_per_io);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod sendq;

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rtgt_pdu::{
    AsyncEvent, Digests, Event as FrameEvent, Framer, LogoutReason, Lun, PduHeader, Sn,
};
use rtgt_session::initiator::{
    Completion, ConnId, ConnState, Direction, Event, LoginOutcome, ScsiRequest, Session,
};

use self::sendq::{MAX_IOVECS, SendQueue};
use crate::connect::{ConnectOptions, LoginRequestSpec, login, random_isid};
use crate::cpu::thread_cpu;
use crate::error::{ClientError, Result};
use crate::scsi::{Cdb, ScsiFailure, Sense};
use crate::stats::RunStats;
use crate::transport::Transport;
use crate::url::IscsiUrl;
use crate::workload::{IoSpec, Next};

/// Receive buffer per connection.
const RX_BUF: usize = 256 * 1024;
/// Stop queuing new commands on a connection while this much output is unsent.
const SENDQ_HIGH: usize = 4 << 20;
/// Longest wait in one poll.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Interval of the pings that ask a target to reopen a closed command window.
const WINDOW_PING: Duration = Duration::from_millis(10);
/// Longest coalescing pause.
const MAX_COALESCE: Duration = Duration::from_micros(500);
/// Pauses shorter than this are not worth a sleep (the kernel's default timer slack alone is
/// 50 µs).
const MIN_COALESCE: Duration = Duration::from_micros(50);

/// Completion coalescing: like a NIC's interrupt moderation, the engine may pause briefly
/// when only a few completions arrived while many commands are still outstanding, so that
/// each wake-up handles a batch. The target keeps at least half the queue depth to work on
/// and the pause never exceeds a quarter of the recent IO latency, so throughput is kept;
/// latency grows by about half the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesce {
    /// Wake for every completion.
    Off,
    /// Pause long enough for half the queue depth to complete, estimated from the recent
    /// completion rate, but at most a quarter of the recent IO latency and 500 µs; pauses
    /// under 50 µs are skipped (a fast target is not slowed down).
    Auto,
    /// Pause this long.
    Fixed(Duration),
}

/// Identifies a connection to the [`IoSource`]: session index and connection index within the
/// engine thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Session index (0-based, within this engine).
    pub session: usize,
    /// Connection index within the session.
    pub conn: usize,
}

/// How an IO ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoStatus {
    /// GOOD status; for reads the data is in the buffer passed along.
    Good,
    /// Anything else.
    Failed(ScsiFailure),
}

/// Where IOs come from and where their results go.
pub trait IoSource {
    /// The next IO for connection `key`, or when to ask again.
    fn next(&mut self, key: ConnKey, now: Instant) -> Next;
    /// Fills the buffer of a write about to be sent (`buf` is exactly the IO's length).
    fn fill(&mut self, _io: &IoSpec, _buf: &mut [u8]) {}
    /// An IO completed; `data` holds read data (the IO's length).
    fn complete(
        &mut self,
        key: ConnKey,
        io: &IoSpec,
        status: &IoStatus,
        data: &[u8],
        now: Instant,
    ) -> Result<()>;
    /// An IO was lost with its connection: its outcome is unknown.
    fn lost(&mut self, _key: ConnKey, _io: &IoSpec) {}
}

/// Live counters for a progress display, shared with other threads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Completed IOs.
    pub ios: AtomicU64,
    /// Completed bytes.
    pub bytes: AtomicU64,
    /// Failed IOs.
    pub errors: AtomicU64,
    /// Set to stop the run early (e.g. Ctrl-C).
    pub stop: AtomicBool,
}

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sessions this engine opens.
    pub sessions: usize,
    /// Connections per session (MC/S when > 1).
    pub connections: u16,
    /// Commands outstanding per connection.
    pub queue_depth: u16,
    /// Largest IO in bytes (the slot buffer size).
    pub max_io_bytes: u32,
    /// Logical block length of the LU.
    pub block_len: u32,
    /// Stop issuing at this time.
    pub deadline: Option<Instant>,
    /// Stop after issuing this many IOs.
    pub max_ios: Option<u64>,
    /// Keep trying to log in again for this long after a connection loss (`None`: fail).
    pub reconnect: Option<Duration>,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
    /// First session index (so several engine threads number sessions globally).
    pub first_session: usize,
    /// Completion coalescing.
    pub coalesce: Coalesce,
    /// Before sleeping in epoll, keep checking the sockets for up to this long, yielding the
    /// CPU between checks (zero: sleep at once). A wake-up that crosses CPUs — an
    /// inter-processor interrupt, on a VM a halted vCPU's exit to the hypervisor — can cost
    /// more than several IOs; polling saves it while the target answers quickly.
    pub poll: Duration,
}

impl EngineConfig {
    /// One session, one connection, queue depth `qd`, IOs up to `max_io_bytes`.
    pub fn new(qd: u16, max_io_bytes: u32, block_len: u32) -> Self {
        Self {
            sessions: 1,
            connections: 1,
            queue_depth: qd,
            max_io_bytes,
            block_len,
            deadline: None,
            max_ios: None,
            reconnect: None,
            progress: None,
            first_session: 0,
            coalesce: Coalesce::Auto,
            poll: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    io: IoSpec,
    start: Option<Instant>,
}

enum Rx {
    Idle,
    DataIn {
        slot: usize,
        at: usize,
        end: usize,
        completion: Option<Completion>,
    },
    Collect(PduHeader),
}

struct Conn {
    transport: Box<dyn Transport>,
    token: Token,
    id: ConnId,
    framer: Framer,
    rx: Vec<u8>,
    leftover: Vec<u8>,
    scratch: Vec<u8>,
    state: Rx,
    sendq: SendQueue,
    bufs: Vec<u8>,
    slot_len: usize,
    slots: Vec<Slot>,
    readable: bool,
    writable: bool,
    digests: Digests,
    registered: bool,
    block_len: usize,
    /// IOs submitted and not yet finished by the engine.
    inflight: usize,
}

struct Sess {
    index: usize,
    session: Session,
    conns: Vec<Conn>,
    isid: rtgt_pdu::Isid,
    lun: Lun,
    /// Stop submitting; log out once idle, then log in again.
    draining: bool,
    logged_out: bool,
    /// When the last ping asking for a closed window to reopen went out.
    window_ping: Option<Instant>,
}

/// The engine of one thread.
pub struct Engine<'a> {
    url: &'a IscsiUrl,
    opts: &'a ConnectOptions,
    cfg: EngineConfig,
    poll: Poll,
    sessions: Vec<Sess>,
    stats: RunStats,
    issued: u64,
    next_token: usize,
    /// Completed IOs/bytes/errors not yet added to the shared progress.
    progress_pending: (u64, u64, u64),
    /// Completions seen before the current loop iteration.
    done_before: u64,
    /// Start of the previous loop iteration.
    last_iteration: Instant,
    /// Recent completion rate (per second, exponentially averaged).
    rate: f64,
    /// Successful completions and their latency sum before this iteration.
    good_before: u64,
    latency_sum_before: u64,
    /// Recent mean IO latency in nanoseconds (exponentially averaged).
    latency_ns: f64,
}

fn slot_range(slot: usize, slot_len: usize, len: usize) -> core::ops::Range<usize> {
    let start = slot * slot_len;
    start..start + len
}

impl<'a> Engine<'a> {
    /// Logs in every session and connection of `cfg`.
    pub fn connect(url: &'a IscsiUrl, opts: &'a ConnectOptions, cfg: EngineConfig) -> Result<Self> {
        if cfg.block_len == 0 || cfg.max_io_bytes == 0 || cfg.queue_depth == 0 {
            return Err(ClientError::Config(
                "block length, IO size and queue depth must be > 0".into(),
            ));
        }
        let mut e = Self {
            url,
            opts,
            poll: Poll::new()?,
            sessions: Vec::with_capacity(cfg.sessions),
            stats: RunStats::new(),
            issued: 0,
            next_token: 0,
            progress_pending: (0, 0, 0),
            done_before: 0,
            last_iteration: Instant::now(),
            rate: 0.0,
            good_before: 0,
            latency_sum_before: 0,
            latency_ns: 0.0,
            cfg,
        };
        for i in 0..e.cfg.sessions {
            let index = e.cfg.first_session + i;
            let isid = random_isid(index as u16);
            let s = e.open_session(index, isid)?;
            e.sessions.push(s);
        }
        Ok(e)
    }

    /// What the first session's leading connection negotiated.
    pub fn negotiated(&self) -> Option<&Session> {
        self.sessions.first().map(|s| &s.session)
    }

    fn open_session(&mut self, index: usize, isid: rtgt_pdu::Isid) -> Result<Sess> {
        let lun = Lun::from_number(self.url.lun).unwrap_or_default();
        let mut opts = self.opts.clone();
        opts.max_connections = opts.max_connections.max(self.cfg.connections);
        let spec = LoginRequestSpec {
            target: Some(&self.url.target),
            isid,
            tsih: 0,
            cid: 0,
            cmd_sn: Sn(1),
        };
        let (stream, outcome) = login(&self.url.portal, &opts, &spec)?;
        let n = self.cfg.connections.max(1);
        if outcome.session.max_connections < n {
            stream.shutdown();
            return Err(ClientError::Config(format!(
                "target allows {} connection(s) per session, {} requested",
                outcome.session.max_connections, n
            )));
        }
        // Clear unit attentions (power on, reset) before the measured load starts.
        let mut client = crate::client::Client::from_login_with(
            stream,
            outcome,
            lun,
            self.opts.timeout,
            self.cfg.queue_depth,
            self.opts.nop_interval,
        );
        client.test_unit_ready()?;
        let (stream, mut session, id, outcome) = client.into_parts();
        let mut conns = Vec::with_capacity(usize::from(n));
        conns.push(self.make_conn(id, stream, &outcome)?);
        for cid in 1..n {
            let spec = LoginRequestSpec {
                target: Some(&self.url.target),
                isid,
                tsih: session.tsih(),
                cid,
                cmd_sn: session.window().cmd_sn(),
            };
            let (stream, o) = login(&self.url.portal, &opts, &spec)?;
            session.update_window(o.exp_cmd_sn, o.max_cmd_sn);
            let mut setup = o.connection_setup(self.cfg.queue_depth);
            setup.nop_interval = self.opts.nop_interval;
            setup.nop_timeout = self.opts.timeout;
            let id = session.add_connection(setup);
            conns.push(self.make_conn(id, stream, &o)?);
        }
        Ok(Sess {
            index,
            session,
            conns,
            isid,
            lun,
            draining: false,
            logged_out: false,
            window_ping: None,
        })
    }

    fn make_conn(
        &mut self,
        id: ConnId,
        stream: crate::wire::PduStream,
        o: &LoginOutcome,
    ) -> Result<Conn> {
        let qd = self.cfg.queue_depth;
        let digests = o.negotiated.digests();
        let (transport, framer, leftover) = stream.into_parts();
        transport.set_nonblocking(true)?;
        let token = Token(self.next_token);
        self.next_token += 1;
        let fd = transport.as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let slot_len = self.cfg.max_io_bytes as usize;
        let mrdsl = o.connection.max_recv_data_segment_length as usize;
        Ok(Conn {
            transport,
            token,
            id,
            framer,
            rx: vec![0; RX_BUF],
            leftover,
            scratch: Vec::with_capacity(mrdsl.min(1 << 20)),
            state: Rx::Idle,
            sendq: SendQueue::new(1 << 20, usize::from(qd) * 8 + 64),
            bufs: vec![0; slot_len * usize::from(qd)],
            slot_len,
            slots: vec![Slot::default(); usize::from(qd)],
            readable: true,
            writable: true,
            digests,
            registered: true,
            block_len: self.cfg.block_len as usize,
            inflight: 0,
        })
    }

    /// Sets (or moves) the time at which issuing stops.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.cfg.deadline = Some(deadline);
    }

    /// Fills every write buffer once with bytes from `f` (bench writes send this pattern).
    pub fn fill_buffers(&mut self, mut f: impl FnMut(&mut [u8])) {
        for s in &mut self.sessions {
            for c in &mut s.conns {
                f(&mut c.bufs);
            }
        }
    }

    /// Runs until the deadline or IO count is reached (or the source has nothing more) and
    /// every outstanding IO completed, then logs out. Returns this thread's statistics.
    pub fn run(mut self, source: &mut dyn IoSource) -> Result<RunStats> {
        let mut events = Events::with_capacity(256);
        let start = Instant::now();
        let cpu0 = thread_cpu();
        let result = self.event_loop(source, &mut events);
        let cpu1 = thread_cpu();
        self.stats.elapsed = start.elapsed();
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            self.stats.cpu = b.saturating_sub(a);
        }
        self.flush_progress();
        let logout = self.logout_all();
        result?;
        logout?;
        Ok(self.stats)
    }

    fn stopping(&self, now: Instant) -> bool {
        self.cfg.deadline.is_some_and(|d| now >= d)
            || self.cfg.max_ios.is_some_and(|m| self.issued >= m)
            || self
                .cfg
                .progress
                .as_ref()
                .is_some_and(|p| p.stop.load(Ordering::Relaxed))
    }

    /// IOs submitted whose completion the engine has not processed yet (a task the session
    /// already freed may still have payload bytes on the way).
    fn outstanding(&self) -> usize {
        self.sessions
            .iter()
            .map(|s| s.conns.iter().map(|c| c.inflight).sum::<usize>())
            .sum()
    }

    fn event_loop(&mut self, source: &mut dyn IoSource, events: &mut Events) -> Result<()> {
        loop {
            let now = Instant::now();
            // Receive.
            for si in 0..self.sessions.len() {
                if let Err(e) = self.receive(si, source, now) {
                    self.recover(si, source, e)?;
                }
            }
            // Timers (NOP keepalive).
            for si in 0..self.sessions.len() {
                if let Err(e) = self.timers(si, now) {
                    self.recover(si, source, e)?;
                }
            }
            // Submit.
            let stopping = self.stopping(now);
            let mut wake: Option<Instant> = None;
            let mut idle_sources = true;
            for si in 0..self.sessions.len() {
                match self.submit(si, source, now, stopping) {
                    Ok((w, active)) => {
                        if let Some(w) = w {
                            wake = Some(wake.map_or(w, |x| x.min(w)));
                        }
                        idle_sources &= !active;
                    }
                    Err(e) => self.recover(si, source, e)?,
                }
            }
            // Transmit.
            for si in 0..self.sessions.len() {
                if let Err(e) = self.transmit(si) {
                    self.recover(si, source, e)?;
                }
            }
            self.flush_progress();
            let outstanding = self.outstanding();
            if outstanding == 0 && (stopping || (idle_sources && wake.is_none())) {
                return Ok(());
            }
            // Coalesce: when few completions arrived and plenty are still outstanding, let more
            // accumulate before the next wake-up (fewer context switches per IO).
            let done = self.stats.ios() + self.stats.errors;
            let batch = done - self.done_before;
            self.done_before = done;
            let dt = now
                .saturating_duration_since(self.last_iteration)
                .as_secs_f64();
            self.last_iteration = now;
            if dt > 0.0 {
                self.rate = 0.9 * self.rate + 0.1 * (batch as f64 / dt);
            }
            let good = self.stats.ios();
            if good > self.good_before {
                let mean = (self.stats.latency_sum_ns - self.latency_sum_before) as f64
                    / (good - self.good_before) as f64;
                self.latency_ns = if self.latency_ns == 0.0 {
                    mean
                } else {
                    0.9 * self.latency_ns + 0.1 * mean
                };
                self.good_before = good;
                self.latency_sum_before = self.stats.latency_sum_ns;
            }
            // A connection waiting for room to send needs the poller (its writability comes
            // only as an event); pausing instead would never see it (found with the iSER
            // bridge, whose socket pair fills long before a TCP socket does).
            let write_blocked = self
                .sessions
                .iter()
                .any(|s| s.conns.iter().any(|c| !c.writable && !c.sendq.is_empty()));
            if !stopping && !write_blocked {
                if let Some(delay) = self.coalesce_delay(outstanding, batch) {
                    std::thread::sleep(delay);
                    for s in &mut self.sessions {
                        for c in &mut s.conns {
                            c.readable = true;
                        }
                    }
                    continue;
                }
            }
            // Wait, unless a socket may still hold data.
            let more = self
                .sessions
                .iter()
                .any(|s| s.conns.iter().any(|c| c.readable));
            if !more {
                let mut timeout = MAX_POLL;
                if let Some(w) = wake {
                    timeout = timeout.min(w.saturating_duration_since(now));
                }
                if let Some(d) = self.cfg.deadline.filter(|_| !stopping) {
                    timeout = timeout.min(d.saturating_duration_since(now));
                }
                if !self.busy_poll(events, stopping)? {
                    match self.poll.poll(events, Some(timeout)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                for ev in events.iter() {
                    for s in &mut self.sessions {
                        for c in &mut s.conns {
                            if c.token == ev.token() {
                                c.readable |=
                                    ev.is_readable() || ev.is_read_closed() || ev.is_error();
                                c.writable |= ev.is_writable() || ev.is_error();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Checks the sockets without sleeping until an event arrives or [`EngineConfig::poll`]
    /// passes, yielding the CPU between checks; returns whether `events` holds something.
    fn busy_poll(&mut self, events: &mut Events, stopping: bool) -> Result<bool> {
        if self.cfg.poll.is_zero() || stopping {
            return Ok(false);
        }
        let until = Instant::now() + self.cfg.poll;
        loop {
            match self.poll.poll(events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            if !events.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }

    /// How long to wait before looking for completions again, if at all.
    fn coalesce_delay(&self, outstanding: usize, batch: u64) -> Option<Duration> {
        let total_qd = self.sessions.iter().map(|s| s.conns.len()).sum::<usize>()
            * usize::from(self.cfg.queue_depth);
        let target = (total_qd / 2).max(1) as u64;
        if outstanding as u64 <= target || batch >= target {
            return None;
        }
        let delay = match self.cfg.coalesce {
            Coalesce::Off => return None,
            Coalesce::Fixed(d) => d,
            Coalesce::Auto => {
                if self.rate <= 0.0 {
                    return None;
                }
                // Long enough for the batch to fill, but at most a quarter of an IO's latency,
                // so a fast target is never kept waiting.
                let fill = (target - batch) as f64 / self.rate;
                let cap = self.latency_ns * 1e-9 / 4.0;
                Duration::from_secs_f64(fill.min(cap).min(MAX_COALESCE.as_secs_f64()))
            }
        };
        (delay >= MIN_COALESCE).then_some(delay)
    }

    fn flush_progress(&mut self) {
        let (ios, bytes, errors) = std::mem::take(&mut self.progress_pending);
        if let Some(p) = &self.cfg.progress {
            if ios > 0 {
                p.ios.fetch_add(ios, Ordering::Relaxed);
                p.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            if errors > 0 {
                p.errors.fetch_add(errors, Ordering::Relaxed);
            }
        }
    }

    fn timers(&mut self, si: usize, now: Instant) -> Result<()> {
        let Some(s) = self.sessions.get_mut(si) else {
            return Ok(());
        };
        for c in &s.conns {
            if s.session.poll_timeout(c.id).is_some_and(|t| now >= t) {
                s.session.handle_timeout(c.id, now)?;
            }
        }
        Ok(())
    }

    /// Reads and processes everything available on the session's connections.
    fn receive(&mut self, si: usize, source: &mut dyn IoSource, now: Instant) -> Result<()> {
        let Some(s) = self.sessions.get_mut(si) else {
            return Ok(());
        };
        let key_session = s.index;
        for ci in 0..s.conns.len() {
            let Some(c) = s.conns.get_mut(ci) else {
                continue;
            };
            if !c.leftover.is_empty() {
                let left = std::mem::take(&mut c.leftover);
                process(
                    &mut s.session,
                    c,
                    &left,
                    now,
                    &mut self.stats,
                    source,
                    ConnKey {
                        session: key_session,
                        conn: ci,
                    },
                    &mut s.draining,
                    &mut self.progress_pending,
                )?;
            }
            while c.readable {
                let mut rx = std::mem::take(&mut c.rx);
                let res = c.transport.read(&mut rx);
                let r = match res {
                    Ok(0) => Err(ClientError::Closed),
                    Ok(n) => {
                        if n < rx.len() {
                            c.readable = false;
                        }
                        let input = rx.get(..n).unwrap_or(&[]);
                        process(
                            &mut s.session,
                            c,
                            input,
                            now,
                            &mut self.stats,
                            source,
                            ConnKey {
                                session: key_session,
                                conn: ci,
                            },
                            &mut s.draining,
                            &mut self.progress_pending,
                        )
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.readable = false;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
                    Err(e) => Err(e.into()),
                };
                c.rx = rx;
                r?;
            }
        }
        // A drained session that was asked to log out does so now.
        if s.draining && !s.logged_out && s.conns.iter().all(|c| c.inflight == 0) {
            if let Some(c) = s.conns.first() {
                if s.session.state(c.id) == Some(ConnState::Active) {
                    s.session.logout(c.id, LogoutReason::CLOSE_SESSION)?;
                }
            }
        }
        if s.draining
            && s.conns
                .iter()
                .any(|c| s.session.state(c.id) == Some(ConnState::Closed))
        {
            return Err(ClientError::Unexpected("target requested logout".into()));
        }
        Ok(())
    }

    /// Queues new commands up to the queue depth. Returns when the source wants to be asked
    /// again, and whether it produced or may still produce IOs.
    fn submit(
        &mut self,
        si: usize,
        source: &mut dyn IoSource,
        now: Instant,
        stopping: bool,
    ) -> Result<(Option<Instant>, bool)> {
        let Some(s) = self.sessions.get_mut(si) else {
            return Ok((None, false));
        };
        let mut wake = None;
        let mut active = false;
        if s.draining {
            return Ok((None, false));
        }
        // A closed command window with nothing in flight would never reopen by itself: ask
        // for the current window with a NOP-Out ping (its NOP-In carries MaxCmdSN).
        let issuing = !stopping_now(stopping, self.cfg.max_ios, self.issued);
        if issuing && !s.session.window().is_open() && s.conns.iter().all(|c| c.inflight == 0) {
            if let Some(c) = s.conns.first() {
                let due = s
                    .window_ping
                    .is_none_or(|t| now.saturating_duration_since(t) >= WINDOW_PING);
                if due && !s.session.ping_outstanding(c.id) {
                    s.session.ping(c.id, Vec::new(), now)?;
                    s.window_ping = Some(now);
                }
            }
            let retry = s.window_ping.map_or(now, |t| t + WINDOW_PING);
            return Ok((Some(retry), true));
        }
        for ci in 0..s.conns.len() {
            let Some(c) = s.conns.get_mut(ci) else {
                continue;
            };
            let key = ConnKey {
                session: s.index,
                conn: ci,
            };
            while !stopping_now(stopping, self.cfg.max_ios, self.issued)
                && c.sendq.pending() < SENDQ_HIGH
                && s.session.can_submit(c.id)
            {
                let io = match source.next(key, now) {
                    Next::Io(io) => io,
                    Next::Wait(w) => {
                        if let Some(w) = w {
                            wake = Some(wake.map_or(w, |x: Instant| x.min(w)));
                            active = true;
                        }
                        break;
                    }
                };
                active = true;
                let bytes = if io.flush {
                    0
                } else {
                    io.blocks as usize * self.cfg.block_len as usize
                };
                if bytes > c.slot_len {
                    return Err(ClientError::Config(format!(
                        "IO of {bytes} bytes exceeds the buffer of {}",
                        c.slot_len
                    )));
                }
                let (cdb, dir) = if io.flush {
                    (Cdb::synchronize_cache(), Direction::None)
                } else if io.write {
                    (
                        Cdb::write(io.lba, io.blocks, io.fua),
                        Direction::Write(bytes as u32),
                    )
                } else {
                    (
                        Cdb::read(io.lba, io.blocks, io.fua),
                        Direction::Read(bytes as u32),
                    )
                };
                let sent = s
                    .session
                    .submit(c.id, &ScsiRequest::new(s.lun, cdb.as_bytes(), dir))?;
                let slot = sent.task.slot();
                if io.write {
                    if let Some(b) = c.bufs.get_mut(slot_range(slot, c.slot_len, bytes)) {
                        source.fill(&io, b);
                    }
                }
                if let Some(sl) = c.slots.get_mut(slot) {
                    *sl = Slot {
                        io,
                        start: Some(now),
                    };
                    c.inflight += 1;
                }
                c.sendq.push_pdu(&sent.pdu, &c.bufs, c.slot_len, c.digests);
                self.issued += 1;
            }
            if !stopping && c.inflight > 0 {
                active = true;
            }
        }
        Ok((wake, active))
    }

    /// Moves the session's queued PDUs into the send queues and writes them.
    fn transmit(&mut self, si: usize) -> Result<()> {
        let Some(s) = self.sessions.get_mut(si) else {
            return Ok(());
        };
        for c in &mut s.conns {
            while c.sendq.pending() < SENDQ_HIGH {
                let Some(out) = s.session.poll_transmit(c.id) else {
                    break;
                };
                c.sendq.push_pdu(&out, &c.bufs, c.slot_len, c.digests);
            }
            while c.writable && !c.sendq.is_empty() {
                let mut io = [IoSlice::new(&[]); MAX_IOVECS];
                let n = c.sendq.iovecs(&c.bufs, &mut io);
                match c.transport.write_vectored(io.get(..n).unwrap_or(&[])) {
                    Ok(0) => return Err(ClientError::Closed),
                    Ok(w) => c.sendq.advance(w),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
                // More may have been queued (R2T answers) once there is room.
                if c.sendq.is_empty() {
                    while let Some(out) = s.session.poll_transmit(c.id) {
                        c.sendq.push_pdu(&out, &c.bufs, c.slot_len, c.digests);
                        if c.sendq.pending() >= SENDQ_HIGH {
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles the loss of a session: fails its IOs as lost and logs in again if allowed.
    fn recover(&mut self, si: usize, source: &mut dyn IoSource, err: ClientError) -> Result<()> {
        let Some(limit) = self.cfg.reconnect else {
            return Err(err);
        };
        if !err.is_connection_loss() && !matches!(err, ClientError::Unexpected(_)) {
            return Err(err);
        }
        let Some(s) = self.sessions.get_mut(si) else {
            return Err(err);
        };
        tracing::warn!(session = s.index, error = %err, "connection lost; reconnecting");
        let isid = s.isid;
        let index = s.index;
        for (ci, c) in s.conns.iter_mut().enumerate() {
            s.session.fail_connection(c.id);
            // Every IO the engine has not finished is lost, including reads whose task the
            // session already completed but whose payload never fully arrived.
            for sl in &mut c.slots {
                if sl.start.take().is_some() {
                    source.lost(
                        ConnKey {
                            session: index,
                            conn: ci,
                        },
                        &sl.io,
                    );
                    self.stats.retried += 1;
                }
            }
            c.inflight = 0;
            if c.registered {
                let fd = c.transport.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                c.registered = false;
            }
            let _ = c.transport.shutdown();
            c.sendq.clear();
        }
        let deadline = Instant::now() + limit;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.open_session(index, isid) {
                Ok(new) => {
                    if let Some(slot) = self.sessions.get_mut(si) {
                        *slot = new;
                    }
                    self.stats.reconnects += 1;
                    return Ok(());
                }
                Err(e) if Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "reconnect attempt failed");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Logs out every session (best effort, bounded by the timeout).
    fn logout_all(&mut self) -> Result<()> {
        let timeout = self.opts.timeout;
        let mut first_err = None;
        for s in &mut self.sessions {
            let Some(c) = s.conns.first_mut() else {
                continue;
            };
            if s.session.state(c.id) != Some(ConnState::Active) {
                continue;
            }
            let r = logout_session(s, timeout);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[inline]
fn stopping_now(stopping: bool, max: Option<u64>, issued: u64) -> bool {
    stopping || max.is_some_and(|m| issued >= m)
}

/// Blocking logout of a session on its leading connection.
fn logout_session(s: &mut Sess, timeout: Duration) -> Result<()> {
    let Some(c) = s.conns.first_mut() else {
        return Ok(());
    };
    c.transport.set_nonblocking(false)?;
    s.session.logout(c.id, LogoutReason::CLOSE_SESSION)?;
    while let Some(out) = s.session.poll_transmit(c.id) {
        c.sendq.push_pdu(&out, &c.bufs, c.slot_len, c.digests);
    }
    while !c.sendq.is_empty() {
        let mut io = [IoSlice::new(&[]); MAX_IOVECS];
        let n = c.sendq.iovecs(&c.bufs, &mut io);
        let w = c.transport.write_vectored(io.get(..n).unwrap_or(&[]))?;
        if w == 0 {
            return Err(ClientError::Closed);
        }
        c.sendq.advance(w);
    }
    c.transport.set_read_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut rx = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let n = match c.transport.read(&mut rx) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let mut input = rx.get(..n).unwrap_or(&[]);
        while let Some(ev) = c.framer.next_event(&mut input)? {
            match ev {
                FrameEvent::Header(h) => {
                    c.scratch.clear();
                    c.state = Rx::Collect(h.header);
                }
                FrameEvent::Data(d) => c.scratch.extend_from_slice(d),
                FrameEvent::End => {
                    let Rx::Collect(h) = std::mem::replace(&mut c.state, Rx::Idle) else {
                        continue;
                    };
                    // Late answers of the finished run (pings, unsolicited NOP-Ins) are not
                    // errors here; only the Logout Response matters.
                    if let Ok(Event::Logout { .. }) =
                        s.session.on_pdu(c.id, &h, &c.scratch, Instant::now())
                    {
                        s.logged_out = true;
                        for c in &s.conns {
                            let _ = c.transport.shutdown();
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
    Err(ClientError::Timeout("the logout response"))
}

/// Frames `input` and acts on every PDU in it.
#[allow(clippy::too_many_arguments)] // the split borrows of the engine's state
#[inline]
fn process(
    session: &mut Session,
    c: &mut Conn,
    mut input: &[u8],
    now: Instant,
    stats: &mut RunStats,
    source: &mut dyn IoSource,
    key: ConnKey,
    draining: &mut bool,
    progress: &mut (u64, u64, u64),
) -> Result<()> {
    loop {
        let Some(ev) = c.framer.next_event(&mut input)? else {
            return Ok(());
        };
        match ev {
            FrameEvent::Header(h) => {
                c.state = match h.header {
                    PduHeader::DataIn(d) => {
                        let p = session.on_data_in(c.id, &d, h.lengths.data_len(), now)?;
                        let at = p.task.slot() * c.slot_len + p.offset as usize;
                        Rx::DataIn {
                            slot: p.task.slot(),
                            at,
                            end: at + p.len as usize,
                            completion: p.completion,
                        }
                    }
                    other => {
                        c.scratch.clear();
                        Rx::Collect(other)
                    }
                };
            }
            FrameEvent::Data(chunk) => match &mut c.state {
                Rx::DataIn { at, end, .. } => {
                    let stop = (*at + chunk.len()).min(*end);
                    if let Some(dst) = c.bufs.get_mut(*at..stop) {
                        dst.copy_from_slice(chunk.get(..stop - *at).unwrap_or(&[]));
                    }
                    *at = stop;
                }
                Rx::Collect(_) => c.scratch.extend_from_slice(chunk),
                Rx::Idle => {}
            },
            FrameEvent::End => match std::mem::replace(&mut c.state, Rx::Idle) {
                Rx::DataIn {
                    slot,
                    completion: Some(done),
                    ..
                } => {
                    debug_assert_eq!(done.task.slot(), slot);
                    // The payload is in place: the slot may be reused from here on.
                    session.release(c.id, done.task);
                    finish(c, done, now, stats, source, key, progress)?;
                }
                Rx::DataIn { .. } | Rx::Idle => {}
                Rx::Collect(h) => {
                    let ev = session.on_pdu(c.id, &h, &c.scratch, now)?;
                    handle_event(c, &ev, now, stats, source, key, draining, progress)?;
                    while let Some(ev) = session.poll_event(c.id) {
                        handle_event(c, &ev, now, stats, source, key, draining, progress)?;
                    }
                }
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_event(
    c: &mut Conn,
    ev: &Event,
    now: Instant,
    stats: &mut RunStats,
    source: &mut dyn IoSource,
    key: ConnKey,
    draining: &mut bool,
    progress: &mut (u64, u64, u64),
) -> Result<()> {
    match ev {
        Event::Complete(done) => finish(c, *done, now, stats, source, key, progress),
        Event::Aborted(t) => fail(
            c,
            t.slot(),
            ScsiFailure::aborted(),
            now,
            stats,
            source,
            key,
            progress,
        ),
        Event::Rejected {
            reason,
            task: Some(t),
            ..
        } => fail(
            c,
            t.slot(),
            ScsiFailure::rejected(*reason),
            now,
            stats,
            source,
            key,
            progress,
        ),
        Event::Async(n) => {
            match n.event {
                AsyncEvent::LOGOUT_REQUESTED | AsyncEvent::NEGOTIATION_REQUESTED => {
                    *draining = true;
                }
                AsyncEvent::CONNECTION_DROP | AsyncEvent::SESSION_DROP => {
                    return Err(ClientError::Unexpected(format!(
                        "target announced {}",
                        n.event
                    )));
                }
                _ => {}
            }
            Ok(())
        }
        Event::Logout { .. } => Ok(()),
        Event::None
        | Event::DataIn(_)
        | Event::Pong { .. }
        | Event::Tmf { .. }
        | Event::Text { .. }
        | Event::Rejected { .. } => Ok(()),
    }
}

#[inline]
fn finish(
    c: &mut Conn,
    done: Completion,
    now: Instant,
    stats: &mut RunStats,
    source: &mut dyn IoSource,
    key: ConnKey,
    progress: &mut (u64, u64, u64),
) -> Result<()> {
    if done.is_good() {
        let slot = done.task.slot();
        let Some(sl) = c.slots.get_mut(slot) else {
            return Ok(());
        };
        let Some(start) = sl.start.take() else {
            return Ok(());
        };
        c.inflight = c.inflight.saturating_sub(1);
        let io = sl.io;
        let len = if io.flush {
            0
        } else {
            (io.blocks as usize * c.block_len).min(c.slot_len)
        };
        stats.record(
            io.write,
            len as u64,
            now.saturating_duration_since(start).as_nanos() as u64,
        );
        progress.0 += 1;
        progress.1 += len as u64;
        let data = c.bufs.get(slot_range(slot, c.slot_len, len)).unwrap_or(&[]);
        source.complete(key, &io, &IoStatus::Good, data, now)
    } else {
        let sense = done.sense.and_then(|r| Sense::parse(r.of(&c.scratch)));
        let failure = ScsiFailure {
            response: done.response,
            status: done.status,
            sense,
            rejected: None,
            aborted: false,
        };
        fail(
            c,
            done.task.slot(),
            failure,
            now,
            stats,
            source,
            key,
            progress,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn fail(
    c: &mut Conn,
    slot: usize,
    failure: ScsiFailure,
    now: Instant,
    stats: &mut RunStats,
    source: &mut dyn IoSource,
    key: ConnKey,
    progress: &mut (u64, u64, u64),
) -> Result<()> {
    let Some(sl) = c.slots.get_mut(slot) else {
        return Ok(());
    };
    if sl.start.take().is_none() {
        return Ok(());
    }
    c.inflight = c.inflight.saturating_sub(1);
    let io = sl.io;
    stats.errors += 1;
    if stats.first_error.is_none() {
        let what = if io.flush {
            "SYNCHRONIZE CACHE"
        } else if io.write {
            "write"
        } else {
            "read"
        };
        stats.first_error = Some(format!(
            "{what} at LBA {} ({} blocks): {failure}",
            io.lba, io.blocks
        ));
    }
    progress.2 += 1;
    source.complete(key, &io, &IoStatus::Failed(failure), &[], now)
}
