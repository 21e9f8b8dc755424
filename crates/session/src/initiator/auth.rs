//! The initiator's side of CHAP (RFC 7143 §12.1.3, RFC 1994): offer algorithms with CHAP_A,
//! answer the target's challenge with CHAP_N/CHAP_R, and — for mutual CHAP — challenge the
//! target with CHAP_I/CHAP_C and verify its CHAP_N/CHAP_R.
//!
//! The algorithms, the response function, the binary encodings and the constant-time checks
//! come from [`crate::chap`]; this module only sequences the exchange.

use rtgt_pdu::text::KeyValue;

use crate::chap::{
    Challenge, ChapAlgorithm, ChapError, ChapRng, check_not_reflected, parse_binary,
    parse_identifier,
};

/// Credentials for CHAP.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// CHAP_N the initiator sends.
    pub user: String,
    /// The initiator's secret.
    pub secret: Vec<u8>,
    /// Mutual CHAP: the name and secret the target must prove.
    pub mutual: Option<MutualChap>,
    /// Algorithms offered in CHAP_A, in order of preference.
    pub algorithms: Vec<ChapAlgorithm>,
}

impl ChapCredentials {
    /// One-way CHAP offering every supported algorithm, MD5 last.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            user: user.into(),
            secret: secret.into(),
            mutual: None,
            algorithms: ChapAlgorithm::ALL.to_vec(),
        }
    }

    /// Adds mutual authentication of the target.
    pub fn with_mutual(
        mut self,
        target_user: impl Into<String>,
        target_secret: impl Into<Vec<u8>>,
    ) -> Self {
        self.mutual = Some(MutualChap {
            user: target_user.into(),
            secret: target_secret.into(),
        });
        self
    }
}

impl core::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("mutual", &self.mutual.as_ref().map(|m| &m.user))
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The target's credentials for mutual CHAP.
#[derive(Clone, PartialEq, Eq)]
pub struct MutualChap {
    /// The CHAP_N the target must answer with.
    pub user: String,
    /// The target's secret.
    pub secret: Vec<u8>,
}

/// Why CHAP failed on the initiator's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A CHAP value from the target is malformed, or our checks failed.
    #[error(transparent)]
    Chap(#[from] ChapError),
    /// The target chose an algorithm we did not offer.
    #[error("target chose CHAP_A={0:?}, which was not offered")]
    AlgorithmNotOffered(String),
    /// A CHAP key the exchange needs is missing from the target's response.
    #[error("target did not send {0}")]
    MissingKey(&'static str),
    /// Mutual CHAP: the target answered with another name.
    #[error("target authenticated as {got:?}, expected {expected:?}")]
    WrongTargetName {
        /// The expected CHAP_N.
        expected: String,
        /// The CHAP_N received.
        got: String,
    },
    /// The target sent a key that does not belong in this step.
    #[error("unexpected CHAP key {0} from the target")]
    UnexpectedKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// CHAP_A not sent yet.
    Start,
    /// CHAP_A sent; waiting for CHAP_A/CHAP_I/CHAP_C.
    AlgorithmOffered,
    /// Response sent; for mutual CHAP waiting for the target's CHAP_N/CHAP_R.
    Responded(Option<Challenge>),
    /// Done.
    Done,
}

/// The CHAP exchange of one login.
#[derive(Debug, Clone)]
pub struct ChapInitiator {
    creds: ChapCredentials,
    step: Step,
}

impl ChapInitiator {
    /// Starts an exchange with these credentials.
    pub fn new(creds: ChapCredentials) -> Self {
        Self {
            creds,
            step: Step::Start,
        }
    }

    /// Whether the exchange (including the mutual part) completed.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Whether the next login request may ask to leave the security stage: after the response
    /// is sent (the target then checks it, and answers our mutual challenge).
    pub fn ready_to_transit(&self) -> bool {
        matches!(self.step, Step::Responded(_) | Step::Done)
    }

    /// The keys to send next, given the CHAP keys of the target's last response (empty for
    /// the first call after AuthMethod=CHAP was agreed).
    pub fn step(
        &mut self,
        received: &[KeyValue],
        rng: &mut dyn ChapRng,
    ) -> Result<Vec<KeyValue>, AuthError> {
        let get = |k: &'static str| {
            received
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.as_str())
        };
        match core::mem::replace(&mut self.step, Step::Done) {
            Step::Start => {
                if let Some(kv) = received.first() {
                    return Err(AuthError::UnexpectedKey(kv.key.clone()));
                }
                let list: Vec<String> = self
                    .creds
                    .algorithms
                    .iter()
                    .map(|a| a.iana().to_string())
                    .collect();
                self.step = Step::AlgorithmOffered;
                Ok(vec![KeyValue::new("CHAP_A", list.join(","))])
            }
            Step::AlgorithmOffered => {
                let a = get("CHAP_A").ok_or(AuthError::MissingKey("CHAP_A"))?;
                let alg = a
                    .parse::<u32>()
                    .ok()
                    .and_then(ChapAlgorithm::from_iana)
                    .filter(|alg| self.creds.algorithms.contains(alg))
                    .ok_or_else(|| AuthError::AlgorithmNotOffered(a.chars().take(32).collect()))?;
                let id = parse_identifier(get("CHAP_I").ok_or(AuthError::MissingKey("CHAP_I"))?)?;
                let challenge =
                    parse_binary(get("CHAP_C").ok_or(AuthError::MissingKey("CHAP_C"))?)?;
                if challenge.is_empty() {
                    return Err(ChapError::EmptyChallenge.into());
                }
                let response = alg.response(id, &self.creds.secret, &challenge);
                let mut out = vec![
                    KeyValue::new("CHAP_N", self.creds.user.clone()),
                    KeyValue::new("CHAP_R", response.to_hex()),
                ];
                let ours = match &self.creds.mutual {
                    Some(_) => {
                        let mut c = Challenge::generate(alg, rng)?;
                        // Never hand the target its own challenge back (§12.1.3).
                        while check_not_reflected(&challenge, &c.challenge).is_err() {
                            c = Challenge::generate(alg, rng)?;
                        }
                        out.push(KeyValue::new("CHAP_I", c.identifier_value()));
                        out.push(KeyValue::new("CHAP_C", c.challenge_value()));
                        Some(c)
                    }
                    None => None,
                };
                self.step = Step::Responded(ours);
                Ok(out)
            }
            Step::Responded(Some(ours)) => {
                let Some(mutual) = self.creds.mutual.clone() else {
                    return Err(AuthError::MissingKey("mutual credentials"));
                };
                let (Some(name), Some(resp)) = (get("CHAP_N"), get("CHAP_R")) else {
                    // Not answered yet (e.g. an intermediate response): keep waiting.
                    self.step = Step::Responded(Some(ours));
                    return if received.is_empty() {
                        Ok(Vec::new())
                    } else {
                        Err(AuthError::MissingKey("CHAP_N/CHAP_R"))
                    };
                };
                if name != mutual.user {
                    return Err(AuthError::WrongTargetName {
                        expected: mutual.user,
                        got: name.chars().take(64).collect(),
                    });
                }
                let resp = parse_binary(resp)?;
                ours.verify(&mutual.secret, Some(&self.creds.secret), &resp)?;
                Ok(Vec::new())
            }
            Step::Responded(None) | Step::Done => {
                if let Some(kv) = received.first() {
                    return Err(AuthError::UnexpectedKey(kv.key.clone()));
                }
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chap::{CountingRng, format_hex};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k, v)
    }

    #[test]
    fn one_way_exchange_produces_the_rfc1994_response() {
        let mut creds = ChapCredentials::new("alice", b"secret-of-alice".to_vec());
        creds.algorithms = vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5];
        let mut chap = ChapInitiator::new(creds);
        let mut rng = CountingRng(0);
        assert_eq!(chap.step(&[], &mut rng).unwrap(), [kv("CHAP_A", "7,5")]);
        assert!(!chap.ready_to_transit());
        let out = chap
            .step(
                &[
                    kv("CHAP_A", "5"),
                    kv("CHAP_I", "9"),
                    kv("CHAP_C", "0x0102030405"),
                ],
                &mut rng,
            )
            .unwrap();
        let expect = ChapAlgorithm::Md5.response(9, b"secret-of-alice", &[1, 2, 3, 4, 5]);
        assert_eq!(out, [kv("CHAP_N", "alice"), kv("CHAP_R", &expect.to_hex())]);
        assert!(chap.ready_to_transit());
        assert_eq!(chap.step(&[], &mut rng).unwrap(), []);
        assert!(chap.is_done());
    }

    #[test]
    fn mutual_exchange_verifies_the_target() {
        let creds = ChapCredentials::new("alice", b"ini-secret".to_vec())
            .with_mutual("tgt", b"tgt-secret".to_vec());
        let mut chap = ChapInitiator::new(creds);
        let mut rng = CountingRng(0);
        chap.step(&[], &mut rng).unwrap();
        let out = chap
            .step(
                &[
                    kv("CHAP_A", "7"),
                    kv("CHAP_I", "1"),
                    kv("CHAP_C", "0xaabbccdd"),
                ],
                &mut rng,
            )
            .unwrap();
        assert_eq!(out.len(), 4);
        let id: u8 = out[2].value.parse().unwrap();
        let challenge = parse_binary(&out[3].value).unwrap();
        assert_eq!(challenge.len(), 32, "a full-length SHA-256 challenge");
        let good = ChapAlgorithm::Sha256.response(id, b"tgt-secret", &challenge);
        // A wrong name fails.
        let mut c2 = chap.clone();
        assert!(matches!(
            c2.step(
                &[kv("CHAP_N", "mallory"), kv("CHAP_R", &good.to_hex())],
                &mut rng
            ),
            Err(AuthError::WrongTargetName { .. })
        ));
        // A response computed with the initiator's own secret is refused.
        let reflected = ChapAlgorithm::Sha256.response(id, b"ini-secret", &challenge);
        let mut c3 = chap.clone();
        assert_eq!(
            c3.step(
                &[kv("CHAP_N", "tgt"), kv("CHAP_R", &reflected.to_hex())],
                &mut rng
            ),
            Err(AuthError::Chap(ChapError::ResponseFromOwnSecret))
        );
        // A wrong response fails.
        let mut c4 = chap.clone();
        assert_eq!(
            c4.step(
                &[kv("CHAP_N", "tgt"), kv("CHAP_R", &format_hex(&[0; 32]))],
                &mut rng
            ),
            Err(AuthError::Chap(ChapError::ResponseMismatch))
        );
        assert_eq!(
            chap.step(
                &[kv("CHAP_N", "tgt"), kv("CHAP_R", &good.to_hex())],
                &mut rng
            ),
            Ok(vec![])
        );
        assert!(chap.is_done());
    }

    #[test]
    fn target_choices_are_checked() {
        let mut creds = ChapCredentials::new("a", b"s".to_vec());
        creds.algorithms = vec![ChapAlgorithm::Md5];
        let mut rng = CountingRng(0);
        let mut chap = ChapInitiator::new(creds.clone());
        chap.step(&[], &mut rng).unwrap();
        assert_eq!(
            chap.step(
                &[kv("CHAP_A", "7"), kv("CHAP_I", "1"), kv("CHAP_C", "0x01")],
                &mut rng
            ),
            Err(AuthError::AlgorithmNotOffered("7".into()))
        );
        let mut chap = ChapInitiator::new(creds.clone());
        chap.step(&[], &mut rng).unwrap();
        assert_eq!(
            chap.step(&[kv("CHAP_A", "5"), kv("CHAP_C", "0x01")], &mut rng),
            Err(AuthError::MissingKey("CHAP_I"))
        );
        let mut chap = ChapInitiator::new(creds);
        chap.step(&[], &mut rng).unwrap();
        assert!(matches!(
            chap.step(
                &[kv("CHAP_A", "5"), kv("CHAP_I", "1"), kv("CHAP_C", "zz")],
                &mut rng
            ),
            Err(AuthError::Chap(ChapError::MalformedValue(_)))
        ));
    }
}
