//! Sending: batches of PDUs (header + header digest, payload borrowed from the task buffer,
//! padding + data digest) leave in one vectored send (RFC 7143 §11.2, §7.8); the data digest
//! is computed over the task buffer while the batch is built.

use rtgt_pdu::{DataTrailer, Digests, EncodedHeader, data_digest};
use rtgt_session::target::{Payload, TaskId};

use super::core::{Core, Life, MAX_BATCH, Phase};
use super::sessions::SessionCtx;
use super::slab::Slab;

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
    Task {
        sidx: usize,
        task: TaskId,
        offset: usize,
        len: usize,
    },
}

/// PDUs handed to the socket together.
#[derive(Default)]
pub(crate) struct SendBatch {
    pub items: Vec<BatchItem>,
    pub total: usize,
    pub sent: usize,
}

impl SendBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Core {
    /// Prepares the next send batch of a connection when it has none; returns whether there
    /// is something to send.
    pub(crate) fn next_batch(&mut self, token: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        if !conn.batch.is_empty() {
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
        while conn.batch.items.len() < MAX_BATCH {
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
                    let digest = if digests.data {
                        let data = sidx
                            .and_then(|s| self.sessions.get(s))
                            .and_then(|c| c.slots.get(task.slot()))
                            .and_then(|s| s.buf.as_slice().get(offset..offset + len))
                            .unwrap_or(&[]);
                        Some(data_digest(data))
                    } else {
                        None
                    };
                    let item = ItemPayload::Task {
                        sidx: sidx.unwrap_or(usize::MAX),
                        task,
                        offset,
                        len,
                    };
                    (item, DataTrailer::new(len, digest), len)
                }
            };
            conn.batch.total += header.as_bytes().len() + len + trailer.as_bytes().len();
            conn.batch.items.push(BatchItem {
                header,
                payload,
                trailer,
            });
        }
        conn.batch.sent = 0;
        !conn.batch.is_empty()
    }

    /// The bytes of one batch item's data segment.
    pub(crate) fn payload_bytes<'a>(
        sessions: &'a Slab<SessionCtx>,
        item: &'a BatchItem,
    ) -> &'a [u8] {
        match &item.payload {
            ItemPayload::None => &[],
            ItemPayload::Owned(v) => v,
            ItemPayload::Task {
                sidx,
                task,
                offset,
                len,
            } => sessions
                .get(*sidx)
                .and_then(|c| c.slots.get(task.slot()))
                .and_then(|s| s.buf.as_slice().get(*offset..*offset + *len))
                .unwrap_or(&[]),
        }
    }

    /// `n` more bytes of the connection's batch were sent; returns whether the batch is done.
    pub(crate) fn on_sent(&mut self, token: usize, n: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return true;
        };
        conn.batch.sent += n;
        if conn.batch.sent < conn.batch.total {
            return false;
        }
        let mut touched: Option<usize> = None;
        for item in conn.batch.items.drain(..) {
            if let ItemPayload::Task { sidx, task, .. } = item.payload {
                if let Some(ctx) = self.sessions.get_mut(sidx) {
                    ctx.session.transmit_done(task);
                    touched = Some(sidx);
                }
            }
        }
        conn.batch.total = 0;
        conn.batch.sent = 0;
        if let Some(sidx) = touched {
            self.drive_session(sidx);
        }
        true
    }

    // ------------------------------------------------------------------ closing
}
