//! `.env` and `--env-file` files, read as Compose v2 reads them.
//!
//! - Blank lines and lines starting with `#` are skipped; `export ` before a key is optional.
//! - `KEY=VALUE` or `KEY: VALUE`; a bare `KEY` takes its value from the environment, if set.
//! - Unquoted values end at the line's end or at ` #`, are trimmed, and `$VAR`s expand.
//! - `'...'` is literal; `"..."` understands `\n`, `\t`, `\r`, `\\`, `\"`, `\$` and expands
//!   variables. Both may span lines; text after the closing quote is ignored.
//! - Variables expand from the environment first, then from keys defined earlier.

use indexmap::IndexMap;

use crate::diagnostic::{FileId, Loc, Position, Span};
use crate::error::Problem;
use crate::interpolate::{TemplateError, substitute};

/// Parses `text`. `lookup` is the environment seen by expansion and bare keys.
pub fn parse(
    text: &str,
    file: FileId,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, Problem> {
    let mut out: IndexMap<String, String> = IndexMap::new();
    let chars: Vec<char> = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .chars()
        .collect();
    let mut i = 0;
    let mut line = 1u32;
    let loc_at = |line: u32| Loc {
        file,
        span: Span::new(Position::new(line, 1), Position::new(line, u32::MAX)),
    };
    while i < chars.len() {
        // Skip whitespace and comment lines.
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start_line = line;
        let line_end = chars[i..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |p| i + p);
        let mut stmt: String = chars[i..line_end].iter().collect();
        if let Some(rest) = stmt.strip_prefix("export ") {
            stmt = rest.trim_start().to_string();
            i = line_end - stmt.chars().count();
        }
        let sep = stmt.find(['=', ':']);
        let Some(sep) = sep else {
            // A bare key inherits its value from the environment.
            let key = stmt.trim().to_string();
            check_key(&key).map_err(|m| Problem::new(loc_at(start_line), "", m))?;
            if let Some(v) = lookup(&key) {
                out.insert(key, v);
            }
            i = line_end;
            continue;
        };
        let key = stmt[..sep].trim().to_string();
        check_key(&key).map_err(|m| Problem::new(loc_at(start_line), "", m))?;
        // Position of the value's first character in `chars`.
        i += stmt[..=sep].chars().count();
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        let expand = |raw: &str, out: &IndexMap<String, String>| -> Result<String, Problem> {
            let look = |n: &str| lookup(n).or_else(|| out.get(n).cloned());
            substitute(raw, &look, &mut Vec::new()).map_err(|e| {
                let msg = match e {
                    TemplateError::Invalid => format!("invalid interpolation format in {key}"),
                    TemplateError::Required { name, message } => {
                        format!("required variable {name} is missing a value: {message}")
                    }
                };
                Problem::new(loc_at(start_line), "", msg)
            })
        };
        let value = match chars.get(i) {
            Some(&q) if q == '\'' || q == '"' => {
                let mut j = i + 1;
                let mut raw = String::new();
                loop {
                    let Some(&c) = chars.get(j) else {
                        return Err(Problem::new(
                            loc_at(start_line),
                            "",
                            format!("unterminated quoted value for {key}"),
                        ));
                    };
                    if c == '\\' && q == '"' && j + 1 < chars.len() {
                        raw.push(c);
                        raw.push(chars[j + 1]);
                        j += 2;
                        continue;
                    }
                    if c == q {
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    raw.push(c);
                    j += 1;
                }
                // Skip the rest of the closing quote's line (a comment, usually).
                i = chars[j..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| j + p);
                if q == '\'' {
                    raw
                } else {
                    let (unescaped, had_dollar_escape) = unescape(&raw);
                    if had_dollar_escape {
                        // `\$` is a literal dollar: protect it from expansion.
                        expand(&unescaped.replace('\u{0}', "$$"), &out)?
                    } else {
                        expand(&unescaped, &out)?
                    }
                }
            }
            _ => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let mut raw: String = chars[i..end].iter().collect();
                if let Some(p) = find_comment(&raw) {
                    raw.truncate(p);
                }
                i = end;
                expand(raw.trim(), &out)?
            }
        };
        out.insert(key, value);
    }
    Ok(out)
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing variable name".into());
    }
    match key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')))
    {
        Some(c) => Err(format!(
            "unexpected character {c:?} in variable name {key:?}"
        )),
        None => Ok(()),
    }
}

/// ` #` (whitespace then `#`) starts a comment in an unquoted value.
fn find_comment(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    (1..bytes.len()).find(|&i| bytes[i] == b'#' && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t'))
}

/// Double-quote escapes. `\$` becomes a NUL placeholder that the caller turns into `$$`.
fn unescape(raw: &str) -> (String, bool) {
    let mut out = String::with_capacity(raw.len());
    let mut dollar = false;
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('$') => {
                dollar = true;
                out.push('\u{0}');
            }
            Some(other @ ('\\' | '"')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    (out, dollar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Vec<(String, String)> {
        let lookup = |n: &str| (n == "HOME").then(|| "/root".to_string());
        parse(text, FileId(0), &lookup)
            .unwrap()
            .into_iter()
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn basic_forms() {
        let text = "# comment\n\nA=1\nexport B=two\nC: three\n  D = spaced value  \nE=\n";
        assert_eq!(
            env(text),
            pairs(&[
                ("A", "1"),
                ("B", "two"),
                ("C", "three"),
                ("D", "spaced value"),
                ("E", "")
            ])
        );
    }

    #[test]
    fn comments_and_quotes() {
        let text =
            "A=value # comment\nB=a#b\nC='lit $HOME # x'\nD=\"q $HOME\\n\" # c\nE=\"\\$HOME\"\n";
        assert_eq!(
            env(text),
            pairs(&[
                ("A", "value"),
                ("B", "a#b"),
                ("C", "lit $HOME # x"),
                ("D", "q /root\n"),
                ("E", "$HOME"),
            ])
        );
    }

    #[test]
    fn multiline_and_expansion() {
        let text = "A='one\ntwo'\nB=${HOME}/x\nC=$B/y\nD=${MISSING:-def}\nHOME\nNOPE\n";
        assert_eq!(
            env(text),
            pairs(&[
                ("A", "one\ntwo"),
                ("B", "/root/x"),
                ("C", "/root/x/y"),
                ("D", "def"),
                ("HOME", "/root"),
            ])
        );
    }

    #[test]
    fn errors_are_located() {
        let e = parse("A=1\nB='open\n", FileId(0), &|_| None).unwrap_err();
        assert_eq!(e.loc.span.start.line, 2);
        let e = parse("A=1\n\nB C=2\n", FileId(0), &|_| None).unwrap_err();
        assert_eq!(e.loc.span.start.line, 3);
        assert!(e.message.contains("unexpected character"), "{}", e.message);
    }
}
