//! `.dockerignore` parsing and path matching with Docker's semantics, also used for
//! `COPY --exclude` patterns (same syntax).
//!
//! Semantics follow moby's `patternmatcher` and `ignorefile` as BuildKit uses them: patterns
//! are relative to the context root, cleaned like Go's `filepath.Clean`, use Go
//! `filepath.Match` syntax (`*`, `?`, `[...]`, `\` escapes) plus `**` for any number of
//! directories, a pattern that matches a directory matches everything below it, `!` starts an
//! exception, and the last pattern that matches a path decides.

use std::io;
use std::path::{Path, PathBuf};

use regex::Regex;

/// A `.dockerignore` file is a list of patterns; the matcher is the same type.
pub type Dockerignore = PatternMatcher;

/// A pattern list failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerignoreError {
    /// A line that is only `!` (an exception for nothing).
    #[error("illegal exclusion pattern: \"!\" (line {line})")]
    IllegalExclusion {
        /// 1-based line in the file, or 1-based position in a pattern list.
        line: usize,
    },
    /// Malformed glob syntax: an unclosed `[`, a bad range, or a trailing `\`.
    #[error("invalid pattern {pattern:?} (line {line}): syntax error in pattern")]
    BadPattern {
        /// 1-based line in the file, or 1-based position in a pattern list.
        line: usize,
        /// The pattern after cleaning, without a leading `!`.
        pattern: String,
    },
}

/// Matches context-relative paths against an ordered list of ignore patterns.
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

/// Which patterns matched a directory (or one of its ancestors), carried from a directory
/// to its children by [`PatternMatcher::matches_with_parent`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches {
    matched: Vec<bool>,
}

/// One cleaned pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exception: bool,
    kind: Kind,
}

/// How a pattern matches. The exact/prefix/suffix shortcuts are not only speed-ups: moby
/// uses plain string comparisons for them, and `**foo` (suffix) or `foo**` (prefix) match
/// across `/` where the regex form would not, so we keep the same split.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// Pattern ending in `**` with only literal characters before it.
    Prefix(String),
    /// Pattern starting with `**` with only literal characters after it.
    Suffix(String),
    Regex(Regex),
}

impl Pattern {
    /// The cleaned pattern text, without the `!` of an exception.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception (re-includes what it matches).
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }

    /// Whether this pattern could match some path strictly below `dir`. May answer `true`
    /// when it cannot (that only costs a walk), never `false` when it can.
    fn could_match_below(&self, dir: &str) -> bool {
        match &self.kind {
            Kind::Suffix(_) => true,
            Kind::Prefix(prefix) => {
                let below = format!("{dir}/");
                below.starts_with(prefix.as_str()) || prefix.starts_with(below.as_str())
            }
            Kind::Exact | Kind::Regex(_) => {
                let pattern: Vec<&str> = self.text.split('/').collect();
                let dir: Vec<&str> = dir.split('/').collect();
                for (i, name) in dir.iter().enumerate() {
                    let Some(component) = pattern.get(i) else {
                        return false;
                    };
                    // `**` spans components, a bracket expression may match `/`, and an
                    // escape may hide one; give up on precision for those.
                    if component.contains("**") || component.contains(['[', ']', '\\']) {
                        return true;
                    }
                    if !wildcard_match(component, name) {
                        return false;
                    }
                }
                pattern.len() > dir.len()
            }
        }
    }
}

impl PatternMatcher {
    /// Parses the text of a `.dockerignore` file.
    ///
    /// A UTF-8 BOM is ignored; lines whose first character is `#` are comments; surrounding
    /// whitespace is trimmed (also after a leading `!`); blank lines are skipped; each pattern
    /// is cleaned (`./a`, `a/`, `a//b`, `x/../a` all become `a`/`a/b`) and a leading `/` is
    /// dropped, so patterns are always relative to the context root.
    pub fn parse(text: &str) -> Result<Self, DockerignoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if exception {
                cleaned.insert(0, '!');
            }
            lines.push((i + 1, cleaned));
        }
        Self::build(lines)
    }

    /// Builds a matcher from a list of patterns (as `COPY --exclude` gives them): each is
    /// trimmed and cleaned, and a leading `!` makes it an exception. Error positions are
    /// 1-based indexes into the list.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, DockerignoreError> {
        Self::build(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p.as_ref().to_owned()))
                .collect(),
        )
    }

    fn build(lines: Vec<(usize, String)>) -> Result<Self, DockerignoreError> {
        let mut patterns = Vec::with_capacity(lines.len());
        for (line, raw) in lines {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let (exception, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err(DockerignoreError::IllegalExclusion { line }),
                Some(rest) => (true, rest.to_owned()),
                None => (false, cleaned),
            };
            let kind = compile(&text).ok_or_else(|| DockerignoreError::BadPattern {
                line,
                pattern: text.clone(),
            })?;
            patterns.push(Pattern {
                text,
                exception,
                kind,
            });
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        Ok(Self {
            patterns,
            has_exceptions,
        })
    }

    /// The patterns in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether there are no patterns at all (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded.
    ///
    /// A pattern matches a path when it matches the path itself or any of its parent
    /// directories; the last matching pattern decides (an exception re-includes). The
    /// context root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalize(rel_path);
        if path == "." || self.patterns.is_empty() {
            return false;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that would change the answer needs evaluating.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches(&path) || parents.iter().any(|p| pattern.matches(p)) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Like [`PatternMatcher::is_excluded`] for a walker that visits directories before
    /// their contents: pass the [`ParentMatches`] returned for the parent directory (or
    /// `None` at the top, or when unknown) and each pattern is tested against `rel_path`
    /// only, instead of against every ancestor again. The result is the same as
    /// `is_excluded`. Keep the returned value for a directory's children.
    pub fn matches_with_parent(
        &self,
        rel_path: &str,
        parent: Option<&ParentMatches>,
    ) -> (bool, ParentMatches) {
        let path = normalize(rel_path);
        let mut matched = vec![false; self.patterns.len()];
        if path == "." {
            return (false, ParentMatches { matched });
        }
        // A record from another matcher (wrong length) is ignored rather than trusted.
        let parent = parent.filter(|p| p.matched.len() == self.patterns.len());
        let ancestors: Vec<&str> = match parent {
            Some(_) => Vec::new(),
            None => path.match_indices('/').map(|(i, _)| &path[..i]).collect(),
        };
        let mut excluded = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            // Unlike moby's MatchesUsingParentResults, every pattern is evaluated so the
            // record passed to children is complete; skipping here would lose matches that
            // a child needs when an earlier pattern changes the answer below this point.
            let hit = parent.is_some_and(|p| p.matched[i])
                || pattern.matches(&path)
                || ancestors.iter().any(|a| pattern.matches(a));
            matched[i] = hit;
            if hit {
                excluded = !pattern.exception;
            }
        }
        (excluded, ParentMatches { matched })
    }

    /// Whether a context walker may skip `rel_dir` without looking inside: the directory
    /// is excluded and no exception pattern could re-include anything below it.
    ///
    /// Everything below an excluded directory stays excluded unless an exception matches a
    /// path below it: patterns that match the directory also match all its descendants, so
    /// only exceptions that can match deeper paths can change the answer. When this returns
    /// false for an excluded directory, the walker looks inside, and if it keeps a path there
    /// it must also keep that path's parent directories (as BuildKit does) even though
    /// `is_excluded` says they are excluded.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let dir = normalize(rel_dir);
        if dir == "." || !self.is_excluded(&dir) {
            return false;
        }
        !self
            .patterns
            .iter()
            .any(|p| p.exception && p.could_match_below(&dir))
    }
}

/// Turns a caller's path into the form patterns are written against: cleaned, relative.
fn normalize(path: &str) -> String {
    let cleaned = clean(path);
    match cleaned.strip_prefix('/') {
        Some("") => ".".to_owned(),
        Some(rest) => rest.to_owned(),
        None => cleaned,
    }
}

/// Go's `path.Clean`: collapse `//`, drop `.` elements, resolve `..` against a preceding
/// element, drop `..` at the root, and drop a trailing `/`; the empty result is `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// Compiles a cleaned pattern, or `None` when Go's `filepath.Match` would call its syntax bad.
fn compile(pattern: &str) -> Option<Kind> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` means the same as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    // Trailing `**` matches everything, like .gitignore.
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    // Zero or more whole directories.
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '\\' => {
                // A trailing backslash is a syntax error for filepath.Match.
                let escaped = *chars.get(i)?;
                i += 1;
                push_literal(&mut re, escaped);
                detected = Detected::Regex;
            }
            '[' => {
                i = push_class(&mut re, &chars, i)?;
                detected = Detected::Regex;
            }
            ']' => {
                push_literal(&mut re, ']');
                detected = Detected::Regex;
            }
            _ => push_literal(&mut re, ch),
        }
        first = false;
    }
    Some(match detected {
        Detected::Exact => Kind::Exact,
        // Both shortcuts strip exactly the two `*` characters, as moby does.
        Detected::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Detected::Suffix => Kind::Suffix(pattern[2..].to_owned()),
        Detected::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).ok()?)
        }
    })
}

fn push_literal(re: &mut String, ch: char) {
    re.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4])));
}

/// Translates a bracket expression starting after its `[` at `chars[start]`, with
/// `filepath.Match` syntax: optional `^` negation, characters or `lo-hi` ranges, `\`
/// escapes, and at least one range before the closing `]`. Returns the index after `]`.
///
/// moby copies bracket expressions into its regex verbatim, which mangles `*` and `?` inside
/// them and lets Go regex syntax like `[[:alpha:]]` through; we keep filepath.Match's meaning.
fn push_class(re: &mut String, chars: &[char], start: usize) -> Option<usize> {
    let mut i = start;
    re.push('[');
    if chars.get(i) == Some(&'^') {
        re.push('^');
        i += 1;
    }
    let mut ranges = 0;
    loop {
        if chars.get(i) == Some(&']') && ranges > 0 {
            re.push(']');
            return Some(i + 1);
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        push_literal(re, lo);
        if chars.get(i) == Some(&'-') {
            let (hi, next) = class_char(chars, i + 1)?;
            if hi < lo {
                return None;
            }
            i = next;
            re.push('-');
            push_literal(re, hi);
        }
        ranges += 1;
    }
}

/// One (possibly escaped) character of a bracket expression; like Go's `getEsc`, an
/// unescaped `-` or `]` here, or running out of pattern, is a syntax error.
fn class_char(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    let mut ch = *chars.get(i)?;
    if ch == '-' || ch == ']' {
        return None;
    }
    if ch == '\\' {
        i += 1;
        ch = *chars.get(i)?;
    }
    i += 1;
    // The class must still be closed after this character.
    if i >= chars.len() {
        return None;
    }
    Some((ch, i))
}

/// Matches one path component against a pattern component made of literals, `*` and `?`
/// (neither of which can match `/`, so components line up).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match backtrack {
                Some((bp, bn)) => {
                    pi = bp + 1;
                    ni = bn + 1;
                    backtrack = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Finds the ignore file that applies to a build: `<Dockerfile>.dockerignore` next to the
/// Dockerfile (for `-f app.Dockerfile`, `app.Dockerfile.dockerignore`) wins over the
/// context's `.dockerignore`. Returns the file's path and text, or `None` when neither
/// exists. Invalid UTF-8 is replaced (paths we match are UTF-8 anyway).
pub fn locate_for_dockerfile(
    context_dir: &Path,
    dockerfile_path: &Path,
) -> io::Result<Option<(PathBuf, String)>> {
    let mut specific = dockerfile_path.as_os_str().to_owned();
    specific.push(".dockerignore");
    let candidates = [PathBuf::from(specific), context_dir.join(".dockerignore")];
    for path in candidates {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                return Ok(Some((path, text)));
            }
            // A missing file, or something in the way that is not a file, means "no ignore
            // file here", as BuildKit treats it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::IsADirectory
                        | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("failed to read {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(None)
}

/// The text of the ignore file that applies to a build (see [`locate_for_dockerfile`]).
pub fn read_for_dockerfile(
    context_dir: &Path,
    dockerfile_path: &Path,
) -> io::Result<Option<String>> {
    Ok(locate_for_dockerfile(context_dir, dockerfile_path)?.map(|(_, text)| text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a//b", "a/b"),
            ("./a/", "a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("a/./b/../c", "a/c"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn wildcard_components() {
        assert!(wildcard_match("a*c", "abbc"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("?b", "ab"));
        assert!(!wildcard_match("a*d", "abc"));
        assert!(wildcard_match("*.*", "x.y.z"));
    }
}
