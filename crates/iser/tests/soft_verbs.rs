//! The soft fabric behaves like an RC HCA: STag checks, flushing on error,
//! receiver-not-ready, Send ordering, injected failures.

use rtgt_iser::memory::RegisteredBuffer;
use rtgt_iser::soft::{Injection, OpKind, SoftConfig, SoftCq, SoftFabric, SoftMr, SoftPd, SoftQp};
use rtgt_iser::verbs::{
    Access, CmEvent, CompletionQueue, Endpoint, Listener, MemoryRegion, ProtectionDomain, QpCaps,
    QpState, QueuePair, RemoteAddr, SendOp, SendWr, Verbs, WcOpcode, WcStatus, WorkCompletion,
};

struct Side {
    pd: SoftPd,
    cq: SoftCq,
    qp: SoftQp,
    buf: RegisteredBuffer<SoftMr>,
}

fn pair(fabric: &SoftFabric, remote: Access) -> (Side, Side) {
    let addr = "192.0.2.9:3260".parse().unwrap();
    let mut l = fabric.listen(addr).unwrap();
    let ipd = fabric.alloc_pd().unwrap();
    let icq = fabric.create_cq(64).unwrap();
    let mut iqp = fabric
        .create_qp(Endpoint::Outgoing(addr), &ipd, &icq, QpCaps::default())
        .unwrap();
    iqp.connect(b"").unwrap();
    let req = l.poll_request().unwrap().unwrap();
    let tpd = fabric.alloc_pd().unwrap();
    let tcq = fabric.create_cq(64).unwrap();
    let mut tqp = fabric
        .create_qp(Endpoint::Incoming(req), &tpd, &tcq, QpCaps::default())
        .unwrap();
    tqp.accept(b"ok").unwrap();
    assert_eq!(
        iqp.poll_cm_event().unwrap(),
        Some(CmEvent::Established {
            private_data: b"ok".to_vec()
        })
    );
    let ibuf = RegisteredBuffer::new(&ipd, 4096, Access::LOCAL_WRITE | remote).unwrap();
    let tbuf = RegisteredBuffer::new(&tpd, 4096, Access::LOCAL_WRITE).unwrap();
    (
        Side {
            pd: ipd,
            cq: icq,
            qp: iqp,
            buf: ibuf,
        },
        Side {
            pd: tpd,
            cq: tcq,
            qp: tqp,
            buf: tbuf,
        },
    )
}

fn drain(cq: &SoftCq) -> Vec<WorkCompletion> {
    let mut out = Vec::new();
    let mut wc = [WorkCompletion::default(); 8];
    loop {
        let n = cq.poll(&mut wc).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&wc[..n]);
    }
}

fn write(t: &mut Side, i: &Side, rkey: u32, addr: u64, len: u32) -> WcStatus {
    let sge = t.buf.sge(0, len as usize).unwrap();
    t.qp.post_send(&SendWr {
        wr_id: 1,
        op: SendOp::RdmaWrite {
            remote: RemoteAddr { addr, rkey },
        },
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    let _ = i;
    drain(&t.cq).first().map(|w| w.status).unwrap()
}

#[test]
fn rdma_write_checks_key_range_and_rights() {
    let fabric = SoftFabric::new();
    let (i, mut t) = pair(&fabric, Access::REMOTE_WRITE);
    let (k, a) = (i.buf.mr().rkey(), i.buf.mr().addr());
    assert_eq!(write(&mut t, &i, k, a, 4096), WcStatus::SUCCESS);
    let _ = (k, a);
    for (wrong_key, offset, len) in [(true, 0i64, 16u32), (false, 4090, 16), (false, -1, 16)] {
        let fabric = SoftFabric::new();
        let (i, mut t) = pair(&fabric, Access::REMOTE_WRITE);
        let k2 = i.buf.mr().rkey();
        let key = if wrong_key { k2 ^ 0x01 } else { k2 };
        let addr = i.buf.mr().addr().wrapping_add_signed(offset);
        assert_eq!(write(&mut t, &i, key, addr, len), WcStatus::REM_ACCESS_ERR);
        assert_eq!(t.qp.state(), QpState::Err);
        // SAFETY: no operation names the buffer any more.
        let bytes = unsafe { i.buf.bytes(0, 4096) };
        assert!(bytes.unwrap().iter().all(|&b| b == 0));
    }
    // Read-only region: writes are refused.
    let fabric = SoftFabric::new();
    let (i, mut t) = pair(&fabric, Access::REMOTE_READ);
    assert_eq!(
        write(&mut t, &i, i.buf.mr().rkey(), i.buf.mr().addr(), 8),
        WcStatus::REM_ACCESS_ERR
    );
}

#[test]
fn an_error_flushes_outstanding_work_requests() {
    let fabric = SoftFabric::new();
    let (i, mut t) = pair(&fabric, Access::REMOTE_WRITE);
    t.qp.post_recv(50, &[t.buf.sge(0, 64).unwrap()]).unwrap();
    let sge = t.buf.sge(0, 8).unwrap();
    for id in 1..=3 {
        t.qp.post_send(&SendWr {
            wr_id: id,
            op: SendOp::RdmaWrite {
                remote: RemoteAddr {
                    addr: 0,
                    rkey: 0xdead_beef,
                },
            },
            sges: &[sge],
            signaled: true,
        })
        .unwrap();
    }
    let wcs = drain(&t.cq);
    let by_id = |id| wcs.iter().find(|w| w.wr_id == id).unwrap().status;
    assert_eq!(by_id(1), WcStatus::REM_ACCESS_ERR);
    assert_eq!(by_id(2), WcStatus::WR_FLUSH_ERR);
    assert_eq!(by_id(3), WcStatus::WR_FLUSH_ERR);
    assert_eq!(by_id(50), WcStatus::WR_FLUSH_ERR);
    // Posting in the error state completes with a flush at once.
    t.qp.post_send(&SendWr {
        wr_id: 9,
        op: SendOp::Send,
        sges: &[sge],
        signaled: false,
    })
    .unwrap();
    assert_eq!(drain(&t.cq)[0].status, WcStatus::WR_FLUSH_ERR);
    drop(i);
}

#[test]
fn sends_arrive_in_order_and_need_a_receive() {
    let fabric = SoftFabric::with_config(SoftConfig {
        rnr_retry: Some(2),
        rnr_timer: std::time::Duration::ZERO,
    });
    let (mut i, mut t) = pair(&fabric, Access::NONE);
    for k in 0..3u64 {
        i.qp.post_recv(k, &[i.buf.sge(k as usize * 16, 16).unwrap()])
            .unwrap();
    }
    for k in 0..3u8 {
        // SAFETY: the send buffer range is not named by an outstanding request.
        unsafe { t.buf.bytes_mut(k as usize * 8, 8) }
            .unwrap()
            .fill(k + 1);
    }
    for k in 0..3u64 {
        let sge = t.buf.sge(k as usize * 8, 8).unwrap();
        t.qp.post_send(&SendWr {
            wr_id: k,
            op: SendOp::Send,
            sges: &[sge],
            signaled: true,
        })
        .unwrap();
    }
    let recvs = drain(&i.cq);
    assert_eq!(recvs.iter().map(|w| w.wr_id).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        recvs
            .iter()
            .all(|w| w.opcode == WcOpcode::RECV && w.byte_len == 8)
    );
    for k in 0..3usize {
        // SAFETY: the receives completed.
        let got = unsafe { i.buf.bytes(k * 16, 8) };
        assert_eq!(got.unwrap(), &[k as u8 + 1; 8]);
    }
    // No receive posted: receiver-not-ready retries, then the error.
    let sge = t.buf.sge(0, 8).unwrap();
    t.qp.post_send(&SendWr {
        wr_id: 7,
        op: SendOp::Send,
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(drain(&t.cq).into_iter().filter(|w| w.wr_id == 7));
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(seen.last().unwrap().status, WcStatus::RNR_RETRY_EXC_ERR);
    assert_eq!(t.qp.state(), QpState::Err);
    let _ = &mut i.pd;
}

#[test]
fn receive_too_small_is_a_length_error_on_both_sides() {
    let fabric = SoftFabric::new();
    let (i, mut t) = pair(&fabric, Access::NONE);
    let mut iq = i.qp;
    iq.post_recv(1, &[i.buf.sge(0, 4).unwrap()]).unwrap();
    let sge = t.buf.sge(0, 8).unwrap();
    t.qp.post_send(&SendWr {
        wr_id: 2,
        op: SendOp::Send,
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    assert_eq!(drain(&t.cq)[0].status, WcStatus::REM_INV_REQ_ERR);
    assert_eq!(drain(&i.cq)[0].status, WcStatus::LOC_LEN_ERR);
    assert_eq!(iq.state(), QpState::Err);
}

#[test]
fn memory_windows_are_bound_to_their_queue_pair_and_revoked_by_invalidation() {
    let fabric = SoftFabric::new();
    let (mut i, mut t) = pair(&fabric, Access::MW_BIND);
    let mut mw = i.pd.alloc_mw().unwrap();
    let rkey =
        i.qp.bind_mw(
            3,
            &mut mw,
            i.buf.mr(),
            1024,
            1024,
            Access::REMOTE_WRITE,
            true,
        )
        .unwrap();
    assert_eq!(drain(&i.cq)[0].opcode, WcOpcode::BIND_MW);
    assert!(fabric.stag_is_valid(rkey));
    let a = i.buf.mr().addr() + 1024;
    assert_eq!(write(&mut t, &i, rkey, a, 1024), WcStatus::SUCCESS);
    // Send with Invalidate revokes it at the receiver.
    i.qp.post_recv(4, &[i.buf.sge(0, 64).unwrap()]).unwrap();
    let sge = t.buf.sge(0, 8).unwrap();
    t.qp.post_send(&SendWr {
        wr_id: 5,
        op: SendOp::SendWithInvalidate { rkey },
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    let r = drain(&i.cq);
    assert_eq!(r[0].invalidated_rkey, Some(rkey));
    assert!(!fabric.stag_is_valid(rkey));
    assert_eq!(drain(&t.cq)[0].wr_id, 5);
    assert_eq!(write(&mut t, &i, rkey, a, 8), WcStatus::REM_ACCESS_ERR);
}

#[test]
fn injected_failures_and_holds() {
    let fabric = SoftFabric::new();
    let (i, mut t) = pair(&fabric, Access::REMOTE_WRITE);
    fabric.inject(Injection::Hold {
        op: OpKind::RdmaWrite,
    });
    let sge = t.buf.sge(0, 8).unwrap();
    let remote = RemoteAddr {
        addr: i.buf.mr().addr(),
        rkey: i.buf.mr().rkey(),
    };
    t.qp.post_send(&SendWr {
        wr_id: 1,
        op: SendOp::RdmaWrite { remote },
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    assert!(drain(&t.cq).is_empty());
    fabric.clear_injections();
    assert_eq!(drain(&t.cq)[0].status, WcStatus::SUCCESS);
    fabric.inject(Injection::Fail {
        op: OpKind::RdmaWrite,
        skip: 1,
        status: WcStatus::RETRY_EXC_ERR,
    });
    t.qp.post_send(&SendWr {
        wr_id: 2,
        op: SendOp::RdmaWrite { remote },
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    t.qp.post_send(&SendWr {
        wr_id: 3,
        op: SendOp::RdmaWrite { remote },
        sges: &[sge],
        signaled: true,
    })
    .unwrap();
    let wcs = drain(&t.cq);
    assert_eq!(wcs[0].status, WcStatus::SUCCESS);
    assert_eq!(wcs[1].status, WcStatus::RETRY_EXC_ERR);
    // Registration with REMOTE_WRITE needs LOCAL_WRITE.
    let mut x = [0u8; 8];
    // SAFETY: `x` outlives the (failed) registration attempt.
    let r = unsafe { i.pd.register(x.as_mut_ptr(), 8, Access::REMOTE_WRITE) };
    assert!(r.is_err());
}
