//! The verbs-level interface iSER needs (RFC 7145 §4 "RDMA-Capable Protocol"
//! requirements, §9.1 connection establishment): protection domains, memory
//! registration and memory windows (STags), completion queues, reliable
//! connected queue pairs, and RDMA-CM style connection management.
//!
//! Two implementations exist: the in-process [`crate::soft`] fabric (always
//! built; used by the tests) and the `rdma` feature's libibverbs/librdmacm
//! backend. Both honour the same rules: every remote access is checked
//! against a valid STag of the peer's protection domain, and a violation
//! completes with [`WcStatus::REM_ACCESS_ERR`] and moves the queue pair to
//! [`QpState::Err`], flushing what is outstanding with
//! [`WcStatus::WR_FLUSH_ERR`].

mod types;

pub use types::{
    Access, CmEvent, MAX_AHS, QpCaps, QpState, RemoteAddr, SendOp, SendWr, Sge, VerbsError,
    WcOpcode, WcStatus, WorkCompletion,
};

use std::net::SocketAddr;

/// A registered memory region (`ibv_mr`): an address range with a local key
/// and, if remote access was granted, a remote key (STag).
pub trait MemoryRegion: Send {
    /// Local key, for scatter/gather entries of work requests.
    fn lkey(&self) -> u32;
    /// Remote key (STag) for RDMA access by the peer.
    fn rkey(&self) -> u32;
    /// First byte of the region (its virtual address).
    fn addr(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The access rights it was registered with.
    fn access(&self) -> Access;
    /// A scatter/gather entry for `len` bytes at `offset`, or `None` when the
    /// range is not inside the region.
    fn sge(&self, offset: usize, len: u32) -> Option<Sge> {
        let end = offset.checked_add(len as usize)?;
        (end <= self.len()).then(|| Sge {
            addr: self.addr() + offset as u64,
            len,
            lkey: self.lkey(),
        })
    }
}

/// A type 2 memory window (`ibv_mw`): an STag bound, by a work request on one
/// queue pair, to a sub-range of a memory region, valid until invalidated
/// (locally, or by the peer with Send with Invalidate).
pub trait MemoryWindow: Send {
    /// The STag of the current (or last) binding.
    fn rkey(&self) -> u32;
}

/// A protection domain: memory and queue pairs of one domain may only reach
/// each other.
pub trait ProtectionDomain: Send {
    /// The memory regions it registers.
    type Mr: MemoryRegion;
    /// The memory windows it allocates.
    type Mw: MemoryWindow;

    /// Registers `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must be valid for reads and writes, and must stay
    /// allocated and unmoved until the returned region is dropped
    /// (deregistered). While registered, the device (or the soft fabric)
    /// reads and writes these bytes whenever a work request that names them
    /// is outstanding, and — if `access` grants remote rights, or a memory
    /// window is bound over them — whenever the peer chooses. The caller must
    /// not hold Rust references to bytes that such an operation may access
    /// at the same time (touch them only between the completion of the
    /// operations that use them and the next post or binding).
    unsafe fn register(
        &self,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<Self::Mr, VerbsError>;

    /// Allocates a type 2 memory window (initially unbound).
    fn alloc_mw(&self) -> Result<Self::Mw, VerbsError>;
}

/// A completion queue.
pub trait CompletionQueue: Send {
    /// Moves up to `out.len()` completions into `out`; returns how many.
    /// Never blocks.
    fn poll(&self, out: &mut [WorkCompletion]) -> Result<usize, VerbsError>;
}

/// A reliable-connected queue pair bound to one RDMA-CM connection.
///
/// Created in [`QpState::Init`]; receives may be posted before
/// [`accept`](Self::accept) / [`connect`](Self::connect), sends only in
/// [`QpState::Rts`] (a send posted in [`QpState::Err`] completes with
/// [`WcStatus::WR_FLUSH_ERR`]).
pub trait QueuePair: Send {
    /// The memory windows it binds.
    type Mw: MemoryWindow;
    /// The memory regions windows are bound over.
    type Mr: MemoryRegion;

    /// The queue pair number.
    fn qp_num(&self) -> u32;
    /// The current state.
    fn state(&self) -> QpState;
    /// Posts a send-queue work request.
    fn post_send(&mut self, wr: &SendWr<'_>) -> Result<(), VerbsError>;
    /// Posts a receive of up to the total length of `sges`.
    fn post_recv(&mut self, wr_id: u64, sges: &[Sge]) -> Result<(), VerbsError>;
    /// Binds `mw` to `len` bytes of `mr` at `offset` with `access` (a subset of
    /// remote read/write) using a fresh key; returns the new STag, valid once
    /// the bind executes (binds run in send-queue order, so an STag may be
    /// advertised in a Send posted after the bind).
    // The arguments are the fields of `ibv_mw_bind`, named as verbs names them.
    #[allow(clippy::too_many_arguments)]
    fn bind_mw(
        &mut self,
        wr_id: u64,
        mw: &mut Self::Mw,
        mr: &Self::Mr,
        offset: usize,
        len: usize,
        access: Access,
        signaled: bool,
    ) -> Result<u32, VerbsError>;
    /// Target side: accepts the connection request the queue pair was created
    /// for, sending `private_data` in the reply.
    fn accept(&mut self, private_data: &[u8]) -> Result<(), VerbsError>;
    /// Initiator side: starts connecting to the resolved address with
    /// `private_data` in the request; the outcome arrives as a [`CmEvent`].
    fn connect(&mut self, private_data: &[u8]) -> Result<(), VerbsError>;
    /// Disconnects: the queue pair enters [`QpState::Err`] (flushing), the
    /// peer sees [`CmEvent::Disconnected`].
    fn disconnect(&mut self) -> Result<(), VerbsError>;
    /// The next connection-management event, if any. Never blocks.
    fn poll_cm_event(&mut self) -> Result<Option<CmEvent>, VerbsError>;
}

/// A listening endpoint.
pub trait Listener: Send {
    /// An incoming connection request.
    type Request: ConnectRequest;
    /// The next connection request, if any. Never blocks.
    fn poll_request(&mut self) -> Result<Option<Self::Request>, VerbsError>;
    /// Rejects a request with `private_data`.
    fn reject(&mut self, request: Self::Request, private_data: &[u8]) -> Result<(), VerbsError>;
}

/// A connection request received by a listener.
pub trait ConnectRequest: Send {
    /// The initiator's private data (the iSER CM REQ header, RFC 7145 §9.1).
    fn private_data(&self) -> &[u8];
    /// The initiator's address.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

/// Where a queue pair is created: for an accepted request or for an
/// outgoing connection to a resolved address.
#[derive(Debug)]
pub enum Endpoint<R> {
    /// Target side: the request to accept.
    Incoming(R),
    /// Initiator side: the address to connect to.
    Outgoing(SocketAddr),
}

/// An RDMA device (or the soft fabric node) and its connection manager.
pub trait Verbs: Send + Sync {
    /// Protection domain.
    type Pd: ProtectionDomain<Mr = Self::Mr, Mw = Self::Mw>;
    /// Memory region.
    type Mr: MemoryRegion;
    /// Memory window.
    type Mw: MemoryWindow;
    /// Completion queue.
    type Cq: CompletionQueue;
    /// Queue pair (with its connection).
    type Qp: QueuePair<Mr = Self::Mr, Mw = Self::Mw>;
    /// Listener.
    type Listener: Listener<Request = Self::Request>;
    /// Connection request.
    type Request: ConnectRequest;

    /// Allocates a protection domain.
    fn alloc_pd(&self) -> Result<Self::Pd, VerbsError>;
    /// Creates a completion queue with room for `capacity` completions.
    fn create_cq(&self, capacity: u32) -> Result<Self::Cq, VerbsError>;
    /// Listens for connection requests on `addr`.
    fn listen(&self, addr: SocketAddr) -> Result<Self::Listener, VerbsError>;
    /// Creates a queue pair (in [`QpState::Init`]) for `endpoint`, whose
    /// send and receive completions go to `cq`.
    fn create_qp(
        &self,
        endpoint: Endpoint<Self::Request>,
        pd: &Self::Pd,
        cq: &Self::Cq,
        caps: QpCaps,
    ) -> Result<Self::Qp, VerbsError>;
}
