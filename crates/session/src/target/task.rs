//! The task table of a session and each task's transfer state (RFC 7143 §4.2.2 command
//! numbering, §11.7–§11.8 Data-Out/R2T sequencing, §11.7.2 Data-In with status).
//!
//! A task is one SCSI command from arrival to the moment the engine has finished sending its
//! last PDU. Slots are allocated once when the session is created (queue depth plus a reserve
//! for immediate commands) and recycled through a free list, so the per-command path never
//! allocates. A [`TaskId`] carries the slot and a generation so a stale id from the engine is
//! recognised instead of touching a recycled slot.

use rtgt_pdu::{Cdb, Itt, Lun, Residual, ScsiStatus, Sn, TaskAttribute, Ttt};

use super::ConnId;

/// Most R2Ts one task may have outstanding (we never offer more MaxOutstandingR2T than this).
pub const MAX_R2T_PER_TASK: usize = 16;

/// Identifies a task to the engine: slot index plus generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u32);

impl TaskId {
    pub(crate) const fn new(slot: u16, generation: u16) -> Self {
        Self(((generation as u32) << 16) | slot as u32)
    }

    /// Index of the task's slot: stable for the task's lifetime and below the session's task
    /// capacity, so an engine can keep per-task state (buffers) in a plain array.
    pub const fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }

    pub(crate) const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The id as one integer (e.g. for an engine's completion tags).
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The id [`TaskId::raw`] returned. A made-up id is harmless: the session recognises ids
    /// whose slot or generation does not name a live task.
    ///
    /// ```
    /// use rtgt_session::target::TaskId;
    /// let id = TaskId::from_raw(0x0003_0007);
    /// assert_eq!((id.slot(), id.raw()), (7, 0x0003_0007));
    /// ```
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
}

impl core::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Task({}#{})", self.slot(), self.generation())
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Arrived out of CmdSN order; waiting for the gap to close.
    Queued,
    /// Handed to the engine ([`super::SessionEvent::Execute`]); waiting for it to ask for
    /// Data-Out or to complete the task.
    Delivered,
    /// Collecting Data-Out (unsolicited and solicited with R2T).
    Collecting,
    /// All Data-Out is in; the engine executes the command.
    Executing,
    /// Completed; Data-In and/or the response are being handed out.
    Responding,
    /// Everything handed out (or the task was aborted); waiting for sends and backend I/O.
    Finished,
}

/// One outstanding R2T (RFC 7143 §11.8).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct R2tState {
    pub ttt: Ttt,
    pub offset: u32,
    pub len: u32,
    /// Bytes of this burst received so far (in order).
    pub received: u32,
    /// DataSN expected next within this burst.
    pub next_data_sn: u32,
}

/// A SCSI task's state. Readable by the engine through [`super::TargetSession::task`].
#[derive(Debug, Clone)]
pub struct Task {
    pub(crate) id: TaskId,
    pub(crate) conn: ConnId,
    pub(crate) itt: Itt,
    pub(crate) lun: Lun,
    pub(crate) cmd_sn: Sn,
    pub(crate) immediate: bool,
    pub(crate) cdb: Option<Cdb>,
    pub(crate) attr: TaskAttribute,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) edtl: u32,
    pub(crate) buffer_len: u32,
    pub(crate) phase: Phase,
    pub(crate) aborted: bool,
    /// Suppress every further PDU (aborted, or its connection is gone).
    pub(crate) silent: bool,
    /// The engine holds the task for SCSI processing / backend I/O.
    pub(crate) engine_busy: bool,
    /// A Data-Out sequence error (ASC, ASCQ) ended the data transfer.
    pub(crate) data_error: Option<(u8, u8)>,
    /// Counted in the session's delivered-task total (frees a CmdSN window slot on release).
    pub(crate) held: bool,
    /// Transmits handed out that reference this task and are not yet confirmed sent.
    pub(crate) sends_in_flight: u32,
    // ---- Data-Out ----
    /// Bytes the logical unit wants (≤ EDTL); known once the engine asked for data.
    pub(crate) want: Option<u32>,
    /// Unsolicited data may still arrive (SCSI Command without F, no final unsolicited PDU yet).
    pub(crate) unsol_pending: bool,
    /// Highest offset unsolicited data may reach (FirstBurstLength / EDTL bound).
    pub(crate) unsol_limit: u32,
    /// Next offset expected from unsolicited Data-Out (in order).
    pub(crate) unsol_next: u32,
    /// DataSN expected next in the unsolicited burst.
    pub(crate) unsol_data_sn: u32,
    /// Next offset to solicit with an R2T.
    pub(crate) r2t_next: u32,
    /// Bytes solicited with R2Ts and received.
    pub(crate) solicited_received: u32,
    pub(crate) next_r2t_sn: u32,
    pub(crate) r2ts: [R2tState; MAX_R2T_PER_TASK],
    pub(crate) r2t_count: usize,
    // ---- Data-In / response ----
    pub(crate) status: ScsiStatus,
    pub(crate) residual: Residual,
    pub(crate) sense: Vec<u8>,
    pub(crate) data_in_len: u32,
    pub(crate) data_in_sent: u32,
    pub(crate) data_sn: u32,
    /// The status-bearing PDU has been handed out.
    pub(crate) status_sent: bool,
}

impl Task {
    fn blank(id: TaskId) -> Self {
        Self {
            id,
            conn: ConnId(0),
            itt: Itt::RESERVED,
            lun: Lun::ZERO,
            cmd_sn: Sn(0),
            immediate: false,
            cdb: None,
            attr: TaskAttribute::SIMPLE,
            read: false,
            write: false,
            edtl: 0,
            buffer_len: 0,
            phase: Phase::Finished,
            aborted: false,
            silent: false,
            engine_busy: false,
            data_error: None,
            held: false,
            sends_in_flight: 0,
            want: None,
            unsol_pending: false,
            unsol_limit: 0,
            unsol_next: 0,
            unsol_data_sn: 0,
            r2t_next: 0,
            solicited_received: 0,
            next_r2t_sn: 0,
            r2ts: [R2tState::default(); MAX_R2T_PER_TASK],
            r2t_count: 0,
            status: ScsiStatus::GOOD,
            residual: Residual::None,
            sense: Vec::new(),
            data_in_len: 0,
            data_in_sent: 0,
            data_sn: 0,
            status_sent: false,
        }
    }

    /// The engine's handle for this task.
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// The connection the command arrived on (responses go there: connection allegiance).
    pub fn conn(&self) -> ConnId {
        self.conn
    }
    /// Initiator Task Tag.
    pub fn itt(&self) -> Itt {
        self.itt
    }
    /// Addressed logical unit.
    pub fn lun(&self) -> Lun {
        self.lun
    }
    /// CmdSN of the command.
    pub fn cmd_sn(&self) -> Sn {
        self.cmd_sn
    }
    /// The complete CDB (including an extended CDB AHS).
    pub fn cdb(&self) -> &[u8] {
        self.cdb.as_ref().map_or(&[], Cdb::as_bytes)
    }
    /// Task attribute (SAM-5 §8.6).
    pub fn attr(&self) -> TaskAttribute {
        self.attr
    }
    /// The R bit: the initiator expects Data-In.
    pub fn is_read(&self) -> bool {
        self.read
    }
    /// The W bit: the initiator will send Data-Out.
    pub fn is_write(&self) -> bool {
        self.write
    }
    /// Whether the command was sent as an immediate command.
    pub fn is_immediate(&self) -> bool {
        self.immediate
    }
    /// Expected Data Transfer Length from the SCSI Command PDU.
    pub fn expected_len(&self) -> u32 {
        self.edtl
    }
    /// Size of the buffer the engine must provide for this task: the EDTL, capped at the
    /// session's largest task buffer.
    pub fn buffer_len(&self) -> u32 {
        self.buffer_len
    }
    /// Whether the task has been aborted (its results will be discarded).
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    pub(crate) fn outstanding_r2ts(&self) -> &[R2tState] {
        self.r2ts.get(..self.r2t_count).unwrap_or(&[])
    }

    pub(crate) fn remove_r2t(&mut self, idx: usize) {
        if idx < self.r2t_count {
            self.r2ts.copy_within(idx + 1..self.r2t_count, idx);
            self.r2t_count -= 1;
        }
    }

    /// Bytes of the wanted range that have arrived.
    pub(crate) fn collected(&self) -> u32 {
        let want = self.want.unwrap_or(0);
        self.unsol_next.min(want) + self.solicited_received
    }
}

/// Fixed-capacity slab of tasks with a free list, plus ITT lookup.
#[derive(Debug)]
pub(crate) struct TaskTable {
    slots: Vec<Slot>,
    free: Vec<u16>,
    /// ITT → slot for live tasks (capacity reserved up front).
    by_itt: std::collections::HashMap<u32, u16>,
}

#[derive(Debug)]
struct Slot {
    generation: u16,
    live: bool,
    task: Task,
}

impl TaskTable {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, usize::from(u16::MAX));
        let slots = (0..capacity)
            .map(|i| Slot {
                generation: 0,
                live: false,
                task: Task::blank(TaskId::new(i as u16, 0)),
            })
            .collect();
        let free = (0..capacity as u16).rev().collect();
        let mut by_itt = std::collections::HashMap::new();
        by_itt.reserve(capacity);
        Self {
            slots,
            free,
            by_itt,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Allocates a slot for `itt`; `None` when full. The caller fills the task.
    pub(crate) fn alloc(&mut self, itt: Itt) -> Option<&mut Task> {
        let slot = self.free.pop()?;
        let s = self.slots.get_mut(usize::from(slot))?;
        s.generation = s.generation.wrapping_add(1);
        s.live = true;
        let id = TaskId::new(slot, s.generation);
        s.task.reset(id);
        s.task.itt = itt;
        self.by_itt.insert(itt.0, slot);
        Some(&mut s.task)
    }

    pub(crate) fn release(&mut self, id: TaskId) {
        if let Some(s) = self.slots.get_mut(id.slot()) {
            if s.live && s.generation == id.generation() {
                s.live = false;
                if self.by_itt.get(&s.task.itt.0) == Some(&(id.slot() as u16)) {
                    self.by_itt.remove(&s.task.itt.0);
                }
                s.task.sense.clear();
                self.free.push(id.slot() as u16);
            }
        }
    }

    pub(crate) fn get(&self, id: TaskId) -> Option<&Task> {
        let s = self.slots.get(id.slot())?;
        (s.live && s.generation == id.generation()).then_some(&s.task)
    }

    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let s = self.slots.get_mut(id.slot())?;
        (s.live && s.generation == id.generation()).then_some(&mut s.task)
    }

    pub(crate) fn in_slot(&self, slot: usize) -> Option<TaskId> {
        let s = self.slots.get(slot)?;
        s.live.then_some(s.task.id)
    }

    pub(crate) fn by_itt(&self, itt: Itt) -> Option<TaskId> {
        let slot = *self.by_itt.get(&itt.0)?;
        let s = self.slots.get(usize::from(slot))?;
        s.live.then_some(s.task.id)
    }

    /// Drops the ITT mapping of a task that stays alive only for its in-flight I/O, so the
    /// initiator may reuse the tag.
    pub(crate) fn forget_itt(&mut self, id: TaskId) {
        if let Some(t) = self.get(id) {
            let itt = t.itt.0;
            if self.by_itt.get(&itt) == Some(&(id.slot() as u16)) {
                self.by_itt.remove(&itt);
            }
        }
    }

    /// Ids of all live tasks (allocates; used on TMF/logout paths only).
    pub(crate) fn live_ids(&self) -> Vec<TaskId> {
        self.slots
            .iter()
            .filter(|s| s.live)
            .map(|s| s.task.id)
            .collect()
    }
}

impl Task {
    fn reset(&mut self, id: TaskId) {
        let sense = core::mem::take(&mut self.sense);
        *self = Self::blank(id);
        self.sense = sense;
        self.sense.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_recycle_with_new_generations() {
        let mut t = TaskTable::new(2);
        let a = t.alloc(Itt(1)).unwrap().id;
        let b = t.alloc(Itt(2)).unwrap().id;
        assert!(t.alloc(Itt(3)).is_none());
        assert_eq!(t.by_itt(Itt(2)), Some(b));
        t.release(a);
        assert!(t.get(a).is_none());
        let c = t.alloc(Itt(4)).unwrap().id;
        assert_eq!(c.slot(), a.slot());
        assert_ne!(c, a);
        assert!(
            t.get(a).is_none(),
            "stale id must not reach the recycled slot"
        );
        assert_eq!(t.get(c).unwrap().itt, Itt(4));
        assert_eq!(t.live_count(), 2);
        t.release(c);
        t.release(c); // double release is harmless
        assert_eq!(t.live_count(), 1);
    }

    #[test]
    fn forget_itt_keeps_the_task() {
        let mut t = TaskTable::new(4);
        let a = t.alloc(Itt(9)).unwrap().id;
        t.forget_itt(a);
        assert_eq!(t.by_itt(Itt(9)), None);
        assert!(t.get(a).is_some());
        let b = t.alloc(Itt(9)).unwrap().id;
        t.release(a);
        assert_eq!(
            t.by_itt(Itt(9)),
            Some(b),
            "releasing the old task keeps the new mapping"
        );
    }
}
