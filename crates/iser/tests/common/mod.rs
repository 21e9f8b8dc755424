//! A scripted iSCSI target and initiator built from rtgt-pdu types, driving
//! the iSER transport in one thread: over the soft fabric in every test
//! run, and over real RDMA hardware (the `rdma` feature's backend) in the
//! ignored hardware test. The scenarios both run are in [`scenarios`].

#![allow(dead_code, clippy::missing_panics_doc)]

pub mod scenarios;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_iser::memory::RegisteredBuffer;
use rtgt_iser::soft::{OpKind, SoftFabric};
use rtgt_iser::verbs::{Access, Listener, MemoryRegion, Verbs};
use rtgt_iser::{
    CommandIo, InitiatorConfig, InitiatorEvent, IserError, IserInitiator, IserLimits, IserTarget,
    Outbound, Phase, TargetConfig, TargetEvent,
};
use rtgt_pdu::negotiation::{Context, LocalConfig, NegotiatedParams, Negotiator, Role, Stage};
use rtgt_pdu::text::{encode_pairs, parse_pairs};
use rtgt_pdu::{
    DataIn, DataInStatus, Isid, Itt, LoginRequest, LoginResponse, LoginStage, LoginStatus, Lun,
    NopIn, Pdu, PduHeader, R2t, ResponseCode, ScsiCommand, ScsiResponse, ScsiStatus, Sn,
    TaskMgmtRequest, TaskMgmtResponse, TmfFunction, TmfResponse, Ttt,
};

pub const BLOCK: usize = 512;
pub const DISK: usize = 4 << 20;
pub const TARGET_NAME: &str = "iqn.2024-01.org.rtgt:disk";

pub fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 3260))
}

/// What a test may ask of the fabric beyond the verbs (the soft fabric
/// answers; real hardware cannot say).
pub trait Probe {
    /// Whether a round in which nothing moved means nothing more will (an
    /// in-process fabric), or completions may still be on their way (hardware).
    const SYNCHRONOUS: bool;
    /// Operations of `kind` executed so far, if the fabric can count them.
    fn executed(&self, kind: OpKind) -> Option<u64>;
    /// Whether `rkey` grants remote access now, if the fabric can tell.
    fn stag_is_valid(&self, rkey: u32) -> Option<bool>;
    /// Runs what can run (the soft fabric executes work requests when polled).
    fn progress(&self) {}
}

impl Probe for SoftFabric {
    const SYNCHRONOUS: bool = true;
    fn executed(&self, kind: OpKind) -> Option<u64> {
        Some(SoftFabric::executed(self, kind))
    }
    fn stag_is_valid(&self, rkey: u32) -> Option<bool> {
        Some(SoftFabric::stag_is_valid(self, rkey))
    }
    fn progress(&self) {
        SoftFabric::progress(self);
    }
}

#[cfg(feature = "rdma")]
impl Probe for rtgt_iser::rdma::RdmaDevice {
    const SYNCHRONOUS: bool = false;
    fn executed(&self, _: OpKind) -> Option<u64> {
        None
    }
    fn stag_is_valid(&self, _: u32) -> Option<bool> {
        None
    }
}

/// How long an asynchronous fabric may take to produce what a test waits
/// for before the test gives up (a hang guard, not a performance bound).
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// The scripted target: one connection, a RAM disk in registered memory.
pub struct Tgt<V: Verbs = SoftFabric> {
    pub conn: IserTarget<V>,
    pub disk: Disk<V::Mr>,
    nego: Negotiator,
    pub params: Option<NegotiatedParams>,
    stat_sn: Sn,
    exp_cmd_sn: Sn,
    pending_tmf: HashMap<Itt, TaskMgmtRequest>,
    pub failed: Option<IserError>,
    pub disconnected: bool,
    pub log: Vec<String>,
}

pub fn target_local(limits: &IserLimits) -> LocalConfig {
    let mut cfg = LocalConfig {
        max_burst_length: 1 << 20,
        first_burst_length: 65536,
        target_portal_group_tag: Some(1),
        ..LocalConfig::default()
    };
    limits.apply(&mut cfg);
    cfg
}

pub fn initiator_local(limits: &IserLimits, rdma: bool) -> LocalConfig {
    let mut cfg = LocalConfig {
        name: Some("iqn.2024-01.org.rtgt:host".into()),
        target_name: Some(TARGET_NAME.into()),
        max_burst_length: 1 << 20,
        ..LocalConfig::default()
    };
    if rdma {
        limits.apply(&mut cfg);
    }
    cfg
}

impl<V: Verbs> Tgt<V> {
    pub fn new(conn: IserTarget<V>, disk: Disk<V::Mr>, limits: &IserLimits) -> Self {
        Self {
            conn,
            disk,
            nego: Negotiator::new(Role::Target, target_local(limits)),
            params: None,
            stat_sn: Sn(1),
            exp_cmd_sn: Sn(1),
            pending_tmf: HashMap::new(),
            failed: None,
            disconnected: false,
            log: Vec::new(),
        }
    }

    fn max_cmd_sn(&self) -> Sn {
        self.exp_cmd_sn.add(self.conn.command_window() - 1)
    }

    fn next_stat_sn(&mut self) -> Sn {
        let s = self.stat_sn;
        self.stat_sn = s.incremented();
        s
    }

    /// Handles every event available now; returns whether anything happened.
    pub fn pump(&mut self) -> bool {
        let mut any = false;
        loop {
            let ev = match self.conn.poll() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            };
            any = true;
            match ev {
                TargetEvent::Established => self.log.push("established".into()),
                TargetEvent::Pdu(rx) => {
                    let pdu = self.conn.take_pdu(rx).expect("take pdu");
                    if let Err(e) = self.on_pdu(pdu) {
                        if e.is_connection_fatal() {
                            self.failed = Some(e);
                        } else {
                            panic!("target script error: {e}");
                        }
                    }
                }
                TargetEvent::SolicitedData(d) => {
                    self.log
                        .push(format!("data {:?} {}+{}", d.itt, d.buffer_offset, d.len));
                    self.respond(d.itt, ScsiStatus::GOOD).expect("response");
                }
                TargetEvent::DataSent { .. } => {}
                TargetEvent::TaskQuiesced(itt) => {
                    self.log.push(format!("quiesced {itt:?}"));
                    if let Some(req) = self.pending_tmf.remove(&itt) {
                        self.tmf_response(&req).expect("tmf response");
                    }
                }
                TargetEvent::Disconnected => self.disconnected = true,
                TargetEvent::Failed(e) => self.failed = Some(e),
            }
        }
        any
    }

    fn respond(&mut self, itt: Itt, status: ScsiStatus) -> Result<(), IserError> {
        let rsp = ScsiResponse {
            response: ResponseCode::COMMAND_COMPLETED,
            status,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.conn.send(Outbound::Pdu {
            header: &PduHeader::ScsiResponse(rsp),
            ahs: &[],
            data: &[],
        })
    }

    fn tmf_response(&mut self, req: &TaskMgmtRequest) -> Result<(), IserError> {
        let rsp = TaskMgmtResponse {
            response: TmfResponse::FUNCTION_COMPLETE,
            itt: req.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.conn.send_owned(&Pdu::new(rsp))
    }

    fn on_pdu(&mut self, pdu: Pdu) -> Result<(), IserError> {
        match pdu.header {
            PduHeader::LoginRequest(req) => self.on_login(req, &pdu.data),
            PduHeader::ScsiCommand(cmd) => {
                if !cmd.immediate {
                    self.exp_cmd_sn = cmd.cmd_sn.incremented();
                }
                self.on_command(cmd, &pdu.data)
            }
            PduHeader::TaskMgmtRequest(req) => {
                self.log.push(format!("tmf {:?}", req.referenced_task_tag));
                if req.function == TmfFunction::ABORT_TASK
                    && !self.conn.abort_task(req.referenced_task_tag)
                {
                    self.pending_tmf.insert(req.referenced_task_tag, req);
                    return Ok(());
                }
                self.tmf_response(&req)
            }
            PduHeader::NopOut(nop) => {
                if nop.itt == Itt::RESERVED {
                    return Ok(());
                }
                let rsp = NopIn {
                    itt: nop.itt,
                    ttt: Ttt::RESERVED,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    ..Default::default()
                };
                self.conn.send_owned(&Pdu::with_data(rsp, pdu.data))
            }
            other => panic!("scripted target got {other:?}"),
        }
    }

    fn on_login(&mut self, req: LoginRequest, data: &[u8]) -> Result<(), IserError> {
        let stage = Stage::from_login_stage(req.current_stage).expect("stage");
        let ctx = Context::login(stage, true);
        let pairs = parse_pairs(data).expect("keys");
        let mut answers = self.nego.process(ctx, &pairs).expect("negotiation").answers;
        answers.extend(self.nego.offers(ctx));
        let to_ffp = req.next_stage == Some(LoginStage::FULL_FEATURE_PHASE);
        if to_ffp {
            let p = self.nego.finish().expect("finish");
            self.params = Some(p.clone());
            self.conn.enter_full_feature(&p)?;
        }
        let rsp = LoginResponse {
            next_stage: req.next_stage,
            current_stage: req.current_stage,
            isid: req.isid,
            tsih: u16::from(to_ffp),
            itt: req.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.add(self.conn.command_window() - 1),
            status: LoginStatus::SUCCESS,
            ..Default::default()
        };
        self.conn
            .send_owned(&Pdu::with_data(rsp, encode_pairs(&answers)))
    }

    fn on_command(&mut self, cmd: ScsiCommand, immediate: &[u8]) -> Result<(), IserError> {
        let op = cmd.cdb[0];
        let lba = u32::from_be_bytes([cmd.cdb[2], cmd.cdb[3], cmd.cdb[4], cmd.cdb[5]]) as usize;
        let blocks = u16::from_be_bytes([cmd.cdb[7], cmd.cdb[8]]) as usize;
        let off = lba * BLOCK;
        let len = blocks * BLOCK;
        assert!(off + len <= DISK, "scripted disk is {DISK} bytes");
        self.log
            .push(format!("cmd {:02x} {:?} {off}+{len}", op, cmd.itt));
        match op {
            0x28 => {
                let sge = self.disk.lock().unwrap().sge(off, len).expect("disk range");
                let din = DataIn {
                    final_pdu: true,
                    itt: cmd.itt,
                    ttt: Ttt::RESERVED,
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    data_sn: Sn(0),
                    buffer_offset: 0,
                    status: Some(DataInStatus {
                        status: ScsiStatus::GOOD,
                        stat_sn: self.next_stat_sn(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.conn.send(Outbound::DataIn {
                    header: &din,
                    source: &[sge],
                })
            }
            0x2a => {
                {
                    let mut disk = self.disk.lock().unwrap();
                    // SAFETY: the disk region is local-only and no work request
                    // names this range now (the test target runs one step at a time).
                    let dst = unsafe { disk.bytes_mut(off, immediate.len()) }.expect("range");
                    dst.copy_from_slice(immediate);
                }
                let rest = len - immediate.len();
                if rest == 0 {
                    return self.respond(cmd.itt, ScsiStatus::GOOD);
                }
                let sink = self
                    .disk
                    .lock()
                    .unwrap()
                    .sge(off + immediate.len(), rest)
                    .expect("disk range");
                let r2t = R2t {
                    lun: cmd.lun,
                    itt: cmd.itt,
                    ttt: Ttt(cmd.itt.0 ^ 0x8000_0000),
                    stat_sn: self.stat_sn,
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    r2t_sn: Sn(0),
                    buffer_offset: immediate.len() as u32,
                    desired_data_transfer_length: rest as u32,
                };
                self.conn.send(Outbound::R2t {
                    header: &r2t,
                    sink: &[sink],
                })
            }
            0x00 => self.respond(cmd.itt, ScsiStatus::GOOD),
            other => panic!("scripted target: opcode {other:#x}"),
        }
    }
}

/// The scripted initiator.
pub struct Ini<V: Verbs = SoftFabric> {
    pub conn: IserInitiator<V>,
    pub nego: Negotiator,
    pub inbox: VecDeque<Pdu>,
    pub failed: Option<IserError>,
    pub disconnected: bool,
    pub established: bool,
    pub hello: Option<rtgt_iser::header::HelloReply>,
    pub cmd_sn: Sn,
    pub next_itt: u32,
    pub invalidated: Vec<(Itt, Option<u32>)>,
}

impl<V: Verbs> Ini<V> {
    pub fn pump(&mut self) -> bool {
        let mut any = false;
        loop {
            let ev = match self.conn.poll() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            };
            any = true;
            match ev {
                InitiatorEvent::Established => self.established = true,
                InitiatorEvent::Pdu(rx) => {
                    self.invalidated
                        .push((rx.header.itt(), rx.invalidated_stag()));
                    let p = self.conn.take_pdu(rx).expect("take");
                    self.inbox.push_back(p);
                }
                InitiatorEvent::HelloReply(r) => self.hello = Some(r),
                InitiatorEvent::Disconnected => self.disconnected = true,
                InitiatorEvent::Failed(e) => self.failed = Some(e),
            }
        }
        any
    }

    pub fn itt(&mut self) -> Itt {
        self.next_itt += 1;
        Itt(self.next_itt)
    }

    pub fn command(&mut self, op: u8, lba: u32, bytes: usize) -> ScsiCommand {
        let blocks = (bytes / BLOCK) as u16;
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        let cmd = ScsiCommand {
            final_pdu: true,
            read: op == 0x28,
            write: op == 0x2a,
            attr: rtgt_pdu::TaskAttribute::SIMPLE,
            lun: Lun::ZERO,
            itt: self.itt(),
            expected_data_transfer_length: bytes as u32,
            cmd_sn: self.cmd_sn,
            cdb,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.incremented();
        cmd
    }
}

/// A target, its listener, an initiator: one connection over one fabric.
pub struct Pair<V: Verbs = SoftFabric> {
    pub fabric: V,
    pub listener: V::Listener,
    pub tgt: Tgt<V>,
    pub ini: Ini<V>,
}

pub struct Setup {
    pub target: TargetConfig,
    pub initiator: InitiatorConfig,
    pub initiator_rdma: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            target: TargetConfig {
                queue_depth: 32,
                limits: IserLimits {
                    target_recv_data_segment_length: 8192,
                    initiator_recv_data_segment_length: 8192,
                    max_outstanding_unexpected_pdus: 4,
                },
                ..TargetConfig::default()
            },
            initiator: InitiatorConfig {
                queue_depth: 32,
                data_area: 4 << 20,
                ..InitiatorConfig::default()
            },
            initiator_rdma: true,
        }
    }
}

/// The scripted target's RAM disk: registered memory shared with the test.
pub type Disk<M> = Arc<std::sync::Mutex<RegisteredBuffer<M>>>;

pub fn new_disk<V: Verbs>(fabric: &V) -> (Arc<V::Pd>, Disk<V::Mr>) {
    let pd = Arc::new(fabric.alloc_pd().unwrap());
    let mut disk = RegisteredBuffer::new(&*pd, DISK, Access::LOCAL_WRITE).unwrap();
    // SAFETY: freshly registered, local-only, no work request posted yet.
    let bytes = unsafe { disk.bytes_mut(0, DISK) }.unwrap();
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i / BLOCK) as u8 ^ (i as u8).wrapping_mul(7);
    }
    (pd, Arc::new(std::sync::Mutex::new(disk)))
}

pub fn connect<V: Verbs>(
    fabric: &V,
    listener: &mut V::Listener,
    at: SocketAddr,
    target_pd: Arc<V::Pd>,
    disk: Disk<V::Mr>,
    setup: &Setup,
) -> (Tgt<V>, Ini<V>) {
    let ini = IserInitiator::connect(
        fabric,
        at,
        Arc::new(fabric.alloc_pd().unwrap()),
        setup.initiator,
    )
    .unwrap();
    // The request is there at once on the soft fabric, a moment later on hardware.
    let deadline = Instant::now() + HANG_GUARD;
    let req = loop {
        if let Some(req) = listener.poll_request().unwrap() {
            break req;
        }
        assert!(Instant::now() < deadline, "no connection request at {at}");
        std::thread::sleep(Duration::from_millis(1));
    };
    let tconn = IserTarget::accept(fabric, req, target_pd, setup.target).unwrap();
    let tgt = Tgt::new(tconn, disk, &setup.target.limits);
    let ini = Ini {
        conn: ini,
        nego: Negotiator::new(
            Role::Initiator,
            initiator_local(&setup.initiator.limits, setup.initiator_rdma),
        ),
        inbox: VecDeque::new(),
        failed: None,
        disconnected: false,
        established: false,
        hello: None,
        cmd_sn: Sn(1),
        next_itt: 0,
        invalidated: Vec::new(),
    };
    (tgt, ini)
}

impl Pair<SoftFabric> {
    /// A connected pair on a new soft fabric.
    pub fn new(setup: &Setup) -> Self {
        Self::on(SoftFabric::new(), addr(1), setup)
    }
}

impl<V: Verbs + Probe> Pair<V> {
    /// A target listening at `at` on `fabric` and an initiator connected to
    /// it, both with their RDMA-CM connection established.
    pub fn on(fabric: V, at: SocketAddr, setup: &Setup) -> Self {
        let mut listener = fabric.listen(at).unwrap();
        let (pd, disk) = new_disk(&fabric);
        let (tgt, ini) = connect(&fabric, &mut listener, at, pd, disk, setup);
        let mut pair = Self {
            fabric,
            listener,
            tgt,
            ini,
        };
        pair.settle_until("the connection to be established", |p| {
            p.ini.established && p.tgt.log.iter().any(|l| l == "established")
        });
        pair.settle();
        pair
    }

    /// Pumps both sides until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let a = self.tgt.pump();
            let b = self.ini.pump();
            if !a && !b {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// Pumps both sides until `done` holds. On an in-process fabric a round
    /// in which nothing moves means it never will; on hardware the pumping
    /// goes on until [`HANG_GUARD`] has passed.
    pub fn settle_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if done(self) {
                return;
            }
            let a = self.tgt.pump();
            let b = self.ini.pump();
            if !a && !b && !done(self) {
                assert!(!V::SYNCHRONOUS, "nothing moves while waiting for {what}");
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::yield_now();
            }
        }
    }

    /// Runs the two-stage login; returns the initiator's parameters.
    pub fn login(&mut self) -> Result<NegotiatedParams, IserError> {
        for (csg, nsg) in [
            (
                LoginStage::SECURITY_NEGOTIATION,
                LoginStage::OPERATIONAL_NEGOTIATION,
            ),
            (
                LoginStage::OPERATIONAL_NEGOTIATION,
                LoginStage::FULL_FEATURE_PHASE,
            ),
        ] {
            let stage = Stage::from_login_stage(csg).unwrap();
            let ctx = Context::login(stage, true);
            let keys = encode_pairs(&self.ini.nego.offers(ctx));
            let req = LoginRequest {
                next_stage: Some(nsg),
                current_stage: csg,
                isid: Isid([0x80, 0, 0, 0, 0, 1]),
                itt: Itt(0),
                cmd_sn: Sn(1),
                exp_stat_sn: Sn(1),
                ..Default::default()
            };
            self.ini
                .conn
                .send_pdu(&PduHeader::LoginRequest(req), &keys)?;
            self.settle_until("a login response or a failure", |p| {
                !p.ini.inbox.is_empty() || p.tgt.failed.is_some() || p.ini.failed.is_some()
            });
            self.settle();
            if let Some(e) = self.tgt.failed.clone().or(self.ini.failed.clone()) {
                return Err(e);
            }
            let rsp = self.ini.inbox.pop_front().expect("login response");
            let pairs = parse_pairs(&rsp.data).unwrap();
            self.ini
                .nego
                .process(ctx, &pairs)
                .expect("initiator negotiation");
        }
        let p = self.ini.nego.finish().expect("finish");
        self.ini.conn.enter_full_feature(&p)?;
        self.settle();
        assert_eq!(self.ini.conn.phase(), Phase::FullFeature);
        Ok(p)
    }

    /// Writes `len` bytes from data-area `at` to `lba`, `immediate` of them as
    /// immediate data; returns the response.
    pub fn write(&mut self, lba: u32, at: usize, len: usize, immediate: usize) -> Pdu {
        let cmd = self.ini.command(0x2a, lba, len);
        self.ini
            .conn
            .send_command(
                &cmd,
                &[],
                &CommandIo {
                    read: None,
                    write: Some(at..at + len),
                    immediate: immediate as u32,
                },
            )
            .expect("send write");
        self.settle_until("the write response", |p| !p.ini.inbox.is_empty());
        self.settle();
        self.ini.inbox.pop_front().expect("write response")
    }

    /// Reads `len` bytes from `lba` into data-area `at`; returns the response.
    pub fn read(&mut self, lba: u32, at: usize, len: usize) -> Pdu {
        let cmd = self.ini.command(0x28, lba, len);
        self.ini
            .conn
            .send_command(
                &cmd,
                &[],
                &CommandIo {
                    read: Some(at..at + len),
                    write: None,
                    immediate: 0,
                },
            )
            .expect("send read");
        self.settle_until("the read response", |p| !p.ini.inbox.is_empty());
        self.settle();
        self.ini.inbox.pop_front().expect("read response")
    }

    pub fn disk_bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let disk = self.tgt.disk.lock().unwrap();
        // SAFETY: the scripted target has no work request outstanding between steps.
        unsafe { disk.bytes(off, len) }.unwrap().to_vec()
    }
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

pub fn good(p: &Pdu) -> bool {
    matches!(&p.header, PduHeader::ScsiResponse(r) if r.status == ScsiStatus::GOOD && r.response == ResponseCode::COMMAND_COMPLETED)
}

pub fn region_key<M: MemoryRegion>(mr: &M) -> u32 {
    mr.rkey()
}
