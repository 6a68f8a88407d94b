//! Located diagnostics (errors and warnings about a Dockerfile) and their rustc-like rendering.
//!
//! The parser, the typed-instruction layer and lowering all report problems as a [`Diagnostic`]:
//! a message, an optional [`Span`] into the Dockerfile, an optional `help` line and free notes.
//! The CLI renders it with [`Diagnostic::render`], which shows the offending source line(s) with
//! a caret underline.

use std::fmt;

/// A point in the Dockerfile: 1-based line and 1-based column.
///
/// Columns count Unicode scalar values (not bytes), so they match what an editor shows for
/// text without tabs. A UTF-8 byte-order mark at the start of the file is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl Position {
    /// A position at `line`, `column` (both 1-based).
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

/// A range of the Dockerfile. `start` is inclusive, `end` is exclusive (the column just after
/// the last character), so an empty span has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    /// A span from `start` (inclusive) to `end` (exclusive).
    pub const fn new(start: Position, end: Position) -> Self {
        Self { start, end }
    }

    /// The whole of lines `start..=end` (1-based), for callers that only know line numbers.
    /// The end column is `u32::MAX`, which rendering clamps to the end of the line. Prefer the
    /// exact spans the parser hands out.
    pub const fn lines(start: u32, end: u32) -> Self {
        Self {
            start: Position::new(start, 1),
            end: Position::new(end, u32::MAX),
        }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem found in a Dockerfile, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// The file name, set by the caller that knows it (the parser only sees bytes).
    pub file: Option<String>,
    /// Where the problem is; `None` only when no location makes sense.
    pub span: Option<Span>,
    /// A suggested fix, e.g. "did you mean RUN?".
    pub help: Option<String>,
    /// Extra context lines, rendered as `= note: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Self::new(Severity::Error, message, Some(span))
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Span) -> Self {
        Self::new(Severity::Warning, message, Some(span))
    }

    /// A diagnostic with an optional location.
    pub fn new(severity: Severity, message: impl Into<String>, span: Option<Span>) -> Self {
        Self {
            severity,
            message: message.into(),
            file: None,
            span,
            help: None,
            notes: Vec::new(),
        }
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the file name shown by `Display`.
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Renders a rustc-like plain-text report:
    ///
    /// ```text
    /// error: unknown instruction: RUNN
    ///  --> Dockerfile:3:1
    ///   |
    /// 3 | RUNN echo hi
    ///   | ^^^^
    ///   |
    ///   = help: did you mean RUN?
    /// ```
    ///
    /// `source` is the Dockerfile text the span refers to. Lines the span names that are not in
    /// `source` are left out rather than failing. The result ends with a newline.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        render(self, file_name, source)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.span) {
            (Some(file), Some(span)) => write!(
                f,
                "{file}:{}:{}: {}",
                span.start.line, span.start.column, self.message
            ),
            (None, Some(span)) => write!(
                f,
                "line {}, column {}: {}",
                span.start.line, span.start.column, self.message
            ),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Tabs are shown as this many spaces so that the underline lines up in any terminal.
const TAB_WIDTH: usize = 4;
/// Spans longer than this many lines show only their first and last lines.
const MAX_SNIPPET_LINES: u32 = 6;

fn render(d: &Diagnostic, file_name: &str, source: &str) -> String {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut out = format!("{}: {}\n", d.severity, d.message);

    let Some(span) = d.span else {
        out.push_str(&format!(" --> {file_name}\n"));
        render_notes(&mut out, d, 1);
        return out;
    };

    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let first = span.start.line.max(1);
    let last = span.end.line.max(first);
    // `end` one past a line's last character may sit at column 1 of the next line; do not show
    // that next line for nothing.
    let last = if last > first && span.end.column <= 1 {
        last - 1
    } else {
        last
    };
    let shown: Vec<u32> = if last - first < MAX_SNIPPET_LINES {
        (first..=last).collect()
    } else {
        vec![first, first + 1, 0, last - 1, last]
    };
    let width = digits(last);
    let pad = " ".repeat(width);

    out.push_str(&format!(
        "{pad}--> {file_name}:{}:{}\n",
        span.start.line, span.start.column
    ));
    out.push_str(&format!("{pad} |\n"));
    for line_no in shown {
        if line_no == 0 {
            out.push_str(&format!("{pad} ...\n"));
            continue;
        }
        let Some(text) = lines.get(line_no as usize - 1) else {
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        // Character range to underline on this line (0-based, end exclusive).
        let line_start = if line_no == first {
            span.start.column.saturating_sub(1) as usize
        } else {
            chars.iter().take_while(|c| c.is_whitespace()).count()
        };
        let line_end = if line_no == span.end.line {
            (span.end.column.saturating_sub(1) as usize).min(chars.len())
        } else {
            chars.len()
        };
        let line_start = line_start.min(chars.len());
        let (shown_text, offsets) = expand_tabs(&chars);
        let shown_line = format!("{line_no:>width$} | {shown_text}");
        out.push_str(shown_line.trim_end());
        out.push('\n');
        let col_from = offsets[line_start];
        let col_to = offsets[line_end.max(line_start)];
        let carets = (col_to - col_from).max(1);
        out.push_str(&format!(
            "{pad} | {}{}\n",
            " ".repeat(col_from),
            "^".repeat(carets)
        ));
    }
    render_notes(&mut out, d, width);
    out
}

fn render_notes(out: &mut String, d: &Diagnostic, width: usize) {
    if d.help.is_none() && d.notes.is_empty() {
        return;
    }
    let pad = " ".repeat(width);
    out.push_str(&format!("{pad} |\n"));
    for note in &d.notes {
        out.push_str(&format!("{pad} = note: {note}\n"));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("{pad} = help: {help}\n"));
    }
}

/// The line with tabs expanded, and for each character index (plus one past the end) the
/// display column where it starts.
fn expand_tabs(chars: &[char]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(chars.len());
    let mut offsets = Vec::with_capacity(chars.len() + 1);
    let mut col = 0;
    for &c in chars {
        offsets.push(col);
        if c == '\t' {
            text.push_str(&" ".repeat(TAB_WIDTH));
            col += TAB_WIDTH;
        } else if c.is_control() {
            // Control characters would garble the terminal; show a placeholder of width one.
            text.push('?');
            col += 1;
        } else {
            text.push(c);
            col += 1;
        }
    }
    offsets.push(col);
    (text, offsets)
}

fn digits(mut n: u32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_single_line_span_with_help() {
        let src = "FROM alpine\n\nRUNN echo hi\n";
        let d = Diagnostic::error(
            "unknown instruction: RUNN",
            Span::new(Position::new(3, 1), Position::new(3, 5)),
        )
        .with_help("did you mean RUN?");
        assert_eq!(
            d.render("Dockerfile", src),
            "error: unknown instruction: RUNN\n --> Dockerfile:3:1\n  |\n3 | RUNN echo hi\n  | ^^^^\n  |\n  = help: did you mean RUN?\n"
        );
    }

    #[test]
    fn underline_follows_tabs() {
        let src = "\tRUN x";
        let d = Diagnostic::error("bad", Span::new(Position::new(1, 6), Position::new(1, 7)));
        let r = d.render("f", src);
        assert!(r.contains("1 |     RUN x\n  |         ^\n"), "{r}");
    }

    #[test]
    fn display_names_file_and_position() {
        let d = Diagnostic::error("boom", Span::new(Position::new(2, 3), Position::new(2, 4)))
            .with_file("Dockerfile");
        assert_eq!(d.to_string(), "Dockerfile:2:3: boom");
    }

    #[test]
    fn long_spans_are_elided() {
        let src = (1..=20)
            .map(|i| format!("line{i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let d = Diagnostic::error("x", Span::new(Position::new(2, 1), Position::new(19, 7)));
        let r = d.render("f", &src);
        assert!(r.contains(" 2 | line2\n"), "{r}");
        assert!(r.contains("...\n"), "{r}");
        assert!(r.contains("19 | line19\n"), "{r}");
        assert!(!r.contains("line10"), "{r}");
    }
}
