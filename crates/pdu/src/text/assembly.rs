//! Text spanning several PDUs (RFC 7143 §6.2, §11.10.2, §11.12.4): incoming
//! segments with the C (continue) bit are joined before parsing, and outgoing
//! text longer than the peer's MaxRecvDataSegmentLength is split into
//! segments with C set on all but the last. A pair may be split anywhere,
//! even inside a key.

use super::TextError;

/// Joins text segments received with the C bit until the last one.
///
/// ```
/// use rtgt_pdu::text::TextAssembler;
///
/// let mut a = TextAssembler::new(TextAssembler::DEFAULT_LIMIT);
/// assert_eq!(a.push(b"Initiator", true)?, None);
/// assert_eq!(a.push(b"Name=iqn.x\0", false)?, Some(b"InitiatorName=iqn.x\0".to_vec()));
/// # Ok::<(), rtgt_pdu::text::TextError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TextAssembler {
    buf: Vec<u8>,
    pending: bool,
    limit: usize,
}

impl TextAssembler {
    /// A generous default: RFC 7143 §6.2 requires accepting at least 8192
    /// bytes of key=value text in a negotiation; SendTargets answers are longer.
    pub const DEFAULT_LIMIT: usize = 64 * 1024;

    /// An assembler refusing more than `limit` bytes in one text.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            pending: false,
            limit,
        }
    }

    /// Adds one PDU's data segment; `continues` is its C bit. Returns the
    /// complete text once a segment without C arrives.
    pub fn push(&mut self, data: &[u8], continues: bool) -> Result<Option<Vec<u8>>, TextError> {
        let len = self.buf.len() + data.len();
        if len > self.limit {
            self.clear();
            return Err(TextError::TooLong {
                len,
                max: self.limit,
            });
        }
        self.buf.extend_from_slice(data);
        if continues {
            self.pending = true;
            Ok(None)
        } else {
            self.pending = false;
            Ok(Some(core::mem::take(&mut self.buf)))
        }
    }

    /// Whether a continued text is waiting for more segments.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Drops any partial text.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pending = false;
    }
}

/// Splits `text` into segments of at most `max_segment` bytes, each with its
/// C bit (true on all but the last). Empty text gives one empty segment.
///
/// ```
/// use rtgt_pdu::text::split_segments;
///
/// let parts: Vec<_> = split_segments(b"abcdefg", 3).collect();
/// assert_eq!(parts, [(&b"abc"[..], true), (&b"def"[..], true), (&b"g"[..], false)]);
/// ```
pub fn split_segments(text: &[u8], max_segment: usize) -> impl Iterator<Item = (&[u8], bool)> {
    let max = max_segment.max(1);
    let count = text.len().div_ceil(max).max(1);
    (0..count).map(move |i| {
        let start = i * max;
        let end = (start + max).min(text.len());
        (text.get(start..end).unwrap_or(&[]), i + 1 < count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse_pairs;

    #[test]
    fn split_then_reassemble_at_every_size() {
        let text = b"HeaderDigest=CRC32C,None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0";
        for max in 1..=text.len() + 1 {
            let mut a = TextAssembler::new(1024);
            let mut out = None;
            let segments: Vec<_> = split_segments(text, max).collect();
            for (seg, cont) in &segments {
                assert!(seg.len() <= max);
                assert!(out.is_none());
                out = a.push(seg, *cont).unwrap();
            }
            assert_eq!(out.as_deref(), Some(&text[..]));
            assert_eq!(parse_pairs(&out.unwrap()).unwrap().len(), 3);
            assert!(!segments.last().unwrap().1);
        }
    }

    #[test]
    fn empty_text_is_one_final_segment() {
        let parts: Vec<_> = split_segments(b"", 8192).collect();
        assert_eq!(parts, [(&b""[..], false)]);
        assert_eq!(split_segments(b"ab", 0).count(), 2);
    }

    #[test]
    fn limit_is_enforced_and_resets() {
        let mut a = TextAssembler::new(8);
        assert_eq!(a.push(b"12345", true), Ok(None));
        assert!(a.is_pending());
        assert_eq!(
            a.push(b"6789", true),
            Err(TextError::TooLong { len: 9, max: 8 })
        );
        assert!(!a.is_pending());
        assert_eq!(a.push(b"ok\0", false), Ok(Some(b"ok\0".to_vec())));
    }
}
