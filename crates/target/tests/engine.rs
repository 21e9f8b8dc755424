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

/// File LUs, buffered and O_DIRECT (whose operations io_uring submits as they are queued),
/// on both engines: single and pipelined writes land, read back and reach the file.
#[test]
fn file_backend_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let direct_ok = {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = dir.path().join("probe");
        std::fs::write(&probe, [0u8; 4096]).unwrap();
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok()
    };
    for engine in engines() {
        for direct in [false, true] {
            if direct && !direct_ok {
                println!("skipping O_DIRECT: {} refuses it", dir.path().display());
                continue;
            }
            let what = format!("{engine} direct={direct}");
            let path = dir.path().join(format!("lun-{engine}-{direct}.img"));
            let flag = if direct { ",direct" } else { "" };
            let spec = format!("file:{},size=8MiB{flag}", path.display());
            let e = Engine::start(&config(&spec, ""), &options(engine, 1)).unwrap();
            let mut i = Initiator::connect(e.local_addrs()[0]);
            i.login(&LoginOpts::default()).unwrap();
            i.test_unit_ready();
            let data = pattern(1024 * 512, 3);
            assert_eq!(i.write10(2048, &data).unwrap().status, ScsiStatus::GOOD);
            let r = i.read10(2048, 1024).unwrap();
            assert!(r.data == data, "{what}: file data read back differs");
            // Sixteen 4 KiB writes in flight at once, then read back as one.
            let chunks: Vec<(u32, Vec<u8>)> = (0..16u8)
                .map(|k| (8192 + 8 * u32::from(k), pattern(4096, 40 + k)))
                .collect();
            let status = pipelined_writes(&mut i, &chunks);
            assert!(
                status.iter().all(|s| *s == ScsiStatus::GOOD),
                "{what}: {status:?}"
            );
            let all: Vec<u8> = chunks.iter().flat_map(|(_, d)| d.clone()).collect();
            assert!(
                i.read10(8192, 128).unwrap().data == all,
                "{what}: pipelined writes"
            );
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
            assert!(
                on_disk[2048 * 512..2048 * 512 + data.len()] == data[..],
                "{what}"
            );
            assert!(
                on_disk[8192 * 512..8192 * 512 + all.len()] == all[..],
                "{what}"
            );
        }
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

/// Write data that has not arrived when its header is decoded goes straight into the task
/// buffer (and segments of 128 KiB and more switch the connection to header-first receives):
/// data must land intact, digests checked in place, on both engines and on memory and file
/// logical units.
#[test]
fn write_data_received_straight_into_task_buffers() {
    let session = "[session]\nmax_recv_data_segment_length = \"512KiB\"\n\
                   first_burst_length = \"512KiB\"\nmax_burst_length = \"1MiB\"\n";
    let dir = tempfile::tempdir().unwrap();
    for engine in engines() {
        for file in [false, true] {
            let lun = if file {
                format!(
                    "file:{}/direct-{engine}.img,size=8MiB",
                    dir.path().display()
                )
            } else {
                "memory:8MiB".to_owned()
            };
            let e = Engine::start(&config_with(session, &lun, ""), &options(engine, 1)).unwrap();
            let addr = e.local_addrs()[0];
            for dd in [false, true] {
                let mut i = Initiator::connect(addr);
                i.login(&LoginOpts {
                    header_digest: dd,
                    data_digest: dd,
                    first_burst: 512 * 1024,
                    ..Default::default()
                })
                .unwrap();
                assert_eq!(i.max_send, 512 * 1024, "{engine}");
                assert_eq!(i.first_burst, 512 * 1024, "{engine}");
                let before = e.stats();
                // 256 KiB of immediate data: the header and 100 bytes first, the rest later.
                let data = pattern(256 * 1024, 7 + u8::from(dd) + 2 * u8::from(file));
                let pdu = i.write10_pdu(64, &data);
                let itt = pdu.header.itt();
                i.send_in_pieces(&pdu, &[48 + 100], Duration::from_millis(60));
                let r = i.finish_command(itt, &data).unwrap();
                assert_eq!(r.status, ScsiStatus::GOOD, "{engine} file={file} dd={dd}");
                // Then a few more back to back: header-first receives take over.
                for k in 0..4u8 {
                    let more = pattern(160 * 1024, k);
                    assert_eq!(
                        i.write10(2048 + u32::from(k) * 320, &more).unwrap().status,
                        ScsiStatus::GOOD
                    );
                    let back = i.read10(2048 + u32::from(k) * 320, 320).unwrap();
                    assert!(
                        back.data == more,
                        "{engine} file={file} dd={dd}: write {k} differs"
                    );
                }
                let back = i.read10(64, 512).unwrap();
                assert_eq!(back.status, ScsiStatus::GOOD);
                assert!(
                    back.data == data,
                    "{engine} file={file} dd={dd}: data differs"
                );
                assert!(i.logout());
                // The reactors publish their counters every 50 ms.
                std::thread::sleep(Duration::from_millis(120));
                let after = e.stats();
                let direct = after.rx_direct_bytes - before.rx_direct_bytes;
                assert!(
                    direct >= (256 - 8) * 1024,
                    "{engine} file={file} dd={dd}: only {direct} bytes went straight to task buffers"
                );
            }
            e.shutdown().unwrap();
        }
    }
}

/// Writes `chunks` back to back without waiting (immediate data only), then collects every
/// status; returns them by chunk.
fn pipelined_writes(i: &mut Initiator, chunks: &[(u32, Vec<u8>)]) -> Vec<ScsiStatus> {
    let mut itts = Vec::new();
    for (lba, data) in chunks {
        let blocks = (data.len() / 512) as u16;
        let mut cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        itts.push(i.start_command(0, &cdb, data.len() as u32, false, data));
    }
    let mut status = vec![None; itts.len()];
    while status.iter().any(Option::is_none) {
        let p = i.recv().expect("a response");
        let PduHeader::ScsiResponse(r) = p.header else {
            continue;
        };
        if let Some(k) = itts.iter().position(|t| *t == r.itt) {
            status[k] = Some(r.status);
        }
    }
    status.into_iter().map(Option::unwrap).collect()
}

/// A file LU forced rotational runs the streams feature: interleaved sequential readers are
/// served from read-ahead (counted), sequential writers are coalesced, every byte stays right
/// — also after another session (possibly on another reactor) rewrote cached data.
#[test]
fn streams_on_a_rotational_file_lu() {
    let dir = tempfile::tempdir().unwrap();
    let lun_extra = "rotational = true\n[target.lun.streams]\nread_ahead_size = \"64KiB\"\n\
                     cache_size = \"2MiB\"\nwrite_combine_window = \"5ms\"\n";
    for engine in engines() {
        let lun = format!(
            "file:{}/streams-{engine}.img,size=8MiB",
            dir.path().display()
        );
        let e = Engine::start(&config(&lun, lun_extra), &options(engine, 2)).unwrap();
        let addr = e.local_addrs()[0];
        let mut a = Initiator::connect(addr);
        a.login(&LoginOpts::default()).unwrap();
        // Four regions of 1 MiB, written by sequential 16 KiB writes, eight at a time.
        const REGION: u32 = 2048; // blocks
        let mut regions = Vec::new();
        for r in 0..4u32 {
            let data = pattern(1 << 20, 40 + r as u8);
            let writes: Vec<(u32, Vec<u8>)> = (0..64u32)
                .map(|k| {
                    (
                        r * REGION + k * 32,
                        data[k as usize * 16384..][..16384].to_vec(),
                    )
                })
                .collect();
            for batch in writes.chunks(8) {
                assert!(
                    pipelined_writes(&mut a, batch)
                        .iter()
                        .all(|s| *s == ScsiStatus::GOOD)
                );
            }
            regions.push(data);
        }
        // Four interleaved sequential readers, 8 KiB at a time.
        let mut got = vec![Vec::new(); 4];
        for step in 0..128u32 {
            for (r, out) in got.iter_mut().enumerate() {
                let resp = a.read10(r as u32 * REGION + step * 16, 16).unwrap();
                assert_eq!(resp.status, ScsiStatus::GOOD);
                out.extend_from_slice(&resp.data);
            }
        }
        for (r, data) in got.iter().enumerate() {
            assert!(
                *data == regions[r],
                "{engine}: region {r} read back differs"
            );
        }
        let s = e.stats().streams;
        assert!(
            s.readahead_hits > 0 && s.readahead_chunks > 0,
            "{engine}: no read-ahead hits: {s:?}"
        );
        // Another session rewrites the start of region 1 while region 1 is cached.
        let mut b = Initiator::connect(addr);
        b.login(&LoginOpts {
            isid: rtgt_pdu::Isid([0x80, 0, 0, 0, 0, 9]),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..3 {
            // Read it sequentially (again) through session A so it is in A's cache.
            for k in 0..8u32 {
                a.read10(REGION + k * 16, 16).unwrap();
            }
        }
        let fresh = pattern(65536, 99);
        assert_eq!(b.write10(REGION, &fresh).unwrap().status, ScsiStatus::GOOD);
        let mut back = Vec::new();
        for k in 0..8u32 {
            back.extend_from_slice(&a.read10(REGION + k * 16, 16).unwrap().data);
        }
        assert!(
            back == fresh,
            "{engine}: stale read-ahead data after another session wrote"
        );
        assert!(a.logout() && b.logout());
        e.shutdown().unwrap();
    }
}

/// `serial`, `naa` and `thin_provisioning` from the configuration reach the logical units
/// (VPD 80h/83h, LBPME, UNMAP); unset identities are derived from target name and LUN.
#[test]
fn lun_identity_and_provisioning_follow_the_configuration() {
    let extra = "serial = \"DISK-0001\"\nnaa = \"0x52004567BA64678D\"\n\
                 [[target.lun]]\nnumber = 1\nbackend = \"memory:1MiB\"\nthin_provisioning = true\n";
    let e = Engine::start(&config("memory:1MiB", extra), &options(IoEngine::Epoll, 1)).unwrap();
    let mut i = Initiator::connect(e.local_addrs()[0]);
    i.login(&LoginOpts::default()).unwrap();
    let vpd = |i: &mut Initiator, lun: u16, page: u8| {
        let r = i
            .command(lun, &[0x12, 1, page, 0, 255, 0], 255, true, &[])
            .unwrap();
        assert_eq!(r.status, ScsiStatus::GOOD, "VPD {page:02x} of LUN {lun}");
        r.data
    };
    let p80 = vpd(&mut i, 0, 0x80);
    assert_eq!(&p80[4..], b"DISK-0001");
    let p83 = vpd(&mut i, 0, 0x83);
    assert_eq!(&p83[4..8], &[0x01, 0x03, 0x00, 0x08]);
    assert_eq!(
        &p83[8..16],
        &[0x52, 0x00, 0x45, 0x67, 0xBA, 0x64, 0x67, 0x8D]
    );
    let derived = rtgt_scsi::LuIdentity::new(common::TARGET, 1);
    assert_eq!(&vpd(&mut i, 1, 0x80)[4..], derived.serial().as_bytes());
    assert_eq!(&vpd(&mut i, 1, 0x83)[8..24], &derived.naa());
    // READ CAPACITY(16): LBPME only on the thin LUN.
    let lbpme = |i: &mut Initiator, lun: u16| {
        let r = i
            .command(
                lun,
                &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                32,
                true,
                &[],
            )
            .unwrap();
        r.data[14] & 0x80 != 0
    };
    assert!(!lbpme(&mut i, 0), "thin_provisioning defaults to false");
    assert!(lbpme(&mut i, 1));
    // UNMAP of one block: refused without provisioning, done with it.
    let param = [
        0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
    ];
    let unmap = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    let r = i.command(0, &unmap, 24, false, &param).unwrap();
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(
        r.sense.get(2).map(|k| k & 0x0f),
        Some(0x05),
        "ILLEGAL REQUEST"
    );
    assert_eq!(
        i.command(1, &unmap, 24, false, &param).unwrap().status,
        ScsiStatus::GOOD
    );
    assert!(i.logout());
    e.shutdown().unwrap();
}
