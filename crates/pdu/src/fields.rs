//! Structured header fields shared by several PDUs: LUN (RFC 7143 §11.2.1.6,
//! SAM-5 §4.7), ISID (§11.12.5), task tags (§11.2.1.8, §11.7.4) and residual
//! counts (§11.4.5).

use core::fmt;

/// The 8-byte Logical Unit Number field, kept as it travels on the wire.
///
/// Helpers cover single-level LUNs in SAM's peripheral (0–255) and flat
/// (0–16383) addressing methods, which is what Linux and libiscsi send.
///
/// ```
/// use rtgt_pdu::Lun;
///
/// assert_eq!(Lun::from_number(1).unwrap().0, [0, 1, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(Lun::from_number(300).unwrap().0, [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(Lun([0x41, 0x2c, 0, 0, 0, 0, 0, 0]).number(), Some(300));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lun(pub [u8; 8]);

impl Lun {
    /// LUN 0.
    pub const ZERO: Self = Self([0; 8]);

    /// Encodes a single-level LUN: peripheral addressing below 256, flat
    /// addressing below 16384; `None` above.
    pub const fn from_number(n: u16) -> Option<Self> {
        if n < 256 {
            Some(Self([0, n as u8, 0, 0, 0, 0, 0, 0]))
        } else if n < 0x4000 {
            Some(Self([0x40 | (n >> 8) as u8, n as u8, 0, 0, 0, 0, 0, 0]))
        } else {
            None
        }
    }

    /// Decodes a single-level peripheral (bus 0) or flat LUN; `None` for other
    /// addressing methods or multi-level LUNs.
    pub const fn number(&self) -> Option<u16> {
        let b = self.0;
        if b[2] != 0 || b[3] != 0 || b[4] != 0 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
            return None;
        }
        match b[0] >> 6 {
            0 if b[0] == 0 => Some(b[1] as u16),
            1 => Some((((b[0] & 0x3f) as u16) << 8) | b[1] as u16),
            _ => None,
        }
    }

    /// The field as a big-endian integer.
    pub const fn to_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            Some(n) => write!(f, "Lun({n})"),
            None => write!(f, "Lun({:#018x})", self.to_u64()),
        }
    }
}

/// The 6-byte Initiator Session ID (RFC 7143 §11.12.5): T (2 bits) and A
/// (6 bits), B (16), C (8), D (16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isid(pub [u8; 6]);

impl Isid {
    /// The ISID as a 48-bit big-endian integer.
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Builds an ISID from the low 48 bits of `v`.
    pub const fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        Self([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The 2-bit T (format) field: 0 OUI, 1 EN, 2 random, 3 reserved.
    pub const fn format(&self) -> u8 {
        self.0[0] >> 6
    }
}

impl fmt::Debug for Isid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Isid({:#014x})", self.to_u64())
    }
}

/// Initiator Task Tag (RFC 7143 §11.2.1.8). `0xffffffff` is reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Itt(pub u32);

impl Itt {
    /// The reserved value, used where no task is referenced.
    pub const RESERVED: Self = Self(0xffff_ffff);
}

impl fmt::Debug for Itt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Itt({:#010x})", self.0)
    }
}

/// Target Transfer Tag (RFC 7143 §11.7.4). `0xffffffff` means "none".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Ttt(pub u32);

impl Ttt {
    /// The reserved value: no target transfer tag.
    pub const RESERVED: Self = Self(0xffff_ffff);
}

impl fmt::Debug for Ttt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ttt({:#010x})", self.0)
    }
}

/// Residual condition of a response (RFC 7143 §11.4.5): the O/U bit pair
/// (or o/u for the bidirectional read part) with its count. The two bits are
/// mutually exclusive, so both set fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    /// Neither bit set: the transfer matched the expected length. The count
    /// field is sent as zero.
    #[default]
    None,
    /// U bit: this many expected bytes were not transferred.
    Underflow(u32),
    /// O bit: this many bytes could not be transferred for lack of buffer.
    Overflow(u32),
}

impl Residual {
    /// Computes the residual of a transfer of `actual` bytes against an
    /// expected length `expected`.
    pub const fn of(expected: u32, actual: u32) -> Self {
        if actual < expected {
            Self::Underflow(expected - actual)
        } else if actual > expected {
            Self::Overflow(actual - expected)
        } else {
            Self::None
        }
    }

    /// The residual count (0 for [`Residual::None`]).
    pub const fn count(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Underflow(n) | Self::Overflow(n) => n,
        }
    }

    /// Decodes from the overflow and underflow bits and the count field.
    /// `None` when both bits are set.
    pub(crate) const fn from_bits(overflow: bool, underflow: bool, count: u32) -> Option<Self> {
        match (overflow, underflow) {
            (false, false) => Some(Self::None),
            (false, true) => Some(Self::Underflow(count)),
            (true, false) => Some(Self::Overflow(count)),
            (true, true) => None,
        }
    }

    /// `(overflow bit, underflow bit)`.
    pub(crate) const fn bits(self) -> (bool, bool) {
        match self {
            Self::None => (false, false),
            Self::Underflow(_) => (false, true),
            Self::Overflow(_) => (true, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_addressing_methods() {
        assert_eq!(Lun::from_number(0), Some(Lun::ZERO));
        assert_eq!(Lun::from_number(255).unwrap().0[..2], [0, 255]);
        assert_eq!(Lun::from_number(256).unwrap().0[..2], [0x41, 0x00]);
        assert_eq!(Lun::from_number(0x3fff).unwrap().0[..2], [0x7f, 0xff]);
        assert_eq!(Lun::from_number(0x4000), None);
        for n in [0u16, 1, 200, 255, 256, 1000, 0x3fff] {
            assert_eq!(Lun::from_number(n).unwrap().number(), Some(n));
        }
        // Peripheral addressing with a non-zero bus, and multi-level LUNs, are not single numbers.
        assert_eq!(Lun([0x01, 0x02, 0, 0, 0, 0, 0, 0]).number(), None);
        assert_eq!(Lun([0, 1, 0, 1, 0, 0, 0, 0]).number(), None);
        assert_eq!(format!("{:?}", Lun::from_number(7).unwrap()), "Lun(7)");
    }

    #[test]
    fn isid_round_trips_through_u64() {
        let isid = Isid([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(isid.to_u64(), 0x8012_3456_789a);
        assert_eq!(Isid::from_u64(0x8012_3456_789a), isid);
        assert_eq!(isid.format(), 2);
    }

    #[test]
    fn residual_of_transfer() {
        assert_eq!(Residual::of(4096, 512), Residual::Underflow(3584));
        assert_eq!(Residual::of(512, 4096), Residual::Overflow(3584));
        assert_eq!(Residual::of(512, 512), Residual::None);
        assert_eq!(Residual::from_bits(true, true, 1), None);
        assert_eq!(Residual::Underflow(9).bits(), (false, true));
        assert_eq!(Residual::Overflow(9).count(), 9);
    }
}
