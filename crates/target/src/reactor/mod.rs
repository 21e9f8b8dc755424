//! Reactors: one pinned thread per core, each owning its connections and sessions and one
//! I/O loop — io_uring ([`uring`]) or the portable readiness loop ([`epoll`]) — over the shared
//! [`core::Core`].

pub(crate) mod buffers;
pub(crate) mod core;
pub(crate) mod epoll;
pub(crate) mod exec;
pub(crate) mod idle;
pub(crate) mod login;
pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod sessions;
pub(crate) mod shared;
pub(crate) mod slab;
pub(crate) mod streams;
pub(crate) mod uring;

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use self::core::{Core, IoMode};
use self::shared::{Message, Shared};

/// Where and how one reactor runs.
#[derive(Debug, Clone)]
pub(crate) struct ReactorSpec {
    pub id: usize,
    pub cpu: Option<u32>,
    pub node: Option<u32>,
    pub mode: IoMode,
    pub pool: Option<rtgt_affinity::PoolConfig>,
    /// How long to poll for work before sleeping ([`idle::IdlePoll`]).
    pub poll: std::time::Duration,
}

/// The receiving end a reactor waits on.
pub(crate) enum WakeEnd {
    Socket(std::os::unix::net::UnixStream),
    Poll(mio::Poll),
}

/// Starts a reactor thread.
/// Reports a reactor's end (also when it panics) to the engine waiting for it.
struct DoneGuard(usize, crossbeam_channel::Sender<usize>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

pub(crate) fn spawn(
    spec: ReactorSpec,
    shared: Arc<Shared>,
    rx: Receiver<Message>,
    wake: WakeEnd,
    done: crossbeam_channel::Sender<usize>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("rtgt-reactor-{}", spec.id)).spawn(move || {
        let _done = DoneGuard(spec.id, done);
        if let Some(cpu) = spec.cpu {
            tracing::debug!(reactor = spec.id, cpu, node = ?spec.node, "pinning reactor");
            if let Err(e) = rtgt_affinity::pin_current_thread_to_cpu(cpu) {
                tracing::warn!(reactor = spec.id, cpu, error = %e, "could not pin reactor");
            }
        }
        // The pool is created on the reactor's own (pinned) thread so its pages land on the
        // reactor's node; the cache in front of it is thread-local.
        let pool = spec.pool.as_ref().and_then(|cfg| match rtgt_affinity::NodePool::new(cfg) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(reactor = spec.id, error = %e, "no buffer pool; task buffers come from the heap");
                None
            }
        });
        let (cache, pool_size) = match &pool {
            Some(p) => (Some(p.cache(64)), p.buffer_size()),
            None => (None, 0),
        };
        match (spec.mode, wake) {
            (IoMode::Uring, WakeEnd::Socket(sock)) => {
                let entries = 1024;
                match uring::build_ring(entries, pool.as_ref()) {
                    Ok(ring) => {
                        let core = Core::new(spec.id, shared, IoMode::Uring, cache, pool_size);
                        uring::run(core, ring, &sock, &rx, idle::IdlePoll::new(spec.poll));
                    }
                    Err(e) => tracing::error!(reactor = spec.id, error = %e, "cannot build io_uring"),
                }
            }
            (IoMode::Epoll, WakeEnd::Poll(poll)) => {
                let core = Core::new(spec.id, shared, IoMode::Epoll, cache, pool_size);
                epoll::run(core, poll, &rx, idle::IdlePoll::new(spec.poll));
            }
            _ => tracing::error!(reactor = spec.id, "reactor wake-up does not match its I/O engine"),
        }
        drop(pool);
    })
}
