//! Key negotiation (RFC 7143 §6.2–§6.3, §12–§13; RFC 7145 §6) for each key
//! type, both roles, out-of-range values, wrong phase and wrong sender.

use rtgt_pdu::negotiation::*;
use rtgt_pdu::text::{KeyValue, TextPair, encode_pairs, parse_pairs};

const OP_LEADING: Context = Context::login(Stage::Operational, true);

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<TextPair<'static>> {
    list.iter()
        .map(|&(key, value)| TextPair { key, value })
        .collect()
}

fn target(local: LocalConfig) -> Negotiator {
    Negotiator::new(Role::Target, local)
}

fn answer(
    n: &mut Negotiator,
    ctx: Context,
    key: &'static str,
    value: &'static str,
) -> Option<String> {
    let ex = n.process(ctx, &pairs(&[(key, value)])).unwrap();
    ex.answer(key).map(str::to_owned)
}

#[test]
fn list_keys_pick_the_first_supported_offer() {
    let local = LocalConfig {
        header_digests: vec![Digest::None, Digest::Crc32c],
        ..Default::default()
    };
    let mut t = target(local.clone());
    assert_eq!(
        answer(&mut t, OP_LEADING, "HeaderDigest", "CRC32C,None").as_deref(),
        Some("CRC32C")
    );
    assert_eq!(t.params().header_digest, Digest::Crc32c);
    // Unknown values in the list are skipped.
    let mut t = target(local);
    assert_eq!(
        answer(&mut t, OP_LEADING, "HeaderDigest", "MD5,None").as_deref(),
        Some("None")
    );
    // Nothing acceptable: Reject, value stays the default.
    let mut t = target(LocalConfig {
        data_digests: vec![Digest::Crc32c],
        ..Default::default()
    });
    assert_eq!(
        answer(&mut t, OP_LEADING, "DataDigest", "None").as_deref(),
        Some("Reject")
    );
    assert_eq!(t.params().data_digest, Digest::None);
}

#[test]
fn boolean_and_or() {
    let mut t = target(LocalConfig {
        immediate_data: false,
        initial_r2t: false,
        ..Default::default()
    });
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("ImmediateData", "Yes"),
                ("InitialR2T", "No"),
                ("DataPDUInOrder", "No"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("ImmediateData"), Some("No")); // Yes AND No
    assert_eq!(ex.answer("InitialR2T"), Some("No")); // No OR No
    assert_eq!(ex.answer("DataPDUInOrder"), Some("Yes")); // No OR Yes (local default)
    let p = t.params();
    assert!(!p.immediate_data && !p.initial_r2t && p.data_pdu_in_order);
    // A Boolean that is not Yes/No is rejected.
    let mut t = target(LocalConfig::default());
    assert_eq!(
        answer(&mut t, OP_LEADING, "ImmediateData", "yes").as_deref(),
        Some("Reject")
    );
}

#[test]
fn numerical_min_and_max() {
    let mut t = target(LocalConfig {
        max_burst_length: 1 << 20,
        default_time2wait: 5,
        ..Default::default()
    });
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("MaxBurstLength", "16776192"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0x0"),
                ("MaxOutstandingR2T", "8"),
                ("ErrorRecoveryLevel", "2"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("MaxBurstLength"), Some("1048576"));
    assert_eq!(ex.answer("DefaultTime2Wait"), Some("5"));
    assert_eq!(ex.answer("DefaultTime2Retain"), Some("0"));
    assert_eq!(ex.answer("MaxOutstandingR2T"), Some("1"));
    assert_eq!(ex.answer("ErrorRecoveryLevel"), Some("0"));
    let p = t.params();
    assert_eq!(
        (
            p.max_burst_length,
            p.default_time2wait,
            p.default_time2retain
        ),
        (1 << 20, 5, 0)
    );
}

#[test]
fn out_of_range_and_malformed_numbers_are_rejected() {
    for (key, value) in [
        ("MaxBurstLength", "511"),
        ("MaxBurstLength", "16777216"),
        ("MaxConnections", "0"),
        ("DefaultTime2Wait", "3601"),
        ("ErrorRecoveryLevel", "3"),
        ("MaxOutstandingR2T", "many"),
        ("iSCSIProtocolLevel", "32"),
        ("FirstBurstLength", "-1"),
    ] {
        let mut t = target(LocalConfig::default());
        let before = t.params().clone();
        assert_eq!(
            answer(&mut t, OP_LEADING, key, value).as_deref(),
            Some("Reject"),
            "{key}={value}"
        );
        assert_eq!(*t.params(), before, "{key}={value} changed nothing");
    }
    // Declarations out of range are rejected too.
    let mut t = target(LocalConfig::default());
    assert_eq!(
        answer(&mut t, OP_LEADING, "MaxRecvDataSegmentLength", "100").as_deref(),
        Some("Reject")
    );
    assert_eq!(t.params().max_send_data_segment_length, 8192);
}

#[test]
fn max_recv_data_segment_length_is_declared_per_direction() {
    let mut t = target(LocalConfig {
        max_recv_data_segment_length: 131_072,
        ..Default::default()
    });
    let ex = t
        .process(OP_LEADING, &pairs(&[("MaxRecvDataSegmentLength", "4096")]))
        .unwrap();
    assert!(ex.answers.is_empty(), "declarations are not answered");
    let ours = t.offers(OP_LEADING);
    assert!(ours.contains(&KeyValue::new("MaxRecvDataSegmentLength", "131072")));
    let p = t.finish().unwrap();
    assert_eq!(p.max_send_data_segment_length, 4096);
    assert_eq!(p.max_recv_data_segment_length, 131_072);
    // Declared once only.
    assert!(t.offers(OP_LEADING).is_empty());
}

#[test]
fn first_burst_never_exceeds_max_burst() {
    let mut t = target(LocalConfig {
        first_burst_length: 1 << 20,
        max_burst_length: 1 << 20,
        ..Default::default()
    });
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[("FirstBurstLength", "524288"), ("MaxBurstLength", "65536")]),
        )
        .unwrap();
    assert_eq!(ex.answer("FirstBurstLength"), Some("65536"));
    assert_eq!(ex.answer("MaxBurstLength"), Some("65536"));
    assert_eq!(t.params().first_burst_length, 65536);
}

#[test]
fn unknown_and_extension_keys_are_not_understood() {
    let mut t = target(LocalConfig::default());
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("X-com.example.Foo", "1"),
                ("FooBar", "x"),
                ("X#Vendor", "y"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("X-com.example.Foo"), Some("NotUnderstood"));
    assert_eq!(ex.answer("FooBar"), Some("NotUnderstood"));
    assert_eq!(ex.answer("X#Vendor"), Some("NotUnderstood"));
    // X#NodeArchitecture is a defined declaration: recorded silently.
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[("X#NodeArchitecture", "ExampleOS/v1")]),
        )
        .unwrap();
    assert!(ex.answers.is_empty());
}

#[test]
fn obsolete_marker_keys_are_answered_not_misunderstood() {
    let mut t = target(LocalConfig::default());
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("OFMarker", "Yes"),
                ("IFMarker", "No"),
                ("OFMarkInt", "2048~8192"),
                ("IFMarkInt", "1"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("OFMarker"), Some("No"));
    assert_eq!(ex.answer("IFMarker"), Some("No"));
    assert_eq!(ex.answer("OFMarkInt"), Some("Reject"));
    assert_eq!(ex.answer("IFMarkInt"), Some("Reject"));
}

#[test]
fn wrong_phase_keys() {
    // SendTargets is full-feature only: a protocol error during login.
    let mut t = target(LocalConfig::default());
    let e = t
        .process(OP_LEADING, &pairs(&[("SendTargets", "All")]))
        .unwrap_err();
    assert!(
        matches!(e, NegotiationError::WrongPhase { ref key, stage: Stage::Operational } if key == "SendTargets")
    );
    assert_eq!(e.login_status(), rtgt_pdu::LoginStatus::INITIATOR_ERROR);
    // Security keys outside the security stage.
    for key in ["AuthMethod", "CHAP_A"] {
        let mut t = target(LocalConfig::default());
        assert!(matches!(
            t.process(OP_LEADING, &pairs(&[(key, "5")])),
            Err(NegotiationError::WrongPhase { .. })
        ));
    }
    // Login-only keys in full feature phase are rejected; SendTargets is served.
    let mut t = target(LocalConfig::default());
    let ex = t
        .process(
            Context::FULL_FEATURE,
            &pairs(&[
                ("MaxBurstLength", "4096"),
                ("HeaderDigest", "None"),
                ("SendTargets", "All"),
                ("CHAP_A", "5"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("MaxBurstLength"), Some("Reject"));
    assert_eq!(ex.answer("HeaderDigest"), Some("Reject"));
    assert_eq!(ex.answer("CHAP_A"), Some("Reject"));
    assert_eq!(ex.send_targets.as_deref(), Some("All"));
    assert_eq!(t.params().max_burst_length, 262_144);
    // MaxRecvDataSegmentLength may be redeclared in full feature phase.
    t.process(
        Context::FULL_FEATURE,
        &pairs(&[("MaxRecvDataSegmentLength", "16384")]),
    )
    .unwrap();
    t.process(
        Context::FULL_FEATURE,
        &pairs(&[("MaxRecvDataSegmentLength", "32768")]),
    )
    .unwrap();
    assert_eq!(t.params().max_send_data_segment_length, 32768);
}

#[test]
fn leading_only_keys_on_a_non_leading_connection_are_irrelevant() {
    let mut t = target(LocalConfig::default());
    let ctx = Context::login(Stage::Operational, false);
    let ex = t
        .process(
            ctx,
            &pairs(&[
                ("MaxBurstLength", "4096"),
                ("SessionType", "Normal"),
                ("HeaderDigest", "None"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("MaxBurstLength"), Some("Irrelevant"));
    assert_eq!(ex.answer("SessionType"), None);
    assert_eq!(ex.answer("HeaderDigest"), Some("None"));
    assert_eq!(t.params().max_burst_length, 262_144);
}

#[test]
fn wrong_sender_is_a_protocol_error() {
    let mut t = target(LocalConfig::default());
    assert!(matches!(
        t.process(OP_LEADING, &pairs(&[("TargetAlias", "disk")])),
        Err(NegotiationError::WrongSender {
            sender: Role::Initiator,
            ..
        })
    ));
    let mut t = target(LocalConfig::default());
    assert!(matches!(
        t.process(OP_LEADING, &pairs(&[("TargetPortalGroupTag", "1")])),
        Err(NegotiationError::WrongSender { .. })
    ));
    let mut i = Negotiator::new(Role::Initiator, LocalConfig::default());
    assert!(matches!(
        i.process(OP_LEADING, &pairs(&[("InitiatorName", "iqn.x")])),
        Err(NegotiationError::WrongSender {
            sender: Role::Target,
            ..
        })
    ));
    let mut i = Negotiator::new(Role::Initiator, LocalConfig::default());
    assert!(matches!(
        i.process(OP_LEADING, &pairs(&[("SessionType", "Normal")])),
        Err(NegotiationError::WrongSender { .. })
    ));
}

#[test]
fn renegotiating_a_key_in_login_is_a_protocol_error() {
    let mut t = target(LocalConfig::default());
    t.process(OP_LEADING, &pairs(&[("MaxBurstLength", "4096")]))
        .unwrap();
    assert!(matches!(
        t.process(OP_LEADING, &pairs(&[("MaxBurstLength", "4096")])),
        Err(NegotiationError::Renegotiated { .. })
    ));
    let mut t = target(LocalConfig::default());
    assert!(matches!(
        t.process(
            OP_LEADING,
            &pairs(&[("InitiatorName", "iqn.a"), ("InitiatorName", "iqn.b")])
        ),
        Err(NegotiationError::Renegotiated { .. })
    ));
    // Also in one full-feature Text request.
    let mut t = target(LocalConfig::default());
    assert!(matches!(
        t.process(
            Context::FULL_FEATURE,
            &pairs(&[
                ("MaxRecvDataSegmentLength", "512"),
                ("MaxRecvDataSegmentLength", "1024")
            ])
        ),
        Err(NegotiationError::Renegotiated { .. })
    ));
}

#[test]
fn discovery_sessions_negotiate_a_subset() {
    let mut t = target(LocalConfig {
        target_portal_group_tag: Some(1),
        ..Default::default()
    });
    let ctx = Context::login(Stage::Security, true);
    let ex = t
        .process(
            ctx,
            &pairs(&[
                ("InitiatorName", "iqn.2024-01.org.example:i"),
                ("SessionType", "Discovery"),
                ("AuthMethod", "None"),
                ("MaxBurstLength", "4096"),
                ("ImmediateData", "No"),
                ("DefaultTime2Wait", "0"),
                ("HeaderDigest", "None"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("MaxBurstLength"), Some("Irrelevant"));
    assert_eq!(ex.answer("ImmediateData"), Some("Irrelevant"));
    assert_eq!(ex.answer("DefaultTime2Wait"), Some("2"));
    assert_eq!(ex.answer("HeaderDigest"), Some("None"));
    assert_eq!(ex.answer("AuthMethod"), Some("None"));
    assert_eq!(t.params().session_type, SessionType::Discovery);
    // No portal group tag or alias in a discovery session's first response.
    assert!(t.offers(ctx).is_empty());
}

#[test]
fn iser_keys_need_rdma_extensions() {
    // A TCP target: RDMAExtensions=Yes AND No = No; iSER keys irrelevant.
    let mut t = target(LocalConfig::default());
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("TargetRecvDataSegmentLength", "65536"),
                ("RDMAExtensions", "Yes"),
                ("MaxOutstandingUnexpectedPDUs", "0"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("RDMAExtensions"), Some("No"));
    assert_eq!(ex.answer("TargetRecvDataSegmentLength"), Some("Irrelevant"));
    // A declaration is never answered, not even when irrelevant.
    assert_eq!(ex.answer("MaxOutstandingUnexpectedPDUs"), None);
    // An iSER target, whatever the order of keys.
    let mut t = target(LocalConfig {
        rdma_extensions: true,
        target_recv_data_segment_length: 262_144,
        max_outstanding_unexpected_pdus: 16,
        ..Default::default()
    });
    let ex = t
        .process(
            OP_LEADING,
            &pairs(&[
                ("TargetRecvDataSegmentLength", "1048576"),
                ("InitiatorRecvDataSegmentLength", "4096"),
                ("MaxOutstandingUnexpectedPDUs", "0"),
                ("RDMAExtensions", "Yes"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("RDMAExtensions"), Some("Yes"));
    assert_eq!(ex.answer("TargetRecvDataSegmentLength"), Some("262144"));
    assert_eq!(ex.answer("InitiatorRecvDataSegmentLength"), Some("4096"));
    // Declarative (RFC 7145 §6.7): recorded as the initiator's, not answered.
    assert_eq!(ex.answer("MaxOutstandingUnexpectedPDUs"), None);
    let p = t.params();
    assert!(p.rdma_extensions);
    assert_eq!(p.peer_max_outstanding_unexpected_pdus, 0);
    // MaxRecvDataSegmentLength is irrelevant with iSER: not declared; the target declares
    // its own MaxOutstandingUnexpectedPDUs instead.
    let offers = t.offers(OP_LEADING);
    assert!(!offers.iter().any(|kv| kv.key == "MaxRecvDataSegmentLength"));
    assert!(
        offers
            .iter()
            .any(|kv| kv.key == "MaxOutstandingUnexpectedPDUs" && kv.value == "16")
    );
    assert_eq!(t.params().max_outstanding_unexpected_pdus, 16);
    assert_eq!(
        answer(
            &mut target(LocalConfig {
                rdma_extensions: true,
                ..Default::default()
            }),
            OP_LEADING,
            "MaxOutstandingUnexpectedPDUs",
            "1"
        )
        .as_deref(),
        Some("Reject"),
        "1 is below the minimum of 2 (0 means no limit)"
    );
}

/// RFC 7145 §6.7: MaxOutstandingUnexpectedPDUs is declarative. Each side keeps its own
/// declaration (what it can receive) and the peer's (what it may send); neither is the
/// minimum of the two.
#[test]
fn max_outstanding_unexpected_pdus_is_declared_by_each_side() {
    let login = |ini_unexpected: u32, tgt_unexpected: u32| {
        let mut ini = Negotiator::new(
            Role::Initiator,
            LocalConfig {
                name: Some("iqn.2024-01.org.example:host".into()),
                target_name: Some("iqn.2024-01.org.example:disk".into()),
                rdma_extensions: true,
                max_outstanding_unexpected_pdus: ini_unexpected,
                ..Default::default()
            },
        );
        let mut tgt = target(LocalConfig {
            rdma_extensions: true,
            max_outstanding_unexpected_pdus: tgt_unexpected,
            ..Default::default()
        });
        let mut sent = Vec::new();
        for stage in [Stage::Security, Stage::Operational] {
            let ctx = Context::login(stage, true);
            let req = encode_pairs(&ini.offers(ctx));
            sent.push(String::from_utf8(req.clone()).unwrap());
            let mut answers = tgt
                .process(ctx, &parse_pairs(&req).unwrap())
                .unwrap()
                .answers;
            answers.extend(tgt.offers(ctx));
            let rsp = encode_pairs(&answers);
            sent.push(String::from_utf8(rsp.clone()).unwrap());
            let back = ini.process(ctx, &parse_pairs(&rsp).unwrap()).unwrap();
            assert!(back.answers.is_empty(), "{:?}", back.answers);
        }
        (ini.finish().unwrap(), tgt.finish().unwrap(), sent)
    };
    let (i, t, sent) = login(6, 8);
    assert_eq!(
        (
            i.max_outstanding_unexpected_pdus,
            i.peer_max_outstanding_unexpected_pdus
        ),
        (6, 8)
    );
    assert_eq!(
        (
            t.max_outstanding_unexpected_pdus,
            t.peer_max_outstanding_unexpected_pdus
        ),
        (8, 6)
    );
    assert!(
        sent[2].contains("MaxOutstandingUnexpectedPDUs=6\0"),
        "{sent:?}"
    );
    assert!(
        sent[3].contains("MaxOutstandingUnexpectedPDUs=8\0"),
        "{sent:?}"
    );
    // An initiator declaring 0 (no limit); a target that does not declare at all.
    let (i, t, sent) = login(0, 0);
    assert_eq!(i.peer_max_outstanding_unexpected_pdus, 0);
    assert_eq!(t.peer_max_outstanding_unexpected_pdus, 0);
    assert!(
        !sent[3].contains("MaxOutstandingUnexpectedPDUs"),
        "{sent:?}"
    );
}

/// Linux initiators never send MaxOutstandingUnexpectedPDUs: the target still declares
/// its own value and the initiator's stays "no limit" (0).
#[test]
fn an_initiator_without_the_declaration_keeps_the_default() {
    let mut tgt = target(LocalConfig {
        rdma_extensions: true,
        max_outstanding_unexpected_pdus: 8,
        ..Default::default()
    });
    let ex = tgt
        .process(
            OP_LEADING,
            &pairs(&[
                ("RDMAExtensions", "Yes"),
                ("TargetRecvDataSegmentLength", "8192"),
                ("InitiatorRecvDataSegmentLength", "8192"),
            ]),
        )
        .unwrap();
    assert_eq!(ex.answer("RDMAExtensions"), Some("Yes"));
    let offers = tgt.offers(OP_LEADING);
    assert_eq!(
        offers
            .iter()
            .find(|kv| kv.key == "MaxOutstandingUnexpectedPDUs")
            .map(|kv| kv.value.as_str()),
        Some("8")
    );
    let p = tgt.finish().unwrap();
    assert_eq!(p.max_outstanding_unexpected_pdus, 8);
    assert_eq!(p.peer_max_outstanding_unexpected_pdus, 0);
}

/// Found by fuzzing: with iSER negotiated, the target ignored the initiator's
/// MaxRecvDataSegmentLength declaration (irrelevant under iSER) while the
/// initiator had adopted it, so the two sides disagreed.
#[test]
fn declarations_are_kept_when_iser_makes_them_irrelevant() {
    let mut ini = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            rdma_extensions: true,
            max_recv_data_segment_length: 1024,
            ..Default::default()
        },
    );
    let mut tgt = target(LocalConfig {
        rdma_extensions: true,
        ..Default::default()
    });
    let req = encode_pairs(&ini.offers(OP_LEADING));
    let ex = tgt
        .process(OP_LEADING, &parse_pairs(&req).unwrap())
        .unwrap();
    assert_eq!(ex.answer("RDMAExtensions"), Some("Yes"));
    assert_eq!(ex.answer("MaxRecvDataSegmentLength"), None);
    let mut resp = ex.answers;
    resp.extend(tgt.offers(OP_LEADING));
    ini.process(OP_LEADING, &parse_pairs(&encode_pairs(&resp)).unwrap())
        .unwrap();
    let (pi, pt) = (ini.finish().unwrap(), tgt.finish().unwrap());
    assert!(pi.rdma_extensions && pt.rdma_extensions);
    assert_eq!(pi.max_recv_data_segment_length, 1024);
    assert_eq!(pt.max_send_data_segment_length, 1024);
}

#[test]
fn auth_keys_are_passed_to_the_authenticator() {
    let mut t = target(LocalConfig {
        auth_methods: vec!["CHAP".into()],
        ..Default::default()
    });
    let sec = Context::login(Stage::Security, true);
    let ex = t
        .process(sec, &pairs(&[("AuthMethod", "CHAP,None")]))
        .unwrap();
    assert_eq!(ex.answer("AuthMethod"), Some("CHAP"));
    assert_eq!(t.params().auth_method, "CHAP");
    let ex = t.process(sec, &pairs(&[("CHAP_A", "5")])).unwrap();
    assert_eq!(ex.auth, vec![KeyValue::new("CHAP_A", "5")]);
    assert!(ex.answers.is_empty());
    let ex = t
        .process(sec, &pairs(&[("CHAP_N", "user"), ("CHAP_R", "0x0102")]))
        .unwrap();
    assert_eq!(ex.auth.len(), 2);
    // A required method the initiator does not offer.
    let mut t = target(LocalConfig {
        auth_methods: vec!["CHAP".into()],
        ..Default::default()
    });
    assert_eq!(
        answer(&mut t, sec, "AuthMethod", "None").as_deref(),
        Some("Reject")
    );
}

#[test]
fn initiator_checks_the_targets_answers() {
    let offers_then = |answers: &[(&'static str, &'static str)]| {
        let mut i = Negotiator::new(
            Role::Initiator,
            LocalConfig {
                max_burst_length: 65536,
                ..Default::default()
            },
        );
        let offered = i.offers(OP_LEADING);
        assert!(
            offered
                .iter()
                .any(|kv| kv.key == "MaxBurstLength" && kv.value == "65536")
        );
        let r = i.process(OP_LEADING, &pairs(answers));
        (i, r)
    };
    // Valid answers.
    let (i, r) = offers_then(&[
        ("MaxBurstLength", "8192"),
        ("HeaderDigest", "None"),
        ("ImmediateData", "No"),
    ]);
    r.unwrap();
    assert_eq!(i.params().max_burst_length, 8192);
    assert!(!i.params().immediate_data);
    // A minimum above the offer.
    let (_, r) = offers_then(&[("MaxBurstLength", "131072")]);
    assert!(matches!(r, Err(NegotiationError::InvalidAnswer { .. })));
    // A list answer that was not offered.
    let (_, r) = offers_then(&[("HeaderDigest", "CRC32C")]);
    assert!(matches!(r, Err(NegotiationError::InvalidAnswer { .. })));
    // OR offered Yes cannot come back No.
    let (_, r) = offers_then(&[("InitialR2T", "No")]);
    assert!(matches!(r, Err(NegotiationError::InvalidAnswer { .. })));
    // A standard key answered NotUnderstood.
    let (_, r) = offers_then(&[("MaxBurstLength", "NotUnderstood")]);
    assert!(matches!(r, Err(NegotiationError::InvalidAnswer { .. })));
    // Reject keeps the default.
    let (i, r) = offers_then(&[("MaxBurstLength", "Reject")]);
    r.unwrap();
    assert_eq!(i.params().max_burst_length, 262_144);
}

#[test]
fn missing_answers_fail_the_login_unless_optional() {
    let mut i = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            initial_r2t: true,
            immediate_data: false,
            ..Default::default()
        },
    );
    let offered = i.offers(OP_LEADING);
    assert!(offered.contains(&KeyValue::new("ImmediateData", "No")));
    // Answer everything except ImmediateData=No (AND-No: optional) and InitialR2T=Yes (OR-Yes: optional).
    let answers: Vec<KeyValue> = offered
        .iter()
        .filter(|kv| {
            ![
                "ImmediateData",
                "InitialR2T",
                "MaxRecvDataSegmentLength",
                "SessionType",
            ]
            .contains(&kv.key.as_str())
        })
        .map(|kv| KeyValue::new(kv.key.clone(), kv.value.split(',').next().unwrap()))
        .collect();
    let data = encode_pairs(&answers);
    i.process(OP_LEADING, &parse_pairs(&data).unwrap()).unwrap();
    assert!(i.pending_offers().is_empty(), "{:?}", i.pending_offers());
    let p = i.finish().unwrap();
    assert!(!p.immediate_data && p.initial_r2t);

    let mut i = Negotiator::new(Role::Initiator, LocalConfig::default());
    i.offers(OP_LEADING);
    assert!(i.pending_offers().contains(&"MaxBurstLength"));
    assert!(matches!(
        i.finish(),
        Err(NegotiationError::MissingAnswer { .. })
    ));
}

#[test]
fn optional_keys_may_be_not_understood() {
    let mut i = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            iscsi_protocol_level: 2,
            ..Default::default()
        },
    );
    let offered = i.offers(OP_LEADING);
    assert!(offered.contains(&KeyValue::new("iSCSIProtocolLevel", "2")));
    i.process(
        OP_LEADING,
        &pairs(&[("iSCSIProtocolLevel", "NotUnderstood")]),
    )
    .unwrap();
    assert_eq!(i.params().iscsi_protocol_level, 1);
}

/// A whole login between the two roles, security then operational stage,
/// for a normal and a discovery session.
#[test]
fn initiator_and_target_agree() {
    for session_type in [SessionType::Normal, SessionType::Discovery] {
        let mut ini = Negotiator::new(
            Role::Initiator,
            LocalConfig {
                name: Some("iqn.2024-01.org.example:i".into()),
                alias: Some("host one".into()),
                target_name: Some("iqn.2024-01.org.example:t".into()),
                session_type,
                header_digests: vec![Digest::Crc32c, Digest::None],
                data_digests: vec![Digest::Crc32c, Digest::None],
                max_recv_data_segment_length: 262_144,
                max_burst_length: 1 << 20,
                first_burst_length: 1 << 20,
                error_recovery_level: 1,
                ..Default::default()
            },
        );
        let mut tgt = Negotiator::new(
            Role::Target,
            LocalConfig {
                alias: Some("disk".into()),
                target_portal_group_tag: Some(7),
                header_digests: vec![Digest::None, Digest::Crc32c],
                data_digests: vec![Digest::None],
                max_recv_data_segment_length: 65536,
                max_burst_length: 512 * 1024,
                first_burst_length: 64 * 1024,
                ..Default::default()
            },
        );
        for stage in [Stage::Security, Stage::Operational] {
            let ctx = Context::login(stage, true);
            let req = encode_pairs(&ini.offers(ctx));
            let ex = tgt.process(ctx, &parse_pairs(&req).unwrap()).unwrap();
            let mut resp = ex.answers;
            resp.extend(tgt.offers(ctx));
            let back = ini
                .process(ctx, &parse_pairs(&encode_pairs(&resp)).unwrap())
                .unwrap();
            assert!(back.answers.is_empty());
        }
        let pi = ini.finish().unwrap();
        let pt = tgt.finish().unwrap();
        assert_eq!(pi.session_type, session_type);
        assert_eq!(pt.session_type, session_type);
        assert_eq!(pi.digests(), pt.digests());
        assert!(pi.digests().header && !pi.digests().data);
        assert_eq!(
            pi.max_recv_data_segment_length,
            pt.max_send_data_segment_length
        );
        assert_eq!(
            pt.max_recv_data_segment_length,
            pi.max_send_data_segment_length
        );
        assert_eq!(pt.max_recv_data_segment_length, 65536);
        assert_eq!(pi.error_recovery_level, 0);
        assert_eq!(pt.initiator_alias.as_deref(), Some("host one"));
        if session_type == SessionType::Normal {
            assert_eq!(pi.max_burst_length, 512 * 1024);
            assert_eq!(pi.first_burst_length, 64 * 1024);
            assert_eq!(
                pi,
                NegotiatedParams {
                    max_recv_data_segment_length: pi.max_recv_data_segment_length,
                    max_send_data_segment_length: pi.max_send_data_segment_length,
                    initiator_name: pi.initiator_name.clone(),
                    initiator_alias: pi.initiator_alias.clone(),
                    target_name: pi.target_name.clone(),
                    ..pt.clone()
                }
            );
            assert_eq!(pi.target_portal_group_tag, Some(7));
            assert_eq!(pi.target_alias.as_deref(), Some("disk"));
            assert_eq!(pt.target_name.as_deref(), Some("iqn.2024-01.org.example:t"));
        } else {
            assert_eq!(
                pi.max_burst_length, 262_144,
                "irrelevant in discovery: default"
            );
            assert_eq!(pt.target_name, None);
            assert_eq!(pi.target_portal_group_tag, None);
        }
    }
}
