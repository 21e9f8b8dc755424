//! The rtgt-initiator command line: argument errors, and each subcommand against a tgtd the
//! test starts (skipped with a printed reason when tgtd is not installed).

#[path = "../../../crates/client/tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

use support::{Accounts, TGT_IQN, Tgtd};

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

#[test]
fn bad_arguments_are_reported() {
    let o = run(&["login", "http://x/y/0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("URL must start with iscsi://"),
        "{}",
        stderr(&o)
    );
    let o = run(&["bench", "iscsi://127.0.0.1:1/iqn.x/0", "--bs", "4q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown size suffix"), "{}", stderr(&o));
    let o = run(&["bench", "iscsi://127.0.0.1:1/iqn.x/0", "--bs", "2M"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("outside 512..1M"), "{}", stderr(&o));
    let o = run(&["bench", "iscsi://127.0.0.1:1/iqn.x/0", "--poll", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("more than 10ms"), "{}", stderr(&o));
    let o = run(&["login", "iscsi://127.0.0.1:1/iqn.x/0", "--chap-user", "u"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("CHAP needs both a user and a secret"),
        "{}",
        stderr(&o)
    );
    // Nothing listens on port 1.
    let o = run(&["capacity", "iscsi://127.0.0.1:1/iqn.x/0", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("I/O error"), "{}", stderr(&o));
}

#[test]
fn torture_lists_its_cases() {
    let o = run(&["torture", "--list"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for case in [
        "unknown-opcode",
        "header-digest-error",
        "chap-r-oversized",
        "cmdsn-wraparound",
        "dataout-more-than-r2t",
        "abrupt-close-mid-pdu",
    ] {
        assert!(out.contains(case), "{case} missing");
    }
}

#[test]
fn subcommands_against_tgtd() {
    let Some(t) = Tgtd::start(Accounts::default()) else {
        return;
    };
    let portal = format!("127.0.0.1:{}", t.port);
    let url = t.url(None).to_string();

    let o = run(&["discover", &portal]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(TGT_IQN));

    let o = run(&["login", &url, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["target"], TGT_IQN);
    assert_eq!(v["auth_method"], "None");

    let o = run(&["inquiry", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Vendor                  IET"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("VPD 0x83 Device identification"));

    let o = run(&["capacity", &url, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bytes"], 64u64 << 20);

    let o = run(&[
        "bench", &url, "randrw", "--mix", "60", "--count", "500", "--qd", "8", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ios"], 500);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["workload"], "randrw");
    for key in ["iops", "mb_per_s", "cpu_us_per_io"] {
        assert!(v[key].is_number(), "{key}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][p].is_number(), "{p}");
    }

    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j").display().to_string();
    let o = run(&[
        "verify",
        &url,
        "--journal",
        &journal,
        "--count",
        "1000",
        "--range",
        "4M",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("result: PASS"));
    let o = run(&["verify", &url, "--journal", &journal, "--resume", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mode"], "resume");
    assert_eq!(v["lost"], 0);

    let o = run(&["torture", &url, "--case", "cmdsn-wraparound", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cases"][0]["result"], "pass");
}

#[test]
fn a_closed_stdout_ends_the_tool_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // The reader goes away before the tool writes its listing (as with `| head -0`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtgt-initiator"))
        .args(["torture", "--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rtgt-initiator");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    assert!(
        !stderr(&o).contains("panicked"),
        "panic on a closed pipe: {}",
        stderr(&o)
    );
    assert!(
        o.status.success() || o.status.signal() == Some(libc_sigpipe()),
        "{:?}",
        o.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}
