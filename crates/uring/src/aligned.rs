//! Heap buffers with a chosen alignment, for O_DIRECT and registered (fixed) buffers.
//!
//! O_DIRECT (open(2), "O_DIRECT") requires the user buffer, the file offset and the length to
//! be aligned to the device's logical block size (and the buffer to its DMA alignment). These
//! buffers are allocated aligned so that data can go to the device without a bounce copy.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// A zero-initialised heap buffer whose start is aligned to a power of two.
///
/// The memory does not move when the `AlignedBuf` itself is moved, so a pointer taken from it
/// stays valid as long as the buffer is alive (what io_uring needs while an operation is in
/// flight).
///
/// ```
/// let mut buf = rtgt_uring::AlignedBuf::new(8192, 4096);
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// buf.as_mut_slice()[0] = 7;
/// assert_eq!(buf.len(), 8192);
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    /// Registered-buffer slot and the id of the ring it is registered with, if any.
    pub(crate) fixed: Option<(u64, u16)>,
}

// SAFETY: the buffer owns its allocation exclusively (like a `Vec<u8>`); no shared state.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` only gives shared read access to the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocate `len` zeroed bytes aligned to `align` (rounded up to a power of two, at least
    /// 1). A zero `len` still allocates one alignment unit so that the pointer is valid.
    ///
    /// Panics only if the allocator fails (like `Vec`).
    pub fn new(len: usize, align: usize) -> Self {
        let align = align.max(1).next_power_of_two();
        let size = len.max(1).next_multiple_of(align);
        let layout = Layout::from_size_align(size, align).expect("alignment is a power of two");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self {
            ptr,
            len,
            layout,
            fixed: None,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Alignment of the start in bytes.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// Usable capacity (the allocation, a multiple of the alignment).
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Change the length within the capacity (bytes beyond the old length keep their content).
    ///
    /// Panics if `len` exceeds [`capacity`](Self::capacity).
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "length {len} beyond capacity {}",
            self.capacity()
        );
        self.len = len;
    }

    /// The registered-buffer index of this buffer in the ring it is registered with.
    pub fn fixed_index(&self) -> Option<u16> {
        self.fixed.map(|(_, index)| index)
    }

    /// Start of the buffer.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start of the buffer, writable.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `capacity() >= len` initialised (zeroed) bytes owned by us.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and not freed before.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.align())
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

/// Alignment rules of an open backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    memory: usize,
    offset: u64,
}

impl Alignment {
    /// No alignment requirement (buffered I/O).
    pub const NONE: Self = Self {
        memory: 1,
        offset: 1,
    };

    /// Buffers aligned to `memory` bytes, offsets and lengths to `offset` bytes (0 counts as 1).
    pub fn new(memory: usize, offset: u64) -> Self {
        Self {
            memory: memory.max(1),
            offset: offset.max(1),
        }
    }

    /// Required alignment of buffer addresses in bytes (1 = none).
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Required alignment of file offsets and lengths in bytes (1 = none).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether an I/O of `len` bytes at file `offset` from memory at `ptr` can go to the file
    /// without a bounce buffer.
    ///
    /// ```
    /// let a = rtgt_uring::Alignment::new(512, 4096);
    /// let buf = rtgt_uring::AlignedBuf::new(4096, 4096);
    /// assert!(a.is_aligned(buf.as_ptr(), 4096, 8192));
    /// assert!(!a.is_aligned(buf.as_ptr(), 512, 8192));
    /// ```
    pub fn is_aligned(&self, ptr: *const u8, len: usize, offset: u64) -> bool {
        (ptr as usize) % self.memory == 0
            && (len as u64) % self.offset == 0
            && offset % self.offset == 0
    }

    /// Whether a range lies on offset-alignment boundaries (memory not considered).
    pub fn range_aligned(&self, len: u64, offset: u64) -> bool {
        len % self.offset == 0 && offset % self.offset == 0
    }

    /// Alignment to use for buffers allocated for this file.
    pub fn buffer_align(&self) -> usize {
        self.memory
            .max(usize::try_from(self.offset).unwrap_or(4096))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_zeroing() {
        for align in [1, 512, 4096, 3000] {
            let buf = AlignedBuf::new(100, align);
            assert_eq!(buf.as_ptr() as usize % buf.align(), 0);
            assert!(buf.align() >= align);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
        }
        let empty = AlignedBuf::new(0, 4096);
        assert!(empty.is_empty());
        assert_eq!(empty.capacity(), 4096);
    }

    #[test]
    fn set_len_within_capacity() {
        let mut buf = AlignedBuf::new(10, 512);
        buf.set_len(512);
        assert_eq!(buf.as_slice().len(), 512);
    }

    #[test]
    fn alignment_rules() {
        let a = Alignment::new(512, 512);
        let buf = AlignedBuf::new(4096, 512);
        assert!(a.is_aligned(buf.as_ptr(), 1024, 512));
        assert!(!a.is_aligned(buf.as_ptr().wrapping_add(1), 1024, 512));
        assert!(!a.is_aligned(buf.as_ptr(), 1000, 512));
        assert!(!a.is_aligned(buf.as_ptr(), 1024, 100));
        assert!(Alignment::NONE.is_aligned(buf.as_ptr().wrapping_add(3), 7, 9));
        assert_eq!(a.buffer_align(), 512);
    }
}
