//! Starting and stopping the engine: the runtime catalog, the listening portals, the choice of
//! I/O engine (io_uring, or the readiness loop where io_uring is unavailable), reactor
//! placement from rtgt-affinity's planner, the reactor threads and the acceptor, and the clean
//! shutdown (stop accepting, ask initiators to log out, drain, flush the stores).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::reactor::core::IoMode;
use crate::reactor::shared::{Message, ReactorHandle, Shared, Waker};
use crate::reactor::{ReactorSpec, WakeEnd};
use crate::runtime::{Backend, Runtime, RuntimeError};

/// Which I/O engine the reactors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoEngine {
    /// io_uring when the kernel allows it, else the readiness loop.
    #[default]
    Auto,
    /// io_uring; failing to start when it is unavailable.
    Uring,
    /// The epoll readiness loop.
    Epoll,
}

impl core::str::FromStr for IoEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            "epoll" => Ok(Self::Epoll),
            other => Err(format!("unknown I/O engine {other:?} (auto, uring, epoll)")),
        }
    }
}

impl core::fmt::Display for IoEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "io_uring",
            Self::Epoll => "epoll",
        })
    }
}

/// How to run the engine (beyond the configuration file).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// I/O engine.
    pub io_engine: IoEngine,
    /// Number of reactors (overrides `[performance] reactors`).
    pub reactors: Option<usize>,
    /// Pin reactors to the planner's CPUs.
    pub pin: bool,
    /// Buffers per reactor pool (overrides `[performance] buffer_count`); 0 disables the pool.
    pub pool_buffers: Option<u32>,
    /// Polling window in microseconds (overrides `[performance] poll_us`).
    pub poll_us: Option<u32>,
}

/// Why the engine could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Building the runtime catalog failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A portal could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// io_uring was requested but is unavailable.
    #[error("io_uring is unavailable: {0}")]
    UringUnavailable(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// Reactors did not stop within the shutdown bound (a bug: the daemon exits anyway).
    #[error("{0} reactor(s) did not stop within {1:?}")]
    Stuck(usize, std::time::Duration),
    /// Flushing a backing store at shutdown failed.
    #[error("flushing {0} failed: {1}")]
    Flush(String, String),
}

/// Counters of a running engine ([`Engine::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Write data (immediate data and Data-Out) received straight into task buffers.
    pub rx_direct_bytes: u64,
    /// Write data copied from a connection's receive buffer into task buffers (it had arrived
    /// together with its header).
    pub rx_copied_bytes: u64,
    /// Read-ahead and write coalescing, summed over the logical units that use them.
    pub streams: crate::streams::StreamsStats,
}

/// A running engine.
pub struct Engine {
    shared: Arc<Shared>,
    reactors: Vec<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
    acceptor_waker: Arc<mio::Waker>,
    addrs: Vec<SocketAddr>,
    mode: IoEngine,
    done: crossbeam_channel::Receiver<usize>,
    /// iSER portals (RFC 7145), served by their own reactors (`crate::iser`).
    iser: Option<crate::iser::IserPortals>,
}

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("addrs", &self.addrs)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Decides the I/O engine; the string says why when io_uring is not used.
fn choose_engine(asked: IoEngine) -> Result<(IoMode, Option<String>), EngineError> {
    let probe = || -> Result<(), String> {
        if let rtgt_uring::detect::Availability::Unavailable(why) =
            rtgt_uring::detect::detect(std::path::Path::new("/proc"))
        {
            return Err(why);
        }
        rtgt_uring::ring::build(8, &rtgt_uring::RingOptions::default())
            .map(|_| ())
            .map_err(|e| format!("io_uring_setup: {e}"))
    };
    match asked {
        IoEngine::Epoll => Ok((IoMode::Epoll, Some("--io-engine epoll".into()))),
        IoEngine::Uring => probe()
            .map(|()| (IoMode::Uring, None))
            .map_err(EngineError::UringUnavailable),
        IoEngine::Auto => Ok(match probe() {
            Ok(()) => (IoMode::Uring, None),
            Err(why) => (IoMode::Epoll, Some(why)),
        }),
    }
}

impl Engine {
    /// Opens the stores, binds the portals and starts the reactors and the acceptor; iSER
    /// portals run on RDMA devices ([`IserBackend::Rdma`](crate::iser::IserBackend::Rdma)).
    pub fn start(config: &Config, options: &EngineOptions) -> Result<Self, EngineError> {
        Self::start_with_iser(config, options, &crate::iser::IserBackend::default())
    }

    /// As [`Engine::start`], with the iSER portals served over `iser` (the soft fabric lets
    /// initiators in the same process connect).
    pub fn start_with_iser(
        config: &Config,
        options: &EngineOptions,
        iser: &crate::iser::IserBackend,
    ) -> Result<Self, EngineError> {
        let mut runtime = Runtime::build(config)?;
        // Bind first so that port 0 resolves before SendTargets answers are built.
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for (addr, tag) in &runtime.portals {
            let std_listener =
                std::net::TcpListener::bind(addr).map_err(|source| EngineError::Listen {
                    addr: *addr,
                    source,
                })?;
            std_listener
                .set_nonblocking(true)
                .map_err(|source| EngineError::Listen {
                    addr: *addr,
                    source,
                })?;
            let bound = std_listener.local_addr().unwrap_or(*addr);
            addrs.push(bound);
            listeners.push((
                mio::net::TcpListener::from_std(std_listener),
                *tag,
                *addr,
                bound,
            ));
        }
        if let Some(cat) = Arc::get_mut(&mut runtime.catalog) {
            for (_, tag, asked, bound) in &listeners {
                if let Some(g) = cat.portal_groups.iter_mut().find(|g| g.tag == *tag) {
                    for a in &mut g.addresses {
                        if a == asked {
                            *a = *bound;
                        }
                    }
                }
            }
        }
        let (mode, why) = choose_engine(options.io_engine)?;
        if let (Some(why), IoMode::Epoll) = (&why, mode) {
            tracing::info!("I/O engine: epoll readiness loop ({why})");
        } else {
            tracing::info!("I/O engine: io_uring");
        }
        // Placement.
        let root = rtgt_affinity::SysRoot::new("/");
        let mut perf = runtime.performance.clone();
        if let Some(n) = options.reactors {
            perf.reactors = Some(u32::try_from(n.max(1)).unwrap_or(1));
        }
        let devices: Vec<String> = runtime
            .all_luns()
            .filter_map(|l| match &l.backend {
                Backend::File(s) if s.backing().kind() == rtgt_uring::BackingKind::BlockDevice => s
                    .backing()
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let device_refs: Vec<&str> = devices.iter().map(String::as_str).collect();
        let plan = rtgt_affinity::Topology::detect(&root)
            .and_then(|topo| rtgt_affinity::plan_placement(&root, &topo, &perf, &[], &device_refs));
        let slots: Vec<(Option<u32>, Option<u32>)> = match &plan {
            Ok(p) => {
                tracing::info!("placement: {}", p.explanation.trim().replace('\n', "; "));
                p.reactors
                    .iter()
                    .map(|r| (Some(r.cpu), Some(r.node)))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "placement planner failed; reactors are not pinned");
                let n = perf.reactors.map_or_else(
                    || std::thread::available_parallelism().map_or(1, usize::from),
                    |r| r as usize,
                );
                vec![(None, None); n.max(1)]
            }
        };
        let count = options
            .reactors
            .or(perf.reactors.map(|r| r as usize))
            .unwrap_or(slots.len())
            .max(1);
        let runtime = Arc::new(runtime);
        let shared = Arc::new(Shared::new(runtime.clone()));
        let iser = crate::iser::start(config, &shared, iser)?;
        let mut handles = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..count {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (waker, end) = match mode {
                IoMode::Uring => {
                    let (a, b) =
                        std::os::unix::net::UnixStream::pair().map_err(EngineError::Thread)?;
                    let _ = a.set_nonblocking(true);
                    (Waker::Socket(a), WakeEnd::Socket(b))
                }
                IoMode::Epoll => {
                    let poll = mio::Poll::new().map_err(EngineError::Thread)?;
                    let w = mio::Waker::new(poll.registry(), crate::reactor::epoll::WAKE)
                        .map_err(EngineError::Thread)?;
                    (Waker::Mio(w), WakeEnd::Poll(poll))
                }
            };
            handles.push(ReactorHandle {
                tx,
                waker,
                load: std::sync::atomic::AtomicUsize::new(0),
                stats: crate::reactor::shared::PublishedStats::default(),
            });
            ends.push((rx, end));
        }
        let _ = shared.reactors.set(handles);
        // COMPARE AND WRITE gate releases wake every reactor.
        for l in runtime.all_luns() {
            let s = Arc::downgrade(&shared);
            l.lu.set_unblock_notifier(Arc::new(move || {
                if let Some(s) = s.upgrade() {
                    s.broadcast(|| Message::Unblocked);
                }
            }));
        }
        let pool_buffers = options.pool_buffers.unwrap_or(perf.buffer_count);
        let mut reactors = Vec::new();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for (id, (rx, end)) in ends.into_iter().enumerate() {
            let (cpu, node) = if options.pin {
                slots.get(id).copied().unwrap_or((None, None))
            } else {
                (None, slots.get(id).and_then(|s| s.1))
            };
            let pool = (pool_buffers > 0).then(|| {
                let mut p = perf.pool_config(node);
                p.buffer_count = pool_buffers.clamp(1, rtgt_affinity::MAX_BUFFER_COUNT);
                p
            });
            let spec = ReactorSpec {
                id,
                cpu,
                node,
                mode,
                pool,
                poll: std::time::Duration::from_micros(u64::from(
                    options.poll_us.unwrap_or(perf.poll_us),
                )),
            };
            reactors.push(
                crate::reactor::spawn(spec, shared.clone(), rx, end, done_tx.clone())
                    .map_err(EngineError::Thread)?,
            );
        }
        let poll = mio::Poll::new().map_err(EngineError::Thread)?;
        let acceptor_waker = Arc::new(
            mio::Waker::new(poll.registry(), crate::acceptor::wake_token())
                .map_err(EngineError::Thread)?,
        );
        let l: Vec<(mio::net::TcpListener, u16)> = listeners
            .into_iter()
            .map(|(l, tag, _, _)| (l, tag))
            .collect();
        let acceptor =
            crate::acceptor::spawn(poll, l, shared.clone()).map_err(EngineError::Thread)?;
        for a in &addrs {
            tracing::info!("listening on {a}");
        }
        Ok(Self {
            shared,
            reactors,
            acceptor: Some(acceptor),
            acceptor_waker,
            addrs,
            done: done_rx,
            iser,
            mode: if mode == IoMode::Uring {
                IoEngine::Uring
            } else {
                IoEngine::Epoll
            },
        })
    }

    /// The addresses the portals listen on (with ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The addresses the iSER portals listen on.
    pub fn iser_addrs(&self) -> &[SocketAddr] {
        self.iser
            .as_ref()
            .map_or(&[], crate::iser::IserPortals::addrs)
    }

    /// The I/O engine in use.
    pub fn io_engine(&self) -> IoEngine {
        self.mode
    }

    /// The engine's counters, summed over its reactors (each reactor refreshes its share
    /// every 50 ms and when it stops).
    pub fn stats(&self) -> EngineStats {
        let mut s = EngineStats::default();
        for h in self.shared.reactors.get().map_or(&[][..], Vec::as_slice) {
            s.rx_direct_bytes += h.stats.rx_direct.load(Ordering::Relaxed);
            s.rx_copied_bytes += h.stats.rx_copied.load(Ordering::Relaxed);
        }
        for l in self.shared.runtime.all_luns() {
            if let Some(st) = &l.streams {
                s.streams.add(&st.stats());
            }
        }
        s
    }

    /// Stops accepting, asks every initiator to log out, waits for sessions to drain (a few
    /// seconds at most), then flushes every backing store.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.shared.shutdown.store(true, Ordering::Release);
        let _ = self.acceptor_waker.wake();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.shared.broadcast(|| Message::Shutdown);
        if let Some(mut iser) = self.iser.take() {
            iser.stop();
        }
        let left = self.wait_reactors();
        if left > 0 {
            tracing::error!(
                reactors = left,
                "reactors did not stop in time; exiting anyway"
            );
            // Their threads are detached; process exit ends them.
            self.reactors.clear();
            return Err(EngineError::Stuck(left, STOP_BOUND));
        }
        let mut result = Ok(());
        for l in self.shared.runtime.all_luns() {
            if let Some(st) = &l.streams {
                let s = st.stats();
                tracing::info!(
                    lun = l.number,
                    readahead_hits = s.readahead_hits,
                    readahead_misses = s.readahead_misses,
                    readahead_chunks = s.readahead_chunks,
                    coalesced_writes = s.coalesced_writes,
                    coalesced_batches = s.coalesced_batches,
                    "streams: read-ahead hit rate {:.1}%",
                    100.0 * s.hit_rate()
                );
            }
            if let Err(e) = l.backend.block().flush() {
                result = Err(EngineError::Flush(
                    format!("LUN {}", l.number),
                    e.to_string(),
                ));
            }
        }
        tracing::info!("stopped");
        result
    }

    /// Waits (bounded) for every reactor to end; returns how many did not.
    fn wait_reactors(&mut self) -> usize {
        let deadline = std::time::Instant::now() + STOP_BOUND;
        let mut ended = 0;
        while ended < self.reactors.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.done.recv_timeout(left) {
                Ok(_) => ended += 1,
                Err(_) => break,
            }
        }
        let stuck = self.reactors.len() - ended;
        if stuck == 0 {
            for r in self.reactors.drain(..) {
                let _ = r.join();
            }
        }
        stuck
    }

    /// Runs until SIGINT or SIGTERM, then shuts down cleanly. Signals arriving before this
    /// call are not caught: install [`ShutdownSignals`] before [`Engine::start`] and use
    /// [`Engine::run_until`] to close that window.
    pub fn run_until_signal(self) -> Result<(), EngineError> {
        let signals = ShutdownSignals::install()?;
        self.run_until(signals)
    }

    /// Runs until one of `signals` arrives, then shuts down cleanly.
    pub fn run_until(self, signals: ShutdownSignals) -> Result<(), EngineError> {
        let sig = signals.wait();
        tracing::info!(signal = sig, "shutting down");
        self.shutdown()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.reactors.is_empty() {
            return;
        }
        self.shared.shutdown.store(true, Ordering::Release);
        let _ = self.acceptor_waker.wake();
        self.shared.broadcast(|| Message::Shutdown);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        if self.wait_reactors() > 0 {
            self.reactors.clear();
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment this is installed (before the portals listen,
/// so a supervisor's early SIGTERM still leads to a clean shutdown).
pub struct ShutdownSignals(signal_hook::iterator::Signals);

impl core::fmt::Debug for ShutdownSignals {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ShutdownSignals")
    }
}

impl ShutdownSignals {
    /// Starts catching SIGINT and SIGTERM.
    pub fn install() -> Result<Self, EngineError> {
        signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map(Self)
        .map_err(EngineError::Thread)
    }

    /// Blocks until one of them arrives (also if it arrived already); returns its number.
    pub fn wait(mut self) -> i32 {
        self.0
            .forever()
            .next()
            .unwrap_or(signal_hook::consts::SIGTERM)
    }
}

/// Longest a shutdown waits for reactors: the logout grace, the forced drain, and slack.
const STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(20);
