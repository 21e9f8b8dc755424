//! rtgtd: the rtgt iSCSI target daemon. Argument parsing only; the engine is rtgt-target and
//! the `topology`, `irq` and `doctor` subcommands are rtgt-affinity's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rtgt_target::config::{Capabilities, Config, LogConfig, LogFormat, Overrides};
use rtgt_target::{Engine, EngineOptions, IoEngine, ShutdownSignals};

/// The rtgt iSCSI target.
///
/// Without arguments it serves the embedded default: target iqn.2026-11.io.rtgt:default with
/// LUN 0 a 1 GiB RAM disk on 127.0.0.1:3260, no authentication.
#[derive(Debug, Parser)]
#[command(name = "rtgtd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check a configuration file and exit (0 when valid).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Listen address (repeatable); without --config it replaces the default portal.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// A portal with its transport, [tcp:|iser:]ADDR (repeatable; one portal group each):
    /// replaces the portals, next to a --listen group. iser: needs RDMA support.
    #[arg(long, value_name = "SPEC")]
    portal: Vec<String>,
    /// Name of the (first) target.
    #[arg(long, value_name = "IQN")]
    target: Option<String>,
    /// A LUN: memory:SIZE, file:PATH[,size=SIZE][,direct], null:SIZE (repeatable).
    #[arg(long, value_name = "SPEC")]
    lun: Vec<String>,
    /// I/O engine: auto (io_uring when available), uring, epoll.
    #[arg(long, value_name = "ENGINE", default_value = "auto")]
    io_engine: IoEngine,
    /// Number of reactor threads (default: one per core the planner picks).
    #[arg(long, value_name = "N")]
    reactors: Option<usize>,
    /// Do not pin reactor threads to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Microseconds a busy reactor may poll for more work before sleeping; 0 sleeps at once
    /// (default: [performance] poll_us, 0).
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u32).range(0..=i64::from(rtgt_affinity::MAX_POLL_US)))]
    poll_us: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the CPU/NUMA topology and where NICs and block devices sit.
    Topology {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Plan or apply interrupt affinity for a NIC or storage controller.
    Irq {
        #[command(subcommand)]
        action: IrqCommand,
    },
    /// Check kernel, network and block-device settings against a profile.
    Doctor {
        /// Profile: ssd (default) or hdd-streaming.
        #[arg(long, default_value = "ssd")]
        profile: rtgt_affinity::Profile,
        /// NIC to check (repeatable; default: all).
        #[arg(long = "nic")]
        nics: Vec<String>,
        /// Block device to check (repeatable; default: all).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum IrqCommand {
    /// Show the planned spread (writes nothing).
    Plan(IrqArgs),
    /// Write the plan to /proc/irq/N/smp_affinity_list (root).
    Apply(IrqArgs),
}

#[derive(Debug, Args)]
struct IrqArgs {
    /// Network interface.
    #[arg(long = "nic")]
    nics: Vec<String>,
    /// Block device or PCI address.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// CPUs to spread over, e.g. 0-3,8.
    #[arg(long)]
    cpus: Option<rtgt_affinity::CpuSet>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rtgtd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `RUST_LOG` when set, else the configured `[log] level`; `[log] format =
/// "json"` emits one JSON object per line, `"compact"` shorter lines.
fn init_logging(log: Option<&LogConfig>) {
    let level = log.map_or("info", |l| l.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.map_or(LogFormat::Text, |l| l.format) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Compact => builder.compact().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let root = std::path::Path::new("/");
    if cli.command.is_some() {
        init_logging(None);
    }
    let mut out = std::io::stdout();
    match cli.command {
        Some(Command::Topology { json }) => {
            rtgt_affinity::topology_command(
                root,
                &rtgt_affinity::TopologyOptions { json },
                &mut out,
            )
            .map_err(|e| e.to_string())?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Irq { action }) => {
            let (action, args) = match action {
                IrqCommand::Plan(a) => (rtgt_affinity::IrqAction::Plan, a),
                IrqCommand::Apply(a) => (rtgt_affinity::IrqAction::Apply, a),
            };
            let targets = args
                .nics
                .into_iter()
                .map(rtgt_affinity::IrqTarget::Nic)
                .chain(
                    args.devices
                        .into_iter()
                        .map(rtgt_affinity::IrqTarget::Device),
                )
                .collect();
            let opts = rtgt_affinity::IrqOptions {
                action,
                targets,
                cpus: args.cpus,
                json: args.json,
            };
            let report =
                rtgt_affinity::irq_command(root, &opts, &mut out).map_err(|e| e.to_string())?;
            return Ok(if report.failures() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Some(Command::Doctor {
            profile,
            nics,
            devices,
            json,
        }) => {
            let opts = rtgt_affinity::DoctorOptions {
                profile,
                nics,
                devices,
                json,
            };
            let report =
                rtgt_affinity::doctor_command(root, &opts, &mut out).map_err(|e| e.to_string())?;
            return Ok(if report.has_warnings() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            });
        }
        None => {}
    }
    let caps = Capabilities {
        iser: rtgt_target::iser::RDMA_SUPPORT,
        ..Capabilities::default()
    };
    let overrides = Overrides {
        listen: cli.listen,
        target: cli.target,
        luns: cli.lun,
        portals: cli.portal,
    };
    if let Some(path) = cli.check_config {
        let config = Config::load_with(&path, caps, &overrides).map_err(|e| e.to_string())?;
        println!(
            "{}: valid ({} target(s), {} portal group(s))",
            path.display(),
            config.targets.len(),
            config.portals.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = if let Some(path) = &cli.config {
        let c = Config::load_with(path, caps, &overrides).map_err(|e| e.to_string())?;
        init_logging(Some(&c.log));
        c
    } else {
        let c = Config::embedded_default_with(caps, &overrides).map_err(|e| e.to_string())?;
        init_logging(Some(&c.log));
        tracing::info!(
            "no --config: serving the embedded default (target {}, {} LUN(s), no authentication)",
            c.targets.first().map_or("?", |t| t.name.as_str()),
            c.targets.first().map_or(0, |t| t.luns.len()),
        );
        c
    };
    let options = EngineOptions {
        io_engine: cli.io_engine,
        reactors: cli.reactors,
        pin: !cli.no_pin,
        pool_buffers: None,
        poll_us: cli.poll_us,
    };
    // Catch SIGINT/SIGTERM before the portals listen.
    let signals = ShutdownSignals::install().map_err(|e| e.to_string())?;
    let engine = Engine::start(&config, &options).map_err(|e| e.to_string())?;
    engine.run_until(signals).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
