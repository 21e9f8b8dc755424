//! The short backend form `rtgtd --lun SPEC` takes (and `backend = "…"` in the file):
//! `memory:SIZE`, `null:SIZE`, `file:PATH[,size=SIZE][,direct][,ro]`, `block:DEVICE[,ro]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::backend::{Backend, DeviceBackend, FileBackend, WriteCache};
use super::lun::{DEFAULT_BLOCK_SIZE, Lun};
use super::units::ByteSize;

/// A backend as `rtgtd --lun` writes it:
///
/// * `memory:SIZE` — RAM disk
/// * `null:SIZE` — discard writes, read zeros
/// * `file:PATH[,size=SIZE][,direct][,ro]` — file (created/extended to SIZE if given)
/// * `block:DEVICE[,ro]` — block device
///
/// Sizes must be whole 512-byte blocks. PATH cannot contain a comma.
///
/// ```
/// use rtgt_target::config::{Backend, ByteSize, LunSpec};
///
/// let spec = LunSpec::parse("memory:1GiB")?;
/// assert_eq!(spec.backend, Backend::Memory { size: ByteSize::gib(1) });
/// let spec: LunSpec = "file:/srv/disk.img,size=10GiB,direct".parse()?;
/// assert_eq!(spec.to_string(), "file:/srv/disk.img,size=10GiB,direct");
/// assert_eq!(
///     LunSpec::parse("tape:1GiB").unwrap_err().to_string(),
///     "unknown backend \"tape\" (use memory:SIZE, file:PATH[,size=SIZE][,direct][,ro], block:DEVICE[,ro] or null:SIZE)",
/// );
/// # Ok::<(), rtgt_target::config::LunSpecError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunSpec {
    /// The backend described.
    pub backend: Backend,
}

/// Why a LUN spec was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LunSpecError(String);

const SPEC_FORMS: &str =
    "use memory:SIZE, file:PATH[,size=SIZE][,direct][,ro], block:DEVICE[,ro] or null:SIZE";

fn spec_size(text: &str) -> Result<ByteSize, LunSpecError> {
    let size = ByteSize::parse(text).map_err(|e| LunSpecError(e.to_string()))?;
    if size.bytes() == 0 || size.bytes() % u64::from(DEFAULT_BLOCK_SIZE) != 0 {
        return Err(LunSpecError(format!(
            "size {size} is not a positive multiple of {DEFAULT_BLOCK_SIZE} bytes"
        )));
    }
    Ok(size)
}

impl LunSpec {
    /// Parses a spec (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, LunSpecError> {
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(LunSpecError(format!(
                "{text:?} has no backend type ({SPEC_FORMS})"
            )));
        };
        let mut parts = rest.split(',');
        let first = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        let no_options = |kind: &str| -> Result<(), LunSpecError> {
            match options.first() {
                None => Ok(()),
                Some(o) => Err(LunSpecError(format!("{kind} takes no option {o:?}"))),
            }
        };
        let backend = match kind {
            "memory" => {
                no_options("memory")?;
                Backend::Memory {
                    size: spec_size(first)?,
                }
            }
            "null" => {
                no_options("null")?;
                Backend::Null {
                    size: spec_size(first)?,
                }
            }
            "file" => {
                if first.is_empty() {
                    return Err(LunSpecError("file: needs a path (file:PATH)".into()));
                }
                let mut file = FileBackend {
                    path: PathBuf::from(first),
                    size: None,
                    direct: false,
                    write_cache: WriteCache::Writeback,
                    read_only: false,
                };
                for o in options {
                    match o.split_once('=') {
                        Some(("size", v)) if file.size.is_none() => file.size = Some(spec_size(v)?),
                        None if o == "direct" && !file.direct => file.direct = true,
                        None if o == "ro" && !file.read_only => file.read_only = true,
                        _ => {
                            return Err(LunSpecError(format!(
                                "unknown or repeated file option {o:?} (options: size=SIZE, direct, ro)"
                            )));
                        }
                    }
                }
                Backend::File(file)
            }
            "block" => {
                if first.is_empty() {
                    return Err(LunSpecError("block: needs a device (block:DEVICE)".into()));
                }
                let mut dev = DeviceBackend {
                    device: PathBuf::from(first),
                    direct: true,
                    write_cache: WriteCache::Writeback,
                    read_only: false,
                };
                for o in options {
                    if o == "ro" && !dev.read_only {
                        dev.read_only = true;
                    } else {
                        return Err(LunSpecError(format!(
                            "unknown or repeated block option {o:?} (options: ro)"
                        )));
                    }
                }
                Backend::Block(dev)
            }
            other => {
                return Err(LunSpecError(format!(
                    "unknown backend {other:?} ({SPEC_FORMS})"
                )));
            }
        };
        Ok(Self { backend })
    }

    /// A LUN numbered `number` with default settings over this backend.
    pub fn into_lun(self, number: u16) -> Lun {
        Lun::new(number, self.backend)
    }
}

impl FromStr for LunSpec {
    type Err = LunSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for LunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory { size } => write!(f, "memory:{size}"),
            Backend::Null { size } => write!(f, "null:{size}"),
            Backend::File(file) => {
                write!(f, "file:{}", file.path.display())?;
                if let Some(size) = file.size {
                    write!(f, ",size={size}")?;
                }
                if file.direct {
                    f.write_str(",direct")?;
                }
                if file.read_only {
                    f.write_str(",ro")?;
                }
                Ok(())
            }
            Backend::Block(dev) => {
                write!(f, "block:{}", dev.device.display())?;
                if dev.read_only {
                    f.write_str(",ro")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<String, String> {
        LunSpec::parse(s)
            .map(|l| l.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn specs_parse_and_print() {
        assert_eq!(spec("memory:1GiB"), Ok("memory:1GiB".into()));
        assert_eq!(spec("memory:1G"), Ok("memory:1GiB".into()));
        assert_eq!(spec("null:2TiB"), Ok("null:2TiB".into()));
        assert_eq!(spec("file:/tmp/x.img"), Ok("file:/tmp/x.img".into()));
        assert_eq!(
            spec("file:/tmp/x.img,direct,size=64MiB,ro"),
            Ok("file:/tmp/x.img,size=64MiB,direct,ro".into())
        );
        assert_eq!(spec("block:/dev/sdb,ro"), Ok("block:/dev/sdb,ro".into()));
        let file = LunSpec::parse("file:rel/disk.img,size=1MiB").unwrap();
        let Backend::File(f) = &file.backend else {
            panic!("{file:?}")
        };
        assert_eq!(f.path, PathBuf::from("rel/disk.img"));
        assert_eq!(f.size, Some(ByteSize::mib(1)));
        assert!(!f.direct && !f.read_only);
        let lun = file.into_lun(3);
        assert_eq!((lun.number, lun.block_size), (3, 512));
    }

    #[test]
    fn bad_specs_say_why() {
        let cases = [
            (
                "memory",
                "\"memory\" has no backend type (use memory:SIZE, file:PATH[,size=SIZE][,direct][,ro], block:DEVICE[,ro] or null:SIZE)",
            ),
            (
                "ram:1GiB",
                "unknown backend \"ram\" (use memory:SIZE, file:PATH[,size=SIZE][,direct][,ro], block:DEVICE[,ro] or null:SIZE)",
            ),
            ("memory:1 GiB", "\"1 GiB\" is not a size (try 1GiB)"),
            (
                "memory:",
                "\"\" is not a size (sizes are whole numbers with an optional unit: 4096, 64KiB, 512MiB, 1GiB, 1G)",
            ),
            (
                "memory:1000",
                "size 1000 is not a positive multiple of 512 bytes",
            ),
            ("null:0", "size 0 is not a positive multiple of 512 bytes"),
            ("memory:1GiB,direct", "memory takes no option \"direct\""),
            ("file:", "file: needs a path (file:PATH)"),
            (
                "file:/x,size=1x",
                "\"1x\" has an unknown unit \"x\" (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)",
            ),
            (
                "file:/x,sync",
                "unknown or repeated file option \"sync\" (options: size=SIZE, direct, ro)",
            ),
            (
                "file:/x,direct,direct",
                "unknown or repeated file option \"direct\" (options: size=SIZE, direct, ro)",
            ),
            (
                "file:/x,size=1MiB,size=2MiB",
                "unknown or repeated file option \"size=2MiB\" (options: size=SIZE, direct, ro)",
            ),
            ("block:", "block: needs a device (block:DEVICE)"),
            (
                "block:/dev/sdb,direct",
                "unknown or repeated block option \"direct\" (options: ro)",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(spec(input), Err(want.to_owned()), "{input}");
        }
    }
}
