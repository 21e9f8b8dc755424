//! The values the engine exchanges with a logical unit: the I_T nexus (SAM-5 §4.6), the
//! command request as the transport delivered it (SAM-5 §5.1 Execute Command), and the command
//! completion with status, sense data, data-in and residual (SAM-5 §5.1, RFC 7143 §11.4.5).

use std::sync::Arc;

use crate::sense::{ScsiError, SenseData, Status};

/// The small numeric identifier the engine assigns to a live I_T nexus.
///
/// It must be unique among the nexuses alive at one time in the target; it may be reused after
/// [`crate::LogicalUnit::nexus_lost`] was called for the previous holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NexusId(pub u32);

/// An I_T nexus: an initiator port talking to a target port (SAM-5 §4.6).
///
/// Persistent reservation registrations are keyed by the port names, which survive a nexus
/// loss and re-login; unit attentions and RESERVE(6) reservations are keyed by [`NexusId`].
///
/// ```
/// use rtgt_scsi::{Nexus, NexusId};
///
/// let n = Nexus::new(NexusId(7), "iqn.1993-08.org.debian:01:abc", [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a], 1);
/// assert_eq!(&*n.initiator_port, "iqn.1993-08.org.debian:01:abc,i,0x80123456789a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexus {
    /// The engine's identifier for this nexus.
    pub id: NexusId,
    /// The SCSI initiator port name: initiator IQN + ",i,0x" + ISID in hex (RFC 7143 §10.3).
    pub initiator_port: Arc<str>,
    /// The relative target port identifier (the target portal group tag for iSCSI).
    pub target_port: u16,
}

impl Nexus {
    /// Builds a nexus from the initiator name, the ISID and the relative target port.
    pub fn new(id: NexusId, initiator_name: &str, isid: [u8; 6], target_port: u16) -> Self {
        use std::fmt::Write as _;
        let mut port = String::with_capacity(initiator_name.len() + 17);
        port.push_str(initiator_name);
        port.push_str(",i,0x");
        for b in isid {
            // Writing to a String cannot fail.
            let _ = write!(port, "{b:02x}");
        }
        Self {
            id,
            initiator_port: port.into(),
            target_port,
        }
    }
}

/// The task attribute of a command (SAM-5 §8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskAttribute {
    /// SIMPLE.
    #[default]
    Simple,
    /// ORDERED.
    Ordered,
    /// HEAD OF QUEUE.
    HeadOfQueue,
    /// ACA (not supported: NormACA is zero).
    Aca,
    /// Untagged (treated as SIMPLE).
    Untagged,
}

/// The data direction the transport announced (iSCSI R and W bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataDirection {
    /// No data transfer.
    #[default]
    None,
    /// Data-In (target to initiator).
    Read,
    /// Data-Out (initiator to target).
    Write,
    /// Both directions.
    Bidirectional,
}

/// A SCSI command as the transport delivered it.
#[derive(Debug, Clone, Copy)]
pub struct CommandRequest<'a> {
    /// The CDB bytes (the transport may pad short CDBs; bytes beyond the CDB length are ignored).
    pub cdb: &'a [u8],
    /// The task attribute.
    pub attribute: TaskAttribute,
    /// The expected data transfer length from the transport (iSCSI EDTL), in bytes.
    pub expected_len: u32,
    /// The announced data direction.
    pub direction: DataDirection,
}

impl<'a> CommandRequest<'a> {
    /// A request with a SIMPLE task attribute.
    pub fn new(cdb: &'a [u8], expected_len: u32, direction: DataDirection) -> Self {
        Self {
            cdb,
            attribute: TaskAttribute::Simple,
            expected_len,
            direction,
        }
    }

    /// Expected Data-In bytes (zero unless the direction includes Data-In).
    pub(crate) fn expected_in(&self) -> u32 {
        match self.direction {
            DataDirection::Read | DataDirection::Bidirectional => self.expected_len,
            _ => 0,
        }
    }

    /// Expected Data-Out bytes (zero unless the direction includes Data-Out).
    pub(crate) fn expected_out(&self) -> u32 {
        match self.direction {
            DataDirection::Write | DataDirection::Bidirectional => self.expected_len,
            _ => 0,
        }
    }
}

/// The residual count of a command relative to the transport's expected length
/// (RFC 7143 §11.4.5: the U and O bits and the residual count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    /// The command transferred exactly the expected length.
    #[default]
    None,
    /// The command transferred fewer bytes than expected (by this many).
    Underflow(u32),
    /// The command wanted to transfer more bytes than expected (by this many).
    Overflow(u32),
}

impl Residual {
    /// The residual of a command that wanted `wanted` bytes when `expected` were announced.
    pub fn between(wanted: u64, expected: u32) -> Self {
        let expected = u64::from(expected);
        match wanted.cmp(&expected) {
            core::cmp::Ordering::Greater => {
                Self::Overflow(u32::try_from(wanted - expected).unwrap_or(u32::MAX))
            }
            core::cmp::Ordering::Less => {
                Self::Underflow(u32::try_from(expected - wanted).unwrap_or(u32::MAX))
            }
            core::cmp::Ordering::Equal => Self::None,
        }
    }
}

/// Where the Data-In of a completed command is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataIn {
    /// No Data-In.
    #[default]
    None,
    /// The first `len` bytes of the engine's Data-In buffer (filled by the plan's reads).
    Buffer {
        /// Bytes to send.
        len: usize,
    },
    /// Data built by the logical unit (INQUIRY, MODE SENSE, ...), already cut to the expected
    /// length.
    Owned(Vec<u8>),
}

impl DataIn {
    /// The number of Data-In bytes to send.
    pub fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Buffer { len } => *len,
            Self::Owned(v) => v.len(),
        }
    }

    /// Whether there is no Data-In to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of a command: status, sense data, Data-In and residual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The SCSI status.
    pub status: Status,
    /// Sense data (autosense), present with CHECK CONDITION.
    pub sense: Option<SenseData>,
    /// The Data-In to send before the status.
    pub data_in: DataIn,
    /// The residual relative to the transport's expected length.
    pub residual: Residual,
    /// Nexuses whose tasks on this logical unit the engine must abort (PERSISTENT RESERVE OUT
    /// PREEMPT AND ABORT, SPC-5 §5.14.11.2.6), excluding the task that carried this command.
    pub abort_nexuses: Vec<NexusId>,
}

impl Completion {
    /// GOOD status with the given Data-In and residual.
    pub fn good(data_in: DataIn, residual: Residual) -> Self {
        Self {
            status: Status::GOOD,
            sense: None,
            data_in,
            residual,
            abort_nexuses: Vec::new(),
        }
    }

    /// A failed completion; `descriptor` selects descriptor-format sense data.
    pub fn error(err: &ScsiError, descriptor: bool, residual: Residual) -> Self {
        Self {
            status: err.status(),
            sense: err.sense().map(|s| s.encode(descriptor)),
            data_in: DataIn::None,
            residual,
            abort_nexuses: Vec::new(),
        }
    }

    /// TASK ABORTED status, for commands aborted by the engine.
    pub fn aborted() -> Self {
        Self {
            status: Status::TASK_ABORTED,
            sense: None,
            data_in: DataIn::None,
            residual: Residual::None,
            abort_nexuses: Vec::new(),
        }
    }
}

/// Builds a GOOD completion from parameter data the logical unit produced, cutting it to the
/// transport's expected Data-In length and computing the residual.
pub(crate) fn data_completion(mut data: Vec<u8>, request: &CommandRequest<'_>) -> Completion {
    let expected = request.expected_in();
    let residual = Residual::between(data.len() as u64, expected);
    data.truncate(expected as usize);
    Completion::good(
        if data.is_empty() {
            DataIn::None
        } else {
            DataIn::Owned(data)
        },
        residual,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_between() {
        assert_eq!(Residual::between(512, 512), Residual::None);
        assert_eq!(Residual::between(512, 200), Residual::Overflow(312));
        assert_eq!(Residual::between(512, 10000), Residual::Underflow(9488));
        assert_eq!(Residual::between(u64::MAX, 0), Residual::Overflow(u32::MAX));
    }

    #[test]
    fn data_completion_cuts_to_expected_length() {
        let req = CommandRequest::new(&[0x12, 0, 0, 0, 255, 0], 4, DataDirection::Read);
        let c = data_completion(vec![1; 36], &req);
        assert_eq!(c.data_in, DataIn::Owned(vec![1; 4]));
        assert_eq!(c.residual, Residual::Overflow(32));
        let req = CommandRequest::new(&[0x12, 0, 0, 0, 255, 0], 255, DataDirection::Read);
        let c = data_completion(vec![1; 36], &req);
        assert_eq!(c.residual, Residual::Underflow(219));
        let req = CommandRequest::new(&[0x12, 0, 0, 0, 255, 0], 255, DataDirection::Write);
        let c = data_completion(vec![1; 36], &req);
        assert_eq!(c.data_in, DataIn::None);
        assert_eq!(c.residual, Residual::Overflow(36));
    }
}
