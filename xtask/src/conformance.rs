//! The project's own libiscsi conformance runner.
//!
//! Runs libiscsi's `iscsi-test-cu` (Debian package `libiscsi-bin`) one suite of the `ALL`
//! family at a time, each under a time limit, so a hang or a crash costs one suite only. Every
//! test is classed as passed, skipped (the suite printed `[SKIPPED]`: a feature is missing or
//! not enabled) or failed (an assertion failed, or the test never reported because the suite
//! hung or the client crashed). The result is then checked against a committed ratchet file:
//! CI fails on a failure that is not listed, on a listed test that now passes (so the list only
//! shrinks), and when fewer tests pass than the committed floor.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ran and passed without a `[SKIPPED]` line.
    Passed,
    /// The suite skipped it.
    Skipped,
    /// Failed; the string says why (first failure line, or "no result: ...").
    Failed(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Skipped => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// The suites of the `ALL` family and their tests, from `iscsi-test-cu -l` output, in the order
/// libiscsi lists (and itself runs) them.
///
/// The order matters: suites share one logical unit, and some libiscsi 1.19 tests depend on what
/// earlier suites left on it (MultipathIO.CompareAndWrite compares LBA 256 without writing it
/// first), so the runner keeps libiscsi's own order, as a full `iscsi-test-cu` run would.
pub fn parse_listing(listing: &str) -> Vec<(String, Vec<String>)> {
    let mut suites: Vec<(String, Vec<String>)> = Vec::new();
    for word in listing.split_whitespace() {
        let parts: Vec<&str> = word.split('.').collect();
        if let ["ALL", suite, test] = parts.as_slice() {
            match suites.iter_mut().find(|(name, _)| name == suite) {
                Some((_, tests)) => tests.push((*test).to_string()),
                None => suites.push(((*suite).to_string(), vec![(*test).to_string()])),
            }
        }
    }
    suites
}

/// Classes every test of one suite from that suite's verbose output.
///
/// `why_missing` explains tests that printed no result (e.g. "suite hung past 120 s").
pub fn parse_suite_output(
    output: &str,
    tests: &[String],
    why_missing: &str,
) -> BTreeMap<String, Outcome> {
    // Split the output into one block per "Test: NAME ..." marker; the block ends at the next
    // marker or at CUnit's run summary.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in output.lines() {
        if line.trim_start().starts_with("Run Summary:") {
            break;
        }
        if let Some(pos) = line.find("Test: ") {
            let rest = &line[pos + "Test: ".len()..];
            if let Some(dots) = rest.find(" ...") {
                let name = rest[..dots].to_string();
                let tail = rest[dots + " ...".len()..].to_string();
                blocks.push((name, tail + "\n"));
                continue;
            }
        }
        if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }

    let mut results = BTreeMap::new();
    for (name, text) in blocks {
        results.insert(name, classify_block(&text));
    }
    for test in tests {
        results
            .entry(test.clone())
            .or_insert_with(|| Outcome::Failed(format!("no result: {why_missing}")));
    }
    results
}

fn classify_block(text: &str) -> Outcome {
    // CUnit's verdict ("passed" / "FAILED") is authoritative for the test body: libiscsi's
    // helpers print informational "[FAILED]" lines for commands a test expected might fail.
    // "[FAILED]" lines printed after a "passed" verdict come from the test's cleanup and fail
    // it; a test with no verdict at all failed to report.
    let mut verdict: Option<bool> = None;
    let mut skipped = false;
    let mut first_failure: Option<String> = None;
    let mut failure_after_pass: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        // A verdict and a cleanup failure can share a line: "passed    [FAILED] PRIN ...".
        let head = t.split("[FAILED]").next().unwrap_or("").trim();
        if head == "FAILED" || head.ends_with("...FAILED") {
            verdict = Some(false);
        } else if head == "passed" || head.ends_with("passed") {
            verdict.get_or_insert(true);
        }
        if let Some(pos) = t.find("[FAILED]") {
            let why = t[pos + "[FAILED]".len()..].trim().to_string();
            if verdict == Some(true) {
                failure_after_pass.get_or_insert_with(|| why.clone());
            }
            first_failure.get_or_insert(why);
        }
        if t.contains("[SKIPPED]") {
            skipped = true;
        }
    }
    match verdict {
        Some(false) => {
            Outcome::Failed(first_failure.unwrap_or_else(|| "test reported FAILED".to_string()))
        }
        Some(true) => match failure_after_pass {
            Some(why) => Outcome::Failed(format!("after the test passed: {why}")),
            None if skipped => Outcome::Skipped,
            None => Outcome::Passed,
        },
        None => Outcome::Failed("no verdict printed".to_string()),
    }
}

/// The committed ratchet: tests still known to fail and the floor of passing tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ratchet {
    /// `Suite.Test` names that are known to fail, with the reason given in the file.
    pub known_failing: BTreeMap<String, String>,
    /// At least this many tests must pass.
    pub min_passed: usize,
}

/// A ratchet file line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatchetError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RatchetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Ratchet {
    /// Parses the ratchet file format:
    ///
    /// ```text
    /// # comments and blank lines are ignored
    /// min-passed 205
    /// failing Suite.Test   free text saying why
    /// ```
    pub fn parse(text: &str) -> Result<Self, RatchetError> {
        let mut ratchet = Ratchet::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| RatchetError {
                line: idx + 1,
                message,
            };
            let mut words = line.splitn(3, char::is_whitespace);
            match (words.next(), words.next()) {
                (Some("min-passed"), Some(n)) => {
                    ratchet.min_passed = n
                        .parse()
                        .map_err(|_| err(format!("min-passed needs a number, found {n:?}")))?;
                }
                (Some("failing"), Some(name)) => {
                    if name.split('.').count() != 2 {
                        return Err(err(format!("expected Suite.Test, found {name:?}")));
                    }
                    let why = words.next().unwrap_or("").trim().to_string();
                    if ratchet
                        .known_failing
                        .insert(name.to_string(), why)
                        .is_some()
                    {
                        return Err(err(format!("{name} is listed twice")));
                    }
                }
                _ => return Err(err(format!("cannot parse {line:?}"))),
            }
        }
        Ok(ratchet)
    }

    /// Compares a run against the ratchet; returns the problems (empty = pass).
    pub fn check(&self, results: &BTreeMap<String, Outcome>) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, outcome) in results {
            if let Outcome::Failed(why) = outcome {
                if !self.known_failing.contains_key(name) {
                    problems.push(format!("new failure: {name}: {why}"));
                }
            }
        }
        for name in self.known_failing.keys() {
            match results.get(name) {
                Some(Outcome::Failed(_)) => {}
                Some(other) => problems.push(format!(
                    "{name} is listed as failing but {}: remove it from the list",
                    other.label()
                )),
                None => problems.push(format!("{name} is listed but no such test ran")),
            }
        }
        let passed = results
            .values()
            .filter(|o| matches!(o, Outcome::Passed))
            .count();
        if passed < self.min_passed {
            problems.push(format!(
                "only {passed} tests passed; the committed floor is {}",
                self.min_passed
            ));
        }
        problems
    }
}

/// Counts of each outcome.
pub fn summary(results: &BTreeMap<String, Outcome>) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for outcome in results.values() {
        match outcome {
            Outcome::Passed => counts.0 += 1,
            Outcome::Failed(_) => counts.1 += 1,
            Outcome::Skipped => counts.2 += 1,
        }
    }
    counts
}

/// Options of one conformance run.
pub struct RunOptions {
    /// Target URLs (a second one enables the multipath tests).
    pub urls: Vec<String>,
    /// Per-suite time limit.
    pub timeout: Duration,
    /// Only suites whose name contains this string.
    pub only: Option<String>,
    /// Where to keep each suite's raw output, if anywhere.
    pub log_dir: Option<PathBuf>,
}

/// Runs every suite and returns `Suite.Test` → outcome.
pub fn run_all(opts: &RunOptions) -> Result<BTreeMap<String, Outcome>, String> {
    let listing = Command::new("iscsi-test-cu")
        .arg("-l")
        .output()
        .map_err(|e| format!("cannot run iscsi-test-cu (install libiscsi-bin): {e}"))?;
    let suites = parse_listing(&String::from_utf8_lossy(&listing.stdout));
    if suites.is_empty() {
        return Err("iscsi-test-cu -l listed no suites".to_string());
    }
    if let Some(dir) = &opts.log_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut all = BTreeMap::new();
    for (suite, tests) in &suites {
        if opts
            .only
            .as_ref()
            .is_some_and(|only| !suite.contains(only.as_str()))
        {
            continue;
        }
        let started = Instant::now();
        let (output, why) = run_suite(suite, &opts.urls, opts.timeout)?;
        if let Some(dir) = &opts.log_dir {
            let _ = std::fs::write(dir.join(format!("{suite}.txt")), &output);
        }
        let results = parse_suite_output(&output, tests, &why);
        let (p, f, s) = summary(&results);
        eprintln!(
            "  {suite:<28} {p:>3} passed {f:>3} failed {s:>3} skipped  ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        for (test, outcome) in results {
            all.insert(format!("{suite}.{test}"), outcome);
        }
    }
    Ok(all)
}

fn run_suite(suite: &str, urls: &[String], timeout: Duration) -> Result<(String, String), String> {
    let mut child = Command::new("iscsi-test-cu")
        .args(["-d", "-v", "-t", &format!("ALL.{suite}")])
        .args(urls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run iscsi-test-cu: {e}"))?;
    // Drain both pipes on threads so a chatty suite cannot block on a full pipe.
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let why = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break if status.success() || status.code().is_some() {
                    "the suite ended without reporting it".to_string()
                } else {
                    format!("iscsi-test-cu died: {status}")
                };
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("suite hung past {} s", timeout.as_secs());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for iscsi-test-cu: {e}")),
        }
    };
    let mut output = out_thread.join().unwrap_or_default();
    output.extend(err_thread.join().unwrap_or_default());
    Ok((String::from_utf8_lossy(&output).into_owned(), why))
}

/// An `rtgtd` started for the run, on a free loopback port.
pub struct Target {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Target {
    /// Starts `rtgtd` with `--listen 127.0.0.1:PORT` plus `extra` arguments and waits until it
    /// accepts connections.
    pub fn start(rtgtd: &Path, extra: &[String]) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut child = Command::new(rtgtd)
            .arg("--listen")
            .arg(addr.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", rtgtd.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Self { child, addr });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("rtgtd exited before serving: {status}"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err(format!("rtgtd did not accept on {addr} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a clean exit (status 0) within `limit`.
    pub fn stop(mut self, limit: Duration) -> Result<(), String> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: `kill` with a pid we spawned and still own (not yet reaped) has no memory
        // effects; at worst it fails with ESRCH.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("rtgtd exited with {status} on SIGTERM")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "rtgtd did not exit within {} s of SIGTERM",
                        limit.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Prints every test that did not pass, then the summary line.
pub fn report(results: &BTreeMap<String, Outcome>) {
    for (name, outcome) in results {
        match outcome {
            Outcome::Passed => {}
            Outcome::Skipped => println!("skipped  {name}"),
            Outcome::Failed(why) => println!("failed   {name}  ({why})"),
        }
    }
    let (p, f, s) = summary(results);
    println!("{p} passed, {f} failed, {s} skipped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn listing_keeps_only_all_family_tests_in_libiscsi_order() {
        let suites = parse_listing(
            "ALL\nALL.Write10\nALL.Write10.Simple\nALL.Read10\nALL.Read10.Simple\nALL.Read10.BeyondEol\nSCSI.Read10.Simple\n",
        );
        let order: Vec<&str> = suites.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(order, ["Write10", "Read10"], "libiscsi's order, not sorted");
        assert_eq!(suites[1].1, names(&["Simple", "BeyondEol"]));
    }

    #[test]
    fn tgt_reserve6_output_is_classified_like_a_reader_would() {
        let tests = names(&[
            "Simple",
            "2Initiators",
            "Logout",
            "ITNexusLoss",
            "TargetColdReset",
            "TargetWarmReset",
            "LUNReset",
        ]);
        let r = parse_suite_output(&data("tgt-reserve6.txt"), &tests, "n/a");
        assert_eq!(r["Simple"], Outcome::Passed);
        assert!(
            matches!(&r["2Initiators"], Outcome::Failed(why) if why.starts_with("MODESENSE6 successful"))
        );
        assert_eq!(r["Logout"], Outcome::Passed);
        assert_eq!(r["TargetColdReset"], Outcome::Skipped);
        // "passed" followed by [FAILED] lines from the same test's cleanup is a failure.
        assert!(matches!(&r["LUNReset"], Outcome::Failed(why) if why.contains("PRIN")));
        assert_eq!(summary(&r), (3, 2, 2));
    }

    #[test]
    fn informational_failed_lines_inside_a_passing_test_do_not_fail_it() {
        let out =
            "  Test: UnmapVPD ...    [FAILED] WRITESAME10 command failed with status 2\npassed\n";
        let r = parse_suite_output(out, &names(&["UnmapVPD"]), "n/a");
        assert_eq!(r["UnmapVPD"], Outcome::Passed);
    }

    #[test]
    fn a_cleanup_failure_on_the_verdict_line_fails_the_test() {
        let out = "  Test: Residuals ...passed    [FAILED] PRIN command: failed with sense\n\n";
        let r = parse_suite_output(out, &names(&["Residuals"]), "n/a");
        assert!(matches!(&r["Residuals"], Outcome::Failed(why) if why.contains("PRIN")));
    }

    #[test]
    fn skipped_tests_are_not_passes() {
        let tests = names(&["Simple", "VPD", "ZeroBlocks"]);
        let r = parse_suite_output(&data("tgt-unmap.txt"), &tests, "n/a");
        assert!(r.values().all(|o| *o == Outcome::Skipped), "{r:?}");
    }

    #[test]
    fn tests_that_never_report_fail_with_the_reason() {
        let tests = names(&["Simple", "Missing"]);
        let r = parse_suite_output(
            "  Test: Simple ...passed\n",
            &tests,
            "suite hung past 120 s",
        );
        assert_eq!(r["Simple"], Outcome::Passed);
        assert_eq!(
            r["Missing"],
            Outcome::Failed("no result: suite hung past 120 s".to_string())
        );
    }

    #[test]
    fn ratchet_parses_and_rejects_bad_lines() {
        let r = Ratchet::parse("# x\nmin-passed 205\nfailing Read10.Simple  because\n").unwrap();
        assert_eq!(r.min_passed, 205);
        assert_eq!(r.known_failing["Read10.Simple"], "because");
        let e = Ratchet::parse("min-passed lots\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Ratchet::parse("\nfailing Read10\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(Ratchet::parse("failing A.B\nfailing A.B\n").is_err());
        assert!(Ratchet::parse("frobnicate\n").is_err());
    }

    #[test]
    fn ratchet_flags_new_failures_fixed_tests_and_the_floor() {
        let ratchet =
            Ratchet::parse("min-passed 2\nfailing A.Known why\nfailing A.Fixed why\n").unwrap();
        let mut results = BTreeMap::new();
        results.insert("A.Known".to_string(), Outcome::Failed("x".into()));
        results.insert("A.Fixed".to_string(), Outcome::Passed);
        results.insert("A.New".to_string(), Outcome::Failed("boom".into()));
        results.insert("A.Skip".to_string(), Outcome::Skipped);
        let problems = ratchet.check(&results);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("new failure: A.New"));
        assert!(problems[1].starts_with("A.Fixed is listed as failing but passed"));
        assert!(problems[2].starts_with("only 1 tests passed"));

        results.remove("A.New");
        results.insert("A.Fixed".to_string(), Outcome::Failed("y".into()));
        results.insert("A.Other".to_string(), Outcome::Passed);
        results.insert("A.Third".to_string(), Outcome::Passed);
        assert!(ratchet.check(&results).is_empty());
    }
}
