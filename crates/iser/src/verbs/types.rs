//! Value types of the verbs interface: access flags, scatter/gather entries,
//! work requests, work completions and their status codes (named after, and
//! numbered like, `ibv_access_flags`, `ibv_wc_status` and `ibv_wc_opcode`),
//! queue-pair states and connection-manager events.

use core::fmt;

/// Memory access rights (values of `ibv_access_flags`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(pub u32);

impl Access {
    /// No rights beyond local read.
    pub const NONE: Self = Self(0);
    /// The device may write the memory for local operations (receives, RDMA Read sinks).
    pub const LOCAL_WRITE: Self = Self(1);
    /// The peer may RDMA Write into the memory.
    pub const REMOTE_WRITE: Self = Self(2);
    /// The peer may RDMA Read the memory.
    pub const REMOTE_READ: Self = Self(4);
    /// Memory windows may be bound over the region.
    pub const MW_BIND: Self = Self(16);

    /// Whether every right in `other` is present.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any remote right is present.
    pub const fn is_remote(self) -> bool {
        self.0 & (Self::REMOTE_READ.0 | Self::REMOTE_WRITE.0) != 0
    }
}

impl core::ops::BitOr for Access {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::LOCAL_WRITE, "LOCAL_WRITE"),
            (Self::REMOTE_WRITE, "REMOTE_WRITE"),
            (Self::REMOTE_READ, "REMOTE_READ"),
            (Self::MW_BIND, "MW_BIND"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("NONE")?;
        }
        Ok(())
    }
}

/// A scatter/gather entry: `len` bytes at `addr` of the region with `lkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sge {
    /// Virtual address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Local key of the region.
    pub lkey: u32,
}

/// A remote buffer: virtual address and STag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteAddr {
    /// Virtual address at the peer.
    pub addr: u64,
    /// STag (rkey) of the peer's region or window.
    pub rkey: u32,
}

/// The operation of a send-queue work request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOp {
    /// Send: consumes one receive at the peer.
    Send,
    /// Send with Invalidate: like Send, and invalidates `rkey` at the peer.
    SendWithInvalidate {
        /// The peer's STag to invalidate.
        rkey: u32,
    },
    /// RDMA Write of the local data into the peer's memory.
    RdmaWrite {
        /// Destination at the peer.
        remote: RemoteAddr,
    },
    /// RDMA Read of the peer's memory into the local buffers.
    RdmaRead {
        /// Source at the peer.
        remote: RemoteAddr,
    },
    /// Invalidates one of this side's own STags (a memory window).
    LocalInvalidate {
        /// The STag.
        rkey: u32,
    },
}

/// A send-queue work request.
#[derive(Debug, Clone, Copy)]
pub struct SendWr<'a> {
    /// Caller's identifier, returned in the completion.
    pub wr_id: u64,
    /// The operation.
    pub op: SendOp,
    /// Local data (gathered for Send/Write, scattered for Read).
    pub sges: &'a [Sge],
    /// Whether a successful completion is reported (errors always are).
    pub signaled: bool,
}

/// Completion status (values of `ibv_wc_status`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WcStatus(pub u32);

impl WcStatus {
    /// Success.
    pub const SUCCESS: Self = Self(0);
    /// Local length error (a receive too small for the message).
    pub const LOC_LEN_ERR: Self = Self(1);
    /// Local QP operation error.
    pub const LOC_QP_OP_ERR: Self = Self(2);
    /// Local protection error (bad lkey or range in a scatter/gather entry).
    pub const LOC_PROT_ERR: Self = Self(4);
    /// Flushed: the queue pair is in the error state.
    pub const WR_FLUSH_ERR: Self = Self(5);
    /// Memory window bind error.
    pub const MW_BIND_ERR: Self = Self(6);
    /// Local access error.
    pub const LOC_ACCESS_ERR: Self = Self(8);
    /// Remote invalid request (e.g. a message longer than the receive, an
    /// invalid STag in Send with Invalidate).
    pub const REM_INV_REQ_ERR: Self = Self(9);
    /// Remote access error: wrong STag, out of range, missing rights, invalidated.
    pub const REM_ACCESS_ERR: Self = Self(10);
    /// Remote operation error.
    pub const REM_OP_ERR: Self = Self(11);
    /// Transport retry counter exceeded.
    pub const RETRY_EXC_ERR: Self = Self(12);
    /// Receiver-not-ready retry counter exceeded (no receive posted at the peer).
    pub const RNR_RETRY_EXC_ERR: Self = Self(13);
    /// General error.
    pub const GENERAL_ERR: Self = Self(21);

    /// Whether this is [`Self::SUCCESS`].
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }

    /// The `ibv_wc_status` name.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "IBV_WC_SUCCESS",
            1 => "IBV_WC_LOC_LEN_ERR",
            2 => "IBV_WC_LOC_QP_OP_ERR",
            4 => "IBV_WC_LOC_PROT_ERR",
            5 => "IBV_WC_WR_FLUSH_ERR",
            6 => "IBV_WC_MW_BIND_ERR",
            8 => "IBV_WC_LOC_ACCESS_ERR",
            9 => "IBV_WC_REM_INV_REQ_ERR",
            10 => "IBV_WC_REM_ACCESS_ERR",
            11 => "IBV_WC_REM_OP_ERR",
            12 => "IBV_WC_RETRY_EXC_ERR",
            13 => "IBV_WC_RNR_RETRY_EXC_ERR",
            21 => "IBV_WC_GENERAL_ERR",
            _ => return None,
        })
    }
}

impl fmt::Debug for WcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "WcStatus({:#x})", self.0),
        }
    }
}

impl fmt::Display for WcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Completion opcode (values of `ibv_wc_opcode`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WcOpcode(pub u32);

impl WcOpcode {
    /// Send or Send with Invalidate.
    pub const SEND: Self = Self(0);
    /// RDMA Write.
    pub const RDMA_WRITE: Self = Self(1);
    /// RDMA Read.
    pub const RDMA_READ: Self = Self(2);
    /// Memory window bind.
    pub const BIND_MW: Self = Self(5);
    /// Local invalidate.
    pub const LOCAL_INV: Self = Self(6);
    /// A receive.
    pub const RECV: Self = Self(128);
}

impl fmt::Debug for WcOpcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("SEND"),
            1 => f.write_str("RDMA_WRITE"),
            2 => f.write_str("RDMA_READ"),
            5 => f.write_str("BIND_MW"),
            6 => f.write_str("LOCAL_INV"),
            128 => f.write_str("RECV"),
            n => write!(f, "WcOpcode({n:#x})"),
        }
    }
}

/// A work completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkCompletion {
    /// The work request's identifier.
    pub wr_id: u64,
    /// Outcome.
    pub status: WcStatus,
    /// What completed (meaningful on success).
    pub opcode: WcOpcode,
    /// Bytes received (receives) or transferred.
    pub byte_len: u32,
    /// The STag the peer invalidated with Send with Invalidate (receives).
    pub invalidated_rkey: Option<u32>,
    /// The local queue pair number.
    pub qp_num: u32,
}

/// Queue-pair states (`ibv_qp_state`, the ones an RC connection passes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QpState {
    /// Created; receives may be posted.
    Init,
    /// Ready to receive.
    Rtr,
    /// Ready to send.
    Rts,
    /// Error: every outstanding and new work request is flushed.
    Err,
}

/// Sizes of a queue pair's work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpCaps {
    /// Outstanding send-queue work requests.
    pub max_send_wr: u32,
    /// Outstanding receives.
    pub max_recv_wr: u32,
    /// Scatter/gather entries per work request.
    pub max_sge: u32,
    /// RDMA Reads this side may have outstanding as requester (initiator depth).
    pub max_rd_atomic: u8,
}

impl Default for QpCaps {
    fn default() -> Self {
        Self {
            max_send_wr: 256,
            max_recv_wr: 256,
            max_sge: 4,
            max_rd_atomic: 16,
        }
    }
}

/// A connection-manager event of one queue pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmEvent {
    /// The connection is up; the peer's private data (initiator side: the
    /// target's reply).
    Established {
        /// Private data of the reply.
        private_data: Vec<u8>,
    },
    /// The target rejected the request.
    Rejected {
        /// Private data of the reject.
        private_data: Vec<u8>,
    },
    /// No listener answered at the address.
    Unreachable,
    /// The connection is down (peer disconnect or fatal error).
    Disconnected,
}

/// A verbs or connection-manager failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerbsError {
    /// The host has no RDMA device.
    #[error("no RDMA devices found")]
    NoDevices,
    /// The named device does not exist.
    #[error("RDMA device {0:?} not found")]
    DeviceNotFound(String),
    /// The address is not on an RDMA-capable interface of this device.
    #[error("address {0} is not on an RDMA device")]
    AddressNotRdma(String),
    /// Something already listens on the address.
    #[error("address {0} already in use")]
    AddrInUse(String),
    /// The work request does not fit the queue (queue full, too many SGEs).
    #[error("work queue full or too many scatter/gather entries")]
    QueueFull,
    /// The queue pair's state does not allow the operation.
    #[error("operation not allowed in queue pair state {0:?}")]
    InvalidState(QpState),
    /// The range is not inside the memory region.
    #[error("range {offset}+{len} outside a {region_len}-byte region")]
    OutOfRange {
        /// Offset requested.
        offset: usize,
        /// Length requested.
        len: usize,
        /// Length of the region.
        region_len: usize,
    },
    /// Invalid arguments (e.g. memory window rights without MW_BIND).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The handle belongs to another protection domain or fabric.
    #[error("object belongs to another protection domain")]
    WrongDomain,
    /// A system call of the verbs or CM library failed.
    #[error("{call} failed: {errno}")]
    Os {
        /// The library call.
        call: &'static str,
        /// The OS error.
        errno: String,
    },
    /// Timed out waiting for a connection-manager event.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The device lacks a capability the operation needs (e.g. type 2
    /// memory windows, which an iSER initiator uses for its STags).
    #[error("the RDMA device does not support {0}")]
    Unsupported(&'static str),
    /// The address is served by another RDMA device than the one the
    /// objects were created on.
    #[error("address {addr} is on RDMA device {device}, not on this one")]
    OtherDevice {
        /// The address.
        addr: String,
        /// The device that serves it.
        device: String,
    },
}

/// Largest AHS area a message may carry (RFC 7143 §11.2.1: 255 words).
pub const MAX_AHS: usize = rtgt_pdu::MAX_AHS_LEN;
