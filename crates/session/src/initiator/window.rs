//! The initiator's view of the command window (RFC 7143 §4.2.2.1, §3.2.2.1): CmdSN assignment
//! and the ExpCmdSN/MaxCmdSN updates every target PDU carries, with RFC 1982 serial arithmetic.
//!
//! Non-immediate commands take the next CmdSN and may only be sent while it lies in
//! [ExpCmdSN, MaxCmdSN]; immediate commands carry the current CmdSN without advancing it and
//! are not bound by the window. An update whose MaxCmdSN is below ExpCmdSN − 1 is ignored, and
//! neither value ever moves backwards.
//!
//! ```
//! use rtgt_pdu::Sn;
//! use rtgt_session::initiator::CmdWindow;
//!
//! let mut w = CmdWindow::new(Sn(10), Sn(10), Sn(11));
//! assert_eq!(w.take(), Some(Sn(10)));
//! assert_eq!(w.take(), Some(Sn(11)));
//! assert_eq!(w.take(), None); // 12 is beyond MaxCmdSN
//! w.update(Sn(12), Sn(20));
//! assert_eq!(w.take(), Some(Sn(12)));
//! ```

use rtgt_pdu::Sn;

/// CmdSN, ExpCmdSN and MaxCmdSN of one session (shared by all its connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_field_names)] // the RFC's names: CmdSN, ExpCmdSN, MaxCmdSN
pub struct CmdWindow {
    cmd_sn: Sn,
    exp_cmd_sn: Sn,
    max_cmd_sn: Sn,
}

impl CmdWindow {
    /// A window after login: the next CmdSN to use and the target's ExpCmdSN/MaxCmdSN from the
    /// final Login Response.
    pub const fn new(cmd_sn: Sn, exp_cmd_sn: Sn, max_cmd_sn: Sn) -> Self {
        Self {
            cmd_sn,
            exp_cmd_sn,
            max_cmd_sn,
        }
    }

    /// The CmdSN the next command carries.
    #[inline]
    pub const fn cmd_sn(&self) -> Sn {
        self.cmd_sn
    }

    /// The target's ExpCmdSN as last seen.
    #[inline]
    pub const fn exp_cmd_sn(&self) -> Sn {
        self.exp_cmd_sn
    }

    /// The target's MaxCmdSN as last seen.
    #[inline]
    pub const fn max_cmd_sn(&self) -> Sn {
        self.max_cmd_sn
    }

    /// Whether a non-immediate command may be sent now.
    #[inline]
    pub const fn is_open(&self) -> bool {
        self.cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn)
    }

    /// How many more non-immediate commands the window admits now.
    pub fn room(&self) -> u32 {
        if !self.is_open() {
            return 0;
        }
        self.max_cmd_sn
            .0
            .wrapping_sub(self.cmd_sn.0)
            .wrapping_add(1)
    }

    /// Takes a CmdSN for a non-immediate command, or `None` when the window is closed.
    #[inline]
    pub fn take(&mut self) -> Option<Sn> {
        if !self.is_open() {
            return None;
        }
        let sn = self.cmd_sn;
        self.cmd_sn = sn.incremented();
        Some(sn)
    }

    /// Takes in ExpCmdSN/MaxCmdSN from a target PDU (§4.2.2.1): ignored when MaxCmdSN is
    /// below ExpCmdSN − 1, otherwise each value only moves forward.
    #[inline]
    pub fn update(&mut self, exp_cmd_sn: Sn, max_cmd_sn: Sn) {
        if max_cmd_sn.serial_lt(exp_cmd_sn.add(u32::MAX)) {
            return;
        }
        if exp_cmd_sn.serial_gt(self.exp_cmd_sn) {
            self.exp_cmd_sn = exp_cmd_sn;
        }
        if max_cmd_sn.serial_gt(self.max_cmd_sn) {
            self.max_cmd_sn = max_cmd_sn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_window_admits_nothing() {
        // MaxCmdSN = ExpCmdSN - 1: the target has no room.
        let mut w = CmdWindow::new(Sn(5), Sn(5), Sn(4));
        assert!(!w.is_open());
        assert_eq!(w.room(), 0);
        assert_eq!(w.take(), None);
        w.update(Sn(5), Sn(6));
        assert_eq!(w.room(), 2);
        assert_eq!(w.take(), Some(Sn(5)));
    }

    #[test]
    fn assignment_wraps_around() {
        let mut w = CmdWindow::new(Sn(u32::MAX), Sn(u32::MAX), Sn(1));
        assert_eq!(w.room(), 3);
        assert_eq!(w.take(), Some(Sn(u32::MAX)));
        assert_eq!(w.take(), Some(Sn(0)));
        assert_eq!(w.take(), Some(Sn(1)));
        assert_eq!(w.take(), None);
        w.update(Sn(2), Sn(33));
        assert_eq!(w.exp_cmd_sn(), Sn(2));
        assert_eq!(w.room(), 32);
    }

    #[test]
    fn stale_and_invalid_updates_are_ignored() {
        let mut w = CmdWindow::new(Sn(10), Sn(10), Sn(40));
        // Older values never move the window back.
        w.update(Sn(8), Sn(30));
        assert_eq!((w.exp_cmd_sn(), w.max_cmd_sn()), (Sn(10), Sn(40)));
        // MaxCmdSN < ExpCmdSN - 1: both ignored.
        w.update(Sn(20), Sn(18));
        assert_eq!((w.exp_cmd_sn(), w.max_cmd_sn()), (Sn(10), Sn(40)));
        // MaxCmdSN = ExpCmdSN - 1 is valid (window closed at the target).
        w.update(Sn(20), Sn(19));
        assert_eq!(w.exp_cmd_sn(), Sn(20));
        assert_eq!(w.max_cmd_sn(), Sn(40));
    }
}
