//! The pipelined engine against a small scripted target in this process (no external
//! binaries): it logs in with the target-role negotiation engine of `rtgt-pdu`, answers TEST
//! UNIT READY and READ(10), splits each Data-In across several TCP writes, and can keep the
//! command window closed in its responses (a target bug seen in the wild) so that only a
//! NOP-Out ping reopens it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtgt_client::engine::{ConnKey, Engine, EngineConfig, IoSource, IoStatus};
use rtgt_client::workload::{IoSpec, Next};
use rtgt_client::{ConnectOptions, IscsiUrl};
use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role, Stage};
use rtgt_pdu::text::{encode_pairs, parse_pairs};
use rtgt_pdu::{
    DataIn, DataInStatus, Digests, Framer, LoginResponse, LoginStage, LogoutResponse, NopIn, Pdu,
    PduHeader, Residual, ScsiResponse, ScsiStatus, Sn, Ttt,
};

const IQN: &str = "iqn.2026-11.io.rtgt.test:scripted";
const BLOCK: u32 = 512;

/// How the scripted target misbehaves.
#[derive(Clone, Copy)]
struct Script {
    /// Report a closed window (MaxCmdSN = ExpCmdSN - 1) in every response, so only a ping's
    /// answer grants new command numbers.
    stuck_window: bool,
    /// Command window the target grants.
    window: u32,
}

struct Target {
    stream: TcpStream,
    framer: Framer,
    stat_sn: u32,
    exp_cmd_sn: Sn,
    script: Script,
    pings: Arc<AtomicU64>,
}

impl Target {
    fn send(&mut self, h: impl Into<PduHeader>, data: Vec<u8>) {
        let bytes = Pdu::with_data(h, data).to_bytes(Digests::NONE).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Option<Pdu> {
        loop {
            let mut input = &buf[..];
            let got = self.framer.next_pdu(&mut input).ok()?;
            let used = buf.len() - input.len();
            buf.drain(..used);
            if got.is_some() {
                return got;
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn max_cmd_sn(&self) -> Sn {
        if self.script.stuck_window {
            self.exp_cmd_sn.add(u32::MAX)
        } else {
            self.exp_cmd_sn.add(self.script.window - 1)
        }
    }

    fn next_stat(&mut self) -> Sn {
        self.stat_sn += 1;
        Sn(self.stat_sn - 1)
    }

    fn login(&mut self, buf: &mut Vec<u8>) {
        let local = LocalConfig {
            max_recv_data_segment_length: 65536,
            ..LocalConfig::default()
        };
        let mut neg = Negotiator::new(Role::Target, local);
        loop {
            let pdu = self.recv(buf).expect("login request");
            let PduHeader::LoginRequest(req) = pdu.header else {
                panic!("not a login")
            };
            let stage = if req.current_stage == LoginStage::SECURITY_NEGOTIATION {
                Stage::Security
            } else {
                Stage::Operational
            };
            let ctx = Context::login(stage, true);
            let ex = neg.process(ctx, &parse_pairs(&pdu.data).unwrap()).unwrap();
            let mut out = ex.answers;
            out.extend(neg.offers(ctx));
            let done = req.next_stage == Some(LoginStage::FULL_FEATURE_PHASE);
            if done {
                neg.finish().unwrap();
                self.exp_cmd_sn = req.cmd_sn;
            }
            let h = LoginResponse {
                next_stage: req.next_stage,
                current_stage: req.current_stage,
                isid: req.isid,
                tsih: if done { 7 } else { 0 },
                itt: req.itt,
                stat_sn: self.next_stat(),
                exp_cmd_sn: req.cmd_sn,
                max_cmd_sn: req.cmd_sn.add(self.script.window - 1),
                ..LoginResponse::default()
            };
            self.send(h, encode_pairs(&out));
            if done {
                self.framer.enter_full_feature(Digests::NONE, 65536);
                return;
            }
        }
    }

    fn serve(mut self) {
        let mut buf = Vec::new();
        self.login(&mut buf);
        while let Some(pdu) = self.recv(&mut buf) {
            match pdu.header {
                PduHeader::ScsiCommand(cmd) => {
                    if !cmd.immediate {
                        self.exp_cmd_sn = cmd.cmd_sn.incremented();
                    }
                    let len = cmd.expected_data_transfer_length;
                    if cmd.cdb[0] == 0x28 && len > 0 {
                        // The payload is the LBA's low byte repeated; sent as two Data-In PDUs,
                        // each in two writes.
                        let lba =
                            u32::from_be_bytes([cmd.cdb[2], cmd.cdb[3], cmd.cdb[4], cmd.cdb[5]]);
                        let data = vec![lba as u8; len as usize];
                        let half = len / 2;
                        for (i, (off, part)) in
                            [(0, &data[..half as usize]), (half, &data[half as usize..])]
                                .into_iter()
                                .enumerate()
                        {
                            let last = i == 1;
                            let status = last.then(|| DataInStatus {
                                status: ScsiStatus::GOOD,
                                stat_sn: self.next_stat(),
                                residual: Residual::None,
                            });
                            let h = DataIn {
                                final_pdu: last,
                                lun: cmd.lun,
                                itt: cmd.itt,
                                ttt: Ttt::RESERVED,
                                exp_cmd_sn: self.exp_cmd_sn,
                                max_cmd_sn: self.max_cmd_sn(),
                                data_sn: Sn(i as u32),
                                buffer_offset: off,
                                status,
                                ..DataIn::default()
                            };
                            let bytes = Pdu::with_data(h, part.to_vec())
                                .to_bytes(Digests::NONE)
                                .unwrap();
                            let (a, b) = bytes.split_at(bytes.len() / 2);
                            self.stream.write_all(a).unwrap();
                            self.stream.flush().unwrap();
                            std::thread::sleep(Duration::from_micros(200));
                            self.stream.write_all(b).unwrap();
                        }
                    } else {
                        let h = ScsiResponse {
                            itt: cmd.itt,
                            stat_sn: self.next_stat(),
                            exp_cmd_sn: self.exp_cmd_sn,
                            max_cmd_sn: self.max_cmd_sn(),
                            ..ScsiResponse::default()
                        };
                        self.send(h, Vec::new());
                    }
                }
                PduHeader::NopOut(n) => {
                    self.pings.fetch_add(1, Ordering::Relaxed);
                    // The answer to a ping reports the real window.
                    let h = NopIn {
                        lun: n.lun,
                        itt: n.itt,
                        ttt: Ttt::RESERVED,
                        stat_sn: self.next_stat(),
                        exp_cmd_sn: self.exp_cmd_sn,
                        max_cmd_sn: self.exp_cmd_sn.add(self.script.window - 1),
                    };
                    self.send(h, Vec::new());
                }
                PduHeader::LogoutRequest(l) => {
                    let h = LogoutResponse {
                        itt: l.itt,
                        stat_sn: self.next_stat(),
                        exp_cmd_sn: self.exp_cmd_sn,
                        max_cmd_sn: self.max_cmd_sn(),
                        ..LogoutResponse::default()
                    };
                    self.send(h, Vec::new());
                    return;
                }
                other => panic!("scripted target got {other:?}"),
            }
        }
    }
}

fn start(script: Script) -> (IscsiUrl, Arc<AtomicU64>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pings = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&pings);
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let t = Target {
            stream,
            framer: Framer::new(),
            stat_sn: 1,
            exp_cmd_sn: Sn(1),
            script,
            pings: p,
        };
        t.serve();
    });
    let url = format!("iscsi://127.0.0.1:{port}/{IQN}/0").parse().unwrap();
    (url, pings, handle)
}

/// Reads LBAs 0, 1, 2, … and checks each payload.
struct Reads {
    next: u64,
    total: u64,
    blocks: u32,
    checked: u64,
}

impl IoSource for Reads {
    fn next(&mut self, _key: ConnKey, _now: Instant) -> Next {
        if self.next >= self.total {
            return Next::Wait(None);
        }
        self.next += 1;
        Next::Io(IoSpec {
            lba: self.next - 1,
            blocks: self.blocks,
            ..IoSpec::default()
        })
    }

    fn complete(
        &mut self,
        _key: ConnKey,
        io: &IoSpec,
        status: &IoStatus,
        data: &[u8],
        _now: Instant,
    ) -> rtgt_client::Result<()> {
        assert_eq!(*status, IoStatus::Good);
        assert_eq!(data.len(), (io.blocks * BLOCK) as usize);
        assert!(
            data.iter().all(|b| *b == io.lba as u8),
            "payload of LBA {} corrupted",
            io.lba
        );
        self.checked += 1;
        Ok(())
    }
}

fn options() -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(5),
        nop_interval: None,
        ..ConnectOptions::default()
    }
}

#[test]
fn split_data_in_lands_in_the_right_buffers() {
    let (url, pings, handle) = start(Script {
        stuck_window: false,
        window: 64,
    });
    let opts = options();
    let engine = Engine::connect(&url, &opts, EngineConfig::new(8, 64 * 1024, BLOCK)).unwrap();
    let mut reads = Reads {
        next: 0,
        total: 300,
        blocks: 128,
        checked: 0,
    };
    let stats = engine.run(&mut reads).unwrap();
    handle.join().unwrap();
    assert_eq!(reads.checked, 300);
    assert_eq!(stats.reads, 300);
    assert_eq!(stats.errors, 0);
    assert_eq!(
        pings.load(Ordering::Relaxed),
        0,
        "an open window needs no ping"
    );
}

#[test]
fn closed_window_is_reopened_with_a_ping() {
    // Queue depth equals the window, and responses never reopen it.
    let (url, pings, handle) = start(Script {
        stuck_window: true,
        window: 8,
    });
    let opts = options();
    let engine = Engine::connect(&url, &opts, EngineConfig::new(8, 4096, BLOCK)).unwrap();
    let mut reads = Reads {
        next: 0,
        total: 64,
        blocks: 8,
        checked: 0,
    };
    let stats = engine.run(&mut reads).unwrap();
    handle.join().unwrap();
    assert_eq!(reads.checked, 64);
    assert_eq!(stats.errors, 0);
    assert!(
        pings.load(Ordering::Relaxed) >= 7,
        "each full window needed a ping"
    );
}
