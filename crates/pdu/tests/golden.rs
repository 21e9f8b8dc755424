//! Byte-exact golden PDUs: streams captured from libiscsi talking to tgt
//! (see tests/data/capture/README.md), and PDUs built from RFC 7143 §11 by
//! hand.

use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role, Stage};
use rtgt_pdu::text::{parse_pairs, parse_unique};
use rtgt_pdu::*;

fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/capture/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Frames a whole captured direction: login PDUs without digests, the rest
/// with `ffp_digests`. Returns each PDU with its exact wire bytes.
fn frame_all(bytes: &[u8], ffp_digests: Digests) -> Vec<(Pdu, Vec<u8>, Digests)> {
    let mut framer = Framer::new();
    let mut input = bytes;
    let mut out = Vec::new();
    loop {
        let before = input.len();
        let digests = framer.digests();
        match framer
            .next_pdu(&mut input)
            .expect("captured stream frames cleanly")
        {
            Some(pdu) => {
                let start = bytes.len() - before;
                let end = bytes.len() - input.len();
                let final_login = match &pdu.header {
                    PduHeader::LoginRequest(h) => {
                        h.next_stage == Some(LoginStage::FULL_FEATURE_PHASE)
                    }
                    PduHeader::LoginResponse(h) => {
                        h.next_stage == Some(LoginStage::FULL_FEATURE_PHASE)
                    }
                    _ => false,
                };
                out.push((pdu, bytes[start..end].to_vec(), digests));
                if final_login {
                    framer.enter_full_feature(ffp_digests, 262_144);
                }
            }
            None => break,
        }
    }
    assert!(input.is_empty());
    assert!(framer.is_idle());
    out
}

const CAPTURES: [(&str, Digests); 5] = [
    ("discovery", Digests::NONE),
    ("report-luns", Digests::NONE),
    (
        "inquiry-hdrdigest",
        Digests {
            header: true,
            data: false,
        },
    ),
    (
        "readcap16-hdrdigest",
        Digests {
            header: true,
            data: false,
        },
    ),
    (
        "write10-hdrdigest",
        Digests {
            header: true,
            data: false,
        },
    ),
];

#[test]
fn every_captured_pdu_reencodes_byte_for_byte() {
    let mut count = 0;
    for (name, digests) in CAPTURES {
        for dir in ["initiator", "target"] {
            let bytes = capture(&format!("tgt-libiscsi-{name}-{dir}.bin"));
            for (pdu, raw, d) in frame_all(&bytes, digests) {
                assert_eq!(
                    pdu.to_bytes(d).unwrap(),
                    raw,
                    "{name} {dir}: {:?}",
                    pdu.header
                );
                assert_eq!(Pdu::decode(&raw, d).unwrap(), pdu);
                let from_initiator = dir == "initiator";
                assert_eq!(pdu.header.opcode().is_initiator(), from_initiator);
                count += 1;
            }
        }
    }
    assert!(count > 50, "{count}");
}

#[test]
fn header_digest_is_sent_least_significant_byte_first() {
    let bytes = capture("tgt-libiscsi-inquiry-hdrdigest-initiator.bin");
    let pdus = frame_all(
        &bytes,
        Digests {
            header: true,
            data: false,
        },
    );
    let (pdu, raw, d) = pdus
        .iter()
        .find(|(p, _, _)| matches!(p.header, PduHeader::ScsiCommand(_)))
        .unwrap();
    assert!(d.header);
    let bhs: &[u8; 48] = raw[..48].try_into().unwrap();
    let crc = crc32c(bhs);
    assert_eq!(raw[48..52], crc.to_le_bytes());
    assert_ne!(raw[48..52], crc.to_be_bytes());
    assert_eq!(digest_to_wire(header_digest(bhs, &[])), raw[48..52]);
    // The framer rejects the same header with the digest bytes reversed.
    let mut swapped = raw.clone();
    swapped[48..52].reverse();
    assert!(matches!(
        Pdu::decode(&swapped, *d),
        Err(PduError::HeaderDigest { .. })
    ));
    assert!(matches!(pdu.header, PduHeader::ScsiCommand(_)));
}

#[test]
fn discovery_session_fields() {
    let ini = frame_all(
        &capture("tgt-libiscsi-discovery-initiator.bin"),
        Digests::NONE,
    );
    let tgt = frame_all(&capture("tgt-libiscsi-discovery-target.bin"), Digests::NONE);

    let PduHeader::LoginRequest(req) = &ini[0].0.header else {
        panic!("{:?}", ini[0].0.header)
    };
    assert_eq!(req.tsih, 0);
    assert_eq!(req.version_max, 0);
    assert_eq!(req.next_stage, Some(LoginStage::FULL_FEATURE_PHASE));
    let keys = parse_unique(&ini[0].0.data).unwrap();
    assert!(
        keys.iter()
            .any(|p| p.key == "SessionType" && p.value == "Discovery")
    );
    assert!(
        keys.iter()
            .any(|p| p.key == "InitiatorName" && p.value == "iqn.2024-01.org.rtgt:initiator")
    );

    let PduHeader::LoginResponse(resp) = &tgt[0].0.header else {
        panic!()
    };
    assert_eq!(resp.status, LoginStatus::SUCCESS);
    assert_eq!(resp.isid, req.isid);
    assert_ne!(resp.tsih, 0);
    assert_eq!(resp.itt, req.itt);

    let PduHeader::TextRequest(text) = &ini[1].0.header else {
        panic!()
    };
    assert!(text.final_pdu && !text.continue_flag);
    assert_eq!(text.ttt, Ttt::RESERVED);
    assert_eq!(parse_pairs(&ini[1].0.data).unwrap()[0].value, "All");
    assert_eq!(parse_pairs(&ini[1].0.data).unwrap()[0].key, "SendTargets");

    let PduHeader::TextResponse(answer) = &tgt[1].0.header else {
        panic!()
    };
    assert_eq!(answer.itt, text.itt);
    let pairs = parse_pairs(&tgt[1].0.data).unwrap();
    assert_eq!(pairs[0].key, "TargetName");
    assert_eq!(pairs[0].value, "iqn.2024-01.org.rtgt:golden");
    assert_eq!(pairs[1].key, "TargetAddress");
    assert_eq!(pairs[1].value, "127.0.0.1:23261,1");

    assert!(
        matches!(ini.last().unwrap().0.header, PduHeader::LogoutRequest(ref l) if l.reason == LogoutReason::CLOSE_SESSION)
    );
    assert!(
        matches!(tgt.last().unwrap().0.header, PduHeader::LogoutResponse(ref l) if l.response == LogoutResponseCode::SUCCESS)
    );
}

#[test]
fn read_path_fields() {
    let ini = frame_all(
        &capture("tgt-libiscsi-inquiry-hdrdigest-initiator.bin"),
        Digests {
            header: true,
            data: false,
        },
    );
    let tgt = frame_all(
        &capture("tgt-libiscsi-inquiry-hdrdigest-target.bin"),
        Digests {
            header: true,
            data: false,
        },
    );
    // The INQUIRY command and its Data-In with phase-collapsed status.
    let (inq, inq_hdr) = ini
        .iter()
        .find_map(|(p, _, _)| match &p.header {
            PduHeader::ScsiCommand(c) if c.cdb[0] == 0x12 => Some((p, *c)),
            _ => None,
        })
        .unwrap();
    assert!(inq.data.is_empty());
    assert!(inq_hdr.read && !inq_hdr.write && inq_hdr.final_pdu);
    assert_eq!(inq_hdr.attr, TaskAttribute::SIMPLE);
    assert_eq!(inq_hdr.lun.number(), Some(1));
    let (data_in, d) = tgt
        .iter()
        .find_map(|(p, _, _)| match &p.header {
            PduHeader::DataIn(d) if d.itt == inq_hdr.itt => Some((p, *d)),
            _ => None,
        })
        .unwrap();
    let status = d.status.expect("tgt collapses status into the Data-In");
    assert_eq!(status.status, ScsiStatus::GOOD);
    assert!(d.final_pdu);
    assert_eq!(d.data_sn, Sn(0));
    assert_eq!(d.buffer_offset, 0);
    assert_eq!(
        data_in.data.len() as u32 + status.residual.count(),
        inq_hdr.expected_data_transfer_length
    );
    assert_eq!(&data_in.data[8..16], b"IET     ");
}

#[test]
fn write_path_r2t_and_data_out() {
    let digests = Digests {
        header: true,
        data: false,
    };
    let ini = frame_all(
        &capture("tgt-libiscsi-write10-hdrdigest-initiator.bin"),
        digests,
    );
    let tgt = frame_all(
        &capture("tgt-libiscsi-write10-hdrdigest-target.bin"),
        digests,
    );
    let PduHeader::ScsiCommand(big) = ini[3].0.header else {
        panic!()
    };
    assert_eq!(big.cdb[0], 0x2a);
    // InitialR2T=Yes: no unsolicited Data-Out follows the immediate data.
    assert!(big.write && big.final_pdu);
    assert_eq!(ini[3].0.data.len(), 8192);
    let PduHeader::R2t(r2t) = tgt[3].0.header else {
        panic!("{:?}", tgt[3].0.header)
    };
    assert_eq!(r2t.itt, big.itt);
    assert_eq!(r2t.r2t_sn, Sn(0));
    assert_eq!(r2t.buffer_offset, 8192);
    assert_eq!(
        r2t.buffer_offset + r2t.desired_data_transfer_length,
        big.expected_data_transfer_length
    );
    let PduHeader::DataOut(out) = ini[4].0.header else {
        panic!()
    };
    assert_eq!(out.ttt, r2t.ttt);
    assert_eq!(out.itt, big.itt);
    assert_eq!(out.buffer_offset, r2t.buffer_offset);
    assert_eq!(out.data_sn, Sn(0));
    assert!(out.final_pdu);
    assert_eq!(ini[4].0.data.len() as u32, r2t.desired_data_transfer_length);
    // The SCSI Response with sense data (unit attention after login).
    let PduHeader::ScsiResponse(rsp) = tgt[1].0.header else {
        panic!()
    };
    assert_eq!(rsp.status, ScsiStatus::CHECK_CONDITION);
    let sense = SenseSegment::parse(&tgt[1].0.data).unwrap();
    assert_eq!(sense.sense[0] & 0x7f, 0x70);
    assert_eq!(sense.sense[2] & 0x0f, 0x06, "UNIT ATTENTION");
}

#[test]
fn target_negotiator_answers_libiscsi_login() {
    let ini = frame_all(
        &capture("tgt-libiscsi-inquiry-hdrdigest-initiator.bin"),
        Digests {
            header: true,
            data: false,
        },
    );
    let PduHeader::LoginRequest(req) = ini[0].0.header else {
        panic!()
    };
    let stage = Stage::from_login_stage(req.current_stage).unwrap();
    let offers = parse_unique(&ini[0].0.data).unwrap();
    let mut tgt = Negotiator::new(
        Role::Target,
        LocalConfig {
            header_digests: vec![negotiation::Digest::Crc32c],
            max_recv_data_segment_length: 65536,
            target_portal_group_tag: Some(1),
            ..LocalConfig::default()
        },
    );
    let ctx = Context::login(stage, req.tsih == 0);
    let ex = tgt.process(ctx, &offers).unwrap();
    let mut answers = ex.answers.clone();
    answers.extend(tgt.offers(ctx));
    let get = |k: &str| {
        answers
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.as_str())
    };
    assert_eq!(get("HeaderDigest"), Some("CRC32C"));
    assert_eq!(get("DataDigest"), Some("None"));
    assert_eq!(get("InitialR2T"), Some("Yes"));
    assert_eq!(get("ImmediateData"), Some("Yes"));
    assert_eq!(get("MaxBurstLength"), Some("262144"));
    assert_eq!(get("FirstBurstLength"), Some("65536"));
    assert_eq!(get("DefaultTime2Retain"), Some("0"));
    assert_eq!(get("IFMarker"), Some("No"));
    assert_eq!(get("OFMarker"), Some("No"));
    assert_eq!(get("MaxRecvDataSegmentLength"), Some("65536"));
    assert_eq!(get("TargetPortalGroupTag"), Some("1"));
    // Declarations are not answered.
    assert_eq!(get("InitiatorName"), None);
    assert_eq!(get("SessionType"), None);
    let p = tgt.finish().unwrap();
    assert_eq!(p.max_send_data_segment_length, 262_144);
    assert_eq!(
        p.target_name.as_deref(),
        Some("iqn.2024-01.org.rtgt:golden")
    );
    assert_eq!(
        p.digests(),
        Digests {
            header: true,
            data: false
        }
    );
}

/// Hand-built PDUs checked against the RFC 7143 §11 layouts byte by byte.
#[test]
fn hand_built_golden_headers() {
    let r2t = R2t {
        lun: Lun::from_number(3).unwrap(),
        itt: Itt(0x0102_0304),
        ttt: Ttt(0x0a0b_0c0d),
        stat_sn: Sn(0x11),
        exp_cmd_sn: Sn(0x22),
        max_cmd_sn: Sn(0x33),
        r2t_sn: Sn(2),
        buffer_offset: 0x1000,
        desired_data_transfer_length: 0x2000,
    };
    let expected: [u8; 48] = [
        0x31, 0x80, 0, 0, 0, 0, 0, 0, // opcode, F, reserved, lengths
        0, 3, 0, 0, 0, 0, 0, 0, // LUN
        1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, // ITT, TTT
        0, 0, 0, 0x11, 0, 0, 0, 0x22, // StatSN, ExpCmdSN
        0, 0, 0, 0x33, 0, 0, 0, 2, // MaxCmdSN, R2TSN
        0, 0, 0x10, 0, 0, 0, 0x20, 0, // buffer offset, desired length
    ];
    assert_eq!(r2t.encode(BhsLengths::ZERO), expected);

    let rsp = ScsiResponse {
        residual: Residual::Underflow(0x200),
        status: ScsiStatus::CHECK_CONDITION,
        itt: Itt(7),
        stat_sn: Sn(1),
        exp_cmd_sn: Sn(2),
        max_cmd_sn: Sn(3),
        exp_data_sn: Sn(4),
        ..Default::default()
    };
    let b = rsp.encode(BhsLengths::data(20).unwrap());
    assert_eq!(b[..8], [0x21, 0x82, 0x00, 0x02, 0, 0, 0, 20]);
    assert_eq!(b[44..48], [0, 0, 2, 0]);

    let login = LoginResponse {
        next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
        current_stage: LoginStage::OPERATIONAL_NEGOTIATION,
        isid: Isid([0x80, 0, 0x12, 0x34, 0, 0]),
        tsih: 0x0101,
        status: LoginStatus::TARGET_MOVED_TEMPORARILY,
        ..Default::default()
    };
    let b = login.encode(BhsLengths::ZERO);
    assert_eq!(b[..4], [0x23, 0x87, 0, 0]);
    assert_eq!(b[8..16], [0x80, 0, 0x12, 0x34, 0, 0, 0x01, 0x01]);
    assert_eq!(b[36..38], [0x01, 0x01]);
}
