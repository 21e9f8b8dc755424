//! Issue 8's acceptance scenarios over real RDMA hardware: the scenarios of
//! `common::scenarios`, which the soft-fabric suite runs on every test run,
//! here over the `rdma` backend (libibverbs + librdmacm), target and
//! initiator in one process on one RDMA port.
//!
//! Every test is `#[ignore]`d: nothing here can run without an RDMA device,
//! and the machines that build rtgt usually have none. On a host with a
//! device (InfiniBand, RoCE, or soft-RoCE `rdma_rxe`):
//!
//! ```text
//! RTGT_RDMA_TEST_ADDR=192.168.100.1 cargo test -p rtgt-iser --features rdma -- --ignored
//! ```
//!
//! `RTGT_RDMA_TEST_ADDR` is the IP address of a local RDMA port (the IPoIB
//! or RoCE interface); each test listens on its own port from
//! `RTGT_RDMA_TEST_PORT` (default 18260) upwards. Without the variable or a
//! device for it, each test prints why it did not run (see it with
//! `--nocapture`) and passes; a variable that is not an IP address fails.

#![cfg(feature = "rdma")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use common::{HANG_GUARD, Pair, Setup, scenarios};
use rtgt_iser::rdma::RdmaDevice;
use rtgt_iser::verbs::{Verbs, VerbsError};
use rtgt_iser::{InitiatorConfig, InitiatorEvent, IserError, IserInitiator};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port of its own for each connection a test makes.
fn next_addr(ip: IpAddr) -> SocketAddr {
    let base = std::env::var("RTGT_RDMA_TEST_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(18260);
    SocketAddr::new(
        ip,
        base.wrapping_add(NEXT_PORT.fetch_add(1, Ordering::Relaxed)),
    )
}

/// The device serving `RTGT_RDMA_TEST_ADDR`, or why there is none.
fn hardware() -> Result<(RdmaDevice, IpAddr), String> {
    let var = std::env::var("RTGT_RDMA_TEST_ADDR").map_err(|_| {
        "RTGT_RDMA_TEST_ADDR is not set (the IP address of a local RDMA port)".to_owned()
    })?;
    // Asked to run but misconfigured: that is a failure, not a skip.
    let ip: IpAddr = var
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("RTGT_RDMA_TEST_ADDR={var:?} is not an IP address: {e}"));
    let dev = RdmaDevice::open_for_addr(ip).map_err(|e| format!("no RDMA device for {ip}: {e}"))?;
    Ok((dev, ip))
}

/// The device and address, printing why the test does not run when unavailable.
fn hardware_or_skip(test: &str) -> Option<(RdmaDevice, IpAddr)> {
    match hardware() {
        Ok(hw) => Some(hw),
        Err(why) => {
            eprintln!("{test}: not run: {why}");
            None
        }
    }
}

/// A factory of connected pairs on the test device, or `None` (with the
/// reason printed) when the scenario cannot run here.
fn pairs(test: &str) -> Option<impl FnMut(&Setup) -> Pair<RdmaDevice>> {
    let (dev, ip) = hardware_or_skip(test)?;
    if !dev.supports_memory_windows() {
        eprintln!(
            "{test}: not run: {} has no type 2 memory windows, which the iSER initiator's STags need \
             (see an_initiator_without_memory_windows_is_refused_at_setup)",
            dev.name()
        );
        return None;
    }
    Some(move |setup: &Setup| Pair::on(dev.clone(), next_addr(ip), setup))
}

macro_rules! hardware_scenario {
    ($name:ident) => {
        #[test]
        #[ignore = "needs an RDMA device and RTGT_RDMA_TEST_ADDR (see the module docs)"]
        fn $name() {
            if let Some(make) = pairs(stringify!($name)) {
                scenarios::$name(make);
            }
        }
    };
}

hardware_scenario!(login_with_rdma_extensions);
hardware_scenario!(login_without_rdma_extensions);
hardware_scenario!(reads_and_writes_512_bytes_to_1_mib);
hardware_scenario!(immediate_data);
hardware_scenario!(immediate_data_above_the_limit);
hardware_scenario!(many_commands_outstanding);
hardware_scenario!(stags_end_invalid_after_every_task);
hardware_scenario!(hello_exchange);
hardware_scenario!(unexpected_pdu_credit);

#[test]
#[ignore = "needs an RDMA device and RTGT_RDMA_TEST_ADDR (see the module docs)"]
fn verbs_round_trip() {
    let Some((dev, ip)) = hardware_or_skip("verbs_round_trip") else {
        return;
    };
    if !dev.supports_memory_windows() {
        eprintln!(
            "verbs_round_trip: not run: {} has no type 2 memory windows",
            dev.name()
        );
        return;
    }
    scenarios::verbs_round_trip(&dev, next_addr(ip));
}

#[test]
#[ignore = "needs an RDMA device and RTGT_RDMA_TEST_ADDR (see the module docs)"]
fn connecting_to_a_port_without_a_listener_is_unreachable() {
    let Some((dev, ip)) = hardware_or_skip("connecting_to_a_port_without_a_listener") else {
        return;
    };
    if !dev.supports_memory_windows() {
        eprintln!("connecting_to_a_port_without_a_listener: not run: no type 2 memory windows");
        return;
    }
    let pd = std::sync::Arc::new(dev.alloc_pd().unwrap());
    let mut ini =
        IserInitiator::connect(&dev, next_addr(ip), pd, InitiatorConfig::default()).unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match ini.poll().unwrap() {
            Some(InitiatorEvent::Failed(e)) => {
                assert_eq!(e, IserError::Unreachable);
                return;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => assert!(Instant::now() < deadline, "no answer to the connect"),
        }
        std::thread::yield_now();
    }
}

#[test]
#[ignore = "needs an RDMA device and RTGT_RDMA_TEST_ADDR (see the module docs)"]
fn an_initiator_without_memory_windows_is_refused_at_setup() {
    let Some((dev, ip)) = hardware_or_skip("an_initiator_without_memory_windows") else {
        return;
    };
    if dev.supports_memory_windows() {
        eprintln!(
            "an_initiator_without_memory_windows: not run: {} supports them",
            dev.name()
        );
        return;
    }
    let pd = std::sync::Arc::new(dev.alloc_pd().unwrap());
    let err = IserInitiator::connect(&dev, next_addr(ip), pd, InitiatorConfig::default())
        .expect_err("an initiator needs memory windows");
    assert_eq!(
        err,
        IserError::Verbs(VerbsError::Unsupported("type 2 memory windows"))
    );
}
