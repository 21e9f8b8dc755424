//! State shared by every reactor and the acceptor: the runtime catalog, the session table
//! (RFC 7143 §4.4.3 session identity, TSIH allocation — touched only at login and session
//! end, under one mutex), counters, and the crossbeam channels reactors talk over (new
//! connections, MC/S hand-offs, reinstatement, resets, shutdown).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::Sender;
use rtgt_pdu::Framer;
use rtgt_scsi::NexusId;
use rtgt_session::table::{SessionKey, SessionTable};
use rtgt_session::target::Transmit;
use rtgt_session::target::login::{LoginConnection, SessionRequest};

use crate::runtime::Runtime;

/// Where a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionLoc {
    pub reactor: usize,
    /// Distinguishes a session from a later one with the same TSIH.
    pub serial: u64,
}

/// Addresses of an accepted connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tpgt: u16,
}

/// A connection moving to the reactor that owns the session it joins.
pub(crate) struct Handoff {
    pub stream: mio::net::TcpStream,
    pub info: ConnInfo,
    pub framer: Framer,
    pub login: Box<LoginConnection>,
    pub request: SessionRequest,
    pub txq: std::collections::VecDeque<Transmit>,
}

/// What reactors tell each other.
pub(crate) enum Message {
    /// A connection from the acceptor.
    NewConn(mio::net::TcpStream, ConnInfo),
    /// A connection joining one of our sessions.
    Adopt(Box<Handoff>),
    /// End this session (it was reinstated elsewhere).
    Terminate { tsih: u16, serial: u64 },
    /// Another session reset a logical unit (or the target): abort our tasks there.
    ResetAbort {
        target: Arc<str>,
        lun: Option<u16>,
        except: u64,
        terminate: bool,
    },
    /// PREEMPT AND ABORT: these nexuses lose their tasks.
    AbortNexuses {
        target: Arc<str>,
        lun: Option<u16>,
        nexuses: Vec<NexusId>,
    },
    /// A COMPARE AND WRITE range was released; retry parked commands.
    Unblocked,
    /// Stop.
    Shutdown,
}

/// How a reactor is woken.
pub(crate) enum Waker {
    /// Write a byte to this socket (io_uring reactor reads the other end).
    Socket(std::os::unix::net::UnixStream),
    /// mio's waker (readiness reactor).
    Mio(mio::Waker),
}

impl Waker {
    pub(crate) fn wake(&self) {
        match self {
            Self::Socket(s) => {
                use std::io::Write as _;
                let _ = (&*s).write(&[1]);
            }
            Self::Mio(w) => {
                let _ = w.wake();
            }
        }
    }
}

/// A reactor's counters as published for the engine (refreshed every timer tick and when
/// the reactor stops; relaxed atomics, they are statistics).
#[derive(Debug, Default)]
pub(crate) struct PublishedStats {
    pub rx_direct: AtomicU64,
    pub rx_copied: AtomicU64,
}

/// A reactor as seen from outside.
pub(crate) struct ReactorHandle {
    pub tx: Sender<Message>,
    pub waker: Waker,
    /// Connections on it (load for the acceptor).
    pub load: AtomicUsize,
    /// Its counters.
    pub stats: PublishedStats,
}

/// Everything reactors share.
pub(crate) struct Shared {
    pub runtime: Arc<Runtime>,
    pub table: Mutex<SessionTable<SessionLoc>>,
    pub reactors: OnceLock<Vec<ReactorHandle>>,
    pub next_serial: AtomicU64,
    pub next_nexus: AtomicU32,
    pub shutdown: AtomicBool,
    fallback_load: AtomicUsize,
    /// The iSER portals' inboxes, by reactor id. They poll (the fabric has no waker), and
    /// take only the task-ending messages: resets and PREEMPT AND ABORT from other sessions.
    iser_inboxes: Mutex<Vec<(usize, Sender<Message>)>>,
}

/// A new session's entry in the session table (see [`Shared::insert_session`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewSession {
    /// Its TSIH; `None` when the table is full.
    pub tsih: Option<u16>,
    /// Its serial (tells it apart from a later session with the same TSIH).
    pub serial: u64,
    /// The session with the same initiator name, ISID and target that it reinstates
    /// (RFC 7143 §6.3.5), with where that session lives; the caller must end it.
    pub replaced: Option<(u16, SessionLoc)>,
}

impl Shared {
    /// Enters a new session living on reactor `reactor` in the session table, taking out any
    /// session with the same identity (session reinstatement).
    pub(crate) fn insert_session(&self, key: SessionKey, reactor: usize) -> NewSession {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replaced = table
            .find(&key)
            .and_then(|t| table.remove(t).map(|e| (t, e.value)));
        let tsih = table.insert(key, SessionLoc { reactor, serial }).ok();
        NewSession {
            tsih,
            serial,
            replaced,
        }
    }

    /// Where the session `tsih` lives, if it exists and has the identity `key` (a connection
    /// joining a session, RFC 7143 §6.3.4 MC/S or connection reinstatement).
    pub(crate) fn session_loc(&self, tsih: u16, key: &SessionKey) -> Option<SessionLoc> {
        let table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table.get(tsih).filter(|e| &e.key == key).map(|e| e.value)
    }

    pub(crate) fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            table: Mutex::new(SessionTable::new()),
            reactors: OnceLock::new(),
            next_serial: AtomicU64::new(1),
            next_nexus: AtomicU32::new(1),
            shutdown: AtomicBool::new(false),
            fallback_load: AtomicUsize::new(0),
            iser_inboxes: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn load(&self, reactor: usize) -> &AtomicUsize {
        self.reactors
            .get()
            .and_then(|r| r.get(reactor))
            .map_or(&self.fallback_load, |h| &h.load)
    }

    /// Sends a message to a reactor and wakes it.
    pub(crate) fn send(&self, reactor: usize, msg: Message) {
        if let Some(h) = self.reactors.get().and_then(|r| r.get(reactor)) {
            if h.tx.send(msg).is_ok() {
                h.waker.wake();
            }
        }
    }

    /// Sends a message built by `f` to every TCP reactor, and a task-ending one (reset,
    /// PREEMPT AND ABORT) to every iSER portal as well.
    pub(crate) fn broadcast(&self, f: impl Fn() -> Message) {
        self.broadcast_from(None, f);
    }

    /// [`Shared::broadcast`] from the iSER portal `me`, which has handled its own sessions.
    pub(crate) fn broadcast_from(&self, me: Option<usize>, f: impl Fn() -> Message) {
        if let Some(all) = self.reactors.get() {
            for h in all {
                if h.tx.send(f()).is_ok() {
                    h.waker.wake();
                }
            }
        }
        let inboxes = self
            .iser_inboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !matches!(
            f(),
            Message::ResetAbort { .. } | Message::AbortNexuses { .. }
        ) {
            return;
        }
        for (id, tx) in inboxes.iter() {
            if Some(*id) != me {
                let _ = tx.send(f());
            }
        }
    }

    /// Registers an iSER portal's inbox (see [`Shared::broadcast`]).
    pub(crate) fn register_iser(&self, id: usize) -> crossbeam_channel::Receiver<Message> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.iser_inboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, tx));
        rx
    }

    /// Forgets a stopped iSER portal's inbox.
    pub(crate) fn unregister_iser(&self, id: usize) {
        self.iser_inboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }

    /// The reactor with the fewest connections.
    pub(crate) fn least_loaded(&self) -> usize {
        self.reactors
            .get()
            .and_then(|r| {
                r.iter()
                    .enumerate()
                    .min_by_key(|(_, h)| h.load.load(Ordering::Relaxed))
                    .map(|(i, _)| i)
            })
            .unwrap_or(0)
    }
}

/// The session layer's view of a logical unit's completion (SAM-5 status, sense data and
/// residual; RFC 7143 §11.4), with `data_in_len` bytes of Data-In placed in the task buffer.
pub(crate) fn session_completion(
    c: &rtgt_scsi::Completion,
    data_in_len: usize,
) -> rtgt_session::target::Completion<'_> {
    let residual = match c.residual {
        rtgt_scsi::Residual::None => rtgt_pdu::Residual::None,
        rtgt_scsi::Residual::Underflow(n) => rtgt_pdu::Residual::Underflow(n),
        rtgt_scsi::Residual::Overflow(n) => rtgt_pdu::Residual::Overflow(n),
    };
    rtgt_session::target::Completion {
        status: rtgt_pdu::ScsiStatus(c.status.get()),
        sense: c
            .sense
            .as_ref()
            .map_or(&[][..], rtgt_scsi::SenseData::as_bytes),
        data_in_len: u32::try_from(data_in_len).unwrap_or(u32::MAX),
        residual,
    }
}
