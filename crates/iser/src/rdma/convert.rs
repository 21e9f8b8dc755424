//! Value mappings between the verbs interface and libibverbs/librdmacm:
//! access flags (`ibv_access_flags`), work completions (`ibv_wc`: status,
//! opcode, invalidated STag for RFC 7145 §7.3.4's Send with Invalidate),
//! queue-pair states, RDMA-CM events (RFC 7145 §9.1 connection setup and
//! §10 connection loss), the RDMA Read depths negotiated in the CM
//! exchange, private-data limits and the errno values of address binding.

use core::ffi::{c_int, c_uint};
use std::net::SocketAddr;

use rdma_sys::{
    ibv_access_flags, ibv_qp_state, ibv_wc, ibv_wc_flags, ibv_wc_opcode, ibv_wc_status,
    rdma_cm_event_type,
};

use super::device::DeviceCaps;
use crate::verbs::{
    Access, CmEvent, QpCaps, QpState, VerbsError, WcOpcode, WcStatus, WorkCompletion,
};

/// Private data an RDMA-CM connect request can carry over InfiniBand/RoCE
/// (the 92 bytes of an IB CM REQ less the 36-byte RDMA-CM header).
pub(crate) const REQ_PRIVATE_DATA_MAX: usize = 56;
/// Private data of an accept (IB CM REP).
pub(crate) const REP_PRIVATE_DATA_MAX: usize = 196;
/// Private data of a reject (IB CM REJ).
pub(crate) const REJ_PRIVATE_DATA_MAX: usize = 148;

/// IB CM reject reason "invalid service ID": nobody listens on the port.
pub(crate) const IB_CM_REJ_INVALID_SERVICE_ID: i32 = 8;

const ACCESS_BITS: [(Access, ibv_access_flags); 4] = [
    (
        Access::LOCAL_WRITE,
        ibv_access_flags::IBV_ACCESS_LOCAL_WRITE,
    ),
    (
        Access::REMOTE_WRITE,
        ibv_access_flags::IBV_ACCESS_REMOTE_WRITE,
    ),
    (
        Access::REMOTE_READ,
        ibv_access_flags::IBV_ACCESS_REMOTE_READ,
    ),
    (Access::MW_BIND, ibv_access_flags::IBV_ACCESS_MW_BIND),
];

/// `ibv_reg_mr` access flags for `access`.
///
/// Remote write needs local write (the verbs rule); unknown bits are refused
/// rather than passed to the provider.
pub(crate) fn mr_access(access: Access) -> Result<c_int, VerbsError> {
    if access.contains(Access::REMOTE_WRITE) && !access.contains(Access::LOCAL_WRITE) {
        return Err(VerbsError::InvalidArgument(
            "REMOTE_WRITE requires LOCAL_WRITE",
        ));
    }
    let mut known = 0u32;
    let mut flags = 0u32;
    for (a, f) in ACCESS_BITS {
        known |= a.0;
        if access.contains(a) {
            flags |= f.0;
        }
    }
    if access.0 & !known != 0 {
        return Err(VerbsError::InvalidArgument("unknown access flags"));
    }
    c_int::try_from(flags).map_err(|_| VerbsError::InvalidArgument("unknown access flags"))
}

/// `mw_access_flags` of a window binding: remote read and/or write only.
pub(crate) fn mw_access(access: Access) -> Result<c_uint, VerbsError> {
    if access.0 & !(Access::REMOTE_READ.0 | Access::REMOTE_WRITE.0) != 0 {
        return Err(VerbsError::InvalidArgument(
            "window rights are remote read/write only",
        ));
    }
    let mut flags = 0;
    if access.contains(Access::REMOTE_READ) {
        flags |= ibv_access_flags::IBV_ACCESS_REMOTE_READ.0;
    }
    if access.contains(Access::REMOTE_WRITE) {
        flags |= ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0;
    }
    Ok(flags)
}

/// The completion status: `ibv_wc_status` values keep their numbers (the
/// [`WcStatus`] constants are numbered like the C enum), including codes
/// without a named constant, which print as hex.
pub(crate) fn wc_status(raw: ibv_wc_status::Type) -> WcStatus {
    WcStatus(raw)
}

/// The completion opcode (`ibv_wc_opcode` numbering; on an error completion
/// the provider's value is reported as is, though verbs leaves it undefined).
pub(crate) fn wc_opcode(raw: ibv_wc_opcode::Type) -> WcOpcode {
    WcOpcode(raw)
}

/// A work completion as the trait reports it.
pub(crate) fn work_completion(wc: &ibv_wc) -> WorkCompletion {
    let invalidated = (wc.wc_flags & ibv_wc_flags::IBV_WC_WITH_INV.0) != 0;
    WorkCompletion {
        wr_id: wc.wr_id,
        status: wc_status(wc.status),
        opcode: wc_opcode(wc.opcode),
        byte_len: wc.byte_len,
        invalidated_rkey: invalidated.then_some(
            // SAFETY: both members of the union are plain u32; with
            // IBV_WC_WITH_INV the provider stored the invalidated rkey in it.
            unsafe { wc.imm_data_invalidated_rkey_union.invalidated_rkey },
        ),
        qp_num: wc.qp_num,
    }
}

/// The trait's queue-pair state for an `ibv_qp_state`.
pub(crate) fn qp_state(raw: ibv_qp_state::Type) -> QpState {
    match raw {
        ibv_qp_state::IBV_QPS_RESET | ibv_qp_state::IBV_QPS_INIT => QpState::Init,
        ibv_qp_state::IBV_QPS_RTR => QpState::Rtr,
        // Send-queue drained is a paused RTS; it still completes what it has.
        ibv_qp_state::IBV_QPS_RTS | ibv_qp_state::IBV_QPS_SQD => QpState::Rts,
        // Send-queue error, error, and anything unknown: nothing more will succeed.
        _ => QpState::Err,
    }
}

/// The queue-pair event an RDMA-CM event means, if any.
///
/// Address and route resolution are consumed while the queue pair is
/// created; timewait exit, address change and multicast events carry
/// nothing for an iSER connection.
pub(crate) fn cm_event(
    kind: rdma_cm_event_type::Type,
    status: i32,
    private_data: Vec<u8>,
) -> Option<CmEvent> {
    use rdma_cm_event_type as t;
    Some(match kind {
        t::RDMA_CM_EVENT_ESTABLISHED => CmEvent::Established { private_data },
        // InfiniBand/RoCE: no listener on the port is a reject with reason 8.
        t::RDMA_CM_EVENT_REJECTED if status == IB_CM_REJ_INVALID_SERVICE_ID => CmEvent::Unreachable,
        t::RDMA_CM_EVENT_REJECTED => CmEvent::Rejected { private_data },
        t::RDMA_CM_EVENT_UNREACHABLE
        | t::RDMA_CM_EVENT_CONNECT_ERROR
        | t::RDMA_CM_EVENT_ADDR_ERROR
        | t::RDMA_CM_EVENT_ROUTE_ERROR => CmEvent::Unreachable,
        t::RDMA_CM_EVENT_DISCONNECTED | t::RDMA_CM_EVENT_DEVICE_REMOVAL => CmEvent::Disconnected,
        _ => return None,
    })
}

/// RDMA Read depths an active side asks for: (initiator depth, responder
/// resources), each `caps.max_rd_atomic` within what the device supports.
pub(crate) fn connect_depths(caps: &QpCaps, dev: &DeviceCaps) -> (u8, u8) {
    (
        caps.max_rd_atomic.min(dev.max_qp_init_rd_atom),
        caps.max_rd_atomic.min(dev.max_qp_rd_atom),
    )
}

/// RDMA Read depths a passive side accepts with: the request's values
/// (already from the acceptor's point of view: its initiator depth is what
/// the peer can answer, its responder resources what the peer will issue)
/// within our caps and the device.
pub(crate) fn accept_depths(
    caps: &QpCaps,
    dev: &DeviceCaps,
    req_initiator_depth: u8,
    req_responder_resources: u8,
) -> (u8, u8) {
    (
        req_initiator_depth
            .min(caps.max_rd_atomic)
            .min(dev.max_qp_init_rd_atom),
        req_responder_resources.min(dev.max_qp_rd_atom),
    )
}

/// The length byte of private data, or an error when it does not fit.
pub(crate) fn private_data_len(data: &[u8], max: usize) -> Result<u8, VerbsError> {
    if data.len() > max {
        return Err(VerbsError::InvalidArgument(
            "private data longer than the RDMA-CM message allows",
        ));
    }
    u8::try_from(data.len()).map_err(|_| {
        VerbsError::InvalidArgument("private data longer than the RDMA-CM message allows")
    })
}

/// The error of `rdma_bind_addr` on `addr` failing with `errno`.
pub(crate) fn bind_error(addr: &SocketAddr, errno: i32) -> VerbsError {
    match errno {
        libc::EADDRINUSE => VerbsError::AddrInUse(addr.to_string()),
        // No RDMA device has the address (or none exists at all).
        libc::EADDRNOTAVAIL | libc::ENODEV | libc::EINVAL | libc::ENETUNREACH => {
            VerbsError::AddressNotRdma(addr.to_string())
        }
        _ => super::errno_error("rdma_bind_addr", errno),
    }
}

/// The error of creating an RDMA-CM event channel or id failing with `errno`.
pub(crate) fn cm_setup_error(call: &'static str, errno: i32) -> VerbsError {
    match errno {
        // librdmacm enumerates the devices first and reports ENODEV without any.
        libc::ENODEV | libc::ENOENT | libc::ENOSYS => VerbsError::NoDevices,
        _ => super::errno_error(call, errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_caps() -> DeviceCaps {
        DeviceCaps {
            max_qp_wr: 1024,
            max_sge: 30,
            max_cqe: 4096,
            max_qp_rd_atom: 16,
            max_qp_init_rd_atom: 8,
            max_mw: 0,
            mw_type2: false,
        }
    }

    #[test]
    fn access_flags_map_to_ibv_access_flags() {
        assert_eq!(mr_access(Access::NONE), Ok(0));
        assert_eq!(mr_access(Access::LOCAL_WRITE), Ok(1));
        assert_eq!(
            mr_access(Access::LOCAL_WRITE | Access::MW_BIND),
            Ok(
                (ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
                    | ibv_access_flags::IBV_ACCESS_MW_BIND.0) as c_int
            )
        );
        assert_eq!(
            mr_access(Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ),
            Ok(7)
        );
        // Each trait flag is the C flag of the same name.
        for (a, f) in ACCESS_BITS {
            assert_eq!(a.0, f.0, "{a:?}");
        }
        assert_eq!(
            mr_access(Access::REMOTE_WRITE),
            Err(VerbsError::InvalidArgument(
                "REMOTE_WRITE requires LOCAL_WRITE"
            ))
        );
        // Zero-based (32) or on-demand (64) registrations are not asked for by iSER.
        assert_eq!(
            mr_access(Access(32)),
            Err(VerbsError::InvalidArgument("unknown access flags"))
        );
    }

    #[test]
    fn window_rights_are_remote_only() {
        assert_eq!(mw_access(Access::REMOTE_READ), Ok(4));
        assert_eq!(mw_access(Access::REMOTE_WRITE), Ok(2));
        assert_eq!(mw_access(Access::REMOTE_READ | Access::REMOTE_WRITE), Ok(6));
        assert!(matches!(
            mw_access(Access::LOCAL_WRITE | Access::REMOTE_READ),
            Err(VerbsError::InvalidArgument(_))
        ));
        assert!(mw_access(Access::MW_BIND).is_err());
    }

    #[test]
    fn completion_status_codes_keep_their_ibv_numbers() {
        let table = [
            (WcStatus::SUCCESS, ibv_wc_status::IBV_WC_SUCCESS),
            (WcStatus::LOC_LEN_ERR, ibv_wc_status::IBV_WC_LOC_LEN_ERR),
            (WcStatus::LOC_QP_OP_ERR, ibv_wc_status::IBV_WC_LOC_QP_OP_ERR),
            (WcStatus::LOC_PROT_ERR, ibv_wc_status::IBV_WC_LOC_PROT_ERR),
            (WcStatus::WR_FLUSH_ERR, ibv_wc_status::IBV_WC_WR_FLUSH_ERR),
            (WcStatus::MW_BIND_ERR, ibv_wc_status::IBV_WC_MW_BIND_ERR),
            (
                WcStatus::LOC_ACCESS_ERR,
                ibv_wc_status::IBV_WC_LOC_ACCESS_ERR,
            ),
            (
                WcStatus::REM_INV_REQ_ERR,
                ibv_wc_status::IBV_WC_REM_INV_REQ_ERR,
            ),
            (
                WcStatus::REM_ACCESS_ERR,
                ibv_wc_status::IBV_WC_REM_ACCESS_ERR,
            ),
            (WcStatus::REM_OP_ERR, ibv_wc_status::IBV_WC_REM_OP_ERR),
            (WcStatus::RETRY_EXC_ERR, ibv_wc_status::IBV_WC_RETRY_EXC_ERR),
            (
                WcStatus::RNR_RETRY_EXC_ERR,
                ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR,
            ),
            (WcStatus::GENERAL_ERR, ibv_wc_status::IBV_WC_GENERAL_ERR),
        ];
        for (ours, raw) in table {
            assert_eq!(wc_status(raw), ours);
            // The name is the C enumerator's.
            assert!(ours.name().unwrap().starts_with("IBV_WC_"));
        }
        // Codes without a constant survive and print as hex.
        let fatal = wc_status(ibv_wc_status::IBV_WC_FATAL_ERR);
        assert_eq!(fatal.0, 19);
        assert!(!fatal.is_success());
        assert_eq!(format!("{fatal:?}"), "WcStatus(0x13)");
    }

    #[test]
    fn completion_opcodes_keep_their_ibv_numbers() {
        let table = [
            (WcOpcode::SEND, ibv_wc_opcode::IBV_WC_SEND),
            (WcOpcode::RDMA_WRITE, ibv_wc_opcode::IBV_WC_RDMA_WRITE),
            (WcOpcode::RDMA_READ, ibv_wc_opcode::IBV_WC_RDMA_READ),
            (WcOpcode::BIND_MW, ibv_wc_opcode::IBV_WC_BIND_MW),
            (WcOpcode::LOCAL_INV, ibv_wc_opcode::IBV_WC_LOCAL_INV),
            (WcOpcode::RECV, ibv_wc_opcode::IBV_WC_RECV),
        ];
        for (ours, raw) in table {
            assert_eq!(wc_opcode(raw), ours);
        }
    }

    fn raw_wc(status: u32, opcode: u32, flags: u32, inv: u32) -> ibv_wc {
        ibv_wc {
            wr_id: 0x0100_0000_0000_0007,
            status,
            opcode,
            vendor_err: 0x55,
            byte_len: 4148,
            imm_data_invalidated_rkey_union: rdma_sys::imm_data_invalidated_rkey_union_t {
                invalidated_rkey: inv,
            },
            qp_num: 0x1a2b,
            src_qp: 0,
            wc_flags: flags,
            pkey_index: 0,
            slid: 0,
            sl: 0,
            dlid_path_bits: 0,
        }
    }

    #[test]
    fn a_receive_after_send_with_invalidate_reports_the_stag() {
        let wc = raw_wc(
            ibv_wc_status::IBV_WC_SUCCESS,
            ibv_wc_opcode::IBV_WC_RECV,
            ibv_wc_flags::IBV_WC_WITH_INV.0,
            0x0012_3401,
        );
        assert_eq!(
            work_completion(&wc),
            WorkCompletion {
                wr_id: 0x0100_0000_0000_0007,
                status: WcStatus::SUCCESS,
                opcode: WcOpcode::RECV,
                byte_len: 4148,
                invalidated_rkey: Some(0x0012_3401),
                qp_num: 0x1a2b,
            }
        );
        // Without the flag the union holds nothing of ours.
        let plain = raw_wc(0, ibv_wc_opcode::IBV_WC_RECV, 0, 0x0012_3401);
        assert_eq!(work_completion(&plain).invalidated_rkey, None);
        // An error completion keeps its status and identifier.
        let err = raw_wc(ibv_wc_status::IBV_WC_REM_ACCESS_ERR, 0, 0, 0);
        let wc = work_completion(&err);
        assert_eq!(wc.status, WcStatus::REM_ACCESS_ERR);
        assert_eq!(wc.wr_id, 0x0100_0000_0000_0007);
    }

    #[test]
    fn queue_pair_states_map_to_the_trait() {
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_RESET), QpState::Init);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_INIT), QpState::Init);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_RTR), QpState::Rtr);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_RTS), QpState::Rts);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_SQD), QpState::Rts);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_SQE), QpState::Err);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_ERR), QpState::Err);
        assert_eq!(qp_state(ibv_qp_state::IBV_QPS_UNKNOWN), QpState::Err);
    }

    #[test]
    fn cm_events_map_to_queue_pair_events() {
        use rdma_cm_event_type as t;
        assert_eq!(
            cm_event(t::RDMA_CM_EVENT_ESTABLISHED, 0, vec![0x40, 0, 0, 0]),
            Some(CmEvent::Established {
                private_data: vec![0x40, 0, 0, 0]
            })
        );
        // A consumer reject (IB reason 28) carries the target's private data.
        assert_eq!(
            cm_event(t::RDMA_CM_EVENT_REJECTED, 28, vec![1, 2]),
            Some(CmEvent::Rejected {
                private_data: vec![1, 2]
            })
        );
        // Nobody listening (invalid service ID) is "unreachable", as on the soft fabric.
        assert_eq!(
            cm_event(t::RDMA_CM_EVENT_REJECTED, 8, vec![]),
            Some(CmEvent::Unreachable)
        );
        for kind in [
            t::RDMA_CM_EVENT_UNREACHABLE,
            t::RDMA_CM_EVENT_CONNECT_ERROR,
            t::RDMA_CM_EVENT_ADDR_ERROR,
            t::RDMA_CM_EVENT_ROUTE_ERROR,
        ] {
            assert_eq!(cm_event(kind, -110, vec![]), Some(CmEvent::Unreachable));
        }
        for kind in [
            t::RDMA_CM_EVENT_DISCONNECTED,
            t::RDMA_CM_EVENT_DEVICE_REMOVAL,
        ] {
            assert_eq!(cm_event(kind, 0, vec![]), Some(CmEvent::Disconnected));
        }
        for kind in [
            t::RDMA_CM_EVENT_ADDR_RESOLVED,
            t::RDMA_CM_EVENT_ROUTE_RESOLVED,
            t::RDMA_CM_EVENT_TIMEWAIT_EXIT,
            t::RDMA_CM_EVENT_ADDR_CHANGE,
            t::RDMA_CM_EVENT_MULTICAST_JOIN,
        ] {
            assert_eq!(cm_event(kind, 0, vec![]), None);
        }
    }

    #[test]
    fn read_depths_stay_within_caps_device_and_peer() {
        let caps = QpCaps::default(); // max_rd_atomic 16
        let dev = dev_caps(); // responder 16, initiator 8
        assert_eq!(connect_depths(&caps, &dev), (8, 16));
        let small = QpCaps {
            max_rd_atomic: 4,
            ..caps
        };
        assert_eq!(connect_depths(&small, &dev), (4, 4));
        // The peer offers to answer 2 Reads and to issue 12.
        assert_eq!(accept_depths(&caps, &dev, 2, 12), (2, 12));
        // ...or more than the device handles.
        assert_eq!(accept_depths(&caps, &dev, 200, 200), (8, 16));
        assert_eq!(accept_depths(&small, &dev, 200, 200), (4, 16));
    }

    #[test]
    fn private_data_limits_are_enforced() {
        assert_eq!(private_data_len(&[0; 4], REQ_PRIVATE_DATA_MAX), Ok(4));
        assert_eq!(private_data_len(&[0; 56], REQ_PRIVATE_DATA_MAX), Ok(56));
        assert!(private_data_len(&[0; 57], REQ_PRIVATE_DATA_MAX).is_err());
        assert_eq!(private_data_len(&[0; 196], REP_PRIVATE_DATA_MAX), Ok(196));
        assert!(private_data_len(&[0; 149], REJ_PRIVATE_DATA_MAX).is_err());
        // The iSER CM header fits in a request.
        let iser = crate::header::CmPrivateData {
            zero_based_va: false,
            send_with_invalidate: true,
        }
        .encode();
        assert_eq!(private_data_len(&iser, REQ_PRIVATE_DATA_MAX), Ok(4));
    }

    #[test]
    fn bind_and_setup_errors_are_typed() {
        let addr: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        assert_eq!(
            bind_error(&addr, libc::EADDRINUSE),
            VerbsError::AddrInUse("127.0.0.1:3260".into())
        );
        for errno in [libc::EADDRNOTAVAIL, libc::ENODEV] {
            assert_eq!(
                bind_error(&addr, errno),
                VerbsError::AddressNotRdma("127.0.0.1:3260".into())
            );
        }
        assert!(matches!(
            bind_error(&addr, libc::ENOMEM),
            VerbsError::Os {
                call: "rdma_bind_addr",
                ..
            }
        ));
        assert_eq!(
            cm_setup_error("rdma_create_event_channel", libc::ENODEV),
            VerbsError::NoDevices
        );
        assert!(matches!(
            cm_setup_error("rdma_create_id", libc::EMFILE),
            VerbsError::Os {
                call: "rdma_create_id",
                ..
            }
        ));
    }
}
