//! Issue 8's acceptance scenarios that need nothing from the fabric beyond
//! the verbs, written once for any [`Verbs`] backend: the soft-fabric suite
//! (`iser_soft.rs`) runs them on every test run, the hardware suite
//! (`iser_rdma.rs`) over real RDMA devices. Where the soft fabric can say
//! more (operations executed, STag validity) the [`Probe`] answers and the
//! scenario checks it; on hardware those checks are skipped.
//!
//! Each scenario takes a factory making a connected [`Pair`] for a [`Setup`].

use std::net::SocketAddr;
use std::time::Instant;

use rtgt_iser::memory::RegisteredBuffer;
use rtgt_iser::soft::OpKind;
use rtgt_iser::verbs::{
    Access, CmEvent, CompletionQueue, ConnectRequest, Endpoint, Listener, MemoryRegion,
    ProtectionDomain, QpCaps, QpState, QueuePair, RemoteAddr, SendOp, SendWr, Verbs, WcOpcode,
    WcStatus, WorkCompletion,
};
use rtgt_iser::{CommandIo, InitiatorConfig, IserError, Phase, ProtocolError};
use rtgt_pdu::{Itt, NopOut, PduHeader, Ttt};

use super::{BLOCK, HANG_GUARD, Pair, Probe, Setup, good, pattern};

/// Login with RDMAExtensions=Yes enters iSER full feature phase on both
/// sides with the negotiated iSER keys; a command works afterwards.
pub fn login_with_rdma_extensions<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    let p = pair.login().unwrap();
    assert!(p.rdma_extensions);
    assert_eq!(p.target_recv_data_segment_length, 8192);
    // MaxOutstandingUnexpectedPDUs is declarative (RFC 7145 §6.7): the
    // initiator declared 8 (its default), the target 4.
    assert_eq!(
        (
            p.max_outstanding_unexpected_pdus,
            p.peer_max_outstanding_unexpected_pdus
        ),
        (8, 4)
    );
    let mut t = pair.tgt.params.clone().unwrap();
    assert_eq!(
        (
            t.max_outstanding_unexpected_pdus,
            t.peer_max_outstanding_unexpected_pdus
        ),
        (4, 8)
    );
    // Everything else both sides agree on.
    core::mem::swap(
        &mut t.max_outstanding_unexpected_pdus,
        &mut t.peer_max_outstanding_unexpected_pdus,
    );
    assert_eq!(t, p);
    assert_eq!(pair.tgt.conn.phase(), Phase::FullFeature);
    assert!(pair.ini.conn.remote_invalidation());
    // A command after login works.
    let r = pair.read(0, 0, BLOCK);
    assert!(good(&r));
}

/// A login that ends without RDMAExtensions=Yes fails the connection.
pub fn login_without_rdma_extensions<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let setup = Setup {
        initiator_rdma: false,
        ..Setup::default()
    };
    let mut pair = make(&setup);
    let err = pair.login().unwrap_err();
    assert_eq!(
        err,
        IserError::Protocol(ProtocolError::RdmaExtensionsNotNegotiated)
    );
    assert_eq!(pair.tgt.conn.phase(), Phase::Closed);
    pair.settle_until("the initiator to see the connection end", |p| {
        p.ini.disconnected || p.ini.failed.is_some()
    });
}

/// Writes then reads of 512 B – 1 MiB, the data checked on both sides.
pub fn reads_and_writes_512_bytes_to_1_mib<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    pair.login().unwrap();
    let mut lba = 0u32;
    for (i, len) in [512usize, 4096, 8192, 65536, 262_144 + 512, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(i as u8 + 1, len);
        pair.ini
            .conn
            .data_mut(0..len)
            .unwrap()
            .copy_from_slice(&data);
        let imm = len.min(8192);
        let w = pair.write(lba, 0, len, imm);
        assert!(good(&w), "write of {len}");
        assert_eq!(
            pair.disk_bytes(lba as usize * BLOCK, len),
            data,
            "disk after write of {len}"
        );
        let at = 2 << 20;
        pair.ini.conn.data_mut(at..at + len).unwrap().fill(0xee);
        let r = pair.read(lba, at, len);
        assert!(good(&r), "read of {len}");
        assert_eq!(
            pair.ini.conn.data(at..at + len).unwrap(),
            &data[..],
            "read back {len}"
        );
        lba += (len / BLOCK) as u32;
    }
    assert_eq!(pair.ini.conn.active_tasks(), 0);
    pair.settle_until("the target to retire its tasks", |p| {
        p.tgt.conn.active_tasks() == 0
    });
}

/// Immediate data lands without an RDMA Read; the rest of a partly
/// immediate write comes by one RDMA Read from the Write STag.
pub fn immediate_data<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    pair.login().unwrap();
    let data = pattern(9, 8192);
    pair.ini
        .conn
        .data_mut(0..8192)
        .unwrap()
        .copy_from_slice(&data);
    let reads_before = pair.fabric.executed(OpKind::RdmaRead);
    let w = pair.write(100, 0, 8192, 8192);
    assert!(good(&w));
    assert_eq!(pair.fabric.executed(OpKind::RdmaRead), reads_before);
    assert_eq!(pair.disk_bytes(100 * BLOCK, 8192), data);
    // Partly immediate: the rest comes by one RDMA Read from the Write STag.
    let data = pattern(10, 3 * 8192);
    pair.ini
        .conn
        .data_mut(0..data.len())
        .unwrap()
        .copy_from_slice(&data);
    let w = pair.write(200, 0, data.len(), 4096);
    assert!(good(&w));
    assert_eq!(
        pair.fabric.executed(OpKind::RdmaRead),
        reads_before.map(|n| n + 1)
    );
    assert_eq!(pair.disk_bytes(200 * BLOCK, data.len()), data);
}

/// Immediate data above the negotiated segment limit is refused before
/// anything is sent.
pub fn immediate_data_above_the_limit<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    pair.login().unwrap();
    let cmd = pair.ini.command(0x2a, 0, 16384);
    let err = pair
        .ini
        .conn
        .send_command(
            &cmd,
            &[],
            &CommandIo {
                read: None,
                write: Some(0..16384),
                immediate: 16384,
            },
        )
        .unwrap_err();
    assert!(matches!(err, IserError::SegmentTooLong { len: 16384, .. }));
}

/// 16 writes in flight together, then 16 reads, each with its own data.
pub fn many_commands_outstanding<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    pair.login().unwrap();
    let n = 16usize;
    let len = 16 * 1024;
    // Writes first, all in flight together.
    for i in 0..n {
        let data = pattern(i as u8, len);
        pair.ini
            .conn
            .data_mut(i * len..(i + 1) * len)
            .unwrap()
            .copy_from_slice(&data);
        let cmd = pair.ini.command(0x2a, (i * len / BLOCK) as u32, len);
        pair.ini
            .conn
            .send_command(
                &cmd,
                &[],
                &CommandIo {
                    read: None,
                    write: Some(i * len..(i + 1) * len),
                    immediate: 0,
                },
            )
            .unwrap();
    }
    assert_eq!(pair.ini.conn.active_tasks(), n);
    // In-flight buffers cannot be touched.
    assert_eq!(
        pair.ini.conn.data(0..16).unwrap_err(),
        IserError::BufferInFlight
    );
    pair.settle_until("16 write responses", |p| p.ini.inbox.len() == n);
    pair.settle();
    assert_eq!(pair.ini.inbox.len(), n);
    assert!(pair.ini.inbox.iter().all(good));
    pair.ini.inbox.clear();
    // Then reads of the same blocks into other buffers, all in flight together.
    let base = 2 << 20;
    for i in 0..n {
        let cmd = pair.ini.command(0x28, (i * len / BLOCK) as u32, len);
        let at = base + (n - 1 - i) * len;
        pair.ini
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
            .unwrap();
    }
    pair.settle_until("16 read responses", |p| p.ini.inbox.len() == n);
    pair.settle();
    assert_eq!(pair.ini.inbox.len(), n);
    for i in 0..n {
        let at = base + (n - 1 - i) * len;
        assert_eq!(
            pair.ini.conn.data(at..at + len).unwrap(),
            &pattern(i as u8, len)[..]
        );
    }
}

/// With and without Send with Invalidate, every task's STags are invalid
/// when its response is delivered: remotely invalidated (the receive names
/// the STag) or locally.
pub fn stags_end_invalid_after_every_task<V: Verbs + Probe>(
    mut make: impl FnMut(&Setup) -> Pair<V>,
) {
    for sie in [true, false] {
        let setup = Setup {
            initiator: InitiatorConfig {
                send_with_invalidate: sie,
                ..Setup::default().initiator
            },
            ..Setup::default()
        };
        let mut pair = make(&setup);
        pair.login().unwrap();
        assert_eq!(pair.ini.conn.remote_invalidation(), sie);
        let cmd = pair.ini.command(0x28, 0, 4096);
        let itt = cmd.itt;
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
        let (read_stag, write_stag) = pair.ini.conn.task_stags(itt);
        let read_stag = read_stag.expect("a read STag");
        assert_eq!(write_stag, None);
        pair.fabric.progress();
        assert_ne!(pair.fabric.stag_is_valid(read_stag), Some(false));
        let local_before = pair.fabric.executed(OpKind::LocalInvalidate);
        pair.settle_until("the read response", |p| !p.ini.inbox.is_empty());
        pair.settle();
        assert!(good(&pair.ini.inbox.pop_front().unwrap()));
        assert_ne!(
            pair.fabric.stag_is_valid(read_stag),
            Some(true),
            "sie={sie}"
        );
        let remote = pair
            .ini
            .invalidated
            .iter()
            .find(|(i, _)| *i == itt)
            .unwrap()
            .1;
        if sie {
            assert_eq!(remote, Some(read_stag));
            assert_eq!(pair.fabric.executed(OpKind::LocalInvalidate), local_before);
        } else {
            assert_eq!(remote, None);
            assert_eq!(
                pair.fabric.executed(OpKind::LocalInvalidate),
                local_before.map(|n| n + 1)
            );
        }
        // A write with solicited data: its Write STag also ends invalid.
        let w = pair.ini.command(0x2a, 8, 8192);
        let witt = w.itt;
        pair.ini
            .conn
            .send_command(
                &w,
                &[],
                &CommandIo {
                    read: None,
                    write: Some(0..8192),
                    immediate: 512,
                },
            )
            .unwrap();
        let ws = pair.ini.conn.task_stags(witt).1.expect("a write STag");
        pair.settle_until("the write response", |p| !p.ini.inbox.is_empty());
        pair.settle();
        assert!(good(&pair.ini.inbox.pop_front().unwrap()));
        assert_ne!(pair.fabric.stag_is_valid(ws), Some(true));
        assert_eq!(pair.ini.conn.task_stags(witt), (None, None));
    }
}

/// The optional iSER Hello exchange after login (RFC 7145 §5.1.3).
pub fn hello_exchange<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let setup = Setup {
        initiator: InitiatorConfig {
            hello: true,
            ird: 4,
            ..Setup::default().initiator
        },
        ..Setup::default()
    };
    let mut pair = make(&setup);
    pair.login().unwrap();
    pair.settle_until("the HelloReply", |p| p.ini.hello.is_some());
    let reply = pair.ini.hello.expect("HelloReply");
    assert!(!reply.reject);
    assert_eq!(reply.current_version, 10);
    assert_eq!(reply.ord, 4);
    assert!(good(&pair.read(0, 0, 512)));
}

/// The initiator keeps to the target's MaxOutstandingUnexpectedPDUs.
pub fn unexpected_pdu_credit<V: Verbs + Probe>(make: impl FnOnce(&Setup) -> Pair<V>) {
    let mut pair = make(&Setup::default());
    pair.login().unwrap();
    for i in 0..4u32 {
        let nop = NopOut {
            immediate: true,
            itt: Itt(1000 + i),
            ttt: Ttt::RESERVED,
            cmd_sn: pair.ini.cmd_sn,
            ..Default::default()
        };
        pair.ini
            .conn
            .send_pdu(&PduHeader::NopOut(nop), b"ping")
            .unwrap();
    }
    let fifth = NopOut {
        immediate: true,
        itt: Itt(1004),
        ttt: Ttt::RESERVED,
        cmd_sn: pair.ini.cmd_sn,
        ..Default::default()
    };
    assert_eq!(
        pair.ini.conn.send_pdu(&PduHeader::NopOut(fifth), &[]),
        Err(IserError::UnexpectedCredit(4))
    );
    pair.settle_until("four NOP-Ins", |p| p.ini.inbox.len() == 4);
    pair.settle();
    assert_eq!(pair.ini.inbox.len(), 4);
    assert_eq!(pair.ini.inbox[0].data, b"ping");
    pair.ini
        .conn
        .send_pdu(&PduHeader::NopOut(fifth), &[])
        .unwrap();
}

/// The next completion of `cq`, waiting up to [`HANG_GUARD`].
fn next_wc<C: CompletionQueue>(cq: &C, what: &str) -> WorkCompletion {
    let deadline = Instant::now() + HANG_GUARD;
    let mut wc = [WorkCompletion::default(); 1];
    loop {
        if cq.poll(&mut wc).unwrap() == 1 {
            return wc[0];
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// The next connection-manager event of `qp`, waiting up to [`HANG_GUARD`].
fn next_cm<Q: QueuePair>(qp: &mut Q, what: &str) -> CmEvent {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(ev) = qp.poll_cm_event().unwrap() {
            return ev;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// The verbs themselves, below iSER: connection setup with private data
/// both ways, a receive posted before connecting, Send, a type 2 window
/// bound over initiator memory, RDMA Write and Read through it, local
/// invalidation, and a Write through the revoked STag failing with a remote
/// access error that puts the queue pair in the error state (after which
/// work requests are flushed) without touching the memory.
pub fn verbs_round_trip<V: Verbs + Probe>(fabric: &V, at: SocketAddr) {
    const LEN: usize = 4096;
    let mut listener = fabric.listen(at).unwrap();
    // Initiator: a receive posted before connecting.
    let ipd = fabric.alloc_pd().unwrap();
    let icq = fabric.create_cq(64).unwrap();
    let mut iqp = fabric
        .create_qp(Endpoint::Outgoing(at), &ipd, &icq, QpCaps::default())
        .unwrap();
    assert_eq!(iqp.state(), QpState::Init);
    let ibuf = RegisteredBuffer::new(&ipd, 4 * LEN, Access::LOCAL_WRITE | Access::MW_BIND).unwrap();
    iqp.post_recv(1, &[ibuf.sge(0, 256).unwrap()]).unwrap();
    iqp.connect(b"hello").unwrap();
    // Target: the request carries the initiator's private data (a
    // transport may pad it), the reply the target's.
    let deadline = Instant::now() + HANG_GUARD;
    let req = loop {
        if let Some(r) = listener.poll_request().unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline, "no connection request");
        std::thread::yield_now();
    };
    assert_eq!(req.private_data().get(..5), Some(&b"hello"[..]));
    let tpd = fabric.alloc_pd().unwrap();
    let tcq = fabric.create_cq(64).unwrap();
    let mut tqp = fabric
        .create_qp(Endpoint::Incoming(req), &tpd, &tcq, QpCaps::default())
        .unwrap();
    let mut tbuf = RegisteredBuffer::new(&tpd, 4 * LEN, Access::LOCAL_WRITE).unwrap();
    tqp.accept(b"welcome").unwrap();
    match next_cm(&mut iqp, "the initiator's Established") {
        CmEvent::Established { private_data } => {
            assert_eq!(private_data.get(..7), Some(&b"welcome"[..]));
        }
        other => panic!("initiator got {other:?}"),
    }
    assert!(matches!(
        next_cm(&mut tqp, "the target's Established"),
        CmEvent::Established { .. }
    ));
    assert_eq!(iqp.state(), QpState::Rts);
    assert_eq!(tqp.state(), QpState::Rts);

    // Send, target to initiator, into the receive posted before connecting.
    // SAFETY: no work request names the target buffer yet.
    unsafe { tbuf.bytes_mut(0, 4) }
        .unwrap()
        .copy_from_slice(b"ping");
    tqp.post_send(&SendWr {
        wr_id: 7,
        op: SendOp::Send,
        sges: &[tbuf.sge(0, 4).unwrap()],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&tcq, "the Send's completion");
    assert_eq!(
        (wc.wr_id, wc.status, wc.opcode),
        (7, WcStatus::SUCCESS, WcOpcode::SEND)
    );
    let wc = next_wc(&icq, "the receive");
    assert_eq!(
        (wc.wr_id, wc.status, wc.opcode, wc.byte_len),
        (1, WcStatus::SUCCESS, WcOpcode::RECV, 4)
    );
    // SAFETY: the receive completed and nothing else writes these bytes.
    assert_eq!(unsafe { ibuf.bytes(0, 4) }.unwrap(), b"ping");

    // A type 2 window over the initiator's second page.
    let mut mw = ipd.alloc_mw().unwrap();
    let stag = iqp
        .bind_mw(
            2,
            &mut mw,
            ibuf.mr(),
            LEN,
            LEN,
            Access::REMOTE_WRITE | Access::REMOTE_READ,
            true,
        )
        .unwrap();
    let wc = next_wc(&icq, "the bind");
    assert_eq!((wc.wr_id, wc.status), (2, WcStatus::SUCCESS));
    let window = RemoteAddr {
        addr: ibuf.mr().addr() + LEN as u64,
        rkey: stag,
    };

    // RDMA Write through the window, then Read it back elsewhere.
    let data = pattern(0x5a, LEN);
    // SAFETY: no work request names this part of the target buffer.
    unsafe { tbuf.bytes_mut(0, LEN) }
        .unwrap()
        .copy_from_slice(&data);
    tqp.post_send(&SendWr {
        wr_id: 8,
        op: SendOp::RdmaWrite { remote: window },
        sges: &[tbuf.sge(0, LEN).unwrap()],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&tcq, "the RDMA Write");
    assert_eq!(
        (wc.wr_id, wc.status, wc.opcode),
        (8, WcStatus::SUCCESS, WcOpcode::RDMA_WRITE)
    );
    // SAFETY: the Write completed; the only peer (the target above) posts
    // nothing that writes the window while the slice lives.
    assert_eq!(unsafe { ibuf.bytes(LEN, LEN) }.unwrap(), &data[..]);
    tqp.post_send(&SendWr {
        wr_id: 9,
        op: SendOp::RdmaRead { remote: window },
        sges: &[tbuf.sge(2 * LEN, LEN).unwrap()],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&tcq, "the RDMA Read");
    assert_eq!(
        (wc.wr_id, wc.status, wc.opcode, wc.byte_len),
        (9, WcStatus::SUCCESS, WcOpcode::RDMA_READ, LEN as u32)
    );
    // SAFETY: the Read completed; nothing else writes these bytes.
    assert_eq!(unsafe { tbuf.bytes(2 * LEN, LEN) }.unwrap(), &data[..]);

    // Invalidate the window locally; a Write through it then fails.
    iqp.post_send(&SendWr {
        wr_id: 3,
        op: SendOp::LocalInvalidate { rkey: stag },
        sges: &[],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&icq, "the local invalidation");
    assert_eq!(
        (wc.wr_id, wc.status, wc.opcode),
        (3, WcStatus::SUCCESS, WcOpcode::LOCAL_INV)
    );
    assert_ne!(fabric.stag_is_valid(stag), Some(true));
    // SAFETY: no work request names this part of the target buffer.
    unsafe { tbuf.bytes_mut(0, LEN) }.unwrap().fill(0xff);
    tqp.post_send(&SendWr {
        wr_id: 10,
        op: SendOp::RdmaWrite { remote: window },
        sges: &[tbuf.sge(0, LEN).unwrap()],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&tcq, "the refused RDMA Write");
    assert_eq!((wc.wr_id, wc.status), (10, WcStatus::REM_ACCESS_ERR));
    assert_eq!(tqp.state(), QpState::Err);
    // SAFETY: the window is invalid; nothing can write these bytes now.
    assert_eq!(unsafe { ibuf.bytes(LEN, LEN) }.unwrap(), &data[..]);
    // Work requests on a queue pair in error are flushed.
    tqp.post_send(&SendWr {
        wr_id: 11,
        op: SendOp::Send,
        sges: &[tbuf.sge(0, 4).unwrap()],
        signaled: true,
    })
    .unwrap();
    let wc = next_wc(&tcq, "the flushed Send");
    assert_eq!((wc.wr_id, wc.status), (11, WcStatus::WR_FLUSH_ERR));
    tqp.disconnect().unwrap();
    assert_eq!(
        next_cm(&mut iqp, "the initiator's Disconnected"),
        CmEvent::Disconnected
    );
    // Teardown order does not matter: each object keeps what it needs.
    drop((listener, ipd, tpd));
    drop((mw, ibuf, tbuf));
    drop((iqp, tqp, icq, tcq));
}
