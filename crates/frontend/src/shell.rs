//! Shell-word expansion of Dockerfile arguments with BuildKit's rules (quotes, escapes, `$VAR`,
//! `${VAR...}` modifiers, pattern trimming and replacement, word splitting).
//!
//! This is not a shell: there is no command substitution, no arithmetic and no globbing of
//! file names. It mirrors the semantics of BuildKit's `frontend/dockerfile/shell` lexer so that
//! a Dockerfile expands to the same strings under kiln as under `docker build`. Where BuildKit
//! has an accident that changes results we either follow it (and say so) or deliberately fix
//! it (and say so); each such place carries a comment starting with "BuildKit".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use regex::Regex;

/// Where variable values come from during expansion.
///
/// Dockerfile environments are small, so implementations are simple lookups. Names are
/// case-sensitive (kiln targets Linux images).
pub trait Env {
    /// The value of `name`, or `None` when the variable is not set. A variable set to the
    /// empty string returns `Some("")`: `${V-x}` and `${V:-x}` tell the two apart.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// An ordered list of `(name, value)` pairs, as a Dockerfile accumulates `ENV` and `ARG`;
/// the last pair with a given name wins.
impl<K: AsRef<str>, V: AsRef<str>> Env for [(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Env for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// An environment in which no variable is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Expanding a word failed; `word` is the whole input, `kind` says what was wrong.
///
/// The display text matches BuildKit's: `failed to process "${X:?}": X: is not allowed to be unset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ShellError {
    /// The word that was being expanded.
    pub word: String,
    /// What went wrong.
    pub kind: ShellErrorKind,
}

/// The reasons expansion can fail, with BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// The input ended inside a `${...}` substitution.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${/pattern` without the second `/` of a replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}` or `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not support, such as `${X:=y}`, `${X=y}` or `${X:#y}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${X?msg}` on an unset variable or `${X:?msg}` on an unset or empty one.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    /// `${...}` nested deeper than [`MAX_NESTING`] levels; refused so that hostile input
    /// cannot exhaust the stack.
    #[error("substitutions nested more than {MAX_NESTING} levels deep")]
    TooDeep,
    /// The pattern of `${X#p}`, `${X%p}` or `${X/p/r}` is malformed (for example `\x`).
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
}

/// How deeply `${...}` substitutions may nest (`${A:-${B:-...}}`). Real Dockerfiles use a
/// handful; the limit only exists because expansion recurses.
pub const MAX_NESTING: usize = 200;

/// The result of one expansion with everything BuildKit's lexer reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word, quotes removed (unless the lexer keeps raw quotes).
    pub value: String,
    /// The same expansion split into words (see [`Lexer::process_words`]).
    pub words: Vec<String>,
    /// Variables that were looked up and set.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not set (lowering warns about these).
    pub unmatched: BTreeSet<String>,
}

/// Expands shell words the way BuildKit does, configured with the Dockerfile's escape
/// character (`\` by default, `` ` `` with `# escape=``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character and BuildKit's default options.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// The lexer BuildKit uses for the body of a `COPY`/`ADD` heredoc whose delimiter is not
    /// quoted: escape character always `\`, quotes are ordinary characters, `$` expands.
    pub fn heredoc() -> Self {
        Self::new('\\').with_skip_process_quotes(true)
    }

    /// The configured escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit `RawQuotes`; used when detecting heredoc
    /// delimiters and when naming `RUN` steps).
    pub fn with_raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub fn with_raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat `'` and `"` as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub fn with_skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written instead of expanding them to empty
    /// (BuildKit `SkipUnsetEnv`).
    pub fn with_skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Expands `word` and reports the value, the split words and the variables looked up.
    pub fn expand<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<Expansion, ShellError> {
        let mut run = Run {
            lexer: self,
            src: word,
            // Go's text/scanner, which BuildKit reads words with, skips a leading BOM.
            pos: if word.starts_with('\u{feff}') {
                '\u{feff}'.len_utf8()
            } else {
                0
            },
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match run.stop_on(None, self.raw_escapes) {
            Ok((value, words)) => Ok(Expansion {
                value,
                words: words.finish(),
                matched: run.matched,
                unmatched: run.unmatched,
            }),
            Err(kind) => Err(ShellError {
                word: word.to_owned(),
                kind,
            }),
        }
    }

    /// Expands one word: variables substituted, quotes and escapes removed, spaces kept.
    pub fn process_word<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<String, ShellError> {
        self.expand(word, env).map(|e| e.value)
    }

    /// Expands and splits into words on unquoted, unescaped whitespace, as `EXPOSE` and
    /// heredoc detection do. Whitespace that comes from a variable's value splits too
    /// (`$V` with `V="a b"` gives two words) unless the reference is quoted. Empty words
    /// (`""`) are dropped, as BuildKit drops them.
    pub fn process_words<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ShellError> {
        self.expand(word, env).map(|e| e.words)
    }

    /// Like [`Lexer::process_word`], also returning the names of the variables that were
    /// looked up and found set (BuildKit `ProcessWordWithMatches`).
    pub fn process_word_with_matches<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<(String, BTreeSet<String>), ShellError> {
        self.expand(word, env).map(|e| (e.value, e.matched))
    }

    /// Expands a heredoc body with an unquoted delimiter the way BuildKit does for `COPY`
    /// and `ADD`: quotes stay, `$` expands, and `\` escapes the next character (so `\$`
    /// gives `$`, `\\` gives `\`, and a `\` at the end of a line disappears leaving the
    /// newline). BuildKit always uses `\` here whatever the Dockerfile's escape character.
    pub fn process_heredoc<E: Env + ?Sized>(
        &self,
        body: &str,
        env: &E,
    ) -> Result<String, ShellError> {
        Self::heredoc().process_word(body, env)
    }
}

/// Word splitting state: whitespace that reaches `add_char` separates words, characters that
/// reach `add_raw_*` (quoted or escaped) never do.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    buf: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        // BuildKit's rule, including its oddity: after an empty quoted string the state is
        // "in a word" with an empty buffer, and whitespace then neither ends nor starts a word.
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

/// One expansion in progress: a cursor over the input plus the variables seen.
struct Run<'a, E: ?Sized> {
    lexer: &'a Lexer,
    src: &'a str,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    /// Current `${` nesting, bounded by MAX_NESTING.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<E: Env + ?Sized> Run<'_, E> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.matched.insert(name.to_owned());
                Some(v.to_owned())
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    /// Processes input until `stop` (consumed) or the end of input. `raw_escapes` applies
    /// to this level and everything nested in it until a nested level sets its own.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Words), ShellErrorKind> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Words), ShellErrorKind> {
        // BuildKit shares one word buffer between this level and the nested levels that
        // `${V:-word}` starts, so in process_words the text before such a substitution is
        // lost (`a${X:-b}` gives ["b"]). Each level has its own buffer here, giving ["ab"].
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_str(&value);
                }
                '<' => {
                    let value = self.possible_heredoc();
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                '\'' if quotes => {
                    let value = self.single_quote()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                '"' if quotes => {
                    let value = self.double_quote()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end of the word is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            // Only reachable for `}` and `/`, whose callers replace this with their own
            // message at end of input; kept for completeness.
            Some(_) => Err(ShellErrorKind::MissingBrace),
            None => Ok((result, words)),
        }
    }

    fn single_quote(&mut self) -> Result<String, ShellErrorKind> {
        // Everything up to the next `'` is literal; there is no way to escape a `'`.
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ShellErrorKind> {
        // Like sh: `$` expands, and the escape character escapes only `"`, `$` and itself;
        // before anything else it stays literal.
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The loop reports the missing closing quote.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            // BuildKit: with raw escapes an escape before an ordinary
                            // character is written twice; we follow it.
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn possible_heredoc(&mut self) -> String {
        // `<<` and any blanks after it stay glued to the delimiter, so `<< EOF` is one word.
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut out = "<<".to_owned();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.peek() {
            self.next();
            out.push(ch);
        }
        out
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                // Positional parameters: all the digits form the name (`$10` is `${10}`).
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                name.push(ch);
                return name;
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ShellErrorKind> {
        self.next(); // the `$`
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the `{`
        if self.depth >= MAX_NESTING {
            return Err(ShellErrorKind::TooDeep);
        }
        self.depth += 1;
        let result = self.braced();
        self.depth -= 1;
        result
    }

    /// The rest of a `${...}` substitution after its `{`.
    fn braced(&mut self) -> Result<String, ShellErrorKind> {
        match self.peek() {
            None => return Err(ShellErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            // BuildKit reports "unsupported modifier (\u{fffd})" here; a missing brace is
            // what actually happened.
            None => Err(ShellErrorKind::MissingBrace),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                let mut spelled = ":".to_owned();
                spelled.extend(op);
                self.modifier(&name, true, op, spelled)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.modifier(&name, false, Some(op), op.to_string())
            }
            Some('/') => self.replace(&name),
            Some(other) => Err(ShellErrorKind::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${name<op>word}` and `${name:<op>word}`; `spelled` is the operator as written.
    fn modifier(
        &mut self,
        name: &str,
        null_is_unset: bool,
        op: Option<char>,
        spelled: String,
    ) -> Result<String, ShellErrorKind> {
        // Patterns keep their escapes so that `\*` can mean a literal star.
        let is_pattern = matches!(op, Some('#' | '%'));
        if null_is_unset && is_pattern {
            return Err(ShellErrorKind::UnsupportedModifier(spelled));
        }
        let word = match self.stop_on(Some('}'), is_pattern) {
            Ok((word, _)) => word,
            Err(_) if self.at_end() => return Err(ShellErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if self.lexer.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        let empty = value.as_deref().is_none_or(str::is_empty);
        match op {
            Some('-') => Ok(match value {
                Some(v) if !(null_is_unset && v.is_empty()) => v,
                _ => word,
            }),
            Some('+') => Ok(if value.is_none() || (null_is_unset && empty) {
                String::new()
            } else {
                word
            }),
            Some('?') => match value {
                None => Err(ShellErrorKind::Required {
                    name: name.to_owned(),
                    message: message_or(word, "is not allowed to be unset"),
                }),
                Some(v) if null_is_unset && v.is_empty() => Err(ShellErrorKind::Required {
                    name: name.to_owned(),
                    message: message_or(word, "is not allowed to be empty"),
                }),
                Some(v) => Ok(v),
            },
            Some(ch @ ('#' | '%')) => {
                // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                let (pattern, greedy) = match word.strip_prefix(ch) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let value = value.unwrap_or_default();
                if ch == '#' {
                    trim_prefix(pattern, &value, greedy)
                } else {
                    trim_suffix(pattern, &value, greedy)
                }
            }
            _ => Err(ShellErrorKind::UnsupportedModifier(spelled)),
        }
    }

    /// `${name/pattern/replacement}` (first match) and `${name//pattern/replacement}` (all).
    fn replace(&mut self, name: &str) -> Result<String, ShellErrorKind> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.at_end() => return Err(ShellErrorKind::MissingSlash),
            Err(e) => return Err(e),
        };
        let replacement = match self.stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.at_end() => return Err(ShellErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if self.lexer.skip_unset_env && value.is_none() {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let re = pattern_regex(&pattern, true, false)?;
        Ok(if all {
            replace_all(&re, &value, &replacement)
        } else {
            match re.find(&value) {
                Some(m) => {
                    let mut out = String::with_capacity(value.len() + replacement.len());
                    out.push_str(&value[..m.start()]);
                    expand_template(&mut out, &replacement, m.as_str());
                    out.push_str(&value[m.end()..]);
                    out
                }
                None => value,
            }
        })
    }
}

fn message_or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_owned()
    } else {
        word
    }
}

/// Go's `unicode.IsDigit` (decimal digits of any script). Rust's `is_numeric` also accepts
/// other numeric characters; excluding Latin-1 keeps `²` and `½` out, which covers the
/// characters anyone types next to a variable name.
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (u32::from(ch) > 0xff && ch.is_numeric())
}

/// POSIX special parameters; never set in a Dockerfile, so they expand to empty.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Converts a shell pattern (`*` any string, `?` one character, `\` escapes `*`, `?`, `\`;
/// `\}` and `\/` stand for `}` and `/`) into a regex. Bracket expressions are not
/// supported, as in BuildKit: `[` matches itself.
fn pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, ShellErrorKind> {
    let invalid = |reason: String| ShellErrorKind::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    let mut re = String::with_capacity(pattern.len() + 4);
    if anchored {
        re.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => re.push_str(star),
            '?' => re.push('.'),
            '\\' => match chars.peek() {
                // The escape only protected the character from ending the `${}`.
                Some('}' | '/') => {}
                Some(&next @ ('*' | '?' | '\\')) => {
                    chars.next();
                    re.push_str(&regex::escape(&next.to_string()));
                }
                Some(&next) => return Err(invalid(format!("invalid escape '\\{next}'"))),
                None => return Err(invalid("invalid escape '\\' at end of pattern".to_owned())),
            },
            _ => re.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4]))),
        }
    }
    Regex::new(&re).map_err(|e| invalid(e.to_string()))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellErrorKind> {
    let re = pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellErrorKind> {
    // A regex finds the leftmost match, not the shortest rightmost one, so reverse both the
    // value and the pattern and trim a prefix instead.
    let reversed = trim_prefix(&reverse_pattern(pattern), &reverse(value), greedy)?;
    Ok(reverse(&reversed))
}

fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

/// Reverses a pattern while keeping each `\x` escape pair in order (`a\*c` gives `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    // Cut the pattern into units (an escape pair or one character) from the front, which is
    // the only direction that knows which backslashes escape, then emit the units reversed.
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + len]);
        i += len;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// Go's `Regexp.ReplaceAllString`: empty matches right after a previous match are not
/// replaced, and the search always advances by at least one character.
fn replace_all(re: &Regex, src: &str, template: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= src.len() {
        let Some(m) = re.find_at(src, search) else {
            break;
        };
        out.push_str(&src[last_end..m.start()]);
        if m.end() > last_end || m.start() == 0 {
            expand_template(&mut out, template, m.as_str());
        }
        last_end = m.end();
        let width = src[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > m.end() {
            search += width;
        } else if search + 1 > m.end() {
            search += 1;
        } else {
            search = m.end();
        }
    }
    out.push_str(&src[last_end.min(src.len())..]);
    out
}

/// Go's regexp template expansion for a replacement: `$$` is `$`, `$0`/`${0}` is the whole
/// match, any other `$name`/`${name}` names a group that does not exist (patterns have no
/// groups) and expands to empty, and a `$` not followed by a name is literal. BuildKit passes
/// the replacement through this, so `\$0` in a replacement inserts the match.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len: usize = body
            .chars()
            .take_while(|c| c.is_alphabetic() || is_digit(*c) || *c == '_')
            .map(char::len_utf8)
            .sum();
        let name = &body[..len];
        let closed = !braced || body[len..].starts_with('}');
        if name.is_empty() || !closed {
            out.push('$');
            continue;
        }
        if name == "0" {
            out.push_str(whole);
        }
        rest = &body[len + usize::from(braced)..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
    }

    #[test]
    fn template_expansion_follows_go() {
        let mut out = String::new();
        expand_template(&mut out, "[$0|${0}|$$|$1|$x|$|${|${0]", "M");
        assert_eq!(out, "[M|M|$|||$|${|${0]");
    }

    #[test]
    fn replace_all_handles_empty_matches_like_go() {
        let re = Regex::new("").unwrap();
        assert_eq!(replace_all(&re, "ab", "-"), "-a-b-");
        let re = Regex::new("x*").unwrap();
        assert_eq!(replace_all(&re, "axxb", "-"), "-a-b-");
    }
}
