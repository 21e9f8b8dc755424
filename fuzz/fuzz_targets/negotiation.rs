//! Fuzzes the negotiation engine (RFC 7143 §6.2, §13; RFC 7145 §6). The properties checked live in
//! `crates/pdu/tests/props/mod.rs`, shared with the crate's regression tests.

#![no_main]

#[path = "../../crates/pdu/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::negotiation::negotiation(data));
