//! Configuration errors that name the file, line, column and key.
//!
//! The design asks for config errors "that name the key and line": every problem found in a
//! file is reported as `FILE:LINE:COLUMN: KEY.PATH: what is wrong`, where the key path uses the
//! TOML names with array indices (`target[0].lun[1].backend.size`). Problems with a
//! command-line override name the flag instead (`--lun "memory:1x": …`).

use std::fmt;
use std::path::PathBuf;

/// A position in a configuration file: 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file as it was named to [`Config::load`](super::Config::load).
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Everything that can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("{}", invalid(Some(.location), .key, .message))]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The key being written on that line (`target[0].lun[0].size`), when the text before
        /// the error is enough to tell; empty otherwise.
        key: String,
        /// The parser's explanation.
        message: String,
    },
    /// A key has a wrong, missing, unknown or inconsistent value.
    #[error("{}", invalid(.location.as_ref(), .key, .message))]
    Invalid {
        /// Where in the file, when the configuration came from a file.
        location: Option<Location>,
        /// The dotted key path (`target[0].lun[1].backend.size`); empty for the whole file.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line override is wrong.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag, e.g. `--lun`.
        flag: &'static str,
        /// What is wrong, starting with the value given when there is one.
        message: String,
    },
    /// The configuration could not be written as TOML.
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(String),
}

fn invalid(location: Option<&Location>, key: &str, message: &str) -> String {
    let mut out = String::new();
    if let Some(loc) = location {
        out.push_str(&loc.to_string());
        out.push_str(": ");
    }
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

impl ConfigError {
    /// The key path the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } | Self::Syntax { key, .. } if !key.is_empty() => Some(key),
            _ => None,
        }
    }

    /// Where in the file the error is, if it came from a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Syntax { location, .. } => Some(location),
            Self::Invalid { location, .. } => location.as_ref(),
            _ => None,
        }
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a value in the document, e.g. `target[0].lun[1].backend.size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(key.to_owned()));
        Self(v)
    }

    /// This path extended by an index.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// Parses a dotted path without indices (`performance.buffer_size`).
    pub(crate) fn dotted(text: &str) -> Self {
        Self(
            text.split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Seg::Key(s.to_owned()))
                .collect(),
        )
    }

    pub(crate) fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A semantic problem found by validation, before it is placed in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) path: KeyPath,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }

    /// As a [`ConfigError`] with no file position (the configuration did not come from a
    /// file, or the key is not in it).
    pub(crate) fn unplaced(self) -> ConfigError {
        ConfigError::Invalid {
            location: None,
            key: self.path.to_string(),
            message: self.message,
        }
    }
}

/// Shorthand for validation results.
pub(crate) type Check = Result<(), Invalid>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_print_like_toml() {
        let p = KeyPath::root()
            .key("target")
            .index(0)
            .key("lun")
            .index(1)
            .key("backend");
        assert_eq!(p.to_string(), "target[0].lun[1].backend");
        assert_eq!(
            KeyPath::dotted("performance.cpus").to_string(),
            "performance.cpus"
        );
        assert!(p.starts_with(&KeyPath::root().key("target").index(0)));
        assert!(!p.starts_with(&KeyPath::root().key("portal")));
    }

    #[test]
    fn errors_print_location_key_and_message() {
        let e = ConfigError::Invalid {
            location: Some(Location {
                file: "rtgtd.toml".into(),
                line: 14,
                column: 9,
            }),
            key: "target[0].lun[1].backend.size".into(),
            message: "\"1 GiB\" is not a size (try 1GiB)".into(),
        };
        assert_eq!(
            e.to_string(),
            "rtgtd.toml:14:9: target[0].lun[1].backend.size: \"1 GiB\" is not a size (try 1GiB)"
        );
        assert_eq!(e.key(), Some("target[0].lun[1].backend.size"));
        assert_eq!(e.location().map(|l| l.line), Some(14));
        let e = ConfigError::Invalid {
            location: None,
            key: "session.max_burst_length".into(),
            message: "too small".into(),
        };
        assert_eq!(e.to_string(), "session.max_burst_length: too small");
        let e = ConfigError::Flag {
            flag: "--target",
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "--target: bad");
        assert_eq!(e.key(), None);
    }
}
