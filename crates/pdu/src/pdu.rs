//! Whole PDUs and their wire encoding (RFC 7143 §11.1–§11.2): BHS, AHS,
//! optional header digest, data segment, padding, optional data digest.
//!
//! [`Pdu`] owns its AHS and data and suits login, text and control traffic
//! and tests. The per-IO fast path instead encodes the header into an
//! [`EncodedHeader`] (a fixed array) and leaves the payload where it is,
//! appending a [`DataTrailer`] (padding and data digest) in the same
//! vectored send.

use crate::ahs::Ahs;
use crate::bhs::{BHS_LEN, BhsLengths, DIGEST_LEN, pad_len, padded_len};
use crate::digest::{
    DataDigest, crc32c, crc32c_append, digest_from_wire, digest_to_wire, header_digest,
};
use crate::error::{EncodeError, PduError};
use crate::header::PduHeader;

/// Which CRC32C digests are in force on a connection (negotiated by
/// HeaderDigest/DataDigest, RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    /// Header digest after BHS+AHS.
    pub header: bool,
    /// Data digest after the padded data segment.
    pub data: bool,
}

impl Digests {
    /// No digests (the login-phase setting).
    pub const NONE: Self = Self {
        header: false,
        data: false,
    };
    /// Both digests.
    pub const BOTH: Self = Self {
        header: true,
        data: true,
    };
}

/// A complete PDU with owned AHS and data.
///
/// ```
/// use rtgt_pdu::{Digests, Itt, NopOut, Pdu, Sn, Ttt};
///
/// let pdu = Pdu::with_data(
///     NopOut { itt: Itt(1), ttt: Ttt::RESERVED, cmd_sn: Sn(1), ..Default::default() },
///     b"ping".to_vec(),
/// );
/// let mut wire = Vec::new();
/// pdu.encode(Digests::BOTH, &mut wire)?;
/// assert_eq!(wire.len(), 48 + 4 + 4 + 4);
/// assert_eq!(Pdu::decode(&wire, Digests::BOTH)?, pdu);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The typed BHS.
    pub header: PduHeader,
    /// Additional header segments (SCSI Command only, in practice).
    pub ahs: Vec<Ahs>,
    /// The data segment, without padding.
    pub data: Vec<u8>,
}

impl Pdu {
    /// A PDU without AHS or data.
    pub fn new(header: impl Into<PduHeader>) -> Self {
        Self {
            header: header.into(),
            ahs: Vec::new(),
            data: Vec::new(),
        }
    }

    /// A PDU with a data segment.
    pub fn with_data(header: impl Into<PduHeader>, data: Vec<u8>) -> Self {
        Self {
            header: header.into(),
            ahs: Vec::new(),
            data,
        }
    }

    /// The BHS length fields this PDU encodes with.
    pub fn lengths(&self) -> Result<BhsLengths, EncodeError> {
        BhsLengths::new(Ahs::total_len(&self.ahs), self.data.len())
    }

    /// Bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self, digests: Digests) -> usize {
        let mut n = BHS_LEN + Ahs::total_len(&self.ahs) + padded_len(self.data.len());
        if digests.header {
            n += DIGEST_LEN;
        }
        if digests.data && !self.data.is_empty() {
            n += DIGEST_LEN;
        }
        n
    }

    /// Appends the wire form to `out`. A data digest is only sent when the
    /// data segment is not empty (RFC 7143 §11.2.3).
    pub fn encode(&self, digests: Digests, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let lengths = self.lengths()?;
        out.reserve(self.encoded_len(digests));
        let start = out.len();
        out.extend_from_slice(&self.header.encode(lengths));
        Ahs::encode_all(&self.ahs, out)?;
        if digests.header {
            let hdr = out.get(start..).unwrap_or(&[]);
            let (bhs, ahs) = hdr
                .split_first_chunk::<BHS_LEN>()
                .unwrap_or((&[0; BHS_LEN], &[]));
            let d = header_digest(bhs, ahs);
            out.extend_from_slice(&digest_to_wire(d));
        }
        if !self.data.is_empty() {
            out.extend_from_slice(&self.data);
            out.extend_from_slice(crate::bhs::padding(self.data.len()));
            if digests.data {
                let mut d = DataDigest::new();
                d.update(&self.data);
                out.extend_from_slice(&digest_to_wire(d.finish()));
            }
        }
        Ok(())
    }

    /// The wire form in a new buffer.
    pub fn to_bytes(&self, digests: Digests) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(digests, &mut v)?;
        Ok(v)
    }

    /// Decodes exactly one PDU occupying all of `bytes` (digests verified,
    /// trailing bytes refused). For streams use [`crate::Framer`].
    pub fn decode(bytes: &[u8], digests: Digests) -> Result<Self, PduError> {
        let (bhs, rest) = bytes
            .split_first_chunk::<BHS_LEN>()
            .ok_or(PduError::Truncated {
                need: BHS_LEN,
                have: bytes.len(),
            })?;
        let lengths = BhsLengths::from_bhs(bhs);
        let ahs_len = lengths.ahs_len();
        let data_len = lengths.data_len() as usize;
        let mut need = BHS_LEN + ahs_len + padded_len(data_len);
        if digests.header {
            need += DIGEST_LEN;
        }
        if digests.data && data_len > 0 {
            need += DIGEST_LEN;
        }
        if bytes.len() < need {
            return Err(PduError::Truncated {
                need,
                have: bytes.len(),
            });
        }
        if bytes.len() > need {
            return Err(PduError::TrailingBytes(bytes.len() - need));
        }
        let (ahs_raw, mut rest) = rest.split_at(ahs_len);
        if digests.header {
            let (d, r) = rest
                .split_first_chunk::<DIGEST_LEN>()
                .ok_or(PduError::Truncated {
                    need,
                    have: bytes.len(),
                })?;
            let received = digest_from_wire(*d);
            let computed = header_digest(bhs, ahs_raw);
            if received != computed {
                return Err(PduError::HeaderDigest { received, computed });
            }
            rest = r;
        }
        let header = PduHeader::decode(bhs)?;
        let ahs = Ahs::decode_all(ahs_raw)?;
        let (data, rest) = rest.split_at(data_len);
        let (pad, rest) = rest.split_at(pad_len(data_len));
        if digests.data && data_len > 0 {
            let d = rest
                .first_chunk::<DIGEST_LEN>()
                .ok_or(PduError::Truncated {
                    need,
                    have: bytes.len(),
                })?;
            let received = digest_from_wire(*d);
            // The digest covers the padding bytes as received.
            let computed = crc32c_append(crc32c(data), pad);
            if received != computed {
                return Err(PduError::DataDigest { received, computed });
            }
        }
        Ok(Self {
            header,
            ahs,
            data: data.to_vec(),
        })
    }
}

/// A BHS with its optional header digest, in a fixed array: what the fast
/// path writes before a payload it leaves in place. PDUs with AHS use
/// [`Pdu::encode`] instead.
///
/// ```
/// use rtgt_pdu::{BhsLengths, DataIn, EncodedHeader, Itt};
///
/// let bhs = DataIn { itt: Itt(3), ..Default::default() }.encode(BhsLengths::data_bounded(512));
/// let h = EncodedHeader::new(&bhs, true);
/// assert_eq!(h.as_bytes().len(), 52);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    buf: [u8; BHS_LEN + DIGEST_LEN],
    len: u8,
}

impl EncodedHeader {
    /// Copies `bhs` and appends its CRC32C if `header_digest`.
    #[inline]
    pub fn new(bhs: &[u8; BHS_LEN], header_digest: bool) -> Self {
        let mut buf = [0u8; BHS_LEN + DIGEST_LEN];
        buf[..BHS_LEN].copy_from_slice(bhs);
        let mut len = BHS_LEN;
        if header_digest {
            buf[BHS_LEN..].copy_from_slice(&digest_to_wire(crc32c(bhs)));
            len += DIGEST_LEN;
        }
        Self {
            buf,
            len: len as u8,
        }
    }

    /// The bytes to send.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&self.buf)
    }
}

impl core::fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EncodedHeader({:02x?})", self.as_bytes())
    }
}

/// What follows a data segment on the wire: 0–3 padding bytes and the
/// optional data digest, in a fixed array.
///
/// ```
/// use rtgt_pdu::{DataDigest, DataTrailer, data_digest};
///
/// let payload = [7u8; 510];
/// let mut d = DataDigest::new();
/// d.update(&payload); // e.g. while copying the payload into place
/// let t = DataTrailer::new(payload.len(), Some(d.finish()));
/// assert_eq!(t.as_bytes().len(), 2 + 4);
/// assert_eq!(t.as_bytes()[2..], data_digest(&payload).to_le_bytes());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DataTrailer {
    buf: [u8; 3 + DIGEST_LEN],
    len: u8,
}

impl DataTrailer {
    /// Padding for a `data_len`-byte segment followed by `digest` (the value
    /// from [`DataDigest::finish`]) if data digests are on. An empty segment
    /// has neither padding nor digest.
    #[inline]
    pub fn new(data_len: usize, digest: Option<u32>) -> Self {
        let mut buf = [0u8; 3 + DIGEST_LEN];
        let mut len = pad_len(data_len);
        if let (Some(d), true) = (digest, data_len > 0) {
            buf[len..len + DIGEST_LEN].copy_from_slice(&digest_to_wire(d));
            len += DIGEST_LEN;
        }
        Self {
            buf,
            len: len as u8,
        }
    }

    /// Computes the trailer of `data`, digesting it if `data_digest`.
    pub fn for_data(data: &[u8], data_digest: bool) -> Self {
        Self::new(
            data.len(),
            data_digest.then(|| crate::digest::data_digest(data)),
        )
    }

    /// The bytes to send after the data.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&self.buf)
    }
}

impl core::fmt::Debug for DataTrailer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DataTrailer({:02x?})", self.as_bytes())
    }
}
