//! `selftest-iser`: iSER (RFC 7145) end to end in one process. An rtgt engine (rtgt-target)
//! serves one iSER portal on the in-process soft fabric with a RAM LUN; rtgt-client drives it
//! through its iSER bridge on the same fabric: the iSER-assisted login (§5.1) with the iSER
//! keys (§6), INQUIRY (SPC-5 §6.7) and READ CAPACITY (SBC-4 §5.20), writes read back and
//! compared at 512 B – 1 MiB (data placed by RDMA Write and fetched by RDMA Read, §7.3.5 and
//! §7.3.6), a stamped verify run, and a short random read and random write benchmark. The
//! engine is stopped at the end; the exit status is 0 only when every step passed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rtgt_client::bench::{self, BenchConfig, BenchResult};
use rtgt_client::connect::LoginSummary;
use rtgt_client::rng::SplitMix64;
use rtgt_client::transport::IserFabric;
use rtgt_client::verify::{self, VerifyConfig, VerifyReport};
use rtgt_client::workload::Pattern;
use rtgt_client::{Client, ClientError, ConnectOptions, IscsiUrl, TransportChoice};
use rtgt_iser::soft::SoftFabric;
use rtgt_target::config::{Capabilities, Config, Overrides};
use rtgt_target::iser::IserBackend;
use rtgt_target::{Engine, EngineOptions, IoEngine};
use serde_json::{Value, json};

use super::{IserArgs, parse_duration, parse_size, print_bench, print_json, with_progress};

/// The target the in-process engine serves.
const TARGET: &str = "iqn.2026-11.io.rtgt:selftest-iser";
/// Logical block length of the RAM LUN.
const BLOCK: u32 = 512;
/// Transfer sizes of the write/read/compare step.
const TRANSFER_SIZES: [u32; 5] = [512, 4096, 65_536, 262_144, 1 << 20];
/// The verify step's byte range is at most this much of the LUN (it reads it all back).
const VERIFY_RANGE: u64 = 16 << 20;
/// IO size of the verify and bench steps.
const IO_SIZE: u32 = 4096;

/// Arguments of `selftest-iser`.
#[derive(Args)]
pub(crate) struct SelftestArgs {
    /// Address of the iSER portal on the soft fabric (in-process: no socket is opened).
    #[arg(long, default_value = "127.0.0.1:3260")]
    portal: SocketAddr,
    /// Size of the RAM LUN (a multiple of 1M, at least 4M).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    lun_size: u64,
    /// Run time of each benchmark workload (randread, then randwrite).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    time: Duration,
    /// Outstanding commands of the verify and benchmark steps.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    qd: u16,
    /// Stamped writes of the verify step.
    #[arg(long, default_value_t = 4000)]
    verify_writes: u64,
    #[command(flatten)]
    iser: IserArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Why a step failed.
type StepResult<T> = Result<T, String>;

/// What the run has found so far: the steps in order, and the first failure.
struct Run {
    json: bool,
    steps: Vec<Value>,
    failed: Option<(&'static str, String)>,
}

impl Run {
    /// Runs `step` under a heading and records its outcome; returns its value when it passed.
    fn step<T>(
        &mut self,
        step: &'static str,
        f: impl FnOnce() -> StepResult<(T, Value)>,
    ) -> Option<T> {
        if !self.json {
            println!("== {step}");
        }
        match f() {
            Ok((v, detail)) => {
                if !self.json {
                    println!("[ok] {step}");
                }
                self.steps
                    .push(json!({ "step": step, "passed": true, "result": detail }));
                Some(v)
            }
            Err(e) => {
                if !self.json {
                    println!("[FAILED] {step}: {e}");
                }
                self.steps
                    .push(json!({ "step": step, "passed": false, "error": e }));
                self.failed.get_or_insert((step, e));
                None
            }
        }
    }
}

/// Runs the self-test (see the module docs). Argument errors return `Err` (exit status 2);
/// a failed step gives exit status 1.
pub(crate) fn run(a: &SelftestArgs) -> Result<ExitCode, ClientError> {
    if a.lun_size < 4 << 20 || a.lun_size % (1 << 20) != 0 {
        return Err(ClientError::Config(format!(
            "--lun-size {} must be a multiple of 1M and at least 4M",
            a.lun_size
        )));
    }
    if a.portal.port() == 0 {
        return Err(ClientError::Config(
            "--portal needs a port other than 0".into(),
        ));
    }
    let iser_options = a.iser.options()?;
    let config = engine_config(a)?;
    let url: IscsiUrl = format!("iscsi://{}/{TARGET}/0", a.portal).parse()?;
    let mut run = Run {
        json: a.json,
        steps: Vec::new(),
        failed: None,
    };
    if !a.json {
        println!(
            "selftest-iser: an rtgt engine in this process serves {TARGET} (LUN 0: {} bytes of RAM) \
             on the iSER portal {} of the soft fabric",
            a.lun_size, a.portal
        );
    }
    let fabric = SoftFabric::new();
    let Some(engine) = run.step("engine", || {
        start_engine(&config, &fabric, a.portal, a.json)
    }) else {
        return finish(&run, a);
    };
    let opts = ConnectOptions {
        transport: TransportChoice::Iser {
            fabric: IserFabric::Soft(fabric),
            options: iser_options,
        },
        ..ConnectOptions::default()
    };
    drive(&mut run, a, &url, &opts);
    run.step("shutdown", || {
        engine
            .shutdown()
            .map(|()| ((), json!("stopped")))
            .map_err(|e| e.to_string())
    });
    finish(&run, a)
}

/// The engine's configuration: rtgtd's embedded default with the iSER portal and the LUN
/// replaced, validated with iSER allowed (the soft fabric needs no RDMA support).
fn engine_config(a: &SelftestArgs) -> Result<Config, ClientError> {
    let caps = Capabilities {
        iser: true,
        ..Capabilities::default()
    };
    let overrides = Overrides {
        portals: vec![format!("iser:{}", a.portal)],
        target: Some(TARGET.to_owned()),
        luns: vec![format!("memory:{}", a.lun_size)],
        ..Overrides::default()
    };
    Config::embedded_default_with(caps, &overrides)
        .map_err(|e| ClientError::Config(format!("engine configuration: {e}")))
}

/// Starts the engine with its iSER portal at `portal` on `fabric`.
fn start_engine(
    config: &Config,
    fabric: &SoftFabric,
    portal: SocketAddr,
    quiet: bool,
) -> StepResult<(Engine, Value)> {
    let options = EngineOptions {
        // The TCP reactors serve nothing here: one, unpinned, with a small buffer pool.
        io_engine: IoEngine::Epoll,
        reactors: Some(1),
        pin: false,
        pool_buffers: Some(16),
        poll_us: None,
    };
    let engine = Engine::start_with_iser(config, &options, &IserBackend::Soft(fabric.clone()))
        .map_err(|e| e.to_string())?;
    if engine.iser_addrs() != [portal] {
        let msg = format!(
            "the engine serves iSER on {:?}, expected one portal at {portal}",
            engine.iser_addrs()
        );
        let _ = engine.shutdown();
        return Err(msg);
    }
    if !quiet {
        println!(
            "  iSER portal {portal} on the soft fabric; TCP reactors: 1 ({}), serving no TCP portal",
            engine.io_engine()
        );
    }
    Ok((engine, json!({ "iser_portal": portal.to_string() })))
}

/// The steps between start and shutdown; stops at the first failure.
fn drive(run: &mut Run, a: &SelftestArgs, url: &IscsiUrl, opts: &ConnectOptions) {
    let quiet = a.json;
    let Some(mut client) = run.step("login", || login(url, opts, quiet)) else {
        return;
    };
    let passed = run
        .step("inquiry", || inquiry(&mut client, quiet))
        .is_some()
        && run
            .step("capacity", || capacity(&mut client, a.lun_size, quiet))
            .is_some_and(|blocks| {
                run.step("transfers", || transfers(&mut client, blocks, quiet))
                    .is_some()
            });
    if !passed {
        // The session may be gone with the failure; the engine's shutdown ends it otherwise.
        return;
    }
    let logged_out = run.step("logout", || {
        client
            .logout()
            .map(|()| ((), Value::Null))
            .map_err(|e| e.to_string())
    });
    if logged_out.is_none() {
        return;
    }
    if run.step("verify", || verify_pass(a, url, opts)).is_none() {
        return;
    }
    for (step, pattern) in [
        ("bench randread", Pattern::RandRead),
        ("bench randwrite", Pattern::RandWrite),
    ] {
        if run
            .step(step, || bench_pass(a, url, opts, pattern))
            .is_none()
        {
            return;
        }
    }
}

/// Logs in over iSER and shows the negotiated values, the iSER keys first.
fn login(url: &IscsiUrl, opts: &ConnectOptions, quiet: bool) -> StepResult<(Client, Value)> {
    let client = Client::connect(url, opts).map_err(|e| e.to_string())?;
    let n = &client.outcome().negotiated;
    if !n.rdma_extensions {
        return Err("the login ended without RDMAExtensions=Yes".into());
    }
    let summary = LoginSummary::of(client.outcome());
    let iser = [
        ("RDMAExtensions", "Yes".to_owned()),
        (
            "TargetRecvDataSegmentLength",
            n.target_recv_data_segment_length.to_string(),
        ),
        (
            "InitiatorRecvDataSegmentLength",
            n.initiator_recv_data_segment_length.to_string(),
        ),
        (
            "MaxOutstandingUnexpectedPDUs (ours)",
            n.max_outstanding_unexpected_pdus.to_string(),
        ),
        (
            "MaxOutstandingUnexpectedPDUs (target)",
            n.peer_max_outstanding_unexpected_pdus.to_string(),
        ),
        ("HeaderDigest", summary.header_digest.to_owned()),
        ("DataDigest", summary.data_digest.to_owned()),
        ("TargetName", summary.target.clone()),
        ("TSIH", summary.tsih.to_string()),
        ("ImmediateData", super::yes_no(summary.immediate_data)),
        ("InitialR2T", super::yes_no(summary.initial_r2t)),
        ("MaxBurstLength", summary.max_burst_length.to_string()),
        ("FirstBurstLength", summary.first_burst_length.to_string()),
    ];
    if !quiet {
        for (k, v) in &iser {
            println!("  {k:<38} {v}");
        }
    }
    let detail = json!({
        "iser": {
            "rdma_extensions": true,
            "target_recv_data_segment_length": n.target_recv_data_segment_length,
            "initiator_recv_data_segment_length": n.initiator_recv_data_segment_length,
            "max_outstanding_unexpected_pdus": n.max_outstanding_unexpected_pdus,
            "target_max_outstanding_unexpected_pdus": n.peer_max_outstanding_unexpected_pdus,
        },
        "session": summary,
    });
    Ok((client, detail))
}

/// Standard INQUIRY: a connected direct-access block device.
fn inquiry(client: &mut Client, quiet: bool) -> StepResult<((), Value)> {
    let inq = client.inquiry().map_err(|e| e.to_string())?;
    if !quiet {
        println!(
            "  {} {} {}: type {:#04x} ({}), qualifier {}",
            inq.vendor,
            inq.product,
            inq.revision,
            inq.device_type,
            inq.device_type_name,
            inq.peripheral_qualifier
        );
    }
    if inq.peripheral_qualifier != 0 || inq.device_type != 0 {
        return Err(format!(
            "expected a connected direct-access device, got qualifier {} type {:#04x}",
            inq.peripheral_qualifier, inq.device_type
        ));
    }
    let detail = serde_json::to_value(&inq).map_err(|e| e.to_string())?;
    Ok(((), detail))
}

/// READ CAPACITY: the configured size in 512-byte blocks. Returns the block count.
fn capacity(client: &mut Client, lun_size: u64, quiet: bool) -> StepResult<(u64, Value)> {
    let cap = client.capacity().map_err(|e| e.to_string())?;
    if !quiet {
        println!(
            "  {} blocks of {} bytes = {} bytes",
            cap.blocks,
            cap.block_len,
            cap.bytes()
        );
    }
    if cap.block_len != BLOCK || cap.bytes() != lun_size {
        return Err(format!(
            "expected {lun_size} bytes in {BLOCK}-byte blocks, got {} blocks of {}",
            cap.blocks, cap.block_len
        ));
    }
    let detail = json!({ "blocks": cap.blocks, "block_len": cap.block_len, "bytes": cap.bytes() });
    Ok((cap.blocks, detail))
}

/// Writes a distinct pattern of every size in [`TRANSFER_SIZES`] at the start, the middle and
/// the end of the LUN, reads each back and compares.
fn transfers(client: &mut Client, blocks: u64, quiet: bool) -> StepResult<((), Value)> {
    let mut done = Vec::new();
    for size in TRANSFER_SIZES {
        let n = u64::from(size / BLOCK);
        let lbas = [0, blocks / 2 + 1, blocks - n];
        for lba in lbas {
            let mut data = vec![0u8; size as usize];
            let mut rng = SplitMix64::new((u64::from(size) << 40) ^ lba);
            for chunk in data.chunks_mut(8) {
                let v = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or_default());
            }
            let expected = data.clone();
            client
                .write(lba, BLOCK, &mut data, false)
                .map_err(|e| format!("WRITE of {size} bytes at LBA {lba}: {e}"))?;
            let mut back = vec![0u8; size as usize];
            client
                .read(lba, BLOCK, &mut back)
                .map_err(|e| format!("READ of {size} bytes at LBA {lba}: {e}"))?;
            if let Some(at) = back.iter().zip(&expected).position(|(b, e)| b != e) {
                return Err(format!(
                    "{size} bytes at LBA {lba} read back differ from what was written, first at byte {at}"
                ));
            }
        }
        if !quiet {
            println!(
                "  {size:>7} bytes at LBA {}, {} and {}: written, read back, equal",
                lbas[0], lbas[1], lbas[2]
            );
        }
        done.push(json!({ "bytes": size, "lbas": lbas }));
    }
    Ok(((), Value::Array(done)))
}

/// A stamped verify run (rtgt_client::verify) over the first [`VERIFY_RANGE`] bytes; its
/// journal lives in the temporary directory for the run.
fn verify_pass(
    a: &SelftestArgs,
    url: &IscsiUrl,
    opts: &ConnectOptions,
) -> StepResult<(VerifyReport, Value)> {
    let journal =
        std::env::temp_dir().join(format!("rtgt-selftest-iser-{}.journal", std::process::id()));
    let mut cfg = VerifyConfig::new(url.clone(), opts.clone(), journal.clone());
    cfg.block_size = IO_SIZE;
    cfg.queue_depth = a.qd;
    cfg.count = Some(a.verify_writes);
    cfg.range = Some((0, a.lun_size.min(VERIFY_RANGE)));
    let report = verify::run(&cfg, None);
    let _ = std::fs::remove_file(&journal);
    let report = report.map_err(|e| e.to_string())?;
    if !a.json {
        for line in report.to_string().lines() {
            println!("  {line}");
        }
    }
    if !report.passed() {
        return Err(format!(
            "{} write errors, {} lost, {} torn, {} stale, {} misplaced blocks{}",
            report.write_errors,
            report.lost,
            report.torn,
            report.stale,
            report.misplaced,
            report
                .interrupted
                .as_ref()
                .map(|i| format!("; interrupted: {i}"))
                .unwrap_or_default()
        ));
    }
    let detail = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    Ok((report, detail))
}

/// A 4 KiB benchmark of `pattern` at the queue depth of the run, for `--time`.
fn bench_pass(
    a: &SelftestArgs,
    url: &IscsiUrl,
    opts: &ConnectOptions,
    pattern: Pattern,
) -> StepResult<(BenchResult, Value)> {
    let mut cfg = BenchConfig::new(url.clone(), opts.clone(), pattern);
    cfg.block_size = IO_SIZE;
    cfg.queue_depth = a.qd;
    cfg.time = Some(a.time);
    cfg.count = None;
    let r = with_progress(a.json, |p| bench::run(&cfg, p.as_ref())).map_err(|e| e.to_string())?;
    if !a.json {
        print_bench(&r);
    }
    if r.report.errors > 0 || r.report.ios == 0 {
        return Err(format!(
            "{} IOs, {} errors{}",
            r.report.ios,
            r.report.errors,
            r.report
                .first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ));
    }
    let detail = serde_json::to_value(&r).map_err(|e| e.to_string())?;
    Ok((r, detail))
}

/// Prints the verdict (and with `--json` the whole run) and picks the exit status.
fn finish(run: &Run, a: &SelftestArgs) -> Result<ExitCode, ClientError> {
    if a.json {
        print_json(&json!({
            "target": TARGET,
            "portal": a.portal.to_string(),
            "lun_size": a.lun_size,
            "passed": run.failed.is_none(),
            "failed_step": run.failed.as_ref().map(|(s, _)| *s),
            "steps": run.steps,
        }))?;
    } else {
        match &run.failed {
            None => println!("selftest-iser: passed ({} steps)", run.steps.len()),
            Some((step, e)) => println!("selftest-iser: FAILED at step {step}: {e}"),
        }
    }
    Ok(if run.failed.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
