//! rtgt-initiator: the rtgt initiator test and load tool (argument parsing and printing only;
//! the work is done by `rtgt-client`). iSCSI over TCP (RFC 7143) or iSER (RFC 7145,
//! `--transport iser`); `selftest-iser` runs an rtgt engine in-process and drives it over iSER
//! on the soft fabric (see `selftest`).

mod selftest;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rtgt_client::bench::{self, BenchConfig};
use rtgt_client::connect::{DEFAULT_INITIATOR, LoginSummary, parse_chap_algorithms};
use rtgt_client::engine::{Coalesce, Progress};
use rtgt_client::scsi::VpdPage;
use rtgt_client::torture;
use rtgt_client::transport::{IserFabric, IserOptions};
use rtgt_client::verify::{self, VerifyConfig};
use rtgt_client::workload::Pattern;
use rtgt_client::{
    ChapCredentials, Client, ClientError, ConnectOptions, DigestChoice, IscsiUrl, Portal,
    TransportChoice,
};

#[derive(Parser)]
#[command(
    name = "rtgt-initiator",
    version,
    about = "iSCSI initiator test and load tool"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the targets a portal offers (SendTargets=All).
    Discover {
        /// Portal: host[:port] or iscsi://host[:port].
        portal: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Log in and print the negotiated parameters.
    Login {
        /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
        url: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Standard INQUIRY data and every supported VPD page, decoded.
    Inquiry {
        /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
        url: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// READ CAPACITY.
    Capacity {
        /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
        url: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Load the LU and measure IOPS, throughput, latency and initiator CPU per IO.
    Bench(BenchArgs),
    /// Write stamped blocks, read them back, and check a journal of acknowledged writes.
    Verify(VerifyArgs),
    /// Negative protocol tests against a live target.
    Torture(TortureArgs),
    /// Start an rtgt engine in this process with an iSER portal on the soft fabric and a RAM
    /// LUN, then log in over iSER, check INQUIRY and READ CAPACITY, write and verify data, and
    /// run a short benchmark. Exit status 0 only when every step passed.
    SelftestIser(selftest::SelftestArgs),
}

impl Cmd {
    /// The connection arguments of the subcommands that connect to a target.
    fn conn(&self) -> Option<&ConnArgs> {
        match self {
            Self::Discover { conn, .. }
            | Self::Login { conn, .. }
            | Self::Inquiry { conn, .. }
            | Self::Capacity { conn, .. } => Some(conn),
            Self::Bench(a) => Some(&a.conn),
            Self::Verify(a) => Some(&a.conn),
            Self::Torture(a) => Some(&a.conn),
            Self::SelftestIser(_) => None,
        }
    }
}

#[derive(Args, Clone)]
struct ConnArgs {
    /// Our iSCSI name.
    #[arg(long, default_value = DEFAULT_INITIATOR)]
    initiator_name: String,
    /// CHAP user name (overrides the URL's).
    #[arg(long)]
    chap_user: Option<String>,
    /// CHAP secret (overrides the URL's).
    #[arg(long, env = "RTGT_CHAP_SECRET", hide_env_values = true)]
    chap_secret: Option<String>,
    /// Mutual CHAP: the name the target must answer with.
    #[arg(long)]
    target_user: Option<String>,
    /// Mutual CHAP: the target's secret.
    #[arg(long, env = "RTGT_TARGET_SECRET", hide_env_values = true)]
    target_secret: Option<String>,
    /// CHAP algorithms to offer, in order (md5, sha1, sha256, sha3-256).
    #[arg(long, default_value = "sha3-256,sha256,sha1,md5")]
    chap_algorithms: String,
    /// HeaderDigest.
    #[arg(long, value_enum, default_value_t = DigestArg::None)]
    header_digest: DigestArg,
    /// DataDigest.
    #[arg(long, value_enum, default_value_t = DigestArg::None)]
    data_digest: DigestArg,
    /// MaxRecvDataSegmentLength to declare.
    #[arg(long, default_value = "256k", value_parser = parse_size32)]
    max_recv_data_segment_length: u32,
    /// MaxBurstLength to offer.
    #[arg(long, default_value = "1M", value_parser = parse_size32)]
    max_burst_length: u32,
    /// FirstBurstLength to offer.
    #[arg(long, default_value = "256k", value_parser = parse_size32)]
    first_burst_length: u32,
    /// Offer ImmediateData=No.
    #[arg(long)]
    no_immediate_data: bool,
    /// Offer InitialR2T=Yes.
    #[arg(long)]
    initial_r2t: bool,
    /// Connect/login/command timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Transport: iSCSI over TCP, or iSER (RFC 7145) on RDMA hardware (the URL's host must be
    /// the IP address of the target's RDMA port; needs the `rdma` build feature and a device).
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    #[command(flatten)]
    iser: IserArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// iSCSI over TCP (RFC 7143).
    Tcp,
    /// iSER (RFC 7145) through libibverbs/librdmacm.
    Iser,
}

/// Settings of iSER connections (`--transport iser`, `selftest-iser`).
#[derive(Args, Clone)]
struct IserArgs {
    /// iSER: registered data area per connection; bounds the data of the commands in flight.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    iser_data_area: u64,
    /// iSER: commands in flight per connection (receive buffers and memory windows).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    iser_queue_depth: u32,
}

impl IserArgs {
    /// The iSER connection settings these arguments describe.
    fn options(&self) -> Result<IserOptions, ClientError> {
        let data_area = Some(self.iser_data_area)
            .filter(|a| (1 << 16..=1 << 32).contains(a))
            .and_then(|a| usize::try_from(a).ok())
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "--iser-data-area {} outside 64k..4G",
                    self.iser_data_area
                ))
            })?;
        Ok(IserOptions {
            data_area,
            queue_depth: self.iser_queue_depth,
            ..IserOptions::default()
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DigestArg {
    /// No digest.
    None,
    /// CRC32C, required.
    Crc32c,
    /// CRC32C if the target agrees.
    Prefer,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum WorkloadArg {
    Randread,
    Randwrite,
    Randrw,
    Seqread,
    Seqwrite,
    Paraseq,
}

#[derive(Args)]
struct BenchArgs {
    /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
    url: String,
    /// Workload.
    #[arg(value_enum, default_value_t = WorkloadArg::Randread)]
    workload: WorkloadArg,
    /// Read percentage for randrw and paraseq.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    mix: u8,
    /// paraseq: number of streams.
    #[arg(long, default_value_t = 8)]
    streams: u32,
    /// paraseq: IOs per second per stream (slow streams; 0 = unlimited).
    #[arg(long, default_value_t = 50)]
    stream_rate: u32,
    /// IO size (512..1M).
    #[arg(long, default_value = "4k", value_parser = parse_size32)]
    bs: u32,
    /// Outstanding commands per connection.
    #[arg(long, default_value_t = 32)]
    qd: u16,
    /// Sessions.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Connections per session (MC/S).
    #[arg(long, default_value_t = 1)]
    connections: u16,
    /// Engine threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run time.
    #[arg(long, value_parser = parse_duration)]
    time: Option<Duration>,
    /// Number of IOs (instead of a time).
    #[arg(long)]
    count: Option<u64>,
    /// Byte range of the LU: LEN or OFFSET:LEN (sizes accept k, M, G).
    #[arg(long, value_parser = parse_range)]
    range: Option<(u64, u64)>,
    /// Set FUA on writes.
    #[arg(long)]
    fua: bool,
    /// Reconnect after a connection loss for up to this long.
    #[arg(long, value_parser = parse_duration)]
    reconnect: Option<Duration>,
    /// Seed for offsets.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Completion coalescing: auto, off, or a pause such as 100us.
    #[arg(long, default_value = "auto", value_parser = parse_coalesce)]
    coalesce: Coalesce,
    /// Busy-poll the sockets for up to this long (e.g. 100us) before sleeping, yielding the
    /// CPU between checks; 0 sleeps at once. Saves the wake-ups that dominate latency when
    /// initiator and target run on different (virtual) CPUs.
    #[arg(long, default_value = "0", value_parser = parse_poll)]
    poll: Duration,
    #[command(flatten)]
    conn: ConnArgs,
}

fn parse_poll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_millis(10) {
        return Err(format!("{s:?} is more than 10ms; poll only briefly"));
    }
    Ok(d)
}

fn parse_coalesce(s: &str) -> Result<Coalesce, String> {
    match s {
        "auto" => Ok(Coalesce::Auto),
        "off" | "0" => Ok(Coalesce::Off),
        other => {
            let us = other
                .strip_suffix("us")
                .ok_or_else(|| format!("expected auto, off or <N>us, not {other:?}"))?;
            let n: u64 = us
                .parse()
                .map_err(|_| format!("not a number of microseconds: {other:?}"))?;
            Ok(Coalesce::Fixed(Duration::from_micros(n)))
        }
    }
}

#[derive(Args)]
struct VerifyArgs {
    /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
    url: String,
    /// Journal file of acknowledged writes (created; fsync'ed as the run goes).
    #[arg(long, default_value = "rtgt-verify.journal")]
    journal: std::path::PathBuf,
    /// Re-check a previous run's journal instead of writing.
    #[arg(long)]
    resume: bool,
    /// IO size.
    #[arg(long, default_value = "4k", value_parser = parse_size32)]
    bs: u32,
    /// Outstanding commands.
    #[arg(long, default_value_t = 16)]
    qd: u16,
    /// Run time.
    #[arg(long, value_parser = parse_duration)]
    time: Option<Duration>,
    /// Number of writes (default 20000 when no time is given).
    #[arg(long)]
    count: Option<u64>,
    /// Byte range of the LU: LEN or OFFSET:LEN.
    #[arg(long, value_parser = parse_range)]
    range: Option<(u64, u64)>,
    /// Percentage of writes sent with FUA.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u8).range(0..=100))]
    fua_pct: u8,
    /// SYNCHRONIZE CACHE after this many writes (0 = never).
    #[arg(long, default_value_t = 1000)]
    flush_every: u64,
    /// Percentage of sequential (rather than random) offsets.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    seq_pct: u8,
    /// Seed of the stamps.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep reconnecting after a connection loss for up to this long.
    #[arg(long, value_parser = parse_duration)]
    reconnect: Option<Duration>,
    /// With --resume: only writes made durable (FUA or a completed SYNCHRONIZE CACHE) must
    /// be present; other lost writes are reported but not failures.
    #[arg(long)]
    durable_only: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
struct TortureArgs {
    /// iscsi://[user[%secret]@]host[:port]/IQN/LUN
    url: Option<String>,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    case: Option<String>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'b' => 1,
                _ => return Err(format!("unknown size suffix in {s:?}")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?}"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

fn parse_size32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_size(s)?).map_err(|_| format!("{s:?} does not fit 32 bits"))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    match s.split_once(':') {
        Some((o, l)) => Ok((parse_size(o)?, parse_size(l)?)),
        None => Ok((0, parse_size(s)?)),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown time unit in {s:?}")),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl ConnArgs {
    fn options(&self, url: Option<&IscsiUrl>) -> Result<ConnectOptions, ClientError> {
        let digest = |d: DigestArg| match d {
            DigestArg::None => DigestChoice::None,
            DigestArg::Crc32c => DigestChoice::Crc32c,
            DigestArg::Prefer => DigestChoice::Prefer,
        };
        let mut o = ConnectOptions {
            initiator_name: self.initiator_name.clone(),
            header_digest: digest(self.header_digest),
            data_digest: digest(self.data_digest),
            max_recv_data_segment_length: self.max_recv_data_segment_length,
            max_burst_length: self.max_burst_length,
            first_burst_length: self.first_burst_length,
            immediate_data: !self.no_immediate_data,
            initial_r2t: self.initial_r2t,
            timeout: self.timeout,
            transport: self.transport()?,
            ..ConnectOptions::default()
        };
        let user = self
            .chap_user
            .clone()
            .or_else(|| url.and_then(|u| u.user.clone()));
        let secret = self
            .chap_secret
            .clone()
            .or_else(|| url.and_then(|u| u.secret.clone()));
        let tuser = self
            .target_user
            .clone()
            .or_else(|| url.and_then(|u| u.target_user.clone()));
        let tsecret = self
            .target_secret
            .clone()
            .or_else(|| url.and_then(|u| u.target_secret.clone()));
        match (user, secret) {
            (Some(u), Some(s)) => {
                let mut c = ChapCredentials::new(u, s.into_bytes());
                c.algorithms = parse_chap_algorithms(&self.chap_algorithms)?;
                match (tuser, tsecret) {
                    (Some(tu), Some(ts)) => c = c.with_mutual(tu, ts.into_bytes()),
                    (None, None) => {}
                    _ => {
                        return Err(ClientError::Config(
                            "mutual CHAP needs both --target-user and --target-secret".into(),
                        ));
                    }
                }
                o.chap = Some(c);
            }
            (None, None) => {
                if tuser.is_some() || tsecret.is_some() {
                    return Err(ClientError::Config(
                        "mutual CHAP needs one-way CHAP credentials too".into(),
                    ));
                }
            }
            _ => {
                return Err(ClientError::Config(
                    "CHAP needs both a user and a secret".into(),
                ));
            }
        }
        Ok(o)
    }
}

impl ConnArgs {
    /// The transport `--transport` selects. iSER connections carry no digests (RFC 7145
    /// §6.1 turns them off), so asking for CRC32C with iSER is refused rather than dropped.
    fn transport(&self) -> Result<TransportChoice, ClientError> {
        match self.transport {
            TransportArg::Tcp => Ok(TransportChoice::Tcp),
            TransportArg::Iser => {
                if !cfg!(feature = "rdma") {
                    return Err(ClientError::Config(
                        "--transport iser needs RDMA support, and this rtgt-initiator was \
                         built without the rdma feature (selftest-iser runs iSER on the \
                         in-process soft fabric without it)"
                            .into(),
                    ));
                }
                for (flag, d) in [
                    ("--header-digest", self.header_digest),
                    ("--data-digest", self.data_digest),
                ] {
                    if matches!(d, DigestArg::Crc32c) {
                        return Err(ClientError::Config(format!(
                            "{flag} crc32c: iSER connections carry no digests"
                        )));
                    }
                }
                Ok(TransportChoice::Iser {
                    fabric: IserFabric::Rdma,
                    options: self.iser.options()?,
                })
            }
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), ClientError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| ClientError::Unexpected(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// Output piped into `head` or a closed pager ends the tool quietly, as for other command-line
/// tools, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
fn default_sigpipe() {
    // SAFETY: signal(2) installs the default disposition, no handler code of ours; it runs
    // first in main, before any thread exists that could observe the change mid-way.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let iser = cli
        .cmd
        .conn()
        .is_some_and(|c| c.transport == TransportArg::Iser);
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e @ ClientError::Io(_)) if iser => {
            eprintln!("rtgt-initiator: iSER on RDMA hardware: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("rtgt-initiator: {e}");
            ExitCode::from(2)
        }
    }
}

fn url_of(s: &str) -> Result<IscsiUrl, ClientError> {
    Ok(s.parse::<IscsiUrl>()?)
}

fn run(cmd: Cmd) -> Result<ExitCode, ClientError> {
    match cmd {
        Cmd::Discover { portal, conn } => {
            let portal: Portal = portal.parse()?;
            let targets = rtgt_client::discover(&portal, &conn.options(None)?)?;
            if conn.json {
                let v: Vec<_> = targets
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "target": t.name,
                            "portals": t.portals.iter().map(|p| serde_json::json!({
                                "address": p.address, "tag": p.tag })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else {
                for t in &targets {
                    println!("{}", t.name);
                    for p in &t.portals {
                        match p.tag {
                            Some(tag) => println!("    {} (portal group {tag})", p.address),
                            None => println!("    {}", p.address),
                        }
                    }
                }
            }
        }
        Cmd::Login { url, conn } => {
            let url = url_of(&url)?;
            let c = Client::connect(&url, &conn.options(Some(&url))?)?;
            let summary = LoginSummary::of(c.outcome());
            c.logout()?;
            if conn.json {
                print_json(&summary)?;
            } else {
                print_summary(&summary);
            }
        }
        Cmd::Inquiry { url, conn } => {
            let url = url_of(&url)?;
            let mut c = Client::connect(&url, &conn.options(Some(&url))?)?;
            let std_inq = c.inquiry()?;
            let mut pages = Vec::new();
            if let Ok(VpdPage::Supported { pages: list }) = c.vpd(0) {
                pages.push(VpdPage::Supported {
                    pages: list.clone(),
                });
                for p in list.into_iter().filter(|p| *p != 0) {
                    match c.vpd(p) {
                        Ok(v) => pages.push(v),
                        Err(ClientError::Scsi(f)) => {
                            eprintln!("VPD page {p:#04x}: {f}");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            c.logout()?;
            if conn.json {
                print_json(&serde_json::json!({ "standard": std_inq, "vpd": pages }))?;
            } else {
                print_inquiry(&std_inq, &pages);
            }
        }
        Cmd::Capacity { url, conn } => {
            let url = url_of(&url)?;
            let mut c = Client::connect(&url, &conn.options(Some(&url))?)?;
            let cap = c.capacity()?;
            c.logout()?;
            if conn.json {
                print_json(&serde_json::json!({
                    "blocks": cap.blocks, "block_len": cap.block_len, "bytes": cap.bytes(),
                    "physical_exponent": cap.physical_exponent, "thin": cap.thin }))?;
            } else {
                println!(
                    "{} blocks of {} bytes = {} bytes ({:.2} GiB){}",
                    cap.blocks,
                    cap.block_len,
                    cap.bytes(),
                    cap.bytes() as f64 / f64::from(1u32 << 30),
                    if cap.thin { ", thin provisioned" } else { "" }
                );
            }
        }
        Cmd::Bench(a) => return bench_cmd(&a),
        Cmd::Verify(a) => return verify_cmd(a),
        Cmd::Torture(a) => return torture_cmd(a),
        Cmd::SelftestIser(a) => return selftest::run(&a),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &LoginSummary) {
    let rows: [(&str, String); 24] = [
        ("TargetName", s.target.clone()),
        ("TargetAlias", s.target_alias.clone().unwrap_or_default()),
        (
            "TargetPortalGroupTag",
            s.target_portal_group_tag.to_string(),
        ),
        ("ISID", s.isid.clone()),
        ("TSIH", s.tsih.to_string()),
        ("AuthMethod", s.auth_method.clone()),
        ("TargetAuthenticated", s.target_authenticated.to_string()),
        ("HeaderDigest", s.header_digest.to_owned()),
        ("DataDigest", s.data_digest.to_owned()),
        (
            "MaxRecvDataSegmentLength (ours)",
            s.max_recv_data_segment_length.to_string(),
        ),
        (
            "MaxRecvDataSegmentLength (target)",
            s.target_max_recv_data_segment_length.to_string(),
        ),
        ("MaxConnections", s.max_connections.to_string()),
        ("InitialR2T", yes_no(s.initial_r2t)),
        ("ImmediateData", yes_no(s.immediate_data)),
        ("MaxBurstLength", s.max_burst_length.to_string()),
        ("FirstBurstLength", s.first_burst_length.to_string()),
        ("DefaultTime2Wait", s.default_time2wait.to_string()),
        ("DefaultTime2Retain", s.default_time2retain.to_string()),
        ("MaxOutstandingR2T", s.max_outstanding_r2t.to_string()),
        ("DataPDUInOrder", yes_no(s.data_pdu_in_order)),
        ("DataSequenceInOrder", yes_no(s.data_sequence_in_order)),
        ("ErrorRecoveryLevel", s.error_recovery_level.to_string()),
        ("ExpCmdSN", s.exp_cmd_sn.to_string()),
        ("MaxCmdSN", s.max_cmd_sn.to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<36} {v}");
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

fn print_inquiry(s: &rtgt_client::scsi::StandardInquiry, pages: &[VpdPage]) {
    println!("Standard INQUIRY");
    println!(
        "  Peripheral              qualifier {} type {:#04x} ({})",
        s.peripheral_qualifier, s.device_type, s.device_type_name
    );
    println!("  Vendor                  {}", s.vendor);
    println!("  Product                 {}", s.product);
    println!("  Revision                {}", s.revision);
    println!("  Version                 {:#04x}", s.version);
    println!(
        "  Removable {}  HiSup {}  NormACA {}  CmdQue {}  TPGS {}  3PC {}  Protect {}",
        s.removable, s.hisup, s.norm_aca, s.cmd_que, s.tpgs, s.third_party_copy, s.protect
    );
    if !s.version_descriptors.is_empty() {
        let d: Vec<String> = s
            .version_descriptors
            .iter()
            .map(|v| format!("{v:#06x}"))
            .collect();
        println!("  Version descriptors     {}", d.join(" "));
    }
    for p in pages {
        match p {
            VpdPage::Supported { pages } => {
                let l: Vec<String> = pages.iter().map(|c| format!("{c:#04x}")).collect();
                println!("VPD 0x00 Supported pages: {}", l.join(" "));
            }
            VpdPage::Serial { serial } => println!("VPD 0x80 Unit serial number: {serial}"),
            VpdPage::Identification { designators } => {
                println!("VPD 0x83 Device identification");
                for d in designators {
                    println!(
                        "  {:<22} assoc {} code set {}: {}",
                        d.type_name, d.association, d.code_set, d.value
                    );
                }
            }
            VpdPage::BlockLimits {
                max_transfer_length,
                optimal_transfer_length,
                optimal_granularity,
                max_unmap_lba_count,
                max_unmap_descriptors,
                max_write_same_length,
                max_compare_and_write,
            } => {
                println!("VPD 0xb0 Block limits");
                println!("  Max transfer length     {max_transfer_length} blocks");
                println!(
                    "  Optimal transfer length {optimal_transfer_length} blocks (granularity {optimal_granularity})"
                );
                println!(
                    "  Max UNMAP               {max_unmap_lba_count} blocks, {max_unmap_descriptors} descriptors"
                );
                println!("  Max WRITE SAME          {max_write_same_length} blocks");
                println!("  Max COMPARE AND WRITE   {max_compare_and_write} blocks");
            }
            VpdPage::Characteristics {
                rotation_rate,
                form_factor,
            } => {
                println!(
                    "VPD 0xb1 Block device characteristics: rotation rate {rotation_rate}{}, form factor {form_factor}",
                    if *rotation_rate == 1 {
                        " (non-rotating)"
                    } else {
                        ""
                    }
                );
            }
            VpdPage::Provisioning {
                lbpu,
                lbpws,
                lbpws10,
                provisioning_type,
            } => {
                println!(
                    "VPD 0xb2 Logical block provisioning: UNMAP {lbpu}, WRITE SAME(16) unmap {lbpws}, WRITE SAME(10) unmap {lbpws10}, type {provisioning_type}"
                );
            }
            VpdPage::Other { code, hex } => println!("VPD {code:#04x}: {hex}"),
        }
    }
}

/// Prints a live progress line every second while `f` runs (on a terminal only).
fn with_progress<T>(json: bool, f: impl FnOnce(Option<Arc<Progress>>) -> T) -> T {
    let progress = Arc::new(Progress::default());
    let tty = !json && std::io::stderr().is_terminal();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = tty.then(|| {
        let p = Arc::clone(&progress);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let start = Instant::now();
            let (mut last_ios, mut last_bytes, mut last_t) = (0u64, 0u64, start);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = Instant::now();
                if now.duration_since(last_t) < Duration::from_secs(1) {
                    continue;
                }
                let ios = p.ios.load(Ordering::Relaxed);
                let bytes = p.bytes.load(Ordering::Relaxed);
                let dt = now.duration_since(last_t).as_secs_f64();
                eprint!(
                    "\r[{:>5.0}s] {:>10.0} IOPS {:>9.1} MB/s  total {} IOs, {} errors   ",
                    now.duration_since(start).as_secs_f64(),
                    (ios - last_ios) as f64 / dt,
                    (bytes - last_bytes) as f64 / dt / 1e6,
                    ios,
                    p.errors.load(Ordering::Relaxed)
                );
                let _ = std::io::stderr().flush();
                (last_ios, last_bytes, last_t) = (ios, bytes, now);
            }
            eprint!("\r{:80}\r", "");
        })
    });
    let r = f(Some(Arc::clone(&progress)));
    done.store(true, Ordering::Relaxed);
    if let Some(h) = printer {
        let _ = h.join();
    }
    r
}

fn bench_cmd(a: &BenchArgs) -> Result<ExitCode, ClientError> {
    let url = url_of(&a.url)?;
    let opts = a.conn.options(Some(&url))?;
    if !(512..=(1 << 20)).contains(&a.bs) {
        return Err(ClientError::Config(format!(
            "--bs {} outside 512..1M",
            a.bs
        )));
    }
    let pattern = match a.workload {
        WorkloadArg::Randread => Pattern::RandRead,
        WorkloadArg::Randwrite => Pattern::RandWrite,
        WorkloadArg::Randrw => Pattern::RandRw { read_pct: a.mix },
        WorkloadArg::Seqread => Pattern::SeqRead,
        WorkloadArg::Seqwrite => Pattern::SeqWrite,
        WorkloadArg::Paraseq => Pattern::ParaSeq {
            streams: a.streams.max(1),
            read_pct: a.mix,
        },
    };
    let mut cfg = BenchConfig::new(url, opts, pattern);
    cfg.block_size = a.bs;
    cfg.queue_depth = a.qd;
    cfg.sessions = a.sessions;
    cfg.connections = a.connections;
    cfg.threads = a.threads;
    cfg.count = a.count;
    cfg.time = match (a.time, a.count) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    cfg.range = a.range;
    cfg.fua = a.fua;
    cfg.stream_rate =
        (a.workload == WorkloadArg::Paraseq && a.stream_rate > 0).then_some(a.stream_rate);
    if a.workload == WorkloadArg::Paraseq {
        // One IO per stream: the queue depth only needs to cover the streams.
        let per_conn = a
            .streams
            .div_ceil((a.sessions * usize::from(a.connections)) as u32);
        cfg.queue_depth = cfg
            .queue_depth
            .max(per_conn.min(u32::from(u16::MAX)) as u16);
    }
    cfg.reconnect = a.reconnect;
    cfg.seed = a.seed;
    cfg.coalesce = a.coalesce;
    cfg.poll = a.poll;
    let json = a.conn.json;
    let r = with_progress(json, |p| bench::run(&cfg, p.as_ref()))?;
    if json {
        print_json(&r)?;
    } else {
        print_bench(&r);
    }
    Ok(if r.report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints a bench result as text.
fn print_bench(r: &bench::BenchResult) {
    let rep = &r.report;
    println!(
        "{} bs={} qd={} sessions={} connections={} threads={}  ({} blocks of {} bytes)",
        r.workload,
        r.block_size,
        r.queue_depth,
        r.sessions,
        r.connections,
        r.threads,
        r.capacity.blocks,
        r.capacity.block_len
    );
    println!(
        "  IOs        {} ({} reads, {} writes, {} errors) in {:.2} s",
        rep.ios, rep.reads, rep.writes, rep.errors, rep.seconds
    );
    println!("  IOPS       {:.0}", rep.iops);
    println!(
        "  MB/s       {:.1} (read {:.1}, write {:.1})",
        rep.mb_per_s, rep.read_mb_per_s, rep.write_mb_per_s
    );
    let l = &rep.latency_us;
    println!(
        "  latency µs p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    println!(
        "  CPU        {:.3} s initiator, {:.2} µs per IO",
        rep.cpu_seconds, rep.cpu_us_per_io
    );
    if let Some(e) = &rep.first_error {
        println!("  first error: {e}");
    }
    if rep.reconnects > 0 {
        println!(
            "  reconnects {} ({} IOs re-issued)",
            rep.reconnects, rep.retried
        );
    }
}

fn verify_cmd(a: VerifyArgs) -> Result<ExitCode, ClientError> {
    let url = url_of(&a.url)?;
    let opts = a.conn.options(Some(&url))?;
    let cfg = VerifyConfig {
        url,
        opts,
        journal: a.journal,
        block_size: a.bs,
        queue_depth: a.qd,
        time: a.time,
        count: if a.time.is_none() && a.count.is_none() {
            Some(20_000)
        } else {
            a.count
        },
        range: a.range,
        fua_pct: a.fua_pct,
        flush_every: a.flush_every,
        seq_pct: a.seq_pct,
        seed: a.seed,
        reconnect: a.reconnect,
        durable_only: a.durable_only,
    };
    let json = a.conn.json;
    let report = if a.resume {
        verify::resume(&cfg)?
    } else {
        with_progress(json, |p| verify::run(&cfg, p))?
    };
    if json {
        print_json(&report)?;
    } else {
        println!("{report}");
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn torture_cmd(a: TortureArgs) -> Result<ExitCode, ClientError> {
    if a.list {
        for c in torture::cases() {
            println!("{:<40} {}", c.name, c.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = a.url else {
        return Err(ClientError::Config(
            "torture needs a URL (or --list)".into(),
        ));
    };
    if a.conn.transport == TransportArg::Iser {
        // Its cases corrupt digests and byte streams of iSCSI over TCP.
        return Err(ClientError::Config(
            "torture's cases are written for iSCSI over TCP; use --transport tcp".into(),
        ));
    }
    let url = url_of(&url)?;
    let opts = a.conn.options(Some(&url))?;
    let report = torture::run(&url, &opts, a.case.as_deref())?;
    if a.conn.json {
        print_json(&report)?;
    } else {
        print!("{}", report.table());
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
