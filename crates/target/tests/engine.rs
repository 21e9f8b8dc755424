//! The engine on loopback, driven by a small initiator (and libiscsi's tools where installed):
//! login with and without CHAP and mutual CHAP, digests on and off, discovery, MC/S across
//! reactors, session reinstatement, task management during I/O, NOP timeouts, file backends on
//! both I/O engines, and a clean shutdown that asks initiators to log out.

mod common;

use std::time::Duration;

use common::{Initiator, LoginOpts, TARGET, config, config_with, options};
use rtgt_pdu::{AsyncEvent, LoginStatus, PduHeader, ScsiStatus, TmfFunction, TmfResponse};
use rtgt_target::{Engine, IoEngine};

fn engines() -> Vec<IoEngine> {
    let mut v = vec![IoEngine::Epoll];
    if Engine::start(&config("null:1MiB", ""), &options(IoEngine::Uring, 1)).is_ok() {
        v.push(IoEngine::Uring);
    }
    v
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn login_and_io_with_and_without_digests_on_both_engines() {
    for engine in engines() {
        let e = Engine::start(&config("memory:16MiB", ""), &options(engine, 1)).unwrap();
        assert_eq!(e.io_engine(), engine);
        let addr = e.local_addrs()[0];
        for (hd, dd) in [(false, false), (true, true), (true, false)] {
            let mut i = Initiator::connect(addr);
            let keys = i
                .login(&LoginOpts {
                    header_digest: hd,
                    data_digest: dd,
                    ..Default::default()
                })
                .unwrap();
            let want = |on: bool| if on { "CRC32C" } else { "None" };
            assert!(
                keys.contains(&("HeaderDigest".into(), want(hd).into())),
                "{keys:?}"
            );
            assert!(keys.contains(&("TargetPortalGroupTag".into(), "1".into())));
            // 300 KiB: immediate data, then R2Ts of MaxBurstLength, Data-In split by 64 KiB.
            let data = pattern(600 * 512, u8::from(hd) + 2 * u8::from(dd));
            assert_eq!(i.write10(100, &data).unwrap().status, ScsiStatus::GOOD);
            let r = i.read10(100, 600).unwrap();
            assert_eq!(r.status, ScsiStatus::GOOD);
            assert!(r.data == data, "{engine}: data read back differs");
            let nop = i.nop().unwrap();
            assert_eq!(nop.data, b"hello");
            assert!(i.logout());
        }
        e.shutdown().unwrap();
    }
}

#[test]
fn chap_and_mutual_chap() {
    let auth = "[[target.auth.user]]\nname = \"alice\"\nsecret = \"alice-secret-123\"\n\
                [target.auth.mutual]\nname = \"disk\"\nsecret = \"target-secret-456\"\n";
    let e = Engine::start(&config("memory:4MiB", auth), &options(IoEngine::Epoll, 1)).unwrap();
    let addr = e.local_addrs()[0];
    // Without CHAP: refused.
    let mut i = Initiator::connect(addr);
    assert_eq!(
        i.login(&LoginOpts::default()),
        Err(LoginStatus::AUTHENTICATION_FAILURE)
    );
    // Wrong secret.
    let mut i = Initiator::connect(addr);
    let bad = LoginOpts {
        chap: Some(("alice".into(), b"not-the-secret".to_vec())),
        ..Default::default()
    };
    assert_eq!(i.login(&bad), Err(LoginStatus::AUTHENTICATION_FAILURE));
    // One-way.
    let mut i = Initiator::connect(addr);
    let good = LoginOpts {
        chap: Some(("alice".into(), b"alice-secret-123".to_vec())),
        ..Default::default()
    };
    i.login(&good).unwrap();
    assert_eq!(i.test_unit_ready().unwrap().status, ScsiStatus::GOOD);
    // Mutual: the initiator checks the target's answer inside `login`.
    let mut i = Initiator::connect(addr);
    let mutual = LoginOpts {
        mutual: Some(("disk".into(), b"target-secret-456".to_vec())),
        ..good
    };
    i.login(&mutual).unwrap();
    e.shutdown().unwrap();
}

#[test]
fn discovery_lists_the_target_and_its_portal() {
    let e = Engine::start(&config("null:1GiB", ""), &options(IoEngine::Epoll, 1)).unwrap();
    let addr = e.local_addrs()[0];
    let mut i = Initiator::connect(addr);
    i.login(&LoginOpts {
        target: None,
        ..Default::default()
    })
    .unwrap();
    let answer = i.send_targets();
    assert!(answer.contains(&("TargetName".into(), TARGET.into())));
    assert!(
        answer.contains(&("TargetAddress".into(), format!("{addr},1"))),
        "{answer:?}"
    );
    e.shutdown().unwrap();
}

#[test]
fn libiscsi_tools_see_the_target() {
    if std::process::Command::new("iscsi-inq")
        .arg("--help")
        .output()
        .is_err()
    {
        // scripts/install-deps installs libiscsi-bin; under CI its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "libiscsi-bin (iscsi-inq) is required when CI=true"
        );
        eprintln!("libiscsi-bin not installed; skipping");
        return;
    }
    let e = Engine::start(&config("memory:8MiB", ""), &options(IoEngine::Uring, 1))
        .or_else(|_| Engine::start(&config("memory:8MiB", ""), &options(IoEngine::Epoll, 1)))
        .unwrap();
    let addr = e.local_addrs()[0];
    let ls = std::process::Command::new("iscsi-ls")
        .arg("-s")
        .arg(format!("iscsi://{addr}"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.status.success(), "{out}");
    assert!(out.contains(TARGET) && out.contains("Lun:0"), "{out}");
    let inq = std::process::Command::new("iscsi-inq")
        .arg(format!("iscsi://{addr}/{TARGET}/0"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&inq.stdout);
    assert!(inq.status.success(), "{out}");
    assert!(out.contains("Vendor:RTGT"), "{out}");
    e.shutdown().unwrap();
}

#[test]
fn mcs_connections_join_by_tsih_across_reactors() {
    for engine in engines() {
        let e = Engine::start(&config("memory:4MiB", ""), &options(engine, 2)).unwrap();
        let addr = e.local_addrs()[0];
        let mut a = Initiator::connect(addr);
        a.login(&LoginOpts::default()).unwrap();
        let tsih = a.tsih;
        assert_ne!(tsih, 0);
        // Three more connections: with two reactors at least one lands on the other reactor
        // and is handed over to the session's.
        let mut others = Vec::new();
        for cid in 1..4u16 {
            let mut b = Initiator::connect(addr);
            b.cmd_sn = a.cmd_sn;
            b.login(&LoginOpts {
                tsih,
                cid,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(b.tsih, tsih);
            others.push(b);
        }
        // Commands share one CmdSN space: issue them in order across the connections.
        let data = pattern(8 * 512, 7);
        a.cmd_sn = others[2].cmd_sn;
        assert!(a.test_unit_ready().is_some());
        for b in &mut others {
            b.cmd_sn = a.cmd_sn;
            assert_eq!(b.write10(8, &data).unwrap().status, ScsiStatus::GOOD);
            a.cmd_sn = b.cmd_sn;
            let r = a.read10(8, 8).unwrap();
            assert!(r.data == data);
        }
        // A fifth connection exceeds MaxConnections = 4.
        let mut c = Initiator::connect(addr);
        assert_eq!(
            c.login(&LoginOpts {
                tsih,
                cid: 9,
                ..Default::default()
            }),
            Err(LoginStatus::TOO_MANY_CONNECTIONS)
        );
        // Joining a session that does not exist.
        let mut d = Initiator::connect(addr);
        assert_eq!(
            d.login(&LoginOpts {
                tsih: tsih + 100,
                cid: 1,
                ..Default::default()
            }),
            Err(LoginStatus::SESSION_DOES_NOT_EXIST)
        );
        e.shutdown().unwrap();
    }
}

#[test]
fn session_reinstatement_drops_the_old_session() {
    let e = Engine::start(&config("memory:4MiB", ""), &options(IoEngine::Epoll, 2)).unwrap();
    let addr = e.local_addrs()[0];
    let mut old = Initiator::connect(addr);
    old.login(&LoginOpts::default()).unwrap();
    let mut new = Initiator::connect(addr);
    new.login(&LoginOpts::default()).unwrap();
    assert_ne!(new.tsih, old.tsih);
    assert!(
        old.wait_closed(Duration::from_secs(10)),
        "the old session's connection is closed"
    );
    assert!(new.test_unit_ready().is_some());
    e.shutdown().unwrap();
}

#[test]
fn task_management_during_io() {
    for engine in engines() {
        let e = Engine::start(&config("memory:4MiB", ""), &options(engine, 1)).unwrap();
        let addr = e.local_addrs()[0];
        let mut i = Initiator::connect(addr);
        i.login(&LoginOpts {
            extra: vec![("ImmediateData".into(), "No".into())],
            ..Default::default()
        })
        .unwrap();
        i.test_unit_ready();
        // A write waiting for its Data-Out (the target sent an R2T): abort it.
        let itt = i.start_command(
            0,
            &[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            4096,
            false,
            &[0; 4096],
        );
        let sn = rtgt_pdu::Sn(i.cmd_sn.0.wrapping_sub(1));
        let r2t = i.recv().unwrap();
        assert!(matches!(r2t.header, PduHeader::R2t(_)), "{r2t:?}");
        assert_eq!(
            i.tmf(TmfFunction::ABORT_TASK, itt, sn),
            Some(TmfResponse::FUNCTION_COMPLETE)
        );
        // A task that already completed: "does not exist".
        let done_itt = rtgt_pdu::Itt(12345);
        assert_eq!(
            i.tmf(TmfFunction::ABORT_TASK, done_itt, rtgt_pdu::Sn(0)),
            Some(TmfResponse::TASK_DOES_NOT_EXIST)
        );
        // LU reset: the next command reports the reset as a unit attention.
        assert_eq!(
            i.tmf(
                TmfFunction::LOGICAL_UNIT_RESET,
                rtgt_pdu::Itt::RESERVED,
                rtgt_pdu::Sn(0)
            ),
            Some(TmfResponse::FUNCTION_COMPLETE)
        );
        let r = i.test_unit_ready().unwrap();
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(r.sense[2] & 0x0f, 0x06, "UNIT ATTENTION");
        assert_eq!(i.test_unit_ready().unwrap().status, ScsiStatus::GOOD);
        assert_eq!(
            i.tmf(TmfFunction::TASK_REASSIGN, itt, sn),
            Some(TmfResponse::TASK_REASSIGNMENT_NOT_SUPPORTED)
        );
        e.shutdown().unwrap();
    }
}

#[test]
fn unanswered_nop_in_drops_the_connection() {
    let session = "[session]\nnop_interval = \"1s\"\nnop_timeout = \"1s\"\n";
    let e = Engine::start(
        &config_with(session, "memory:1MiB", ""),
        &options(IoEngine::Epoll, 1),
    )
    .unwrap();
    let mut i = Initiator::connect(e.local_addrs()[0]);
    i.login(&LoginOpts::default()).unwrap();
    // Never answer: the target pings, then gives up on us.
    assert!(i.wait_closed(Duration::from_secs(20)));
    assert!(
        i.unsolicited
            .iter()
            .any(|p| matches!(&p.header, PduHeader::NopIn(n) if n.itt == rtgt_pdu::Itt::RESERVED))
    );
    e.shutdown().unwrap();
}

#[test]
fn file_backend_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    for engine in engines() {
        let path = dir.path().join(format!("lun-{engine}.img"));
        let spec = format!("file:{},size=8MiB", path.display());
        let e = Engine::start(&config(&spec, ""), &options(engine, 1)).unwrap();
        let mut i = Initiator::connect(e.local_addrs()[0]);
        i.login(&LoginOpts::default()).unwrap();
        i.test_unit_ready();
        let data = pattern(1024 * 512, 3);
        assert_eq!(i.write10(2048, &data).unwrap().status, ScsiStatus::GOOD);
        let r = i.read10(2048, 1024).unwrap();
        assert!(r.data == data, "{engine}: file data read back differs");
        // SYNCHRONIZE CACHE(10).
        assert_eq!(
            i.command(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, false, &[])
                .unwrap()
                .status,
            ScsiStatus::GOOD
        );
        assert!(i.logout());
        e.shutdown().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[2048 * 512..2048 * 512 + data.len()] == data[..]);
    }
}

#[test]
fn large_write_to_a_file_on_io_uring() {
    if !engines().contains(&IoEngine::Uring) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("file:{}/x.img,size=8MiB", dir.path().display());
    let e = Engine::start(&config(&spec, ""), &options(IoEngine::Uring, 1)).unwrap();
    let mut i = Initiator::connect(e.local_addrs()[0]);
    i.login(&LoginOpts::default()).unwrap();
    assert!(i.test_unit_ready().is_some());
    // 2 MiB: larger than a pool buffer, so the task buffer comes from the heap.
    let data = pattern(4096 * 512, 3);
    assert_eq!(i.write10(2048, &data).unwrap().status, ScsiStatus::GOOD);
    let r = i.read10(2048, 4096).unwrap();
    assert!(r.data == data);
    assert!(i.logout());
    e.shutdown().unwrap();
}

#[test]
fn shutdown_asks_initiators_to_log_out() {
    for engine in engines() {
        let e = Engine::start(&config("memory:1MiB", ""), &options(engine, 1)).unwrap();
        let mut i = Initiator::connect(e.local_addrs()[0]);
        i.login(&LoginOpts::default()).unwrap();
        let stopper = std::thread::spawn(move || e.shutdown());
        // The target asks us to log out; we do, and it stops cleanly.
        let msg = i.recv().expect("async message");
        let PduHeader::AsyncMessage(m) = msg.header else {
            panic!("{msg:?}")
        };
        assert_eq!(m.event, AsyncEvent::LOGOUT_REQUESTED);
        assert!(i.logout());
        stopper.join().unwrap().unwrap();
    }
}
