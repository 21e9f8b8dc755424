//! The engine's transmit queue: PDU headers (and digests, padding, small owned data) are
//! appended to one byte arena, payloads stay in the connection's slot buffers, and a flush
//! hands up to [`MAX_IOVECS`] pieces to one `writev` (RFC 7143 §11.2: BHS, header digest, data
//! segment, padding, data digest, back to back on the stream).
//!
//! The arena and the segment list are allocated once; steady-state queuing never allocates
//! (the arena only grows if a burst exceeds its initial capacity, and the engine stops queuing
//! new commands before that).

use std::collections::VecDeque;
use std::io::IoSlice;

use rtgt_pdu::{DataDigest, DataTrailer, Digests, EncodedHeader};
use rtgt_session::initiator::{OutData, OutPdu};

/// Pieces handed to one `writev`.
pub(crate) const MAX_IOVECS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    /// Bytes of the arena.
    Arena { start: u32, len: u32 },
    /// Bytes of the slot buffers (absolute offset).
    Buf { start: u32, len: u32 },
}

impl Seg {
    fn len(self) -> usize {
        match self {
            Self::Arena { len, .. } | Self::Buf { len, .. } => len as usize,
        }
    }
}

/// Queued output of one connection.
#[derive(Debug)]
pub(crate) struct SendQueue {
    arena: Vec<u8>,
    segs: VecDeque<Seg>,
    /// Bytes of the front segment already written.
    front_sent: usize,
    /// Bytes queued and not yet written.
    pending: usize,
}

impl SendQueue {
    pub(crate) fn new(arena_bytes: usize, segments: usize) -> Self {
        Self {
            arena: Vec::with_capacity(arena_bytes),
            segs: VecDeque::with_capacity(segments),
            front_sent: 0,
            pending: 0,
        }
    }

    /// Bytes waiting to be written.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    #[inline]
    fn push_arena(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        let n = bytes.len() as u32;
        self.pending += bytes.len();
        if let Some(Seg::Arena { start: s, len }) = self.segs.back_mut() {
            if *s + *len == start {
                *len += n;
                return;
            }
        }
        self.segs.push_back(Seg::Arena { start, len: n });
    }

    /// Queues one PDU. Task data is referenced in `bufs` at `slot * slot_len + offset`.
    #[inline]
    pub(crate) fn push_pdu(
        &mut self,
        pdu: &OutPdu,
        bufs: &[u8],
        slot_len: usize,
        digests: Digests,
    ) {
        let hdr = EncodedHeader::new(&pdu.bhs, digests.header);
        self.push_arena(hdr.as_bytes());
        match &pdu.data {
            OutData::None => {}
            OutData::Task { task, offset, len } => {
                let start = task.slot() * slot_len + *offset as usize;
                let end = start + *len as usize;
                let data = bufs.get(start..end).unwrap_or(&[]);
                let digest = digests.data.then(|| {
                    let mut d = DataDigest::new();
                    d.update(data);
                    d.finish()
                });
                self.segs.push_back(Seg::Buf {
                    start: start as u32,
                    len: *len,
                });
                self.pending += *len as usize;
                self.push_arena(DataTrailer::new(*len as usize, digest).as_bytes());
            }
            OutData::Owned(v) => {
                self.push_arena(v);
                self.push_arena(DataTrailer::for_data(v, digests.data).as_bytes());
            }
        }
    }

    /// Fills `out` with the next pieces to write; returns how many.
    #[inline]
    pub(crate) fn iovecs<'a>(
        &'a self,
        bufs: &'a [u8],
        out: &mut [IoSlice<'a>; MAX_IOVECS],
    ) -> usize {
        let mut n = 0;
        for (i, seg) in self.segs.iter().take(MAX_IOVECS).enumerate() {
            let skip = if i == 0 { self.front_sent } else { 0 };
            let bytes = match *seg {
                Seg::Arena { start, len } => self
                    .arena
                    .get(start as usize + skip..(start + len) as usize),
                Seg::Buf { start, len } => bufs.get(start as usize + skip..(start + len) as usize),
            };
            if let (Some(b), Some(slot)) = (bytes, out.get_mut(n)) {
                *slot = IoSlice::new(b);
                n += 1;
            }
        }
        n
    }

    /// Marks `written` bytes as sent.
    #[inline]
    pub(crate) fn advance(&mut self, mut written: usize) {
        self.pending = self.pending.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.segs.front().copied() else {
                break;
            };
            let left = front.len() - self.front_sent;
            if written >= left {
                written -= left;
                self.front_sent = 0;
                self.segs.pop_front();
            } else {
                self.front_sent += written;
                written = 0;
            }
        }
        if self.segs.is_empty() {
            self.arena.clear();
            self.front_sent = 0;
            self.pending = 0;
        }
    }

    /// Drops everything queued (the connection is gone).
    pub(crate) fn clear(&mut self) {
        self.segs.clear();
        self.arena.clear();
        self.front_sent = 0;
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_pdu::{BhsLengths, DataOut, NopOut};
    use rtgt_pdu::{Lun, Sn};
    use rtgt_session::initiator::{
        CmdWindow, ConnectionSetup, Direction, ScsiRequest, Session, SessionSetup,
    };

    fn flatten(q: &SendQueue, bufs: &[u8]) -> Vec<u8> {
        let mut io = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.iovecs(bufs, &mut io);
        io[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn headers_coalesce_and_payloads_stay_in_place() {
        let mut q = SendQueue::new(4096, 16);
        let a = OutPdu {
            bhs: NopOut::default().encode(BhsLengths::ZERO),
            data: OutData::None,
        };
        q.push_pdu(&a, &[], 0, Digests::NONE);
        q.push_pdu(&a, &[], 0, Digests::NONE);
        let mut io = [IoSlice::new(&[]); MAX_IOVECS];
        assert_eq!(q.iovecs(&[], &mut io), 1, "two headers, one piece");
        assert_eq!(q.pending(), 96);
        q.advance(50);
        assert_eq!(q.pending(), 46);
        assert_eq!(flatten(&q, &[]), a.bhs[2..].to_vec());
        q.advance(46);
        assert!(q.is_empty());
    }

    #[test]
    fn task_data_with_padding_and_digest() {
        let mut s = Session::new(SessionSetup::new(CmdWindow::new(Sn(1), Sn(1), Sn(9))));
        let c = s.add_connection(ConnectionSetup::new(0, Sn(1), 2));
        let sent = s
            .submit(
                c,
                &ScsiRequest::new(Lun::ZERO, &[0x2a; 10], Direction::Write(6)),
            )
            .unwrap();
        let slot_len = 16;
        let mut bufs = vec![0u8; 32];
        let base = sent.task.slot() * slot_len;
        bufs[base..base + 6].copy_from_slice(b"abcdef");
        let mut q = SendQueue::new(4096, 16);
        q.push_pdu(&sent.pdu, &bufs, slot_len, Digests::BOTH);
        let wire = flatten(&q, &bufs);
        // BHS + header digest + 6 data bytes + 2 padding + data digest.
        assert_eq!(wire.len(), 48 + 4 + 6 + 2 + 4);
        assert_eq!(&wire[52..58], b"abcdef");
        let pdu = rtgt_pdu::Pdu::decode(&wire, Digests::BOTH).unwrap();
        assert_eq!(pdu.data, b"abcdef");
        // Partial writes resume inside the payload.
        q.advance(55);
        assert_eq!(flatten(&q, &bufs), wire[55..].to_vec());
        let _ = DataOut::default();
    }
}
