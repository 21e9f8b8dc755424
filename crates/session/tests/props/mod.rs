//! Properties of the target-role login state machine (RFC 7143 §6, §11.12–11.13; RFC 7145
//! §5.1), shared by the `login` fuzz target (`fuzz/fuzz_targets/login.rs`) and this crate's
//! regression test (`tests/login_fuzz.rs`), so every input the fuzzer finds interesting can
//! be replayed in the ordinary test suite.
#![allow(dead_code, clippy::missing_panics_doc)]

pub mod login {
    use std::sync::Arc;

    use rtgt_pdu::{Framer, LOGIN_SEGMENT_LIMIT, LoginStatusClass, PduHeader};
    use rtgt_session::chap::{ChapAlgorithm, CountingRng};
    use rtgt_session::target::login::{
        LoginConnection, LoginSettings, LoginStep, RdmaLogin, SessionResolution,
    };
    use rtgt_session::target::{
        Acl, AuthPolicy, Catalog, ChapPolicy, Credential, PortalGroup, TargetEntry,
    };

    /// The target every seed logs in to.
    pub const TARGET: &str = "iqn.2026-11.io.rtgt:fuzz";
    /// The only initiator the restricted ACL admits.
    pub const INITIATOR: &str = "iqn.2026-11.io.rtgt:fuzzer";
    /// CHAP user and secret the catalog accepts.
    pub const CHAP_USER: &str = "fuzzuser";
    /// Initiator secret (12+ bytes, as RFC 7143 §9.2.1 asks of CHAP secrets).
    pub const CHAP_SECRET: &[u8] = b"fuzz-secret-1234";
    /// The target's own secret (mutual CHAP).
    pub const TARGET_SECRET: &[u8] = b"target-secret-987";

    /// How a run ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum End {
        /// The input ran out before the login finished.
        Incomplete,
        /// The login succeeded and reached full feature phase.
        FullFeature,
        /// The target answered with this status class and closed.
        Failed(LoginStatusClass),
        /// The target dropped the connection without an answer.
        Dropped,
    }

    /// The catalog selected by the input's first byte: bits 0–1 the target's authentication
    /// (none, one-way CHAP, mutual CHAP required, none), bit 3 an ACL admitting only
    /// [`INITIATOR`], bit 4 a CHAP-protected discovery.
    pub fn catalog(selector: u8) -> Catalog {
        let chap = |mutual: bool| {
            AuthPolicy::Chap(ChapPolicy {
                users: vec![Credential {
                    user: CHAP_USER.into(),
                    secret: CHAP_SECRET.to_vec(),
                }],
                target: Some(Credential {
                    user: TARGET.into(),
                    secret: TARGET_SECRET.to_vec(),
                }),
                require_mutual: mutual,
                algorithms: vec![
                    ChapAlgorithm::Sha3_256,
                    ChapAlgorithm::Sha256,
                    ChapAlgorithm::Sha1,
                    ChapAlgorithm::Md5,
                ],
            })
        };
        let auth = match selector & 3 {
            1 => chap(false),
            2 => chap(true),
            _ => AuthPolicy::None,
        };
        let acl = if selector & 8 == 0 {
            Acl::Any
        } else {
            Acl::Allow(vec![INITIATOR.into()])
        };
        Catalog {
            targets: vec![TargetEntry {
                name: TARGET.into(),
                luns: vec![0, 1],
                acl,
                auth,
                ..Default::default()
            }],
            portal_groups: vec![PortalGroup {
                tag: 1,
                addresses: vec![([127, 0, 0, 1], 3260).into()],
            }],
            discovery_auth: if selector & 16 == 0 {
                AuthPolicy::None
            } else {
                chap(false)
            },
            ..Default::default()
        }
    }

    /// Feeds `data` (selector byte, then a byte stream of PDUs from the initiator) to one
    /// login connection and checks what a peer would notice:
    ///
    /// * nothing panics, whatever arrives;
    /// * every PDU the target sends is a Login Response that decodes, answers the ITT of the
    ///   request it responds to, and carries at most 8 KiB of data (the login-phase
    ///   MaxRecvDataSegmentLength an initiator may assume, RFC 7143 §13.12);
    /// * a failure answers with a non-success status class and ends the login: nothing the
    ///   peer sends afterwards is answered;
    /// * success happens only through the engine's session resolution, with the TSIH the
    ///   engine assigned.
    pub fn login(data: &[u8]) -> End {
        let Some((&selector, mut stream)) = data.split_first() else {
            return End::Incomplete;
        };
        let settings = LoginSettings {
            portal_group_tag: 1,
            local_addr: Some(([127, 0, 0, 1], 3260).into()),
        };
        let mut conn = LoginConnection::with_rng(
            Arc::new(catalog(selector)),
            settings,
            Box::new(CountingRng(selector)),
        );
        if selector & 4 != 0 {
            conn = conn.with_rdma(RdmaLogin {
                target_recv_data_segment_length: 65_536,
                initiator_recv_data_segment_length: 65_536,
                max_outstanding_unexpected_pdus: 8,
            });
        }
        let mut framer = Framer::new();
        const TSIH: u16 = 0x1234;
        loop {
            let Ok(Some(pdu)) = framer.next_pdu(&mut stream) else {
                return End::Incomplete;
            };
            let itt = pdu.header.itt();
            let mut step = match &pdu.header {
                PduHeader::LoginRequest(r) => conn.handle_login(r, &pdu.data),
                other => conn.handle_other(other),
            };
            if let LoginStep::NeedsSession(req) = &step {
                assert!(!req.initiator_name.is_empty(), "session without a name");
                step = conn.resolve(SessionResolution::New { tsih: TSIH });
            }
            let mut answered = false;
            while let Some(tx) = conn.poll_transmit() {
                let header = tx.header().expect("the target's own PDUs decode");
                let PduHeader::LoginResponse(r) = header else {
                    panic!("non-login PDU during login: {header:?}");
                };
                assert_eq!(r.itt, itt, "response to another ITT");
                let len = match &tx.payload {
                    rtgt_session::target::Payload::Owned(v) => v.len(),
                    rtgt_session::target::Payload::None => 0,
                    other @ rtgt_session::target::Payload::Task { .. } => {
                        panic!("login response with task data: {other:?}")
                    }
                };
                assert!(
                    len <= LOGIN_SEGMENT_LIMIT as usize,
                    "{len} bytes in one response"
                );
                answered = true;
            }
            match step {
                LoginStep::Continue | LoginStep::NeedsSession(_) => {
                    assert!(answered, "a login request went unanswered");
                    if conn.is_finished() {
                        let outcome = conn.take_outcome().expect("finished login has an outcome");
                        assert_eq!(outcome.tsih, TSIH, "TSIH not the engine's");
                        return End::FullFeature;
                    }
                }
                LoginStep::Failed(status) => {
                    assert!(answered, "a failure without a Login Response");
                    assert_ne!(status.class(), LoginStatusClass::SUCCESS);
                    assert!(conn.is_finished(), "a failed login goes on");
                    return after_end(&mut conn, &mut framer, stream, End::Failed(status.class()));
                }
                LoginStep::Drop => {
                    return after_end(&mut conn, &mut framer, stream, End::Dropped);
                }
            }
        }
    }

    /// Once the login ended, nothing more is answered.
    fn after_end(
        conn: &mut LoginConnection,
        framer: &mut Framer,
        mut rest: &[u8],
        end: End,
    ) -> End {
        if let Ok(Some(pdu)) = framer.next_pdu(&mut rest) {
            let step = match &pdu.header {
                PduHeader::LoginRequest(r) => conn.handle_login(r, &pdu.data),
                other => conn.handle_other(other),
            };
            assert_eq!(step, LoginStep::Drop, "login answered after it ended");
            assert!(
                conn.poll_transmit().is_none(),
                "PDU sent after the login ended"
            );
        }
        end
    }
}
