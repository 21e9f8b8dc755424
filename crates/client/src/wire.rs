//! Blocking PDU exchange over a [`Transport`] (RFC 7143 §11.2 framing, §7.8 digests): used for
//! login, discovery, management commands and the torture cases. The pipelined engine uses its
//! own non-blocking path and takes over the stream (and any bytes already read) after login.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use rtgt_pdu::{DataTrailer, Digests, EncodedHeader, Framer, Pdu};
use rtgt_session::initiator::{OutData, OutPdu};

use crate::error::{ClientError, Result};
use crate::transport::{Transport, write_all_vectored};

/// Bytes read from the socket per call.
const RX_CHUNK: usize = 64 * 1024;

/// A connection exchanging whole PDUs, blocking with a timeout.
pub struct PduStream {
    transport: Box<dyn Transport>,
    framer: Framer,
    digests: Digests,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    timeout: Duration,
}

impl core::fmt::Debug for PduStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PduStream")
            .field("peer", &self.transport.peer())
            .field("digests", &self.digests)
            .finish_non_exhaustive()
    }
}

impl PduStream {
    /// Wraps a connected transport (login mode: no digests, 8 KiB segment limit).
    pub fn new(transport: Box<dyn Transport>, timeout: Duration) -> Self {
        Self {
            transport,
            framer: Framer::new(),
            digests: Digests::NONE,
            rx: vec![0; RX_CHUNK],
            rx_start: 0,
            rx_end: 0,
            timeout,
        }
    }

    /// Switches to full feature phase: negotiated digests both ways, and the data segment
    /// limit we declared (MaxRecvDataSegmentLength).
    pub fn enter_full_feature(&mut self, digests: Digests, max_recv_data_segment_length: u32) {
        self.digests = digests;
        self.framer
            .enter_full_feature(digests, max_recv_data_segment_length);
    }

    /// Digests in force.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// The receive timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the receive timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The peer's address.
    pub fn peer(&self) -> String {
        self.transport.peer()
    }

    /// The transport.
    pub fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    /// Sends a whole PDU with the digests in force.
    pub fn send_pdu(&mut self, pdu: &Pdu) -> Result<()> {
        let bytes = pdu
            .to_bytes(self.digests)
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        self.send_raw(&bytes)
    }

    /// Sends a PDU from the session; `task_buf` is the buffer of the task its data refers to.
    pub fn send_out(&mut self, out: &OutPdu, task_buf: &[u8]) -> Result<()> {
        let hdr = EncodedHeader::new(&out.bhs, self.digests.header);
        let data: &[u8] = match &out.data {
            OutData::None => &[],
            OutData::Task { offset, len, .. } => {
                let start = *offset as usize;
                task_buf.get(start..start + *len as usize).ok_or_else(|| {
                    ClientError::Config(format!(
                        "task buffer of {} bytes is shorter than the transfer",
                        task_buf.len()
                    ))
                })?
            }
            OutData::Owned(v) => v,
        };
        let trailer = DataTrailer::for_data(data, self.digests.data);
        let mut slices = [
            IoSlice::new(hdr.as_bytes()),
            IoSlice::new(data),
            IoSlice::new(trailer.as_bytes()),
        ];
        write_all_vectored(&mut self.transport, &mut slices)?;
        Ok(())
    }

    /// Sends raw bytes (the torture cases build malformed PDUs by hand).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let mut slices = [IoSlice::new(bytes)];
        write_all_vectored(&mut self.transport, &mut slices)?;
        Ok(())
    }

    /// Receives the next PDU, waiting at most the configured timeout.
    pub fn recv(&mut self) -> Result<Pdu> {
        let timeout = self.timeout;
        self.recv_within(timeout)?
            .ok_or(ClientError::Timeout("a PDU from the target"))
    }

    /// Receives the next PDU, or `None` if none arrives within `timeout`.
    pub fn recv_within(&mut self, timeout: Duration) -> Result<Option<Pdu>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut input = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
            let before = input.len();
            let res = self.framer.next_pdu(&mut input);
            self.rx_start += before - input.len();
            if let Some(pdu) = res? {
                return Ok(Some(pdu));
            }
            // All buffered bytes were consumed by the framer.
            self.rx_start = 0;
            self.rx_end = 0;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.transport
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            match self.transport.read(&mut self.rx) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.rx_end = n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the target closed the connection within `timeout` (reads and discards PDUs
    /// meanwhile). `Ok(false)` when it is still open.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.recv_within(left) {
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Closes the connection.
    pub fn shutdown(&self) {
        // The peer may already be gone; nothing to report then.
        let _ = self.transport.shutdown();
    }

    /// Hands the transport, the framer state and any bytes read but not yet framed to the
    /// engine.
    pub fn into_parts(self) -> (Box<dyn Transport>, Framer, Vec<u8>) {
        let left = self
            .rx
            .get(self.rx_start..self.rx_end)
            .unwrap_or(&[])
            .to_vec();
        (self.transport, self.framer, left)
    }
}
