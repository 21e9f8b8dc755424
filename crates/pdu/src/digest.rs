//! CRC32C header and data digests (RFC 7143 §7.8 and §13.1; test vectors in
//! RFC 3720 Appendix B.4, carried over by RFC 7143).
//!
//! The header digest covers the BHS and AHS; the data digest covers the data
//! segment and its padding. Both use the `crc32c` crate, which selects the
//! SSE4.2 `crc32` instruction (three interleaved streams) at run time on
//! x86-64 and the ARMv8 CRC instructions on aarch64.
//!
//! # Byte order on the wire
//!
//! The 32-bit CRC value is transmitted least-significant byte first: the CRC
//! of 32 zero bytes, `0x8a9136aa`, travels as `aa 36 91 8a` (RFC 3720 B.4
//! lists the bytes in that order). Linux (open-iscsi, LIO), tgt and libiscsi
//! do the same; `tests/golden.rs` pins it against PDUs captured from a libiscsi
//! login to tgt with digests on.

use crate::bhs::{BHS_LEN, DIGEST_LEN, pad_len};

/// CRC32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC32C over `data`, for digesting data while it is copied.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// The header digest of a BHS followed by its (already padded) AHS area.
#[inline]
pub fn header_digest(bhs: &[u8; BHS_LEN], ahs: &[u8]) -> u32 {
    crc32c_append(crc32c(bhs), ahs)
}

/// The data digest of a data segment: CRC32C over the data and its padding.
#[inline]
pub fn data_digest(data: &[u8]) -> u32 {
    let mut d = DataDigest::new();
    d.update(data);
    d.finish()
}

/// The four wire bytes of a digest value (least-significant byte first).
#[inline]
pub const fn digest_to_wire(digest: u32) -> [u8; DIGEST_LEN] {
    digest.to_le_bytes()
}

/// The digest value of four wire bytes.
#[inline]
pub const fn digest_from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// Incremental data digest: feed the data segment in any number of pieces,
/// then [`finish`](DataDigest::finish) adds the padding.
///
/// ```
/// use rtgt_pdu::{DataDigest, data_digest};
///
/// let data = b"iSCSI data segment";
/// let mut d = DataDigest::new();
/// d.update(&data[..5]);
/// d.update(&data[5..]);
/// assert_eq!(d.finish(), data_digest(data));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataDigest {
    crc: u32,
    len: usize,
}

impl DataDigest {
    /// A digest over zero bytes.
    #[inline]
    pub const fn new() -> Self {
        Self { crc: 0, len: 0 }
    }

    /// Adds `data` to the digest.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.crc = crc32c_append(self.crc, data);
        self.len += data.len();
    }

    /// Bytes digested so far (padding excluded).
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was digested yet.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The data digest: the CRC continued over the segment's padding.
    #[inline]
    pub fn finish(&self) -> u32 {
        crc32c_append(self.crc, &[0u8; 3][..pad_len(self.len)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 Appendix B.4 vectors, with the CRC bytes as listed there.
    #[test]
    fn rfc3720_b4_vectors() {
        let ascending: Vec<u8> = (0u8..32).collect();
        let descending: Vec<u8> = (0u8..32).rev().collect();
        let cases: [(&[u8], [u8; 4]); 4] = [
            (&[0u8; 32], [0xaa, 0x36, 0x91, 0x8a]),
            (&[0xffu8; 32], [0x43, 0xab, 0xa8, 0x62]),
            (&ascending, [0x4e, 0x79, 0xdd, 0x46]),
            (&descending, [0x5c, 0xdb, 0x3f, 0x11]),
        ];
        for (data, wire) in cases {
            assert_eq!(digest_to_wire(crc32c(data)), wire);
            assert_eq!(digest_from_wire(wire), crc32c(data));
        }
    }

    /// RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU.
    #[test]
    fn rfc3720_b4_read10_pdu() {
        let bhs: [u8; 48] = [
            0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
            0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            digest_to_wire(header_digest(&bhs, &[])),
            [0x56, 0x3a, 0x96, 0xd9]
        );
    }

    #[test]
    fn data_digest_includes_padding() {
        let data = [1u8, 2, 3, 4, 5];
        assert_eq!(data_digest(&data), crc32c(&[1, 2, 3, 4, 5, 0, 0, 0]));
        assert_eq!(data_digest(&data[..4]), crc32c(&data[..4]));
        let mut d = DataDigest::new();
        assert!(d.is_empty());
        for b in data {
            d.update(&[b]);
        }
        assert_eq!(d.len(), 5);
        assert_eq!(d.finish(), data_digest(&data));
    }
}
