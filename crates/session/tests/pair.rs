//! The target role driven through the in-memory pair harness: login, negotiation, CHAP, R2T
//! sequencing, Data-In splitting, the CmdSN window, task management, NOP keep-alive, logout,
//! reinstatement and error answers — deterministically, without sockets.
#![cfg(feature = "test-utils")]

use std::time::Duration;

use rtgt_pdu::text::{KeyValue, encode_pairs, parse_pairs};
use rtgt_pdu::{
    AsyncEvent, DataOut, Isid, Itt, LoginRequest, LoginStage, LoginStatus, LogoutReason,
    LogoutRequest, LogoutResponseCode, Lun, NopOut, Pdu, PduHeader, RejectReason, ScsiStatus, Sn,
    SnackRequest, TaskMgmtRequest, TextRequest, TmfFunction, TmfResponse, Ttt,
};
use rtgt_session::chap::{ChapAlgorithm, parse_binary, parse_identifier};
use rtgt_session::harness::Pair;
use rtgt_session::target::{Acl, AuthPolicy, ChapPolicy, Credential, SessionEvent, TargetEntry};

const TARGET: &str = "iqn.2026-11.io.rtgt:test";
const INITIATOR: &str = "iqn.2026-11.io.rtgt:initiator";

fn req(csg: LoginStage, nsg: Option<LoginStage>) -> LoginRequest {
    LoginRequest {
        current_stage: csg,
        next_stage: nsg,
        isid: Isid([0x80, 0, 0, 0, 0, 1]),
        itt: Itt(0),
        cmd_sn: Sn(1),
        ..Default::default()
    }
}

fn status_of(out: &[Pdu]) -> Option<LoginStatus> {
    match &out.first()?.header {
        PduHeader::LoginResponse(r) => Some(r.status),
        _ => None,
    }
}

fn keys_of(p: &Pdu) -> Vec<(String, String)> {
    parse_pairs(&p.data)
        .unwrap()
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn key<'a>(keys: &'a [(String, String)], k: &str) -> Option<&'a str> {
    keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn chap_catalog(mutual: bool) -> rtgt_session::target::Catalog {
    let mut c = Pair::default_catalog();
    c.targets[0].auth = AuthPolicy::Chap(ChapPolicy {
        users: vec![Credential {
            user: "alice".into(),
            secret: b"alice-secret-12".to_vec(),
        }],
        target: mutual.then(|| Credential {
            user: "target".into(),
            secret: b"target-secret-34".to_vec(),
        }),
        require_mutual: false,
        algorithms: vec![ChapAlgorithm::Md5],
    });
    c
}

#[test]
fn login_write_read() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let data: Vec<u8> = (0..512 * 40).map(|i| (i % 251) as u8).collect();
    assert_eq!(pair.write10(8, &data).unwrap(), ScsiStatus::GOOD);
    let (status, read) = pair.read10(8, 40).unwrap();
    assert_eq!(status, ScsiStatus::GOOD);
    assert_eq!(read, data);
}

#[test]
fn login_answers_carry_the_right_status() {
    let cases: Vec<(Vec<(&str, &str)>, LoginStatus)> = vec![
        (vec![("TargetName", TARGET)], LoginStatus::MISSING_PARAMETER),
        (
            vec![("InitiatorName", INITIATOR)],
            LoginStatus::MISSING_PARAMETER,
        ),
        (
            vec![("InitiatorName", INITIATOR), ("TargetName", "iqn.nope:x")],
            LoginStatus::NOT_FOUND,
        ),
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Weird"),
            ],
            LoginStatus::SESSION_TYPE_NOT_SUPPORTED,
        ),
    ];
    for (keys, want) in cases {
        let mut pair = Pair::new(Pair::default_catalog());
        pair.start_login();
        let out = pair.login_pdu(
            req(
                LoginStage::OPERATIONAL_NEGOTIATION,
                Some(LoginStage::FULL_FEATURE_PHASE),
            ),
            &keys,
        );
        assert_eq!(status_of(&out), Some(want), "{keys:?}");
    }
    // ACL.
    let mut c = Pair::default_catalog();
    c.targets[0].acl = Acl::Allow(vec!["iqn.someone:else".into()]);
    let mut pair = Pair::new(c);
    assert_eq!(
        pair.login_normal(&[]),
        Err(rtgt_session::harness::HarnessError::Login(
            LoginStatus::AUTHORIZATION_FAILURE
        ))
    );
    // Version.
    let mut pair = Pair::new(Pair::default_catalog());
    pair.start_login();
    let mut r = req(
        LoginStage::OPERATIONAL_NEGOTIATION,
        Some(LoginStage::FULL_FEATURE_PHASE),
    );
    r.version_min = 2;
    r.version_max = 3;
    let out = pair.login_pdu(r, &[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    assert_eq!(status_of(&out), Some(LoginStatus::UNSUPPORTED_VERSION));
    // T and C together, and a jump backwards in stages.
    let mut pair = Pair::new(Pair::default_catalog());
    pair.start_login();
    let mut r = req(
        LoginStage::SECURITY_NEGOTIATION,
        Some(LoginStage::OPERATIONAL_NEGOTIATION),
    );
    r.continue_flag = true;
    let out = pair.login_pdu(r, &[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    assert_eq!(status_of(&out), Some(LoginStatus::INITIATOR_ERROR));
}

#[test]
fn security_then_operational_then_full_feature() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.start_login();
    let out = pair.login_pdu(
        req(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None"),
        ],
    );
    let PduHeader::LoginResponse(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.status, LoginStatus::SUCCESS);
    assert_eq!(r.next_stage, Some(LoginStage::OPERATIONAL_NEGOTIATION));
    assert_eq!(r.tsih, 0);
    let k = keys_of(&out[0]);
    assert_eq!(key(&k, "AuthMethod"), Some("None"));
    assert_eq!(key(&k, "TargetPortalGroupTag"), Some("1"));
    let out = pair.login_pdu(
        req(
            LoginStage::OPERATIONAL_NEGOTIATION,
            Some(LoginStage::FULL_FEATURE_PHASE),
        ),
        &[
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "None"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "65536"),
        ],
    );
    let PduHeader::LoginResponse(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.status, LoginStatus::SUCCESS);
    assert_eq!(r.next_stage, Some(LoginStage::FULL_FEATURE_PHASE));
    assert_ne!(r.tsih, 0);
    let k = keys_of(&out[0]);
    assert_eq!(
        key(&k, "HeaderDigest"),
        Some("CRC32C"),
        "the first of the offer that we accept"
    );
    assert_eq!(key(&k, "InitialR2T"), Some("No"));
    assert_eq!(key(&k, "ImmediateData"), Some("Yes"));
    assert_eq!(key(&k, "MaxRecvDataSegmentLength"), Some("262144"));
    let conn = pair.conn;
    let s = pair.session();
    assert_eq!(s.params().first_burst_length, 65536);
    assert!(!s.params().initial_r2t);
    assert_eq!(
        s.connection_params(conn)
            .unwrap()
            .max_xmit_data_segment_length,
        65536
    );
}

fn chap_login(pair: &mut Pair, secret: &[u8], mutual: Option<(&str, &[u8])>) -> Vec<Pdu> {
    pair.start_login();
    let out = pair.login_pdu(
        req(LoginStage::SECURITY_NEGOTIATION, None),
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "CHAP"),
        ],
    );
    assert_eq!(key(&keys_of(&out[0]), "AuthMethod"), Some("CHAP"));
    let out = pair.login_pdu(
        req(LoginStage::SECURITY_NEGOTIATION, None),
        &[("CHAP_A", "5")],
    );
    let k = keys_of(&out[0]);
    assert_eq!(key(&k, "CHAP_A"), Some("5"));
    let id = parse_identifier(key(&k, "CHAP_I").unwrap()).unwrap();
    let challenge = parse_binary(key(&k, "CHAP_C").unwrap()).unwrap();
    assert_eq!(challenge.len(), 16);
    let r = ChapAlgorithm::Md5.response(id, secret, &challenge).to_hex();
    let mut keys = vec![("CHAP_N", "alice".to_string()), ("CHAP_R", r)];
    if let Some((i, c)) = mutual {
        keys.push(("CHAP_I", i.to_string()));
        keys.push(("CHAP_C", rtgt_session::chap::format_hex(c)));
    }
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pair.login_pdu(
        req(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &keys,
    )
}

#[test]
fn chap_one_way_and_mutual() {
    let mut pair = Pair::new(chap_catalog(false));
    let out = chap_login(&mut pair, b"alice-secret-12", None);
    let PduHeader::LoginResponse(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.status, LoginStatus::SUCCESS);
    assert_eq!(r.next_stage, Some(LoginStage::OPERATIONAL_NEGOTIATION));

    let mut pair = Pair::new(chap_catalog(false));
    let out = chap_login(&mut pair, b"wrong-secret", None);
    assert_eq!(status_of(&out), Some(LoginStatus::AUTHENTICATION_FAILURE));

    // Mutual: the target answers our challenge with its own secret.
    let mut pair = Pair::new(chap_catalog(true));
    let mine = [0x5au8; 16];
    let out = chap_login(&mut pair, b"alice-secret-12", Some(("77", &mine)));
    assert_eq!(status_of(&out), Some(LoginStatus::SUCCESS));
    let k = keys_of(&out[0]);
    assert_eq!(key(&k, "CHAP_N"), Some("target"));
    assert_eq!(
        key(&k, "CHAP_R").map(str::to_string),
        Some(
            ChapAlgorithm::Md5
                .response(77, b"target-secret-34", &mine)
                .to_hex()
        )
    );

    // Mutual requested but the target has no credentials of its own.
    let mut pair = Pair::new(chap_catalog(false));
    let out = chap_login(&mut pair, b"alice-secret-12", Some(("1", &mine)));
    assert_eq!(status_of(&out), Some(LoginStatus::AUTHENTICATION_FAILURE));

    // CHAP required, initiator offers only None / skips the security stage.
    let mut pair = Pair::new(chap_catalog(false));
    pair.start_login();
    let out = pair.login_pdu(
        req(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ),
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ],
    );
    assert_eq!(status_of(&out), Some(LoginStatus::AUTHENTICATION_FAILURE));
    let mut pair = Pair::new(chap_catalog(false));
    assert_eq!(
        pair.login_normal(&[]),
        Err(rtgt_session::harness::HarnessError::Login(
            LoginStatus::AUTHENTICATION_FAILURE
        ))
    );
}

#[test]
fn r2t_sequencing_with_bursts_and_outstanding_r2ts() {
    let mut c = Pair::default_catalog();
    c.defaults.max_outstanding_r2t = 2;
    c.defaults.max_burst_length = 4096;
    c.defaults.first_burst_length = 4096;
    let mut pair = Pair::new(c);
    pair.login_normal(&[
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxOutstandingR2T", "2"),
        ("MaxBurstLength", "4096"),
        ("FirstBurstLength", "4096"),
    ])
    .unwrap();
    pair.auto_r2t = false;
    let data = vec![9u8; 4096 * 3];
    let cmd = pair.rw10(true, 0, 24, data.len() as u32);
    pair.send(&Pdu::new(cmd));
    let r2ts: Vec<rtgt_pdu::R2t> = pair
        .take_inbox()
        .into_iter()
        .filter_map(|p| match p.header {
            PduHeader::R2t(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(r2ts.len(), 2, "MaxOutstandingR2T bounds the R2Ts in flight");
    assert_eq!(
        (
            r2ts[0].buffer_offset,
            r2ts[0].desired_data_transfer_length,
            r2ts[0].r2t_sn
        ),
        (0, 4096, Sn(0))
    );
    assert_eq!(
        (
            r2ts[1].buffer_offset,
            r2ts[1].desired_data_transfer_length,
            r2ts[1].r2t_sn
        ),
        (4096, 4096, Sn(1))
    );
    assert_ne!(r2ts[0].ttt, r2ts[1].ttt);
    // Answer the first: the third R2T follows.
    let d = DataOut {
        final_pdu: true,
        itt: cmd.itt,
        ttt: r2ts[0].ttt,
        data_sn: Sn(0),
        buffer_offset: 0,
        ..Default::default()
    };
    pair.send(&Pdu::with_data(d, data[..4096].to_vec()));
    let third: Vec<rtgt_pdu::R2t> = pair
        .take_inbox()
        .into_iter()
        .filter_map(|p| match p.header {
            PduHeader::R2t(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(third.len(), 1);
    assert_eq!((third[0].buffer_offset, third[0].r2t_sn), (8192, Sn(2)));
    for (r, off) in [(r2ts[1], 4096usize), (third[0], 8192)] {
        let d = DataOut {
            final_pdu: true,
            itt: cmd.itt,
            ttt: r.ttt,
            data_sn: Sn(0),
            buffer_offset: off as u32,
            ..Default::default()
        };
        pair.send(&Pdu::with_data(d, data[off..off + 4096].to_vec()));
    }
    assert_eq!(pair.response_of(cmd.itt).unwrap().0, ScsiStatus::GOOD);
    assert_eq!(&pair.disk[..data.len()], &data[..]);
}

#[test]
fn bad_data_sn_ends_the_command_with_aborted_command() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[("InitialR2T", "Yes"), ("ImmediateData", "No")])
        .unwrap();
    pair.auto_r2t = false;
    let cmd = pair.rw10(true, 0, 1, 512);
    pair.send(&Pdu::new(cmd));
    let r = pair
        .take_inbox()
        .into_iter()
        .find_map(|p| match p.header {
            PduHeader::R2t(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let d = DataOut {
        final_pdu: true,
        itt: cmd.itt,
        ttt: r.ttt,
        data_sn: Sn(27),
        buffer_offset: 0,
        ..Default::default()
    };
    pair.send(&Pdu::with_data(d, vec![0; 512]));
    let resp = pair
        .take_inbox()
        .into_iter()
        .find(|p| p.header.itt() == cmd.itt)
        .unwrap();
    let PduHeader::ScsiResponse(s) = resp.header else {
        panic!("{resp:?}")
    };
    assert_eq!(s.status, ScsiStatus::CHECK_CONDITION);
    // Sense length 18, fixed format, ABORTED COMMAND, DATA OFFSET ERROR (4B/05).
    assert_eq!(&resp.data[..2], &[0, 18]);
    assert_eq!(resp.data[2 + 2], 0x0b);
    assert_eq!(&resp.data[2 + 12..2 + 14], &[0x4b, 0x05]);
    assert!(
        !pair.closed,
        "the connection survives at ErrorRecoveryLevel 0"
    );
}

#[test]
fn data_in_is_split_by_the_initiators_limit_with_status_in_the_last_pdu() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[("MaxRecvDataSegmentLength", "4096")])
        .unwrap();
    let cmd = pair.rw10(false, 0, 20, 20 * 512);
    pair.send(&Pdu::new(cmd));
    let pdus = pair.take_inbox();
    let data_ins: Vec<_> = pdus
        .iter()
        .filter_map(|p| match &p.header {
            PduHeader::DataIn(d) => Some((*d, p.data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(data_ins.len(), 3);
    assert_eq!(
        data_ins.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![4096, 4096, 2048]
    );
    for (i, (d, _)) in data_ins.iter().enumerate() {
        assert_eq!(d.data_sn, Sn(i as u32));
        assert_eq!(d.buffer_offset, (i * 4096) as u32);
    }
    let last = &data_ins[2].0;
    assert!(last.final_pdu);
    assert_eq!(last.status.unwrap().status, ScsiStatus::GOOD);
    assert!(data_ins[0].0.status.is_none());
    assert!(
        !pdus
            .iter()
            .any(|p| matches!(p.header, PduHeader::ScsiResponse(_))),
        "phase collapse"
    );
    // Underflow: EDTL larger than the transfer.
    let cmd = pair.rw10(false, 0, 1, 4096);
    pair.send(&Pdu::new(cmd));
    let pdus = pair.take_inbox();
    let PduHeader::DataIn(d) = &pdus.last().unwrap().header else {
        panic!()
    };
    assert_eq!(
        d.status.unwrap().residual,
        rtgt_pdu::Residual::Underflow(3584)
    );
}

#[test]
fn cmd_sn_window_orders_and_drops() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let (exp, max) = pair.session().cmd_window();
    // Outside the window: silently ignored.
    let mut cmd = pair.rw10(false, 0, 1, 512);
    cmd.cmd_sn = max.add(1);
    pair.send(&Pdu::new(cmd));
    assert!(pair.take_inbox().is_empty());
    // Out of order: held until the gap closes, then both run in order.
    let mut second = pair.rw10(false, 0, 1, 512);
    second.cmd_sn = exp.add(1);
    pair.send(&Pdu::new(second));
    assert!(pair.take_inbox().is_empty(), "CmdSN exp+1 waits for exp");
    let mut first = pair.rw10(false, 0, 1, 512);
    first.cmd_sn = exp;
    pair.send(&Pdu::new(first));
    let itts: Vec<Itt> = pair
        .take_inbox()
        .iter()
        .filter(|p| matches!(&p.header, PduHeader::DataIn(d) if d.status.is_some()))
        .map(|p| p.header.itt())
        .collect();
    assert_eq!(itts, vec![first.itt, second.itt]);
    let (exp2, max2) = pair.session().cmd_window();
    assert_eq!(exp2, exp.add(2));
    assert!(
        max2.serial_ge(max.add(2)),
        "MaxCmdSN moves as slots free up"
    );
    // Below the window (a duplicate): ignored.
    pair.send(&Pdu::new(first));
    assert!(pair.take_inbox().is_empty());
}

#[test]
fn task_management() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let tmf = |pair: &mut Pair, function: TmfFunction, rtt: Itt, ref_sn: Sn, lun: Lun| {
        let itt = pair.next_itt();
        let cmd_sn = pair.cmd_sn;
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            referenced_task_tag: rtt,
            cmd_sn,
            ref_cmd_sn: ref_sn,
            ..Default::default()
        };
        pair.send(&Pdu::new(req));
        pair.take_inbox().into_iter().find_map(|p| match p.header {
            PduHeader::TaskMgmtResponse(r) if r.itt == itt => Some(r.response),
            _ => None,
        })
    };
    // ABORT TASK of a task the engine is executing: answered only after it lets go.
    pair.hold = true;
    let cmd = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(cmd));
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::ABORT_TASK,
            cmd.itt,
            cmd.cmd_sn,
            Lun::ZERO
        ),
        None
    );
    assert!(pair.events.contains(&SessionEvent::Aborted(pair.held[0])));
    pair.release_held();
    let inbox = pair.take_inbox();
    assert!(inbox.iter().any(|p| matches!(&p.header, PduHeader::TaskMgmtResponse(r) if r.response == TmfResponse::FUNCTION_COMPLETE)));
    assert!(
        !inbox.iter().any(|p| p.header.itt() == cmd.itt),
        "no response for the aborted task"
    );
    // ABORT TASK of a task that completed meanwhile.
    let cmd = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(cmd));
    pair.take_inbox();
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::ABORT_TASK,
            cmd.itt,
            cmd.cmd_sn,
            Lun::ZERO
        ),
        Some(TmfResponse::TASK_DOES_NOT_EXIST)
    );
    // LU RESET, unknown LUN, TASK REASSIGN at ERL 0, an unsupported function.
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::LOGICAL_UNIT_RESET,
            Itt::RESERVED,
            Sn(0),
            Lun::ZERO
        ),
        Some(TmfResponse::FUNCTION_COMPLETE)
    );
    assert!(pair.events.iter().any(|e| matches!(
        e,
        SessionEvent::Lu(rtgt_session::target::LuAction::LogicalUnitReset { lun: 0 })
    )));
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::LOGICAL_UNIT_RESET,
            Itt::RESERVED,
            Sn(0),
            Lun::from_number(9).unwrap()
        ),
        Some(TmfResponse::LUN_DOES_NOT_EXIST)
    );
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::TASK_REASSIGN,
            cmd.itt,
            Sn(0),
            Lun::ZERO
        ),
        Some(TmfResponse::TASK_REASSIGNMENT_NOT_SUPPORTED)
    );
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::QUERY_TASK,
            cmd.itt,
            Sn(0),
            Lun::ZERO
        ),
        Some(TmfResponse::FUNCTION_NOT_SUPPORTED)
    );
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::CLEAR_ACA,
            Itt::RESERVED,
            Sn(0),
            Lun::ZERO
        ),
        Some(TmfResponse::FUNCTION_COMPLETE)
    );
    // ABORT TASK SET with two held tasks.
    pair.hold = true;
    let a = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(a));
    let b = pair.rw10(false, 1, 1, 512);
    pair.send(&Pdu::new(b));
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::ABORT_TASK_SET,
            Itt::RESERVED,
            Sn(0),
            Lun::ZERO
        ),
        None
    );
    pair.release_held();
    let inbox = pair.take_inbox();
    assert!(inbox.iter().any(|p| matches!(&p.header, PduHeader::TaskMgmtResponse(r) if r.response == TmfResponse::FUNCTION_COMPLETE)));
    assert!(
        !inbox
            .iter()
            .any(|p| p.header.itt() == a.itt || p.header.itt() == b.itt)
    );
    // A write aborted before the engine asked for its Data-Out: the engine's request for
    // data lets go of it and the abort is answered.
    pair.hold = true;
    let w = pair.rw10(true, 0, 8, 4096);
    pair.send(&Pdu::new(w));
    assert_eq!(
        tmf(
            &mut pair,
            TmfFunction::ABORT_TASK,
            w.itt,
            w.cmd_sn,
            Lun::ZERO
        ),
        None
    );
    pair.release_held();
    let inbox = pair.take_inbox();
    assert!(inbox.iter().any(|p| matches!(&p.header, PduHeader::TaskMgmtResponse(r) if r.response == TmfResponse::FUNCTION_COMPLETE)), "{inbox:?}");
    assert!(!inbox.iter().any(|p| p.header.itt() == w.itt));
    // The session is still usable.
    assert_eq!(pair.read10(0, 1).unwrap().0, ScsiStatus::GOOD);
}

#[test]
fn nop_echo_ping_and_dead_peer() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let itt = pair.next_itt();
    let nop = NopOut {
        immediate: true,
        itt,
        ttt: Ttt::RESERVED,
        cmd_sn: pair.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::with_data(nop, b"ping!".to_vec()));
    let out = pair.take_inbox();
    let PduHeader::NopIn(n) = &out[0].header else {
        panic!()
    };
    assert_eq!(n.itt, itt);
    assert_eq!(n.ttt, Ttt::RESERVED);
    assert_eq!(out[0].data, b"ping!");
    // Idle: the target pings (ITT reserved, a TTT to echo).
    pair.advance(Duration::from_secs(16));
    let out = pair.take_inbox();
    let PduHeader::NopIn(ping) = &out[0].header else {
        panic!("{out:?}")
    };
    assert_eq!(ping.itt, Itt::RESERVED);
    assert_ne!(ping.ttt, Ttt::RESERVED);
    // Answered: no drop.
    let reply = NopOut {
        immediate: true,
        itt: Itt::RESERVED,
        ttt: ping.ttt,
        cmd_sn: pair.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::new(reply));
    pair.advance(Duration::from_secs(10));
    assert!(!pair.closed);
    // Next ping unanswered: the connection is dropped after the timeout.
    pair.advance(Duration::from_secs(10));
    assert!(matches!(pair.take_inbox()[0].header, PduHeader::NopIn(_)));
    pair.advance(Duration::from_secs(16));
    assert!(pair.closed);
}

#[test]
fn logout_closes_the_session() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let itt = pair.next_itt();
    let req = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CLOSE_SESSION,
        itt,
        cid: 0,
        cmd_sn: pair.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::new(req));
    let out = pair.take_inbox();
    let PduHeader::LogoutResponse(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.response, LogoutResponseCode::SUCCESS);
    assert!(pair.closed);
    assert!(pair.events.contains(&SessionEvent::SessionEnded));
    // Remove-for-recovery at ERL 0 and an unknown CID.
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    for (reason, cid, want) in [
        (
            LogoutReason::REMOVE_CONNECTION_FOR_RECOVERY,
            0,
            LogoutResponseCode::RECOVERY_NOT_SUPPORTED,
        ),
        (
            LogoutReason::CLOSE_CONNECTION,
            7,
            LogoutResponseCode::CID_NOT_FOUND,
        ),
    ] {
        let itt = pair.next_itt();
        let req = LogoutRequest {
            immediate: true,
            reason,
            itt,
            cid,
            cmd_sn: pair.cmd_sn,
            ..Default::default()
        };
        pair.send(&Pdu::new(req));
        let out = pair.take_inbox();
        let PduHeader::LogoutResponse(r) = &out[0].header else {
            panic!()
        };
        assert_eq!(r.response, want);
    }
    assert!(!pair.closed);
}

#[test]
fn async_logout_request_then_drop() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let now = pair.now;
    pair.session().request_logout(now);
    pair.run();
    let out = pair.take_inbox();
    let PduHeader::AsyncMessage(m) = &out[0].header else {
        panic!()
    };
    assert_eq!(m.event, AsyncEvent::LOGOUT_REQUESTED);
    assert!(m.parameter3 > 0);
    pair.advance(Duration::from_secs(30));
    assert!(
        pair.closed,
        "an initiator that ignores the request is dropped"
    );
}

#[test]
fn session_reinstatement_closes_the_old_session() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    let old = pair.session().tsih();
    pair.login_normal(&[]).unwrap();
    assert_ne!(pair.session().tsih(), old);
    assert_eq!(pair.table.len(), 1);
}

#[test]
fn rejects_with_reasons() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[]).unwrap();
    pair.send(&Pdu::new(SnackRequest {
        itt: Itt(5),
        ..Default::default()
    }));
    let out = pair.take_inbox();
    let PduHeader::Reject(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::SNACK_REJECT);
    assert_eq!(out[0].data.len(), 48, "the offending header is returned");
    pair.send(&Pdu::new(req(LoginStage::OPERATIONAL_NEGOTIATION, None)));
    let out = pair.take_inbox();
    let PduHeader::Reject(r) = &out[0].header else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
    // A data digest error at ErrorRecoveryLevel 0 drops the connection.
    let conn = pair.conn;
    pair.session().pdu_error(
        conn,
        &rtgt_pdu::PduError::DataDigest {
            received: 1,
            computed: 2,
        },
        &[0; 48],
    );
    pair.run();
    assert!(pair.closed);
}

#[test]
fn discovery_send_targets_long_answers_continue_with_ttt() {
    let mut c = Pair::default_catalog();
    for i in 0..200 {
        c.targets.push(TargetEntry {
            name: format!("iqn.2026-11.io.rtgt:target-number-{i:04}"),
            luns: vec![0],
            ..Default::default()
        });
    }
    let mut pair = Pair::new(c);
    pair.start_login();
    let out = pair.login_pdu(
        req(
            LoginStage::OPERATIONAL_NEGOTIATION,
            Some(LoginStage::FULL_FEATURE_PHASE),
        ),
        &[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("MaxRecvDataSegmentLength", "4096"),
        ],
    );
    assert_eq!(status_of(&out), Some(LoginStatus::SUCCESS));
    assert!(pair.session().is_discovery());
    let itt = pair.next_itt();
    let text = encode_pairs(&[KeyValue::new("SendTargets", "All")]);
    let mut t = TextRequest {
        immediate: true,
        final_pdu: true,
        itt,
        ttt: Ttt::RESERVED,
        cmd_sn: pair.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::with_data(t, text));
    let mut all = Vec::new();
    loop {
        let out = pair.take_inbox();
        let PduHeader::TextResponse(r) = &out[0].header else {
            panic!()
        };
        assert!(out[0].data.len() <= 4096);
        all.extend_from_slice(&out[0].data);
        if r.final_pdu {
            assert_eq!(r.ttt, Ttt::RESERVED);
            break;
        }
        t.ttt = r.ttt;
        pair.send(&Pdu::new(t));
    }
    let pairs = parse_pairs(&all).unwrap();
    assert_eq!(pairs.iter().filter(|p| p.key == "TargetName").count(), 201);
    assert!(
        pairs
            .iter()
            .any(|p| p.key == "TargetAddress" && p.value == "127.0.0.1:3260,1")
    );
    // SCSI commands are not allowed in a discovery session.
    let cmd = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(cmd));
    assert!(matches!(pair.take_inbox()[0].header, PduHeader::Reject(_)));
}

/// RFC 7143 §6.3: the CmdSN of a rejected non-immediate command is *not* considered received
/// (a gap is assumed), so later commands wait; the initiator plugs the gap either by sending
/// a command with that CmdSN again or with ABORT TASK whose RefCmdSN names it (§11.5.1).
#[test]
fn rejected_command_leaves_a_gap_the_initiator_plugs() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[("ImmediateData", "No")]).unwrap();
    let (exp, _) = pair.session().cmd_window();
    // Immediate data although ImmediateData=No: Reject (Protocol Error), CmdSN not consumed.
    let bad = pair.rw10(true, 0, 1, 512);
    assert_eq!(bad.cmd_sn, exp);
    pair.send(&Pdu::with_data(bad, vec![1; 512]));
    let out = pair.take_inbox();
    assert!(
        matches!(&out[..], [p] if matches!(&p.header, PduHeader::Reject(r) if r.reason == RejectReason::PROTOCOL_ERROR))
    );
    assert_eq!(pair.session().cmd_window().0, exp, "ExpCmdSN does not move");
    // The next command waits behind the gap.
    let next = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(next));
    assert!(
        pair.take_inbox().is_empty(),
        "held until the gap is plugged"
    );
    // Plugged by resending a (valid) command with the rejected CmdSN: both run, in order.
    let mut again = pair.rw10(false, 0, 1, 512);
    pair.cmd_sn = Sn(pair.cmd_sn.0 - 1);
    again.cmd_sn = exp;
    pair.send(&Pdu::new(again));
    let done: Vec<Itt> = pair
        .take_inbox()
        .iter()
        .filter(|p| matches!(&p.header, PduHeader::DataIn(d) if d.status.is_some()))
        .map(|p| p.header.itt())
        .collect();
    assert_eq!(done, vec![again.itt, next.itt]);
    assert_eq!(pair.session().cmd_window().0, exp.add(2));

    // Plugged by ABORT TASK with RefCmdSN = the rejected CmdSN (the task never existed).
    let exp = pair.session().cmd_window().0;
    let bad = pair.rw10(true, 0, 1, 512);
    pair.send(&Pdu::with_data(bad, vec![1; 512]));
    assert!(matches!(pair.take_inbox()[0].header, PduHeader::Reject(_)));
    let next = pair.rw10(false, 0, 1, 512);
    pair.send(&Pdu::new(next));
    assert!(pair.take_inbox().is_empty());
    let itt = pair.next_itt();
    let abort = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::ABORT_TASK,
        lun: Lun::ZERO,
        itt,
        referenced_task_tag: bad.itt,
        cmd_sn: pair.cmd_sn,
        ref_cmd_sn: bad.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::new(abort));
    let out = pair.take_inbox();
    assert!(out.iter().any(|p| matches!(&p.header,
        PduHeader::TaskMgmtResponse(r) if r.itt == itt && r.response == TmfResponse::FUNCTION_COMPLETE)));
    assert!(
        out.iter().any(|p| p.header.itt() == next.itt),
        "the waiting command ran once the gap was plugged"
    );
    assert_eq!(pair.session().cmd_window().0, exp.add(2));
}

fn text_request(pair: &mut Pair, ttt: Ttt, final_pdu: bool, cont: bool, text: &[u8]) -> Vec<Pdu> {
    let itt = Itt(0x7e57);
    let t = TextRequest {
        immediate: true,
        final_pdu,
        continue_flag: cont,
        itt,
        ttt,
        cmd_sn: pair.cmd_sn,
        ..Default::default()
    };
    pair.send(&Pdu::with_data(t, text.to_vec()));
    pair.take_inbox()
}

fn data_in_lengths(pair: &mut Pair, blocks: u16) -> Vec<usize> {
    let cmd = pair.rw10(false, 0, blocks, u32::from(blocks) * 512);
    pair.send(&Pdu::new(cmd));
    pair.take_inbox()
        .iter()
        .filter(|p| matches!(p.header, PduHeader::DataIn(_)))
        .map(|p| p.data.len())
        .collect()
}

/// RFC 7143 §6.2, §11.10, §13.12 in full feature phase: keys answered through the negotiation
/// engine, a MaxRecvDataSegmentLength declaration applied to Data-In once the exchange ended.
#[test]
fn text_negotiation_in_full_feature_phase() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[("MaxRecvDataSegmentLength", "8192")])
        .unwrap();
    assert_eq!(data_in_lengths(&mut pair, 32), vec![8192, 8192]);
    // One request, several kinds of keys.
    let text = encode_pairs(&[
        KeyValue::new("MaxRecvDataSegmentLength", "4096"),
        KeyValue::new("X-com.example.color", "blue"),
        KeyValue::new("HeaderDigest", "None"),
        KeyValue::new("MaxBurstLength", "65536"),
        KeyValue::new("NoSuchKey", "1"),
    ]);
    let out = text_request(&mut pair, Ttt::RESERVED, true, false, &text);
    let PduHeader::TextResponse(r) = &out[0].header else {
        panic!("{out:?}")
    };
    assert!(r.final_pdu && r.ttt == Ttt::RESERVED && r.itt == Itt(0x7e57));
    let keys = keys_of(&out[0]);
    assert_eq!(key(&keys, "X-com.example.color"), Some("NotUnderstood"));
    assert_eq!(key(&keys, "NoSuchKey"), Some("NotUnderstood"));
    assert_eq!(key(&keys, "HeaderDigest"), Some("Reject"), "login-only key");
    assert_eq!(
        key(&keys, "MaxBurstLength"),
        Some("Reject"),
        "leading-only key"
    );
    assert_eq!(
        key(&keys, "MaxRecvDataSegmentLength"),
        None,
        "a declaration is not answered"
    );
    assert_eq!(data_in_lengths(&mut pair, 32), vec![4096; 4]);
    // An out-of-range declaration is rejected and changes nothing.
    let out = text_request(
        &mut pair,
        Ttt::RESERVED,
        true,
        false,
        &encode_pairs(&[KeyValue::new("MaxRecvDataSegmentLength", "100")]),
    );
    assert_eq!(
        key(&keys_of(&out[0]), "MaxRecvDataSegmentLength"),
        Some("Reject")
    );
    assert_eq!(data_in_lengths(&mut pair, 32), vec![4096; 4]);
}

/// A request continued with the C bit is acknowledged with an empty response and a TTT; a
/// negotiation the initiator leaves open (F = 0) applies its declarations only when it ends.
#[test]
fn text_continuation_and_open_sequences() {
    let mut pair = Pair::new(Pair::default_catalog());
    pair.login_normal(&[("MaxRecvDataSegmentLength", "8192")])
        .unwrap();
    let text = encode_pairs(&[KeyValue::new("MaxRecvDataSegmentLength", "2048")]);
    let (a, b) = text.split_at(10);
    let out = text_request(&mut pair, Ttt::RESERVED, false, true, a);
    let PduHeader::TextResponse(ack) = &out[0].header else {
        panic!("{out:?}")
    };
    assert!(!ack.final_pdu && ack.ttt != Ttt::RESERVED && out[0].data.is_empty());
    // A continuation with a TTT we never gave: Reject.
    let bad = text_request(&mut pair, Ttt(0x1234_5678), false, false, b);
    assert!(
        matches!(&bad[0].header, PduHeader::Reject(r) if r.reason == RejectReason::INVALID_PDU_FIELD)
    );
    // Start again, and this time leave the negotiation open (F = 0).
    let out = text_request(&mut pair, Ttt::RESERVED, false, true, a);
    let PduHeader::TextResponse(ack) = &out[0].header else {
        panic!()
    };
    let out = text_request(&mut pair, ack.ttt, false, false, b);
    let PduHeader::TextResponse(open) = &out[0].header else {
        panic!("{out:?}")
    };
    assert!(!open.final_pdu && open.ttt != Ttt::RESERVED);
    assert_eq!(
        data_in_lengths(&mut pair, 32),
        vec![8192, 8192],
        "not applied while the exchange is open"
    );
    let out = text_request(&mut pair, open.ttt, true, false, &[]);
    let PduHeader::TextResponse(done) = &out[0].header else {
        panic!("{out:?}")
    };
    assert!(done.final_pdu && done.ttt == Ttt::RESERVED);
    assert_eq!(data_in_lengths(&mut pair, 8), vec![2048, 2048]);
    // The same key twice in one request breaks the rules: Reject PDU.
    let twice = encode_pairs(&[
        KeyValue::new("MaxRecvDataSegmentLength", "4096"),
        KeyValue::new("MaxRecvDataSegmentLength", "8192"),
    ]);
    let out = text_request(&mut pair, Ttt::RESERVED, true, false, &twice);
    assert!(
        matches!(&out[0].header, PduHeader::Reject(r) if r.reason == RejectReason::PROTOCOL_ERROR)
    );
    assert_eq!(data_in_lengths(&mut pair, 8), vec![2048, 2048]);
}
