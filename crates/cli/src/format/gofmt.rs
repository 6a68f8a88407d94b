//! How Go writes values, for the JSON data a template sees: `fmt`'s `%v` (`[a b]`,
//! `map[k:v]`, `1e+06`), `Sprint`/`Sprintln`/`Sprintf`, `strconv.Quote`, and
//! `encoding/json`'s encoder (HTML escaping, float forms, `json.Indent`'s layout).

use serde_json::{Number, Value};

/// Go's `%v` of a value decoded from JSON into `interface{}`.
pub(super) fn sprint_value(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_v(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // fmt prints maps sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                write_value(out, &map[key]);
            }
            out.push(']');
        }
    }
}

fn number_v(n: &Number) -> String {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (None, Some(u), _) => u.to_string(),
        (_, _, Some(f)) => float_v(f),
        _ => n.to_string(),
    }
}

/// The shortest decimal digits of `f` and its decimal exponent: `f = 0.d1d2... * 10^point`.
fn shortest_digits(f: f64) -> (bool, String, i32) {
    let text = format!("{:e}", f.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = if digits.chars().all(|c| c == '0') {
        "0".to_string()
    } else {
        digits
    };
    (f.is_sign_negative() && f != 0.0, digits, exp + 1)
}

/// `d.ddde±XX`, Go's `%e` layout with at least two exponent digits.
fn exp_form(negative: bool, digits: &str, point: i32) -> String {
    let exp = if digits == "0" { 0 } else { point - 1 };
    let mut out = String::from(if negative { "-" } else { "" });
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push_str(&format!(
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    ));
    out
}

/// `ddd.ddd` without an exponent.
fn fixed_form(negative: bool, digits: &str, point: i32) -> String {
    let mut out = String::from(if negative { "-" } else { "" });
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// Go's `%v` for a float64: `%g` with the shortest digits, in exponent form when the exponent
/// is below -4 or at least 6 (fmt's threshold for the shortest precision).
pub(super) fn float_v(f: f64) -> String {
    let (negative, digits, point) = shortest_digits(f);
    let exp = point - 1;
    if digits != "0" && !(-4..6).contains(&exp) {
        exp_form(negative, &digits, point)
    } else {
        fixed_form(negative, &digits, point)
    }
}

/// `encoding/json`'s float64: fixed notation unless below 1e-6 or at least 1e21, where the
/// exponent loses its leading zero (`1e-7`, `1e+21`).
fn float_json(f: f64) -> String {
    let (negative, digits, point) = shortest_digits(f);
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = exp_form(negative, &digits, point);
        match text.split_once('e') {
            Some((m, e)) => {
                let (sign, n) = e.split_at(1);
                format!("{m}e{sign}{}", n.trim_start_matches('0'))
            }
            None => text,
        }
    } else {
        fixed_form(negative, &digits, point)
    }
}

/// Options of the JSON encoder.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Json {
    /// `<`, `>`, `&` as `\u003c` ... (what `json.Marshal` does; Docker's `json` function
    /// turns it off except inside its formatter rows' own `MarshalJSON`).
    pub escape_html: bool,
    /// Sort the keys of the top-level object (a Go map rather than a struct).
    pub sort_top_keys: bool,
    /// `json.Indent` with this many spaces.
    pub indent: Option<usize>,
}

impl Json {
    pub fn encode(self, value: &Value) -> String {
        let mut out = String::new();
        self.write(&mut out, value, 0, true);
        out
    }

    fn write(self, out: &mut String, value: &Value, depth: usize, top: bool) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (None, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&float_json(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.string(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.newline(out, depth + 1);
                    self.write(out, item, depth + 1, false);
                }
                if !items.is_empty() {
                    self.newline(out, depth);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if top && self.sort_top_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.newline(out, depth + 1);
                    self.string(out, key);
                    out.push(':');
                    if self.indent.is_some() {
                        out.push(' ');
                    }
                    self.write(out, item, depth + 1, false);
                }
                if !entries.is_empty() {
                    self.newline(out, depth);
                }
                out.push('}');
            }
        }
    }

    fn newline(self, out: &mut String, depth: usize) {
        if let Some(width) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', width * depth));
        }
    }

    fn string(self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '<' | '>' | '&' if self.escape_html => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Go's `strconv.Quote`.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    if (c as u32) < 0x80 {
                        out.push_str(&format!("\\x{:02x}", c as u32));
                    } else {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    }
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprint`: operands joined, with a space between two that are both not strings.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 && !arg.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        write_value(&mut out, arg);
    }
    out
}

/// Go's `fmt.Sprintln`: operands joined by spaces, then a newline.
pub(super) fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(sprint_value).collect();
    parts.join(" ") + "\n"
}

/// Go's type name of a JSON-decoded value, for `%!d(string=x)` and type errors.
pub(super) fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `fmt.Sprintf` for the verbs scripts use: `%v %s %q %d %x %X %o %b %c %t %f %e %g %%`,
/// with flags `-+# 0`, width and precision.
pub(super) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = digits(&mut chars);
        if spec.width.is_some_and(|w| w > MAX_WIDTH) {
            spec.width = None;
            out.push_str("%!(BADWIDTH)");
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(digits(&mut chars).unwrap_or(0));
            if spec.precision.is_some_and(|p| p > MAX_WIDTH) {
                spec.precision = None;
                out.push_str("%!(BADPREC)");
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let text = match format_one(verb, &spec, arg) {
            Some(text) => text,
            None if arg.is_null() => format!("%!{verb}(<nil>)"),
            None => format!("%!{verb}({}={})", go_type(arg), sprint_value(arg)),
        };
        out.push_str(&spec.pad(text, arg.is_number()));
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|a| {
                if a.is_null() {
                    "<nil>".to_string()
                } else {
                    format!("{}={}", go_type(a), sprint_value(a))
                }
            })
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    fn pad(&self, text: String, numeric: bool) -> String {
        let Some(width) = self.width else {
            return text;
        };
        let len = text.chars().count();
        if len >= width {
            return text;
        }
        let fill = width - len;
        if self.minus {
            text + &" ".repeat(fill)
        } else if self.zero && numeric {
            let (sign, rest) = match text.strip_prefix(['-', '+']) {
                Some(rest) => (&text[..1], rest),
                None => ("", text.as_str()),
            };
            format!("{sign}{}{rest}", "0".repeat(fill))
        } else {
            " ".repeat(fill) + &text
        }
    }

    fn sign(&self, negative: bool) -> &'static str {
        match (negative, self.plus, self.space) {
            (true, _, _) => "-",
            (false, true, _) => "+",
            (false, false, true) => " ",
            _ => "",
        }
    }
}

/// A width or precision; fmt refuses those above a million.
fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut value: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        value = Some(
            value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize),
        );
        chars.next();
    }
    value
}

const MAX_WIDTH: usize = 1_000_000;

/// One verb applied to one operand; `None` for a verb that does not fit the operand.
fn format_one(verb: char, spec: &Spec, arg: &Value) -> Option<String> {
    let int = arg
        .as_i64()
        .map(i128::from)
        .or(arg.as_u64().map(i128::from));
    let float = arg.as_f64().filter(|_| arg.is_f64());
    Some(match (verb, arg) {
        ('v', Value::Number(_)) if int.is_some() => {
            let i = int?;
            format!("{}{}", spec.sign(i < 0), i.abs())
        }
        ('v', Value::Number(_)) => {
            let f = float?;
            let text = float_v(f.abs());
            format!("{}{text}", spec.sign(f < 0.0))
        }
        ('v', _) => truncate_chars(sprint_value(arg), spec.precision),
        ('s', Value::String(s)) => truncate_chars(s.clone(), spec.precision),
        ('s', Value::Array(_) | Value::Object(_)) => sprint_value(arg),
        ('q', Value::String(s)) => quote(s),
        ('q', Value::Number(_)) => {
            let c = char::from_u32(u32::try_from(int?).ok()?)?;
            format!("'{c}'")
        }
        ('t', Value::Bool(b)) => b.to_string(),
        ('d', _) => {
            let i = int?;
            format!("{}{}", spec.sign(i < 0), i.abs())
        }
        ('c', _) => char::from_u32(u32::try_from(int?).ok()?)?.to_string(),
        ('x' | 'X' | 'o' | 'b', Value::Number(_)) => {
            let i = int?;
            let digits = match verb {
                'x' => format!("{:x}", i.abs()),
                'X' => format!("{:X}", i.abs()),
                'o' => format!("{:o}", i.abs()),
                _ => format!("{:b}", i.abs()),
            };
            let prefix = match (spec.sharp, verb) {
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, 'o') => "0",
                _ => "",
            };
            format!("{}{prefix}{digits}", spec.sign(i < 0))
        }
        ('x' | 'X', Value::String(s)) => {
            let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            if verb == 'X' { hex.to_uppercase() } else { hex }
        }
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Number(_)) => {
            let f = float?;
            let precision = spec.precision;
            let body = match verb {
                'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), f.abs()),
                'e' | 'E' => {
                    let text = format!("{:.*e}", precision.unwrap_or(6), f.abs());
                    let (m, e) = text.split_once('e')?;
                    let e: i32 = e.parse().ok()?;
                    let text = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                    if verb == 'E' {
                        text.to_uppercase()
                    } else {
                        text
                    }
                }
                _ => float_v(f.abs()),
            };
            format!("{}{body}", spec.sign(f < 0.0))
        }
        _ => return None,
    })
}

fn truncate_chars(text: String, precision: Option<usize>) -> String {
    match precision {
        Some(p) => text.chars().take(p).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_as_fmt_v() {
        assert_eq!(
            sprint_value(&json!(["PATH=/bin", "A=b c"])),
            "[PATH=/bin A=b c]"
        );
        assert_eq!(
            sprint_value(&json!({"b": 1, "a": null, "c": [true]})),
            "map[a:<nil> b:1 c:[true]]"
        );
        assert_eq!(float_v(1e6), "1e+06");
        assert_eq!(float_v(123456.0), "123456");
        assert_eq!(float_v(1234567.0), "1.234567e+06");
        assert_eq!(float_v(0.00001), "1e-05");
        assert_eq!(float_v(0.5), "0.5");
        assert_eq!(float_v(-2.5), "-2.5");
        assert_eq!(float_v(0.0), "0");
    }

    #[test]
    fn json_follows_encoding_json() {
        let value = json!({"b": "<none>", "a": [1.5, 1e21, 1e-7, 100.0], "c": {}, "d": []});
        let plain = Json::default();
        assert_eq!(
            plain.encode(&value),
            r#"{"b":"<none>","a":[1.5,1e+21,1e-7,100],"c":{},"d":[]}"#
        );
        let row = Json {
            escape_html: true,
            sort_top_keys: true,
            indent: None,
        };
        assert_eq!(
            row.encode(&value),
            r#"{"a":[1.5,1e+21,1e-7,100],"b":"\u003cnone\u003e","c":{},"d":[]}"#
        );
        let indented = Json {
            indent: Some(4),
            ..Json::default()
        };
        assert_eq!(
            indented.encode(&json!([{"Id": "x", "Tags": ["a"], "E": {}}])),
            "[\n    {\n        \"Id\": \"x\",\n        \"Tags\": [\n            \"a\"\n        ],\n        \"E\": {}\n    }\n]"
        );
        assert_eq!(
            plain.encode(&json!("a\u{1}\u{2028}\t")),
            r#""a\u0001\u2028\t""#
        );
    }

    #[test]
    fn printf_verbs() {
        let args = [json!("web"), json!(42), json!(2.5)];
        assert_eq!(sprintf("%s=%d (%.1f)", &args), "web=42 (2.5)");
        assert_eq!(
            sprintf(
                "%-6s|%5d|%05d",
                &args[..2]
                    .iter()
                    .chain([&json!(-7)])
                    .cloned()
                    .collect::<Vec<_>>()
            ),
            "web   |   42|-0007"
        );
        assert_eq!(
            sprintf("%q %v %x", &[json!("a\"b"), json!(null), json!(255)]),
            "\"a\\\"b\" <nil> ff"
        );
        assert_eq!(sprintf("%d", &[json!("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%s %s", &[json!("a")]), "a %!s(MISSING)");
        assert_eq!(sprintf("%s", &[json!("a"), json!(1)]), "a%!(EXTRA int=1)");
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(
            sprintf("%99999999999999999999999d", &[json!(1)]),
            "%!(BADWIDTH)1"
        );
    }

    #[test]
    fn sprint_spaces_only_between_non_strings() {
        assert_eq!(sprint(&[json!("a"), json!("b")]), "ab");
        assert_eq!(sprint(&[json!(1), json!(2), json!("x"), json!(3)]), "1 2x3");
        assert_eq!(sprintln(&[json!("a"), json!(1)]), "a 1\n");
    }
}
