//! iSER portals (RFC 7145): `transport = "iser"` in a `[[portal]]` runs the same target-role
//! session state machine (`rtgt_session::target`) and the same logical units as TCP
//! connections, with rtgt-iser as the transport.
//!
//! Each iSER listen address gets one reactor thread (`rtgt-iser-N`) over a [`Verbs`]
//! implementation — the `rdma` backend (libibverbs + librdmacm, feature `rdma`) or the
//! in-process soft fabric ([`IserBackend::Soft`], for tests and `rtgt-initiator selftest-iser`).
//! The thread accepts RDMA-CM connections, runs their iSER-assisted login (§5.1) through
//! [`LoginConnection`](rtgt_session::target::login::LoginConnection) with the iSER keys, and
//! in full feature phase maps the session's output onto the transport:
//!
//! * Data-In → RDMA Write from the task buffer (§7.3.5), a SCSI Response after it, sent with
//!   invalidation of the initiator's STag when allowed (§7.3.4);
//! * R2T → RDMA Read into the task buffer (§7.3.6); its completion is handed to the session as
//!   the R2T's Data-Out, so the session's R2T bookkeeping runs unchanged;
//! * every other PDU → an iSER control-type message (§7.3.7); a task management response waits
//!   until no aborted task has an RDMA operation in flight (§7.3.8).
//!
//! Task buffers come from a NUMA-local pool of the reactor registered as one memory region
//! ([`rtgt_iser::TaskMemory`]); logical units execute synchronously on the reactor thread
//! (every backend's blocking path). The reactor polls its connections; with nothing to do it
//! backs off to short sleeps (neither backend's completion channel is waited on).
//!
//! Limits of this first integration (see docs/iser.md): sessions of an iSER portal stay on
//! its thread (MC/S only within one iSER portal); resets and PREEMPT AND ABORT issued over TCP
//! do not reach iSER sessions' tasks (unit attentions do); discovery sessions are refused over
//! iSER (use a TCP portal for SendTargets).

mod reactor;
mod scsi;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtgt_iser::soft::SoftFabric;
use rtgt_iser::verbs::{Listener, Verbs, VerbsError};

use crate::config::{Config, Transport};
use crate::engine::EngineError;
use crate::reactor::shared::Shared;

/// Whether this build can serve iSER portals on RDMA hardware (the `rdma` feature).
pub const RDMA_SUPPORT: bool = cfg!(feature = "rdma");

/// Where iSER portals get their RDMA verbs.
#[derive(Debug, Clone, Default)]
pub enum IserBackend {
    /// Real devices through libibverbs/librdmacm (feature `rdma`); without the feature, iSER
    /// portals are refused at start-up.
    #[default]
    Rdma,
    /// The in-process soft fabric: initiators in the same process connect through it (tests,
    /// `rtgt-initiator selftest-iser`).
    Soft(SoftFabric),
}

/// Most time the reactors may take to stop after the engine asked them to.
const STOP_BOUND: Duration = Duration::from_secs(20);

/// The running iSER portals of an engine.
pub(crate) struct IserPortals {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
}

impl core::fmt::Debug for IserPortals {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IserPortals")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// The listen address of a failed start-up, with the transport's reason.
fn listen_error(addr: SocketAddr, e: &dyn core::fmt::Display) -> EngineError {
    EngineError::Listen {
        addr,
        source: std::io::Error::other(format!("iSER portal: {e}")),
    }
}

/// Every `transport = "iser"` address of `config`, with its portal group tag.
pub(crate) fn iser_portals(config: &Config) -> Vec<(SocketAddr, u16)> {
    config
        .portals
        .iter()
        .filter(|p| p.transport == Transport::Iser)
        .flat_map(|p| p.listen.iter().map(move |a| (a.addr(), p.group)))
        .collect()
}

/// Opens the device of every iSER portal, listens, and starts one reactor per address.
/// Fails — naming the portal — when a portal cannot be served (no RDMA device, the address
/// is taken, RDMA support not built in).
pub(crate) fn start(
    config: &Config,
    shared: &Arc<Shared>,
    backend: &IserBackend,
) -> Result<Option<IserPortals>, EngineError> {
    let portals = iser_portals(config);
    if portals.is_empty() {
        return Ok(None);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut started = IserPortals {
        threads: Vec::new(),
        stop: stop.clone(),
        addrs: Vec::new(),
    };
    let pool = pool_config(&config.performance);
    for (index, (addr, tpgt)) in portals.into_iter().enumerate() {
        let spec = reactor::Spec {
            index,
            addr,
            tpgt,
            pool: pool.clone(),
            limits: reactor::Limits::from_catalog(&shared.runtime.catalog.defaults),
        };
        let thread = match backend {
            IserBackend::Soft(fabric) => spawn(fabric.clone(), spec, shared, &stop),
            IserBackend::Rdma => spawn_rdma(spec, shared, &stop),
        };
        match thread {
            Ok(t) => {
                started.threads.push(t);
                started.addrs.push(addr);
                tracing::info!("listening on {addr} (iSER)");
            }
            Err(e) => {
                started.stop();
                return Err(e);
            }
        }
    }
    Ok(Some(started))
}

#[cfg(feature = "rdma")]
fn spawn_rdma(
    spec: reactor::Spec,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, EngineError> {
    use rtgt_iser::rdma::RdmaDevice;
    let ip = spec.addr.ip();
    let device = if ip.is_unspecified() {
        RdmaDevice::open(None)
    } else {
        RdmaDevice::open_for_addr(ip)
    }
    .map_err(|e| listen_error(spec.addr, &e))?;
    tracing::info!(device = device.name(), addr = %spec.addr, "iSER portal on RDMA device");
    spawn(device, spec, shared, stop)
}

#[cfg(not(feature = "rdma"))]
#[allow(
    clippy::needless_pass_by_value,
    reason = "same signature as the rdma build's spawn_rdma, which consumes the spec"
)]
fn spawn_rdma(
    spec: reactor::Spec,
    _shared: &Arc<Shared>,
    _stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, EngineError> {
    Err(listen_error(
        spec.addr,
        &"this build has no RDMA support (the rdma feature is off)",
    ))
}

fn spawn<V: Verbs + 'static>(
    verbs: V,
    spec: reactor::Spec,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, EngineError> {
    let addr = spec.addr;
    let listener: V::Listener = verbs
        .listen(addr)
        .map_err(|e: VerbsError| listen_error(addr, &e))?;
    let pd = verbs.alloc_pd().map_err(|e| listen_error(addr, &e))?;
    let shared = Arc::clone(shared);
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name(format!("rtgt-iser-{}", spec.index))
        .spawn(move || {
            let r = reactor::Reactor::new(verbs, listener, pd, spec, shared, stop);
            r.run();
        })
        .map_err(EngineError::Thread)
}

/// The reactor's task buffer pool: the configured buffer size, at least 1 MiB so common
/// transfers fit one buffer; fewer buffers than a TCP reactor (they are registered memory),
/// not pre-faulted.
fn pool_config(perf: &rtgt_affinity::PerformanceConfig) -> rtgt_affinity::PoolConfig {
    let mut p = perf.pool_config(None);
    p.buffer_size = p.buffer_size.max(1 << 20);
    p.buffer_count = p.buffer_count.clamp(1, 64);
    p.prefault = false;
    p
}

impl IserPortals {
    /// The addresses served.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Asks every reactor to stop (initiators are asked to log out first) and waits, bounded.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + STOP_BOUND;
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::error!("an iSER reactor did not stop in time; exiting anyway");
            }
        }
    }
}

impl Drop for IserPortals {
    fn drop(&mut self) {
        self.stop();
    }
}

// Keep the listener trait in scope for `verbs.listen` callers' type inference.
#[allow(dead_code)]
fn _listener_is_send<L: Listener>() {}
