//! Fuzzes CDB decoding and the whole logical unit (SPC-5, SBC-4): arbitrary command sequences
//! with arbitrary Data-Out against a memory-backed unit must never panic and must always
//! produce a well-formed status, sense data and Data-In. The properties live in
//! `crates/scsi/tests/props/mod.rs`, shared with the crate's regression tests.

#![no_main]

#[path = "../../crates/scsi/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::cdb(data));
