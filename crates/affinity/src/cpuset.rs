//! CPU sets and the kernel's CPU-list syntax ("0-3,8,10-11").
//!
//! Implements the list format documented in the kernel's
//! `Documentation/admin-guide/cputopology.rst` and used by `*_list` files in sysfs/procfs
//! (`cpulist_parse()` in `lib/bitmap.c`): comma-separated decimal numbers and inclusive
//! `a-b` ranges. The optional `a-b:used/group` stride form is not used by sysfs output and
//! is rejected with a precise error.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Largest CPU number accepted in a list. Linux's `NR_CPUS` tops out at 8192; refusing
/// larger numbers keeps a typo like "0-4000000000" from allocating gigabytes.
pub const MAX_CPU: u32 = 8191;

/// A malformed CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpuListError {
    /// An item between commas is empty (e.g. "0,,2" or a trailing comma).
    #[error("empty item in {0:?}")]
    EmptyItem(String),
    /// An item is not a decimal number or range.
    #[error("{item:?} is not a CPU number or range")]
    NotANumber {
        /// The offending item.
        item: String,
    },
    /// A range runs backwards ("7-3").
    #[error("range {item:?} runs backwards")]
    Reversed {
        /// The offending item.
        item: String,
    },
    /// A CPU number exceeds [`MAX_CPU`].
    #[error("CPU {cpu} is larger than {MAX_CPU}")]
    TooLarge {
        /// The offending number.
        cpu: u64,
    },
}

/// An ordered set of CPU numbers (ascending), printed in the kernel's list syntax.
///
/// ```
/// use rtgt_affinity::CpuSet;
///
/// let set: CpuSet = "8-11,24-27,3".parse()?;
/// assert_eq!(set.len(), 9);
/// assert!(set.contains(25));
/// assert_eq!(set.to_string(), "3,8-11,24-27");
/// assert!("3-1".parse::<CpuSet>().is_err());
/// # Ok::<(), rtgt_affinity::CpuListError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        Self(BTreeSet::new())
    }

    /// Parses a CPU list; an empty (or all-blank) string is the empty set, as sysfs writes
    /// for a memory-only NUMA node.
    pub fn parse(text: &str) -> Result<Self, CpuListError> {
        let text = text.trim();
        let mut set = BTreeSet::new();
        if text.is_empty() {
            return Ok(Self(set));
        }
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(CpuListError::EmptyItem(text.to_owned()));
            }
            let (lo, hi) = if let Some((a, b)) = item.split_once('-') {
                (parse_cpu(a, item)?, parse_cpu(b, item)?)
            } else {
                let n = parse_cpu(item, item)?;
                (n, n)
            };
            if hi < lo {
                return Err(CpuListError::Reversed {
                    item: item.to_owned(),
                });
            }
            set.extend(lo..=hi);
        }
        Ok(Self(set))
    }

    /// Inserts a CPU; returns whether it was new.
    pub fn insert(&mut self, cpu: u32) -> bool {
        self.0.insert(cpu)
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// The lowest CPU.
    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }

    /// The highest CPU.
    pub fn last(&self) -> Option<u32> {
        self.0.last().copied()
    }

    /// CPUs in both sets.
    #[must_use]
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        Self(self.0.intersection(&other.0).copied().collect())
    }

    /// CPUs in `self` but not in `other`.
    #[must_use]
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        Self(self.0.difference(&other.0).copied().collect())
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The CPUs as a vector, ascending.
    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

fn parse_cpu(text: &str, item: &str) -> Result<u32, CpuListError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuListError::NotANumber {
            item: item.to_owned(),
        });
    }
    // All digits: the only failure left is overflow.
    let n: u64 = text
        .parse()
        .map_err(|_| CpuListError::TooLarge { cpu: u64::MAX })?;
    if n > u64::from(MAX_CPU) {
        return Err(CpuListError::TooLarge { cpu: n });
    }
    Ok(n as u32)
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<u32> for CpuSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromStr for CpuSet {
    type Err = CpuListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CpuSet {
    /// Prints the kernel's compact list form: "0-3,8".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut iter = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

impl serde::Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CpuSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_forms() {
        assert_eq!(CpuSet::parse("0-1").unwrap().to_vec(), vec![0, 1]);
        assert_eq!(CpuSet::parse("0").unwrap().to_vec(), vec![0]);
        assert_eq!(
            CpuSet::parse("0-3,8,10-11\n").unwrap().to_vec(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert!(CpuSet::parse("\n").unwrap().is_empty());
        // Overlaps and unordered items are accepted and folded.
        assert_eq!(CpuSet::parse("5,1-3,2").unwrap().to_string(), "1-3,5");
    }

    #[test]
    fn rejects_malformed_lists_precisely() {
        assert_eq!(
            CpuSet::parse("0,,2"),
            Err(CpuListError::EmptyItem("0,,2".into()))
        );
        assert_eq!(
            CpuSet::parse("0-"),
            Err(CpuListError::NotANumber { item: "0-".into() })
        );
        assert_eq!(
            CpuSet::parse("a"),
            Err(CpuListError::NotANumber { item: "a".into() })
        );
        assert_eq!(
            CpuSet::parse("-1"),
            Err(CpuListError::NotANumber { item: "-1".into() })
        );
        assert_eq!(
            CpuSet::parse("7-3"),
            Err(CpuListError::Reversed { item: "7-3".into() })
        );
        assert_eq!(
            CpuSet::parse("0-8192"),
            Err(CpuListError::TooLarge { cpu: 8192 })
        );
        assert_eq!(
            CpuSet::parse("99999999999999999999999"),
            Err(CpuListError::TooLarge { cpu: u64::MAX })
        );
        assert!(CpuSet::parse("0-3:2/4").is_err());
    }

    #[test]
    fn prints_compact_ranges() {
        let set: CpuSet = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(set.to_string(), "0-2,4,6-7");
        assert_eq!(CpuSet::new().to_string(), "");
        assert_eq!(format!("{set:?}"), "CpuSet(0-2,4,6-7)");
    }

    #[test]
    fn set_operations() {
        let a = CpuSet::parse("0-7").unwrap();
        let b = CpuSet::parse("4-11").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "4-7");
        assert_eq!(a.difference(&b).to_string(), "0-3");
        assert!(CpuSet::parse("5-6").unwrap().is_subset(&a));
        assert_eq!(a.first(), Some(0));
        assert_eq!(b.last(), Some(11));
    }

    #[test]
    fn serde_round_trip_as_string() {
        let set = CpuSet::parse("0-3,8").unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, "\"0-3,8\"");
        let back: CpuSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        let err = serde_json::from_str::<CpuSet>("\"3-1\"").unwrap_err();
        assert!(err.to_string().contains("runs backwards"), "{err}");
    }
}
