//! Dockerfile syntax: bytes in, an AST with spans out, matching BuildKit's parser.
//!
//! [`parse`] turns a Dockerfile into an [`Ast`]: parser directives, then one [`Node`] per
//! instruction with its keyword, `--flags`, arguments (split by the per-instruction rules of
//! BuildKit's parser), heredoc bodies, the joined original text and a [`Span`] for every piece.
//! Nothing is expanded here: variables and quotes in values are kept as written for lowering.
//!
//! [`Ast::dump`] prints BuildKit's S-expression dump byte for byte; the conformance suite
//! compares it with BuildKit's expected results.
//!
//! Deliberate differences from BuildKit's parser, all outside what its test data covers:
//! - Input must be UTF-8 (BuildKit passes invalid bytes through); the error points at the
//!   first bad byte.
//! - `--flag` words and the HEALTHCHECK type are split on characters, not bytes, so non-ASCII
//!   text in them is not mangled (BuildKit treats bytes 0x85 and 0xA0 of a UTF-8 sequence as
//!   blanks there).
//! - Comments kept for an instruction ([`Node::comments`]) drop the `#` even when the comment
//!   line is indented.
//! - ONBUILD triggers are checked when the parent image is built (in `instructions`), not
//!   only when a child build runs them.
//! - Which non-ASCII characters the dump escapes follows the Unicode version of the Rust
//!   standard library rather than Go's.

mod args;
mod heredoc;
mod json;
mod parser;
mod quote;
mod source;

pub use crate::diagnostic::{Position, Span};
pub use quote::go_quote;

use crate::diagnostic::Diagnostic;

/// BuildKit's scanner refuses physical lines longer than this many bytes.
pub const MAX_LINE_BYTES: usize = 65_535;

/// Parses a Dockerfile.
///
/// Accepts a UTF-8 byte-order mark and CRLF line endings. Fails with a located diagnostic on
/// invalid UTF-8, an over-long line, a bad or repeated parser directive, an unterminated
/// heredoc, a malformed ENV/LABEL, a JSON array with non-string elements, or a file with no
/// instructions. Unknown instructions are kept (see [`Args::Ignored`]); the `instructions`
/// layer rejects them.
pub fn parse(source: &[u8]) -> Result<Ast, Diagnostic> {
    parser::parse(source)
}

/// If `word` is a heredoc opener (`<<EOF`, `<<-'EOF'`, `3<<EOF`), its delimiter with quotes
/// removed. ADD and COPY use this to tell heredoc sources from paths.
pub fn heredoc_opener_name(word: &str) -> Option<String> {
    heredoc::parse_opener(word).ok().flatten().map(|o| o.name)
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// Parser directives from the top of the file (`# syntax=`, `# escape=`, `# check=`).
    pub directives: Vec<Directive>,
    /// The escape character in effect: `\` or `` ` ``.
    pub escape: char,
    /// One node per instruction, in source order.
    pub children: Vec<Node>,
    /// Non-fatal findings, e.g. empty lines inside a line continuation.
    pub warnings: Vec<Diagnostic>,
    /// From the first instruction's first line to the last instruction's last line.
    pub span: Span,
}

impl Ast {
    /// BuildKit's `Node.Dump()` of the root: one `(keyword ["--flags"] "arg" ...)` line per
    /// instruction, without a trailing newline.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, child) in self.children.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('(');
            child.dump_into(&mut out);
            out.push(')');
        }
        out
    }

    /// The value of directive `name` (lowercase), if present.
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `syntax`, `escape` or `check`, lowercased.
    pub name: String,
    /// The value with surrounding whitespace removed.
    pub value: String,
    /// The directive's line.
    pub span: Span,
}

/// A piece of text from the Dockerfile with where it came from. `value` may differ from the
/// source text under `span` (flags have quotes removed, JSON strings are decoded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word {
    pub value: String,
    pub span: Span,
}

impl Word {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// One `key=value` (or legacy `KEY value`) of ENV or LABEL, quotes and escapes kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: Word,
    pub value: Word,
    /// The legacy `ENV KEY value words` form, which has no `=`.
    pub legacy: bool,
}

/// An instruction's arguments, shaped by the instruction's parsing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Plain arguments: the whole rest as one word (RUN/CMD/ENTRYPOINT/SHELL shell form,
    /// USER, WORKDIR, MAINTAINER, STOPSIGNAL), whitespace-split words (FROM, EXPOSE, and
    /// ADD/COPY/VOLUME when not JSON) or quote-aware words (ARG). Empty when there are none.
    Words(Vec<Word>),
    /// The JSON exec form `["a", "b"]`, decoded.
    Json(Vec<Word>),
    /// ENV and LABEL.
    Pairs(Vec<Pair>),
    /// HEALTHCHECK: the type word (`CMD`, `NONE`, anything) and the rest, parsed like CMD
    /// (so `Words` with zero or one word, or `Json`).
    Healthcheck { kind: Word, args: Box<Args> },
    /// ONBUILD: the nested instruction.
    Onbuild(Box<Node>),
    /// An unknown instruction, whose arguments BuildKit does not parse.
    Ignored,
}

/// A heredoc attached to an instruction (`RUN <<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed.
    pub name: String,
    /// The file descriptor prefix (`3<<EOF`), if any.
    pub fd: Option<u32>,
    /// False when the delimiter was quoted (`<<'EOF'`): the body must not be expanded.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are to be stripped from body lines (see [`Heredoc::body`]).
    pub chomp: bool,
    /// The body lines exactly as in the file, each with its line ending, without the
    /// terminator line.
    pub content: String,
    /// From the first body line to the end of the terminator line.
    pub span: Span,
}

impl Heredoc {
    /// The body as the instruction should see it: with leading tabs stripped from every line
    /// when the opener was `<<-`, else [`Heredoc::content`] unchanged.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy`, or an unknown word).
    pub keyword: Word,
    /// Leading `--flag[=value]` words with quotes removed, e.g. `--mount=type=cache,target=/x`.
    pub flags: Vec<Word>,
    pub args: Args,
    /// Heredoc bodies, in opener order. For `ONBUILD RUN <<EOF` they sit on the ONBUILD node.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text with line continuations joined (BuildKit's `Original`); for a
    /// nested ONBUILD instruction, the text after `ONBUILD`.
    pub original: String,
    /// The whole instruction, heredoc bodies included.
    pub span: Span,
    /// Comment lines directly above the instruction, without the `#`.
    pub comments: Vec<String>,
}

impl Node {
    /// Whether the keyword is `name` (lowercase) ignoring case, as BuildKit compares them.
    pub fn is(&self, name: &str) -> bool {
        keyword_is(&self.keyword.value, name)
    }

    /// Whether the exec (JSON) form was used.
    pub fn is_json(&self) -> bool {
        match &self.args {
            Args::Json(_) => true,
            Args::Healthcheck { args, .. } => matches!(**args, Args::Json(_)),
            _ => false,
        }
    }

    fn dump_into(&self, out: &mut String) {
        let start = out.len();
        out.push_str(&go_lower(&self.keyword.value));
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                quote::go_quote_into(out, &f.value);
            }
            out.push(']');
        }
        dump_args(&self.args, out);
        // BuildKit trims the result, which matters only for an empty keyword.
        let trimmed = out[start..].trim().len();
        if trimmed != out.len() - start {
            let s = out[start..].trim().to_string();
            out.truncate(start);
            out.push_str(&s);
        }
    }
}

fn dump_args(args: &Args, out: &mut String) {
    let word = |out: &mut String, w: &str| {
        out.push(' ');
        quote::go_quote_into(out, w);
    };
    match args {
        Args::Words(ws) | Args::Json(ws) => ws.iter().for_each(|w| word(out, &w.value)),
        Args::Pairs(ps) => {
            for p in ps {
                word(out, &p.key.value);
                word(out, &p.value.value);
                word(out, if p.legacy { "" } else { "=" });
            }
        }
        Args::Healthcheck { kind, args } => {
            word(out, &kind.value);
            dump_args(args, out);
        }
        Args::Onbuild(inner) => {
            out.push_str(" (");
            inner.dump_into(out);
            out.push(')');
        }
        Args::Ignored => word(out, ""),
    }
}

/// Whether `keyword` lowercases (Go-style) to `name`, without allocating for ASCII keywords.
pub(crate) fn keyword_is(keyword: &str, name: &str) -> bool {
    if keyword.is_ascii() {
        keyword.eq_ignore_ascii_case(name)
    } else {
        go_lower(keyword) == name
    }
}

/// The known instruction `keyword` names, lowercased; `None` for an unknown keyword.
pub(crate) fn known_command(keyword: &str) -> Option<&'static str> {
    const NAMES: [&str; 18] = [
        "add",
        "arg",
        "cmd",
        "copy",
        "entrypoint",
        "env",
        "expose",
        "from",
        "healthcheck",
        "label",
        "maintainer",
        "onbuild",
        "run",
        "shell",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ];
    NAMES.iter().copied().find(|n| keyword_is(keyword, n))
}

/// Lowercases like Go's `strings.ToLower`: one character for one character (Rust's
/// `to_lowercase` turns U+0130 into two).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => {
                let mut l = c.to_lowercase();
                match (l.next(), l.next()) {
                    (Some(x), None) => x,
                    _ => c,
                }
            }
        })
        .collect()
}
