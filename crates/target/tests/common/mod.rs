//! A small blocking iSCSI initiator for the engine's integration tests, built from rtgt-pdu
//! types over a plain `TcpStream`: login (with or without CHAP, mutual CHAP, digests), SCSI
//! commands with immediate data and R2T-solicited Data-Out, NOP, TMF, Text and Logout.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rtgt_pdu::text::{KeyValue, encode_pairs, parse_pairs};
use rtgt_pdu::{
    DataOut, Digests, Framer, Isid, Itt, LoginRequest, LoginStage, LoginStatus, LogoutReason,
    LogoutRequest, Lun, NopOut, Pdu, PduHeader, ScsiCommand, ScsiStatus, Sn, TaskAttribute,
    TaskMgmtRequest, TextRequest, TmfFunction, TmfResponse, Ttt,
};
use rtgt_session::chap::{ChapAlgorithm, format_hex, parse_binary, parse_identifier};

pub const TARGET: &str = "iqn.2026-11.io.rtgt:test";
pub const INITIATOR: &str = "iqn.2026-11.io.rtgt:tester";

/// How to log in.
#[derive(Clone)]
pub struct LoginOpts {
    pub target: Option<String>,
    pub isid: Isid,
    pub tsih: u16,
    pub cid: u16,
    pub chap: Option<(String, Vec<u8>)>,
    pub mutual: Option<(String, Vec<u8>)>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// FirstBurstLength offered (MaxBurstLength is offered as at least this).
    pub first_burst: u32,
    pub extra: Vec<(String, String)>,
}

impl Default for LoginOpts {
    fn default() -> Self {
        Self {
            target: Some(TARGET.into()),
            isid: Isid([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]),
            tsih: 0,
            cid: 0,
            chap: None,
            mutual: None,
            header_digest: false,
            data_digest: false,
            first_burst: 65536,
            extra: Vec::new(),
        }
    }
}

/// The outcome of a SCSI command.
#[derive(Debug)]
pub struct Response {
    pub status: ScsiStatus,
    pub data: Vec<u8>,
    pub sense: Vec<u8>,
}

pub struct Initiator {
    stream: TcpStream,
    framer: Framer,
    digests: Digests,
    pub cmd_sn: Sn,
    pub exp_stat_sn: Sn,
    itt: u32,
    pub tsih: u16,
    pub max_send: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub first_burst: u32,
    /// PDUs received that nobody asked for yet (NOP-In pings, Async Messages).
    pub unsolicited: Vec<Pdu>,
    buf: Vec<u8>,
}

const MAX_RECV: u32 = 65536;

impl Initiator {
    pub fn connect(addr: SocketAddr) -> Self {
        init_logging();
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            framer: Framer::new(),
            digests: Digests::NONE,
            cmd_sn: Sn(1),
            exp_stat_sn: Sn(0),
            itt: 1,
            tsih: 0,
            max_send: 8192,
            immediate_data: true,
            initial_r2t: true,
            first_burst: 65536,
            unsolicited: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn next_itt(&mut self) -> Itt {
        self.itt += 1;
        Itt(self.itt)
    }

    pub fn send(&mut self, pdu: &Pdu) {
        let bytes = pdu.to_bytes(self.digests).expect("encode");
        self.stream.write_all(&bytes).expect("send");
    }

    /// Sends a PDU in pieces ending at each of `cuts` (byte offsets into its encoding),
    /// pausing after each so the target receives them separately.
    pub fn send_in_pieces(&mut self, pdu: &Pdu, cuts: &[usize], pause: Duration) {
        let bytes = pdu.to_bytes(self.digests).expect("encode");
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.min(bytes.len());
            self.stream.write_all(&bytes[start..cut]).expect("send");
            self.stream.flush().expect("flush");
            start = cut;
            std::thread::sleep(pause);
        }
    }

    /// Builds a WRITE(10) command PDU with its immediate data (sent by the caller).
    pub fn write10_pdu(&mut self, lba: u32, data: &[u8]) -> Pdu {
        let blocks = (data.len() / 512) as u16;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x2a;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        let itt = self.next_itt();
        let cmd = ScsiCommand {
            final_pdu: true,
            write: true,
            attr: TaskAttribute::SIMPLE,
            lun: Lun::from_number(0).unwrap(),
            itt,
            expected_data_transfer_length: data.len() as u32,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.incremented();
        Pdu::with_data(cmd, data.to_vec())
    }

    /// The next PDU, or `None` when the target closed the connection (or nothing came).
    pub fn recv(&mut self) -> Option<Pdu> {
        loop {
            let mut input = &self.buf[..];
            match self.framer.next_pdu(&mut input) {
                Ok(Some(p)) => {
                    let used = self.buf.len() - input.len();
                    self.buf.drain(..used);
                    if let Some(sn) = stat_sn_of(&p.header) {
                        self.exp_stat_sn = sn.incremented();
                    }
                    return Some(p);
                }
                Ok(None) => {
                    let used = self.buf.len() - input.len();
                    self.buf.drain(..used);
                }
                Err(e) => panic!("framing error from the target: {e}"),
            }
            let mut tmp = vec![0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Receives until a PDU for `itt` arrives, stashing unrelated ones.
    fn recv_for(&mut self, itt: Itt) -> Option<Pdu> {
        loop {
            let p = self.recv()?;
            if p.header.itt() == itt {
                return Some(p);
            }
            self.unsolicited.push(p);
        }
    }

    fn login_pdu(
        &mut self,
        opts: &LoginOpts,
        csg: LoginStage,
        nsg: Option<LoginStage>,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, LoginStatus> {
        let req = LoginRequest {
            current_stage: csg,
            next_stage: nsg,
            isid: opts.isid,
            tsih: opts.tsih,
            itt: Itt(0),
            cid: opts.cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ..Default::default()
        };
        let kv: Vec<KeyValue> = keys
            .iter()
            .map(|(k, v)| KeyValue::new(k.as_str(), v.as_str()))
            .collect();
        self.send(&Pdu::with_data(req, encode_pairs(&kv)));
        let p = self.recv().ok_or(LoginStatus::TARGET_ERROR)?;
        let PduHeader::LoginResponse(r) = p.header else {
            panic!("expected a Login Response, got {:?}", p.header);
        };
        if r.status != LoginStatus::SUCCESS {
            return Err(r.status);
        }
        self.tsih = r.tsih;
        let pairs = parse_pairs(&p.data).expect("response text");
        Ok(pairs
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect())
    }

    /// Logs in; returns every key the target answered.
    pub fn login(&mut self, opts: &LoginOpts) -> Result<Vec<(String, String)>, LoginStatus> {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        let mut identity = vec![s("InitiatorName", INITIATOR)];
        match &opts.target {
            Some(t) => {
                identity.push(s("TargetName", t));
                identity.push(s("SessionType", "Normal"));
            }
            None => identity.push(s("SessionType", "Discovery")),
        }
        let mut all = Vec::new();
        if let Some((user, secret)) = &opts.chap {
            let mut keys = identity.clone();
            keys.push(s("AuthMethod", "CHAP"));
            all.extend(self.login_pdu(opts, LoginStage::SECURITY_NEGOTIATION, None, &keys)?);
            let answer = self.login_pdu(
                opts,
                LoginStage::SECURITY_NEGOTIATION,
                None,
                &[s("CHAP_A", "5")],
            )?;
            let get = |k: &str| {
                answer
                    .iter()
                    .find(|(kk, _)| kk == k)
                    .map(|(_, v)| v.clone())
                    .expect(k)
            };
            let id = parse_identifier(&get("CHAP_I")).unwrap();
            let challenge = parse_binary(&get("CHAP_C")).unwrap();
            let r = ChapAlgorithm::Md5.response(id, secret, &challenge);
            let mut keys = vec![s("CHAP_N", user), ("CHAP_R".into(), r.to_hex())];
            let mine = [0x42u8; 16];
            if opts.mutual.is_some() {
                keys.push(s("CHAP_I", "9"));
                keys.push(("CHAP_C".into(), format_hex(&mine)));
            }
            let answer = self.login_pdu(
                opts,
                LoginStage::SECURITY_NEGOTIATION,
                Some(LoginStage::OPERATIONAL_NEGOTIATION),
                &keys,
            )?;
            if let Some((tuser, tsecret)) = &opts.mutual {
                let get = |k: &str| {
                    answer
                        .iter()
                        .find(|(kk, _)| kk == k)
                        .map(|(_, v)| v.clone())
                        .expect(k)
                };
                assert_eq!(&get("CHAP_N"), tuser);
                let want = ChapAlgorithm::Md5.response(9, tsecret, &mine).to_hex();
                assert_eq!(get("CHAP_R"), want, "the target proved the wrong secret");
            }
            all.extend(answer);
            identity.clear();
        }
        let d = |on: bool| if on { "CRC32C" } else { "None" };
        let mut keys = identity;
        keys.extend([
            s("HeaderDigest", d(opts.header_digest)),
            s("DataDigest", d(opts.data_digest)),
            s("MaxRecvDataSegmentLength", &MAX_RECV.to_string()),
        ]);
        if opts.target.is_some() {
            keys.extend([
                s("ImmediateData", "Yes"),
                s("InitialR2T", "Yes"),
                s("MaxBurstLength", &opts.first_burst.max(262_144).to_string()),
                s("FirstBurstLength", &opts.first_burst.to_string()),
                s("MaxConnections", "4"),
            ]);
        }
        for (k, v) in &opts.extra {
            match keys.iter_mut().find(|(kk, _)| kk == k) {
                Some(slot) => slot.1.clone_from(v),
                None => keys.push((k.clone(), v.clone())),
            }
        }
        let answer = self.login_pdu(
            opts,
            LoginStage::OPERATIONAL_NEGOTIATION,
            Some(LoginStage::FULL_FEATURE_PHASE),
            &keys,
        )?;
        let get = |k: &str| {
            answer
                .iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.clone())
        };
        if let Some(v) = get("MaxRecvDataSegmentLength").and_then(|v| v.parse().ok()) {
            self.max_send = v;
        }
        if let Some(v) = get("ImmediateData").filter(|v| v != "Irrelevant") {
            self.immediate_data = v == "Yes";
        }
        if let Some(v) = get("InitialR2T").filter(|v| v != "Irrelevant") {
            self.initial_r2t = v == "Yes";
        }
        if let Some(v) = get("FirstBurstLength").and_then(|v| v.parse().ok()) {
            self.first_burst = v;
        }
        self.digests = Digests {
            header: get("HeaderDigest").as_deref() == Some("CRC32C"),
            data: get("DataDigest").as_deref() == Some("CRC32C"),
        };
        self.framer.enter_full_feature(self.digests, MAX_RECV);
        all.extend(answer);
        Ok(all)
    }

    /// Runs a SCSI command; `data_out` is sent as immediate data and on R2T.
    pub fn command(
        &mut self,
        lun: u16,
        cdb: &[u8],
        edtl: u32,
        read: bool,
        data_out: &[u8],
    ) -> Option<Response> {
        let itt = self.start_command(lun, cdb, edtl, read, data_out);
        self.finish_command(itt, data_out)
    }

    /// Sends the command (and immediate data); returns its ITT.
    pub fn start_command(
        &mut self,
        lun: u16,
        cdb: &[u8],
        edtl: u32,
        read: bool,
        data_out: &[u8],
    ) -> Itt {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let imm = if self.immediate_data {
            data_out
                .len()
                .min(self.first_burst as usize)
                .min(self.max_send as usize)
        } else {
            0
        };
        let cmd = ScsiCommand {
            final_pdu: true,
            read,
            write: !data_out.is_empty(),
            attr: TaskAttribute::SIMPLE,
            lun: Lun::from_number(lun).unwrap(),
            itt,
            expected_data_transfer_length: edtl,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.incremented();
        self.send(&Pdu::with_data(cmd, data_out[..imm].to_vec()));
        itt
    }

    /// Answers R2Ts and collects Data-In until the status of `itt` arrives.
    pub fn finish_command(&mut self, itt: Itt, data_out: &[u8]) -> Option<Response> {
        let mut data = Vec::new();
        loop {
            let p = self.recv_for(itt)?;
            match p.header {
                PduHeader::R2t(r) => {
                    let mut off = r.buffer_offset as usize;
                    let end = off + r.desired_data_transfer_length as usize;
                    let mut sn = 0;
                    while off < end {
                        let len = (end - off).min(self.max_send as usize);
                        let d = DataOut {
                            final_pdu: off + len == end,
                            lun: r.lun,
                            itt,
                            ttt: r.ttt,
                            exp_stat_sn: self.exp_stat_sn,
                            data_sn: Sn(sn),
                            buffer_offset: off as u32,
                        };
                        self.send(&Pdu::with_data(d, data_out[off..off + len].to_vec()));
                        off += len;
                        sn += 1;
                    }
                }
                PduHeader::DataIn(d) => {
                    let off = d.buffer_offset as usize;
                    if data.len() < off + p.data.len() {
                        data.resize(off + p.data.len(), 0);
                    }
                    data[off..off + p.data.len()].copy_from_slice(&p.data);
                    if let Some(s) = d.status {
                        return Some(Response {
                            status: s.status,
                            data,
                            sense: Vec::new(),
                        });
                    }
                }
                PduHeader::ScsiResponse(r) => {
                    let sense = if p.data.len() > 2 {
                        p.data[2..].to_vec()
                    } else {
                        Vec::new()
                    };
                    return Some(Response {
                        status: r.status,
                        data,
                        sense,
                    });
                }
                other => panic!("unexpected PDU for a command: {other:?}"),
            }
        }
    }

    pub fn write10(&mut self, lba: u32, data: &[u8]) -> Option<Response> {
        let blocks = (data.len() / 512) as u16;
        let mut cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        self.command(0, &cdb, data.len() as u32, false, data)
    }

    pub fn read10(&mut self, lba: u32, blocks: u16) -> Option<Response> {
        let mut cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        self.command(0, &cdb, u32::from(blocks) * 512, true, &[])
    }

    pub fn test_unit_ready(&mut self) -> Option<Response> {
        self.command(0, &[0; 6], 0, false, &[])
    }

    pub fn nop(&mut self) -> Option<Pdu> {
        let itt = self.next_itt();
        let nop = NopOut {
            immediate: true,
            itt,
            ttt: Ttt::RESERVED,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ..Default::default()
        };
        self.send(&Pdu::with_data(nop, b"hello".to_vec()));
        self.recv_for(itt)
    }

    pub fn tmf(&mut self, function: TmfFunction, rtt: Itt, ref_cmd_sn: Sn) -> Option<TmfResponse> {
        let itt = self.next_itt();
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: Lun::ZERO,
            itt,
            referenced_task_tag: rtt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            ..Default::default()
        };
        self.send(&Pdu::new(req));
        match self.recv_for(itt)?.header {
            PduHeader::TaskMgmtResponse(r) => Some(r.response),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn send_targets(&mut self) -> Vec<(String, String)> {
        let itt = self.next_itt();
        let t = TextRequest {
            immediate: true,
            final_pdu: true,
            itt,
            ttt: Ttt::RESERVED,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ..Default::default()
        };
        self.send(&Pdu::with_data(
            t,
            encode_pairs(&[KeyValue::new("SendTargets", "All")]),
        ));
        let p = self.recv_for(itt).expect("text response");
        parse_pairs(&p.data)
            .unwrap()
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    /// Logs out (close session); true when the target answered with success.
    pub fn logout(&mut self) -> bool {
        let itt = self.next_itt();
        let req = LogoutRequest {
            immediate: true,
            reason: LogoutReason::CLOSE_SESSION,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(&Pdu::new(req));
        matches!(self.recv_for(itt).map(|p| p.header), Some(PduHeader::LogoutResponse(r)) if r.response == rtgt_pdu::LogoutResponseCode::SUCCESS)
    }

    /// Waits until the target closes the connection (true) or `limit` passes (false).
    pub fn wait_closed(&mut self, limit: Duration) -> bool {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        loop {
            match self.recv() {
                Some(p) => self.unsolicited.push(p),
                None => return true,
            }
        }
    }
}

fn stat_sn_of(h: &PduHeader) -> Option<Sn> {
    match h {
        PduHeader::ScsiResponse(r) => Some(r.stat_sn),
        PduHeader::DataIn(d) => d.status.map(|s| s.stat_sn),
        PduHeader::LoginResponse(r) => Some(r.stat_sn),
        PduHeader::TaskMgmtResponse(r) => Some(r.stat_sn),
        PduHeader::TextResponse(r) => Some(r.stat_sn),
        PduHeader::LogoutResponse(r) => Some(r.stat_sn),
        _ => None,
    }
}

/// A test configuration: target `TARGET` with LUN 0 (`lun0` spec) and extra target TOML.
pub fn config(lun0: &str, target_extra: &str) -> rtgt_target::config::Config {
    config_with("", lun0, target_extra)
}

/// As [`config`], with top-level TOML (e.g. a `[session]` table) first.
pub fn config_with(top: &str, lun0: &str, target_extra: &str) -> rtgt_target::config::Config {
    let text = format!(
        "{top}\n[[portal]]\ngroup = 1\nlisten = [\"127.0.0.1:0\"]\n\n[[target]]\nname = \"{TARGET}\"\n[[target.lun]]\nnumber = 0\nbackend = \"{lun0}\"\n{target_extra}\n"
    );
    rtgt_target::config::Config::from_toml_str(&text, "test.toml").expect("test config")
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Options for a test engine: small pools, no pinning.
pub fn options(engine: rtgt_target::IoEngine, reactors: usize) -> rtgt_target::EngineOptions {
    rtgt_target::EngineOptions {
        io_engine: engine,
        reactors: Some(reactors),
        pin: false,
        pool_buffers: Some(32),
        // The engine tests run with polling on (rtgtd's default is off, which the CLI and
        // conformance runs cover).
        poll_us: Some(50),
    }
}
