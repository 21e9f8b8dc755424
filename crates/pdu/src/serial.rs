//! 32-bit serial number arithmetic (RFC 1982) for CmdSN, ExpCmdSN, MaxCmdSN,
//! StatSN, ExpStatSN, DataSN and R2TSN (RFC 7143 §4.2.2.1: "all sequence
//! numbers ... are compared and advanced using serial number arithmetic").
//!
//! [`Sn`] deliberately does not implement `PartialOrd`/`Ord`: serial
//! order is not transitive across the whole space (RFC 1982 §3.2), so it must
//! never reach a sort or an ordered map. Use the explicit comparison methods.

use core::cmp::Ordering;
use core::fmt;

/// Half the serial number space, 2^31 (RFC 1982 SERIAL_BITS = 32).
const HALF: u32 = 1 << 31;

/// A 32-bit sequence number compared with RFC 1982 serial arithmetic.
///
/// ```
/// use rtgt_pdu::Sn;
///
/// let last = Sn(u32::MAX);
/// let next = last.add(1);
/// assert_eq!(next, Sn(0));
/// assert!(last.serial_lt(next)); // wrap: 0xffff_ffff precedes 0
/// assert!(next.in_window(Sn(u32::MAX - 5), Sn(10)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sn(pub u32);

/// Long name of [`Sn`].
pub type SerialNumber = Sn;

impl Sn {
    /// The raw value.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Serial addition (RFC 1982 §3.1). Only `n <= 2^31 - 1` is meaningful.
    #[inline]
    #[must_use]
    pub const fn add(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// The following number, wrapping from `2^32 - 1` to 0.
    #[inline]
    #[must_use]
    pub const fn incremented(self) -> Self {
        self.add(1)
    }

    /// RFC 1982 §3.2 comparison; `None` where the RFC leaves it undefined
    /// (the two numbers are exactly 2^31 apart).
    #[inline]
    pub const fn serial_cmp(self, other: Self) -> Option<Ordering> {
        let d = other.0.wrapping_sub(self.0);
        if d == 0 {
            Some(Ordering::Equal)
        } else if d == HALF {
            None
        } else if d < HALF {
            Some(Ordering::Less)
        } else {
            Some(Ordering::Greater)
        }
    }

    /// `self < other` in serial arithmetic (false where undefined).
    #[inline]
    pub const fn serial_lt(self, other: Self) -> bool {
        matches!(self.serial_cmp(other), Some(Ordering::Less))
    }

    /// `self > other` in serial arithmetic (false where undefined).
    #[inline]
    pub const fn serial_gt(self, other: Self) -> bool {
        matches!(self.serial_cmp(other), Some(Ordering::Greater))
    }

    /// `self <= other` in serial arithmetic.
    #[inline]
    pub const fn serial_le(self, other: Self) -> bool {
        matches!(
            self.serial_cmp(other),
            Some(Ordering::Less | Ordering::Equal)
        )
    }

    /// `self >= other` in serial arithmetic.
    #[inline]
    pub const fn serial_ge(self, other: Self) -> bool {
        matches!(
            self.serial_cmp(other),
            Some(Ordering::Greater | Ordering::Equal)
        )
    }

    /// Whether `lo <= self <= hi` in serial arithmetic, i.e. `self` lies in the
    /// window that starts at `lo` and spans `hi - lo` numbers. This is the
    /// CmdSN window check `ExpCmdSN <= CmdSN <= MaxCmdSN` (RFC 7143 §4.2.2.1).
    /// An empty window (`hi = lo - 1`, MaxCmdSN = ExpCmdSN - 1) holds nothing.
    #[inline]
    pub const fn in_window(self, lo: Self, hi: Self) -> bool {
        let span = hi.0.wrapping_sub(lo.0);
        if span >= HALF {
            return false;
        }
        self.0.wrapping_sub(lo.0) <= span
    }

    /// Signed distance `other - self` when it is defined (|d| < 2^31).
    #[inline]
    pub const fn distance_to(self, other: Self) -> Option<i32> {
        let d = other.0.wrapping_sub(self.0);
        if d == HALF { None } else { Some(d as i32) }
    }
}

impl fmt::Debug for Sn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sn({})", self.0)
    }
}

impl fmt::Display for Sn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for Sn {
    #[inline]
    fn from(v: u32) -> Self {
        Self(v)
    }
}

impl From<Sn> for u32 {
    #[inline]
    fn from(v: Sn) -> Self {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_comparisons() {
        assert!(Sn(1).serial_lt(Sn(2)));
        assert!(Sn(2).serial_gt(Sn(1)));
        assert!(Sn(5).serial_le(Sn(5)));
        assert!(Sn(5).serial_ge(Sn(5)));
        assert_eq!(Sn(7).serial_cmp(Sn(7)), Some(Ordering::Equal));
    }

    #[test]
    fn comparisons_respect_wrap() {
        let max = Sn(u32::MAX);
        assert!(max.serial_lt(Sn(0)));
        assert!(Sn(0).serial_gt(max));
        assert!(Sn(u32::MAX - 10).serial_lt(Sn(10)));
        assert!(Sn(10).serial_gt(Sn(u32::MAX - 10)));
        assert_eq!(max.incremented(), Sn(0));
        assert_eq!(max.add(3), Sn(2));
        assert_eq!(max.distance_to(Sn(2)), Some(3));
        assert_eq!(Sn(2).distance_to(max), Some(-3));
    }

    #[test]
    fn half_space_apart_is_undefined() {
        assert_eq!(Sn(0).serial_cmp(Sn(HALF)), None);
        assert_eq!(Sn(HALF).serial_cmp(Sn(0)), None);
        assert!(!Sn(0).serial_lt(Sn(HALF)));
        assert!(!Sn(0).serial_gt(Sn(HALF)));
        assert_eq!(Sn(0).distance_to(Sn(HALF)), None);
        // One less than half is still ordered.
        assert!(Sn(0).serial_lt(Sn(HALF - 1)));
        assert!(Sn(0).serial_gt(Sn(HALF + 1)));
    }

    #[test]
    fn command_window_across_the_wrap() {
        let exp = Sn(u32::MAX - 1);
        let max = Sn(2);
        for v in [u32::MAX - 1, u32::MAX, 0, 1, 2] {
            assert!(Sn(v).in_window(exp, max), "{v}");
        }
        assert!(!Sn(3).in_window(exp, max));
        assert!(!Sn(u32::MAX - 2).in_window(exp, max));
        // MaxCmdSN = ExpCmdSN - 1: the window is closed.
        assert!(!Sn(0).in_window(Sn(0), Sn(u32::MAX)));
        assert!(!Sn(u32::MAX).in_window(Sn(0), Sn(u32::MAX)));
        // A single-slot window.
        assert!(Sn(0).in_window(Sn(0), Sn(0)));
    }
}
