//! Fuzzes the stream framer and header codec (RFC 7143 §11.2). The properties checked live in
//! `crates/pdu/tests/props/mod.rs`, shared with the crate's regression tests.

#![no_main]

#[path = "../../crates/pdu/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::framer::framer(data));
