//! Pinning the calling thread to CPUs.
//!
//! Wraps `sched_setaffinity(2)`/`sched_getaffinity(2)` with pid 0 (the calling thread), as
//! described in the Linux man pages; the mask is the glibc `cpu_set_t` of `CPU_SETSIZE` bits.
//! This is the only module besides the buffer pool's memory code that uses `unsafe`.

use crate::cpuset::CpuSet;
use crate::error::{AffinityError, Result};
use crate::topology::Topology;

/// Largest CPU number that fits in the kernel mask used here (`CPU_SETSIZE - 1`).
pub const MAX_PINNABLE_CPU: u32 = libc::CPU_SETSIZE as u32 - 1;

/// Restricts the calling thread to the CPUs of `cpus`.
///
/// ```
/// use rtgt_affinity::{current_thread_affinity, pin_current_thread};
///
/// std::thread::spawn(|| {
///     let allowed = current_thread_affinity()?;
///     let one = allowed.first().unwrap();
///     pin_current_thread(&[one].into_iter().collect())?;
///     assert_eq!(current_thread_affinity()?.to_vec(), vec![one]);
///     Ok::<(), rtgt_affinity::AffinityError>(())
/// })
/// .join()
/// .unwrap()?;
/// # Ok::<(), rtgt_affinity::AffinityError>(())
/// ```
pub fn pin_current_thread(cpus: &CpuSet) -> Result<()> {
    if cpus.is_empty() {
        return Err(AffinityError::Placement(
            "cannot pin a thread to an empty CPU set".into(),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the valid empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus.iter() {
        if cpu > MAX_PINNABLE_CPU {
            return Err(AffinityError::CpuOutOfRange {
                cpu,
                max: MAX_PINNABLE_CPU,
            });
        }
        // SAFETY: `cpu` < CPU_SETSIZE was checked above, so CPU_SET stays inside the mask.
        unsafe { libc::CPU_SET(cpu as usize, &mut mask) };
    }
    // SAFETY: `mask` is a valid, initialised cpu_set_t and the size passed is its own size;
    // pid 0 names the calling thread.
    let rc = unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const mask)
    };
    if rc != 0 {
        return Err(AffinityError::syscall("sched_setaffinity"));
    }
    Ok(())
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread_to_cpu(cpu: u32) -> Result<()> {
    pin_current_thread(&[cpu].into_iter().collect())
}

/// Pins the calling thread to all CPUs of a NUMA node; returns that set.
pub fn pin_current_thread_to_node(topology: &Topology, node: u32) -> Result<CpuSet> {
    let cpus =
        topology
            .node(node)
            .map(|n| n.cpus.clone())
            .ok_or_else(|| AffinityError::UnknownNode {
                node,
                nodes: topology.node_list(),
            })?;
    pin_current_thread(&cpus)?;
    Ok(cpus)
}

/// The CPUs the calling thread may run on.
pub fn current_thread_affinity() -> Result<CpuSet> {
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is writable and its exact size is passed; pid 0 is the calling thread.
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut mask)
    };
    if rc != 0 {
        return Err(AffinityError::syscall("sched_getaffinity"));
    }
    let mut set = CpuSet::new();
    for cpu in 0..=MAX_PINNABLE_CPU {
        // SAFETY: `cpu` < CPU_SETSIZE, inside the mask.
        if unsafe { libc::CPU_ISSET(cpu as usize, &mask) } {
            set.insert(cpu);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_each_allowed_cpu_and_read_back() {
        std::thread::spawn(|| {
            let allowed = current_thread_affinity().unwrap();
            assert!(!allowed.is_empty());
            for cpu in allowed.iter() {
                pin_current_thread_to_cpu(cpu).unwrap();
                assert_eq!(current_thread_affinity().unwrap().to_vec(), vec![cpu]);
            }
            pin_current_thread(&allowed).unwrap();
            assert_eq!(current_thread_affinity().unwrap(), allowed);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn bad_masks_are_errors_and_leave_affinity_alone() {
        std::thread::spawn(|| {
            let before = current_thread_affinity().unwrap();
            assert!(matches!(
                pin_current_thread(&CpuSet::new()),
                Err(AffinityError::Placement(_))
            ));
            assert!(matches!(
                pin_current_thread_to_cpu(MAX_PINNABLE_CPU + 1),
                Err(AffinityError::CpuOutOfRange { cpu, .. }) if cpu == MAX_PINNABLE_CPU + 1
            ));
            // A CPU the machine does not have: the kernel refuses (EINVAL).
            let err = pin_current_thread_to_cpu(MAX_PINNABLE_CPU).unwrap_err();
            assert!(
                matches!(
                    &err,
                    AffinityError::Syscall {
                        call: "sched_setaffinity",
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(current_thread_affinity().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
