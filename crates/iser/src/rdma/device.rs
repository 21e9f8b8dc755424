//! RDMA devices: discovery (`ibv_get_device_list`), opening through the
//! connection manager (`rdma_get_devices`, so that protection domains and
//! completion queues share the context RDMA-CM ids resolve to), the
//! capabilities iSER depends on (`ibv_query_device`: RDMA Read depths for
//! RFC 7145 §5.1's IRD/ORD, type 2 memory windows for the initiator's STags
//! of §7.2), and the [`Verbs`] implementation.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdma_sys::{ibv_context, ibv_device_attr, ibv_device_cap_flags};

use super::cm::{self, CmId, EventChannel};
use super::cq::RdmaCq;
use super::pd::RdmaPd;
use super::qp::{RdmaListener, RdmaQp, RdmaRequest};
use super::{errno_error, last_errno};
use crate::verbs::{Endpoint, QpCaps, Verbs, VerbsError};

/// Names of the RDMA devices libibverbs sees (e.g. `mlx5_0`).
///
/// ```
/// let names = rtgt_iser::rdma::device_names().unwrap_or_default();
/// assert!(names.iter().all(|n| !n.is_empty()));
/// ```
pub fn device_names() -> Result<Vec<String>, VerbsError> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a valid out-pointer; the call returns a NULL-terminated
    // array owned by libibverbs (or NULL on failure), freed below.
    let list = unsafe { rdma_sys::ibv_get_device_list(&raw mut n) };
    if list.is_null() {
        return match last_errno() {
            // No kernel support at all (no uverbs devices): no devices.
            0 | libc::ENOSYS | libc::ENODEV | libc::ENOENT => Ok(Vec::new()),
            errno => Err(errno_error("ibv_get_device_list", errno)),
        };
    }
    let count = usize::try_from(n).unwrap_or(0);
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `list` holds `n` device pointers (index < n).
        let dev = unsafe { *list.add(i) };
        if dev.is_null() {
            break;
        }
        // SAFETY: `dev` is a live device of the list; its name is a
        // NUL-terminated string it owns, copied before the list is freed.
        names.push(unsafe { name_of(rdma_sys::ibv_get_device_name(dev)) });
    }
    // SAFETY: `list` came from `ibv_get_device_list` and is freed once.
    unsafe { rdma_sys::ibv_free_device_list(list) };
    Ok(names)
}

/// The string at `raw` (empty for null).
///
/// # Safety
///
/// `raw` must be null or a NUL-terminated string valid for the call.
unsafe fn name_of(raw: *const libc::c_char) -> String {
    if raw.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated (caller).
    unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned()
}

/// What a device supports, from `ibv_query_device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Work requests per queue.
    pub max_qp_wr: u32,
    /// Scatter/gather entries per work request.
    pub max_sge: u32,
    /// Completion queue entries.
    pub max_cqe: u32,
    /// RDMA Reads a queue pair can answer at once (responder resources).
    pub max_qp_rd_atom: u8,
    /// RDMA Reads a queue pair can have outstanding (initiator depth).
    pub max_qp_init_rd_atom: u8,
    /// Memory windows.
    pub max_mw: u32,
    /// Whether type 2 (2A or 2B) memory windows are supported.
    pub mw_type2: bool,
}

impl DeviceCaps {
    /// The capabilities in `attr`.
    pub(crate) fn from_attr(attr: &ibv_device_attr) -> Self {
        let non_neg = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
        let depth = |v: libc::c_int| u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX);
        let type2 = ibv_device_cap_flags::IBV_DEVICE_MEM_WINDOW_TYPE_2A.0
            | ibv_device_cap_flags::IBV_DEVICE_MEM_WINDOW_TYPE_2B.0;
        Self {
            max_qp_wr: non_neg(attr.max_qp_wr),
            max_sge: non_neg(attr.max_sge),
            max_cqe: non_neg(attr.max_cqe),
            max_qp_rd_atom: depth(attr.max_qp_rd_atom),
            max_qp_init_rd_atom: depth(attr.max_qp_init_rd_atom),
            max_mw: non_neg(attr.max_mw),
            mw_type2: attr.max_mw > 0 && attr.device_cap_flags & type2 != 0,
        }
    }
}

/// The opened device shared by everything created on it.
#[derive(Debug)]
pub(crate) struct DeviceInner {
    /// From `rdma_get_devices`; freed (the contexts' references dropped) last.
    list: NonNull<*mut ibv_context>,
    /// The connection manager's context of this device.
    pub ctx: NonNull<ibv_context>,
    pub name: String,
    pub caps: DeviceCaps,
}

// SAFETY: the context is used only through libibverbs/librdmacm calls, which
// are thread-safe for a context; the list is freed once, in `Drop`.
unsafe impl Send for DeviceInner {}
// SAFETY: as above; shared access exposes no mutation of Rust state.
unsafe impl Sync for DeviceInner {}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        // SAFETY: `list` came from `rdma_get_devices` and is freed only here,
        // after every object created on the context (they hold this `Arc`).
        unsafe { rdma_sys::rdma_free_devices(self.list.as_ptr()) };
    }
}

/// An RDMA device as the connection manager opened it; implements
/// [`Verbs`] over libibverbs and librdmacm. Clones share the device.
///
/// Everything the trait says never blocks does not block here either
/// (completion polling, CM events on non-blocking channels), with one
/// exception: [`create_qp`](Verbs::create_qp) for an outgoing endpoint
/// resolves the address and the route first (RDMA-CM must know the device
/// before a queue pair can exist), waiting up to the CM timeout
/// ([`with_cm_timeout`](Self::with_cm_timeout)) for each.
///
/// ```
/// use rtgt_iser::rdma::RdmaDevice;
/// use rtgt_iser::verbs::{Verbs, VerbsError};
///
/// match RdmaDevice::open(None) {
///     Ok(dev) => {
///         // Objects keep the device open for as long as they live.
///         let pd = dev.alloc_pd()?;
///         let cq = dev.create_cq(64)?;
///         println!("{}: type 2 windows {}", dev.name(), dev.caps().mw_type2);
///         drop((cq, pd));
///     }
///     // This is what a host without RDMA hardware reports.
///     Err(e) => assert_eq!(e, VerbsError::NoDevices),
/// }
/// # Ok::<(), VerbsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RdmaDevice {
    pub(crate) inner: Arc<DeviceInner>,
    cm_timeout: Duration,
}

impl RdmaDevice {
    /// How long address and route resolution may take by default.
    pub const DEFAULT_CM_TIMEOUT: Duration = Duration::from_secs(2);

    /// Opens the device called `name`, or the first one.
    ///
    /// Fails with [`VerbsError::NoDevices`] when the host has none and
    /// [`VerbsError::DeviceNotFound`] when `name` is not among them.
    pub fn open(name: Option<&str>) -> Result<Self, VerbsError> {
        if device_names()?.is_empty() {
            return Err(VerbsError::NoDevices);
        }
        Self::open_where(|ctx_name, _| name.is_none_or(|want| want == ctx_name))?
            .ok_or_else(|| VerbsError::DeviceNotFound(name.unwrap_or_default().to_owned()))
    }

    /// Opens the device that serves the local address `ip` (what RDMA-CM
    /// binds a listener or a connection from `ip` to).
    ///
    /// Fails with [`VerbsError::NoDevices`] without devices and
    /// [`VerbsError::AddressNotRdma`] when no device has the address.
    pub fn open_for_addr(ip: IpAddr) -> Result<Self, VerbsError> {
        let addr = SocketAddr::new(ip, 0);
        let channel = EventChannel::new()?;
        let id = CmId::new(channel)?;
        id.bind(&addr)?;
        let Some(ctx) = id.verbs() else {
            // A wildcard or non-RDMA address binds to no device.
            return Err(VerbsError::AddressNotRdma(ip.to_string()));
        };
        drop(id);
        Self::open_where(|_, c| c == ctx)?.ok_or_else(|| VerbsError::AddressNotRdma(ip.to_string()))
    }

    /// Opens the first device of the connection manager's list that `pick`
    /// (given its name and context) accepts.
    fn open_where(
        pick: impl Fn(&str, NonNull<ibv_context>) -> bool,
    ) -> Result<Option<Self>, VerbsError> {
        let mut n: libc::c_int = 0;
        // SAFETY: `n` is a valid out-pointer; the array (of the connection
        // manager's contexts) is owned by librdmacm until `rdma_free_devices`.
        let raw = unsafe { rdma_sys::rdma_get_devices(&raw mut n) };
        let Some(list) = NonNull::new(raw) else {
            return Err(cm::cm_error("rdma_get_devices"));
        };
        for i in 0..usize::try_from(n).unwrap_or(0) {
            // SAFETY: index < n on the array just returned.
            let Some(ctx) = NonNull::new(unsafe { *list.as_ptr().add(i) }) else {
                break;
            };
            // SAFETY: `ctx` is an open context; its `device` lives as long as it,
            // and the device name is a NUL-terminated string it owns.
            let name = unsafe { name_of(rdma_sys::ibv_get_device_name((*ctx.as_ptr()).device)) };
            if !pick(&name, ctx) {
                continue;
            }
            // SAFETY: plain C struct, all-zero is valid; filled by the query.
            let mut attr: ibv_device_attr = unsafe { core::mem::zeroed() };
            // SAFETY: `ctx` is open, `attr` a valid out-pointer.
            let rc = unsafe { rdma_sys::ibv_query_device(ctx.as_ptr(), &raw mut attr) };
            if rc != 0 {
                // SAFETY: returned by `rdma_get_devices`, freed once.
                unsafe { rdma_sys::rdma_free_devices(list.as_ptr()) };
                return Err(errno_error("ibv_query_device", rc));
            }
            return Ok(Some(Self {
                inner: Arc::new(DeviceInner {
                    list,
                    ctx,
                    name,
                    caps: DeviceCaps::from_attr(&attr),
                }),
                cm_timeout: Self::DEFAULT_CM_TIMEOUT,
            }));
        }
        // SAFETY: returned by `rdma_get_devices`, freed once.
        unsafe { rdma_sys::rdma_free_devices(list.as_ptr()) };
        Ok(None)
    }

    /// The same device with `timeout` for each of address and route
    /// resolution when connecting.
    pub fn with_cm_timeout(mut self, timeout: Duration) -> Self {
        self.cm_timeout = timeout;
        self
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What the device supports.
    pub fn caps(&self) -> DeviceCaps {
        self.inner.caps
    }

    /// Whether an iSER initiator can run on it: type 2 memory windows for
    /// its STags (a target needs none).
    pub fn supports_memory_windows(&self) -> bool {
        self.inner.caps.mw_type2
    }

    /// Checks `caps` against the device.
    fn check_caps(&self, caps: &QpCaps) -> Result<(), VerbsError> {
        let dev = &self.inner.caps;
        if caps.max_send_wr == 0 || caps.max_recv_wr == 0 || caps.max_sge == 0 {
            return Err(VerbsError::InvalidArgument(
                "queue pair capacities must be positive",
            ));
        }
        if caps.max_sge as usize > super::wr::MAX_SGE
            || caps.max_sge > dev.max_sge
            || caps.max_send_wr > dev.max_qp_wr
            || caps.max_recv_wr > dev.max_qp_wr
        {
            return Err(VerbsError::InvalidArgument(
                "queue pair capacities exceed the device's limits",
            ));
        }
        Ok(())
    }
}

impl Verbs for RdmaDevice {
    type Pd = RdmaPd;
    type Mr = super::RdmaMr;
    type Mw = super::RdmaMw;
    type Cq = RdmaCq;
    type Qp = RdmaQp;
    type Listener = RdmaListener;
    type Request = RdmaRequest;

    fn alloc_pd(&self) -> Result<RdmaPd, VerbsError> {
        RdmaPd::new(&self.inner)
    }

    fn create_cq(&self, capacity: u32) -> Result<RdmaCq, VerbsError> {
        if capacity == 0 || capacity > self.inner.caps.max_cqe {
            return Err(VerbsError::InvalidArgument(
                "completion queue capacity outside the device's range",
            ));
        }
        RdmaCq::new(&self.inner, capacity)
    }

    fn listen(&self, addr: SocketAddr) -> Result<RdmaListener, VerbsError> {
        RdmaListener::new(&self.inner, addr)
    }

    fn create_qp(
        &self,
        endpoint: Endpoint<RdmaRequest>,
        pd: &RdmaPd,
        cq: &RdmaCq,
        caps: QpCaps,
    ) -> Result<RdmaQp, VerbsError> {
        if !Arc::ptr_eq(pd.device(), &self.inner) || !Arc::ptr_eq(cq.device(), &self.inner) {
            return Err(VerbsError::WrongDomain);
        }
        self.check_caps(&caps)?;
        match endpoint {
            Endpoint::Outgoing(addr) => {
                let id = cm::resolve(addr, self.cm_timeout)?;
                RdmaQp::outgoing(&self.inner, id, addr, pd, cq, caps)
            }
            Endpoint::Incoming(request) => RdmaQp::incoming(&self.inner, request, pd, cq, caps),
        }
    }
}

/// The name of the device behind `ctx` (for error messages).
pub(crate) fn context_name(ctx: NonNull<ibv_context>) -> String {
    // SAFETY: `ctx` is an open context (an id's, which keeps it open); its
    // device and the device's name live as long as it.
    unsafe { name_of(rdma_sys::ibv_get_device_name((*ctx.as_ptr()).device)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_reports_missing_devices_cleanly() {
        let names = device_names().expect("device discovery");
        match RdmaDevice::open(None) {
            Ok(dev) => {
                assert!(names.iter().any(|n| n == dev.name()));
            }
            Err(e) => {
                assert!(names.is_empty(), "devices {names:?} but open failed: {e}");
                assert_eq!(e, VerbsError::NoDevices);
                assert_eq!(e.to_string(), "no RDMA devices found");
            }
        }
        assert!(matches!(
            RdmaDevice::open(Some("no-such-device")),
            Err(VerbsError::NoDevices | VerbsError::DeviceNotFound(_))
        ));
    }

    #[test]
    fn loopback_is_not_served_without_devices() {
        // Without devices: NoDevices. With devices, RDMA-CM may bind the
        // loopback address to one of them (it does for RoCE) or refuse it;
        // either way no panic and a typed answer.
        let names = device_names().unwrap();
        match RdmaDevice::open_for_addr("127.0.0.1".parse().unwrap()) {
            Ok(dev) => assert!(names.iter().any(|n| n == dev.name())),
            Err(e) if names.is_empty() => assert_eq!(e, VerbsError::NoDevices),
            Err(e) => assert!(matches!(e, VerbsError::AddressNotRdma(_)), "unexpected {e}"),
        }
    }

    #[test]
    fn type_2_windows_need_the_capability_bit_and_a_window_count() {
        // SAFETY: plain C struct; all-zero is a valid value.
        let mut attr: ibv_device_attr = unsafe { core::mem::zeroed() };
        attr.max_qp_wr = 16384;
        attr.max_sge = 30;
        attr.max_cqe = 4_194_303;
        attr.max_qp_rd_atom = 16;
        attr.max_qp_init_rd_atom = 300;
        attr.max_mw = 16_777_216;
        let caps = DeviceCaps::from_attr(&attr);
        assert_eq!(caps.max_qp_wr, 16384);
        assert_eq!(caps.max_sge, 30);
        assert_eq!(caps.max_cqe, 4_194_303);
        assert_eq!(caps.max_qp_rd_atom, 16);
        assert_eq!(caps.max_qp_init_rd_atom, 255);
        assert!(!caps.mw_type2, "no capability bit");
        attr.device_cap_flags = ibv_device_cap_flags::IBV_DEVICE_MEM_WINDOW_TYPE_2B.0;
        assert!(DeviceCaps::from_attr(&attr).mw_type2);
        attr.max_mw = 0;
        assert!(!DeviceCaps::from_attr(&attr).mw_type2, "no windows");
        attr.max_qp_wr = -1;
        assert_eq!(DeviceCaps::from_attr(&attr).max_qp_wr, 0);
    }
}
