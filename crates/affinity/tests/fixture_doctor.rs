//! The tuning doctor against the 2-socket fixture, and its documented JSON schema.

mod common;

use common::{fixture, fixture_path};
use rtgt_affinity::{DoctorOptions, DoctorReport, Profile, Status, Topology, doctor_command};

fn report(profile: Profile) -> DoctorReport {
    let root = fixture();
    let topo = Topology::from_sysfs(&root).unwrap();
    DoctorReport::run(&root, &topo, profile, &[], &[])
}

fn statuses(r: &DoctorReport) -> Vec<(&str, Status)> {
    r.checks.iter().map(|c| (c.id.as_str(), c.status)).collect()
}

use Status::{Ok as OK, Unknown as UNKNOWN, Warn as WARN};

#[test]
fn ssd_profile_flags_the_stock_server() {
    let r = report(Profile::Ssd);
    assert_eq!(
        statuses(&r),
        [
            ("net.core.rmem_max", WARN),
            ("net.core.wmem_max", WARN),
            ("net.core.rmem_default", WARN),
            ("net.core.wmem_default", WARN),
            ("net.ipv4.tcp_rmem", WARN),
            ("net.ipv4.tcp_wmem", WARN),
            ("net.ipv4.tcp_mem", OK),
            ("net.ipv4.tcp_timestamps", WARN),
            ("net.ipv4.tcp_sack", OK),
            ("net.ipv4.tcp_low_latency", OK),
            ("net.core.netdev_max_backlog", WARN),
            ("vm.swappiness", WARN),
            ("vm.zone_reclaim_mode", WARN),
            ("vm.dirty_ratio", WARN),
            ("vm.dirty_background_ratio", WARN),
            ("vm.dirty_expire_centisecs", WARN),
            ("vm.dirty_writeback_centisecs", OK),
            ("cpu.scaling_governor", WARN),
            ("irq.irqbalance", WARN),
            ("nic.ens1f0.pcie_link", WARN),
            ("nic.ens1f1.pcie_link", WARN),
            ("block.sda.queue.scheduler", WARN),
            ("block.sda.queue.nr_requests", OK),
            ("block.sda.queue.read_ahead_kb", OK),
            ("block.sda.queue.max_sectors_kb", WARN),
            ("block.sda.queue.rotational", WARN),
        ]
    );
    assert_eq!(
        (r.summary.ok, r.summary.warn, r.summary.unknown),
        (6, 20, 0)
    );
    assert!(r.has_warnings());

    let c = r.check("net.ipv4.tcp_rmem").unwrap();
    assert_eq!(c.current.as_deref(), Some("4096 131072 6291456"));
    assert_eq!(
        c.fix.as_deref(),
        Some("sysctl -w net.ipv4.tcp_rmem=\"4096 131072 16777216\"")
    );
    assert_eq!(c.path.as_deref(), Some("/proc/sys/net/ipv4/tcp_rmem"));
    let c = r.check("cpu.scaling_governor").unwrap();
    assert_eq!(c.current.as_deref(), Some("powersave (CPUs 0-31)"));
    let c = r.check("irq.irqbalance").unwrap();
    assert_eq!(c.current.as_deref(), Some("running (pid 812)"));
    let c = r.check("nic.ens1f0.pcie_link").unwrap();
    assert_eq!(c.current.as_deref(), Some("x4 8.0 GT/s PCIe"));
    assert_eq!(c.suggested, "x8 8.0 GT/s PCIe");
    assert_eq!(c.subject.as_deref(), Some("ens1f0"));
    let c = r.check("block.sda.queue.scheduler").unwrap();
    assert_eq!(c.current.as_deref(), Some("mq-deadline"));
    assert_eq!(c.suggested, "none");
    assert_eq!(
        c.fix.as_deref(),
        Some("echo none > /sys/block/sda/queue/scheduler")
    );
    let c = r.check("block.sda.queue.max_sectors_kb").unwrap();
    assert_eq!(c.suggested, ">= 1024");
    let c = r.check("net.ipv4.tcp_low_latency").unwrap();
    assert_eq!(c.current, None);
    // Every reason is one line.
    assert!(
        r.checks
            .iter()
            .all(|c| !c.reason.is_empty() && !c.reason.contains('\n'))
    );
    // Only warnings carry a fix.
    assert!(r.checks.iter().all(|c| c.fix.is_none() || c.status == WARN));
}

#[test]
fn hdd_streaming_profile_wants_deep_queues_and_long_writeback() {
    let r = report(Profile::HddStreaming);
    let s = statuses(&r);
    let get = |id: &str| s.iter().find(|(i, _)| *i == id).map(|(_, st)| *st).unwrap();
    assert_eq!(get("vm.dirty_ratio"), WARN);
    assert_eq!(get("vm.dirty_background_ratio"), OK);
    assert_eq!(get("vm.dirty_expire_centisecs"), WARN);
    assert_eq!(get("vm.dirty_writeback_centisecs"), WARN);
    assert_eq!(get("block.sda.queue.scheduler"), OK);
    assert_eq!(get("block.sda.queue.nr_requests"), WARN);
    assert_eq!(get("block.sda.queue.read_ahead_kb"), WARN);
    assert_eq!(get("block.sda.queue.max_sectors_kb"), WARN);
    assert_eq!(get("block.sda.queue.rotational"), OK);
    assert_eq!(r.check("vm.dirty_ratio").unwrap().suggested, ">= 40");
    assert_eq!(
        r.check("vm.dirty_expire_centisecs").unwrap().suggested,
        ">= 6000"
    );
    assert_eq!(
        r.check("block.sda.queue.nr_requests").unwrap().suggested,
        ">= 1024"
    );
    assert_eq!(
        r.check("block.sda.queue.max_sectors_kb").unwrap().suggested,
        ">= 4096"
    );
    assert_eq!(
        (r.summary.ok, r.summary.warn, r.summary.unknown),
        (6, 20, 0)
    );
}

#[test]
fn named_devices_and_missing_ones() {
    let root = fixture();
    let topo = Topology::from_sysfs(&root).unwrap();
    let r = DoctorReport::run(
        &root,
        &topo,
        Profile::Ssd,
        &["lo".into()],
        &["nvme9n1".into(), "../etc".into()],
    );
    let lo = r.check("nic.lo.pcie_link").unwrap();
    assert_eq!(lo.status, UNKNOWN);
    assert!(lo.reason.starts_with("Not a PCI device."), "{}", lo.reason);
    assert_eq!(r.check("block.nvme9n1").unwrap().status, UNKNOWN);
    assert_eq!(r.check("block.../etc").unwrap().status, UNKNOWN);
    assert!(r.check("block.sda.queue.scheduler").is_none());
    assert_eq!(r.summary.unknown, 3);
}

#[test]
fn missing_settings_are_unknown_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sys/devices/system/cpu")).unwrap();
    std::fs::write(dir.path().join("sys/devices/system/cpu/online"), "0\n").unwrap();
    let root = rtgt_affinity::SysRoot::new(dir.path());
    let topo = Topology::from_sysfs(&root).unwrap();
    let r = DoctorReport::run(&root, &topo, Profile::Ssd, &[], &[]);
    // Every sysctl but tcp_low_latency (absent = nothing to tune) is unknown, as is the
    // governor; irqbalance is simply not running.
    assert_eq!(r.summary.unknown, 16 + 1);
    assert_eq!(r.summary.ok, 2);
    assert_eq!(r.check("vm.swappiness").unwrap().current, None);
}

#[test]
fn human_output() {
    let mut out = Vec::new();
    doctor_command(&fixture_path(), &DoctorOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("rtgt tuning doctor: profile ssd, root ")
    );
    assert_eq!(
        lines.next().unwrap(),
        "STATUS   SETTING                                  CURRENT                      SUGGESTED"
    );
    assert_eq!(
        lines.next().unwrap(),
        "warn     net.core.rmem_max                        212992                       >= 16777216"
    );
    assert!(text.contains(
        "\nwarn     irq.irqbalance                           running (pid 812)            not running\n"
    ));
    assert!(text.contains("\n         fix: sysctl -w vm.swappiness=10\n"));
    assert!(text.ends_with("summary: 6 ok, 20 warn, 0 unknown\n"));
}

/// The JSON layout is what docs/tuning.md documents: same keys, same value shapes.
#[test]
fn json_matches_the_documented_schema() {
    let opts = DoctorOptions {
        json: true,
        profile: Profile::HddStreaming,
        ..DoctorOptions::default()
    };
    let mut out = Vec::new();
    doctor_command(&fixture_path(), &opts, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, ["checks", "profile", "root", "schema", "summary"]);
    assert_eq!(v["schema"], "rtgt-doctor/1");
    assert_eq!(v["profile"], "hdd-streaming");
    assert_eq!(v["summary"]["warn"], 20);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 26);
    for c in checks {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "category",
                "current",
                "fix",
                "id",
                "path",
                "reason",
                "status",
                "subject",
                "suggested"
            ]
        );
        assert!(["ok", "warn", "unknown"].contains(&c["status"].as_str().unwrap()));
        assert!(
            ["network", "vm", "cpu", "irq", "nic", "block"]
                .contains(&c["category"].as_str().unwrap())
        );
    }
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tuning.md"),
    )
    .unwrap();
    for key in [
        "schema",
        "profile",
        "root",
        "summary",
        "checks",
        "category",
        "current",
        "fix",
        "id",
        "path",
        "reason",
        "status",
        "subject",
        "suggested",
        "rtgt-doctor/1",
    ] {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/tuning.md does not document `{key}`"
        );
    }
    // Every check is explained in the docs.
    for c in checks {
        let id = c["id"].as_str().unwrap();
        let documented = id
            .replace("ens1f0", "IF")
            .replace("ens1f1", "IF")
            .replace("sda", "DEV");
        assert!(
            docs.contains(&format!("`{documented}`")),
            "docs/tuning.md does not explain `{documented}`"
        );
    }
}
