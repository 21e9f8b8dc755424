//! Real RDMA devices through libibverbs and librdmacm (feature `rdma`):
//! device discovery and opening, so that a daemon configured for iSER on a
//! host without RDMA hardware fails at start-up with
//! [`VerbsError::NoDevices`] ("no RDMA devices found") instead of later.
//!
//! The RDMA-CM contexts are the connection manager's own (`rdma_get_devices`),
//! which is what queue pairs created on RDMA-CM ids must share their
//! protection domain with.
//!
//! Not yet here: the [`Verbs`](crate::verbs::Verbs) implementation over
//! these contexts (queue pairs on RDMA-CM ids, memory windows, completion
//! polling). The iSER state machines are generic over that trait and run on
//! the soft fabric; see docs/iser.md for what was verified.

use std::ffi::CStr;

use crate::verbs::VerbsError;

fn os_error(call: &'static str) -> VerbsError {
    VerbsError::Os {
        call,
        errno: std::io::Error::last_os_error().to_string(),
    }
}

/// Names of the RDMA devices libibverbs sees (e.g. `mlx5_0`).
///
/// ```
/// # #[cfg(feature = "rdma")] {
/// let names = rtgt_iser::rdma::device_names().unwrap_or_default();
/// assert!(names.iter().all(|n| !n.is_empty()));
/// # }
/// ```
pub fn device_names() -> Result<Vec<String>, VerbsError> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a valid out-pointer; the call returns a NULL-terminated
    // array owned by libibverbs (or NULL on failure), freed below.
    let list = unsafe { rdma_sys::ibv_get_device_list(&raw mut n) };
    if list.is_null() {
        return match std::io::Error::last_os_error().raw_os_error() {
            // No kernel support at all (no uverbs devices): no devices.
            Some(libc::ENOSYS | libc::ENODEV | libc::ENOENT) | None => Ok(Vec::new()),
            Some(_) => Err(os_error("ibv_get_device_list")),
        };
    }
    let mut names = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..usize::try_from(n).unwrap_or(0) {
        // SAFETY: `list` holds `n` valid device pointers (index < n).
        let dev = unsafe { *list.add(i) };
        if dev.is_null() {
            break;
        }
        // SAFETY: `dev` is a live device of the list; the name is a
        // NUL-terminated string owned by it, copied before the list is freed.
        let name = unsafe { rdma_sys::ibv_get_device_name(dev) };
        if !name.is_null() {
            // SAFETY: non-null, NUL-terminated (libibverbs contract).
            names.push(
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    // SAFETY: `list` came from `ibv_get_device_list` and is freed once.
    unsafe { rdma_sys::ibv_free_device_list(list) };
    Ok(names)
}

/// An RDMA device as the connection manager opened it.
#[derive(Debug)]
pub struct RdmaDevice {
    list: *mut *mut rdma_sys::ibv_context,
    ctx: *mut rdma_sys::ibv_context,
    name: String,
}

// SAFETY: the context pointer is only used through libibverbs/librdmacm
// calls, which are thread-safe for a context; the device owns the list it
// came from and frees it once.
unsafe impl Send for RdmaDevice {}
// SAFETY: as above; `&RdmaDevice` exposes no mutation.
unsafe impl Sync for RdmaDevice {}

impl RdmaDevice {
    /// Opens the device called `name`, or the first one.
    ///
    /// Fails with [`VerbsError::NoDevices`] when the host has none and
    /// [`VerbsError::DeviceNotFound`] when `name` is not among them.
    pub fn open(name: Option<&str>) -> Result<Self, VerbsError> {
        if device_names()?.is_empty() {
            return Err(VerbsError::NoDevices);
        }
        let mut n: libc::c_int = 0;
        // SAFETY: `n` is a valid out-pointer; the array (of the connection
        // manager's contexts) is owned by librdmacm until `rdma_free_devices`.
        let list = unsafe { rdma_sys::rdma_get_devices(&raw mut n) };
        if list.is_null() || n <= 0 {
            if !list.is_null() {
                // SAFETY: returned by `rdma_get_devices`, freed once.
                unsafe { rdma_sys::rdma_free_devices(list) };
            }
            return Err(VerbsError::NoDevices);
        }
        for i in 0..usize::try_from(n).unwrap_or(0) {
            // SAFETY: index < n on the array just returned.
            let ctx = unsafe { *list.add(i) };
            if ctx.is_null() {
                break;
            }
            // SAFETY: `ctx` is an open context; its `device` is valid for its life.
            let dev = unsafe { (*ctx).device };
            // SAFETY: as in `device_names`.
            let raw = unsafe { rdma_sys::ibv_get_device_name(dev) };
            let dev_name = if raw.is_null() {
                String::new()
            } else {
                // SAFETY: non-null, NUL-terminated.
                unsafe { CStr::from_ptr(raw) }
                    .to_string_lossy()
                    .into_owned()
            };
            if name.is_none_or(|want| want == dev_name) {
                return Ok(Self {
                    list,
                    ctx,
                    name: dev_name,
                });
            }
        }
        // SAFETY: returned by `rdma_get_devices`, freed once.
        unsafe { rdma_sys::rdma_free_devices(list) };
        Err(VerbsError::DeviceNotFound(
            name.unwrap_or_default().to_owned(),
        ))
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the context is open (always true for a constructed device).
    pub fn is_open(&self) -> bool {
        !self.ctx.is_null()
    }
}

impl Drop for RdmaDevice {
    fn drop(&mut self) {
        // SAFETY: `list` came from `rdma_get_devices` and is freed only here.
        unsafe { rdma_sys::rdma_free_devices(self.list) };
    }
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
                assert!(dev.is_open());
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
}
