//! The io_uring reactor loop (io_uring_enter(2)): one ring per reactor carries the sockets'
//! RECV (into the connection's buffer, or straight into a task buffer for data segments still
//! to come) and SENDMSG (header + payload + digest of many PDUs in one vectored send), the
//! backing files' READ/WRITE (READ_FIXED/WRITE_FIXED into the reactor's registered pool
//! buffers) and FSYNC, a wake-up receive and a timer — submitted in one `io_uring_enter` per
//! loop turn.
//!
//! The ring is rtgt-uring's [`ReactorRing`], which owns the memory of every operation in
//! flight: receive buffers, send batches (with the task buffers their Data-In comes from) and
//! task buffers of backing I/O are moved into it at submission and come back with the
//! completion. This loop holds no `unsafe` code.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rtgt_uring::FileRef;
use rtgt_uring::net::{Done, ReactorRing, Refused, Returned};

use super::buffers::TaskBuf;
use super::core::{Core, Life, Owner, RingOpKind};
use super::idle::IdlePoll;
use super::send::SendBatch;
use super::shared::Message;

const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_BACKEND: u64 = 3;
const KIND_WAKE: u64 = 4;
const KIND_TIMEOUT: u64 = 5;
const KIND_FETCH: u64 = 6;
const KIND_BATCH: u64 = 7;

/// The completion tag of a backend operation.
fn owner_tag(owner: Owner) -> u64 {
    match owner {
        Owner::Task { sidx, slot } => user_data(KIND_BACKEND, sidx, slot),
        Owner::Fetch { lu, slot } => user_data(KIND_FETCH, lu, slot),
        Owner::Batch { lu, id } => user_data(KIND_BATCH, lu, id as usize),
    }
}

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

/// The reactor's ring: task buffers for receives and backing I/O, batches for sends.
pub(crate) type Ring = ReactorRing<TaskBuf, SendBatch>;

/// Per-connection ring state.
struct UConn {
    recv: bool,
    send: bool,
}

/// Builds a ring for a reactor, registering the pool's buffers as fixed buffers.
pub(crate) fn build_ring(
    entries: u32,
    pool: Option<&rtgt_affinity::NodePool>,
) -> std::io::Result<Ring> {
    let opts = rtgt_uring::RingOptions {
        single_issuer: true,
        defer_taskrun: true,
        ..Default::default()
    };
    let (mut ring, _flags) = Ring::new(entries, &opts)?;
    if let Some(pool) = pool {
        if let Err(e) = ring.register_pool(pool) {
            tracing::warn!(error = %e, "could not register the buffer pool with io_uring; using plain reads and writes");
        }
    }
    Ok(ring)
}

/// Submits the backend operations the core queued (lending their task buffers to the ring).
fn submit_backend(core: &mut Core, ring: &mut Ring) {
    while let Some(op) = core.ring_ops.pop() {
        let tag = owner_tag(op.owner);
        let file = FileRef::Fd(op.file.fd);
        let refused = match (op.kind, core.lend_for_op(&op)) {
            (RingOpKind::Flush, _) => ring.fdatasync(file, tag).err().map(|_| (-libc::EIO, None)),
            (
                RingOpKind::Read {
                    offset, pos, len, ..
                },
                Some(buf),
            ) => {
                let fixed = buf.fixed_index();
                ring.read(file, offset, buf, pos..pos + len, fixed, tag)
                    .err()
                    .map(refusal)
            }
            (
                RingOpKind::Write {
                    offset,
                    pos,
                    len,
                    fua,
                },
                Some(buf),
            ) => {
                let fixed = buf.fixed_index();
                ring.write(file, offset, buf, pos..pos + len, fixed, fua, tag)
                    .err()
                    .map(refusal)
            }
            (_, None) => Some((-libc::EIO, None)),
        };
        if let Some((res, buf)) = refused {
            core.on_ring_done(op.owner, res, buf);
        } else if op.file.immediate {
            // O_DIRECT: to the device now, not in a burst with the rest of this loop's work.
            let _ = ring.submit();
        }
    }
}

/// The result an operation the ring refused completes with, and its buffer.
fn refusal(r: Refused<Box<TaskBuf>>) -> (i32, Option<Box<TaskBuf>>) {
    let res = if r.error.kind() == ErrorKind::InvalidInput {
        -libc::EFAULT
    } else {
        -libc::EIO
    };
    (res, Some(r.memory))
}

/// Arms a connection's receive: straight into a task buffer when a data segment is still to
/// come (see `recv.rs`), else into its receive buffer. Returns whether one is in flight.
fn arm_recv(core: &mut Core, ring: &mut Ring, t: usize) -> bool {
    let direct = core.direct_target(t);
    let Some(conn) = core.conns.get_mut(t) else {
        return false;
    };
    let fd = conn.stream.as_raw_fd();
    let tag = user_data(KIND_RECV, t, 0);
    if let Some(d) = direct {
        if let Some(slot) = core
            .sessions
            .get_mut(d.sidx)
            .and_then(|c| c.slots.get_mut(d.slot))
        {
            let buf = slot.lend(false);
            match ring.recv(fd, buf, d.pos..d.pos + d.len, tag) {
                Ok(()) => {
                    conn.direct = Some(d);
                    return true;
                }
                Err(r) => slot.restore(r.memory, false),
            }
        }
    }
    let want = core.rx_want(t);
    let Some(conn) = core.conns.get_mut(t) else {
        return false;
    };
    let Some(rx) = conn.rx.take() else {
        return false;
    };
    let len = rx.as_slice().len().min(want);
    match ring.recv(fd, rx, 0..len, tag) {
        Ok(()) => true,
        Err(r) => {
            conn.rx = Some(r.memory);
            false
        }
    }
}

/// Runs the reactor until it has shut down.
pub(crate) fn run(
    mut core: Core,
    mut ring: Ring,
    wake: &UnixStream,
    rx: &Receiver<Message>,
    mut idle: IdlePoll,
) {
    let _ = wake.set_nonblocking(true);
    let mut uconns: Vec<Option<UConn>> = Vec::new();
    let mut done: Vec<Done<TaskBuf, SendBatch>> = Vec::with_capacity(1024);
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
                let Some(conn) = core.conns.get_mut(t) else {
                    continue;
                };
                let Some(batch) = conn.batch.take() else {
                    continue;
                };
                let skip = batch.sent;
                let fd = conn.stream.as_raw_fd();
                match ring.send(fd, batch, skip, user_data(KIND_SEND, t, 0)) {
                    Ok(()) => u.send = true,
                    Err(r) => conn.batch = Some(r.memory),
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
                || core.conns.get(t).is_some_and(|c| {
                    c.batch.as_ref().is_some_and(|b| !b.is_empty()) || !c.txq.is_empty()
                });
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
            let Some(conn) = core.conns.get(t) else {
                // Handed to another reactor: forget it once nothing is in flight.
                if !u.send && !pending_close.contains(&t) {
                    *slot = None;
                }
                continue;
            };
            if matches!(conn.life, Life::Closing | Life::Handoff) {
                continue;
            }
            u.recv = arm_recv(&mut core, &mut ring, t);
        }
        core.poll_batches();
        submit_backend(&mut core, &mut ring);
        if let Err(e) = ring.arm_wake(wake.as_raw_fd(), user_data(KIND_WAKE, 0, 0)) {
            tracing::debug!(error = %e, "cannot arm the wake-up receive");
        }
        let next = core.next_timeout().min(Duration::from_millis(50));
        if let Err(e) = ring.arm_timer(next, user_data(KIND_TIMEOUT, 0, 0)) {
            tracing::debug!(error = %e, "cannot arm the timer");
        }
        if core.finished() && pending_close.is_empty() && uconns.iter().all(Option::is_none) {
            break;
        }
        // Poll briefly before sleeping (see `idle`): what is queued goes out first, then the
        // ring is watched for completions or deferred completion work without a system call.
        let mut want = 1;
        let limit = idle.allowance();
        if !limit.is_zero() {
            let _ = ring.submit();
            if idle.spin(limit, || ring.work_pending()) {
                want = 0;
            }
        }
        match ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e)
                if e.kind() == ErrorKind::Interrupted || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                tracing::error!(error = %e, "io_uring_enter failed; stopping reactor");
                break;
            }
        }
        ring.reap(&mut done);
        core.now = Instant::now();
        idle.found_work(
            done.iter()
                .any(|d| !matches!(split(d.tag).0, KIND_WAKE | KIND_TIMEOUT)),
            core.now,
        );
        for d in done.drain(..) {
            let (kind, a, b) = split(d.tag);
            let res = d.result;
            match (kind, d.returned) {
                (KIND_RECV, Returned::Buf(buf)) => {
                    if let Some(Some(u)) = uconns.get_mut(a) {
                        u.recv = false;
                    }
                    let direct = core.conns.get_mut(a).and_then(|c| c.direct.take());
                    let n = usize::try_from(res).unwrap_or(0);
                    if let Some(dr) = direct {
                        core.on_direct_received(a, dr, n, Some(buf));
                    } else {
                        if let Some(conn) = core.conns.get_mut(a) {
                            conn.rx = Some(buf);
                        }
                        if n > 0 {
                            core.on_received(a, n);
                        }
                    }
                    if res <= 0 && res != -libc::EINTR && res != -libc::EAGAIN {
                        core.close_conn(a);
                    }
                }
                (KIND_SEND, Returned::Send(mut batch)) => {
                    if let Some(Some(u)) = uconns.get_mut(a) {
                        u.send = false;
                    }
                    match core.conns.get_mut(a) {
                        Some(conn) => conn.batch = Some(batch),
                        None => {
                            core.settle_batch(&mut batch);
                        }
                    }
                    if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
                        core.close_conn(a);
                    } else if res > 0 {
                        core.on_sent(a, res as usize);
                    }
                    core.mark_dirty(a);
                }
                (KIND_BACKEND | KIND_FETCH | KIND_BATCH, returned) => {
                    let buf = match returned {
                        Returned::Buf(b) => Some(b),
                        _ => None,
                    };
                    let owner = match kind {
                        KIND_BACKEND => Owner::Task { sidx: a, slot: b },
                        KIND_FETCH => Owner::Fetch { lu: a, slot: b },
                        _ => Owner::Batch {
                            lu: a,
                            id: core.batch_id(a, b as u32),
                        },
                    };
                    core.on_ring_done(owner, res, buf);
                }
                _ => {}
            }
        }
    }
    core.log_stats();
    // Tearing the ring down waits for (or leaks) what the kernel still holds.
    drop(ring);
    drop(uconns);
}
