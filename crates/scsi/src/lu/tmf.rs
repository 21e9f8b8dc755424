//! Task management and I_T nexus events the engine reports (SAM-5 §6: LOGICAL UNIT RESET
//! §6.6, TARGET RESET, I_T nexus loss §6.3.4, ABORT TASK SET / CLEAR TASK SET §7.4/§7.5) and
//! the unit attentions they establish (SPC-5 §5.13).

use std::sync::atomic::Ordering;

use super::{LogicalUnit, NexusControl, State};
use crate::types::{Nexus, NexusId};
use crate::ua::UnitAttention;

/// Which reset happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET.
    LogicalUnit,
    /// TARGET WARM RESET.
    TargetWarm,
    /// TARGET COLD RESET (treated like a power cycle of the logical unit).
    TargetCold,
}

impl LogicalUnit {
    /// Registers a new I_T nexus so that unit attentions established before its first command
    /// reach it (call on login, for every logical unit of the target).
    pub fn nexus_established(&self, nexus: &Nexus) {
        let mut st = self.state();
        self.touch(&mut st, nexus);
    }

    /// The I_T nexus is gone (logout, connection loss without recovery, session reinstatement):
    /// releases its RESERVE(6/10) reservation and forgets its unit attentions. Persistent
    /// reservation registrations are kept (SPC-5 §5.14.4).
    pub fn nexus_lost(&self, id: NexusId) {
        let mut st = self.state();
        if let Some(r) = st.nexuses.remove(&id) {
            self.forget(&r);
        }
        if st.spc2 == Some(id) {
            st.spc2 = None;
        }
        self.update_reserved(&st);
    }

    /// A reset happened: aborted tasks are the engine's business; here RESERVE(6/10)
    /// reservations are released, mode parameters return to their defaults, a stopped unit
    /// starts, and every known nexus gets a POWER ON / BUS DEVICE RESET unit attention.
    pub fn reset(&self, kind: ResetKind) {
        let ua = match kind {
            ResetKind::LogicalUnit | ResetKind::TargetWarm => UnitAttention::BusDeviceReset,
            ResetKind::TargetCold => UnitAttention::PowerOn,
        };
        let mut st = self.state();
        st.spc2 = None;
        let defaults = self.mode_shape().defaults();
        st.wce = defaults.wce;
        self.wce.store(defaults.wce, Ordering::Release);
        let ids: Vec<NexusId> = st.nexuses.keys().copied().collect();
        for id in ids {
            self.set_control(&mut st, id, NexusControl::default());
        }
        self.stopped.store(false, Ordering::Release);
        Self::establish_all(&mut st, ua, &self.ua_nexuses);
        self.update_reserved(&st);
    }

    /// Tasks of `affected` nexuses were aborted by a CLEAR TASK SET (or another task management
    /// function) from `by`: those nexuses get COMMANDS CLEARED BY ANOTHER INITIATOR (TAS=0).
    pub fn commands_cleared(&self, by: NexusId, affected: &[NexusId]) {
        let mut st = self.state();
        for id in affected.iter().copied().filter(|id| *id != by) {
            Self::establish(
                &mut st,
                id,
                UnitAttention::CommandsCleared,
                &self.ua_nexuses,
            );
        }
    }

    /// Establishes a unit attention for one nexus, or for all known nexuses when `nexus` is
    /// `None` (e.g. [`UnitAttention::ReportedLunsChanged`] after the LUN inventory changed).
    pub fn establish_unit_attention(&self, nexus: Option<NexusId>, ua: UnitAttention) {
        let mut st = self.state();
        match nexus {
            Some(id) => Self::establish(&mut st, id, ua, &self.ua_nexuses),
            None => Self::establish_all(&mut st, ua, &self.ua_nexuses),
        }
    }

    /// The backing store was resized: reports the new capacity and establishes CAPACITY DATA
    /// HAS CHANGED for every known nexus.
    pub fn set_capacity(&self, num_blocks: u64) {
        self.num_blocks.store(num_blocks, Ordering::Release);
        let mut st = self.state();
        Self::establish_all(
            &mut st,
            UnitAttention::CapacityDataChanged,
            &self.ua_nexuses,
        );
    }

    fn establish_all(st: &mut State, ua: UnitAttention, counter: &std::sync::atomic::AtomicUsize) {
        let ids: Vec<NexusId> = st.nexuses.keys().copied().collect();
        for id in ids {
            Self::establish(st, id, ua, counter);
        }
    }
}
