//! An in-memory initiator↔target pair for deterministic tests of the target role (feature
//! `test-utils`): the target's login and session state machines driven by PDUs that tests build
//! from `rtgt-pdu` types, with a tiny RAM-disk "SCSI layer" standing in for the engine
//! (READ(10), WRITE(10), TEST UNIT READY; anything else CHECK CONDITION / INVALID COMMAND
//! OPERATION CODE). No sockets, no threads, no clock: time is a field tests advance.
//!
//! ```
//! use rtgt_session::harness::Pair;
//!
//! let mut pair = Pair::new(Pair::default_catalog());
//! pair.login_normal(&[]).unwrap();
//! let data = pair.write10(0, &[7u8; 512]).unwrap();
//! assert_eq!(data, rtgt_pdu::ScsiStatus::GOOD);
//! let (status, read) = pair.read10(0, 1).unwrap();
//! assert_eq!(status, rtgt_pdu::ScsiStatus::GOOD);
//! assert_eq!(read, vec![7u8; 512]);
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_pdu::text::{KeyValue, encode_pairs};
use rtgt_pdu::{
    BhsLengths, DataOut, Isid, Itt, LoginRequest, LoginStage, LoginStatus, Lun, Pdu, PduHeader,
    Residual, ScsiCommand, ScsiStatus, Sn, TaskAttribute, Ttt,
};

use crate::chap::CountingRng;
use crate::table::{SessionKey, SessionTable};
use crate::target::login::{LoginConnection, LoginSettings, LoginStep, SessionResolution};
use crate::target::{
    Catalog, Completion, ConnId, Payload, Placement, SessionEvent, SessionSetup, TargetEntry,
    TargetSession, TaskId,
};

/// Block size of the harness RAM disk.
pub const BLOCK: usize = 512;

/// Why a harness step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessError {
    /// Login ended with this status.
    Login(LoginStatus),
    /// The target closed or dropped the connection.
    Closed,
    /// No answer arrived.
    NoAnswer,
}

/// The target side plus a scripted initiator's bookkeeping.
pub struct Pair {
    /// The target's catalog.
    pub catalog: Arc<Catalog>,
    /// Login state machine of the (single) connection while logging in.
    pub login: Option<LoginConnection>,
    /// The session once logged in.
    pub session: Option<TargetSession>,
    /// The connection's id in the session.
    pub conn: ConnId,
    /// Current time.
    pub now: Instant,
    /// The RAM disk.
    pub disk: Vec<u8>,
    /// When set, commands are held by the "engine" (not completed) until released.
    pub hold: bool,
    /// Tasks held.
    pub held: Vec<TaskId>,
    /// Events seen (for assertions).
    pub events: Vec<SessionEvent>,
    /// PDUs the target sent, not yet consumed by the test.
    pub inbox: Vec<Pdu>,
    /// Whether the target asked to close the connection.
    pub closed: bool,
    /// Next CmdSN the initiator uses.
    pub cmd_sn: Sn,
    /// Next ITT.
    pub itt: u32,
    /// ISID of the scripted initiator.
    pub isid: Isid,
    /// Session table.
    pub table: SessionTable<()>,
    buffers: Vec<Vec<u8>>,
    /// Data to send per task ITT for R2T answers.
    out_data: Vec<(Itt, Vec<u8>)>,
    /// Whether the scripted initiator answers R2Ts automatically.
    pub auto_r2t: bool,
}

impl core::fmt::Debug for Pair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pair")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// A catalog with target `iqn.2026-11.io.rtgt:test`, LUN 0, no auth.
    pub fn default_catalog() -> Catalog {
        Catalog {
            targets: vec![TargetEntry {
                name: "iqn.2026-11.io.rtgt:test".into(),
                luns: vec![0],
                ..Default::default()
            }],
            portal_groups: vec![crate::target::PortalGroup {
                tag: 1,
                addresses: vec![
                    "127.0.0.1:3260"
                        .parse()
                        .unwrap_or_else(|_| ([127, 0, 0, 1], 3260).into()),
                ],
            }],
            ..Default::default()
        }
    }

    /// A pair with a 1 MiB disk.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog: Arc::new(catalog),
            login: None,
            session: None,
            conn: ConnId(0),
            now: Instant::now(),
            disk: vec![0; 1 << 20],
            hold: false,
            held: Vec::new(),
            events: Vec::new(),
            inbox: Vec::new(),
            closed: false,
            cmd_sn: Sn(1),
            itt: 1,
            isid: Isid([0x80, 0, 0, 0, 0, 1]),
            table: SessionTable::new(),
            buffers: Vec::new(),
            out_data: Vec::new(),
            auto_r2t: true,
        }
    }

    fn settings() -> LoginSettings {
        LoginSettings {
            portal_group_tag: 1,
            local_addr: None,
        }
    }

    /// Starts a fresh connection's login.
    pub fn start_login(&mut self) {
        self.login = Some(LoginConnection::with_rng(
            self.catalog.clone(),
            Self::settings(),
            Box::new(CountingRng(0x40)),
        ));
        self.closed = false;
    }

    /// Sends one Login Request with `keys`; returns the response PDUs.
    pub fn login_pdu(&mut self, req: LoginRequest, keys: &[(&str, &str)]) -> Vec<Pdu> {
        let text = encode_pairs(
            &keys
                .iter()
                .map(|(k, v)| KeyValue::new(*k, *v))
                .collect::<Vec<_>>(),
        );
        self.login_pdu_raw(req, &text)
    }

    /// Sends one Login Request with raw text; returns the response PDUs.
    pub fn login_pdu_raw(&mut self, req: LoginRequest, text: &[u8]) -> Vec<Pdu> {
        let Some(login) = self.login.as_mut() else {
            return Vec::new();
        };
        let step = login.handle_login(&req, text);
        let mut out = Vec::new();
        if let LoginStep::NeedsSession(r) = step {
            let key = SessionKey::new(&r.initiator_name, r.isid, &r.target_name);
            let resolution = if r.tsih == 0 {
                if let Some(old) = self.table.find(&key) {
                    self.table.remove(old);
                    if let Some(s) = self.session.as_mut() {
                        s.terminate();
                    }
                    self.session = None;
                }
                match self.table.insert(key, ()) {
                    Ok(tsih) => SessionResolution::New { tsih },
                    Err(_) => SessionResolution::Refuse(LoginStatus::OUT_OF_RESOURCES),
                }
            } else {
                match self.session.as_mut() {
                    Some(s) if s.tsih() == r.tsih && s.can_add_connection() => {
                        let (exp_cmd_sn, max_cmd_sn) = s.cmd_window();
                        SessionResolution::Join {
                            exp_cmd_sn,
                            max_cmd_sn,
                        }
                    }
                    Some(s) if s.tsih() == r.tsih => {
                        SessionResolution::Refuse(LoginStatus::TOO_MANY_CONNECTIONS)
                    }
                    _ => SessionResolution::Refuse(LoginStatus::SESSION_DOES_NOT_EXIST),
                }
            };
            login.resolve(resolution);
        }
        while let Some(t) = login.poll_transmit() {
            out.push(decode(&t.bhs, payload_bytes(&t.payload, &[])));
        }
        if let Some(o) = login.take_outcome() {
            let now = self.now;
            if o.leading {
                let mut s = TargetSession::new(SessionSetup {
                    tsih: o.tsih,
                    isid: o.isid,
                    params: o.negotiated.session.clone(),
                    catalog: self.catalog.clone(),
                    cmd_sn: o.cmd_sn,
                });
                self.conn = s.add_connection(o.cid, o.negotiated.connection, o.stat_sn, None, now);
                self.buffers = vec![Vec::new(); s.task_capacity()];
                self.session = Some(s);
            } else if let Some(s) = self.session.as_mut() {
                if let Some(old) = s.connection_by_cid(o.cid) {
                    s.drop_connection(old);
                    s.connection_lost(old);
                }
                self.conn = s.add_connection(o.cid, o.negotiated.connection, o.stat_sn, None, now);
            }
            self.cmd_sn = o.cmd_sn;
            self.login = None;
        }
        out
    }

    /// A full login straight to full feature phase (operational stage only) with extra keys.
    pub fn login_normal(&mut self, extra: &[(&str, &str)]) -> Result<(), HarnessError> {
        self.start_login();
        let mut keys = vec![
            ("InitiatorName", "iqn.2026-11.io.rtgt:initiator"),
            ("TargetName", "iqn.2026-11.io.rtgt:test"),
            ("SessionType", "Normal"),
        ];
        keys.extend_from_slice(extra);
        let req = LoginRequest {
            current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
            next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
            isid: self.isid,
            itt: Itt(0),
            cmd_sn: self.cmd_sn,
            ..Default::default()
        };
        let out = self.login_pdu(req, &keys);
        match out.first().map(|p| &p.header) {
            Some(PduHeader::LoginResponse(r)) if r.status == LoginStatus::SUCCESS => Ok(()),
            Some(PduHeader::LoginResponse(r)) => Err(HarnessError::Login(r.status)),
            _ => Err(HarnessError::NoAnswer),
        }
    }

    /// The session (panics in tests if not logged in).
    pub fn session(&mut self) -> &mut TargetSession {
        self.session.as_mut().expect("logged in")
    }

    /// Next ITT.
    pub fn next_itt(&mut self) -> Itt {
        let i = self.itt;
        self.itt += 1;
        Itt(i)
    }

    /// Sends one PDU to the target (header + data) and runs the engine.
    pub fn send(&mut self, pdu: &Pdu) {
        let conn = self.conn;
        let now = self.now;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut ahs = Vec::new();
        if rtgt_pdu::Ahs::encode_all(&pdu.ahs, &mut ahs).is_err() {
            return;
        }
        let placement = s.begin_pdu(conn, &pdu.header, &ahs, pdu.data.len() as u32, now);
        match placement {
            Placement::Task { task, offset } => {
                let len = s.task(task).map_or(0, |t| t.buffer_len() as usize);
                let buf = &mut self.buffers[task.slot()];
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                let off = offset as usize;
                buf[off..off + pdu.data.len()].copy_from_slice(&pdu.data);
                s.end_pdu(conn, &[], now);
            }
            Placement::Collect => s.end_pdu(conn, &pdu.data, now),
            Placement::Discard => s.end_pdu(conn, &[], now),
        }
        self.run();
    }

    /// Runs the fake engine: executes events and collects the target's PDUs into `inbox`;
    /// answers R2Ts with data registered by [`Pair::write`] when `auto_r2t` is on.
    pub fn run(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.session.as_mut().and_then(TargetSession::poll_event) {
                progressed = true;
                self.events.push(ev.clone());
                self.engine_event(&ev);
            }
            let conn = self.conn;
            let mut r2ts = Vec::new();
            while let Some(t) = self.session.as_mut().and_then(|s| s.poll_transmit(conn)) {
                progressed = true;
                let data = payload_bytes(&t.payload, &self.buffers);
                if let Payload::Task { task, .. } = t.payload {
                    if let Some(s) = self.session.as_mut() {
                        s.transmit_done(task);
                    }
                }
                let pdu = decode(&t.bhs, data);
                if let PduHeader::R2t(r) = &pdu.header {
                    r2ts.push(*r);
                }
                self.inbox.push(pdu);
            }
            if self.auto_r2t {
                for r in r2ts {
                    self.answer_r2t(&r);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn answer_r2t(&mut self, r: &rtgt_pdu::R2t) {
        let Some(data) = self
            .out_data
            .iter()
            .find(|(i, _)| *i == r.itt)
            .map(|(_, d)| d.clone())
        else {
            return;
        };
        let max = self
            .session
            .as_ref()
            .and_then(|s| s.connection_params(self.conn))
            .map_or(8192, |p| p.max_recv_data_segment_length) as usize;
        let start = r.buffer_offset as usize;
        let end = start + r.desired_data_transfer_length as usize;
        let mut off = start;
        let mut sn = 0;
        while off < end {
            let len = max.min(end - off);
            let d = DataOut {
                final_pdu: off + len == end,
                itt: r.itt,
                ttt: r.ttt,
                data_sn: Sn(sn),
                buffer_offset: off as u32,
                ..Default::default()
            };
            sn += 1;
            let chunk = data.get(off..off + len).unwrap_or(&[]).to_vec();
            self.send(&Pdu::with_data(d, chunk));
            off += len;
        }
    }

    fn engine_event(&mut self, ev: &SessionEvent) {
        match *ev {
            SessionEvent::Execute(id) => {
                if self.hold {
                    self.held.push(id);
                    return;
                }
                self.execute(id);
            }
            SessionEvent::DataOutComplete(id) => {
                if self.hold {
                    self.held.push(id);
                    return;
                }
                self.finish_write(id);
            }
            SessionEvent::Aborted(_) => {}
            SessionEvent::CloseConnection(c) => {
                self.closed = true;
                if let Some(s) = self.session.as_mut() {
                    s.connection_lost(c);
                }
            }
            _ => {}
        }
    }

    /// Lets the held tasks go on (completing them).
    pub fn release_held(&mut self) {
        self.hold = false;
        for id in core::mem::take(&mut self.held) {
            let phase_write = self
                .session
                .as_ref()
                .and_then(|s| s.task(id))
                .is_some_and(|t| t.is_write() && !t.is_aborted());
            // Like an engine, carry on with the task even if it was aborted meanwhile: the
            // session sorts out what to do with the results.
            if phase_write && self.write_pending(id) {
                self.finish_write(id);
            } else {
                self.execute(id);
            }
        }
        self.run();
    }

    fn write_pending(&self, id: TaskId) -> bool {
        self.events.contains(&SessionEvent::DataOutComplete(id))
    }

    fn lba_len(cdb: &[u8]) -> (usize, usize) {
        let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]) as usize;
        let blocks = u16::from_be_bytes([cdb[7], cdb[8]]) as usize;
        (lba * BLOCK, blocks * BLOCK)
    }

    fn execute(&mut self, id: TaskId) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(t) = s.task(id) else {
            return;
        };
        let cdb = t.cdb().to_vec();
        let edtl = t.expected_len() as usize;
        let buf_len = t.buffer_len() as usize;
        match cdb.first() {
            Some(0x00) => s.complete_task(id, Completion::good(0)),
            Some(0x28) => {
                let (off, len) = Self::lba_len(&cdb);
                let n = len.min(buf_len);
                let buf = &mut self.buffers[id.slot()];
                if buf.len() < buf_len {
                    buf.resize(buf_len, 0);
                }
                buf[..n].copy_from_slice(&self.disk[off..off + n]);
                s.complete_task(
                    id,
                    Completion {
                        status: ScsiStatus::GOOD,
                        sense: &[],
                        data_in_len: n as u32,
                        residual: Residual::of(edtl as u32, len as u32),
                    },
                );
            }
            Some(0x2a) => {
                let (_, len) = Self::lba_len(&cdb);
                s.task_wants_data(id, len.min(edtl) as u32);
            }
            _ => {
                let sense = [
                    0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0,
                ];
                s.complete_task(
                    id,
                    Completion {
                        status: ScsiStatus::CHECK_CONDITION,
                        sense: &sense,
                        data_in_len: 0,
                        residual: Residual::None,
                    },
                );
            }
        }
    }

    fn finish_write(&mut self, id: TaskId) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(t) = s.task(id) else {
            return;
        };
        let cdb = t.cdb().to_vec();
        let edtl = t.expected_len();
        let (off, len) = Self::lba_len(&cdb);
        let n = len.min(edtl as usize);
        let buf = &self.buffers[id.slot()];
        self.disk[off..off + n].copy_from_slice(&buf[..n]);
        s.complete_task(
            id,
            Completion {
                status: ScsiStatus::GOOD,
                sense: &[],
                data_in_len: 0,
                residual: Residual::of(edtl, len as u32),
            },
        );
    }

    /// Builds a SCSI Command for READ(10)/WRITE(10).
    pub fn rw10(&mut self, write: bool, lba: u32, blocks: u16, edtl: u32) -> ScsiCommand {
        let mut cdb = [0u8; 16];
        cdb[0] = if write { 0x2a } else { 0x28 };
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        let itt = self.next_itt();
        let cmd = ScsiCommand {
            final_pdu: true,
            read: !write,
            write,
            attr: TaskAttribute::SIMPLE,
            lun: Lun::ZERO,
            itt,
            expected_data_transfer_length: edtl,
            cmd_sn: self.cmd_sn,
            cdb,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.incremented();
        cmd
    }

    /// Writes `data` at `lba` with immediate data up to FirstBurstLength (when negotiated) and
    /// R2Ts for the rest; returns the status.
    pub fn write10(&mut self, lba: u32, data: &[u8]) -> Result<ScsiStatus, HarnessError> {
        let blocks = (data.len() / BLOCK) as u16;
        let mut cmd = self.rw10(true, lba, blocks, data.len() as u32);
        let p = self.session().params().clone();
        let conn = self.conn;
        let mrdsl = self.session().connection_params(conn).map_or(8192, |c| {
            c.max_xmit_data_segment_length
                .min(c.max_recv_data_segment_length)
        }) as usize;
        let imm = if p.immediate_data {
            data.len().min(p.first_burst_length as usize).min(mrdsl)
        } else {
            0
        };
        let unsol_total = if p.initial_r2t {
            imm
        } else {
            data.len().min(p.first_burst_length as usize)
        };
        cmd.final_pdu = unsol_total == imm;
        self.out_data.push((cmd.itt, data.to_vec()));
        self.send(&Pdu::with_data(cmd, data[..imm].to_vec()));
        // Unsolicited Data-Out for the rest of the first burst.
        let mut off = imm;
        let mut sn = 0;
        while off < unsol_total {
            let len = mrdsl.min(unsol_total - off);
            let d = DataOut {
                final_pdu: off + len == unsol_total,
                itt: cmd.itt,
                ttt: Ttt::RESERVED,
                data_sn: Sn(sn),
                buffer_offset: off as u32,
                ..Default::default()
            };
            self.send(&Pdu::with_data(d, data[off..off + len].to_vec()));
            sn += 1;
            off += len;
        }
        self.response_of(cmd.itt).map(|(s, _)| s)
    }

    /// Reads `blocks` at `lba`; returns status and data.
    pub fn read10(&mut self, lba: u32, blocks: u16) -> Result<(ScsiStatus, Vec<u8>), HarnessError> {
        let cmd = self.rw10(false, lba, blocks, u32::from(blocks) * BLOCK as u32);
        self.send(&Pdu::new(cmd));
        self.response_of(cmd.itt)
    }

    /// Collects Data-In and the status for `itt` from the inbox.
    pub fn response_of(&mut self, itt: Itt) -> Result<(ScsiStatus, Vec<u8>), HarnessError> {
        let mut data = Vec::new();
        let mut status = None;
        self.inbox.retain(|p| {
            if p.header.itt() != itt {
                return true;
            }
            match &p.header {
                PduHeader::DataIn(d) => {
                    let off = d.buffer_offset as usize;
                    if data.len() < off + p.data.len() {
                        data.resize(off + p.data.len(), 0);
                    }
                    data[off..off + p.data.len()].copy_from_slice(&p.data);
                    if let Some(s) = d.status {
                        status = Some(s.status);
                    }
                }
                PduHeader::ScsiResponse(r) => status = Some(r.status),
                _ => return true,
            }
            false
        });
        match status {
            Some(s) => Ok((s, data)),
            None if self.closed => Err(HarnessError::Closed),
            None => Err(HarnessError::NoAnswer),
        }
    }

    /// Advances time and runs the session's timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        if let Some(s) = self.session.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.run();
    }

    /// Removes and returns every PDU in the inbox.
    pub fn take_inbox(&mut self) -> Vec<Pdu> {
        core::mem::take(&mut self.inbox)
    }
}

fn payload_bytes(p: &Payload, buffers: &[Vec<u8>]) -> Vec<u8> {
    match p {
        Payload::None => Vec::new(),
        Payload::Owned(v) => v.clone(),
        Payload::Task { task, offset, len } => buffers
            .get(task.slot())
            .and_then(|b| b.get(*offset as usize..(*offset + *len) as usize))
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
    }
}

fn decode(bhs: &[u8; rtgt_pdu::BHS_LEN], data: Vec<u8>) -> Pdu {
    let header = PduHeader::decode(bhs).unwrap_or(PduHeader::Reject(rtgt_pdu::Reject::default()));
    let _ = BhsLengths::from_bhs(bhs);
    Pdu {
        header,
        ahs: Vec::new(),
        data,
    }
}
