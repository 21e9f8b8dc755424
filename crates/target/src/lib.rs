//! The rtgt engine: per-core reactors (io_uring, with a portable epoll fallback) serving iSCSI
//! over TCP (RFC 7143) through rtgt-session and rtgt-scsi, configured by [`config`].
//!
//! ```no_run
//! use rtgt_target::{Engine, EngineOptions, config::Config};
//!
//! let config = Config::embedded_default();
//! let engine = Engine::start(&config, &EngineOptions::default())?;
//! println!("listening on {:?}", engine.local_addrs());
//! engine.run_until_signal()?;
//! # Ok::<(), rtgt_target::EngineError>(())
//! ```

#![forbid(unsafe_code)]

mod acceptor;
pub mod config;
mod engine;
pub mod iser;
mod parked;
mod reactor;
pub mod runtime;
pub mod streams;

pub use engine::{Engine, EngineError, EngineOptions, EngineStats, IoEngine, ShutdownSignals};
