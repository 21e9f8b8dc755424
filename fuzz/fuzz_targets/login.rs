//! Fuzzes a whole target-role login (RFC 7143 §6, §11.12–11.13, §12 CHAP; RFC 7145 §5.1):
//! the first byte picks the target's security (none, CHAP, mutual CHAP, ACL, iSER), the rest
//! is the initiator's byte stream. The properties live in
//! `crates/session/tests/props/mod.rs`, shared with the crate's regression test.

#![no_main]

#[path = "../../crates/session/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = props::login::login(data);
});
