//! LUN encoding and decoding (SAM-5 §4.7): single-level peripheral device addressing for LUNs
//! below 256 and flat space addressing for LUNs below 16384.

/// Why an eight-byte LUN field cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LunError {
    /// Hierarchical (multi-level), logical unit, extended or well-known addressing: not
    /// supported by this target. The engine answers LOGICAL UNIT NOT SUPPORTED.
    #[error("unsupported LUN addressing method in {0:02x?}")]
    Unsupported([u8; 8]),
    /// The LUN is too large for single-level addressing.
    #[error("LUN {0} does not fit single-level flat space addressing")]
    TooLarge(u64),
}

/// The largest LUN this crate can encode (flat space addressing, 14 bits).
pub const MAX_LUN: u64 = 0x3FFF;

/// Encodes a LUN: peripheral device addressing below 256, flat space addressing above.
///
/// ```
/// use rtgt_scsi::lun;
///
/// assert_eq!(lun::encode(5).unwrap(), [0, 5, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(lun::encode(300).unwrap(), [0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(lun::decode([0x41, 0x2C, 0, 0, 0, 0, 0, 0]).unwrap(), 300);
/// assert!(lun::encode(20000).is_err());
/// ```
pub fn encode(lun: u64) -> Result<[u8; 8], LunError> {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else if lun <= MAX_LUN {
        b[0] = 0x40 | (lun >> 8) as u8;
        b[1] = lun as u8;
    } else {
        return Err(LunError::TooLarge(lun));
    }
    Ok(b)
}

/// Decodes a single-level LUN in peripheral device or flat space addressing.
pub fn decode(raw: [u8; 8]) -> Result<u64, LunError> {
    if raw[2..].iter().any(|&b| b != 0) {
        return Err(LunError::Unsupported(raw));
    }
    match raw[0] >> 6 {
        // Peripheral device addressing; a non-zero BUS IDENTIFIER selects another level.
        0b00 if raw[0] == 0 => Ok(u64::from(raw[1])),
        0b01 => Ok((u64::from(raw[0] & 0x3F) << 8) | u64::from(raw[1])),
        _ => Err(LunError::Unsupported(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for lun in [0, 1, 255, 256, 1000, MAX_LUN] {
            assert_eq!(decode(encode(lun).unwrap()).unwrap(), lun);
        }
    }

    #[test]
    fn flat_addressing_of_small_luns_decodes() {
        assert_eq!(decode([0x40, 0x07, 0, 0, 0, 0, 0, 0]).unwrap(), 7);
    }

    #[test]
    fn unsupported_forms() {
        let multi = [0, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(decode(multi), Err(LunError::Unsupported(multi)));
        let wlun = [0xC1, 0x01, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(wlun), Err(LunError::Unsupported(wlun)));
        let bus = [0x01, 0x00, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(bus), Err(LunError::Unsupported(bus)));
        assert_eq!(encode(MAX_LUN + 1), Err(LunError::TooLarge(MAX_LUN + 1)));
    }
}
