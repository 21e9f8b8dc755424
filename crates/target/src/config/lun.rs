//! `[[target.lun]]`: logical units.
//!
//! LUN numbers use the single-level flat addressing of SAM-5 §4.7 (0–16383). Block sizes are
//! the logical block lengths READ CAPACITY reports (SBC-4 §5.16/§5.17); `serial` is the unit
//! serial number of VPD page 80h (SPC-5 §7.7.18) and `naa` the NAA designator of VPD page 83h
//! (SPC-5 §7.7.6.6); `thin_provisioning` turns on logical block provisioning (SBC-4 §4.7,
//! LBPME); `rotational` and `optimal_granularity` override what VPD B1h/B0h report
//! (SBC-4 §6.6.5, §6.6.4).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::backend::Backend;
use super::error::{Check, Invalid, KeyPath};
use super::streams::{self, StreamsConfig};
use super::units::ByteSize;

/// Largest LUN number (SAM-5 flat space addressing: 14 bits).
pub const MAX_LUN: u16 = 16383;
/// Block size of LUNs made from a [`LunSpec`](super::LunSpec) and the default of `block_size`.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;

/// One logical unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lun {
    /// The LUN (0–16383), unique within its target.
    pub number: u16,
    /// What stores the data.
    pub backend: Backend,
    /// Logical block size in bytes: 512 or 4096. Default 512.
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// Unit serial number for VPD page 80h (1–64 printable ASCII characters); default:
    /// derived by the engine from the target name and LUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// NAA designator for VPD page 83h; default: derived by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naa: Option<Naa>,
    /// Report thin provisioning and accept UNMAP / WRITE SAME with UNMAP. Default false.
    #[serde(default)]
    pub thin_provisioning: bool,
    /// Override whether the LU reports itself as rotational (VPD B1h); default: from the
    /// backing device (memory, null and regular files report non-rotational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
    /// Override the optimal transfer length granularity (VPD B0h), e.g. the RAID stripe
    /// size; a multiple of `block_size`. Default: from the backing device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimal_granularity: Option<ByteSize>,
    /// Sequential-stream read-ahead and write combining.
    #[serde(default)]
    pub streams: StreamsConfig,
}

fn default_block_size() -> u32 {
    DEFAULT_BLOCK_SIZE
}

impl Lun {
    /// A LUN with default settings over `backend`.
    pub fn new(number: u16, backend: Backend) -> Self {
        Self {
            number,
            backend,
            block_size: DEFAULT_BLOCK_SIZE,
            serial: None,
            naa: None,
            thin_provisioning: false,
            rotational: None,
            optimal_granularity: None,
            streams: StreamsConfig::default(),
        }
    }
}

/// Why an NAA identifier was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NaaError(String);

/// An NAA designator: 16 hex digits (NAA types 2, 3, 5) or 32 (type 6), optionally
/// prefixed with `0x`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Naa(Vec<u8>);

impl Naa {
    /// Parses the hex form.
    pub fn parse(text: &str) -> Result<Self, NaaError> {
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if !(hex.len() == 16 || hex.len() == 32) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NaaError(format!(
                "{text:?} is not an NAA identifier: give 16 or 32 hex digits"
            )));
        }
        let bytes: Vec<u8> = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| (hex_val(pair[0]) << 4) | hex_val(pair[1]))
            .collect();
        let naa = bytes.first().map_or(0, |b| b >> 4);
        let ok = match bytes.len() {
            8 => matches!(naa, 2 | 3 | 5),
            _ => naa == 6,
        };
        if !ok {
            return Err(NaaError(format!(
                "{text:?} starts with NAA type {naa:X}; 16 digits need type 2, 3 or 5 and 32 digits type 6 (SPC-5 §7.7.6.6)"
            )));
        }
        Ok(Self(bytes))
    }

    /// The designator bytes (8 or 16), as VPD page 83h carries them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn hex_val(b: u8) -> u8 {
    char::from(b).to_digit(16).map_or(0, |d| d as u8)
}

impl fmt::Display for Naa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Naa {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Naa {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::de::parse_str(deserializer, "an NAA identifier (hex)", Self::parse)
    }
}

pub(crate) fn whole_blocks(size: ByteSize, block: u32, key: KeyPath) -> Check {
    if size.bytes() == 0 || size.bytes() % u64::from(block) != 0 {
        return Err(Invalid::new(
            key,
            format!("{size} is not a positive multiple of the block size {block}"),
        ));
    }
    Ok(())
}

pub(crate) fn validate(lun: &Lun, base: &KeyPath) -> Check {
    if lun.number > MAX_LUN {
        return Err(Invalid::new(
            base.key("number"),
            format!(
                "{} is outside 0..={MAX_LUN} (SAM-5 flat LUN space)",
                lun.number
            ),
        ));
    }
    let bs = lun.block_size;
    if bs != 512 && bs != 4096 {
        return Err(Invalid::new(
            base.key("block_size"),
            format!("{bs} is not 512 or 4096"),
        ));
    }
    let backend = base.key("backend");
    match &lun.backend {
        Backend::Memory { size } | Backend::Null { size } => {
            whole_blocks(*size, bs, backend.key("size"))?;
        }
        Backend::File(f) => {
            if f.path.as_os_str().is_empty() {
                return Err(Invalid::new(backend.key("path"), "is empty"));
            }
            if let Some(size) = f.size {
                whole_blocks(size, bs, backend.key("size"))?;
            }
        }
        Backend::Block(d) => {
            if d.device.as_os_str().is_empty() {
                return Err(Invalid::new(backend.key("device"), "is empty"));
            }
        }
    }
    if let Some(serial) = &lun.serial {
        let ok =
            (1..=64).contains(&serial.len()) && serial.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !ok {
            return Err(Invalid::new(
                base.key("serial"),
                format!("{serial:?} is not 1 to 64 printable ASCII characters (SPC-5 §7.7.18)"),
            ));
        }
    }
    if let Some(g) = lun.optimal_granularity {
        let key = base.key("optimal_granularity");
        whole_blocks(g, bs, key.clone())?;
        if g.bytes() / u64::from(bs) > u64::from(u16::MAX) {
            return Err(Invalid::new(
                key,
                format!(
                    "{g} is more than 65535 blocks of {bs} bytes (the VPD B0h field is 16 bits)"
                ),
            ));
        }
    }
    streams::validate(&lun.streams, &base.key("streams"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{FileBackend, HumanDuration, WriteCache};

    #[test]
    fn naa_identifiers() {
        assert_eq!(
            Naa::parse("0x5001405abcdef012").unwrap().as_bytes().len(),
            8
        );
        assert_eq!(
            Naa::parse("5001405ABCDEF012").unwrap().to_string(),
            "5001405abcdef012"
        );
        assert_eq!(
            Naa::parse("6001405abcdef0123456789abcdef012")
                .unwrap()
                .as_bytes()
                .len(),
            16
        );
        assert_eq!(
            Naa::parse("1001405abcdef012").unwrap_err().to_string(),
            "\"1001405abcdef012\" starts with NAA type 1; 16 digits need type 2, 3 or 5 and 32 digits type 6 (SPC-5 §7.7.6.6)"
        );
        assert_eq!(
            Naa::parse("5001405abcdef01").unwrap_err().to_string(),
            "\"5001405abcdef01\" is not an NAA identifier: give 16 or 32 hex digits"
        );
        assert!(Naa::parse("5001405abcdef01g").is_err());
    }

    fn check(lun: &Lun) -> Result<(), String> {
        validate(lun, &KeyPath::dotted("lun")).map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn lun_rules() {
        let mem = |size| {
            Lun::new(
                0,
                Backend::Memory {
                    size: ByteSize::new(size),
                },
            )
        };
        assert!(check(&mem(1 << 20)).is_ok());
        let mut l = mem(1 << 20);
        l.number = 16384;
        assert_eq!(
            check(&l),
            Err("lun.number: 16384 is outside 0..=16383 (SAM-5 flat LUN space)".into())
        );
        let mut l = mem(1 << 20);
        l.block_size = 1024;
        assert_eq!(
            check(&l),
            Err("lun.block_size: 1024 is not 512 or 4096".into())
        );
        let mut l = mem(6144);
        l.block_size = 4096;
        assert_eq!(
            check(&l),
            Err("lun.backend.size: 6KiB is not a positive multiple of the block size 4096".into())
        );
        let mut l = mem(1 << 20);
        l.serial = Some("bad\tserial".into());
        assert_eq!(
            check(&l),
            Err("lun.serial: \"bad\\tserial\" is not 1 to 64 printable ASCII characters (SPC-5 §7.7.18)".into())
        );
        let mut l = mem(1 << 20);
        l.optimal_granularity = Some(ByteSize::new(1000));
        assert_eq!(
            check(&l),
            Err(
                "lun.optimal_granularity: 1000 is not a positive multiple of the block size 512"
                    .into()
            )
        );
        l.optimal_granularity = Some(ByteSize::mib(64));
        assert_eq!(
            check(&l),
            Err("lun.optimal_granularity: 64MiB is more than 65535 blocks of 512 bytes (the VPD B0h field is 16 bits)".into())
        );
        l.optimal_granularity = Some(ByteSize::kib(256));
        assert!(check(&l).is_ok());
        let mut l = mem(1 << 20);
        l.streams.read_ahead_size = ByteSize::kib(4);
        assert_eq!(
            check(&l),
            Err("lun.streams.read_ahead_size: 4KiB is outside 64KiB..=64MiB or not a multiple of 4KiB".into())
        );
        let mut l = mem(1 << 20);
        l.streams.cache_size = ByteSize::mib(1);
        assert_eq!(
            check(&l),
            Err("lun.streams.cache_size: 1MiB is outside read_ahead_size (2MiB)..=16GiB".into())
        );
        let mut l = mem(1 << 20);
        l.streams.write_combine_window = HumanDuration::from_secs(2);
        assert_eq!(
            check(&l),
            Err("lun.streams.write_combine_window: 2s is outside 1ms..=1s".into())
        );
        let mut l = mem(1 << 20);
        l.streams.max_streams = 0;
        assert_eq!(
            check(&l),
            Err("lun.streams.max_streams: 0 is outside 1..=1024".into())
        );
        let mut l = mem(1 << 20);
        l.streams.write_combine_max = ByteSize::mib(32);
        assert_eq!(
            check(&l),
            Err("lun.streams.write_combine_max: 32MiB is outside 8KiB..=16MiB or not a multiple of 4KiB".into())
        );
        let f = Lun::new(
            0,
            Backend::File(FileBackend {
                path: PathBuf::new(),
                size: None,
                direct: false,
                write_cache: WriteCache::Writeback,
                read_only: false,
            }),
        );
        assert_eq!(check(&f), Err("lun.backend.path: is empty".into()));
    }
}
