//! CPU time of the calling thread and of the whole process, read from procfs (proc(5):
//! `/proc/thread-self/sched` `se.sum_exec_runtime` with nanosecond resolution where the kernel
//! exports it, else fields 14–15 of `/proc/thread-self/stat` in USER_HZ ticks).
//!
//! The I/O engine reads its own thread's CPU time at the start and the end of a run and divides
//! by the IOs it completed: that is the "initiator CPU per IO" the bench reports.
//!
//! ```
//! let a = rtgt_client::cpu::thread_cpu().unwrap();
//! let mut x = 0u64;
//! for i in 0..1_000_000u64 { x = x.wrapping_add(i * i); }
//! std::hint::black_box(x);
//! let b = rtgt_client::cpu::thread_cpu().unwrap();
//! assert!(b >= a);
//! ```

use std::time::Duration;

/// `/proc` reports utime/stime in USER_HZ, which Linux fixes at 100 on every architecture we
/// build for.
const USER_HZ: u64 = 100;

/// CPU time (user + system) consumed so far by the calling thread.
pub fn thread_cpu() -> Option<Duration> {
    sched_runtime("/proc/thread-self/sched").or_else(|| stat_ticks("/proc/thread-self/stat"))
}

/// CPU time (user + system) consumed so far by the whole process, all threads.
pub fn process_cpu() -> Option<Duration> {
    stat_ticks("/proc/self/stat")
}

/// CPU time of another process (e.g. a target started by a test), all threads.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// Reads `se.sum_exec_runtime` (milliseconds with six decimals).
fn sched_runtime(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("se.sum_exec_runtime"))?;
    let value = line.split(':').nth(1)?.trim();
    let (ms, frac) = value.split_once('.').unwrap_or((value, "0"));
    let ms: u64 = ms.parse().ok()?;
    let mut ns_frac: u64 = 0;
    let mut scale = 100_000u64;
    for c in frac.bytes().take(6) {
        ns_frac += u64::from(c.checked_sub(b'0').filter(|d| *d <= 9)?) * scale;
        scale /= 10;
    }
    Some(Duration::from_nanos(ms * 1_000_000 + ns_frac))
}

/// Sums utime and stime (fields 14 and 15) of a `stat` file.
fn stat_ticks(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat_ticks(&text)
}

fn parse_stat_ticks(text: &str) -> Option<Duration> {
    // The command name (field 2) may contain spaces and parentheses: skip to the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // Field 3 (state) is the first after ')'; utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_comm() {
        let line = "42 (a) b (c) R 1 1 1 0 -1 0 0 0 0 0 250 130 0 0 20 0 1 0 5";
        assert_eq!(parse_stat_ticks(line), Some(Duration::from_millis(3800)));
        assert_eq!(parse_stat_ticks("42 (x"), None);
    }

    #[test]
    fn own_cpu_time_is_readable_and_monotonic() {
        let a = thread_cpu().unwrap();
        let b = thread_cpu().unwrap();
        assert!(b >= a);
        assert!(process_cpu().is_some());
        assert!(pid_cpu(std::process::id()).is_some());
    }
}
