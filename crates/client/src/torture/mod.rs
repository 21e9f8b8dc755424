//! Negative protocol tests against a live target (RFC 7143 §6.3 login errors, §7 error
//! handling, §11.17 Reject reasons, §4.2.2.1 command window, §11.7–§11.8 data transfer rules,
//! §12.1.3 CHAP): each case runs on its own connection, records what the target did against
//! what the RFC requires, and then checks that the target still serves a fresh session.
//!
//! ```
//! let names: Vec<&str> = rtgt_client::torture::cases().iter().map(|c| c.name).collect();
//! assert!(names.contains(&"cmdsn-above-window"));
//! ```

mod cases;
mod raw;

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

pub use self::cases::cases;
use crate::ConnectOptions;
use crate::client::Client;
use crate::error::Result;
use crate::url::IscsiUrl;

/// What a case concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target behaved as required.
    Pass,
    /// It did not.
    Fail,
    /// The case does not apply to this target/configuration (reason given).
    Skip(String),
}

/// The result of running one case's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// What the target did.
    pub observed: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl CaseOutcome {
    /// A pass with the observation.
    pub fn pass(observed: impl Into<String>) -> Self {
        Self {
            observed: observed.into(),
            verdict: Verdict::Pass,
        }
    }

    /// A failure with the observation.
    pub fn fail(observed: impl Into<String>) -> Self {
        Self {
            observed: observed.into(),
            verdict: Verdict::Fail,
        }
    }

    /// Not applicable.
    pub fn skip(reason: impl Into<String>) -> Self {
        let r = reason.into();
        Self {
            observed: r.clone(),
            verdict: Verdict::Skip(r),
        }
    }

    /// Pass if `ok`, else fail.
    pub fn check(ok: bool, observed: impl Into<String>) -> Self {
        if ok {
            Self::pass(observed)
        } else {
            Self::fail(observed)
        }
    }
}

/// Everything a case needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The LU under test.
    pub url: IscsiUrl,
    /// Login options (credentials, digests).
    pub opts: ConnectOptions,
}

/// One negative test.
#[derive(Clone, Copy)]
pub struct Case {
    /// Short name.
    pub name: &'static str,
    /// What it sends.
    pub description: &'static str,
    /// What RFC 7143 requires of the target.
    pub expected: &'static str,
    /// The body.
    pub run: fn(&Ctx) -> CaseOutcome,
}

impl core::fmt::Debug for Case {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The record of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Case name.
    pub name: &'static str,
    /// What it sends.
    pub description: &'static str,
    /// Required behaviour.
    pub expected: &'static str,
    /// Observed behaviour.
    pub observed: String,
    /// `pass`, `fail` or `skip`.
    pub result: &'static str,
    /// Whether a fresh session worked afterwards.
    pub target_alive: bool,
    /// Milliseconds the case took.
    pub millis: u64,
}

/// All case results.
#[derive(Debug, Clone, Serialize)]
pub struct TortureReport {
    /// The target.
    pub url: String,
    /// Per case.
    pub cases: Vec<CaseReport>,
}

impl TortureReport {
    /// Cases that failed (including a dead target afterwards).
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.result == "fail").count()
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.result == "pass").count()
    }

    /// A text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<34} {:<5} {:<5} {:<46} OBSERVED",
            "CASE", "RESULT", "ALIVE", "EXPECTED"
        );
        for c in &self.cases {
            let _ = writeln!(
                s,
                "{:<34} {:<6} {:<5} {:<46} {}",
                c.name,
                c.result.to_uppercase(),
                if c.target_alive { "yes" } else { "NO" },
                c.expected,
                c.observed
            );
        }
        let skipped = self.cases.len() - self.passed() - self.failed();
        let _ = writeln!(
            s,
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            skipped
        );
        s
    }
}

/// Whether the target accepts a fresh session and answers TEST UNIT READY and a one-block
/// READ.
pub fn target_alive(ctx: &Ctx) -> bool {
    let probe = || -> Result<()> {
        let mut c = Client::connect(&ctx.url, &ctx.opts)?;
        c.test_unit_ready()?;
        let cap = c.capacity()?;
        let mut b = vec![0u8; cap.block_len as usize];
        c.read(0, cap.block_len, &mut b)?;
        c.logout()
    };
    // Give a target that is cleaning up a dropped connection a moment.
    (0..3).any(|i| {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        probe().is_ok()
    })
}

/// Runs every case whose name contains `filter` (all when `None`).
pub fn run(url: &IscsiUrl, opts: &ConnectOptions, filter: Option<&str>) -> Result<TortureReport> {
    let ctx = Ctx {
        url: url.clone(),
        opts: opts.clone(),
    };
    if !target_alive(&ctx) {
        return Err(crate::error::ClientError::Unexpected(
            "the target does not serve a session before the first case".into(),
        ));
    }
    let mut out = Vec::new();
    for case in cases()
        .iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
    {
        let start = Instant::now();
        let outcome = (case.run)(&ctx);
        let alive = target_alive(&ctx);
        let result = match (&outcome.verdict, alive) {
            (_, false) | (Verdict::Fail, _) => "fail",
            (Verdict::Pass, true) => "pass",
            (Verdict::Skip(_), true) => "skip",
        };
        out.push(CaseReport {
            name: case.name,
            description: case.description,
            expected: case.expected,
            observed: outcome.observed,
            result,
            target_alive: alive,
            millis: start.elapsed().as_millis() as u64,
        });
    }
    Ok(TortureReport {
        url: url.to_string(),
        cases: out,
    })
}
