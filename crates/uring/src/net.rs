//! A reactor's ring: one io_uring carrying a reactor's socket receives and vectored sends
//! (IORING_OP_RECV, IORING_OP_SENDMSG), its backing-store reads and writes (IORING_OP_READ /
//! WRITE and their `_FIXED` forms on registered buffers, IORING_OP_FSYNC), a wake-up receive
//! and a timer (IORING_OP_TIMEOUT) — with a **safe** interface (io_uring_enter(2),
//! io_uring_register(2)).
//!
//! The kernel reads and writes the memory of an operation after the call that submitted it has
//! returned, so that memory must stay allocated, in place and untouched until the completion
//! has been reaped. [`ReactorRing`] enforces this by **ownership**: every operation takes its
//! memory by value (a `Box` of the caller's buffer type) and hands it back in the [`Done`]
//! that reports its completion. A `Box` keeps its contents at one address however the box
//! itself is moved, so the slice the ring took from the buffer at submission stays valid, and
//! nothing else can reach the buffer while the ring holds it. Registered (fixed) buffers come
//! from a [`rtgt_affinity::NodePool`] (feature `affinity`) that the ring keeps alive while the
//! registration exists. When the ring is dropped with operations in flight it cancels them and
//! waits (bounded) for their completions; whatever the kernel still holds after that is leaked
//! rather than freed.
//!
//! All `unsafe` code of an engine that uses this ring lives here.
//!
//! ```
//! use rtgt_uring::net::{Done, Gather, ReactorRing, Returned};
//! use std::os::fd::AsRawFd;
//!
//! struct Batch(Vec<Vec<u8>>);
//! impl Gather for Batch {
//!     fn gather<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
//!         self.0.iter().for_each(|p| f(p));
//!     }
//! }
//!
//! let Ok((mut ring, _)) = ReactorRing::<Vec<u8>, Batch>::new(16, &Default::default()) else {
//!     return Ok(()); // io_uring unavailable here
//! };
//! let (a, b) = std::os::unix::net::UnixStream::pair()?;
//! let batch = Batch(vec![b"hello ".to_vec(), b"world".to_vec()]);
//! ring.send(a.as_raw_fd(), Box::new(batch), 0, 1).map_err(|_| "send")?;
//! ring.recv(b.as_raw_fd(), Box::new(vec![0u8; 64]), 0..64, 2).map_err(|_| "recv")?;
//! let mut done: Vec<Done<Vec<u8>, Batch>> = Vec::new();
//! while done.len() < 2 {
//!     ring.submit_and_wait(1)?;
//!     ring.reap(&mut done);
//! }
//! let recv = done.iter().find(|d| d.tag == 2).expect("recv completed");
//! let Returned::Buf(buf) = &recv.returned else { panic!("buffer comes back") };
//! assert_eq!(&buf[..recv.result as usize], b"hello world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use crate::ring::{AppliedFlags, RingOptions};
use crate::sqe::FileRef;

/// Memory an operation receives into or sends from, owned by the caller between operations
/// and by the ring while one is in flight.
///
/// The ring calls [`IoMem::mem_mut`] (or [`IoMem::mem`]) once, when it submits the operation,
/// and keeps the boxed value untouched until the completion is reaped.
pub trait IoMem: 'static {
    /// The bytes.
    fn mem(&self) -> &[u8];
    /// The bytes, writable.
    fn mem_mut(&mut self) -> &mut [u8];
}

impl IoMem for Vec<u8> {
    fn mem(&self) -> &[u8] {
        self
    }
    fn mem_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl IoMem for Box<[u8]> {
    fn mem(&self) -> &[u8] {
        self
    }
    fn mem_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// A vectored send's contents (e.g. several PDUs' headers, payloads and digests).
pub trait Gather: 'static {
    /// Calls `f` with every piece to send, in order.
    fn gather<'a>(&'a self, f: &mut dyn FnMut(&'a [u8]));
}

/// Most pieces one send carries; the rest of a larger batch goes in the next send.
pub const MAX_IOVECS: usize = 256;

/// A vectored send's message header and iovec array, boxed so their addresses never change.
struct MsgSpace {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOVECS],
}

impl MsgSpace {
    fn new() -> Box<Self> {
        Box::new(Self {
            hdr: libc::msghdr {
                msg_name: std::ptr::null_mut(),
                msg_namelen: 0,
                msg_iov: std::ptr::null_mut(),
                msg_iovlen: 0,
                msg_control: std::ptr::null_mut(),
                msg_controllen: 0,
                msg_flags: 0,
            },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS],
        })
    }
}

/// What an in-flight operation holds on to.
enum Held<B, S> {
    /// Slot unused.
    Free,
    /// No caller memory (fsync, wake-up, timer).
    Nothing,
    /// A receive or read/write buffer.
    Buf(Box<B>),
    /// A send batch and its message header.
    Send(Box<S>, Box<MsgSpace>),
}

struct Op<B, S> {
    tag: u64,
    held: Held<B, S>,
}

/// Memory an operation gives back with its completion.
pub enum Returned<B, S> {
    /// The operation had no caller memory.
    Nothing,
    /// The buffer of a receive, read or write.
    Buf(Box<B>),
    /// The batch of a send.
    Send(Box<S>),
}

impl<B, S> core::fmt::Debug for Returned<B, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Nothing => "Nothing",
            Self::Buf(_) => "Buf",
            Self::Send(_) => "Send",
        })
    }
}

/// A completed operation.
#[derive(Debug)]
pub struct Done<B, S> {
    /// The caller's tag given at submission.
    pub tag: u64,
    /// The CQE result: bytes transferred, or `-errno`.
    pub result: i32,
    /// The operation's memory, back to the caller.
    pub returned: Returned<B, S>,
}

/// Why an operation was not submitted; the memory comes back with it.
pub struct Refused<T> {
    /// The operation's memory.
    pub memory: T,
    /// What went wrong.
    pub error: io::Error,
}

impl<T> core::fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A reactor's io_uring with ownership-checked operations (see the module documentation).
pub struct ReactorRing<B: IoMem, S: Gather> {
    ring: IoUring,
    ops: Vec<Op<B, S>>,
    free: Vec<u32>,
    spare_msgs: Vec<Box<MsgSpace>>,
    wake_buf: Box<[u8; 64]>,
    wake_index: Option<u32>,
    timespec: Box<types::Timespec>,
    timer_index: Option<u32>,
    in_flight: usize,
    registered: bool,
    #[cfg(feature = "affinity")]
    pool: Option<rtgt_affinity::NodePool>,
}

impl<B: IoMem, S: Gather> core::fmt::Debug for ReactorRing<B, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReactorRing")
            .field("in_flight", &self.in_flight)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

/// How long dropping a ring waits for cancelled operations to complete.
const DROP_WAIT: Duration = Duration::from_secs(2);

fn checked_range(len: usize, range: &Range<usize>) -> io::Result<()> {
    if range.start <= range.end && range.end <= len && u32::try_from(range.len()).is_ok() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {range:?} outside a {len}-byte buffer"),
        ))
    }
}

impl<B: IoMem, S: Gather> ReactorRing<B, S> {
    /// Builds a ring of `entries` submission slots (see [`crate::ring::build`]).
    pub fn new(entries: u32, options: &RingOptions) -> io::Result<(Self, AppliedFlags)> {
        let (ring, applied) = crate::ring::build(entries, options)?;
        Ok((
            Self {
                ring,
                ops: Vec::with_capacity(entries as usize),
                free: Vec::with_capacity(entries as usize),
                spare_msgs: Vec::new(),
                wake_buf: Box::new([0; 64]),
                wake_index: None,
                timespec: Box::new(types::Timespec::new()),
                timer_index: None,
                in_flight: 0,
                registered: false,
                #[cfg(feature = "affinity")]
                pool: None,
            },
            applied,
        ))
    }

    /// Registers every buffer of `pool` as a fixed buffer (index = [`PoolBuf::index`]) and
    /// keeps the pool's memory alive for as long as the registration exists.
    ///
    /// [`PoolBuf::index`]: rtgt_affinity::PoolBuf::index
    #[cfg(feature = "affinity")]
    pub fn register_pool(&mut self, pool: &rtgt_affinity::NodePool) -> io::Result<()> {
        if self.registered {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "buffers already registered",
            ));
        }
        let iovecs = pool.iovecs();
        // SAFETY: the iovecs describe the pool's mapping, which stays mapped while any clone of
        // the pool lives; this ring keeps a clone until after it has been torn down (see
        // `Drop`), so the registered memory outlives the registration.
        unsafe { self.ring.submitter().register_buffers(&iovecs) }?;
        self.pool = Some(pool.clone());
        self.registered = true;
        Ok(())
    }

    /// Whether fixed buffers are registered.
    pub fn has_fixed_buffers(&self) -> bool {
        self.registered
    }

    /// Operations submitted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn alloc(&mut self, tag: u64, held: Held<B, S>) -> u32 {
        self.in_flight += 1;
        if let Some(i) = self.free.pop() {
            if let Some(op) = self.ops.get_mut(i as usize) {
                *op = Op { tag, held };
                return i;
            }
        }
        self.ops.push(Op { tag, held });
        (self.ops.len() - 1) as u32
    }

    fn release(&mut self, index: u32) -> Option<Op<B, S>> {
        let op = self.ops.get_mut(index as usize)?;
        if matches!(op.held, Held::Free) {
            return None;
        }
        let taken = core::mem::replace(
            op,
            Op {
                tag: 0,
                held: Held::Free,
            },
        );
        self.free.push(index);
        self.in_flight -= 1;
        Some(taken)
    }

    /// Pushes an entry whose memory is already owned by op `index`, submitting first when the
    /// submission queue is full. On failure the op is released and returned.
    fn push_owned(
        &mut self,
        entry: &squeue::Entry,
        index: u32,
    ) -> Result<(), (Op<B, S>, io::Error)> {
        let entry = entry.clone().user_data(u64::from(index));
        loop {
            // SAFETY: every pointer in `entry` refers to memory owned by op `index` of this
            // ring (a boxed buffer or batch and its boxed message header), by the ring itself
            // (wake-up buffer, timespec) or by a fixed-buffer registration whose pool this
            // ring keeps alive. That memory is neither moved nor accessed by anyone else until
            // the completion for `index` is reaped in `reap` (or, in `drop`, is leaked when the
            // completion never comes).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EBUSY: the completion queue is full; the caller must reap first.
                Err(e) => return Err((self.release_with(index, &e), e)),
            }
        }
    }

    fn release_with(&mut self, index: u32, error: &io::Error) -> Op<B, S> {
        tracing::debug!(%error, "io_uring submission failed");
        self.release(index).unwrap_or(Op {
            tag: 0,
            held: Held::Free,
        })
    }

    fn refused_buf((op, error): (Op<B, S>, io::Error)) -> Refused<Box<B>> {
        match op.held {
            Held::Buf(b) => Refused { memory: b, error },
            // `push_owned` releases the same op it was given, which held this buffer.
            _ => unreachable!("a buffer op holds its buffer"),
        }
    }

    /// Receives up to `range.len()` bytes from socket `fd` into `buf[range]`.
    pub fn recv(
        &mut self,
        fd: RawFd,
        mut buf: Box<B>,
        range: Range<usize>,
        tag: u64,
    ) -> Result<(), Refused<Box<B>>> {
        if let Err(error) = checked_range(buf.mem_mut().len(), &range) {
            return Err(Refused { memory: buf, error });
        }
        let mem = buf.mem_mut();
        let ptr = mem[range.clone()].as_mut_ptr();
        let entry = opcode::Recv::new(types::Fd(fd), ptr, range.len() as u32).build();
        let index = self.alloc(tag, Held::Buf(buf));
        self.push_owned(&entry, index).map_err(Self::refused_buf)
    }

    /// Sends `batch` (its pieces from byte `skip` on, at most [`MAX_IOVECS`] of them) on socket
    /// `fd` with one SENDMSG (MSG_NOSIGNAL). The result may be short: send the rest with
    /// another call.
    pub fn send(
        &mut self,
        fd: RawFd,
        batch: Box<S>,
        skip: usize,
        tag: u64,
    ) -> Result<(), Refused<Box<S>>> {
        let mut msg = self.spare_msgs.pop().unwrap_or_else(MsgSpace::new);
        let mut n = 0;
        let mut skip = skip;
        batch.gather(&mut |piece: &[u8]| {
            if piece.is_empty() || n >= MAX_IOVECS {
                return;
            }
            if skip >= piece.len() {
                skip -= piece.len();
                return;
            }
            let rest = &piece[skip..];
            skip = 0;
            msg.iov[n] = libc::iovec {
                iov_base: rest.as_ptr().cast_mut().cast(),
                iov_len: rest.len(),
            };
            n += 1;
        });
        if n == 0 {
            self.spare_msgs.push(msg);
            return Err(Refused {
                memory: batch,
                error: io::Error::new(io::ErrorKind::InvalidInput, "nothing to send"),
            });
        }
        msg.hdr.msg_iov = msg.iov.as_mut_ptr();
        msg.hdr.msg_iovlen = n as _;
        let entry = opcode::SendMsg::new(types::Fd(fd), &raw const msg.hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        let index = self.alloc(tag, Held::Send(batch, msg));
        self.push_owned(&entry, index)
            .map_err(|(op, error)| match op.held {
                Held::Send(batch, msg) => {
                    self.spare_msgs.push(msg);
                    Refused {
                        memory: batch,
                        error,
                    }
                }
                _ => unreachable!("a send op holds its batch"),
            })
    }

    /// Reads `range.len()` bytes at `offset` of `file` into `buf[range]`; `fixed` names the
    /// registered buffer holding that memory (READ_FIXED), `None` for a plain READ. A wrong
    /// index fails the operation (`-EFAULT`), it cannot reach other memory.
    pub fn read(
        &mut self,
        file: FileRef,
        offset: u64,
        mut buf: Box<B>,
        range: Range<usize>,
        fixed: Option<u16>,
        tag: u64,
    ) -> Result<(), Refused<Box<B>>> {
        if let Err(error) = checked_range(buf.mem_mut().len(), &range) {
            return Err(Refused { memory: buf, error });
        }
        let fixed = fixed.filter(|_| self.registered);
        let ptr = buf.mem_mut()[range.clone()].as_mut_ptr();
        let len = range.len() as u32;
        // SAFETY: the entry is only pushed by `push_owned`, after `buf` (which `ptr` points
        // into, range checked above) has been handed to the op that owns it until completion.
        let entry = unsafe {
            match fixed {
                Some(i) => crate::sqe::read_fixed(file, offset, ptr, len, i, 0),
                None => crate::sqe::read(file, offset, ptr, len, 0),
            }
        };
        let index = self.alloc(tag, Held::Buf(buf));
        self.push_owned(&entry, index).map_err(Self::refused_buf)
    }

    /// Writes `buf[range]` at `offset` of `file` (WRITE_FIXED with `fixed`); with `fua` the
    /// write carries RWF_DSYNC.
    #[allow(clippy::too_many_arguments)] // one per field of the SQE
    pub fn write(
        &mut self,
        file: FileRef,
        offset: u64,
        buf: Box<B>,
        range: Range<usize>,
        fixed: Option<u16>,
        fua: bool,
        tag: u64,
    ) -> Result<(), Refused<Box<B>>> {
        if let Err(error) = checked_range(buf.mem().len(), &range) {
            return Err(Refused { memory: buf, error });
        }
        let fixed = fixed.filter(|_| self.registered);
        let ptr = buf.mem()[range.clone()].as_ptr();
        let len = range.len() as u32;
        // SAFETY: as in `read`; the kernel only reads the buffer.
        let entry = unsafe {
            match fixed {
                Some(i) => crate::sqe::write_fixed(file, offset, ptr, len, i, fua, 0),
                None => crate::sqe::write(file, offset, ptr, len, fua, 0),
            }
        };
        let index = self.alloc(tag, Held::Buf(buf));
        self.push_owned(&entry, index).map_err(Self::refused_buf)
    }

    /// fdatasync(2) of `file` (SYNCHRONIZE CACHE).
    pub fn fdatasync(&mut self, file: FileRef, tag: u64) -> io::Result<()> {
        let entry = crate::sqe::fdatasync(file, 0);
        let index = self.alloc(tag, Held::Nothing);
        self.push_owned(&entry, index).map_err(|(_, e)| e)
    }

    /// Arms a receive on the wake-up socket `fd` (into a buffer of the ring) unless one is
    /// armed; its completion carries `tag`.
    pub fn arm_wake(&mut self, fd: RawFd, tag: u64) -> io::Result<()> {
        if self.wake_index.is_some() {
            return Ok(());
        }
        let ptr = self.wake_buf.as_mut_ptr();
        let entry = opcode::Recv::new(types::Fd(fd), ptr, 64).build();
        let index = self.alloc(tag, Held::Nothing);
        self.push_owned(&entry, index).map_err(|(_, e)| e)?;
        self.wake_index = Some(index);
        Ok(())
    }

    /// Arms a timer firing after `after` unless one is armed; its completion carries `tag`
    /// (result `-ETIME`).
    pub fn arm_timer(&mut self, after: Duration, tag: u64) -> io::Result<()> {
        if self.timer_index.is_some() {
            return Ok(());
        }
        *self.timespec = types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let entry = opcode::Timeout::new(&raw const *self.timespec).build();
        let index = self.alloc(tag, Held::Nothing);
        self.push_owned(&entry, index).map_err(|(_, e)| e)?;
        self.timer_index = Some(index);
        Ok(())
    }

    /// Submits what is queued without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        self.ring.submit()
    }

    /// Whether a completion is ready to reap, or completion work waits in the kernel for the
    /// next [`submit`](Self::submit) to run it, without entering the kernel to find out. A
    /// reactor that polls for a while before sleeping checks this in its loop. The second part
    /// needs a ring built with DEFER_TASKRUN or COOP_TASKRUN (which also sets TASKRUN_FLAG);
    /// on other rings only ready completions count.
    pub fn work_pending(&mut self) -> bool {
        !self.ring.completion().is_empty() || self.ring.submission().taskrun()
    }

    /// Submits what is queued and waits for at least `want` completions.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.ring.submit_and_wait(want)
    }

    /// Moves every available completion into `out`, with its memory.
    pub fn reap(&mut self, out: &mut Vec<Done<B, S>>) {
        let mut cq = self.ring.completion();
        let mut entries: [(u64, i32); 64] = [(0, 0); 64];
        loop {
            let mut n = 0;
            for cqe in cq.by_ref().take(entries.len()) {
                entries[n] = (cqe.user_data(), cqe.result());
                n += 1;
            }
            if n == 0 {
                break;
            }
            drop(cq);
            for &(ud, result) in &entries[..n] {
                self.complete(ud, result, out);
            }
            cq = self.ring.completion();
        }
    }

    fn complete(&mut self, ud: u64, result: i32, out: &mut Vec<Done<B, S>>) {
        let Ok(index) = u32::try_from(ud) else {
            return; // a cancel request's own completion
        };
        let Some(op) = self.release(index) else {
            return;
        };
        if self.wake_index == Some(index) {
            self.wake_index = None;
        }
        if self.timer_index == Some(index) {
            self.timer_index = None;
        }
        let returned = match op.held {
            Held::Free | Held::Nothing => Returned::Nothing,
            Held::Buf(b) => Returned::Buf(b),
            Held::Send(batch, msg) => {
                self.spare_msgs.push(msg);
                Returned::Send(batch)
            }
        };
        out.push(Done {
            tag: op.tag,
            result,
            returned,
        });
    }
}

/// user_data of cancel requests (never an op index).
const CANCEL_TAG: u64 = u64::MAX;

impl<B: IoMem, S: Gather> Drop for ReactorRing<B, S> {
    fn drop(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        // Cancel everything still in flight and wait, bounded, for the completions: only then
        // may the memory the kernel was given be freed.
        let live: Vec<u32> = self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| !matches!(op.held, Held::Free))
            .map(|(i, _)| i as u32)
            .collect();
        for index in live {
            let entry = opcode::AsyncCancel::new(u64::from(index))
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel request points at no memory.
            while unsafe { self.ring.submission().push(&entry) }.is_err() {
                if self.ring.submit().is_err() {
                    break;
                }
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        let mut sink = Vec::new();
        while self.in_flight > 0 && Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(_) => break,
            }
            self.reap(&mut sink);
            sink.clear();
        }
        if self.in_flight > 0 {
            tracing::error!(
                in_flight = self.in_flight,
                "io_uring operations did not finish; leaking their memory"
            );
            // The kernel may still use these: never free them.
            core::mem::forget(core::mem::take(&mut self.ops));
            core::mem::forget(core::mem::replace(&mut self.wake_buf, Box::new([0; 64])));
            core::mem::forget(core::mem::replace(
                &mut self.timespec,
                Box::new(types::Timespec::new()),
            ));
            #[cfg(feature = "affinity")]
            core::mem::forget(self.pool.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    struct Parts(Vec<Vec<u8>>);
    impl Gather for Parts {
        fn gather<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
            for p in &self.0 {
                f(p);
            }
        }
    }

    type Ring = ReactorRing<Vec<u8>, Parts>;

    fn ring() -> Option<Ring> {
        match Ring::new(8, &RingOptions::default()) {
            Ok((r, _)) => Some(r),
            Err(e) => {
                println!("skipping: io_uring unavailable ({e})");
                None
            }
        }
    }

    fn wait(ring: &mut Ring, n: usize) -> Vec<Done<Vec<u8>, Parts>> {
        let mut out = Vec::new();
        while out.len() < n {
            ring.submit_and_wait(1).expect("enter");
            ring.reap(&mut out);
        }
        out
    }

    #[test]
    fn recv_into_a_range_returns_the_buffer() {
        let Some(mut ring) = ring() else { return };
        let (mut a, b) = UnixStream::pair().expect("pair");
        ring.recv(b.as_raw_fd(), Box::new(vec![0u8; 16]), 4..12, 7)
            .expect("recv");
        assert_eq!(ring.in_flight(), 1);
        a.write_all(b"0123456789abcdef").expect("write");
        let done = wait(&mut ring, 1);
        assert_eq!((done[0].tag, done[0].result), (7, 8));
        let Returned::Buf(buf) = &done[0].returned else {
            panic!("buffer expected")
        };
        assert_eq!(&buf[..4], &[0; 4]);
        assert_eq!(&buf[4..12], b"01234567");
        assert_eq!(&buf[12..], &[0; 4]);
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn pending_work_is_seen_without_entering_the_kernel() {
        // As a reactor builds it: completion work deferred to the issuer.
        let opts = RingOptions {
            single_issuer: true,
            defer_taskrun: true,
            ..RingOptions::default()
        };
        let Ok((mut ring, applied)) = Ring::new(8, &opts) else {
            println!("skipping: io_uring unavailable");
            return;
        };
        let (mut a, b) = UnixStream::pair().expect("pair");
        ring.recv(b.as_raw_fd(), Box::new(vec![0u8; 16]), 0..16, 3)
            .expect("recv");
        ring.submit().expect("submit");
        assert!(!ring.work_pending(), "nothing has arrived yet");
        a.write_all(b"hello").expect("write");
        // The data's arrival is visible by polling memory alone (the taskrun flag when the
        // work is deferred, else a ready completion).
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while !ring.work_pending() {
            assert!(
                std::time::Instant::now() < until,
                "arrival never showed (flags {applied:?})"
            );
            std::hint::spin_loop();
        }
        // Submitting without waiting runs the deferred work and posts the completion.
        ring.submit().expect("submit");
        let mut done = Vec::new();
        ring.reap(&mut done);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].tag, done[0].result), (3, 5));
        assert!(!ring.work_pending());
    }

    #[test]
    fn out_of_range_is_refused_with_the_buffer() {
        let Some(mut ring) = ring() else { return };
        let (_a, b) = UnixStream::pair().expect("pair");
        let refused = ring
            .recv(b.as_raw_fd(), Box::new(vec![1u8; 8]), 4..9, 1)
            .expect_err("past the end");
        assert_eq!(refused.error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(*refused.memory, vec![1u8; 8]);
        let file = tempfile::tempfile().expect("tmp");
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 6..5;
        assert!(
            ring.write(
                FileRef::Fd(file.as_raw_fd()),
                0,
                Box::new(vec![0; 8]),
                bad,
                None,
                false,
                2
            )
            .is_err()
        );
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn gathered_send_skips_what_was_sent() {
        let Some(mut ring) = ring() else { return };
        let (a, mut b) = UnixStream::pair().expect("pair");
        let parts = Parts(vec![
            b"abc".to_vec(),
            Vec::new(),
            b"defg".to_vec(),
            b"h".to_vec(),
        ]);
        ring.send(a.as_raw_fd(), Box::new(parts), 2, 3)
            .expect("send");
        let done = wait(&mut ring, 1);
        assert_eq!((done[0].tag, done[0].result), (3, 6));
        assert!(matches!(done[0].returned, Returned::Send(_)));
        let mut got = [0u8; 6];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"cdefgh");
        let empty = Parts(vec![b"ab".to_vec()]);
        assert!(ring.send(a.as_raw_fd(), Box::new(empty), 2, 4).is_err());
    }

    #[test]
    fn file_write_read_and_sync() {
        let Some(mut ring) = ring() else { return };
        let file = tempfile::tempfile().expect("tmp");
        let f = FileRef::Fd(file.as_raw_fd());
        ring.write(f, 4096, Box::new(vec![0x5a; 1024]), 0..512, None, true, 1)
            .expect("write");
        assert_eq!(wait(&mut ring, 1)[0].result, 512);
        ring.read(f, 4096, Box::new(vec![0; 1024]), 512..1024, None, 2)
            .expect("read");
        let done = wait(&mut ring, 1);
        assert_eq!(done[0].result, 512);
        let Returned::Buf(buf) = &done[0].returned else {
            panic!("buffer expected")
        };
        assert!(buf[..512].iter().all(|&b| b == 0) && buf[512..].iter().all(|&b| b == 0x5a));
        ring.fdatasync(f, 3).expect("sync");
        let done = wait(&mut ring, 1);
        assert_eq!((done[0].tag, done[0].result), (3, 0));
    }

    #[test]
    fn wake_and_timer_fire_once_until_rearmed() {
        let Some(mut ring) = ring() else { return };
        let (mut a, b) = UnixStream::pair().expect("pair");
        ring.arm_wake(b.as_raw_fd(), 10).expect("wake");
        ring.arm_wake(b.as_raw_fd(), 10)
            .expect("already armed: no-op");
        ring.arm_timer(Duration::from_millis(1), 11).expect("timer");
        ring.arm_timer(Duration::from_millis(1), 11)
            .expect("already armed: no-op");
        assert_eq!(ring.in_flight(), 2);
        let done = wait(&mut ring, 1);
        assert_eq!((done[0].tag, done[0].result), (11, -libc::ETIME));
        a.write_all(&[1]).expect("wake up");
        let done = wait(&mut ring, 1);
        assert_eq!((done[0].tag, done[0].result), (10, 1));
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn dropping_with_a_pending_receive_cancels_it() {
        let Some(mut ring) = ring() else { return };
        let (_a, b) = UnixStream::pair().expect("pair");
        ring.recv(b.as_raw_fd(), Box::new(vec![0u8; 4096]), 0..4096, 1)
            .expect("recv");
        ring.submit().expect("submit");
        drop(ring); // must not return before the kernel let go of the buffer
    }

    #[cfg(feature = "affinity")]
    #[test]
    fn fixed_buffers_from_a_registered_pool() {
        struct Pooled(rtgt_affinity::PoolBuf);
        impl IoMem for Pooled {
            fn mem(&self) -> &[u8] {
                &self.0
            }
            fn mem_mut(&mut self) -> &mut [u8] {
                &mut self.0
            }
        }
        let Ok((mut ring, _)) = ReactorRing::<Pooled, Parts>::new(8, &RingOptions::default())
        else {
            return;
        };
        let cfg = rtgt_affinity::PoolConfig {
            node: None,
            buffer_size: 64 << 10,
            buffer_count: 4,
            huge_pages: rtgt_affinity::HugePages::Off,
            prefault: false,
        };
        let pool = rtgt_affinity::NodePool::new(&cfg).expect("pool");
        ring.register_pool(&pool).expect("register");
        assert!(ring.register_pool(&pool).is_err(), "only once");
        let cache = pool.cache(4);
        let mut buf = cache.get().expect("buffer");
        buf[..4096].fill(0xc3);
        let index = buf.index() as u16;
        let file = tempfile::tempfile().expect("tmp");
        let f = FileRef::Fd(file.as_raw_fd());
        ring.write(f, 0, Box::new(Pooled(buf)), 0..4096, Some(index), false, 1)
            .expect("write_fixed");
        let mut out = Vec::new();
        while out.is_empty() {
            ring.submit_and_wait(1).expect("enter");
            ring.reap(&mut out);
        }
        assert_eq!(out[0].result, 4096);
        let Returned::Buf(mut back) = out.pop().expect("done").returned else {
            panic!("buffer expected")
        };
        back.0[..4096].fill(0);
        // The wrong fixed index cannot reach other memory: the kernel refuses it.
        ring.read(f, 0, back, 0..4096, Some(index ^ 1), 2)
            .expect("read_fixed");
        while out.is_empty() {
            ring.submit_and_wait(1).expect("enter");
            ring.reap(&mut out);
        }
        assert_eq!(out[0].result, -libc::EFAULT);
        let Returned::Buf(back) = out.pop().expect("done").returned else {
            panic!("buffer expected")
        };
        ring.read(f, 0, back, 0..4096, Some(index), 3)
            .expect("read_fixed");
        while out.is_empty() {
            ring.submit_and_wait(1).expect("enter");
            ring.reap(&mut out);
        }
        assert_eq!(out[0].result, 4096);
        let Returned::Buf(back) = out.pop().expect("done").returned else {
            panic!("buffer expected")
        };
        assert!(back.0[..4096].iter().all(|&b| b == 0xc3));
    }
}
