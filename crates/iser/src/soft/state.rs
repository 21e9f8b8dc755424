//! The soft fabric's shared state and its progress engine: how work
//! requests execute, with the checks an RC HCA makes (InfiniBand
//! Architecture vol. 1 §9.7 RC requester/responder, §10.6 memory protection,
//! §9.7.5.2.8 RNR NAK; the RFC 7145 §4 RCaP requirements iSER relies on).
//!
//! Every byte the fabric touches lies inside a registered region whose key,
//! protection domain, range and rights were checked first; the copies are the
//! only `unsafe` here and rely on the registration contract of
//! [`ProtectionDomain::register`](crate::verbs::ProtectionDomain::register).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::verbs::{Access, CmEvent, QpCaps, QpState, Sge, WcOpcode, WcStatus, WorkCompletion};

use super::{Injection, OpKind, SoftConfig};

/// A registered region.
#[derive(Debug)]
pub(crate) struct MrRec {
    pub pd: u32,
    pub addr: u64,
    pub len: usize,
    pub access: Access,
    pub key: u32,
}

/// A memory window binding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    pub qp: u32,
    pub mr: u32,
    pub addr: u64,
    pub len: usize,
    pub access: Access,
    pub rkey: u32,
}

/// A memory window.
#[derive(Debug)]
pub(crate) struct MwRec {
    pub pd: u32,
    pub bound: Option<Binding>,
}

/// A send-queue operation as the fabric keeps it.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Send { invalidate: Option<u32> },
    Write { addr: u64, rkey: u32 },
    Read { addr: u64, rkey: u32 },
    LocalInv { rkey: u32 },
    Bind { mw: u32, binding: Binding },
}

impl Op {
    fn kind(&self) -> OpKind {
        match self {
            Self::Send { invalidate: None } => OpKind::Send,
            Self::Send {
                invalidate: Some(_),
            } => OpKind::SendWithInvalidate,
            Self::Write { .. } => OpKind::RdmaWrite,
            Self::Read { .. } => OpKind::RdmaRead,
            Self::LocalInv { .. } => OpKind::LocalInvalidate,
            Self::Bind { .. } => OpKind::BindMw,
        }
    }

    fn opcode(&self) -> WcOpcode {
        match self {
            Self::Send { .. } => WcOpcode::SEND,
            Self::Write { .. } => WcOpcode::RDMA_WRITE,
            Self::Read { .. } => WcOpcode::RDMA_READ,
            Self::LocalInv { .. } => WcOpcode::LOCAL_INV,
            Self::Bind { .. } => WcOpcode::BIND_MW,
        }
    }
}

#[derive(Debug)]
pub(crate) struct PendingSend {
    pub wr_id: u64,
    pub op: Op,
    pub sges: Vec<Sge>,
    pub signaled: bool,
    pub ready_at: Instant,
    pub rnr_retries: u32,
    pub next_try: Instant,
}

#[derive(Debug)]
pub(crate) struct PostedRecv {
    pub wr_id: u64,
    pub sges: Vec<Sge>,
}

/// Where a queue pair stands in connection management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    /// Initiator side, not yet connecting.
    Outgoing(SocketAddr),
    /// Initiator side, request sent.
    Connecting,
    /// Target side, created for request from initiator queue pair `0`.
    Incoming(u32),
    /// Connected to the peer queue pair.
    Connected(u32),
    /// Disconnected.
    Closed,
}

#[derive(Debug)]
pub(crate) struct QpRec {
    pub pd: u32,
    pub cq: u32,
    pub state: QpState,
    pub conn: Conn,
    pub caps: QpCaps,
    pub sq: VecDeque<PendingSend>,
    pub rq: VecDeque<PostedRecv>,
    pub events: VecDeque<CmEvent>,
}

/// A connection request waiting at a listener.
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub initiator_qp: u32,
    pub private_data: Vec<u8>,
}

/// All objects of one fabric.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub next_id: u32,
    pub pds: HashSet<u32>,
    pub mrs: HashMap<u32, MrRec>,
    pub mws: HashMap<u32, MwRec>,
    pub cqs: HashMap<u32, VecDeque<WorkCompletion>>,
    pub qps: BTreeMap<u32, QpRec>,
    pub listeners: HashMap<SocketAddr, VecDeque<PendingRequest>>,
    pub config: SoftConfig,
    pub injections: Vec<(Injection, u64)>,
    /// Operations executed, per kind (for tests and statistics).
    pub executed: HashMap<OpKind, u64>,
}

/// Why a remote access failed.
enum Fault {
    Status(WcStatus),
}

impl State {
    /// A fresh object number (never zero, at most 2^24 - 1 so it fits a key).
    pub fn alloc_id(&mut self) -> u32 {
        self.next_id = (self.next_id % 0x00ff_fffe) + 1;
        while self.mrs.contains_key(&self.next_id)
            || self.mws.contains_key(&self.next_id)
            || self.qps.contains_key(&self.next_id)
            || self.cqs.contains_key(&self.next_id)
            || self.pds.contains(&self.next_id)
        {
            self.next_id = (self.next_id % 0x00ff_fffe) + 1;
        }
        self.next_id
    }

    /// Pushes a completion on a CQ.
    fn complete(&mut self, cq: u32, wc: WorkCompletion) {
        if let Some(q) = self.cqs.get_mut(&cq) {
            q.push_back(wc);
        }
    }

    /// Moves a queue pair to the error state and flushes its queues.
    pub fn set_error(&mut self, qp: u32) {
        let Some(rec) = self.qps.get_mut(&qp) else {
            return;
        };
        rec.state = QpState::Err;
        let cq = rec.cq;
        let sq: Vec<_> = rec.sq.drain(..).collect();
        let rq: Vec<_> = rec.rq.drain(..).collect();
        for s in sq {
            self.complete(
                cq,
                WorkCompletion {
                    wr_id: s.wr_id,
                    status: WcStatus::WR_FLUSH_ERR,
                    opcode: s.op.opcode(),
                    qp_num: qp,
                    ..WorkCompletion::default()
                },
            );
        }
        for r in rq {
            self.complete(
                cq,
                WorkCompletion {
                    wr_id: r.wr_id,
                    status: WcStatus::WR_FLUSH_ERR,
                    opcode: WcOpcode::RECV,
                    qp_num: qp,
                    ..WorkCompletion::default()
                },
            );
        }
    }

    /// Disconnects `qp` and its peer: both enter the error state and see
    /// [`CmEvent::Disconnected`].
    pub fn disconnect(&mut self, qp: u32) {
        let peer = match self.qps.get(&qp).map(|q| q.conn) {
            Some(Conn::Connected(p)) => Some(p),
            _ => None,
        };
        for id in std::iter::once(qp).chain(peer) {
            if let Some(rec) = self.qps.get_mut(&id) {
                if rec.conn != Conn::Closed {
                    rec.conn = Conn::Closed;
                    rec.events.push_back(CmEvent::Disconnected);
                }
            }
            self.set_error(id);
        }
    }

    /// Checks a local scatter/gather list of `qp`'s domain; `write` asks for
    /// LOCAL_WRITE. Returns the total length.
    fn check_local(&self, pd: u32, sges: &[Sge], write: bool) -> Result<usize, WcStatus> {
        let mut total = 0usize;
        for s in sges {
            let mr = self
                .mrs
                .get(&(s.lkey >> 8))
                .filter(|m| m.key == s.lkey && m.pd == pd)
                .ok_or(WcStatus::LOC_PROT_ERR)?;
            if write && !mr.access.contains(Access::LOCAL_WRITE) {
                return Err(WcStatus::LOC_PROT_ERR);
            }
            if !in_range(mr.addr, mr.len, s.addr, s.len as usize) {
                return Err(WcStatus::LOC_PROT_ERR);
            }
            total += s.len as usize;
        }
        Ok(total)
    }

    /// Resolves an STag of `peer`'s domain for `len` bytes at `addr` with
    /// `need`; returns the address to copy at.
    fn check_remote(
        &self,
        peer: u32,
        rkey: u32,
        addr: u64,
        len: usize,
        need: Access,
    ) -> Result<u64, Fault> {
        let denied = Fault::Status(WcStatus::REM_ACCESS_ERR);
        let peer_pd = self
            .qps
            .get(&peer)
            .ok_or(Fault::Status(WcStatus::RETRY_EXC_ERR))?
            .pd;
        if len == 0 {
            return Ok(addr);
        }
        let index = rkey >> 8;
        if let Some(mr) = self.mrs.get(&index) {
            if mr.key == rkey
                && mr.pd == peer_pd
                && mr.access.contains(need)
                && in_range(mr.addr, mr.len, addr, len)
            {
                return Ok(addr);
            }
            return Err(denied);
        }
        if let Some(mw) = self.mws.get(&index) {
            let Some(b) = mw.bound else {
                return Err(denied);
            };
            if b.rkey == rkey
                && b.qp == peer
                && mw.pd == peer_pd
                && b.access.contains(need)
                && in_range(b.addr, b.len, addr, len)
                && self.mrs.contains_key(&b.mr)
            {
                return Ok(addr);
            }
        }
        Err(denied)
    }

    /// Copies the bytes named by `sges` (checked) into a buffer.
    fn gather(sges: &[Sge], total: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(total);
        for s in sges {
            // SAFETY: `check_local` verified that `s` lies inside a registered
            // region of the queue pair's domain; the registration contract keeps
            // those bytes allocated and free of conflicting Rust references while
            // a work request naming them is outstanding (this one is).
            let src =
                unsafe { std::slice::from_raw_parts(s.addr as usize as *const u8, s.len as usize) };
            out.extend_from_slice(src);
        }
        out
    }

    /// Writes `data` across `sges` (checked, total length at least `data.len()`).
    fn scatter(sges: &[Sge], data: &[u8]) {
        let mut rest = data;
        for s in sges {
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(s.len as usize);
            let (now, later) = rest.split_at(n);
            // SAFETY: `check_local(.., write = true)` verified that `s` lies in a
            // registered region with LOCAL_WRITE of the right domain; `n` is at
            // most `s.len`; the registration contract keeps the bytes allocated
            // and unreferenced while this work request is outstanding. `copy`
            // tolerates overlap with the source.
            unsafe {
                std::ptr::copy(now.as_ptr(), s.addr as usize as *mut u8, n);
            }
            rest = later;
        }
    }

    /// Executes every send-queue entry that can run now, on every queue pair.
    pub fn progress(&mut self, now: Instant) {
        let ids: Vec<u32> = self.qps.keys().copied().collect();
        for id in ids {
            while let Step::Again = self.step(id, now) {}
        }
    }

    fn injection_for(&mut self, kind: OpKind) -> Option<Injection> {
        for (inj, seen) in &mut self.injections {
            match *inj {
                Injection::Hold { op } if op == kind => return Some(*inj),
                Injection::Fail { op, skip, .. }
                    if op == kind && *seen != u64::MAX && *seen >= skip =>
                {
                    let found = *inj;
                    *seen = u64::MAX; // fires once
                    return Some(found);
                }
                _ => {}
            }
        }
        None
    }

    fn count_injections(&mut self, kind: OpKind) {
        for (inj, seen) in &mut self.injections {
            if let Injection::Fail { op, .. } = inj {
                if *op == kind && *seen != u64::MAX {
                    *seen += 1;
                }
            }
        }
    }

    /// Tries the head of `qp`'s send queue.
    fn step(&mut self, qp: u32, now: Instant) -> Step {
        let Some(rec) = self.qps.get(&qp) else {
            return Step::Stop;
        };
        if rec.state != QpState::Rts {
            return Step::Stop;
        }
        let Some(head) = rec.sq.front() else {
            return Step::Stop;
        };
        if head.ready_at > now || head.next_try > now {
            return Step::Stop;
        }
        let kind = head.op.kind();
        let pd = rec.pd;
        let cq = rec.cq;
        let peer = match rec.conn {
            Conn::Connected(p) => Some(p),
            _ => None,
        };
        let head_op = head.op.clone();
        let sges = head.sges.clone();
        match self.injection_for(kind) {
            Some(Injection::Hold { .. }) => return Step::Stop,
            Some(Injection::Fail { status, .. }) => {
                if let Some(h) = self.qps.get_mut(&qp).and_then(|r| r.sq.pop_front()) {
                    self.fail(qp, &h, status, None);
                }
                return Step::Again;
            }
            _ => {}
        }
        let outcome = self.execute(qp, pd, peer, &head_op, &sges, now);
        match outcome {
            Exec::Rnr => {
                let budget = self.config.rnr_retry;
                let timer = self.config.rnr_timer;
                let Some(h) = self.qps.get_mut(&qp).and_then(|r| r.sq.front_mut()) else {
                    return Step::Stop;
                };
                if budget.is_some_and(|b| h.rnr_retries >= b) {
                    if let Some(h) = self.qps.get_mut(&qp).and_then(|r| r.sq.pop_front()) {
                        self.fail(qp, &h, WcStatus::RNR_RETRY_EXC_ERR, None);
                    }
                    return Step::Again;
                }
                h.rnr_retries += 1;
                h.next_try = now + timer;
                Step::Stop
            }
            Exec::Done { byte_len } => {
                self.count_injections(kind);
                *self.executed.entry(kind).or_default() += 1;
                let Some(h) = self.qps.get_mut(&qp).and_then(|r| r.sq.pop_front()) else {
                    return Step::Stop;
                };
                if h.signaled {
                    self.complete(
                        cq,
                        WorkCompletion {
                            wr_id: h.wr_id,
                            status: WcStatus::SUCCESS,
                            opcode: h.op.opcode(),
                            byte_len,
                            invalidated_rkey: None,
                            qp_num: qp,
                        },
                    );
                }
                Step::Again
            }
            Exec::Failed { local, peer_err } => {
                self.count_injections(kind);
                if let Some(h) = self.qps.get_mut(&qp).and_then(|r| r.sq.pop_front()) {
                    self.fail(qp, &h, local, peer_err);
                }
                Step::Again
            }
        }
    }

    /// Completes `h` with `status`, puts `qp` (and, for a responder-side
    /// violation, the peer) into the error state.
    fn fail(&mut self, qp: u32, h: &PendingSend, status: WcStatus, peer_err: Option<u32>) {
        let cq = self.qps.get(&qp).map_or(0, |r| r.cq);
        self.complete(
            cq,
            WorkCompletion {
                wr_id: h.wr_id,
                status,
                opcode: h.op.opcode(),
                qp_num: qp,
                ..WorkCompletion::default()
            },
        );
        self.set_error(qp);
        if let Some(p) = peer_err {
            self.set_error(p);
        }
    }

    fn execute(
        &mut self,
        qp: u32,
        pd: u32,
        peer: Option<u32>,
        op: &Op,
        sges: &[Sge],
        _now: Instant,
    ) -> Exec {
        let local_fail = |s| Exec::Failed {
            local: s,
            peer_err: None,
        };
        match *op {
            Op::LocalInv { rkey } => {
                let ok = self.mws.get_mut(&(rkey >> 8)).is_some_and(|mw| {
                    if mw.pd == pd && mw.bound.is_some_and(|b| b.rkey == rkey && b.qp == qp) {
                        mw.bound = None;
                        true
                    } else {
                        false
                    }
                });
                if ok {
                    Exec::Done { byte_len: 0 }
                } else {
                    local_fail(WcStatus::LOC_PROT_ERR)
                }
            }
            Op::Bind { mw, binding } => {
                let mr_ok = self.mrs.get(&binding.mr).is_some_and(|m| {
                    m.pd == pd
                        && m.access.contains(Access::MW_BIND)
                        && (!binding.access.contains(Access::REMOTE_WRITE)
                            || m.access.contains(Access::LOCAL_WRITE))
                        && in_range(m.addr, m.len, binding.addr, binding.len)
                });
                let Some(rec) = self.mws.get_mut(&mw) else {
                    return local_fail(WcStatus::MW_BIND_ERR);
                };
                if !mr_ok || rec.pd != pd || rec.bound.is_some() {
                    return local_fail(WcStatus::MW_BIND_ERR);
                }
                rec.bound = Some(binding);
                Exec::Done { byte_len: 0 }
            }
            Op::Send { invalidate } => {
                let Ok(total) = self.check_local(pd, sges, false) else {
                    return local_fail(WcStatus::LOC_PROT_ERR);
                };
                let Some(peer) = peer else {
                    return local_fail(WcStatus::RETRY_EXC_ERR);
                };
                let (peer_pd, peer_cq) = match self.qps.get(&peer) {
                    Some(p) if p.state != QpState::Err && p.state != QpState::Init => (p.pd, p.cq),
                    _ => return local_fail(WcStatus::RETRY_EXC_ERR),
                };
                let Some(recv) = self.qps.get_mut(&peer).and_then(|p| p.rq.pop_front()) else {
                    return Exec::Rnr;
                };
                let fail_both = |this: &mut Self, responder: WcStatus, requester: WcStatus| {
                    this.complete(
                        peer_cq,
                        WorkCompletion {
                            wr_id: recv.wr_id,
                            status: responder,
                            opcode: WcOpcode::RECV,
                            qp_num: peer,
                            ..WorkCompletion::default()
                        },
                    );
                    Exec::Failed {
                        local: requester,
                        peer_err: Some(peer),
                    }
                };
                let capacity = match self.check_local(peer_pd, &recv.sges, true) {
                    Ok(c) => c,
                    Err(s) => return fail_both(self, s, WcStatus::REM_OP_ERR),
                };
                if capacity < total {
                    return fail_both(self, WcStatus::LOC_LEN_ERR, WcStatus::REM_INV_REQ_ERR);
                }
                if let Some(rkey) = invalidate {
                    let ok = self.mws.get_mut(&(rkey >> 8)).is_some_and(|mw| {
                        if mw.pd == peer_pd
                            && mw.bound.is_some_and(|b| b.rkey == rkey && b.qp == peer)
                        {
                            mw.bound = None;
                            true
                        } else {
                            false
                        }
                    });
                    if !ok {
                        return fail_both(
                            self,
                            WcStatus::LOC_ACCESS_ERR,
                            WcStatus::REM_INV_REQ_ERR,
                        );
                    }
                }
                let data = Self::gather(sges, total);
                Self::scatter(&recv.sges, &data);
                self.complete(
                    peer_cq,
                    WorkCompletion {
                        wr_id: recv.wr_id,
                        status: WcStatus::SUCCESS,
                        opcode: WcOpcode::RECV,
                        byte_len: total as u32,
                        invalidated_rkey: invalidate,
                        qp_num: peer,
                    },
                );
                Exec::Done {
                    byte_len: total as u32,
                }
            }
            Op::Write { addr, rkey } => {
                let Ok(total) = self.check_local(pd, sges, false) else {
                    return local_fail(WcStatus::LOC_PROT_ERR);
                };
                let Some(peer) = peer else {
                    return local_fail(WcStatus::RETRY_EXC_ERR);
                };
                match self.check_remote(peer, rkey, addr, total, Access::REMOTE_WRITE) {
                    Ok(dst) => {
                        let data = Self::gather(sges, total);
                        // SAFETY: `check_remote` verified that `dst..dst+total` lies in
                        // a region or bound window of the peer's domain granting
                        // REMOTE_WRITE; by the registration contract those bytes are
                        // allocated and may be written by the fabric while the
                        // region is remotely writable.
                        unsafe {
                            std::ptr::copy(data.as_ptr(), dst as usize as *mut u8, total);
                        }
                        Exec::Done {
                            byte_len: total as u32,
                        }
                    }
                    Err(Fault::Status(s)) => Exec::Failed {
                        local: s,
                        peer_err: (s == WcStatus::REM_ACCESS_ERR).then_some(peer),
                    },
                }
            }
            Op::Read { addr, rkey } => {
                let Ok(total) = self.check_local(pd, sges, true) else {
                    return local_fail(WcStatus::LOC_PROT_ERR);
                };
                let Some(peer) = peer else {
                    return local_fail(WcStatus::RETRY_EXC_ERR);
                };
                match self.check_remote(peer, rkey, addr, total, Access::REMOTE_READ) {
                    Ok(src) => {
                        // SAFETY: `check_remote` verified that `src..src+total` lies in
                        // a region or bound window of the peer's domain granting
                        // REMOTE_READ; the registration contract keeps it allocated.
                        let data =
                            unsafe { std::slice::from_raw_parts(src as usize as *const u8, total) }
                                .to_vec();
                        Self::scatter(sges, &data);
                        Exec::Done {
                            byte_len: total as u32,
                        }
                    }
                    Err(Fault::Status(s)) => Exec::Failed {
                        local: s,
                        peer_err: (s == WcStatus::REM_ACCESS_ERR).then_some(peer),
                    },
                }
            }
        }
    }

    /// Queues a send-queue work request (or flushes it in the error state).
    pub fn post_send(
        &mut self,
        qp: u32,
        wr_id: u64,
        op: Op,
        sges: &[Sge],
        signaled: bool,
        now: Instant,
    ) -> Result<(), crate::verbs::VerbsError> {
        let delay = self.delay_for(op.kind());
        let rec = self
            .qps
            .get_mut(&qp)
            .ok_or(crate::verbs::VerbsError::WrongDomain)?;
        match rec.state {
            QpState::Rts => {}
            QpState::Err => {
                let cq = rec.cq;
                let opcode = op.opcode();
                self.complete(
                    cq,
                    WorkCompletion {
                        wr_id,
                        status: WcStatus::WR_FLUSH_ERR,
                        opcode,
                        qp_num: qp,
                        ..WorkCompletion::default()
                    },
                );
                return Ok(());
            }
            s => return Err(crate::verbs::VerbsError::InvalidState(s)),
        }
        if sges.len() > rec.caps.max_sge as usize {
            return Err(crate::verbs::VerbsError::QueueFull);
        }
        if rec.sq.len() >= rec.caps.max_send_wr as usize {
            return Err(crate::verbs::VerbsError::QueueFull);
        }
        rec.sq.push_back(PendingSend {
            wr_id,
            op,
            sges: sges.to_vec(),
            signaled,
            ready_at: now + delay,
            rnr_retries: 0,
            next_try: now,
        });
        Ok(())
    }

    fn delay_for(&self, kind: OpKind) -> Duration {
        self.injections
            .iter()
            .filter_map(|(i, _)| match *i {
                Injection::Delay { op, delay } if op == kind => Some(delay),
                _ => None,
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

enum Step {
    Again,
    Stop,
}

enum Exec {
    Done {
        byte_len: u32,
    },
    Rnr,
    Failed {
        local: WcStatus,
        peer_err: Option<u32>,
    },
}

/// Whether `addr..addr+len` lies inside `base..base+size`.
fn in_range(base: u64, size: usize, addr: u64, len: usize) -> bool {
    let Some(end) = addr.checked_add(len as u64) else {
        return false;
    };
    addr >= base && end <= base.saturating_add(size as u64)
}

#[cfg(test)]
mod tests {
    use super::in_range;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert!(in_range(100, 10, 100, 10));
        assert!(in_range(100, 10, 105, 0));
        assert!(!in_range(100, 10, 99, 2));
        assert!(!in_range(100, 10, 105, 6));
        assert!(!in_range(100, 10, u64::MAX, 2));
    }
}
