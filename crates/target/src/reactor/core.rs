//! The part of a reactor both I/O engines share (RFC 7143 §5–§7 via rtgt-session, SAM-5 task
//! execution via rtgt-scsi): connections and their framing, login to full feature phase,
//! sessions owned by this reactor, the SCSI path of each task (prepare → Data-Out →
//! execute → complete) with inline execution for memory/null stores and ring submissions for
//! files, send batching, timers, cross-reactor messages (MC/S hand-off, reinstatement, resets)
//! and the shutdown drain.
//!
//! The io_uring loop (`uring.rs`) and the readiness loop (`epoll.rs`) only move bytes: they
//! fill a connection's receive buffer and call [`Core::on_received`], send what
//! [`Core::next_batch`] prepared and report it with [`Core::on_sent`], and (io_uring only)
//! submit the backend operations queued in [`Core::ring_ops`].
//!
//! Per-I/O path: no locks and no allocation once warmed up — task buffers come from the
//! reactor's pool (or a per-slot vector reused across tasks), transmit queues and batches are
//! preallocated. The remaining allocations are listed in docs/architecture.md (sense data,
//! login/text answers, plans of more than two operations).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtgt_affinity::ReactorCache;
use rtgt_pdu::{Digests, Framer, LoginRequest};
use rtgt_session::target::login::LoginConnection;
use rtgt_session::target::{ConnId, Payload, TaskId, Transmit};

use super::buffers::TaskBuf;
use super::send::SendBatch;
use super::sessions::SessionCtx;
use super::shared::{ConnInfo, Message, Shared};
use super::slab::Slab;
use crate::parked::ParkedCommands;

/// Receive buffer per connection.
pub(crate) const RX_BUF: usize = 256 * 1024;
/// PDUs per send batch (three iovecs each).
pub(crate) const MAX_BATCH: usize = 32;
/// How long a login may take.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for initiators to log out before dropping them.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// After the grace period, how long sessions may take to drain before they are dropped.
const HARD_STOP: Duration = Duration::from_secs(3);
/// Which loop drives this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoMode {
    /// io_uring: file I/O goes to the ring.
    Uring,
    /// Readiness loop: file I/O runs synchronously.
    Epoll,
}

/// What is being received on a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RxPlace {
    Discard,
    Collect,
    /// Into a task buffer: the next data byte goes to `pos`; `left` bytes of the data segment
    /// are still to come.
    Task {
        sidx: usize,
        slot: usize,
        task: TaskId,
        pos: usize,
        left: usize,
    },
}

/// Login or full feature phase.
pub(crate) enum Phase {
    Login(Box<LoginConnection>),
    Ffp {
        sidx: usize,
        cid: ConnId,
    },
    /// Being handed to another reactor or closed.
    Gone,
}

/// Connection life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Open,
    /// Close once everything queued has been sent.
    CloseAfterFlush,
    /// Closing: no more I/O is started; reaped once nothing is in flight.
    Closing,
    /// Moving to another reactor: no more receives; what is queued is still sent.
    Handoff,
}

pub(crate) struct Conn {
    pub stream: mio::net::TcpStream,
    pub info: ConnInfo,
    pub framer: Framer,
    /// The receive buffer; `None` while the ring receives into it.
    pub rx: Option<Box<TaskBuf>>,
    /// A receive straight into a task buffer in flight (io_uring).
    pub direct: Option<super::recv::Direct>,
    /// Receive headers on their own so large data segments can go straight to task buffers
    /// (set while the connection carries large data segments; see `recv.rs`).
    pub header_first: bool,
    /// Padding and data digest bytes that follow the data of the PDU being placed.
    pub trailer: usize,
    pub phase: Phase,
    pub place: RxPlace,
    pub collect: Vec<u8>,
    pub login_req: Option<LoginRequest>,
    pub digests: Digests,
    /// Queued PDUs still sent without digests (login responses queued before full feature
    /// phase began; digests apply from the first full-feature PDU, RFC 7143 §13.1).
    pub plain: usize,
    pub txq: VecDeque<Transmit>,
    /// The send batch; `None` while the ring sends it.
    pub batch: Option<Box<SendBatch>>,
    pub life: Life,
    pub login_deadline: Option<Instant>,
}

/// Whose memory a backend operation works on (and who hears of its completion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A task's buffer: slot `slot` of session `sidx`.
    Task { sidx: usize, slot: usize },
    /// Read-ahead chunk `slot` of logical unit `lu` (its index).
    Fetch { lu: usize, slot: usize },
    /// Coalesced write batch `id` of logical unit `lu`.
    Batch { lu: usize, id: u64 },
}

/// The backing file a ring operation works on, and whether its operations go to the kernel as
/// they are queued (O_DIRECT by default, see `rtgt_uring::SubmitPolicy`: a virtio or other
/// single-queue disk serves bursts more slowly) or with the loop's next batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingFile {
    pub fd: i32,
    pub immediate: bool,
}

impl RingFile {
    /// A file-backed store's file.
    pub(crate) fn of(store: &rtgt_uring::Store) -> Self {
        Self {
            fd: std::os::fd::AsRawFd::as_raw_fd(store.backing().file()),
            immediate: store.submits_immediately(),
        }
    }

    /// The file of a logical unit's backend, if it has one.
    pub(crate) fn of_backend(backend: &crate::runtime::Backend) -> Option<Self> {
        match backend {
            crate::runtime::Backend::File(s) => Some(Self::of(s)),
            _ => None,
        }
    }
}

/// A backend operation for the io_uring loop to submit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingOp {
    pub owner: Owner,
    pub file: RingFile,
    pub kind: RingOpKind,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RingOpKind {
    /// Read `len` bytes at `offset` into the task buffer (`aux`: the auxiliary Data-In
    /// buffer) at `pos`.
    Read {
        offset: u64,
        pos: usize,
        len: usize,
        aux: bool,
    },
    /// Write `len` bytes of the task buffer from `pos` at `offset`.
    Write {
        offset: u64,
        pos: usize,
        len: usize,
        fua: bool,
    },
    Flush,
}

/// A reactor's state.
pub(crate) struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub mode: IoMode,
    pub conns: Slab<Conn>,
    pub sessions: Slab<SessionCtx>,
    pub cache: Option<ReactorCache>,
    pub pool_size: usize,
    pub ring_ops: Vec<RingOp>,
    /// Connections with something to send.
    pub dirty: Vec<usize>,
    /// Connections to close.
    pub to_close: Vec<usize>,
    pub blocked: Vec<(usize, TaskId)>,
    pub now: Instant,
    pub shutdown_deadline: Option<Instant>,
    /// Connections added since the loop last looked (to register / arm receives).
    pub adopted: Vec<usize>,
    /// Connections to move to another reactor (token, reactor, the login's session request)
    /// once the loop has no I/O of theirs in flight.
    pub handoffs: Vec<(usize, usize, rtgt_session::target::login::SessionRequest)>,
    /// Serial of the session a login is about to create.
    pub(crate) pending_serial: Option<u64>,
    /// Session a login is about to join.
    pub(crate) pending_join: Option<usize>,
    /// Counters, logged when the reactor stops.
    pub stats: ReactorStats,
    /// Streams state per logical unit (by [`crate::runtime::LunRuntime::index`]), created on
    /// first use.
    pub streams: Vec<Option<super::streams::ReactorStreams>>,
}

/// A reactor's counters (plain integers: one thread owns them).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReactorStats {
    /// Data-segment bytes copied from the receive buffer into task buffers.
    pub rx_copied: u64,
    /// Data-segment bytes received straight into task buffers.
    pub rx_direct: u64,
}

impl Core {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        mode: IoMode,
        cache: Option<ReactorCache>,
        pool_size: usize,
    ) -> Self {
        Self {
            id,
            shared,
            mode,
            conns: Slab::default(),
            sessions: Slab::default(),
            cache,
            pool_size,
            ring_ops: Vec::with_capacity(256),
            dirty: Vec::with_capacity(64),
            to_close: Vec::new(),
            blocked: Vec::new(),
            now: Instant::now(),
            shutdown_deadline: None,
            adopted: Vec::new(),
            handoffs: Vec::new(),
            pending_serial: None,
            pending_join: None,
            stats: ReactorStats::default(),
            streams: Vec::new(),
        }
    }

    /// Publishes the reactor's counters for [`crate::Engine::stats`].
    pub(crate) fn publish_stats(&self) {
        if let Some(h) = self.shared.reactors.get().and_then(|r| r.get(self.id)) {
            h.stats
                .rx_direct
                .store(self.stats.rx_direct, Ordering::Relaxed);
            h.stats
                .rx_copied
                .store(self.stats.rx_copied, Ordering::Relaxed);
        }
    }

    /// Logs (and publishes) the reactor's counters when it stops.
    pub(crate) fn log_stats(&self) {
        self.publish_stats();
        let s = self.stats;
        tracing::info!(
            reactor = self.id,
            rx_direct_bytes = s.rx_direct,
            rx_copied_bytes = s.rx_copied,
            "reactor stopped: data segments received {:.1}% straight into task buffers",
            if s.rx_direct + s.rx_copied == 0 {
                0.0
            } else {
                100.0 * s.rx_direct as f64 / (s.rx_direct + s.rx_copied) as f64
            }
        );
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown_deadline.is_some()
    }

    /// Whether the reactor may exit: shutting down and nothing left.
    pub(crate) fn finished(&self) -> bool {
        self.shutdown_deadline.is_some() && self.conns.is_empty() && self.sessions.is_empty()
    }

    // ------------------------------------------------------------------ connections

    // ------------------------------------------------------------------ messages

    pub(crate) fn handle_message(&mut self, msg: Message) {
        match msg {
            Message::NewConn(stream, info) => {
                if self.is_shutting_down() {
                    self.shared.load(self.id).fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                let token = self.add_conn(stream, info);
                self.adopted.push(token);
            }
            Message::Adopt(h) => self.adopt(h),
            Message::Terminate { tsih, serial } => self.terminate_session(tsih, serial),
            Message::ResetAbort {
                target,
                lun,
                except,
                terminate,
            } => {
                let hits: Vec<usize> = self
                    .sessions
                    .iter()
                    .filter(|(_, c)| {
                        c.serial != except && c.target.as_ref().is_some_and(|t| *t.name == *target)
                    })
                    .map(|(i, _)| i)
                    .collect();
                for sidx in hits {
                    if terminate {
                        let (tsih, serial) = self
                            .sessions
                            .get(sidx)
                            .map_or((0, 0), |c| (c.tsih, c.serial));
                        self.terminate_session(tsih, serial);
                    } else {
                        if let Some(ctx) = self.sessions.get_mut(sidx) {
                            let lun = lun.and_then(rtgt_pdu::Lun::from_number);
                            ctx.session.abort_for_reset(lun);
                        }
                        self.drive_session(sidx);
                    }
                }
            }
            Message::AbortNexuses {
                target,
                lun,
                nexuses,
            } => {
                let hits: Vec<usize> = self
                    .sessions
                    .iter()
                    .filter(|(_, c)| {
                        nexuses.contains(&c.nexus.id)
                            && c.target.as_ref().is_some_and(|t| *t.name == *target)
                    })
                    .map(|(i, _)| i)
                    .collect();
                for sidx in hits {
                    if let Some(ctx) = self.sessions.get_mut(sidx) {
                        ctx.session
                            .abort_for_reset(lun.and_then(rtgt_pdu::Lun::from_number));
                    }
                    self.drive_session(sidx);
                }
            }
            Message::Unblocked => self.retry_blocked(),
            Message::Shutdown => self.begin_shutdown(),
        }
    }

    /// Stops taking connections, asks every initiator to log out, closes logins.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + SHUTDOWN_GRACE);
        let now = self.now;
        for sidx in self.sessions.keys() {
            if let Some(ctx) = self.sessions.get_mut(sidx) {
                ctx.session.request_logout(now);
            }
            self.drive_session(sidx);
        }
        for token in self.conns.keys() {
            if matches!(
                self.conns.get(token).map(|c| &c.phase),
                Some(Phase::Login(_))
            ) {
                self.close_conn(token);
            }
        }
    }

    // ------------------------------------------------------------------ timers

    /// Runs due timers: session NOP pings/timeouts, login timeouts, the shutdown deadline.
    pub(crate) fn tick(&mut self) {
        self.publish_stats();
        let now = self.now;
        for sidx in self.sessions.keys() {
            let due = self
                .sessions
                .get(sidx)
                .and_then(|c| c.session.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(ctx) = self.sessions.get_mut(sidx) {
                    ctx.session.handle_timeout(now);
                }
                self.drive_session(sidx);
            }
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.login_deadline.is_some_and(|d| d <= now))
            .map(|(i, _)| i)
            .collect();
        for t in expired {
            tracing::info!("login timed out");
            self.close_conn(t);
        }
        if self.shutdown_deadline.is_some_and(|d| d <= now) {
            for t in self.conns.keys() {
                self.close_conn(t);
            }
            for sidx in self.sessions.keys() {
                if let Some(ctx) = self.sessions.get_mut(sidx) {
                    ctx.session.terminate();
                }
                self.drive_session(sidx);
            }
        }
        if self.shutdown_deadline.is_some_and(|d| d + HARD_STOP <= now) {
            self.force_end_sessions();
        }
        self.retry_blocked();
    }

    /// Last resort at shutdown: sessions whose tasks never drained (an engine or initiator
    /// bug) are dropped, except while a ring operation still writes into their buffers.
    fn force_end_sessions(&mut self) {
        for sidx in self.sessions.keys() {
            let busy = self
                .sessions
                .get(sidx)
                .is_some_and(|c| c.slots.iter().any(|s| s.io_pending));
            if busy {
                continue;
            }
            if let Some(ctx) = self.sessions.get_mut(sidx) {
                tracing::warn!(
                    tsih = ctx.tsih,
                    "dropping a session whose tasks did not drain"
                );
                for slot in &mut ctx.slots {
                    if let (Some(cmd), Some(l)) = (
                        slot.cmd.take(),
                        ctx.target.as_ref().and_then(|t| t.lun(slot.lun)),
                    ) {
                        let _ = l.lu.abort(cmd);
                    }
                }
            }
            self.remove_session(sidx);
        }
    }

    /// The earliest timer, capped so the loop also polls the shutdown flag.
    pub(crate) fn next_timeout(&self) -> Duration {
        let mut next = self.now + Duration::from_millis(200);
        for (_, c) in self.sessions.iter() {
            if let Some(t) = c.session.poll_timeout() {
                next = next.min(t);
            }
        }
        if let Some(d) = self.shutdown_deadline {
            next = next.min(d);
        }
        for rs in self.streams.iter().flatten() {
            if let Some(d) = rs.next_deadline() {
                next = next.min(d);
            }
        }
        next.saturating_duration_since(self.now)
            .max(Duration::from_millis(1))
    }

    /// Starts closing a connection: no new I/O; the loop reaps it when nothing is in flight.
    pub(crate) fn close_conn(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.life == Life::Closing {
            return;
        }
        conn.life = Life::Closing;
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        if !self.to_close.contains(&token) {
            self.to_close.push(token);
        }
    }

    /// Removes a closed connection for good and tells its session.
    pub(crate) fn reap_conn(&mut self, token: usize) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        self.shared.load(self.id).fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(reactor = self.id, peer = %conn.info.peer, "connection closed");
        let Phase::Ffp { sidx, cid } = conn.phase else {
            return;
        };
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        let _ = ctx;
        if let Some(mut batch) = conn.batch.take() {
            self.settle_batch(&mut batch);
        }
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        for t in conn.txq.drain(..) {
            if let Payload::Task { task, .. } = t.payload {
                ctx.session.transmit_done(task);
            }
        }
        ctx.session.connection_lost(cid);
        self.drive_session(sidx);
    }
}
