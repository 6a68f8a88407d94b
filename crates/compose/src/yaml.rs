//! YAML with positions: a small tree built from `saphyr-parser` events, every node located.
//!
//! Why `saphyr-parser`: `serde_yaml` is deprecated and archived, its forks keep positions only in
//! errors, `yaml-rust2` is in maintenance mode, and `marked-yaml` rejects anchors and tags. The
//! saphyr parser is maintained, YAML 1.2, small (two dependencies) and gives a span for every
//! event. Compose needs things a ready-made DOM does not give us all at once: a position on every
//! key and value (for `FILE:LINE:COL` errors after merging several files), the tags `!reset` and
//! `!override`, aliases expanded, and merge keys (`<<`, which YAML 1.2 dropped but Compose files
//! use), so we build the tree ourselves from the event stream.
//!
//! Plain scalars are typed with the YAML 1.2 core schema (as go-yaml v3, which Compose uses):
//! `null`/`~`/empty, `true`/`false`, integers (decimal, `0x`, `0o`), floats. Quoted and block
//! scalars are strings. Every scalar keeps its text, so a key like `80:` or `3.10` reads back as
//! written.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use crate::diagnostic::{FileId, Loc, Position, Span};
use crate::error::Problem;

/// The most nodes one file may expand to (aliases copy their anchor), so that a "billion laughs"
/// file fails instead of exhausting memory.
const MAX_NODES: usize = 1_000_000;

/// A YAML node with its location and tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
    /// The tag as written (`!reset`, `!override`, `!!str`), if any.
    pub tag: Option<String>,
}

/// A node's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Map),
}

/// A scalar: its text as written (after quoting is undone) and its core-schema type.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub kind: Kind,
}

/// The type a scalar resolves to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

/// A mapping, in source order. Keys are unique (duplicates are a parse error).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    pub entries: Vec<Entry>,
}

/// One `key: value` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub value: Node,
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    /// Replaces the value of `key`, or appends the entry.
    pub fn insert(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }
}

impl Node {
    /// A string scalar (used for values the loader synthesizes).
    pub fn string(text: impl Into<String>, loc: Loc) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                text: text.into(),
                kind: Kind::Str,
            }),
            loc,
            tag: None,
        }
    }

    pub fn null(loc: Loc) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                text: String::new(),
                kind: Kind::Null,
            }),
            loc,
            tag: None,
        }
    }

    pub fn map(map: Map, loc: Loc) -> Node {
        Node {
            value: Value::Map(map),
            loc,
            tag: None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if s.kind != Kind::Null => Some(&s.text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.kind == Kind::Null)
    }

    /// What kind of node this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar(s) => match s.kind {
                Kind::Null => "null",
                Kind::Bool(_) => "a boolean",
                Kind::Int(_) => "an integer",
                Kind::Float(_) => "a number",
                Kind::Str => "a string",
            },
        }
    }

    fn count(&self) -> usize {
        1 + match &self.value {
            Value::Scalar(_) => 0,
            Value::Seq(s) => s.iter().map(Node::count).sum(),
            Value::Map(m) => m.entries.iter().map(|e| e.value.count()).sum(),
        }
    }
}

/// Resolves a plain scalar's type with the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(n);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(n) = i64::from_str_radix(oct, 8)
    {
        return Kind::Int(n);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = text.parse::<i64>()
    {
        return Kind::Int(n);
    }
    if is_float(digits)
        && let Ok(f) = text.parse::<f64>()
    {
        return Kind::Float(f);
    }
    Kind::Str
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, the core schema's float form.
fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    mantissa_ok && exp_ok && (frac.is_some() || exp.is_some())
}

/// Parses every document of `text`; an empty stream gives no documents.
pub fn parse(text: &str, file: FileId) -> Result<Vec<Node>, Problem> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        file,
        anchors: HashMap::new(),
        nodes: 0,
    };
    builder.documents()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    file: FileId,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn loc(&self, span: YSpan) -> Loc {
        let pos = |m: saphyr_parser::Marker| Position::new(m.line() as u32, m.col() as u32 + 1);
        Loc {
            file: self.file,
            span: Span::new(pos(span.start), pos(span.end)),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, YSpan), Problem> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                let p = Position::new(m.line() as u32, m.col() as u32 + 1);
                Err(Problem::new(
                    Loc {
                        file: self.file,
                        span: Span::new(p, Position::new(p.line, p.column + 1)),
                    },
                    "",
                    format!("invalid YAML: {}", e.info()),
                ))
            }
            None => Err(Problem::new(
                Loc {
                    file: self.file,
                    span: Span::default(),
                },
                "",
                "invalid YAML: unexpected end of the stream",
            )),
        }
    }

    fn documents(&mut self) -> Result<Vec<Node>, Problem> {
        let mut docs = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart(_) => {
                    // Anchors are scoped to their document.
                    self.anchors.clear();
                    let (ev, span) = self.next()?;
                    docs.push(self.node(ev, span)?);
                }
                other => {
                    let node = self.node(other, span)?;
                    docs.push(node);
                }
            }
        }
    }

    fn budget(&mut self, n: usize, loc: Loc) -> Result<(), Problem> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Problem::new(
                loc,
                "",
                format!("the file expands to more than {MAX_NODES} YAML nodes (aliases)"),
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, span: YSpan) -> Result<Node, Problem> {
        let loc = self.loc(span);
        self.budget(1, loc)?;
        let (node, anchor) = match ev {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(Problem::new(loc, "", "unknown anchor in alias"));
                };
                let mut node = target.clone();
                let n = node.count();
                self.budget(n, loc)?;
                node.loc = loc;
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| tag_text(&t));
                let kind = match (style, tag.as_deref()) {
                    (_, Some("!!str")) => Kind::Str,
                    (ScalarStyle::Plain, _) => resolve_plain(&text),
                    _ => Kind::Str,
                };
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        kind,
                    }),
                    loc,
                    tag,
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                let end = loop {
                    let (ev, span) = self.next()?;
                    if let Event::SequenceEnd = ev {
                        break span;
                    }
                    items.push(self.node(ev, span)?);
                };
                let node = Node {
                    value: Value::Seq(items),
                    loc: self.joined(loc, end),
                    tag: tag.map(|t| tag_text(&t)),
                };
                (node, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let (map, end) = self.mapping()?;
                let node = Node {
                    value: Value::Map(map),
                    loc: self.joined(loc, end),
                    tag: tag.map(|t| tag_text(&t)),
                };
                (node, anchor)
            }
            _ => return Err(Problem::new(loc, "", "invalid YAML: unexpected event")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// A collection's location: from its start to the end of its closing event, or to its start
    /// line when the closing event is an empty marker further down (block collections).
    fn joined(&self, start: Loc, end: YSpan) -> Loc {
        let end = self.loc(end);
        let end_pos = if end.span.start == end.span.end {
            Position::new(start.span.end.line, start.span.end.column)
        } else {
            end.span.end
        };
        Loc {
            file: self.file,
            span: Span::new(start.span.start, end_pos.max(start.span.end)),
        }
    }

    fn mapping(&mut self) -> Result<(Map, YSpan), Problem> {
        let mut map = Map::default();
        let mut merges: Vec<Node> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if let Event::MappingEnd = ev {
                // Explicit keys win over merged ones; earlier merge sources win over later ones.
                for source in merges {
                    merge_into(&mut map, source)?;
                }
                return Ok((map, span));
            }
            // Only a plain `<<` is a merge key; a quoted "<<" is an ordinary key.
            let is_merge =
                matches!(&ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(ev, span)?;
            let key_text = match &key.value {
                Value::Scalar(s) => s.text.clone(),
                _ => {
                    return Err(Problem::new(
                        key.loc,
                        "",
                        "mapping keys must be strings, not collections",
                    ));
                }
            };
            let (ev, span) = self.next()?;
            let value = self.node(ev, span)?;
            if is_merge {
                merges.push(value);
                continue;
            }
            if let Some(prev) = map.entry(&key_text) {
                return Err(Problem::new(
                    key.loc,
                    "",
                    format!(
                        "mapping key {key_text:?} already defined at line {}",
                        prev.key_loc.span.start.line
                    ),
                ));
            }
            map.entries.push(Entry {
                key: key_text,
                key_loc: key.loc,
                value,
            });
        }
    }
}

/// Adds a merge-key source's entries that `map` does not have yet.
fn merge_into(map: &mut Map, source: Node) -> Result<(), Problem> {
    match source.value {
        Value::Map(m) => {
            for e in m.entries {
                if map.get(&e.key).is_none() {
                    map.entries.push(e);
                }
            }
            Ok(())
        }
        Value::Seq(items) => {
            for item in items {
                if item.as_map().is_none() {
                    return Err(Problem::new(
                        item.loc,
                        "",
                        "a merge key `<<` takes a mapping or a list of mappings",
                    ));
                }
                merge_into(map, item)?;
            }
            Ok(())
        }
        Value::Scalar(_) => Err(Problem::new(
            source.loc,
            "",
            "a merge key `<<` takes a mapping or a list of mappings",
        )),
    }
}

fn tag_text(tag: &saphyr_parser::Tag) -> String {
    if tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        parse(text, FileId(0)).unwrap().remove(0)
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        assert_eq!(resolve_plain("8080"), Kind::Int(8080));
        assert_eq!(resolve_plain("-3"), Kind::Int(-3));
        assert_eq!(resolve_plain("0x1F"), Kind::Int(31));
        assert_eq!(resolve_plain("1.5"), Kind::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Kind::Float(1000.0));
        assert_eq!(resolve_plain("~"), Kind::Null);
        assert_eq!(resolve_plain("True"), Kind::Bool(true));
        assert_eq!(resolve_plain("yes"), Kind::Str);
        assert_eq!(resolve_plain("80:80"), Kind::Str);
        assert_eq!(resolve_plain("1.2.3"), Kind::Str);
        assert_eq!(resolve_plain("."), Kind::Str);
    }

    #[test]
    fn quoted_scalars_are_strings_and_keep_positions() {
        let doc = one("a: \"8080\"\nb: 8080\n");
        let m = doc.as_map().unwrap();
        let a = m.get("a").unwrap().as_scalar().unwrap();
        assert_eq!((a.text.as_str(), a.kind), ("8080", Kind::Str));
        assert_eq!(
            m.get("b").unwrap().as_scalar().unwrap().kind,
            Kind::Int(8080)
        );
        let b = m.entry("b").unwrap();
        assert_eq!(b.key_loc.span.start, Position::new(2, 1));
        assert_eq!(b.value.loc.span.start, Position::new(2, 4));
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let doc =
            one("base: &b {x: 1, y: 2}\nother: &o {z: 3}\nc:\n  <<: [*b, *o]\n  y: 9\nd: *b\n");
        let m = doc.as_map().unwrap();
        let c = m.get("c").unwrap().as_map().unwrap();
        let keys: Vec<_> = c.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["y", "x", "z"]);
        assert_eq!(c.get("y").unwrap().as_str(), Some("9"));
        assert_eq!(
            m.get("d")
                .unwrap()
                .as_map()
                .unwrap()
                .get("x")
                .unwrap()
                .as_str(),
            Some("1")
        );
    }

    #[test]
    fn quoted_merge_key_is_an_ordinary_key() {
        let doc = one("a:\n  \"<<\": 1\n");
        let a = doc.as_map().unwrap().get("a").unwrap().as_map().unwrap();
        assert_eq!(a.entries[0].key, "<<");
    }

    #[test]
    fn tags_are_kept() {
        let doc = one("a: !reset []\nb: !override {x: 1}\nc: !!str 12\n");
        let m = doc.as_map().unwrap();
        assert_eq!(m.get("a").unwrap().tag.as_deref(), Some("!reset"));
        assert_eq!(m.get("b").unwrap().tag.as_deref(), Some("!override"));
        assert_eq!(m.get("c").unwrap().as_scalar().unwrap().kind, Kind::Str);
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_located() {
        let e = parse("a: 1\nb: 2\na: 3\n", FileId(0)).unwrap_err();
        assert_eq!(e.loc.span.start, Position::new(3, 1));
        assert!(
            e.message.contains("already defined at line 1"),
            "{}",
            e.message
        );
        let e = parse("a: [1, 2\nb: 3\n", FileId(0)).unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    }

    #[test]
    fn alias_bombs_fail() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&text, FileId(0)).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}
