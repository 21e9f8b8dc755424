//! Reading and judging each setting: sysctls under `/proc/sys` (kernel
//! `Documentation/admin-guide/sysctl/{net,vm}.rst`, `Documentation/networking/ip-sysctl.rst`),
//! block queue attributes (`Documentation/ABI/stable/sysfs-block`), the cpufreq governor
//! (`Documentation/admin-guide/pm/cpufreq.rst`), PCIe link attributes
//! (`Documentation/ABI/testing/sysfs-bus-pci`) and a running irqbalance (`/proc/PID/comm`).

use std::collections::BTreeMap;

use super::rules::{self, SysctlRule, Want};
use super::{Category, Check, Profile, Status};
use crate::cpuset::CpuSet;
use crate::irq::irqbalance_pids;
use crate::sysroot::SysRoot;
use crate::topology::{DeviceKind, DeviceLocality, Topology};

fn parse_numbers(text: &str) -> Option<Vec<u64>> {
    text.split_whitespace().map(|t| t.parse().ok()).collect()
}

/// Judges `current` against `want`; returns (status, value for the fix).
fn judge(want: Want, current: &str) -> Option<(bool, String)> {
    let nums = parse_numbers(current)?;
    match (want, nums.as_slice()) {
        (Want::AtLeast(n), [v]) => Some((*v >= n, n.to_string())),
        (Want::AtMost(n), [v]) => Some((*v <= n, n.to_string())),
        (Want::Equal(n), [v]) => Some((*v == n, n.to_string())),
        (Want::Triple { default, max }, [lo, d, m]) => Some((
            *d >= default && *m >= max,
            format!("{lo} {} {}", (*d).max(default), (*m).max(max)),
        )),
        (Want::ThirdAtLeast(n), [a, b, c]) => Some((*c >= n, format!("{a} {b} {}", (*c).max(n)))),
        _ => None,
    }
}

/// (major, minor) of the kernel release in `/proc/sys/kernel/osrelease` ("5.15.0-91-generic").
fn kernel_release(root: &SysRoot) -> Option<(u32, u32)> {
    let text = root.read_opt("/proc/sys/kernel/osrelease").ok()??;
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub(super) fn sysctl(root: &SysRoot, rule: &SysctlRule) -> Check {
    let path = format!("/proc/sys/{}", rule.key.replace('.', "/"));
    let mut check = Check {
        id: rule.key.to_owned(),
        category: rule.category,
        subject: None,
        path: Some(path.clone()),
        current: None,
        suggested: rule.want.suggested(),
        status: Status::Unknown,
        reason: rule.reason.to_owned(),
        fix: None,
    };
    let value = root.read_opt(&path);
    if let Some((since, note)) = rule.noop_since {
        let absent = matches!(value, Ok(None));
        if absent || kernel_release(root).is_some_and(|k| k >= since) {
            check.status = Status::Ok;
            check.current = value.ok().flatten();
            "any (no effect)".clone_into(&mut check.suggested);
            note.clone_into(&mut check.reason);
            return check;
        }
    }
    match value {
        Ok(Some(text)) => {
            let current = text.split_whitespace().collect::<Vec<_>>().join(" ");
            match judge(rule.want, &current) {
                Some((true, _)) => check.status = Status::Ok,
                Some((false, value)) => {
                    check.status = Status::Warn;
                    check.fix = Some(if value.contains(' ') {
                        format!("sysctl -w {}=\"{value}\"", rule.key)
                    } else {
                        format!("sysctl -w {}={value}", rule.key)
                    });
                }
                None => check.reason = format!("Unexpected value format. {}", rule.reason),
            }
            check.current = Some(current);
        }
        Ok(None) => check.reason = format!("Not present under this root. {}", rule.reason),
        Err(e) => check.reason = format!("Unreadable ({e}). {}", rule.reason),
    }
    check
}

pub(super) fn governor(root: &SysRoot, topology: &Topology) -> Check {
    let mut by_value: BTreeMap<String, CpuSet> = BTreeMap::new();
    for cpu in topology.cpus() {
        let path = format!(
            "/sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor",
            cpu.id
        );
        if let Ok(Some(v)) = root.read_opt(&path) {
            by_value.entry(v).or_default().insert(cpu.id);
        }
    }
    let reason = "Power-saving governors drop the clock between bursts and pay a ramp-up delay on the next I/O; storage traffic is bursty.";
    let mut check = Check {
        id: "cpu.scaling_governor".to_owned(),
        category: Category::Cpu,
        subject: None,
        path: Some("/sys/devices/system/cpu/cpuN/cpufreq/scaling_governor".to_owned()),
        current: None,
        suggested: "performance".to_owned(),
        status: Status::Unknown,
        reason: reason.to_owned(),
        fix: None,
    };
    if by_value.is_empty() {
        check.reason = format!(
            "No cpufreq interface (a virtual machine, or firmware controls the clock). {reason}"
        );
        return check;
    }
    let covered: usize = by_value.values().map(CpuSet::len).sum();
    check.current = Some(
        by_value
            .iter()
            .map(|(v, set)| format!("{v} (CPUs {set})"))
            .collect::<Vec<_>>()
            .join("; "),
    );
    if by_value.len() == 1
        && by_value.contains_key("performance")
        && covered == topology.cpus().len()
    {
        check.status = Status::Ok;
    } else {
        check.status = Status::Warn;
        check.fix = Some("cpupower frequency-set -g performance".to_owned());
    }
    check
}

pub(super) fn irqbalance(root: &SysRoot) -> Check {
    let pids = irqbalance_pids(root);
    let running = !pids.is_empty();
    Check {
        id: "irq.irqbalance".to_owned(),
        category: Category::Irq,
        subject: None,
        path: None,
        current: Some(if running {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("running (pid {})", list.join(", "))
        } else {
            "not running".to_owned()
        }),
        suggested: "not running".to_owned(),
        status: if running { Status::Warn } else { Status::Ok },
        reason: "irqbalance keeps moving interrupt vectors to even out load, undoing a NUMA-local spread; it cannot know which cores run reactors.".to_owned(),
        fix: running.then(|| "systemctl disable --now irqbalance; then rtgtd irq apply --nic IF".to_owned()),
    }
}

fn link_speed(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

pub(super) fn pcie_link(root: &SysRoot, topology: &Topology, nic: &str) -> Check {
    let reason = "A card that trained below its maximum width or speed (wrong slot, riser, BIOS setting) cannot reach line rate.";
    let mut check = Check {
        id: format!("nic.{nic}.pcie_link"),
        category: Category::Nic,
        subject: Some(nic.to_owned()),
        path: None,
        current: None,
        suggested: "the device's maximum width and speed".to_owned(),
        status: Status::Unknown,
        reason: reason.to_owned(),
        fix: None,
    };
    let loc = match DeviceLocality::locate(root, topology, DeviceKind::Nic, nic) {
        Ok(l) => l,
        Err(e) => {
            check.reason = format!("{e}. {reason}");
            return check;
        }
    };
    let Some(dir) = loc.pci_sysfs_path().map(|p| p.display().to_string()) else {
        check.reason = format!("Not a PCI device. {reason}");
        return check;
    };
    check.path = Some(format!("{dir}/{{current,max}}_link_{{speed,width}}"));
    let read = |f: &str| root.read_opt(&format!("{dir}/{f}")).ok().flatten();
    let (Some(cs), Some(ms), Some(cw), Some(mw)) = (
        read("current_link_speed"),
        read("max_link_speed"),
        read("current_link_width"),
        read("max_link_width"),
    ) else {
        check.reason = format!("No PCIe link attributes (virtual or non-PCIe function). {reason}");
        return check;
    };
    check.current = Some(format!("x{cw} {cs}"));
    check.suggested = format!("x{mw} {ms}");
    match (
        link_speed(&cs),
        link_speed(&ms),
        cw.parse::<u32>(),
        mw.parse::<u32>(),
    ) {
        (Some(c), Some(m), Ok(w), Ok(mx)) => {
            if c >= m && w >= mx {
                check.status = Status::Ok;
            } else {
                check.status = Status::Warn;
                check.fix = Some(format!(
                    "move the card to an x{mx} slot or check riser/BIOS link settings (PCI {})",
                    loc.pci.as_deref().unwrap_or("?")
                ));
            }
        }
        _ => check.reason = format!("Link attributes not understood. {reason}"),
    }
    check
}

pub(super) fn block_queue(root: &SysRoot, profile: Profile, dev: &str) -> Vec<Check> {
    let wants = rules::block(profile);
    let base = format!("/sys/block/{dev}/queue");
    let valid = !dev.is_empty() && !dev.contains('/') && dev != "." && dev != "..";
    if !valid || !root.join(&base).is_dir() {
        return vec![Check {
            id: format!("block.{dev}"),
            category: Category::Block,
            subject: Some(dev.to_owned()),
            path: Some(base),
            current: None,
            suggested: "an existing block device".to_owned(),
            status: Status::Unknown,
            reason: "No such block device under this root.".to_owned(),
            fix: None,
        }];
    }
    let read = |f: &str| root.read_opt(&format!("{base}/{f}")).ok().flatten();
    let mk = |file: &str, current: Option<String>, suggested: String, reason: &str| Check {
        id: format!("block.{dev}.queue.{file}"),
        category: Category::Block,
        subject: Some(dev.to_owned()),
        path: Some(format!("{base}/{file}")),
        current,
        suggested,
        status: Status::Unknown,
        reason: reason.to_owned(),
        fix: None,
    };
    let echo = |file: &str, value: &str| format!("echo {value} > /sys/block/{dev}/queue/{file}");
    let mut out = Vec::new();

    // Scheduler: "none [mq-deadline] kyber bfq".
    let raw = read("scheduler");
    let mut c = mk(
        "scheduler",
        None,
        wants.scheduler.to_owned(),
        wants.scheduler_reason,
    );
    if let Some(raw) = raw {
        let active = raw
            .split_whitespace()
            .find(|t| t.starts_with('['))
            .or_else(|| raw.split_whitespace().next())
            .map(|t| t.trim_matches(['[', ']']).to_owned());
        let available: Vec<&str> = raw
            .split_whitespace()
            .map(|t| t.trim_matches(['[', ']']))
            .collect();
        if let Some(active) = active {
            if active == wants.scheduler {
                c.status = Status::Ok;
            } else {
                c.status = Status::Warn;
                if available.contains(&wants.scheduler) {
                    c.fix = Some(echo("scheduler", wants.scheduler));
                } else {
                    c.reason = format!(
                        "{} ({} is not available on this kernel: load its module.)",
                        c.reason, wants.scheduler
                    );
                }
            }
            c.current = Some(active);
        }
    }
    out.push(c);

    let numeric = |file: &str, want: Want, reason: &str| {
        let mut c = mk(file, read(file), want.suggested(), reason);
        if let Some(cur) = c.current.clone() {
            match judge(want, &cur) {
                Some((true, _)) => c.status = Status::Ok,
                Some((false, v)) => {
                    c.status = Status::Warn;
                    c.fix = Some(echo(file, &v));
                }
                None => {}
            }
        }
        c
    };
    out.push(numeric(
        "nr_requests",
        Want::AtLeast(wants.nr_requests),
        wants.nr_requests_reason,
    ));
    out.push(numeric(
        "read_ahead_kb",
        wants.read_ahead,
        wants.read_ahead_reason,
    ));
    let hw = read("max_hw_sectors_kb").and_then(|t| t.parse::<u64>().ok());
    let target = hw.map_or(wants.max_sectors_cap, |h| h.min(wants.max_sectors_cap));
    out.push(numeric(
        "max_sectors_kb",
        Want::AtLeast(target),
        wants.max_sectors_reason,
    ));
    let mut rot = numeric(
        "rotational",
        Want::Equal(wants.rotational),
        wants.rotational_reason,
    );
    // A profile mismatch is not fixed by writing the flag.
    if rot.status == Status::Warn {
        rot.fix = Some(format!(
            "rtgtd doctor --profile {}",
            if wants.rotational == 0 {
                "hdd-streaming"
            } else {
                "ssd"
            }
        ));
    }
    if rot.status == Status::Ok {
        rot.reason = format!(
            "The device reports {} media, as the {profile} profile assumes.",
            if wants.rotational == 0 {
                "non-rotating"
            } else {
                "rotating"
            }
        );
    }
    out.push(rot);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_values() {
        assert_eq!(judge(Want::AtLeast(10), "12"), Some((true, "10".into())));
        assert_eq!(judge(Want::AtLeast(10), "9"), Some((false, "10".into())));
        assert_eq!(judge(Want::AtMost(10), "60"), Some((false, "10".into())));
        assert_eq!(judge(Want::Equal(0), "1"), Some((false, "0".into())));
        assert_eq!(
            judge(
                Want::Triple {
                    default: 131_072,
                    max: 16 << 20
                },
                "4096 87380 6291456"
            ),
            Some((false, "4096 131072 16777216".into()))
        );
        assert_eq!(
            judge(
                Want::Triple {
                    default: 10,
                    max: 20
                },
                "1 50 60"
            ),
            Some((true, "1 50 60".into()))
        );
        assert_eq!(
            judge(Want::ThirdAtLeast(100), "1 2 3"),
            Some((false, "1 2 100".into()))
        );
        assert_eq!(judge(Want::AtLeast(1), "abc"), None);
        assert_eq!(judge(Want::AtLeast(1), "1 2"), None);
        assert_eq!(judge(Want::Triple { default: 1, max: 1 }, "1"), None);
    }

    #[test]
    fn link_speeds() {
        assert_eq!(link_speed("8.0 GT/s PCIe"), Some(8.0));
        assert_eq!(link_speed("5 GT/s"), Some(5.0));
        assert_eq!(link_speed("Unknown"), None);
    }
}
