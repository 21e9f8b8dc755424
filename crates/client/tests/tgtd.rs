//! The client against Debian's tgtd, started by each test on its own loopback port: discovery,
//! login (with and without CHAP), management commands, bench, verify and a few torture cases.
//! Skipped with a printed reason when tgtd is not installed.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use rtgt_client::bench::{self, BenchConfig};
use rtgt_client::connect::LoginSummary;
use rtgt_client::scsi::VpdPage;
use rtgt_client::verify::{self, VerifyConfig};
use rtgt_client::workload::Pattern;
use rtgt_client::{ChapCredentials, Client, ClientError, torture};
use rtgt_pdu::LoginStatus;
use rtgt_session::chap::ChapAlgorithm;
use rtgt_session::initiator::{AuthError, LoginError};
use support::{Accounts, TGT_IQN, Tgtd, options};

#[test]
fn discovery_login_and_management_commands() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let portal = format!("127.0.0.1:{}", t.port).parse().unwrap();
    let targets = rtgt_client::discover(&portal, &options()).unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, TGT_IQN);
    assert_eq!(
        targets[0].portals[0].address,
        format!("127.0.0.1:{}", t.port)
    );

    let mut c = Client::connect(&t.url(None), &options()).unwrap();
    let s = LoginSummary::of(c.outcome());
    assert_eq!(s.target, TGT_IQN);
    assert_eq!(s.auth_method, "None");
    assert_ne!(s.tsih, 0);
    let inq = c.inquiry().unwrap();
    assert_eq!(inq.vendor, "IET");
    assert_eq!(inq.device_type, 0);
    let Ok(VpdPage::Supported { pages }) = c.vpd(0) else {
        panic!("no supported-pages VPD")
    };
    assert!(pages.contains(&0x83));
    assert!(matches!(c.vpd(0x83), Ok(VpdPage::Identification { .. })));
    let cap = c.capacity().unwrap();
    assert_eq!((cap.blocks, cap.block_len), (131_072, 512));
    c.test_unit_ready().unwrap();
    // A write followed by a read returns the data.
    let mut data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    c.write(100, 512, &mut data, true).unwrap();
    c.synchronize_cache().unwrap();
    let mut back = vec![0u8; 8192];
    c.read(100, 512, &mut back).unwrap();
    assert_eq!(back, data);
    // An LBA beyond the end is refused with ILLEGAL REQUEST sense.
    let err = c.read(cap.blocks, 512, &mut [0u8; 512]).unwrap_err();
    let ClientError::Scsi(f) = err else {
        panic!("{err}")
    };
    assert_eq!(f.sense.map(|s| s.key), Some(5));
    assert!(c.ping().is_ok());
    assert_eq!(c.report_luns().unwrap(), [0, 1]);
    c.logout().unwrap();
}

#[test]
fn chap_one_way_and_mutual() {
    let accounts = Accounts {
        incoming: Some(("alice", "alice-secret-1")),
        outgoing: Some(("tgt", "target-secret-1")),
    };
    let Some(t) = Tgtd::start(accounts) else {
        return;
    };
    let creds = |secret: &str| {
        let mut c = ChapCredentials::new("alice", secret.as_bytes().to_vec());
        c.algorithms = vec![ChapAlgorithm::Md5];
        c
    };
    let mut opts = options();
    opts.chap = Some(creds("alice-secret-1"));
    let c = Client::connect(&t.url(None), &opts).unwrap();
    assert_eq!(c.outcome().auth_method, "CHAP");
    assert!(!c.outcome().target_authenticated);
    c.logout().unwrap();

    opts.chap = Some(creds("alice-secret-1").with_mutual("tgt", b"target-secret-1".to_vec()));
    let c = Client::connect(&t.url(None), &opts).unwrap();
    assert!(c.outcome().target_authenticated);
    c.logout().unwrap();

    opts.chap = Some(creds("alice-secret-1").with_mutual("tgt", b"not-the-secret!".to_vec()));
    let err = Client::connect(&t.url(None), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Login(LoginError::Auth(AuthError::Chap(_)))
        ),
        "{err}"
    );

    opts.chap = Some(creds("wrong-secret-1"));
    let err = Client::connect(&t.url(None), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Login(LoginError::Refused {
                status: LoginStatus::AUTHENTICATION_FAILURE
            })
        ),
        "{err}"
    );

    // Credentials in the URL work the same way.
    let mut url_opts = options().with_url_credentials(&t.url(Some(("alice", "alice-secret-1"))));
    if let Some(c) = url_opts.chap.as_mut() {
        c.algorithms = vec![ChapAlgorithm::Md5];
    }
    Client::connect(&t.url(None), &url_opts)
        .unwrap()
        .logout()
        .unwrap();
}

#[test]
fn bench_reads_writes_and_mixes() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    for (pattern, bs) in [
        (Pattern::RandRead, 4096),
        (Pattern::RandWrite, 4096),
        (Pattern::RandRw { read_pct: 50 }, 8192),
        (Pattern::SeqRead, 65_536),
        (Pattern::SeqWrite, 1 << 20),
    ] {
        let mut cfg = BenchConfig::new(t.url(None), options(), pattern);
        cfg.block_size = bs;
        cfg.queue_depth = 8;
        cfg.time = None;
        cfg.count = Some(400);
        let r = bench::run(&cfg, None).unwrap();
        assert_eq!(r.report.ios, 400, "{pattern:?}: every issued IO completes");
        assert_eq!(
            r.report.errors, 0,
            "{pattern:?}: {:?}",
            r.report.first_error
        );
        assert!(r.report.latency_us.max >= r.report.latency_us.p50);
        match pattern {
            Pattern::RandRead | Pattern::SeqRead => assert_eq!(r.report.writes, 0),
            Pattern::RandWrite | Pattern::SeqWrite => assert_eq!(r.report.reads, 0),
            _ => assert!(r.report.reads > 0 && r.report.writes > 0),
        }
    }
}

#[test]
fn bench_time_limited_with_several_sessions() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let mut cfg = BenchConfig::new(t.url(None), options(), Pattern::RandRead);
    cfg.time = Some(Duration::from_millis(1500));
    cfg.sessions = 2;
    cfg.threads = 2;
    cfg.queue_depth = 16;
    let r = bench::run(&cfg, None).unwrap();
    assert!(r.report.ios > 0);
    assert_eq!(r.report.errors, 0);
    assert!(
        r.report.cpu_seconds > 0.0,
        "the engine measures its own CPU time"
    );
    assert!(r.report.iops > 0.0);
}

#[test]
fn bench_paraseq_streams_stay_in_their_regions() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let mut cfg = BenchConfig::new(
        t.url(None),
        options(),
        Pattern::ParaSeq {
            streams: 4,
            read_pct: 50,
        },
    );
    cfg.time = None;
    cfg.count = Some(200);
    cfg.queue_depth = 4;
    cfg.range = Some((0, 16 << 20));
    let r = bench::run(&cfg, None).unwrap();
    assert_eq!(r.report.ios, 200);
    assert_eq!(r.report.errors, 0);
    assert!(r.report.reads > 0 && r.report.writes > 0);
}

#[test]
fn bench_rejects_bad_configuration() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let mut cfg = BenchConfig::new(t.url(None), options(), Pattern::RandRead);
    cfg.block_size = 1000;
    assert!(matches!(
        bench::run(&cfg, None),
        Err(ClientError::Config(_))
    ));
    cfg.block_size = 4096;
    cfg.range = Some((0, 1 << 40));
    assert!(matches!(
        bench::run(&cfg, None),
        Err(ClientError::Config(_))
    ));
}

#[test]
fn verify_passes_and_resume_detects_damage() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = VerifyConfig::new(t.url(None), options(), dir.path().join("journal"));
    cfg.count = Some(3000);
    cfg.range = Some((0, 8 << 20));
    cfg.flush_every = 500;
    cfg.seed = Some(1234);
    let r = verify::run(&cfg, None).unwrap();
    assert!(r.passed(), "{r}");
    assert!(r.writes_acked >= 3000 - u64::from(cfg.queue_depth));
    assert!(r.blocks_checked_live > 0 && r.blocks_checked > 0);
    assert!(r.flushes >= 1 && r.fua_writes > 0);
    let again = verify::resume(&cfg).unwrap();
    assert!(again.passed(), "{again}");
    assert_eq!(again.blocks_checked, r.blocks_checked);

    // Zero 64 KiB of the backing file behind the target's back: those acknowledged writes
    // are now lost.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.file())
        .unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&vec![0u8; 65_536]).unwrap();
    f.sync_all().unwrap();
    let damaged = verify::resume(&cfg).unwrap();
    assert!(!damaged.passed());
    assert!(damaged.lost > 0, "{damaged}");
}

#[test]
fn torture_cases_tgtd_handles() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let url = t.url(None);
    for name in [
        "cmdsn-wraparound",
        "cmdsn-above-window",
        "tmf-abort-unknown-task",
        "login-bad-version",
        "login-missing-initiator-name",
    ] {
        let report = torture::run(&url, &options(), Some(name)).unwrap();
        assert_eq!(report.cases.len(), 1, "{name}");
        let c = &report.cases[0];
        assert_eq!(c.result, "pass", "{name}: {}", c.observed);
        assert!(c.target_alive);
    }
    // tgtd answers a reserved Logout reason with success instead of rejecting it: the case
    // reports that as a failure, and the target is still alive.
    let report = torture::run(&url, &options(), Some("reserved-logout-reason")).unwrap();
    assert_eq!(report.cases[0].result, "fail");
    assert!(report.cases[0].target_alive);
    assert_eq!(report.failed(), 1);
}
