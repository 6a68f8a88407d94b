//! The line loop: directives, comments, line continuations, heredoc bodies, and the
//! assembly of instruction nodes into an [`Ast`].

use super::args::LineCtx;
use super::heredoc;
use super::source::{LogicalLine, Source};
use super::{Args, Ast, Directive, Heredoc, MAX_LINE_BYTES, Node};
use crate::diagnostic::{Diagnostic, Position, Span};

const BOM: &str = "\u{feff}";

pub(crate) fn parse(bytes: &[u8]) -> Result<Ast, Diagnostic> {
    let bom = bytes.starts_with(BOM.as_bytes());
    let body = if bom { &bytes[BOM.len()..] } else { bytes };
    let text = decode(body)?;
    let src = Source::new(text);
    check_line_lengths(&src, if bom { BOM.len() } else { 0 })?;
    Parser::new(&src).run()
}

/// Decodes UTF-8, pointing at the first invalid byte on failure.
fn decode(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // The prefix is valid UTF-8 by definition of `valid_up_to`.
        let good = std::str::from_utf8(good).unwrap_or_default();
        let line = good.matches('\n').count() + 1;
        let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let pos = Position::new(to_u32(line), to_u32(col));
        Diagnostic::error(
            format!(
                "invalid UTF-8 in Dockerfile (byte 0x{:02x})",
                bytes[e.valid_up_to()]
            ),
            Span::new(pos, Position::new(pos.line, pos.column.saturating_add(1))),
        )
        .with_help("save the Dockerfile as UTF-8")
    })
}

fn check_line_lengths(src: &Source<'_>, bom_len: usize) -> Result<(), Diagnostic> {
    for (i, l) in src.lines.iter().enumerate() {
        let len = l.content_end - l.start + if i == 0 { bom_len } else { 0 };
        // BuildKit counts the \r of a CRLF line too; only the \n is free.
        let len = len + src.text[l.content_end..l.end].matches('\r').count();
        if len > MAX_LINE_BYTES {
            return Err(Diagnostic::error(
                format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}"),
                Span::new(src.position(i, 0), src.position(i, 0)),
            )
            .with_note(format!("line {} is {len} bytes long", i + 1)));
        }
    }
    Ok(())
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Tracks parser directives, which are only recognised in the comment lines at the very top.
#[derive(Default)]
struct Directives {
    done: bool,
    found: Vec<Directive>,
}

impl Directives {
    /// Looks at one line (newline and leading whitespace removed). Returns whether it was a
    /// directive.
    fn line(
        &mut self,
        src: &Source<'_>,
        line_idx: usize,
        col: usize,
        line: &str,
    ) -> Result<bool, Diagnostic> {
        if self.done {
            return Ok(false);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((name, value)) = split_directive(body.trim_start()) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        let span = Span::new(src.position(line_idx, col), src.line_end(line_idx));
        if let Some(first) = self.found.iter().find(|d| d.name == name) {
            return Err(Diagnostic::error(
                format!("only one {name} parser directive can be used"),
                span,
            )
            .with_note(format!(
                "the first {name} directive is on line {}",
                first.span.start.line
            )));
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(Diagnostic::error(
                format!("invalid escape token '{value}' does not match ` or \\"),
                span,
            )
            .with_help("use `# escape=\\` or `# escape=``"));
        }
        self.found.push(Directive {
            name,
            value: value.to_string(),
            span,
        });
        Ok(true)
    }
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (Go's `\s` is `[\t\n\f\r ]`).
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let is_s = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let mut chars = s.char_indices();
    let (_, first) = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_alphanumeric())
        .map_or(s.len(), |(i, _)| i);
    let after = s[name_end..].trim_start_matches(is_s);
    let value = after.strip_prefix('=')?;
    // `\s*(.+?)\s*$`: the value is non-empty; if the rest is only blanks, the lazy group
    // still takes the last blank.
    let trimmed = value.trim_matches(is_s);
    if !trimmed.is_empty() {
        return Some((&s[..name_end], trimmed));
    }
    let last = value.chars().next_back()?;
    Some((&s[..name_end], &value[value.len() - last.len_utf8()..]))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

struct Parser<'s, 'a> {
    src: &'s Source<'a>,
    /// Index of the next physical line to read.
    next: usize,
    escape: char,
    directives: Directives,
    children: Vec<Node>,
    warnings: Vec<Diagnostic>,
    comments: Vec<String>,
}

impl<'s, 'a> Parser<'s, 'a> {
    fn new(src: &'s Source<'a>) -> Self {
        Self {
            src,
            next: 0,
            escape: '\\',
            directives: Directives::default(),
            children: Vec::new(),
            warnings: Vec::new(),
            comments: Vec::new(),
        }
    }

    fn take_line(&mut self) -> Option<usize> {
        (self.next < self.src.lines.len()).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Removes a trailing line-continuation escape (plus blanks after it). Returns the
    /// remaining text and whether the line ends the instruction. An escape preceded by
    /// another escape is not a continuation.
    fn trim_continuation<'t>(&self, line: &'t str) -> (&'t str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        match t.strip_suffix(self.escape) {
            Some(before) if before.is_empty() || !before.ends_with(self.escape) => (before, false),
            _ => (line, true),
        }
    }

    /// Feeds a line to the directive parser and applies an escape directive at once.
    fn directive(&mut self, idx: usize, col: usize, line: &str) -> Result<bool, Diagnostic> {
        let is = self.directives.line(self.src, idx, col, line)?;
        if let Some(d) = self
            .directives
            .found
            .last()
            .filter(|d| is && d.name == "escape")
        {
            self.escape = if d.value == "`" { '`' } else { '\\' };
        }
        Ok(is)
    }

    fn run(mut self) -> Result<Ast, Diagnostic> {
        while let Some(first) = self.take_line() {
            let raw = self.src.content(first);
            let stripped = raw.trim_start();
            let lead = raw.len() - stripped.len();
            if let Some(c) = stripped.strip_prefix('#') {
                let c = c.trim();
                if c.is_empty() {
                    self.comments.clear();
                } else {
                    self.comments.push(c.to_string());
                }
            }
            if self.directive(first, lead, stripped)? {
                self.comments.pop();
            }
            let token = if is_comment(stripped) { "" } else { stripped };
            let (piece, mut end_of_instr) = self.trim_continuation(token);
            if end_of_instr && piece.is_empty() {
                continue;
            }
            let mut line = LogicalLine::default();
            line.push(piece, first, lead);
            let mut last = first;
            let mut empty_line = None;
            while !end_of_instr {
                let Some(idx) = self.take_line() else { break };
                last = idx;
                let raw = self.src.content(idx);
                self.directive(idx, 0, raw)?;
                if is_comment(raw) {
                    continue;
                }
                if raw.trim_start().is_empty() {
                    empty_line.get_or_insert(idx);
                    continue;
                }
                let (piece, eoi) = self.trim_continuation(raw);
                end_of_instr = eoi;
                line.push(piece, idx, 0);
            }
            self.instruction(line, first, last, empty_line)?;
        }
        self.finish()
    }

    fn instruction(
        &mut self,
        line: LogicalLine,
        first: usize,
        mut last: usize,
        empty_line: Option<usize>,
    ) -> Result<(), Diagnostic> {
        let ctx = LineCtx {
            line: &line,
            src: self.src,
            escape: self.escape,
        };
        let instr_span =
            |last: usize| Span::new(line.position(self.src, 0), self.src.line_end(last));
        let mut node = ctx
            .node(0, line.text.len())
            .map_err(|d| locate_in(d, instr_span(last)))?;
        if let Some(idx) = empty_line {
            self.warnings.push(
                Diagnostic::warning(
                    format!("Empty continuation line found in: {}", line.text),
                    self.src.line_span(idx),
                )
                .with_note("empty continuation lines will become errors in a future release")
                .with_help(
                    "remove the empty line, see https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
                ),
            );
        }
        if can_contain_heredoc(&node) && line.text.contains("<<") {
            let openers = heredoc::openers_in_line(&line.text).map_err(|why| {
                Diagnostic::error(format!("invalid heredoc: {why}"), instr_span(last))
            })?;
            let opener_span = instr_span(last);
            for opener in openers {
                let (h, end) = self.heredoc_body(opener, last, opener_span, first)?;
                last = end;
                node.heredocs.push(h);
            }
        }
        node.span = instr_span(last);
        node.comments = std::mem::take(&mut self.comments);
        self.children.push(node);
        Ok(())
    }

    /// Reads body lines up to the terminator. Returns the heredoc and the terminator's line.
    fn heredoc_body(
        &mut self,
        opener: heredoc::Opener,
        last: usize,
        opener_span: Span,
        first: usize,
    ) -> Result<(Heredoc, usize), Diagnostic> {
        let body_start = last + 1;
        let mut content = String::new();
        let end = loop {
            let Some(idx) = self.take_line() else {
                return Err(Diagnostic::error("unterminated heredoc", opener_span)
                    .with_help(format!(
                        "end the heredoc with a line containing only `{}`",
                        opener.name
                    ))
                    .with_note(format!(
                        "the heredoc <<{} starts on line {}",
                        opener.name,
                        first + 1
                    )));
            };
            let raw = self.src.raw(idx);
            let mut candidate = self.src.content(idx);
            if opener.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == opener.name {
                break idx;
            }
            content.push_str(raw);
        };
        let span = if body_start <= end && body_start < self.src.lines.len() {
            Span::new(self.src.position(body_start, 0), self.src.line_end(end))
        } else {
            self.src.line_span(end)
        };
        Ok((
            Heredoc {
                name: opener.name,
                fd: opener.fd,
                expand: opener.expand,
                chomp: opener.chomp,
                content,
                span,
            },
            end,
        ))
    }

    fn finish(self) -> Result<Ast, Diagnostic> {
        let (Some(first), Some(last)) = (self.children.first(), self.children.last()) else {
            let end = self.src.lines.len().saturating_sub(1);
            let span = if self.src.lines.is_empty() {
                Span::new(Position::new(1, 1), Position::new(1, 1))
            } else {
                Span::new(Position::new(1, 1), self.src.line_end(end))
            };
            return Err(Diagnostic::error("file with no instructions", span)
                .with_help("a Dockerfile needs at least a FROM instruction"));
        };
        let span = Span::new(first.span.start, last.span.end);
        Ok(Ast {
            directives: self.directives.found,
            escape: self.escape,
            children: self.children,
            warnings: self.warnings,
            span,
        })
    }
}

/// Heredocs are collected for RUN, COPY and ADD in shell form, and for ONBUILD of those.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.args {
        Args::Onbuild(inner) if node.is("onbuild") => inner,
        _ => node,
    };
    (node.is("run") || node.is("copy") || node.is("add")) && !node.is_json()
}

/// Errors from argument parsing already carry a precise span; keep it, but fall back to the
/// instruction when a span is missing.
fn locate_in(mut d: Diagnostic, span: Span) -> Diagnostic {
    if d.span.is_none() {
        d.span = Some(span);
    }
    d
}
