//! The doctor's suggestions per profile, with our reasons. `docs/tuning.md` explains each one
//! at more length; keep the two in step. What each setting does is documented in the kernel's
//! `Documentation/admin-guide/sysctl/{net,vm}.rst`, `Documentation/networking/ip-sysctl.rst`
//! and `Documentation/ABI/stable/sysfs-block`.

use super::{Category, Profile};

/// What a numeric setting should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    /// At least this value.
    AtLeast(u64),
    /// At most this value.
    AtMost(u64),
    /// Exactly this value.
    Equal(u64),
    /// Three numbers "min default max": default and max at least these.
    Triple { default: u64, max: u64 },
    /// Three numbers (pages): the third at least this.
    ThirdAtLeast(u64),
}

impl Want {
    pub(super) fn suggested(self) -> String {
        match self {
            Self::AtLeast(n) => format!(">= {n}"),
            Self::AtMost(n) => format!("<= {n}"),
            Self::Equal(n) => n.to_string(),
            Self::Triple { default, max } => format!("4096 {default} {max} (or larger)"),
            Self::ThirdAtLeast(n) => format!("third value >= {n}"),
        }
    }
}

/// One sysctl and what the profile wants of it.
pub(super) struct SysctlRule {
    pub key: &'static str,
    pub category: Category,
    pub want: Want,
    pub reason: &'static str,
    /// Kernel release (major, minor) from which the setting has no effect; absent or on such
    /// kernels it is reported ok with this note.
    pub noop_since: Option<((u32, u32), &'static str)>,
}

const MIB16: u64 = 16 << 20;

fn rule(key: &'static str, category: Category, want: Want, reason: &'static str) -> SysctlRule {
    SysctlRule {
        key,
        category,
        want,
        reason,
        noop_since: None,
    }
}

/// The sysctl rules, network first, in report order.
pub(super) fn sysctls(profile: Profile) -> Vec<SysctlRule> {
    use Category::{Network, Vm};
    let ssd = profile == Profile::Ssd;
    vec![
        rule(
            "net.core.rmem_max",
            Network,
            Want::AtLeast(MIB16),
            "Ceiling for any socket's receive buffer; below the link's bandwidth-delay product a single session cannot receive writes at line rate.",
        ),
        rule(
            "net.core.wmem_max",
            Network,
            Want::AtLeast(MIB16),
            "Ceiling for any socket's send buffer; a small one stalls large Data-In bursts to initiators.",
        ),
        rule(
            "net.core.rmem_default",
            Network,
            Want::AtLeast(262_144),
            "Receive buffer a socket starts with when nothing sizes it; a larger start avoids a slow ramp on new connections.",
        ),
        rule(
            "net.core.wmem_default",
            Network,
            Want::AtLeast(262_144),
            "Send buffer a socket starts with when nothing sizes it; a larger start avoids a slow ramp on new connections.",
        ),
        rule(
            "net.ipv4.tcp_rmem",
            Network,
            Want::Triple {
                default: 131_072,
                max: MIB16,
            },
            "TCP receive autotuning range (min default max); the max bounds the window one connection can advertise.",
        ),
        rule(
            "net.ipv4.tcp_wmem",
            Network,
            Want::Triple {
                default: 65_536,
                max: MIB16,
            },
            "TCP send autotuning range (min default max); the max bounds how much one connection keeps in flight.",
        ),
        rule(
            "net.ipv4.tcp_mem",
            Network,
            Want::ThirdAtLeast(262_144),
            "System-wide TCP memory in pages; past the third value every socket is squeezed to its minimum buffer at once.",
        ),
        rule(
            "net.ipv4.tcp_timestamps",
            Network,
            Want::Equal(1),
            "Keep on: PAWS needs timestamps to reject stale segments once sequence numbers wrap (seconds at 10 Gb/s), and RTT estimates improve.",
        ),
        rule(
            "net.ipv4.tcp_sack",
            Network,
            Want::Equal(1),
            "Keep on: selective ACKs let the sender resend only the lost segments instead of everything after the first loss.",
        ),
        SysctlRule {
            noop_since: Some((
                (4, 14),
                "Has no effect since Linux 4.14 (the sysctl stays for compatibility, or is absent); nothing to tune.",
            )),
            ..rule(
                "net.ipv4.tcp_low_latency",
                Network,
                Want::Equal(u64::from(ssd)),
                if ssd {
                    "On kernels that still have it, 1 makes TCP favour latency over throughput, which suits flash."
                } else {
                    "On kernels that still have it, 0 lets TCP favour throughput, which suits streaming."
                },
            )
        },
        rule(
            "net.core.netdev_max_backlog",
            Network,
            Want::AtLeast(250_000),
            "Packets a CPU may queue between the NIC and TCP; the default 1000 drops bursts of a fast link, which TCP then treats as congestion.",
        ),
        rule(
            "vm.swappiness",
            Vm,
            Want::AtMost(10),
            "Low values keep target threads and buffers in RAM; a swapped-out page on the I/O path costs milliseconds.",
        ),
        rule(
            "vm.zone_reclaim_mode",
            Vm,
            Want::Equal(0),
            "Non-zero makes a node reclaim its own page cache rather than use another node's free memory; the stalls cost more than remote access.",
        ),
        if ssd {
            rule(
                "vm.dirty_ratio",
                Vm,
                Want::AtMost(10),
                "For buffered backing files: caps dirty page cache before writers block, so flushes stay short and latency even.",
            )
        } else {
            rule(
                "vm.dirty_ratio",
                Vm,
                Want::AtLeast(40),
                "For buffered backing files: room for many streams' data in memory, so write-back can issue long merged writes.",
            )
        },
        if ssd {
            rule(
                "vm.dirty_background_ratio",
                Vm,
                Want::AtMost(5),
                "Background write-back starts early and in small batches, instead of in bursts that delay reads.",
            )
        } else {
            rule(
                "vm.dirty_background_ratio",
                Vm,
                Want::AtLeast(10),
                "Background write-back waits for enough data per stream to write long sequential runs.",
            )
        },
        if ssd {
            rule(
                "vm.dirty_expire_centisecs",
                Vm,
                Want::AtMost(1500),
                "Dirty data older than this is written; shorter keeps the amount at risk and the flush size small.",
            )
        } else {
            rule(
                "vm.dirty_expire_centisecs",
                Vm,
                Want::AtLeast(6000),
                "Long expiry lets each stream's data gather into large, sequential writes before it must go to disk.",
            )
        },
        if ssd {
            rule(
                "vm.dirty_writeback_centisecs",
                Vm,
                Want::AtMost(500),
                "How often the flusher wakes; frequent small flushes suit flash.",
            )
        } else {
            rule(
                "vm.dirty_writeback_centisecs",
                Vm,
                Want::AtLeast(1500),
                "How often the flusher wakes; waking less often gives disks fewer, larger writes.",
            )
        },
    ]
}

/// What a block queue should look like for a profile.
pub(super) struct BlockWants {
    pub scheduler: &'static str,
    pub scheduler_reason: &'static str,
    pub nr_requests: u64,
    pub nr_requests_reason: &'static str,
    pub read_ahead: Want,
    pub read_ahead_reason: &'static str,
    /// Upper bound for the suggested max_sectors_kb (clamped to the hardware's maximum).
    pub max_sectors_cap: u64,
    pub max_sectors_reason: &'static str,
    pub rotational: u64,
    pub rotational_reason: &'static str,
}

pub(super) fn block(profile: Profile) -> BlockWants {
    match profile {
        Profile::Ssd => BlockWants {
            scheduler: "none",
            scheduler_reason: "Flash and NVMe reorder internally; a host scheduler only adds latency and CPU to every I/O.",
            nr_requests: 256,
            nr_requests_reason: "Requests queued per hardware queue; fewer than the device can run in parallel leaves flash idle.",
            read_ahead: Want::AtMost(128),
            read_ahead_reason: "Initiators read ahead themselves; more on the target reads data nobody asked for and competes with random I/O.",
            max_sectors_cap: 1024,
            max_sectors_reason: "Largest request sent to the device; below the initiators' I/O size (often 1 MiB) every command is split.",
            rotational: 0,
            rotational_reason: "The ssd profile assumes flash but the device reports rotating media (RAID volumes often do even on SSDs); use --profile hdd-streaming for disks.",
        },
        Profile::HddStreaming => BlockWants {
            scheduler: "mq-deadline",
            scheduler_reason: "mq-deadline sorts and merges requests by position while bounding each one's wait, keeping many streams moving.",
            nr_requests: 1024,
            nr_requests_reason: "A deep queue gives the scheduler many streams' requests to sort and merge into long transfers.",
            read_ahead: Want::AtLeast(4096),
            read_ahead_reason: "Large read-ahead turns each stream's reads into long transfers, so heads transfer instead of seeking.",
            max_sectors_cap: 4096,
            max_sectors_reason: "Largest request sent to the device; streaming wants requests as large as the controller takes.",
            rotational: 1,
            rotational_reason: "The hdd-streaming profile assumes rotating disks but the device reports flash; use --profile ssd for it.",
        },
    }
}
