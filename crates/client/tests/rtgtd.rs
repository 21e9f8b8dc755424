//! The client against rtgtd started as a child on a free loopback port: every subcommand's
//! library path (discover, login, inquiry, capacity, bench, verify, torture), and verify's
//! journal across a SIGKILL of the target. Skipped with a printed reason when the rtgtd binary
//! is not built next to the test (or named by `RTGTD_BIN`).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rtgt_client::bench::{self, BenchConfig};
use rtgt_client::engine::Progress;
use rtgt_client::verify::{self, VerifyConfig};
use rtgt_client::workload::Pattern;
use rtgt_client::{Client, torture};
use support::{RTGTD_IQN, Rtgtd, options};

#[test]
fn management_commands() {
    let Some(t) = Rtgtd::start(false) else { return };
    let portal = format!("127.0.0.1:{}", t.port).parse().unwrap();
    let targets = rtgt_client::discover(&portal, &options()).unwrap();
    assert!(targets.iter().any(|x| x.name == RTGTD_IQN));
    let mut c = Client::connect(&t.url(), &options()).unwrap();
    let inq = c.inquiry().unwrap();
    assert_eq!(inq.device_type, 0);
    let cap = c.capacity().unwrap();
    assert_eq!(cap.bytes(), 1 << 30);
    let mut buf = vec![0u8; cap.block_len as usize * 8];
    c.write(8, cap.block_len, &mut buf, true).unwrap();
    c.read(8, cap.block_len, &mut buf).unwrap();
    c.logout().unwrap();
}

/// Runs `cfg` for `ios` IOs and checks every one completed without error.
fn bench_completes(mut cfg: BenchConfig, ios: u64) {
    cfg.time = None;
    cfg.count = Some(ios);
    let r = bench::run(&cfg, None).unwrap();
    let what = format!("{:?} x{} poll {:?}", cfg.pattern, cfg.sessions, cfg.poll);
    assert_eq!(r.report.ios, ios, "{what}");
    assert_eq!(r.report.errors, 0, "{what}: {:?}", r.report.first_error);
}

#[test]
fn bench_reads_and_writes() {
    let Some(t) = Rtgtd::start(false) else { return };
    for pattern in [
        Pattern::RandRead,
        Pattern::RandWrite,
        Pattern::RandRw { read_pct: 70 },
    ] {
        bench_completes(BenchConfig::new(t.url(), options(), pattern), 2000);
    }
}

#[test]
fn bench_with_busy_polling_completes_every_io() {
    let Some(t) = Rtgtd::start(false) else { return };
    for (pattern, sessions) in [(Pattern::RandRead, 1), (Pattern::RandWrite, 2)] {
        let mut cfg = BenchConfig::new(t.url(), options(), pattern);
        cfg.sessions = sessions;
        cfg.poll = Duration::from_micros(100);
        bench_completes(cfg, 4000);
    }
}

#[test]
fn bench_with_several_sessions_of_several_connections() {
    let Some(t) = Rtgtd::start(false) else { return };
    let mut cfg = BenchConfig::new(t.url(), options(), Pattern::RandRw { read_pct: 50 });
    cfg.sessions = 2;
    cfg.connections = 2;
    cfg.queue_depth = 32;
    bench_completes(cfg, 8000);
}

#[test]
fn verify_passes() {
    let Some(t) = Rtgtd::start(false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = VerifyConfig::new(t.url(), options(), dir.path().join("j"));
    cfg.count = Some(3000);
    cfg.range = Some((0, 16 << 20));
    cfg.block_size = 65_536;
    let r = verify::run(&cfg, None).unwrap();
    assert!(r.passed(), "{r}");
    assert!(verify::resume(&cfg).unwrap().passed());
}

#[test]
fn acknowledged_writes_survive_sigkill_on_a_file_backend() {
    let Some(t) = Rtgtd::start(true) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = VerifyConfig::new(t.url(), options(), dir.path().join("j"));
    cfg.count = Some(4000);
    cfg.range = Some((0, 16 << 20));
    let r = verify::run(&cfg, None).unwrap();
    assert!(r.passed(), "{r}");
    // Kill the target hard and start it again on the same file and port.
    let url = t.url();
    let t = t.restart_after_sigkill();
    assert_eq!(t.url(), url);
    let again = verify::resume(&cfg).unwrap();
    assert!(again.passed(), "{again}");
    assert_eq!(again.lost + again.stale + again.torn, 0);
}

#[test]
fn acknowledged_writes_survive_sigkill_mid_write() {
    let Some(t) = Rtgtd::start(true) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = VerifyConfig::new(t.url(), options(), dir.path().join("j"));
    cfg.count = None;
    cfg.time = Some(Duration::from_secs(30));
    cfg.range = Some((0, 16 << 20));
    cfg.fua_pct = 50;
    // Kill the target while the writes are in full flow: once a few hundred IOs have completed
    // (on a loaded machine login alone can take longer than any fixed delay).
    let pid = t.pid();
    let progress = Arc::new(Progress::default());
    let seen = Arc::clone(&progress);
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(25);
        while seen.ios.load(Ordering::Relaxed) < 500 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let r = verify::run(&cfg, Some(progress)).unwrap();
    killer.join().unwrap();
    assert!(
        r.interrupted.is_some(),
        "the run must notice the target died: {r}"
    );
    assert!(r.writes_acked > 0, "{r}");
    let t = t.restart_after_sigkill();
    let again = verify::resume(&cfg).unwrap();
    assert!(again.passed(), "{again}");
    assert!(again.blocks_checked > 0);
    drop(t);
}

#[test]
fn torture_passes_every_case() {
    let Some(t) = Rtgtd::start(false) else { return };
    let mut opts = options();
    opts.timeout = Duration::from_secs(5);
    let report = torture::run(&t.url(), &opts, None).unwrap();
    let failed: Vec<_> = report
        .cases
        .iter()
        .filter(|c| c.result == "fail")
        .map(|c| (c.name, c.observed.clone()))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
