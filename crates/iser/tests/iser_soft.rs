//! Issue 8 acceptance over the soft fabric: login with RDMAExtensions, reads
//! and writes of 512 B – 1 MiB with data verified, unsolicited immediate
//! data, many commands outstanding, ABORT TASK during an RDMA Read, STag
//! misuse by a hostile initiator, STag invalidation after every task and at
//! teardown.
//!
//! The scenarios in `common::scenarios` are shared with the hardware suite
//! (`iser_rdma.rs`); the rest need the soft fabric's fault injection or raw
//! access to its queue pairs.

mod common;

use common::{BLOCK, Pair, Setup, good, pattern, scenarios};
use rtgt_iser::header::{CmPrivateData, IserHeader, Stag};
use rtgt_iser::memory::RegisteredBuffer;
use rtgt_iser::message;
use rtgt_iser::soft::{Injection, OpKind, SoftCq, SoftMr, SoftPd, SoftQp};
use rtgt_iser::verbs::{
    Access, CompletionQueue, Endpoint, MemoryRegion, QpCaps, QueuePair, RemoteAddr, SendOp, SendWr,
    Verbs, WcStatus, WorkCompletion,
};
use rtgt_iser::{CommandIo, IserError, Phase, ProtocolError};
use rtgt_pdu::negotiation::{Context, Negotiator, Role, Stage};
use rtgt_pdu::text::encode_pairs;
use rtgt_pdu::{
    Isid, Itt, LoginRequest, LoginStage, NopOut, PduHeader, ScsiCommand, Sn, TaskMgmtRequest,
    TmfFunction, Ttt,
};

#[test]
fn login_with_rdma_extensions_enters_iser_full_feature_phase() {
    scenarios::login_with_rdma_extensions(Pair::new);
}

#[test]
fn login_without_rdma_extensions_fails_the_connection() {
    scenarios::login_without_rdma_extensions(Pair::new);
}

#[test]
fn reads_and_writes_from_512_bytes_to_1_mib_are_verified() {
    scenarios::reads_and_writes_512_bytes_to_1_mib(Pair::new);
}

#[test]
fn immediate_data_needs_no_rdma_read() {
    scenarios::immediate_data(Pair::new);
}

#[test]
fn immediate_data_above_the_negotiated_limit_is_refused_locally() {
    scenarios::immediate_data_above_the_limit(Pair::new);
}

#[test]
fn many_commands_outstanding_complete_with_their_own_data() {
    scenarios::many_commands_outstanding(Pair::new);
}

#[test]
fn every_task_ends_with_its_stags_invalid() {
    scenarios::stags_end_invalid_after_every_task(Pair::new);
}

#[test]
fn teardown_invalidates_every_stag() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    // Hold the target's RDMA operations so commands stay in flight.
    pair.fabric.inject(Injection::Hold {
        op: OpKind::RdmaWrite,
    });
    pair.fabric.inject(Injection::Hold {
        op: OpKind::RdmaRead,
    });
    let mut stags = Vec::new();
    for i in 0..4usize {
        let len = 8192;
        let (op, io) = if i % 2 == 0 {
            (
                0x28,
                CommandIo {
                    read: Some(i * len..(i + 1) * len),
                    write: None,
                    immediate: 0,
                },
            )
        } else {
            (
                0x2a,
                CommandIo {
                    read: None,
                    write: Some(i * len..(i + 1) * len),
                    immediate: 0,
                },
            )
        };
        let cmd = pair.ini.command(op, (i * 16) as u32, len);
        pair.ini.conn.send_command(&cmd, &[], &io).unwrap();
        let (r, w) = pair.ini.conn.task_stags(cmd.itt);
        stags.extend(r);
        stags.extend(w);
    }
    pair.settle();
    assert_eq!(stags.len(), 4);
    assert!(stags.iter().all(|s| pair.fabric.stag_is_valid(*s)));
    assert_eq!(pair.ini.conn.active_tasks(), 4);
    pair.ini.conn.disconnect().unwrap();
    assert!(stags.iter().all(|s| !pair.fabric.stag_is_valid(*s)));
    pair.fabric.clear_injections();
    pair.settle();
    assert!(pair.tgt.disconnected);
    assert_eq!(pair.tgt.conn.active_tasks(), 0);
    assert_eq!(
        pair.ini
            .conn
            .send_pdu(&PduHeader::NopOut(NopOut::default()), &[]),
        Err(IserError::Closed)
    );
}

#[test]
fn abort_task_during_an_rdma_read() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    pair.fabric.inject(Injection::Hold {
        op: OpKind::RdmaRead,
    });
    let len = 65536;
    let data = pattern(3, len);
    pair.ini
        .conn
        .data_mut(0..len)
        .unwrap()
        .copy_from_slice(&data);
    let cmd = pair.ini.command(0x2a, 300, len);
    let itt = cmd.itt;
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: None,
                write: Some(0..len),
                immediate: 0,
            },
        )
        .unwrap();
    let wstag = pair.ini.conn.task_stags(itt).1.unwrap();
    pair.settle();
    assert!(pair.tgt.log.iter().any(|l| l.starts_with("cmd 2a")));
    assert!(pair.ini.inbox.is_empty(), "the RDMA Read is held");
    // ABORT TASK, immediate.
    let tmf_itt = pair.ini.itt();
    let tmf = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::ABORT_TASK,
        itt: tmf_itt,
        referenced_task_tag: itt,
        cmd_sn: pair.ini.cmd_sn,
        ref_cmd_sn: cmd.cmd_sn,
        ..Default::default()
    };
    pair.ini
        .conn
        .send_pdu(&PduHeader::TaskMgmtRequest(tmf), &[])
        .unwrap();
    pair.settle();
    // The target may not answer while its RDMA Read of the task is outstanding.
    assert!(pair.tgt.log.iter().any(|l| l.starts_with("tmf")));
    assert!(pair.ini.inbox.is_empty());
    assert!(pair.fabric.stag_is_valid(wstag));
    pair.fabric.clear_injections();
    pair.settle();
    assert!(pair.tgt.log.iter().any(|l| l.starts_with("quiesced")));
    // Only the TMF response arrives (no SCSI Response, no data event for the task),
    // and by then the task's STag is invalid.
    assert_eq!(pair.ini.inbox.len(), 1);
    let rsp = pair.ini.inbox.pop_front().unwrap();
    assert!(matches!(rsp.header, PduHeader::TaskMgmtResponse(t) if t.itt == tmf_itt));
    assert!(!pair.fabric.stag_is_valid(wstag));
    assert!(!pair.tgt.log.iter().any(|l| l.starts_with("data")));
    assert_eq!(pair.ini.conn.active_tasks(), 0);
    assert_eq!(pair.tgt.conn.active_tasks(), 0);
    // The connection goes on.
    let r = pair.read(0, 0, 4096);
    assert!(good(&r));
}

#[test]
fn hello_exchange_after_login() {
    scenarios::hello_exchange(Pair::new);
}

#[test]
fn unexpected_pdu_credit_is_enforced_by_the_initiator() {
    scenarios::unexpected_pdu_credit(Pair::new);
}

// ----- a hostile initiator, built from raw verbs and iSER messages -----

struct Hostile {
    qp: SoftQp,
    cq: SoftCq,
    pd: SoftPd,
    _rx: RegisteredBuffer<SoftMr>,
    tx: RegisteredBuffer<SoftMr>,
}

const SLOT: usize = 16 * 1024;

impl Hostile {
    fn connect(pair: &mut Pair, at: std::net::SocketAddr) -> (Self, common::Tgt) {
        let fabric = pair.fabric.clone();
        let pd = fabric.alloc_pd().unwrap();
        let cq = fabric.create_cq(64).unwrap();
        let mut qp = fabric
            .create_qp(Endpoint::Outgoing(at), &pd, &cq, QpCaps::default())
            .unwrap();
        let rx = RegisteredBuffer::new(&pd, 8 * SLOT, Access::LOCAL_WRITE).unwrap();
        let tx = RegisteredBuffer::new(&pd, SLOT, Access::NONE).unwrap();
        for i in 0..8 {
            qp.post_recv(i, &[rx.sge(i as usize * SLOT, SLOT).unwrap()])
                .unwrap();
        }
        qp.connect(
            &CmPrivateData {
                zero_based_va: false,
                send_with_invalidate: true,
            }
            .encode(),
        )
        .unwrap();
        let req = rtgt_iser::verbs::Listener::poll_request(&mut pair.listener)
            .unwrap()
            .unwrap();
        // The target's connection for the hostile initiator gets its own disk,
        // registered in the connection's protection domain.
        let (tpd, disk) = common::new_disk(&fabric);
        let tconn =
            rtgt_iser::IserTarget::accept(&fabric, req, tpd, Setup::default().target).unwrap();
        let mut tgt = common::Tgt::new(tconn, disk, &Setup::default().target.limits);
        tgt.pump();
        let mut h = Self {
            qp,
            cq,
            pd,
            _rx: rx,
            tx,
        };
        // Login straight in the operational stage.
        let mut nego = Negotiator::new(
            Role::Initiator,
            common::initiator_local(&Setup::default().initiator.limits, true),
        );
        let ctx = Context::login(Stage::Operational, true);
        let keys = encode_pairs(&nego.offers(ctx));
        let login = LoginRequest {
            next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
            current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
            isid: Isid([0x80, 0, 0, 0, 0, 9]),
            cmd_sn: Sn(1),
            ..Default::default()
        };
        h.send(
            &IserHeader::default(),
            &PduHeader::LoginRequest(login),
            &keys,
        );
        tgt.pump();
        assert!(tgt.failed.is_none(), "{:?}", tgt.failed);
        assert_eq!(tgt.conn.phase(), rtgt_iser::Phase::FullFeature);
        (h, tgt)
    }

    fn send(&mut self, iser: &IserHeader, h: &PduHeader, data: &[u8]) {
        // SAFETY: the send buffer is local-only and its previous Send completed
        // (the hostile client waits for each).
        let buf = unsafe { self.tx.bytes_mut(0, SLOT) }.unwrap();
        let n = message::write_headers(buf, iser, h, &[], data.len()).unwrap();
        buf[n..n + data.len()].copy_from_slice(data);
        let sge = self.tx.sge(0, n + data.len()).unwrap();
        self.qp
            .post_send(&SendWr {
                wr_id: 99,
                op: SendOp::Send,
                sges: &[sge],
                signaled: true,
            })
            .unwrap();
        self.drain();
    }

    fn drain(&mut self) -> Vec<WorkCompletion> {
        let mut out = Vec::new();
        let mut wc = [WorkCompletion::default(); 8];
        loop {
            let n = self.cq.poll(&mut wc).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&wc[..n]);
        }
    }

    fn read_command(&mut self, itt: u32, len: usize, read: Stag) {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        cdb[7..9].copy_from_slice(&((len / BLOCK) as u16).to_be_bytes());
        let cmd = ScsiCommand {
            final_pdu: true,
            read: true,
            itt: Itt(itt),
            expected_data_transfer_length: len as u32,
            cmd_sn: Sn(1),
            cdb,
            ..Default::default()
        };
        self.send(
            &IserHeader {
                read: Some(read),
                write: None,
            },
            &PduHeader::ScsiCommand(cmd),
            &[],
        );
    }
}

fn remote_access_failure(tgt: &common::Tgt) -> bool {
    matches!(
        tgt.failed,
        Some(IserError::Completion {
            status: WcStatus::REM_ACCESS_ERR,
            ..
        })
    )
}

#[test]
fn hostile_stags_are_rejected_without_touching_other_memory() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    let len = 8192;

    // The victim completes a read: its STag is now revoked.
    let victim = pattern(0x5a, 4 << 20);
    pair.ini
        .conn
        .data_mut(0..4 << 20)
        .unwrap()
        .copy_from_slice(&victim);
    let cmd = pair.ini.command(0x28, 0, len);
    let itt = cmd.itt;
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(0..len),
                write: None,
                immediate: 0,
            },
        )
        .unwrap();
    let stale = pair.ini.conn.task_stags(itt).0.unwrap();
    pair.settle();
    assert!(good(&pair.ini.inbox.pop_front().unwrap()));
    let expected_victim = {
        let mut v = victim.clone();
        v[..len].copy_from_slice(&pair.disk_bytes(0, len));
        v
    };
    let base = pair.ini.conn.data_area_addr();

    // 1. A hostile initiator replays the victim's revoked STag.
    let (mut h, mut tgt) = Hostile::connect(&mut pair, common::addr(1));
    h.read_command(
        1,
        len,
        Stag {
            stag: stale,
            va: base,
        },
    );
    tgt.pump();
    assert!(remote_access_failure(&tgt), "{:?}", tgt.failed);
    assert_eq!(tgt.conn.phase(), Phase::Closed);

    // 2. It uses a live STag of the victim's in-flight read (bound to the victim's
    //    connection, so useless on another).
    pair.fabric.inject(Injection::Hold {
        op: OpKind::RdmaWrite,
    });
    let cmd = pair.ini.command(0x28, 64, len);
    let vitt = cmd.itt;
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(len..2 * len),
                write: None,
                immediate: 0,
            },
        )
        .unwrap();
    let live = pair.ini.conn.task_stags(vitt).0.unwrap();
    pair.settle();
    pair.fabric.clear_injections();
    let (mut h2, mut tgt2) = Hostile::connect(&mut pair, common::addr(1));
    h2.read_command(
        2,
        len,
        Stag {
            stag: live,
            va: base + len as u64,
        },
    );
    tgt2.pump();
    assert!(remote_access_failure(&tgt2), "{:?}", tgt2.failed);
    pair.settle();
    // The victim's read completes with the right data; nothing else of its
    // memory changed.
    assert!(good(&pair.ini.inbox.pop_front().unwrap()));
    let mut expected = expected_victim.clone();
    expected[len..2 * len].copy_from_slice(&pair.disk_bytes(64 * BLOCK, len));
    assert_eq!(pair.ini.conn.data(0..4 << 20).unwrap(), &expected[..]);

    // 3. Its own region, but a range past the end (guard bytes around it stay).
    let (mut h3, mut tgt3) = Hostile::connect(&mut pair, common::addr(1));
    let mut arena = RegisteredBuffer::new(&h3.pd, 3 * len, Access::LOCAL_WRITE).unwrap();
    // SAFETY: not yet exposed to any work request.
    unsafe { arena.bytes_mut(0, 3 * len) }.unwrap().fill(0x11);
    let mut guarded = vec![0x22u8; 3 * len];
    // SAFETY: `guarded` outlives `small` (dropped at the end of the test before it);
    // it is read only after the failed operation.
    let small = unsafe {
        rtgt_iser::verbs::ProtectionDomain::register(
            &h3.pd,
            guarded.as_mut_ptr().add(len),
            len,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE,
        )
    }
    .unwrap();
    h3.read_command(
        3,
        2 * len,
        Stag {
            stag: small.rkey(),
            va: small.addr(),
        },
    );
    tgt3.pump();
    assert!(remote_access_failure(&tgt3), "{:?}", tgt3.failed);
    drop(small);
    assert!(guarded.iter().all(|&b| b == 0x22));
    // SAFETY: no work request names the arena.
    let arena_bytes = unsafe { arena.bytes(0, 3 * len) };
    assert!(arena_bytes.unwrap().iter().all(|&b| b == 0x11));

    // 4. A region without remote write rights advertised as a Read STag.
    let (mut h4, mut tgt4) = Hostile::connect(&mut pair, common::addr(1));
    let ro = RegisteredBuffer::new(&h4.pd, len, Access::LOCAL_WRITE | Access::REMOTE_READ).unwrap();
    h4.read_command(
        4,
        len,
        Stag {
            stag: ro.mr().rkey(),
            va: ro.mr().addr(),
        },
    );
    tgt4.pump();
    assert!(remote_access_failure(&tgt4), "{:?}", tgt4.failed);
    // SAFETY: no work request names the buffer.
    assert!(unsafe { ro.bytes(0, len) }.unwrap().iter().all(|&b| b == 0));

    // 5. An RDMA Write aimed straight at the target's memory.
    let (mut h5, mut tgt5) = Hostile::connect(&mut pair, common::addr(1));
    let disk_before = pair.disk_bytes(0, 4096);
    let (disk_key, disk_addr) = {
        let d = pair.tgt.disk.lock().unwrap();
        (d.mr().rkey(), d.mr().addr())
    };
    let src = h5.tx.sge(0, 4096).unwrap();
    h5.qp
        .post_send(&SendWr {
            wr_id: 5,
            op: SendOp::RdmaWrite {
                remote: RemoteAddr {
                    addr: disk_addr,
                    rkey: disk_key,
                },
            },
            sges: &[src],
            signaled: true,
        })
        .unwrap();
    let wcs = h5.drain();
    assert_eq!(
        wcs.iter().find(|w| w.wr_id == 5).map(|w| w.status),
        Some(WcStatus::REM_ACCESS_ERR)
    );
    assert_eq!(pair.disk_bytes(0, 4096), disk_before);
    tgt5.pump();

    // The victim is unaffected throughout.
    pair.settle();
    assert!(pair.ini.failed.is_none() && pair.tgt.failed.is_none());
    assert!(good(&pair.read(0, 0, 4096)));
}

#[test]
fn a_peer_exceeding_max_outstanding_unexpected_pdus_is_disconnected() {
    let mut pair = Pair::new(&Setup::default());
    let (mut h, mut tgt) = Hostile::connect(&mut pair, common::addr(1));
    // Five immediate pings against a limit of four (the target's NOP-Ins are not
    // consumed by the hostile side fast enough to matter: it never answers).
    for i in 0..5u32 {
        let nop = NopOut {
            immediate: true,
            itt: Itt(10 + i),
            ttt: Ttt::RESERVED,
            cmd_sn: Sn(1),
            ..Default::default()
        };
        h.send(&IserHeader::default(), &PduHeader::NopOut(nop), &[]);
    }
    // All five arrive before the target answers any: the fifth is one too many.
    tgt.pump();
    assert_eq!(
        tgt.failed,
        Some(IserError::Protocol(ProtocolError::UnexpectedPduLimit {
            limit: 4
        }))
    );
    assert_eq!(tgt.conn.phase(), Phase::Closed);
    assert!(
        h.drain()
            .iter()
            .all(|w| w.status != WcStatus::SUCCESS || w.wr_id == 99)
    );
}

#[test]
fn verbs_round_trip_send_window_write_read_and_a_revoked_stag() {
    let fabric = rtgt_iser::soft::SoftFabric::new();
    scenarios::verbs_round_trip(&fabric, common::addr(7));
}
