//! The target role's hooks for an iSER transport (RFC 7145 §5.1 login in iSER-assisted mode,
//! §6 keys, §7.3.1 per-command state): a login marked as RDMA negotiates `RDMAExtensions=Yes`
//! and the iSER keys and exposes the negotiated values; a session tells which ITTs are tasks.

use std::sync::Arc;
use std::time::Instant;

use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role, Stage};
use rtgt_pdu::text::{encode_pairs, parse_pairs};
use rtgt_pdu::{Isid, Itt, LoginRequest, LoginStage, Lun, PduHeader, ScsiCommand, Sn};
use rtgt_session::params::ConnectionParams;
use rtgt_session::target::login::{
    LoginConnection, LoginSettings, LoginStep, RdmaLogin, SessionResolution,
};
use rtgt_session::target::{
    Catalog, Placement, SessionEvent, SessionSetup, TargetEntry, TargetSession,
};

const TARGET: &str = "iqn.2024-01.org.example:disk";

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog {
        targets: vec![TargetEntry {
            name: TARGET.into(),
            luns: vec![0],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Runs an initiator negotiator against `login` (operational stage only); returns the
/// target's final response keys and the initiator's negotiated values.
fn run_login(
    mut login: LoginConnection,
    initiator: LocalConfig,
) -> (
    LoginConnection,
    String,
    rtgt_pdu::negotiation::NegotiatedParams,
) {
    let mut ini = Negotiator::new(Role::Initiator, initiator);
    let ctx = Context::login(Stage::Operational, true);
    let req = LoginRequest {
        current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
        next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
        isid: Isid([0x80, 0, 0, 0, 0, 1]),
        itt: Itt(1),
        cmd_sn: Sn(1),
        ..Default::default()
    };
    let text = encode_pairs(&ini.offers(ctx));
    let LoginStep::NeedsSession(_) = login.handle_login(&req, &text) else {
        panic!("the login did not reach the session step");
    };
    login.resolve(SessionResolution::New { tsih: 3 });
    let rsp = login.poll_transmit().expect("the final Login Response");
    let keys = match &rsp.payload {
        rtgt_session::target::Payload::Owned(v) => v.clone(),
        _ => Vec::new(),
    };
    ini.process(ctx, &parse_pairs(&keys).unwrap()).unwrap();
    let p = ini.finish().unwrap();
    (login, String::from_utf8(keys).unwrap(), p)
}

fn initiator(rdma: bool) -> LocalConfig {
    LocalConfig {
        name: Some("iqn.2024-01.org.example:host".into()),
        target_name: Some(TARGET.into()),
        rdma_extensions: rdma,
        max_outstanding_unexpected_pdus: if rdma { 6 } else { 0 },
        target_recv_data_segment_length: 262_144,
        ..LocalConfig::default()
    }
}

const RDMA: RdmaLogin = RdmaLogin {
    target_recv_data_segment_length: 65_536,
    initiator_recv_data_segment_length: 8192,
    max_outstanding_unexpected_pdus: 8,
};

#[test]
fn an_rdma_login_negotiates_the_iser_keys() {
    let login = LoginConnection::new(catalog(), LoginSettings::default()).with_rdma(RDMA);
    assert!(
        login.negotiated().is_none(),
        "nothing before the first request"
    );
    let (login, keys, ini) = run_login(login, initiator(true));
    assert!(keys.contains("RDMAExtensions=Yes\0"), "{keys:?}");
    assert!(
        keys.contains("TargetRecvDataSegmentLength=65536\0"),
        "{keys:?}"
    );
    assert!(
        keys.contains("MaxOutstandingUnexpectedPDUs=8\0"),
        "{keys:?}"
    );
    assert!(!keys.contains("MaxRecvDataSegmentLength"), "{keys:?}");
    let t = login.negotiated().expect("the target's values");
    assert!(t.rdma_extensions);
    assert_eq!(t.target_recv_data_segment_length, 65_536);
    assert_eq!(
        (
            t.max_outstanding_unexpected_pdus,
            t.peer_max_outstanding_unexpected_pdus
        ),
        (8, 6)
    );
    assert_eq!(
        (
            ini.max_outstanding_unexpected_pdus,
            ini.peer_max_outstanding_unexpected_pdus
        ),
        (6, 8)
    );
    assert!(ini.rdma_extensions);
}

#[test]
fn an_rdma_login_refuses_digests_and_a_tcp_login_refuses_rdma() {
    let mut digests = initiator(true);
    digests.header_digests = vec![rtgt_pdu::negotiation::Digest::Crc32c];
    let login = LoginConnection::new(catalog(), LoginSettings::default()).with_rdma(RDMA);
    let (login, keys, _) = run_login(login, digests);
    assert!(keys.contains("HeaderDigest=Reject\0"), "{keys:?}");
    assert_eq!(
        login.negotiated().unwrap().header_digest,
        rtgt_pdu::negotiation::Digest::None
    );
    // A TCP connection answers RDMAExtensions=No.
    let login = LoginConnection::new(catalog(), LoginSettings::default());
    let (login, keys, _) = run_login(login, initiator(true));
    assert!(keys.contains("RDMAExtensions=No\0"), "{keys:?}");
    assert!(!login.negotiated().unwrap().rdma_extensions);
}

#[test]
fn task_by_itt_names_live_unanswered_tasks_only() {
    let mut s = TargetSession::new(SessionSetup {
        tsih: 1,
        isid: Isid([0x80, 0, 0, 0, 0, 1]),
        params: rtgt_session::params::SessionParams {
            target_name: TARGET.into(),
            ..Default::default()
        },
        catalog: catalog(),
        cmd_sn: Sn(1),
    });
    let now = Instant::now();
    let c = s.add_connection(0, ConnectionParams::default(), Sn(1), None, now);
    let command = |itt, cmd_sn| {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x00; // TEST UNIT READY
        PduHeader::ScsiCommand(ScsiCommand {
            final_pdu: true,
            lun: Lun::ZERO,
            itt: Itt(itt),
            cmd_sn: Sn(cmd_sn),
            cdb,
            ..Default::default()
        })
    };
    assert_eq!(
        s.begin_pdu(c, &command(7, 1), &[], 0, now),
        Placement::Discard
    );
    s.end_pdu(c, &[], now);
    let id = s.task_by_itt(Itt(7)).expect("the command is a task");
    assert_eq!(s.poll_event(), Some(SessionEvent::Execute(id)));
    // Outside the CmdSN window: silently dropped, no task.
    s.begin_pdu(c, &command(8, 1000), &[], 0, now);
    s.end_pdu(c, &[], now);
    assert_eq!(s.task_by_itt(Itt(8)), None);
    // Once answered the tag is free again.
    s.complete_task(id, rtgt_session::target::Completion::good(0));
    assert!(s.poll_transmit(c).is_some());
    assert_eq!(s.task_by_itt(Itt(7)), None);
}
