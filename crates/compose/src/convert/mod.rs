//! The merged YAML tree → the typed [`Project`](crate::model::Project): type checks, short
//! syntaxes to long form, unknown keys (with a did-you-mean) and keys kiln does not support yet,
//! each reported at its location. This module has the primitives; `service.rs`, `syntax.rs` and
//! `resources.rs` the shapes.

mod mounts;
mod resources;
mod service;
mod syntax;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub(crate) use resources::convert_project;
pub use syntax::{parse_port, parse_volume, split_command};

use crate::diagnostic::{Loc, SourceMap};
use crate::error::Problem;
use crate::units::{Duration, parse_bytes};
use crate::yaml::{Entry, Kind, Map, Node, Value};

/// The conversion's state: what it found wrong, where model paths came from, and what it needs
/// to read `env_file`s.
pub(crate) struct Cx<'a> {
    pub problems: Vec<Problem>,
    pub locations: HashMap<String, Loc>,
    pub sources: &'a mut SourceMap,
    /// The variables of the project (env files overlaid by the shell), for `env_file`
    /// expansion and `environment` entries without a value.
    pub env: &'a BTreeMap<String, String>,
    pub project_dir: &'a Path,
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Cx<'_> {
    pub fn error(&mut self, loc: Loc, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(loc, path, message));
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        self.error(
            node.loc,
            path,
            format!("expected {expected}, found {}", node.describe()),
        );
    }

    pub fn map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n Map> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.wrong_type(node, path, "a mapping");
                None
            }
        }
    }

    pub fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(s) => Some(s),
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// A string; numbers and booleans are refused, as Compose's schema does.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s) if s.kind == Kind::Str => Some(s.text.clone()),
            Value::Scalar(s) if matches!(s.kind, Kind::Int(_) | Kind::Float(_)) => {
                self.problems.push(
                    Problem::new(
                        node.loc,
                        path,
                        format!("expected a string, found {}", node.describe()),
                    )
                    .with_help(format!("quote it: \"{}\"", s.text)),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// A string, number or boolean, as text (for fields the schema types `string|number`).
    pub fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s) if s.kind != Kind::Null => Some(s.text.clone()),
            _ => {
                self.wrong_type(node, path, "a string or a number");
                None
            }
        }
    }

    /// A boolean; an interpolated `"true"`/`"false"` counts.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Scalar(s) => match (s.kind, s.text.as_str()) {
                (Kind::Bool(b), _) => Some(b),
                (Kind::Str, "true" | "True" | "TRUE") => Some(true),
                (Kind::Str, "false" | "False" | "FALSE") => Some(false),
                _ => {
                    self.wrong_type(node, path, "a boolean");
                    None
                }
            },
            _ => {
                self.wrong_type(node, path, "a boolean");
                None
            }
        }
    }

    /// An integer; an interpolated numeric string counts.
    pub fn int(&mut self, node: &Node, path: &str) -> Option<i64> {
        match &node.value {
            Value::Scalar(s) => match s.kind {
                Kind::Int(n) => Some(n),
                Kind::Str => s.text.trim().parse().ok().or_else(|| {
                    self.wrong_type(node, path, "an integer");
                    None
                }),
                _ => {
                    self.wrong_type(node, path, "an integer");
                    None
                }
            },
            _ => {
                self.wrong_type(node, path, "an integer");
                None
            }
        }
    }

    pub fn uint(&mut self, node: &Node, path: &str) -> Option<u64> {
        let n = self.int(node, path)?;
        if n < 0 {
            self.error(node.loc, path, format!("must not be negative, found {n}"));
            return None;
        }
        Some(n as u64)
    }

    pub fn u32(&mut self, node: &Node, path: &str) -> Option<u32> {
        let n = self.uint(node, path)?;
        u32::try_from(n).ok().or_else(|| {
            self.error(node.loc, path, format!("{n} is too large"));
            None
        })
    }

    /// A number (integer, float, or a numeric string such as `"0.5"`).
    pub fn float(&mut self, node: &Node, path: &str) -> Option<f64> {
        match &node.value {
            Value::Scalar(s) => match s.kind {
                Kind::Int(n) => Some(n as f64),
                Kind::Float(f) if f.is_finite() => Some(f),
                Kind::Str => s.text.trim().parse().ok().or_else(|| {
                    self.wrong_type(node, path, "a number");
                    None
                }),
                _ => {
                    self.wrong_type(node, path, "a number");
                    None
                }
            },
            _ => {
                self.wrong_type(node, path, "a number");
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        if let Value::Scalar(s) = &node.value
            && matches!(s.kind, Kind::Int(_) | Kind::Float(_))
        {
            self.problems.push(
                Problem::new(
                    node.loc,
                    path,
                    format!("expected a duration, found {}", node.describe()),
                )
                .with_help(format!("give a unit: \"{}s\"", s.text)),
            );
            return None;
        }
        let text = self.string(node, path)?;
        Duration::parse(&text).or_else(|| {
            self.error(
                node.loc,
                path,
                format!("invalid duration {text:?}, expected e.g. 30s, 1m30s or 500ms"),
            );
            None
        })
    }

    /// A byte count: an integer, or a size such as `512m`.
    pub fn bytes(&mut self, node: &Node, path: &str) -> Option<u64> {
        match &node.value {
            Value::Scalar(s) if matches!(s.kind, Kind::Int(n) if n >= 0) => {
                Some(s.text.parse().unwrap_or_default())
            }
            Value::Scalar(s) if s.kind == Kind::Str => parse_bytes(&s.text).or_else(|| {
                self.error(
                    node.loc,
                    path,
                    format!("invalid size {:?}, expected e.g. 512m or 1g", s.text),
                );
                None
            }),
            _ => {
                self.wrong_type(node, path, "a size");
                None
            }
        }
    }

    /// A list of strings (numbers accepted as text).
    pub fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Some(items) = self.seq(node, path) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.text(n, &format!("{path}[{i}]")))
            .collect()
    }

    /// A string or a list of strings.
    pub fn string_or_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Scalar(s) if s.kind == Kind::Str => vec![s.text.clone()],
            Value::Seq(_) => self.strings(node, path),
            _ => {
                self.wrong_type(node, path, "a string or a list of strings");
                Vec::new()
            }
        }
    }

    /// A mapping of names to optional values (already a map after normalization; a list here
    /// had non-scalar items).
    pub fn key_values(&mut self, node: &Node, path: &str) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(m) => {
                for e in &m.entries {
                    let child = join(path, &e.key);
                    let value = match &e.value.value {
                        Value::Scalar(s) if s.kind == Kind::Null => None,
                        Value::Scalar(s) => Some(s.text.clone()),
                        _ => {
                            self.wrong_type(&e.value, &child, "a string, number or boolean");
                            None
                        }
                    };
                    out.insert(e.key.clone(), value);
                }
            }
            Value::Seq(items) => {
                // Normalization turned lists of scalars into maps already; this list has other
                // items, which are the errors. Its scalars are still taken.
                for (i, item) in items.iter().enumerate() {
                    match &item.value {
                        Value::Scalar(s) if s.kind != Kind::Null => {
                            let (k, v) = match s.text.split_once('=') {
                                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                                None => (s.text.clone(), None),
                            };
                            out.insert(k, v);
                        }
                        _ => {
                            self.wrong_type(item, &format!("{path}[{i}]"), "a \"KEY=VALUE\" string")
                        }
                    }
                }
            }
            _ => self.wrong_type(node, path, "a mapping or a list of \"KEY=VALUE\" strings"),
        }
        out
    }

    /// Like [`Cx::key_values`], with missing values as "".
    pub fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        self.key_values(node, path)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// An `x-` key goes to `extensions`; a key of the specification that kiln does not
    /// implement fails as "not supported yet"; anything else is unknown, with a suggestion.
    pub fn other_key(
        &mut self,
        e: &Entry,
        path: &str,
        known: &[&str],
        unsupported: &[&str],
        extensions: Option<&mut BTreeMap<String, serde_json::Value>>,
    ) {
        if e.key.starts_with("x-")
            && let Some(ext) = extensions
        {
            ext.insert(e.key.clone(), to_json(&e.value));
            return;
        }
        if unsupported.contains(&e.key.as_str()) {
            self.error(
                e.key_loc,
                "",
                format!("not supported yet: {}", join(path, &e.key)),
            );
            return;
        }
        let mut p = Problem::new(e.key_loc, path, format!("unknown key `{}`", e.key));
        if let Some(best) = did_you_mean(&e.key, known.iter().chain(unsupported)) {
            p = p.with_help(format!("did you mean `{best}`?"));
        }
        self.problems.push(p);
    }
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A tree as JSON, for extension fields.
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Scalar(s) => match s.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(b),
            Kind::Int(n) => J::from(n),
            Kind::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Kind::Str => J::String(s.text.clone()),
        },
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_keys_only() {
        let keys = ["image", "environment", "ports", "volumes"];
        assert_eq!(did_you_mean("imag", keys.iter()), Some("image"));
        assert_eq!(did_you_mean("enviroment", keys.iter()), Some("environment"));
        assert_eq!(did_you_mean("port", keys.iter()), Some("ports"));
        assert_eq!(did_you_mean("banana", keys.iter()), None);
    }
}
