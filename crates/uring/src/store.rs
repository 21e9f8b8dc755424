//! The standalone store: a backing file with its own rings (or the thread-pool fallback),
//! the synchronous [`BlockBackend`] implementation, and asynchronous queues.
//!
//! SBC-4 §5 commands map to: READ → read, WRITE (FUA → RWF_DSYNC) → write, SYNCHRONIZE CACHE
//! → fdatasync, UNMAP / WRITE SAME with UNMAP → fallocate(PUNCH_HOLE), WRITE SAME of zeros →
//! fallocate(ZERO_RANGE), GET LBA STATUS → SEEK_DATA/SEEK_HOLE (see [`crate::allocation`]).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rtgt_scsi::{AllocationExtent, BackendError, BlockBackend, Capabilities, Provisioning};

use crate::aligned::AlignedBuf;
use crate::backing::{BackingFile, BackingOptions, OpenError};
use crate::caps::BackingKind;
use crate::detect::{Availability, EngineSelect};
use crate::queue::{IoQueue, PoolQueue, SubmitPolicy, ThreadPool, UringQueue};
use crate::ring::RingOptions;
use crate::shared::{OpKind, Shared};
use crate::sqe::PuntPolicy;
use crate::stats::StatsSnapshot;
use crate::streams::layer::StreamLayer;
use crate::streams::{StreamsConfig, StreamsConfigError};

/// Depth of the small rings used by synchronous calls.
const SYNC_DEPTH: u32 = 4;

/// Configuration of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// How to open the backing file.
    pub backing: BackingOptions,
    /// io_uring, the thread pool, or automatic (overridden by `RTGT_URING_BACKEND`).
    pub engine: EngineSelect,
    /// Queue depth of asynchronous queues. Default 128.
    pub queue_depth: u32,
    /// Ring setup flags for asynchronous queues. Default: COOP_TASKRUN only.
    pub ring: RingOptions,
    /// Worker threads of the fallback (0 = the queue depth, at most 64).
    pub pool_threads: usize,
    /// Read-ahead and write coalescing.
    pub streams: StreamsConfig,
    /// Which buffered transfers of asynchronous queues go straight to io-wq workers.
    pub punt: PuntPolicy,
    /// When asynchronous queues hand pushed operations to the kernel. Default
    /// [`SubmitPolicy::Auto`]: at once for O_DIRECT, batched at the next submit/wait for
    /// buffered I/O.
    pub submit: SubmitPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backing: BackingOptions::default(),
            engine: EngineSelect::Auto,
            queue_depth: 128,
            ring: RingOptions {
                coop_taskrun: true,
                ..RingOptions::default()
            },
            pool_threads: 0,
            streams: StreamsConfig::default(),
            punt: PuntPolicy::default(),
            submit: SubmitPolicy::Auto,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing file could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// io_uring was required (`engine = uring`) but is unavailable.
    #[error("io_uring required but unavailable: {0}")]
    UringUnavailable(String),
    /// A streams setting is invalid.
    #[error(transparent)]
    Streams(#[from] StreamsConfigError),
    /// The fallback's threads could not be started, or similar.
    #[error("{0}")]
    Backend(#[from] BackendError),
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring.
    Uring,
    /// The thread-pool fallback.
    ThreadPool,
}

enum Engine {
    Uring { sync: Mutex<Vec<UringQueue>> },
    Pool { pool: OnceLock<Arc<ThreadPool>> },
}

/// A backing store over a file or block device (see the crate documentation).
pub struct Store {
    shared: Arc<Shared>,
    engine: Engine,
    kind: BackendKind,
    reason: String,
    config: StoreConfig,
    streams: Option<StreamLayer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.backing.path())
            .field("backend", &self.kind)
            .field("streams", &self.streams.is_some())
            .finish_non_exhaustive()
    }
}

/// Rings of synchronous calls are shared by threads (no SINGLE_ISSUER) and never poll.
fn sync_ring() -> RingOptions {
    RingOptions {
        coop_taskrun: true,
        ..RingOptions::default()
    }
}

/// Synchronous callers wait anyway: reads run inline, writes follow the configuration.
fn sync_punt(configured: PuntPolicy) -> PuntPolicy {
    PuntPolicy {
        buffered_read_min: None,
        ..configured
    }
}

fn auto_detect() -> Availability {
    static DETECTED: OnceLock<Availability> = OnceLock::new();
    DETECTED
        .get_or_init(|| crate::detect::detect(Path::new("/proc")))
        .clone()
}

impl Store {
    /// Open a store over `path`.
    ///
    /// ```
    /// use rtgt_scsi::BlockBackend;
    /// let dir = tempfile::tempdir()?;
    /// let mut cfg = rtgt_uring::StoreConfig::default();
    /// cfg.backing.create = true;
    /// cfg.backing.size = Some(1 << 20);
    /// let store = rtgt_uring::Store::open(dir.path().join("lu.img"), &cfg)?;
    /// store.write_at(4096, &[0xAB; 512], true)?;
    /// let mut back = [0u8; 512];
    /// store.read_at(4096, &mut back)?;
    /// assert_eq!(back, [0xAB; 512]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, config: &StoreConfig) -> Result<Self, StoreError> {
        config.streams.validate()?;
        let backing = BackingFile::open(path.as_ref(), &config.backing)?;
        Self::with_backing(backing, config)
    }

    /// Build a store over an already opened backing file.
    pub fn with_backing(backing: BackingFile, config: &StoreConfig) -> Result<Self, StoreError> {
        config.streams.validate()?;
        let shared = Arc::new(Shared::new(backing));
        let select = config.engine.with_env_override();
        let (kind, reason) = match select {
            EngineSelect::ThreadPool => (
                BackendKind::ThreadPool,
                "forced by configuration or RTGT_URING_BACKEND".to_owned(),
            ),
            EngineSelect::Uring | EngineSelect::Auto => match auto_detect() {
                Availability::Available => (BackendKind::Uring, "io_uring available".to_owned()),
                Availability::Unavailable(why) if select == EngineSelect::Uring => {
                    return Err(StoreError::UringUnavailable(why));
                }
                Availability::Unavailable(why) => (BackendKind::ThreadPool, why),
            },
        };
        // A first ring proves io_uring works for this file (and serves synchronous calls).
        let (kind, reason, engine) = match kind {
            BackendKind::Uring => {
                match UringQueue::new(
                    Arc::clone(&shared),
                    SYNC_DEPTH,
                    &sync_ring(),
                    sync_punt(config.punt),
                    SubmitPolicy::AtWait,
                ) {
                    Ok(q) => (
                        kind,
                        reason,
                        Engine::Uring {
                            sync: Mutex::new(vec![q]),
                        },
                    ),
                    Err(e) if select == EngineSelect::Uring => {
                        return Err(StoreError::UringUnavailable(e.to_string()));
                    }
                    Err(e) => (
                        BackendKind::ThreadPool,
                        format!("creating a ring failed: {e}"),
                        Engine::Pool {
                            pool: OnceLock::new(),
                        },
                    ),
                }
            }
            BackendKind::ThreadPool => (
                kind,
                reason,
                Engine::Pool {
                    pool: OnceLock::new(),
                },
            ),
        };
        let path = shared.backing.path().display().to_string();
        match kind {
            BackendKind::Uring => {
                tracing::info!(path, backend = "io_uring", reason, "backing store ready");
            }
            BackendKind::ThreadPool if select == EngineSelect::ThreadPool => {
                tracing::info!(path, backend = "thread-pool", reason, "backing store ready");
            }
            BackendKind::ThreadPool => {
                tracing::warn!(
                    path,
                    backend = "thread-pool",
                    reason,
                    "backing store using the fallback"
                );
            }
        }
        let streams = config
            .streams
            .enabled_for(shared.backing.is_rotational())
            .then(|| {
                StreamLayer::new(
                    &config.streams,
                    shared.backing.size_bytes(),
                    shared.backing.alignment().buffer_align(),
                )
            });
        Ok(Self {
            shared,
            engine,
            kind,
            reason,
            config: config.clone(),
            streams,
        })
    }

    /// Which backend this store runs on.
    pub fn backend_kind(&self) -> BackendKind {
        self.kind
    }

    /// Why this backend was chosen (the text of the log line).
    pub fn backend_reason(&self) -> &str {
        &self.reason
    }

    /// Whether read-ahead and write coalescing are on.
    pub fn streams_enabled(&self) -> bool {
        self.streams.is_some()
    }

    /// Whether operations on this store go to the kernel as they are queued rather than with
    /// the next batch ([`StoreConfig::submit`]: by default, when the backing is O_DIRECT). An
    /// engine that submits the store's operations on its own ring follows this too.
    pub fn submits_immediately(&self) -> bool {
        self.config
            .submit
            .immediate(self.shared.backing.is_direct())
    }

    /// The backing file.
    pub fn backing(&self) -> &BackingFile {
        &self.shared.backing
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// A buffer aligned for this store.
    pub fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::new(
            len,
            self.shared.backing.alignment().buffer_align().max(4096),
        )
    }

    /// A new asynchronous queue of the configured depth (its own ring, or a handle on the
    /// thread pool). Make one per thread, on that thread (SINGLE_ISSUER binds a ring to its
    /// creator).
    ///
    /// ```
    /// use rtgt_uring::{Op, Store, StoreConfig};
    /// let dir = tempfile::tempdir()?;
    /// let mut cfg = StoreConfig::default();
    /// cfg.backing.create = true;
    /// cfg.backing.size = Some(1 << 20);
    /// let store = Store::open(dir.path().join("lu.img"), &cfg)?;
    /// let mut q = store.queue()?;
    /// for i in 0..8u64 {
    ///     let mut buf = q.alloc_buf(4096);
    ///     buf.as_mut_slice().fill(i as u8);
    ///     q.push(Op::Write { offset: i * 4096, buf, fua: false }, i).unwrap();
    /// }
    /// let mut done = Vec::new();
    /// while done.len() < 8 {
    ///     q.wait(1, &mut done)?;
    /// }
    /// assert!(done.iter().all(|c| c.result == Ok(4096)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue(&self) -> Result<IoQueue, BackendError> {
        let depth = self.config.queue_depth;
        match &self.engine {
            Engine::Uring { .. } => Ok(IoQueue::Uring(UringQueue::new(
                Arc::clone(&self.shared),
                depth,
                &self.config.ring,
                self.config.punt,
                self.config.submit,
            )?)),
            Engine::Pool { .. } => Ok(IoQueue::Pool(PoolQueue::new(
                self.pool()?,
                Arc::clone(&self.shared),
                depth,
                self.config.submit,
            ))),
        }
    }

    fn pool(&self) -> Result<Arc<ThreadPool>, BackendError> {
        let Engine::Pool { pool } = &self.engine else {
            return Err(BackendError::Other("not a thread-pool store".into()));
        };
        if let Some(p) = pool.get() {
            return Ok(Arc::clone(p));
        }
        let threads = match self.config.pool_threads {
            0 => (self.config.queue_depth as usize).clamp(2, 64),
            n => n,
        };
        let fresh = Arc::new(ThreadPool::new(&self.shared, threads)?);
        Ok(Arc::clone(pool.get_or_init(|| fresh)))
    }

    /// Run one synchronous operation on whichever engine.
    ///
    /// # Safety
    /// For reads/writes `ptr` is valid for `len` bytes for the whole call.
    unsafe fn run(
        &self,
        kind: OpKind,
        offset: u64,
        ptr: *mut u8,
        len: usize,
    ) -> Result<usize, BackendError> {
        match &self.engine {
            Engine::Uring { sync } => {
                let taken = sync.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let mut q = match taken {
                    Some(q) => q,
                    None => UringQueue::new(
                        Arc::clone(&self.shared),
                        SYNC_DEPTH,
                        &sync_ring(),
                        sync_punt(self.config.punt),
                        SubmitPolicy::AtWait,
                    )?,
                };
                let result = match kind {
                    // SAFETY: forwarded contract.
                    OpKind::Read | OpKind::Write { .. } => unsafe {
                        q.run_sync(kind, offset, ptr, len)
                    },
                    _ => q.run_sync_other(kind, offset, len as u64),
                };
                sync.lock().unwrap_or_else(PoisonError::into_inner).push(q);
                result
            }
            Engine::Pool { .. } => self.run_inline(kind, offset, ptr, len),
        }
    }

    /// The fallback's synchronous path: the same preparation, executed on the caller's thread.
    fn run_inline(
        &self,
        kind: OpKind,
        offset: u64,
        ptr: *mut u8,
        len: usize,
    ) -> Result<usize, BackendError> {
        use crate::queue::prep_api as prep;
        let shared = &self.shared;
        let result = match kind {
            OpKind::Read | OpKind::Write { .. } => {
                // SAFETY: `ptr` is valid for `len` bytes for the whole call (caller contract).
                let prepared = unsafe {
                    match kind {
                        OpKind::Read => prep::read(shared, offset, ptr, len),
                        OpKind::Write { fua } => prep::write(shared, offset, ptr, len, fua),
                        _ => unreachable!("matched above"),
                    }
                };
                match prepared {
                    prep::Prep::Done(r) => r,
                    prep::Prep::Go(p) => {
                        // SAFETY: `p.ptr` is the caller's memory or the bounce buffer in `p`.
                        let r = unsafe { prep::exec(shared, kind, p.offset, p.ptr, p.len) };
                        if kind == OpKind::Read && r.is_ok() {
                            // SAFETY: `ptr` is the caller's buffer of `len` bytes.
                            unsafe { prep::finish_read(p.bounce.as_ref(), p.copy_out, ptr) };
                        }
                        r.map(|_| len)
                    }
                }
            }
            _ => {
                let check = match kind {
                    OpKind::Flush => Ok(()),
                    _ => shared
                        .check_writable()
                        .and_then(|()| shared.check_range(offset, len as u64)),
                };
                // SAFETY: range operations do not touch memory.
                check.and_then(|()| unsafe {
                    prep::exec(shared, kind, offset, std::ptr::null_mut(), len)
                })
            }
        };
        shared.note(kind, &result);
        result
    }

    fn raw_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        // SAFETY: `buf` is borrowed mutably for the whole call.
        unsafe { self.run(OpKind::Read, offset, buf.as_mut_ptr(), buf.len()) }.map(|_| ())
    }

    fn raw_write(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), BackendError> {
        // SAFETY: `buf` is borrowed for the whole call and only read.
        unsafe {
            self.run(
                OpKind::Write { fua },
                offset,
                buf.as_ptr().cast_mut(),
                buf.len(),
            )
        }
        .map(|_| ())
    }

    fn range_op(&self, kind: OpKind, offset: u64, len: u64) -> Result<(), BackendError> {
        let n = usize::try_from(len).map_err(|_| BackendError::Other("range too long".into()))?;
        if let Some(s) = &self.streams {
            s.invalidate(offset, len);
        }
        // SAFETY: range operations do not touch memory.
        let result = unsafe { self.run(kind, offset, std::ptr::null_mut(), n) }.map(|_| ());
        if let Some(s) = &self.streams {
            s.invalidate(offset, len);
        }
        result
    }
}

impl BlockBackend for Store {
    fn capabilities(&self) -> Capabilities {
        self.shared.backing.capabilities()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        match &self.streams {
            Some(s) => s.read(offset, buf, &self.shared.stats, &|o, b| self.raw_read(o, b)),
            None => self.raw_read(offset, buf),
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), BackendError> {
        match &self.streams {
            Some(s) => s.write(offset, buf, fua, &self.shared.stats, &|o, b, f| {
                self.raw_write(o, b, f)
            }),
            None => self.raw_write(offset, buf, fua),
        }
    }

    fn flush(&self) -> Result<(), BackendError> {
        if let Some(s) = &self.streams {
            s.release_batches();
        }
        // SAFETY: a flush does not touch memory.
        unsafe { self.run(OpKind::Flush, 0, std::ptr::null_mut(), 0) }.map(|_| ())
    }

    fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.range_op(OpKind::Unmap, offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.range_op(OpKind::WriteZeroes, offset, len)
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError> {
        let backing = &self.shared.backing;
        let size = backing.size_bytes();
        if offset >= size {
            return Err(BackendError::Other(format!(
                "allocation query at {offset} beyond the store's {size} bytes"
            )));
        }
        // The extent never reaches past the end of the store.
        let len = len.min(size - offset);
        let bs = backing.capabilities().block_size;
        match backing.kind() {
            BackingKind::File => crate::allocation::extent(backing.as_fd(), offset, len, bs),
            BackingKind::BlockDevice => Ok(AllocationExtent {
                status: Provisioning::Mapped,
                len: len.max(u64::from(bs)),
            }),
        }
    }
}
