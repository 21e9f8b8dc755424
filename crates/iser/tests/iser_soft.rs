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

/// RFC 7145 §6.7 is declarative: the target sends no more unexpected PDUs
/// than the initiator declared (2 here) while the initiator may send as many
/// as the target declared (4), not the minimum of the two.
#[test]
fn each_side_sends_what_the_other_declared() {
    let mut setup = Setup::default();
    setup.initiator.limits.max_outstanding_unexpected_pdus = 2;
    let mut pair = Pair::new(&setup);
    let p = pair.login().unwrap();
    assert_eq!(
        (
            p.max_outstanding_unexpected_pdus,
            p.peer_max_outstanding_unexpected_pdus
        ),
        (2, 4)
    );
    let ping = |ttt| {
        rtgt_pdu::Pdu::new(rtgt_pdu::NopIn {
            itt: Itt::RESERVED,
            ttt: Ttt(ttt),
            stat_sn: Sn(2),
            exp_cmd_sn: Sn(1),
            max_cmd_sn: Sn(32),
            ..Default::default()
        })
    };
    pair.tgt.conn.send_owned(&ping(1)).unwrap();
    pair.tgt.conn.send_owned(&ping(2)).unwrap();
    assert_eq!(
        pair.tgt.conn.send_owned(&ping(3)),
        Err(IserError::UnexpectedCredit(2))
    );
    pair.settle_until("two target pings", |p| p.ini.inbox.len() == 2);
    // Four immediate NOP-Outs from the initiator: the target accepts them all.
    for i in 0..4u32 {
        let nop = NopOut {
            immediate: true,
            itt: Itt(2000 + i),
            ttt: Ttt::RESERVED,
            cmd_sn: pair.ini.cmd_sn,
            ..Default::default()
        };
        pair.ini
            .conn
            .send_pdu(&PduHeader::NopOut(nop), &[])
            .unwrap();
    }
    pair.settle_until("four NOP-In answers", |p| p.ini.inbox.len() == 6);
    assert!(pair.tgt.failed.is_none() && pair.ini.failed.is_none());
    // Echoing a ping returns the target's credit.
    let echo = NopOut {
        immediate: true,
        itt: Itt::RESERVED,
        ttt: Ttt(1),
        cmd_sn: pair.ini.cmd_sn,
        exp_stat_sn: Sn(2),
        ..Default::default()
    };
    pair.ini
        .conn
        .send_pdu(&PduHeader::NopOut(echo), &[])
        .unwrap();
    pair.settle();
    pair.tgt.conn.send_owned(&ping(3)).unwrap();
    pair.settle_until("the third ping", |p| p.ini.inbox.len() == 7);
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
        self.send_with_ahs(iser, h, &[], data);
    }

    fn send_with_ahs(&mut self, iser: &IserHeader, h: &PduHeader, ahs: &[u8], data: &[u8]) {
        // SAFETY: the send buffer is local-only and its previous Send completed
        // (the hostile client waits for each).
        let buf = unsafe { self.tx.bytes_mut(0, SLOT) }.unwrap();
        let n = message::write_headers(buf, iser, h, ahs, data.len()).unwrap();
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

/// Regression: `queue_depth + 2 x MaxOutstandingUnexpectedPDUs + 2` and the
/// send-queue size were computed unchecked, so a large setting panicked
/// (debug) or wrapped to a tiny buffer set (release).
#[test]
fn oversized_configurations_are_refused_not_overflowed() {
    use rtgt_iser::verbs::Listener;
    use rtgt_iser::{InitiatorConfig, IserInitiator, IserLimits, IserTarget, TargetConfig};
    use std::sync::Arc;

    let fabric = rtgt_iser::soft::SoftFabric::new();
    let at = common::addr(3);
    let mut listener = fabric.listen(at).unwrap();
    let huge = IserLimits {
        max_outstanding_unexpected_pdus: u32::MAX,
        ..IserLimits::default()
    };
    for config in [
        InitiatorConfig {
            queue_depth: u32::MAX,
            ..InitiatorConfig::default()
        },
        InitiatorConfig {
            limits: huge,
            ..InitiatorConfig::default()
        },
    ] {
        let pd = Arc::new(fabric.alloc_pd().unwrap());
        let err = IserInitiator::connect(&fabric, at, pd, config).unwrap_err();
        assert!(matches!(err, IserError::Config(_)), "{err}");
    }
    for config in [
        TargetConfig {
            queue_depth: u32::MAX,
            ..TargetConfig::default()
        },
        TargetConfig {
            limits: huge,
            ..TargetConfig::default()
        },
        TargetConfig {
            max_rdma_ops: u32::MAX,
            ..TargetConfig::default()
        },
    ] {
        let pd = Arc::new(fabric.alloc_pd().unwrap());
        let _ini = IserInitiator::connect(&fabric, at, pd, InitiatorConfig::default()).unwrap();
        let req = listener.poll_request().unwrap().unwrap();
        let pd = Arc::new(fabric.alloc_pd().unwrap());
        let err = IserTarget::accept(&fabric, req, pd, config).unwrap_err();
        assert!(matches!(err, IserError::Config(_)), "{err}");
    }
}

/// The next target event that is a PDU, copied out.
fn next_target_pdu(tgt: &mut common::Tgt) -> rtgt_pdu::Pdu {
    loop {
        match tgt.conn.poll().unwrap() {
            Some(rtgt_iser::TargetEvent::Pdu(rx)) => return tgt.conn.take_pdu(rx).unwrap(),
            Some(rtgt_iser::TargetEvent::Failed(e)) => panic!("target failed: {e}"),
            Some(_) => {}
            None => panic!("no PDU arrived"),
        }
    }
}

/// The session's answer to a command it will not run: a Reject carrying the
/// command's BHS (RFC 7143 §11.17).
fn reject(tgt: &mut common::Tgt, rejected: &PduHeader) {
    let bhs = rejected.encode(rtgt_pdu::BhsLengths::ZERO);
    let header = PduHeader::Reject(rtgt_pdu::Reject {
        reason: rtgt_pdu::RejectReason::COMMAND_NOT_SUPPORTED,
        stat_sn: Sn(1),
        exp_cmd_sn: Sn(1),
        max_cmd_sn: Sn(32),
        ..Default::default()
    });
    tgt.conn
        .send(rtgt_iser::Outbound::Pdu {
            header: &header,
            ahs: &[],
            data: &bhs,
        })
        .unwrap();
}

/// Regression: a rejected SCSI Command stayed an active task at the target
/// (its ITT then counted as a duplicate and failed the connection) and an
/// immediate one kept its MaxOutstandingUnexpectedPDUs credit for ever.
#[test]
fn a_rejected_command_ends_its_task_and_returns_its_credit() {
    let mut pair = Pair::new(&Setup::default());
    let (mut h, mut tgt) = Hostile::connect(&mut pair, common::addr(1));
    // Six rounds against a limit of four; the last reuses the first ITT.
    for round in 0..6u32 {
        let cmd = ScsiCommand {
            immediate: true,
            final_pdu: true,
            read: true,
            itt: Itt(if round == 5 { 1 } else { round + 1 }),
            expected_data_transfer_length: 4096,
            cmd_sn: Sn(1),
            ..Default::default()
        };
        let read = Stag {
            stag: 0x0abc_de01,
            va: 0x1000,
        };
        h.send(
            &IserHeader {
                read: Some(read),
                write: None,
            },
            &PduHeader::ScsiCommand(cmd),
            &[],
        );
        let pdu = next_target_pdu(&mut tgt);
        assert!(matches!(pdu.header, PduHeader::ScsiCommand(_)));
        assert_eq!(tgt.conn.active_tasks(), 1);
        reject(&mut tgt, &pdu.header);
        assert_eq!(tgt.conn.active_tasks(), 0);
    }
    while let Some(ev) = tgt.conn.poll().unwrap() {
        assert!(!matches!(ev, rtgt_iser::TargetEvent::Failed(_)), "{ev:?}");
    }
    assert_eq!(tgt.conn.phase(), Phase::FullFeature);
}

/// Regression: the initiator delivered a Reject of its SCSI Command while the
/// command's STags stayed valid (the buffer exposed to the target with no
/// task left to end it).
#[test]
fn a_rejected_command_has_its_stags_invalidated_before_the_reject_is_delivered() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    // Immediate commands, more of them than MaxOutstandingUnexpectedPDUs (4):
    // each rejected one must give its credit back.
    for _ in 0..6 {
        let mut cmd = pair.ini.command(0x28, 0, 8192);
        cmd.immediate = true;
        let itt = cmd.itt;
        pair.ini
            .conn
            .send_command(
                &cmd,
                &[],
                &CommandIo {
                    read: Some(0..8192),
                    write: None,
                    immediate: 0,
                },
            )
            .unwrap();
        let stag = pair.ini.conn.task_stags(itt).0.unwrap();
        let pdu = next_target_pdu(&mut pair.tgt);
        assert_eq!(pdu.header.itt(), itt);
        reject(&mut pair.tgt, &pdu.header);
        pair.settle();
        let first = pair.ini.inbox.pop_front();
        assert!(
            matches!(
                first.as_ref().map(|p| &p.header),
                Some(PduHeader::Reject(_))
            ),
            "{first:?} {:?}",
            pair.ini.failed
        );
        assert_eq!(pair.ini.conn.active_tasks(), 0);
        assert!(!pair.fabric.stag_is_valid(stag));
        assert!(pair.ini.conn.data_mut(0..8192).is_ok());
    }
    // The connection still works.
    assert!(good(&pair.read(0, 0, 4096)));
}

/// Regression: `poll` returned `None` after reaping a response whose delivery
/// waits for a local invalidation it had just posted, although that
/// invalidation's completion was already due: a caller taking `None` for
/// "idle" stalled (the soft fabric only moves when polled).
#[test]
fn poll_returns_none_only_when_nothing_is_pending() {
    let mut setup = Setup::default();
    setup.target.send_with_invalidate = false;
    let mut pair = Pair::new(&setup);
    pair.login().unwrap();
    assert!(!pair.ini.conn.remote_invalidation());
    let cmd = pair.ini.command(0x28, 0, 4096);
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(0..4096),
                write: None,
                immediate: 0,
            },
        )
        .unwrap();
    while pair.tgt.pump() {}
    assert!(pair.tgt.log.iter().any(|l| l.starts_with("cmd 28")));
    // The response has arrived; the read STag is invalidated locally first.
    match pair.ini.conn.poll().unwrap() {
        Some(rtgt_iser::InitiatorEvent::Pdu(rx)) => {
            assert!(matches!(rx.header, PduHeader::ScsiResponse(_)));
            pair.ini.conn.release(rx).unwrap();
        }
        other => panic!("expected the response, got {other:?}"),
    }
    assert_eq!(pair.ini.conn.active_tasks(), 0);
}

/// After a disconnect the RDMA operations still posted are flushed without a
/// `DataSent`/`SolicitedData` event; the engine learns that their buffers are
/// free from `rdma_ops_in_flight` (there was no way to tell before).
#[test]
fn buffers_of_flushed_rdma_operations_are_accounted_for() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    pair.fabric.inject(Injection::Hold {
        op: OpKind::RdmaWrite,
    });
    let cmd = pair.ini.command(0x28, 0, 8192);
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(0..8192),
                write: None,
                immediate: 0,
            },
        )
        .unwrap();
    pair.settle();
    assert!(pair.tgt.log.iter().any(|l| l.starts_with("cmd 28")));
    assert_eq!(pair.tgt.conn.rdma_ops_in_flight(), 1);
    pair.tgt.conn.disconnect().unwrap();
    assert_eq!(pair.tgt.conn.rdma_ops_in_flight(), 1, "not yet flushed");
    while let Some(ev) = pair.tgt.conn.poll().unwrap() {
        assert!(
            !matches!(
                ev,
                rtgt_iser::TargetEvent::DataSent { .. } | rtgt_iser::TargetEvent::SolicitedData(_)
            ),
            "{ev:?}"
        );
    }
    assert_eq!(pair.tgt.conn.rdma_ops_in_flight(), 0);
    pair.fabric.clear_injections();
}

/// Regression: when a command could not be sent after its windows were
/// bound, the windows' invalidation was posted but not awaited, and the
/// buffer was handed out again (`data_mut`) while a bind granting remote
/// access to it was still queued.
#[test]
fn a_command_that_could_not_be_sent_keeps_its_buffer_until_its_windows_are_invalid() {
    // As many send buffers at the initiator as receive buffers at the target,
    // so the NOP-Outs that fill the first all find a receive.
    let mut setup = Setup::default();
    setup.initiator.limits = setup.target.limits;
    let mut pair = Pair::new(&setup);
    pair.login().unwrap();
    pair.fabric.inject(Injection::Hold { op: OpKind::Send });
    // Fill every send buffer with (held) non-immediate NOP-Outs.
    let mut itt = 1000;
    loop {
        itt += 1;
        let nop = NopOut {
            itt: Itt(itt),
            ttt: Ttt::RESERVED,
            cmd_sn: pair.ini.cmd_sn,
            ..Default::default()
        };
        match pair.ini.conn.send_pdu(&PduHeader::NopOut(nop), &[]) {
            Ok(()) => {}
            Err(IserError::NoSendResources) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let cmd = pair.ini.command(0x28, 0, 8192);
    let err = pair
        .ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(0..8192),
                write: None,
                immediate: 0,
            },
        )
        .unwrap_err();
    assert_eq!(err, IserError::NoSendResources);
    assert_eq!(pair.ini.conn.active_tasks(), 0);
    // The bind and its invalidation are queued behind the held Sends.
    assert_eq!(
        pair.ini.conn.data_mut(0..8192).unwrap_err(),
        IserError::BufferInFlight
    );
    assert!(pair.ini.conn.data_mut(8192..16384).is_ok());
    pair.fabric.clear_injections();
    pair.settle();
    assert!(pair.ini.failed.is_none() && pair.tgt.failed.is_none());
    assert!(pair.ini.conn.data_mut(0..8192).is_ok());
    pair.ini.inbox.clear();
    assert!(good(&pair.read(0, 0, 4096)));
}

/// Regression: a Data-In with status whose SCSI Response found no free send
/// buffer failed after its RDMA Write had been posted; the caller's retry
/// then wrote the data twice. Now nothing is posted unless both can go.
#[test]
fn a_data_in_with_status_is_refused_whole_when_no_send_buffer_is_free() {
    let mut pair = Pair::new(&Setup::default());
    pair.login().unwrap();
    let cmd = pair.ini.command(0x28, 0, 4096);
    pair.ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: Some(0..4096),
                write: None,
                immediate: 0,
            },
        )
        .unwrap();
    let pdu = next_target_pdu(&mut pair.tgt);
    assert_eq!(pdu.header.itt(), cmd.itt);
    pair.fabric.inject(Injection::Hold { op: OpKind::Send });
    // Occupy every send buffer of the target with (held) NOP-In answers.
    let mut n = 0u32;
    loop {
        n += 1;
        let nop = rtgt_pdu::NopIn {
            itt: Itt(5000 + n),
            ttt: Ttt::RESERVED,
            ..Default::default()
        };
        match pair.tgt.conn.send(rtgt_iser::Outbound::Pdu {
            header: &PduHeader::NopIn(nop),
            ahs: &[],
            data: &[],
        }) {
            Ok(()) => {}
            Err(IserError::NoSendResources) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let sge = pair.tgt.disk.lock().unwrap().sge(0, 4096).unwrap();
    let din = rtgt_pdu::DataIn {
        final_pdu: true,
        itt: cmd.itt,
        ttt: Ttt::RESERVED,
        status: Some(rtgt_pdu::DataInStatus {
            status: rtgt_pdu::ScsiStatus::GOOD,
            stat_sn: Sn(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = rtgt_iser::Outbound::DataIn {
        header: &din,
        source: &[sge],
    };
    assert_eq!(pair.tgt.conn.send(out), Err(IserError::NoSendResources));
    assert_eq!(pair.tgt.conn.rdma_ops_in_flight(), 0, "nothing posted");
    assert_eq!(pair.tgt.conn.active_tasks(), 1);
    pair.fabric.clear_injections();
    pair.fabric.progress();
    while pair.tgt.conn.poll().unwrap().is_some() {}
    pair.tgt.conn.send(out).unwrap();
    assert_eq!(pair.tgt.conn.active_tasks(), 0);
    pair.fabric.progress();
    assert_eq!(pair.fabric.executed(OpKind::RdmaWrite), 1);
}

/// Regression: a PDU with a malformed AHS made `take_pdu` return an error
/// without failing the connection, and its receive buffer was never posted
/// again: each such PDU from a hostile initiator leaked one receive buffer.
#[test]
fn a_malformed_ahs_fails_the_connection() {
    let mut pair = Pair::new(&Setup::default());
    let (mut h, mut tgt) = Hostile::connect(&mut pair, common::addr(1));
    let nop = NopOut {
        immediate: true,
        itt: Itt(3),
        ttt: Ttt::RESERVED,
        cmd_sn: Sn(1),
        ..Default::default()
    };
    // One AHS word whose AHSLength (16) overruns TotalAHSLength (4).
    h.send_with_ahs(
        &IserHeader::default(),
        &PduHeader::NopOut(nop),
        &[0x00, 0x10, 0x01, 0x00],
        &[],
    );
    let rx = loop {
        match tgt.conn.poll().unwrap() {
            Some(rtgt_iser::TargetEvent::Pdu(rx)) => break rx,
            Some(_) => {}
            None => panic!("the NOP-Out did not arrive"),
        }
    };
    let err = tgt.conn.take_pdu(rx).unwrap_err();
    assert!(
        matches!(err, IserError::Protocol(ProtocolError::Pdu(_))),
        "{err}"
    );
    assert!(err.is_connection_fatal());
    assert_eq!(tgt.conn.phase(), Phase::Closed);
    assert!(matches!(
        tgt.conn.poll().unwrap(),
        Some(rtgt_iser::TargetEvent::Failed(IserError::Protocol(_)))
    ));
}

/// The initiator's side of the same: a target sending a malformed AHS ends
/// the connection (its STags are deallocated) instead of leaking the buffer.
#[test]
fn a_malformed_ahs_from_the_target_fails_the_initiator() {
    use rtgt_iser::verbs::Listener;
    use rtgt_iser::{InitiatorConfig, InitiatorEvent, IserInitiator};
    use std::sync::Arc;

    let fabric = rtgt_iser::soft::SoftFabric::new();
    let at = common::addr(4);
    let mut listener = fabric.listen(at).unwrap();
    let ipd = Arc::new(fabric.alloc_pd().unwrap());
    let mut ini = IserInitiator::connect(&fabric, at, ipd, InitiatorConfig::default()).unwrap();
    // A raw target: accept, then send a Login Response with a bad AHS.
    let req = listener.poll_request().unwrap().unwrap();
    let pd = fabric.alloc_pd().unwrap();
    let cq = fabric.create_cq(16).unwrap();
    let mut qp = fabric
        .create_qp(Endpoint::Incoming(req), &pd, &cq, QpCaps::default())
        .unwrap();
    qp.accept(
        &CmPrivateData {
            zero_based_va: false,
            send_with_invalidate: true,
        }
        .encode(),
    )
    .unwrap();
    assert!(matches!(
        ini.poll().unwrap(),
        Some(InitiatorEvent::Established)
    ));
    let mut tx = RegisteredBuffer::new(&pd, 256, Access::NONE).unwrap();
    // SAFETY: local-only buffer, no work request names it yet.
    let buf = unsafe { tx.bytes_mut(0, 256) }.unwrap();
    let rsp = PduHeader::LoginResponse(rtgt_pdu::LoginResponse::default());
    let n = message::write_headers(buf, &IserHeader::default(), &rsp, &[0, 0x10, 1, 0], 0).unwrap();
    qp.post_send(&SendWr {
        wr_id: 1,
        op: SendOp::Send,
        sges: &[tx.sge(0, n).unwrap()],
        signaled: true,
    })
    .unwrap();
    let rx = match ini.poll().unwrap() {
        Some(InitiatorEvent::Pdu(rx)) => rx,
        other => panic!("expected the Login Response, got {other:?}"),
    };
    let err = ini.take_pdu(rx).unwrap_err();
    assert!(
        matches!(err, IserError::Protocol(ProtocolError::Pdu(_))),
        "{err}"
    );
    assert_eq!(ini.phase(), Phase::Closed);
    assert!(matches!(
        ini.poll().unwrap(),
        Some(InitiatorEvent::Failed(_))
    ));
    drop(qp);
}
