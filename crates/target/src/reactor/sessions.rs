//! Sessions owned by a reactor: running their events (RFC 7143 state machine outputs),
//! collecting their transmits, ending and terminating them.

use std::sync::Arc;

use rtgt_scsi::Nexus;
use rtgt_session::target::{ConnId, SessionEvent, TargetSession, TaskId};

use super::buffers::Slot;
use super::core::{Core, Life};
use crate::runtime::TargetRuntime;

/// A session owned by this reactor.
pub(crate) struct SessionCtx {
    pub session: TargetSession,
    /// ConnId → connection token.
    pub conns: Vec<Option<usize>>,
    pub slots: Vec<Slot>,
    pub nexus: Nexus,
    pub target: Option<Arc<TargetRuntime>>,
    pub serial: u64,
    pub tsih: u16,
    pub ended: bool,
}

impl Core {
    /// Runs a session's events (SCSI work, closes) and collects its transmits.
    pub(crate) fn drive_session(&mut self, sidx: usize) {
        loop {
            self.run_events(sidx);
            self.collect_transmits(sidx);
            // Handing out transmits can release tasks; run those events too.
            if !self
                .sessions
                .get(sidx)
                .is_some_and(|c| c.session.has_events())
            {
                break;
            }
        }
        if self.sessions.get(sidx).is_some_and(|c| c.ended) {
            self.remove_session(sidx);
        }
    }

    pub(crate) fn run_events(&mut self, sidx: usize) {
        while let Some(ev) = self
            .sessions
            .get_mut(sidx)
            .and_then(|c| c.session.poll_event())
        {
            match ev {
                SessionEvent::Execute(id) => self.scsi_start(sidx, id),
                SessionEvent::DataOutComplete(id) => self.scsi_execute(sidx, id),
                SessionEvent::Aborted(id) => self.scsi_aborted(sidx, id),
                SessionEvent::TaskReleased(id) => self.release_slot(sidx, id),
                SessionEvent::Lu(action) => self.lu_action(sidx, action),
                SessionEvent::CloseConnection(cid) => {
                    if let Some(t) = self.conn_token(sidx, cid) {
                        if let Some(conn) = self.conns.get_mut(t) {
                            if conn.life == Life::Open {
                                conn.life = Life::CloseAfterFlush;
                            }
                        }
                        self.mark_dirty(t);
                    }
                }
                SessionEvent::ConnectionRemoved(cid) => {
                    if let Some(ctx) = self.sessions.get_mut(sidx) {
                        if let Some(slot) = ctx.conns.get_mut(usize::from(cid.0)) {
                            *slot = None;
                        }
                    }
                }
                SessionEvent::SessionEnded => {
                    if let Some(ctx) = self.sessions.get_mut(sidx) {
                        ctx.ended = true;
                    }
                }
            }
        }
    }

    pub(crate) fn conn_token(&self, sidx: usize, cid: ConnId) -> Option<usize> {
        self.sessions
            .get(sidx)?
            .conns
            .get(usize::from(cid.0))
            .copied()
            .flatten()
    }

    pub(crate) fn collect_transmits(&mut self, sidx: usize) {
        let Some(ctx) = self.sessions.get_mut(sidx) else {
            return;
        };
        for (i, token) in ctx.conns.iter().enumerate() {
            let Some(token) = *token else {
                continue;
            };
            let cid = ConnId(i as u16);
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let mut any = false;
            while let Some(t) = ctx.session.poll_transmit(cid) {
                conn.txq.push_back(t);
                any = true;
            }
            if (any || conn.life == Life::CloseAfterFlush) && !self.dirty.contains(&token) {
                self.dirty.push(token);
            }
        }
    }

    pub(crate) fn remove_session(&mut self, sidx: usize) {
        let Some(ctx) = self.sessions.remove(sidx) else {
            return;
        };
        if let Some(t) = &ctx.target {
            for l in &t.luns {
                l.lu.nexus_lost(ctx.nexus.id);
            }
        }
        let mut table = self
            .shared
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table
            .get(ctx.tsih)
            .is_some_and(|e| e.value.serial == ctx.serial)
        {
            table.remove(ctx.tsih);
        }
        tracing::info!(reactor = self.id, tsih = ctx.tsih, "session ended");
    }

    /// Ends a session of ours (reinstatement by a new login, or cold reset).
    pub(crate) fn terminate_session(&mut self, tsih: u16, serial: u64) {
        let found: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, c)| c.tsih == tsih && c.serial == serial)
            .map(|(i, _)| i)
            .collect();
        for sidx in found {
            let tokens: Vec<usize> = self
                .sessions
                .get(sidx)
                .map(|c| c.conns.iter().flatten().copied().collect())
                .unwrap_or_default();
            if let Some(ctx) = self.sessions.get_mut(sidx) {
                ctx.session.terminate();
            }
            for t in tokens {
                self.close_conn(t);
            }
            self.drive_session(sidx);
        }
    }

    // ------------------------------------------------------------------ SCSI
}

impl SessionCtx {
    /// The live task occupying `slot`, if any.
    pub(crate) fn session_task_id(&self, slot: usize) -> Option<TaskId> {
        self.session.task_in_slot(slot)
    }
}
