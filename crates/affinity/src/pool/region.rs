//! One anonymous memory region bound to a NUMA node.
//!
//! Memory comes from `mmap(2)`: with `MAP_HUGETLB` from the reserved huge-page pool
//! (kernel `Documentation/admin-guide/mm/hugetlbpage.rst`), else normal pages advised with
//! `MADV_HUGEPAGE` for transparent huge pages (`.../mm/transhuge.rst`). The range is bound with
//! `mbind(2)` (`MPOL_BIND`, `MPOL_MF_MOVE | MPOL_MF_STRICT`, see
//! `Documentation/admin-guide/mm/numa_memory_policy.rst`) before it is first touched, and is
//! then touched page by page so every page is allocated on the node at start-up rather than
//! on the fast path. `get_mempolicy(2)` with `MPOL_F_NODE | MPOL_F_ADDR` reports where a page
//! landed. All `unsafe` of the buffer pool lives in this module.

use std::ptr::NonNull;

use serde::Serialize;

use crate::config::HugePages;
use crate::error::{AffinityError, Result};

/// What backs a region's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backing {
    /// Reserved huge pages (`MAP_HUGETLB`).
    HugeTlb,
    /// Normal pages advised for transparent huge pages (`MADV_HUGEPAGE`).
    TransparentHuge,
    /// Normal pages.
    Normal,
}

// From <linux/mempolicy.h>; the libc crate does not export them.
const MPOL_BIND: libc::c_int = 2;
const MPOL_MF_STRICT: libc::c_uint = 1;
const MPOL_MF_MOVE: libc::c_uint = 1 << 1;
const MPOL_F_NODE: libc::c_ulong = 1;
const MPOL_F_ADDR: libc::c_ulong = 1 << 1;
/// Node mask width: 1024 nodes (the kernel's largest `NODES_SHIFT` is 10).
const MASK_WORDS: usize = 16;
const MASK_BITS: usize = MASK_WORDS * 64;

/// A mapped region; unmapped on drop.
pub(crate) struct Region {
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
    bound_node: Option<u32>,
    note: Option<String>,
}

// SAFETY: a Region owns its mapping exclusively; it only hands out raw pointers, and the
// pool built on top guarantees that each buffer inside it is accessed by one owner at a time.
unsafe impl Send for Region {}
// SAFETY: &Region exposes no interior mutation, only the base address and metadata.
unsafe impl Sync for Region {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// The default huge page size from /proc/meminfo (`Hugepagesize:`), 2 MiB if unreadable.
pub(crate) fn huge_page_size() -> usize {
    huge_page_size_in(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

/// `Hugepagesize:` of a meminfo text; 2 MiB when absent or not a power of two of at least a
/// page (the mapping code divides by it and aligns to it, so 0 or garbage must not get
/// through).
fn huge_page_size_in(meminfo: &str) -> usize {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .and_then(|kib| kib.checked_mul(1024))
        .filter(|&bytes| bytes.is_power_of_two() && bytes >= page_size())
        .unwrap_or(2 << 20)
}

/// Free reserved huge pages of the default size, on `node` when given (per-node counter in
/// sysfs) or machine-wide (`HugePages_Free` in /proc/meminfo).
fn free_huge_pages(node: Option<u32>, huge: usize) -> usize {
    let value = match node {
        Some(n) => std::fs::read_to_string(format!(
            "/sys/devices/system/node/node{n}/hugepages/hugepages-{}kB/free_hugepages",
            huge / 1024
        ))
        .ok(),
        None => std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .map(str::to_owned)
        }),
    };
    value.and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

impl Region {
    /// Maps at least `len` bytes, bound to `node` when given, per the huge-page policy.
    pub(crate) fn map(
        len: usize,
        huge_pages: HugePages,
        node: Option<u32>,
        prefault: bool,
    ) -> Result<Self> {
        let huge = huge_page_size();
        let mut note = None;
        let mut region = match huge_pages {
            HugePages::Off => Self::map_normal(len, false)?,
            HugePages::On | HugePages::Auto => match Self::map_hugetlb(len, node, huge) {
                Ok(r) => r,
                Err(why) if huge_pages == HugePages::On => {
                    return Err(AffinityError::HugePagesUnavailable(why));
                }
                Err(why) => {
                    note = Some(format!("no reserved huge pages ({why})"));
                    Self::map_normal(len, true)?
                }
            },
        };
        region.note = note;
        if let Some(n) = node {
            region.bind(n)?;
        }
        if prefault {
            region.touch(if region.backing == Backing::HugeTlb {
                huge
            } else {
                page_size()
            });
        }
        Ok(region)
    }

    fn map_hugetlb(len: usize, node: Option<u32>, huge: usize) -> Result<Self, String> {
        let len = round_up(len, huge).ok_or("size overflows")?;
        let pages = len / huge;
        let free = free_huge_pages(node, huge);
        if free < pages {
            return Err(match node {
                Some(n) => format!("{pages} needed on node {n}, {free} free"),
                None => format!("{pages} needed, {free} free"),
            });
        }
        // SAFETY: a fresh anonymous private mapping at an address of the kernel's choosing
        // cannot alias any existing Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or("mmap returned null")?;
        Ok(Self {
            base,
            len,
            backing: Backing::HugeTlb,
            bound_node: None,
            note: None,
        })
    }

    fn map_normal(len: usize, want_thp: bool) -> Result<Self> {
        let page = page_size();
        let huge = huge_page_size();
        let len = round_up(len.max(1), page)
            .ok_or_else(|| AffinityError::Placement("buffer pool size overflows".into()))?;
        // For THP the region should start on a huge-page boundary: over-map, then trim.
        let align = if want_thp && len >= huge { huge } else { page };
        let map_len = len
            .checked_add(align - page)
            .ok_or_else(|| AffinityError::Placement("buffer pool size overflows".into()))?;
        // SAFETY: fresh anonymous private mapping; aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(AffinityError::syscall("mmap"));
        }
        let start = ptr as usize;
        let aligned = start.div_ceil(align) * align;
        let head = aligned - start;
        let tail = map_len - head - len;
        if head > 0 {
            // SAFETY: [start, start+head) is the unused head of the mapping made above.
            unsafe { libc::munmap(ptr, head) };
        }
        if tail > 0 {
            // SAFETY: [aligned+len, end) is the unused tail of that same mapping.
            unsafe { libc::munmap((aligned + len) as *mut libc::c_void, tail) };
        }
        let base = NonNull::new(aligned as *mut u8)
            .ok_or_else(|| AffinityError::Placement("mmap returned null".into()))?;
        let mut backing = Backing::Normal;
        if want_thp && len >= huge {
            // SAFETY: the range is exactly our mapping; madvise only changes paging policy.
            let rc = unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
            if rc == 0 {
                backing = Backing::TransparentHuge;
            }
        }
        Ok(Self {
            base,
            len,
            backing,
            bound_node: None,
            note: None,
        })
    }

    fn bind(&mut self, node: u32) -> Result<()> {
        let bit = node as usize;
        if bit >= MASK_BITS {
            return Err(AffinityError::UnknownNode {
                node,
                nodes: "0-1023 at most".into(),
            });
        }
        let mut mask = [0 as libc::c_ulong; MASK_WORDS];
        if let Some(word) = mask.get_mut(bit / 64) {
            *word |= 1 << (bit % 64);
        }
        // SAFETY: the address range is our own mapping, the mask array outlives the call and
        // holds MASK_BITS bits; the kernel reads maxnode - 1 bits, so MASK_BITS + 1 is passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.base.as_ptr(),
                self.len,
                MPOL_BIND,
                mask.as_ptr(),
                MASK_BITS + 1,
                MPOL_MF_STRICT | MPOL_MF_MOVE,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOSYS) {
                self.note = Some("kernel without NUMA support: memory not bound".into());
                return Ok(());
            }
            return Err(AffinityError::Syscall {
                call: "mbind",
                source: err,
            });
        }
        self.bound_node = Some(node);
        Ok(())
    }

    /// Writes one byte per page so the pages are allocated (under the bound policy) now.
    fn touch(&self, step: usize) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: off < len, so the byte lies inside our writable mapping; the region is
            // not yet shared with anyone.
            unsafe { self.base.as_ptr().add(off).write_volatile(0) };
            off += step;
        }
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The address `offset` bytes into the region, `None` past its end.
    pub(crate) fn ptr_at(&self, offset: usize) -> Option<NonNull<u8>> {
        if offset >= self.len {
            return None;
        }
        // SAFETY: offset < len, so the result stays inside this one mapping and cannot wrap.
        Some(unsafe { self.base.add(offset) })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }

    pub(crate) fn bound_node(&self) -> Option<u32> {
        self.bound_node
    }

    pub(crate) fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len describe exactly the mapping this Region owns, and every buffer
        // handle keeps the Region alive, so nothing refers to the memory any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The NUMA node holding the page of `byte` (`get_mempolicy` with `MPOL_F_NODE |
/// MPOL_F_ADDR`); `Ok(None)` on kernels without NUMA support. The page is faulted in if it
/// was not yet. Pass e.g. `&buf[0]` and `&buf[buf.len() - 1]` of a [`PoolBuf`](super::PoolBuf).
pub fn node_of_address(byte: &u8) -> Result<Option<u32>> {
    let addr: *const u8 = byte;
    let mut node: libc::c_int = -1;
    // SAFETY: with MPOL_F_NODE | MPOL_F_ADDR and a null mask the kernel only writes `node`,
    // which is a valid c_int; `addr` comes from a reference, so it is mapped, and the kernel
    // only looks the page up.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &raw mut node,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            addr,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(None);
        }
        return Err(AffinityError::Syscall {
            call: "get_mempolicy",
            source: err,
        });
    }
    Ok(u32::try_from(node).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_region_is_zeroed_writable_and_bound() {
        let r = Region::map(3 * 4096 + 1, HugePages::Off, Some(0), true).unwrap();
        assert_eq!(r.backing(), Backing::Normal);
        assert!(r.len() >= 4 * 4096);
        assert_eq!(r.base().as_ptr() as usize % page_size(), 0);
        // SAFETY: the region is ours, mapped writable and len bytes long; nothing else uses it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(r.base().as_ptr(), r.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes.fill(0xa5);
        if r.note().is_none() {
            assert_eq!(r.bound_node(), Some(0));
            assert_eq!(node_of_address(&bytes[0]).unwrap(), Some(0));
            assert_eq!(node_of_address(&bytes[r.len() - 1]).unwrap(), Some(0));
        }
    }

    #[test]
    fn thp_region_is_huge_page_aligned() {
        let huge = huge_page_size();
        let r = Region::map(2 * huge, HugePages::Auto, None, false).unwrap();
        if r.backing() == Backing::TransparentHuge {
            assert_eq!(r.base().as_ptr() as usize % huge, 0);
        }
        assert!(r.len() >= 2 * huge);
    }

    #[test]
    fn binding_to_a_missing_node_fails() {
        let err = Region::map(4096, HugePages::Off, Some(1000), false)
            .err()
            .unwrap();
        assert!(
            matches!(&err, AffinityError::Syscall { call: "mbind", .. }),
            "{err}"
        );
        let err = Region::map(4096, HugePages::Off, Some(5000), false)
            .err()
            .unwrap();
        assert!(matches!(err, AffinityError::UnknownNode { node: 5000, .. }));
    }

    #[test]
    fn huge_page_size_rejects_garbage() {
        assert_eq!(huge_page_size_in("Hugepagesize:    1048576 kB\n"), 1 << 30);
        assert_eq!(
            huge_page_size_in("MemTotal: 1 kB\nHugepagesize: 2048 kB\n"),
            2 << 20
        );
        // Regression: 0 kB gave a zero size, and `round_up` then divided by zero.
        for bad in [
            "Hugepagesize: 0 kB",
            "Hugepagesize: 3000 kB",
            "Hugepagesize: 2 kB",
            "Hugepagesize: 99999999999999999999 kB",
            "Hugepagesize: 18014398509481984 kB",
            "",
        ] {
            assert_eq!(huge_page_size_in(bad), 2 << 20, "{bad:?}");
        }
    }

    #[test]
    fn stack_memory_has_a_node() {
        let byte = 7u8;
        let node = node_of_address(&byte).unwrap();
        assert!(node.is_none_or(|n| n < 1024));
    }
}
