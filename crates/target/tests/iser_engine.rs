//! Issue 8's acceptance over the soft fabric through the real engine (RFC 7145 over the same
//! session code and logical units as TCP): login with RDMAExtensions, reads and writes of
//! 512 B – 1 MiB verified, immediate data, many commands outstanding, ABORT TASK during an
//! RDMA Read, a hostile initiator's STag misuse, STag invalidation at task end and at
//! teardown, and a LOGICAL UNIT RESET from a TCP session ending an iSER session's task.

mod common;
mod iser_support;

use std::time::Duration;

use iser_support::{BLOCK, Rig, good, pattern, read16, write16};
use rtgt_iser::header::{IserHeader, Stag};
use rtgt_iser::soft::{Injection, OpKind};
use rtgt_iser::verbs::{Access, MemoryRegion, ProtectionDomain, Verbs};
use rtgt_iser::{CommandIo, InitiatorConfig, Phase};
use rtgt_pdu::{Itt, Lun, NopOut, PduHeader, TaskMgmtRequest, TmfFunction, TmfResponse, Ttt};

fn addr(n: u8) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([192, 0, 2, n], 3260))
}

#[test]
fn login_with_rdma_extensions_and_the_iser_keys() {
    let rig = Rig::start(addr(1));
    let mut ini = rig.initiator(InitiatorConfig::default());
    let p = ini.login().unwrap();
    assert!(p.rdma_extensions);
    assert_eq!(p.header_digest, rtgt_pdu::negotiation::Digest::None);
    // TargetRecvDataSegmentLength: min(initiator 8192, engine 65536).
    assert_eq!(p.target_recv_data_segment_length, 8192);
    // Declarative (RFC 7145 §6.7): ours, and the engine's declaration of 8.
    assert_eq!(
        (
            p.max_outstanding_unexpected_pdus,
            p.peer_max_outstanding_unexpected_pdus
        ),
        (8, 8)
    );
    assert_eq!(ini.conn.phase(), Phase::FullFeature);
    assert!(ini.conn.remote_invalidation());
    // A command works: TEST UNIT READY.
    let cmd = ini.command(&[0; 6], 0, 0);
    ini.send(&cmd, &CommandIo::default());
    let (r, _) = ini.response(cmd.itt);
    assert!(good(&r), "{r:?}");
}

#[test]
fn a_login_without_rdma_extensions_is_refused() {
    let rig = Rig::start(addr(2));
    let mut ini = rig.initiator(InitiatorConfig::default());
    let local = rtgt_pdu::negotiation::LocalConfig {
        name: Some(iser_support::INITIATOR.into()),
        target_name: Some(iser_support::TARGET.into()),
        ..Default::default()
    };
    let err = ini.login_with(local).unwrap_err();
    assert_eq!(err, "login status INITIATOR_ERROR");
    ini.wait("the engine to close the connection", |i| {
        i.disconnected || i.failed.is_some()
    });
}

#[test]
fn reads_and_writes_from_512_bytes_to_1_mib_are_verified() {
    let rig = Rig::start(addr(3));
    let mut ini = rig.initiator(InitiatorConfig {
        data_area: 4 << 20,
        ..InitiatorConfig::default()
    });
    ini.login().unwrap();
    let mut lba = 0u64;
    for (i, len) in [512usize, 4096, 8192, 65_536, 131_072, 262_144, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(i as u8 + 1, len);
        // Data-Out by RDMA Read (no immediate data).
        let r = ini.write16(lba, &data, 0, 0);
        assert!(good(&r), "write {len}: {r:?}");
        // Data-In by RDMA Write, into another part of the data area.
        let (r, back) = ini.read16(lba, (len / BLOCK) as u32, 2 << 20);
        assert!(good(&r), "read {len}: {r:?}");
        assert_eq!(back, data, "{len} bytes read back");
        lba += (len / BLOCK) as u64;
    }
    assert!(rig.fabric.executed(OpKind::RdmaRead) >= 7);
    assert!(rig.fabric.executed(OpKind::RdmaWrite) >= 7);
}

#[test]
fn immediate_data_needs_no_rdma_read() {
    let rig = Rig::start(addr(4));
    let mut ini = rig.initiator(InitiatorConfig::default());
    ini.login().unwrap();
    let reads = rig.fabric.executed(OpKind::RdmaRead);
    let data = pattern(7, 8192);
    let r = ini.write16(100, &data, 0, 8192);
    assert!(good(&r), "{r:?}");
    assert_eq!(
        rig.fabric.executed(OpKind::RdmaRead),
        reads,
        "all data was immediate"
    );
    // Part immediate, the rest read by the target.
    let data2 = pattern(8, 32_768);
    let r = ini.write16(200, &data2, 65_536, 4096);
    assert!(good(&r), "{r:?}");
    assert!(rig.fabric.executed(OpKind::RdmaRead) > reads);
    assert_eq!(ini.read16(100, 16, 1 << 20).1, data);
    assert_eq!(ini.read16(200, 64, 1 << 20).1, data2);
}

#[test]
fn many_commands_outstanding_complete_with_their_own_data() {
    let rig = Rig::start(addr(5));
    let mut ini = rig.initiator(InitiatorConfig {
        queue_depth: 32,
        data_area: 8 << 20,
        ..InitiatorConfig::default()
    });
    ini.login().unwrap();
    const N: usize = 24;
    const LEN: usize = 65_536;
    // N writes in flight at once, then N reads.
    let mut itts = Vec::new();
    for i in 0..N {
        let at = i * LEN;
        let data = pattern(i as u8, LEN);
        ini.conn
            .data_mut(at..at + LEN)
            .unwrap()
            .copy_from_slice(&data);
        let cmd = ini.command(&write16((i * 128) as u64, 128), 0, LEN as u32);
        ini.send(
            &cmd,
            &CommandIo {
                read: None,
                write: Some(at..at + LEN),
                immediate: 0,
            },
        );
        itts.push(cmd.itt);
    }
    assert!(ini.conn.active_tasks() > 1, "several commands in flight");
    for itt in itts.drain(..) {
        let (r, _) = ini.response(itt);
        assert!(good(&r), "{r:?}");
    }
    for i in 0..N {
        let at = i * LEN;
        let cmd = ini.command(&read16((i * 128) as u64, 128), LEN as u32, 0);
        ini.send(
            &cmd,
            &CommandIo {
                read: Some(at..at + LEN),
                write: None,
                immediate: 0,
            },
        );
        itts.push(cmd.itt);
    }
    for (i, itt) in itts.into_iter().enumerate() {
        let (r, _) = ini.response(itt);
        assert!(good(&r), "{r:?}");
        let at = i * LEN;
        assert_eq!(ini.conn.data(at..at + LEN).unwrap(), pattern(i as u8, LEN));
    }
}

#[test]
fn every_task_ends_with_its_stags_invalid() {
    let rig = Rig::start(addr(6));
    let mut ini = rig.initiator(InitiatorConfig::default());
    ini.login().unwrap();
    let data = pattern(3, 16_384);
    ini.conn.data_mut(0..16_384).unwrap().copy_from_slice(&data);
    let cmd = ini.command(&write16(0, 32), 0, 16_384);
    ini.send(
        &cmd,
        &CommandIo {
            read: None,
            write: Some(0..16_384),
            immediate: 0,
        },
    );
    let (_, write_stag) = ini.conn.task_stags(cmd.itt);
    let write_stag = write_stag.expect("a write STag");
    let cmd2 = ini.command(&read16(0, 32), 16_384, 0);
    ini.send(
        &cmd2,
        &CommandIo {
            read: Some(1 << 20..(1 << 20) + 16_384),
            write: None,
            immediate: 0,
        },
    );
    let (read_stag, _) = ini.conn.task_stags(cmd2.itt);
    let read_stag = read_stag.expect("a read STag");
    assert!(good(&ini.response(cmd.itt).0));
    assert!(good(&ini.response(cmd2.itt).0));
    for stag in [write_stag, read_stag] {
        assert!(!rig.fabric.stag_is_valid(stag), "{stag:#x} still valid");
    }
    // The engine used Send with Invalidate for both responses.
    for itt in [cmd.itt, cmd2.itt] {
        let inv = ini
            .invalidated
            .iter()
            .find(|(i, _)| *i == itt)
            .and_then(|(_, s)| *s);
        assert!(inv.is_some(), "{itt:?} was not remotely invalidated");
    }
}

#[test]
fn abort_task_during_an_rdma_read_is_answered_after_the_read() {
    let rig = Rig::start(addr(7));
    let mut ini = rig.initiator(InitiatorConfig::default());
    ini.login().unwrap();
    rig.fabric.inject(Injection::Hold {
        op: OpKind::RdmaRead,
    });
    let data = pattern(9, 65_536);
    ini.conn.data_mut(0..65_536).unwrap().copy_from_slice(&data);
    let cmd = ini.command(&write16(1000, 128), 0, 65_536);
    ini.send(
        &cmd,
        &CommandIo {
            read: None,
            write: Some(0..65_536),
            immediate: 0,
        },
    );
    let (_, stag) = ini.conn.task_stags(cmd.itt);
    let stag = stag.unwrap();
    // Let the engine post its RDMA Read (held by the fabric).
    ini.idle(Duration::from_millis(100));
    let tmf = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::ABORT_TASK,
        lun: Lun::ZERO,
        itt: Itt(5000),
        referenced_task_tag: cmd.itt,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: ini.exp_stat_sn,
        ref_cmd_sn: cmd.cmd_sn,
        ..Default::default()
    };
    ini.conn
        .send_pdu(&PduHeader::TaskMgmtRequest(tmf), &[])
        .unwrap();
    ini.idle(Duration::from_millis(200));
    assert!(
        !ini.inbox
            .iter()
            .any(|p| matches!(p.header, PduHeader::TaskMgmtResponse(_))),
        "the TMF response must wait for the RDMA Read"
    );
    assert_eq!(rig.fabric.executed(OpKind::RdmaRead), 0);
    assert!(
        rig.fabric.stag_is_valid(stag),
        "the buffer is still exposed"
    );
    rig.fabric.clear_injections();
    ini.wait("the TMF response", |i| {
        i.inbox
            .iter()
            .any(|p| matches!(p.header, PduHeader::TaskMgmtResponse(_)))
    });
    let rsp = ini.inbox.pop_front().unwrap();
    let PduHeader::TaskMgmtResponse(r) = rsp.header else {
        panic!("{:?}", rsp.header)
    };
    assert_eq!(r.response, TmfResponse::FUNCTION_COMPLETE);
    assert!(!rig.fabric.stag_is_valid(stag));
    assert_eq!(ini.conn.active_tasks(), 0);
    // No SCSI Response for the aborted task; the connection goes on.
    assert!(
        !ini.inbox
            .iter()
            .any(|p| matches!(&p.header, PduHeader::ScsiResponse(s) if s.itt == cmd.itt))
    );
    let (r, _) = ini.read16(0, 8, 1 << 20);
    assert!(good(&r));
    assert!(ini.failed.is_none());
}

/// A hostile initiator advertises STags that are not its own: another connection's live
/// buffer and a made-up key. The engine's RDMA operations fail with a remote access error,
/// the hostile connection ends, the other buffer is untouched, and other sessions go on.
#[test]
fn hostile_stags_fail_the_hostile_connection_only() {
    let rig = Rig::start(addr(8));
    let mut victim = rig.logged_in(1);
    // The victim's memory, registered for remote access in its own domain.
    let vpd = rig.fabric.alloc_pd().unwrap();
    let mut secret = vec![0x5au8; 8192];
    // SAFETY: `secret` outlives the region (dropped at the end of the test, after the
    // region) and is only read after every operation that could touch it has ended.
    let vmr = unsafe {
        vpd.register(
            secret.as_mut_ptr(),
            secret.len(),
            Access::LOCAL_WRITE | Access::REMOTE_READ | Access::REMOTE_WRITE,
        )
    }
    .unwrap();
    for (n, op) in [(2u8, "read"), (3, "write")] {
        let mut hostile = rig.logged_in(n);
        let (cmd, header) = if op == "read" {
            // The engine would RDMA Write the data into the victim's memory.
            let cmd = hostile.command(&read16(0, 16), 8192, 0);
            let h = IserHeader {
                read: Some(Stag {
                    stag: vmr.rkey(),
                    va: vmr.addr(),
                }),
                write: None,
            };
            (cmd, h)
        } else {
            // The engine would RDMA Read the victim's memory onto the disk.
            let cmd = hostile.command(&write16(0, 16), 0, 8192);
            let h = IserHeader {
                read: None,
                write: Some(Stag {
                    stag: vmr.rkey(),
                    va: vmr.addr(),
                }),
            };
            (cmd, h)
        };
        let moved = (
            rig.fabric.executed(OpKind::RdmaRead),
            rig.fabric.executed(OpKind::RdmaWrite),
        );
        hostile.conn.send_command_raw(&cmd, &header).unwrap();
        hostile.wait("the engine to drop the hostile connection", |i| {
            i.disconnected || i.failed.is_some()
        });
        // The engine's RDMA operation was refused by the fabric, not carried out.
        assert_eq!(
            (
                rig.fabric.executed(OpKind::RdmaRead),
                rig.fabric.executed(OpKind::RdmaWrite)
            ),
            moved,
            "hostile {op}"
        );
        // The victim is unaffected.
        let (r, _) = victim.read16(0, 16, 0);
        assert!(good(&r), "victim after hostile {op}: {r:?}");
    }
    drop(vmr);
    assert!(
        secret.iter().all(|&b| b == 0x5a),
        "the victim's memory was touched"
    );
    // The disk was not written with the victim's bytes either.
    let (_, disk) = victim.read16(0, 16, 0);
    assert_ne!(disk, vec![0x5au8; 8192]);
    // A made-up key fails the same way.
    let mut hostile = rig.logged_in(4);
    let cmd = hostile.command(&read16(0, 1), 512, 0);
    hostile
        .conn
        .send_command_raw(
            &cmd,
            &IserHeader {
                read: Some(Stag {
                    stag: 0xdead_be00,
                    va: 0x1000,
                }),
                write: None,
            },
        )
        .unwrap();
    hostile.wait("the engine to drop the hostile connection", |i| {
        i.disconnected || i.failed.is_some()
    });
    let (r, _) = victim.read16(0, 1, 0);
    assert!(good(&r));
    assert!(victim.failed.is_none());
}

#[test]
fn teardown_invalidates_every_stag() {
    let rig = Rig::start(addr(9));
    let mut ini = rig.logged_in(1);
    // Commands whose Data-In the fabric holds: their STags stay advertised.
    rig.fabric.inject(Injection::Hold {
        op: OpKind::RdmaWrite,
    });
    let mut stags = Vec::new();
    for i in 0..8usize {
        let at = i * 65_536;
        let cmd = ini.command(&read16(0, 128), 65_536, 0);
        ini.send(
            &cmd,
            &CommandIo {
                read: Some(at..at + 65_536),
                write: None,
                immediate: 0,
            },
        );
        stags.push(ini.conn.task_stags(cmd.itt).0.unwrap());
    }
    ini.idle(Duration::from_millis(50));
    assert!(stags.iter().all(|s| rig.fabric.stag_is_valid(*s)));
    // The initiator goes away mid-flight.
    ini.conn.disconnect().unwrap();
    assert!(
        stags.iter().all(|s| !rig.fabric.stag_is_valid(*s)),
        "an STag survived the teardown"
    );
    rig.fabric.clear_injections();
    // The engine cleaned up: a new session works.
    let mut again = rig.logged_in(2);
    assert!(good(&again.read16(0, 8, 0).0));
}

#[test]
fn nop_out_ping_is_answered_over_iser() {
    let rig = Rig::start(addr(10));
    let mut ini = rig.logged_in(1);
    let nop = NopOut {
        immediate: true,
        itt: Itt(777),
        ttt: Ttt::RESERVED,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: ini.exp_stat_sn,
        ..Default::default()
    };
    ini.conn.send_pdu(&PduHeader::NopOut(nop), b"ping").unwrap();
    ini.wait("the NOP-In", |i| {
        i.inbox
            .iter()
            .any(|p| matches!(&p.header, PduHeader::NopIn(n) if n.itt == Itt(777)))
    });
    let p = ini.inbox.pop_front().unwrap();
    assert_eq!(p.data, b"ping");
}

/// A LOGICAL UNIT RESET from a TCP session ends the tasks an iSER session has on that logical
/// unit (SAM-5 §6.3.3): a write waiting for its RDMA Read gets no response and writes nothing,
/// and the iSER nexus gets the reset's unit attention.
#[test]
fn a_logical_unit_reset_over_tcp_ends_an_iser_sessions_task() {
    let iser_addr = addr(11);
    let text = format!(
        "{}\n[[portal]]\nlisten = [\"127.0.0.1:0\"]\ngroup = 2\n",
        iser_support::config_text(iser_addr)
    );
    let rig = Rig::start_with(iser_addr, &text);
    let tcp_addr = rig.engine.as_ref().unwrap().local_addrs()[0];
    let mut ini = rig.initiator(InitiatorConfig::default());
    ini.login().unwrap();
    // The iSER write's Data-Out waits in the fabric.
    rig.fabric.inject(Injection::Hold {
        op: OpKind::RdmaRead,
    });
    let data = pattern(7, 65_536);
    ini.conn.data_mut(0..65_536).unwrap().copy_from_slice(&data);
    let cmd = ini.command(&write16(2000, 128), 0, 65_536);
    ini.send(
        &cmd,
        &CommandIo {
            read: None,
            write: Some(0..65_536),
            immediate: 0,
        },
    );
    ini.idle(Duration::from_millis(100));

    let mut tcp = common::Initiator::connect(tcp_addr);
    tcp.login(&common::LoginOpts {
        target: Some(iser_support::TARGET.into()),
        ..common::LoginOpts::default()
    })
    .expect("TCP login");
    let sn = tcp.cmd_sn;
    assert_eq!(
        tcp.tmf(TmfFunction::LOGICAL_UNIT_RESET, Itt(0xFFFF_FFFF), sn),
        Some(TmfResponse::FUNCTION_COMPLETE)
    );

    rig.fabric.clear_injections();
    ini.idle(Duration::from_millis(300));
    assert!(
        !ini.inbox
            .iter()
            .any(|p| matches!(&p.header, PduHeader::ScsiResponse(s) if s.itt == cmd.itt)),
        "the reset task must not be answered"
    );
    // The next command reports the reset; then the blocks read back unwritten.
    let tur = ini.command(&[0; 6], 0, 0);
    ini.send(&tur, &CommandIo::default());
    let (r, sense) = ini.response(tur.itt);
    assert_eq!(r.status, rtgt_pdu::ScsiStatus::CHECK_CONDITION);
    assert_eq!(
        (sense[2 + 2] & 0x0F, sense[2 + 12], sense[2 + 13]),
        (6, 0x29, 0x03)
    );
    let (r, back) = ini.read16(2000, 128, 1 << 20);
    assert!(good(&r), "{r:?}");
    assert_eq!(back, vec![0u8; 65_536]);
    assert!(ini.failed.is_none());
}
