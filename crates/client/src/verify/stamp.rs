//! Self-describing block contents for data-integrity checks: every logical block written by
//! `verify` carries its LBA, the write's generation, the run's seed, a pattern derived from
//! those three, and a CRC32C over all of it (the same CRC32C as iSCSI digests, RFC 7143 §13.1,
//! so the hardware path is used). A block read back is classified without any other state:
//! never written, from another run, torn (checksum mismatch), misplaced, or a valid stamp.
//!
//! ```
//! use rtgt_client::verify::stamp::{Observed, check, stamp};
//!
//! let mut block = vec![0u8; 512];
//! stamp(&mut block, 42, 7, 0xfeed);
//! assert_eq!(check(&block, 42, 0xfeed), Observed::Stamp { generation: 7 });
//! block[100] ^= 1;
//! assert_eq!(check(&block, 42, 0xfeed), Observed::Torn);
//! ```

use crate::rng::mix;

/// Marks a block written by this tool.
pub const MAGIC: [u8; 8] = *b"RTGTVFY1";
/// Smallest block the stamp fits in.
pub const MIN_BLOCK: usize = 64;

/// What a block read back contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Observed {
    /// A valid stamp of this run for this LBA.
    Stamp {
        /// The generation written.
        generation: u64,
    },
    /// All zeros: never written (or lost).
    Unwritten,
    /// Not one of our stamps (other data, or a stamp of another run).
    Foreign,
    /// Our magic but the checksum does not match: a partially written block.
    Torn,
    /// A valid stamp for another LBA (misdirected write or read).
    Misplaced {
        /// The LBA the stamp names.
        lba: u64,
    },
}

/// Fills `block` with the stamp of (`lba`, `generation`, `seed`).
pub fn stamp(block: &mut [u8], lba: u64, generation: u64, seed: u64) {
    let n = block.len();
    if n < MIN_BLOCK {
        return;
    }
    block[..8].copy_from_slice(&MAGIC);
    block[8..16].copy_from_slice(&lba.to_le_bytes());
    block[16..24].copy_from_slice(&generation.to_le_bytes());
    block[24..32].copy_from_slice(&seed.to_le_bytes());
    let base = seed ^ lba.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation.rotate_left(32);
    let body_end = n - 4;
    for (i, chunk) in block[32..body_end].chunks_mut(8).enumerate() {
        let v = mix(base.wrapping_add(i as u64)).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let crc = rtgt_pdu::crc32c(&block[..body_end]);
    block[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// Classifies a block read back at `lba` in a run with `seed`.
pub fn check(block: &[u8], lba: u64, seed: u64) -> Observed {
    let n = block.len();
    if n < MIN_BLOCK {
        return Observed::Foreign;
    }
    if block[..8] != MAGIC {
        return if block.iter().all(|b| *b == 0) {
            Observed::Unwritten
        } else {
            Observed::Foreign
        };
    }
    let body_end = n - 4;
    let crc = u32::from_le_bytes([
        block[body_end],
        block[body_end + 1],
        block[body_end + 2],
        block[body_end + 3],
    ]);
    if rtgt_pdu::crc32c(&block[..body_end]) != crc {
        return Observed::Torn;
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&block[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if word(24) != seed {
        return Observed::Foreign;
    }
    let stamped_lba = word(8);
    if stamped_lba != lba {
        return Observed::Misplaced { lba: stamped_lba };
    }
    Observed::Stamp {
        generation: word(16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let mut b = vec![0u8; 4096];
        assert_eq!(check(&b, 0, 1), Observed::Unwritten);
        stamp(&mut b, 9, 3, 1);
        assert_eq!(check(&b, 9, 1), Observed::Stamp { generation: 3 });
        assert_eq!(check(&b, 10, 1), Observed::Misplaced { lba: 9 });
        assert_eq!(check(&b, 9, 2), Observed::Foreign, "another run's stamp");
        let mut other = b.clone();
        other[0] = b'X';
        assert_eq!(check(&other, 9, 1), Observed::Foreign);
        // Half old, half new: a torn write.
        let mut newer = vec![0u8; 4096];
        stamp(&mut newer, 9, 4, 1);
        let mut torn = b.clone();
        torn[2048..].copy_from_slice(&newer[2048..]);
        assert_eq!(check(&torn, 9, 1), Observed::Torn);
        // Stamps differ per generation everywhere, not just in the header.
        assert_ne!(b[100..200], newer[100..200]);
    }

    #[test]
    fn tiny_blocks_are_never_valid() {
        let mut b = [0u8; 32];
        stamp(&mut b, 1, 1, 1);
        assert_eq!(check(&b, 1, 1), Observed::Foreign);
    }
}
