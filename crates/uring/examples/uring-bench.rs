//! Load generator for the standalone store, shaped like fio so the two can be compared on the
//! same file (see `benches/uring-vs-fio.sh`).
//!
//! ```text
//! uring-bench --file F [--size BYTES] [--rw randread|randwrite|read|write] [--bs BYTES]
//!             [--qd N] [--direct] [--engine uring|threadpool] [--runtime SECS]
//!             [--fixed-buffers] [--sqpoll] [--no-punt]
//!             [--submit auto|immediate|wait]
//! ```
//! Prints one line: `engine=... rw=... bs=... qd=... direct=... iops=N mib_s=N ios=N`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rtgt_uring::{
    Completion, EngineSelect, IoQueue, Op, Store, StoreConfig, StreamsMode, SubmitPolicy,
};

struct Args {
    file: String,
    size: Option<u64>,
    rw: String,
    bs: usize,
    qd: u32,
    direct: bool,
    engine: EngineSelect,
    runtime: Duration,
    fixed: bool,
    sqpoll: bool,
    no_punt: bool,
    submit: SubmitPolicy,
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        file: String::new(),
        size: None,
        rw: "randread".into(),
        bs: 4096,
        qd: 32,
        direct: false,
        engine: EngineSelect::Uring,
        runtime: Duration::from_secs(10),
        fixed: false,
        sqpoll: false,
        no_punt: false,
        submit: SubmitPolicy::Auto,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--file" => a.file = value("--file")?,
            "--size" => a.size = Some(parse_size(&value("--size")?).ok_or("--size: bad number")?),
            "--rw" => a.rw = value("--rw")?,
            "--bs" => a.bs = parse_size(&value("--bs")?).ok_or("--bs: bad number")? as usize,
            "--qd" => a.qd = value("--qd")?.parse().map_err(|_| "--qd: bad number")?,
            "--runtime" => {
                a.runtime = Duration::from_secs_f64(
                    value("--runtime")?
                        .parse()
                        .map_err(|_| "--runtime: bad number")?,
                );
            }
            "--direct" => a.direct = true,
            "--fixed-buffers" => a.fixed = true,
            "--sqpoll" => a.sqpoll = true,
            "--no-punt" => a.no_punt = true,
            "--submit" => {
                a.submit = match value("--submit")?.as_str() {
                    "auto" => SubmitPolicy::Auto,
                    "immediate" => SubmitPolicy::Immediate,
                    "wait" => SubmitPolicy::AtWait,
                    other => return Err(format!("--submit: unknown {other}")),
                }
            }
            "--engine" => {
                a.engine = match value("--engine")?.as_str() {
                    "uring" => EngineSelect::Uring,
                    "threadpool" => EngineSelect::ThreadPool,
                    other => return Err(format!("--engine: unknown {other}")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.file.is_empty() {
        return Err("--file is required".into());
    }
    if !matches!(a.rw.as_str(), "randread" | "randwrite" | "read" | "write") {
        return Err(format!("--rw: unknown {}", a.rw));
    }
    Ok(a)
}

struct Offsets {
    rng: u64,
    next: u64,
    blocks: u64,
    bs: u64,
    random: bool,
}

impl Offsets {
    fn next(&mut self) -> u64 {
        if self.random {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % self.blocks) * self.bs
        } else {
            let off = self.next * self.bs;
            self.next = (self.next + 1) % self.blocks;
            off
        }
    }
}

fn run(args: &Args) -> Result<(u64, f64), String> {
    let mut cfg = StoreConfig {
        engine: args.engine,
        ..StoreConfig::default()
    };
    cfg.queue_depth = args.qd;
    cfg.backing.direct = args.direct;
    cfg.backing.size = args.size;
    cfg.backing.create = args.size.is_some();
    cfg.streams.mode = StreamsMode::Off;
    cfg.submit = args.submit;
    if args.no_punt {
        cfg.punt = rtgt_uring::PuntPolicy::NEVER;
    }
    // One thread owns the queue: the same ring flags fio uses (SINGLE_ISSUER, DEFER_TASKRUN,
    // COOP_TASKRUN); SQPOLL replaces DEFER_TASKRUN when asked for.
    cfg.ring.single_issuer = true;
    cfg.ring.defer_taskrun = !args.sqpoll;
    cfg.ring.coop_taskrun = true;
    if args.sqpoll {
        cfg.ring.sqpoll_idle_ms = Some(100);
    }
    let store = Store::open(&args.file, &cfg).map_err(|e| e.to_string())?;
    let mut q = store.queue().map_err(|e| e.to_string())?;
    let write = args.rw.ends_with("write");
    let size = store.backing().size_bytes();
    let mut offsets = Offsets {
        rng: 0x2545_F491_4F6C_DD1D,
        next: 0,
        blocks: size / args.bs as u64,
        bs: args.bs as u64,
        random: args.rw.starts_with("rand"),
    };
    let mut bufs = if args.fixed {
        match &mut q {
            IoQueue::Uring(u) => u
                .register_buffers(args.qd as u16, args.bs)
                .map_err(|e| e.to_string())?,
            IoQueue::Pool(_) => (0..args.qd).map(|_| q.alloc_buf(args.bs)).collect(),
        }
    } else {
        (0..args.qd)
            .map(|_| q.alloc_buf(args.bs))
            .collect::<Vec<_>>()
    };
    for b in &mut bufs {
        b.as_mut_slice().fill(0x5A);
    }
    let make = |buf, off: u64| {
        if write {
            Op::Write {
                offset: off,
                buf,
                fua: false,
            }
        } else {
            Op::Read { offset: off, buf }
        }
    };
    for buf in bufs {
        let off = offsets.next();
        q.push(make(buf, off), 0)
            .map_err(|_| "queue full at start")?;
    }
    let mut done: Vec<Completion> = Vec::with_capacity(args.qd as usize);
    let start = Instant::now();
    let mut ios = 0u64;
    loop {
        done.clear();
        q.wait(1, &mut done).map_err(|e| e.to_string())?;
        let elapsed = start.elapsed();
        let stop = elapsed >= args.runtime;
        for c in done.drain(..) {
            c.result.map_err(|e| e.to_string())?;
            ios += 1;
            if !stop {
                let off = offsets.next();
                let buf = c.buf.ok_or("buffer missing")?;
                q.push(make(buf, off), 0).map_err(|_| "queue full")?;
            }
        }
        if stop {
            // Drain what is still in flight so the queue can drop cleanly (not counted).
            while q.in_flight() > 0 {
                done.clear();
                q.wait(1, &mut done).map_err(|e| e.to_string())?;
            }
            return Ok((ios, elapsed.as_secs_f64()));
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("uring-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok((ios, secs)) => {
            let iops = ios as f64 / secs;
            let engine = match args.engine {
                EngineSelect::ThreadPool => "threadpool",
                _ => "uring",
            };
            println!(
                "engine={engine} rw={} bs={} qd={} direct={} iops={:.0} mib_s={:.1} ios={ios}",
                args.rw,
                args.bs,
                args.qd,
                u8::from(args.direct),
                iops,
                iops * args.bs as f64 / f64::from(1 << 20),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uring-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
