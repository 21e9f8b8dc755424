//! Basic Header Segment framing constants and the two length fields every
//! PDU carries in bytes 4–7 (RFC 7143 §11.2.1: TotalAHSLength in 4-byte
//! words, DataSegmentLength in bytes, 24 bits), plus data-segment padding to
//! a 4-byte boundary (§11.2.3).

use crate::error::EncodeError;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Length of a CRC32C header or data digest.
pub const DIGEST_LEN: usize = 4;
/// Largest possible AHS area: TotalAHSLength is one byte counting words.
pub const MAX_AHS_LEN: usize = 255 * 4;
/// Largest value of the 24-bit DataSegmentLength field.
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00ff_ffff;
/// Limit on AHS plus data while the login phase is in progress: the default
/// MaxRecvDataSegmentLength (RFC 7143 §13.12).
pub const LOGIN_SEGMENT_LIMIT: u32 = 8192;
/// Largest header a framer buffers: BHS, the largest AHS and a header digest.
pub const MAX_HEADER_LEN: usize = BHS_LEN + MAX_AHS_LEN + DIGEST_LEN;

/// Zero bytes used to pad a data segment.
const ZERO_PAD: [u8; 3] = [0; 3];

/// Number of padding bytes that follow a data segment of `len` bytes (0–3).
#[inline]
pub const fn pad_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

/// `len` rounded up to a multiple of four.
#[inline]
pub const fn padded_len(len: usize) -> usize {
    len + pad_len(len)
}

/// The zero padding that follows a data segment of `len` bytes.
///
/// ```
/// assert_eq!(rtgt_pdu::padding(5), &[0, 0, 0]);
/// assert!(rtgt_pdu::padding(8).is_empty());
/// ```
#[inline]
pub fn padding(len: usize) -> &'static [u8] {
    ZERO_PAD.get(..pad_len(len)).unwrap_or(&[])
}

/// The TotalAHSLength and DataSegmentLength of a PDU (BHS bytes 4–7).
///
/// Constructed with a range check, so encoding never truncates a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BhsLengths {
    ahs_words: u8,
    data_len: u32,
}

impl BhsLengths {
    /// No AHS and no data segment.
    pub const ZERO: Self = Self {
        ahs_words: 0,
        data_len: 0,
    };

    /// Lengths for `ahs_len` bytes of AHS (rounded up to whole words) and a
    /// data segment of `data_len` bytes (padding excluded).
    pub const fn new(ahs_len: usize, data_len: usize) -> Result<Self, EncodeError> {
        if ahs_len > MAX_AHS_LEN {
            return Err(EncodeError::AhsTooLong(ahs_len));
        }
        if data_len > MAX_DATA_SEGMENT_LEN as usize {
            return Err(EncodeError::DataSegmentTooLong(data_len));
        }
        Ok(Self {
            ahs_words: ahs_len.div_ceil(4) as u8,
            data_len: data_len as u32,
        })
    }

    /// Lengths for a PDU without AHS and with `data_len` bytes of data.
    pub const fn data(data_len: usize) -> Result<Self, EncodeError> {
        Self::new(0, data_len)
    }

    /// Lengths for a PDU without AHS and a data segment of `data_len` bytes,
    /// clamped to the 24-bit field. For callers whose length is already bounded
    /// by a negotiated MaxRecvDataSegmentLength (at most 2^24 - 1 by RFC 7143
    /// §13.12), so the clamp never takes effect.
    #[inline]
    pub const fn data_bounded(data_len: u32) -> Self {
        let data_len = if data_len > MAX_DATA_SEGMENT_LEN {
            MAX_DATA_SEGMENT_LEN
        } else {
            data_len
        };
        Self {
            ahs_words: 0,
            data_len,
        }
    }

    /// Reads bytes 4–7 of a BHS.
    #[inline]
    pub const fn from_bhs(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            ahs_words: bhs[4],
            data_len: u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]),
        }
    }

    /// Writes bytes 4–7 of a BHS.
    #[inline]
    pub fn write(self, bhs: &mut [u8; BHS_LEN]) {
        let d = self.data_len.to_be_bytes();
        bhs[4] = self.ahs_words;
        bhs[5] = d[1];
        bhs[6] = d[2];
        bhs[7] = d[3];
    }

    /// TotalAHSLength in bytes.
    #[inline]
    pub const fn ahs_len(self) -> usize {
        self.ahs_words as usize * 4
    }

    /// DataSegmentLength in bytes (padding excluded).
    #[inline]
    pub const fn data_len(self) -> u32 {
        self.data_len
    }

    /// Data segment length including padding.
    #[inline]
    pub const fn padded_data_len(self) -> usize {
        padded_len(self.data_len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_to_four() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(pad_len), [0, 3, 2, 1, 0, 3]);
        assert_eq!(padded_len(13), 16);
        assert_eq!(padding(2), &[0, 0]);
    }

    #[test]
    fn lengths_are_range_checked() {
        assert_eq!(BhsLengths::new(1021, 0), Err(EncodeError::AhsTooLong(1021)));
        assert_eq!(
            BhsLengths::data(1 << 24),
            Err(EncodeError::DataSegmentTooLong(1 << 24))
        );
        let l = BhsLengths::new(18, 0x00ab_cdef).unwrap();
        assert_eq!(l.ahs_len(), 20);
        let mut b = [0u8; BHS_LEN];
        l.write(&mut b);
        assert_eq!(b[4..8], [5, 0xab, 0xcd, 0xef]);
        assert_eq!(BhsLengths::from_bhs(&b), l);
        assert_eq!(
            BhsLengths::data_bounded(u32::MAX).data_len(),
            MAX_DATA_SEGMENT_LEN
        );
    }
}
