//! Stable identity of a logical unit: unit serial number (SPC-5 §7.7.18) and the NAA IEEE
//! Registered Extended designator (SPC-5 §7.7.6.6.5), derived deterministically from a
//! configured name so that they survive restarts.

/// The IEEE company identifier used in NAA designators unless configured otherwise.
///
/// It has the locally-administered bit set, so it cannot collide with an IEEE-assigned OUI;
/// deployments that own an OUI should configure it with [`LuIdentity::with_oui`].
pub const DEFAULT_NAA_OUI: u32 = 0x02_5254;

/// 64-bit FNV-1a (a fixed, documented hash: identities must not change between releases).
fn fnv1a64(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// The identity of a logical unit.
///
/// ```
/// use rtgt_scsi::LuIdentity;
///
/// let a = LuIdentity::new("iqn.2024-01.org.example:disk1", 0);
/// let b = LuIdentity::new("iqn.2024-01.org.example:disk1", 0);
/// assert_eq!(a.serial(), b.serial());
/// assert_eq!(a.naa(), b.naa());
/// assert_ne!(a.naa(), LuIdentity::new("iqn.2024-01.org.example:disk1", 1).naa());
/// assert_eq!(a.naa()[0] >> 4, 6); // NAA IEEE Registered Extended
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuIdentity {
    serial: String,
    naa: [u8; 16],
    /// Bytes of `naa` that form the designator: 16 (NAA 6), or 8 for a configured NAA 2/3/5.
    naa_len: usize,
}

/// A configured NAA designator that SPC-5 §7.7.6.6 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "NAA designator of {len} bytes with NAA type {naa:X}: 8 bytes need type 2, 3 or 5, 16 bytes type 6 (SPC-5 §7.7.6.6)"
)]
pub struct NaaDesignatorError {
    /// Length given.
    pub len: usize,
    /// Its NAA field (high nibble of the first byte).
    pub naa: u8,
}

impl LuIdentity {
    /// Derives the identity of LUN `lun` of the target named `target` (e.g. its IQN).
    pub fn new(target: &str, lun: u64) -> Self {
        let mut name = String::with_capacity(target.len() + 24);
        name.push_str(target);
        name.push_str("/lun/");
        name.push_str(&lun.to_string());
        Self::from_name(&name)
    }

    /// Derives the identity from an arbitrary stable name (for example a configured serial).
    pub fn from_name(name: &str) -> Self {
        let h1 = fnv1a64(FNV_OFFSET, name.as_bytes());
        let h2 = fnv1a64(h1 ^ 0x9E37_79B9_7F4A_7C15, name.as_bytes());
        let serial = format!("{h1:016X}");
        Self {
            serial,
            naa: naa_bytes(DEFAULT_NAA_OUI, h1, h2),
            naa_len: 16,
        }
    }

    /// Uses a configured NAA designator instead of the derived one: 8 bytes of NAA type 2
    /// (IEEE Extended), 3 (Locally Assigned) or 5 (IEEE Registered), or 16 bytes of type 6
    /// (IEEE Registered Extended), SPC-5 §7.7.6.6.
    ///
    /// ```
    /// use rtgt_scsi::LuIdentity;
    /// let id = LuIdentity::new("iqn.x", 0)
    ///     .with_naa(&[0x52, 0x00, 0x45, 0x67, 0xba, 0x64, 0x67, 0x8d])
    ///     .unwrap();
    /// assert_eq!(id.naa_designator(), &[0x52, 0x00, 0x45, 0x67, 0xba, 0x64, 0x67, 0x8d]);
    /// assert!(LuIdentity::new("iqn.x", 0).with_naa(&[0x60; 8]).is_err());
    /// ```
    pub fn with_naa(mut self, designator: &[u8]) -> Result<Self, NaaDesignatorError> {
        let naa = designator.first().map_or(0, |b| b >> 4);
        let ok = match designator.len() {
            8 => matches!(naa, 2 | 3 | 5),
            16 => naa == 6,
            _ => false,
        };
        if !ok {
            return Err(NaaDesignatorError {
                len: designator.len(),
                naa,
            });
        }
        self.naa = [0; 16];
        self.naa[..designator.len()].copy_from_slice(designator);
        self.naa_len = designator.len();
        Ok(self)
    }

    /// The NAA designator as VPD page 83h reports it (8 or 16 bytes).
    pub fn naa_designator(&self) -> &[u8] {
        &self.naa[..self.naa_len]
    }

    /// Uses a configured unit serial number instead of the derived one.
    ///
    /// Characters outside printable ASCII are replaced by `_` (SPC-5 §4.3.1) and the serial is
    /// cut to 252 bytes so that the page length fits in one byte.
    pub fn with_serial(mut self, serial: &str) -> Self {
        self.serial = serial
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .take(252)
            .collect();
        self
    }

    /// Uses another IEEE company identifier (24 bits) in the NAA designator.
    pub fn with_oui(mut self, oui: u32) -> Self {
        let oui = oui & 0x00FF_FFFF;
        self.naa[0] = 0x60 | ((oui >> 20) & 0x0F) as u8;
        self.naa[1] = (oui >> 12) as u8;
        self.naa[2] = (oui >> 4) as u8;
        self.naa[3] = (self.naa[3] & 0x0F) | (((oui & 0x0F) as u8) << 4);
        self
    }

    /// The unit serial number (printable ASCII).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The NAA designator in 16 bytes: the NAA IEEE Registered Extended designator, or a
    /// configured 8-byte designator followed by zeros (see [`LuIdentity::naa_designator`]).
    pub fn naa(&self) -> [u8; 16] {
        self.naa
    }
}

/// NAA 6: 4-bit NAA, 24-bit company id, 36-bit vendor specific id, 64-bit extension.
fn naa_bytes(oui: u32, h1: u64, h2: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let oui = u64::from(oui & 0x00FF_FFFF);
    let vsi = h1 >> 28; // 36 bits
    // 4 + 24 + 36 = 64 bits in the first eight bytes.
    let hi = (6u64 << 60) | (oui << 36) | vsi;
    b[..8].copy_from_slice(&hi.to_be_bytes());
    b[8..].copy_from_slice(&h2.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // FNV-1a 64 of "" and "a" (published test vectors).
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn naa_layout() {
        let id = LuIdentity::from_name("x");
        let n = id.naa();
        assert_eq!(n[0], 0x60);
        assert_eq!(n[1], 0x25);
        assert_eq!(n[2], 0x25);
        assert_eq!(n[3] >> 4, 0x4);
        let id = id.with_oui(0x00_1405);
        assert_eq!(&id.naa()[..3], &[0x60, 0x01, 0x40]);
        assert_eq!(id.naa()[3] >> 4, 0x5);
    }

    #[test]
    fn configured_naa_replaces_the_derived_one() {
        let base = LuIdentity::new("iqn.t", 3);
        let eight = [0x52, 0x00, 0x45, 0x67, 0xBA, 0x64, 0x67, 0x8D];
        let id = base.clone().with_naa(&eight).unwrap();
        assert_eq!(id.naa_designator(), &eight);
        assert_eq!(&id.naa()[..8], &eight);
        assert_eq!(id.serial(), base.serial(), "the serial stays");
        let mut sixteen = [0u8; 16];
        sixteen[0] = 0x60;
        sixteen[15] = 7;
        assert_eq!(
            base.clone().with_naa(&sixteen).unwrap().naa_designator(),
            &sixteen
        );
        assert_eq!(
            base.clone().with_naa(&[0x60; 8]),
            Err(NaaDesignatorError { len: 8, naa: 6 })
        );
        assert!(base.clone().with_naa(&[0x50; 16]).is_err());
        assert!(base.with_naa(&[0x50; 12]).is_err());
    }

    #[test]
    fn serial_is_sanitised() {
        let id = LuIdentity::from_name("x").with_serial("ab\u{e9}\n c");
        assert_eq!(id.serial(), "ab__ c");
        assert_eq!(LuIdentity::from_name("x").serial().len(), 16);
    }
}
