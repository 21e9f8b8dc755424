//! Building a ring with optional setup flags, dropping the ones the kernel refuses.
//!
//! io_uring_setup(2): IORING_SETUP_SQPOLL (+ SQ_AFF for a CPU), IORING_SETUP_COOP_TASKRUN
//! (5.19+), IORING_SETUP_SINGLE_ISSUER (6.0+) and IORING_SETUP_DEFER_TASKRUN (6.1+, requires
//! SINGLE_ISSUER). Older kernels reject
//! unknown flags with EINVAL, unprivileged SQPOLL on old kernels with EPERM; the builder then
//! retries without the flag and records what was dropped.

use io_uring::IoUring;

/// Setup options of a ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingOptions {
    /// Use a kernel submission-polling thread that sleeps after this many idle milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
    /// Pin the SQPOLL thread to this CPU.
    pub sqpoll_cpu: Option<u32>,
    /// Only one thread submits (IORING_SETUP_SINGLE_ISSUER): the thread that builds the ring.
    pub single_issuer: bool,
    /// Run completion work only when the issuer waits (IORING_SETUP_DEFER_TASKRUN); implies
    /// `single_issuer`.
    pub defer_taskrun: bool,
    /// Do not interrupt the submitting thread (IPI) to run completion work; it runs at the
    /// next entry into the kernel (IORING_SETUP_COOP_TASKRUN). Cheap and almost always right
    /// for a thread that waits for completions anyway; costly IPIs hurt most in VMs.
    pub coop_taskrun: bool,
}

/// Which of the asked-for flags the ring was actually built with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedFlags {
    /// SQPOLL is active.
    pub sqpoll: bool,
    /// SINGLE_ISSUER is active.
    pub single_issuer: bool,
    /// DEFER_TASKRUN is active.
    pub defer_taskrun: bool,
    /// COOP_TASKRUN is active.
    pub coop_taskrun: bool,
}

fn try_build(entries: u32, opts: &RingOptions, flags: AppliedFlags) -> std::io::Result<IoUring> {
    let mut builder = IoUring::builder();
    if flags.sqpoll {
        builder.setup_sqpoll(opts.sqpoll_idle_ms.unwrap_or(1000));
        if let Some(cpu) = opts.sqpoll_cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
    }
    if flags.single_issuer {
        builder.setup_single_issuer();
    }
    if flags.defer_taskrun {
        builder.setup_defer_taskrun();
    }
    if flags.coop_taskrun {
        builder.setup_coop_taskrun();
    }
    if flags.defer_taskrun || flags.coop_taskrun {
        // Lets a polling caller see pending completion work without entering the kernel
        // (IORING_SQ_TASKRUN; see `ReactorRing::work_pending`).
        builder.setup_taskrun_flag();
    }
    builder.setup_cqsize(entries.saturating_mul(2));
    builder.build(entries)
}

/// Build a ring of `entries` submission slots with as many of the asked-for flags as the
/// kernel accepts (dropping DEFER_TASKRUN, then SINGLE_ISSUER, then COOP_TASKRUN, then
/// SQPOLL).
///
/// ```
/// let opts = rtgt_uring::RingOptions { single_issuer: true, ..Default::default() };
/// if let Ok((ring, applied)) = rtgt_uring::ring::build(8, &opts) {
///     assert!(ring.params().sq_entries() >= 8);
///     assert!(!applied.sqpoll);
/// }
/// ```
pub fn build(entries: u32, opts: &RingOptions) -> std::io::Result<(IoUring, AppliedFlags)> {
    let mut flags = AppliedFlags {
        sqpoll: opts.sqpoll_idle_ms.is_some() || opts.sqpoll_cpu.is_some(),
        single_issuer: opts.single_issuer || opts.defer_taskrun,
        defer_taskrun: opts.defer_taskrun,
        coop_taskrun: opts.coop_taskrun,
    };
    loop {
        match try_build(entries, opts, flags) {
            Ok(ring) => return Ok((ring, flags)),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => {
                let dropped = if flags.defer_taskrun {
                    flags.defer_taskrun = false;
                    "DEFER_TASKRUN"
                } else if flags.single_issuer {
                    flags.single_issuer = false;
                    "SINGLE_ISSUER"
                } else if flags.coop_taskrun {
                    flags.coop_taskrun = false;
                    "COOP_TASKRUN"
                } else if flags.sqpoll {
                    flags.sqpoll = false;
                    "SQPOLL"
                } else {
                    return Err(err);
                };
                tracing::debug!(flag = dropped, error = %err, "io_uring setup flag refused, retrying without it");
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ring_builds_or_reports_why() {
        match build(4, &RingOptions::default()) {
            Ok((_, applied)) => assert_eq!(applied, AppliedFlags::default()),
            Err(err) => assert!(err.raw_os_error().is_some(), "{err}"),
        }
    }

    #[test]
    fn flags_are_applied_or_dropped() {
        let opts = RingOptions {
            sqpoll_idle_ms: Some(10),
            single_issuer: false,
            defer_taskrun: true,
            ..RingOptions::default()
        };
        if let Ok((ring, applied)) = build(4, &opts) {
            assert_eq!(applied.sqpoll, ring.params().is_setup_sqpoll());
            // DEFER_TASKRUN never without SINGLE_ISSUER.
            assert!(!applied.defer_taskrun || applied.single_issuer);
        }
    }
}
