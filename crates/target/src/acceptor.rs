//! The acceptor: one thread that accepts on every portal and hands each connection to the
//! reactor with the fewest connections (spread by load, not pinned per target — a target's
//! sessions may then use every core).

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::reactor::shared::{ConnInfo, Message, Shared};

/// Token of the acceptor's waker.
const WAKE: Token = Token(usize::MAX);

/// Starts the acceptor over `listeners` (with their portal group tags).
pub(crate) fn spawn(
    mut poll: Poll,
    mut listeners: Vec<(TcpListener, u16)>,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    for (i, (l, _)) in listeners.iter_mut().enumerate() {
        poll.registry().register(l, Token(i), Interest::READABLE)?;
    }
    std::thread::Builder::new()
        .name("rtgt-acceptor".into())
        .spawn(move || {
            let mut events = Events::with_capacity(64);
            loop {
                if shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
                if let Err(e) = poll.poll(&mut events, None) {
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    tracing::error!(error = %e, "acceptor poll failed");
                    break;
                }
                for ev in &events {
                    if ev.token() == WAKE {
                        continue;
                    }
                    let Some((listener, tpgt)) = listeners.get(ev.token().0) else {
                        continue;
                    };
                    loop {
                        match listener.accept() {
                            Ok((stream, peer)) => {
                                let local = stream.local_addr().unwrap_or(peer);
                                let reactor = shared.least_loaded();
                                // Counted now (not when the reactor gets to it) so a burst of
                                // connections spreads.
                                shared.load(reactor).fetch_add(1, Ordering::Relaxed);
                                shared.send(
                                    reactor,
                                    Message::NewConn(
                                        stream,
                                        ConnInfo {
                                            peer,
                                            local,
                                            tpgt: *tpgt,
                                        },
                                    ),
                                );
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                break;
                            }
                        }
                    }
                }
            }
            drop(listeners);
        })
}

/// The acceptor's waker token, for the engine to create the waker.
pub(crate) const fn wake_token() -> Token {
    WAKE
}
