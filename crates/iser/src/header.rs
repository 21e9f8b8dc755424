//! The iSER header (RFC 7145 §9.2 for iSCSI control-type PDUs, §9.3 iSER
//! Hello, §9.4 iSER HelloReply) and the private data of the RDMA-CM
//! connection request/reply (InfiniBand Annex A12, as used by Linux
//! ib_iser/ib_isert).
//!
//! Every iSER message starts with a 28-byte header: one flags byte whose
//! high nibble is the opcode (1 control-type PDU, 2 Hello, 3 HelloReply),
//! three reserved bytes, then the Write STag and Write Base Offset and the
//! Read STag and Read Base Offset (big-endian), valid when the WSV/RSV flags
//! are set. A control-type PDU's BHS, AHS and data segment follow.

use crate::error::ProtocolError;

/// Length of the iSER header.
pub const ISER_HEADER_LEN: usize = 28;
/// Length of the iSER header plus the BHS.
pub const ISER_PDU_HEADER_LEN: usize = ISER_HEADER_LEN + rtgt_pdu::BHS_LEN;

/// iSER opcode: iSCSI control-type PDU.
const OP_CONTROL: u8 = 0x1;
/// iSER opcode: Hello.
const OP_HELLO: u8 = 0x2;
/// iSER opcode: HelloReply.
const OP_HELLO_REPLY: u8 = 0x3;
/// Write STag Valid.
const WSV: u8 = 0x08;
/// Read STag Valid.
const RSV: u8 = 0x04;
/// Reject flag of HelloReply.
const REJ: u8 = 0x01;

/// The iSER protocol version this implementation speaks (RFC 7145 §9.3: 10).
pub const ISER_VERSION: u8 = 10;

/// An STag and base offset advertised in the iSER header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stag {
    /// The STag (rkey of a region or memory window).
    pub stag: u32,
    /// The base offset (virtual address; zero-based addressing is not used).
    pub va: u64,
}

/// The iSER header of an iSCSI control-type PDU (§9.2).
///
/// ```
/// use rtgt_iser::header::{IserHeader, Stag};
///
/// let h = IserHeader { write: None, read: Some(Stag { stag: 0x1234, va: 0x1000 }) };
/// let b = h.encode();
/// assert_eq!(b[0], 0x14); // control-type PDU, RSV
/// assert_eq!(b[16..20], [0, 0, 0x12, 0x34]);
/// assert_eq!(IserHeader::decode(&b)?, h);
/// # Ok::<(), rtgt_iser::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IserHeader {
    /// Write STag (WSV): where the target RDMA-Reads solicited write data.
    pub write: Option<Stag>,
    /// Read STag (RSV): where the target RDMA-Writes read data.
    pub read: Option<Stag>,
}

impl IserHeader {
    /// Encodes the 28-byte header.
    pub fn encode(&self) -> [u8; ISER_HEADER_LEN] {
        let mut b = [0u8; ISER_HEADER_LEN];
        b[0] = OP_CONTROL << 4;
        if let Some(w) = self.write {
            b[0] |= WSV;
            b[4..8].copy_from_slice(&w.stag.to_be_bytes());
            b[8..16].copy_from_slice(&w.va.to_be_bytes());
        }
        if let Some(r) = self.read {
            b[0] |= RSV;
            b[16..20].copy_from_slice(&r.stag.to_be_bytes());
            b[20..28].copy_from_slice(&r.va.to_be_bytes());
        }
        b
    }

    /// Decodes the header of a control-type PDU; other iSER opcodes are
    /// [`ProtocolError::UnexpectedIserOpcode`].
    pub fn decode(b: &[u8; ISER_HEADER_LEN]) -> Result<Self, ProtocolError> {
        let op = b[0] >> 4;
        if op != OP_CONTROL {
            return Err(ProtocolError::UnexpectedIserOpcode(op));
        }
        let stag = |at: usize| {
            let mut s = [0u8; 4];
            let mut v = [0u8; 8];
            s.copy_from_slice(&b[at..at + 4]);
            v.copy_from_slice(&b[at + 4..at + 12]);
            Stag {
                stag: u32::from_be_bytes(s),
                va: u64::from_be_bytes(v),
            }
        };
        Ok(Self {
            write: (b[0] & WSV != 0).then(|| stag(4)),
            read: (b[0] & RSV != 0).then(|| stag(16)),
        })
    }
}

/// The iSER message kinds (opcode nibble of byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An iSCSI control-type PDU follows.
    Control,
    /// iSER Hello.
    Hello,
    /// iSER HelloReply.
    HelloReply,
}

impl MessageKind {
    /// Classifies a message by its first byte.
    pub fn of(first: u8) -> Result<Self, ProtocolError> {
        match first >> 4 {
            OP_CONTROL => Ok(Self::Control),
            OP_HELLO => Ok(Self::Hello),
            OP_HELLO_REPLY => Ok(Self::HelloReply),
            op => Err(ProtocolError::UnexpectedIserOpcode(op)),
        }
    }
}

/// iSER Hello (§9.3), sent by the initiator: its version range and iSER-IRD
/// (the RDMA Reads it can serve as responder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Highest version supported.
    pub max_version: u8,
    /// Lowest version supported.
    pub min_version: u8,
    /// iSER-IRD.
    pub ird: u16,
}

impl Hello {
    /// Encodes the message (a full 28-byte iSER header).
    pub fn encode(&self) -> [u8; ISER_HEADER_LEN] {
        let mut b = [0u8; ISER_HEADER_LEN];
        b[0] = OP_HELLO << 4;
        b[1] = (self.max_version << 4) | (self.min_version & 0x0f);
        b[2..4].copy_from_slice(&self.ird.to_be_bytes());
        b
    }

    /// Decodes a Hello.
    pub fn decode(b: &[u8]) -> Result<Self, ProtocolError> {
        let b = b.get(..4).ok_or(ProtocolError::ShortMessage(b.len()))?;
        if b[0] >> 4 != OP_HELLO {
            return Err(ProtocolError::UnexpectedIserOpcode(b[0] >> 4));
        }
        Ok(Self {
            max_version: b[1] >> 4,
            min_version: b[1] & 0x0f,
            ird: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

/// iSER HelloReply (§9.4), sent by the target: accept (with the version
/// chosen and iSER-ORD) or reject (with the highest version it supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloReply {
    /// The target rejects the connection (no common version).
    pub reject: bool,
    /// Highest version the target supports.
    pub max_version: u8,
    /// The version in use (when not rejecting).
    pub current_version: u8,
    /// iSER-ORD: RDMA Reads the target will have outstanding.
    pub ord: u16,
}

impl HelloReply {
    /// Encodes the message (a full 28-byte iSER header).
    pub fn encode(&self) -> [u8; ISER_HEADER_LEN] {
        let mut b = [0u8; ISER_HEADER_LEN];
        b[0] = (OP_HELLO_REPLY << 4) | if self.reject { REJ } else { 0 };
        b[1] = (self.max_version << 4) | (self.current_version & 0x0f);
        b[2..4].copy_from_slice(&self.ord.to_be_bytes());
        b
    }

    /// Decodes a HelloReply.
    pub fn decode(b: &[u8]) -> Result<Self, ProtocolError> {
        let b = b.get(..4).ok_or(ProtocolError::ShortMessage(b.len()))?;
        if b[0] >> 4 != OP_HELLO_REPLY {
            return Err(ProtocolError::UnexpectedIserOpcode(b[0] >> 4));
        }
        Ok(Self {
            reject: b[0] & REJ != 0,
            max_version: b[1] >> 4,
            current_version: b[1] & 0x0f,
            ord: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The target's answer to `hello`: accept version 10 if the initiator's
    /// range contains it, else reject (§5.1.3 / §9.4).
    pub fn answer(hello: &Hello, ord: u16) -> Self {
        let ok = hello.min_version <= ISER_VERSION && ISER_VERSION <= hello.max_version;
        Self {
            reject: !ok,
            max_version: ISER_VERSION,
            current_version: if ok { ISER_VERSION } else { 0 },
            ord: if ok { ord.min(hello.ird) } else { 0 },
        }
    }
}

/// Length of the CM private data header.
pub const CM_HEADER_LEN: usize = 4;
/// CM flag: the sender does not support zero-based virtual addresses.
const CM_ZBVA_NOT_SUPPORTED: u8 = 0x80;
/// CM flag: the sender does not support (initiator) or will not use (target)
/// Send with Invalidate.
const CM_SEND_INV_NOT_SUPPORTED: u8 = 0x40;

/// The iSER private data of the RDMA-CM request (initiator) and reply
/// (target): what each side supports.
///
/// ```
/// use rtgt_iser::header::CmPrivateData;
///
/// let p = CmPrivateData { zero_based_va: false, send_with_invalidate: true };
/// assert_eq!(p.encode(), [0x80, 0, 0, 0]);
/// assert_eq!(CmPrivateData::decode(&[0xc0, 0, 0, 0]).send_with_invalidate, false);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmPrivateData {
    /// Zero-based virtual addressing supported (rtgt: never).
    pub zero_based_va: bool,
    /// Send with Invalidate supported (initiator) / used (target).
    pub send_with_invalidate: bool,
}

impl CmPrivateData {
    /// Encodes the 4-byte header.
    pub fn encode(&self) -> [u8; CM_HEADER_LEN] {
        let mut f = 0;
        if !self.zero_based_va {
            f |= CM_ZBVA_NOT_SUPPORTED;
        }
        if !self.send_with_invalidate {
            f |= CM_SEND_INV_NOT_SUPPORTED;
        }
        [f, 0, 0, 0]
    }

    /// Decodes private data. Missing private data (older initiators send
    /// none) means: no zero-based addressing, no Send with Invalidate.
    pub fn decode(b: &[u8]) -> Self {
        match b.first() {
            Some(&f) => Self {
                zero_based_va: f & CM_ZBVA_NOT_SUPPORTED == 0,
                send_with_invalidate: f & CM_SEND_INV_NOT_SUPPORTED == 0,
            },
            None => Self {
                zero_based_va: false,
                send_with_invalidate: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_header_exact_bytes() {
        let h = IserHeader {
            write: Some(Stag {
                stag: 0x0102_0304,
                va: 0x1122_3344_5566_7788,
            }),
            read: Some(Stag {
                stag: 0xa0b0_c0d0,
                va: 0x0000_7fff_0000_1000,
            }),
        };
        let b = h.encode();
        assert_eq!(
            b,
            [
                0x1c, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                0x88, 0xa0, 0xb0, 0xc0, 0xd0, 0, 0, 0x7f, 0xff, 0, 0, 0x10, 0
            ]
        );
        assert_eq!(IserHeader::decode(&b).unwrap(), h);
        let plain = IserHeader::default().encode();
        assert_eq!(plain[0], 0x10);
        assert!(plain[1..].iter().all(|&x| x == 0));
    }

    #[test]
    fn stags_without_valid_bits_are_ignored() {
        let mut b = IserHeader::default().encode();
        b[4] = 0xff; // junk in the write STag without WSV
        assert_eq!(IserHeader::decode(&b).unwrap(), IserHeader::default());
    }

    #[test]
    fn hello_and_reply_bytes() {
        let h = Hello {
            max_version: 10,
            min_version: 10,
            ird: 16,
        };
        let b = h.encode();
        assert_eq!(b[..4], [0x20, 0xaa, 0x00, 0x10]);
        assert_eq!(Hello::decode(&b).unwrap(), h);
        let r = HelloReply::answer(&h, 4);
        assert_eq!(r.encode()[..4], [0x30, 0xaa, 0x00, 0x04]);
        let old = Hello {
            max_version: 9,
            min_version: 9,
            ird: 1,
        };
        let rej = HelloReply::answer(&old, 4);
        assert!(rej.reject);
        assert_eq!(rej.encode()[..4], [0x31, 0xa0, 0, 0]);
        assert_eq!(HelloReply::decode(&rej.encode()).unwrap(), rej);
    }

    #[test]
    fn wrong_opcodes_and_short_messages_are_errors() {
        assert_eq!(
            IserHeader::decode(
                &Hello {
                    max_version: 10,
                    min_version: 10,
                    ird: 0
                }
                .encode()
            ),
            Err(ProtocolError::UnexpectedIserOpcode(2))
        );
        assert_eq!(
            Hello::decode(&[0x20, 0xaa]),
            Err(ProtocolError::ShortMessage(2))
        );
        assert_eq!(
            MessageKind::of(0x50),
            Err(ProtocolError::UnexpectedIserOpcode(5))
        );
        assert_eq!(MessageKind::of(0x14), Ok(MessageKind::Control));
    }

    #[test]
    fn cm_private_data_defaults_to_conservative() {
        let none = CmPrivateData::decode(&[]);
        assert!(!none.send_with_invalidate && !none.zero_based_va);
        let linux_no_inv = CmPrivateData::decode(&[0xc0, 0, 0, 0]);
        assert!(!linux_no_inv.send_with_invalidate);
        let linux_inv = CmPrivateData::decode(&[0x80, 0, 0, 0]);
        assert!(linux_inv.send_with_invalidate && !linux_inv.zero_based_va);
    }
}
