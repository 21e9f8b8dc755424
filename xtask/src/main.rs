//! Project tasks that are easier to keep correct in Rust than in shell.
//!
//! `cargo xtask conformance` scores rtgtd (or any target) with libiscsi's iscsi-test-cu and
//! checks the score against the committed ratchet in `xtask/conformance/ratchet.txt`.

mod conformance;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "rtgt project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Score a target with libiscsi's iscsi-test-cu, suite by suite, against the ratchet.
    Conformance {
        /// Start this rtgtd binary on a free loopback port and score it (stopped with SIGTERM
        /// afterwards, which must make it exit 0).
        #[arg(long, conflicts_with = "url")]
        rtgtd: Option<PathBuf>,
        /// Extra arguments for rtgtd (repeatable), e.g. `--rtgtd-arg=--io-engine=epoll`.
        #[arg(long = "rtgtd-arg", allow_hyphen_values = true)]
        rtgtd_args: Vec<String>,
        /// Target IQN and LUN on the started rtgtd.
        #[arg(long, default_value = "iqn.2026-11.io.rtgt:default/0")]
        path: String,
        /// Score an already running target at this URL instead (iscsi://host:port/iqn/lun).
        #[arg(long)]
        url: Option<String>,
        /// Do not pass the URL twice (disables the multipath tests).
        #[arg(long)]
        single_path: bool,
        /// Ratchet file: known failures and the floor of passing tests.
        #[arg(long, default_value = "xtask/conformance/ratchet.txt")]
        ratchet: PathBuf,
        /// Do not check the ratchet; just print the score.
        #[arg(long)]
        no_ratchet: bool,
        /// Per-suite time limit in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Only suites whose name contains this string.
        #[arg(long)]
        only: Option<String>,
        /// Keep every suite's raw output in this directory.
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.task {
        Task::Conformance {
            rtgtd,
            rtgtd_args,
            path,
            url,
            single_path,
            ratchet,
            no_ratchet,
            timeout,
            only,
            log_dir,
        } => {
            let ratchet = if no_ratchet || only.is_some() {
                None
            } else {
                match std::fs::read_to_string(&ratchet)
                    .map_err(|e| e.to_string())
                    .and_then(|t| conformance::Ratchet::parse(&t).map_err(|e| e.to_string()))
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        eprintln!("xtask: {}: {e}", ratchet.display());
                        return ExitCode::FAILURE;
                    }
                }
            };
            let target = match &rtgtd {
                Some(bin) => match conformance::Target::start(bin, &rtgtd_args) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("xtask: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => None,
            };
            let url = match (&target, url) {
                (Some(t), _) => format!("iscsi://{}/{path}", t.addr),
                (None, Some(u)) => u,
                (None, None) => {
                    eprintln!("xtask: give --rtgtd PATH or --url URL");
                    return ExitCode::FAILURE;
                }
            };
            let urls = if single_path {
                vec![url.clone()]
            } else {
                vec![url.clone(), url.clone()]
            };
            eprintln!("xtask: scoring {url} with iscsi-test-cu");
            let opts = conformance::RunOptions {
                urls,
                timeout: Duration::from_secs(timeout),
                only,
                log_dir,
            };
            let results = match conformance::run_all(&opts) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("xtask: {e}");
                    return ExitCode::FAILURE;
                }
            };
            conformance::report(&results);
            let mut ok = true;
            if let Some(t) = target {
                match t.stop(Duration::from_secs(30)) {
                    Ok(()) => eprintln!("xtask: rtgtd shut down cleanly on SIGTERM"),
                    Err(e) => {
                        eprintln!("xtask: {e}");
                        ok = false;
                    }
                }
            }
            if let Some(ratchet) = ratchet {
                let problems = ratchet.check(&results);
                for p in &problems {
                    eprintln!("ratchet: {p}");
                }
                if problems.is_empty() {
                    eprintln!(
                        "ratchet: ok ({} known failures listed, floor {} passed)",
                        ratchet.known_failing.len(),
                        ratchet.min_passed
                    );
                } else {
                    ok = false;
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
