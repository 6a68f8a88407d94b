//! The template functions: Go's builtins (`not len index slice print printf println eq ne lt
//! le gt ge html js urlquery`; `and`/`or` short-circuit in `exec`) and docker/cli's
//! (`json split join title lower upper pad truncate`, from `templates/templates.go`), plus
//! the header variants docker/cli uses when it renders a table's header row, which return
//! the column name unchanged.

use serde_json::Value;

use super::exec::Val;
use super::gofmt::{self, Json};

/// Every function name a template may call.
pub(super) const NAMES: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "html", "js", "urlquery", "json", "split", "join", "title", "lower", "upper",
    "pad", "truncate",
];

/// Why a call failed, in the three shapes Go's executor reports.
#[derive(Debug)]
pub(super) enum FnError {
    /// `wrong number of args for NAME: want W got G`.
    Arity { want: String, got: usize },
    /// `wrong type for value; expected T; got U` (or `invalid value; expected T`) at argument
    /// `index`.
    Type {
        index: usize,
        expected: &'static str,
        got: Option<String>,
    },
    /// `error calling NAME: MESSAGE`.
    Call(String),
}

/// Checks the argument count of `name`. `explicit` is the number of arguments written in the
/// command; `total` adds the value piped in. Go counts them differently for variadic
/// functions, and so do we.
pub(super) fn check_arity(name: &str, explicit: usize, total: usize) -> Result<(), FnError> {
    let (fixed, variadic) = match name {
        "print" | "println" | "html" | "js" | "urlquery" => (0, true),
        "and" | "or" | "index" | "slice" | "printf" | "eq" => (1, true),
        "not" | "len" | "json" | "title" | "lower" | "upper" => (1, false),
        "pad" => (3, false),
        _ => (2, false),
    };
    if variadic && total < fixed {
        return Err(FnError::Arity {
            want: format!("at least {fixed}"),
            got: explicit,
        });
    }
    if !variadic && total != fixed {
        return Err(FnError::Arity {
            want: fixed.to_string(),
            got: total,
        });
    }
    Ok(())
}

/// Calls `name` on evaluated arguments. `header` selects docker/cli's header functions.
pub(super) fn call(name: &str, header: bool, args: &[Val]) -> Result<Val, FnError> {
    let text = |s: String| Ok(Val::Json(Value::String(s)));
    if header {
        match name {
            "json" | "split" | "join" | "title" | "lower" | "upper" => {
                return text(string(args, 0)?.to_string());
            }
            "truncate" => {
                int(args, 1)?;
                return text(string(args, 0)?.to_string());
            }
            _ => {}
        }
    }
    match name {
        "not" => Ok(Val::Json(Value::Bool(!args[0].truth()))),
        "len" => len(&args[0]),
        "index" => index(&args[0], &args[1..]),
        "slice" => slice(&args[0], &args[1..]),
        "print" => text(gofmt::sprint(&values(args))),
        "println" => text(gofmt::sprintln(&values(args))),
        "printf" => text(gofmt::sprintf(string(args, 0)?, &values(&args[1..]))),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => compare(name, args),
        "html" => text(html_escape(&joined(args))),
        "js" => text(js_escape(&joined(args))),
        "urlquery" => text(query_escape(&joined(args))),
        "json" => text(json(&args[0])),
        "split" => {
            let (s, sep) = (string(args, 0)?, string(args, 1)?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::String(p.to_string())).collect()
            };
            Ok(Val::Json(Value::Array(parts)))
        }
        "join" => {
            let sep = string(args, 1)?;
            text(join(&args[0], sep)?)
        }
        "title" => text(title(string(args, 0)?)),
        "lower" => text(string(args, 0)?.to_lowercase()),
        "upper" => text(string(args, 0)?.to_uppercase()),
        "pad" => {
            let s = string(args, 0)?;
            let (prefix, suffix) = (int(args, 1)?, int(args, 2)?);
            if s.is_empty() {
                return text(String::new());
            }
            // Go's strings.Repeat panics on a negative count; keep a huge one from taking
            // the memory.
            let count = |n: i64| match usize::try_from(n) {
                Ok(n) if n <= 1_000_000 => Ok(n),
                Ok(_) => Err(FnError::Call(
                    "strings: Repeat output length overflow".into(),
                )),
                Err(_) => Err(FnError::Call("strings: negative Repeat count".into())),
            };
            let (prefix, suffix) = (count(prefix)?, count(suffix)?);
            text(format!("{}{s}{}", " ".repeat(prefix), " ".repeat(suffix)))
        }
        "truncate" => {
            let s = string(args, 0)?;
            let length = usize::try_from(int(args, 1)?).unwrap_or(0);
            if s.len() < length {
                return text(s.to_string());
            }
            // Go slices bytes; keep whole characters.
            let mut end = length;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            text(s[..end].to_string())
        }
        other => Err(FnError::Call(format!(
            "{other:?} is not a defined function"
        ))),
    }
}

/// The JSON of a value as docker/cli's `json` function writes it. A formatter row is a Go
/// struct whose `MarshalJSON` builds a map: sorted keys, HTML escaped, without methods that
/// take arguments (`Label`).
pub(super) fn json(value: &Val) -> String {
    match value {
        Val::Row(row, _) => {
            let mut row = (**row).clone();
            if let Value::Object(map) = &mut row {
                map.shift_remove("Label");
            }
            Json {
                escape_html: true,
                sort_top_keys: true,
                indent: None,
            }
            .encode(&row)
        }
        other => Json::default().encode(&other.to_value()),
    }
}

fn values(args: &[Val]) -> Vec<Value> {
    args.iter().map(Val::to_value).collect()
}

fn string(args: &[Val], index: usize) -> Result<&str, FnError> {
    match &args[index] {
        Val::Json(Value::String(s)) => Ok(s),
        other => Err(type_error(index, "string", other)),
    }
}

fn int(args: &[Val], index: usize) -> Result<i64, FnError> {
    match &args[index] {
        Val::Json(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or(0)),
        other => Err(type_error(index, "int", other)),
    }
}

fn type_error(index: usize, expected: &'static str, got: &Val) -> FnError {
    FnError::Type {
        index,
        expected,
        got: match got {
            Val::Missing | Val::Json(Value::Null) => None,
            other => Some(other.go_type()),
        },
    }
}

/// The arguments of `html`, `js` and `urlquery`: one string as is, else `fmt.Sprint`.
fn joined(args: &[Val]) -> String {
    match args {
        [Val::Json(Value::String(s))] => s.clone(),
        _ => gofmt::sprint(&values(args)),
    }
}

fn len(item: &Val) -> Result<Val, FnError> {
    let n = match item {
        Val::Missing => return Err(FnError::Call("len of untyped nil".into())),
        // Go's nil slice or map, as a typed Docker struct holds it.
        Val::Json(Value::Null) => 0,
        Val::Json(Value::String(s)) => s.len(),
        Val::Json(Value::Array(a)) => a.len(),
        Val::Json(Value::Object(m)) => m.len(),
        Val::Header(m) => m.as_object().map_or(0, |m| m.len()),
        // `len` looks through the pointer of a row: `formatter.imageContext`.
        other => {
            let go_type = other.go_type();
            let go_type = go_type.trim_start_matches('*');
            return Err(FnError::Call(format!("len of type {go_type}")));
        }
    };
    Ok(Val::Json(Value::from(n)))
}

fn index(item: &Val, indexes: &[Val]) -> Result<Val, FnError> {
    let mut current = item.clone();
    for key in indexes {
        current = match (&current, key) {
            (Val::Missing, _) => return Err(FnError::Call("index of untyped nil".into())),
            // A JSON null is Go's nil map or slice: a nil `map[string]string` (labels) gives
            // "" for any key, a nil slice has no elements.
            (Val::Json(Value::Null), Val::Json(Value::String(_))) => {
                Val::Json(Value::String(String::new()))
            }
            (Val::Json(Value::Null), Val::Json(Value::Number(n))) => {
                return Err(FnError::Call(format!("index out of range: {n}")));
            }
            (Val::Json(Value::Null), _) => {
                return Err(FnError::Call("index of nil pointer".into()));
            }
            (Val::Json(Value::Array(items)), Val::Json(Value::Number(n))) => {
                let i = position(n, items.len())?;
                Val::Json(items[i].clone())
            }
            (Val::Json(Value::String(s)), Val::Json(Value::Number(n))) => {
                let i = position(n, s.len())?;
                Val::Json(Value::from(s.as_bytes()[i]))
            }
            (Val::Json(Value::Array(_) | Value::String(_)), other) => {
                return Err(FnError::Call(format!(
                    "cannot index slice/array with type {}",
                    other.go_type()
                )));
            }
            (Val::Json(Value::Object(map)), Val::Json(Value::String(k))) => match map.get(k) {
                Some(v) => Val::Json(v.clone()),
                None => zero_of_values(map),
            },
            (Val::Json(Value::Object(_)), other) => {
                return Err(FnError::Call(format!(
                    "value has type {}; should be string",
                    other.go_type()
                )));
            }
            (other, _) => {
                return Err(FnError::Call(format!(
                    "can't index item of type {}",
                    other.go_type()
                )));
            }
        };
    }
    Ok(current)
}

/// `index` of a missing key gives the zero value of the map's element type. Decoded JSON
/// has no element type, so it is read off the values: the typed maps scripts index (labels,
/// options) hold strings, so a missing label is `""`, as in Docker; otherwise no value.
fn zero_of_values(map: &serde_json::Map<String, Value>) -> Val {
    let all = |f: fn(&Value) -> bool| map.values().all(f);
    if all(Value::is_string) {
        Val::Json(Value::String(String::new()))
    } else if all(Value::is_boolean) {
        Val::Json(Value::Bool(false))
    } else if all(Value::is_i64) {
        Val::Json(Value::from(0))
    } else {
        Val::Missing
    }
}

fn position(n: &serde_json::Number, len: usize) -> Result<usize, FnError> {
    match n.as_i64() {
        Some(i) if i >= 0 && (i as usize) < len => Ok(i as usize),
        Some(i) => Err(FnError::Call(format!("index out of range: {i}"))),
        None => Err(FnError::Call(
            "cannot index slice/array with type float64".into(),
        )),
    }
}

fn slice(item: &Val, indexes: &[Val]) -> Result<Val, FnError> {
    let len = match item {
        Val::Missing | Val::Json(Value::Null) => {
            return Err(FnError::Call("slice of untyped nil".into()));
        }
        Val::Json(Value::String(s)) => s.len(),
        Val::Json(Value::Array(a)) => a.len(),
        other => {
            return Err(FnError::Call(format!(
                "can't slice item of type {}",
                other.go_type()
            )));
        }
    };
    if indexes.len() > 2 {
        return Err(FnError::Call("too many slice indexes: 3".into()));
    }
    let mut bounds = [0, len];
    for (i, index) in indexes.iter().enumerate() {
        bounds[i] = match index {
            Val::Json(Value::Number(n)) => match n.as_i64() {
                Some(v) if v >= 0 && (v as usize) <= len => v as usize,
                Some(v) => return Err(FnError::Call(format!("index out of range: {v}"))),
                None => return Err(FnError::Call("cannot index slice/array with nil".into())),
            },
            other => {
                return Err(FnError::Call(format!(
                    "cannot index slice/array with type {}",
                    other.go_type()
                )));
            }
        };
    }
    if bounds[0] > bounds[1] {
        return Err(FnError::Call(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        )));
    }
    Ok(Val::Json(match item {
        Val::Json(Value::String(s)) => match s.get(bounds[0]..bounds[1]) {
            Some(part) => Value::String(part.to_string()),
            None => {
                Value::String(String::from_utf8_lossy(&s.as_bytes()[bounds[0]..bounds[1]]).into())
            }
        },
        Val::Json(Value::Array(a)) => Value::Array(a[bounds[0]..bounds[1]].to_vec()),
        _ => Value::Null,
    }))
}

/// Go's comparable basic kinds.
#[derive(PartialEq)]
enum Basic<'a> {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
    Nil,
    Other,
}

fn basic(v: &Val) -> Basic<'_> {
    match v {
        Val::Missing | Val::Json(Value::Null) => Basic::Nil,
        Val::Json(Value::Bool(b)) => Basic::Bool(*b),
        Val::Json(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Basic::Int(i.into()),
            (None, Some(u), _) => Basic::Int(u.into()),
            (_, _, Some(f)) => Basic::Float(f),
            _ => Basic::Other,
        },
        Val::Json(Value::String(s)) => Basic::Str(s),
        _ => Basic::Other,
    }
}

fn compare(name: &str, args: &[Val]) -> Result<Val, FnError> {
    let incompatible = || FnError::Call("incompatible types for comparison".into());
    let invalid = || FnError::Call("invalid type for comparison".into());
    let first = basic(&args[0]);
    if name == "eq" || name == "ne" {
        if args.len() < 2 {
            return Err(FnError::Call("missing argument for comparison".into()));
        }
        let mut truth = false;
        for other in &args[1..] {
            let other = basic(other);
            truth = match (&first, &other) {
                (Basic::Other, _) | (_, Basic::Other) => return Err(invalid()),
                (Basic::Nil, Basic::Nil) => true,
                (Basic::Nil, _) | (_, Basic::Nil) => false,
                (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
                    return Err(incompatible());
                }
                (a, b) => a == b,
            };
            if truth {
                break;
            }
        }
        let truth = if name == "ne" { !truth } else { truth };
        return Ok(Val::Json(Value::Bool(truth)));
    }
    let ordering = match (&first, &basic(&args[1])) {
        (Basic::Int(a), Basic::Int(b)) => a.partial_cmp(b),
        (Basic::Float(a), Basic::Float(b)) => a.partial_cmp(b),
        (Basic::Str(a), Basic::Str(b)) => a.partial_cmp(b),
        (Basic::Bool(_) | Basic::Nil | Basic::Other, _)
        | (_, Basic::Bool(_) | Basic::Nil | Basic::Other) => return Err(invalid()),
        _ => return Err(incompatible()),
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    let truth = matches!(
        (name, ordering),
        ("lt", Some(Less))
            | ("le", Some(Less | Equal))
            | ("gt", Some(Greater))
            | ("ge", Some(Greater | Equal))
    );
    Ok(Val::Json(Value::Bool(truth)))
}

/// docker/cli's `join`: strings joined, other elements printed with `%v`, a map's values
/// sorted, nothing for nil, an error for anything else.
fn join(elems: &Val, sep: &str) -> Result<String, FnError> {
    match elems {
        Val::Missing | Val::Json(Value::Null) => Ok(String::new()),
        Val::Json(Value::Array(items)) => Ok(items
            .iter()
            .map(gofmt::sprint_value)
            .collect::<Vec<_>>()
            .join(sep)),
        Val::Json(Value::Object(map)) => {
            let mut parts: Vec<String> = map.values().map(gofmt::sprint_value).collect();
            parts.sort();
            Ok(parts.join(sep))
        }
        other => Err(FnError::Call(format!(
            "expected slice, got {}",
            other.go_type()
        ))),
    }
}

/// Go's `strings.Title`: the first letter of each word in title case.
fn title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' | '`' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) < 0x20 || c.is_control() => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(value: Value) -> Val {
        Val::Json(value)
    }

    #[test]
    fn docker_functions() {
        let r = |name: &str, args: &[Val]| match call(name, false, args) {
            Ok(val) => val.to_value(),
            Err(e) => json!(format!("{e:?}")),
        };
        assert_eq!(
            r("join", &[v(json!(["a", 1, null])), v(json!(","))]),
            json!("a,1,<nil>")
        );
        assert_eq!(
            r("join", &[v(json!({"x": "b", "y": "a"})), v(json!(" "))]),
            json!("a b")
        );
        assert_eq!(
            r("join", &[v(json!("s")), v(json!(","))]),
            json!("Call(\"expected slice, got string\")")
        );
        assert_eq!(
            r("split", &[v(json!("a:b")), v(json!(":"))]),
            json!(["a", "b"])
        );
        assert_eq!(r("split", &[v(json!("")), v(json!(":"))]), json!([""]));
        assert_eq!(
            r("title", &[v(json!("hello wORLD foo_bar x-y"))]),
            json!("Hello WORLD Foo_bar X-Y")
        );
        assert_eq!(
            r("pad", &[v(json!("x")), v(json!(2)), v(json!(1))]),
            json!("  x ")
        );
        assert_eq!(
            r("pad", &[v(json!("")), v(json!(2)), v(json!(1))]),
            json!("")
        );
        assert_eq!(
            r("truncate", &[v(json!("abcdef")), v(json!(3))]),
            json!("abc")
        );
        assert_eq!(
            r("json", &[v(json!({"a": "<b>"}))]),
            json!("{\"a\":\"<b>\"}")
        );
        assert_eq!(r("json", &[Val::Missing]), json!("null"));
        // Header variants keep the column name.
        let h = |name: &str, args: &[Val]| call(name, true, args).map(|v| v.to_value()).ok();
        assert_eq!(h("upper", &[v(json!("NAMES"))]), Some(json!("NAMES")));
        assert_eq!(
            h("join", &[v(json!("NAMES")), v(json!(","))]),
            Some(json!("NAMES"))
        );
    }

    #[test]
    fn builtins() {
        let r = |name: &str, args: &[Val]| match call(name, false, args) {
            Ok(val) => val.to_value(),
            Err(e) => json!(format!("{e:?}")),
        };
        assert_eq!(
            r("index", &[v(json!({"a": "1"})), v(json!("b"))]),
            json!("")
        );
        assert_eq!(
            r("index", &[v(json!([1, [2, 3]])), v(json!(1)), v(json!(0))]),
            json!(2)
        );
        assert_eq!(
            r("index", &[v(json!([1])), v(json!(5))]),
            json!("Call(\"index out of range: 5\")")
        );
        assert_eq!(r("len", &[v(json!("héllo"))]), json!(6));
        assert_eq!(
            r("slice", &[v(json!("abcdef")), v(json!(1)), v(json!(3))]),
            json!("bc")
        );
        assert_eq!(
            r("eq", &[v(json!("a")), v(json!("b")), v(json!("a"))]),
            json!(true)
        );
        assert_eq!(r("ne", &[v(json!(1)), v(json!(2))]), json!(true));
        assert_eq!(
            r("eq", &[v(json!("1")), v(json!(1))]),
            json!("Call(\"incompatible types for comparison\")")
        );
        assert_eq!(r("lt", &[v(json!(1)), v(json!(2))]), json!(true));
        assert_eq!(r("ge", &[v(json!("b")), v(json!("a"))]), json!(true));
        assert_eq!(
            r("html", &[v(json!("<a href='x'>"))]),
            json!("&lt;a href=&#39;x&#39;&gt;")
        );
        assert_eq!(r("urlquery", &[v(json!("a b&c"))]), json!("a+b%26c"));
        assert_eq!(
            r("js", &[v(json!("it's <x>"))]),
            json!("it\\'s \\u003Cx\\u003E")
        );
        assert_eq!(r("print", &[v(json!(1)), v(json!(2))]), json!("1 2"));
        assert_eq!(
            r("printf", &[v(json!("%s-%d")), v(json!("a")), v(json!(3))]),
            json!("a-3")
        );
    }

    #[test]
    fn arity_is_checked_as_go_counts_it() {
        let e = |name, explicit, total| match check_arity(name, explicit, total) {
            Err(FnError::Arity { want, got }) => format!("want {want} got {got}"),
            _ => "ok".into(),
        };
        assert_eq!(e("upper", 2, 2), "want 1 got 2");
        assert_eq!(e("upper", 0, 1), "ok");
        assert_eq!(e("index", 0, 0), "want at least 1 got 0");
        assert_eq!(e("join", 1, 1), "want 2 got 1");
        assert_eq!(e("print", 0, 0), "ok");
    }
}
