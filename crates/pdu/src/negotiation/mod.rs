//! Login and text key negotiation (RFC 7143 §6.2–§6.3, keys in §12–§13;
//! iSER keys in RFC 7145 §6): the declarative [`KEYS`] table, the
//! [`Negotiator`] engine for both roles, and the [`NegotiatedParams`] it
//! produces.

mod engine;
mod keys;
mod params;

pub use engine::{Context, Exchange, NegotiationError, Negotiator, Role, Stage};
pub use keys::{
    Irrelevance, KEYS, KeyDef, KeyId, KeyType, KeyUse, MAX_LEN_24, Scope, Senders, def,
    is_extension_key, lookup,
};
pub use params::{Digest, LocalConfig, NegotiatedParams, SessionType};
