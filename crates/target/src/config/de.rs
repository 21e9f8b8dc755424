//! A serde helper: read a string and parse it inside the deserializer, so that `toml`
//! attaches the value's own span (and so the precise key, e.g. `acl[1]`) to a parse error.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};

struct ParseVisitor<T, F> {
    expecting: &'static str,
    parse: F,
    _out: PhantomData<T>,
}

impl<T, F, E> Visitor<'_> for ParseVisitor<T, F>
where
    F: FnOnce(&str) -> Result<T, E>,
    E: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<DE: de::Error>(self, v: &str) -> Result<T, DE> {
        (self.parse)(v).map_err(DE::custom)
    }
}

/// Deserializes a string and parses it with `parse`; `expecting` describes the value for
/// type errors ("an IP address and port").
pub(crate) fn parse_str<'de, D, T, E>(
    deserializer: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    deserializer.deserialize_str(ParseVisitor {
        expecting,
        parse,
        _out: PhantomData,
    })
}
