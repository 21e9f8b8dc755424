//! The soft fabric: an in-process RDMA fabric implementing [`Verbs`] with the
//! semantics iSER relies on (RFC 7145 §4): reliable, in-order delivery of
//! Sends into posted receives, RDMA Write/Read checked against the peer's
//! STags (memory regions and type 2 memory windows, with their protection
//! domain, range, rights and validity), Send with Invalidate, receiver-not-ready
//! retries, queue-pair error states with flushing, and RDMA-CM connection
//! management between endpoints of one [`SoftFabric`].
//!
//! Work requests execute when any completion queue of the fabric is polled
//! (or [`SoftFabric::progress`] is called), so an RDMA Read's data is in the
//! sink, and a Send's data in the receive buffer, when the completion is
//! seen. All objects are `Send`; one fabric may be driven from several
//! threads (its state is behind one lock: it is a test fabric, not a fast path).
//!
//! Faults are injected with [`SoftFabric::inject`]: delays, held operations
//! (released with [`SoftFabric::clear_injections`]) and forced failures.
//!
//! ```
//! use rtgt_iser::soft::SoftFabric;
//! use rtgt_iser::verbs::*;
//!
//! let fabric = SoftFabric::new();
//! let addr = "10.0.0.1:3260".parse()?;
//! let mut listener = fabric.listen(addr)?;
//!
//! // Initiator: a queue pair towards the address, a receive, connect.
//! let (ipd, icq) = (fabric.alloc_pd()?, fabric.create_cq(16)?);
//! let mut iqp = fabric.create_qp(Endpoint::Outgoing(addr), &ipd, &icq, QpCaps::default())?;
//! let mut inbox = vec![0u8; 64];
//! // SAFETY: `inbox` outlives the region and is only read after the receive completes.
//! let imr = unsafe { ipd.register(inbox.as_mut_ptr(), inbox.len(), Access::LOCAL_WRITE)? };
//! iqp.post_recv(1, &[imr.sge(0, 64).unwrap()])?;
//! iqp.connect(b"hello")?;
//!
//! // Target: accept, then send a message.
//! let req = listener.poll_request()?.expect("a request");
//! assert_eq!(req.private_data(), b"hello");
//! let (tpd, tcq) = (fabric.alloc_pd()?, fabric.create_cq(16)?);
//! let mut tqp = fabric.create_qp(Endpoint::Incoming(req), &tpd, &tcq, QpCaps::default())?;
//! tqp.accept(b"")?;
//! let mut msg = *b"ping";
//! // SAFETY: `msg` outlives the region and is not touched while the send is outstanding.
//! let tmr = unsafe { tpd.register(msg.as_mut_ptr(), 4, Access::NONE)? };
//! tqp.post_send(&SendWr { wr_id: 7, op: SendOp::Send, sges: &[tmr.sge(0, 4).unwrap()], signaled: true })?;
//!
//! let mut wc = [WorkCompletion::default(); 4];
//! assert_eq!(tcq.poll(&mut wc)?, 1);
//! assert_eq!((wc[0].wr_id, wc[0].status), (7, WcStatus::SUCCESS));
//! assert_eq!(icq.poll(&mut wc)?, 1);
//! assert_eq!((wc[0].opcode, wc[0].byte_len), (WcOpcode::RECV, 4));
//! drop(imr);
//! assert_eq!(&inbox[..4], b"ping");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::verbs::{
    Access, CmEvent, CompletionQueue, ConnectRequest, Endpoint, Listener, MemoryRegion,
    MemoryWindow, ProtectionDomain, QpCaps, QpState, QueuePair, SendOp, SendWr, Sge, Verbs,
    VerbsError, WorkCompletion,
};
use state::{Binding, Conn, MrRec, MwRec, Op, PendingRequest, QpRec, State};

/// Kinds of send-queue operations, for fault injection and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Send.
    Send,
    /// Send with Invalidate.
    SendWithInvalidate,
    /// RDMA Write.
    RdmaWrite,
    /// RDMA Read.
    RdmaRead,
    /// Local invalidate.
    LocalInvalidate,
    /// Memory window bind.
    BindMw,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Operations of this kind become executable `delay` after they are posted.
    Delay {
        /// Which operations.
        op: OpKind,
        /// How long after posting.
        delay: Duration,
    },
    /// Operations of this kind do not execute until the injection is cleared
    /// (they, and everything behind them on their send queue, wait).
    Hold {
        /// Which operations.
        op: OpKind,
    },
    /// The operation of this kind after `skip` successful ones completes with
    /// `status` and its queue pair enters the error state (fires once).
    Fail {
        /// Which operations.
        op: OpKind,
        /// How many succeed first.
        skip: u64,
        /// The completion status to report.
        status: crate::verbs::WcStatus,
    },
}

/// Fabric-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftConfig {
    /// Receiver-not-ready retries before a Send fails with
    /// `RNR_RETRY_EXC_ERR`; `None` retries for ever (like `rnr_retry = 7`).
    pub rnr_retry: Option<u32>,
    /// Time between receiver-not-ready retries.
    pub rnr_timer: Duration,
}

impl Default for SoftConfig {
    fn default() -> Self {
        Self {
            rnr_retry: Some(7),
            rnr_timer: Duration::from_millis(10),
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

/// An in-process RDMA fabric; clones share it.
#[derive(Debug, Clone)]
pub struct SoftFabric {
    shared: Arc<Shared>,
}

impl Default for SoftFabric {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftFabric {
    /// A fabric with default settings.
    pub fn new() -> Self {
        Self::with_config(SoftConfig::default())
    }

    /// A fabric with `config`.
    pub fn with_config(config: SoftConfig) -> Self {
        let state = State {
            config,
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Adds a fault injection.
    pub fn inject(&self, injection: Injection) {
        self.lock().injections.push((injection, 0));
    }

    /// Removes every injection (held operations may then run).
    pub fn clear_injections(&self) {
        self.lock().injections.clear();
    }

    /// Executes every work request that can run now.
    pub fn progress(&self) {
        self.lock().progress(Instant::now());
    }

    /// How many operations of `kind` have executed successfully so far.
    pub fn executed(&self, kind: OpKind) -> u64 {
        self.lock().executed.get(&kind).copied().unwrap_or(0)
    }

    /// Whether `rkey` currently grants any remote access (a registered region
    /// with remote rights, or a bound memory window).
    pub fn stag_is_valid(&self, rkey: u32) -> bool {
        let st = self.lock();
        if let Some(mr) = st.mrs.get(&(rkey >> 8)) {
            return mr.key == rkey && mr.access.is_remote();
        }
        st.mws
            .get(&(rkey >> 8))
            .is_some_and(|mw| mw.bound.is_some_and(|b| b.rkey == rkey))
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A protection domain of the soft fabric.
#[derive(Debug)]
pub struct SoftPd {
    shared: Arc<Shared>,
    id: u32,
}

/// A registered region of the soft fabric; deregistered on drop.
#[derive(Debug)]
pub struct SoftMr {
    shared: Arc<Shared>,
    id: u32,
    key: u32,
    addr: u64,
    len: usize,
    access: Access,
}

/// A type 2 memory window of the soft fabric; deallocated on drop.
#[derive(Debug)]
pub struct SoftMw {
    shared: Arc<Shared>,
    id: u32,
    rkey: u32,
}

/// A completion queue of the soft fabric.
#[derive(Debug)]
pub struct SoftCq {
    shared: Arc<Shared>,
    id: u32,
}

/// A queue pair of the soft fabric; disconnected and destroyed on drop.
#[derive(Debug)]
pub struct SoftQp {
    shared: Arc<Shared>,
    id: u32,
}

/// A listener of the soft fabric; stops listening on drop.
#[derive(Debug)]
pub struct SoftListener {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// A connection request at a soft listener.
#[derive(Debug)]
pub struct SoftRequest {
    shared: Arc<Shared>,
    initiator_qp: u32,
    private_data: Vec<u8>,
}

impl Verbs for SoftFabric {
    type Pd = SoftPd;
    type Mr = SoftMr;
    type Mw = SoftMw;
    type Cq = SoftCq;
    type Qp = SoftQp;
    type Listener = SoftListener;
    type Request = SoftRequest;

    fn alloc_pd(&self) -> Result<SoftPd, VerbsError> {
        let mut st = self.lock();
        let id = st.alloc_id();
        st.pds.insert(id);
        Ok(SoftPd {
            shared: Arc::clone(&self.shared),
            id,
        })
    }

    fn create_cq(&self, _capacity: u32) -> Result<SoftCq, VerbsError> {
        let mut st = self.lock();
        let id = st.alloc_id();
        st.cqs.insert(id, std::collections::VecDeque::new());
        Ok(SoftCq {
            shared: Arc::clone(&self.shared),
            id,
        })
    }

    fn listen(&self, addr: SocketAddr) -> Result<SoftListener, VerbsError> {
        let mut st = self.lock();
        if st.listeners.contains_key(&addr) {
            return Err(VerbsError::AddrInUse(addr.to_string()));
        }
        st.listeners.insert(addr, std::collections::VecDeque::new());
        Ok(SoftListener {
            shared: Arc::clone(&self.shared),
            addr,
        })
    }

    fn create_qp(
        &self,
        endpoint: Endpoint<SoftRequest>,
        pd: &SoftPd,
        cq: &SoftCq,
        caps: QpCaps,
    ) -> Result<SoftQp, VerbsError> {
        if !Arc::ptr_eq(&pd.shared, &self.shared) || !Arc::ptr_eq(&cq.shared, &self.shared) {
            return Err(VerbsError::WrongDomain);
        }
        let conn = match endpoint {
            Endpoint::Outgoing(addr) => Conn::Outgoing(addr),
            Endpoint::Incoming(req) => {
                if !Arc::ptr_eq(&req.shared, &self.shared) {
                    return Err(VerbsError::WrongDomain);
                }
                Conn::Incoming(req.initiator_qp)
            }
        };
        let mut st = self.lock();
        let id = st.alloc_id();
        st.qps.insert(
            id,
            QpRec {
                pd: pd.id,
                cq: cq.id,
                state: QpState::Init,
                conn,
                caps,
                sq: std::collections::VecDeque::new(),
                rq: std::collections::VecDeque::new(),
                events: std::collections::VecDeque::new(),
            },
        );
        Ok(SoftQp {
            shared: Arc::clone(&self.shared),
            id,
        })
    }
}

impl Drop for SoftPd {
    fn drop(&mut self) {
        lock(&self.shared).pds.remove(&self.id);
    }
}

impl ProtectionDomain for SoftPd {
    type Mr = SoftMr;
    type Mw = SoftMw;

    unsafe fn register(
        &self,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<SoftMr, VerbsError> {
        if ptr.is_null() && len > 0 {
            return Err(VerbsError::InvalidArgument("null region"));
        }
        if access.contains(Access::REMOTE_WRITE) && !access.contains(Access::LOCAL_WRITE) {
            return Err(VerbsError::InvalidArgument(
                "REMOTE_WRITE requires LOCAL_WRITE",
            ));
        }
        let mut st = lock(&self.shared);
        let id = st.alloc_id();
        let key = (id << 8) | 0x01;
        let addr = ptr as usize as u64;
        st.mrs.insert(
            id,
            MrRec {
                pd: self.id,
                addr,
                len,
                access,
                key,
            },
        );
        Ok(SoftMr {
            shared: Arc::clone(&self.shared),
            id,
            key,
            addr,
            len,
            access,
        })
    }

    fn alloc_mw(&self) -> Result<SoftMw, VerbsError> {
        let mut st = lock(&self.shared);
        let id = st.alloc_id();
        st.mws.insert(
            id,
            MwRec {
                pd: self.id,
                bound: None,
            },
        );
        Ok(SoftMw {
            shared: Arc::clone(&self.shared),
            id,
            rkey: id << 8,
        })
    }
}

impl MemoryRegion for SoftMr {
    fn lkey(&self) -> u32 {
        self.key
    }
    fn rkey(&self) -> u32 {
        self.key
    }
    fn addr(&self) -> u64 {
        self.addr
    }
    fn len(&self) -> usize {
        self.len
    }
    fn access(&self) -> Access {
        self.access
    }
}

impl Drop for SoftMr {
    fn drop(&mut self) {
        let mut st = lock(&self.shared);
        st.mrs.remove(&self.id);
        // Windows bound over the region lose their binding with it.
        for mw in st.mws.values_mut() {
            if mw.bound.is_some_and(|b| b.mr == self.id) {
                mw.bound = None;
            }
        }
    }
}

impl MemoryWindow for SoftMw {
    fn rkey(&self) -> u32 {
        self.rkey
    }
}

impl Drop for SoftMw {
    fn drop(&mut self) {
        lock(&self.shared).mws.remove(&self.id);
    }
}

impl CompletionQueue for SoftCq {
    fn poll(&self, out: &mut [WorkCompletion]) -> Result<usize, VerbsError> {
        let mut st = lock(&self.shared);
        st.progress(Instant::now());
        let Some(q) = st.cqs.get_mut(&self.id) else {
            return Ok(0);
        };
        let mut n = 0;
        for slot in out.iter_mut() {
            match q.pop_front() {
                Some(wc) => {
                    *slot = wc;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl Drop for SoftCq {
    fn drop(&mut self) {
        lock(&self.shared).cqs.remove(&self.id);
    }
}

impl SoftQp {
    fn with<R>(&self, f: impl FnOnce(&mut State, &mut QpRec) -> R) -> Result<R, VerbsError> {
        let mut st = lock(&self.shared);
        let mut rec = st.qps.remove(&self.id).ok_or(VerbsError::WrongDomain)?;
        let r = f(&mut st, &mut rec);
        st.qps.insert(self.id, rec);
        Ok(r)
    }
}

impl QueuePair for SoftQp {
    type Mw = SoftMw;
    type Mr = SoftMr;

    fn qp_num(&self) -> u32 {
        self.id
    }

    fn state(&self) -> QpState {
        lock(&self.shared)
            .qps
            .get(&self.id)
            .map_or(QpState::Err, |q| q.state)
    }

    fn post_send(&mut self, wr: &SendWr<'_>) -> Result<(), VerbsError> {
        let op = match wr.op {
            SendOp::Send => Op::Send { invalidate: None },
            SendOp::SendWithInvalidate { rkey } => Op::Send {
                invalidate: Some(rkey),
            },
            SendOp::RdmaWrite { remote } => Op::Write {
                addr: remote.addr,
                rkey: remote.rkey,
            },
            SendOp::RdmaRead { remote } => Op::Read {
                addr: remote.addr,
                rkey: remote.rkey,
            },
            SendOp::LocalInvalidate { rkey } => Op::LocalInv { rkey },
        };
        lock(&self.shared).post_send(self.id, wr.wr_id, op, wr.sges, wr.signaled, Instant::now())
    }

    fn post_recv(&mut self, wr_id: u64, sges: &[Sge]) -> Result<(), VerbsError> {
        let mut st = lock(&self.shared);
        let rec = st.qps.get_mut(&self.id).ok_or(VerbsError::WrongDomain)?;
        if sges.len() > rec.caps.max_sge as usize || rec.rq.len() >= rec.caps.max_recv_wr as usize {
            return Err(VerbsError::QueueFull);
        }
        rec.rq.push_back(state::PostedRecv {
            wr_id,
            sges: sges.to_vec(),
        });
        if rec.state == QpState::Err {
            st.set_error(self.id);
        }
        Ok(())
    }

    fn bind_mw(
        &mut self,
        wr_id: u64,
        mw: &mut SoftMw,
        mr: &SoftMr,
        offset: usize,
        len: usize,
        access: Access,
        signaled: bool,
    ) -> Result<u32, VerbsError> {
        if !Arc::ptr_eq(&mw.shared, &self.shared) || !Arc::ptr_eq(&mr.shared, &self.shared) {
            return Err(VerbsError::WrongDomain);
        }
        if access.0 & !(Access::REMOTE_READ.0 | Access::REMOTE_WRITE.0) != 0 {
            return Err(VerbsError::InvalidArgument(
                "window rights are remote read/write only",
            ));
        }
        let end = offset.saturating_add(len);
        if end > mr.len {
            return Err(VerbsError::OutOfRange {
                offset,
                len,
                region_len: mr.len,
            });
        }
        // A fresh 8-bit key per binding, as ibv_inc_rkey does.
        let rkey = (mw.rkey & !0xff) | ((mw.rkey.wrapping_add(1)) & 0xff);
        let binding = Binding {
            qp: self.id,
            mr: mr.id,
            addr: mr.addr + offset as u64,
            len,
            access,
            rkey,
        };
        lock(&self.shared).post_send(
            self.id,
            wr_id,
            Op::Bind { mw: mw.id, binding },
            &[],
            signaled,
            Instant::now(),
        )?;
        mw.rkey = rkey;
        Ok(rkey)
    }

    fn accept(&mut self, private_data: &[u8]) -> Result<(), VerbsError> {
        let private = private_data.to_vec();
        let mut st = lock(&self.shared);
        let Some(Conn::Incoming(ini)) = st.qps.get(&self.id).map(|q| q.conn) else {
            return Err(VerbsError::InvalidArgument("not an incoming connection"));
        };
        let ini_ok = st.qps.get(&ini).is_some_and(|q| q.conn == Conn::Connecting);
        if !ini_ok {
            // The initiator went away: the connection is already over.
            if let Some(q) = st.qps.get_mut(&self.id) {
                q.conn = Conn::Closed;
                q.events.push_back(CmEvent::Disconnected);
            }
            st.set_error(self.id);
            return Ok(());
        }
        if let Some(q) = st.qps.get_mut(&self.id) {
            q.conn = Conn::Connected(ini);
            q.state = QpState::Rts;
            q.events.push_back(CmEvent::Established {
                private_data: Vec::new(),
            });
        }
        if let Some(q) = st.qps.get_mut(&ini) {
            q.conn = Conn::Connected(self.id);
            q.state = QpState::Rts;
            q.events.push_back(CmEvent::Established {
                private_data: private,
            });
        }
        Ok(())
    }

    fn connect(&mut self, private_data: &[u8]) -> Result<(), VerbsError> {
        let id = self.id;
        self.with(|st, rec| {
            let Conn::Outgoing(addr) = rec.conn else {
                return Err(VerbsError::InvalidArgument("not an outgoing endpoint"));
            };
            if let Some(q) = st.listeners.get_mut(&addr) {
                q.push_back(PendingRequest {
                    initiator_qp: id,
                    private_data: private_data.to_vec(),
                });
                rec.conn = Conn::Connecting;
                rec.state = QpState::Rtr;
            } else {
                rec.conn = Conn::Closed;
                rec.events.push_back(CmEvent::Unreachable);
            }
            Ok(())
        })?
    }

    fn disconnect(&mut self) -> Result<(), VerbsError> {
        lock(&self.shared).disconnect(self.id);
        Ok(())
    }

    fn poll_cm_event(&mut self) -> Result<Option<CmEvent>, VerbsError> {
        let mut st = lock(&self.shared);
        st.progress(Instant::now());
        Ok(st.qps.get_mut(&self.id).and_then(|q| q.events.pop_front()))
    }
}

impl Drop for SoftQp {
    fn drop(&mut self) {
        let mut st = lock(&self.shared);
        st.disconnect(self.id);
        st.qps.remove(&self.id);
        for mw in st.mws.values_mut() {
            if mw.bound.is_some_and(|b| b.qp == self.id) {
                mw.bound = None;
            }
        }
    }
}

impl Listener for SoftListener {
    type Request = SoftRequest;

    fn poll_request(&mut self) -> Result<Option<SoftRequest>, VerbsError> {
        let mut st = lock(&self.shared);
        Ok(st
            .listeners
            .get_mut(&self.addr)
            .and_then(std::collections::VecDeque::pop_front)
            .map(|r| SoftRequest {
                shared: Arc::clone(&self.shared),
                initiator_qp: r.initiator_qp,
                private_data: r.private_data,
            }))
    }

    fn reject(&mut self, request: SoftRequest, private_data: &[u8]) -> Result<(), VerbsError> {
        let mut st = lock(&self.shared);
        if let Some(q) = st.qps.get_mut(&request.initiator_qp) {
            if q.conn == Conn::Connecting {
                q.conn = Conn::Closed;
                q.events.push_back(CmEvent::Rejected {
                    private_data: private_data.to_vec(),
                });
            }
        }
        Ok(())
    }
}

impl Drop for SoftListener {
    fn drop(&mut self) {
        lock(&self.shared).listeners.remove(&self.addr);
    }
}

impl ConnectRequest for SoftRequest {
    fn private_data(&self) -> &[u8] {
        &self.private_data
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
}
