//! The io_uring reactor loop (io_uring_enter(2)): one ring per reactor carries the sockets'
//! RECV and SENDMSG (header + payload + digest of many PDUs in one vectored send), the backing
//! files' READ/WRITE (READ_FIXED/WRITE_FIXED into the reactor's registered pool buffers) and
//! FSYNC, a wake-up receive and a timeout — submitted in one `io_uring_enter` per loop turn.
//!
//! This module holds all of the engine's `unsafe` code (pushing entries whose memory the
//! kernel uses asynchronously, and registering buffers). Every block says why the memory stays
//! valid: receive buffers, send batches, message headers and iovec arrays live in heap
//! allocations owned by the connection (or by this loop) that are neither freed nor moved
//! until the completion has been reaped; task buffers stay put until the session releases the
//! task, which it does only after the engine reported the completion.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use io_uring::{IoUring, opcode, squeue, types};

use super::core::{Core, Life, MAX_BATCH, RingOp, RingOpKind};
use super::shared::Message;
use rtgt_uring::sqe::{self, FileRef};

const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_BACKEND: u64 = 3;
const KIND_WAKE: u64 = 4;
const KIND_TIMEOUT: u64 = 5;

fn user_data(kind: u64, a: usize, b: usize) -> u64 {
    (kind << 56) | (((a as u64) & 0xff_ffff) << 32) | ((b as u64) & 0xffff_ffff)
}

fn split(ud: u64) -> (u64, usize, usize) {
    (
        ud >> 56,
        ((ud >> 32) & 0xff_ffff) as usize,
        (ud & 0xffff_ffff) as usize,
    )
}

/// A vectored send's header and iovecs; boxed so their addresses never change.
struct Msg {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_BATCH * 3],
}

impl Msg {
    fn new() -> Box<Self> {
        // msghdr and iovec are plain C structs; null pointers and zero lengths are valid.
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH * 3];
        let hdr = libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: std::ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        };
        Box::new(Self { hdr, iov })
    }
}

/// Per-connection ring state.
struct UConn {
    recv: bool,
    send: bool,
    msg: Box<Msg>,
}

/// Builds a ring for a reactor, registering the pool's buffers as fixed buffers.
pub(crate) fn build_ring(
    entries: u32,
    pool: Option<&rtgt_affinity::NodePool>,
) -> std::io::Result<(IoUring, bool)> {
    let opts = rtgt_uring::RingOptions {
        single_issuer: true,
        defer_taskrun: true,
        ..Default::default()
    };
    let (ring, _flags) = rtgt_uring::ring::build(entries, &opts)?;
    let mut registered = false;
    if let Some(pool) = pool {
        let iovecs = pool.iovecs();
        // SAFETY: the iovecs describe the pool's mapping, which the reactor keeps alive (the
        // pool and every cache handle hold it) for longer than the ring: the ring is dropped at
        // the end of `run`, before the reactor thread drops its pool.
        let r = unsafe { ring.submitter().register_buffers(&iovecs) };
        match r {
            Ok(()) => registered = true,
            Err(e) => {
                tracing::warn!(error = %e, "could not register the buffer pool with io_uring; using plain reads and writes");
            }
        }
    }
    Ok((ring, registered))
}

/// Pushes one entry, submitting first when the submission queue is full.
fn push(ring: &mut IoUring, entry: &squeue::Entry) -> bool {
    loop {
        // SAFETY: every entry built in this module points at memory that stays valid until its
        // completion is reaped (see the module documentation and each builder's caller).
        let pushed = unsafe { ring.submission().push(entry) };
        if pushed.is_ok() {
            return true;
        }
        if let Err(e) = ring.submit() {
            if e.kind() != ErrorKind::Interrupted {
                tracing::error!(error = %e, "io_uring submit failed");
                return false;
            }
        }
    }
}

/// Runs the reactor until it has shut down.
pub(crate) fn run(
    mut core: Core,
    mut ring: IoUring,
    registered: bool,
    wake: &UnixStream,
    rx: &Receiver<Message>,
) {
    let fixed_ok = registered;
    let _ = wake.set_nonblocking(true);
    let mut uconns: Vec<Option<UConn>> = Vec::new();
    let mut wake_buf: Box<[u8; 64]> = Box::new([0; 64]);
    let mut wake_armed = false;
    let mut timeout_armed = false;
    let mut ts: Box<types::Timespec> = Box::new(types::Timespec::new());
    let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(1024);
    let mut last_tick = Instant::now();
    let mut pending_close: Vec<usize> = Vec::new();
    loop {
        core.now = Instant::now();
        while let Ok(m) = rx.try_recv() {
            core.handle_message(m);
        }
        if core.now.duration_since(last_tick) >= Duration::from_millis(50) {
            last_tick = core.now;
            core.tick();
        }
        for t in core.adopted.drain(..) {
            if uconns.len() <= t {
                uconns.resize_with(t + 1, || None);
            }
            uconns[t] = Some(UConn {
                recv: false,
                send: false,
                msg: Msg::new(),
            });
        }
        // Sends.
        let dirty = core.dirty.len();
        for i in 0..dirty {
            let Some(&t) = core.dirty.get(i) else { break };
            let Some(Some(u)) = uconns.get_mut(t) else {
                continue;
            };
            if u.send {
                continue;
            }
            if core.next_batch(t) {
                let Some(conn) = core.conns.get(t) else {
                    continue;
                };
                let n = fill_iovecs(&core, t, &mut u.msg);
                if n == 0 {
                    continue;
                }
                u.msg.hdr.msg_iov = u.msg.iov.as_mut_ptr();
                u.msg.hdr.msg_iovlen = n as _;
                let fd = conn.stream.as_raw_fd();
                let entry = opcode::SendMsg::new(types::Fd(fd), &raw const u.msg.hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
                    .user_data(user_data(KIND_SEND, t, 0));
                if push(&mut ring, &entry) {
                    u.send = true;
                }
            } else if core
                .conns
                .get(t)
                .is_some_and(|c| c.life == Life::CloseAfterFlush)
            {
                core.close_conn(t);
            }
        }
        core.dirty.retain(|t| {
            uconns
                .get(*t)
                .and_then(Option::as_ref)
                .is_some_and(|u| u.send)
        });
        // Hand-offs to other reactors, once nothing of theirs is in flight here.
        let mut i = 0;
        while i < core.handoffs.len() {
            let t = core.handoffs[i].0;
            let busy = uconns
                .get(t)
                .and_then(Option::as_ref)
                .is_some_and(|u| u.recv || u.send)
                || core
                    .conns
                    .get(t)
                    .is_some_and(|c| !c.batch.is_empty() || !c.txq.is_empty());
            if busy {
                i += 1;
                continue;
            }
            let (t, reactor, request) = core.handoffs.swap_remove(i);
            if let Some(slot) = uconns.get_mut(t) {
                *slot = None;
            }
            core.complete_handoff(t, reactor, request);
        }
        // Closing connections: reap once nothing of theirs is in flight.
        pending_close.append(&mut core.to_close);
        pending_close.retain(|&t| {
            let busy = uconns
                .get(t)
                .and_then(Option::as_ref)
                .is_some_and(|u| u.recv || u.send);
            if busy {
                return true;
            }
            if let Some(slot) = uconns.get_mut(t) {
                *slot = None;
            }
            core.reap_conn(t);
            false
        });
        // Receives.
        for (t, slot) in uconns.iter_mut().enumerate() {
            let Some(u) = slot else { continue };
            if u.recv {
                continue;
            }
            let Some(conn) = core.conns.get_mut(t) else {
                // Handed to another reactor: forget it once nothing is in flight.
                if !u.send && !pending_close.contains(&t) {
                    *slot = None;
                }
                continue;
            };
            if matches!(conn.life, Life::Closing | Life::Handoff) {
                continue;
            }
            let fd = conn.stream.as_raw_fd();
            let len = conn.rx.len() as u32;
            let entry = opcode::Recv::new(types::Fd(fd), conn.rx.as_mut_ptr(), len)
                .build()
                .user_data(user_data(KIND_RECV, t, 0));
            if push(&mut ring, &entry) {
                u.recv = true;
            }
        }
        // Backend operations.
        for op in core.ring_ops.drain(..) {
            let entry = backend_entry(op, fixed_ok);
            push(&mut ring, &entry);
        }
        if !wake_armed {
            let entry = opcode::Recv::new(types::Fd(wake.as_raw_fd()), wake_buf.as_mut_ptr(), 64)
                .build()
                .user_data(user_data(KIND_WAKE, 0, 0));
            wake_armed = push(&mut ring, &entry);
        }
        if !timeout_armed {
            let d = core.next_timeout().min(Duration::from_millis(50));
            *ts = types::Timespec::new()
                .sec(d.as_secs())
                .nsec(d.subsec_nanos());
            let entry = opcode::Timeout::new(&raw const *ts)
                .build()
                .user_data(user_data(KIND_TIMEOUT, 0, 0));
            timeout_armed = push(&mut ring, &entry);
        }
        if core.finished() && pending_close.is_empty() && uconns.iter().all(Option::is_none) {
            break;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if e.kind() == ErrorKind::Interrupted || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                tracing::error!(error = %e, "io_uring_enter failed; stopping reactor");
                break;
            }
        }
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        core.now = Instant::now();
        for &(ud, res) in &cqes {
            let (kind, a, b) = split(ud);
            match kind {
                KIND_RECV => {
                    if let Some(Some(u)) = uconns.get_mut(a) {
                        u.recv = false;
                    }
                    if res > 0 {
                        core.on_received(a, res as usize);
                    } else if res != -libc::EINTR && res != -libc::EAGAIN {
                        core.close_conn(a);
                    }
                }
                KIND_SEND => {
                    if let Some(Some(u)) = uconns.get_mut(a) {
                        u.send = false;
                    }
                    if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
                        core.close_conn(a);
                    } else if res > 0 {
                        core.on_sent(a, res as usize);
                    }
                    core.mark_dirty(a);
                }
                KIND_BACKEND => core.on_backend_done(a, b, res),
                KIND_WAKE => wake_armed = false,
                KIND_TIMEOUT => timeout_armed = false,
                _ => {}
            }
        }
    }
    // Drop any entries still in flight by tearing the ring down before the buffers.
    drop(ring);
    drop(uconns);
}

/// Fills `msg.iov` with the unsent part of the connection's batch; returns the iovec count.
fn fill_iovecs(core: &Core, token: usize, msg: &mut Msg) -> usize {
    let Some(conn) = core.conns.get(token) else {
        return 0;
    };
    let mut skip = conn.batch.sent;
    let mut n = 0;
    for item in &conn.batch.items {
        let parts = [
            item.header.as_bytes(),
            Core::payload_bytes(&core.sessions, item),
            item.trailer.as_bytes(),
        ];
        for part in parts {
            if part.is_empty() {
                continue;
            }
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let rest = part.get(skip..).unwrap_or(&[]);
            skip = 0;
            if let Some(slot) = msg.iov.get_mut(n) {
                *slot = libc::iovec {
                    iov_base: rest.as_ptr().cast_mut().cast(),
                    iov_len: rest.len(),
                };
                n += 1;
            }
        }
    }
    n
}

fn backend_entry(op: RingOp, fixed_ok: bool) -> squeue::Entry {
    let ud = user_data(KIND_BACKEND, op.sidx, op.slot);
    let file = FileRef::Fd(op.fd);
    match op.kind {
        RingOpKind::Read {
            offset,
            ptr,
            len,
            fixed,
        } => match fixed.filter(|_| fixed_ok) {
            // SAFETY: `ptr..ptr+len` lies in the task's buffer (a registered pool buffer with
            // index `i` here), which stays allocated and unmoved until this completion is
            // reaped: the session keeps the task (and the engine its buffer) until the engine
            // reports the command complete, which happens only after the completion.
            Some(i) => unsafe { sqe::read_fixed(file, offset, ptr, len, i, ud) },
            // SAFETY: as above, for a buffer that is not registered.
            None => unsafe { sqe::read(file, offset, ptr, len, ud) },
        },
        RingOpKind::Write {
            offset,
            ptr,
            len,
            fixed,
            fua,
        } => match fixed.filter(|_| fixed_ok) {
            // SAFETY: as for reads; the buffer is not written while the write is in flight.
            Some(i) => unsafe { sqe::write_fixed(file, offset, ptr, len, i, fua, ud) },
            // SAFETY: as above.
            None => unsafe { sqe::write(file, offset, ptr, len, fua, ud) },
        },
        RingOpKind::Flush => sqe::fdatasync(file, ud),
    }
}
