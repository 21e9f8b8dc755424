//! rtgt-initiator over iSER (RFC 7145): `selftest-iser` (an engine in the same process on the
//! soft fabric) end to end, its failure report, and `--transport iser` on a host without RDMA
//! devices.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtgt-initiator"))
        .args(args)
        .output()
        .expect("run rtgt-initiator")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value printed after `key` on its line of a `key   value` table.
fn row<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .filter(|rest| rest.starts_with(' '))
            .map(str::trim)
    })
}

const STEPS: [&str; 10] = [
    "engine",
    "login",
    "inquiry",
    "capacity",
    "transfers",
    "logout",
    "verify",
    "bench randread",
    "bench randwrite",
    "shutdown",
];

#[test]
fn selftest_iser_passes_every_step_and_prints_each_section() {
    let o = run(&["selftest-iser", "--time", "1"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    // Every step has its heading and passed, in order.
    let mut at = 0;
    for step in STEPS {
        let heading = format!("== {step}\n");
        let ok = format!("[ok] {step}\n");
        let h = out[at..]
            .find(&heading)
            .unwrap_or_else(|| panic!("no section {step:?} after byte {at}:\n{out}"));
        let k = out[at + h..]
            .find(&ok)
            .unwrap_or_else(|| panic!("step {step:?} did not pass:\n{out}"));
        at += h + k + ok.len();
    }
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.ends_with("selftest-iser: passed (10 steps)\n"), "{out}");
    // The iSER keys the login negotiated.
    assert_eq!(row(&out, "RDMAExtensions"), Some("Yes"), "{out}");
    assert_eq!(row(&out, "TargetRecvDataSegmentLength"), Some("65536"));
    assert_eq!(row(&out, "InitiatorRecvDataSegmentLength"), Some("8192"));
    assert_eq!(row(&out, "MaxOutstandingUnexpectedPDUs (ours)"), Some("8"));
    assert_eq!(row(&out, "HeaderDigest"), Some("None"));
    assert_eq!(row(&out, "DataDigest"), Some("None"));
    // INQUIRY, READ CAPACITY of the default 64 MiB LUN, every transfer size.
    assert!(
        out.contains("(direct access block device), qualifier 0"),
        "{out}"
    );
    assert!(
        out.contains("131072 blocks of 512 bytes = 67108864 bytes"),
        "{out}"
    );
    for size in ["512", "4096", "65536", "262144", "1048576"] {
        let line = format!("{size:>9} bytes at LBA 0, 65537 and ");
        assert!(out.contains(&line), "no {size}-byte transfer line:\n{out}");
    }
    // The verify report and both benchmark reports.
    assert!(out.contains("writes acked 4000"), "{out}");
    assert!(out.contains("result: PASS"), "{out}");
    for workload in ["randread", "randwrite"] {
        let head = format!("{workload} bs=4096 qd=16 sessions=1 connections=1 threads=1");
        let section = out
            .split(&head)
            .nth(1)
            .unwrap_or_else(|| panic!("no {workload} report:\n{out}"));
        let ios = row(section, "IOs").expect("IOs line");
        assert!(ios.contains(" 0 errors)"), "{ios}");
        assert!(!ios.starts_with("0 "), "no IOs completed: {ios}");
        assert!(row(section, "IOPS").is_some(), "{section}");
        assert!(row(section, "latency µs").is_some(), "{section}");
    }
}

#[test]
fn selftest_iser_json_reports_every_step() {
    let o = run(&[
        "selftest-iser",
        "--json",
        "--time",
        "0.3",
        "--lun-size",
        "8M",
        "--verify-writes",
        "300",
        "--qd",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(v["passed"], true);
    assert!(v["failed_step"].is_null());
    assert_eq!(v["lun_size"], 8 << 20);
    let steps = v["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(names, STEPS);
    assert!(steps.iter().all(|s| s["passed"] == true), "{v:#}");
    let iser = &steps[1]["result"]["iser"];
    assert_eq!(iser["rdma_extensions"], true);
    assert_eq!(iser["target_recv_data_segment_length"], 65_536);
    assert_eq!(steps[3]["result"]["bytes"], 8 << 20);
    assert_eq!(steps[6]["result"]["writes_acked"], 300);
    for bench in &steps[7..9] {
        let r = &bench["result"];
        assert_eq!(r["queue_depth"], 4);
        assert_eq!(r["errors"], 0);
        assert!(r["ios"].as_u64().unwrap_or(0) > 0, "{r:#}");
    }
}

#[test]
fn selftest_iser_names_the_step_that_failed_and_still_stops_the_engine() {
    // A 512 KiB iSER data area cannot hold a 1 MiB transfer: the bridge ends the connection.
    let o = run(&["selftest-iser", "--time", "0.2", "--iser-data-area", "512k"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("[FAILED] transfers: WRITE of 1048576 bytes at LBA 0"),
        "{out}"
    );
    assert!(
        out.contains("262144 bytes at LBA 0"),
        "smaller sizes pass:\n{out}"
    );
    assert!(
        !out.contains("== verify") && !out.contains("== bench"),
        "{out}"
    );
    assert!(out.contains("[ok] shutdown"), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("selftest-iser: FAILED at step transfers: ")),
        "{out}"
    );
}

#[test]
fn selftest_iser_refuses_bad_arguments() {
    for (args, message) in [
        (
            &["selftest-iser", "--lun-size", "3M"][..],
            "must be a multiple of 1M and at least 4M",
        ),
        (
            &["selftest-iser", "--portal", "127.0.0.1:0"][..],
            "--portal needs a port other than 0",
        ),
        (
            &["selftest-iser", "--iser-data-area", "4k"][..],
            "--iser-data-area 4096 outside 64k..4G",
        ),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "nothing ran: {}", stdout(&o));
    }
}

/// Whether this host has RDMA devices (then `--transport iser` may get further).
fn rdma_devices() -> bool {
    std::fs::read_dir("/sys/class/infiniband").is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn transport_iser_without_rdma_devices_fails_with_exit_status_2() {
    let url = "iscsi://127.0.0.1:3260/iqn.2026-11.io.rtgt:none/0";
    for args in [
        &["login", "--transport", "iser", "--timeout", "2s", url][..],
        &[
            "bench",
            "--transport",
            "iser",
            "--time",
            "1s",
            "--timeout",
            "2s",
            url,
        ][..],
    ] {
        let o = run(args);
        if rdma_devices() {
            eprintln!("this host has RDMA devices: not checking the no-device error");
            assert!(o.status.code().is_some(), "{args:?} ended by a signal");
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("rtgt-initiator: "), "{err}");
        assert!(err.contains("RDMA"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn transport_iser_refuses_what_iser_cannot_carry() {
    let url = "iscsi://127.0.0.1:3260/iqn.2026-11.io.rtgt:none/0";
    let o = run(&[
        "login",
        "--transport",
        "iser",
        "--header-digest",
        "crc32c",
        url,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--header-digest crc32c: iSER connections carry no digests")
            || stderr(&o).contains("built without the rdma feature"),
        "{}",
        stderr(&o)
    );
    let o = run(&["torture", "--transport", "iser", url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("torture's cases are written for iSCSI over TCP"),
        "{}",
        stderr(&o)
    );
    // The host must be an IP address: RDMA-CM resolves addresses, not names.
    let o = run(&[
        "login",
        "--transport",
        "iser",
        "iscsi://localhost/iqn.2026-11.io.rtgt:none/0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("iSER needs an IP address and port, not localhost:3260")
            || stderr(&o).contains("built without the rdma feature"),
        "{}",
        stderr(&o)
    );
}
