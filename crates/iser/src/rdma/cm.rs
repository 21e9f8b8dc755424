//! RDMA connection manager plumbing (RFC 7145 §5.1 and §9.1: iSER
//! connections are RDMA-CM connections): event channels read without
//! blocking (`O_NONBLOCK` on the channel's descriptor), ids that own their
//! channel, events copied out and acknowledged at once, and active-side
//! address and route resolution with a deadline.

use std::net::SocketAddr;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdma_sys::{ibv_context, rdma_cm_event_type, rdma_cm_id, rdma_event_channel, rdma_port_space};

use super::convert::{bind_error, cm_setup_error};
use super::ffi::{set_nonblocking, sockaddr_of, socket_addr_from, wait_readable};
use super::{errno_error, last_errno};
use crate::verbs::VerbsError;

/// The error of a failed RDMA-CM setup call (no devices → [`VerbsError::NoDevices`]).
pub(crate) fn cm_error(call: &'static str) -> VerbsError {
    cm_setup_error(call, last_errno())
}

/// An RDMA-CM event channel, read without blocking; destroyed on drop.
#[derive(Debug)]
pub(crate) struct EventChannel {
    ch: NonNull<rdma_event_channel>,
}

// SAFETY: the channel is a heap object with a file descriptor, used only
// through librdmacm calls by whoever owns the `EventChannel`.
unsafe impl Send for EventChannel {}

impl EventChannel {
    /// Creates a channel and makes its descriptor non-blocking.
    pub fn new() -> Result<Self, VerbsError> {
        // SAFETY: no arguments; returns an owned channel or NULL with errno set.
        let raw = unsafe { rdma_sys::rdma_create_event_channel() };
        let ch = NonNull::new(raw).ok_or_else(|| cm_error("rdma_create_event_channel"))?;
        let channel = Self { ch };
        set_nonblocking(channel.fd())?;
        Ok(channel)
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: the channel is live while `self` is.
        unsafe { (*self.ch.as_ptr()).fd }
    }

    pub(crate) fn as_ptr(&self) -> *mut rdma_event_channel {
        self.ch.as_ptr()
    }

    /// The next event, copied and acknowledged; `None` when there is none now.
    pub fn next_event(&self) -> Result<Option<RawEvent>, VerbsError> {
        let mut ev: *mut rdma_sys::rdma_cm_event = core::ptr::null_mut();
        // SAFETY: a live channel and a valid out-pointer; with O_NONBLOCK the
        // call returns -1/EAGAIN instead of waiting.
        let rc = unsafe { rdma_sys::rdma_get_cm_event(self.as_ptr(), &raw mut ev) };
        if rc != 0 {
            return match last_errno() {
                libc::EAGAIN | libc::EINTR => Ok(None),
                errno => Err(errno_error("rdma_get_cm_event", errno)),
            };
        }
        let Some(ev) = NonNull::new(ev) else {
            return Err(VerbsError::InvalidArgument(
                "rdma_get_cm_event returned no event",
            ));
        };
        // SAFETY: librdmacm returned a live event that stays valid until it is
        // acknowledged below; everything needed is copied out first.
        let raw = unsafe { RawEvent::copy(ev) };
        // SAFETY: acknowledged exactly once; `ev` is not used afterwards.
        unsafe { rdma_sys::rdma_ack_cm_event(ev.as_ptr()) };
        Ok(Some(raw))
    }

    /// The next event, waiting until `deadline`; `None` when it passed.
    pub fn wait_event(&self, deadline: Instant) -> Result<Option<RawEvent>, VerbsError> {
        loop {
            if let Some(ev) = self.next_event()? {
                return Ok(Some(ev));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            wait_readable(self.fd(), deadline - now)?;
        }
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: created by `rdma_create_event_channel`, destroyed once, after
        // the ids on it (they are owned together with it by `CmId`, which
        // destroys the id first).
        unsafe { rdma_sys::rdma_destroy_event_channel(self.ch.as_ptr()) };
    }
}

/// An RDMA-CM event as it was read (the event itself is already acknowledged).
#[derive(Debug)]
pub(crate) struct RawEvent {
    /// `rdma_cm_event_type`.
    pub kind: rdma_cm_event_type::Type,
    /// Status (an errno value, or a transport reject reason).
    pub status: i32,
    /// The id the event is for (for a connect request: the new id, now ours).
    pub id: *mut rdma_cm_id,
    /// Private data of the request, reply or reject.
    pub private_data: Vec<u8>,
    /// For a connect request: RDMA Reads the peer can answer.
    pub initiator_depth: u8,
    /// For a connect request: RDMA Reads the peer will issue.
    pub responder_resources: u8,
}

impl RawEvent {
    /// Copies what an iSER connection needs out of `ev`.
    ///
    /// # Safety
    ///
    /// `ev` must be a live, not yet acknowledged event of an RC (port space
    /// TCP) id, whose connection parameters are the `conn` member.
    unsafe fn copy(ev: NonNull<rdma_sys::rdma_cm_event>) -> Self {
        // SAFETY: live event (caller).
        let e = unsafe { ev.as_ref() };
        // SAFETY: RC ids report connection parameters in `conn` (caller).
        let conn = unsafe { &e.param.conn };
        let len = usize::from(conn.private_data_len);
        let private_data = if conn.private_data.is_null() || len == 0 {
            Vec::new()
        } else {
            // SAFETY: librdmacm points `private_data` at `private_data_len`
            // bytes inside the event, valid until the acknowledgement.
            unsafe { core::slice::from_raw_parts(conn.private_data.cast::<u8>(), len) }.to_vec()
        };
        Self {
            kind: e.event,
            status: e.status,
            id: e.id,
            private_data,
            initiator_depth: conn.initiator_depth,
            responder_resources: conn.responder_resources,
        }
    }
}

/// An RDMA-CM id (port space TCP, i.e. a reliable-connected queue pair)
/// with its own event channel; destroyed on drop.
#[derive(Debug)]
pub(crate) struct CmId {
    id: NonNull<rdma_cm_id>,
    // Dropped after `id` is destroyed (in `Drop::drop`).
    channel: EventChannel,
}

// SAFETY: the id and its channel are owned together and used only through
// librdmacm calls by the owner.
unsafe impl Send for CmId {}

impl CmId {
    /// A new id on `channel`.
    pub fn new(channel: EventChannel) -> Result<Self, VerbsError> {
        let mut id: *mut rdma_cm_id = core::ptr::null_mut();
        // SAFETY: a live channel and a valid out-pointer; no user context.
        let rc = unsafe {
            rdma_sys::rdma_create_id(
                channel.as_ptr(),
                &raw mut id,
                core::ptr::null_mut(),
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        if rc != 0 {
            return Err(cm_error("rdma_create_id"));
        }
        let id =
            NonNull::new(id).ok_or(VerbsError::InvalidArgument("rdma_create_id returned no id"))?;
        Ok(Self { id, channel })
    }

    /// Takes ownership of `id` (an id a connect request created on a
    /// listener's channel) and moves it to a channel of its own.
    ///
    /// # Safety
    ///
    /// `id` must be a live id nobody else owns (the `id` of a connect request
    /// event), whose event was acknowledged.
    pub unsafe fn adopt(id: NonNull<rdma_cm_id>) -> Result<Self, VerbsError> {
        let channel = match EventChannel::new() {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: we own `id` (caller) and give up on it: destroyed once.
                unsafe { rdma_sys::rdma_destroy_id(id.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: live id and channel; the request event was acknowledged, so
        // the migration does not wait for it.
        if unsafe { rdma_sys::rdma_migrate_id(id.as_ptr(), channel.as_ptr()) } != 0 {
            let err = super::os_error("rdma_migrate_id");
            // SAFETY: as above; the id is still on the listener's channel,
            // which outlives this call.
            unsafe { rdma_sys::rdma_destroy_id(id.as_ptr()) };
            return Err(err);
        }
        Ok(Self { id, channel })
    }

    pub fn as_ptr(&self) -> *mut rdma_cm_id {
        self.id.as_ptr()
    }

    pub fn channel(&self) -> &EventChannel {
        &self.channel
    }

    /// The device context the id is bound to, once bound or resolved.
    pub fn verbs(&self) -> Option<NonNull<ibv_context>> {
        // SAFETY: the id is live while `self` is; `verbs` is a plain field.
        NonNull::new(unsafe { (*self.as_ptr()).verbs })
    }

    /// The peer's address (from the route, set for requests and resolved ids).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: the id is live; the destination union holds a socket
        // address (possibly AF_UNSPEC, which gives `None`).
        unsafe {
            let sa = &raw const (*self.as_ptr()).route.addr.dst_addr_union.dst_storage;
            socket_addr_from(sa.cast())
        }
    }

    /// `rdma_bind_addr`.
    pub fn bind(&self, addr: &SocketAddr) -> Result<(), VerbsError> {
        let mut sa = sockaddr_of(addr);
        // SAFETY: live id; `sa` holds a socket address of `addr`'s family.
        if unsafe { rdma_sys::rdma_bind_addr(self.as_ptr(), (&raw mut sa).cast()) } != 0 {
            return Err(bind_error(addr, last_errno()));
        }
        Ok(())
    }

    /// Waits for the event ending a resolution step.
    fn wait_step(
        &self,
        ok: rdma_cm_event_type::Type,
        what: &'static str,
        addr: &SocketAddr,
        timeout: Duration,
    ) -> Result<(), VerbsError> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(ev) = self.channel.wait_event(deadline)? else {
                return Err(VerbsError::Timeout(what));
            };
            if ev.kind == ok && ev.status == 0 {
                return Ok(());
            }
            match ev.kind {
                rdma_cm_event_type::RDMA_CM_EVENT_ADDR_ERROR
                | rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_ERROR
                | rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED
                | rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED => {
                    return Err(VerbsError::AddressNotRdma(addr.to_string()));
                }
                // Anything else (an address change) is not the answer; wait on.
                _ => {}
            }
        }
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: the id is live and destroyed once; its queue pair, if any,
        // was destroyed by its owner first, and every event was acknowledged
        // when read, so this does not wait.
        if unsafe { rdma_sys::rdma_destroy_id(self.id.as_ptr()) } != 0 {
            tracing::warn!(error = %super::os_error("rdma_destroy_id"), "RDMA-CM id not destroyed");
        }
    }
}

/// Active side: an id with its address and route to `addr` resolved (each
/// step within `timeout`), bound to the device that reaches `addr`.
pub(crate) fn resolve(addr: SocketAddr, timeout: Duration) -> Result<CmId, VerbsError> {
    let id = CmId::new(EventChannel::new()?)?;
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut dst = sockaddr_of(&addr);
    // SAFETY: live id; `dst` holds a socket address; no source address.
    let rc = unsafe {
        rdma_sys::rdma_resolve_addr(
            id.as_ptr(),
            core::ptr::null_mut(),
            (&raw mut dst).cast(),
            ms,
        )
    };
    if rc != 0 {
        return Err(bind_error(&addr, last_errno()));
    }
    id.wait_step(
        rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
        "RDMA-CM address resolution",
        &addr,
        timeout,
    )?;
    // SAFETY: live id with a resolved address.
    if unsafe { rdma_sys::rdma_resolve_route(id.as_ptr(), ms) } != 0 {
        return Err(super::os_error("rdma_resolve_route"));
    }
    id.wait_step(
        rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED,
        "RDMA-CM route resolution",
        &addr,
        timeout,
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_channel_needs_a_device_here() {
        // librdmacm (rdma-core ≥ 30) enumerates devices before it opens the
        // connection manager: without devices the channel cannot exist and
        // the answer is the typed "no RDMA devices found".
        let have_devices = !super::super::device_names().unwrap().is_empty();
        match EventChannel::new() {
            Ok(ch) => {
                assert!(have_devices);
                // Non-blocking: nothing pending is `None`, not a wait.
                assert!(ch.next_event().unwrap().is_none());
                let past = Instant::now();
                assert!(ch.wait_event(past).unwrap().is_none());
            }
            Err(e) => {
                assert!(!have_devices, "devices present but: {e}");
                assert_eq!(e, VerbsError::NoDevices);
            }
        }
    }

    #[test]
    fn binding_loopback_is_a_typed_outcome() {
        // Without devices the id cannot be created (NoDevices); with devices,
        // binding 127.0.0.1 either succeeds (RDMA-CM binds loopback to a
        // device) or fails as "not an RDMA address" — never a panic.
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        match EventChannel::new().and_then(CmId::new) {
            Err(e) => assert_eq!(e, VerbsError::NoDevices),
            Ok(id) => match id.bind(&addr) {
                Ok(()) => assert!(id.verbs().is_some()),
                Err(e) => assert!(matches!(e, VerbsError::AddressNotRdma(_)), "{e}"),
            },
        }
    }

    #[test]
    fn resolving_without_devices_fails_cleanly() {
        let addr: SocketAddr = "192.0.2.1:3260".parse().unwrap();
        match resolve(addr, Duration::from_millis(200)) {
            Err(VerbsError::NoDevices) => {
                assert!(super::super::device_names().unwrap().is_empty());
            }
            // With devices, a documentation address does not resolve.
            Err(e) => assert!(
                matches!(
                    e,
                    VerbsError::AddressNotRdma(_) | VerbsError::Timeout(_) | VerbsError::Os { .. }
                ),
                "{e}"
            ),
            // ...unless a default route leads through a RoCE interface.
            Ok(id) => assert!(id.verbs().is_some()),
        }
    }
}
