//! Mapping between byte spans in the TOML text, line:column positions and key paths.
//!
//! `toml` reports deserialisation errors with a byte span but no key; our validator reports
//! problems with a key path but no span. Both are placed in the file through the same span
//! tree, read once with `toml_edit` (the parser `toml` itself uses, so offsets agree).

use std::ops::Range;
use std::path::Path;

use toml_edit::{Array, ArrayOfTables, ImDocument, Item, TableLike, Value};

use super::error::{ConfigError, Invalid, KeyPath, Location, Seg};

/// The parsed text of one configuration file, for placing errors in it.
pub(crate) struct Source<'a> {
    text: &'a str,
    file: &'a Path,
    doc: ImDocument<&'a str>,
}

#[derive(Clone, Copy)]
enum Cursor<'d> {
    Table(&'d dyn TableLike),
    Tables(&'d ArrayOfTables),
    Array(&'d Array),
    Leaf,
}

impl<'d> Cursor<'d> {
    fn of_item(item: &'d Item) -> Self {
        match item {
            Item::Table(t) => Self::Table(t),
            Item::ArrayOfTables(a) => Self::Tables(a),
            Item::Value(v) => Self::of_value(v),
            Item::None => Self::Leaf,
        }
    }

    fn of_value(value: &'d Value) -> Self {
        match value {
            Value::InlineTable(t) => Self::Table(t),
            Value::Array(a) => Self::Array(a),
            _ => Self::Leaf,
        }
    }
}

impl<'a> Source<'a> {
    /// Parses `text`; a TOML syntax error comes back as [`ConfigError::Syntax`].
    pub(crate) fn parse(text: &'a str, file: &'a Path) -> Result<Self, ConfigError> {
        match ImDocument::parse(text) {
            Ok(doc) => Ok(Self { text, file, doc }),
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                Err(ConfigError::Syntax {
                    location: location(text, file, offset),
                    key: syntax_key(text, offset)
                        .map(|k| k.to_string())
                        .unwrap_or_default(),
                    message: tidy(e.message()),
                })
            }
        }
    }

    /// The 1-based line and column of byte `offset`.
    pub(crate) fn location(&self, offset: usize) -> Location {
        location(self.text, self.file, offset)
    }

    /// Places a validation problem at its key (or the nearest enclosing key that is written
    /// in the file, when the value was left to its default).
    pub(crate) fn place(&self, invalid: Invalid) -> ConfigError {
        let offset = self.span_of(&invalid.path).map_or(0, |s| s.start);
        ConfigError::Invalid {
            location: Some(self.location(offset)),
            key: invalid.path.to_string(),
            message: invalid.message,
        }
    }

    /// Turns a `toml` deserialisation error into one naming its key.
    pub(crate) fn de_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        ConfigError::Invalid {
            location: Some(self.location(span.start)),
            key: self.path_at(&span).to_string(),
            message: tidy(e.message()),
        }
    }

    /// The span of the deepest existing value along `path`.
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut best = None;
        let mut cursor = Cursor::Table(self.doc.as_table());
        for seg in &path.0 {
            cursor = match (cursor, seg) {
                (Cursor::Table(t), Seg::Key(k)) => {
                    let Some((key, item)) = t.get_key_value(k) else {
                        break;
                    };
                    best = item.span().or_else(|| key.span()).or(best);
                    Cursor::of_item(item)
                }
                (Cursor::Tables(a), Seg::Index(i)) => {
                    let Some(t) = a.get(*i) else { break };
                    best = t.span().or(best);
                    Cursor::Table(t)
                }
                (Cursor::Array(a), Seg::Index(i)) => {
                    let Some(v) = a.get(*i) else { break };
                    best = v.span().or(best);
                    Cursor::of_value(v)
                }
                _ => break,
            };
        }
        best
    }

    /// The key path of the smallest key or value whose span contains `span`.
    fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let mut best: Option<(usize, KeyPath)> = None;
        let mut consider = |s: Option<Range<usize>>, path: &KeyPath| {
            if let Some(s) = s {
                if s.start <= span.start && span.end <= s.end {
                    let len = s.end - s.start;
                    if best.as_ref().is_none_or(|(l, _)| len <= *l) {
                        best = Some((len, path.clone()));
                    }
                }
            }
        };
        walk(
            Cursor::Table(self.doc.as_table()),
            &KeyPath::root(),
            &mut consider,
        );
        best.map(|(_, p)| p).unwrap_or_default()
    }
}

/// Visits every key and value under `cursor` with its span and path.
fn walk(cursor: Cursor<'_>, path: &KeyPath, visit: &mut dyn FnMut(Option<Range<usize>>, &KeyPath)) {
    match cursor {
        Cursor::Table(t) => {
            for (name, _) in t.iter() {
                let Some((key, item)) = t.get_key_value(name) else {
                    continue;
                };
                let child = path.key(name);
                visit(key.span(), &child);
                visit(item.span(), &child);
                walk(Cursor::of_item(item), &child, visit);
            }
        }
        Cursor::Tables(a) => {
            for (i, t) in a.iter().enumerate() {
                let child = path.index(i);
                visit(t.span(), &child);
                walk(Cursor::Table(t), &child, visit);
            }
        }
        Cursor::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let child = path.index(i);
                visit(v.span(), &child);
                walk(Cursor::of_value(v), &child, visit);
            }
        }
        Cursor::Leaf => {}
    }
}

/// The key a syntax error at `offset` is in, when it can be told: the text before the error's
/// line must parse on its own (it then says which table is open, with array indices), and the
/// error's line must be `key = …` with the error after the `=`.
fn syntax_key(text: &str, offset: usize) -> Option<KeyPath> {
    let offset = offset.min(text.len());
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let (prefix, line) = text.split_at(line_start);
    let (key, _) = line.get(..offset - line_start)?.split_once('=')?;
    let key = key.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if !parts.iter().all(|p| bare(p)) {
        return None;
    }
    let doc = ImDocument::parse(prefix).ok()?;
    // The open table is the one whose header comes last in the prefix.
    let mut open: Option<(usize, KeyPath)> = None;
    let mut consider = |start: usize, path: &KeyPath| {
        if open.as_ref().is_none_or(|(s, _)| start >= *s) {
            open = Some((start, path.clone()));
        }
    };
    walk_tables(doc.as_table(), &KeyPath::root(), &mut consider);
    let mut path = open.map(|(_, p)| p).unwrap_or_default();
    for p in parts {
        path = path.key(p);
    }
    Some(path)
}

/// Visits every standard table (`[a]`, `[[a]]` elements) with the start of its header.
fn walk_tables(table: &toml_edit::Table, path: &KeyPath, visit: &mut dyn FnMut(usize, &KeyPath)) {
    for (name, item) in table {
        let child = path.key(name);
        match item {
            Item::Table(t) => {
                if let Some(s) = t.span() {
                    visit(s.start, &child);
                }
                walk_tables(t, &child, visit);
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let element = child.index(i);
                    if let Some(s) = t.span() {
                        visit(s.start, &element);
                    }
                    walk_tables(t, &element, visit);
                }
            }
            Item::Value(_) | Item::None => {}
        }
    }
}

fn location(text: &str, file: &Path, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        file: file.to_path_buf(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// One line, no trailing punctuation noise.
fn tidy(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = \"x\"\n";
        let f = Path::new("f.toml");
        assert_eq!(location(text, f, 0).to_string(), "f.toml:1:1");
        assert_eq!(location(text, f, 6).to_string(), "f.toml:2:1");
        // 'é' is two bytes but one column.
        assert_eq!(location(text, f, 10).to_string(), "f.toml:2:4");
        assert_eq!(location(text, f, 999).to_string(), "f.toml:3:1");
    }

    #[test]
    fn syntax_errors_name_the_key_when_they_can() {
        let key = |t: &str| {
            let Err(ConfigError::Syntax { key, .. }) = Source::parse(t, Path::new("f")) else {
                panic!("{t} parsed")
            };
            key
        };
        assert_eq!(key("a = 1 GiB\n"), "a");
        assert_eq!(
            key("[session]\nx = 1\nnop_timeout = 5 s\n"),
            "session.nop_timeout"
        );
        assert_eq!(
            key("[[target]]\n[[target]]\n[[target.lun]]\nbackend.size = 1 GiB\n"),
            "target[1].lun[0].backend.size"
        );
        assert_eq!(
            key("[[target]]\n[target.auth]\n[[target]]\nalias = \"x\n"),
            "target[1].alias"
        );
        // No key: a broken header, an error before '=', or a prefix that does not parse.
        assert_eq!(key("[[portal]\n"), "");
        assert_eq!(key("a b = 1\n"), "");
        assert_eq!(key("a = [1,\n2 3]\n"), "");
    }

    #[test]
    fn paths_find_their_spans_and_back() {
        let text = "[[target]]\nname = \"x\"\n[[target.lun]]\nnumber = 0\n[[target.lun]]\nnumber = 1\nbackend = { kind = \"memory\", size = \"1 GiB\" }\n";
        let src = Source::parse(text, Path::new("t.toml")).unwrap();
        let path = KeyPath::root()
            .key("target")
            .index(0)
            .key("lun")
            .index(1)
            .key("backend")
            .key("size");
        let span = src.span_of(&path).unwrap();
        assert_eq!(&text[span.clone()], "\"1 GiB\"");
        assert_eq!(src.path_at(&span), path);
        assert_eq!(src.location(span.start).to_string(), "t.toml:7:37");
        // A key that is not written falls back to the nearest written ancestor.
        let missing = KeyPath::root()
            .key("target")
            .index(0)
            .key("lun")
            .index(0)
            .key("backend");
        let span = src.span_of(&missing).unwrap();
        assert!(text[span].starts_with("[[target.lun]]\nnumber = 0"));
    }
}
