//! Scripted-target tests of the initiator's full feature phase.

// Short names (s = session, c = connection, t = task) keep the scripted exchanges readable.
#![allow(
    clippy::many_single_char_names,
    clippy::unnecessary_wraps,
    clippy::needless_pass_by_value
)]

use std::time::{Duration, Instant};

use rtgt_pdu::{
    AsyncEvent, AsyncMessage, BhsLengths, DataIn, DataInStatus, DataOut, LogoutReason,
    LogoutResponse, LogoutResponseCode, Lun, NopIn, NopOut, PduHeader, R2t, Reject, RejectReason,
    Residual, ResponseCode, ScsiCommand, ScsiResponse, ScsiStatus, Sn, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse, TmfFunction, TmfResponse, Ttt,
};

use super::*;
use crate::params::{ConnectionParams, SessionParams, SessionType};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];

fn session_with(params: SessionParams, conn: ConnectionParams) -> (Session, ConnId) {
    let mut setup = SessionSetup::new(CmdWindow::new(Sn(1), Sn(1), Sn(16)));
    setup.params = params;
    let mut s = Session::new(setup);
    let mut cs = ConnectionSetup::new(1, Sn(100), 4);
    cs.params = conn;
    let c = s.add_connection(cs);
    (s, c)
}

fn session() -> (Session, ConnId) {
    session_with(SessionParams::default(), ConnectionParams::default())
}

fn decode(pdu: &OutPdu) -> PduHeader {
    PduHeader::decode(&pdu.bhs).expect("our own PDU decodes")
}

fn read(s: &mut Session, c: ConnId, len: u32) -> TaskId {
    s.submit(
        c,
        &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(len)),
    )
    .unwrap()
    .task
}

fn data_in(task: TaskId, data_sn: u32, offset: u32, status: Option<DataInStatus>) -> DataIn {
    DataIn {
        final_pdu: status.is_some(),
        itt: task.itt(),
        ttt: Ttt::RESERVED,
        exp_cmd_sn: Sn(1),
        max_cmd_sn: Sn(16),
        data_sn: Sn(data_sn),
        buffer_offset: offset,
        status,
        ..Default::default()
    }
}

fn good(stat_sn: u32) -> Option<DataInStatus> {
    Some(DataInStatus {
        status: ScsiStatus::GOOD,
        stat_sn: Sn(stat_sn),
        residual: Residual::None,
    })
}

#[test]
fn read_reassembles_data_in_with_phase_collapse() {
    let (mut s, c) = session();
    let now = Instant::now();
    let t = read(&mut s, c, 8192);
    assert_eq!(s.outstanding(c), 1);
    let p = s.on_data_in(c, &data_in(t, 0, 0, None), 4096, now).unwrap();
    assert_eq!((p.task, p.offset, p.len, p.completion), (t, 0, 4096, None));
    let p = s
        .on_data_in(c, &data_in(t, 1, 4096, good(100)), 4096, now)
        .unwrap();
    let done = p.completion.expect("status in the last Data-In");
    assert!(done.is_good());
    assert_eq!(done.transferred, 8192);
    // The slot is held until the payload has been placed.
    assert_eq!(s.outstanding(c), 1);
    let resp = ScsiResponse {
        itt: t.itt(),
        ..Default::default()
    };
    assert!(
        matches!(
            s.on_pdu(c, &resp.into(), &[], now),
            Err(ProtocolError::UnknownTask { .. })
        ),
        "status was already delivered"
    );
    assert!(s.release(c, t));
    assert!(!s.release(c, t), "released once");
    assert_eq!(s.outstanding(c), 0);
    assert_eq!(s.exp_stat_sn(c), Some(Sn(101)));
    // The next command carries the advanced ExpStatSN.
    let sent = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512)),
        )
        .unwrap();
    let PduHeader::ScsiCommand(cmd) = decode(&sent.pdu) else {
        panic!()
    };
    assert_eq!(cmd.exp_stat_sn, Sn(101));
    assert_eq!(cmd.cmd_sn, Sn(2));
}

#[test]
fn whole_pdu_data_in_releases_at_once() {
    let (mut s, c) = session();
    let t = read(&mut s, c, 512);
    let ev = s
        .on_pdu(
            c,
            &data_in(t, 0, 0, good(100)).into(),
            &[7; 512],
            Instant::now(),
        )
        .unwrap();
    let Event::DataIn(p) = ev else {
        panic!("{ev:?}")
    };
    assert!(p.completion.is_some());
    assert_eq!(s.outstanding(c), 0);
}

#[test]
fn data_in_sequence_errors_drop_the_connection() {
    let (mut s, c) = session();
    let now = Instant::now();
    let t = read(&mut s, c, 8192);
    assert_eq!(
        s.on_data_in(c, &data_in(t, 1, 0, None), 512, now),
        Err(ProtocolError::DataSn {
            itt: t.itt(),
            expected: 0,
            got: 1
        })
    );
    assert_eq!(
        s.on_data_in(c, &data_in(t, 0, 512, None), 512, now),
        Err(ProtocolError::DataOffset {
            itt: t.itt(),
            expected: 0,
            got: 512
        })
    );
    assert_eq!(
        s.on_data_in(c, &data_in(t, 0, 0, None), 8193, now),
        Err(ProtocolError::DataOverrun {
            itt: t.itt(),
            end: 8193,
            expected: 8192
        })
    );
    let mut h = data_in(t, 0, 0, good(100));
    h.final_pdu = false;
    assert_eq!(
        s.on_data_in(c, &h, 512, now),
        Err(ProtocolError::StatusWithoutFinal(t.itt()))
    );
    let stale = rtgt_pdu::Itt(t.itt().0 + 0x0001_0000);
    let mut h = data_in(t, 0, 0, None);
    h.itt = stale;
    assert!(matches!(
        s.on_data_in(c, &h, 512, now),
        Err(ProtocolError::UnknownTask { .. })
    ));
}

#[test]
fn scsi_response_with_sense_and_residual() {
    let (mut s, c) = session();
    let t = read(&mut s, c, 4096);
    let sense = [
        0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
    ];
    let mut data = vec![0, sense.len() as u8];
    data.extend_from_slice(&sense);
    let resp = ScsiResponse {
        residual: Residual::Underflow(4096),
        response: ResponseCode::COMMAND_COMPLETED,
        status: ScsiStatus::CHECK_CONDITION,
        itt: t.itt(),
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(2),
        max_cmd_sn: Sn(17),
        ..Default::default()
    };
    let ev = s.on_pdu(c, &resp.into(), &data, Instant::now()).unwrap();
    let Event::Complete(done) = ev else {
        panic!("{ev:?}")
    };
    assert!(!done.is_good());
    assert_eq!(done.residual, Residual::Underflow(4096));
    assert_eq!(done.sense.unwrap().of(&data), &sense);
    assert_eq!(s.window().max_cmd_sn(), Sn(17));
    // A response for a task that is gone is a protocol error.
    let again = ScsiResponse {
        itt: t.itt(),
        ..Default::default()
    };
    assert!(matches!(
        s.on_pdu(c, &again.into(), &[], Instant::now()),
        Err(ProtocolError::UnknownTask { .. })
    ));
    // A sense length beyond the segment is malformed.
    let t = read(&mut s, c, 4096);
    let bad = ScsiResponse {
        itt: t.itt(),
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &bad.into(), &[0, 9, 1], Instant::now()),
        Err(ProtocolError::BadSenseSegment)
    );
}

#[test]
fn write_with_immediate_data_then_r2t() {
    // ImmediateData=Yes, InitialR2T=Yes, FirstBurstLength 64 KiB, target MRDSL 8 KiB.
    let (mut s, c) = session();
    let sent = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &WRITE10, Direction::Write(20_000)),
        )
        .unwrap();
    let t = sent.task;
    let PduHeader::ScsiCommand(cmd) = decode(&sent.pdu) else {
        panic!()
    };
    assert!(cmd.write && cmd.final_pdu && !cmd.read);
    assert_eq!(cmd.expected_data_transfer_length, 20_000);
    assert_eq!(
        sent.pdu.data,
        OutData::Task {
            task: t,
            offset: 0,
            len: 8192
        }
    );
    assert_eq!(BhsLengths::from_bhs(&sent.pdu.bhs).data_len(), 8192);
    assert_eq!(
        s.poll_transmit(c),
        None,
        "InitialR2T=Yes: no unsolicited Data-Out"
    );
    let r2t = R2t {
        itt: t.itt(),
        ttt: Ttt(0x77),
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(2),
        max_cmd_sn: Sn(17),
        r2t_sn: Sn(0),
        buffer_offset: 8192,
        desired_data_transfer_length: 11_808,
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &r2t.into(), &[], Instant::now()),
        Ok(Event::None)
    );
    let a = s.poll_transmit(c).unwrap();
    let b = s.poll_transmit(c).unwrap();
    assert_eq!(s.poll_transmit(c), None);
    let expect = DataOut {
        final_pdu: false,
        lun: Lun::ZERO,
        itt: t.itt(),
        ttt: Ttt(0x77),
        exp_stat_sn: Sn(100),
        data_sn: Sn(0),
        buffer_offset: 8192,
    };
    assert_eq!(a.bhs, expect.encode(BhsLengths::data_bounded(8192)));
    assert_eq!(
        a.data,
        OutData::Task {
            task: t,
            offset: 8192,
            len: 8192
        }
    );
    // Exact bytes of the second Data-Out: opcode 0x05, F bit, length 3616, TTT, DataSN 1.
    assert_eq!(b.bhs[0], 0x05);
    assert_eq!(b.bhs[1], 0x80);
    assert_eq!(b.bhs[5..8], [0x00, 0x0e, 0x20]);
    assert_eq!(b.bhs[20..24], [0, 0, 0, 0x77]);
    assert_eq!(b.bhs[36..40], [0, 0, 0, 1]);
    assert_eq!(b.bhs[40..44], 16_384u32.to_be_bytes());
    assert_eq!(
        b.data,
        OutData::Task {
            task: t,
            offset: 16_384,
            len: 3616
        }
    );
}

#[test]
fn unsolicited_data_out_without_immediate_data() {
    let params = SessionParams {
        initial_r2t: false,
        immediate_data: false,
        first_burst_length: 16_384,
        ..Default::default()
    };
    let (mut s, c) = session_with(params, ConnectionParams::default());
    let sent = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &WRITE10, Direction::Write(65_536)),
        )
        .unwrap();
    let PduHeader::ScsiCommand(cmd) = decode(&sent.pdu) else {
        panic!()
    };
    assert!(!cmd.final_pdu, "unsolicited Data-Out follows");
    assert_eq!(sent.pdu.data, OutData::None);
    let pdus: Vec<_> = std::iter::from_fn(|| s.poll_transmit(c)).collect();
    assert_eq!(pdus.len(), 2);
    let PduHeader::DataOut(d0) = decode(&pdus[0]) else {
        panic!()
    };
    let PduHeader::DataOut(d1) = decode(&pdus[1]) else {
        panic!()
    };
    assert_eq!(
        (d0.ttt, d0.data_sn, d0.buffer_offset, d0.final_pdu),
        (Ttt::RESERVED, Sn(0), 0, false)
    );
    assert_eq!(
        (d1.data_sn, d1.buffer_offset, d1.final_pdu),
        (Sn(1), 8192, true)
    );
}

#[test]
fn immediate_and_unsolicited_together_stop_at_first_burst() {
    let params = SessionParams {
        initial_r2t: false,
        first_burst_length: 20_000,
        ..Default::default()
    };
    let conn = ConnectionParams {
        max_xmit_data_segment_length: 4096,
        ..Default::default()
    };
    let (mut s, c) = session_with(params, conn);
    let sent = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &WRITE10, Direction::Write(100_000)),
        )
        .unwrap();
    assert_eq!(sent.pdu.data.len(), 4096);
    let lens: Vec<usize> = std::iter::from_fn(|| s.poll_transmit(c))
        .map(|p| p.data.len())
        .collect();
    assert_eq!(lens, [4096, 4096, 4096, 3616]);
}

#[test]
fn r2t_violations_are_protocol_errors() {
    let (mut s, c) = session();
    let now = Instant::now();
    let r = read(&mut s, c, 512);
    let mk = |itt, sn, off, len| {
        PduHeader::R2t(R2t {
            itt,
            ttt: Ttt(1),
            r2t_sn: Sn(sn),
            buffer_offset: off,
            desired_data_transfer_length: len,
            ..Default::default()
        })
    };
    assert!(matches!(
        s.on_pdu(c, &mk(r.itt(), 0, 0, 512), &[], now),
        Err(ProtocolError::WrongTaskKind { .. })
    ));
    let w = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &WRITE10, Direction::Write(1 << 20)),
        )
        .unwrap()
        .task;
    assert!(matches!(
        s.on_pdu(c, &mk(w.itt(), 1, 8192, 512), &[], now),
        Err(ProtocolError::R2tSn {
            expected: 0,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        s.on_pdu(c, &mk(w.itt(), 0, (1 << 20) - 256, 512), &[], now),
        Err(ProtocolError::R2tRange { .. })
    ));
    assert!(matches!(
        s.on_pdu(c, &mk(w.itt(), 0, 8192, 0), &[], now),
        Err(ProtocolError::R2tRange { .. })
    ));
    // Beyond MaxBurstLength (256 KiB default).
    assert!(matches!(
        s.on_pdu(c, &mk(w.itt(), 0, 8192, 262_145), &[], now),
        Err(ProtocolError::R2tRange { .. })
    ));
    // MaxOutstandingR2T = 1: a second R2T before the first sequence is sent is too many.
    assert_eq!(
        s.on_pdu(c, &mk(w.itt(), 0, 8192, 8192), &[], now),
        Ok(Event::None)
    );
    assert_eq!(
        s.on_pdu(c, &mk(w.itt(), 1, 16_384, 8192), &[], now),
        Err(ProtocolError::TooManyR2t(1))
    );
    // Once the first sequence went out, the next R2T is fine.
    assert!(s.poll_transmit(c).is_some());
    assert_eq!(
        s.on_pdu(c, &mk(w.itt(), 1, 16_384, 8192), &[], now),
        Ok(Event::None)
    );
}

#[test]
fn command_window_is_respected() {
    let mut setup = SessionSetup::new(CmdWindow::new(Sn(u32::MAX), Sn(u32::MAX), Sn(0)));
    setup.params = SessionParams::default();
    let mut s = Session::new(setup);
    let c = s.add_connection(ConnectionSetup::new(0, Sn(1), 8));
    let a = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512)),
        )
        .unwrap();
    let b = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512)),
        )
        .unwrap();
    let (PduHeader::ScsiCommand(ca), PduHeader::ScsiCommand(cb)) = (decode(&a.pdu), decode(&b.pdu))
    else {
        panic!()
    };
    assert_eq!((ca.cmd_sn, cb.cmd_sn), (Sn(u32::MAX), Sn(0)));
    assert!(!s.can_submit(c));
    assert_eq!(
        s.submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512))
        ),
        Err(SubmitError::WindowClosed)
    );
    assert_eq!(s.outstanding(c), 2, "a refused command takes no slot");
    // The target opens the window in a response.
    let resp = ScsiResponse {
        itt: a.task.itt(),
        exp_cmd_sn: Sn(1),
        max_cmd_sn: Sn(5),
        ..Default::default()
    };
    s.on_pdu(c, &resp.into(), &[], Instant::now()).unwrap();
    assert!(s.can_submit(c));
    assert_eq!(s.window().room(), 5);
}

#[test]
fn queue_depth_bounds_submissions() {
    let (mut s, c) = session();
    for _ in 0..4 {
        read(&mut s, c, 512);
    }
    assert_eq!(
        s.submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512))
        ),
        Err(SubmitError::NoFreeSlot)
    );
    assert_eq!(s.window().cmd_sn(), Sn(5), "no CmdSN burnt");
    assert_eq!(
        s.submit(c, &ScsiRequest::new(Lun::ZERO, &[0u8; 17], Direction::None)),
        Err(SubmitError::CdbTooLong(17))
    );
    assert_eq!(
        s.submit(
            ConnId(9),
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512))
        ),
        Err(SubmitError::NoConnection(9))
    );
}

#[test]
fn target_ping_is_answered_and_our_ping_gets_a_pong() {
    let (mut s, c) = session();
    let now = Instant::now();
    let ping = NopIn {
        lun: Lun::from_number(3).unwrap(),
        itt: rtgt_pdu::Itt::RESERVED,
        ttt: Ttt(0xabcd),
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(1),
        max_cmd_sn: Sn(16),
    };
    assert_eq!(s.on_pdu(c, &ping.into(), &[], now), Ok(Event::None));
    let reply = s.poll_transmit(c).unwrap();
    let expect = NopOut {
        immediate: true,
        lun: Lun::from_number(3).unwrap(),
        itt: rtgt_pdu::Itt::RESERVED,
        ttt: Ttt(0xabcd),
        cmd_sn: Sn(1),
        exp_stat_sn: Sn(100),
    };
    assert_eq!(reply.bhs, expect.encode(BhsLengths::ZERO));
    assert_eq!(
        s.exp_stat_sn(c),
        Some(Sn(100)),
        "a target ping does not advance StatSN"
    );
    // A NOP-In with reserved TTT and ITT needs no answer.
    let unsolicited = NopIn {
        ttt: Ttt::RESERVED,
        ..ping
    };
    assert_eq!(s.on_pdu(c, &unsolicited.into(), &[], now), Ok(Event::None));
    assert_eq!(s.poll_transmit(c), None);

    let task = s.ping(c, b"hi".to_vec(), now).unwrap();
    let out = s.poll_transmit(c).unwrap();
    let PduHeader::NopOut(n) = decode(&out) else {
        panic!()
    };
    assert_eq!(
        (n.itt, n.ttt, n.immediate),
        (task.itt(), Ttt::RESERVED, true)
    );
    assert_eq!(out.data, OutData::Owned(b"hi".to_vec()));
    let pong = NopIn {
        itt: task.itt(),
        ttt: Ttt::RESERVED,
        stat_sn: Sn(100),
        ..ping
    };
    let later = now + Duration::from_millis(3);
    assert_eq!(
        s.on_pdu(c, &pong.into(), b"hi", later),
        Ok(Event::Pong { task, sent_at: now })
    );
    assert_eq!(s.exp_stat_sn(c), Some(Sn(101)));
}

#[test]
fn keepalive_pings_when_idle_and_fails_without_answer() {
    let mut setup = SessionSetup::new(CmdWindow::new(Sn(1), Sn(1), Sn(16)));
    setup.params = SessionParams::default();
    let mut s = Session::new(setup);
    let mut cs = ConnectionSetup::new(0, Sn(1), 2);
    cs.nop_interval = Some(Duration::from_secs(5));
    cs.nop_timeout = Duration::from_secs(2);
    let c = s.add_connection(cs);
    let t0 = Instant::now();
    s.handle_timeout(c, t0).unwrap();
    assert_eq!(s.poll_transmit(c), None, "not idle long enough");
    assert_eq!(s.poll_timeout(c), Some(t0 + Duration::from_secs(5)));
    s.handle_timeout(c, t0 + Duration::from_secs(5)).unwrap();
    let PduHeader::NopOut(_) = decode(&s.poll_transmit(c).unwrap()) else {
        panic!()
    };
    assert_eq!(s.poll_timeout(c), Some(t0 + Duration::from_secs(7)));
    s.handle_timeout(c, t0 + Duration::from_secs(6)).unwrap();
    assert_eq!(
        s.handle_timeout(c, t0 + Duration::from_secs(7)),
        Err(ProtocolError::PingTimeout(2000))
    );
}

#[test]
fn abort_task_frees_the_task_and_reports_it() {
    let (mut s, c) = session();
    let now = Instant::now();
    let victim = read(&mut s, c, 4096);
    let tmf = s.abort_task(c, victim).unwrap();
    let PduHeader::TaskMgmtRequest(req) = decode(&s.poll_transmit(c).unwrap()) else {
        panic!()
    };
    assert_eq!(
        req,
        TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::ABORT_TASK,
            lun: Lun::ZERO,
            itt: tmf.itt(),
            referenced_task_tag: victim.itt(),
            cmd_sn: Sn(2),
            exp_stat_sn: Sn(100),
            ref_cmd_sn: Sn(1),
            exp_data_sn: Sn(0),
        }
    );
    let resp = TaskMgmtResponse {
        response: TmfResponse::FUNCTION_COMPLETE,
        itt: tmf.itt(),
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(2),
        max_cmd_sn: Sn(17),
    };
    assert_eq!(
        s.on_pdu(c, &resp.into(), &[], now),
        Ok(Event::Tmf {
            task: tmf,
            function: TmfFunction::ABORT_TASK,
            response: TmfResponse::FUNCTION_COMPLETE
        })
    );
    assert_eq!(s.poll_event(c), Some(Event::Aborted(victim)));
    assert_eq!(s.outstanding(c), 0);
    assert_eq!(s.abort_task(c, victim), Err(SubmitError::NoSuchTask));
}

#[test]
fn lun_reset_aborts_only_that_lun() {
    let (mut s, c) = session();
    let l1 = Lun::from_number(1).unwrap();
    let a = s
        .submit(c, &ScsiRequest::new(l1, &READ10, Direction::Read(512)))
        .unwrap()
        .task;
    let b = read(&mut s, c, 512);
    let tmf = s.lun_reset(c, l1).unwrap();
    let resp = TaskMgmtResponse {
        itt: tmf.itt(),
        ..Default::default()
    };
    assert!(matches!(
        s.on_pdu(c, &resp.into(), &[], Instant::now()),
        Ok(Event::Tmf { .. })
    ));
    assert_eq!(s.poll_event(c), Some(Event::Aborted(a)));
    assert_eq!(s.poll_event(c), None);
    assert!(s.is_outstanding(c, b));
}

#[test]
fn logout_closes_the_connection() {
    let (mut s, c) = session();
    let task = s.logout(c, LogoutReason::CLOSE_SESSION).unwrap();
    let PduHeader::LogoutRequest(req) = decode(&s.poll_transmit(c).unwrap()) else {
        panic!()
    };
    assert_eq!(
        (req.reason, req.cid, req.immediate),
        (LogoutReason::CLOSE_SESSION, 1, true)
    );
    assert_eq!(s.state(c), Some(ConnState::LoggingOut));
    assert_eq!(
        s.submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512))
        ),
        Err(SubmitError::NotActive)
    );
    let resp = LogoutResponse {
        itt: task.itt(),
        time2wait: 2,
        time2retain: 20,
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &resp.into(), &[], Instant::now()),
        Ok(Event::Logout {
            task,
            response: LogoutResponseCode::SUCCESS,
            time2wait: 2,
            time2retain: 20
        })
    );
    assert_eq!(s.state(c), Some(ConnState::Closed));
}

#[test]
fn text_responses_are_reassembled_across_continuations() {
    let (mut s, c) = session();
    let now = Instant::now();
    let task = s.text(c, b"SendTargets=All\0".to_vec()).unwrap();
    let first = s.poll_transmit(c).unwrap();
    let PduHeader::TextRequest(req) = decode(&first) else {
        panic!()
    };
    assert!(req.final_pdu && !req.continue_flag);
    assert_eq!(req.cmd_sn, Sn(1));
    let part = TextResponse {
        final_pdu: false,
        continue_flag: true,
        itt: task.itt(),
        ttt: Ttt(5),
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(2),
        max_cmd_sn: Sn(16),
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &part.into(), b"TargetName=iqn.a", now),
        Ok(Event::None)
    );
    let cont = s.poll_transmit(c).unwrap();
    assert_eq!(
        cont.bhs,
        TextRequest {
            final_pdu: true,
            itt: task.itt(),
            ttt: Ttt(5),
            cmd_sn: Sn(2),
            exp_stat_sn: Sn(101),
            ..Default::default()
        }
        .encode(BhsLengths::ZERO)
    );
    let last = TextResponse {
        final_pdu: true,
        itt: task.itt(),
        ttt: Ttt::RESERVED,
        stat_sn: Sn(101),
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &last.into(), b":x\0", now),
        Ok(Event::Text {
            task,
            data: b"TargetName=iqn.a:x\0".to_vec()
        })
    );
    assert_eq!(
        s.text(c, vec![0; 9000]),
        Err(SubmitError::TextTooLong(9000))
    );
}

#[test]
fn reject_of_a_command_frees_its_task() {
    let (mut s, c) = session();
    let sent = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512)),
        )
        .unwrap();
    let rej = Reject {
        reason: RejectReason::PROTOCOL_ERROR,
        stat_sn: Sn(100),
        ..Default::default()
    };
    assert_eq!(
        s.on_pdu(c, &rej.into(), &sent.pdu.bhs, Instant::now()),
        Ok(Event::Rejected {
            reason: RejectReason::PROTOCOL_ERROR,
            opcode: ScsiCommand::OPCODE,
            task: Some(sent.task)
        })
    );
    assert_eq!(s.outstanding(c), 0);
    assert_eq!(
        s.on_pdu(c, &rej.into(), &[0; 10], Instant::now()),
        Err(ProtocolError::BadReject(10))
    );
}

#[test]
fn async_logout_request_is_reported() {
    let (mut s, c) = session();
    let msg = AsyncMessage {
        event: AsyncEvent::LOGOUT_REQUESTED,
        stat_sn: Sn(100),
        exp_cmd_sn: Sn(1),
        max_cmd_sn: Sn(16),
        parameter3: 10,
        ..Default::default()
    };
    let Ok(Event::Async(n)) = s.on_pdu(c, &msg.into(), &[], Instant::now()) else {
        panic!()
    };
    assert_eq!((n.event, n.parameter3), (AsyncEvent::LOGOUT_REQUESTED, 10));
    assert_eq!(s.exp_stat_sn(c), Some(Sn(101)));
}

#[test]
fn initiator_opcodes_from_the_target_are_refused() {
    let (mut s, c) = session();
    let h = PduHeader::NopOut(NopOut::default());
    assert_eq!(
        s.on_pdu(c, &h, &[], Instant::now()),
        Err(ProtocolError::UnexpectedPdu(NopOut::OPCODE))
    );
}

#[test]
fn discovery_sessions_refuse_scsi_commands() {
    let params = SessionParams {
        session_type: SessionType::Discovery,
        ..Default::default()
    };
    let (mut s, c) = session_with(params, ConnectionParams::default());
    assert_eq!(
        s.submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &READ10, Direction::Read(512))
        ),
        Err(SubmitError::DiscoverySession)
    );
}

#[test]
fn failing_a_connection_returns_its_tasks() {
    let (mut s, c) = session();
    let a = read(&mut s, c, 512);
    let b = read(&mut s, c, 512);
    let mut failed = s.fail_connection(c);
    failed.sort_by_key(|t| t.slot());
    assert_eq!(failed, [a, b]);
    assert_eq!(s.state(c), Some(ConnState::Closed));
    assert_eq!(s.outstanding(c), 0);
}

#[test]
fn data_out_for_an_aborted_task_is_dropped() {
    let params = SessionParams {
        initial_r2t: false,
        immediate_data: false,
        ..Default::default()
    };
    let (mut s, c) = session_with(params, ConnectionParams::default());
    let w = s
        .submit(
            c,
            &ScsiRequest::new(Lun::ZERO, &WRITE10, Direction::Write(16_384)),
        )
        .unwrap()
        .task;
    let resp = ScsiResponse {
        itt: w.itt(),
        status: ScsiStatus::CHECK_CONDITION,
        ..Default::default()
    };
    assert!(matches!(
        s.on_pdu(c, &resp.into(), &[], Instant::now()),
        Ok(Event::Complete(_))
    ));
    assert_eq!(s.poll_transmit(c), None);
}

#[test]
fn mcs_connections_share_the_window_and_keep_tags_apart() {
    let (mut s, c0) = session();
    let c1 = s.add_connection(ConnectionSetup::new(2, Sn(50), 4));
    let a = read(&mut s, c0, 512);
    let b = read(&mut s, c1, 512);
    assert_eq!(a.slot(), b.slot());
    assert_ne!(a.itt(), b.itt(), "tags are unique session-wide");
    assert_eq!(
        s.window().cmd_sn(),
        Sn(3),
        "one CmdSN sequence for both connections"
    );
    // A response on the wrong connection does not complete the other connection's task.
    let resp = ScsiResponse {
        itt: b.itt(),
        ..Default::default()
    };
    assert!(matches!(
        s.on_pdu(c0, &resp.into(), &[], Instant::now()),
        Err(ProtocolError::UnknownTask { .. })
    ));
    assert!(matches!(
        s.on_pdu(c1, &resp.into(), &[], Instant::now()),
        Ok(Event::Complete(_))
    ));
    assert_eq!(s.cid(c1), Some(2));
    assert_eq!(s.exp_stat_sn(c1), Some(Sn(50)));
}
