//! Round trips for every opcode (RFC 7143 §11.3–§11.19), and an exhaustive
//! check of which BHS bits each header decodes: every bit outside the
//! fields listed here must be ignored (reserved, §11.2), every bit inside
//! must change the decoded header.

use rtgt_pdu::*;

/// One sample per opcode with distinct non-zero values in every field.
fn samples() -> Vec<PduHeader> {
    let lun = Lun([1, 2, 3, 4, 5, 6, 7, 8]);
    vec![
        NopOut {
            immediate: true,
            lun,
            itt: Itt(0x1111),
            ttt: Ttt(0x2222),
            cmd_sn: Sn(3),
            exp_stat_sn: Sn(4),
        }
        .into(),
        ScsiCommand {
            immediate: true,
            final_pdu: true,
            read: true,
            write: true,
            attr: TaskAttribute::HEAD_OF_QUEUE,
            lun,
            itt: Itt(0xabcd),
            expected_data_transfer_length: 0x0001_0000,
            cmd_sn: Sn(u32::MAX),
            exp_stat_sn: Sn(9),
            cdb: [0x88, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        }
        .into(),
        TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::ABORT_TASK,
            lun,
            itt: Itt(5),
            referenced_task_tag: Itt(6),
            cmd_sn: Sn(7),
            exp_stat_sn: Sn(8),
            ref_cmd_sn: Sn(9),
            exp_data_sn: Sn(10),
        }
        .into(),
        LoginRequest {
            next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
            continue_flag: false,
            current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
            version_max: 1,
            version_min: 2,
            isid: Isid([0x80, 1, 2, 3, 4, 5]),
            tsih: 0x1234,
            itt: Itt(1),
            cid: 0x0203,
            cmd_sn: Sn(4),
            exp_stat_sn: Sn(5),
        }
        .into(),
        TextRequest {
            immediate: true,
            final_pdu: false,
            continue_flag: true,
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            cmd_sn: Sn(4),
            exp_stat_sn: Sn(5),
        }
        .into(),
        DataOut {
            final_pdu: true,
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            exp_stat_sn: Sn(4),
            data_sn: Sn(5),
            buffer_offset: 0x600,
        }
        .into(),
        LogoutRequest {
            immediate: true,
            reason: LogoutReason::REMOVE_CONNECTION_FOR_RECOVERY,
            itt: Itt(2),
            cid: 3,
            cmd_sn: Sn(4),
            exp_stat_sn: Sn(5),
        }
        .into(),
        SnackRequest {
            snack_type: SnackType::R_DATA,
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            exp_stat_sn: Sn(4),
            beg_run: 5,
            run_length: 6,
        }
        .into(),
        NopIn {
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            stat_sn: Sn(4),
            exp_cmd_sn: Sn(5),
            max_cmd_sn: Sn(6),
        }
        .into(),
        ScsiResponse {
            bidi_read_residual: Residual::Overflow(0x10),
            residual: Residual::Underflow(0x20),
            response: ResponseCode::TARGET_FAILURE,
            status: ScsiStatus::BUSY,
            itt: Itt(2),
            snack_tag: 3,
            stat_sn: Sn(4),
            exp_cmd_sn: Sn(5),
            max_cmd_sn: Sn(6),
            exp_data_sn: Sn(7),
        }
        .into(),
        TaskMgmtResponse {
            response: TmfResponse::FUNCTION_REJECTED,
            itt: Itt(2),
            stat_sn: Sn(3),
            exp_cmd_sn: Sn(4),
            max_cmd_sn: Sn(5),
        }
        .into(),
        LoginResponse {
            next_stage: Some(LoginStage::OPERATIONAL_NEGOTIATION),
            continue_flag: false,
            current_stage: LoginStage::SECURITY_NEGOTIATION,
            version_max: 1,
            version_active: 2,
            isid: Isid([0x40, 1, 2, 3, 4, 5]),
            tsih: 7,
            itt: Itt(8),
            stat_sn: Sn(9),
            exp_cmd_sn: Sn(10),
            max_cmd_sn: Sn(11),
            status: LoginStatus::AUTHORIZATION_FAILURE,
        }
        .into(),
        TextResponse {
            final_pdu: true,
            continue_flag: false,
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            stat_sn: Sn(4),
            exp_cmd_sn: Sn(5),
            max_cmd_sn: Sn(6),
        }
        .into(),
        DataIn {
            final_pdu: true,
            ack_requested: true,
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            exp_cmd_sn: Sn(4),
            max_cmd_sn: Sn(5),
            data_sn: Sn(6),
            buffer_offset: 7,
            status: Some(DataInStatus {
                status: ScsiStatus::CONDITION_MET,
                stat_sn: Sn(8),
                residual: Residual::Overflow(9),
            }),
        }
        .into(),
        LogoutResponse {
            response: LogoutResponseCode::CLEANUP_FAILED,
            itt: Itt(2),
            stat_sn: Sn(3),
            exp_cmd_sn: Sn(4),
            max_cmd_sn: Sn(5),
            time2wait: 6,
            time2retain: 7,
        }
        .into(),
        R2t {
            lun,
            itt: Itt(2),
            ttt: Ttt(3),
            stat_sn: Sn(4),
            exp_cmd_sn: Sn(5),
            max_cmd_sn: Sn(6),
            r2t_sn: Sn(7),
            buffer_offset: 8,
            desired_data_transfer_length: 9,
        }
        .into(),
        AsyncMessage {
            lun,
            stat_sn: Sn(2),
            exp_cmd_sn: Sn(3),
            max_cmd_sn: Sn(4),
            event: AsyncEvent::LOGOUT_REQUESTED,
            vendor_code: 5,
            parameter1: 6,
            parameter2: 7,
            parameter3: 8,
        }
        .into(),
        Reject {
            reason: RejectReason::INVALID_PDU_FIELD,
            stat_sn: Sn(2),
            exp_cmd_sn: Sn(3),
            max_cmd_sn: Sn(4),
            data_sn_or_r2t_sn: Sn(5),
        }
        .into(),
    ]
}

#[test]
fn every_opcode_round_trips() {
    let samples = samples();
    assert_eq!(samples.len(), 18, "one sample per RFC 7143 opcode");
    let mut opcodes: Vec<Opcode> = samples.iter().map(PduHeader::opcode).collect();
    opcodes.dedup();
    assert_eq!(opcodes.len(), 18);
    for h in samples {
        let lengths = BhsLengths::new(0, 0x0123).unwrap();
        let bytes = h.encode(lengths);
        assert_eq!(bytes[0] & 0x3f, h.opcode().get());
        assert_eq!(BhsLengths::from_bhs(&bytes), lengths);
        assert_eq!(PduHeader::decode(&bytes).unwrap(), h, "{:?}", h.opcode());
        // encode_into overwrites stale contents.
        let mut buf = [0xffu8; 48];
        h.encode_into(lengths, &mut buf);
        assert_eq!(buf, bytes);
    }
}

#[test]
fn every_opcode_round_trips_as_a_whole_pdu_with_digests() {
    for (i, h) in samples().into_iter().enumerate() {
        let mut pdu = Pdu::with_data(h, (0..i as u8 * 3).collect());
        if let PduHeader::ScsiCommand(_) = pdu.header {
            pdu.ahs = vec![Ahs::ExtendedCdb(vec![0xee; 5]), Ahs::BidiReadLength(4096)];
        }
        for digests in [
            Digests::NONE,
            Digests::BOTH,
            Digests {
                header: true,
                data: false,
            },
        ] {
            let wire = pdu.to_bytes(digests).unwrap();
            assert_eq!(wire.len(), pdu.encoded_len(digests));
            assert_eq!(wire.len() % 4, 0);
            assert_eq!(Pdu::decode(&wire, digests).unwrap(), pdu);
        }
    }
}

/// `(first byte, last byte exclusive, mask)` ranges of meaningful bits.
type Layout = &'static [(usize, usize, u8)];

const OPCODE: (usize, usize, u8) = (0, 1, 0x3f);
const OPCODE_I: (usize, usize, u8) = (0, 1, 0x7f);
const LUN: (usize, usize, u8) = (8, 16, 0xff);
const ITT: (usize, usize, u8) = (16, 20, 0xff);

fn layout(op: Opcode) -> Layout {
    match op {
        Opcode::NOP_OUT => &[OPCODE_I, LUN, ITT, (20, 32, 0xff)],
        Opcode::SCSI_COMMAND => &[OPCODE_I, (1, 2, 0xe7), LUN, ITT, (20, 48, 0xff)],
        Opcode::TASK_MGMT_REQUEST => &[OPCODE_I, (1, 2, 0x7f), LUN, ITT, (20, 40, 0xff)],
        // The I bit of a Login Request is fixed to 1 and ignored.
        Opcode::LOGIN_REQUEST => &[
            OPCODE,
            (1, 2, 0xcf),
            (2, 4, 0xff),
            (8, 22, 0xff),
            (24, 32, 0xff),
        ],
        Opcode::TEXT_REQUEST => &[OPCODE_I, (1, 2, 0xc0), LUN, ITT, (20, 32, 0xff)],
        Opcode::SCSI_DATA_OUT => &[
            OPCODE,
            (1, 2, 0x80),
            LUN,
            ITT,
            (20, 24, 0xff),
            (28, 32, 0xff),
            (36, 44, 0xff),
        ],
        Opcode::LOGOUT_REQUEST => &[OPCODE_I, (1, 2, 0x7f), ITT, (20, 22, 0xff), (24, 32, 0xff)],
        Opcode::SNACK_REQUEST => &[
            OPCODE,
            (1, 2, 0x0f),
            LUN,
            ITT,
            (20, 24, 0xff),
            (28, 32, 0xff),
            (40, 48, 0xff),
        ],
        Opcode::NOP_IN => &[OPCODE, LUN, ITT, (20, 36, 0xff)],
        Opcode::SCSI_RESPONSE => &[OPCODE, (1, 2, 0x1e), (2, 4, 0xff), ITT, (20, 48, 0xff)],
        Opcode::TASK_MGMT_RESPONSE => &[OPCODE, (2, 3, 0xff), ITT, (24, 36, 0xff)],
        Opcode::LOGIN_RESPONSE => &[
            OPCODE,
            (1, 2, 0xcf),
            (2, 4, 0xff),
            (8, 20, 0xff),
            (24, 38, 0xff),
        ],
        Opcode::TEXT_RESPONSE => &[OPCODE, (1, 2, 0xc0), LUN, ITT, (20, 36, 0xff)],
        Opcode::SCSI_DATA_IN => &[OPCODE, (1, 2, 0xc7), (3, 4, 0xff), LUN, ITT, (20, 48, 0xff)],
        Opcode::LOGOUT_RESPONSE => &[OPCODE, (2, 3, 0xff), ITT, (24, 36, 0xff), (40, 44, 0xff)],
        Opcode::R2T => &[OPCODE, LUN, ITT, (20, 48, 0xff)],
        Opcode::ASYNC_MESSAGE => &[OPCODE, LUN, (24, 44, 0xff)],
        Opcode::REJECT => &[OPCODE, (2, 3, 0xff), (24, 40, 0xff)],
        other => panic!("no layout for {other:?}"),
    }
}

fn meaningful(layout: Layout, byte: usize, bit: u8) -> bool {
    layout
        .iter()
        .any(|&(s, e, m)| (s..e).contains(&byte) && m & bit != 0)
}

#[test]
fn exactly_the_rfc_fields_are_decoded_and_reserved_bits_ignored() {
    for h in samples() {
        let bytes = h.encode(BhsLengths::ZERO);
        let layout = layout(h.opcode());
        for byte in (0..48).filter(|b| !(4..8).contains(b)) {
            for shift in 0..8 {
                let bit = 1u8 << shift;
                let mut flipped = bytes;
                flipped[byte] ^= bit;
                let changed = PduHeader::decode(&flipped).map_or(true, |d| d != h);
                assert_eq!(
                    changed,
                    meaningful(layout, byte, bit),
                    "{:?}: byte {byte} bit {bit:#04x}",
                    h.opcode()
                );
            }
        }
    }
}

/// PDUs whose byte 1 shows a fixed `1` where other PDUs have the F bit.
const FIXED_F_BIT: [Opcode; 11] = [
    Opcode::NOP_OUT,
    Opcode::TASK_MGMT_REQUEST,
    Opcode::LOGOUT_REQUEST,
    Opcode::SNACK_REQUEST,
    Opcode::NOP_IN,
    Opcode::SCSI_RESPONSE,
    Opcode::TASK_MGMT_RESPONSE,
    Opcode::LOGOUT_RESPONSE,
    Opcode::R2T,
    Opcode::ASYNC_MESSAGE,
    Opcode::REJECT,
];

#[test]
fn reserved_bits_are_zero_on_encode() {
    for h in samples() {
        let bytes = h.encode(BhsLengths::ZERO);
        let layout = layout(h.opcode());
        for (byte, value) in bytes
            .iter()
            .enumerate()
            .filter(|(b, _)| !(4..8).contains(b))
        {
            let mut mask = 0u8;
            for shift in 0..8 {
                if meaningful(layout, byte, 1 << shift) {
                    mask |= 1 << shift;
                }
            }
            let fixed = match (h.opcode(), byte) {
                // Fixed bits written as 1: F bits, the Login I bit, ITT 0xffffffff.
                (Opcode::LOGIN_REQUEST, 0) => 0x40,
                (Opcode::ASYNC_MESSAGE | Opcode::REJECT, 16..20) => 0xff,
                (op, 1) if FIXED_F_BIT.contains(&op) => 0x80,
                _ => 0,
            };
            assert_eq!(value & !mask, fixed, "{:?}: byte {byte}", h.opcode());
        }
    }
}

#[test]
fn unknown_code_values_survive() {
    let mut b = TaskMgmtRequest {
        function: TmfFunction(0x55),
        ..Default::default()
    }
    .encode(BhsLengths::ZERO);
    let PduHeader::TaskMgmtRequest(t) = PduHeader::decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(t.function, TmfFunction(0x55));
    assert!(!t.function.is_known());
    assert_eq!(format!("{:?}", t.function), "TmfFunction(0x55)");
    b = LoginRequest {
        current_stage: LoginStage(2),
        ..Default::default()
    }
    .encode(BhsLengths::ZERO);
    let PduHeader::LoginRequest(l) = PduHeader::decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(l.current_stage, LoginStage(2));
    assert_eq!(l.next_stage, None);
}

#[test]
fn data_in_without_status_ignores_status_fields() {
    let d = DataIn {
        final_pdu: false,
        data_sn: Sn(3),
        ..Default::default()
    };
    let mut b = d.encode(BhsLengths::data(512).unwrap());
    b[3] = 0x02; // status byte
    b[24..28].copy_from_slice(&[9, 9, 9, 9]); // StatSN
    b[1] |= 0x06; // O and U, meaningless without S
    assert_eq!(DataIn::decode(&b).unwrap(), d);
}
