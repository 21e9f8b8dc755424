//! The `login` fuzz target's property (tests/props/mod.rs) over scripted logins — plain,
//! CHAP, mutual CHAP, iSER, refused — and over every committed seed
//! (`fuzz/seeds/login/`) and fuzzer finding (`tests/data/fuzz/login/`).
//!
//! Set `RTGT_WRITE_LOGIN_SEEDS=1` to (re)write the scripted logins as the fuzzer's seeds.

mod props;

use std::path::Path;
use std::sync::Arc;

use props::login::{CHAP_SECRET, CHAP_USER, End, INITIATOR, TARGET, TARGET_SECRET, catalog, login};
use rtgt_pdu::text::{encode_pairs, parse_pairs};
use rtgt_pdu::{
    Digests, Isid, Itt, LoginRequest, LoginStage, LoginStatusClass, NopOut, Pdu, PduHeader, Sn,
};
use rtgt_session::chap::{ChapAlgorithm, CountingRng, format_hex, parse_binary, parse_identifier};
use rtgt_session::target::login::{LoginConnection, LoginSettings, LoginStep, SessionResolution};

/// One scripted initiator: sends each stage's keys, answers CHAP challenges, and records the
/// bytes it sent (the fuzz seed) while running against the same state machine the property
/// drives.
struct Script {
    selector: u8,
    conn: LoginConnection,
    sent: Vec<u8>,
    itt: u32,
    last_keys: Vec<(String, String)>,
    end: Option<End>,
}

impl Script {
    fn new(selector: u8) -> Self {
        let mut conn = LoginConnection::with_rng(
            Arc::new(catalog(selector)),
            LoginSettings {
                portal_group_tag: 1,
                local_addr: Some(([127, 0, 0, 1], 3260).into()),
            },
            Box::new(CountingRng(selector)),
        );
        if selector & 4 != 0 {
            conn = conn.with_rdma(rtgt_session::target::login::RdmaLogin {
                target_recv_data_segment_length: 65_536,
                initiator_recv_data_segment_length: 65_536,
                max_outstanding_unexpected_pdus: 8,
            });
        }
        Self {
            selector,
            conn,
            sent: vec![selector],
            itt: 0,
            last_keys: Vec::new(),
            end: None,
        }
    }

    fn send_pdu(&mut self, pdu: &Pdu) {
        pdu.encode(Digests::default(), &mut self.sent).unwrap();
        let step = match &pdu.header {
            PduHeader::LoginRequest(r) => self.conn.handle_login(r, &pdu.data),
            other => self.conn.handle_other(other),
        };
        let step = match step {
            LoginStep::NeedsSession(_) => {
                self.conn.resolve(SessionResolution::New { tsih: 0x1234 })
            }
            s => s,
        };
        self.last_keys.clear();
        while let Some(tx) = self.conn.poll_transmit() {
            if let rtgt_session::target::Payload::Owned(data) = &tx.payload {
                for kv in parse_pairs(data).unwrap() {
                    self.last_keys
                        .push((kv.key.to_string(), kv.value.to_string()));
                }
            }
        }
        self.end = match step {
            LoginStep::Failed(s) => Some(End::Failed(s.class())),
            LoginStep::Drop => Some(End::Dropped),
            _ if self.conn.is_finished() => Some(End::FullFeature),
            _ => None,
        };
    }

    fn login(&mut self, csg: LoginStage, nsg: Option<LoginStage>, keys: &[(&str, &str)]) {
        let req = LoginRequest {
            current_stage: csg,
            next_stage: nsg,
            isid: Isid([0x80, 1, 2, 3, 0, 1]),
            itt: Itt(self.itt),
            cmd_sn: Sn(1),
            ..Default::default()
        };
        self.itt += 1;
        let pairs: Vec<rtgt_pdu::text::KeyValue> = keys
            .iter()
            .map(|(k, v)| rtgt_pdu::text::KeyValue::new(*k, *v))
            .collect();
        let data = encode_pairs(&pairs);
        self.send_pdu(&Pdu::with_data(req, data));
    }

    fn key(&self, name: &str) -> String {
        self.last_keys.iter().find(|(k, _)| k == name).map_or_else(
            || panic!("target sent no {name}: {:?}", self.last_keys),
            |(_, v)| v.clone(),
        )
    }

    /// Security stage with CHAP; `mutual` challenges the target back.
    fn chap(&mut self, algorithm: &str, mutual: bool) {
        self.login(
            LoginStage::SECURITY_NEGOTIATION,
            None,
            &[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Normal"),
                ("AuthMethod", "CHAP,None"),
            ],
        );
        assert_eq!(self.key("AuthMethod"), "CHAP");
        self.login(
            LoginStage::SECURITY_NEGOTIATION,
            None,
            &[("CHAP_A", algorithm)],
        );
        let alg = match self.key("CHAP_A").as_str() {
            "5" => ChapAlgorithm::Md5,
            "6" => ChapAlgorithm::Sha1,
            "7" => ChapAlgorithm::Sha256,
            _ => ChapAlgorithm::Sha3_256,
        };
        let id = parse_identifier(&self.key("CHAP_I")).unwrap();
        let challenge = parse_binary(&self.key("CHAP_C")).unwrap();
        let response = format_hex(alg.response(id, CHAP_SECRET, &challenge).as_bytes());
        let our_challenge = format_hex(&[0x5a; 32]);
        let mut keys = vec![("CHAP_N", CHAP_USER), ("CHAP_R", response.as_str())];
        if mutual {
            keys.push(("CHAP_I", "77"));
            keys.push(("CHAP_C", our_challenge.as_str()));
        }
        self.login(
            LoginStage::SECURITY_NEGOTIATION,
            Some(LoginStage::OPERATIONAL_NEGOTIATION),
            &keys,
        );
        assert_eq!(self.end, None, "CHAP refused: {:?}", self.last_keys);
        if mutual {
            let expected = alg.response(77, TARGET_SECRET, &[0x5a; 32]);
            let got = parse_binary(&self.key("CHAP_R")).unwrap();
            assert_eq!(got, expected.as_bytes(), "the target's mutual CHAP answer");
        }
    }

    fn operational(&mut self, extra: &[(&str, &str)]) {
        let mut keys = vec![("HeaderDigest", "None"), ("DataDigest", "None")];
        keys.extend_from_slice(extra);
        self.login(
            LoginStage::OPERATIONAL_NEGOTIATION,
            Some(LoginStage::FULL_FEATURE_PHASE),
            &keys,
        );
    }

    /// Checks the recorded stream gives the property the same end, and saves it as a seed
    /// when asked to.
    fn finish(self, name: &str, expected: End) {
        assert_eq!(self.end, Some(expected), "{name}: scripted run");
        assert_eq!(
            login(&self.sent),
            expected,
            "{name}: replayed by the property"
        );
        if std::env::var_os("RTGT_WRITE_LOGIN_SEEDS").is_some() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/login");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &self.sent).unwrap();
        }
        let _ = self.selector;
    }
}

#[test]
fn plain_login_reaches_full_feature_phase() {
    let mut s = Script::new(0);
    s.operational(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("ImmediateData", "Yes"),
        ("InitialR2T", "No"),
    ]);
    s.finish("plain", End::FullFeature);
}

#[test]
fn chap_logins_with_every_algorithm_reach_full_feature_phase() {
    for (name, alg) in [
        ("chap-md5", "5"),
        ("chap-sha1", "6"),
        ("chap-sha256", "7"),
        ("chap-sha3", "8"),
    ] {
        let mut s = Script::new(1);
        s.chap(alg, false);
        s.operational(&[]);
        s.finish(name, End::FullFeature);
    }
}

#[test]
fn mutual_chap_login_reaches_full_feature_phase() {
    let mut s = Script::new(2 | 8);
    s.chap("7", true);
    s.operational(&[]);
    s.finish("chap-mutual-acl", End::FullFeature);
}

#[test]
fn iser_login_reaches_full_feature_phase() {
    let mut s = Script::new(4);
    s.operational(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("RDMAExtensions", "Yes"),
        ("InitiatorRecvDataSegmentLength", "65536"),
        ("TargetRecvDataSegmentLength", "65536"),
    ]);
    s.finish("iser", End::FullFeature);
}

#[test]
fn refused_logins_fail_with_an_initiator_error() {
    // Unknown target.
    let mut s = Script::new(0);
    s.operational(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", "iqn.2026-11.io.rtgt:nope"),
    ]);
    s.finish(
        "unknown-target",
        End::Failed(LoginStatusClass::INITIATOR_ERROR),
    );
    // Not on the ACL.
    let mut s = Script::new(8);
    s.operational(&[
        ("InitiatorName", "iqn.2026-11.io.rtgt:stranger"),
        ("TargetName", TARGET),
    ]);
    s.finish(
        "acl-refused",
        End::Failed(LoginStatusClass::INITIATOR_ERROR),
    );
    // CHAP required, none offered.
    let mut s = Script::new(1);
    s.operational(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    s.finish(
        "chap-skipped",
        End::Failed(LoginStatusClass::INITIATOR_ERROR),
    );
    // A NOP-Out before login.
    let mut s = Script::new(0);
    let nop = NopOut {
        itt: Itt(9),
        ..Default::default()
    };
    s.send_pdu(&Pdu::new(nop));
    s.finish(
        "nop-during-login",
        End::Failed(LoginStatusClass::INITIATOR_ERROR),
    );
}

#[test]
fn truncated_and_empty_inputs_end_incomplete() {
    assert_eq!(login(&[]), End::Incomplete);
    assert_eq!(login(&[0]), End::Incomplete);
    let mut s = Script::new(0);
    s.operational(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let cut = &s.sent[..s.sent.len() - 3];
    assert_eq!(login(cut), End::Incomplete);
}

#[test]
fn committed_seeds_and_findings_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [
        root.join("tests/data/fuzz/login"),
        root.join("../../fuzz/seeds/login"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let end = login(&bytes);
            eprintln!("{}: {end:?}", path.display());
            count += 1;
        }
    }
    assert!(count >= 8, "the login seeds are missing ({count} found)");
}
