//! io_uring backing store for files and block devices (rtgt-uring).
//!
//! What it implements: the storage side of SBC-4 §5 commands (READ, WRITE with FUA,
//! SYNCHRONIZE CACHE, UNMAP, WRITE SAME, GET LBA STATUS) over io_uring (io_uring_setup(2),
//! io_uring_enter(2), io_uring_register(2)), with a thread-pool fallback of identical
//! semantics. Two ways to use it:
//!
//! - **On the engine's own ring**: open a [`BackingFile`] once, register its descriptor in the
//!   reactor's ring ([`BackingFile::register`]), push entries built with the [`sqe`] builders
//!   carrying the reactor's `user_data`, and decode the completions with [`decode_result`] and
//!   [`completion::Transfer`] (short transfers, EOF zero-fill).
//! - **Standalone**: [`Store`] opens the file, picks io_uring or the fallback (one log line
//!   says which and why; `RTGT_URING_BACKEND=threadpool` forces the fallback), implements the
//!   synchronous [`rtgt_scsi::BlockBackend`], and hands out asynchronous [`IoQueue`]s (submit
//!   many, reap completions).
//!
//! O_DIRECT alignment is handled by bouncing only what is unaligned (counted in
//! [`StatsSnapshot::bounced_ios`]); the [`streams`] feature adds read-ahead and write
//! coalescing for sequential streams on rotational storage.
//!
//! ```
//! use rtgt_scsi::BlockBackend;
//! let dir = tempfile::tempdir()?;
//! let mut cfg = rtgt_uring::StoreConfig::default();
//! cfg.backing.create = true;
//! cfg.backing.size = Some(8 << 20);
//! let store = rtgt_uring::Store::open(dir.path().join("disk.img"), &cfg)?;
//! let caps = store.capabilities();
//! assert_eq!(caps.block_size, 512);
//! store.write_at(0, &vec![1u8; 4096], false)?;
//! store.flush()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aligned;
pub mod allocation;
pub mod backing;
pub mod blkdev;
pub mod caps;
pub mod completion;
pub mod detect;
pub mod errno;
pub mod net;
pub mod queue;
pub mod ring;
mod shared;
pub mod sqe;
pub mod stats;
pub mod store;
pub mod streams;
mod sync_io;
pub mod sysfs;

pub use aligned::{AlignedBuf, Alignment};
pub use backing::{BackingFile, BackingOptions, OpenError};
pub use caps::BackingKind;
pub use completion::decode_result;
pub use detect::EngineSelect;
pub use errno::{errno_to_backend, io_to_backend};
pub use queue::{Completion, IoQueue, Op, PoolQueue, QueueFull, SubmitPolicy, UringQueue};
pub use ring::RingOptions;
pub use sqe::{FileRef, PuntPolicy};
pub use stats::StatsSnapshot;
pub use store::{BackendKind, Store, StoreConfig, StoreError};
pub use streams::{StreamsConfig, StreamsMode};
