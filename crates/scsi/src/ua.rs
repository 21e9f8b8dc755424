//! Unit attention conditions per I_T nexus (SAM-5 §5.14, SPC-5 §5.13 and §6.39).
//!
//! Each nexus has a queue of pending unit attentions ordered by precedence (resets first, then
//! parameter and reservation changes, then "commands cleared", then LUN inventory changes) and
//! first-in first-out within one precedence class. Establishing a power-on or reset condition
//! discards the lower-precedence conditions it supersedes. A condition is reported (and
//! cleared, UA_INTLCK_CTRL is zero) by the next command other than INQUIRY, REPORT LUNS and
//! REQUEST SENSE; REQUEST SENSE returns it as parameter data and clears it.

use crate::sense::{AdditionalSense, SenseError, SenseKey};

/// A unit attention condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitAttention {
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    PowerOnReset,
    /// 29/01 POWER ON OCCURRED (target cold reset).
    PowerOn,
    /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED (logical unit or target warm reset).
    BusDeviceReset,
    /// 2A/01 MODE PARAMETERS CHANGED.
    ModeParametersChanged,
    /// 2A/03 RESERVATIONS PREEMPTED.
    ReservationsPreempted,
    /// 2A/04 RESERVATIONS RELEASED.
    ReservationsReleased,
    /// 2A/05 REGISTRATIONS PREEMPTED.
    RegistrationsPreempted,
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    CapacityDataChanged,
    /// 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR.
    CommandsCleared,
    /// 3F/03 INQUIRY DATA HAS CHANGED.
    InquiryDataChanged,
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    ReportedLunsChanged,
}

impl UnitAttention {
    /// The additional sense code of the condition.
    pub const fn code(self) -> AdditionalSense {
        match self {
            Self::PowerOnReset => AdditionalSense::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
            Self::PowerOn => AdditionalSense::POWER_ON_OCCURRED,
            Self::BusDeviceReset => AdditionalSense::BUS_DEVICE_RESET_FUNCTION_OCCURRED,
            Self::ModeParametersChanged => AdditionalSense::MODE_PARAMETERS_CHANGED,
            Self::ReservationsPreempted => AdditionalSense::RESERVATIONS_PREEMPTED,
            Self::ReservationsReleased => AdditionalSense::RESERVATIONS_RELEASED,
            Self::RegistrationsPreempted => AdditionalSense::REGISTRATIONS_PREEMPTED,
            Self::CapacityDataChanged => AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
            Self::CommandsCleared => AdditionalSense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
            Self::InquiryDataChanged => AdditionalSense::INQUIRY_DATA_HAS_CHANGED,
            Self::ReportedLunsChanged => AdditionalSense::REPORTED_LUNS_DATA_HAS_CHANGED,
        }
    }

    /// The sense error that reports the condition.
    pub const fn sense(self) -> SenseError {
        SenseError::new(SenseKey::UNIT_ATTENTION, self.code())
    }

    /// Precedence class: lower reports first (SAM-5 §5.14, table 43 ordering).
    const fn precedence(self) -> u8 {
        match self {
            Self::PowerOnReset | Self::PowerOn | Self::BusDeviceReset => 0,
            Self::ModeParametersChanged
            | Self::ReservationsPreempted
            | Self::ReservationsReleased
            | Self::RegistrationsPreempted
            | Self::CapacityDataChanged => 1,
            Self::CommandsCleared => 2,
            Self::InquiryDataChanged | Self::ReportedLunsChanged => 3,
        }
    }
}

/// The pending unit attentions of one I_T nexus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UaQueue {
    pending: Vec<UnitAttention>,
}

impl UaQueue {
    /// Establishes a condition. Returns whether the queue went from empty to non-empty.
    pub(crate) fn establish(&mut self, ua: UnitAttention) -> bool {
        let was_empty = self.pending.is_empty();
        if ua.precedence() == 0 {
            // A reset supersedes every condition it implies (SAM-5 §6.3).
            self.pending.clear();
            self.pending.push(ua);
            return was_empty;
        }
        if self.pending.contains(&ua) {
            return false;
        }
        let at = self
            .pending
            .iter()
            .position(|p| p.precedence() > ua.precedence())
            .unwrap_or(self.pending.len());
        self.pending.insert(at, ua);
        was_empty
    }

    /// Removes and returns the highest-precedence condition.
    pub(crate) fn take(&mut self) -> Option<UnitAttention> {
        if self.pending.is_empty() {
            None
        } else {
            Some(self.pending.remove(0))
        }
    }

    /// Removes one condition if pending (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED).
    pub(crate) fn remove(&mut self, ua: UnitAttention) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| *p != ua);
        self.pending.len() != before
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending conditions in delivery order.
    pub(crate) fn pending(&self) -> &[UnitAttention] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_fifo_order() {
        let mut q = UaQueue::default();
        assert!(q.establish(UnitAttention::ReportedLunsChanged));
        assert!(!q.establish(UnitAttention::CommandsCleared));
        assert!(!q.establish(UnitAttention::ModeParametersChanged));
        assert!(!q.establish(UnitAttention::CapacityDataChanged));
        assert!(!q.establish(UnitAttention::ModeParametersChanged));
        assert_eq!(
            q.pending(),
            &[
                UnitAttention::ModeParametersChanged,
                UnitAttention::CapacityDataChanged,
                UnitAttention::CommandsCleared,
                UnitAttention::ReportedLunsChanged
            ]
        );
        assert_eq!(q.take(), Some(UnitAttention::ModeParametersChanged));
    }

    #[test]
    fn reset_supersedes() {
        let mut q = UaQueue::default();
        q.establish(UnitAttention::ModeParametersChanged);
        q.establish(UnitAttention::BusDeviceReset);
        assert_eq!(q.pending(), &[UnitAttention::BusDeviceReset]);
        q.establish(UnitAttention::ReservationsReleased);
        assert_eq!(q.take(), Some(UnitAttention::BusDeviceReset));
        assert_eq!(q.take(), Some(UnitAttention::ReservationsReleased));
        assert_eq!(q.take(), None);
        assert!(q.is_empty());
    }
}
