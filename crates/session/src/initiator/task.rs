//! The initiator's task table: Initiator Task Tags (RFC 7143 §11.2.1.8 — unique per session
//! among outstanding tasks, never 0xffffffff) and the per-task transfer state that Data-In
//! (§11.7) and R2T (§11.8) PDUs are checked against.
//!
//! Slots are allocated once, when the connection is set up; the table never allocates
//! afterwards. An ITT is the slot index in the low 16 bits, the connection's index within the
//! session in the next 6 bits (tags must be unique session-wide, and each connection of an
//! MC/S session has its own table), and a 10-bit generation counter on top, so a late PDU for a
//! task whose slot was reused is recognised as stale. The slot index is what the caller uses
//! to find the buffer it owns for that task.

use rtgt_pdu::{Itt, Lun, Sn, TmfFunction};

/// Identifies an outstanding task: its slot (index of the caller's buffer) and its ITT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId {
    slot: u16,
    itt: Itt,
}

impl TaskId {
    /// The slot index (0-based; SCSI tasks use `0..queue_depth`).
    #[inline]
    pub const fn slot(self) -> usize {
        self.slot as usize
    }

    /// The Initiator Task Tag on the wire.
    #[inline]
    pub const fn itt(self) -> Itt {
        self.itt
    }
}

/// What a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A SCSI command.
    Scsi(ScsiTask),
    /// A task management request; `referenced` is the slot of the task it aborts, if any.
    Tmf {
        function: TmfFunction,
        lun: Lun,
        referenced: Option<TaskId>,
    },
    /// Our NOP-Out ping.
    Ping,
    /// A Logout Request.
    Logout,
    /// A Text Request sequence.
    Text,
}

/// Transfer state of a SCSI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScsiTask {
    pub lun: Lun,
    pub read: bool,
    pub write: bool,
    pub expected_len: u32,
    pub cmd_sn: Sn,
    /// Next Data-In DataSN expected.
    pub next_data_sn: u32,
    /// Next Data-In buffer offset expected (bytes received so far).
    pub received: u32,
    /// Next R2TSN expected.
    pub next_r2t_sn: u32,
    /// R2Ts whose Data-Out sequence has not been fully sent.
    pub outstanding_r2t: u16,
    /// The final Data-In (F bit) was seen.
    pub data_done: bool,
    /// Status arrived in the last Data-In; the slot waits for `Session::release`.
    pub completed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u16,
    task: Option<Kind>,
}

/// Fixed-capacity table of outstanding tasks of one connection.
#[derive(Debug, Clone)]
pub(crate) struct TaskTable {
    slots: Vec<Slot>,
    /// Free SCSI slots (a stack; capacity reserved up front).
    free_scsi: Vec<u16>,
    /// Free control slots (TMF, ping, logout, text).
    free_control: Vec<u16>,
    scsi_slots: u16,
    outstanding_scsi: u16,
    /// The connection's index, placed in bits 16..22 of every tag.
    conn_bits: u32,
}

/// Connections per session whose tags cannot collide.
pub(crate) const MAX_CONNECTIONS: usize = 64;
const GENERATION_MASK: u16 = 0x3ff;

#[inline]
fn tag(generation: u16, conn_bits: u32, slot: u16) -> Itt {
    Itt((u32::from(generation & GENERATION_MASK) << 22) | conn_bits | u32::from(slot))
}

/// Control slots per connection: enough for a ping, a logout, a text exchange and a TMF or two.
pub(crate) const CONTROL_SLOTS: u16 = 6;

impl TaskTable {
    /// A table with `scsi_slots` slots for SCSI commands (at most 65000) plus control slots,
    /// for the connection with index `conn` (modulo [`MAX_CONNECTIONS`]) in its session.
    pub(crate) fn new(scsi_slots: u16, conn: usize) -> Self {
        let scsi_slots = scsi_slots.clamp(1, 65000);
        let total = scsi_slots + CONTROL_SLOTS;
        let slots = vec![
            Slot {
                generation: 0,
                task: None
            };
            usize::from(total)
        ];
        // Pop order: lowest slot first.
        let free_scsi = (0..scsi_slots).rev().collect();
        let free_control = (scsi_slots..total).rev().collect();
        let conn_bits = ((conn % MAX_CONNECTIONS) as u32) << 16;
        Self {
            slots,
            free_scsi,
            free_control,
            scsi_slots,
            outstanding_scsi: 0,
            conn_bits,
        }
    }

    pub(crate) fn scsi_slots(&self) -> u16 {
        self.scsi_slots
    }

    pub(crate) fn outstanding_scsi(&self) -> u16 {
        self.outstanding_scsi
    }

    pub(crate) fn has_free_scsi(&self) -> bool {
        !self.free_scsi.is_empty()
    }

    pub(crate) fn has_free_control(&self) -> bool {
        !self.free_control.is_empty()
    }

    /// Allocates a slot for `kind` and returns its id.
    pub(crate) fn alloc(&mut self, kind: Kind) -> Option<TaskId> {
        let scsi = matches!(kind, Kind::Scsi(_));
        let slot = if scsi {
            self.free_scsi.pop()?
        } else {
            self.free_control.pop()?
        };
        let s = self.slots.get_mut(usize::from(slot))?;
        s.generation = s.generation.wrapping_add(1) & GENERATION_MASK;
        s.task = Some(kind);
        if scsi {
            self.outstanding_scsi += 1;
        }
        Some(TaskId {
            slot,
            itt: tag(s.generation, self.conn_bits, slot),
        })
    }

    /// Resolves an ITT from the wire to a live task.
    #[inline]
    pub(crate) fn lookup(&self, itt: Itt) -> Option<(TaskId, &Kind)> {
        let slot = (itt.0 & 0xffff) as u16;
        let s = self.slots.get(usize::from(slot))?;
        if tag(s.generation, self.conn_bits, slot) != itt {
            return None;
        }
        s.task.as_ref().map(|k| (TaskId { slot, itt }, k))
    }

    /// Mutable access to a live task.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut Kind> {
        let s = self.slots.get_mut(id.slot())?;
        if tag(s.generation, self.conn_bits, id.slot) != id.itt {
            return None;
        }
        s.task.as_mut()
    }

    /// Whether `id` is still outstanding.
    pub(crate) fn is_live(&self, id: TaskId) -> bool {
        self.lookup(id.itt).is_some_and(|(t, _)| t.slot == id.slot)
    }

    /// Frees a task's slot; returns what it was.
    pub(crate) fn free(&mut self, id: TaskId) -> Option<Kind> {
        let s = self.slots.get_mut(id.slot())?;
        if tag(s.generation, self.conn_bits, id.slot) != id.itt {
            return None;
        }
        let kind = s.task.take()?;
        if matches!(kind, Kind::Scsi(_)) {
            self.free_scsi.push(id.slot);
            self.outstanding_scsi = self.outstanding_scsi.saturating_sub(1);
        } else {
            self.free_control.push(id.slot);
        }
        Some(kind)
    }

    /// Ids of all live SCSI tasks (for failing them when the connection goes).
    pub(crate) fn live_scsi(&self) -> impl Iterator<Item = (TaskId, ScsiTask)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.task {
                Some(Kind::Scsi(t)) => Some((
                    TaskId {
                        slot: i as u16,
                        itt: tag(s.generation, self.conn_bits, i as u16),
                    },
                    t,
                )),
                _ => None,
            })
    }

    /// Ids of all live tasks of any kind.
    pub(crate) fn live(&self) -> impl Iterator<Item = (TaskId, Kind)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.task.map(|k| {
                (
                    TaskId {
                        slot: i as u16,
                        itt: tag(s.generation, self.conn_bits, i as u16),
                    },
                    k,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scsi() -> Kind {
        Kind::Scsi(ScsiTask {
            lun: Lun::ZERO,
            read: true,
            write: false,
            expected_len: 512,
            cmd_sn: Sn(1),
            next_data_sn: 0,
            received: 0,
            next_r2t_sn: 0,
            outstanding_r2t: 0,
            data_done: false,
            completed: false,
        })
    }

    #[test]
    #[allow(clippy::many_single_char_names)] // a, b, c: tasks; p: ping; t: table
    fn slots_are_bounded_and_reused_with_a_new_generation() {
        let mut t = TaskTable::new(2, 0);
        let a = t.alloc(scsi()).unwrap();
        let b = t.alloc(scsi()).unwrap();
        assert_eq!((a.slot(), b.slot()), (0, 1));
        assert_eq!(a.itt(), Itt(0x0040_0000));
        assert!(t.alloc(scsi()).is_none());
        assert_eq!(t.outstanding_scsi(), 2);
        // Control slots are separate.
        let p = t.alloc(Kind::Ping).unwrap();
        assert_eq!(p.slot(), 2);
        assert!(t.free(a).is_some());
        assert!(t.free(a).is_none(), "double free");
        let c = t.alloc(scsi()).unwrap();
        assert_eq!(c.slot(), 0);
        assert_eq!(c.itt(), Itt(0x0080_0000));
        // The old tag no longer resolves.
        assert!(t.lookup(a.itt()).is_none());
        assert!(t.lookup(c.itt()).is_some());
        assert!(!t.is_live(a));
        assert_eq!(t.live_scsi().count(), 2);
        assert_eq!(t.live().count(), 3);
    }

    #[test]
    fn out_of_range_tags_do_not_resolve() {
        let t = TaskTable::new(4, 0);
        assert!(t.lookup(Itt::RESERVED).is_none());
        assert!(t.lookup(Itt(0x0040_0003)).is_none(), "slot never allocated");
    }

    #[test]
    fn tags_are_unique_across_the_connections_of_a_session() {
        let mut a = TaskTable::new(4, 0);
        let mut b = TaskTable::new(4, 1);
        let ta = a.alloc(scsi()).unwrap();
        let tb = b.alloc(scsi()).unwrap();
        assert_eq!(ta.slot(), tb.slot());
        assert_ne!(ta.itt(), tb.itt());
        assert_eq!(tb.itt(), Itt(0x0041_0000));
        // A tag of another connection does not resolve here.
        assert!(a.lookup(tb.itt()).is_none());
        assert!(b.lookup(tb.itt()).is_some());
    }

    #[test]
    fn generations_wrap_without_reaching_the_reserved_tag() {
        let mut t = TaskTable::new(1, MAX_CONNECTIONS - 1);
        for _ in 0..3000 {
            let id = t.alloc(scsi()).unwrap();
            assert_ne!(id.itt(), Itt::RESERVED);
            assert!(t.lookup(id.itt()).is_some());
            t.free(id);
        }
    }
}
