//! The SBC-4 direct-access logical unit (SAM-5 §4.6.x logical unit model, SBC-4 §4).
//!
//! A [`LogicalUnit`] is shared by all reactor threads (`Send + Sync`, held in an `Arc`). Its
//! mutable state — unit attentions, reservations, mode parameters, copy statuses — sits behind
//! one mutex that only non-fast-path commands take. READ and WRITE consult atomics instead: the
//! number of nexuses with pending unit attentions, whether any reservation is held, the cache
//! flag, how many nexuses have set SWP or D_SENSE, and the COMPARE AND WRITE gate
//! ([`crate::gate`]).
//!
//! The Caching mode page is shared by every I_T nexus; a change made through one nexus gives
//! the others MODE PARAMETERS CHANGED. The Control mode page is kept per I_T nexus (reported so
//! in the Mode Page Policy VPD page, SPC-5 VPD page 87h): its D_SENSE and SWP fields govern
//! only the commands of the nexus that set them, so one initiator switching to descriptor sense
//! or write-protecting its view never changes what another initiator sees.
//!
//! Commands run in three steps:
//!
//! 1. [`LogicalUnit::prepare`] decodes the CDB and performs every check that needs no data:
//!    unit attentions, reservations, LBA ranges, write protection, transfer lengths. Commands
//!    answered from logical-unit state (INQUIRY, MODE SENSE, READ CAPACITY, REPORT ...)
//!    complete here. Others become a [`Command`] telling the engine how many Data-Out bytes to
//!    collect and how large a Data-In buffer to provide.
//! 2. [`LogicalUnit::execute`] takes the Data-Out bytes and returns an [`IoPlan`] of backend
//!    operations (or completes parameter-list commands such as MODE SELECT directly).
//! 3. [`LogicalUnit::complete`] turns the operations' outcomes into status, sense data, Data-In
//!    and residual.
//!
//! [`LogicalUnit::execute_sync`] runs the three steps against a synchronous [`BlockBackend`].

mod complete;
mod execute;
mod prepare;
mod tmf;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::{BlockBackend, Capabilities};
use crate::cdb::Op;
use crate::config::LuConfig;
use crate::gate::{Gate, Kind, Pass};
use crate::identity::LuIdentity;
use crate::inquiry::InquiryContext;
use crate::mode::{ModeShape, ModeState};
use crate::plan::{CopyTarget, CopyTargets, IoPlan};
use crate::pr::{ItId, PrState};
use crate::sense::{SenseData, Status};
use crate::types::{Completion, DataIn, Nexus, NexusId, Residual};
use crate::ua::{UaQueue, UnitAttention};
use crate::xcopy::CopyRecord;

pub use tmf::ResetKind;

/// Limits derived from the configuration and the backend, in logical blocks.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::struct_field_names)] // every field is a maximum; the prefix says so
struct Limits {
    max_transfer: u32,
    max_write_same: u64,
    max_caw: u8,
    max_atomic: u32,
}

/// The Control mode page fields one I_T nexus has set (SPC-5 §7.5.9; policy: per I_T nexus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NexusControl {
    d_sense: bool,
    swp: bool,
}

#[derive(Debug)]
struct NexusRecord {
    it: ItId,
    ua: UaQueue,
    control: NexusControl,
}

#[derive(Debug)]
struct State {
    nexuses: HashMap<NexusId, NexusRecord>,
    /// Caching page WCE, shared by every nexus.
    wce: bool,
    pr: PrState,
    /// The holder of a RESERVE(6)/RESERVE(10) reservation.
    spc2: Option<NexusId>,
    copies: Vec<CopyRecord>,
}

/// Most copy statuses retained for RECEIVE COPY RESULTS.
const MAX_COPY_RECORDS: usize = 64;

/// One SCSI logical unit backed by a block store.
pub struct LogicalUnit {
    cfg: LuConfig,
    caps: Capabilities,
    limits: Limits,
    num_blocks: AtomicU64,
    wce: AtomicBool,
    /// Nexuses whose Control page differs from the default (D_SENSE or SWP set).
    control_nexuses: AtomicUsize,
    stopped: AtomicBool,
    reserved: AtomicBool,
    ua_nexuses: AtomicUsize,
    gate: Gate,
    state: Mutex<State>,
    copy_targets: Mutex<Option<Arc<dyn CopyTargets>>>,
}

impl core::fmt::Debug for LogicalUnit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LogicalUnit")
            .field("lun", &self.cfg.lun)
            .field("serial", &self.cfg.identity.serial())
            .field("num_blocks", &self.num_blocks())
            .finish_non_exhaustive()
    }
}

/// What [`LogicalUnit::prepare`] decided.
#[derive(Debug)]
pub enum Dispatch {
    /// The command is finished; send this completion.
    Complete(Completion),
    /// Collect [`Command::data_out_len`] bytes of Data-Out, then call
    /// [`LogicalUnit::execute`].
    Execute(Command),
}

/// What [`LogicalUnit::execute`] decided.
#[derive(Debug)]
pub enum Step {
    /// Run these operations in order, then call [`LogicalUnit::complete`].
    Io(IoPlan),
    /// The command waits for an overlapping atomic command (see "Contract with the engine" in
    /// the crate documentation); call `execute` again after the unblock notifier fired.
    Blocked,
    /// The command is finished without backend I/O; call [`LogicalUnit::complete`] with no
    /// outcomes to release it and get the completion.
    Complete,
}

/// A command between [`LogicalUnit::prepare`] and [`LogicalUnit::complete`].
///
/// Every `Command` must end in exactly one call of [`LogicalUnit::complete`] or
/// [`LogicalUnit::abort`], which release its place in the COMPARE AND WRITE gate.
#[derive(Debug)]
pub struct Command {
    op: Op,
    opcode: u8,
    nexus: NexusId,
    expected_in: u32,
    expected_out: u32,
    expected_len: u32,
    data_out_len: u32,
    /// Data-Out bytes the CDB asked for when the transport announced fewer (a write cut to
    /// the expected length, RFC 7143 §11.4.5.2); the residual is reported against it.
    wanted_out: u64,
    data_in_cap: usize,
    desc: bool,
    pass: Pass,
    /// Result decided by `execute` without I/O (state-only commands and parameter errors).
    early: Option<Completion>,
    /// EXTENDED COPY: list identifier, segments and bytes of the plan.
    copy: Option<CopyProgress>,
    /// Number of operations of the plan handed to the engine.
    planned: usize,
}

#[derive(Debug, Clone, Copy)]
struct CopyProgress {
    list_id: u8,
    retain: bool,
    segments: u16,
    bytes: u64,
}

impl Command {
    /// Data-Out bytes the engine must collect before [`LogicalUnit::execute`].
    pub fn data_out_len(&self) -> usize {
        self.data_out_len as usize
    }

    /// Size of the Data-In buffer the plan reads into (zero when there is none).
    pub fn data_in_capacity(&self) -> usize {
        self.data_in_cap
    }

    /// The command's operation code.
    pub fn opcode(&self) -> u8 {
        self.opcode
    }

    /// The nexus the command came from.
    pub fn nexus(&self) -> NexusId {
        self.nexus
    }

    /// The residual of a command that transfers no Data-In.
    fn out_residual(&self) -> Residual {
        if self.wanted_out > u64::from(self.data_out_len) {
            Residual::between(self.wanted_out, self.expected_out)
        } else if self.data_out_len > 0 {
            Residual::between(u64::from(self.data_out_len), self.expected_out)
        } else {
            Residual::between(0, self.expected_len)
        }
    }
}

/// A fully materialised response, as produced by [`LogicalUnit::execute_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The SCSI status.
    pub status: Status,
    /// Sense data, with CHECK CONDITION.
    pub sense: Option<SenseData>,
    /// The Data-In bytes to send.
    pub data_in: Vec<u8>,
    /// The residual relative to the expected transfer length.
    pub residual: Residual,
    /// Nexuses whose tasks must be aborted (PREEMPT AND ABORT).
    pub abort_nexuses: Vec<NexusId>,
}

impl Response {
    /// Materialises a completion whose Data-In may refer to `buffer`.
    pub fn from_completion(c: Completion, buffer: &[u8]) -> Self {
        let data_in = match c.data_in {
            DataIn::None => Vec::new(),
            DataIn::Buffer { len } => buffer.get(..len).unwrap_or(buffer).to_vec(),
            DataIn::Owned(v) => v,
        };
        Self {
            status: c.status,
            sense: c.sense,
            data_in,
            residual: c.residual,
            abort_nexuses: c.abort_nexuses,
        }
    }
}

impl LogicalUnit {
    /// A logical unit with this configuration over a store with these capabilities.
    ///
    /// ```
    /// use rtgt_scsi::{BlockBackend, CommandRequest, DataDirection, LogicalUnit, LuConfig, MemoryBackend, Nexus, NexusId, Status};
    ///
    /// let store = MemoryBackend::new(512, 2048).unwrap();
    /// let lu = LogicalUnit::new(LuConfig::new("iqn.2024-01.org.example:t", 0), store.capabilities());
    /// let nexus = Nexus::new(NexusId(1), "iqn.2024-01.org.example:init", [0x40, 0, 0, 0, 0, 1], 1);
    ///
    /// // WRITE(10) one block at LBA 3, then READ(10) it back.
    /// let write = [0x2A, 0, 0, 0, 0, 3, 0, 0, 1, 0];
    /// let r = lu.execute_sync(&store, &nexus, &CommandRequest::new(&write, 512, DataDirection::Write), &[0xAB; 512]);
    /// assert_eq!(r.status, Status::GOOD);
    /// let read = [0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0];
    /// let r = lu.execute_sync(&store, &nexus, &CommandRequest::new(&read, 512, DataDirection::Read), &[]);
    /// assert_eq!(r.data_in, vec![0xAB; 512]);
    /// ```
    pub fn new(cfg: LuConfig, mut caps: Capabilities) -> Self {
        let bs = u64::from(caps.block_size.max(1));
        // Byte offsets of every block must fit in 64 bits.
        caps.num_blocks = caps.num_blocks.min(u64::MAX / bs);
        let mut max_transfer = u32::try_from(u64::from(cfg.max_transfer_bytes) / bs)
            .unwrap_or(u32::MAX)
            .max(1);
        if caps.max_transfer_blocks != 0 {
            max_transfer = max_transfer.min(caps.max_transfer_blocks);
        }
        let limits = Limits {
            max_transfer,
            max_write_same: (cfg.max_write_same_bytes / bs).max(1),
            max_caw: u8::try_from(u32::from(cfg.max_compare_and_write_blocks).min(max_transfer))
                .unwrap_or(u8::MAX),
            max_atomic: cfg.max_atomic_blocks.min(max_transfer),
        };
        let shape = ModeShape {
            volatile_cache: caps.write_cache_enabled,
            write_protected: cfg.read_only || caps.read_only,
            block_size: caps.block_size,
            num_blocks: caps.num_blocks,
        };
        let mode = shape.defaults();
        Self {
            num_blocks: AtomicU64::new(caps.num_blocks),
            wce: AtomicBool::new(mode.wce),
            control_nexuses: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            reserved: AtomicBool::new(false),
            ua_nexuses: AtomicUsize::new(0),
            gate: Gate::default(),
            state: Mutex::new(State {
                nexuses: HashMap::new(),
                wce: mode.wce,
                pr: PrState::default(),
                spc2: None,
                copies: Vec::new(),
            }),
            copy_targets: Mutex::new(None),
            cfg,
            caps,
            limits,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration.
    pub fn config(&self) -> &LuConfig {
        &self.cfg
    }

    /// The identity (serial number and NAA designator).
    pub fn identity(&self) -> &LuIdentity {
        &self.cfg.identity
    }

    /// The logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.caps.block_size
    }

    /// The current capacity in logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Whether writes may currently be acknowledged before they are durable (Caching mode page
    /// WCE). When false every write of a plan carries FUA.
    pub fn write_cache_enabled(&self) -> bool {
        self.wce.load(Ordering::Acquire)
    }

    /// Whether commands from this I_T nexus find the logical unit write protected: by the
    /// configuration, by the backend, or by the SWP bit that nexus set in its Control mode page.
    pub fn write_protected(&self, nexus: NexusId) -> bool {
        self.cfg.read_only || self.caps.read_only || self.control(nexus).swp
    }

    /// The Control page fields of a nexus. Lock-free while no nexus has set any of them.
    fn control(&self, nexus: NexusId) -> NexusControl {
        if self.control_nexuses.load(Ordering::Acquire) == 0 {
            return NexusControl::default();
        }
        self.state()
            .nexuses
            .get(&nexus)
            .map(|r| r.control)
            .unwrap_or_default()
    }

    /// The mode parameters as one nexus sees them: the shared WCE and its own Control fields.
    fn mode_view(st: &State, nexus: NexusId) -> ModeState {
        let c = st
            .nexuses
            .get(&nexus)
            .map(|r| r.control)
            .unwrap_or_default();
        ModeState {
            wce: st.wce,
            d_sense: c.d_sense,
            swp: c.swp,
        }
    }

    /// Sets a registered nexus's Control fields, keeping the lock-free counters true.
    fn set_control(&self, st: &mut State, nexus: NexusId, new: NexusControl) {
        let Some(r) = st.nexuses.get_mut(&nexus) else {
            return;
        };
        let old = core::mem::replace(&mut r.control, new);
        self.count_control(old, false);
        self.count_control(new, true);
    }

    /// Adds (or removes) one nexus's Control fields to the lock-free count.
    fn count_control(&self, c: NexusControl, add: bool) {
        if c == NexusControl::default() {
            return;
        }
        if add {
            self.control_nexuses.fetch_add(1, Ordering::AcqRel);
        } else {
            self.control_nexuses.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Installs the resolver of EXTENDED COPY target descriptors.
    pub fn set_copy_targets(&self, targets: Arc<dyn CopyTargets>) {
        *self
            .copy_targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(targets);
    }

    fn copy_target(&self, naa: &[u8]) -> Option<CopyTarget> {
        let r = self
            .copy_targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        r.and_then(|r| r.find(naa))
    }

    /// Installs the callback fired when commands that got [`Step::Blocked`] may proceed.
    ///
    /// It may run on any thread that completes a command on this logical unit and must not
    /// call back into the logical unit synchronously.
    pub fn set_unblock_notifier(&self, notifier: Arc<dyn Fn() + Send + Sync>) {
        self.gate.set_notifier(notifier);
    }

    /// Unit attentions pending for a nexus, in delivery order (diagnostics).
    pub fn pending_unit_attentions(&self, nexus: NexusId) -> Vec<UnitAttention> {
        self.state()
            .nexuses
            .get(&nexus)
            .map(|r| r.ua.pending().to_vec())
            .unwrap_or_default()
    }

    fn unmap_supported(&self) -> bool {
        self.caps.thin_provisioned && self.caps.supports_unmap
    }

    fn mode_shape(&self) -> ModeShape {
        ModeShape {
            volatile_cache: self.caps.write_cache_enabled,
            write_protected: self.cfg.read_only || self.caps.read_only,
            block_size: self.caps.block_size,
            num_blocks: self.num_blocks(),
        }
    }

    fn inquiry_context(&self, target_port: u16) -> InquiryContext<'_> {
        InquiryContext {
            cfg: &self.cfg,
            block_size: self.caps.block_size,
            physical_block_exponent: self.caps.physical_block_exponent,
            thin: self.unmap_supported(),
            lbprz: self.caps.unmap_reads_zeroes,
            volatile_cache: self.caps.write_cache_enabled,
            rotation_rate: self.caps.rotation_rate,
            optimal_granularity: self.caps.optimal_granularity_blocks,
            optimal_transfer: self.caps.optimal_transfer_blocks,
            max_transfer: self.limits.max_transfer,
            max_write_same: self.limits.max_write_same,
            max_caw: self.limits.max_caw,
            max_atomic: self.limits.max_atomic,
            target_port,
        }
    }

    /// Registers the nexus if unknown (or if the engine reused its id for another port).
    fn touch(&self, st: &mut State, nexus: &Nexus) {
        let fresh = match st.nexuses.get(&nexus.id) {
            Some(r) => r.it.port != nexus.initiator_port || r.it.target_port != nexus.target_port,
            None => true,
        };
        if fresh {
            let old = st.nexuses.insert(
                nexus.id,
                NexusRecord {
                    it: ItId {
                        port: nexus.initiator_port.clone(),
                        target_port: nexus.target_port,
                    },
                    ua: UaQueue::default(),
                    control: NexusControl::default(),
                },
            );
            if let Some(o) = old {
                self.forget(&o);
            }
        }
    }

    /// Drops a removed nexus record's contributions to the lock-free counters.
    fn forget(&self, r: &NexusRecord) {
        if !r.ua.is_empty() {
            self.ua_nexuses.fetch_sub(1, Ordering::AcqRel);
        }
        self.count_control(r.control, false);
    }

    /// Establishes a unit attention for one nexus.
    fn establish(st: &mut State, id: NexusId, ua: UnitAttention, ua_nexuses: &AtomicUsize) {
        if let Some(r) = st.nexuses.get_mut(&id) {
            if r.ua.establish(ua) {
                ua_nexuses.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Establishes a unit attention for every nexus with this identity.
    fn establish_for(st: &mut State, it: &ItId, ua: UnitAttention, ua_nexuses: &AtomicUsize) {
        let ids: Vec<NexusId> = st
            .nexuses
            .iter()
            .filter(|(_, r)| {
                r.it.target_port == it.target_port && r.it.port.eq_ignore_ascii_case(&it.port)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            Self::establish(st, id, ua, ua_nexuses);
        }
    }

    fn update_reserved(&self, st: &State) {
        self.reserved
            .store(st.spc2.is_some() || st.pr.reserved(), Ordering::Release);
    }

    fn leave_gate(&self, cmd: &mut Command) {
        self.gate.leave(&mut cmd.pass);
    }

    /// Abandons a command (task aborted): releases its place in the gate and any copy status
    /// it registered, and returns the TASK ABORTED completion.
    pub fn abort(&self, mut cmd: Command) -> Completion {
        self.leave_gate(&mut cmd);
        if let Some(p) = cmd.copy.take() {
            let mut st = self.state();
            if let Some(r) = st
                .copies
                .iter_mut()
                .find(|r| r.list_id == p.list_id && r.state == crate::xcopy::CopyState::InProgress)
            {
                r.state = crate::xcopy::CopyState::Done { ok: false };
            }
        }
        Completion::aborted()
    }

    /// Runs a command to completion against a synchronous backend: prepare, execute (waiting
    /// while blocked by an atomic command), perform the plan, complete.
    ///
    /// `data_out` holds the Data-Out the initiator sent; only the first
    /// [`Command::data_out_len`] bytes are used. The result is byte-for-byte what the
    /// stepwise path produces.
    pub fn execute_sync(
        &self,
        backend: &dyn BlockBackend,
        nexus: &Nexus,
        request: &crate::types::CommandRequest<'_>,
        data_out: &[u8],
    ) -> Response {
        let mut cmd = match self.prepare(nexus, request) {
            Dispatch::Complete(c) => return Response::from_completion(c, &[]),
            Dispatch::Execute(cmd) => cmd,
        };
        let out = data_out.get(..cmd.data_out_len()).unwrap_or(data_out);
        loop {
            let generation = self.gate.generation();
            match self.execute(nexus, &mut cmd, out) {
                Step::Blocked => self.gate.wait_for_change(generation),
                Step::Complete => {
                    let c = self.complete(nexus, cmd, &[]);
                    return Response::from_completion(c, &[]);
                }
                Step::Io(plan) => {
                    let mut data_in = vec![0u8; cmd.data_in_capacity()];
                    let outcomes = crate::exec::run_plan(backend, &plan, out, &mut data_in);
                    let c = self.complete(nexus, cmd, &outcomes);
                    return Response::from_completion(c, &data_in);
                }
            }
        }
    }
}

/// Whether the gate treats the op as atomic (exclusive over its range).
fn gate_kind(op: &Op) -> Kind {
    match op {
        Op::CompareAndWrite { .. } | Op::OrWrite { .. } | Op::WriteAtomic { .. } => Kind::Atomic,
        _ => Kind::Plain,
    }
}

#[cfg(test)]
mod tests;
