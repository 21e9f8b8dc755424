//! The portable readiness loop (epoll through mio) used where io_uring is unavailable
//! (`/proc/sys/kernel/io_uring_disabled`, seccomp, EPERM at setup) or forced with
//! `--io-engine epoll`. Same reactor structure and the same [`Core`]; sockets are read and
//! written with non-blocking `read`/`writev` (data segments that have not arrived yet are read
//! straight into their task buffers), and file-backed logical units execute their I/O
//! synchronously on the reactor thread.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};

use super::core::{Core, Life, MAX_BATCH};
use super::idle::IdlePoll;
use super::shared::Message;

/// The waker's token.
pub(crate) const WAKE: Token = Token(usize::MAX);

/// Runs the reactor until it has shut down.
pub(crate) fn run(mut core: Core, mut poll: Poll, rx: &Receiver<Message>, mut idle: IdlePoll) {
    let mut events = Events::with_capacity(256);
    let mut last_tick = Instant::now();
    loop {
        core.now = Instant::now();
        while let Ok(m) = rx.try_recv() {
            core.handle_message(m);
        }
        let adopted = std::mem::take(&mut core.adopted);
        for t in adopted {
            if let Some(conn) = core.conns.get_mut(t) {
                if poll
                    .registry()
                    .register(
                        &mut conn.stream,
                        Token(t),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_err()
                {
                    core.to_close.push(t);
                } else {
                    // Data may already be waiting (edge-triggered registration).
                    read_all(&mut core, t);
                }
            }
        }
        if core.now.duration_since(last_tick) >= Duration::from_millis(50) {
            last_tick = core.now;
            core.tick();
        }
        flush_all(&mut core);
        for (t, reactor, request) in std::mem::take(&mut core.handoffs) {
            let unsent = core.conns.get(t).is_some_and(|c| {
                c.batch.as_ref().is_some_and(|b| !b.is_empty()) || !c.txq.is_empty()
            });
            if unsent {
                // Finish sending what this reactor queued first.
                core.handoffs.push((t, reactor, request));
                continue;
            }
            if let Some(conn) = core.conns.get_mut(t) {
                let _ = poll.registry().deregister(&mut conn.stream);
            }
            core.complete_handoff(t, reactor, request);
        }
        for t in core.to_close.drain(..).collect::<Vec<_>>() {
            if let Some(conn) = core.conns.get_mut(t) {
                let _ = poll.registry().deregister(&mut conn.stream);
            }
            core.reap_conn(t);
        }
        if core.finished() {
            break;
        }
        let timeout = core.next_timeout().min(Duration::from_millis(50));
        // Poll briefly before sleeping (see `idle`).
        let limit = idle.allowance();
        let ready = !limit.is_zero()
            && idle.spin(limit, || {
                poll.poll(&mut events, Some(Duration::ZERO)).is_ok() && !events.is_empty()
            });
        if !ready {
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "epoll failed; stopping reactor");
                    break;
                }
            }
        }
        core.now = Instant::now();
        idle.found_work(events.iter().any(|ev| ev.token() != WAKE), core.now);
        for ev in &events {
            let t = ev.token();
            if t == WAKE {
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                read_all(&mut core, t.0);
            }
            if ev.is_writable() {
                core.mark_dirty(t.0);
            }
        }
    }
    core.log_stats();
}

fn read_all(core: &mut Core, t: usize) {
    loop {
        let direct = core.direct_target(t);
        let want = core.rx_want(t);
        let Some(conn) = core.conns.get_mut(t) else {
            return;
        };
        if matches!(conn.life, Life::Closing | Life::Handoff) {
            return;
        }
        let r = match direct {
            Some(d) => {
                let dst = core
                    .sessions
                    .get_mut(d.sidx)
                    .and_then(|c| c.slots.get_mut(d.slot))
                    .and_then(|s| s.buf.as_mut_slice().get_mut(d.pos..d.pos + d.len));
                match dst {
                    Some(dst) => (&conn.stream).read(dst),
                    None => return,
                }
            }
            None => match conn.rx.as_mut() {
                Some(rx) => {
                    let len = rx.as_slice().len().min(want);
                    (&conn.stream).read(rx.as_mut_slice().get_mut(..len).unwrap_or(&mut []))
                }
                None => return,
            },
        };
        match r {
            Ok(0) => {
                core.close_conn(t);
                return;
            }
            Ok(n) => match direct {
                Some(d) => core.on_direct_received(t, d, n, None),
                None => core.on_received(t, n),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                core.close_conn(t);
                return;
            }
        }
    }
}

fn flush_all(core: &mut Core) {
    let mut i = 0;
    while i < core.dirty.len() {
        let t = core.dirty[i];
        let keep = flush(core, t);
        if keep {
            i += 1;
        } else {
            core.dirty.swap_remove(i);
        }
    }
}

/// Writes as much as the socket takes; returns whether the connection must stay dirty.
fn flush(core: &mut Core, t: usize) -> bool {
    loop {
        if !core.next_batch(t) {
            if core
                .conns
                .get(t)
                .is_some_and(|c| c.life == Life::CloseAfterFlush)
            {
                core.close_conn(t);
            }
            return false;
        }
        let Some(conn) = core.conns.get(t) else {
            return false;
        };
        let r = {
            let empty = IoSlice::new(&[]);
            let mut slices = [empty; MAX_BATCH * 3];
            let mut n = 0;
            if let Some(batch) = conn.batch.as_deref() {
                let mut skip = batch.sent;
                rtgt_uring::net::Gather::gather(batch, &mut |part: &[u8]| {
                    if part.is_empty() {
                        return;
                    }
                    if skip >= part.len() {
                        skip -= part.len();
                        return;
                    }
                    if let Some(s) = slices.get_mut(n) {
                        *s = IoSlice::new(part.get(skip..).unwrap_or(&[]));
                        n += 1;
                    }
                    skip = 0;
                });
            }
            (&conn.stream).write_vectored(slices.get(..n).unwrap_or(&[]))
        };
        match r {
            Ok(0) => {
                core.close_conn(t);
                return false;
            }
            Ok(n) => {
                core.on_sent(t, n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                core.close_conn(t);
                return false;
            }
        }
    }
}
