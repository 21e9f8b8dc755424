//! Fixed-offset big-endian field access on a 48-byte BHS (RFC 7143 §11.2:
//! all multi-byte integers are in network byte order). Offsets are constants
//! below 48, so these accesses cannot fail.

use crate::bhs::BHS_LEN;
use crate::fields::{Isid, Itt, Lun, Ttt};
use crate::serial::Sn;

pub(crate) type Bhs = [u8; BHS_LEN];

#[inline]
pub(crate) fn get_u16(b: &Bhs, off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline]
pub(crate) fn get_u32(b: &Bhs, off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline]
pub(crate) fn put_u16(b: &mut Bhs, off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put_u32(b: &mut Bhs, off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn get_sn(b: &Bhs, off: usize) -> Sn {
    Sn(get_u32(b, off))
}

#[inline]
pub(crate) fn put_sn(b: &mut Bhs, off: usize, v: Sn) {
    put_u32(b, off, v.0);
}

#[inline]
pub(crate) fn get_itt(b: &Bhs) -> Itt {
    Itt(get_u32(b, 16))
}

#[inline]
pub(crate) fn put_itt(b: &mut Bhs, v: Itt) {
    put_u32(b, 16, v.0);
}

#[inline]
pub(crate) fn get_ttt(b: &Bhs) -> Ttt {
    Ttt(get_u32(b, 20))
}

#[inline]
pub(crate) fn put_ttt(b: &mut Bhs, v: Ttt) {
    put_u32(b, 20, v.0);
}

#[inline]
pub(crate) fn get_lun(b: &Bhs) -> Lun {
    Lun([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
}

#[inline]
pub(crate) fn put_lun(b: &mut Bhs, v: Lun) {
    b[8..16].copy_from_slice(&v.0);
}

#[inline]
pub(crate) fn get_isid(b: &Bhs) -> Isid {
    Isid([b[8], b[9], b[10], b[11], b[12], b[13]])
}

#[inline]
pub(crate) fn put_isid(b: &mut Bhs, v: Isid) {
    b[8..14].copy_from_slice(&v.0);
}

/// The I (immediate) bit of byte 0.
pub(crate) const IMMEDIATE: u8 = 0x40;
/// The F (final) bit of byte 1.
pub(crate) const FINAL: u8 = 0x80;
/// The C (continue) bit of byte 1 in Login and Text PDUs.
pub(crate) const CONTINUE: u8 = 0x40;

#[inline]
pub(crate) fn immediate(b: &Bhs) -> bool {
    b[0] & IMMEDIATE != 0
}

#[inline]
pub(crate) fn flag(b: &Bhs, byte: usize, mask: u8) -> bool {
    b[byte] & mask != 0
}

#[inline]
pub(crate) const fn bit(set: bool, mask: u8) -> u8 {
    if set { mask } else { 0 }
}
