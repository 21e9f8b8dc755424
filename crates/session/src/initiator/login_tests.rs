//! Login against a scripted target built from the target-role negotiation engine.

// Short names (s = session, c = connection, t = task) keep the scripted exchanges readable.
#![allow(
    clippy::many_single_char_names,
    clippy::unnecessary_wraps,
    clippy::needless_pass_by_value
)]

use rtgt_pdu::negotiation::{Context, LocalConfig, Negotiator, Role, Stage};
use rtgt_pdu::text::{KeyValue, encode_pairs, parse_pairs};
use rtgt_pdu::{Isid, Itt, LoginRequest, LoginResponse, LoginStage, LoginStatus, PduHeader, Sn};

use super::*;
use crate::chap::{Challenge, ChapAlgorithm, CountingRng, parse_binary};

const ISID: Isid = Isid([0x80, 0, 0, 0x12, 0x34, 0]);

/// What the scripted target does about CHAP.
#[derive(Clone)]
struct TargetAuth {
    user: String,
    secret: Vec<u8>,
    /// Mutual: the target's name and secret.
    mutual: Option<(String, Vec<u8>)>,
}

struct Target {
    neg: Negotiator,
    auth: Option<TargetAuth>,
    challenge: Option<Challenge>,
    stat_sn: u32,
    tsih: u16,
    /// Split the next response's text into PDUs of at most this many bytes.
    split: Option<usize>,
    pending_text: Vec<u8>,
    pending_transit: Option<LoginStage>,
}

impl Target {
    fn new(auth: Option<TargetAuth>) -> Self {
        let mut local = LocalConfig {
            max_recv_data_segment_length: 65536,
            max_burst_length: 1 << 20,
            first_burst_length: 1 << 16,
            max_connections: 4,
            target_portal_group_tag: Some(1),
            alias: Some("disk".into()),
            ..LocalConfig::default()
        };
        local.auth_methods = if auth.is_some() {
            vec!["CHAP".into()]
        } else {
            vec!["None".into()]
        };
        Self {
            neg: Negotiator::new(Role::Target, local),
            auth,
            challenge: None,
            stat_sn: 10,
            tsih: 0x4242,
            split: None,
            pending_text: Vec::new(),
            pending_transit: None,
        }
    }

    fn respond(
        &mut self,
        req: &LoginRequest,
        keys: Vec<KeyValue>,
        transit: Option<LoginStage>,
    ) -> (LoginResponse, Vec<u8>) {
        let mut text = encode_pairs(&keys);
        let mut cont = false;
        if let Some(n) = self.split.take() {
            if text.len() > n {
                self.pending_text = text.split_off(n);
                self.pending_transit = transit;
                cont = true;
            }
        }
        let h = LoginResponse {
            next_stage: if cont { None } else { transit },
            continue_flag: cont,
            current_stage: req.current_stage,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: if transit == Some(LoginStage::FULL_FEATURE_PHASE) && !cont {
                self.tsih
            } else {
                req.tsih
            },
            itt: req.itt,
            stat_sn: Sn(self.stat_sn),
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.add(31),
            status: LoginStatus::SUCCESS,
        };
        self.stat_sn += 1;
        (h, text)
    }

    /// Answers one Login Request.
    fn handle(&mut self, pdu: &Pdu) -> (LoginResponse, Vec<u8>) {
        let PduHeader::LoginRequest(req) = pdu.header else {
            panic!("not a login request")
        };
        assert_eq!(req.itt, Itt(0));
        assert!(!(req.continue_flag && req.next_stage.is_some()));
        if !self.pending_text.is_empty() {
            assert!(
                pdu.data.is_empty(),
                "initiator must ask for the rest with an empty request"
            );
            let rest = std::mem::take(&mut self.pending_text);
            let h = LoginResponse {
                next_stage: self.pending_transit.take(),
                current_stage: req.current_stage,
                isid: req.isid,
                itt: req.itt,
                stat_sn: Sn(self.stat_sn),
                exp_cmd_sn: req.cmd_sn,
                max_cmd_sn: req.cmd_sn.add(31),
                ..Default::default()
            };
            return (h, rest);
        }
        let leading = req.tsih == 0;
        let stage = if req.current_stage == LoginStage::SECURITY_NEGOTIATION {
            Stage::Security
        } else {
            Stage::Operational
        };
        let ctx = Context::login(stage, leading);
        let pairs = parse_pairs(&pdu.data).unwrap();
        let ex = self.neg.process(ctx, &pairs).unwrap();
        let mut out = ex.answers;
        out.extend(self.neg.offers(ctx));
        let mut transit = req.next_stage;
        if stage == Stage::Security {
            if let Some(auth) = self.auth.clone() {
                let get = |k: &str| {
                    ex.auth
                        .iter()
                        .find(|kv| kv.key == k)
                        .map(|kv| kv.value.clone())
                };
                if let Some(a) = get("CHAP_A") {
                    let alg = ChapAlgorithm::select(&a, &ChapAlgorithm::ALL).unwrap();
                    let c = Challenge::generate(alg, &mut CountingRng(7)).unwrap();
                    out.push(KeyValue::new("CHAP_A", alg.iana().to_string()));
                    out.push(KeyValue::new("CHAP_I", c.identifier_value()));
                    out.push(KeyValue::new("CHAP_C", c.challenge_value()));
                    self.challenge = Some(c);
                    transit = None;
                } else if let Some(r) = get("CHAP_R") {
                    let c = self.challenge.take().unwrap();
                    assert_eq!(get("CHAP_N").as_deref(), Some(auth.user.as_str()));
                    if c.verify(&auth.secret, None, &parse_binary(&r).unwrap())
                        .is_err()
                    {
                        let h = LoginResponse {
                            current_stage: req.current_stage,
                            isid: req.isid,
                            itt: req.itt,
                            status: LoginStatus::AUTHENTICATION_FAILURE,
                            ..Default::default()
                        };
                        return (h, Vec::new());
                    }
                    if let (Some((name, secret)), Some(i), Some(ch)) =
                        (auth.mutual.clone(), get("CHAP_I"), get("CHAP_C"))
                    {
                        let id: u8 = i.parse().unwrap();
                        let resp = c
                            .algorithm
                            .response(id, &secret, &parse_binary(&ch).unwrap());
                        out.push(KeyValue::new("CHAP_N", name));
                        out.push(KeyValue::new("CHAP_R", resp.to_hex()));
                    }
                } else {
                    transit = None;
                }
            }
        } else if transit.is_some() {
            self.neg.finish().unwrap();
        }
        self.respond(&req, out, transit)
    }
}

/// Runs a login to the end; returns the outcome and the number of requests.
fn run(login: &mut Login, target: &mut Target) -> Result<(LoginOutcome, usize), LoginError> {
    let mut pdu = login.start()?;
    for n in 1..20 {
        let (h, data) = target.handle(&pdu);
        match login.on_response(&h, &data)? {
            LoginStep::Send(p) => pdu = p,
            LoginStep::Done(o) => return Ok((*o, n)),
        }
    }
    panic!("login did not finish");
}

fn config() -> LoginConfig {
    let mut cfg = LoginConfig::normal("iqn.2026-11.io.rtgt:ini", "iqn.2026-11.io.rtgt:tgt", ISID);
    cfg.negotiation.max_recv_data_segment_length = 262_144;
    cfg.negotiation.max_burst_length = 1 << 20;
    cfg.negotiation.first_burst_length = 1 << 18;
    cfg
}

fn login_with(cfg: LoginConfig) -> Login {
    Login::with_rng(cfg, Box::new(CountingRng(99)))
}

#[test]
fn login_without_authentication_negotiates_and_completes() {
    let mut login = login_with(config());
    let mut target = Target::new(None);
    let (o, requests) = run(&mut login, &mut target).unwrap();
    assert_eq!(requests, 2, "security with T=1, then operational with T=1");
    assert_eq!(o.tsih, 0x4242);
    assert_eq!(o.auth_method, "None");
    assert!(!o.target_authenticated);
    assert_eq!(o.cmd_sn, Sn(1));
    assert_eq!(o.exp_cmd_sn, Sn(1));
    assert_eq!(o.max_cmd_sn, Sn(32));
    assert_eq!(o.stat_sn, Sn(11));
    assert_eq!(
        o.connection.max_xmit_data_segment_length, 65536,
        "target's declaration"
    );
    assert_eq!(o.connection.max_recv_data_segment_length, 262_144, "ours");
    assert_eq!(o.session.max_burst_length, 1 << 20);
    assert_eq!(o.session.first_burst_length, 1 << 16);
    assert_eq!(o.session.target_alias.as_deref(), Some("disk"));
    assert_eq!(o.session.target_portal_group_tag, 1);
    let c = o.connection_setup(32);
    assert_eq!(c.exp_stat_sn, Sn(12));
    let s = o.session_setup();
    assert_eq!(s.window.max_cmd_sn(), Sn(32));
}

#[test]
fn first_request_carries_identity_and_auth_offer() {
    let mut login = login_with(config());
    let pdu = login.start().unwrap();
    let PduHeader::LoginRequest(h) = pdu.header else {
        panic!()
    };
    assert_eq!(h.current_stage, LoginStage::SECURITY_NEGOTIATION);
    assert_eq!(h.next_stage, Some(LoginStage::OPERATIONAL_NEGOTIATION));
    assert_eq!((h.isid, h.tsih, h.cid, h.cmd_sn), (ISID, 0, 0, Sn(1)));
    assert_eq!(
        pdu.data,
        b"InitiatorName=iqn.2026-11.io.rtgt:ini\0SessionType=Normal\0\
          TargetName=iqn.2026-11.io.rtgt:tgt\0AuthMethod=None\0"
            .to_vec()
    );
    assert_eq!(
        login.start(),
        Err(LoginError::Protocol("login already started"))
    );
}

#[test]
fn one_way_chap_login() {
    let mut cfg = config();
    cfg.chap = Some(ChapCredentials::new("alice", b"alice-secret-12".to_vec()));
    let mut login = login_with(cfg);
    let auth = TargetAuth {
        user: "alice".into(),
        secret: b"alice-secret-12".to_vec(),
        mutual: None,
    };
    let (o, requests) = run(&mut login, &mut Target::new(Some(auth))).unwrap();
    assert_eq!(requests, 4, "AuthMethod, CHAP_A, CHAP_N/R, operational");
    assert_eq!(o.auth_method, "CHAP");
    assert!(!o.target_authenticated);
}

#[test]
fn wrong_secret_is_refused_by_the_target() {
    let mut cfg = config();
    cfg.chap = Some(ChapCredentials::new("alice", b"not-the-secret".to_vec()));
    let mut login = login_with(cfg);
    let auth = TargetAuth {
        user: "alice".into(),
        secret: b"alice-secret-12".to_vec(),
        mutual: None,
    };
    assert_eq!(
        run(&mut login, &mut Target::new(Some(auth))).unwrap_err(),
        LoginError::Refused {
            status: LoginStatus::AUTHENTICATION_FAILURE
        }
    );
}

#[test]
fn mutual_chap_login_authenticates_the_target() {
    let mut cfg = config();
    cfg.chap = Some(
        ChapCredentials::new("alice", b"alice-secret-12".to_vec())
            .with_mutual("target-a", b"target-secret-1".to_vec()),
    );
    let auth = TargetAuth {
        user: "alice".into(),
        secret: b"alice-secret-12".to_vec(),
        mutual: Some(("target-a".into(), b"target-secret-1".to_vec())),
    };
    let (o, _) = run(
        &mut login_with(cfg.clone()),
        &mut Target::new(Some(auth.clone())),
    )
    .unwrap();
    assert!(o.target_authenticated);
    // A target that knows the wrong secret fails mutual authentication.
    let impostor = TargetAuth {
        mutual: Some(("target-a".into(), b"guessed-secret!".to_vec())),
        ..auth
    };
    assert_eq!(
        run(&mut login_with(cfg), &mut Target::new(Some(impostor))).unwrap_err(),
        LoginError::Auth(AuthError::Chap(crate::chap::ChapError::ResponseMismatch))
    );
}

#[test]
fn mutual_chap_fails_when_the_target_does_not_answer() {
    let mut cfg = config();
    cfg.chap = Some(
        ChapCredentials::new("alice", b"alice-secret-12".to_vec())
            .with_mutual("t", b"target-secret-1".to_vec()),
    );
    let auth = TargetAuth {
        user: "alice".into(),
        secret: b"alice-secret-12".to_vec(),
        mutual: None,
    };
    assert!(matches!(
        run(&mut login_with(cfg), &mut Target::new(Some(auth))).unwrap_err(),
        LoginError::Auth(AuthError::MissingKey(_))
    ));
}

#[test]
fn target_insisting_on_chap_is_an_auth_method_error() {
    let mut login = login_with(config());
    let auth = TargetAuth {
        user: "x".into(),
        secret: b"y".to_vec(),
        mutual: None,
    };
    // The target only accepts CHAP; our offer of None is answered Reject.
    assert_eq!(
        run(&mut login, &mut Target::new(Some(auth))).unwrap_err(),
        LoginError::AuthMethod("Reject".into())
    );
}

#[test]
fn continued_response_text_is_reassembled() {
    let mut login = login_with(config());
    let mut target = Target::new(None);
    target.split = Some(10);
    let (o, requests) = run(&mut login, &mut target).unwrap();
    assert_eq!(requests, 3, "one extra empty request to fetch the rest");
    assert_eq!(o.session.target_portal_group_tag, 1);
}

#[test]
fn refusal_and_redirect() {
    let mut login = login_with(config());
    login.start().unwrap();
    let h = LoginResponse {
        isid: ISID,
        status: LoginStatus::NOT_FOUND,
        ..Default::default()
    };
    assert_eq!(
        login.on_response(&h, &[]),
        Err(LoginError::Refused {
            status: LoginStatus::NOT_FOUND
        })
    );

    let mut login = login_with(config());
    login.start().unwrap();
    let h = LoginResponse {
        isid: ISID,
        status: LoginStatus::TARGET_MOVED_TEMPORARILY,
        ..Default::default()
    };
    assert_eq!(
        login.on_response(&h, b"TargetAddress=10.1.1.1:3260,1\0"),
        Err(LoginError::Redirected {
            status: LoginStatus::TARGET_MOVED_TEMPORARILY,
            address: "10.1.1.1:3260,1".into()
        })
    );
}

#[test]
fn protocol_violations_are_detected() {
    let base = LoginResponse {
        isid: ISID,
        ..Default::default()
    };
    let mut login = login_with(config());
    assert!(
        matches!(login.on_response(&base, &[]), Err(LoginError::Protocol(_))),
        "before start"
    );
    login.start().unwrap();
    let wrong_itt = LoginResponse {
        itt: Itt(5),
        ..base
    };
    assert_eq!(
        login.on_response(&wrong_itt, &[]),
        Err(LoginError::Protocol("login response with another ITT"))
    );
    let wrong_isid = LoginResponse {
        isid: Isid([1; 6]),
        ..base
    };
    assert!(login.on_response(&wrong_isid, &[]).is_err());
    let version = LoginResponse {
        version_active: 2,
        ..base
    };
    assert!(login.on_response(&version, &[]).is_err());
    let both = LoginResponse {
        continue_flag: true,
        next_stage: Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ..base
    };
    assert_eq!(
        login.on_response(&both, &[]),
        Err(LoginError::Protocol("login response with both T and C"))
    );
    let jump = LoginResponse {
        next_stage: Some(LoginStage::FULL_FEATURE_PHASE),
        ..base
    };
    assert!(login.on_response(&jump, b"AuthMethod=None\0").is_err());
    let garbage = LoginResponse { ..base };
    assert!(matches!(
        login.on_response(&garbage, b"no-equals\0"),
        Err(LoginError::Text(_))
    ));
}

#[test]
fn chap_without_transit_request_keeps_the_security_stage() {
    let mut cfg = config();
    cfg.chap = Some(ChapCredentials::new("alice", b"alice-secret-12".to_vec()));
    let mut login = login_with(cfg);
    let first = login.start().unwrap();
    let PduHeader::LoginRequest(h) = first.header else {
        panic!()
    };
    assert_eq!(h.next_stage, None, "no T bit before CHAP is done");
    assert!(String::from_utf8_lossy(&first.data).contains("AuthMethod=CHAP"));
    // A target that jumps ahead anyway is refused.
    let jump = LoginResponse {
        isid: ISID,
        next_stage: Some(LoginStage::OPERATIONAL_NEGOTIATION),
        ..Default::default()
    };
    assert_eq!(
        login.on_response(&jump, b"AuthMethod=CHAP\0"),
        Err(LoginError::Protocol(
            "target changed stage without our request"
        ))
    );
}

#[test]
fn added_connection_keeps_the_tsih_and_skips_session_keys() {
    let mut cfg = config();
    cfg.tsih = 0x4242;
    cfg.cid = 1;
    cfg.cmd_sn = Sn(77);
    let mut login = login_with(cfg);
    let mut target = Target::new(None);
    let (o, _) = run(&mut login, &mut target).unwrap();
    assert_eq!((o.tsih, o.cid, o.cmd_sn), (0x4242, 1, Sn(77)));
    // A target that answers with another TSIH is refused.
    let mut cfg = config();
    cfg.tsih = 0x1111;
    let mut login = login_with(cfg);
    assert_eq!(
        run(&mut login, &mut Target::new(None)).unwrap_err(),
        LoginError::Protocol("final login response with another TSIH")
    );
}

#[test]
fn operational_request_offers_session_keys_on_the_leading_connection() {
    let mut login = login_with(config());
    let mut target = Target::new(None);
    let first = login.start().unwrap();
    let (h, data) = target.handle(&first);
    let LoginStep::Send(op) = login.on_response(&h, &data).unwrap() else {
        panic!()
    };
    let text = String::from_utf8(op.data.clone()).unwrap();
    for key in [
        "HeaderDigest=None",
        "DataDigest=None",
        "MaxRecvDataSegmentLength=262144",
        "MaxBurstLength=1048576",
        "FirstBurstLength=262144",
        "ImmediateData=Yes",
        "InitialR2T=Yes",
    ] {
        assert!(text.contains(key), "{key} missing in {text:?}");
    }
    let PduHeader::LoginRequest(h) = op.header else {
        panic!()
    };
    assert_eq!(h.current_stage, LoginStage::OPERATIONAL_NEGOTIATION);
    assert_eq!(h.next_stage, Some(LoginStage::FULL_FEATURE_PHASE));
    assert_eq!(h.exp_stat_sn, Sn(11));
}

#[test]
fn discovery_login() {
    let cfg = LoginConfig::discovery("iqn.2026-11.io.rtgt:ini", ISID);
    let mut login = login_with(cfg);
    let mut target = Target::new(None);
    target.tsih = 9;
    let (o, _) = run(&mut login, &mut target).unwrap();
    assert_eq!(o.session.session_type, SessionType::Discovery);
}
