//! Atomicity of COMPARE AND WRITE, ORWRITE and WRITE ATOMIC against every other read and write
//! of the same logical blocks (SBC-4 §5.3, §5.11, §5.48: "performed as an uninterruptible
//! operation"), across nexuses and reactor threads.
//!
//! The contract with the engine:
//!
//! * Plain reads and writes enter the gate when [`crate::LogicalUnit::execute`] builds their
//!   plan and leave it in [`crate::LogicalUnit::complete`] (or [`crate::LogicalUnit::abort`]).
//!   While no atomic command is active on the logical unit, entering costs one atomic
//!   increment on a per-nexus shard counter and takes no lock.
//! * An atomic command registers its LBA range in a table (under a mutex: slow path) and only
//!   proceeds once no overlapping range is held and every plain I/O that entered through the
//!   lock-free path has left. While an atomic command is registered, new plain I/O registers its
//!   range in the table too and waits for overlapping atomic commands.
//! * When a command cannot proceed, `execute` returns [`crate::Step::Blocked`]; the engine
//!   retries `execute` with the same command after the unblock notifier it installed with
//!   [`crate::LogicalUnit::set_unblock_notifier`] fires (it fires whenever a registered range
//!   or a lock-free plain I/O leaves while atomic commands wait).
//!
//! The lock-free path and the registration of an atomic command use sequentially consistent
//! increments followed by loads of the other side's counter (Dekker's pattern), so at least one
//! of two racing commands sees the other.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

const SHARDS: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// Which kind of command holds a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    Atomic,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ticket: u64,
    start: u64,
    end: u64,
    kind: Kind,
    held: bool,
}

impl Entry {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

#[derive(Default)]
struct Table {
    next_ticket: u64,
    entries: Vec<Entry>,
}

/// A command's position in the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Pass {
    /// Not in the gate.
    #[default]
    Outside,
    /// Entered through the lock-free path on this shard.
    Shard(u8),
    /// Registered in the range table (held or waiting).
    Ticket(u64, Kind),
}

type Notifier = Arc<dyn Fn() + Send + Sync>;

/// The per-logical-unit gate.
pub(crate) struct Gate {
    shards: [Padded; SHARDS],
    atomic_active: AtomicUsize,
    table: Mutex<Table>,
    changed: Condvar,
    generation: AtomicU64,
    notifier: Mutex<Option<Notifier>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            shards: Default::default(),
            atomic_active: AtomicUsize::new(0),
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            notifier: Mutex::new(None),
        }
    }
}

impl Gate {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_notifier(&self, notifier: Notifier) {
        *self.notifier.lock().unwrap_or_else(PoisonError::into_inner) = Some(notifier);
    }

    /// Enters for a plain read or write of blocks `[start, end)`. Returns `false` when the
    /// command must wait (it keeps its place: call again with the same `pass`).
    pub(crate) fn enter(
        &self,
        kind: Kind,
        shard: u32,
        start: u64,
        end: u64,
        pass: &mut Pass,
    ) -> bool {
        match *pass {
            Pass::Shard(_) => return true,
            Pass::Ticket(ticket, _) => return self.try_hold(ticket),
            Pass::Outside => {}
        }
        if kind == Kind::Plain {
            let i = (shard as usize) % SHARDS;
            self.shards[i].0.fetch_add(1, Ordering::SeqCst);
            if self.atomic_active.load(Ordering::SeqCst) == 0 {
                *pass = Pass::Shard(i as u8);
                return true;
            }
            self.shards[i].0.fetch_sub(1, Ordering::SeqCst);
            self.wake();
        } else {
            self.atomic_active.fetch_add(1, Ordering::SeqCst);
        }
        let ticket = {
            let mut t = self.table();
            let ticket = t.next_ticket;
            t.next_ticket += 1;
            t.entries.push(Entry {
                ticket,
                start,
                end,
                kind,
                held: false,
            });
            ticket
        };
        *pass = Pass::Ticket(ticket, kind);
        self.try_hold(ticket)
    }

    fn try_hold(&self, ticket: u64) -> bool {
        let mut t = self.table();
        let Some(me) = t.entries.iter().copied().find(|e| e.ticket == ticket) else {
            return false;
        };
        if me.held {
            return true;
        }
        let conflict = t.entries.iter().any(|e| {
            e.ticket != ticket
                && e.overlaps(me.start, me.end)
                && match (me.kind, e.kind) {
                    // Plain commands only wait for atomic ones (held, or queued before them).
                    (Kind::Plain, Kind::Plain) => false,
                    (Kind::Plain, Kind::Atomic) => e.held || e.ticket < ticket,
                    // Atomic commands wait for every held overlapping range and for atomic
                    // commands queued before them.
                    (Kind::Atomic, Kind::Plain) => e.held,
                    (Kind::Atomic, Kind::Atomic) => e.held || e.ticket < ticket,
                }
        });
        if conflict {
            return false;
        }
        if me.kind == Kind::Atomic && self.shards.iter().any(|s| s.0.load(Ordering::SeqCst) != 0) {
            // Plain I/O that entered without registering its range may overlap: wait for it.
            return false;
        }
        if let Some(e) = t.entries.iter_mut().find(|e| e.ticket == ticket) {
            e.held = true;
        }
        true
    }

    /// Leaves the gate (held or still waiting).
    pub(crate) fn leave(&self, pass: &mut Pass) {
        match std::mem::take(pass) {
            Pass::Outside => {}
            Pass::Shard(i) => {
                self.shards[usize::from(i) % SHARDS]
                    .0
                    .fetch_sub(1, Ordering::SeqCst);
                if self.atomic_active.load(Ordering::SeqCst) != 0 {
                    self.wake();
                }
            }
            Pass::Ticket(ticket, kind) => {
                {
                    let mut t = self.table();
                    t.entries.retain(|e| e.ticket != ticket);
                }
                if kind == Kind::Atomic {
                    self.atomic_active.fetch_sub(1, Ordering::SeqCst);
                }
                self.wake();
            }
        }
    }

    fn wake(&self) {
        {
            let _t = self.table();
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.changed.notify_all();
        }
        let notifier = self
            .notifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(n) = notifier {
            n();
        }
    }

    /// The current wake generation (for [`Gate::wait_for_change`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Blocks the calling thread until the gate changed after `generation` was read
    /// (used by the synchronous executor only).
    pub(crate) fn wait_for_change(&self, generation: u64) {
        let mut t = self.table();
        while self.generation.load(Ordering::SeqCst) == generation {
            t = self.changed.wait(t).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether no command is in the gate (for tests).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.atomic_active.load(Ordering::SeqCst) == 0
            && self.shards.iter().all(|s| s.0.load(Ordering::SeqCst) == 0)
            && self.table().entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_lock_free_without_atomics() {
        let g = Gate::default();
        let mut p = Pass::Outside;
        assert!(g.enter(Kind::Plain, 3, 0, 8, &mut p));
        assert_eq!(p, Pass::Shard(3));
        g.leave(&mut p);
        assert!(g.is_idle());
    }

    #[test]
    fn atomic_waits_for_lock_free_plain() {
        let g = Gate::default();
        let mut plain = Pass::Outside;
        assert!(g.enter(Kind::Plain, 0, 0, 8, &mut plain));
        let mut caw = Pass::Outside;
        assert!(!g.enter(Kind::Atomic, 1, 100, 101, &mut caw));
        // New plain I/O now registers its range; non-overlapping ranges proceed.
        let mut other = Pass::Outside;
        assert!(g.enter(Kind::Plain, 2, 200, 201, &mut other));
        assert!(matches!(other, Pass::Ticket(_, Kind::Plain)));
        g.leave(&mut plain);
        assert!(g.enter(Kind::Atomic, 1, 100, 101, &mut caw));
        // Overlapping plain waits for the held atomic range.
        let mut overlapping = Pass::Outside;
        assert!(!g.enter(Kind::Plain, 3, 100, 104, &mut overlapping));
        g.leave(&mut caw);
        assert!(g.enter(Kind::Plain, 3, 100, 104, &mut overlapping));
        g.leave(&mut overlapping);
        g.leave(&mut other);
        assert!(g.is_idle());
    }

    #[test]
    fn atomics_queue_in_order() {
        let g = Gate::default();
        let mut a = Pass::Outside;
        let mut b = Pass::Outside;
        assert!(g.enter(Kind::Atomic, 0, 0, 4, &mut a));
        assert!(!g.enter(Kind::Atomic, 0, 2, 6, &mut b));
        let mut plain = Pass::Outside;
        // Waits behind b (queued earlier) even after a leaves.
        assert!(!g.enter(Kind::Plain, 0, 5, 6, &mut plain));
        g.leave(&mut a);
        assert!(!g.enter(Kind::Plain, 0, 5, 6, &mut plain));
        assert!(g.enter(Kind::Atomic, 0, 2, 6, &mut b));
        g.leave(&mut b);
        assert!(g.enter(Kind::Plain, 0, 5, 6, &mut plain));
        g.leave(&mut plain);
        assert!(g.is_idle());
    }

    #[test]
    fn waiting_command_can_leave() {
        let g = Gate::default();
        let mut a = Pass::Outside;
        let mut b = Pass::Outside;
        assert!(g.enter(Kind::Atomic, 0, 0, 4, &mut a));
        assert!(!g.enter(Kind::Atomic, 0, 0, 4, &mut b));
        g.leave(&mut b);
        g.leave(&mut a);
        assert!(g.is_idle());
    }
}
