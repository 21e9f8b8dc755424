//! In-memory and null backing stores implementing [`BlockBackend`] (the RAM disk of the engine
//! and the store of this crate's tests).
//!
//! [`MemoryBackend`] is thin provisioned (SBC-4 §4.7.3): memory is allocated per 1 MiB chunk on
//! first write, deallocated blocks are tracked in a per-chunk bitmap so that GET LBA STATUS
//! reports them, and deallocated blocks read back as zeros (LBPRZ). Each chunk has its own lock,
//! so writers on different reactor threads rarely contend.
//!
//! [`NullBackend`] reads zeros and discards writes.

use std::sync::{PoisonError, RwLock};

use crate::backend::{AllocationExtent, BackendError, BlockBackend, Capabilities, Provisioning};

/// Why a store cannot be built with the requested shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// The block size is not a power of two between 512 bytes and 1 MiB.
    #[error("block size {0} is not a power of two between 512 and 1048576")]
    BlockSize(u32),
    /// The capacity in bytes does not fit in 64 bits (or in this machine's address space).
    #[error("capacity of {0} blocks is too large")]
    Capacity(u64),
}

const CHUNK: usize = 1 << 20;

#[derive(Default)]
struct Chunk {
    data: Option<Box<[u8]>>,
    /// One bit per block, set when mapped; meaningful only when `data` is present.
    mapped: Vec<u64>,
}

/// A thin-provisioned in-memory store.
///
/// ```
/// use rtgt_scsi::{BlockBackend, MemoryBackend, Provisioning};
///
/// let m = MemoryBackend::new(512, 4096).unwrap();
/// m.write_at(512, &[7u8; 512], false).unwrap();
/// let mut buf = [0u8; 1024];
/// m.read_at(0, &mut buf).unwrap();
/// assert_eq!(&buf[512..], &[7u8; 512][..]);
/// assert_eq!(m.allocation(512, 4096).unwrap().status, Provisioning::Mapped);
/// m.unmap(512, 512).unwrap();
/// assert_eq!(m.allocation(0, 4096).unwrap().status, Provisioning::Deallocated);
/// ```
pub struct MemoryBackend {
    caps: Capabilities,
    block: usize,
    size: u64,
    chunks: Vec<RwLock<Chunk>>,
}

impl core::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

fn validate(caps: &Capabilities) -> Result<u64, StoreConfigError> {
    let bs = caps.block_size;
    if !(512..=CHUNK as u32).contains(&bs) || !bs.is_power_of_two() {
        return Err(StoreConfigError::BlockSize(bs));
    }
    let size = caps
        .num_blocks
        .checked_mul(u64::from(bs))
        .ok_or(StoreConfigError::Capacity(caps.num_blocks))?;
    // Chunk indices must fit in usize.
    usize::try_from(size / CHUNK as u64 + 1)
        .map_err(|_| StoreConfigError::Capacity(caps.num_blocks))?;
    Ok(size)
}

impl MemoryBackend {
    /// A thin-provisioned store of `num_blocks` blocks of `block_size` bytes: UNMAP and WRITE
    /// ZEROES supported, deallocated blocks read as zeros, no volatile cache, non-rotating.
    pub fn new(block_size: u32, num_blocks: u64) -> Result<Self, StoreConfigError> {
        let mut caps = Capabilities::simple(block_size, num_blocks);
        caps.thin_provisioned = true;
        caps.unmap_reads_zeroes = true;
        caps.supports_unmap = true;
        caps.supports_write_zeroes = true;
        caps.supports_flush = false;
        caps.rotation_rate = 1;
        Self::with_capabilities(caps)
    }

    /// A store reporting exactly these capabilities. With `thin_provisioned == false` every
    /// block is reported mapped and `unmap` only zeroes.
    pub fn with_capabilities(caps: Capabilities) -> Result<Self, StoreConfigError> {
        let size = validate(&caps)?;
        let n = usize::try_from(size.div_ceil(CHUNK as u64))
            .map_err(|_| StoreConfigError::Capacity(caps.num_blocks))?;
        let mut chunks = Vec::with_capacity(n);
        chunks.resize_with(n, || RwLock::new(Chunk::default()));
        Ok(Self {
            block: caps.block_size as usize,
            size,
            caps,
            chunks,
        })
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let bs = self.block as u64;
        if offset % bs != 0 || len % bs != 0 {
            return Err(BackendError::Other(format!(
                "unaligned access at {offset} length {len}"
            )));
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BackendError::Other(format!(
                "access at {offset} length {len} beyond {}",
                self.size
            ))),
        }
    }

    /// Calls `f(chunk index, byte offset in chunk, byte offset in request, length)` for each
    /// chunk piece of `[offset, offset + len)`.
    fn pieces(
        offset: u64,
        len: u64,
        mut f: impl FnMut(usize, usize, usize, usize) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = (CHUNK - within).min((len - done) as usize);
            f(idx, within, done as usize, n)?;
            done += n as u64;
        }
        Ok(())
    }

    fn chunk_blocks(&self) -> usize {
        CHUNK / self.block
    }

    fn set_bits(&self, c: &mut Chunk, within: usize, n: usize, on: bool) {
        if c.mapped.is_empty() {
            c.mapped = vec![0; self.chunk_blocks().div_ceil(64)];
        }
        let first = within / self.block;
        for b in first..first + n / self.block {
            if on {
                c.mapped[b / 64] |= 1 << (b % 64);
            } else {
                c.mapped[b / 64] &= !(1 << (b % 64));
            }
        }
    }

    fn write_piece(
        &self,
        idx: usize,
        within: usize,
        src: Option<&[u8]>,
        n: usize,
    ) -> Result<(), BackendError> {
        let Some(lock) = self.chunks.get(idx) else {
            return Err(BackendError::Other(format!("chunk {idx} out of range")));
        };
        let mut c = lock.write().unwrap_or_else(PoisonError::into_inner);
        if c.data.is_none() {
            if src.is_none() && !self.caps.thin_provisioned {
                // Zeroing an untouched chunk of a fully provisioned store changes nothing.
                return Ok(());
            }
            c.data = Some(vec![0u8; CHUNK].into_boxed_slice());
        }
        if let Some(data) = c.data.as_mut() {
            match src {
                Some(s) => data[within..within + n].copy_from_slice(s),
                None => data[within..within + n].fill(0),
            }
        }
        self.set_bits(&mut c, within, n, true);
        Ok(())
    }
}

impl BlockBackend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.check(offset, buf.len() as u64)?;
        Self::pieces(offset, buf.len() as u64, |idx, within, at, n| {
            let dst = &mut buf[at..at + n];
            match self.chunks.get(idx) {
                Some(lock) => {
                    let c = lock.read().unwrap_or_else(PoisonError::into_inner);
                    match c.data.as_ref() {
                        Some(d) => dst.copy_from_slice(&d[within..within + n]),
                        None => dst.fill(0),
                    }
                    Ok(())
                }
                None => Err(BackendError::Other(format!("chunk {idx} out of range"))),
            }
        })
    }

    fn write_at(&self, offset: u64, buf: &[u8], _fua: bool) -> Result<(), BackendError> {
        self.check(offset, buf.len() as u64)?;
        Self::pieces(offset, buf.len() as u64, |idx, within, at, n| {
            self.write_piece(idx, within, Some(&buf[at..at + n]), n)
        })
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check(offset, len)?;
        if !self.caps.thin_provisioned {
            return self.write_zeroes(offset, len);
        }
        Self::pieces(offset, len, |idx, within, _, n| {
            let Some(lock) = self.chunks.get(idx) else {
                return Err(BackendError::Other(format!("chunk {idx} out of range")));
            };
            let mut c = lock.write().unwrap_or_else(PoisonError::into_inner);
            if c.data.is_none() {
                return Ok(());
            }
            if let Some(d) = c.data.as_mut() {
                d[within..within + n].fill(0);
            }
            self.set_bits(&mut c, within, n, false);
            if c.mapped.iter().all(|&w| w == 0) {
                c.data = None;
                c.mapped = Vec::new();
            }
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check(offset, len)?;
        Self::pieces(offset, len, |idx, within, _, n| {
            self.write_piece(idx, within, None, n)
        })
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError> {
        let bs = self.block as u64;
        if offset % bs != 0 || offset >= self.size {
            return Err(BackendError::Other(format!(
                "allocation query at {offset} outside the store"
            )));
        }
        let len = len.min(self.size - offset) / bs * bs;
        if len == 0 {
            return Err(BackendError::Other("empty allocation query".into()));
        }
        if !self.caps.thin_provisioned {
            return Ok(AllocationExtent {
                status: Provisioning::Mapped,
                len,
            });
        }
        let status_of = |block: u64| -> Provisioning {
            let pos = block * bs;
            let idx = (pos / CHUNK as u64) as usize;
            let Some(lock) = self.chunks.get(idx) else {
                return Provisioning::Deallocated;
            };
            let c = lock.read().unwrap_or_else(PoisonError::into_inner);
            if c.data.is_none() {
                return Provisioning::Deallocated;
            }
            let b = ((pos % CHUNK as u64) / bs) as usize;
            match c.mapped.get(b / 64) {
                Some(w) if w & (1 << (b % 64)) != 0 => Provisioning::Mapped,
                _ => Provisioning::Deallocated,
            }
        };
        let first = offset / bs;
        let status = status_of(first);
        let mut n = 1u64;
        while n * bs < len && status_of(first + n) == status {
            n += 1;
        }
        Ok(AllocationExtent {
            status,
            len: n * bs,
        })
    }
}

/// A store that reads zeros and discards writes (for benchmarks of the protocol path).
///
/// ```
/// use rtgt_scsi::{BlockBackend, NullBackend};
///
/// let n = NullBackend::new(4096, 1 << 20).unwrap();
/// n.write_at(0, &[1u8; 4096], true).unwrap();
/// let mut buf = [9u8; 4096];
/// n.read_at(0, &mut buf).unwrap();
/// assert!(buf.iter().all(|&b| b == 0));
/// ```
#[derive(Debug, Clone)]
pub struct NullBackend {
    caps: Capabilities,
    size: u64,
}

impl NullBackend {
    /// A fully provisioned null store of `num_blocks` blocks of `block_size` bytes.
    pub fn new(block_size: u32, num_blocks: u64) -> Result<Self, StoreConfigError> {
        let mut caps = Capabilities::simple(block_size, num_blocks);
        caps.supports_write_zeroes = true;
        caps.supports_flush = false;
        caps.rotation_rate = 1;
        let size = validate(&caps)?;
        Ok(Self { caps, size })
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BackendError::Other(format!(
                "access at {offset} length {len} beyond {}",
                self.size
            ))),
        }
    }
}

impl BlockBackend for NullBackend {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.check(offset, buf.len() as u64)?;
        buf.fill(0);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8], _fua: bool) -> Result<(), BackendError> {
        self.check(offset, buf.len() as u64)
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn unmap(&self, _offset: u64, _len: u64) -> Result<(), BackendError> {
        Err(BackendError::Unsupported)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check(offset, len)
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError> {
        self.check(offset, len)?;
        Ok(AllocationExtent {
            status: Provisioning::Mapped,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(
            MemoryBackend::new(500, 10).unwrap_err(),
            StoreConfigError::BlockSize(500)
        );
        assert_eq!(
            MemoryBackend::new(256, 10).unwrap_err(),
            StoreConfigError::BlockSize(256)
        );
        assert!(matches!(
            MemoryBackend::new(4096, u64::MAX).unwrap_err(),
            StoreConfigError::Capacity(_)
        ));
    }

    #[test]
    fn out_of_range_and_unaligned_are_errors() {
        let m = MemoryBackend::new(512, 8).unwrap();
        let mut buf = [0u8; 512];
        assert!(m.read_at(8 * 512, &mut buf).is_err());
        assert!(m.read_at(u64::MAX - 10, &mut buf).is_err());
        assert!(m.write_at(1, &buf, false).is_err());
        assert!(m.allocation(4096, 512).is_err());
    }

    #[test]
    fn spans_chunks_and_tracks_extents() {
        let m = MemoryBackend::new(4096, 1024).unwrap(); // 4 MiB, four chunks
        let data: Vec<u8> = (0..3 * 4096).map(|i| i as u8).collect();
        let at = (CHUNK - 4096) as u64;
        m.write_at(at, &data, false).unwrap();
        let mut back = vec![0u8; data.len()];
        m.read_at(at, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            m.allocation(0, 4 * CHUNK as u64).unwrap(),
            AllocationExtent {
                status: Provisioning::Deallocated,
                len: at
            }
        );
        assert_eq!(
            m.allocation(at, 1 << 30).unwrap(),
            AllocationExtent {
                status: Provisioning::Mapped,
                len: 3 * 4096
            }
        );
        m.unmap(at + 4096, 4096).unwrap();
        assert_eq!(
            m.allocation(at, 1 << 30).unwrap(),
            AllocationExtent {
                status: Provisioning::Mapped,
                len: 4096
            }
        );
        m.read_at(at, &mut back).unwrap();
        assert!(back[4096..8192].iter().all(|&b| b == 0));
        // Zeroing keeps blocks mapped.
        m.write_zeroes(0, 4096).unwrap();
        assert_eq!(
            m.allocation(0, 8192).unwrap(),
            AllocationExtent {
                status: Provisioning::Mapped,
                len: 4096
            }
        );
    }

    #[test]
    fn unmapping_everything_frees_the_chunk() {
        let m = MemoryBackend::new(512, 2048).unwrap();
        m.write_at(0, &[1u8; 1024], false).unwrap();
        m.unmap(0, 1024).unwrap();
        assert!(m.chunks[0].read().unwrap().data.is_none());
    }

    #[test]
    fn null_backend_bounds() {
        let n = NullBackend::new(512, 8).unwrap();
        assert!(n.write_at(4096, &[0u8; 512], false).is_err());
        assert_eq!(n.unmap(0, 512), Err(BackendError::Unsupported));
    }
}
