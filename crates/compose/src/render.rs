//! `docker compose config` output: the resolved model as YAML or JSON, and the `--services` and
//! `--volumes` lists.
//!
//! The YAML emitter writes what go-yaml v3 (Compose's encoder, indent 2) writes for the same
//! tree: block style, lists indented under their key, strings plain unless they would read back
//! as another type or need quoting (then double-quoted), multi-line strings as literal blocks.
//! As in Compose, every `$` in a value is printed as `$$`, so the output loads back unchanged.
//!
//! Known differences from Compose v2 (compare parsed documents, not bytes): key order follows
//! our field order, which matches compose-go's for the keys kiln supports; `extra_hosts` prints
//! as `HOST=IP` strings; `env_file` is folded into `environment` and not printed.

use serde_json::Value;

use crate::model::Project;
use crate::yaml::{Kind, resolve_plain};

impl Project {
    /// The model as `docker compose config` prints it (YAML).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        emit_map_body(&escaped(self), 0, &mut out);
        out
    }

    /// The model as `docker compose config --format json` prints it.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&escaped(self)).unwrap_or_default();
        s.push('\n');
        s
    }

    /// `config --services`: the enabled services, one per line, in start order.
    pub fn service_names(&self) -> Vec<String> {
        self.start_order()
    }

    /// `config --volumes`: the top-level volume keys.
    pub fn volume_names(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }
}

/// The project as JSON with `$` doubled in every string value.
fn escaped(p: &Project) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(m) => m.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    walk(&mut v);
    v
}

fn pad(indent: usize) -> String {
    " ".repeat(indent)
}

/// The entries of a mapping, each on its own line at `indent`.
fn emit_map_body(v: &Value, indent: usize, out: &mut String) {
    let Value::Object(m) = v else { return };
    for (i, (k, val)) in m.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&pad(indent));
        }
        out.push_str(&scalar_text(k));
        out.push(':');
        emit_value_after_key(val, indent, out);
    }
}

/// A value after `key:` (or after `- `).
fn emit_value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Object(_) => {
            out.push('\n');
            emit_map_body(v, indent + 2, out);
        }
        Value::Array(items) => {
            out.push('\n');
            emit_seq(items, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_yaml(scalar, indent + 2));
            out.push('\n');
        }
    }
}

fn emit_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&pad(indent));
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map_body(item, indent + 2, out),
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_seq(a, indent + 2, out);
            }
            Value::Object(_) => out.push_str("{}\n"),
            Value::Array(_) => out.push_str("[]\n"),
            scalar => {
                out.push_str(&scalar_yaml(scalar, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn scalar_yaml(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_yaml(s, indent),
        _ => String::new(),
    }
}

fn scalar_text(s: &str) -> String {
    string_yaml(s, 0)
}

fn string_yaml(s: &str, indent: usize) -> String {
    if s.contains('\n') && literal_ok(s) {
        let (chomp, body) = match s.strip_suffix('\n') {
            Some(b) => ("|", b),
            None => ("|-", s),
        };
        let mut out = chomp.to_string();
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad(indent));
                out.push_str(line);
            }
        }
        return out;
    }
    if needs_quotes(s) {
        return serde_json::to_string(s).unwrap_or_default();
    }
    s.to_string()
}

/// A literal block keeps the text exactly when lines have no trailing blanks issues: no `\r`,
/// no control characters, no leading space on the first line, at most one final newline.
fn literal_ok(s: &str) -> bool {
    !s.starts_with(' ')
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.split('\n').any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || resolve_plain(s) != Kind::Str {
        return true;
    }
    // YAML 1.1 readers take these as booleans; go-yaml quotes them for them.
    if matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off"
    ) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !(first == '-' && s.len() > 1 && !s[1..].starts_with(' '))
    {
        return true;
    }
    if first == ' ' || s.ends_with(' ') || s.ends_with(':') {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.contains('\n') || s.contains('\t') {
        return true;
    }
    // Numbers with leading zeros or signs that YAML 1.1 reads as octal or sexagesimal.
    if s.starts_with('0') && s.len() > 1 && s.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return true;
    }
    s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_when_they_would_change_type() {
        assert_eq!(string_yaml("8080", 0), "\"8080\"");
        assert_eq!(string_yaml("true", 0), "\"true\"");
        assert_eq!(string_yaml("yes", 0), "\"yes\"");
        assert_eq!(string_yaml("", 0), "\"\"");
        assert_eq!(string_yaml("1.5", 0), "\"1.5\"");
        assert_eq!(string_yaml("nginx:latest", 0), "nginx:latest");
        assert_eq!(string_yaml("a: b", 0), "\"a: b\"");
        assert_eq!(string_yaml("*x", 0), "\"*x\"");
        assert_eq!(string_yaml("-c", 0), "-c");
        assert_eq!(string_yaml("- x", 0), "\"- x\"");
        assert_eq!(string_yaml("/bin/sh", 0), "/bin/sh");
        assert_eq!(string_yaml("0755", 0), "\"0755\"");
    }

    #[test]
    fn multiline_strings_are_literal_blocks() {
        assert_eq!(
            string_yaml("FROM x\nRUN y\n", 4),
            "|\n    FROM x\n    RUN y"
        );
        assert_eq!(string_yaml("a\nb", 2), "|-\n  a\n  b");
    }

    #[test]
    fn nested_structures() {
        let v = serde_json::json!({
            "services": {"web": {"command": ["a", "b"], "ports": [{"target": 80, "published": "8080"}], "empty": {}}},
        });
        let mut out = String::new();
        emit_map_body(&v, 0, &mut out);
        assert_eq!(
            out,
            "services:\n  web:\n    command:\n      - a\n      - b\n    ports:\n      - target: 80\n        published: \"8080\"\n    empty: {}\n"
        );
    }
}
