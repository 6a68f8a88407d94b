//! Finding heredoc openers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) in an instruction line.
//!
//! BuildKit finds them by running its shell lexer over the line with quotes and escapes kept
//! and unset variables left as written, then matching each word against
//! `^(\d*)<<(-?)\s*([^<]*)$`. The word splitting decides what counts as one word (quotes,
//! `${...}` and the whitespace allowed after `<<`), so this module carries a small lexer with
//! those same splitting rules. It only ever sees an empty environment; real expansion lives in
//! `crate::shell`.

/// A heredoc opener found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opener {
    /// The delimiter with quotes and escapes removed (`<<"EOF"` gives `EOF`).
    pub name: String,
    /// The file descriptor prefix (`3<<EOF`), if any.
    pub fd: Option<u32>,
    /// `<<-`: leading tabs are stripped from the body lines and the terminator.
    pub chomp: bool,
    /// False when any part of the delimiter was quoted: the body is used verbatim.
    pub expand: bool,
}

/// Nesting depth of `${...}` and quotes beyond which a line is treated as unlexable (no
/// heredocs), so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 256;

/// Why a heredoc word could not be lexed.
pub(crate) type LexError = &'static str;

/// All heredoc openers on `line`, in order. A line the lexer cannot split (an unterminated
/// quote, say) has none, as in BuildKit. An opener whose delimiter cannot be lexed is an error.
pub(crate) fn openers_in_line(line: &str) -> Result<Vec<Opener>, LexError> {
    let Ok((_, words)) = Lexer::new(line, true, true).run() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for word in words {
        if let Some(opener) = parse_opener(&word)? {
            out.push(opener);
        }
    }
    Ok(out)
}

/// Parses one word as a heredoc opener. `Ok(None)` when it is not one (`<<`, `<EOF`,
/// `<<EOF sh`, `EOF`).
pub(crate) fn parse_opener(word: &str) -> Result<Option<Opener>, LexError> {
    let digits_end = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits_end..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    // Go's regexp `\s` is [\t\n\f\r ].
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let (_, words) = Lexer::new(rest, false, false).run()?;
    if words.len() != 1 {
        return Ok(None);
    }
    let (_, raw_words) = Lexer::new(rest, true, false).run()?;
    let name = words.into_iter().next().unwrap_or_default();
    let raw = raw_words.into_iter().next().unwrap_or_default();
    // If removing quotes changed the number of quote characters, part of the delimiter was
    // quoted, which turns expansion of the body off.
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&name) == quotes(&raw);
    let fd = (digits_end > 0).then(|| {
        word[..digits_end].bytes().fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        })
    });
    Ok(Some(Opener {
        name,
        fd,
        chomp,
        expand,
    }))
}

/// Collects characters into words the way BuildKit's lexer does: plain whitespace ends a word,
/// "raw" text (quoted strings, escaped characters, `<<` with its trailing blanks) never does.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// The lexer, with an empty environment in which unset variables stay as written.
struct Lexer<'a> {
    s: &'a str,
    i: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str, raw_quotes: bool, raw_escapes: bool) -> Self {
        Self {
            s,
            i: 0,
            raw_quotes,
            raw_escapes,
            depth: 0,
        }
    }

    fn run(mut self) -> Result<(String, Vec<String>), LexError> {
        let raw = self.raw_escapes;
        self.until(None, raw)
    }

    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn enter(&mut self) -> Result<(), LexError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("too deeply nested");
        }
        Ok(())
    }

    /// Processes text up to `stop` (consumed) or the end, returning the processed text and
    /// its words.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        self.enter()?;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.bump();
                self.raw_escapes = saved;
                self.depth -= 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let t = self.dollar()?;
                    result.push_str(&t);
                    // Expanded text is split on whitespace, even what came from quotes.
                    words.add_str(&t);
                }
                '<' => {
                    let t = self.maybe_heredoc();
                    result.push_str(&t);
                    words.add_raw_str(&t);
                }
                '\'' => {
                    let t = self.single_quoted()?;
                    result.push_str(&t);
                    words.add_raw_str(&t);
                }
                '"' => {
                    let t = self.double_quoted()?;
                    result.push_str(&t);
                    words.add_raw_str(&t);
                }
                '\\' => {
                    self.bump();
                    if self.raw_escapes {
                        words.add_raw_char('\\');
                        result.push('\\');
                    }
                    let Some(e) = self.bump() else { break };
                    words.add_raw_char(e);
                    result.push(e);
                }
                _ => {
                    self.bump();
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        self.raw_escapes = saved;
        self.depth -= 1;
        if stop.is_some() {
            return Err("unexpected end of statement");
        }
        Ok((result, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, LexError> {
        self.bump();
        let mut r = String::new();
        if self.raw_quotes {
            r.push('\'');
        }
        loop {
            match self.bump() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote",
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        r.push('\'');
                    }
                    return Ok(r);
                }
                Some(c) => r.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, LexError> {
        self.enter()?;
        self.bump();
        let mut r = String::new();
        if self.raw_quotes {
            r.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote",
                    );
                }
                Some('"') => {
                    self.bump();
                    if self.raw_quotes {
                        r.push('"');
                    }
                    self.depth -= 1;
                    return Ok(r);
                }
                Some('$') => {
                    let t = self.dollar()?;
                    r.push_str(&t);
                }
                Some(_) => {
                    let mut c = self.bump().unwrap_or('\\');
                    if c == '\\' {
                        if self.raw_escapes {
                            r.push('\\');
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => c = self.bump().unwrap_or('\\'),
                            Some(_) => {}
                        }
                    }
                    r.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.bump();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.bump();
                name.push(c);
                return name;
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.bump();
            name.push(c);
        }
        name
    }

    /// `$name` or `${...}`; every variable is unset, so the result is the text as written.
    fn dollar(&mut self) -> Result<String, LexError> {
        self.enter()?;
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            self.depth -= 1;
            return Ok(format!("${name}"));
        }
        self.bump();
        match self.peek() {
            None => return Err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution"),
            Some(_) => {}
        }
        let name = self.name();
        let out = match self.bump() {
            Some('}') => format!("${{{name}}}"),
            Some(':') => {
                let m = self.bump();
                if matches!(m, Some('#' | '%')) {
                    return Err("unsupported modifier in substitution");
                }
                let (word, _) = self.until(Some('}'), false)?;
                let m = m.map_or(String::from("\u{fffd}"), String::from);
                format!("${{{name}:{m}{word}}}")
            }
            Some(m @ ('+' | '-' | '?' | '#' | '%')) => {
                let (word, _) = self.until(Some('}'), m == '#' || m == '%')?;
                format!("${{{name}{m}{word}}}")
            }
            Some('/') => {
                if self.peek() == Some('/') {
                    self.bump();
                }
                let (pattern, _) = self.until(Some('/'), true)?;
                let (replacement, _) = self.until(Some('}'), true)?;
                format!("${{{name}/{pattern}/{replacement}}}")
            }
            _ => return Err("unsupported modifier in substitution"),
        };
        self.depth -= 1;
        Ok(out)
    }

    /// `<<` keeps the blanks after it in the same word (`<<  EOF` is one opener).
    fn maybe_heredoc(&mut self) -> String {
        self.bump();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.bump();
        let mut r = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\r')) {
            self.bump();
            r.push(c);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        openers_in_line(line)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }

    #[test]
    fn finds_openers_like_buildkit() {
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<-EOF"), ["EOF"]);
        // The blank after `<<-` splits the word (only blanks right after `<<` are kept), so
        // BuildKit finds no heredoc here either.
        assert!(names("RUN <<- EOF").is_empty());
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN <<'EOF'"), ["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names(r#"RUN "<<EOF""#).is_empty());
        assert!(names(r#"RUN echo "unterminated <<EOF"#).is_empty());
    }

    #[test]
    fn opener_words() {
        for w in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(parse_opener(w).unwrap().unwrap().name, "EOF", "{w}");
        }
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_opener(w).unwrap(), None, "{w}");
        }
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_opener(w).is_err(), "{w}");
        }
    }

    #[test]
    fn quoting_turns_expansion_off() {
        let o = |w: &str| parse_opener(w).unwrap().unwrap();
        assert!(o("<<EOF").expand);
        assert!(!o("<<'EOF'").expand);
        assert_eq!(o("<<eo'f'").name, "eof");
        assert!(!o("<<eo'f'").expand);
        assert_eq!(o("<<eo\\'f").name, "eo'f");
        assert!(o("<<eo\\'f").expand);
        assert_eq!(o("<<'e'o\\'f").name, "eo'f");
        assert!(!o("<<'e'o\\'f").expand);
        assert_eq!(o("<<$EOF").name, "$EOF");
        assert_eq!(o("3<<X").fd, Some(3));
        assert!(o("<<-X").chomp);
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let line = format!("RUN <<A {}", "${a:-".repeat(100_000));
        assert!(openers_in_line(&line).unwrap().is_empty());
    }
}
