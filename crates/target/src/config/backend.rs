//! `[target.lun.backend]`: where a logical unit's data lives — RAM, a file, a block device, or
//! nowhere (null) — written either as a table with a `kind` or as a [`LunSpec`] string.
//!
//! The write-cache choice is what the Caching mode page reports as WCE (SBC-4 §6.5.5).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::spec::LunSpec;
use super::units::ByteSize;

/// Where a LUN's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A RAM disk of `size` bytes, zero-filled, lost at exit.
    Memory {
        /// Capacity.
        size: ByteSize,
    },
    /// A regular file.
    File(FileBackend),
    /// A block device.
    Block(DeviceBackend),
    /// Reads return zeros, writes are discarded; for benchmarking the protocol path.
    Null {
        /// Reported capacity.
        size: ByteSize,
    },
}

/// A file-backed LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileBackend {
    /// The file. Relative paths are relative to rtgtd's working directory.
    pub path: PathBuf,
    /// Create the file, or extend it, to this size; absent: use the file as it is (it must
    /// exist).
    pub size: Option<ByteSize>,
    /// Open with O_DIRECT (bypass the page cache). Default false.
    pub direct: bool,
    /// Write-back (flush on SYNCHRONIZE CACHE / FUA) or write-through (every write durable).
    pub write_cache: WriteCache,
    /// Reject writes. Default false.
    pub read_only: bool,
}

/// A block-device-backed LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceBackend {
    /// The device, e.g. `/dev/nvme0n1`.
    pub device: PathBuf,
    /// Open with O_DIRECT. Default true.
    pub direct: bool,
    /// Write-back or write-through.
    pub write_cache: WriteCache,
    /// Reject writes. Default false.
    pub read_only: bool,
}

/// Write caching policy, reported to initiators as the WCE bit (SBC-4 §6.5.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteCache {
    /// Writes complete when buffered; SYNCHRONIZE CACHE and FUA make them durable.
    #[default]
    Writeback,
    /// Every write is durable before it completes (O_DSYNC).
    Writethrough,
}

/// The table form of a backend, as written in the file.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: BackendKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    direct: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_cache: Option<WriteCache>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_only: Option<bool>,
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    #[default]
    Memory,
    File,
    Block,
    Null,
}

impl RawBackend {
    fn into_backend(self) -> Result<Backend, String> {
        let kind = match self.kind {
            BackendKind::Memory => "memory",
            BackendKind::File => "file",
            BackendKind::Block => "block",
            BackendKind::Null => "null",
        };
        let present: [(&str, bool); 6] = [
            ("size", self.size.is_some()),
            ("path", self.path.is_some()),
            ("device", self.device.is_some()),
            ("direct", self.direct.is_some()),
            ("write_cache", self.write_cache.is_some()),
            ("read_only", self.read_only.is_some()),
        ];
        let allowed: &[&str] = match self.kind {
            BackendKind::Memory | BackendKind::Null => &["size"],
            BackendKind::File => &["size", "path", "direct", "write_cache", "read_only"],
            BackendKind::Block => &["device", "direct", "write_cache", "read_only"],
        };
        if let Some((key, _)) = present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
            return Err(format!(
                "`{key}` does not apply to a {kind} backend (it takes: {})",
                allowed.join(", ")
            ));
        }
        let missing = |key: &str| format!("a {kind} backend needs `{key}`");
        Ok(match self.kind {
            BackendKind::Memory => Backend::Memory {
                size: self.size.ok_or_else(|| missing("size"))?,
            },
            BackendKind::Null => Backend::Null {
                size: self.size.ok_or_else(|| missing("size"))?,
            },
            BackendKind::File => Backend::File(FileBackend {
                path: self.path.ok_or_else(|| missing("path"))?,
                size: self.size,
                direct: self.direct.unwrap_or(false),
                write_cache: self.write_cache.unwrap_or_default(),
                read_only: self.read_only.unwrap_or(false),
            }),
            BackendKind::Block => Backend::Block(DeviceBackend {
                device: self.device.ok_or_else(|| missing("device"))?,
                direct: self.direct.unwrap_or(true),
                write_cache: self.write_cache.unwrap_or_default(),
                read_only: self.read_only.unwrap_or(false),
            }),
        })
    }

    fn from_backend(b: &Backend) -> Self {
        match b {
            Backend::Memory { size } => Self {
                kind: BackendKind::Memory,
                size: Some(*size),
                ..Self::default()
            },
            Backend::Null { size } => Self {
                kind: BackendKind::Null,
                size: Some(*size),
                ..Self::default()
            },
            Backend::File(f) => Self {
                kind: BackendKind::File,
                size: f.size,
                path: Some(f.path.clone()),
                direct: Some(f.direct),
                write_cache: Some(f.write_cache),
                read_only: Some(f.read_only),
                ..Self::default()
            },
            Backend::Block(d) => Self {
                kind: BackendKind::Block,
                device: Some(d.device.clone()),
                direct: Some(d.direct),
                write_cache: Some(d.write_cache),
                read_only: Some(d.read_only),
                ..Self::default()
            },
        }
    }
}

impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawBackend::from_backend(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BackendVisitor;

        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = Backend;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend table ({ kind = \"memory\", size = \"1GiB\" }) or spec (\"memory:1GiB\")")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Backend, E> {
                LunSpec::parse(v).map(|s| s.backend).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Backend, A::Error> {
                let raw = RawBackend::deserialize(de::value::MapAccessDeserializer::new(map))?;
                raw.into_backend().map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_any(BackendVisitor)
    }
}

/// The file or device path a backend stores its data in, if any.
pub(crate) fn storage_path(b: &Backend) -> Option<&Path> {
    match b {
        Backend::File(f) => Some(&f.path),
        Backend::Block(d) => Some(&d.device),
        Backend::Memory { .. } | Backend::Null { .. } => None,
    }
}
