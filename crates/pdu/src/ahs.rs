//! Additional Header Segments (RFC 7143 §11.2.2): the Extended CDB AHS
//! (§11.2.2.3) and the Bidirectional Read Expected Data Transfer Length AHS
//! (§11.2.2.4).
//!
//! Each AHS is `AHSLength` (2 bytes, the length of what follows `AHSType`),
//! `AHSType` (1 byte) and `AHSLength` bytes of type-specific content, padded
//! to a 4-byte boundary; the entries must tile TotalAHSLength exactly.

use crate::bhs::{MAX_AHS_LEN, pad_len};
use crate::codes::AhsType;
use crate::error::{EncodeError, PduError};

/// One AHS entry borrowed from a raw AHS area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AhsRef<'a> {
    /// CDB bytes 16 and up (the reserved byte is stripped).
    ExtendedCdb(&'a [u8]),
    /// Expected read length of a bidirectional command.
    BidiReadLength(u32),
    /// An AHS type this codec does not interpret: its type and content.
    Other(AhsType, &'a [u8]),
}

/// Iterator over the entries of a raw AHS area; yields an error (and then
/// stops) on a malformed entry.
#[derive(Debug, Clone)]
pub struct AhsIter<'a> {
    rest: &'a [u8],
}

/// Iterates the AHS entries in `raw` (TotalAHSLength bytes after the BHS).
pub fn iter_ahs(raw: &[u8]) -> AhsIter<'_> {
    AhsIter { rest: raw }
}

impl<'a> AhsIter<'a> {
    fn entry(&mut self) -> Result<AhsRef<'a>, PduError> {
        let (head, body) = self
            .rest
            .split_first_chunk::<3>()
            .ok_or(PduError::InvalidAhs("truncated AHS header"))?;
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let ahs_type = AhsType(head[2]);
        let content = body
            .get(..len)
            .ok_or(PduError::InvalidAhs("AHSLength overruns TotalAHSLength"))?;
        let consumed = len + pad_len(3 + len);
        self.rest = body
            .get(consumed..)
            .ok_or(PduError::InvalidAhs("AHS padding overruns TotalAHSLength"))?;
        Ok(match ahs_type {
            AhsType::EXTENDED_CDB => match content.split_first() {
                Some((_reserved, cdb)) => AhsRef::ExtendedCdb(cdb),
                None => return Err(PduError::InvalidAhs("empty extended CDB")),
            },
            AhsType::BIDI_READ_LENGTH => match content {
                [_reserved, a, b, c, d] => {
                    AhsRef::BidiReadLength(u32::from_be_bytes([*a, *b, *c, *d]))
                }
                _ => {
                    return Err(PduError::InvalidAhs(
                        "bidirectional read length AHS is not 5 bytes",
                    ));
                }
            },
            other => AhsRef::Other(other, content),
        })
    }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<AhsRef<'a>, PduError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.entry();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

/// An owned AHS entry, as carried by [`crate::Pdu`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ahs {
    /// CDB bytes 16 and up.
    ExtendedCdb(Vec<u8>),
    /// Expected read length of a bidirectional command.
    BidiReadLength(u32),
    /// Any other AHS type, with its content (the `AHSLength` bytes after `AHSType`).
    Other(AhsType, Vec<u8>),
}

impl Ahs {
    /// Decodes a raw AHS area into owned entries.
    pub fn decode_all(raw: &[u8]) -> Result<Vec<Ahs>, PduError> {
        iter_ahs(raw)
            .map(|e| {
                e.map(|e| match e {
                    AhsRef::ExtendedCdb(c) => Ahs::ExtendedCdb(c.to_vec()),
                    AhsRef::BidiReadLength(n) => Ahs::BidiReadLength(n),
                    AhsRef::Other(t, c) => Ahs::Other(t, c.to_vec()),
                })
            })
            .collect()
    }

    /// Encoded size of this entry including padding.
    pub fn encoded_len(&self) -> usize {
        let content = match self {
            Ahs::ExtendedCdb(c) => 1 + c.len(),
            Ahs::BidiReadLength(_) => 5,
            Ahs::Other(_, c) => c.len(),
        };
        3 + content + pad_len(3 + content)
    }

    /// Encoded size of a list of entries (the TotalAHSLength in bytes).
    pub fn total_len(list: &[Ahs]) -> usize {
        list.iter().map(Ahs::encoded_len).sum()
    }

    /// Appends the encoding of `list` to `out`.
    pub fn encode_all(list: &[Ahs], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let total = Self::total_len(list);
        if total > MAX_AHS_LEN {
            return Err(EncodeError::AhsTooLong(total));
        }
        for a in list {
            let (t, reserved, content): (AhsType, bool, &[u8]) = match a {
                Ahs::ExtendedCdb(c) => (AhsType::EXTENDED_CDB, true, c),
                Ahs::BidiReadLength(_) => (AhsType::BIDI_READ_LENGTH, true, &[]),
                Ahs::Other(t, c) => (*t, false, c),
            };
            let mut len = content.len() + usize::from(reserved);
            if let Ahs::BidiReadLength(_) = a {
                len = 5;
            }
            let len16 = u16::try_from(len).map_err(|_| EncodeError::AhsEntryTooLong(len))?;
            out.extend_from_slice(&len16.to_be_bytes());
            out.push(t.0);
            if reserved {
                out.push(0);
            }
            match a {
                Ahs::BidiReadLength(n) => out.extend_from_slice(&n.to_be_bytes()),
                _ => out.extend_from_slice(content),
            }
            out.extend_from_slice(&[0u8; 3][..pad_len(3 + len)]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_cdb_wire_format() {
        // A 32-byte CDB: AHSLength = 32 - 15 = 17, then type 1, reserved, 16 bytes, pad 0.
        let ext: Vec<u8> = (16u8..32).collect();
        let mut out = vec![];
        Ahs::encode_all(&[Ahs::ExtendedCdb(ext.clone())], &mut out).unwrap();
        assert_eq!(out.len(), 20);
        assert_eq!(out[..4], [0x00, 0x11, 0x01, 0x00]);
        assert_eq!(out[4..20], ext[..]);
        assert_eq!(Ahs::decode_all(&out).unwrap(), vec![Ahs::ExtendedCdb(ext)]);
    }

    #[test]
    fn bidi_read_length_wire_format() {
        let mut out = vec![];
        Ahs::encode_all(&[Ahs::BidiReadLength(0x0102_0304)], &mut out).unwrap();
        assert_eq!(out, [0x00, 0x05, 0x02, 0x00, 1, 2, 3, 4]);
        assert_eq!(
            Ahs::decode_all(&out).unwrap(),
            vec![Ahs::BidiReadLength(0x0102_0304)]
        );
    }

    #[test]
    fn unknown_types_survive() {
        let list = vec![
            Ahs::Other(AhsType(0x40), vec![9, 8, 7, 6, 5]),
            Ahs::BidiReadLength(7),
        ];
        let mut out = vec![];
        Ahs::encode_all(&list, &mut out).unwrap();
        assert_eq!(out.len(), Ahs::total_len(&list));
        assert_eq!(out.len() % 4, 0);
        assert_eq!(Ahs::decode_all(&out).unwrap(), list);
    }

    #[test]
    fn malformed_areas_are_rejected() {
        // AHSLength larger than the area.
        assert!(Ahs::decode_all(&[0x00, 0x09, 0x01, 0x00]).is_err());
        // Bidi AHS with the wrong length.
        assert!(Ahs::decode_all(&[0x00, 0x01, 0x02, 0x00]).is_err());
        // Empty extended CDB.
        assert!(Ahs::decode_all(&[0x00, 0x00, 0x01, 0x00]).is_err());
        // Padding missing at the end.
        assert!(Ahs::decode_all(&[0x00, 0x02, 0x40, 0x00, 0x00]).is_err());
        assert_eq!(
            Ahs::encode_all(&[Ahs::ExtendedCdb(vec![0; 1100])], &mut vec![]),
            Err(EncodeError::AhsTooLong(1104))
        );
    }
}
