//! Fuzzes the text key parser and value encodings (RFC 7143 §6.1). The properties checked live in
//! `crates/pdu/tests/props/mod.rs`, shared with the crate's regression tests.

#![no_main]

#[path = "../../crates/pdu/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::text_keys::text_keys(data));
