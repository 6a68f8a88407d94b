//! Splitting one logical instruction line into keyword, `--flags` and arguments, with the
//! per-instruction argument rules of BuildKit's parser ("maybe JSON", whitespace lists,
//! quote-aware words, key/value pairs, HEALTHCHECK, ONBUILD).

use super::json::{self, JsonError};
use super::source::{LogicalLine, Source};
use super::{Args, Node, Pair, Word, known_command};
use crate::diagnostic::{Diagnostic, Span};

/// Gives spans for byte ranges of one logical line.
pub(crate) struct LineCtx<'s, 'a> {
    pub line: &'s LogicalLine,
    pub src: &'s Source<'a>,
    pub escape: char,
}

impl LineCtx<'_, '_> {
    fn text(&self) -> &str {
        &self.line.text
    }

    fn span(&self, start: usize, end: usize) -> Span {
        self.line.span(self.src, start, end)
    }

    fn word(&self, value: impl Into<String>, start: usize, end: usize) -> Word {
        Word {
            value: value.into(),
            span: self.span(start, end),
        }
    }

    /// Shrinks `start..end` past Unicode whitespace on both sides (Go's `strings.TrimSpace`).
    fn trim(&self, start: usize, end: usize) -> (usize, usize) {
        let s = &self.text()[start..end];
        let lead = s.len() - s.trim_start().len();
        let trail = s.len() - s.trim_end().len();
        if lead == s.len() {
            return (start, start);
        }
        (start + lead, end - trail)
    }

    /// Parses the instruction in `start..end` of the logical line (the whole line, or the part
    /// after `ONBUILD`).
    pub fn node(&self, start: usize, end: usize) -> Result<Node, Diagnostic> {
        let (ts, te) = self.trim(start, end);
        let text = self.text();
        let (cmd_end, rest) = match find_blank_run(&text[ts..te]) {
            Some((a, b)) => (ts + a, Some(ts + b)),
            None => (te, None),
        };
        let mut flags = Vec::new();
        let (mut args_start, mut args_end) = (te, te);
        if let Some(rest) = rest {
            let after_flags = self.extract_flags(rest, te, &mut flags);
            (args_start, args_end) = self.trim(after_flags, te);
        }
        let keyword = self.word(&text[ts..cmd_end], ts, cmd_end);
        let command = known_command(&keyword.value).unwrap_or("");
        let args = self.args(command, args_start, args_end)?;
        Ok(Node {
            keyword,
            flags,
            args,
            heredocs: Vec::new(),
            original: text[start..end].to_string(),
            span: self.span(ts, te),
            comments: Vec::new(),
        })
    }

    /// Takes leading `--flag[=value]` words (quotes and escapes processed) and returns where
    /// the arguments start. A bare `--` ends the flags and is dropped.
    fn extract_flags(&self, start: usize, end: usize, flags: &mut Vec<Word>) -> usize {
        #[derive(PartialEq)]
        enum Phase {
            Spaces,
            Word,
            Quote(char),
        }
        let text = &self.text()[..end];
        let esc = self.escape;
        let mut phase = Phase::Spaces;
        let mut word = String::new();
        let mut word_start = start;
        let mut blank_ok = false;
        let mut chars = text[start..]
            .char_indices()
            .map(|(i, c)| (start + i, c))
            .peekable();
        while let Some((pos, c)) = chars.next() {
            let next_is_end = chars.peek().is_none();
            match phase {
                Phase::Spaces => {
                    if c.is_whitespace() {
                        continue;
                    }
                    if c != '-' || chars.peek().map(|&(_, n)| n) != Some('-') {
                        return pos;
                    }
                    phase = Phase::Word;
                    word_start = pos;
                    word.push(c);
                }
                Phase::Word => {
                    if c.is_whitespace() {
                        phase = Phase::Spaces;
                        if word == "--" {
                            return pos;
                        }
                        if blank_ok || !word.is_empty() {
                            flags.push(self.word(std::mem::take(&mut word), word_start, pos));
                        }
                        blank_ok = false;
                        continue;
                    }
                    if c == '\'' || c == '"' {
                        phase = Phase::Quote(c);
                        blank_ok = true;
                        continue;
                    }
                    if c == esc {
                        match chars.next() {
                            Some((_, n)) => word.push(n),
                            None => continue,
                        }
                        continue;
                    }
                    word.push(c);
                }
                Phase::Quote(q) => {
                    if c == q {
                        phase = Phase::Word;
                        continue;
                    }
                    if c == esc {
                        if next_is_end {
                            phase = Phase::Word;
                            continue;
                        }
                        if let Some((_, n)) = chars.next() {
                            word.push(n);
                        }
                        continue;
                    }
                    word.push(c);
                }
            }
        }
        if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
            flags.push(self.word(word, word_start, end));
        }
        end
    }

    fn args(&self, command: &str, start: usize, end: usize) -> Result<Args, Diagnostic> {
        match command {
            "add" | "copy" | "volume" => self.maybe_json_to_list(start, end),
            "arg" => Ok(Args::Words(
                self.quoted_words(start, end)
                    .into_iter()
                    .map(|(v, s, e)| self.word(v, s, e))
                    .collect(),
            )),
            "cmd" | "entrypoint" | "run" | "shell" => self.maybe_json(start, end),
            "env" => self.name_val(start, end, "ENV"),
            "label" => self.name_val(start, end, "LABEL"),
            "expose" | "from" => Ok(Args::Words(self.blank_split(start, end))),
            "healthcheck" => self.health_config(start, end),
            "maintainer" | "stopsignal" | "user" | "workdir" => Ok(Args::Words(if start == end {
                Vec::new()
            } else {
                vec![self.word(&self.text()[start..end], start, end)]
            })),
            "onbuild" => {
                if start == end {
                    Ok(Args::Words(Vec::new()))
                } else {
                    Ok(Args::Onbuild(Box::new(self.node(start, end)?)))
                }
            }
            _ => Ok(Args::Ignored),
        }
    }

    /// The exec form, if `start..end` is a JSON array of strings. `Ok(None)` for anything that
    /// is not valid JSON; an error for valid JSON with a non-string element.
    fn json(&self, start: usize, end: usize) -> Result<Option<Vec<Word>>, Diagnostic> {
        let text = &self.text()[start..end];
        let trimmed = text.trim_start();
        if !trimmed.starts_with('[') {
            return Ok(None);
        }
        let base = start + (text.len() - trimmed.len());
        match json::parse_array(trimmed) {
            Ok(items) => Ok(Some(
                items
                    .into_iter()
                    .map(|j| self.word(j.value, base + j.start, base + j.end))
                    .collect(),
            )),
            Err(JsonError::Invalid) => Ok(None),
            Err(JsonError::NotString { start: s, end: e }) => Err(Diagnostic::error(
                "when using JSON array syntax, arrays must be comprised of strings only",
                self.span(base + s, base + e),
            )
            .with_help("quote this element, or write the command in shell form")),
        }
    }

    fn maybe_json(&self, start: usize, end: usize) -> Result<Args, Diagnostic> {
        if start == end {
            return Ok(Args::Words(Vec::new()));
        }
        Ok(match self.json(start, end)? {
            Some(words) => Args::Json(words),
            None => Args::Words(vec![self.word(&self.text()[start..end], start, end)]),
        })
    }

    fn maybe_json_to_list(&self, start: usize, end: usize) -> Result<Args, Diagnostic> {
        Ok(match self.json(start, end)? {
            Some(words) => Args::Json(words),
            None => Args::Words(self.blank_split(start, end)),
        })
    }

    /// Splits on runs of `[\t\v\f\r ]` the way Go's `regexp.Split(s, -1)` does (an empty input
    /// gives no words).
    fn blank_split(&self, start: usize, end: usize) -> Vec<Word> {
        let text = &self.text()[start..end];
        if text.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut from = 0;
        let mut rest = text;
        while let Some((a, b)) = find_blank_run(rest) {
            let (s, e) = (from, from + a);
            out.push(self.word(&text[s..e], start + s, start + e));
            from += b;
            rest = &text[from..];
        }
        out.push(self.word(&text[from..], start + from, end));
        out
    }

    /// BuildKit's quote-aware word splitter for ENV, LABEL and ARG: splits on whitespace
    /// outside quotes, keeps the quotes and escapes in the words.
    fn quoted_words(&self, start: usize, end: usize) -> Vec<(String, usize, usize)> {
        #[derive(PartialEq)]
        enum Phase {
            Spaces,
            Word,
            Quote(char),
        }
        let text = &self.text()[..end];
        let esc = self.escape;
        let mut words = Vec::new();
        let mut phase = Phase::Spaces;
        let mut word = String::new();
        let mut word_start = start;
        let mut blank_ok = false;
        let mut chars = text[start..]
            .char_indices()
            .map(|(i, c)| (start + i, c))
            .peekable();
        while let Some((pos, c)) = chars.next() {
            let next_is_end = chars.peek().is_none();
            if phase == Phase::Spaces {
                if c.is_whitespace() {
                    continue;
                }
                phase = Phase::Word;
                word_start = pos;
            }
            match phase {
                Phase::Spaces => {}
                Phase::Word => {
                    if c.is_whitespace() {
                        phase = Phase::Spaces;
                        if blank_ok || !word.is_empty() {
                            words.push((std::mem::take(&mut word), word_start, pos));
                        }
                        blank_ok = false;
                        continue;
                    }
                    if c == '\'' || c == '"' {
                        phase = Phase::Quote(c);
                        blank_ok = true;
                    }
                    if c == esc {
                        if next_is_end {
                            continue;
                        }
                        // Outside quotes an escape and the next character are both kept,
                        // even when that character is a quote.
                        word.push(c);
                        if let Some((_, n)) = chars.next() {
                            word.push(n);
                        }
                        continue;
                    }
                    word.push(c);
                }
                Phase::Quote(q) => {
                    if c == q {
                        phase = Phase::Word;
                    } else if c == esc && q != '\'' {
                        if next_is_end {
                            phase = Phase::Word;
                            continue;
                        }
                        word.push(c);
                        if let Some((_, n)) = chars.next() {
                            word.push(n);
                        }
                        continue;
                    }
                    word.push(c);
                }
            }
        }
        if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
            words.push((word, word_start, end));
        }
        words
    }

    /// ENV and LABEL: `KEY value...` (legacy) or `k1=v1 k2=v2 ...`.
    fn name_val(&self, start: usize, end: usize, keyword: &str) -> Result<Args, Diagnostic> {
        let words = self.quoted_words(start, end);
        let Some(first) = words.first() else {
            return Ok(Args::Words(Vec::new()));
        };
        if !first.0.contains('=') {
            let text = &self.text()[start..end];
            let Some((a, b)) = find_blank_run(text) else {
                return Err(Diagnostic::error(
                    format!("{keyword} must have two arguments"),
                    self.span(start, end),
                )
                .with_help(format!("give a value: {keyword} {text}=value")));
            };
            return Ok(Args::Pairs(vec![Pair {
                key: self.word(&text[..a], start, start + a),
                value: self.word(&text[b..], start + b, end),
                legacy: true,
            }]));
        }
        let mut pairs = Vec::with_capacity(words.len());
        for (w, s, e) in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(Diagnostic::error(
                    format!(
                        "syntax error - can't find = in {}. Must be of the form: name=value",
                        super::quote::go_quote(&w)
                    ),
                    self.span(s, e),
                ));
            };
            let eq = (s + k.len()).min(e);
            pairs.push(Pair {
                key: self.word(k, s, eq),
                value: self.word(v, (eq + 1).min(e), e),
                legacy: false,
            });
        }
        Ok(Args::Pairs(pairs))
    }

    /// HEALTHCHECK: a type word (`CMD`, `NONE`, ...) then the command, "maybe JSON".
    fn health_config(&self, start: usize, end: usize) -> Result<Args, Diagnostic> {
        let text = &self.text()[start..end];
        let sep = text.find(char::is_whitespace).unwrap_or(text.len());
        if sep == 0 {
            return Ok(Args::Words(Vec::new()));
        }
        let after = &text[sep..];
        let next = sep + (after.len() - after.trim_start().len());
        let kind = self.word(&text[..sep], start, start + sep);
        let args = self.maybe_json(start + next, end)?;
        Ok(Args::Healthcheck {
            kind,
            args: Box::new(args),
        })
    }
}

/// Byte range of the first run of `[\t\v\f\r ]` in `s`.
fn find_blank_run(s: &str) -> Option<(usize, usize)> {
    let is_blank = |b: u8| matches!(b, b'\t' | b'\x0b' | b'\x0c' | b'\r' | b' ');
    let bytes = s.as_bytes();
    let a = bytes.iter().position(|&b| is_blank(b))?;
    let len = bytes[a..].iter().take_while(|&&b| is_blank(b)).count();
    Some((a, a + len))
}
