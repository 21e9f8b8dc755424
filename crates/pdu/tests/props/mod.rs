//! Properties the fuzz targets check (`fuzz/fuzz_targets/*.rs` include this
//! file), shared with `tests/fuzz_regressions.rs`, which replays the
//! committed seeds and every crash input under `tests/data/fuzz/`.

#![allow(dead_code, clippy::missing_panics_doc)]

pub mod framer {
    use rtgt_pdu::{
        BHS_LEN, BhsLengths, Digests, Event, Framer, LoginStage, Pdu, PduError, PduHeader,
    };

    #[derive(Debug, PartialEq)]
    enum Out {
        Pdu(Pdu),
        Err(PduError),
    }

    fn is_final_login(p: &Pdu) -> bool {
        match &p.header {
            PduHeader::LoginRequest(h) => h.next_stage == Some(LoginStage::FULL_FEATURE_PHASE),
            PduHeader::LoginResponse(h) => h.next_stage == Some(LoginStage::FULL_FEATURE_PHASE),
            _ => false,
        }
    }

    fn new_framer(cfg: u8) -> Framer {
        let mut f = Framer::new();
        if cfg & 4 != 0 {
            f.enter_full_feature(digests(cfg), 65536);
        }
        f
    }

    fn digests(cfg: u8) -> Digests {
        Digests {
            header: cfg & 1 != 0,
            data: cfg & 2 != 0,
        }
    }

    /// Frames `parts` in whole-PDU mode, stopping after a connection-dropping error.
    fn frame(cfg: u8, parts: &[&[u8]]) -> Vec<Out> {
        let mut f = new_framer(cfg);
        let mut out = Vec::new();
        for part in parts {
            let mut input = *part;
            loop {
                match f.next_pdu(&mut input) {
                    Ok(Some(p)) => {
                        if is_final_login(&p) {
                            f.enter_full_feature(digests(cfg), 65536);
                        }
                        out.push(Out::Pdu(p));
                    }
                    Ok(None) => {
                        assert!(input.is_empty());
                        break;
                    }
                    Err(e) => {
                        let drop = e.reject_reason().is_none();
                        out.push(Out::Err(e));
                        if drop {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    /// Frames in event mode and rebuilds the same outputs.
    fn frame_events(cfg: u8, stream: &[u8]) -> Vec<Out> {
        let mut f = new_framer(cfg);
        let mut out = Vec::new();
        let mut cur: Option<Pdu> = None;
        let mut input = stream;
        loop {
            match f.next_event(&mut input) {
                Ok(Some(Event::Header(h))) => {
                    assert!(cur.is_none());
                    let ahs = rtgt_pdu::Ahs::decode_all(f.ahs()).expect("framer validated the AHS");
                    assert_eq!(h.lengths.ahs_len(), f.ahs().len());
                    cur = Some(Pdu {
                        header: h.header,
                        ahs,
                        data: Vec::new(),
                    });
                }
                Ok(Some(Event::Data(d))) => {
                    assert!(!d.is_empty());
                    cur.as_mut()
                        .expect("data follows a header")
                        .data
                        .extend_from_slice(d);
                }
                Ok(Some(Event::End)) => {
                    let p = cur.take().expect("end follows a header");
                    if is_final_login(&p) {
                        f.enter_full_feature(digests(cfg), 65536);
                    }
                    out.push(Out::Pdu(p));
                }
                Ok(None) => break,
                Err(e) => {
                    cur = None;
                    let drop = e.reject_reason().is_none();
                    out.push(Out::Err(e));
                    if drop {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Fuzzes the stream framer (RFC 7143 §11.2) and header codec.
    ///
    /// Input: `[config, split_a, split_b, stream...]`. Config bits: 0 header
    /// digest and 1 data digest once in full feature phase, 2 start in full
    /// feature phase, 3 re-encode the framed PDUs with digests and frame them
    /// again. The stream is fed whole, and again split at two points; the
    /// results must agree. Every framed PDU must re-encode and decode to
    /// itself, event mode must agree with whole-PDU mode, and every decodable
    /// BHS must survive encode → decode.
    pub fn framer(data: &[u8]) {
        let [cfg, split_a, split_b, stream @ ..] = data else {
            return;
        };
        let cfg = *cfg;

        // Any 48 bytes that decode must survive encode → decode.
        if let Some(bhs) = stream.first_chunk::<BHS_LEN>() {
            if let Ok(h) = PduHeader::decode(bhs) {
                let lengths = BhsLengths::from_bhs(bhs);
                let again = h.encode(lengths);
                assert_eq!(PduHeader::decode(&again).as_ref(), Ok(&h));
                assert_eq!(BhsLengths::from_bhs(&again), lengths);
                assert_eq!(h.encode(lengths), again);
            }
        }

        let whole = frame(cfg, &[stream]);
        let first = usize::from(*split_a) * stream.len() / 256;
        let second = first + (usize::from(*split_b) * (stream.len() - first)) / 256;
        let split = frame(
            cfg,
            &[&stream[..first], &stream[first..second], &stream[second..]],
        );
        assert_eq!(whole, split, "framing depends on how the stream is split");
        assert_eq!(
            frame_events(cfg, stream),
            whole,
            "event mode disagrees with whole-PDU mode"
        );

        let mut logged_in = cfg & 4 != 0;
        let mut reencoded = Vec::new();
        for out in &whole {
            let Out::Pdu(p) = out else { continue };
            let d = if logged_in {
                digests(cfg)
            } else {
                Digests::NONE
            };
            let bytes = p.to_bytes(d).expect("a framed PDU re-encodes");
            assert_eq!(bytes.len(), p.encoded_len(d));
            assert_eq!(Pdu::decode(&bytes, d).as_ref(), Ok(p));
            if cfg & 8 != 0 {
                p.encode(Digests::BOTH, &mut reencoded)
                    .expect("re-encodes with digests");
            }
            if is_final_login(p) {
                logged_in = true;
            }
        }
        if cfg & 8 != 0 {
            // The same PDUs with valid digests frame to themselves.
            let mut f = Framer::new();
            f.enter_full_feature(Digests::BOTH, rtgt_pdu::MAX_DATA_SEGMENT_LEN);
            let mut input = &reencoded[..];
            for out in &whole {
                let Out::Pdu(p) = out else { continue };
                assert_eq!(f.next_pdu(&mut input).as_ref(), Ok(&Some(p.clone())));
            }
            assert!(input.is_empty());
        }
    }
}

pub mod text_keys {
    use rtgt_pdu::text::value::{encode_base64, encode_hex, parse_binary, parse_number};
    use rtgt_pdu::text::{
        KeyValue, TextAssembler, TextError, encode_pairs, parse_pairs, parse_unique, split_segments,
    };

    /// Fuzzes the text key parser and value encodings (RFC 7143 §6.1).
    ///
    /// Input: `[segment_size, text...]`. Parsed pairs must re-encode to text
    /// that parses to the same pairs; `parse_unique` must agree with
    /// `parse_pairs` about duplicates; splitting by any segment size and
    /// reassembling must give back the text; every numeric or binary value
    /// that decodes must survive re-encoding in decimal, hex and base64.
    pub fn text_keys(data: &[u8]) {
        let [size, text @ ..] = data else { return };

        // Split by the peer's segment size and reassemble.
        let mut asm = TextAssembler::new(TextAssembler::DEFAULT_LIMIT);
        let mut joined = None;
        for (seg, more) in split_segments(text, usize::from(*size)) {
            assert!(seg.len() <= usize::from(*size).max(1));
            assert!(joined.is_none());
            match asm.push(seg, more) {
                Ok(j) => joined = j,
                Err(TextError::TooLong { .. }) => return,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(joined.as_deref(), Some(text));

        match parse_pairs(text) {
            Ok(pairs) => {
                let owned: Vec<KeyValue> = pairs.iter().map(|p| KeyValue::from(*p)).collect();
                let again = encode_pairs(&owned);
                assert_eq!(parse_pairs(&again).as_deref(), Ok(&pairs[..]));
                let dup = pairs
                    .iter()
                    .enumerate()
                    .any(|(i, p)| pairs[..i].iter().any(|q| q.key == p.key));
                assert_eq!(parse_unique(text).is_err(), dup);
                for p in &pairs {
                    if let Ok(n) = parse_number(p.value) {
                        assert_eq!(parse_number(&n.to_string()), Ok(n));
                        assert_eq!(parse_number(&encode_hex(&n.to_be_bytes())), Ok(n));
                        assert_eq!(parse_number(&encode_base64(&n.to_be_bytes())), Ok(n));
                    }
                    if let Ok(b) = parse_binary(p.value) {
                        assert_eq!(parse_binary(&encode_hex(&b)).as_ref(), Ok(&b));
                        if !b.is_empty() {
                            assert_eq!(parse_binary(&encode_base64(&b)).as_ref(), Ok(&b));
                        }
                    }
                }
            }
            Err(_) => assert!(parse_unique(text).is_err()),
        }
    }
}

pub mod negotiation {
    use rtgt_pdu::negotiation::{
        Context, Digest, KeyType, LocalConfig, Negotiator, Role, SessionType, Stage, lookup,
    };
    use rtgt_pdu::text::value::{Special, parse_bool, parse_number, split_list};
    use rtgt_pdu::text::{encode_pairs, parse_pairs};

    fn config(c: [u8; 8], initiator: bool) -> LocalConfig {
        let digests = |b: u8| match b % 3 {
            0 => vec![Digest::None],
            1 => vec![Digest::Crc32c],
            _ => vec![Digest::Crc32c, Digest::None],
        };
        let len = |b: u8| 512u32 << (b % 16);
        LocalConfig {
            header_digests: digests(c[0]),
            data_digests: digests(c[0] / 3),
            initial_r2t: c[1] & 1 != 0,
            immediate_data: c[1] & 2 != 0,
            data_pdu_in_order: c[1] & 4 != 0,
            data_sequence_in_order: c[1] & 8 != 0,
            rdma_extensions: c[1] & 16 != 0,
            max_recv_data_segment_length: len(c[2]).min(0xff_ffff),
            max_burst_length: len(c[3]).min(0xff_ffff),
            first_burst_length: len(c[4]).min(0xff_ffff),
            max_connections: u16::from(c[5] % 4) + 1,
            max_outstanding_r2t: u16::from(c[5] / 4 % 8) + 1,
            error_recovery_level: c[6] % 3,
            default_time2wait: u16::from(c[6]),
            default_time2retain: u16::from(c[7]),
            max_outstanding_unexpected_pdus: u32::from(c[7] % 3) * 8,
            session_type: if initiator && c[1] & 32 != 0 {
                SessionType::Discovery
            } else {
                SessionType::Normal
            },
            name: initiator.then(|| "iqn.2024-01.org.example:i".to_owned()),
            target_name: initiator.then(|| "iqn.2024-01.org.example:t".to_owned()),
            target_portal_group_tag: (!initiator).then_some(u16::from(c[2])),
            ..LocalConfig::default()
        }
    }

    fn check_answer(key: &str, value: &str) {
        if Special::parse(value).is_some() {
            return;
        }
        let Some(def) = lookup(key) else {
            panic!("answered a non-standard key {key} with {value}")
        };
        match def.key_type {
            KeyType::List { .. } => assert!(!value.contains(','), "{key}={value}"),
            KeyType::BoolAnd | KeyType::BoolOr => {
                assert!(parse_bool(value).is_ok(), "{key}={value}");
            }
            KeyType::NumMin { min, max }
            | KeyType::NumMax { min, max }
            | KeyType::DeclarativeNum { min, max } => {
                let n = parse_number(value).expect("numeric answer");
                assert!((min..=max).contains(&n), "{key}={value}");
            }
            KeyType::DeclarativeNumOrZero { min, max } => {
                let n = parse_number(value).expect("numeric answer");
                assert!(n == 0 || (min..=max).contains(&n), "{key}={value}");
            }
            KeyType::Obsolete { answer } => assert_eq!(value, answer),
            _ => {}
        }
    }

    /// Fuzzes the negotiation engine (RFC 7143 §6.2, §13; RFC 7145 §6).
    ///
    /// Input: `[ctx, cfg..8, text...]`. A target negotiator configured from
    /// `cfg` processes the pairs of `text` in the context `ctx`: every answer
    /// must be a valid pair answering a key that was received, and every value
    /// it gives a standard key must be in that key's range or one of the
    /// special answers. Then an initiator and a target configured from `cfg`
    /// run a whole login against each other: the initiator must accept every
    /// answer and both sides must end with the same session parameters.
    pub fn negotiation(data: &[u8]) {
        let [ctx, c0, c1, c2, c3, c4, c5, c6, c7, text @ ..] = data else {
            return;
        };
        let cfg = [*c0, *c1, *c2, *c3, *c4, *c5, *c6, *c7];
        let stage = match ctx % 3 {
            0 => Stage::Security,
            1 => Stage::Operational,
            _ => Stage::FullFeature,
        };
        let context = Context {
            stage,
            leading: ctx & 4 != 0,
        };

        // Arbitrary input against a target.
        if let Ok(pairs) = parse_pairs(text) {
            let mut t = Negotiator::new(Role::Target, config(cfg, false));
            if let Ok(ex) = t.process(context, &pairs) {
                for a in &ex.answers {
                    assert!(
                        pairs.iter().any(|p| p.key == a.key),
                        "answered unasked {}",
                        a.key
                    );
                    if lookup(&a.key).is_some() {
                        check_answer(&a.key, &a.value);
                    } else {
                        assert_eq!(a.value, "NotUnderstood");
                    }
                }
                let encoded = encode_pairs(&ex.answers);
                assert_eq!(parse_pairs(&encoded).map(|p| p.len()), Ok(ex.answers.len()));
                let offers = t.offers(context);
                for o in &offers {
                    check_answer(&o.key, &o.value);
                }
                if let Ok(p) = t.finish() {
                    assert!(p.first_burst_length <= p.max_burst_length);
                }
            }
        }

        // Our two roles against each other always agree.
        let mut ini = Negotiator::new(Role::Initiator, config(cfg, true));
        let mut tgt = Negotiator::new(
            Role::Target,
            config([c7 ^ ctx, *c6, *c5, *c4, *c3, *c2, *c1, *c0], false),
        );
        for stage in [Stage::Security, Stage::Operational] {
            let ctx = Context::login(stage, true);
            let offers = ini.offers(ctx);
            for o in &offers {
                if let Some(def) = lookup(&o.key) {
                    if let KeyType::List { .. } = def.key_type {
                        assert!(split_list(&o.value).all(|v| !v.is_empty()));
                    } else {
                        check_answer(&o.key, &o.value);
                    }
                }
            }
            let req = encode_pairs(&offers);
            let ex = tgt
                .process(ctx, &parse_pairs(&req).expect("our offers parse"))
                .expect("target accepts our offers");
            let mut resp = ex.answers;
            resp.extend(tgt.offers(ctx));
            for a in &resp {
                check_answer(&a.key, &a.value);
            }
            let back = ini
                .process(
                    ctx,
                    &parse_pairs(&encode_pairs(&resp)).expect("answers parse"),
                )
                .expect("initiator accepts the target's answers");
            assert!(back.answers.is_empty());
        }
        let pi = ini.finish().expect("initiator complete");
        let pt = tgt.finish().expect("target complete");
        assert_eq!(pi.digests(), pt.digests());
        assert_eq!(
            pi.max_recv_data_segment_length,
            pt.max_send_data_segment_length
        );
        assert_eq!(
            pt.max_recv_data_segment_length,
            pi.max_send_data_segment_length
        );
        assert_eq!(
            (
                pi.max_burst_length,
                pi.first_burst_length,
                pi.initial_r2t,
                pi.immediate_data,
                pi.error_recovery_level
            ),
            (
                pt.max_burst_length,
                pt.first_burst_length,
                pt.initial_r2t,
                pt.immediate_data,
                pt.error_recovery_level
            )
        );
        assert_eq!(
            (
                pi.data_pdu_in_order,
                pi.data_sequence_in_order,
                pi.max_outstanding_r2t,
                pi.default_time2wait,
                pi.default_time2retain
            ),
            (
                pt.data_pdu_in_order,
                pt.data_sequence_in_order,
                pt.max_outstanding_r2t,
                pt.default_time2wait,
                pt.default_time2retain
            )
        );
        assert_eq!(
            (pi.rdma_extensions, pi.max_connections, pi.session_type),
            (pt.rdma_extensions, pt.max_connections, pt.session_type)
        );
        assert!(pi.first_burst_length <= pi.max_burst_length);
    }
}
