//! A real engine with an iSER portal on the soft fabric, and a blocking iSER initiator built
//! on rtgt-iser's `IserInitiator` (login with RDMAExtensions, SCSI commands with STags, TMF,
//! NOP) for the iSER integration tests. The engine runs its reactors on their own threads;
//! the initiator pumps its connection from the test thread.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_iser::soft::SoftFabric;
use rtgt_iser::verbs::Verbs;
use rtgt_iser::{CommandIo, InitiatorConfig, InitiatorEvent, IserError, IserInitiator, IserLimits};
use rtgt_pdu::negotiation::{Context, LocalConfig, NegotiatedParams, Negotiator, Role, Stage};
use rtgt_pdu::text::{encode_pairs, parse_pairs};
use rtgt_pdu::{
    Isid, Itt, LoginRequest, LoginStage, LoginStatus, Lun, Pdu, PduHeader, ScsiCommand,
    ScsiResponse, Sn, TaskAttribute,
};
use rtgt_target::config::{Capabilities, Config, Overrides};
use rtgt_target::iser::IserBackend;
use rtgt_target::{Engine, EngineOptions, IoEngine};

pub const TARGET: &str = "iqn.2026-11.io.rtgt:iser";
pub const INITIATOR: &str = "iqn.2026-11.io.rtgt:iser-tester";
pub const BLOCK: usize = 512;
/// How long a test waits for something the engine must produce (a hang guard only).
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// The engine's configuration: one iSER portal at `addr`, a 64 MiB RAM disk.
pub fn config_text(addr: SocketAddr) -> String {
    format!(
        r#"
[[portal]]
listen = ["{addr}"]
transport = "iser"

[[target]]
name = "{TARGET}"

[[target.lun]]
number = 0
backend = "memory:64MiB"

[performance]
buffer_count = 16
"#
    )
}

/// A running engine serving iSER on a soft fabric.
pub struct Rig {
    pub engine: Option<Engine>,
    pub fabric: SoftFabric,
    pub addr: SocketAddr,
}

impl Rig {
    pub fn start(addr: SocketAddr) -> Self {
        Self::start_with(addr, &config_text(addr))
    }

    pub fn start_with(addr: SocketAddr, text: &str) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let caps = Capabilities {
            iser: true,
            ..Capabilities::default()
        };
        let config =
            Config::from_toml_str_with(text, "iser-test.toml", caps, &Overrides::default())
                .expect("test configuration");
        let fabric = SoftFabric::new();
        let options = EngineOptions {
            io_engine: IoEngine::Epoll,
            reactors: Some(1),
            pin: false,
            pool_buffers: Some(16),
            poll_us: None,
        };
        let engine = Engine::start_with_iser(&config, &options, &IserBackend::Soft(fabric.clone()))
            .expect("engine start");
        assert_eq!(engine.iser_addrs(), &[addr]);
        Self {
            engine: Some(engine),
            fabric,
            addr,
        }
    }

    /// A connected initiator (RDMA-CM connection up, not logged in).
    pub fn initiator(&self, config: InitiatorConfig) -> Ini {
        Ini::connect(&self.fabric, self.addr, config)
    }

    /// A logged-in initiator with default settings.
    pub fn logged_in(&self, isid: u8) -> Ini {
        let mut ini = self.initiator(InitiatorConfig {
            queue_depth: 32,
            data_area: 8 << 20,
            ..InitiatorConfig::default()
        });
        ini.isid = Isid([0x80, 0, 0, 0, 0, isid]);
        ini.login().expect("login");
        ini
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            let _ = e.shutdown();
        }
    }
}

/// A blocking iSER initiator on the test thread.
pub struct Ini {
    pub conn: IserInitiator<SoftFabric>,
    pub fabric: SoftFabric,
    pub inbox: VecDeque<Pdu>,
    pub failed: Option<IserError>,
    pub disconnected: bool,
    pub established: bool,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    pub next_itt: u32,
    pub isid: Isid,
    pub limits: IserLimits,
    /// (ITT, STag the target invalidated) of each PDU delivered.
    pub invalidated: Vec<(Itt, Option<u32>)>,
}

impl Ini {
    pub fn connect(fabric: &SoftFabric, addr: SocketAddr, config: InitiatorConfig) -> Self {
        let pd = Arc::new(fabric.alloc_pd().unwrap());
        let conn = IserInitiator::connect(fabric, addr, pd, config).expect("RDMA-CM connect");
        let mut ini = Self {
            conn,
            fabric: fabric.clone(),
            inbox: VecDeque::new(),
            failed: None,
            disconnected: false,
            established: false,
            cmd_sn: Sn(1),
            exp_stat_sn: Sn(0),
            next_itt: 0,
            isid: Isid([0x80, 0, 0, 0, 0, 1]),
            limits: config.limits,
            invalidated: Vec::new(),
        };
        ini.wait("the RDMA-CM connection", |i| {
            i.established || i.failed.is_some()
        });
        assert!(ini.failed.is_none(), "connect failed: {:?}", ini.failed);
        ini
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
                InitiatorEvent::Established => self.established = true,
                InitiatorEvent::Pdu(rx) => {
                    self.invalidated
                        .push((rx.header.itt(), rx.invalidated_stag()));
                    let p = self.conn.take_pdu(rx).expect("take pdu");
                    if let Some(s) = stat_sn(&p.header) {
                        self.exp_stat_sn = s.incremented();
                    }
                    self.inbox.push_back(p);
                }
                InitiatorEvent::HelloReply(_) => {}
                InitiatorEvent::Disconnected => self.disconnected = true,
                InitiatorEvent::Failed(e) => self.failed = Some(e),
            }
        }
        any
    }

    /// Pumps until `done` holds (the engine works on other threads meanwhile).
    pub fn wait(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            self.pump();
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Pumps for `d`, collecting what arrives.
    pub fn idle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn itt(&mut self) -> Itt {
        self.next_itt += 1;
        Itt(self.next_itt)
    }

    /// Logs in to [`TARGET`] with RDMAExtensions (security and operational stages).
    pub fn login(&mut self) -> Result<NegotiatedParams, String> {
        let mut local = LocalConfig {
            name: Some(INITIATOR.into()),
            target_name: Some(TARGET.into()),
            max_burst_length: 1 << 20,
            first_burst_length: 65_536,
            initial_r2t: false,
            ..LocalConfig::default()
        };
        self.limits.apply(&mut local);
        self.login_with(local)
    }

    /// Logs in with `local` negotiation settings.
    pub fn login_with(&mut self, local: LocalConfig) -> Result<NegotiatedParams, String> {
        let mut nego = Negotiator::new(Role::Initiator, local);
        let itt = self.itt();
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
            let ctx = Context::login(Stage::from_login_stage(csg).unwrap(), true);
            let keys = encode_pairs(&nego.offers(ctx));
            let req = LoginRequest {
                next_stage: Some(nsg),
                current_stage: csg,
                isid: self.isid,
                itt,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                ..Default::default()
            };
            self.conn
                .send_pdu(&PduHeader::LoginRequest(req), &keys)
                .map_err(|e| e.to_string())?;
            self.wait("a login response", |i| {
                !i.inbox.is_empty() || i.failed.is_some() || i.disconnected
            });
            let Some(rsp) = self.inbox.pop_front() else {
                return Err(format!("connection ended during login: {:?}", self.failed));
            };
            let PduHeader::LoginResponse(h) = rsp.header else {
                return Err(format!("{:?} during login", rsp.header.opcode()));
            };
            if h.status != LoginStatus::SUCCESS {
                return Err(format!("login status {:?}", h.status));
            }
            let pairs = parse_pairs(&rsp.data).map_err(|e| e.to_string())?;
            nego.process(ctx, &pairs).map_err(|e| e.to_string())?;
        }
        let p = nego.finish().map_err(|e| e.to_string())?;
        self.conn
            .enter_full_feature(&p)
            .map_err(|e| e.to_string())?;
        Ok(p)
    }

    /// A SCSI command (not yet sent).
    pub fn command(&mut self, cdb: &[u8], read: u32, write: u32) -> ScsiCommand {
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            final_pdu: true,
            read: read > 0,
            write: write > 0,
            attr: TaskAttribute::SIMPLE,
            lun: Lun::ZERO,
            itt: self.itt(),
            expected_data_transfer_length: read.max(write),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.incremented();
        cmd
    }

    /// Sends `cmd` with `io`, retrying while the transport is out of resources.
    pub fn send(&mut self, cmd: &ScsiCommand, io: &CommandIo) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            match self.conn.send_command(cmd, &[], io) {
                Ok(()) => return,
                Err(IserError::NoSendResources | IserError::UnexpectedCredit(_)) => {
                    assert!(Instant::now() < deadline, "no send resources for ever");
                    self.pump();
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => panic!("send_command: {e}"),
            }
        }
    }

    /// Waits for the SCSI Response of `itt` and takes it out of the inbox.
    pub fn response(&mut self, itt: Itt) -> (ScsiResponse, Vec<u8>) {
        self.wait("a SCSI response", |i| {
            i.failed.is_some()
                || i.inbox
                    .iter()
                    .any(|p| matches!(&p.header, PduHeader::ScsiResponse(r) if r.itt == itt))
        });
        assert!(
            self.failed.is_none(),
            "connection failed: {:?}",
            self.failed
        );
        let pos = self
            .inbox
            .iter()
            .position(|p| matches!(&p.header, PduHeader::ScsiResponse(r) if r.itt == itt))
            .expect("response");
        let p = self.inbox.remove(pos).expect("response");
        let PduHeader::ScsiResponse(r) = p.header else {
            unreachable!("matched above")
        };
        (r, p.data)
    }

    /// READ(16) of `blocks` at `lba` into data area `at`; returns the response and the data.
    pub fn read16(&mut self, lba: u64, blocks: u32, at: usize) -> (ScsiResponse, Vec<u8>) {
        let len = blocks as usize * BLOCK;
        let cmd = self.command(&read16(lba, blocks), len as u32, 0);
        self.send(
            &cmd,
            &CommandIo {
                read: Some(at..at + len),
                write: None,
                immediate: 0,
            },
        );
        let (r, _) = self.response(cmd.itt);
        let data = self.conn.data(at..at + len).expect("data area").to_vec();
        (r, data)
    }

    /// WRITE(16) of `data` at `lba` from data area `at`, `immediate` bytes as immediate data.
    pub fn write16(&mut self, lba: u64, data: &[u8], at: usize, immediate: usize) -> ScsiResponse {
        let blocks = (data.len() / BLOCK) as u32;
        self.conn
            .data_mut(at..at + data.len())
            .expect("data area")
            .copy_from_slice(data);
        let cmd = self.command(&write16(lba, blocks), 0, data.len() as u32);
        self.send(
            &cmd,
            &CommandIo {
                read: None,
                write: Some(at..at + data.len()),
                immediate: immediate as u32,
            },
        );
        self.response(cmd.itt).0
    }
}

fn stat_sn(h: &PduHeader) -> Option<Sn> {
    Some(match h {
        PduHeader::ScsiResponse(x) => x.stat_sn,
        PduHeader::NopIn(x) if x.itt != Itt::RESERVED => x.stat_sn,
        PduHeader::TaskMgmtResponse(x) => x.stat_sn,
        PduHeader::LoginResponse(x) => x.stat_sn,
        PduHeader::TextResponse(x) => x.stat_sn,
        PduHeader::LogoutResponse(x) => x.stat_sn,
        _ => return None,
    })
}

pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// Deterministic test bytes.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect()
}

/// Whether a response is GOOD / COMMAND COMPLETED.
pub fn good(r: &ScsiResponse) -> bool {
    r.status == rtgt_pdu::ScsiStatus::GOOD
        && r.response == rtgt_pdu::ResponseCode::COMMAND_COMPLETED
}
