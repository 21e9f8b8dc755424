//! Polling before sleeping (`[performance] poll_us`).
//!
//! A reactor that has just done work keeps looking for more for a short window before it
//! blocks in the kernel. Sleeping and being woken costs far more than it looks: the waker sends
//! an inter-processor interrupt, and on a virtual machine the idle vCPU has exited to the
//! hypervisor, which must schedule it again. Measured on a 2-vCPU VM (docs/performance.md),
//! one wake-up took longer than the work of several 4 KiB commands, and a single session whose
//! initiator ran on the other CPU lost more than half its IOPS to them. An initiator that keeps
//! its queue full sends the next commands within microseconds of our responses, so a short
//! poll finds them and the wake-up never happens.
//!
//! The window opens only after a wake-up that found work, so an idle reactor sleeps at once,
//! and between checks the reactor yields its CPU (`sched_yield`) to any other runnable thread,
//! so an initiator or another daemon sharing the CPU is not kept waiting.

use std::time::{Duration, Instant};

/// The polling window and whether the next wait should poll first.
#[derive(Debug, Clone)]
pub(crate) struct IdlePoll {
    window: Duration,
    armed: bool,
}

impl IdlePoll {
    /// A poller with this window; a zero window never polls.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            armed: false,
        }
    }

    /// Records whether the last wake-up found work: only then does the next wait poll first.
    pub(crate) fn found_work(&mut self, yes: bool) {
        self.armed = yes && !self.window.is_zero();
    }

    /// Whether the next wait polls first.
    pub(crate) fn armed(&self) -> bool {
        self.armed
    }

    /// Checks `ready` until it reports work or the window closes, yielding the CPU between
    /// checks. Returns whether work is ready (the caller then need not block). Does nothing
    /// and returns `false` unless the last wake-up found work.
    pub(crate) fn poll(&self, mut ready: impl FnMut() -> bool) -> bool {
        if !self.armed {
            return false;
        }
        let until = Instant::now() + self.window;
        loop {
            if ready() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_reactor_or_a_zero_window_never_polls() {
        // Armed with a zero window, or a window but no work found yet.
        for (window, found) in [(Duration::ZERO, true), (Duration::from_millis(1), false)] {
            let mut p = IdlePoll::new(window);
            p.found_work(found);
            let mut checks = 0;
            assert!(!p.poll(|| {
                checks += 1;
                true
            }));
            assert_eq!(checks, 0, "{window:?} {found}");
        }
    }

    #[test]
    fn polling_stops_as_soon_as_work_is_ready() {
        let mut p = IdlePoll::new(Duration::from_secs(10));
        p.found_work(true);
        let mut checks = 0;
        let start = Instant::now();
        assert!(p.poll(|| {
            checks += 1;
            checks == 3
        }));
        assert_eq!(checks, 3);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn polling_gives_up_when_the_window_closes() {
        let mut p = IdlePoll::new(Duration::from_millis(2));
        p.found_work(true);
        let start = Instant::now();
        let mut checks = 0u64;
        assert!(!p.poll(|| {
            checks += 1;
            false
        }));
        assert!(start.elapsed() >= Duration::from_millis(2));
        assert!(checks >= 1);
        // A wake-up without work disarms it again.
        p.found_work(false);
        assert!(!p.poll(|| true));
    }
}
