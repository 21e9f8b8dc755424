//! Runs the affinity commands without the daemon, for trying them out:
//!
//! ```text
//! cargo run -p rtgt-affinity --example affinity -- topology [--json] [--root DIR]
//! cargo run -p rtgt-affinity --example affinity -- irq plan|apply --nic IF|--device DEV [--cpus LIST] [--json] [--root DIR]
//! cargo run -p rtgt-affinity --example affinity -- doctor [--profile P] [--json] [--root DIR]
//! cargo run -p rtgt-affinity --example affinity -- placement [--nic IF]... [--device DEV]... [--root DIR]
//! ```
//! `rtgtd` exposes the same commands with clap; this example parses by hand to stay
//! dependency-free.

use std::path::PathBuf;
use std::process::ExitCode;

use rtgt_affinity::{
    AffinityError, DoctorOptions, IrqAction, IrqOptions, IrqTarget, PerformanceConfig, SysRoot,
    Topology, TopologyOptions, doctor_command, irq_command, plan_placement, topology_command,
};

fn run(args: &[String]) -> Result<ExitCode, AffinityError> {
    let usage = || AffinityError::Usage("usage: see the example's doc comment".into());
    let mut root = PathBuf::from("/");
    let mut json = false;
    let mut nics = Vec::new();
    let mut devices = Vec::new();
    let mut cpus = None;
    let mut profile = None;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--root" => root = it.next().ok_or_else(usage)?.into(),
            "--nic" => nics.push(it.next().ok_or_else(usage)?.clone()),
            "--device" => devices.push(it.next().ok_or_else(usage)?.clone()),
            "--cpus" => cpus = Some(it.next().ok_or_else(usage)?.parse()?),
            "--profile" => {
                profile = Some(it.next().ok_or_else(usage)?.parse().map_err(
                    |e: rtgt_affinity::UnknownProfile| AffinityError::Usage(e.to_string()),
                )?);
            }
            other => words.push(other.to_owned()),
        }
    }
    let mut out = std::io::stdout().lock();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["topology"] => {
            topology_command(&root, &TopologyOptions { json }, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        ["irq", action @ ("plan" | "apply")] => {
            let targets = nics
                .into_iter()
                .map(IrqTarget::Nic)
                .chain(devices.into_iter().map(IrqTarget::Device))
                .collect();
            let opts = IrqOptions {
                action: if *action == "apply" {
                    IrqAction::Apply
                } else {
                    IrqAction::Plan
                },
                targets,
                cpus,
                json,
            };
            let report = irq_command(&root, &opts, &mut out)?;
            Ok(if report.failures() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ["doctor"] => {
            let opts = DoctorOptions {
                profile: profile.unwrap_or_default(),
                nics,
                devices,
                json,
            };
            doctor_command(&root, &opts, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        ["placement"] => {
            let root = SysRoot::new(root);
            let topo = Topology::detect(&root)?;
            let nics: Vec<&str> = nics.iter().map(String::as_str).collect();
            let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
            let plan =
                plan_placement(&root, &topo, &PerformanceConfig::default(), &nics, &devices)?;
            println!(
                "reactors on CPUs {:?}; interrupts on {:?}",
                plan.reactor_cpus(),
                plan.irq_cpus
            );
            println!("{}", plan.explanation);
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(usage()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
