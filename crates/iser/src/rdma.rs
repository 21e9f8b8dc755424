//! Real RDMA devices through libibverbs and librdmacm (feature `rdma`): the
//! [`Verbs`](crate::verbs::Verbs) implementation for the RDMA-capable
//! protocol layer RFC 7145 §4 puts under iSER (InfiniBand, RoCE, iWARP),
//! with connections set up by the RDMA connection manager (RFC 7145 §5.1,
//! §9.1: the iSER CM private data rides in the request and the reply).
//!
//! | Module | What |
//! |---|---|
//! | `device` | device discovery and opening; [`RdmaDevice`] implements `Verbs` |
//! | `pd` | protection domains, memory regions (`ibv_reg_mr`), type 2 memory windows |
//! | `cq` | completion queues, with a completion channel for blocking waits |
//! | `qp` | RC queue pairs on RDMA-CM ids, the listener and its connection requests |
//! | `cm` | RDMA-CM event channels (non-blocking) and ids |
//! | `wr` | the trait's work requests as `ibv_send_wr` / `ibv_recv_wr` |
//! | `convert` | value mappings: access flags, completions, QP states, CM events |
//! | `ffi` | libibverbs' inline functions (through the context's ops table), socket addresses |
//!
//! # Ownership and teardown
//!
//! Every object holds an `Arc` of what it was created from: a memory region
//! or window its protection domain, a protection domain or completion queue
//! the device, a queue pair its protection domain, completion queue and
//! RDMA-CM id (which owns its own event channel). The C objects are
//! therefore destroyed children first whatever order the Rust values are
//! dropped in: queue pair (`rdma_destroy_qp`), then its id
//! (`rdma_destroy_id`) and event channel; regions (`ibv_dereg_mr`) and
//! windows (`ibv_dealloc_mw`) before their domain (`ibv_dealloc_pd`); the
//! completion queue (`ibv_destroy_cq`) after every queue pair using it; the
//! device list (`rdma_free_devices`) last. Each CM event is copied out and
//! acknowledged (`rdma_ack_cm_event`) as soon as it is read, so
//! `rdma_destroy_id` never waits for an unacknowledged event.
//!
//! # What runs without hardware
//!
//! On a host without RDMA devices, opening fails with
//! [`VerbsError::NoDevices`] ("no RDMA devices found"), and so does creating
//! an RDMA-CM event channel (librdmacm enumerates the devices first). The
//! hardware test (`tests/iser_rdma.rs`, ignored by default) runs the soft
//! fabric's iSER acceptance scenarios over this backend; docs/iser.md says
//! how to run it and what was verified where.

mod cm;
mod convert;
mod cq;
mod device;
mod ffi;
mod pd;
mod qp;
mod wr;

pub use cq::RdmaCq;
pub use device::{DeviceCaps, RdmaDevice, device_names};
pub use pd::{RdmaMr, RdmaMw, RdmaPd};
pub use qp::{RdmaListener, RdmaQp, RdmaRequest};

use crate::verbs::VerbsError;

/// The calling thread's `errno`.
fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `call` failed with `errno`.
fn errno_error(call: &'static str, errno: i32) -> VerbsError {
    VerbsError::Os {
        call,
        errno: std::io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// `call` failed; the reason is in `errno`.
fn os_error(call: &'static str) -> VerbsError {
    errno_error(call, last_errno())
}
