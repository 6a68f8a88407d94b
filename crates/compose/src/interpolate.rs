//! Variable interpolation as Compose v2 does it: `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`,
//! `${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`, nesting inside the operand, `$$` for `$`.
//!
//! Names are `[_a-zA-Z][_a-zA-Z0-9]*`. Any other `$` (a lone `$`, `$1`, `${}`, `${A!}`, an
//! unclosed `${`) is an error, as in Compose. An unset variable without an operator becomes ""
//! and a warning. Operands are interpolated only when they are used.

use crate::error::Problem;
use crate::yaml::{Kind, Node, Value};

/// Why a template could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A malformed `$` expression.
    Invalid,
    /// `${NAME:?message}` or `${NAME?message}` with the variable missing (or empty for `:?`).
    Required { name: String, message: String },
}

/// Substitutes the variables of `template`. `lookup` gives a variable's value or `None` when it
/// is unset; the names of unset variables used without an operator are pushed to `unset`.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if after.starts_with(is_name_start) {
            let len = name_len(after);
            let name = &after[..len];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => unset.push(name.to_string()),
            }
            rest = &after[len..];
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = closing_brace(inner).ok_or(TemplateError::Invalid)?;
            out.push_str(&braced(&inner[..close], lookup, unset)?);
            rest = &inner[close + 1..];
        } else {
            return Err(TemplateError::Invalid);
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(s.len())
}

/// The index of the `}` that closes a `${` whose content starts `s`, counting nested `${`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The content of one `${...}`.
fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, TemplateError> {
    if !inner.starts_with(is_name_start) {
        return Err(TemplateError::Invalid);
    }
    let len = name_len(inner);
    let name = &inner[..len];
    let op = &inner[len..];
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, op),
    };
    if op.is_empty() {
        if colon {
            return Err(TemplateError::Invalid);
        }
        return Ok(match value {
            Some(v) => v,
            None => {
                unset.push(name.to_string());
                String::new()
            }
        });
    }
    // The operator is one character; a multi-byte one is simply not an operator.
    let mut rest = op.chars();
    let symbol = rest.next().unwrap_or_default();
    let operand = rest.as_str();
    // With a colon, an empty value counts as unset.
    let present = match &value {
        Some(v) => !colon || !v.is_empty(),
        None => false,
    };
    match symbol {
        '-' => match value {
            Some(v) if present => Ok(v),
            _ => substitute(operand, lookup, unset),
        },
        '?' => match value {
            Some(v) if present => Ok(v),
            _ => Err(TemplateError::Required {
                name: name.to_string(),
                message: substitute(operand, lookup, unset)?,
            }),
        },
        '+' => {
            if present {
                substitute(operand, lookup, unset)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(TemplateError::Invalid),
    }
}

/// Interpolates every string value under `node` (never keys), in place. `path` names the node
/// for messages. Unset variables become warnings in `problems`; failures become errors there.
pub(crate) fn interpolate_node(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match &mut node.value {
        Value::Scalar(s) => {
            if s.kind != Kind::Str || !s.text.contains('$') {
                return;
            }
            let mut unset = Vec::new();
            match substitute(&s.text, lookup, &mut unset) {
                Ok(v) => s.text = v,
                Err(TemplateError::Invalid) => problems.push(
                    Problem::new(
                        node.loc,
                        path,
                        format!("invalid interpolation format: {:?}", s.text),
                    )
                    .with_help("escape a literal `$` as `$$`"),
                ),
                Err(TemplateError::Required { name, message }) => problems.push(Problem::new(
                    node.loc,
                    path,
                    format!("required variable {name} is missing a value: {message}"),
                )),
            }
            for name in unset {
                problems.push(Problem::warning(
                    node.loc,
                    path,
                    format!("the {name:?} variable is not set, defaulting to a blank string"),
                ));
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_node(item, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        Value::Map(map) => {
            for e in &mut map.entries {
                let child = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                interpolate_node(&mut e.value, &child, lookup, problems);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(template: &str) -> Result<(String, Vec<String>), TemplateError> {
        let env: HashMap<&str, &str> = [("SET", "value"), ("EMPTY", ""), ("PORT", "8080")].into();
        let lookup = |n: &str| env.get(n).map(|v| v.to_string());
        let mut unset = Vec::new();
        substitute(template, &lookup, &mut unset).map(|s| (s, unset))
    }

    fn ok(template: &str) -> String {
        run(template).unwrap().0
    }

    #[test]
    fn plain_and_braced_names() {
        assert_eq!(ok("$SET"), "value");
        assert_eq!(ok("${SET}"), "value");
        assert_eq!(ok("a${SET}b"), "avalueb");
        assert_eq!(ok("$SET-x"), "value-x");
        assert_eq!(ok("$SET.x"), "value.x");
        assert_eq!(ok("no dollars"), "no dollars");
        assert_eq!(ok("${PORT}:80"), "8080:80");
    }

    #[test]
    fn unset_becomes_blank_with_a_warning() {
        assert_eq!(
            run("x${NOPE}y").unwrap(),
            ("xy".into(), vec!["NOPE".into()])
        );
        assert_eq!(run("$NOPE").unwrap(), ("".into(), vec!["NOPE".into()]));
        assert_eq!(run("${EMPTY}").unwrap(), ("".into(), vec![]));
    }

    #[test]
    fn default_operators() {
        assert_eq!(ok("${NOPE:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${SET:-d}"), "value");
        assert_eq!(ok("${NOPE-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${SET-d}"), "value");
        assert_eq!(ok("${NOPE:-}"), "");
        assert_eq!(ok("${NOPE:-a b:c}"), "a b:c");
    }

    #[test]
    fn alternative_operators() {
        assert_eq!(ok("${SET:+alt}"), "alt");
        assert_eq!(ok("${EMPTY:+alt}"), "");
        assert_eq!(ok("${NOPE:+alt}"), "");
        assert_eq!(ok("${SET+alt}"), "alt");
        assert_eq!(ok("${EMPTY+alt}"), "alt");
        assert_eq!(ok("${NOPE+alt}"), "");
    }

    #[test]
    fn required_operators() {
        let req = |t| run(t).unwrap_err();
        assert_eq!(
            req("${NOPE:?need it}"),
            TemplateError::Required {
                name: "NOPE".into(),
                message: "need it".into()
            }
        );
        assert!(matches!(req("${EMPTY:?e}"), TemplateError::Required { .. }));
        assert_eq!(ok("${EMPTY?e}"), "");
        assert!(matches!(req("${NOPE?e}"), TemplateError::Required { .. }));
        assert_eq!(ok("${SET:?e}"), "value");
        assert_eq!(ok("${SET?e}"), "value");
        assert_eq!(
            req("${NOPE:?port ${PORT} is bad}"),
            TemplateError::Required {
                name: "NOPE".into(),
                message: "port 8080 is bad".into()
            }
        );
    }

    #[test]
    fn nesting() {
        assert_eq!(ok("${NOPE:-${SET}}"), "value");
        assert_eq!(ok("${NOPE:-${ALSO:-deep}}"), "deep");
        assert_eq!(ok("${NOPE:-${ALSO:-deep}}-tail"), "deep-tail");
        assert_eq!(ok("${SET:+[${PORT}]}"), "[8080]");
        // An operand that is not used is not interpolated, so its variables do not warn.
        assert_eq!(run("${SET:-$UNUSED}").unwrap(), ("value".into(), vec![]));
    }

    #[test]
    fn escapes() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("$$SET"), "$SET");
        assert_eq!(ok("a$$$SET"), "a$value");
        assert_eq!(ok("$${SET}"), "${SET}");
    }

    #[test]
    fn malformed_expressions_fail() {
        for t in [
            "$", "a $ b", "$1", "${}", "${SET", "${1A}", "${SET!x}", "${SET:}", "${SET:x}",
        ] {
            assert_eq!(run(t), Err(TemplateError::Invalid), "{t}");
        }
    }
}
