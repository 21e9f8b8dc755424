//! What the initiator hands to its transport: an encoded BHS plus where the data segment comes
//! from (RFC 7143 §11.2 PDU layout). Payload bytes of SCSI writes stay in the caller's task
//! buffers: a PDU names the task slot and the byte range instead of carrying a copy, so the
//! caller can send header and payload in one vectored write. Data-Out sequences (§11.7,
//! unsolicited per §4.2.5.2/§13.10–§13.14, solicited per R2T §11.8) are generated one PDU at a
//! time from a compact descriptor.

use rtgt_pdu::{BHS_LEN, BhsLengths, DataOut, Lun, Sn, Ttt};

use super::task::TaskId;

/// Where the data segment of an outgoing PDU comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutData {
    /// No data segment.
    #[default]
    None,
    /// `len` bytes of the caller's buffer for `task`, starting at `offset`.
    Task {
        /// The task whose buffer holds the bytes.
        task: TaskId,
        /// Offset into that buffer.
        offset: u32,
        /// Number of bytes.
        len: u32,
    },
    /// Bytes owned by the PDU (text, login and control traffic; never per IO).
    Owned(Vec<u8>),
}

impl OutData {
    /// Length of the data segment (padding excluded).
    pub fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Task { len, .. } => *len as usize,
            Self::Owned(v) => v.len(),
        }
    }

    /// Whether there is no data segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One PDU to send: its BHS (lengths filled in) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPdu {
    /// The 48-byte BHS, ready for the wire (header digest not included).
    pub bhs: [u8; BHS_LEN],
    /// The data segment.
    pub data: OutData,
}

/// A Data-Out sequence still to be sent, one PDU per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataOutSeq {
    pub task: TaskId,
    pub lun: Lun,
    pub ttt: Ttt,
    /// Next byte to send.
    pub offset: u32,
    /// End of the sequence (exclusive).
    pub end: u32,
    /// DataSN of the next PDU (restarts at 0 for each R2T's sequence, §11.7.5).
    pub data_sn: u32,
    /// Whether this answers an R2T (else it is the unsolicited burst).
    pub solicited: bool,
}

impl DataOutSeq {
    /// Produces the next Data-Out PDU of at most `max_len` bytes; returns it and whether the
    /// sequence is finished.
    pub(crate) fn next_pdu(&mut self, max_len: u32, exp_stat_sn: Sn) -> (OutPdu, bool) {
        let len = (self.end - self.offset).min(max_len.max(1));
        let done = self.offset + len >= self.end;
        let hdr = DataOut {
            final_pdu: done,
            lun: self.lun,
            itt: self.task.itt(),
            ttt: self.ttt,
            exp_stat_sn,
            data_sn: Sn(self.data_sn),
            buffer_offset: self.offset,
        };
        let pdu = OutPdu {
            bhs: hdr.encode(BhsLengths::data_bounded(len)),
            data: OutData::Task {
                task: self.task,
                offset: self.offset,
                len,
            },
        };
        self.offset += len;
        self.data_sn = self.data_sn.wrapping_add(1);
        (pdu, done)
    }
}

/// An entry of a connection's transmit queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// A complete PDU.
    Pdu(OutPdu),
    /// A Data-Out sequence.
    Data(DataOutSeq),
}
