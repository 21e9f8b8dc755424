//! Reliable-connected queue pairs on RDMA-CM ids (`rdma_create_qp`), the
//! listener (`rdma_listen`) and its connection requests: RFC 7145 §5.1 and
//! §9.1 (the iSER CM private data travels in `rdma_connect`'s request and
//! `rdma_accept`'s reply), the data movement of §7.3 through
//! `ibv_post_send`/`ibv_post_recv`, type 2 window binds for §7.2.1's STags,
//! and §10's connection loss (`rdma_disconnect`, DISCONNECTED events).

use std::net::SocketAddr;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::{
    ibv_qp, ibv_qp_attr_mask, ibv_qp_cap, ibv_qp_init_attr, ibv_qp_type, rdma_conn_param,
};

use super::cm::{CmId, EventChannel, RawEvent};
use super::convert::{
    REJ_PRIVATE_DATA_MAX, REP_PRIVATE_DATA_MAX, REQ_PRIVATE_DATA_MAX, accept_depths, cm_event,
    connect_depths, mw_access, private_data_len, qp_state,
};
use super::cq::{CqInner, RdmaCq};
use super::device::{DeviceInner, context_name};
use super::pd::{PdInner, RdmaMr, RdmaMw, RdmaPd};
use super::wr::{Bind, bind_wr, next_rkey, recv_wr, send_wr, sge_array};
use super::{errno_error, ffi, os_error};
use crate::verbs::{
    Access, CmEvent, ConnectRequest, Listener, MemoryRegion, MemoryWindow, QpCaps, QpState,
    QueuePair, SendWr, Sge, VerbsError,
};

/// Transport retries before a send fails with `RETRY_EXC_ERR`.
const RETRY_COUNT: u8 = 7;
/// Receiver-not-ready retries: 7 means for ever (the peer's receives are
/// bounded by iSER's flow control, RFC 7145 §8, not by retry counts).
const RNR_RETRY_COUNT: u8 = 7;
/// Pending connection requests a listener queues.
const BACKLOG: libc::c_int = 128;

/// Which end of the connection a queue pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Target: created for a request with the peer's Read depths.
    Incoming {
        initiator_depth: u8,
        responder_resources: u8,
    },
    /// Initiator.
    Outgoing,
}

/// Where the connection stands, as this side has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Created, not yet accepted or connected.
    Idle,
    /// Accept or connect sent.
    Connecting,
    /// Established.
    Connected,
    /// Disconnected, rejected or failed.
    Closed,
}

/// A reliable-connected queue pair with its RDMA-CM id; on drop it
/// disconnects if still connected, then destroys the queue pair and the id.
#[derive(Debug)]
pub struct RdmaQp {
    qp: NonNull<ibv_qp>,
    id: CmId,
    side: Side,
    caps: QpCaps,
    conn: Conn,
    disconnect_sent: bool,
    pending: Option<CmEvent>,
    _pd: Arc<PdInner>,
    _cq: Arc<CqInner>,
    dev: Arc<DeviceInner>,
}

// SAFETY: the queue pair and its id are owned by this value and used only
// through libibverbs/librdmacm calls by its owner (`&mut self` for posts).
unsafe impl Send for RdmaQp {}

impl RdmaQp {
    /// A queue pair on `id` (address and route resolved) towards `addr`.
    pub(crate) fn outgoing(
        dev: &Arc<DeviceInner>,
        id: CmId,
        addr: SocketAddr,
        pd: &RdmaPd,
        cq: &RdmaCq,
        caps: QpCaps,
    ) -> Result<Self, VerbsError> {
        match id.verbs() {
            Some(ctx) if ctx == dev.ctx => {}
            Some(ctx) => {
                return Err(VerbsError::OtherDevice {
                    addr: addr.to_string(),
                    device: context_name(ctx),
                });
            }
            None => return Err(VerbsError::AddressNotRdma(addr.to_string())),
        }
        Self::create(dev, id, Side::Outgoing, pd, cq, caps)
    }

    /// A queue pair for an incoming request.
    pub(crate) fn incoming(
        dev: &Arc<DeviceInner>,
        request: RdmaRequest,
        pd: &RdmaPd,
        cq: &RdmaCq,
        caps: QpCaps,
    ) -> Result<Self, VerbsError> {
        let RdmaRequest {
            id,
            initiator_depth,
            responder_resources,
            ..
        } = request;
        match id.verbs() {
            Some(ctx) if ctx == dev.ctx => {}
            Some(ctx) => {
                return Err(VerbsError::OtherDevice {
                    addr: id
                        .peer_addr()
                        .map_or_else(|| "the request".into(), |a| a.to_string()),
                    device: context_name(ctx),
                });
            }
            None => return Err(VerbsError::WrongDomain),
        }
        let side = Side::Incoming {
            initiator_depth,
            responder_resources,
        };
        Self::create(dev, id, side, pd, cq, caps)
    }

    fn create(
        dev: &Arc<DeviceInner>,
        id: CmId,
        side: Side,
        pd: &RdmaPd,
        cq: &RdmaCq,
        caps: QpCaps,
    ) -> Result<Self, VerbsError> {
        let cq_ptr = cq.inner().cq.as_ptr();
        let mut attr = ibv_qp_init_attr {
            qp_context: core::ptr::null_mut(),
            send_cq: cq_ptr,
            recv_cq: cq_ptr,
            srq: core::ptr::null_mut(),
            cap: ibv_qp_cap {
                max_send_wr: caps.max_send_wr,
                max_recv_wr: caps.max_recv_wr,
                max_send_sge: caps.max_sge,
                max_recv_sge: caps.max_sge,
                max_inline_data: 0,
            },
            qp_type: ibv_qp_type::IBV_QPT_RC,
            // Only work requests asked to be signaled complete on success.
            sq_sig_all: 0,
        };
        // SAFETY: a live id bound to this device, a live domain and queue of
        // the same context, and a valid attribute block.
        if unsafe { rdma_sys::rdma_create_qp(id.as_ptr(), pd.inner().pd.as_ptr(), &raw mut attr) }
            != 0
        {
            return Err(os_error("rdma_create_qp"));
        }
        // SAFETY: `rdma_create_qp` succeeded, so the id's `qp` is set.
        let Some(qp) = NonNull::new(unsafe { (*id.as_ptr()).qp }) else {
            return Err(VerbsError::InvalidArgument(
                "rdma_create_qp left no queue pair",
            ));
        };
        Ok(Self {
            qp,
            id,
            side,
            caps,
            conn: Conn::Idle,
            disconnect_sent: false,
            pending: None,
            _pd: Arc::clone(pd.inner()),
            _cq: Arc::clone(cq.inner()),
            dev: Arc::clone(dev),
        })
    }

    /// Moves the queue pair to the error state (flushing what is posted).
    fn set_error(&self) {
        // SAFETY: plain C struct, all-zero is valid; only the state is used.
        let mut attr: rdma_sys::ibv_qp_attr = unsafe { core::mem::zeroed() };
        attr.qp_state = rdma_sys::ibv_qp_state::IBV_QPS_ERR;
        // SAFETY: a live queue pair and a valid attribute block with its mask.
        let rc = unsafe {
            rdma_sys::ibv_modify_qp(
                self.qp.as_ptr(),
                &raw mut attr,
                ibv_qp_attr_mask::IBV_QP_STATE.0 as libc::c_int,
            )
        };
        if rc != 0 {
            tracing::warn!(error = %errno_error("ibv_modify_qp", rc), "queue pair not moved to error");
        }
    }

    fn conn_param(&self, private_data: &[u8], len: u8, depths: (u8, u8)) -> rdma_conn_param {
        rdma_conn_param {
            private_data: private_data.as_ptr().cast(),
            private_data_len: len,
            responder_resources: depths.1,
            initiator_depth: depths.0,
            flow_control: 1,
            retry_count: RETRY_COUNT,
            rnr_retry_count: RNR_RETRY_COUNT,
            srq: 0,
            // SAFETY: the queue pair is live; plain field.
            qp_num: unsafe { (*self.qp.as_ptr()).qp_num },
        }
    }

    /// Maps a post's errno value.
    fn post_error(&self, call: &'static str, rc: i32) -> VerbsError {
        match rc {
            libc::ENOMEM => VerbsError::QueueFull,
            libc::EINVAL => match self.state() {
                QpState::Rts | QpState::Err => errno_error(call, rc),
                s => VerbsError::InvalidState(s),
            },
            _ => errno_error(call, rc),
        }
    }

    /// The event `ev` means for this queue pair, updating the connection
    /// state. Once the connection has ended (and that was reported), later
    /// events of the connection manager carry no news and are dropped.
    fn on_event(&mut self, ev: RawEvent) -> Option<CmEvent> {
        let mapped = cm_event(ev.kind, ev.status, ev.private_data)?;
        if self.conn == Conn::Closed {
            return None;
        }
        if let CmEvent::Established { .. } = mapped {
            self.conn = Conn::Connected;
            return Some(mapped);
        }
        if mapped == CmEvent::Disconnected && !self.disconnect_sent {
            // The peer disconnected: answer (DREP) so its side completes.
            self.disconnect_sent = true;
            // SAFETY: a live id.
            unsafe { rdma_sys::rdma_disconnect(self.id.as_ptr()) };
        }
        // Flush whatever is posted: nothing more will execute.
        self.set_error();
        self.conn = Conn::Closed;
        Some(mapped)
    }
}

impl QueuePair for RdmaQp {
    type Mw = RdmaMw;
    type Mr = RdmaMr;

    fn qp_num(&self) -> u32 {
        // SAFETY: the queue pair is live while `self` is; plain field.
        unsafe { (*self.qp.as_ptr()).qp_num }
    }

    fn state(&self) -> QpState {
        // SAFETY: plain C structs, all-zero is valid; filled by the query.
        let mut attr: rdma_sys::ibv_qp_attr = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let mut init: ibv_qp_init_attr = unsafe { core::mem::zeroed() };
        // SAFETY: a live queue pair and valid out-pointers.
        let rc = unsafe {
            rdma_sys::ibv_query_qp(
                self.qp.as_ptr(),
                &raw mut attr,
                ibv_qp_attr_mask::IBV_QP_STATE.0 as libc::c_int,
                &raw mut init,
            )
        };
        if rc == 0 {
            qp_state(attr.qp_state)
        } else {
            QpState::Err
        }
    }

    fn post_send(&mut self, wr: &SendWr<'_>) -> Result<(), VerbsError> {
        if wr.sges.len() > self.caps.max_sge as usize {
            return Err(VerbsError::QueueFull);
        }
        let mut sges = sge_array();
        let mut raw = send_wr(wr, &mut sges)?;
        // SAFETY: a live queue pair; `raw` and `sges` live on this stack frame
        // for the call; the memory the entries name is registered memory the
        // caller keeps untouched until completion (register's contract).
        let rc = unsafe { ffi::post_send(self.qp.as_ptr(), &raw mut raw) };
        if rc != 0 {
            return Err(self.post_error("ibv_post_send", rc));
        }
        Ok(())
    }

    fn post_recv(&mut self, wr_id: u64, sges: &[Sge]) -> Result<(), VerbsError> {
        if sges.len() > self.caps.max_sge as usize {
            return Err(VerbsError::QueueFull);
        }
        let mut arr = sge_array();
        let mut raw = recv_wr(wr_id, sges, &mut arr)?;
        // SAFETY: as in `post_send`, for the receive buffers.
        let rc = unsafe { ffi::post_recv(self.qp.as_ptr(), &raw mut raw) };
        if rc != 0 {
            return Err(self.post_error("ibv_post_recv", rc));
        }
        Ok(())
    }

    fn bind_mw(
        &mut self,
        wr_id: u64,
        mw: &mut RdmaMw,
        mr: &RdmaMr,
        offset: usize,
        len: usize,
        access: Access,
        signaled: bool,
    ) -> Result<u32, VerbsError> {
        if !Arc::ptr_eq(&mw.pd().dev, &self.dev) || !Arc::ptr_eq(&mr.pd().dev, &self.dev) {
            return Err(VerbsError::WrongDomain);
        }
        let flags = mw_access(access)?;
        if offset.checked_add(len).is_none_or(|end| end > mr.len()) {
            return Err(VerbsError::OutOfRange {
                offset,
                len,
                region_len: mr.len(),
            });
        }
        let rkey = next_rkey(mw.rkey());
        let mut raw = bind_wr(
            wr_id,
            &Bind {
                mw: mw.as_ptr(),
                rkey,
                mr: mr.as_ptr(),
                addr: mr.addr() + offset as u64,
                len: len as u64,
                access: flags,
            },
            signaled,
        );
        // SAFETY: a live queue pair; the window and region are live objects of
        // this device for the call (borrowed); the region's memory stays
        // registered while the window can reach it (register's contract).
        let rc = unsafe { ffi::post_send(self.qp.as_ptr(), &raw mut raw) };
        if rc != 0 {
            return Err(self.post_error("ibv_post_send", rc));
        }
        mw.set_rkey(rkey);
        Ok(rkey)
    }

    fn accept(&mut self, private_data: &[u8]) -> Result<(), VerbsError> {
        let Side::Incoming {
            initiator_depth,
            responder_resources,
        } = self.side
        else {
            return Err(VerbsError::InvalidArgument("not an incoming connection"));
        };
        if self.conn != Conn::Idle {
            return Err(VerbsError::InvalidState(self.state()));
        }
        let len = private_data_len(private_data, REP_PRIVATE_DATA_MAX)?;
        let depths = accept_depths(
            &self.caps,
            &self.dev.caps,
            initiator_depth,
            responder_resources,
        );
        let mut param = self.conn_param(private_data, len, depths);
        // SAFETY: a live id with its queue pair; `param` and the private data
        // it points to live for the call (librdmacm copies them).
        if unsafe { rdma_sys::rdma_accept(self.id.as_ptr(), &raw mut param) } != 0 {
            return Err(os_error("rdma_accept"));
        }
        self.conn = Conn::Connecting;
        Ok(())
    }

    fn connect(&mut self, private_data: &[u8]) -> Result<(), VerbsError> {
        if self.side != Side::Outgoing {
            return Err(VerbsError::InvalidArgument("not an outgoing endpoint"));
        }
        if self.conn != Conn::Idle {
            return Err(VerbsError::InvalidState(self.state()));
        }
        let len = private_data_len(private_data, REQ_PRIVATE_DATA_MAX)?;
        let depths = connect_depths(&self.caps, &self.dev.caps);
        let mut param = self.conn_param(private_data, len, depths);
        // SAFETY: a live id with a resolved route and its queue pair; `param`
        // and its private data live for the call (librdmacm copies them).
        if unsafe { rdma_sys::rdma_connect(self.id.as_ptr(), &raw mut param) } != 0 {
            return Err(os_error("rdma_connect"));
        }
        self.conn = Conn::Connecting;
        Ok(())
    }

    fn disconnect(&mut self) -> Result<(), VerbsError> {
        if self.disconnect_sent || self.conn == Conn::Closed {
            self.set_error();
            return Ok(());
        }
        self.disconnect_sent = true;
        // SAFETY: a live id.
        let rc = unsafe { rdma_sys::rdma_disconnect(self.id.as_ptr()) };
        // Flush whatever is posted, whether or not a connection existed.
        self.set_error();
        if rc != 0 || self.conn != Conn::Connected {
            // Not (yet) connected: no DISCONNECTED event is certain to come,
            // so the end is reported here and later events are dropped.
            self.conn = Conn::Closed;
            self.pending = Some(CmEvent::Disconnected);
        }
        // Connected: the DISCONNECTED event (after the peer's reply, or
        // its timeout) reports the end.
        Ok(())
    }

    fn poll_cm_event(&mut self) -> Result<Option<CmEvent>, VerbsError> {
        if let Some(ev) = self.pending.take() {
            return Ok(Some(ev));
        }
        while let Some(raw) = self.id.channel().next_event()? {
            if raw.id != self.id.as_ptr() {
                continue;
            }
            if let Some(ev) = self.on_event(raw) {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }
}

impl Drop for RdmaQp {
    fn drop(&mut self) {
        if matches!(self.conn, Conn::Connecting | Conn::Connected) && !self.disconnect_sent {
            // SAFETY: a live id; best effort (the peer sees a disconnect).
            unsafe { rdma_sys::rdma_disconnect(self.id.as_ptr()) };
        }
        // SAFETY: the queue pair was created on this id by `rdma_create_qp`
        // and is destroyed once, before the id (dropped after this body).
        unsafe { rdma_sys::rdma_destroy_qp(self.id.as_ptr()) };
    }
}

/// A listening RDMA-CM id; stops listening on drop.
#[derive(Debug)]
pub struct RdmaListener {
    id: CmId,
    dev: Arc<DeviceInner>,
}

impl RdmaListener {
    pub(crate) fn new(dev: &Arc<DeviceInner>, addr: SocketAddr) -> Result<Self, VerbsError> {
        let id = CmId::new(EventChannel::new()?)?;
        id.bind(&addr)?;
        if let Some(ctx) = id.verbs() {
            if ctx != dev.ctx {
                return Err(VerbsError::OtherDevice {
                    addr: addr.to_string(),
                    device: context_name(ctx),
                });
            }
        }
        // SAFETY: a live, bound id.
        if unsafe { rdma_sys::rdma_listen(id.as_ptr(), BACKLOG) } != 0 {
            return Err(os_error("rdma_listen"));
        }
        Ok(Self {
            id,
            dev: Arc::clone(dev),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: the id is live; the source union holds its bound address.
        unsafe {
            let sa = &raw const (*self.id.as_ptr()).route.addr.src_addr_union.src_storage;
            super::ffi::socket_addr_from(sa.cast())
        }
    }
}

impl Listener for RdmaListener {
    type Request = RdmaRequest;

    fn poll_request(&mut self) -> Result<Option<RdmaRequest>, VerbsError> {
        while let Some(ev) = self.id.channel().next_event()? {
            match ev.kind {
                rdma_sys::rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST => {
                    let Some(child) = NonNull::new(ev.id) else {
                        continue;
                    };
                    // SAFETY: the request's new id is ours (librdmacm hands its
                    // ownership to whoever reads the event), its event is
                    // acknowledged, and nothing else refers to it.
                    let id = unsafe { CmId::adopt(child)? };
                    let peer = id.peer_addr();
                    return Ok(Some(RdmaRequest {
                        id,
                        private_data: ev.private_data,
                        peer,
                        initiator_depth: ev.initiator_depth,
                        responder_resources: ev.responder_resources,
                        _dev: Arc::clone(&self.dev),
                    }));
                }
                rdma_sys::rdma_cm_event_type::RDMA_CM_EVENT_DEVICE_REMOVAL => {
                    return Err(errno_error("rdma_listen", libc::ENODEV));
                }
                // Address changes and the like: nothing for the listener.
                _ => {}
            }
        }
        Ok(None)
    }

    fn reject(&mut self, request: RdmaRequest, private_data: &[u8]) -> Result<(), VerbsError> {
        let len = private_data_len(private_data, REJ_PRIVATE_DATA_MAX)?;
        // SAFETY: the request's live id; the private data lives for the call.
        let rc = unsafe {
            rdma_sys::rdma_reject(request.id.as_ptr(), private_data.as_ptr().cast(), len)
        };
        if rc != 0 {
            return Err(os_error("rdma_reject"));
        }
        // Dropping the request destroys its id.
        Ok(())
    }
}

/// A connection request taken from a listener: its own RDMA-CM id (on its
/// own event channel), the initiator's private data and Read depths. Dropped
/// unused, its id is destroyed and the initiator sees the connection refused.
#[derive(Debug)]
pub struct RdmaRequest {
    id: CmId,
    private_data: Vec<u8>,
    peer: Option<SocketAddr>,
    initiator_depth: u8,
    responder_resources: u8,
    _dev: Arc<DeviceInner>,
}

impl ConnectRequest for RdmaRequest {
    fn private_data(&self) -> &[u8] {
        &self.private_data
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}
