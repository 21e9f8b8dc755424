//! Byte-stream transports for iSCSI (RFC 7143 §4.1: iSCSI over TCP; RFC 7145 iSER through a
//! local bridge, see [`IserTransport`]). The initiator's session code talks to a
//! [`Transport`]; the pipelined engine additionally registers the transport's descriptor with
//! its event loop.

mod iser;
mod tcp;

pub use iser::{IserFabric, IserOptions, IserTransport};
pub use tcp::TcpTransport;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A connected, bidirectional byte stream to a target portal.
pub trait Transport: Read + Write + AsRawFd + Send {
    /// Switches between blocking (login, management commands) and non-blocking (the engine).
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    /// Read timeout for blocking use (`None`: wait forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Closes both directions (the peer sees end of stream).
    fn shutdown(&self) -> io::Result<()>;
    /// The peer's address, for messages.
    fn peer(&self) -> String;
    /// The login finished with `params` (called before any full-feature PDU is written).
    /// A transport that carries the session's PDUs locally (iSER's bridge) enters its full
    /// feature phase here and returns the data segment length it carries both ways; a plain
    /// byte stream returns `None`.
    fn login_complete(
        &self,
        params: &rtgt_pdu::negotiation::NegotiatedParams,
    ) -> io::Result<Option<u32>> {
        let _ = params;
        Ok(None)
    }
}

/// Writes all of `bufs`, advancing through partial writes (blocking transports).
pub fn write_all_vectored(w: &mut dyn Write, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "connection closed",
                ));
            }
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
