//! Sending: batches of PDUs (header + header digest, payload from the task buffer, padding +
//! data digest) leave in one vectored send (RFC 7143 §11.2, §7.8); the data digest is computed
//! over the task buffer while the batch is built.
//!
//! A batch owns what it sends: the task buffers its Data-In PDUs come from are lent to it
//! (see `buffers.rs`) and go back to their slots when the batch has been sent, before the
//! session hears of it — so the io_uring loop can hand the whole batch to the ring.

use rtgt_pdu::{DataTrailer, Digests, EncodedHeader, data_digest};
use rtgt_session::target::{Payload, TaskId};

use super::buffers::TaskBuf;
use super::core::{Core, Life, MAX_BATCH, Phase};

/// One PDU of a send batch.
pub(crate) struct BatchItem {
    pub header: EncodedHeader,
    pub payload: ItemPayload,
    pub trailer: DataTrailer,
}

/// The data segment of a batch item.
pub(crate) enum ItemPayload {
    None,
    Owned(Vec<u8>),
    /// `len` bytes at `offset` of the batch's lent buffer number `buf`.
    Task {
        buf: usize,
        offset: usize,
        len: usize,
    },
}

/// A task buffer lent to a batch.
pub(crate) struct Lent {
    pub sidx: usize,
    pub task: TaskId,
    /// `None` once given back.
    pub buf: Option<Box<TaskBuf>>,
}

/// PDUs handed to the socket together.
#[derive(Default)]
pub(crate) struct SendBatch {
    pub items: Vec<BatchItem>,
    pub lent: Vec<Lent>,
    pub total: usize,
    pub sent: usize,
}

impl SendBatch {
    /// A batch with room for [`MAX_BATCH`] PDUs, boxed as the ring takes it.
    #[allow(clippy::unnecessary_box_returns)]
    pub(crate) fn new() -> Box<Self> {
        Box::new(Self {
            items: Vec::with_capacity(MAX_BATCH),
            lent: Vec::with_capacity(8),
            total: 0,
            sent: 0,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bytes of one item's data segment.
    fn payload<'a>(&'a self, item: &'a BatchItem) -> &'a [u8] {
        match &item.payload {
            ItemPayload::None => &[],
            ItemPayload::Owned(v) => v,
            ItemPayload::Task { buf, offset, len } => self
                .lent
                .get(*buf)
                .and_then(|l| l.buf.as_ref())
                .and_then(|b| b.as_slice().get(*offset..*offset + *len))
                .unwrap_or(&[]),
        }
    }
}

impl rtgt_uring::net::Gather for SendBatch {
    fn gather<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        for item in &self.items {
            f(item.header.as_bytes());
            f(self.payload(item));
            f(item.trailer.as_bytes());
        }
    }
}

impl Core {
    /// Prepares the next send batch of a connection when it has none; returns whether there
    /// is something to send. (False too while the batch is with the ring.)
    pub(crate) fn next_batch(&mut self, token: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        let Some(batch) = conn.batch.as_mut() else {
            return false;
        };
        if !batch.is_empty() {
            return true;
        }
        if conn.life == Life::Closing {
            return false;
        }
        let digests = conn.digests;
        let sidx = match conn.phase {
            Phase::Ffp { sidx, .. } => Some(sidx),
            _ => None,
        };
        while batch.items.len() < MAX_BATCH {
            let Some(t) = conn.txq.pop_front() else {
                break;
            };
            let digests = if conn.plain > 0 {
                conn.plain -= 1;
                Digests::NONE
            } else {
                digests
            };
            let header = EncodedHeader::new(&t.bhs, digests.header);
            let (payload, trailer, len) = match t.payload {
                Payload::None => (ItemPayload::None, DataTrailer::new(0, None), 0),
                Payload::Owned(v) => {
                    let trailer = DataTrailer::for_data(&v, digests.data);
                    let n = v.len();
                    (ItemPayload::Owned(v), trailer, n)
                }
                Payload::Task { task, offset, len } => {
                    let (offset, len) = (offset as usize, len as usize);
                    let sidx = sidx.unwrap_or(usize::MAX);
                    let known = batch
                        .lent
                        .iter()
                        .position(|l| l.sidx == sidx && l.task == task);
                    let buf = known.unwrap_or_else(|| {
                        // Without the session's slot (cannot happen while the session holds
                        // the task) the PDU would go out with an empty buffer.
                        let buf = self
                            .sessions
                            .get_mut(sidx)
                            .and_then(|c| c.slots.get_mut(task.slot()))
                            .map(|slot| slot.lend(false));
                        batch.lent.push(Lent { sidx, task, buf });
                        batch.lent.len() - 1
                    });
                    let digest = digests.data.then(|| {
                        let data = batch
                            .lent
                            .get(buf)
                            .and_then(|l| l.buf.as_ref())
                            .and_then(|b| b.as_slice().get(offset..offset + len))
                            .unwrap_or(&[]);
                        data_digest(data)
                    });
                    let item = ItemPayload::Task { buf, offset, len };
                    (item, DataTrailer::new(len, digest), len)
                }
            };
            batch.total += header.as_bytes().len() + len + trailer.as_bytes().len();
            batch.items.push(BatchItem {
                header,
                payload,
                trailer,
            });
        }
        batch.sent = 0;
        !batch.is_empty()
    }

    /// `n` more bytes of the connection's batch were sent; returns whether the batch is done.
    pub(crate) fn on_sent(&mut self, token: usize, n: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return true;
        };
        let Some(batch) = conn.batch.as_mut() else {
            return true;
        };
        batch.sent += n;
        if batch.sent < batch.total {
            return false;
        }
        let mut batch = core::mem::take(&mut conn.batch).unwrap_or_default();
        let touched = self.settle_batch(&mut batch);
        if let Some(conn) = self.conns.get_mut(token) {
            conn.batch = Some(batch);
        }
        if let Some(sidx) = touched {
            self.drive_session(sidx);
        }
        true
    }

    /// Gives the batch's lent buffers back to their tasks and tells the sessions the batch's
    /// task PDUs are sent (or, when a connection closes, will never be); empties the batch.
    /// Returns a session touched.
    pub(crate) fn settle_batch(&mut self, batch: &mut SendBatch) -> Option<usize> {
        let mut touched = None;
        for item in batch.items.drain(..) {
            let ItemPayload::Task { buf, .. } = item.payload else {
                continue;
            };
            let Some(l) = batch.lent.get_mut(buf) else {
                continue;
            };
            let Some(ctx) = self.sessions.get_mut(l.sidx) else {
                continue;
            };
            // The buffer goes back before the session may release the task.
            if ctx.session.task_in_slot(l.task.slot()) == Some(l.task) {
                if let Some(slot) = ctx.slots.get_mut(l.task.slot()) {
                    if slot.buf.is_none() {
                        if let Some(b) = l.buf.take() {
                            slot.restore(b, false);
                        }
                    }
                }
            }
            ctx.session.transmit_done(l.task);
            touched = Some(l.sidx);
        }
        batch.lent.clear();
        batch.total = 0;
        batch.sent = 0;
        touched
    }
}
