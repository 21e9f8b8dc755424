//! Stream framer behaviour (RFC 7143 §11.2 framing, §7.8 digest errors,
//! §13.12 limits): every split point, byte-at-a-time feeding, zero-copy
//! events, and each error's answer.

use rtgt_pdu::*;

fn stream_pdus() -> Vec<Pdu> {
    let mut cmd = Pdu::with_data(
        ScsiCommand {
            final_pdu: true,
            write: true,
            attr: TaskAttribute::SIMPLE,
            itt: Itt(1),
            expected_data_transfer_length: 7,
            cdb: [0x7f; 16],
            ..Default::default()
        },
        vec![1, 2, 3, 4, 5, 6, 7],
    );
    cmd.ahs = vec![Ahs::ExtendedCdb(vec![9; 16])];
    vec![
        Pdu::new(NopOut {
            itt: Itt(0),
            ttt: Ttt::RESERVED,
            ..Default::default()
        }),
        cmd,
        Pdu::with_data(
            DataOut {
                itt: Itt(1),
                final_pdu: true,
                ..Default::default()
            },
            vec![0xaa; 13],
        ),
        Pdu::with_data(
            TextRequest {
                final_pdu: true,
                itt: Itt(2),
                ttt: Ttt::RESERVED,
                ..Default::default()
            },
            b"SendTargets=All\0".to_vec(),
        ),
        Pdu::new(LogoutRequest {
            itt: Itt(3),
            ..Default::default()
        }),
    ]
}

fn wire(pdus: &[Pdu], digests: Digests) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pdus {
        p.encode(digests, &mut out).unwrap();
    }
    out
}

fn framer(digests: Digests) -> Framer {
    let mut f = Framer::new();
    f.enter_full_feature(digests, 8192);
    f
}

fn feed_all(f: &mut Framer, parts: &[&[u8]]) -> Vec<Pdu> {
    let mut out = Vec::new();
    for part in parts {
        let mut input = *part;
        while let Some(p) = f.next_pdu(&mut input).unwrap() {
            out.push(p);
        }
        assert!(input.is_empty());
    }
    out
}

#[test]
fn every_split_point_with_and_without_digests() {
    let pdus = stream_pdus();
    for digests in [
        Digests::NONE,
        Digests::BOTH,
        Digests {
            header: true,
            data: false,
        },
        Digests {
            header: false,
            data: true,
        },
    ] {
        let bytes = wire(&pdus, digests);
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            let mut f = framer(digests);
            assert_eq!(
                feed_all(&mut f, &[a, b]),
                pdus,
                "split at {split}, {digests:?}"
            );
            assert!(f.is_idle());
        }
    }
}

#[test]
fn every_pair_of_split_points_in_one_pdu() {
    let pdus = &stream_pdus()[1..2]; // the command with AHS and padded data
    let bytes = wire(pdus, Digests::BOTH);
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let mut f = framer(Digests::BOTH);
            assert_eq!(
                feed_all(&mut f, &[&bytes[..i], &bytes[i..j], &bytes[j..]]),
                pdus,
                "{i} {j}"
            );
        }
    }
}

#[test]
fn byte_at_a_time() {
    let pdus = stream_pdus();
    let bytes = wire(&pdus, Digests::BOTH);
    let parts: Vec<&[u8]> = bytes.chunks(1).collect();
    let mut f = framer(Digests::BOTH);
    assert_eq!(feed_all(&mut f, &parts), pdus);
}

#[test]
fn zero_copy_events_borrow_the_input() {
    let pdus = stream_pdus();
    let bytes = wire(&pdus, Digests::BOTH);
    for split in 0..=bytes.len() {
        let mut f = framer(Digests::BOTH);
        let mut got: Vec<(PduHeader, Vec<u8>, Vec<u8>)> = Vec::new();
        for part in [&bytes[..split], &bytes[split..]] {
            let mut input = part;
            while let Some(ev) = f.next_event(&mut input).unwrap() {
                match ev {
                    Event::Header(h) => got.push((h.header, f.ahs().to_vec(), Vec::new())),
                    Event::Data(d) => {
                        // The slice points into the caller's buffer.
                        let base = bytes.as_ptr() as usize;
                        let at = d.as_ptr() as usize - base;
                        assert_eq!(&bytes[at..at + d.len()], d);
                        got.last_mut().unwrap().2.extend_from_slice(d);
                    }
                    Event::End => {}
                }
            }
        }
        assert_eq!(got.len(), pdus.len());
        for ((h, ahs, data), p) in got.iter().zip(&pdus) {
            assert_eq!(*h, p.header);
            assert_eq!(Ahs::decode_all(ahs).unwrap(), p.ahs);
            assert_eq!(*data, p.data);
        }
    }
}

#[test]
fn header_event_comes_before_any_data_is_consumed() {
    let pdu = Pdu::with_data(
        DataOut {
            itt: Itt(4),
            ..Default::default()
        },
        vec![5; 100],
    );
    let bytes = pdu.to_bytes(Digests::BOTH).unwrap();
    let mut f = framer(Digests::BOTH);
    let mut input = &bytes[..];
    let Some(Event::Header(h)) = f.next_event(&mut input).unwrap() else {
        panic!()
    };
    assert_eq!(h.lengths.data_len(), 100);
    assert_eq!(input.len(), bytes.len() - 52);
}

#[test]
fn header_digest_error_drops_the_connection_and_poisons() {
    let bytes = wire(&stream_pdus(), Digests::BOTH);
    let mut bad = bytes.clone();
    bad[49] ^= 1; // first PDU's header digest
    let mut f = framer(Digests::BOTH);
    let mut input = &bad[..];
    let e = f.next_pdu(&mut input).unwrap_err();
    assert!(matches!(e, PduError::HeaderDigest { .. }));
    assert_eq!(e.action(), ErrorAction::DropConnection);
    let mut rest = &bytes[..];
    assert_eq!(f.next_pdu(&mut rest).unwrap_err(), e);
}

#[test]
fn data_digest_error_is_a_reject_and_framing_continues() {
    let pdus = stream_pdus();
    let bytes = wire(&pdus, Digests::BOTH);
    // Corrupt one data byte of the Data-Out (third PDU).
    let first_two = pdus[0].encoded_len(Digests::BOTH) + pdus[1].encoded_len(Digests::BOTH);
    let mut bad = bytes.clone();
    bad[first_two + 52] ^= 0x80;
    let mut f = framer(Digests::BOTH);
    let mut input = &bad[..];
    let mut got = Vec::new();
    let mut rejects = Vec::new();
    loop {
        match f.next_pdu(&mut input) {
            Ok(Some(p)) => got.push(p),
            Ok(None) => break,
            Err(e) => {
                assert_eq!(
                    e.action(),
                    ErrorAction::Reject(RejectReason::DATA_DIGEST_ERROR)
                );
                rejects.push(f.last_header_bytes().to_vec());
            }
        }
    }
    assert_eq!(got.len(), pdus.len() - 1);
    assert_eq!(got[2], pdus[3]);
    assert_eq!(rejects, vec![bad[first_two..first_two + 48].to_vec()]);
}

#[test]
fn padding_bytes_are_covered_by_the_data_digest() {
    let pdu = Pdu::with_data(DataOut::default(), vec![1, 2, 3]);
    let mut bytes = pdu.to_bytes(Digests::BOTH).unwrap();
    bytes[52 + 3] = 0xff; // a padding byte
    let mut f = framer(Digests::BOTH);
    let mut input = &bytes[..];
    assert!(matches!(
        f.next_pdu(&mut input),
        Err(PduError::DataDigest { .. })
    ));
}

#[test]
fn unsupported_opcode_is_rejected_and_skipped() {
    let good = Pdu::new(NopOut {
        itt: Itt(9),
        ..Default::default()
    });
    let mut vendor = good.to_bytes(Digests::NONE).unwrap();
    vendor[0] = 0x1c;
    vendor[7] = 6; // 6 bytes of data + 2 padding
    vendor.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
    let mut bytes = vendor.clone();
    good.encode(Digests::NONE, &mut bytes).unwrap();
    let mut f = framer(Digests::NONE);
    let mut input = &bytes[..];
    let e = f.next_pdu(&mut input).unwrap_err();
    assert_eq!(e, PduError::UnsupportedOpcode(Opcode::VENDOR_1C));
    assert_eq!(
        e.action(),
        ErrorAction::Reject(RejectReason::COMMAND_NOT_SUPPORTED)
    );
    assert_eq!(f.last_header_bytes(), &vendor[..48]);
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(good));
}

#[test]
fn malformed_ahs_is_rejected_and_skipped() {
    let cmd = Pdu {
        header: ScsiCommand::default().into(),
        ahs: vec![Ahs::BidiReadLength(1)],
        data: vec![7; 4],
    };
    let mut bytes = cmd.to_bytes(Digests::NONE).unwrap();
    bytes[49] = 9; // AHSLength 9 overruns the 8-byte AHS area
    let next = Pdu::new(NopOut::default());
    next.encode(Digests::NONE, &mut bytes).unwrap();
    let mut f = framer(Digests::NONE);
    let mut input = &bytes[..];
    let e = f.next_pdu(&mut input).unwrap_err();
    assert_eq!(
        e.action(),
        ErrorAction::Reject(RejectReason::INVALID_PDU_FIELD)
    );
    assert_eq!(
        f.last_header_bytes().len(),
        56,
        "BHS and AHS go into the Reject"
    );
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(next));
}

#[test]
fn login_phase_caps_ahs_plus_data_before_allocating() {
    // Only the 48 header bytes are fed: the error comes before any data arrives.
    let mut bhs = LoginRequest::default().encode(BhsLengths::data(8193).unwrap());
    let mut f = Framer::new();
    let mut input = &bhs[..];
    let e = f.next_event(&mut input).unwrap_err();
    assert_eq!(
        e,
        PduError::LoginSegmentsTooLong {
            len: 8193,
            max: 8192
        }
    );
    assert_eq!(e.action(), ErrorAction::DropConnection);
    // AHS counts towards the cap.
    bhs = LoginRequest::default().encode(BhsLengths::new(4, 8189).unwrap());
    let mut f = Framer::new();
    let mut input = &bhs[..];
    assert!(
        f.next_event(&mut input).unwrap().is_none(),
        "waits for the AHS"
    );
    let ahs = [0u8, 0, 0x40, 0];
    let mut input = &ahs[..];
    assert_eq!(
        f.next_event(&mut input).unwrap_err(),
        PduError::LoginSegmentsTooLong {
            len: 8193,
            max: 8192
        }
    );
    // Exactly 8 KiB is fine.
    let pdu = Pdu::with_data(LoginRequest::default(), vec![b'a'; 8192]);
    let bytes = pdu.to_bytes(Digests::NONE).unwrap();
    let mut f = Framer::new();
    let mut input = &bytes[..];
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(pdu));
}

#[test]
fn full_feature_phase_enforces_max_recv_data_segment_length() {
    let mut f = Framer::new();
    f.enter_full_feature(Digests::NONE, 65536);
    let ok = Pdu::with_data(DataOut::default(), vec![0; 65536]);
    let bytes = ok.to_bytes(Digests::NONE).unwrap();
    let mut input = &bytes[..];
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(ok));
    let bhs = DataOut::default().encode(BhsLengths::data(65537).unwrap());
    let mut input = &bhs[..];
    assert_eq!(
        f.next_pdu(&mut input).unwrap_err(),
        PduError::DataSegmentTooLong {
            len: 65537,
            max: 65536
        }
    );
    // A later change (Text renegotiation) applies to the next PDU.
    let mut f = Framer::new();
    f.set_max_data_segment_length(1024);
    let bhs = DataOut::default().encode(BhsLengths::data(1025).unwrap());
    let mut input = &bhs[..];
    assert!(matches!(
        f.next_event(&mut input),
        Err(PduError::DataSegmentTooLong { .. })
    ));
}

#[test]
fn digests_switch_on_at_a_pdu_boundary() {
    let login = Pdu::with_data(LoginResponse::default(), b"HeaderDigest=CRC32C\0".to_vec());
    let nop = Pdu::new(NopIn {
        itt: Itt(1),
        ..Default::default()
    });
    let mut bytes = login.to_bytes(Digests::NONE).unwrap();
    nop.encode(Digests::BOTH, &mut bytes).unwrap();
    let mut f = Framer::new();
    let mut input = &bytes[..];
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(login));
    f.enter_full_feature(Digests::BOTH, 8192);
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(nop));
    assert_eq!(f.digests(), Digests::BOTH);
}

#[test]
fn switching_to_whole_pdus_mid_pdu() {
    let pdu = Pdu::with_data(NopOut::default(), vec![1, 2, 3, 4]);
    let bytes = pdu.to_bytes(Digests::NONE).unwrap();
    // After only the header went out as an event, next_pdu rebuilds the PDU.
    let mut f = framer(Digests::NONE);
    let mut input = &bytes[..];
    assert!(matches!(
        f.next_event(&mut input).unwrap(),
        Some(Event::Header(_))
    ));
    assert_eq!(f.next_pdu(&mut input).unwrap(), Some(pdu.clone()));
    // After data went out, it cannot, and says so.
    let mut f = framer(Digests::NONE);
    let mut input = &bytes[..50];
    assert!(matches!(
        f.next_event(&mut input).unwrap(),
        Some(Event::Header(_))
    ));
    assert!(matches!(
        f.next_event(&mut input).unwrap(),
        Some(Event::Data(_))
    ));
    let mut input = &bytes[50..];
    assert_eq!(
        f.next_pdu(&mut input).unwrap_err(),
        PduError::ModeSwitchMidPdu
    );
}

#[test]
fn empty_input_and_idle_state() {
    let mut f = Framer::default();
    let mut input: &[u8] = &[];
    assert_eq!(f.next_event(&mut input).unwrap(), None);
    assert!(f.is_idle());
    let bytes = [0u8; 10];
    let mut input = &bytes[..];
    assert_eq!(f.next_event(&mut input).unwrap(), None);
    assert!(!f.is_idle());
}
