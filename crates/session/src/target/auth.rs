//! The target's side of a CHAP exchange in the security negotiation stage (RFC 7143 §12.1.3,
//! RFC 1994): algorithm selection from CHAP_A, challenge, verification of the initiator's
//! CHAP_N/CHAP_R against the configured users, and the answer to a mutual challenge.
//!
//! Every failure is an authentication failure (login status 0x0201).

use rtgt_pdu::text::KeyValue;

use super::catalog::ChapPolicy;
use crate::chap::{
    Challenge, ChapAlgorithm, ChapError, ChapRng, check_not_reflected, parse_binary,
    parse_identifier,
};

/// Why authentication failed (logged; the initiator only sees status 0x0201).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A CHAP rule was broken.
    #[error(transparent)]
    Chap(#[from] ChapError),
    /// A required key is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// CHAP_N names no configured user.
    #[error("unknown CHAP user {0:?}")]
    UnknownUser(String),
    /// The initiator asked for mutual CHAP but the target has no credentials of its own.
    #[error("mutual CHAP requested but the target has no credentials")]
    NoTargetCredentials,
    /// Mutual CHAP is required and the initiator did not challenge the target.
    #[error("mutual CHAP required")]
    MutualRequired,
    /// A key arrived that does not belong at this step.
    #[error("unexpected key {0}")]
    Unexpected(String),
}

/// Progress of one CHAP exchange.
#[derive(Debug, Clone, Default)]
pub(crate) enum ChapExchange {
    /// Waiting for CHAP_A.
    #[default]
    Start,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    Challenged(Challenge),
    /// The initiator (and, if asked, the target) is authenticated.
    Done {
        /// The CHAP_N the initiator authenticated as.
        user: String,
    },
}

impl ChapExchange {
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Self::Done { .. })
    }

    /// Processes the authentication keys of one Login Request; returns the keys to answer.
    pub(crate) fn step(
        &mut self,
        keys: &[KeyValue],
        policy: &ChapPolicy,
        rng: &mut dyn ChapRng,
    ) -> Result<Vec<KeyValue>, AuthError> {
        let get = |k: &str| {
            keys.iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.as_str())
        };
        match self {
            Self::Start => {
                if let Some(k) = keys.iter().find(|kv| kv.key != "CHAP_A") {
                    return Err(AuthError::Unexpected(k.key.clone()));
                }
                let Some(offer) = get("CHAP_A") else {
                    // Nothing yet (e.g. AuthMethod alone); wait for CHAP_A.
                    return Ok(Vec::new());
                };
                let alg = ChapAlgorithm::select(offer, &policy.algorithms)?;
                let challenge = Challenge::generate(alg, rng)?;
                let out = vec![
                    KeyValue::new("CHAP_A", alg.iana().to_string()),
                    KeyValue::new("CHAP_I", challenge.identifier_value()),
                    KeyValue::new("CHAP_C", challenge.challenge_value()),
                ];
                *self = Self::Challenged(challenge);
                Ok(out)
            }
            Self::Challenged(challenge) => {
                if let Some(k) = keys.iter().find(|kv| {
                    !matches!(kv.key.as_str(), "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C")
                }) {
                    return Err(AuthError::Unexpected(k.key.clone()));
                }
                let name = get("CHAP_N").ok_or(AuthError::Missing("CHAP_N"))?;
                let response = parse_binary(get("CHAP_R").ok_or(AuthError::Missing("CHAP_R"))?)?;
                let user = policy
                    .users
                    .iter()
                    .find(|u| u.user == name)
                    .ok_or_else(|| AuthError::UnknownUser(name.chars().take(64).collect()))?;
                let own = policy.target.as_ref().map(|t| t.secret.as_slice());
                challenge.verify(&user.secret, own, &response)?;
                let mut out = Vec::new();
                match (get("CHAP_I"), get("CHAP_C")) {
                    (Some(i), Some(c)) => {
                        let id = parse_identifier(i)?;
                        let their = parse_binary(c)?;
                        check_not_reflected(&challenge.challenge, &their)?;
                        let target = policy
                            .target
                            .as_ref()
                            .ok_or(AuthError::NoTargetCredentials)?;
                        let r = challenge.algorithm.response(id, &target.secret, &their);
                        out.push(KeyValue::new("CHAP_N", target.user.clone()));
                        out.push(KeyValue::new("CHAP_R", r.to_hex()));
                    }
                    (None, None) if policy.require_mutual => return Err(AuthError::MutualRequired),
                    (None, None) => {}
                    (Some(_), None) => return Err(AuthError::Missing("CHAP_C")),
                    (None, Some(_)) => return Err(AuthError::Missing("CHAP_I")),
                }
                *self = Self::Done {
                    user: user.user.clone(),
                };
                Ok(out)
            }
            Self::Done { .. } => match keys.first() {
                Some(k) => Err(AuthError::Unexpected(k.key.clone())),
                None => Ok(Vec::new()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chap::CountingRng;
    use crate::target::Credential;

    fn policy() -> ChapPolicy {
        ChapPolicy {
            users: vec![Credential {
                user: "alice".into(),
                secret: b"alice-secret-1".to_vec(),
            }],
            target: Some(Credential {
                user: "tgt".into(),
                secret: b"target-secret-2".to_vec(),
            }),
            require_mutual: false,
            algorithms: vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
        }
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k, v)
    }

    fn challenge_of(out: &[KeyValue]) -> (ChapAlgorithm, u8, Vec<u8>) {
        let a: u32 = out[0].value.parse().unwrap();
        let i = parse_identifier(&out[1].value).unwrap();
        let c = parse_binary(&out[2].value).unwrap();
        (ChapAlgorithm::from_iana(a).unwrap(), i, c)
    }

    #[test]
    fn one_way_chap_succeeds_with_the_right_secret() {
        let p = policy();
        let mut x = ChapExchange::default();
        let out = x
            .step(&[kv("CHAP_A", "5")], &p, &mut CountingRng(10))
            .unwrap();
        assert_eq!(out[0], kv("CHAP_A", "5"));
        assert_eq!(out[1], kv("CHAP_I", "10"));
        let (alg, id, c) = challenge_of(&out);
        assert_eq!(c.len(), 16);
        let r = alg.response(id, b"alice-secret-1", &c);
        let out = x
            .step(
                &[kv("CHAP_N", "alice"), kv("CHAP_R", &r.to_hex())],
                &p,
                &mut CountingRng(0),
            )
            .unwrap();
        assert!(out.is_empty());
        assert!(x.is_done());
    }

    #[test]
    fn mutual_chap_answers_with_the_target_secret() {
        let p = policy();
        let mut x = ChapExchange::default();
        let out = x
            .step(&[kv("CHAP_A", "7,5")], &p, &mut CountingRng(1))
            .unwrap();
        let (alg, id, c) = challenge_of(&out);
        assert_eq!(alg, ChapAlgorithm::Sha256);
        let r = alg.response(id, b"alice-secret-1", &c);
        let mine = [9u8; 32];
        let out = x
            .step(
                &[
                    kv("CHAP_N", "alice"),
                    kv("CHAP_R", &r.to_hex()),
                    kv("CHAP_I", "33"),
                    kv("CHAP_C", &crate::chap::format_base64(&mine)),
                ],
                &p,
                &mut CountingRng(0),
            )
            .unwrap();
        assert_eq!(out[0], kv("CHAP_N", "tgt"));
        assert_eq!(
            out[1].value,
            alg.response(33, b"target-secret-2", &mine).to_hex()
        );
    }

    #[test]
    fn failures() {
        let p = policy();
        let start = |x: &mut ChapExchange| {
            let out = x
                .step(&[kv("CHAP_A", "5")], &p, &mut CountingRng(1))
                .unwrap();
            challenge_of(&out)
        };
        // Wrong secret.
        let mut x = ChapExchange::default();
        let (alg, id, c) = start(&mut x);
        let bad = alg.response(id, b"nope", &c);
        assert!(matches!(
            x.step(
                &[kv("CHAP_N", "alice"), kv("CHAP_R", &bad.to_hex())],
                &p,
                &mut CountingRng(0)
            ),
            Err(AuthError::Chap(ChapError::ResponseMismatch))
        ));
        // Unknown user, missing CHAP_R, malformed CHAP_R, oversized.
        for keys in [
            vec![kv("CHAP_N", "bob"), kv("CHAP_R", "0x00")],
            vec![kv("CHAP_N", "alice")],
            vec![kv("CHAP_N", "alice"), kv("CHAP_R", "zz")],
            vec![
                kv("CHAP_N", "alice"),
                kv("CHAP_R", &format!("0x{}", "00".repeat(1025))),
            ],
        ] {
            let mut x = ChapExchange::default();
            start(&mut x);
            assert!(x.step(&keys, &p, &mut CountingRng(0)).is_err(), "{keys:?}");
        }
        // Reflected challenge in mutual CHAP.
        let mut x = ChapExchange::default();
        let (alg, id, c) = start(&mut x);
        let r = alg.response(id, b"alice-secret-1", &c);
        assert!(matches!(
            x.step(
                &[
                    kv("CHAP_N", "alice"),
                    kv("CHAP_R", &r.to_hex()),
                    kv("CHAP_I", "1"),
                    kv("CHAP_C", &crate::chap::format_hex(&c))
                ],
                &p,
                &mut CountingRng(0)
            ),
            Err(AuthError::Chap(ChapError::ReflectedChallenge))
        ));
        // The initiator answers with the target's own secret (shared secret).
        let mut shared = policy();
        shared.users[0].secret = b"target-secret-2".to_vec();
        let mut x = ChapExchange::default();
        let out = x
            .step(&[kv("CHAP_A", "5")], &shared, &mut CountingRng(1))
            .unwrap();
        let (alg, id, c) = challenge_of(&out);
        let r = alg.response(id, b"target-secret-2", &c);
        assert!(matches!(
            x.step(
                &[kv("CHAP_N", "alice"), kv("CHAP_R", &r.to_hex())],
                &shared,
                &mut CountingRng(0)
            ),
            Err(AuthError::Chap(ChapError::ResponseFromOwnSecret))
        ));
        // Unsupported algorithm, and mutual required but not asked.
        let mut x = ChapExchange::default();
        assert!(
            x.step(&[kv("CHAP_A", "6")], &p, &mut CountingRng(1))
                .is_err()
        );
        let mut req = policy();
        req.require_mutual = true;
        let mut x = ChapExchange::default();
        let out = x
            .step(&[kv("CHAP_A", "5")], &req, &mut CountingRng(1))
            .unwrap();
        let (alg, id, c) = challenge_of(&out);
        let r = alg.response(id, b"alice-secret-1", &c);
        assert_eq!(
            x.step(
                &[kv("CHAP_N", "alice"), kv("CHAP_R", &r.to_hex())],
                &req,
                &mut CountingRng(0)
            ),
            Err(AuthError::MutualRequired)
        );
    }
}
