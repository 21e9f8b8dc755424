//! What both ends of an iSER connection share (RFC 7145 §5 connection
//! setup, §8 buffer management): the queue pair and its completion queue,
//! a ring of receive buffers (one iSER message each), a pool of send
//! buffers, and work-request identifiers that say what completed.

use std::sync::Arc;

use rtgt_pdu::{Ahs, Pdu, PduHeader};

use crate::error::{IserError, ProtocolError};
use crate::header::{ISER_PDU_HEADER_LEN, IserHeader};
use crate::memory::RegisteredBuffer;
use crate::message;
use crate::verbs::{
    Access, CompletionQueue, Endpoint, MAX_AHS, QpCaps, QueuePair, SendOp, SendWr, Sge, Verbs,
    WorkCompletion,
};

/// Kinds of work requests, in the top byte of the identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WrKind {
    Recv = 1,
    Send = 2,
    Write = 3,
    Read = 4,
    Bind = 5,
    Invalidate = 6,
}

pub(crate) fn wr_id(kind: WrKind, index: u32, aux: u32) -> u64 {
    ((kind as u64) << 56) | ((u64::from(aux) & 0x00ff_ffff) << 32) | u64::from(index)
}

pub(crate) fn wr_kind(id: u64) -> Option<WrKind> {
    Some(match id >> 56 {
        1 => WrKind::Recv,
        2 => WrKind::Send,
        3 => WrKind::Write,
        4 => WrKind::Read,
        5 => WrKind::Bind,
        6 => WrKind::Invalidate,
        _ => return None,
    })
}

pub(crate) fn wr_index(id: u64) -> u32 {
    id as u32
}

pub(crate) fn wr_aux(id: u64) -> u32 {
    ((id >> 32) & 0x00ff_ffff) as u32
}

/// A received iSCSI PDU whose receive buffer the caller holds until
/// `release` (or `take_pdu`) of the connection it came from.
#[derive(Debug)]
#[must_use = "release the receive buffer with release() or take_pdu()"]
pub struct RecvPdu {
    pub(crate) slot: u32,
    /// The BHS.
    pub header: PduHeader,
    /// The iSER header (STags).
    pub iser: IserHeader,
    pub(crate) ahs: core::ops::Range<usize>,
    pub(crate) data: core::ops::Range<usize>,
    pub(crate) len: usize,
    pub(crate) invalidated: Option<u32>,
}

impl RecvPdu {
    /// The STag the peer invalidated with the Send that carried this PDU
    /// (Send with Invalidate), if any.
    pub fn invalidated_stag(&self) -> Option<u32> {
        self.invalidated
    }

    /// Length of the data segment.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Connection phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// RDMA-CM connection being set up.
    Connecting,
    /// iSCSI login (in iSER-assisted mode).
    Login,
    /// Full feature phase.
    FullFeature,
    /// Disconnected or failed.
    Closed,
}

/// Buffer geometry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub rx_slots: u32,
    pub rx_data: u32,
    pub tx_slots: u32,
    pub tx_data: u32,
}

/// Scatter/gather entries per work request of an iSER queue pair.
const MAX_SGE: usize = 4;

/// Most receive (and send) buffers, and RDMA operations in flight, one
/// connection may have; far above what a queue pair of real hardware takes
/// (`max_qp_wr` is in the tens of thousands), low enough that the sizes
/// computed from it cannot overflow.
pub(crate) const MAX_SLOTS: u32 = 1 << 16;

impl Geometry {
    /// Receive slots for a command window of `queue_depth` plus
    /// `unexpected` unexpected PDUs each way (and two spare), refusing
    /// configurations whose arithmetic would overflow.
    pub fn slots(queue_depth: u32, unexpected: u32) -> Result<u32, IserError> {
        unexpected
            .checked_mul(2)
            .and_then(|u| u.checked_add(queue_depth))
            .and_then(|n| n.checked_add(2))
            .filter(|&n| n <= MAX_SLOTS)
            .ok_or(IserError::Config(
                "queue_depth + 2 x MaxOutstandingUnexpectedPDUs + 2 exceeds 65536 buffers",
            ))
    }

    pub fn rx_slot_size(&self) -> usize {
        ISER_PDU_HEADER_LEN + MAX_AHS + self.rx_data as usize + 3
    }
    pub fn tx_slot_size(&self) -> usize {
        ISER_PDU_HEADER_LEN + MAX_AHS + self.tx_data as usize
    }
}

pub(crate) struct Core<V: Verbs> {
    pub qp: V::Qp,
    pub cq: V::Cq,
    rx: RegisteredBuffer<V::Mr>,
    rx_posted: Vec<bool>,
    tx: RegisteredBuffer<V::Mr>,
    tx_free: Vec<u32>,
    pub geometry: Geometry,
    pub phase: Phase,
    pub failure: Option<IserError>,
    pub pd: Arc<V::Pd>,
}

impl<V: Verbs> Core<V> {
    pub fn new(
        verbs: &V,
        endpoint: Endpoint<V::Request>,
        pd: Arc<V::Pd>,
        geometry: Geometry,
        extra_send_wr: u32,
    ) -> Result<Self, IserError> {
        let caps = QpCaps {
            max_send_wr: geometry
                .tx_slots
                .checked_add(extra_send_wr)
                .ok_or(IserError::Config("too many send work requests"))?,
            max_recv_wr: geometry.rx_slots,
            max_sge: MAX_SGE as u32,
            max_rd_atomic: 16,
        };
        let cq = verbs.create_cq(
            caps.max_send_wr
                .checked_add(caps.max_recv_wr)
                .ok_or(IserError::Config("too many work requests"))?,
        )?;
        let qp = verbs.create_qp(endpoint, &pd, &cq, caps)?;
        let too_big = IserError::Config("buffer area too large");
        let rx_len = geometry
            .rx_slot_size()
            .checked_mul(geometry.rx_slots as usize)
            .ok_or(too_big.clone())?;
        let tx_len = geometry
            .tx_slot_size()
            .checked_mul(geometry.tx_slots as usize)
            .ok_or(too_big)?;
        let rx = RegisteredBuffer::new(&*pd, rx_len, Access::LOCAL_WRITE)?;
        let tx = RegisteredBuffer::new(&*pd, tx_len, Access::NONE)?;
        Ok(Self {
            qp,
            cq,
            rx,
            rx_posted: vec![false; geometry.rx_slots as usize],
            tx,
            tx_free: (0..geometry.tx_slots).rev().collect(),
            geometry,
            phase: Phase::Connecting,
            failure: None,
            pd,
        })
    }

    /// Posts receive slot `slot`.
    pub fn post_rx(&mut self, slot: u32) -> Result<(), IserError> {
        let size = self.geometry.rx_slot_size();
        let sge = self
            .rx
            .sge(slot as usize * size, size)
            .ok_or(IserError::Config("receive slot out of range"))?;
        if let Some(p) = self.rx_posted.get_mut(slot as usize) {
            if *p {
                return Ok(());
            }
            *p = true;
        }
        self.qp.post_recv(wr_id(WrKind::Recv, slot, 0), &[sge])?;
        Ok(())
    }

    /// Posts the receive slots `range`.
    pub fn post_rx_range(&mut self, slots: core::ops::Range<u32>) -> Result<(), IserError> {
        for s in slots {
            self.post_rx(s)?;
        }
        Ok(())
    }

    /// Marks a slot's receive as completed.
    pub fn rx_completed(&mut self, slot: u32) {
        if let Some(p) = self.rx_posted.get_mut(slot as usize) {
            *p = false;
        }
    }

    /// The first `len` bytes of a completed (not posted) receive slot.
    pub fn rx_bytes(&self, slot: u32, len: usize) -> &[u8] {
        let size = self.geometry.rx_slot_size();
        if self.rx_posted.get(slot as usize).copied().unwrap_or(true) || len > size {
            return &[];
        }
        // SAFETY: the slot's receive has completed and it is not posted again
        // until it is released (checked above), so no work request writes it;
        // the receive region grants no remote access (LOCAL_WRITE only).
        unsafe { self.rx.bytes(slot as usize * size, len) }.unwrap_or(&[])
    }

    /// The data segment of a received PDU.
    pub fn pdu_data(&self, rx: &RecvPdu) -> &[u8] {
        self.rx_bytes(rx.slot, rx.len)
            .get(rx.data.clone())
            .unwrap_or(&[])
    }

    /// The raw AHS of a received PDU.
    pub fn pdu_ahs(&self, rx: &RecvPdu) -> &[u8] {
        self.rx_bytes(rx.slot, rx.len)
            .get(rx.ahs.clone())
            .unwrap_or(&[])
    }

    /// Returns a PDU's receive buffer to the receive queue (nothing to do once closed).
    pub fn release(&mut self, rx: &RecvPdu) -> Result<(), IserError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        self.post_rx(rx.slot)
    }

    /// Copies a received PDU out with its AHS decoded. A malformed AHS is the
    /// caller's protocol violation to report (RFC 7145 §10).
    pub fn copy_pdu(&self, rx: &RecvPdu) -> Result<Pdu, ProtocolError> {
        let ahs = Ahs::decode_all(self.pdu_ahs(rx)).map_err(ProtocolError::from)?;
        Ok(Pdu {
            header: rx.header.clone(),
            ahs,
            data: self.pdu_data(rx).to_vec(),
        })
    }

    /// Sends one control-type PDU (or, with `header` `None`, the raw iSER
    /// message in `data`): headers and `data` are copied into a send buffer;
    /// `extra` (registered memory of the caller) follows them.
    // Each part of the message is passed separately so nothing is assembled
    // twice; bundling them in a struct would only move the list elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        iser: &IserHeader,
        header: Option<&PduHeader>,
        ahs: &[u8],
        data: &[u8],
        extra: &[Sge],
        op: SendOp,
        aux: u32,
    ) -> Result<u32, IserError> {
        if ahs.len() > MAX_AHS || data.len() > self.geometry.tx_data as usize {
            return Err(IserError::SegmentTooLong {
                len: data.len(),
                limit: self.geometry.tx_data,
            });
        }
        // One entry is the send buffer; the queue pair takes MAX_SGE in all.
        // Dropping entries would send fewer bytes than the BHS declares.
        if extra.len() > MAX_SGE - 1 {
            return Err(IserError::Config("too many scatter/gather entries"));
        }
        let slot = self.tx_free.pop().ok_or(IserError::NoSendResources)?;
        let size = self.geometry.tx_slot_size();
        let extra_len: usize = extra.iter().map(|s| s.len as usize).sum();
        // SAFETY: the slot is free: its previous Send completed (slots return
        // to the free list only on completion) and none is posted on it; the
        // send region grants no remote access.
        let Some(buf) = (unsafe { self.tx.bytes_mut(slot as usize * size, size) }) else {
            self.tx_free.push(slot);
            return Err(IserError::Config("send slot out of range"));
        };
        let used = match header {
            Some(h) => {
                let Some(n) = message::write_headers(buf, iser, h, ahs, data.len() + extra_len)
                else {
                    self.tx_free.push(slot);
                    return Err(IserError::SegmentTooLong {
                        len: data.len() + extra_len,
                        limit: self.geometry.tx_data,
                    });
                };
                n
            }
            None => 0,
        };
        let end = used + data.len();
        if let Some(dst) = buf.get_mut(used..end) {
            dst.copy_from_slice(data);
        }
        let mut sges = [Sge::default(); MAX_SGE];
        let Some(first) = self.tx.sge(slot as usize * size, end) else {
            self.tx_free.push(slot);
            return Err(IserError::Config("send slot out of range"));
        };
        sges[0] = first;
        let n = 1 + extra.len();
        sges[1..n].copy_from_slice(extra);
        let r = self.qp.post_send(&SendWr {
            wr_id: wr_id(WrKind::Send, slot, aux),
            op,
            sges: &sges[..n],
            signaled: true,
        });
        if let Err(e) = r {
            self.tx_free.push(slot);
            return Err(e.into());
        }
        Ok(slot)
    }

    /// Whether a send buffer is free (a [`send`](Self::send) would not fail
    /// with [`IserError::NoSendResources`]).
    pub fn tx_available(&self) -> bool {
        !self.tx_free.is_empty()
    }

    /// Sends posted and not yet completed.
    pub fn tx_outstanding(&self) -> usize {
        (self.geometry.tx_slots as usize).saturating_sub(self.tx_free.len())
    }

    /// Returns a send slot after its completion.
    pub fn tx_completed(&mut self, slot: u32) {
        if slot < self.geometry.tx_slots && !self.tx_free.contains(&slot) {
            self.tx_free.push(slot);
        }
    }

    /// Polls completions into `out`.
    pub fn poll(&mut self, out: &mut [WorkCompletion]) -> Result<usize, IserError> {
        Ok(self.cq.poll(out)?)
    }

    /// Records a fatal error, disconnects, and returns the error.
    pub fn fail(&mut self, e: IserError) -> IserError {
        if self.failure.is_none() {
            tracing::warn!(error = %e, "iSER connection failed");
            self.failure = Some(e.clone());
        }
        self.phase = Phase::Closed;
        let _ = self.qp.disconnect();
        e
    }

    /// Refuses operations on a closed connection.
    pub fn check_open(&self) -> Result<(), IserError> {
        match (&self.failure, self.phase) {
            (Some(e), _) => Err(e.clone()),
            (None, Phase::Closed) => Err(IserError::Closed),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::{OpKind, SoftFabric};
    use crate::verbs::{Listener, QpState, Verbs};
    use rtgt_pdu::{Itt, NopOut, Ttt};

    /// Regression: entries past the fourth were silently dropped while the
    /// BHS still declared their bytes, so the peer got a short message.
    #[test]
    fn more_entries_than_a_work_request_carries_are_refused() {
        let fabric = SoftFabric::new();
        let at = "192.0.2.9:3260".parse().unwrap();
        let mut listener = fabric.listen(at).unwrap();
        let pd = Arc::new(fabric.alloc_pd().unwrap());
        let geometry = Geometry {
            rx_slots: 2,
            rx_data: 8192,
            tx_slots: 2,
            tx_data: 8192,
        };
        let mut core = Core::new(
            &fabric,
            Endpoint::Outgoing(at),
            Arc::clone(&pd),
            geometry,
            0,
        )
        .unwrap();
        core.qp.connect(&[]).unwrap();
        let req = listener.poll_request().unwrap().unwrap();
        let tpd = Arc::new(fabric.alloc_pd().unwrap());
        let mut peer = Core::new(&fabric, Endpoint::Incoming(req), tpd, geometry, 0).unwrap();
        peer.post_rx_range(0..2).unwrap();
        peer.qp.accept(&[]).unwrap();
        assert_eq!(core.qp.state(), QpState::Rts);

        let data = RegisteredBuffer::new(&*pd, 64, Access::NONE).unwrap();
        let nop = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt(1),
            ttt: Ttt::RESERVED,
            ..Default::default()
        });
        let four = [data.sge(0, 16).unwrap(); 4];
        let err = core
            .send(
                &IserHeader::default(),
                Some(&nop),
                &[],
                &[],
                &four,
                SendOp::Send,
                0,
            )
            .unwrap_err();
        assert_eq!(err, IserError::Config("too many scatter/gather entries"));
        fabric.progress();
        assert_eq!(fabric.executed(OpKind::Send), 0);
        assert_eq!(core.tx_free.len(), 2, "no send buffer was taken");
        // Three extra entries (plus the headers' buffer) are fine.
        core.send(
            &IserHeader::default(),
            Some(&nop),
            &[],
            &[],
            &four[..3],
            SendOp::Send,
            0,
        )
        .unwrap();
        fabric.progress();
        assert_eq!(fabric.executed(OpKind::Send), 1);
    }
}
