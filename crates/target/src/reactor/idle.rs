//! Polling before sleeping (`[performance] poll_us`, off by default).
//!
//! A reactor that has just done work may keep looking for more for a short window before it
//! blocks in the kernel. Sleeping and being woken costs far more than it looks: the waker sends
//! an inter-processor interrupt, and on a virtual machine the idle vCPU has exited to the
//! hypervisor, which must schedule it again. Measured on a 2-vCPU VM (docs/performance.md),
//! one wake-up took longer than the work of several 4 KiB commands. An initiator that keeps its
//! queue full sends the next commands within microseconds of our responses, so a short poll
//! finds them and the wake-up never happens. The price is CPU time per I/O, which is why it is
//! off by default: with an initiator that sends one command at a time (libiscsi), it bought no
//! IOPS and cost up to a fifth more CPU per I/O.
//!
//! Polling is paid for by work: every microsecond the reactor spends working after a wake-up
//! earns a quarter of a microsecond of polling ([`POLL_SHARE`]), saved up to one window, and a
//! wait polls only once half a window has been earned. So polling never costs more than a
//! quarter of the reactor's useful time, whatever the initiator does: one that sends a command
//! at a time (each wake-up brings little work) mostly gets a sleeping reactor, one that sends
//! batches gets a polling one. An idle reactor sleeps at once, and between checks the reactor
//! yields its CPU (`sched_yield`) to any other runnable thread, so an initiator or another
//! daemon sharing the CPU is not kept waiting.

use std::time::{Duration, Instant};

/// Polling may cost at most 1/`POLL_SHARE` of the time the reactor spends working.
pub(crate) const POLL_SHARE: u32 = 4;

/// The polling window and the polling time earned so far.
#[derive(Debug, Clone)]
pub(crate) struct IdlePoll {
    window: Duration,
    armed: bool,
    woke: Instant,
    credit: Duration,
}

impl IdlePoll {
    /// A poller with this window; a zero window never polls.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            armed: false,
            woke: Instant::now(),
            credit: Duration::ZERO,
        }
    }

    /// Records, at wake-up time `now`, whether the wake-up found work: only then may the next
    /// wait poll, and the work done from `now` until then earns polling time.
    pub(crate) fn found_work(&mut self, yes: bool, now: Instant) {
        self.armed = yes && !self.window.is_zero();
        self.woke = now;
    }

    /// How long the coming wait may poll (zero: sleep at once), crediting the work done since
    /// the wake-up. Reads the clock only when polling is possible.
    pub(crate) fn allowance(&mut self) -> Duration {
        if !self.armed {
            return Duration::ZERO;
        }
        self.allowance_at(Instant::now())
    }

    /// [`allowance`](Self::allowance) with the time given.
    fn allowance_at(&mut self, now: Instant) -> Duration {
        if !self.armed {
            return Duration::ZERO;
        }
        let earned = now.saturating_duration_since(self.woke) / POLL_SHARE;
        self.credit = (self.credit + earned).min(self.window);
        self.armed = false;
        if self.credit < self.window / 2 {
            Duration::ZERO
        } else {
            self.credit
        }
    }

    /// Checks `ready` until it reports work or `limit` passes, yielding the CPU between checks,
    /// and pays for the time spent. Returns whether work is ready (the caller then need not
    /// block).
    pub(crate) fn spin(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        let until = start + limit;
        let found = loop {
            if ready() {
                break true;
            }
            if Instant::now() >= until {
                break false;
            }
            std::thread::yield_now();
        };
        self.credit = self.credit.saturating_sub(start.elapsed());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn an_idle_reactor_or_a_zero_window_never_polls() {
        let t0 = Instant::now();
        // A zero window, even after much work; a window, but the wake-up found nothing.
        for (window, found) in [(Duration::ZERO, true), (US * 40, false)] {
            let mut p = IdlePoll::new(window);
            p.found_work(found, t0);
            assert_eq!(p.allowance_at(t0 + US * 1000), Duration::ZERO, "{window:?}");
        }
    }

    #[test]
    fn polling_is_earned_by_work_and_capped_at_the_window() {
        let t0 = Instant::now();
        let mut p = IdlePoll::new(US * 40);
        // 40 us of work earn 10 us: less than half a window, so this wait sleeps.
        p.found_work(true, t0);
        assert_eq!(p.allowance_at(t0 + US * 40), Duration::ZERO);
        // Another 40 us bring the credit to 20 us, half the window: this wait polls.
        p.found_work(true, t0);
        assert_eq!(p.allowance_at(t0 + US * 40), US * 20);
        // A long stretch of work earns no more than one window.
        p.found_work(true, t0);
        assert_eq!(p.allowance_at(t0 + US * 10_000), US * 40);
        // One allowance per wake-up: asking again without new work gives nothing.
        assert_eq!(p.allowance_at(t0 + US * 20_000), Duration::ZERO);
    }

    #[test]
    fn polling_stops_as_soon_as_work_is_ready_and_pays_for_its_time() {
        let t0 = Instant::now();
        let mut p = IdlePoll::new(Duration::from_secs(10));
        p.found_work(true, t0);
        let limit = p.allowance_at(t0 + Duration::from_secs(40));
        assert_eq!(limit, Duration::from_secs(10));
        let mut checks = 0;
        let start = Instant::now();
        assert!(p.spin(limit, || {
            checks += 1;
            checks == 3
        }));
        assert_eq!(checks, 3);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(p.credit < Duration::from_secs(10));
    }

    #[test]
    fn polling_gives_up_when_its_time_is_spent() {
        let t0 = Instant::now();
        let mut p = IdlePoll::new(Duration::from_millis(2));
        p.found_work(true, t0);
        let limit = p.allowance_at(t0 + Duration::from_millis(8));
        assert_eq!(limit, Duration::from_millis(2));
        let start = Instant::now();
        assert!(!p.spin(limit, || false));
        assert!(start.elapsed() >= Duration::from_millis(2));
        // The credit is spent: the next wait sleeps unless new work earns more.
        assert_eq!(p.credit, Duration::ZERO);
        p.found_work(true, t0);
        assert_eq!(p.allowance_at(t0), Duration::ZERO);
    }
}
