//! Decoding completions of backing-store I/O: errno mapping and short transfers.
//!
//! A CQE's `res` is a byte count or a negated errno (io_uring_enter(2), "CQE"). Reads and
//! writes may transfer less than asked (preadv2(2)/pwritev2(2)); the rest is resubmitted. A read
//! that meets the end of the file inside the logical unit's capacity returns zeros for the
//! part past the end (SBC-4 §4.7: every LBA up to the capacity is readable), so a backing file
//! truncated behind our back still reads; past the capacity it is an error.

use rtgt_scsi::BackendError;

use crate::errno::errno_to_backend;

/// Turn a completion result into a byte count or the backend error for its errno.
///
/// ```
/// use rtgt_scsi::BackendError;
/// assert_eq!(rtgt_uring::decode_result(4096, "read"), Ok(4096));
/// assert_eq!(rtgt_uring::decode_result(-libc::ENOSPC, "write"), Err(BackendError::NoSpace));
/// ```
pub fn decode_result(res: i32, what: &str) -> Result<usize, BackendError> {
    if res < 0 {
        Err(errno_to_backend(-res, what))
    } else {
        Ok(res as usize)
    }
}

/// Direction of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// File to memory.
    Read,
    /// Memory to file.
    Write,
}

/// What to do after a completion of a [`Transfer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// All bytes transferred.
    Done,
    /// Submit the rest: `len` bytes at file `offset`, from/to `buf_pos` bytes into the buffer.
    Resubmit {
        /// File offset of the remainder.
        offset: u64,
        /// Position of the remainder in the caller's buffer.
        buf_pos: usize,
        /// Bytes left.
        len: usize,
    },
    /// The file ended inside the logical unit: fill `len` bytes at `buf_pos` of the buffer
    /// with zeros; then the read is complete.
    ZeroFill {
        /// Position in the caller's buffer.
        buf_pos: usize,
        /// Bytes to zero.
        len: usize,
    },
}

/// How many times an EAGAIN/EINTR completion is retried before giving up.
const MAX_RETRIES: u32 = 64;

/// Progress of one read or write, for resubmitting short transfers.
///
/// ```
/// use rtgt_uring::completion::{Direction, Next, Transfer};
/// let mut t = Transfer::new(Direction::Read, 0, 8192, 1 << 20, 1);
/// assert_eq!(t.on_result(4096), Ok(Next::Resubmit { offset: 4096, buf_pos: 4096, len: 4096 }));
/// assert_eq!(t.on_result(0), Ok(Next::ZeroFill { buf_pos: 4096, len: 4096 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    dir: Direction,
    offset: u64,
    len: usize,
    done: usize,
    capacity: u64,
    align: u64,
    retries: u32,
}

impl Transfer {
    /// A transfer of `len` bytes at `offset` in a logical unit of `capacity` bytes; `align` is
    /// the O_DIRECT offset alignment (1 when buffered).
    pub fn new(dir: Direction, offset: u64, len: usize, capacity: u64, align: u64) -> Self {
        Self {
            dir,
            offset,
            len,
            done: 0,
            capacity,
            align: align.max(1),
            retries: 0,
        }
    }

    /// Bytes transferred so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Total length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the transfer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current remainder (what to submit next).
    pub fn remainder(&self) -> Next {
        if self.done >= self.len {
            Next::Done
        } else {
            Next::Resubmit {
                offset: self.offset + self.done as u64,
                buf_pos: self.done,
                len: self.len - self.done,
            }
        }
    }

    /// Account for a completion with result `res`.
    pub fn on_result(&mut self, res: i32) -> Result<Next, BackendError> {
        let what = match self.dir {
            Direction::Read => "read",
            Direction::Write => "write",
        };
        if res == -libc::EAGAIN || res == -libc::EINTR {
            self.retries += 1;
            if self.retries > MAX_RETRIES {
                return Err(errno_to_backend(-res, what));
            }
            return Ok(self.remainder());
        }
        let n = decode_result(res, what)?;
        let left = self.len - self.done;
        if n > left {
            return Err(BackendError::Other(format!(
                "{what}: kernel reported {n} > {left} bytes"
            )));
        }
        self.done += n;
        if self.done == self.len {
            return Ok(Next::Done);
        }
        let pos = self.offset + self.done as u64;
        match self.dir {
            Direction::Read => {
                // Direct I/O only stops at an unaligned position at the end of the file.
                let at_eof = n == 0 || pos % self.align != 0;
                if !at_eof {
                    return Ok(self.remainder());
                }
                if self.offset + self.len as u64 > self.capacity {
                    return Err(BackendError::Other(format!(
                        "read past the end of the logical unit at byte {pos}"
                    )));
                }
                let fill = Next::ZeroFill {
                    buf_pos: self.done,
                    len: self.len - self.done,
                };
                self.done = self.len;
                Ok(fill)
            }
            Direction::Write if n == 0 => Err(BackendError::Other(format!(
                "write made no progress at byte {pos}"
            ))),
            Direction::Write => Ok(self.remainder()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_transfer_is_done() {
        let mut t = Transfer::new(Direction::Write, 512, 4096, 1 << 20, 512);
        assert_eq!(t.on_result(4096), Ok(Next::Done));
        assert_eq!(t.done(), 4096);
    }

    #[test]
    fn short_write_resubmits_the_rest() {
        let mut t = Transfer::new(Direction::Write, 1000, 3000, 1 << 20, 1);
        assert_eq!(
            t.on_result(1000),
            Ok(Next::Resubmit {
                offset: 2000,
                buf_pos: 1000,
                len: 2000
            })
        );
        assert_eq!(t.on_result(2000), Ok(Next::Done));
    }

    #[test]
    fn zero_byte_write_is_an_error() {
        let mut t = Transfer::new(Direction::Write, 0, 512, 1 << 20, 1);
        assert!(matches!(t.on_result(0), Err(BackendError::Other(_))));
    }

    #[test]
    fn eof_inside_capacity_zero_fills_outside_errors() {
        let mut t = Transfer::new(Direction::Read, 4096, 4096, 8192, 1);
        assert_eq!(
            t.on_result(0),
            Ok(Next::ZeroFill {
                buf_pos: 0,
                len: 4096
            })
        );
        let mut beyond = Transfer::new(Direction::Read, 8192, 4096, 8192, 1);
        assert!(matches!(beyond.on_result(0), Err(BackendError::Other(_))));
    }

    #[test]
    fn direct_short_read_at_unaligned_position_is_eof() {
        let mut t = Transfer::new(Direction::Read, 0, 4096, 1 << 20, 512);
        assert_eq!(
            t.on_result(100),
            Ok(Next::ZeroFill {
                buf_pos: 100,
                len: 3996
            })
        );
        let mut aligned = Transfer::new(Direction::Read, 0, 4096, 1 << 20, 512);
        assert_eq!(
            aligned.on_result(1024),
            Ok(Next::Resubmit {
                offset: 1024,
                buf_pos: 1024,
                len: 3072
            })
        );
    }

    #[test]
    fn errno_and_retry() {
        let mut t = Transfer::new(Direction::Read, 0, 512, 1 << 20, 1);
        assert!(matches!(
            t.on_result(-libc::EIO),
            Err(BackendError::Medium(_))
        ));
        let mut r = Transfer::new(Direction::Read, 0, 512, 1 << 20, 1);
        assert_eq!(
            r.on_result(-libc::EAGAIN),
            Ok(Next::Resubmit {
                offset: 0,
                buf_pos: 0,
                len: 512
            })
        );
        for _ in 0..MAX_RETRIES {
            let _ = r.on_result(-libc::EINTR);
        }
        assert!(r.on_result(-libc::EINTR).is_err());
        let mut over = Transfer::new(Direction::Read, 0, 512, 1 << 20, 1);
        assert!(over.on_result(1024).is_err());
    }
}
