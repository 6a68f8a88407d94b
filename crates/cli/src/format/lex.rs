//! The lexer of the Go `text/template` subset: text, `{{ }}` actions with `{{-`/`-}}` trim
//! markers, comments, and the tokens inside actions.

/// One token with its byte offset in the template and its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: Kind,
    pub pos: usize,
    pub line: usize,
    /// The token's source text (for error messages and node printing).
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Ident,
    /// `.Name` (the text keeps the dot).
    Field,
    /// `$` or `$name`.
    Variable,
    Dot,
    Pipe,
    LeftParen,
    RightParen,
    /// A quoted or raw string; the token text is the source, `value` the unquoted string.
    Str(String),
    Char(i64),
    Number,
    Bool(bool),
    Nil,
    Keyword(Keyword),
    Declare,
    Assign,
    Comma,
    Eof,
    /// A lexing error; the text is the message.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Keyword {
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Define,
    Template,
    Block,
}

const SPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Splits `src` into tokens. Lexing stops at the first error, which is the last token.
pub(super) fn lex(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
    };
    lexer.run();
    lexer.tokens
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
}

impl Lexer<'_> {
    fn line_at(&self, pos: usize) -> usize {
        1 + self.src[..pos].matches('\n').count()
    }

    fn push(&mut self, kind: Kind, start: usize, end: usize) {
        let line = self.line_at(start);
        self.tokens.push(Token {
            kind,
            pos: start,
            line,
            text: self.src[start..end].to_string(),
        });
    }

    fn error(&mut self, message: String) {
        let line = self.line_at(self.pos);
        self.tokens.push(Token {
            kind: Kind::Error,
            pos: self.pos,
            line,
            text: message,
        });
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn run(&mut self) {
        loop {
            // Text up to the next action.
            let start = self.pos;
            let Some(offset) = self.rest().find("{{") else {
                if start < self.src.len() {
                    self.push(Kind::Text, start, self.src.len());
                }
                self.push(Kind::Eof, self.src.len(), self.src.len());
                return;
            };
            let delim = start + offset;
            let after = &self.src[delim + 2..];
            let left_trim = has_left_trim(after);
            let text_end = if left_trim {
                start + self.src[start..delim].trim_end_matches(SPACE).len()
            } else {
                delim
            };
            if text_end > start {
                self.push(Kind::Text, start, text_end);
            }
            self.pos = delim + 2;
            if left_trim {
                self.pos += 2;
            }
            if self.rest().starts_with("/*") {
                if !self.comment() {
                    return;
                }
                continue;
            }
            self.push(Kind::LeftDelim, delim, delim + 2);
            self.paren_depth = 0;
            if !self.inside_action() {
                return;
            }
        }
    }

    /// A `{{/* ... */}}` comment; the action must close right after it.
    fn comment(&mut self) -> bool {
        let Some(end) = self.rest().find("*/") else {
            self.error("unclosed comment".into());
            return false;
        };
        self.pos += end + 2;
        match self.at_right_delim() {
            Some(trim) => {
                self.close_action(trim);
                true
            }
            None => {
                self.error("comment ends before closing delimiter".into());
                false
            }
        }
    }

    /// `Some(trim)` when the input is at `}}` (trim false) or ` -}}` (trim true).
    fn at_right_delim(&self) -> Option<bool> {
        let rest = self.rest();
        let mut chars = rest.chars();
        if let (Some(c), Some('-')) = (chars.next(), chars.next())
            && SPACE.contains(&c)
            && rest[c.len_utf8() + 1..].starts_with("}}")
        {
            return Some(true);
        }
        rest.starts_with("}}").then_some(false)
    }

    fn close_action(&mut self, trim: bool) {
        self.pos += if trim { 4 } else { 2 };
        if trim {
            let rest = self.rest();
            self.pos += rest.len() - rest.trim_start_matches(SPACE).len();
        }
    }

    /// Tokens up to the closing `}}`; false after an error.
    fn inside_action(&mut self) -> bool {
        loop {
            if let Some(trim) = self.at_right_delim() {
                if self.paren_depth > 0 {
                    self.error("unclosed left paren".into());
                    return false;
                }
                let start = self.pos + if trim { 2 } else { 0 };
                self.push(Kind::RightDelim, start, start + 2);
                self.close_action(trim);
                return true;
            }
            let start = self.pos;
            let Some(c) = self.rest().chars().next() else {
                self.error("unclosed action".into());
                return false;
            };
            match c {
                c if SPACE.contains(&c) => {
                    // Spaces up to (not into) the space of a ` -}}` marker.
                    let mut end = start;
                    while let Some(ch) = self.src[end..].chars().next() {
                        if !SPACE.contains(&ch) || self.src[end + 1..].starts_with("-}}") {
                            break;
                        }
                        end += 1;
                    }
                    self.pos = end;
                    self.push(Kind::Space, start, end);
                }
                '=' => self.single(Kind::Assign),
                ':' => {
                    if self.rest().starts_with(":=") {
                        self.pos += 2;
                        self.push(Kind::Declare, start, self.pos);
                    } else {
                        self.error("expected :=".into());
                        return false;
                    }
                }
                '|' => self.single(Kind::Pipe),
                ',' => self.single(Kind::Comma),
                '(' => {
                    self.paren_depth += 1;
                    self.single(Kind::LeftParen);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        self.error(format!("unexpected right paren {}", go_rune(')')));
                        return false;
                    }
                    self.paren_depth -= 1;
                    self.single(Kind::RightParen);
                }
                '"' | '`' | '\'' => {
                    if !self.quoted(c) {
                        return false;
                    }
                }
                '$' => {
                    self.pos += 1;
                    if !self.word(Kind::Variable, start) {
                        return false;
                    }
                }
                '.' => {
                    let next = self.rest()[1..].chars().next();
                    if next.is_some_and(|n| n.is_ascii_digit()) {
                        if !self.number() {
                            return false;
                        }
                    } else {
                        self.pos += 1;
                        let kind = if self.at_terminator() {
                            Kind::Dot
                        } else {
                            Kind::Field
                        };
                        if !self.word(kind, start) {
                            return false;
                        }
                    }
                }
                '+' | '-' | '0'..='9' => {
                    if !self.number() {
                        return false;
                    }
                }
                c if is_alnum(c) => {
                    let end = start
                        + self
                            .rest()
                            .find(|c: char| !is_alnum(c))
                            .unwrap_or(self.rest().len());
                    self.pos = end;
                    if !self.at_terminator() {
                        let bad = self.rest().chars().next().unwrap_or(' ');
                        self.error(format!("bad character {}", go_rune(bad)));
                        return false;
                    }
                    let word = &self.src[start..end];
                    let kind = match word {
                        "true" => Kind::Bool(true),
                        "false" => Kind::Bool(false),
                        "nil" => Kind::Nil,
                        "if" => Kind::Keyword(Keyword::If),
                        "else" => Kind::Keyword(Keyword::Else),
                        "end" => Kind::Keyword(Keyword::End),
                        "range" => Kind::Keyword(Keyword::Range),
                        "with" => Kind::Keyword(Keyword::With),
                        "break" => Kind::Keyword(Keyword::Break),
                        "continue" => Kind::Keyword(Keyword::Continue),
                        "define" => Kind::Keyword(Keyword::Define),
                        "template" => Kind::Keyword(Keyword::Template),
                        "block" => Kind::Keyword(Keyword::Block),
                        _ => Kind::Ident,
                    };
                    self.push(kind, start, end);
                }
                other => {
                    self.error(format!(
                        "unrecognized character in action: {}",
                        go_rune(other)
                    ));
                    return false;
                }
            }
        }
    }

    fn single(&mut self, kind: Kind) {
        let start = self.pos;
        self.pos += 1;
        self.push(kind, start, self.pos);
    }

    /// The alphanumeric rest of a field or variable name, which must end at a terminator.
    fn word(&mut self, kind: Kind, start: usize) -> bool {
        let len = self
            .rest()
            .find(|c: char| !is_alnum(c))
            .unwrap_or(self.rest().len());
        self.pos += len;
        if !self.at_terminator() {
            let bad = self.rest().chars().next().unwrap_or(' ');
            self.error(format!("bad character {}", go_rune(bad)));
            return false;
        }
        self.push(kind, start, self.pos);
        true
    }

    fn at_terminator(&self) -> bool {
        let rest = self.rest();
        match rest.chars().next() {
            None => true,
            Some(c) if SPACE.contains(&c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => rest.starts_with("}}"),
        }
    }

    fn number(&mut self) -> bool {
        let start = self.pos;
        let rest = self.rest();
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let sign_ok = matches!(c, '+' | '-')
                && (i == 0 || matches!(rest.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P'));
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || sign_ok {
                end = i + c.len_utf8();
            } else {
                break;
            }
        }
        self.pos = start + end;
        let text = &self.src[start..self.pos];
        if parse_number(text).is_none() || !self.at_terminator() {
            if !self.at_terminator() {
                let more = self
                    .rest()
                    .find(|c: char| SPACE.contains(&c) || c == '}')
                    .unwrap_or(self.rest().len());
                self.pos += more;
            }
            let text = self.src[start..self.pos].to_string();
            self.pos = start;
            self.error(format!("bad number syntax: {text:?}"));
            return false;
        }
        self.push(Kind::Number, start, self.pos);
        true
    }

    fn quoted(&mut self, quote: char) -> bool {
        let start = self.pos;
        let mut escaped = false;
        for (i, c) in self.src[start + 1..].char_indices() {
            let at = start + 1 + i;
            if quote == '`' {
                if c == '`' {
                    self.pos = at + 1;
                    let value = self.src[start + 1..at].replace('\r', "");
                    self.push(Kind::Str(value), start, self.pos);
                    return true;
                }
                continue;
            }
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '\n' => break,
                c if c == quote => {
                    self.pos = at + 1;
                    let text = &self.src[start..self.pos];
                    let Some(value) = unquote(text) else {
                        self.error(format!("malformed {}: {text}", quote_name(quote)));
                        return false;
                    };
                    let kind = if quote == '"' {
                        Kind::Str(value)
                    } else {
                        let mut chars = value.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => Kind::Char(c as i64),
                            _ => {
                                self.error(format!("malformed character constant: {text}"));
                                return false;
                            }
                        }
                    };
                    self.push(kind, start, self.pos);
                    return true;
                }
                _ => {}
            }
        }
        self.error(match quote {
            '"' => "unterminated quoted string".into(),
            '`' => "unterminated raw quoted string".into(),
            _ => "unterminated character constant".into(),
        });
        false
    }
}

fn quote_name(quote: char) -> &'static str {
    if quote == '"' {
        "string"
    } else {
        "character constant"
    }
}

fn has_left_trim(after_delim: &str) -> bool {
    let mut chars = after_delim.chars();
    chars.next() == Some('-') && chars.next().is_some_and(|c| SPACE.contains(&c))
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A rune as Go's `%#U` prints it: `U+0021 '!'`.
pub(super) fn go_rune(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}

/// A number literal's value, as Go's template parser accepts them (decimal, hex, octal,
/// binary, underscores, floats, and character constants elsewhere).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

pub(super) fn parse_number(text: &str) -> Option<Number> {
    let clean = text.replace('_', "");
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = digits.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some((16, &digits[2..]))
    } else if lower.starts_with("0o") {
        Some((8, &digits[2..]))
    } else if lower.starts_with("0b") {
        Some((2, &digits[2..]))
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        Some((8, &digits[1..]))
    } else {
        None
    };
    let int = match radix {
        Some((radix, body)) => i64::from_str_radix(body, radix).ok(),
        None => digits.parse::<i64>().ok(),
    };
    if let Some(value) = int {
        return Some(Number::Int(if negative { -value } else { value }));
    }
    if radix.is_some() || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    Some(Number::Float(if negative { -value } else { value }))
}

/// Go's `strconv.Unquote` for `"..."` and `'...'` literals.
pub(super) fn unquote(text: &str) -> Option<String> {
    let inner = &text[1..text.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' => '\\',
            '\'' => '\'',
            '"' => '"',
            'x' => hex_char(&mut chars, 2)?,
            'u' => hex_char(&mut chars, 4)?,
            'U' => hex_char(&mut chars, 8)?,
            d @ '0'..='7' => {
                let mut value = d.to_digit(8)?;
                for _ in 0..2 {
                    value = value * 8 + chars.next()?.to_digit(8)?;
                }
                char::from_u32(value)?
            }
            _ => return None,
        };
        out.push(escaped);
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let mut value = 0u32;
    for _ in 0..digits {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    char::from_u32(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Kind> {
        lex(src).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn trim_markers_eat_the_whitespace_beside_them() {
        let tokens = lex("a  \n {{- .X -}} \n b");
        let texts: Vec<_> = tokens
            .iter()
            .filter(|t| t.kind == Kind::Text)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(texts, ["a", "b"]);
        // `{{-3}}` is the number -3, not a trim marker.
        assert!(kinds("{{-3}}").contains(&Kind::Number));
    }

    #[test]
    fn fields_chain_as_separate_tokens() {
        let tokens = lex("{{.Config.Env}}");
        let fields: Vec<_> = tokens
            .iter()
            .filter(|t| t.kind == Kind::Field)
            .map(|t| (t.text.as_str(), t.pos))
            .collect();
        assert_eq!(fields, [(".Config", 2), (".Env", 9)]);
    }

    #[test]
    fn errors_read_as_go_writes_them() {
        let last = |src: &str| lex(src).pop().map(|t| t.text).unwrap_or_default();
        assert_eq!(last("{{.X"), "unclosed action");
        assert_eq!(last("{{\"abc}}"), "unterminated quoted string");
        assert_eq!(last("{{.X!}}"), "bad character U+0021 '!'");
        assert_eq!(
            last("{{#}}"),
            "unrecognized character in action: U+0023 '#'"
        );
        assert_eq!(last("{{/* x }}"), "unclosed comment");
    }

    #[test]
    fn literals() {
        assert_eq!(parse_number("0x1F"), Some(Number::Int(31)));
        assert_eq!(parse_number("-1_000"), Some(Number::Int(-1000)));
        assert_eq!(parse_number("1.5e3"), Some(Number::Float(1500.0)));
        assert_eq!(parse_number("1x"), None);
        assert_eq!(unquote(r#""a\tb\u00e9""#).as_deref(), Some("a\tbé"));
        assert_eq!(kinds("{{'a'}}")[1], Kind::Char(97));
    }
}
