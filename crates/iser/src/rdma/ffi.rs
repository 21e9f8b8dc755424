//! What the C headers provide as inline functions or macros, done here:
//! the data-path verbs (`ibv_post_send`, `ibv_post_recv`, `ibv_poll_cq`,
//! `ibv_req_notify_cq`, `ibv_alloc_mw`, `ibv_dealloc_mw`) are `static
//! inline` in `<infiniband/verbs.h>` and call the provider through the
//! context's operation table (`context->ops`). rdma-sys mirrors them but
//! `unwrap()`s the table entry; these wrappers make the same call and turn a
//! missing entry into `EOPNOTSUPP` instead of a panic. Also: socket
//! addresses to and from `sockaddr`, non-blocking file descriptors, waiting
//! for readability.

use core::ffi::{c_int, c_uint};
use core::ptr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use rdma_sys::{ibv_cq, ibv_mw, ibv_pd, ibv_qp, ibv_recv_wr, ibv_send_wr, ibv_wc};

use super::{errno_error, os_error};
use crate::verbs::VerbsError;

/// `ibv_post_send`: posts the chain at `wr`; returns 0 or an errno value.
///
/// # Safety
///
/// `qp` must be a live queue pair, and `wr` a valid work-request chain
/// whose scatter/gather lists (and, for binds, memory window and region
/// pointers) are valid for the duration of the call. The memory the
/// entries name must stay registered and untouched until the work request
/// completes (the `ProtectionDomain::register` contract).
pub(crate) unsafe fn post_send(qp: *mut ibv_qp, wr: *mut ibv_send_wr) -> c_int {
    let mut bad: *mut ibv_send_wr = ptr::null_mut();
    // SAFETY: `qp` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*qp).context).ops.post_send };
    match op {
        // SAFETY: the provider's post function for this queue pair, with
        // arguments valid per the caller's contract; `bad` is a valid out-pointer.
        Some(f) => unsafe { f(qp, wr, &raw mut bad) },
        None => libc::EOPNOTSUPP,
    }
}

/// `ibv_post_recv`: posts the chain at `wr`; returns 0 or an errno value.
///
/// # Safety
///
/// As for [`post_send`]; the receive buffers must stay registered and
/// untouched until the receive completes.
pub(crate) unsafe fn post_recv(qp: *mut ibv_qp, wr: *mut ibv_recv_wr) -> c_int {
    let mut bad: *mut ibv_recv_wr = ptr::null_mut();
    // SAFETY: `qp` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*qp).context).ops.post_recv };
    match op {
        // SAFETY: the provider's receive function; arguments valid per the
        // caller's contract; `bad` is a valid out-pointer.
        Some(f) => unsafe { f(qp, wr, &raw mut bad) },
        None => libc::EOPNOTSUPP,
    }
}

/// `ibv_poll_cq`: up to `n` completions into `wc`; returns how many, or a
/// negative value on failure.
///
/// # Safety
///
/// `cq` must be a live completion queue and `wc` valid for writes of `n`
/// entries.
pub(crate) unsafe fn poll_cq(cq: *mut ibv_cq, n: c_int, wc: *mut ibv_wc) -> c_int {
    // SAFETY: `cq` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*cq).context).ops.poll_cq };
    match op {
        // SAFETY: the provider's poll function; `wc` holds `n` entries.
        Some(f) => unsafe { f(cq, n, wc) },
        None => -libc::EOPNOTSUPP,
    }
}

/// `ibv_req_notify_cq`: arms the completion channel for the next
/// completion; returns 0 or an errno value.
///
/// # Safety
///
/// `cq` must be a live completion queue.
pub(crate) unsafe fn req_notify_cq(cq: *mut ibv_cq, solicited_only: bool) -> c_int {
    // SAFETY: `cq` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*cq).context).ops.req_notify_cq };
    match op {
        // SAFETY: the provider's arm function on a live completion queue.
        Some(f) => unsafe { f(cq, c_int::from(solicited_only)) },
        None => libc::EOPNOTSUPP,
    }
}

/// `ibv_alloc_mw`: a memory window of `mw_type` in `pd`, or the errno value.
///
/// # Safety
///
/// `pd` must be a live protection domain.
pub(crate) unsafe fn alloc_mw(pd: *mut ibv_pd, mw_type: c_uint) -> Result<*mut ibv_mw, i32> {
    // SAFETY: `pd` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*pd).context).ops.alloc_mw };
    let Some(f) = op else {
        return Err(libc::EOPNOTSUPP);
    };
    // SAFETY: the provider's allocation function on a live protection domain.
    let mw = unsafe { f(pd, mw_type) };
    if mw.is_null() {
        Err(super::last_errno())
    } else {
        Ok(mw)
    }
}

/// `ibv_dealloc_mw`: returns 0 or an errno value.
///
/// # Safety
///
/// `mw` must be a live memory window, not used afterwards.
pub(crate) unsafe fn dealloc_mw(mw: *mut ibv_mw) -> c_int {
    // SAFETY: `mw` is live (caller), so its context and ops table are too.
    let op = unsafe { (*(*mw).context).ops.dealloc_mw };
    match op {
        // SAFETY: the provider's deallocation function, called once per window.
        Some(f) => unsafe { f(mw) },
        None => libc::EOPNOTSUPP,
    }
}

/// `addr` as a `sockaddr_in` or `sockaddr_in6` inside a `sockaddr_storage`.
pub(crate) fn sockaddr_of(addr: &SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is plain data; all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is large enough and aligned for every
            // socket address type (that is its purpose).
            unsafe { ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
        }
    }
    storage
}

/// The IPv4 or IPv6 address at `sa`, or `None` for another family.
///
/// # Safety
///
/// `sa` must be null or point to a socket address valid for reads of the
/// size its family implies (as the address unions of `rdma_cm_id` are).
pub(crate) unsafe fn socket_addr_from(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null and readable (caller); the family is the first field.
    let family = c_int::from(unsafe { (*sa).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a full `sockaddr_in` (caller).
            let sin = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a full `sockaddr_in6` (caller).
            let sin6 = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: c_int) -> Result<(), VerbsError> {
    // SAFETY: F_GETFL on a descriptor we own reads its flags, nothing else.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(os_error("fcntl(F_GETFL)"));
    }
    // SAFETY: F_SETFL with the old flags plus O_NONBLOCK changes only the
    // blocking mode of our own descriptor.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(os_error("fcntl(F_SETFL)"));
    }
    Ok(())
}

/// Waits up to `timeout` for `fd` to become readable; `Ok(false)` on
/// timeout (or an interrupted wait: callers loop with their own deadline).
pub(crate) fn wait_readable(fd: c_int, timeout: Duration) -> Result<bool, VerbsError> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: one valid `pollfd`, count 1.
    let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if n < 0 {
        let errno = super::last_errno();
        if errno == libc::EINTR {
            return Ok(false);
        }
        return Err(errno_error("poll", errno));
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_are_laid_out_as_sockaddr_in() {
        let addr: SocketAddr = "192.0.2.7:3260".parse().unwrap();
        let storage = sockaddr_of(&addr);
        // SAFETY: `sockaddr_of` wrote a `sockaddr_in` at the start of the storage.
        let sin = unsafe { ptr::read((&raw const storage).cast::<libc::sockaddr_in>()) };
        assert_eq!(c_int::from(sin.sin_family), libc::AF_INET);
        // Port and address in network byte order, as the kernel reads them.
        assert_eq!(sin.sin_port.to_ne_bytes(), [0x0c, 0xbc]);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [192, 0, 2, 7]);
        // SAFETY: the storage holds an AF_INET address.
        let back = unsafe { socket_addr_from((&raw const storage).cast()) };
        assert_eq!(back, Some(addr));
    }

    #[test]
    fn ipv6_addresses_round_trip_with_flow_and_scope() {
        let addr = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1:2".parse().unwrap(),
            3260,
            0x12345,
            3,
        ));
        let storage = sockaddr_of(&addr);
        // SAFETY: `sockaddr_of` wrote a `sockaddr_in6`.
        let sin6 = unsafe { ptr::read((&raw const storage).cast::<libc::sockaddr_in6>()) };
        assert_eq!(c_int::from(sin6.sin6_family), libc::AF_INET6);
        assert_eq!(sin6.sin6_port.to_ne_bytes(), [0x0c, 0xbc]);
        assert_eq!(sin6.sin6_addr.s6_addr[0..2], [0xfe, 0x80]);
        assert_eq!(sin6.sin6_addr.s6_addr[13..16], [0x01, 0x00, 0x02]);
        assert_eq!(sin6.sin6_scope_id, 3);
        // SAFETY: the storage holds an AF_INET6 address.
        let back = unsafe { socket_addr_from((&raw const storage).cast()) };
        assert_eq!(back, Some(addr));
    }

    #[test]
    fn unknown_families_and_null_are_no_address() {
        // SAFETY: null is allowed.
        let none = unsafe { socket_addr_from(ptr::null()) };
        assert_eq!(none, None);
        // SAFETY: plain data; zero is AF_UNSPEC.
        let storage: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        // SAFETY: a readable, AF_UNSPEC address.
        let unspec = unsafe { socket_addr_from((&raw const storage).cast()) };
        assert_eq!(unspec, None);
    }

    #[test]
    fn descriptors_become_non_blocking_and_report_readability() {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` has room for the two descriptors of the pipe.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        set_nonblocking(fds[0]).unwrap();
        // SAFETY: reading the flags of our own descriptor.
        let flags = unsafe { libc::fcntl(fds[0], libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0);
        assert!(!wait_readable(fds[0], Duration::ZERO).unwrap());
        // SAFETY: one byte from a live buffer into our own pipe.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert!(wait_readable(fds[0], Duration::from_secs(5)).unwrap());
        let mut byte = 0u8;
        // SAFETY: one byte into a live local; the descriptor is ours.
        assert_eq!(unsafe { libc::read(fds[0], (&raw mut byte).cast(), 1) }, 1);
        // Non-blocking: an empty pipe reads EAGAIN instead of waiting.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::read(fds[0], (&raw mut byte).cast(), 1) }, -1);
        assert_eq!(super::super::last_errno(), libc::EAGAIN);
        assert!(set_nonblocking(-1).is_err());
        for fd in fds {
            // SAFETY: closing the descriptors this test opened, once.
            unsafe { libc::close(fd) };
        }
    }
}
